/* core/buf.h: a growable byte buffer with a hard cap.
 *
 * Used for everything built from network input or rendered for output. The
 * buffer is always NUL-terminated (data[len] == 0) so it can be handed to
 * string APIs. Embedded by value: ca_buf_init() / ca_buf_fini(). Not thread
 * safe; one owner. */
#ifndef CA_CORE_BUF_H
#define CA_CORE_BUF_H

#include <stdarg.h>
#include <stddef.h>

#include "core/err.h"

struct ca_buf {
	char *data;     /* NULL until the first append; owned */
	size_t len;     /* bytes used, not counting the trailing NUL */
	size_t cap;     /* bytes allocated */
	size_t max;     /* hard limit on len; appends beyond it fail with CA_ETOOBIG */
};

/* Start empty with a cap of max bytes (0 means 64 MiB). */
void ca_buf_init(struct ca_buf *b, size_t max);
/* Free the storage; the buffer may be reused after ca_buf_init(). */
void ca_buf_fini(struct ca_buf *b);
/* Forget the content, keep the storage. */
void ca_buf_reset(struct ca_buf *b);
/* Make room for n more bytes. CA_ETOOBIG if len + n would pass max. */
enum ca_err ca_buf_reserve(struct ca_buf *b, size_t n);
enum ca_err ca_buf_append(struct ca_buf *b, const void *data, size_t n);
enum ca_err ca_buf_append_str(struct ca_buf *b, const char *s);
enum ca_err ca_buf_printf(struct ca_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
enum ca_err ca_buf_vprintf(struct ca_buf *b, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* Drop the first n bytes (n <= len), moving the rest to the front. */
void ca_buf_consume(struct ca_buf *b, size_t n);
/* Hand the storage to the caller (free() it) and leave the buffer empty.
 * Returns an empty heap string when nothing was appended; NULL on ENOMEM. */
char *ca_buf_take(struct ca_buf *b, size_t *len);

/* Append s (NULL = "") as a JSON string with the one escaper of the
 * program (core/json.h): the result is valid JSON whatever s holds (server
 * error texts, file names), invalid UTF-8 replaced by U+FFFD. */
enum ca_err ca_buf_append_json_string(struct ca_buf *b, const char *s);

/* Bounded string copy that always terminates; returns CA_ETOOBIG when src
 * did not fit (dst then holds the truncated prefix). */
enum ca_err ca_strlcpy(char *dst, const char *src, size_t dstlen);

#endif
