/* tests/unit/test_intern.c: the metrics interner (metrics/intern.h).
 *
 * Only the public contract is checked: ids from 1, dense, reused after
 * their last reference; a string lives exactly as long as its references;
 * find takes none; lengths are bytes (a NUL inside is a byte like any
 * other); max_bytes refuses new strings and is never exceeded; the byte
 * count moves with every string added and removed. The churn test drives
 * the table through thousands of tombstones, sweeps and growths, checking
 * every string against a model after each round. Valgrind and ASan run it
 * too (scripts/test.sh), for what the table frees. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "metrics/intern.h"

static uint32_t ref(struct ca_intern *t, const char *s)
{
	return ca_intern_ref(t, s, strlen(s));
}

static uint32_t find(const struct ca_intern *t, const char *s)
{
	return ca_intern_find(t, s, strlen(s));
}

static struct ca_intern *new_table(size_t max_bytes)
{
	struct ca_intern *t = NULL;
	if (ca_intern_new(&t, max_bytes) != CA_OK || !t) {
		fprintf(stderr, "ca_intern_new failed\n");
		exit(1);
	}
	return t;
}

/* ------------------------------------------------------------------ */

static void test_ids_start_at_one_and_are_dense(void)
{
	struct ca_intern *t = new_table(0);
	CHECK_INT(ca_intern_id_limit(t), 1);
	CHECK_INT(ca_intern_count(t), 0);
	CHECK_STR(ca_intern_str(t, 0), "");
	CHECK_STR(ca_intern_str(t, 1), "");

	CHECK_INT(ref(t, "shop"), 1);
	CHECK_INT(ref(t, "kube-system"), 2);
	CHECK_INT(ref(t, "ip-10-0-12-34.eu-west-1.compute.internal"), 3);
	CHECK_INT(ref(t, "shop"), 1); /* held already: same id, no new one */
	CHECK_INT(ca_intern_id_limit(t), 4);
	CHECK_INT(ca_intern_count(t), 3);
	CHECK_STR(ca_intern_str(t, 1), "shop");
	CHECK_STR(ca_intern_str(t, 2), "kube-system");
	CHECK_STR(ca_intern_str(t, 3), "ip-10-0-12-34.eu-west-1.compute.internal");
	CHECK_STR(ca_intern_str(t, 4), ""); /* at the limit: not handed out */
	CHECK_STR(ca_intern_str(t, UINT32_MAX), "");
	ca_intern_free(t); /* with live strings: valgrind says whether they went */
	ca_intern_free(NULL);
}

static void test_refcounts(void)
{
	struct ca_intern *t = new_table(0);
	uint32_t a = ref(t, "web");
	uint32_t b = ref(t, "db");
	CHECK(a != 0 && b != 0 && a != b);
	CHECK_INT(ref(t, "web"), a); /* 2 */
	ca_intern_ref_id(t, a);      /* 3 */

	ca_intern_unref(t, a); /* 2 */
	ca_intern_unref(t, a); /* 1 */
	CHECK_STR(ca_intern_str(t, a), "web");
	CHECK_INT(find(t, "web"), a);
	CHECK_INT(ca_intern_count(t), 2);
	ca_intern_unref(t, a); /* the last one: gone */
	CHECK_STR(ca_intern_str(t, a), "");
	CHECK_INT(find(t, "web"), 0);
	CHECK_INT(ca_intern_count(t), 1);
	CHECK_STR(ca_intern_str(t, b), "db"); /* the other one untouched */

	/* A dead id and 0 are ignored: no count goes below zero, nothing
	 * comes back to life, the live neighbour keeps its references. */
	size_t bytes = ca_intern_bytes(t);
	ca_intern_unref(t, a);
	ca_intern_unref(t, 0);
	ca_intern_unref(t, 12345);
	ca_intern_ref_id(t, a);
	ca_intern_ref_id(t, 0);
	ca_intern_ref_id(t, 12345);
	CHECK_STR(ca_intern_str(t, a), "");
	CHECK_INT(find(t, "web"), 0);
	CHECK_INT(ca_intern_count(t), 1);
	CHECK_INT(ca_intern_bytes(t), bytes);
	CHECK_STR(ca_intern_str(t, b), "db");

	/* ref_id on a live id is a reference like any other. */
	ca_intern_ref_id(t, b); /* 2 */
	ca_intern_unref(t, b);  /* 1 */
	CHECK_STR(ca_intern_str(t, b), "db");
	ca_intern_unref(t, b); /* 0 */
	CHECK_STR(ca_intern_str(t, b), "");
	CHECK_INT(ca_intern_count(t), 0);
	ca_intern_free(t);
}

static void test_find_takes_no_reference(void)
{
	struct ca_intern *t = new_table(0);
	uint32_t a = ref(t, "zone-a");
	for (int i = 0; i < 5; i++)
		CHECK_INT(find(t, "zone-a"), a);
	CHECK_INT(find(t, "zone-b"), 0);
	CHECK_INT(find(t, "zone-"), 0);   /* a prefix */
	CHECK_INT(find(t, "zone-aa"), 0); /* an extension */
	CHECK_INT(ca_intern_find(t, "zone-a", 0), 0);
	CHECK_INT(ca_intern_count(t), 1); /* find added nothing */
	ca_intern_unref(t, a);            /* the one reference ref took */
	CHECK_INT(find(t, "zone-a"), 0);
	CHECK_INT(ca_intern_count(t), 0);
	CHECK_STR(ca_intern_str(t, a), "");
	ca_intern_free(t);
}

static void test_freed_ids_are_reused(void)
{
	struct ca_intern *t = new_table(0);
	char s[16];
	for (int i = 1; i <= 5; i++) {
		snprintf(s, sizeof s, "s%d", i);
		CHECK_INT(ref(t, s), i);
	}
	ca_intern_unref(t, 2);
	ca_intern_unref(t, 4);
	CHECK_INT(ca_intern_id_limit(t), 6); /* the limit does not shrink */
	uint32_t x = ref(t, "x"), y = ref(t, "y");
	/* the two free ids, in some order, before any new one */
	CHECK((x == 2 && y == 4) || (x == 4 && y == 2));
	CHECK_INT(ca_intern_id_limit(t), 6);
	CHECK_INT(ref(t, "z"), 6);
	CHECK_INT(ca_intern_id_limit(t), 7);
	CHECK_STR(ca_intern_str(t, x), "x");
	CHECK_STR(ca_intern_str(t, y), "y");
	CHECK_INT(find(t, "s2"), 0);
	CHECK_INT(find(t, "s4"), 0);
	CHECK_INT(find(t, "s3"), 3);

	/* a string that comes back after it went may get a new id, and is
	 * found by it */
	uint32_t s2 = ref(t, "s2");
	CHECK(s2 != 0);
	CHECK_INT(find(t, "s2"), s2);
	CHECK_STR(ca_intern_str(t, s2), "s2");
	ca_intern_free(t);
}

/* ------------------------------------------------------------------ */
/* Churn against a model */

#define CHURN_N 6000

/* Slot i of the model holds one string at a time: its generation changes
 * each time the string goes, so the churn keeps naming new strings while
 * no more than CHURN_N are ever live. */
struct model {
	uint32_t id;   /* 0 when not held */
	uint32_t refs; /* references the test holds */
	uint32_t gen;
};

static void name_of(int i, uint32_t gen, char *buf, size_t len)
{
	snprintf(buf, len, "pod-%d-g%u.ns-%d.example.internal", i, gen, i % 97);
}

/* Every string the model holds is found by its id and reads back; every
 * other one (and the previous generation) is absent; the counts agree. */
static int model_check(struct ca_intern *t, const struct model *m, int n)
{
	char s[64];
	size_t live = 0;
	int bad = 0;
	uint32_t limit = ca_intern_id_limit(t);
	for (int i = 0; i < n; i++) {
		name_of(i, m[i].gen, s, sizeof s);
		if (m[i].refs) {
			live++;
			if (find(t, s) != m[i].id || m[i].id >= limit ||
			    strcmp(ca_intern_str(t, m[i].id), s) != 0)
				bad++;
		} else if (find(t, s) != 0) {
			bad++;
		}
		if (m[i].gen) {
			name_of(i, m[i].gen - 1, s, sizeof s);
			if (find(t, s) != 0)
				bad++;
		}
	}
	if (ca_intern_count(t) != live)
		bad++;
	return bad;
}

static void drop(struct ca_intern *t, struct model *e)
{
	ca_intern_unref(t, e->id);
	if (--e->refs == 0) {
		e->id = 0;
		e->gen++;
	}
}

static void take(struct ca_intern *t, struct model *e, int i, int *bad)
{
	char s[64];
	name_of(i, e->gen, s, sizeof s);
	uint32_t id = ref(t, s);
	if (!id || (e->refs && id != e->id))
		(*bad)++;
	e->id = id;
	e->refs++;
}

static void test_churn(void)
{
	struct ca_intern *t = new_table(0);
	struct model *m = calloc(CHURN_N, sizeof *m);
	size_t empty_bytes = ca_intern_bytes(t);
	int bad = 0;

	/* Fill: ids 1..N in order, each string once. */
	int dense = 1;
	for (int i = 0; i < CHURN_N; i++) {
		take(t, &m[i], i, &bad);
		if (m[i].id != (uint32_t)i + 1)
			dense = 0;
	}
	CHECK(dense);
	CHECK_INT(bad, 0);
	CHECK_INT(ca_intern_id_limit(t), CHURN_N + 1);
	CHECK_INT(model_check(t, m, CHURN_N), 0);
	CHECK(ca_intern_bytes(t) > empty_bytes);

	/* Two of three go (tombstones everywhere), and new strings come in
	 * their place: they take the freed ids, the limit stays. */
	for (int i = 0; i < CHURN_N; i++)
		if (i % 3)
			drop(t, &m[i]);
	CHECK_INT(ca_intern_count(t), CHURN_N / 3);
	CHECK_INT(model_check(t, m, CHURN_N), 0);
	for (int i = 0; i < CHURN_N; i++)
		if (i % 3)
			take(t, &m[i], i, &bad);
	CHECK_INT(bad, 0);
	CHECK_INT(ca_intern_id_limit(t), CHURN_N + 1);
	CHECK_INT(model_check(t, m, CHURN_N), 0);

	/* Rounds of churn with a deterministic generator: references taken
	 * and dropped at random, so strings go and new ones come many times
	 * and the table sweeps its tombstones again and again. Ids stay
	 * dense: none at or past the most strings ever live, plus one. */
	uint64_t rng = 0x9E3779B97F4A7C15ull;
	size_t peak = ca_intern_count(t);
	int bad_rounds = 0;
	for (int round = 0; round < 20; round++) {
		for (int k = 0; k < CHURN_N; k++) {
			rng ^= rng << 13;
			rng ^= rng >> 7;
			rng ^= rng << 17;
			int i = (int)(rng % CHURN_N);
			if (m[i].refs && (rng >> 32) % 3 != 0)
				drop(t, &m[i]);
			else
				take(t, &m[i], i, &bad);
			if (ca_intern_count(t) > peak)
				peak = ca_intern_count(t);
		}
		if (model_check(t, m, CHURN_N) != 0)
			bad_rounds++;
		if (ca_intern_id_limit(t) > peak + 1)
			bad_rounds++;
	}
	CHECK_INT(bad, 0);
	CHECK_INT(bad_rounds, 0);

	/* Everything goes: the table is empty again. */
	for (int i = 0; i < CHURN_N; i++)
		while (m[i].refs)
			drop(t, &m[i]);
	CHECK_INT(ca_intern_count(t), 0);
	CHECK_INT(model_check(t, m, CHURN_N), 0);
	free(m);
	ca_intern_free(t);
}

/* ------------------------------------------------------------------ */

static void test_lengths(void)
{
	struct ca_intern *t = new_table(0);
	char *s = malloc(CA_INTERN_MAX_LEN + 2);
	memset(s, 'n', CA_INTERN_MAX_LEN + 1);
	s[CA_INTERN_MAX_LEN + 1] = '\0';

	CHECK_INT(ca_intern_ref(t, "", 0), 0);
	CHECK_INT(ca_intern_ref(t, "abc", 0), 0); /* the length decides */
	CHECK_INT(ca_intern_find(t, "", 0), 0);

	uint32_t max = ca_intern_ref(t, s, CA_INTERN_MAX_LEN);
	CHECK(max != 0);
	CHECK_INT(strlen(ca_intern_str(t, max)), CA_INTERN_MAX_LEN);
	CHECK_INT(ca_intern_find(t, s, CA_INTERN_MAX_LEN), max);

	size_t bytes = ca_intern_bytes(t);
	CHECK_INT(ca_intern_ref(t, s, CA_INTERN_MAX_LEN + 1), 0);
	CHECK_INT(ca_intern_find(t, s, CA_INTERN_MAX_LEN + 1), 0);
	CHECK_INT(ca_intern_count(t), 1);
	CHECK_INT(ca_intern_bytes(t), bytes);

	uint32_t one = ca_intern_ref(t, "n", 1);
	CHECK(one != 0 && one != max);
	ca_intern_unref(t, max);
	ca_intern_unref(t, one);
	CHECK_INT(ca_intern_count(t), 0);
	free(s);
	ca_intern_free(t);
}

static void test_nul_bytes_inside(void)
{
	struct ca_intern *t = new_table(0);
	uint32_t a = ca_intern_ref(t, "a", 1);
	uint32_t a0 = ca_intern_ref(t, "a\0", 2);
	uint32_t a0b = ca_intern_ref(t, "a\0b", 3);
	uint32_t a0c = ca_intern_ref(t, "a\0c", 3);
	uint32_t nul = ca_intern_ref(t, "\0", 1);
	CHECK(a && a0 && a0b && a0c && nul);
	CHECK(a != a0 && a != a0b && a != a0c && a0 != a0b && a0 != a0c && a0b != a0c);
	CHECK(nul != a && nul != a0 && nul != a0b && nul != a0c);
	CHECK_INT(ca_intern_count(t), 5);
	CHECK_INT(ca_intern_find(t, "a\0b", 3), a0b);
	CHECK_INT(ca_intern_find(t, "a\0c", 3), a0c);
	CHECK_INT(ca_intern_find(t, "a\0d", 3), 0);
	CHECK_INT(ca_intern_find(t, "a", 1), a);
	CHECK_INT(ca_intern_ref(t, "a\0b", 3), a0b);
	/* the NUL-terminated view stops at the first NUL */
	CHECK_STR(ca_intern_str(t, a0b), "a");
	/* dropping one leaves the look-alikes */
	ca_intern_unref(t, a0b);
	ca_intern_unref(t, a0b);
	CHECK_INT(ca_intern_find(t, "a\0b", 3), 0);
	CHECK_INT(ca_intern_find(t, "a\0c", 3), a0c);
	CHECK_INT(ca_intern_find(t, "a", 1), a);
	CHECK_INT(ca_intern_find(t, "a\0", 2), a0);
	ca_intern_free(t);
}

/* ------------------------------------------------------------------ */
/* Bytes */

static void test_bytes(void)
{
	struct ca_intern *t = new_table(0);
	size_t empty = ca_intern_bytes(t);
	CHECK(empty > 0); /* the empty table has its slots and entries */

	/* A few strings, far from any growth: each costs a chunk of at least
	 * its bytes and its NUL, at most what ca_intern_entry_bytes says, and
	 * gives it back whole when it goes. */
	static const char *const words[] = {"a", "eu-west-1a", "m6i.xlarge", "v1.28.5-eks-5e0fdde",
	                                    "KubeletHasSufficientMemory"};
	size_t before[5], cost[5];
	for (int i = 0; i < 5; i++) {
		before[i] = ca_intern_bytes(t);
		uint32_t id = ref(t, words[i]);
		CHECK(id != 0);
		cost[i] = ca_intern_bytes(t) - before[i];
		CHECK(cost[i] >= strlen(words[i]) + 1);
		CHECK(cost[i] <= ca_intern_entry_bytes(strlen(words[i])));
	}
	/* references, ref_id and find cost nothing */
	size_t full = ca_intern_bytes(t);
	ref(t, "a");
	ca_intern_ref_id(t, find(t, "a"));
	find(t, "m6i.xlarge");
	CHECK_INT(ca_intern_bytes(t), full);
	ca_intern_unref(t, find(t, "a"));
	ca_intern_unref(t, find(t, "a"));
	CHECK_INT(ca_intern_bytes(t), full);
	/* removing in reverse gives the same steps back */
	for (int i = 4; i >= 0; i--) {
		ca_intern_unref(t, find(t, words[i]));
		CHECK_INT(ca_intern_bytes(t), before[i]);
	}
	CHECK_INT(ca_intern_bytes(t), empty);

	/* ca_intern_entry_bytes grows with the length */
	CHECK(ca_intern_entry_bytes(CA_INTERN_MAX_LEN) > ca_intern_entry_bytes(1));
	CHECK(ca_intern_entry_bytes(64) >= ca_intern_entry_bytes(63));
	CHECK(ca_intern_entry_bytes(CA_INTERN_MAX_LEN) >= CA_INTERN_MAX_LEN + 1);

	/* Across growth: a table of many strings holds at least their bytes
	 * and at most twice what ca_intern_entry_bytes says for each (the
	 * collector's budget counts each name twice, metrics.c); going back
	 * to empty leaves only the (grown) table, and from there one string
	 * costs its chunk and gives it back. */
	char s[64];
	size_t len = strlen("pod-0-g0.ns-0.example.internal"), total_len = 0;
	for (int i = 0; i < 3000; i++) {
		name_of(i, 0, s, sizeof s);
		total_len += strlen(s) + 1;
		ref(t, s);
	}
	size_t grown = ca_intern_bytes(t);
	CHECK(grown >= empty + total_len);
	CHECK(grown <= empty + 2 * 3000 * ca_intern_entry_bytes(len + 4));
	size_t step = 0, steps = 0;
	for (int i = 0; i < 3000; i++) {
		name_of(i, 0, s, sizeof s);
		size_t b = ca_intern_bytes(t);
		ca_intern_unref(t, find(t, s));
		if (b - ca_intern_bytes(t) >= strlen(s) + 1)
			steps++;
		step += b - ca_intern_bytes(t);
	}
	CHECK_INT(steps, 3000); /* each one gave back at least its bytes */
	size_t table_only = ca_intern_bytes(t);
	CHECK_INT(table_only, grown - step);
	CHECK(table_only >= empty);
	uint32_t one = ref(t, "one-more");
	CHECK(ca_intern_bytes(t) > table_only);
	ca_intern_unref(t, one);
	CHECK_INT(ca_intern_bytes(t), table_only);
	CHECK_INT(ca_intern_count(t), 0);
	ca_intern_free(t);
}

/* Fill a table capped at max_bytes with distinct strings of len bytes
 * until it refuses one; every step must stay within the cap. Returns how
 * many it took; *over counts the steps that went past max_bytes. */
static int fill(struct ca_intern *t, size_t max_bytes, size_t len, const char *tag, int *over)
{
	char s[CA_INTERN_MAX_LEN + 1];
	int n = 0;
	for (;; n++) {
		snprintf(s, sizeof s, "%s-%0*d", tag, (int)(len - strlen(tag) - 1), n);
		size_t bytes = ca_intern_bytes(t), count = ca_intern_count(t);
		uint32_t id = ref(t, s);
		if (!id) {
			/* refused: nothing changed */
			if (ca_intern_bytes(t) != bytes || ca_intern_count(t) != count)
				(*over)++;
			return n;
		}
		if (ca_intern_bytes(t) > max_bytes)
			(*over)++;
		if (n > 1000000)
			return n; /* never refused: the caller's CHECK fails */
	}
}

static void test_max_bytes(void)
{
	/* A cap under the empty table's own size refuses everything. */
	struct ca_intern *t = new_table(1);
	CHECK_INT(ref(t, "x"), 0);
	CHECK_INT(ca_intern_count(t), 0);
	ca_intern_free(t);

	/* Caps at and around the table's growth steps: whatever the cap,
	 * what the table holds (strings, entries and slots) stays within it,
	 * and a refusal changes nothing. */
	t = new_table(0);
	size_t empty = ca_intern_bytes(t);
	ca_intern_free(t);
	int over = 0, took_total = 0;
	for (size_t cap = empty; cap < empty + 16384; cap += 97) {
		t = new_table(cap);
		took_total += fill(t, cap, 20, "n", &over);
		ca_intern_free(t);
	}
	CHECK_INT(over, 0);
	CHECK(took_total > 0);

	/* Refused once full; an existing string is still referenced (it costs
	 * nothing); room made by a removal is used again. */
	size_t cap = empty + 4096;
	over = 0;
	t = new_table(cap);
	int n = fill(t, cap, 40, "full", &over);
	CHECK(n > 0 && n < 1000000);
	CHECK_INT(over, 0);
	CHECK_INT(ref(t, "another-string-that-does-not-fit-either-xx"), 0);
	char s[64];
	snprintf(s, sizeof s, "full-%0*d", 35, 0);
	uint32_t first = find(t, s);
	CHECK(first != 0);
	CHECK_INT(ref(t, s), first);
	ca_intern_unref(t, first);
	ca_intern_unref(t, first); /* gone now */
	CHECK_INT(find(t, s), 0);
	uint32_t again = ref(t, "room-was-made-for-this-one-xxxxxxxxxxxx");
	CHECK(again != 0);
	CHECK(ca_intern_bytes(t) <= cap);
	/* a longer string than the room left is refused while a short one
	 * fits: the cap is in bytes, not strings */
	char *big = malloc(CA_INTERN_MAX_LEN);
	memset(big, 'b', CA_INTERN_MAX_LEN);
	CHECK_INT(ca_intern_ref(t, big, CA_INTERN_MAX_LEN), 0);
	free(big);
	ca_intern_free(t);
}

int main(void)
{
	test_ids_start_at_one_and_are_dense();
	test_refcounts();
	test_find_takes_no_reference();
	test_freed_ids_are_reused();
	test_churn();
	test_lengths();
	test_nul_bytes_inside();
	test_bytes();
	test_max_bytes();
	return check_report();
}
