#include "metrics/quantity.h"

#include <string.h>

#define NANOS_PER_UNIT 1000000000u

/* ------------------------------------------------------------------------
 * A small unsigned integer, enough for every intermediate value: the at
 * most 63 significant digits of an input (< 2^210) times 2^60 (a binary
 * suffix) is below 2^270, and a product with a power of ten is only formed
 * for values already known to be below 10^29 * 2^60 < 2^157. Exact
 * arithmetic on a few words is simpler to trust than a chain of 64-bit
 * overflow checks, and costs nothing at the lengths allowed. */

#define BIG_WORDS 10 /* 320 bits */

struct big {
	uint32_t w[BIG_WORDS]; /* least significant first */
};

/* b = b * m + add; false when the result does not fit. */
static bool big_mul_add(struct big *b, uint32_t m, uint32_t add)
{
	uint64_t carry = add;
	for (int i = 0; i < BIG_WORDS; i++) {
		uint64_t t = (uint64_t)b->w[i] * m + carry;
		b->w[i] = (uint32_t)t;
		carry = t >> 32;
	}
	return carry == 0;
}

/* b = b / d; returns the remainder. d > 0. */
static uint32_t big_div(struct big *b, uint32_t d)
{
	uint64_t rem = 0;
	for (int i = BIG_WORDS - 1; i >= 0; i--) {
		uint64_t t = (rem << 32) | b->w[i];
		b->w[i] = (uint32_t)(t / d);
		rem = t % d;
	}
	return (uint32_t)rem;
}

static bool big_is_zero(const struct big *b)
{
	for (int i = 0; i < BIG_WORDS; i++) {
		if (b->w[i])
			return false;
	}
	return true;
}

/* The value when it fits 64 bits. */
static bool big_to_u64(const struct big *b, uint64_t *out)
{
	for (int i = 2; i < BIG_WORDS; i++) {
		if (b->w[i])
			return false;
	}
	*out = ((uint64_t)b->w[1] << 32) | b->w[0];
	return true;
}

/* ------------------------------------------------------------------------
 * Parsing */

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* The suffix s[0..n): its power of ten, or of two for Ki..Ei, and format.
 * A decimal exponent is read by the caller. */
static bool simple_suffix(const char *s, size_t n, int *pow10, int *pow2,
                          enum ca_quantity_format *format)
{
	static const char decimal[] = "numkMGTPE";
	static const int decimal_pow[] = {-9, -6, -3, 3, 6, 9, 12, 15, 18};
	static const char binary[] = "KMGTPE";
	const char *p;

	*pow10 = 0;
	*pow2 = 0;
	*format = CA_QUANTITY_DECIMAL_SI;
	if (n == 0)
		return true;
	if (n == 1 && s[0] && (p = strchr(decimal, s[0])) != NULL) {
		*pow10 = decimal_pow[p - decimal];
		return true;
	}
	if (n == 2 && s[1] == 'i' && s[0] && (p = strchr(binary, s[0])) != NULL) {
		*pow2 = 10 * (int)(p - binary + 1);
		*format = CA_QUANTITY_BINARY_SI;
		return true;
	}
	return false;
}

enum ca_err ca_quantity_parse(const char *s, size_t len, struct ca_quantity *out)
{
	char digits[CA_QUANTITY_MAX_LEN]; /* significant digits, as 0..9 */
	size_t ndigits = 0, nfrac = 0, nint = 0, i = 0;
	bool negative = false;
	int pow10 = 0, pow2 = 0;
	int64_t exponent = 0;
	enum ca_quantity_format format;

	if (!s || !out || len == 0)
		return CA_EINVAL;
	if (len > CA_QUANTITY_MAX_LEN)
		return CA_ETOOBIG;

	if (s[i] == '+' || s[i] == '-')
		negative = s[i++] == '-';
	/* Leading zeros carry nothing; digits after the first non-zero one
	 * are kept (the fraction's too, counted in nfrac). */
	for (; i < len && is_digit(s[i]); i++, nint++) {
		if (ndigits || s[i] != '0')
			digits[ndigits++] = (char)(s[i] - '0');
	}
	if (i < len && s[i] == '.') {
		for (i++; i < len && is_digit(s[i]); i++, nfrac++) {
			if (ndigits || s[i] != '0')
				digits[ndigits++] = (char)(s[i] - '0');
		}
	}
	if (nint + nfrac == 0)
		return CA_EINVAL; /* no digit: "", "+", ".", "Mi", "e3" */

	/* "", n .. E, Ki .. Ei ("E" alone is exa), else an exponent:
	 * [eE][+-]?[0-9]+ up to the end. */
	if (!simple_suffix(s + i, len - i, &pow10, &pow2, &format)) {
		size_t j = i + 1;
		bool minus = false, past_int32 = false;
		if (s[i] != 'e' && s[i] != 'E')
			return CA_EINVAL;
		if (j < len && (s[j] == '+' || s[j] == '-'))
			minus = s[j++] == '-';
		if (j == len)
			return CA_EINVAL;
		for (; j < len; j++) {
			if (!is_digit(s[j]))
				return CA_EINVAL;
			/* Range is judged once the whole text is known to be
			 * well formed: an invalid input stays CA_EINVAL. */
			exponent = exponent * 10 + (s[j] - '0');
			if (exponent > (int64_t)INT32_MAX + 1) {
				past_int32 = true;
				exponent = 0;
			}
		}
		if (minus)
			exponent = -exponent;
		if (past_int32 || exponent > INT32_MAX)
			return CA_ETOOBIG;
		format = CA_QUANTITY_DECIMAL_EXPONENT;
	}

	/* value = digits * 10^e10 * 2^pow2, digits without trailing zeros */
	int64_t e10 = exponent + pow10 - (int64_t)nfrac;
	while (ndigits > 0 && digits[ndigits - 1] == 0) {
		ndigits--;
		e10++;
	}
	struct ca_quantity q = {.negative = negative, .format = format};
	if (ndigits == 0) {
		q.negative = false;
		*out = q;
		return CA_OK;
	}
	/* value >= 10^(ndigits - 1 + e10): from 10^20 on it is past 2^64, and
	 * below that the exact arithmetic cannot overflow (see struct big). */
	if ((int64_t)ndigits - 1 + e10 >= 20)
		return CA_ETOOBIG;

	/* n = ceil(value * 10^9), the magnitude in nanos */
	struct big n = {{0}};
	for (size_t k = 0; k < ndigits; k++) {
		if (!big_mul_add(&n, 10, (uint32_t)digits[k]))
			return CA_ETOOBIG;
	}
	for (int k = 0; k < pow2; k++) {
		if (!big_mul_add(&n, 2, 0))
			return CA_ETOOBIG;
	}
	int64_t shift = e10 + 9;
	if (shift >= 0) {
		for (int64_t k = 0; k < shift; k++) {
			if (!big_mul_add(&n, 10, 0))
				return CA_ETOOBIG;
		}
	} else if (shift <= -(BIG_WORDS * 32 / 3 + 1)) {
		/* n < 2^320 < 10^97 divided by at least 10^97: a non-zero
		 * value below one nano, which apimachinery rounds up to 1n. */
		memset(&n, 0, sizeof n);
		n.w[0] = 1;
	} else {
		bool inexact = false;
		for (int64_t k = 0; k < -shift; k++)
			inexact |= big_div(&n, 10) != 0;
		if (inexact && !big_mul_add(&n, 1, 1))
			return CA_ETOOBIG;
	}
	q.nanos = big_div(&n, NANOS_PER_UNIT);
	if (!big_to_u64(&n, &q.units))
		return CA_ETOOBIG;
	if (q.format == CA_QUANTITY_BINARY_SI && q.units == 0)
		q.format = CA_QUANTITY_DECIMAL_SI; /* apimachinery: 0 < |x| < 1 */
	*out = q;
	return CA_OK;
}

/* ------------------------------------------------------------------------
 * Conversions */

static bool valid(const struct ca_quantity *q)
{
	return q && q->nanos < NANOS_PER_UNIT && !(q->negative && q->units == 0 && q->nanos == 0) &&
	       (q->format == CA_QUANTITY_DECIMAL_SI || q->format == CA_QUANTITY_BINARY_SI ||
	        q->format == CA_QUANTITY_DECIMAL_EXPONENT);
}

/* magnitude to a signed result: up to 2^63 - 1, or 2^63 when negative */
static enum ca_err to_int64(uint64_t magnitude, bool negative, int64_t *out)
{
	if (magnitude > (uint64_t)INT64_MAX + (negative ? 1 : 0))
		return CA_ETOOBIG;
	if (!negative)
		*out = (int64_t)magnitude;
	else if (magnitude > (uint64_t)INT64_MAX)
		*out = INT64_MIN; /* -(2^63): its magnitude is no int64 */
	else
		*out = -(int64_t)magnitude;
	return CA_OK;
}

enum ca_err ca_quantity_milli(const struct ca_quantity *q, int64_t *out)
{
	if (!valid(q) || !out)
		return CA_EINVAL;
	uint64_t frac = (q->nanos + 999999u) / 1000000u; /* 0..1000 */
	if (q->units > (UINT64_MAX - frac) / 1000u)
		return CA_ETOOBIG;
	return to_int64(q->units * 1000u + frac, q->negative, out);
}

enum ca_err ca_quantity_value(const struct ca_quantity *q, int64_t *out)
{
	if (!valid(q) || !out)
		return CA_EINVAL;
	if (q->nanos && q->units == UINT64_MAX)
		return CA_ETOOBIG;
	return to_int64(q->units + (q->nanos ? 1 : 0), q->negative, out);
}

/* ------------------------------------------------------------------------
 * Canonical form (apimachinery's CanonicalizeBytes) */

enum ca_err ca_quantity_format(const struct ca_quantity *q, char *buf, size_t buflen)
{
	static const char *const decimal_suffix[] = {"n", "u", "m", "",  "k",
	                                             "M", "G", "T", "P", "E"};
	static const char *const binary_suffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
	char tmp[CA_QUANTITY_STR_MAX];
	char digits[32];
	size_t nd = 0, o = 0;
	const char *suffix = "";
	char exp_suffix[8] = "";

	if (!buf || buflen == 0)
		return CA_EINVAL;
	buf[0] = '\0';
	if (!valid(q))
		return CA_EINVAL;

	if (q->units == 0 && q->nanos == 0) {
		tmp[o++] = '0';
	} else if (q->format == CA_QUANTITY_BINARY_SI && q->units >= 1024 && q->nanos == 0) {
		/* A whole number from 1024 up: as many factors of 1024 into
		 * the suffix as divide it (below 2^64, at most six). */
		uint64_t m = q->units;
		int e = 0;
		while (m >= 1024 && m % 1024 == 0) {
			m /= 1024;
			e++;
		}
		do {
			digits[nd++] = (char)('0' + m % 10);
			m /= 10;
		} while (m);
		suffix = binary_suffix[e];
	} else {
		/* mantissa * 10^e with e a multiple of 3, no factor of ten
		 * left beyond the one that alignment puts back. From
		 * units * 10^9 + nanos < 2^64 * 10^9 < 10^29, e is -9..18. */
		struct big n = {{0}};
		n.w[0] = (uint32_t)q->units;
		n.w[1] = (uint32_t)(q->units >> 32);
		int e = -9;
		big_mul_add(&n, NANOS_PER_UNIT, q->nanos);
		for (;;) {
			struct big t = n;
			if (big_div(&t, 10) != 0)
				break;
			n = t;
			e++;
		}
		while ((e + 9) % 3 != 0) {
			big_mul_add(&n, 10, 0);
			e--;
		}
		do {
			digits[nd++] = (char)('0' + big_div(&n, 10));
		} while (!big_is_zero(&n));
		if (q->format == CA_QUANTITY_DECIMAL_EXPONENT) {
			if (e != 0) {
				size_t k = 0;
				int a = e < 0 ? -e : e;
				exp_suffix[k++] = 'e';
				if (e < 0)
					exp_suffix[k++] = '-';
				if (a >= 10)
					exp_suffix[k++] = (char)('0' + a / 10);
				exp_suffix[k++] = (char)('0' + a % 10);
				exp_suffix[k] = '\0';
			}
			suffix = exp_suffix;
		} else {
			suffix = decimal_suffix[(e + 9) / 3];
		}
	}

	if (q->negative)
		tmp[o++] = '-';
	while (nd > 0)
		tmp[o++] = digits[--nd];
	size_t sl = strlen(suffix);
	memcpy(tmp + o, suffix, sl);
	o += sl;
	if (o >= buflen)
		return CA_ETOOBIG;
	memcpy(buf, tmp, o);
	buf[o] = '\0';
	return CA_OK;
}

/* ------------------------------------------------------------------------
 * Conveniences */

static enum ca_err parse_nonnegative(const char *s, struct ca_quantity *q)
{
	if (!s || !s[0])
		return CA_EINVAL;
	/* strnlen: a runaway string is refused after MAX_LEN + 1 bytes */
	enum ca_err err = ca_quantity_parse(s, strnlen(s, CA_QUANTITY_MAX_LEN + 1), q);
	if (err != CA_OK)
		return err;
	return q->negative ? CA_EINVAL : CA_OK;
}

enum ca_err ca_quantity_cpu_millicores(const char *s, int64_t *out)
{
	struct ca_quantity q;
	if (!out)
		return CA_EINVAL;
	enum ca_err err = parse_nonnegative(s, &q);
	return err != CA_OK ? err : ca_quantity_milli(&q, out);
}

enum ca_err ca_quantity_memory_bytes(const char *s, int64_t *out)
{
	struct ca_quantity q;
	if (!out)
		return CA_EINVAL;
	enum ca_err err = parse_nonnegative(s, &q);
	return err != CA_OK ? err : ca_quantity_value(&q, out);
}
