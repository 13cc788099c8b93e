/* log/log.h: structured logs, one record per line on stderr.
 *
 * JSON (default): {"ts":"…","level":"info","component":"bus",
 * "cluster_id":"…","msg":"…", <fields>}. Text: "ts LEVEL component: msg k=v".
 * Fields are string key/value pairs; callers never pass secrets. A record
 * is valid JSON whatever bytes its strings hold (invalid UTF-8 becomes
 * U+FFFD) and stays one line; one over 256 KiB is cut and says so
 * ("log_truncated":true). A record is written with one write(2) call
 * under a lock (looping only if the kernel takes it in pieces), so records
 * from different threads never interleave. Any thread may log; configure
 * before starting threads. */
#ifndef CA_LOG_LOG_H
#define CA_LOG_LOG_H

#include <stdbool.h>

#include "core/err.h"

enum ca_log_level { CA_LOG_DEBUG = 0, CA_LOG_INFO, CA_LOG_WARN, CA_LOG_ERROR };

/* The most one record being written takes (its text once escaped), for the
 * memory budget: 256 KiB of content, each byte escaped to at most six. */
#define CA_LOG_RECORD_MAX ((size_t)6 * (256 << 10) + 256)

/* Parse "debug", "info", "warn"/"warning", "error". */
enum ca_err ca_log_level_parse(const char *s, enum ca_log_level *out);
const char *ca_log_level_name(enum ca_log_level level);

/* Records below level are dropped; json selects the JSON format. */
void ca_log_configure(enum ca_log_level level, bool json);
/* The cluster ID attached to every record from now on (copied). */
void ca_log_set_cluster_id(const char *cluster_id);
/* Write records to fd instead of 2 (tests). */
void ca_log_set_fd(int fd);
bool ca_log_enabled(enum ca_log_level level);

/* Log msg with string fields given as key, value pairs ending with NULL.
 * A NULL value is written as null (JSON) or "-" (text). */
void ca_log(enum ca_log_level level, const char *component, const char *msg, ...)
	__attribute__((sentinel));
/* Log a printf-formatted message without fields. */
void ca_logf(enum ca_log_level level, const char *component, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
