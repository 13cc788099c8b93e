/* kube/kobj.c: the read-only view over a parsed tape (kube/json_parse.h).
 *
 * A const struct ca_kobj * is a pointer to one tape node, so handing a
 * parsed watch object to a callback costs nothing, and the lookups are
 * walks over an array: a member lookup visits the object's keys, skipping
 * each value's subtree by its span.
 *
 * Duplicated keys are all on the tape. The view resolves them as jansson
 * did, which is what consumers were written against: a lookup gives the
 * last value, and ca_kobj_foreach visits each distinct key once, at the
 * position of its first occurrence, with its last value. */
#include "kube/kobj.h"

#include <stdlib.h>
#include <string.h>

#include "kube/json_parse.h"

/* Objects up to this many members are deduplicated in ca_kobj_foreach by
 * comparing every pair of keys; larger ones by sorting. */
#define FOREACH_PAIRWISE 32

enum ca_err ca_kobj_parse(const char *data, size_t len, struct ca_kobj **out)
{
	*out = NULL;
	if (!data)
		return CA_EINVAL;
	struct ca_json_doc *doc = NULL;
	const struct ca_kobj *root = NULL;
	enum ca_err err = ca_kube_json_doc_new(&doc);
	if (err != CA_OK)
		return err;
	/* Accepts what json_loadb(JSON_DECODE_ANY) accepts: a bare value is a
	 * valid document too (the lookups below simply find nothing in it),
	 * and \u0000 is rejected, so every string a caller gets is a C string
	 * of its full length. */
	err = ca_kube_json_parse(doc, data, len, &root, NULL, 0);
	if (err != CA_OK) {
		ca_kube_json_doc_free(doc);
		return err == CA_ENOMEM ? CA_ENOMEM : CA_EPROTO;
	}
	/* The root is nodes[1]; the header before it points back at the
	 * arena, which is how ca_kobj_free finds it. The cast drops a const
	 * that only marks the view read-only: the caller owns this one. */
	*out = (struct ca_kobj *)(void *)(uintptr_t)root;
	return CA_OK;
}

void ca_kobj_free(struct ca_kobj *o)
{
	if (!o)
		return;
	const struct ca_kobj *header = o - 1;
	if (header->type == CA_JSON_HEADER)
		ca_kube_json_doc_free(header->v.doc);
}

static inline bool key_is(const struct ca_kobj *k, const char *key, size_t n)
{
	return k->n == n && memcmp(k->v.s, key, n) == 0;
}

static inline bool same_key(const struct ca_kobj *a, const struct ca_kobj *b)
{
	return key_is(a, b->v.s, b->n);
}

/* The value of the last member named key[0..n), or NULL. Every member is
 * visited, as the last duplicate wins. */
static const struct ca_kobj *member_n(const struct ca_kobj *o, const char *key, size_t n)
{
	if (!o || o->type != CA_JSON_OBJECT)
		return NULL;
	const struct ca_kobj *found = NULL, *k = o + 1;
	for (size_t i = 0; i < o->n; i++) {
		const struct ca_kobj *v = k + 1;
		if (key_is(k, key, n))
			found = v;
		k = v + v->span;
	}
	return found;
}

/* Walk "a.b.c" through nested objects without copying the segments. */
const struct ca_kobj *ca_kobj_get(const struct ca_kobj *o, const char *path)
{
	if (!o)
		return NULL;
	if (!path || !*path)
		return o;
	const char *seg = path;
	for (;;) {
		const char *dot = strchr(seg, '.');
		size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
		o = member_n(o, seg, n);
		if (!o || !dot)
			return o;
		seg = dot + 1;
	}
}

const struct ca_kobj *ca_kobj_member(const struct ca_kobj *o, const char *key)
{
	if (!key)
		return NULL;
	return member_n(o, key, strlen(key));
}

const char *ca_kobj_str(const struct ca_kobj *o, const char *path)
{
	const struct ca_kobj *v = ca_kobj_get(o, path);
	return v && v->type == CA_JSON_STRING ? v->v.s : NULL;
}

int64_t ca_kobj_int(const struct ca_kobj *o, const char *path, int64_t dflt)
{
	const struct ca_kobj *v = ca_kobj_get(o, path);
	if (!v)
		return dflt;
	if (v->type == CA_JSON_INT)
		return v->v.i;
	/* "5.0" or "1e3" is a real; accept a real only when it is an exact
	 * integer in range, so a fractional value is never truncated into a
	 * plausible-looking count. */
	if (v->type == CA_JSON_REAL) {
		double d = v->v.d;
		/* The range test is false for NaN, so the cast is defined. */
		if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
		    (double)(int64_t)d == d)
			return (int64_t)d;
	}
	return dflt;
}

bool ca_kobj_bool(const struct ca_kobj *o, const char *path, bool dflt)
{
	const struct ca_kobj *v = ca_kobj_get(o, path);
	if (v && v->type == CA_JSON_TRUE)
		return true;
	if (v && v->type == CA_JSON_FALSE)
		return false;
	return dflt;
}

/* An absent member (NULL view) counts as null, as Go's decoder treats a
 * missing field and an explicit null the same way. */
bool ca_kobj_is_null(const struct ca_kobj *o)
{
	return !o || o->type == CA_JSON_NULL;
}

size_t ca_kobj_array_len(const struct ca_kobj *o)
{
	return o && o->type == CA_JSON_ARRAY ? o->n : 0;
}

const struct ca_kobj *ca_kobj_array_at(const struct ca_kobj *o, size_t i)
{
	if (!o || o->type != CA_JSON_ARRAY || i >= o->n)
		return NULL;
	if (o->v.idx) /* large arrays have a table of element offsets */
		return o + o->v.idx[i];
	const struct ca_kobj *e = o + 1;
	while (i--)
		e = e + e->span;
	return e;
}

/* ------------------------------------------------------------------------ */
/* ca_kobj_foreach */

struct slot {
	const struct ca_kobj *key;
	size_t pos;
};

static int slot_cmp(const void *a, const void *b)
{
	const struct slot *x = a, *y = b;
	size_t n = x->key->n < y->key->n ? x->key->n : y->key->n;
	int c = memcmp(x->key->v.s, y->key->v.s, n);
	if (c)
		return c;
	if (x->key->n != y->key->n)
		return x->key->n < y->key->n ? -1 : 1;
	return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Each member compared with every other: for small objects, and as the
 * fallback when the sort's memory cannot be had. */
static void foreach_pairwise(const struct ca_kobj *o, ca_kobj_member_fn fn, void *arg)
{
	const struct ca_kobj *k = o + 1;
	for (size_t i = 0; i < o->n; i++) {
		const struct ca_kobj *v = k + 1, *next = v + v->span;
		bool seen = false;
		for (const struct ca_kobj *e = o + 1; e != k && !seen; e = e + 1 + e[1].span)
			seen = same_key(e, k);
		if (!seen) {
			const struct ca_kobj *last = v, *e = next;
			for (size_t j = i + 1; j < o->n; j++) {
				if (same_key(e, k))
					last = e + 1;
				e = e + 1 + e[1].span;
			}
			if (!fn(arg, k->v.s, last))
				return;
		}
		k = next;
	}
}

/* Sort the keys (ties by position) so each run of equal keys is adjacent:
 * its first slot is where the member is visited, its last gives the
 * value. O(n log n) for objects with many members. */
static bool foreach_sorted(const struct ca_kobj *o, ca_kobj_member_fn fn, void *arg)
{
	size_t n = o->n;
	if (n > SIZE_MAX / (sizeof(struct slot) + sizeof(const struct ca_kobj *)))
		return false;
	struct slot *slots = malloc(n * sizeof *slots);
	const struct ca_kobj **value = malloc(n * sizeof *value); /* by position */
	if (!slots || !value) {
		free(slots);
		free(value);
		return false;
	}
	const struct ca_kobj *k = o + 1;
	for (size_t i = 0; i < n; i++) {
		slots[i].key = k;
		slots[i].pos = i;
		k = k + 1 + k[1].span;
	}
	qsort(slots, n, sizeof *slots, slot_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i;
		while (j + 1 < n && same_key(slots[j + 1].key, slots[i].key))
			j++;
		value[slots[i].pos] = slots[j].key + 1;
		for (size_t d = i + 1; d <= j; d++)
			value[slots[d].pos] = NULL;
		i = j + 1;
	}
	k = o + 1;
	for (size_t i = 0; i < n; i++) {
		if (value[i] && !fn(arg, k->v.s, value[i]))
			break;
		k = k + 1 + k[1].span;
	}
	free(slots);
	free(value);
	return true;
}

void ca_kobj_foreach(const struct ca_kobj *o, ca_kobj_member_fn fn, void *arg)
{
	if (!fn || !o || o->type != CA_JSON_OBJECT)
		return;
	if (o->n > FOREACH_PAIRWISE && foreach_sorted(o, fn, arg))
		return;
	foreach_pairwise(o, fn, arg);
}
