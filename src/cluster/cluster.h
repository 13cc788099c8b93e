/* cluster/cluster.h: the cluster-ID detector.
 *
 * Finds the ID the agent publishes under (agent.<kind>.<cluster_id>) by
 * walking cfg->cluster.detect in order; each source either decides or hands
 * over to the next:
 *
 *   env              --cluster-id, then the CLUSTER_ID environment variable
 *   config           cluster.id
 *   eks              only when /version gitVersion contains "-eks-": IMDSv2
 *                    instance tags aws:eks:cluster-name, eks:cluster-name or a
 *                    kubernetes.io/cluster/<name> key; else the node label
 *                    alpha.eksctl.io/cluster-name. Region from the node's
 *                    providerID aws:///<az>/<id>.
 *   gke              only when gitVersion contains "-gke.": the metadata
 *                    server's instance/attributes/cluster-name,
 *                    cluster-location and cluster-uid.
 *   aks              only when the node carries kubernetes.azure.com/ labels:
 *                    Azure IMDS compute.resourceGroupName
 *                    MC_<rg>_<cluster>_<location>; else the node label
 *                    kubernetes.azure.com/cluster parsed the same way.
 *   node-labels      the value of the node label cluster.node_label_key.
 *   kube-system-uid  metadata.uid of the kube-system namespace.
 *
 * Cloud metadata servers are contacted only when the cluster says it runs on
 * that cloud, so a bare cluster sends them no packet and no DNS query. The
 * agent's own Node is named by $NODE_NAME (downward API). Names become IDs
 * through ca_cluster_normalize_id(); an ID is always ca_cluster_valid_id().
 *
 * When the API server does not answer, the whole detection is retried with
 * backoff (kubernetes.backoff_initial/backoff_max), for ever. When it answers
 * but no source gives an ID, the error "no cluster ID: <what each source
 * found>" is kept for /health and detection is retried slowly.
 *
 * Owns: copies of --cluster-id, $CLUSTER_ID and $NODE_NAME taken at _new, a
 * retry timer, at most one request in flight, the detected info. Borrows the
 * loop, the kube client and the config, which must outlive it.
 *
 * Threads: everything here runs on the loop thread, except
 * ca_cluster_valid_id() and ca_cluster_normalize_id(), which are pure and
 * callable from any thread. */
#ifndef CA_CLUSTER_CLUSTER_H
#define CA_CLUSTER_CLUSTER_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "kube/kube.h"

#define CA_CLUSTER_ID_MAX 80

struct ca_cluster;

/* What was detected; every field is a NUL-terminated string, "" when
 * unknown. */
struct ca_cluster_info {
	char id[CA_CLUSTER_ID_MAX + 1];
	char source[24];             /* env|config|eks|gke|aks|node-labels|kube-system-uid */
	char provider[16];           /* aws|gcp|azure|"" */
	char region[64];
	char cluster_uid[128];       /* GKE cluster-uid; the kube-system UID for that source */
	char cluster_name[256];      /* the name as the provider spells it, before normalisation */
	char kubernetes_version[64]; /* /version gitVersion; may arrive after the callback */
};

/* Called once, on the loop thread, when the ID is known. info is borrowed
 * (the same pointer ca_cluster_info() returns). The callback may free the
 * cluster. */
typedef void (*ca_cluster_done_cb)(void *arg, const struct ca_cluster_info *info);

/* Set up a detector; nothing runs until ca_cluster_start().
 * loop, cfg: borrowed. kube: borrowed, may be NULL (no credentials): only the
 * env and config sources can work then. flag_cluster_id: --cluster-id or
 * NULL, copied. $CLUSTER_ID and $NODE_NAME are read (and copied) here.
 * CA_EINVAL on a NULL loop/cfg/cb, CA_ENOMEM. Loop thread. */
enum ca_err ca_cluster_new(struct ca_cluster **out, struct ca_loop *loop, struct ca_kube *kube,
                           const struct ca_config *cfg, const char *flag_cluster_id,
                           ca_cluster_done_cb cb, void *arg);

/* Start detecting. When env or config decide, cb runs before this returns;
 * otherwise it runs later from the loop. CA_EINVAL when already started,
 * CA_ENOMEM. Loop thread. */
enum ca_err ca_cluster_start(struct ca_cluster *c);

/* The detected info, NULL until known. Borrowed; lives as long as c. The
 * kubernetes_version field may be filled in after the callback (when env or
 * config decided before /version answered). Loop thread. */
const struct ca_cluster_info *ca_cluster_info(const struct ca_cluster *c);

/* Append one JSON object (no newline) for /health: state
 * ("idle"|"detecting"|"waiting"|"done"), the info fields once known,
 * attempts, last_error ("" if none) and per-source findings of the last
 * attempt. Loop thread. */
void ca_cluster_health_json(const struct ca_cluster *c, struct ca_buf *out);
/* The detector as a module of the agent (core/module.h): ready once the
 * cluster ID is known; the reason says why not (detection's last error). */
extern const struct ca_module_ops ca_cluster_module;

/* True for 1..80 characters of [a-z0-9-] that start and end with a letter or
 * digit (a DNS label, longer, safe as a NATS subject token). Any thread. */
bool ca_cluster_valid_id(const char *id);

/* Turn a provider's cluster name into an ID: lower-case; every character
 * outside [a-z0-9-] becomes '-'; leading and trailing '-' trimmed; cut to 80
 * (and trimmed again). out gets "" when nothing is left (a rejected name);
 * otherwise the result passes ca_cluster_valid_id(). outlen of at least 81
 * never truncates below the 80 limit. Any thread. */
void ca_cluster_normalize_id(const char *name, char *out, size_t outlen);

/* Stop and free. Safe before or after ca_kube_free(). A request still in
 * flight cannot be cancelled (kube.h has no cancel for one-shot requests):
 * it is detached, and its callback, if it comes, only frees its small
 * record; if the kube client drops the callback, the record (a few bytes)
 * stays reachable until exit. NULL is fine. Loop thread. */
void ca_cluster_free(struct ca_cluster *c);

#endif
