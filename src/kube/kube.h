/* kube/kube.h: the Kubernetes API client (the only code that includes
 * curl.h).
 *
 * Owns the credentials (in-cluster service account or kubeconfig, same
 * precedence as kubectl), one libcurl multi handle driven by the agent's
 * ca_loop (multi socket API: no threads), connection reuse, and the request
 * counters. Requests are asynchronous: callbacks run on the loop thread.
 * Reflectors (kube/reflector.h) are built on a client. */
#ifndef CA_KUBE_KUBE_H
#define CA_KUBE_KUBE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/budget.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "core/prom.h"

struct ca_kube;

struct ca_kube_options {
	const char *kubeconfig;        /* --kubeconfig / kubernetes.kubeconfig; NULL or "" = precedence below */
	const char *context;           /* NULL or "" = current-context */
	int64_t request_timeout_ms;    /* whole-request limit for non-watch requests */
	int64_t connect_timeout_ms;
	const char *user_agent;        /* "collect-agent/<version>" */
	/* In-cluster paths; NULL = /var/run/secrets/kubernetes.io/serviceaccount.
	 * Tests point this at a directory holding token, ca.crt and namespace. */
	const char *service_account_dir;
	/* Send credentials (a bearer token, a password) to an http:// API
	 * server, where anyone on the path reads them. Off by default: such a
	 * server is refused (kubernetes.allow_insecure_http). */
	bool allow_insecure_http;
	/* Watches the client's users will keep open at once. Each holds an
	 * HTTP/1.1 connection for its life, so the client allows that many
	 * connections to the API server plus room for LISTs and one-shot
	 * requests (at least 16). 0 = a few. */
	size_t watches;
};

/* Find credentials (precedence: options->kubeconfig, $KUBECONFIG, in-cluster
 * via KUBERNETES_SERVICE_HOST/PORT, ~/.kube/config) and set up the client.
 * No network traffic happens here. On failure writes a sentence into err
 * (missing file, unsupported exec plugin, bad base64, ...) and returns
 * CA_ENOTFOUND (no credentials anywhere), CA_EUNSUPPORTED or CA_EINVAL. */
enum ca_err ca_kube_new(struct ca_kube **out, struct ca_loop *loop,
                        const struct ca_kube_options *opts, char *err, size_t errlen);
/* Cancels every request and reflector transfer without calling callbacks. */
void ca_kube_free(struct ca_kube *kube);

/* A kubeconfig (YAML, appended to out) that gives a child process -- kubectl
 * in the command sandbox -- the agent's own credentials and nothing else:
 * the same server, CA and TLS server name; the service account token by
 * its file (tokenFile, so kubectl re-reads a rotated token) or the token
 * itself when it came inline; the client certificate and key by path or
 * inline. Basic auth (username/password) is never handed on:
 * CA_EUNSUPPORTED. Loop thread. */
enum ca_err ca_kube_child_kubeconfig(const struct ca_kube *kube, struct ca_buf *out, char *err,
                                     size_t errlen);

/* "https://host:port" of the API server. Borrowed. */
const char *ca_kube_server(const struct ca_kube *kube);
/* Where credentials came from, for logs: "in-cluster", "kubeconfig /path (context x)". */
const char *ca_kube_credential_source(const struct ca_kube *kube);
/* Namespace the agent runs in (in-cluster namespace file, kubeconfig context
 * namespace, or "default"). Borrowed. */
const char *ca_kube_namespace(const struct ca_kube *kube);

struct ca_kube_request {
	const char *method;           /* NULL = "GET" */
	const char *path;             /* API path with query ("/version"): credentials and API CA are used */
	const char *url;              /* or an absolute URL (cloud metadata): no credentials, system CAs */
	const char *const *headers;   /* "Name: value" strings, NULL-terminated; may be NULL */
	const char *body;             /* may be NULL */
	size_t body_len;
	int64_t timeout_ms;           /* 0 = options->request_timeout_ms */
	size_t max_body;              /* 0 = 4 MiB; a larger response fails with CA_ETOOBIG */
};

/* err is CA_OK when an HTTP response arrived (any status); otherwise the
 * transport failure (CA_ETIMEDOUT, CA_EIO, CA_ETOOBIG, ...) and status 0.
 * body is NUL-terminated and borrowed for the call. */
typedef void (*ca_kube_response_cb)(void *arg, enum ca_err err, long status,
                                    const char *body, size_t len);

/* Start a one-shot request; cb runs exactly once, later, on the loop thread
 * (never from inside this call). A 401 from the API server re-reads the
 * token file once and retries. */
enum ca_err ca_kube_request(struct ca_kube *kube, const struct ca_kube_request *req,
                            ca_kube_response_cb cb, void *arg);

/* A one-shot request in flight (client_int.h). */
struct ca_kube_xfer;
/* Like ca_kube_request, and *out is the request's handle until cb runs:
 * ca_kube_request_cancel() takes the request back (cb then never runs).
 * For a user that may stop waiting (a leader stepping down must not act
 * on an answer that comes after its deadline). */
enum ca_err ca_kube_request_start(struct ca_kube *kube, const struct ca_kube_request *req,
                                  ca_kube_response_cb cb, void *arg, struct ca_kube_xfer **out);
/* Cancel a request started by ca_kube_request_start() whose callback has
 * not run yet. NULL is fine. Loop thread. */
void ca_kube_request_cancel(struct ca_kube_xfer *x);

/* True while the API server answers: set by any answer that is not
 * 401/403/5xx (a watch counts when its 2xx headers arrive, not when it
 * ends minutes later), cleared by a 5xx or a transport failure. */
bool ca_kube_api_ok(const struct ca_kube *kube);
/* The client as a module of the agent (core/module.h): ready while the API
 * server answers (ca_kube_api_ok); the reason is its last error. */
extern const struct ca_module_ops ca_kube_module;
/* Monotonic ms of the last successful API response, 0 if none. */
int64_t ca_kube_last_success_ms(const struct ca_kube *kube);

/* The client's rows of the memory budget: one LIST page of up to
 * max_list_page_bytes at a time (its body, and its tape once managedFields
 * are cut: at most five times the body, kube/json_parse.h), the parse of
 * one watch line at a time, two spare connections and the one-shot
 * requests of cluster detection. Any thread. */
void ca_kube_budget(size_t max_list_page_bytes, struct ca_budget *b);
/* The rows of `watches` watch streams of objects up to max_object_bytes
 * (what: "event", "pod"; key: the config key that sets the size): per
 * watch, the bytes read ahead and what its parser keeps between lines
 * (kube/watch.h) and its connection's TLS and libcurl state; and the
 * parse of one such line. Any thread. */
void ca_kube_watch_budget(size_t watches, size_t max_object_bytes, const char *what,
                          const char *key, struct ca_budget *b);
/* The parse of one watch line of up to max_object_bytes: lines are parsed
 * one at a time on the loop thread, whatever the watch, so the agent adds
 * this row once, for its longest line. A LIST page is parsed on the same
 * thread, so the two parses never coexist: what a line's parse can hold
 * beside a LIST page still arriving (its body) is counted only beyond the
 * page's own parse (ca_kube_budget's row for max_list_page_bytes); no row
 * when that is nothing. */
void ca_kube_parse_budget(size_t max_object_bytes, size_t max_list_page_bytes, const char *key,
                          struct ca_budget *b);

/* agent_kube_requests_total{code}, agent_kube_watch_restarts_total and the
 * client's other counters. */
void ca_kube_render_metrics(const struct ca_kube *kube, struct ca_prom *p);
/* A JSON object (no trailing newline) describing the client for /health. */
void ca_kube_health_json(const struct ca_kube *kube, struct ca_buf *out);

#endif
