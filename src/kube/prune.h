/* kube/prune.h: cutting metadata.managedFields out of API JSON before it is
 * parsed (internal to kube/).
 *
 * managedFields is server-side-apply bookkeeping that no consumer reads,
 * yet it is often the largest part of an object and, being made of many
 * small objects, the most expensive part to parse and to hold as a tape.
 * Watch lines and LIST pages go through this before the parser: consumers
 * see "managedFields":[].
 *
 * The key is found with memmem. The API server writes compact JSON, so the
 * key is exactly `"managedFields":[`. The quote after the name cannot be
 * inside a string (it would have to be escaped), so a match is a real key
 * unless its opening quote is itself escaped, i.e. preceded by '\'. Every
 * such key is cut, at any depth: for the resources the agent reads (Events,
 * Pods, Nodes, Namespaces, Leases) the only member of that name is
 * metadata.managedFields (a LIST page has one per item). The array is
 * skipped with a string-aware bracket matcher; when it does not close, the
 * rest is left alone for the parser to reject. Bytes inside a well-bracketed
 * managedFields array are not validated. Pure; any thread. */
#ifndef CA_KUBE_PRUNE_H
#define CA_KUBE_PRUNE_H

#include <stdbool.h>
#include <stddef.h>

/* Write src[0..n) without its managedFields arrays to dst and return the
 * new length (<= n). dst may be src (in place) or a buffer of n bytes that
 * does not overlap it. Nothing is terminated. */
size_t ca_kube_prune_managed_fields(char *dst, const char *src, size_t n);

/* True when src[0..n) holds a managedFields key worth pruning (cheap: one
 * memmem), so callers can skip the copy for the rest. */
bool ca_kube_has_managed_fields(const char *src, size_t n);

#endif
