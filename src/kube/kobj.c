/* kube/kobj.c: the read-only view over a jansson tree.
 *
 * struct ca_kobj is never defined: a const struct ca_kobj * is a json_t *
 * in disguise, so handing a parsed watch object to a callback costs
 * nothing. Only this file and watch.c know that. */
#include "kube/kobj.h"

#include <jansson.h>
#include <string.h>

#include "kube/json_parse.h"

static const json_t *as_json(const struct ca_kobj *o)
{
	return (const json_t *)(const void *)o;
}

static const struct ca_kobj *as_kobj(const json_t *j)
{
	return (const struct ca_kobj *)(const void *)j;
}

enum ca_err ca_kobj_parse(const char *data, size_t len, struct ca_kobj **out)
{
	*out = NULL;
	if (!data)
		return CA_EINVAL;
	/* Accepts what json_loadb(JSON_DECODE_ANY) accepts: a bare value is a
	 * valid document too (the lookups below simply find nothing in it),
	 * and \u0000 is rejected, so every string a caller gets is a C string
	 * of its full length. */
	json_t *j = NULL;
	enum ca_err err = ca_kube_json_parse(data, len, &j, NULL, 0);
	if (err != CA_OK)
		return err == CA_ENOMEM ? CA_ENOMEM : CA_EPROTO;
	*out = (struct ca_kobj *)(void *)j;
	return CA_OK;
}

void ca_kobj_free(struct ca_kobj *o)
{
	if (o)
		json_decref((json_t *)(void *)o);
}

/* Walk "a.b.c" through nested objects without copying the segments. */
const struct ca_kobj *ca_kobj_get(const struct ca_kobj *o, const char *path)
{
	const json_t *j = as_json(o);
	if (!j)
		return NULL;
	if (!path || !*path)
		return o;
	const char *seg = path;
	for (;;) {
		const char *dot = strchr(seg, '.');
		size_t n = dot ? (size_t)(dot - seg) : strlen(seg);
		if (!json_is_object(j))
			return NULL;
		j = json_object_getn(j, seg, n);
		if (!j)
			return NULL;
		if (!dot)
			return as_kobj(j);
		seg = dot + 1;
	}
}

const struct ca_kobj *ca_kobj_member(const struct ca_kobj *o, const char *key)
{
	const json_t *j = as_json(o);
	if (!j || !key || !json_is_object(j))
		return NULL;
	return as_kobj(json_object_get(j, key));
}

const char *ca_kobj_str(const struct ca_kobj *o, const char *path)
{
	const json_t *j = as_json(ca_kobj_get(o, path));
	return json_is_string(j) ? json_string_value(j) : NULL;
}

int64_t ca_kobj_int(const struct ca_kobj *o, const char *path, int64_t dflt)
{
	const json_t *j = as_json(ca_kobj_get(o, path));
	if (json_is_integer(j))
		return (int64_t)json_integer_value(j);
	/* jansson reads "5.0" or "1e3" as a real; accept a real only when it is
	 * an exact integer in range, so a fractional value is never truncated
	 * into a plausible-looking count. */
	if (json_is_real(j)) {
		double d = json_real_value(j);
		/* The range test is false for NaN, so the cast is defined. */
		if (d >= -9223372036854775808.0 && d < 9223372036854775808.0 &&
		    (double)(int64_t)d == d)
			return (int64_t)d;
	}
	return dflt;
}

bool ca_kobj_bool(const struct ca_kobj *o, const char *path, bool dflt)
{
	const json_t *j = as_json(ca_kobj_get(o, path));
	return json_is_boolean(j) ? json_is_true(j) : dflt;
}

/* An absent member (NULL view) counts as null, as Go's decoder treats a
 * missing field and an explicit null the same way. */
bool ca_kobj_is_null(const struct ca_kobj *o)
{
	const json_t *j = as_json(o);
	return !j || json_is_null(j);
}

size_t ca_kobj_array_len(const struct ca_kobj *o)
{
	const json_t *j = as_json(o);
	return json_is_array(j) ? json_array_size(j) : 0;
}

const struct ca_kobj *ca_kobj_array_at(const struct ca_kobj *o, size_t i)
{
	const json_t *j = as_json(o);
	if (!json_is_array(j))
		return NULL;
	return as_kobj(json_array_get(j, i)); /* NULL when out of range */
}

void ca_kobj_foreach(const struct ca_kobj *o, ca_kobj_member_fn fn, void *arg)
{
	/* jansson's iterators take a non-const json_t although they do not
	 * modify it; the view itself stays read-only. */
	json_t *j = (json_t *)(void *)o;
	if (!fn || !json_is_object(j))
		return;
	for (void *it = json_object_iter(j); it; it = json_object_iter_next(j, it)) {
		if (!fn(arg, json_object_iter_key(it), as_kobj(json_object_iter_value(it))))
			return;
	}
}
