/* metrics/metrics.c: the collector's reflectors and stores, the usage
 * passes over metrics.k8s.io, the sample (computed from the records, then
 * shared out across parts and handed to the sink as it takes them), and
 * the module's health and metrics. */
#include "metrics/metrics.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/timeutil.h"
#include "kube/reflector.h"
#include "kube/store.h"
#include "log/log.h"
#include "metrics/metrics_int.h"

#define PAGE_PODS 500
#define PAGE_NODES 100
#define PAGE_NAMESPACES 500
/* Parts are at most this big unless metrics.max_payload_bytes says more
 * (NATS's default max_payload). */
#define DEFAULT_MAX_PAYLOAD ((size_t)1 << 20)
/* Room left in each part for what the size estimate does not see. */
#define PART_SLACK 256
/* What a store key of average length costs (namespace/name). */
#define AVG_KEY 48
#define AVG_NODE_CONDITIONS 8
#define RETRY_MS 250
/* Once the cluster-wide PodMetrics list did not fit, it is tried again
 * this long after (the cluster may have shrunk): one LIST cut off at
 * kubernetes.max_list_page_bytes, then the namespaces as usual. */
#define CLUSTER_RETRY_MS (60 * 60 * 1000)
/* At most one line this often about namespaces whose list does not fit. */
#define TOO_BIG_LOG_MS (10 * 60 * 1000)
/* The label NodeMetrics are listed by when the cluster-wide list does not
 * fit; metrics-server selects on the node's labels. */
#define ZONE_LABEL "topology.kubernetes.io/zone"

enum { KIND_PODS = 0, KIND_NODES, KIND_NAMESPACES, KIND_COUNT };
static const char *const kind_names[KIND_COUNT] = {"pods", "nodes", "namespaces"};

/* The sample being sent: what every part shares, the lists, and where
 * each part starts. Names point into the interners, which keep them while
 * the sample holds a reference (held_names, held_words). */
struct outgoing {
	bool active;
	char sample_id[300];
	struct ca_msg_metrics_sample msg;
	char usage_reason[256];
	struct ca_msg_node_sample *nodes;
	struct ca_msg_node_condition *conds;
	struct ca_msg_namespace_sample *nss;
	struct ca_msg_unhealthy_pod *unhealthy;
	char *pod_names;
	size_t nnodes, nnss, nunhealthy;
	uint32_t *starts; /* parts + 1 */
	uint32_t parts, next;
	size_t max_payload;
	uint32_t *held_names, *held_words;
	size_t nheld_names, nheld_words;
};

struct ns_usage {
	int64_t cpu_m, mem;
};

struct ca_metrics {
	struct ca_loop *loop;
	struct ca_kube *kube;
	const struct ca_config *cfg;
	enum ca_codec_format format;
	char cluster_id[128], agent_id[256];
	struct ca_metrics_sink sink;
	void *sink_arg;

	struct ca_metrics_fold_ctx fold;
	struct ca_store *store[KIND_COUNT];
	struct ca_reflector *refl[KIND_COUNT];
	struct ca_loop_timer *timer;
	struct ca_loop_timer *retry; /* offer the waiting parts again */
	bool started;

	/* metrics.k8s.io */
	struct ca_reflector *usage_nodes, *usage_pods;
	struct ca_loop_timer *usage_wait; /* the first pass waits for the stores to sync */
	bool usage_started;
	uint32_t usage_pass;      /* the pass in progress (or the last one) */
	uint32_t usage_pass_done; /* the last pass that completed */
	bool pass_running, pass_nodes_done, pass_pods_done;
	int64_t pass_started_ms; /* Unix ms */
	struct ns_usage *acc; /* by names id: the pass in progress (holds a ref per touched id) */
	uint32_t nacc;
	struct ns_usage *ns_usage; /* by names id: the last completed pass */
	uint32_t nns_usage;
	bool usage_available;
	int64_t usage_observed_ms;
	char usage_reason[256];
	int64_t pass_started_mono_ms, last_pass_ms;
	uint64_t passes_skipped; /* intervals that found the last pass still running */

	/* PodMetrics namespace by namespace, when the cluster-wide list does
	 * not fit even at one item a page (metrics-server ignores limit): one
	 * lister at a time walks the names interner's ids, each namespace's
	 * sum going into acc once its list is complete. */
	bool per_ns;      /* passes list namespace by namespace */
	bool pass_per_ns; /* the pass in progress does */
	/* The last completed pass did: a namespace it has no sum for is
	 * unknown (not listed whole), not zero. */
	bool usage_per_ns;
	int64_t per_ns_since_ms; /* monotonic: the cluster-wide list's last failure */
	struct ca_reflector *ns_lister;
	uint32_t ns_next;       /* names id the walk goes on from */
	uint32_t ns_id;         /* the namespace being listed (a reference held), 0 = none */
	struct ns_usage ns_sum; /* its pods so far */
	/* Namespaces whose list did not fit: in this pass, in the last. */
	uint32_t pass_too_big, last_too_big;
	uint64_t too_big_total;
	int64_t too_big_logged_ms;
	uint64_t ns_usage_unknown; /* namespaces without usage in the last sample that had usage */

	/* NodeMetrics zone by zone, when the cluster-wide list does not fit
	 * (5,000 nodes with their labels are over 2 MiB): one lister at a
	 * time, with labelSelector topology.kubernetes.io/zone=Z for each
	 * zone the node store knows, then !topology.kubernetes.io/zone.
	 * Each node's figure is its own object's, so a zone whose list does
	 * not fit leaves its nodes without usage, never with a part of it. */
	bool per_zone;      /* passes list zone by zone */
	bool pass_per_zone; /* the pass in progress does */
	int64_t per_zone_since_ms; /* monotonic: the cluster-wide list's last failure */
	struct ca_reflector *zone_lister;
	uint32_t *zones; /* words ids, a reference held on each; 0 (no zone label) last */
	size_t nzones, zone_next;
	/* Zones whose list did not fit: in this pass, in the last. */
	uint32_t pass_zones_too_big, last_zones_too_big;
	uint64_t zones_too_big_total;
	int64_t zone_too_big_logged_ms;
	uint64_t nodes_usage_unknown; /* nodes without usage in the last sample that had usage */

	struct outgoing out;
	uint64_t samples, parts_published, samples_dropped, usage_lists;
	double last_duration_s;
	struct ca_histogram duration;
	uint64_t unknown_node_pods, unknown_ns_pods; /* in the last sample */
	uint64_t logged_unknown_node, logged_unknown_ns;
};

static const double duration_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5};

/* ------------------------------------------------------------------------
 * Store callbacks */

static enum ca_err fold_pod(void *arg, const struct ca_kobj *obj, void **value, size_t *size)
{
	struct ca_metrics *m = arg;
	return ca_metrics_fold_pod(&m->fold, obj, (struct ca_pod_rec **)value, size);
}

static void free_pod(void *arg, void *value)
{
	struct ca_metrics *m = arg;
	ca_metrics_free_pod(&m->fold, value);
}

static enum ca_err fold_node(void *arg, const struct ca_kobj *obj, void **value, size_t *size)
{
	struct ca_metrics *m = arg;
	return ca_metrics_fold_node(&m->fold, obj, (struct ca_node_rec **)value, size);
}

static void free_node(void *arg, void *value)
{
	struct ca_metrics *m = arg;
	ca_metrics_free_node(&m->fold, value);
}

/* A node's new version keeps the usage the last pass read for it. */
static void node_updated(void *arg, const char *key, void *old_value, void *new_value)
{
	(void)arg;
	(void)key;
	const struct ca_node_rec *o = old_value;
	struct ca_node_rec *n = new_value;
	n->usage_cpu_m = o->usage_cpu_m;
	n->usage_mem = o->usage_mem;
	n->usage_pass = o->usage_pass;
}

static enum ca_err fold_namespace(void *arg, const struct ca_kobj *obj, void **value, size_t *size)
{
	struct ca_metrics *m = arg;
	return ca_metrics_fold_namespace(&m->fold, obj, (struct ca_ns_rec **)value, size);
}

static void free_namespace(void *arg, void *value)
{
	struct ca_metrics *m = arg;
	ca_metrics_free_namespace(&m->fold, value);
}

/* ------------------------------------------------------------------------
 * Memory budget */

static uint64_t pod_bytes(void)
{
	/* The store's entry and key, the record's 80-byte chunk, the table's
	 * share (9 bytes a slot, at least 3/8 full). */
	return ca_store_entry_bytes(AVG_KEY) + ca_store_heap_bytes(sizeof(struct ca_pod_rec)) + 24;
}

static uint64_t node_bytes(void)
{
	return ca_store_entry_bytes(AVG_KEY) +
	       ca_store_heap_bytes(sizeof(struct ca_node_rec) +
	                           AVG_NODE_CONDITIONS * sizeof(struct ca_node_cond)) +
	       24 + ca_intern_entry_bytes(AVG_KEY);
}

static uint64_t namespace_bytes(void)
{
	/* With its name interned and a usage slot in two arrays. */
	return ca_store_entry_bytes(AVG_KEY) + ca_store_heap_bytes(sizeof(struct ca_ns_rec)) + 24 +
	       ca_intern_entry_bytes(AVG_KEY) + 2 * sizeof(struct ns_usage);
}

/* While a sample is built and sent: per node and per namespace, its
 * message struct, the working arrays, and the references held. */
static uint64_t sample_node_bytes(void)
{
	return sizeof(struct ca_msg_node_sample) +
	       AVG_NODE_CONDITIONS * sizeof(struct ca_msg_node_condition) +
	       (4 + 3 * AVG_NODE_CONDITIONS) * sizeof(uint32_t) + 64;
}

static uint64_t sample_namespace_bytes(void)
{
	return sizeof(struct ca_msg_namespace_sample) + sizeof(uint32_t) + 72 + 32;
}

static size_t payload_cap(const struct ca_config *cfg)
{
	return cfg->metrics.max_payload_bytes ? (size_t)cfg->metrics.max_payload_bytes
	                                      : DEFAULT_MAX_PAYLOAD;
}

void ca_metrics_budget(const struct ca_config *cfg, struct ca_budget *b)
{
	if (!cfg->metrics.enabled)
		return;
	ca_budget_add(b, "metrics: pods (record, key, table share)", "metrics.max_pods",
	              (uint64_t)cfg->metrics.max_pods * pod_bytes());
	ca_budget_add(b, "metrics: nodes (record with conditions, key, name)", "metrics.max_nodes",
	              (uint64_t)cfg->metrics.max_nodes * node_bytes());
	ca_budget_add(b, "metrics: namespaces (record, key, name, usage)", "metrics.max_namespaces",
	              (uint64_t)cfg->metrics.max_namespaces * namespace_bytes());
	/* One part encoding at a time, in a buffer of its size. */
	ca_budget_add(b, "metrics: the sample being sent (lists, one part encoding)",
	              "metrics.max_nodes",
	              (uint64_t)cfg->metrics.max_nodes * sample_node_bytes() +
	                      (uint64_t)cfg->metrics.max_namespaces * sample_namespace_bytes() +
	                      (uint64_t)cfg->metrics.max_unhealthy_pods * 512 +
	                      (uint64_t)payload_cap(cfg));
	ca_kube_watch_budget(KIND_COUNT, (size_t)cfg->metrics.max_object_bytes,
	                     "pod/node/namespace", "metrics.max_object_bytes", b);
}

/* ------------------------------------------------------------------------
 * The sample being sent */

static void release_outgoing(struct ca_metrics *m)
{
	struct outgoing *o = &m->out;
	for (size_t i = 0; i < o->nheld_names; i++)
		ca_intern_unref(m->fold.names, o->held_names[i]);
	for (size_t i = 0; i < o->nheld_words; i++)
		ca_intern_unref(m->fold.words, o->held_words[i]);
	free(o->held_names);
	free(o->held_words);
	free(o->nodes);
	free(o->conds);
	free(o->nss);
	free(o->unhealthy);
	free(o->pod_names);
	free(o->starts);
	memset(o, 0, sizeof *o);
}

static const char *hold_name(struct ca_metrics *m, uint32_t id)
{
	if (!id)
		return NULL;
	ca_intern_ref_id(m->fold.names, id);
	m->out.held_names[m->out.nheld_names++] = id;
	return ca_intern_str(m->fold.names, id);
}

static const char *hold_word(struct ca_metrics *m, uint32_t id)
{
	if (!id)
		return NULL;
	ca_intern_ref_id(m->fold.words, id);
	m->out.held_words[m->out.nheld_words++] = id;
	return ca_intern_str(m->fold.words, id);
}

/* Part p as a message of its own: the shared fields and its share of the
 * lists (items are nodes, then namespaces, then unhealthy pods). */
static void part_message(const struct outgoing *o, uint32_t p, struct ca_msg_metrics_sample *msg)
{
	size_t from = o->starts[p], to = o->starts[p + 1];
	size_t n1 = o->nnodes, n2 = n1 + o->nnss;
	*msg = o->msg;
	msg->part = (int32_t)(p + 1);
	msg->parts = (int32_t)o->parts;
	size_t a = from < n1 ? from : n1, b = to < n1 ? to : n1;
	msg->nodes = o->nodes + a;
	msg->n_nodes = b - a;
	a = from < n1 ? 0 : (from < n2 ? from - n1 : o->nnss);
	b = to < n1 ? 0 : (to < n2 ? to - n1 : o->nnss);
	msg->namespaces = o->nss + a;
	msg->n_namespaces = b - a;
	a = from < n2 ? 0 : from - n2;
	b = to < n2 ? 0 : to - n2;
	msg->unhealthy_pods = o->unhealthy + a;
	msg->n_unhealthy_pods = b - a;
}

/* Hand parts to the sink until it says "not now" or the sample is out. */
static void send_parts(struct ca_metrics *m)
{
	struct outgoing *o = &m->out;
	struct ca_buf payload;
	/* Sized once: a part is at most max_payload. */
	ca_buf_init(&payload, 0);
	if (o->active && o->next < o->parts &&
	    ca_buf_reserve(&payload, o->max_payload + 1) != CA_OK) {
		ca_buf_fini(&payload);
		ca_loop_timer_start(m->retry, RETRY_MS, 0); /* out of memory: later */
		return;
	}
	while (o->active && o->next < o->parts) {
		struct ca_msg_metrics_sample msg;
		char msg_id[340];
		part_message(o, o->next, &msg);
		ca_buf_reset(&payload);
		enum ca_err err = ca_codec_encode_metrics_sample(m->format, &msg, &payload);
		if (err == CA_OK && payload.len > o->max_payload)
			err = CA_ETOOBIG;
		if (err == CA_OK) {
			snprintf(msg_id, sizeof msg_id, "%s-%" PRIu32, o->sample_id, o->next + 1);
			err = m->sink.publish(m->sink_arg, payload.data, payload.len, msg_id);
		}
		if (err == CA_EAGAIN) {
			/* The bus's hand-off is full: NATS is slow or away. */
			if (!ca_loop_timer_active(m->retry))
				ca_loop_timer_start(m->retry, RETRY_MS, 0);
			break;
		}
		if (err != CA_OK) {
			char part[32];
			snprintf(part, sizeof part, "%" PRIu32 "/%" PRIu32, o->next + 1, o->parts);
			ca_log(CA_LOG_ERROR, "metrics",
			       "cannot publish a sample part: the sample is dropped", "sample_id",
			       o->sample_id, "part", part, "error", ca_strerror(err), NULL);
			m->samples_dropped++;
			release_outgoing(m);
			break;
		}
		o->next++;
		m->parts_published++;
	}
	if (o->active && o->next == o->parts)
		release_outgoing(m);
	ca_buf_fini(&payload);
}

void ca_metrics_flush(struct ca_metrics *m)
{
	if (m)
		send_parts(m);
}

/* ------------------------------------------------------------------------
 * Building a sample */

struct ns_acc {
	struct ca_pod_phase_counts pods;
	int64_t restarts;
	int64_t req_cpu_m, req_mem, lim_cpu_m, lim_mem;
};

struct bad_pod {
	const char *key; /* "namespace/name", the store's (valid during the walk) */
	const struct ca_pod_rec *p;
	uint8_t reason;
	int64_t since;
};

struct walk {
	struct ca_metrics *m;
	int64_t now;
	uint32_t limit; /* names id limit */
	struct ns_acc *acc;
	uint32_t *node_pods;
	uint8_t *is_node, *is_ns;
	struct ca_msg_cluster_summary *sum;
	const void **recs;
	const char **keys;
	size_t n;
	struct bad_pod *heap;
	size_t nheap, cap_heap;
	int64_t unhealthy;
};

static int64_t add64(int64_t a, int64_t b)
{
	return (b > 0 && a > INT64_MAX - b) ? INT64_MAX : a + b;
}

static void count_phase(struct ca_pod_phase_counts *c, uint8_t phase)
{
	switch ((enum ca_pod_phase)phase) {
	case CA_PHASE_PENDING:
		c->pending++;
		break;
	case CA_PHASE_RUNNING:
		c->running++;
		break;
	case CA_PHASE_SUCCEEDED:
		c->succeeded++;
		break;
	case CA_PHASE_FAILED:
		c->failed++;
		break;
	case CA_PHASE_UNKNOWN:
		c->unknown++;
		break;
	}
}

/* a is worse than b: the reason, then more restarts, then older, then by
 * name (so equal pods come out in one order every time). */
static bool worse(const struct bad_pod *a, const struct bad_pod *b)
{
	if (a->reason != b->reason)
		return a->reason > b->reason;
	if (a->p->restarts != b->p->restarts)
		return a->p->restarts > b->p->restarts;
	int64_t sa = a->since ? a->since : INT64_MAX, sb = b->since ? b->since : INT64_MAX;
	if (sa != sb)
		return sa < sb;
	return strcmp(a->key, b->key) < 0;
}

/* A heap of the worst pods seen, the least bad at the root. */
static void heap_down(struct bad_pod *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, least = i;
		if (l < n && worse(&h[least], &h[l]))
			least = l;
		if (r < n && worse(&h[least], &h[r]))
			least = r;
		if (least == i)
			return;
		struct bad_pod t = h[i];
		h[i] = h[least];
		h[least] = t;
		i = least;
	}
}

static void heap_offer(struct walk *w, const struct bad_pod *b)
{
	if (!w->cap_heap)
		return;
	if (w->nheap < w->cap_heap) {
		size_t i = w->nheap++;
		w->heap[i] = *b;
		while (i > 0) {
			size_t parent = (i - 1) / 2;
			if (!worse(&w->heap[parent], &w->heap[i]))
				break;
			struct bad_pod t = w->heap[i];
			w->heap[i] = w->heap[parent];
			w->heap[parent] = t;
			i = parent;
		}
	} else if (worse(b, &w->heap[0])) {
		w->heap[0] = *b;
		heap_down(w->heap, w->nheap, 0);
	}
}

static bool walk_node(void *arg, const char *key, void *value)
{
	struct walk *w = arg;
	const struct ca_node_rec *n = value;
	struct ca_msg_cluster_summary *s = w->sum;
	if (n->name < w->limit)
		w->is_node[n->name] = 1;
	s->nodes_total++;
	s->nodes_ready += n->ready;
	s->capacity.cpu_millicores = add64(s->capacity.cpu_millicores, n->cap_cpu_m);
	s->capacity.memory_bytes = add64(s->capacity.memory_bytes, n->cap_mem);
	s->capacity.pods = add64(s->capacity.pods, n->cap_pods);
	s->allocatable.cpu_millicores = add64(s->allocatable.cpu_millicores, n->alloc_cpu_m);
	s->allocatable.memory_bytes = add64(s->allocatable.memory_bytes, n->alloc_mem);
	s->allocatable.pods = add64(s->allocatable.pods, n->alloc_pods);
	w->recs[w->n] = n;
	w->keys[w->n++] = key;
	return true;
}

static bool walk_namespace(void *arg, const char *key, void *value)
{
	struct walk *w = arg;
	const struct ca_ns_rec *n = value;
	if (n->name < w->limit)
		w->is_ns[n->name] = 1;
	w->recs[w->n] = n;
	w->keys[w->n++] = key;
	return true;
}

static bool walk_pod(void *arg, const char *key, void *value)
{
	struct walk *w = arg;
	const struct ca_pod_rec *p = value;
	struct ca_msg_cluster_summary *s = w->sum;
	bool finished = p->phase == CA_PHASE_SUCCEEDED || p->phase == CA_PHASE_FAILED;
	count_phase(&s->pods, p->phase);
	s->restarts = add64(s->restarts, p->restarts);
	s->containers_restarting += p->restarting;
	if (!finished) {
		s->requests.cpu_millicores = add64(s->requests.cpu_millicores, p->cpu_req_m);
		s->requests.memory_bytes =
		        add64(s->requests.memory_bytes,
		              (int64_t)(p->mem_req > INT64_MAX ? INT64_MAX : p->mem_req));
		s->limits.cpu_millicores = add64(s->limits.cpu_millicores, p->cpu_lim_m);
		s->limits.memory_bytes =
		        add64(s->limits.memory_bytes,
		              (int64_t)(p->mem_lim > INT64_MAX ? INT64_MAX : p->mem_lim));
	}
	if (p->ns < w->limit) {
		struct ns_acc *a = &w->acc[p->ns];
		count_phase(&a->pods, p->phase);
		a->restarts = add64(a->restarts, p->restarts);
		if (!finished) {
			a->req_cpu_m = add64(a->req_cpu_m, p->cpu_req_m);
			a->req_mem =
			        add64(a->req_mem,
			              (int64_t)(p->mem_req > INT64_MAX ? INT64_MAX : p->mem_req));
			a->lim_cpu_m = add64(a->lim_cpu_m, p->cpu_lim_m);
			a->lim_mem =
			        add64(a->lim_mem,
			              (int64_t)(p->mem_lim > INT64_MAX ? INT64_MAX : p->mem_lim));
		}
		if (!w->is_ns[p->ns])
			w->m->unknown_ns_pods++;
	}
	if (p->node && p->node < w->limit) {
		if (!w->is_node[p->node])
			w->m->unknown_node_pods++;
		else if (!finished)
			w->node_pods[p->node]++;
	}
	struct bad_pod b = {.key = key, .p = p};
	b.reason = (uint8_t)ca_metrics_pod_unhealthy(
	        p, w->now, w->m->cfg->metrics.pending_threshold_ms, &b.since);
	if (b.reason != CA_UNHEALTHY_NONE) {
		w->unhealthy++;
		heap_offer(w, &b);
	}
	return true;
}

static int cmp_keys(const void *a, const void *b, const char *const *keys)
{
	return strcmp(keys[*(const uint32_t *)a], keys[*(const uint32_t *)b]);
}

static const char *const *sort_keys;
static int cmp_index(const void *a, const void *b)
{
	return cmp_keys(a, b, sort_keys);
}

static int cmp_bad(const void *a, const void *b)
{
	const struct bad_pod *x = a, *y = b;
	return worse(x, y) ? -1 : worse(y, x) ? 1 : 0;
}

/* The order of n keys, sorted (loop thread only: qsort has no argument). */
static uint32_t *sorted_order(const char **keys, size_t n)
{
	uint32_t *order = malloc((n ? n : 1) * sizeof *order);
	if (!order)
		return NULL;
	for (size_t i = 0; i < n; i++)
		order[i] = (uint32_t)i;
	sort_keys = keys;
	qsort(order, n, sizeof *order, cmp_index);
	sort_keys = NULL;
	return order;
}

static void res_of_node(struct ca_msg_resources *r, int64_t cpu, int64_t mem, int64_t pods)
{
	r->cpu_millicores = cpu;
	r->memory_bytes = mem;
	r->pods = pods;
}

static double thread_cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Encoded size of each item in its list: a message holding that item
 * alone, less the same message holding none (plus a JSON comma). */
static bool item_sizes(struct ca_metrics *m, size_t *sizes, size_t *fixed)
{
	struct outgoing *o = &m->out;
	struct ca_msg_metrics_sample base = o->msg, one;
	struct ca_buf b;
	bool ok = false;
	ca_buf_init(&b, 0);
	base.part = base.parts = 999999;
	if (ca_codec_encode_metrics_sample(m->format, &base, &b) != CA_OK)
		goto out;
	*fixed = b.len + PART_SLACK;
	struct ca_msg_metrics_sample empty = base;
	empty.summary = (struct ca_msg_cluster_summary){0};
	empty.usage_unavailable_reason = NULL;
	ca_buf_reset(&b);
	if (ca_codec_encode_metrics_sample(m->format, &empty, &b) != CA_OK)
		goto out;
	size_t empty_len = b.len, k = 0;
	for (size_t i = 0; i < o->nnodes + o->nnss + o->nunhealthy; i++) {
		one = empty;
		if (i < o->nnodes) {
			one.nodes = &o->nodes[i];
			one.n_nodes = 1;
		} else if (i < o->nnodes + o->nnss) {
			one.namespaces = &o->nss[i - o->nnodes];
			one.n_namespaces = 1;
		} else {
			one.unhealthy_pods = &o->unhealthy[i - o->nnodes - o->nnss];
			one.n_unhealthy_pods = 1;
		}
		ca_buf_reset(&b);
		if (ca_codec_encode_metrics_sample(m->format, &one, &b) != CA_OK)
			goto out;
		sizes[k++] = b.len - empty_len + 1;
	}
	ok = true;
out:
	ca_buf_fini(&b);
	return ok;
}

static bool synced(const struct ca_metrics *m)
{
	for (int k = 0; k < KIND_COUNT; k++)
		if (!ca_store_synced(m->store[k]))
			return false;
	return true;
}

static bool build(struct ca_metrics *m, struct walk *w)
{
	struct outgoing *o = &m->out;
	const struct ca_config *cfg = m->cfg;
	size_t nnodes = ca_store_count(m->store[KIND_NODES]);
	size_t nns = ca_store_count(m->store[KIND_NAMESPACES]);
	size_t most = nnodes > nns ? nnodes : nns;
	w->limit = ca_intern_id_limit(m->fold.names);
	w->acc = calloc(w->limit, sizeof *w->acc);
	w->node_pods = calloc(w->limit, sizeof *w->node_pods);
	w->is_node = calloc(w->limit, 1);
	w->is_ns = calloc(w->limit, 1);
	w->recs = malloc((most ? most : 1) * sizeof *w->recs);
	w->keys = malloc((most ? most : 1) * sizeof *w->keys);
	w->cap_heap = (size_t)cfg->metrics.max_unhealthy_pods;
	w->heap = malloc((w->cap_heap ? w->cap_heap : 1) * sizeof *w->heap);
	if (!w->acc || !w->node_pods || !w->is_node || !w->is_ns || !w->recs || !w->keys ||
	    !w->heap)
		return false;
	w->sum = &o->msg.summary;

	/* Nodes: the summary's node figures, and their records in name order. */
	w->n = 0;
	ca_store_foreach(m->store[KIND_NODES], walk_node, w);
	uint32_t *order = sorted_order(w->keys, w->n);
	size_t nconds = 0;
	for (size_t i = 0; i < w->n; i++)
		nconds += ((const struct ca_node_rec *)w->recs[i])->nconds;
	o->nodes = calloc(w->n ? w->n : 1, sizeof *o->nodes);
	o->conds = calloc(nconds ? nconds : 1, sizeof *o->conds);
	o->held_names = malloc((w->n + nns + 2 * w->cap_heap + 1) * sizeof *o->held_names);
	o->held_words = malloc((3 * w->n + 3 * nconds + 1) * sizeof *o->held_words);
	if (!order || !o->nodes || !o->conds || !o->held_names || !o->held_words) {
		free(order);
		return false;
	}
	/* Usage known for a node when the last completed pass read it. */
	bool usage = m->usage_available;
	o->msg.summary.usage_known = usage;
	uint64_t nodes_unknown = 0;
	size_t c = 0;
	for (size_t i = 0; i < w->n; i++) {
		const struct ca_node_rec *n = w->recs[order[i]];
		struct ca_msg_node_sample *s = &o->nodes[i];
		s->name = hold_name(m, n->name);
		s->ready = n->ready;
		s->unschedulable = n->unschedulable;
		s->conditions = &o->conds[c];
		s->n_conditions = n->nconds;
		for (uint8_t k = 0; k < n->nconds; k++, c++) {
			o->conds[c].type = hold_word(m, n->conds[k].type);
			o->conds[c].status = hold_word(m, n->conds[k].status);
			o->conds[c].reason = hold_word(m, n->conds[k].reason);
			o->conds[c].last_transition_time = n->conds[k].last_transition_ms;
		}
		res_of_node(&s->capacity, n->cap_cpu_m, n->cap_mem, n->cap_pods);
		res_of_node(&s->allocatable, n->alloc_cpu_m, n->alloc_mem, n->alloc_pods);
		s->usage_known = usage && n->usage_pass && n->usage_pass == m->usage_pass_done;
		if (usage && !s->usage_known)
			nodes_unknown++;
		if (s->usage_known) {
			res_of_node(&s->usage, n->usage_cpu_m, n->usage_mem, 0);
			o->msg.summary.usage.cpu_millicores =
			        add64(o->msg.summary.usage.cpu_millicores, n->usage_cpu_m);
			o->msg.summary.usage.memory_bytes =
			        add64(o->msg.summary.usage.memory_bytes, n->usage_mem);
		}
		s->zone = hold_word(m, n->zone);
		s->instance_type = hold_word(m, n->instance_type);
		s->kubelet_version = hold_word(m, n->kubelet_version);
	}
	o->nnodes = w->n;
	m->nodes_usage_unknown = nodes_unknown;
	const void **node_recs = w->recs;
	/* Pods count against nodes by id, after the nodes' ids are marked. */
	w->recs = malloc((most ? most : 1) * sizeof *w->recs);
	if (!w->recs) {
		w->recs = node_recs;
		free(order);
		return false;
	}

	w->n = 0;
	ca_store_foreach(m->store[KIND_NAMESPACES], walk_namespace, w);
	m->unknown_node_pods = m->unknown_ns_pods = 0;
	ca_store_foreach(m->store[KIND_PODS], walk_pod, w);
	for (size_t i = 0; i < o->nnodes; i++)
		o->nodes[i].pods =
		        w->node_pods[((const struct ca_node_rec *)node_recs[order[i]])->name];
	free(node_recs);
	free(order);
	o->msg.summary.namespaces = (int64_t)w->n;
	o->msg.summary.unhealthy_pods = w->unhealthy;

	/* Namespaces, in name order. */
	m->ns_usage_unknown = 0;
	order = sorted_order(w->keys, w->n);
	o->nss = calloc(w->n ? w->n : 1, sizeof *o->nss);
	if (!order || !o->nss) {
		free(order);
		return false;
	}
	for (size_t i = 0; i < w->n; i++) {
		const struct ca_ns_rec *n = w->recs[order[i]];
		struct ca_msg_namespace_sample *s = &o->nss[i];
		const struct ns_acc *a = n->name < w->limit ? &w->acc[n->name] : NULL;
		s->name = hold_name(m, n->name);
		s->phase = n->terminating ? "Terminating" : "Active";
		if (a) {
			s->pods = a->pods;
			s->restarts = a->restarts;
			s->requests.cpu_millicores = a->req_cpu_m;
			s->requests.memory_bytes = a->req_mem;
			s->limits.cpu_millicores = a->lim_cpu_m;
			s->limits.memory_bytes = a->lim_mem;
		}
		/* Read namespace by namespace, a namespace without a sum was not
		 * listed whole (too big, or new since): unknown, not zero. */
		bool summed = n->name < m->nns_usage && m->ns_usage[n->name].cpu_m >= 0;
		s->usage_known = usage && (summed || !m->usage_per_ns);
		if (usage && !s->usage_known)
			m->ns_usage_unknown++;
		if (s->usage_known && summed) {
			s->usage.cpu_millicores = m->ns_usage[n->name].cpu_m;
			s->usage.memory_bytes = m->ns_usage[n->name].mem;
		}
	}
	o->nnss = w->n;
	free(order);

	/* Unhealthy pods, worst first; their names copied (the keys are the
	 * store's). */
	qsort(w->heap, w->nheap, sizeof *w->heap, cmp_bad);
	size_t names_len = 0;
	for (size_t i = 0; i < w->nheap; i++)
		names_len += strlen(w->heap[i].key) + 1;
	o->unhealthy = calloc(w->nheap ? w->nheap : 1, sizeof *o->unhealthy);
	o->pod_names = malloc(names_len ? names_len : 1);
	if (!o->unhealthy || !o->pod_names)
		return false;
	char *at = o->pod_names;
	for (size_t i = 0; i < w->nheap; i++) {
		const struct bad_pod *b = &w->heap[i];
		struct ca_msg_unhealthy_pod *u = &o->unhealthy[i];
		size_t len = strlen(b->key);
		memcpy(at, b->key, len + 1);
		char *slash = strchr(at, '/');
		if (slash) {
			*slash = '\0';
			u->name = slash + 1;
		} else {
			u->name = at;
		}
		u->namespace_ = hold_name(m, b->p->ns);
		u->node = hold_name(m, b->p->node);
		u->phase = ca_metrics_phase_name((enum ca_pod_phase)b->p->phase);
		u->reason = ca_metrics_unhealthy_name((enum ca_unhealthy)b->reason);
		u->restarts = b->p->restarts;
		u->since = b->since;
		at += len + 1;
	}
	o->nunhealthy = w->nheap;
	o->msg.unhealthy_pods_omitted = w->unhealthy - (int64_t)w->nheap;
	return true;
}

static void free_walk(struct walk *w)
{
	free(w->acc);
	free(w->node_pods);
	free(w->is_node);
	free(w->is_ns);
	free(w->recs);
	free(w->keys);
	free(w->heap);
}

bool ca_metrics_sample_now(struct ca_metrics *m)
{
	if (!synced(m))
		return false;
	double t0 = thread_cpu_s();
	if (m->out.active) {
		/* NATS has not taken the last one yet: the fresher sample wins. */
		m->samples_dropped++;
		ca_log(CA_LOG_WARN, "metrics",
		       "the previous sample was not fully sent: replaced by a new one", "sample_id",
		       m->out.sample_id, NULL);
	}
	release_outgoing(m);
	struct outgoing *o = &m->out;
	struct walk w = {.m = m, .now = ca_now_unix_ms()};
	o->active = true;
	o->msg.timestamp = w.now;
	snprintf(o->sample_id, sizeof o->sample_id, "%s-%lld", m->agent_id, (long long)w.now);
	o->msg.sample_id = o->sample_id;
	o->msg.cluster_id = m->cluster_id;
	o->msg.agent_id = m->agent_id;
	o->msg.usage_available = m->usage_available;
	if (!m->usage_available) {
		ca_strlcpy(o->usage_reason, m->usage_reason[0] ? m->usage_reason : "not read yet",
		           sizeof o->usage_reason);
		o->msg.usage_unavailable_reason = o->usage_reason;
	} else {
		o->msg.usage_observed_at = m->usage_observed_ms;
	}
	bool ok = build(m, &w);
	free_walk(&w);
	size_t n = o->nnodes + o->nnss + o->nunhealthy, fixed = 0;
	size_t *sizes = ok ? malloc((n ? n : 1) * sizeof *sizes) : NULL;
	o->starts = ok ? malloc((n + 2) * sizeof *o->starts) : NULL;
	/* Parts of at most metrics.max_payload_bytes (1 MiB when 0, what the
	 * memory budget counts), and never over what the bus can take (the
	 * server's max_payload; in JetStream mode also one message's share
	 * of nats.jetstream.max_pending_bytes). */
	size_t server = m->sink.max_payload(m->sink_arg);
	o->max_payload = payload_cap(m->cfg);
	if (server && server < o->max_payload)
		o->max_payload = server;
	if (ok && (!sizes || !o->starts || !item_sizes(m, sizes, &fixed)))
		ok = false;
	if (ok && !(o->parts = ca_metrics_plan_parts(fixed, sizes, n, o->max_payload, o->starts))) {
		ca_log(CA_LOG_ERROR, "metrics",
		       "a node, namespace or pod entry does not fit in one message "
		       "under the payload limit: sample dropped (raise metrics.max_payload_bytes)",
		       NULL);
		ok = false;
	}
	free(sizes);
	m->samples++;
	if (!ok) {
		m->samples_dropped++;
		release_outgoing(m);
	}
	if (m->unknown_node_pods != m->logged_unknown_node ||
	    m->unknown_ns_pods != m->logged_unknown_ns) {
		/* Counted in the totals and their namespace, left out of any
		 * node's (or namespace's) figures; said once per change. */
		char nodes[24], nss[24];
		snprintf(nodes, sizeof nodes, "%" PRIu64, m->unknown_node_pods);
		snprintf(nss, sizeof nss, "%" PRIu64, m->unknown_ns_pods);
		ca_log(m->unknown_node_pods || m->unknown_ns_pods ? CA_LOG_WARN : CA_LOG_INFO,
		       "metrics",
		       "pods bound to nodes, or in namespaces, that the agent does not know",
		       "pods_unknown_node", nodes, "pods_unknown_namespace", nss, NULL);
		m->logged_unknown_node = m->unknown_node_pods;
		m->logged_unknown_ns = m->unknown_ns_pods;
	}
	m->last_duration_s = thread_cpu_s() - t0;
	ca_histogram_observe(&m->duration, m->last_duration_s);
	if (ok)
		send_parts(m);
	return ok;
}

/* ------------------------------------------------------------------------
 * Usage: metrics.k8s.io */

static void drop_acc(struct ca_metrics *m, struct ns_usage **arr, uint32_t *n)
{
	for (uint32_t id = 1; id < *n; id++)
		if ((*arr)[id].cpu_m >= 0)
			ca_intern_unref(m->fold.names, id);
	free(*arr);
	*arr = NULL;
	*n = 0;
}

/* The namespace's sum in the pass in progress, zero and holding a
 * reference on its name the first time; NULL when out of memory. */
static struct ns_usage *acc_slot(struct ca_metrics *m, uint32_t id)
{
	if (id >= m->nacc) {
		uint32_t n = ca_intern_id_limit(m->fold.names);
		struct ns_usage *a = realloc(m->acc, (size_t)n * sizeof *a);
		if (!a)
			return NULL;
		for (uint32_t i = m->nacc; i < n; i++)
			a[i].cpu_m = -1; /* untouched: no reference held */
		m->acc = a;
		m->nacc = n;
	}
	struct ns_usage *u = &m->acc[id];
	if (u->cpu_m < 0) {
		ca_intern_ref_id(m->fold.names, id);
		u->cpu_m = u->mem = 0;
	}
	return u;
}

/* Add a PodMetrics item's containers to u. */
static void add_pod_usage(struct ca_metrics *m, const struct ca_kobj *obj, struct ns_usage *u)
{
	const struct ca_kobj *ctrs = ca_kobj_get(obj, "containers");
	for (size_t i = 0, n = ca_kobj_array_len(ctrs); i < n; i++) {
		int64_t cpu, mem;
		if (ca_metrics_fold_usage(&m->fold, ca_kobj_get(ca_kobj_array_at(ctrs, i), "usage"),
		                          "podmetrics", &cpu, &mem)) {
			u->cpu_m = add64(u->cpu_m, cpu);
			u->mem = add64(u->mem, mem);
		}
	}
}

/* Stop listing zones and let go of their names (from inside the zone
 * lister's callback too). */
static void zones_drop(struct ca_metrics *m)
{
	ca_reflector_free(m->zone_lister);
	m->zone_lister = NULL;
	for (size_t i = 0; i < m->nzones; i++)
		ca_intern_unref(m->fold.words, m->zones[i]);
	free(m->zones);
	m->zones = NULL;
	m->nzones = m->zone_next = 0;
}

/* Stop listing a namespace (from inside its lister's callback too: the
 * reflector frees itself on the way out). */
static void ns_lister_stop(struct ca_metrics *m)
{
	ca_reflector_free(m->ns_lister);
	m->ns_lister = NULL;
	ca_intern_unref(m->fold.names, m->ns_id);
	m->ns_id = 0;
}

static void usage_failed(struct ca_metrics *m, long status, const char *message)
{
	char was[sizeof m->usage_reason];
	ca_strlcpy(was, m->usage_reason, sizeof was);
	if (status == 404)
		ca_strlcpy(m->usage_reason,
		           "metrics.k8s.io is not served (404): no metrics-server?",
		           sizeof m->usage_reason);
	else if (status == 503)
		ca_set_err(m->usage_reason, sizeof m->usage_reason,
		           "metrics.k8s.io is served but unavailable (503): %.160s", message);
	else if (status == 403)
		ca_set_err(m->usage_reason, sizeof m->usage_reason,
		           "the agent may not list metrics.k8s.io (403): %.160s", message);
	else if (status)
		ca_set_err(m->usage_reason, sizeof m->usage_reason,
		           "metrics.k8s.io answered %ld: %.160s", status, message);
	else
		ca_set_err(m->usage_reason, sizeof m->usage_reason, "metrics.k8s.io: %.200s",
		           message);
	if (m->usage_available || strcmp(was, m->usage_reason) != 0)
		ca_log(CA_LOG_INFO, "metrics", "usage figures are not available", "reason",
		       m->usage_reason, NULL);
	m->usage_available = false;
	m->pass_running = false;
	ns_lister_stop(m);
	zones_drop(m);
	drop_acc(m, &m->acc, &m->nacc);
}

static void pass_maybe_done(struct ca_metrics *m)
{
	if (!m->pass_running || !m->pass_nodes_done || !m->pass_pods_done)
		return;
	m->pass_running = false;
	m->usage_lists++;
	if (!m->usage_available)
		ca_log(CA_LOG_INFO, "metrics", "usage figures from metrics.k8s.io are available",
		       NULL);
	m->usage_available = true;
	m->usage_reason[0] = '\0';
	m->usage_pass_done = m->usage_pass;
	m->usage_observed_ms = m->pass_started_ms;
	m->last_pass_ms = ca_now_monotonic_ms() - m->pass_started_mono_ms;
	m->usage_per_ns = m->pass_per_ns;
	m->last_too_big = m->pass_too_big;
	m->last_zones_too_big = m->pass_per_zone ? m->pass_zones_too_big : 0;
	drop_acc(m, &m->ns_usage, &m->nns_usage);
	m->ns_usage = m->acc;
	m->nns_usage = m->nacc;
	m->acc = NULL;
	m->nacc = 0;
}

static void usage_node(void *arg, enum ca_watch_type type, const struct ca_kobj *obj,
                       bool from_list)
{
	struct ca_metrics *m = arg;
	(void)type;
	(void)from_list;
	const char *name = ca_kobj_str(obj, "metadata.name");
	struct ca_node_rec *n = name ? ca_store_get(m->store[KIND_NODES], name) : NULL;
	int64_t cpu, mem;
	if (!n ||
	    !ca_metrics_fold_usage(&m->fold, ca_kobj_get(obj, "usage"), "nodemetrics", &cpu, &mem))
		return;
	n->usage_cpu_m = cpu;
	n->usage_mem = mem;
	n->usage_pass = m->usage_pass;
}

static void usage_pod(void *arg, enum ca_watch_type type, const struct ca_kobj *obj, bool from_list)
{
	struct ca_metrics *m = arg;
	(void)type;
	(void)from_list;
	const char *ns = ca_kobj_str(obj, "metadata.namespace");
	uint32_t id = ns ? ca_intern_find(m->fold.names, ns, strlen(ns)) : 0;
	struct ns_usage *u = id ? acc_slot(m, id) : NULL;
	if (u) /* else a namespace the agent does not hold: nothing to add it to */
		add_pod_usage(m, obj, u);
}

static void usage_nodes_done(void *arg, const char *rv)
{
	struct ca_metrics *m = arg;
	(void)rv;
	if (m->per_zone)
		ca_log(CA_LOG_INFO, "metrics",
		       "the cluster-wide NodeMetrics list fits again: reading it whole", NULL);
	m->per_zone = false;
	m->pass_nodes_done = true;
	pass_maybe_done(m);
}

static void usage_pods_done(void *arg, const char *rv)
{
	struct ca_metrics *m = arg;
	(void)rv;
	if (m->per_ns)
		ca_log(CA_LOG_INFO, "metrics",
		       "the cluster-wide PodMetrics list fits again: reading it whole", NULL);
	m->per_ns = false;
	m->pass_pods_done = true;
	pass_maybe_done(m);
}

/* ---- NodeMetrics zone by zone ---- */

static void zone_list_next(struct ca_metrics *m);

static void zone_listed(void *arg, const char *rv)
{
	(void)rv;
	zone_list_next(arg);
}

static void zone_list_failed(void *arg, long status, const char *message)
{
	struct ca_metrics *m = arg;
	struct ca_reflector_stats st;
	ca_reflector_get_stats(m->zone_lister, &st);
	if (!st.list_too_big) {
		usage_failed(m, status, message);
		return;
	}
	/* Its nodes are left without usage (counted in nodes_unknown); the
	 * other zones go on. */
	int64_t now = ca_now_monotonic_ms();
	uint32_t zone = m->zones[m->zone_next - 1];
	m->pass_zones_too_big++;
	m->zones_too_big_total++;
	if (!m->zone_too_big_logged_ms || now - m->zone_too_big_logged_ms >= TOO_BIG_LOG_MS) {
		char total[24];
		snprintf(total, sizeof total, "%" PRIu64, m->zones_too_big_total);
		ca_log(CA_LOG_WARN, "metrics",
		       "a zone's NodeMetrics list does not fit: its nodes' usage is left out of "
		       "the samples",
		       "zone", zone ? ca_intern_str(m->fold.words, zone) : "(none)", "raise",
		       "kubernetes.max_list_page_bytes", "total", total, NULL);
		m->zone_too_big_logged_ms = now;
	}
	zone_list_next(m);
}

/* A zone is a label value (the API server checks it): at most 63 of
 * [A-Za-z0-9._-]. One that is not cannot be selected on. */
static bool valid_label_value(const char *v)
{
	size_t n = strlen(v);
	if (n == 0 || n > 63)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
		      (v[i] >= '0' && v[i] <= '9') || v[i] == '.' || v[i] == '_' || v[i] == '-'))
			return false;
	return true;
}

static enum ca_err zone_list_start(struct ca_metrics *m, uint32_t zone)
{
	static const struct ca_reflector_callbacks cbs = {
	        .on_object = usage_node,
	        .on_synced = zone_listed,
	        .on_list_failed = zone_list_failed,
	};
	char selector[128];
	struct ca_reflector_stats cluster;
	/* As for namespaces: the limit the cluster-wide lister came down to. */
	ca_reflector_get_stats(m->usage_nodes, &cluster);
	if (zone)
		snprintf(selector, sizeof selector, ZONE_LABEL "=%s",
		         ca_intern_str(m->fold.words, zone));
	else
		ca_strlcpy(selector, "!" ZONE_LABEL, sizeof selector);
	struct ca_reflector_options ro = {
	        .name = "nodemetrics-zone",
	        .path = "/apis/metrics.k8s.io/v1beta1/nodes",
	        .label_selector = selector,
	        .page_size = cluster.page_limit,
	        .max_object_bytes = (size_t)m->cfg->metrics.max_object_bytes,
	        .max_list_bytes = (size_t)m->cfg->kubernetes.max_list_page_bytes,
	        .list_only = true,
	        .aggregated_api = true,
	        .quiet = true,
	};
	enum ca_err rc = ca_reflector_new(&m->zone_lister, m->kube, &ro, &cbs, m);
	if (rc == CA_OK)
		rc = ca_reflector_start(m->zone_lister);
	if (rc != CA_OK) {
		ca_reflector_free(m->zone_lister);
		m->zone_lister = NULL;
	}
	return rc;
}

/* List the next zone; the nodes' half of the pass is done after the last.
 * A node in a zone that appeared behind the walk waits for the next pass. */
static void zone_list_next(struct ca_metrics *m)
{
	ca_reflector_free(m->zone_lister);
	m->zone_lister = NULL;
	while (m->zone_next < m->nzones) {
		uint32_t zone = m->zones[m->zone_next++];
		if (zone && !valid_label_value(ca_intern_str(m->fold.words, zone))) {
			m->pass_zones_too_big++; /* its nodes stay unknown */
			continue;
		}
		enum ca_err rc = zone_list_start(m, zone);
		if (rc != CA_OK) {
			char why[96];
			snprintf(why, sizeof why, "cannot list a zone's NodeMetrics: %s",
			         ca_strerror(rc));
			usage_failed(m, 0, why);
		}
		return;
	}
	zones_drop(m);
	m->pass_nodes_done = true;
	pass_maybe_done(m);
}

static bool collect_zone(void *arg, const char *key, void *value)
{
	struct ca_metrics *m = arg;
	const struct ca_node_rec *n = value;
	(void)key;
	if (n->zone)
		m->zones[m->nzones++] = n->zone;
	return true;
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* This pass reads NodeMetrics zone by zone: the zones the node store
 * holds now, each once, then the nodes without the label. */
static void zone_walk(struct ca_metrics *m)
{
	zones_drop(m);
	m->pass_per_zone = true;
	m->pass_zones_too_big = 0;
	size_t n = ca_store_count(m->store[KIND_NODES]);
	m->zones = malloc((n + 1) * sizeof *m->zones);
	if (!m->zones) {
		usage_failed(m, 0, "cannot list NodeMetrics zone by zone: out of memory");
		return;
	}
	ca_store_foreach(m->store[KIND_NODES], collect_zone, m);
	qsort(m->zones, m->nzones, sizeof *m->zones, cmp_u32);
	size_t k = 0;
	for (size_t i = 0; i < m->nzones; i++)
		if (!k || m->zones[i] != m->zones[k - 1])
			m->zones[k++] = m->zones[i];
	m->nzones = k;
	for (size_t i = 0; i < k; i++)
		ca_intern_ref_id(m->fold.words, m->zones[i]);
	m->zones[m->nzones++] = 0; /* the nodes without a zone label */
	zone_list_next(m);
}

static void usage_nodes_failed(void *arg, long status, const char *message)
{
	struct ca_metrics *m = arg;
	struct ca_reflector_stats st;
	ca_reflector_get_stats(m->usage_nodes, &st);
	if (!st.list_too_big) {
		usage_failed(m, status, message);
		return;
	}
	if (!m->per_zone)
		ca_log(CA_LOG_WARN, "metrics",
		       "the NodeMetrics list is over kubernetes.max_list_page_bytes and the server "
		       "ignores limit (metrics-server does): reading it zone by zone",
		       NULL);
	m->per_zone = true;
	m->per_zone_since_ms = ca_now_monotonic_ms();
	if (m->pass_running)
		zone_walk(m);
}

/* ---- PodMetrics namespace by namespace ---- */

static void ns_list_next(struct ca_metrics *m);

static void ns_list_begin(void *arg)
{
	struct ca_metrics *m = arg;
	m->ns_sum = (struct ns_usage){0}; /* a LIST that starts over sums again */
}

static void ns_pod(void *arg, enum ca_watch_type type, const struct ca_kobj *obj, bool from_list)
{
	struct ca_metrics *m = arg;
	(void)type;
	(void)from_list;
	const char *ns = ca_kobj_str(obj, "metadata.namespace");
	if (ns && strcmp(ns, ca_intern_str(m->fold.names, m->ns_id)) == 0)
		add_pod_usage(m, obj, &m->ns_sum);
}

static void ns_listed(void *arg, const char *rv)
{
	struct ca_metrics *m = arg;
	(void)rv;
	struct ns_usage *u = acc_slot(m, m->ns_id);
	if (u) /* else out of memory: the namespace stays unknown */
		*u = m->ns_sum;
	ns_list_next(m);
}

static void ns_list_failed(void *arg, long status, const char *message)
{
	struct ca_metrics *m = arg;
	struct ca_reflector_stats st;
	ca_reflector_get_stats(m->ns_lister, &st);
	if (st.list_too_big) {
		/* Its usage is left out of the samples (unknown), never a part
		 * of it; the other namespaces go on. */
		int64_t now = ca_now_monotonic_ms();
		m->pass_too_big++;
		m->too_big_total++;
		if (!m->too_big_logged_ms || now - m->too_big_logged_ms >= TOO_BIG_LOG_MS) {
			char total[24];
			snprintf(total, sizeof total, "%" PRIu64, m->too_big_total);
			ca_log(CA_LOG_WARN, "metrics",
			       "a namespace's PodMetrics list does not fit: its usage is left out "
			       "of the samples",
			       "namespace", ca_intern_str(m->fold.names, m->ns_id), "raise",
			       "kubernetes.max_list_page_bytes", "total", total, NULL);
			m->too_big_logged_ms = now;
		}
	} else if (status != 404) {
		usage_failed(m, status, message);
		return;
	}
	/* 404: the namespace went away; nothing to add. */
	ns_list_next(m);
}

static enum ca_err ns_list_start(struct ca_metrics *m, uint32_t id, const char *name)
{
	static const struct ca_reflector_callbacks cbs = {
	        .on_list_begin = ns_list_begin,
	        .on_object = ns_pod,
	        .on_synced = ns_listed,
	        .on_list_failed = ns_list_failed,
	};
	char path[128];
	struct ca_reflector_stats cluster;
	/* The cluster-wide lister's limit, halved down to 1 by then: the
	 * server ignores it, and each namespace that does not fit then costs
	 * one request, not one per halving. */
	ca_reflector_get_stats(m->usage_pods, &cluster);
	snprintf(path, sizeof path, "/apis/metrics.k8s.io/v1beta1/namespaces/%s/pods", name);
	struct ca_reflector_options ro = {
	        .name = "podmetrics-namespace",
	        .path = path,
	        .page_size = cluster.page_limit,
	        .max_object_bytes = (size_t)m->cfg->metrics.max_object_bytes,
	        .max_list_bytes = (size_t)m->cfg->kubernetes.max_list_page_bytes,
	        .list_only = true,
	        .aggregated_api = true,
	        .quiet = true,
	};
	enum ca_err rc = ca_reflector_new(&m->ns_lister, m->kube, &ro, &cbs, m);
	if (rc == CA_OK)
		rc = ca_reflector_start(m->ns_lister);
	if (rc != CA_OK) {
		ca_reflector_free(m->ns_lister);
		m->ns_lister = NULL;
		return rc;
	}
	ca_intern_ref_id(m->fold.names, id);
	m->ns_id = id;
	m->ns_sum = (struct ns_usage){0};
	return CA_OK;
}

/* List the next namespace the store holds, in id order; the pods' half of
 * the pass is done after the last. A namespace created behind the walk
 * waits for the next pass (unknown until then). */
static void ns_list_next(struct ca_metrics *m)
{
	ns_lister_stop(m);
	uint32_t limit = ca_intern_id_limit(m->fold.names);
	while (m->ns_next < limit) {
		uint32_t id = m->ns_next++;
		const char *name = ca_intern_str(m->fold.names, id);
		/* Names are nodes' too; a namespace's is a DNS label (the API
		 * server checks it), so it goes into the path as it is. */
		if (!ca_store_contains(m->store[KIND_NAMESPACES], name) ||
		    !ca_config_valid_namespace(name))
			continue;
		enum ca_err rc = ns_list_start(m, id, name);
		if (rc != CA_OK) {
			char why[96];
			snprintf(why, sizeof why, "cannot list a namespace's PodMetrics: %s",
			         ca_strerror(rc));
			usage_failed(m, 0, why);
		}
		return;
	}
	m->pass_pods_done = true;
	pass_maybe_done(m);
}

/* This pass reads PodMetrics namespace by namespace, from the first. */
static void ns_walk(struct ca_metrics *m)
{
	drop_acc(m, &m->acc, &m->nacc); /* pages of a cluster-wide try that failed */
	m->pass_per_ns = true;
	m->pass_too_big = 0;
	m->ns_next = 1;
	ns_list_next(m);
}

static void usage_pods_failed(void *arg, long status, const char *message)
{
	struct ca_metrics *m = arg;
	struct ca_reflector_stats st;
	ca_reflector_get_stats(m->usage_pods, &st);
	if (!st.list_too_big) {
		usage_failed(m, status, message);
		return;
	}
	if (!m->per_ns)
		ca_log(CA_LOG_WARN, "metrics",
		       "the PodMetrics list is over kubernetes.max_list_page_bytes and the server "
		       "ignores limit (metrics-server does): reading it namespace by namespace",
		       NULL);
	m->per_ns = true;
	m->per_ns_since_ms = ca_now_monotonic_ms();
	if (m->pass_running)
		ns_walk(m);
}

static void start_usage_pass(struct ca_metrics *m)
{
	if (!m->usage_started)
		return;
	if (m->pass_running) {
		/* One pass at a time: each LIST ends (done, failed or timed
		 * out), so this one ends too; its figures come then. */
		m->passes_skipped++;
		return;
	}
	m->usage_pass++;
	if (m->usage_pass == 0)
		m->usage_pass = 1;
	m->pass_running = true;
	m->pass_nodes_done = m->pass_pods_done = m->pass_per_ns = m->pass_per_zone = false;
	m->pass_started_ms = ca_now_unix_ms();
	m->pass_started_mono_ms = ca_now_monotonic_ms();
	if (m->per_zone && m->pass_started_mono_ms - m->per_zone_since_ms < CLUSTER_RETRY_MS) {
		zone_walk(m);
		if (!m->pass_running)
			return; /* it failed */
	} else if (ca_reflector_relist(m->usage_nodes) && m->per_zone) {
		ca_log(CA_LOG_INFO, "metrics", "trying the cluster-wide NodeMetrics list again",
		       "every", "1h", NULL);
	}
	if (m->per_ns && m->pass_started_mono_ms - m->per_ns_since_ms < CLUSTER_RETRY_MS) {
		ns_walk(m);
	} else if (ca_reflector_relist(m->usage_pods) && m->per_ns) {
		ca_log(CA_LOG_INFO, "metrics", "trying the cluster-wide PodMetrics list again",
		       "every", "1h", NULL);
	}
}

/* The first pass, which also finds out whether metrics.k8s.io is served,
 * waits for the stores to sync: usage read before its node or namespace
 * is known would be left out, a sum short. */
static void on_usage_wait(void *arg)
{
	struct ca_metrics *m = arg;
	if (!synced(m)) {
		ca_loop_timer_start(m->usage_wait, RETRY_MS, 0);
		return;
	}
	m->usage_started = true;
	m->usage_pass = 1;
	m->pass_running = true;
	m->pass_started_ms = ca_now_unix_ms();
	m->pass_started_mono_ms = ca_now_monotonic_ms();
	if (ca_reflector_start(m->usage_nodes) != CA_OK ||
	    ca_reflector_start(m->usage_pods) != CA_OK)
		usage_failed(m, 0, "cannot start listing"); /* started twice: a bug */
}

/* ------------------------------------------------------------------------
 * Lifecycle */

static void on_retry(void *arg)
{
	send_parts(arg);
}

static void on_timer(void *arg)
{
	struct ca_metrics *m = arg;
	if (!ca_metrics_sample_now(m))
		ca_log(CA_LOG_DEBUG, "metrics",
		       "no sample: nodes, pods or namespaces not listed yet", NULL);
	start_usage_pass(m);
}

static enum ca_err new_reflector(struct ca_metrics *m, int kind, const char *path, int64_t page,
                                 char *err, size_t errlen)
{
	static const struct ca_store_ops ops[KIND_COUNT] = {
	        [KIND_PODS] = {.fold = fold_pod, .free_value = free_pod},
	        [KIND_NODES] = {.fold = fold_node,
	                        .free_value = free_node,
	                        .on_update = node_updated},
	        [KIND_NAMESPACES] = {.fold = fold_namespace, .free_value = free_namespace},
	};
	const struct ca_config *cfg = m->cfg;
	int64_t max = kind == KIND_PODS    ? cfg->metrics.max_pods
	              : kind == KIND_NODES ? cfg->metrics.max_nodes
	                                   : cfg->metrics.max_namespaces;
	uint64_t each = kind == KIND_PODS    ? pod_bytes()
	                : kind == KIND_NODES ? node_bytes()
	                                     : namespace_bytes();
	struct ca_store_options so = {
	        .name = kind_names[kind],
	        .key = CA_STORE_KEY_NAME,
	        .max_entries = (size_t)max,
	        .max_bytes = (size_t)((uint64_t)max * each),
	};
	enum ca_err rc = ca_store_new(&m->store[kind], &so, &ops[kind], m);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "cannot create the %s store: %s", kind_names[kind],
		           ca_strerror(rc));
		return rc;
	}
	struct ca_reflector_callbacks cbs;
	ca_store_reflector_callbacks(m->store[kind], &cbs);
	/* The real watch cache sends bookmarks only once the type changed:
	 * on a quiet cluster (namespaces above all) a healthy watch's only
	 * progress is its renewal, kept within half of stall_timeout. */
	int64_t watch_min, watch_max;
	ca_config_watch_timeouts(cfg, &watch_min, &watch_max);
	struct ca_reflector_options ro = {
	        .name = kind_names[kind],
	        .path = path,
	        .page_size = page,
	        .watch_timeout_min_ms = watch_min,
	        .watch_timeout_max_ms = watch_max,
	        .backoff_initial_ms = cfg->kubernetes.backoff_initial_ms,
	        .backoff_max_ms = cfg->kubernetes.backoff_max_ms,
	        .max_object_bytes = (size_t)cfg->metrics.max_object_bytes,
	        .max_list_bytes = (size_t)cfg->kubernetes.max_list_page_bytes,
	};
	rc = ca_reflector_new(&m->refl[kind], m->kube, &ro, &cbs, m->store[kind]);
	if (rc != CA_OK)
		ca_set_err(err, errlen, "cannot create the %s reflector: %s", kind_names[kind],
		           ca_strerror(rc));
	return rc;
}

static enum ca_err new_usage_lister(
        struct ca_metrics *m, struct ca_reflector **out, const char *name, const char *path,
        void (*on_object)(void *, enum ca_watch_type, const struct ca_kobj *, bool),
        void (*on_synced)(void *, const char *), void (*on_list_failed)(void *, long, const char *))
{
	struct ca_reflector_callbacks cbs = {
	        .on_object = on_object,
	        .on_synced = on_synced,
	        .on_list_failed = on_list_failed,
	};
	struct ca_reflector_options ro = {
	        .name = name,
	        .path = path,
	        .page_size = PAGE_PODS,
	        .max_object_bytes = (size_t)m->cfg->metrics.max_object_bytes,
	        .max_list_bytes = (size_t)m->cfg->kubernetes.max_list_page_bytes,
	        .list_only = true,
	        .aggregated_api = true,
	};
	return ca_reflector_new(out, m->kube, &ro, &cbs, m);
}

enum ca_err ca_metrics_new(struct ca_metrics **out, struct ca_loop *loop, struct ca_kube *kube,
                           const struct ca_config *cfg, enum ca_codec_format format,
                           const char *cluster_id, const char *agent_id,
                           const struct ca_metrics_sink *sink, void *sink_arg, char *err,
                           size_t errlen)
{
	enum ca_err rc = CA_ENOMEM;
	*out = NULL;
	if (!loop || !kube || !cfg || !sink || !sink->publish || !sink->max_payload) {
		ca_set_err(err, errlen, "%s", "metrics: missing argument");
		return CA_EINVAL;
	}
	struct ca_metrics *m = calloc(1, sizeof *m);
	if (!m) {
		ca_set_err(err, errlen, "%s", "metrics: out of memory");
		return CA_ENOMEM;
	}
	m->loop = loop;
	m->kube = kube;
	m->cfg = cfg;
	m->format = format;
	m->sink = *sink;
	m->sink_arg = sink_arg;
	ca_strlcpy(m->cluster_id, cluster_id ? cluster_id : "", sizeof m->cluster_id);
	ca_strlcpy(m->agent_id, agent_id ? agent_id : "", sizeof m->agent_id);
	ca_histogram_init(&m->duration, duration_bounds,
	                  sizeof duration_bounds / sizeof duration_bounds[0]);
	ca_strlcpy(m->usage_reason, cfg->metrics.usage ? "not read yet" : "metrics.usage is off",
	           sizeof m->usage_reason);
	uint64_t names = (uint64_t)(cfg->metrics.max_nodes + cfg->metrics.max_namespaces) *
	                 ca_intern_entry_bytes(AVG_KEY) * 2;
	if (ca_intern_new(&m->fold.names, (size_t)names) != CA_OK ||
	    ca_intern_new(&m->fold.words, (size_t)1 << 20) != CA_OK) {
		ca_set_err(err, errlen, "%s", "metrics: out of memory");
		goto fail;
	}
	if ((rc = new_reflector(m, KIND_NAMESPACES, "/api/v1/namespaces", PAGE_NAMESPACES, err,
	                        errlen)) != CA_OK ||
	    (rc = new_reflector(m, KIND_NODES, "/api/v1/nodes", PAGE_NODES, err, errlen)) !=
	            CA_OK ||
	    (rc = new_reflector(m, KIND_PODS, "/api/v1/pods", PAGE_PODS, err, errlen)) != CA_OK)
		goto fail;
	if (cfg->metrics.usage &&
	    ((rc = new_usage_lister(m, &m->usage_nodes, "nodemetrics",
	                            "/apis/metrics.k8s.io/v1beta1/nodes", usage_node,
	                            usage_nodes_done, usage_nodes_failed)) != CA_OK ||
	     (rc = new_usage_lister(m, &m->usage_pods, "podmetrics",
	                            "/apis/metrics.k8s.io/v1beta1/pods", usage_pod, usage_pods_done,
	                            usage_pods_failed)) != CA_OK)) {
		ca_set_err(err, errlen, "cannot create the metrics.k8s.io listers: %s",
		           ca_strerror(rc));
		goto fail;
	}
	if ((rc = ca_loop_timer_new(loop, on_timer, m, &m->timer)) != CA_OK ||
	    (rc = ca_loop_timer_new(loop, on_retry, m, &m->retry)) != CA_OK ||
	    (rc = ca_loop_timer_new(loop, on_usage_wait, m, &m->usage_wait)) != CA_OK) {
		ca_set_err(err, errlen, "cannot create the metrics timer: %s", ca_strerror(rc));
		goto fail;
	}
	*out = m;
	return CA_OK;
fail:
	ca_metrics_free(m);
	return rc == CA_OK ? CA_ENOMEM : rc;
}

enum ca_err ca_metrics_start(struct ca_metrics *m)
{
	if (m->started)
		return CA_EINVAL;
	m->started = true;
	enum ca_err rc = CA_OK;
	for (int k = 0; k < KIND_COUNT && rc == CA_OK; k++)
		rc = ca_reflector_start(m->refl[k]);
	if (rc == CA_OK && m->usage_nodes)
		on_usage_wait(m);
	if (rc == CA_OK)
		ca_loop_timer_start(m->timer, m->cfg->metrics.interval_ms,
		                    m->cfg->metrics.interval_ms);
	return rc;
}

void ca_metrics_free(struct ca_metrics *m)
{
	if (!m)
		return;
	ca_loop_timer_free(m->timer);
	ca_loop_timer_free(m->retry);
	ca_loop_timer_free(m->usage_wait);
	ca_reflector_free(m->usage_nodes);
	ca_reflector_free(m->usage_pods);
	ns_lister_stop(m);
	zones_drop(m);
	for (int k = 0; k < KIND_COUNT; k++)
		ca_reflector_free(m->refl[k]);
	release_outgoing(m);
	drop_acc(m, &m->acc, &m->nacc);
	drop_acc(m, &m->ns_usage, &m->nns_usage);
	for (int k = 0; k < KIND_COUNT; k++)
		ca_store_free(m->store[k]);
	ca_intern_free(m->fold.names);
	ca_intern_free(m->fold.words);
	free(m);
}

/* ------------------------------------------------------------------------
 * Health and metrics */

void ca_metrics_get_stats(const struct ca_metrics *m, struct ca_metrics_stats *out)
{
	memset(out, 0, sizeof *out);
	out->samples = m->samples;
	out->parts_published = m->parts_published;
	out->samples_dropped = m->samples_dropped;
	out->usage_lists = m->usage_lists;
	out->pods = ca_store_count(m->store[KIND_PODS]);
	out->nodes = ca_store_count(m->store[KIND_NODES]);
	out->namespaces = ca_store_count(m->store[KIND_NAMESPACES]);
	out->queue_parts = m->out.active ? m->out.parts - m->out.next : 0;
	out->usage_available = m->usage_available;
	out->usage_per_namespace = m->per_ns;
	out->usage_namespaces_unknown = m->ns_usage_unknown;
	out->usage_too_big_total = m->too_big_total;
	out->usage_per_zone = m->per_zone;
	out->usage_nodes_unknown = m->nodes_usage_unknown;
	out->usage_zones_too_big_total = m->zones_too_big_total;
	out->last_duration_s = m->last_duration_s;
}

static void module_health(const void *self, struct ca_module_health *h)
{
	const struct ca_metrics *m = self;
	int64_t stall = m->cfg->kubernetes.stall_timeout_ms, now = ca_now_monotonic_ms();
	char why[256];
	for (int k = 0; k < KIND_COUNT; k++) {
		if (ca_reflector_stalled(m->refl[k], now, stall)) {
			char limit[32];
			ca_format_duration(stall, limit, sizeof limit);
			h->live = h->ready = false;
			ca_set_err(h->reason, sizeof h->reason,
			           "%s watch made no progress for %s (kubernetes.stall_timeout)",
			           kind_names[k], limit);
			return;
		}
	}
	for (int k = 0; k < KIND_COUNT; k++) {
		if (!ca_reflector_ready(m->refl[k], why, sizeof why)) {
			h->ready = false;
			ca_set_err(h->reason, sizeof h->reason, "metrics watch %s", why);
			return;
		}
	}
	for (int k = 0; k < KIND_COUNT; k++) {
		if (ca_store_over_budget(m->store[k])) {
			h->ready = false;
			ca_set_err(h->reason, sizeof h->reason,
			           "more %s than metrics.max_%s: samples are incomplete (raise it)",
			           kind_names[k], kind_names[k]);
			return;
		}
	}
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	const struct ca_metrics *m = self;
	struct ca_metrics_stats st;
	char at[CA_RFC3339_LEN] = "";
	ca_metrics_get_stats(m, &st);
	if (m->usage_observed_ms)
		ca_format_rfc3339(m->usage_observed_ms, at);
	ca_buf_printf(
	        out,
	        "{\"samples\":%" PRIu64 ",\"parts_published\":%" PRIu64
	        ",\"samples_dropped\":%" PRIu64
	        ",\"queue_parts\":%zu,\"last_sample_cpu_seconds\":%.6f,\"usage\":{\"available\":%s,"
	        "\"observed_at\":",
	        st.samples, st.parts_published, st.samples_dropped, st.queue_parts,
	        st.last_duration_s, st.usage_available ? "true" : "false");
	ca_buf_append_json_string(out, at);
	ca_buf_append_str(out, ",\"reason\":");
	ca_buf_append_json_string(out, m->usage_available ? "" : m->usage_reason);
	ca_buf_printf(out,
	              ",\"passes\":%" PRIu64 ",\"passes_skipped\":%" PRIu64
	              ",\"last_pass_ms\":%" PRId64
	              ",\"mode\":\"%s\",\"namespaces_unknown\":%" PRIu64
	              ",\"namespace_lists_too_big\":%" PRIu32
	              ",\"node_mode\":\"%s\",\"nodes_unknown\":%" PRIu64
	              ",\"zone_lists_too_big\":%" PRIu32 "},\"stores\":{",
	              st.usage_lists, m->passes_skipped, m->last_pass_ms,
	              st.usage_per_namespace ? "namespaces" : "cluster",
	              st.usage_namespaces_unknown, m->last_too_big,
	              st.usage_per_zone ? "zones" : "cluster", st.usage_nodes_unknown,
	              m->last_zones_too_big);
	for (int k = 0; k < KIND_COUNT; k++) {
		ca_buf_printf(out, "%s\"%s\":", k ? "," : "", kind_names[k]);
		ca_store_health_json(m->store[k], out);
	}
	ca_buf_append_str(out, "},\"watches\":[");
	for (int k = 0; k < KIND_COUNT; k++) {
		if (k)
			ca_buf_append_str(out, ",");
		ca_reflector_health_json(m->refl[k], out);
	}
	ca_buf_printf(out, "],\"interned\":{\"names\":%zu,\"words\":%zu,\"bytes\":%zu}}",
	              ca_intern_count(m->fold.names), ca_intern_count(m->fold.words),
	              ca_intern_bytes(m->fold.names) + ca_intern_bytes(m->fold.words));
}

static void module_metrics(const void *self, struct ca_prom *p)
{
	const struct ca_metrics *m = self;
	struct ca_metrics_stats st = {0};
	if (m)
		ca_metrics_get_stats(m, &st);
	ca_prom_single(p, "agent_metrics_samples_total", "counter", "Metrics samples taken.",
	               (double)st.samples);
	ca_prom_single(p, "agent_metrics_parts_published_total", "counter",
	               "Metrics sample parts handed to NATS.", (double)st.parts_published);
	ca_prom_single(p, "agent_metrics_samples_dropped_total", "counter",
	               "Metrics samples not fully sent (replaced by the next one, or unsendable).",
	               (double)st.samples_dropped);
	ca_prom_single(p, "agent_metrics_queue_size", "gauge",
	               "Metrics sample parts waiting to be published.", (double)st.queue_parts);
	struct ca_histogram empty;
	ca_histogram_init(&empty, duration_bounds,
	                  sizeof duration_bounds / sizeof duration_bounds[0]);
	ca_prom_histogram(p, "agent_metrics_sample_duration_seconds",
	                  "CPU time spent computing one sample.", m ? &m->duration : &empty);
	ca_prom_family(p, "agent_metrics_objects", "gauge",
	               "Objects the collector tracks, by kind.");
	ca_prom_sample(p, "agent_metrics_objects", "kind", "pods", (double)st.pods);
	ca_prom_sample(p, "agent_metrics_objects", "kind", "nodes", (double)st.nodes);
	ca_prom_sample(p, "agent_metrics_objects", "kind", "namespaces", (double)st.namespaces);
	ca_prom_family(p, "agent_metrics_store_bytes", "gauge",
	               "Bytes the collector's stores hold, by kind.");
	for (int k = 0; k < KIND_COUNT; k++) {
		struct ca_store_stats ss = {0};
		if (m)
			ca_store_get_stats(m->store[k], &ss);
		ca_prom_sample(p, "agent_metrics_store_bytes", "kind", kind_names[k],
		               (double)ss.bytes);
	}
	ca_prom_family(p, "agent_metrics_invalid_total", "counter",
	               "Objects or fields the collector skipped, by reason.");
	for (int r = 0; r < CA_INVALID_COUNT_; r++)
		ca_prom_sample(p, "agent_metrics_invalid_total", "reason",
		               ca_metrics_invalid_name((enum ca_metrics_invalid)r),
		               m ? (double)m->fold.invalid[r] : 0);
	ca_prom_family(p, "agent_metrics_pods_unknown", "gauge",
	               "Pods in the last sample bound to a node, or in a namespace, the agent does "
	               "not know.");
	ca_prom_sample(p, "agent_metrics_pods_unknown", "unknown", "node",
	               m ? (double)m->unknown_node_pods : 0);
	ca_prom_sample(p, "agent_metrics_pods_unknown", "unknown", "namespace",
	               m ? (double)m->unknown_ns_pods : 0);
	ca_prom_single(p, "agent_metrics_usage_available", "gauge",
	               "1 when usage figures from metrics.k8s.io are in the samples.",
	               st.usage_available ? 1 : 0);
	ca_prom_single(p, "agent_metrics_usage_passes_total", "counter",
	               "Complete reads of metrics.k8s.io (nodes and pods).",
	               (double)st.usage_lists);
	ca_prom_single(p, "agent_metrics_usage_per_namespace", "gauge",
	               "1 when PodMetrics are listed namespace by namespace (the cluster-wide list "
	               "does not fit in kubernetes.max_list_page_bytes).",
	               st.usage_per_namespace ? 1 : 0);
	ca_prom_single(p, "agent_metrics_usage_namespaces_unknown", "gauge",
	               "Namespaces without usage in the last sample although usage was available "
	               "(their PodMetrics list did not fit).",
	               (double)st.usage_namespaces_unknown);
	ca_prom_single(p, "agent_metrics_usage_namespace_lists_too_big_total", "counter",
	               "Namespaces' PodMetrics lists over kubernetes.max_list_page_bytes.",
	               (double)st.usage_too_big_total);
	ca_prom_single(p, "agent_metrics_usage_per_zone", "gauge",
	               "1 when NodeMetrics are listed zone by zone (the cluster-wide list does not "
	               "fit in kubernetes.max_list_page_bytes).",
	               st.usage_per_zone ? 1 : 0);
	ca_prom_single(p, "agent_metrics_usage_nodes_unknown", "gauge",
	               "Nodes without usage in the last sample although usage was available "
	               "(not in metrics.k8s.io, or their zone's NodeMetrics list did not fit).",
	               (double)st.usage_nodes_unknown);
	ca_prom_single(p, "agent_metrics_usage_zone_lists_too_big_total", "counter",
	               "Zones' NodeMetrics lists over kubernetes.max_list_page_bytes.",
	               (double)st.usage_zones_too_big_total);
}

const struct ca_module_ops ca_metrics_module = {
        .name = "metrics",
        .health = module_health,
        .health_json = module_health_json,
        .render_metrics = module_metrics,
};
