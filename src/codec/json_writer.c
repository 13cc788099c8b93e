/* codec/json_writer.c: strings, integers and timestamps for the direct
 * JSON writer (json_writer.h says what the text looks like and why).
 *
 * This is the agent's hot path (one call per event field), so it avoids
 * printf and per-field allocation. Strings go through the one JSON string
 * escaper of the program (core/json.h). */
#include "codec/json_writer.h"

#include <stdint.h>

#include "core/json.h"

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

void ca_codec_jw_string(struct ca_jw *w, const char *s, size_t len)
{
	if (w->err)
		return;
	enum ca_err err = ca_json_append_string(w->out, s, len);
	if (err)
		buf_fail(w, err);
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
