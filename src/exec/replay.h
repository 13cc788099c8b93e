/* exec/replay.h: the replay cache of command ids (DESIGN.md §4 layer 2).
 *
 * Remembers each id it is given for a fixed window (twice exec.max_age:
 * a command is fresh while its issued_at is within max_age of the clock,
 * either way, so a copy can arrive up to 2 x max_age after the first), in
 * a ring ordered by arrival with a keyed-hash index. Ids are kept as
 * 64-bit SipHash values under a random key, so the cache's memory does not
 * depend on how long ids are, and an attacker cannot aim collisions.
 * When every slot holds an id still inside its window the cache is full:
 * the caller refuses new commands rather than forget an id early (which
 * would let its replay through).
 *
 * Owns its ring and index. Single thread. */
#ifndef CA_EXEC_REPLAY_H
#define CA_EXEC_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

struct ca_replay;

/* capacity ids, each kept window_ms. CA_EINVAL (capacity 0), CA_ENOMEM. */
enum ca_err ca_replay_new(size_t capacity, int64_t window_ms, struct ca_replay **out);
void ca_replay_free(struct ca_replay *r);
/* Whether id was recorded less than window_ms before now_ms (monotonic). */
bool ca_replay_seen(struct ca_replay *r, const char *id, int64_t now_ms);
/* Record id at now_ms (not recorded before: call ca_replay_seen first).
 * CA_EAGAIN: full (every slot within its window). */
enum ca_err ca_replay_record(struct ca_replay *r, const char *id, int64_t now_ms);
size_t ca_replay_count(const struct ca_replay *r);
/* Bytes ca_replay_new(capacity) allocates, for the memory budget. */
size_t ca_replay_bytes(size_t capacity);

#endif
