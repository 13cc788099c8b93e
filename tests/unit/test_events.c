/* Unit tests of the events module: folding, filters, dedup, aggregation,
 * queue, rate limit, state file, and the pipeline driven through the
 * reflector callbacks with objects from ca_kobj_parse (no server). */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "core/timeutil.h"
#include "events/events_int.h"
#include "log/log.h"

/* ---- helpers ------------------------------------------------------------ */

struct fake_clock {
	int64_t mono, unix_ms;
};

static int64_t fc_mono(void *arg) { return ((struct fake_clock *)arg)->mono; }
static int64_t fc_unix(void *arg) { return ((struct fake_clock *)arg)->unix_ms; }

#define MAX_SEEN 4096
struct sink {
	int mode;        /* 0 accept, 1 EAGAIN, 2 accept `budget` then EAGAIN, 3 EINVAL */
	int budget;
	size_t n;
	char uid[MAX_SEEN][64];
	long long count[MAX_SEEN];
	char category[MAX_SEEN][16];
	char severity[MAX_SEEN][16];
	char cluster[MAX_SEEN][16];
	int64_t first_ts[MAX_SEEN];
	size_t msglen[MAX_SEEN];
	bool truncated[MAX_SEEN];
	char msg_id[MAX_SEEN][96];
};

static enum ca_err sink_publish(void *arg, const struct ca_msg_event *m)
{
	struct sink *s = arg;
	if (s->mode == 1)
		return CA_EAGAIN;
	if (s->mode == 3)
		return CA_EINVAL;
	if (s->mode == 2) {
		if (s->budget <= 0)
			return CA_EAGAIN;
		s->budget--;
	}
	if (s->n < MAX_SEEN) {
		ca_strlcpy(s->uid[s->n], m->uid, sizeof s->uid[0]);
		s->count[s->n] = m->count;
		ca_strlcpy(s->category[s->n], m->category, sizeof s->category[0]);
		ca_strlcpy(s->severity[s->n], m->severity, sizeof s->severity[0]);
		ca_strlcpy(s->cluster[s->n], m->cluster_id, sizeof s->cluster[0]);
		s->first_ts[s->n] = m->first_timestamp;
		s->msglen[s->n] = strlen(m->message);
		s->truncated[s->n] = m->message_truncated;
		ca_events_msg_id(m, s->msg_id[s->n], sizeof s->msg_id[0]);
	}
	s->n++;
	return CA_OK;
}

static const struct ca_events_sink the_sink = { sink_publish };

struct evspec {
	const char *uid, *ns, *reason, *type, *obj, *kind, *rv, *msg, *last, *first;
	long long count;
};

static struct ca_kobj *mkev(struct evspec s)
{
	struct ca_buf b;
	struct ca_kobj *o = NULL;
	char objbuf[96];
	ca_buf_init(&b, 0);
	if (!s.ns) s.ns = "default";
	if (!s.reason) s.reason = "BackOff";
	if (!s.type) s.type = "Warning";
	if (!s.kind) s.kind = "Pod";
	if (!s.rv) s.rv = "100";
	if (!s.msg) s.msg = "Back-off restarting failed container";
	if (!s.last) s.last = "2026-11-22T00:29:00Z";
	if (!s.first) s.first = s.last;
	if (!s.count) s.count = 1;
	if (!s.obj) {
		snprintf(objbuf, sizeof objbuf, "pod-%s", s.uid);
		s.obj = objbuf;
	}
	ca_buf_printf(&b,
		"{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"%s.17f\","
		"\"namespace\":\"%s\",\"uid\":\"%s\",\"resourceVersion\":\"%s\","
		"\"creationTimestamp\":\"%s\"},\"involvedObject\":{\"kind\":\"%s\",\"namespace\":\"%s\","
		"\"name\":\"%s\",\"uid\":\"uid-of-%s\",\"apiVersion\":\"v1\"},\"reason\":\"%s\","
		"\"message\":\"%s\",\"source\":{\"component\":\"kubelet\",\"host\":\"node-a\"},"
		"\"firstTimestamp\":\"%s\",\"lastTimestamp\":\"%s\",\"count\":%lld,\"type\":\"%s\"}",
		s.obj, s.ns, s.uid, s.rv, s.first, s.kind, s.ns, s.obj, s.obj, s.reason, s.msg,
		s.first, s.last, s.count, s.type);
	if (ca_kobj_parse(b.data, b.len, &o) != CA_OK)
		o = NULL;
	ca_buf_fini(&b);
	return o;
}

static void deliver(struct ca_events *ev, struct evspec s, enum ca_watch_type t, bool from_list)
{
	struct ca_kobj *o = mkev(s);
	CHECK(o != NULL);
	if (o)
		ca_events_on_object(ev, 0, t, o, from_list);
	ca_kobj_free(o);
}

static void set_str(char **field, const char *v)
{
	free(*field);
	*field = strdup(v);
}

static void set_list(struct ca_strlist *l, const char *a, const char *b)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = calloc(2, sizeof *l->items);
	l->count = 0;
	if (a)
		l->items[l->count++] = strdup(a);
	if (b)
		l->items[l->count++] = strdup(b);
}

static void base_config(struct ca_config *cfg)
{
	CHECK(ca_config_init_defaults(cfg) == CA_OK);
	cfg->events.dedup_window_ms = 0;
}

static struct fake_clock clk;
static const struct ca_events_clock fake = { fc_mono, fc_unix, &clk };

static void reset_clock(void)
{
	clk.mono = 1000000;
	CHECK(ca_parse_rfc3339("2026-11-22T00:30:00Z", &clk.unix_ms) == CA_OK);
}

static struct ca_events *mk(const struct ca_config *cfg, struct sink *s)
{
	struct ca_events *ev = NULL;
	char err[256];
	enum ca_err rc = ca_events_new_internal(&ev, NULL, NULL, cfg, "c1", &the_sink, s, &fake,
	                                        err, sizeof err);
	if (rc != CA_OK)
		fprintf(stderr, "ca_events_new_internal: %s\n", err);
	CHECK(rc == CA_OK);
	return ev;
}

static char *sample_line(const char *file, int lineno)
{
	char path[512];
	snprintf(path, sizeof path, "%s/%s", CA_SAMPLES_DIR, file);
	char *all = check_read_file(path, NULL);
	if (!all)
		return NULL;
	char *p = all;
	for (int i = 0; i < lineno && p; i++) {
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	char *res = NULL;
	if (p && *p) {
		char *e = strchr(p, '\n');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		res = strndup(p, n);
	}
	free(all);
	return res;
}

/* ---- fold --------------------------------------------------------------- */

static void test_fold_samples(void)
{
	char *line = sample_line("watch-events-stream.jsonl", 3); /* MODIFIED, count 5 */
	struct ca_kobj *w = NULL;
	CHECK(line != NULL);
	if (!line)
		return;
	CHECK(ca_kobj_parse(line, strlen(line), &w) == CA_OK);
	CHECK_STR(ca_kobj_str(w, "type"), "MODIFIED");
	struct ca_event_rec *r = NULL;
	struct ca_event_fold_options fo = { .max_message_bytes = 4096, .observed_at = 42, .resume_before = "205" };
	CHECK(ca_events_fold(ca_kobj_get(w, "object"), &fo, &r) == CA_OK);
	if (r) {
		CHECK_STR(r->msg.uid, "de3f9b50-d837-4c79-a3b1-c84b68e07b94");
		CHECK_STR(r->msg.reason, "BackOff");
		CHECK_STR(r->msg.type, "Warning");
		CHECK_STR(r->msg.namespace_, "capture");
		CHECK_STR(r->msg.involved_object.kind, "Pod");
		CHECK_STR(r->msg.involved_object.name, "web-7d9f-2");
		CHECK_STR(r->msg.involved_object.field_path, "spec.containers{web}");
		CHECK_STR(r->msg.involved_object.uid, "5b0c6a2e-0000-4000-8000-000000000002");
		CHECK_STR(r->msg.source_component, "kubelet");
		CHECK_STR(r->msg.source_host, "node-a");
		CHECK_STR(r->msg.resource_version, "206");
		CHECK_STR(r->resume_before, "205");
		CHECK_STR(r->msg.category, "crash");
		CHECK_STR(r->msg.severity, "warning");
		CHECK_INT(r->msg.count, 5);
		int64_t f, l;
		ca_parse_rfc3339("2026-11-22T00:26:05Z", &f);
		ca_parse_rfc3339("2026-11-22T00:26:06Z", &l);
		CHECK_INT(r->msg.first_timestamp, f);
		CHECK_INT(r->msg.last_timestamp, l);
		CHECK_INT(r->msg.observed_at, 42);
		CHECK(!r->msg.message_truncated);

		/* A copy is independent of the original. */
		struct ca_event_rec *d = NULL;
		CHECK(ca_events_rec_dup(r, &d) == CA_OK);
		ca_events_rec_free(r);
		if (d) {
			CHECK_STR(d->msg.uid, "de3f9b50-d837-4c79-a3b1-c84b68e07b94");
			CHECK_STR(d->msg.involved_object.name, "web-7d9f-2");
			CHECK_STR(d->resume_before, "205");
			CHECK_STR(d->msg.message, "Back-off restarting failed container web in pod "
			                          "web-7d9f-(5b0c6a2e-0000-4000-8000-000000000002)");
		}
		ca_events_rec_free(d);
	}
	ca_kobj_free(w);
	free(line);

	/* The events.k8s.io/v1 form: regarding, note, eventTime, reportingController. */
	char path[512];
	snprintf(path, sizeof path, "%s/list-events-k8s-io-v1.json", CA_SAMPLES_DIR);
	size_t len = 0;
	char *doc = check_read_file(path, &len);
	struct ca_kobj *list = NULL;
	CHECK(doc && ca_kobj_parse(doc, len, &list) == CA_OK);
	const struct ca_kobj *items = ca_kobj_get(list, "items");
	CHECK(ca_kobj_array_len(items) >= 2);
	r = NULL;
	CHECK(ca_events_fold(ca_kobj_array_at(items, 0), &fo, &r) == CA_OK);
	if (r) {
		CHECK_STR(r->msg.reason, "FailedScheduling");
		CHECK_STR(r->msg.category, "scheduling");
		CHECK_STR(r->msg.involved_object.name, "db-0");
		CHECK_STR(r->msg.source_component, "default-scheduler");
		CHECK(strncmp(r->msg.message, "0/3 nodes are available", 23) == 0);
		CHECK_INT(r->msg.count, 1);
		int64_t t;
		ca_parse_rfc3339("2026-11-22T00:26:06Z", &t);
		CHECK_INT(r->msg.last_timestamp, t);
		CHECK_INT(r->msg.first_timestamp, t);
	}
	ca_events_rec_free(r);
	ca_kobj_free(list);
	free(doc);

	/* The same event through core/v1 (list page 1): null first/last
	 * timestamps, so eventTime is used. */
	snprintf(path, sizeof path, "%s/list-events-page1.json", CA_SAMPLES_DIR);
	doc = check_read_file(path, &len);
	list = NULL;
	CHECK(doc && ca_kobj_parse(doc, len, &list) == CA_OK);
	r = NULL;
	CHECK(ca_events_fold(ca_kobj_array_at(ca_kobj_get(list, "items"), 0), &fo, &r) == CA_OK);
	if (r) {
		int64_t t;
		ca_parse_rfc3339("2026-11-22T00:26:06Z", &t);
		CHECK_INT(r->msg.last_timestamp, t);
		CHECK_STR(r->msg.source_component, "default-scheduler");
		CHECK_STR(r->msg.source_host, "default-scheduler-node-a");
	}
	ca_events_rec_free(r);
	ca_kobj_free(list);
	free(doc);
}

static struct ca_event_rec *fold_text(const char *json, size_t max_msg)
{
	struct ca_kobj *o = NULL;
	struct ca_event_rec *r = NULL;
	if (ca_kobj_parse(json, strlen(json), &o) != CA_OK)
		return NULL;
	struct ca_event_fold_options fo = { .max_message_bytes = max_msg };
	if (ca_events_fold(o, &fo, &r) != CA_OK)
		r = NULL;
	ca_kobj_free(o);
	return r;
}

static void test_fold_bad_input(void)
{
	/* Missing everything but a uid: empty strings, count 1, other/info. */
	struct ca_event_rec *r = fold_text("{\"metadata\":{\"uid\":\"u1\"}}", 0);
	CHECK(r != NULL);
	if (r) {
		CHECK_STR(r->msg.uid, "u1");
		CHECK_STR(r->msg.reason, "");
		CHECK_STR(r->msg.message, "");
		CHECK_STR(r->msg.involved_object.kind, "");
		CHECK_STR(r->msg.category, "other");
		CHECK_STR(r->msg.severity, "info");
		CHECK_INT(r->msg.count, 1);
		CHECK_INT(r->msg.last_timestamp, 0);
		CHECK_INT(r->msg.first_timestamp, 0);
	}
	ca_events_rec_free(r);
	/* No uid, or not an object: refused. */
	CHECK(fold_text("{\"metadata\":{\"name\":\"x\"},\"reason\":\"BackOff\"}", 0) == NULL);
	CHECK(fold_text("{\"metadata\":{\"uid\":\"\"}}", 0) == NULL);
	CHECK(fold_text("[1,2,3]", 0) == NULL);
	CHECK(fold_text("42", 0) == NULL);
	CHECK(fold_text("{\"metadata\":{\"uid\":7}}", 0) == NULL);
	/* Wrong types are treated as missing. */
	r = fold_text("{\"metadata\":{\"uid\":\"u2\",\"namespace\":5},\"reason\":[1],"
	              "\"involvedObject\":\"pod\",\"lastTimestamp\":\"yesterday\",\"count\":\"many\"}", 0);
	CHECK(r != NULL);
	if (r) {
		CHECK_STR(r->msg.namespace_, "");
		CHECK_STR(r->msg.reason, "");
		CHECK_INT(r->msg.count, 1);
		CHECK_INT(r->msg.last_timestamp, 0);
	}
	ca_events_rec_free(r);

	/* Absurd counts. */
	const struct { const char *c; long long want; } counts[] = {
		{ "-5", 1 }, { "0", 1 }, { "1", 1 }, { "7", 7 }, { "2147483647", 2147483647LL },
		{ "2147483648", 2147483647LL }, { "9223372036854775807", 2147483647LL },
		{ "-9223372036854775808", 1 }, { "1e300", 1 }, { "2.5", 1 }, { "null", 1 },
		{ "true", 1 }, { "1e3", 1000 },
	};
	for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
		char json[256];
		snprintf(json, sizeof json, "{\"metadata\":{\"uid\":\"u\"},\"count\":%s}", counts[i].c);
		r = fold_text(json, 0);
		CHECK(r != NULL);
		if (r && r->msg.count != counts[i].want)
			fprintf(stderr, "count %s -> %lld\n", counts[i].c, (long long)r->msg.count);
		if (r)
			CHECK_INT(r->msg.count, counts[i].want);
		ca_events_rec_free(r);
	}

	/* Timestamps: last falls back to eventTime, then first, then creation. */
	r = fold_text("{\"metadata\":{\"uid\":\"u\",\"creationTimestamp\":\"2026-11-22T00:00:00Z\"}}", 0);
	int64_t t0;
	ca_parse_rfc3339("2026-11-22T00:00:00Z", &t0);
	CHECK(r && r->msg.last_timestamp == t0 && r->msg.first_timestamp == t0);
	ca_events_rec_free(r);
	/* first after last (clock skew): first is clamped to last. */
	r = fold_text("{\"metadata\":{\"uid\":\"u\"},\"firstTimestamp\":\"2026-11-22T01:00:00Z\","
	              "\"lastTimestamp\":\"2026-11-22T00:00:00Z\"}", 0);
	CHECK(r && r->msg.first_timestamp == t0 && r->msg.last_timestamp == t0);
	ca_events_rec_free(r);

	/* Overlong non-message fields are cut. */
	char *big = calloc(1, 8192);
	CHECK(big != NULL);
	if (!big)
		return;
	snprintf(big, 8192, "%s", "{\"metadata\":{\"uid\":\"u\"},\"reason\":\"");
	size_t at = strlen(big);
	memset(big + at, 'R', 5000);
	memcpy(big + at + 5000, "\"}", 3);
	r = fold_text(big, 0);
	CHECK(r && strlen(r->msg.reason) == CA_EVENTS_MAX_FIELD);
	ca_events_rec_free(r);
	free(big);
}

static bool valid_utf8(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
		if (n == 0)
			return false;
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xC0) != 0x80)
				return false;
		p += n;
	}
	return true;
}

static void test_truncation(void)
{
	/* A 1 MB message of multi-byte characters, cut at several limits. */
	size_t big = 1 << 20;
	char *json = malloc(big + 256);
	CHECK(json != NULL);
	if (!json)
		return;
	snprintf(json, big + 256, "%s", "{\"metadata\":{\"uid\":\"u\"},\"message\":\"");
	size_t at = strlen(json);
	for (size_t i = 0; i + 3 <= big; i += 3)
		memcpy(json + at + i, "\xe2\x82\xac", 3); /* € */
	size_t msg_len = big / 3 * 3;
	memcpy(json + at + msg_len, "\"}", 3);
	const size_t limits[] = { 4096, 4097, 4098, 100, 64, 10, 1 };
	for (size_t k = 0; k < sizeof limits / sizeof limits[0]; k++) {
		struct ca_event_rec *r = fold_text(json, limits[k]);
		CHECK(r != NULL);
		if (!r)
			continue;
		const char *m = r->msg.message;
		size_t mlen = strlen(m);
		CHECK(r->msg.message_truncated);
		CHECK(valid_utf8(m));
		const char *mark = strstr(m, "\xe2\x80\xa6[truncated ");
		CHECK(mark != NULL);
		if (mark) {
			size_t kept = (size_t)(mark - m);
			CHECK(kept % 3 == 0);
			char want[64];
			snprintf(want, sizeof want, "\xe2\x80\xa6[truncated %zu bytes]", msg_len - kept);
			CHECK_STR(mark, want);
			/* Message and marker fit the limit when the limit can hold the marker. */
			if (limits[k] >= 64)
				CHECK(mlen <= limits[k]);
			if (limits[k] >= 4096)
				CHECK(kept > 4000);
		}
		ca_events_rec_free(r);
	}
	/* At the limit exactly: not truncated. */
	memset(json + at, 'x', 4096);
	memcpy(json + at + 4096, "\"}", 3);
	struct ca_event_rec *r = fold_text(json, 4096);
	CHECK(r && !r->msg.message_truncated && strlen(r->msg.message) == 4096);
	ca_events_rec_free(r);
	memcpy(json + at + 4096, "y\"}", 4);
	r = fold_text(json, 4096);
	CHECK(r && r->msg.message_truncated && strlen(r->msg.message) <= 4096);
	ca_events_rec_free(r);
	free(json);
}

/* ---- table, dedup, aggregation, rate limit, queue ------------------------ */

static uint64_t xs = 88172645463325252ull;
static uint64_t rnd(void)
{
	xs ^= xs << 13;
	xs ^= xs >> 7;
	xs ^= xs << 17;
	return xs;
}

static void test_table(void)
{
	struct ca_events_table t;
	enum { CAP = 64, KEYS = 200 };
	uint64_t keys[KEYS];
	bool present[KEYS] = { 0 };
	CHECK(ca_events_table_init(&t, CAP) == CA_OK);
	for (int i = 0; i < KEYS; i++)
		keys[i] = (rnd() & 0xff) * 0x10000 + (uint64_t)i + 1; /* many share low bits */
	size_t count = 0;
	for (int step = 0; step < 20000; step++) {
		int k = (int)(rnd() % KEYS);
		uint32_t s = ca_events_table_find(&t, keys[k]);
		CHECK((s != CA_EVENTS_NONE) == present[k]);
		if (present[k]) {
			CHECK(t.keys[s] == keys[k]);
			if (rnd() % 2) {
				ca_events_table_remove(&t, s);
				present[k] = false;
				count--;
			} else {
				ca_events_table_touch(&t, s);
				CHECK(t.tail == s);
			}
		} else if (!ca_events_table_full(&t)) {
			s = ca_events_table_insert(&t, keys[k]);
			CHECK(s != CA_EVENTS_NONE && s < CAP);
			present[k] = true;
			count++;
		}
		CHECK_INT(t.count, count);
	}
	/* Every present key is found, the list has count members. */
	size_t listed = 0;
	for (uint32_t s = t.head; s != CA_EVENTS_NONE; s = t.next[s])
		listed++;
	CHECK_INT(listed, count);
	for (int k = 0; k < KEYS; k++)
		CHECK((ca_events_table_find(&t, keys[k]) != CA_EVENTS_NONE) == present[k]);
	ca_events_table_fini(&t);

	/* LRU order: the oldest is evicted first. */
	CHECK(ca_events_table_init(&t, 3) == CA_OK);
	uint32_t a = ca_events_table_insert(&t, 11), b = ca_events_table_insert(&t, 22);
	ca_events_table_insert(&t, 33);
	CHECK(ca_events_table_full(&t));
	CHECK(ca_events_table_insert(&t, 44) == CA_EVENTS_NONE);
	CHECK(ca_events_table_oldest(&t) == a);
	ca_events_table_touch(&t, a);
	CHECK(ca_events_table_oldest(&t) == b);
	ca_events_table_fini(&t);
}

static struct ca_event_rec *rec_of(const char *uid, const char *obj, long long count,
                                   const char *last)
{
	struct ca_kobj *o = mkev((struct evspec){ .uid = uid, .obj = obj, .count = count, .last = last });
	struct ca_event_rec *r = NULL;
	struct ca_event_fold_options fo = { 0 };
	if (o)
		ca_events_fold(o, &fo, &r);
	ca_kobj_free(o);
	return r;
}

static void test_dedup(void)
{
	struct ca_events_dedup d;
	int64_t delta = -1;
	CHECK(ca_events_dedup_init(&d, 4) == CA_OK);
	struct ca_event_rec *r1 = rec_of("a", NULL, 1, "2026-11-22T00:29:00Z");
	struct ca_event_rec *r1b = rec_of("a", NULL, 1, "2026-11-22T00:29:00Z");
	struct ca_event_rec *r5 = rec_of("a", NULL, 5, "2026-11-22T00:29:00Z");
	struct ca_event_rec *r5t = rec_of("a", NULL, 5, "2026-11-22T00:29:30Z");
	struct ca_event_rec *r3 = rec_of("a", NULL, 3, "2026-11-22T00:29:00Z");
	CHECK(ca_events_dedup_check(&d, r1, &delta) && delta == 1);
	CHECK(!ca_events_dedup_check(&d, r1b, &delta));     /* same count and time */
	CHECK(ca_events_dedup_check(&d, r5, &delta) && delta == 4);
	CHECK(!ca_events_dedup_check(&d, r5, &delta));
	CHECK(!ca_events_dedup_check(&d, r3, &delta));      /* older count */
	CHECK(ca_events_dedup_check(&d, r5t, &delta) && delta == 0); /* time advanced */
	/* Eviction: 4 more uids push "a" out; it is new again. */
	const char *u[] = { "b", "c", "d", "e" };
	for (int i = 0; i < 4; i++) {
		struct ca_event_rec *r = rec_of(u[i], NULL, 1, NULL);
		CHECK(ca_events_dedup_check(&d, r, &delta));
		ca_events_rec_free(r);
	}
	CHECK(ca_events_dedup_check(&d, r5t, &delta) && delta == 5);
	ca_events_rec_free(r1);
	ca_events_rec_free(r1b);
	ca_events_rec_free(r5);
	ca_events_rec_free(r5t);
	ca_events_rec_free(r3);
	ca_events_dedup_fini(&d);
}

static void test_ratelimit(void)
{
	struct ca_events_ratelimit rl;
	CHECK(ca_events_ratelimit_init(&rl, 2, 1.0, 3.0) == CA_OK);
	int64_t t = 5000;
	CHECK(ca_events_ratelimit_allow(&rl, 1, t));
	CHECK(ca_events_ratelimit_allow(&rl, 1, t));
	CHECK(ca_events_ratelimit_allow(&rl, 1, t));
	CHECK(!ca_events_ratelimit_allow(&rl, 1, t));
	CHECK(!ca_events_ratelimit_allow(&rl, 1, t + 500));
	CHECK(ca_events_ratelimit_allow(&rl, 1, t + 1000)); /* one token per second */
	CHECK(!ca_events_ratelimit_allow(&rl, 1, t + 1000));
	/* Another namespace has its own bucket. */
	CHECK(ca_events_ratelimit_allow(&rl, 2, t));
	/* Never more than the burst after a long pause. */
	int ok = 0;
	for (int i = 0; i < 10; i++)
		ok += ca_events_ratelimit_allow(&rl, 1, t + 100000);
	CHECK_INT(ok, 3);
	ca_events_ratelimit_fini(&rl);
	/* rate 0: unlimited. */
	CHECK(ca_events_ratelimit_init(&rl, 2, 0, 0) == CA_OK);
	for (int i = 0; i < 1000; i++)
		CHECK(ca_events_ratelimit_allow(&rl, 1, t));
	ca_events_ratelimit_fini(&rl);
}

static void test_queue(void)
{
	struct ca_events_queue q;
	CHECK(ca_events_queue_init(&q, 3, 0) == CA_OK);
	char uid[8];
	int dropped = 0;
	for (int i = 0; i < 7; i++) {
		snprintf(uid, sizeof uid, "q%d", i);
		dropped += ca_events_queue_push(&q, rec_of(uid, NULL, 1, NULL));
	}
	CHECK_INT(dropped, 4);
	CHECK_INT(q.len, 3);
	CHECK_STR(ca_events_queue_at(&q, 0)->msg.uid, "q4");
	struct ca_event_rec *r = ca_events_queue_pop(&q);
	CHECK_STR(r->msg.uid, "q4");
	ca_events_rec_free(r);
	CHECK_STR(ca_events_queue_peek(&q)->msg.uid, "q5");
	ca_events_queue_fini(&q); /* frees q5, q6 */

	/* A byte cap: the oldest go until the newest fits, and the bytes
	 * held are exact through pushes and pops. */
	struct ca_event_rec *probe = rec_of("b0", NULL, 1, NULL);
	size_t one = probe->bytes;
	CHECK(one > sizeof *probe);
	ca_events_rec_free(probe);
	CHECK(ca_events_queue_init(&q, 100, 3 * one) == CA_OK);
	dropped = 0;
	for (int i = 0; i < 10; i++) {
		snprintf(uid, sizeof uid, "b%d", i);
		dropped += ca_events_queue_push(&q, rec_of(uid, NULL, 1, NULL));
		CHECK(q.bytes <= 3 * one);
	}
	CHECK_INT(dropped, 7);
	CHECK_INT(q.len, 3);
	CHECK_INT(q.bytes, 3 * one);
	CHECK_STR(ca_events_queue_peek(&q)->msg.uid, "b7");
	r = ca_events_queue_pop(&q);
	CHECK_INT(q.bytes, 2 * one);
	ca_events_rec_free(r);
	ca_events_queue_fini(&q);
	/* One record larger than the cap alone is still taken. */
	CHECK(ca_events_queue_init(&q, 100, one / 2) == CA_OK);
	CHECK_INT(ca_events_queue_push(&q, rec_of("huge", NULL, 1, NULL)), 0);
	CHECK_INT(ca_events_queue_push(&q, rec_of("next", NULL, 1, NULL)), 1);
	CHECK_STR(ca_events_queue_peek(&q)->msg.uid, "next");
	ca_events_queue_fini(&q);
}

static void test_agg_unit(void)
{
	struct ca_events_agg a;
	struct ca_event_rec *now_rec, *ev, *out;
	CHECK(ca_events_agg_init(&a, 2, 1000, 0) == CA_OK);
	struct ca_event_rec *r1 = rec_of("a", "p", 1, NULL);
	ca_events_agg_offer(&a, r1, 1, 0, &now_rec, &ev);
	CHECK(now_rec == r1 && ev == NULL);
	ca_events_rec_free(now_rec);
	CHECK_INT(ca_events_agg_next_deadline(&a), 1000);
	ca_events_agg_offer(&a, rec_of("a", "p", 3, NULL), 2, 10, &now_rec, &ev);
	CHECK(now_rec == NULL && ev == NULL);
	CHECK(!ca_events_agg_expire(&a, 999, &out));
	CHECK(ca_events_agg_expire(&a, 1000, &out));
	CHECK(out && out->msg.count == 3);
	ca_events_rec_free(out);
	/* Reopened for one more window; nothing in it -> closes empty. */
	CHECK_INT(ca_events_agg_next_deadline(&a), 2000);
	CHECK(ca_events_agg_expire(&a, 2000, &out) && out == NULL);
	CHECK_INT(ca_events_agg_next_deadline(&a), -1);
	/* Full table: the oldest window closes early. */
	ca_events_agg_offer(&a, rec_of("k1", "o1", 1, NULL), 1, 3000, &now_rec, &ev);
	ca_events_rec_free(now_rec);
	ca_events_agg_offer(&a, rec_of("k1", "o1", 2, NULL), 1, 3001, &now_rec, &ev);
	CHECK(now_rec == NULL);
	ca_events_agg_offer(&a, rec_of("k2", "o2", 1, NULL), 1, 3002, &now_rec, &ev);
	ca_events_rec_free(now_rec);
	ca_events_agg_offer(&a, rec_of("k3", "o3", 1, NULL), 1, 3003, &now_rec, &ev);
	CHECK(now_rec != NULL);
	CHECK(ev != NULL && strcmp(ev->msg.uid, "k1") == 0 && ev->msg.count == 2);
	ca_events_rec_free(now_rec);
	ca_events_rec_free(ev);
	ca_events_agg_fini(&a); /* frees what is pending */

	/* A byte cap on the repeats held: past it the oldest windows close
	 * early and hand their folded record out, oldest first. */
	struct ca_event_rec *probe = rec_of("w9", "o9", 2, NULL); /* the same shape */
	size_t one = probe->bytes;
	ca_events_rec_free(probe);
	CHECK(ca_events_agg_init(&a, 100, 60000, 2 * one + one / 2) == CA_OK);
	char uid[16], obj[16];
	for (int i = 0; i < 5; i++) {
		snprintf(uid, sizeof uid, "w%d", i);
		snprintf(obj, sizeof obj, "o%d", i);
		ca_events_agg_offer(&a, rec_of(uid, obj, 1, NULL), 1, 10 + i, &now_rec, &ev);
		ca_events_rec_free(now_rec); /* the first of each key: published at once */
		ca_events_agg_offer(&a, rec_of(uid, obj, 2, NULL), 1, 20 + i, &now_rec, &ev);
		CHECK(now_rec == NULL && ev == NULL); /* a repeat: held */
	}
	CHECK_INT(a.pending_bytes, 5 * one);
	CHECK(ca_events_agg_over_budget(&a));
	int shed = 0;
	while (ca_events_agg_over_budget(&a)) {
		out = ca_events_agg_shed(&a);
		CHECK(out != NULL);
		if (!out)
			break;
		snprintf(uid, sizeof uid, "w%d", shed);
		CHECK_STR(out->msg.uid, uid);
		CHECK_INT(out->msg.count, 2);
		ca_events_rec_free(out);
		shed++;
	}
	CHECK_INT(shed, 3);
	CHECK_INT(a.pending_bytes, 2 * one);
	CHECK(ca_events_agg_shed(&a) == NULL);
	ca_events_agg_fini(&a);
}

/* ---- pipeline ----------------------------------------------------------- */

static int find_pub(const struct sink *s, const char *uid, long long count)
{
	int n = 0;
	for (size_t i = 0; i < s->n && i < MAX_SEEN; i++)
		if (strcmp(s->uid[i], uid) == 0 && s->count[i] == count)
			n++;
	return n;
}

static void test_relist_dedup(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	/* Initial list. */
	ca_events_on_list_begin(ev, 0);
	deliver(ev, (struct evspec){ .uid = "e1", .rv = "10" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e2", .rv = "11" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e3", .rv = "12", .count = 3 }, CA_WATCH_ADDED, true);
	ca_events_on_synced(ev, 0, "12");
	CHECK_INT(s->n, 3);
	CHECK_STR(s->cluster[0], "c1");
	/* Watch: a new event, then a forced relist delivers all again. */
	deliver(ev, (struct evspec){ .uid = "e4", .rv = "13" }, CA_WATCH_ADDED, false);
	CHECK_INT(s->n, 4);
	ca_events_on_list_begin(ev, 0);
	deliver(ev, (struct evspec){ .uid = "e1", .rv = "10" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e2", .rv = "11" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e3", .rv = "12", .count = 3 }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e4", .rv = "13" }, CA_WATCH_ADDED, true);
	/* ... plus one created during the gap, and one whose count advanced. */
	deliver(ev, (struct evspec){ .uid = "e5", .rv = "15" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "e2", .rv = "16", .count = 2 }, CA_WATCH_ADDED, true);
	ca_events_on_synced(ev, 0, "16");
	CHECK_INT(s->n, 6);
	CHECK_INT(find_pub(s, "e5", 1), 1);
	CHECK_INT(find_pub(s, "e2", 2), 1);
	for (int i = 1; i <= 4; i++) {
		char u[8];
		snprintf(u, sizeof u, "e%d", i);
		CHECK_INT(find_pub(s, u, i == 3 ? 3 : 1), 1);
	}
	/* A reconnect replays a MODIFIED already seen: nothing. */
	deliver(ev, (struct evspec){ .uid = "e2", .rv = "16", .count = 2 }, CA_WATCH_MODIFIED, false);
	CHECK_INT(s->n, 6);
	/* A DELETED is ignored. */
	deliver(ev, (struct evspec){ .uid = "e9", .rv = "17" }, CA_WATCH_DELETED, false);
	CHECK_INT(s->n, 6);
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.received, 11); /* the DELETED is not counted */
	CHECK_INT(st.published, 6);
	CHECK_INT(st.deduplicated, 5);
	CHECK_INT(st.dropped, 0);
	CHECK_STR(ca_events_resume_rv(ev, 0), "17");
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

static void test_count_1_to_5(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	/* Without a window: every count is published. */
	base_config(&cfg);
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	for (int c = 1; ev && c <= 5; c++) {
		char rv[8];
		snprintf(rv, sizeof rv, "%d", 20 + c);
		deliver(ev, (struct evspec){ .uid = "x", .count = c, .rv = rv },
		        c == 1 ? CA_WATCH_ADDED : CA_WATCH_MODIFIED, false);
	}
	CHECK_INT(s->n, 5);
	for (int c = 1; c <= 5; c++)
		CHECK_INT(find_pub(s, "x", c), 1);
	ca_events_free(ev);
	ca_config_fini(&cfg);

	/* With a 60 s window: the first at once, the rest folded into one
	 * message with the final count when the window closes. */
	memset(s, 0, sizeof *s);
	base_config(&cfg);
	cfg.events.dedup_window_ms = 60000;
	reset_clock();
	ev = mk(&cfg, s);
	for (int c = 1; ev && c <= 5; c++) {
		char rv[8];
		snprintf(rv, sizeof rv, "%d", 20 + c);
		clk.mono += 1000;
		deliver(ev, (struct evspec){ .uid = "x", .count = c, .rv = rv,
		                             .first = "2026-11-22T00:20:00Z" },
		        c == 1 ? CA_WATCH_ADDED : CA_WATCH_MODIFIED, false);
	}
	CHECK_INT(s->n, 1);
	CHECK_INT(find_pub(s, "x", 1), 1);
	clk.mono += 30000;
	ca_events_tick(ev);
	CHECK_INT(s->n, 1);
	clk.mono += 31000;
	ca_events_tick(ev);
	CHECK_INT(s->n, 2);
	CHECK_INT(find_pub(s, "x", 5), 1);
	int64_t first;
	ca_parse_rfc3339("2026-11-22T00:20:00Z", &first);
	CHECK_INT(s->first_ts[1], first);
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.aggregated, 4);
	CHECK_INT(st.published, 2);
	/* The window reopened; a quiet period closes it with nothing more. */
	clk.mono += 61000;
	ca_events_tick(ev);
	CHECK_INT(s->n, 2);
	/* Next occurrence after that: published at once again. */
	deliver(ev, (struct evspec){ .uid = "x", .count = 6, .rv = "30" }, CA_WATCH_MODIFIED, false);
	CHECK_INT(s->n, 3);
	CHECK_INT(find_pub(s, "x", 6), 1);
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

static void test_aggregation_uids(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.dedup_window_ms = 10000;
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	/* Three Events (different uids) about the same pod and reason, and one
	 * about another pod. */
	deliver(ev, (struct evspec){ .uid = "a", .obj = "web", .first = "2026-11-22T00:10:00Z" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "b", .obj = "web", .first = "2026-11-22T00:05:00Z" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "c", .obj = "web", .count = 2, .first = "2026-11-22T00:12:00Z" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "d", .obj = "db" }, CA_WATCH_ADDED, false);
	/* Same pod, other reason: its own key. */
	deliver(ev, (struct evspec){ .uid = "e", .obj = "web", .reason = "Unhealthy" }, CA_WATCH_ADDED, false);
	CHECK_INT(s->n, 3);
	CHECK_INT(find_pub(s, "a", 1), 1);
	CHECK_INT(find_pub(s, "d", 1), 1);
	CHECK_INT(find_pub(s, "e", 1), 1);
	clk.mono += 10000;
	ca_events_tick(ev);
	CHECK_INT(s->n, 4);
	/* Latest Event (c, count 2) plus one occurrence of b. */
	CHECK_INT(find_pub(s, "c", 3), 1);
	int64_t first;
	ca_parse_rfc3339("2026-11-22T00:05:00Z", &first);
	CHECK_INT(s->first_ts[3], first);
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

static void test_filters(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	reset_clock();
	set_list(&cfg.events.exclude_namespaces, "kube-system", NULL);
	set_list(&cfg.events.exclude_reasons, "Unhealthy", NULL);
	set_list(&cfg.events.include_kinds, "Pod", "Node");
	set_str(&cfg.events.exclude_message_regex, "^ignore( me)?$");
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	deliver(ev, (struct evspec){ .uid = "ok1" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "ns", .ns = "kube-system" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "normal", .type = "Normal" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "reason", .reason = "Unhealthy" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "kind", .kind = "Deployment" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "ok2", .kind = "Node", .reason = "Rebooted" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "msg", .msg = "ignore me" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "ok3", .msg = "do not ignore me" }, CA_WATCH_ADDED, false);
	CHECK_INT(s->n, 3);
	CHECK_INT(find_pub(s, "ok1", 1) + find_pub(s, "ok2", 1) + find_pub(s, "ok3", 1), 3);
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.filtered, 5);
	ca_events_free(ev);
	ca_config_fini(&cfg);

	/* Include lists, message regex, min_severity, all types. */
	memset(s, 0, sizeof *s);
	base_config(&cfg);
	reset_clock();
	set_list(&cfg.events.include_types, NULL, NULL); /* [] = all */
	set_list(&cfg.events.namespaces, "prod", "stage");
	set_list(&cfg.events.include_reasons, "BackOff", "NodeNotReady");
	set_str(&cfg.events.message_regex, "container|[Nn]ode");
	set_str(&cfg.events.min_severity, "warning");
	ev = mk(&cfg, s);
	if (!ev)
		goto out;
	CHECK_INT(ca_events_reflector_count(ev), 2);
	CHECK_STR(ca_events_reflector_path(ev, 0), "/api/v1/namespaces/prod/events");
	CHECK_STR(ca_events_reflector_path(ev, 1), "/api/v1/namespaces/stage/events");
	deliver(ev, (struct evspec){ .uid = "p1", .ns = "prod" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "dev", .ns = "dev" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "r", .ns = "prod", .reason = "Killing" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "m", .ns = "prod", .msg = "nothing here" }, CA_WATCH_ADDED, false);
	/* Normal BackOff: info, below min_severity. */
	deliver(ev, (struct evspec){ .uid = "sev", .ns = "prod", .type = "Normal" }, CA_WATCH_ADDED, false);
	/* Normal NodeNotReady: a failure even when Normal (critical). */
	deliver(ev, (struct evspec){ .uid = "nnr", .ns = "stage", .type = "Normal", .reason = "NodeNotReady",
	                             .kind = "Node", .msg = "Node node-a status is now: NodeNotReady" },
	        CA_WATCH_ADDED, false);
	CHECK_INT(s->n, 2);
	CHECK_INT(find_pub(s, "p1", 1), 1);
	CHECK_INT(find_pub(s, "nnr", 1), 1);
	CHECK_STR(s->severity[1], "critical");
	CHECK_STR(s->category[1], "node");
	ca_events_free(ev);
	ca_config_fini(&cfg);

	/* Invalid regexes and values stop start-up with the key named. */
	const char *keys[] = { "message_regex", "exclude_message_regex" };
	for (int k = 0; k < 2; k++) {
		base_config(&cfg);
		set_str(k == 0 ? &cfg.events.message_regex : &cfg.events.exclude_message_regex, "([unclosed");
		char err[256] = "";
		ev = NULL;
		CHECK(ca_events_new_internal(&ev, NULL, NULL, &cfg, "c1", &the_sink, s, &fake, err,
		                             sizeof err) == CA_EINVAL);
		CHECK(ev == NULL);
		char want[64];
		snprintf(want, sizeof want, "events.%s", keys[k]);
		CHECK(strstr(err, want) != NULL);
		CHECK(strstr(err, "([unclosed") != NULL);
		ca_config_fini(&cfg);
	}
	base_config(&cfg);
	set_str(&cfg.events.min_severity, "loud");
	char err[256] = "";
	CHECK(ca_events_new_internal(&ev, NULL, NULL, &cfg, "c1", &the_sink, s, &fake, err, sizeof err) == CA_EINVAL);
	CHECK(strstr(err, "events.min_severity") != NULL);
	ca_config_fini(&cfg);
	base_config(&cfg);
	/* A namespace that would change the API path is refused where every
	 * setting is validated, the config loader (so --check-config sees it). */
	set_list(&cfg.events.namespaces, "ok", "../../secrets");
	CHECK(ca_config_validate(&cfg, err, sizeof err) == CA_EINVAL);
	CHECK(strstr(err, "events.namespaces") != NULL);
	ca_config_fini(&cfg);
	base_config(&cfg);
	set_str(&cfg.events.api, "events/v2");
	CHECK(ca_events_new_internal(&ev, NULL, NULL, &cfg, "c1", &the_sink, s, &fake, err, sizeof err) == CA_EINVAL);
	CHECK(strstr(err, "events.api") != NULL);
	ca_config_fini(&cfg);
	/* events.k8s.io paths. */
	base_config(&cfg);
	set_str(&cfg.events.api, "events.k8s.io/v1");
	ev = mk(&cfg, s);
	if (ev)
		CHECK_STR(ca_events_reflector_path(ev, 0), "/apis/events.k8s.io/v1/events");
	ca_events_free(ev);
out:
	ca_config_fini(&cfg);
	free(s);
}

static void test_since(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	reset_clock(); /* now = 00:30:00, since = 5m */
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	ca_events_on_list_begin(ev, 0);
	deliver(ev, (struct evspec){ .uid = "old", .last = "2026-11-22T00:10:00Z" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "edge", .last = "2026-11-22T00:24:59Z" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "new", .last = "2026-11-22T00:26:00Z" }, CA_WATCH_ADDED, true);
	ca_events_on_synced(ev, 0, "50");
	CHECK_INT(s->n, 1);
	CHECK_INT(find_pub(s, "new", 1), 1);
	/* Through the watch, age does not matter: it is new. */
	deliver(ev, (struct evspec){ .uid = "oldw", .last = "2026-11-22T00:10:00Z", .rv = "51" }, CA_WATCH_ADDED, false);
	CHECK_INT(find_pub(s, "oldw", 1), 1);
	/* A relist 20 minutes later: the cutoff is since before the last
	 * progress (00:30), so an event of 00:40 made during the gap is kept,
	 * and one of 00:20 is not. */
	clk.unix_ms += 20 * 60 * 1000;
	ca_events_on_list_begin(ev, 0);
	deliver(ev, (struct evspec){ .uid = "gap", .last = "2026-11-22T00:40:00Z" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "older", .last = "2026-11-22T00:20:00Z" }, CA_WATCH_ADDED, true);
	deliver(ev, (struct evspec){ .uid = "new", .last = "2026-11-22T00:26:00Z" }, CA_WATCH_ADDED, true);
	ca_events_on_synced(ev, 0, "60");
	CHECK_INT(find_pub(s, "gap", 1), 1);
	CHECK_INT(find_pub(s, "older", 1), 0);
	CHECK_INT(find_pub(s, "new", 1), 1);
	CHECK_INT(s->n, 3);
	ca_events_free(ev);
	ca_config_fini(&cfg);
	/* since 0: nothing skipped. */
	memset(s, 0, sizeof *s);
	base_config(&cfg);
	cfg.events.since_ms = 0;
	reset_clock();
	ev = mk(&cfg, s);
	ca_events_on_list_begin(ev, 0);
	deliver(ev, (struct evspec){ .uid = "old", .last = "2020-01-01T00:00:00Z" }, CA_WATCH_ADDED, true);
	ca_events_on_synced(ev, 0, "5");
	CHECK_INT(s->n, 1);
	ca_events_free(ev);
out:
	ca_config_fini(&cfg);
	free(s);
}

static void test_queue_pipeline(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.buffer_size = 5;
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	/* NATS down: events wait, the oldest are dropped past the buffer. */
	s->mode = 1;
	for (int i = 0; i < 8; i++) {
		char uid[8], rv[8];
		snprintf(uid, sizeof uid, "n%d", i);
		snprintf(rv, sizeof rv, "%d", 100 + i);
		deliver(ev, (struct evspec){ .uid = uid, .rv = rv }, CA_WATCH_ADDED, false);
	}
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.queue_size, 5);
	CHECK_INT(st.queue_capacity, 5);
	CHECK_INT(st.dropped, 3);
	CHECK_INT(s->n, 0);
	CHECK(!ca_events_paused(ev)); /* NATS down: keep reading */
	/* The resume point is before the oldest still queued (n3, rv 103). */
	CHECK_STR(ca_events_resume_rv(ev, 0), "102");
	/* NATS is back. */
	s->mode = 0;
	ca_events_flush(ev);
	CHECK_INT(s->n, 5);
	for (int i = 3; i < 8; i++) {
		char uid[8];
		snprintf(uid, sizeof uid, "n%d", i);
		CHECK_INT(find_pub(s, uid, 1), 1);
		CHECK_STR(s->uid[i - 3], uid); /* in order */
	}
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.queue_size, 0);
	CHECK_INT(st.published, 5);
	CHECK_STR(ca_events_resume_rv(ev, 0), "107");
	/* A sink that refuses for good: dropped, not retried forever. */
	s->mode = 3;
	deliver(ev, (struct evspec){ .uid = "bad", .rv = "200" }, CA_WATCH_ADDED, false);
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.dropped, 4);
	CHECK_INT(st.queue_size, 0);

	/* Metrics and health render. */
	struct ca_buf b;
	struct ca_prom p;
	ca_buf_init(&b, 0);
	ca_prom_init(&p, &b, "c1");
	ca_events_render_metrics(ev, &p);
	CHECK(b.data && strstr(b.data, "agent_events_dropped_total{cluster_id=\"c1\"} 4") != NULL);
	CHECK(b.data && strstr(b.data, "agent_event_queue_size{cluster_id=\"c1\"} 0") != NULL);
	CHECK(b.data && strstr(b.data, "# TYPE agent_events_published_total counter") != NULL);
	ca_buf_reset(&b);
	ca_events_health_json(ev, &b);
	struct ca_kobj *h = NULL;
	CHECK(ca_kobj_parse(b.data, b.len, &h) == CA_OK);
	CHECK_INT(ca_kobj_int(h, "dropped", -1), 4);
	CHECK_INT(ca_kobj_int(h, "published", -1), 5);
	CHECK_STR(ca_kobj_str(h, "api"), "core/v1");
	ca_kobj_free(h);
	ca_buf_fini(&b);
	CHECK(!ca_events_stalled(ev, 1000)); /* no reflector, nothing to stall */
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

static void test_backpressure(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.buffer_size = 8;
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	/* NATS up but slow: it takes 2, then pushes back. */
	s->mode = 2;
	s->budget = 2;
	int i = 0;
	for (; i < 9 && !ca_events_paused(ev); i++) {
		char uid[8];
		snprintf(uid, sizeof uid, "b%d", i);
		deliver(ev, (struct evspec){ .uid = uid }, CA_WATCH_ADDED, false);
	}
	CHECK(ca_events_paused(ev));
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.queue_size, 7); /* paused once past 75% */
	CHECK_INT(st.dropped, 0);
	/* NATS catches up: below 25% the watch resumes. */
	s->budget = 100;
	ca_events_flush(ev);
	CHECK(!ca_events_paused(ev));
	CHECK_INT(s->n, 9);
	/* Paused again, then NATS goes quiet for good: after a second the
	 * watch resumes and drops oldest rather than stall. */
	s->budget = 1;
	for (int k = 0; k < 9 && !ca_events_paused(ev); k++) {
		char uid[8];
		snprintf(uid, sizeof uid, "c%d", k);
		deliver(ev, (struct evspec){ .uid = uid }, CA_WATCH_ADDED, false);
	}
	CHECK(ca_events_paused(ev));
	clk.mono += 1500;
	ca_events_tick(ev);
	CHECK(!ca_events_paused(ev));
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

static void test_rate_pipeline(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.namespace_rate = 1;
	cfg.events.namespace_burst = 2;
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	for (int i = 0; i < 5; i++) {
		char uid[8];
		snprintf(uid, sizeof uid, "a%d", i);
		deliver(ev, (struct evspec){ .uid = uid, .ns = "loud" }, CA_WATCH_ADDED, false);
	}
	deliver(ev, (struct evspec){ .uid = "q0", .ns = "quiet" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "q1", .ns = "quiet" }, CA_WATCH_ADDED, false);
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.rate_limited, 3);
	CHECK_INT(s->n, 4);
	CHECK_INT(find_pub(s, "q0", 1) + find_pub(s, "q1", 1), 2);
	clk.mono += 1000;
	deliver(ev, (struct evspec){ .uid = "a9", .ns = "loud" }, CA_WATCH_ADDED, false);
	CHECK_INT(find_pub(s, "a9", 1), 1);
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

/* ---- state file ---------------------------------------------------------- */

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "wb");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

static void test_state_file(void)
{
	char dir[] = "/tmp/test_events_XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[256], err[256];
	snprintf(path, sizeof path, "%s/state", dir);
	struct ca_events_state_entry in[2], out[4];
	size_t n = 0;
	int64_t saved = 0;
	memset(in, 0, sizeof in);
	ca_strlcpy(in[0].key, "/api/v1/events", sizeof in[0].key);
	ca_strlcpy(in[0].rv, "4711", sizeof in[0].rv);
	ca_strlcpy(in[1].key, "/api/v1/namespaces/prod/events", sizeof in[1].key);
	ca_strlcpy(in[1].rv, "opaque-Rv_1", sizeof in[1].rv);

	CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_ENOTFOUND);
	CHECK(ca_events_state_write(path, in, 2, 1234567) == CA_OK);
	CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_OK);
	CHECK_INT(n, 2);
	CHECK_INT(saved, 1234567);
	CHECK_STR(out[0].key, "/api/v1/events");
	CHECK_STR(out[0].rv, "4711");
	CHECK_STR(out[1].rv, "opaque-Rv_1");
	/* No temporary file is left behind. */
	char tmp[300];
	snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
	CHECK(access(tmp, F_OK) != 0);

	const char *corrupt[] = {
		"",
		"garbage\n",
		"# collect-agent events state v1\n",                             /* saved_at missing */
		"# collect-agent events state v1\nsaved_at 12\nrv /a 1 2\n",      /* space in rv */
		"# collect-agent events state v1\nsaved_at x\n",
		"# collect-agent events state v1\nsaved_at 12\nrv /a\n",
		"# collect-agent events state v1\nsaved_at 12\nrv /a 5",         /* no final newline */
		"# collect-agent events state v1\nsaved_at 12\nwhat 1\n",
		"# collect-agent events state v1\nsaved_at -3\n",
		("\x7f" "ELF\x01\x02"), /* one string: the split ends the hex escape */
	};
	for (size_t i = 0; i < sizeof corrupt / sizeof corrupt[0]; i++) {
		write_file(path, corrupt[i]);
		enum ca_err rc = ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err);
		if (rc != CA_EPROTO)
			fprintf(stderr, "corrupt state %zu read as %d\n", i, rc);
		CHECK(rc == CA_EPROTO);
		CHECK_INT(n, 0);
	}
	/* A 128-byte resourceVersion is over the limit. */
	char longrv[512];
	memset(longrv, 0, sizeof longrv);
	snprintf(longrv, sizeof longrv, "%s", "# collect-agent events state v1\nsaved_at 1\nrv /a ");
	memset(longrv + strlen(longrv), '7', 128);
	longrv[strlen(longrv)] = '\n';
	write_file(path, longrv);
	CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_EPROTO);
	/* Binary NUL in the middle. */
	int fd = open(path, O_WRONLY | O_TRUNC);
	CHECK(fd >= 0);
	if (fd >= 0) {
		CHECK(write(fd, "# collect\0", 10) == 10);
		close(fd);
	}
	CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_EPROTO);
	/* A directory is unreadable as a file. */
	CHECK(ca_events_state_read(dir, out, 4, &n, &saved, err, sizeof err) != CA_OK);
	/* A FIFO is refused at once (open() would block for ever on it). */
	char fifo[300];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	CHECK(mkfifo(fifo, 0600) == 0);
	CHECK(ca_events_state_read(fifo, out, 4, &n, &saved, err, sizeof err) == CA_EPROTO);
	CHECK(strstr(err, "FIFO") != NULL);
	unlink(fifo);

	/* The writer thread: what is submitted is on disk after flush; a FIFO
	 * squatting on the temporary name is replaced, not written through
	 * (that would block); a write that cannot happen says why in words. */
	unlink(path);
	struct ca_events_state_writer *w = NULL;
	CHECK_INT(ca_events_state_writer_new(&w, path), CA_OK);
	if (w) {
		snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
		CHECK(mkfifo(tmp, 0600) == 0);
		CHECK_INT(ca_events_state_writer_submit(w, in, 2, 42), CA_OK);
		CHECK_INT(ca_events_state_writer_flush(w), CA_OK);
		CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_OK);
		CHECK_INT(n, 2);
		CHECK_INT(saved, 42);
		uint64_t writes = 0;
		char werr[256];
		ca_events_state_writer_status(w, werr, sizeof werr, &writes, NULL);
		CHECK_INT(writes, 1);
		CHECK_STR(werr, "");
		/* Many submits before the thread runs: the last one wins. */
		for (int i = 0; i < 100; i++)
			CHECK_INT(ca_events_state_writer_submit(w, in, 1, 100 + i), CA_OK);
		CHECK_INT(ca_events_state_writer_flush(w), CA_OK);
		CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_OK);
		CHECK_INT(saved, 199);
		CHECK_INT(n, 1);
		ca_events_state_writer_free(w);
	}
	char nodir[300];
	snprintf(nodir, sizeof nodir, "%s/missing-dir/state", dir);
	CHECK_INT(ca_events_state_writer_new(&w, nodir), CA_OK);
	if (w) {
		CHECK_INT(ca_events_state_writer_submit(w, in, 1, 7), CA_OK);
		CHECK_INT(ca_events_state_writer_flush(w), CA_EIO);
		char werr[256];
		ca_events_state_writer_status(w, werr, sizeof werr, NULL, NULL);
		CHECK(strstr(werr, "No such file or directory") != NULL);
		ca_events_state_writer_free(w);
	}

	/* The pipeline keeps the resume point in the file and a new watcher
	 * starts from it. */
	unlink(path);
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	set_str(&cfg.events.state_file, path);
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (ev) {
		ca_events_on_list_begin(ev, 0);
		deliver(ev, (struct evspec){ .uid = "s1", .rv = "90" }, CA_WATCH_ADDED, true);
		ca_events_on_synced(ev, 0, "91");
		deliver(ev, (struct evspec){ .uid = "s2", .rv = "92" }, CA_WATCH_ADDED, false);
		ca_events_on_resource_version(ev, 0, "92");
		CHECK(ca_events_save_state(ev) == CA_OK);
		CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_OK);
		CHECK_INT(n, 1);
		CHECK_STR(out[0].key, "/api/v1/events");
		CHECK_STR(out[0].rv, "92");
		CHECK_INT(saved, clk.unix_ms);
		/* Events stuck in the queue hold the resume point back, whichever
		 * order the reflector reports the object and its version. */
		s->mode = 1;
		ca_events_on_resource_version(ev, 0, "93");
		deliver(ev, (struct evspec){ .uid = "s3", .rv = "93" }, CA_WATCH_ADDED, false);
		deliver(ev, (struct evspec){ .uid = "s4", .rv = "94" }, CA_WATCH_ADDED, false);
		ca_events_on_resource_version(ev, 0, "94");
		CHECK_STR(ca_events_resume_rv(ev, 0), "92");
		/* Not yet due: the file is written at most every two seconds. */
		clk.mono += 10;
		ca_events_tick(ev);
	}
	ca_events_free(ev); /* final write: resume before s3 */
	CHECK(ca_events_state_read(path, out, 4, &n, &saved, err, sizeof err) == CA_OK);
	CHECK_STR(out[0].rv, "92");
	ev = mk(&cfg, s);
	if (ev)
		CHECK_STR(ca_events_resume_rv(ev, 0), "92");
	ca_events_free(ev);
	/* A corrupt file: a warning and a normal start. */
	write_file(path, "garbage\n");
	ev = mk(&cfg, s);
	CHECK(ev != NULL);
	if (ev)
		CHECK_STR(ca_events_resume_rv(ev, 0), "");
	ca_events_free(ev);
	/* An unwritable location: the watcher goes on and says why in /health. */
	char badpath[300];
	snprintf(badpath, sizeof badpath, "%s/no/such/dir/state", dir);
	set_str(&cfg.events.state_file, badpath);
	s->mode = 0;
	ev = mk(&cfg, s);
	if (ev) {
		deliver(ev, (struct evspec){ .uid = "w1", .rv = "300" }, CA_WATCH_ADDED, false);
		CHECK(ca_events_save_state(ev) != CA_OK);
		CHECK_INT(find_pub(s, "w1", 1), 1);
		struct ca_buf b;
		ca_buf_init(&b, 0);
		ca_events_health_json(ev, &b);
		CHECK(b.data && strstr(b.data, "cannot write the state file") != NULL);
		ca_buf_fini(&b);
	}
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
	unlink(path);
	rmdir(dir);
}

static void test_msg_id(void)
{
	struct ca_msg_event m = { .uid = "7a348571-07da", .count = 5, .resource_version = "4711" };
	char id[64];
	CHECK(ca_events_msg_id(&m, id, sizeof id) == CA_OK);
	CHECK_STR(id, "7a348571-07da-4711");
	m.resource_version = "";
	CHECK(ca_events_msg_id(&m, id, sizeof id) == CA_OK);
	CHECK_STR(id, "7a348571-07da-c5");
	char small[8];
	CHECK(ca_events_msg_id(&m, small, sizeof small) == CA_ETOOBIG);
	CHECK(strlen(small) == 7);
}

/* Two different messages must never share a Nats-Msg-Id (JetStream would
 * drop the second). An aggregated message carries other Events'
 * occurrences in its count, and a later real update of the same Event can
 * reach that count; a lastTimestamp-only update keeps its count. */
static void test_msg_ids_unique(void)
{
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.dedup_window_ms = 60000;
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	if (!ev)
		goto out;
	deliver(ev, (struct evspec){ .uid = "A", .obj = "web", .rv = "1" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "A", .obj = "web", .rv = "2", .count = 2,
	                             .last = "2026-11-22T00:29:10Z" }, CA_WATCH_MODIFIED, false);
	deliver(ev, (struct evspec){ .uid = "B", .obj = "web", .rv = "3" }, CA_WATCH_ADDED, false);
	clk.mono += 60000;
	ca_events_tick(ev);
	deliver(ev, (struct evspec){ .uid = "B", .obj = "web", .rv = "4", .count = 2,
	                             .last = "2026-11-22T00:29:20Z" }, CA_WATCH_MODIFIED, false);
	clk.mono += 60000;
	ca_events_tick(ev);
	deliver(ev, (struct evspec){ .uid = "C", .obj = "db", .rv = "5" }, CA_WATCH_ADDED, false);
	deliver(ev, (struct evspec){ .uid = "C", .obj = "db", .rv = "6",
	                             .last = "2026-11-22T00:29:30Z" }, CA_WATCH_MODIFIED, false);
	clk.mono += 60000;
	ca_events_tick(ev);
	CHECK(s->n >= 4);
	for (size_t i = 0; i < s->n && i < MAX_SEEN; i++)
		for (size_t j = i + 1; j < s->n && j < MAX_SEEN; j++) {
			CHECK(strcmp(s->msg_id[i], s->msg_id[j]) != 0);
			if (strcmp(s->msg_id[i], s->msg_id[j]) == 0)
				fprintf(stderr, "   messages %zu and %zu share the id %s\n", i, j, s->msg_id[i]);
		}
out:
	ca_events_free(ev);
	ca_config_fini(&cfg);
	free(s);
}

/* ---- the spool behind the queue ---------------------------------------- */

static void test_spool_pipeline(void)
{
	char dir[] = "/tmp/test_events_spool_XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char spool[300], state[300];
	snprintf(spool, sizeof spool, "%s/spool", dir);
	snprintf(state, sizeof state, "%s/state", dir);
	struct ca_config cfg;
	struct sink *s = calloc(1, sizeof *s);
	base_config(&cfg);
	cfg.events.buffer_size = 4;
	set_str(&cfg.events.spool_dir, spool);
	set_str(&cfg.events.state_file, state);
	reset_clock();
	struct ca_events *ev = mk(&cfg, s);
	struct ca_events_state_entry out[4];
	size_t n = 0;
	int64_t saved = 0;
	char err[256], uid[32], rv[32];
	if (!ev)
		goto done;
	ca_events_on_list_begin(ev, 0);
	ca_events_on_synced(ev, 0, "100");
	/* NATS down: 4 wait in the ring, the 16 before them on disk. */
	s->mode = 1;
	for (int i = 1; i <= 20; i++) {
		snprintf(uid, sizeof uid, "e%02d", i);
		snprintf(rv, sizeof rv, "%d", 100 + i);
		deliver(ev, (struct evspec){ .uid = uid, .rv = rv }, CA_WATCH_ADDED, false);
		ca_events_on_resource_version(ev, 0, rv);
	}
	struct ca_events_stats st;
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.queue_size, 4);
	CHECK_INT(st.dropped, 0);
	/* Spooled events are not handed to the sink: the state file stays
	 * before the first of them. */
	CHECK_STR(ca_events_resume_rv(ev, 0), "100");
	CHECK(ca_events_save_state(ev) == CA_OK);
	CHECK(ca_events_state_read(state, out, 4, &n, &saved, err, sizeof err) == CA_OK);
	CHECK_STR(out[0].rv, "100");
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_events_health_json(ev, &b);
	CHECK_CONTAINS(b.data, "\"spool\":{\"dir\":");
	CHECK_CONTAINS(b.data, "\"records\":16,");
	ca_buf_fini(&b);
	/* NATS back: the spool in order, then the ring. */
	s->mode = 0;
	ca_events_flush(ev);
	CHECK_INT(s->n, 20);
	for (size_t i = 0; i < s->n && i < 20; i++) {
		snprintf(uid, sizeof uid, "e%02zu", i + 1);
		CHECK_STR(s->uid[i], uid);
		CHECK_STR(s->cluster[i], "c1");
	}
	CHECK_STR(ca_events_resume_rv(ev, 0), "120");

	/* NATS down again, and the agent stops: the ring goes to disk too;
	 * the state file stays before all of it. */
	s->mode = 1;
	for (int i = 21; i <= 30; i++) {
		snprintf(uid, sizeof uid, "e%02d", i);
		snprintf(rv, sizeof rv, "%d", 100 + i);
		deliver(ev, (struct evspec){ .uid = uid, .rv = rv }, CA_WATCH_ADDED, false);
		ca_events_on_resource_version(ev, 0, rv);
	}
	ca_events_free(ev);
	CHECK(ca_events_state_read(state, out, 4, &n, &saved, err, sizeof err) == CA_OK);
	CHECK_STR(out[0].rv, "120");
	/* The next run: resumes from the state file, replays the spool first. */
	s->n = 0;
	s->mode = 0;
	ev = mk(&cfg, s);
	if (!ev)
		goto done;
	CHECK_STR(ca_events_resume_rv(ev, 0), "120");
	/* The resumed watch sends e21..e30 again: the spool has them, the
	 * dedup memory learnt them from it, so they are not queued twice. */
	for (int i = 21; i <= 30; i++) {
		snprintf(uid, sizeof uid, "e%02d", i);
		snprintf(rv, sizeof rv, "%d", 100 + i);
		deliver(ev, (struct evspec){ .uid = uid, .rv = rv }, CA_WATCH_ADDED, false);
	}
	deliver(ev, (struct evspec){ .uid = "e31", .rv = "131" }, CA_WATCH_ADDED, false);
	ca_events_flush(ev);
	CHECK_INT(s->n, 11);
	for (size_t i = 0; i < s->n && i < 11; i++) {
		snprintf(uid, sizeof uid, "e%02zu", i + 21);
		CHECK_STR(s->uid[i], uid);
	}
	CHECK_STR(ca_events_resume_rv(ev, 0), "131");
	ca_events_get_stats(ev, &st);
	CHECK_INT(st.deduplicated, 10);
	ca_events_free(ev);
done:
	ca_config_fini(&cfg);
	free(s);
	char cmd[400];
	snprintf(cmd, sizeof cmd, "%s/cursor", spool);
	unlink(cmd);
	rmdir(spool);
	unlink(state);
	rmdir(dir);
}

int main(void)
{
	ca_log_configure(CA_LOG_ERROR, true); /* the corrupt-state warnings are expected */
	test_fold_samples();
	test_fold_bad_input();
	test_truncation();
	test_table();
	test_dedup();
	test_ratelimit();
	test_queue();
	test_agg_unit();
	test_relist_dedup();
	test_count_1_to_5();
	test_aggregation_uids();
	test_msg_ids_unique();
	test_filters();
	test_since();
	test_queue_pipeline();
	test_backpressure();
	test_rate_pipeline();
	test_state_file();
	test_spool_pipeline();
	test_msg_id();
	return check_report();
}
