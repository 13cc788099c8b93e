/* kube/json_parse.h: a fast, strict JSON parser that writes a flat tape.
 * Private to kube/ (kobj.c, watch.c, reflector.c) and to the kube tests,
 * fuzz targets and benchmarks: other modules see only kube/kobj.h.
 *
 * Every watch event and every LIST page goes through this parser. Building
 * a jansson tree per event (one malloc per value and per key, then as many
 * frees) was most of the agent's hot path, so the parser writes a "tape"
 * instead: one array of nodes in document order, in an arena (struct
 * ca_json_doc) that is reused from one document to the next and only grows
 * to the largest document it has seen. Parsing a document does no malloc
 * once the arena is large enough; freeing it is nothing.
 *
 * The tape. nodes[0] is a header; the root is nodes[1]. Every node has a
 * span: the number of nodes of its subtree, itself included (1 for a
 * scalar or a key), so the node after a subtree is `node + node->span`.
 *  - an array is followed by its elements, each a subtree;
 *  - an object is followed, for each member in document order, by a key
 *    node (CA_JSON_KEY) and then the value's subtree. Duplicated keys are
 *    all on the tape; the lookups in kobj.c resolve them as jansson did
 *    (the last value wins, at the position of the first occurrence);
 *  - n is the length of a string or key, and the number of elements or of
 *    members (duplicates counted) of a container.
 * Strings and keys are NUL-terminated C strings of length n. They live in
 * the arena's copy of the input: the closing quote of each string is
 * overwritten with NUL, and escaped strings are unescaped in place (an
 * unescaped string is never longer than its source). That one memcpy of the
 * input per document is what makes every string a C string without a copy
 * per string.
 *
 * Acceptance is exactly that of json_loadb(data, len, JSON_DECODE_ANY, ...)
 * with jansson 2.14 (checked by the differential fuzz target
 * tests/fuzz/fuzz_json.c); in short, RFC 8259 plus:
 *  - any value may be the top-level value; whitespace (space, tab, CR, LF)
 *    may surround it; anything else after it is an error;
 *  - strings must be valid UTF-8 (no overlong forms, no encoded surrogates,
 *    nothing above U+10FFFF); a \u escape of a surrogate must form a pair;
 *    \u0000 (which Go's encoder writes for a NUL byte) becomes U+FFFD in a
 *    value (jansson with JSON_ALLOW_NUL keeps the NUL) and is an error in a
 *    key (as in jansson), so every string on the tape is a C string of its
 *    full length;
 *  - integers (no fraction, no exponent) must fit in int64 ("too big
 *    integer" otherwise) and become CA_JSON_INT; other numbers become
 *    CA_JSON_REAL through strtod, and an overflow to infinity is an error
 *    (an underflow is not); the process must be in the "C" numeric locale,
 *    which the agent never changes;
 *  - nesting deeper than JSON_PARSER_MAX_DEPTH (2048, counting the
 *    top-level value as 1) is an error. No recursion;
 *  - a document may hold at most 4096 values plus one per 6 bytes of
 *    input (keys count): more is CA_ETOOBIG. API JSON has 9 to 15 bytes per
 *    value; the cap bounds the tape of a hostile dense document at five
 *    times its input. This is the one place where acceptance differs from
 *    jansson's, and the differential fuzz target allows for it.
 * A byte order mark is not skipped (it is an error, as in jansson). */
#ifndef CA_KUBE_JSON_PARSE_H
#define CA_KUBE_JSON_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "kube/kobj.h"

enum ca_json_type {
	CA_JSON_HEADER = 0, /* nodes[0] only */
	CA_JSON_NULL,
	CA_JSON_TRUE,
	CA_JSON_FALSE,
	CA_JSON_INT,
	CA_JSON_REAL,
	CA_JSON_STRING,
	CA_JSON_KEY, /* an object member's name; its value follows */
	CA_JSON_ARRAY,
	CA_JSON_OBJECT,
};

struct ca_json_doc;

/* One tape node; a const struct ca_kobj * points at one. 24 bytes. */
struct ca_kobj {
	uint8_t type;  /* enum ca_json_type */
	uint32_t span; /* nodes in this subtree, itself included */
	size_t n;      /* string/key length; element/member count */
	union {
		const char *s;       /* CA_JSON_STRING, CA_JSON_KEY */
		int64_t i;           /* CA_JSON_INT */
		double d;            /* CA_JSON_REAL */
		const uint32_t *idx; /* CA_JSON_ARRAY: element offsets, or NULL */
		struct ca_json_doc *doc; /* CA_JSON_HEADER: the owning arena */
	} v;
};

/* A reusable parse arena: the tape, the copy of the input its strings point
 * into, the parser's stack. Owns all of them; a tape read from it is valid
 * until the next parse with it or ca_kube_json_doc_free. One thread at a
 * time. */
enum ca_err ca_kube_json_doc_new(struct ca_json_doc **out);
void ca_kube_json_doc_free(struct ca_json_doc *doc); /* NULL is fine */
/* Give the memory back when the arena holds more than keep_bytes (one huge
 * document must not stay resident); any view into it is gone. */
void ca_kube_json_doc_trim(struct ca_json_doc *doc, size_t keep_bytes);

/* Parse the one JSON document held in data[0..len) (no NUL terminator
 * needed; only len bytes are read; data is copied, not kept) into doc,
 * replacing what doc held.
 * root: on CA_OK the root node, borrowed from doc; NULL otherwise.
 * err, errlen: when err is not NULL and errlen > 0, receives a short
 *      English reason with the byte offset on failure ("" on success).
 * Returns CA_OK, CA_EPROTO for input that is not accepted, CA_ENOMEM (also
 * for a document of more than 2^32 - 2 nodes), or CA_EINVAL when doc, data
 * or root is NULL. Never logs. The thread that owns doc. */
enum ca_err ca_kube_json_parse(struct ca_json_doc *doc, const char *data, size_t len,
                               const struct ca_kobj **root, char *err, size_t errlen);

#endif
