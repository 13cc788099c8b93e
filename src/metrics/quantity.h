/* metrics/quantity.h: Kubernetes resource.Quantity strings ("100m",
 * "1.5Gi", "2e3", "123456789n") read exactly, for the metrics collector's
 * sums of CPU (millicores) and memory (bytes).
 *
 * The grammar is apimachinery's (k8s.io/apimachinery/pkg/api/resource,
 * quantity.go and suffix.go):
 *
 *   <quantity>        ::= <signedNumber><suffix>
 *   <signedNumber>    ::= <number> | <sign><number>          sign: + or -
 *   <number>          ::= <digits> | <digits>.<digits> | <digits>. | .<digits>
 *   <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
 *   <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei           (2^10 .. 2^60)
 *   <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E (10^-9 .. 10^18)
 *   <decimalExponent> ::= "e" <signedDigits> | "E" <signedDigits>
 *
 * (apimachinery's comment says <signedNumber> after the "e", but its
 * scanner and strconv.ParseInt take only an integer there: "1e1.5" is
 * refused by both.)
 *
 * Nothing else: no spaces, no other letters or case ("1K", "1ki", "1 Gi",
 * "1Gi "), no hex, no "NaN" or "inf", one sign, one point, one suffix.
 *
 * The value is kept the way apimachinery keeps it: ParseQuantity rounds
 * every quantity up (away from zero) to a whole number of nano units
 * ("0.9n" is 1n, "3.001n" is 4n, ".000000000001Ki" is 2n), so a fixed point
 * at 10^-9 holds every value it keeps, exactly:
 *
 *   value = (negative ? -1 : 1) * (units + nanos / 10^9)
 *
 * 64 bits of whole units reach 18446744073709551615 (16 EiB), past every
 * value whose millis or units fit an int64, so the conversions below can
 * tell "too big for int64" from "too big to hold". No floating point
 * anywhere, no locale, no allocation.
 *
 * Where we differ from apimachinery, on purpose (all of it on inputs the
 * API server does not send for pods, nodes or metrics):
 *  - A number needs a digit. apimachinery's scanner reads "Mi", "+", "-",
 *    ".", "-." and "e3" as zero although its own grammar says otherwise;
 *    here they are CA_EINVAL. (The API server re-serializes such input as
 *    "0", so it never reaches us.)
 *  - Magnitudes of 2^64 units or more are CA_ETOOBIG. apimachinery keeps
 *    any size of decimal quantity, and silently caps a binary one at
 *    2^63-1 ("9Ei" parses as 9223372036854775807, its issue #140674); here
 *    "9Ei" keeps its exact value and the int64 conversions say CA_ETOOBIG
 *    rather than hand out a clamped number that looks real.
 *  - An exponent outside int32 is CA_ETOOBIG whatever the mantissa.
 *    apimachinery truncates it to int32 ("1e4294967296" reads as 1) or,
 *    past int64, rejects it.
 *  - Input longer than CA_QUANTITY_MAX_LEN bytes is CA_ETOOBIG before it is
 *    looked at. apimachinery has no limit; the canonical form of any value
 *    held here is at most 33 bytes.
 *  - The int64 conversions report overflow (CA_ETOOBIG) where Value() and
 *    MilliValue() return an undefined number.
 *
 * Pure functions on caller memory: any thread. */
#ifndef CA_METRICS_QUANTITY_H
#define CA_METRICS_QUANTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Longest input ca_quantity_parse() looks at. */
#define CA_QUANTITY_MAX_LEN 64
/* Room ca_quantity_format() needs: sign, 29 digits, a 3-byte suffix, NUL. */
#define CA_QUANTITY_STR_MAX 40

/* The kind of suffix a quantity was written with; apimachinery keeps it to
 * choose the canonical form (Format in quantity.go). */
enum ca_quantity_format {
	CA_QUANTITY_DECIMAL_SI,      /* "", n, u, m, k, M, G, T, P, E */
	CA_QUANTITY_BINARY_SI,       /* Ki .. Ei */
	CA_QUANTITY_DECIMAL_EXPONENT /* e3, E-6 */
};

/* A parsed quantity, held by value (no resources). Invariants, which every
 * function here keeps: nanos < 1000000000; negative is false for zero; a
 * BINARY_SI quantity is zero or at least 1 (apimachinery turns a binary
 * quantity below 1, such as ".5Ki"/1024, into DECIMAL_SI). */
struct ca_quantity {
	uint64_t units;                 /* whole part of the magnitude */
	uint32_t nanos;                 /* fraction of the magnitude, in 10^-9 */
	bool negative;                  /* below zero */
	enum ca_quantity_format format; /* from the suffix, as apimachinery */
};

/* Parse s[0..len) (no terminator needed; a NUL byte inside is just an
 * invalid character) into *out. Rounds the magnitude up to whole nanos as
 * apimachinery's ParseQuantity does. Returns CA_OK; CA_EINVAL when s is
 * NULL or the text is not a quantity (empty, "banana", "1.5.5", "Mi",
 * "1 Gi", "1Gi ", "0x10", "1e", "1ee3", "--1", "NaN", spaces anywhere);
 * CA_ETOOBIG when len > CA_QUANTITY_MAX_LEN, the exponent is outside int32,
 * or the magnitude is 2^64 units or more. *out is written only on CA_OK.
 * Any thread. */
enum ca_err ca_quantity_parse(const char *s, size_t len, struct ca_quantity *out);

/* The value in thousandths, rounded up as apimachinery's MilliValue() /
 * ScaledValue(Milli) rounds: ceil(value * 1000) for a positive value
 * ("100m" 100, "0.5" 500, "1" 1000, "1u" 1, "123456789n" 124). A negative
 * value rounds away from zero ("-1u" is -1), as apimachinery's int64 path
 * (negativeScaleInt64, which every short negative quantity takes) does; its
 * inf.Dec path rounds negatives inconsistently and is not followed.
 * CA_ETOOBIG when the result does not fit int64 (*out untouched);
 * CA_EINVAL for NULL or a struct that breaks the invariants. Any thread. */
enum ca_err ca_quantity_milli(const struct ca_quantity *q, int64_t *out);

/* The value in units, rounded up as Value() / ScaledValue(0) rounds:
 * ceil(value) when positive ("100m" 1, "1Ki" 1024, "1.5Gi" 1610612736,
 * "1E" 10^18, "1Ei" 2^60), away from zero when negative ("-100m" -1).
 * CA_ETOOBIG when it does not fit int64 ("8Ei" is 2^63); CA_EINVAL as for
 * ca_quantity_milli(). Any thread. */
enum ca_err ca_quantity_value(const struct ca_quantity *q, int64_t *out);

/* The canonical form of q, as apimachinery's String() gives it for a
 * quantity of that value and format (CanonicalizeBytes): no fraction, the
 * largest suffix that loses nothing, an exponent that is a multiple of 3
 * ("1.5" -> "1500m", "1.5Gi" -> "1536Mi", "2e3" -> "2e3", "1000M" -> "1G",
 * "0.5Ki" -> "512", zero -> "0"). A binary quantity below 1024 or with a
 * fraction is written in decimal, one that is no multiple of 1024 as plain
 * digits ("312.5Ki" -> "320000", which reads back as a decimal "320k"), as
 * apimachinery does. (For a parsed
 * string apimachinery may echo the input instead, "+1" or "1E3"; this
 * never does.) Always parses back to the same value. Writes a terminated
 * string into buf; CA_ETOOBIG when buflen is too small (CA_QUANTITY_STR_MAX
 * always suffices; buf then holds ""), CA_EINVAL for NULL or a struct that
 * breaks the invariants. Any thread. */
enum ca_err ca_quantity_format(const struct ca_quantity *q, char *buf, size_t buflen);

/* The conveniences the collector uses on a field of a pod, node or metrics
 * object: parse the NUL-terminated s and convert. CPU in millicores
 * (ca_quantity_milli), memory in bytes (ca_quantity_value). A request,
 * limit, capacity or usage cannot be below zero, so a negative quantity is
 * CA_EINVAL here ("-0" is zero and accepted). CA_EINVAL also for NULL or
 * "", otherwise the errors of parse and conversion. *out is written only on
 * CA_OK. Any thread. */
enum ca_err ca_quantity_cpu_millicores(const char *s, int64_t *out);
enum ca_err ca_quantity_memory_bytes(const char *s, int64_t *out);

#endif
