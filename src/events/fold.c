/* events/fold.c: an Event object folded into a compact owned record.
 *
 * The kobj view is borrowed for the reflector callback only, so the fields
 * of ca_msg_event are copied at once into one allocation (struct followed
 * by its strings) and the object is forgotten. Both APIs are read here:
 * core/v1 (involvedObject, message, source, count, first/lastTimestamp) and
 * events.k8s.io/v1 (regarding, note, reportingController, series,
 * deprecated*), told apart by which members the object has. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "events/events_int.h"

enum field {
	F_UID, F_TYPE, F_REASON, F_MESSAGE, F_NAMESPACE,
	F_IO_KIND, F_IO_NAME, F_IO_NAMESPACE, F_IO_UID, F_IO_API_VERSION, F_IO_FIELD_PATH,
	F_SRC_COMPONENT, F_SRC_HOST, F_RV, F_RESUME, F_COUNT
};

/* The marker appended to a cut message; "…" is U+2026. */
#define MARKER_FMT "\xe2\x80\xa6[truncated %zu bytes]"

uint64_t ca_events_hash(uint64_t h, const char *s)
{
	if (h == 0)
		h = 0xcbf29ce484222325ull;
	if (s)
		for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
			h ^= *p;
			h *= 0x100000001b3ull;
		}
	/* A separator, so ("ab","c") and ("a","bc") differ when chained. */
	h ^= 0xff;
	h *= 0x100000001b3ull;
	return h;
}

/* splitmix64 finaliser: FNV's low bits are weak for power-of-two tables. */
static uint64_t mix(uint64_t h)
{
	h ^= h >> 30;
	h *= 0xbf58476d1ce4e5b9ull;
	h ^= h >> 27;
	h *= 0x94d049bb133111ebull;
	h ^= h >> 31;
	return h ? h : 1; /* 0 means a free slot in the tables */
}

uint64_t ca_events_uid_hash(const char *uid)
{
	return mix(ca_events_hash(0, uid));
}

static const char *str_or_empty(const char *s)
{
	return s ? s : "";
}

static const char *first_str(const struct ca_kobj *o, const char *a, const char *b)
{
	const char *s = ca_kobj_str(o, a);
	if ((!s || !s[0]) && b)
		s = ca_kobj_str(o, b);
	return s;
}

static int64_t timestamp(const struct ca_kobj *o, const char *path)
{
	const char *s = ca_kobj_str(o, path);
	int64_t ms = 0;
	if (!s || !s[0] || ca_parse_rfc3339(s, &ms) != CA_OK || ms < 0)
		return 0;
	return ms;
}

static int64_t clamp_count(int64_t c)
{
	if (c < 1)
		return 1;
	if (c > CA_EVENTS_MAX_COUNT)
		return CA_EVENTS_MAX_COUNT;
	return c;
}

enum ca_err ca_events_fold(const struct ca_kobj *obj, const struct ca_event_fold_options *o,
                           struct ca_event_rec **out)
{
	const char *f[F_COUNT] = { 0 };
	size_t len[F_COUNT];
	size_t max_msg = o && o->max_message_bytes ? o->max_message_bytes : 4096;
	int64_t first_ts, last_ts, count;
	char marker[64] = "";
	size_t msg_keep, total = 0;
	bool truncated = false;

	*out = NULL;
	if (!obj || !ca_kobj_get(obj, "metadata"))
		return CA_EINVAL;
	f[F_UID] = ca_kobj_str(obj, "metadata.uid");
	if (!f[F_UID] || !f[F_UID][0])
		return CA_EINVAL;

	bool v1new = !ca_kobj_get(obj, "involvedObject") &&
	             (ca_kobj_get(obj, "regarding") || ca_kobj_get(obj, "note") ||
	              ca_kobj_get(obj, "reportingController"));
	const struct ca_kobj *io = ca_kobj_get(obj, v1new ? "regarding" : "involvedObject");

	f[F_TYPE] = ca_kobj_str(obj, "type");
	f[F_REASON] = ca_kobj_str(obj, "reason");
	f[F_MESSAGE] = ca_kobj_str(obj, v1new ? "note" : "message");
	f[F_NAMESPACE] = ca_kobj_str(obj, "metadata.namespace");
	if (io) {
		f[F_IO_KIND] = ca_kobj_str(io, "kind");
		f[F_IO_NAME] = ca_kobj_str(io, "name");
		f[F_IO_NAMESPACE] = ca_kobj_str(io, "namespace");
		f[F_IO_UID] = ca_kobj_str(io, "uid");
		f[F_IO_API_VERSION] = ca_kobj_str(io, "apiVersion");
		f[F_IO_FIELD_PATH] = ca_kobj_str(io, "fieldPath");
	}
	if (v1new) {
		f[F_SRC_COMPONENT] = first_str(obj, "reportingController", "deprecatedSource.component");
		f[F_SRC_HOST] = first_str(obj, "deprecatedSource.host", "reportingInstance");
		count = ca_kobj_int(obj, "series.count", 0);
		if (count <= 0)
			count = ca_kobj_int(obj, "deprecatedCount", 0);
		first_ts = timestamp(obj, "deprecatedFirstTimestamp");
		if (!first_ts)
			first_ts = timestamp(obj, "eventTime");
		last_ts = timestamp(obj, "series.lastObservedTime");
		if (!last_ts)
			last_ts = timestamp(obj, "deprecatedLastTimestamp");
		if (!last_ts)
			last_ts = timestamp(obj, "eventTime");
	} else {
		f[F_SRC_COMPONENT] = first_str(obj, "source.component", "reportingComponent");
		f[F_SRC_HOST] = first_str(obj, "source.host", "reportingInstance");
		count = ca_kobj_int(obj, "count", 0);
		if (count <= 0)
			count = ca_kobj_int(obj, "series.count", 0);
		first_ts = timestamp(obj, "firstTimestamp");
		if (!first_ts)
			first_ts = timestamp(obj, "eventTime");
		last_ts = timestamp(obj, "lastTimestamp");
		if (!last_ts)
			last_ts = timestamp(obj, "series.lastObservedTime");
		if (!last_ts)
			last_ts = timestamp(obj, "eventTime");
	}
	if (!first_ts)
		first_ts = timestamp(obj, "metadata.creationTimestamp");
	if (!last_ts)
		last_ts = first_ts;
	if (first_ts > last_ts)
		first_ts = last_ts;
	f[F_RV] = ca_kobj_str(obj, "metadata.resourceVersion");
	f[F_RESUME] = o ? o->resume_before : NULL;

	for (int i = 0; i < F_COUNT; i++) {
		f[i] = str_or_empty(f[i]);
		len[i] = strlen(f[i]);
		if (i != F_MESSAGE)
			len[i] = ca_utf8_cut(f[i], len[i], CA_EVENTS_MAX_FIELD);
	}
	if (len[F_MESSAGE] > max_msg) {
		/* Keep message + marker within max_msg; the marker's width depends
		 * on how much is cut, so size it for the worst case first. */
		int m = snprintf(marker, sizeof marker, MARKER_FMT, len[F_MESSAGE]);
		size_t mlen = m > 0 ? (size_t)m : 0;
		size_t budget = max_msg > mlen ? max_msg - mlen : 0;
		msg_keep = ca_utf8_cut(f[F_MESSAGE], len[F_MESSAGE], budget);
		snprintf(marker, sizeof marker, MARKER_FMT, len[F_MESSAGE] - msg_keep);
		truncated = true;
	} else {
		msg_keep = len[F_MESSAGE];
	}
	size_t marker_len = strlen(marker);

	for (int i = 0; i < F_COUNT; i++) {
		size_t n = i == F_MESSAGE ? msg_keep + marker_len : len[i];
		total += n + 1; /* bounded: each field <= 1 MiB object, 16 fields */
	}
	struct ca_event_rec *r = malloc(sizeof *r + total);
	if (!r)
		return CA_ENOMEM;
	memset(r, 0, sizeof *r);
	r->bytes = sizeof *r + total;
	char *p = (char *)(r + 1);
	const char *dst[F_COUNT];
	for (int i = 0; i < F_COUNT; i++) {
		dst[i] = p;
		if (i == F_MESSAGE) {
			memcpy(p, f[i], msg_keep);
			memcpy(p + msg_keep, marker, marker_len);
			p += msg_keep + marker_len;
		} else {
			memcpy(p, f[i], len[i]);
			p += len[i];
		}
		*p++ = '\0';
	}

	struct ca_msg_event *m = &r->msg;
	m->uid = dst[F_UID];
	m->type = dst[F_TYPE];
	m->reason = dst[F_REASON];
	m->message = dst[F_MESSAGE];
	m->namespace_ = dst[F_NAMESPACE];
	m->involved_object.kind = dst[F_IO_KIND];
	m->involved_object.name = dst[F_IO_NAME];
	m->involved_object.namespace_ = dst[F_IO_NAMESPACE];
	m->involved_object.uid = dst[F_IO_UID];
	m->involved_object.api_version = dst[F_IO_API_VERSION];
	m->involved_object.field_path = dst[F_IO_FIELD_PATH];
	m->source_component = dst[F_SRC_COMPONENT];
	m->source_host = dst[F_SRC_HOST];
	m->resource_version = dst[F_RV];
	m->cluster_id = "";
	m->first_timestamp = first_ts;
	m->last_timestamp = last_ts;
	m->observed_at = o ? o->observed_at : 0;
	m->count = clamp_count(count);
	m->message_truncated = truncated;
	ca_events_classify(m->reason, m->type, m->message, &m->category, &m->severity);
	r->resume_before = dst[F_RESUME];

	r->uid_hash = ca_events_uid_hash(m->uid);
	uint64_t k = ca_events_hash(0, m->reason);
	if (m->involved_object.uid[0]) {
		k = ca_events_hash(k, m->involved_object.uid);
	} else {
		k = ca_events_hash(k, m->involved_object.kind);
		k = ca_events_hash(k, m->involved_object.namespace_[0] ? m->involved_object.namespace_
		                                                      : m->namespace_);
		k = ca_events_hash(k, m->involved_object.name);
	}
	r->key_hash = mix(k);
	r->ns_hash = mix(ca_events_hash(0, m->namespace_));
	*out = r;
	return CA_OK;
}

/* The strings live after the struct in one block, so a copy is the block
 * copied and every pointer moved by the distance between the two blocks. */
static size_t rec_size(const struct ca_event_rec *rec)
{
	/* The last string of the block is resume_before (F_RESUME). */
	const char *end = rec->resume_before + strlen(rec->resume_before) + 1;
	return (size_t)(end - (const char *)rec);
}

enum ca_err ca_events_rec_dup(const struct ca_event_rec *rec, struct ca_event_rec **out)
{
	size_t n = rec_size(rec);
	struct ca_event_rec *r = malloc(n);
	if (!r) {
		*out = NULL;
		return CA_ENOMEM;
	}
	memcpy(r, rec, n);
	r->bytes = n;
	const char **ptrs[] = {
		&r->msg.uid, &r->msg.type, &r->msg.reason, &r->msg.message, &r->msg.namespace_,
		&r->msg.involved_object.kind, &r->msg.involved_object.name,
		&r->msg.involved_object.namespace_, &r->msg.involved_object.uid,
		&r->msg.involved_object.api_version, &r->msg.involved_object.field_path,
		&r->msg.source_component, &r->msg.source_host, &r->msg.resource_version,
		&r->resume_before,
	};
	for (size_t i = 0; i < sizeof ptrs / sizeof ptrs[0]; i++)
		*ptrs[i] = (const char *)r + (*ptrs[i] - (const char *)rec);
	/* category, severity and cluster_id point at static or watcher-owned
	 * strings and stay as they are. */
	*out = r;
	return CA_OK;
}

void ca_events_rec_free(struct ca_event_rec *rec)
{
	free(rec);
}
