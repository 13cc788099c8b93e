/* kube/reflector.c: list + watch + resume (DESIGN.md §3).
 *
 * A small state machine on the loop thread. It is always in one of:
 *  - listing: one LIST page request in flight (or a parsed page being
 *    handed out while paused);
 *  - watching: one WATCH stream open, its body fed to the watch parser;
 *  - waiting: the timer will start the next LIST or WATCH (backoff,
 *    Retry-After, or "at once" after a clean end).
 * `need_list` says which one the timer starts: a LIST when there is no
 * resume point (first start, 410 Gone, a LIST that failed half way),
 * otherwise a WATCH from the last resourceVersion delivered.
 *
 * Entry points (client callbacks and timers) count themselves in `depth`;
 * ca_reflector_free() called from inside a user callback only marks the
 * reflector and the outermost entry point frees it on the way out, so no
 * frame ever runs on freed memory. */
#include "kube/reflector.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/timeutil.h"
#include "kube/client_int.h"
#include "kube/salvage.h"
#include "kube/watch.h"
#include "log/log.h"

#define DEFAULT_PAGE_SIZE 500
#define DEFAULT_WATCH_MIN_MS (5 * 60 * 1000)
#define DEFAULT_WATCH_MAX_MS (10 * 60 * 1000)
#define DEFAULT_BACKOFF_INITIAL_MS 800
#define DEFAULT_BACKOFF_MAX_MS 30000
#define DEFAULT_MAX_OBJECT ((size_t)1 << 20)
/* client-go resets its backoff after this long without failures. */
#define HEALTHY_RESET_MS (2 * 60 * 1000)
/* One LIST page is held at a time; this caps it by default. */
#define DEFAULT_MAX_LIST_BYTES ((size_t)8 << 20)
#define LIST_TIMEOUT_MS 60000
/* A LIST that does not end: a server that sends a continue token on every
 * page (hostile, or broken) would otherwise be asked for pages as fast as
 * it answers, for ever. More pages than this, or this many empty pages in
 * a row that still say "continue", fail the LIST (it starts over after a
 * backoff). 150,000 pods in pages of 500 take 300 pages. */
#define LIST_MAX_PAGES 100000
#define LIST_MAX_EMPTY_PAGES 100
/* Beyond the server's timeoutSeconds, how long a silent stream may live. */
#define WATCH_IDLE_GRACE_S 30
/* A stream that ends this fast without one event is treated as a failure,
 * so a server that closes every watch at once cannot make us spin. */
#define SHORT_WATCH_MS 1000
/* A watch open this long ends a loop of 410s for readiness. */
#define STREAM_PROVEN_MS 2000

struct ca_reflector {
	struct ca_kube *kube; /* borrowed */
	char *name, *path, *field_selector, *label_selector;
	int64_t page_size;
	int64_t watch_min_ms, watch_max_ms;
	int64_t backoff_initial_ms, backoff_max_ms;
	size_t max_object_bytes;
	size_t max_list_bytes;
	struct ca_reflector_callbacks cbs;
	void *arg;

	struct ca_watch_parser *parser;
	struct ca_loop_timer *timer; /* next LIST/WATCH */
	struct ca_loop_timer *kick;  /* deliver what a pause held back */
	struct ca_kube_xfer *xfer;   /* the request in flight, or NULL */
	struct ca_kube_slot_waiter slot_wait;
	bool holds_slot;             /* the client's LIST slot is ours */
	bool xfer_is_watch;
	bool verify_resume;          /* a stored resume point not yet checked with the server */
	bool started;
	bool paused;
	bool need_list;
	bool list_only;
	bool aggregated_api;
	bool quiet;

	/* LIST */
	char *continue_token;     /* for the next page, or NULL */
	struct ca_kobj *page;     /* parsed page being handed out */
	size_t page_index;
	char *page_continue;      /* the page's metadata.continue, or NULL */
	char page_rv[128];        /* the page's metadata.resourceVersion */
	uint64_t list_objects;    /* objects of the LIST in progress */
	uint64_t list_pages;      /* pages of the LIST in progress */
	unsigned empty_pages;     /* empty pages in a row that still said "continue" */
	int64_t list_started_ms;

	/* WATCH */
	int64_t watch_opened_ms;
	uint64_t watch_events;    /* events of the current stream */
	bool stream_failed;       /* an in-stream ERROR ended the stream */

	bool failing;             /* the last request failed: not ready until one succeeds */
	unsigned attempt;         /* backoff exponent */
	unsigned gone_streak;     /* 410 relists since a watch last made progress */
	int64_t healthy_since_ms; /* 0 after a failure */
	bool logged_403;
	struct ca_reflector_stats st;

	int depth;                /* entry points on the stack */
	bool dying;               /* ca_reflector_free() ran inside a callback */
};

/* ------------------------------------------------------------------ */
/* Helpers */

static void destroy(struct ca_reflector *r);


static void enter(struct ca_reflector *r)
{
	r->depth++;
}

static void leave(struct ca_reflector *r)
{
	if (--r->depth == 0 && r->dying)
		destroy(r);
}

static char *dup_opt(const char *s)
{
	return s && *s ? strdup(s) : NULL;
}

static void progress(struct ca_reflector *r)
{
	r->st.last_progress_ms = ca_now_monotonic_ms();
}

static void healthy(struct ca_reflector *r)
{
	if (!r->healthy_since_ms)
		r->healthy_since_ms = ca_now_monotonic_ms();
	r->st.last_error[0] = '\0';
	r->logged_403 = false;
	r->failing = false;
}

/* Percent-encode everything but RFC 3986 unreserved characters. */
static enum ca_err append_escaped(struct ca_buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	enum ca_err err = CA_OK;
	for (const unsigned char *p = (const unsigned char *)s; *p && err == CA_OK; p++) {
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
		    *p == '-' || *p == '.' || *p == '_' || *p == '~') {
			err = ca_buf_append(b, p, 1);
		} else {
			char e[3] = { '%', hex[*p >> 4], hex[*p & 15] };
			err = ca_buf_append(b, e, 3);
		}
	}
	return err;
}

static enum ca_err append_param(struct ca_buf *b, const char *key, const char *value)
{
	enum ca_err err = ca_buf_printf(b, "%c%s=", strchr(b->data, '?') ? '&' : '?', key);
	return err == CA_OK ? append_escaped(b, value) : err;
}

static enum ca_err append_selectors(struct ca_reflector *r, struct ca_buf *b)
{
	enum ca_err err = CA_OK;
	if (r->field_selector)
		err = append_param(b, "fieldSelector", r->field_selector);
	if (err == CA_OK && r->label_selector)
		err = append_param(b, "labelSelector", r->label_selector);
	return err;
}

/* A resourceVersion is opaque: one that does not fit is never cut short
 * (a prefix is a different, wrong resume point). The old one is kept, so a
 * resume replays a little instead of skipping or failing for ever. */
static bool set_rv(struct ca_reflector *r, const char *rv)
{
	if (strlen(rv) >= sizeof r->st.resource_version)
		return false;
	ca_strlcpy(r->st.resource_version, rv, sizeof r->st.resource_version);
	return true;
}

/* The "message" of a Status body, or a short excerpt of whatever it is. */
static void status_message(const char *body, size_t len, char *out, size_t outlen)
{
	struct ca_kobj *o = NULL;
	out[0] = '\0';
	if (len && ca_kobj_parse(body, len, &o) == CA_OK) {
		const char *m = ca_kobj_str(o, "message");
		if (m)
			ca_strlcpy(out, m, outlen);
	}
	ca_kobj_free(o);
	if (!out[0] && len) {
		size_t n = len < outlen - 1 ? len : outlen - 1;
		size_t i;
		for (i = 0; i < n; i++)
			out[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : ' ';
		out[i] = '\0';
	}
}

/* ------------------------------------------------------------------ */
/* User callbacks: after each, the reflector may be dying. */

static void call_list_begin(struct ca_reflector *r)
{
	if (r->cbs.on_list_begin)
		r->cbs.on_list_begin(r->arg);
}

static void call_object(struct ca_reflector *r, enum ca_watch_type type,
                        const struct ca_kobj *obj, bool from_list)
{
	r->st.objects++;
	if (r->cbs.on_object)
		r->cbs.on_object(r->arg, type, obj, from_list);
}

static void call_rv(struct ca_reflector *r)
{
	if (r->cbs.on_resource_version && !r->dying)
		r->cbs.on_resource_version(r->arg, r->st.resource_version);
}

/* ------------------------------------------------------------------ */
/* State changes */

static void start_list(struct ca_reflector *r);
static void start_watch(struct ca_reflector *r);
static void start_probe(struct ca_reflector *r);

static void schedule(struct ca_reflector *r, int64_t delay_ms)
{
	ca_loop_timer_start(r->timer, delay_ms, 0);
}

static void give_slot(struct ca_reflector *r)
{
	if (r->holds_slot) {
		r->holds_slot = false;
		ca_kube_list_slot_give(r->kube);
	}
}

static void slot_granted(void *arg)
{
	struct ca_reflector *r = arg;
	r->holds_slot = true;
	schedule(r, 0); /* on_timer starts the LIST */
}

static void drop_page(struct ca_reflector *r)
{
	ca_kobj_free(r->page);
	r->page = NULL;
	r->page_index = 0;
	free(r->page_continue);
	r->page_continue = NULL;
}

/* The first relist after a 410 is immediate; 410s in a row (each LIST
 * succeeding, each WATCH Gone again) back off like failures, as client-go's
 * BackoffUntil does, so a misbehaving server cannot make us re-list the
 * whole collection in a busy loop. */
static void relist(struct ca_reflector *r)
{
	int64_t delay = 0;
	if (r->gone_streak > 0)
		delay = ca_backoff_ms(r->gone_streak - 1, r->backoff_initial_ms, r->backoff_max_ms);
	if (r->gone_streak < 30)
		r->gone_streak++;
	r->need_list = true;
	free(r->continue_token);
	r->continue_token = NULL;
	drop_page(r);
	give_slot(r);
	schedule(r, delay);
}

/* The server refused a resourceVersion itself (not the request): malformed
 * (400, or 500 "Invalid value" on a watch, as kube-apiserver 1.28 answers),
 * rejected options (422), or from the future (504 "Too large resource
 * version"). Retrying the same version would fail for ever. */
static bool rv_refused(long status, const char *msg)
{
	return status == 400 || status == 422 ||
	       (status == 500 && (strstr(msg, "Invalid value") || strstr(msg, "invalid resource version"))) ||
	       (status == 504 && strstr(msg, "oo large resource version"));
}

/* A fresh LIST gives a good resume point, and the consumer stores it
 * (repairing a state file). Repeats back off like 410s. */
static void refused_rv(struct ca_reflector *r, long status, const char *msg)
{
	r->st.relists_bad_rv++;
	r->st.last_status = status;
	r->verify_resume = false;
	ca_log(CA_LOG_WARN, "kube", "the API server refused the resume point, listing again", "reflector",
	       r->name, "resource_version", r->st.resource_version, "error", msg, NULL);
	relist(r);
}

/* A request failed: count it, log it, and try again after a backoff. */
static void fail(struct ca_reflector *r, long status, const char *what, const char *message,
                 int64_t retry_after_s)
{
	int64_t now = ca_now_monotonic_ms();
	r->st.errors++;
	r->failing = true;
	r->st.last_status = status;
	ca_set_err(r->st.last_error, sizeof r->st.last_error, "%s: %s", what, message);
	if (r->healthy_since_ms && now - r->healthy_since_ms >= HEALTHY_RESET_MS)
		r->attempt = 0;
	r->healthy_since_ms = 0;
	int64_t delay = ca_backoff_ms(r->attempt, r->backoff_initial_ms, r->backoff_max_ms);
	if (r->attempt < 30)
		r->attempt++;
	/* Retry-After comes from the server: compare in seconds so a huge value
	 * cannot overflow, and never wait less than the backoff, so
	 * "Retry-After: 0" cannot make us hammer a server that throttles. */
	if (status == 429 && retry_after_s >= 0) {
		int64_t ra_ms = retry_after_s > r->backoff_max_ms / 1000 ? r->backoff_max_ms
		                                                          : retry_after_s * 1000;
		if (ra_ms > delay)
			delay = ra_ms;
	}
	/* A LIST that failed half way starts over: its continue token may
	 * outlive its snapshot. Others may list while this one waits. */
	if (!r->xfer_is_watch) {
		free(r->continue_token);
		r->continue_token = NULL;
		drop_page(r);
		give_slot(r);
	}
	if (status == 401)
		ca_kube_refresh_token(r->kube);
	char st[24], ms[24];
	snprintf(st, sizeof st, "%ld", status);
	snprintf(ms, sizeof ms, "%lld", (long long)delay);
	/* A list-only consumer logs what the failure means to it. */
	if ((status != 403 || !r->logged_403) && !r->list_only)
		ca_log(CA_LOG_WARN, "kube", "kubernetes request failed", "reflector", r->name,
		       "request", what, "status", status ? st : "none", "error", message,
		       "retry_in_ms", ms, NULL);
	if (status == 403)
		r->logged_403 = true;
	if (r->list_only) {
		/* The consumer lists again when it wants: no retry of ours. */
		r->attempt = 0;
		if (r->cbs.on_list_failed)
			r->cbs.on_list_failed(r->arg, status, message);
		return;
	}
	schedule(r, delay);
}

/* ------------------------------------------------------------------ */
/* LIST */

static void deliver_page(struct ca_reflector *r);

static void list_done(void *arg, const struct ca_kube_result *res)
{
	struct ca_reflector *r = arg;
	enter(r);
	r->xfer = NULL;
	r->st.last_status = res->status;
	bool first_page = r->continue_token == NULL;
	const char *what = first_page ? "list" : "list continue";

	r->st.list_too_big = res->err == CA_ETOOBIG && r->st.page_limit <= 1;
	if (res->err == CA_ETOOBIG && r->st.page_limit > 1) {
		/* Big objects: the same page again with half the limit (a
		 * continue token may be used with another limit). */
		char was[24], now[24];
		snprintf(was, sizeof was, "%lld", (long long)r->st.page_limit);
		r->st.page_limit /= 2;
		r->st.pages_too_big++;
		snprintf(now, sizeof now, "%lld", (long long)r->st.page_limit);
		ca_log(CA_LOG_INFO, "kube", "list page over kubernetes.max_list_page_bytes, asking for smaller pages",
		       "reflector", r->name, "limit", was, "new_limit", now, NULL);
		start_list(r);
		goto out;
	}
	if (res->err != CA_OK) {
		fail(r, 0, what, res->error, -1);
		goto out;
	}
	if (res->status == 410 && !first_page) {
		/* The continue token outlived a compaction; the safe reaction
		 * is a fresh LIST (list-continue-expired-410.txt). */
		r->st.relists_gone++;
		ca_log(CA_LOG_INFO, "kube", "list continue expired, listing again", "reflector",
		       r->name, NULL);
		relist(r);
		goto out;
	}
	if (res->status != 200) {
		char msg[200];
		status_message(res->body, res->len, msg, sizeof msg);
		fail(r, res->status, what, msg, res->retry_after_s);
		goto out;
	}
	struct ca_kobj *page = NULL;
	if (ca_kobj_parse(res->body, res->len, &page) != CA_OK) {
		/* One bad object costs that object, not the page (and not every
		 * object on it, for ever): keep the items that parse alone. */
		struct ca_buf good;
		size_t bad = 0;
		ca_buf_init(&good, res->len + 64);
		enum ca_err src = ca_kube_list_salvage(res->body, res->len, &good, &bad);
		if (src == CA_OK && ca_kobj_parse(good.data, good.len, &page) == CA_OK) {
			char n[24];
			r->st.list_items_invalid += bad;
			snprintf(n, sizeof n, "%zu", bad);
			ca_log(CA_LOG_WARN, "kube", "list page with objects that are not valid JSON: skipped them",
			       "reflector", r->name, "skipped", n, NULL);
		}
		ca_buf_fini(&good);
		if (!page) {
			fail(r, res->status, what, "response is not JSON", -1);
			goto out;
		}
	}
	const char *rv = ca_kobj_str(page, "metadata.resourceVersion");
	if (r->list_only && (!rv || strlen(rv) >= sizeof r->page_rv))
		rv = ""; /* nothing to watch from: none needed */
	if (!rv || (!*rv && !r->list_only) || strlen(rv) >= sizeof r->page_rv) {
		ca_kobj_free(page);
		fail(r, res->status, what, "list has no usable metadata.resourceVersion", -1);
		goto out;
	}
	const char *cont = ca_kobj_str(page, "metadata.continue");
	if (first_page)
		r->list_pages = r->empty_pages = 0;
	r->list_pages++;
	bool empty = ca_kobj_array_len(ca_kobj_get(page, "items")) == 0;
	r->empty_pages = empty && cont && *cont ? r->empty_pages + 1 : 0;
	if (r->list_pages > LIST_MAX_PAGES || r->empty_pages > LIST_MAX_EMPTY_PAGES) {
		char why[160];
		snprintf(why, sizeof why, "the LIST does not end: %llu pages, %u empty ones in a row, "
		         "each with a continue token", (unsigned long long)r->list_pages, r->empty_pages);
		ca_kobj_free(page);
		fail(r, res->status, what, why, -1);
		goto out;
	}
	drop_page(r);
	if (cont && *cont && !(r->page_continue = strdup(cont))) {
		ca_kobj_free(page);
		fail(r, res->status, what, "out of memory", -1);
		goto out;
	}
	ca_strlcpy(r->page_rv, rv, sizeof r->page_rv);
	r->page = page;
	r->page_index = 0;
	r->st.pages++;
	progress(r);
	healthy(r);
	if (first_page) {
		r->list_objects = 0;
		call_list_begin(r);
		if (r->dying)
			goto out;
	}
	deliver_page(r);
out:
	leave(r);
}

static void list_finished(struct ca_reflector *r)
{
	char count[24], took[24];
	r->st.lists++;
	r->st.synced = true;
	r->need_list = false;
	r->attempt = 0;
	set_rv(r, r->page_rv);
	progress(r);
	give_slot(r);
	snprintf(count, sizeof count, "%llu", (unsigned long long)r->list_objects);
	snprintf(took, sizeof took, "%lld", (long long)(ca_now_monotonic_ms() - r->list_started_ms));
	ca_log(r->quiet ? CA_LOG_DEBUG : CA_LOG_INFO, "kube", "list completed", "reflector", r->name,
	       "objects", count, "resource_version", r->st.resource_version, "duration_ms", took, NULL);
	if (r->cbs.on_synced)
		r->cbs.on_synced(r->arg, r->st.resource_version);
	if (r->dying || r->list_only)
		return;
	call_rv(r);
	if (r->dying)
		return;
	start_watch(r);
}

/* Hand out the held page's items; stops early when paused. */
static void deliver_page(struct ca_reflector *r)
{
	const struct ca_kobj *items = ca_kobj_get(r->page, "items");
	size_t n = ca_kobj_array_len(items);
	while (r->page_index < n) {
		if (r->paused)
			return; /* the kick timer goes on after resume */
		const struct ca_kobj *item = ca_kobj_array_at(items, r->page_index++);
		r->list_objects++;
		call_object(r, CA_WATCH_ADDED, item, true);
		if (r->dying)
			return;
		progress(r);
	}
	/* The page is done: keep only what comes next. */
	char *next = r->page_continue;
	r->page_continue = NULL;
	drop_page(r);
	free(r->continue_token);
	r->continue_token = next;
	if (next)
		start_list(r);
	else
		list_finished(r);
}

static const struct ca_kube_xfer_ops list_ops = {
	.on_done = list_done,
};

static void start_list(struct ca_reflector *r)
{
	struct ca_buf b;
	char err_text[96];
	if (!r->holds_slot) {
		if (!ca_kube_list_slot_take(r->kube, &r->slot_wait))
			return; /* slot_granted() schedules the LIST */
		r->holds_slot = true;
	}
	ca_buf_init(&b, 0);
	enum ca_err err = ca_buf_append_str(&b, r->path);
	if (err == CA_OK)
		err = ca_buf_printf(&b, "%climit=%lld", strchr(r->path, '?') ? '&' : '?',
		                    (long long)r->st.page_limit);
	if (err == CA_OK && r->continue_token)
		err = append_param(&b, "continue", r->continue_token);
	if (err == CA_OK)
		err = append_selectors(r, &b);
	if (!r->continue_token)
		r->list_started_ms = ca_now_monotonic_ms();
	struct ca_kube_xfer_params p = {
		.path = b.data,
		.stream = false,
		.timeout_ms = LIST_TIMEOUT_MS,
		.max_body = r->max_list_bytes,
		.prune_managed_fields = true,
		.aggregated = r->aggregated_api,
	};
	r->xfer_is_watch = false;
	if (err == CA_OK)
		err = ca_kube_xfer_start(r->kube, &p, &list_ops, r, &r->xfer);
	ca_buf_fini(&b);
	if (err != CA_OK) {
		r->xfer = NULL;
		snprintf(err_text, sizeof err_text, "cannot start request: %s", ca_strerror(err));
		fail(r, 0, "list", err_text, -1);
	}
}

/* ------------------------------------------------------------------ */
/* WATCH */

static bool on_watch_event(void *arg, enum ca_watch_event_type type, const struct ca_kobj *obj)
{
	struct ca_reflector *r = arg;
	if (r->dying || r->stream_failed)
		return false;
	const char *rv = ca_kobj_str(obj, "metadata.resourceVersion");
	switch (type) {
	case CA_WATCH_EVENT_ADDED:
	case CA_WATCH_EVENT_MODIFIED:
	case CA_WATCH_EVENT_DELETED: {
		enum ca_watch_type t = type == CA_WATCH_EVENT_ADDED      ? CA_WATCH_ADDED
		                       : type == CA_WATCH_EVENT_MODIFIED ? CA_WATCH_MODIFIED
		                                                         : CA_WATCH_DELETED;
		r->watch_events++;
		r->gone_streak = 0;
		r->failing = false;
		progress(r);
		call_object(r, t, obj, false);
		if (r->dying)
			return false;
		if (rv && *rv && set_rv(r, rv))
			call_rv(r);
		break;
	}
	case CA_WATCH_EVENT_BOOKMARK:
		r->watch_events++;
		r->gone_streak = 0;
		r->failing = false;
		r->st.bookmarks++;
		progress(r);
		if (rv && *rv && set_rv(r, rv))
			call_rv(r);
		break;
	case CA_WATCH_EVENT_ERROR: {
		/* The server ends the stream after this; act now. */
		long code = (long)ca_kobj_int(obj, "code", 0);
		const char *msg = ca_kobj_str(obj, "message");
		r->stream_failed = true;
		ca_kube_xfer_cancel(r->xfer);
		r->xfer = NULL;
		r->st.watching = false;
		ca_watch_parser_reset(r->parser);
		if (code == 410) {
			r->st.relists_gone++;
			r->st.last_status = 410;
			ca_log(CA_LOG_INFO, "kube", "watch ended", "reflector", r->name, "reason",
			       "resourceVersion too old (410), listing again", NULL);
			relist(r);
		} else {
			fail(r, code, "watch", msg ? msg : "ERROR event in watch stream", -1);
		}
		return false;
	}
	}
	return !r->dying && !r->paused;
}

static void watch_response(void *arg, long status)
{
	struct ca_reflector *r = arg;
	r->st.watching = true;
	r->st.watches++;
	r->st.last_status = status;
	r->watch_opened_ms = ca_now_monotonic_ms();
	progress(r);
	healthy(r);
}

static bool watch_data(void *arg, const char *data, size_t len)
{
	struct ca_reflector *r = arg;
	enter(r);
	bool more = false;
	enum ca_err err = ca_watch_feed(r->parser, data, len);
	if (r->dying || r->stream_failed)
		goto out;
	if (err == CA_ENOMEM) {
		/* Nothing was lost yet: the resourceVersion only moved past
		 * delivered objects. Start the stream again. */
		ca_kube_xfer_cancel(r->xfer);
		r->xfer = NULL;
		r->st.watching = false;
		fail(r, 200, "watch", "out of memory while parsing the stream", -1);
		goto out;
	}
	more = err == CA_OK && !r->paused;
out:
	leave(r);
	return more;
}

static void watch_done(void *arg, const struct ca_kube_result *res)
{
	struct ca_reflector *r = arg;
	enter(r);
	r->xfer = NULL;
	r->st.watching = false;
	r->st.last_status = res->status;

	/* Lines the parser still holds complete (after a pause) are good
	 * events; a trailing partial line is dropped and read again from the
	 * last resourceVersion, so nothing is missed or repeated. */
	if (res->status == 200 && !r->paused && !r->stream_failed) {
		ca_watch_feed(r->parser, NULL, 0);
		if (r->dying || r->stream_failed || r->xfer)
			goto out;
	}
	bool partial = ca_watch_parser_partial(r->parser);
	ca_watch_parser_reset(r->parser);

	if (res->status == 200) {
		r->st.watch_restarts++;
		ca_kube_count_watch_restart(r->kube);
		int64_t lived = ca_now_monotonic_ms() - r->watch_opened_ms;
		if (res->err != CA_OK) {
			fail(r, 200, "watch", res->error, -1);
		} else if (r->watch_events == 0 && lived < SHORT_WATCH_MS) {
			fail(r, 200, "watch", "stream ended at once without events", -1);
		} else {
			ca_log(CA_LOG_INFO, "kube", "watch ended", "reason",
			       partial ? "stream ended inside an event" : "server timeout",
			       "reflector", r->name, "resource_version", r->st.resource_version, NULL);
			schedule(r, 0);
		}
		goto out;
	}
	if (res->err != CA_OK) {
		fail(r, 0, "watch", res->error, -1);
		goto out;
	}
	if (res->status == 410) {
		r->st.relists_gone++;
		ca_log(CA_LOG_INFO, "kube", "watch ended", "reflector", r->name, "reason",
		       "HTTP 410 Gone, listing again", NULL);
		relist(r);
		goto out;
	}
	char msg[200];
	status_message(res->body, res->len, msg, sizeof msg);
	if (rv_refused(res->status, msg)) {
		refused_rv(r, res->status, msg);
		goto out;
	}
	fail(r, res->status, "watch", msg, res->retry_after_s);
out:
	leave(r);
}

/* ------------------------------------------------------------------ */
/* A stored resume point (a state file) is checked before it is watched
 * from: a LIST of one object at exactly that resourceVersion. The real
 * server holds a watch from a version it has not reached open and silent
 * (etcd restored from a backup, a state file from another cluster): the
 * agent would look healthy and publish nothing. The exact read says it at
 * once, as does a compacted or malformed version. */

static void probe_done(void *arg, const struct ca_kube_result *res)
{
	struct ca_reflector *r = arg;
	enter(r);
	r->xfer = NULL;
	r->st.last_status = res->status;
	if (res->err != CA_OK) {
		fail(r, 0, "resume check", res->error, -1);
		goto out;
	}
	char msg[200];
	status_message(res->body, res->len, msg, sizeof msg);
	if (res->status == 200) {
		r->verify_resume = false;
		healthy(r);
		progress(r);
		start_watch(r);
	} else if (res->status == 410) {
		r->st.relists_gone++;
		ca_log(CA_LOG_INFO, "kube", "the stored resume point was compacted away (410), listing",
		       "reflector", r->name, "resource_version", r->st.resource_version, NULL);
		relist(r);
	} else if (rv_refused(res->status, msg) ||
	           (res->status == 500 && strstr(msg, "future revision"))) {
		refused_rv(r, res->status, msg);
	} else {
		fail(r, res->status, "resume check", msg, res->retry_after_s);
	}
out:
	leave(r);
}

static const struct ca_kube_xfer_ops probe_ops = {
	.on_done = probe_done,
};

static void start_probe(struct ca_reflector *r)
{
	struct ca_buf b;
	char err_text[96];
	ca_buf_init(&b, 0);
	enum ca_err err = ca_buf_append_str(&b, r->path);
	if (err == CA_OK)
		err = ca_buf_printf(&b, "%climit=1", strchr(r->path, '?') ? '&' : '?');
	if (err == CA_OK)
		err = append_param(&b, "resourceVersion", r->st.resource_version);
	if (err == CA_OK)
		err = append_selectors(r, &b);
	struct ca_kube_xfer_params p = {
		.path = b.data,
		.timeout_ms = LIST_TIMEOUT_MS,
		.max_body = r->max_list_bytes,
		.prune_managed_fields = true,
	};
	r->xfer_is_watch = false;
	if (err == CA_OK)
		err = ca_kube_xfer_start(r->kube, &p, &probe_ops, r, &r->xfer);
	ca_buf_fini(&b);
	if (err != CA_OK) {
		r->xfer = NULL;
		snprintf(err_text, sizeof err_text, "cannot start request: %s", ca_strerror(err));
		fail(r, 0, "resume check", err_text, -1);
	}
}

static const struct ca_kube_xfer_ops watch_ops = {
	.on_response = watch_response,
	.on_data = watch_data,
	.on_done = watch_done,
};

static void start_watch(struct ca_reflector *r)
{
	struct ca_buf b;
	char err_text[96];
	int64_t span = r->watch_max_ms - r->watch_min_ms;
	int64_t t_ms = r->watch_min_ms + (int64_t)ca_random_below((uint64_t)span + 1);
	int64_t timeout_s = t_ms / 1000 > 0 ? t_ms / 1000 : 1;

	ca_buf_init(&b, 0);
	enum ca_err err = ca_buf_append_str(&b, r->path);
	if (err == CA_OK)
		err = ca_buf_printf(&b, "%cwatch=1&allowWatchBookmarks=true",
		                    strchr(r->path, '?') ? '&' : '?');
	if (err == CA_OK && r->st.resource_version[0])
		err = append_param(&b, "resourceVersion", r->st.resource_version);
	if (err == CA_OK)
		err = ca_buf_printf(&b, "&timeoutSeconds=%lld", (long long)timeout_s);
	if (err == CA_OK)
		err = append_selectors(r, &b);
	struct ca_kube_xfer_params p = {
		.path = b.data,
		.stream = true,
		.idle_timeout_s = timeout_s + WATCH_IDLE_GRACE_S,
	};
	ca_watch_parser_reset(r->parser);
	r->stream_failed = false;
	r->watch_events = 0;
	r->watch_opened_ms = ca_now_monotonic_ms();
	r->xfer_is_watch = true;
	if (err == CA_OK)
		err = ca_kube_xfer_start(r->kube, &p, &watch_ops, r, &r->xfer);
	ca_buf_fini(&b);
	if (err != CA_OK) {
		r->xfer = NULL;
		snprintf(err_text, sizeof err_text, "cannot start request: %s", ca_strerror(err));
		fail(r, 0, "watch", err_text, -1);
		return;
	}
	if (r->paused)
		ca_kube_xfer_pause(r->xfer);
}

/* ------------------------------------------------------------------ */
/* Timers */

static void on_timer(void *arg)
{
	struct ca_reflector *r = arg;
	enter(r);
	if (r->xfer) {
		/* A stream still open (a pause held its end): replace it. */
		ca_kube_xfer_cancel(r->xfer);
		r->xfer = NULL;
		r->st.watching = false;
	}
	if (r->need_list || r->list_only || !r->st.resource_version[0]) {
		r->need_list = true;
		start_list(r);
	} else if (r->verify_resume) {
		start_probe(r);
	} else {
		start_watch(r);
	}
	leave(r);
}

static void on_kick(void *arg)
{
	struct ca_reflector *r = arg;
	enter(r);
	if (r->paused)
		goto out;
	if (r->page && !r->xfer) {
		deliver_page(r);
		goto out;
	}
	if (r->xfer && r->xfer_is_watch) {
		enum ca_err err = ca_watch_feed(r->parser, NULL, 0);
		if (r->dying || r->stream_failed || !r->xfer)
			goto out;
		if (err == CA_OK && !r->paused)
			ca_kube_xfer_resume(r->xfer);
	}
out:
	leave(r);
}

/* ------------------------------------------------------------------ */
/* Public API */

static void destroy(struct ca_reflector *r)
{
	ca_kube_xfer_cancel(r->xfer);
	ca_kube_list_slot_cancel(r->kube, &r->slot_wait);
	give_slot(r);
	ca_loop_timer_free(r->timer);
	ca_loop_timer_free(r->kick);
	ca_watch_parser_free(r->parser);
	drop_page(r);
	free(r->continue_token);
	free(r->name);
	free(r->path);
	free(r->field_selector);
	free(r->label_selector);
	free(r);
}

enum ca_err ca_reflector_new(struct ca_reflector **out, struct ca_kube *kube,
                             const struct ca_reflector_options *opts,
                             const struct ca_reflector_callbacks *cbs, void *arg)
{
	enum ca_err err = CA_EINVAL;
	struct ca_reflector *r = NULL;

	*out = NULL;
	if (!kube || !opts || !cbs || !cbs->on_object || !opts->path || opts->path[0] != '/' ||
	    opts->page_size < 0 || opts->watch_timeout_min_ms < 0 || opts->watch_timeout_max_ms < 0 ||
	    opts->backoff_initial_ms < 0 || opts->backoff_max_ms < 0)
		return CA_EINVAL;
	if (opts->resume_resource_version &&
	    strlen(opts->resume_resource_version) >= sizeof r->st.resource_version)
		return CA_EINVAL;
	r = calloc(1, sizeof *r);
	if (!r)
		return CA_ENOMEM;
	r->kube = kube;
	r->slot_wait.granted = slot_granted;
	r->slot_wait.arg = r;
	r->cbs = *cbs;
	r->arg = arg;
	r->page_size = opts->page_size ? opts->page_size : DEFAULT_PAGE_SIZE;
	r->st.page_limit = r->page_size; /* halved for good after a page too big */
	r->watch_min_ms = opts->watch_timeout_min_ms ? opts->watch_timeout_min_ms : DEFAULT_WATCH_MIN_MS;
	r->watch_max_ms = opts->watch_timeout_max_ms ? opts->watch_timeout_max_ms : DEFAULT_WATCH_MAX_MS;
	if (r->watch_max_ms < r->watch_min_ms)
		r->watch_max_ms = r->watch_min_ms;
	r->backoff_initial_ms = opts->backoff_initial_ms ? opts->backoff_initial_ms : DEFAULT_BACKOFF_INITIAL_MS;
	r->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : DEFAULT_BACKOFF_MAX_MS;
	if (r->backoff_max_ms < r->backoff_initial_ms)
		r->backoff_max_ms = r->backoff_initial_ms;
	r->max_object_bytes = opts->max_object_bytes ? opts->max_object_bytes : DEFAULT_MAX_OBJECT;
	r->max_list_bytes = opts->max_list_bytes ? opts->max_list_bytes : DEFAULT_MAX_LIST_BYTES;
	r->list_only = opts->list_only;
	r->aggregated_api = opts->aggregated_api;
	r->quiet = opts->quiet;
	r->need_list = r->list_only || !(opts->resume_resource_version && *opts->resume_resource_version);
	if (!r->need_list) {
		set_rv(r, opts->resume_resource_version);
		r->verify_resume = true;
	}

	err = CA_ENOMEM;
	r->name = strdup(opts->name && *opts->name ? opts->name : opts->path);
	r->path = strdup(opts->path);
	if (!r->name || !r->path)
		goto out;
	if (opts->field_selector && *opts->field_selector && !(r->field_selector = dup_opt(opts->field_selector)))
		goto out;
	if (opts->label_selector && *opts->label_selector && !(r->label_selector = dup_opt(opts->label_selector)))
		goto out;
	if ((err = ca_watch_parser_new(&r->parser, r->max_object_bytes, on_watch_event, r)) != CA_OK)
		goto out;
	struct ca_loop *loop = ca_kube_loop(kube);
	if ((err = ca_loop_timer_new(loop, on_timer, r, &r->timer)) != CA_OK ||
	    (err = ca_loop_timer_new(loop, on_kick, r, &r->kick)) != CA_OK)
		goto out;
	*out = r;
	r = NULL;
	err = CA_OK;
out:
	if (r)
		destroy(r);
	return err;
}

enum ca_err ca_reflector_start(struct ca_reflector *r)
{
	if (r->started)
		return CA_EINVAL;
	r->started = true;
	r->st.last_progress_ms = ca_now_monotonic_ms();
	schedule(r, 0);
	return CA_OK;
}

enum ca_err ca_reflector_set_resume(struct ca_reflector *r, const char *rv)
{
	if (r->started || r->list_only || !rv || !*rv || strlen(rv) >= sizeof r->st.resource_version)
		return CA_EINVAL;
	r->need_list = false;
	set_rv(r, rv);
	r->verify_resume = true;
	return CA_OK;
}

void ca_reflector_pause(struct ca_reflector *r)
{
	if (r->paused)
		return;
	r->paused = true;
	ca_loop_timer_stop(r->kick);
	if (r->xfer && r->xfer_is_watch)
		ca_kube_xfer_pause(r->xfer);
}

void ca_reflector_resume(struct ca_reflector *r)
{
	if (!r->paused)
		return;
	r->paused = false;
	ca_loop_timer_start(r->kick, 0, 0);
}

void ca_reflector_free(struct ca_reflector *r)
{
	if (!r)
		return;
	if (r->depth > 0) {
		/* Inside one of our callbacks: stop everything now, free on the
		 * way out of the outermost entry point. */
		if (!r->dying) {
			r->dying = true;
			ca_kube_xfer_cancel(r->xfer);
			r->xfer = NULL;
			ca_loop_timer_stop(r->timer);
			ca_loop_timer_stop(r->kick);
			ca_kube_list_slot_cancel(r->kube, &r->slot_wait);
			give_slot(r);
		}
		return;
	}
	destroy(r);
}

bool ca_reflector_relist(struct ca_reflector *r)
{
	if (!r->started || r->dying || r->xfer || r->page || r->holds_slot || r->slot_wait.queued ||
	    ca_loop_timer_active(r->timer))
		return false;
	r->need_list = true;
	schedule(r, 0);
	return true;
}

bool ca_reflector_ready(const struct ca_reflector *r, char *why, size_t whylen)
{
	/* One 410 is what a compaction asks for; a second without an event
	 * in between is a loop in which nothing flows, however well each
	 * LIST and watch request goes. The loop is over when a watch stays
	 * open (an event watch on a quiet cluster may carry nothing). */
	bool proven = r->st.watching && ca_now_monotonic_ms() - r->watch_opened_ms >= STREAM_PROVEN_MS;
	if (r->gone_streak >= 2 && !proven) {
		ca_set_err(why, whylen, "%s: resourceVersion expired (410) %u times in a row without an event",
		           r->name, r->gone_streak);
		return false;
	}
	if (r->failing) {
		ca_set_err(why, whylen, "%s: %s", r->name,
		           r->st.last_error[0] ? r->st.last_error : "requests are failing");
		return false;
	}
	if (!r->st.synced && r->need_list) {
		ca_set_err(why, whylen, "%s: %s", r->name,
		           r->holds_slot ? "listing" : "waiting for its turn to list");
		return false;
	}
	ca_set_err(why, whylen, "%s", "");
	return true;
}

bool ca_reflector_stalled(const struct ca_reflector *r, int64_t now_ms, int64_t stall_ms)
{
	/* A pause is the consumer's (it judges its own backpressure); a
	 * reflector waiting for the LIST slot waits on another's progress. */
	if (!r->started || stall_ms <= 0 || r->paused || r->slot_wait.queued)
		return false;
	return now_ms - r->st.last_progress_ms > stall_ms;
}

void ca_reflector_get_stats(const struct ca_reflector *r, struct ca_reflector_stats *out)
{
	*out = r->st;
	struct ca_watch_parser_stats ps;
	ca_watch_parser_get_stats(r->parser, &ps);
	out->oversized = ps.oversized;
	out->parse_errors = ps.parse_errors;
}

void ca_reflector_health_json(const struct ca_reflector *r, struct ca_buf *out)
{
	struct ca_reflector_stats s;
	ca_reflector_get_stats(r, &s);
	ca_buf_append_str(out, "{\"name\":");
	ca_buf_append_json_string(out, r->name);
	ca_buf_printf(out, ",\"ready\":%s,\"synced\":%s,\"watching\":%s,\"paused\":%s,\"resource_version\":",
	              ca_reflector_ready(r, NULL, 0) ? "true" : "false",
	              s.synced ? "true" : "false", s.watching ? "true" : "false",
	              r->paused ? "true" : "false");
	ca_buf_append_json_string(out, s.resource_version);
	ca_buf_printf(out,
	              ",\"last_progress_age_ms\":%lld,\"lists\":%llu,\"pages\":%llu,\"watches\":%llu,"
	              "\"watch_restarts\":%llu,\"relists_gone\":%llu,\"relists_bad_rv\":%llu,\"errors\":%llu,"
	              "\"list_items_invalid\":%llu,\"objects\":%llu,"
	              "\"bookmarks\":%llu,\"oversized\":%llu,\"parse_errors\":%llu,\"last_status\":%ld,"
	              "\"page_limit\":%lld,\"pages_too_big\":%llu,\"last_error\":",
	              (long long)(s.last_progress_ms ? ca_now_monotonic_ms() - s.last_progress_ms : 0),
	              (unsigned long long)s.lists, (unsigned long long)s.pages,
	              (unsigned long long)s.watches, (unsigned long long)s.watch_restarts,
	              (unsigned long long)s.relists_gone, (unsigned long long)s.relists_bad_rv,
	              (unsigned long long)s.errors, (unsigned long long)s.list_items_invalid,
	              (unsigned long long)s.objects, (unsigned long long)s.bookmarks,
	              (unsigned long long)s.oversized, (unsigned long long)s.parse_errors,
	              s.last_status, (long long)s.page_limit, (unsigned long long)s.pages_too_big);
	ca_buf_append_json_string(out, s.last_error);
	ca_buf_append_str(out, "}");
}
