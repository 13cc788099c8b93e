/* bench_apiserver: a minimal Kubernetes API server for the events
 * benchmarks only (issues 3 and 4). Not a test fixture: tests/kubesim is the
 * faithful simulator; this one exists because kubesim (Python, TLS) cannot
 * stream 100k+ events/s, so it would be the bottleneck of the measurement.
 *
 * Plain HTTP/1.1 on 127.0.0.1, keep-alive, one thread per connection. It
 * answers what collect-agent asks at start:
 *   GET /version                          a plain gitVersion
 *   GET /api/v1/nodes/<--node>            a small Ready node (others 404)
 *   GET /api/v1/namespaces/kube-system    a namespace with a uid
 *   GET /api/v1/[namespaces/<ns>/]events  LIST: no items, resourceVersion "1"
 *   ... ?watch=1|true                     WATCH: the pre-generated events
 * and a 404 Status to anything else (401 without the bearer token when
 * --token is given).
 *
 * Before accepting, it pre-generates N realistic core/v1 Warning Events
 * (~1.2 KB each as watch lines, managedFields included, distinct uids,
 * lastTimestamp = now, 40 namespaces, 8 kubelet/scheduler reasons). Event i
 * has resourceVersion i+2, so a WATCH from resourceVersion R resumes at the
 * event after R (a reconnecting client loses nothing). The stream is written
 * with blocking writes, so when the client reads slower TCP pushes back on
 * this server instead of anything buffering the backlog. Framing:
 *   --framing event  one watch line per HTTP chunk (what kube-apiserver does)
 *   --framing 64k    the line stream cut into 64 KiB chunks (lines straddle
 *                    chunk boundaries)
 * After the N events the stream stays open (no 0-chunk) until the client
 * closes it, so the agent does not relist or rewatch.
 *
 * --rate R paces events at R per second (event framing only) and stamps
 * each event's message with "sent_ns=<CLOCK_REALTIME ns>" just before it is
 * written (the fast mode leaves sent_ns=0000000000000000000).
 * --hold makes watches wait for SIGUSR1 before the first event, so a
 * harness can snapshot the client's CPU time first.
 *
 * Stdout, one JSON object per line (flushed): {"ready":PORT,...} once
 * listening, {"watch_open":...} and {"watch_done":...} per WATCH with the
 * server's own send time and rate.
 *
 * Raw-reader mode (this server's own streaming rate, without the agent):
 *   bench_apiserver --read PORT [--expect N] [--token T]
 * opens one WATCH, de-chunks it and counts watch lines until N arrived;
 * prints {"reader_events":..,"seconds":..,"rate":..,"mb_per_s":..}.
 *
 * usage: bench_apiserver [--port P] [--count N] [--framing event|64k]
 *                        [--rate R] [--hold] [--token T] [--node NAME]
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "core/buf.h"

#define REQ_MAX 16384
#define CHUNK_64K 65536
#define SENT_NS_DIGITS 19
#define EVENT_BATCH 256  /* chunks per writev in event framing */
#define BIG_BATCH 8      /* 64 KiB chunks per writev */

static struct {
	size_t count;
	bool framing_64k;
	double rate;
	bool hold;
	const char *token;
	const char *node;
	char now_rfc3339[32];
} opt = { .count = 200000, .node = "node-a" };

/* The pre-generated stream: line i is data[offs[i] .. offs[i+1]), ending in
 * '\n'; its sent_ns digits start at data + stamp[i]. Read-only once
 * accepting, except the stamps in --rate mode. */
static char *data;
static size_t *offs;
static size_t *stamp;

static volatile sig_atomic_t released;

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void on_usr1(int sig)
{
	(void)sig;
	released = 1;
}

/* ------------------------------------------------------------ the events */

static uint64_t splitmix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ULL;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

static void uuid_of(uint64_t seed, char out[37])
{
	uint64_t a = splitmix64(seed), b = splitmix64(seed ^ 0x5555aaaa5555aaaaULL);
	snprintf(out, 37, "%08" PRIx32 "-%04" PRIx32 "-4%03" PRIx32 "-%04" PRIx32 "-%012" PRIx64,
	         (uint32_t)(a >> 32), (uint32_t)(a >> 16) & 0xffff, (uint32_t)a & 0xfff,
	         (uint32_t)(0x8000 | ((b >> 48) & 0x3fff)), (uint64_t)(b & 0xffffffffffffULL));
}

struct reason {
	const char *reason, *kind, *component, *field_path, *message;
};

/* Messages as the kubelet and scheduler word them; %s = object name. */
static const struct reason reasons[] = {
	{ "BackOff", "Pod", "kubelet", "spec.containers{app}",
	  "Back-off restarting failed container app in pod %s" },
	{ "Unhealthy", "Pod", "kubelet", "spec.containers{app}",
	  "Readiness probe failed: Get \\\"http://10.42.3.17:8080/healthz\\\": context deadline exceeded (Client.Timeout exceeded while awaiting headers) for pod %s" },
	{ "FailedScheduling", "Pod", "default-scheduler", "",
	  "0/12 nodes are available: 3 Insufficient cpu, 9 node(s) didn't match Pod's node affinity/selector. preemption: 0/12 nodes are available: 12 No preemption victims found for incoming pod %s." },
	{ "FailedMount", "Pod", "kubelet", "",
	  "MountVolume.SetUp failed for volume \\\"config\\\" : configmap \\\"app-config\\\" not found (pod %s)" },
	{ "Failed", "Pod", "kubelet", "spec.containers{app}",
	  "Failed to pull image \\\"registry.example.com/shop/app:1.4.2\\\": rpc error: code = NotFound desc = failed to pull and unpack image for %s" },
	{ "Evicted", "Pod", "kubelet", "",
	  "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. Container app was using 812344Ki, request is 256Mi (pod %s)." },
	{ "OOMKilling", "Pod", "kernel-monitor", "",
	  "Memory cgroup out of memory: Killed process 4242 (java) total-vm:4194304kB, anon-rss:1048576kB, file-rss:0kB in %s" },
	{ "FailedCreatePodSandBox", "Pod", "kubelet", "",
	  "Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox of %s: plugin type=\\\"calico\\\" failed (add)" },
};
static const char *const ns_names[] = { "shop", "payments", "checkout", "search",
                                        "identity", "ingest", "billing", "platform" };
static const char *const managed_fields =
	"\"managedFields\":[{\"manager\":\"kubelet\",\"operation\":\"Update\",\"apiVersion\":\"v1\","
	"\"time\":\"%s\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:count\":{},"
	"\"f:firstTimestamp\":{},\"f:involvedObject\":{},\"f:lastTimestamp\":{},\"f:message\":{},"
	"\"f:reason\":{},\"f:reportingComponent\":{},\"f:reportingInstance\":{},\"f:source\":"
	"{\"f:component\":{},\"f:host\":{}},\"f:type\":{}}}]";

static int append_event(struct ca_buf *b, size_t i, size_t *stamp_at)
{
	const struct reason *r = &reasons[i % (sizeof reasons / sizeof reasons[0])];
	char ns[32], obj[96], uid[37], ouid[37], node[64], msg[400], mf[512];
	snprintf(ns, sizeof ns, "%s-%zu", ns_names[(i / 8) % 8], (i / 64) % 5);
	snprintf(obj, sizeof obj, "%s-%06zx-%05zu", ns_names[(i / 8) % 8], (size_t)(splitmix64(i / 3) & 0xffffff), i / 3);
	uuid_of(i, uid);
	uuid_of(i / 3 + (1ULL << 40), ouid);
	snprintf(node, sizeof node, "ip-10-0-%zu-%zu.ec2.internal", (i / 7) % 250, i % 250);
	/* The templates hold one %s: split there (no non-literal formats). */
	const char *hole = strstr(r->message, "%s");
	snprintf(msg, sizeof msg, "%.*s%s%s", (int)(hole - r->message), r->message, obj, hole + 2);
	snprintf(mf, sizeof mf, managed_fields, opt.now_rfc3339);
	bool modified = i % 5 == 4;
	int count = modified ? 2 + (int)(i % 9) : 1;
	enum ca_err err = ca_buf_printf(
		b,
		"{\"type\":\"%s\",\"object\":{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":"
		"{\"name\":\"%s.%016" PRIx64 "\",\"namespace\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%zu\","
		"\"creationTimestamp\":\"%s\",%s},\"involvedObject\":{\"kind\":\"%s\",\"namespace\":\"%s\","
		"\"name\":\"%s\",\"uid\":\"%s\",\"apiVersion\":\"v1\",\"resourceVersion\":\"%zu\"%s%s%s},"
		"\"reason\":\"%s\",\"message\":\"sent_ns=",
		modified ? "MODIFIED" : "ADDED", obj, splitmix64(i * 7 + 1), ns, uid, i + 2, opt.now_rfc3339,
		mf, r->kind, ns, obj, ouid, 1000 + i / 3, r->field_path[0] ? ",\"fieldPath\":\"" : "",
		r->field_path, r->field_path[0] ? "\"" : "", r->reason);
	if (err != CA_OK)
		return -1;
	*stamp_at = b->len;
	err = ca_buf_printf(
		b,
		"%0*d %s\",\"source\":{\"component\":\"%s\",\"host\":\"%s\"},\"firstTimestamp\":\"%s\","
		"\"lastTimestamp\":\"%s\",\"count\":%d,\"type\":\"Warning\",\"eventTime\":null,"
		"\"reportingComponent\":\"%s\",\"reportingInstance\":\"%s\"}}\n",
		SENT_NS_DIGITS, 0, msg, r->component, node, opt.now_rfc3339, opt.now_rfc3339, count,
		r->component, node);
	return err == CA_OK ? 0 : -1;
}

static int generate(void)
{
	struct ca_buf b;
	ca_buf_init(&b, (size_t)8 << 30);
	offs = malloc((opt.count + 1) * sizeof *offs);
	stamp = malloc((opt.count + 1) * sizeof *stamp);
	if (!offs || !stamp)
		return -1;
	for (size_t i = 0; i < opt.count; i++) {
		offs[i] = b.len;
		if (append_event(&b, i, &stamp[i]) != 0) {
			ca_buf_fini(&b);
			return -1;
		}
	}
	offs[opt.count] = b.len;
	data = ca_buf_take(&b, NULL);
	if (!data && opt.count > 0)
		return -1;
	return 0;
}

/* ------------------------------------------------------------- I/O helpers */

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Blocking writev of the whole vector, resuming after partial writes. */
static int writev_all(int fd, struct iovec *iov, int cnt)
{
	while (cnt > 0) {
		ssize_t w = writev(fd, iov, cnt);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		size_t left = (size_t)w;
		while (cnt > 0 && left >= iov->iov_len) {
			left -= iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0) {
			iov->iov_base = (char *)iov->iov_base + left;
			iov->iov_len -= left;
		}
	}
	return 0;
}

static void http_date(char *out, size_t len)
{
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

static int respond(int fd, int code, const char *reason, const char *body)
{
	char head[512], date[64];
	http_date(date, sizeof date);
	size_t blen = strlen(body);
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 %d %s\r\nAudit-Id: 00000000-0000-4000-8000-000000000000\r\n"
	                 "Cache-Control: no-cache, private\r\nContent-Type: application/json\r\n"
	                 "Date: %s\r\nContent-Length: %zu\r\n\r\n",
	                 code, reason, date, blen);
	if (n < 0 || (size_t)n >= sizeof head)
		return -1;
	struct iovec iov[2] = { { head, (size_t)n }, { (void *)body, blen } };
	return writev_all(fd, iov, 2);
}

static int respond_status(int fd, int code, const char *reason, const char *status_reason,
                          const char *message)
{
	char body[768];
	snprintf(body, sizeof body,
	         "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
	         "\"message\":\"%s\",\"reason\":\"%s\",\"code\":%d}\n",
	         message, status_reason, code);
	return respond(fd, code, reason, body);
}

/* ------------------------------------------------------------- the watch */

/* Value of query parameter key in q ("a=1&b=2"), or NULL. */
static const char *query_param(const char *q, const char *key, size_t *len)
{
	size_t kl = strlen(key);
	while (q && *q) {
		const char *amp = strchr(q, '&');
		size_t seg = amp ? (size_t)(amp - q) : strlen(q);
		if (seg > kl && strncmp(q, key, kl) == 0 && q[kl] == '=') {
			*len = seg - kl - 1;
			return q + kl + 1;
		}
		q = amp ? amp + 1 : NULL;
	}
	return NULL;
}

static void stamp_now(size_t i)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	uint64_t ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
	char *p = data + stamp[i] + SENT_NS_DIGITS;
	for (int d = 0; d < SENT_NS_DIGITS; d++) {
		*--p = (char)('0' + ns % 10);
		ns /= 10;
	}
}

/* Block (the client keeps the stream) until the peer closes. */
static void wait_close(int fd)
{
	char sink[4096];
	for (;;) {
		ssize_t r = recv(fd, sink, sizeof sink, 0);
		if (r == 0 || (r < 0 && errno != EINTR))
			return;
	}
}

static int serve_watch(int fd, const char *query)
{
	char head[512], date[64];
	size_t start = 0, vlen = 0;
	const char *rv = query_param(query, "resourceVersion", &vlen);
	if (rv && vlen > 0 && vlen < 20) {
		char tmp[24];
		memcpy(tmp, rv, vlen);
		tmp[vlen] = '\0';
		char *end = NULL;
		unsigned long long v = strtoull(tmp, &end, 10);
		/* Event i has resourceVersion i + 2: resume after v. */
		if (end && *end == '\0' && v >= 1)
			start = v - 1 > opt.count ? opt.count : (size_t)(v - 1);
	}
	http_date(date, sizeof date);
	int n = snprintf(head, sizeof head,
	                 "HTTP/1.1 200 OK\r\nAudit-Id: 00000000-0000-4000-8000-000000000001\r\n"
	                 "Cache-Control: no-cache, private\r\nContent-Type: application/json\r\n"
	                 "Date: %s\r\nTransfer-Encoding: chunked\r\n\r\n",
	                 date);
	if (write_all(fd, head, (size_t)n) != 0)
		return -1;
	printf("{\"watch_open\":true,\"from_index\":%zu,\"hold\":%s}\n", start, opt.hold ? "true" : "false");
	fflush(stdout);
	while (opt.hold && !released)
		usleep(1000);

	double t0 = mono_s();
	size_t sent = 0, bytes = 0;
	int rc = 0;
	if (opt.rate > 0) {
		/* Paced: one event per chunk, one write per event, at t0 + k/rate. */
		struct timespec base;
		clock_gettime(CLOCK_MONOTONIC, &base);
		for (size_t i = start; i < opt.count && rc == 0; i++) {
			double at = (double)(i - start) / opt.rate;
			struct timespec due = base;
			due.tv_sec += (time_t)at;
			due.tv_nsec += (long)((at - (double)(time_t)at) * 1e9);
			if (due.tv_nsec >= 1000000000L) {
				due.tv_sec++;
				due.tv_nsec -= 1000000000L;
			}
			while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR)
				;
			char hdr[24];
			size_t len = offs[i + 1] - offs[i];
			int hl = snprintf(hdr, sizeof hdr, "%zx\r\n", len);
			stamp_now(i);
			struct iovec iov[3] = { { hdr, (size_t)hl }, { data + offs[i], len }, { "\r\n", 2 } };
			rc = writev_all(fd, iov, 3);
			sent++;
			bytes += (size_t)hl + len + 2;
		}
	} else if (!opt.framing_64k) {
		/* One event per chunk; many chunks per writev so this server's
		 * syscalls are not what is measured (the bytes on the wire are
		 * the same as one write per event). */
		static const int max_batch = EVENT_BATCH;
		struct iovec iov[3 * EVENT_BATCH];
		char hdrs[EVENT_BATCH][24];
		for (size_t i = start; i < opt.count && rc == 0;) {
			int k = 0;
			for (; k < max_batch && i < opt.count; k++, i++) {
				size_t len = offs[i + 1] - offs[i];
				int hl = snprintf(hdrs[k], sizeof hdrs[k], "%zx\r\n", len);
				iov[3 * k] = (struct iovec){ hdrs[k], (size_t)hl };
				iov[3 * k + 1] = (struct iovec){ data + offs[i], len };
				iov[3 * k + 2] = (struct iovec){ "\r\n", 2 };
				bytes += (size_t)hl + len + 2;
			}
			rc = writev_all(fd, iov, 3 * k);
			sent += (size_t)k;
		}
	} else {
		/* The line stream cut into 64 KiB chunks. */
		size_t at = offs[start], end = offs[opt.count];
		struct iovec iov[3 * BIG_BATCH];
		char hdrs[BIG_BATCH][24];
		while (at < end && rc == 0) {
			int k = 0;
			for (; k < BIG_BATCH && at < end; k++) {
				size_t len = end - at < CHUNK_64K ? end - at : CHUNK_64K;
				int hl = snprintf(hdrs[k], sizeof hdrs[k], "%zx\r\n", len);
				iov[3 * k] = (struct iovec){ hdrs[k], (size_t)hl };
				iov[3 * k + 1] = (struct iovec){ data + at, len };
				iov[3 * k + 2] = (struct iovec){ "\r\n", 2 };
				bytes += (size_t)hl + len + 2;
				at += len;
			}
			rc = writev_all(fd, iov, 3 * k);
		}
		sent = opt.count - start;
	}
	double dt = mono_s() - t0;
	printf("{\"watch_done\":%s,\"sent\":%zu,\"wire_bytes\":%zu,\"seconds\":%.6f,\"rate\":%.0f,"
	       "\"mb_per_s\":%.1f}\n",
	       rc == 0 ? "true" : "false", sent, bytes, dt, dt > 0 ? (double)sent / dt : 0.0,
	       dt > 0 ? (double)bytes / dt / 1e6 : 0.0);
	fflush(stdout);
	if (rc == 0)
		wait_close(fd); /* keep the stream open: no relist, no rewatch */
	return -1;          /* the connection is done either way */
}

/* ------------------------------------------------------------- requests */

static bool authorized(const char *headers)
{
	if (!opt.token)
		return true;
	const char *p = headers;
	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, "Authorization:", 14) == 0) {
			const char *v = p + 14;
			while (*v == ' ')
				v++;
			size_t tl = strlen(opt.token);
			return strncmp(v, "Bearer ", 7) == 0 && strncmp(v + 7, opt.token, tl) == 0 &&
			       (v[7 + tl] == '\r' || v[7 + tl] == '\n');
		}
	}
	return false;
}

static bool is_events_path(const char *path)
{
	if (strcmp(path, "/api/v1/events") == 0)
		return true;
	static const char pre[] = "/api/v1/namespaces/";
	if (strncmp(path, pre, sizeof pre - 1) != 0)
		return false;
	const char *slash = strchr(path + sizeof pre - 1, '/');
	return slash && strcmp(slash, "/events") == 0;
}

/* Returns 0 to keep the connection, -1 to close it. */
static int handle(int fd, char *req)
{
	char *sp1 = strchr(req, ' ');
	if (!sp1)
		return -1;
	*sp1 = '\0';
	char *target = sp1 + 1;
	char *sp2 = strchr(target, ' ');
	if (!sp2)
		return -1;
	*sp2 = '\0';
	const char *headers = sp2 + 1;
	char *query = strchr(target, '?');
	if (query)
		*query++ = '\0';
	const char *path = target;

	if (!authorized(headers))
		return respond_status(fd, 401, "Unauthorized", "Unauthorized", "Unauthorized");
	if (strcmp(req, "GET") != 0)
		return respond_status(fd, 405, "Method Not Allowed", "MethodNotAllowed",
		                      "the server does not allow this method on the requested resource");
	if (strcmp(path, "/version") == 0)
		return respond(fd, 200, "OK",
		               "{\"major\":\"1\",\"minor\":\"28\",\"gitVersion\":\"v1.28.7\","
		               "\"gitCommit\":\"c8dcb00be9961ec36d141d2e4103f85f92bcf291\","
		               "\"gitTreeState\":\"clean\",\"buildDate\":\"2024-02-14T10:32:40Z\","
		               "\"goVersion\":\"go1.21.7\",\"compiler\":\"gc\",\"platform\":\"linux/amd64\"}\n");
	if (strcmp(path, "/api/v1/namespaces/kube-system") == 0)
		return respond(fd, 200, "OK",
		               "{\"kind\":\"Namespace\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":"
		               "\"kube-system\",\"uid\":\"d5fba74e-51a6-4dfe-8564-d26d014c5e9a\","
		               "\"resourceVersion\":\"4\",\"creationTimestamp\":\"2026-11-01T00:00:00Z\","
		               "\"labels\":{\"kubernetes.io/metadata.name\":\"kube-system\"}},\"spec\":"
		               "{\"finalizers\":[\"kubernetes\"]},\"status\":{\"phase\":\"Active\"}}\n");
	static const char nodes[] = "/api/v1/nodes/";
	if (strncmp(path, nodes, sizeof nodes - 1) == 0 && strcmp(path + sizeof nodes - 1, opt.node) == 0) {
		char body[1024];
		snprintf(body, sizeof body,
		         "{\"kind\":\"Node\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s\",\"uid\":"
		         "\"2b1c7e5a-3f7d-4c1e-9a52-6b0e4f1d2c3a\",\"resourceVersion\":\"5\",\"labels\":"
		         "{\"kubernetes.io/arch\":\"amd64\",\"kubernetes.io/hostname\":\"%s\","
		         "\"kubernetes.io/os\":\"linux\"}},\"spec\":{},\"status\":{\"conditions\":[{\"type\":"
		         "\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\"}],\"nodeInfo\":"
		         "{\"kubeletVersion\":\"v1.28.7\",\"osImage\":\"Debian GNU/Linux 12 (bookworm)\","
		         "\"architecture\":\"amd64\",\"operatingSystem\":\"linux\"}}}\n",
		         opt.node, opt.node);
		return respond(fd, 200, "OK", body);
	}
	if (is_events_path(path)) {
		size_t vl = 0;
		const char *w = query_param(query, "watch", &vl);
		if (w && ((vl == 1 && w[0] == '1') || (vl == 4 && strncmp(w, "true", 4) == 0)))
			return serve_watch(fd, query);
		return respond(fd, 200, "OK",
		               "{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":"
		               "{\"resourceVersion\":\"1\"},\"items\":[]}\n");
	}
	char msg[300];
	snprintf(msg, sizeof msg, "the server could not find the requested resource (%.200s)", path);
	return respond_status(fd, 404, "Not Found", "NotFound", msg);
}

static size_t content_length(const char *headers)
{
	const char *p = headers;
	while ((p = strchr(p, '\n')) != NULL) {
		p++;
		if (strncasecmp(p, "Content-Length:", 15) == 0)
			return (size_t)strtoull(p + 15, NULL, 10);
	}
	return 0;
}

static void *conn_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char *buf = malloc(REQ_MAX + 1);
	size_t have = 0;
	while (buf) {
		char *end = NULL;
		while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
			if (have >= REQ_MAX)
				goto out;
			ssize_t r = recv(fd, buf + have, REQ_MAX - have, 0);
			if (r < 0 && errno == EINTR)
				continue;
			if (r <= 0)
				goto out;
			have += (size_t)r;
		}
		size_t head_len = (size_t)(end - buf) + 4;
		buf[head_len - 2] = '\0'; /* keep one "\r\n" to end the last header */
		size_t body = content_length(buf);
		size_t used = head_len;
		if (handle(fd, buf) != 0)
			goto out;
		/* Discard a request body (none expected), keep pipelined bytes. */
		while (body > 0) {
			if (used < have) {
				size_t k = have - used < body ? have - used : body;
				used += k;
				body -= k;
				continue;
			}
			ssize_t r = recv(fd, buf, REQ_MAX, 0);
			if (r <= 0)
				goto out;
			have = (size_t)r;
			used = 0;
		}
		memmove(buf, buf + used, have - used);
		have -= used;
	}
out:
	free(buf);
	close(fd);
	return NULL;
}

/* ------------------------------------------------------------- raw reader */

/* One WATCH from resourceVersion 1, de-chunked; counts lines. */
static int read_mode(int port, size_t expect)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
		perror("connect");
		return 1;
	}
	/* The stream never ends on its own: give up after 10 s of silence. */
	struct timeval tv = { .tv_sec = 10 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	char req[512];
	int n = snprintf(req, sizeof req,
	                 "GET /api/v1/events?watch=1&allowWatchBookmarks=true&resourceVersion=1 HTTP/1.1\r\n"
	                 "Host: 127.0.0.1:%d\r\nAccept: application/json\r\n%s%s%s\r\n",
	                 port, opt.token ? "Authorization: Bearer " : "", opt.token ? opt.token : "",
	                 opt.token ? "\r\n" : "");
	if (write_all(fd, req, (size_t)n) != 0)
		return 1;
	size_t cap = (size_t)1 << 20;
	char *buf = malloc(cap);
	if (!buf)
		return 1;
	/* States: 0 head, 1 chunk-size line, 2 chunk data, 3 CRLF after data. */
	int state = 0;
	size_t want = 0, lines = 0, wire = 0, head_seen = 0;
	char line[32], head[4096];
	size_t ll = 0, head_len = 0;
	double t0 = 0, t1 = 0;
	while (lines < expect) {
		ssize_t r = recv(fd, buf, cap, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			fprintf(stderr, "stream ended or went silent after %zu lines\n", lines);
			break;
		}
		if (t0 == 0)
			t1 = t0 = mono_s();
		wire += (size_t)r;
		char *p = buf, *e = buf + r;
		while (p < e) {
			if (state == 0) {
				/* Find the end of the response head. */
				static const char crlf2[] = "\r\n\r\n";
				while (p < e && head_seen < 4) {
					if (head_len < sizeof head - 1)
						head[head_len++] = *p;
					head_seen = *p == crlf2[head_seen] ? head_seen + 1 : (*p == '\r' ? 1 : 0);
					p++;
				}
				if (head_seen == 4) {
					head[head_len] = '\0';
					if (strncmp(head, "HTTP/1.1 200 ", 13) != 0 ||
					    !strcasestr(head, "\r\nTransfer-Encoding: chunked\r\n")) {
						fprintf(stderr, "not a chunked 200 response:\n%s\n", head);
						goto done;
					}
					state = 1;
				}
			} else if (state == 1) {
				while (p < e && *p != '\n') {
					if (ll < sizeof line - 1)
						line[ll++] = *p;
					p++;
				}
				if (p < e) {
					p++;
					line[ll] = '\0';
					ll = 0;
					want = (size_t)strtoull(line, NULL, 16);
					if (want == 0) {
						fprintf(stderr, "stream ended (0-chunk) after %zu lines\n", lines);
						goto done;
					}
					state = 2;
				}
			} else if (state == 2) {
				size_t k = (size_t)(e - p) < want ? (size_t)(e - p) : want;
				for (char *q = p, *qe = p + k; (q = memchr(q, '\n', (size_t)(qe - q))) != NULL; q++)
					lines++;
				p += k;
				want -= k;
				if (want == 0)
					state = 3, want = 2;
			} else {
				size_t k = (size_t)(e - p) < want ? (size_t)(e - p) : want;
				p += k;
				want -= k;
				if (want == 0)
					state = 1;
			}
		}
		t1 = mono_s();
	}
done:
	{
		double dt = t1 - t0;
		printf("{\"reader_events\":%zu,\"wire_bytes\":%zu,\"seconds\":%.6f,\"rate\":%.0f,\"mb_per_s\":%.1f}\n",
		       lines, wire, dt, dt > 0 ? (double)lines / dt : 0.0, dt > 0 ? (double)wire / dt / 1e6 : 0.0);
	}
	free(buf);
	close(fd);
	return lines >= expect ? 0 : 1;
}

/* ------------------------------------------------------------- main */

static void usage(void)
{
	fprintf(stderr,
	        "usage: bench_apiserver [--port P] [--count N] [--framing event|64k] [--rate R]\n"
	        "                       [--hold] [--token T] [--node NAME]\n"
	        "       bench_apiserver --read PORT [--expect N] [--token T]\n");
}

static bool parse_num(const char *s, double lo, double hi, double *out)
{
	char *end = NULL;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || !end || *end || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

int main(int argc, char **argv)
{
	double port = 0, count = (double)opt.count, read_port = -1, expect = -1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		bool ok = true;
		if (strcmp(a, "--hold") == 0) {
			opt.hold = true;
			continue;
		}
		if (!v) {
			usage();
			return 2;
		}
		i++;
		if (strcmp(a, "--port") == 0)
			ok = parse_num(v, 0, 65535, &port);
		else if (strcmp(a, "--count") == 0)
			ok = parse_num(v, 0, 5e6, &count);
		else if (strcmp(a, "--rate") == 0)
			ok = parse_num(v, 0, 1e7, &opt.rate);
		else if (strcmp(a, "--read") == 0)
			ok = parse_num(v, 1, 65535, &read_port);
		else if (strcmp(a, "--expect") == 0)
			ok = parse_num(v, 1, 5e6, &expect);
		else if (strcmp(a, "--token") == 0)
			opt.token = v;
		else if (strcmp(a, "--node") == 0)
			opt.node = v;
		else if (strcmp(a, "--framing") == 0) {
			ok = strcmp(v, "event") == 0 || strcmp(v, "64k") == 0;
			opt.framing_64k = strcmp(v, "64k") == 0;
		} else
			ok = false;
		if (!ok) {
			usage();
			return 2;
		}
	}
	opt.count = (size_t)count;
	if (read_port > 0)
		return read_mode((int)read_port, expect > 0 ? (size_t)expect : opt.count);
	if (opt.rate > 0 && opt.framing_64k) {
		fprintf(stderr, "bench_apiserver: --rate needs --framing event\n");
		return 2;
	}

	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct tm tm;
	gmtime_r(&now.tv_sec, &tm);
	strftime(opt.now_rfc3339, sizeof opt.now_rfc3339, "%Y-%m-%dT%H:%M:%SZ", &tm);
	double g0 = mono_s();
	if (generate() != 0) {
		fprintf(stderr, "bench_apiserver: out of memory generating %zu events\n", opt.count);
		return 1;
	}
	double gen_s = mono_s() - g0;

	int ls = socket(AF_INET, SOCK_STREAM, 0);
	int one = 1;
	setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t alen = sizeof a;
	if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) != 0 || listen(ls, 64) != 0 ||
	    getsockname(ls, (struct sockaddr *)&a, &alen) != 0) {
		perror("bench_apiserver: listen");
		return 1;
	}
	printf("{\"ready\":%d,\"events\":%zu,\"line_bytes\":%zu,\"avg_line_bytes\":%.0f,"
	       "\"framing\":\"%s\",\"rate\":%.0f,\"generate_seconds\":%.3f}\n",
	       ntohs(a.sin_port), opt.count, offs[opt.count],
	       opt.count ? (double)offs[opt.count] / (double)opt.count : 0.0,
	       opt.framing_64k ? "64k" : "event", opt.rate, gen_s);
	fflush(stdout);

	for (;;) {
		int fd = accept(ls, NULL, NULL);
		if (fd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			perror("bench_apiserver: accept");
			return 1;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		pthread_t t;
		pthread_attr_t attr;
		pthread_attr_init(&attr);
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		if (pthread_create(&t, &attr, conn_main, (void *)(intptr_t)fd) != 0)
			close(fd);
		pthread_attr_destroy(&attr);
	}
}
