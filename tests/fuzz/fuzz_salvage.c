/* Fuzz target for kube/salvage.h: any bytes as a LIST page. Whatever the
 * input, salvage either refuses it (CA_EPROTO, nothing written) or writes a
 * document that parses, whose "items" are all objects; and when the input
 * parses as a whole page (an object with an items array), salvage keeps
 * exactly its object items and counts the others as bad. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/buf.h"
#include "kube/json_parse.h"
#include "kube/kobj.h"
#include "kube/salvage.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *why, const uint8_t *data, size_t size)
{
	fprintf(stderr, "fuzz_salvage: %s\ninput (%zu bytes): %.*s\n", why, size, (int)(size < 600 ? size : 600),
	        (const char *)data);
	abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_buf out;
	size_t bad = 0;
	ca_buf_init(&out, size + 64);
	enum ca_err rc = ca_kube_list_salvage((const char *)data, size, &out, &bad);
	if (rc == CA_EPROTO && out.len != 0)
		fail("a refusal wrote something", data, size);
	if (rc == CA_OK) {
		struct ca_kobj *o = NULL;
		if (ca_kobj_parse(out.data, out.len, &o) != CA_OK)
			fail("what salvage wrote does not parse", data, size);
		const struct ca_kobj *items = ca_kobj_get(o, "items");
		size_t n = ca_kobj_array_len(items);
		if (!items || items->type != CA_JSON_ARRAY)
			fail("no items array", data, size);
		for (size_t i = 0; i < n; i++)
			if (ca_kobj_array_at(items, i)->type != CA_JSON_OBJECT)
				fail("an item that is not an object", data, size);
		struct ca_kobj *whole = NULL;
		if (ca_kobj_parse((const char *)data, size, &whole) == CA_OK) {
			const struct ca_kobj *wi = ca_kobj_member(whole, "items");
			if (whole->type == CA_JSON_OBJECT && wi && wi->type == CA_JSON_ARRAY) {
				size_t objects = 0, all = ca_kobj_array_len(wi);
				for (size_t i = 0; i < all; i++)
					objects += ca_kobj_array_at(wi, i)->type == CA_JSON_OBJECT;
				/* Duplicate "items" keys: jansson-like lookup keeps the
				 * last, salvage the last too; the counts must match. */
				if (objects != n || all - objects != bad)
					fail("items of a whole page lost or miscounted", data, size);
			}
		}
		ca_kobj_free(whole);
		ca_kobj_free(o);
	}
	ca_buf_fini(&out);
	return 0;
}
