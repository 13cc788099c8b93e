/* Unit tests of the on-disk event spool (events/spool.h) in a temporary
 * directory: order, segment roll, drop-oldest at the cap, a corrupt record
 * in the middle, a torn tail, reopening, the cursor, a full disk (a tiny
 * tmpfs when root may mount one), an unwritable directory, the scanner's
 * resynchronisation. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "events/spool.h"

static char base[] = "/tmp/test_spool_XXXXXX";
static int dir_counter;

static void new_dir(char *out, size_t n)
{
	snprintf(out, n, "%s/d%d", base, dir_counter++);
}

static void remove_tree(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return;
	struct dirent *de;
	char p[600];
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
		unlink(p);
	}
	closedir(d);
	rmdir(dir);
}

static size_t count_segments(const char *dir)
{
	DIR *d = opendir(dir);
	size_t n = 0;
	if (!d)
		return 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL)
		if (strstr(de->d_name, ".seg"))
			n++;
	closedir(d);
	return n;
}

/* The path of the n-th segment file in name order. */
static bool segment_path(const char *dir, size_t n, char *out, size_t outlen)
{
	struct dirent **list = NULL;
	int k = scandir(dir, &list, NULL, alphasort);
	bool found = false;
	size_t seen = 0;
	for (int i = 0; i < k; i++) {
		if (!found && strstr(list[i]->d_name, ".seg") && seen++ == n) {
			snprintf(out, outlen, "%s/%s", dir, list[i]->d_name);
			found = true;
		}
		free(list[i]);
	}
	free(list);
	return found;
}

static const char *const streams[] = {"/api/v1/events", "/api/v1/namespaces/a/events"};

static struct ca_spool *open_spool(const char *dir, uint64_t max, uint64_t seg)
{
	struct ca_spool *s = NULL;
	char err[256] = "";
	struct ca_spool_options o = {
	        .dir = dir,
	        .max_bytes = max,
	        .segment_bytes = seg,
	        .max_payload = 32 * 1024,
	        .streams = streams,
	        .nstreams = 2,
	};
	enum ca_err rc = ca_spool_open(&s, &o, err, sizeof err);
	if (rc != CA_OK)
		fprintf(stderr, "ca_spool_open: %s\n", err);
	CHECK_INT(rc, CA_OK);
	return s;
}

struct names {
	char uid[64], rv[32], before[32], msg[512];
};

static void fill(struct ca_spool_item *it, struct names *n, int i, size_t stream)
{
	memset(it, 0, sizeof *it);
	snprintf(n->uid, sizeof n->uid, "uid-%06d", i);
	snprintf(n->rv, sizeof n->rv, "%d", 1000 + i);
	snprintf(n->before, sizeof n->before, "%d", 999 + i);
	int len = 20 + (i * 37) % 300;
	for (int k = 0; k < len; k++)
		n->msg[k] = (char)('a' + (i + k) % 26);
	n->msg[len] = '\0';
	it->msg.uid = n->uid;
	it->msg.resource_version = n->rv;
	it->msg.message = n->msg;
	it->msg.type = "Warning";
	it->msg.reason = "BackOff";
	it->msg.namespace_ = "default";
	it->msg.involved_object.kind = "Pod";
	it->msg.involved_object.name = "web-1";
	it->msg.severity = "warning";
	it->msg.category = "crash";
	it->msg.first_timestamp = 1795307190123LL + i;
	it->msg.last_timestamp = -5 - i;
	it->msg.count = i + 1;
	it->msg.message_truncated = i % 2;
	it->resume_before = n->before;
	it->stream = streams[stream];
	it->stream_index = stream;
}

static int append_range(struct ca_spool *s, int from, int to)
{
	int ok = 0;
	for (int i = from; i < to; i++) {
		struct ca_spool_item it;
		struct names n;
		char why[256];
		fill(&it, &n, i, (size_t)(i % 2));
		if (ca_spool_append(s, &it, why, sizeof why) == CA_OK)
			ok++;
	}
	return ok;
}

/* Replay everything; check each record against what fill() made; returns
 * how many, the first index in *first, and whether they were consecutive. */
static int replay_all(struct ca_spool *s, int *first, bool *consecutive)
{
	int n = 0, prev = -1;
	*consecutive = true;
	*first = -1;
	for (;;) {
		struct ca_spool_item it;
		char why[256];
		enum ca_err rc = ca_spool_peek(s, &it, why, sizeof why);
		if (rc == CA_ENOTFOUND)
			break;
		CHECK_INT(rc, CA_OK);
		if (rc != CA_OK)
			break;
		int i = (int)strtol(it.msg.uid + 4, NULL, 10);
		struct ca_spool_item want;
		struct names wn;
		fill(&want, &wn, i, (size_t)(i % 2));
		CHECK_STR(it.msg.uid, wn.uid);
		CHECK_STR(it.msg.message, wn.msg);
		CHECK_STR(it.msg.resource_version, wn.rv);
		CHECK_STR(it.resume_before, wn.before);
		CHECK_STR(it.stream, streams[i % 2]);
		CHECK_INT(it.stream_index, i % 2);
		CHECK_STR(it.msg.reason, "BackOff");
		CHECK_STR(it.msg.involved_object.name, "web-1");
		CHECK_STR(it.msg.source_host, "");
		CHECK_INT(it.msg.first_timestamp, want.msg.first_timestamp);
		CHECK_INT(it.msg.last_timestamp, want.msg.last_timestamp);
		CHECK_INT(it.msg.count, i + 1);
		CHECK_INT(it.msg.message_truncated, i % 2);
		CHECK(it.msg.cluster_id == NULL);
		if (*first < 0)
			*first = i;
		if (prev >= 0 && i != prev + 1)
			*consecutive = false;
		prev = i;
		ca_spool_consume(s);
		n++;
	}
	return n;
}

static void test_order(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 64 << 20, 4 << 20);
	if (!s)
		return;
	struct stat st;
	CHECK(stat(dir, &st) == 0 && (st.st_mode & 0777) == 0700);
	CHECK(ca_spool_empty(s));
	CHECK(ca_spool_resume_rv(s, 0) == NULL);
	CHECK_INT(append_range(s, 0, 1000), 1000);
	char seg[600];
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	CHECK(stat(seg, &st) == 0 && (st.st_mode & 0777) == 0600);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 1000);
	CHECK_INT(ss.spooled, 1000);
	CHECK_INT(ss.segments, 1);
	CHECK_STR(ca_spool_resume_rv(s, 0), "999");
	CHECK_STR(ca_spool_resume_rv(s, 1), "1000");
	/* Appends while replaying go behind. */
	int first = 0;
	bool consecutive = false;
	struct ca_spool_item it;
	char why[256];
	CHECK_INT(ca_spool_peek(s, &it, why, sizeof why), CA_OK);
	ca_spool_consume(s);
	CHECK_INT(append_range(s, 1000, 1100), 100);
	CHECK_INT(replay_all(s, &first, &consecutive), 1099);
	CHECK_INT(first, 1);
	CHECK(consecutive);
	CHECK(ca_spool_empty(s));
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 0);
	CHECK_INT(ss.bytes, 0);
	CHECK_INT(ss.replayed, 1100);
	CHECK_INT(ss.corrupt, 0);
	CHECK_INT(count_segments(dir), 0); /* replayed segments are deleted */
	CHECK(ca_spool_resume_rv(s, 0) == NULL);
	/* And it goes on after being empty. */
	CHECK_INT(append_range(s, 2000, 2010), 10);
	CHECK_INT(replay_all(s, &first, &consecutive), 10);
	CHECK_INT(first, 2000);
	ca_spool_free(s);
	remove_tree(dir);
}

static void test_roll_and_cap(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	/* ~250-byte records, 16 KiB segments, 64 KiB in all. */
	struct ca_spool *s = open_spool(dir, 64 << 10, 16 << 10);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 150), 150);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK(ss.segments >= 2);
	CHECK_INT(count_segments(dir), ss.segments);
	CHECK_INT(ss.dropped, 0);
	CHECK_INT(append_range(s, 150, 2000), 1850);
	ca_spool_get_stats(s, &ss);
	CHECK(ss.bytes <= 64 << 10);
	CHECK(ss.dropped > 0);
	CHECK(ss.segments <= 5);
	CHECK_INT(ss.dropped + ss.records, 2000);
	/* The newest are kept, the oldest went, in order. */
	int first = 0;
	bool consecutive = false;
	int n = replay_all(s, &first, &consecutive);
	CHECK(consecutive);
	CHECK_INT(first + n, 2000);
	CHECK_INT(first, (int)ss.dropped);
	/* The resume point follows the oldest kept record. */
	ca_spool_free(s);
	remove_tree(dir);
}

static void flip_byte(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	CHECK(fd >= 0);
	unsigned char c = 0;
	CHECK(pread(fd, &c, 1, off) == 1);
	c ^= 0x5a;
	CHECK(pwrite(fd, &c, 1, off) == 1);
	close(fd);
}

static void test_corrupt_and_torn(void)
{
	char dir[300], seg[600];
	int first = 0;
	bool consecutive = false;
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 64 << 20, 4 << 20);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 10), 10);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	uint64_t total = ss.bytes;
	ca_spool_free(s);
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	/* A byte in the middle of the file (inside some record's payload),
	 * and 7 bytes cut off the end (the last record torn). */
	flip_byte(seg, (off_t)(total / 2));
	CHECK(truncate(seg, (off_t)(total - 7)) == 0);
	s = open_spool(dir, 64 << 20, 4 << 20);
	if (!s)
		return;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.inherited, 8);
	/* New events go behind the damaged ones, in a new segment. */
	CHECK_INT(append_range(s, 10, 12), 2);
	int got[16], n = 0;
	for (;;) {
		struct ca_spool_item it;
		char why[256];
		if (ca_spool_peek(s, &it, why, sizeof why) != CA_OK)
			break;
		if (n < 16)
			got[n] = (int)strtol(it.msg.uid + 4, NULL, 10);
		n++;
		ca_spool_consume(s);
	}
	CHECK_INT(n, 10); /* 12 written, one corrupt, one torn */
	for (int k = 1; k < n && k < 16; k++)
		CHECK(got[k] > got[k - 1]);
	CHECK_INT(got[n - 1], 11);
	CHECK_INT(got[n - 3], 8); /* 9 was torn */
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.corrupt, 2);
	CHECK_INT(count_segments(dir), 0);
	ca_spool_free(s);

	/* A corrupt length in the middle that runs past the end of the file:
	 * the records after it are still found. */
	s = open_spool(dir, 64 << 20, 4 << 20);
	CHECK_INT(append_range(s, 0, 10), 10);
	ca_spool_get_stats(s, &ss);
	total = ss.bytes;
	ca_spool_free(s);
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	{
		/* record 2's header: records 0 and 1 before it, found by scanning */
		uint8_t file[8192];
		int rfd = open(seg, O_RDWR);
		ssize_t rd = pread(rfd, file, sizeof file, 0);
		CHECK(rd == (ssize_t)total);
		size_t at = 0, adv = 0;
		struct ca_spool_item tmp;
		for (int k = 0; k < 2; k++) {
			CHECK_INT(ca_spool_scan_record(file + at, (size_t)rd - at, 0, &tmp, &adv),
			          CA_SPOOL_RECORD);
			at += adv;
		}
		uint8_t len[4] = {0x00, 0x70, 0x00, 0x00}; /* 28 KiB: under the cap, past the end */
		CHECK(pwrite(rfd, len, 4, (off_t)(at + 4)) == 4);
		close(rfd);
	}
	s = open_spool(dir, 64 << 20, 4 << 20);
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.inherited, 9);
	n = replay_all(s, &first, &consecutive);
	CHECK_INT(n, 9);
	CHECK_INT(first, 0);
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.corrupt, 1);
	ca_spool_free(s);

	/* A file of garbage: counted once, skipped, never a crash. */
	s = open_spool(dir, 64 << 20, 4 << 20);
	CHECK_INT(append_range(s, 0, 3), 3);
	ca_spool_free(s);
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	int fd = open(seg, O_WRONLY | O_TRUNC);
	char junk[5000];
	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (char)(i * 131 + 7);
	memcpy(junk + 100, "CASP", 4); /* a false magic inside */
	CHECK(write(fd, junk, sizeof junk) == (ssize_t)sizeof junk);
	close(fd);
	s = open_spool(dir, 64 << 20, 4 << 20);
	CHECK_INT(replay_all(s, &first, &consecutive), 0);
	ca_spool_get_stats(s, &ss);
	CHECK(ss.corrupt >= 1);
	CHECK(ca_spool_empty(s));
	ca_spool_free(s);
	remove_tree(dir);
}

static void test_reopen_cursor(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 1 << 20, 16 << 10);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 200), 200);
	for (int i = 0; i < 120; i++) {
		struct ca_spool_item it;
		char why[256];
		CHECK_INT(ca_spool_peek(s, &it, why, sizeof why), CA_OK);
		ca_spool_consume(s);
	}
	ca_spool_save_cursor(s);
	ca_spool_free(s);
	s = open_spool(dir, 1 << 20, 16 << 10);
	if (!s)
		return;
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.inherited, 80);
	CHECK_INT(ss.records, 80);
	/* The resume point of a stream is no later than its oldest record
	 * kept (a replayed record of the head segment may be named). */
	const char *rv = ca_spool_resume_rv(s, 0);
	CHECK(rv != NULL && strtol(rv, NULL, 10) <= 999 + 120);
	CHECK_INT(append_range(s, 200, 210), 10);
	int first = 0;
	bool consecutive = false;
	CHECK_INT(replay_all(s, &first, &consecutive), 90);
	CHECK_INT(first, 120);
	CHECK(consecutive);
	ca_spool_free(s);

	/* Without a cursor (or a torn one) the head segment is replayed from
	 * its start: duplicates, never a loss. */
	s = open_spool(dir, 1 << 20, 16 << 10);
	CHECK_INT(append_range(s, 0, 5), 5);
	ca_spool_free(s);
	char cur[400];
	snprintf(cur, sizeof cur, "%s/cursor", dir);
	flip_byte(cur, 10);
	s = open_spool(dir, 1 << 20, 16 << 10);
	CHECK_INT(replay_all(s, &first, &consecutive), 5);
	ca_spool_free(s);
	remove_tree(dir);

	/* A smaller cap at the next start: the oldest go at once. */
	new_dir(dir, sizeof dir);
	s = open_spool(dir, 1 << 20, 16 << 10);
	CHECK_INT(append_range(s, 0, 1000), 1000);
	ca_spool_free(s);
	s = open_spool(dir, 64 << 10, 16 << 10);
	ca_spool_get_stats(s, &ss);
	CHECK(ss.bytes <= 64 << 10);
	CHECK(ss.dropped > 0);
	int n = replay_all(s, &first, &consecutive);
	CHECK(consecutive);
	CHECK_INT(first + n, 1000);
	ca_spool_free(s);
	remove_tree(dir);
}

static size_t file_size(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 ? (size_t)st.st_size : 0;
}

/* Restarts during one outage: each run adds two events to a spool far
 * below its cap. A run goes on writing the last segment of the one before
 * (after cutting a torn tail), so the runs do not fill the segment table
 * with near-empty segments and lose the oldest events (18 segments at
 * most here: 25 restarts used to drop 14 events with 11 KiB of 64 KiB
 * used). */
static void test_restarts(void)
{
	char dir[300], seg[600];
	new_dir(dir, sizeof dir);
	struct ca_spool_stats ss;
	for (int run = 0; run < 25; run++) {
		struct ca_spool *s = open_spool(dir, 64 << 10, 4096);
		if (!s)
			return;
		ca_spool_get_stats(s, &ss);
		CHECK_INT(ss.dropped, 0);
		CHECK_INT(ss.inherited, run * 2 - (run >= 10));
		CHECK_INT(ss.corrupt, run == 10);
		CHECK_INT(append_range(s, run * 2, run * 2 + 2), 2);
		ca_spool_free(s);
		if (run == 9) {
			/* A killed run: its last record torn. */
			size_t n = count_segments(dir);
			CHECK(n > 0 && segment_path(dir, n - 1, seg, sizeof seg));
			CHECK(truncate(seg, (off_t)(file_size(seg) - 5)) == 0);
		}
	}
	struct ca_spool *s = open_spool(dir, 64 << 10, 4096);
	if (!s)
		return;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 49);
	CHECK_INT(ss.inherited, 49);
	CHECK_INT(ss.dropped, 0);
	CHECK(ss.bytes < 16 << 10);
	CHECK_INT(ss.segments, count_segments(dir));
	CHECK(ss.segments <= (ss.bytes + 4095) / 4096 + 1);
	int got[64], n = 0;
	for (;;) {
		struct ca_spool_item it;
		char why[256];
		if (ca_spool_peek(s, &it, why, sizeof why) != CA_OK)
			break;
		if (n < 64)
			got[n] = (int)strtol(it.msg.uid + 4, NULL, 10);
		n++;
		ca_spool_consume(s);
	}
	CHECK_INT(n, 49);
	for (int k = 0; k < n && k < 64; k++)
		CHECK_INT(got[k], k < 19 ? k : k + 1); /* 19, the last of run 9, was torn */
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.corrupt, 0); /* the torn tail was counted by the run that cut it */
	CHECK_INT(count_segments(dir), 0);
	ca_spool_free(s);
	remove_tree(dir);
}

/* A corrupt record in the segment still being written: the replay reaches
 * its end with a record counted but not found. That record is lost, and
 * the spool must read empty, else the ring behind it waits for an append
 * that may never come. */
static void test_write_segment_corrupt(void)
{
	char dir[300], seg[600];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 4 << 20, 1 << 20);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 5), 5);
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	/* A payload byte of the third record. */
	uint8_t buf[8192];
	int fd = open(seg, O_RDONLY);
	ssize_t n = pread(fd, buf, sizeof buf, 0);
	close(fd);
	size_t at = 0, adv = 0;
	struct ca_spool_item tmp;
	for (int k = 0; k < 2; k++) {
		CHECK_INT(ca_spool_scan_record(buf + at, (size_t)n - at, 0, &tmp, &adv),
		          CA_SPOOL_RECORD);
		at += adv;
	}
	flip_byte(seg, (off_t)(at + CA_SPOOL_HEADER + 20));
	int first = 0;
	bool consecutive = false;
	CHECK_INT(replay_all(s, &first, &consecutive), 4);
	struct ca_spool_item it;
	char why[256];
	CHECK_INT(ca_spool_peek(s, &it, why, sizeof why), CA_ENOTFOUND);
	CHECK(ca_spool_empty(s));
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 0);
	CHECK_INT(ss.replayed, 4);
	CHECK_INT(ss.corrupt, 1);
	CHECK_INT(ss.dropped, 1);
	CHECK_INT(ss.bytes, 0);
	CHECK_INT(ss.segments, 0);
	CHECK_INT(count_segments(dir), 0);
	/* And it goes on. */
	CHECK_INT(append_range(s, 5, 7), 2);
	CHECK_INT(replay_all(s, &first, &consecutive), 2);
	CHECK_INT(first, 5);
	CHECK(ca_spool_empty(s));
	ca_spool_free(s);
	remove_tree(dir);
}

/* Records deleted at open (a smaller cap than the last run's) must not
 * reach the inherited callback: events.c seeds its dedup memory with them,
 * and the resumed watch's copies of deleted events would be suppressed. */
static int inherited_seen, inherited_first;

static void count_inherited(void *arg, const struct ca_spool_item *it)
{
	(void)arg;
	if (inherited_seen++ == 0)
		inherited_first = (int)strtol(it->msg.uid + 4, NULL, 10);
}

static void test_inherited_only_kept(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 1 << 20, 4096);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 200), 200);
	ca_spool_free(s);
	char err[256] = "";
	struct ca_spool_options o = {
	        .dir = dir,
	        .max_bytes = 8192,
	        .segment_bytes = 4096,
	        .max_payload = 32 * 1024,
	        .streams = streams,
	        .nstreams = 2,
	        .inherited = count_inherited,
	};
	inherited_seen = 0;
	inherited_first = -1;
	s = NULL;
	CHECK_INT(ca_spool_open(&s, &o, err, sizeof err), CA_OK);
	if (!s)
		return;
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	/* The newest segments that fit in 8 KiB: 23 records of 200. */
	CHECK_INT(ss.records, 23);
	CHECK_INT(inherited_seen, 23);
	CHECK_INT(ss.inherited, 23);
	CHECK_INT(ss.dropped, 177);
	CHECK_INT(inherited_first, 177);
	CHECK(ss.bytes <= 8192);
	CHECK_INT(count_segments(dir), ss.segments);
	int first = 0;
	bool consecutive = false;
	CHECK_INT(replay_all(s, &first, &consecutive), 23);
	CHECK_INT(first, 177);
	CHECK(consecutive);
	ca_spool_free(s);
	remove_tree(dir);
}

/* A segment cut shorter under the reader: st.bytes follows. */
static void test_shrunk_segment(void)
{
	char dir[300], seg[600];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 1 << 20, 4096);
	if (!s)
		return;
	CHECK_INT(append_range(s, 0, 40), 40);
	CHECK(segment_path(dir, 0, seg, sizeof seg));
	CHECK(truncate(seg, (off_t)(file_size(seg) / 2)) == 0);
	int first = 0;
	bool consecutive = false;
	replay_all(s, &first, &consecutive);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.segments, 0);
	CHECK_INT(ss.records, 0);
	CHECK_INT(ss.bytes, 0);
	/* The 7 records of the first segment's cut-off half are lost (the
	 * one torn in two is counted once as corrupt), the rest replayed. */
	CHECK_INT(ss.replayed, 33);
	CHECK_INT(ss.dropped, 7);
	CHECK_INT(ss.corrupt, 1);
	ca_spool_free(s);
	remove_tree(dir);
}

/* The directory removed while the spool is open, made again or not: the
 * spool writes again (it used to keep writing at a descriptor of the
 * deleted directory and fail every append for the rest of the run). */
static void test_dir_removed(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 1 << 20, 4096);
	if (!s)
		return;
	int first = 0;
	bool consecutive = false;
	CHECK_INT(append_range(s, 0, 3), 3);
	CHECK_INT(replay_all(s, &first, &consecutive), 3);
	remove_tree(dir);
	CHECK(mkdir(dir, 0700) == 0); /* by someone else */
	CHECK_INT(append_range(s, 3, 43), 40);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 40);
	CHECK_INT(ss.write_errors, 0);
	CHECK_INT(ss.dropped, 0);
	CHECK(count_segments(dir) > 0);
	CHECK_INT(count_segments(dir), ss.segments);
	ca_spool_free(s);
	s = open_spool(dir, 1 << 20, 4096);
	if (!s)
		return;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.inherited, 40);
	CHECK_INT(replay_all(s, &first, &consecutive), 40);
	CHECK_INT(first, 3);
	CHECK(consecutive);
	/* Removed and not made again: the spool makes it. */
	remove_tree(dir);
	CHECK_INT(append_range(s, 43, 48), 5);
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.records, 5);
	CHECK_INT(ss.write_errors, 0);
	CHECK_INT(ss.dropped, 0);
	struct stat st;
	CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
	CHECK_INT(replay_all(s, &first, &consecutive), 5);
	CHECK_INT(first, 43);
	ca_spool_free(s);
	/* The cursor went to the new directory too. */
	char cur[400];
	snprintf(cur, sizeof cur, "%s/cursor", dir);
	CHECK_INT(file_size(cur), 24);
	remove_tree(dir);
}

static void test_bad_dirs(void)
{
	struct ca_spool *s = NULL;
	char err[256] = "";
	char file[300];
	snprintf(file, sizeof file, "%s/plain-file", base);
	int fd = open(file, O_WRONLY | O_CREAT, 0600);
	close(fd);
	struct ca_spool_options o = {.dir = file, .max_bytes = 1 << 20, .segment_bytes = 64 << 10};
	CHECK_INT(ca_spool_open(&s, &o, err, sizeof err), CA_EIO);
	CHECK_CONTAINS(err, "not a directory");
	CHECK(s == NULL);
	/* /proc takes no new files, not even from root. */
	o.dir = "/proc";
	CHECK_INT(ca_spool_open(&s, &o, err, sizeof err), CA_EIO);
	CHECK_CONTAINS(err, "/proc is not writable");
	char missing[300];
	snprintf(missing, sizeof missing, "%s/no/such", base);
	o.dir = missing;
	CHECK_INT(ca_spool_open(&s, &o, err, sizeof err), CA_EIO);
	CHECK_CONTAINS(err, "cannot create");
	o.dir = base;
	o.max_bytes = o.segment_bytes;
	CHECK_INT(ca_spool_open(&s, &o, err, sizeof err), CA_EINVAL);
	unlink(file);
}

static void test_too_big(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	struct ca_spool *s = open_spool(dir, 1 << 20, 64 << 10);
	if (!s)
		return;
	struct ca_spool_item it;
	struct names n;
	fill(&it, &n, 1, 0);
	char *big = malloc(40000);
	memset(big, 'x', 39999);
	big[39999] = '\0';
	it.msg.message = big;
	char why[256];
	CHECK_INT(ca_spool_append(s, &it, why, sizeof why), CA_ETOOBIG);
	struct ca_spool_stats ss;
	ca_spool_get_stats(s, &ss);
	CHECK_INT(ss.dropped, 1);
	CHECK(ca_spool_empty(s));
	free(big);
	ca_spool_free(s);
	remove_tree(dir);
}

/* A full disk: a 64 KiB tmpfs under a cap of 1 MiB. The spool gives its
 * oldest segment to make room, records stay whole. */
static void test_full_disk(void)
{
	char dir[300];
	new_dir(dir, sizeof dir);
	CHECK(mkdir(dir, 0700) == 0);
	if (mount("tmpfs", dir, "tmpfs", 0, "size=64k,mode=0700") != 0) {
		fprintf(stderr, "test_full_disk skipped: cannot mount a tmpfs (%s)\n",
		        strerror(errno));
		rmdir(dir);
		return;
	}
	struct ca_spool *s = open_spool(dir, 1 << 20, 16 << 10);
	if (s) {
		int ok = append_range(s, 0, 2000);
		struct ca_spool_stats ss;
		ca_spool_get_stats(s, &ss);
		CHECK(ss.dropped > 0);
		CHECK(ss.bytes <= 64 << 10);
		CHECK_INT(ss.dropped + ss.records, 2000);
		CHECK(ok > 1000); /* room was made, most appends went in */
		int first = 0;
		bool consecutive = false;
		int n = replay_all(s, &first, &consecutive);
		CHECK_INT(n, (int)ss.records);
		ca_spool_get_stats(s, &ss);
		CHECK_INT(ss.corrupt, 0);
		ca_spool_free(s);
	}
	CHECK(umount(dir) == 0);
	rmdir(dir);
}

static void test_scanner(void)
{
	uint8_t buf[4096];
	struct ca_spool_item it;
	struct names n;
	size_t pos = 0, adv = 0;
	memset(buf, 0xee, sizeof buf);
	pos = 17;
	fill(&it, &n, 3, 1);
	size_t r1 = ca_spool_encode_record(&it, buf + pos, sizeof buf - pos);
	CHECK(r1 > CA_SPOOL_HEADER);
	pos += r1 + 5;
	memcpy(buf + pos, "CAS", 3); /* a partial magic */
	pos += 9;
	fill(&it, &n, 4, 0);
	size_t r2 = ca_spool_encode_record(&it, buf + pos, sizeof buf - pos);
	pos += r2;
	int records = 0, corrupt = 0;
	size_t at = 0;
	while (at < pos) {
		struct ca_spool_item out;
		enum ca_spool_scan r = ca_spool_scan_record(buf + at, pos - at, 0, &out, &adv);
		if (r == CA_SPOOL_NEED_MORE)
			break;
		if (r == CA_SPOOL_RECORD)
			records++;
		else
			corrupt++;
		CHECK(adv >= 1);
		at += adv;
	}
	CHECK_INT(records, 2);
	CHECK(corrupt >= 2);
	/* Every prefix of a record asks for more; the whole one is a record. */
	for (size_t k = 0; k < r2; k++)
		CHECK_INT(ca_spool_scan_record(buf + pos - r2, k, 0, &it, &adv),
		          CA_SPOOL_NEED_MORE);
	CHECK_INT(ca_spool_scan_record(buf + pos - r2, r2, 0, &it, &adv), CA_SPOOL_RECORD);
	/* Over the reader's cap: corrupt. */
	CHECK_INT(ca_spool_scan_record(buf + pos - r2, r2, 16, &it, &adv), CA_SPOOL_CORRUPT);
	/* Known CRC32C check value. */
	CHECK_INT(ca_spool_crc32c(0, "123456789", 9), 0xe3069283u);
	/* Too small a buffer for encoding. */
	CHECK_INT(ca_spool_encode_record(&it, buf, 40), 0);
}

int main(void)
{
	if (!mkdtemp(base)) {
		perror("mkdtemp");
		return 1;
	}
	test_scanner();
	test_order();
	test_roll_and_cap();
	test_corrupt_and_torn();
	test_reopen_cursor();
	test_restarts();
	test_write_segment_corrupt();
	test_inherited_only_kept();
	test_shrunk_segment();
	test_dir_removed();
	test_bad_dirs();
	test_too_big();
	test_full_disk();
	remove_tree(base);
	return check_report();
}
