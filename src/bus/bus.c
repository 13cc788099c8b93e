/* bus/bus.c: the NATS connection on nats.c.
 *
 * Threads. nats.c runs a reader, a flusher, a reconnect thread, an async
 * callback thread and a dispatcher per subscription; any of them may call
 * the handlers below. Handlers touch only: the atomics of struct ca_bus,
 * the event queue (under qlock) and the close bookkeeping (under qlock).
 * Everything else belongs to the loop thread. An event is one malloc'd
 * block (struct event followed by its strings and payload) that the loop
 * thread frees after calling the user's callback. Published messages are
 * freed on the loop thread, not by nats.c's collector thread (see
 * destroy_published()).
 *
 * Why an eventfd and not ca_loop_post(): a post that is still pending when
 * the bus is freed would run on freed memory, and a post pending when the
 * loop is freed is dropped without its argument being freed. With an fd the
 * bus owns, ca_bus_free() deregisters the fd and frees the queue itself, so
 * nothing outlives the bus. */
#include "core/file.h"
#include "bus/bus.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <nats/nats.h>

#include "core/timeutil.h"
#include "log/log.h"

#define COMPONENT "bus"
#define LAST_ERROR_LEN 256
#define URL_LEN 256
/* At close, beyond nats.flush_timeout: for the publisher to stop and for
 * nats.c to close when the server does not answer. */
#define CLOSE_SLACK_MS 1500
/* Queued bytes that wake the publisher at once instead of at the end of
 * the loop iteration. */
#define PUB_WAKE_BYTES ((size_t)64 << 10)
/* Messages queued but none handed to nats.c for this long: NATS cannot
 * take what the agent publishes (a stalled server), so not ready. */
#define DELIVERY_STALL_MS 5000
/* Core NATS: while messages were handed to nats.c but not yet followed by
 * a PING/PONG, the publisher flushes at most this often to confirm them
 * (ca_bus_confirmed_seq()). */
#define CONFIRM_FLUSH_MS 100
/* JetStream: what a JetStream publish adds to a message's headers
 * ("Nats-Expected-Stream: <name of up to 255>\r\n"), kept out of what
 * ca_bus_max_payload() offers callers. */
#define JS_HEADER_RESERVE 280
/* JetStream: what max_pending_bytes charges a message beyond its payload:
 * the out_msg block and its strings (subject, Content-Type, Nats-Msg-Id;
 * the agent's are well under this), kept out of what ca_bus_max_payload()
 * offers callers so that a payload it allows always fits. */
#define JS_MSG_OVERHEAD (sizeof(struct out_msg) + 2048)
/* JetStream: how often the publisher looks again while disconnected. */
#define JS_OFFLINE_POLL_MS 100
/* JetStream: at most one log line per this many ms about failing publishes
 * and about dropped messages (each says how many since the last). */
#define JS_LOG_EVERY_MS 10000
/* JetStream: the stream refuses a message whose headers pass 64 KiB
 * (JSStreamHeaderExceedsMaximumErr; nats.c 3.4's jsErrCode lacks it). */
#define JS_ERR_HEADER_EXCEEDS_MAXIMUM 10097

enum js_state {
	JS_UNKNOWN,     /* not checked yet (no cluster ID, not connected) */
	JS_OK,          /* the stream exists (or a publish was acknowledged) */
	JS_MISSING,     /* the stream does not exist */
	JS_UNAVAILABLE, /* JetStream is off on the server or for the account, or refused */
};

enum event_type {
	EV_MESSAGE,
	EV_CONNECTED,
	EV_RECONNECTED,
	EV_DISCONNECTED,
	EV_ROOM,
};

struct event {
	struct event *next;
	enum event_type type;
	size_t size; /* bytes charged to the queue cap */
	const char *subject, *reply, *content_type, *msg_id;
	const char *data;
	size_t len;
	/* strings and payload follow */
};

/* A message waiting for the publisher thread: one block, the strings and
 * the payload after the struct. A JetStream message stays in its list until
 * the stream acknowledged it (or it was dropped): nats.c is handed a fresh
 * natsMsg copy per attempt, never this block. */
struct out_msg {
	struct out_msg *next;
	size_t size; /* bytes charged to the outgoing queue */
	uint64_t seq;  /* 1, 2, ... in the order ca_bus_publish*() accepted them */
	bool inflight; /* JetStream: the publisher thread is sending it (plock) */
	const char *subject, *reply, *content_type, *msg_id;
	const char *data;
	size_t len;
};

struct sub {
	struct ca_bus *bus;   /* owner, for on_sub_complete */
	char *subject;
	char *queue;          /* NULL = plain subscription */
	int max_msgs;         /* nats.c's pending limits for it */
	size_t max_bytes;
	natsSubscription *ns; /* NULL until subscribed on the connection */
	bool completed;       /* on-complete callback ran (qlock) */
};

struct ca_bus {
	struct ca_loop *loop;             /* borrowed */
	const struct ca_config *cfg;      /* borrowed */
	struct ca_bus_callbacks cbs;
	void *arg;

	natsOptions *opts;
	natsConnection *conn;
	char **servers;                   /* copies handed to nats.c */
	int nservers;

	struct sub **subs;
	size_t nsubs, subs_cap;

	/* Hand-off from nats.c threads to the loop. */
	pthread_mutex_t qlock;
	pthread_cond_t qcond;
	bool qlock_init;
	struct event *qhead, *qtail;
	size_t qbytes;
	size_t qmax;        /* qlock: the sum of the subscriptions' max_bytes */
	bool closing;       /* qlock: drop new events */
	bool nats_closed;   /* qlock: nats.c's closed callback ran */
	int efd;
	struct ca_loop_fd *efd_handle;

	/* Outgoing messages: the loop queues them, the publisher thread hands
	 * them to nats.c, whose calls may block (a full write buffer flushes
	 * synchronously, up to nats.write_deadline) and must never block the
	 * loop. plock guards the queue and the fields up to pstop. */
	pthread_mutex_t plock;
	pthread_cond_t pwork;  /* messages or stop */
	pthread_cond_t pidle;  /* the queue drained */
	bool plock_init;
	struct out_msg *phead, *ptail;
	size_t pbytes;         /* queued and being published */
	size_t pmax;           /* nats.publish_buffer_bytes */
	bool pbusy;            /* the thread is publishing a batch */
	bool pstop;
	bool pkick_armed;      /* loop thread: the end-of-iteration wake is due */
	struct ca_loop_timer *pkick;
	pthread_t pthread;
	bool pthread_started;
	bool pthread_stuck;    /* did not stop in time at close: its memory is kept */
	atomic_int_fast64_t handoff_ms;  /* monotonic: the thread last handed a message over or idled */
	atomic_size_t buffered;          /* nats.c's buffered bytes after the last batch */
	atomic_uint_fast64_t lost;       /* taken, then refused by nats.c (closed, buffer full) */

	/* Delivery confirmation (plock): the last sequence number given out,
	 * and the first core message handed to nats.c since the last completed
	 * PING/PONG (0 = none). */
	uint64_t pub_seq;
	uint64_t core_unconfirmed;
	int64_t last_confirm_ms;   /* publisher thread */
	int64_t stop_deadline_ms;  /* plock: with pstop, when the publisher gives up */

	/* JetStream (nats.jetstream.enabled). jhead/jtail: messages accepted
	 * and not yet acknowledged, oldest first; the head may be in flight.
	 * Bounded by jmax bytes: the oldest not in flight are dropped. */
	atomic_bool want_room;     /* a publish was refused as full: say when there is room */
	bool js_enabled;
	bool js_drop_oldest;       /* nats.jetstream.when_full: drop_oldest */
	jsCtx *js;
	struct out_msg *jhead, *jtail;
	size_t jbytes, jcount, jmax;
	bool js_bound;             /* plock: stream and subjects known */
	bool js_checked;           /* plock: the stream was looked up (or created) on this connection */
	uint64_t js_checked_epoch; /* plock */
	int64_t js_recheck_ms;     /* publisher thread: when to look the stream up again */
	char js_stream[256];       /* set once by ca_bus_jetstream_bind(), then read-only */
	char **js_subjects;
	size_t js_nsubjects;
	int64_t js_next_try_ms;    /* publisher thread: retry backoff */
	int64_t js_backoff_ms;
	int64_t js_fail_log_ms;    /* publisher thread */
	uint64_t js_fail_unlogged;
	int64_t js_refused_log_ms; /* publisher thread: messages refused for good */
	uint64_t js_refused_unlogged;
	int64_t js_drop_log_ms;    /* loop thread */
	uint64_t js_drop_unlogged;
	atomic_int js_state;       /* enum js_state */
	atomic_uint_fast64_t js_acked, js_ack_failures, js_retries, js_dropped, js_duplicates;
	char js_error[LAST_ERROR_LEN]; /* qlock */

	bool connect_called;
	bool closed;
	bool leaked;        /* nats.c never reported closing: keep memory */
	struct ca_bus *kept_next; /* kept_buses chain */
	bool ever_connected; /* loop thread: for reconnected=true */

	/* Bytes handed to nats.c's reconnect buffer since the connection was
	 * lost (loop thread), and the connect count it was measured against. */
	size_t offline_bytes;
	uint64_t offline_epoch;

	atomic_bool connected;
	atomic_bool was_up;                 /* nats threads: connected at least once */
	atomic_uint_fast64_t connect_epoch; /* successful connects so far */
	atomic_size_t max_payload;
	atomic_uint_fast64_t reconnects, disconnects;
	atomic_uint_fast64_t published, published_bytes, publish_errors;
	atomic_uint_fast64_t received, received_bytes, dropped;

	/* qlock */
	char last_error[LAST_ERROR_LEN];
	char server_url[URL_LEN];
};

/* ------------------------------------------------------------------ helpers */

/* nats.c's reconnect buffer. In JetStream mode durable messages are never
 * handed to nats.c while disconnected (the bus keeps them until
 * acknowledged, in nats.jetstream.max_pending_bytes), so only replies and
 * the rare message caught by a disconnect use it: at most
 * JS_RECONNECT_BUFFER_MAX then, which keeps JetStream mode within the
 * memory budget of the default Deployment. */
#define JS_RECONNECT_BUFFER_MAX ((size_t)1 << 20)

static size_t reconnect_cap(const struct ca_config *cfg)
{
	size_t cap = cfg->nats.reconnect_buffer_bytes > 0 ? (size_t)cfg->nats.reconnect_buffer_bytes : (size_t)8 << 20;
	if (cfg->nats.jetstream.enabled && cap > JS_RECONNECT_BUFFER_MAX)
		cap = JS_RECONNECT_BUFFER_MAX;
	return cap;
}

static char *xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

static bool nonempty(const char *s)
{
	return s && *s;
}

/* Copy url without "user:pass@" into out, for logs and health output. */
static void redact_url(const char *url, char *out, size_t outlen)
{
	if (!url) {
		ca_strlcpy(out, "", outlen);
		return;
	}
	const char *scheme_end = strstr(url, "://");
	const char *host = scheme_end ? scheme_end + 3 : url;
	/* nats.c (url.c) takes everything up to the last '@' as user info, so
	 * a password may hold '@' or '/': cut at the last '@' as it does. */
	const char *at = strrchr(host, '@');
	if (at) {
		size_t prefix = (size_t)(host - url);
		if (prefix >= outlen)
			prefix = outlen - 1;
		memcpy(out, url, prefix);
		out[prefix] = '\0';
		ca_strlcpy(out + prefix, at + 1, outlen - prefix);
	} else {
		ca_strlcpy(out, url, outlen);
	}
}

static void record_error(struct ca_bus *bus, const char *text)
{
	pthread_mutex_lock(&bus->qlock);
	ca_strlcpy(bus->last_error, text, sizeof bus->last_error);
	pthread_mutex_unlock(&bus->qlock);
}

static void record_js_error(struct ca_bus *bus, const char *text)
{
	pthread_mutex_lock(&bus->qlock);
	ca_strlcpy(bus->js_error, text, sizeof bus->js_error);
	pthread_mutex_unlock(&bus->qlock);
}

/* ------------------------------------------------------ nats.c thread side */

static void wake_loop(struct ca_bus *bus)
{
	uint64_t one = 1;
	ssize_t n = write(bus->efd, &one, sizeof one);
	(void)n; /* EAGAIN: the counter is already non-zero, the loop will wake */
}

/* Append ev (taken) unless closing or over the cap. */
static void enqueue(struct ca_bus *bus, struct event *ev)
{
	bool wake = false, dropped = false;
	pthread_mutex_lock(&bus->qlock);
	if (bus->closing) {
		dropped = true;
	} else if (ev->type == EV_MESSAGE && bus->qbytes + ev->size > bus->qmax) {
		dropped = true;
		atomic_fetch_add(&bus->dropped, 1);
	} else {
		wake = bus->qhead == NULL;
		if (bus->qtail)
			bus->qtail->next = ev;
		else
			bus->qhead = ev;
		bus->qtail = ev;
		bus->qbytes += ev->size;
	}
	pthread_mutex_unlock(&bus->qlock);
	if (dropped)
		free(ev);
	else if (wake)
		wake_loop(bus);
}

static void enqueue_simple(struct ca_bus *bus, enum event_type type)
{
	struct event *ev = calloc(1, sizeof *ev);
	if (!ev)
		return; /* nothing sensible to do on a nats.c thread */
	ev->type = type;
	enqueue(bus, ev);
}

/* Copy a C string into the event block at *pos. */
static const char *put_str(char **pos, const char *s, size_t n)
{
	char *dst = *pos;
	memcpy(dst, s, n);
	dst[n] = '\0';
	*pos += n + 1;
	return dst;
}

static void on_nats_message(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
	struct ca_bus *bus = closure;
	(void)nc;
	(void)sub;
	const char *subject = natsMsg_GetSubject(msg);
	const char *reply = natsMsg_GetReply(msg);
	const char *data = natsMsg_GetData(msg);
	int dlen = natsMsg_GetDataLength(msg);
	const char *ct = NULL, *id = NULL;
	if (natsMsgHeader_Get(msg, "Content-Type", &ct) != NATS_OK)
		ct = NULL;
	if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) != NATS_OK)
		id = NULL;
	size_t len = dlen > 0 ? (size_t)dlen : 0;
	size_t ls = subject ? strlen(subject) : 0;
	size_t lr = reply ? strlen(reply) : 0;
	size_t lc = ct ? strlen(ct) : 0;
	size_t li = id ? strlen(id) : 0;
	/* Each piece is bounded by the server's max_payload (an int), so the
	 * sum cannot overflow size_t. */
	size_t size = sizeof(struct event) + ls + lr + lc + li + len + 5;
	struct event *ev = malloc(size);
	if (!ev) {
		atomic_fetch_add(&bus->dropped, 1);
		goto out;
	}
	memset(ev, 0, sizeof *ev);
	ev->type = EV_MESSAGE;
	ev->size = size;
	char *pos = (char *)(ev + 1);
	ev->subject = put_str(&pos, subject ? subject : "", ls);
	ev->reply = reply ? put_str(&pos, reply, lr) : NULL;
	ev->content_type = ct ? put_str(&pos, ct, lc) : NULL;
	ev->msg_id = id ? put_str(&pos, id, li) : NULL;
	ev->data = put_str(&pos, data ? data : "", data ? len : 0);
	ev->len = data ? len : 0;
	enqueue(bus, ev);
out:
	natsMsg_Destroy(msg);
}

static void note_connected(struct ca_bus *bus, natsConnection *nc)
{
	int64_t mp = natsConnection_GetMaxPayload(nc);
	if (mp > 0)
		atomic_store(&bus->max_payload, (size_t)mp);
	char url[URL_LEN] = "", clean[URL_LEN];
	if (natsConnection_GetConnectedUrl(nc, url, sizeof url) != NATS_OK)
		url[0] = '\0';
	redact_url(url, clean, sizeof clean);
	pthread_mutex_lock(&bus->qlock);
	ca_strlcpy(bus->server_url, clean, sizeof bus->server_url);
	pthread_mutex_unlock(&bus->qlock);
	atomic_store(&bus->connected, true);
	atomic_fetch_add(&bus->connect_epoch, 1);
}

static void on_nats_connected(natsConnection *nc, void *closure)
{
	struct ca_bus *bus = closure;
	note_connected(bus, nc);
	bool again = atomic_exchange(&bus->was_up, true);
	if (again)
		atomic_fetch_add(&bus->reconnects, 1);
	enqueue_simple(bus, again ? EV_RECONNECTED : EV_CONNECTED);
}

static void on_nats_reconnected(natsConnection *nc, void *closure)
{
	on_nats_connected(nc, closure);
}

static void on_nats_disconnected(natsConnection *nc, void *closure)
{
	struct ca_bus *bus = closure;
	/* Keep why (refused, authorization, TLS) for /health; nats.c also
	 * calls this for failed attempts while never connected, which are
	 * recorded but are not news for the callbacks. */
	const char *detail = NULL;
	if (natsConnection_GetLastError(nc, &detail) != NATS_OK && detail && *detail)
		record_error(bus, detail);
	if (!atomic_exchange(&bus->connected, false))
		return;
	atomic_fetch_add(&bus->disconnects, 1);
	enqueue_simple(bus, EV_DISCONNECTED);
}

static void on_nats_closed(natsConnection *nc, void *closure)
{
	struct ca_bus *bus = closure;
	(void)nc;
	atomic_store(&bus->connected, false);
	pthread_mutex_lock(&bus->qlock);
	bus->nats_closed = true;
	pthread_cond_broadcast(&bus->qcond);
	pthread_mutex_unlock(&bus->qlock);
}

static void on_nats_error(natsConnection *nc, natsSubscription *sub, natsStatus status, void *closure)
{
	struct ca_bus *bus = closure;
	const char *detail = NULL;
	char text[LAST_ERROR_LEN];
	(void)sub;
	if (natsConnection_GetLastError(nc, &detail) == NATS_OK || !detail)
		detail = NULL;
	snprintf(text, sizeof text, "%s%s%s", natsStatus_GetText(status),
	         detail ? ": " : "", detail ? detail : "");
	record_error(bus, text);
	/* A slow consumer's drops are counted by nats.c per subscription
	 * (natsSubscription_GetDropped), read when metrics are rendered. */
	ca_log(CA_LOG_WARN, COMPONENT, "NATS asynchronous error", "error", text, NULL);
}

/* nats.c calls this after the subscription is closed and its message
 * handler has returned for the last time. */
static void on_sub_complete(void *closure)
{
	struct sub *s = closure;
	struct ca_bus *bus = s->bus;
	pthread_mutex_lock(&bus->qlock);
	s->completed = true;
	pthread_cond_broadcast(&bus->qcond);
	pthread_mutex_unlock(&bus->qlock);
}

static int64_t reconnect_delay(natsConnection *nc, int attempts, void *closure)
{
	const struct ca_bus *bus = closure;
	(void)nc;
	int64_t wait = bus->cfg->nats.reconnect_wait_ms > 0 ? bus->cfg->nats.reconnect_wait_ms : 2000;
	int64_t max = bus->cfg->nats.reconnect_wait_max_ms > wait ? bus->cfg->nats.reconnect_wait_max_ms : wait;
	int shift = attempts > 1 ? attempts - 1 : 0;
	int64_t d = wait;
	for (int i = 0; i < shift && d < max; i++)
		d *= 2;
	if (d > max)
		d = max;
	int64_t jitter = bus->cfg->nats.reconnect_jitter_ms;
	if (jitter > 0)
		d += (int64_t)ca_random_below((uint64_t)jitter + 1);
	return d;
}

/* -------------------------------------------- freeing published messages */

/* natsMsg_Destroy() does not free a message: it appends it to nats.c's
 * garbage-collector list and signals the collector thread whenever that
 * thread sleeps. With one publish per event from the loop thread, the
 * collector woke for nearly every message: about 2.2 context switches and
 * 6 us of system time per event (bench/events_pipeline.py, 65k events/s;
 * the loop thread and the collector each switched ~1.1 times per event,
 * nats.c's flusher only ~0.04). A message we created with natsMsg_Create()
 * and nats.c copied into its write buffer during natsConnection_PublishMsg()
 * is referenced by nobody else, so it can be freed right here.
 *
 * nats.c offers no call for that, but natsMsg_Destroy() frees in place when
 * the message's garbage-collector callback is NULL, and every nats.c release
 * since 1.0 starts struct __natsMsg with its natsGCItem {next, freeCb}. We
 * clear freeCb only after checking that it holds exactly natsMsg_free (which
 * libnats exports; looked up once with dlsym) and that next is NULL, so a
 * library with another layout or without the symbol keeps the collector:
 * slower, never wrong. */
struct gc_item_layout {
	void *next;
	void (*free_cb)(void *);
};

_Static_assert(sizeof(void *) == sizeof(void (*)(void *)),
               "function and object pointers must have the same size");

static pthread_once_t msg_free_once = PTHREAD_ONCE_INIT;
static void *msg_free_sym; /* natsMsg_free, or NULL when not found */

/* The nats.c releases whose natsMsg layout was checked (the layout test in
 * tests/unit/test_bus.c runs against the installed one): 1.x to 3.x. A
 * library outside that range keeps its collector: slower, never wrong. */
#define LAYOUT_CHECKED_MIN 0x010000u
#define LAYOUT_CHECKED_MAX 0x03FFFFu

static void find_msg_free(void)
{
	uint32_t v = nats_GetVersionNumber();
	if (v >= LAYOUT_CHECKED_MIN && v <= LAYOUT_CHECKED_MAX)
		msg_free_sym = dlsym(RTLD_DEFAULT, "natsMsg_free");
}

/* Free msg (NULL is fine) on this thread when its layout is the known one,
 * through nats.c's collector otherwise. Only for a message no one else
 * holds: one created by ca_bus_publish_request() and handed to core NATS
 * publish, which copies it into its buffer and keeps no reference. Never
 * for a JetStream publish, whose library may keep the message for its
 * retries and acks: such a path must destroy its messages normally. */
static void destroy_published(natsMsg *msg)
{
	if (!msg)
		return;
	pthread_once(&msg_free_once, find_msg_free);
	unsigned char *raw = (unsigned char *)msg;
	void *next, *cb;
	memcpy(&next, raw + offsetof(struct gc_item_layout, next), sizeof next);
	memcpy(&cb, raw + offsetof(struct gc_item_layout, free_cb), sizeof cb);
	if (msg_free_sym && cb == msg_free_sym && next == NULL) {
		void (*none)(void *) = NULL;
		memcpy(raw + offsetof(struct gc_item_layout, free_cb), &none, sizeof none);
	}
	natsMsg_Destroy(msg);
}

static void *publisher_main(void *arg);

/* Buses whose memory a blocked thread may still use when they are freed
 * (see ca_bus_free): they stay reachable from here until the process
 * exits, so nothing dangles and leak checkers see memory kept on purpose. */
static struct ca_bus *kept_buses;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

static void on_pub_kick(void *arg)
{
	struct ca_bus *bus = arg;
	bus->pkick_armed = false;
	pthread_mutex_lock(&bus->plock);
	if ((bus->phead || bus->jhead) && !bus->pbusy)
		pthread_cond_signal(&bus->pwork);
	pthread_mutex_unlock(&bus->plock);
}

/* ---------------------------------------------------------- loop side */

static void dispatch(struct ca_bus *bus, struct event *ev)
{
	switch (ev->type) {
	case EV_MESSAGE: {
		atomic_fetch_add(&bus->received, 1);
		atomic_fetch_add(&bus->received_bytes, ev->len);
		struct ca_bus_msg m = {
			.subject = ev->subject, .reply = ev->reply,
			.content_type = ev->content_type, .msg_id = ev->msg_id,
			.data = ev->data, .len = ev->len,
		};
		if (bus->cbs.on_message)
			bus->cbs.on_message(bus->arg, &m);
		break;
	}
	case EV_CONNECTED:
	case EV_RECONNECTED: {
		bool again = bus->ever_connected;
		bus->ever_connected = true;
		char url[URL_LEN];
		pthread_mutex_lock(&bus->qlock);
		ca_strlcpy(url, bus->server_url, sizeof url);
		pthread_mutex_unlock(&bus->qlock);
		ca_log(CA_LOG_INFO, COMPONENT, again ? "reconnected to NATS" : "connected to NATS",
		       "server", url, NULL);
		if (bus->cbs.on_connected)
			bus->cbs.on_connected(bus->arg, again);
		break;
	}
	case EV_ROOM:
		if (bus->cbs.on_room)
			bus->cbs.on_room(bus->arg);
		break;
	case EV_DISCONNECTED: {
		char url[URL_LEN];
		pthread_mutex_lock(&bus->qlock);
		ca_strlcpy(url, bus->server_url, sizeof url);
		if (!bus->last_error[0])
			ca_strlcpy(bus->last_error, "disconnected", sizeof bus->last_error);
		pthread_mutex_unlock(&bus->qlock);
		ca_log(CA_LOG_WARN, COMPONENT, "disconnected from NATS", "server", url, NULL);
		if (bus->cbs.on_disconnected)
			bus->cbs.on_disconnected(bus->arg);
		break;
	}
	}
}

static void on_wake(void *arg, int fd, int events)
{
	struct ca_bus *bus = arg;
	(void)events;
	uint64_t v;
	ssize_t n = read(fd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&bus->qlock);
	struct event *ev = bus->qhead;
	bus->qhead = bus->qtail = NULL;
	bus->qbytes = 0;
	pthread_mutex_unlock(&bus->qlock);
	while (ev) {
		struct event *next = ev->next;
		if (!bus->closed)
			dispatch(bus, ev);
		free(ev);
		ev = next;
	}
}

static enum ca_err nats_to_err(natsStatus s)
{
	switch (s) {
	case NATS_OK:
		return CA_OK;
	case NATS_NO_MEMORY:
		return CA_ENOMEM;
	case NATS_MAX_PAYLOAD:
		return CA_ETOOBIG;
	case NATS_INSUFFICIENT_BUFFER:
	case NATS_NOT_YET_CONNECTED:
	case NATS_CONNECTION_DISCONNECTED:
		return CA_EAGAIN;
	case NATS_TIMEOUT:
		return CA_ETIMEDOUT;
	case NATS_INVALID_ARG:
	case NATS_INVALID_SUBJECT:
	case NATS_INVALID_QUEUE_NAME:
	case NATS_ADDRESS_MISSING:
		return CA_EINVAL;
	case NATS_CONNECTION_AUTH_FAILED:
	case NATS_NOT_PERMITTED:
		return CA_EDENIED;
	default:
		return CA_EIO;
	}
}

static bool any_tls_url(const struct ca_strlist *l)
{
	for (size_t i = 0; i < l->count; i++)
		if (l->items[i] && strncmp(l->items[i], "tls://", 6) == 0)
			return true;
	return false;
}

/* Read the NKey public key: a "U…" line in the seed file itself, or the
 * first line of "<seed file>.pub". nats.c needs it next to the seed and
 * offers no call to derive it. */
static enum ca_err nkey_public(const char *seed_file, char **out)
{
	enum ca_err rc;
	char *text = NULL;
	char pubpath[1024];
	for (int pass = 0; pass < 2; pass++) {
		const char *path = seed_file;
		if (pass == 1) {
			int w = snprintf(pubpath, sizeof pubpath, "%s.pub", seed_file);
			if (w < 0 || (size_t)w >= sizeof pubpath)
				return CA_EINVAL;
			path = pubpath;
		}
		rc = ca_read_secret(path, CA_SECRET_LINES, &text, NULL, NULL, NULL, 0);
		if (rc != CA_OK)
			continue;
		for (char *line = text; line && *line;) {
			char *nl = strchr(line, '\n');
			if (nl)
				*nl = '\0';
			while (*line == ' ' || *line == '\t')
				line++;
			size_t n = strcspn(line, " \t\r");
			if (n == 56 && line[0] == 'U') {
				line[n] = '\0';
				*out = strdup(line);
				ca_free_secret(text);
				return *out ? CA_OK : CA_ENOMEM;
			}
			line = nl ? nl + 1 : NULL;
		}
		ca_free_secret(text);
		text = NULL;
	}
	return CA_ENOTFOUND;
}

/* CLOCK_REALTIME ms from now (at least 1), for pthread's timed waits. */
static struct timespec realtime_in(int64_t ms)
{
	struct timespec t;
	clock_gettime(CLOCK_REALTIME, &t);
	if (ms < 1)
		ms = 1;
	t.tv_sec += (time_t)(ms / 1000);
	t.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000L;
	}
	return t;
}

#define TRY_NATS(call, what)                                                   \
	do {                                                                   \
		natsStatus st_ = (call);                                       \
		if (st_ != NATS_OK) {                                          \
			ca_set_err(err, errlen, "nats: %s: %s", (what),           \
			        natsStatus_GetText(st_));                      \
			rc = st_ == NATS_NO_MEMORY ? CA_ENOMEM : CA_EINVAL;   \
			goto out;                                              \
		}                                                              \
	} while (0)

static enum ca_err build_options(struct ca_bus *bus, char *err, size_t errlen)
{
	enum ca_err rc = CA_EINVAL;
	const struct ca_config *cfg = bus->cfg;
	char *nkey_pub = NULL;
	natsOptions *o = NULL;

	if (cfg->nats.servers.count == 0 || cfg->nats.servers.count > 1024) {
		ca_set_err(err, errlen, "nats.servers: expected 1 to 1024 server URLs");
		goto out;
	}
	bus->servers = calloc(cfg->nats.servers.count, sizeof *bus->servers);
	if (!bus->servers) {
		rc = CA_ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < cfg->nats.servers.count; i++) {
		bus->servers[i] = xstrdup(cfg->nats.servers.items[i]);
		if (!bus->servers[i]) {
			rc = CA_ENOMEM;
			goto out;
		}
		bus->nservers++;
	}

	TRY_NATS(natsOptions_Create(&o), "options");
	bus->opts = o;
	TRY_NATS(natsOptions_SetServers(o, (const char **)bus->servers, bus->nservers), "nats.servers");
	TRY_NATS(natsOptions_SetNoRandomize(o, false), "randomize");

	char name[256];
	if (nonempty(cfg->nats.name))
		ca_strlcpy(name, cfg->nats.name, sizeof name);
	else if (nonempty(cfg->cluster.id))
		snprintf(name, sizeof name, "collect-agent/%s", cfg->cluster.id);
	else
		ca_strlcpy(name, "collect-agent", sizeof name);
	TRY_NATS(natsOptions_SetName(o, name), "nats.name");

	if (cfg->nats.connect_timeout_ms > 0)
		TRY_NATS(natsOptions_SetTimeout(o, cfg->nats.connect_timeout_ms), "nats.connect_timeout");
	/* A stalled server (alive, not reading) is noticed in seconds: pings
	 * go unanswered, and a write that cannot finish fails at its deadline
	 * instead of blocking nats.c (and whoever waits on its lock). */
	if (cfg->nats.ping_interval_ms > 0)
		TRY_NATS(natsOptions_SetPingInterval(o, cfg->nats.ping_interval_ms), "nats.ping_interval");
	if (cfg->nats.max_pings_out > 0)
		TRY_NATS(natsOptions_SetMaxPingsOut(o, cfg->nats.max_pings_out), "nats.max_pings_out");
	if (cfg->nats.write_deadline_ms > 0)
		TRY_NATS(natsOptions_SetWriteDeadline(o, cfg->nats.write_deadline_ms), "nats.write_deadline");
	TRY_NATS(natsOptions_SetAllowReconnect(o, true), "reconnect");
	TRY_NATS(natsOptions_SetMaxReconnect(o, cfg->nats.max_reconnects < 0 ? -1 : cfg->nats.max_reconnects),
	         "nats.max_reconnects");
	if (cfg->nats.reconnect_wait_ms > 0)
		TRY_NATS(natsOptions_SetReconnectWait(o, cfg->nats.reconnect_wait_ms), "nats.reconnect_wait");
	TRY_NATS(natsOptions_SetCustomReconnectDelay(o, reconnect_delay, bus), "nats.reconnect_wait_max");
	if (cfg->nats.reconnect_buffer_bytes > 0) {
		if (cfg->nats.reconnect_buffer_bytes > INT32_MAX) {
			ca_set_err(err, errlen, "nats.reconnect_buffer_bytes: at most %d", INT32_MAX);
			goto out;
		}
		TRY_NATS(natsOptions_SetReconnectBufSize(o, (int)reconnect_cap(cfg)), "nats.reconnect_buffer_bytes");
	}
	TRY_NATS(natsOptions_SetRetryOnFailedConnect(o, true, on_nats_connected, bus), "retry");
	TRY_NATS(natsOptions_SetReconnectedCB(o, on_nats_reconnected, bus), "callbacks");
	TRY_NATS(natsOptions_SetDisconnectedCB(o, on_nats_disconnected, bus), "callbacks");
	TRY_NATS(natsOptions_SetClosedCB(o, on_nats_closed, bus), "callbacks");
	TRY_NATS(natsOptions_SetErrorHandler(o, on_nats_error, bus), "callbacks");

	if (cfg->nats.tls.enabled || any_tls_url(&cfg->nats.servers)) {
		TRY_NATS(natsOptions_SetSecure(o, true), "nats.tls");
		if (nonempty(cfg->nats.tls.ca_file))
			TRY_NATS(natsOptions_LoadCATrustedCertificates(o, cfg->nats.tls.ca_file), "nats.tls.ca_file");
		if (nonempty(cfg->nats.tls.cert_file) || nonempty(cfg->nats.tls.key_file)) {
			if (!nonempty(cfg->nats.tls.cert_file) || !nonempty(cfg->nats.tls.key_file)) {
				ca_set_err(err, errlen, "nats.tls: cert_file and key_file go together");
				goto out;
			}
			TRY_NATS(natsOptions_LoadCertificatesChain(o, cfg->nats.tls.cert_file, cfg->nats.tls.key_file),
			         "nats.tls.cert_file/key_file");
		}
		if (cfg->nats.tls.insecure_skip_verify) {
			ca_log(CA_LOG_WARN, COMPONENT, "TLS verification of the NATS server is off "
			       "(nats.tls.insecure_skip_verify): anyone on the path can pose as the server and "
			       "read what the agent publishes and its credentials", NULL);
			TRY_NATS(natsOptions_SkipServerVerification(o, true), "nats.tls.insecure_skip_verify");
		}
	}

	const __typeof__(cfg->nats.auth) *a = &cfg->nats.auth;
	if (nonempty(a->credentials_file)) {
		TRY_NATS(natsOptions_SetUserCredentialsFromFiles(o, a->credentials_file, NULL),
		         "nats.auth.credentials_file");
	} else if (nonempty(a->nkey_seed_file)) {
		enum ca_err r = nkey_public(a->nkey_seed_file, &nkey_pub);
		if (r != CA_OK) {
			ca_set_err(err, errlen, "nats.auth.nkey_seed_file: %s: no user public key (a line \"U...\" "
			        "in the file or in <file>.pub)", a->nkey_seed_file);
			rc = r == CA_ENOMEM ? CA_ENOMEM : CA_EINVAL;
			goto out;
		}
		TRY_NATS(natsOptions_SetNKeyFromSeed(o, nkey_pub, a->nkey_seed_file), "nats.auth.nkey_seed_file");
	}
	/* token_file and password_file were read by the config loader, with
	 * the same reader and rules --check-config uses (config.c). */
	if (nonempty(a->token))
		TRY_NATS(natsOptions_SetToken(o, a->token), "nats.auth.token");
	if (nonempty(a->user))
		TRY_NATS(natsOptions_SetUserInfo(o, a->user, a->password ? a->password : ""), "nats.auth.user");
	rc = CA_OK;
out:
	free(nkey_pub);
	return rc;
}

enum ca_err ca_bus_new(struct ca_bus **out, struct ca_loop *loop, const struct ca_config *cfg,
                       const struct ca_bus_callbacks *cbs, void *arg, char *err, size_t errlen)
{
	enum ca_err rc = CA_ENOMEM;
	struct ca_bus *bus = calloc(1, sizeof *bus);
	*out = NULL;
	if (!bus)
		goto out;
	bus->loop = loop;
	bus->cfg = cfg;
	if (cbs)
		bus->cbs = *cbs;
	bus->arg = arg;
	bus->efd = -1;
	if (pthread_mutex_init(&bus->qlock, NULL) != 0) {
		rc = CA_EIO;
		goto out;
	}
	if (pthread_cond_init(&bus->qcond, NULL) != 0) {
		pthread_mutex_destroy(&bus->qlock);
		rc = CA_EIO;
		goto out;
	}
	bus->qlock_init = true;
	if (pthread_mutex_init(&bus->plock, NULL) != 0) {
		rc = CA_EIO;
		goto out;
	}
	pthread_cond_init(&bus->pwork, NULL);
	pthread_cond_init(&bus->pidle, NULL);
	bus->plock_init = true;
	bus->pmax = cfg->nats.publish_buffer_bytes > 0 ? (size_t)cfg->nats.publish_buffer_bytes
	                                               : (size_t)4 << 20;
	bus->js_enabled = cfg->nats.jetstream.enabled;
	bus->js_drop_oldest = !cfg->nats.jetstream.when_full || strcmp(cfg->nats.jetstream.when_full, "backpressure") != 0;
	bus->jmax = cfg->nats.jetstream.max_pending_bytes > 0 ? (size_t)cfg->nats.jetstream.max_pending_bytes
	                                                      : (size_t)4 << 20;
	bus->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (bus->efd < 0) {
		ca_set_err(err, errlen, "eventfd: %s", strerror(errno));
		rc = CA_EIO;
		goto out;
	}
	rc = ca_loop_fd_add(loop, bus->efd, CA_LOOP_READ, on_wake, bus, &bus->efd_handle);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "cannot watch the bus eventfd: %s", ca_strerror(rc));
		goto out;
	}
	rc = ca_loop_timer_new(loop, on_pub_kick, bus, &bus->pkick);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "cannot create a timer: %s", ca_strerror(rc));
		goto out;
	}
	rc = build_options(bus, err, errlen);
	if (rc != CA_OK)
		goto out;
	*out = bus;
	bus = NULL;
out:
	if (rc == CA_ENOMEM && err && errlen && !err[0])
		ca_set_err(err, errlen, "out of memory");
	ca_bus_free(bus);
	return rc;
}

/* Subscribe s on the live connection (loop thread). */
static enum ca_err sub_attach(struct ca_bus *bus, struct sub *s)
{
	natsStatus st;
	if (s->queue)
		st = natsConnection_QueueSubscribe(&s->ns, bus->conn, s->subject, s->queue, on_nats_message, bus);
	else
		st = natsConnection_Subscribe(&s->ns, bus->conn, s->subject, on_nats_message, bus);
	if (st != NATS_OK) {
		s->ns = NULL;
		return nats_to_err(st);
	}
	if (natsSubscription_SetOnCompleteCB(s->ns, on_sub_complete, s) != NATS_OK)
		s->completed = true; /* already closed: no handler can run */
	/* nats.c's default (65536 messages, 64 MiB) would be a second large
	 * buffer in front of ours: the memory budget counts this one. */
	int bytes = s->max_bytes > (size_t)INT32_MAX ? INT32_MAX : (int)s->max_bytes;
	if (natsSubscription_SetPendingLimits(s->ns, s->max_msgs, bytes) != NATS_OK)
		return CA_EIO;
	return CA_OK;
}

enum ca_err ca_bus_connect(struct ca_bus *bus)
{
	if (bus->connect_called || bus->closed)
		return CA_EINVAL;
	bus->connect_called = true;
	natsStatus st = natsConnection_Connect(&bus->conn, bus->opts);
	if (st == NATS_NOT_YET_CONNECTED) {
		char url[URL_LEN];
		natsStatus why = NATS_OK;
		const char *detail = nats_GetLastError(&why);
		redact_url(bus->servers[0], url, sizeof url);
		if (!detail || !*detail)
			detail = "not connected yet";
		record_error(bus, detail);
		ca_log(CA_LOG_WARN, COMPONENT, "NATS not reachable yet; retrying in the background",
		       "server", url, "error", detail, NULL);
	} else if (st != NATS_OK) {
		char url[URL_LEN];
		const char *detail = nats_GetLastError(NULL);
		redact_url(bus->servers[0], url, sizeof url);
		record_error(bus, detail ? detail : natsStatus_GetText(st));
		ca_log(CA_LOG_ERROR, COMPONENT, "cannot connect to NATS", "server", url,
		       "error", natsStatus_GetText(st), NULL);
		bus->conn = NULL;
		return nats_to_err(st);
	} else {
		/* Connected at once: nats.c calls no connected callback then. */
		on_nats_connected(bus->conn, bus);
	}
	atomic_store(&bus->handoff_ms, ca_now_monotonic_ms());
	if (bus->js_enabled) {
		jsOptions o;
		jsOptions_Init(&o);
		o.Wait = bus->cfg->nats.jetstream.ack_timeout_ms;
		natsStatus jst = natsConnection_JetStream(&bus->js, bus->conn, &o);
		if (jst != NATS_OK) {
			ca_log(CA_LOG_ERROR, COMPONENT, "cannot set up JetStream publishing", "error",
			       natsStatus_GetText(jst), NULL);
			return nats_to_err(jst);
		}
	}
	if (pthread_create(&bus->pthread, NULL, publisher_main, bus) != 0) {
		ca_log(CA_LOG_ERROR, COMPONENT, "cannot start the NATS publisher thread", NULL);
		return CA_EIO;
	}
	bus->pthread_started = true;
	for (size_t i = 0; i < bus->nsubs; i++) {
		enum ca_err rc = sub_attach(bus, bus->subs[i]);
		if (rc != CA_OK) {
			ca_log(CA_LOG_ERROR, COMPONENT, "cannot subscribe", "subject", bus->subs[i]->subject,
			       "error", ca_strerror(rc), NULL);
			return rc;
		}
	}
	return CA_OK;
}

static void sub_free(struct sub *s)
{
	if (!s)
		return;
	free(s->subject);
	free(s->queue);
	free(s);
}

enum ca_err ca_bus_subscribe(struct ca_bus *bus, const char *subject, const char *queue_group,
                             int max_pending_msgs, size_t max_pending_bytes)
{
	enum ca_err rc = CA_EINVAL;
	struct sub *s = NULL;
	if (bus->closed || !nonempty(subject))
		goto out;
	if (bus->nsubs == bus->subs_cap) {
		size_t ncap = bus->subs_cap ? bus->subs_cap * 2 : 8;
		struct sub **n = realloc(bus->subs, ncap * sizeof *n);
		if (!n) {
			rc = CA_ENOMEM;
			goto out;
		}
		bus->subs = n;
		bus->subs_cap = ncap;
	}
	rc = CA_ENOMEM;
	s = calloc(1, sizeof *s);
	if (!s)
		goto out;
	s->bus = bus;
	s->max_msgs = max_pending_msgs > 0 ? max_pending_msgs : CA_BUS_SUB_PENDING_MSGS;
	s->max_bytes = max_pending_bytes > 0 ? max_pending_bytes : CA_BUS_SUB_PENDING_BYTES;
	s->subject = strdup(subject);
	s->queue = nonempty(queue_group) ? strdup(queue_group) : NULL;
	if (!s->subject || (nonempty(queue_group) && !s->queue))
		goto out;
	if (bus->conn) {
		rc = sub_attach(bus, s);
		if (rc != CA_OK)
			goto out;
	}
	bus->subs[bus->nsubs++] = s;
	pthread_mutex_lock(&bus->qlock);
	bus->qmax += s->max_bytes + (size_t)s->max_msgs * sizeof(struct event);
	pthread_mutex_unlock(&bus->qlock);
	s = NULL;
	rc = CA_OK;
out:
	sub_free(s);
	return rc;
}

/* ------------------------------------------------------ publishing */

/* A subject nats.c and the server take: 1 to 255 bytes, no whitespace or
 * control bytes. Checked here because the publish itself happens later, on
 * the publisher thread. */
static bool subject_ok(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++)
		if ((unsigned char)s[n] <= 0x20 || s[n] == 0x7f)
			return false;
	return n > 0 && n <= 255;
}

static void publish_one(struct ca_bus *bus, const struct out_msg *m)
{
	natsMsg *msg = NULL;
	natsStatus st = natsMsg_Create(&msg, m->subject, m->reply, m->data, (int)m->len);
	if (st == NATS_OK && m->content_type)
		st = natsMsgHeader_Set(msg, "Content-Type", m->content_type);
	if (st == NATS_OK && m->msg_id)
		st = natsMsgHeader_Set(msg, "Nats-Msg-Id", m->msg_id);
	if (st == NATS_OK)
		st = natsConnection_PublishMsg(bus->conn, msg);
	destroy_published(msg);
	if (st == NATS_OK) {
		atomic_fetch_add(&bus->published, 1);
		atomic_fetch_add(&bus->published_bytes, m->len);
	} else {
		atomic_fetch_add(&bus->publish_errors, 1);
		atomic_fetch_add(&bus->lost, 1);
	}
}

/* The lowest sequence number not yet resolved, minus one (plock). */
static uint64_t confirmed_locked(const struct ca_bus *bus)
{
	uint64_t lowest = UINT64_MAX;
	if (bus->phead)
		lowest = bus->phead->seq;
	if (bus->core_unconfirmed && bus->core_unconfirmed < lowest)
		lowest = bus->core_unconfirmed;
	if (bus->jhead && bus->jhead->seq < lowest)
		lowest = bus->jhead->seq;
	return lowest == UINT64_MAX ? bus->pub_seq : lowest - 1;
}

/* After the publisher freed space: true (once) when a publish was refused
 * as full and both buffers are now at most half full (plock held). */
static bool room_again(struct ca_bus *bus)
{
	return atomic_load(&bus->want_room) && bus->jbytes <= bus->jmax / 2 && bus->pbytes <= bus->pmax / 2 &&
	       atomic_exchange(&bus->want_room, false);
}

/* ------------------------------------------------- JetStream (publisher) */

static const char *js_state_name(int state)
{
	switch (state) {
	case JS_OK: return "ok";
	case JS_MISSING: return "stream missing";
	case JS_UNAVAILABLE: return "unavailable";
	default: return "unknown";
	}
}

/* NATS subject matching: does pattern (tokens, '*' = one token, '>' =
 * the rest) match subject? */
static bool subject_matches(const char *pattern, const char *subject)
{
	const char *p = pattern, *q = subject;
	for (;;) {
		size_t pl = strcspn(p, "."), ql = strcspn(q, ".");
		if (pl == 1 && p[0] == '>')
			return ql > 0;
		if (!(pl == 1 && p[0] == '*') && (pl != ql || memcmp(p, q, pl) != 0))
			return false;
		if (!p[pl] || !q[ql])
			return !p[pl] && !q[ql];
		p += pl + 1;
		q += ql + 1;
	}
}

/* Say what in an existing stream's configuration defeats the agent's
 * guarantees (the agent does not change a stream it did not create). */
static void js_check_config(struct ca_bus *bus, const jsStreamConfig *c)
{
	int64_t want = bus->cfg->nats.jetstream.duplicate_window_ms * 1000000;
	if (c->Duplicates <= 0)
		ca_log(CA_LOG_WARN, COMPONENT, "JetStream stream has no duplicate window: messages sent again "
		       "after a retry or a failover are stored twice", "stream", bus->js_stream, NULL);
	else if (c->Duplicates < want)
		ca_log(CA_LOG_WARN, COMPONENT, "JetStream stream's duplicate window is shorter than "
		       "nats.jetstream.duplicate_window: a re-send later than it is stored twice",
		       "stream", bus->js_stream, NULL);
	if (c->Storage == js_MemoryStorage)
		ca_log(CA_LOG_WARN, COMPONENT, "JetStream stream keeps its messages in memory: a server restart "
		       "loses what it stored", "stream", bus->js_stream, NULL);
	for (size_t i = 0; i < bus->js_nsubjects; i++) {
		bool covered = false;
		for (int j = 0; !covered && c->Subjects && j < c->SubjectsLen; j++)
			covered = c->Subjects[j] && subject_matches(c->Subjects[j], bus->js_subjects[i]);
		if (!covered)
			ca_log(CA_LOG_WARN, COMPONENT, "JetStream stream does not hold one of the agent's subjects: "
			       "durable publishes to it are retried until it does", "stream", bus->js_stream,
			       "subject", bus->js_subjects[i], NULL);
	}
}

/* Look the stream up, and create it when missing and allowed. again: a
 * periodic look while it was not usable, logged only when the state
 * changed (the first look on a connection always says). Publisher
 * thread, plock not held: the requests wait up to ack_timeout. */
static void js_check_stream(struct ca_bus *bus, bool again)
{
	int before = atomic_load(&bus->js_state);
	const struct ca_config *cfg = bus->cfg;
	jsStreamInfo *si = NULL;
	jsErrCode code = 0;
	jsOptions o;
	char text[LAST_ERROR_LEN];
	jsOptions_Init(&o);
	o.Wait = cfg->nats.jetstream.ack_timeout_ms;
	natsStatus st = js_GetStreamInfo(&si, bus->js, bus->js_stream, &o, &code);
	if (st == NATS_OK) {
		if (si->Config)
			js_check_config(bus, si->Config);
		jsStreamInfo_Destroy(si);
		atomic_store(&bus->js_state, JS_OK);
		ca_log(CA_LOG_INFO, COMPONENT, "publishing through JetStream", "stream", bus->js_stream, NULL);
		return;
	}
	bool missing = st == NATS_NOT_FOUND || code == JSStreamNotFoundErr;
	if (missing && cfg->nats.jetstream.create_stream) {
		jsStreamConfig sc;
		jsStreamConfig_Init(&sc);
		sc.Name = bus->js_stream;
		sc.Subjects = (const char **)bus->js_subjects;
		sc.SubjectsLen = (int)bus->js_nsubjects;
		sc.Storage = js_FileStorage;
		sc.Duplicates = cfg->nats.jetstream.duplicate_window_ms * 1000000;
		code = 0;
		st = js_AddStream(&si, bus->js, &sc, &o, &code);
		if (st == NATS_OK) {
			jsStreamInfo_Destroy(si);
			atomic_store(&bus->js_state, JS_OK);
			ca_log(CA_LOG_INFO, COMPONENT, "JetStream stream created", "stream", bus->js_stream, NULL);
			return;
		}
		const char *why = nats_GetLastError(NULL);
		ca_set_err(text, sizeof text, "cannot create JetStream stream %s: %s", bus->js_stream,
		         st == NATS_NO_RESPONDERS ? "JetStream is not enabled on the server (no responders)"
		                                  : (why && *why ? why : natsStatus_GetText(st)));
		atomic_store(&bus->js_state, JS_UNAVAILABLE);
	} else if (missing) {
		ca_set_err(text, sizeof text, "JetStream stream %s not found: create it (docs/DEPLOY.md) or set "
		         "nats.jetstream.create_stream", bus->js_stream);
		atomic_store(&bus->js_state, JS_MISSING);
	} else {
		const char *why = nats_GetLastError(NULL);
		ca_set_err(text, sizeof text, "cannot look up JetStream stream %s: %s", bus->js_stream,
		         st == NATS_NO_RESPONDERS ? "JetStream is not enabled on the server or for the account "
		                                    "(no responders)"
		                                  : (why && *why ? why : natsStatus_GetText(st)));
		atomic_store(&bus->js_state, st == NATS_TIMEOUT ? JS_UNKNOWN : JS_UNAVAILABLE);
	}
	record_js_error(bus, text);
	if (!again || atomic_load(&bus->js_state) != before)
		ca_log(CA_LOG_ERROR, COMPONENT, text, "note", "publishes are kept and retried",
		       NULL);
}

/* Send m once through JetStream and wait for the stream's acknowledgement
 * (at most ack_timeout). nats.c gets a natsMsg of its own, created here and
 * destroyed normally: a synchronous JetStream publish keeps no reference
 * once it returns, and the free-callback shortcut of destroy_published()
 * is never used on this path. Publisher thread, plock not held. */
static natsStatus js_send(struct ca_bus *bus, const struct out_msg *m, int64_t wait_ms,
                          jsErrCode *codep, char *why, size_t whylen)
{
	natsMsg *msg = NULL;
	jsPubAck *pa = NULL;
	jsErrCode code = 0;
	jsPubOptions o;
	jsPubOptions_Init(&o);
	o.MaxWait = wait_ms;
	o.ExpectStream = bus->js_stream;
	natsStatus st = natsMsg_Create(&msg, m->subject, NULL, m->data, (int)m->len);
	if (st == NATS_OK && m->content_type)
		st = natsMsgHeader_Set(msg, "Content-Type", m->content_type);
	if (st == NATS_OK && m->msg_id)
		st = natsMsgHeader_Set(msg, "Nats-Msg-Id", m->msg_id);
	if (st == NATS_OK)
		st = js_PublishMsg(&pa, bus->js, msg, &o, &code);
	natsMsg_Destroy(msg);
	if (st == NATS_OK) {
		if (pa && pa->Duplicate)
			atomic_fetch_add(&bus->js_duplicates, 1);
		jsPubAck_Destroy(pa);
		return NATS_OK;
	}
	const char *detail = nats_GetLastError(NULL);
	switch (st) {
	case NATS_NO_RESPONDERS:
		ca_set_err(why, whylen, "JetStream stream %s not found for %s (no responders)", bus->js_stream,
		         m->subject);
		break;
	case NATS_TIMEOUT:
		ca_set_err(why, whylen, "no JetStream acknowledgement within %lld ms",
		         (long long)wait_ms);
		break;
	default:
		ca_set_err(why, whylen, "JetStream publish to %s failed: %s", m->subject,
		         detail && *detail ? detail : natsStatus_GetText(st));
		break;
	}
	if (code == JSStreamNotFoundErr)
		st = NATS_NO_RESPONDERS; /* same meaning: nothing stores it */
	*codep = code;
	return st;
}

/* Whether the stream's error is about this message, not about the stream
 * or the agent's configuration: sent again, the same bytes get the same
 * answer, so a retry would hold every younger message behind it for ever.
 * A stream that is missing, another stream capturing the subject
 * (JSStreamNotMatchErr), a sealed or full stream are conditions someone
 * can fix: those stay retried. */
static bool js_refuses_message(jsErrCode code)
{
	return code == JSStreamMessageExceedsMaximumErr || /* over the stream's max_msg_size */
	       code == JS_ERR_HEADER_EXCEEDS_MAXIMUM;
}

/* At most one log line per JS_LOG_EVERY_MS of a kind (its last_ms and
 * unlogged count): true when this occurrence may log; *skipped gets how
 * many since the last line were not logged. */
static bool js_log_due(int64_t *last_ms, uint64_t *unlogged, int64_t now, uint64_t *skipped)
{
	*skipped = *unlogged;
	if (*last_ms != 0 && now - *last_ms < JS_LOG_EVERY_MS) {
		(*unlogged)++;
		return false;
	}
	*last_ms = now;
	*unlogged = 0;
	return true;
}

/* Drop the head, refused for good (plock held on entry and exit; released
 * to log). Counted lost; at most one log line per JS_LOG_EVERY_MS, which
 * says how many more were refused since the last. */
static void js_drop_refused(struct ca_bus *bus, struct out_msg *m, int64_t now, const char *why)
{
	bus->jhead = m->next;
	if (!bus->jhead)
		bus->jtail = NULL;
	bus->jbytes -= m->size;
	bus->jcount--;
	atomic_fetch_add(&bus->lost, 1);
	atomic_fetch_add(&bus->publish_errors, 1);
	uint64_t unlogged;
	bool log_now = js_log_due(&bus->js_refused_log_ms, &bus->js_refused_unlogged, now, &unlogged);
	bool room = room_again(bus);
	pthread_mutex_unlock(&bus->plock);
	if (room)
		enqueue_simple(bus, EV_ROOM);
	record_js_error(bus, why);
	if (log_now) {
		char n[32];
		snprintf(n, sizeof n, "%llu", (unsigned long long)unlogged);
		ca_log(CA_LOG_ERROR, COMPONENT, "JetStream message refused for good; dropped",
		       "error", why, "subject", m->subject, "refused_since_last_line", n, NULL);
	}
	free(m);
	pthread_mutex_lock(&bus->plock);
}

/* Try the oldest unacknowledged message once (plock held on entry and
 * exit; released while waiting for the server). */
static void js_try_head(struct ca_bus *bus, int64_t now)
{
	struct out_msg *m = bus->jhead;
	int64_t wait = bus->cfg->nats.jetstream.ack_timeout_ms;
	if (bus->pstop && bus->stop_deadline_ms - now < wait)
		wait = bus->stop_deadline_ms - now > 1 ? bus->stop_deadline_ms - now : 1;
	m->inflight = true;
	pthread_mutex_unlock(&bus->plock);
	char why[LAST_ERROR_LEN] = "";
	jsErrCode code = 0;
	natsStatus st = js_send(bus, m, wait, &code, why, sizeof why);
	int64_t after = ca_now_monotonic_ms();
	atomic_store(&bus->handoff_ms, after);
	pthread_mutex_lock(&bus->plock);
	m->inflight = false;
	if (st == NATS_OK) {
		/* Only the publisher removes an in-flight message: still the head. */
		bus->jhead = m->next;
		if (!bus->jhead)
			bus->jtail = NULL;
		bus->jbytes -= m->size;
		bus->jcount--;
		bus->js_backoff_ms = 0;
		bus->js_next_try_ms = 0;
		atomic_fetch_add(&bus->js_acked, 1);
		atomic_fetch_add(&bus->published, 1);
		atomic_fetch_add(&bus->published_bytes, m->len);
		int was = atomic_exchange(&bus->js_state, JS_OK);
		uint64_t failed = bus->js_fail_unlogged;
		bus->js_fail_unlogged = 0;
		bool room = room_again(bus);
		pthread_mutex_unlock(&bus->plock);
		if (room)
			enqueue_simple(bus, EV_ROOM);
		if (was != JS_OK || failed) {
			char n[32];
			snprintf(n, sizeof n, "%llu", (unsigned long long)failed);
			ca_log(CA_LOG_INFO, COMPONENT, "JetStream publishes acknowledged again", "stream",
			       bus->js_stream, "failed_attempts_not_logged", n, NULL);
		}
		free(m);
		pthread_mutex_lock(&bus->plock);
		return;
	}
	atomic_fetch_add(&bus->js_ack_failures, 1);
	if (st == NATS_MAX_PAYLOAD || st == NATS_INVALID_SUBJECT || st == NATS_INVALID_ARG) {
		/* No retry can succeed: lost for good, and the next goes. */
		js_drop_refused(bus, m, after, why);
		return;
	}
	if (st == NATS_ERR && js_refuses_message(code)) {
		/* The stream answered, so it is there and working: the next
		 * message goes at once. */
		bus->js_backoff_ms = 0;
		bus->js_next_try_ms = 0;
		atomic_store(&bus->js_state, JS_OK);
		js_drop_refused(bus, m, after, why);
		return;
	}
	atomic_fetch_add(&bus->js_retries, 1);
	int64_t start = bus->cfg->nats.jetstream.retry_backoff_ms;
	int64_t max = bus->cfg->nats.jetstream.retry_backoff_max_ms;
	bus->js_backoff_ms = bus->js_backoff_ms ? bus->js_backoff_ms * 2 : start;
	if (bus->js_backoff_ms > max)
		bus->js_backoff_ms = max;
	bus->js_next_try_ms = after + bus->js_backoff_ms;
	if (st == NATS_ERR)
		atomic_store(&bus->js_state, JS_UNAVAILABLE); /* the stream refuses it: say so on /health/ready */
	if (st == NATS_NO_RESPONDERS) {
		atomic_store(&bus->js_state, JS_MISSING);
		/* With create_stream, look again (and create) before the retry:
		 * the stream may have been deleted while the agent ran. */
		if (bus->cfg->nats.jetstream.create_stream)
			bus->js_checked = false;
	}
	uint64_t unlogged;
	bool log_now = js_log_due(&bus->js_fail_log_ms, &bus->js_fail_unlogged, after, &unlogged);
	size_t pending = bus->jcount;
	pthread_mutex_unlock(&bus->plock);
	record_js_error(bus, why);
	if (log_now) {
		char n[32], p[32], b[32];
		snprintf(n, sizeof n, "%llu", (unsigned long long)unlogged);
		snprintf(p, sizeof p, "%zu", pending);
		snprintf(b, sizeof b, "%lld", (long long)bus->js_backoff_ms);
		ca_log(CA_LOG_WARN, COMPONENT, "JetStream publish not acknowledged; retrying in order", "error", why,
		       "pending", p, "retry_in_ms", b, "failures_since_last_line", n, NULL);
	}
	pthread_mutex_lock(&bus->plock);
}

/* ---------------------------------------------------- the publisher thread */

/* Core messages are handed to nats.c in batches (it copies them into its
 * buffer); while some were handed but not confirmed, a PING/PONG at most
 * every CONFIRM_FLUSH_MS confirms them. JetStream messages go one at a
 * time, oldest first, each waiting for its acknowledgement: with one in
 * flight, a retry can never land behind a younger message, so the stream
 * keeps the agent's order across timeouts, reconnects and a missing stream
 * (docs/ARCHITECTURE.md, "Publishing"). */
static void *publisher_main(void *arg)
{
	struct ca_bus *bus = arg;
	pthread_mutex_lock(&bus->plock);
	for (;;) {
		int64_t now = ca_now_monotonic_ms();
		bool up = atomic_load(&bus->connected);
		if (bus->pstop && now >= bus->stop_deadline_ms)
			break;
		/* While the stream is not usable and nothing durable is pending,
		 * no publish would notice it appear: look again every
		 * retry_backoff_max so /health/ready follows. With messages
		 * pending, their retries are the look (and a lookup that finds
		 * a stream refusing them would only flip readiness). */
		bool recheck = bus->js_bound && up && !bus->jhead && !bus->pstop &&
		               atomic_load(&bus->js_state) != JS_OK;
		bool first = !bus->js_checked ||
		             bus->js_checked_epoch != atomic_load(&bus->connect_epoch);
		if (bus->js_bound && up && (first || (recheck && now >= bus->js_recheck_ms))) {
			bus->js_checked = true;
			bus->js_checked_epoch = atomic_load(&bus->connect_epoch);
			bus->js_recheck_ms = now + bus->cfg->nats.jetstream.retry_backoff_max_ms;
			bus->pbusy = true;
			pthread_mutex_unlock(&bus->plock);
			js_check_stream(bus, !first);
			pthread_mutex_lock(&bus->plock);
			continue;
		}
		bool js_due = bus->jhead && bus->js_bound && up && now >= bus->js_next_try_ms;
		bool confirm_due = bus->core_unconfirmed && up && now - bus->last_confirm_ms >= CONFIRM_FLUSH_MS;
		if (!bus->phead && !js_due && !confirm_due) {
			/* Stopping: what could be sent was sent; a message waiting
			 * for its retry (or for the connection) stays unsent. */
			if (bus->pstop)
				break;
			int64_t wait = -1;
			if (bus->core_unconfirmed)
				wait = up ? bus->last_confirm_ms + CONFIRM_FLUSH_MS - now : JS_OFFLINE_POLL_MS;
			if (bus->jhead && bus->js_bound) {
				int64_t w = up ? bus->js_next_try_ms - now : JS_OFFLINE_POLL_MS;
				if (wait < 0 || w < wait)
					wait = w;
			}
			if (recheck && (wait < 0 || bus->js_recheck_ms - now < wait))
				wait = bus->js_recheck_ms - now;
			bus->pbusy = false;
			atomic_store(&bus->handoff_ms, now);
			pthread_cond_broadcast(&bus->pidle);
			if (wait < 0) {
				pthread_cond_wait(&bus->pwork, &bus->plock);
			} else {
				struct timespec until = realtime_in(wait);
				pthread_cond_timedwait(&bus->pwork, &bus->plock, &until);
			}
			continue;
		}
		bus->pbusy = true;
		if (bus->phead) {
			struct out_msg *batch = bus->phead;
			bus->phead = bus->ptail = NULL;
			if (!bus->core_unconfirmed)
				bus->core_unconfirmed = batch->seq;
			pthread_mutex_unlock(&bus->plock);
			while (batch) {
				struct out_msg *next = batch->next;
				publish_one(bus, batch);
				atomic_store(&bus->handoff_ms, ca_now_monotonic_ms());
				pthread_mutex_lock(&bus->plock);
				bus->pbytes -= batch->size;
				pthread_mutex_unlock(&bus->plock);
				free(batch);
				batch = next;
			}
			int buffered = natsConnection_Buffered(bus->conn);
			atomic_store(&bus->buffered, buffered > 0 ? (size_t)buffered : 0);
			pthread_mutex_lock(&bus->plock);
			if (room_again(bus)) {
				pthread_mutex_unlock(&bus->plock);
				enqueue_simple(bus, EV_ROOM);
				pthread_mutex_lock(&bus->plock);
			}
			continue;
		}
		if (js_due) {
			js_try_head(bus, now);
			continue;
		}
		/* confirm_due: everything handed so far is covered by this PING. */
		int64_t timeout = bus->cfg->nats.flush_timeout_ms > 0 ? bus->cfg->nats.flush_timeout_ms : 2000;
		bus->last_confirm_ms = now;
		pthread_mutex_unlock(&bus->plock);
		natsStatus st = natsConnection_FlushTimeout(bus->conn, timeout);
		pthread_mutex_lock(&bus->plock);
		if (st == NATS_OK)
			bus->core_unconfirmed = 0;
	}
	bus->pbusy = false;
	pthread_cond_broadcast(&bus->pidle);
	pthread_mutex_unlock(&bus->plock);
	return NULL;
}

static const char *put_out(char **pos, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s);
	char *dst = *pos;
	memcpy(dst, s, n + 1);
	*pos += n + 1;
	return dst;
}

/* Make room for size more bytes of JetStream messages by dropping the
 * oldest that are not in flight (plock held). The dropped ones are
 * returned in *dropped (a list) for the caller to free unlocked. */
static bool js_make_room(struct ca_bus *bus, size_t size, struct out_msg **dropped, uint64_t *ndropped)
{
	while (bus->jhead && bus->jbytes + size > bus->jmax) {
		struct out_msg **link = bus->jhead->inflight ? &bus->jhead->next : &bus->jhead;
		struct out_msg *victim = *link;
		if (!victim)
			break;
		*link = victim->next;
		if (bus->jtail == victim)
			bus->jtail = link == &bus->jhead ? NULL : bus->jhead;
		bus->jbytes -= victim->size;
		bus->jcount--;
		victim->next = *dropped;
		*dropped = victim;
		(*ndropped)++;
	}
	return bus->jbytes + size <= bus->jmax;
}

static void log_js_drops(struct ca_bus *bus, uint64_t n)
{
	int64_t now = ca_now_monotonic_ms();
	bus->js_drop_unlogged += n;
	if (!bus->js_drop_unlogged || (bus->js_drop_log_ms && now - bus->js_drop_log_ms < JS_LOG_EVERY_MS))
		return;
	char count[32], cap[32];
	snprintf(count, sizeof count, "%llu", (unsigned long long)bus->js_drop_unlogged);
	snprintf(cap, sizeof cap, "%zu", bus->jmax);
	ca_log(CA_LOG_WARN, COMPONENT, "JetStream messages not acknowledged in time dropped, oldest first "
	       "(nats.jetstream.max_pending_bytes is full)", "dropped", count, "max_pending_bytes", cap, NULL);
	bus->js_drop_log_ms = now;
	bus->js_drop_unlogged = 0;
}

static enum ca_err enqueue_out(struct ca_bus *bus, const char *subject, const char *reply,
                               const char *content_type, const char *msg_id, const void *data, size_t len,
                               bool durable)
{
	enum ca_err rc = CA_EINVAL;
	size_t offline_add = 0;
	if (!nonempty(subject) || (len > 0 && !data) || !subject_ok(subject) ||
	    (reply && *reply && !subject_ok(reply)))
		goto out;
	if (bus->closed) {
		rc = CA_EIO;
		goto out;
	}
	if (!bus->conn || !bus->pthread_started) {
		rc = CA_EAGAIN;
		goto out;
	}
	/* The server counts headers against max_payload; this is their exact
	 * encoded size ("NATS/1.0\r\n", "Key: value\r\n" each, "\r\n"). */
	size_t hdr = 0;
	if (content_type || msg_id || durable)
		hdr = 12 + (content_type ? 16 + strlen(content_type) : 0) +
		      (msg_id ? 15 + strlen(msg_id) : 0) + (durable ? JS_HEADER_RESERVE : 0);
	size_t mp = atomic_load(&bus->max_payload);
	if (len > (size_t)INT32_MAX / 2 || hdr > (size_t)INT32_MAX / 2 || (mp > 0 && len + hdr > mp)) {
		rc = CA_ETOOBIG;
		goto out;
	}
	size_t ls = strlen(subject), lr = reply ? strlen(reply) : 0;
	if (!durable && !atomic_load(&bus->connected)) {
		/* nats.c only refuses once its reconnect buffer is already
		 * over the limit; refuse before that so the limit holds. */
		uint64_t epoch = atomic_load(&bus->connect_epoch);
		if (epoch != bus->offline_epoch) {
			bus->offline_epoch = epoch;
			bus->offline_bytes = 0;
		}
		size_t cap = reconnect_cap(bus->cfg);
		size_t wire = 32 + ls + lr + hdr + len;
		if (wire > cap || bus->offline_bytes > cap - wire) {
			rc = CA_EAGAIN;
			goto out;
		}
		offline_add = wire;
	}
	size_t size = sizeof(struct out_msg) + ls + 1 + (reply ? lr + 1 : 0) +
	              (content_type ? strlen(content_type) + 1 : 0) + (msg_id ? strlen(msg_id) + 1 : 0) + len + 1;
	if (durable && size > bus->jmax) {
		/* max_pending_bytes can never hold it: waiting would not help
		 * (ca_bus_max_payload() tells callers the limit). */
		rc = CA_ETOOBIG;
		goto out;
	}
	pthread_mutex_lock(&bus->plock);
	bool full =
	        !durable && bus->pbytes > 0 && (size > bus->pmax || bus->pbytes > bus->pmax - size);
	pthread_mutex_unlock(&bus->plock);
	if (full) {
		/* NATS is slower than we publish (or stalled): the caller keeps
		 * the message and tries again when the bus has room. */
		atomic_store(&bus->want_room, true);
		rc = CA_EAGAIN;
		goto out;
	}
	rc = CA_ENOMEM;
	struct out_msg *m = malloc(size);
	if (!m)
		goto out;
	char *pos = (char *)(m + 1);
	m->next = NULL;
	m->size = size;
	m->subject = put_out(&pos, subject);
	m->reply = reply && *reply ? put_out(&pos, reply) : NULL;
	m->content_type = put_out(&pos, content_type);
	m->msg_id = put_out(&pos, msg_id);
	m->data = pos;
	if (len)
		memcpy(pos, data, len);
	pos[len] = '\0';
	m->len = len;
	m->inflight = false;
	/* The thread is woken once per loop iteration (a 0 ms timer runs after
	 * the iteration's I/O), not per message: a watch read carries many
	 * events, and a wake per event cost a context switch each. A large
	 * backlog wakes it at once. */
	struct out_msg *dropped = NULL;
	uint64_t ndropped = 0;
	bool now;
	pthread_mutex_lock(&bus->plock);
	if (durable && bus->jbytes + size > bus->jmax) {
		/* While the stream acknowledges, a full buffer means a burst
		 * faster than the stream: push back (the caller keeps the
		 * message, the watcher pauses) and lose nothing. While
		 * publishes fail, keep the newest unless told to push back. */
		int state = atomic_load(&bus->js_state);
		bool failing = state == JS_MISSING || state == JS_UNAVAILABLE || bus->js_backoff_ms > 0 ||
		               !atomic_load(&bus->connected);
		if (!failing || !bus->js_drop_oldest || !js_make_room(bus, size, &dropped, &ndropped)) {
			atomic_store(&bus->want_room, true);
			pthread_mutex_unlock(&bus->plock);
			free(m);
			rc = CA_EAGAIN;
			goto out_dropped;
		}
	}
	m->seq = ++bus->pub_seq;
	if (durable) {
		if (bus->jtail)
			bus->jtail->next = m;
		else
			bus->jhead = m;
		bus->jtail = m;
		bus->jbytes += size;
		bus->jcount++;
		now = !bus->pbusy;
	} else {
		if (bus->ptail)
			bus->ptail->next = m;
		else
			bus->phead = m;
		bus->ptail = m;
		bus->pbytes += size;
		now = bus->pbytes >= PUB_WAKE_BYTES && !bus->pbusy;
	}
	if (now)
		pthread_cond_signal(&bus->pwork);
	pthread_mutex_unlock(&bus->plock);
	if (!now && !bus->pkick_armed) {
		bus->pkick_armed = true;
		ca_loop_timer_start(bus->pkick, 0, 0);
	}
	bus->offline_bytes += offline_add;
	rc = CA_OK;
out_dropped:
	if (ndropped) {
		atomic_fetch_add(&bus->js_dropped, ndropped);
		atomic_fetch_add(&bus->lost, ndropped);
		while (dropped) {
			struct out_msg *next = dropped->next;
			free(dropped);
			dropped = next;
		}
	}
	if (durable)
		log_js_drops(bus, ndropped);
out:
	if (rc != CA_OK)
		atomic_fetch_add(&bus->publish_errors, 1);
	return rc;
}

enum ca_err ca_bus_publish_request(struct ca_bus *bus, const char *subject, const char *reply,
                                   const char *content_type, const char *msg_id,
                                   const void *data, size_t len)
{
	return enqueue_out(bus, subject, reply, content_type, msg_id, data, len, false);
}

enum ca_err ca_bus_publish_durable(struct ca_bus *bus, const char *subject, const char *content_type,
                                   const char *msg_id, const void *data, size_t len)
{
	bool js = bus->js_enabled;
	if (js && !bus->js_bound)
		return CA_EAGAIN; /* no stream yet: ca_bus_jetstream_bind() comes with the cluster ID */
	return enqueue_out(bus, subject, NULL, content_type, msg_id, data, len, js);
}

uint64_t ca_bus_published_seq(const struct ca_bus *bus)
{
	struct ca_bus *b = (struct ca_bus *)bus;
	pthread_mutex_lock(&b->plock);
	uint64_t v = b->pub_seq;
	pthread_mutex_unlock(&b->plock);
	return v;
}

uint64_t ca_bus_confirmed_seq(const struct ca_bus *bus)
{
	struct ca_bus *b = (struct ca_bus *)bus;
	pthread_mutex_lock(&b->plock);
	uint64_t v = confirmed_locked(b);
	pthread_mutex_unlock(&b->plock);
	return v;
}

static bool valid_stream_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

enum ca_err ca_bus_jetstream_bind(struct ca_bus *bus, const char *cluster_id, const char *const *subjects,
                                  size_t nsubjects)
{
	if (!bus->js_enabled)
		return CA_OK;
	if (bus->js_bound || !cluster_id || !*cluster_id || nsubjects == 0 || bus->closed)
		return CA_EINVAL;
	const char *name = bus->cfg->nats.jetstream.stream_name;
	if (name && *name) {
		ca_strlcpy(bus->js_stream, name, sizeof bus->js_stream);
	} else {
		int n = snprintf(bus->js_stream, sizeof bus->js_stream, "AGENT_%s", cluster_id);
		if (n < 0 || (size_t)n >= sizeof bus->js_stream)
			return CA_EINVAL;
		for (char *p = bus->js_stream; *p; p++)
			if (!valid_stream_char(*p))
				*p = '_';
	}
	char **copy = calloc(nsubjects, sizeof *copy);
	if (!copy)
		return CA_ENOMEM;
	for (size_t i = 0; i < nsubjects; i++) {
		copy[i] = strdup(subjects[i]);
		if (!copy[i]) {
			for (size_t j = 0; j < i; j++)
				free(copy[j]);
			free(copy);
			return CA_ENOMEM;
		}
	}
	pthread_mutex_lock(&bus->plock);
	bus->js_subjects = copy;
	bus->js_nsubjects = nsubjects;
	bus->js_bound = true;
	bus->js_checked = false;
	pthread_cond_signal(&bus->pwork);
	pthread_mutex_unlock(&bus->plock);
	return CA_OK;
}

bool ca_bus_delivering(const struct ca_bus *bus, int64_t now_ms, int64_t stall_ms, size_t *waiting)
{
	struct ca_bus *b = (struct ca_bus *)bus;
	pthread_mutex_lock(&b->plock);
	size_t bytes = b->pbytes;
	pthread_mutex_unlock(&b->plock);
	if (waiting)
		*waiting = bytes;
	return bytes == 0 || now_ms - atomic_load(&b->handoff_ms) <= stall_ms;
}

enum ca_err ca_bus_publish(struct ca_bus *bus, const char *subject, const char *content_type,
                           const char *msg_id, const void *data, size_t len)
{
	return ca_bus_publish_request(bus, subject, NULL, content_type, msg_id, data, len);
}

/* Wait (at most until the monotonic deadline) until the publisher thread
 * has handed every queued message to nats.c. */
static bool wait_publisher_idle(struct ca_bus *bus, int64_t deadline_ms)
{
	bool idle;
	pthread_mutex_lock(&bus->plock);
	if (bus->phead && !bus->pbusy)
		pthread_cond_signal(&bus->pwork); /* the loop's wake timer cannot run while we wait */
	while (!(idle = !bus->phead && !bus->pbusy) && bus->pthread_started &&
	       ca_now_monotonic_ms() < deadline_ms) {
		struct timespec step = realtime_in(20);
		pthread_cond_timedwait(&bus->pidle, &bus->plock, &step);
	}
	pthread_mutex_unlock(&bus->plock);
	return idle;
}

enum ca_err ca_bus_flush(struct ca_bus *bus, int64_t timeout_ms)
{
	if (bus->closed)
		return CA_EIO;
	if (!bus->conn || !atomic_load(&bus->connected))
		return CA_EAGAIN;
	int64_t start = ca_now_monotonic_ms();
	if (timeout_ms <= 0)
		timeout_ms = 1;
	if (!wait_publisher_idle(bus, start + timeout_ms))
		return CA_ETIMEDOUT;
	timeout_ms -= ca_now_monotonic_ms() - start;
	natsStatus st = natsConnection_FlushTimeout(bus->conn, timeout_ms > 0 ? timeout_ms : 1);
	if (st == NATS_CONNECTION_DISCONNECTED || st == NATS_CONNECTION_CLOSED)
		return CA_EAGAIN;
	return nats_to_err(st);
}

void ca_bus_budget(const struct ca_config *cfg, size_t inbound_bytes, size_t inbound_msgs, struct ca_budget *b)
{
	uint64_t reconnect = reconnect_cap(cfg);
	ca_budget_add(b, "nats: reconnect buffer (messages kept while disconnected)",
	              "nats.reconnect_buffer_bytes", reconnect);
	uint64_t queue = cfg->nats.publish_buffer_bytes > 0 ? (uint64_t)cfg->nats.publish_buffer_bytes
	                                                    : (uint64_t)4 << 20;
	ca_budget_add(b, "nats: messages waiting for the publisher thread", "nats.publish_buffer_bytes",
	              queue);
	if (cfg->nats.jetstream.enabled)
		ca_budget_add(b, "nats: JetStream messages published and not yet acknowledged",
		              "nats.jetstream.max_pending_bytes", (uint64_t)cfg->nats.jetstream.max_pending_bytes);
	/* nats.c's 32 KiB write buffer and read buffer, TLS state. */
	ca_budget_add(b, "nats: connection buffers and TLS state", "", (uint64_t)256 << 10);
	/* Per message: nats.c's natsMsg with subject and reply (about 256
	 * bytes) and our hand-off entry. */
	ca_budget_add(b, "nats: incoming commands (client pending + hand-off queue)", "exec.max_command_bytes",
	              2 * (uint64_t)inbound_bytes + (uint64_t)inbound_msgs * (256 + sizeof(struct event)));
}

bool ca_bus_connected(const struct ca_bus *bus)
{
	return bus && atomic_load(&((struct ca_bus *)bus)->connected);
}

size_t ca_bus_max_payload(const struct ca_bus *bus)
{
	size_t mp = bus ? atomic_load(&((struct ca_bus *)bus)->max_payload) : 0;
	if (!bus || !bus->js_enabled)
		return mp;
	/* What callers may fill: a JetStream publish adds a header, and the
	 * message must fit max_pending_bytes whole (it waits there until
	 * acknowledged), which may be smaller than the server's limit. */
	if (mp > JS_HEADER_RESERVE)
		mp -= JS_HEADER_RESERVE;
	size_t pending = bus->jmax > JS_MSG_OVERHEAD ? bus->jmax - JS_MSG_OVERHEAD : 0;
	return mp && mp < pending ? mp : pending;
}

uint64_t ca_bus_received_dropped(const struct ca_bus *bus)
{
	uint64_t dropped = atomic_load(&((struct ca_bus *)bus)->dropped);
	for (size_t i = 0; i < bus->nsubs; i++) {
		int64_t n = 0;
		if (bus->subs[i]->ns && !bus->closed &&
		    natsSubscription_GetDropped(bus->subs[i]->ns, &n) == NATS_OK && n > 0)
			dropped += (uint64_t)n;
	}
	return dropped;
}

uint64_t ca_bus_reconnects(const struct ca_bus *bus)
{
	return bus ? atomic_load(&((struct ca_bus *)bus)->reconnects) : 0;
}

uint64_t ca_bus_connection_epoch(const struct ca_bus *bus)
{
	return bus ? atomic_load(&((struct ca_bus *)bus)->connect_epoch) : 0;
}

#define LOAD(field) ((double)atomic_load(&((struct ca_bus *)bus)->field))

void ca_bus_render_metrics(const struct ca_bus *bus, struct ca_prom *p)
{
	ca_prom_single(p, "agent_connected", "gauge", "1 when connected to NATS.",
	               ca_bus_connected(bus) ? 1 : 0);
	ca_prom_single(p, "agent_nats_reconnects_total", "counter", "Successful NATS reconnects.",
	               LOAD(reconnects));
	ca_prom_single(p, "agent_nats_disconnects_total", "counter", "NATS connections lost.",
	               LOAD(disconnects));
	ca_prom_single(p, "agent_nats_published_messages_total", "counter",
	               "Messages accepted for publishing to NATS.", LOAD(published));
	ca_prom_single(p, "agent_nats_published_bytes_total", "counter",
	               "Payload bytes accepted for publishing to NATS.", LOAD(published_bytes));
	ca_prom_single(p, "agent_nats_publish_errors_total", "counter",
	               "Publishes refused (too big, buffer full, closed).", LOAD(publish_errors));
	ca_prom_single(p, "agent_nats_received_messages_total", "counter",
	               "Messages received from NATS subscriptions.", LOAD(received));
	ca_prom_single(p, "agent_nats_received_bytes_total", "counter",
	               "Payload bytes received from NATS subscriptions.", LOAD(received_bytes));
	ca_prom_single(p, "agent_nats_dropped_messages_total", "counter",
	               "Incoming messages dropped (a subscription's pending limit or the hand-off "
	               "queue to the loop was full).", (double)ca_bus_received_dropped(bus));
	/* Read from what the publisher thread saw: a call into nats.c here
	 * could wait on a connection lock held by a blocked write. */
	ca_prom_single(p, "agent_nats_buffered_bytes", "gauge",
	               "Bytes waiting in the NATS client's outgoing or reconnect buffer.",
	               (double)atomic_load(&((struct ca_bus *)bus)->buffered));
	size_t waiting = 0;
	ca_bus_delivering(bus, ca_now_monotonic_ms(), DELIVERY_STALL_MS, &waiting);
	ca_prom_single(p, "agent_nats_publish_queue_bytes", "gauge",
	               "Bytes of messages waiting for the publisher thread.", (double)waiting);
	ca_prom_single(p, "agent_nats_publish_lost_total", "counter",
	               "Messages lost after they were accepted: refused by the NATS client (connection "
	               "closed), or JetStream messages dropped unacknowledged.",
	               LOAD(lost));
	struct ca_bus *b = (struct ca_bus *)bus;
	pthread_mutex_lock(&b->plock);
	size_t pending = b->jcount, pending_bytes = b->jbytes;
	uint64_t confirmed = confirmed_locked(b), seq = b->pub_seq;
	pthread_mutex_unlock(&b->plock);
	ca_prom_single(p, "agent_nats_published_seq", "gauge",
	               "Sequence number of the last message accepted for publishing.", (double)seq);
	ca_prom_single(p, "agent_nats_confirmed_seq", "gauge",
	               "Highest sequence number up to which every message is delivered (JetStream: "
	               "acknowledged; core NATS: flushed) or lost.", (double)confirmed);
	ca_prom_single(p, "agent_nats_js_acks_pending", "gauge",
	               "JetStream messages accepted and not yet acknowledged by the stream.", (double)pending);
	ca_prom_single(p, "agent_nats_js_pending_bytes", "gauge",
	               "Bytes of JetStream messages not yet acknowledged (nats.jetstream.max_pending_bytes).",
	               (double)pending_bytes);
	ca_prom_single(p, "agent_nats_js_acked_total", "counter",
	               "JetStream messages acknowledged by the stream.", LOAD(js_acked));
	ca_prom_single(p, "agent_nats_js_duplicates_total", "counter",
	               "JetStream acknowledgements saying the stream already held the message (a re-send).",
	               LOAD(js_duplicates));
	ca_prom_single(p, "agent_nats_js_ack_failures_total", "counter",
	               "JetStream publishes not acknowledged: timeout, no stream, JetStream error.",
	               LOAD(js_ack_failures));
	ca_prom_single(p, "agent_nats_js_retries_total", "counter",
	               "JetStream publishes scheduled again after a failure.", LOAD(js_retries));
	ca_prom_single(p, "agent_nats_js_dropped_total", "counter",
	               "JetStream messages dropped unacknowledged, oldest first, because "
	               "nats.jetstream.max_pending_bytes was full.", LOAD(js_dropped));
}

void ca_bus_health_json(const struct ca_bus *bus, struct ca_buf *out)
{
	struct ca_bus *b = (struct ca_bus *)bus;
	char url[URL_LEN], last[LAST_ERROR_LEN];
	pthread_mutex_lock(&b->qlock);
	ca_strlcpy(url, b->server_url, sizeof url);
	ca_strlcpy(last, b->last_error, sizeof last);
	pthread_mutex_unlock(&b->qlock);
	bool up = ca_bus_connected(bus);
	/* nats.c's reasons (refused, authorization violation, TLS) come with
	 * its disconnected and error callbacks (record_error): asking nats.c
	 * here could wait on a connection lock held by a blocked write. */
	ca_buf_printf(out, "{\"connected\":%s,\"server\":", up ? "true" : "false");
	if (up && url[0])
		ca_buf_append_json_string(out, url);
	else
		ca_buf_append_str(out, "null");
	ca_buf_append_str(out, ",\"servers\":[");
	for (int i = 0; i < b->nservers; i++) {
		char clean[URL_LEN];
		redact_url(b->servers[i], clean, sizeof clean);
		if (i)
			ca_buf_append_str(out, ",");
		ca_buf_append_json_string(out, clean);
	}
	size_t waiting = 0;
	bool delivering = ca_bus_delivering(bus, ca_now_monotonic_ms(), DELIVERY_STALL_MS, &waiting);
	ca_buf_printf(out, "],\"reconnects\":%llu,\"disconnects\":%llu,\"max_payload\":%zu,"
	              "\"delivering\":%s,\"publish_queue_bytes\":%zu,\"last_error\":",
	              (unsigned long long)atomic_load(&b->reconnects),
	              (unsigned long long)atomic_load(&b->disconnects), ca_bus_max_payload(bus),
	              delivering ? "true" : "false", waiting);
	if (last[0])
		ca_buf_append_json_string(out, last);
	else
		ca_buf_append_str(out, "null");
	char js_last[LAST_ERROR_LEN];
	pthread_mutex_lock(&b->qlock);
	ca_strlcpy(js_last, b->js_error, sizeof js_last);
	pthread_mutex_unlock(&b->qlock);
	pthread_mutex_lock(&b->plock);
	size_t pending = b->jcount, pending_bytes = b->jbytes;
	uint64_t confirmed = confirmed_locked(b), seq = b->pub_seq;
	bool bound = b->js_bound;
	pthread_mutex_unlock(&b->plock);
	ca_buf_printf(out, ",\"published_seq\":%llu,\"confirmed_seq\":%llu,\"jetstream\":{\"enabled\":%s",
	              (unsigned long long)seq, (unsigned long long)confirmed, b->js_enabled ? "true" : "false");
	if (b->js_enabled) {
		ca_buf_append_str(out, ",\"stream\":");
		if (bound)
			ca_buf_append_json_string(out, b->js_stream);
		else
			ca_buf_append_str(out, "null");
		ca_buf_printf(out, ",\"state\":\"%s\",\"pending\":%zu,\"pending_bytes\":%zu,"
		              "\"max_pending_bytes\":%zu,\"acked\":%llu,\"ack_failures\":%llu,\"retries\":%llu,"
		              "\"dropped\":%llu,\"last_error\":",
		              js_state_name(atomic_load(&b->js_state)), pending, pending_bytes, b->jmax,
		              (unsigned long long)atomic_load(&b->js_acked),
		              (unsigned long long)atomic_load(&b->js_ack_failures),
		              (unsigned long long)atomic_load(&b->js_retries),
		              (unsigned long long)atomic_load(&b->js_dropped));
		if (js_last[0])
			ca_buf_append_json_string(out, js_last);
		else
			ca_buf_append_str(out, "null");
	}
	ca_buf_append_str(out, "}}");
}

/* Wait until nats.c's closed callback and every subscription's on-complete
 * callback ran. false on timeout. */
static bool wait_nats_quiet(struct ca_bus *bus, int64_t deadline_ms)
{
	struct timespec deadline;
	deadline.tv_sec = deadline_ms / 1000;
	deadline.tv_nsec = (deadline_ms % 1000) * 1000000L;
	bool ok = true;
	pthread_mutex_lock(&bus->qlock);
	for (;;) {
		bool quiet = bus->nats_closed;
		for (size_t i = 0; quiet && i < bus->nsubs; i++)
			if (bus->subs[i]->ns && !bus->subs[i]->completed)
				quiet = false;
		if (quiet)
			break;
		/* The cond uses the realtime clock by default; a monotonic
		 * deadline is computed by polling in short steps instead. */
		struct timespec now, step;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec > deadline.tv_sec ||
		    (now.tv_sec == deadline.tv_sec && now.tv_nsec >= deadline.tv_nsec)) {
			ok = false;
			break;
		}
		step = realtime_in(50);
		pthread_cond_timedwait(&bus->qcond, &bus->qlock, &step);
	}
	pthread_mutex_unlock(&bus->qlock);
	return ok;
}

static bool join_until(pthread_t t, int64_t deadline_ms)
{
	struct timespec until = realtime_in(deadline_ms - ca_now_monotonic_ms());
	return pthread_timedjoin_np(t, NULL, &until) == 0;
}

/* Stop the publisher: it hands over what is queued first, unless that
 * takes past the deadline (nats.c blocked on a stalled server): then it is
 * left to finish on its own and the bus keeps its memory. */
static void stop_publisher(struct ca_bus *bus, int64_t deadline_ms)
{
	if (!bus->pthread_started)
		return;
	pthread_mutex_lock(&bus->plock);
	bus->pstop = true;
	bus->stop_deadline_ms = deadline_ms;
	pthread_cond_signal(&bus->pwork);
	pthread_mutex_unlock(&bus->plock);
	bool joined = join_until(bus->pthread, deadline_ms);
	if (!joined && bus->js_enabled) {
		/* Waiting for an acknowledgement: closing the connection ends
		 * the wait at once (nats.c answers the request "closed"). */
		natsConnection_Close(bus->conn);
		joined = join_until(bus->pthread, ca_now_monotonic_ms() + CLOSE_SLACK_MS / 2);
	}
	if (joined) {
		bus->pthread_started = false;
	} else {
		bus->pthread_stuck = true;
		ca_log(CA_LOG_WARN, COMPONENT, "NATS publisher still blocked at shutdown; unsent messages are lost",
		       NULL);
	}
}

void ca_bus_close(struct ca_bus *bus)
{
	if (!bus || bus->closed)
		return;
	bus->closed = true;
	/* Shutdown must end within seconds even with a stalled server (the
	 * kubelet's grace period): each step gets what is left of a budget. */
	int64_t start = ca_now_monotonic_ms();
	int64_t flush = bus->cfg->nats.flush_timeout_ms > 0 ? bus->cfg->nats.flush_timeout_ms : 2000;
	int64_t deadline = start + flush + CLOSE_SLACK_MS;
	if (bus->conn) {
		bool delivering = ca_bus_delivering(bus, start, DELIVERY_STALL_MS, NULL);
		stop_publisher(bus, start + (delivering ? flush : CLOSE_SLACK_MS / 2));
		int64_t left = deadline - ca_now_monotonic_ms() - CLOSE_SLACK_MS;
		if (atomic_load(&bus->connected) && delivering && !bus->pthread_stuck && left > 0) {
			natsStatus st = natsConnection_FlushTimeout(bus->conn, left);
			if (st != NATS_OK)
				ca_log(CA_LOG_WARN, COMPONENT, "NATS flush on close failed; unsent messages are lost",
				       "error", natsStatus_GetText(st), NULL);
		}
		if (bus->js_enabled && !bus->pthread_stuck) {
			pthread_mutex_lock(&bus->plock);
			size_t left_msgs = bus->jcount;
			pthread_mutex_unlock(&bus->plock);
			if (left_msgs) {
				char n[32];
				snprintf(n, sizeof n, "%zu", left_msgs);
				atomic_fetch_add(&bus->lost, left_msgs);
				ca_log(CA_LOG_WARN, COMPONENT, "JetStream messages not acknowledged at shutdown are lost "
				       "(the next leader resends events from its resume point)", "messages", n, NULL);
			}
		}
		natsConnection_Close(bus->conn);
		if (!wait_nats_quiet(bus, deadline)) {
			/* nats.c may still call into bus: keep its memory. */
			ca_log(CA_LOG_ERROR, COMPONENT, "NATS client did not finish closing; leaking its state", NULL);
			bus->leaked = true;
		}
	}
	pthread_mutex_lock(&bus->qlock);
	bus->closing = true;
	struct event *ev = bus->qhead;
	bus->qhead = bus->qtail = NULL;
	bus->qbytes = 0;
	pthread_mutex_unlock(&bus->qlock);
	while (ev) {
		struct event *next = ev->next;
		free(ev);
		ev = next;
	}
	atomic_store(&bus->connected, false);
}

void ca_bus_free(struct ca_bus *bus)
{
	if (!bus)
		return;
	if (bus->qlock_init)
		ca_bus_close(bus);
	ca_loop_fd_del(bus->efd_handle);
	bus->efd_handle = NULL;
	ca_loop_timer_free(bus->pkick);
	bus->pkick = NULL;
	if (bus->leaked || bus->pthread_stuck) {
		pthread_mutex_lock(&kept_lock);
		bus->kept_next = kept_buses;
		kept_buses = bus;
		pthread_mutex_unlock(&kept_lock);
		return;
	}
	while (bus->phead) {
		struct out_msg *next = bus->phead->next;
		free(bus->phead);
		bus->phead = next;
	}
	while (bus->jhead) {
		struct out_msg *next = bus->jhead->next;
		free(bus->jhead);
		bus->jhead = next;
	}
	for (size_t i = 0; i < bus->js_nsubjects; i++)
		free(bus->js_subjects[i]);
	free(bus->js_subjects);
	jsCtx_Destroy(bus->js);
	if (bus->plock_init) {
		pthread_cond_destroy(&bus->pwork);
		pthread_cond_destroy(&bus->pidle);
		pthread_mutex_destroy(&bus->plock);
	}
	for (size_t i = 0; i < bus->nsubs; i++) {
		natsSubscription_Destroy(bus->subs[i]->ns);
		sub_free(bus->subs[i]);
	}
	free(bus->subs);
	natsConnection_Destroy(bus->conn);
	natsOptions_Destroy(bus->opts);
	for (int i = 0; i < bus->nservers; i++)
		free(bus->servers[i]);
	free(bus->servers);
	if (bus->efd >= 0)
		close(bus->efd);
	if (bus->qlock_init) {
		pthread_cond_destroy(&bus->qcond);
		pthread_mutex_destroy(&bus->qlock);
	}
	free(bus);
}

bool ca_bus_gave_up(const struct ca_bus *bus)
{
	struct ca_bus *b = (struct ca_bus *)bus;
	pthread_mutex_lock(&b->qlock);
	bool closed = b->nats_closed;
	pthread_mutex_unlock(&b->qlock);
	return closed;
}

void ca_bus_library_cleanup(int64_t timeout_ms)
{
	pthread_mutex_lock(&kept_lock);
	bool kept = kept_buses != NULL;
	pthread_mutex_unlock(&kept_lock);
	if (kept)
		return; /* a connection kept for a blocked thread is never released: waiting is in vain */
	nats_CloseAndWait(timeout_ms > 0 ? timeout_ms : 1);
}

/* ------------------------------------------------------------------ */
/* The module table (core/module.h) */

static void module_health(const void *self, struct ca_module_health *out)
{
	const struct ca_bus *bus = self;
	if (ca_bus_gave_up(bus) && !bus->closed) {
		/* nats.c gave up: reconnects ran out, or the server refused the
		 * credentials (nats.c stops retrying then, even with -1). Only a
		 * restart reconnects, and it re-reads credentials from files. */
		out->live = false;
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason,
		           "NATS connection closed for good: the server refused the credentials or "
		           "nats.max_reconnects ran out (see /health nats.last_error); a restart reconnects");
		return;
	}
	size_t waiting = 0;
	if (!ca_bus_connected(bus)) {
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason, "NATS not connected");
	} else if (!ca_bus_delivering(bus, ca_now_monotonic_ms(), DELIVERY_STALL_MS, &waiting)) {
		out->ready = false;
		ca_set_err(out->reason, sizeof out->reason,
		           "NATS cannot deliver: %zu bytes waiting and nothing taken for over %d s "
		           "(a stalled server)", waiting, DELIVERY_STALL_MS / 1000);
	} else if (bus->js_enabled && (atomic_load(&((struct ca_bus *)bus)->js_state) == JS_MISSING ||
	                               atomic_load(&((struct ca_bus *)bus)->js_state) == JS_UNAVAILABLE)) {
		/* Nothing durable can be delivered: say why, and keep retrying. */
		struct ca_bus *b = (struct ca_bus *)bus;
		char why[LAST_ERROR_LEN];
		pthread_mutex_lock(&b->qlock);
		ca_strlcpy(why, b->js_error, sizeof why);
		pthread_mutex_unlock(&b->qlock);
		out->ready = false;
		if (atomic_load(&b->js_state) == JS_MISSING)
			ca_set_err(out->reason, sizeof out->reason, "JetStream stream %s not found", b->js_stream);
		else
			ca_set_err(out->reason, sizeof out->reason, "JetStream unavailable: %s", why);
	}
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	ca_bus_health_json(self, out);
}

static void module_metrics(const void *self, struct ca_prom *p)
{
	ca_bus_render_metrics(self, p);
}

const struct ca_module_ops ca_bus_module = {
	.name = "nats",
	.health = module_health,
	.health_json = module_health_json,
	.render_metrics = module_metrics,
};
