/* http/http.c: libmicrohttpd driven from the agent's event loop.
 *
 * libmicrohttpd runs in its external epoll mode: it keeps its own epoll set
 * (listen socket and connections, edge-triggered) whose fd we watch for
 * reading in the ca_loop. When that fd is readable, or when the timeout that
 * MHD_get_timeout() asked for has passed, MHD_run() does the work without
 * blocking. Because MHD's inner set is edge-triggered, work it has already
 * pulled off that set (data left in a connection buffer) no longer makes the
 * outer fd readable; MHD then reports a zero timeout, which is why the timer
 * is re-armed after every MHD_run(). */
#include "http/http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <microhttpd.h>

#define HTTP_CONNECTION_LIMIT 64u
#define HTTP_CONNECTION_TIMEOUT_S 10u
#define HTTP_BODY_MAX ((size_t)16 * 1024 * 1024)
#define HTTP_BACKLOG 64

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

struct ca_http {
	struct ca_loop *loop;                 /* borrowed */
	const struct ca_http_handlers *h;     /* borrowed */
	void *arg;                            /* borrowed, passed to handlers */
	struct MHD_Daemon *daemon;            /* owned; owns listen_fd once started */
	int listen_fd;                        /* owned until the daemon starts */
	int port;
	struct ca_loop_fd *epoll_handle;      /* owned */
	struct ca_loop_timer *timer;          /* owned */
	uint64_t requests;
};

/* ------------------------------------------------------------------------ */
/* Driving libmicrohttpd from the loop */

/* libmicrohttpd 0.9.75 takes its listen socket out of its epoll set while
 * it is at the connection limit and puts it back only at the start of a
 * later MHD_run(). When the last connections close, the run that frees them
 * leaves nothing in the set and MHD_get_timeout() says "no timeout", so
 * without a periodic run the server would never accept again. Hence the
 * ceiling on the timer: at most one idle MHD_run() a second. */
#define HTTP_MAX_IDLE_RUN_MS 1000u

static void rearm(struct ca_http *http)
{
	MHD_UNSIGNED_LONG_LONG timeout_ms = HTTP_MAX_IDLE_RUN_MS;
	if (MHD_get_timeout(http->daemon, &timeout_ms) != MHD_YES ||
	    timeout_ms > HTTP_MAX_IDLE_RUN_MS)
		timeout_ms = HTTP_MAX_IDLE_RUN_MS;
	ca_loop_timer_start(http->timer, (int64_t)timeout_ms, 0);
}

static void run_daemon(struct ca_http *http)
{
	/* MHD_run() only fails for a daemon started in another mode, which
	 * ca_http_new() never does. */
	(void)MHD_run(http->daemon);
	rearm(http);
}

static void on_epoll_fd(void *arg, int fd, int events)
{
	(void)fd;
	(void)events;
	run_daemon(arg);
}

static void on_timer(void *arg)
{
	run_daemon(arg);
}

/* ------------------------------------------------------------------------ */
/* Requests */

static enum MHD_Result send_response(struct ca_http *http, struct MHD_Connection *conn,
                                     unsigned int status, const char *content_type,
                                     struct ca_buf *body, const char *allow)
{
	size_t len = 0;
	char *data = ca_buf_take(body, &len);
	if (!data)
		return MHD_NO; /* out of memory: MHD closes the connection */
	struct MHD_Response *resp =
		MHD_create_response_from_buffer(len, data, MHD_RESPMEM_MUST_FREE);
	if (!resp) {
		free(data);
		return MHD_NO;
	}
	enum MHD_Result ret = MHD_NO;
	if (MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES ||
	    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store") != MHD_YES)
		goto out;
	if (allow && MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES)
		goto out;
	ret = MHD_queue_response(conn, status, resp);
	if (ret == MHD_YES)
		http->requests++;
out:
	MHD_destroy_response(resp); /* MHD keeps its own reference while sending */
	return ret;
}

static enum MHD_Result send_text(struct ca_http *http, struct MHD_Connection *conn,
                                 unsigned int status, const char *text, const char *allow)
{
	struct ca_buf body;
	ca_buf_init(&body, 256);
	enum MHD_Result ret = MHD_NO;
	if (ca_buf_append_str(&body, text) == CA_OK)
		ret = send_response(http, conn, status, CT_TEXT, &body, allow);
	ca_buf_fini(&body);
	return ret;
}

/* A request has a body when it announces one; without Content-Length or
 * Transfer-Encoding HTTP/1.1 has no way to send one. */
static bool has_body(struct MHD_Connection *conn)
{
	const char *te = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_TRANSFER_ENCODING);
	if (te)
		return true;
	const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
	                                             MHD_HTTP_HEADER_CONTENT_LENGTH);
	if (!cl)
		return false;
	while (*cl == ' ' || *cl == '\t')
		cl++;
	while (*cl == '0')
		cl++;
	/* Anything left other than blanks is a non-zero (or malformed) length. */
	while (*cl == ' ' || *cl == '\t')
		cl++;
	return *cl != '\0';
}

/* MHD percent-decodes the path through this callback before the access
 * handler sees it. Leaving it as sent makes paths match byte for byte:
 * "/health%2Flive" or "/health/%6Cive" is not "/health/live" (http.h). */
static size_t keep_escapes(void *cls, struct MHD_Connection *conn, char *s)
{
	(void)cls;
	(void)conn;
	return strlen(s);
}

/* Length of the path part of url (up to '?'). MHD already strips the query,
 * but do not depend on it. */
static size_t path_len(const char *url)
{
	const char *q = strchr(url, '?');
	return q ? (size_t)(q - url) : strlen(url);
}

static bool path_is(const char *url, size_t len, const char *want)
{
	return strlen(want) == len && memcmp(url, want, len) == 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **req_cls)
{
	struct ca_http *http = cls;
	(void)version;
	(void)upload_data;

	/* Every request is answered on the first call, before any body is
	 * read; MHD then discards whatever body follows and closes the
	 * connection. A later call can only carry body bytes we refused. */
	if (*req_cls) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	*req_cls = http;

	bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
	if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
		return send_text(http, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
		                 "method not allowed\n", "GET, HEAD");
	if (has_body(conn))
		return send_text(http, conn, MHD_HTTP_CONTENT_TOO_LARGE,
		                 "request bodies are not accepted\n", NULL);

	const struct ca_http_handlers *h = http->h;
	size_t n = path_len(url);
	int (*probe)(void *, struct ca_buf *) = NULL;
	if (path_is(url, n, "/health/live"))
		probe = h->live;
	else if (path_is(url, n, "/health/ready"))
		probe = h->ready;
	else if (path_is(url, n, "/health"))
		probe = h->health;
	else if (path_is(url, n, "/metrics") && h->metrics) {
		struct ca_buf body;
		ca_buf_init(&body, HTTP_BODY_MAX);
		h->metrics(http->arg, &body);
		enum MHD_Result ret = send_response(http, conn, MHD_HTTP_OK, CT_METRICS, &body, NULL);
		ca_buf_fini(&body);
		return ret;
	}
	if (!probe)
		return send_text(http, conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);

	struct ca_buf body;
	ca_buf_init(&body, HTTP_BODY_MAX);
	int status = probe(http->arg, &body);
	if (status < 100 || status > 599)
		status = MHD_HTTP_INTERNAL_SERVER_ERROR;
	enum MHD_Result ret = send_response(http, conn, (unsigned int)status, CT_JSON, &body, NULL);
	ca_buf_fini(&body);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* Listening socket */

static void format_endpoint(char *out, size_t outlen, const char *host, int port)
{
	if (strchr(host, ':'))
		snprintf(out, outlen, "[%s]:%d", host, port);
	else
		snprintf(out, outlen, "%s:%d", host, port);
}

static void set_err(char *err, size_t errlen, const char *endpoint, const char *reason)
{
	if (err && errlen)
		snprintf(err, errlen, "cannot listen on %s: %s", endpoint, reason);
}

/* Bind and listen on the first address of host that works. Returns the fd
 * or -1 with *gai_error (resolution) or *sys_errno (socket calls) set. */
static int open_listener(const char *host, int port, int *gai_error, int *sys_errno)
{
	char service[16];
	snprintf(service, sizeof service, "%d", port);
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	};
	struct addrinfo *res = NULL;
	*gai_error = getaddrinfo(host, service, &hints, &res);
	if (*gai_error != 0) {
		if (*gai_error == EAI_SYSTEM)
			*sys_errno = errno;
		return -1;
	}
	*sys_errno = EADDRNOTAVAIL;
	int fd = -1;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
			continue;
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			*sys_errno = errno;
			continue;
		}
		int one = 1;
		if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
		    bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, HTTP_BACKLOG) == 0)
			break;
		*sys_errno = errno;
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	return fd;
}

static int bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof ss;
	if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
		return -1;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -1;
}

/* ------------------------------------------------------------------------ */
/* Lifecycle */

enum ca_err ca_http_new(struct ca_http **out, struct ca_loop *loop, const char *host, int port,
                        const struct ca_http_handlers *h, void *arg, char *err, size_t errlen)
{
	enum ca_err rc = CA_EINVAL;
	struct ca_http *http = NULL;
	char endpoint[300];

	if (err && errlen)
		err[0] = '\0';
	if (!out || !loop || !h) {
		if (err && errlen)
			snprintf(err, errlen, "cannot listen: missing argument");
		goto out;
	}
	if (!host || !*host)
		host = "0.0.0.0";
	format_endpoint(endpoint, sizeof endpoint, host, port);
	if (port < 0 || port > 65535) {
		set_err(err, errlen, endpoint, "port must be between 0 and 65535");
		goto out;
	}

	rc = CA_ENOMEM;
	http = calloc(1, sizeof *http);
	if (!http) {
		set_err(err, errlen, endpoint, ca_strerror(rc));
		goto out;
	}
	http->loop = loop;
	http->h = h;
	http->arg = arg;
	http->listen_fd = -1;

	int gai_error = 0, sys_errno = 0;
	http->listen_fd = open_listener(host, port, &gai_error, &sys_errno);
	if (http->listen_fd < 0) {
		if (gai_error && gai_error != EAI_SYSTEM) {
			rc = CA_ENOTFOUND;
			set_err(err, errlen, endpoint, gai_strerror(gai_error));
		} else {
			rc = CA_EIO;
			set_err(err, errlen, endpoint, strerror(sys_errno));
		}
		goto out;
	}
	http->port = bound_port(http->listen_fd);

	/* Whether MHD closes a listen socket it was given when it fails to
	 * start depends on how far it got; afterwards, tell the cases apart by
	 * the socket's inode (no other socket can share it). */
	struct stat before;
	if (fstat(http->listen_fd, &before) != 0) {
		rc = CA_EIO;
		set_err(err, errlen, endpoint, strerror(errno));
		goto out;
	}
	http->daemon = MHD_start_daemon(
		MHD_USE_EPOLL, 0, NULL, NULL, on_request, http,
		MHD_OPTION_LISTEN_SOCKET, (MHD_socket)http->listen_fd,
		MHD_OPTION_CONNECTION_LIMIT, HTTP_CONNECTION_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, HTTP_CONNECTION_TIMEOUT_S,
		MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, http,
		MHD_OPTION_END);
	if (!http->daemon) {
		struct stat after;
		if (fstat(http->listen_fd, &after) != 0 || after.st_ino != before.st_ino ||
		    after.st_dev != before.st_dev)
			http->listen_fd = -1; /* MHD closed it already */
		rc = CA_EIO;
		set_err(err, errlen, endpoint, "libmicrohttpd failed to start");
		goto out;
	}
	http->listen_fd = -1; /* the daemon owns it now */

	const union MHD_DaemonInfo *info = MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		rc = CA_EIO;
		set_err(err, errlen, endpoint, "libmicrohttpd has no epoll fd");
		goto out;
	}
	rc = ca_loop_timer_new(loop, on_timer, http, &http->timer);
	if (rc != CA_OK) {
		set_err(err, errlen, endpoint, ca_strerror(rc));
		goto out;
	}
	rc = ca_loop_fd_add(loop, info->epoll_fd, CA_LOOP_READ, on_epoll_fd, http,
	                    &http->epoll_handle);
	if (rc != CA_OK) {
		set_err(err, errlen, endpoint, ca_strerror(rc));
		goto out;
	}
	rearm(http);

	*out = http;
	http = NULL;
	rc = CA_OK;
out:
	ca_http_free(http);
	return rc;
}

int ca_http_port(const struct ca_http *http)
{
	return http ? http->port : -1;
}

uint64_t ca_http_requests(const struct ca_http *http)
{
	return http ? http->requests : 0;
}

void ca_http_free(struct ca_http *http)
{
	if (!http)
		return;
	/* Unregister before MHD closes its epoll fd, so the loop never sees
	 * a stale fd. */
	ca_loop_fd_del(http->epoll_handle);
	ca_loop_timer_free(http->timer);
	if (http->daemon)
		MHD_stop_daemon(http->daemon); /* closes the listen socket too */
	if (http->listen_fd >= 0)
		close(http->listen_fd);
	free(http);
}
