/* Unit tests of the codec: exact JSON, JSON/protobuf agreement for every
 * message, command decoding in both formats and every rejection reason. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec/codec.h"
#include "core/buf.h"
#include "check.h"

#define T_2026 1795307190123LL /* 2026-11-22T00:26:30.123Z */

static bool contains(const char *hay, const char *needle)
{
	return hay && needle && strstr(hay, needle) != NULL;
}

#define CHECK_CONTAINS(hay, needle)                                                        \
	do {                                                                               \
		CHECK(contains((hay), (needle)));                                          \
		if (!contains((hay), (needle)))                                            \
			fprintf(stderr, "   \"%s\" does not contain \"%s\"\n", (hay), (needle)); \
	} while (0)

/* ------------------------------------------------------------- helpers */


/* Encode m both ways, transcode the protobuf to JSON and compare to the
 * JSON encoding; returns the JSON (heap) for further checks. */
static char *round_trip(const char *type, enum ca_err (*enc)(enum ca_codec_format, const void *, struct ca_buf *),
                        const void *m)
{
	struct ca_buf json, pb, back;
	ca_buf_init(&json, 0);
	ca_buf_init(&pb, 0);
	ca_buf_init(&back, 0);
	CHECK_INT(enc(CA_CODEC_JSON, m, &json), CA_OK);
	CHECK_INT(enc(CA_CODEC_PROTOBUF, m, &pb), CA_OK);
	CHECK(pb.len > 0);
	CHECK_INT(ca_codec_protobuf_to_json(type, pb.data, pb.len, &back), CA_OK);
	CHECK_STR(back.data, json.data);
	/* The JSON must parse and be an object. */
	json_error_t jerr;
	json_t *root = json_loadb(json.data, json.len, 0, &jerr);
	CHECK(root && json_is_object(root));
	json_decref(root);
	char *s = ca_buf_take(&json, NULL);
	ca_buf_fini(&pb);
	ca_buf_fini(&back);
	return s;
}

/* Thin adapters so one round_trip serves every message type. */
static enum ca_err enc_agent_info(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_agent_info(f, m, o);
}
static enum ca_err enc_heartbeat(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_heartbeat(f, m, o);
}
static enum ca_err enc_event(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_event(f, m, o);
}
static enum ca_err enc_metrics(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_metrics_sample(f, m, o);
}
static enum ca_err enc_command(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_command(f, m, o);
}
static enum ca_err enc_result(enum ca_codec_format f, const void *m, struct ca_buf *o)
{
	return ca_codec_encode_command_result(f, m, o);
}

/* ------------------------------------------------------- content types */

static void test_content_type(void)
{
	enum ca_codec_format f = CA_CODEC_PROTOBUF;
	CHECK_STR(ca_codec_content_type(CA_CODEC_JSON), "application/json");
	CHECK_STR(ca_codec_content_type(CA_CODEC_PROTOBUF), "application/x-protobuf");
	CHECK_INT(ca_codec_format_from_content_type("application/json; charset=utf-8", &f), CA_OK);
	CHECK_INT(f, CA_CODEC_JSON);
	CHECK_INT(ca_codec_format_from_content_type("Application/X-Protobuf", &f), CA_OK);
	CHECK_INT(f, CA_CODEC_PROTOBUF);
	CHECK_INT(ca_codec_format_from_content_type("application/protobuf", &f), CA_OK);
	CHECK_INT(f, CA_CODEC_PROTOBUF);
	CHECK_INT(ca_codec_format_from_content_type("text/plain", &f), CA_EINVAL);
	CHECK_INT(ca_codec_format_from_content_type("application/jsonx", &f), CA_EINVAL);
	CHECK_INT(ca_codec_format_from_content_type("", &f), CA_EINVAL);
	CHECK_INT(ca_codec_format_from_content_type(NULL, &f), CA_EINVAL);
}

static void test_utf8(void)
{
	CHECK(ca_codec_utf8_valid("", 0));
	CHECK(ca_codec_utf8_valid("plain", 5));
	CHECK(ca_codec_utf8_valid("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14));
	CHECK(!ca_codec_utf8_valid("\xFF", 1));
	CHECK(!ca_codec_utf8_valid("\xC3", 1));              /* truncated */
	CHECK(!ca_codec_utf8_valid("\xC0\xAF", 2));          /* overlong '/' */
	CHECK(!ca_codec_utf8_valid("\xE0\x80\xAF", 3));      /* overlong */
	CHECK(!ca_codec_utf8_valid("\xED\xA0\x80", 3));      /* surrogate */
	CHECK(!ca_codec_utf8_valid("\xF4\x90\x80\x80", 4));  /* > U+10FFFF */
	CHECK(ca_codec_utf8_valid("\xF4\x8F\xBF\xBF", 4));   /* U+10FFFF */
}

/* ------------------------------------------------------------ heartbeat */

static void test_heartbeat_exact(void)
{
	struct ca_msg_heartbeat hb = {
		.agent_id = "agent-7f9c",
		.cluster_id = "prod-eu-1",
		.status = "degraded",
		.timestamp = T_2026,
		.uptime_seconds = 3600,
		.kube_api_ok = true,
		.nats_connected = false,
		.queues = { .events = 3, .metrics = 0, .commands = 1, .results = 2 },
		.events_published_total = 12345678901LL,
		.events_dropped_total = 2,
		.last_error = "watch \"events\" stalled\n\tretrying",
	};
	struct ca_buf b;
	ca_buf_init(&b, 0);
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_JSON, &hb, &b), CA_OK);
	CHECK_STR(b.data,
	          "{\"agent_id\":\"agent-7f9c\",\"cluster_id\":\"prod-eu-1\","
	          "\"timestamp\":\"2026-11-22T00:26:30.123Z\",\"uptime_seconds\":3600,"
	          "\"status\":\"degraded\",\"kube_api_ok\":true,\"nats_connected\":false,"
	          "\"queues\":{\"events\":3,\"metrics\":0,\"commands\":1,\"results\":2},"
	          "\"events_published_total\":12345678901,\"events_dropped_total\":2,"
	          "\"last_error\":\"watch \\\"events\\\" stalled\\n\\tretrying\"}");

	/* Appends: a second encode goes after the first. */
	size_t first = b.len;
	hb.last_error = NULL;
	hb.timestamp = 0;
	hb.status = "stopping";
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_JSON, &hb, &b), CA_OK);
	CHECK_STR(b.data + first,
	          "{\"agent_id\":\"agent-7f9c\",\"cluster_id\":\"prod-eu-1\",\"uptime_seconds\":3600,"
	          "\"status\":\"stopping\",\"kube_api_ok\":true,\"nats_connected\":false,"
	          "\"queues\":{\"events\":3,\"metrics\":0,\"commands\":1,\"results\":2},"
	          "\"events_published_total\":12345678901,\"events_dropped_total\":2}");

	/* A cap that is too small fails and leaves the buffer as it was. */
	struct ca_buf small;
	ca_buf_init(&small, 40);
	CHECK_INT(ca_buf_append_str(&small, "prefix"), CA_OK);
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_JSON, &hb, &small), CA_ETOOBIG);
	CHECK_STR(small.data, "prefix");
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_PROTOBUF, &hb, &small), CA_ETOOBIG);
	CHECK_STR(small.data, "prefix");
	CHECK_INT(small.len, 6);
	ca_buf_fini(&small);

	/* Bad arguments and out-of-range timestamps. */
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_JSON, NULL, &b), CA_EINVAL);
	CHECK_INT(ca_codec_encode_heartbeat((enum ca_codec_format)7, &hb, &b), CA_EINVAL);
	hb.timestamp = 253402300800000LL; /* year 10000 */
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_JSON, &hb, &b), CA_EINVAL);
	CHECK_INT(ca_codec_encode_heartbeat(CA_CODEC_PROTOBUF, &hb, &b), CA_EINVAL);
	ca_buf_fini(&b);

	hb.timestamp = T_2026;
	hb.last_error = "x";
	char *j = round_trip("Heartbeat", enc_heartbeat, &hb);
	CHECK_CONTAINS(j, "\"last_error\":\"x\"");
	free(j);
}

/* ----------------------------------------------------------- round trips */

static void test_agent_info(void)
{
	const char *tools[] = { "kubectl", "" };
	struct ca_msg_agent_info m = {
		.agent_id = "agent-1", .cluster_id = "prod", .cluster_source = "kube-system-uid",
		.provider = "aws", .region = "eu-west-1", .cluster_uid = "4c1f3e1a-0000-4000-8000-000000000001",
		.version = "0.1.0", .git_sha = "abcdef012345", .kubernetes_version = "v1.29.3",
		.node_name = "ip-10-0-0-1", .pod_name = "collect-agent-5d9c", .pod_namespace = "collect-agent",
		.encoding = "protobuf", .hostname = "collect-agent-5d9c", .started_at = T_2026,
		.cap_events = true, .cap_metrics = false, .cap_exec = true,
		.allowed_tools = tools, .n_allowed_tools = 2,
	};
	char *j = round_trip("AgentInfo", enc_agent_info, &m);
	CHECK_CONTAINS(j, "\"capabilities\":{\"events\":true,\"metrics\":false,\"exec\":true,"
	                  "\"allowed_tools\":[\"kubectl\",\"\"]}");
	CHECK_CONTAINS(j, "\"started_at\":\"2026-11-22T00:26:30.123Z\"");
	CHECK_CONTAINS(j, "\"cluster_source\":\"kube-system-uid\"");
	free(j);

	/* Mostly empty: NULL strings and lists are omitted / empty. */
	struct ca_msg_agent_info empty = { .agent_id = "a" };
	j = round_trip("AgentInfo", enc_agent_info, &empty);
	CHECK_STR(j, "{\"agent_id\":\"a\",\"capabilities\":{\"events\":false,\"metrics\":false,"
	             "\"exec\":false,\"allowed_tools\":[]}}");
	free(j);
}

static void test_event(void)
{
	struct ca_msg_event m = {
		.uid = "8d5e-uid", .cluster_id = "prod", .type = "Warning", .reason = "BackOff",
		/* UTF-8, quotes, backslash, control bytes and one invalid byte. */
		.message = "Back-off restarting \"app\" \xC3\xA9\xE2\x82\xAC\\ \x01 bad:\xFF end",
		.namespace_ = "shop",
		.involved_object = { .kind = "Pod", .name = "web-0", .namespace_ = "shop", .uid = "p-uid",
		                     .api_version = "v1", .field_path = "spec.containers{app}" },
		.source_component = "kubelet", .source_host = "node-1",
		.first_timestamp = 1795306800000LL, .last_timestamp = T_2026, .observed_at = T_2026 + 5,
		.count = 42, .severity = "critical", .category = "crash", .resource_version = "123456",
		.message_truncated = true,
	};
	char *j = round_trip("Event", enc_event, &m);
	CHECK_CONTAINS(j, "\"message\":\"Back-off restarting \\\"app\\\" \xC3\xA9\xE2\x82\xAC\\\\ \\u0001 bad:\xEF\xBF\xBD end\"");
	CHECK_CONTAINS(j, "\"involved_object\":{\"kind\":\"Pod\",\"name\":\"web-0\",\"namespace\":\"shop\","
	                  "\"uid\":\"p-uid\",\"api_version\":\"v1\",\"field_path\":\"spec.containers{app}\"}");
	CHECK_CONTAINS(j, "\"source\":{\"component\":\"kubelet\",\"host\":\"node-1\"}");
	CHECK_CONTAINS(j, "\"first_timestamp\":\"2026-11-22T00:20:00.000Z\"");
	CHECK_CONTAINS(j, "\"observed_at\":\"2026-11-22T00:26:30.128Z\"");
	CHECK_CONTAINS(j, "\"count\":42");
	CHECK_CONTAINS(j, "\"message_truncated\":true");
	free(j);
}

static void test_metrics_sample(void)
{
	struct ca_msg_node_condition conds[] = {
		{ .type = "Ready", .status = "True", .reason = "KubeletReady", .last_transition_time = 1795306800000LL },
		{ .type = "MemoryPressure", .status = "False", .reason = "KubeletHasSufficientMemory" },
	};
	struct ca_msg_node_sample nodes[] = {
		{ .name = "node-1", .ready = true, .conditions = conds, .n_conditions = 2,
		  .cpu_capacity_millicores = 4000, .cpu_allocatable_millicores = 3920, .cpu_usage_millicores = 1250,
		  .memory_capacity_bytes = 16LL << 30, .memory_allocatable_bytes = 15LL << 30,
		  .memory_usage_bytes = 6LL << 30, .usage_known = true, .pods_capacity = 110, .pod_count = 17,
		  .zone = "eu-west-1a", .instance_type = "m5.xlarge", .kubelet_version = "v1.29.3" },
		{ .name = "node-2", .ready = false, .unschedulable = true },
	};
	struct ca_msg_namespace_sample nss[] = {
		{ .name = "shop", .pods = { .pending = 1, .running = 5, .failed = 1 }, .container_restarts = 9,
		  .cpu_requests_millicores = 1500, .cpu_limits_millicores = 3000, .memory_requests_bytes = 1LL << 30,
		  .memory_limits_bytes = 2LL << 30 },
		{ .name = "kube-system", .pods = { .running = 12 } },
	};
	struct ca_msg_pod_sample pods[] = {
		{ .namespace_ = "shop", .name = "web-0", .uid = "p-uid", .node_name = "node-1", .phase = "Running",
		  .ready = false, .reason = "CrashLoopBackOff", .message = "back-off 5m0s", .restarts = 9,
		  .since = 1795306800000LL, .last_termination_reason = "OOMKilled", .last_terminated_at = T_2026 },
	};
	struct ca_msg_metrics_sample m = {
		.cluster_id = "prod", .agent_id = "agent-1", .timestamp = T_2026, .part = 1, .parts = 2,
		.summary = { .nodes_total = 2, .nodes_ready = 1, .namespaces_total = 2,
		             .pods = { .pending = 1, .running = 17, .failed = 1 }, .container_restarts_total = 9,
		             .unhealthy_pods_total = 3, .cpu_capacity_millicores = 8000,
		             .memory_capacity_bytes = 32LL << 30, .usage_known = true },
		.nodes = nodes, .n_nodes = 2, .namespaces = nss, .n_namespaces = 2, .pods = pods, .n_pods = 1,
		.usage_available = true, .pods_omitted = 2,
	};
	char *j = round_trip("MetricsSample", enc_metrics, &m);
	CHECK_CONTAINS(j, "\"part\":1,\"parts\":2,\"summary\":{\"nodes_total\":2,\"nodes_ready\":1,"
	                  "\"namespaces_total\":2,\"pods\":{\"pending\":1,\"running\":17,\"succeeded\":0,"
	                  "\"failed\":1,\"unknown\":0}");
	CHECK_CONTAINS(j, "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\","
	                  "\"last_transition_time\":\"2026-11-22T00:20:00.000Z\"},{\"type\":\"MemoryPressure\"");
	CHECK_CONTAINS(j, "\"memory_capacity_bytes\":17179869184");
	CHECK_CONTAINS(j, "\"zone\":\"eu-west-1a\",\"instance_type\":\"m5.xlarge\"");
	CHECK_CONTAINS(j, "{\"name\":\"node-2\",\"ready\":false,\"unschedulable\":true,\"conditions\":[]");
	CHECK_CONTAINS(j, "\"reason\":\"CrashLoopBackOff\"");
	CHECK_CONTAINS(j, "\"last_termination_reason\":\"OOMKilled\",\"last_terminated_at\":\"2026-11-22T00:26:30.123Z\"");
	CHECK_CONTAINS(j, "\"usage_available\":true,\"pods_omitted\":2}");
	free(j);

	struct ca_msg_metrics_sample empty = { .cluster_id = "c" };
	j = round_trip("MetricsSample", enc_metrics, &empty);
	CHECK_CONTAINS(j, "\"nodes\":[],\"namespaces\":[],\"pods\":[]");
	free(j);
}

static void test_command_result(void)
{
	/* Output with a NUL, an invalid byte and no terminator at len. */
	const char out[] = { 'o', 'k', '\0', '\xFE', '\n', 'Z', 'Z' };
	struct ca_msg_command_result m = {
		.command_id = "cmd-1", .agent_id = "agent-1", .cluster_id = "prod", .status = "failed",
		.exit_code = -9, .stdout_data = out, .stdout_len = 5, .stderr_data = "error: \"x\" not found\n",
		.stderr_len = 21, .stdout_truncated = true, .started_at = T_2026, .finished_at = T_2026 + 1500,
		.duration_ms = 1500, .error = "killed after timeout",
	};
	char *j = round_trip("CommandResult", enc_result, &m);
	CHECK_CONTAINS(j, "\"stdout\":\"ok\xEF\xBF\xBD\xEF\xBF\xBD\\n\"");
	CHECK_CONTAINS(j, "\"stderr\":\"error: \\\"x\\\" not found\\n\"");
	CHECK_CONTAINS(j, "\"exit_code\":-9");
	CHECK_CONTAINS(j, "\"stdout_truncated\":true,\"stderr_truncated\":false");
	CHECK_CONTAINS(j, "\"finished_at\":\"2026-11-22T00:26:31.623Z\",\"duration_ms\":1500");
	free(j);

	struct ca_msg_command_result rejected = { .command_id = "", .status = "rejected", .exit_code = -1,
	                                          .error = "field 'id' is missing" };
	j = round_trip("CommandResult", enc_result, &rejected);
	CHECK_STR(j, "{\"status\":\"rejected\",\"exit_code\":-1,\"stdout_truncated\":false,"
	             "\"stderr_truncated\":false,\"duration_ms\":0,\"error\":\"field 'id' is missing\"}");
	free(j);
}

static void test_command_round_trip(void)
{
	char *args[] = { "pods", "-o", "wide", "" };
	struct ca_command m = {
		.id = "cmd-42", .cluster_id = "*", .tool = "kubectl", .action = "get", .args = args, .n_args = 4,
		.namespace_ = "shop", .timeout_seconds = 30, .issued_at = T_2026, .expires_at = T_2026 + 60000,
		.issuer = "ops@example.com", .signature = "c2lnbmF0dXJl",
	};
	char *j = round_trip("Command", enc_command, &m);
	CHECK_STR(j, "{\"id\":\"cmd-42\",\"cluster_id\":\"*\",\"tool\":\"kubectl\",\"action\":\"get\","
	             "\"args\":[\"pods\",\"-o\",\"wide\",\"\"],\"namespace\":\"shop\",\"timeout_seconds\":30,"
	             "\"issued_at\":\"2026-11-22T00:26:30.123Z\",\"expires_at\":\"2026-11-22T00:27:30.123Z\","
	             "\"issuer\":\"ops@example.com\",\"signature\":\"c2lnbmF0dXJl\"}");

	/* What the JSON encoder wrote decodes back to the same command. */
	struct ca_command c;
	char err[256];
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, j, strlen(j), &c, err, sizeof err), CA_OK);
	CHECK_STR(c.id, "cmd-42");
	CHECK_INT(c.n_args, 4);
	CHECK_STR(c.args[3], "");
	CHECK_INT(c.expires_at, T_2026 + 60000);
	ca_command_fini(&c);
	free(j);
}

static void test_protobuf_to_json_errors(void)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	CHECK_INT(ca_codec_protobuf_to_json("Nope", "", 0, &b), CA_EINVAL);
	CHECK_INT(ca_codec_protobuf_to_json("Heartbeat", "\xFF\xFF\xFF", 3, &b), CA_EPROTO);
	/* Heartbeat.timestamp (field 3) with seconds beyond year 9999. */
	const char bad_ts[] = { 0x1a, 0x07, 0x08, (char)0x80, (char)0x80, (char)0x80, (char)0x80, (char)0x80, 0x08 };
	CHECK_INT(ca_codec_protobuf_to_json("Heartbeat", bad_ts, sizeof bad_ts, &b), CA_EPROTO);
	CHECK_INT(b.len, 0);
	/* An empty message is valid protobuf: every default. */
	CHECK_INT(ca_codec_protobuf_to_json("Heartbeat", "", 0, &b), CA_OK);
	CHECK_STR(b.data, "{\"uptime_seconds\":0,\"kube_api_ok\":false,\"nats_connected\":false,"
	                  "\"queues\":{\"events\":0,\"metrics\":0,\"commands\":0,\"results\":0},"
	                  "\"events_published_total\":0,\"events_dropped_total\":0}");
	ca_buf_fini(&b);
}

/* ------------------------------------------------------ command decoding */

static void test_decode_json_ok(void)
{
	const char *js =
		"{\n"
		"  \"id\": \"c-1\", \"cluster_id\": \"prod\", \"tool\": \"kubectl\", \"action\": \"logs\",\n"
		"  \"args\": [\"web-0\", \"--tail=100\", \"caf\\u00e9 \xE2\x82\xAC \\\"q\\\" \\\\ \\n\"],\n"
		"  \"namespace\": \"shop\", \"timeout_seconds\": 45,\n"
		"  \"issued_at\": \"2026-11-22T00:26:30.123Z\", \"expires_at\": \"2026-11-22T02:05:00+01:00\",\n"
		"  \"issuer\": \"central\", \"signature\": null, \"future_field\": {\"x\": [1, 2]}\n"
		"}";
	struct ca_command c;
	char err[256] = "unchanged";
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, js, strlen(js), &c, err, sizeof err), CA_OK);
	CHECK_STR(err, "");
	CHECK_STR(c.id, "c-1");
	CHECK_STR(c.cluster_id, "prod");
	CHECK_STR(c.tool, "kubectl");
	CHECK_STR(c.action, "logs");
	CHECK_INT(c.n_args, 3);
	CHECK_STR(c.args[0], "web-0");
	CHECK_STR(c.args[1], "--tail=100");
	CHECK_STR(c.args[2], "caf\xC3\xA9 \xE2\x82\xAC \"q\" \\ \n");
	CHECK_STR(c.namespace_, "shop");
	CHECK_INT(c.timeout_seconds, 45);
	CHECK_INT(c.issued_at, T_2026);
	CHECK_INT(c.expires_at, 1795309500000LL);
	CHECK_STR(c.issuer, "central");
	CHECK_STR(c.signature, ""); /* null = absent = "" */
	ca_command_fini(&c);
	ca_command_fini(&c); /* twice is harmless */

	/* Minimal command; timeout as the proto3-JSON int64 string form. */
	const char *min = "{\"id\":\"x\",\"timeout_seconds\":\"30\"}";
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, min, strlen(min), &c, NULL, 0), CA_OK);
	CHECK_STR(c.id, "x");
	CHECK_STR(c.tool, "");
	CHECK_INT(c.n_args, 0);
	CHECK(c.args == NULL);
	CHECK_INT(c.timeout_seconds, 30);
	CHECK_INT(c.issued_at, 0);
	ca_command_fini(&c);

	/* Exactly at the caps: 64 args, 4096-byte strings. */
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(&b, "{\"id\":\"caps\",\"tool\":\"");
	for (int i = 0; i < CA_COMMAND_MAX_STRING; i++)
		ca_buf_append_str(&b, "t");
	ca_buf_append_str(&b, "\",\"args\":[");
	for (int i = 0; i < CA_COMMAND_MAX_ARGS; i++)
		ca_buf_printf(&b, "%s\"a%d\"", i ? "," : "", i);
	ca_buf_append_str(&b, "]}");
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, b.data, b.len, &c, err, sizeof err), CA_OK);
	CHECK_INT(c.n_args, 64);
	CHECK_STR(c.args[63], "a63");
	CHECK_INT(strlen(c.tool), 4096);
	ca_command_fini(&c);
	ca_buf_fini(&b);
}

static void test_decode_protobuf_ok(void)
{
	char *args[] = { "pods", "-l", "app=\xC3\xA9" };
	struct ca_command in = {
		.id = "pb-1", .cluster_id = "prod", .tool = "kubectl", .action = "get", .args = args, .n_args = 3,
		.namespace_ = "shop", .timeout_seconds = 12, .issued_at = T_2026, .expires_at = -1500,
		.issuer = "central", .signature = "sig",
	};
	struct ca_buf pb;
	ca_buf_init(&pb, 0);
	CHECK_INT(ca_codec_encode_command(CA_CODEC_PROTOBUF, &in, &pb), CA_OK);
	struct ca_command c;
	char err[256];
	CHECK_INT(ca_codec_decode_command(CA_CODEC_PROTOBUF, pb.data, pb.len, &c, err, sizeof err), CA_OK);
	CHECK_STR(c.id, "pb-1");
	CHECK_STR(c.cluster_id, "prod");
	CHECK_STR(c.tool, "kubectl");
	CHECK_STR(c.action, "get");
	CHECK_INT(c.n_args, 3);
	CHECK_STR(c.args[2], "app=\xC3\xA9");
	CHECK_STR(c.namespace_, "shop");
	CHECK_INT(c.timeout_seconds, 12);
	CHECK_INT(c.issued_at, T_2026);
	CHECK_INT(c.expires_at, -1500); /* before 1970, floor-divided correctly */
	CHECK_STR(c.issuer, "central");
	CHECK_STR(c.signature, "sig");
	ca_command_fini(&c);
	ca_buf_fini(&pb);
}

/* Decode js and expect failure with code and a reason containing want. */
static void expect_reject(enum ca_codec_format f, const void *data, size_t len, enum ca_err code, const char *want)
{
	struct ca_command c;
	char err[256] = "";
	memset(&c, 0x5a, sizeof c); /* garbage in: must come out zeroed */
	enum ca_err rc = ca_codec_decode_command(f, data, len, &c, err, sizeof err);
	CHECK_INT(rc, code);
	CHECK_CONTAINS(err, want);
	CHECK(c.id == NULL && c.args == NULL && c.n_args == 0 && c.tool == NULL && c.issued_at == 0);
	if (rc == CA_OK)
		ca_command_fini(&c);
}

static void reject_json(const char *js, enum ca_err code, const char *want)
{
	expect_reject(CA_CODEC_JSON, js, strlen(js), code, want);
}

static void test_decode_json_rejects(void)
{
	reject_json("{\"id\": \"x\",}", CA_EPROTO, "malformed JSON at line 1 column");
	reject_json("{\n\"id\": \"x\",\n\"tool\" \"kubectl\"}", CA_EPROTO, "malformed JSON at line 3 column 16: ':' expected");
	reject_json("", CA_EPROTO, "malformed JSON");
	reject_json("{\"id\":\"a\",\"id\":\"b\"}", CA_EPROTO, "duplicate");
	reject_json("{\"id\":\"caf\xE9\"}", CA_EPROTO, "malformed JSON"); /* Latin-1, not UTF-8 */
	reject_json("[\"id\"]", CA_EINVAL, "command is not a JSON object (it is a list)");
	reject_json("\"id\"", CA_EINVAL, "command is not a JSON object (it is a string)");
	reject_json("42", CA_EINVAL, "not a JSON object");

	reject_json("{\"tool\":\"kubectl\"}", CA_EINVAL, "field 'id' is missing");
	reject_json("{\"id\":null}", CA_EINVAL, "field 'id' is missing");
	reject_json("{\"id\":\"\"}", CA_EINVAL, "field 'id' is empty");
	reject_json("{\"id\":17}", CA_EINVAL, "field 'id' must be a string, not an integer");
	reject_json("{\"id\":\"a\\nb\"}", CA_EINVAL, "field 'id' contains control characters");
	reject_json("{\"id\":\"a\",\"tool\":[\"kubectl\"]}", CA_EINVAL, "field 'tool' must be a string, not a list");

	reject_json("{\"id\":\"a\",\"args\":\"get pods\"}", CA_EINVAL,
	            "field 'args' must be a list of strings, not a string");
	reject_json("{\"id\":\"a\",\"args\":{\"0\":\"get\"}}", CA_EINVAL, "field 'args' must be a list of strings");
	reject_json("{\"id\":\"a\",\"args\":[\"get\",3]}", CA_EINVAL,
	            "field 'args' must be a list of strings: args[1] is an integer");
	reject_json("{\"id\":\"a\",\"args\":[null]}", CA_EINVAL, "args[0] is null");

	reject_json("{\"id\":\"a\",\"timeout_seconds\":1.5}", CA_EINVAL,
	            "field 'timeout_seconds' must be an integer, not a fractional number");
	reject_json("{\"id\":\"a\",\"timeout_seconds\":\"30s\"}", CA_EINVAL,
	            "field 'timeout_seconds' must be an integer, not a non-numeric string");
	reject_json("{\"id\":\"a\",\"timeout_seconds\":true}", CA_EINVAL, "must be an integer, not a boolean");
	reject_json("{\"id\":\"a\",\"timeout_seconds\":\"99999999999999999999\"}", CA_EINVAL, "must be an integer");
	reject_json("{\"id\":\"a\",\"timeout_seconds\":-5}", CA_EINVAL, "field 'timeout_seconds' must not be negative");

	reject_json("{\"id\":\"a\",\"issued_at\":\"yesterday\"}", CA_EINVAL, "field 'issued_at' is not an RFC 3339 timestamp");
	reject_json("{\"id\":\"a\",\"expires_at\":\"2026-13-01T00:00:00Z\"}", CA_EINVAL,
	            "field 'expires_at' is not an RFC 3339 timestamp");
	reject_json("{\"id\":\"a\",\"issued_at\":\"0001-01-01T00:30:00+01:00\"}", CA_EINVAL,
	            "field 'issued_at' is not a valid timestamp (out of range)");
	reject_json("{\"id\":\"a\",\"expires_at\":1795307190}", CA_EINVAL,
	            "field 'expires_at' must be an RFC 3339 timestamp string, not an integer");

	reject_json("{\"id\":\"a\\u0000b\"}", CA_EINVAL, "field 'id' contains a NUL byte");
	reject_json("{\"id\":\"a\",\"args\":[\"x\",\"\\u0000\"]}", CA_EINVAL, "field 'args[1]' contains a NUL byte");
	reject_json("{\"id\":\"a\",\"namespace\":\"n\\u0000\"}", CA_EINVAL, "field 'namespace' contains a NUL byte");

	/* 65 args; one string of 4097 bytes, in a field and in an arg. */
	struct ca_buf b;
	ca_buf_init(&b, 0);
	ca_buf_append_str(&b, "{\"id\":\"a\",\"args\":[");
	for (int i = 0; i <= CA_COMMAND_MAX_ARGS; i++)
		ca_buf_printf(&b, "%s\"a\"", i ? "," : "");
	ca_buf_append_str(&b, "]}");
	reject_json(b.data, CA_EINVAL, "field 'args' has 65 entries; at most 64 are allowed");
	ca_buf_reset(&b);
	ca_buf_append_str(&b, "{\"id\":\"a\",\"action\":\"");
	for (int i = 0; i <= CA_COMMAND_MAX_STRING; i++)
		ca_buf_append_str(&b, "x");
	ca_buf_append_str(&b, "\"}");
	reject_json(b.data, CA_EINVAL, "field 'action' is 4097 bytes long; at most 4096 are allowed");
	ca_buf_reset(&b);
	ca_buf_append_str(&b, "{\"id\":\"a\",\"args\":[\"ok\",\"");
	for (int i = 0; i <= CA_COMMAND_MAX_STRING; i++)
		ca_buf_append_str(&b, "x");
	ca_buf_append_str(&b, "\"]}");
	reject_json(b.data, CA_EINVAL, "field 'args[1]' is 4097 bytes long");
	ca_buf_fini(&b);

	/* Bad arguments. */
	struct ca_command c;
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, NULL, 5, &c, NULL, 0), CA_EINVAL);
	CHECK_INT(ca_codec_decode_command((enum ca_codec_format)9, "{}", 2, &c, NULL, 0), CA_EINVAL);
	/* A short error buffer truncates, never overflows. */
	char tiny[8];
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, "{}", 2, &c, tiny, sizeof tiny), CA_EINVAL);
	CHECK_STR(tiny, "field '");
}

/* Append a protobuf length-delimited field. */
static void pb_field(struct ca_buf *b, unsigned number, const void *data, size_t len)
{
	unsigned char hdr[12];
	size_t n = 0;
	uint64_t key = ((uint64_t)number << 3) | 2;
	do {
		hdr[n++] = (unsigned char)((key & 0x7f) | (key > 0x7f ? 0x80 : 0));
		key >>= 7;
	} while (key);
	uint64_t l = len;
	do {
		hdr[n++] = (unsigned char)((l & 0x7f) | (l > 0x7f ? 0x80 : 0));
		l >>= 7;
	} while (l);
	ca_buf_append(b, hdr, n);
	ca_buf_append(b, data, len);
}

static void reject_pb(const struct ca_buf *b, enum ca_err code, const char *want)
{
	expect_reject(CA_CODEC_PROTOBUF, b->data, b->len, code, want);
}

static void test_decode_protobuf_rejects(void)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);

	ca_buf_append(&b, "\xFF\xFF\xFF\xFF", 4);
	reject_pb(&b, CA_EPROTO, "malformed protobuf");
	ca_buf_reset(&b);
	ca_buf_append(&b, "\x0a\x05" "ab", 4); /* length past the end */
	reject_pb(&b, CA_EPROTO, "malformed protobuf: truncated field at byte 0");
	ca_buf_reset(&b);
	ca_buf_append(&b, "\x08\x01", 2); /* field 1 (id) as a varint */
	reject_pb(&b, CA_EPROTO, "malformed protobuf");
	ca_buf_reset(&b);

	/* Empty message: no id. */
	expect_reject(CA_CODEC_PROTOBUF, "", 0, CA_EINVAL, "field 'id' is missing or empty");

	pb_field(&b, 1, "a\0b", 3);
	reject_pb(&b, CA_EINVAL, "field 'id' contains a NUL byte");
	ca_buf_reset(&b);
	pb_field(&b, 1, "ok", 2);
	pb_field(&b, 3, "kub\xFF", 4);
	reject_pb(&b, CA_EINVAL, "field 'tool' is not valid UTF-8");
	ca_buf_reset(&b);
	pb_field(&b, 1, "ok", 2);
	pb_field(&b, 5, "get", 3);
	pb_field(&b, 5, "p\0ds", 4);
	reject_pb(&b, CA_EINVAL, "field 'args[1]' contains a NUL byte");
	ca_buf_reset(&b);
	pb_field(&b, 1, "ok\x1b", 3);
	reject_pb(&b, CA_EINVAL, "field 'id' contains control characters");
	ca_buf_reset(&b);

	/* Through the encoder: too many args, a string too long, negative timeout. */
	char *args[CA_COMMAND_MAX_ARGS + 1];
	for (int i = 0; i <= CA_COMMAND_MAX_ARGS; i++)
		args[i] = "x";
	struct ca_command in = { .id = "big", .args = args, .n_args = CA_COMMAND_MAX_ARGS + 1 };
	CHECK_INT(ca_codec_encode_command(CA_CODEC_PROTOBUF, &in, &b), CA_OK);
	reject_pb(&b, CA_EINVAL, "field 'args' has 65 entries; at most 64 are allowed");
	ca_buf_reset(&b);
	char *long_str = malloc(CA_COMMAND_MAX_STRING + 2);
	memset(long_str, 's', CA_COMMAND_MAX_STRING + 1);
	long_str[CA_COMMAND_MAX_STRING + 1] = '\0';
	struct ca_command in2 = { .id = "long", .signature = long_str };
	CHECK_INT(ca_codec_encode_command(CA_CODEC_PROTOBUF, &in2, &b), CA_OK);
	reject_pb(&b, CA_EINVAL, "field 'signature' is 4097 bytes long");
	free(long_str);
	ca_buf_reset(&b);
	struct ca_command in3 = { .id = "neg", .timeout_seconds = -1 };
	CHECK_INT(ca_codec_encode_command(CA_CODEC_PROTOBUF, &in3, &b), CA_OK);
	reject_pb(&b, CA_EINVAL, "field 'timeout_seconds' must not be negative");
	ca_buf_reset(&b);

	/* issued_at (field 8) with seconds past 9999-12-31; nanos too large. */
	pb_field(&b, 1, "ok", 2);
	pb_field(&b, 8, "\x08\x80\x80\x80\x80\x80\x80\x01", 8);
	reject_pb(&b, CA_EINVAL, "field 'issued_at' is not a valid timestamp");
	ca_buf_reset(&b);
	pb_field(&b, 1, "ok", 2);
	pb_field(&b, 9, "\x10\x80\x94\xeb\xdc\x03", 6); /* nanos = 1e9 */
	reject_pb(&b, CA_EINVAL, "field 'expires_at' is not a valid timestamp");
	ca_buf_fini(&b);
}

int main(void)
{
	test_content_type();
	test_utf8();
	test_heartbeat_exact();
	test_agent_info();
	test_event();
	test_metrics_sample();
	test_command_result();
	test_command_round_trip();
	test_protobuf_to_json_errors();
	test_decode_json_ok();
	test_decode_protobuf_ok();
	test_decode_json_rejects();
	test_decode_protobuf_rejects();
	return check_report();
}
