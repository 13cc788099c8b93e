/* bench_events_pipeline: the in-process half of the events benchmark.
 *
 * Generates N realistic core/v1 Events (~1.2 KB with managedFields, like
 * the simulated server's), then times what the agent does per event on its
 * loop thread: ca_kobj_parse of the watch object, the events pipeline
 * (fold, classify, filter, dedup, aggregation, queue) and the JSON (or
 * protobuf) encoding a NATS sink performs. Reports events/s and CPU
 * seconds per 100k events. No network: the end-to-end numbers (kubesim ->
 * agent -> nats-server) come from bench/events_pipeline.py.
 *
 * usage: bench_events_pipeline [N] [json|protobuf] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/buf.h"
#include "events/events_int.h"
#include "log/log.h"

static enum ca_codec_format fmt = CA_CODEC_JSON;
static struct ca_buf out;
static size_t bytes_out, published;

static enum ca_err sink(void *arg, const struct ca_msg_event *m)
{
	(void)arg;
	ca_buf_reset(&out);
	enum ca_err rc = ca_codec_encode_event(fmt, m, &out);
	bytes_out += out.len;
	published++;
	return rc;
}

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const reasons[] = { "BackOff", "FailedScheduling", "Unhealthy", "FailedMount",
                                       "OOMKilling", "ErrImagePull", "Evicted", "SomethingNew" };

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 200000;
	if (argc > 2 && strcmp(argv[2], "protobuf") == 0)
		fmt = CA_CODEC_PROTOBUF;
	ca_log_configure(CA_LOG_ERROR, true);
	ca_buf_init(&out, 0);

	/* The events, as the watch stream carries them. */
	char **lines = calloc(n, sizeof *lines);
	size_t *lens = calloc(n, sizeof *lens);
	size_t total_in = 0;
	for (size_t i = 0; i < n; i++) {
		struct ca_buf b;
		ca_buf_init(&b, 0);
		ca_buf_printf(&b,
			"{\"kind\":\"Event\",\"apiVersion\":\"v1\",\"metadata\":{\"name\":\"web-%zu.17f0a1b2c3d4e5f1\","
			"\"namespace\":\"ns-%zu\",\"uid\":\"7a348571-07da-4f3d-acbd-%012zu\",\"resourceVersion\":\"%zu\","
			"\"creationTimestamp\":\"2026-11-22T00:26:06Z\",\"managedFields\":[{\"manager\":\"kubelet\","
			"\"operation\":\"Update\",\"apiVersion\":\"v1\",\"time\":\"2026-11-22T00:26:06Z\",\"fieldsType\":"
			"\"FieldsV1\",\"fieldsV1\":{\"f:count\":{},\"f:firstTimestamp\":{},\"f:involvedObject\":{},"
			"\"f:lastTimestamp\":{},\"f:message\":{},\"f:reason\":{},\"f:reportingComponent\":{},"
			"\"f:reportingInstance\":{},\"f:source\":{\"f:component\":{},\"f:host\":{}},\"f:type\":{}}}]},"
			"\"involvedObject\":{\"kind\":\"Pod\",\"namespace\":\"ns-%zu\",\"name\":\"web-%zu\","
			"\"uid\":\"5b0c6a2e-0000-4000-8000-%012zu\",\"apiVersion\":\"v1\",\"resourceVersion\":\"1234\","
			"\"fieldPath\":\"spec.containers{web}\"},\"reason\":\"%s\",\"message\":\"Back-off restarting "
			"failed container web in pod web-%zu_ns-%zu(5b0c6a2e-0000-4000-8000-%012zu): the container "
			"exited with code 137 after running out of memory; kubelet will retry with exponential "
			"back-off up to five minutes between attempts\",\"source\":{\"component\":\"kubelet\","
			"\"host\":\"node-%zu\"},\"firstTimestamp\":\"2026-11-22T00:26:05Z\",\"lastTimestamp\":"
			"\"2026-11-22T00:26:05Z\",\"count\":1,\"type\":\"Warning\",\"eventTime\":null,"
			"\"reportingComponent\":\"kubelet\",\"reportingInstance\":\"node-%zu\"}",
			i, i % 50, i, 1000 + i, i % 50, i, i, reasons[i % 8], i, i % 50, i, i % 20, i % 20);
		total_in += b.len;
		lens[i] = b.len;
		lines[i] = ca_buf_take(&b, NULL);
		ca_buf_fini(&b);
	}

	struct ca_config cfg;
	ca_config_init_defaults(&cfg);
	cfg.events.since_ms = 0;
	struct ca_events *ev = NULL;
	static const struct ca_events_sink s = { sink };
	char err[256];
	if (ca_events_new_internal(&ev, NULL, NULL, &cfg, "bench", &s, NULL, NULL, err, sizeof err) != CA_OK) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	double c0 = cpu_now(), w0 = wall_now();
	for (size_t i = 0; i < n; i++) {
		struct ca_kobj *o = NULL;
		if (ca_kobj_parse(lines[i], lens[i], &o) != CA_OK)
			return 1;
		ca_events_on_object(ev, 0, CA_WATCH_ADDED, o, false);
		ca_kobj_free(o);
	}
	double c1 = cpu_now(), w1 = wall_now();
	printf("events: %zu (avg %zu bytes in), published %zu (avg %zu bytes %s out)\n", n,
	       total_in / (n ? n : 1), published, bytes_out / (published ? published : 1),
	       fmt == CA_CODEC_JSON ? "json" : "protobuf");
	printf("events/s: %.0f  cpu s per 100k: %.3f  wall s: %.3f\n", (double)n / (w1 - w0),
	       (c1 - c0) * 100000.0 / (double)n, w1 - w0);
	ca_events_free(ev);
	ca_config_fini(&cfg);
	for (size_t i = 0; i < n; i++)
		free(lines[i]);
	free(lines);
	free(lens);
	ca_buf_fini(&out);
	return published == n ? 0 : 1;
}
