/* http/http.h: the agent's HTTP endpoint for probes and scraping.
 *
 * Serves four paths (DESIGN.md §5), each answered by a caller's handler:
 *
 *   /health/live   live()    application/json
 *   /health/ready  ready()   application/json
 *   /health        health()  application/json
 *   /metrics       metrics() text/plain; version=0.0.4; charset=utf-8
 *
 * GET and HEAD only (anything else: 405 with "Allow: GET, HEAD"), other
 * paths 404, request bodies refused (413), query strings ignored. Paths
 * match byte for byte as the client sent them, before any percent-decoding:
 * a percent-encoded character is never one of ours, so "/health%2Flive"
 * and "/health/%6Cive" answer 404, and so do "/health/live/" and
 * "//health/live" (no slash is added, removed or merged). Every response
 * carries "Cache-Control: no-store"; connections may be kept alive.
 *
 * Limits, so that no client can keep the probes from being answered:
 *   - at most 64 connections count. One accepted beyond that evicts the
 *     oldest connection that has no complete request (idle, or still
 *     sending its headers); only when all 64 are being answered does the
 *     oldest of those go. A new connection is not refused, nor left in
 *     the backlog, for want of a slot.
 *   - the request line and headers must be complete within 5 s of accept,
 *     or within 10 s of the end of the previous response on a kept-alive
 *     connection. Bytes arriving do not extend it (one byte a second does
 *     not hold a connection).
 *   - a connection that has sent nothing is left to the kernel
 *     (TCP_DEFER_ACCEPT) and takes no slot until its first byte, or until
 *     the kernel stops deferring it some seconds later.
 *   - request headers are capped by libmicrohttpd's per-connection memory
 *     pool (32 KiB); a response the client stops reading is dropped after
 *     10 s without progress.
 *   - out of file descriptors, the oldest connection without a request is
 *     evicted and accepting pauses for 100 ms at a time, instead of
 *     spinning on the readable listening socket.
 * At most 128 connections (64 plus those evicted but not yet closed) hold
 * an fd and a 32 KiB pool at any time.
 *
 * The server runs inside the caller's ca_loop: the loop accepts on the
 * listening socket, and libmicrohttpd, given each connection, is driven in
 * its external epoll mode (no thread of its own), so the handlers run on
 * the loop thread and may read module state directly. It is the only
 * module that includes microhttpd.h.
 *
 * Ownership: struct ca_http owns its libmicrohttpd daemon, the listening
 * socket and its loop registrations. The loop, the handler table and arg
 * are borrowed and must outlive the server.
 *
 * Threads: every function here is for the loop thread (the thread that runs
 * ca_loop_run() on the loop given to ca_http_new()), or for any single
 * thread before that loop runs. */
#ifndef CA_HTTP_HTTP_H
#define CA_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "core/budget.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"

struct ca_http;

/* Each handler fills body (empty on entry, capped at 16 MiB) and returns the
 * HTTP status to send. A NULL handler makes its path answer 404. For HEAD the
 * handler runs as for GET and only the body is left out. Loop thread. */
struct ca_http_handlers {
	/* Probes answer a small JSON document such as {"status":"ok"} or
	 * {"status":"not ready","reason":"..."}; the handler writes it. */
	int (*live)(void *arg, struct ca_buf *body);
	int (*ready)(void *arg, struct ca_buf *body);
	/* JSON detail of every module. */
	int (*health)(void *arg, struct ca_buf *body);
	/* Prometheus text format 0.0.4; always answered with 200. */
	void (*metrics)(void *arg, struct ca_buf *body);
};

/* Listen on host:port and serve from loop.
 *
 * host: an IPv4 or IPv6 literal or a name ("0.0.0.0", "::", "127.0.0.1",
 * "localhost"); the first resolved address that binds is used. port 0
 * picks an ephemeral port (see ca_http_port()). The socket is bound with
 * SO_REUSEADDR. h is borrowed (the table itself, not a copy) and arg is
 * passed to every handler.
 *
 * On failure *out is untouched and, if err is not NULL, err receives a
 * one-line reason such as "cannot listen on 127.0.0.1:8080: Address already
 * in use" (IPv6 hosts are written in brackets). Returns CA_EINVAL for a bad
 * port or NULL argument, CA_ENOTFOUND when the host does not resolve,
 * CA_EIO when no address could be bound, CA_ENOMEM. Loop thread. */
enum ca_err ca_http_new(struct ca_http **out, struct ca_loop *loop, const char *host, int port,
                        const struct ca_http_handlers *h, void *arg, char *err, size_t errlen);

/* The port actually bound (useful after port 0). Loop thread. */
int ca_http_port(const struct ca_http *http);

/* Close the listener and every open connection, and drop the loop
 * registrations. NULL is fine. Loop thread (also from inside a loop
 * callback, but never from one of this server's own handlers). */
void ca_http_free(struct ca_http *http);

/* The server's row of the memory budget (its connection cap times what a
 * connection may hold). Any thread. */
void ca_http_budget(struct ca_budget *b);

/* Requests answered so far, whatever their status. Loop thread. */
uint64_t ca_http_requests(const struct ca_http *http);

#endif
