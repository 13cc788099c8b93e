/* tests/unit/check.h: the assertions every unit test uses.
 *
 * CHECK(cond) records a failure with file:line and goes on; a test program
 * ends with `return check_report();`, which prints "N checks, N failed" and
 * exits non-zero on any failure. */
#ifndef CA_TEST_CHECK_H
#define CA_TEST_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_total, check_failed;

#define CHECK(cond)                                                              \
	do {                                                                     \
		check_total++;                                                   \
		if (!(cond)) {                                                   \
			check_failed++;                                          \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__,   \
			        __LINE__, #cond);                                \
		}                                                                \
	} while (0)

#define CHECK_STR(a, b)                                                          \
	do {                                                                     \
		const char *check_a_ = (a), *check_b_ = (b);                     \
		check_total++;                                                   \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) { \
			check_failed++;                                          \
			fprintf(stderr, "%s:%d: CHECK_STR failed: %s == \"%s\", expected \"%s\"\n", \
			        __FILE__, __LINE__, #a, check_a_ ? check_a_ : "(null)", \
			        check_b_ ? check_b_ : "(null)");                 \
		}                                                                \
	} while (0)

#define CHECK_INT(a, b)                                                          \
	do {                                                                     \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);  \
		check_total++;                                                   \
		if (check_a_ != check_b_) {                                      \
			check_failed++;                                          \
			fprintf(stderr, "%s:%d: CHECK_INT failed: %s == %lld, expected %lld\n", \
			        __FILE__, __LINE__, #a, check_a_, check_b_);     \
		}                                                                \
	} while (0)

static inline int check_contains(const char *hay, const char *needle)
{
	return hay && needle && strstr(hay, needle) != NULL;
}

/* CHECK that hay holds needle, and show both when it does not. */
#define CHECK_CONTAINS(hay, needle)                                              \
	do {                                                                     \
		const char *check_h_ = (hay), *check_n_ = (needle);              \
		CHECK(check_contains(check_h_, check_n_));                       \
		if (!check_contains(check_h_, check_n_))                         \
			fprintf(stderr, "   \"%s\" does not contain \"%s\"\n",    \
			        check_h_ ? check_h_ : "(null)",                  \
			        check_n_ ? check_n_ : "(null)");                 \
	} while (0)

static inline int check_report(void)
{
	printf("%d checks, %d failed\n", check_total, check_failed);
	return check_failed ? 1 : 0;
}

/* Read a whole file into a heap buffer (NUL-terminated); NULL on error. */
static inline char *check_read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	char *p = n >= 0 ? malloc((size_t)n + 1) : NULL;
	if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	if (p) {
		p[n] = '\0';
		if (len)
			*len = (size_t)n;
	}
	return p;
}

#endif
