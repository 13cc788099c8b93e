/* codec/json_writer.h: the codec's direct JSON writer (private to codec/).
 *
 * Writes compact JSON straight onto the end of a struct ca_buf, with no
 * intermediate tree: keys are literals, strings are escaped in one pass,
 * integers and RFC 3339 timestamps are formatted without printf. The text
 * is byte for byte what the former jansson encoder wrote (json_dumpb with
 * JSON_COMPACT): '"' and '\\' escaped, \b \f \n \r \t in their short form,
 * the other bytes below 0x20 as \u00XX (upper-case hex), everything else
 * (0x7F, '/', valid UTF-8) as is; NUL bytes and bytes that do not start a
 * well-formed UTF-8 sequence become U+FFFD, one per byte.
 *
 * One struct ca_jw per message, on the caller's stack: ca_codec_jw_begin()
 * remembers where the message starts in the buffer (the buffer is borrowed
 * until ca_codec_jw_finish()), the jw_* calls append, and
 * ca_codec_jw_finish() returns the first error and, on error, cuts the
 * buffer back to where it was. Errors are sticky: after one, writes do
 * nothing. An invalid input (a timestamp out of range) is reported ahead of
 * a buffer failure even when the buffer failed first, as the tree-based
 * encoder did (it validated everything before writing a byte).
 * Not thread safe per writer; any thread may use its own. */
#ifndef CA_CODEC_JSON_WRITER_H
#define CA_CODEC_JSON_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/buf.h"
#include "core/err.h"

/* google.protobuf.Timestamp's range: 0001-01-01T00:00:00Z to
 * 9999-12-31T23:59:59.999Z, in milliseconds. */
#define CA_CODEC_MIN_TIME_MS (-62135596800000LL)
#define CA_CODEC_MAX_TIME_MS (253402300799999LL)

/* "2026-11-22T00:26:30.123Z": always 24 characters in the range above. */
#define CA_CODEC_TIME_LEN 24

struct ca_jw {
	struct ca_buf *out; /* borrowed */
	size_t start;       /* out->len when the message began */
	enum ca_err err;    /* first buffer failure (CA_ENOMEM, CA_ETOOBIG) */
	enum ca_err bad;    /* first invalid input; reported ahead of err */
	bool comma;         /* a member was written since the last '{' or '[' */
};

/* Slow path of jw_write: grow out for n more bytes; false (and w->err set)
 * when it cannot. */
bool ca_codec_jw_reserve(struct ca_jw *w, size_t n);
/* Terminate (or roll back) the message; the status of the whole write. */
enum ca_err ca_codec_jw_finish(struct ca_jw *w);
/* Append s[0..len) as a quoted, escaped, sanitized JSON string. */
void ca_codec_jw_string(struct ca_jw *w, const char *s, size_t len);
/* Decimal text of v into out (no NUL); returns the length (1..20). */
size_t ca_codec_jw_format_int(int64_t v, char out[20]);
/* RFC 3339 UTC text of unix_ms into out (no NUL), the same text as
 * ca_format_rfc3339() for every value in [CA_CODEC_MIN_TIME_MS,
 * CA_CODEC_MAX_TIME_MS]; false (out untouched) outside that range. */
bool ca_codec_jw_format_time(int64_t unix_ms, char out[CA_CODEC_TIME_LEN]);

static inline void ca_codec_jw_begin(struct ca_jw *w, struct ca_buf *out)
{
	w->out = out;
	w->start = out->len;
	w->err = CA_OK;
	w->bad = CA_OK;
	w->comma = false;
}

/* Record an invalid input; the message will fail with it. */
static inline void jw_fail(struct ca_jw *w, enum ca_err err)
{
	if (!w->bad)
		w->bad = err;
}

/* The small writers are forced inline: they run once per field and are
 * mostly a constant-size copy once inlined. */
#define JW_INLINE static inline __attribute__((always_inline))

JW_INLINE void jw_write(struct ca_jw *w, const void *s, size_t n)
{
	struct ca_buf *b = w->out;
	if (w->err)
		return;
	/* Fast path: room below both the allocation (keeping one byte for
	 * the NUL) and the cap. n is small here or bounded by a string that
	 * exists in memory, so len + n cannot wrap. */
	if (!(b->cap > b->len + n && b->len + n <= b->max) && !ca_codec_jw_reserve(w, n))
		return;
	memcpy(b->data + b->len, s, n);
	b->len += n;
}

JW_INLINE void jw_write2(struct ca_jw *w, const char *a, size_t na, const char *c, size_t nc)
{
	struct ca_buf *b = w->out;
	if (w->err)
		return;
	if (!(b->cap > b->len + na + nc && b->len + na + nc <= b->max) && !ca_codec_jw_reserve(w, na + nc))
		return;
	memcpy(b->data + b->len, a, na);
	memcpy(b->data + b->len + na, c, nc);
	b->len += na + nc;
}

/* A member of the current container: the comma when one is due. key is
 * the literal "\"name\":" (or "" for an array element). */
JW_INLINE void jw_key(struct ca_jw *w, const char *key, size_t n)
{
	if (w->comma)
		jw_write2(w, ",", 1, key, n);
	else
		jw_write(w, key, n);
	w->comma = true;
}

#define JW_KEY(w, name) jw_key((w), "\"" name "\":", sizeof("\"" name "\":") - 1)

/* '{' or '[' (after JW_KEY or jw_elem) and the matching close. */
static inline void jw_open(struct ca_jw *w, char c)
{
	jw_write(w, &c, 1);
	w->comma = false;
}

static inline void jw_close(struct ca_jw *w, char c)
{
	jw_write(w, &c, 1);
	w->comma = true;
}

/* An array element. */
static inline void jw_elem(struct ca_jw *w)
{
	jw_key(w, "", 0);
}

/* Fields, with the encoder's omission rules: strings are left out when
 * NULL or empty, timestamps when 0; numbers and booleans always present. */
#define JW_STR(w, name, s)                                                       \
	do {                                                                     \
		const char *jw_s_ = (s);                                         \
		if (jw_s_ && *jw_s_) {                                           \
			JW_KEY((w), name);                                       \
			ca_codec_jw_string((w), jw_s_, strlen(jw_s_));           \
		}                                                                \
	} while (0)

#define JW_STRN(w, name, s, len)                                                 \
	do {                                                                     \
		const char *jw_s_ = (s);                                         \
		size_t jw_n_ = (len);                                            \
		if (jw_s_ && jw_n_) {                                            \
			JW_KEY((w), name);                                       \
			ca_codec_jw_string((w), jw_s_, jw_n_);                   \
		}                                                                \
	} while (0)

#define JW_INT(w, name, v)                                                       \
	do {                                                                     \
		char jw_t_[20];                                                  \
		size_t jw_n_ = ca_codec_jw_format_int((int64_t)(v), jw_t_);      \
		JW_KEY((w), name);                                               \
		jw_write((w), jw_t_, jw_n_);                                     \
	} while (0)

#define JW_BOOL(w, name, v)                                                      \
	do {                                                                     \
		JW_KEY((w), name);                                               \
		if (v)                                                           \
			jw_write((w), "true", 4);                                \
		else                                                             \
			jw_write((w), "false", 5);                               \
	} while (0)

#define JW_TIME(w, name, ms)                                                     \
	do {                                                                     \
		int64_t jw_ms_ = (ms);                                           \
		char jw_t_[CA_CODEC_TIME_LEN + 2];                               \
		if (jw_ms_ == 0)                                                 \
			break;                                                   \
		if (!ca_codec_jw_format_time(jw_ms_, jw_t_ + 1)) {               \
			jw_fail((w), CA_EINVAL);                                 \
			break;                                                   \
		}                                                                \
		jw_t_[0] = '"';                                                  \
		jw_t_[CA_CODEC_TIME_LEN + 1] = '"';                              \
		JW_KEY((w), name);                                               \
		jw_write((w), jw_t_, sizeof jw_t_);                              \
	} while (0)

#endif
