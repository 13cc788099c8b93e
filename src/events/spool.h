/* events/spool.h: the on-disk spool of events NATS could not take (issue 12).
 *
 * When NATS cannot take events and the watcher's memory ring is full, the
 * oldest ring records move here instead of being dropped; everything in the
 * spool is older than everything in the ring, so replaying the spool first
 * and the ring after keeps the order. The spool owns a directory of
 * append-only segment files ("<16 hex digits>.seg", mode 0600, the
 * directory 0700) and a "cursor" file holding how far the head segment was
 * replayed, so a restarted agent (a container restart in the same pod: an
 * emptyDir survives it) replays what is left, in order, before new events.
 *
 * A record is self-delimiting:
 *     magic "CASP" | u32 LE payload length | u32 LE CRC32C(length || payload) | payload
 * The payload is the event's fields (struct ca_msg_event without
 * cluster_id), the resourceVersion to resume from if it is lost, and the
 * reflector's collection path, each string as a varint length, its bytes
 * and a NUL; integers as zigzag varints. The encoded message is not stored:
 * nats.encoding may change between restarts. A torn write or a corrupt byte
 * fails the length or the checksum: the reader counts it, skips to the next
 * magic and goes on. Nothing is fsynced (docs/EVENTS.md says what survives
 * what).
 *
 * Capped at max_bytes on disk: past it the oldest segment is deleted and its
 * unreplayed records counted as dropped. Memory held: one read buffer (a
 * record of max_payload and CA_SPOOL_READ_CHUNK), one encode buffer (a
 * record), and per segment a few counters and the first resume point of
 * each stream (ca_spool_memory_bytes). A record longer than max_payload
 * (written by a run with a larger events.max_message_bytes) is skipped as
 * corrupt.
 *
 * One owner, one thread (the loop); never logs (the caller does). */
#ifndef CA_EVENTS_SPOOL_H
#define CA_EVENTS_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "core/err.h"

struct ca_spool;

/* The largest payload any record may have: a message of 1 MiB
 * (events.max_message_bytes at most) and the other fields, with room to
 * spare. A spool's own cap (max_payload) is usually far smaller. */
#define CA_SPOOL_MAX_PAYLOAD ((size_t)1152 * 1024)
#define CA_SPOOL_HEADER 12
/* What the reader reads at once beyond one record. */
#define CA_SPOOL_READ_CHUNK ((size_t)64 * 1024)
/* The segments the spool keeps at most, for a cap and a segment size. */
#define CA_SPOOL_MAX_SEGMENTS(max_bytes, segment_bytes) ((max_bytes) / (segment_bytes) + 2)

/* One event as the spool stores it. All strings are non-NULL when read
 * back ("" for absent), pointers into the spool's buffer, valid until the
 * next call on the spool. msg.cluster_id is NULL. */
struct ca_spool_item {
	struct ca_msg_event msg;
	const char *resume_before; /* resourceVersion to resume from if this event is lost */
	const char *stream;        /* the reflector's collection path */
	size_t stream_index;       /* its index among the streams given at open; SIZE_MAX: none */
};

struct ca_spool_options {
	const char *dir;        /* created 0700 when missing */
	uint64_t max_bytes;     /* bytes on disk at most (>= 2 segments) */
	uint64_t segment_bytes; /* a segment is closed once this long */
	size_t max_payload; /* largest record payload; 0 = CA_SPOOL_MAX_PAYLOAD (also the most) */
	const char *const *streams; /* the reflectors' collection paths (borrowed) */
	size_t nstreams;
	/* Called by ca_spool_open for each record a previous run left and
	 * the spool keeps, in order (the item is valid during the call);
	 * never for records deleted at open to fit max_bytes. NULL = none. */
	void (*inherited)(void *arg, const struct ca_spool_item *item);
	void *inherited_arg;
};

struct ca_spool_stats {
	uint64_t bytes;   /* on disk now */
	uint64_t records; /* waiting to be replayed */
	uint64_t segments;
	uint64_t spooled;   /* records appended */
	uint64_t replayed;  /* records handed on by ca_spool_consume */
	uint64_t dropped;   /* records deleted unreplayed to stay under max_bytes, or that could not
	                       be written */
	uint64_t corrupt;   /* corrupt or torn regions skipped */
	uint64_t inherited; /* records found at open (a previous run's) */
	uint64_t write_errors;
	int64_t append_us, read_us; /* time spent in write() and read() */
	uint64_t read_bytes;
};

/* Open (or create) the spool in o->dir: deletes segments the cursor says
 * were replayed, drops the oldest past max_bytes, scans the rest to count
 * their records (and the first resume point of each stream), and goes on
 * appending to the last segment after cutting what follows its last whole
 * record (a torn tail of a killed run; counted once in corrupt), so that
 * restarts do not add a segment each. On failure writes a sentence naming the directory and
 * the reason into err and returns CA_EIO (not writable, not a directory),
 * CA_EINVAL (bad options) or CA_ENOMEM. */
enum ca_err ca_spool_open(struct ca_spool **out, const struct ca_spool_options *o, char *err,
                          size_t errlen);
/* Closes the files; the records stay on disk for the next run. NULL ok. */
void ca_spool_free(struct ca_spool *s);

/* Append one record (item->stream_index names the stream; the strings may
 * be NULL = ""). Makes room first by deleting the oldest segments (counted
 * in dropped). CA_ETOOBIG when the record exceeds CA_SPOOL_MAX_PAYLOAD;
 * CA_EIO when the write failed even after freeing a segment (ENOSPC, EIO;
 * the partial record is cut off again; why gets strerror's text). */
enum ca_err ca_spool_append(struct ca_spool *s, const struct ca_spool_item *item, char *why,
                            size_t whylen);
/* The oldest record, without removing it: CA_OK and *out filled; CA_ENOTFOUND
 * when the spool is empty; CA_EIO when a segment cannot be read (it is
 * skipped, its records counted as dropped, why says why). Corrupt regions
 * met on the way are skipped and counted. Reads at most one buffer per
 * call. */
enum ca_err ca_spool_peek(struct ca_spool *s, struct ca_spool_item *out, char *why, size_t whylen);
/* Remove the record the last ca_spool_peek returned. */
void ca_spool_consume(struct ca_spool *s);
/* Write the replay position to the cursor file (a 24-byte pwrite, no
 * fsync); the caller does it after a batch. */
void ca_spool_save_cursor(struct ca_spool *s);
bool ca_spool_empty(const struct ca_spool *s);
/* The resume point of the oldest record of stream i still in the spool (a
 * record of the head segment already replayed may be that one: the answer
 * errs on the old side), or NULL when none. */
const char *ca_spool_resume_rv(const struct ca_spool *s, size_t i);
void ca_spool_get_stats(const struct ca_spool *s, struct ca_spool_stats *out);
/* What the spool allocates at most for these options and nstreams. */
size_t ca_spool_memory_bytes(uint64_t max_bytes, uint64_t segment_bytes, size_t max_payload,
                             size_t nstreams);

/* ---- the record format, for the reader, the fuzzer and the tests ------- */

enum ca_spool_scan {
	CA_SPOOL_RECORD,    /* *item decoded (pointers into buf), *advance = record length */
	CA_SPOOL_NEED_MORE, /* buf holds a prefix of what may be a record */
	CA_SPOOL_CORRUPT,   /* skip *advance (>= 1) bytes to the next candidate magic */
};
/* Look at the start of buf (len bytes); a payload longer than max_payload
 * is corrupt. Never reads past len; any input is safe. item->stream_index
 * is set to SIZE_MAX. */
enum ca_spool_scan ca_spool_scan_record(const uint8_t *buf, size_t len, size_t max_payload,
                                        struct ca_spool_item *item, size_t *advance);
/* Encode item as one record into out (cap bytes). Returns the length, or 0
 * when it does not fit. */
size_t ca_spool_encode_record(const struct ca_spool_item *item, uint8_t *out, size_t cap);
/* CRC32C (Castagnoli), chained from crc (0 to start). */
uint32_t ca_spool_crc32c(uint32_t crc, const void *data, size_t len);

#endif
