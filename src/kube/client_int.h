/* kube/client_int.h: the transfer API client.c gives reflector.c.
 *
 * client.c is the one file that includes curl.h; reflector.c drives its
 * LIST and WATCH requests through the small interface below. A transfer is
 * owned by the client: the caller holds a borrowed handle until on_done has
 * run (the handle is freed right after on_done returns) or until it calls
 * ca_kube_xfer_cancel(). Every callback runs on the loop thread, from the
 * client's dispatch step after curl_multi_socket_action() has returned, never
 * from inside a libcurl callback, so a callback may start, pause, resume or
 * cancel any transfer (its own included). Loop thread only. */
#ifndef CA_KUBE_CLIENT_INT_H
#define CA_KUBE_CLIENT_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/err.h"
#include "kube/kube.h"

struct ca_kube_xfer;

/* What a finished transfer got. Everything is borrowed for on_done. */
struct ca_kube_result {
	enum ca_err err;          /* CA_OK when an HTTP response arrived (any status) */
	long status;              /* HTTP status, 0 when none arrived */
	const char *body;         /* one-shot: the body; stream: the body of a non-2xx answer; NUL-terminated */
	size_t len;
	int64_t retry_after_s;    /* Retry-After in seconds, -1 when absent or not a number */
	const char *content_type; /* "" when absent */
	const char *error;        /* transport failure in words ("" when err is CA_OK) */
};

struct ca_kube_xfer_ops {
	/* Streams: the headers of a 2xx answer arrived. May be NULL. */
	void (*on_response)(void *arg, long status);
	/* Streams: body bytes of a 2xx answer. All bytes count as consumed;
	 * return false to pause the transfer (as ca_kube_xfer_pause). */
	bool (*on_data)(void *arg, const char *data, size_t len);
	/* Exactly once unless cancelled; the transfer is freed when it returns. */
	void (*on_done)(void *arg, const struct ca_kube_result *res);
};

struct ca_kube_xfer_params {
	const char *path;        /* API path with query; credentials apply */
	bool stream;             /* hand the body to on_data as it arrives */
	int64_t timeout_ms;      /* one-shot whole-request limit; 0 = the client's default */
	int64_t idle_timeout_s;  /* streams: fail when no byte arrived for this long (0 = none) */
	size_t max_body;         /* one-shot body cap (0 = 4 MiB); beyond it CA_ETOOBIG */
	bool prune_managed_fields; /* one-shot: cut managedFields from a 2xx body before on_done */
	bool aggregated;         /* an extension API server (metrics.k8s.io) answers through the
	                          * aggregator: its 5xx do not mean the API server is down */
};

/* Start a GET. ops is borrowed (a static table); arg is passed back. */
enum ca_err ca_kube_xfer_start(struct ca_kube *kube, const struct ca_kube_xfer_params *params,
                               const struct ca_kube_xfer_ops *ops, void *arg,
                               struct ca_kube_xfer **out);
/* Stop the transfer; no callback runs for it afterwards. NULL is fine. */
void ca_kube_xfer_cancel(struct ca_kube_xfer *x);
/* Stop reading the stream (libcurl stops receiving, TCP pushes back) and
 * stop calling on_data; resume delivers what was held back, in order. */
void ca_kube_xfer_pause(struct ca_kube_xfer *x);
void ca_kube_xfer_resume(struct ca_kube_xfer *x);

/* The LIST slot: at most one LIST page is fetched, parsed and handed out
 * at a time across all of a client's reflectors, so the memory budget
 * counts one page (kubernetes.max_list_page_bytes and its tape) however
 * many reflectors there are. A waiter is embedded in its owner. */
struct ca_kube_slot_waiter {
	struct ca_kube_slot_waiter *next;
	/* Runs with the slot handed over, from inside ca_kube_list_slot_give():
	 * it must only schedule work (start a timer), never call back into the
	 * client. */
	void (*granted)(void *arg);
	void *arg;
	bool queued;
};
/* true: the caller holds the slot now. false: w is queued (FIFO) and
 * w->granted() runs when the slot is handed to it. */
bool ca_kube_list_slot_take(struct ca_kube *kube, struct ca_kube_slot_waiter *w);
/* The holder gives the slot back; the first waiter gets it. */
void ca_kube_list_slot_give(struct ca_kube *kube);
/* Leave the queue (a waiter that is freed). Harmless when not queued. */
void ca_kube_list_slot_cancel(struct ca_kube *kube, struct ca_kube_slot_waiter *w);

/* The loop the client runs on. */
struct ca_loop *ca_kube_loop(const struct ca_kube *kube);

/* Re-read the token file now (after a 401). CA_OK when a token is loaded. */
enum ca_err ca_kube_refresh_token(struct ca_kube *kube);
/* Reflectors report the streams they resumed here, for
 * agent_kube_watch_restarts_total. */
void ca_kube_count_watch_restart(struct ca_kube *kube);

#endif
