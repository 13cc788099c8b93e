/* core/json.h: the one JSON string escaper of the program.
 *
 * Used by the codec for every message, by /health and the probes
 * (ca_buf_append_json_string) and by the logger, so all of the agent's JSON
 * is valid whatever bytes a server, a file or a peer sent. The text: '"'
 * and '\\' escaped, \b \f \n \r \t in their short form, the other bytes
 * below 0x20 as \u00XX (upper-case hex), everything else (0x7F, '/', valid
 * UTF-8) as is; NUL bytes and every byte that does not start a well-formed
 * UTF-8 sequence (core/utf8.h) become U+FFFD, one per byte. This is byte for
 * byte what jansson's compact encoder writes for valid input (the codec's
 * tests hold it to that). Any thread, one buffer per caller. */
#ifndef CA_CORE_JSON_H
#define CA_CORE_JSON_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* Append s[0..len) (NULs included) as a quoted JSON string. On failure
 * (CA_ETOOBIG at the buffer's cap, CA_ENOMEM) the buffer is left as it
 * was. */
enum ca_err ca_json_append_string(struct ca_buf *b, const char *s, size_t len);

#endif
