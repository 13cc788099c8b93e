/* The replay cache: an id is seen for its window and not after; when full
 * of ids inside their window it refuses rather than forget one early; the
 * chains stay right through wrap-around and expiry. */
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "exec/replay.h"

static void id_of(char *buf, size_t len, unsigned n)
{
	snprintf(buf, len, "cmd-%u", n);
}

static void test_seen_within_window_only(void)
{
	struct ca_replay *r;
	CHECK_INT(ca_replay_new(8, 1000, &r), CA_OK);
	CHECK(!ca_replay_seen(r, "a", 0));
	CHECK_INT(ca_replay_record(r, "a", 0), CA_OK);
	CHECK(ca_replay_seen(r, "a", 1));
	CHECK(ca_replay_seen(r, "a", 999));
	CHECK(!ca_replay_seen(r, "b", 999));
	CHECK(!ca_replay_seen(r, "a", 1000));
	CHECK_INT(ca_replay_count(r), 0);
	/* An id differing only after a prefix, or by case, is another id. */
	CHECK_INT(ca_replay_record(r, "abc", 2000), CA_OK);
	CHECK(!ca_replay_seen(r, "ab", 2001));
	CHECK(!ca_replay_seen(r, "ABC", 2001));
	CHECK(!ca_replay_seen(r, "abcd", 2001));
	ca_replay_free(r);
}

static void test_full_refuses_then_frees_up(void)
{
	struct ca_replay *r;
	char id[32];
	CHECK_INT(ca_replay_new(4, 100, &r), CA_OK);
	for (unsigned i = 0; i < 4; i++) {
		id_of(id, sizeof id, i);
		CHECK_INT(ca_replay_record(r, id, i * 10), CA_OK);
	}
	CHECK_INT(ca_replay_record(r, "one-more", 50), CA_EAGAIN);
	for (unsigned i = 0; i < 4; i++) {
		id_of(id, sizeof id, i);
		CHECK(ca_replay_seen(r, id, 99));
	}
	/* At 100 the first id's window is over: one slot comes free. */
	CHECK_INT(ca_replay_record(r, "one-more", 100), CA_OK);
	CHECK(!ca_replay_seen(r, "cmd-0", 100));
	CHECK(ca_replay_seen(r, "cmd-1", 100));
	CHECK(ca_replay_seen(r, "one-more", 100));
	CHECK_INT(ca_replay_record(r, "two-more", 100), CA_EAGAIN);
	ca_replay_free(r);
}

/* Many windows' worth of ids through a small ring: every id recorded in
 * the last window is seen, every older one is not, and no lookup goes
 * astray after the ring wrapped many times (chains unlinked right). */
static void test_churn_through_wraparound(void)
{
	struct ca_replay *r;
	char id[32];
	const unsigned cap = 37, window = 30;
	CHECK_INT(ca_replay_new(cap, window, &r), CA_OK);
	unsigned bad = 0;
	for (unsigned t = 0; t < 5000; t++) {
		id_of(id, sizeof id, t);
		if (ca_replay_seen(r, id, t) || ca_replay_record(r, id, t) != CA_OK)
			bad++;
		if (t >= window + 5) {
			unsigned probe = t - (unsigned)(t * 7919u % (window + 5));
			id_of(id, sizeof id, probe);
			bool want = t - probe < window;
			if (ca_replay_seen(r, id, t) != want)
				bad++;
		}
	}
	CHECK_INT(bad, 0);
	CHECK(ca_replay_count(r) <= window);
	ca_replay_free(r);
}

static void test_bad_arguments(void)
{
	struct ca_replay *r = (struct ca_replay *)1;
	CHECK_INT(ca_replay_new(0, 10, &r), CA_EINVAL);
	CHECK(r == NULL);
	CHECK_INT(ca_replay_new(4, 0, &r), CA_EINVAL);
	CHECK(ca_replay_bytes(10000) < 512 * 1024);
	ca_replay_free(NULL);
}

int main(void)
{
	test_seen_within_window_only();
	test_full_refuses_then_frees_up();
	test_churn_through_wraparound();
	test_bad_arguments();
	return check_report();
}
