#include "core/timeutil.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

int64_t ca_now_monotonic_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t ca_now_monotonic_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t ca_now_unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void ca_format_rfc3339(int64_t unix_ms, char out[CA_RFC3339_LEN])
{
	time_t secs = (time_t)(unix_ms / 1000);
	int ms = (int)(unix_ms % 1000);
	if (ms < 0) {
		ms += 1000;
		secs -= 1;
	}
	struct tm tm;
	if (!gmtime_r(&secs, &tm)) {
		snprintf(out, CA_RFC3339_LEN, "1970-01-01T00:00:00.000Z");
		return;
	}
	snprintf(out, CA_RFC3339_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
	         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	         tm.tm_min, tm.tm_sec, ms);
}

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar
 * (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

enum ca_err ca_parse_rfc3339(const char *s, int64_t *unix_ms)
{
	int y, mo, d, h, mi, sec;
	if (!s || strlen(s) < 20)
		return CA_EINVAL;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' ||
	    digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return CA_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return CA_EINVAL;
	const char *p = s + 19;
	int ms = 0;
	if (*p == '.') {
		p++;
		int n = 0;
		while (*p >= '0' && *p <= '9') {
			if (n < 3)
				ms = ms * 10 + (*p - '0');
			n++;
			p++;
		}
		if (n == 0)
			return CA_EINVAL;
		for (; n < 3; n++)
			ms *= 10;
	}
	int64_t offset_min = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om))
			return CA_EINVAL;
		offset_min = (int64_t)oh * 60 + om;
		if (*p == '-')
			offset_min = -offset_min;
		p += 6;
	} else {
		return CA_EINVAL;
	}
	if (*p != '\0')
		return CA_EINVAL;
	int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
	int64_t secs = days * 86400 + (int64_t)h * 3600 + (int64_t)mi * 60 + sec - offset_min * 60;
	*unix_ms = secs * 1000 + ms;
	return CA_OK;
}

enum ca_err ca_parse_duration(const char *s, int64_t *ms)
{
	if (!s || !*s)
		return CA_EINVAL;
	errno = 0;
	char *end = NULL;
	if (*s < '0' || *s > '9')
		return CA_EINVAL;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || end == s)
		return CA_EINVAL;
	int64_t mult;
	if (*end == '\0' || strcmp(end, "s") == 0)
		mult = 1000;
	else if (strcmp(end, "ms") == 0)
		mult = 1;
	else if (strcmp(end, "m") == 0)
		mult = 60000;
	else if (strcmp(end, "h") == 0)
		mult = 3600000;
	else
		return CA_EINVAL;
	if (v > (unsigned long long)(INT64_MAX / mult))
		return CA_EINVAL;
	*ms = (int64_t)v * mult;
	return CA_OK;
}

void ca_format_duration(int64_t ms, char *out, size_t outlen)
{
	if (ms % 3600000 == 0 && ms >= 3600000)
		snprintf(out, outlen, "%" PRId64 "h", ms / 3600000);
	else if (ms % 60000 == 0 && ms >= 60000)
		snprintf(out, outlen, "%" PRId64 "m", ms / 60000);
	else if (ms % 1000 == 0)
		snprintf(out, outlen, "%" PRId64 "s", ms / 1000);
	else
		snprintf(out, outlen, "%" PRId64 "ms", ms);
}

static _Thread_local uint64_t rng_state;

uint64_t ca_random_below(uint64_t n)
{
	if (n == 0)
		return 0;
	if (rng_state == 0) {
		if (getrandom(&rng_state, sizeof rng_state, 0) != sizeof rng_state || rng_state == 0)
			rng_state = (uint64_t)ca_now_monotonic_ms() * 0x9E3779B97F4A7C15ull | 1;
	}
	/* xorshift64* */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 0x2545F4914F6CDD1Dull) % n;
}

int64_t ca_backoff_ms(unsigned attempt, int64_t initial_ms, int64_t max_ms)
{
	int64_t base = initial_ms;
	for (unsigned i = 0; i < attempt && base < max_ms; i++)
		base *= 2;
	if (base > max_ms)
		base = max_ms;
	if (base < 2)
		return base;
	return base / 2 + (int64_t)ca_random_below((uint64_t)(base - base / 2) + 1);
}
