/* kube/json_parse.h: a fast, strict JSON parser that builds jansson trees.
 * Private to kube/ (kobj.c, watch.c): jansson types never leave the module.
 *
 * Every watch event and every LIST page goes through this parser, and
 * jansson's own byte-at-a-time lexer was the bottleneck of the agent's hot
 * path. This parser scans with word-at-a-time loops and a byte class table,
 * then builds the same tree jansson would, through jansson's public API.
 *
 * Acceptance is exactly that of json_loadb(data, len, JSON_DECODE_ANY, ...)
 * with jansson 2.14 (checked by the differential fuzz target
 * tests/fuzz/fuzz_json.c); in short, RFC 8259 plus:
 *  - any value may be the top-level value; whitespace (space, tab, CR, LF)
 *    may surround it; anything else after it is an error;
 *  - strings must be valid UTF-8 (no overlong forms, no encoded surrogates,
 *    nothing above U+10FFFF); a \u escape of a surrogate must form a pair;
 *    \u0000 is rejected, in keys and values, so every string in the tree is
 *    a C string of its full length;
 *  - integers (no fraction, no exponent) must fit in int64 ("too big
 *    integer" otherwise) and become json_integer; other numbers become
 *    json_real through strtod, and an overflow to infinity is an error
 *    (an underflow is not); the process must be in the "C" numeric locale,
 *    which the agent never changes;
 *  - a duplicated object key keeps its last value;
 *  - nesting deeper than JSON_PARSER_MAX_DEPTH (2048, counting the
 *    top-level value as 1) is an error. No recursion: the containers being
 *    filled are kept on a heap stack.
 * A byte order mark is not skipped (it is an error, as in jansson). */
#ifndef CA_KUBE_JSON_PARSE_H
#define CA_KUBE_JSON_PARSE_H

#include <jansson.h>
#include <stddef.h>

#include "core/err.h"

/* Parse the one JSON document held in data[0..len) (no NUL terminator
 * needed; only len bytes are read).
 * out: on CA_OK the new tree, owned by the caller (json_decref); NULL
 *      otherwise.
 * err, errlen: when err is not NULL and errlen > 0, receives a short
 *      English reason with the byte offset on failure ("" on success).
 * Returns CA_OK, CA_EPROTO for input that is not accepted, CA_ENOMEM, or
 * CA_EINVAL when data or out is NULL. Never logs. Any thread; no shared
 * state. */
enum ca_err ca_kube_json_parse(const char *data, size_t len, json_t **out, char *err,
                               size_t errlen);

#endif
