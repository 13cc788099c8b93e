/* ha/ha.h: leader election on a coordination.k8s.io/v1 Lease (issue 12,
 * docs/HA.md).
 *
 * Two or more replicas of the agent share one Lease; the one holding it
 * leads (publishes events and metrics samples), the others stand by. The
 * semantics are client-go's (tools/leaderelection): every retry_period a
 * replica reads the Lease (404: creates it) and takes it when it is free
 * (no holderIdentity) or expired, where expired is judged by this
 * replica's own clock: leaseDurationSeconds after the moment it last saw
 * the record change (never by comparing the holder's renewTime with our
 * clock, so clock skew between replicas does not matter). Writes are
 * updates with the resourceVersion read (optimistic concurrency: a 409
 * means another replica won). leaseTransitions grows when the holder
 * changes. A leader renews every retry_period and steps down when it has
 * not renewed for renew_deadline (shorter than lease_duration, so it stops
 * before anyone may take over); on a clean shutdown it releases the Lease
 * (holderIdentity "", leaseDurationSeconds 1, as client-go's
 * ReleaseOnCancel) so a standby takes over at once.
 *
 * The leader also keeps a few annotations of the Lease up to date (the
 * agent's events resume point), written with a renew at most every
 * checkpoint_interval; a new leader reads them from the Lease it acquired.
 *
 * The module owns the Lease as last read or written (a JSON tree of at
 * most ca_ha_max_lease_bytes()), its timer, the one request in flight, the
 * annotations waiting to be written, and its counters. It never includes
 * events/, metrics/, bus/ or agent/ headers. Loop thread only, except the
 * pure functions at the end (any thread). */
#ifndef CA_HA_HA_H
#define CA_HA_HA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/budget.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "kube/kube.h"

struct ca_ha;

/* Annotations the leader may keep in the Lease: one per events watch
 * (events.namespaces, up to 1000, or the one over all namespaces) and a
 * few spare. Any thread. */
size_t ca_ha_max_annotations(const struct ca_config *cfg);
/* A Lease answer bigger than this is an error: about 1 KiB of Lease, and
 * per annotation its key and value and the key again in managedFields
 * (about 250 bytes for a 63-character namespace), with room to spare.
 * Any thread. */
size_t ca_ha_max_lease_bytes(const struct ca_config *cfg);
#define CA_HA_IDENTITY_MAX 256

struct ca_ha_callbacks {
	/* This replica holds the Lease now. The Lease's annotations are
	 * readable with ca_ha_annotation() during the call. */
	void (*on_started_leading)(void *arg);
	/* It does not any more (renew deadline passed, another holder, or
	 * released); why in words. */
	void (*on_stopped_leading)(void *arg, const char *why);
	/* A renew will carry the checkpoint: call ca_ha_set_annotation() for
	 * what should be written now. May be NULL. */
	void (*checkpoint)(void *arg);
};

/* Set up (not start). cfg is borrowed (its ha section), kube and loop too;
 * identity, lease_namespace and lease_name are copied (already resolved:
 * ca_ha_identity(), ca_ha_default_lease_name()). err gets a sentence. */
enum ca_err ca_ha_new(struct ca_ha **out, struct ca_loop *loop, struct ca_kube *kube,
                      const struct ca_config *cfg, const char *identity,
                      const char *lease_namespace, const char *lease_name,
                      const struct ca_ha_callbacks *cbs, void *arg, char *err, size_t errlen);
/* Start campaigning: the first attempt at once. */
void ca_ha_start(struct ca_ha *ha);
/* Stop campaigning and, when leading, release the Lease (writing the
 * annotations set so far); done(arg) runs once when that is over (at once
 * when there is nothing to release, else after the answer, bounded by
 * kubernetes.request_timeout). on_stopped_leading is not called. */
void ca_ha_release(struct ca_ha *ha, void (*done)(void *arg), void *arg);
/* Frees everything; a request in flight is cancelled. NULL is fine. Must
 * run before the kube client is freed. */
void ca_ha_free(struct ca_ha *ha);

bool ca_ha_leading(const struct ca_ha *ha);
/* The Lease's annotation key as last read, or NULL. Borrowed until the
 * next answer about the Lease. */
const char *ca_ha_annotation(const struct ca_ha *ha, const char *key);
/* Write key=value into the Lease with the next renew that carries the
 * checkpoint (or the release). Copied. CA_EINVAL for a key or value that
 * cannot be an annotation, CA_ETOOBIG past ca_ha_max_annotations(). */
enum ca_err ca_ha_set_annotation(struct ca_ha *ha, const char *key, const char *value);

struct ca_ha_stats {
	bool leading;
	char holder[CA_HA_IDENTITY_MAX]; /* as last read; "" = none */
	int64_t transitions;             /* leaseTransitions as last read */
	int64_t last_renew_unix_ms;      /* our last successful acquire or renew, 0 = never */
	uint64_t errors;                 /* Lease requests that failed (transport or HTTP status) */
	uint64_t conflicts;              /* 409: another replica wrote first */
	uint64_t acquisitions;           /* times this replica became leader */
	uint64_t step_downs;             /* times it stopped (deadline, another holder) */
	uint64_t checkpoints;            /* renews that carried the checkpoint */
	char last_error[256];
};
void ca_ha_get_stats(const struct ca_ha *ha, struct ca_ha_stats *out);

/* As a module of the agent (core/module.h): not ready while the Lease
 * cannot be read or written for good (401, 403, a missing namespace, an
 * invalid Lease): such a replica could never take over. Leading is not
 * needed to be ready. Its metrics: agent_ha_leader, agent_ha_lease_transitions,
 * agent_ha_lease_errors_total, agent_ha_leadership_acquired_total,
 * agent_ha_step_downs_total. */
extern const struct ca_module_ops ca_ha_module;

/* The module's row of the memory budget (none when ha.enabled is false).
 * Any thread. */
void ca_ha_budget(const struct ca_config *cfg, struct ca_budget *b);

/* ---- pure parts (any thread) ------------------------------------------ */

/* The election fields of a Lease's spec. */
struct ca_ha_record {
	char holder[CA_HA_IDENTITY_MAX];
	int64_t lease_duration_s;
	int64_t transitions;
	char acquire_time[40]; /* as the server wrote them: compared, never */
	char renew_time[40];   /* interpreted (another replica's clock) */
};

/* Parse a Lease object (JSON); CA_EPROTO when it is not one. */
enum ca_err ca_ha_parse_record(const char *json, size_t len, struct ca_ha_record *out);

/* When a replica last saw the record change: now when rec differs from
 * prev (any field, as client-go compares the raw record), else observed. */
int64_t ca_ha_observe(const struct ca_ha_record *prev, const struct ca_ha_record *rec,
                      int64_t observed_ms, int64_t now_ms);

enum ca_ha_action {
	CA_HA_WAIT = 0, /* held by another replica and not expired */
	CA_HA_CREATE,   /* there is no Lease: create it */
	CA_HA_ACQUIRE,  /* free or expired: take it (a new holder) */
	CA_HA_RENEW,    /* ours: renew it */
};

/* client-go's tryAcquireOrRenew as a function: rec (NULL: no Lease) as
 * read, observed_ms when this replica last saw it change (monotonic, ours),
 * now_ms (monotonic). *transitions (may be NULL) gets the
 * leaseTransitions to write. */
enum ca_ha_action ca_ha_decide(const struct ca_ha_record *rec, int64_t observed_ms, int64_t now_ms,
                               const char *identity, int64_t *transitions);

/* The default Lease name for a cluster ID: "collect-agent-<id>" made a
 * DNS-1123 subdomain (lower case; every byte outside [a-z0-9.-] becomes
 * '-'; runs of separators folded; at most 253 bytes, starting and ending
 * with a letter or digit). Writes at most outlen bytes. */
void ca_ha_default_lease_name(const char *cluster_id, char *out, size_t outlen);

/* The holder identity: pod_name when set, else hostname + "_" + pid. */
void ca_ha_identity(const char *pod_name, const char *hostname, long pid, char *out, size_t outlen);

#endif
