/* Fuzz target: the spool's record reader (events/spool.h) over the bytes
 * of a segment file, as the replay walks one: records, corrupt regions
 * and a torn tail.
 *
 * Invariants checked (abort on violation): every step advances (no loop),
 * never past the input; a record's strings lie inside the input and end
 * with their NUL; a record re-encodes to a record that scans back with the
 * same fields; the reader's verdict on a prefix of a record is "need
 * more". The sanitizers catch reads out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "events/spool.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_str(const char *s, const uint8_t *data, size_t size)
{
	const uint8_t *p = (const uint8_t *)s;
	if (p < data || p >= data + size)
		abort();
	if (!memchr(p, '\0', (size_t)(data + size - p)))
		abort();
}

static void check_record(const struct ca_spool_item *it, const uint8_t *data, size_t size)
{
	const struct ca_msg_event *m = &it->msg;
	const char *strs[] = {it->resume_before,
	                      it->stream,
	                      m->uid,
	                      m->type,
	                      m->reason,
	                      m->message,
	                      m->namespace_,
	                      m->involved_object.kind,
	                      m->involved_object.name,
	                      m->involved_object.namespace_,
	                      m->involved_object.uid,
	                      m->involved_object.api_version,
	                      m->involved_object.field_path,
	                      m->source_component,
	                      m->source_host,
	                      m->severity,
	                      m->category,
	                      m->resource_version};
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		check_str(strs[i], data, size);

	/* Round trip: what the reader gives back, the writer writes again. */
	size_t cap = size + 64;
	uint8_t *again = malloc(cap);
	if (!again)
		return;
	size_t n = ca_spool_encode_record(it, again, cap);
	if (n == 0)
		abort();
	struct ca_spool_item back;
	size_t adv = 0;
	if (ca_spool_scan_record(again, n, 0, &back, &adv) != CA_SPOOL_RECORD || adv != n)
		abort();
	if (strcmp(back.msg.uid, m->uid) != 0 || strcmp(back.msg.message, m->message) != 0 ||
	    strcmp(back.resume_before, it->resume_before) != 0 || back.msg.count != m->count ||
	    back.msg.first_timestamp != m->first_timestamp ||
	    back.msg.message_truncated != m->message_truncated)
		abort();
	if (ca_spool_scan_record(again, n - 1, 0, &back, &adv) != CA_SPOOL_NEED_MORE)
		abort();
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The first byte, when there is one, picks the reader's payload cap,
	 * so records over it are exercised too. */
	size_t max_payload = 0;
	if (size > 0) {
		max_payload = data[0] < 8 ? (size_t)data[0] * 64 : 0;
		data++;
		size--;
	}
	size_t pos = 0;
	while (pos < size) {
		struct ca_spool_item it;
		size_t adv = 0;
		enum ca_spool_scan r =
		        ca_spool_scan_record(data + pos, size - pos, max_payload, &it, &adv);
		if (r == CA_SPOOL_NEED_MORE)
			break; /* the torn tail */
		if (adv == 0 || adv > size - pos)
			abort();
		if (r == CA_SPOOL_RECORD)
			check_record(&it, data + pos, size - pos);
		pos += adv;
	}
	return 0;
}
