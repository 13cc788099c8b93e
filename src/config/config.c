/* config/config.c: defaults, YAML file, COLLECT_AGENT_* environment, flags,
 * validation.
 *
 * Every key lives in one table (path, kind, field offset, default text), so
 * the defaults, the YAML walker, the environment names and the error messages
 * cannot disagree about which keys exist. Values from every source go through
 * the same text parser (set_text), so "30s" means the same in the file, in
 * the environment and on the command line. */
#include "core/file.h"
#include "config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "config/config_int.h"
#include "core/buf.h"
#include "core/timeutil.h"
#include "log/log.h"

#define MAX_CONFIG_BYTES ((size_t)1 << 20)  /* a config file is a few KiB */
#define MAX_SECRET_BYTES ((size_t)64 << 10)
#define MAX_KEY_PATH 256
#define ENV_PREFIX "COLLECT_AGENT_"
#define ENV_CONFIG "COLLECT_AGENT_CONFIG"

#define SEC ((int64_t)1000)
#define MIN (60 * SEC)
#define HOUR (60 * MIN)
#define MAX_WATCHED_NAMESPACES 1000
#define MAX_SUBJECT_PREFIX 160
#define KIB ((int64_t)1024)
#define MIB (1024 * KIB)
#define GIB (1024 * MIB)

/* ------------------------------------------------------------------------ */
/* The key table                                                            */

enum kind {
	K_STR,      /* char * */
	K_SECRET,   /* char *, wiped when replaced or freed, never quoted in errors */
	K_LIST,     /* struct ca_strlist; text form is comma-separated */
	K_DURATION, /* int64_t milliseconds */
	K_INT64,
	K_INT,
	K_BOOL,
	K_ENCODING, /* enum ca_encoding */
};

struct key_def {
	const char *path;
	enum kind kind;
	size_t offset;
	const char *def; /* default, in the text form set_text parses */
};

#define KEY(path, kind, field, def) { path, kind, offsetof(struct ca_config, field), def }

static const struct key_def keys[] = {
	KEY("cluster.id", K_STR, cluster.id, ""),
	KEY("cluster.detect", K_LIST, cluster.detect, "env,config,eks,gke,aks,node-labels,kube-system-uid"),
	KEY("cluster.node_label_key", K_STR, cluster.node_label_key, ""),
	KEY("cluster.metadata_timeout", K_DURATION, cluster.metadata_timeout_ms, "500ms"),
	KEY("cluster.aws_metadata_endpoint", K_STR, cluster.aws_metadata_endpoint, "http://169.254.169.254"),
	KEY("cluster.gce_metadata_endpoint", K_STR, cluster.gce_metadata_endpoint, "http://metadata.google.internal"),
	KEY("cluster.azure_metadata_endpoint", K_STR, cluster.azure_metadata_endpoint, "http://169.254.169.254"),

	KEY("nats.servers", K_LIST, nats.servers, "nats://127.0.0.1:4222"),
	KEY("nats.encoding", K_ENCODING, nats.encoding, "json"),
	KEY("nats.subject_prefix", K_STR, nats.subject_prefix, "agent"),
	KEY("nats.name", K_STR, nats.name, ""),
	KEY("nats.connect_timeout", K_DURATION, nats.connect_timeout_ms, "2s"),
	KEY("nats.reconnect_wait", K_DURATION, nats.reconnect_wait_ms, "2s"),
	KEY("nats.reconnect_wait_max", K_DURATION, nats.reconnect_wait_max_ms, "30s"),
	KEY("nats.reconnect_jitter", K_DURATION, nats.reconnect_jitter_ms, "100ms"),
	KEY("nats.max_reconnects", K_INT, nats.max_reconnects, "-1"),
	KEY("nats.reconnect_buffer_bytes", K_INT64, nats.reconnect_buffer_bytes, "8388608"),
	KEY("nats.publish_buffer_bytes", K_INT64, nats.publish_buffer_bytes, "4194304"),
	KEY("nats.ping_interval", K_DURATION, nats.ping_interval_ms, "3s"),
	KEY("nats.max_pings_out", K_INT, nats.max_pings_out, "2"),
	KEY("nats.write_deadline", K_DURATION, nats.write_deadline_ms, "1s"),
	KEY("nats.flush_timeout", K_DURATION, nats.flush_timeout_ms, "2s"),
	KEY("nats.jetstream.enabled", K_BOOL, nats.jetstream.enabled, "false"),
	KEY("nats.jetstream.create_stream", K_BOOL, nats.jetstream.create_stream, "false"),
	KEY("nats.jetstream.stream_name", K_STR, nats.jetstream.stream_name, ""),
	KEY("nats.jetstream.duplicate_window", K_DURATION, nats.jetstream.duplicate_window_ms, "2m"),
	KEY("nats.jetstream.ack_timeout", K_DURATION, nats.jetstream.ack_timeout_ms, "5s"),
	KEY("nats.jetstream.max_pending_bytes", K_INT64, nats.jetstream.max_pending_bytes, "4194304"),
	KEY("nats.jetstream.when_full", K_STR, nats.jetstream.when_full, "drop_oldest"),
	KEY("nats.jetstream.retry_backoff", K_DURATION, nats.jetstream.retry_backoff_ms, "500ms"),
	KEY("nats.jetstream.retry_backoff_max", K_DURATION, nats.jetstream.retry_backoff_max_ms, "30s"),
	KEY("nats.tls.enabled", K_BOOL, nats.tls.enabled, "false"),
	KEY("nats.tls.ca_file", K_STR, nats.tls.ca_file, ""),
	KEY("nats.tls.cert_file", K_STR, nats.tls.cert_file, ""),
	KEY("nats.tls.key_file", K_STR, nats.tls.key_file, ""),
	KEY("nats.tls.insecure_skip_verify", K_BOOL, nats.tls.insecure_skip_verify, "false"),
	KEY("nats.auth.token", K_SECRET, nats.auth.token, ""),
	KEY("nats.auth.token_file", K_STR, nats.auth.token_file, ""),
	KEY("nats.auth.user", K_STR, nats.auth.user, ""),
	KEY("nats.auth.password", K_SECRET, nats.auth.password, ""),
	KEY("nats.auth.password_file", K_STR, nats.auth.password_file, ""),
	KEY("nats.auth.credentials_file", K_STR, nats.auth.credentials_file, ""),
	KEY("nats.auth.nkey_seed_file", K_STR, nats.auth.nkey_seed_file, ""),

	KEY("kubernetes.kubeconfig", K_STR, kubernetes.kubeconfig, ""),
	KEY("kubernetes.context", K_STR, kubernetes.context, ""),
	KEY("kubernetes.service_account_dir", K_STR, kubernetes.service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount"),
	KEY("kubernetes.request_timeout", K_DURATION, kubernetes.request_timeout_ms, "10s"),
	KEY("kubernetes.connect_timeout", K_DURATION, kubernetes.connect_timeout_ms, "5s"),
	KEY("kubernetes.stall_timeout", K_DURATION, kubernetes.stall_timeout_ms, "10m"),
	KEY("kubernetes.watch_timeout_min", K_DURATION, kubernetes.watch_timeout_min_ms, "5m"),
	KEY("kubernetes.watch_timeout_max", K_DURATION, kubernetes.watch_timeout_max_ms, "10m"),
	KEY("kubernetes.allow_insecure_http", K_BOOL, kubernetes.allow_insecure_http, "false"),
	KEY("kubernetes.max_list_page_bytes", K_INT64, kubernetes.max_list_page_bytes, "2097152"),
	KEY("kubernetes.page_size", K_INT64, kubernetes.page_size, "500"),
	KEY("kubernetes.max_object_bytes", K_INT64, kubernetes.max_object_bytes, "1048576"),
	KEY("kubernetes.backoff_initial", K_DURATION, kubernetes.backoff_initial_ms, "800ms"),
	KEY("kubernetes.backoff_max", K_DURATION, kubernetes.backoff_max_ms, "30s"),

	KEY("events.enabled", K_BOOL, events.enabled, "true"),
	KEY("events.buffer_size", K_INT64, events.buffer_size, "1000"),
	KEY("events.max_object_bytes", K_INT64, events.max_object_bytes, "1048576"),
	KEY("events.buffer_bytes", K_INT64, events.buffer_bytes, "4194304"),
	KEY("events.since", K_DURATION, events.since_ms, "5m"),
	KEY("events.dedup_window", K_DURATION, events.dedup_window_ms, "1m"),
	KEY("events.dedup_window_bytes", K_INT64, events.dedup_window_bytes, "4194304"),
	KEY("events.state_file", K_STR, events.state_file, ""),
	KEY("events.spool_dir", K_STR, events.spool_dir, ""),
	KEY("events.spool_max_bytes", K_INT64, events.spool_max_bytes, "67108864"),
	KEY("events.spool_segment_bytes", K_INT64, events.spool_segment_bytes, "4194304"),
	KEY("events.api", K_STR, events.api, "core/v1"),
	KEY("events.namespaces", K_LIST, events.namespaces, ""),
	KEY("events.exclude_namespaces", K_LIST, events.exclude_namespaces, ""),
	KEY("events.include_types", K_LIST, events.include_types, "Warning"),
	KEY("events.include_reasons", K_LIST, events.include_reasons, ""),
	KEY("events.exclude_reasons", K_LIST, events.exclude_reasons, ""),
	KEY("events.include_kinds", K_LIST, events.include_kinds, ""),
	KEY("events.exclude_kinds", K_LIST, events.exclude_kinds, ""),
	KEY("events.message_regex", K_STR, events.message_regex, ""),
	KEY("events.exclude_message_regex", K_STR, events.exclude_message_regex, ""),
	KEY("events.min_severity", K_STR, events.min_severity, "info"),
	KEY("events.max_message_bytes", K_INT64, events.max_message_bytes, "4096"),
	KEY("events.namespace_rate", K_INT64, events.namespace_rate, "0"),
	KEY("events.namespace_burst", K_INT64, events.namespace_burst, "100"),

	KEY("metrics.enabled", K_BOOL, metrics.enabled, "true"),
	KEY("metrics.interval", K_DURATION, metrics.interval_ms, "60s"),
	KEY("metrics.max_unhealthy_pods", K_INT64, metrics.max_unhealthy_pods, "50"),
	KEY("metrics.max_payload_bytes", K_INT64, metrics.max_payload_bytes, "0"),
	KEY("metrics.pending_threshold", K_DURATION, metrics.pending_threshold_ms, "5m"),
	KEY("metrics.usage", K_BOOL, metrics.usage, "true"),
	KEY("metrics.max_pods", K_INT64, metrics.max_pods, "150000"),
	KEY("metrics.max_nodes", K_INT64, metrics.max_nodes, "5000"),
	KEY("metrics.max_namespaces", K_INT64, metrics.max_namespaces, "10000"),
	KEY("metrics.max_object_bytes", K_INT64, metrics.max_object_bytes, "524288"),

	KEY("exec.enabled", K_BOOL, exec.enabled, "true"),
	KEY("exec.max_concurrent", K_INT64, exec.max_concurrent, "4"),
	KEY("exec.queue_size", K_INT64, exec.queue_size, "64"),
	KEY("exec.default_timeout", K_DURATION, exec.default_timeout_ms, "30s"),
	KEY("exec.max_timeout", K_DURATION, exec.max_timeout_ms, "5m"),
	KEY("exec.max_output_bytes", K_INT64, exec.max_output_bytes, "1048576"),
	KEY("exec.reply_prefixes", K_LIST, exec.reply_prefixes, "_INBOX."),
	KEY("exec.max_command_bytes", K_INT64, exec.max_command_bytes, "65536"),
	KEY("exec.max_age", K_DURATION, exec.max_age_ms, "5m"),
	KEY("exec.replay_cache_size", K_INT64, exec.replay_cache_size, "10000"),
	KEY("exec.require_signature", K_BOOL, exec.require_signature, "false"),
	KEY("exec.public_key_files", K_LIST, exec.public_key_files, ""),
	KEY("exec.allowed_tools", K_LIST, exec.allowed_tools, "kubectl"),
	KEY("exec.tool_paths", K_LIST, exec.tool_paths, ""),
	KEY("exec.actions", K_LIST, exec.actions,
	    "kubectl get,kubectl describe,kubectl logs,kubectl top,kubectl events,kubectl explain,"
	    "kubectl api-resources,kubectl api-versions,kubectl version,kubectl cluster-info,"
	    "kubectl auth can-i"),
	KEY("exec.allowed_resources", K_LIST, exec.allowed_resources, ""),
	KEY("exec.denied_resources", K_LIST, exec.denied_resources, "secret"),
	KEY("exec.allowed_namespaces", K_LIST, exec.allowed_namespaces, ""),
	KEY("exec.denied_namespaces", K_LIST, exec.denied_namespaces, ""),
	KEY("exec.kubectl_path", K_STR, exec.kubectl_path, ""),
	KEY("exec.work_dir", K_STR, exec.work_dir, "/tmp"),
	KEY("exec.max_memory_bytes", K_INT64, exec.max_memory_bytes, "8589934592"),
	KEY("exec.max_cpu_time", K_DURATION, exec.max_cpu_ms, "1m"),
	KEY("exec.max_processes", K_INT64, exec.max_processes, "256"),
	KEY("exec.max_open_files", K_INT64, exec.max_open_files, "256"),
	KEY("exec.max_file_bytes", K_INT64, exec.max_file_bytes, "16777216"),

	KEY("heartbeat.interval", K_DURATION, heartbeat.interval_ms, "30s"),

	KEY("ha.enabled", K_BOOL, ha.enabled, "false"),
	KEY("ha.lease_name", K_STR, ha.lease_name, ""),
	KEY("ha.lease_namespace", K_STR, ha.lease_namespace, ""),
	KEY("ha.lease_duration", K_DURATION, ha.lease_duration_ms, "15s"),
	KEY("ha.renew_deadline", K_DURATION, ha.renew_deadline_ms, "10s"),
	KEY("ha.retry_period", K_DURATION, ha.retry_period_ms, "2s"),
	KEY("ha.checkpoint_interval", K_DURATION, ha.checkpoint_interval_ms, "5s"),

	KEY("http.listen", K_STR, http.listen, "0.0.0.0:8080"),

	KEY("log.level", K_STR, log.level, "info"),
	KEY("log.format", K_STR, log.format, "json"),
};

#define NKEYS (sizeof keys / sizeof keys[0])

static const struct key_def *find_key(const char *path)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (strcmp(keys[i].path, path) == 0)
			return &keys[i];
	return NULL;
}

/* True when path names a section ("nats", "nats.tls"): some key starts with
 * path followed by a dot. */
static bool is_section(const char *path)
{
	size_t n = strlen(path);
	for (size_t i = 0; i < NKEYS; i++)
		if (strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.')
			return true;
	return false;
}

static void *field_of(struct ca_config *cfg, const struct key_def *k)
{
	return (char *)cfg + k->offset;
}

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* Quote a value for a message: escapes quotes, backslashes and control
 * bytes, and cuts long values so one bad key cannot flood the log. */
static void quote(const char *s, char *out, size_t outlen)
{
	size_t o = 0;
	const size_t limit = 120;
	if (outlen < 8) {
		if (outlen)
			out[0] = '\0';
		return;
	}
	out[o++] = '"';
	size_t i = 0;
	for (; s && s[i] && i < limit; i++) {
		unsigned char c = (unsigned char)s[i];
		char esc[8];
		size_t n;
		if (c == '"' || c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)c;
			n = 2;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(esc, sizeof esc, "\\x%02x", c);
			n = 4;
		} else {
			esc[0] = (char)c;
			n = 1;
		}
		if (o + n + 5 >= outlen)
			break;
		memcpy(out + o, esc, n);
		o += n;
	}
	if (s && s[i] && o + 4 < outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* The one shape of a validation error:
 * <key>: <value quoted> is not <what>; allowed: <allowed> */
static enum ca_err bad_value(char *err, size_t errlen, const char *key, const char *value,
                             const char *what, const char *allowed)
{
	char q[400];
	quote(value ? value : "", q, sizeof q);
	ca_set_err(err, errlen, "%s: %s is not %s; allowed: %s", key, q, what, allowed);
	return CA_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* String lists                                                             */

static void strlist_clear(struct ca_strlist *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static enum ca_err strlist_push(struct ca_strlist *l, const char *s, size_t n)
{
	if (l->count >= SIZE_MAX / sizeof *l->items - 1)
		return CA_ENOMEM;
	char **items = realloc(l->items, (l->count + 1) * sizeof *items);
	if (!items)
		return CA_ENOMEM;
	l->items = items;
	char *copy = strndup(s, n);
	if (!copy)
		return CA_ENOMEM;
	l->items[l->count++] = copy;
	return CA_OK;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* "a, b,,c" -> [a, b, c]: entries are trimmed, empty ones skipped. */
static enum ca_err strlist_split(struct ca_strlist *out, const char *text)
{
	const char *p = text;
	while (*p) {
		const char *comma = strchr(p, ',');
		const char *end = comma ? comma : p + strlen(p);
		const char *a = p, *b = end;
		while (a < b && is_space(*a))
			a++;
		while (b > a && is_space(b[-1]))
			b--;
		if (b > a) {
			enum ca_err rc = strlist_push(out, a, (size_t)(b - a));
			if (rc != CA_OK)
				return rc;
		}
		if (!comma)
			break;
		p = comma + 1;
	}
	return CA_OK;
}

/* ------------------------------------------------------------------------ */
/* Text values                                                              */

static bool parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", "1" };
	static const char *const no[] = { "false", "no", "off", "0" };
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return true;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return true;
		}
	}
	return false;
}

static bool parse_int64(const char *s, int64_t *out)
{
	if (!*s || is_space(*s))
		return false;
	errno = 0;
	char *end = NULL;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end)
		return false;
	*out = (int64_t)v;
	return true;
}

/* Set key k from its text form (defaults, YAML scalars, environment, flags).
 * Lists are comma-separated. */
static enum ca_err set_text(struct ca_config *cfg, const struct key_def *k, const char *text,
                            char *err, size_t errlen)
{
	void *f = field_of(cfg, k);
	switch (k->kind) {
	case K_STR:
	case K_SECRET: {
		char *copy = strdup(text);
		if (!copy)
			return CA_ENOMEM;
		char **sp = f;
		if (k->kind == K_SECRET)
			ca_free_secret(*sp);
		else
			free(*sp);
		*sp = copy;
		return CA_OK;
	}
	case K_LIST: {
		struct ca_strlist fresh = { 0 };
		enum ca_err rc = strlist_split(&fresh, text);
		if (rc != CA_OK) {
			strlist_clear(&fresh);
			return rc;
		}
		strlist_clear(f);
		*(struct ca_strlist *)f = fresh;
		return CA_OK;
	}
	case K_DURATION: {
		int64_t ms;
		if (ca_parse_duration(text, &ms) != CA_OK)
			return bad_value(err, errlen, k->path, text, "a duration",
			                 "a number with unit ms, s, m or h (e.g. 500ms, 30s, 5m)");
		*(int64_t *)f = ms;
		return CA_OK;
	}
	case K_INT64: {
		int64_t v;
		if (!parse_int64(text, &v))
			return bad_value(err, errlen, k->path, text, "an integer",
			                 "a whole number in decimal digits");
		*(int64_t *)f = v;
		return CA_OK;
	}
	case K_INT: {
		int64_t v;
		if (!parse_int64(text, &v) || v < INT_MIN || v > INT_MAX)
			return bad_value(err, errlen, k->path, text, "an integer",
			                 "a whole number in decimal digits");
		*(int *)f = (int)v;
		return CA_OK;
	}
	case K_BOOL: {
		bool v;
		if (!parse_bool(text, &v))
			return bad_value(err, errlen, k->path, text, "a boolean",
			                 "true, false, yes, no, on, off, 1 or 0");
		*(bool *)f = v;
		return CA_OK;
	}
	case K_ENCODING:
		if (strcmp(text, "json") == 0)
			*(enum ca_encoding *)f = CA_ENCODING_JSON;
		else if (strcmp(text, "protobuf") == 0)
			*(enum ca_encoding *)f = CA_ENCODING_PROTOBUF;
		else
			return bad_value(err, errlen, k->path, text, "an encoding", "json, protobuf");
		return CA_OK;
	}
	return CA_EINVAL;
}

/* ------------------------------------------------------------------------ */
/* Defaults and fini                                                        */

void ca_config_fini(struct ca_config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < NKEYS; i++) {
		void *f = field_of(cfg, &keys[i]);
		switch (keys[i].kind) {
		case K_STR: free(*(char **)f); break;
		case K_SECRET: ca_free_secret(*(char **)f); break;
		case K_LIST: strlist_clear(f); break;
		default: break;
		}
	}
	free(cfg->http.listen_host);
	memset(cfg, 0, sizeof *cfg);
}

static enum ca_err parse_listen(const char *s, char **host_out, int *port_out);

enum ca_err ca_config_init_defaults(struct ca_config *cfg)
{
	memset(cfg, 0, sizeof *cfg);
	for (size_t i = 0; i < NKEYS; i++) {
		enum ca_err rc = set_text(cfg, &keys[i], keys[i].def, NULL, 0);
		if (rc != CA_OK) {
			ca_config_fini(cfg);
			return rc;
		}
	}
	enum ca_err rc = parse_listen(cfg->http.listen, &cfg->http.listen_host, &cfg->http.port);
	if (rc != CA_OK)
		ca_config_fini(cfg);
	return rc;
}

const char *ca_config_default_yaml(void)
{
	return ca_config_default_yaml_text;
}

/* ------------------------------------------------------------------------ */
/* YAML                                                                     */

struct yaml_ctx {
	struct ca_config *cfg;
	yaml_document_t *doc;
	const char *name;
	char *err;
	size_t errlen;
};

static const char *node_type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE: return "a single value";
	case YAML_SEQUENCE_NODE: return "a list";
	case YAML_MAPPING_NODE: return "a mapping";
	default: return "nothing";
	}
}

static bool node_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
	       strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* A scalar's text, or NULL (with err set) when it holds a NUL byte, which
 * no C string consumer could see past. */
static const char *scalar_text(struct yaml_ctx *c, const yaml_node_t *n, const char *key)
{
	const char *v = (const char *)n->data.scalar.value;
	if (strlen(v) != n->data.scalar.length) {
		ca_set_err(c->err, c->errlen, "%s: the value at line %lu of %s contains a NUL byte", key,
		        (unsigned long)n->start_mark.line + 1, c->name);
		return NULL;
	}
	return node_is_null(n) ? "" : v;
}

static enum ca_err wrong_type(struct yaml_ctx *c, const char *key, const char *expected,
                              const yaml_node_t *n)
{
	ca_set_err(c->err, c->errlen, "%s: expected %s at line %lu of %s, got %s", key, expected,
	        (unsigned long)n->start_mark.line + 1, c->name, node_type_name(n));
	return CA_EINVAL;
}

static enum ca_err apply_node(struct yaml_ctx *c, const struct key_def *k, yaml_node_t *n)
{
	if (k->kind != K_LIST) {
		if (n->type != YAML_SCALAR_NODE)
			return wrong_type(c, k->path, "a single value", n);
		const char *text = scalar_text(c, n, k->path);
		if (!text)
			return CA_EINVAL;
		return set_text(c->cfg, k, text, c->err, c->errlen);
	}
	if (node_is_null(n)) {
		strlist_clear(field_of(c->cfg, k));
		return CA_OK;
	}
	if (n->type != YAML_SEQUENCE_NODE)
		return wrong_type(c, k->path, "a list", n);
	struct ca_strlist fresh = { 0 };
	enum ca_err rc = CA_OK;
	for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++) {
		yaml_node_t *item = yaml_document_get_node(c->doc, *it);
		if (!item || item->type != YAML_SCALAR_NODE) {
			rc = item ? wrong_type(c, k->path, "a list of single values", item) : CA_EINVAL;
			goto out;
		}
		if (node_is_null(item)) {
			ca_set_err(c->err, c->errlen, "%s: \"\" is not a list entry (line %lu of %s); allowed: non-empty entries",
			        k->path, (unsigned long)item->start_mark.line + 1, c->name);
			rc = CA_EINVAL;
			goto out;
		}
		const char *text = scalar_text(c, item, k->path);
		if (!text) {
			rc = CA_EINVAL;
			goto out;
		}
		rc = strlist_push(&fresh, text, strlen(text));
		if (rc != CA_OK)
			goto out;
	}
	strlist_clear(field_of(c->cfg, k));
	*(struct ca_strlist *)field_of(c->cfg, k) = fresh;
	fresh = (struct ca_strlist){ 0 };
out:
	strlist_clear(&fresh);
	return rc;
}

/* nats.jetstream was a boolean before it became a section: the old form
 * still switches JetStream on or off, with a warning naming the new key, so
 * existing files and environments keep working. */
#define DEPRECATED_JETSTREAM "nats.jetstream"

static void warn_deprecated_jetstream(const char *where, const char *name)
{
	ca_log(CA_LOG_WARN, "config", "nats.jetstream: true|false is deprecated; use nats.jetstream.enabled",
	       where, name, NULL);
}

/* Walk one mapping whose keys are relative to prefix ("" at the top). The
 * recursion is bounded by the table: only known sections are entered, and
 * sections are at most two deep, so alias cycles cannot loop. */
static enum ca_err walk_mapping(struct yaml_ctx *c, yaml_node_t *map, const char *prefix)
{
	enum ca_err dup = ca_config_yaml_check_keys(c->doc, map, c->name, c->err, c->errlen);
	if (dup != CA_OK)
		return dup;
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		yaml_node_t *kn = yaml_document_get_node(c->doc, p->key);
		yaml_node_t *vn = yaml_document_get_node(c->doc, p->value);
		if (!kn || !vn)
			return CA_EINVAL;
		if (kn->type != YAML_SCALAR_NODE) {
			ca_set_err(c->err, c->errlen, "%s: line %lu: a key must be a plain name, not %s",
			        c->name, (unsigned long)kn->start_mark.line + 1, node_type_name(kn));
			return CA_EINVAL;
		}
		char path[MAX_KEY_PATH];
		snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "",
		         (const char *)kn->data.scalar.value);
		const struct key_def *k = find_key(path);
		if (!k && vn->type == YAML_SCALAR_NODE && !node_is_null(vn) && strcmp(path, DEPRECATED_JETSTREAM) == 0) {
			warn_deprecated_jetstream("file", c->name);
			k = find_key(DEPRECATED_JETSTREAM ".enabled");
		}
		if (k) {
			enum ca_err rc = apply_node(c, k, vn);
			if (rc != CA_OK)
				return rc;
		} else if (is_section(path)) {
			if (node_is_null(vn))
				continue;
			if (vn->type != YAML_MAPPING_NODE)
				return wrong_type(c, path, "a mapping", vn);
			enum ca_err rc = walk_mapping(c, vn, path);
			if (rc != CA_OK)
				return rc;
		} else {
			ca_log(CA_LOG_WARN, "config", "unknown config key, ignored", "key", path,
			       "file", c->name, NULL);
		}
	}
	return CA_OK;
}

static enum ca_err yaml_syntax_error(const yaml_parser_t *parser, const char *name, char *err,
                                     size_t errlen)
{
	if (parser->error == YAML_MEMORY_ERROR)
		return CA_ENOMEM;
	ca_set_err(err, errlen, "%s: YAML syntax error at line %lu, column %lu: %s%s%s", name,
	        (unsigned long)parser->problem_mark.line + 1,
	        (unsigned long)parser->problem_mark.column + 1,
	        parser->problem ? parser->problem : "malformed document",
	        parser->context ? " " : "", parser->context ? parser->context : "");
	return CA_EINVAL;
}

/* Apply a YAML document on top of cfg, without validating. */
static enum ca_err apply_yaml(struct ca_config *cfg, const char *data, size_t len,
                              const char *name, char *err, size_t errlen)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	bool have_doc = false, have_extra = false;
	enum ca_err rc = CA_EINVAL;

	if (len > MAX_CONFIG_BYTES) {
		ca_set_err(err, errlen, "%s: larger than %zu bytes", name, MAX_CONFIG_BYTES);
		return CA_ETOOBIG;
	}
	if ((rc = ca_config_yaml_check_depth(data, len, name, err, errlen)) != CA_OK)
		return rc;
	rc = CA_EINVAL;
	if (!yaml_parser_initialize(&parser))
		return CA_ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
	if (!yaml_parser_load(&parser, &doc)) {
		rc = yaml_syntax_error(&parser, name, err, errlen);
		goto out;
	}
	have_doc = true;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		rc = CA_OK; /* empty file: defaults stand */
		goto out;
	}
	/* A second document would be silently ignored; say so instead. */
	if (!yaml_parser_load(&parser, &extra)) {
		rc = yaml_syntax_error(&parser, name, err, errlen);
		goto out;
	}
	have_extra = true;
	if (yaml_document_get_root_node(&extra)) {
		ca_set_err(err, errlen, "%s: holds more than one YAML document; allowed: one", name);
		goto out;
	}
	if (node_is_null(root)) {
		rc = CA_OK;
		goto out;
	}
	if (root->type != YAML_MAPPING_NODE) {
		ca_set_err(err, errlen, "%s: the top level is %s; allowed: a mapping of sections (cluster, nats, ...)",
		        name, node_type_name(root));
		goto out;
	}
	struct yaml_ctx c = { .cfg = cfg, .doc = &doc, .name = name, .err = err, .errlen = errlen };
	rc = walk_mapping(&c, root, "");
out:
	if (have_extra)
		yaml_document_delete(&extra);
	if (have_doc)
		yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Validation                                                               */

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static enum ca_err check_duration(const struct ca_config *cfg, const char *path, int64_t lo,
                                  int64_t hi, char *err, size_t errlen)
{
	const struct key_def *k = find_key(path);
	int64_t v = *(const int64_t *)((const char *)cfg + k->offset);
	if (v >= lo && v <= hi)
		return CA_OK;
	char val[32], a[32], b[32], allowed[96];
	ca_format_duration(v, val, sizeof val);
	ca_format_duration(lo, a, sizeof a);
	ca_format_duration(hi, b, sizeof b);
	snprintf(allowed, sizeof allowed, "a duration from %s to %s", a, b);
	return bad_value(err, errlen, path, val, "in range", allowed);
}

static enum ca_err check_int(const struct ca_config *cfg, const char *path, int64_t lo, int64_t hi,
                             char *err, size_t errlen)
{
	const struct key_def *k = find_key(path);
	const void *f = (const char *)cfg + k->offset;
	int64_t v = k->kind == K_INT ? *(const int *)f : *(const int64_t *)f;
	if (v >= lo && v <= hi)
		return CA_OK;
	char val[32], allowed[96];
	snprintf(val, sizeof val, "%lld", (long long)v);
	snprintf(allowed, sizeof allowed, "an integer from %lld to %lld", (long long)lo, (long long)hi);
	return bad_value(err, errlen, path, val, "in range", allowed);
}

static bool one_of(const char *s, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(s, *set) == 0)
			return true;
	return false;
}

static bool valid_port(const char *s, size_t n, int lo, int *out)
{
	if (n == 0 || n > 5)
		return false;
	int v = 0;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	if (v < lo || v > 65535)
		return false;
	*out = v;
	return true;
}

/* A host name or IPv4 literal: letters, digits, '-', '.', '_'; something
 * made only of digits and dots must be a real IPv4 address. */
static bool valid_host_name(const char *s, size_t n)
{
	if (n == 0 || n > 253)
		return false;
	bool numeric = true;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		bool alnum = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
		if (!alnum && ch != '-' && ch != '.' && ch != '_')
			return false;
		if (!((ch >= '0' && ch <= '9') || ch == '.'))
			numeric = false;
	}
	if (s[0] == '-' || s[0] == '.')
		return false;
	if (numeric) {
		char tmp[256];
		struct in_addr a;
		memcpy(tmp, s, n);
		tmp[n] = '\0';
		return inet_pton(AF_INET, tmp, &a) == 1;
	}
	return true;
}

static bool valid_ipv6(const char *s, size_t n)
{
	char tmp[64];
	struct in6_addr a;
	if (n == 0 || n >= sizeof tmp)
		return false;
	memcpy(tmp, s, n);
	tmp[n] = '\0';
	return inet_pton(AF_INET6, tmp, &a) == 1;
}

/* Split "host:port" or "[v6]:port" (port >= port_min). host_out (optional)
 * receives a heap copy of the host without brackets. Returns false when the
 * text is not of that form. */
static bool split_host_port(const char *s, size_t len, int port_min, bool allow_empty_host,
                            char **host_out, int *port_out)
{
	const char *host, *port;
	size_t host_len;
	if (len > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', len);
		if (!close || close + 1 >= s + len || close[1] != ':')
			return false;
		host = s + 1;
		host_len = (size_t)(close - host);
		if (!valid_ipv6(host, host_len))
			return false;
		port = close + 2;
	} else {
		const char *colon = NULL;
		for (size_t i = 0; i < len; i++)
			if (s[i] == ':')
				colon = s + i;
		if (!colon)
			return false;
		host = s;
		host_len = (size_t)(colon - s);
		if (memchr(host, ':', host_len)) /* an IPv6 literal needs brackets */
			return false;
		if (host_len == 0 ? !allow_empty_host : !valid_host_name(host, host_len))
			return false;
		port = colon + 1;
	}
	int p;
	if (!valid_port(port, (size_t)(s + len - port), port_min, &p))
		return false;
	if (host_out) {
		char *h = host_len ? strndup(host, host_len) : strdup("0.0.0.0");
		if (!h)
			return false;
		*host_out = h;
	}
	*port_out = p;
	return true;
}

static enum ca_err parse_listen(const char *s, char **host_out, int *port_out)
{
	char *host = NULL;
	int port;
	if (!s || !split_host_port(s, strlen(s), 0, true, &host, &port))
		return CA_EINVAL;
	free(*host_out);
	*host_out = host;
	*port_out = port;
	return CA_OK;
}

/* A NATS server as written in nats.servers; user:password@ is allowed but
 * never repeated in messages. */
static bool valid_server(const char *s)
{
	static const char *const schemes[] = { "nats", "tls", "ws", "wss" };
	const char *rest = s;
	const char *sep = strstr(s, "://");
	bool url = sep != NULL;
	if (url) {
		size_t n = (size_t)(sep - s);
		bool known = false;
		for (size_t i = 0; i < 4; i++)
			if (strlen(schemes[i]) == n && strncasecmp(s, schemes[i], n) == 0)
				known = true;
		if (!known)
			return false;
		rest = sep + 3;
	}
	size_t len = strcspn(rest, "/?#");
	if (!url && rest[len])
		return false;
	const char *at = NULL;
	for (size_t i = 0; i < len; i++)
		if (rest[i] == '@')
			at = rest + i;
	if (at) {
		if (!url)
			return false;
		len -= (size_t)(at + 1 - rest);
		rest = at + 1;
	}
	int port;
	return split_host_port(rest, len, 1, false, NULL, &port);
}

/* The server entry with any user:password@ replaced, for messages. */
static void redact_server(const char *s, char *out, size_t outlen)
{
	const char *sep = strstr(s, "://");
	const char *start = sep ? sep + 3 : s;
	size_t len = strcspn(start, "/?#");
	const char *at = NULL;
	for (size_t i = 0; i < len; i++)
		if (start[i] == '@')
			at = start + i;
	if (!at) {
		ca_strlcpy(out, s, outlen);
		return;
	}
	snprintf(out, outlen, "%.*s***@%s", (int)(start - s), s, at + 1);
}

static bool valid_subject_prefix(const char *s)
{
	if (!*s)
		return false;
	const char *tok = s;
	for (const char *p = s;; p++) {
		if (*p == '.' || *p == '\0') {
			if (p == tok)
				return false; /* empty token */
			if (*p == '\0')
				return true;
			tok = p + 1;
			continue;
		}
		unsigned char c = (unsigned char)*p;
		if (c <= 0x20 || c == 0x7f || c == '*' || c == '>')
			return false;
	}
}

bool ca_config_valid_namespace(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
			return false;
	return true;
}

bool ca_config_valid_subdomain(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	size_t label = 0; /* start of the current dot-separated part */
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			/* [a-z0-9]([-a-z0-9]*[a-z0-9])? */
			if (i == label || s[label] == '-' || s[i - 1] == '-')
				return false;
			label = i + 1;
		} else if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-')) {
			return false;
		}
	}
	return true;
}

/* Empty, or 1..80 of [a-z0-9-] starting and ending with [a-z0-9]. */
static bool valid_cluster_id(const char *s)
{
	size_t n = strlen(s);
	if (n == 0)
		return true;
	if (n > 80)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (!alnum && c != '-')
			return false;
		if (!alnum && (i == 0 || i == n - 1))
			return false;
	}
	return true;
}

#define CLUSTER_ID_ALLOWED "empty (detect it) or 1 to 80 characters of a-z, 0-9 and -, starting and ending with a letter or digit"

static bool valid_http_url(const char *s)
{
	const char *rest;
	if (strncmp(s, "http://", 7) == 0)
		rest = s + 7;
	else if (strncmp(s, "https://", 8) == 0)
		rest = s + 8;
	else
		return false;
	size_t n = strcspn(rest, "/?#");
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)rest[i] <= 0x20 || rest[i] == '@')
			return false;
	return true;
}

/* glibc's regcomp expands bounded repeats into automaton states and has no
 * limit of its own: 'a{1000}{1000}{1000}' took 4.4 GB and 30 s. Before it
 * runs, estimate what the pattern expands to (each atom or group times the
 * largest count of the repeats on it, nested repeats multiplying) and
 * refuse patterns that are long, expand too far, or use back-references
 * (whose matching is exponential). Conservative: alternatives add up. */
#define REGEX_MAX_LEN 1024
#define REGEX_MAX_EXPANSION 20000

static const char *regex_cost(const char *re)
{
	/* One entry per open group: its size so far, and the size of the
	 * last atom (what a following repeat applies to). */
	struct {
		uint64_t size, last;
	} stack[64];
	int depth = 0;
	stack[0].size = stack[0].last = 0;
	if (strlen(re) > REGEX_MAX_LEN)
		return "longer than 1024 characters";
	for (const char *p = re; *p; p++) {
		uint64_t atom = 1;
		if (*p == '\\') {
			if (p[1] >= '1' && p[1] <= '9')
				return "a back-reference (its matching time is exponential)";
			if (p[1])
				p++;
		} else if (*p == '[') {
			/* A bracket expression is one atom; ']' first is literal. */
			const char *q = p + 1;
			if (*q == '^')
				q++;
			if (*q == ']')
				q++;
			while (*q && *q != ']') {
				if (*q == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
					const char *e = strchr(q + 2, q[1]);
					q = e && e[1] == ']' ? e + 2 : q + 1;
				} else {
					q++;
				}
			}
			if (!*q)
				return NULL; /* regcomp reports the syntax error */
			p = q;
		} else if (*p == '(') {
			if (++depth == 64)
				return "nested more than 63 groups deep";
			stack[depth].size = stack[depth].last = 0;
			continue;
		} else if (*p == ')') {
			if (depth == 0)
				return NULL;
			atom = stack[depth].size ? stack[depth].size : 1;
			depth--;
		} else if (*p == '|') {
			stack[depth].last = 0;
			continue;
		} else if (*p == '{') {
			char *end = NULL;
			unsigned long lo = strtoul(p + 1, &end, 10), hi = lo;
			if (end && *end == ',')
				hi = end[1] == '}' ? lo + 1 : strtoul(end + 1, &end, 10);
			if (!end || (*end != '}' && *end != ','))
				return NULL;
			uint64_t times = (hi > lo ? hi : lo) + 1;
			/* The repeated atom is already counted once. */
			uint64_t grown = stack[depth].last * times;
			stack[depth].size += grown - stack[depth].last;
			stack[depth].last = grown;
			p = strchr(p, '}');
			if (!p)
				return NULL;
			if (stack[depth].size > REGEX_MAX_EXPANSION)
				return "repeats that expand to more than 20000 states";
			continue;
		} else if (*p == '*' || *p == '+' || *p == '?') {
			continue; /* a loop, not an expansion */
		}
		stack[depth].size += atom;
		stack[depth].last = atom;
		if (stack[depth].size > REGEX_MAX_EXPANSION)
			return "repeats that expand to more than 20000 states";
	}
	return NULL;
}

static enum ca_err check_regex(const char *path, const char *re, char *err, size_t errlen)
{
	if (!re || !*re)
		return CA_OK;
	const char *costly = regex_cost(re);
	if (costly) {
		char what[160];
		snprintf(what, sizeof what, "a bounded regular expression (this one has %s)", costly);
		return bad_value(err, errlen, path, re, what,
		                 "a POSIX extended regular expression of at most 1024 characters, without "
		                 "back-references, whose repeats {m,n} expand to at most 20000 states");
	}
	regex_t rx;
	int rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
	if (rc == 0) {
		regfree(&rx);
		return CA_OK;
	}
	char why[128], what[200];
	regerror(rc, &rx, why, sizeof why);
	snprintf(what, sizeof what, "a valid regular expression (%s)", why);
	return bad_value(err, errlen, path, re, what, "a POSIX extended regular expression");
}

static enum ca_err check_list_entries(const struct ca_strlist *l, const char *path, char *err,
                                      size_t errlen)
{
	for (size_t i = 0; i < l->count; i++) {
		const char *s = l->items[i];
		for (const char *p = s; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == ' ')
				return bad_value(err, errlen, path, s, "a name",
				                 "entries without spaces or control characters");
	}
	return CA_OK;
}

/* A tool or action word: what a command's tool and action fields may hold. */
static bool exec_word(const char *s, size_t n)
{
	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '_'))
			return false;
	return true;
}

static bool has_tool(const struct ca_config *cfg, const char *name, size_t n)
{
	for (size_t i = 0; i < cfg->exec.allowed_tools.count; i++)
		if (strlen(cfg->exec.allowed_tools.items[i]) == n && memcmp(cfg->exec.allowed_tools.items[i], name, n) == 0)
			return true;
	return false;
}

/* exec.allowed_tools are words; every tool but kubectl has its path in
 * exec.tool_paths ("name=/absolute/path"); exec.actions are "tool action"
 * or "tool action subaction" of allowed tools. */
static enum ca_err check_exec_tools(const struct ca_config *cfg, char *err, size_t errlen)
{
	const struct ca_strlist *tools = &cfg->exec.allowed_tools;
	for (size_t i = 0; i < tools->count; i++) {
		const char *t = tools->items[i];
		if (!exec_word(t, strlen(t)))
			return bad_value(err, errlen, "exec.allowed_tools", t, "a tool name",
			                 "lowercase letters, digits, - and _ (at most 64)");
		bool found = strcmp(t, "kubectl") == 0;
		for (size_t j = 0; !found && j < cfg->exec.tool_paths.count; j++) {
			const char *e = cfg->exec.tool_paths.items[j], *eq = strchr(e, '=');
			found = eq && (size_t)(eq - e) == strlen(t) && memcmp(e, t, strlen(t)) == 0;
		}
		if (!found)
			return bad_value(err, errlen, "exec.allowed_tools", t, "a tool with a path",
			                 "kubectl, or a name given a path in exec.tool_paths (name=/absolute/path)");
	}
	for (size_t j = 0; j < cfg->exec.tool_paths.count; j++) {
		const char *e = cfg->exec.tool_paths.items[j], *eq = strchr(e, '=');
		if (!eq || !exec_word(e, (size_t)(eq - e)) || eq[1] != '/' ||
		    ((size_t)(eq - e) == 7 && memcmp(e, "kubectl", 7) == 0))
			return bad_value(err, errlen, "exec.tool_paths", e, "a tool path",
			                 "name=/absolute/path, name made of lowercase letters, digits, - and _, not kubectl (see exec.kubectl_path)");
	}
	const struct ca_strlist *acts = &cfg->exec.actions;
	for (size_t i = 0; i < acts->count; i++) {
		const char *a = acts->items[i], *w[4];
		size_t len[4], nw = 0;
		bool ok = true;
		for (const char *p = a; *p && ok;) {
			if (*p == ' ') {
				ok = p != a && p[1] != '\0' && p[1] != ' ';
				p++;
				continue;
			}
			const char *q = p;
			while (*q && *q != ' ')
				q++;
			if (nw == 4 || !exec_word(p, (size_t)(q - p)))
				ok = false;
			else {
				w[nw] = p;
				len[nw++] = (size_t)(q - p);
			}
			p = q;
		}
		if (!ok || nw < 2 || nw > 3)
			return bad_value(err, errlen, "exec.actions", a, "an action",
			                 "\"tool action\" or \"tool action subaction\" (words of lowercase letters, digits, - and _)");
		if (!has_tool(cfg, w[0], len[0]))
			return bad_value(err, errlen, "exec.actions", a, "an action of an allowed tool",
			                 "an entry whose first word is in exec.allowed_tools");
	}
	return CA_OK;
}

/* A JetStream stream name: the server refuses '.', '*', '>', whitespace,
 * path separators and control bytes, and names longer than 255 bytes. */
static bool valid_stream_name(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 255)
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f || c == '.' || c == '*' || c == '>' || c == '/' || c == '\\')
			return false;
	}
	return true;
}

static enum ca_err check_duration(const struct ca_config *cfg, const char *path, int64_t lo,
                                  int64_t hi, char *err, size_t errlen);
static enum ca_err check_int(const struct ca_config *cfg, const char *path, int64_t lo, int64_t hi,
                             char *err, size_t errlen);

static enum ca_err check_jetstream(const struct ca_config *cfg, char *err, size_t errlen)
{
	enum ca_err rc;
	const char *name = str_or_empty(cfg->nats.jetstream.stream_name);
	if (*name && !valid_stream_name(name))
		return bad_value(err, errlen, "nats.jetstream.stream_name", name, "a JetStream stream name",
		                 "\"\" (AGENT_<cluster ID>) or 1 to 255 characters without '.', '*', '>', "
		                 "whitespace, '/', '\\' or control characters");
	static const char *const when_full[] = { "drop_oldest", "backpressure", NULL };
	if (!one_of(str_or_empty(cfg->nats.jetstream.when_full), when_full))
		return bad_value(err, errlen, "nats.jetstream.when_full", cfg->nats.jetstream.when_full,
		                 "a policy for a full buffer", "drop_oldest, backpressure");
	if ((rc = check_duration(cfg, "nats.jetstream.duplicate_window", 1 * SEC, 24 * HOUR, err, errlen)) ||
	    (rc = check_duration(cfg, "nats.jetstream.ack_timeout", 100, 5 * MIN, err, errlen)) ||
	    (rc = check_int(cfg, "nats.jetstream.max_pending_bytes", 64 * KIB, 1 * GIB, err, errlen)) ||
	    (rc = check_duration(cfg, "nats.jetstream.retry_backoff", 10, 1 * MIN, err, errlen)))
		return rc;
	if (cfg->nats.jetstream.retry_backoff_max_ms < cfg->nats.jetstream.retry_backoff_ms) {
		char a[32], b[32], allowed[96];
		ca_format_duration(cfg->nats.jetstream.retry_backoff_max_ms, a, sizeof a);
		ca_format_duration(cfg->nats.jetstream.retry_backoff_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration of at least nats.jetstream.retry_backoff (%s)", b);
		return bad_value(err, errlen, "nats.jetstream.retry_backoff_max", a, "in range", allowed);
	}
	return check_duration(cfg, "nats.jetstream.retry_backoff_max", 10, 1 * HOUR, err, errlen);
}

#define TRY(expr)                  \
	do {                       \
		rc = (expr);       \
		if (rc != CA_OK)   \
			goto out;  \
	} while (0)

/* ha: client-go's rules (leaderelection.NewLeaderElector): the lease outlives
 * the renew deadline, which outlives a retry with its jitter (1.2). The
 * Lease holds leaseDurationSeconds, so the duration is whole seconds. */
static enum ca_err check_ha(const struct ca_config *cfg, char *err, size_t errlen)
{
	enum ca_err rc = CA_OK;
	char a[32], b[32], allowed[160];
	const char *name = str_or_empty(cfg->ha.lease_name);
	const char *ns = str_or_empty(cfg->ha.lease_namespace);
	if (*name && !ca_config_valid_subdomain(name))
		TRY(bad_value(err, errlen, "ha.lease_name", name, "a Lease name",
		              "a DNS-1123 subdomain: at most 253 of [a-z0-9.-], starting and ending with a letter or "
		              "digit (\"\" = collect-agent-<cluster_id>)"));
	if (*ns && !ca_config_valid_namespace(ns))
		TRY(bad_value(err, errlen, "ha.lease_namespace", ns, "a namespace name",
		              "1-63 of [a-z0-9-], starting and ending with a letter or digit (\"\" = $POD_NAMESPACE, "
		              "else the service account's namespace)"));
	TRY(check_duration(cfg, "ha.lease_duration", 1 * SEC, 1 * HOUR, err, errlen));
	if (cfg->ha.lease_duration_ms % SEC) {
		ca_format_duration(cfg->ha.lease_duration_ms, a, sizeof a);
		TRY(bad_value(err, errlen, "ha.lease_duration", a, "whole seconds",
		              "a duration of whole seconds (the Lease holds leaseDurationSeconds)"));
	}
	TRY(check_duration(cfg, "ha.retry_period", 10, 1 * HOUR, err, errlen));
	TRY(check_duration(cfg, "ha.renew_deadline", 10, 1 * HOUR, err, errlen));
	if (cfg->ha.renew_deadline_ms >= cfg->ha.lease_duration_ms) {
		ca_format_duration(cfg->ha.renew_deadline_ms, a, sizeof a);
		ca_format_duration(cfg->ha.lease_duration_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration shorter than ha.lease_duration (%s)", b);
		TRY(bad_value(err, errlen, "ha.renew_deadline", a, "in range", allowed));
	}
	if (cfg->ha.renew_deadline_ms * 10 <= cfg->ha.retry_period_ms * 12) {
		ca_format_duration(cfg->ha.retry_period_ms, a, sizeof a);
		ca_format_duration(cfg->ha.renew_deadline_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed,
		         "a duration under ha.renew_deadline (%s) divided by 1.2 (a retry's jitter)", b);
		TRY(bad_value(err, errlen, "ha.retry_period", a, "in range", allowed));
	}
	TRY(check_duration(cfg, "ha.checkpoint_interval", 0, 1 * HOUR, err, errlen));
out:
	return rc;
}

enum ca_err ca_config_validate(struct ca_config *cfg, char *err, size_t errlen)
{
	enum ca_err rc = CA_OK;
	char text[512];

	/* cluster */
	if (!valid_cluster_id(str_or_empty(cfg->cluster.id)))
		TRY(bad_value(err, errlen, "cluster.id", cfg->cluster.id, "a cluster ID", CLUSTER_ID_ALLOWED));
	static const char *const sources[] = { "env", "config", "eks", "gke", "aks", "node-labels",
		                               "kube-system-uid", NULL };
	for (size_t i = 0; i < cfg->cluster.detect.count; i++)
		if (!one_of(cfg->cluster.detect.items[i], sources))
			TRY(bad_value(err, errlen, "cluster.detect", cfg->cluster.detect.items[i],
			              "a detection source",
			              "env, config, eks, gke, aks, node-labels, kube-system-uid"));
	if (cfg->cluster.detect.count == 0 && !*str_or_empty(cfg->cluster.id))
		TRY(bad_value(err, errlen, "cluster.detect", "[]", "usable while cluster.id is empty",
		              "at least one of env, config, eks, gke, aks, node-labels, kube-system-uid"));
	TRY(check_duration(cfg, "cluster.metadata_timeout", 10, 1 * MIN, err, errlen));
	static const char *const endpoints[] = { "cluster.aws_metadata_endpoint",
		                                 "cluster.gce_metadata_endpoint",
		                                 "cluster.azure_metadata_endpoint" };
	for (size_t i = 0; i < 3; i++) {
		const char *v = *(char **)field_of(cfg, find_key(endpoints[i]));
		if (!valid_http_url(str_or_empty(v)))
			TRY(bad_value(err, errlen, endpoints[i], v, "an HTTP URL",
			              "http://host[:port] or https://host[:port]"));
	}

	/* nats */
	if (cfg->nats.servers.count == 0)
		TRY(bad_value(err, errlen, "nats.servers", "[]", "a list of servers",
		              "one or more nats://, tls://, ws:// or wss:// URLs or host:port"));
	for (size_t i = 0; i < cfg->nats.servers.count; i++) {
		if (!valid_server(cfg->nats.servers.items[i])) {
			redact_server(cfg->nats.servers.items[i], text, sizeof text);
			TRY(bad_value(err, errlen, "nats.servers", text, "a NATS server address",
			              "a nats://, tls://, ws:// or wss:// URL or host:port, with a host and a port 1 to 65535"));
		}
	}
	if (!valid_subject_prefix(str_or_empty(cfg->nats.subject_prefix)))
		TRY(bad_value(err, errlen, "nats.subject_prefix", cfg->nats.subject_prefix,
		              "a NATS subject prefix",
		              "non-empty dot-separated tokens without spaces or the wildcards * and >"));
	/* The longest subject is <prefix>.heartbeat.<cluster ID of up to 80>:
	 * it must fit NATS's 255 bytes, or subjects would be cut (and commands
	 * never answered). */
	if (strlen(str_or_empty(cfg->nats.subject_prefix)) > MAX_SUBJECT_PREFIX)
		TRY(bad_value(err, errlen, "nats.subject_prefix", cfg->nats.subject_prefix,
		              "a NATS subject prefix short enough",
		              "at most 160 characters (subjects are <prefix>.heartbeat.<cluster ID>, at most 255 bytes)"));
	TRY(check_duration(cfg, "nats.connect_timeout", 10, 10 * MIN, err, errlen));
	TRY(check_duration(cfg, "nats.reconnect_wait", 10, 10 * MIN, err, errlen));
	if (cfg->nats.reconnect_wait_max_ms < cfg->nats.reconnect_wait_ms) {
		char a[32], b[32], allowed[96];
		ca_format_duration(cfg->nats.reconnect_wait_max_ms, a, sizeof a);
		ca_format_duration(cfg->nats.reconnect_wait_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration of at least nats.reconnect_wait (%s)", b);
		TRY(bad_value(err, errlen, "nats.reconnect_wait_max", a, "in range", allowed));
	}
	TRY(check_duration(cfg, "nats.reconnect_wait_max", 10, 1 * HOUR, err, errlen));
	TRY(check_duration(cfg, "nats.reconnect_jitter", 0, 1 * MIN, err, errlen));
	TRY(check_int(cfg, "nats.max_reconnects", -1, INT_MAX, err, errlen));
	TRY(check_int(cfg, "nats.reconnect_buffer_bytes", 0, GIB, err, errlen));
	TRY(check_duration(cfg, "nats.flush_timeout", 0, 1 * MIN, err, errlen));
	TRY(check_int(cfg, "nats.publish_buffer_bytes", 64 * KIB, 1 * GIB, err, errlen));
	TRY(check_duration(cfg, "nats.ping_interval", 100, 10 * MIN, err, errlen));
	TRY(check_int(cfg, "nats.max_pings_out", 1, 100, err, errlen));
	TRY(check_duration(cfg, "nats.write_deadline", 10, 1 * MIN, err, errlen));
	TRY(check_jetstream(cfg, err, errlen));
	bool has_cert = *str_or_empty(cfg->nats.tls.cert_file), has_key = *str_or_empty(cfg->nats.tls.key_file);
	if (has_cert != has_key)
		TRY(bad_value(err, errlen, has_cert ? "nats.tls.key_file" : "nats.tls.cert_file", "",
		              has_cert ? "set while nats.tls.cert_file is" : "set while nats.tls.key_file is",
		              "both nats.tls.cert_file and nats.tls.key_file, or neither"));
	/* Both set is ambiguous (which one did the operator mean?); say so
	 * rather than pick one. The secret itself is never quoted. */
	if (*str_or_empty(cfg->nats.auth.token) && *str_or_empty(cfg->nats.auth.token_file))
		TRY(bad_value(err, errlen, "nats.auth.token_file", cfg->nats.auth.token_file,
		              "usable while nats.auth.token is also set", "only one of nats.auth.token and nats.auth.token_file"));
	if (*str_or_empty(cfg->nats.auth.password) && *str_or_empty(cfg->nats.auth.password_file))
		TRY(bad_value(err, errlen, "nats.auth.password_file", cfg->nats.auth.password_file,
		              "usable while nats.auth.password is also set",
		              "only one of nats.auth.password and nats.auth.password_file"));

	/* kubernetes */
	TRY(check_duration(cfg, "kubernetes.request_timeout", 100, 10 * MIN, err, errlen));
	TRY(check_duration(cfg, "kubernetes.connect_timeout", 100, 5 * MIN, err, errlen));
	TRY(check_duration(cfg, "kubernetes.stall_timeout", 1 * SEC, 24 * HOUR, err, errlen));
	TRY(check_duration(cfg, "kubernetes.watch_timeout_min", 1 * SEC, 1 * HOUR, err, errlen));
	if (cfg->kubernetes.watch_timeout_max_ms < cfg->kubernetes.watch_timeout_min_ms) {
		char a[32], b[32], allowed[96];
		ca_format_duration(cfg->kubernetes.watch_timeout_max_ms, a, sizeof a);
		ca_format_duration(cfg->kubernetes.watch_timeout_min_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration of at least kubernetes.watch_timeout_min (%s)", b);
		TRY(bad_value(err, errlen, "kubernetes.watch_timeout_max", a, "in range", allowed));
	}
	TRY(check_duration(cfg, "kubernetes.watch_timeout_max", 1 * SEC, 1 * HOUR, err, errlen));
	TRY(check_int(cfg, "kubernetes.page_size", 1, 10000, err, errlen));
	TRY(check_int(cfg, "kubernetes.max_list_page_bytes", 1 * MIB, 256 * MIB, err, errlen));
	TRY(check_int(cfg, "kubernetes.max_object_bytes", KIB, 64 * MIB, err, errlen));
	TRY(check_duration(cfg, "kubernetes.backoff_initial", 10, 1 * MIN, err, errlen));
	if (cfg->kubernetes.backoff_max_ms < cfg->kubernetes.backoff_initial_ms) {
		char a[32], b[32], allowed[96];
		ca_format_duration(cfg->kubernetes.backoff_max_ms, a, sizeof a);
		ca_format_duration(cfg->kubernetes.backoff_initial_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration of at least kubernetes.backoff_initial (%s)", b);
		TRY(bad_value(err, errlen, "kubernetes.backoff_max", a, "in range", allowed));
	}
	TRY(check_duration(cfg, "kubernetes.backoff_max", 10, 1 * HOUR, err, errlen));

	/* events */
	TRY(check_int(cfg, "events.buffer_size", 1, 1000000, err, errlen));
	TRY(check_int(cfg, "events.buffer_bytes", 64 * KIB, 1 * GIB, err, errlen));
	TRY(check_int(cfg, "events.max_object_bytes", KIB, 64 * MIB, err, errlen));
	TRY(check_duration(cfg, "events.since", 0, 30 * 24 * HOUR, err, errlen));
	TRY(check_duration(cfg, "events.dedup_window", 0, 24 * HOUR, err, errlen));
	TRY(check_int(cfg, "events.dedup_window_bytes", 64 * KIB, 1 * GIB, err, errlen));
	TRY(check_int(cfg, "events.spool_segment_bytes", 16 * KIB, 1 * GIB, err, errlen));
	TRY(check_int(cfg, "events.spool_max_bytes", 64 * KIB, 1024 * GIB, err, errlen));
	if (cfg->events.spool_max_bytes < 2 * cfg->events.spool_segment_bytes) {
		char v[32], allowed[96];
		snprintf(v, sizeof v, "%lld", (long long)cfg->events.spool_max_bytes);
		snprintf(allowed, sizeof allowed, "at least two segments: 2 x events.spool_segment_bytes = %lld",
		         (long long)(2 * cfg->events.spool_segment_bytes));
		TRY(bad_value(err, errlen, "events.spool_max_bytes", v, "in range", allowed));
	}
	static const char *const apis[] = { "core/v1", "events.k8s.io/v1", NULL };
	if (!one_of(str_or_empty(cfg->events.api), apis))
		TRY(bad_value(err, errlen, "events.api", cfg->events.api, "an events API",
		              "core/v1, events.k8s.io/v1"));
	static const struct { const char *path; size_t off; } lists[] = {
		{ "events.namespaces", offsetof(struct ca_config, events.namespaces) },
		{ "events.exclude_namespaces", offsetof(struct ca_config, events.exclude_namespaces) },
		{ "events.include_types", offsetof(struct ca_config, events.include_types) },
		{ "events.include_reasons", offsetof(struct ca_config, events.include_reasons) },
		{ "events.exclude_reasons", offsetof(struct ca_config, events.exclude_reasons) },
		{ "events.include_kinds", offsetof(struct ca_config, events.include_kinds) },
		{ "events.exclude_kinds", offsetof(struct ca_config, events.exclude_kinds) },
		{ "exec.allowed_tools", offsetof(struct ca_config, exec.allowed_tools) },
		{ "exec.tool_paths", offsetof(struct ca_config, exec.tool_paths) },
		{ "exec.allowed_resources", offsetof(struct ca_config, exec.allowed_resources) },
		{ "exec.denied_resources", offsetof(struct ca_config, exec.denied_resources) },
		{ "exec.allowed_namespaces", offsetof(struct ca_config, exec.allowed_namespaces) },
		{ "exec.denied_namespaces", offsetof(struct ca_config, exec.denied_namespaces) },
	};
	for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++)
		TRY(check_list_entries((const struct ca_strlist *)((const char *)cfg + lists[i].off),
		                       lists[i].path, err, errlen));
	/* The watcher builds one API path per namespace: what it cannot watch
	 * is refused here, where --check-config sees it too. */
	if (cfg->events.namespaces.count > MAX_WATCHED_NAMESPACES) {
		snprintf(text, sizeof text, "%zu namespaces", cfg->events.namespaces.count);
		TRY(bad_value(err, errlen, "events.namespaces", text, "a list of namespaces to watch",
		              "at most 1000 (each is a watch with a connection of its own; an empty list "
		              "watches every namespace with one)"));
	}
	for (size_t i = 0; i < cfg->events.namespaces.count; i++)
		if (!ca_config_valid_namespace(cfg->events.namespaces.items[i]))
			TRY(bad_value(err, errlen, "events.namespaces", cfg->events.namespaces.items[i],
			              "a namespace name",
			              "1 to 63 lower-case letters, digits or '-', starting and ending with a letter or digit"));
	TRY(check_regex("events.message_regex", cfg->events.message_regex, err, errlen));
	TRY(check_regex("events.exclude_message_regex", cfg->events.exclude_message_regex, err, errlen));
	static const char *const severities[] = { "info", "warning", "critical", NULL };
	if (!one_of(str_or_empty(cfg->events.min_severity), severities))
		TRY(bad_value(err, errlen, "events.min_severity", cfg->events.min_severity, "a severity",
		              "info, warning, critical"));
	TRY(check_int(cfg, "events.max_message_bytes", 64, MIB, err, errlen));
	TRY(check_int(cfg, "events.namespace_rate", 0, 1000000, err, errlen));
	TRY(check_int(cfg, "events.namespace_burst", cfg->events.namespace_rate > 0 ? 1 : 0, 1000000,
	              err, errlen));

	/* metrics */
	TRY(check_duration(cfg, "metrics.interval", 1 * SEC, 24 * HOUR, err, errlen));
	TRY(check_int(cfg, "metrics.max_unhealthy_pods", 0, 10000, err, errlen));
	TRY(check_int(cfg, "metrics.max_payload_bytes", 0, 64 * MIB, err, errlen));
	if (cfg->metrics.max_payload_bytes != 0 && cfg->metrics.max_payload_bytes < 4096) {
		ca_set_err(err, errlen, "metrics.max_payload_bytes: %lld is too small: 0 (the server's "
		           "max_payload) or at least 4096", (long long)cfg->metrics.max_payload_bytes);
		return CA_EINVAL;
	}
	TRY(check_duration(cfg, "metrics.pending_threshold", 1 * SEC, 7 * 24 * HOUR, err, errlen));
	TRY(check_int(cfg, "metrics.max_pods", 1, 1000000, err, errlen));
	TRY(check_int(cfg, "metrics.max_nodes", 1, 100000, err, errlen));
	TRY(check_int(cfg, "metrics.max_namespaces", 1, 100000, err, errlen));
	TRY(check_int(cfg, "metrics.max_object_bytes", 64 * 1024, 16 * MIB, err, errlen));

	/* exec */
	TRY(check_int(cfg, "exec.max_concurrent", 1, 1024, err, errlen));
	TRY(check_duration(cfg, "exec.max_timeout", 100, 24 * HOUR, err, errlen));
	{
		char b[32], allowed[96];
		ca_format_duration(cfg->exec.max_timeout_ms, b, sizeof b);
		snprintf(allowed, sizeof allowed, "a duration from 100ms to exec.max_timeout (%s)", b);
		if (cfg->exec.default_timeout_ms < 100 || cfg->exec.default_timeout_ms > cfg->exec.max_timeout_ms) {
			char a[32];
			ca_format_duration(cfg->exec.default_timeout_ms, a, sizeof a);
			TRY(bad_value(err, errlen, "exec.default_timeout", a, "in range", allowed));
		}
	}
	TRY(check_int(cfg, "exec.max_output_bytes", 1, 256 * MIB, err, errlen));
	TRY(check_int(cfg, "exec.max_command_bytes", 1, 16 * MIB, err, errlen));
	TRY(check_int(cfg, "exec.queue_size", 0, 100000, err, errlen));
	TRY(check_duration(cfg, "exec.max_age", 1 * SEC, 24 * HOUR, err, errlen));
	TRY(check_int(cfg, "exec.replay_cache_size", 16, 10000000, err, errlen));
	if (cfg->exec.require_signature && cfg->exec.public_key_files.count == 0)
		TRY(bad_value(err, errlen, "exec.public_key_files", "[]", "set while exec.require_signature is true",
		              "paths to PEM ed25519 public keys that verify commands"));
	for (size_t i = 0; i < cfg->exec.public_key_files.count; i++)
		if (cfg->exec.public_key_files.items[i][0] != '/')
			TRY(bad_value(err, errlen, "exec.public_key_files", cfg->exec.public_key_files.items[i],
			              "an absolute path", "paths starting with /"));
	const char *kubectl = str_or_empty(cfg->exec.kubectl_path);
	if (*kubectl && kubectl[0] != '/')
		TRY(bad_value(err, errlen, "exec.kubectl_path", kubectl, "an absolute path",
		              "a path starting with / (\"\" = the first of /usr/bin/kubectl, /usr/local/bin/kubectl)"));
	TRY(check_exec_tools(cfg, err, errlen));
	if (str_or_empty(cfg->exec.work_dir)[0] != '/')
		TRY(bad_value(err, errlen, "exec.work_dir", cfg->exec.work_dir, "an absolute path",
		              "a writable directory starting with /"));
	TRY(check_int(cfg, "exec.max_memory_bytes", 16 * MIB, 1024 * GIB, err, errlen));
	TRY(check_duration(cfg, "exec.max_cpu_time", 1 * SEC, 24 * HOUR, err, errlen));
	TRY(check_int(cfg, "exec.max_processes", 1, 1000000, err, errlen));
	TRY(check_int(cfg, "exec.max_open_files", 8, 1000000, err, errlen));
	TRY(check_int(cfg, "exec.max_file_bytes", 0, 1024 * GIB, err, errlen));

	/* heartbeat, ha, http, log */
	TRY(check_duration(cfg, "heartbeat.interval", 100, 1 * HOUR, err, errlen));
	TRY(check_ha(cfg, err, errlen));
	if (parse_listen(cfg->http.listen, &cfg->http.listen_host, &cfg->http.port) != CA_OK)
		TRY(bad_value(err, errlen, "http.listen", cfg->http.listen, "a listen address",
		              "host:port or [ipv6]:port, host an IP address or a name (empty = all interfaces), port 0 to 65535 (0 = any free port)"));
	static const char *const levels[] = { "debug", "info", "warn", "error", NULL };
	if (!one_of(str_or_empty(cfg->log.level), levels))
		TRY(bad_value(err, errlen, "log.level", cfg->log.level, "a log level", "debug, info, warn, error"));
	static const char *const formats[] = { "json", "text", NULL };
	if (!one_of(str_or_empty(cfg->log.format), formats))
		TRY(bad_value(err, errlen, "log.format", cfg->log.format, "a log format", "json, text"));
out:
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */

enum ca_err ca_config_load_from_memory(struct ca_config *cfg, const char *data, size_t len,
                                       const char *name, char *err, size_t errlen)
{
	enum ca_err rc = apply_yaml(cfg, data, len, name ? name : "config", err, errlen);
	if (rc != CA_OK)
		return rc;
	return ca_config_validate(cfg, err, errlen);
}

static enum ca_err load_file(struct ca_config *cfg, const char *path, char *err, size_t errlen)
{
	char *data = NULL;
	size_t len = 0;
	char why[128];
	enum ca_err rc = ca_read_file(path, MAX_CONFIG_BYTES, &data, &len, NULL, why, sizeof why);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "%s: cannot read the config file: %s", path, why);
		return rc == CA_ENOMEM ? rc : CA_EIO;
	}
	rc = apply_yaml(cfg, data, len, path, err, errlen);
	free(data);
	return rc;
}

/* "COLLECT_AGENT_" + path upper-cased with '.' -> '_' equals name[0..n)? */
static bool env_name_matches(const char *name, size_t n, const char *path)
{
	size_t plen = sizeof ENV_PREFIX - 1;
	if (n != plen + strlen(path) || strncmp(name, ENV_PREFIX, plen) != 0)
		return false;
	for (size_t i = 0; path[i]; i++) {
		char want = path[i] == '.' ? '_' : (path[i] >= 'a' && path[i] <= 'z') ? (char)(path[i] - 32) : path[i];
		if (name[plen + i] != want)
			return false;
	}
	return true;
}

static const char *env_lookup(char *const *envp, const char *name)
{
	size_t n = strlen(name);
	for (; envp && *envp; envp++)
		if (strncmp(*envp, name, n) == 0 && (*envp)[n] == '=')
			return *envp + n + 1;
	return NULL;
}

static enum ca_err apply_env(struct ca_config *cfg, char *const *envp, char *err, size_t errlen)
{
	for (; envp && *envp; envp++) {
		const char *var = *envp;
		if (strncmp(var, ENV_PREFIX, sizeof ENV_PREFIX - 1) != 0)
			continue;
		const char *eq = strchr(var, '=');
		if (!eq)
			continue;
		size_t n = (size_t)(eq - var);
		if (n == sizeof ENV_CONFIG - 1 && strncmp(var, ENV_CONFIG, n) == 0)
			continue;
		const struct key_def *k = NULL;
		for (size_t i = 0; i < NKEYS && !k; i++)
			if (env_name_matches(var, n, keys[i].path))
				k = &keys[i];
		if (!k && env_name_matches(var, n, DEPRECATED_JETSTREAM)) {
			warn_deprecated_jetstream("variable", "COLLECT_AGENT_NATS_JETSTREAM");
			k = find_key(DEPRECATED_JETSTREAM ".enabled");
		}
		if (!k) {
			char name[MAX_KEY_PATH];
			snprintf(name, sizeof name, "%.*s", (int)(n < 200 ? n : 200), var);
			ca_log(CA_LOG_WARN, "config", "unknown environment variable, ignored", "variable",
			       name, NULL);
			continue;
		}
		enum ca_err rc = set_text(cfg, k, eq + 1, err, errlen);
		if (rc != CA_OK)
			return rc;
	}
	return CA_OK;
}

/* The same reader and rules as every other secret (core/file.h), so what
 * --check-config accepts is what the agent uses. */
static enum ca_err read_secret(char **dst, const char *file_key, const char *path, char *err,
                               size_t errlen)
{
	char *data = NULL;
	char why[128];
	enum ca_err rc = ca_read_secret(path, CA_SECRET_LINE, &data, NULL, NULL, why, sizeof why);
	if (rc != CA_OK) {
		if (rc != CA_ENOMEM)
			ca_set_err(err, errlen, "%s: %s: %s (expected a readable regular file of at most "
			           "64 KiB holding one line)", file_key, path, why);
		return rc == CA_ENOMEM ? rc : (rc == CA_EINVAL || rc == CA_ETOOBIG) ? CA_EINVAL : CA_EIO;
	}
	ca_free_secret(*dst);
	*dst = data;
	return CA_OK;
}

/* nats.c reads a .creds or seed file only when it connects, and then says
 * no more than "not connected": a missing or unreadable one is named here,
 * at start-up, with the key. */
static enum ca_err check_readable_file(const char *key, const char *path, char *err, size_t errlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		const char *why = fd < 0 ? strerror(errno) : "not a regular file";
		ca_set_err(err, errlen, "%s: %s: %s (expected a readable file)", key, path, why);
		if (fd >= 0)
			close(fd);
		return CA_EINVAL;
	}
	close(fd);
	return CA_OK;
}

enum ca_err ca_config_load(struct ca_config *cfg, const struct ca_config_flags *flags,
                           char *const *envp, char *err, size_t errlen)
{
	static const struct ca_config_flags no_flags = { 0 };
	enum ca_err rc = ca_config_init_defaults(cfg);
	if (rc != CA_OK)
		return rc;
	if (!flags)
		flags = &no_flags;
	if (!envp)
		envp = environ;

	const char *path = flags->config_path;
	if (!path || !*path)
		path = env_lookup(envp, ENV_CONFIG);
	if (path && *path)
		TRY(load_file(cfg, path, err, errlen));

	TRY(apply_env(cfg, envp, err, errlen));

	if (flags->kubeconfig)
		TRY(set_text(cfg, find_key("kubernetes.kubeconfig"), flags->kubeconfig, err, errlen));
	if (flags->nats_servers)
		TRY(set_text(cfg, find_key("nats.servers"), flags->nats_servers, err, errlen));
	if (flags->log_level)
		TRY(set_text(cfg, find_key("log.level"), flags->log_level, err, errlen));
	if (flags->cluster_id && !valid_cluster_id(flags->cluster_id))
		TRY(bad_value(err, errlen, "--cluster-id", flags->cluster_id, "a cluster ID", CLUSTER_ID_ALLOWED));

	TRY(ca_config_validate(cfg, err, errlen));

	if (*str_or_empty(cfg->nats.auth.token_file))
		TRY(read_secret(&cfg->nats.auth.token, "nats.auth.token_file", cfg->nats.auth.token_file, err, errlen));
	if (*str_or_empty(cfg->nats.auth.password_file))
		TRY(read_secret(&cfg->nats.auth.password, "nats.auth.password_file", cfg->nats.auth.password_file,
		                err, errlen));
	if (*str_or_empty(cfg->nats.auth.credentials_file))
		TRY(check_readable_file("nats.auth.credentials_file", cfg->nats.auth.credentials_file, err, errlen));
	else if (*str_or_empty(cfg->nats.auth.nkey_seed_file))
		TRY(check_readable_file("nats.auth.nkey_seed_file", cfg->nats.auth.nkey_seed_file, err, errlen));
out:
	return rc;
}

void ca_config_watch_timeouts(const struct ca_config *cfg, int64_t *min_ms, int64_t *max_ms)
{
	int64_t max = cfg->kubernetes.watch_timeout_max_ms;
	int64_t min = cfg->kubernetes.watch_timeout_min_ms;
	if (cfg->kubernetes.stall_timeout_ms > 0 && max > cfg->kubernetes.stall_timeout_ms / 2)
		max = cfg->kubernetes.stall_timeout_ms / 2;
	if (max < 1000)
		max = 1000;
	if (min > max)
		min = max;
	*min_ms = min;
	*max_ms = max;
}
