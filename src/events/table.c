/* events/table.c: a fixed-capacity hash of 64-bit keys with an ordered
 * list, the one structure behind the dedup memory (LRU), the aggregation
 * windows (FIFO by closing time) and the rate limiter (LRU).
 *
 * Memory is allocated once at the capacity with calloc, so pages are only
 * touched as entries are used: a 64k-entry dedup memory costs little until
 * an event storm fills it. Open addressing with linear probing and
 * backward-shift deletion (no tombstones, so probes stay short). Keys are
 * already well mixed hashes and never 0. */
#include <stdlib.h>
#include <string.h>

#include "events/events_int.h"

static size_t index_size(size_t cap)
{
	size_t isize = 1;
	while (isize < cap * 2)
		isize <<= 1;
	return isize;
}

size_t ca_events_table_bytes(size_t cap)
{
	return cap * (sizeof(uint64_t) + 2 * sizeof(uint32_t)) + index_size(cap) * sizeof(uint32_t);
}

enum ca_err ca_events_table_init(struct ca_events_table *t, size_t cap)
{
	memset(t, 0, sizeof *t);
	if (cap == 0 || cap > (1u << 28))
		return CA_EINVAL;
	size_t isize = index_size(cap);
	t->keys = calloc(cap, sizeof *t->keys);
	t->prev = calloc(cap, sizeof *t->prev);
	t->next = calloc(cap, sizeof *t->next);
	t->index = calloc(isize, sizeof *t->index);
	if (!t->keys || !t->prev || !t->next || !t->index) {
		ca_events_table_fini(t);
		return CA_ENOMEM;
	}
	t->cap = cap;
	t->mask = isize - 1;
	t->head = t->tail = t->free_list = CA_EVENTS_NONE;
	return CA_OK;
}

void ca_events_table_fini(struct ca_events_table *t)
{
	free(t->keys);
	free(t->prev);
	free(t->next);
	free(t->index);
	memset(t, 0, sizeof *t);
}

uint32_t ca_events_table_find(const struct ca_events_table *t, uint64_t key)
{
	if (!t->index)
		return CA_EVENTS_NONE;
	for (size_t i = key & t->mask;; i = (i + 1) & t->mask) {
		uint32_t v = t->index[i];
		if (v == 0)
			return CA_EVENTS_NONE;
		if (t->keys[v - 1] == key)
			return v - 1;
	}
}

static void link_tail(struct ca_events_table *t, uint32_t s)
{
	t->prev[s] = t->tail;
	t->next[s] = CA_EVENTS_NONE;
	if (t->tail != CA_EVENTS_NONE)
		t->next[t->tail] = s;
	else
		t->head = s;
	t->tail = s;
}

static void unlink_slot(struct ca_events_table *t, uint32_t s)
{
	if (t->prev[s] != CA_EVENTS_NONE)
		t->next[t->prev[s]] = t->next[s];
	else
		t->head = t->next[s];
	if (t->next[s] != CA_EVENTS_NONE)
		t->prev[t->next[s]] = t->prev[s];
	else
		t->tail = t->prev[s];
}

uint32_t ca_events_table_insert(struct ca_events_table *t, uint64_t key)
{
	uint32_t s;

	if (t->count >= t->cap || key == 0)
		return CA_EVENTS_NONE;
	/* Slots never used are taken in order (their pages untouched until
	 * then); freed ones are reused first. */
	if (t->free_list != CA_EVENTS_NONE) {
		s = t->free_list;
		t->free_list = t->next[s];
	} else {
		s = (uint32_t)t->count;
		/* With no free list every slot below count is in use. */
	}
	t->keys[s] = key;
	size_t i = key & t->mask;
	while (t->index[i] != 0)
		i = (i + 1) & t->mask;
	t->index[i] = s + 1;
	link_tail(t, s);
	t->count++;
	return s;
}

void ca_events_table_remove(struct ca_events_table *t, uint32_t slot)
{
	if (slot >= t->cap || t->keys[slot] == 0)
		return;
	size_t i = t->keys[slot] & t->mask;
	while (t->index[i] != slot + 1)
		i = (i + 1) & t->mask;
	/* Backward-shift: move later members of the probe run into the hole
	 * when their home position allows it. */
	size_t j = i;
	for (;;) {
		j = (j + 1) & t->mask;
		uint32_t v = t->index[j];
		if (v == 0)
			break;
		size_t home = t->keys[v - 1] & t->mask;
		bool movable = (j > i) ? (home <= i || home > j) : (home <= i && home > j);
		if (movable) {
			t->index[i] = v;
			i = j;
		}
	}
	t->index[i] = 0;
	unlink_slot(t, slot);
	t->keys[slot] = 0;
	t->count--;
	/* Freed slots go on the free list; because slots are handed out as
	 * "count" while the list is empty, a freed slot must always be reused
	 * before a fresh one, which the list guarantees. */
	t->next[slot] = t->free_list;
	t->free_list = slot;
}

void ca_events_table_touch(struct ca_events_table *t, uint32_t slot)
{
	if (t->tail == slot)
		return;
	unlink_slot(t, slot);
	link_tail(t, slot);
}
