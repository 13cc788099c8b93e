/* tests/unit/test_reflector.c: the libcurl client and the reflector against
 * the simulated API server (tests/kubesim/kubesim.py).
 *
 * One simulator runs for the whole program; each scenario uses its own
 * namespace so that scenarios do not see each other's objects. Nothing
 * waits a fixed time for a result: the loop runs until a condition holds or
 * a generous deadline passes (the deadline only turns a hang into a failed
 * check). */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/prom.h"
#include "core/timeutil.h"
#include "kube/kobj.h"
#include "kube/kube.h"
#include "kube/reflector.h"
#include "log/log.h"

#define DEADLINE_MS 30000

static struct {
	pid_t pid;
	char dir[128];
	char api[128];
	char ctl[128];
	char kubeconfig[256];
	int api_port;
} sim;

static struct ca_loop *loop;

/* ------------------------------------------------------------------ */
/* The simulator process */

static bool sim_start(void)
{
	int pfd[2];
	snprintf(sim.dir, sizeof sim.dir, "/tmp/ca-kubesim-XXXXXX");
	if (!mkdtemp(sim.dir) || pipe(pfd) != 0)
		return false;
	sim.pid = fork();
	if (sim.pid < 0)
		return false;
	if (sim.pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl("/usr/bin/python3", "python3", CA_SOURCE_ROOT "/tests/kubesim/kubesim.py",
		      "--state-dir", sim.dir, "--bookmark-interval", "1", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char line[512];
	size_t n = 0;
	int64_t deadline = ca_now_monotonic_ms() + 60000;
	while (n < sizeof line - 1 && ca_now_monotonic_ms() < deadline) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		if (poll(&p, 1, 500) <= 0)
			continue;
		ssize_t r = read(pfd[0], line + n, sizeof line - 1 - n);
		if (r <= 0)
			break;
		n += (size_t)r;
		line[n] = '\0';
		if (strchr(line, '\n'))
			break;
	}
	close(pfd[0]);
	line[n] = '\0';
	if (sscanf(line, "READY %127s %127s", sim.api, sim.ctl) != 2) {
		fprintf(stderr, "kubesim did not start: \"%s\"\n", line);
		return false;
	}
	const char *colon = strrchr(sim.api, ':');
	sim.api_port = colon ? (int)strtol(colon + 1, NULL, 10) : 0;
	snprintf(sim.kubeconfig, sizeof sim.kubeconfig, "%s/kubeconfig", sim.dir);
	return true;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void sim_stop(void)
{
	if (sim.pid > 0) {
		kill(sim.pid, SIGTERM);
		waitpid(sim.pid, NULL, 0);
		sim.pid = 0;
	}
	if (sim.dir[0])
		nftw(sim.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static size_t ctl_write(char *p, size_t size, size_t n, void *ud)
{
	ca_buf_append(ud, p, size * n);
	return size * n;
}

/* A blocking call to the control port; returns the HTTP status. */
static long ctl(const char *method, const char *path, const char *body, struct ca_buf *out)
{
	char url[512];
	struct ca_buf sink;
	ca_buf_init(&sink, 0);
	snprintf(url, sizeof url, "%s%s", sim.ctl, path);
	CURL *e = curl_easy_init();
	struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/json");
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
	curl_easy_setopt(e, CURLOPT_NOPROXY, "*");
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 30L);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, ctl_write);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, out ? out : &sink);
	long code = 0;
	if (curl_easy_perform(e) == CURLE_OK)
		curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
	curl_slist_free_all(h);
	curl_easy_cleanup(e);
	ca_buf_fini(&sink);
	return code;
}

/* POST /emit-events; copies the uids into uids[0..count). */
static bool emit(const char *ns, int count, char uids[][64])
{
	char body[256];
	struct ca_buf out;
	struct ca_kobj *o = NULL;
	bool ok = false;
	ca_buf_init(&out, 0);
	snprintf(body, sizeof body,
	         "{\"namespace\":\"%s\",\"count\":%d,\"type\":\"Warning\",\"reason\":\"BackOff\","
	         "\"message\":\"Back-off restarting failed container\",\"kind\":\"Pod\","
	         "\"name_prefix\":\"p\"}",
	         ns, count);
	if (ctl("POST", "/emit-events", body, &out) != 200 ||
	    ca_kobj_parse(out.data, out.len, &o) != CA_OK)
		goto out;
	const struct ca_kobj *a = ca_kobj_get(o, "uids");
	if (ca_kobj_array_len(a) != (size_t)count)
		goto out;
	for (int i = 0; uids && i < count; i++)
		ca_strlcpy(uids[i], ca_kobj_str(ca_kobj_array_at(a, (size_t)i), NULL), 64);
	ok = true;
out:
	ca_kobj_free(o);
	ca_buf_fini(&out);
	return ok;
}

static long fault(const char *json)
{
	return ctl("POST", "/faults", json, NULL);
}

/* The number in sim /stats statuses[code]. */
static int64_t sim_status_count(const char *code)
{
	struct ca_buf out;
	struct ca_kobj *o = NULL;
	int64_t n = -1;
	ca_buf_init(&out, 0);
	if (ctl("GET", "/stats", NULL, &out) == 200 && ca_kobj_parse(out.data, out.len, &o) == CA_OK)
		n = ca_kobj_int(ca_kobj_member(ca_kobj_get(o, "statuses"), code), NULL, 0);
	ca_kobj_free(o);
	ca_buf_fini(&out);
	return n;
}

/* ------------------------------------------------------------------ */
/* Running the loop until something holds */

struct waiter {
	bool (*pred)(void *);
	void *arg;
	int64_t deadline;
	bool ok;
};

static void wait_tick(void *arg)
{
	struct waiter *w = arg;
	if (w->pred && w->pred(w->arg)) {
		w->ok = true;
		ca_loop_stop(loop);
	} else if (ca_now_monotonic_ms() >= w->deadline) {
		ca_loop_stop(loop);
	}
}

static bool run_until(bool (*pred)(void *), void *arg, int64_t timeout_ms)
{
	struct waiter w = { pred, arg, ca_now_monotonic_ms() + timeout_ms, false };
	struct ca_loop_timer *t = NULL;
	if (ca_loop_timer_new(loop, wait_tick, &w, &t) != CA_OK)
		return false;
	ca_loop_timer_start(t, 0, 10);
	ca_loop_run(loop);
	ca_loop_timer_free(t);
	return w.ok;
}

/* Let the loop turn for a while (only where a test checks that nothing
 * happens, e.g. while paused). */
static void run_for(int64_t ms)
{
	run_until(NULL, NULL, ms);
}

/* ------------------------------------------------------------------ */
/* One-shot requests */

struct resp {
	bool done;
	enum ca_err err;
	long status;
	char *body;
};

static void resp_cb(void *arg, enum ca_err err, long status, const char *body, size_t len)
{
	struct resp *r = arg;
	r->done = true;
	r->err = err;
	r->status = status;
	free(r->body);
	r->body = malloc(len + 1);
	if (r->body) {
		memcpy(r->body, body, len);
		r->body[len] = '\0';
	}
}

static bool resp_done(void *arg)
{
	return ((struct resp *)arg)->done;
}

static void get(struct ca_kube *k, const char *path, const char *url, size_t max_body,
                struct resp *r)
{
	free(r->body);
	memset(r, 0, sizeof *r);
	struct ca_kube_request req = { .path = path, .url = url, .max_body = max_body };
	enum ca_err err = ca_kube_request(k, &req, resp_cb, r);
	CHECK_INT(err, CA_OK);
	CHECK(!r->done); /* never from inside the call */
	if (err == CA_OK)
		CHECK(run_until(resp_done, r, DEADLINE_MS));
}

static struct ca_kube *kube_with_opts(const char *kubeconfig, bool allow_insecure_http)
{
	struct ca_kube_options o = {
		.kubeconfig = kubeconfig,
		.allow_insecure_http = allow_insecure_http,
		.user_agent = "collect-agent-test/0",
		.request_timeout_ms = 20000,
		.connect_timeout_ms = 5000,
	};
	char err[256] = "";
	struct ca_kube *k = NULL;
	enum ca_err rc = ca_kube_new(&k, loop, &o, err, sizeof err);
	if (rc != CA_OK)
		fprintf(stderr, "ca_kube_new(%s): %s: %s\n", kubeconfig, ca_strerror(rc), err);
	CHECK_INT(rc, CA_OK);
	return k;
}

static struct ca_kube *kube_with(const char *kubeconfig)
{
	return kube_with_opts(kubeconfig, false);
}

static bool metrics_have(struct ca_kube *k, const char *needle)
{
	struct ca_buf b;
	struct ca_prom p;
	ca_buf_init(&b, 0);
	ca_prom_init(&p, &b, "test");
	ca_kube_render_metrics(k, &p);
	bool found = b.data && strstr(b.data, needle);
	if (!found)
		fprintf(stderr, "metrics lack %s:\n%s", needle, b.data ? b.data : "");
	ca_buf_fini(&b);
	return found;
}

/* Write a kubeconfig for the simulator's server with the given user lines
 * and cluster lines; returns its path in out. */
static void write_kubeconfig(const char *name, const char *cluster_extra, const char *user_lines,
                             char *out, size_t outlen)
{
	snprintf(out, outlen, "%s/%s", sim.dir, name);
	FILE *f = fopen(out, "w");
	CHECK(f != NULL);
	if (!f)
		return;
	fprintf(f,
	        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:%d\n%s"
	        "  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: x\n"
	        "current-context: x\nusers:\n- name: u\n  user:\n%s",
	        sim.api_port, cluster_extra, user_lines);
	fclose(f);
}

static char *read_token(const char *file)
{
	char path[256];
	snprintf(path, sizeof path, "%s/%s", sim.dir, file);
	char *t = check_read_file(path, NULL);
	if (t)
		t[strcspn(t, "\r\n")] = '\0';
	return t;
}

/* ------------------------------------------------------------------ */
/* Recording what a reflector delivers */

struct seen {
	char uid[64];
	char rv[64];
	char name[128];
	int type;
	bool from_list;
	int n;
};

struct rec {
	struct seen v[2048];
	size_t n;
	int list_begins;
	int synced;
	int watch_objects;
	int list_objects;
	int with_managed_fields; /* objects whose metadata.managedFields is not empty */
	int types[3];
	char synced_rv[128];
	char last_rv[128];
	char last_obj_rv[128];
	struct ca_reflector *r;
	int pause_after_list_objects; /* pause when this many list objects arrived */
	bool pause_on_watch_object;
	bool free_on_object;
	bool freed;
};

static void rec_list_begin(void *arg)
{
	((struct rec *)arg)->list_begins++;
}

static void rec_object(void *arg, enum ca_watch_type type, const struct ca_kobj *o, bool from_list)
{
	struct rec *rc = arg;
	const char *uid = ca_kobj_str(o, "metadata.uid");
	const char *rv = ca_kobj_str(o, "metadata.resourceVersion");
	const char *name = ca_kobj_str(o, "metadata.name");
	CHECK(uid && rv && name);
	if (!uid || !rv || !name)
		return;
	if ((int)type >= 0 && type <= CA_WATCH_DELETED)
		rc->types[type]++;
	if (ca_kobj_array_len(ca_kobj_get(o, "metadata.managedFields")) > 0)
		rc->with_managed_fields++;
	if (from_list)
		rc->list_objects++;
	else
		rc->watch_objects++;
	ca_strlcpy(rc->last_obj_rv, rv, sizeof rc->last_obj_rv);
	size_t i;
	for (i = 0; i < rc->n; i++)
		if (strcmp(rc->v[i].uid, uid) == 0 && strcmp(rc->v[i].rv, rv) == 0 &&
		    rc->v[i].type == (int)type)
			break;
	if (i == rc->n && rc->n < sizeof rc->v / sizeof rc->v[0]) {
		ca_strlcpy(rc->v[i].uid, uid, sizeof rc->v[i].uid);
		ca_strlcpy(rc->v[i].rv, rv, sizeof rc->v[i].rv);
		ca_strlcpy(rc->v[i].name, name, sizeof rc->v[i].name);
		rc->v[i].type = (int)type;
		rc->v[i].from_list = from_list;
		rc->n++;
	}
	if (i < rc->n)
		rc->v[i].n++;
	if (rc->pause_after_list_objects && from_list && rc->list_objects == rc->pause_after_list_objects)
		ca_reflector_pause(rc->r);
	if (rc->pause_on_watch_object && !from_list) {
		rc->pause_on_watch_object = false;
		ca_reflector_pause(rc->r);
	}
	if (rc->free_on_object && !rc->freed) {
		rc->freed = true;
		ca_reflector_free(rc->r);
		rc->r = NULL;
	}
}

static void rec_synced(void *arg, const char *rv)
{
	struct rec *rc = arg;
	rc->synced++;
	ca_strlcpy(rc->synced_rv, rv, sizeof rc->synced_rv);
}

static void rec_rv(void *arg, const char *rv)
{
	struct rec *rc = arg;
	ca_strlcpy(rc->last_rv, rv, sizeof rc->last_rv);
}

static const struct ca_reflector_callbacks rec_cbs = {
	.on_list_begin = rec_list_begin,
	.on_object = rec_object,
	.on_synced = rec_synced,
	.on_resource_version = rec_rv,
};

/* Times uid was delivered (any type, any rv). */
static int uid_count(const struct rec *rc, const char *uid)
{
	int n = 0;
	for (size_t i = 0; i < rc->n; i++)
		if (strcmp(rc->v[i].uid, uid) == 0)
			n += rc->v[i].n;
	return n;
}

static int max_repeat(const struct rec *rc)
{
	int m = 0;
	for (size_t i = 0; i < rc->n; i++)
		if (rc->v[i].n > m)
			m = rc->v[i].n;
	return m;
}

static const struct seen *find_name(const struct rec *rc, const char *name, int type)
{
	for (size_t i = 0; i < rc->n; i++)
		if (strcmp(rc->v[i].name, name) == 0 && rc->v[i].type == type)
			return &rc->v[i];
	return NULL;
}

struct uids_wait {
	struct rec *rc;
	char (*uids)[64];
	int n;
};

static bool all_uids_seen(void *arg)
{
	struct uids_wait *w = arg;
	for (int i = 0; i < w->n; i++)
		if (uid_count(w->rc, w->uids[i]) == 0)
			return false;
	return true;
}

static bool wait_uids(struct rec *rc, char uids[][64], int n)
{
	struct uids_wait w = { rc, uids, n };
	return run_until(all_uids_seen, &w, DEADLINE_MS);
}

static struct ca_reflector_stats stats_of(struct ca_reflector *r)
{
	struct ca_reflector_stats s;
	ca_reflector_get_stats(r, &s);
	return s;
}

static bool is_synced_watching(void *arg)
{
	struct ca_reflector_stats s = stats_of(arg);
	return s.synced && s.watching;
}

static bool is_watching(void *arg)
{
	return stats_of(arg).watching;
}

static bool is_synced(void *arg)
{
	return stats_of(arg).synced;
}

static struct ca_reflector *reflector(struct ca_kube *k, const char *ns, struct rec *rc,
                                      int64_t page_size, const char *resume_rv)
{
	char path[128];
	snprintf(path, sizeof path, "/api/v1/namespaces/%s/events", ns);
	struct ca_reflector_options o = {
		.name = ns,
		.path = path,
		.page_size = page_size,
		.watch_timeout_min_ms = 3000,
		.watch_timeout_max_ms = 4000,
		.backoff_initial_ms = 100,
		.backoff_max_ms = 800,
		.resume_resource_version = resume_rv,
	};
	struct ca_reflector *r = NULL;
	CHECK_INT(ca_reflector_new(&r, k, &o, &rec_cbs, rc), CA_OK);
	if (r) {
		rc->r = r;
		CHECK_INT(ca_reflector_start(r), CA_OK);
	}
	return r;
}

/* ------------------------------------------------------------------ */
/* Scenarios */

static void test_client_basics(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	if (!k)
		return;
	struct resp r = { 0 };
	CHECK_STR(ca_kube_server(k), sim.api);
	CHECK(strstr(ca_kube_credential_source(k), "kubeconfig") != NULL);
	CHECK_STR(ca_kube_namespace(k), "default");
	CHECK(!ca_kube_api_ok(k));
	CHECK_INT(ca_kube_last_success_ms(k), 0);

	get(k, "/version", NULL, 0, &r);
	CHECK_INT(r.err, CA_OK);
	CHECK_INT(r.status, 200);
	struct ca_kobj *o = NULL;
	CHECK(r.body && ca_kobj_parse(r.body, strlen(r.body), &o) == CA_OK);
	CHECK(ca_kobj_str(o, "gitVersion") != NULL);
	ca_kobj_free(o);
	CHECK(ca_kube_api_ok(k));
	CHECK(ca_kube_last_success_ms(k) > 0);

	get(k, "/api/v1/namespaces/kube-system", NULL, 0, &r);
	CHECK_INT(r.status, 200);
	CHECK(r.body && strstr(r.body, "\"uid\"") != NULL);

	get(k, "/no/such/path", NULL, 0, &r);
	CHECK_INT(r.err, CA_OK);
	CHECK_INT(r.status, 404);

	/* The body cap. */
	get(k, "/version", NULL, 16, &r);
	CHECK_INT(r.err, CA_ETOOBIG);
	CHECK_INT(r.status, 0);

	/* An absolute URL: plain http, no credentials. */
	char url[256];
	snprintf(url, sizeof url, "%s/stats", sim.ctl);
	get(k, NULL, url, 0, &r);
	CHECK_INT(r.err, CA_OK);
	CHECK_INT(r.status, 200);
	CHECK(r.body && strstr(r.body, "requests") != NULL);

	/* Only http and https. */
	get(k, NULL, "file:///etc/hostname", 0, &r);
	CHECK(r.err != CA_OK);
	CHECK_INT(r.status, 0);

	/* A path must be a path. */
	struct ca_kube_request bad = { .path = "version" };
	CHECK_INT(ca_kube_request(k, &bad, resp_cb, &r), CA_EINVAL);

	CHECK(metrics_have(k, "code=\"200\"} 3"));
	CHECK(metrics_have(k, "code=\"404\"} 1"));
	CHECK(metrics_have(k, "agent_kube_watch_restarts_total"));
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_kube_health_json(k, &h);
	struct ca_kobj *hj = NULL;
	CHECK(ca_kobj_parse(h.data, h.len, &hj) == CA_OK);
	CHECK(ca_kobj_bool(hj, "api_ok", false));
	CHECK_STR(ca_kobj_str(hj, "server"), sim.api);
	ca_kobj_free(hj);
	ca_buf_fini(&h);

	/* Requests still in flight when the client goes away: no callback. */
	struct resp late = { 0 };
	struct ca_kube_request req = { .path = "/version" };
	CHECK_INT(ca_kube_request(k, &req, resp_cb, &late), CA_OK);
	ca_kube_free(k);
	run_for(100);
	CHECK(!late.done);
	free(r.body);
}

/* TLS variations: inline CA (a blob), tls-server-name, insecure, wrong CA. */
static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const char *s, size_t n)
{
	char *o = malloc(n / 3 * 4 + 8);
	size_t j = 0;
	for (size_t i = 0; i < n; i += 3) {
		unsigned v = (unsigned char)s[i] << 16;
		if (i + 1 < n)
			v |= (unsigned char)s[i + 1] << 8;
		if (i + 2 < n)
			v |= (unsigned char)s[i + 2];
		o[j++] = b64chars[(v >> 18) & 63];
		o[j++] = b64chars[(v >> 12) & 63];
		o[j++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
		o[j++] = i + 2 < n ? b64chars[v & 63] : '=';
	}
	o[j] = '\0';
	return o;
}

static bool make_other_ca(char *crt, size_t len)
{
	char key[256];
	snprintf(crt, len, "%s/other-ca.crt", sim.dir);
	snprintf(key, sizeof key, "%s/other-ca.key", sim.dir);
	pid_t p = fork();
	if (p == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		dup2(devnull, 1);
		dup2(devnull, 2);
		execl("/usr/bin/openssl", "openssl", "req", "-x509", "-newkey", "ec",
		      "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key,
		      "-out", crt, "-days", "1", "-subj", "/CN=not-the-cluster-ca", (char *)NULL);
		_exit(127);
	}
	int st = 0;
	return p > 0 && waitpid(p, &st, 0) == p && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_tls(void)
{
	char path[256], cluster[8192], user[256], ca_path[256];
	struct resp r = { 0 };
	char *token = read_token("token");
	CHECK(token != NULL);
	if (!token)
		return;
	snprintf(user, sizeof user, "    token: %s\n", token);
	snprintf(ca_path, sizeof ca_path, "%s/ca.crt", sim.dir);
	size_t ca_len = 0;
	char *ca = check_read_file(ca_path, &ca_len);
	CHECK(ca != NULL);
	char *ca64 = ca ? base64(ca, ca_len) : NULL;

	/* certificate-authority-data: the PEM goes to libcurl as a blob. */
	snprintf(cluster, sizeof cluster, "    certificate-authority-data: %s\n", ca64 ? ca64 : "");
	write_kubeconfig("kc-inline", cluster, user, path, sizeof path);
	struct ca_kube *k = kube_with(path);
	if (k) {
		get(k, "/version", NULL, 0, &r);
		CHECK_INT(r.err, CA_OK);
		CHECK_INT(r.status, 200);
		ca_kube_free(k);
	}

	/* tls-server-name: the certificate names localhost, not the URL's host. */
	snprintf(cluster, sizeof cluster, "    certificate-authority: %s\n    tls-server-name: localhost\n",
	         ca_path);
	write_kubeconfig("kc-sni", cluster, user, path, sizeof path);
	if ((k = kube_with(path))) {
		get(k, "/version", NULL, 0, &r);
		CHECK_INT(r.status, 200);
		ca_kube_free(k);
	}
	snprintf(cluster, sizeof cluster,
	         "    certificate-authority: %s\n    tls-server-name: wrong.example\n", ca_path);
	write_kubeconfig("kc-sni-bad", cluster, user, path, sizeof path);
	if ((k = kube_with(path))) {
		get(k, "/version", NULL, 0, &r);
		CHECK(r.err != CA_OK);
		CHECK_INT(r.status, 0);
		ca_kube_free(k);
	}

	/* insecure-skip-tls-verify. */
	write_kubeconfig("kc-insecure", "    insecure-skip-tls-verify: true\n", user, path, sizeof path);
	if ((k = kube_with(path))) {
		get(k, "/version", NULL, 0, &r);
		CHECK_INT(r.status, 200);
		ca_kube_free(k);
	}

	/* The wrong CA: every request fails, with a reason a human can act on. */
	char other[256];
	CHECK(make_other_ca(other, sizeof other));
	snprintf(cluster, sizeof cluster, "    certificate-authority: %s\n", other);
	write_kubeconfig("kc-wrong-ca", cluster, user, path, sizeof path);
	if ((k = kube_with(path))) {
		get(k, "/version", NULL, 0, &r);
		CHECK_INT(r.err, CA_EIO);
		CHECK_INT(r.status, 0);
		CHECK(!ca_kube_api_ok(k));
		struct ca_buf h;
		ca_buf_init(&h, 0);
		ca_kube_health_json(k, &h);
		CHECK(h.data && strstr(h.data, "certificate") != NULL);
		ca_buf_fini(&h);
		CHECK(metrics_have(k, "code=\"error\"} 1"));

		struct rec *rc = calloc(1, sizeof *rc);
		struct ca_reflector *rf = reflector(k, "tls", rc, 0, NULL);
		struct ca_reflector_stats s = { 0 };
		for (int64_t end = ca_now_monotonic_ms() + DEADLINE_MS;
		     rf && ca_now_monotonic_ms() < end && (s = stats_of(rf)).errors < 2;)
			run_for(50);
		CHECK(s.errors >= 2);
		CHECK(!s.synced);
		CHECK_INT(s.last_status, 0);
		CHECK(strstr(s.last_error, "certificate") != NULL);
		CHECK_INT(rc->n, 0);
		ca_reflector_free(rf);
		free(rc);
		ca_kube_free(k);
	}
	free(ca64);
	free(ca);
	free(token);
	free(r.body);
}

/* Pagination, then a watch with ADDED / MODIFIED / DELETED, a clean stream
 * end, and a resume from a stored resourceVersion. */
static void test_list_and_watch(void)
{
	char uids[7][64];
	CHECK(emit("pg", 7, uids));
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	struct ca_reflector *r = reflector(k, "pg", rc, 2, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.lists, 1);
	CHECK_INT(s.pages, 4);
	CHECK_INT(rc->list_begins, 1);
	CHECK_INT(rc->synced, 1);
	CHECK_INT(rc->list_objects, 7);
	for (int i = 0; i < 7; i++)
		CHECK_INT(uid_count(rc, uids[i]), 1);
	/* The server sends managedFields (shown by a plain GET); LIST pages
	 * and watch lines reach the consumer without them. */
	struct resp raw = { 0 };
	get(k, "/api/v1/namespaces/pg/events?limit=1", NULL, 0, &raw);
	CHECK(raw.body && strstr(raw.body, "\"managedFields\":[{") != NULL);
	free(raw.body);
	CHECK_INT(rc->with_managed_fields, 0);
	CHECK_STR(rc->synced_rv, s.resource_version);
	CHECK_STR(rc->last_rv, s.resource_version);
	CHECK(s.watches >= 1);
	CHECK(s.last_progress_ms > 0);

	/* A watch event of each kind. */
	long created = ctl("POST", "/objects",
	                   "{\"resource\":\"events\",\"object\":{\"metadata\":{\"name\":\"w1\",\"namespace\":\"pg\"},"
	                   "\"involvedObject\":{\"kind\":\"Pod\",\"name\":\"web\",\"namespace\":\"pg\"},"
	                   "\"reason\":\"Started\",\"message\":\"hello\",\"type\":\"Normal\"}}",
	                   NULL);
	CHECK(created == 200 || created == 201); /* the contract names no code */
	CHECK_INT(ctl("PUT", "/objects",
	              "{\"resource\":\"events\",\"object\":{\"metadata\":{\"name\":\"w1\",\"namespace\":\"pg\"},"
	              "\"message\":\"changed\"}}",
	              NULL),
	          200);
	CHECK_INT(ctl("DELETE", "/objects?resource=events&namespace=pg&name=w1", NULL, NULL), 200);
	for (int64_t end = ca_now_monotonic_ms() + DEADLINE_MS;
	     ca_now_monotonic_ms() < end && !find_name(rc, "w1", CA_WATCH_DELETED);)
		run_for(50);
	CHECK(find_name(rc, "w1", CA_WATCH_ADDED) != NULL);
	CHECK(find_name(rc, "w1", CA_WATCH_MODIFIED) != NULL);
	CHECK(find_name(rc, "w1", CA_WATCH_DELETED) != NULL);
	CHECK_INT(rc->types[CA_WATCH_ADDED], 8);
	CHECK_INT(rc->types[CA_WATCH_MODIFIED], 1);
	CHECK_INT(rc->types[CA_WATCH_DELETED], 1);
	s = stats_of(r);
	CHECK_STR(s.resource_version, rc->last_obj_rv);
	CHECK_STR(rc->last_rv, rc->last_obj_rv);

	/* The server ends the stream (timeoutSeconds): resume from the last
	 * resourceVersion, nothing repeated. */
	uint64_t restarts = s.watch_restarts;
	for (int64_t end = ca_now_monotonic_ms() + DEADLINE_MS;
	     ca_now_monotonic_ms() < end && stats_of(r).watch_restarts == restarts;)
		run_for(50);
	CHECK(run_until(is_watching, r, DEADLINE_MS));
	char more[2][64];
	CHECK(emit("pg", 2, more));
	CHECK(wait_uids(rc, more, 2));
	s = stats_of(r);
	CHECK(s.watch_restarts > restarts);
	CHECK_INT(s.lists, 1);
	CHECK_INT(s.relists_gone, 0);
	CHECK_INT(s.errors, 0);
	CHECK_INT(max_repeat(rc), 1);
	CHECK(metrics_have(k, "agent_kube_watch_restarts_total{cluster_id=\"test\"} "));

	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_reflector_health_json(r, &h);
	struct ca_kobj *hj = NULL;
	CHECK(ca_kobj_parse(h.data, h.len, &hj) == CA_OK);
	CHECK_STR(ca_kobj_str(hj, "name"), "pg");
	CHECK(ca_kobj_bool(hj, "synced", false));
	CHECK_STR(ca_kobj_str(hj, "resource_version"), s.resource_version);
	CHECK_INT(ca_kobj_int(hj, "objects", -1), (int64_t)s.objects);
	ca_kobj_free(hj);
	ca_buf_fini(&h);

	/* A restart that resumes from the stored resourceVersion: no LIST, and
	 * only what happened since is delivered. */
	char resume[128];
	ca_strlcpy(resume, s.resource_version, sizeof resume);
	ca_reflector_free(r);
	char gap[3][64], later[3][64];
	CHECK(emit("pg", 3, gap));
	CHECK(emit("pg", 3, later));
	struct rec *rc2 = calloc(1, sizeof *rc2);
	r = reflector(k, "pg", rc2, 2, resume);
	CHECK(wait_uids(rc2, gap, 3));
	CHECK(wait_uids(rc2, later, 3));
	s = stats_of(r);
	CHECK_INT(s.lists, 0);
	CHECK_INT(rc2->list_begins, 0);
	CHECK_INT(rc2->list_objects, 0);
	CHECK_INT(rc2->n, 6); /* the 3 + 3 created since the stored point */
	CHECK_INT(max_repeat(rc2), 1);
	CHECK(!s.synced);
	ca_reflector_free(r);
	free(rc2);
	free(rc);
	ca_kube_free(k);
}

/* Pages of big objects over max_list_bytes are asked again with half the
 * limit until they fit; every object arrives once and the list completes. */
static void test_big_pages(void)
{
	enum { N = 20 };
	static char body[80 * 1024];
	static char msg[60 * 1024];
	memset(msg, 'm', sizeof msg - 1);
	snprintf(body, sizeof body,
	         "{\"namespace\":\"bigpages\",\"count\":%d,\"type\":\"Warning\",\"reason\":\"BackOff\","
	         "\"message\":\"%s\",\"kind\":\"Pod\",\"name_prefix\":\"p\"}",
	         N, msg);
	CHECK_INT(ctl("POST", "/emit-events", body, NULL), 200);
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		goto out;
	struct ca_reflector_options o = {
		.name = "bigpages",
		.path = "/api/v1/namespaces/bigpages/events",
		.page_size = 16,
		.max_list_bytes = 300 * 1024, /* 16 or 8 of these events do not fit, 4 do */
		.watch_timeout_min_ms = 3000,
		.watch_timeout_max_ms = 4000,
		.backoff_initial_ms = 100,
		.backoff_max_ms = 800,
	};
	struct ca_reflector *r = NULL;
	CHECK_INT(ca_reflector_new(&r, k, &o, &rec_cbs, rc), CA_OK);
	if (!r)
		goto out;
	rc->r = r;
	CHECK_INT(ca_reflector_start(r), CA_OK);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.lists, 1);
	CHECK_INT(s.errors, 0);
	CHECK_INT(s.pages_too_big, 2);
	CHECK_INT(s.page_limit, 4);
	CHECK_INT(s.pages, 5); /* 20 objects, 4 a page */
	CHECK_INT(rc->list_objects, N);
	CHECK_INT(max_repeat(rc), 1);
	ca_reflector_free(r);
out:
	free(rc);
	ca_kube_free(k);
}

/* One LIST page at a time per client: while a reflector holds a page (here
 * paused half way through it), another reflector's LIST waits; it runs
 * once the first list is done, and a reflector freed while waiting leaves
 * the queue. */
static void test_list_slot(void)
{
	CHECK(emit("slota", 4, NULL));
	CHECK(emit("slotb", 3, NULL));
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *ra = calloc(1, sizeof *ra), *rb = calloc(1, sizeof *rb), *rw = calloc(1, sizeof *rw);
	if (!k || !ra || !rb || !rw)
		goto out;
	ra->pause_after_list_objects = 1;
	struct ca_reflector *a = reflector(k, "slota", ra, 2, NULL);
	for (int64_t end = ca_now_monotonic_ms() + DEADLINE_MS; ca_now_monotonic_ms() < end && ra->list_objects < 1;)
		run_for(20);
	CHECK_INT(ra->list_objects, 1); /* paused holding its first page */
	struct ca_reflector *b = reflector(k, "slotb", rb, 10, NULL);
	struct ca_reflector *w = reflector(k, "slotb", rw, 10, NULL);
	ca_reflector_free(w); /* leaves the queue without ever listing */
	run_for(1000);
	CHECK_INT(stats_of(b).pages, 0);
	CHECK_INT(rb->list_begins, 0);
	CHECK_INT(stats_of(a).pages, 1);
	ca_reflector_resume(a);
	CHECK(run_until(is_synced_watching, a, DEADLINE_MS));
	CHECK(run_until(is_synced_watching, b, DEADLINE_MS));
	CHECK_INT(ra->list_objects, 4);
	CHECK_INT(rb->list_objects, 3);
	CHECK_INT(rw->list_begins, 0);
	ca_reflector_free(a);
	ca_reflector_free(b);
out:
	free(ra);
	free(rb);
	free(rw);
	ca_kube_free(k);
}

/* Watches cut (between lines and inside one) resume from the last complete
 * object: every uid+rv exactly once. */
static void test_drops(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	char a[3][64], b[4][64], c[40][64], d[5][64];
	CHECK(emit("dr", 3, a));
	struct ca_reflector *r = reflector(k, "dr", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	CHECK(wait_uids(rc, a, 3));

	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	CHECK(emit("dr", 4, b)); /* while the watch is down */
	CHECK(wait_uids(rc, b, 4));
	CHECK(run_until(is_watching, r, DEADLINE_MS));

	/* Events in flight, then a cut in the middle of a line. */
	CHECK(emit("dr", 40, c));
	CHECK_INT(fault("{\"drop_watches\":true,\"mid_line\":true}"), 200);
	CHECK(emit("dr", 5, d));
	CHECK(wait_uids(rc, c, 40));
	CHECK(wait_uids(rc, d, 5));
	run_for(300); /* anything repeated would arrive now */
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(rc->n, 52);
	CHECK_INT(max_repeat(rc), 1);
	CHECK(s.watch_restarts >= 2);
	CHECK_INT(s.lists, 1);
	CHECK_INT(s.relists_gone, 0);
	CHECK(s.errors >= 2);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
}

/* Compaction while the watch is down: in-stream 410, relist, and the
 * objects of the gap are delivered. Also a LIST continue token expiring. */
static bool paused_after_first(void *arg)
{
	return ((struct rec *)arg)->list_objects >= 1;
}

static void test_gone(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	char a[3][64], gap[4][64];
	CHECK(emit("cp", 3, a));
	struct ca_reflector *r = reflector(k, "cp", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	/* The loop does not turn between these calls, so the watch cannot
	 * come back before the compaction. */
	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	CHECK(emit("cp", 4, gap));
	CHECK_INT(ctl("POST", "/compact", "{}", NULL), 200);
	CHECK(wait_uids(rc, gap, 4));
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.relists_gone, 1);
	CHECK_INT(s.lists, 2);
	CHECK_INT(rc->list_begins, 2);
	CHECK_INT(rc->synced, 2);
	for (int i = 0; i < 4; i++)
		CHECK_INT(uid_count(rc, gap[i]), 1);

	/* HTTP 410 on the WATCH request itself: relist too. */
	CHECK_INT(fault("{\"status\":410,\"count\":1,\"path_prefix\":\"/api/v1/namespaces/cp/events\","
	                "\"verb\":\"watch\"}"),
	          200);
	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	char gap2[2][64];
	CHECK(emit("cp", 2, gap2));
	CHECK(wait_uids(rc, gap2, 2));
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	s = stats_of(r);
	CHECK_INT(s.relists_gone, 2);
	CHECK_INT(s.lists, 3);
	char old_rv[128];
	ca_strlcpy(old_rv, rc->synced_rv, sizeof old_rv);
	ca_reflector_free(r);

	/* Resuming from a stored resourceVersion that was compacted away:
	 * the watch gets 410 and falls back to a LIST. */
	CHECK(emit("cp", 1, NULL));
	CHECK_INT(ctl("POST", "/compact", "{}", NULL), 200);
	memset(rc, 0, sizeof *rc);
	r = reflector(k, "cp", rc, 0, old_rv);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	s = stats_of(r);
	CHECK_INT(s.relists_gone, 1);
	CHECK_INT(s.lists, 1);
	CHECK_INT(rc->list_objects, 10);
	ca_reflector_free(r);

	/* A continue token that expires between pages: HTTP 410 on the LIST,
	 * the LIST starts over without it. */
	memset(rc, 0, sizeof *rc);
	char cc[5][64];
	CHECK(emit("cc", 5, cc));
	rc->pause_after_list_objects = 1;
	r = reflector(k, "cc", rc, 2, NULL);
	CHECK(run_until(paused_after_first, rc, DEADLINE_MS));
	run_for(200); /* paused: the next page is not requested */
	CHECK_INT(rc->list_objects, 1);
	CHECK_INT(stats_of(r).pages, 1);
	int64_t gone_before = sim_status_count("410");
	/* A write after the list's snapshot, then compaction past it. */
	CHECK(emit("elsewhere", 1, NULL));
	CHECK_INT(ctl("POST", "/compact", "{}", NULL), 200);
	ca_reflector_resume(r);
	CHECK(run_until(is_synced, r, DEADLINE_MS));
	s = stats_of(r);
	CHECK_INT(s.relists_gone, 1);
	CHECK_INT(s.lists, 1);
	CHECK_INT(rc->list_begins, 2);
	CHECK(sim_status_count("410") > gone_before);
	for (int i = 0; i < 5; i++)
		CHECK(uid_count(rc, cc[i]) >= 1);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
}

/* 429 with Retry-After, and 500s for a while: retried, never lost. */
static void test_throttle_and_errors(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	char a[2][64];
	CHECK(emit("rl", 2, a));
	int64_t before429 = sim_status_count("429");
	CHECK_INT(fault("{\"status\":429,\"count\":1,\"retry_after\":1,"
	                "\"path_prefix\":\"/api/v1/namespaces/rl/events\",\"verb\":\"list\"}"),
	          200);
	struct ca_reflector *r = reflector(k, "rl", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.errors, 1);
	CHECK_INT(s.lists, 1);
	CHECK_INT(rc->list_objects, 2);
	CHECK_STR(s.last_error, "");
	CHECK_INT(sim_status_count("429"), before429 + 1);
	CHECK(metrics_have(k, "code=\"429\"} 1"));

	/* 429 on the watch too. */
	CHECK_INT(fault("{\"status\":429,\"count\":1,\"retry_after\":1,"
	                "\"path_prefix\":\"/api/v1/namespaces/rl/events\",\"verb\":\"watch\"}"),
	          200);
	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	char b[2][64];
	CHECK(emit("rl", 2, b));
	CHECK(wait_uids(rc, b, 2));
	CHECK_INT(max_repeat(rc), 1);
	CHECK(metrics_have(k, "code=\"429\"} 2"));
	ca_reflector_free(r);

	/* 500 for two seconds from the start: backoff until it recovers. */
	memset(rc, 0, sizeof *rc);
	char c[2][64];
	CHECK(emit("fx", 2, c));
	CHECK_INT(fault("{\"status\":500,\"seconds\":2,\"path_prefix\":\"/api/v1/namespaces/fx/events\"}"),
	          200);
	r = reflector(k, "fx", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	s = stats_of(r);
	CHECK(s.errors >= 2);
	CHECK_STR(s.last_error, "");
	CHECK_INT(rc->list_objects, 2);
	CHECK(metrics_have(k, "code=\"500\"}"));

	/* 503 on watches for two seconds after a drop: resumes by itself. */
	CHECK_INT(fault("{\"status\":503,\"seconds\":2,\"path_prefix\":\"/api/v1/namespaces/fx/events\","
	                "\"verb\":\"watch\"}"),
	          200);
	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	char d[3][64];
	CHECK(emit("fx", 3, d));
	CHECK(wait_uids(rc, d, 3));
	CHECK_INT(max_repeat(rc), 1);
	CHECK_INT(stats_of(r).lists, 1);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
}

/* A hostile Retry-After must not turn the backoff into a busy loop: a
 * value so large that seconds * 1000 overflows int64, and Retry-After: 0.
 * Each fault lasts two seconds; in 1.5 s the reflector (backoff 100..800 ms)
 * may retry only a handful of times, never hundreds. */
static void retry_after_case(struct ca_kube *k, const char *ns, const char *retry_after)
{
	struct rec *rc = calloc(1, sizeof *rc);
	if (!rc)
		return;
	char a[1][64];
	CHECK(emit(ns, 1, a));
	char body[300];
	snprintf(body, sizeof body,
	         "{\"status\":429,\"seconds\":2,\"retry_after\":%s,"
	         "\"path_prefix\":\"/api/v1/namespaces/%s/events\",\"verb\":\"list\"}",
	         retry_after, ns);
	int64_t before = sim_status_count("429");
	CHECK_INT(fault(body), 200);
	struct ca_reflector *r = reflector(k, ns, rc, 0, NULL);
	run_for(1500);
	int64_t tries = sim_status_count("429") - before;
	if (tries >= 20)
		fprintf(stderr, "Retry-After %s: %lld LIST requests in 1.5 s\n", retry_after,
		        (long long)tries);
	CHECK(tries >= 1 && tries < 20);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS)); /* recovers after the fault */
	CHECK_INT(rc->list_objects, 1);
	ca_reflector_free(r);
	free(rc);
}

static void test_retry_after_hostile(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	if (!k)
		return;
	retry_after_case(k, "rah", "9223372036854775807");
	retry_after_case(k, "ra0", "0");
	ca_kube_free(k);
}

/* ------------------------------------------------------------------ */
/* A canned plain-HTTP server, for answers kubesim never gives: one thread,
 * one request per connection, the answer chosen by canned_answer(). */

struct canned {
	int fd;
	int port;
	pthread_t thread;
	pthread_mutex_t lock;
	char requests[16][1024]; /* request lines, in order */
	int nrequests;
	int total;               /* every request */
	int watches;
	bool endless_continue;   /* every LIST page: no items, a continue token */
	char list_headers[2048];  /* the header block of the last LIST request */
	char watch_headers[2048]; /* ... and of the last WATCH request */
};

static const char *canned_answer(struct canned *c, const char *line, char *buf, size_t len)
{
	c->total++;
	if (c->endless_continue && !strstr(line, "watch=1"))
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
		       "{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"10\","
		       "\"continue\":\"more\"},\"items\":[]}";
	if (!strstr(line, "watch=1"))
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
		       "{\"kind\":\"EventList\",\"apiVersion\":\"v1\",\"metadata\":{\"resourceVersion\":\"10\"},"
		       "\"items\":[]}";
	if (c->watches++ > 0)
		return "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
	/* One event whose resourceVersion does not fit the reflector's 128
	 * bytes; then the stream ends (a server timeout). */
	char rv[201];
	memset(rv, '7', sizeof rv - 1);
	rv[sizeof rv - 1] = '\0';
	snprintf(buf, len,
	         "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
	         "{\"type\":\"ADDED\",\"object\":{\"kind\":\"Event\",\"metadata\":{\"name\":\"e1\","
	         "\"namespace\":\"c\",\"uid\":\"u-1\",\"resourceVersion\":\"%s\"}}}\n",
	         rv);
	return buf;
}

static void *canned_main(void *arg)
{
	struct canned *c = arg;
	for (;;) {
		int s = accept(c->fd, NULL, NULL);
		if (s < 0)
			break;
		char req[8192];
		size_t n = 0;
		while (n < sizeof req - 1) {
			ssize_t r = read(s, req + n, sizeof req - 1 - n);
			if (r <= 0)
				break;
			n += (size_t)r;
			req[n] = '\0';
			if (strstr(req, "\r\n\r\n"))
				break;
		}
		req[n] = '\0';
		pthread_mutex_lock(&c->lock);
		ca_strlcpy(strstr(req, "watch=1") ? c->watch_headers : c->list_headers, req,
		           sizeof c->watch_headers);
		pthread_mutex_unlock(&c->lock);
		req[strcspn(req, "\r\n")] = '\0';
		char buf[4096];
		pthread_mutex_lock(&c->lock);
		if (c->nrequests < 16)
			ca_strlcpy(c->requests[c->nrequests++], req, sizeof c->requests[0]);
		const char *a = canned_answer(c, req, buf, sizeof buf);
		pthread_mutex_unlock(&c->lock);
		size_t off = 0, alen = strlen(a);
		while (off < alen) {
			ssize_t w = write(s, a + off, alen - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
		close(s);
	}
	return NULL;
}

static bool canned_start(struct canned *c)
{
	memset(c, 0, sizeof *c);
	pthread_mutex_init(&c->lock, NULL);
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof a;
	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(c->fd, 16) != 0 ||
	    getsockname(c->fd, (struct sockaddr *)&a, &al) != 0)
		return false;
	c->port = ntohs(a.sin_port);
	return pthread_create(&c->thread, NULL, canned_main, c) == 0;
}

static void canned_stop(struct canned *c)
{
	shutdown(c->fd, SHUT_RDWR); /* accept() returns */
	pthread_join(c->thread, NULL);
	close(c->fd);
	pthread_mutex_destroy(&c->lock);
}

static int canned_requests(struct canned *c)
{
	pthread_mutex_lock(&c->lock);
	int n = c->nrequests;
	pthread_mutex_unlock(&c->lock);
	return n;
}

static bool canned_three(void *arg)
{
	return canned_requests(arg) >= 3;
}

/* A server that sends a continue token on every page: the LIST is cut
 * after LIST_MAX_EMPTY_PAGES empty pages and starts over after a backoff,
 * instead of asking for pages as fast as the server answers, for ever; the
 * reflector is not ready meanwhile. */
static void test_endless_continue(void)
{
	struct canned c;
	if (!canned_start(&c)) {
		CHECK(!"canned server");
		return;
	}
	c.endless_continue = true;
	char path[256];
	snprintf(path, sizeof path, "%s/kc-endless", sim.dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fprintf(f,
		        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: http://127.0.0.1:%d\n"
		        "  name: c\ncontexts:\n- context:\n    cluster: c\n  name: x\ncurrent-context: x\n",
		        c.port);
		fclose(f);
	}
	struct ca_kube *k = kube_with(path);
	struct rec *rc = calloc(1, sizeof *rc);
	if (k && rc) {
		struct ca_reflector *r = reflector(k, "c", rc, 0, NULL);
		run_for(3000);
		struct ca_reflector_stats s = stats_of(r);
		char why[256] = "";
		/* Not ready: failed ("does not end"), or listing again after it. */
		CHECK(!ca_reflector_ready(r, why, sizeof why));
		CHECK(strstr(why, "does not end") != NULL || strstr(why, "listing") != NULL);
		CHECK(s.errors >= 1);
		CHECK_INT(s.lists, 0);
		pthread_mutex_lock(&c.lock);
		int total = c.total;
		pthread_mutex_unlock(&c.lock);
		/* 101 pages a LIST, backoffs of 100, 200, 400, 800 ms between:
		 * a few LISTs in 3 s, not thousands of pages. */
		CHECK(total >= 101);
		CHECK(total < 1000);
		if (total >= 1000)
			fprintf(stderr, "%d LIST requests in 3 s\n", total);
		ca_reflector_free(r);
	}
	free(rc);
	ca_kube_free(k);
	canned_stop(&c);
}

/* A server that answers every WATCH with 410 for two seconds: each relist
 * succeeds, each watch is Gone again. The first relist may be immediate
 * (DESIGN.md §3), but repeated ones must back off (client-go's
 * BackoffUntil does) instead of re-listing the collection in a busy loop. */
static void test_gone_storm(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (k && rc) {
		CHECK(emit("gs", 1, NULL));
		int64_t before = sim_status_count("410");
		CHECK_INT(fault("{\"status\":410,\"seconds\":2,\"path_prefix\":\"/api/v1/namespaces/gs/events\","
		                "\"verb\":\"watch\"}"),
		          200);
		struct ca_reflector *r = reflector(k, "gs", rc, 0, NULL);
		run_for(1500);
		int64_t gone = sim_status_count("410") - before;
		if (gone >= 10)
			fprintf(stderr, "410 storm: %lld relists in 1.5 s\n", (long long)gone);
		CHECK(gone >= 1 && gone < 10);
		CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
		ca_reflector_free(r);
	}
	free(rc);
	ca_kube_free(k);
}

/* resourceVersions are opaque strings: one longer than the reflector can
 * store must never be cut into a different (wrong) resume point. */
static void test_long_resource_version(void)
{
	struct canned c;
	if (!canned_start(&c)) {
		CHECK(!"canned server");
		return;
	}
	char path[256];
	snprintf(path, sizeof path, "%s/kc-canned", sim.dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fprintf(f,
		        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: http://127.0.0.1:%d\n"
		        "  name: c\ncontexts:\n- context:\n    cluster: c\n    user: u\n  name: x\n"
		        "current-context: x\nusers:\n- name: u\n  user:\n    token: t\n",
		        c.port);
		fclose(f);
	}
	/* A plain-http server with a token: refused unless asked for. */
	char why[512] = "";
	struct ca_kube *refused = NULL;
	struct ca_kube_options plain = { .kubeconfig = path };
	CHECK_INT(ca_kube_new(&refused, loop, &plain, why, sizeof why), CA_EDENIED);
	CHECK(refused == NULL);
	CHECK(strstr(why, "plain http") != NULL && strstr(why, "kubernetes.allow_insecure_http") != NULL);
	struct ca_kube *k = kube_with_opts(path, true);
	struct rec *rc = calloc(1, sizeof *rc);
	if (k && rc) {
		struct ca_reflector *r = reflector(k, "c", rc, 0, NULL);
		/* LIST, the WATCH with the long rv, then the WATCH that resumes. */
		CHECK(run_until(canned_three, &c, DEADLINE_MS));
		/* A LIST may come gzip-compressed (its decoded size is capped);
		 * a watch never asks for it: a paused gzip stream could inflate
		 * without bound, and a small hostile stream burn a core. */
		pthread_mutex_lock(&c.lock);
		CHECK(strcasestr(c.list_headers, "\r\nAccept-Encoding:") != NULL);
		CHECK(c.watch_headers[0] != '\0');
		CHECK(strcasestr(c.watch_headers, "\r\nAccept-Encoding:") == NULL);
		pthread_mutex_unlock(&c.lock);
		CHECK_INT(rc->watch_objects, 1);
		pthread_mutex_lock(&c.lock);
		const char *resume = c.requests[2];
		const char *p = strstr(resume, "resourceVersion=");
		CHECK(p != NULL);
		if (p) {
			p += strlen("resourceVersion=");
			size_t n = strcspn(p, "& ");
			/* the list's "10" (replaying is safe), or the whole value */
			if (!(n == 2 && strncmp(p, "10", 2) == 0) && n != 200)
				fprintf(stderr, "watch resumed from a resourceVersion of %zu bytes\n", n);
			CHECK((n == 2 && strncmp(p, "10", 2) == 0) || n == 200);
		}
		pthread_mutex_unlock(&c.lock);
		struct ca_reflector_stats s = stats_of(r);
		CHECK(strlen(s.resource_version) != sizeof s.resource_version - 1);
		ca_reflector_free(r);
	}
	free(rc);
	ca_kube_free(k);
	canned_stop(&c);
}

/* pause from inside on_object, resume later: nothing lost or repeated;
 * free from inside on_object is safe. */
static bool watch_objects_1(void *arg)
{
	return ((struct rec *)arg)->watch_objects >= 1;
}

static bool rec_freed(void *arg)
{
	return ((struct rec *)arg)->freed;
}

static void test_pause_and_free(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	struct ca_reflector *r = reflector(k, "ps", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	rc->pause_on_watch_object = true;
	char a[6][64];
	CHECK(emit("ps", 6, a));
	CHECK(run_until(watch_objects_1, rc, DEADLINE_MS));
	run_for(300); /* paused: nothing more arrives */
	CHECK_INT(rc->watch_objects, 1);
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_reflector_health_json(r, &h);
	CHECK(h.data && strstr(h.data, "\"paused\":true") != NULL);
	ca_buf_fini(&h);
	ca_reflector_resume(r);
	CHECK(wait_uids(rc, a, 6));
	CHECK_INT(rc->watch_objects, 6);
	CHECK_INT(max_repeat(rc), 1);
	ca_reflector_free(r);

	/* Free from inside the callback, during a LIST page and on a watch. */
	memset(rc, 0, sizeof *rc);
	rc->free_on_object = true;
	reflector(k, "pg", rc, 2, NULL);
	CHECK(run_until(rec_freed, rc, DEADLINE_MS));
	CHECK_INT(rc->list_objects, 1);
	run_for(200);
	CHECK_INT(rc->list_objects, 1);

	memset(rc, 0, sizeof *rc);
	r = reflector(k, "ps", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	rc->free_on_object = true;
	CHECK(emit("ps", 3, NULL));
	CHECK(run_until(rec_freed, rc, DEADLINE_MS));
	run_for(200);
	CHECK_INT(rc->watch_objects, 1);
	free(rc);
	ca_kube_free(k);
}

/* Bookmarks on a namespace watch advance the resume point silently. */
static bool has_bookmark(void *arg)
{
	return stats_of(arg).bookmarks >= 1;
}

static void test_bookmarks(void)
{
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	struct ca_reflector_options o = {
		.name = "namespaces",
		.path = "/api/v1/namespaces",
		.watch_timeout_min_ms = 5000,
		.watch_timeout_max_ms = 6000,
		.backoff_initial_ms = 100,
	};
	struct ca_reflector *r = NULL;
	CHECK_INT(ca_reflector_new(&r, k, &o, &rec_cbs, rc), CA_OK);
	if (!r)
		return;
	rc->r = r;
	CHECK_INT(ca_reflector_start(r), CA_OK);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));
	int objects = (int)rc->n;
	CHECK(objects >= 3);
	CHECK(run_until(has_bookmark, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT((int)rc->n, objects); /* bookmarks are not objects */
	CHECK_STR(rc->last_rv, s.resource_version);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
}

/* 403: counted and retried with backoff, no crash, the Status message
 * kept. */
static bool errors_3(void *arg)
{
	return stats_of(arg).errors >= 3;
}

static void test_forbidden(void)
{
	char path[256];
	CHECK_INT(ctl("POST", "/tokens",
	              "{\"token\":\"limited-token-0123456789\",\"deny\":[\"list events\",\"watch events\"]}",
	              NULL),
	          200);
	char cluster[300];
	snprintf(cluster, sizeof cluster, "    certificate-authority: %s/ca.crt\n", sim.dir);
	write_kubeconfig("kc-limited", cluster, "    token: limited-token-0123456789\n", path, sizeof path);
	struct ca_kube *k = kube_with(path);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	struct ca_reflector *r = reflector(k, "dn", rc, 0, NULL);
	CHECK(run_until(errors_3, r, DEADLINE_MS));
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.last_status, 403);
	CHECK(!s.synced);
	CHECK(strstr(s.last_error, "forbidden") != NULL);
	CHECK(metrics_have(k, "code=\"403\"}"));
	struct resp resp = { 0 };
	get(k, "/api/v1/namespaces", NULL, 0, &resp); /* what it may read */
	CHECK_INT(resp.status, 200);
	free(resp.body);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
}

/* Token rotation: in-cluster credentials pick up the new token file, and a
 * 401 makes the client re-read it (even when its mtime did not change). */
static void test_token_rotation(void)
{
	char dir[256], port[16];
	snprintf(dir, sizeof dir, "%s/serviceaccount", sim.dir);
	snprintf(port, sizeof port, "%d", sim.api_port);
	setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1", 1);
	setenv("KUBERNETES_SERVICE_PORT", port, 1);
	struct ca_kube_options o = {
		.user_agent = "collect-agent-test/0",
		.service_account_dir = dir,
	};
	char err[256] = "";
	struct ca_kube *k = NULL;
	CHECK_INT(ca_kube_new(&k, loop, &o, err, sizeof err), CA_OK);
	struct rec *rc = calloc(1, sizeof *rc);
	if (!k || !rc)
		return;
	CHECK(strstr(ca_kube_credential_source(k), "in-cluster") != NULL);
	struct ca_reflector *r = reflector(k, "tk", rc, 0, NULL);
	CHECK(run_until(is_synced_watching, r, DEADLINE_MS));

	/* A kubeconfig whose tokenFile we rewrite keeping its mtime, so only
	 * the 401 path can notice. */
	char tokpath[256], kcpath[256], user[300], cluster[300];
	char *tok = read_token("token");
	snprintf(tokpath, sizeof tokpath, "%s/my-token", sim.dir);
	FILE *f = fopen(tokpath, "w");
	CHECK(f && tok);
	if (f) {
		fputs(tok ? tok : "", f);
		fclose(f);
	}
	snprintf(user, sizeof user, "    tokenFile: %s\n", tokpath);
	snprintf(cluster, sizeof cluster, "    certificate-authority: %s/ca.crt\n", sim.dir);
	write_kubeconfig("kc-tokenfile", cluster, user, kcpath, sizeof kcpath);
	struct ca_kube *k2 = kube_with(kcpath);
	struct resp resp = { 0 };
	if (k2) {
		get(k2, "/version", NULL, 0, &resp);
		CHECK_INT(resp.status, 200);
	}

	CHECK_INT(ctl("POST", "/rotate-token", "{}", NULL), 200);
	char *newtok = read_token("token");
	CHECK(newtok && tok && strcmp(newtok, tok) != 0);

	/* In-cluster: the watch is cut and must come back with the new token. */
	CHECK_INT(fault("{\"drop_watches\":true}"), 200);
	char a[2][64];
	CHECK(emit("tk", 2, a));
	CHECK(wait_uids(rc, a, 2));
	CHECK(run_until(is_watching, r, DEADLINE_MS));
	get(k, "/version", NULL, 0, &resp);
	CHECK_INT(resp.status, 200);

	if (k2 && newtok) {
		struct stat st;
		CHECK(stat(tokpath, &st) == 0);
		f = fopen(tokpath, "w");
		if (f) {
			fputs(newtok, f);
			fclose(f);
		}
		struct timespec ts[2] = { st.st_atim, st.st_mtim };
		CHECK(utimensat(AT_FDCWD, tokpath, ts, 0) == 0);
		get(k2, "/version", NULL, 0, &resp);
		CHECK_INT(resp.err, CA_OK);
		CHECK_INT(resp.status, 200);
		CHECK(metrics_have(k2, "code=\"401\"} 1"));
		CHECK(metrics_have(k2, "agent_kube_token_reloads_total{cluster_id=\"test\"} 1"));
	}
	free(resp.body);
	free(tok);
	free(newtok);
	ca_kube_free(k2);
	ca_reflector_free(r);
	free(rc);
	ca_kube_free(k);
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("KUBERNETES_SERVICE_PORT");
}

/* A list-only reflector (metrics.k8s.io has no watch): it lists, then waits
 * for ca_reflector_relist(); a failure is reported once and not retried;
 * pages without a resourceVersion are fine; with aggregated_api an
 * extension server's 503 does not count against the API server. */
struct lister {
	int objects, synced, failed;
	long last_status;
	char last_message[200];
};

static void lister_object(void *arg, enum ca_watch_type type, const struct ca_kobj *o, bool from_list)
{
	struct lister *l = arg;
	CHECK_INT(type, CA_WATCH_ADDED);
	CHECK(from_list);
	CHECK(ca_kobj_str(o, "metadata.name") != NULL);
	l->objects++;
}

static void lister_synced(void *arg, const char *rv)
{
	(void)rv;
	((struct lister *)arg)->synced++;
}

static void lister_failed(void *arg, long status, const char *message)
{
	struct lister *l = arg;
	l->failed++;
	l->last_status = status;
	ca_strlcpy(l->last_message, message, sizeof l->last_message);
}

static bool lister_synced_twice(void *arg)
{
	return ((struct lister *)arg)->synced >= 2;
}

static bool lister_synced_once(void *arg)
{
	return ((struct lister *)arg)->synced >= 1;
}

static bool lister_failed_once(void *arg)
{
	return ((struct lister *)arg)->failed >= 1;
}

static struct ca_reflector *lister(struct ca_kube *k, const char *path, struct lister *l, bool aggregated,
                                   size_t max_list_bytes)
{
	static const struct ca_reflector_callbacks cbs = {
		.on_object = lister_object,
		.on_synced = lister_synced,
		.on_list_failed = lister_failed,
	};
	struct ca_reflector_options o = {
		.name = "lister",
		.path = path,
		.page_size = 2,
		.backoff_initial_ms = 100,
		.backoff_max_ms = 200,
		.max_list_bytes = max_list_bytes,
		.list_only = true,
		.aggregated_api = aggregated,
	};
	struct ca_reflector *r = NULL;
	CHECK_INT(ca_reflector_new(&r, k, &o, &cbs, l), CA_OK);
	if (r)
		CHECK_INT(ca_reflector_start(r), CA_OK);
	return r;
}

static void test_list_only(void)
{
	CHECK(emit("lo", 5, NULL));
	struct ca_kube *k = kube_with(sim.kubeconfig);
	struct lister l = { 0 };
	if (!k)
		return;
	struct ca_reflector *r = lister(k, "/api/v1/namespaces/lo/events", &l, false, 0);
	CHECK(run_until(lister_synced_once, &l, DEADLINE_MS));
	run_for(800);
	struct ca_reflector_stats s = stats_of(r);
	CHECK_INT(s.lists, 1);
	CHECK_INT(s.pages, 3);
	CHECK_INT(s.watches, 0);
	CHECK_INT(l.objects, 5);
	CHECK_INT(l.synced, 1);
	CHECK(ca_reflector_ready(r, NULL, 0));
	CHECK(ca_reflector_relist(r));
	CHECK(!ca_reflector_relist(r)); /* one at a time */
	CHECK(run_until(lister_synced_twice, &l, DEADLINE_MS));
	CHECK_INT(l.objects, 10);
	CHECK_INT(stats_of(r).watches, 0);
	ca_reflector_free(r);

	/* metrics.k8s.io not served: one failure, reported, not retried. */
	memset(&l, 0, sizeof l);
	CHECK(ctl("POST", "/metrics-api", "{\"enabled\": false}", NULL) == 200);
	r = lister(k, "/apis/metrics.k8s.io/v1beta1/nodes", &l, true, 0);
	CHECK(run_until(lister_failed_once, &l, DEADLINE_MS));
	run_for(1000);
	CHECK_INT(l.failed, 1);
	CHECK_INT(l.last_status, 404);
	CHECK_INT(stats_of(r).errors, 1);
	CHECK(!ca_reflector_ready(r, NULL, 0));

	/* Served: the NodeMetrics list has no resourceVersion; fine. */
	CHECK(ctl("POST", "/metrics-api", "{\"enabled\": true}", NULL) == 200);
	CHECK(ca_reflector_relist(r));
	CHECK(run_until(lister_synced_once, &l, DEADLINE_MS));
	CHECK_INT(l.objects, 1); /* kubesim's one node */
	CHECK(ca_reflector_ready(r, NULL, 0));
	CHECK(ca_kube_api_ok(k));

	/* metrics-server down (503 through the aggregator): reported, and the
	 * API server is still answering as far as the client is concerned. */
	CHECK(ctl("POST", "/faults",
	          "{\"status\": 503, \"count\": 5, \"path_prefix\": \"/apis/metrics.k8s.io\"}", NULL) == 200);
	l.failed = 0;
	CHECK(ca_reflector_relist(r));
	CHECK(run_until(lister_failed_once, &l, DEADLINE_MS));
	CHECK_INT(l.last_status, 503);
	CHECK(ca_kube_api_ok(k));
	CHECK(ctl("POST", "/faults", "{\"clear\": true}", NULL) == 200);
	ca_reflector_free(r);

	/* A server that ignores limit, as metrics-server does, with a list
	 * over max_list_bytes: smaller pages cannot help. One failure, said to
	 * be that (list_too_big), not retried. */
	for (int i = 0; i < 12; i++) {
		char body[320];
		snprintf(body, sizeof body,
		         "{\"resource\":\"pods\",\"object\":{\"metadata\":{\"name\":\"p%02d\","
		         "\"namespace\":\"lo-big\"},\"spec\":{\"containers\":[{\"name\":\"c\","
		         "\"image\":\"busybox:1.36\"}]},\"status\":{\"phase\":\"Running\"}}}",
		         i);
		CHECK_INT(ctl("POST", "/objects", body, NULL), 200);
	}
	CHECK(ctl("POST", "/metrics-api", "{\"enabled\": true, \"paginate\": false}", NULL) == 200);
	memset(&l, 0, sizeof l);
	/* 12 PodMetrics of about 200 bytes each; two of them fit. */
	r = lister(k, "/apis/metrics.k8s.io/v1beta1/namespaces/lo-big/pods", &l, true, 1024);
	CHECK(run_until(lister_failed_once, &l, DEADLINE_MS));
	run_for(500);
	struct ca_reflector_stats big = stats_of(r);
	CHECK_INT(l.failed, 1);
	CHECK_INT(l.last_status, 0);
	CHECK_INT(l.objects, 0);
	CHECK(big.list_too_big);
	CHECK_INT(big.page_limit, 1);
	CHECK_INT(big.pages_too_big, 1); /* page_size 2, then 1 */

	/* The same list from a server that pages it fits, one item a page. */
	CHECK(ctl("POST", "/metrics-api", "{\"enabled\": true, \"paginate\": true}", NULL) == 200);
	CHECK(ca_reflector_relist(r));
	CHECK(run_until(lister_synced_once, &l, DEADLINE_MS));
	CHECK_INT(l.objects, 12);
	CHECK(!stats_of(r).list_too_big);
	CHECK(ctl("POST", "/metrics-api", "{\"enabled\": false}", NULL) == 200);
	ca_reflector_free(r);
	ca_kube_free(k);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	unsetenv("KUBECONFIG");
	unsetenv("KUBERNETES_SERVICE_HOST");
	unsetenv("http_proxy");
	unsetenv("https_proxy");
	unsetenv("HTTP_PROXY");
	unsetenv("HTTPS_PROXY");
	unsetenv("ALL_PROXY");
	unsetenv("all_proxy");
	ca_log_configure(getenv("CA_TEST_LOG") ? CA_LOG_DEBUG : CA_LOG_ERROR, false);
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (ca_loop_new(&loop) != CA_OK || !sim_start()) {
		fprintf(stderr, "cannot start the simulated API server\n");
		sim_stop();
		ca_loop_free(loop);
		curl_global_cleanup();
		return 1;
	}
	test_client_basics();
	test_tls();
	test_list_and_watch();
	test_big_pages();
	test_list_slot();
	test_list_only();
	test_endless_continue();
	test_drops();
	test_gone();
	test_throttle_and_errors();
	test_retry_after_hostile();
	test_long_resource_version();
	test_gone_storm();
	test_pause_and_free();
	test_bookmarks();
	test_forbidden();
	test_token_rotation(); /* last: the kubeconfig's inline token dies here */
	sim_stop();
	ca_loop_free(loop);
	curl_global_cleanup();
	return check_report();
}
