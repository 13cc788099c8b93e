/* metrics/metrics.h: the metrics collector (DESIGN.md §2 MetricsSample,
 * §3, §6 `metrics:`; issue 9).
 *
 * Three reflectors keep nodes, pods and namespaces in informer stores
 * (kube/store.h), each object folded at once into a compact record
 * (metrics_int.h: a pod is 64 bytes; namespace and node names, zones,
 * instance types, versions and condition words are interned). Nothing is
 * re-listed per interval: every metrics.interval a sample is computed from
 * those records, split into parts under the NATS server's max_payload
 * (nodes, namespaces and unhealthy pods shared out, never cut) and handed
 * to the sink part by part as it takes them.
 *
 * Usage comes from metrics.k8s.io when the API serves it: NodeMetrics and
 * PodMetrics are listed (paginated, list-only reflectors) once per
 * interval, node usage kept in the node records, pod usage summed per
 * namespace. Whether it is served is found by that LIST (404: not served;
 * 503: served but its backend is down), first made once the three stores
 * have synced, and checked again every interval;
 * meanwhile samples say usage_available: false and why. metrics-server
 * ignores limit: when the PodMetrics list does not fit in
 * kubernetes.max_list_page_bytes, passes list it namespace by namespace
 * (one LIST at a time), a namespace whose own list does not fit having no
 * usage in the sample (docs/METRICS.md). One pass at a time: an interval
 * that finds the last one running starts none.
 *
 * The module owns its reflectors, stores, interners, timer and the sample
 * waiting to be sent. It never includes bus/, http/ or agent/ headers.
 * Loop thread only (the thread running the kube client's loop). */
#ifndef CA_METRICS_METRICS_H
#define CA_METRICS_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/budget.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "core/prom.h"
#include "kube/kube.h"

struct ca_metrics;

struct ca_metrics_sink {
	/* Publish one encoded part (payload borrowed for the call) with its
	 * Nats-Msg-Id. CA_OK: taken. CA_EAGAIN: not now; the part is offered
	 * again after ca_metrics_flush(). Anything else: this part (and so the
	 * sample) cannot be sent; the rest of the sample is dropped, counted. */
	enum ca_err (*publish)(void *arg, const char *payload, size_t len, const char *msg_id);
	/* The largest message the server takes (its max_payload), 0 when not
	 * known yet (not connected). */
	size_t (*max_payload)(void *arg);
};

/* Set up (not start) the collector on kube, whose loop is loop. cfg, kube
 * and loop are borrowed and must outlive it; cluster_id and agent_id are
 * copied; sink is copied, sink_arg borrowed. err gets one sentence on
 * failure (CA_EINVAL, CA_ENOMEM). */
enum ca_err ca_metrics_new(struct ca_metrics **out, struct ca_loop *loop, struct ca_kube *kube,
                           const struct ca_config *cfg, enum ca_codec_format format,
                           const char *cluster_id, const char *agent_id,
                           const struct ca_metrics_sink *sink, void *sink_arg, char *err,
                           size_t errlen);
/* Start the reflectors and the sample timer. */
enum ca_err ca_metrics_start(struct ca_metrics *m);
/* NATS can take messages again: offer what waits. */
void ca_metrics_flush(struct ca_metrics *m);
/* Take a sample now (the timer does this every metrics.interval); false
 * when not synced yet (nothing is sent then). For tests and agentctl. */
bool ca_metrics_sample_now(struct ca_metrics *m);
void ca_metrics_free(struct ca_metrics *m);

/* The collector's rows of the memory budget for cfg (none when disabled):
 * its stores at metrics.max_pods / max_nodes / max_namespaces, the sample
 * being sent, its watches. Any thread. */
void ca_metrics_budget(const struct ca_config *cfg, struct ca_budget *b);

struct ca_metrics_stats {
	uint64_t samples;         /* samples taken */
	uint64_t parts_published; /* parts handed to the sink */
	uint64_t samples_dropped; /* samples not (fully) sent: replaced by the next one, or
	                             unsendable */
	uint64_t usage_lists;     /* metrics.k8s.io passes completed */
	size_t pods, nodes, namespaces;
	size_t queue_parts; /* parts of the current sample not yet taken by the sink */
	bool usage_available;
	bool usage_per_namespace;          /* PodMetrics are listed namespace by namespace */
	uint64_t usage_namespaces_unknown; /* in the last sample, with usage available */
	uint64_t usage_too_big_total;      /* namespaces' PodMetrics lists that did not fit */
	bool usage_per_zone;               /* NodeMetrics are listed zone by zone */
	uint64_t usage_nodes_unknown;      /* in the last sample, with usage available */
	uint64_t usage_zones_too_big_total; /* zones' NodeMetrics lists that did not fit */
	double last_duration_s;            /* CPU time of the last sample, in seconds */
};
void ca_metrics_get_stats(const struct ca_metrics *m, struct ca_metrics_stats *out);

/* As a module of the agent (core/module.h): ready when the three
 * reflectors have listed and stream; not live when one made no progress
 * for kubernetes.stall_timeout. metrics.k8s.io being absent or down does
 * not make it unready (usage is optional; the sample says why). */
extern const struct ca_module_ops ca_metrics_module;

#endif
