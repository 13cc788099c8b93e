/* Unit tests for kube/watch.h: the WATCH stream splitter and parser, fed
 * with streams captured from a real kube-apiserver, cut in every way. */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif

#include "check.h"
#include "kube/kobj.h"
#include "kube/watch.h"

#define MAX_RECS 64

/* What a test remembers of each delivered event. */
struct rec {
	enum ca_watch_event_type type;
	char id[96];   /* metadata.uid, else metadata.resourceVersion, else "" */
	int64_t count; /* object.count, or object.code for ERROR, else -1 */
};

struct sink {
	struct rec recs[MAX_RECS];
	size_t n;
	size_t overflow;
	int pause_every;  /* return false after every Nth event (0 = never) */
	size_t since_pause;
};

static bool on_event(void *arg, enum ca_watch_event_type type, const struct ca_kobj *o)
{
	struct sink *s = arg;
	if (s->n >= MAX_RECS) {
		s->overflow++;
		return true;
	}
	struct rec *r = &s->recs[s->n++];
	r->type = type;
	const char *id = ca_kobj_str(o, "metadata.uid");
	if (!id)
		id = ca_kobj_str(o, "metadata.resourceVersion");
	snprintf(r->id, sizeof r->id, "%s", id ? id : "");
	r->count = ca_kobj_int(o, type == CA_WATCH_EVENT_ERROR ? "code" : "count", -1);
	if (s->pause_every > 0 && ++s->since_pause >= (size_t)s->pause_every) {
		s->since_pause = 0;
		return false;
	}
	return true;
}

static bool same_recs(const struct sink *a, const struct sink *b)
{
	if (a->n != b->n || a->overflow || b->overflow)
		return false;
	for (size_t i = 0; i < a->n; i++) {
		if (a->recs[i].type != b->recs[i].type || strcmp(a->recs[i].id, b->recs[i].id) != 0 ||
		    a->recs[i].count != b->recs[i].count)
			return false;
	}
	return true;
}

/* Feed data, resuming after every pause with feed(NULL, 0). */
static enum ca_err feed_all(struct ca_watch_parser *p, const char *data, size_t len)
{
	enum ca_err err = ca_watch_feed(p, data, len);
	int guard = 0;
	while (err == CA_EAGAIN && guard++ < 100000)
		err = ca_watch_feed(p, NULL, 0);
	return err;
}

static char *read_sample(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof path, "%s/%s", CA_SAMPLES_DIR, name);
	char *data = check_read_file(path, len);
	if (!data)
		fprintf(stderr, "cannot read %s\n", path);
	return data;
}

/* One whole feed; the reference every other cut is compared against. */
static void parse_whole(const char *data, size_t len, size_t max_line, struct sink *s,
                        struct ca_watch_parser_stats *st)
{
	struct ca_watch_parser *p = NULL;
	memset(s, 0, sizeof *s);
	CHECK_INT(ca_watch_parser_new(&p, max_line, on_event, s), CA_OK);
	if (!p)
		return;
	CHECK_INT(ca_watch_feed(p, data, len), CA_OK);
	ca_watch_parser_get_stats(p, st);
	ca_watch_parser_free(p);
}

/* Under valgrind jansson runs ~40x slower and the exhaustive cuts below
 * would pass the test timeout; there the cuts near line ends are all kept
 * and the others are sampled (memory errors do not depend on the exact
 * byte). The native and ASan runs try every cut. */
static bool under_valgrind(void)
{
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
	if (RUNNING_ON_VALGRIND)
		return true;
#endif
#endif
	const char *preload = getenv("LD_PRELOAD");
	return preload && strstr(preload, "vgpreload") != NULL;
}

static bool near_newline(const char *data, size_t len, size_t k)
{
	for (size_t i = k > 3 ? k - 3 : 0; i < len && i <= k + 3; i++) {
		if (data[i] == '\n')
			return true;
	}
	return false;
}

/* Every two-feed cut, one byte at a time, and with pauses: same results. */
static void check_all_cuts(const char *name, const char *data, size_t len,
                           const struct sink *ref, const struct ca_watch_parser_stats *ref_st)
{
	size_t bad_split = 0, bad_pause = 0, bad_stats = 0;
	const size_t stride = under_valgrind() ? 5 : 1;
	for (size_t k = 0; k <= len; k++) {
		if (k % stride != 0 && !near_newline(data, len, k))
			continue;
		struct sink s;
		memset(&s, 0, sizeof s);
		struct ca_watch_parser *p = NULL;
		if (ca_watch_parser_new(&p, 1 << 20, on_event, &s) != CA_OK)
			break;
		bool ok = ca_watch_feed(p, data, k) == CA_OK &&
		          ca_watch_feed(p, data + k, len - k) == CA_OK;
		if (!ok || !same_recs(&s, ref))
			bad_split++;
		struct ca_watch_parser_stats st;
		ca_watch_parser_get_stats(p, &st);
		if (st.events != ref_st->events || st.parse_errors != ref_st->parse_errors ||
		    st.oversized != ref_st->oversized || st.bytes != len)
			bad_stats++;
		ca_watch_parser_free(p);

		/* Same cut, with the callback pausing after every event and the
		 * second half fed while the parser is still paused. Every cut near
		 * a line end, and every 7th elsewhere, keeps this affordable
		 * under valgrind. */
		if (k % (7 * stride) != 0 && !near_newline(data, len, k))
			continue;
		memset(&s, 0, sizeof s);
		s.pause_every = 1;
		if (ca_watch_parser_new(&p, 1 << 20, on_event, &s) != CA_OK)
			break;
		enum ca_err e1 = ca_watch_feed(p, data, k);
		enum ca_err e2 = ca_watch_feed(p, data + k, len - k);
		ok = (e1 == CA_OK || e1 == CA_EAGAIN) && (e2 == CA_OK || e2 == CA_EAGAIN) &&
		     feed_all(p, NULL, 0) == CA_OK;
		if (!ok || !same_recs(&s, ref))
			bad_pause++;
		ca_watch_parser_free(p);
	}
	if (bad_split || bad_pause || bad_stats)
		fprintf(stderr, "%s: %zu bad splits, %zu bad paused splits, %zu bad stats\n", name,
		        bad_split, bad_pause, bad_stats);
	CHECK_INT(bad_split, 0);
	CHECK_INT(bad_pause, 0);
	CHECK_INT(bad_stats, 0);

	/* One byte per feed. */
	struct sink s;
	memset(&s, 0, sizeof s);
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_event, &s), CA_OK);
	if (!p)
		return;
	bool ok = true;
	for (size_t i = 0; i < len; i++)
		ok = ok && ca_watch_feed(p, data + i, 1) == CA_OK;
	CHECK(ok);
	CHECK(same_recs(&s, ref));
	CHECK(!ca_watch_parser_partial(p));
	ca_watch_parser_free(p);
}

/* ------------------------------------------------------------------------ */

static void test_events_stream(void)
{
	size_t len = 0;
	char *data = read_sample("watch-events-stream.jsonl", &len);
	CHECK(data != NULL);
	if (!data)
		return;
	struct sink ref;
	struct ca_watch_parser_stats st;
	parse_whole(data, len, 1 << 20, &ref, &st);
	static const struct rec want[] = {
		{CA_WATCH_EVENT_ADDED, "7a348571-07da-4f3d-acbd-01278e1a1259", 1},
		{CA_WATCH_EVENT_ADDED, "de3f9b50-d837-4c79-a3b1-c84b68e07b94", 1},
		{CA_WATCH_EVENT_ADDED, "f20b59cf-7ba8-4c80-8e2b-272eaa4c5f5d", 1},
		{CA_WATCH_EVENT_MODIFIED, "de3f9b50-d837-4c79-a3b1-c84b68e07b94", 5},
		{CA_WATCH_EVENT_DELETED, "f20b59cf-7ba8-4c80-8e2b-272eaa4c5f5d", 1},
		/* an events.k8s.io/v1 event seen through core/v1: no count */
		{CA_WATCH_EVENT_ADDED, "a4e6fc4f-908d-4b7d-ae0c-6927eed2fc93", -1},
	};
	CHECK_INT(ref.n, sizeof want / sizeof want[0]);
	for (size_t i = 0; i < ref.n && i < sizeof want / sizeof want[0]; i++) {
		CHECK_INT(ref.recs[i].type, want[i].type);
		CHECK_STR(ref.recs[i].id, want[i].id);
		CHECK_INT(ref.recs[i].count, want[i].count);
	}
	CHECK_INT(st.events, 6);
	CHECK_INT(st.parse_errors, 0);
	CHECK_INT(st.oversized, 0);
	CHECK_INT(st.bytes, len);
	check_all_cuts("watch-events-stream", data, len, &ref, &st);

	/* A stream cut inside its last line: the line is pending, not delivered. */
	struct sink s;
	memset(&s, 0, sizeof s);
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_event, &s), CA_OK);
	if (p) {
		CHECK(!ca_watch_parser_partial(p));
		CHECK_INT(ca_watch_feed(p, data, len - 10), CA_OK);
		CHECK_INT(s.n, 5);
		CHECK(ca_watch_parser_partial(p));
		/* The stream restarts: the cut line is forgotten, the next parses. */
		ca_watch_parser_reset(p);
		CHECK(!ca_watch_parser_partial(p));
		const char *first_nl = memchr(data, '\n', len);
		CHECK(first_nl != NULL);
		if (first_nl)
			CHECK_INT(ca_watch_feed(p, data, (size_t)(first_nl - data) + 1), CA_OK);
		CHECK_INT(s.n, 6);
		CHECK_STR(s.recs[5].id, "7a348571-07da-4f3d-acbd-01278e1a1259");
		struct ca_watch_parser_stats st2;
		ca_watch_parser_get_stats(p, &st2);
		CHECK_INT(st2.parse_errors, 0);
		CHECK_INT(st2.events, 6);
		ca_watch_parser_free(p);
	}
	free(data);
}

static void test_bookmarks(void)
{
	size_t len = 0;
	char *data = read_sample("watch-pods-bookmarks.jsonl", &len);
	CHECK(data != NULL);
	if (!data)
		return;
	struct sink ref;
	struct ca_watch_parser_stats st;
	parse_whole(data, len, 1 << 20, &ref, &st);
	CHECK_INT(ref.n, 3);
	if (ref.n == 3) {
		CHECK_INT(ref.recs[0].type, CA_WATCH_EVENT_ADDED);
		CHECK_STR(ref.recs[0].id, "054befa1-52ee-462d-ad9c-aa2bc56dcd58");
		CHECK_INT(ref.recs[1].type, CA_WATCH_EVENT_MODIFIED);
		CHECK_STR(ref.recs[1].id, "054befa1-52ee-462d-ad9c-aa2bc56dcd58");
		/* A bookmark carries only metadata.resourceVersion. */
		CHECK_INT(ref.recs[2].type, CA_WATCH_EVENT_BOOKMARK);
		CHECK_STR(ref.recs[2].id, "2225");
	}
	CHECK_INT(st.parse_errors, 0);
	check_all_cuts("watch-pods-bookmarks", data, len, &ref, &st);
	free(data);
}

static void test_too_old(void)
{
	size_t len = 0;
	char *data = read_sample("watch-events-too-old.txt", &len);
	CHECK(data != NULL);
	if (!data)
		return;
	const char *body = strstr(data, "\r\n\r\n");
	CHECK(body != NULL);
	if (body) {
		body += 4;
		size_t blen = len - (size_t)(body - data);
		struct sink ref;
		struct ca_watch_parser_stats st;
		parse_whole(body, blen, 1 << 20, &ref, &st);
		CHECK_INT(ref.n, 1);
		CHECK_INT(ref.recs[0].type, CA_WATCH_EVENT_ERROR);
		CHECK_INT(ref.recs[0].count, 410); /* object.code */
		CHECK_INT(st.parse_errors, 0);
		check_all_cuts("watch-events-too-old", body, blen, &ref, &st);
	}
	free(data);
}

/* The HTTP/1.1 capture keeps its chunk framing: decode it here and feed the
 * parser one chunk at a time, as libcurl would hand them over. */
static void test_http11_chunks(void)
{
	size_t len = 0;
	char *raw = read_sample("watch-events-http11-raw.txt", &len);
	CHECK(raw != NULL);
	if (!raw)
		return;
	struct sink s;
	memset(&s, 0, sizeof s);
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_event, &s), CA_OK);
	size_t pos = 0, chunks = 0;
	bool ended = false, framing_ok = true;
	while (p && pos < len && !ended) {
		char *end = NULL;
		unsigned long size = strtoul(raw + pos, &end, 16);
		if (end == raw + pos || len - (size_t)(end - raw) < 2 || end[0] != '\r' ||
		    end[1] != '\n') {
			framing_ok = false;
			break;
		}
		pos = (size_t)(end - raw) + 2;
		if (size == 0) {
			ended = true;
			break;
		}
		if (size > len - pos || len - pos - size < 2 || raw[pos + size] != '\r' ||
		    raw[pos + size + 1] != '\n') {
			framing_ok = false;
			break;
		}
		CHECK_INT(ca_watch_feed(p, raw + pos, size), CA_OK);
		/* One event per chunk: nothing is left pending between chunks. */
		CHECK(!ca_watch_parser_partial(p));
		chunks++;
		pos += size + 2;
	}
	CHECK(framing_ok);
	CHECK(ended);
	CHECK_INT(chunks, 2);
	CHECK_INT(s.n, 2);
	if (s.n == 2) {
		CHECK_INT(s.recs[0].type, CA_WATCH_EVENT_ADDED);
		CHECK_STR(s.recs[0].id, "137c7fc0-81b2-4e16-8e69-a03576d7224d");
		CHECK_INT(s.recs[1].type, CA_WATCH_EVENT_MODIFIED);
	}
	ca_watch_parser_free(p);
	free(raw);
}

static void test_bad_lines(void)
{
	static const char stream[] =
		"not json at all\n"                                          /* error 1 */
		"[1,2,3]\n"                                                  /* error 2 */
		"{\"object\":{\"metadata\":{\"uid\":\"x\"}}}\n"              /* error 3: no type */
		"{\"type\":\"UPSERTED\",\"object\":{}}\n"                    /* error 4: unknown type */
		"{\"type\":\"ADDED\",\"object\":[]}\n"                       /* error 5: object is an array */
		"{\"type\":\"ADDED\",\"object\":\"pod\"}\n"                  /* error 6: object is a string */
		"{\"type\":5,\"object\":{}}\n"                               /* error 7: type not a string */
		"{\"type\":\"ADDED\"}\n"                                     /* error 8: no object */
		"{\"type\":\"added\",\"object\":{}}\n"                       /* error 9: types are upper case */
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"u1\"}}}\n" /* good */
		"\n"                                                         /* blank */
		"\r\n"                                                       /* blank */
		"   \t \r\n"                                                 /* blank */
		"{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"uid\":\"u2\"},\"count\":3}}\r\n" /* good, CRLF */
		"{\"type\":\"ADDED\",\"object\":{}} trailing\n"             /* error 10 */
		"{\"type\":\"ADDED\",\"object\":{\"a\\u0000\":\"y\"}}\n"   /* error 11: NUL in a key */
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"n\\u0000l\"}}}\n" /* good: NUL -> U+FFFD */
		"{\"type\":\"ADDED\",\"object\":{\"a\":\"x\0y\"}}\n"        /* error 12: raw NUL byte */
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"u3\"}}\n" /* error 13: unbalanced */
		"{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"77\"}}}\n"; /* good */
	size_t len = sizeof stream - 1;
	struct sink ref;
	struct ca_watch_parser_stats st;
	parse_whole(stream, len, 1 << 20, &ref, &st);
	CHECK_INT(st.parse_errors, 13);
	CHECK_INT(st.events, 4);
	CHECK_INT(ref.n, 4);
	if (ref.n == 4) {
		CHECK_INT(ref.recs[0].type, CA_WATCH_EVENT_ADDED);
		CHECK_STR(ref.recs[0].id, "u1");
		CHECK_INT(ref.recs[1].type, CA_WATCH_EVENT_DELETED);
		CHECK_STR(ref.recs[1].id, "u2");
		CHECK_INT(ref.recs[1].count, 3);
		CHECK_STR(ref.recs[2].id, "n\xEF\xBF\xBDl");
		CHECK_INT(ref.recs[3].type, CA_WATCH_EVENT_BOOKMARK);
		CHECK_STR(ref.recs[3].id, "77");
	}
	check_all_cuts("bad-lines", stream, len, &ref, &st);
}

/* Heap bytes in use according to glibc, or 0 when the allocator is not
 * glibc's (valgrind, ASan replace it). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
#else
	return 0;
#endif
}

/* True when heap_in_use() sees a 4 MiB allocation: the memory bound below
 * is then really measured, not assumed. */
static bool heap_measurable(void)
{
	size_t before = heap_in_use();
	char *big = malloc((size_t)4 << 20);
	if (!big)
		return false;
	memset(big, 1, (size_t)4 << 20);
	size_t during = heap_in_use();
	free(big);
	return during >= before + ((size_t)4 << 20);
}

static void test_oversized(void)
{
	const size_t max_line = (size_t)1 << 20;
	const size_t big = (size_t)5 << 20;
	/* A 5 MB line between two good lines. */
	static const char good1[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"before\"}}}\n";
	static const char good2[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"after\"}}}\n";
	static const char head[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"big\"},\"data\":\"";
	size_t len = sizeof good1 - 1 + big + 1 + sizeof good2 - 1;
	char *stream = malloc(len);
	CHECK(stream != NULL);
	if (!stream)
		return;
	size_t pos = 0;
	memcpy(stream + pos, good1, sizeof good1 - 1);
	pos += sizeof good1 - 1;
	memcpy(stream + pos, head, sizeof head - 1);
	memset(stream + pos + sizeof head - 1, 'x', big - (sizeof head - 1) - 3);
	memcpy(stream + pos + big - 3, "\"}}", 3);
	pos += big;
	stream[pos++] = '\n';
	memcpy(stream + pos, good2, sizeof good2 - 1);

	bool measurable = heap_measurable();
	if (!measurable)
		printf("heap use not measurable under this allocator; memory bound not checked\n");

	static const size_t feed_sizes[] = {0 /* whole */, 65536, 1000};
	for (size_t f = 0; f < sizeof feed_sizes / sizeof feed_sizes[0]; f++) {
		struct sink s;
		memset(&s, 0, sizeof s);
		struct ca_watch_parser *p = NULL;
		CHECK_INT(ca_watch_parser_new(&p, max_line, on_event, &s), CA_OK);
		if (!p)
			break;
		size_t base = heap_in_use();
		size_t peak = 0;
		size_t step = feed_sizes[f] ? feed_sizes[f] : len;
		bool ok = true;
		for (size_t at = 0; at < len; at += step) {
			size_t n = len - at < step ? len - at : step;
			ok = ok && ca_watch_feed(p, stream + at, n) == CA_OK;
			/* mallinfo2() is slow: sample about every 16 KiB fed. */
			if (n >= 16384 || (at + n) % 16384 < n) {
				size_t now = heap_in_use();
				if (now > base && now - base > peak)
					peak = now - base;
			}
		}
		CHECK(ok);
		struct ca_watch_parser_stats st;
		ca_watch_parser_get_stats(p, &st);
		CHECK_INT(st.oversized, 1);
		CHECK_INT(st.parse_errors, 0);
		CHECK_INT(st.events, 2);
		CHECK_INT(s.n, 2);
		if (s.n == 2) {
			CHECK_STR(s.recs[0].id, "before");
			CHECK_STR(s.recs[1].id, "after");
		}
		CHECK(!ca_watch_parser_partial(p));
		/* The skipped line is never stored: at most one max_line buffer
		 * (rounded to a power of two) plus slack. */
		if (measurable)
			CHECK(peak <= 2 * max_line + (256 << 10));
		ca_watch_parser_free(p);
	}

	/* A line of exactly max_line bytes still parses; one byte more does not. */
	for (int extra = 0; extra <= 1; extra++) {
		const size_t small_max = 200;
		char line[256];
		static const char pre[] = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"edge\"},\"p\":\"";
		size_t n = small_max + (size_t)extra;
		memcpy(line, pre, sizeof pre - 1);
		memset(line + sizeof pre - 1, 'y', n - (sizeof pre - 1) - 3);
		memcpy(line + n - 3, "\"}}", 3);
		line[n] = '\n';
		struct sink ref;
		struct ca_watch_parser_stats st;
		parse_whole(line, n + 1, small_max, &ref, &st);
		CHECK_INT(st.events, extra ? 0 : 1);
		CHECK_INT(st.oversized, extra ? 1 : 0);
		/* Byte by byte, the same verdict. */
		struct sink s;
		memset(&s, 0, sizeof s);
		struct ca_watch_parser *p = NULL;
		CHECK_INT(ca_watch_parser_new(&p, small_max, on_event, &s), CA_OK);
		if (!p)
			continue;
		for (size_t i = 0; i <= n; i++)
			ca_watch_feed(p, line + i, 1);
		struct ca_watch_parser_stats st2;
		ca_watch_parser_get_stats(p, &st2);
		CHECK_INT(st2.events, st.events);
		CHECK_INT(st2.oversized, st.oversized);
		ca_watch_parser_free(p);
		/* Every two-feed cut, the same verdict. */
		size_t bad = 0;
		for (size_t k = 0; k <= n + 1; k++) {
			memset(&s, 0, sizeof s);
			if (ca_watch_parser_new(&p, small_max, on_event, &s) != CA_OK)
				break;
			ca_watch_feed(p, line, k);
			ca_watch_feed(p, line + k, n + 1 - k);
			ca_watch_parser_get_stats(p, &st2);
			if (st2.events != st.events || st2.oversized != st.oversized ||
			    ca_watch_parser_partial(p))
				bad++;
			ca_watch_parser_free(p);
		}
		CHECK_INT(bad, 0);
	}
	free(stream);
}

static void test_pause(void)
{
	size_t len = 0;
	char *data = read_sample("watch-events-stream.jsonl", &len);
	CHECK(data != NULL);
	if (!data)
		return;
	struct sink ref;
	struct ca_watch_parser_stats ref_st;
	parse_whole(data, len, 1 << 20, &ref, &ref_st);

	struct sink s;
	memset(&s, 0, sizeof s);
	s.pause_every = 2;
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_event, &s), CA_OK);
	if (p) {
		/* Paused after two events; the rest is kept, not lost. */
		CHECK_INT(ca_watch_feed(p, data, len), CA_EAGAIN);
		CHECK_INT(s.n, 2);
		CHECK(ca_watch_parser_partial(p));
		CHECK_INT(ca_watch_feed(p, NULL, 0), CA_EAGAIN);
		CHECK_INT(s.n, 4);
		/* Nothing is delivered twice or skipped. */
		CHECK_INT(ca_watch_feed(p, NULL, 0), CA_EAGAIN);
		CHECK_INT(s.n, 6);
		CHECK_INT(ca_watch_feed(p, NULL, 0), CA_OK);
		CHECK_INT(s.n, 6);
		CHECK(same_recs(&s, &ref));
		CHECK(!ca_watch_parser_partial(p));
		struct ca_watch_parser_stats st;
		ca_watch_parser_get_stats(p, &st);
		CHECK_INT(st.events, 6);
		CHECK_INT(st.bytes, len);
		ca_watch_parser_free(p);
	}

	/* Paused in the middle of a feed, then more data arrives before the
	 * owner resumes: it goes after the kept bytes. */
	memset(&s, 0, sizeof s);
	s.pause_every = 1;
	p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_event, &s), CA_OK);
	if (p) {
		size_t half = len / 2;
		CHECK_INT(ca_watch_feed(p, data, half), CA_EAGAIN);
		CHECK_INT(s.n, 1);
		CHECK_INT(ca_watch_feed(p, data + half, len - half), CA_EAGAIN);
		CHECK_INT(s.n, 2);
		CHECK_INT(feed_all(p, NULL, 0), CA_OK);
		CHECK(same_recs(&s, &ref));
		ca_watch_parser_free(p);
	}
	free(data);
}

/* managedFields is cut out before parsing; nothing else may change. */
static size_t mf_len;
static const char *mf_msg;
static bool mf_ok;

static bool on_mf_event(void *arg, enum ca_watch_event_type type, const struct ca_kobj *o)
{
	(void)arg;
	(void)type;
	const struct ca_kobj *mf = ca_kobj_get(o, "metadata.managedFields");
	mf_ok = mf != NULL;
	mf_len = ca_kobj_array_len(mf);
	mf_msg = NULL;
	const char *m = ca_kobj_str(o, "message");
	static char copy[256];
	if (m) {
		snprintf(copy, sizeof copy, "%s", m);
		mf_msg = copy;
	}
	return true;
}

static void test_managed_fields(void)
{
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, 1 << 20, on_mf_event, NULL), CA_OK);
	if (!p)
		return;
	struct ca_watch_parser_stats st;

	/* The sample: every other field intact, managedFields empty. */
	size_t len = 0;
	char *data = read_sample("watch-events-stream.jsonl", &len);
	const char *nl = data ? memchr(data, '\n', len) : NULL;
	CHECK(nl != NULL);
	if (nl) {
		CHECK_INT(ca_watch_feed(p, data, (size_t)(nl - data) + 1), CA_OK);
		CHECK(mf_ok);
		CHECK_INT(mf_len, 0);
		CHECK_STR(mf_msg, "Back-off restarting failed container web in pod "
		                  "web-7d9f-(5b0c6a2e-0000-4000-8000-000000000001)");
	}
	free(data);

	/* The key text inside a string value is not touched. */
	static const char in_string[] =
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"managedFields\":[{\"a\":1}]},"
		"\"message\":\"x \\\"managedFields\\\":[1,2] ]} y\"}}\n";
	CHECK_INT(ca_watch_feed(p, in_string, sizeof in_string - 1), CA_OK);
	CHECK_STR(mf_msg, "x \"managedFields\":[1,2] ]} y");
	CHECK_INT(mf_len, 0);
	/* Brackets and quotes inside managedFields strings do not confuse it. */
	static const char tricky[] =
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"managedFields\":[{\"k\":\"]}\\\"[\"}]},"
		"\"message\":\"after\"}}\n";
	CHECK_INT(ca_watch_feed(p, tricky, sizeof tricky - 1), CA_OK);
	CHECK_STR(mf_msg, "after");
	CHECK_INT(mf_len, 0);
	/* An escaped quote before the key: a string, left alone. */
	static const char escaped[] =
		"{\"type\":\"ADDED\",\"object\":{\"message\":\"a\\\"managedFields\\\":[\","
		"\"metadata\":{\"managedFields\":[]}}}\n";
	CHECK_INT(ca_watch_feed(p, escaped, sizeof escaped - 1), CA_OK);
	CHECK_STR(mf_msg, "a\"managedFields\":[");
	ca_watch_parser_get_stats(p, &st);
	CHECK_INT(st.events, 4);
	CHECK_INT(st.parse_errors, 0);
	/* An unclosed array stays a parse error. */
	static const char unclosed[] =
		"{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"managedFields\":[{\"a\":1}}}\n";
	CHECK_INT(ca_watch_feed(p, unclosed, sizeof unclosed - 1), CA_OK);
	ca_watch_parser_get_stats(p, &st);
	CHECK_INT(st.events, 4);
	CHECK_INT(st.parse_errors, 1);
	ca_watch_parser_free(p);
}

static void test_api(void)
{
	struct ca_watch_parser *p = (struct ca_watch_parser *)1;
	CHECK_INT(ca_watch_parser_new(&p, 0, on_event, NULL), CA_EINVAL);
	CHECK(p == NULL);
	CHECK_INT(ca_watch_parser_new(&p, 1024, NULL, NULL), CA_EINVAL);
	ca_watch_parser_free(NULL);
	struct sink s;
	memset(&s, 0, sizeof s);
	CHECK_INT(ca_watch_parser_new(&p, 1024, on_event, &s), CA_OK);
	if (p) {
		CHECK_INT(ca_watch_feed(p, NULL, 0), CA_OK);
		CHECK_INT(ca_watch_feed(p, "", 0), CA_OK);
		CHECK(!ca_watch_parser_partial(p));
		CHECK_INT(ca_watch_feed(p, "{\"type\"", 7), CA_OK);
		CHECK(ca_watch_parser_partial(p));
		ca_watch_parser_free(p); /* with a partial line pending */
	}
}

/* A document just under max_line that expands to a large tape (a 900 KB
 * list of short strings: one 24-byte node per seven input bytes, about as
 * dense as the parser's node cap allows) is delivered, and the arena does
 * not keep that memory once the line is done. */
static void test_big_document_not_kept(void)
{
	if (!heap_measurable()) {
		printf("test_big_document_not_kept: heap not measurable here, skipped\n");
		return;
	}
	const size_t values = 128000;
	struct ca_buf line;
	ca_buf_init(&line, 0);
	ca_buf_append_str(&line, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"big\"},\"data\":[");
	for (size_t i = 0; i < values; i++)
		ca_buf_append_str(&line, i ? ",\"abcd\"" : "\"abcd\"");
	ca_buf_append_str(&line, "]}}\n{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"uid\":\"small\"}}}\n");
	struct sink *s = calloc(1, sizeof *s);
	struct ca_watch_parser *p = NULL;
	CHECK_INT(ca_watch_parser_new(&p, (size_t)1 << 20, on_event, s), CA_OK);
	size_t before = heap_in_use();
	CHECK_INT(ca_watch_feed(p, line.data, line.len), CA_OK);
	size_t after = heap_in_use();
	CHECK_INT(s->n, 2);
	CHECK_STR(s->recs[0].id, "big");
	CHECK_STR(s->recs[1].id, "small");
	/* The tape for the big line is ~4 MB; what stays must be small. */
	CHECK(after < before + ((size_t)2 << 20));
	ca_watch_parser_free(p);
	free(s);
	ca_buf_fini(&line);
}

int main(void)
{
	test_api();
	test_big_document_not_kept();
	test_events_stream();
	test_bookmarks();
	test_too_old();
	test_http11_chunks();
	test_bad_lines();
	test_oversized();
	test_pause();
	test_managed_fields();
	return check_report();
}
