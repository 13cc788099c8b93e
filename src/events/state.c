/* events/state.c: the state file (events.state_file).
 *
 * A few text lines, so a person can read it in an emptyDir:
 *
 *     # collect-agent events state v1
 *     saved_at 1795307190123
 *     rv /api/v1/events 4711
 *
 * one "rv" line per reflector (keyed by its collection path). Written to a
 * temporary file in the same directory and renamed over the old one, so a
 * reader sees the old or the new file, never half of one. No fsync: the
 * file guards against the process dying (the page cache survives that),
 * and an emptyDir does not outlive the node anyway; an fsync a second on
 * the loop thread would only add latency to every event behind it. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/file.h"
#include "events/events_int.h"

#define HEADER "# collect-agent events state v1"
#define MAX_STATE_BYTES 65536

bool ca_events_rv_valid(const char *rv)
{
	size_t n = 0;
	if (!rv)
		return false;
	for (; rv[n]; n++)
		if ((unsigned char)rv[n] <= 0x20 || (unsigned char)rv[n] >= 0x7f)
			return false;
	return n > 0 && n <= CA_EVENTS_MAX_RV;
}

static bool key_valid(const char *k, size_t n)
{
	if (n == 0 || n >= sizeof(((struct ca_events_state_entry *)0)->key))
		return false;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)k[i] <= 0x20 || (unsigned char)k[i] >= 0x7f)
			return false;
	return true;
}

static enum ca_err corrupt(char *err, size_t errlen, int line, const char *why)
{
	snprintf(err, errlen, "line %d: %s", line, why);
	return CA_EPROTO;
}

enum ca_err ca_events_state_read(const char *path, struct ca_events_state_entry *entries,
                                 size_t max, size_t *n, int64_t *saved_at,
                                 char *err, size_t errlen)
{
	char *data = NULL;
	enum ca_err rc;
	size_t len = 0;

	*n = 0;
	*saved_at = 0;
	/* A FIFO or device here would block open() on the loop: the one file
	 * reader opens without blocking and refuses anything but a regular
	 * file. */
	rc = ca_read_file(path, MAX_STATE_BYTES, &data, &len, NULL, err, errlen);
	if (rc != CA_OK) {
		if (rc == CA_ETOOBIG)
			rc = corrupt(err, errlen, 0, "file larger than 64 KiB");
		else if (rc == CA_EINVAL)
			rc = CA_EPROTO; /* not a regular file: nothing usable there */
		goto out;
	}
	if (memchr(data, '\0', len)) {
		rc = corrupt(err, errlen, 0, "binary content");
		goto out;
	}

	int line = 0;
	bool have_saved = false;
	char *p = data;
	while (*p) {
		char *eol = strchr(p, '\n');
		if (!eol) {
			rc = corrupt(err, errlen, line + 1, "incomplete last line");
			goto out;
		}
		*eol = '\0';
		line++;
		if (line == 1) {
			if (strcmp(p, HEADER) != 0) {
				rc = corrupt(err, errlen, line, "not a collect-agent events state file");
				goto out;
			}
		} else if (strncmp(p, "saved_at ", 9) == 0) {
			char *end = NULL;
			errno = 0;
			long long v = strtoll(p + 9, &end, 10);
			if (errno || end == p + 9 || *end || v < 0) {
				rc = corrupt(err, errlen, line, "bad saved_at");
				goto out;
			}
			*saved_at = v;
			have_saved = true;
		} else if (strncmp(p, "rv ", 3) == 0) {
			char *key = p + 3, *sp = strchr(key, ' ');
			if (!sp || !key_valid(key, (size_t)(sp - key)) || !ca_events_rv_valid(sp + 1)) {
				rc = corrupt(err, errlen, line, "bad rv line");
				goto out;
			}
			if (*n < max) {
				struct ca_events_state_entry *e = &entries[*n];
				memcpy(e->key, key, (size_t)(sp - key));
				e->key[sp - key] = '\0';
				ca_strlcpy(e->rv, sp + 1, sizeof e->rv);
				(*n)++;
			}
		} else {
			rc = corrupt(err, errlen, line, "unknown line");
			goto out;
		}
		p = eol + 1;
	}
	if (line == 0) {
		rc = corrupt(err, errlen, 0, "empty file");
		goto out;
	}
	if (!have_saved) {
		rc = corrupt(err, errlen, line, "saved_at missing");
		goto out;
	}
	rc = CA_OK;
out:
	if (rc != CA_OK)
		*n = 0;
	free(data);
	return rc;
}

static enum ca_err write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return CA_EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return CA_OK;
}

enum ca_err ca_events_state_write(const char *path, const struct ca_events_state_entry *entries,
                                  size_t n, int64_t saved_at)
{
	struct ca_buf b, tmp;
	enum ca_err rc;
	int fd = -1;

	ca_buf_init(&b, MAX_STATE_BYTES);
	ca_buf_init(&tmp, 4096 + 64);
	rc = ca_buf_printf(&b, HEADER "\nsaved_at %lld\n", (long long)saved_at);
	for (size_t i = 0; rc == CA_OK && i < n; i++) {
		if (!key_valid(entries[i].key, strlen(entries[i].key)) ||
		    !ca_events_rv_valid(entries[i].rv))
			continue;
		rc = ca_buf_printf(&b, "rv %s %s\n", entries[i].key, entries[i].rv);
	}
	if (rc == CA_OK)
		rc = ca_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	if (rc != CA_OK)
		goto out;
	rc = CA_EIO;
	fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		goto out;
	if (write_all(fd, b.data, b.len) != CA_OK)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	if (rename(tmp.data, path) != 0)
		goto out;
	rc = CA_OK;
out:
	if (fd >= 0)
		close(fd);
	if (rc != CA_OK && tmp.data)
		unlink(tmp.data);
	ca_buf_fini(&b);
	ca_buf_fini(&tmp);
	return rc;
}
