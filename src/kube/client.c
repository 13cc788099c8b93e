/* kube/client.c: the Kubernetes API client over libcurl.
 *
 * One CURLM multi handle, driven by the agent's ca_loop through the multi
 * socket API (curl docs/internals/MULTI-EV.md): libcurl tells us which
 * sockets to watch and when to call it back; the loop calls
 * curl_multi_socket_action() and then this file's dispatch step, which is the
 * only place user callbacks run. libcurl's own callbacks (write, header,
 * socket, timer) only store bytes and flags, so nothing a user callback does
 * (cancel, free, start another request) can pull an easy handle out from
 * under libcurl while it is using it. */
#include "core/file.h"
#include "kube/kube.h"

#include <curl/curl.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/timeutil.h"
#include "kube/client_int.h"
#include "kube/kube_int.h"
#include "kube/prune.h"
#include "kube/watch.h"
#include "log/log.h"

#define DEFAULT_MAX_BODY ((size_t)4 << 20)
#define DEFAULT_REQUEST_TIMEOUT_MS 10000
#define DEFAULT_CONNECT_TIMEOUT_MS 5000
/* A non-2xx answer is a Status object: a few hundred bytes. */
#define ERROR_BODY_MAX ((size_t)64 << 10)
/* Stream bytes not yet handed to the consumer. Past the soft cap the write
 * callback pauses libcurl (which keeps the data it has not handed over).
 * Streams are not gzip-decoded, so libcurl hands over at most its buffer
 * (CURLOPT_BUFFERSIZE, 16 KiB) per call: the hard cap leaves room for that
 * and is never reached by a well-behaved libcurl. kube.h's memory budget
 * counts the hard cap per watch. */
#define PENDING_SOFT_CAP ((size_t)128 << 10)
#define PENDING_HARD_CAP (PENDING_SOFT_CAP + ((size_t)64 << 10))
_Static_assert(PENDING_HARD_CAP <= CA_WATCH_FEED_MAX, "the parser's kept cap assumes this");
/* Connections to the API server: one per watch (each holds an HTTP/1.1
 * connection for its lifetime, see the stream options below) plus room for
 * LISTs and one-shot requests; at least 16. libcurl queues a request over
 * the limit until a connection frees, and a watch never frees one: with too
 * low a limit, watches beyond it would never start. */
#define SPARE_CONNECTIONS 4
#define MIN_HOST_CONNECTIONS 16
#define MAX_CODES 24

struct code_count {
	char code[24];
	uint64_t n;
};

struct ca_kube_xfer {
	struct ca_kube *kube;
	struct ca_kube_xfer *prev, *next;
	CURL *easy;
	struct curl_slist *user_headers; /* copies of the request's headers */
	struct curl_slist *headers;      /* what the easy handle uses */
	char *url;
	char *path;                      /* for error messages ("GET /api/v1/pods") */
	char *method;                    /* NULL = GET */
	bool api;                        /* credentials and API CA apply */
	bool aggregated;                 /* an extension API server answers (see note_result) */
	bool stream;
	bool prune;                      /* cut managedFields from a 2xx one-shot body */
	bool in_multi;
	bool retried_401;
	size_t max_body;

	/* The response, filled by libcurl's callbacks. */
	long status;
	bool headers_done;
	bool response_reported;
	int64_t retry_after_s;
	char content_type[128];
	struct ca_buf body;     /* one-shot body, or a stream's non-2xx body */
	struct ca_buf pending;  /* stream bytes not yet given to on_data */
	bool curl_paused;       /* the write callback returned CURL_WRITEFUNC_PAUSE */
	bool user_paused;
	bool too_big;
	bool finished;
	CURLcode result;
	char errbuf[CURL_ERROR_SIZE];

	/* Who is told. */
	const struct ca_kube_xfer_ops *ops;
	void *arg;
	ca_kube_response_cb resp_cb;
	void *resp_arg;

	int busy;          /* inside one of our callbacks */
	bool cancelled;    /* freed when busy drops to 0 */
	bool completed;    /* on_done has been called */
};

struct ca_kube {
	struct ca_loop *loop;
	struct ca_kube_credentials cred;
	char *user_agent;
	int64_t request_timeout_ms;
	int64_t connect_timeout_ms;
	char *api_base;      /* scheme://host:port[/prefix] used in URLs */
	char *host_header;   /* "Host: ..." when tls_server_name rewrites the URL */
	struct curl_slist *connect_to; /* "sni:port:host:port"; outlives every easy handle */
	char *auth_header;   /* "Authorization: Bearer ..." (secret) */

	CURLM *multi;
	struct ca_loop_timer *curl_timer;     /* libcurl's timeout */
	struct ca_loop_timer *dispatch_timer; /* work made runnable outside dispatch */
	struct ca_kube_xfer *xfers;
	bool dispatching;
	bool list_slot_taken;
	struct ca_kube_slot_waiter *slot_head, *slot_tail;

	struct code_count codes[MAX_CODES];
	size_t ncodes;
	uint64_t other_codes;
	uint64_t transport_errors;
	uint64_t watch_restarts;
	uint64_t token_refreshes;
	bool api_ok;
	int64_t last_success_ms;
	char last_error[256];
};

static int global_refs;

/* ------------------------------------------------------------------ */
/* Small helpers */

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}


static char *printf_str(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *printf_str(const char *fmt, ...)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	va_list ap;
	va_start(ap, fmt);
	enum ca_err e = ca_buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (e != CA_OK) {
		ca_buf_fini(&b);
		return NULL;
	}
	return ca_buf_take(&b, NULL);
}

static enum ca_err map_curl(CURLcode c)
{
	switch (c) {
	case CURLE_OK:
		return CA_OK;
	case CURLE_OPERATION_TIMEDOUT:
		return CA_ETIMEDOUT;
	case CURLE_OUT_OF_MEMORY:
		return CA_ENOMEM;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		return CA_EINVAL;
	case CURLE_FILESIZE_EXCEEDED:
		return CA_ETOOBIG;
	default:
		return CA_EIO;
	}
}

static void count_code(struct ca_kube *k, long status)
{
	if (status <= 0) {
		k->transport_errors++;
		return;
	}
	char code[24];
	snprintf(code, sizeof code, "%ld", status);
	for (size_t i = 0; i < k->ncodes; i++) {
		if (strcmp(k->codes[i].code, code) == 0) {
			k->codes[i].n++;
			return;
		}
	}
	if (k->ncodes == MAX_CODES) {
		k->other_codes++;
		return;
	}
	ca_strlcpy(k->codes[k->ncodes].code, code, sizeof k->codes[k->ncodes].code);
	k->codes[k->ncodes].n = 1;
	k->ncodes++;
}

/* Rebuild the Authorization header when the token changed. */
static enum ca_err update_auth(struct ca_kube *k)
{
	if (!k->cred.token || !*k->cred.token) {
		ca_free_secret(k->auth_header);
		k->auth_header = NULL;
		return CA_OK;
	}
	static const char prefix[] = "Authorization: Bearer ";
	if (k->auth_header && strncmp(k->auth_header, prefix, sizeof prefix - 1) == 0 &&
	    strcmp(k->auth_header + sizeof prefix - 1, k->cred.token) == 0)
		return CA_OK;
	char *h = printf_str("%s%s", prefix, k->cred.token);
	if (!h)
		return CA_ENOMEM;
	ca_free_secret(k->auth_header);
	k->auth_header = h;
	return CA_OK;
}

/* With tls-server-name, the URL carries that name (libcurl uses the URL host
 * for SNI and certificate checks) and CONNECT_TO sends the connection to the
 * real server; the Host header keeps the real name, as client-go does. */
static enum ca_err setup_base(struct ca_kube *k)
{
	enum ca_err err = CA_OK;
	CURLU *u = NULL;
	char *host = NULL, *port = NULL, *url = NULL;

	if (!k->cred.tls_server_name || !*k->cred.tls_server_name) {
		k->api_base = dup_str(k->cred.server);
		return k->api_base ? CA_OK : CA_ENOMEM;
	}
	err = CA_EINVAL;
	u = curl_url();
	if (!u) {
		err = CA_ENOMEM;
		goto out;
	}
	if (curl_url_set(u, CURLUPART_URL, k->cred.server, 0) != CURLUE_OK)
		goto out;
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto out;
	if (curl_url_set(u, CURLUPART_HOST, k->cred.tls_server_name, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_URL, &url, 0) != CURLUE_OK)
		goto out;
	/* curl_url_get adds a "/" path; our paths bring their own. */
	size_t n = strlen(url);
	if (n > 0 && url[n - 1] == '/')
		url[n - 1] = '\0';
	k->api_base = dup_str(url);
	char *ct = printf_str("%s:%s:%s:%s", k->cred.tls_server_name, port, host, port);
	if (ct)
		k->connect_to = curl_slist_append(NULL, ct);
	free(ct);
	k->host_header = printf_str("Host: %s:%s", host, port);
	err = (k->api_base && k->connect_to && k->host_header) ? CA_OK : CA_ENOMEM;
out:
	curl_free(host);
	curl_free(port);
	curl_free(url);
	curl_url_cleanup(u);
	return err;
}

/* ------------------------------------------------------------------ */
/* libcurl callbacks: store and return, never call out. */

static size_t header_cb(char *buf, size_t size, size_t nitems, void *ud)
{
	struct ca_kube_xfer *x = ud;
	size_t len = size * nitems;

	if (len >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
		/* A new response (after a 1xx, or a retry): forget the last one. */
		x->retry_after_s = -1;
		x->content_type[0] = '\0';
		x->headers_done = false;
		return len;
	}
	if (len <= 2 && (len == 0 || buf[0] == '\r' || buf[0] == '\n')) {
		long code = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code >= 200) {
			x->status = code;
			x->headers_done = true;
		}
		return len;
	}
	const char *colon = memchr(buf, ':', len);
	if (!colon)
		return len;
	size_t nlen = (size_t)(colon - buf);
	const char *v = colon + 1;
	const char *end = buf + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
		end--;
	size_t vlen = (size_t)(end - v);
	if (nlen == 11 && strncasecmp(buf, "Retry-After", 11) == 0) {
		char tmp[24];
		if (vlen > 0 && vlen < sizeof tmp) {
			memcpy(tmp, v, vlen);
			tmp[vlen] = '\0';
			char *ep = NULL;
			errno = 0;
			long long s = strtoll(tmp, &ep, 10);
			if (errno == 0 && ep && *ep == '\0' && s >= 0)
				x->retry_after_s = s;
		}
	} else if (nlen == 12 && strncasecmp(buf, "Content-Type", 12) == 0) {
		if (vlen >= sizeof x->content_type)
			vlen = sizeof x->content_type - 1;
		memcpy(x->content_type, v, vlen);
		x->content_type[vlen] = '\0';
	}
	return len;
}

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct ca_kube_xfer *x = ud;
	size_t len = size * nmemb;

	if (!x->stream) {
		if (ca_buf_append(&x->body, ptr, len) != CA_OK) {
			x->too_big = true;
			return 0; /* CURLE_WRITE_ERROR */
		}
		return len;
	}
	if (!x->headers_done || x->status < 200 || x->status > 299) {
		/* A Status object explaining a failure: keep its start. */
		if (x->body.len < ERROR_BODY_MAX) {
			size_t room = ERROR_BODY_MAX - x->body.len;
			ca_buf_append(&x->body, ptr, len < room ? len : room);
		}
		return len;
	}
	if (x->user_paused || x->pending.len >= PENDING_SOFT_CAP) {
		x->curl_paused = true;
		return CURL_WRITEFUNC_PAUSE;
	}
	if (ca_buf_append(&x->pending, ptr, len) != CA_OK) {
		x->too_big = true;
		return 0;
	}
	return len;
}

static void on_fd(void *arg, int fd, int events);

static int socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct ca_kube *k = userp;
	struct ca_loop_fd *h = socketp;
	(void)easy;

	if (what == CURL_POLL_REMOVE) {
		if (h) {
			ca_loop_fd_del(h);
			curl_multi_assign(k->multi, s, NULL);
		}
		return 0;
	}
	int ev = 0;
	if (what & CURL_POLL_IN)
		ev |= CA_LOOP_READ;
	if (what & CURL_POLL_OUT)
		ev |= CA_LOOP_WRITE;
	if (h)
		return ca_loop_fd_modify(h, ev) == CA_OK ? 0 : -1;
	if (ca_loop_fd_add(k->loop, s, ev, on_fd, k, &h) != CA_OK)
		return -1;
	curl_multi_assign(k->multi, s, h);
	return 0;
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
	struct ca_kube *k = userp;
	(void)multi;
	if (timeout_ms < 0)
		ca_loop_timer_stop(k->curl_timer);
	else
		ca_loop_timer_start(k->curl_timer, timeout_ms, 0);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Transfers */

static void xfer_destroy(struct ca_kube_xfer *x)
{
	if (!x)
		return;
	struct ca_kube *k = x->kube;
	if (x->prev)
		x->prev->next = x->next;
	else if (k->xfers == x)
		k->xfers = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (x->easy) {
		if (x->in_multi)
			curl_multi_remove_handle(k->multi, x->easy);
		curl_easy_cleanup(x->easy);
	}
	curl_slist_free_all(x->user_headers);
	curl_slist_free_all(x->headers);
	free(x->url);
	free(x->path);
	free(x->method);
	ca_buf_fini(&x->body);
	ca_buf_fini(&x->pending);
	free(x);
}

static bool has_header(const struct curl_slist *l, const char *name)
{
	size_t n = strlen(name);
	for (; l; l = l->next)
		if (strncasecmp(l->data, name, n) == 0 && l->data[n] == ':')
			return true;
	return false;
}

static enum ca_err build_headers(struct ca_kube_xfer *x)
{
	struct ca_kube *k = x->kube;
	struct curl_slist *l = NULL, *t;
	for (const struct curl_slist *u = x->user_headers; u; u = u->next) {
		if (!(t = curl_slist_append(l, u->data)))
			goto fail;
		l = t;
	}
	if (!has_header(x->user_headers, "Accept")) {
		if (!(t = curl_slist_append(l, "Accept: application/json")))
			goto fail;
		l = t;
	}
	if (x->api && k->host_header) {
		if (!(t = curl_slist_append(l, k->host_header)))
			goto fail;
		l = t;
	}
	if (x->api && k->auth_header && !has_header(x->user_headers, "Authorization")) {
		if (!(t = curl_slist_append(l, k->auth_header)))
			goto fail;
		l = t;
	}
	curl_slist_free_all(x->headers);
	x->headers = l;
	return curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, l) == CURLE_OK ? CA_OK : CA_EINVAL;
fail:
	curl_slist_free_all(l);
	return CA_ENOMEM;
}

static enum ca_err apply_tls(struct ca_kube_xfer *x)
{
	struct ca_kube_credentials *c = &x->kube->cred;
	CURL *e = x->easy;
	CURLcode rc = CURLE_OK;

	if (c->insecure_skip_tls_verify) {
		rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		rc |= curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	/* Trust the cluster's CA only, not the system store as well. */
	if (c->ca_pem && c->ca_pem_len) {
		struct curl_blob blob = { c->ca_pem, c->ca_pem_len, CURL_BLOB_COPY };
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
		rc |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	} else if (c->ca_file) {
		rc |= curl_easy_setopt(e, CURLOPT_CAINFO, c->ca_file);
		rc |= curl_easy_setopt(e, CURLOPT_CAPATH, NULL);
	}
	if (c->client_cert_pem && c->client_cert_pem_len) {
		struct curl_blob blob = { c->client_cert_pem, c->client_cert_pem_len, CURL_BLOB_COPY };
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &blob);
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	} else if (c->client_cert_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERT, c->client_cert_file);
		rc |= curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	}
	if (c->client_key_pem && c->client_key_pem_len) {
		struct curl_blob blob = { c->client_key_pem, c->client_key_pem_len, CURL_BLOB_COPY };
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &blob);
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	} else if (c->client_key_file) {
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEY, c->client_key_file);
		rc |= curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
	}
	if (c->username && c->password && !x->kube->auth_header) {
		rc |= curl_easy_setopt(e, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		rc |= curl_easy_setopt(e, CURLOPT_USERNAME, c->username);
		rc |= curl_easy_setopt(e, CURLOPT_PASSWORD, c->password);
	}
	if (x->kube->connect_to)
		rc |= curl_easy_setopt(e, CURLOPT_CONNECT_TO, x->kube->connect_to);
	return rc == CURLE_OK ? CA_OK : CA_EINVAL;
}

struct xfer_spec {
	const char *method;
	const char *path;
	const char *url;
	const char *const *headers;
	const char *body;
	size_t body_len;
	int64_t timeout_ms;
	int64_t idle_timeout_s;
	size_t max_body;
	bool stream;
	bool prune_managed_fields;
	bool aggregated;
};

static enum ca_err setup_easy(struct ca_kube_xfer *x, const struct xfer_spec *s)
{
	struct ca_kube *k = x->kube;
	CURL *e = x->easy;
	CURLcode rc = CURLE_OK;

	rc |= curl_easy_setopt(e, CURLOPT_URL, x->url);
	rc |= curl_easy_setopt(e, CURLOPT_PRIVATE, x);
	rc |= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	rc |= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	/* gzip only for one-shot answers, whose decoded size max_body caps.
	 * A watch is not compressed by the API server anyway, and a paused
	 * gzip stream would let libcurl decode (and hold) more than our
	 * pending cap: a small hostile stream could inflate without bound. */
	if (!s->stream)
		rc |= curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
	rc |= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)k->connect_timeout_ms);
	rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
	rc |= curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
	rc |= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, write_cb);
	rc |= curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, header_cb);
	rc |= curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	if (k->user_agent)
		rc |= curl_easy_setopt(e, CURLOPT_USERAGENT, k->user_agent);
	if (s->stream) {
		/* No total limit: a watch lives until the server's timeoutSeconds.
		 * A stream silent for longer than that is dead. HTTP/1.1 so that
		 * pausing one watch pushes back on its own TCP connection instead
		 * of on a multiplexed one shared with other requests. */
		rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 0L);
		if (s->idle_timeout_s > 0) {
			rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
			rc |= curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, (long)s->idle_timeout_s);
		}
		rc |= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	} else {
		int64_t t = s->timeout_ms > 0 ? s->timeout_ms : k->request_timeout_ms;
		rc |= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)t);
		rc |= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max_body);
	}
	if (x->method && strcmp(x->method, "GET") != 0) {
		if (strcmp(x->method, "POST") == 0)
			rc |= curl_easy_setopt(e, CURLOPT_POST, 1L);
		else
			rc |= curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, x->method);
	}
	if (s->body) {
		rc |= curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)s->body_len);
		rc |= curl_easy_setopt(e, CURLOPT_COPYPOSTFIELDS, s->body);
	}
	/* Absolute URLs are cloud metadata endpoints: link-local, answering
	 * only the node itself, so an http_proxy from the environment must
	 * never carry them (Azure IMDS documents this). */
	if (!x->api)
		rc |= curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	if (rc != CURLE_OK)
		return CA_EINVAL;
	if (x->api) {
		enum ca_err err = apply_tls(x);
		if (err != CA_OK)
			return err;
	}
	return build_headers(x);
}

static enum ca_err xfer_add(struct ca_kube_xfer *x)
{
	if (curl_multi_add_handle(x->kube->multi, x->easy) != CURLM_OK)
		return CA_EIO;
	x->in_multi = true;
	return CA_OK;
}

static enum ca_err xfer_start(struct ca_kube *k, const struct xfer_spec *s,
                              struct ca_kube_xfer **out)
{
	enum ca_err err = CA_ENOMEM;
	struct ca_kube_xfer *x = NULL;

	*out = NULL;
	if ((!s->path && !s->url) || (s->path && s->path[0] != '/'))
		return CA_EINVAL;
	x = calloc(1, sizeof *x);
	if (!x)
		goto out;
	x->kube = k;
	x->api = s->url == NULL;
	x->stream = s->stream;
	x->prune = s->prune_managed_fields;
	x->aggregated = s->aggregated;
	x->max_body = s->max_body ? s->max_body : DEFAULT_MAX_BODY;
	x->retry_after_s = -1;
	ca_buf_init(&x->body, x->max_body);
	ca_buf_init(&x->pending, PENDING_HARD_CAP);
	/* Link first so xfer_destroy can unlink a half-built transfer. */
	x->next = k->xfers;
	if (k->xfers)
		k->xfers->prev = x;
	k->xfers = x;

	x->path = strdup(s->url ? s->url : s->path);
	if (!x->path)
		goto out;
	if (s->method && !(x->method = strdup(s->method)))
		goto out;
	if (x->api) {
		x->url = printf_str("%s%s", k->api_base, s->path);
		/* A projected token rotates: pick up a new file cheaply (stat). */
		if (k->cred.token_file) {
			int64_t seen = k->cred.token_mtime_ns;
			ca_kube_credentials_refresh_token(&k->cred, false, NULL, 0);
			if (k->cred.token_mtime_ns != seen)
				k->token_refreshes++;
		}
		if ((err = update_auth(k)) != CA_OK)
			goto out;
		err = CA_ENOMEM;
	} else {
		x->url = strdup(s->url);
	}
	if (!x->url)
		goto out;
	for (const char *const *h = s->headers; h && *h; h++) {
		struct curl_slist *t = curl_slist_append(x->user_headers, *h);
		if (!t)
			goto out;
		x->user_headers = t;
	}
	if (!(x->easy = curl_easy_init()))
		goto out;
	if ((err = setup_easy(x, s)) != CA_OK)
		goto out;
	if ((err = xfer_add(x)) != CA_OK)
		goto out;
	*out = x;
	x = NULL;
	err = CA_OK;
out:
	xfer_destroy(x);
	return err;
}

static void arm_dispatch(struct ca_kube *k)
{
	if (!ca_loop_timer_active(k->dispatch_timer))
		ca_loop_timer_start(k->dispatch_timer, 0, 0);
}

enum ca_err ca_kube_xfer_start(struct ca_kube *kube, const struct ca_kube_xfer_params *params,
                               const struct ca_kube_xfer_ops *ops, void *arg,
                               struct ca_kube_xfer **out)
{
	struct xfer_spec s = {
		.path = params->path,
		.timeout_ms = params->timeout_ms,
		.idle_timeout_s = params->idle_timeout_s,
		.max_body = params->max_body,
		.stream = params->stream,
		.prune_managed_fields = params->prune_managed_fields,
		.aggregated = params->aggregated,
	};
	struct ca_kube_xfer *x = NULL;
	enum ca_err err = xfer_start(kube, &s, &x);
	if (err != CA_OK)
		return err;
	x->ops = ops;
	x->arg = arg;
	*out = x;
	return CA_OK;
}

void ca_kube_xfer_cancel(struct ca_kube_xfer *x)
{
	if (!x || x->cancelled)
		return;
	x->cancelled = true;
	if (x->in_multi) {
		curl_multi_remove_handle(x->kube->multi, x->easy);
		x->in_multi = false;
	}
	if (x->busy == 0)
		xfer_destroy(x);
}

void ca_kube_xfer_pause(struct ca_kube_xfer *x)
{
	/* The write callback sees the flag and pauses libcurl itself. */
	if (x)
		x->user_paused = true;
}

void ca_kube_xfer_resume(struct ca_kube_xfer *x)
{
	if (!x || !x->user_paused)
		return;
	x->user_paused = false;
	arm_dispatch(x->kube);
}

enum ca_err ca_kube_refresh_token(struct ca_kube *kube)
{
	if (!kube->cred.token_file)
		return CA_ENOTFOUND;
	kube->token_refreshes++;
	enum ca_err err = ca_kube_credentials_refresh_token(&kube->cred, true, NULL, 0);
	if (err != CA_OK)
		return err;
	return update_auth(kube);
}

struct ca_loop *ca_kube_loop(const struct ca_kube *kube)
{
	return kube->loop;
}

void ca_kube_count_watch_restart(struct ca_kube *kube)
{
	kube->watch_restarts++;
}

/* ------------------------------------------------------------------ */
/* Dispatch: the one place user callbacks run. */

static void xfer_reset_response(struct ca_kube_xfer *x)
{
	x->status = 0;
	x->headers_done = false;
	x->response_reported = false;
	x->retry_after_s = -1;
	x->content_type[0] = '\0';
	ca_buf_reset(&x->body);
	ca_buf_reset(&x->pending);
	x->curl_paused = false;
	x->too_big = false;
	x->finished = false;
	x->result = CURLE_OK;
	x->errbuf[0] = '\0';
}

static void note_result(struct ca_kube *k, struct ca_kube_xfer *x, enum ca_err err,
                        long status, const char *error)
{
	if (!x->api)
		return;
	count_code(k, status);
	if (status == 0) {
		ca_set_err(k->last_error, sizeof k->last_error, "%s %s: %s",
		         x->method ? x->method : "GET", x->path, error);
		k->api_ok = false;
		return;
	}
	if (status == 401 || status == 403)
		return;
	/* metrics-server down is a 503 from the aggregator: the API server
	 * itself answered. */
	if (x->aggregated && status >= 500)
		return;
	if (status >= 500) {
		k->api_ok = false;
		return;
	}
	k->api_ok = true;
	k->last_success_ms = ca_now_monotonic_ms();
	k->last_error[0] = '\0';
}

static void complete(struct ca_kube *k, struct ca_kube_xfer *x)
{
	long status = x->status;
	if (!status)
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);

	/* A rotated token: re-read it and try once more. */
	if (x->api && status == 401 && !x->retried_401 && ca_kube_refresh_token(k) == CA_OK) {
		count_code(k, 401);
		x->retried_401 = true;
		xfer_reset_response(x);
		if (build_headers(x) == CA_OK && xfer_add(x) == CA_OK)
			return;
		x->finished = true;
		x->result = CURLE_OUT_OF_MEMORY;
	}

	enum ca_err err = x->too_big ? CA_ETOOBIG : map_curl(x->result);
	char msg[CURL_ERROR_SIZE + 64];
	msg[0] = '\0';
	if (x->too_big)
		snprintf(msg, sizeof msg, "response body larger than %zu bytes", x->max_body);
	else if (x->result != CURLE_OK)
		ca_set_err(msg, sizeof msg, "%s", x->errbuf[0] ? x->errbuf : curl_easy_strerror(x->result));
	/* The server answered even when we refused the body (too big). */
	note_result(k, x, err, status, msg);
	/* A one-shot answer counts only when it arrived whole. */
	if (!x->stream && err != CA_OK)
		status = 0;

	/* Before anyone parses it: a LIST page without its managedFields is
	 * often half the size, and so is its parsed tape. */
	if (x->prune && !x->stream && err == CA_OK && status >= 200 && status < 300 && x->body.data) {
		x->body.len = ca_kube_prune_managed_fields(x->body.data, x->body.data, x->body.len);
		x->body.data[x->body.len] = '\0';
	}

	x->completed = true;
	x->busy++;
	if (x->ops) {
		struct ca_kube_result res = {
			.err = err,
			.status = status,
			.body = x->body.data ? x->body.data : "",
			.len = x->body.len,
			.retry_after_s = x->retry_after_s,
			.content_type = x->content_type,
			.error = msg,
		};
		x->ops->on_done(x->arg, &res);
	} else if (x->resp_cb) {
		x->resp_cb(x->resp_arg, err, status, x->body.data ? x->body.data : "", x->body.len);
	}
	x->busy--;
	xfer_destroy(x);
}

/* Do one piece of work for x; true if something ran (the list may have
 * changed under the caller). */
static bool xfer_step(struct ca_kube *k, struct ca_kube_xfer *x)
{
	if (x->cancelled || x->completed)
		return false;
	bool ok2xx = x->headers_done && x->status >= 200 && x->status < 300;
	if (x->stream && ok2xx && !x->response_reported) {
		x->response_reported = true;
		if (x->api) {
			/* A watch that opens is the API server answering now. */
			k->api_ok = true;
			k->last_success_ms = ca_now_monotonic_ms();
			k->last_error[0] = '\0';
		}
		if (x->ops && x->ops->on_response) {
			x->busy++;
			x->ops->on_response(x->arg, x->status);
			x->busy--;
			if (x->cancelled)
				xfer_destroy(x);
		}
		return true;
	}
	if (x->stream && ok2xx && x->pending.len > 0 && !x->user_paused) {
		bool more = true;
		x->busy++;
		if (x->ops && x->ops->on_data)
			more = x->ops->on_data(x->arg, x->pending.data, x->pending.len);
		x->busy--;
		if (x->cancelled) {
			xfer_destroy(x);
			return true;
		}
		ca_buf_reset(&x->pending);
		if (!more)
			x->user_paused = true;
		return true;
	}
	if (x->curl_paused && !x->user_paused && !x->finished && x->in_multi) {
		x->curl_paused = false;
		/* May call write_cb at once with what libcurl held back. */
		curl_easy_pause(x->easy, CURLPAUSE_CONT);
		return true;
	}
	if (x->finished && (x->pending.len == 0 || !ok2xx)) {
		complete(k, x);
		return true;
	}
	return false;
}

static void process(struct ca_kube *k)
{
	if (k->dispatching)
		return;
	k->dispatching = true;
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(k->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct ca_kube_xfer *x = NULL;
		CURL *easy = m->easy_handle;
		CURLcode result = m->data.result;
		curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&x);
		if (!x)
			continue;
		x->finished = true;
		x->result = result;
		curl_multi_remove_handle(k->multi, easy);
		x->in_multi = false;
	}
	for (;;) {
		bool ran = false;
		for (struct ca_kube_xfer *x = k->xfers; x; x = x->next) {
			if (xfer_step(k, x)) {
				ran = true;
				break; /* the list may have changed: start over */
			}
		}
		if (!ran)
			break;
	}
	k->dispatching = false;
}

static void on_fd(void *arg, int fd, int events)
{
	struct ca_kube *k = arg;
	int flags = 0, running = 0;
	if (events & CA_LOOP_READ)
		flags |= CURL_CSELECT_IN;
	if (events & CA_LOOP_WRITE)
		flags |= CURL_CSELECT_OUT;
	if (events & CA_LOOP_ERROR)
		flags |= CURL_CSELECT_ERR;
	curl_multi_socket_action(k->multi, fd, flags, &running);
	process(k);
}

static void on_curl_timer(void *arg)
{
	struct ca_kube *k = arg;
	int running = 0;
	curl_multi_socket_action(k->multi, CURL_SOCKET_TIMEOUT, 0, &running);
	process(k);
}

static void on_dispatch_timer(void *arg)
{
	process(arg);
}

/* ------------------------------------------------------------------ */
/* Public API */

enum ca_err ca_kube_new(struct ca_kube **out, struct ca_loop *loop,
                        const struct ca_kube_options *opts, char *err, size_t errlen)
{
	enum ca_err rc = CA_ENOMEM;
	struct ca_kube *k = NULL;
	static const struct ca_kube_options none;

	*out = NULL;
	if (!opts)
		opts = &none;
	if (errlen)
		err[0] = '\0';
	if (global_refs++ == 0 && curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		global_refs--;
		snprintf(err, errlen, "libcurl initialisation failed");
		return CA_EIO;
	}
	k = calloc(1, sizeof *k);
	if (!k) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	k->loop = loop;
	k->request_timeout_ms = opts->request_timeout_ms > 0 ? opts->request_timeout_ms : DEFAULT_REQUEST_TIMEOUT_MS;
	k->connect_timeout_ms = opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : DEFAULT_CONNECT_TIMEOUT_MS;
	rc = ca_kube_credentials_find(opts, &k->cred, err, errlen);
	if (rc != CA_OK)
		goto out;
	rc = CA_ENOMEM;
	k->user_agent = strdup(opts->user_agent && *opts->user_agent ? opts->user_agent : "collect-agent");
	if (!k->user_agent)
		goto out;
	if (!k->cred.server || strncmp(k->cred.server, "http", 4) != 0) {
		snprintf(err, errlen, "API server URL \"%s\" is not http(s)", k->cred.server ? k->cred.server : "");
		rc = CA_EINVAL;
		goto out;
	}
	bool plain = strncmp(k->cred.server, "http://", 7) == 0;
	bool secret = k->cred.token || k->cred.token_file || k->cred.password;
	if (plain && secret && !opts->allow_insecure_http) {
		snprintf(err, errlen, "API server %s is plain http: its bearer token or password would "
		         "cross the network in clear text; use https, or set "
		         "kubernetes.allow_insecure_http: true to send it anyway", k->cred.server);
		rc = CA_EDENIED;
		goto out;
	}
	if (plain)
		ca_log(CA_LOG_WARN, "kube", "the API server is plain http: nothing is encrypted or verified",
		       "server", k->cred.server, "credentials_sent", secret ? "yes (kubernetes.allow_insecure_http)" : "none",
		       NULL);
	if (k->cred.insecure_skip_tls_verify)
		ca_log(CA_LOG_WARN, "kube", "TLS verification of the API server is off (insecure-skip-tls-verify "
		       "in the kubeconfig): anyone on the path can pose as the API server and read the token",
		       "server", k->cred.server, NULL);
	rc = setup_base(k);
	if (rc != CA_OK) {
		snprintf(err, errlen, "cannot use tls-server-name \"%s\" with server %s",
		         k->cred.tls_server_name, k->cred.server);
		goto out;
	}
	rc = update_auth(k);
	if (rc != CA_OK)
		goto out;
	rc = CA_ENOMEM;
	if (ca_loop_timer_new(loop, on_curl_timer, k, &k->curl_timer) != CA_OK ||
	    ca_loop_timer_new(loop, on_dispatch_timer, k, &k->dispatch_timer) != CA_OK)
		goto out;
	k->multi = curl_multi_init();
	if (!k->multi)
		goto out;
	CURLMcode mc = CURLM_OK;
	mc |= curl_multi_setopt(k->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	mc |= curl_multi_setopt(k->multi, CURLMOPT_SOCKETDATA, k);
	mc |= curl_multi_setopt(k->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	mc |= curl_multi_setopt(k->multi, CURLMOPT_TIMERDATA, k);
	size_t conns = opts->watches + SPARE_CONNECTIONS;
	if (conns < MIN_HOST_CONNECTIONS)
		conns = MIN_HOST_CONNECTIONS;
	mc |= curl_multi_setopt(k->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)conns);
	mc |= curl_multi_setopt(k->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)conns);
	mc |= curl_multi_setopt(k->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
	if (mc != CURLM_OK) {
		rc = CA_EIO;
		snprintf(err, errlen, "libcurl multi handle setup failed");
		goto out;
	}
	*out = k;
	k = NULL;
	rc = CA_OK;
out:
	if (rc == CA_ENOMEM && errlen && !err[0])
		snprintf(err, errlen, "out of memory");
	ca_kube_free(k);
	return rc;
}

/* A TLS connection with libcurl's and OpenSSL's buffers (measured at about
 * 70 KiB with OpenSSL 3.0 and libcurl 7.88): rounded up. */
#define CONNECTION_BYTES ((uint64_t)128 << 10)
/* Cluster detection's largest one-shot answer (a Node, 256 KiB in
 * cluster.c) and its tape, two at once while it runs. */
#define ONE_SHOT_BYTES ((uint64_t)2 * 6 * (256 << 10))

void ca_kube_budget(size_t max_list_page_bytes, struct ca_budget *b)
{
	ca_budget_add(b, "kube: one LIST page at a time, its body and tape", "kubernetes.max_list_page_bytes",
	              (uint64_t)max_list_page_bytes * 6);
	ca_budget_add(b, "kube: two spare connections, cluster detection's requests", "",
	              2 * CONNECTION_BYTES + ONE_SHOT_BYTES);
}

void ca_kube_watch_budget(size_t watches, size_t max_object_bytes, const char *what,
                          const char *key, struct ca_budget *b)
{
	char text[112];
	snprintf(text, sizeof text, "kube: %zu %s watch(es): read-ahead, parser, connection", watches, what);
	ca_budget_add(b, text, key,
	              (uint64_t)watches * (PENDING_HARD_CAP + ca_watch_parser_budget(max_object_bytes) +
	                                   CONNECTION_BYTES));
}

void ca_kube_parse_budget(size_t max_object_bytes, size_t max_list_page_bytes, const char *key,
                          struct ca_budget *b)
{
	uint64_t line = ca_watch_parse_peak(max_object_bytes);
	uint64_t page_parse = (uint64_t)max_list_page_bytes * 6, page_body = max_list_page_bytes;
	if (page_body + line > page_parse)
		ca_budget_add(b, "kube: parse of one watch line (the longest allowed), beyond a LIST page's parse",
		              key, page_body + line - page_parse);
}

bool ca_kube_list_slot_take(struct ca_kube *kube, struct ca_kube_slot_waiter *w)
{
	if (!kube->list_slot_taken) {
		kube->list_slot_taken = true;
		return true;
	}
	if (!w->queued) {
		w->next = NULL;
		w->queued = true;
		if (kube->slot_tail)
			kube->slot_tail->next = w;
		else
			kube->slot_head = w;
		kube->slot_tail = w;
	}
	return false;
}

void ca_kube_list_slot_give(struct ca_kube *kube)
{
	struct ca_kube_slot_waiter *w = kube->slot_head;
	if (!w) {
		kube->list_slot_taken = false;
		return;
	}
	kube->slot_head = w->next;
	if (!kube->slot_head)
		kube->slot_tail = NULL;
	w->next = NULL;
	w->queued = false;
	w->granted(w->arg); /* the slot stays taken: it is w's now */
}

void ca_kube_list_slot_cancel(struct ca_kube *kube, struct ca_kube_slot_waiter *w)
{
	if (!w->queued)
		return;
	struct ca_kube_slot_waiter **pp = &kube->slot_head, *prev = NULL;
	while (*pp && *pp != w) {
		prev = *pp;
		pp = &(*pp)->next;
	}
	if (*pp) {
		*pp = w->next;
		if (kube->slot_tail == w)
			kube->slot_tail = prev;
	}
	w->next = NULL;
	w->queued = false;
}

void ca_kube_free(struct ca_kube *kube)
{
	if (!kube)
		return;
	while (kube->xfers)
		xfer_destroy(kube->xfers);
	if (kube->multi)
		curl_multi_cleanup(kube->multi); /* closes cached connections */
	ca_loop_timer_free(kube->curl_timer);
	ca_loop_timer_free(kube->dispatch_timer);
	ca_kube_credentials_fini(&kube->cred);
	free(kube->user_agent);
	free(kube->api_base);
	free(kube->host_header);
	curl_slist_free_all(kube->connect_to);
	ca_free_secret(kube->auth_header);
	free(kube);
	if (--global_refs == 0)
		curl_global_cleanup();
}

const struct ca_kube_credentials *ca_kube_credentials_of(const struct ca_kube *kube)
{
	return &kube->cred;
}

const char *ca_kube_server(const struct ca_kube *kube)
{
	return kube->cred.server ? kube->cred.server : "";
}

const char *ca_kube_credential_source(const struct ca_kube *kube)
{
	return kube->cred.source ? kube->cred.source : "";
}

const char *ca_kube_namespace(const struct ca_kube *kube)
{
	return kube->cred.namespace_ && *kube->cred.namespace_ ? kube->cred.namespace_ : "default";
}

enum ca_err ca_kube_request(struct ca_kube *kube, const struct ca_kube_request *req,
                            ca_kube_response_cb cb, void *arg)
{
	struct ca_kube_xfer *x = NULL;
	return ca_kube_request_start(kube, req, cb, arg, &x);
}

void ca_kube_request_cancel(struct ca_kube_xfer *x)
{
	ca_kube_xfer_cancel(x);
}

enum ca_err ca_kube_request_start(struct ca_kube *kube, const struct ca_kube_request *req,
                                  ca_kube_response_cb cb, void *arg, struct ca_kube_xfer **out)
{
	*out = NULL;
	if (!req || !cb || (!req->path && !req->url))
		return CA_EINVAL;
	struct xfer_spec s = {
		.method = req->method,
		.path = req->url ? NULL : req->path,
		.url = req->url,
		.headers = req->headers,
		.body = req->body,
		.body_len = req->body_len,
		.timeout_ms = req->timeout_ms,
		.max_body = req->max_body,
	};
	struct ca_kube_xfer *x = NULL;
	enum ca_err err = xfer_start(kube, &s, &x);
	if (err != CA_OK)
		return err;
	x->resp_cb = cb;
	x->resp_arg = arg;
	*out = x;
	return CA_OK;
}

bool ca_kube_api_ok(const struct ca_kube *kube)
{
	return kube->api_ok;
}

int64_t ca_kube_last_success_ms(const struct ca_kube *kube)
{
	return kube->last_success_ms;
}

void ca_kube_render_metrics(const struct ca_kube *kube, struct ca_prom *p)
{
	ca_prom_family(p, "agent_kube_requests_total", "counter",
	               "Kubernetes API requests by HTTP status code (\"error\": no response).");
	for (size_t i = 0; i < kube->ncodes; i++)
		ca_prom_sample(p, "agent_kube_requests_total", "code", kube->codes[i].code,
		               (double)kube->codes[i].n);
	if (kube->other_codes)
		ca_prom_sample(p, "agent_kube_requests_total", "code", "other", (double)kube->other_codes);
	ca_prom_sample(p, "agent_kube_requests_total", "code", "error", (double)kube->transport_errors);
	ca_prom_single(p, "agent_kube_watch_restarts_total", "counter",
	               "Watch streams that ended and were resumed.", (double)kube->watch_restarts);
	ca_prom_single(p, "agent_kube_token_reloads_total", "counter",
	               "Bearer token files re-read after a 401.", (double)kube->token_refreshes);
	ca_prom_single(p, "agent_kube_api_ok", "gauge",
	               "1 when the last answer of the API server was usable.", kube->api_ok ? 1 : 0);
	size_t active = 0;
	for (const struct ca_kube_xfer *x = kube->xfers; x; x = x->next)
		active++;
	ca_prom_single(p, "agent_kube_requests_in_flight", "gauge",
	               "Kubernetes API requests and watch streams open now.", (double)active);
}

void ca_kube_health_json(const struct ca_kube *kube, struct ca_buf *out)
{
	ca_buf_append_str(out, "{\"server\":");
	ca_buf_append_json_string(out, ca_kube_server(kube));
	ca_buf_append_str(out, ",\"credentials\":");
	ca_buf_append_json_string(out, ca_kube_credential_source(kube));
	ca_buf_printf(out, ",\"api_ok\":%s", kube->api_ok ? "true" : "false");
	if (kube->last_success_ms)
		ca_buf_printf(out, ",\"last_success_age_ms\":%lld",
		              (long long)(ca_now_monotonic_ms() - kube->last_success_ms));
	else
		ca_buf_append_str(out, ",\"last_success_age_ms\":null");
	size_t active = 0;
	for (const struct ca_kube_xfer *x = kube->xfers; x; x = x->next)
		active++;
	ca_buf_printf(out, ",\"in_flight\":%zu,\"requests\":{", active);
	for (size_t i = 0; i < kube->ncodes; i++)
		ca_buf_printf(out, "%s\"%s\":%llu", i ? "," : "", kube->codes[i].code,
		              (unsigned long long)kube->codes[i].n);
	ca_buf_printf(out, "%s\"error\":%llu}", kube->ncodes ? "," : "",
	              (unsigned long long)kube->transport_errors);
	ca_buf_printf(out, ",\"watch_restarts\":%llu,\"token_reloads\":%llu,\"last_error\":",
	              (unsigned long long)kube->watch_restarts,
	              (unsigned long long)kube->token_refreshes);
	ca_buf_append_json_string(out, kube->last_error);
	ca_buf_append_str(out, "}");
}

/* ------------------------------------------------------------------ */
/* The module table (core/module.h) */

static void module_health(const void *self, struct ca_module_health *out)
{
	const struct ca_kube *k = self;
	if (k->api_ok)
		return;
	out->ready = false;
	ca_set_err(out->reason, sizeof out->reason, "Kubernetes API %s",
	           k->last_error[0] ? k->last_error : "has not answered yet");
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	ca_kube_health_json(self, out);
}

static void module_metrics(const void *self, struct ca_prom *p)
{
	if (self)
		ca_kube_render_metrics(self, p);
}

const struct ca_module_ops ca_kube_module = {
	.name = "kubernetes",
	.health = module_health,
	.health_json = module_health_json,
	.render_metrics = module_metrics,
};
