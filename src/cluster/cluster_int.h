/* cluster/cluster_int.h: the pure parsers behind the detector (parse.c),
 * shared with cluster.c and the unit tests. No I/O, no allocation, any
 * thread. Every output buffer is always NUL-terminated ("" on failure). */
#ifndef CA_CLUSTER_CLUSTER_INT_H
#define CA_CLUSTER_CLUSTER_INT_H

#include <stdbool.h>
#include <stddef.h>

#include "cluster/cluster.h"

/* "aws:///eu-west-1a/i-0abc" -> az "eu-west-1a", instance "i-0abc". Also
 * accepts the older "aws://eu-west-1a/i-0abc". False (outputs "") when
 * provider_id is not an AWS providerID with a zone; az/instance may be NULL. */
bool ca_cluster_aws_provider_id(const char *provider_id, char *az, size_t azlen,
                                char *instance, size_t instancelen);

/* An AWS availability zone to its region: "eu-west-1a" -> "eu-west-1",
 * "us-gov-west-1b" -> "us-gov-west-1", "us-west-2-lax-1a" (local zone) ->
 * "us-west-2". False when az does not look like a zone. */
bool ca_cluster_aws_region_from_zone(const char *az, char *region, size_t regionlen);

/* The cloud a providerID names: "aws://..." -> "aws", "gce://..." -> "gcp",
 * "azure://..." -> "azure", anything else -> "". Static string. */
const char *ca_cluster_provider_from_provider_id(const char *provider_id);

/* GKE cluster-location to a region: a zone "us-central1-a" -> "us-central1";
 * a region "europe-west4" stays. */
void ca_cluster_gke_region(const char *location, char *region, size_t regionlen);

/* AKS node resource group "MC_<rg>_<cluster>_<location>" (prefix compared
 * without case) -> cluster and location. The resource group may itself hold
 * '_' (Azure allows it) and the location never does, so location is the
 * last part and cluster the one before it. False (outputs "") otherwise. */
bool ca_cluster_aks_resource_group(const char *rg, char *cluster, size_t clusterlen,
                                   char *location, size_t locationlen);

/* What an IMDS instance-tag listing (keys, one per line) offers for EKS. */
struct ca_cluster_eks_tags {
	bool aws_eks_cluster_name;   /* key "aws:eks:cluster-name" present */
	bool eks_cluster_name;       /* key "eks:cluster-name" present */
	char cluster_tag_name[256];  /* <name> of a "kubernetes.io/cluster/<name>" key, or "" */
};
void ca_cluster_scan_eks_tags(const char *listing, size_t len, struct ca_cluster_eks_tags *out);

/* Copy s without leading/trailing whitespace (metadata values end in "\n"
 * sometimes). False when it did not fit or nothing is left. */
bool ca_cluster_trimmed(const char *s, size_t len, char *out, size_t outlen);

#endif
