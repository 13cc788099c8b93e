/* events/spool.c: the on-disk spool (spool.h).
 *
 * Segments are written with plain write() on an O_APPEND descriptor: a
 * record is a few hundred bytes into the page cache, which takes
 * microseconds. The reader reads its own descriptor with pread() into one
 * buffer, at most a record and CA_SPOOL_READ_CHUNK per refill. Nothing is
 * fsynced: the spool lives in an emptyDir, which survives a container
 * restart (the page cache does too) but not the pod leaving its node, so an
 * fsync would buy nothing and cost the loop milliseconds. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/timeutil.h"
#include "events/events_int.h"
#include "events/spool.h"

static const uint8_t magic[4] = {'C', 'A', 'S', 'P'};
#define FORMAT_VERSION 1
#define FLAG_MESSAGE_TRUNCATED 1u
#define CURSOR_NAME "cursor"
#define CURSOR_MAGIC 0x52534341u /* "ACSR" */
#define CURSOR_BYTES 24
#define SEGMENT_SUFFIX ".seg"
#define SEGMENT_NAME_LEN (16 + 4)
/* Segment files looked at, at most, when a directory is opened. */
#define MAX_LISTED 65536
/* Room for the path of a reflector's collection in a record. */
#define MAX_STREAM 512

/* ------------------------------------------------------------------------
 * CRC32C (Castagnoli, reflected 0x82F63B78), a byte at a time: a few
 * hundred MB/s, far more than the disk or NATS takes. */

static const uint32_t crc_table[256] = {
        0x00000000, 0xf26b8303, 0xe13b70f7, 0x1350f3f4, 0xc79a971f, 0x35f1141c, 0x26a1e7e8,
        0xd4ca64eb, 0x8ad958cf, 0x78b2dbcc, 0x6be22838, 0x9989ab3b, 0x4d43cfd0, 0xbf284cd3,
        0xac78bf27, 0x5e133c24, 0x105ec76f, 0xe235446c, 0xf165b798, 0x030e349b, 0xd7c45070,
        0x25afd373, 0x36ff2087, 0xc494a384, 0x9a879fa0, 0x68ec1ca3, 0x7bbcef57, 0x89d76c54,
        0x5d1d08bf, 0xaf768bbc, 0xbc267848, 0x4e4dfb4b, 0x20bd8ede, 0xd2d60ddd, 0xc186fe29,
        0x33ed7d2a, 0xe72719c1, 0x154c9ac2, 0x061c6936, 0xf477ea35, 0xaa64d611, 0x580f5512,
        0x4b5fa6e6, 0xb93425e5, 0x6dfe410e, 0x9f95c20d, 0x8cc531f9, 0x7eaeb2fa, 0x30e349b1,
        0xc288cab2, 0xd1d83946, 0x23b3ba45, 0xf779deae, 0x05125dad, 0x1642ae59, 0xe4292d5a,
        0xba3a117e, 0x4851927d, 0x5b016189, 0xa96ae28a, 0x7da08661, 0x8fcb0562, 0x9c9bf696,
        0x6ef07595, 0x417b1dbc, 0xb3109ebf, 0xa0406d4b, 0x522bee48, 0x86e18aa3, 0x748a09a0,
        0x67dafa54, 0x95b17957, 0xcba24573, 0x39c9c670, 0x2a993584, 0xd8f2b687, 0x0c38d26c,
        0xfe53516f, 0xed03a29b, 0x1f682198, 0x5125dad3, 0xa34e59d0, 0xb01eaa24, 0x42752927,
        0x96bf4dcc, 0x64d4cecf, 0x77843d3b, 0x85efbe38, 0xdbfc821c, 0x2997011f, 0x3ac7f2eb,
        0xc8ac71e8, 0x1c661503, 0xee0d9600, 0xfd5d65f4, 0x0f36e6f7, 0x61c69362, 0x93ad1061,
        0x80fde395, 0x72966096, 0xa65c047d, 0x5437877e, 0x4767748a, 0xb50cf789, 0xeb1fcbad,
        0x197448ae, 0x0a24bb5a, 0xf84f3859, 0x2c855cb2, 0xdeeedfb1, 0xcdbe2c45, 0x3fd5af46,
        0x7198540d, 0x83f3d70e, 0x90a324fa, 0x62c8a7f9, 0xb602c312, 0x44694011, 0x5739b3e5,
        0xa55230e6, 0xfb410cc2, 0x092a8fc1, 0x1a7a7c35, 0xe811ff36, 0x3cdb9bdd, 0xceb018de,
        0xdde0eb2a, 0x2f8b6829, 0x82f63b78, 0x709db87b, 0x63cd4b8f, 0x91a6c88c, 0x456cac67,
        0xb7072f64, 0xa457dc90, 0x563c5f93, 0x082f63b7, 0xfa44e0b4, 0xe9141340, 0x1b7f9043,
        0xcfb5f4a8, 0x3dde77ab, 0x2e8e845f, 0xdce5075c, 0x92a8fc17, 0x60c37f14, 0x73938ce0,
        0x81f80fe3, 0x55326b08, 0xa759e80b, 0xb4091bff, 0x466298fc, 0x1871a4d8, 0xea1a27db,
        0xf94ad42f, 0x0b21572c, 0xdfeb33c7, 0x2d80b0c4, 0x3ed04330, 0xccbbc033, 0xa24bb5a6,
        0x502036a5, 0x4370c551, 0xb11b4652, 0x65d122b9, 0x97baa1ba, 0x84ea524e, 0x7681d14d,
        0x2892ed69, 0xdaf96e6a, 0xc9a99d9e, 0x3bc21e9d, 0xef087a76, 0x1d63f975, 0x0e330a81,
        0xfc588982, 0xb21572c9, 0x407ef1ca, 0x532e023e, 0xa145813d, 0x758fe5d6, 0x87e466d5,
        0x94b49521, 0x66df1622, 0x38cc2a06, 0xcaa7a905, 0xd9f75af1, 0x2b9cd9f2, 0xff56bd19,
        0x0d3d3e1a, 0x1e6dcdee, 0xec064eed, 0xc38d26c4, 0x31e6a5c7, 0x22b65633, 0xd0ddd530,
        0x0417b1db, 0xf67c32d8, 0xe52cc12c, 0x1747422f, 0x49547e0b, 0xbb3ffd08, 0xa86f0efc,
        0x5a048dff, 0x8ecee914, 0x7ca56a17, 0x6ff599e3, 0x9d9e1ae0, 0xd3d3e1ab, 0x21b862a8,
        0x32e8915c, 0xc083125f, 0x144976b4, 0xe622f5b7, 0xf5720643, 0x07198540, 0x590ab964,
        0xab613a67, 0xb831c993, 0x4a5a4a90, 0x9e902e7b, 0x6cfbad78, 0x7fab5e8c, 0x8dc0dd8f,
        0xe330a81a, 0x115b2b19, 0x020bd8ed, 0xf0605bee, 0x24aa3f05, 0xd6c1bc06, 0xc5914ff2,
        0x37faccf1, 0x69e9f0d5, 0x9b8273d6, 0x88d28022, 0x7ab90321, 0xae7367ca, 0x5c18e4c9,
        0x4f48173d, 0xbd23943e, 0xf36e6f75, 0x0105ec76, 0x12551f82, 0xe03e9c81, 0x34f4f86a,
        0xc69f7b69, 0xd5cf889d, 0x27a40b9e, 0x79b737ba, 0x8bdcb4b9, 0x988c474d, 0x6ae7c44e,
        0xbe2da0a5, 0x4c4623a6, 0x5f16d052, 0xad7d5351};

uint32_t ca_spool_crc32c(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;
	crc = ~crc;
	while (len--)
		crc = crc_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

/* ------------------------------------------------------------------------
 * The record format */

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

struct writer {
	uint8_t *p;
	size_t cap, pos;
	bool full;
};

static void w_byte(struct writer *w, uint8_t b)
{
	if (w->pos >= w->cap) {
		w->full = true;
		return;
	}
	w->p[w->pos++] = b;
}

static void w_varint(struct writer *w, uint64_t v)
{
	while (v >= 0x80) {
		w_byte(w, (uint8_t)(v | 0x80));
		v >>= 7;
	}
	w_byte(w, (uint8_t)v);
}

static void w_i64(struct writer *w, int64_t v)
{
	w_varint(w, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static void w_str(struct writer *w, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	w_varint(w, n);
	if (w->full || n > w->cap - w->pos || w->cap - w->pos - n < 1) {
		w->full = true;
		return;
	}
	if (n)
		memcpy(w->p + w->pos, s, n);
	w->pos += n;
	w->p[w->pos++] = '\0';
}

struct reader {
	const uint8_t *p;
	size_t len, pos;
	bool bad;
};

static uint64_t r_varint(struct reader *r)
{
	uint64_t v = 0;
	for (int shift = 0; shift < 64; shift += 7) {
		if (r->pos >= r->len) {
			r->bad = true;
			return 0;
		}
		uint8_t b = r->p[r->pos++];
		if (shift == 63 && b > 1) {
			r->bad = true;
			return 0;
		}
		v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static int64_t r_i64(struct reader *r)
{
	uint64_t u = r_varint(r);
	return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* A string is its length, its bytes and a NUL, so the reader hands out
 * pointers into the buffer without copying. */
static const char *r_str(struct reader *r)
{
	uint64_t n = r_varint(r);
	if (r->bad || n >= r->len - r->pos || r->p[r->pos + n] != '\0') {
		r->bad = true;
		return "";
	}
	const char *s = (const char *)r->p + r->pos;
	r->pos += (size_t)n + 1;
	return s;
}

size_t ca_spool_encode_record(const struct ca_spool_item *item, uint8_t *out, size_t cap)
{
	if (cap < CA_SPOOL_HEADER)
		return 0;
	const struct ca_msg_event *m = &item->msg;
	const struct ca_msg_object_ref *io = &m->involved_object;
	struct writer w = {.p = out + CA_SPOOL_HEADER, .cap = cap - CA_SPOOL_HEADER};
	w_byte(&w, FORMAT_VERSION);
	w_byte(&w, m->message_truncated ? FLAG_MESSAGE_TRUNCATED : 0);
	const char *strs[] = {
	        item->resume_before,
	        item->stream,
	        m->uid,
	        m->type,
	        m->reason,
	        m->message,
	        m->namespace_,
	        io->kind,
	        io->name,
	        io->namespace_,
	        io->uid,
	        io->api_version,
	        io->field_path,
	        m->source_component,
	        m->source_host,
	        m->severity,
	        m->category,
	        m->resource_version,
	};
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		w_str(&w, strs[i]);
	w_i64(&w, m->first_timestamp);
	w_i64(&w, m->last_timestamp);
	w_i64(&w, m->observed_at);
	w_i64(&w, m->count);
	if (w.full || w.pos > CA_SPOOL_MAX_PAYLOAD)
		return 0;
	memcpy(out, magic, sizeof magic);
	put_le32(out + 4, (uint32_t)w.pos);
	uint32_t crc = ca_spool_crc32c(0, out + 4, 4);
	put_le32(out + 8, ca_spool_crc32c(crc, w.p, w.pos));
	return CA_SPOOL_HEADER + w.pos;
}

static bool decode_payload(const uint8_t *p, size_t len, struct ca_spool_item *item)
{
	struct reader r = {.p = p, .len = len};
	memset(item, 0, sizeof *item);
	item->stream_index = SIZE_MAX;
	if (len < 2 || p[0] != FORMAT_VERSION)
		return false;
	r.pos = 1;
	uint8_t flags = p[r.pos++];
	struct ca_msg_event *m = &item->msg;
	struct ca_msg_object_ref *io = &m->involved_object;
	m->message_truncated = (flags & FLAG_MESSAGE_TRUNCATED) != 0;
	const char **strs[] = {
	        &item->resume_before,
	        &item->stream,
	        &m->uid,
	        &m->type,
	        &m->reason,
	        &m->message,
	        &m->namespace_,
	        &io->kind,
	        &io->name,
	        &io->namespace_,
	        &io->uid,
	        &io->api_version,
	        &io->field_path,
	        &m->source_component,
	        &m->source_host,
	        &m->severity,
	        &m->category,
	        &m->resource_version,
	};
	for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
		*strs[i] = r_str(&r);
	m->first_timestamp = r_i64(&r);
	m->last_timestamp = r_i64(&r);
	m->observed_at = r_i64(&r);
	m->count = r_i64(&r);
	/* Bytes after the known fields are a later version's additions. */
	return !r.bad;
}

/* Bytes to skip from buf[0] to the next place a record may start: the next
 * full magic, or the last bytes that may begin one. */
static size_t skip_to_magic(const uint8_t *buf, size_t len)
{
	for (size_t i = 1; i < len; i++) {
		size_t n = len - i < sizeof magic ? len - i : sizeof magic;
		if (memcmp(buf + i, magic, n) == 0)
			return i;
	}
	return len ? len : 1;
}

enum ca_spool_scan ca_spool_scan_record(const uint8_t *buf, size_t len, size_t max_payload,
                                        struct ca_spool_item *item, size_t *advance)
{
	*advance = 0;
	item->stream_index = SIZE_MAX;
	if (max_payload == 0 || max_payload > CA_SPOOL_MAX_PAYLOAD)
		max_payload = CA_SPOOL_MAX_PAYLOAD;
	size_t m = len < sizeof magic ? len : sizeof magic;
	if (len == 0)
		return CA_SPOOL_NEED_MORE;
	if (memcmp(buf, magic, m) != 0) {
		*advance = skip_to_magic(buf, len);
		return CA_SPOOL_CORRUPT;
	}
	if (len < CA_SPOOL_HEADER)
		return CA_SPOOL_NEED_MORE;
	uint32_t plen = get_le32(buf + 4);
	if (plen < 2 || plen > max_payload) {
		*advance = 1;
		return CA_SPOOL_CORRUPT;
	}
	if (len - CA_SPOOL_HEADER < plen)
		return CA_SPOOL_NEED_MORE;
	uint32_t crc = ca_spool_crc32c(0, buf + 4, 4);
	crc = ca_spool_crc32c(crc, buf + CA_SPOOL_HEADER, plen);
	if (crc != get_le32(buf + 8)) {
		*advance = 1;
		return CA_SPOOL_CORRUPT;
	}
	*advance = CA_SPOOL_HEADER + plen;
	/* The checksum held, so the length is right: an undecodable payload
	 * (another version) is skipped whole. */
	return decode_payload(buf + CA_SPOOL_HEADER, plen, item) ? CA_SPOOL_RECORD
	                                                         : CA_SPOOL_CORRUPT;
}

/* ------------------------------------------------------------------------
 * The spool */

struct segment {
	uint64_t seq;
	uint64_t bytes;   /* on disk (for the write segment: what was appended) */
	uint64_t records; /* not yet replayed */
	uint64_t start;   /* where replay begins (the cursor's offset for the first one) */
	char (*first_rv)[CA_EVENTS_MAX_RV + 1]; /* per stream: the first record's resume point */
	bool *has_first;
};

struct ca_spool {
	char *dir;
	int dirfd, cursor_fd;
	uint64_t max_bytes, segment_bytes;
	size_t max_payload;
	char **streams;
	size_t nstreams;

	struct segment *segs; /* oldest first */
	size_t nsegs, segcap;
	int wfd; /* appends go to segs[nsegs - 1] while >= 0 */
	uint64_t next_seq;

	int rfd; /* reads segs[0] */
	uint64_t rseq;
	uint64_t roff; /* file offset of buf[0] */
	uint8_t *buf;
	size_t buf_cap, blen, bpos;
	bool in_corrupt;
	bool peeked;
	size_t peek_advance;
	uint64_t saved_seq, saved_off;

	uint8_t *enc;
	size_t enc_cap;
	struct ca_spool_stats st;
};

static void segment_name(uint64_t seq, char out[SEGMENT_NAME_LEN + 1])
{
	snprintf(out, SEGMENT_NAME_LEN + 1, "%016llx" SEGMENT_SUFFIX, (unsigned long long)seq);
}

static bool parse_segment_name(const char *name, uint64_t *seq)
{
	if (strlen(name) != SEGMENT_NAME_LEN || strcmp(name + 16, SEGMENT_SUFFIX) != 0)
		return false;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	*seq = v;
	return true;
}

static void segment_fini(struct segment *g)
{
	free(g->first_rv);
	free(g->has_first);
	memset(g, 0, sizeof *g);
}

static enum ca_err segment_init(struct ca_spool *s, struct segment *g, uint64_t seq)
{
	memset(g, 0, sizeof *g);
	g->seq = seq;
	size_t n = s->nstreams ? s->nstreams : 1;
	g->first_rv = calloc(n, sizeof *g->first_rv);
	g->has_first = calloc(n, sizeof *g->has_first);
	if (!g->first_rv || !g->has_first) {
		segment_fini(g);
		return CA_ENOMEM;
	}
	return CA_OK;
}

static void note_first(struct ca_spool *s, struct segment *g, const struct ca_spool_item *it)
{
	size_t i = it->stream_index;
	if (i >= s->nstreams || g->has_first[i])
		return;
	g->has_first[i] = true;
	ca_strlcpy(g->first_rv[i], it->resume_before ? it->resume_before : "",
	           sizeof g->first_rv[i]);
}

static size_t stream_index(const struct ca_spool *s, const char *stream)
{
	for (size_t i = 0; i < s->nstreams; i++)
		if (strcmp(s->streams[i], stream) == 0)
			return i;
	return SIZE_MAX;
}

static void reset_reader(struct ca_spool *s)
{
	if (s->rfd >= 0)
		close(s->rfd);
	s->rfd = -1;
	s->rseq = UINT64_MAX;
	s->roff = 0;
	s->blen = s->bpos = 0;
	s->in_corrupt = false;
	s->peeked = false;
}

/* Delete the oldest segment; its records not replayed count as dropped
 * when dropped is set. */
static void remove_head(struct ca_spool *s, bool dropped)
{
	if (s->nsegs == 0)
		return;
	struct segment *g = &s->segs[0];
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(g->seq, name);
	unlinkat(s->dirfd, name, 0);
	if (s->nsegs == 1 && s->wfd >= 0) {
		close(s->wfd);
		s->wfd = -1;
	}
	if (dropped)
		s->st.dropped += g->records;
	s->st.records -= g->records;
	s->st.bytes -= g->bytes;
	segment_fini(g);
	memmove(s->segs, s->segs + 1, (s->nsegs - 1) * sizeof *s->segs);
	s->nsegs--;
	s->st.segments = s->nsegs;
	reset_reader(s);
}

static enum ca_err read_full(int fd, uint8_t *buf, size_t want, uint64_t off, size_t *got)
{
	*got = 0;
	while (*got < want) {
		ssize_t n = pread(fd, buf + *got, want - *got, (off_t)(off + *got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return CA_EIO;
		if (n == 0)
			break;
		*got += (size_t)n;
	}
	return CA_OK;
}

/* Count the records of an inherited segment from g->start, and each
 * stream's first resume point. Corrupt regions are left for the replay to
 * count. o NULL: count only (a segment about to be deleted). *valid_end: where the last whole
 * record ends (g->start when none), so that the last segment can be appended to after its torn tail
 * is cut. */
static enum ca_err scan_segment(struct ca_spool *s, struct segment *g, int fd,
                                const struct ca_spool_options *o, uint64_t *valid_end)
{
	uint64_t off = g->start;
	*valid_end = g->start;
	size_t blen = 0;
	for (;;) {
		size_t got = 0;
		bool at_end = true;
		if (off + blen < g->bytes) {
			uint64_t left = g->bytes - off - blen;
			size_t room = s->buf_cap - blen;
			if (read_full(fd, s->buf + blen, left < room ? (size_t)left : room,
			              off + blen, &got) != CA_OK)
				return CA_EIO;
			blen += got;
			at_end = got == 0 || off + blen >= g->bytes;
		}
		size_t pos = 0;
		for (;;) {
			struct ca_spool_item it;
			size_t adv;
			enum ca_spool_scan r = ca_spool_scan_record(s->buf + pos, blen - pos,
			                                            s->max_payload, &it, &adv);
			if (r == CA_SPOOL_NEED_MORE && !at_end)
				break;
			if (r == CA_SPOOL_NEED_MORE) {
				/* A record running past the end: a torn tail, or a
				 * corrupt length; whole records may follow it. */
				if (pos >= blen)
					return CA_OK;
				pos++;
				continue;
			}
			if (r == CA_SPOOL_RECORD) {
				*valid_end = off + pos + adv;
				g->records++;
				if (o) {
					it.stream_index = stream_index(s, it.stream);
					note_first(s, g, &it);
					if (o->inherited)
						o->inherited(o->inherited_arg, &it);
				}
			}
			pos += adv;
		}
		memmove(s->buf, s->buf + pos, blen - pos);
		off += pos;
		blen -= pos;
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static bool read_cursor(struct ca_spool *s, uint64_t *seq, uint64_t *off)
{
	uint8_t c[CURSOR_BYTES];
	size_t got = 0;
	if (read_full(s->cursor_fd, c, sizeof c, 0, &got) != CA_OK || got != sizeof c)
		return false;
	if (get_le32(c) != CURSOR_MAGIC || get_le32(c + 20) != ca_spool_crc32c(0, c, 20))
		return false;
	*seq = get_le64(c + 4);
	*off = get_le64(c + 12);
	return true;
}

void ca_spool_save_cursor(struct ca_spool *s)
{
	if (!s)
		return;
	uint64_t seq = s->nsegs ? s->segs[0].seq : s->next_seq;
	uint64_t off = 0;
	if (s->nsegs)
		off = s->rseq == seq ? s->roff + s->bpos : s->segs[0].start;
	if (seq == s->saved_seq && off == s->saved_off)
		return;
	uint8_t c[CURSOR_BYTES];
	put_le32(c, CURSOR_MAGIC);
	put_le64(c + 4, seq);
	put_le64(c + 12, off);
	put_le32(c + 20, ca_spool_crc32c(0, c, 20));
	/* A torn cursor fails its checksum and the head segment is replayed
	 * from its start: duplicates, never a loss. */
	if (pwrite(s->cursor_fd, c, sizeof c, 0) == (ssize_t)sizeof c) {
		s->saved_seq = seq;
		s->saved_off = off;
	}
}

/* Go on writing the last segment a previous run left, rather than start
 * a new one: a new segment per run would let restarts during one outage
 * fill the segment table (CA_SPOOL_MAX_SEGMENTS) with near-empty segments
 * and delete the oldest events far below max_bytes. What follows the last
 * whole record (a torn tail of a killed run, garbage) is cut first, counted
 * once as corrupt, so appends land right after whole records. When the
 * file cannot be opened or cut, the first append starts a new segment, as
 * the tail then must stay a tail. */
static void append_to_last(struct ca_spool *s, uint64_t valid_end)
{
	struct segment *g = &s->segs[s->nsegs - 1];
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(g->seq, name);
	int fd = openat(s->dirfd, name, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return;
	if (valid_end < g->bytes) {
		if (ftruncate(fd, (off_t)valid_end) != 0) {
			close(fd);
			return;
		}
		s->st.corrupt++;
		s->st.bytes -= g->bytes - valid_end;
		g->bytes = valid_end;
	}
	s->wfd = fd;
}

static enum ca_err load_existing(struct ca_spool *s, const struct ca_spool_options *o, char *err,
                                 size_t errlen)
{
	uint64_t *seqs = NULL;
	size_t n = 0, cap = 0;
	enum ca_err rc = CA_OK;
	int dfd = dup(s->dirfd);
	DIR *d = dfd >= 0 ? fdopendir(dfd) : NULL;
	if (!d) {
		if (dfd >= 0)
			close(dfd);
		ca_set_err(err, errlen, "events.spool_dir: cannot list %s: %s", s->dir,
		           strerror(errno));
		return CA_EIO;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL && n < MAX_LISTED) {
		uint64_t seq;
		if (!parse_segment_name(de->d_name, &seq))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			uint64_t *ns = realloc(seqs, nc * sizeof *ns);
			if (!ns) {
				rc = CA_ENOMEM;
				goto out;
			}
			seqs = ns;
			cap = nc;
		}
		seqs[n++] = seq;
	}
	if (n)
		qsort(seqs, n, sizeof *seqs, cmp_u64);

	uint64_t cseq = 0, coff = 0, last_valid_end = 0;
	bool have_cursor = read_cursor(s, &cseq, &coff);
	s->next_seq = n ? seqs[n - 1] + 1 : 0;
	if (have_cursor && cseq + 1 > s->next_seq)
		s->next_seq = cseq + 1;
	s->saved_seq = have_cursor ? cseq : UINT64_MAX;
	s->saved_off = have_cursor ? coff : UINT64_MAX;

	/* Which segments stay, decided before any is scanned: the newest,
	 * going back, while they fit the cap (a smaller one than the last
	 * run's) and the segment table. Scanning hands each record to
	 * o->inherited (the dedup memory), so a record seen there and then
	 * deleted would have its version suppressed when the resumed watch
	 * sends it again: lost though it could have come back. */
	size_t keep_from = 0, kept = 0;
	uint64_t kept_bytes = 0;
	for (size_t k = n; k-- > 0;) {
		if (have_cursor && seqs[k] < cseq)
			break;
		char name[SEGMENT_NAME_LEN + 1];
		segment_name(seqs[k], name);
		struct stat st;
		if (fstatat(s->dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode))
			continue; /* skipped below too */
		if (kept == s->segcap || (uint64_t)st.st_size > s->max_bytes - kept_bytes) {
			keep_from = k + 1;
			break;
		}
		kept++;
		kept_bytes += (uint64_t)st.st_size;
	}

	for (size_t k = 0; k < n; k++) {
		char name[SEGMENT_NAME_LEN + 1];
		segment_name(seqs[k], name);
		if (have_cursor && seqs[k] < cseq) {
			unlinkat(s->dirfd, name, 0); /* replayed before the restart */
			continue;
		}
		int fd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
		struct stat st;
		if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		if (k < keep_from) {
			/* Past the cap: counted as dropped, never seen by o->inherited. */
			struct segment tmp = {.seq = seqs[k], .bytes = (uint64_t)st.st_size};
			if (have_cursor && seqs[k] == cseq && coff <= tmp.bytes)
				tmp.start = coff;
			uint64_t ignored;
			if (scan_segment(s, &tmp, fd, NULL, &ignored) == CA_OK)
				s->st.dropped += tmp.records;
			close(fd);
			unlinkat(s->dirfd, name, 0);
			continue;
		}
		if (s->nsegs == s->segcap) /* grown since it was looked at: the oldest go */
			remove_head(s, true);
		struct segment *g = &s->segs[s->nsegs];
		if ((rc = segment_init(s, g, seqs[k])) != CA_OK) {
			close(fd);
			goto out;
		}
		g->bytes = (uint64_t)st.st_size;
		if (have_cursor && seqs[k] == cseq && coff <= g->bytes)
			g->start = coff;
		uint64_t valid_end = 0;
		rc = scan_segment(s, g, fd, o, &valid_end);
		close(fd);
		if (rc != CA_OK) {
			segment_fini(g);
			unlinkat(s->dirfd, name, 0);
			rc = CA_OK;
			continue;
		}
		last_valid_end = valid_end;
		s->nsegs++;
		s->st.segments = s->nsegs;
		s->st.bytes += g->bytes;
		s->st.records += g->records;
		s->st.inherited += g->records;
	}
	/* Only when a file grew since it was looked at above. */
	while (s->nsegs && s->st.bytes > s->max_bytes)
		remove_head(s, true);
	if (s->nsegs)
		append_to_last(s, last_valid_end);
out:
	closedir(d);
	free(seqs);
	if (rc == CA_ENOMEM)
		ca_set_err(err, errlen, "events.spool_dir: out of memory reading %s", s->dir);
	return rc;
}

size_t ca_spool_memory_bytes(uint64_t max_bytes, uint64_t segment_bytes, size_t max_payload,
                             size_t nstreams)
{
	if (max_payload == 0 || max_payload > CA_SPOOL_MAX_PAYLOAD)
		max_payload = CA_SPOOL_MAX_PAYLOAD;
	if (segment_bytes == 0)
		segment_bytes = 1;
	size_t n = nstreams ? nstreams : 1;
	size_t segs = (size_t)CA_SPOOL_MAX_SEGMENTS(max_bytes, segment_bytes);
	size_t per_seg = sizeof(struct segment) + n * (CA_EVENTS_MAX_RV + 1 + sizeof(bool));
	return sizeof(struct ca_spool) + (max_payload + CA_SPOOL_HEADER + CA_SPOOL_READ_CHUNK) +
	       (max_payload + CA_SPOOL_HEADER) + segs * per_seg +
	       n * (sizeof(char *) + MAX_STREAM) +
	       1024 /* the directory's name, its listing while opening */;
}

enum ca_err ca_spool_open(struct ca_spool **out, const struct ca_spool_options *o, char *err,
                          size_t errlen)
{
	struct ca_spool *s = NULL;
	enum ca_err rc = CA_EINVAL;
	*out = NULL;
	if (!o->dir || !o->dir[0] || o->segment_bytes == 0 || o->max_bytes < 2 * o->segment_bytes) {
		ca_set_err(err, errlen,
		           "events.spool_dir: needs a directory and spool_max_bytes of at "
		           "least two segments");
		return CA_EINVAL;
	}
	s = calloc(1, sizeof *s);
	if (!s)
		goto nomem;
	s->dirfd = s->cursor_fd = s->wfd = s->rfd = -1;
	s->rseq = UINT64_MAX;
	s->max_bytes = o->max_bytes;
	s->segment_bytes = o->segment_bytes;
	s->max_payload = o->max_payload && o->max_payload < CA_SPOOL_MAX_PAYLOAD
	                         ? o->max_payload
	                         : CA_SPOOL_MAX_PAYLOAD;
	s->segcap = (size_t)CA_SPOOL_MAX_SEGMENTS(o->max_bytes, o->segment_bytes);
	s->dir = strdup(o->dir);
	s->buf_cap = s->max_payload + CA_SPOOL_HEADER + CA_SPOOL_READ_CHUNK;
	s->buf = malloc(s->buf_cap);
	s->enc_cap = s->max_payload + CA_SPOOL_HEADER;
	s->enc = malloc(s->enc_cap);
	s->segs = calloc(s->segcap, sizeof *s->segs);
	s->nstreams = o->nstreams;
	s->streams = calloc(o->nstreams ? o->nstreams : 1, sizeof *s->streams);
	if (!s->dir || !s->buf || !s->enc || !s->segs || !s->streams)
		goto nomem;
	for (size_t i = 0; i < o->nstreams; i++)
		if (!(s->streams[i] = strdup(o->streams[i] ? o->streams[i] : "")))
			goto nomem;

	if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
		ca_set_err(err, errlen, "events.spool_dir: cannot create %s: %s", o->dir,
		           strerror(errno));
		rc = CA_EIO;
		goto fail;
	}
	s->dirfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dirfd < 0) {
		ca_set_err(err, errlen, "events.spool_dir: cannot open %s: %s", o->dir,
		           errno == ENOTDIR ? "not a directory" : strerror(errno));
		rc = CA_EIO;
		goto fail;
	}
	/* Opening the cursor for writing is the proof the directory is
	 * writable, at start-up rather than at the first outage. */
	s->cursor_fd =
	        openat(s->dirfd, CURSOR_NAME, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->cursor_fd < 0) {
		ca_set_err(err, errlen,
		           "events.spool_dir: %s is not writable: %s (mount a writable "
		           "emptyDir there, or set events.spool_dir to \"\")",
		           o->dir, strerror(errno));
		rc = CA_EIO;
		goto fail;
	}
	if ((rc = load_existing(s, o, err, errlen)) != CA_OK)
		goto fail;
	*out = s;
	return CA_OK;
nomem:
	rc = CA_ENOMEM;
	ca_set_err(err, errlen, "events.spool_dir: out of memory");
fail:
	ca_spool_free(s);
	return rc;
}

void ca_spool_free(struct ca_spool *s)
{
	if (!s)
		return;
	ca_spool_save_cursor(s->cursor_fd >= 0 ? s : NULL);
	for (size_t i = 0; i < s->nsegs; i++)
		segment_fini(&s->segs[i]);
	for (size_t i = 0; s->streams && i < s->nstreams; i++)
		free(s->streams[i]);
	if (s->wfd >= 0)
		close(s->wfd);
	if (s->rfd >= 0)
		close(s->rfd);
	if (s->cursor_fd >= 0)
		close(s->cursor_fd);
	if (s->dirfd >= 0)
		close(s->dirfd);
	free(s->streams);
	free(s->segs);
	free(s->buf);
	free(s->enc);
	free(s->dir);
	free(s);
}

/* Close the write segment: the next append starts a new one. */
static void roll(struct ca_spool *s)
{
	if (s->wfd >= 0)
		close(s->wfd);
	s->wfd = -1;
}

/* The directory was removed under us (by hand, or a volume cleaned):
 * dirfd names a deleted directory, where nothing can be created again.
 * The files the segment table names went with it, so their records are
 * counted as dropped; the directory is made again and the cursor
 * reopened, so the spool works again in this run. */
static enum ca_err reopen_dir(struct ca_spool *s)
{
	while (s->nsegs)
		remove_head(s, true);
	roll(s);
	if (mkdir(s->dir, 0700) != 0 && errno != EEXIST)
		return CA_EIO;
	int dfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0)
		return CA_EIO;
	int cfd = openat(dfd, CURSOR_NAME, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (cfd < 0) {
		int e = errno;
		close(dfd);
		errno = e;
		return CA_EIO;
	}
	close(s->dirfd);
	close(s->cursor_fd);
	s->dirfd = dfd;
	s->cursor_fd = cfd;
	s->saved_seq = s->saved_off = UINT64_MAX; /* the new cursor file is empty */
	return CA_OK;
}

static enum ca_err open_write_segment(struct ca_spool *s, char *why, size_t whylen)
{
	if (s->nsegs == s->segcap)
		remove_head(s, true);
	struct segment *g = &s->segs[s->nsegs];
	enum ca_err rc = segment_init(s, g, s->next_seq);
	if (rc != CA_OK) {
		ca_set_err(why, whylen, "out of memory");
		return rc;
	}
	char name[SEGMENT_NAME_LEN + 1];
	segment_name(g->seq, name);
	const int flags = O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC | O_NOFOLLOW;
	int fd = openat(s->dirfd, name, flags, 0600);
	if (fd < 0 && errno == ENOENT) {
		/* reopen_dir empties the table, g with it: build it again. */
		segment_fini(g);
		if (reopen_dir(s) != CA_OK) {
			ca_set_err(why, whylen, "%s was removed and cannot be made again: %s",
			           s->dir, strerror(errno));
			return CA_EIO;
		}
		g = &s->segs[0];
		if ((rc = segment_init(s, g, s->next_seq)) != CA_OK) {
			ca_set_err(why, whylen, "out of memory");
			return rc;
		}
		fd = openat(s->dirfd, name, flags, 0600);
	}
	if (fd < 0) {
		ca_set_err(why, whylen, "cannot create %s/%s: %s", s->dir, name, strerror(errno));
		segment_fini(g);
		return CA_EIO;
	}
	s->next_seq++;
	s->wfd = fd;
	s->nsegs++;
	s->st.segments = s->nsegs;
	return CA_OK;
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = write(fd, p, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return errno;
		if (w == 0)
			return EIO;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

enum ca_err ca_spool_append(struct ca_spool *s, const struct ca_spool_item *item, char *why,
                            size_t whylen)
{
	size_t n = ca_spool_encode_record(item, s->enc, s->enc_cap);
	if (n == 0) {
		ca_set_err(why, whylen, "event too large for the spool");
		s->st.dropped++;
		return CA_ETOOBIG;
	}
	for (int attempt = 0;; attempt++) {
		/* Room under the cap: the oldest segment goes, even the one being
		 * written when it is the only one. */
		while (s->nsegs && s->st.bytes + n > s->max_bytes) {
			if (s->nsegs == 1)
				roll(s);
			remove_head(s, true);
		}
		struct segment *last = s->nsegs ? &s->segs[s->nsegs - 1] : NULL;
		if (s->wfd >= 0 && last && last->bytes > 0 && last->bytes + n > s->segment_bytes)
			roll(s);
		enum ca_err rc;
		if (s->wfd < 0 && (rc = open_write_segment(s, why, whylen)) != CA_OK) {
			s->st.write_errors++;
			s->st.dropped++;
			return rc;
		}
		last = &s->segs[s->nsegs - 1];
		int64_t t0 = ca_now_monotonic_us();
		int e = write_all(s->wfd, s->enc, n);
		s->st.append_us += ca_now_monotonic_us() - t0;
		if (e == 0) {
			last->bytes += n;
			last->records++;
			s->st.bytes += n;
			s->st.records++;
			s->st.spooled++;
			note_first(s, last, item);
			return CA_OK;
		}
		/* Cut off what part of the record got out, so the segment stays a
		 * run of whole records, and stop writing there. */
		if (ftruncate(s->wfd, (off_t)last->bytes) != 0)
			roll(s);
		if (e == ENOSPC && attempt == 0 && s->nsegs > 1) {
			remove_head(s, true); /* the disk is full of something: give our oldest */
			continue;
		}
		s->st.write_errors++;
		s->st.dropped++;
		ca_set_err(why, whylen, "cannot write to %s: %s", s->dir, strerror(e));
		return CA_EIO;
	}
}

bool ca_spool_empty(const struct ca_spool *s)
{
	return !s || s->st.records == 0;
}

enum ca_err ca_spool_peek(struct ca_spool *s, struct ca_spool_item *out, char *why, size_t whylen)
{
	s->peeked = false;
	for (;;) {
		if (s->nsegs == 0)
			return CA_ENOTFOUND;
		struct segment *g = &s->segs[0];
		bool writing = s->nsegs == 1 && s->wfd >= 0;
		if (s->rseq != g->seq) {
			reset_reader(s);
			char name[SEGMENT_NAME_LEN + 1];
			segment_name(g->seq, name);
			s->rfd = openat(s->dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
			if (s->rfd < 0) {
				ca_set_err(why, whylen, "cannot open %s/%s: %s", s->dir, name,
				           strerror(errno));
				remove_head(s, true);
				return CA_EIO;
			}
			s->rseq = g->seq;
			s->roff = g->start;
		}
		size_t adv = 0;
		enum ca_spool_scan r = ca_spool_scan_record(s->buf + s->bpos, s->blen - s->bpos,
		                                            s->max_payload, out, &adv);
		if (r == CA_SPOOL_RECORD) {
			s->in_corrupt = false;
			s->peeked = true;
			s->peek_advance = adv;
			out->stream_index = stream_index(s, out->stream);
			return CA_OK;
		}
		if (r == CA_SPOOL_CORRUPT) {
			if (!s->in_corrupt)
				s->st.corrupt++;
			s->in_corrupt = true;
			s->bpos += adv;
			continue;
		}
		uint64_t file_pos = s->roff + s->blen;
		if (file_pos < g->bytes) {
			memmove(s->buf, s->buf + s->bpos, s->blen - s->bpos);
			s->roff += s->bpos;
			s->blen -= s->bpos;
			s->bpos = 0;
			uint64_t left = g->bytes - file_pos;
			size_t room = s->buf_cap - s->blen, got = 0;
			int64_t t0 = ca_now_monotonic_us();
			enum ca_err rc =
			        read_full(s->rfd, s->buf + s->blen,
			                  left < room ? (size_t)left : room, file_pos, &got);
			s->st.read_us += ca_now_monotonic_us() - t0;
			s->st.read_bytes += got;
			if (rc != CA_OK) {
				ca_set_err(why, whylen, "cannot read the spool in %s: %s", s->dir,
				           strerror(errno));
				if (writing)
					roll(s);
				remove_head(s, true);
				return CA_EIO;
			}
			if (got > 0) {
				s->blen += got;
				continue;
			}
			/* Shorter than it was: someone cut it. The total follows, or
			 * the gauge and the cap would drift for the rest of the run. */
			s->st.bytes -= g->bytes - file_pos;
			g->bytes = file_pos;
		}
		/* The end of the segment's data. Bytes left are a record running
		 * past it: the torn tail of a killed run, or a corrupt length
		 * with whole records after it, which the scan goes on to find. */
		if (s->blen > s->bpos) {
			if (!s->in_corrupt)
				s->st.corrupt++;
			s->in_corrupt = true;
			s->bpos++;
			continue;
		}
		/* Replayed to its end: records the scan or the appends counted but
		 * the replay did not find (a byte changed under us) are lost, not
		 * waiting. The segment being written goes too: had its lost
		 * records been left counted, the spool would never read empty and
		 * the ring behind it would stall. */
		if (writing)
			roll(s);
		remove_head(s, true);
	}
}

void ca_spool_consume(struct ca_spool *s)
{
	if (!s->peeked || s->nsegs == 0)
		return;
	s->peeked = false;
	s->bpos += s->peek_advance;
	struct segment *g = &s->segs[0];
	if (g->records) {
		g->records--;
		s->st.records--;
	}
	s->st.replayed++;
	/* Delete a segment as soon as it is replayed: the directory is empty
	 * when the spool is. */
	if (g->records == 0 && s->roff + s->bpos >= g->bytes) {
		if (s->nsegs == 1)
			roll(s);
		remove_head(s, false);
	}
}

const char *ca_spool_resume_rv(const struct ca_spool *s, size_t i)
{
	if (!s || i >= s->nstreams)
		return NULL;
	for (size_t k = 0; k < s->nsegs; k++)
		if (s->segs[k].has_first[i])
			return s->segs[k].first_rv[i];
	return NULL;
}

void ca_spool_get_stats(const struct ca_spool *s, struct ca_spool_stats *out)
{
	if (!s) {
		memset(out, 0, sizeof *out);
		return;
	}
	*out = s->st;
}
