/* tests/unit/test_http.c: the http module against a real HTTP client
 * (libcurl), and the process_* metrics against promtool.
 *
 * The main thread runs a ca_loop with the servers, as the agent does; a
 * client thread makes the requests, checks the answers, and stops the loop.
 * Only the client thread runs CHECKs while the loop runs; the main thread
 * reads the counters after joining it. */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "check.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/process_metrics.h"
#include "core/timeutil.h"
#include "core/prom.h"
#include "http/http.h"

/* ------------------------------------------------------------------------ */
/* Handlers (loop thread) */

struct state {
	struct ca_loop *loop;
	bool ready;          /* flipped on the loop thread via ca_loop_post */
	int health_status;   /* what /health answers */
	sem_t flipped;
	int live_calls, ready_calls, health_calls, metrics_calls;
};

static int on_live(void *arg, struct ca_buf *body)
{
	struct state *st = arg;
	st->live_calls++;
	ca_buf_append_str(body, "{\"status\":\"ok\"}");
	return 200;
}

static int on_ready(void *arg, struct ca_buf *body)
{
	struct state *st = arg;
	st->ready_calls++;
	if (st->ready) {
		ca_buf_append_str(body, "{\"status\":\"ok\"}");
		return 200;
	}
	ca_buf_append_str(body, "{\"status\":\"not ready\",\"reason\":\"nats not connected\"}");
	return 503;
}

static int on_health(void *arg, struct ca_buf *body)
{
	struct state *st = arg;
	st->health_calls++;
	ca_buf_printf(body, "{\"status\":\"%s\",\"modules\":{\"bus\":{\"connected\":%s}}}",
	              st->ready ? "ok" : "degraded", st->ready ? "true" : "false");
	return st->health_status;
}

static void on_metrics(void *arg, struct ca_buf *body)
{
	struct state *st = arg;
	st->metrics_calls++;
	struct ca_prom p;
	ca_prom_init(&p, body, "test-cluster");
	ca_prom_single(&p, "agent_running", "gauge", "Whether the agent runs.", 1);
	ca_process_render_metrics(&p);
}

static const struct ca_http_handlers handlers = {
	.live = on_live,
	.ready = on_ready,
	.health = on_health,
	.metrics = on_metrics,
};

static void flip_ready(void *arg)
{
	struct state *st = arg;
	st->ready = true;
	sem_post(&st->flipped);
}

/* ------------------------------------------------------------------------ */
/* Client helpers (client thread) */

struct reply {
	long status;
	char content_type[128];
	char headers[4096];
	size_t headers_len;
	struct ca_buf body;
	CURLcode rc;
	curl_off_t content_length;
};

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	if (ca_buf_append(&r->body, data, size * n) != CA_OK)
		return 0;
	return size * n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct reply *r = arg;
	size_t len = size * n;
	if (r->headers_len + len < sizeof r->headers) {
		memcpy(r->headers + r->headers_len, data, len);
		r->headers_len += len;
		r->headers[r->headers_len] = '\0';
	}
	return len;
}

/* Case-insensitive lookup of "Name: value" among the response headers. */
static bool has_header(const struct reply *r, const char *name, const char *value)
{
	char want[256];
	snprintf(want, sizeof want, "%s: %s\r\n", name, value);
	size_t wl = strlen(want);
	for (const char *p = r->headers; *p; p++) {
		if ((p == r->headers || p[-1] == '\n') && strncasecmp(p, want, wl) == 0)
			return true;
	}
	return false;
}

/* method: NULL for GET, "HEAD", "POST", or a custom verb. body: request
 * body or NULL. */
static void fetch(CURL *c, const char *url, const char *method, const char *body,
                  long timeout_ms, struct reply *r)
{
	memset(r, 0, sizeof *r);
	ca_buf_init(&r->body, 1 << 20);
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_PROXY, "");
	curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
	if (method && strcmp(method, "HEAD") == 0)
		curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
	else if (method && strcmp(method, "POST") == 0)
		curl_easy_setopt(c, CURLOPT_POST, 1L);
	else if (method)
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	if (body)
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
	r->rc = curl_easy_perform(c);
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
	char *ct = NULL;
	if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
		snprintf(r->content_type, sizeof r->content_type, "%s", ct);
	r->content_length = -1;
	curl_easy_getinfo(c, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &r->content_length);
	if (!r->body.data)
		ca_buf_append_str(&r->body, ""); /* body.data is never NULL below */
}

static int connect_raw(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

struct client {
	struct state *st;
	int port4, port6, port_limit, port_emfile;
	int requests4; /* requests the v4 server should have answered */
};

/* Write all of buf; false on error. */
static bool write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

/* Read what fd receives until the server closes it, timeout_ms passes or
 * resp (NUL-terminated) is full. Returns the bytes read. */
static size_t read_until_close(int fd, char *resp, size_t size, int timeout_ms)
{
	size_t got = 0;
	int64_t end = ca_now_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = end - ca_now_monotonic_ms();
		if (left <= 0 || got + 1 >= size)
			break;
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, (int)left);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		ssize_t n = recv(fd, resp + got, size - 1 - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	resp[got] = '\0';
	return got;
}

/* The status of the response to a raw request on a new connection (the
 * request should say "Connection: close"); 0 when none came within
 * timeout_ms. */
static int raw_status(int port, const char *request, int timeout_ms)
{
	int fd = connect_raw(port);
	if (fd < 0)
		return -1;
	char resp[2048];
	int status = 0;
	if (write_all(fd, request, strlen(request)) &&
	    read_until_close(fd, resp, sizeof resp, timeout_ms) >= 12 &&
	    strncmp(resp, "HTTP/1.1 ", 9) == 0)
		status = (int)strtol(resp + 9, NULL, 10);
	close(fd);
	return status;
}

/* Whether the server has closed fd (end of file or reset) within
 * timeout_ms. Bytes it sends first are skipped. */
static bool closed_by_server(int fd, int timeout_ms)
{
	char buf[512];
	int64_t end = ca_now_monotonic_ms() + timeout_ms;
	for (;;) {
		int64_t left = end - ca_now_monotonic_ms();
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int r = poll(&pfd, 1, left > 0 ? (int)left : 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
		if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
			return true;
	}
}

/* Paths match byte for byte, before any percent-decoding: an encoded slash
 * or letter is not one of our paths, and neither is a trailing or doubled
 * slash. The query string is still ignored, encoded or not. */
static void test_paths(struct client *cl)
{
	static const char *not_ours[] = {
		"/health%2Flive", "/health%2flive", "/health/%6Cive", "/%68ealth/live",
		"/health%2Fready", "/health/live/", "//health/live", "/health//live",
		"/health/./live", "/health/x/../live", "/metrics%00", "/health/live%20",
	};
	char req[256];
	for (size_t i = 0; i < sizeof not_ours / sizeof not_ours[0]; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		         not_ours[i]);
		int status = raw_status(cl->port4, req, 10000);
		cl->requests4++;
		if (status != 404)
			fprintf(stderr, "GET %s answered %d\n", not_ours[i], status);
		CHECK_INT(status, 404);
	}
	static const char *ours[] = { "/health/live", "/health/live?x=%2F", "/health/live?" };
	for (size_t i = 0; i < sizeof ours / sizeof ours[0]; i++) {
		snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
		         ours[i]);
		int status = raw_status(cl->port4, req, 10000);
		cl->requests4++;
		CHECK_INT(status, 200);
	}
}

/* The deadline for a complete request counts from accept, and on a kept
 * alive connection from the end of the previous response; bytes that
 * trickle in do not restart it (libmicrohttpd's own timeout, which they
 * do restart, would keep these connections open for ever). A request that
 * is slow but complete within the deadline is served. */
static void test_header_deadline(struct client *cl)
{
	/* Slow but in time: one byte every 20 ms, about a second in all. */
	const char slow_req[] = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	int slow = connect_raw(cl->port4);
	CHECK(slow >= 0);
	if (slow >= 0) {
		bool sent = true;
		for (size_t i = 0; i + 1 < sizeof slow_req && sent; i++) {
			sent = write_all(slow, slow_req + i, 1);
			usleep(20 * 1000);
		}
		CHECK(sent);
		char resp[1024];
		read_until_close(slow, resp, sizeof resp, 10000);
		cl->requests4++;
		CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
		close(slow);
	}

	/* Two slowloris connections: one fresh, one kept alive after a
	 * response. Each gets a header byte every 250 ms and never the end. */
	int fresh = connect_raw(cl->port4);
	int kept = connect_raw(cl->port4);
	CHECK(fresh >= 0 && kept >= 0);
	if (fresh < 0 || kept < 0)
		goto out;
	const char head[] = "HEAD /health/live HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK(write_all(kept, head, sizeof head - 1));
	char resp[1024];
	size_t got = 0;
	while (got + 1 < sizeof resp && !strstr(resp, "\r\n\r\n")) {
		ssize_t n = recv(kept, resp + got, sizeof resp - 1 - got, 0);
		if (n <= 0)
			break;
		got += (size_t)n;
		resp[got] = '\0';
	}
	cl->requests4++;
	CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);

	static const char trickle[] = "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Trickle: "
	                              "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	int fds[2] = { fresh, kept };
	bool closed[2] = { false, false };
	size_t pos = 0;
	int64_t end = ca_now_monotonic_ms() + 15000;
	while ((!closed[0] || !closed[1]) && ca_now_monotonic_ms() < end) {
		for (int i = 0; i < 2; i++) {
			if (closed[i])
				continue;
			if (!write_all(fds[i], trickle + pos % (sizeof trickle - 1), 1) ||
			    closed_by_server(fds[i], 0))
				closed[i] = true;
		}
		pos++;
		usleep(250 * 1000);
	}
	CHECK(closed[0]);
	CHECK(closed[1]);
out:
	if (fresh >= 0)
		close(fresh);
	if (kept >= 0)
		close(kept);
}

/* At the cap (64 connections) a new connection evicts the oldest that has
 * no complete request, instead of waiting behind it: 100 connections that
 * each sent the first byte of a request leave the last 64, and a probe
 * after them is answered (within the 1 s a probe waits) and evicts the
 * oldest of those. */
static void test_eviction(struct client *cl)
{
	enum { N = 100, CAP = 64 };
	int part[N];
	int opened = 0;
	for (int i = 0; i < N; i++) {
		part[i] = connect_raw(cl->port_limit);
		if (part[i] >= 0 && write_all(part[i], "G", 1))
			opened++;
	}
	CHECK_INT(opened, N);
	int status = raw_status(cl->port_limit,
	                        "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
	                        1000);
	CHECK_INT(status, 200);
	/* The first N - CAP were evicted as the later ones came, and the
	 * probe evicted one more; the server shut them down before it read
	 * the probe's request. */
	int evicted = 0, open_ok = 0;
	for (int i = 0; i < N; i++) {
		if (part[i] < 0)
			continue;
		bool closed = closed_by_server(part[i], i <= N - CAP ? 2000 : 0);
		if (i <= N - CAP)
			evicted += closed;
		else
			open_ok += !closed;
	}
	CHECK_INT(evicted, N - CAP + 1);
	CHECK_INT(open_ok, CAP - 1);
	for (int i = 0; i < N; i++)
		if (part[i] >= 0)
			close(part[i]);
}

static int highest_fd_below(rlim_t limit)
{
	int highest = 2;
	for (int fd = 0; fd < (int)limit && fd < 65536; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			highest = fd;
	return highest;
}

static bool under_valgrind(void)
{
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
#endif
	const char *preload = getenv("LD_PRELOAD");
	return preload && strstr(preload, "vgpreload") != NULL;
}

/* Out of fds, the server neither spins on its readable listening socket
 * nor loses the connection: it is served once fds are free again. Not
 * under valgrind, which emulates the fd limit: it closes a descriptor the
 * kernel hands out above its own limit and reports EMFILE, so the pending
 * connection is lost there. The native and ASan runs test it. */
static void test_out_of_fds(struct client *cl)
{
	if (under_valgrind()) {
		printf("valgrind emulates RLIMIT_NOFILE; skipping the out-of-fds test\n");
		return;
	}
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(s >= 0);
	if (s < 0)
		return;
	struct rlimit old;
	CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
	struct rlimit low = old;
	low.rlim_cur = (rlim_t)highest_fd_below(old.rlim_cur) + 1 + 16;
	if (low.rlim_cur < old.rlim_cur)
		CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
	size_t cap = 65536, n = 0;
	int *fillers = malloc(cap * sizeof *fillers);
	CHECK(fillers != NULL);
	int fill_errno = 0;
	while (fillers && n < cap) {
		int fd = dup(2);
		if (fd < 0) {
			fill_errno = errno;
			break;
		}
		fillers[n++] = fd;
	}
	if (fill_errno != EMFILE) {
		printf("could not exhaust fds (%s); skipping the out-of-fds test\n",
		       strerror(fill_errno));
	} else {
		struct sockaddr_in sa = { .sin_family = AF_INET,
			                  .sin_port = htons((uint16_t)cl->port_emfile) };
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		const char req[] = "GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
		CHECK(connect(s, (struct sockaddr *)&sa, sizeof sa) == 0);
		CHECK(write_all(s, req, sizeof req - 1));
		struct rusage r0, r1;
		getrusage(RUSAGE_SELF, &r0);
		usleep(1000 * 1000);
		getrusage(RUSAGE_SELF, &r1);
		double cpu = (double)(r1.ru_utime.tv_sec - r0.ru_utime.tv_sec) +
		             (double)(r1.ru_stime.tv_sec - r0.ru_stime.tv_sec) +
		             (double)(r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6 +
		             (double)(r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
		if (cpu >= 0.5)
			fprintf(stderr, "out of fds: %.2f s of CPU in 1 s\n", cpu);
		CHECK(cpu < 0.5);
	}
	for (size_t i = 0; i < n; i++)
		close(fillers[i]);
	free(fillers);
	setrlimit(RLIMIT_NOFILE, &old);
	if (fill_errno == EMFILE) {
		char resp[1024];
		read_until_close(s, resp, sizeof resp, 10000);
		CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
	}
	close(s);
}


#define JSON "application/json"
#define PROM "text/plain; version=0.0.4; charset=utf-8"


static void *client_main(void *arg)
{
	struct client *cl = arg;
	CURL *c = curl_easy_init();
	struct reply r;
	char base[64], url[128];
	snprintf(base, sizeof base, "http://127.0.0.1:%d", cl->port4);
	CHECK(c != NULL);
	if (!c)
		goto out;

	/* Liveness: 200, JSON, the handler's body, no caching. */
	snprintf(url, sizeof url, "%s/health/live", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.rc, CURLE_OK);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, JSON);
	CHECK_STR(r.body.data, "{\"status\":\"ok\"}");
	CHECK(has_header(&r, "Cache-Control", "no-store"));
	ca_buf_fini(&r.body);

	/* Readiness: 503 with the reason while not ready... */
	snprintf(url, sizeof url, "%s/health/ready", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 503);
	CHECK_STR(r.content_type, JSON);
	CHECK_STR(r.body.data, "{\"status\":\"not ready\",\"reason\":\"nats not connected\"}");
	CHECK(has_header(&r, "Cache-Control", "no-store"));
	ca_buf_fini(&r.body);

	/* ...and 200 once the loop thread says so. */
	CHECK_INT(ca_loop_post(cl->st->loop, flip_ready, cl->st), CA_OK);
	while (sem_wait(&cl->st->flipped) != 0 && errno == EINTR)
		;
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_STR(r.body.data, "{\"status\":\"ok\"}");
	ca_buf_fini(&r.body);

	/* /health: JSON detail with the handler's status. */
	snprintf(url, sizeof url, "%s/health", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, JSON);
	CHECK_STR(r.body.data, "{\"status\":\"ok\",\"modules\":{\"bus\":{\"connected\":true}}}");
	ca_buf_fini(&r.body);

	/* /metrics: Prometheus text from the handler. */
	snprintf(url, sizeof url, "%s/metrics", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, PROM);
	CHECK(strstr(r.body.data, "agent_running{cluster_id=\"test-cluster\"} 1\n") != NULL);
	CHECK(strstr(r.body.data, "# TYPE process_resident_memory_bytes gauge\n") != NULL);
	CHECK(has_header(&r, "Cache-Control", "no-store"));
	ca_buf_fini(&r.body);

	/* Query strings are ignored. */
	snprintf(url, sizeof url, "%s/metrics?name[]=agent_running&x=1", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, PROM);
	CHECK(strstr(r.body.data, "agent_running{") != NULL);
	ca_buf_fini(&r.body);
	snprintf(url, sizeof url, "%s/health/live?verbose=1", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_STR(r.body.data, "{\"status\":\"ok\"}");
	ca_buf_fini(&r.body);

	/* HEAD: same status and headers, no body. */
	snprintf(url, sizeof url, "%s/health/live", base);
	fetch(c, url, "HEAD", NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.rc, CURLE_OK);
	CHECK_INT(r.status, 200);
	CHECK_STR(r.content_type, JSON);
	CHECK_INT(r.body.len, 0);
	CHECK_INT(r.content_length, (long long)strlen("{\"status\":\"ok\"}"));
	ca_buf_fini(&r.body);
	snprintf(url, sizeof url, "%s/health/ready", base);
	fetch(c, url, "HEAD", NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	CHECK_INT(r.body.len, 0);
	ca_buf_fini(&r.body);

	/* Other methods: 405 with Allow, whatever the path. */
	snprintf(url, sizeof url, "%s/metrics", base);
	fetch(c, url, "POST", "a=1&b=2", 10000, &r);
	cl->requests4++;
	CHECK_INT(r.rc, CURLE_OK);
	CHECK_INT(r.status, 405);
	CHECK(has_header(&r, "Allow", "GET, HEAD"));
	CHECK(strstr(r.body.data, "process_") == NULL);
	ca_buf_fini(&r.body);
	snprintf(url, sizeof url, "%s/health", base);
	fetch(c, url, "DELETE", NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 405);
	CHECK(has_header(&r, "Allow", "GET, HEAD"));
	ca_buf_fini(&r.body);
	fetch(c, url, "PUT", "{}", 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 405);
	ca_buf_fini(&r.body);

	/* A GET that carries a body is refused. */
	snprintf(url, sizeof url, "%s/health/live", base);
	fetch(c, url, "GET", "{\"x\":1}", 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 413);
	ca_buf_fini(&r.body);

	/* Unknown paths: 404, including near misses. */
	const char *missing[] = { "/", "/nope", "/health/", "/health/livex", "/metrics/",
	                          "/Metrics", "/health/live/x" };
	for (size_t i = 0; i < sizeof missing / sizeof missing[0]; i++) {
		snprintf(url, sizeof url, "%s%s", base, missing[i]);
		fetch(c, url, NULL, NULL, 10000, &r);
		cl->requests4++;
		CHECK_INT(r.status, 404);
		CHECK(has_header(&r, "Cache-Control", "no-store"));
		ca_buf_fini(&r.body);
	}

	/* A client that sends half a request does not hold up others: the
	 * server never blocks on one connection. */
	int slow = connect_raw(cl->port4);
	CHECK(slow >= 0);
	if (slow >= 0) {
		const char part[] = "GET /health/live HTTP/1.1\r\nHost: x\r\n";
		CHECK(write(slow, part, sizeof part - 1) == (ssize_t)(sizeof part - 1));
	}
	snprintf(url, sizeof url, "%s/health/ready", base);
	fetch(c, url, NULL, NULL, 10000, &r);
	cl->requests4++;
	CHECK_INT(r.status, 200);
	ca_buf_fini(&r.body);
	if (slow >= 0) {
		/* Finish it: the server answers it now. */
		char resp[512];
		const char rest[] = "Connection: close\r\n\r\n";
		CHECK(write(slow, rest, sizeof rest - 1) == (ssize_t)(sizeof rest - 1));
		size_t got = 0;
		ssize_t n;
		while (got + 1 < sizeof resp && (n = read(slow, resp + got, sizeof resp - 1 - got)) > 0)
			got += (size_t)n;
		resp[got] = '\0';
		cl->requests4++;
		CHECK(strncmp(resp, "HTTP/1.1 200", 12) == 0);
		CHECK(strstr(resp, "{\"status\":\"ok\"}") != NULL);
		close(slow);
	}

	test_paths(cl);
	test_header_deadline(cl);
	test_eviction(cl);
	test_out_of_fds(cl);

	/* IPv6. */
	if (cl->port6 > 0) {
		snprintf(url, sizeof url, "http://[::1]:%d/health/live", cl->port6);
		fetch(c, url, NULL, NULL, 10000, &r);
		CHECK_INT(r.rc, CURLE_OK);
		CHECK_INT(r.status, 200);
		CHECK_STR(r.body.data, "{\"status\":\"ok\"}");
		ca_buf_fini(&r.body);
	}

	curl_easy_cleanup(c);
out:
	ca_loop_stop(cl->st->loop);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Process metrics */

/* Value of the first sample of name (with the cluster_id label). */
static bool sample_value(const char *text, const char *name, double *v)
{
	char key[128];
	snprintf(key, sizeof key, "\n%s{cluster_id=\"c\"} ", name);
	const char *p = strstr(text, key);
	if (!p)
		return false;
	char *end = NULL;
	*v = strtod(p + strlen(key), &end);
	return end && *end == '\n';
}

/* Pipe text into `promtool check metrics`; its exit status, or -1. */
static int promtool_check(const char *text, size_t len)
{
	int in[2];
	if (pipe(in) != 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0) {
		close(in[0]);
		close(in[1]);
		return -1;
	}
	if (pid == 0) {
		dup2(in[0], 0);
		close(in[0]);
		close(in[1]);
		char *const argv[] = { "promtool", "check", "metrics", NULL };
		execv("/usr/bin/promtool", argv);
		_exit(127);
	}
	close(in[0]);
	size_t off = 0;
	while (off < len) {
		ssize_t n = write(in[1], text + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	close(in[1]);
	int status = 0;
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_process_metrics(void)
{
	int64_t rss = ca_process_rss_bytes();
	CHECK(rss > 0);

	struct ca_buf out;
	ca_buf_init(&out, 0);
	struct ca_prom p;
	ca_prom_init(&p, &out, "c");
	ca_buf_append_str(&out, "\n"); /* so every sample follows a newline */
	ca_process_render_metrics(&p);
	const char *families[][2] = {
		{ "process_cpu_seconds_total", "counter" },
		{ "process_resident_memory_bytes", "gauge" },
		{ "process_virtual_memory_bytes", "gauge" },
		{ "process_open_fds", "gauge" },
		{ "process_max_fds", "gauge" },
		{ "process_start_time_seconds", "gauge" },
	};
	for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
		char line[128];
		snprintf(line, sizeof line, "# TYPE %s %s\n", families[i][0], families[i][1]);
		CHECK(strstr(out.data, line) != NULL);
		snprintf(line, sizeof line, "# HELP %s ", families[i][0]);
		CHECK(strstr(out.data, line) != NULL);
	}

	double cpu = -1, res = -1, virt = -1, fds = -1, maxfds = -1, start = -1;
	CHECK(sample_value(out.data, "process_cpu_seconds_total", &cpu));
	CHECK(sample_value(out.data, "process_resident_memory_bytes", &res));
	CHECK(sample_value(out.data, "process_virtual_memory_bytes", &virt));
	CHECK(sample_value(out.data, "process_open_fds", &fds));
	CHECK(sample_value(out.data, "process_max_fds", &maxfds));
	CHECK(sample_value(out.data, "process_start_time_seconds", &start));
	CHECK(cpu >= 0);
	CHECK(res > 0);
	CHECK(virt >= res);
	CHECK(fds >= 3);
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	CHECK(maxfds == (double)rl.rlim_cur);
	/* Started in the past, and not before this test was built (a day is
	 * generous for any run). */
	double now = (double)time(NULL);
	CHECK(start <= now + 1);
	CHECK(start > now - 86400);

	/* Opening fds shows up in process_open_fds, one for one. */
	int extra[10];
	for (int i = 0; i < 10; i++)
		extra[i] = dup(2);
	ca_buf_reset(&out);
	ca_buf_append_str(&out, "\n");
	ca_process_render_metrics(&p);
	double fds2 = -1;
	CHECK(sample_value(out.data, "process_open_fds", &fds2));
	CHECK_INT((long long)fds2, (long long)fds + 10);
	for (int i = 0; i < 10; i++)
		if (extra[i] >= 0)
			close(extra[i]);

	if (access("/usr/bin/promtool", X_OK) == 0) {
		/* The leading newline is not part of the exposition. */
		CHECK_INT(promtool_check(out.data + 1, out.len - 1), 0);
		/* And promtool does reject a bad exposition, so the check above
		 * means something. */
		const char bad[] = "# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n";
		CHECK(promtool_check(bad, sizeof bad - 1) != 0);
	} else {
		printf("promtool not found; skipping promtool check\n");
	}
	ca_buf_fini(&out);
}

/* ------------------------------------------------------------------------ */

static bool ipv6_loopback_usable(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in6 sa = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	bool ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
	close(fd);
	return ok;
}

static void test_errors(struct ca_loop *loop, struct state *st, int busy_port)
{
	struct ca_http *http = NULL;
	char err[256];

	/* A port in use: fails, and says which host:port. */
	char want[64];
	snprintf(want, sizeof want, "cannot listen on 127.0.0.1:%d: ", busy_port);
	CHECK_INT(ca_http_new(&http, loop, "127.0.0.1", busy_port, &handlers, st, err, sizeof err),
	          CA_EIO);
	CHECK(http == NULL);
	CHECK(strncmp(err, want, strlen(want)) == 0);
	CHECK(strstr(err, strerror(EADDRINUSE)) != NULL);

	/* Bad ports. */
	CHECK_INT(ca_http_new(&http, loop, "127.0.0.1", 65536, &handlers, st, err, sizeof err),
	          CA_EINVAL);
	CHECK(strncmp(err, "cannot listen on 127.0.0.1:65536: ", 34) == 0);
	CHECK_INT(ca_http_new(&http, loop, "127.0.0.1", -1, &handlers, st, err, sizeof err),
	          CA_EINVAL);
	CHECK(http == NULL);

	/* A literal that is no address of this host. */
	CHECK_INT(ca_http_new(&http, loop, "192.0.2.1", 0, &handlers, st, err, sizeof err), CA_EIO);
	CHECK(strncmp(err, "cannot listen on 192.0.2.1:0: ", 30) == 0);
	CHECK(strstr(err, strerror(EADDRNOTAVAIL)) != NULL);
	CHECK(http == NULL);

	/* IPv6 hosts are written in brackets. */
	CHECK_INT(ca_http_new(&http, loop, "2001:db8::1", 0, &handlers, st, err, sizeof err), CA_EIO);
	CHECK(strncmp(err, "cannot listen on [2001:db8::1]:0: ", 34) == 0);

	/* A name, resolved locally. */
	CHECK_INT(ca_http_new(&http, loop, "localhost", 0, &handlers, st, err, sizeof err), CA_OK);
	CHECK(ca_http_port(http) > 0);
	ca_http_free(http);
	ca_http_free(NULL);
}

int main(void)
{
	test_process_metrics();

	CHECK_INT(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
	struct state st = { .health_status = 200 };
	sem_init(&st.flipped, 0, 0);
	struct ca_loop *loop = NULL;
	CHECK_INT(ca_loop_new(&loop), CA_OK);
	st.loop = loop;

	char err[256] = "";
	struct ca_http *v4 = NULL, *v6 = NULL;
	CHECK_INT(ca_http_new(&v4, loop, "127.0.0.1", 0, &handlers, &st, err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK(v4 != NULL);
	if (!v4)
		return check_report();
	CHECK(ca_http_port(v4) > 0);

	test_errors(loop, &st, ca_http_port(v4));

	struct client cl = { .st = &st, .port4 = ca_http_port(v4), .port6 = -1 };
	if (ipv6_loopback_usable()) {
		CHECK_INT(ca_http_new(&v6, loop, "::1", 0, &handlers, &st, err, sizeof err), CA_OK);
		cl.port6 = ca_http_port(v6);
		CHECK(cl.port6 > 0);
	} else {
		printf("IPv6 loopback not usable here; skipping the ::1 test\n");
	}

	struct ca_http *limited = NULL;
	CHECK_INT(ca_http_new(&limited, loop, "127.0.0.1", 0, &handlers, &st, err, sizeof err),
	          CA_OK);
	cl.port_limit = ca_http_port(limited);
	struct ca_http *emfile = NULL;
	CHECK_INT(ca_http_new(&emfile, loop, "127.0.0.1", 0, &handlers, &st, err, sizeof err),
	          CA_OK);
	cl.port_emfile = ca_http_port(emfile);

	pthread_t th;
	CHECK_INT(pthread_create(&th, NULL, client_main, &cl), 0);
	CHECK_INT(ca_loop_run(loop), CA_OK);
	pthread_join(th, NULL);

	/* Every request the v4 server got was answered exactly once. */
	CHECK_INT(ca_http_requests(v4), cl.requests4);
	CHECK_INT(ca_http_requests(v6), cl.port6 > 0 ? 1 : 0);
	/* HEAD ran the handlers too; POST/PUT/DELETE and 404s did not. */
	CHECK(st.metrics_calls == 2);
	CHECK(st.health_calls == 1);

	ca_http_free(emfile);
	ca_http_free(limited);
	ca_http_free(v6);
	ca_http_free(v4);
	ca_loop_free(loop);
	sem_destroy(&st.flipped);
	curl_global_cleanup();
	return check_report();
}
