/* core/hash.c: SipHash-1-3 with a per-table random key. */
#include "core/hash.h"

#include <stdint.h>
#include <sys/random.h>

#include "core/timeutil.h"

static inline uint64_t rotl(uint64_t x, int b)
{
	return (x << b) | (x >> (64 - b));
}

static inline uint64_t load_le64(const unsigned char *p)
{
	/* Compilers turn this into one load on little-endian machines. */
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24 |
	       (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 | (uint64_t)p[6] << 48 |
	       (uint64_t)p[7] << 56;
}

#define SIPROUND                                                                                   \
	do {                                                                                       \
		v0 += v1;                                                                          \
		v1 = rotl(v1, 13);                                                                 \
		v1 ^= v0;                                                                          \
		v0 = rotl(v0, 32);                                                                 \
		v2 += v3;                                                                          \
		v3 = rotl(v3, 16);                                                                 \
		v3 ^= v2;                                                                          \
		v0 += v3;                                                                          \
		v3 = rotl(v3, 21);                                                                 \
		v3 ^= v0;                                                                          \
		v2 += v1;                                                                          \
		v1 = rotl(v1, 17);                                                                 \
		v1 ^= v2;                                                                          \
		v2 = rotl(v2, 32);                                                                 \
	} while (0)

uint64_t ca_hash_keyed(const struct ca_hash_key *key, const void *data, size_t len)
{
	const uint64_t *k = key->k;
	const unsigned char *in = data;
	uint64_t v0 = 0x736f6d6570736575ull ^ k[0];
	uint64_t v1 = 0x646f72616e646f6dull ^ k[1];
	uint64_t v2 = 0x6c7967656e657261ull ^ k[0];
	uint64_t v3 = 0x7465646279746573ull ^ k[1];
	uint64_t b = (uint64_t)len << 56;
	const unsigned char *end = in + (len & ~(size_t)7);

	for (; in != end; in += 8) {
		uint64_t m = load_le64(in);
		v3 ^= m;
		SIPROUND;
		v0 ^= m;
	}
	for (size_t i = 0; i < (len & 7); i++)
		b |= (uint64_t)in[i] << (8 * i);
	v3 ^= b;
	SIPROUND;
	v0 ^= b;
	v2 ^= 0xff;
	SIPROUND;
	SIPROUND;
	SIPROUND;
	return v0 ^ v1 ^ v2 ^ v3;
}

void ca_hash_new_key(struct ca_hash_key *key)
{
	if (getrandom(key->k, sizeof key->k, 0) == (ssize_t)sizeof key->k)
		return;
	/* No getrandom (an old kernel, a seccomp profile): the jitter
	 * generator, itself seeded from the clock then. */
	key->k[0] = ca_random_below(UINT64_MAX) ^ (uint64_t)(uintptr_t)key;
	key->k[1] = ca_random_below(UINT64_MAX) ^ (uint64_t)ca_now_monotonic_ms();
}
