/* core/prom.h: a writer for the Prometheus text exposition format 0.0.4.
 *
 * Each module renders its own counters through this writer; the http module
 * only concatenates what modules wrote. Every sample gets the label
 * cluster_id; at most one more label may be given per sample. Label values
 * are escaped here. Not thread safe; loop thread. */
#ifndef CA_CORE_PROM_H
#define CA_CORE_PROM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

struct ca_prom_carry;

struct ca_prom {
	struct ca_buf *out;      /* borrowed */
	const char *cluster_id;  /* borrowed; "" when not known yet */
	/* Counters of modules that were stopped and started again (below);
	 * NULL: none. Borrowed. */
	struct ca_prom_carry *carry;
	bool capture;            /* add counter samples to carry instead */
	bool cumulative;         /* the current family is a counter or histogram */
};

#define CA_HISTOGRAM_MAX_BUCKETS 16

/* A cumulative histogram; bounds are upper bounds in ascending order. */
struct ca_histogram {
	const double *bounds; /* borrowed, static */
	size_t nbounds;       /* <= CA_HISTOGRAM_MAX_BUCKETS */
	uint64_t counts[CA_HISTOGRAM_MAX_BUCKETS]; /* per bucket, not cumulative */
	uint64_t count;
	double sum;
};

void ca_prom_init(struct ca_prom *p, struct ca_buf *out, const char *cluster_id);

/* Counters across a module's restart. A module that is freed and made
 * again (the events watcher when a replica stops and starts leading,
 * ha/ha.h) starts its counters from 0, and a Prometheus counter must never
 * go backwards. Before freeing it, render its metrics once through a
 * writer set up by ca_prom_init_capture(): every counter and histogram
 * sample is added to the carry, by series. A writer given the carry
 * (ca_prom_set_carry) adds it back to the same series. Gauges are left
 * alone. At most CA_PROM_CARRY_MAX series; more are not carried. */
#define CA_PROM_CARRY_MAX 256
enum ca_err ca_prom_carry_new(struct ca_prom_carry **out);
void ca_prom_carry_free(struct ca_prom_carry *c);
void ca_prom_init_capture(struct ca_prom *p, struct ca_buf *scratch, const char *cluster_id,
                          struct ca_prom_carry *c);
void ca_prom_set_carry(struct ca_prom *p, struct ca_prom_carry *c);
/* "# HELP" and "# TYPE" lines; type is "counter", "gauge" or "histogram". */
void ca_prom_family(struct ca_prom *p, const char *name, const char *type, const char *help);
/* One sample line. label_name may be NULL for none. */
void ca_prom_sample(struct ca_prom *p, const char *name, const char *label_name,
                    const char *label_value, double value);
/* One sample with several extra labels given as name, value pairs ending
 * with NULL (e.g. agent_info's version labels). */
void ca_prom_sample_labels(struct ca_prom *p, const char *name, double value, ...)
	__attribute__((sentinel));
/* Shorthand: family header and one unlabelled (but cluster_id) sample. */
void ca_prom_single(struct ca_prom *p, const char *name, const char *type,
                    const char *help, double value);

void ca_histogram_init(struct ca_histogram *h, const double *bounds, size_t nbounds);
void ca_histogram_observe(struct ca_histogram *h, double value);
/* Family header, _bucket lines with le, _sum and _count. */
void ca_prom_histogram(struct ca_prom *p, const char *name, const char *help,
                       const struct ca_histogram *h);

#endif
