/* bench_watch_parse: throughput of the WATCH stream parser (kube/watch.h).
 *
 * Builds N realistic core/v1 Event watch lines in memory (~1.2 KB each,
 * managedFields included, shaped like tests/fixtures/kube-api-samples/
 * watch-events-stream.jsonl), then parses them twice: fed one event per
 * feed (how a real API server delivers them: one HTTP/1.1 chunk or HTTP/2
 * DATA frame per event) and fed in 64 KiB reads. The callback reads the
 * fields a consumer reads, so the cost of the view is included. Rates are
 * per CPU-second of this process (CLOCK_PROCESS_CPUTIME_ID), i.e. "on one
 * core", so a busy build machine does not skew them.
 *
 * Then the bare parsers are compared on the same lines (whole lines,
 * managedFields included, no view reads): jansson's json_loadb (a tree per
 * line, freed), and ca_kube_json_parse, which the watch parser uses: a tape
 * written into one arena reused for every line.
 *
 * usage: bench_watch_parse [N]   (default 200000) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "core/buf.h"
#include "kube/json_parse.h"
#include "kube/kobj.h"
#include "kube/watch.h"

struct tally {
	uint64_t events;
	uint64_t count_sum;
	size_t uid_bytes;
};

static bool on_event(void *arg, enum ca_watch_event_type type, const struct ca_kobj *o)
{
	struct tally *t = arg;
	const char *uid = ca_kobj_str(o, "metadata.uid");
	t->uid_bytes += uid ? strlen(uid) : 0;
	t->count_sum += (uint64_t)ca_kobj_int(o, "count", 0);
	t->count_sum += ca_kobj_str(o, "involvedObject.name") != NULL;
	t->count_sum += ca_kobj_str(o, "reason") != NULL;
	t->events += type == CA_WATCH_EVENT_ADDED || type == CA_WATCH_EVENT_MODIFIED;
	return true;
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static enum ca_err append_event(struct ca_buf *b, size_t i)
{
	static const char *const reasons[] = {"BackOff", "Unhealthy", "FailedScheduling",
	                                      "OOMKilling", "Pulled", "FailedMount"};
	const char *reason = reasons[i % 6];
	unsigned long rv = 100000 + (unsigned long)i;
	return ca_buf_printf(
		b,
		"{\"type\":\"%s\",\"object\":{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":"
		"{\"name\":\"web-%zx-%zu.17f0a1b2c3d4%04zx\",\"namespace\":\"shop-%zu\",\"uid\":"
		"\"7a348571-07da-4f3d-%04zx-%012zx\",\"resourceVersion\":\"%lu\","
		"\"creationTimestamp\":\"2026-11-22T00:26:06Z\",\"managedFields\":[{\"manager\":"
		"\"kubelet\",\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":"
		"\"2026-11-22T00:26:06Z\",\"fieldsType\":\"FieldsV1\",\"fieldsV1\":{\"f:count\":{},"
		"\"f:firstTimestamp\":{},\"f:involvedObject\":{},\"f:lastTimestamp\":{},"
		"\"f:message\":{},\"f:reason\":{},\"f:reportingComponent\":{},"
		"\"f:reportingInstance\":{},\"f:source\":{\"f:component\":{},\"f:host\":{}},"
		"\"f:type\":{}}}]},\"involvedObject\":{\"kind\":\"Pod\",\"namespace\":\"shop-%zu\","
		"\"name\":\"web-%zx-%zu\",\"uid\":\"5b0c6a2e-0000-4000-8000-%012zx\",\"apiVersion\":"
		"\"v1\",\"resourceVersion\":\"%lu\",\"fieldPath\":\"spec.containers{web}\"},"
		"\"reason\":\"%s\",\"message\":\"Back-off restarting failed container web in pod "
		"web-%zx-%zu_shop-%zu(5b0c6a2e-0000-4000-8000-%012zx): readiness probe failed: "
		"HTTP probe failed with statuscode: 503\",\"source\":{\"component\":\"kubelet\","
		"\"host\":\"ip-10-0-%zu-%zu.eu-west-1.compute.internal\"},\"firstTimestamp\":"
		"\"2026-11-22T00:26:05Z\",\"lastTimestamp\":\"2026-11-22T00:26:%02zuZ\",\"count\":%zu,"
		"\"type\":\"Warning\",\"eventTime\":null,\"reportingComponent\":\"kubelet\","
		"\"reportingInstance\":\"ip-10-0-%zu-%zu.eu-west-1.compute.internal\"}}\n",
		i % 5 == 0 ? "MODIFIED" : "ADDED", i, i % 7, i & 0xffff, i % 40, i & 0xffff, i, rv,
		i % 40, i, i % 7, i / 3, rv - 10, reason, i, i % 7, i % 40, i / 3, i % 250,
		(i / 250) % 250, i % 60, 1 + i % 30, i % 250, (i / 250) % 250);
}

static int run(const char *name, const char *data, const size_t *offs, size_t n, size_t step)
{
	struct tally t;
	memset(&t, 0, sizeof t);
	struct ca_watch_parser *p = NULL;
	if (ca_watch_parser_new(&p, (size_t)1 << 20, on_event, &t) != CA_OK)
		return 1;
	size_t total = offs[n];
	double t0 = now_s();
	enum ca_err err = CA_OK;
	if (step == 0) {
		for (size_t i = 0; i < n && err == CA_OK; i++)
			err = ca_watch_feed(p, data + offs[i], offs[i + 1] - offs[i]);
	} else {
		for (size_t at = 0; at < total && err == CA_OK; at += step)
			err = ca_watch_feed(p, data + at, total - at < step ? total - at : step);
	}
	double dt = now_s() - t0;
	struct ca_watch_parser_stats st;
	ca_watch_parser_get_stats(p, &st);
	ca_watch_parser_free(p);
	if (err != CA_OK || st.events != n || st.parse_errors || t.events != n) {
		fprintf(stderr, "%s: parse failed (%s, %llu events of %zu, %llu errors)\n", name,
		        ca_strerror(err), (unsigned long long)st.events, n,
		        (unsigned long long)st.parse_errors);
		return 1;
	}
	printf("%-22s %10.0f objects/s %8.1f MB/s  (%.3f s)\n", name, (double)n / dt,
	       (double)total / dt / 1e6, dt);
	return 0;
}

/* Parse every line (without its '\n') with one parser; jansson's tree is
 * freed after each line, the tape's arena is reused. */
static int run_bare(const char *name, bool ours, const char *data, const size_t *offs, size_t n)
{
	size_t bad = 0;
	struct ca_json_doc *doc = NULL;
	if (ours && ca_kube_json_doc_new(&doc) != CA_OK)
		return 1;
	double t0 = now_s();
	for (size_t i = 0; i < n; i++) {
		const char *s = data + offs[i];
		size_t len = offs[i + 1] - offs[i] - 1;
		if (ours) {
			const struct ca_kobj *root = NULL;
			if (ca_kube_json_parse(doc, s, len, &root, NULL, 0) != CA_OK)
				bad++;
		} else {
			json_error_t error;
			json_t *j = json_loadb(s, len, 0, &error);
			bad += j == NULL;
			json_decref(j);
		}
	}
	double dt = now_s() - t0;
	ca_kube_json_doc_free(doc);
	if (bad) {
		fprintf(stderr, "%s: %zu lines rejected\n", name, bad);
		return 1;
	}
	printf("%-22s %10.0f lines/s   %8.1f MB/s  (%.3f s)\n", name, (double)n / dt,
	       (double)offs[n] / dt / 1e6, dt);
	return 0;
}

int main(int argc, char **argv)
{
	size_t n = 200000;
	if (argc > 1) {
		char *end = NULL;
		long v = strtol(argv[1], &end, 10);
		if (!end || *end || v <= 0) {
			fprintf(stderr, "usage: %s [N]\n", argv[0]);
			return 2;
		}
		n = (size_t)v;
	}
	struct ca_buf b;
	ca_buf_init(&b, (size_t)4 << 30);
	size_t *offs = malloc((n + 1) * sizeof *offs);
	if (!offs)
		return 1;
	for (size_t i = 0; i < n; i++) {
		offs[i] = b.len;
		if (append_event(&b, i) != CA_OK) {
			fprintf(stderr, "out of memory building the stream\n");
			return 1;
		}
	}
	offs[n] = b.len;
	printf("%zu events, %.1f MB, %.0f bytes/event\n", n, (double)b.len / 1e6,
	       (double)b.len / (double)n);
	int rc = run("one event per feed", b.data, offs, n, 0);
	rc |= run("64 KiB feeds", b.data, offs, n, 65536);
	rc |= run("1 KiB feeds", b.data, offs, n, 1024);
	printf("bare parsers, whole lines (managedFields included):\n");
	rc |= run_bare("jansson json_loadb", false, b.data, offs, n);
	rc |= run_bare("ca_kube_json_parse", true, b.data, offs, n);
	ca_buf_fini(&b);
	free(offs);
	return rc;
}
