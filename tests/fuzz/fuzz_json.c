/* Differential fuzz target for kube/json_parse.h: every input goes through
 * jansson's json_loadb and through ca_kube_json_parse (into one arena reused
 * for every input, as watch.c does), and the two must agree, or the target
 * aborts. The tape is compared by rebuilding the jansson tree it stands for
 * through the kobj API (ca_kobj_foreach, ca_kobj_array_at, ca_kobj_str) and
 * the node types: so the lookups, not only the parser, must match jansson,
 * including its duplicate keys (each key once, at its first position, with
 * its last value; ca_kobj_member must give that same value). Checks:
 *  - on accept/reject, with JSON_DECODE_ANY (what kobj.c asked jansson
 *    for) and with flags 0 (what watch.c asked for: the top level must be
 *    an object or an array), both with JSON_ALLOW_NUL: our parser turns a
 *    \u0000 in a string value into U+FFFD (json_parse.h), so jansson's
 *    tree gets the same replacement before the trees are compared;
 *  - on the tree, when both accept: json_equal, and a stricter walk that
 *    also requires the same member order, the same integer/real typing
 *    and bit-identical reals (json_equal lets -0.0 equal 0.0).
 * A rejection must come with a reason in the error buffer and no tree. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube/json_parse.h"
#include "kube/kobj.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what)
{
	fprintf(stderr, "fuzz_json: %s\n", what);
	abort();
}

static json_t *to_json(const struct ca_kobj *o);

struct to_json_ctx {
	json_t *obj;
	const struct ca_kobj *parent;
};

static bool add_member(void *arg, const char *key, const struct ca_kobj *v)
{
	struct to_json_ctx *c = arg;
	if (json_object_get(c->obj, key))
		fail("ca_kobj_foreach gave a key twice");
	if (ca_kobj_member(c->parent, key) != v)
		fail("ca_kobj_foreach and ca_kobj_member disagree");
	if (json_object_set_new(c->obj, key, to_json(v)))
		fail("out of memory");
	return true;
}

/* The tree a tape stands for, read through the kobj API. */
static json_t *to_json(const struct ca_kobj *o)
{
	json_t *j = NULL;
	switch (o->type) {
	case CA_JSON_NULL: j = json_null(); break;
	case CA_JSON_TRUE: j = json_true(); break;
	case CA_JSON_FALSE: j = json_false(); break;
	case CA_JSON_INT: j = json_integer((json_int_t)o->v.i); break;
	case CA_JSON_REAL: j = json_real(o->v.d); break;
	case CA_JSON_STRING: {
		const char *s = ca_kobj_str(o, NULL);
		if (!s || strlen(s) != o->n)
			fail("a string is not a C string of its length");
		j = json_stringn_nocheck(s, o->n);
		break;
	}
	case CA_JSON_ARRAY:
		j = json_array();
		for (size_t i = 0; j && i < ca_kobj_array_len(o); i++) {
			if (json_array_append_new(j, to_json(ca_kobj_array_at(o, i))))
				fail("out of memory");
		}
		if (ca_kobj_array_at(o, ca_kobj_array_len(o)))
			fail("an element past the end");
		break;
	case CA_JSON_OBJECT: {
		struct to_json_ctx c = {json_object(), o};
		if (c.obj)
			ca_kobj_foreach(o, add_member, &c);
		j = c.obj;
		break;
	}
	default:
		fail("unexpected node type");
	}
	if (!j)
		fail("out of memory");
	return j;
}

static bool same(const json_t *a, const json_t *b)
{
	if (json_typeof(a) != json_typeof(b))
		return false;
	switch (json_typeof(a)) {
	case JSON_OBJECT: {
		if (json_object_size(a) != json_object_size(b))
			return false;
		/* The iterators take non-const objects but do not modify them. */
		void *ia = json_object_iter((json_t *)a), *ib = json_object_iter((json_t *)b);
		for (; ia && ib; ia = json_object_iter_next((json_t *)a, ia),
		                 ib = json_object_iter_next((json_t *)b, ib)) {
			size_t ka = json_object_iter_key_len(ia), kb = json_object_iter_key_len(ib);
			if (ka != kb || memcmp(json_object_iter_key(ia), json_object_iter_key(ib), ka) != 0)
				return false;
			if (!same(json_object_iter_value(ia), json_object_iter_value(ib)))
				return false;
		}
		return !ia && !ib;
	}
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return false;
		for (size_t i = 0; i < json_array_size(a); i++) {
			if (!same(json_array_get(a, i), json_array_get(b, i)))
				return false;
		}
		return true;
	case JSON_STRING:
		return json_string_length(a) == json_string_length(b) &&
		       memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) == 0 &&
		       strlen(json_string_value(a)) == json_string_length(a);
	case JSON_INTEGER:
		return json_integer_value(a) == json_integer_value(b);
	case JSON_REAL: {
		double x = json_real_value(a), y = json_real_value(b);
		return memcmp(&x, &y, sizeof x) == 0;
	}
	default:
		return true; /* true, false, null: the type says it all */
	}
}

/* jansson's tree with every NUL byte of a string value replaced by U+FFFD,
 * what our parser does with \u0000 (keys with NUL jansson rejects, as we
 * do). */
static json_t *nul_to_fffd(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_STRING: {
		const char *s = json_string_value(j);
		size_t n = json_string_length(j);
		if (!memchr(s, '\0', n))
			return j;
		char *t = malloc(n * 3 + 1);
		size_t o = 0;
		if (!t)
			fail("out of memory");
		for (size_t i = 0; i < n; i++) {
			if (s[i] == '\0') {
				memcpy(t + o, "\xEF\xBF\xBD", 3);
				o += 3;
			} else {
				t[o++] = s[i];
			}
		}
		json_t *r = json_stringn_nocheck(t, o);
		free(t);
		json_decref(j);
		return r;
	}
	case JSON_ARRAY:
		for (size_t i = 0; i < json_array_size(j); i++)
			json_array_set_new(j, i, nul_to_fffd(json_incref(json_array_get(j, i))));
		return j;
	case JSON_OBJECT: {
		void *it = json_object_iter(j);
		while (it) {
			json_t *v = json_object_iter_value(it);
			json_object_iter_set_new(j, it, nul_to_fffd(json_incref(v)));
			it = json_object_iter_next(j, it);
		}
		return j;
	}
	default:
		return j;
	}
}

static void disagree(const char *what, const uint8_t *data, size_t size, const char *ref_err,
                     const char *our_err)
{
	fprintf(stderr, "fuzz_json: %s\n  jansson: %s\n  ours:    %s\n  input (%zu bytes): ", what,
	        ref_err, our_err, size);
	for (size_t i = 0; i < size && i < 512; i++) {
		unsigned c = data[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			fputc((int)c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fputc('\n', stderr);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ca_json_doc *doc;
	const char *text = (const char *)data;
	json_error_t error;
	char why[160];
	json_t *mine = NULL;
	const struct ca_kobj *root = NULL;

	if (!doc && ca_kube_json_doc_new(&doc) != CA_OK)
		return 0;
	json_t *ref = json_loadb(text, size, JSON_DECODE_ANY | JSON_ALLOW_NUL, &error);
	if (ref)
		ref = nul_to_fffd(ref);
	enum ca_err rc = ca_kube_json_parse(doc, text, size, &root, why, sizeof why);
	if (rc == CA_ENOMEM || rc == CA_ETOOBIG) {
		/* Not a verdict on the input's syntax: a fuzzing engine's malloc
		 * limit, or more values than the parser's cap for the size
		 * (json_parse.h), which is ours alone. */
		json_decref(ref);
		return 0;
	}
	if (rc != CA_OK && rc != CA_EPROTO)
		disagree("unexpected status", data, size, "-", ca_strerror(rc));
	if ((ref != NULL) != (rc == CA_OK))
		disagree(ref ? "jansson accepts, we reject" : "jansson rejects, we accept", data, size,
		         ref ? "ok" : error.text, rc == CA_OK ? "ok" : why);
	if (rc == CA_OK) {
		if (!root || why[0])
			disagree("accepted without a tape, or with an error text", data, size, "ok", why);
		mine = to_json(root);
		if (!json_equal(ref, mine) || !same(ref, mine))
			disagree("trees differ", data, size, "ok", "ok");
	} else if (root || !why[0]) {
		disagree("rejected with a tape, or without a reason", data, size, error.text, why);
	}

	/* The owning parse (its own arena) agrees with the reused one. */
	struct ca_kobj *owned = NULL;
	enum ca_err orc = ca_kobj_parse(text, size, &owned);
	if (orc != CA_ENOMEM) {
		if ((orc == CA_OK) != (rc == CA_OK))
			disagree("ca_kobj_parse disagrees", data, size, "-", ca_strerror(orc));
		if (owned) {
			json_t *again = to_json(owned);
			if (!same(mine, again))
				disagree("ca_kobj_parse gives another tree", data, size, "ok", "ok");
			json_decref(again);
		}
	}
	ca_kobj_free(owned);

	/* watch.c used flags 0: only an object or array at the top. */
	json_t *ref0 = json_loadb(text, size, JSON_ALLOW_NUL, &error);
	bool ours0 = mine && (json_is_object(mine) || json_is_array(mine));
	if ((ref0 != NULL) != ours0)
		disagree("disagree with flags 0", data, size, ref0 ? "ok" : error.text,
		         ours0 ? "ok" : "not a container");

	json_decref(ref0);
	json_decref(ref);
	json_decref(mine);
	return 0;
}
