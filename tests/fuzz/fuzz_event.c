/* Fuzz target: one JSON document through the events path: ca_kobj_parse,
 * the fold into a record (classification included), the filters, a copy,
 * both encoders, and the whole pipeline (dedup, aggregation, queue) of a
 * watcher without a server.
 *
 * A watch line ({"type":…,"object":…}) is unwrapped to its object. The
 * first byte of the input, when it is not '{' or ' ', picks the message
 * limit (so truncation is exercised at many sizes) and is skipped.
 * Invariants checked (abort on violation): count in [1, 2^31-1], a valid
 * category and severity, first <= last timestamp, a message within the
 * limit when the limit can hold the marker, valid UTF-8 everywhere, a copy
 * equal to the original, and JSON output that parses back with the uid. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/buf.h"
#include "events/events_int.h"
#include "log/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ca_config cfg;
static struct ca_events *pipeline;
static int64_t fake_ms = 1000000;

static int64_t fake_clock(void *arg)
{
	(void)arg;
	return fake_ms;
}

static enum ca_err sink(void *arg, const struct ca_msg_event *m)
{
	struct ca_buf b;
	(void)arg;
	ca_buf_init(&b, 0);
	if (ca_codec_encode_event(CA_CODEC_PROTOBUF, m, &b) != CA_OK)
		abort();
	ca_buf_fini(&b);
	/* Every third publish fails, so events also wait in the queue. */
	return (fake_ms % 3) ? CA_OK : CA_EAGAIN;
}

static void setup(void)
{
	static const struct ca_events_sink s = { sink };
	static const struct ca_events_clock clock = { fake_clock, fake_clock, NULL };
	char err[256];
	ca_log_configure(CA_LOG_ERROR, true);
	if (ca_config_init_defaults(&cfg) != CA_OK)
		abort();
	cfg.events.buffer_size = 16;
	cfg.events.dedup_window_ms = 50;
	cfg.events.namespace_rate = 100;
	if (ca_events_new_internal(&pipeline, NULL, NULL, &cfg, "fuzz", &s, NULL, &clock,
	                           err, sizeof err) != CA_OK)
		abort();
}

static bool utf8_ok(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p) {
		int n = *p < 0x80 ? 1 : (*p >> 5) == 6 ? 2 : (*p >> 4) == 14 ? 3 : (*p >> 3) == 30 ? 4 : 0;
		if (n == 0)
			return false;
		for (int i = 1; i < n; i++)
			if ((p[i] & 0xC0) != 0x80)
				return false;
		p += n;
	}
	return true;
}

static void check_rec(const struct ca_event_rec *r, size_t max_msg)
{
	const struct ca_msg_event *m = &r->msg;
	if (m->count < 1 || m->count > CA_EVENTS_MAX_COUNT)
		abort();
	if (!ca_events_category_valid(m->category))
		abort();
	enum ca_event_severity sev;
	if (ca_events_severity_parse(m->severity, &sev) != CA_OK)
		abort();
	if (m->first_timestamp > m->last_timestamp || m->first_timestamp < 0)
		abort();
	if (max_msg >= 64 && strlen(m->message) > max_msg)
		abort();
	if (m->message_truncated != (strstr(m->message, "[truncated ") != NULL) &&
	    m->message_truncated)
		abort();
	const char *strs[] = { m->uid, m->type, m->reason, m->message, m->namespace_,
	                       m->involved_object.kind, m->involved_object.name,
	                       m->involved_object.namespace_, m->involved_object.uid,
	                       m->involved_object.api_version, m->involved_object.field_path,
	                       m->source_component, m->source_host, m->resource_version };
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		if (!strs[i] || !utf8_ok(strs[i]) || (strs[i] != m->message && strlen(strs[i]) > CA_EVENTS_MAX_FIELD))
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_kobj *doc = NULL;
	struct ca_event_rec *r = NULL, *copy = NULL;
	size_t max_msg = 4096;

	if (!pipeline)
		setup();
	if (size > 0 && data[0] != '{' && data[0] != ' ') {
		max_msg = (size_t)data[0] * 7 + 1;
		data++;
		size--;
	}
	if (ca_kobj_parse((const char *)data, size, &doc) != CA_OK)
		return 0;
	const struct ca_kobj *obj = doc;
	if (ca_kobj_get(doc, "object") && ca_kobj_str(doc, "type"))
		obj = ca_kobj_get(doc, "object");

	struct ca_event_fold_options fo = { .max_message_bytes = max_msg, .observed_at = 1,
	                                    .resume_before = "1" };
	if (ca_events_fold(obj, &fo, &r) == CA_OK) {
		check_rec(r, max_msg);
		if (ca_events_rec_dup(r, &copy) != CA_OK)
			abort();
		if (strcmp(copy->msg.uid, r->msg.uid) || strcmp(copy->msg.message, r->msg.message) ||
		    strcmp(copy->msg.source_host, r->msg.source_host) ||
		    strcmp(copy->resume_before, r->resume_before) || copy->msg.count != r->msg.count)
			abort();
		struct ca_events_filter f;
		char err[128];
		if (ca_events_filter_init(&f, &cfg, err, sizeof err) != CA_OK)
			abort();
		(void)ca_events_filter_match(&f, r);
		ca_events_filter_fini(&f);

		struct ca_buf b;
		ca_buf_init(&b, 0);
		r->msg.cluster_id = "fuzz";
		if (ca_codec_encode_event(CA_CODEC_JSON, &r->msg, &b) != CA_OK)
			abort();
		struct ca_kobj *back = NULL;
		if (ca_kobj_parse(b.data, b.len, &back) != CA_OK)
			abort();
		const char *uid = ca_kobj_str(back, "uid");
		if (!uid || strcmp(uid, r->msg.uid) != 0)
			abort();
		ca_kobj_free(back);
		ca_buf_reset(&b);
		if (ca_codec_encode_event(CA_CODEC_PROTOBUF, &r->msg, &b) != CA_OK)
			abort();
		ca_buf_fini(&b);
		char id[2048];
		(void)ca_events_msg_id(&r->msg, id, sizeof id);
	}
	ca_events_rec_free(r);
	ca_events_rec_free(copy);

	/* The pipeline, as a watch and as a list delivers it. */
	fake_ms += 7;
	ca_events_on_object(pipeline, 0, CA_WATCH_MODIFIED, obj, false);
	if (size % 5 == 0) {
		ca_events_on_list_begin(pipeline, 0);
		ca_events_on_object(pipeline, 0, CA_WATCH_ADDED, obj, true);
		ca_events_on_synced(pipeline, 0, "2");
	}
	ca_events_tick(pipeline);
	ca_kobj_free(doc);
	return 0;
}
