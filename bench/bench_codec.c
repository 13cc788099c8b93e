/* bench_codec: cost of encoding one Event, JSON and protobuf.
 *
 * Builds a set of realistic events (a ~1 KB message with some non-ASCII
 * text, a quote and a newline, as kubelet and controllers write them; all
 * the other fields set, three timestamps) and times N encodes of each
 * format into a reused buffer, the way a NATS sink does. Prints events/s
 * and ns/event per format.
 *
 * usage: bench_codec [N] [json|protobuf]   (default 200000, both formats) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "codec/codec.h"
#include "core/buf.h"

#define VARIANTS 64

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *const reasons[] = { "BackOff", "FailedScheduling", "Unhealthy", "FailedMount",
                                       "OOMKilling", "ErrImagePull", "Evicted", "Pulled" };

/* A message of about 1 KB: mostly ASCII with some UTF-8 (é, →, €, 日本)
 * and the odd quote and newline, as real event messages have. */
static void make_message(struct ca_buf *b, unsigned v)
{
	static const char *const parts[] = {
		"Back-off restarting failed container \"app\" in pod web-",
		" (d\xC3\xA9ploiement \xE2\x86\x92 r\xC3\xA9plica) ",
		"0/12 nodes are available: 3 Insufficient cpu, 2 node(s) had untolerated taint "
		"{node.kubernetes.io/unreachable: }, 7 node(s) didn't match Pod's node affinity/selector. ",
		"Readiness probe failed: Get \"http://10.2.3.4:8080/healthz\": context deadline exceeded "
		"(Client.Timeout exceeded while awaiting headers)\n",
		"co\xC3\xBBt 12 \xE2\x82\xAC \xE6\x97\xA5\xE6\x9C\xAC ",
	};
	while (b->len < 1000)
		ca_buf_printf(b, "%s%u", parts[(b->len / 7 + v) % 5], v);
}

int main(int argc, char **argv)
{
	long n = argc > 1 ? strtol(argv[1], NULL, 10) : 200000;
	if (n <= 0)
		n = 200000;

	struct ca_buf msgs[VARIANTS];
	char names[VARIANTS][64], uids[VARIANTS][48], rvs[VARIANTS][24];
	struct ca_msg_event ev[VARIANTS];
	for (unsigned i = 0; i < VARIANTS; i++) {
		ca_buf_init(&msgs[i], 0);
		make_message(&msgs[i], i);
		snprintf(names[i], sizeof names[i], "web-frontend-7d9c5b6f4-%05u", i * 7919u % 100000u);
		snprintf(uids[i], sizeof uids[i], "8d5e0c2a-%04x-4b1e-9c7d-%012x", i, i * 2654435761u);
		snprintf(rvs[i], sizeof rvs[i], "%u", 1234567u + i);
		int64_t t = 1795307190123LL + (int64_t)i * 1377;
		ev[i] = (struct ca_msg_event){
			.uid = uids[i], .cluster_id = "prod-eu-west-1", .type = i % 3 ? "Warning" : "Normal",
			.reason = reasons[i % 8], .message = msgs[i].data, .namespace_ = "shop",
			.involved_object = { .kind = "Pod", .name = names[i], .namespace_ = "shop", .uid = uids[i],
			                     .api_version = "v1", .field_path = "spec.containers{app}" },
			.source_component = "kubelet", .source_host = "ip-10-0-12-34.eu-west-1.compute.internal",
			.first_timestamp = t - 3600000, .last_timestamp = t, .observed_at = t + 12,
			.count = (int64_t)i * 3 + 1, .severity = "warning", .category = "crash",
			.resource_version = rvs[i], .message_truncated = false,
		};
	}

	static const struct {
		const char *name;
		enum ca_codec_format f;
	} formats[] = { { "json", CA_CODEC_JSON }, { "protobuf", CA_CODEC_PROTOBUF } };
	int rc = 0;
	for (size_t k = 0; k < sizeof formats / sizeof formats[0]; k++) {
		if (argc > 2 && strcmp(argv[2], formats[k].name) != 0)
			continue;
		struct ca_buf out;
		ca_buf_init(&out, 0);
		size_t bytes = 0;
		double t0 = cpu_now();
		for (long i = 0; i < n; i++) {
			ca_buf_reset(&out);
			if (ca_codec_encode_event(formats[k].f, &ev[i % VARIANTS], &out) != CA_OK) {
				fprintf(stderr, "encode failed\n");
				rc = 1;
				break;
			}
			bytes += out.len;
		}
		double secs = cpu_now() - t0;
		if (secs <= 0)
			secs = 1e-9;
		printf("%-8s %ld events  %.0f events/s  %.0f ns/event  %.0f bytes/event  %.3f CPU-s per 100k\n",
		       formats[k].name, n, (double)n / secs, secs * 1e9 / (double)n, (double)bytes / (double)n,
		       secs * 100000.0 / (double)n);
		ca_buf_fini(&out);
	}
	for (unsigned i = 0; i < VARIANTS; i++)
		ca_buf_fini(&msgs[i]);
	return rc;
}
