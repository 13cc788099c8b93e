/* Unit tests of the config module: defaults, YAML, environment, flags,
 * validation messages, secrets, and the kubeconfig reader. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "config/config.h"
#include "config/config_int.h"
#include "config/kubeconfig.h"
#include "log/log.h"

static char tmpdir[256];

static void write_file(const char *name, const char *text, char *path_out, size_t outlen)
{
	snprintf(path_out, outlen, "%s/%s", tmpdir, name);
	FILE *f = fopen(path_out, "wb");
	if (!f) {
		perror(path_out);
		exit(2);
	}
	fputs(text, f);
	fclose(f);
}

/* Logs go to a temp file while a test needs to see them. */
static int log_fd = -1;
static char log_path[300];

static void capture_logs(void)
{
	snprintf(log_path, sizeof log_path, "%s/log.txt", tmpdir);
	log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	CHECK(log_fd >= 0);
	ca_log_set_fd(log_fd);
}

static char *captured_logs(void)
{
	ca_log_set_fd(2);
	close(log_fd);
	log_fd = -1;
	char *text = check_read_file(log_path, NULL);
	return text ? text : calloc(1, 1);
}

/* Apply yaml on top of the defaults and validate. */
static enum ca_err load_yaml(const char *yaml, char *err, size_t errlen)
{
	struct ca_config cfg;
	enum ca_err rc = ca_config_init_defaults(&cfg);
	if (rc == CA_OK)
		rc = ca_config_load_from_memory(&cfg, yaml, strlen(yaml), "test.yaml", err, errlen);
	ca_config_fini(&cfg);
	return rc;
}

/* ------------------------------------------------------------------------ */

static void check_list_eq(const struct ca_strlist *a, const struct ca_strlist *b, const char *what)
{
	CHECK_INT(a->count, b->count);
	for (size_t i = 0; i < a->count && i < b->count; i++) {
		if (strcmp(a->items[i], b->items[i]) != 0)
			fprintf(stderr, "list %s differs at %zu\n", what, i);
		CHECK_STR(a->items[i], b->items[i]);
	}
}

#define EQ_STR(f) CHECK_STR(a->f, b->f)
#define EQ_INT(f) CHECK_INT(a->f, b->f)
#define EQ_LIST(f) check_list_eq(&a->f, &b->f, #f)

static void compare_configs(const struct ca_config *a, const struct ca_config *b)
{
	EQ_STR(cluster.id);
	EQ_LIST(cluster.detect);
	EQ_STR(cluster.node_label_key);
	EQ_INT(cluster.metadata_timeout_ms);
	EQ_STR(cluster.aws_metadata_endpoint);
	EQ_STR(cluster.gce_metadata_endpoint);
	EQ_STR(cluster.azure_metadata_endpoint);
	EQ_LIST(nats.servers);
	EQ_INT(nats.encoding);
	EQ_STR(nats.subject_prefix);
	EQ_STR(nats.name);
	EQ_INT(nats.connect_timeout_ms);
	EQ_INT(nats.reconnect_wait_ms);
	EQ_INT(nats.reconnect_wait_max_ms);
	EQ_INT(nats.reconnect_jitter_ms);
	EQ_INT(nats.max_reconnects);
	EQ_INT(nats.reconnect_buffer_bytes);
	EQ_INT(nats.flush_timeout_ms);
	EQ_INT(nats.jetstream.enabled);
	EQ_INT(nats.jetstream.create_stream);
	EQ_STR(nats.jetstream.stream_name);
	EQ_INT(nats.jetstream.duplicate_window_ms);
	EQ_INT(nats.jetstream.ack_timeout_ms);
	EQ_INT(nats.jetstream.max_pending_bytes);
	EQ_STR(nats.jetstream.when_full);
	EQ_INT(nats.jetstream.retry_backoff_ms);
	EQ_INT(nats.jetstream.retry_backoff_max_ms);
	EQ_INT(nats.tls.enabled);
	EQ_STR(nats.tls.ca_file);
	EQ_STR(nats.tls.cert_file);
	EQ_STR(nats.tls.key_file);
	EQ_INT(nats.tls.insecure_skip_verify);
	EQ_STR(nats.auth.token);
	EQ_STR(nats.auth.token_file);
	EQ_STR(nats.auth.user);
	EQ_STR(nats.auth.password);
	EQ_STR(nats.auth.password_file);
	EQ_STR(nats.auth.credentials_file);
	EQ_STR(nats.auth.nkey_seed_file);
	EQ_STR(kubernetes.kubeconfig);
	EQ_STR(kubernetes.context);
	EQ_STR(kubernetes.service_account_dir);
	EQ_INT(kubernetes.request_timeout_ms);
	EQ_INT(kubernetes.connect_timeout_ms);
	EQ_INT(kubernetes.stall_timeout_ms);
	EQ_INT(kubernetes.watch_timeout_min_ms);
	EQ_INT(kubernetes.watch_timeout_max_ms);
	EQ_INT(kubernetes.page_size);
	EQ_INT(kubernetes.max_object_bytes);
	EQ_INT(kubernetes.backoff_initial_ms);
	EQ_INT(kubernetes.backoff_max_ms);
	EQ_INT(events.enabled);
	EQ_INT(events.buffer_size);
	EQ_INT(events.since_ms);
	EQ_INT(events.dedup_window_ms);
	EQ_STR(events.state_file);
	EQ_STR(events.spool_dir);
	EQ_INT(events.spool_max_bytes);
	EQ_INT(events.spool_segment_bytes);
	EQ_STR(events.api);
	EQ_LIST(events.namespaces);
	EQ_LIST(events.exclude_namespaces);
	EQ_LIST(events.include_types);
	EQ_LIST(events.include_reasons);
	EQ_LIST(events.exclude_reasons);
	EQ_LIST(events.include_kinds);
	EQ_LIST(events.exclude_kinds);
	EQ_STR(events.message_regex);
	EQ_STR(events.exclude_message_regex);
	EQ_STR(events.min_severity);
	EQ_INT(events.max_message_bytes);
	EQ_INT(events.namespace_rate);
	EQ_INT(events.namespace_burst);
	EQ_INT(metrics.enabled);
	EQ_INT(metrics.interval_ms);
	EQ_INT(metrics.max_unhealthy_pods);
	EQ_INT(metrics.max_payload_bytes);
	EQ_INT(exec.enabled);
	EQ_INT(exec.max_concurrent);
	EQ_INT(exec.default_timeout_ms);
	EQ_INT(exec.max_timeout_ms);
	EQ_INT(exec.max_output_bytes);
	EQ_INT(exec.max_command_bytes);
	EQ_INT(exec.require_signature);
	EQ_LIST(exec.public_key_files);
	EQ_LIST(exec.allowed_tools);
	EQ_LIST(exec.tool_paths);
	EQ_LIST(exec.actions);
	EQ_LIST(exec.allowed_resources);
	EQ_LIST(exec.denied_resources);
	EQ_LIST(exec.allowed_namespaces);
	EQ_LIST(exec.denied_namespaces);
	EQ_STR(exec.kubectl_path);
	EQ_STR(exec.work_dir);
	EQ_INT(exec.queue_size);
	EQ_INT(exec.max_age_ms);
	EQ_INT(exec.replay_cache_size);
	EQ_INT(exec.max_memory_bytes);
	EQ_INT(exec.max_cpu_ms);
	EQ_INT(exec.max_processes);
	EQ_INT(exec.max_open_files);
	EQ_INT(exec.max_file_bytes);
	EQ_INT(heartbeat.interval_ms);
	EQ_STR(http.listen);
	EQ_STR(http.listen_host);
	EQ_INT(http.port);
	EQ_STR(log.level);
	EQ_STR(log.format);
}

static void test_defaults(void)
{
	struct ca_config d;
	char err[512] = "";
	CHECK_INT(ca_config_init_defaults(&d), CA_OK);
	CHECK_INT(ca_config_validate(&d, err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK_STR(d.cluster.id, "");
	CHECK_INT(d.cluster.detect.count, 7);
	CHECK_STR(d.cluster.detect.items[0], "env");
	CHECK_STR(d.cluster.detect.items[6], "kube-system-uid");
	CHECK_INT(d.cluster.metadata_timeout_ms, 500);
	CHECK_STR(d.cluster.aws_metadata_endpoint, "http://169.254.169.254");
	CHECK_STR(d.cluster.gce_metadata_endpoint, "http://metadata.google.internal");
	CHECK_STR(d.cluster.azure_metadata_endpoint, "http://169.254.169.254");
	CHECK_INT(d.nats.servers.count, 1);
	CHECK_STR(d.nats.servers.items[0], "nats://127.0.0.1:4222");
	CHECK_INT(d.nats.encoding, CA_ENCODING_JSON);
	CHECK_STR(d.nats.subject_prefix, "agent");
	CHECK_INT(d.nats.connect_timeout_ms, 2000);
	CHECK_INT(d.nats.reconnect_wait_ms, 2000);
	CHECK_INT(d.nats.reconnect_wait_max_ms, 30000);
	CHECK_INT(d.nats.reconnect_jitter_ms, 100);
	CHECK_INT(d.nats.max_reconnects, -1);
	CHECK_INT(d.nats.reconnect_buffer_bytes, 8 * 1024 * 1024);
	CHECK_INT(d.nats.flush_timeout_ms, 2000);
	CHECK(!d.nats.jetstream.enabled);
	CHECK(!d.nats.jetstream.create_stream);
	CHECK_STR(d.nats.jetstream.stream_name, "");
	CHECK_INT(d.nats.jetstream.duplicate_window_ms, 120000);
	CHECK_INT(d.nats.jetstream.ack_timeout_ms, 5000);
	CHECK_INT(d.nats.jetstream.max_pending_bytes, 4194304);
	CHECK_STR(d.nats.jetstream.when_full, "drop_oldest");
	CHECK_INT(d.kubernetes.request_timeout_ms, 10000);
	CHECK_INT(d.kubernetes.connect_timeout_ms, 5000);
	CHECK_INT(d.kubernetes.stall_timeout_ms, 600000);
	CHECK_INT(d.kubernetes.watch_timeout_min_ms, 300000);
	CHECK_INT(d.kubernetes.watch_timeout_max_ms, 600000);
	CHECK_INT(d.kubernetes.page_size, 500);
	CHECK_INT(d.kubernetes.max_object_bytes, 1048576);
	CHECK_INT(d.kubernetes.backoff_initial_ms, 800);
	CHECK_INT(d.kubernetes.backoff_max_ms, 30000);
	CHECK(d.events.enabled);
	CHECK_INT(d.events.buffer_size, 1000);
	CHECK_INT(d.events.since_ms, 300000);
	CHECK_INT(d.events.dedup_window_ms, 60000);
	CHECK_STR(d.events.api, "core/v1");
	CHECK_STR(d.events.spool_dir, "");
	CHECK_INT(d.events.spool_max_bytes, 64 * 1024 * 1024);
	CHECK_INT(d.events.spool_segment_bytes, 4 * 1024 * 1024);
	CHECK_INT(d.events.include_types.count, 1);
	CHECK_STR(d.events.include_types.items[0], "Warning");
	CHECK_INT(d.events.namespaces.count, 0);
	CHECK_STR(d.events.min_severity, "info");
	CHECK_INT(d.events.max_message_bytes, 4096);
	CHECK(d.metrics.enabled);
	CHECK_INT(d.metrics.interval_ms, 60000);
	CHECK_INT(d.metrics.max_unhealthy_pods, 50);
	CHECK(d.exec.enabled);
	CHECK_INT(d.exec.max_concurrent, 4);
	CHECK_INT(d.exec.default_timeout_ms, 30000);
	CHECK_INT(d.exec.max_timeout_ms, 300000);
	CHECK_INT(d.exec.max_output_bytes, 1048576);
	CHECK_INT(d.exec.max_command_bytes, 65536);
	CHECK_INT(d.exec.allowed_tools.count, 1);
	CHECK_STR(d.exec.allowed_tools.items[0], "kubectl");
	CHECK_STR(d.exec.kubectl_path, "");
	CHECK_INT(d.exec.actions.count, 11);
	CHECK_STR(d.exec.actions.items[10], "kubectl auth can-i");
	CHECK_INT(d.exec.denied_resources.count, 1);
	CHECK_STR(d.exec.denied_resources.items[0], "secret");
	CHECK_INT(d.exec.queue_size, 64);
	CHECK_INT(d.exec.max_age_ms, 300000);
	CHECK_INT(d.exec.replay_cache_size, 10000);
	CHECK_STR(d.exec.work_dir, "/tmp");
	CHECK_INT(d.heartbeat.interval_ms, 30000);
	CHECK_STR(d.http.listen, "0.0.0.0:8080");
	CHECK_STR(d.http.listen_host, "0.0.0.0");
	CHECK_INT(d.http.port, 8080);
	CHECK_STR(d.log.level, "info");
	CHECK_STR(d.log.format, "json");
	ca_config_fini(&d);
	CHECK(d.nats.servers.items == NULL && d.log.level == NULL);
	ca_config_fini(NULL);
}

/* The shipped file must hold every key with exactly the compiled-in
 * default. Starting from a zeroed struct with the false/zero defaults
 * flipped means a key missing from the file shows up as a difference. */
static void test_default_yaml(void)
{
	size_t len = 0;
	char path[512];
	snprintf(path, sizeof path, "%s/config/collect-agent.yaml", CA_SOURCE_ROOT);
	char *disk = check_read_file(path, &len);
	CHECK(disk != NULL);
	const char *embedded = ca_config_default_yaml();
	CHECK(embedded != NULL);
	if (disk && embedded) {
		CHECK_INT(strlen(embedded), len);
		CHECK(strcmp(embedded, disk) == 0);
	}
	free(disk);

	struct ca_config d, y;
	char err[512] = "";
	CHECK_INT(ca_config_init_defaults(&d), CA_OK);
	memset(&y, 0, sizeof y);
	y.nats.encoding = CA_ENCODING_PROTOBUF;
	y.nats.jetstream.enabled = true;
	y.nats.jetstream.create_stream = true;
	y.nats.tls.enabled = true;
	y.nats.tls.insecure_skip_verify = true;
	y.exec.require_signature = true;
	y.events.namespace_rate = 7;
	y.metrics.max_payload_bytes = 7;
	y.http.port = 7;
	capture_logs();
	enum ca_err rc = ca_config_load_from_memory(&y, embedded, strlen(embedded), "default", err, sizeof err);
	char *logs = captured_logs();
	CHECK_INT(rc, CA_OK);
	if (rc != CA_OK)
		fprintf(stderr, "default yaml: %s\n", err);
	CHECK_STR(logs, ""); /* no unknown keys in the documented file */
	free(logs);
	compare_configs(&y, &d);
	ca_config_fini(&y);
	ca_config_fini(&d);
}

/* ------------------------------------------------------------------------ */

struct bad_case {
	const char *yaml;
	const char *key;
	const char *value; /* must appear in the message */
};

static const struct bad_case bad_cases[] = {
	{ "nats: {servers: []}", "nats.servers", "[]" },
	{ "nats: {servers: [\"nats://a:4222\", \"http://b:4222\"]}", "nats.servers", "http://b:4222" },
	{ "nats: {servers: [\"nats://host\"]}", "nats.servers", "nats://host" },
	{ "nats: {servers: [\"nats://:4222\"]}", "nats.servers", "nats://:4222" },
	{ "nats: {servers: [\"host:0\"]}", "nats.servers", "host:0" },
	{ "nats: {servers: [\"host:65536\"]}", "nats.servers", "host:65536" },
	{ "nats: {servers: [\"nats://h st:4222\"]}", "nats.servers", "h st:4222" },
	{ "nats: {encoding: xml}", "nats.encoding", "xml" },
	{ "nats: {subject_prefix: \"a b\"}", "nats.subject_prefix", "a b" },
	{ "nats: {subject_prefix: \"a.*\"}", "nats.subject_prefix", "a.*" },
	{ "nats: {subject_prefix: \"a.>\"}", "nats.subject_prefix", "a.>" },
	{ "nats: {subject_prefix: \"a..b\"}", "nats.subject_prefix", "a..b" },
	{ "nats: {subject_prefix: \"\"}", "nats.subject_prefix", "\"\"" },
	{ "nats: {reconnect_wait: abc}", "nats.reconnect_wait", "abc" },
	{ "nats: {reconnect_wait: 5ms}", "nats.reconnect_wait", "5ms" },
	{ "nats: {reconnect_wait: 11m}", "nats.reconnect_wait", "11m" },
	{ "nats: {reconnect_wait: 10s, reconnect_wait_max: 5s}", "nats.reconnect_wait_max", "5s" },
	{ "nats: {max_reconnects: -2}", "nats.max_reconnects", "-2" },
	{ "nats: {max_reconnects: many}", "nats.max_reconnects", "many" },
	{ "nats: {max_reconnects: 99999999999}", "nats.max_reconnects", "99999999999" },
	{ "nats: {reconnect_buffer_bytes: 1073741825}", "nats.reconnect_buffer_bytes", "1073741825" },
	{ "nats: {reconnect_buffer_bytes: -1}", "nats.reconnect_buffer_bytes", "-1" },
	{ "nats: {jetstream: maybe}", "nats.jetstream", "maybe" },
	{ "nats: {jetstream: {enabled: maybe}}", "nats.jetstream.enabled", "maybe" },
	{ "nats: {jetstream: {stream_name: \"a.b\"}}", "nats.jetstream.stream_name", "a.b" },
	{ "nats: {jetstream: {stream_name: \"a b\"}}", "nats.jetstream.stream_name", "a b" },
	{ "nats: {jetstream: {stream_name: \"A*\"}}", "nats.jetstream.stream_name", "A*" },
	{ "nats: {jetstream: {stream_name: \"A>\"}}", "nats.jetstream.stream_name", "A>" },
	{ "nats: {jetstream: {stream_name: \"a/b\"}}", "nats.jetstream.stream_name", "a/b" },
	{ "nats: {jetstream: {duplicate_window: 0s}}", "nats.jetstream.duplicate_window", "0s" },
	{ "nats: {jetstream: {ack_timeout: 10ms}}", "nats.jetstream.ack_timeout", "10ms" },
	{ "nats: {jetstream: {max_pending_bytes: 1024}}", "nats.jetstream.max_pending_bytes", "1024" },
	{ "nats: {jetstream: {retry_backoff: 2s, retry_backoff_max: 1s}}", "nats.jetstream.retry_backoff_max", "1s" },
	{ "nats: {jetstream: [a]}", "nats.jetstream", "a list" },
	{ "nats: {jetstream: {when_full: block}}", "nats.jetstream.when_full", "block" },
	{ "events: {spool_max_bytes: 1000}", "events.spool_max_bytes", "1000" },
	{ "events: {spool_segment_bytes: 4096}", "events.spool_segment_bytes", "4096" },
	{ "events: {spool_segment_bytes: 1048576, spool_max_bytes: 1048576}", "events.spool_max_bytes", "1048576" },
	{ "nats: {tls: {insecure_skip_verify: 2}}", "nats.tls.insecure_skip_verify", "2" },
	{ "nats: {tls: {cert_file: /c.pem}}", "nats.tls.key_file", "\"\"" },
	{ "heartbeat: {interval: 50ms}", "heartbeat.interval", "50ms" },
	{ "heartbeat: {interval: 2h}", "heartbeat.interval", "2h" },
	{ "heartbeat: {interval: -1s}", "heartbeat.interval", "-1s" },
	{ "metrics: {interval: 500ms}", "metrics.interval", "500ms" },
	{ "metrics: {interval: 25h}", "metrics.interval", "25h" },
	{ "metrics: {enabled: nope}", "metrics.enabled", "nope" },
	{ "events: {buffer_size: 0}", "events.buffer_size", "0" },
	{ "events: {buffer_size: 1000001}", "events.buffer_size", "1000001" },
	{ "events: {buffer_size: 12abc}", "events.buffer_size", "12abc" },
	{ "events: {min_severity: fatal}", "events.min_severity", "fatal" },
	{ "events: {api: events/v2}", "events.api", "events/v2" },
	{ "events: {message_regex: \"(unclosed\"}", "events.message_regex", "(unclosed" },
	{ "events: {exclude_message_regex: \"a[\"}", "events.exclude_message_regex", "a[" },
	{ "events: {since: forever}", "events.since", "forever" },
	{ "kubernetes: {page_size: 0}", "kubernetes.page_size", "0" },
	{ "kubernetes: {page_size: 10001}", "kubernetes.page_size", "10001" },
	{ "kubernetes: {stall_timeout: 500ms}", "kubernetes.stall_timeout", "500ms" },
	{ "kubernetes: {watch_timeout_min: 6m, watch_timeout_max: 5m}", "kubernetes.watch_timeout_max", "5m" },
	{ "kubernetes: {request_timeout: 10x}", "kubernetes.request_timeout", "10x" },
	{ "log: {level: verbose}", "log.level", "verbose" },
	{ "log: {format: xml}", "log.format", "xml" },
	{ "http: {listen: \"8080\"}", "http.listen", "8080" },
	{ "http: {listen: \"host:65536\"}", "http.listen", "host:65536" },
	{ "http: {listen: \"::1:8080\"}", "http.listen", "::1:8080" },
	{ "http: {listen: \"[::g]:8080\"}", "http.listen", "[::g]:8080" },
	{ "http: {listen: \"1.2.3.999:80\"}", "http.listen", "1.2.3.999:80" },
	{ "http: {listen: \"host:-1\"}", "http.listen", "host:-1" },
	{ "cluster: {id: Prod}", "cluster.id", "Prod" },
	{ "cluster: {id: -prod}", "cluster.id", "-prod" },
	{ "cluster: {id: prod-}", "cluster.id", "prod-" },
	{ "cluster: {id: prod_1}", "cluster.id", "prod_1" },
	{ "cluster: {id: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa}",
	  "cluster.id", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" },
	{ "cluster: {detect: [env, azure]}", "cluster.detect", "azure" },
	{ "cluster: {aws_metadata_endpoint: \"ftp://x\"}", "cluster.aws_metadata_endpoint", "ftp://x" },
	{ "exec: {max_concurrent: 0}", "exec.max_concurrent", "0" },
	{ "exec: {max_output_bytes: 0}", "exec.max_output_bytes", "0" },
	{ "exec: {max_command_bytes: -5}", "exec.max_command_bytes", "-5" },
	{ "exec: {default_timeout: 10m}", "exec.default_timeout", "10m" },
	{ "exec: {kubectl_path: kubectl}", "exec.kubectl_path", "kubectl" },
	{ "exec: {require_signature: true}", "exec.public_key_files", "[]" },
	{ "exec: {public_key_files: [key.pem]}", "exec.public_key_files", "key.pem" },
	{ "exec: {allowed_tools: [probe]}", "exec.allowed_tools", "probe" },
	{ "exec: {allowed_tools: [Kubectl]}", "exec.allowed_tools", "Kubectl" },
	{ "exec: {tool_paths: [probe=bin/probe]}", "exec.tool_paths", "probe=bin/probe" },
	{ "exec: {tool_paths: [kubectl=/bin/sh]}", "exec.tool_paths", "kubectl=/bin/sh" },
	{ "exec: {tool_paths: [/bin/sh]}", "exec.tool_paths", "/bin/sh" },
	{ "exec: {actions: [kubectl]}", "exec.actions", "kubectl" },
	{ "exec: {actions: [\"kubectl delete pods now\"]}", "exec.actions", "kubectl delete pods now" },
	{ "exec: {actions: [\"kubectl  get\"]}", "exec.actions", "kubectl  get" },
	{ "exec: {actions: [\"kubectl get \"]}", "exec.actions", "kubectl get " },
	{ "exec: {actions: [\"kubectl Get\"]}", "exec.actions", "kubectl Get" },
	{ "exec: {actions: [\"probe run\"]}", "exec.actions", "probe run" },
	{ "exec: {work_dir: tmp}", "exec.work_dir", "tmp" },
	{ "exec: {max_memory_bytes: 1024}", "exec.max_memory_bytes", "1024" },
	{ "exec: {max_age: 0s}", "exec.max_age", "0s" },
	{ "exec: {replay_cache_size: 1}", "exec.replay_cache_size", "1" },
	{ "exec: {denied_namespaces: [\"kube system\"]}", "exec.denied_namespaces", "kube system" },
	/* wrong YAML types name the key */
	{ "nats: {servers: nats://a:4222}", "nats.servers", "a list" },
	{ "nats: {encoding: [json]}", "nats.encoding", "a list" },
	{ "nats: {subject_prefix: {a: b}}", "nats.subject_prefix", "a mapping" },
	{ "nats: [a, b]", "nats", "a list" },
	{ "nats: {tls: yes}", "nats.tls", "a single value" },
	{ "nats: {servers: [[a]]}", "nats.servers", "a list" },
	{ "heartbeat: {interval: }", "heartbeat.interval", "\"\"" },
};

static void test_invalid(void)
{
	for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
		char err[512] = "";
		enum ca_err rc = load_yaml(bad_cases[i].yaml, err, sizeof err);
		bool ok = rc == CA_EINVAL && strstr(err, bad_cases[i].key) == err &&
		          strstr(err, bad_cases[i].value) != NULL;
		if (!ok)
			fprintf(stderr, "case %zu (%s): rc=%d err=%s\n", i, bad_cases[i].yaml, rc, err);
		CHECK(ok);
	}

	/* The sentence shape of a validation error, in full. */
	char err[512] = "";
	CHECK_INT(load_yaml("nats:\n  reconnect_wait: abc\n", err, sizeof err), CA_EINVAL);
	CHECK_STR(err, "nats.reconnect_wait: \"abc\" is not a duration; allowed: a number with unit ms, s, m or h (e.g. 500ms, 30s, 5m)");
	CHECK_INT(load_yaml("events:\n  buffer_size: 0\n", err, sizeof err), CA_EINVAL);
	CHECK_STR(err, "events.buffer_size: \"0\" is not in range; allowed: an integer from 1 to 1000000");
	CHECK_INT(load_yaml("events:\n  spool_max_bytes: 1048576\n", err, sizeof err), CA_EINVAL);
	CHECK_STR(err, "events.spool_max_bytes: \"1048576\" is not in range; allowed: at least two segments: "
	               "2 x events.spool_segment_bytes = 8388608");
	CHECK_INT(load_yaml("events:\n  message_regex: \"(x\"\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "events.message_regex: \"(x\" is not a valid regular expression (") == err);

	/* A YAML type error names the line. */
	CHECK_INT(load_yaml("log:\n  level: info\nnats:\n  servers: nats://a:4222\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.servers") == err && strstr(err, "line 4") != NULL);

	/* A password inside a server URL never reaches the message. */
	CHECK_INT(load_yaml("nats: {servers: [\"nats://bob:hunter2@host\"]}", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.servers") == err);
	CHECK(strstr(err, "hunter2") == NULL);
	CHECK(strstr(err, "***@host") != NULL);

	/* Control bytes are escaped in messages. */
	CHECK_INT(load_yaml("log: {level: \"a\\nb\"}", err, sizeof err), CA_EINVAL);
	CHECK(strchr(err, '\n') == NULL);
	CHECK(strstr(err, "\"a\\x0ab\"") != NULL);

	/* Two documents are refused rather than half-read. */
	CHECK_INT(load_yaml("log: {level: info}\n---\nlog: {level: debug}\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "more than one YAML document") != NULL);
	CHECK_INT(load_yaml("- a\n- b\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "top level") != NULL);
}

static void test_valid_values(void)
{
	struct ca_config c;
	char err[512] = "";
	const char *yaml =
		"cluster:\n"
		"  id: prod-eu-1\n"
		"  detect: [config]\n"
		"nats:\n"
		"  servers:\n"
		"    - nats://a.example:4222\n"
		"    - tls://user:pw@10.0.0.1:4443\n"
		"    - \"[::1]:4222\"\n"
		"    - wss://b:443/path\n"
		"    - c:4222\n"
		"  encoding: protobuf\n"
		"  subject_prefix: corp.agent\n"
		"  reconnect_wait: 10ms\n"
		"  max_reconnects: 0\n"
		"  jetstream: YES\n"
		"  tls: {enabled: On, insecure_skip_verify: 0}\n"
		"events:\n"
		"  include_types: []\n"
		"  namespaces: [kube-system, default]\n"
		"  message_regex: \"^Back-off\"\n"
		"  min_severity: warning\n"
		"  api: events.k8s.io/v1\n"
		"  enabled: off\n"
		"heartbeat: {interval: 100ms}\n"
		"http: {listen: \"[::]:0\"}\n"
		"log: {level: debug, format: text}\n";
	CHECK_INT(ca_config_init_defaults(&c), CA_OK);
	CHECK_INT(ca_config_load_from_memory(&c, yaml, strlen(yaml), "t", err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK_STR(c.cluster.id, "prod-eu-1");
	CHECK_INT(c.nats.servers.count, 5);
	CHECK_STR(c.nats.servers.items[1], "tls://user:pw@10.0.0.1:4443");
	CHECK_INT(c.nats.encoding, CA_ENCODING_PROTOBUF);
	CHECK_STR(c.nats.subject_prefix, "corp.agent");
	CHECK_INT(c.nats.reconnect_wait_ms, 10);
	CHECK_INT(c.nats.max_reconnects, 0);
	CHECK(c.nats.jetstream.enabled);
	CHECK(c.nats.tls.enabled);
	CHECK(!c.nats.tls.insecure_skip_verify);
	CHECK_INT(c.events.include_types.count, 0);
	CHECK_INT(c.events.namespaces.count, 2);
	CHECK_STR(c.events.namespaces.items[1], "default");
	CHECK_STR(c.events.min_severity, "warning");
	CHECK(!c.events.enabled);
	CHECK_INT(c.heartbeat.interval_ms, 100);
	CHECK_STR(c.http.listen_host, "::");
	CHECK_INT(c.http.port, 0);
	CHECK_STR(c.log.format, "text");
	ca_config_fini(&c);

	static const struct { const char *listen, *host; int port; } listens[] = {
		{ "127.0.0.1:18080", "127.0.0.1", 18080 },
		{ "localhost:80", "localhost", 80 },
		{ ":9090", "0.0.0.0", 9090 },
		{ "[::1]:65535", "::1", 65535 },
	};
	for (size_t i = 0; i < sizeof listens / sizeof listens[0]; i++) {
		char yaml2[128];
		snprintf(yaml2, sizeof yaml2, "http: {listen: \"%s\"}", listens[i].listen);
		CHECK_INT(ca_config_init_defaults(&c), CA_OK);
		CHECK_INT(ca_config_load_from_memory(&c, yaml2, strlen(yaml2), "t", err, sizeof err), CA_OK);
		CHECK_STR(c.http.listen_host, listens[i].host);
		CHECK_INT(c.http.port, listens[i].port);
		ca_config_fini(&c);
	}

	/* An empty document and a null section leave the defaults. */
	CHECK_INT(load_yaml("", err, sizeof err), CA_OK);
	CHECK_INT(load_yaml("# only a comment\n", err, sizeof err), CA_OK);
	CHECK_INT(load_yaml("nats:\nlog: ~\n", err, sizeof err), CA_OK);
}

static void test_syntax_error(void)
{
	char err[512] = "";
	CHECK_INT(load_yaml("log:\n  level: info\nnats:\n  servers: [a, b\n  name: x\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "test.yaml: YAML syntax error at line ") == err);
	CHECK(strstr(err, "column") != NULL);
	CHECK_INT(load_yaml("a: b\n c: d\n  - e\n", err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "YAML syntax error at line 2") != NULL);

	char path[512];
	write_file("broken.yaml", "log:\n  level: info\n   format: json\n", path, sizeof path);
	struct ca_config c;
	struct ca_config_flags f = { .config_path = path };
	char *env[] = { NULL };
	CHECK_INT(ca_config_load(&c, &f, env, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, path) == err);
	CHECK(strstr(err, "line 3") != NULL);
	ca_config_fini(&c);
}

static void test_unreadable(void)
{
	char err[512] = "";
	char path[512];
	snprintf(path, sizeof path, "%s/does-not-exist.yaml", tmpdir);
	struct ca_config c;
	struct ca_config_flags f = { .config_path = path };
	char *env[] = { NULL };
	CHECK_INT(ca_config_load(&c, &f, env, err, sizeof err), CA_EIO);
	CHECK(strstr(err, path) == err);
	CHECK(strstr(err, "no such file") != NULL);
	ca_config_fini(&c);

	/* A directory is not a config file either. */
	f.config_path = tmpdir;
	CHECK_INT(ca_config_load(&c, &f, env, err, sizeof err), CA_EIO);
	CHECK(strstr(err, tmpdir) == err);
	ca_config_fini(&c);
}

static void test_unknown_key_warning(void)
{
	char err[512] = "";
	capture_logs();
	CHECK_INT(load_yaml("nats:\n  servrs: [x]\n  tls: {cafile: /x}\nmystery: 1\n", err, sizeof err), CA_OK);
	char *logs = captured_logs();
	CHECK(strstr(logs, "unknown config key") != NULL);
	CHECK(strstr(logs, "nats.servrs") != NULL);
	CHECK(strstr(logs, "nats.tls.cafile") != NULL);
	CHECK(strstr(logs, "\"mystery\"") != NULL);
	free(logs);

	struct ca_config c;
	char *env[] = { "COLLECT_AGENT_NATS_SERVRS=x", "COLLECT_AGENT_CONFIG=", "PATH=/bin", NULL };
	capture_logs();
	CHECK_INT(ca_config_load(&c, NULL, env, err, sizeof err), CA_OK);
	logs = captured_logs();
	CHECK(strstr(logs, "COLLECT_AGENT_NATS_SERVRS") != NULL);
	CHECK(strstr(logs, "COLLECT_AGENT_CONFIG") == NULL);
	CHECK(strstr(logs, "PATH") == NULL);
	free(logs);
	ca_config_fini(&c);
}

static void test_env(void)
{
	struct ca_config c;
	char err[512] = "";
	char *env[] = {
		"COLLECT_AGENT_NATS_SUBJECT_PREFIX=corp",
		"COLLECT_AGENT_NATS_RECONNECT_WAIT=750ms",
		"COLLECT_AGENT_NATS_SERVERS=nats://a:4222, nats://b:4222",
		"COLLECT_AGENT_NATS_TLS_CA_FILE=/etc/ca.pem",
		"COLLECT_AGENT_NATS_JETSTREAM=true",
		"COLLECT_AGENT_HEARTBEAT_INTERVAL=1s",
		"COLLECT_AGENT_HTTP_LISTEN=127.0.0.1:18080",
		"COLLECT_AGENT_EVENTS_INCLUDE_TYPES=",
		"COLLECT_AGENT_NATS_MAX_RECONNECTS=5",
		NULL,
	};
	CHECK_INT(ca_config_load(&c, NULL, env, err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK_STR(c.nats.subject_prefix, "corp");
	CHECK_INT(c.nats.reconnect_wait_ms, 750);
	CHECK_INT(c.nats.servers.count, 2);
	if (c.nats.servers.count == 2) {
		CHECK_STR(c.nats.servers.items[0], "nats://a:4222");
		CHECK_STR(c.nats.servers.items[1], "nats://b:4222");
	}
	CHECK_STR(c.nats.tls.ca_file, "/etc/ca.pem");
	CHECK(c.nats.jetstream.enabled);
	CHECK_INT(c.heartbeat.interval_ms, 1000);
	CHECK_STR(c.http.listen_host, "127.0.0.1");
	CHECK_INT(c.http.port, 18080);
	CHECK_INT(c.events.include_types.count, 0);
	CHECK_INT(c.nats.max_reconnects, 5);
	ca_config_fini(&c);

	/* A bad env value fails like a bad file value, naming the key. */
	char *bad[] = { "COLLECT_AGENT_NATS_RECONNECT_WAIT=abc", NULL };
	CHECK_INT(ca_config_load(&c, NULL, bad, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.reconnect_wait: \"abc\"") == err);
	ca_config_fini(&c);
	char *bad2[] = { "COLLECT_AGENT_NATS_SERVERS=", NULL };
	CHECK_INT(ca_config_load(&c, NULL, bad2, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.servers") == err);
	ca_config_fini(&c);
}

static void test_precedence(void)
{
	char path[512], other[512], err[512] = "";
	write_file("prec.yaml",
	           "log: {level: debug}\n"
	           "nats: {servers: [\"nats://file:4222\"]}\n"
	           "kubernetes: {kubeconfig: /file/kubeconfig}\n"
	           "heartbeat: {interval: 5s}\n",
	           path, sizeof path);
	write_file("other.yaml", "log: {level: error}\n", other, sizeof other);
	char env_var[600];
	snprintf(env_var, sizeof env_var, "COLLECT_AGENT_CONFIG=%s", path);
	struct ca_config c;

	/* file only (found through $COLLECT_AGENT_CONFIG) */
	char *env_file[] = { env_var, NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_file, err, sizeof err), CA_OK);
	CHECK_STR(c.log.level, "debug");
	CHECK_STR(c.nats.servers.items[0], "nats://file:4222");
	CHECK_STR(c.kubernetes.kubeconfig, "/file/kubeconfig");
	CHECK_INT(c.heartbeat.interval_ms, 5000);
	ca_config_fini(&c);

	/* env over file */
	char *env_both[] = { env_var, "COLLECT_AGENT_LOG_LEVEL=warn", "COLLECT_AGENT_NATS_SERVERS=nats://env:4222",
		             "COLLECT_AGENT_KUBERNETES_KUBECONFIG=/env/kubeconfig", NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_both, err, sizeof err), CA_OK);
	CHECK_STR(c.log.level, "warn");
	CHECK_STR(c.nats.servers.items[0], "nats://env:4222");
	CHECK_STR(c.kubernetes.kubeconfig, "/env/kubeconfig");
	CHECK_INT(c.heartbeat.interval_ms, 5000); /* untouched keys keep the file's value */
	ca_config_fini(&c);

	/* flags over env over file */
	struct ca_config_flags f = { .log_level = "error", .nats_servers = "nats://flag1:4222,nats://flag2:4222",
		                     .kubeconfig = "/flag/kubeconfig", .cluster_id = "prod-1" };
	CHECK_INT(ca_config_load(&c, &f, env_both, err, sizeof err), CA_OK);
	CHECK_STR(c.log.level, "error");
	CHECK_INT(c.nats.servers.count, 2);
	CHECK_STR(c.nats.servers.items[1], "nats://flag2:4222");
	CHECK_STR(c.kubernetes.kubeconfig, "/flag/kubeconfig");
	CHECK_STR(c.cluster.id, ""); /* --cluster-id is the cluster module's business */
	ca_config_fini(&c);

	/* --config wins over $COLLECT_AGENT_CONFIG */
	struct ca_config_flags fc = { .config_path = other };
	CHECK_INT(ca_config_load(&c, &fc, env_file, err, sizeof err), CA_OK);
	CHECK_STR(c.log.level, "error");
	CHECK_STR(c.nats.servers.items[0], "nats://127.0.0.1:4222");
	ca_config_fini(&c);

	/* flag values are validated */
	struct ca_config_flags fb = { .cluster_id = "Bad_ID" };
	CHECK_INT(ca_config_load(&c, &fb, env_file, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "--cluster-id: \"Bad_ID\"") == err);
	ca_config_fini(&c);
	struct ca_config_flags fl = { .log_level = "loud" };
	CHECK_INT(ca_config_load(&c, &fl, env_file, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "log.level: \"loud\"") == err);
	ca_config_fini(&c);
	struct ca_config_flags fn = { .nats_servers = "nats://ok:4222,bad" };
	CHECK_INT(ca_config_load(&c, &fn, env_file, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.servers: \"bad\"") == err);
	ca_config_fini(&c);
}

static void test_secrets(void)
{
	char tok[512], pw[512], cfgpath[512], yaml[2048], err[512] = "";
	write_file("token", "s3cr3t-token\n", tok, sizeof tok);
	write_file("password", "pa55word\r\n", pw, sizeof pw);
	snprintf(yaml, sizeof yaml, "nats:\n  auth:\n    token_file: %s\n    user: bob\n    password_file: %s\n", tok, pw);
	write_file("secrets.yaml", yaml, cfgpath, sizeof cfgpath);
	struct ca_config c;
	struct ca_config_flags f = { .config_path = cfgpath };
	char *env[] = { NULL };
	capture_logs();
	CHECK_INT(ca_config_load(&c, &f, env, err, sizeof err), CA_OK);
	char *logs = captured_logs();
	CHECK_STR(c.nats.auth.token, "s3cr3t-token");
	CHECK_STR(c.nats.auth.password, "pa55word");
	CHECK_STR(c.nats.auth.user, "bob");
	CHECK(strstr(logs, "s3cr3t") == NULL && strstr(logs, "pa55word") == NULL);
	free(logs);
	ca_config_fini(&c);

	/* An unreadable secret file names its key and path, not a secret. */
	char *env_missing[] = { "COLLECT_AGENT_NATS_AUTH_TOKEN_FILE=/nonexistent/token", NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_missing, err, sizeof err), CA_EIO);
	CHECK(strstr(err, "nats.auth.token_file: /nonexistent/token: no such file") == err);
	ca_config_fini(&c);
	/* nats.c would read these only when connecting, and say "not connected". */
	char *env_creds[] = { "COLLECT_AGENT_NATS_AUTH_CREDENTIALS_FILE=/nonexistent/agent.creds", NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_creds, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.auth.credentials_file: /nonexistent/agent.creds: No such file") == err);
	ca_config_fini(&c);
	char *env_seed[] = { "COLLECT_AGENT_NATS_AUTH_NKEY_SEED_FILE=/tmp", NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_seed, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.auth.nkey_seed_file: /tmp: not a regular file") == err);
	ca_config_fini(&c);

	/* The rules of the one secret reader (core/file.h), each named: a
	 * directory, a FIFO (refused without blocking), control bytes inside,
	 * more than 64 KiB. A 5 KiB token is fine, here and in the bus. */
	char dir[512], fifo[512], ctl[512], env_bad[600];
	write_file("secret-dir-placeholder", "x", dir, sizeof dir);
	unlink(dir);
	CHECK(mkdir(dir, 0700) == 0);
	write_file("fifo-placeholder", "x", fifo, sizeof fifo);
	unlink(fifo);
	CHECK(mkfifo(fifo, 0600) == 0);
	write_file("ctl", "tok\r\nX-Injected: 1\n", ctl, sizeof ctl);
	static char big[70 * 1024], five_k[5 * 1024 + 1];
	memset(big, 'a', sizeof big - 1);
	memset(five_k, 'b', sizeof five_k - 1);
	char bigpath[512], fivepath[512];
	write_file("big", big, bigpath, sizeof bigpath);
	write_file("five-k", five_k, fivepath, sizeof fivepath);
	const struct {
		const char *path, *says;
		enum ca_err rc;
	} bad[] = {
		{ dir, "is a directory", CA_EINVAL },
		{ fifo, "is a FIFO", CA_EINVAL },
		{ ctl, "holds control bytes", CA_EINVAL },
		{ bigpath, "larger than 64 KiB", CA_EINVAL },
	};
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		snprintf(env_bad, sizeof env_bad, "COLLECT_AGENT_NATS_AUTH_TOKEN_FILE=%s", bad[i].path);
		char *env_b[] = { env_bad, NULL };
		CHECK_INT(ca_config_load(&c, NULL, env_b, err, sizeof err), bad[i].rc);
		CHECK(strstr(err, "nats.auth.token_file: ") == err);
		CHECK(strstr(err, bad[i].says) != NULL);
		CHECK(strstr(err, "X-Injected") == NULL);
		ca_config_fini(&c);
	}
	snprintf(env_bad, sizeof env_bad, "COLLECT_AGENT_NATS_AUTH_TOKEN_FILE=%s", fivepath);
	char *env_5k[] = { env_bad, NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_5k, err, sizeof err), CA_OK);
	CHECK_INT(strlen(c.nats.auth.token), sizeof five_k - 1);
	ca_config_fini(&c);
	unlink(fifo);
	rmdir(dir);

	/* An empty secret file is a mistake, not an empty password. */
	char empty[512];
	write_file("empty", "\n", empty, sizeof empty);
	char env_empty[600];
	snprintf(env_empty, sizeof env_empty, "COLLECT_AGENT_NATS_AUTH_PASSWORD_FILE=%s", empty);
	char *env_e[] = { env_empty, NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_e, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.auth.password_file") == err);
	ca_config_fini(&c);

	/* Token from the environment, and both sources at once refused
	 * without quoting the token. */
	char *env_tok[] = { "COLLECT_AGENT_NATS_AUTH_TOKEN=envtoken42", NULL };
	CHECK_INT(ca_config_load(&c, NULL, env_tok, err, sizeof err), CA_OK);
	CHECK_STR(c.nats.auth.token, "envtoken42");
	ca_config_fini(&c);
	CHECK_INT(ca_config_load(&c, &f, env_tok, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.auth.token_file") == err);
	CHECK(strstr(err, "envtoken42") == NULL);
	ca_config_fini(&c);
}

/* ------------------------------------------------------------------------ */
/* kubeconfig                                                               */

static const char kubeconfig_text[] =
	"apiVersion: v1\n"
	"kind: Config\n"
	"current-context: dev\n"
	"clusters:\n"
	"- name: dev-cluster\n"
	"  cluster:\n"
	"    server: https://127.0.0.1:6443\n"
	"    certificate-authority: certs/ca.crt\n"
	"    tls-server-name: kubernetes.default\n"
	"- name: prod-cluster\n"
	"  cluster:\n"
	"    server: https://prod:443\n"
	"    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg==\n"
	"    insecure-skip-tls-verify: true\n"
	"contexts:\n"
	"- name: dev\n"
	"  context:\n"
	"    cluster: dev-cluster\n"
	"    user: dev-user\n"
	"    namespace: team-a\n"
	"- name: prod\n"
	"  context: {cluster: prod-cluster, user: prod-user}\n"
	"- name: exec-only\n"
	"  context: {cluster: prod-cluster, user: exec-user}\n"
	"- name: exec-and-token\n"
	"  context: {cluster: prod-cluster, user: exec-token-user}\n"
	"- name: oidc\n"
	"  context: {cluster: prod-cluster, user: oidc-user}\n"
	"- name: ghost-cluster\n"
	"  context: {cluster: nowhere, user: dev-user}\n"
	"- name: ghost-user\n"
	"  context: {cluster: dev-cluster, user: nobody}\n"
	"- name: anonymous\n"
	"  context: {cluster: dev-cluster}\n"
	"- name: basic\n"
	"  context: {cluster: dev-cluster, user: basic-user}\n"
	"users:\n"
	"- name: dev-user\n"
	"  user:\n"
	"    token: abc.def\n"
	"    tokenFile: /var/run/token\n"
	"- name: prod-user\n"
	"  user:\n"
	"    client-certificate: /abs/client.crt\n"
	"    client-key: rel/client.key\n"
	"    client-key-data: a2V5\n"
	"    client-certificate-data: Y2VydA\n"
	"- name: exec-user\n"
	"  user:\n"
	"    exec:\n"
	"      apiVersion: client.authentication.k8s.io/v1beta1\n"
	"      command: aws\n"
	"- name: exec-token-user\n"
	"  user:\n"
	"    token: t0k\n"
	"    exec: {command: aws}\n"
	"- name: oidc-user\n"
	"  user:\n"
	"    auth-provider: {name: oidc}\n"
	"- name: basic-user\n"
	"  user: {username: admin, password: pw}\n";

static void test_kubeconfig(void)
{
	struct ca_kubeconfig kc;
	char err[512] = "";
	char path[512];
	write_file("kubeconfig", kubeconfig_text, path, sizeof path);

	/* current-context, relative path resolved against the file's dir */
	CHECK_INT(ca_kubeconfig_load(path, NULL, &kc, err, sizeof err), CA_OK);
	CHECK_STR(kc.context_name, "dev");
	CHECK_STR(kc.namespace_, "team-a");
	CHECK_STR(kc.server, "https://127.0.0.1:6443");
	CHECK_STR(kc.tls_server_name, "kubernetes.default");
	char want[600];
	snprintf(want, sizeof want, "%s/certs/ca.crt", tmpdir);
	CHECK_STR(kc.certificate_authority, want);
	CHECK(kc.certificate_authority_data == NULL);
	CHECK(!kc.insecure_skip_tls_verify);
	CHECK_STR(kc.token, "abc.def");
	CHECK_STR(kc.token_file, "/var/run/token");
	CHECK(!kc.has_exec && !kc.has_auth_provider);
	ca_kubeconfig_fini(&kc);
	CHECK(kc.server == NULL && kc.token == NULL);

	/* a named context, base64 data with and without padding */
	CHECK_INT(ca_kubeconfig_load(path, "prod", &kc, err, sizeof err), CA_OK);
	CHECK_STR(kc.context_name, "prod");
	CHECK(kc.namespace_ == NULL);
	CHECK(kc.insecure_skip_tls_verify);
	CHECK_STR(kc.certificate_authority_data, "-----BEGIN CERTIFICATE-----\n");
	CHECK_INT(kc.certificate_authority_data_len, 28);
	CHECK_STR(kc.client_certificate, "/abs/client.crt");
	snprintf(want, sizeof want, "%s/rel/client.key", tmpdir);
	CHECK_STR(kc.client_key, want);
	CHECK_STR(kc.client_key_data, "key");
	CHECK_INT(kc.client_key_data_len, 3);
	CHECK_STR(kc.client_certificate_data, "cert");
	CHECK(kc.token == NULL);
	ca_kubeconfig_fini(&kc);

	/* an exec plugin with a token to fall back on is fine, but flagged */
	CHECK_INT(ca_kubeconfig_load(path, "exec-and-token", &kc, err, sizeof err), CA_OK);
	CHECK(kc.has_exec);
	CHECK_STR(kc.token, "t0k");
	ca_kubeconfig_fini(&kc);

	CHECK_INT(ca_kubeconfig_load(path, "anonymous", &kc, err, sizeof err), CA_OK);
	CHECK(kc.token == NULL && kc.username == NULL);
	ca_kubeconfig_fini(&kc);
	CHECK_INT(ca_kubeconfig_load(path, "basic", &kc, err, sizeof err), CA_OK);
	CHECK_STR(kc.username, "admin");
	CHECK_STR(kc.password, "pw");
	ca_kubeconfig_fini(&kc);

	/* errors name the file and what is missing */
	CHECK_INT(ca_kubeconfig_load(path, "exec-only", &kc, err, sizeof err), CA_EUNSUPPORTED);
	CHECK(strstr(err, path) == err);
	CHECK(strstr(err, "user \"exec-user\" uses an exec credential plugin, which collect-agent does not support; use a token or client certificate") != NULL);
	ca_kubeconfig_fini(&kc);
	CHECK_INT(ca_kubeconfig_load(path, "oidc", &kc, err, sizeof err), CA_EUNSUPPORTED);
	CHECK(strstr(err, "auth-provider") != NULL);
	CHECK_INT(ca_kubeconfig_load(path, "x", &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, path) == err && strstr(err, "context \"x\" not found") != NULL);
	CHECK(kc.context_name == NULL); /* nothing half-filled is left behind */
	CHECK_INT(ca_kubeconfig_load(path, "ghost-cluster", &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "cluster \"nowhere\"") != NULL && strstr(err, "not found") != NULL);
	CHECK_INT(ca_kubeconfig_load(path, "ghost-user", &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "user \"nobody\"") != NULL && strstr(err, "not found") != NULL);

	char missing[512];
	snprintf(missing, sizeof missing, "%s/no-kubeconfig", tmpdir);
	CHECK_INT(ca_kubeconfig_load(missing, NULL, &kc, err, sizeof err), CA_EIO);
	CHECK(strstr(err, missing) == err);

	static const char no_current[] = "clusters: []\ncontexts: []\nusers: []\n";
	CHECK_INT(ca_kubeconfig_parse(no_current, strlen(no_current), NULL, NULL, &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "current-context") != NULL);
	static const char bad_b64[] =
		"current-context: c\n"
		"contexts: [{name: c, context: {cluster: k}}]\n"
		"clusters: [{name: k, cluster: {server: \"https://x\", certificate-authority-data: \"QQ=A\"}}]\n";
	CHECK_INT(ca_kubeconfig_parse(bad_b64, strlen(bad_b64), NULL, NULL, &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "certificate-authority-data is not valid base64") != NULL);
	static const char no_server[] =
		"current-context: c\n"
		"contexts: [{name: c, context: {cluster: k}}]\n"
		"clusters: [{name: k, cluster: {insecure-skip-tls-verify: true}}]\n";
	CHECK_INT(ca_kubeconfig_parse(no_server, strlen(no_server), NULL, NULL, &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "cluster \"k\" has no server") != NULL);
	static const char syntax[] = "clusters:\n- name: a\n  cluster: {server: x\n";
	CHECK_INT(ca_kubeconfig_parse(syntax, strlen(syntax), NULL, NULL, &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "YAML syntax error at line") != NULL);
	static const char wrong_type[] = "current-context: c\ncontexts: {c: d}\n";
	CHECK_INT(ca_kubeconfig_parse(wrong_type, strlen(wrong_type), NULL, NULL, &kc, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "contexts") != NULL);

	/* parse from memory without a base dir keeps relative paths as given */
	CHECK_INT(ca_kubeconfig_parse(kubeconfig_text, strlen(kubeconfig_text), NULL, "dev", &kc, err, sizeof err), CA_OK);
	CHECK_STR(kc.certificate_authority, "certs/ca.crt");
	ca_kubeconfig_fini(&kc);
	CHECK_INT(ca_kubeconfig_parse(kubeconfig_text, strlen(kubeconfig_text), "/etc/kube/", "dev", &kc, err, sizeof err), CA_OK);
	CHECK_STR(kc.certificate_authority, "/etc/kube/certs/ca.crt");
	ca_kubeconfig_fini(&kc);
	ca_kubeconfig_fini(NULL);
}

/* Base64 through the public API: the CA data of a one-cluster file. */
static void check_b64(const char *in, const char *want)
{
	char text[512], err[256] = "";
	snprintf(text, sizeof text,
	         "current-context: c\ncontexts: [{name: c, context: {cluster: k}}]\n"
	         "clusters: [{name: k, cluster: {server: \"https://x\", certificate-authority-data: \"%s\"}}]\n",
	         in);
	struct ca_kubeconfig kc;
	enum ca_err rc = ca_kubeconfig_parse(text, strlen(text), NULL, NULL, &kc, err, sizeof err);
	if (want) {
		CHECK_INT(rc, CA_OK);
		CHECK_STR(kc.certificate_authority_data, want);
		CHECK_INT(kc.certificate_authority_data_len, strlen(want));
	} else {
		if (rc != CA_EINVAL)
			fprintf(stderr, "base64 %s accepted\n", in);
		CHECK_INT(rc, CA_EINVAL);
	}
	ca_kubeconfig_fini(&kc);
}

static void test_base64(void)
{
	check_b64("TQ==", "M");
	check_b64("TWE=", "Ma");
	check_b64("TWFu", "Man");
	check_b64("TQ", "M");
	check_b64("TWE", "Ma");
	check_b64("TWFu\\nTWFu", "ManMan");
	check_b64("aGVs bG8=", "hello");
	check_b64("T", NULL);
	check_b64("TQ=", NULL);
	check_b64("TWE==", NULL);
	check_b64("TQ==TQ==", NULL);
	check_b64("TW!u", NULL);
	check_b64("TWFu=", NULL);
}

/* Config that passed --check-config and then misbehaved (issue 8): each is
 * now refused at load, with the key and the reason. */
static void test_hostile_config(void)
{
	char err[1024] = "";
	/* A subject prefix so long that subjects would be cut at 255 bytes. */
	char yaml[2048];
	char prefix[200];
	memset(prefix, 'p', sizeof prefix - 1);
	prefix[sizeof prefix - 1] = '\0';
	snprintf(yaml, sizeof yaml, "nats:\n  subject_prefix: %s\n", prefix);
	CHECK_INT(load_yaml(yaml, err, sizeof err), CA_EINVAL);
	CHECK(strstr(err, "nats.subject_prefix") == err && strstr(err, "at most 160") != NULL);
	prefix[160] = '\0';
	snprintf(yaml, sizeof yaml, "nats:\n  subject_prefix: %s\n", prefix);
	CHECK_INT(load_yaml(yaml, err, sizeof err), CA_OK);

	/* Regular expressions that would take gigabytes or exponential time
	 * (refused before regcomp runs), and ones that are fine. */
	static const char *const bombs[] = { "a{1000}{1000}{1000}", "((a{30}){30}){30}", "(x|y)\\1",
	                                     "a{20001}" };
	for (size_t i = 0; i < sizeof bombs / sizeof bombs[0]; i++) {
		snprintf(yaml, sizeof yaml, "events:\n  message_regex: '%s'\n", bombs[i]);
		CHECK_INT(load_yaml(yaml, err, sizeof err), CA_EINVAL);
		CHECK(strstr(err, "events.message_regex") == err);
	}
	static const char *const fine[] = { "Back-off.*(container|pod)", "^[a-z]{1,63}$", "(a{100}){100}",
	                                    "[]a]{3}", "[[:alpha:]]{2,5}x" };
	for (size_t i = 0; i < sizeof fine / sizeof fine[0]; i++) {
		snprintf(yaml, sizeof yaml, "events:\n  exclude_message_regex: '%s'\n", fine[i]);
		err[0] = '\0';
		CHECK_INT(load_yaml(yaml, err, sizeof err), CA_OK);
		if (err[0])
			fprintf(stderr, "%s: %s\n", fine[i], err);
	}

	/* YAML nested 100,000 deep: refused quickly, naming the line. */
	size_t depth = 100000;
	char *deep = malloc(depth * 2 + 16);
	CHECK(deep != NULL);
	if (deep) {
		size_t n = 0;
		for (size_t i = 0; i < depth; i++)
			deep[n++] = '[';
		for (size_t i = 0; i < depth; i++)
			deep[n++] = ']';
		deep[n] = '\0';
		CHECK_INT(load_yaml(deep, err, sizeof err), CA_EINVAL);
		CHECK(strstr(err, "nested more than 32 levels") != NULL);
		free(deep);
	}

	/* A key twice: an error naming both lines, not a silent pick. */
	CHECK_INT(load_yaml("nats:\n  servers: [nats://a:4222]\n  servers: [nats://b:4222]\n", err,
	                    sizeof err), CA_EINVAL);
	CHECK(strstr(err, "key \"servers\" appears twice") != NULL && strstr(err, "line 2") != NULL);
	CHECK_INT(load_yaml("nats: {}\nnats: {}\n", err, sizeof err), CA_EINVAL);

	/* A kubeconfig with proxy-url: refused, not ignored. */
	static const char kc_proxy[] =
		"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
		"    proxy-url: http://proxy:3128\n  name: c\ncontexts:\n- context:\n    cluster: c\n"
		"  name: x\ncurrent-context: x\n";
	struct ca_kubeconfig kc;
	CHECK_INT(ca_kubeconfig_parse(kc_proxy, sizeof kc_proxy - 1, "/tmp", NULL, &kc, err, sizeof err),
	          CA_EUNSUPPORTED);
	CHECK(strstr(err, "proxy-url is not supported") != NULL);
	ca_kubeconfig_fini(&kc);
	static const char kc_dup[] =
		"apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    server: https://127.0.0.1:6443\n"
		"    server: https://evil:6443\n  name: c\ncontexts:\n- context:\n    cluster: c\n"
		"  name: x\ncurrent-context: x\n";
	CHECK_INT(ca_kubeconfig_parse(kc_dup, sizeof kc_dup - 1, "/tmp", NULL, &kc, err, sizeof err),
	          CA_EINVAL);
	CHECK(strstr(err, "appears twice") != NULL);
	ca_kubeconfig_fini(&kc);
}

/* The section form, and the old scalar form (deprecated) meaning enabled. */
static void test_jetstream_section(void)
{
	struct ca_config c;
	char err[512] = "";
	const char *yaml = "nats:\n  jetstream:\n    enabled: true\n    create_stream: yes\n"
	                   "    stream_name: EVENTS_prod-1\n    duplicate_window: 10m\n    ack_timeout: 1s\n"
	                   "    max_pending_bytes: 65536\n    retry_backoff: 20ms\n    retry_backoff_max: 20ms\n";
	CHECK_INT(ca_config_init_defaults(&c), CA_OK);
	CHECK_INT(ca_config_load_from_memory(&c, yaml, strlen(yaml), "t", err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK(c.nats.jetstream.enabled);
	CHECK(c.nats.jetstream.create_stream);
	CHECK_STR(c.nats.jetstream.stream_name, "EVENTS_prod-1");
	CHECK_INT(c.nats.jetstream.duplicate_window_ms, 600000);
	CHECK_INT(c.nats.jetstream.ack_timeout_ms, 1000);
	CHECK_INT(c.nats.jetstream.max_pending_bytes, 65536);
	CHECK_INT(c.nats.jetstream.retry_backoff_ms, 20);
	CHECK_INT(c.nats.jetstream.retry_backoff_max_ms, 20);
	ca_config_fini(&c);

	const char *old = "nats: {jetstream: false}\n";
	CHECK_INT(ca_config_init_defaults(&c), CA_OK);
	c.nats.jetstream.enabled = true;
	CHECK_INT(ca_config_load_from_memory(&c, old, strlen(old), "t", err, sizeof err), CA_OK);
	CHECK(!c.nats.jetstream.enabled);
	ca_config_fini(&c);
}

int main(void)
{
	snprintf(tmpdir, sizeof tmpdir, "/tmp/test_config.XXXXXX");
	if (!mkdtemp(tmpdir)) {
		perror("mkdtemp");
		return 2;
	}
	test_defaults();
	test_default_yaml();
	test_invalid();
	test_jetstream_section();
	test_valid_values();
	test_syntax_error();
	test_unreadable();
	test_unknown_key_warning();
	test_env();
	test_precedence();
	test_secrets();
	test_kubeconfig();
	test_hostile_config();
	test_base64();

	char cmd[400];
	snprintf(cmd, sizeof cmd, "%s", tmpdir);
	/* remove what the tests wrote (no shell: unlink each known name) */
	static const char *const names[] = { "log.txt", "broken.yaml", "prec.yaml", "other.yaml", "token",
		                             "password", "secrets.yaml", "empty", "kubeconfig" };
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char p[600];
		snprintf(p, sizeof p, "%s/%s", tmpdir, names[i]);
		unlink(p);
	}
	rmdir(cmd);
	return check_report();
}
