/* metrics/fold.c: nodes, pods and namespaces folded into the collector's
 * compact records (metrics_int.h) the moment they arrive; no JSON is kept.
 *
 * Bad input is skipped where it is, counted by reason and logged (at most
 * a line per reason every 10 s): an unparsable or negative quantity counts
 * as absent, a restart count that is negative or absurd counts as 0, and
 * an object without a name or with a phase Kubernetes does not have is
 * skipped whole, so one bad object never makes a total wrong elsewhere. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "log/log.h"
#include "metrics/metrics_int.h"
#include "kube/store.h"
#include "metrics/quantity.h"

/* More restarts than this is not a count a kubelet reports. */
#define MAX_RESTART_COUNT 1000000000
#define INVALID_LOG_EVERY_MS 10000

static const char *const invalid_names[CA_INVALID_COUNT_] = {
        [CA_INVALID_QUANTITY] = "quantity",
        [CA_INVALID_COUNT] = "count",
        [CA_INVALID_PHASE] = "phase",
        [CA_INVALID_NAME] = "name",
};

const char *ca_metrics_invalid_name(enum ca_metrics_invalid reason)
{
	return reason < CA_INVALID_COUNT_ ? invalid_names[reason] : "other";
}

void ca_metrics_invalid(struct ca_metrics_fold_ctx *c, enum ca_metrics_invalid reason,
                        const char *what, const char *detail)
{
	if (reason >= CA_INVALID_COUNT_)
		return;
	c->invalid[reason]++;
	int64_t now = ca_now_monotonic_ms();
	if (c->last_log_ms[reason] && now - c->last_log_ms[reason] < INVALID_LOG_EVERY_MS)
		return;
	c->last_log_ms[reason] = now;
	char count[24];
	snprintf(count, sizeof count, "%llu", (unsigned long long)c->invalid[reason]);
	ca_log(CA_LOG_WARN, "metrics", "skipped what the cluster sent", "reason",
	       invalid_names[reason], "object", what, "detail", detail, "total", count, NULL);
}

static const char *const phase_names[] = {"Pending", "Running", "Succeeded", "Failed", "Unknown"};

const char *ca_metrics_phase_name(enum ca_pod_phase p)
{
	return (unsigned)p < sizeof phase_names / sizeof phase_names[0] ? phase_names[p]
	                                                                : "Unknown";
}

static int64_t parse_time(const struct ca_kobj *o, const char *path)
{
	const char *s = ca_kobj_str(o, path);
	int64_t ms = 0;
	if (!s || ca_parse_rfc3339(s, &ms) != CA_OK)
		return 0;
	return ms;
}

/* Unix seconds in 32 bits (until 2106); before 1970 is unknown. */
static uint32_t seconds(int64_t ms)
{
	return ms <= 0 ? 0 : ms / 1000 > UINT32_MAX ? UINT32_MAX : (uint32_t)(ms / 1000);
}

/* A quantity member of a resource map: false when absent; an unparsable
 * (or negative, or not a string) one is counted and also absent. */
static bool quantity(struct ca_metrics_fold_ctx *c, const struct ca_kobj *map, const char *key,
                     bool millis, const char *what, int64_t *out)
{
	const struct ca_kobj *v = ca_kobj_member(map, key);
	if (!v || ca_kobj_is_null(v))
		return false;
	const char *s = ca_kobj_str(v, NULL);
	/* Millicores for cpu; otherwise the whole value rounded up (memory in
	 * bytes, and counts such as pods, which are quantities too). */
	enum ca_err err = !s       ? CA_EINVAL
	                  : millis ? ca_quantity_cpu_millicores(s, out)
	                           : ca_quantity_memory_bytes(s, out);
	if (err == CA_OK)
		return true;
	char detail[128];
	snprintf(detail, sizeof detail, "%s: %.60s", key, s ? s : "(not a string)");
	ca_metrics_invalid(c, CA_INVALID_QUANTITY, what, detail);
	return false;
}

static uint32_t sat32(int64_t v)
{
	return v < 0 ? 0 : v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

struct res {
	uint64_t cpu_m, mem;
};

static void container_resources(struct ca_metrics_fold_ctx *c, const struct ca_kobj *ctr,
                                const char *which, const char *what, struct res *r)
{
	const struct ca_kobj *map = ca_kobj_get(ca_kobj_get(ctr, "resources"), which);
	int64_t v;
	r->cpu_m = r->mem = 0;
	if (!map)
		return;
	if (quantity(c, map, "cpu", true, what, &v))
		r->cpu_m = (uint64_t)v;
	if (quantity(c, map, "memory", false, what, &v))
		r->mem = (uint64_t)v;
}

/* What the scheduler counts for a pod: the sum over its containers, or the
 * largest init container when that is more (init containers run one at a
 * time, before the others). */
static void pod_resources(struct ca_metrics_fold_ctx *c, const struct ca_kobj *spec,
                          const char *which, const char *what, struct res *out)
{
	const struct ca_kobj *ctrs = ca_kobj_get(spec, "containers");
	struct res sum = {0, 0}, one;
	for (size_t i = 0, n = ca_kobj_array_len(ctrs); i < n; i++) {
		container_resources(c, ca_kobj_array_at(ctrs, i), which, what, &one);
		sum.cpu_m = add_sat(sum.cpu_m, one.cpu_m);
		sum.mem = add_sat(sum.mem, one.mem);
	}
	const struct ca_kobj *inits = ca_kobj_get(spec, "initContainers");
	for (size_t i = 0, n = ca_kobj_array_len(inits); i < n; i++) {
		container_resources(c, ca_kobj_array_at(inits, i), which, what, &one);
		if (one.cpu_m > sum.cpu_m)
			sum.cpu_m = one.cpu_m;
		if (one.mem > sum.mem)
			sum.mem = one.mem;
	}
	*out = sum;
}

static enum ca_pod_waiting waiting_reason(const char *reason)
{
	if (!reason)
		return CA_WAIT_NONE;
	if (strcmp(reason, "CrashLoopBackOff") == 0)
		return CA_WAIT_CRASHLOOP;
	if (strcmp(reason, "ImagePullBackOff") == 0)
		return CA_WAIT_IMAGE_PULL_BACKOFF;
	if (strcmp(reason, "ErrImagePull") == 0)
		return CA_WAIT_ERR_IMAGE_PULL;
	if (strcmp(reason, "CreateContainerConfigError") == 0)
		return CA_WAIT_CREATE_CONFIG;
	return CA_WAIT_NONE;
}

static void container_statuses(struct ca_metrics_fold_ctx *c, const struct ca_kobj *list,
                               const char *what, struct ca_pod_rec *p, int64_t *crash_ms)
{
	for (size_t i = 0, n = ca_kobj_array_len(list); i < n; i++) {
		const struct ca_kobj *cs = ca_kobj_array_at(list, i);
		const struct ca_kobj *rc = ca_kobj_get(cs, "restartCount");
		if (rc) {
			int64_t v = ca_kobj_int(rc, NULL, -1);
			if (v < 0 || v > MAX_RESTART_COUNT) {
				ca_metrics_invalid(c, CA_INVALID_COUNT, what,
				                   "restartCount out of range");
			} else {
				uint64_t sum = (uint64_t)p->restarts + (uint64_t)v;
				p->restarts = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
			}
		}
		enum ca_pod_waiting w = waiting_reason(ca_kobj_str(cs, "state.waiting.reason"));
		if (w == CA_WAIT_CRASHLOOP && p->restarting < UINT8_MAX)
			p->restarting++;
		if (w > p->waiting)
			p->waiting = (uint8_t)w;
		const char *last = ca_kobj_str(cs, "lastState.terminated.reason");
		int64_t finished = parse_time(cs, "lastState.terminated.finishedAt");
		if (w == CA_WAIT_CRASHLOOP && finished > *crash_ms)
			*crash_ms = finished;
		if (last && strcmp(last, "OOMKilled") == 0 && seconds(finished) > p->oom_s)
			p->oom_s = seconds(finished);
		const char *now = ca_kobj_str(cs, "state.terminated.reason");
		int64_t now_finished = parse_time(cs, "state.terminated.finishedAt");
		if (now && strcmp(now, "OOMKilled") == 0 && seconds(now_finished) > p->oom_s)
			p->oom_s = seconds(now_finished);
	}
}

static void describe(const struct ca_kobj *obj, const char *kind, char *out, size_t outlen)
{
	const char *ns = ca_kobj_str(obj, "metadata.namespace");
	const char *name = ca_kobj_str(obj, "metadata.name");
	snprintf(out, outlen, "%s %.63s%s%.200s", kind, ns ? ns : "", ns ? "/" : "",
	         name ? name : "(no name)");
}

enum ca_err ca_metrics_fold_pod(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                struct ca_pod_rec **out, size_t *size)
{
	char what[300];
	describe(obj, "pods", what, sizeof what);
	const char *ns = ca_kobj_str(obj, "metadata.namespace");
	const char *name = ca_kobj_str(obj, "metadata.name");
	if (!ns || !*ns || !name || !*name) {
		ca_metrics_invalid(c, CA_INVALID_NAME, what,
		                   "metadata.namespace or metadata.name missing");
		return CA_EINVAL;
	}
	const struct ca_kobj *phase_v = ca_kobj_get(obj, "status.phase");
	const char *phase = ca_kobj_str(phase_v, NULL);
	enum ca_pod_phase ph = CA_PHASE_PENDING; /* a pod not yet seen by a kubelet */
	if (phase_v && !phase && !ca_kobj_is_null(phase_v)) {
		ca_metrics_invalid(c, CA_INVALID_PHASE, what, "status.phase is not a string");
		return CA_EINVAL;
	}
	if (phase && *phase) {
		size_t i = 0;
		while (i < 5 && strcmp(phase, phase_names[i]) != 0)
			i++;
		if (i == 5) {
			char detail[96];
			snprintf(detail, sizeof detail, "status.phase %.60s", phase);
			ca_metrics_invalid(c, CA_INVALID_PHASE, what, detail);
			return CA_EINVAL;
		}
		ph = (enum ca_pod_phase)i;
	}
	struct ca_pod_rec *p = calloc(1, sizeof *p);
	if (!p)
		return CA_ENOMEM;
	p->phase = (uint8_t)ph;
	if (!(p->ns = ca_intern_ref(c->names, ns, strlen(ns)))) {
		free(p);
		return CA_ENOMEM;
	}
	const char *node = ca_kobj_str(obj, "spec.nodeName");
	if (node && *node && !(p->node = ca_intern_ref(c->names, node, strlen(node)))) {
		ca_metrics_free_pod(c, p);
		return CA_ENOMEM;
	}
	const struct ca_kobj *spec = ca_kobj_get(obj, "spec");
	struct res r;
	pod_resources(c, spec, "requests", what, &r);
	p->cpu_req_m = sat32((int64_t)(r.cpu_m > INT64_MAX ? INT64_MAX : r.cpu_m));
	p->mem_req = r.mem;
	pod_resources(c, spec, "limits", what, &r);
	p->cpu_lim_m = sat32((int64_t)(r.cpu_m > INT64_MAX ? INT64_MAX : r.cpu_m));
	p->mem_lim = r.mem;

	p->created_s = seconds(parse_time(obj, "metadata.creationTimestamp"));
	int64_t ready_change = 0;
	const struct ca_kobj *conds = ca_kobj_get(obj, "status.conditions");
	for (size_t i = 0, n = ca_kobj_array_len(conds); i < n; i++) {
		const struct ca_kobj *cd = ca_kobj_array_at(conds, i);
		const char *type = ca_kobj_str(cd, "type");
		if (!type || strcmp(type, "Ready") != 0)
			continue;
		const char *st = ca_kobj_str(cd, "status");
		p->flags |= CA_POD_HAS_READY;
		if (st && strcmp(st, "True") == 0)
			p->flags |= CA_POD_READY;
		ready_change = parse_time(cd, "lastTransitionTime");
	}
	int64_t crash_ms = 0;
	container_statuses(c, ca_kobj_get(obj, "status.initContainerStatuses"), what, p, &crash_ms);
	container_statuses(c, ca_kobj_get(obj, "status.containerStatuses"), what, p, &crash_ms);
	/* Since when it is in trouble, as far as the pod says: the last crash
	 * of a crash loop, else the Ready condition's last change, else its
	 * start. */
	p->since_s = seconds(crash_ms       ? crash_ms
	                     : ready_change ? ready_change
	                                    : parse_time(obj, "status.startTime"));
	if (!p->since_s)
		p->since_s = p->created_s;
	*out = p;
	*size = ca_store_heap_bytes(sizeof *p);
	return CA_OK;
}

void ca_metrics_free_pod(struct ca_metrics_fold_ctx *c, struct ca_pod_rec *p)
{
	if (!p)
		return;
	ca_intern_unref(c->names, p->ns);
	ca_intern_unref(c->names, p->node);
	free(p);
}

static uint32_t word(struct ca_metrics_fold_ctx *c, const char *s)
{
	/* A word that cannot be held (too long, out of budget) is left out:
	 * the node still counts. */
	return s && *s ? ca_intern_ref(c->words, s, strlen(s)) : 0;
}

static const char *label(const struct ca_kobj *labels, const char *key, const char *old_key)
{
	const char *v = ca_kobj_str(ca_kobj_member(labels, key), NULL);
	return v && *v ? v : ca_kobj_str(ca_kobj_member(labels, old_key), NULL);
}

static void node_resources(struct ca_metrics_fold_ctx *c, const struct ca_kobj *map,
                           const char *what, int64_t *cpu_m, int64_t *mem, int64_t *pods)
{
	if (!quantity(c, map, "cpu", true, what, cpu_m))
		*cpu_m = 0;
	if (!quantity(c, map, "memory", false, what, mem))
		*mem = 0;
	if (!quantity(c, map, "pods", false, what, pods))
		*pods = 0;
}

enum ca_err ca_metrics_fold_node(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                 struct ca_node_rec **out, size_t *size)
{
	char what[300];
	describe(obj, "nodes", what, sizeof what);
	const char *name = ca_kobj_str(obj, "metadata.name");
	if (!name || !*name) {
		ca_metrics_invalid(c, CA_INVALID_NAME, what, "metadata.name missing");
		return CA_EINVAL;
	}
	const struct ca_kobj *conds = ca_kobj_get(obj, "status.conditions");
	size_t nconds = ca_kobj_array_len(conds);
	if (nconds > CA_NODE_MAX_CONDITIONS)
		nconds = CA_NODE_MAX_CONDITIONS;
	size_t bytes = sizeof(struct ca_node_rec) + nconds * sizeof(struct ca_node_cond);
	struct ca_node_rec *n = calloc(1, bytes);
	if (!n)
		return CA_ENOMEM;
	if (!(n->name = ca_intern_ref(c->names, name, strlen(name)))) {
		free(n);
		return CA_ENOMEM;
	}
	const struct ca_kobj *labels = ca_kobj_get(obj, "metadata.labels");
	n->zone = word(c, label(labels, "topology.kubernetes.io/zone",
	                        "failure-domain.beta.kubernetes.io/zone"));
	n->instance_type = word(c, label(labels, "node.kubernetes.io/instance-type",
	                                 "beta.kubernetes.io/instance-type"));
	n->kubelet_version = word(c, ca_kobj_str(obj, "status.nodeInfo.kubeletVersion"));
	n->unschedulable = ca_kobj_bool(obj, "spec.unschedulable", false);
	node_resources(c, ca_kobj_get(obj, "status.capacity"), what, &n->cap_cpu_m, &n->cap_mem,
	               &n->cap_pods);
	node_resources(c, ca_kobj_get(obj, "status.allocatable"), what, &n->alloc_cpu_m,
	               &n->alloc_mem, &n->alloc_pods);
	/* Only the first CA_NODE_MAX_CONDITIONS are kept, but the Ready
	 * condition decides readiness wherever it is in the list
	 * (node-problem-detector's conditions may come before the kubelet's). */
	for (size_t i = 0, len = ca_kobj_array_len(conds); i < len; i++) {
		const struct ca_kobj *cd = ca_kobj_array_at(conds, i);
		const char *type = ca_kobj_str(cd, "type"), *status = ca_kobj_str(cd, "status");
		if (!type || !*type)
			continue;
		if (strcmp(type, "Ready") == 0 && status && strcmp(status, "True") == 0)
			n->ready = 1;
		struct ca_node_cond *k;
		if (n->nconds < nconds) {
			k = &n->conds[n->nconds++];
		} else if (nconds && strcmp(type, "Ready") == 0) {
			/* Full: Ready takes the last kept one's place, so the
			 * sample shows the condition that decides readiness. */
			k = &n->conds[nconds - 1];
			ca_intern_unref(c->words, k->type);
			ca_intern_unref(c->words, k->status);
			ca_intern_unref(c->words, k->reason);
		} else {
			continue;
		}
		k->type = word(c, type);
		k->status = word(c, status);
		k->reason = word(c, ca_kobj_str(cd, "reason"));
		k->last_transition_ms = parse_time(cd, "lastTransitionTime");
	}
	*out = n;
	*size = ca_store_heap_bytes(bytes);
	return CA_OK;
}

void ca_metrics_free_node(struct ca_metrics_fold_ctx *c, struct ca_node_rec *n)
{
	if (!n)
		return;
	ca_intern_unref(c->names, n->name);
	ca_intern_unref(c->words, n->zone);
	ca_intern_unref(c->words, n->instance_type);
	ca_intern_unref(c->words, n->kubelet_version);
	for (uint8_t i = 0; i < n->nconds; i++) {
		ca_intern_unref(c->words, n->conds[i].type);
		ca_intern_unref(c->words, n->conds[i].status);
		ca_intern_unref(c->words, n->conds[i].reason);
	}
	free(n);
}

enum ca_err ca_metrics_fold_namespace(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                      struct ca_ns_rec **out, size_t *size)
{
	char what[300];
	describe(obj, "namespaces", what, sizeof what);
	const char *name = ca_kobj_str(obj, "metadata.name");
	if (!name || !*name) {
		ca_metrics_invalid(c, CA_INVALID_NAME, what, "metadata.name missing");
		return CA_EINVAL;
	}
	struct ca_ns_rec *n = calloc(1, sizeof *n);
	if (!n)
		return CA_ENOMEM;
	if (!(n->name = ca_intern_ref(c->names, name, strlen(name)))) {
		free(n);
		return CA_ENOMEM;
	}
	const char *phase = ca_kobj_str(obj, "status.phase");
	n->terminating = phase && strcmp(phase, "Terminating") == 0;
	*out = n;
	*size = ca_store_heap_bytes(sizeof *n);
	return CA_OK;
}

void ca_metrics_free_namespace(struct ca_metrics_fold_ctx *c, struct ca_ns_rec *n)
{
	if (!n)
		return;
	ca_intern_unref(c->names, n->name);
	free(n);
}

bool ca_metrics_fold_usage(struct ca_metrics_fold_ctx *c, const struct ca_kobj *usage,
                           const char *what, int64_t *cpu_m, int64_t *mem)
{
	bool any = false;
	*cpu_m = *mem = 0;
	if (quantity(c, usage, "cpu", true, what, cpu_m))
		any = true;
	if (quantity(c, usage, "memory", false, what, mem))
		any = true;
	return any;
}
