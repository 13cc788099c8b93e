/* kube/store.h: an informer store, the in-memory copy of one resource
 * collection that a reflector keeps up to date (DESIGN.md §3; client-go's
 * cache.Store fed by a reflector).
 *
 * Each object is folded at once, by the consumer's `fold`, into the
 * consumer's own compact value; the store keeps those values by key and
 * owns them from then on. Keys are "namespace/name" (or "name" for objects
 * without a namespace), or metadata.uid when the store is created with
 * CA_STORE_KEY_UID.
 *
 * Fed by a reflector: ADDED and MODIFIED insert or replace, DELETED
 * removes. A LIST marks: every listed object is stored with the list's
 * generation, and when the list completes every entry that the list did not
 * carry is deleted (the "sweep"). A list that fails half way and starts
 * again sweeps nothing until the new list completes, and then removes
 * exactly what that list lacked.
 *
 * Memory is a budget: the store counts what it holds (its table, each
 * entry with its key, and the size fold reported for each value), refuses
 * a new object that would pass max_entries or max_bytes, and says that its
 * view is incomplete (ca_store_over_budget). One entry costs
 * ca_store_entry_bytes(key length) plus the table's share (9 bytes per
 * slot, the table between 3/8 and 3/4 full): about 48 bytes beyond the key
 * and the value (docs/KUBERNETES.md has the measurement).
 *
 * Loop thread only, like the reflector: no locking. The store must not be
 * changed or freed from inside its own callbacks or from inside
 * ca_store_foreach (asserted); reading it there (get, count, stats) is
 * fine. */
#ifndef CA_KUBE_STORE_H
#define CA_KUBE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "kube/kobj.h"
#include "kube/reflector.h"

/* Kubernetes limits: a name is a DNS subdomain (253), a namespace a DNS
 * label (63). A uid is a UUID (36); longer than 128 is not a uid. */
#define CA_STORE_NAME_MAX 253
#define CA_STORE_NAMESPACE_MAX 63
#define CA_STORE_UID_MAX 128
/* The longest key: "namespace/name". */
#define CA_STORE_KEY_MAX (CA_STORE_NAMESPACE_MAX + 1 + CA_STORE_NAME_MAX)
/* Hard limit on entries whatever the options say. */
#define CA_STORE_ENTRIES_LIMIT ((size_t)1 << 28)

struct ca_store;

enum ca_store_key {
	/* "metadata.namespace/metadata.name", or "metadata.name" when the
	 * object has no (or an empty) namespace. */
	CA_STORE_KEY_NAME = 0,
	/* metadata.uid. */
	CA_STORE_KEY_UID,
};

/* What the consumer supplies. Every callback gets the `arg` given to
 * ca_store_new(). Keys handed to callbacks are borrowed, valid during the
 * call. Callbacks must not change or free the store (they may read it). */
struct ca_store_ops {
	/* Required. Fold obj (borrowed, valid only during the call) into a
	 * new value: set *value (owned by the store from then on; NULL is a
	 * valid value) and *value_size (what the value costs on the heap, in
	 * bytes; ca_store_heap_bytes() gives the cost of one allocation). Any
	 * status other than CA_OK refuses the object: it is counted as
	 * invalid and skipped, and *value must then be left unset or freed by
	 * fold itself. A value over 4 GiB is refused too. */
	enum ca_err (*fold)(void *arg, const struct ca_kobj *obj, void **value, size_t *value_size);
	/* Frees a value the store owns. May be NULL (values need no freeing). */
	void (*free_value)(void *arg, void *value);
	/* Optional. A new key was stored with value. */
	void (*on_add)(void *arg, const char *key, void *value);
	/* Optional. The object at key was replaced: old_value is freed right
	 * after this returns; new_value is stored. Called for every listed
	 * object that was already stored, whether or not it changed (the store
	 * keeps no resourceVersion to tell): compare the values if that
	 * matters. */
	void (*on_update)(void *arg, const char *key, void *old_value, void *new_value);
	/* Optional. key was removed (watch DELETED, a sweep after a LIST, or
	 * fold refusing a new version of it); value is freed right after this
	 * returns. */
	void (*on_delete)(void *arg, const char *key, void *value);
};

struct ca_store_options {
	const char *name; /* for health: "pods". Copied. NULL = "store" */
	enum ca_store_key key;
	size_t max_entries; /* 0 = CA_STORE_ENTRIES_LIMIT */
	size_t max_bytes;   /* 0 = no byte budget */
};

struct ca_store_stats {
	size_t entries;
	size_t bytes;       /* table_bytes + every entry's key and bookkeeping + value_bytes */
	size_t table_bytes; /* slots * 9 */
	size_t value_bytes; /* sum of the sizes fold reported */
	size_t slots;       /* table size (a power of two) */
	size_t probe_max;   /* longest probe (slots looked at) of an insert since the
	                     * table was last resized: a hash that degrades shows here */
	size_t max_entries, max_bytes; /* the caps in force (max_bytes 0 = none) */
	uint64_t adds;                 /* new keys stored */
	uint64_t updates;              /* values replaced */
	uint64_t deletes;              /* entries removed, for any reason (swept included) */
	uint64_t swept;                /* entries removed because a completed LIST lacked them */
	uint64_t invalid;              /* objects skipped: bad key, or refused by fold */
	uint64_t rejected_full;        /* new objects refused by max_entries / max_bytes */
	uint64_t nomem;                /* new objects dropped because an allocation failed */
	uint64_t lists;                /* LISTs started (ca_store_list_begin) */
	uint64_t sweeps;               /* LISTs completed and swept (ca_store_list_done) */
	bool synced;                   /* a LIST has completed since creation */
	bool over_budget;              /* see ca_store_over_budget() */
};

/* Create an empty store. opts and ops are copied; arg is passed to every
 * op. CA_EINVAL when ops->fold is missing or a cap is over
 * CA_STORE_ENTRIES_LIMIT; CA_ENOMEM. On error *out is NULL. Loop thread. */
enum ca_err ca_store_new(struct ca_store **out, const struct ca_store_options *opts,
                         const struct ca_store_ops *ops, void *arg);
/* Free every value (free_value, no on_delete) and the store. NULL is
 * fine. Not from inside the store's callbacks or foreach. Loop thread. */
void ca_store_free(struct ca_store *s);

/* Fill cbs so that a reflector feeds this store:
 *   ca_store_reflector_callbacks(store, &cbs);
 *   ca_reflector_new(&r, kube, &opts, &cbs, store);
 * on_list_begin, on_object and on_synced are set, on_resource_version is
 * NULL. A consumer that needs more wraps them: its own callbacks, with its
 * own arg, call the three functions below with the store. */
void ca_store_reflector_callbacks(struct ca_store *s, struct ca_reflector_callbacks *cbs);

/* A LIST starts: a new generation. Objects of the list follow through
 * ca_store_object(); nothing is removed until ca_store_list_done(). A
 * second call before list_done abandons the first list (its marks count
 * for nothing). store is a struct ca_store *, void * to fit
 * struct ca_reflector_callbacks. Loop thread. */
void ca_store_list_begin(void *store);
/* One object (borrowed). ADDED and MODIFIED insert or replace (on_add /
 * on_update), and mark the entry as seen by the current LIST; DELETED
 * removes (on_delete; an unknown key is ignored). An object without a
 * valid key (empty, too long, control bytes, a '/' in a name or
 * namespace) or refused by fold is counted in invalid and skipped; if fold
 * refuses a new version of a stored key, the stored entry is removed, so
 * the store never keeps a version the cluster no longer has. A new key
 * over a cap is counted in rejected_full and its value freed. from_list is
 * not needed (the generation is), and kept for the callback's signature.
 * Loop thread. */
void ca_store_object(void *store, enum ca_watch_type type, const struct ca_kobj *obj,
                     bool from_list);
/* The LIST started by the last ca_store_list_begin() completed: remove
 * (on_delete) every entry it did not carry, and mark the store synced.
 * resource_version is unused (NULL is fine). Without a LIST in progress it
 * does nothing. Loop thread. */
void ca_store_list_done(void *store, const char *resource_version);

/* The value stored at key (a NUL-terminated key as described above), or
 * NULL when there is none (a value folded as NULL is also NULL: use
 * ca_store_contains to tell). The value stays owned by the store and valid
 * until the entry is replaced or removed; the caller may change it in place
 * but not its size. Loop thread. */
void *ca_store_get(const struct ca_store *s, const char *key);
bool ca_store_contains(const struct ca_store *s, const char *key);
size_t ca_store_count(const struct ca_store *s);
/* True once a LIST has completed (client-go's HasSynced); stays true
 * through later relists. */
bool ca_store_synced(const struct ca_store *s);
/* True when the store's view is incomplete for lack of budget: a new
 * object was refused (max_entries, max_bytes or out of memory) since the
 * last LIST that completed without a refusal, or bytes are over max_bytes
 * (an update that grew a value is applied anyway: a stale value is worse
 * than a small overshoot). What /health should report. */
bool ca_store_over_budget(const struct ca_store *s);

/* Call fn for every entry, in no particular order, until fn returns false.
 * fn must not change the store (asserted): collect keys and act after.
 * Loop thread. */
typedef bool (*ca_store_fn)(void *arg, const char *key, void *value);
void ca_store_foreach(struct ca_store *s, ca_store_fn fn, void *arg);

void ca_store_get_stats(const struct ca_store *s, struct ca_store_stats *out);
/* A JSON object (no trailing newline) for /health. */
void ca_store_health_json(const struct ca_store *s, struct ca_buf *out);

/* What one entry with a key of key_len bytes costs the store, beyond its
 * value and the table. Any thread. */
size_t ca_store_entry_bytes(size_t key_len);
/* What an n-byte malloc() takes from the heap with glibc's allocator (a
 * 16-byte-aligned chunk with an 8-byte header, at least 32 bytes); for
 * fold's value_size. Any thread. */
size_t ca_store_heap_bytes(size_t n);

#endif
