/* events/queue.c: the ring between the watch and the sink.
 *
 * At most buffer_size records and buffer_bytes of them; when full the
 * oldest is dropped (the newest failure is the one the orchestrator most
 * needs, and a restart resumes from before whatever is still queued). */
#include <stdlib.h>
#include <string.h>

#include "events/events_int.h"

enum ca_err ca_events_queue_init(struct ca_events_queue *q, size_t cap, size_t max_bytes)
{
	memset(q, 0, sizeof *q);
	if (cap == 0)
		return CA_EINVAL;
	q->max_bytes = max_bytes;
	q->items = calloc(cap, sizeof *q->items);
	if (!q->items)
		return CA_ENOMEM;
	q->cap = cap;
	return CA_OK;
}

void ca_events_queue_fini(struct ca_events_queue *q)
{
	while (q->len)
		ca_events_rec_free(ca_events_queue_pop(q));
	free(q->items);
	memset(q, 0, sizeof *q);
}

size_t ca_events_queue_push(struct ca_events_queue *q, struct ca_event_rec *rec)
{
	size_t dropped = 0;
	while (q->len == q->cap ||
	       (q->max_bytes && q->len > 0 && q->bytes + rec->bytes > q->max_bytes)) {
		ca_events_rec_free(ca_events_queue_pop(q));
		dropped++;
	}
	q->items[(q->head + q->len) % q->cap] = rec;
	q->len++;
	q->bytes += rec->bytes;
	return dropped;
}

struct ca_event_rec *ca_events_queue_pop(struct ca_events_queue *q)
{
	if (q->len == 0)
		return NULL;
	struct ca_event_rec *r = q->items[q->head];
	q->items[q->head] = NULL;
	q->head = (q->head + 1) % q->cap;
	q->len--;
	q->bytes -= r->bytes;
	return r;
}
