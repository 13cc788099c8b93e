/* Differential fuzz target for kube/json_parse.h: every input goes through
 * jansson's json_loadb and through ca_kube_json_parse, and the two must
 * agree, or the target aborts:
 *  - on accept/reject, with JSON_DECODE_ANY (what kobj.c asked jansson
 *    for) and with flags 0 (what watch.c asked for: the top level must be
 *    an object or an array);
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
	const char *text = (const char *)data;
	json_error_t error;
	char why[160];
	json_t *mine = NULL;

	json_t *ref = json_loadb(text, size, JSON_DECODE_ANY, &error);
	enum ca_err rc = ca_kube_json_parse(text, size, &mine, why, sizeof why);
	if (rc == CA_ENOMEM) {
		/* Not a verdict on the input (a fuzzing engine's malloc limit). */
		json_decref(ref);
		return 0;
	}
	if (rc != CA_OK && rc != CA_EPROTO)
		disagree("unexpected status", data, size, "-", ca_strerror(rc));
	if ((ref != NULL) != (rc == CA_OK))
		disagree(ref ? "jansson accepts, we reject" : "jansson rejects, we accept", data, size,
		         ref ? "ok" : error.text, rc == CA_OK ? "ok" : why);
	if (rc == CA_OK) {
		if (!mine || why[0])
			disagree("accepted without a tree, or with an error text", data, size, "ok", why);
		if (!json_equal(ref, mine) || !same(ref, mine))
			disagree("trees differ", data, size, "ok", "ok");
	} else if (mine || !why[0]) {
		disagree("rejected with a tree, or without a reason", data, size, error.text, why);
	}

	/* watch.c used flags 0: only an object or array at the top. */
	json_t *ref0 = json_loadb(text, size, 0, &error);
	bool ours0 = mine && (json_is_object(mine) || json_is_array(mine));
	if ((ref0 != NULL) != ours0)
		disagree("disagree with flags 0", data, size, ref0 ? "ok" : error.text,
		         ours0 ? "ok" : "not a container");

	json_decref(ref0);
	json_decref(ref);
	json_decref(mine);
	return 0;
}
