/* bench_nats_sink: the receiving end of the events benchmark (issue 4).
 *
 * Subscribes to agent.event.<cluster> (nats.c, no pending limits so it never
 * drops as a slow consumer on its own side), counts messages, notes the
 * CLOCK_MONOTONIC time of the first and the last, and for every message
 * whose JSON message field starts with "sent_ns=<n>" (n > 0, stamped by
 * bench_apiserver --rate) records the latency CLOCK_REALTIME - n. Both
 * processes run on one machine, so the realtime clocks agree.
 *
 * Prints {"ready":true} on stdout once subscribed (flushed), then one JSON
 * summary {count, bytes, seconds, rate, latency_samples, p50_ms, p99_ms,
 * max_ms, dropped, reason} when --expect messages arrived, or when no message
 * came for --idle seconds after the first one (--start-timeout before it).
 *
 * usage: bench_nats_sink --url nats://127.0.0.1:P --cluster ID
 *                        [--expect N] [--idle S] [--start-timeout S]
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static uint64_t count, bytes;
static double first_s, last_s;
static double *lat_ms;
static size_t nlat, caplat;

static double mono_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* n of a "message": "sent_ns=<n>..." member (whitespace allowed around
 * the colon), 0 when absent. */
static int64_t sent_ns_of(const char *d, size_t len)
{
	static const char key[] = "\"message\"";
	static const char tag[] = "sent_ns=";
	const char *e = d + len;
	const char *p = memmem(d, len, key, sizeof key - 1);
	if (!p)
		return 0;
	p += sizeof key - 1;
	while (p < e && (*p == ' ' || *p == ':'))
		p++;
	if (p >= e || *p++ != '"' || (size_t)(e - p) < sizeof tag - 1 ||
	    memcmp(p, tag, sizeof tag - 1) != 0)
		return 0;
	p += sizeof tag - 1;
	int64_t v = 0;
	for (int digits = 0; p < e && *p >= '0' && *p <= '9' && digits < 19; p++, digits++)
		v = v * 10 + (*p - '0');
	return v;
}

static void on_msg(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	(void)nc, (void)sub, (void)closure;
	struct timespec rt;
	clock_gettime(CLOCK_REALTIME, &rt);
	double now = mono_s();
	const char *d = natsMsg_GetData(msg);
	int len = natsMsg_GetDataLength(msg);
	int64_t sent = d && len > 0 ? sent_ns_of(d, (size_t)len) : 0;
	pthread_mutex_lock(&mu);
	if (count == 0)
		first_s = now;
	last_s = now;
	count++;
	bytes += len > 0 ? (uint64_t)len : 0;
	if (sent > 0) {
		if (nlat == caplat) {
			size_t nc2 = caplat ? caplat * 2 : 65536;
			double *p = realloc(lat_ms, nc2 * sizeof *p);
			if (p) {
				lat_ms = p;
				caplat = nc2;
			}
		}
		if (nlat < caplat) {
			int64_t recv_ns = (int64_t)rt.tv_sec * 1000000000LL + rt.tv_nsec;
			lat_ms[nlat++] = (double)(recv_ns - sent) / 1e6;
		}
	}
	pthread_mutex_unlock(&mu);
	natsMsg_Destroy(msg);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double pct(const double *v, size_t n, double q)
{
	if (n == 0)
		return 0;
	size_t i = (size_t)(q * (double)(n - 1) + 0.5);
	return v[i < n ? i : n - 1];
}

static void usage(void)
{
	fprintf(stderr, "usage: bench_nats_sink --url URL --cluster ID [--expect N] [--idle S] "
	                "[--start-timeout S]\n");
}

int main(int argc, char **argv)
{
	const char *url = NULL, *cluster = NULL;
	double expect = 0, idle = 10, start_timeout = 120;
	for (int i = 1; i + 1 < argc; i += 2) {
		char *end = NULL;
		double v = 0;
		if (strcmp(argv[i], "--url") == 0) {
			url = argv[i + 1];
			continue;
		}
		if (strcmp(argv[i], "--cluster") == 0) {
			cluster = argv[i + 1];
			continue;
		}
		errno = 0;
		v = strtod(argv[i + 1], &end);
		if (errno || !end || *end || v < 0) {
			usage();
			return 2;
		}
		if (strcmp(argv[i], "--expect") == 0)
			expect = v;
		else if (strcmp(argv[i], "--idle") == 0)
			idle = v;
		else if (strcmp(argv[i], "--start-timeout") == 0)
			start_timeout = v;
		else {
			usage();
			return 2;
		}
	}
	if (!url || !cluster || argc % 2 == 0) {
		usage();
		return 2;
	}
	char subject[256];
	snprintf(subject, sizeof subject, "agent.event.%s", cluster);

	natsConnection *nc = NULL;
	natsSubscription *sub = NULL;
	natsStatus s = natsConnection_ConnectTo(&nc, url);
	if (s == NATS_OK)
		s = natsConnection_Subscribe(&sub, nc, subject, on_msg, NULL);
	if (s == NATS_OK)
		s = natsSubscription_SetPendingLimits(sub, -1, -1);
	if (s == NATS_OK)
		s = natsConnection_Flush(nc);
	if (s != NATS_OK) {
		fprintf(stderr, "bench_nats_sink: %s\n", natsStatus_GetText(s));
		return 1;
	}
	printf("{\"ready\":true,\"subject\":\"%s\"}\n", subject);
	fflush(stdout);

	double t_start = mono_s();
	const char *reason = "expected count";
	for (;;) {
		usleep(20000);
		pthread_mutex_lock(&mu);
		uint64_t c = count;
		double last = last_s;
		pthread_mutex_unlock(&mu);
		double now = mono_s();
		if (expect > 0 && (double)c >= expect)
			break;
		if (c == 0 && now - t_start > start_timeout) {
			reason = "start timeout";
			break;
		}
		if (c > 0 && now - last > idle) {
			reason = "idle timeout";
			break;
		}
	}
	int64_t dropped = 0;
	natsSubscription_GetDropped(sub, &dropped);
	natsSubscription_Unsubscribe(sub);
	pthread_mutex_lock(&mu);
	if (nlat > 1)
		qsort(lat_ms, nlat, sizeof *lat_ms, cmp_double);
	double secs = count > 1 ? last_s - first_s : 0;
	printf("{\"count\":%llu,\"bytes\":%llu,\"seconds\":%.6f,\"rate\":%.0f,\"latency_samples\":%zu,"
	       "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f,\"dropped\":%lld,\"reason\":\"%s\"}\n",
	       (unsigned long long)count, (unsigned long long)bytes, secs,
	       secs > 0 ? (double)(count - 1) / secs : 0.0, nlat, pct(lat_ms, nlat, 0.50),
	       pct(lat_ms, nlat, 0.99), nlat ? lat_ms[nlat - 1] : 0.0, (long long)dropped, reason);
	fflush(stdout);
	pthread_mutex_unlock(&mu);
	natsSubscription_Destroy(sub);
	natsConnection_Destroy(nc);
	nats_CloseAndWait(2000);
	free(lat_ms);
	return 0;
}
