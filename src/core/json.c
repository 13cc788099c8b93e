/* core/json.c: the one JSON string escaper (core/json.h says what the
 * text looks like).
 *
 * It is the agent's hot path (one call per event field in the codec), so
 * it avoids printf and per-field allocation: strings are copied eight or
 * sixteen bytes at a time while no byte needs attention, and the buffer is
 * grown only when an escape makes the text longer than the input. */
#include "core/json.h"

#include <stdint.h>
#include <string.h>

#include "core/utf8.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* What a byte needs inside a JSON string: 0 nothing, a letter for its
 * backslash escape ('u' for \u00XX), U for a byte that may start a UTF-8
 * sequence, R for NUL (written as U+FFFD, as the encoder always did). */
#define U 1
#define R 2
#define ROW8(x) x, x, x, x, x, x, x, x
#define ROW16(x) ROW8(x), ROW8(x)
static const unsigned char escape_of[256] = {
	R,   'u', 'u', 'u', 'u', 'u', 'u', 'u', 'b', 't', 'n', 'u', 'f', 'r', 'u', 'u', /* 0x00 */
	ROW16('u'),                                                                   /* 0x10 */
	0,   0,   '"', 0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   /* 0x20 */
	ROW16(0),                                                                     /* 0x30 */
	ROW16(0),                                                                     /* 0x40 */
	0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   '\\', 0,  0,   0,   /* 0x50 */
	ROW16(0), ROW16(0),                                                           /* 0x60 */
	ROW16(U), ROW16(U), ROW16(U), ROW16(U), ROW16(U), ROW16(U), ROW16(U), ROW16(U), /* 0x80 */
};

static const char hex_upper[] = "0123456789ABCDEF";

/* The scanners below look at 16 (SSE2) or 8 (portable) bytes at once and
 * return how many leading bytes need no care: not below 0x20, not '"' or
 * '\\', not 0x80 or above. They store the whole block at o first (the
 * caller guarantees room for it) so the clean prefix costs no byte loop. */

#if defined(__SSE2__)
static inline size_t clean_block16(const unsigned char *p, char *o)
{
	__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
	/* Signed compare: bytes 0x80..0xFF are negative, so "< 0x20" catches
	 * both the control bytes and every non-ASCII byte. */
	__m128i m = _mm_or_si128(_mm_cmplt_epi8(v, _mm_set1_epi8(0x20)),
	                         _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')),
	                                      _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))));
	unsigned mask = (unsigned)_mm_movemask_epi8(m);
	_mm_storeu_si128((__m128i *)(void *)o, v);
	return mask ? (size_t)__builtin_ctz(mask) : 16;
}
#endif

/* Bit tricks from "Bit Twiddling Hacks" (haszero, hasless): each term
 * flags its first matching byte exactly (later flags may be borrows), so
 * the lowest flag of the union is the first byte that needs care. */
static inline size_t clean_block8(const unsigned char *p, char *o)
{
	const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
	uint64_t x;
	memcpy(&x, p, 8);
	memcpy(o, p, 8);
	uint64_t q = x ^ (ones * '"'), b = x ^ (ones * '\\');
	uint64_t t = (x | ((x - ones * 0x20) & ~x) | ((q - ones) & ~q) | ((b - ones) & ~b)) & highs;
	if (!t)
		return 8;
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
	return (size_t)__builtin_ctzll(t) >> 3;
#else
	return 0; /* the byte loop sorts it out */
#endif
}

/* Writable end of out's storage: below both the allocation (one byte kept
 * for the NUL) and the cap. */
static char *write_limit(const struct ca_buf *b)
{
	size_t end = b->cap - 1 < b->max ? b->cap - 1 : b->max;
	return b->data + end;
}

enum ca_err ca_json_append_string(struct ca_buf *b, const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	size_t start = b->len;
	enum ca_err err;
	if (len > SIZE_MAX / 2)
		return CA_ETOOBIG;
	/* Every input byte becomes at least one output byte, so len + 2 is a
	 * lower bound of what the string needs: reserving it up front never
	 * fails a write that would have fitted. Invariant of the loop: at
	 * least (end - p) + 1 bytes are writable at o, so a block store of
	 * k <= end - p bytes always fits. */
	if ((err = ca_buf_reserve(b, len + 2)) != CA_OK)
		return err;
	char *o = b->data + b->len, *lim = write_limit(b);
	*o++ = '"';
	while (p < end) {
		size_t k;
#if defined(__SSE2__)
		while (end - p >= 16) {
			k = clean_block16(p, o);
			o += k;
			p += k;
			if (k < 16)
				goto care;
		}
#endif
		while (end - p >= 8) {
			k = clean_block8(p, o);
			o += k;
			p += k;
			if (k < 8)
				goto care;
		}
		if (p == end)
			break;
care:;
		unsigned c = *p, e = escape_of[c];
		if (e == 0) {
			*o++ = (char)c;
			p++;
			continue;
		}
		if (e == U) {
			size_t n = ca_utf8_seq(p, (size_t)(end - p));
			if (n) {
				/* n <= 4 <= end - p: a fixed-size copy, the excess is
				 * overwritten by what follows. */
				if (end - p >= 4)
					memcpy(o, p, 4);
				else
					memcpy(o, p, n);
				o += n;
				p += n;
				continue;
			}
		}
		/* One input byte becomes k output bytes. */
		k = e == 'u' ? 6 : (e == U || e == R) ? 3 : 2;
		size_t need = k + (size_t)(end - p); /* this byte, the rest, the quote */
		if ((size_t)(lim - o) < need) {
			b->len = (size_t)(o - b->data);
			/* Some slack so a run of escapes does not come back here for
			 * every byte; the exact amount when the cap allows no more. */
			if (ca_buf_reserve(b, need + 64) != CA_OK &&
			    (err = ca_buf_reserve(b, need)) != CA_OK) {
				b->len = start;
				b->data[start] = '\0';
				return err;
			}
			o = b->data + b->len;
			lim = write_limit(b);
		}
		if (e == U || e == R) {
			memcpy(o, "\xEF\xBF\xBD", 3);
		} else if (e == 'u') {
			memcpy(o, "\\u00", 4);
			o[4] = hex_upper[c >> 4];
			o[5] = hex_upper[c & 0xF];
		} else {
			o[0] = '\\';
			o[1] = (char)e;
		}
		o += k;
		p++;
	}
	*o++ = '"';
	b->len = (size_t)(o - b->data);
	b->data[b->len] = '\0';
	return CA_OK;
}
