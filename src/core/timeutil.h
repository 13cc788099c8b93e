/* core/timeutil.h: clocks, RFC 3339 timestamps, durations, jitter.
 *
 * Times inside the agent are int64 milliseconds: monotonic for deadlines and
 * intervals, Unix epoch for what goes on the wire. All functions are
 * thread safe. */
#ifndef CA_CORE_TIMEUTIL_H
#define CA_CORE_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* "2026-11-22T00:26:30.123Z" needs 25 bytes; the rest keeps the compiler
 * sure that no int field can overflow the buffer. */
#define CA_RFC3339_LEN 80

int64_t ca_now_monotonic_ms(void);
int64_t ca_now_monotonic_us(void); /* for measuring short work */
int64_t ca_now_unix_ms(void);

/* Format epoch milliseconds as RFC 3339 UTC with milliseconds ("...T...123Z").
 * out must hold CA_RFC3339_LEN bytes. */
void ca_format_rfc3339(int64_t unix_ms, char out[CA_RFC3339_LEN]);

/* Parse RFC 3339 ("2026-11-22T00:26:30Z", fractional seconds and numeric
 * offsets accepted) to epoch milliseconds. CA_EINVAL on anything else. */
enum ca_err ca_parse_rfc3339(const char *s, int64_t *unix_ms);

/* Parse a duration "250ms", "30s", "5m", "2h" (a bare integer is seconds) to
 * milliseconds. CA_EINVAL on a bad unit, sign or overflow. */
enum ca_err ca_parse_duration(const char *s, int64_t *ms);

/* Format milliseconds the way the config writes them ("500ms", "30s", "5m"). */
void ca_format_duration(int64_t ms, char *out, size_t outlen);

/* Uniform random number in [0, n) from a per-thread xorshift generator
 * seeded from getrandom(); for jitter, never for secrets. n == 0 gives 0. */
uint64_t ca_random_below(uint64_t n);

/* Exponential backoff with full jitter in [base/2 .. base] where base =
 * min(initial_ms * 2^attempt, max_ms). */
int64_t ca_backoff_ms(unsigned attempt, int64_t initial_ms, int64_t max_ms);

#endif
