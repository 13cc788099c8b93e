/* http/http.c: libmicrohttpd driven from the agent's event loop, behind a
 * connection budget of our own.
 *
 * Why we accept connections ourselves. Left to itself, libmicrohttpd 0.9.75
 * lets any pod on the network starve the probes: its connection timeout is
 * an idle timeout that every received byte restarts (one byte a second of
 * request headers holds a connection for ever: slowloris), and at its
 * connection limit it stops accepting, so the kubelet's probe waits in the
 * backlog behind connections that will never send a request. Its API has
 * no way to close a connection from outside, nor an absolute deadline. So:
 *
 * - We own the listening socket (MHD_USE_NO_LISTEN_SOCKET). The loop
 *   watches it; on_listen() accepts and hands each connection to MHD with
 *   MHD_add_connection(), which takes the fd. The socket has
 *   TCP_DEFER_ACCEPT: the kernel holds a connection that has sent nothing,
 *   so an idle one takes no slot, and one we accept usually has its whole
 *   request waiting, which MHD answers in the run that follows the accept.
 * - MHD_OPTION_NOTIFY_CONNECTION gives every connection a struct conn (its
 *   socket context) from the moment MHD takes it until MHD closes it. The
 *   access handler marks it answering; MHD_OPTION_NOTIFY_COMPLETED marks
 *   the end of the response.
 * - Budget: at most HTTP_CONNECTION_CAP connections count. A connection
 *   accepted at the cap evicts the oldest one that is not answering a
 *   complete request (it is either idle or still sending headers); only if
 *   every connection is answering does the oldest of those go. Evicting is
 *   shutdown(fd, SHUT_RDWR): MHD sees end of file on its next run, closes
 *   the connection and tells us. Until then the evicted connection still
 *   holds its fd and MHD's memory pool, so MHD's own limit leaves room for
 *   as many again (HTTP_MHD_CONNECTION_LIMIT); accepting waits for MHD to
 *   run when that is full, and MHD runs after every HTTP_ACCEPT_BATCH
 *   accepts.
 * - Deadlines: a complete request (request line and headers) must arrive
 *   within HTTP_HEADER_DEADLINE_MS of accept, and within
 *   HTTP_KEEPALIVE_IDLE_MS of the end of the previous response on a kept
 *   alive connection. They count from those instants; received bytes do
 *   not restart them. The timer that drives MHD also enforces them, by
 *   eviction. MHD's idle timeout stays, for a client that stops reading
 *   its response.
 * - Out of fds (EMFILE, ENFILE) or kernel memory: the listening socket
 *   stays readable, so accepting again at once would spin. Evict the oldest
 *   connection not answering (its fd comes back when MHD closes it) and
 *   stop watching the listening socket for HTTP_ACCEPT_PAUSE_MS.
 *
 * Driving MHD: it runs in its external epoll mode. It keeps its own epoll
 * set (the connections, edge-triggered) whose fd we watch for reading in
 * the ca_loop. When that fd is readable, or when the timeout that
 * MHD_get_timeout() asked for has passed, MHD_run() does the work without
 * blocking. Because MHD's inner set is edge-triggered, work it has already
 * pulled off that set (data left in a connection buffer) no longer makes
 * the outer fd readable; MHD then reports a zero timeout, which is why the
 * timer is re-armed after every MHD_run(). */
#include "http/http.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "core/timeutil.h"

#define HTTP_CONNECTION_CAP 64u
/* Connections MHD may hold: those within the cap plus those evicted and
 * not yet closed. */
#define HTTP_MHD_CONNECTION_LIMIT (2u * HTTP_CONNECTION_CAP)
/* Each connection's libmicrohttpd pool (request line, headers, its
 * buffers): probes and scrapes send a few hundred bytes of headers; 16 KiB
 * is what nginx allows by default and half libmicrohttpd's default. */
#define HTTP_CONNECTION_POOL_BYTES ((size_t)16 * 1024)
#define HTTP_HEADER_DEADLINE_MS 5000
#define HTTP_KEEPALIVE_IDLE_MS 10000
/* MHD's own idle timeout: a response the client stops reading. */
#define HTTP_CONNECTION_TIMEOUT_S 10u
#define HTTP_BODY_MAX ((size_t)16 * 1024 * 1024)
/* Connections accepted before MHD runs: it reads their requests and closes
 * what was evicted before more arrive, so a probe that was accepted cannot
 * be pushed out by a burst behind it before its request is read. */
#define HTTP_ACCEPT_BATCH 16u
#define HTTP_ACCEPT_PAUSE_MS 100
/* The backlog bounds both the connections the kernel defers (no byte
 * received yet, for up to the header deadline: TCP_DEFER_ACCEPT) and the
 * accept queue. A burst waits there instead of being dropped: a dropped
 * SYN costs the client a 1 s retransmission, which is a failed probe. The
 * kernel caps it at net.core.somaxconn. */
#define HTTP_BACKLOG 4096

#define CT_JSON "application/json"
#define CT_METRICS "text/plain; version=0.0.4; charset=utf-8"
#define CT_TEXT "text/plain; charset=utf-8"

/* One connection MHD holds, from MHD_CONNECTION_NOTIFY_STARTED to
 * MHD_CONNECTION_NOTIFY_CLOSED. Listed in accept order. */
struct conn {
	struct conn *prev, *next;
	int fd;           /* MHD's; valid until MHD tells us it closed it */
	int64_t since_ms; /* accept, or the end of the previous response */
	bool kept_alive;  /* since_ms is the end of a response */
	bool answering;   /* a complete request is being answered */
	bool evicted;     /* shut down; MHD closes it on its next run */
};

struct ca_http {
	struct ca_loop *loop;             /* borrowed */
	const struct ca_http_handlers *h; /* borrowed */
	void *arg;                        /* borrowed, passed to handlers */
	struct MHD_Daemon *daemon;        /* owned */
	int listen_fd;                    /* owned */
	int port;
	struct ca_loop_fd *listen_watch; /* owned */
	struct ca_loop_fd *epoll_watch;  /* owned */
	struct ca_loop_timer *timer;     /* owned: MHD's timeout and our deadlines */
	struct ca_loop_timer *resume;    /* owned: ends an accept pause */
	bool accept_paused;
	struct conn *head, *tail; /* owned */
	unsigned nconns;          /* listed */
	unsigned nlive;           /* listed and not evicted */
	uint64_t requests;
};

/* ------------------------------------------------------------------------ */
/* Connection budget */

static void evict(struct ca_http *http, struct conn *c)
{
	assert(!c->evicted && http->nlive > 0);
	/* MHD still owns the fd and closes it; shutdown() only makes its next
	 * recv() see end of file. */
	(void)shutdown(c->fd, SHUT_RDWR);
	c->evicted = true;
	http->nlive--;
}

/* Evict the oldest connection not answering a request, else (if busy_too)
 * the oldest one answering. Returns false when there is nothing to evict.
 * Ties go to the earlier accepted (the list is in accept order). */
static bool evict_oldest(struct ca_http *http, bool busy_too)
{
	struct conn *idle = NULL, *busy = NULL;
	for (struct conn *c = http->head; c; c = c->next) {
		if (c->evicted)
			continue;
		struct conn **best = c->answering ? &busy : &idle;
		if (!*best || c->since_ms < (*best)->since_ms)
			*best = c;
	}
	struct conn *victim = idle ? idle : busy_too ? busy : NULL;
	if (!victim)
		return false;
	evict(http, victim);
	return true;
}

static int64_t deadline_ms(const struct conn *c)
{
	return c->since_ms + (c->kept_alive ? HTTP_KEEPALIVE_IDLE_MS : HTTP_HEADER_DEADLINE_MS);
}

/* Evict the connections whose request is overdue; returns the earliest
 * deadline still ahead, or INT64_MAX. */
static int64_t enforce_deadlines(struct ca_http *http, int64_t now)
{
	int64_t next = INT64_MAX;
	for (struct conn *c = http->head; c; c = c->next) {
		if (c->evicted || c->answering)
			continue;
		int64_t due = deadline_ms(c);
		if (due <= now)
			evict(http, c);
		else if (due < next)
			next = due;
	}
	return next;
}

static void on_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                          enum MHD_ConnectionNotificationCode code)
{
	struct ca_http *http = cls;
	if (code == MHD_CONNECTION_NOTIFY_CLOSED) {
		struct conn *c = *socket_context;
		if (!c)
			return;
		*socket_context = NULL;
		assert(http->nconns > 0 && (c->evicted || http->nlive > 0));
		if (c->prev)
			c->prev->next = c->next;
		else
			http->head = c->next;
		if (c->next)
			c->next->prev = c->prev;
		else
			http->tail = c->prev;
		http->nconns--;
		if (!c->evicted)
			http->nlive--;
		free(c);
		return;
	}
	if (code != MHD_CONNECTION_NOTIFY_STARTED)
		return;
	const union MHD_ConnectionInfo *info =
	        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CONNECTION_FD);
	struct conn *c = calloc(1, sizeof *c);
	if (!c || !info) {
		/* A connection we cannot account for must not stay: MHD closes
		 * it on its next run. */
		free(c);
		if (info)
			(void)shutdown(info->connect_fd, SHUT_RDWR);
		return;
	}
	c->fd = info->connect_fd;
	c->since_ms = ca_now_monotonic_ms();
	c->prev = http->tail;
	if (http->tail)
		http->tail->next = c;
	else
		http->head = c;
	http->tail = c;
	http->nconns++;
	http->nlive++;
	*socket_context = c;
}

static struct conn *conn_of(struct MHD_Connection *connection)
{
	const union MHD_ConnectionInfo *info =
	        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	return info ? info->socket_context : NULL;
}

/* The response went out (or the request was abandoned): the connection
 * waits for its next request, if it is kept alive. */
static void on_completed(void *cls, struct MHD_Connection *connection, void **req_cls,
                         enum MHD_RequestTerminationCode code)
{
	(void)cls;
	(void)req_cls;
	(void)code;
	struct conn *c = conn_of(connection);
	if (!c)
		return;
	c->answering = false;
	c->kept_alive = true;
	c->since_ms = ca_now_monotonic_ms();
}

/* ------------------------------------------------------------------------ */
/* Driving libmicrohttpd from the loop */

/* An upper bound on the timer: MHD_run() at least once a second even when
 * MHD asks for no timeout, so that nothing it left in an edge-triggered
 * set waits for new network activity. */
#define HTTP_MAX_IDLE_RUN_MS 1000

static void rearm(struct ca_http *http)
{
	int64_t now = ca_now_monotonic_ms();
	int64_t wait_ms = HTTP_MAX_IDLE_RUN_MS;
	MHD_UNSIGNED_LONG_LONG mhd_ms = 0;
	if (MHD_get_timeout(http->daemon, &mhd_ms) == MHD_YES &&
	    mhd_ms < (MHD_UNSIGNED_LONG_LONG)wait_ms)
		wait_ms = (int64_t)mhd_ms;
	int64_t next = enforce_deadlines(http, now);
	if (next != INT64_MAX && next - now < wait_ms)
		wait_ms = next - now;
	ca_loop_timer_start(http->timer, wait_ms, 0);
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
	struct ca_http *http = arg;
	/* Shut down what is overdue before MHD runs, so this run closes it. */
	(void)enforce_deadlines(http, ca_now_monotonic_ms());
	run_daemon(http);
}

/* ------------------------------------------------------------------------ */
/* Accepting */

static void pause_accepting(struct ca_http *http)
{
	if (http->accept_paused)
		return;
	if (ca_loop_fd_modify(http->listen_watch, 0) != CA_OK)
		return; /* cannot pause: the next turn simply tries again */
	http->accept_paused = true;
	ca_loop_timer_start(http->resume, HTTP_ACCEPT_PAUSE_MS, 0);
}

static void on_resume(void *arg)
{
	struct ca_http *http = arg;
	if (ca_loop_fd_modify(http->listen_watch, CA_LOOP_READ) == CA_OK)
		http->accept_paused = false;
	else
		ca_loop_timer_start(http->resume, HTTP_ACCEPT_PAUSE_MS, 0);
}

/* Accept up to HTTP_ACCEPT_BATCH connections. Returns false when out of
 * fds or kernel memory: accepting must pause. */
static bool accept_batch(struct ca_http *http)
{
	for (unsigned i = 0; i < HTTP_ACCEPT_BATCH; i++) {
		if (http->nconns >= HTTP_MHD_CONNECTION_LIMIT)
			return true; /* MHD must close what was evicted first */
		struct sockaddr_storage addr;
		socklen_t addrlen = sizeof addr;
		int fd = accept4(http->listen_fd, (struct sockaddr *)&addr, &addrlen,
		                 SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return true;
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
			case EPERM:
				continue; /* that connection is gone; the next may be fine */
			default:
				/* EMFILE, ENFILE, ENOBUFS, ENOMEM: make room and wait.
				 * A response being sent keeps its fd. */
				(void)evict_oldest(http, false);
				return false;
			}
		}
		if (http->nlive >= HTTP_CONNECTION_CAP)
			(void)evict_oldest(http, true);
		/* On failure MHD has closed fd (and told us, if it had told us
		 * about it at all); nothing to undo. */
		(void)MHD_add_connection(http->daemon, fd, (struct sockaddr *)&addr, addrlen);
	}
	return true;
}

static void on_listen(void *arg, int fd, int events)
{
	struct ca_http *http = arg;
	(void)fd;
	(void)events;
	bool fds_left = accept_batch(http);
	run_daemon(http);
	/* Still at MHD's limit after it ran: what was evicted has not closed
	 * yet, and the listening socket would wake us again at once. */
	if (!fds_left || http->nconns >= HTTP_MHD_CONNECTION_LIMIT)
		pause_accepting(http);
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
	const char *cl =
	        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
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
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
	struct ca_http *http = cls;
	(void)version;
	(void)upload_data;

	/* A request refused for its method or its body is answered on the
	 * first call, before any body is read: MHD then discards what follows
	 * and closes the connection. Any other is answered on the second call,
	 * once MHD knows there is no body: a response queued on the first call
	 * would make libmicrohttpd close the connection too, where a scraper
	 * could keep it alive. */
	static char refused, accepted;
	if (*req_cls == &refused || (*req_cls == &accepted && *upload_data_size != 0)) {
		*upload_data_size = 0; /* body bytes we refused */
		return MHD_YES;
	}
	if (!*req_cls) {
		struct conn *c = conn_of(conn);
		if (c)
			c->answering = true;
		*req_cls = &refused;
		bool head = strcmp(method, MHD_HTTP_METHOD_HEAD) == 0;
		if (!head && strcmp(method, MHD_HTTP_METHOD_GET) != 0)
			return send_text(http, conn, MHD_HTTP_METHOD_NOT_ALLOWED,
			                 "method not allowed\n", "GET, HEAD");
		if (has_body(conn))
			return send_text(http, conn, MHD_HTTP_CONTENT_TOO_LARGE,
			                 "request bodies are not accepted\n", NULL);
		*req_cls = &accepted;
		return MHD_YES;
	}

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
		enum MHD_Result ret =
		        send_response(http, conn, MHD_HTTP_OK, CT_METRICS, &body, NULL);
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
		/* TCP_DEFER_ACCEPT is best effort: without it an idle
		 * connection takes a slot until it is evicted. */
		int one = 1, defer_s = HTTP_HEADER_DEADLINE_MS / 1000;
		(void)setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer_s, sizeof defer_s);
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

	/* clang-format off */
	http->daemon = MHD_start_daemon(
		MHD_USE_EPOLL | MHD_USE_NO_LISTEN_SOCKET, 0, NULL, NULL, on_request, http,
		MHD_OPTION_CONNECTION_LIMIT, HTTP_MHD_CONNECTION_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT, HTTP_CONNECTION_TIMEOUT_S,
		MHD_OPTION_CONNECTION_MEMORY_LIMIT, HTTP_CONNECTION_POOL_BYTES,
		MHD_OPTION_NOTIFY_CONNECTION, on_connection, http,
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, http,
		MHD_OPTION_UNESCAPE_CALLBACK, keep_escapes, http,
		MHD_OPTION_END);
	/* clang-format on */
	if (!http->daemon) {
		rc = CA_EIO;
		set_err(err, errlen, endpoint, "libmicrohttpd failed to start");
		goto out;
	}

	const union MHD_DaemonInfo *info =
	        MHD_get_daemon_info(http->daemon, MHD_DAEMON_INFO_EPOLL_FD);
	if (!info || info->epoll_fd < 0) {
		rc = CA_EIO;
		set_err(err, errlen, endpoint, "libmicrohttpd has no epoll fd");
		goto out;
	}
	if ((rc = ca_loop_timer_new(loop, on_timer, http, &http->timer)) != CA_OK ||
	    (rc = ca_loop_timer_new(loop, on_resume, http, &http->resume)) != CA_OK ||
	    (rc = ca_loop_fd_add(loop, info->epoll_fd, CA_LOOP_READ, on_epoll_fd, http,
	                         &http->epoll_watch)) != CA_OK ||
	    (rc = ca_loop_fd_add(loop, http->listen_fd, CA_LOOP_READ, on_listen, http,
	                         &http->listen_watch)) != CA_OK) {
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
	ca_loop_fd_del(http->listen_watch);
	ca_loop_fd_del(http->epoll_watch);
	ca_loop_timer_free(http->timer);
	ca_loop_timer_free(http->resume);
	/* Closes every connection; on_connection() frees each record. */
	if (http->daemon)
		MHD_stop_daemon(http->daemon);
	while (http->head) { /* only if MHD failed to report a close */
		struct conn *c = http->head;
		http->head = c->next;
		free(c);
	}
	if (http->listen_fd >= 0)
		close(http->listen_fd);
	free(http);
}

void ca_http_budget(struct ca_budget *b)
{
	/* libmicrohttpd's per-connection pool and a response being sent:
	 * /metrics renders about 12 KiB, /health 4 KiB (32 KiB counted). */
	ca_budget_add(b, "http: connections (pool each, a response per counted one)", "",
	              (uint64_t)HTTP_MHD_CONNECTION_LIMIT * HTTP_CONNECTION_POOL_BYTES +
	                  (uint64_t)HTTP_CONNECTION_CAP * (32 << 10));
}
