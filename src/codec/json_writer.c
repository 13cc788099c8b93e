/* codec/json_writer.c: strings, integers and timestamps for the direct
 * JSON writer (json_writer.h says what the text looks like and why).
 *
 * This is the agent's hot path (one call per event field), so it avoids
 * printf and per-field allocation: strings are copied eight bytes at a time
 * while no byte needs attention, and the buffer is grown only when an
 * escape makes the text longer than the input. */
#include "codec/json_writer.h"

#include <stdint.h>

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

static void buf_fail(struct ca_jw *w, enum ca_err err)
{
	if (!w->err)
		w->err = err;
}

bool ca_codec_jw_reserve(struct ca_jw *w, size_t n)
{
	enum ca_err err = ca_buf_reserve(w->out, n);
	if (err) {
		buf_fail(w, err);
		return false;
	}
	return true;
}

enum ca_err ca_codec_jw_finish(struct ca_jw *w)
{
	struct ca_buf *b = w->out;
	enum ca_err err = w->bad ? w->bad : w->err;
	if (err) {
		if (b->data) {
			b->len = w->start;
			b->data[w->start] = '\0';
		}
		return err;
	}
	if (b->data) /* every write reserved the byte after it */
		b->data[b->len] = '\0';
	return CA_OK;
}

/* ---------------------------------------------------------------- strings */

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

void ca_codec_jw_string(struct ca_jw *w, const char *s, size_t len)
{
	struct ca_buf *b = w->out;
	const unsigned char *p = (const unsigned char *)s, *end = p + len;
	if (w->err)
		return;
	if (len > SIZE_MAX / 2) {
		buf_fail(w, CA_ETOOBIG);
		return;
	}
	/* Every input byte becomes at least one output byte, so len + 2 is a
	 * lower bound of what the string needs: reserving it up front never
	 * fails a write that would have fitted. Invariant of the loop: at
	 * least (end - p) + 1 bytes are writable at o, so a block store of
	 * k <= end - p bytes always fits. */
	if (!ca_codec_jw_reserve(w, len + 2))
		return;
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
			size_t n = ca_codec_utf8_seq(p, (size_t)(end - p));
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
			if (ca_buf_reserve(b, need + 64) != CA_OK && !ca_codec_jw_reserve(w, need))
				return; /* ca_codec_jw_finish cuts the message off */
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
}

/* ---------------------------------------------------------------- numbers */

static const char two_digits[] =
	"00010203040506070809101112131415161718192021222324252627282930313233343536373839"
	"40414243444546474849505152535455565758596061626364656667686970717273747576777879"
	"8081828384858687888990919293949596979899";

size_t ca_codec_jw_format_int(int64_t v, char out[20])
{
	char tmp[20];
	char *e = tmp + sizeof tmp, *p = e;
	uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	while (u >= 100) {
		unsigned r = (unsigned)(u % 100);
		u /= 100;
		p -= 2;
		memcpy(p, two_digits + 2 * r, 2);
	}
	if (u >= 10) {
		p -= 2;
		memcpy(p, two_digits + 2 * u, 2);
	} else {
		*--p = (char)('0' + u);
	}
	if (v < 0)
		*--p = '-';
	size_t n = (size_t)(e - p);
	memcpy(out, p, n);
	return n;
}

static void put2(char *o, unsigned v)
{
	memcpy(o, two_digits + 2 * v, 2);
}

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
 * civil_from_days: 400-year eras, years starting in March). */
static void civil_from_days(int64_t z, int64_t *year, unsigned *month, unsigned *day)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	unsigned doe = (unsigned)(z - era * 146097);                              /* [0, 146096] */
	unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;      /* [0, 399] */
	unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);                    /* [0, 365] */
	unsigned mp = (5 * doy + 2) / 153;                                         /* [0, 11] */
	*day = doy - (153 * mp + 2) / 5 + 1;
	*month = mp < 10 ? mp + 3 : mp - 9;
	*year = (int64_t)yoe + era * 400 + (*month <= 2);
}

bool ca_codec_jw_format_time(int64_t unix_ms, char out[CA_CODEC_TIME_LEN])
{
	if (unix_ms < CA_CODEC_MIN_TIME_MS || unix_ms > CA_CODEC_MAX_TIME_MS)
		return false;
	/* Floor division: times before 1970 count back from the day before. */
	int64_t secs = unix_ms / 1000, ms = unix_ms % 1000;
	if (ms < 0) {
		ms += 1000;
		secs--;
	}
	int64_t days = secs / 86400, sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	int64_t year;
	unsigned month, day;
	civil_from_days(days, &year, &month, &day);
	unsigned y = (unsigned)year; /* 1..9999 in range */
	put2(out, y / 100);
	put2(out + 2, y % 100);
	out[4] = '-';
	put2(out + 5, month);
	out[7] = '-';
	put2(out + 8, day);
	out[10] = 'T';
	put2(out + 11, (unsigned)(sod / 3600));
	out[13] = ':';
	put2(out + 14, (unsigned)(sod / 60 % 60));
	out[16] = ':';
	put2(out + 17, (unsigned)(sod % 60));
	out[19] = '.';
	out[20] = (char)('0' + ms / 100);
	put2(out + 21, (unsigned)(ms % 100));
	out[23] = 'Z';
	return true;
}
