/* bus/bus.h: the agent's NATS connection (nats.c behind this header).
 *
 * The bus owns one nats.c connection, its options and subscriptions, and a
 * small locked queue through which nats.c's threads hand events (messages,
 * connects, disconnects, async errors) to the agent's event loop. nats.c
 * invokes its callbacks on its own threads; those only copy what they got
 * into one heap block, append it to the queue and wake the loop through an
 * eventfd the bus registers with ca_loop_fd_add(). The loop thread then
 * calls the user's callbacks and frees the copies. Because the wake-up is an
 * fd the bus owns (not a ca_loop_post() entry), nothing queued can outlive
 * the bus: ca_bus_close() stops nats.c, waits until nats.c reports that no
 * callback can run any more (closed callback plus every subscription's
 * on-complete callback) and drops what is still queued.
 *
 * Connection settings come from cfg->nats: servers (nats:// or tls://),
 * name, connect_timeout, retry on failed initial connect, reconnect forever
 * (or max_reconnects) with exponential backoff from reconnect_wait doubling
 * to reconnect_wait_max plus up to reconnect_jitter, reconnect buffer size,
 * TLS (ca_file, cert_file + key_file, insecure_skip_verify; tls:// URLs
 * imply TLS) and one auth method: credentials_file, nkey_seed_file,
 * token/token_file, or user with password/password_file.
 *
 * Publishing never blocks the loop: messages queue for the bus's publisher
 * thread. With nats.jetstream.enabled, ca_bus_publish_durable() messages
 * go through JetStream, acknowledged one at a time in order and retried
 * (docs/ARCHITECTURE.md, "Publishing"); ca_bus_confirmed_seq() says how far
 * delivery is confirmed, in either mode.
 *
 * Threads: every function runs on the loop thread unless it says "any
 * thread". The loop must outlive the bus (free the bus first). User
 * callbacks run on the loop thread; they may publish and subscribe but must
 * not call ca_bus_close() or ca_bus_free().
 *
 * Errors are logged once here, where the reason is known (component "bus");
 * server URLs are logged without user info, secrets never. */
#ifndef CA_BUS_BUS_H
#define CA_BUS_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/budget.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "core/prom.h"

struct ca_bus;

/* An incoming message. Every pointer is borrowed for the duration of the
 * on_message callback only; reply, content_type and msg_id are NULL when
 * absent. data is NUL-terminated past len for convenience. */
struct ca_bus_msg {
	const char *subject, *reply, *content_type, *msg_id;
	const void *data;
	size_t len;
};

/* Any member may be NULL. All run on the loop thread with the arg given to
 * ca_bus_new(). */
struct ca_bus_callbacks {
	/* After every (re)connect; reconnected is false for the first
	 * successful connection of this bus, true afterwards. */
	void (*on_connected)(void *arg, bool reconnected);
	/* The connection to the server was lost (nats.c is reconnecting). */
	void (*on_disconnected)(void *arg);
	void (*on_message)(void *arg, const struct ca_bus_msg *msg);
	/* A publish was refused with CA_EAGAIN because a buffer was full, and
	 * there is room again (both buffers at most half full): time to try
	 * what was kept. Once per refusal episode. */
	void (*on_room)(void *arg);
};

/* Incoming messages are bounded twice, both counted in
 * agent_nats_dropped_messages_total when exceeded: nats.c holds at most a
 * subscription's max_pending_msgs / max_pending_bytes for it (its slow
 * consumer limits), and the hand-off queue to the loop at most the sum of
 * the subscriptions' max_pending_bytes. Defaults for a subscription: */
#define CA_BUS_SUB_PENDING_MSGS 64
#define CA_BUS_SUB_PENDING_BYTES ((size_t)2 << 20)

/* Create a bus; nothing is contacted yet. cfg is borrowed and must outlive
 * the bus (the loader's config does); loop is borrowed; cbs is copied. Reads
 * token_file / password_file now. On failure returns CA_EINVAL (bad option,
 * e.g. no servers, unreadable secret file, a TLS file nats.c rejects),
 * CA_ENOMEM or CA_EIO and writes one sentence into err (may be NULL). */
enum ca_err ca_bus_new(struct ca_bus **out, struct ca_loop *loop, const struct ca_config *cfg,
                       const struct ca_bus_callbacks *cbs, void *arg, char *err, size_t errlen);

/* Start connecting. Returns CA_OK even when no server is up yet: nats.c
 * keeps retrying in the background and on_connected fires once it
 * succeeds. CA_EINVAL when called twice or after close; CA_EIO/CA_EDENIED
 * when nats.c refuses outright (e.g. bad URL). Subscriptions made before are
 * sent with the first connect. */
enum ca_err ca_bus_connect(struct ca_bus *bus);

/* Subscribe to subject, in queue_group when not NULL (both copied). Works
 * before ca_bus_connect() and before the first successful connect; nats.c
 * re-sends subscriptions after every reconnect. Messages arrive through
 * on_message. At most max_pending_msgs messages and max_pending_bytes bytes
 * wait for the loop (0 = CA_BUS_SUB_PENDING_MSGS / _BYTES); more are
 * dropped and counted. CA_EINVAL for an empty subject or a closed bus. */
enum ca_err ca_bus_subscribe(struct ca_bus *bus, const char *subject, const char *queue_group,
                             int max_pending_msgs, size_t max_pending_bytes);

/* The bus's rows of the memory budget for cfg, with subscriptions that
 * hold at most inbound_bytes and inbound_msgs in all: nats.c's reconnect
 * buffer, its write buffer and TLS state, and incoming messages (nats.c's
 * pending limits and the hand-off queue, each up to inbound_bytes, plus
 * each message's own bookkeeping). Any thread. */
void ca_bus_budget(const struct ca_config *cfg, size_t inbound_bytes, size_t inbound_msgs, struct ca_budget *b);

/* Publish data (len bytes, copied) to subject with headers Content-Type
 * and Nats-Msg-Id (each skipped when NULL). Never blocks: the message is
 * queued for the bus's publisher thread, which hands it to nats.c (whose
 * calls may block on a slow or stalled server). While disconnected it goes
 * on to nats.c's reconnect buffer and is sent after the reconnect.
 * CA_ETOOBIG if the message is larger than the server's max_payload (known
 * after the first connect); CA_EAGAIN when the publisher's queue
 * (nats.publish_buffer_bytes) is full, or when disconnected and the
 * reconnect buffer is full, or before ca_bus_connect(); CA_EINVAL for a
 * subject with whitespace or control bytes; CA_EIO when closed. A message
 * nats.c refuses later (the connection closed for good) is counted in
 * agent_nats_publish_lost_total. Not logged here (the caller decides). */
enum ca_err ca_bus_publish(struct ca_bus *bus, const char *subject, const char *content_type,
                           const char *msg_id, const void *data, size_t len);

/* Publish a message that must arrive: events, metric samples, command
 * results. Without nats.jetstream.enabled, exactly ca_bus_publish().
 * In JetStream mode the message goes to the stream named by
 * ca_bus_jetstream_bind() (CA_EAGAIN before it), one at a time in the
 * order accepted, each waiting up to nats.jetstream.ack_timeout for the
 * stream's acknowledgement; one not acknowledged (timeout, no stream, a
 * JetStream error, a lost connection) is sent again with the same
 * Nats-Msg-Id after a backoff (nats.jetstream.retry_backoff doubling to
 * retry_backoff_max) before any younger one, so the stream's duplicate
 * window drops a copy that did arrive, and the stream keeps this order.
 * A message the stream refuses for good, whatever is fixed (larger than
 * its max_msg_size), is dropped instead and counted in
 * agent_nats_publish_lost_total (an error logged at most every 10 s), so
 * it never holds the younger ones back.
 * Messages accepted and not yet acknowledged take at most
 * nats.jetstream.max_pending_bytes. When a message does not fit: while
 * the stream acknowledges (a burst faster than the stream) CA_EAGAIN, the
 * caller keeps it and nothing is lost; while publishes fail (no stream,
 * JetStream off, a retry backing off, disconnected) the oldest not in
 * flight are dropped to make room (agent_nats_js_dropped_total, a warning
 * at most every 10 s), unless nats.jetstream.when_full is backpressure:
 * then CA_EAGAIN too (for a caller that keeps its own backlog, such as a
 * spool). CA_ETOOBIG for a message that max_pending_bytes could never
 * hold (larger than ca_bus_max_payload()). Errors otherwise as
 * ca_bus_publish(). */
enum ca_err ca_bus_publish_durable(struct ca_bus *bus, const char *subject, const char *content_type,
                                   const char *msg_id, const void *data, size_t len);

/* JetStream mode: name the stream and the subjects it must hold, once the
 * cluster ID is known. The stream is nats.jetstream.stream_name, or
 * AGENT_<cluster_id> with any character other than letters, digits, '-'
 * and '_' made '_'. subjects are copied. The publisher thread then looks
 * the stream up on every (re)connect (and again every
 * nats.jetstream.retry_backoff_max while it is not usable and nothing
 * durable is pending), creates it when missing and
 * nats.jetstream.create_stream is set (file storage, the subjects,
 * duplicate window nats.jetstream.duplicate_window), and logs when it is
 * missing, JetStream is off, or the stream's duplicate window is shorter
 * than configured. CA_OK without doing anything when JetStream is off;
 * CA_EINVAL when called twice or with no subjects; CA_ENOMEM. */
enum ca_err ca_bus_jetstream_bind(struct ca_bus *bus, const char *cluster_id, const char *const *subjects,
                                  size_t nsubjects);

/* Delivery confirmation. Every message accepted by ca_bus_publish(),
 * ca_bus_publish_request() or ca_bus_publish_durable() gets the next
 * sequence number, from 1; ca_bus_published_seq() is the last one given
 * (0 before any). ca_bus_confirmed_seq() is the highest n such that every
 * message numbered n or less is resolved:
 *  - JetStream messages: acknowledged by the stream (a duplicate
 *    acknowledgement counts), or dropped for good (max_pending_bytes full,
 *    or still unacknowledged when the bus closed);
 *  - core NATS messages: handed to nats.c and followed by a PING whose
 *    PONG came back on a connection (the publisher sends one at most every
 *    100 ms while such messages exist, only while connected), or refused
 *    by nats.c for good.
 * Lost messages (refused, dropped) count as resolved and are counted in
 * agent_nats_publish_lost_total. Core NATS cannot tell a message that was
 * in the socket when a connection died from one the server took: the PONG
 * after a reconnect confirms both; JetStream mode has no such gap. Any
 * thread. */
uint64_t ca_bus_published_seq(const struct ca_bus *bus);
uint64_t ca_bus_confirmed_seq(const struct ca_bus *bus);

/* Publish a reply: like ca_bus_publish() but with a reply subject for the
 * receiver (NULL = none). */
enum ca_err ca_bus_publish_request(struct ca_bus *bus, const char *subject, const char *reply,
                                   const char *content_type, const char *msg_id,
                                   const void *data, size_t len);

/* Wait (blocking the calling thread, at most timeout_ms) until the server
 * has processed everything published so far. CA_EAGAIN when not connected,
 * CA_ETIMEDOUT on timeout, CA_EIO otherwise. For tests and tools: the
 * agent's loop never calls it. */
enum ca_err ca_bus_flush(struct ca_bus *bus, int64_t timeout_ms);

/* Connected right now. Any thread. */
bool ca_bus_connected(const struct ca_bus *bus);
/* True unless messages wait in the publisher's queue and none was handed
 * to nats.c for stall_ms (a stalled server blocks it). *waiting (may be
 * NULL) gets the bytes queued. Any thread. */
bool ca_bus_delivering(const struct ca_bus *bus, int64_t now_ms, int64_t stall_ms, size_t *waiting);
/* The largest payload a caller may publish: the server's max_payload from
 * the last connect (0 if never connected). In JetStream mode less the
 * header a JetStream publish adds, and at most what
 * nats.jetstream.max_pending_bytes can hold as one message (known before
 * any connect): a larger durable message is CA_ETOOBIG. Any thread. */
size_t ca_bus_max_payload(const struct ca_bus *bus);
/* Incoming messages dropped so far: over a subscription's pending limits
 * or the hand-off queue's (agent_nats_dropped_messages_total). Loop
 * thread. */
uint64_t ca_bus_received_dropped(const struct ca_bus *bus);
/* Successful reconnects so far (the first connect is not one). Any thread. */
uint64_t ca_bus_reconnects(const struct ca_bus *bus);
/* Successful connects so far, the first included: what "this connection"
 * means for a message sent once per connection. Any thread. */
uint64_t ca_bus_connection_epoch(const struct ca_bus *bus);

/* Prometheus families: agent_connected, agent_nats_reconnects_total,
 * agent_nats_disconnects_total, agent_nats_published_messages_total,
 * agent_nats_published_bytes_total, agent_nats_publish_errors_total,
 * agent_nats_received_messages_total, agent_nats_received_bytes_total,
 * agent_nats_dropped_messages_total, agent_nats_buffered_bytes. */
void ca_bus_render_metrics(const struct ca_bus *bus, struct ca_prom *p);

/* Append one JSON object, no newline: {"connected":…,"server":"…" or null,
 * "servers":[…],"reconnects":…,"disconnects":…,"max_payload":…,
 * "last_error":"…" or null}. URLs carry no user info. */
void ca_bus_health_json(const struct ca_bus *bus, struct ca_buf *out);

/* Flush (bounded by cfg nats.flush_timeout) and close the connection; waits
 * for nats.c to finish its callbacks and drops queued events. No callback
 * runs after this returns. Idempotent. */
void ca_bus_close(struct ca_bus *bus);

/* Close (if not yet) and free. NULL and half-built buses are fine. */
void ca_bus_free(struct ca_bus *bus);

/* True once nats.c has closed the connection for good: nats.max_reconnects
 * ran out, or ca_bus_close() was called. Any thread. */
bool ca_bus_gave_up(const struct ca_bus *bus);
/* The bus as a module of the agent (core/module.h): ready while connected;
 * not live once nats.c gave up (other than by ca_bus_close()). */
extern const struct ca_module_ops ca_bus_module;

/* Release nats.c's global resources (its threads and pools). Call once at
 * process exit after every bus is freed; waits at most timeout_ms for
 * nats.c's threads to let go of their connections (a loaded machine may
 * take a few seconds), not at all when a bus was kept for a thread still
 * blocked in nats.c (it never lets go). */
void ca_bus_library_cleanup(int64_t timeout_ms);

/* Call once, last, at process exit, after ca_bus_library_cleanup() and
 * after every other user of TLS (the kube client) is freed: works around a
 * double free between nats.c 3.4.1's and OpenSSL's exit handlers (see
 * openssl_exit.c). No OpenSSL call may follow. Main thread. */
void ca_bus_openssl_exit(void);

#endif
