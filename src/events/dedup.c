/* events/dedup.c: the three bounded memories of the pipeline.
 *
 * - dedup: uid -> highest (count, lastTimestamp) seen, LRU. A relist or a
 *   resumed watch hands back events already published; only an advance of
 *   count or last timestamp makes one new again (DESIGN.md §3: the key is
 *   uid + count, never uid alone).
 * - aggregation windows: (involved object, reason) -> open window, in
 *   closing order. The first occurrence goes out at once (the orchestrator
 *   acts on it); repeats inside the window fold into one record that goes
 *   out when the window closes, with the latest count.
 * - rate limit: namespace -> token bucket, LRU. A namespace forgotten
 *   because the table is full starts again with a full bucket. */
#include <stdlib.h>
#include <string.h>

#include "events/events_int.h"

static int64_t sat_add(int64_t a, int64_t b)
{
	if (b > 0 && a > CA_EVENTS_MAX_COUNT - b)
		return CA_EVENTS_MAX_COUNT;
	return a + b;
}

/* ---- dedup ------------------------------------------------------------- */

enum ca_err ca_events_dedup_init(struct ca_events_dedup *d, size_t cap)
{
	memset(d, 0, sizeof *d);
	enum ca_err rc = ca_events_table_init(&d->t, cap);
	if (rc != CA_OK)
		return rc;
	d->count = calloc(cap, sizeof *d->count);
	d->last_ts = calloc(cap, sizeof *d->last_ts);
	if (!d->count || !d->last_ts) {
		ca_events_dedup_fini(d);
		return CA_ENOMEM;
	}
	return CA_OK;
}

void ca_events_dedup_fini(struct ca_events_dedup *d)
{
	ca_events_table_fini(&d->t);
	free(d->count);
	free(d->last_ts);
	memset(d, 0, sizeof *d);
}

bool ca_events_dedup_check(struct ca_events_dedup *d, const struct ca_event_rec *rec,
                           int64_t *delta)
{
	int64_t c = rec->msg.count, ts = rec->msg.last_timestamp;
	uint32_t s = ca_events_table_find(&d->t, rec->uid_hash);

	if (s == CA_EVENTS_NONE) {
		if (ca_events_table_full(&d->t))
			ca_events_table_remove(&d->t, ca_events_table_oldest(&d->t));
		s = ca_events_table_insert(&d->t, rec->uid_hash);
		if (s == CA_EVENTS_NONE) { /* cannot happen: room was made */
			*delta = c;
			return true;
		}
		d->count[s] = c;
		d->last_ts[s] = ts;
		*delta = c;
		return true;
	}
	ca_events_table_touch(&d->t, s);
	if (c <= d->count[s] && ts <= d->last_ts[s])
		return false;
	*delta = c > d->count[s] ? c - d->count[s] : 0;
	if (c > d->count[s])
		d->count[s] = c;
	if (ts > d->last_ts[s])
		d->last_ts[s] = ts;
	return true;
}

/* ---- aggregation windows ----------------------------------------------- */

enum ca_err ca_events_agg_init(struct ca_events_agg *a, size_t cap, int64_t window_ms,
                               size_t max_pending_bytes)
{
	memset(a, 0, sizeof *a);
	a->window_ms = window_ms > 0 ? window_ms : 0;
	a->max_pending_bytes = max_pending_bytes;
	if (a->window_ms == 0)
		return CA_OK;
	enum ca_err rc = ca_events_table_init(&a->t, cap);
	if (rc != CA_OK)
		return rc;
	a->w = calloc(cap, sizeof *a->w);
	if (!a->w) {
		ca_events_agg_fini(a);
		return CA_ENOMEM;
	}
	return CA_OK;
}

void ca_events_agg_fini(struct ca_events_agg *a)
{
	if (a->w) {
		for (uint32_t s = a->t.head; s != CA_EVENTS_NONE; s = a->t.next[s])
			ca_events_rec_free(a->w[s].pending);
	}
	ca_events_table_fini(&a->t);
	free(a->w);
	memset(a, 0, sizeof *a);
}

/* The window's folded record, ready to publish, or NULL. */
static struct ca_event_rec *take_pending(struct ca_events_agg *a, struct ca_events_window *w)
{
	struct ca_event_rec *r = w->pending;
	if (!r)
		return NULL;
	a->pending_bytes -= r->bytes;
	r->msg.count = sat_add(r->msg.count, w->carry);
	if (w->first_ts && (r->msg.first_timestamp == 0 || w->first_ts < r->msg.first_timestamp))
		r->msg.first_timestamp = w->first_ts;
	w->pending = NULL;
	w->pending_uid_delta = w->carry = w->folded = w->first_ts = 0;
	return r;
}

static void open_window(struct ca_events_window *w, int64_t now_ms, int64_t window_ms)
{
	memset(w, 0, sizeof *w);
	w->closes_at = now_ms + window_ms;
}

void ca_events_agg_offer(struct ca_events_agg *a, struct ca_event_rec *rec, int64_t delta,
                         int64_t now_ms, struct ca_event_rec **now_rec,
                         struct ca_event_rec **evicted)
{
	*now_rec = NULL;
	*evicted = NULL;
	if (a->window_ms == 0) {
		*now_rec = rec;
		return;
	}
	uint32_t s = ca_events_table_find(&a->t, rec->key_hash);
	if (s == CA_EVENTS_NONE) {
		if (ca_events_table_full(&a->t)) {
			uint32_t old = ca_events_table_oldest(&a->t);
			*evicted = take_pending(a, &a->w[old]);
			ca_events_table_remove(&a->t, old);
		}
		s = ca_events_table_insert(&a->t, rec->key_hash);
		if (s != CA_EVENTS_NONE)
			open_window(&a->w[s], now_ms, a->window_ms);
		*now_rec = rec;
		return;
	}
	struct ca_events_window *w = &a->w[s];
	if (w->closes_at <= now_ms) {
		/* Closed but not expired yet (the timer is late): close it here
		 * and start a new window with this occurrence. */
		*evicted = take_pending(a, w);
		open_window(w, now_ms, a->window_ms);
		ca_events_table_touch(&a->t, s);
		*now_rec = rec;
		return;
	}
	if (!w->pending) {
		w->pending_uid_delta = delta;
	} else if (w->pending->uid_hash == rec->uid_hash) {
		w->pending_uid_delta = sat_add(w->pending_uid_delta, delta);
	} else {
		w->carry = sat_add(w->carry, w->pending_uid_delta);
		w->pending_uid_delta = delta;
	}
	if (w->pending && w->pending->msg.first_timestamp &&
	    (w->first_ts == 0 || w->pending->msg.first_timestamp < w->first_ts))
		w->first_ts = w->pending->msg.first_timestamp;
	if (w->pending)
		a->pending_bytes -= w->pending->bytes;
	ca_events_rec_free(w->pending);
	w->pending = rec;
	a->pending_bytes += rec->bytes;
	w->folded++;
}

struct ca_event_rec *ca_events_agg_shed(struct ca_events_agg *a)
{
	/* Oldest first, windows without a pending record included: they
	 * cost no record bytes but are just as cheap to close, and closing
	 * in list order keeps this O(1) per window. */
	while (ca_events_agg_over_budget(a) && a->t.head != CA_EVENTS_NONE) {
		uint32_t s = a->t.head;
		struct ca_event_rec *r = take_pending(a, &a->w[s]);
		ca_events_table_remove(&a->t, s);
		if (r)
			return r;
	}
	return NULL;
}

bool ca_events_agg_expire(struct ca_events_agg *a, int64_t now_ms, struct ca_event_rec **out)
{
	*out = NULL;
	if (a->window_ms == 0 || a->t.head == CA_EVENTS_NONE)
		return false;
	uint32_t s = a->t.head;
	struct ca_events_window *w = &a->w[s];
	if (w->closes_at > now_ms)
		return false;
	*out = take_pending(a, w);
	if (*out) {
		/* Repeats came: keep watching the key for one more period so a
		 * steady crash loop gives one message per window. */
		open_window(w, now_ms, a->window_ms);
		ca_events_table_touch(&a->t, s);
	} else {
		ca_events_table_remove(&a->t, s);
	}
	return true;
}

int64_t ca_events_agg_next_deadline(const struct ca_events_agg *a)
{
	if (a->window_ms == 0 || a->t.head == CA_EVENTS_NONE)
		return -1;
	return a->w[a->t.head].closes_at;
}

/* ---- rate limit -------------------------------------------------------- */

enum ca_err ca_events_ratelimit_init(struct ca_events_ratelimit *r, size_t cap, double rate,
                                     double burst)
{
	memset(r, 0, sizeof *r);
	r->rate = rate > 0 ? rate : 0;
	r->burst = burst >= 1 ? burst : 1;
	if (r->rate == 0)
		return CA_OK;
	enum ca_err rc = ca_events_table_init(&r->t, cap);
	if (rc != CA_OK)
		return rc;
	r->tokens = calloc(cap, sizeof *r->tokens);
	r->last_ms = calloc(cap, sizeof *r->last_ms);
	if (!r->tokens || !r->last_ms) {
		ca_events_ratelimit_fini(r);
		return CA_ENOMEM;
	}
	return CA_OK;
}

void ca_events_ratelimit_fini(struct ca_events_ratelimit *r)
{
	ca_events_table_fini(&r->t);
	free(r->tokens);
	free(r->last_ms);
	memset(r, 0, sizeof *r);
}

bool ca_events_ratelimit_allow(struct ca_events_ratelimit *r, uint64_t ns_hash, int64_t now_ms)
{
	if (r->rate == 0)
		return true;
	uint32_t s = ca_events_table_find(&r->t, ns_hash);
	if (s == CA_EVENTS_NONE) {
		if (ca_events_table_full(&r->t))
			ca_events_table_remove(&r->t, ca_events_table_oldest(&r->t));
		s = ca_events_table_insert(&r->t, ns_hash);
		if (s == CA_EVENTS_NONE)
			return true;
		r->tokens[s] = r->burst;
		r->last_ms[s] = now_ms;
	} else {
		ca_events_table_touch(&r->t, s);
		if (now_ms > r->last_ms[s]) {
			double t = r->tokens[s] + (double)(now_ms - r->last_ms[s]) * r->rate / 1000.0;
			r->tokens[s] = t < r->burst ? t : r->burst;
			r->last_ms[s] = now_ms;
		}
	}
	if (r->tokens[s] >= 1.0) {
		r->tokens[s] -= 1.0;
		return true;
	}
	return false;
}
