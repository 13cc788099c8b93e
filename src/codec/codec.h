/* codec/codec.h: the agent's messages and their two wire encodings.
 *
 * The structs below mirror proto/agent.proto (the single schema). Encoding
 * is JSON (jansson; proto field names, RFC 3339 UTC timestamps, 64-bit
 * integers as JSON numbers) or protobuf (protobuf-c). Structs are plain data
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
	int64_t started_at;
	bool cap_events, cap_metrics, cap_exec;
	const char *const *allowed_tools; /* may be NULL */
	size_t n_allowed_tools;
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

/* MetricsSample is defined by the metrics issue; the codec only needs the
 * envelope today. */

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

/* Encoders append the encoded message to out. */
enum ca_err ca_codec_encode_agent_info(enum ca_codec_format f, const struct ca_msg_agent_info *m, struct ca_buf *out);
enum ca_err ca_codec_encode_heartbeat(enum ca_codec_format f, const struct ca_msg_heartbeat *m, struct ca_buf *out);
enum ca_err ca_codec_encode_event(enum ca_codec_format f, const struct ca_msg_event *m, struct ca_buf *out);
enum ca_err ca_codec_encode_command_result(enum ca_codec_format f, const struct ca_msg_command_result *m, struct ca_buf *out);
enum ca_err ca_codec_encode_command(enum ca_codec_format f, const struct ca_command *m, struct ca_buf *out);

/* Decode a Command. On failure returns CA_EINVAL/CA_EPROTO and writes why
 * into err (e.g. "field 'id' is missing"); cmd is left empty. */
enum ca_err ca_codec_decode_command(enum ca_codec_format f, const void *data, size_t len,
                                    struct ca_command *cmd, char *err, size_t errlen);
void ca_command_fini(struct ca_command *cmd);

/* Decoders for the agent's own outbound messages, used by tests and tools:
 * they re-encode the decoded message as JSON into out so a protobuf payload
 * can be checked with the same assertions as a JSON one. */
enum ca_err ca_codec_protobuf_to_json(const char *message_type, const void *data, size_t len,
                                      struct ca_buf *out);

#endif
