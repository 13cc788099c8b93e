/* bench_spool: the on-disk event spool's append and replay rates.
 *
 * Appends N realistic events (a kubelet BackOff with a message of M bytes)
 * to a spool in DIR, then replays them all (read, check, decode, consume),
 * and reports events/s and MB/s of each, with the time spent in write()
 * and read(). The page cache is warm (what an outage of a few minutes
 * sees); the end-to-end drain through NATS is in tests/faults/test_spool.py.
 *
 * usage: bench_spool DIR [N] [M] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "events/spool.h"

static double now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: bench_spool DIR [N] [MESSAGE_BYTES]\n");
		return 64;
	}
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 200000;
	long m = argc > 3 ? strtol(argv[3], NULL, 10) : 120;
	if (n <= 0 || m < 0 || m > 60000)
		return 64;
	const char *streams[] = {"/api/v1/events"};
	struct ca_spool_options o = {.dir = argv[1],
	                             .max_bytes = (uint64_t)4 << 30,
	                             .segment_bytes = 4 << 20,
	                             .max_payload = 64 * 1024,
	                             .streams = streams,
	                             .nstreams = 1};
	struct ca_spool *s = NULL;
	char err[256];
	if (ca_spool_open(&s, &o, err, sizeof err) != CA_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	char *msg = malloc((size_t)m + 1);
	for (long i = 0; i < m; i++)
		msg[i] = (char)('a' + i % 26);
	msg[m] = '\0';
	char uid[64], rv[32], before[32], name[64];
	struct ca_spool_item it = {0};
	it.msg.type = "Warning";
	it.msg.reason = "BackOff";
	it.msg.message = msg;
	it.msg.namespace_ = "team-0042";
	it.msg.involved_object.kind = "Pod";
	it.msg.involved_object.namespace_ = "team-0042";
	it.msg.involved_object.uid = "5d1b7c2e-0c1e-4a53-9e0a-1f7d5c0b2a11";
	it.msg.involved_object.api_version = "v1";
	it.msg.involved_object.field_path = "spec.containers{app}";
	it.msg.source_component = "kubelet";
	it.msg.source_host = "ip-10-0-12-34.eu-west-1.compute.internal";
	it.msg.severity = "warning";
	it.msg.category = "crash";
	it.stream = streams[0];
	it.stream_index = 0;
	it.msg.uid = uid;
	it.msg.resource_version = rv;
	it.resume_before = before;
	it.msg.involved_object.name = name;
	double t0 = now_s();
	for (long i = 0; i < n; i++) {
		snprintf(uid, sizeof uid, "9f0c%04lx-1d2e-4b5a-8c7d-%012lx", i & 0xffff, i);
		snprintf(rv, sizeof rv, "%ld", 100000 + i);
		snprintf(before, sizeof before, "%ld", 99999 + i);
		snprintf(name, sizeof name, "checkout-api-7d9f8b6c5d-%05ld", i % 1000);
		it.msg.first_timestamp = 1795307190123LL + i;
		it.msg.last_timestamp = it.msg.first_timestamp;
		it.msg.count = 1 + i % 7;
		if (ca_spool_append(s, &it, err, sizeof err) != CA_OK) {
			fprintf(stderr, "append: %s\n", err);
			return 1;
		}
	}
	double t1 = now_s();
	struct ca_spool_stats st;
	ca_spool_get_stats(s, &st);
	uint64_t bytes = st.bytes;
	long got = 0;
	struct ca_spool_item out;
	while (ca_spool_peek(s, &out, err, sizeof err) == CA_OK) {
		got++;
		ca_spool_consume(s);
	}
	ca_spool_save_cursor(s);
	double t2 = now_s();
	ca_spool_get_stats(s, &st);
	printf("%ld events, %.0f bytes each on disk (message %ld bytes)\n", n,
	       (double)bytes / (double)n, m);
	printf("append: %.0f events/s, %.1f MB/s (write() %.2f s of %.2f s)\n",
	       (double)n / (t1 - t0), (double)bytes / 1e6 / (t1 - t0), (double)st.append_us / 1e6,
	       t1 - t0);
	printf("replay: %.0f events/s, %.1f MB/s (read() %.2f s of %.2f s), %ld read back, %llu "
	       "corrupt\n",
	       (double)got / (t2 - t1), (double)bytes / 1e6 / (t2 - t1), (double)st.read_us / 1e6,
	       t2 - t1, got, (unsigned long long)st.corrupt);
	ca_spool_free(s);
	free(msg);
	return got == n ? 0 : 1;
}
