/* metrics/intern.c: open addressing over an array of entries indexed by
 * id; a slot holds an id (0 empty, TOMBSTONE deleted) and the entry holds
 * the string, its hash and its references. Free ids are kept on a stack
 * so they are reused first and ids stay dense. */
#include "metrics/intern.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define TOMBSTONE UINT32_MAX
#define MIN_SLOTS 64u

struct entry {
	char *s; /* NULL when the id is free */
	uint32_t len;
	uint32_t refs;
	uint64_t hash;
};

struct ca_intern {
	struct ca_hash_key key;
	struct entry *entries; /* by id; entries[0] unused */
	uint32_t nentries;     /* ids handed out so far (+1): the id limit */
	uint32_t cap_entries;
	uint32_t *free_ids; /* stack of dead ids */
	uint32_t nfree;
	uint32_t *slots;
	size_t nslots;     /* a power of two */
	size_t used_slots; /* live + tombstones */
	size_t live;
	size_t bytes; /* strings (their heap chunks) */
	size_t max_bytes;
};

static size_t heap_chunk(size_t n)
{
	size_t c = (n + 8 + 15) & ~(size_t)15;
	return c < 32 ? 32 : c;
}

size_t ca_intern_entry_bytes(size_t len)
{
	/* The string's chunk, its entry, its id on the free stack, and two
	 * slots (the table is kept at most half full on average). */
	return heap_chunk(len + 1) + sizeof(struct entry) + sizeof(uint32_t) + 2 * sizeof(uint32_t);
}

static size_t table_bytes(const struct ca_intern *t)
{
	return t->nslots * sizeof(uint32_t) +
	       (size_t)t->cap_entries * (sizeof(struct entry) + sizeof(uint32_t));
}

enum ca_err ca_intern_new(struct ca_intern **out, size_t max_bytes)
{
	struct ca_intern *t = calloc(1, sizeof *t);
	*out = NULL;
	if (!t)
		return CA_ENOMEM;
	t->max_bytes = max_bytes;
	t->nslots = MIN_SLOTS;
	t->slots = calloc(t->nslots, sizeof *t->slots);
	t->cap_entries = MIN_SLOTS;
	t->entries = calloc(t->cap_entries, sizeof *t->entries);
	t->free_ids = malloc(t->cap_entries * sizeof *t->free_ids);
	if (!t->slots || !t->entries || !t->free_ids) {
		ca_intern_free(t);
		return CA_ENOMEM;
	}
	t->nentries = 1;
	ca_hash_new_key(&t->key);
	*out = t;
	return CA_OK;
}

void ca_intern_free(struct ca_intern *t)
{
	if (!t)
		return;
	if (t->entries)
		for (uint32_t i = 1; i < t->nentries; i++)
			free(t->entries[i].s);
	free(t->entries);
	free(t->free_ids);
	free(t->slots);
	free(t);
}

/* The slot holding s, or (when absent) the slot where it would go. */
static size_t probe(const struct ca_intern *t, const char *s, size_t len, uint64_t h, bool *found)
{
	size_t mask = t->nslots - 1, i = (size_t)h & mask, first_free = SIZE_MAX;
	for (;;) {
		uint32_t id = t->slots[i];
		if (id == 0) {
			*found = false;
			return first_free != SIZE_MAX ? first_free : i;
		}
		if (id == TOMBSTONE) {
			if (first_free == SIZE_MAX)
				first_free = i;
		} else {
			const struct entry *e = &t->entries[id];
			if (e->hash == h && e->len == len && memcmp(e->s, s, len) == 0) {
				*found = true;
				return i;
			}
		}
		i = (i + 1) & mask;
	}
}

static bool rehash(struct ca_intern *t, size_t nslots)
{
	uint32_t *slots = calloc(nslots, sizeof *slots);
	if (!slots)
		return false;
	size_t mask = nslots - 1;
	for (uint32_t id = 1; id < t->nentries; id++) {
		if (!t->entries[id].s)
			continue;
		size_t i = (size_t)t->entries[id].hash & mask;
		while (slots[i])
			i = (i + 1) & mask;
		slots[i] = id;
	}
	free(t->slots);
	t->slots = slots;
	t->nslots = nslots;
	t->used_slots = t->live;
	return true;
}

static bool grow_entries(struct ca_intern *t)
{
	if (t->cap_entries >= UINT32_MAX / 2)
		return false;
	uint32_t cap = t->cap_entries * 2;
	struct entry *e = realloc(t->entries, cap * sizeof *e);
	if (!e)
		return false;
	t->entries = e;
	memset(e + t->cap_entries, 0, (cap - t->cap_entries) * sizeof *e);
	uint32_t *f = realloc(t->free_ids, cap * sizeof *f);
	if (!f)
		return false; /* entries grew; cap_entries stays, retried next time */
	t->free_ids = f;
	t->cap_entries = cap;
	return true;
}

uint32_t ca_intern_ref(struct ca_intern *t, const char *s, size_t len)
{
	if (!len || len > CA_INTERN_MAX_LEN)
		return 0;
	uint64_t h = ca_hash_keyed(&t->key, s, len);
	bool found;
	size_t slot = probe(t, s, len, h, &found);
	if (found) {
		struct entry *e = &t->entries[t->slots[slot]];
		if (e->refs == UINT32_MAX)
			return 0;
		e->refs++;
		return t->slots[slot];
	}
	size_t cost = heap_chunk(len + 1);
	/* Keep the table at most 3/4 used (tombstones count): grow when
	 * mostly live, else just sweep the tombstones. */
	bool sweep = (t->used_slots + 1) * 4 > t->nslots * 3;
	size_t n = sweep && (t->live + 1) * 2 > t->nslots ? t->nslots * 2 : t->nslots;
	/* max_bytes holds after this string, with the slots and entries it
	 * makes the table grow by (a doubling would otherwise go past it). */
	if (t->max_bytes) {
		size_t grow = (n - t->nslots) * sizeof(uint32_t);
		if (!t->nfree && t->nentries == t->cap_entries)
			grow += (size_t)t->cap_entries * (sizeof(struct entry) + sizeof(uint32_t));
		if (t->bytes + cost + table_bytes(t) + grow > t->max_bytes)
			return 0;
	}
	if (sweep) {
		if (!rehash(t, n))
			return 0;
		slot = probe(t, s, len, h, &found);
	}
	uint32_t id;
	if (t->nfree) {
		id = t->free_ids[--t->nfree];
	} else {
		if (t->nentries == t->cap_entries && !grow_entries(t))
			return 0;
		id = t->nentries;
	}
	char *copy = malloc(len + 1);
	if (!copy) {
		if (id != t->nentries)
			t->free_ids[t->nfree++] = id;
		return 0;
	}
	memcpy(copy, s, len);
	copy[len] = '\0';
	if (id == t->nentries)
		t->nentries++;
	t->entries[id] = (struct entry){.s = copy, .len = (uint32_t)len, .refs = 1, .hash = h};
	if (t->slots[slot] == 0)
		t->used_slots++;
	t->slots[slot] = id;
	t->live++;
	t->bytes += cost;
	return id;
}

void ca_intern_ref_id(struct ca_intern *t, uint32_t id)
{
	if (id && id < t->nentries && t->entries[id].s && t->entries[id].refs < UINT32_MAX)
		t->entries[id].refs++;
}

uint32_t ca_intern_find(const struct ca_intern *t, const char *s, size_t len)
{
	if (!len || len > CA_INTERN_MAX_LEN)
		return 0;
	bool found;
	size_t slot = probe(t, s, len, ca_hash_keyed(&t->key, s, len), &found);
	return found ? t->slots[slot] : 0;
}

void ca_intern_unref(struct ca_intern *t, uint32_t id)
{
	if (!id || id >= t->nentries || !t->entries[id].s)
		return;
	struct entry *e = &t->entries[id];
	if (--e->refs)
		return;
	bool found;
	size_t slot = probe(t, e->s, e->len, e->hash, &found);
	if (found)
		t->slots[slot] = TOMBSTONE;
	t->bytes -= heap_chunk((size_t)e->len + 1);
	free(e->s);
	*e = (struct entry){0};
	t->live--;
	t->free_ids[t->nfree++] = id;
}

const char *ca_intern_str(const struct ca_intern *t, uint32_t id)
{
	if (!id || id >= t->nentries || !t->entries[id].s)
		return "";
	return t->entries[id].s;
}

uint32_t ca_intern_id_limit(const struct ca_intern *t)
{
	return t->nentries;
}

size_t ca_intern_count(const struct ca_intern *t)
{
	return t->live;
}

size_t ca_intern_bytes(const struct ca_intern *t)
{
	return t->bytes + table_bytes(t);
}
