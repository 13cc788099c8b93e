/* Differential fuzz target for metrics/quantity.h: every input goes through
 * ca_quantity_parse and through a second, deliberately different reader
 * written here (the grammar matched piece by piece on the string, the value
 * computed in decimal digits, one digit per byte, instead of the parser's
 * binary words), and the two must agree, or the target aborts. Checks:
 *  - the status is CA_OK, CA_EINVAL or CA_ETOOBIG, and nothing longer than
 *    CA_QUANTITY_MAX_LEN is accepted;
 *  - CA_EINVAL exactly when the text is outside the grammar;
 *  - on a well-formed text: the same value (rounded up to whole nanos), the
 *    same sign and format, or CA_ETOOBIG exactly when the exponent is
 *    outside int32 or the magnitude reaches 2^64 units;
 *  - the conversions agree with each other: value = ceil(milli / 1000) in
 *    magnitude, milli fits whenever value is small enough, the same sign;
 *  - the canonical form fits CA_QUANTITY_STR_MAX, parses back to the same
 *    value, and is its own canonical form (a binary one after one more
 *    round: "312.5Ki" is "320000", which reads as decimal, "320k");
 *  - the conveniences give parse + conversion, refusing negatives. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics/quantity.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fail(const char *what, const uint8_t *data, size_t size)
{
	fprintf(stderr, "fuzz_quantity: %s\n  input (%zu bytes): ", what, size);
	for (size_t i = 0; i < size && i < 128; i++) {
		unsigned c = data[i];
		if (c >= 0x20 && c < 0x7f && c != '\\')
			fputc((int)c, stderr);
		else
			fprintf(stderr, "\\x%02x", c);
	}
	fputc('\n', stderr);
	abort();
}

/* ------------------------------------------------------------------------
 * The reference reader */

struct ref {
	bool negative;
	const char *int_part, *frac_part, *suffix, *exp_digits;
	size_t int_len, frac_len, suffix_len, exp_len;
	bool exp_minus;
	int pow10, pow2;
	enum ca_quantity_format format;
};

static size_t span_digits(const char *s, size_t n)
{
	size_t i = 0;
	while (i < n && s[i] >= '0' && s[i] <= '9')
		i++;
	return i;
}

/* The grammar of quantity.h, piece by piece. */
static bool ref_match(const char *s, size_t n, struct ref *r)
{
	static const struct {
		const char *text;
		int pow10, pow2;
	} suffixes[] = {
		{"", 0, 0},    {"n", -9, 0},  {"u", -6, 0},  {"m", -3, 0},  {"k", 3, 0},
		{"M", 6, 0},   {"G", 9, 0},   {"T", 12, 0},  {"P", 15, 0},  {"E", 18, 0},
		{"Ki", 0, 10}, {"Mi", 0, 20}, {"Gi", 0, 30}, {"Ti", 0, 40}, {"Pi", 0, 50},
		{"Ei", 0, 60},
	};
	size_t i = 0;
	memset(r, 0, sizeof *r);
	if (n > 0 && (s[0] == '+' || s[0] == '-')) {
		r->negative = s[0] == '-';
		i = 1;
	}
	r->int_part = s + i;
	r->int_len = span_digits(s + i, n - i);
	i += r->int_len;
	if (i < n && s[i] == '.') {
		i++;
		r->frac_part = s + i;
		r->frac_len = span_digits(s + i, n - i);
		i += r->frac_len;
	}
	if (r->int_len + r->frac_len == 0)
		return false;
	r->suffix = s + i;
	r->suffix_len = n - i;
	for (size_t k = 0; k < sizeof suffixes / sizeof suffixes[0]; k++) {
		size_t l = strlen(suffixes[k].text);
		if (l == r->suffix_len && memcmp(suffixes[k].text, r->suffix, l) == 0) {
			r->pow10 = suffixes[k].pow10;
			r->pow2 = suffixes[k].pow2;
			r->format = r->pow2 ? CA_QUANTITY_BINARY_SI : CA_QUANTITY_DECIMAL_SI;
			return true;
		}
	}
	/* [eE][+-]?[0-9]+ */
	const char *e = r->suffix;
	size_t el = r->suffix_len;
	if (el < 2 || (e[0] != 'e' && e[0] != 'E'))
		return false;
	e++;
	el--;
	if (e[0] == '+' || e[0] == '-') {
		r->exp_minus = e[0] == '-';
		e++;
		el--;
	}
	if (el == 0 || span_digits(e, el) != el)
		return false;
	r->exp_digits = e;
	r->exp_len = el;
	r->format = CA_QUANTITY_DECIMAL_EXPONENT;
	return true;
}

enum { FRAC = 120, INTD = 48, WIDTH = FRAC + INTD };

/* What the parser must give for a well-formed text: CA_ETOOBIG, or CA_OK
 * with this value. The value in decimal digits d[0..WIDTH), d[FRAC] being
 * the units digit: digit k stands for 10^(k - FRAC). */
static enum ca_err ref_value(const struct ref *r, struct ca_quantity *q)
{
	/* the exponent, if any: past 10 significant digits it is past int32 */
	int64_t exponent = 0;
	size_t k = 0;
	while (k < r->exp_len && r->exp_digits[k] == '0')
		k++;
	if (r->exp_len - k > 10)
		return CA_ETOOBIG;
	for (; k < r->exp_len; k++)
		exponent = exponent * 10 + (r->exp_digits[k] - '0');
	if (r->exp_minus)
		exponent = -exponent;
	if (exponent > INT32_MAX || exponent < INT32_MIN)
		return CA_ETOOBIG;

	/* all digits, integer then fraction, as one string of digits whose
	 * last one stands for 10^e10 */
	char all[2 * CA_QUANTITY_MAX_LEN];
	size_t n = 0;
	memcpy(all, r->int_part, r->int_len);
	n = r->int_len;
	if (r->frac_len)
		memcpy(all + n, r->frac_part, r->frac_len);
	n += r->frac_len;
	int64_t e10 = exponent + r->pow10 - (int64_t)r->frac_len;
	size_t first = 0;
	while (first < n && all[first] == '0')
		first++;
	memset(q, 0, sizeof *q);
	q->format = r->format;
	if (first == n)
		return CA_OK; /* zero, never negative */
	q->negative = r->negative;
	size_t len = n - first; /* significant digits, no leading zero */
	/* digit j of all[first..n) stands for 10^(e10 + len - 1 - j) */
	int64_t top = e10 + (int64_t)len - 1;
	if (top >= 20) /* >= 10^20 > 2^64 */
		return CA_ETOOBIG;
	if (top < -(FRAC - 20)) {
		/* below 10^-100 even times 2^60: rounds up to one nano */
		q->nanos = 1;
		if (q->format == CA_QUANTITY_BINARY_SI)
			q->format = CA_QUANTITY_DECIMAL_SI;
		return CA_OK;
	}
	unsigned char d[WIDTH];
	bool lost = false; /* a non-zero digit below 10^-FRAC */
	memset(d, 0, sizeof d);
	for (size_t j = 0; j < len; j++) {
		int64_t pos = FRAC + top - (int64_t)j;
		if (pos < 0)
			lost |= all[first + j] != '0';
		else
			d[pos] = (unsigned char)(all[first + j] - '0');
	}
	for (int t = 0; t < r->pow2; t++) {
		unsigned carry = 0;
		for (int p = 0; p < WIDTH; p++) {
			unsigned v = d[p] * 2u + carry;
			d[p] = (unsigned char)(v % 10);
			carry = v / 10;
		}
		if (carry)
			return CA_ETOOBIG;
	}
	/* 2^64 = 18446744073709551616: compare the integer digits with it */
	static const char limit[] = "18446744073709551616";
	int hi = WIDTH - 1;
	while (hi > FRAC && d[hi] == 0)
		hi--;
	int ndig = hi - FRAC + 1;
	if (ndig > 20)
		return CA_ETOOBIG;
	if (ndig == 20) {
		for (int j = 0; j < 20; j++) {
			int a = d[hi - j], b = limit[j] - '0';
			if (a != b) {
				if (a > b)
					return CA_ETOOBIG;
				break;
			}
			if (j == 19)
				return CA_ETOOBIG; /* exactly 2^64 */
		}
	}
	uint64_t units = 0;
	for (int p = hi; p >= FRAC; p--)
		units = units * 10 + d[p];
	uint32_t nanos = 0;
	for (int p = FRAC - 1; p >= FRAC - 9; p--)
		nanos = nanos * 10 + d[p];
	for (int p = FRAC - 10; p >= 0; p--)
		lost |= d[p] != 0;
	if (lost) {
		if (++nanos == 1000000000u) {
			nanos = 0;
			if (units == UINT64_MAX)
				return CA_ETOOBIG;
			units++;
		}
	}
	q->units = units;
	q->nanos = nanos;
	if (q->format == CA_QUANTITY_BINARY_SI && units == 0)
		q->format = CA_QUANTITY_DECIMAL_SI;
	return CA_OK;
}

/* ------------------------------------------------------------------------
 * Consistency of what a parsed quantity gives */

static void check_conversions(const struct ca_quantity *q, const uint8_t *data, size_t size)
{
	int64_t milli = 0, value = 0;
	enum ca_err mrc = ca_quantity_milli(q, &milli);
	enum ca_err vrc = ca_quantity_value(q, &value);
	if ((mrc != CA_OK && mrc != CA_ETOOBIG) || (vrc != CA_OK && vrc != CA_ETOOBIG))
		fail("a conversion failed other than by size", data, size);
	if (mrc == CA_OK && vrc != CA_OK)
		fail("milli fits but value does not", data, size);
	/* exact expectations from units and nanos, in 128-bit-free terms */
	uint64_t want_value = q->units + (q->nanos ? 1 : 0);
	bool value_fits = !(q->nanos && q->units == UINT64_MAX) &&
	                  want_value <= (uint64_t)INT64_MAX + (q->negative ? 1 : 0);
	if ((vrc == CA_OK) != value_fits)
		fail("value overflow misjudged", data, size);
	if (vrc == CA_OK) {
		uint64_t mag = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
		if (mag != want_value || (value < 0) != (q->negative && want_value != 0))
			fail("value is not ceil(|x|) with the sign", data, size);
	}
	if (mrc == CA_OK) {
		uint64_t mag = milli < 0 ? 0 - (uint64_t)milli : (uint64_t)milli;
		uint64_t value_mag = value < 0 ? 0 - (uint64_t)value : (uint64_t)value;
		if ((mag + 999) / 1000 != value_mag)
			fail("milli and value disagree", data, size);
		if (mag != q->units * 1000 + (q->nanos + 999999u) / 1000000u ||
		    (milli < 0) != (q->negative && mag != 0))
			fail("milli is not ceil(|x| * 1000) with the sign", data, size);
	} else if (q->units < (uint64_t)INT64_MAX / 1000 - 1) {
		fail("milli overflow on a small value", data, size);
	}
}

static void check_format(const struct ca_quantity *q, const uint8_t *data, size_t size)
{
	char buf[CA_QUANTITY_STR_MAX], again[CA_QUANTITY_STR_MAX], third[CA_QUANTITY_STR_MAX];
	struct ca_quantity back, back2;
	if (ca_quantity_format(q, buf, sizeof buf) != CA_OK)
		fail("the canonical form does not fit", data, size);
	size_t n = strlen(buf);
	if (ca_quantity_parse(buf, n, &back) != CA_OK)
		fail("the canonical form does not parse", data, size);
	if (back.units != q->units || back.nanos != q->nanos || back.negative != q->negative)
		fail("the canonical form is another value", data, size);
	if (ca_quantity_format(&back, again, sizeof again) != CA_OK)
		fail("the canonical form of the canonical form does not fit", data, size);
	/* A binary quantity that is no multiple of 1024 is written as plain
	 * digits ("312.5Ki" is "320000"), which read back as decimal and so
	 * canonicalize again ("320k"), as in apimachinery; after that one
	 * step the form is fixed. Any other form is fixed at once. */
	if (q->format != CA_QUANTITY_BINARY_SI && strcmp(buf, again) != 0)
		fail("the canonical form is not canonical", data, size);
	if (ca_quantity_parse(again, strlen(again), &back2) != CA_OK ||
	    back2.units != q->units || back2.nanos != q->nanos || back2.negative != q->negative ||
	    ca_quantity_format(&back2, third, sizeof third) != CA_OK || strcmp(again, third) != 0)
		fail("the canonical form is not fixed after a second round", data, size);
	/* one byte short is refused, and leaves "" */
	if (ca_quantity_format(q, again, n) != CA_ETOOBIG || again[0] != '\0')
		fail("a short buffer was not refused", data, size);
}

static void check_conveniences(const struct ca_quantity *q, enum ca_err rc, const uint8_t *data,
                               size_t size)
{
	char text[CA_QUANTITY_MAX_LEN + 2];
	int64_t got = 0, want = 0;
	if (size > CA_QUANTITY_MAX_LEN + 1 || memchr(data, '\0', size))
		return;
	memcpy(text, data, size);
	text[size] = '\0';
	for (int kind = 0; kind < 2; kind++) {
		enum ca_err crc = kind ? ca_quantity_memory_bytes(text, &got)
		                       : ca_quantity_cpu_millicores(text, &got);
		enum ca_err wrc = rc;
		if (rc == CA_OK && q->negative)
			wrc = CA_EINVAL;
		else if (rc == CA_OK)
			wrc = kind ? ca_quantity_value(q, &want) : ca_quantity_milli(q, &want);
		if (crc != wrc || (crc == CA_OK && got != want))
			fail("a convenience disagrees with parse and convert", data, size);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data;
	struct ca_quantity q, want;
	memset(&q, 0xA5, sizeof q);
	enum ca_err rc = ca_quantity_parse(s, size, &q);
	if (rc != CA_OK && rc != CA_EINVAL && rc != CA_ETOOBIG)
		fail("unexpected status", data, size);
	if (size > CA_QUANTITY_MAX_LEN) {
		if (rc != CA_ETOOBIG)
			fail("an input past the length cap was not refused as too big", data, size);
		check_conveniences(&q, rc, data, size);
		return 0;
	}

	struct ref r;
	bool well_formed = ref_match(s, size, &r);
	if ((rc == CA_EINVAL) == well_formed)
		fail(well_formed ? "well formed, but refused as invalid"
		                 : "outside the grammar, but not refused as invalid",
		     data, size);
	if (well_formed) {
		enum ca_err wrc = ref_value(&r, &want);
		if (wrc != rc)
			fail(rc == CA_OK ? "accepted, the reference says too big"
			                 : "too big, the reference accepts",
			     data, size);
		if (rc == CA_OK && (q.units != want.units || q.nanos != want.nanos ||
		                    q.negative != want.negative || q.format != want.format))
			fail("the value differs from the reference", data, size);
	}
	if (rc == CA_OK) {
		check_conversions(&q, data, size);
		check_format(&q, data, size);
	}
	check_conveniences(&q, rc, data, size);
	return 0;
}
