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
#include <pthread.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/buf.h"
#include "core/file.h"
#include "core/timeutil.h"
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

static enum ca_err write_all(int fd, const char *p, size_t n, char *why, size_t whylen)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			ca_set_err(why, whylen, "%s", strerror(errno)); /* ENOSPC says "No space left" */
			return CA_EIO;
		}
		p += w;
		n -= (size_t)w;
	}
	return CA_OK;
}

enum ca_err ca_events_state_format(struct ca_buf *out, const struct ca_events_state_entry *entries,
                                   size_t n, int64_t saved_at)
{
	enum ca_err rc = ca_buf_printf(out, HEADER "\nsaved_at %lld\n", (long long)saved_at);
	for (size_t i = 0; rc == CA_OK && i < n; i++) {
		if (!key_valid(entries[i].key, strlen(entries[i].key)) ||
		    !ca_events_rv_valid(entries[i].rv))
			continue;
		rc = ca_buf_printf(out, "rv %s %s\n", entries[i].key, entries[i].rv);
	}
	return rc;
}

/* Write data to path atomically: a temporary file in the same directory,
 * then rename. The temporary name is created exclusively and not followed
 * if it is a link, and opened without blocking, so whatever sits at that
 * name (a FIFO, a symlink left by someone else) is removed, never
 * written through. */
static enum ca_err write_atomic(const char *path, const char *data, size_t len, char *why,
                                size_t whylen)
{
	struct ca_buf tmp;
	enum ca_err rc;
	int fd = -1;
	ca_buf_init(&tmp, 4096 + 64);
	rc = ca_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
	if (rc != CA_OK) {
		ca_set_err(why, whylen, "path too long");
		goto out;
	}
	rc = CA_EIO;
	for (int attempt = 0; attempt < 2 && fd < 0; attempt++) {
		fd = open(tmp.data, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0600);
		if (fd < 0 && errno == EEXIST && attempt == 0)
			unlink(tmp.data);
		else if (fd < 0)
			break;
	}
	if (fd < 0) {
		ca_set_err(why, whylen, "%s: %s", tmp.data, strerror(errno));
		goto out;
	}
	if (write_all(fd, data, len, why, whylen) != CA_OK)
		goto out;
	int c = close(fd);
	fd = -1;
	if (c != 0) {
		ca_set_err(why, whylen, "%s", strerror(errno));
		goto out;
	}
	if (rename(tmp.data, path) != 0) {
		ca_set_err(why, whylen, "rename to %s: %s", path, strerror(errno));
		goto out;
	}
	rc = CA_OK;
out:
	if (fd >= 0)
		close(fd);
	if (rc != CA_OK && tmp.data)
		unlink(tmp.data);
	ca_buf_fini(&tmp);
	return rc;
}

enum ca_err ca_events_state_write(const char *path, const struct ca_events_state_entry *entries,
                                  size_t n, int64_t saved_at)
{
	struct ca_buf b;
	ca_buf_init(&b, MAX_STATE_BYTES);
	enum ca_err rc = ca_events_state_format(&b, entries, n, saved_at);
	if (rc == CA_OK)
		rc = write_atomic(path, b.data, b.len, NULL, 0);
	ca_buf_fini(&b);
	return rc;
}

/* ------------------------------------------------------------------------
 * The writer thread: the loop formats (a few dozen bytes) and hands the
 * text over; this thread does the open, write and rename, so a slow or
 * full disk never holds the loop. Only the latest text matters: one not
 * yet written is replaced by a newer one. */

struct ca_events_state_writer {
	char *path;
	pthread_t thread;
	bool thread_started;
	pthread_mutex_t lock;
	pthread_cond_t wake;  /* pending or stop */
	pthread_cond_t done;  /* a write finished */
	struct ca_buf pending;
	bool has_pending;
	bool writing;
	bool stop;
	uint64_t writes;       /* lock: writes done */
	int64_t last_us;       /* lock: how long the last write took */
	char error[256];       /* lock: "" when the last write worked */
	enum ca_err last_rc;
};

static void *writer_main(void *arg)
{
	struct ca_events_state_writer *w = arg;
	struct ca_buf mine;
	ca_buf_init(&mine, MAX_STATE_BYTES);
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->has_pending && !w->stop)
			pthread_cond_wait(&w->wake, &w->lock);
		if (!w->has_pending)
			break; /* stop, nothing left to write */
		struct ca_buf t = mine;
		mine = w->pending; /* take the text; the next submit reuses ours */
		w->pending = t;
		ca_buf_reset(&w->pending);
		w->has_pending = false;
		w->writing = true;
		pthread_mutex_unlock(&w->lock);

		char why[256] = "";
		int64_t t0 = ca_now_monotonic_us();
		enum ca_err rc = write_atomic(w->path, mine.data, mine.len, why, sizeof why);
		int64_t took = ca_now_monotonic_us() - t0;

		pthread_mutex_lock(&w->lock);
		w->writing = false;
		w->writes++;
		w->last_us = took;
		w->last_rc = rc;
		ca_strlcpy(w->error, rc == CA_OK ? "" : why, sizeof w->error);
		pthread_cond_broadcast(&w->done);
	}
	pthread_mutex_unlock(&w->lock);
	ca_buf_fini(&mine);
	return NULL;
}

enum ca_err ca_events_state_writer_new(struct ca_events_state_writer **out, const char *path)
{
	struct ca_events_state_writer *w = calloc(1, sizeof *w);
	*out = NULL;
	if (!w)
		return CA_ENOMEM;
	ca_buf_init(&w->pending, MAX_STATE_BYTES);
	if (!(w->path = strdup(path)) || pthread_mutex_init(&w->lock, NULL) != 0) {
		free(w->path);
		free(w);
		return CA_ENOMEM;
	}
	pthread_cond_init(&w->wake, NULL);
	pthread_cond_init(&w->done, NULL);
	/* The thread inherits the caller's signal mask: the agent blocks its
	 * shutdown signals before any module starts. */
	if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
		ca_events_state_writer_free(w);
		return CA_EIO;
	}
	w->thread_started = true;
	*out = w;
	return CA_OK;
}

enum ca_err ca_events_state_writer_submit(struct ca_events_state_writer *w,
                                          const struct ca_events_state_entry *entries, size_t n,
                                          int64_t saved_at)
{
	pthread_mutex_lock(&w->lock);
	ca_buf_reset(&w->pending);
	enum ca_err rc = ca_events_state_format(&w->pending, entries, n, saved_at);
	if (rc == CA_OK) {
		w->has_pending = true;
		pthread_cond_signal(&w->wake);
	}
	pthread_mutex_unlock(&w->lock);
	return rc;
}

enum ca_err ca_events_state_writer_flush(struct ca_events_state_writer *w)
{
	pthread_mutex_lock(&w->lock);
	while (w->has_pending || w->writing)
		pthread_cond_wait(&w->done, &w->lock);
	enum ca_err rc = w->last_rc;
	pthread_mutex_unlock(&w->lock);
	return rc;
}

void ca_events_state_writer_status(struct ca_events_state_writer *w, char *error, size_t errlen,
                                   uint64_t *writes, int64_t *last_us)
{
	pthread_mutex_lock(&w->lock);
	ca_strlcpy(error, w->error, errlen);
	if (writes)
		*writes = w->writes;
	if (last_us)
		*last_us = w->last_us;
	pthread_mutex_unlock(&w->lock);
}

void ca_events_state_writer_free(struct ca_events_state_writer *w)
{
	if (!w)
		return;
	if (w->thread_started) {
		pthread_mutex_lock(&w->lock);
		w->stop = true; /* what is pending is still written first */
		pthread_cond_signal(&w->wake);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->thread, NULL);
	}
	pthread_cond_destroy(&w->wake);
	pthread_cond_destroy(&w->done);
	pthread_mutex_destroy(&w->lock);
	ca_buf_fini(&w->pending);
	free(w->path);
	free(w);
}
