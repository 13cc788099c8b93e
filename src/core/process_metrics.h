/* core/process_metrics.h: the standard Prometheus process collector.
 *
 * Renders the process_* families that every Prometheus client library
 * exports, read from /proc/self (Linux only):
 *
 *   process_cpu_seconds_total       counter  user + system CPU time
 *   process_resident_memory_bytes   gauge    resident set size
 *   process_virtual_memory_bytes    gauge    virtual memory size
 *   process_open_fds                gauge    open file descriptors
 *   process_max_fds                 gauge    soft RLIMIT_NOFILE
 *   process_start_time_seconds      gauge    start time, seconds since the epoch
 *
 * A family whose source cannot be read is left out rather than written with
 * a made-up value. Samples carry the writer's cluster_id label like every
 * other family of the agent. Nothing is kept between calls and nothing is
 * logged. Any thread, though the ca_prom writer itself belongs to one. */
#ifndef CA_CORE_PROCESS_METRICS_H
#define CA_CORE_PROCESS_METRICS_H

#include <stdint.h>

#include "core/prom.h"

/* Append the process_* families to p. */
void ca_process_render_metrics(struct ca_prom *p);

/* Resident set size of this process in bytes; -1 when /proc cannot be
 * read. */
int64_t ca_process_rss_bytes(void);

#endif
