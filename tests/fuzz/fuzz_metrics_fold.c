/* Fuzz target for the collector's folds (metrics/metrics_int.h). Every
 * input that parses (ca_kobj_parse) is folded as a pod, a node and a
 * namespace, and read as NodeMetrics and PodMetrics usage; a List (an
 * "items" array) or a top-level array has each of its elements folded the
 * same way. One fold context serves every input, as in the collector;
 * every record is checked against the object it came from, then freed, and
 * after each input both interners must be empty again. Checks (abort on
 * failure):
 *  - a fold returns CA_OK or CA_EINVAL, CA_ENOMEM only for a name the
 *    interner cannot hold (longer than CA_INTERN_MAX_LEN);
 *  - CA_EINVAL exactly when a name (a pod's namespace too) is missing or
 *    empty, or a pod's phase is a string Kubernetes does not have; each
 *    one counted under its reason, and no counter ever goes down;
 *  - a pod: its namespace and node read back from the interner as the
 *    object says; phase, waiting reason and flags in range and as the
 *    object says (recomputed here from the statuses and conditions);
 *    restarting no more than the containers waiting in a crash loop; an
 *    OOM time only with an OOMKilled termination; since only when created
 *    or something later is known;
 *  - ca_metrics_pod_unhealthy at a few instants: a reason in range, none
 *    for a finished pod, a since that is a time the pod carries;
 *  - a node: name, zone, instance type and kubelet version read back;
 *    at most CA_NODE_MAX_CONDITIONS conditions, in order; ready exactly
 *    when a Ready condition is True; no negative resource;
 *  - a namespace: name, Terminating exactly as status.phase says;
 *  - requests, limits, capacity, allocatable and usage as recomputed here
 *    from quantity.h (sums, the init container maximum, saturation), a
 *    quantity that is not a string or does not convert being absent, and
 *    none ever negative;
 *  - ca_metrics_plan_parts over sizes taken from the input bytes: a valid
 *    greedy plan, or 0 exactly when one item alone does not fit. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kobj.h"
#include "log/log.h"
#include "metrics/intern.h"
#include "metrics/metrics_int.h"
#include "metrics/quantity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ca_metrics_fold_ctx ctx;
static uint64_t last_invalid[CA_INVALID_COUNT_];

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_metrics_fold: %s\n", what);
	abort();
}

#define ASSERT(cond)                                                                               \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail(#cond);                                                               \
	} while (0)

static bool nonempty(const char *s)
{
	return s && *s;
}

static bool str_is(const char *s, const char *want)
{
	return s && strcmp(s, want) == 0;
}

/* What an interned string must read back as: the object's string when it
 * can be held, 0 otherwise. */
static void check_word(const struct ca_intern *t, uint32_t id, const char *s)
{
	if (!nonempty(s) || strlen(s) > CA_INTERN_MAX_LEN) {
		ASSERT(id == 0);
		return;
	}
	ASSERT(id != 0 && id < ca_intern_id_limit(t));
	ASSERT(strcmp(ca_intern_str(t, id), s) == 0);
}

static void check_counters(void)
{
	for (int i = 0; i < CA_INVALID_COUNT_; i++) {
		ASSERT(ctx.invalid[i] >= last_invalid[i]);
		last_invalid[i] = ctx.invalid[i];
	}
}

/* ------------------------------------------------------------------ */
/* Pods */

static bool known_phase(const char *s)
{
	static const char *const phases[] = {"Pending", "Running", "Succeeded", "Failed",
	                                     "Unknown"};
	for (size_t i = 0; i < 5; i++)
		if (strcmp(s, phases[i]) == 0)
			return true;
	return false;
}

static enum ca_pod_waiting waiting_of(const char *r)
{
	return str_is(r, "CrashLoopBackOff")             ? CA_WAIT_CRASHLOOP
	       : str_is(r, "ImagePullBackOff")           ? CA_WAIT_IMAGE_PULL_BACKOFF
	       : str_is(r, "ErrImagePull")               ? CA_WAIT_ERR_IMAGE_PULL
	       : str_is(r, "CreateContainerConfigError") ? CA_WAIT_CREATE_CONFIG
	                                                 : CA_WAIT_NONE;
}

struct statuses {
	unsigned waiting, crashloops;
	bool oom;
};

static void scan_statuses(const struct ca_kobj *list, struct statuses *s)
{
	for (size_t i = 0, n = ca_kobj_array_len(list); i < n; i++) {
		const struct ca_kobj *cs = ca_kobj_array_at(list, i);
		enum ca_pod_waiting w = waiting_of(ca_kobj_str(cs, "state.waiting.reason"));
		if (w > s->waiting)
			s->waiting = w;
		s->crashloops += w == CA_WAIT_CRASHLOOP;
		s->oom |= str_is(ca_kobj_str(cs, "lastState.terminated.reason"), "OOMKilled") ||
		          str_is(ca_kobj_str(cs, "state.terminated.reason"), "OOMKilled");
	}
}

static void check_unhealthy(const struct ca_pod_rec *p)
{
	static const int64_t thresholds[] = {0, 60000, 300000, INT64_MAX / 4};
	int64_t base = (int64_t)p->created_s * 1000;
	if ((int64_t)p->since_s * 1000 > base)
		base = (int64_t)p->since_s * 1000;
	if ((int64_t)p->oom_s * 1000 > base)
		base = (int64_t)p->oom_s * 1000;
	static const int64_t offsets[] = {0, 1000, 3599999, 3600000, 86400000};
	for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++)
		for (size_t k = 0; k < sizeof thresholds / sizeof thresholds[0]; k++) {
			int64_t since = -1;
			enum ca_unhealthy u = ca_metrics_pod_unhealthy(p, base + offsets[i],
			                                               thresholds[k], &since);
			ASSERT(u <= CA_UNHEALTHY_OOM);
			ASSERT(*ca_metrics_unhealthy_name(u) || u == CA_UNHEALTHY_NONE);
			if (p->phase == CA_PHASE_SUCCEEDED || p->phase == CA_PHASE_FAILED)
				ASSERT(u == CA_UNHEALTHY_NONE);
			if (u == CA_UNHEALTHY_NONE)
				continue;
			ASSERT(since == (int64_t)p->since_s * 1000 ||
			       since == (int64_t)p->oom_s * 1000 ||
			       since == (int64_t)p->created_s * 1000);
			if (u == CA_UNHEALTHY_OOM)
				ASSERT(p->oom_s && since == (int64_t)p->oom_s * 1000);
			if (u == CA_UNHEALTHY_NOT_READY)
				ASSERT(p->phase == CA_PHASE_RUNNING &&
				       (p->flags & CA_POD_HAS_READY) && !(p->flags & CA_POD_READY));
			if (u == CA_UNHEALTHY_PENDING)
				ASSERT(p->phase == CA_PHASE_PENDING && p->created_s);
		}
}

/* A quantity member as the folds read it: absent unless a string that
 * converts; a converted value is never negative. */
static bool quantity(const struct ca_kobj *map, const char *key, int kind, int64_t *out)
{
	const char *s = ca_kobj_str(ca_kobj_member(map, key), NULL);
	if (!s)
		return false;
	enum ca_err rc;
	if (kind == 0) {
		rc = ca_quantity_cpu_millicores(s, out);
	} else if (kind == 1) {
		rc = ca_quantity_memory_bytes(s, out);
	} else {
		struct ca_quantity q;
		rc = ca_quantity_parse(s, strlen(s), &q);
		if (rc == CA_OK)
			rc = q.negative ? CA_EINVAL : ca_quantity_value(&q, out);
	}
	if (rc != CA_OK)
		return false;
	ASSERT(*out >= 0);
	return true;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/* The scheduler's view of a pod, recomputed: containers summed, the
 * largest init container when more, field by field. */
static void resources(const struct ca_kobj *spec, const char *which, uint64_t *cpu_m, uint64_t *mem)
{
	*cpu_m = *mem = 0;
	const struct ca_kobj *ctrs = ca_kobj_get(spec, "containers"),
	                     *inits = ca_kobj_get(spec, "initContainers");
	int64_t v;
	for (size_t i = 0, n = ca_kobj_array_len(ctrs); i < n; i++) {
		const struct ca_kobj *map =
		        ca_kobj_get(ca_kobj_get(ca_kobj_array_at(ctrs, i), "resources"), which);
		if (quantity(map, "cpu", 0, &v))
			*cpu_m = add_sat(*cpu_m, (uint64_t)v);
		if (quantity(map, "memory", 1, &v))
			*mem = add_sat(*mem, (uint64_t)v);
	}
	for (size_t i = 0, n = ca_kobj_array_len(inits); i < n; i++) {
		const struct ca_kobj *map =
		        ca_kobj_get(ca_kobj_get(ca_kobj_array_at(inits, i), "resources"), which);
		if (quantity(map, "cpu", 0, &v) && (uint64_t)v > *cpu_m)
			*cpu_m = (uint64_t)v;
		if (quantity(map, "memory", 1, &v) && (uint64_t)v > *mem)
			*mem = (uint64_t)v;
	}
	if (*cpu_m > UINT32_MAX)
		*cpu_m = UINT32_MAX;
}

static void fold_pod(const struct ca_kobj *o)
{
	const char *ns = ca_kobj_str(o, "metadata.namespace"),
	           *name = ca_kobj_str(o, "metadata.name");
	const char *phase = ca_kobj_str(o, "status.phase");
	bool bad_name = !nonempty(ns) || !nonempty(name);
	bool bad_phase = !bad_name && nonempty(phase) && !known_phase(phase);
	uint64_t names_before = ctx.invalid[CA_INVALID_NAME],
	         phase_before = ctx.invalid[CA_INVALID_PHASE];
	struct ca_pod_rec *p = NULL;
	size_t size = 0;
	enum ca_err rc = ca_metrics_fold_pod(&ctx, o, &p, &size);
	check_counters();
	if (bad_name || bad_phase) {
		ASSERT(rc == CA_EINVAL && p == NULL);
		ASSERT(ctx.invalid[CA_INVALID_NAME] == names_before + bad_name);
		ASSERT(ctx.invalid[CA_INVALID_PHASE] == phase_before + bad_phase);
		return;
	}
	const char *node = ca_kobj_str(o, "spec.nodeName");
	if (rc == CA_ENOMEM) {
		ASSERT(p == NULL);
		ASSERT(strlen(ns) > CA_INTERN_MAX_LEN ||
		       (node && strlen(node) > CA_INTERN_MAX_LEN));
		return;
	}
	ASSERT(rc == CA_OK && p != NULL && size >= sizeof *p);
	check_word(ctx.names, p->ns, ns);
	check_word(ctx.names, p->node, node);
	uint64_t cpu_m, mem;
	resources(ca_kobj_get(o, "spec"), "requests", &cpu_m, &mem);
	ASSERT(p->cpu_req_m == cpu_m && p->mem_req == mem);
	resources(ca_kobj_get(o, "spec"), "limits", &cpu_m, &mem);
	ASSERT(p->cpu_lim_m == cpu_m && p->mem_lim == mem);
	ASSERT(p->phase <= CA_PHASE_UNKNOWN);
	if (nonempty(phase))
		ASSERT(strcmp(ca_metrics_phase_name((enum ca_pod_phase)p->phase), phase) == 0);
	else
		ASSERT(p->phase == CA_PHASE_PENDING);

	struct statuses st = {0, 0, false};
	scan_statuses(ca_kobj_get(o, "status.initContainerStatuses"), &st);
	scan_statuses(ca_kobj_get(o, "status.containerStatuses"), &st);
	ASSERT(p->waiting == st.waiting);
	ASSERT(p->restarting == (st.crashloops > UINT8_MAX ? UINT8_MAX : st.crashloops));
	if (p->oom_s)
		ASSERT(st.oom);

	bool has_ready = false, ready = false;
	const struct ca_kobj *conds = ca_kobj_get(o, "status.conditions");
	for (size_t i = 0, n = ca_kobj_array_len(conds); i < n; i++) {
		const struct ca_kobj *c = ca_kobj_array_at(conds, i);
		if (!str_is(ca_kobj_str(c, "type"), "Ready"))
			continue;
		has_ready = true;
		ready |= str_is(ca_kobj_str(c, "status"), "True");
	}
	ASSERT((p->flags & ~(CA_POD_READY | CA_POD_HAS_READY)) == 0);
	ASSERT(!!(p->flags & CA_POD_HAS_READY) == has_ready);
	ASSERT(!!(p->flags & CA_POD_READY) == ready);
	if (!p->since_s)
		ASSERT(!p->created_s);
	check_unhealthy(p);
	ca_metrics_free_pod(&ctx, p);
}

/* ------------------------------------------------------------------ */
/* Nodes and namespaces */

static const char *label(const struct ca_kobj *labels, const char *key, const char *old_key)
{
	const char *v = ca_kobj_str(ca_kobj_member(labels, key), NULL);
	return v && *v ? v : ca_kobj_str(ca_kobj_member(labels, old_key), NULL);
}

static void fold_node(const struct ca_kobj *o)
{
	const char *name = ca_kobj_str(o, "metadata.name");
	uint64_t names_before = ctx.invalid[CA_INVALID_NAME];
	struct ca_node_rec *n = NULL;
	size_t size = 0;
	enum ca_err rc = ca_metrics_fold_node(&ctx, o, &n, &size);
	check_counters();
	if (!nonempty(name)) {
		ASSERT(rc == CA_EINVAL && n == NULL);
		ASSERT(ctx.invalid[CA_INVALID_NAME] == names_before + 1);
		return;
	}
	if (rc == CA_ENOMEM) {
		ASSERT(n == NULL && strlen(name) > CA_INTERN_MAX_LEN);
		return;
	}
	ASSERT(rc == CA_OK && n != NULL);
	ASSERT(size >= sizeof *n + n->nconds * sizeof n->conds[0]);
	check_word(ctx.names, n->name, name);
	const struct ca_kobj *labels = ca_kobj_get(o, "metadata.labels");
	check_word(ctx.words, n->zone,
	           label(labels, "topology.kubernetes.io/zone",
	                 "failure-domain.beta.kubernetes.io/zone"));
	check_word(ctx.words, n->instance_type,
	           label(labels, "node.kubernetes.io/instance-type",
	                 "beta.kubernetes.io/instance-type"));
	check_word(ctx.words, n->kubelet_version, ca_kobj_str(o, "status.nodeInfo.kubeletVersion"));
	ASSERT(n->unschedulable == (ca_kobj_bool(o, "spec.unschedulable", false) ? 1 : 0));
	static const char *const maps[] = {"status.capacity", "status.allocatable"};
	const int64_t *got[2][3] = {{&n->cap_cpu_m, &n->cap_mem, &n->cap_pods},
	                            {&n->alloc_cpu_m, &n->alloc_mem, &n->alloc_pods}};
	static const char *const keys[] = {"cpu", "memory", "pods"};
	for (int m = 0; m < 2; m++)
		for (int k = 0; k < 3; k++) {
			int64_t v = 0;
			if (!quantity(ca_kobj_get(o, maps[m]), keys[k], k, &v))
				v = 0;
			ASSERT(*got[m][k] == v);
		}
	ASSERT(n->usage_cpu_m == 0 && n->usage_mem == 0 && n->usage_pass == 0);

	/* the typed conditions, in order, the first CA_NODE_MAX_CONDITIONS */
	const struct ca_kobj *conds = ca_kobj_get(o, "status.conditions");
	bool ready = false;
	uint8_t k = 0;
	const struct ca_kobj *want[CA_NODE_MAX_CONDITIONS];
	for (size_t i = 0, len = ca_kobj_array_len(conds); i < len; i++) {
		const struct ca_kobj *c = ca_kobj_array_at(conds, i);
		const char *type = ca_kobj_str(c, "type"), *status = ca_kobj_str(c, "status");
		if (!nonempty(type))
			continue;
		ready |= strcmp(type, "Ready") == 0 && str_is(status, "True");
		if (k < CA_NODE_MAX_CONDITIONS)
			want[k++] = c;
		else if (strcmp(type, "Ready") == 0)
			want[k - 1] = c; /* a Ready past the cap takes the last place */
	}
	ASSERT(n->nconds == k);
	for (uint8_t i = 0; i < k; i++) {
		check_word(ctx.words, n->conds[i].type, ca_kobj_str(want[i], "type"));
		check_word(ctx.words, n->conds[i].status, ca_kobj_str(want[i], "status"));
		check_word(ctx.words, n->conds[i].reason, ca_kobj_str(want[i], "reason"));
	}
	ASSERT(n->ready == (ready ? 1 : 0));
	ca_metrics_free_node(&ctx, n);
}

static void fold_namespace(const struct ca_kobj *o)
{
	const char *name = ca_kobj_str(o, "metadata.name");
	struct ca_ns_rec *n = NULL;
	size_t size = 0;
	enum ca_err rc = ca_metrics_fold_namespace(&ctx, o, &n, &size);
	check_counters();
	if (!nonempty(name)) {
		ASSERT(rc == CA_EINVAL && n == NULL);
		return;
	}
	if (rc == CA_ENOMEM) {
		ASSERT(n == NULL && strlen(name) > CA_INTERN_MAX_LEN);
		return;
	}
	ASSERT(rc == CA_OK && n != NULL && size >= sizeof *n);
	check_word(ctx.names, n->name, name);
	ASSERT(n->terminating == (str_is(ca_kobj_str(o, "status.phase"), "Terminating") ? 1 : 0));
	ca_metrics_free_namespace(&ctx, n);
}

static void fold_usage(const struct ca_kobj *usage)
{
	int64_t cpu = -1, mem = -1;
	bool any = ca_metrics_fold_usage(&ctx, usage, "fuzz", &cpu, &mem);
	check_counters();
	int64_t want_cpu = 0, want_mem = 0;
	bool want_any = quantity(usage, "cpu", 0, &want_cpu);
	want_any |= quantity(usage, "memory", 1, &want_mem);
	ASSERT(any == want_any);
	ASSERT(cpu == want_cpu && mem == want_mem);
}

static void fold_all(const struct ca_kobj *o)
{
	fold_pod(o);
	fold_node(o);
	fold_namespace(o);
	fold_usage(ca_kobj_get(o, "usage"));
	const struct ca_kobj *ctrs = ca_kobj_get(o, "containers");
	for (size_t i = 0, n = ca_kobj_array_len(ctrs); i < n; i++)
		fold_usage(ca_kobj_get(ca_kobj_array_at(ctrs, i), "usage"));
}

/* ------------------------------------------------------------------ */
/* Parts */

static void check_plan(const uint8_t *data, size_t size)
{
	if (size < 3)
		return;
	size_t fixed = data[1], max = 64 + ((size_t)data[2] << 4), scale = 1 + data[0] % 16;
	size_t n = size - 3 < 256 ? size - 3 : 256;
	size_t sizes[256];
	uint32_t starts[257];
	bool alone_too_big = fixed > max;
	for (size_t i = 0; i < n; i++) {
		sizes[i] = data[3 + i] * scale;
		alone_too_big |= fixed + sizes[i] > max;
	}
	uint32_t parts = ca_metrics_plan_parts(fixed, sizes, n, max, starts);
	if (alone_too_big) {
		ASSERT(parts == 0);
		return;
	}
	ASSERT(parts >= 1 && parts <= (n ? n : 1));
	ASSERT(starts[0] == 0 && starts[parts] == n);
	for (uint32_t p = 0; p < parts; p++) {
		ASSERT(!n || starts[p + 1] > starts[p]);
		size_t used = fixed;
		for (uint32_t i = starts[p]; i < starts[p + 1]; i++)
			used += sizes[i];
		ASSERT(used <= max);
		if (p + 1 < parts)
			ASSERT(used + sizes[starts[p + 1]] > max);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!ctx.names) {
		ca_log_configure(CA_LOG_ERROR,
		                 false); /* skips are counted; their lines are noise */
		if (ca_intern_new(&ctx.names, 0) != CA_OK || ca_intern_new(&ctx.words, 0) != CA_OK)
			fail("out of memory");
	}
	check_plan(data, size);
	struct ca_kobj *o = NULL;
	if (ca_kobj_parse((const char *)data, size, &o) != CA_OK)
		return 0;
	fold_all(o);
	const struct ca_kobj *items = ca_kobj_array_len(o) ? o : ca_kobj_get(o, "items");
	for (size_t i = 0, n = ca_kobj_array_len(items); i < n; i++)
		fold_all(ca_kobj_array_at(items, i));
	ca_kobj_free(o);
	if (ca_intern_count(ctx.names) != 0 || ca_intern_count(ctx.words) != 0)
		fail("an interned string outlived the records that held it");
	return 0;
}
