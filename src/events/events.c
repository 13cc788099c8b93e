/* events/events.c: the watcher: reflector glue, the pipeline from an Event
 * object to the sink, timers, the state file, stats and health.
 *
 * Everything runs on the loop thread, in the reflector callbacks, the one
 * timer and ca_events_flush(); nothing here blocks except the once-a-second
 * state file write (a few dozen bytes, no fsync). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/file.h"
#include "core/timeutil.h"
#include "events/events_int.h"
#include "events/spool.h"
#include "log/log.h"

#define COMPONENT "events"
/* The state file is written when it changed, at most this often: a
 * restart replays at most this much (the dedup memory is not kept). */
#define STATE_INTERVAL_MS 2000
/* The sink counts as up (NATS connected, maybe slow) while it took an event
 * this recently; longer than that, NATS is taken to be down. */
#define SINK_UP_MS 1000
#define MAX_NAMESPACE_BUCKETS 4096
/* At most one log line about invalid events this often (the counters say
 * exactly how many; the log says that it happens). */
#define INVALID_LOG_MS 10000
enum { INVALID_OVERSIZED = 0, INVALID_UNPARSABLE, INVALID_NO_UID, INVALID_REASONS };
static const char *const invalid_reason_names[INVALID_REASONS] = { "oversized", "unparsable", "no_uid" };
/* Spool replay: at most this many records per loop turn, so a long replay
 * never holds the loop (the rest goes on at the next turn); after NATS
 * refused one, try again this soon while it is taking events, or this
 * late while it is down (reconnecting calls ca_events_flush anyway). */
#define REPLAY_BATCH 256
#define REPLAY_RETRY_MS 20
#define REPLAY_RETRY_DOWN_MS 1000
/* At most one log line about spool drops or corruption this often. */
#define SPOOL_LOG_MS 10000
#define MIN_DEDUP_ENTRIES 65536
#define MAX_TABLE_ENTRIES (1u << 22)

struct refl {
	struct ca_events *ev;
	size_t index;
	struct ca_reflector *r;
	char *path;
	char rv[CA_EVENTS_MAX_RV + 1];      /* the resume point now */
	char prev_rv[CA_EVENTS_MAX_RV + 1]; /* the one before it */
	bool listing;
	bool synced_once;
	int64_t list_cutoff;                /* unix ms; list objects last seen before are skipped */
	int64_t last_seen_unix;             /* wall clock of this reflector's last progress */
};

struct ca_events {
	struct ca_loop *loop;               /* borrowed; NULL: no timers */
	struct ca_kube *kube;               /* borrowed; NULL: no reflectors (tests) */
	const struct ca_config *cfg;        /* borrowed */
	char *cluster_id;
	struct ca_events_sink sink;
	void *sink_arg;
	struct ca_events_clock clock;

	struct ca_events_filter filter;
	bool filter_ready;
	struct ca_events_dedup dedup;
	struct ca_events_agg agg;
	struct ca_events_ratelimit rl;
	struct ca_events_queue queue;

	struct refl *refl;
	size_t nrefl;
	bool v1new;                         /* events.k8s.io/v1 */

	struct ca_loop_timer *timer;
	int64_t timer_deadline;             /* monotonic ms the timer fires at, -1 = stopped */

	struct ca_spool *spool;             /* NULL: events.spool_dir is "" */
	struct ca_loop_timer *replay_timer; /* the next batch of a spool replay */
	uint64_t spool_logged_dropped, spool_logged_corrupt; /* totals at the last log line */
	int64_t spool_log_next_ms;
	char spool_error[256];              /* the last append or read error, "" none */

	int64_t since_ms;
	size_t max_message_bytes;

	char *state_file;                   /* NULL = none */
	bool state_dirty;
	int64_t state_next_ms;
	struct ca_events_state_entry *state_written; /* what the file holds now */
	size_t n_state_written;
	char state_error[256];
	struct ca_events_state_writer *writer; /* the thread that writes it */
	int64_t state_submit_us;            /* loop time of the last save */

	bool paused;                        /* the reflectors, for backpressure */
	bool sink_up;                       /* the last publish was taken */
	bool draining;
	int64_t last_ok_ms;                 /* pipeline clock: the sink last took an event; -1 never */
	int64_t last_publish_mono;          /* real monotonic clock, for stall checks */
	int64_t started_mono;
	bool dropping;                      /* for logging the start of drops once */

	struct ca_events_stats st;
	uint64_t invalid;                   /* Event objects without a uid */
	uint64_t invalid_logged[INVALID_REASONS]; /* totals at the last log line */
	int64_t invalid_log_next_ms;        /* monotonic: no log line before this */
};

static int64_t real_mono(void *arg)
{
	(void)arg;
	return ca_now_monotonic_ms();
}

static int64_t real_unix(void *arg)
{
	(void)arg;
	return ca_now_unix_ms();
}

static int64_t now_mono(const struct ca_events *ev)
{
	return ev->clock.mono_ms(ev->clock.arg);
}

static int64_t now_unix(const struct ca_events *ev)
{
	return ev->clock.unix_ms(ev->clock.arg);
}

static void schedule(struct ca_events *ev);
static void check_state_writer(struct ca_events *ev);
static void log_invalid(struct ca_events *ev);

/* ------------------------------------------------------------------------
 * The sink side: queue, drain, backpressure */

static void set_paused(struct ca_events *ev, bool pause)
{
	if (ev->paused == pause)
		return;
	ev->paused = pause;
	for (size_t i = 0; i < ev->nrefl; i++) {
		if (!ev->refl[i].r)
			continue;
		if (pause)
			ca_reflector_pause(ev->refl[i].r);
		else
			ca_reflector_resume(ev->refl[i].r);
	}
	ca_log(CA_LOG_DEBUG, COMPONENT, pause ? "queue filling faster than NATS takes it: pausing the watch"
	                                      : "queue drained: resuming the watch", NULL);
}

/* Spool drops and corrupt regions: one log line at most every
 * SPOOL_LOG_MS with what happened since the last one. */
static void log_spool(struct ca_events *ev)
{
	if (!ev->spool)
		return;
	int64_t now = ca_now_monotonic_ms();
	if (now < ev->spool_log_next_ms)
		return;
	struct ca_spool_stats st;
	ca_spool_get_stats(ev->spool, &st);
	if (st.dropped == ev->spool_logged_dropped && st.corrupt == ev->spool_logged_corrupt)
		return;
	char dropped[24], corrupt[24];
	snprintf(dropped, sizeof dropped, "%llu", (unsigned long long)(st.dropped - ev->spool_logged_dropped));
	snprintf(corrupt, sizeof corrupt, "%llu", (unsigned long long)(st.corrupt - ev->spool_logged_corrupt));
	if (st.dropped != ev->spool_logged_dropped)
		ca_log(CA_LOG_WARN, COMPONENT, "event spool full or failing: oldest events dropped (at most "
		       "one line every 10 s; agent_events_spool_dropped_total has the total)",
		       "dropped", dropped, "error", ev->spool_error, NULL);
	if (st.corrupt != ev->spool_logged_corrupt)
		ca_log(CA_LOG_WARN, COMPONENT, "event spool: corrupt or torn records skipped (at most one "
		       "line every 10 s; agent_events_spool_corrupt_total has the total)",
		       "regions", corrupt, NULL);
	ev->spool_logged_dropped = st.dropped;
	ev->spool_logged_corrupt = st.corrupt;
	ev->spool_log_next_ms = now + SPOOL_LOG_MS;
}

/* Move a record the ring has no room for to the spool's tail (taken). */
static void spill(struct ca_events *ev, struct ca_event_rec *rec)
{
	struct ca_spool_item it = {
		.msg = rec->msg,
		.resume_before = rec->resume_before,
		.stream = rec->reflector < ev->nrefl ? ev->refl[rec->reflector].path : "",
		.stream_index = rec->reflector,
	};
	char why[256] = "";
	if (ca_spool_append(ev->spool, &it, why, sizeof why) != CA_OK) {
		ev->st.dropped++;
		ca_strlcpy(ev->spool_error, why, sizeof ev->spool_error);
	}
	ca_events_rec_free(rec);
	log_spool(ev);
}

/* An event a previous run spooled will be published from the spool: the
 * dedup memory learns it, so the resumed watch (which starts before the
 * oldest spooled event) does not queue the same version a second time. */
static void seed_dedup(void *arg, const struct ca_spool_item *it)
{
	struct ca_events *ev = arg;
	struct ca_event_rec r;
	int64_t delta;
	memset(&r, 0, sizeof r);
	r.msg = it->msg;
	r.uid_hash = ca_events_uid_hash(it->msg.uid);
	ca_events_dedup_check(&ev->dedup, &r, &delta);
}

static void replay_later(struct ca_events *ev, int64_t delay_ms)
{
	if (ev->replay_timer && !ca_loop_timer_active(ev->replay_timer))
		ca_loop_timer_start(ev->replay_timer, delay_ms, 0);
}

static void took_one(struct ca_events *ev, enum ca_err rc)
{
	if (rc == CA_OK) {
		ev->st.published++;
		ev->sink_up = true;
		ev->last_ok_ms = now_mono(ev);
		ev->last_publish_mono = ca_now_monotonic_ms();
	} else {
		ev->st.dropped++; /* the sink can never take it (e.g. too big) */
	}
	ev->state_dirty = true;
}

/* Replay the spool (older than anything in the ring) a batch at a time.
 * True when it is empty and the ring may go next. */
static bool drain_spool(struct ca_events *ev)
{
	size_t n = 0;
	bool empty = false;
	while (!ca_spool_empty(ev->spool)) {
		if (n == REPLAY_BATCH) {
			replay_later(ev, 0); /* the next loop turn */
			goto out;
		}
		struct ca_spool_item it;
		char why[256] = "";
		enum ca_err rc = ca_spool_peek(ev->spool, &it, why, sizeof why);
		if (rc == CA_ENOTFOUND) {
			/* Nothing older is left to read, whatever the counters say:
			 * the ring may go, rather than wait for an append that may
			 * never come. */
			empty = true;
			goto out;
		}
		if (rc != CA_OK) {
			ca_strlcpy(ev->spool_error, why, sizeof ev->spool_error);
			continue; /* that segment is counted as dropped and gone */
		}
		it.msg.cluster_id = ev->cluster_id;
		rc = ev->sink.publish ? ev->sink.publish(ev->sink_arg, &it.msg) : CA_EAGAIN;
		if (rc == CA_EAGAIN) {
			ev->sink_up = false;
			bool recent = ev->last_ok_ms >= 0 && now_mono(ev) - ev->last_ok_ms < SINK_UP_MS;
			replay_later(ev, recent ? REPLAY_RETRY_MS : REPLAY_RETRY_DOWN_MS);
			goto out;
		}
		ca_spool_consume(ev->spool);
		took_one(ev, rc);
		n++;
	}
	empty = ca_spool_empty(ev->spool);
out:
	if (n)
		ca_spool_save_cursor(ev->spool);
	log_spool(ev);
	return empty;
}

static void drain(struct ca_events *ev)
{
	if (ev->draining)
		return;
	ev->draining = true;
	struct ca_event_rec *rec;
	if (ev->spool && !drain_spool(ev))
		goto judge;
	while ((rec = ca_events_queue_peek(&ev->queue)) != NULL) {
		rec->msg.cluster_id = ev->cluster_id;
		enum ca_err rc = ev->sink.publish ? ev->sink.publish(ev->sink_arg, &rec->msg) : CA_EAGAIN;
		if (rc == CA_EAGAIN) {
			ev->sink_up = false;
			break;
		}
		ca_events_rec_free(ca_events_queue_pop(&ev->queue));
		took_one(ev, rc);
	}
judge:
	ev->draining = false;
	if (ev->queue.len == 0)
		ev->dropping = false;

	/* Backpressure. NATS up but slower than the watch (the sink took an
	 * event within SINK_UP_MS, yet the ring passes 75%): stop reading and
	 * let TCP push back on the API server. NATS down (nothing taken for
	 * longer): keep reading and drop the oldest, as the issue asks; the
	 * newest failures matter most. tick() notices the sink going quiet
	 * while paused. */
	size_t len = ev->queue.len, cap = ev->queue.cap;
	bool recent = ev->last_ok_ms >= 0 && now_mono(ev) - ev->last_ok_ms < SINK_UP_MS;
	if (!ev->paused && recent && len > cap - cap / 4)
		set_paused(ev, true);
	else if (ev->paused && (!recent || len < cap / 4))
		set_paused(ev, false);
}

static void enqueue(struct ca_events *ev, struct ca_event_rec *rec)
{
	if (!ca_events_ratelimit_allow(&ev->rl, rec->ns_hash, now_mono(ev))) {
		ev->st.rate_limited++;
		ca_events_rec_free(rec);
		return;
	}
	rec->enqueued_mono_ms = now_mono(ev);
	/* With a spool, the oldest of a full ring move to disk instead of
	 * being dropped; the spool stays older than the ring. */
	while (ev->spool && ca_events_queue_would_drop(&ev->queue, rec))
		spill(ev, ca_events_queue_pop(&ev->queue));
	size_t dropped = ca_events_queue_push(&ev->queue, rec);
	if (dropped) {
		ev->st.dropped += dropped;
		if (!ev->dropping) {
			ev->dropping = true;
			ca_log(CA_LOG_WARN, COMPONENT, "event queue full: dropping the oldest events "
			       "(see agent_events_dropped_total)", NULL);
		}
	}
	ev->state_dirty = true;
}

/* ------------------------------------------------------------------------
 * Timers: aggregation windows and the state file */

void ca_events_tick(struct ca_events *ev)
{
	struct ca_event_rec *out;
	int64_t now = now_mono(ev);
	bool any = false;

	while (ca_events_agg_expire(&ev->agg, now, &out)) {
		if (out) {
			enqueue(ev, out);
			any = true;
		}
	}
	if (any || ev->paused)
		drain(ev); /* also re-judges a pause */
	log_invalid(ev);
	log_spool(ev);
	if (ev->state_file && ev->state_dirty && now >= ev->state_next_ms) {
		if (ev->writer)
			check_state_writer(ev); /* the last write's outcome first */
		ca_events_save_state(ev);
		ev->state_next_ms = now + STATE_INTERVAL_MS;
	}
}

static void on_timer(void *arg)
{
	struct ca_events *ev = arg;
	ev->timer_deadline = -1;
	ca_events_tick(ev);
	schedule(ev);
}

static void on_replay_timer(void *arg)
{
	struct ca_events *ev = arg;
	drain(ev);
	schedule(ev);
}

static void schedule(struct ca_events *ev)
{
	if (!ev->loop) {
		/* No timers: close windows and save state as work comes by. */
		ca_events_tick(ev);
		return;
	}
	if (!ev->timer)
		return;
	int64_t deadline = ca_events_agg_next_deadline(&ev->agg);
	if (ev->state_file && ev->state_dirty) {
		int64_t s = ev->state_next_ms;
		if (deadline < 0 || s < deadline)
			deadline = s;
	}
	if (ev->paused && ev->last_ok_ms >= 0) {
		int64_t s = ev->last_ok_ms + SINK_UP_MS;
		if (deadline < 0 || s < deadline)
			deadline = s;
	}
	if (deadline < 0)
		return;
	if (ev->timer_deadline >= 0 && ev->timer_deadline <= deadline)
		return; /* already due no later than needed */
	int64_t now = now_mono(ev);
	ev->timer_deadline = deadline;
	ca_loop_timer_start(ev->timer, deadline > now ? deadline - now : 0, 0);
}

/* ------------------------------------------------------------------------
 * The state file */

const char *ca_events_resume_rv(const struct ca_events *ev, size_t i)
{
	if (i >= ev->nrefl)
		return "";
	/* The oldest record of this reflector not yet handed to the sink
	 * holds the resume point from before it: in the spool first (older
	 * than the ring), then in the ring. */
	const char *spooled = ca_spool_resume_rv(ev->spool, i);
	if (spooled)
		return spooled;
	for (size_t k = 0; k < ev->queue.len; k++) {
		const struct ca_event_rec *r = ca_events_queue_at(&ev->queue, k);
		if (r->reflector == i)
			return r->resume_before;
	}
	return ev->refl[i].rv;
}

enum ca_err ca_events_save_state(struct ca_events *ev)
{
	if (!ev->state_file || !ev->writer)
		return CA_OK;
	struct ca_events_state_entry *e = calloc(ev->nrefl ? ev->nrefl : 1, sizeof *e);
	if (!e)
		return CA_ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < ev->nrefl; i++) {
		const char *rv = ca_events_resume_rv(ev, i);
		if (!ca_events_rv_valid(rv))
			continue;
		ca_strlcpy(e[n].key, ev->refl[i].path, sizeof e[n].key);
		ca_strlcpy(e[n].rv, rv, sizeof e[n].rv);
		n++;
	}
	ev->state_dirty = false;
	if (n == 0 || (n == ev->n_state_written && ev->state_written &&
	               memcmp(e, ev->state_written, n * sizeof *e) == 0)) {
		free(e);
		return CA_OK;
	}
	/* The writer thread does the disk work; the loop only formats. */
	int64_t t0 = ca_now_monotonic_us();
	enum ca_err rc = ca_events_state_writer_submit(ev->writer, e, n, now_unix(ev));
	ev->state_submit_us = ca_now_monotonic_us() - t0;
	if (rc == CA_OK && !ev->loop)
		rc = ca_events_state_writer_flush(ev->writer); /* tests: written when this returns */
	if (rc != CA_OK) {
		free(e);
		check_state_writer(ev);
		return rc;
	}
	free(ev->state_written);
	ev->state_written = e;
	ev->n_state_written = n;
	check_state_writer(ev);
	return CA_OK;
}

/* A failed write is logged once per new error and retried at the next
 * interval (a full disk may be freed). */
static void check_state_writer(struct ca_events *ev)
{
	char why[256];
	ca_events_state_writer_status(ev->writer, why, sizeof why, NULL, NULL);
	if (!why[0]) {
		ev->state_error[0] = '\0';
		return;
	}
	char msg[sizeof ev->state_error];
	ca_set_err(msg, sizeof msg, "cannot write the state file: %s", why);
	if (strcmp(msg, ev->state_error) != 0)
		ca_log(CA_LOG_WARN, COMPONENT, msg, "path", ev->state_file, NULL);
	ca_strlcpy(ev->state_error, msg, sizeof ev->state_error);
	free(ev->state_written); /* not on disk: write it again */
	ev->state_written = NULL;
	ev->n_state_written = 0;
	ev->state_dirty = true;
}

/* ------------------------------------------------------------------------
 * Invalid events: counted by reason, logged at a bounded rate */

/* Totals by reason: lines over events.max_object_bytes, lines and LIST
 * items that are not valid JSON (the reflectors count both), and Event
 * objects without a metadata.uid (folded here). */
static void invalid_totals(const struct ca_events *ev, uint64_t out[INVALID_REASONS])
{
	memset(out, 0, INVALID_REASONS * sizeof *out);
	for (size_t i = 0; i < ev->nrefl; i++) {
		if (!ev->refl || !ev->refl[i].r)
			continue;
		struct ca_reflector_stats rs;
		ca_reflector_get_stats(ev->refl[i].r, &rs);
		out[INVALID_OVERSIZED] += rs.oversized;
		out[INVALID_UNPARSABLE] += rs.parse_errors + rs.list_items_invalid;
	}
	out[INVALID_NO_UID] = ev->invalid;
}

static void log_invalid(struct ca_events *ev)
{
	int64_t now = ca_now_monotonic_ms();
	if (now < ev->invalid_log_next_ms)
		return;
	uint64_t t[INVALID_REASONS];
	invalid_totals(ev, t);
	char counts[INVALID_REASONS][24];
	bool any = false;
	for (int i = 0; i < INVALID_REASONS; i++) {
		snprintf(counts[i], sizeof counts[i], "%llu", (unsigned long long)(t[i] - ev->invalid_logged[i]));
		any |= t[i] != ev->invalid_logged[i];
	}
	if (!any)
		return;
	ca_log(CA_LOG_WARN, COMPONENT, "invalid events skipped (at most one line every 10 s; "
	       "agent_events_invalid_total has the totals)", "oversized", counts[INVALID_OVERSIZED],
	       "unparsable", counts[INVALID_UNPARSABLE], "no_uid", counts[INVALID_NO_UID], NULL);
	memcpy(ev->invalid_logged, t, sizeof t);
	ev->invalid_log_next_ms = now + INVALID_LOG_MS;
}

/* ------------------------------------------------------------------------
 * The pipeline: reflector callbacks */

static void set_rv(struct refl *rf, const char *rv)
{
	if (!ca_events_rv_valid(rv) || strcmp(rv, rf->rv) == 0)
		return;
	memcpy(rf->prev_rv, rf->rv, sizeof rf->prev_rv);
	ca_strlcpy(rf->rv, rv, sizeof rf->rv);
	rf->ev->state_dirty = true;
}

void ca_events_on_list_begin(struct ca_events *ev, size_t i)
{
	if (i >= ev->nrefl)
		return;
	struct refl *rf = &ev->refl[i];
	rf->listing = true;
	rf->list_cutoff = 0;
	if (ev->since_ms > 0) {
		/* First list: skip what is older than events.since. A relist (410,
		 * or a state file too old): events seen up to the last progress are
		 * in the dedup memory; go back events.since before that, so a gap
		 * in the watch loses nothing. */
		int64_t base = rf->synced_once && rf->last_seen_unix ? rf->last_seen_unix : now_unix(ev);
		rf->list_cutoff = base - ev->since_ms;
	}
}

void ca_events_on_synced(struct ca_events *ev, size_t i, const char *rv)
{
	if (i >= ev->nrefl)
		return;
	struct refl *rf = &ev->refl[i];
	rf->listing = false;
	rf->synced_once = true;
	rf->last_seen_unix = now_unix(ev);
	set_rv(rf, rv);
	log_invalid(ev);
	schedule(ev);
}

void ca_events_on_resource_version(struct ca_events *ev, size_t i, const char *rv)
{
	if (i >= ev->nrefl)
		return;
	struct refl *rf = &ev->refl[i];
	/* During a LIST the items' versions are not a resume point; the list's
	 * version comes with on_synced. */
	if (rf->listing)
		return;
	rf->last_seen_unix = now_unix(ev);
	set_rv(rf, rv);
	schedule(ev);
}

void ca_events_on_object(struct ca_events *ev, size_t i, enum ca_watch_type type,
                         const struct ca_kobj *obj, bool from_list)
{
	if (i >= ev->nrefl)
		return;
	struct refl *rf = &ev->refl[i];
	const char *orv = ca_kobj_str(obj, "metadata.resourceVersion");
	if (!from_list)
		rf->last_seen_unix = now_unix(ev);
	if (type == CA_WATCH_DELETED) {
		/* Events expire by TTL; a deletion is no failure. */
		goto done;
	}
	ev->st.received++;

	/* The resume point from before this object, whichever order the
	 * reflector reports objects and resume points in. */
	const char *before = (!from_list && orv && strcmp(orv, rf->rv) == 0) ? rf->prev_rv : rf->rv;
	struct ca_event_fold_options fo = {
		.max_message_bytes = ev->max_message_bytes,
		.observed_at = now_unix(ev),
		.resume_before = rf->listing || from_list ? rf->rv : before,
	};
	struct ca_event_rec *rec = NULL;
	if (ca_events_fold(obj, &fo, &rec) != CA_OK) {
		ev->invalid++;
		log_invalid(ev);
		goto done;
	}
	rec->reflector = i;

	if (!ca_events_filter_match(&ev->filter, rec) ||
	    (from_list && rf->list_cutoff && rec->msg.last_timestamp &&
	     rec->msg.last_timestamp < rf->list_cutoff)) {
		ev->st.filtered++;
		ca_events_rec_free(rec);
		goto done;
	}
	int64_t delta = 0;
	if (!ca_events_dedup_check(&ev->dedup, rec, &delta)) {
		ev->st.deduplicated++;
		ca_events_rec_free(rec);
		goto done;
	}
	struct ca_event_rec *now_rec, *evicted;
	ca_events_agg_offer(&ev->agg, rec, delta, now_mono(ev), &now_rec, &evicted);
	if (evicted)
		enqueue(ev, evicted);
	if (now_rec)
		enqueue(ev, now_rec);
	else
		ev->st.aggregated++;
	/* Past events.dedup_window_bytes the oldest windows close early: their
	 * repeats are published now instead of at the window's end. */
	while (ca_events_agg_over_budget(&ev->agg)) {
		struct ca_event_rec *shed = ca_events_agg_shed(&ev->agg);
		if (!shed)
			break;
		ev->st.windows_closed_early++;
		enqueue(ev, shed);
	}
	drain(ev);
done:
	if (!from_list && orv)
		set_rv(rf, orv);
	schedule(ev);
}

/* ------------------------------------------------------------------------
 * Reflector trampolines */

static void cb_list_begin(void *arg)
{
	struct refl *rf = arg;
	ca_events_on_list_begin(rf->ev, rf->index);
}

static void cb_object(void *arg, enum ca_watch_type type, const struct ca_kobj *obj, bool from_list)
{
	struct refl *rf = arg;
	ca_events_on_object(rf->ev, rf->index, type, obj, from_list);
}

static void cb_synced(void *arg, const char *rv)
{
	struct refl *rf = arg;
	ca_events_on_synced(rf->ev, rf->index, rv);
}

static void cb_rv(void *arg, const char *rv)
{
	struct refl *rf = arg;
	ca_events_on_resource_version(rf->ev, rf->index, rv);
}

/* ------------------------------------------------------------------------
 * Life cycle */

static bool selector_value(const char *s)
{
	if (!s[0] || strlen(s) > 63)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
			return false;
	return true;
}

static void load_state(struct ca_events *ev, struct ca_events_state_entry **entries, size_t *n)
{
	char why[256] = "";
	int64_t saved_at = 0;
	size_t max = ev->nrefl;

	*n = 0;
	*entries = calloc(max, sizeof **entries);
	if (!*entries)
		return;
	enum ca_err rc = ca_events_state_read(ev->state_file, *entries, max, n, &saved_at,
	                                      why, sizeof why);
	if (rc == CA_ENOTFOUND) {
		ca_log(CA_LOG_INFO, COMPONENT, "no state file yet: starting with a list",
		       "path", ev->state_file, NULL);
	} else if (rc != CA_OK) {
		ca_log(CA_LOG_WARN, COMPONENT, "ignoring unreadable or corrupt state file: starting with a list",
		       "path", ev->state_file, "error", why, NULL);
		*n = 0;
	}
}

/* ------------------------------------------------------------------------
 * Sizes, shared by set-up and the memory budget so the two cannot drift */

static size_t queue_capacity(const struct ca_config *cfg)
{
	int64_t n = cfg->events.buffer_size > 0 ? cfg->events.buffer_size : 1000;
	return n > (int64_t)MAX_TABLE_ENTRIES ? MAX_TABLE_ENTRIES : (size_t)n;
}

/* The dedup memory and the aggregation windows: 16 entries per queued
 * event, at least MIN_DEDUP_ENTRIES. */
static size_t dedup_capacity(const struct ca_config *cfg)
{
	size_t n = queue_capacity(cfg) * 16;
	if (n < MIN_DEDUP_ENTRIES)
		n = MIN_DEDUP_ENTRIES;
	return n > MAX_TABLE_ENTRIES ? MAX_TABLE_ENTRIES : n;
}

/* The largest spool record: the message, sixteen other fields cut at
 * CA_EVENTS_MAX_FIELD, two resourceVersions, the collection path. */
static size_t spool_max_payload(const struct ca_config *cfg)
{
	size_t msg = cfg->events.max_message_bytes > 0 ? (size_t)cfg->events.max_message_bytes : 4096;
	return msg + 64 + 16 * (CA_EVENTS_MAX_FIELD + 8) + 2 * (CA_EVENTS_MAX_RV + 8) + 512 + 64;
}

static bool spool_wanted(const struct ca_config *cfg)
{
	return cfg->events.spool_dir && cfg->events.spool_dir[0];
}

enum ca_err ca_events_check_files(const struct ca_config *cfg, char *err, size_t errlen)
{
	char why[256];
	if (!cfg->events.enabled)
		return CA_OK;
	if (spool_wanted(cfg) && ca_check_writable_dir(cfg->events.spool_dir, true, why, sizeof why) != CA_OK) {
		ca_set_err(err, errlen, "events.spool_dir: %s: %s (mount a writable emptyDir there, or set "
		           "events.spool_dir to \"\")", cfg->events.spool_dir, why);
		return CA_EIO;
	}
	const char *state = cfg->events.state_file;
	if (!state || !*state)
		return CA_OK;
	struct stat st;
	if (stat(state, &st) == 0 && !S_ISREG(st.st_mode)) {
		ca_set_err(err, errlen, "events.state_file: %s is not a regular file", state);
		return CA_EIO;
	}
	struct ca_buf dir;
	ca_buf_init(&dir, 0);
	const char *slash = strrchr(state, '/');
	enum ca_err rc = !slash ? ca_buf_append_str(&dir, ".")
	                 : slash == state ? ca_buf_append_str(&dir, "/")
	                                  : ca_buf_append(&dir, state, (size_t)(slash - state));
	if (rc == CA_OK && ca_check_writable_dir(dir.data, false, why, sizeof why) != CA_OK) {
		ca_set_err(err, errlen, "events.state_file: its directory %s: %s (the file is replaced "
		           "through a temporary file there)", dir.data, why);
		rc = CA_EIO;
	}
	ca_buf_fini(&dir);
	return rc;
}

void ca_events_budget(const struct ca_config *cfg, struct ca_budget *b)
{
	if (!cfg->events.enabled)
		return;
	size_t qcap = queue_capacity(cfg), dcap = dedup_capacity(cfg);
	ca_budget_add(b, "events: queued events (and the ring of pointers)", "events.buffer_bytes",
	              (uint64_t)cfg->events.buffer_bytes + qcap * sizeof(void *));
	ca_budget_add(b, "events: dedup memory (uid -> count, last timestamp)", "events.buffer_size",
	              ca_events_table_bytes(dcap) + dcap * 2 * sizeof(int64_t));
	if (cfg->events.dedup_window_ms > 0)
		ca_budget_add(b, "events: aggregation windows (latest repeat of each)",
		              "events.dedup_window_bytes",
		              (uint64_t)cfg->events.dedup_window_bytes + ca_events_table_bytes(dcap) +
		                      dcap * sizeof(struct ca_events_window));
	if (spool_wanted(cfg))
		ca_budget_add(b, "events: spool read and write buffers, segment index", "events.spool_dir",
		              ca_spool_memory_bytes((uint64_t)cfg->events.spool_max_bytes,
		                                    (uint64_t)cfg->events.spool_segment_bytes,
		                                    spool_max_payload(cfg),
		                                    cfg->events.namespaces.count ? cfg->events.namespaces.count : 1));
	if (cfg->events.namespace_rate > 0)
		ca_budget_add(b, "events: per-namespace rate limiter", "events.namespace_rate",
		              ca_events_table_bytes(MAX_NAMESPACE_BUCKETS) +
		                      MAX_NAMESPACE_BUCKETS * (sizeof(double) + sizeof(int64_t)));
}

enum ca_err ca_events_new_internal(struct ca_events **out, struct ca_loop *loop,
                                   struct ca_kube *kube, const struct ca_config *cfg,
                                   const char *cluster_id, const struct ca_events_sink *sink,
                                   void *sink_arg, const struct ca_events_clock *clock,
                                   char *err, size_t errlen)
{
	struct ca_events *ev = NULL;
	struct ca_events_state_entry *state = NULL;
	size_t nstate = 0;
	enum ca_err rc = CA_ENOMEM;
	const struct ca_strlist *nss = &cfg->events.namespaces;

	*out = NULL;
	if (err && errlen)
		err[0] = '\0';
	ev = calloc(1, sizeof *ev);
	if (!ev)
		goto out;
	ev->loop = loop;
	ev->kube = kube;
	ev->cfg = cfg;
	ev->timer_deadline = -1;
	ev->clock.mono_ms = real_mono;
	ev->clock.unix_ms = real_unix;
	if (clock)
		ev->clock = *clock;
	ev->started_mono = ca_now_monotonic_ms();
	ev->cluster_id = strdup(cluster_id ? cluster_id : "");
	if (!ev->cluster_id)
		goto out;
	if (sink)
		ev->sink = *sink;
	ev->sink_arg = sink_arg;
	ev->sink_up = true;
	ev->last_ok_ms = -1;
	ev->since_ms = cfg->events.since_ms > 0 ? cfg->events.since_ms : 0;
	ev->max_message_bytes = cfg->events.max_message_bytes > 0 ? (size_t)cfg->events.max_message_bytes : 4096;
	ev->v1new = cfg->events.api && strcmp(cfg->events.api, "events.k8s.io/v1") == 0;
	if (cfg->events.api && cfg->events.api[0] && !ev->v1new && strcmp(cfg->events.api, "core/v1") != 0) {
		snprintf(err, errlen, "events.api: invalid value \"%s\" (allowed: core/v1, events.k8s.io/v1)",
		         cfg->events.api);
		rc = CA_EINVAL;
		goto out;
	}

	rc = ca_events_filter_init(&ev->filter, cfg, err, errlen);
	if (rc != CA_OK)
		goto out;
	ev->filter_ready = true;

	size_t bufsize = queue_capacity(cfg);
	size_t dedup_cap = dedup_capacity(cfg);
	size_t queue_bytes = cfg->events.buffer_bytes > 0 ? (size_t)cfg->events.buffer_bytes : 0;
	size_t window_bytes = cfg->events.dedup_window_bytes > 0 ? (size_t)cfg->events.dedup_window_bytes : 0;
	if ((rc = ca_events_queue_init(&ev->queue, bufsize, queue_bytes)) != CA_OK ||
	    (rc = ca_events_dedup_init(&ev->dedup, dedup_cap)) != CA_OK ||
	    (rc = ca_events_agg_init(&ev->agg, dedup_cap, cfg->events.dedup_window_ms, window_bytes)) != CA_OK ||
	    (rc = ca_events_ratelimit_init(&ev->rl, MAX_NAMESPACE_BUCKETS,
	                                   (double)cfg->events.namespace_rate,
	                                   (double)cfg->events.namespace_burst)) != CA_OK) {
		snprintf(err, errlen, "events: cannot allocate the queue and memories (%s)", ca_strerror(rc));
		goto out;
	}

	/* One reflector for all namespaces, or one per listed namespace. */
	ev->nrefl = nss->count ? nss->count : 1;
	ev->refl = calloc(ev->nrefl, sizeof *ev->refl);
	rc = CA_ENOMEM;
	if (!ev->refl)
		goto out;
	const char *base = ev->v1new ? "/apis/events.k8s.io/v1" : "/api/v1";
	for (size_t i = 0; i < ev->nrefl; i++) {
		struct refl *rf = &ev->refl[i];
		struct ca_buf p;
		rf->ev = ev;
		rf->index = i;
		ca_buf_init(&p, 512);
		if (nss->count) {
			/* Names were validated by the config loader (one place). */
			rc = ca_buf_printf(&p, "%s/namespaces/%s/events", base, nss->items[i]);
		} else {
			rc = ca_buf_printf(&p, "%s/events", base);
		}
		rf->path = rc == CA_OK ? ca_buf_take(&p, NULL) : NULL;
		ca_buf_fini(&p);
		rc = CA_ENOMEM;
		if (!rf->path)
			goto out;
	}

	if (spool_wanted(cfg)) {
		const char **paths = calloc(ev->nrefl, sizeof *paths);
		rc = CA_ENOMEM;
		if (!paths)
			goto out;
		for (size_t i = 0; i < ev->nrefl; i++)
			paths[i] = ev->refl[i].path;
		struct ca_spool_options so = {
			.dir = cfg->events.spool_dir,
			.max_bytes = (uint64_t)cfg->events.spool_max_bytes,
			.segment_bytes = (uint64_t)cfg->events.spool_segment_bytes,
			.max_payload = spool_max_payload(cfg),
			.streams = paths,
			.nstreams = ev->nrefl,
			.inherited = seed_dedup,
			.inherited_arg = ev,
		};
		rc = ca_spool_open(&ev->spool, &so, err, errlen);
		free(paths);
		if (rc != CA_OK)
			goto out;
		struct ca_spool_stats sst;
		ca_spool_get_stats(ev->spool, &sst);
		if (sst.records) {
			char n[24], bytes[24];
			snprintf(n, sizeof n, "%llu", (unsigned long long)sst.records);
			snprintf(bytes, sizeof bytes, "%llu", (unsigned long long)sst.bytes);
			ca_log(CA_LOG_INFO, COMPONENT, "event spool holds events of an earlier run: they are "
			       "published before new ones", "dir", cfg->events.spool_dir, "events", n,
			       "bytes", bytes, NULL);
		}
	}

	if (cfg->events.state_file && cfg->events.state_file[0]) {
		ev->state_file = strdup(cfg->events.state_file);
		if (!ev->state_file)
			goto out;
		load_state(ev, &state, &nstate);
		if ((rc = ca_events_state_writer_new(&ev->writer, ev->state_file)) != CA_OK) {
			snprintf(err, errlen, "events: cannot start the state file writer (%s)", ca_strerror(rc));
			goto out;
		}
	}

	if (kube) {
		/* Ask the API server for the one type wanted (Warning by default):
		 * a cluster's Normal events are most of its traffic. */
		char selector[96] = "";
		const struct ca_strlist *types = &cfg->events.include_types;
		if (!ev->v1new && types->count == 1 && selector_value(types->items[0]))
			snprintf(selector, sizeof selector, "type=%s", types->items[0]);
		/* Event watches carry no bookmarks, so on a quiet cluster the only
		 * progress a healthy watch shows is its renewal when the server
		 * ends it after timeoutSeconds. Keep that renewal well inside
		 * kubernetes.stall_timeout, or liveness would fail on quiet clusters. */
		int64_t watch_min, watch_max;
		ca_config_watch_timeouts(cfg, &watch_min, &watch_max);
		for (size_t i = 0; i < ev->nrefl; i++) {
			struct refl *rf = &ev->refl[i];
			const char *resume = NULL;
			for (size_t k = 0; k < nstate; k++)
				if (strcmp(state[k].key, rf->path) == 0)
					resume = state[k].rv;
			char name[96];
			snprintf(name, sizeof name, nss->count ? "events/%s" : "events",
			         nss->count ? nss->items[i] : "");
			struct ca_reflector_options ro = {
				.name = name,
				.path = rf->path,
				.field_selector = selector[0] ? selector : NULL,
				.page_size = cfg->kubernetes.page_size,
				.watch_timeout_min_ms = watch_min,
				.watch_timeout_max_ms = watch_max,
				.backoff_initial_ms = cfg->kubernetes.backoff_initial_ms,
				.backoff_max_ms = cfg->kubernetes.backoff_max_ms,
				.max_object_bytes = cfg->events.max_object_bytes > 0
				                    ? (size_t)cfg->events.max_object_bytes : 0,
				.max_list_bytes = cfg->kubernetes.max_list_page_bytes > 0
				                  ? (size_t)cfg->kubernetes.max_list_page_bytes : 0,
				.resume_resource_version = resume,
			};
			struct ca_reflector_callbacks cbs = {
				.on_list_begin = cb_list_begin,
				.on_object = cb_object,
				.on_synced = cb_synced,
				.on_resource_version = cb_rv,
			};
			rc = ca_reflector_new(&rf->r, kube, &ro, &cbs, rf);
			if (rc != CA_OK) {
				snprintf(err, errlen, "events: cannot create the reflector for %s (%s)",
				         rf->path, ca_strerror(rc));
				goto out;
			}
			if (resume) {
				/* Resuming: the watch replays only what is newer. */
				ca_strlcpy(rf->rv, resume, sizeof rf->rv);
				rf->synced_once = false;
			}
		}
	} else {
		for (size_t i = 0; i < ev->nrefl; i++)
			for (size_t k = 0; k < nstate; k++)
				if (strcmp(state[k].key, ev->refl[i].path) == 0)
					ca_strlcpy(ev->refl[i].rv, state[k].rv, sizeof ev->refl[i].rv);
	}
	if (nstate) {
		/* The file already holds these: no rewrite until they move. */
		ev->state_written = state;
		ev->n_state_written = 0;
		for (size_t k = 0; k < nstate; k++)
			for (size_t i = 0; i < ev->nrefl; i++)
				if (strcmp(state[k].key, ev->refl[i].path) == 0)
					ev->n_state_written++;
		if (ev->n_state_written != nstate)
			ev->n_state_written = 0; /* stale keys: rewrite */
		state = NULL;
	}

	if (loop) {
		rc = ca_loop_timer_new(loop, on_timer, ev, &ev->timer);
		if (rc == CA_OK && ev->spool)
			rc = ca_loop_timer_new(loop, on_replay_timer, ev, &ev->replay_timer);
		if (rc != CA_OK) {
			snprintf(err, errlen, "events: cannot create a timer (%s)", ca_strerror(rc));
			goto out;
		}
	}
	*out = ev;
	ev = NULL;
	rc = CA_OK;
out:
	free(state);
	if (ev) {
		free(ev->state_file); /* no final write for a half-built watcher */
		ev->state_file = NULL;
		ca_events_free(ev);
	}
	if (rc == CA_ENOMEM && err && errlen && !err[0])
		snprintf(err, errlen, "events: out of memory");
	return rc;
}

enum ca_err ca_events_new_loop(struct ca_events **out, struct ca_loop *loop,
                               struct ca_kube *kube, const struct ca_config *cfg,
                               const char *cluster_id, const struct ca_events_sink *sink,
                               void *sink_arg, char *err, size_t errlen)
{
	return ca_events_new_internal(out, loop, kube, cfg, cluster_id, sink, sink_arg, NULL,
	                              err, errlen);
}

enum ca_err ca_events_start(struct ca_events *ev)
{
	ev->started_mono = ca_now_monotonic_ms();
	for (size_t i = 0; i < ev->nrefl; i++) {
		if (!ev->refl[i].r)
			continue;
		enum ca_err rc = ca_reflector_start(ev->refl[i].r);
		if (rc != CA_OK)
			return rc;
	}
	return CA_OK;
}

size_t ca_events_watch_count(const struct ca_events *ev)
{
	return ev->nrefl;
}

const char *ca_events_watch_namespace(const struct ca_events *ev, size_t i)
{
	const struct ca_strlist *nss = &ev->cfg->events.namespaces;
	return i < nss->count ? nss->items[i] : "";
}

const char *ca_events_handed_rv(const struct ca_events *ev, size_t i)
{
	return ca_events_resume_rv(ev, i);
}

enum ca_err ca_events_set_resume(struct ca_events *ev, size_t i, const char *rv)
{
	if (i >= ev->nrefl || !ca_events_rv_valid(rv))
		return CA_EINVAL;
	struct refl *rf = &ev->refl[i];
	/* As a state file's resume point (ca_events_new_loop), over it. */
	if (rf->r) {
		enum ca_err rc = ca_reflector_set_resume(rf->r, rv);
		if (rc != CA_OK)
			return rc;
	}
	ca_strlcpy(rf->rv, rv, sizeof rf->rv);
	rf->synced_once = false;
	return CA_OK;
}

void ca_events_flush(struct ca_events *ev)
{
	ev->sink_up = true;
	drain(ev);
	schedule(ev);
}

void ca_events_free(struct ca_events *ev)
{
	if (!ev)
		return;
	/* With a spool, what waits in the ring goes to disk, so a restart
	 * publishes it instead of losing it. */
	while (ev->spool && ev->queue.len)
		spill(ev, ca_events_queue_pop(&ev->queue));
	if (ev->state_file) {
		ev->state_dirty = true;
		ca_events_save_state(ev);
	}
	ca_loop_timer_free(ev->timer);
	ca_loop_timer_free(ev->replay_timer);
	ca_spool_free(ev->spool);
	for (size_t i = 0; i < ev->nrefl && ev->refl; i++) {
		ca_reflector_free(ev->refl[i].r);
		free(ev->refl[i].path);
	}
	free(ev->refl);
	ca_events_queue_fini(&ev->queue);
	ca_events_agg_fini(&ev->agg);
	ca_events_dedup_fini(&ev->dedup);
	ca_events_ratelimit_fini(&ev->rl);
	if (ev->filter_ready)
		ca_events_filter_fini(&ev->filter);
	ca_events_state_writer_free(ev->writer); /* writes what is pending first */
	free(ev->state_written);
	free(ev->state_file);
	free(ev->cluster_id);
	free(ev);
}

/* ------------------------------------------------------------------------
 * Stats, metrics, health */

void ca_events_get_stats(const struct ca_events *ev, struct ca_events_stats *out)
{
	*out = ev->st;
	out->queue_size = ev->queue.len;
	out->queue_capacity = ev->queue.cap;
	out->queue_bytes = ev->queue.bytes;
	out->window_bytes = ev->agg.pending_bytes;
}

void ca_events_render_metrics(const struct ca_events *ev, struct ca_prom *p)
{
	/* Without a watcher (disabled, or before the cluster ID is known) the
	 * families are still there, at 0, so alerts see 0 and not "no data". */
	static const struct ca_events zero;
	if (!ev)
		ev = &zero;
	ca_prom_single(p, "agent_event_queue_size", "gauge",
	               "Events waiting to be published.", (double)ev->queue.len);
	ca_prom_single(p, "agent_events_received_total", "counter",
	               "Kubernetes Event objects received (added or modified).", (double)ev->st.received);
	ca_prom_single(p, "agent_events_published_total", "counter",
	               "Events handed to NATS.", (double)ev->st.published);
	ca_prom_single(p, "agent_events_filtered_total", "counter",
	               "Events rejected by a filter or older than events.since.", (double)ev->st.filtered);
	ca_prom_single(p, "agent_events_dropped_total", "counter",
	               "Events lost because the queue was full or NATS refused them.", (double)ev->st.dropped);
	ca_prom_single(p, "agent_events_deduplicated_total", "counter",
	               "Events seen again with no new count or timestamp (relists, reconnects).",
	               (double)ev->st.deduplicated);
	ca_prom_single(p, "agent_events_rate_limited_total", "counter",
	               "Events dropped by the per-namespace rate limit.", (double)ev->st.rate_limited);
	ca_prom_single(p, "agent_events_aggregated_total", "counter",
	               "Repeats folded into a later message by the dedup window.",
	               (double)ev->st.aggregated);
	ca_prom_single(p, "agent_events_windows_closed_early_total", "counter",
	               "Aggregation windows closed before their time to stay within events.dedup_window_bytes.",
	               (double)ev->st.windows_closed_early);
	ca_prom_single(p, "agent_events_held_bytes", "gauge",
	               "Bytes of events held by the queue and the aggregation windows.",
	               (double)(ev->queue.bytes + ev->agg.pending_bytes));
	struct ca_spool_stats sp;
	ca_spool_get_stats(ev->spool, &sp);
	ca_prom_single(p, "agent_events_spool_bytes", "gauge",
	               "Bytes of the event spool on disk (events.spool_dir).", (double)sp.bytes);
	ca_prom_single(p, "agent_events_spool_records", "gauge",
	               "Events in the spool waiting to be published.", (double)sp.records);
	ca_prom_single(p, "agent_events_spooled_total", "counter",
	               "Events written to the spool because NATS could not take them and the queue was full.",
	               (double)sp.spooled);
	ca_prom_single(p, "agent_events_spool_replayed_total", "counter",
	               "Events read back from the spool and handed to NATS.", (double)sp.replayed);
	ca_prom_single(p, "agent_events_spool_dropped_total", "counter",
	               "Events lost from the spool: the oldest deleted at events.spool_max_bytes, or not written.",
	               (double)sp.dropped);
	ca_prom_single(p, "agent_events_spool_corrupt_total", "counter",
	               "Corrupt or torn spool records skipped (a checksum or length that did not hold).",
	               (double)sp.corrupt);
	uint64_t t[INVALID_REASONS];
	invalid_totals(ev, t);
	ca_prom_family(p, "agent_events_invalid_total", "counter",
	               "Event objects skipped as invalid: over events.max_object_bytes (oversized), "
	               "not valid JSON (unparsable), without metadata.uid (no_uid).");
	for (int i = 0; i < INVALID_REASONS; i++)
		ca_prom_sample(p, "agent_events_invalid_total", "reason", invalid_reason_names[i], (double)t[i]);
}

void ca_events_health_json(const struct ca_events *ev, struct ca_buf *out)
{
	int64_t stall = ev->cfg ? ev->cfg->kubernetes.stall_timeout_ms : 0;
	ca_buf_printf(out, "{\"api\":\"%s\",\"stalled\":%s,\"paused\":%s,\"sink_up\":%s,"
	              "\"queue_size\":%zu,\"queue_capacity\":%zu,\"queue_bytes\":%zu,"
	              "\"window_bytes\":%zu,\"windows_closed_early\":%llu,\"received\":%llu,"
	              "\"published\":%llu,\"filtered\":%llu,\"dropped\":%llu,"
	              "\"deduplicated\":%llu,\"rate_limited\":%llu,\"aggregated\":%llu,"
	              "\"invalid\":%llu,\"state_file\":",
	              ev->v1new ? "events.k8s.io/v1" : "core/v1",
	              stall > 0 && ca_events_stalled(ev, stall) ? "true" : "false",
	              ev->paused ? "true" : "false", ev->sink_up ? "true" : "false",
	              ev->queue.len, ev->queue.cap, ev->queue.bytes, ev->agg.pending_bytes,
	              (unsigned long long)ev->st.windows_closed_early,
	              (unsigned long long)ev->st.received, (unsigned long long)ev->st.published,
	              (unsigned long long)ev->st.filtered, (unsigned long long)ev->st.dropped,
	              (unsigned long long)ev->st.deduplicated, (unsigned long long)ev->st.rate_limited,
	              (unsigned long long)ev->st.aggregated, (unsigned long long)ev->invalid);
	if (ev->state_file && ev->writer) {
		uint64_t writes = 0;
		int64_t last_us = 0;
		char werr[256];
		ca_events_state_writer_status(ev->writer, werr, sizeof werr, &writes, &last_us);
		ca_buf_append_str(out, "{\"path\":");
		ca_buf_append_json_string(out, ev->state_file);
		ca_buf_append_str(out, ",\"error\":");
		ca_buf_append_json_string(out, ev->state_error);
		ca_buf_printf(out, ",\"writes\":%llu,\"last_write_us\":%lld,\"last_submit_us\":%lld}",
		              (unsigned long long)writes, (long long)last_us, (long long)ev->state_submit_us);
	} else {
		ca_buf_append_str(out, "null");
	}
	ca_buf_append_str(out, ",\"spool\":");
	if (ev->spool) {
		struct ca_spool_stats sp;
		ca_spool_get_stats(ev->spool, &sp);
		ca_buf_append_str(out, "{\"dir\":");
		ca_buf_append_json_string(out, ev->cfg->events.spool_dir);
		ca_buf_printf(out, ",\"bytes\":%llu,\"max_bytes\":%lld,\"records\":%llu,\"segments\":%llu,"
		              "\"spooled\":%llu,\"replayed\":%llu,\"dropped\":%llu,\"corrupt\":%llu,"
		              "\"inherited\":%llu,\"write_errors\":%llu,\"append_us\":%lld,\"read_us\":%lld,"
		              "\"read_bytes\":%llu,\"error\":",
		              (unsigned long long)sp.bytes, (long long)ev->cfg->events.spool_max_bytes,
		              (unsigned long long)sp.records, (unsigned long long)sp.segments,
		              (unsigned long long)sp.spooled, (unsigned long long)sp.replayed,
		              (unsigned long long)sp.dropped, (unsigned long long)sp.corrupt,
		              (unsigned long long)sp.inherited, (unsigned long long)sp.write_errors,
		              (long long)sp.append_us, (long long)sp.read_us, (unsigned long long)sp.read_bytes);
		ca_buf_append_json_string(out, ev->spool_error);
		ca_buf_append_str(out, "}");
	} else {
		ca_buf_append_str(out, "null");
	}
	ca_buf_append_str(out, ",\"reflectors\":[");
	for (size_t i = 0; i < ev->nrefl; i++) {
		if (i)
			ca_buf_append_str(out, ",");
		ca_buf_append_str(out, "{\"path\":");
		ca_buf_append_json_string(out, ev->refl[i].path);
		ca_buf_append_str(out, ",\"resource_version\":");
		ca_buf_append_json_string(out, ev->refl[i].rv);
		if (ev->refl[i].r) {
			ca_buf_append_str(out, ",\"watch\":");
			ca_reflector_health_json(ev->refl[i].r, out);
		}
		ca_buf_append_str(out, "}");
	}
	ca_buf_append_str(out, "]}");
}

bool ca_events_stalled(const struct ca_events *ev, int64_t stall_timeout_ms)
{
	if (stall_timeout_ms <= 0)
		return false;
	int64_t now = ca_now_monotonic_ms();
	for (size_t i = 0; i < ev->nrefl; i++)
		if (ev->refl[i].r && ca_reflector_stalled(ev->refl[i].r, now, stall_timeout_ms))
			return true;
	/* Paused on purpose while NATS drains the queue: progress is the sink
	 * taking events. A pause the sink never ends is a stall. */
	if (ev->paused) {
		int64_t last = ev->last_publish_mono > ev->started_mono ? ev->last_publish_mono : ev->started_mono;
		if (now - last > stall_timeout_ms)
			return true;
	}
	return false;
}

bool ca_events_ready(const struct ca_events *ev, char *why, size_t whylen)
{
	for (size_t i = 0; i < ev->nrefl; i++)
		if (ev->refl[i].r && !ca_reflector_ready(ev->refl[i].r, why, whylen))
			return false;
	ca_set_err(why, whylen, "%s", "");
	return true;
}

/* ------------------------------------------------------------------------
 * The module table (core/module.h) */

static void module_health(const void *self, struct ca_module_health *out)
{
	const struct ca_events *ev = self;
	int64_t stall = ev->cfg ? ev->cfg->kubernetes.stall_timeout_ms : 0;
	char why[256];
	if (ca_events_stalled(ev, stall)) {
		char limit[32];
		ca_format_duration(stall, limit, sizeof limit);
		out->live = false;
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason,
		           "event watch made no progress for %s (kubernetes.stall_timeout)", limit);
	} else if (!ca_events_ready(ev, why, sizeof why)) {
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason, "event watch %s", why);
	}
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	ca_events_health_json(self, out);
}

static void module_metrics(const void *self, struct ca_prom *p)
{
	ca_events_render_metrics(self, p);
}

const struct ca_module_ops ca_events_module = {
	.name = "events",
	.health = module_health,
	.health_json = module_health_json,
	.render_metrics = module_metrics,
};

size_t ca_events_reflector_count(const struct ca_events *ev)
{
	return ev->nrefl;
}

const char *ca_events_reflector_path(const struct ca_events *ev, size_t i)
{
	return i < ev->nrefl ? ev->refl[i].path : "";
}

bool ca_events_paused(const struct ca_events *ev)
{
	return ev->paused;
}

enum ca_err ca_events_msg_id(const struct ca_msg_event *ev, char *out, size_t outlen)
{
	if (!out || outlen == 0)
		return CA_EINVAL;
	/* uid + resourceVersion: each version of an Event object is published
	 * at most once, so this never names two different messages, and a
	 * replay of the same version (restart, relist) gets the same id.
	 * uid + count would not do: an aggregated message's count includes
	 * other Events' occurrences, and a lastTimestamp-only update keeps the
	 * count, so a later, different message could reuse the id and a
	 * JetStream stream would drop it as a duplicate. */
	int n;
	if (ev->resource_version && *ev->resource_version)
		n = snprintf(out, outlen, "%s-%s", ev->uid ? ev->uid : "", ev->resource_version);
	else
		n = snprintf(out, outlen, "%s-c%lld", ev->uid ? ev->uid : "", (long long)ev->count);
	if (n < 0)
		return CA_EINVAL;
	return (size_t)n < outlen ? CA_OK : CA_ETOOBIG;
}
