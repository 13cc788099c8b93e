/* kube/kobj.h: a read-only view of one parsed Kubernetes JSON object.
 *
 * The reflector and ca_kube_request() hand these to callbacks; the view is
 * borrowed and valid only during the callback. Consumers fold what they need
 * into their own compact structs at once (DESIGN.md §3). Lookups never fail
 * loudly: a missing member or a member of the wrong type gives NULL / the
 * default. Loop thread (or any thread for an object the caller parsed). */
#ifndef CA_KUBE_KOBJ_H
#define CA_KUBE_KOBJ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct ca_kobj;

/* Parse one JSON document; the result is owned by the caller
 * (ca_kobj_free). CA_EPROTO on bad JSON, CA_ENOMEM. */
enum ca_err ca_kobj_parse(const char *data, size_t len, struct ca_kobj **out);
void ca_kobj_free(struct ca_kobj *o);

/* Member by dotted path ("metadata.name"); NULL if absent. */
const struct ca_kobj *ca_kobj_get(const struct ca_kobj *o, const char *path);
/* Member by exact key, for keys that contain dots ("kubernetes.io/os"). */
const struct ca_kobj *ca_kobj_member(const struct ca_kobj *o, const char *key);

/* Typed lookups by dotted path (path may be NULL for o itself). */
const char *ca_kobj_str(const struct ca_kobj *o, const char *path);  /* NULL unless a string */
int64_t ca_kobj_int(const struct ca_kobj *o, const char *path, int64_t dflt);
bool ca_kobj_bool(const struct ca_kobj *o, const char *path, bool dflt);
bool ca_kobj_is_null(const struct ca_kobj *o);

/* Arrays: length (0 if not an array) and element i (NULL if out of range). */
size_t ca_kobj_array_len(const struct ca_kobj *o);
const struct ca_kobj *ca_kobj_array_at(const struct ca_kobj *o, size_t i);

/* Objects: call fn for each member; stop early when fn returns false. */
typedef bool (*ca_kobj_member_fn)(void *arg, const char *key, const struct ca_kobj *value);
void ca_kobj_foreach(const struct ca_kobj *o, ca_kobj_member_fn fn, void *arg);

#endif
