#include <sys/stat.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "core/buf.h"
#include "core/file.h"
#include "core/loop.h"
#include "core/prom.h"
#include "core/timeutil.h"
#include "core/utf8.h"

static void test_buf(void)
{
	struct ca_buf b;
	ca_buf_init(&b, 8);
	CHECK_INT(ca_buf_append_str(&b, "abcd"), CA_OK);
	CHECK_INT(ca_buf_printf(&b, "%d", 1234), CA_OK);
	CHECK_STR(b.data, "abcd1234");
	CHECK_INT(ca_buf_append(&b, "x", 1), CA_ETOOBIG);
	CHECK_INT(b.len, 8);
	ca_buf_consume(&b, 3);
	CHECK_STR(b.data, "d1234");
	size_t n;
	char *p = ca_buf_take(&b, &n);
	CHECK_STR(p, "d1234");
	CHECK_INT(n, 5);
	free(p);
	CHECK(b.data == NULL);
	ca_buf_fini(&b);

	char small[4];
	CHECK_INT(ca_strlcpy(small, "abcdef", sizeof small), CA_ETOOBIG);
	CHECK_STR(small, "abc");
	CHECK_INT(ca_strlcpy(small, "ab", sizeof small), CA_OK);
	CHECK_STR(small, "ab");
}

static void test_json_string(void)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	CHECK_INT(ca_buf_append_json_string(&b, "a\"b\\c\n\x01 caf\xC3\xA9 \xE2\x82\xAC"), CA_OK);
	CHECK_STR(b.data, "\"a\\\"b\\\\c\\n\\u0001 caf\xC3\xA9 \xE2\x82\xAC\"");
	ca_buf_reset(&b);
	/* Invalid UTF-8 (a lone continuation byte, an overlong '/', a
	 * truncated sequence, an encoded surrogate) becomes U+FFFD per byte. */
	CHECK_INT(ca_buf_append_json_string(&b, "x\x80y\xC0\xAFz\xE2\x82"), CA_OK);
	CHECK_STR(b.data, "\"x\xEF\xBF\xBDy\xEF\xBF\xBD\xEF\xBF\xBDz\xEF\xBF\xBD\xEF\xBF\xBD\"");
	ca_buf_reset(&b);
	CHECK_INT(ca_buf_append_json_string(&b, "\xED\xA0\x80"), CA_OK);
	CHECK_STR(b.data, "\"\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\"");
	ca_buf_reset(&b);
	CHECK_INT(ca_buf_append_json_string(&b, NULL), CA_OK);
	CHECK_STR(b.data, "\"\"");
	ca_buf_fini(&b);
	/* The cap is respected. */
	ca_buf_init(&b, 4);
	CHECK_INT(ca_buf_append_json_string(&b, "abcdef"), CA_ETOOBIG);
	ca_buf_fini(&b);
}

static void test_utf8(void)
{
	/* ca_utf8_cut never splits a character. */
	const char *s = "a\xc3\xa9" "b\xe2\x82\xac" "c\xf0\x9f\x98\x80"; /* a é b € c 😀 */
	size_t n = strlen(s);
	CHECK_INT(ca_utf8_cut(s, n, 100), n);
	CHECK_INT(ca_utf8_cut(s, n, 1), 1);
	CHECK_INT(ca_utf8_cut(s, n, 2), 1);  /* inside é */
	CHECK_INT(ca_utf8_cut(s, n, 3), 3);
	CHECK_INT(ca_utf8_cut(s, n, 5), 4);  /* inside € */
	CHECK_INT(ca_utf8_cut(s, n, 6), 4);
	CHECK_INT(ca_utf8_cut(s, n, 7), 7);
	CHECK_INT(ca_utf8_cut(s, n, 9), 8);  /* inside 😀 */
	CHECK_INT(ca_utf8_cut(s, n, 11), 8);
	CHECK_INT(ca_utf8_cut(s, n, 0), 0);

	/* The validator: table 3-7 of the Unicode standard. */
	CHECK(ca_utf8_valid("", 0));
	CHECK(ca_utf8_valid("plain ascii text here", 21));
	CHECK(ca_utf8_valid("a\0b", 3));
	CHECK(!ca_utf8_valid("\xC0\xAF", 2));
	CHECK(!ca_utf8_valid("\xED\xA0\x80", 3));
	CHECK(!ca_utf8_valid("0123456789\xF4\x90\x80\x80", 14));
	CHECK(ca_utf8_valid("0123456789\xF4\x8F\xBF\xBF", 14));
	CHECK_INT(ca_utf8_seq((const unsigned char *)"\xE2\x82\xAC", 3), 3);
	CHECK_INT(ca_utf8_seq((const unsigned char *)"\xE2\x82\xAC", 2), 0); /* truncated */
	CHECK_INT(ca_utf8_seq((const unsigned char *)"\x80", 1), 0);
}

static void test_time(void)
{
	int64_t ms = 0;
	CHECK_INT(ca_parse_rfc3339("2026-11-22T00:26:30Z", &ms), CA_OK);
	CHECK_INT(ms, 1795307190000LL);
	char out[CA_RFC3339_LEN];
	ca_format_rfc3339(ms + 123, out);
	CHECK_STR(out, "2026-11-22T00:26:30.123Z");
	CHECK_INT(ca_parse_rfc3339("2026-11-22T01:26:30.5+01:00", &ms), CA_OK);
	CHECK_INT(ms, 1795307190500LL);
	CHECK_INT(ca_parse_rfc3339("2026-11-22 garbage", &ms), CA_EINVAL);
	CHECK_INT(ca_parse_rfc3339("", &ms), CA_EINVAL);

	CHECK_INT(ca_parse_duration("500ms", &ms), CA_OK);
	CHECK_INT(ms, 500);
	CHECK_INT(ca_parse_duration("30s", &ms), CA_OK);
	CHECK_INT(ms, 30000);
	CHECK_INT(ca_parse_duration("5m", &ms), CA_OK);
	CHECK_INT(ms, 300000);
	CHECK_INT(ca_parse_duration("2h", &ms), CA_OK);
	CHECK_INT(ms, 7200000);
	CHECK_INT(ca_parse_duration("12", &ms), CA_OK);
	CHECK_INT(ms, 12000);
	CHECK_INT(ca_parse_duration("-1s", &ms), CA_EINVAL);
	CHECK_INT(ca_parse_duration("1d", &ms), CA_EINVAL);
	CHECK_INT(ca_parse_duration("99999999999999999999s", &ms), CA_EINVAL);
	ca_format_duration(300000, out, sizeof out);
	CHECK_STR(out, "5m");
	ca_format_duration(1500, out, sizeof out);
	CHECK_STR(out, "1500ms");

	for (unsigned attempt = 0; attempt < 10; attempt++) {
		int64_t d = ca_backoff_ms(attempt, 800, 30000);
		int64_t base = 800LL << attempt;
		if (base > 30000)
			base = 30000;
		CHECK(d >= base / 2 && d <= base);
	}
}

struct loop_state {
	struct ca_loop *loop;
	int fired_once, fired_repeat, posted;
};

static void on_once(void *arg)
{
	((struct loop_state *)arg)->fired_once++;
}

static void on_repeat(void *arg)
{
	struct loop_state *s = arg;
	if (++s->fired_repeat == 3)
		ca_loop_stop(s->loop);
}

static void on_post(void *arg)
{
	((struct loop_state *)arg)->posted++;
}

static void on_pipe(void *arg, int fd, int events)
{
	char c;
	CHECK(events & CA_LOOP_READ);
	CHECK_INT(read(fd, &c, 1), 1);
	((struct loop_state *)arg)->posted += 10;
}

static void test_loop(void)
{
	struct loop_state s = { 0 };
	struct ca_loop_timer *once = NULL, *repeat = NULL;
	struct ca_loop_fd *h = NULL;
	int fds[2];
	CHECK(pipe(fds) == 0);
	CHECK_INT(ca_loop_new(&s.loop), CA_OK);
	CHECK_INT(ca_loop_timer_new(s.loop, on_once, &s, &once), CA_OK);
	CHECK_INT(ca_loop_timer_new(s.loop, on_repeat, &s, &repeat), CA_OK);
	CHECK_INT(ca_loop_fd_add(s.loop, fds[0], CA_LOOP_READ, on_pipe, &s, &h), CA_OK);
	ca_loop_timer_start(once, 1, 0);
	ca_loop_timer_start(repeat, 5, 5);
	CHECK_INT(ca_loop_post(s.loop, on_post, &s), CA_OK);
	CHECK_INT(write(fds[1], "x", 1), 1);
	CHECK_INT(ca_loop_run(s.loop), CA_OK);
	CHECK_INT(s.fired_once, 1);
	CHECK_INT(s.fired_repeat, 3);
	CHECK_INT(s.posted, 11);
	ca_loop_fd_del(h);
	ca_loop_timer_free(once);
	ca_loop_free(s.loop);
	close(fds[0]);
	close(fds[1]);
}

static void test_prom(void)
{
	struct ca_buf b;
	struct ca_prom p;
	ca_buf_init(&b, 0);
	ca_prom_init(&p, &b, "c\"1");
	ca_prom_single(&p, "agent_up", "gauge", "Up.", 1);
	CHECK_STR(b.data, "# HELP agent_up Up.\n# TYPE agent_up gauge\nagent_up{cluster_id=\"c\\\"1\"} 1\n");
	ca_buf_reset(&b);
	static const double bounds[] = { 0.1, 1 };
	struct ca_histogram h;
	ca_histogram_init(&h, bounds, 2);
	ca_histogram_observe(&h, 0.05);
	ca_histogram_observe(&h, 0.5);
	ca_histogram_observe(&h, 5);
	ca_prom_init(&p, &b, "c");
	ca_prom_histogram(&p, "d_seconds", "D.", &h);
	CHECK(strstr(b.data, "d_seconds_bucket{cluster_id=\"c\",le=\"0.1\"} 1\n") != NULL);
	CHECK(strstr(b.data, "d_seconds_bucket{cluster_id=\"c\",le=\"1\"} 2\n") != NULL);
	CHECK(strstr(b.data, "d_seconds_bucket{cluster_id=\"c\",le=\"+Inf\"} 3\n") != NULL);
	CHECK(strstr(b.data, "d_seconds_count{cluster_id=\"c\"} 3\n") != NULL);
	CHECK(strstr(b.data, "d_seconds_sum{cluster_id=\"c\"} 5.55") != NULL);
	ca_buf_fini(&b);
}

static void test_file(void)
{
	char dir[] = "/tmp/ca-test-core-XXXXXX";
	char path[256], *data = NULL;
	size_t len = 0;
	int64_t mtime = 0;
	CHECK(mkdtemp(dir) != NULL);
	snprintf(path, sizeof path, "%s/secret", dir);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs("s3cret\n", f);
	fclose(f);

	char why[128] = "";
	CHECK_INT(ca_read_file(path, 7, &data, &len, &mtime, why, sizeof why), CA_OK);
	CHECK_STR(data, "s3cret\n");
	CHECK_INT(len, 7);
	CHECK(mtime > 0);
	ca_free_secret(data);
	data = NULL;
	CHECK_INT(ca_read_file(path, 6, &data, &len, NULL, why, sizeof why), CA_ETOOBIG);
	CHECK_STR(why, "larger than 6 bytes");
	CHECK(data == NULL);
	CHECK_INT(ca_read_file(dir, 100, &data, &len, NULL, why, sizeof why), CA_EINVAL);
	CHECK_STR(why, "is a directory");
	CHECK(data == NULL);
	snprintf(path, sizeof path, "%s/missing", dir);
	CHECK_INT(ca_read_file(path, 100, &data, &len, NULL, why, sizeof why), CA_ENOTFOUND);
	CHECK_STR(why, "no such file");
	/* A FIFO without a writer would block open() for ever: refused at
	 * once (the test would hang otherwise). */
	char fifo[256];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	CHECK(mkfifo(fifo, 0600) == 0);
	CHECK_INT(ca_read_file(fifo, 100, &data, &len, NULL, why, sizeof why), CA_EINVAL);
	CHECK_STR(why, "is a FIFO, not a regular file");
	CHECK_INT(ca_read_secret(fifo, CA_SECRET_LINE, &data, &len, NULL, why, sizeof why), CA_EINVAL);
	unlink(fifo);
	/* /proc files report size 0: the buffer must grow as it reads. */
	CHECK_INT(ca_read_file("/proc/self/status", 1 << 20, &data, &len, NULL, NULL, 0), CA_OK);
	CHECK(data && len > 100 && strstr(data, "VmRSS") != NULL && strlen(data) == len);
	free(data);

	/* The one secret reader: trailing whitespace cut, one line of
	 * printable text, not empty, at most CA_SECRET_MAX. */
	static const struct {
		const char *content;
		unsigned flags;
		enum ca_err rc;
		const char *value_or_why;
	} secrets[] = {
		{ "tok\n", CA_SECRET_LINE, CA_OK, "tok" },
		{ "tok \t\r\n\n", CA_SECRET_LINE, CA_OK, "tok" },
		{ "  lead", CA_SECRET_LINE, CA_OK, "  lead" },
		{ "\n\n", CA_SECRET_LINE, CA_EINVAL, "is empty" },
		{ "", CA_SECRET_LINE, CA_EINVAL, "is empty" },
		{ "a\r\nInjected: 1", CA_SECRET_LINE, CA_EINVAL, "holds control bytes (a secret is one line of printable text)" },
		{ "a\x7f", CA_SECRET_LINE, CA_EINVAL, "holds control bytes (a secret is one line of printable text)" },
		{ "a\x01b", CA_SECRET_LINES, CA_EINVAL, "holds control bytes (NUL or other non-text bytes)" },
		{ "SUSEED\nUPUB\n", CA_SECRET_LINES, CA_OK, "SUSEED\nUPUB" },
	};
	snprintf(path, sizeof path, "%s/secret", dir);
	for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
		f = fopen(path, "w");
		CHECK(f != NULL);
		fputs(secrets[i].content, f);
		fclose(f);
		data = NULL;
		why[0] = '\0';
		CHECK_INT(ca_read_secret(path, secrets[i].flags, &data, &len, NULL, why, sizeof why), secrets[i].rc);
		if (secrets[i].rc == CA_OK) {
			CHECK_STR(data, secrets[i].value_or_why);
			CHECK_INT(len, strlen(secrets[i].value_or_why));
		} else {
			CHECK(data == NULL);
			CHECK_STR(why, secrets[i].value_or_why);
		}
		ca_free_secret(data);
	}
	/* NUL inside: refused, not cut at the NUL. */
	f = fopen(path, "w");
	CHECK(f != NULL);
	fwrite("ab\0cd", 1, 5, f);
	fclose(f);
	CHECK_INT(ca_read_secret(path, CA_SECRET_LINE, &data, &len, NULL, why, sizeof why), CA_EINVAL);
	/* Over the cap. */
	f = fopen(path, "w");
	CHECK(f != NULL);
	for (size_t i = 0; i <= CA_SECRET_MAX; i++)
		fputc('x', f);
	fclose(f);
	CHECK_INT(ca_read_secret(path, CA_SECRET_LINE, &data, &len, NULL, why, sizeof why), CA_ETOOBIG);
	CHECK_STR(why, "larger than 64 KiB");

	char err[16];
	ca_set_err(err, sizeof err, "key %s is bad", "nats.servers");
	CHECK_STR(err, "key nats.server");
	ca_set_err(NULL, 0, "ignored %d", 1);
	snprintf(path, sizeof path, "%s/secret", dir);
	unlink(path);
	rmdir(dir);
}

int main(void)
{
	test_buf();
	test_json_string();
	test_utf8();
	test_time();
	test_loop();
	test_prom();
	test_file();
	return check_report();
}
