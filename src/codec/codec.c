/* codec/codec.c: the agent's outbound messages in JSON and protobuf
 * (protobuf-c), and the protobuf -> JSON transcoder.
 *
 * One JSON writer per message works from the C struct and writes straight
 * into the output buffer (json_writer.h; the text is what jansson's
 * compact dump wrote before, without building a tree); the protobuf side
 * only maps structs to the generated protobuf-c types and back. The
 * transcoder maps a protobuf message back to the C struct and calls the
 * same JSON writer, so both encodings of a message agree by construction
 * and the unit test can compare them byte for byte.
 *
 * Text is made safe once, the same way for both encodings: bytes that are
 * not UTF-8 (and NUL bytes in command output) become U+FFFD. JSON parsers
 * refuse such strings and protobuf readers in other languages reject them.
 * Command decoding lives in command.c. */
#include "codec/codec.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <protobuf-c/protobuf-c.h>

#include "codec/json_writer.h"
#include "core/utf8.h"
#include "proto/agent.pb-c.h"

#define MIN_TIME_MS CA_CODEC_MIN_TIME_MS
#define MAX_TIME_MS CA_CODEC_MAX_TIME_MS

/* ------------------------------------------------------------ content type */

const char *ca_codec_content_type(enum ca_codec_format f)
{
	return f == CA_CODEC_PROTOBUF ? CA_CONTENT_TYPE_PROTOBUF : CA_CONTENT_TYPE_JSON;
}

static bool media_type_is(const char *ct, size_t n, const char *want)
{
	return strlen(want) == n && strncasecmp(ct, want, n) == 0;
}

enum ca_err ca_codec_format_from_content_type(const char *ct, enum ca_codec_format *out)
{
	if (!ct || !out)
		return CA_EINVAL;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strcspn(ct, "; \t");
	if (media_type_is(ct, n, CA_CONTENT_TYPE_JSON)) {
		*out = CA_CODEC_JSON;
		return CA_OK;
	}
	/* application/protobuf is the newer registered name; some clients
	 * still send Google's vnd form. */
	if (media_type_is(ct, n, CA_CONTENT_TYPE_PROTOBUF) || media_type_is(ct, n, "application/protobuf") ||
	    media_type_is(ct, n, "application/vnd.google.protobuf")) {
		*out = CA_CODEC_PROTOBUF;
		return CA_OK;
	}
	return CA_EINVAL;
}

/* ------------------------------------------------------------------- UTF-8 */

static bool text_is_clean(const char *s, size_t len)
{
	return memchr(s, '\0', len) == NULL && ca_utf8_valid(s, len);
}

/* Heap copy of s[0..len) with each byte that does not start a well-formed
 * sequence, and each NUL, replaced by U+FFFD. */
static char *text_sanitize(const char *s, size_t len, size_t *outlen)
{
	static const char replacement[] = "\xEF\xBF\xBD";
	const unsigned char *p = (const unsigned char *)s;
	if (len > (SIZE_MAX - 1) / 3)
		return NULL;
	char *out = malloc(len * 3 + 1);
	if (!out)
		return NULL;
	size_t o = 0, i = 0;
	while (i < len) {
		size_t n = p[i] ? ca_utf8_seq(p + i, len - i) : 0;
		if (n == 0) {
			memcpy(out + o, replacement, 3);
			o += 3;
			i++;
		} else {
			memcpy(out + o, p + i, n);
			o += n;
			i += n;
		}
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

/* ---------------------------------------------------------------- scratch */

/* Allocations that live until a protobuf message is packed. */
struct scratch {
	void **v;
	size_t n, cap;
	enum ca_err err; /* first failure; later calls do nothing */
};

static void scratch_fini(struct scratch *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

/* Take p (freed on failure too). */
static void *scratch_keep(struct scratch *s, void *p)
{
	if (!p) {
		if (!s->err)
			s->err = CA_ENOMEM;
		return NULL;
	}
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		void **v = cap <= SIZE_MAX / sizeof *v ? realloc(s->v, cap * sizeof *v) : NULL;
		if (!v) {
			free(p);
			if (!s->err)
				s->err = CA_ENOMEM;
			return NULL;
		}
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = p;
	return p;
}

/* Zeroed array of n elements of size bytes; NULL when n is 0 or on ENOMEM. */
static void *scratch_array(struct scratch *s, size_t n, size_t size)
{
	if (n == 0 || s->err)
		return NULL;
	return scratch_keep(s, calloc(n, size));
}

/* -------------------------------------------------- JSON, one per message */

/* Writers go straight into the output buffer (json_writer.h): fields in
 * schema order, strings left out when NULL or empty, timestamps when 0;
 * numbers, booleans, lists and nested objects always present. Loops stop
 * at the first invalid input (it decides the result) but not at a buffer
 * failure, so a bad timestamp later in the message is still reported as
 * CA_EINVAL, as the tree-based encoder did. */

static void json_str_list(struct ca_jw *w, const char *const *v, size_t n)
{
	jw_open(w, '[');
	for (size_t i = 0; i < n && !w->err; i++) {
		const char *s = v && v[i] ? v[i] : "";
		jw_elem(w);
		ca_codec_jw_string(w, s, strlen(s));
	}
	jw_close(w, ']');
}

static void json_agent_info(struct ca_jw *w, const struct ca_msg_agent_info *m)
{
	jw_open(w, '{');
	JW_STR(w, "agent_id", m->agent_id);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_STR(w, "cluster_source", m->cluster_source);
	JW_STR(w, "provider", m->provider);
	JW_STR(w, "region", m->region);
	JW_STR(w, "cluster_uid", m->cluster_uid);
	JW_STR(w, "version", m->version);
	JW_STR(w, "git_sha", m->git_sha);
	JW_STR(w, "kubernetes_version", m->kubernetes_version);
	JW_STR(w, "node_name", m->node_name);
	JW_STR(w, "pod_name", m->pod_name);
	JW_STR(w, "pod_namespace", m->pod_namespace);
	JW_TIME(w, "started_at", m->started_at);
	JW_KEY(w, "capabilities");
	jw_open(w, '{');
	JW_BOOL(w, "events", m->cap_events);
	JW_BOOL(w, "metrics", m->cap_metrics);
	JW_BOOL(w, "exec", m->cap_exec);
	JW_KEY(w, "allowed_tools");
	json_str_list(w, m->allowed_tools, m->n_allowed_tools);
	JW_KEY(w, "allowed_actions");
	json_str_list(w, m->allowed_actions, m->n_allowed_actions);
	jw_close(w, '}');
	JW_STR(w, "encoding", m->encoding);
	JW_STR(w, "hostname", m->hostname);
	JW_STR(w, "role", m->role);
	jw_close(w, '}');
}

static void json_heartbeat(struct ca_jw *w, const struct ca_msg_heartbeat *m)
{
	jw_open(w, '{');
	JW_STR(w, "agent_id", m->agent_id);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_TIME(w, "timestamp", m->timestamp);
	JW_INT(w, "uptime_seconds", m->uptime_seconds);
	JW_STR(w, "status", m->status);
	JW_BOOL(w, "kube_api_ok", m->kube_api_ok);
	JW_BOOL(w, "nats_connected", m->nats_connected);
	JW_KEY(w, "queues");
	jw_open(w, '{');
	JW_INT(w, "events", m->queues.events);
	JW_INT(w, "metrics", m->queues.metrics);
	JW_INT(w, "commands", m->queues.commands);
	JW_INT(w, "results", m->queues.results);
	jw_close(w, '}');
	JW_INT(w, "events_published_total", m->events_published_total);
	JW_INT(w, "events_dropped_total", m->events_dropped_total);
	JW_STR(w, "last_error", m->last_error);
	JW_STR(w, "role", m->role);
	JW_STR(w, "leader", m->leader);
	jw_close(w, '}');
}

static void json_event(struct ca_jw *w, const struct ca_msg_event *m)
{
	jw_open(w, '{');
	JW_STR(w, "uid", m->uid);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_STR(w, "type", m->type);
	JW_STR(w, "reason", m->reason);
	JW_STR(w, "message", m->message);
	JW_STR(w, "namespace", m->namespace_);
	JW_KEY(w, "involved_object");
	jw_open(w, '{');
	JW_STR(w, "kind", m->involved_object.kind);
	JW_STR(w, "name", m->involved_object.name);
	JW_STR(w, "namespace", m->involved_object.namespace_);
	JW_STR(w, "uid", m->involved_object.uid);
	JW_STR(w, "api_version", m->involved_object.api_version);
	JW_STR(w, "field_path", m->involved_object.field_path);
	jw_close(w, '}');
	JW_KEY(w, "source");
	jw_open(w, '{');
	JW_STR(w, "component", m->source_component);
	JW_STR(w, "host", m->source_host);
	jw_close(w, '}');
	JW_TIME(w, "first_timestamp", m->first_timestamp);
	JW_TIME(w, "last_timestamp", m->last_timestamp);
	JW_INT(w, "count", m->count);
	JW_STR(w, "severity", m->severity);
	JW_STR(w, "category", m->category);
	JW_STR(w, "resource_version", m->resource_version);
	JW_TIME(w, "observed_at", m->observed_at);
	JW_BOOL(w, "message_truncated", m->message_truncated);
	jw_close(w, '}');
}

static void json_phases(struct ca_jw *w, const struct ca_pod_phase_counts *p)
{
	JW_KEY(w, "pods");
	jw_open(w, '{');
	JW_INT(w, "pending", p->pending);
	JW_INT(w, "running", p->running);
	JW_INT(w, "succeeded", p->succeeded);
	JW_INT(w, "failed", p->failed);
	JW_INT(w, "unknown", p->unknown);
	jw_close(w, '}');
}

/* A Resources member: cpu and memory, and pods when with_pods (node
 * capacity and allocatable). key is the literal "\"name\":". */
static void json_resources(struct ca_jw *w, const char *key, size_t keylen,
                           const struct ca_msg_resources *r, bool with_pods)
{
	jw_key(w, key, keylen);
	jw_open(w, '{');
	JW_INT(w, "cpu_millicores", r->cpu_millicores);
	JW_INT(w, "memory_bytes", r->memory_bytes);
	if (with_pods)
		JW_INT(w, "pods", r->pods);
	jw_close(w, '}');
}

#define JW_RES(w, name, r, with_pods) \
	json_resources((w), "\"" name "\":", sizeof("\"" name "\":") - 1, (r), (with_pods))

static void json_summary(struct ca_jw *w, const struct ca_msg_cluster_summary *s)
{
	JW_KEY(w, "summary");
	jw_open(w, '{');
	JW_INT(w, "nodes_total", s->nodes_total);
	JW_INT(w, "nodes_ready", s->nodes_ready);
	JW_INT(w, "namespaces", s->namespaces);
	json_phases(w, &s->pods);
	JW_INT(w, "containers_restarting", s->containers_restarting);
	JW_INT(w, "restarts", s->restarts);
	JW_INT(w, "unhealthy_pods", s->unhealthy_pods);
	JW_RES(w, "capacity", &s->capacity, true);
	JW_RES(w, "allocatable", &s->allocatable, true);
	JW_RES(w, "requests", &s->requests, false);
	JW_RES(w, "limits", &s->limits, false);
	if (s->usage_known)
		JW_RES(w, "usage", &s->usage, false);
	jw_close(w, '}');
}

static void json_node(struct ca_jw *w, const struct ca_msg_node_sample *n)
{
	jw_elem(w);
	jw_open(w, '{');
	JW_STR(w, "name", n->name);
	JW_BOOL(w, "ready", n->ready);
	JW_BOOL(w, "unschedulable", n->unschedulable);
	JW_KEY(w, "conditions");
	jw_open(w, '[');
	for (size_t i = 0; i < n->n_conditions && !w->bad; i++) {
		const struct ca_msg_node_condition *c = &n->conditions[i];
		jw_elem(w);
		jw_open(w, '{');
		JW_STR(w, "type", c->type);
		JW_STR(w, "status", c->status);
		JW_STR(w, "reason", c->reason);
		JW_TIME(w, "last_transition_time", c->last_transition_time);
		jw_close(w, '}');
	}
	jw_close(w, ']');
	JW_RES(w, "capacity", &n->capacity, true);
	JW_RES(w, "allocatable", &n->allocatable, true);
	if (n->usage_known)
		JW_RES(w, "usage", &n->usage, false);
	JW_INT(w, "pods", n->pods);
	JW_STR(w, "zone", n->zone);
	JW_STR(w, "instance_type", n->instance_type);
	JW_STR(w, "kubelet_version", n->kubelet_version);
	jw_close(w, '}');
}

static void json_namespace(struct ca_jw *w, const struct ca_msg_namespace_sample *n)
{
	jw_elem(w);
	jw_open(w, '{');
	JW_STR(w, "name", n->name);
	JW_STR(w, "phase", n->phase);
	json_phases(w, &n->pods);
	JW_INT(w, "restarts", n->restarts);
	JW_RES(w, "requests", &n->requests, false);
	JW_RES(w, "limits", &n->limits, false);
	if (n->usage_known)
		JW_RES(w, "usage", &n->usage, false);
	jw_close(w, '}');
}

static void json_unhealthy_pod(struct ca_jw *w, const struct ca_msg_unhealthy_pod *p)
{
	jw_elem(w);
	jw_open(w, '{');
	JW_STR(w, "namespace", p->namespace_);
	JW_STR(w, "name", p->name);
	JW_STR(w, "node", p->node);
	JW_STR(w, "phase", p->phase);
	JW_STR(w, "reason", p->reason);
	JW_INT(w, "restarts", p->restarts);
	JW_TIME(w, "since", p->since);
	jw_close(w, '}');
}

static void json_metrics_sample(struct ca_jw *w, const struct ca_msg_metrics_sample *m)
{
	jw_open(w, '{');
	JW_STR(w, "sample_id", m->sample_id);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_STR(w, "agent_id", m->agent_id);
	JW_TIME(w, "timestamp", m->timestamp);
	JW_INT(w, "part", m->part);
	JW_INT(w, "parts", m->parts);
	JW_BOOL(w, "usage_available", m->usage_available);
	JW_STR(w, "usage_unavailable_reason", m->usage_unavailable_reason);
	JW_TIME(w, "usage_observed_at", m->usage_observed_at);
	json_summary(w, &m->summary);
	JW_KEY(w, "nodes");
	jw_open(w, '[');
	for (size_t i = 0; i < m->n_nodes && !w->bad; i++)
		json_node(w, &m->nodes[i]);
	jw_close(w, ']');
	JW_KEY(w, "namespaces");
	jw_open(w, '[');
	for (size_t i = 0; i < m->n_namespaces && !w->bad; i++)
		json_namespace(w, &m->namespaces[i]);
	jw_close(w, ']');
	JW_KEY(w, "unhealthy_pods");
	jw_open(w, '[');
	for (size_t i = 0; i < m->n_unhealthy_pods && !w->bad; i++)
		json_unhealthy_pod(w, &m->unhealthy_pods[i]);
	jw_close(w, ']');
	JW_INT(w, "unhealthy_pods_omitted", m->unhealthy_pods_omitted);
	jw_close(w, '}');
}

static void json_command(struct ca_jw *w, const struct ca_command *m)
{
	jw_open(w, '{');
	JW_STR(w, "id", m->id);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_STR(w, "tool", m->tool);
	JW_STR(w, "action", m->action);
	JW_KEY(w, "args");
	json_str_list(w, (const char *const *)m->args, m->n_args);
	JW_STR(w, "namespace", m->namespace_);
	JW_INT(w, "timeout_seconds", m->timeout_seconds);
	JW_TIME(w, "issued_at", m->issued_at);
	JW_TIME(w, "expires_at", m->expires_at);
	JW_STR(w, "issuer", m->issuer);
	JW_STR(w, "signature", m->signature);
	jw_close(w, '}');
}

static void json_command_result(struct ca_jw *w, const struct ca_msg_command_result *m)
{
	jw_open(w, '{');
	JW_STR(w, "command_id", m->command_id);
	JW_STR(w, "agent_id", m->agent_id);
	JW_STR(w, "cluster_id", m->cluster_id);
	JW_STR(w, "status", m->status);
	JW_INT(w, "exit_code", m->exit_code);
	JW_STRN(w, "stdout", m->stdout_data, m->stdout_len);
	JW_STRN(w, "stderr", m->stderr_data, m->stderr_len);
	JW_BOOL(w, "stdout_truncated", m->stdout_truncated);
	JW_BOOL(w, "stderr_truncated", m->stderr_truncated);
	JW_TIME(w, "started_at", m->started_at);
	JW_TIME(w, "finished_at", m->finished_at);
	JW_INT(w, "duration_ms", m->duration_ms);
	JW_STR(w, "error", m->error);
	jw_close(w, '}');
}

/* --------------------------------------------- protobuf, struct -> wire */

typedef Google__Protobuf__Timestamp pb_time_t;

/* A string protobuf-c can pack: s itself when clean, else a sanitized copy. */
static char *pstr(struct scratch *sc, const char *s)
{
	if (!s || !*s || sc->err)
		return (char *)protobuf_c_empty_string;
	size_t len = strlen(s), n;
	if (text_is_clean(s, len))
		return (char *)s;
	char *clean = scratch_keep(sc, text_sanitize(s, len, &n));
	return clean ? clean : (char *)protobuf_c_empty_string;
}

/* Counted text (command output) is always copied: protobuf-c needs the
 * terminating NUL that s[len] may not hold. */
static char *pstrn(struct scratch *sc, const char *s, size_t len)
{
	size_t n;
	if (!s || !len || sc->err)
		return (char *)protobuf_c_empty_string;
	char *clean = scratch_keep(sc, text_sanitize(s, len, &n));
	return clean ? clean : (char *)protobuf_c_empty_string;
}

static char **pstr_list(struct scratch *sc, const char *const *v, size_t n)
{
	char **out = scratch_array(sc, n, sizeof *out);
	for (size_t i = 0; out && i < n; i++)
		out[i] = pstr(sc, v ? v[i] : NULL);
	return out;
}

static pb_time_t *ptime(struct scratch *sc, pb_time_t *slot, int64_t ms)
{
	if (ms == 0)
		return NULL;
	if (ms < MIN_TIME_MS || ms > MAX_TIME_MS) {
		if (!sc->err)
			sc->err = CA_EINVAL;
		return NULL;
	}
	google__protobuf__timestamp__init(slot);
	int64_t secs = ms / 1000, rem = ms % 1000;
	if (rem < 0) {
		rem += 1000;
		secs -= 1;
	}
	slot->seconds = secs;
	slot->nanos = (int32_t)(rem * 1000000);
	return slot;
}

/* Pack msg onto the end of out. */
static enum ca_err pb_finish(struct scratch *sc, const ProtobufCMessage *msg, struct ca_buf *out)
{
	enum ca_err err = sc->err;
	if (!err) {
		size_t n = protobuf_c_message_get_packed_size(msg);
		err = ca_buf_reserve(out, n);
		if (!err) {
			size_t written = protobuf_c_message_pack(msg, (uint8_t *)out->data + out->len);
			out->len += written;
			out->data[out->len] = '\0';
		}
	}
	scratch_fini(sc);
	return err;
}

static enum ca_err pb_agent_info(const struct ca_msg_agent_info *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__AgentInfo p = COLLECTAGENT__V1__AGENT_INFO__INIT;
	Collectagent__V1__Capabilities caps = COLLECTAGENT__V1__CAPABILITIES__INIT;
	pb_time_t started;
	p.agent_id = pstr(&sc, m->agent_id);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.cluster_source = pstr(&sc, m->cluster_source);
	p.provider = pstr(&sc, m->provider);
	p.region = pstr(&sc, m->region);
	p.cluster_uid = pstr(&sc, m->cluster_uid);
	p.version = pstr(&sc, m->version);
	p.git_sha = pstr(&sc, m->git_sha);
	p.kubernetes_version = pstr(&sc, m->kubernetes_version);
	p.node_name = pstr(&sc, m->node_name);
	p.pod_name = pstr(&sc, m->pod_name);
	p.pod_namespace = pstr(&sc, m->pod_namespace);
	p.started_at = ptime(&sc, &started, m->started_at);
	caps.events = m->cap_events;
	caps.metrics = m->cap_metrics;
	caps.exec = m->cap_exec;
	caps.n_allowed_tools = m->n_allowed_tools;
	caps.allowed_tools = pstr_list(&sc, m->allowed_tools, m->n_allowed_tools);
	caps.n_allowed_actions = m->n_allowed_actions;
	caps.allowed_actions = pstr_list(&sc, m->allowed_actions, m->n_allowed_actions);
	p.capabilities = &caps;
	p.encoding = pstr(&sc, m->encoding);
	p.hostname = pstr(&sc, m->hostname);
	p.role = pstr(&sc, m->role);
	return pb_finish(&sc, &p.base, out);
}

static enum ca_err pb_heartbeat(const struct ca_msg_heartbeat *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__Heartbeat p = COLLECTAGENT__V1__HEARTBEAT__INIT;
	Collectagent__V1__QueueSizes q = COLLECTAGENT__V1__QUEUE_SIZES__INIT;
	pb_time_t ts;
	p.agent_id = pstr(&sc, m->agent_id);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.timestamp = ptime(&sc, &ts, m->timestamp);
	p.uptime_seconds = m->uptime_seconds;
	p.status = pstr(&sc, m->status);
	p.kube_api_ok = m->kube_api_ok;
	p.nats_connected = m->nats_connected;
	q.events = m->queues.events;
	q.metrics = m->queues.metrics;
	q.commands = m->queues.commands;
	q.results = m->queues.results;
	p.queues = &q;
	p.events_published_total = m->events_published_total;
	p.events_dropped_total = m->events_dropped_total;
	p.last_error = pstr(&sc, m->last_error);
	p.role = pstr(&sc, m->role);
	p.leader = pstr(&sc, m->leader);
	return pb_finish(&sc, &p.base, out);
}

static enum ca_err pb_event(const struct ca_msg_event *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__Event p = COLLECTAGENT__V1__EVENT__INIT;
	Collectagent__V1__ObjectReference ref = COLLECTAGENT__V1__OBJECT_REFERENCE__INIT;
	Collectagent__V1__EventSource src = COLLECTAGENT__V1__EVENT_SOURCE__INIT;
	pb_time_t first, last, observed;
	p.uid = pstr(&sc, m->uid);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.type = pstr(&sc, m->type);
	p.reason = pstr(&sc, m->reason);
	p.message = pstr(&sc, m->message);
	p.namespace_ = pstr(&sc, m->namespace_);
	ref.kind = pstr(&sc, m->involved_object.kind);
	ref.name = pstr(&sc, m->involved_object.name);
	ref.namespace_ = pstr(&sc, m->involved_object.namespace_);
	ref.uid = pstr(&sc, m->involved_object.uid);
	ref.api_version = pstr(&sc, m->involved_object.api_version);
	ref.field_path = pstr(&sc, m->involved_object.field_path);
	p.involved_object = &ref;
	src.component = pstr(&sc, m->source_component);
	src.host = pstr(&sc, m->source_host);
	p.source = &src;
	p.first_timestamp = ptime(&sc, &first, m->first_timestamp);
	p.last_timestamp = ptime(&sc, &last, m->last_timestamp);
	p.count = m->count;
	p.severity = pstr(&sc, m->severity);
	p.category = pstr(&sc, m->category);
	p.resource_version = pstr(&sc, m->resource_version);
	p.observed_at = ptime(&sc, &observed, m->observed_at);
	p.message_truncated = m->message_truncated;
	return pb_finish(&sc, &p.base, out);
}

static void pb_phases(Collectagent__V1__PodPhaseCounts *p, const struct ca_pod_phase_counts *c)
{
	collectagent__v1__pod_phase_counts__init(p);
	p->pending = c->pending;
	p->running = c->running;
	p->succeeded = c->succeeded;
	p->failed = c->failed;
	p->unknown = c->unknown;
}

/* Resources and NodeResources submessages from the scratch arena. */
static Collectagent__V1__Resources *pb_resources(struct scratch *sc, const struct ca_msg_resources *r)
{
	Collectagent__V1__Resources *p = scratch_array(sc, 1, sizeof *p);
	if (!p)
		return NULL;
	collectagent__v1__resources__init(p);
	p->cpu_millicores = r->cpu_millicores;
	p->memory_bytes = r->memory_bytes;
	return p;
}

static Collectagent__V1__NodeResources *pb_node_resources(struct scratch *sc, const struct ca_msg_resources *r)
{
	Collectagent__V1__NodeResources *p = scratch_array(sc, 1, sizeof *p);
	if (!p)
		return NULL;
	collectagent__v1__node_resources__init(p);
	p->cpu_millicores = r->cpu_millicores;
	p->memory_bytes = r->memory_bytes;
	p->pods = r->pods;
	return p;
}

static void pb_summary(struct scratch *sc, Collectagent__V1__ClusterSummary *p,
                       Collectagent__V1__PodPhaseCounts *phases, const struct ca_msg_cluster_summary *s)
{
	collectagent__v1__cluster_summary__init(p);
	p->nodes_total = s->nodes_total;
	p->nodes_ready = s->nodes_ready;
	p->namespaces = s->namespaces;
	pb_phases(phases, &s->pods);
	p->pods = phases;
	p->containers_restarting = s->containers_restarting;
	p->restarts = s->restarts;
	p->unhealthy_pods = s->unhealthy_pods;
	p->capacity = pb_node_resources(sc, &s->capacity);
	p->allocatable = pb_node_resources(sc, &s->allocatable);
	p->requests = pb_resources(sc, &s->requests);
	p->limits = pb_resources(sc, &s->limits);
	p->usage = s->usage_known ? pb_resources(sc, &s->usage) : NULL;
}

static void pb_node(struct scratch *sc, Collectagent__V1__NodeSample *p, const struct ca_msg_node_sample *n)
{
	collectagent__v1__node_sample__init(p);
	p->name = pstr(sc, n->name);
	p->ready = n->ready;
	p->unschedulable = n->unschedulable;
	Collectagent__V1__NodeCondition *conds = scratch_array(sc, n->n_conditions, sizeof *conds);
	Collectagent__V1__NodeCondition **cond_ptrs = scratch_array(sc, n->n_conditions, sizeof *cond_ptrs);
	pb_time_t *times = scratch_array(sc, n->n_conditions, sizeof *times);
	if (conds && cond_ptrs && times) {
		for (size_t i = 0; i < n->n_conditions; i++) {
			const struct ca_msg_node_condition *c = &n->conditions[i];
			collectagent__v1__node_condition__init(&conds[i]);
			conds[i].type = pstr(sc, c->type);
			conds[i].status = pstr(sc, c->status);
			conds[i].reason = pstr(sc, c->reason);
			conds[i].last_transition_time = ptime(sc, &times[i], c->last_transition_time);
			cond_ptrs[i] = &conds[i];
		}
		p->n_conditions = n->n_conditions;
		p->conditions = cond_ptrs;
	}
	p->capacity = pb_node_resources(sc, &n->capacity);
	p->allocatable = pb_node_resources(sc, &n->allocatable);
	p->usage = n->usage_known ? pb_resources(sc, &n->usage) : NULL;
	p->pods = n->pods;
	p->zone = pstr(sc, n->zone);
	p->instance_type = pstr(sc, n->instance_type);
	p->kubelet_version = pstr(sc, n->kubelet_version);
}

static void pb_namespace(Collectagent__V1__NamespaceSample *p, Collectagent__V1__PodPhaseCounts *phases,
                         struct scratch *sc, const struct ca_msg_namespace_sample *n)
{
	collectagent__v1__namespace_sample__init(p);
	p->name = pstr(sc, n->name);
	p->phase = pstr(sc, n->phase);
	pb_phases(phases, &n->pods);
	p->pods = phases;
	p->restarts = n->restarts;
	p->requests = pb_resources(sc, &n->requests);
	p->limits = pb_resources(sc, &n->limits);
	p->usage = n->usage_known ? pb_resources(sc, &n->usage) : NULL;
}

static void pb_unhealthy_pod(Collectagent__V1__UnhealthyPod *p, pb_time_t *since, struct scratch *sc,
                             const struct ca_msg_unhealthy_pod *s)
{
	collectagent__v1__unhealthy_pod__init(p);
	p->namespace_ = pstr(sc, s->namespace_);
	p->name = pstr(sc, s->name);
	p->node = pstr(sc, s->node);
	p->phase = pstr(sc, s->phase);
	p->reason = pstr(sc, s->reason);
	p->restarts = s->restarts;
	p->since = ptime(sc, since, s->since);
}

static enum ca_err pb_metrics_sample(const struct ca_msg_metrics_sample *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__MetricsSample p = COLLECTAGENT__V1__METRICS_SAMPLE__INIT;
	Collectagent__V1__ClusterSummary summary;
	Collectagent__V1__PodPhaseCounts summary_phases;
	pb_time_t ts, usage_ts;

	p.sample_id = pstr(&sc, m->sample_id);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.agent_id = pstr(&sc, m->agent_id);
	p.timestamp = ptime(&sc, &ts, m->timestamp);
	p.part = m->part;
	p.parts = m->parts;
	p.usage_available = m->usage_available;
	p.usage_unavailable_reason = pstr(&sc, m->usage_unavailable_reason);
	p.usage_observed_at = ptime(&sc, &usage_ts, m->usage_observed_at);
	pb_summary(&sc, &summary, &summary_phases, &m->summary);
	p.summary = &summary;

	Collectagent__V1__NodeSample *nodes = scratch_array(&sc, m->n_nodes, sizeof *nodes);
	Collectagent__V1__NodeSample **node_ptrs = scratch_array(&sc, m->n_nodes, sizeof *node_ptrs);
	for (size_t i = 0; nodes && node_ptrs && i < m->n_nodes; i++) {
		pb_node(&sc, &nodes[i], &m->nodes[i]);
		node_ptrs[i] = &nodes[i];
	}
	p.n_nodes = sc.err ? 0 : m->n_nodes;
	p.nodes = node_ptrs;

	Collectagent__V1__NamespaceSample *nss = scratch_array(&sc, m->n_namespaces, sizeof *nss);
	Collectagent__V1__NamespaceSample **ns_ptrs = scratch_array(&sc, m->n_namespaces, sizeof *ns_ptrs);
	Collectagent__V1__PodPhaseCounts *ns_phases = scratch_array(&sc, m->n_namespaces, sizeof *ns_phases);
	for (size_t i = 0; nss && ns_ptrs && ns_phases && i < m->n_namespaces; i++) {
		pb_namespace(&nss[i], &ns_phases[i], &sc, &m->namespaces[i]);
		ns_ptrs[i] = &nss[i];
	}
	p.n_namespaces = sc.err ? 0 : m->n_namespaces;
	p.namespaces = ns_ptrs;

	Collectagent__V1__UnhealthyPod *pods = scratch_array(&sc, m->n_unhealthy_pods, sizeof *pods);
	Collectagent__V1__UnhealthyPod **pod_ptrs = scratch_array(&sc, m->n_unhealthy_pods, sizeof *pod_ptrs);
	pb_time_t *pod_times = scratch_array(&sc, m->n_unhealthy_pods, sizeof *pod_times);
	for (size_t i = 0; pods && pod_ptrs && pod_times && i < m->n_unhealthy_pods; i++) {
		pb_unhealthy_pod(&pods[i], &pod_times[i], &sc, &m->unhealthy_pods[i]);
		pod_ptrs[i] = &pods[i];
	}
	p.n_unhealthy_pods = sc.err ? 0 : m->n_unhealthy_pods;
	p.unhealthy_pods = pod_ptrs;
	p.unhealthy_pods_omitted = m->unhealthy_pods_omitted;
	return pb_finish(&sc, &p.base, out);
}

static enum ca_err pb_command(const struct ca_command *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__Command p = COLLECTAGENT__V1__COMMAND__INIT;
	pb_time_t issued, expires;
	p.id = pstr(&sc, m->id);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.tool = pstr(&sc, m->tool);
	p.action = pstr(&sc, m->action);
	p.n_args = m->n_args;
	p.args = pstr_list(&sc, (const char *const *)m->args, m->n_args);
	p.namespace_ = pstr(&sc, m->namespace_);
	p.timeout_seconds = m->timeout_seconds;
	p.issued_at = ptime(&sc, &issued, m->issued_at);
	p.expires_at = ptime(&sc, &expires, m->expires_at);
	p.issuer = pstr(&sc, m->issuer);
	p.signature = pstr(&sc, m->signature);
	return pb_finish(&sc, &p.base, out);
}

static enum ca_err pb_command_result(const struct ca_msg_command_result *m, struct ca_buf *out)
{
	struct scratch sc = { 0 };
	Collectagent__V1__CommandResult p = COLLECTAGENT__V1__COMMAND_RESULT__INIT;
	pb_time_t started, finished;
	p.command_id = pstr(&sc, m->command_id);
	p.agent_id = pstr(&sc, m->agent_id);
	p.cluster_id = pstr(&sc, m->cluster_id);
	p.status = pstr(&sc, m->status);
	p.exit_code = m->exit_code;
	p.stdout = pstrn(&sc, m->stdout_data, m->stdout_len);
	p.stderr = pstrn(&sc, m->stderr_data, m->stderr_len);
	p.stdout_truncated = m->stdout_truncated;
	p.stderr_truncated = m->stderr_truncated;
	p.started_at = ptime(&sc, &started, m->started_at);
	p.finished_at = ptime(&sc, &finished, m->finished_at);
	p.duration_ms = m->duration_ms;
	p.error = pstr(&sc, m->error);
	return pb_finish(&sc, &p.base, out);
}

/* ------------------------------------------------------- public encoders */

#define ENCODE(fmt, m, out, json_fn, pb_fn)                                       \
	do {                                                                      \
		if (!(m) || !(out))                                               \
			return CA_EINVAL;                                         \
		if ((fmt) == CA_CODEC_PROTOBUF)                                   \
			return pb_fn((m), (out));                                 \
		if ((fmt) != CA_CODEC_JSON)                                       \
			return CA_EINVAL;                                         \
		struct ca_jw w_;                                                  \
		ca_codec_jw_begin(&w_, (out));                                    \
		json_fn(&w_, (m));                                                \
		return ca_codec_jw_finish(&w_);                                   \
	} while (0)

enum ca_err ca_codec_encode_agent_info(enum ca_codec_format f, const struct ca_msg_agent_info *m, struct ca_buf *out)
{
	ENCODE(f, m, out, json_agent_info, pb_agent_info);
}

enum ca_err ca_codec_encode_heartbeat(enum ca_codec_format f, const struct ca_msg_heartbeat *m, struct ca_buf *out)
{
	ENCODE(f, m, out, json_heartbeat, pb_heartbeat);
}

enum ca_err ca_codec_encode_event(enum ca_codec_format f, const struct ca_msg_event *m, struct ca_buf *out)
{
	ENCODE(f, m, out, json_event, pb_event);
}

enum ca_err ca_codec_encode_command_result(enum ca_codec_format f, const struct ca_msg_command_result *m,
                                           struct ca_buf *out)
{
	ENCODE(f, m, out, json_command_result, pb_command_result);
}

enum ca_err ca_codec_encode_command(enum ca_codec_format f, const struct ca_command *m, struct ca_buf *out)
{
	ENCODE(f, m, out, json_command, pb_command);
}

enum ca_err ca_codec_encode_metrics_sample(enum ca_codec_format f, const struct ca_msg_metrics_sample *m,
                                           struct ca_buf *out)
{
	ENCODE(f, m, out, json_metrics_sample, pb_metrics_sample);
}

/* ----------------------------------------- protobuf, wire -> struct -> JSON */

/* Milliseconds of an unpacked Timestamp (0 when absent); false when it is
 * outside the range google.protobuf.Timestamp allows. */
static bool from_ptime(const pb_time_t *t, int64_t *ms)
{
	*ms = 0;
	if (!t)
		return true;
	if (t->nanos < 0 || t->nanos > 999999999 || t->seconds < MIN_TIME_MS / 1000 ||
	    t->seconds > MAX_TIME_MS / 1000)
		return false;
	*ms = t->seconds * 1000 + t->nanos / 1000000;
	return true;
}

/* Unpacked strings are never NULL for proto3 fields, but a hand-built
 * message could hold one; the JSON writer treats NULL as "". */
static const char *const *from_pstr_list(char **v)
{
	return (const char *const *)v;
}

static void to_json_agent_info(struct ca_jw *w, const ProtobufCMessage *msg)
{
	const Collectagent__V1__AgentInfo *p = (const Collectagent__V1__AgentInfo *)msg;
	struct ca_msg_agent_info m = {
		.agent_id = p->agent_id, .cluster_id = p->cluster_id, .cluster_source = p->cluster_source,
		.provider = p->provider, .region = p->region, .cluster_uid = p->cluster_uid,
		.version = p->version, .git_sha = p->git_sha, .kubernetes_version = p->kubernetes_version,
		.node_name = p->node_name, .pod_name = p->pod_name, .pod_namespace = p->pod_namespace,
		.encoding = p->encoding, .hostname = p->hostname, .role = p->role,
	};
	if (!from_ptime(p->started_at, &m.started_at))
		jw_fail(w, CA_EPROTO);
	if (p->capabilities) {
		m.cap_events = p->capabilities->events;
		m.cap_metrics = p->capabilities->metrics;
		m.cap_exec = p->capabilities->exec;
		m.allowed_tools = from_pstr_list(p->capabilities->allowed_tools);
		m.n_allowed_tools = p->capabilities->n_allowed_tools;
		m.allowed_actions = from_pstr_list(p->capabilities->allowed_actions);
		m.n_allowed_actions = p->capabilities->n_allowed_actions;
	}
	json_agent_info(w, &m);
}

static void to_json_heartbeat(struct ca_jw *w, const ProtobufCMessage *msg)
{
	const Collectagent__V1__Heartbeat *p = (const Collectagent__V1__Heartbeat *)msg;
	struct ca_msg_heartbeat m = {
		.agent_id = p->agent_id, .cluster_id = p->cluster_id, .status = p->status,
		.uptime_seconds = p->uptime_seconds, .kube_api_ok = p->kube_api_ok,
		.nats_connected = p->nats_connected, .events_published_total = p->events_published_total,
		.events_dropped_total = p->events_dropped_total, .last_error = p->last_error,
		.role = p->role, .leader = p->leader,
	};
	if (!from_ptime(p->timestamp, &m.timestamp))
		jw_fail(w, CA_EPROTO);
	if (p->queues) {
		m.queues.events = p->queues->events;
		m.queues.metrics = p->queues->metrics;
		m.queues.commands = p->queues->commands;
		m.queues.results = p->queues->results;
	}
	json_heartbeat(w, &m);
}

static void to_json_event(struct ca_jw *w, const ProtobufCMessage *msg)
{
	const Collectagent__V1__Event *p = (const Collectagent__V1__Event *)msg;
	struct ca_msg_event m = {
		.uid = p->uid, .cluster_id = p->cluster_id, .type = p->type, .reason = p->reason,
		.message = p->message, .namespace_ = p->namespace_, .count = p->count,
		.severity = p->severity, .category = p->category, .resource_version = p->resource_version,
		.message_truncated = p->message_truncated,
	};
	if (p->involved_object) {
		const Collectagent__V1__ObjectReference *r = p->involved_object;
		m.involved_object = (struct ca_msg_object_ref){
			.kind = r->kind, .name = r->name, .namespace_ = r->namespace_,
			.uid = r->uid, .api_version = r->api_version, .field_path = r->field_path,
		};
	}
	if (p->source) {
		m.source_component = p->source->component;
		m.source_host = p->source->host;
	}
	if (!from_ptime(p->first_timestamp, &m.first_timestamp) ||
	    !from_ptime(p->last_timestamp, &m.last_timestamp) || !from_ptime(p->observed_at, &m.observed_at))
		jw_fail(w, CA_EPROTO);
	json_event(w, &m);
}

static void from_phases(struct ca_pod_phase_counts *c, const Collectagent__V1__PodPhaseCounts *p)
{
	if (!p)
		return;
	c->pending = p->pending;
	c->running = p->running;
	c->succeeded = p->succeeded;
	c->failed = p->failed;
	c->unknown = p->unknown;
}

static void from_resources(struct ca_msg_resources *r, bool *known, const Collectagent__V1__Resources *p)
{
	*r = (struct ca_msg_resources){ 0 };
	if (known)
		*known = p != NULL;
	if (p)
		*r = (struct ca_msg_resources){ p->cpu_millicores, p->memory_bytes, 0 };
}

static void from_node_resources(struct ca_msg_resources *r, const Collectagent__V1__NodeResources *p)
{
	*r = (struct ca_msg_resources){ 0 };
	if (p)
		*r = (struct ca_msg_resources){ p->cpu_millicores, p->memory_bytes, p->pods };
}

static void from_summary(struct ca_msg_cluster_summary *s, const Collectagent__V1__ClusterSummary *p)
{
	*s = (struct ca_msg_cluster_summary){ 0 };
	if (!p)
		return;
	s->nodes_total = p->nodes_total;
	s->nodes_ready = p->nodes_ready;
	s->namespaces = p->namespaces;
	s->containers_restarting = p->containers_restarting;
	s->restarts = p->restarts;
	s->unhealthy_pods = p->unhealthy_pods;
	from_phases(&s->pods, p->pods);
	from_node_resources(&s->capacity, p->capacity);
	from_node_resources(&s->allocatable, p->allocatable);
	from_resources(&s->requests, NULL, p->requests);
	from_resources(&s->limits, NULL, p->limits);
	from_resources(&s->usage, &s->usage_known, p->usage);
}

static void from_node(struct ca_jw *w, struct scratch *sc, struct ca_msg_node_sample *n,
                      const Collectagent__V1__NodeSample *p)
{
	*n = (struct ca_msg_node_sample){
		.name = p->name, .ready = p->ready, .unschedulable = p->unschedulable, .pods = p->pods,
		.zone = p->zone, .instance_type = p->instance_type, .kubelet_version = p->kubelet_version,
	};
	from_node_resources(&n->capacity, p->capacity);
	from_node_resources(&n->allocatable, p->allocatable);
	from_resources(&n->usage, &n->usage_known, p->usage);
	struct ca_msg_node_condition *conds = scratch_array(sc, p->n_conditions, sizeof *conds);
	for (size_t i = 0; conds && i < p->n_conditions; i++) {
		const Collectagent__V1__NodeCondition *c = p->conditions[i];
		conds[i] = (struct ca_msg_node_condition){ .type = c->type, .status = c->status, .reason = c->reason };
		if (!from_ptime(c->last_transition_time, &conds[i].last_transition_time))
			jw_fail(w, CA_EPROTO);
	}
	n->conditions = conds;
	n->n_conditions = conds ? p->n_conditions : 0;
}

static void to_json_metrics_sample(struct ca_jw *w, const ProtobufCMessage *msg)
{
	const Collectagent__V1__MetricsSample *p = (const Collectagent__V1__MetricsSample *)msg;
	struct scratch sc = { 0 };
	struct ca_msg_metrics_sample m = {
		.sample_id = p->sample_id, .cluster_id = p->cluster_id, .agent_id = p->agent_id,
		.part = p->part, .parts = p->parts, .usage_available = p->usage_available,
		.usage_unavailable_reason = p->usage_unavailable_reason,
		.unhealthy_pods_omitted = p->unhealthy_pods_omitted,
	};
	if (!from_ptime(p->timestamp, &m.timestamp) || !from_ptime(p->usage_observed_at, &m.usage_observed_at))
		jw_fail(w, CA_EPROTO);
	from_summary(&m.summary, p->summary);

	struct ca_msg_node_sample *nodes = scratch_array(&sc, p->n_nodes, sizeof *nodes);
	for (size_t i = 0; nodes && i < p->n_nodes; i++)
		from_node(w, &sc, &nodes[i], p->nodes[i]);
	struct ca_msg_namespace_sample *nss = scratch_array(&sc, p->n_namespaces, sizeof *nss);
	for (size_t i = 0; nss && i < p->n_namespaces; i++) {
		const Collectagent__V1__NamespaceSample *s = p->namespaces[i];
		nss[i] = (struct ca_msg_namespace_sample){ .name = s->name, .phase = s->phase, .restarts = s->restarts };
		from_phases(&nss[i].pods, s->pods);
		from_resources(&nss[i].requests, NULL, s->requests);
		from_resources(&nss[i].limits, NULL, s->limits);
		from_resources(&nss[i].usage, &nss[i].usage_known, s->usage);
	}
	struct ca_msg_unhealthy_pod *pods = scratch_array(&sc, p->n_unhealthy_pods, sizeof *pods);
	for (size_t i = 0; pods && i < p->n_unhealthy_pods; i++) {
		const Collectagent__V1__UnhealthyPod *s = p->unhealthy_pods[i];
		pods[i] = (struct ca_msg_unhealthy_pod){
			.namespace_ = s->namespace_, .name = s->name, .node = s->node, .phase = s->phase,
			.reason = s->reason, .restarts = s->restarts,
		};
		if (!from_ptime(s->since, &pods[i].since))
			jw_fail(w, CA_EPROTO);
	}
	if (sc.err) {
		jw_fail(w, sc.err);
		goto out;
	}
	m.nodes = nodes;
	m.n_nodes = p->n_nodes;
	m.namespaces = nss;
	m.n_namespaces = p->n_namespaces;
	m.unhealthy_pods = pods;
	m.n_unhealthy_pods = p->n_unhealthy_pods;
	json_metrics_sample(w, &m);
out:
	scratch_fini(&sc);
}

static void to_json_command_result(struct ca_jw *w, const ProtobufCMessage *msg)
{
	const Collectagent__V1__CommandResult *p = (const Collectagent__V1__CommandResult *)msg;
	struct ca_msg_command_result m = {
		.command_id = p->command_id, .agent_id = p->agent_id, .cluster_id = p->cluster_id,
		.status = p->status, .exit_code = p->exit_code,
		.stdout_data = p->stdout, .stdout_len = p->stdout ? strlen(p->stdout) : 0,
		.stderr_data = p->stderr, .stderr_len = p->stderr ? strlen(p->stderr) : 0,
		.stdout_truncated = p->stdout_truncated, .stderr_truncated = p->stderr_truncated,
		.duration_ms = p->duration_ms, .error = p->error,
	};
	if (!from_ptime(p->started_at, &m.started_at) || !from_ptime(p->finished_at, &m.finished_at))
		jw_fail(w, CA_EPROTO);
	json_command_result(w, &m);
}

struct pb_type {
	const char *name;
	const ProtobufCMessageDescriptor *descriptor;
	void (*to_json)(struct ca_jw *w, const ProtobufCMessage *msg);
};

static const struct pb_type pb_types[] = {
	{ "AgentInfo", &collectagent__v1__agent_info__descriptor, to_json_agent_info },
	{ "Heartbeat", &collectagent__v1__heartbeat__descriptor, to_json_heartbeat },
	{ "Event", &collectagent__v1__event__descriptor, to_json_event },
	{ "MetricsSample", &collectagent__v1__metrics_sample__descriptor, to_json_metrics_sample },
	{ "CommandResult", &collectagent__v1__command_result__descriptor, to_json_command_result },
};

enum ca_err ca_codec_protobuf_to_json(const char *message_type, const void *data, size_t len, struct ca_buf *out)
{
	if (!message_type || !out || (!data && len))
		return CA_EINVAL;
	if (strcmp(message_type, "Command") == 0) {
		struct ca_command cmd;
		enum ca_err err = ca_codec_decode_command(CA_CODEC_PROTOBUF, data, len, &cmd, NULL, 0);
		if (err)
			return err;
		err = ca_codec_encode_command(CA_CODEC_JSON, &cmd, out);
		ca_command_fini(&cmd);
		return err;
	}
	for (size_t i = 0; i < sizeof pb_types / sizeof pb_types[0]; i++) {
		if (strcmp(message_type, pb_types[i].name) != 0)
			continue;
		ProtobufCMessage *msg = protobuf_c_message_unpack(pb_types[i].descriptor, NULL, len,
		                                                  data ? data : (const void *)"");
		if (!msg)
			return CA_EPROTO;
		struct ca_jw w;
		ca_codec_jw_begin(&w, out);
		pb_types[i].to_json(&w, msg);
		enum ca_err err = ca_codec_jw_finish(&w);
		protobuf_c_message_free_unpacked(msg, NULL);
		return err;
	}
	return CA_EINVAL;
}
