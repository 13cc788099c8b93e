/* kube/watch.h: incremental parser for a WATCH response body.
 *
 * The API server writes one JSON watch event per line ({"type":…,"object":…}),
 * usually one per HTTP chunk, but a read may hold part of a line or many
 * lines. Feed bytes as they arrive; each complete line is parsed and handed
 * to the callback. Memory is bounded: a line longer than max_line is skipped
 * (counted in oversized) without being stored. The cost per byte does not
 * depend on how the stream was cut. managedFields (often half of an
 * object, and of no use to the agent) is cut out before parsing: the first
 * "managedFields":[ key of a line, which the API server writes in metadata;
 * consumers see it as an empty list. Not thread safe; one owner. */
#ifndef CA_KUBE_WATCH_H
#define CA_KUBE_WATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "kube/kobj.h"

enum ca_watch_event_type {
	CA_WATCH_EVENT_ADDED = 0,
	CA_WATCH_EVENT_MODIFIED,
	CA_WATCH_EVENT_DELETED,
	CA_WATCH_EVENT_BOOKMARK,
	CA_WATCH_EVENT_ERROR, /* object is a metav1.Status; see its "code" */
};

/* Called for each well-formed event. object is borrowed for the call.
 * Return false to stop parsing the rest of this feed (ca_watch_feed then
 * returns CA_EAGAIN and keeps the unparsed bytes for the next feed). */
typedef bool (*ca_watch_event_cb)(void *arg, enum ca_watch_event_type type,
                                  const struct ca_kobj *object);

struct ca_watch_parser;

struct ca_watch_parser_stats {
	uint64_t events;        /* events handed to the callback */
	uint64_t bytes;         /* bytes fed */
	uint64_t oversized;     /* lines skipped for length */
	uint64_t parse_errors;  /* lines that were not JSON or not a watch event */
};

enum ca_err ca_watch_parser_new(struct ca_watch_parser **out, size_t max_line,
                                ca_watch_event_cb cb, void *arg);
void ca_watch_parser_free(struct ca_watch_parser *p);
/* Forget any partial line (a new stream starts). Stats are kept. */
void ca_watch_parser_reset(struct ca_watch_parser *p);
/* Feed bytes. CA_OK when all were consumed; CA_EAGAIN when the callback
 * asked to stop (call ca_watch_feed(p, NULL, 0) later to go on with the
 * bytes kept); CA_ETOOBIG when more than max(64 MiB, max_line) would have
 * to be kept across a pause (the parser is then reset); CA_ENOMEM. Bad
 * lines never fail the feed: they are counted. */
enum ca_err ca_watch_feed(struct ca_watch_parser *p, const char *data, size_t len);
/* True if bytes of an incomplete line are pending (a stream cut mid-line). */
bool ca_watch_parser_partial(const struct ca_watch_parser *p);
void ca_watch_parser_get_stats(const struct ca_watch_parser *p, struct ca_watch_parser_stats *out);

/* The most a caller feeds in one ca_watch_feed() call (the kube client's
 * read-ahead is below it). */
#define CA_WATCH_FEED_MAX ((size_t)192 << 10)

/* Memory budget: what one parser may keep between lines for max_line
 * (a partial line plus the rest of one feed, the arena and the scratch copy
 * it keeps), and the peak of parsing one line of max_line (its pruned copy
 * and its tape), which happens on one parser at a time. */
size_t ca_watch_parser_budget(size_t max_line);
size_t ca_watch_parse_peak(size_t max_line);

#endif
