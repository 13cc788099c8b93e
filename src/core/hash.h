/* core/hash.h: a keyed string hash for tables whose keys come from the
 * cluster (names, namespaces): SipHash-1-3 (Aumasson and Bernstein), one
 * compression round per 8-byte word and three finalization rounds, with a
 * random key per table, so nobody who can name objects can aim them at one
 * slot. Any thread. */
#ifndef CA_CORE_HASH_H
#define CA_CORE_HASH_H

#include <stddef.h>
#include <stdint.h>

struct ca_hash_key {
	uint64_t k[2];
};

/* A fresh random key (getrandom; the clock-seeded jitter generator when
 * getrandom is refused). */
void ca_hash_new_key(struct ca_hash_key *key);
uint64_t ca_hash_keyed(const struct ca_hash_key *key, const void *data, size_t len);

#endif
