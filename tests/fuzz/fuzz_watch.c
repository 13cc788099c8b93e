/* Fuzz target for kube/watch.h: the input is a WATCH body fed in two
 * pieces, cut at a position taken from its first two bytes, to a parser
 * with a 64 KiB line limit. The callback reads the fields consumers read
 * and pauses now and then, so the kept-bytes path is exercised too.
 * Invariants checked: the feed never fails except by pausing, every byte
 * and every delivered event is counted, and after a reset the parser
 * starts clean. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kube/kobj.h"
#include "kube/watch.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct state {
	uint64_t delivered;
	unsigned pause_mask;
	size_t sink;
};

static bool on_event(void *arg, enum ca_watch_event_type type, const struct ca_kobj *o)
{
	struct state *s = arg;
	if (type > CA_WATCH_EVENT_ERROR || o == NULL)
		abort();
	const char *v = ca_kobj_str(o, "metadata.uid");
	s->sink += v ? strlen(v) : 0;
	v = ca_kobj_str(o, "metadata.resourceVersion");
	s->sink += v ? strlen(v) : 0;
	s->sink += (size_t)ca_kobj_int(o, type == CA_WATCH_EVENT_ERROR ? "code" : "count", 0);
	s->sink += ca_kobj_array_len(ca_kobj_get(o, "metadata.managedFields"));
	s->delivered++;
	return (s->delivered & s->pause_mask) != 0;
}

static void resume(struct ca_watch_parser *p, enum ca_err err)
{
	while (err == CA_EAGAIN)
		err = ca_watch_feed(p, NULL, 0);
	if (err != CA_OK)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct state s;
	memset(&s, 0, sizeof s);
	struct ca_watch_parser *p = NULL;
	size_t cut = 0;
	if (size >= 2) {
		cut = ((size_t)data[0] << 8 | data[1]) % (size + 1);
		s.pause_mask = data[0] & 1 ? 1 : 0; /* pause after every other event, or every one */
	}
	if (ca_watch_parser_new(&p, (size_t)64 << 10, on_event, &s) != CA_OK)
		return 0;
	const char *bytes = (const char *)data;
	/* First piece: feed and keep it paused while the second arrives. */
	enum ca_err err = ca_watch_feed(p, bytes, cut);
	if (err != CA_OK && err != CA_EAGAIN)
		abort();
	resume(p, ca_watch_feed(p, bytes + cut, size - cut));
	struct ca_watch_parser_stats st;
	ca_watch_parser_get_stats(p, &st);
	if (st.bytes != size || st.events != s.delivered)
		abort();
	/* After a reset the parser starts clean. */
	ca_watch_parser_reset(p);
	if (ca_watch_parser_partial(p))
		abort();
	static const char good[] = "{\"type\":\"ADDED\",\"object\":{}}\n";
	resume(p, ca_watch_feed(p, good, sizeof good - 1));
	ca_watch_parser_get_stats(p, &st);
	if (st.events != s.delivered)
		abort();
	ca_watch_parser_free(p);
	return 0;
}
