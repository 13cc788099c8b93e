/* metrics/intern.h: strings that many compact records share (namespace
 * and node names, zones, instance types, condition reasons), each held
 * once and named by a small id, counted by references.
 *
 * Ids start at 1 (0 is "none") and are reused after their last reference
 * goes, so arrays indexed by id stay as long as the live strings are many
 * (ca_intern_id_limit). The table is keyed with SipHash (core/hash.h): the
 * strings come from whoever names objects in the cluster. Loop thread
 * only. */
#ifndef CA_METRICS_INTERN_H
#define CA_METRICS_INTERN_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Longer strings are refused (a Kubernetes name is at most 253 bytes, a
 * label value 63). */
#define CA_INTERN_MAX_LEN 1024u

struct ca_intern;

/* max_bytes: what the table may hold (its strings, entries and slots);
 * 0 = no cap. CA_ENOMEM. */
enum ca_err ca_intern_new(struct ca_intern **out, size_t max_bytes);
void ca_intern_free(struct ca_intern *t);

/* The id of s (len bytes, no NUL needed), with one more reference; the
 * string is added when new. 0 when it cannot be (empty, longer than
 * CA_INTERN_MAX_LEN, over max_bytes, out of memory). */
uint32_t ca_intern_ref(struct ca_intern *t, const char *s, size_t len);
/* Take one more reference on a live id (not 0). */
void ca_intern_ref_id(struct ca_intern *t, uint32_t id);
/* The id of s if it is held, without a reference; 0 otherwise. */
uint32_t ca_intern_find(const struct ca_intern *t, const char *s, size_t len);
/* Drop one reference; the string goes with its last. 0 is ignored. */
void ca_intern_unref(struct ca_intern *t, uint32_t id);
/* The string of a live id (NUL-terminated), "" for 0 or a dead id. */
const char *ca_intern_str(const struct ca_intern *t, uint32_t id);
/* Every live id is below this. */
uint32_t ca_intern_id_limit(const struct ca_intern *t);
size_t ca_intern_count(const struct ca_intern *t);
size_t ca_intern_bytes(const struct ca_intern *t);
/* What one string of len bytes costs, with its share of the table. */
size_t ca_intern_entry_bytes(size_t len);

#endif
