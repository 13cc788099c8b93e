/* codec/codec.h: the agent's messages and their two wire encodings.
 *
 * The structs below mirror proto/agent.proto (the single schema). Encoding
 * is JSON (proto field names, RFC 3339 UTC timestamps, 64-bit integers as
 * JSON numbers; written directly by json_writer.c because it sits on the
 * events hot path; commands are decoded with jansson) or protobuf
 * (protobuf-c). Structs are plain data
 * with borrowed strings when encoding; decoding a Command fills a struct
 * whose strings are owned by it (ca_command_fini frees them).
 *
 * Timestamps are Unix milliseconds (0 = unset: omitted in JSON, absent in
 * protobuf). All functions are thread safe and never log. */
#ifndef CA_CODEC_CODEC_H
#define CA_CODEC_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"

enum ca_codec_format { CA_CODEC_JSON = 0, CA_CODEC_PROTOBUF };

#define CA_CONTENT_TYPE_JSON "application/json"
#define CA_CONTENT_TYPE_PROTOBUF "application/x-protobuf"

const char *ca_codec_content_type(enum ca_codec_format f);
/* From a Content-Type header value (parameters ignored); NULL or unknown
 * gives CA_EINVAL. */
enum ca_err ca_codec_format_from_content_type(const char *ct, enum ca_codec_format *out);

struct ca_msg_agent_info {
	const char *agent_id, *cluster_id, *cluster_source, *provider, *region,
	           *cluster_uid, *version, *git_sha, *kubernetes_version, *node_name,
	           *pod_name, *pod_namespace, *encoding, *hostname;
	const char *role; /* leader|standby with ha.enabled; NULL or "" without */
	int64_t started_at;
	bool cap_events, cap_metrics, cap_exec;
	const char *const *allowed_tools; /* may be NULL */
	size_t n_allowed_tools;
	const char *const *allowed_actions; /* "tool action[ sub]"; may be NULL */
	size_t n_allowed_actions;
};

struct ca_queue_sizes {
	int64_t events, metrics, commands, results;
};

struct ca_msg_heartbeat {
	const char *agent_id, *cluster_id, *status; /* ok|degraded|stopping */
	int64_t timestamp;
	int64_t uptime_seconds;
	bool kube_api_ok, nats_connected;
	struct ca_queue_sizes queues;
	int64_t events_published_total, events_dropped_total;
	const char *last_error; /* may be NULL */
	const char *role;       /* leader|standby with ha.enabled; NULL or "" without */
	const char *leader;     /* the Lease's holder as last read; may be NULL */
};

struct ca_msg_object_ref {
	const char *kind, *name, *namespace_, *uid, *api_version, *field_path;
};

struct ca_msg_event {
	const char *uid, *cluster_id, *type, *reason, *message, *namespace_;
	struct ca_msg_object_ref involved_object;
	const char *source_component, *source_host;
	int64_t first_timestamp, last_timestamp, observed_at;
	int64_t count;
	const char *severity;  /* info|warning|critical */
	const char *category;  /* crash|oom|image|scheduling|storage|node|network|probe|eviction|config|other */
	const char *resource_version;
	bool message_truncated;
};

/* MetricsSample (proto/agent.proto says what each field means): CPU in
 * millicores, memory in bytes. A `usage` is written only when its
 * usage_known is set. All pointers are borrowed for the duration of the
 * encode call; NULL strings and NULL arrays with a zero count are allowed. */
struct ca_pod_phase_counts {
	int64_t pending, running, succeeded, failed, unknown;
};

struct ca_msg_resources {
	int64_t cpu_millicores, memory_bytes, pods;
};

struct ca_msg_cluster_summary {
	int64_t nodes_total, nodes_ready, namespaces;
	struct ca_pod_phase_counts pods;
	int64_t containers_restarting, restarts, unhealthy_pods;
	struct ca_msg_resources capacity, allocatable, requests, limits, usage;
	bool usage_known;
};

struct ca_msg_node_condition {
	const char *type, *status, *reason; /* "Ready", "True", "KubeletReady" */
	int64_t last_transition_time;
};

struct ca_msg_node_sample {
	const char *name;
	bool ready, unschedulable;
	const struct ca_msg_node_condition *conditions;
	size_t n_conditions;
	struct ca_msg_resources capacity, allocatable, usage;
	bool usage_known;
	int64_t pods;
	const char *zone, *instance_type, *kubelet_version;
};

struct ca_msg_namespace_sample {
	const char *name, *phase;
	struct ca_pod_phase_counts pods;
	int64_t restarts;
	struct ca_msg_resources requests, limits, usage;
	bool usage_known;
};

struct ca_msg_unhealthy_pod {
	const char *namespace_, *name, *node, *phase, *reason;
	int64_t restarts;
	int64_t since; /* 0 unknown */
};

struct ca_msg_metrics_sample {
	const char *sample_id, *cluster_id, *agent_id;
	int64_t timestamp;
	int32_t part, parts;  /* 1-based part of parts */
	bool usage_available;
	const char *usage_unavailable_reason;
	int64_t usage_observed_at;
	struct ca_msg_cluster_summary summary;
	const struct ca_msg_node_sample *nodes;
	size_t n_nodes;
	const struct ca_msg_namespace_sample *namespaces;
	size_t n_namespaces;
	const struct ca_msg_unhealthy_pod *unhealthy_pods;
	size_t n_unhealthy_pods;
	int64_t unhealthy_pods_omitted;
};

struct ca_command {
	char *id, *cluster_id, *tool, *action, *namespace_, *issuer, *signature;
	char **args;
	size_t n_args;
	int64_t timeout_seconds;
	int64_t issued_at, expires_at;
};

struct ca_msg_command_result {
	const char *command_id, *agent_id, *cluster_id;
	const char *status; /* succeeded|failed|rejected|timeout */
	int exit_code;
	const char *stdout_data, *stderr_data;
	size_t stdout_len, stderr_len;
	bool stdout_truncated, stderr_truncated;
	int64_t started_at, finished_at, duration_ms;
	const char *error;
};

/* Encoders append the encoded message to out (nothing on failure: out is
 * left as it was). Strings are borrowed for the call; NULL is the same as
 * "". Text that is not valid UTF-8 (and NUL bytes in stdout/stderr) is
 * written with U+FFFD in place of the bad bytes, identically in both
 * formats. Errors: CA_EINVAL (NULL argument, unknown format), CA_ENOMEM,
 * CA_ETOOBIG (out's cap). */
enum ca_err ca_codec_encode_agent_info(enum ca_codec_format f, const struct ca_msg_agent_info *m, struct ca_buf *out);
enum ca_err ca_codec_encode_heartbeat(enum ca_codec_format f, const struct ca_msg_heartbeat *m, struct ca_buf *out);
enum ca_err ca_codec_encode_event(enum ca_codec_format f, const struct ca_msg_event *m, struct ca_buf *out);
enum ca_err ca_codec_encode_command_result(enum ca_codec_format f, const struct ca_msg_command_result *m, struct ca_buf *out);
enum ca_err ca_codec_encode_command(enum ca_codec_format f, const struct ca_command *m, struct ca_buf *out);
enum ca_err ca_codec_encode_metrics_sample(enum ca_codec_format f, const struct ca_msg_metrics_sample *m,
                                           struct ca_buf *out);

/* Per-field caps enforced by ca_codec_decode_command; the caller caps the
 * whole payload (exec.max_command_bytes). */
#define CA_COMMAND_MAX_ARGS 64
#define CA_COMMAND_MAX_STRING 4096

/* Decode a Command. On failure returns CA_EINVAL/CA_EPROTO and writes why
 * into err (e.g. "field 'id' is missing"); cmd is left empty. */
/*
 * CA_EPROTO: the payload is not JSON / protobuf at all ("malformed JSON at
 * line 1 column 9: ..."; "malformed protobuf: ..."). CA_EINVAL: it decodes
 * but breaks the schema: not a JSON object, `id` missing, empty or holding
 * control characters, a field of the wrong type (`args` not a list of
 * strings, `timeout_seconds` not an integer or negative), a timestamp that
 * is not RFC 3339 (JSON) or out of range (protobuf), more than
 * CA_COMMAND_MAX_ARGS args, a string longer than CA_COMMAND_MAX_STRING
 * bytes, a string holding a NUL byte or invalid UTF-8. JSON null is the
 * same as an absent field; unknown fields are ignored; duplicate keys are
 * rejected; timeout_seconds may also be a decimal string (the proto3 JSON
 * form of int64). err may be NULL; the reason is truncated to errlen.
 *
 * On success every string field of cmd is a heap string (empty when
 * absent), args holds n_args heap strings (NULL when n_args is 0); all are
 * owned by cmd. Any thread. */
enum ca_err ca_codec_decode_command(enum ca_codec_format f, const void *data, size_t len,
                                    struct ca_command *cmd, char *err, size_t errlen);
/* Free what a decoded command owns and zero it; accepts an all-zero or
 * already finished command. */
void ca_command_fini(struct ca_command *cmd);


/* Decoders for the agent's own outbound messages, used by tests and tools:
 * they re-encode the decoded message as JSON into out so a protobuf payload
 * can be checked with the same assertions as a JSON one.
 * message_type is "AgentInfo", "Heartbeat", "Event", "MetricsSample",
 * "Command" or "CommandResult" (CA_EINVAL otherwise). The output is byte
 * for byte what the JSON encoder writes for the same message. CA_EPROTO
 * when data does not unpack (or a timestamp is out of range); a Command
 * goes through ca_codec_decode_command's checks (CA_EINVAL). Appends to
 * out; nothing on failure. */
enum ca_err ca_codec_protobuf_to_json(const char *message_type, const void *data, size_t len,
                                      struct ca_buf *out);

#endif
