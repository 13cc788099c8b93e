#include "log/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/json.h"
#include "core/utf8.h"
#include "core/timeutil.h"

static enum ca_log_level min_level = CA_LOG_INFO;
static bool use_json = true;
static int out_fd = 2;
static char cluster_id[128];
static pthread_mutex_t id_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t write_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = { "debug", "info", "warn", "error" };

/* A record's content stops growing at LOG_SOFT_MAX bytes; the slack above it
 * always holds what closes the record (a quote, the truncation marker,
 * "}\n"), so even a cut record is one line of valid JSON. A string cut to
 * fit below the soft cap may still grow up to six times when escaped (a
 * control byte becomes \u00XX), hence the buffer's hard cap. */
#define LOG_SOFT_MAX ((size_t)256 << 10)
#define LOG_SLACK 256
#define LOG_HARD_MAX (6 * LOG_SOFT_MAX + LOG_SLACK)
_Static_assert(LOG_HARD_MAX <= CA_LOG_RECORD_MAX, "log.h promises this cap");

static bool room(const struct ca_buf *b, bool *truncated)
{
	if (b->len < LOG_SOFT_MAX)
		return true;
	*truncated = true;
	return false;
}

enum ca_err ca_log_level_parse(const char *s, enum ca_log_level *out)
{
	if (!s)
		return CA_EINVAL;
	for (int i = 0; i < 4; i++) {
		if (strcasecmp(s, level_names[i]) == 0) {
			*out = (enum ca_log_level)i;
			return CA_OK;
		}
	}
	if (strcasecmp(s, "warning") == 0) {
		*out = CA_LOG_WARN;
		return CA_OK;
	}
	return CA_EINVAL;
}

const char *ca_log_level_name(enum ca_log_level level)
{
	return (unsigned)level < 4 ? level_names[level] : "info";
}

void ca_log_configure(enum ca_log_level level, bool json)
{
	min_level = level;
	use_json = json;
}

void ca_log_set_cluster_id(const char *id)
{
	pthread_mutex_lock(&id_lock);
	ca_strlcpy(cluster_id, id ? id : "", sizeof cluster_id);
	pthread_mutex_unlock(&id_lock);
}

void ca_log_set_fd(int fd)
{
	out_fd = fd;
}

bool ca_log_enabled(enum ca_log_level level)
{
	return level >= min_level;
}

/* The one JSON escaper (core/json.h), so a record is valid JSON whatever
 * bytes a field holds; a string that would pass the soft cap is cut at a
 * UTF-8 boundary first. */
static void json_string(struct ca_buf *b, const char *s, bool *truncated)
{
	size_t n = strlen(s);
	size_t left = b->len < LOG_SOFT_MAX ? LOG_SOFT_MAX - b->len : 0;
	if (n > left) {
		n = ca_utf8_cut(s, n, left);
		*truncated = true;
	}
	if (ca_json_append_string(b, s, n) != CA_OK) {
		ca_buf_append(b, "\"\"", 2);
		*truncated = true;
	}
}

/* Text format keeps a record on one line: control bytes become '?'. */
static void text_string(struct ca_buf *b, const char *s, bool *truncated)
{
	for (const unsigned char *p = (const unsigned char *)s; *p && room(b, truncated); p++) {
		char c = *p < 0x20 ? '?' : (char)*p;
		ca_buf_append(b, &c, 1);
	}
}

static void emit(enum ca_log_level level, const char *component, const char *msg, va_list fields)
{
	struct ca_buf b;
	char ts[CA_RFC3339_LEN];
	char id[128];
	bool truncated = false;
	ca_buf_init(&b, LOG_HARD_MAX);
	ca_format_rfc3339(ca_now_unix_ms(), ts);
	pthread_mutex_lock(&id_lock);
	memcpy(id, cluster_id, sizeof id);
	pthread_mutex_unlock(&id_lock);

	if (use_json) {
		ca_buf_printf(&b, "{\"ts\":\"%s\",\"level\":\"%s\",\"component\":", ts, ca_log_level_name(level));
		json_string(&b, component, &truncated);
		ca_buf_append_str(&b, ",\"cluster_id\":");
		json_string(&b, id, &truncated);
		ca_buf_append_str(&b, ",\"msg\":");
		json_string(&b, msg, &truncated);
	} else {
		ca_buf_printf(&b, "%s %-5s %s: ", ts, ca_log_level_name(level), component);
		text_string(&b, msg, &truncated);
	}
	if (fields) {
		const char *key;
		while ((key = va_arg(fields, const char *)) != NULL) {
			const char *val = va_arg(fields, const char *);
			if (!room(&b, &truncated))
				break; /* the sentinel need not be reached */
			if (use_json) {
				ca_buf_append(&b, ",", 1);
				json_string(&b, key, &truncated);
				ca_buf_append(&b, ":", 1);
				if (val)
					json_string(&b, val, &truncated);
				else
					ca_buf_append_str(&b, "null");
			} else {
				ca_buf_append(&b, " ", 1);
				text_string(&b, key, &truncated);
				ca_buf_append(&b, "=", 1);
				text_string(&b, val ? val : "-", &truncated);
			}
		}
	}
	if (truncated)
		ca_buf_append_str(&b, use_json ? ",\"log_truncated\":true" : " log_truncated=true");
	ca_buf_append_str(&b, use_json ? "}\n" : "\n");
	if (b.data) {
		/* One write(2) per record; the lock keeps a record whole even
		 * when the kernel takes it in pieces (a pipe above PIPE_BUF),
		 * so records of different threads never interleave. */
		size_t off = 0;
		pthread_mutex_lock(&write_lock);
		while (off < b.len) {
			ssize_t n = write(out_fd, b.data + off, b.len - off);
			if (n <= 0)
				break;
			off += (size_t)n;
		}
		pthread_mutex_unlock(&write_lock);
	}
	ca_buf_fini(&b);
}

static void emit_nofields(enum ca_log_level level, const char *component, const char *msg, ...)
{
	va_list ap;
	va_start(ap, msg);
	emit(level, component, msg, ap);
	va_end(ap);
}

void ca_log(enum ca_log_level level, const char *component, const char *msg, ...)
{
	if (level < min_level)
		return;
	va_list ap;
	va_start(ap, msg);
	emit(level, component, msg, ap);
	va_end(ap);
}

void ca_logf(enum ca_log_level level, const char *component, const char *fmt, ...)
{
	if (level < min_level)
		return;
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	emit_nofields(level, component, msg, (const char *)NULL);
}
