/* tests/unit/test_metrics_fold.c: the collector's pure parts
 * (metrics/metrics_int.h): objects folded into compact records
 * (ca_metrics_fold_pod / _node / _namespace, ca_metrics_fold_usage), the
 * reason a pod shows (ca_metrics_pod_unhealthy) and how a sample is shared
 * out across parts (ca_metrics_plan_parts).
 *
 * Objects are real parsed JSON (ca_kobj_parse): the captured samples in
 * tests/fixtures/kube-api-samples as they are, and literals of the same
 * shape written with single quotes (obj() turns them into double quotes;
 * no literal here needs an apostrophe). One fold context serves the whole
 * program, as in the collector; every test frees what it folded and
 * checks that both interners are empty again, so a reference taken and
 * not given back fails the test that took it. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "kube/kobj.h"
#include "kube/store.h"
#include "log/log.h"
#include "metrics/intern.h"
#include "metrics/metrics_int.h"

static struct ca_metrics_fold_ctx ctx;

/* 2026-11-22T00:mm:ssZ in Unix seconds */
#define T00_00 1795305600u
#define T00_05 1795305900u
#define T00_10 1795306200u
#define T00_20 1795306800u
#define T00_27_16 1795307236u
#define T00_30 1795307400u
#define MI (1024ull * 1024)
#define GI (1024ull * MI)

/* ------------------------------------------------------------------ */
/* Helpers */

static struct ca_kobj *parse_or_die(const char *json, size_t len)
{
	struct ca_kobj *o = NULL;
	if (ca_kobj_parse(json, len, &o) != CA_OK || !o) {
		fprintf(stderr, "test bug: cannot parse %.300s\n", json);
		exit(1);
	}
	return o;
}

/* A JSON object from a printf format written with single quotes. */
__attribute__((format(printf, 1, 2))) static struct ca_kobj *obj(const char *fmt, ...)
{
	static char buf[64 * 1024];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof buf) {
		fprintf(stderr, "test bug: object too long\n");
		exit(1);
	}
	for (char *p = buf; *p; p++)
		if (*p == '\'')
			*p = '"';
	return parse_or_die(buf, (size_t)n);
}

static struct ca_kobj *sample(const char *file)
{
	char path[1024];
	size_t len = 0;
	snprintf(path, sizeof path, "%s/%s", CA_SAMPLES_DIR, file);
	char *text = check_read_file(path, &len);
	if (!text) {
		fprintf(stderr, "cannot read %s\n", path);
		exit(1);
	}
	struct ca_kobj *o = parse_or_die(text, len);
	free(text);
	return o;
}

static void reset_invalid(void)
{
	memset(ctx.invalid, 0, sizeof ctx.invalid);
}

/* Fold o as a pod (o freed); NULL when refused, *rc says why. */
static struct ca_pod_rec *fold_pod(struct ca_kobj *o, enum ca_err *rc)
{
	struct ca_pod_rec *p = NULL;
	size_t size = 0;
	enum ca_err r = ca_metrics_fold_pod(&ctx, o, &p, &size);
	ca_kobj_free(o);
	if (rc)
		*rc = r;
	if (r != CA_OK)
		return NULL;
	CHECK(p != NULL);
	CHECK(size >= sizeof *p);
	CHECK_INT(size, ca_store_heap_bytes(sizeof *p));
	return p;
}

static struct ca_node_rec *fold_node(struct ca_kobj *o, enum ca_err *rc)
{
	struct ca_node_rec *n = NULL;
	size_t size = 0;
	enum ca_err r = ca_metrics_fold_node(&ctx, o, &n, &size);
	ca_kobj_free(o);
	if (rc)
		*rc = r;
	if (r != CA_OK)
		return NULL;
	CHECK(n != NULL);
	CHECK(n->nconds <= CA_NODE_MAX_CONDITIONS);
	CHECK(size >= sizeof *n + n->nconds * sizeof n->conds[0]);
	return n;
}

static struct ca_ns_rec *fold_ns(struct ca_kobj *o, enum ca_err *rc)
{
	struct ca_ns_rec *n = NULL;
	size_t size = 0;
	enum ca_err r = ca_metrics_fold_namespace(&ctx, o, &n, &size);
	ca_kobj_free(o);
	if (rc)
		*rc = r;
	if (r != CA_OK)
		return NULL;
	CHECK(n != NULL);
	CHECK(size >= sizeof *n);
	return n;
}

static const char *name(uint32_t id)
{
	return ca_intern_str(ctx.names, id);
}

static const char *word(uint32_t id)
{
	return ca_intern_str(ctx.words, id);
}

/* Everything folded has been freed: no reference is left behind. */
#define CHECK_INTERNERS_EMPTY()                                                                    \
	do {                                                                                       \
		CHECK_INT(ca_intern_count(ctx.names), 0);                                          \
		CHECK_INT(ca_intern_count(ctx.words), 0);                                          \
	} while (0)

#define META                                                                                       \
	"'metadata':{'name':'web-1','namespace':'shop','creationTimestamp':'2026-11-22T00:00:00Z'" \
	"}"

/* A pod whose spec is given (without braces). */
static struct ca_pod_rec *pod_spec(const char *spec)
{
	enum ca_err rc;
	struct ca_pod_rec *p =
	        fold_pod(obj("{" META ",'spec':{%s},'status':{'phase':'Running'}}", spec), &rc);
	CHECK_INT(rc, CA_OK);
	return p;
}

/* A pod whose status is given (without braces). */
static struct ca_pod_rec *pod_status(const char *status)
{
	enum ca_err rc;
	struct ca_pod_rec *p = fold_pod(
	        obj("{" META
	            ",'spec':{'nodeName':'node-1','containers':[{'name':'a'}]},'status':{%s}}",
	            status),
	        &rc);
	CHECK_INT(rc, CA_OK);
	return p;
}

/* ------------------------------------------------------------------ */
/* Pods: the captured samples */

static void test_sample_pod(void)
{
	reset_invalid();
	enum ca_err rc;
	struct ca_pod_rec *p = fold_pod(sample("pod-crashloop-oomkilled.json"), &rc);
	CHECK_INT(rc, CA_OK);
	if (!p)
		return;
	CHECK_STR(name(p->ns), "capture");
	CHECK_STR(name(p->node), "ip-10-0-12-34.eu-west-1.compute.internal");
	/* checkout 250m/256Mi + envoy 100m/64Mi; limits only on checkout */
	CHECK_INT(p->cpu_req_m, 350);
	CHECK_INT(p->mem_req, 320 * MI);
	CHECK_INT(p->cpu_lim_m, 1000);
	CHECK_INT(p->mem_lim, 512 * MI);
	CHECK_INT(p->phase, CA_PHASE_RUNNING);
	CHECK_INT(p->restarts, 7);
	CHECK_INT(p->waiting, CA_WAIT_CRASHLOOP);
	CHECK_INT(p->restarting, 1);
	CHECK_INT(p->flags, CA_POD_HAS_READY); /* Ready is False */
	CHECK_INT(p->created_s, T00_27_16);
	CHECK_INT(p->oom_s, T00_27_16);
	CHECK_INT(p->since_s, T00_27_16);
	int64_t since = 0;
	CHECK_INT(ca_metrics_pod_unhealthy(p, (int64_t)T00_30 * 1000, 300000, &since),
	          CA_UNHEALTHY_OOM);
	CHECK_INT(since, (int64_t)T00_27_16 * 1000);
	/* two hours later the OOM is old news; the crash loop is not */
	CHECK_INT(ca_metrics_pod_unhealthy(p, ((int64_t)T00_27_16 + 7200) * 1000, 300000, &since),
	          CA_UNHEALTHY_CRASHLOOP);
	CHECK_INT(since, (int64_t)T00_27_16 * 1000);
	for (int i = 0; i < CA_INVALID_COUNT_; i++)
		CHECK_INT(ctx.invalid[i], 0);
	ca_metrics_free_pod(&ctx, p);
	CHECK_INTERNERS_EMPTY();
}

struct list_ctx {
	int kind; /* 0 pods, 1 nodes, 2 namespaces */
	void *recs[16];
	int n;
};

static void fold_items(const char *file, struct list_ctx *l)
{
	struct ca_kobj *list = sample(file);
	const struct ca_kobj *items = ca_kobj_get(list, "items");
	CHECK(ca_kobj_array_len(items) > 0);
	for (size_t i = 0; i < ca_kobj_array_len(items) && l->n < 16; i++) {
		const struct ca_kobj *it = ca_kobj_array_at(items, i);
		size_t size;
		void *rec = NULL;
		enum ca_err rc =
		        l->kind == 0
		                ? ca_metrics_fold_pod(&ctx, it, (struct ca_pod_rec **)&rec, &size)
		        : l->kind == 1
		                ? ca_metrics_fold_node(&ctx, it, (struct ca_node_rec **)&rec, &size)
		                : ca_metrics_fold_namespace(&ctx, it, (struct ca_ns_rec **)&rec,
		                                            &size);
		CHECK_INT(rc, CA_OK);
		if (rc == CA_OK)
			l->recs[l->n++] = rec;
	}
	ca_kobj_free(list);
}

/* The three lists share the names interner: a pod's namespace and node
 * are the very ids of the namespace and node records. */
static void test_sample_lists(void)
{
	reset_invalid();
	struct list_ctx pods = {.kind = 0}, nodes = {.kind = 1}, nss = {.kind = 2};
	fold_items("list-namespaces.json", &nss);
	fold_items("list-nodes.json", &nodes);
	fold_items("list-pods-page1.json", &pods);
	CHECK_INT(nss.n, 7);
	CHECK_INT(nodes.n, 1);
	CHECK_INT(pods.n, 2);
	if (nss.n != 7 || nodes.n != 1 || pods.n != 2)
		goto out;
	uint32_t capture = ca_intern_find(ctx.names, "capture", 7);
	CHECK(capture != 0);
	int seen = 0;
	for (int i = 0; i < nss.n; i++) {
		const struct ca_ns_rec *n = nss.recs[i];
		CHECK_INT(n->terminating, 0);
		seen += n->name == capture;
		for (int j = 0; j < i; j++)
			CHECK(((const struct ca_ns_rec *)nss.recs[j])->name != n->name);
	}
	CHECK_INT(seen, 1);
	const struct ca_node_rec *node = nodes.recs[0];
	const struct ca_pod_rec *checkout = pods.recs[0], *web = pods.recs[1];
	CHECK_INT(checkout->ns, capture);
	CHECK_INT(web->ns, capture);
	CHECK_INT(checkout->node, node->name);
	CHECK_INT(node->ready, 1);
	/* web-1: Pending, not scheduled, no requests, no status times */
	CHECK_INT(web->node, 0);
	CHECK_INT(web->phase, CA_PHASE_PENDING);
	CHECK_INT(web->cpu_req_m, 0);
	CHECK_INT(web->mem_req, 0);
	CHECK_INT(web->restarts, 0);
	CHECK_INT(web->waiting, CA_WAIT_NONE);
	CHECK(web->created_s != 0);
	CHECK_INT(web->since_s, web->created_s);
	for (int i = 0; i < CA_INVALID_COUNT_; i++)
		CHECK_INT(ctx.invalid[i], 0);
	/* 7 namespaces and the node: the pods added no name */
	CHECK_INT(ca_intern_count(ctx.names), 8);
out:
	for (int i = 0; i < pods.n; i++)
		ca_metrics_free_pod(&ctx, pods.recs[i]);
	for (int i = 0; i < nodes.n; i++)
		ca_metrics_free_node(&ctx, nodes.recs[i]);
	for (int i = 0; i < nss.n; i++)
		ca_metrics_free_namespace(&ctx, nss.recs[i]);
	CHECK_INTERNERS_EMPTY();
}

/* ------------------------------------------------------------------ */
/* Pods: requests and limits */

static void test_pod_resources(void)
{
	reset_invalid();
	/* Sums over containers, each field on its own; the largest init
	 * container wins a field when it is more than that sum. */
	struct ca_pod_rec *p =
	        pod_spec("'initContainers':["
	                 "{'name':'i1','resources':{'requests':{'cpu':'1','memory':'1Mi'},"
	                 "'limits':{'cpu':'2'}}},"
	                 "{'name':'i2','resources':{'requests':{'cpu':'300m','memory':'2Gi'}}}],"
	                 "'containers':["
	                 "{'name':'c1','resources':{'requests':{'cpu':'100m','memory':'1.5Gi'},"
	                 "'limits':{'cpu':'0.5','memory':'2Gi'}}},"
	                 "{'name':'c2','resources':{'requests':{'cpu':'250m','memory':'1Ki'}}},"
	                 "{'name':'c3'},"
	                 "{'name':'c4','resources':{'requests':{'cpu':'0.5','memory':'2e3'},"
	                 "'limits':{}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 1000); /* i1's 1 > 100m + 250m + 500m */
		CHECK_INT(p->mem_req, 2 * GI); /* i2's 2Gi > 1.5Gi + 1Ki + 2000 */
		CHECK_INT(p->cpu_lim_m, 2000); /* i1's 2 > 500m */
		CHECK_INT(p->mem_lim, 2 * GI); /* c1 only; no init limit */
		ca_metrics_free_pod(&ctx, p);
	}
	/* without init containers: the plain sums */
	p = pod_spec("'containers':["
	             "{'name':'c1','resources':{'requests':{'cpu':'100m','memory':'1.5Gi'}}},"
	             "{'name':'c2','resources':{'requests':{'cpu':'250m','memory':'1Ki'}}},"
	             "{'name':'c4','resources':{'requests':{'cpu':'0.5','memory':'2e3'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 850);
		CHECK_INT(p->mem_req, 3 * GI / 2 + 1024 + 2000);
		CHECK_INT(p->cpu_lim_m, 0);
		CHECK_INT(p->mem_lim, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	/* init containers bigger on one field only; a zero-sized regular set */
	p = pod_spec("'initContainers':[{'name':'i','resources':{'limits':{'memory':'64Mi'}}}],"
	             "'containers':["
	             "{'name':'c','resources':{'limits':{'cpu':'3','memory':'32Mi'}}}]");
	if (p) {
		CHECK_INT(p->cpu_lim_m, 3000);
		CHECK_INT(p->mem_lim, 64 * MI);
		ca_metrics_free_pod(&ctx, p);
	}
	/* rounding up as apimachinery: 1u of CPU is 1m, half a byte is 1 */
	p = pod_spec(
	        "'containers':[{'name':'c','resources':{'requests':{'cpu':'1u','memory':'0.5'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 1);
		CHECK_INT(p->mem_req, 1);
		ca_metrics_free_pod(&ctx, p);
	}
	/* no spec at all, no containers, containers not an array */
	p = pod_spec("'containers':{}");
	if (p) {
		CHECK_INT(p->cpu_req_m + p->cpu_lim_m + p->mem_req + p->mem_lim, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	p = pod_spec("'containers':[]");
	if (p) {
		CHECK_INT(p->cpu_req_m + p->cpu_lim_m + p->mem_req + p->mem_lim, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	/* CPU past 2^32-1 millicores saturates; memory adds up in 64 bits */
	p = pod_spec("'containers':["
	             "{'name':'a','resources':{'requests':{'cpu':'3000000','memory':'8Ei'}}},"
	             "{'name':'b','resources':{'requests':{'cpu':'3000000','memory':'8Ei'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, UINT32_MAX);
		/* 8Ei does not fit int64 bytes: counted, absent */
		CHECK_INT(p->mem_req, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 2);
	reset_invalid();
	p = pod_spec("'containers':[{'name':'a','resources':{'requests':{'memory':'7Ei'}}},"
	             "{'name':'b','resources':{'requests':{'memory':'7Ei'}}},"
	             "{'name':'c','resources':{'requests':{'memory':'7Ei'}}}]");
	if (p) {
		CHECK(p->mem_req == 3ull * 7 * (1ull << 60) || p->mem_req == UINT64_MAX);
		CHECK(p->mem_req >= 7ull * (1ull << 60));
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 0);
	CHECK_INTERNERS_EMPTY();
}

static void test_pod_bad_quantities(void)
{
	reset_invalid();
	/* Each bad one is counted and absent; its neighbours still count. */
	struct ca_pod_rec *p =
	        pod_spec("'containers':["
	                 "{'name':'a','resources':{'requests':{'cpu':'banana','memory':'128Mi'},"
	                 "'limits':{'cpu':'200m','memory':'banana'}}},"
	                 "{'name':'b','resources':{'requests':{'cpu':'100m','memory':'-1'}}},"
	                 "{'name':'c','resources':{'requests':{'cpu':5,'memory':null}}},"
	                 "{'name':'d','resources':{'requests':{'cpu':'1 Gi','memory':'1Mi'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 100);
		CHECK_INT(p->mem_req, 129 * MI);
		CHECK_INT(p->cpu_lim_m, 200);
		CHECK_INT(p->mem_lim, 0);
		/* banana, banana, -1, 5, "1 Gi"; null is plain absent */
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 5);
		CHECK_INT(ctx.invalid[CA_INVALID_COUNT], 0);
		CHECK_INT(ctx.invalid[CA_INVALID_PHASE], 0);
		CHECK_INT(ctx.invalid[CA_INVALID_NAME], 0);
		CHECK_INT(p->phase, CA_PHASE_RUNNING);
		ca_metrics_free_pod(&ctx, p);
	}
	/* a bad init container leaves the sum of the others */
	reset_invalid();
	p = pod_spec("'initContainers':["
	             "{'name':'i','resources':{'requests':{'cpu':'-4','memory':{}}}}],"
	             "'containers':["
	             "{'name':'c','resources':{'requests':{'cpu':'10m','memory':'10Mi'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 10);
		CHECK_INT(p->mem_req, 10 * MI);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 2);
		ca_metrics_free_pod(&ctx, p);
	}
	/* "-0" is zero, not negative */
	reset_invalid();
	p = pod_spec(
	        "'containers':[{'name':'c','resources':{'requests':{'cpu':'-0','memory':'0'}}}]");
	if (p) {
		CHECK_INT(p->cpu_req_m, 0);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 0);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INTERNERS_EMPTY();
}

/* ------------------------------------------------------------------ */
/* Pods: status */

static void test_pod_restart_counts(void)
{
	reset_invalid();
	struct ca_pod_rec *p =
	        pod_status("'phase':'Running','initContainerStatuses':["
	                   "{'name':'i','restartCount':2}],'containerStatuses':["
	                   "{'name':'a','restartCount':-1},{'name':'b','restartCount':3},"
	                   "{'name':'c','restartCount':2000000000},{'name':'d','restartCount':4},"
	                   "{'name':'e','restartCount':'5'},{'name':'f','restartCount':1.5},"
	                   "{'name':'g','restartCount':1e300},{'name':'h'},"
	                   "{'name':'k','restartCount':1000000000}]");
	if (p) {
		/* 2 + 3 + 4 + 10^9; -1, 2*10^9, "5", 1.5, 1e300 counted */
		CHECK_INT(p->restarts, 1000000009);
		CHECK_INT(ctx.invalid[CA_INVALID_COUNT], 5);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 0);
		ca_metrics_free_pod(&ctx, p);
	}
	/* Five containers at the limit: the sum saturates at 2^32-1. */
	reset_invalid();
	p = pod_status("'phase':'Running','containerStatuses':[{'restartCount':1000000000},"
	               "{'restartCount':1000000000},{'restartCount':1000000000},"
	               "{'restartCount':1000000000},{'restartCount':1000000000}]");
	if (p) {
		CHECK_INT(p->restarts, UINT32_MAX);
		CHECK_INT(ctx.invalid[CA_INVALID_COUNT], 0);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INTERNERS_EMPTY();
}

static void test_pod_phases(void)
{
	static const struct {
		const char *json; /* status.phase as written, or NULL for none */
		enum ca_pod_phase phase;
	} ok[] = {
	        {"'Pending'", CA_PHASE_PENDING},     {"'Running'", CA_PHASE_RUNNING},
	        {"'Succeeded'", CA_PHASE_SUCCEEDED}, {"'Failed'", CA_PHASE_FAILED},
	        {"'Unknown'", CA_PHASE_UNKNOWN},     {"''", CA_PHASE_PENDING},
	        {"null", CA_PHASE_PENDING},
	};
	reset_invalid();
	for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		enum ca_err rc;
		struct ca_pod_rec *p =
		        fold_pod(obj("{" META ",'status':{'phase':%s}}", ok[i].json), &rc);
		CHECK_INT(rc, CA_OK);
		if (p) {
			CHECK_INT(p->phase, ok[i].phase);
			ca_metrics_free_pod(&ctx, p);
		}
	}
	enum ca_err rc;
	struct ca_pod_rec *p =
	        fold_pod(obj("{" META "}"), &rc); /* no status: not seen by a kubelet */
	CHECK_INT(rc, CA_OK);
	if (p) {
		CHECK_INT(p->phase, CA_PHASE_PENDING);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INT(ctx.invalid[CA_INVALID_PHASE], 0);
	CHECK_STR(ca_metrics_phase_name(CA_PHASE_SUCCEEDED), "Succeeded");
	CHECK_STR(ca_metrics_phase_name((enum ca_pod_phase)99), "Unknown");

	/* A phase Kubernetes does not have skips the pod, counted. */
	static const char *const bad[] = {"'Bogus'", "'running'", "'Running '", "'Terminating'"};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		reset_invalid();
		p = fold_pod(obj("{" META ",'spec':{'nodeName':'node-1'},'status':{'phase':%s}}",
		                 bad[i]),
		             &rc);
		CHECK_INT(rc, CA_EINVAL);
		CHECK(p == NULL);
		CHECK_INT(ctx.invalid[CA_INVALID_PHASE], 1);
		CHECK_INT(ctx.invalid[CA_INVALID_NAME], 0);
		CHECK_INTERNERS_EMPTY(); /* nothing held for a refused pod */
	}
	CHECK_STR(ca_metrics_invalid_name(CA_INVALID_PHASE), "phase");
	CHECK_STR(ca_metrics_invalid_name(CA_INVALID_QUANTITY), "quantity");
	CHECK_STR(ca_metrics_invalid_name(CA_INVALID_COUNT_), "other");
}

static void test_pod_names(void)
{
	static const char *const bad[] = {
	        "{'metadata':{'namespace':'shop'},'status':{'phase':'Running'}}",
	        "{'metadata':{'name':'web-1'},'status':{'phase':'Running'}}",
	        "{'metadata':{'name':'','namespace':'shop'}}",
	        "{'metadata':{'name':'web-1','namespace':''}}",
	        "{'metadata':{'name':7,'namespace':'shop'}}",
	        "{'metadata':{'name':'web-1','namespace':['shop']}}",
	        "{'metadata':null}",
	        "{'kind':'Pod'}",
	        "[{'metadata':{'name':'web-1','namespace':'shop'}}]",
	        "'web-1'",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		reset_invalid();
		enum ca_err rc;
		struct ca_pod_rec *p = fold_pod(obj("%s", bad[i]), &rc);
		CHECK_INT(rc, CA_EINVAL);
		CHECK(p == NULL);
		CHECK_INT(ctx.invalid[CA_INVALID_NAME], 1);
		CHECK_INTERNERS_EMPTY();
	}
	/* the name check comes first: a bad phase on a nameless pod is a name */
	reset_invalid();
	enum ca_err rc;
	CHECK(fold_pod(obj("{'metadata':{'namespace':'shop'},'status':{'phase':'Bogus'}}"), &rc) ==
	      NULL);
	CHECK_INT(rc, CA_EINVAL);
	CHECK_INT(ctx.invalid[CA_INVALID_NAME], 1);
	CHECK_INT(ctx.invalid[CA_INVALID_PHASE], 0);
}

static void test_pod_waiting(void)
{
	reset_invalid();
	/* the worst reason is kept whatever the order; every container in a
	 * crash loop counts, init containers too */
	struct ca_pod_rec *p =
	        pod_status("'phase':'Running','initContainerStatuses':["
	                   "{'state':{'waiting':{'reason':'CrashLoopBackOff'}}}],"
	                   "'containerStatuses':[{'state':{'waiting':{'reason':'ErrImagePull'}}},"
	                   "{'state':{'waiting':{'reason':'CrashLoopBackOff'}}},"
	                   "{'state':{'waiting':{'reason':'ImagePullBackOff'}}},"
	                   "{'state':{'waiting':{'reason':'CrashLoopBackOff'}}},"
	                   "{'state':{'waiting':{'reason':'ContainerCreating'}}},"
	                   "{'state':{'running':{}}}]");
	if (p) {
		CHECK_INT(p->waiting, CA_WAIT_CRASHLOOP);
		CHECK_INT(p->restarting, 3);
		ca_metrics_free_pod(&ctx, p);
	}
	static const struct {
		const char *reasons[3];
		enum ca_pod_waiting want;
	} rows[] = {
	        {{"CreateContainerConfigError", "ErrImagePull", NULL}, CA_WAIT_ERR_IMAGE_PULL},
	        {{"ErrImagePull", "CreateContainerConfigError", NULL}, CA_WAIT_ERR_IMAGE_PULL},
	        {{"ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"},
	         CA_WAIT_IMAGE_PULL_BACKOFF},
	        {{"CreateContainerConfigError", "PodInitializing", NULL}, CA_WAIT_CREATE_CONFIG},
	        {{"ContainerCreating", "crashloopbackoff", "CrashLoopBackOff "}, CA_WAIT_NONE},
	        {{"CrashLoopBackOff", NULL, NULL}, CA_WAIT_CRASHLOOP},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		char status[1024];
		size_t len = (size_t)snprintf(status, sizeof status,
		                              "'phase':'Pending','containerStatuses':[");
		for (int k = 0; k < 3 && rows[i].reasons[k]; k++)
			len += (size_t)snprintf(status + len, sizeof status - len,
			                        "%s{'state':{'waiting':{'reason':'%s'}}}",
			                        k ? "," : "", rows[i].reasons[k]);
		snprintf(status + len, sizeof status - len, "]");
		p = pod_status(status);
		if (p) {
			CHECK_INT(p->waiting, rows[i].want);
			CHECK_INT(p->restarting, rows[i].want == CA_WAIT_CRASHLOOP ? 1 : 0);
			ca_metrics_free_pod(&ctx, p);
		}
	}
	/* a reason that is not a string is no reason */
	p = pod_status(
	        "'phase':'Running','containerStatuses':[{'state':{'waiting':{'reason':4}}}]");
	if (p) {
		CHECK_INT(p->waiting, CA_WAIT_NONE);
		ca_metrics_free_pod(&ctx, p);
	}
	/* more than 255 containers in a crash loop saturate */
	size_t cap = 300 * 64 + 128, len = 0;
	char *big = malloc(cap);
	len += (size_t)snprintf(big + len, cap - len, "'phase':'Running','containerStatuses':[");
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(big + len, cap - len,
		                        "%s{'state':{'waiting':{'reason':'CrashLoopBackOff'}}}",
		                        i ? "," : "");
	snprintf(big + len, cap - len, "]");
	p = pod_status(big);
	free(big);
	if (p) {
		CHECK_INT(p->restarting, UINT8_MAX);
		CHECK_INT(p->waiting, CA_WAIT_CRASHLOOP);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INTERNERS_EMPTY();
}

static void test_pod_oom(void)
{
	reset_invalid();
	/* the latest OOMKilled, in lastState or in state, whatever the order;
	 * another reason is no OOM however recent */
	static const char *const orders[] = {
	        "{'lastState':{'terminated':{'reason':'OOMKilled',"
	        "'finishedAt':'2026-11-22T00:10:00Z'}}},"
	        "{'state':{'terminated':{'reason':'OOMKilled',"
	        "'finishedAt':'2026-11-22T00:20:00Z'}}},"
	        "{'lastState':{'terminated':{'reason':'Error',"
	        "'finishedAt':'2026-11-22T00:27:16Z'}}}",
	        "{'lastState':{'terminated':{'reason':'Error',"
	        "'finishedAt':'2026-11-22T00:27:16Z'}}},"
	        "{'state':{'terminated':{'reason':'OOMKilled',"
	        "'finishedAt':'2026-11-22T00:20:00Z'}}},"
	        "{'lastState':{'terminated':{'reason':'OOMKilled',"
	        "'finishedAt':'2026-11-22T00:10:00Z'}}}",
	};
	for (size_t i = 0; i < 2; i++) {
		char status[2048];
		snprintf(status, sizeof status, "'phase':'Running','containerStatuses':[%s]",
		         orders[i]);
		struct ca_pod_rec *p = pod_status(status);
		if (p) {
			CHECK_INT(p->oom_s, T00_20);
			ca_metrics_free_pod(&ctx, p);
		}
	}
	/* in an init container, and in the state only */
	struct ca_pod_rec *p = pod_status("'phase':'Pending','initContainerStatuses':["
	                                  "{'state':{'terminated':{'reason':'OOMKilled',"
	                                  "'finishedAt':'2026-11-22T00:05:00Z'}}}]");
	if (p) {
		CHECK_INT(p->oom_s, T00_05);
		ca_metrics_free_pod(&ctx, p);
	}
	/* OOMKilled with no time, or a time that does not parse: no time to
	 * show, so none is recorded */
	p = pod_status("'phase':'Running','containerStatuses':["
	               "{'lastState':{'terminated':{'reason':'OOMKilled'}}},"
	               "{'lastState':{'terminated':{'reason':'OOMKilled',"
	               "'finishedAt':'yesterday'}}}]");
	if (p) {
		CHECK_INT(p->oom_s, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	/* the reason is matched exactly */
	p = pod_status("'phase':'Running','containerStatuses':["
	               "{'lastState':{'terminated':{'reason':'oomkilled',"
	               "'finishedAt':'2026-11-22T00:10:00Z'}}}]");
	if (p) {
		CHECK_INT(p->oom_s, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INTERNERS_EMPTY();
}

static void test_pod_since_and_ready(void)
{
	static const struct {
		const char *status;
		uint32_t since;
		uint8_t flags;
	} rows[] = {
	        /* the last crash of a crash loop, before the Ready condition */
	        {"'phase':'Running','startTime':'2026-11-22T00:00:00Z','conditions':["
	         "{'type':'Ready','status':'False',"
	         "'lastTransitionTime':'2026-11-22T00:05:00Z'}],'containerStatuses':["
	         "{'state':{'waiting':{'reason':'CrashLoopBackOff'}},"
	         "'lastState':{'terminated':{'reason':'Error',"
	         "'finishedAt':'2026-11-22T00:20:00Z'}}},"
	         "{'state':{'waiting':{'reason':'CrashLoopBackOff'}},"
	         "'lastState':{'terminated':{'reason':'Error',"
	         "'finishedAt':'2026-11-22T00:10:00Z'}}}]",
	         T00_20, CA_POD_HAS_READY},
	        /* a termination outside a crash loop is no crash: the Ready change */
	        {"'phase':'Running','startTime':'2026-11-22T00:00:00Z','conditions':["
	         "{'type':'Ready','status':'True',"
	         "'lastTransitionTime':'2026-11-22T00:05:00Z'}],'containerStatuses':["
	         "{'state':{'waiting':{'reason':'ImagePullBackOff'}},"
	         "'lastState':{'terminated':{'reason':'Error',"
	         "'finishedAt':'2026-11-22T00:20:00Z'}}}]",
	         T00_05, CA_POD_HAS_READY | CA_POD_READY},
	        /* a crash loop without a last termination: the Ready change */
	        {"'phase':'Running','conditions':[{'type':'Initialized','status':'True',"
	         "'lastTransitionTime':'2026-11-22T00:20:00Z'},{'type':'Ready',"
	         "'status':'Unknown','lastTransitionTime':'2026-11-22T00:05:00Z'}],"
	         "'containerStatuses':["
	         "{'state':{'waiting':{'reason':'CrashLoopBackOff'}}}]",
	         T00_05, CA_POD_HAS_READY},
	        /* no Ready condition: the start */
	        {"'phase':'Running','startTime':'2026-11-22T00:10:00Z','conditions':["
	         "{'type':'PodScheduled','status':'True',"
	         "'lastTransitionTime':'2026-11-22T00:20:00Z'}]",
	         T00_10, 0},
	        /* a Ready condition without a time: the start */
	        {"'phase':'Running','startTime':'2026-11-22T00:10:00Z','conditions':["
	         "{'type':'Ready','status':'True'}]",
	         T00_10, CA_POD_HAS_READY | CA_POD_READY},
	        /* nothing, or times that do not parse: the creation */
	        {"'phase':'Pending'", T00_00, 0},
	        {"'phase':'Pending','startTime':'soon','conditions':["
	         "{'type':'Ready','status':'False','lastTransitionTime':12}]",
	         T00_00, CA_POD_HAS_READY},
	};
	reset_invalid();
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct ca_pod_rec *p = pod_status(rows[i].status);
		if (!p)
			continue;
		if (p->since_s != rows[i].since || p->flags != rows[i].flags)
			fprintf(stderr, "since row %zu: since %u flags %u\n", i, p->since_s,
			        p->flags);
		CHECK_INT(p->since_s, rows[i].since);
		CHECK_INT(p->flags, rows[i].flags);
		CHECK_INT(p->created_s, T00_00);
		ca_metrics_free_pod(&ctx, p);
	}
	/* without a creation time either: unknown (0); before 1970: unknown */
	enum ca_err rc;
	struct ca_pod_rec *p =
	        fold_pod(obj("{'metadata':{'name':'a','namespace':'b'},'status':{}}"), &rc);
	if (p) {
		CHECK_INT(p->created_s, 0);
		CHECK_INT(p->since_s, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	p = fold_pod(obj("{'metadata':{'name':'a','namespace':'b',"
	                 "'creationTimestamp':'1960-01-01T00:00:00Z'}}"),
	             &rc);
	if (p) {
		CHECK_INT(p->created_s, 0);
		ca_metrics_free_pod(&ctx, p);
	}
	CHECK_INTERNERS_EMPTY();
}

/* ------------------------------------------------------------------ */
/* Nodes and namespaces */

static void test_sample_node(void)
{
	reset_invalid();
	enum ca_err rc;
	struct ca_node_rec *n = fold_node(sample("node-eks-ready.json"), &rc);
	CHECK_INT(rc, CA_OK);
	if (!n)
		return;
	CHECK_STR(name(n->name), "ip-10-0-12-34.eu-west-1.compute.internal");
	CHECK_STR(word(n->zone), "eu-west-1a");
	CHECK_STR(word(n->instance_type), "m6i.xlarge");
	CHECK_STR(word(n->kubelet_version), "v1.28.5-eks-5e0fdde");
	CHECK_INT(n->cap_cpu_m, 4000);
	CHECK_INT(n->cap_mem, 16106128ll * 1024);
	CHECK_INT(n->cap_pods, 58);
	CHECK_INT(n->alloc_cpu_m, 3920);
	CHECK_INT(n->alloc_mem, 15087120ll * 1024);
	CHECK_INT(n->alloc_pods, 58);
	CHECK_INT(n->usage_cpu_m, 0);
	CHECK_INT(n->usage_mem, 0);
	CHECK_INT(n->usage_pass, 0);
	CHECK_INT(n->ready, 1);
	CHECK_INT(n->unschedulable, 0); /* a taint is not spec.unschedulable */
	CHECK_INT(n->nconds, 4);
	if (n->nconds == 4) {
		CHECK_STR(word(n->conds[0].type), "MemoryPressure");
		CHECK_STR(word(n->conds[0].status), "False");
		CHECK_STR(word(n->conds[0].reason), "KubeletHasSufficientMemory");
		CHECK_INT(n->conds[0].last_transition_ms, 1795307229000ll);
		CHECK_STR(word(n->conds[3].type), "Ready");
		CHECK_STR(word(n->conds[3].status), "True");
		CHECK_STR(word(n->conds[3].reason), "KubeletReady");
		/* the same word is held once */
		CHECK_INT(n->conds[0].status, n->conds[1].status);
	}
	for (int i = 0; i < CA_INVALID_COUNT_; i++)
		CHECK_INT(ctx.invalid[i], 0);
	ca_metrics_free_node(&ctx, n);
	CHECK_INTERNERS_EMPTY();
}

#define NODE_FMT                                                                                   \
	"{'metadata':{'name':'node-a','labels':{%s}},'spec':{%s},'status':{"                       \
	"'capacity':{'cpu':'4','memory':'16Gi','pods':'110'},"                                     \
	"'allocatable':{'cpu':'3920m','memory':'15Gi','pods':'110'},"                              \
	"'conditions':[%s],'nodeInfo':{'kubeletVersion':'v1.29.3'}}}"

static struct ca_node_rec *node(const char *labels, const char *spec, const char *conds)
{
	enum ca_err rc;
	struct ca_node_rec *n = fold_node(obj(NODE_FMT, labels, spec, conds), &rc);
	CHECK_INT(rc, CA_OK);
	return n;
}

static void test_node_labels(void)
{
	static const struct {
		const char *labels, *zone, *type;
	} rows[] = {
	        {"'topology.kubernetes.io/zone':'z-ga','node.kubernetes.io/instance-type':'t-ga'",
	         "z-ga", "t-ga"},
	        {"'failure-domain.beta.kubernetes.io/zone':'z-beta',"
	         "'beta.kubernetes.io/instance-type':'t-beta'",
	         "z-beta", "t-beta"},
	        {"'failure-domain.beta.kubernetes.io/zone':'z-beta',"
	         "'topology.kubernetes.io/zone':'z-ga',"
	         "'beta.kubernetes.io/instance-type':'t-beta',"
	         "'node.kubernetes.io/instance-type':'t-ga'",
	         "z-ga", "t-ga"},
	        {"'topology.kubernetes.io/zone':5,"
	         "'failure-domain.beta.kubernetes.io/zone':'z-beta'",
	         "z-beta", ""},
	        {"'topology.kubernetes.io/zone':'','node.kubernetes.io/instance-type':''", "", ""},
	        {"'topology.kubernetes.io/region':'eu-west-1','kubernetes.io/hostname':'node-a'",
	         "", ""},
	        {"", "", ""},
	};
	reset_invalid();
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		struct ca_node_rec *n = node(rows[i].labels, "", "");
		if (!n)
			continue;
		CHECK_STR(word(n->zone), rows[i].zone);
		CHECK_STR(word(n->instance_type), rows[i].type);
		CHECK(!*rows[i].zone == !n->zone); /* "" is id 0, not a word */
		CHECK_STR(word(n->kubelet_version), "v1.29.3");
		ca_metrics_free_node(&ctx, n);
	}
	/* a label too long to intern is left out; the node still counts */
	char *zone = malloc(CA_INTERN_MAX_LEN + 100);
	memset(zone, 'z', CA_INTERN_MAX_LEN + 99);
	zone[CA_INTERN_MAX_LEN + 99] = '\0';
	char *labels = malloc(CA_INTERN_MAX_LEN + 200);
	snprintf(labels, CA_INTERN_MAX_LEN + 200, "'topology.kubernetes.io/zone':'%s'", zone);
	struct ca_node_rec *n = node(labels, "", "");
	if (n) {
		CHECK_INT(n->zone, 0);
		CHECK_INT(n->cap_cpu_m, 4000);
		ca_metrics_free_node(&ctx, n);
	}
	free(zone);
	free(labels);
	/* two nodes in one zone share its word */
	struct ca_node_rec *a = node("'topology.kubernetes.io/zone':'eu-west-1a'", "", "");
	struct ca_node_rec *b = node("'topology.kubernetes.io/zone':'eu-west-1a'", "", "");
	if (a && b) {
		CHECK_INT(a->zone, b->zone);
		CHECK_INT(a->name, b->name);
	}
	ca_metrics_free_node(&ctx, a);
	CHECK_STR(word(b ? b->zone : 0), "eu-west-1a"); /* still held by b */
	ca_metrics_free_node(&ctx, b);
	CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 0);
	CHECK_INTERNERS_EMPTY();
}

static void test_node_conditions(void)
{
	reset_invalid();
	/* Ready decides; a condition without a type is skipped */
	struct ca_node_rec *n = node("", "",
	                             "{'status':'True'},{'type':'','status':'True'},"
	                             "{'type':'Ready','status':'True','reason':'KubeletReady',"
	                             "'lastTransitionTime':'2026-11-22T00:20:00Z'},"
	                             "{'type':'NetworkUnavailable','status':'False'}");
	if (n) {
		CHECK_INT(n->ready, 1);
		CHECK_INT(n->nconds, 2);
		CHECK_STR(word(n->conds[0].type), "Ready");
		CHECK_STR(word(n->conds[0].status), "True");
		CHECK_STR(word(n->conds[0].reason), "KubeletReady");
		CHECK_INT(n->conds[0].last_transition_ms, (int64_t)T00_20 * 1000);
		CHECK_STR(word(n->conds[1].type), "NetworkUnavailable");
		CHECK_INT(n->conds[1].reason, 0);
		CHECK_INT(n->conds[1].last_transition_ms, 0);
		ca_metrics_free_node(&ctx, n);
	}
	static const char *const not_ready[] = {
	        "{'type':'Ready','status':'False','reason':'KubeletNotReady'}",
	        "{'type':'Ready','status':'Unknown','reason':'NodeStatusUnknown'}",
	        "{'type':'Ready','status':'true'}",
	        "{'type':'Ready'}",
	        "{'type':'MemoryPressure','status':'True'}",
	        "",
	};
	for (size_t i = 0; i < sizeof not_ready / sizeof not_ready[0]; i++) {
		n = node("", "", not_ready[i]);
		if (n) {
			CHECK_INT(n->ready, 0);
			ca_metrics_free_node(&ctx, n);
		}
	}
	/* conditions not an array */
	enum ca_err rc;
	n = fold_node(obj("{'metadata':{'name':'n'},"
	                  "'status':{'conditions':{'type':'Ready','status':'True'}}}"),
	              &rc);
	if (n) {
		CHECK_INT(n->ready, 0);
		CHECK_INT(n->nconds, 0);
		ca_metrics_free_node(&ctx, n);
	}
	CHECK_INTERNERS_EMPTY();
}

/* A node with many conditions keeps the first CA_NODE_MAX_CONDITIONS;
 * whether it is ready is still its Ready condition, wherever that is in
 * the list (node-problem-detector adds its own conditions, and on some
 * providers they come before the kubelet's). */
static void test_node_many_conditions(void)
{
	reset_invalid();
	for (int total = CA_NODE_MAX_CONDITIONS - 1; total <= CA_NODE_MAX_CONDITIONS + 4; total++) {
		char conds[4096];
		size_t len = 0;
		for (int i = 0; i < total - 1; i++)
			len += (size_t)snprintf(
			        conds + len, sizeof conds - len,
			        "{'type':'Problem%d','status':'False','reason':'NoProblem'},", i);
		snprintf(conds + len, sizeof conds - len, "{'type':'Ready','status':'True'}");
		struct ca_node_rec *n = node("", "", conds);
		if (!n)
			continue;
		int kept = total < CA_NODE_MAX_CONDITIONS ? total : CA_NODE_MAX_CONDITIONS;
		CHECK_INT(n->nconds, kept);
		/* The first ones in order; when they do not all fit, Ready
		 * takes the last kept place, so the sample shows it. */
		int in_order = 1;
		for (int i = 0; i < n->nconds - 1; i++) {
			char want[32];
			snprintf(want, sizeof want, "Problem%d", i);
			in_order &= strcmp(word(n->conds[i].type), want) == 0;
		}
		CHECK(in_order);
		CHECK_STR(word(n->conds[n->nconds - 1].type), "Ready");
		CHECK_STR(word(n->conds[n->nconds - 1].status), "True");
		if (n->ready != 1)
			fprintf(stderr,
			        "a node with %d conditions, Ready=True last, is not ready\n",
			        total);
		CHECK_INT(n->ready, 1);
		ca_metrics_free_node(&ctx, n);
	}
	CHECK_INTERNERS_EMPTY();
}

static void test_node_resources(void)
{
	reset_invalid();
	enum ca_err rc;
	struct ca_node_rec *n =
	        fold_node(obj("{'metadata':{'name':'n'},'spec':{'unschedulable':true},"
	                      "'status':{'capacity':{'cpu':'96','memory':'banana','pods':'1k'},"
	                      "'allocatable':{'cpu':5,'memory':'380Gi','pods':'-5'}}}"),
	                  &rc);
	CHECK_INT(rc, CA_OK);
	if (n) {
		CHECK_INT(n->unschedulable, 1);
		CHECK_INT(n->cap_cpu_m, 96000);
		CHECK_INT(n->cap_mem, 0);
		CHECK_INT(n->cap_pods, 1000);
		CHECK_INT(n->alloc_cpu_m, 0);
		CHECK_INT(n->alloc_mem, 380 * GI);
		CHECK_INT(n->alloc_pods, 0);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 3); /* banana, 5, -5 */
		CHECK_INT(n->kubelet_version, 0);
		ca_metrics_free_node(&ctx, n);
	}
	reset_invalid();
	static const struct {
		const char *pods;
		int64_t want;
		int invalid;
	} pods[] = {
	        {"'110'", 110, 0}, {"'1.5'", 2, 0}, {"'0'", 0, 0},      {"110", 0, 1},
	        {"'ten'", 0, 1},   {"'-1'", 0, 1},  {"'1Ki'", 1024, 0}, {"null", 0, 0},
	};
	for (size_t i = 0; i < sizeof pods / sizeof pods[0]; i++) {
		reset_invalid();
		n = fold_node(obj("{'metadata':{'name':'n'},'status':{'capacity':{'pods':%s}}}",
		                  pods[i].pods),
		              &rc);
		if (!n)
			continue;
		CHECK_INT(n->cap_pods, pods[i].want);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], pods[i].invalid);
		ca_metrics_free_node(&ctx, n);
	}
	/* spec.unschedulable other than true */
	static const char *const unsched[] = {"'unschedulable':false", "'unschedulable':'true'",
	                                      ""};
	for (size_t i = 0; i < 3; i++) {
		n = node("", unsched[i], "");
		if (n) {
			CHECK_INT(n->unschedulable, 0);
			ca_metrics_free_node(&ctx, n);
		}
	}
	/* no status at all */
	n = fold_node(obj("{'metadata':{'name':'bare'}}"), &rc);
	CHECK_INT(rc, CA_OK);
	if (n) {
		CHECK_INT(n->cap_cpu_m + n->cap_mem + n->cap_pods + n->alloc_cpu_m + n->alloc_mem +
		                  n->alloc_pods,
		          0);
		CHECK_INT(n->nconds, 0);
		CHECK_INT(n->zone + n->instance_type + n->kubelet_version, 0);
		ca_metrics_free_node(&ctx, n);
	}
	CHECK_INTERNERS_EMPTY();
}

static void test_node_names(void)
{
	static const char *const bad[] = {
	        "{'metadata':{},'status':{'conditions':[{'type':'Ready','status':'True'}]}}",
	        "{'metadata':{'name':''}}",
	        "{'metadata':{'name':false}}",
	        "{'status':{}}",
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		reset_invalid();
		enum ca_err rc;
		CHECK(fold_node(obj("%s", bad[i]), &rc) == NULL);
		CHECK_INT(rc, CA_EINVAL);
		CHECK_INT(ctx.invalid[CA_INVALID_NAME], 1);
		CHECK_INTERNERS_EMPTY();
	}
}

static void test_namespaces(void)
{
	reset_invalid();
	enum ca_err rc;
	struct ca_ns_rec *n = fold_ns(sample("namespace-kube-system.json"), &rc);
	CHECK_INT(rc, CA_OK);
	if (n) {
		CHECK_STR(name(n->name), "kube-system");
		CHECK_INT(n->terminating, 0);
		ca_metrics_free_namespace(&ctx, n);
	}
	static const struct {
		const char *status;
		uint8_t terminating;
	} rows[] = {
	        {"{'phase':'Terminating'}", 1},
	        {"{'phase':'Active'}", 0},
	        {"{'phase':'terminating'}", 0},
	        {"{'phase':7}", 0},
	        {"{}", 0},
	        {"null", 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		n = fold_ns(obj("{'metadata':{'name':'shop'},'status':%s}", rows[i].status), &rc);
		CHECK_INT(rc, CA_OK);
		if (n) {
			CHECK_STR(name(n->name), "shop");
			CHECK_INT(n->terminating, rows[i].terminating);
			ca_metrics_free_namespace(&ctx, n);
		}
	}
	/* a namespace and a node of the same name are one name */
	struct ca_ns_rec *ns = fold_ns(obj("{'metadata':{'name':'same'}}"), &rc);
	struct ca_node_rec *nd = fold_node(obj("{'metadata':{'name':'same'}}"), &rc);
	if (ns && nd)
		CHECK_INT(ns->name, nd->name);
	ca_metrics_free_namespace(&ctx, ns);
	CHECK_STR(name(nd ? nd->name : 0), "same");
	ca_metrics_free_node(&ctx, nd);
	for (int i = 0; i < CA_INVALID_COUNT_; i++)
		CHECK_INT(ctx.invalid[i], 0);
	CHECK(fold_ns(obj("{'metadata':{'namespace':'x'},'status':{'phase':'Terminating'}}"),
	              &rc) == NULL);
	CHECK_INT(rc, CA_EINVAL);
	CHECK_INT(ctx.invalid[CA_INVALID_NAME], 1);
	CHECK_INTERNERS_EMPTY();
}

/* ------------------------------------------------------------------ */
/* Usage */

static void test_usage(void)
{
	static const struct {
		const char *usage;
		bool any;
		int64_t cpu, mem;
		int invalid;
	} rows[] = {
	        {"{'cpu':'250m','memory':'64Mi'}", true, 250, 64 * MI, 0},
	        /* metrics-server's nanocores and KiB */
	        {"{'cpu':'123456789n','memory':'1234Ki'}", true, 124, 1234 * 1024, 0},
	        {"{'cpu':'0','memory':'0'}", true, 0, 0, 0},
	        {"{'cpu':'banana','memory':'1Mi'}", true, 0, MI, 1},
	        {"{'cpu':'2'}", true, 2000, 0, 0},
	        {"{'cpu':'banana'}", false, 0, 0, 1},
	        {"{'cpu':'-1m','memory':'-1'}", false, 0, 0, 2},
	        {"{'cpu':1,'memory':2}", false, 0, 0, 2},
	        {"{'cpu':null}", false, 0, 0, 0},
	        {"{}", false, 0, 0, 0},
	        {"[]", false, 0, 0, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		reset_invalid();
		struct ca_kobj *o = obj("%s", rows[i].usage);
		int64_t cpu = -7, mem = -7;
		bool any = ca_metrics_fold_usage(&ctx, o, "podmetrics shop/web-1", &cpu, &mem);
		ca_kobj_free(o);
		CHECK_INT(any, rows[i].any);
		CHECK_INT(cpu, rows[i].cpu);
		CHECK_INT(mem, rows[i].mem);
		CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], rows[i].invalid);
	}
	reset_invalid();
	int64_t cpu = -7, mem = -7;
	CHECK(!ca_metrics_fold_usage(&ctx, NULL, "nodemetrics", &cpu, &mem));
	CHECK_INT(cpu, 0);
	CHECK_INT(mem, 0);
	CHECK_INT(ctx.invalid[CA_INVALID_QUANTITY], 0);

	/* A PodMetrics item as metrics.k8s.io lists it: each container's usage. */
	struct ca_kobj *pm = obj("{'kind':'PodMetrics','apiVersion':'metrics.k8s.io/v1beta1',"
	                         "'metadata':{'name':'web-1','namespace':'shop'},"
	                         "'timestamp':'2026-11-22T00:29:30Z','window':'30s','containers':["
	                         "{'name':'app','usage':{'cpu':'12345678n','memory':'20480Ki'}},"
	                         "{'name':'sidecar','usage':{'cpu':'1m','memory':'4Mi'}}]}");
	const struct ca_kobj *ctrs = ca_kobj_get(pm, "containers");
	int64_t sum_cpu = 0, sum_mem = 0;
	for (size_t i = 0; i < ca_kobj_array_len(ctrs); i++)
		if (ca_metrics_fold_usage(&ctx, ca_kobj_get(ca_kobj_array_at(ctrs, i), "usage"),
		                          "podmetrics", &cpu, &mem)) {
			sum_cpu += cpu;
			sum_mem += mem;
		}
	CHECK_INT(sum_cpu, 13 + 1);
	CHECK_INT(sum_mem, 24 * MI);
	ca_kobj_free(pm);
	CHECK_INTERNERS_EMPTY();
}

/* ------------------------------------------------------------------ */
/* Which reason a pod shows */

#define NOW_MS ((int64_t)T00_30 * 1000)
#define THRESHOLD_MS (5 * 60 * 1000)

static struct ca_pod_rec rec(enum ca_pod_phase phase, enum ca_pod_waiting waiting, uint8_t flags,
                             uint32_t created_s, uint32_t since_s, uint32_t oom_s)
{
	struct ca_pod_rec p;
	memset(&p, 0, sizeof p);
	p.phase = (uint8_t)phase;
	p.waiting = (uint8_t)waiting;
	p.flags = flags;
	p.created_s = created_s;
	p.since_s = since_s;
	p.oom_s = oom_s;
	return p;
}

static void test_unhealthy(void)
{
	const uint32_t now = T00_30;
	const uint8_t not_ready = CA_POD_HAS_READY, ready = CA_POD_HAS_READY | CA_POD_READY;
	static const uint32_t none = 0;
	struct {
		struct ca_pod_rec p;
		enum ca_unhealthy want;
		int64_t since_s; /* when want is not NONE */
	} rows[] = {
	        /* finished pods never, whatever else they show */
	        {rec(CA_PHASE_SUCCEEDED, CA_WAIT_CRASHLOOP, not_ready, T00_00, T00_10, now - 60),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_FAILED, CA_WAIT_CRASHLOOP, not_ready, T00_00, T00_10, now - 60),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_FAILED, CA_WAIT_NONE, 0, now - 86400, 0, none), CA_UNHEALTHY_NONE, 0},
	        /* OOMKilled within the hour beats everything; since: the kill */
	        {rec(CA_PHASE_RUNNING, CA_WAIT_CRASHLOOP, not_ready, T00_00, T00_10, now - 1800),
	         CA_UNHEALTHY_OOM, now - 1800},
	        {rec(CA_PHASE_RUNNING, CA_WAIT_NONE, ready, T00_00, T00_10, now - 3599),
	         CA_UNHEALTHY_OOM, now - 3599},
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, 0, now - 3600, 0, now - 10), CA_UNHEALTHY_OOM,
	         now - 10},
	        {rec(CA_PHASE_UNKNOWN, CA_WAIT_NONE, 0, T00_00, T00_00, now - 5), CA_UNHEALTHY_OOM,
	         now - 5},
	        /* an hour or more ago: history */
	        {rec(CA_PHASE_RUNNING, CA_WAIT_NONE, ready, T00_00, T00_10, now - 3600),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_RUNNING, CA_WAIT_CRASHLOOP, not_ready, T00_00, T00_10, now - 7200),
	         CA_UNHEALTHY_CRASHLOOP, T00_10},
	        /* the waiting reasons, since: the pod's since */
	        {rec(CA_PHASE_RUNNING, CA_WAIT_CRASHLOOP, ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_CRASHLOOP, T00_20},
	        {rec(CA_PHASE_PENDING, CA_WAIT_IMAGE_PULL_BACKOFF, 0, T00_00, T00_05, none),
	         CA_UNHEALTHY_IMAGE_PULL_BACKOFF, T00_05},
	        {rec(CA_PHASE_PENDING, CA_WAIT_ERR_IMAGE_PULL, 0, now - 10, now - 10, none),
	         CA_UNHEALTHY_ERR_IMAGE_PULL, now - 10},
	        {rec(CA_PHASE_RUNNING, CA_WAIT_CREATE_CONFIG, not_ready, T00_00, T00_05, none),
	         CA_UNHEALTHY_CREATE_CONFIG, T00_05},
	        {rec(CA_PHASE_UNKNOWN, CA_WAIT_CRASHLOOP, 0, T00_00, T00_05, none),
	         CA_UNHEALTHY_CRASHLOOP, T00_05},
	        /* Pending past the threshold (strictly), since: the creation */
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, 0, now - 301, now - 301, none),
	         CA_UNHEALTHY_PENDING, now - 301},
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, not_ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_PENDING, T00_00},
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, 0, now - 300, now - 300, none),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, not_ready, now - 299, now - 299, none),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_PENDING, CA_WAIT_NONE, 0, 0, 0, none), CA_UNHEALTHY_NONE,
	         0}, /* created unknown */
	        /* NotReady: Running with a Ready condition that is not True */
	        {rec(CA_PHASE_RUNNING, CA_WAIT_NONE, not_ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_NOT_READY, T00_20},
	        {rec(CA_PHASE_RUNNING, CA_WAIT_NONE, ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_RUNNING, CA_WAIT_NONE, 0, T00_00, T00_20, none), CA_UNHEALTHY_NONE,
	         0},
	        {rec(CA_PHASE_UNKNOWN, CA_WAIT_NONE, not_ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_NONE, 0},
	        {rec(CA_PHASE_SUCCEEDED, CA_WAIT_NONE, not_ready, T00_00, T00_20, none),
	         CA_UNHEALTHY_NONE, 0},
	};
	for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
		int64_t since = -1;
		enum ca_unhealthy u =
		        ca_metrics_pod_unhealthy(&rows[i].p, NOW_MS, THRESHOLD_MS, &since);
		if (u != rows[i].want)
			fprintf(stderr, "unhealthy row %zu: %s, expected %s\n", i,
			        ca_metrics_unhealthy_name(u),
			        ca_metrics_unhealthy_name(rows[i].want));
		CHECK_INT(u, rows[i].want);
		if (rows[i].want != CA_UNHEALTHY_NONE)
			CHECK_INT(since, rows[i].since_s * 1000);
	}
	/* the threshold is the caller's */
	struct ca_pod_rec p = rec(CA_PHASE_PENDING, CA_WAIT_NONE, 0, now - 120, now - 120, none);
	int64_t since;
	CHECK_INT(ca_metrics_pod_unhealthy(&p, NOW_MS, 60000, &since), CA_UNHEALTHY_PENDING);
	CHECK_INT(ca_metrics_pod_unhealthy(&p, NOW_MS, 180000, &since), CA_UNHEALTHY_NONE);

	CHECK_STR(ca_metrics_unhealthy_name(CA_UNHEALTHY_OOM), "OOMKilled");
	CHECK_STR(ca_metrics_unhealthy_name(CA_UNHEALTHY_PENDING), "PendingTooLong");
	CHECK_STR(ca_metrics_unhealthy_name(CA_UNHEALTHY_NOT_READY), "NotReady");
	CHECK_STR(ca_metrics_unhealthy_name(CA_UNHEALTHY_NONE), "");
	CHECK_STR(ca_metrics_unhealthy_name((enum ca_unhealthy)42), "");
}

/* ------------------------------------------------------------------ */
/* Parts */

/* Whatever the plan, it must be a valid one: parts from 0 to n in order,
 * none empty (unless n is 0), each within max_payload, and no part could
 * have taken the next one's first item (the split is greedy, so a sample
 * is sent in as few messages as the order allows). */
static int plan_is_valid(size_t fixed, const size_t *sizes, size_t n, size_t max, uint32_t parts,
                         const uint32_t *starts)
{
	if (parts < 1 || parts > (n ? n : 1) || starts[0] != 0 || starts[parts] != n)
		return 0;
	for (uint32_t p = 0; p < parts; p++) {
		if (n && starts[p + 1] <= starts[p])
			return 0;
		size_t used = fixed;
		for (uint32_t i = starts[p]; i < starts[p + 1]; i++)
			used += sizes[i];
		if (used > max)
			return 0;
		if (p + 1 < parts && used + sizes[starts[p + 1]] <= max)
			return 0;
	}
	return 1;
}

static void test_plan_parts(void)
{
	uint32_t starts[16];
	/* nothing to share: one part, the fixed bytes alone */
	memset(starts, 0xff, sizeof starts);
	CHECK_INT(ca_metrics_plan_parts(100, NULL, 0, 1000, starts), 1);
	CHECK_INT(starts[0], 0);
	CHECK_INT(starts[1], 0);
	/* the fixed bytes alone do not fit */
	CHECK_INT(ca_metrics_plan_parts(1001, NULL, 0, 1000, starts), 0);
	size_t one[] = {900};
	CHECK_INT(ca_metrics_plan_parts(100, one, 1, 1000, starts), 1);
	CHECK_INT(starts[1], 1);
	one[0] = 901; /* one byte over, alone */
	CHECK_INT(ca_metrics_plan_parts(100, one, 1, 1000, starts), 0);

	/* exact boundaries: fixed 10, max 100 */
	size_t fit[] = {45, 45};
	CHECK_INT(ca_metrics_plan_parts(10, fit, 2, 100, starts), 1);
	CHECK_INT(starts[1], 2);
	size_t over[] = {45, 46};
	CHECK_INT(ca_metrics_plan_parts(10, over, 2, 100, starts), 2);
	CHECK_INT(starts[0], 0);
	CHECK_INT(starts[1], 1);
	CHECK_INT(starts[2], 2);
	size_t three[] = {90, 90, 90};
	CHECK_INT(ca_metrics_plan_parts(10, three, 3, 100, starts), 3);
	CHECK(starts[1] == 1 && starts[2] == 2 && starts[3] == 3);
	size_t zeros[] = {0, 0, 0, 90, 0};
	CHECK_INT(ca_metrics_plan_parts(10, zeros, 5, 100, starts), 1);
	CHECK_INT(starts[1], 5);

	/* an item that alone does not fit, anywhere in the list */
	size_t mid[] = {10, 20, 91, 10};
	CHECK_INT(ca_metrics_plan_parts(10, mid, 4, 100, starts), 0);
	size_t last[] = {10, 20, 30, 500};
	CHECK_INT(ca_metrics_plan_parts(10, last, 4, 100, starts), 0);

	/* order kept: a small item after a big one does not jump back */
	size_t order[] = {60, 50, 30, 10};
	uint32_t parts = ca_metrics_plan_parts(0, order, 4, 100, starts);
	CHECK_INT(parts, 2);
	CHECK(starts[0] == 0 && starts[1] == 1 && starts[2] == 4);
	CHECK(plan_is_valid(0, order, 4, 100, parts, starts));

	/* random lists: always a valid plan, or 0 exactly when an item alone
	 * is too big */
	uint64_t rng = 0x2545F4914F6CDD1Dull;
	uint32_t big_starts[257];
	size_t sizes[256];
	int bad = 0;
	for (int round = 0; round < 5000; round++) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t n = rng % 257, max = 64 + (rng >> 16) % 4096, fixed = (rng >> 32) % 128;
		bool too_big = fixed > max;
		for (size_t i = 0; i < n; i++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			sizes[i] = (rng % 8 == 0) ? rng % (max + 1) : rng % 200;
			if (fixed + sizes[i] > max)
				too_big = true;
		}
		parts = ca_metrics_plan_parts(fixed, sizes, n, max, big_starts);
		if (too_big ? parts != 0 : !plan_is_valid(fixed, sizes, n, max, parts, big_starts))
			bad++;
	}
	CHECK_INT(bad, 0);
}

int main(void)
{
	ca_log_configure(CA_LOG_ERROR,
	                 false); /* the skips are counted; their log lines are noise here */
	if (ca_intern_new(&ctx.names, 0) != CA_OK || ca_intern_new(&ctx.words, 0) != CA_OK)
		return 1;
	test_sample_pod();
	test_sample_lists();
	test_pod_resources();
	test_pod_bad_quantities();
	test_pod_restart_counts();
	test_pod_phases();
	test_pod_names();
	test_pod_waiting();
	test_pod_oom();
	test_pod_since_and_ready();
	test_sample_node();
	test_node_labels();
	test_node_conditions();
	test_node_many_conditions();
	test_node_resources();
	test_node_names();
	test_namespaces();
	test_usage();
	test_unhealthy();
	test_plan_parts();
	ca_intern_free(ctx.names);
	ca_intern_free(ctx.words);
	return check_report();
}
