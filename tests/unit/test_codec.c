/* Unit tests of the codec: exact JSON, JSON/protobuf agreement for every
 * message, command decoding in both formats and every rejection reason,
 * and the direct JSON writer against the former jansson-based encoder
 * (kept below as the reference): fixed and randomized messages, every
 * buffer cap, and the writer's integer and timestamp formatters. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "codec/codec.h"
#include "core/utf8.h"
#include "codec/json_writer.h"
#include "core/buf.h"
#include "core/timeutil.h"
#include "check.h"

#define T_2026 1795307190123LL /* 2026-11-22T00:26:30.123Z */

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

/* ---------------------------------------------- the former JSON encoder */

/* The jansson-based JSON encoder the codec used before its direct writer,
 * kept verbatim (names prefixed ref_) as the reference the new output must
 * match byte for byte: every field, omission rule, escape and replacement
 * of invalid UTF-8. Do not "fix" it: it defines the wire format. */

#define REF_MIN_TIME_MS (-62135596800000LL)
#define REF_MAX_TIME_MS (253402300799999LL)

/* Length of the well-formed UTF-8 sequence at p (Unicode table 3-7), 0 if
 * there is none. */
static size_t ref_utf8_seq(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t n;
	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		n = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		n = 3;
		if (c == 0xE0)
			lo = 0xA0;
		else if (c == 0xED)
			hi = 0x9F;
	} else if (c >= 0xF0 && c <= 0xF4) {
		n = 4;
		if (c == 0xF0)
			lo = 0x90;
		else if (c == 0xF4)
			hi = 0x8F;
	} else {
		return 0;
	}
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (p[i] < 0x80 || p[i] > 0xBF)
			return 0;
	return n;
}

static bool ref_text_is_clean(const char *s, size_t len)
{
	if (memchr(s, '\0', len) != NULL)
		return false;
	for (size_t i = 0; i < len;) {
		size_t n = ref_utf8_seq((const unsigned char *)s + i, len - i);
		if (n == 0)
			return false;
		i += n;
	}
	return true;
}

/* Heap copy of s[0..len) with each byte that does not start a well-formed
 * sequence, and each NUL, replaced by U+FFFD. */
static char *ref_text_sanitize(const char *s, size_t len, size_t *outlen)
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
		size_t n = p[i] ? ref_utf8_seq(p + i, len - i) : 0;
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

struct ref_jw {
	enum ca_err err; /* first failure; later calls do nothing */
};

static void ref_jw_fail(struct ref_jw *w, enum ca_err err)
{
	if (!w->err)
		w->err = err;
}

static void ref_jset(struct ref_jw *w, json_t *obj, const char *key, json_t *val)
{
	if (!val) {
		ref_jw_fail(w, CA_ENOMEM);
		return;
	}
	if (w->err || !obj) {
		json_decref(val);
		return;
	}
	if (json_object_set_new(obj, key, val) != 0) /* decrefs val */
		ref_jw_fail(w, CA_ENOMEM);
}

static void ref_jappend(struct ref_jw *w, json_t *arr, json_t *val)
{
	if (!val) {
		ref_jw_fail(w, CA_ENOMEM);
		return;
	}
	if (w->err || !arr) {
		json_decref(val);
		return;
	}
	if (json_array_append_new(arr, val) != 0)
		ref_jw_fail(w, CA_ENOMEM);
}

static json_t *ref_jtext(struct ref_jw *w, const char *s, size_t len)
{
	if (w->err)
		return NULL;
	if (ref_text_is_clean(s, len))
		return json_stringn_nocheck(s, len);
	size_t n;
	char *clean = ref_text_sanitize(s, len, &n);
	json_t *v = clean ? json_stringn_nocheck(clean, n) : NULL;
	free(clean);
	return v;
}

/* Strings: omitted when NULL or empty. */
static void ref_jstr(struct ref_jw *w, json_t *o, const char *key, const char *s)
{
	if (s && *s)
		ref_jset(w, o, key, ref_jtext(w, s, strlen(s)));
}

static void ref_jstrn(struct ref_jw *w, json_t *o, const char *key, const char *s, size_t len)
{
	if (s && len)
		ref_jset(w, o, key, ref_jtext(w, s, len));
}

static void ref_jint(struct ref_jw *w, json_t *o, const char *key, int64_t v)
{
	ref_jset(w, o, key, json_integer((json_int_t)v));
}

static void ref_jbool(struct ref_jw *w, json_t *o, const char *key, bool v)
{
	ref_jset(w, o, key, json_boolean(v));
}

/* Timestamps: RFC 3339 UTC with milliseconds, omitted when 0. */
static void ref_jtime(struct ref_jw *w, json_t *o, const char *key, int64_t ms)
{
	char ts[CA_RFC3339_LEN];
	if (ms == 0)
		return;
	if (ms < REF_MIN_TIME_MS || ms > REF_MAX_TIME_MS) {
		ref_jw_fail(w, CA_EINVAL);
		return;
	}
	ca_format_rfc3339(ms, ts);
	ref_jset(w, o, key, json_string(ts));
}

/* A nested object or array, always present; borrowed from its parent. */
static json_t *ref_jchild(struct ref_jw *w, json_t *o, const char *key, json_t *child)
{
	ref_jset(w, o, key, child);
	return w->err ? NULL : child;
}

static void ref_jstr_list(struct ref_jw *w, json_t *o, const char *key, const char *const *v, size_t n)
{
	json_t *arr = ref_jchild(w, o, key, json_array());
	for (size_t i = 0; i < n && !w->err; i++) {
		const char *s = v && v[i] ? v[i] : "";
		ref_jappend(w, arr, ref_jtext(w, s, strlen(s)));
	}
}

struct ref_dump_ctx {
	struct ca_buf *out;
	enum ca_err err;
};

static int ref_dump_cb(const char *buffer, size_t size, void *data)
{
	struct ref_dump_ctx *d = data;
	d->err = ca_buf_append(d->out, buffer, size);
	return d->err ? -1 : 0;
}

/* Append root, compact, to out; consumes root. out is unchanged on error. */
static enum ca_err ref_jw_finish(struct ref_jw *w, json_t *root, struct ca_buf *out)
{
	size_t start = out->len;
	enum ca_err err = w->err ? w->err : root ? CA_OK : CA_ENOMEM;
	if (!err) {
		struct ref_dump_ctx d = { out, CA_OK };
		if (json_dump_callback(root, ref_dump_cb, &d, JSON_COMPACT) != 0)
			err = d.err ? d.err : CA_ENOMEM;
	}
	if (err && out->data) {
		out->len = start;
		out->data[start] = '\0';
	}
	json_decref(root);
	return err;
}

/* -------------------------------------------------- JSON, one per message */

static json_t *ref_json_agent_info(struct ref_jw *w, const struct ca_msg_agent_info *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "agent_id", m->agent_id);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jstr(w, o, "cluster_source", m->cluster_source);
	ref_jstr(w, o, "provider", m->provider);
	ref_jstr(w, o, "region", m->region);
	ref_jstr(w, o, "cluster_uid", m->cluster_uid);
	ref_jstr(w, o, "version", m->version);
	ref_jstr(w, o, "git_sha", m->git_sha);
	ref_jstr(w, o, "kubernetes_version", m->kubernetes_version);
	ref_jstr(w, o, "node_name", m->node_name);
	ref_jstr(w, o, "pod_name", m->pod_name);
	ref_jstr(w, o, "pod_namespace", m->pod_namespace);
	ref_jtime(w, o, "started_at", m->started_at);
	json_t *caps = ref_jchild(w, o, "capabilities", json_object());
	ref_jbool(w, caps, "events", m->cap_events);
	ref_jbool(w, caps, "metrics", m->cap_metrics);
	ref_jbool(w, caps, "exec", m->cap_exec);
	ref_jstr_list(w, caps, "allowed_tools", m->allowed_tools, m->n_allowed_tools);
	ref_jstr_list(w, caps, "allowed_actions", m->allowed_actions, m->n_allowed_actions);
	ref_jstr(w, o, "encoding", m->encoding);
	ref_jstr(w, o, "hostname", m->hostname);
	ref_jstr(w, o, "role", m->role);
	return o;
}

static json_t *ref_json_heartbeat(struct ref_jw *w, const struct ca_msg_heartbeat *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "agent_id", m->agent_id);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jtime(w, o, "timestamp", m->timestamp);
	ref_jint(w, o, "uptime_seconds", m->uptime_seconds);
	ref_jstr(w, o, "status", m->status);
	ref_jbool(w, o, "kube_api_ok", m->kube_api_ok);
	ref_jbool(w, o, "nats_connected", m->nats_connected);
	json_t *q = ref_jchild(w, o, "queues", json_object());
	ref_jint(w, q, "events", m->queues.events);
	ref_jint(w, q, "metrics", m->queues.metrics);
	ref_jint(w, q, "commands", m->queues.commands);
	ref_jint(w, q, "results", m->queues.results);
	ref_jint(w, o, "events_published_total", m->events_published_total);
	ref_jint(w, o, "events_dropped_total", m->events_dropped_total);
	ref_jstr(w, o, "last_error", m->last_error);
	ref_jstr(w, o, "role", m->role);
	ref_jstr(w, o, "leader", m->leader);
	return o;
}

static json_t *ref_json_event(struct ref_jw *w, const struct ca_msg_event *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "uid", m->uid);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jstr(w, o, "type", m->type);
	ref_jstr(w, o, "reason", m->reason);
	ref_jstr(w, o, "message", m->message);
	ref_jstr(w, o, "namespace", m->namespace_);
	json_t *ref = ref_jchild(w, o, "involved_object", json_object());
	ref_jstr(w, ref, "kind", m->involved_object.kind);
	ref_jstr(w, ref, "name", m->involved_object.name);
	ref_jstr(w, ref, "namespace", m->involved_object.namespace_);
	ref_jstr(w, ref, "uid", m->involved_object.uid);
	ref_jstr(w, ref, "api_version", m->involved_object.api_version);
	ref_jstr(w, ref, "field_path", m->involved_object.field_path);
	json_t *src = ref_jchild(w, o, "source", json_object());
	ref_jstr(w, src, "component", m->source_component);
	ref_jstr(w, src, "host", m->source_host);
	ref_jtime(w, o, "first_timestamp", m->first_timestamp);
	ref_jtime(w, o, "last_timestamp", m->last_timestamp);
	ref_jint(w, o, "count", m->count);
	ref_jstr(w, o, "severity", m->severity);
	ref_jstr(w, o, "category", m->category);
	ref_jstr(w, o, "resource_version", m->resource_version);
	ref_jtime(w, o, "observed_at", m->observed_at);
	ref_jbool(w, o, "message_truncated", m->message_truncated);
	return o;
}

static void ref_json_phases(struct ref_jw *w, json_t *o, const struct ca_pod_phase_counts *p)
{
	json_t *c = ref_jchild(w, o, "pods", json_object());
	ref_jint(w, c, "pending", p->pending);
	ref_jint(w, c, "running", p->running);
	ref_jint(w, c, "succeeded", p->succeeded);
	ref_jint(w, c, "failed", p->failed);
	ref_jint(w, c, "unknown", p->unknown);
}

static void ref_json_resources(struct ref_jw *w, json_t *parent, const char *key,
                               const struct ca_msg_resources *r, bool with_pods)
{
	json_t *o = ref_jchild(w, parent, key, json_object());
	ref_jint(w, o, "cpu_millicores", r->cpu_millicores);
	ref_jint(w, o, "memory_bytes", r->memory_bytes);
	if (with_pods)
		ref_jint(w, o, "pods", r->pods);
}

static void ref_json_summary(struct ref_jw *w, json_t *parent, const struct ca_msg_cluster_summary *s)
{
	json_t *o = ref_jchild(w, parent, "summary", json_object());
	ref_jint(w, o, "nodes_total", s->nodes_total);
	ref_jint(w, o, "nodes_ready", s->nodes_ready);
	ref_jint(w, o, "namespaces", s->namespaces);
	ref_json_phases(w, o, &s->pods);
	ref_jint(w, o, "containers_restarting", s->containers_restarting);
	ref_jint(w, o, "restarts", s->restarts);
	ref_jint(w, o, "unhealthy_pods", s->unhealthy_pods);
	ref_json_resources(w, o, "capacity", &s->capacity, true);
	ref_json_resources(w, o, "allocatable", &s->allocatable, true);
	ref_json_resources(w, o, "requests", &s->requests, false);
	ref_json_resources(w, o, "limits", &s->limits, false);
	if (s->usage_known)
		ref_json_resources(w, o, "usage", &s->usage, false);
}

static void ref_json_node(struct ref_jw *w, json_t *arr, const struct ca_msg_node_sample *n)
{
	json_t *o = json_object();
	ref_jappend(w, arr, o);
	if (w->err)
		return;
	ref_jstr(w, o, "name", n->name);
	ref_jbool(w, o, "ready", n->ready);
	ref_jbool(w, o, "unschedulable", n->unschedulable);
	json_t *conds = ref_jchild(w, o, "conditions", json_array());
	for (size_t i = 0; i < n->n_conditions && !w->err; i++) {
		const struct ca_msg_node_condition *c = &n->conditions[i];
		json_t *co = json_object();
		ref_jappend(w, conds, co);
		ref_jstr(w, co, "type", c->type);
		ref_jstr(w, co, "status", c->status);
		ref_jstr(w, co, "reason", c->reason);
		ref_jtime(w, co, "last_transition_time", c->last_transition_time);
	}
	ref_json_resources(w, o, "capacity", &n->capacity, true);
	ref_json_resources(w, o, "allocatable", &n->allocatable, true);
	if (n->usage_known)
		ref_json_resources(w, o, "usage", &n->usage, false);
	ref_jint(w, o, "pods", n->pods);
	ref_jstr(w, o, "zone", n->zone);
	ref_jstr(w, o, "instance_type", n->instance_type);
	ref_jstr(w, o, "kubelet_version", n->kubelet_version);
}

static void ref_json_namespace(struct ref_jw *w, json_t *arr, const struct ca_msg_namespace_sample *n)
{
	json_t *o = json_object();
	ref_jappend(w, arr, o);
	if (w->err)
		return;
	ref_jstr(w, o, "name", n->name);
	ref_jstr(w, o, "phase", n->phase);
	ref_json_phases(w, o, &n->pods);
	ref_jint(w, o, "restarts", n->restarts);
	ref_json_resources(w, o, "requests", &n->requests, false);
	ref_json_resources(w, o, "limits", &n->limits, false);
	if (n->usage_known)
		ref_json_resources(w, o, "usage", &n->usage, false);
}

static void ref_json_unhealthy_pod(struct ref_jw *w, json_t *arr, const struct ca_msg_unhealthy_pod *p)
{
	json_t *o = json_object();
	ref_jappend(w, arr, o);
	if (w->err)
		return;
	ref_jstr(w, o, "namespace", p->namespace_);
	ref_jstr(w, o, "name", p->name);
	ref_jstr(w, o, "node", p->node);
	ref_jstr(w, o, "phase", p->phase);
	ref_jstr(w, o, "reason", p->reason);
	ref_jint(w, o, "restarts", p->restarts);
	ref_jtime(w, o, "since", p->since);
}

static json_t *ref_json_metrics_sample(struct ref_jw *w, const struct ca_msg_metrics_sample *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "sample_id", m->sample_id);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jstr(w, o, "agent_id", m->agent_id);
	ref_jtime(w, o, "timestamp", m->timestamp);
	ref_jint(w, o, "part", m->part);
	ref_jint(w, o, "parts", m->parts);
	ref_jbool(w, o, "usage_available", m->usage_available);
	ref_jstr(w, o, "usage_unavailable_reason", m->usage_unavailable_reason);
	ref_jtime(w, o, "usage_observed_at", m->usage_observed_at);
	ref_json_summary(w, o, &m->summary);
	json_t *nodes = ref_jchild(w, o, "nodes", json_array());
	for (size_t i = 0; i < m->n_nodes && !w->err; i++)
		ref_json_node(w, nodes, &m->nodes[i]);
	json_t *nss = ref_jchild(w, o, "namespaces", json_array());
	for (size_t i = 0; i < m->n_namespaces && !w->err; i++)
		ref_json_namespace(w, nss, &m->namespaces[i]);
	json_t *pods = ref_jchild(w, o, "unhealthy_pods", json_array());
	for (size_t i = 0; i < m->n_unhealthy_pods && !w->err; i++)
		ref_json_unhealthy_pod(w, pods, &m->unhealthy_pods[i]);
	ref_jint(w, o, "unhealthy_pods_omitted", m->unhealthy_pods_omitted);
	return o;
}

static json_t *ref_json_command(struct ref_jw *w, const struct ca_command *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "id", m->id);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jstr(w, o, "tool", m->tool);
	ref_jstr(w, o, "action", m->action);
	ref_jstr_list(w, o, "args", (const char *const *)m->args, m->n_args);
	ref_jstr(w, o, "namespace", m->namespace_);
	ref_jint(w, o, "timeout_seconds", m->timeout_seconds);
	ref_jtime(w, o, "issued_at", m->issued_at);
	ref_jtime(w, o, "expires_at", m->expires_at);
	ref_jstr(w, o, "issuer", m->issuer);
	ref_jstr(w, o, "signature", m->signature);
	return o;
}

static json_t *ref_json_command_result(struct ref_jw *w, const struct ca_msg_command_result *m)
{
	json_t *o = json_object();
	ref_jstr(w, o, "command_id", m->command_id);
	ref_jstr(w, o, "agent_id", m->agent_id);
	ref_jstr(w, o, "cluster_id", m->cluster_id);
	ref_jstr(w, o, "status", m->status);
	ref_jint(w, o, "exit_code", m->exit_code);
	ref_jstrn(w, o, "stdout", m->stdout_data, m->stdout_len);
	ref_jstrn(w, o, "stderr", m->stderr_data, m->stderr_len);
	ref_jbool(w, o, "stdout_truncated", m->stdout_truncated);
	ref_jbool(w, o, "stderr_truncated", m->stderr_truncated);
	ref_jtime(w, o, "started_at", m->started_at);
	ref_jtime(w, o, "finished_at", m->finished_at);
	ref_jint(w, o, "duration_ms", m->duration_ms);
	ref_jstr(w, o, "error", m->error);
	return o;
}


#define REF_ENCODE(fn, m, out)                                   \
	do {                                                     \
		struct ref_jw w_ = { CA_OK };                    \
		json_t *root_ = fn(&w_, (m));                    \
		return ref_jw_finish(&w_, root_, (out));         \
	} while (0)

static enum ca_err ref_agent_info(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_agent_info, m, o);
}
static enum ca_err ref_heartbeat(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_heartbeat, m, o);
}
static enum ca_err ref_event(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_event, m, o);
}
static enum ca_err ref_metrics(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_metrics_sample, m, o);
}
static enum ca_err ref_command(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_command, m, o);
}
static enum ca_err ref_result(const void *m, struct ca_buf *o)
{
	REF_ENCODE(ref_json_command_result, m, o);
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
	CHECK(ca_utf8_valid("", 0));
	CHECK(ca_utf8_valid("plain", 5));
	CHECK(ca_utf8_valid("\xC3\xA9t\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80", 14));
	CHECK(!ca_utf8_valid("\xFF", 1));
	CHECK(!ca_utf8_valid("\xC3", 1));              /* truncated */
	CHECK(!ca_utf8_valid("\xC0\xAF", 2));          /* overlong '/' */
	CHECK(!ca_utf8_valid("\xE0\x80\xAF", 3));      /* overlong */
	CHECK(!ca_utf8_valid("\xED\xA0\x80", 3));      /* surrogate */
	CHECK(!ca_utf8_valid("\xF4\x90\x80\x80", 4));  /* > U+10FFFF */
	CHECK(ca_utf8_valid("\xF4\x8F\xBF\xBF", 4));   /* U+10FFFF */
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

	/* With ha.enabled: the role and the Lease's holder, last. */
	hb.role = "standby";
	hb.leader = "collect-agent-7d9f-b";
	j = round_trip("Heartbeat", enc_heartbeat, &hb);
	CHECK_CONTAINS(j, "\"last_error\":\"x\",\"role\":\"standby\",\"leader\":\"collect-agent-7d9f-b\"}");
	free(j);
}

/* ----------------------------------------------------------- round trips */

static void test_agent_info(void)
{
	const char *tools[] = { "kubectl", "" };
	const char *actions[] = { "kubectl get", "kubectl auth can-i" };
	struct ca_msg_agent_info m = {
		.agent_id = "agent-1", .cluster_id = "prod", .cluster_source = "kube-system-uid",
		.provider = "aws", .region = "eu-west-1", .cluster_uid = "4c1f3e1a-0000-4000-8000-000000000001",
		.version = "0.1.0", .git_sha = "abcdef012345", .kubernetes_version = "v1.29.3",
		.node_name = "ip-10-0-0-1", .pod_name = "collect-agent-5d9c", .pod_namespace = "collect-agent",
		.encoding = "protobuf", .hostname = "collect-agent-5d9c", .started_at = T_2026,
		.cap_events = true, .cap_metrics = false, .cap_exec = true,
		.allowed_tools = tools, .n_allowed_tools = 2,
		.allowed_actions = actions, .n_allowed_actions = 2, .role = "leader",
	};
	char *j = round_trip("AgentInfo", enc_agent_info, &m);
	CHECK_CONTAINS(j, "\"hostname\":\"collect-agent-5d9c\",\"role\":\"leader\"}");
	CHECK_CONTAINS(j, "\"capabilities\":{\"events\":true,\"metrics\":false,\"exec\":true,"
	                  "\"allowed_tools\":[\"kubectl\",\"\"],"
	                  "\"allowed_actions\":[\"kubectl get\",\"kubectl auth can-i\"]}");
	CHECK_CONTAINS(j, "\"started_at\":\"2026-11-22T00:26:30.123Z\"");
	CHECK_CONTAINS(j, "\"cluster_source\":\"kube-system-uid\"");
	free(j);

	/* Mostly empty: NULL strings and lists are omitted / empty. */
	struct ca_msg_agent_info empty = { .agent_id = "a" };
	j = round_trip("AgentInfo", enc_agent_info, &empty);
	CHECK_STR(j, "{\"agent_id\":\"a\",\"capabilities\":{\"events\":false,\"metrics\":false,"
	             "\"exec\":false,\"allowed_tools\":[],\"allowed_actions\":[]}}");
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
		  .capacity = { 4000, 16LL << 30, 110 }, .allocatable = { 3920, 15LL << 30, 110 },
		  .usage = { 1250, 6LL << 30, 0 }, .usage_known = true, .pods = 17,
		  .zone = "eu-west-1a", .instance_type = "m5.xlarge", .kubelet_version = "v1.29.3" },
		{ .name = "node-2", .ready = false, .unschedulable = true },
	};
	struct ca_msg_namespace_sample nss[] = {
		{ .name = "shop", .phase = "Active", .pods = { .pending = 1, .running = 5, .failed = 1 },
		  .restarts = 9, .requests = { 1500, 1LL << 30, 0 }, .limits = { 3000, 2LL << 30, 0 } },
		{ .name = "kube-system", .pods = { .running = 12 }, .usage = { 80, 1 << 20, 0 }, .usage_known = true },
	};
	struct ca_msg_unhealthy_pod pods[] = {
		{ .namespace_ = "shop", .name = "web-0", .node = "node-1", .phase = "Running",
		  .reason = "CrashLoopBackOff", .restarts = 9, .since = 1795306800000LL },
	};
	struct ca_msg_metrics_sample m = {
		.sample_id = "s-1", .cluster_id = "prod", .agent_id = "agent-1", .timestamp = T_2026, .part = 1,
		.parts = 2, .usage_available = true, .usage_observed_at = T_2026,
		.summary = { .nodes_total = 2, .nodes_ready = 1, .namespaces = 2,
		             .pods = { .pending = 1, .running = 17, .failed = 1 }, .containers_restarting = 1,
		             .restarts = 9, .unhealthy_pods = 3, .capacity = { 8000, 32LL << 30, 220 },
		             .usage = { 1250, 6LL << 30, 0 }, .usage_known = true },
		.nodes = nodes, .n_nodes = 2, .namespaces = nss, .n_namespaces = 2, .unhealthy_pods = pods,
		.n_unhealthy_pods = 1, .unhealthy_pods_omitted = 2,
	};
	char *j = round_trip("MetricsSample", enc_metrics, &m);
	CHECK_CONTAINS(j, "{\"sample_id\":\"s-1\",\"cluster_id\":\"prod\",\"agent_id\":\"agent-1\",");
	CHECK_CONTAINS(j, "\"part\":1,\"parts\":2,\"usage_available\":true,"
	                  "\"usage_observed_at\":\"2026-11-22T00:26:30.123Z\",\"summary\":{\"nodes_total\":2,"
	                  "\"nodes_ready\":1,\"namespaces\":2,\"pods\":{\"pending\":1,\"running\":17,"
	                  "\"succeeded\":0,\"failed\":1,\"unknown\":0},\"containers_restarting\":1,"
	                  "\"restarts\":9,\"unhealthy_pods\":3,"
	                  "\"capacity\":{\"cpu_millicores\":8000,\"memory_bytes\":34359738368,\"pods\":220}");
	CHECK_CONTAINS(j, "\"usage\":{\"cpu_millicores\":1250,\"memory_bytes\":6442450944}}");
	CHECK_CONTAINS(j, "\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"KubeletReady\","
	                  "\"last_transition_time\":\"2026-11-22T00:20:00.000Z\"},{\"type\":\"MemoryPressure\"");
	CHECK_CONTAINS(j, "\"allocatable\":{\"cpu_millicores\":3920,\"memory_bytes\":16106127360,\"pods\":110},"
	                  "\"usage\":{\"cpu_millicores\":1250,\"memory_bytes\":6442450944},\"pods\":17,"
	                  "\"zone\":\"eu-west-1a\",\"instance_type\":\"m5.xlarge\"");
	/* Usage unknown: no usage object at all (not zeros). */
	CHECK_CONTAINS(j, "{\"name\":\"node-2\",\"ready\":false,\"unschedulable\":true,\"conditions\":[],"
	                  "\"capacity\":{\"cpu_millicores\":0,\"memory_bytes\":0,\"pods\":0},"
	                  "\"allocatable\":{\"cpu_millicores\":0,\"memory_bytes\":0,\"pods\":0},\"pods\":0}");
	CHECK_CONTAINS(j, "{\"name\":\"shop\",\"phase\":\"Active\",\"pods\":{\"pending\":1,");
	CHECK_CONTAINS(j, "\"restarts\":9,\"requests\":{\"cpu_millicores\":1500,\"memory_bytes\":1073741824},"
	                  "\"limits\":{\"cpu_millicores\":3000,\"memory_bytes\":2147483648}}");
	CHECK_CONTAINS(j, "\"unhealthy_pods\":[{\"namespace\":\"shop\",\"name\":\"web-0\",\"node\":\"node-1\","
	                  "\"phase\":\"Running\",\"reason\":\"CrashLoopBackOff\",\"restarts\":9,"
	                  "\"since\":\"2026-11-22T00:20:00.000Z\"}],\"unhealthy_pods_omitted\":2}");
	free(j);

	struct ca_msg_metrics_sample empty = { .cluster_id = "c" };
	j = round_trip("MetricsSample", enc_metrics, &empty);
	CHECK_CONTAINS(j, "\"nodes\":[],\"namespaces\":[],\"unhealthy_pods\":[]");
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

/* ------------------------------------- direct writer vs former encoder */

typedef enum ca_err (*enc_fn)(enum ca_codec_format, const void *, struct ca_buf *);
typedef enum ca_err (*ref_fn)(const void *, struct ca_buf *);

static int diffs_reported;

/* Encode m with the codec and with the reference, each after a prefix in
 * its own buffer: same status, same bytes, and on failure the prefix
 * alone (the buffer as it was). */
static void same_as_reference(const char *what, enc_fn enc, ref_fn ref, const void *m)
{
	struct ca_buf a, b;
	ca_buf_init(&a, 0);
	ca_buf_init(&b, 0);
	ca_buf_append_str(&a, "prefix");
	ca_buf_append_str(&b, "prefix");
	enum ca_err ra = ref(m, &a);
	enum ca_err rb = enc(CA_CODEC_JSON, m, &b);
	CHECK_INT(rb, ra);
	bool same = a.len == b.len && memcmp(a.data, b.data, a.len) == 0 && b.data[b.len] == '\0';
	CHECK(same);
	if (!same && diffs_reported++ < 5) {
		size_t i = 0;
		while (i < a.len && i < b.len && a.data[i] == b.data[i])
			i++;
		fprintf(stderr, "   %s differs at byte %zu (lengths %zu/%zu)\n   reference: %.*s\n   writer:    %.*s\n",
		        what, i, a.len, b.len, (int)(a.len - i < 80 ? a.len - i : 80), a.data + i,
		        (int)(b.len - i < 80 ? b.len - i : 80), b.data + i);
	}
	if (ra != CA_OK) {
		CHECK_INT(b.len, 6);
		CHECK_STR(b.data, "prefix");
	}
	ca_buf_fini(&a);
	ca_buf_fini(&b);
}

/* Strings that stress the escaper: every byte value around the 8-byte
 * blocks the writer copies at once, each escape form, every kind of bad
 * UTF-8 (truncated, overlong, surrogate, above U+10FFFF, stray
 * continuation bytes) and valid 2-, 3- and 4-byte sequences. */
static const char *const tricky[] = {
	"",
	"a",
	"plain ascii text that is longer than eight bytes",
	"\"", "\\", "/", "\x7F", "\x01", "\x1F", "\b\f\n\r\t\v\x1b",
	"0123456\"89abcdef", "01234567\\9abcdef", "012345678\n", "0123456\x01",
	"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",
	"\xEF\xBB\xBF BOM and U+2028 \xE2\x80\xA8 U+FFFF \xEF\xBF\xBF U+10FFFF \xF4\x8F\xBF\xBF",
	"\xFF", "\xFE\xFF", "\xC3", "ab\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xC0\xAF", "\xC1\xBF",
	"\xE0\x80\xAF", "\xE0\x9F\xBF", "\xED\xA0\x80", "\xED\xBF\xBF", "\xF0\x80\x80\x80", "\xF4\x90\x80\x80",
	"\xF5\x80\x80\x80", "\x80", "\xBF\x80\x80", "\xC3\xA9\x80", "x\xE2\x28\xA1y", "\xF0\x9F\x98\x80\xF0\x9F",
	"1234567\xC3\xA9", "1234567\xE2\x82\xAC", "123456\xF0\x9F\x98\x80", ("1234567\xFF" "12345678"), /* one string: the split ends the hex escape */
	"Back-off restarting failed container \"app\" in pod web-0_shop(8d5e)\n\tat line 3 \\ done",
};

static void test_writer_matches_reference_fixed(void)
{
	size_t nt = sizeof tricky / sizeof tricky[0];
	/* Every tricky string in every string field position kind. */
	for (size_t i = 0; i < nt; i++) {
		const char *s = tricky[i];
		struct ca_msg_event ev = {
			.uid = s, .cluster_id = "prod", .type = s, .reason = "BackOff", .message = s, .namespace_ = s,
			.involved_object = { .kind = s, .name = s, .namespace_ = "", .uid = NULL, .api_version = s,
			                     .field_path = s },
			.source_component = s, .source_host = s, .first_timestamp = 1, .last_timestamp = -1,
			.observed_at = T_2026, .count = (int64_t)i, .severity = s, .category = s,
			.resource_version = s, .message_truncated = i & 1,
		};
		same_as_reference("event", enc_event, ref_event, &ev);
		const char *tools[] = { s, NULL, "", "kubectl", s };
		struct ca_msg_agent_info ai = {
			.agent_id = s, .cluster_id = s, .cluster_source = "env", .provider = s, .region = s,
			.cluster_uid = s, .version = s, .git_sha = s, .kubernetes_version = s, .node_name = s,
			.pod_name = s, .pod_namespace = s, .encoding = s, .hostname = s, .role = s, .started_at = -62135596800000LL,
			.cap_events = i & 1, .cap_metrics = i & 2, .cap_exec = i & 4,
			.allowed_tools = tools, .n_allowed_tools = 5,
			.allowed_actions = tools + 1, .n_allowed_actions = 4,
		};
		same_as_reference("agent_info", enc_agent_info, ref_agent_info, &ai);
		/* Counted text with the terminator counted in, and a NUL inside. */
		size_t n = strlen(s);
		struct ca_msg_command_result cr = {
			.command_id = s, .status = "failed", .exit_code = -(int)i, .stdout_data = s,
			.stdout_len = n + 1, .stderr_data = s, .stderr_len = n, .error = s,
			.started_at = 253402300799999LL, .finished_at = 1, .duration_ms = INT64_MIN,
		};
		same_as_reference("command_result", enc_result, ref_result, &cr);
		char *args[] = { (char *)s, (char *)"", (char *)"-o", NULL };
		struct ca_command cmd = { .id = (char *)s, .tool = (char *)s, .args = args, .n_args = 4,
		                          .timeout_seconds = INT64_MAX, .issued_at = T_2026, .signature = (char *)s };
		same_as_reference("command", enc_command, ref_command, &cmd);
		struct ca_msg_heartbeat hb = { .agent_id = s, .status = s, .timestamp = -1500, .uptime_seconds = INT64_MIN,
		                               .queues = { INT64_MAX, -1, 0, 1 }, .events_published_total = INT64_MIN + 1,
		                               .last_error = s, .role = s, .leader = s };
		same_as_reference("heartbeat", enc_heartbeat, ref_heartbeat, &hb);
	}

	/* One string holding every byte value, and every value at each offset
	 * of an 8-byte block. */
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	struct ca_msg_event ev = { .message = all };
	same_as_reference("all bytes", enc_event, ref_event, &ev);
	struct ca_msg_command_result cr = { .stdout_data = all, .stdout_len = 256 };
	same_as_reference("all bytes + NUL", enc_result, ref_result, &cr);
	for (int c = 1; c < 256; c++) {
		for (int off = 0; off < 26; off++) {
			char s[40];
			memset(s, 'x', sizeof s);
			s[off] = (char)c;
			s[off + 1 + (c & 7)] = '\0';
			ev.message = s;
			same_as_reference("byte at offset", enc_event, ref_event, &ev);
		}
	}

	/* Empty message, zero everything. */
	struct ca_msg_event e0 = { 0 };
	same_as_reference("empty event", enc_event, ref_event, &e0);
	struct ca_msg_metrics_sample m0 = { 0 };
	same_as_reference("empty metrics", enc_metrics, ref_metrics, &m0);
	struct ca_msg_agent_info a0 = { 0 };
	same_as_reference("empty agent_info", enc_agent_info, ref_agent_info, &a0);
	struct ca_command c0 = { 0 };
	same_as_reference("empty command", enc_command, ref_command, &c0);

	/* Out-of-range timestamps fail the same way wherever they are. */
	struct ca_msg_event bad = { .uid = "u", .message = "m", .observed_at = 253402300800000LL };
	same_as_reference("bad observed_at", enc_event, ref_event, &bad);
	bad.observed_at = 0;
	bad.first_timestamp = -62135596800001LL;
	same_as_reference("bad first_timestamp", enc_event, ref_event, &bad);
	bad.first_timestamp = INT64_MIN;
	same_as_reference("INT64_MIN timestamp", enc_event, ref_event, &bad);
	struct ca_msg_node_condition conds[] = { { .type = "Ready", .last_transition_time = INT64_MAX } };
	struct ca_msg_node_sample nodes[] = { { .name = "n", .conditions = conds, .n_conditions = 1 } };
	struct ca_msg_metrics_sample mbad = { .nodes = nodes, .n_nodes = 1 };
	same_as_reference("bad condition time", enc_metrics, ref_metrics, &mbad);
	struct ca_msg_unhealthy_pod pods[] = { { .name = "p" }, { .name = "q", .since = -62135596800001LL } };
	struct ca_msg_metrics_sample pbad = { .unhealthy_pods = pods, .n_unhealthy_pods = 2 };
	same_as_reference("bad pod time", enc_metrics, ref_metrics, &pbad);
}

/* ------------------------------------------------- randomized comparison */

static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
	uint64_t x = rng_state;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return rng_state = x;
}

static unsigned below(unsigned n)
{
	return (unsigned)(rnd() % n);
}

/* Heap strings made for one message, freed together. */
struct pool {
	char *v[512];
	size_t n;
};

static void pool_free(struct pool *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i]);
	p->n = 0;
}

/* A random byte string of about `len` bytes mixing ASCII, escapes,
 * control bytes, valid UTF-8 of each length and broken sequences; NUL
 * bytes only when with_nul (counted text). */
static char *random_text(struct pool *p, size_t *outlen, bool with_nul)
{
	size_t want = below(5) == 0 ? below(600) : below(40);
	char *s = malloc(want + 8);
	size_t n = 0;
	while (n < want) {
		unsigned k = below(20);
		uint32_t cp;
		if (k < 8) {
			s[n++] = (char)(0x20 + below(0x5F));
		} else if (k == 8) {
			s[n++] = "\"\\/\x7F"[below(4)];
		} else if (k == 9) {
			s[n++] = (char)(with_nul ? below(0x20) : 1 + below(0x1F));
		} else if (k == 10) {
			s[n++] = (char)(0x80 + below(0x80)); /* mostly stray bytes */
		} else if (k == 11) { /* 2-byte */
			cp = 0x80 + below(0x780);
			s[n++] = (char)(0xC0 | (cp >> 6));
			s[n++] = (char)(0x80 | (cp & 0x3F));
		} else if (k == 12) { /* 3-byte, surrogates included (invalid) */
			cp = 0x800 + below(0xF800);
			s[n++] = (char)(0xE0 | (cp >> 12));
			s[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
			s[n++] = (char)(0x80 | (cp & 0x3F));
		} else if (k == 13) { /* 4-byte, some above U+10FFFF */
			cp = 0x10000 + below(0x110000);
			s[n++] = (char)(0xF0 | (cp >> 18));
			s[n++] = (char)(0x80 | ((cp >> 12) & 0x3F));
			s[n++] = (char)(0x80 | ((cp >> 6) & 0x3F));
			s[n++] = (char)(0x80 | (cp & 0x3F));
		} else if (k == 14) { /* a truncated or overlong lead */
			static const char *const broken[] = { "\xC3", "\xE2\x82", "\xF0\x9F\x98", "\xC0\x80", "\xE0\x80\x80",
			                                      "\xF8\x88\x80\x80\x80", "\xED\xA0\x80" };
			const char *b = broken[below(7)];
			size_t bl = strlen(b);
			memcpy(s + n, b, bl);
			n += bl;
		} else {
			s[n++] = (char)(with_nul ? below(256) : 1 + below(255));
		}
	}
	s[n] = '\0';
	*outlen = n;
	if (p->n < sizeof p->v / sizeof p->v[0])
		p->v[p->n++] = s;
	else
		abort();
	return s;
}

/* A string field: NULL, "", or random text. */
static const char *rstr(struct pool *p)
{
	size_t n;
	unsigned k = below(8);
	if (k == 0)
		return NULL;
	if (k == 1)
		return "";
	return random_text(p, &n, false);
}

static int64_t rint64(void)
{
	static const int64_t special[] = { 0, 1, -1, 9, 10, 99, 100, -100, 999999999, 1000000000,
	                                   INT64_MAX, INT64_MIN, INT64_MIN + 1, INT64_MAX - 1,
	                                   9007199254740992LL, -9007199254740993LL, 10000000000000000LL };
	switch (below(4)) {
	case 0:
		return special[below(sizeof special / sizeof special[0])];
	case 1:
		return (int64_t)below(100000) - 50000;
	default:
		return (int64_t)(rnd() >> below(64));
	}
}

/* A timestamp: often unset, sometimes at or past the range's ends. */
static int64_t rtime(bool allow_bad)
{
	static const int64_t special[] = { 1, -1, 999, 1000, -1000, -1001, 86399999, 86400000, -86400000,
	                                   REF_MIN_TIME_MS, REF_MIN_TIME_MS + 1, REF_MAX_TIME_MS, REF_MAX_TIME_MS - 1,
	                                   951782400000LL /* 2000-02-29 */, 4107542400000LL /* 2100-03-01 */ };
	switch (below(6)) {
	case 0:
		return 0;
	case 1:
		if (allow_bad && below(8) == 0) {
			static const int64_t bad[] = { REF_MIN_TIME_MS - 1, REF_MAX_TIME_MS + 1, INT64_MIN, INT64_MAX };
			return bad[below(4)];
		}
		return special[below(sizeof special / sizeof special[0])];
	default:
		return REF_MIN_TIME_MS + (int64_t)(rnd() % (uint64_t)(REF_MAX_TIME_MS - REF_MIN_TIME_MS + 1));
	}
}

static void random_event(struct pool *p, struct ca_msg_event *m, bool allow_bad)
{
	*m = (struct ca_msg_event){
		.uid = rstr(p), .cluster_id = rstr(p), .type = rstr(p), .reason = rstr(p), .message = rstr(p),
		.namespace_ = rstr(p),
		.involved_object = { .kind = rstr(p), .name = rstr(p), .namespace_ = rstr(p), .uid = rstr(p),
		                     .api_version = rstr(p), .field_path = rstr(p) },
		.source_component = rstr(p), .source_host = rstr(p), .first_timestamp = rtime(allow_bad),
		.last_timestamp = rtime(allow_bad), .observed_at = rtime(allow_bad), .count = rint64(),
		.severity = rstr(p), .category = rstr(p), .resource_version = rstr(p), .message_truncated = below(2),
	};
}

static void test_writer_matches_reference_random(void)
{
	struct pool p = { .n = 0 };
	for (int iter = 0; iter < 4000; iter++) {
		bool allow_bad = iter % 4 == 0;
		struct ca_msg_event ev;
		random_event(&p, &ev, allow_bad);
		same_as_reference("random event", enc_event, ref_event, &ev);

		struct ca_msg_heartbeat hb = {
			.agent_id = rstr(&p), .cluster_id = rstr(&p), .status = rstr(&p), .timestamp = rtime(allow_bad),
			.uptime_seconds = rint64(), .kube_api_ok = below(2), .nats_connected = below(2),
			.queues = { rint64(), rint64(), rint64(), rint64() }, .events_published_total = rint64(),
			.events_dropped_total = rint64(), .last_error = rstr(&p), .role = rstr(&p), .leader = rstr(&p),
		};
		same_as_reference("random heartbeat", enc_heartbeat, ref_heartbeat, &hb);

		const char *tools[4];
		size_t nt = below(5);
		for (size_t i = 0; i < nt; i++)
			tools[i] = rstr(&p);
		struct ca_msg_agent_info ai = {
			.agent_id = rstr(&p), .cluster_id = rstr(&p), .cluster_source = rstr(&p), .provider = rstr(&p),
			.region = rstr(&p), .cluster_uid = rstr(&p), .version = rstr(&p), .git_sha = rstr(&p),
			.kubernetes_version = rstr(&p), .node_name = rstr(&p), .pod_name = rstr(&p),
			.pod_namespace = rstr(&p), .encoding = rstr(&p), .hostname = rstr(&p), .role = rstr(&p),
			.started_at = rtime(allow_bad), .cap_events = below(2), .cap_metrics = below(2),
			.cap_exec = below(2), .allowed_tools = nt ? tools : (below(2) ? NULL : tools),
			.n_allowed_tools = nt > 4 ? 4 : nt,
			.allowed_actions = nt ? tools : NULL, .n_allowed_actions = nt / 2,
		};
		same_as_reference("random agent_info", enc_agent_info, ref_agent_info, &ai);

		size_t on = 0, en = 0;
		const char *out = below(4) ? random_text(&p, &on, true) : NULL;
		const char *err = below(4) ? random_text(&p, &en, true) : NULL;
		struct ca_msg_command_result cr = {
			.command_id = rstr(&p), .agent_id = rstr(&p), .cluster_id = rstr(&p), .status = rstr(&p),
			.exit_code = (int)rint64(), .stdout_data = out, .stdout_len = out ? on : 0, .stderr_data = err,
			.stderr_len = err ? en : 0, .stdout_truncated = below(2), .stderr_truncated = below(2),
			.started_at = rtime(allow_bad), .finished_at = rtime(allow_bad), .duration_ms = rint64(),
			.error = rstr(&p),
		};
		same_as_reference("random command_result", enc_result, ref_result, &cr);

		char *args[6];
		size_t na = below(7);
		for (size_t i = 0; i < na; i++)
			args[i] = (char *)rstr(&p);
		struct ca_command cmd = {
			.id = (char *)rstr(&p), .cluster_id = (char *)rstr(&p), .tool = (char *)rstr(&p),
			.action = (char *)rstr(&p), .args = na ? args : NULL, .n_args = na > 6 ? 6 : na,
			.namespace_ = (char *)rstr(&p), .timeout_seconds = rint64(), .issued_at = rtime(allow_bad),
			.expires_at = rtime(allow_bad), .issuer = (char *)rstr(&p), .signature = (char *)rstr(&p),
		};
		same_as_reference("random command", enc_command, ref_command, &cmd);

		/* The validator (with its ASCII fast path) agrees with the
		 * reference's byte-by-byte check. */
		size_t vn;
		const char *vt = random_text(&p, &vn, false);
		CHECK(ca_utf8_valid(vt, vn) == ref_text_is_clean(vt, vn));

		if (iter % 4 == 1 || allow_bad) {
			struct ca_msg_node_condition conds[3][3];
			struct ca_msg_node_sample nodes[3];
			struct ca_msg_namespace_sample nss[3];
			struct ca_msg_unhealthy_pod pods[3];
			size_t nn = below(4), ns = below(4), np = below(4);
			for (size_t i = 0; i < nn; i++) {
				size_t nc = below(4);
				for (size_t c = 0; c < nc; c++)
					conds[i][c] = (struct ca_msg_node_condition){ .type = rstr(&p), .status = rstr(&p),
					                                              .reason = rstr(&p),
					                                              .last_transition_time = rtime(allow_bad) };
				nodes[i] = (struct ca_msg_node_sample){
					.name = rstr(&p), .ready = below(2), .unschedulable = below(2), .conditions = conds[i],
					.n_conditions = nc, .capacity = { rint64(), rint64(), rint64() },
					.allocatable = { rint64(), rint64(), rint64() }, .usage = { rint64(), rint64(), 0 },
					.usage_known = below(2), .pods = rint64(), .zone = rstr(&p),
					.instance_type = rstr(&p), .kubelet_version = rstr(&p),
				};
			}
			for (size_t i = 0; i < ns; i++)
				nss[i] = (struct ca_msg_namespace_sample){
					.name = rstr(&p), .phase = rstr(&p),
					.pods = { rint64(), rint64(), rint64(), rint64(), rint64() }, .restarts = rint64(),
					.requests = { rint64(), rint64(), 0 }, .limits = { rint64(), rint64(), 0 },
					.usage = { rint64(), rint64(), 0 }, .usage_known = below(2),
				};
			for (size_t i = 0; i < np; i++)
				pods[i] = (struct ca_msg_unhealthy_pod){
					.namespace_ = rstr(&p), .name = rstr(&p), .node = rstr(&p), .phase = rstr(&p),
					.reason = rstr(&p), .restarts = rint64(), .since = rtime(allow_bad),
				};
			struct ca_msg_metrics_sample ms = {
				.sample_id = rstr(&p), .cluster_id = rstr(&p), .agent_id = rstr(&p),
				.timestamp = rtime(allow_bad), .part = (int32_t)rint64(), .parts = (int32_t)rint64(),
				.usage_available = below(2), .usage_unavailable_reason = rstr(&p),
				.usage_observed_at = rtime(allow_bad),
				.summary = { rint64(), rint64(), rint64(), { rint64(), rint64(), rint64(), rint64(), rint64() },
				             rint64(), rint64(), rint64(), { rint64(), rint64(), rint64() },
				             { rint64(), rint64(), rint64() }, { rint64(), rint64(), 0 },
				             { rint64(), rint64(), 0 }, { rint64(), rint64(), 0 }, below(2) },
				.nodes = nodes, .n_nodes = nn, .namespaces = nss, .n_namespaces = ns,
				.unhealthy_pods = pods, .n_unhealthy_pods = np, .unhealthy_pods_omitted = rint64(),
			};
			same_as_reference("random metrics", enc_metrics, ref_metrics, &ms);
		}
		pool_free(&p);
	}
}

/* At every cap from too small to enough, the writer fails with CA_ETOOBIG
 * exactly when the reference text does not fit, and then leaves the
 * buffer as it was; both with a fresh buffer and with one whose storage
 * is already larger than the cap. */
static void cap_sweep(const char *what, enc_fn enc, ref_fn ref, const void *m)
{
	struct ca_buf r;
	ca_buf_init(&r, 0);
	CHECK_INT(ref(m, &r), CA_OK);
	size_t need = 6 + r.len;
	int wrong = 0;
	for (size_t max = 6; max <= need + 2; max++) {
		for (int grown = 0; grown < 2; grown++) {
			struct ca_buf b;
			ca_buf_init(&b, grown ? 0 : max);
			if (grown) {
				ca_buf_reserve(&b, need * 2);
				b.max = max;
			}
			ca_buf_append_str(&b, "prefix");
			enum ca_err rc = enc(CA_CODEC_JSON, m, &b);
			if (need <= max) {
				if (rc != CA_OK || b.len != need || memcmp(b.data + 6, r.data, r.len) != 0 || b.data[b.len])
					wrong++;
			} else if (rc != CA_ETOOBIG || b.len != 6 || strcmp(b.data, "prefix") != 0) {
				wrong++;
			}
			ca_buf_fini(&b);
		}
	}
	CHECK_INT(wrong, 0);
	if (wrong)
		fprintf(stderr, "   %s: %d caps gave the wrong result\n", what, wrong);
	ca_buf_fini(&r);
}

static void test_writer_caps(void)
{
	/* Escapes and replacements near the end exercise the string path's
	 * growth at the cap. */
	struct ca_msg_event ev = {
		.uid = "u-1", .cluster_id = "prod", .type = "Warning", .reason = "BackOff",
		.message = "\x01\x02\x03\"\"\\\\\xFF\xFE\n\n\t mostly fine text \xC3\xA9\xE2\x82\xAC then \x1f\x1f\x1f\x1f\xC3",
		.namespace_ = "shop", .involved_object = { .kind = "Pod", .name = "web-0" },
		.first_timestamp = T_2026, .last_timestamp = T_2026, .count = INT64_MIN, .severity = "warning",
	};
	cap_sweep("event", enc_event, ref_event, &ev);
	const char out[] = "ok\0\0\0\0\0\0\0\0\x01\x01\x01\x01\x01\x01\x01\x01\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF";
	struct ca_msg_command_result cr = { .command_id = "c", .status = "failed", .stdout_data = out,
	                                    .stdout_len = sizeof out - 1, .stderr_data = out, .stderr_len = 3,
	                                    .started_at = T_2026 };
	cap_sweep("command_result", enc_result, ref_result, &cr);
	struct ca_msg_node_condition conds[] = { { .type = "Ready", .status = "True", .last_transition_time = T_2026 } };
	struct ca_msg_node_sample nodes[] = { { .name = "node-1", .conditions = conds, .n_conditions = 1 } };
	struct ca_msg_unhealthy_pod pods[] = { { .name = "web-0", .reason = "\"x\"" } };
	struct ca_msg_metrics_sample ms = { .cluster_id = "c", .nodes = nodes, .n_nodes = 1, .unhealthy_pods = pods,
	                                    .n_unhealthy_pods = 1 };
	cap_sweep("metrics", enc_metrics, ref_metrics, &ms);

	/* An invalid timestamp wins over a buffer that is too small, as before. */
	struct ca_buf small;
	ca_buf_init(&small, 10);
	ev.observed_at = REF_MAX_TIME_MS + 1;
	CHECK_INT(ca_codec_encode_event(CA_CODEC_JSON, &ev, &small), CA_EINVAL);
	CHECK_INT(small.len, 0);
	ca_buf_fini(&small);
}

/* The string writer alone (nothing follows it to hide an overrun): at
 * every cap it either writes the whole escaped string within the cap or
 * fails with CA_ETOOBIG and leaves the buffer as it was. The expected
 * text comes from the reference encoder (a one-string command's id). */
static void test_writer_string_caps(void)
{
	int wrong = 0;
	for (size_t t = 0; t < sizeof tricky / sizeof tricky[0]; t++) {
		struct ca_command cmd = { .id = (char *)(*tricky[t] ? tricky[t] : "x") };
		struct ca_buf r;
		ca_buf_init(&r, 0);
		CHECK_INT(ref_command(&cmd, &r), CA_OK);
		/* {"id":<string>,"args":[],"timeout_seconds":0} */
		const char *q = r.data + strlen("{\"id\":");
		size_t qlen = r.len - strlen("{\"id\":") - strlen(",\"args\":[],\"timeout_seconds\":0}");
		for (size_t max = 3; max <= 3 + qlen + 1; max++) {
			for (int grown = 0; grown < 2; grown++) {
				struct ca_buf b;
				struct ca_jw w;
				ca_buf_init(&b, grown ? 0 : max);
				if (grown) {
					ca_buf_reserve(&b, 4096);
					b.max = max;
				}
				ca_buf_append_str(&b, "pre");
				ca_codec_jw_begin(&w, &b);
				ca_codec_jw_string(&w, cmd.id, strlen(cmd.id));
				enum ca_err rc = ca_codec_jw_finish(&w);
				if (3 + qlen <= max) {
					if (rc != CA_OK || b.len != 3 + qlen || memcmp(b.data + 3, q, qlen) != 0 || b.data[b.len])
						wrong++;
				} else if (rc != CA_ETOOBIG || b.len != 3 || strcmp(b.data, "pre") != 0) {
					wrong++;
				}
				ca_buf_fini(&b);
			}
		}
		ca_buf_fini(&r);
	}
	CHECK_INT(wrong, 0);
}

/* The writer's own formatters against ca_format_rfc3339 and printf. */
static void test_writer_formatters(void)
{
	int bad = 0;
	char want[CA_RFC3339_LEN], got[CA_CODEC_TIME_LEN + 1];
	got[CA_CODEC_TIME_LEN] = '\0';
	for (int i = 0; i < 400000; i++) {
		int64_t ms;
		if (i < 4000) /* every hour around 1970, 2000-02-29 and both ends */
			ms = (int64_t[]){ -720000000LL, 951696000000LL, REF_MIN_TIME_MS, REF_MAX_TIME_MS - 1439999999LL }[i / 1000] +
			     (int64_t)(i % 1000) * 1440000 + (i % 7);
		else
			ms = REF_MIN_TIME_MS + (int64_t)(rnd() % (uint64_t)(REF_MAX_TIME_MS - REF_MIN_TIME_MS + 1));
		if (ms > REF_MAX_TIME_MS)
			ms = REF_MAX_TIME_MS;
		ca_format_rfc3339(ms, want);
		if (!ca_codec_jw_format_time(ms, got) || strcmp(got, want) != 0) {
			if (bad++ < 5)
				fprintf(stderr, "   time %lld: \"%s\", expected \"%s\"\n", (long long)ms, got, want);
		}
	}
	CHECK_INT(bad, 0);
	CHECK(ca_codec_jw_format_time(REF_MIN_TIME_MS, got));
	CHECK_STR(got, "0001-01-01T00:00:00.000Z");
	CHECK(ca_codec_jw_format_time(REF_MAX_TIME_MS, got));
	CHECK_STR(got, "9999-12-31T23:59:59.999Z");
	CHECK(ca_codec_jw_format_time(-1, got));
	CHECK_STR(got, "1969-12-31T23:59:59.999Z");
	CHECK(!ca_codec_jw_format_time(REF_MIN_TIME_MS - 1, got));
	CHECK(!ca_codec_jw_format_time(REF_MAX_TIME_MS + 1, got));

	bad = 0;
	for (int i = 0; i < 200000; i++) {
		int64_t v = i < 64 ? (int64_t[]){ 0, 1, -1, INT64_MIN, INT64_MAX, 9, 10, -10 }[i % 8] : rint64();
		char num[21], ref[32];
		size_t n = ca_codec_jw_format_int(v, num);
		num[n] = '\0';
		snprintf(ref, sizeof ref, "%lld", (long long)v);
		if (strcmp(num, ref) != 0 && bad++ < 5)
			fprintf(stderr, "   int %s, expected %s\n", num, ref);
	}
	CHECK_INT(bad, 0);
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
	test_writer_matches_reference_fixed();
	test_writer_matches_reference_random();
	test_writer_caps();
	test_writer_string_caps();
	test_writer_formatters();
	return check_report();
}
