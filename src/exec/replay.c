/* exec/replay.c: see replay.h. A ring of (hash, expiry) in arrival order,
 * so expiry times are ordered and the oldest is always at the head; each
 * ring slot is also on a singly linked bucket chain of the index. */
#include "exec/replay.h"

#include <stdlib.h>
#include <string.h>

#include "core/hash.h"

#define NIL UINT32_MAX

struct slot {
	uint64_t hash;
	int64_t expires_ms;
	uint32_t next; /* next slot on the same bucket chain */
};

struct ca_replay {
	struct ca_hash_key key;
	int64_t window_ms;
	struct slot *ring;
	size_t capacity, head, count;
	uint32_t *buckets; /* nbuckets (a power of two) chain heads */
	size_t nbuckets;
};

static size_t buckets_for(size_t capacity)
{
	size_t n = 16;
	while (n < capacity * 2 && n < ((size_t)1 << 31))
		n <<= 1;
	return n;
}

size_t ca_replay_bytes(size_t capacity)
{
	return sizeof(struct ca_replay) + capacity * sizeof(struct slot) + buckets_for(capacity) * sizeof(uint32_t);
}

enum ca_err ca_replay_new(size_t capacity, int64_t window_ms, struct ca_replay **out)
{
	*out = NULL;
	if (capacity == 0 || capacity >= NIL || window_ms <= 0)
		return CA_EINVAL;
	struct ca_replay *r = calloc(1, sizeof *r);
	if (!r)
		return CA_ENOMEM;
	r->capacity = capacity;
	r->window_ms = window_ms;
	r->nbuckets = buckets_for(capacity);
	r->ring = calloc(capacity, sizeof *r->ring);
	r->buckets = malloc(r->nbuckets * sizeof *r->buckets);
	if (!r->ring || !r->buckets) {
		ca_replay_free(r);
		return CA_ENOMEM;
	}
	for (size_t i = 0; i < r->nbuckets; i++)
		r->buckets[i] = NIL;
	ca_hash_new_key(&r->key);
	*out = r;
	return CA_OK;
}

void ca_replay_free(struct ca_replay *r)
{
	if (!r)
		return;
	free(r->ring);
	free(r->buckets);
	free(r);
}

size_t ca_replay_count(const struct ca_replay *r)
{
	return r->count;
}

/* Drop the head slot from its bucket chain and the ring. */
static void drop_head(struct ca_replay *r)
{
	uint32_t idx = (uint32_t)r->head;
	uint32_t *link = &r->buckets[r->ring[idx].hash & (r->nbuckets - 1)];
	while (*link != NIL && *link != idx)
		link = &r->ring[*link].next;
	if (*link == idx)
		*link = r->ring[idx].next;
	r->head = (r->head + 1) % r->capacity;
	r->count--;
}

static void expire(struct ca_replay *r, int64_t now_ms)
{
	while (r->count && r->ring[r->head].expires_ms <= now_ms)
		drop_head(r);
}

bool ca_replay_seen(struct ca_replay *r, const char *id, int64_t now_ms)
{
	expire(r, now_ms);
	uint64_t h = ca_hash_keyed(&r->key, id, strlen(id));
	for (uint32_t i = r->buckets[h & (r->nbuckets - 1)]; i != NIL; i = r->ring[i].next)
		if (r->ring[i].hash == h)
			return true;
	return false;
}

enum ca_err ca_replay_record(struct ca_replay *r, const char *id, int64_t now_ms)
{
	expire(r, now_ms);
	if (r->count == r->capacity)
		return CA_EAGAIN;
	uint64_t h = ca_hash_keyed(&r->key, id, strlen(id));
	uint32_t idx = (uint32_t)((r->head + r->count) % r->capacity);
	uint32_t *bucket = &r->buckets[h & (r->nbuckets - 1)];
	r->ring[idx] = (struct slot){ .hash = h, .expires_ms = now_ms + r->window_ms, .next = *bucket };
	*bucket = idx;
	r->count++;
	return CA_OK;
}
