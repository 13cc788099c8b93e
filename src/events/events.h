/* events/events.h: the event watcher (DESIGN.md §2, issue 4).
 *
 * Watches Kubernetes Events (core/v1, or events.k8s.io/v1 when
 * events.api says so) in all namespaces or in events.namespaces, through the
 * kube reflector, and hands every failure event worth reporting to a sink
 * the agent wires to NATS (agent.event.<cluster_id>). On the way each Event
 * object is:
 *   1. folded at once into a compact owned record (only the fields of
 *      struct ca_msg_event; the message cut to events.max_message_bytes at a
 *      UTF-8 boundary with a "…[truncated N bytes]" marker);
 *   2. classified (category, severity) by the reason table of classify.c,
 *      documented in docs/EVENTS.md;
 *   3. filtered (namespace, type, reason, involved-object kind, message
 *      regexes, min_severity) and, on a LIST, skipped when older than
 *      events.since;
 *   4. deduplicated: a bounded memory of uid -> (count, lastTimestamp) makes
 *      relists and reconnects publish an event again only when its count or
 *      last timestamp advanced;
 *   5. aggregated: within events.dedup_window, the first occurrence of an
 *      (involved object, reason) pair is published at once and its repeats
 *      fold into one message with the latest count, published when the
 *      window closes (0 disables);
 *   6. rate limited per namespace (token bucket events.namespace_rate /
 *      namespace_burst; over-limit events are dropped and counted);
 *   7. queued in a ring of events.buffer_size; when full the oldest is
 *      dropped and counted (agent_events_dropped_total), or, with
 *      events.spool_dir, moved to the on-disk spool (spool.h), which is
 *      replayed in order before the ring when the sink takes events again.
 * The queue drains into the sink at once while the sink takes events.
 * Optionally the last resourceVersion whose events were all handed to the
 * sink is kept in events.state_file, so a restarted agent resumes there (a
 * spooled event is not handed to the sink: the resume point stays before
 * it).
 *
 * The module owns its reflectors, queue, memories, timers and counters. It
 * never includes bus/, http/ or agent/ headers. Every function is for the
 * loop thread only (the one that runs the kube client's ca_loop), except
 * ca_events_msg_id() and ca_events_classify(), which are pure. */
#ifndef CA_EVENTS_EVENTS_H
#define CA_EVENTS_EVENTS_H

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

struct ca_events;

struct ca_events_sink {
	/* Hand one event to NATS. CA_OK: taken (sent or in the nats.c
	 * reconnect buffer). CA_EAGAIN: cannot take it now; it stays queued and
	 * the agent calls ca_events_flush() when NATS can take more. Any other
	 * error: the event cannot ever be sent (e.g. it does not encode); it is
	 * dropped and counted. ev and its strings are borrowed for the call.
	 * Loop thread. */
	enum ca_err (*publish)(void *arg, const struct ca_msg_event *ev);
};

/* Set up the watcher: compiles the filters, reads the state file, creates
 * (but does not start) one reflector per watched namespace (one for all
 * namespaces when events.namespaces is empty) on kube, and the timers
 * (window closing, state file writes) on loop, which must be the loop kube
 * runs on. kube, cfg and loop are borrowed and must outlive the watcher;
 * cluster_id is copied; sink is copied, sink_arg borrowed. On failure
 * writes one sentence into err (e.g. an invalid regular expression, naming
 * the key) and returns CA_EINVAL or CA_ENOMEM. */
enum ca_err ca_events_new_loop(struct ca_events **out, struct ca_loop *loop,
                               struct ca_kube *kube, const struct ca_config *cfg,
                               const char *cluster_id, const struct ca_events_sink *sink,
                               void *sink_arg, char *err, size_t errlen);
/* --check-config's look at the watcher's files, which changes nothing
 * (a live agent may be using them; a watcher built with them would prune
 * the spool and rewrite the state file): events.spool_dir is a writable
 * directory or can be created (ca_check_writable_dir), events.state_file's directory is writable
 * and the file, if any, a regular file. On failure one sentence naming
 * the key goes into err and the status is CA_EIO. */
enum ca_err ca_events_check_files(const struct ca_config *cfg, char *err, size_t errlen);
/* Start the reflector(s). */
enum ca_err ca_events_start(struct ca_events *ev);
/* The watcher's rows of the memory budget for cfg (nothing when disabled):
 * what it may hold at most, from the configuration alone. Any thread. */
void ca_events_budget(const struct ca_config *cfg, struct ca_budget *b);
/* The watches: one over all namespaces (its namespace "") or one per
 * namespace of events.namespaces. Borrowed strings. */
size_t ca_events_watch_count(const struct ca_events *ev);
const char *ca_events_watch_namespace(const struct ca_events *ev, size_t i);
/* The resourceVersion of watch i whose events were all handed to the sink
 * (what the state file keeps), "" when there is none yet. Borrowed until
 * the next callback of the watcher. */
const char *ca_events_handed_rv(const struct ca_events *ev, size_t i);
/* Before ca_events_start(): resume watch i from rv, as from the state file
 * (over what the state file said): checked with the server first, a 410
 * relists with events.since. CA_EINVAL for a bad index or rv, or once
 * started. For a new leader taking over the last one's point (ha/ha.h). */
enum ca_err ca_events_set_resume(struct ca_events *ev, size_t i, const char *rv);
/* Try to publish what is queued (NATS can take events again). */
void ca_events_flush(struct ca_events *ev);

struct ca_events_stats {
	uint64_t received;      /* Event objects added or modified (deletions are ignored) */
	uint64_t published;     /* handed to the sink */
	uint64_t filtered;      /* rejected by a filter or older than events.since */
	uint64_t dropped;       /* lost: queue full (oldest dropped) or refused by the sink */
	uint64_t deduplicated;  /* seen before with the same count and timestamp */
	uint64_t rate_limited;  /* over the namespace rate, dropped */
	uint64_t aggregated;    /* repeats folded into a later message */
	uint64_t windows_closed_early; /* aggregation windows closed at events.dedup_window_bytes */
	size_t queue_size, queue_capacity;
	size_t queue_bytes, window_bytes; /* bytes of events held by the queue and by open windows */
};
void ca_events_get_stats(const struct ca_events *ev, struct ca_events_stats *out);
/* The watcher as a module of the agent (core/module.h): ready when every
 * reflector has listed and streams (kube/reflector.h), not live when one
 * made no progress for kubernetes.stall_timeout. */
extern const struct ca_module_ops ca_events_module;
/* Every reflector ready (ca_reflector_ready); why gets the first reason. */
bool ca_events_ready(const struct ca_events *ev, char *why, size_t whylen);

/* agent_event_queue_size, agent_events_received_total,
 * agent_events_published_total, agent_events_filtered_total,
 * agent_events_dropped_total, agent_events_deduplicated_total,
 * agent_events_rate_limited_total, agent_events_aggregated_total, and the
 * spool's agent_events_spool_bytes, _spool_records, _spooled_total,
 * _spool_replayed_total, _spool_dropped_total, _spool_corrupt_total. */
void ca_events_render_metrics(const struct ca_events *ev, struct ca_prom *p); /* NULL: zeros */
/* A JSON object (no trailing newline) for /health. */
void ca_events_health_json(const struct ca_events *ev, struct ca_buf *out);
/* True when a reflector has made no progress (object, successful list or
 * watch (re)connection) for stall_timeout_ms, or the watcher paused its
 * reflectors (backpressure) and the sink has taken nothing for that long. */
bool ca_events_stalled(const struct ca_events *ev, int64_t stall_timeout_ms);
/* Moves queued events to the spool when there is one, writes the state
 * file one last time, then frees everything (without a spool queued events
 * are lost; a restart resumes before them). NULL is fine. */
void ca_events_free(struct ca_events *ev);

/* The Nats-Msg-Id of an event: "<uid>-<resourceVersion>" (one message per
 * version of an Event object, the same id when a version is replayed), or
 * "<uid>-c<count>" for an object without a resourceVersion. Writes at most
 * outlen bytes (always terminated); CA_ETOOBIG when it did not fit. Any
 * thread. */
enum ca_err ca_events_msg_id(const struct ca_msg_event *ev, char *out, size_t outlen);

/* ---- classification (classify.c): the reason table --------------------- */

/* Category and severity of an event: reason looked up in the table (a
 * reason may have message-specific rows, e.g. "BackOff" pulling an image is
 * category image). Unknown reasons give category "other" and a severity
 * from the type (Warning -> warning, anything else -> info). A Normal event
 * whose row is not marked as a failure even when Normal is downgraded to
 * info. The strings returned are static. Any thread. */
void ca_events_classify(const char *reason, const char *type, const char *message,
                        const char **category, const char **severity);

#endif
