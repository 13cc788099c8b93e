/* log module: one record per line, JSON escaping, text format, levels. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "log/log.h"

static char captured[65536];

/* Run fn with the log redirected into a temp file; leave the text in
 * captured. */
static void capture(void (*fn)(void))
{
	char path[] = "/tmp/ca-test-log-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	ca_log_set_fd(fd);
	fn();
	ca_log_set_fd(2);
	lseek(fd, 0, SEEK_SET);
	ssize_t n = read(fd, captured, sizeof captured - 1);
	captured[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
}

static void write_json_records(void)
{
	ca_log_configure(CA_LOG_INFO, true);
	ca_log_set_cluster_id("prod-1");
	ca_log(CA_LOG_DEBUG, "bus", "dropped: below the level", NULL);
	ca_log(CA_LOG_WARN, "bus", "quote \" backslash \\ newline \n tab \t bell \a", "server",
	       "nats://a:4222", "reason", NULL, NULL);
	ca_logf(CA_LOG_ERROR, "kube", "status %d from %s", 503, "/api/v1/events");
}

static void test_json(void)
{
	capture(write_json_records);
	/* Exactly two records, one per line, each a JSON object. */
	char *second = strchr(captured, '\n');
	CHECK(second != NULL);
	CHECK(second && strchr(second + 1, '\n') != NULL && *(strchr(second + 1, '\n') + 1) == '\0');
	json_error_t jerr;
	json_t *a = json_loadb(captured, (size_t)(second - captured), 0, &jerr);
	json_t *b = second ? json_loads(second + 1, JSON_DISABLE_EOF_CHECK, &jerr) : NULL;
	CHECK(a != NULL && b != NULL);
	if (a && b) {
		CHECK_STR(json_string_value(json_object_get(a, "level")), "warn");
		CHECK_STR(json_string_value(json_object_get(a, "component")), "bus");
		CHECK_STR(json_string_value(json_object_get(a, "cluster_id")), "prod-1");
		CHECK_STR(json_string_value(json_object_get(a, "msg")),
		          "quote \" backslash \\ newline \n tab \t bell \a");
		CHECK_STR(json_string_value(json_object_get(a, "server")), "nats://a:4222");
		CHECK(json_is_null(json_object_get(a, "reason")));
		const char *ts = json_string_value(json_object_get(a, "ts"));
		CHECK(ts && strlen(ts) == 24 && ts[10] == 'T' && ts[23] == 'Z');
		CHECK_STR(json_string_value(json_object_get(b, "level")), "error");
		CHECK_STR(json_string_value(json_object_get(b, "msg")), "status 503 from /api/v1/events");
	}
	json_decref(a);
	json_decref(b);
}

static void write_bad_utf8_records(void)
{
	ca_log_configure(CA_LOG_INFO, true);
	/* Bytes >= 0x80 that are not UTF-8, and a field cut inside a
	 * character by a "%.4s" (as a caller cutting a peer's text would). */
	char cut[32];
	snprintf(cut, sizeof cut, "%.4s", "caf\xC3\xA9");
	ca_log(CA_LOG_WARN, "bus", "bad \xFF\xFE bytes", "cut", cut, "latin1", "na\xEFve", NULL);
}

static void test_bad_utf8(void)
{
	capture(write_bad_utf8_records);
	json_error_t jerr;
	/* jansson refuses invalid UTF-8: the record must be valid JSON. */
	json_t *a = json_loads(captured, JSON_DISABLE_EOF_CHECK, &jerr);
	CHECK(a != NULL);
	if (a) {
		CHECK_STR(json_string_value(json_object_get(a, "msg")), "bad \xEF\xBF\xBD\xEF\xBF\xBD bytes");
		CHECK_STR(json_string_value(json_object_get(a, "cut")), "caf\xEF\xBF\xBD");
		CHECK_STR(json_string_value(json_object_get(a, "latin1")), "na\xEF\xBF\xBDve");
	}
	json_decref(a);
}

static void write_text_records(void)
{
	ca_log_configure(CA_LOG_DEBUG, false);
	ca_log(CA_LOG_DEBUG, "agent", "two\nlines", "k", "v\nw", NULL);
}

static void test_text(void)
{
	capture(write_text_records);
	/* A record stays on one line even when its text has newlines. */
	CHECK(strchr(captured, '\n') == captured + strlen(captured) - 1);
	CHECK(strstr(captured, "debug agent: two?lines k=v?w\n") != NULL);
}

static void test_levels(void)
{
	enum ca_log_level l;
	CHECK_INT(ca_log_level_parse("WARNING", &l), CA_OK);
	CHECK_INT(l, CA_LOG_WARN);
	CHECK_INT(ca_log_level_parse("error", &l), CA_OK);
	CHECK_INT(l, CA_LOG_ERROR);
	CHECK_INT(ca_log_level_parse("loud", &l), CA_EINVAL);
	CHECK_INT(ca_log_level_parse(NULL, &l), CA_EINVAL);
	ca_log_configure(CA_LOG_WARN, true);
	CHECK(!ca_log_enabled(CA_LOG_INFO));
	CHECK(ca_log_enabled(CA_LOG_ERROR));
}

/* A record too big for the log's buffer is cut, but still one line of
 * valid JSON, and the next record starts on a line of its own. */
static void test_oversized_record(void)
{
	size_t big = (size_t)3 << 20;
	char *value = malloc(big + 1);
	char *ctl = malloc(400001);
	size_t outcap = (size_t)16 << 20;
	char *out = malloc(outcap);
	CHECK(value && ctl && out);
	if (!value || !ctl || !out)
		goto out;
	memset(value, 'x', big);
	value[big] = '\0';
	memset(ctl, '\x01', 400000); /* 6 bytes each once escaped */
	ctl[400000] = '\0';
	char path[] = "/tmp/ca-test-log-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	if (fd < 0)
		goto out;
	for (int json = 1; json >= 0; json--) {
		ca_log_configure(CA_LOG_INFO, json);
		CHECK(ftruncate(fd, 0) == 0);
		lseek(fd, 0, SEEK_SET);
		ca_log_set_fd(fd);
		ca_log(CA_LOG_INFO, "test", "big", "a", ctl, "b", value, "c", "after", NULL);
		ca_log(CA_LOG_INFO, "test", "next", NULL);
		ca_log_set_fd(2);
		lseek(fd, 0, SEEK_SET);
		ssize_t n = read(fd, out, outcap - 1);
		CHECK(n > 0);
		if (n <= 0)
			continue;
		out[n] = '\0';
		char *nl = strchr(out, '\n');
		CHECK(nl != NULL);
		if (!nl)
			continue;
		CHECK(strchr(nl + 1, '\n') == out + n - 1); /* exactly two lines */
		if (json) {
			json_error_t jerr;
			json_t *a = json_loadb(out, (size_t)(nl - out), 0, &jerr);
			json_t *b = json_loads(nl + 1, 0, &jerr);
			CHECK(a != NULL);
			CHECK(b != NULL);
			if (a)
				CHECK_STR(json_string_value(json_object_get(a, "msg")), "big");
			if (b)
				CHECK_STR(json_string_value(json_object_get(b, "msg")), "next");
			json_decref(a);
			json_decref(b);
		} else {
			CHECK(strstr(nl + 1, "next") != NULL);
		}
	}
	close(fd);
	unlink(path);
out:
	free(value);
	free(ctl);
	free(out);
}

int main(void)
{
	test_json();
	test_bad_utf8();
	test_text();
	test_levels();
	test_oversized_record();
	return check_report();
}
