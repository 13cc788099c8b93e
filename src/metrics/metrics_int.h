/* metrics/metrics_int.h: the collector's compact records and the parts
 * shared by its files (fold.c: objects into records; sample.c: records
 * into a MetricsSample; metrics.c: reflectors, timers, publishing). Not
 * for other modules. */
#ifndef CA_METRICS_INT_H
#define CA_METRICS_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "core/buf.h"
#include "kube/kobj.h"
#include "metrics/intern.h"

enum ca_pod_phase {
	CA_PHASE_PENDING = 0,
	CA_PHASE_RUNNING,
	CA_PHASE_SUCCEEDED,
	CA_PHASE_FAILED,
	CA_PHASE_UNKNOWN
};

/* A container waiting for a reason worth reporting, least bad first (the
 * pod keeps its worst). */
enum ca_pod_waiting {
	CA_WAIT_NONE = 0,
	CA_WAIT_CREATE_CONFIG,
	CA_WAIT_ERR_IMAGE_PULL,
	CA_WAIT_IMAGE_PULL_BACKOFF,
	CA_WAIT_CRASHLOOP
};

/* Why an object or a field was skipped: agent_metrics_invalid_total{reason}. */
enum ca_metrics_invalid {
	CA_INVALID_QUANTITY = 0,
	CA_INVALID_COUNT,
	CA_INVALID_PHASE,
	CA_INVALID_NAME,
	CA_INVALID_COUNT_
};

#define CA_POD_READY 0x01u     /* the Ready condition is True */
#define CA_POD_HAS_READY 0x02u /* there is a Ready condition */

/* One pod: 56 bytes, a 64-byte heap chunk (150,000 of them at the
 * Kubernetes scalability envelope). Times are Unix seconds (API times have
 * no finer resolution), 0 = unknown. CPU in millicores (saturating at
 * 2^32-1), memory in bytes. */
struct ca_pod_rec {
	uint32_t ns;   /* namespace name (names interner) */
	uint32_t node; /* node name (names interner); 0 = not scheduled */
	uint32_t cpu_req_m, cpu_lim_m;
	uint64_t mem_req, mem_lim;
	uint32_t restarts;
	uint8_t phase, waiting, flags;
	uint8_t restarting; /* containers waiting in CrashLoopBackOff (saturating) */
	uint32_t created_s;
	uint32_t since_s; /* the last crash of a crash loop, or the Ready condition's last change */
	uint32_t oom_s;   /* the latest OOMKilled termination */
};

#define CA_NODE_MAX_CONDITIONS 16

struct ca_node_cond {
	uint32_t type, status, reason; /* words interner */
	int64_t last_transition_ms;
};

struct ca_node_rec {
	uint32_t name;                                 /* names interner (pods refer to it) */
	uint32_t zone, instance_type, kubelet_version; /* words interner, 0 = none */
	int64_t cap_cpu_m, cap_mem, cap_pods;
	int64_t alloc_cpu_m, alloc_mem, alloc_pods;
	int64_t usage_cpu_m, usage_mem;
	uint32_t usage_pass; /* the usage pass that set usage (0 = none) */
	uint8_t ready, unschedulable, nconds;
	struct ca_node_cond conds[]; /* nconds of them */
};

struct ca_ns_rec {
	uint32_t name;       /* names interner */
	uint8_t terminating; /* status.phase Terminating */
};

/* What fold needs: the interners and where to count what it skipped. */
struct ca_metrics_fold_ctx {
	struct ca_intern *names; /* namespaces and nodes */
	struct ca_intern *words; /* zones, instance types, versions, condition words */
	uint64_t invalid[CA_INVALID_COUNT_];
	int64_t last_log_ms[CA_INVALID_COUNT_];
};

/* Fold one object into a new record (malloc'd; *size is its heap cost).
 * CA_EINVAL skips the object (counted and logged); CA_ENOMEM. */
enum ca_err ca_metrics_fold_pod(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                struct ca_pod_rec **out, size_t *size);
enum ca_err ca_metrics_fold_node(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                 struct ca_node_rec **out, size_t *size);
enum ca_err ca_metrics_fold_namespace(struct ca_metrics_fold_ctx *c, const struct ca_kobj *obj,
                                      struct ca_ns_rec **out, size_t *size);
void ca_metrics_free_pod(struct ca_metrics_fold_ctx *c, struct ca_pod_rec *p);
void ca_metrics_free_node(struct ca_metrics_fold_ctx *c, struct ca_node_rec *n);
void ca_metrics_free_namespace(struct ca_metrics_fold_ctx *c, struct ca_ns_rec *n);
/* Count one skipped thing and log it (at most one line per reason every
 * 10 s). what: the object ("pods shop/web-1"); detail: which field, why. */
void ca_metrics_invalid(struct ca_metrics_fold_ctx *c, enum ca_metrics_invalid reason,
                        const char *what, const char *detail);
const char *ca_metrics_invalid_name(enum ca_metrics_invalid reason);

/* Usage of a PodMetrics / NodeMetrics item: summed containers for pods.
 * false when it has none that parse (counted). */
bool ca_metrics_fold_usage(struct ca_metrics_fold_ctx *c, const struct ca_kobj *usage,
                           const char *what, int64_t *cpu_m, int64_t *mem);

const char *ca_metrics_phase_name(enum ca_pod_phase p);

/* ---- sample.c ---------------------------------------------------------- */

/* The unhealthy reasons, worst first. */
enum ca_unhealthy {
	CA_UNHEALTHY_NONE = 0,
	CA_UNHEALTHY_NOT_READY,
	CA_UNHEALTHY_PENDING,
	CA_UNHEALTHY_CREATE_CONFIG,
	CA_UNHEALTHY_ERR_IMAGE_PULL,
	CA_UNHEALTHY_IMAGE_PULL_BACKOFF,
	CA_UNHEALTHY_CRASHLOOP,
	CA_UNHEALTHY_OOM
};

/* Which reason a pod shows at now_ms (OOMKilled only within the last hour,
 * Pending only past pending_threshold_ms), and since when. */
enum ca_unhealthy ca_metrics_pod_unhealthy(const struct ca_pod_rec *p, int64_t now_ms,
                                           int64_t pending_threshold_ms, int64_t *since_ms);
const char *ca_metrics_unhealthy_name(enum ca_unhealthy u);

/* Split n items (nodes, then namespaces, then unhealthy pods) across
 * parts so that each part, fixed bytes plus its items' sizes[i], stays
 * within max_payload; items keep their order, so part p holds items
 * starts[p] .. starts[p+1]-1 (starts has room for n+1 entries). Returns the
 * number of parts (at least 1), or 0 when one item alone does not fit. */
uint32_t ca_metrics_plan_parts(size_t fixed, const size_t *sizes, size_t n, size_t max_payload,
                               uint32_t *starts);

#endif
