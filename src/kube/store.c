/* kube/store.c: the informer store (kube/store.h).
 *
 * An open-addressing hash table with linear probing and backward-shift
 * deletion (no tombstones, so probes stay short however much churn there
 * is). Each slot is a pointer to the entry and a one-byte tag (0 = empty,
 * else 0x80 | seven bits of the hash); slots come in groups of eight, the
 * eight tags then the eight pointers (72 bytes), so a slot's tag and
 * pointer share a cache line or two neighbours. A probe compares tags and
 * only follows the pointer on a tag match (one in 128 by chance), so a
 * lookup usually costs one miss in the table and one in the entry. Separate
 * tag and pointer arrays cost one more miss; a 16-byte slot struct would
 * waste 7 bytes of padding per slot. The entry is one
 * allocation holding the value pointer, the value's size, the generation of
 * the last LIST that carried it and the key. The hash is not stored: a
 * resize or a backward shift hashes the key again, which saves 4 bytes per
 * entry and costs a few tens of nanoseconds where it happens.
 *
 * The table grows (doubling) past 3/4 full and shrinks below 1/8, so it is
 * between 3/8 and 3/4 full in steady state and every operation is O(1)
 * amortized. When the byte budget does not allow the doubling, the table
 * fills up to 7/8 before new keys are refused: probes get longer there, but
 * the budget is the budget.
 *
 * The hash is SipHash-1-3 with a random 128-bit key per store. Kubernetes
 * object names come from whoever may create objects (a namespace tenant,
 * a controller gone wrong); with an unkeyed or weakly keyed hash (FNV,
 * Murmur, CityHash: all have seed-independent multicollisions) they can be
 * chosen to collide and turn the table into one long probe. SipHash is a
 * keyed PRF designed for exactly this and the 1-3 variant is what Python
 * and Rust use for their own hash tables. It costs about 1 ns per byte plus
 * a few ns per key, next to microseconds spent parsing the object's JSON;
 * wyhash or XXH3 would be faster but have no such analysis behind them. */
#include "kube/store.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"
#include "core/timeutil.h"

#define MIN_SLOTS 16
#define GROUP 8
#define SLOT_BYTES (sizeof(struct group) / GROUP)

struct entry {
	void *value;         /* owned */
	uint32_t value_size; /* as fold reported it */
	uint32_t gen;        /* the LIST generation that last stored it */
	char key[];          /* NUL-terminated */
};

struct group {
	uint8_t tags[GROUP];          /* 0 = empty, else 0x80 | 7 hash bits */
	struct entry *entries[GROUP]; /* NULL when empty */
};

struct ca_store {
	struct ca_store_ops ops;
	void *arg;
	char *name;
	enum ca_store_key key_kind;
	size_t max_entries, max_bytes;
	struct ca_hash_key seed;

	struct group *groups; /* nslots / GROUP of them */
	size_t nslots, mask, count;
	size_t entry_bytes; /* sum of ca_store_entry_bytes() of stored keys */
	size_t value_bytes;
	size_t probe_max;

	uint32_t gen; /* generation of the current (or last) LIST */
	bool listing; /* list_begin seen, list_done not yet */
	bool synced;
	bool refused;         /* a new object was refused since the last clean LIST */
	bool refused_in_list; /* ... during the LIST in progress */
	int busy;             /* inside a callback or foreach: no changes */
	struct ca_store_stats st;
};

/* ------------------------------------------------------------------ */
/* Sizes and keys */

size_t ca_store_heap_bytes(size_t n)
{
	/* glibc request2size(): header word, 16-byte alignment, 32 minimum. */
	size_t c = (n + 8 + 15) & ~(size_t)15;
	return c < 32 ? 32 : c;
}

size_t ca_store_entry_bytes(size_t key_len)
{
	return ca_store_heap_bytes(offsetof(struct entry, key) + key_len + 1);
}

static size_t total_bytes(const struct ca_store *s)
{
	return s->nslots * SLOT_BYTES + s->entry_bytes + s->value_bytes;
}

static uint64_t hash_of(const struct ca_store *s, const char *key, size_t len)
{
	return ca_hash_keyed(&s->seed, key, len);
}

/* The tag uses the top bits, the slot index the bottom ones, so the two
 * filters are independent. */
static inline uint8_t tag_of(uint64_t h)
{
	return (uint8_t)(0x80 | (h >> 57));
}

/* A key part of 1..max bytes without control bytes; '/' is refused where
 * it would make "namespace/name" ambiguous (the API never allows it in
 * either). Returns its length, 0 when invalid. */
static size_t valid_part(const char *p, size_t max, bool slash_ok)
{
	if (!p)
		return 0;
	size_t n = strnlen(p, max + 1);
	if (n == 0 || n > max)
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c < 0x20 || c == 0x7f || (c == '/' && !slash_ok))
			return 0;
	}
	return n;
}

/* The object's key into key[CA_STORE_KEY_MAX + 1]; its length, 0 when the
 * object has no valid key. */
static size_t make_key(const struct ca_store *s, const struct ca_kobj *obj, char *key)
{
	if (s->key_kind == CA_STORE_KEY_UID) {
		const char *uid = ca_kobj_str(obj, "metadata.uid");
		size_t n = valid_part(uid, CA_STORE_UID_MAX, true);
		if (n)
			memcpy(key, uid, n + 1);
		return n;
	}
	const char *name = ca_kobj_str(obj, "metadata.name");
	const char *ns = ca_kobj_str(obj, "metadata.namespace");
	size_t nl = valid_part(name, CA_STORE_NAME_MAX, false), sl = 0;
	if (nl == 0)
		return 0;
	if (ns && *ns && (sl = valid_part(ns, CA_STORE_NAMESPACE_MAX, false)) == 0)
		return 0;
	if (sl) {
		memcpy(key, ns, sl);
		key[sl++] = '/';
	}
	memcpy(key + sl, name, nl + 1);
	return sl + nl;
}

/* ------------------------------------------------------------------ */
/* The table */

static inline uint8_t tag_at(const struct group *g, size_t i)
{
	return g[i / GROUP].tags[i % GROUP];
}

static inline struct entry *entry_at(const struct group *g, size_t i)
{
	return g[i / GROUP].entries[i % GROUP];
}

static inline void put(struct group *g, size_t i, struct entry *e, uint8_t tag)
{
	g[i / GROUP].entries[i % GROUP] = e;
	g[i / GROUP].tags[i % GROUP] = tag;
}

/* The slot holding key, or the empty slot where it would go. */
static size_t find(const struct ca_store *s, const char *key, uint64_t h, bool *found)
{
	uint8_t tag = tag_of(h);
	size_t i = (size_t)h & s->mask;
	for (;;) {
		uint8_t t = tag_at(s->groups, i);
		if (t == 0) {
			*found = false;
			return i;
		}
		if (t == tag && strcmp(entry_at(s->groups, i)->key, key) == 0) {
			*found = true;
			return i;
		}
		i = (i + 1) & s->mask;
	}
}

/* Move every entry into a table of nslots slots (a power of two, larger
 * than count). On CA_ENOMEM nothing changed. */
static enum ca_err resize(struct ca_store *s, size_t nslots)
{
	struct group *groups = calloc(nslots / GROUP, sizeof *groups);
	if (!groups)
		return CA_ENOMEM;
	size_t mask = nslots - 1, probe_max = 0;
	for (size_t i = 0; i < s->nslots; i++) {
		struct entry *e = entry_at(s->groups, i);
		if (!e)
			continue;
		uint64_t h = hash_of(s, e->key, strlen(e->key));
		size_t j = (size_t)h & mask, probe = 1;
		for (; tag_at(groups, j); j = (j + 1) & mask)
			probe++;
		put(groups, j, e, tag_at(s->groups, i));
		if (probe > probe_max)
			probe_max = probe;
	}
	free(s->groups);
	s->groups = groups;
	s->nslots = nslots;
	s->mask = mask;
	s->probe_max = probe_max;
	return CA_OK;
}

/* Below 1/8 full, shrink to at most half full. Failing to is harmless. */
static void maybe_shrink(struct ca_store *s)
{
	if (s->nslots <= MIN_SLOTS || s->count >= s->nslots / 8)
		return;
	size_t n = MIN_SLOTS;
	while (n < s->count * 2)
		n <<= 1;
	resize(s, n);
}

/* Empty slot i, shifting later members of its probe run back into the
 * hole where their home slot allows it. */
static void clear_slot(struct ca_store *s, size_t i)
{
	size_t j = i;
	for (;;) {
		j = (j + 1) & s->mask;
		struct entry *e = entry_at(s->groups, j);
		if (!e)
			break;
		size_t home = (size_t)hash_of(s, e->key, strlen(e->key)) & s->mask;
		/* e may move to i unless its home lies cyclically in (i, j]. */
		bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			put(s->groups, i, e, tag_at(s->groups, j));
			i = j;
		}
	}
	put(s->groups, i, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Changes. Every public entry point that changes the store runs between
 * enter() and leave(); callbacks run inside, so a callback that tries to
 * change the store (or a foreach callback) trips the assertion. Without
 * assertions the change is refused, which keeps the table sound. */

static bool enter(struct ca_store *s)
{
	assert(s->busy == 0 && "the store was changed from its own callback or foreach");
	if (s->busy)
		return false;
	s->busy++;
	return true;
}

static void leave(struct ca_store *s)
{
	s->busy--;
}

static void free_value(struct ca_store *s, void *value)
{
	if (s->ops.free_value)
		s->ops.free_value(s->arg, value);
}

static void refuse(struct ca_store *s)
{
	s->refused = true;
	s->refused_in_list = true;
}

/* Remove the entry at slot i: on_delete, then free. */
static void remove_at(struct ca_store *s, size_t i, bool swept)
{
	struct entry *e = entry_at(s->groups, i);
	clear_slot(s, i);
	s->count--;
	s->entry_bytes -= ca_store_entry_bytes(strlen(e->key));
	s->value_bytes -= e->value_size;
	s->st.deletes++;
	if (swept)
		s->st.swept++;
	if (s->ops.on_delete)
		s->ops.on_delete(s->arg, e->key, e->value);
	free_value(s, e->value);
	free(e);
}

/* Ask fold for a value; false when it refused the object. */
static bool fold(struct ca_store *s, const struct ca_kobj *obj, void **value, size_t *size)
{
	*value = NULL;
	*size = 0;
	if (s->ops.fold(s->arg, obj, value, size) != CA_OK)
		return false;
	if (*size > UINT32_MAX) {
		free_value(s, *value);
		return false;
	}
	return true;
}

/* Make room for one more entry, keeping the byte budget with cost (the new
 * entry's bytes). Returns CA_OK, CA_ETOOBIG (a cap) or CA_ENOMEM. */
static enum ca_err make_room(struct ca_store *s, size_t cost)
{
	size_t total = total_bytes(s);
	if (s->count + 1 > s->nslots / 4 * 3) {
		size_t grown = s->nslots * 2;
		size_t extra = (grown - s->nslots) * SLOT_BYTES;
		bool fits = !s->max_bytes ||
		            (total + extra <= s->max_bytes && cost <= s->max_bytes - total - extra);
		enum ca_err err = fits ? resize(s, grown) : CA_ETOOBIG;
		if (err != CA_OK && s->count + 1 > s->nslots / 8 * 7)
			return err;
	}
	if (s->max_bytes && (total_bytes(s) > s->max_bytes || cost > s->max_bytes - total_bytes(s)))
		return CA_ETOOBIG;
	return CA_OK;
}

static void insert_new(struct ca_store *s, const struct ca_kobj *obj, const char *key, size_t len,
                       uint64_t h)
{
	void *value = NULL;
	size_t size = 0;
	struct entry *e = NULL;

	if (s->count >= s->max_entries) {
		/* Known before folding: spare fold the work. */
		s->st.rejected_full++;
		refuse(s);
		return;
	}
	if (!fold(s, obj, &value, &size)) {
		s->st.invalid++;
		return;
	}
	size_t cost = ca_store_entry_bytes(len) + size;
	enum ca_err err = make_room(s, cost);
	if (err == CA_OK && !(e = malloc(offsetof(struct entry, key) + len + 1)))
		err = CA_ENOMEM;
	if (err != CA_OK) {
		if (err == CA_ETOOBIG)
			s->st.rejected_full++;
		else
			s->st.nomem++;
		refuse(s);
		free_value(s, value);
		return;
	}
	e->value = value;
	e->value_size = (uint32_t)size;
	e->gen = s->gen;
	memcpy(e->key, key, len + 1);

	/* The key is not in the table: its place is the first empty slot
	 * from its home (the table may have grown since the lookup). */
	size_t i = (size_t)h & s->mask, probe = 1;
	for (; tag_at(s->groups, i); i = (i + 1) & s->mask)
		probe++;
	put(s->groups, i, e, tag_of(h));
	if (probe > s->probe_max)
		s->probe_max = probe;
	s->count++;
	s->entry_bytes += ca_store_entry_bytes(len);
	s->value_bytes += size;
	s->st.adds++;
	if (s->ops.on_add)
		s->ops.on_add(s->arg, e->key, e->value);
}

static void upsert(struct ca_store *s, const struct ca_kobj *obj)
{
	char key[CA_STORE_KEY_MAX + 1];
	size_t len = make_key(s, obj, key);
	if (len == 0) {
		s->st.invalid++;
		return;
	}
	bool found;
	uint64_t h = hash_of(s, key, len);
	size_t i = find(s, key, h, &found);
	if (!found) {
		insert_new(s, obj, key, len, h);
		return;
	}
	struct entry *e = entry_at(s->groups, i);
	void *value = NULL;
	size_t size = 0;
	if (!fold(s, obj, &value, &size)) {
		/* The cluster has a version we cannot hold: keeping the old
		 * one would be a lie, and a relist would sweep it anyway. */
		s->st.invalid++;
		remove_at(s, i, false);
		maybe_shrink(s);
		return;
	}
	void *old = e->value;
	s->value_bytes = s->value_bytes - e->value_size + size;
	e->value = value;
	e->value_size = (uint32_t)size;
	e->gen = s->gen;
	s->st.updates++;
	if (s->ops.on_update)
		s->ops.on_update(s->arg, e->key, old, value);
	free_value(s, old);
}

static void delete_object(struct ca_store *s, const struct ca_kobj *obj)
{
	char key[CA_STORE_KEY_MAX + 1];
	size_t len = make_key(s, obj, key);
	if (len == 0) {
		s->st.invalid++;
		return;
	}
	bool found;
	size_t i = find(s, key, hash_of(s, key, len), &found);
	if (!found)
		return; /* never stored (refused, invalid) or already gone */
	remove_at(s, i, false);
	maybe_shrink(s);
}

/* ------------------------------------------------------------------ */
/* Public API */

void ca_store_list_begin(void *store)
{
	struct ca_store *s = store;
	if (!enter(s))
		return;
	if (++s->gen == 0)
		s->gen = 1; /* 0 marks entries stored before any LIST */
	s->listing = true;
	s->refused_in_list = false;
	s->st.lists++;
	leave(s);
}

void ca_store_object(void *store, enum ca_watch_type type, const struct ca_kobj *obj,
                     bool from_list)
{
	struct ca_store *s = store;
	(void)from_list;
	if (!enter(s))
		return;
	if (type == CA_WATCH_DELETED)
		delete_object(s, obj);
	else
		upsert(s, obj);
	leave(s);
}

void ca_store_list_done(void *store, const char *resource_version)
{
	struct ca_store *s = store;
	(void)resource_version;
	if (!enter(s))
		return;
	if (!s->listing) {
		leave(s);
		return;
	}
	/* A removal shifts later entries back, possibly into slot i itself,
	 * so i only advances past a kept entry. Entries that wrap around
	 * from the front were kept already and are simply looked at again. */
	for (size_t i = 0; i < s->nslots;) {
		struct entry *e = entry_at(s->groups, i);
		if (e && e->gen != s->gen)
			remove_at(s, i, true);
		else
			i++;
	}
	maybe_shrink(s);
	s->listing = false;
	s->synced = true;
	s->refused = s->refused_in_list;
	s->st.sweeps++;
	leave(s);
}

void ca_store_reflector_callbacks(struct ca_store *s, struct ca_reflector_callbacks *cbs)
{
	(void)s;
	memset(cbs, 0, sizeof *cbs);
	cbs->on_list_begin = ca_store_list_begin;
	cbs->on_object = ca_store_object;
	cbs->on_synced = ca_store_list_done;
}

enum ca_err ca_store_new(struct ca_store **out, const struct ca_store_options *opts,
                         const struct ca_store_ops *ops, void *arg)
{
	enum ca_err err = CA_EINVAL;
	struct ca_store *s = NULL;

	*out = NULL;
	if (!opts || !ops || !ops->fold || opts->max_entries > CA_STORE_ENTRIES_LIMIT ||
	    (opts->key != CA_STORE_KEY_NAME && opts->key != CA_STORE_KEY_UID))
		goto out;
	err = CA_ENOMEM;
	if (!(s = calloc(1, sizeof *s)))
		goto out;
	s->ops = *ops;
	s->arg = arg;
	s->key_kind = opts->key;
	s->max_entries = opts->max_entries ? opts->max_entries : CA_STORE_ENTRIES_LIMIT;
	s->max_bytes = opts->max_bytes;
	ca_hash_new_key(&s->seed);
	if (!(s->name = strdup(opts->name && *opts->name ? opts->name : "store")))
		goto out;
	s->nslots = MIN_SLOTS;
	s->mask = MIN_SLOTS - 1;
	if (!(s->groups = calloc(MIN_SLOTS / GROUP, sizeof *s->groups)))
		goto out;
	*out = s;
	s = NULL;
	err = CA_OK;
out:
	ca_store_free(s);
	return err;
}

void ca_store_free(struct ca_store *s)
{
	if (!s)
		return;
	assert(s->busy == 0 && "the store was freed from its own callback or foreach");
	for (size_t i = 0; s->groups && i < s->nslots; i++) {
		struct entry *e = entry_at(s->groups, i);
		if (e) {
			free_value(s, e->value);
			free(e);
		}
	}
	free(s->groups);
	free(s->name);
	free(s);
}

static struct entry *lookup(const struct ca_store *s, const char *key)
{
	size_t len = key ? strnlen(key, CA_STORE_KEY_MAX + 1) : 0;
	if (len == 0 || len > CA_STORE_KEY_MAX)
		return NULL;
	bool found;
	size_t i = find(s, key, hash_of(s, key, len), &found);
	return found ? entry_at(s->groups, i) : NULL;
}

void *ca_store_get(const struct ca_store *s, const char *key)
{
	struct entry *e = lookup(s, key);
	return e ? e->value : NULL;
}

bool ca_store_contains(const struct ca_store *s, const char *key)
{
	return lookup(s, key) != NULL;
}

size_t ca_store_count(const struct ca_store *s)
{
	return s->count;
}

bool ca_store_synced(const struct ca_store *s)
{
	return s->synced;
}

bool ca_store_over_budget(const struct ca_store *s)
{
	return s->refused || (s->max_bytes && total_bytes(s) > s->max_bytes);
}

void ca_store_foreach(struct ca_store *s, ca_store_fn fn, void *arg)
{
	/* Reading may nest (a foreach inside a callback); changing may not. */
	s->busy++;
	for (size_t i = 0; i < s->nslots; i++) {
		struct entry *e = entry_at(s->groups, i);
		if (e && !fn(arg, e->key, e->value))
			break;
	}
	s->busy--;
}

void ca_store_get_stats(const struct ca_store *s, struct ca_store_stats *out)
{
	*out = s->st;
	out->entries = s->count;
	out->bytes = total_bytes(s);
	out->table_bytes = s->nslots * SLOT_BYTES;
	out->value_bytes = s->value_bytes;
	out->slots = s->nslots;
	out->probe_max = s->probe_max;
	out->max_entries = s->max_entries;
	out->max_bytes = s->max_bytes;
	out->synced = s->synced;
	out->over_budget = ca_store_over_budget(s);
}

void ca_store_health_json(const struct ca_store *s, struct ca_buf *out)
{
	struct ca_store_stats st;
	ca_store_get_stats(s, &st);
	ca_buf_append_str(out, "{\"name\":");
	ca_buf_append_json_string(out, s->name);
	ca_buf_printf(out,
	              ",\"synced\":%s,\"over_budget\":%s,\"entries\":%zu,\"bytes\":%zu,"
	              "\"max_entries\":%zu,\"max_bytes\":%zu,\"adds\":%llu,\"updates\":%llu,"
	              "\"deletes\":%llu,\"swept\":%llu,\"invalid\":%llu,\"rejected_full\":%llu,"
	              "\"nomem\":%llu,\"lists\":%llu,\"sweeps\":%llu}",
	              st.synced ? "true" : "false", st.over_budget ? "true" : "false", st.entries,
	              st.bytes, st.max_entries, st.max_bytes, (unsigned long long)st.adds,
	              (unsigned long long)st.updates, (unsigned long long)st.deletes,
	              (unsigned long long)st.swept, (unsigned long long)st.invalid,
	              (unsigned long long)st.rejected_full, (unsigned long long)st.nomem,
	              (unsigned long long)st.lists, (unsigned long long)st.sweeps);
}
