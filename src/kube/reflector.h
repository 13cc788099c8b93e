/* kube/reflector.h: list + watch + resume for one resource collection, the
 * way client-go's reflector does it (DESIGN.md §3).
 *
 * LIST in pages (limit + continue), then WATCH from the list's
 * resourceVersion with allowWatchBookmarks=true and a random server-side
 * timeoutSeconds; resume from the last resourceVersion seen after a stream
 * ends; relist on HTTP 410 or an in-stream ERROR with code 410; exponential
 * backoff with jitter on failure (reset after 2 min healthy), Retry-After on
 * 429, token re-read on 401. Never gives up. Each object is parsed and handed
 * to the callbacks at once; no whole list is held. resourceVersions are
 * opaque strings. Loop thread only. */
#ifndef CA_KUBE_REFLECTOR_H
#define CA_KUBE_REFLECTOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "kube/kobj.h"
#include "kube/kube.h"

struct ca_reflector;

enum ca_watch_type { CA_WATCH_ADDED = 0, CA_WATCH_MODIFIED, CA_WATCH_DELETED };

struct ca_reflector_options {
	const char *name;              /* for logs, metrics and health: "events", "pods" */
	const char *path;              /* collection: "/api/v1/events", "/api/v1/namespaces/ns/pods" */
	const char *field_selector;    /* may be NULL */
	const char *label_selector;    /* may be NULL */
	int64_t page_size;             /* LIST limit; 0 = 500 */
	int64_t watch_timeout_min_ms;  /* 0 = 5 min */
	int64_t watch_timeout_max_ms;  /* 0 = 10 min */
	int64_t backoff_initial_ms;    /* 0 = 800 ms */
	int64_t backoff_max_ms;        /* 0 = 30 s */
	size_t max_object_bytes;       /* 0 = 1 MiB; a longer watch line is skipped and counted */
	/* Cap on one LIST page's body (0 = 8 MiB). A page over it is asked
	 * again with half the limit, down to one object per page, so a
	 * collection of big objects still lists within the memory budget. */
	size_t max_list_bytes;
	/* Start by watching from this resourceVersion (a restart resuming from a
	 * state file) instead of listing; a 410 falls back to a normal LIST.
	 * NULL or "" = LIST first. Copied. */
	const char *resume_resource_version;
	/* LIST only, never WATCH: after a LIST the reflector waits for
	 * ca_reflector_relist(). A failed LIST is not retried (the consumer
	 * lists again when it wants; on_list_failed says why). For APIs
	 * without watch, such as metrics.k8s.io; a page without
	 * metadata.resourceVersion is fine then. */
	bool list_only;
	/* The collection is served by an extension API server through the
	 * aggregator (metrics.k8s.io): its 5xx leave ca_kube_api_ok alone. */
	bool aggregated_api;
	/* A completed LIST is logged at debug level, not info: for a consumer
	 * that lists thousands of small collections per interval. */
	bool quiet;
};

struct ca_reflector_callbacks {
	/* A LIST starts (first sync or relist). Objects of the list follow
	 * through on_object with from_list = true. May be NULL. */
	void (*on_list_begin)(void *arg);
	/* One object. For a list, type is ADDED. */
	void (*on_object)(void *arg, enum ca_watch_type type, const struct ca_kobj *obj,
	                  bool from_list);
	/* The list's last page arrived; rv is the list's resourceVersion. Objects
	 * the consumer has not seen since on_list_begin are gone. May be NULL. */
	void (*on_synced)(void *arg, const char *resource_version);
	/* The resume point advanced (objects and bookmarks): what a state file
	 * stores. May be NULL. */
	void (*on_resource_version)(void *arg, const char *resource_version);
	/* list_only: the LIST failed and will not be retried until
	 * ca_reflector_relist(); status is the HTTP status (0: transport, or
	 * a page too big: ca_reflector_stats.list_too_big says which).
	 * May be NULL. */
	void (*on_list_failed)(void *arg, long status, const char *message);
};

struct ca_reflector_stats {
	uint64_t lists;             /* LIST requests that completed (all pages) */
	uint64_t pages;
	uint64_t watches;           /* WATCH streams opened */
	uint64_t watch_restarts;    /* streams that ended and were resumed */
	uint64_t relists_gone;      /* relists caused by 410 */
	uint64_t relists_bad_rv;    /* relists because a watch's resourceVersion was refused (400) */
	uint64_t errors;            /* failed requests (transport or HTTP >= 400) */
	uint64_t objects;           /* objects delivered */
	uint64_t bookmarks;
	uint64_t oversized;         /* watch lines over max_object_bytes, skipped */
	uint64_t parse_errors;      /* lines that were not a watch event */
	uint64_t list_items_invalid; /* LIST items that did not parse, skipped */
	uint64_t pages_too_big;     /* LIST pages over max_list_bytes, asked again smaller */
	int64_t page_limit;         /* the LIST limit in use (halved after a page too big) */
	/* The last LIST failed because a page was over max_list_bytes even at
	 * one object per page: the server ignores limit (metrics-server does)
	 * and the whole collection does not fit, or one object alone does not.
	 * Asking again cannot help. */
	bool list_too_big;
	bool synced;                /* a LIST has completed since start */
	bool watching;              /* a WATCH stream is open now */
	int64_t last_progress_ms;   /* monotonic: last object, bookmark, or successful list/(re)connect */
	long last_status;           /* last HTTP status, 0 = transport error */
	char resource_version[128]; /* the resume point */
	char last_error[256];       /* "" when healthy */
};

/* The reflector does not start until ca_reflector_start(). Options are
 * copied; kube is borrowed and must outlive the reflector. */
enum ca_err ca_reflector_new(struct ca_reflector **out, struct ca_kube *kube,
                             const struct ca_reflector_options *opts,
                             const struct ca_reflector_callbacks *cbs, void *arg);
enum ca_err ca_reflector_start(struct ca_reflector *r);
/* Before ca_reflector_start(): start from rv as options.resume_resource_version
 * would (checked with the server first; 410 relists). Copied. CA_EINVAL
 * once started or for an rv that does not fit. */
enum ca_err ca_reflector_set_resume(struct ca_reflector *r, const char *rv);
/* Stop reading the stream (TCP pushes back on the server) until resume.
 * Safe to call from inside on_object. */
void ca_reflector_pause(struct ca_reflector *r);
void ca_reflector_resume(struct ca_reflector *r);
void ca_reflector_free(struct ca_reflector *r);
/* list_only: LIST again now, unless a LIST is already in progress or
 * waiting for its turn (false then). */
bool ca_reflector_relist(struct ca_reflector *r);

/* Ready: the collection was listed (or the watch resumed from a stored
 * point) and the reflector is streaming: its last request did not fail and
 * it is not in a loop of 410s (a second 410 without an event in between).
 * A single 410 followed by a good relist stays ready; a failure is cleared
 * by the next successful LIST or watch. When not ready, why (may be NULL)
 * gets "<name>: <reason>". */
bool ca_reflector_ready(const struct ca_reflector *r, char *why, size_t whylen);
/* No progress (an object, a bookmark, a successful LIST or watch
 * (re)connection) for more than stall_ms, while it should make some: a
 * reflector its consumer paused, or that waits for the LIST slot, is not
 * stalled (its consumer judges its own pause). */
bool ca_reflector_stalled(const struct ca_reflector *r, int64_t now_ms, int64_t stall_ms);

void ca_reflector_get_stats(const struct ca_reflector *r, struct ca_reflector_stats *out);
/* A JSON object (no trailing newline) for /health. */
void ca_reflector_health_json(const struct ca_reflector *r, struct ca_buf *out);

#endif
