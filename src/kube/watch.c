/* kube/watch.c: the WATCH body splitter and parser.
 *
 * A real API server sends one event per HTTP chunk (one DATA frame over
 * HTTP/2), so the common feed is exactly one line and the rare one is a
 * fragment. The design follows from that:
 *  - complete lines are parsed straight from the caller's buffer, with no
 *    copy; only a trailing partial line is copied into `kept`;
 *  - every byte is searched for '\n' once (memchr over new bytes only, the
 *    already searched part of `kept` is remembered), so the cost per byte
 *    does not depend on how the stream was cut;
 *  - a line longer than max_line is never stored: once it is known to be
 *    too long the parser drops bytes until the next newline.
 *
 * When the callback asks to pause, the bytes not yet parsed are copied into
 * `kept` (they belong to the caller's buffer, which is gone after the call)
 * and parsing resumes from there on the next feed. */
#include "kube/watch.h"

#include <stdlib.h>
#include <string.h>

#include "kube/json_parse.h"
#include "kube/prune.h"

/* What the line arena and the scratch copy keep between lines (the arena
 * holds the tape of a few dozen ordinary events); more is given back after
 * a big line, so a watch's memory at rest stays small. */
#define ARENA_KEEP_BYTES ((size_t)64 << 10)
#define SCRATCH_KEEP_BYTES ((size_t)16 << 10)

/* kept holds either a partial line (at most max_line) or, after a pause,
 * the rest of one feed (at most CA_WATCH_FEED_MAX): whichever is larger. */
static size_t kept_cap(size_t max_line)
{
	return (max_line > CA_WATCH_FEED_MAX ? max_line : CA_WATCH_FEED_MAX) + 1;
}

struct ca_watch_parser {
	size_t max_line;
	ca_watch_event_cb cb;
	void *arg;
	/* Unparsed bytes: a partial line, or (after a pause) whatever followed
	 * the last delivered event. kept.data[off..] is unparsed and
	 * kept.data[off..scanned) is known to hold no '\n'. */
	struct ca_buf kept;
	size_t off;
	size_t scanned;
	bool discarding; /* inside an oversized line; kept is empty then */
	struct ca_buf scratch; /* a line with its managedFields cut out */
	struct ca_json_doc *doc; /* the arena every line is parsed into */
	struct ca_watch_parser_stats stats;
};

enum ca_err ca_watch_parser_new(struct ca_watch_parser **out, size_t max_line,
                                ca_watch_event_cb cb, void *arg)
{
	*out = NULL;
	if (!cb || max_line == 0 || max_line > SIZE_MAX / 4)
		return CA_EINVAL;
	struct ca_watch_parser *p = calloc(1, sizeof *p);
	if (!p)
		return CA_ENOMEM;
	p->max_line = max_line;
	p->cb = cb;
	p->arg = arg;
	if (ca_kube_json_doc_new(&p->doc) != CA_OK) {
		free(p);
		return CA_ENOMEM;
	}
	ca_buf_init(&p->kept, kept_cap(max_line));
	ca_buf_init(&p->scratch, max_line + 1);
	*out = p;
	return CA_OK;
}

size_t ca_watch_parser_budget(size_t max_line)
{
	return kept_cap(max_line) + ARENA_KEEP_BYTES + SCRATCH_KEEP_BYTES;
}

size_t ca_watch_parse_peak(size_t max_line)
{
	/* The pruned copy, the arena's copy of the text, and at most one
	 * 24-byte node per 6 bytes (json_parse.h). */
	return max_line + max_line + 4 * max_line + 4096 * 24;
}

void ca_watch_parser_free(struct ca_watch_parser *p)
{
	if (!p)
		return;
	ca_buf_fini(&p->kept);
	ca_buf_fini(&p->scratch);
	ca_kube_json_doc_free(p->doc);
	free(p);
}

void ca_watch_parser_reset(struct ca_watch_parser *p)
{
	ca_buf_reset(&p->kept);
	p->off = 0;
	p->scanned = 0;
	p->discarding = false;
}

bool ca_watch_parser_partial(const struct ca_watch_parser *p)
{
	return p->discarding || p->kept.len > p->off;
}

void ca_watch_parser_get_stats(const struct ca_watch_parser *p, struct ca_watch_parser_stats *out)
{
	*out = p->stats;
}

/* ------------------------------------------------------------------------ */

static bool is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	}
	return true;
}

static bool event_type(const struct ca_kobj *t, enum ca_watch_event_type *out)
{
	static const struct {
		const char *name;
		size_t len;
		enum ca_watch_event_type type;
	} types[] = {
		{"ADDED", 5, CA_WATCH_EVENT_ADDED},
		{"MODIFIED", 8, CA_WATCH_EVENT_MODIFIED},
		{"DELETED", 7, CA_WATCH_EVENT_DELETED},
		{"BOOKMARK", 8, CA_WATCH_EVENT_BOOKMARK},
		{"ERROR", 5, CA_WATCH_EVENT_ERROR},
	};
	if (!t || t->type != CA_JSON_STRING)
		return false;
	const char *s = t->v.s;
	size_t n = t->n;
	for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
		if (n == types[i].len && memcmp(s, types[i].name, n) == 0) {
			*out = types[i].type;
			return true;
		}
	}
	return false;
}

/* Point *s, *n at a copy of the line without its managedFields arrays
 * (kube/prune.h), when it has any. */
static void strip_managed_fields(struct ca_watch_parser *p, const char **s, size_t *n)
{
	if (!ca_kube_has_managed_fields(*s, *n))
		return;
	ca_buf_reset(&p->scratch);
	if (ca_buf_reserve(&p->scratch, *n) != CA_OK)
		return; /* parse the original */
	p->scratch.len = ca_kube_prune_managed_fields(p->scratch.data, *s, *n);
	p->scratch.data[p->scratch.len] = '\0';
	*s = p->scratch.data;
	*n = p->scratch.len;
}

/* Give back what a big line made the arena and the scratch copy grow to. */
static void trim(struct ca_watch_parser *p)
{
	ca_kube_json_doc_trim(p->doc, ARENA_KEEP_BYTES);
	if (p->scratch.cap > SCRATCH_KEEP_BYTES) {
		size_t max = p->scratch.max;
		ca_buf_fini(&p->scratch);
		ca_buf_init(&p->scratch, max);
	}
}

/* Parse one complete line (without its '\n'). Returns what the callback
 * returned; bad and blank lines return true (keep going). */
static bool parse_line(struct ca_watch_parser *p, const char *s, size_t n)
{
	if (n > p->max_line) {
		p->stats.oversized++;
		return true;
	}
	/* The server writes "{...}\n"; anything not starting with '{' is rare
	 * and either blank (tolerated) or an error that the parser will report. */
	if (n == 0 || (s[0] != '{' && is_blank(s, n)))
		return true;
	strip_managed_fields(p, &s, &n);
	/* \u0000 becomes U+FFFD so every string is a whole C string, and a
	 * duplicated key keeps its last value, as Go's decoder does. A top
	 * level that is not an object is a bad line below. */
	const struct ca_kobj *root = NULL;
	(void)ca_kube_json_parse(p->doc, s, n, &root, NULL, 0);
	enum ca_watch_event_type type;
	const struct ca_kobj *object = ca_kobj_member(root, "object");
	if (!object || object->type != CA_JSON_OBJECT ||
	    !event_type(ca_kobj_member(root, "type"), &type)) {
		p->stats.parse_errors++;
		trim(p);
		return true;
	}
	p->stats.events++;
	/* The view lives in p->doc, which the next line overwrites: it is
	 * valid during the callback only (kube/watch.h). */
	bool go_on = p->cb(p->arg, type, object);
	/* A near-max_line document can expand to many times its size in
	 * nodes; keep only what ordinary events need between lines. */
	trim(p);
	return go_on;
}

/* The callback paused with data[0..len) not yet parsed: keep it. */
static enum ca_err keep_rest(struct ca_watch_parser *p, const char *data, size_t len)
{
	enum ca_err err = ca_buf_append(&p->kept, data, len);
	if (err != CA_OK) {
		/* The stream cannot be resumed without these bytes. */
		ca_watch_parser_reset(p);
		return err;
	}
	return CA_EAGAIN;
}

/* Parse the lines held in kept. Returns false when the callback paused. */
static bool drain_kept(struct ca_watch_parser *p)
{
	for (;;) {
		char *base = p->kept.data;
		char *nl = p->scanned < p->kept.len
		                   ? memchr(base + p->scanned, '\n', p->kept.len - p->scanned)
		                   : NULL;
		if (!nl) {
			p->scanned = p->kept.len;
			break;
		}
		size_t start = p->off;
		size_t end = (size_t)(nl - base);
		p->off = p->scanned = end + 1;
		if (!parse_line(p, base + start, end - start))
			return false;
	}
	/* Only a partial line (no '\n') is left: move it to the front. */
	if (p->off) {
		ca_buf_consume(&p->kept, p->off);
		p->off = 0;
		p->scanned = p->kept.len;
	}
	if (p->kept.len > p->max_line) {
		/* Possible only after a pause kept a long tail. */
		p->stats.oversized++;
		p->discarding = true;
		ca_buf_reset(&p->kept);
		p->scanned = 0;
	}
	return true;
}

enum ca_err ca_watch_feed(struct ca_watch_parser *p, const char *data, size_t len)
{
	if (!data)
		len = 0;
	p->stats.bytes += len;

	if (p->kept.len > p->off) {
		/* Lines kept by a pause come first; new bytes queue behind them
		 * if the callback pauses again. */
		if (p->scanned < p->kept.len || p->off > 0) {
			if (!drain_kept(p))
				return len ? keep_rest(p, data, len) : CA_EAGAIN;
		}
		/* kept now holds a partial line without '\n' (maybe empty). */
		if (p->kept.len > 0 && len > 0) {
			const char *nl = memchr(data, '\n', len);
			if (!nl) {
				if (p->kept.len + len > p->max_line) {
					p->stats.oversized++;
					ca_watch_parser_reset(p);
					p->discarding = true;
					return CA_OK;
				}
				enum ca_err err = ca_buf_append(&p->kept, data, len);
				if (err != CA_OK)
					return err;
				p->scanned = p->kept.len;
				return CA_OK;
			}
			size_t head = (size_t)(nl - data);
			bool go_on = true;
			if (head > p->max_line || p->kept.len > p->max_line - head) {
				p->stats.oversized++;
			} else {
				enum ca_err err = ca_buf_append(&p->kept, data, head);
				if (err != CA_OK)
					return err;
				go_on = parse_line(p, p->kept.data, p->kept.len);
			}
			ca_buf_reset(&p->kept);
			p->off = p->scanned = 0;
			data += head + 1;
			len -= head + 1;
			if (!go_on)
				return len ? keep_rest(p, data, len) : CA_EAGAIN;
		}
	}

	/* Fast path: no pending bytes; parse lines in place. */
	while (len > 0) {
		const char *nl = memchr(data, '\n', len);
		if (!nl)
			break;
		size_t n = (size_t)(nl - data);
		bool go_on = true;
		if (p->discarding)
			p->discarding = false; /* the end of an oversized line */
		else
			go_on = parse_line(p, data, n);
		data += n + 1;
		len -= n + 1;
		if (!go_on)
			return len ? keep_rest(p, data, len) : CA_EAGAIN;
	}
	if (len > 0 && !p->discarding) {
		if (len > p->max_line) {
			p->stats.oversized++;
			p->discarding = true;
		} else {
			enum ca_err err = ca_buf_append(&p->kept, data, len);
			if (err != CA_OK)
				return err;
			p->scanned = p->kept.len;
		}
	}
	return CA_OK;
}
