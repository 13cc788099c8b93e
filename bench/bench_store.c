/* bench_store: the informer store (kube/store.h) at the scale the metrics
 * collector is sized for: 150,000 pods.
 *
 * Builds one PodList page of N pod-like objects (namespace/name keys such as
 * "team-0042/checkout-api-7d9f8b6c5d-x2k4p", about 40 bytes) and parses it
 * once, so the timings are the store's (key from the object, hash, probe,
 * fold, callbacks), not the JSON parser's. fold allocates a 64-byte value
 * and reports its heap cost. Phases, fed through the reflector callbacks
 * the store fills:
 *   insert  a LIST into the empty store (every object an add)
 *   lookup  ca_store_get() of every key, in a shuffled order: each one
 *           misses the cache for the caller's key, the table and the
 *           entry, so this is mostly the machine's memory latency
 *   hot     ca_store_get() of the same 1,024 keys over and over: the CPU
 *           cost of a lookup (hash, probe, compare) without the misses
 *   relist  a second LIST of the same objects (every object an update)
 *   sweep   a LIST that carries none of them: on_synced removes all
 * Times are per CPU-second of this process (CLOCK_PROCESS_CPUTIME_ID), the
 * median of R rounds. Memory is measured in the first round after the
 * insert: what the store accounts (stats), what the heap grew by
 * (mallinfo2), and what RSS grew by.
 *
 * usage: bench_store [N [R]]   (default 150000 5) */
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/buf.h"
#include "kube/kobj.h"
#include "kube/store.h"

#define VALUE_BYTES 64

struct counts {
	uint64_t adds, updates, deletes;
};

static enum ca_err fold(void *arg, const struct ca_kobj *obj, void **value, size_t *size)
{
	(void)arg;
	unsigned char *v = malloc(VALUE_BYTES);
	if (!v)
		return CA_ENOMEM;
	/* What a real fold does at least: read a field or two. */
	const char *phase = ca_kobj_str(obj, "status.phase");
	memset(v, 0, VALUE_BYTES);
	v[0] = phase ? (unsigned char)phase[0] : 0;
	*value = v;
	*size = ca_store_heap_bytes(VALUE_BYTES);
	return CA_OK;
}

static void free_value(void *arg, void *value)
{
	(void)arg;
	free(value);
}

static void on_add(void *arg, const char *key, void *value)
{
	(void)key;
	(void)value;
	((struct counts *)arg)->adds++;
}

static void on_update(void *arg, const char *key, void *old_value, void *new_value)
{
	(void)key;
	(void)old_value;
	(void)new_value;
	((struct counts *)arg)->updates++;
}

static void on_delete(void *arg, const char *key, void *value)
{
	(void)key;
	(void)value;
	((struct counts *)arg)->deletes++;
}

static double cpu_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t heap_used(void)
{
	struct mallinfo2 mi = mallinfo2();
	return mi.uordblks + mi.hblkhd;
}

static size_t rss_bytes(void)
{
	long pages = 0, resident = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (f) {
		if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
			resident = 0;
		fclose(f);
	}
	return (size_t)resident * 4096;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* Deployment-style pod names: <app>-<replicaset hash>-<5 chars>. */
static void pod_name(char *out, size_t len, size_t i)
{
	static const char *const apps[] = {"checkout-api",   "web",  "payments-worker",
	                                   "search-indexer", "cart", "frontend-v2"};
	static const char alnum[] = "bcdfghjklmnpqrstvwxz2456789";
	char tail[6];
	uint64_t x = i * 0x9E3779B97F4A7C15ull;
	for (int k = 0; k < 5; k++) {
		tail[k] = alnum[x % 27];
		x /= 27;
	}
	tail[5] = '\0';
	snprintf(out, len, "%s-%08zx%02zx-%s", apps[i % 6], (i / 50) * 2654435761u % 0xffffffffu,
	         i % 251, tail);
}

int main(int argc, char **argv)
{
	size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 150000;
	int rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 5;
	if (n == 0 || rounds < 1 || rounds > 50)
		return 2;

	/* The objects: one parsed LIST page, and every key for lookups. */
	struct ca_buf b;
	ca_buf_init(&b, (size_t)1 << 30);
	char **keys = calloc(n, sizeof *keys);
	size_t *order = calloc(n, sizeof *order);
	if (!keys || !order)
		return 1;
	ca_buf_append_str(&b, "{\"kind\":\"PodList\",\"metadata\":{\"resourceVersion\":\"1\"},"
	                      "\"items\":[");
	size_t key_chars = 0;
	for (size_t i = 0; i < n; i++) {
		char ns[32], name[96], key[160];
		snprintf(ns, sizeof ns, "team-%04zu", (i * 7919) % 1000);
		pod_name(name, sizeof name, i);
		snprintf(key, sizeof key, "%s/%s", ns, name);
		keys[i] = strdup(key);
		key_chars += strlen(key);
		ca_buf_printf(&b,
		              "%s{\"metadata\":{\"name\":\"%s\",\"namespace\":\"%s\",\"uid\":"
		              "\"5b0c6a2e-0000-4000-8000-%012zx\",\"resourceVersion\":\"%zu\"},"
		              "\"status\":{\"phase\":\"Running\"}}",
		              i ? "," : "", name, ns, i, 1000 + i);
		order[i] = i;
	}
	ca_buf_append_str(&b, "]}");
	struct ca_kobj *page = NULL;
	if (ca_kobj_parse(b.data, b.len, &page) != CA_OK) {
		fprintf(stderr, "cannot parse the page\n");
		return 1;
	}
	ca_buf_fini(&b);
	const struct ca_kobj *items = ca_kobj_get(page, "items");
	if (ca_kobj_array_len(items) != n)
		return 1;
	/* A fixed shuffle, so lookups do not walk memory in insertion order. */
	uint64_t rng = 88172645463325252ull;
	for (size_t i = n - 1; i > 0; i--) {
		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		size_t j = (size_t)(rng % (i + 1)), t = order[i];
		order[i] = order[j];
		order[j] = t;
	}

	double t_insert[50], t_lookup[50], t_hot[50], t_relist[50], t_sweep[50];
	struct ca_store_stats st0 = {0};
	size_t heap_delta = 0, rss_delta = 0;
	for (int r = 0; r < rounds; r++) {
		struct counts c = {0};
		struct ca_store_ops ops = {.fold = fold,
		                           .free_value = free_value,
		                           .on_add = on_add,
		                           .on_update = on_update,
		                           .on_delete = on_delete};
		struct ca_store_options o = {.name = "pods", .key = CA_STORE_KEY_NAME};
		struct ca_store *s = NULL;
		struct ca_reflector_callbacks cbs;
		malloc_trim(0);
		size_t heap0 = heap_used(), rss0 = rss_bytes();
		if (ca_store_new(&s, &o, &ops, &c) != CA_OK)
			return 1;
		ca_store_reflector_callbacks(s, &cbs);

		double t0 = cpu_s();
		cbs.on_list_begin(s);
		for (size_t i = 0; i < n; i++)
			cbs.on_object(s, CA_WATCH_ADDED, ca_kobj_array_at(items, i), true);
		cbs.on_synced(s, "1");
		t_insert[r] = (cpu_s() - t0) / (double)n;
		if (r == 0) {
			ca_store_get_stats(s, &st0);
			heap_delta = heap_used() - heap0;
			rss_delta = rss_bytes() - rss0;
		}

		size_t found = 0;
		t0 = cpu_s();
		for (size_t i = 0; i < n; i++)
			found += ca_store_get(s, keys[order[i]]) != NULL;
		t_lookup[r] = (cpu_s() - t0) / (double)n;

		size_t hot = n < 1024 ? n : 1024;
		t0 = cpu_s();
		for (size_t i = 0; i < n; i++)
			found += ca_store_get(s, keys[order[i % hot]]) != NULL;
		t_hot[r] = (cpu_s() - t0) / (double)n;
		found -= n;

		t0 = cpu_s();
		cbs.on_list_begin(s);
		for (size_t i = 0; i < n; i++)
			cbs.on_object(s, CA_WATCH_ADDED, ca_kobj_array_at(items, i), true);
		cbs.on_synced(s, "2");
		t_relist[r] = (cpu_s() - t0) / (double)n;

		t0 = cpu_s();
		cbs.on_list_begin(s);
		cbs.on_synced(s, "3");
		t_sweep[r] = (cpu_s() - t0) / (double)n;

		if (found != n || c.adds != n || c.updates != n || c.deletes != n ||
		    ca_store_count(s) != 0) {
			fprintf(stderr, "wrong: found %zu adds %llu updates %llu deletes %llu\n",
			        found, (unsigned long long)c.adds, (unsigned long long)c.updates,
			        (unsigned long long)c.deletes);
			return 1;
		}
		ca_store_free(s);
	}

	double key_avg = (double)key_chars / (double)n;
	double table_pe = (double)st0.table_bytes / (double)n;
	double entries_pe = (double)(st0.bytes - st0.table_bytes - st0.value_bytes) / (double)n;
	double value_pe = (double)st0.value_bytes / (double)n;
	printf("bench_store: %zu objects, %d rounds, median CPU time per object\n", n, rounds);
	printf("  insert (LIST, all adds)        %8.1f ns\n", median(t_insert, rounds) * 1e9);
	printf("  lookup (ca_store_get, shuffled)%8.1f ns\n", median(t_lookup, rounds) * 1e9);
	printf("  lookup (1,024 keys, cache hot) %8.1f ns\n", median(t_hot, rounds) * 1e9);
	printf("  relist (LIST, all updates)     %8.1f ns\n", median(t_relist, rounds) * 1e9);
	printf("  sweep  (LIST of none, all go)  %8.1f ns\n", median(t_sweep, rounds) * 1e9);
	printf("memory after the insert (%zu entries, %zu slots, probe_max %zu):\n", st0.entries,
	       st0.slots, st0.probe_max);
	printf("  key length, average                  %6.1f bytes\n", key_avg);
	printf("  store accounts, per entry            %6.1f bytes (table %.1f + entry %.1f + "
	       "value "
	       "%.1f)\n",
	       (double)st0.bytes / (double)n, table_pe, entries_pe, value_pe);
	printf("  store overhead beyond key and value  %6.1f bytes (table %.1f + entry %.1f)\n",
	       table_pe + entries_pe - key_avg, table_pe, entries_pe - key_avg);
	printf("  heap growth (mallinfo2), per entry   %6.1f bytes (%zu total; accounted %zu)\n",
	       (double)heap_delta / (double)n, heap_delta, st0.bytes);
	printf("  RSS growth, per entry                %6.1f bytes\n",
	       (double)rss_delta / (double)n);

	ca_kobj_free(page);
	for (size_t i = 0; i < n; i++)
		free(keys[i]);
	free(keys);
	free(order);
	return 0;
}
