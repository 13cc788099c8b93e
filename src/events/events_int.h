/* events/events_int.h: what the files of the events module share, and the
 * internal API the unit tests drive without a server.
 *
 * fold.c      Event object (struct ca_kobj) -> struct ca_event_rec
 * classify.c  the reason table
 * filter.c    filters compiled from the config
 * table.c     a fixed-capacity u64-keyed hash with an LRU/FIFO list, used
 *             by dedup memory, aggregation windows and rate limiter
 * dedup.c     uid -> (count, last timestamp) memory; aggregation windows;
 *             per-namespace token buckets
 * queue.c     the ring of records waiting for the sink
 * state.c     the state file
 * spool.c     the on-disk spool behind the queue (spool.h)
 * events.c    the reflector glue and the pipeline
 *
 * Loop thread only, like the public API. */
#ifndef CA_EVENTS_EVENTS_INT_H
#define CA_EVENTS_EVENTS_INT_H

#include <regex.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/utf8.h"
#include "events/events.h"
#include "kube/kobj.h"
#include "kube/reflector.h"

/* ---- folded records ---------------------------------------------------- */

/* Non-message strings longer than this are cut (at a UTF-8 boundary, no
 * marker): names are at most 253 bytes in Kubernetes, so only garbage is
 * cut. */
#define CA_EVENTS_MAX_FIELD 1024
/* Counts are int32 in the API; anything out of [1, this] is clamped. */
#define CA_EVENTS_MAX_COUNT 2147483647LL

/* One Event, owned, in a single allocation (the strings follow the struct).
 * msg's strings point into the record; msg.cluster_id points at the
 * watcher's copy and is set when the record is published. */
struct ca_event_rec {
	struct ca_msg_event msg;
	const char *resume_before; /* resourceVersion to resume from if this record is lost */
	uint64_t uid_hash;
	uint64_t key_hash;         /* aggregation key: involved object + reason */
	uint64_t ns_hash;
	size_t reflector;          /* index of the reflector that delivered it */
	int64_t enqueued_mono_ms;
	size_t bytes;              /* the whole block (struct and strings): what caps count */
};

struct ca_event_fold_options {
	size_t max_message_bytes;  /* 0 = 4096 */
	int64_t observed_at;       /* unix ms stamped on the record */
	const char *resume_before; /* copied; NULL = "" */
};

/* Fold an Event object (core/v1 or events.k8s.io/v1, told apart by its
 * members) into a new record; classification included. Missing fields give
 * "" strings and 0 timestamps; a count out of range is clamped to
 * [1, CA_EVENTS_MAX_COUNT]. CA_EINVAL if obj is not an object with a uid
 * (no dedup or message id is possible without one); CA_ENOMEM. */
enum ca_err ca_events_fold(const struct ca_kobj *obj, const struct ca_event_fold_options *o,
                           struct ca_event_rec **out);
/* A copy of rec (the aggregation window keeps one). */
enum ca_err ca_events_rec_dup(const struct ca_event_rec *rec, struct ca_event_rec **out);
void ca_events_rec_free(struct ca_event_rec *rec);

/* 64-bit FNV-1a, mixed; h = 0 to start, chain to hash several strings. */
uint64_t ca_events_hash(uint64_t h, const char *s);
/* The dedup memory's key of a uid (a record's uid_hash). */
uint64_t ca_events_uid_hash(const char *uid);

/* ---- classification ---------------------------------------------------- */

enum ca_event_severity { CA_SEV_INFO = 0, CA_SEV_WARNING, CA_SEV_CRITICAL };

#define CA_CLASSIFY_NORMAL_TOO 1u /* a failure even when the event type is Normal */

struct ca_classify_entry {
	const char *reason;
	const char *message_hint;  /* NULL, or a substring the message must contain */
	const char *category;
	enum ca_event_severity severity;
	unsigned flags;
	const char *source;        /* who emits it, for docs/EVENTS.md */
};

/* The table, for tests and docs. */
const struct ca_classify_entry *ca_events_classify_table(size_t *n);
const char *ca_events_severity_name(enum ca_event_severity s);
/* "info"/"warning"/"critical" -> level; CA_EINVAL otherwise. */
enum ca_err ca_events_severity_parse(const char *s, enum ca_event_severity *out);
/* True for the eleven categories of DESIGN.md §2. */
bool ca_events_category_valid(const char *category);

/* ---- filters ----------------------------------------------------------- */

struct ca_events_filter {
	const struct ca_strlist *namespaces, *exclude_namespaces, *types,
	      *reasons, *exclude_reasons, *kinds, *exclude_kinds; /* borrowed from the config */
	regex_t message_re, exclude_message_re;
	bool has_message_re, has_exclude_message_re;
	enum ca_event_severity min_severity;
};

/* Compile from cfg->events; an invalid regex or severity gives CA_EINVAL
 * and a sentence naming the key. The lists stay borrowed from cfg. */
enum ca_err ca_events_filter_init(struct ca_events_filter *f, const struct ca_config *cfg,
                                  char *err, size_t errlen);
void ca_events_filter_fini(struct ca_events_filter *f);
/* True if the record passes every filter. */
bool ca_events_filter_match(const struct ca_events_filter *f, const struct ca_event_rec *rec);

/* ---- fixed-capacity table with an ordered list ------------------------- */

/* Keys are nonzero 64-bit hashes; slots are 0 .. cap-1; the list runs from
 * the oldest (head) to the newest (tail) entry. The caller keeps its values
 * in arrays indexed by slot. */
struct ca_events_table {
	uint64_t *keys;     /* per slot; 0 = free */
	uint32_t *prev, *next;
	uint32_t *index;    /* open addressing: slot + 1, 0 = empty */
	size_t cap, mask, count;
	uint32_t head, tail, free_list;
};
#define CA_EVENTS_NONE UINT32_MAX

enum ca_err ca_events_table_init(struct ca_events_table *t, size_t cap);
/* What init allocates for cap entries (for the memory budget). */
size_t ca_events_table_bytes(size_t cap);
void ca_events_table_fini(struct ca_events_table *t);
uint32_t ca_events_table_find(const struct ca_events_table *t, uint64_t key);
/* Insert a key not present into a table that is not full (the caller
 * first removes ca_events_table_oldest() when ca_events_table_full()).
 * Returns the slot, at the newest end. */
uint32_t ca_events_table_insert(struct ca_events_table *t, uint64_t key);
void ca_events_table_remove(struct ca_events_table *t, uint32_t slot);
/* Move slot to the newest end. */
void ca_events_table_touch(struct ca_events_table *t, uint32_t slot);
static inline uint32_t ca_events_table_oldest(const struct ca_events_table *t) { return t->head; }
static inline bool ca_events_table_full(const struct ca_events_table *t) { return t->count == t->cap; }

/* ---- dedup memory ------------------------------------------------------ */

struct ca_events_dedup {
	struct ca_events_table t;
	int64_t *count, *last_ts;
};

enum ca_err ca_events_dedup_init(struct ca_events_dedup *d, size_t cap);
void ca_events_dedup_fini(struct ca_events_dedup *d);
/* Record this occurrence. Returns true if it is new (uid unseen, or count
 * or last timestamp advanced) and then sets *delta to the occurrences it
 * adds (count - previous count, at least 0; the count for an unseen uid).
 * False for a repeat already seen. The oldest uid is forgotten when full. */
bool ca_events_dedup_check(struct ca_events_dedup *d, const struct ca_event_rec *rec,
                           int64_t *delta);

/* ---- aggregation windows ----------------------------------------------- */

struct ca_events_window {
	int64_t closes_at;          /* monotonic ms */
	struct ca_event_rec *pending; /* latest folded repeat, owned, or NULL */
	int64_t pending_uid_delta;  /* occurrences of pending's uid folded */
	int64_t carry;              /* occurrences of other uids folded */
	int64_t first_ts;           /* earliest first_timestamp folded */
	int64_t folded;             /* repeats folded */
};

struct ca_events_agg {
	struct ca_events_table t;
	struct ca_events_window *w;
	int64_t window_ms;
	size_t pending_bytes;       /* bytes of the pending records held */
	size_t max_pending_bytes;   /* cap on pending_bytes (events.dedup_window_bytes) */
};

/* cap windows at once, their pending records at most max_pending_bytes
 * (0 = no byte cap) in all. */
enum ca_err ca_events_agg_init(struct ca_events_agg *a, size_t cap, int64_t window_ms,
                               size_t max_pending_bytes);
void ca_events_agg_fini(struct ca_events_agg *a);
/* Offer a new occurrence (taken). Returns the record to publish now (the
 * first of its key in a window: *now_rec = rec) or NULL when it was folded
 * into the key's open window. When the table is full the oldest window is
 * closed early: its pending record (if any) is returned in *evicted. */
void ca_events_agg_offer(struct ca_events_agg *a, struct ca_event_rec *rec, int64_t delta,
                         int64_t now_ms, struct ca_event_rec **now_rec,
                         struct ca_event_rec **evicted);
/* While the pending records pass the byte cap, close the oldest window
 * early. Returns one closed window's folded record (owned by the caller,
 * to publish) or NULL; call again until it returns NULL and
 * ca_events_agg_over_budget() is false. */
struct ca_event_rec *ca_events_agg_shed(struct ca_events_agg *a);
static inline bool ca_events_agg_over_budget(const struct ca_events_agg *a)
{
	return a->max_pending_bytes && a->pending_bytes > a->max_pending_bytes;
}
/* Close the oldest window if it closes at or before now_ms. Returns true
 * when a window was closed; *out gets its folded record (count and
 * first_timestamp set; owned by the caller) or NULL when nothing was
 * folded. A window that had repeats reopens for one more period. */
bool ca_events_agg_expire(struct ca_events_agg *a, int64_t now_ms, struct ca_event_rec **out);
/* Monotonic ms of the next window to close, or -1. */
int64_t ca_events_agg_next_deadline(const struct ca_events_agg *a);

/* ---- per-namespace rate limit ------------------------------------------ */

struct ca_events_ratelimit {
	struct ca_events_table t;
	double *tokens;
	int64_t *last_ms;
	double rate, burst;         /* rate 0 = unlimited */
};

enum ca_err ca_events_ratelimit_init(struct ca_events_ratelimit *r, size_t cap, double rate,
                                     double burst);
void ca_events_ratelimit_fini(struct ca_events_ratelimit *r);
/* Take one token for ns_hash at now_ms; false when over the limit. */
bool ca_events_ratelimit_allow(struct ca_events_ratelimit *r, uint64_t ns_hash, int64_t now_ms);

/* ---- queue ------------------------------------------------------------- */

struct ca_events_queue {
	struct ca_event_rec **items;
	size_t cap, head, len;
	size_t bytes, max_bytes;    /* records' bytes held, and their cap (0 = none) */
};

/* At most cap records and max_bytes of them (0 = count only). */
enum ca_err ca_events_queue_init(struct ca_events_queue *q, size_t cap, size_t max_bytes);
/* Frees the records still queued. */
void ca_events_queue_fini(struct ca_events_queue *q);
/* Append (taken). While full (by count or bytes) the oldest records are
 * freed first; returns how many were dropped. A record larger than
 * max_bytes alone is still taken when the queue is empty, so it can be
 * published. */
size_t ca_events_queue_push(struct ca_events_queue *q, struct ca_event_rec *rec);
static inline struct ca_event_rec *ca_events_queue_peek(const struct ca_events_queue *q)
{
	return q->len ? q->items[q->head] : NULL;
}
/* True when pushing rec would drop the oldest record. */
static inline bool ca_events_queue_would_drop(const struct ca_events_queue *q,
                                              const struct ca_event_rec *rec)
{
	return q->len == q->cap || (q->max_bytes && q->len > 0 && q->bytes + rec->bytes > q->max_bytes);
}
/* Remove the oldest and hand it to the caller. */
struct ca_event_rec *ca_events_queue_pop(struct ca_events_queue *q);
/* i-th oldest, i < len. */
static inline struct ca_event_rec *ca_events_queue_at(const struct ca_events_queue *q, size_t i)
{
	return q->items[(q->head + i) % q->cap];
}

/* ---- state file -------------------------------------------------------- */

#define CA_EVENTS_MAX_RV 127

struct ca_events_state_entry {
	char key[256];                  /* the reflector's collection path */
	char rv[CA_EVENTS_MAX_RV + 1];
};

/* Read the state file. CA_ENOTFOUND when it does not exist; CA_EPROTO when
 * it is corrupt (err says how); CA_EIO when unreadable. On success fills up
 * to max entries and *n. */
enum ca_err ca_events_state_read(const char *path, struct ca_events_state_entry *entries,
                                 size_t max, size_t *n, int64_t *saved_at,
                                 char *err, size_t errlen);
/* Write atomically (temporary file in the same directory, then rename),
 * on the calling thread. */
enum ca_err ca_events_state_write(const char *path, const struct ca_events_state_entry *entries,
                                  size_t n, int64_t saved_at);
/* The file's text. */
enum ca_err ca_events_state_format(struct ca_buf *out, const struct ca_events_state_entry *entries,
                                   size_t n, int64_t saved_at);

/* The writer: a thread that writes the state file so the loop never waits
 * on the disk. submit() formats the entries under a lock and returns (a
 * text not yet written is replaced by the newer one); the thread writes it
 * with ca_events_state_write's atomic rename. flush() waits until all that
 * was submitted is written and returns the last write's status. status()
 * gives the last write's error ("" when it worked), the number of writes
 * and how long the last one took. free() writes what is pending, then
 * stops the thread. submit, flush, status, free: loop thread (one owner). */
struct ca_events_state_writer;
enum ca_err ca_events_state_writer_new(struct ca_events_state_writer **out, const char *path);
enum ca_err ca_events_state_writer_submit(struct ca_events_state_writer *w,
                                          const struct ca_events_state_entry *entries, size_t n,
                                          int64_t saved_at);
enum ca_err ca_events_state_writer_flush(struct ca_events_state_writer *w);
void ca_events_state_writer_status(struct ca_events_state_writer *w, char *error, size_t errlen,
                                   uint64_t *writes, int64_t *last_us);
void ca_events_state_writer_free(struct ca_events_state_writer *w);
/* True if rv is a resourceVersion a state file may hold (1..127 printable,
 * no spaces). */
bool ca_events_rv_valid(const char *rv);

/* ---- the pipeline, driven directly by tests ---------------------------- */

/* Clock used by the pipeline (tests replace it). */
struct ca_events_clock {
	int64_t (*mono_ms)(void *arg);
	int64_t (*unix_ms)(void *arg);
	void *arg;
};

/* Like ca_events_new_loop; kube may be NULL (no reflectors are created, the
 * test calls the handlers below with reflector index 0 .. nrefl-1, where
 * nrefl is the number of watched namespaces or 1). loop may be NULL (no
 * timers: call ca_events_tick). */
enum ca_err ca_events_new_internal(struct ca_events **out, struct ca_loop *loop,
                                   struct ca_kube *kube, const struct ca_config *cfg,
                                   const char *cluster_id, const struct ca_events_sink *sink,
                                   void *sink_arg, const struct ca_events_clock *clock,
                                   char *err, size_t errlen);
/* The reflector callbacks for reflector i. */
void ca_events_on_list_begin(struct ca_events *ev, size_t i);
void ca_events_on_object(struct ca_events *ev, size_t i, enum ca_watch_type type,
                         const struct ca_kobj *obj, bool from_list);
void ca_events_on_synced(struct ca_events *ev, size_t i, const char *rv);
void ca_events_on_resource_version(struct ca_events *ev, size_t i, const char *rv);
/* Close due aggregation windows and write the state file when due. */
void ca_events_tick(struct ca_events *ev);
/* Write the state file now (if configured). */
enum ca_err ca_events_save_state(struct ca_events *ev);
/* The resourceVersion reflector i would resume from (what the state file
 * gets), or "" when none. */
const char *ca_events_resume_rv(const struct ca_events *ev, size_t i);
/* Collection path of reflector i ("/api/v1/events"). */
const char *ca_events_reflector_path(const struct ca_events *ev, size_t i);
size_t ca_events_reflector_count(const struct ca_events *ev);
bool ca_events_paused(const struct ca_events *ev);

#endif
