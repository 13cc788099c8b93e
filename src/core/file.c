#include "core/file.h"

#include "core/buf.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void ca_free_secret_n(void *p, size_t n)
{
	if (!p)
		return;
	explicit_bzero(p, n);
	free(p);
}

void ca_free_secret(char *s)
{
	if (s)
		ca_free_secret_n(s, strlen(s));
}

static void say(char *why, size_t whylen, const char *text)
{
	if (why && whylen)
		ca_strlcpy(why, text, whylen);
}

static const char *kind_of(mode_t mode)
{
	if (S_ISDIR(mode))
		return "is a directory";
	if (S_ISFIFO(mode))
		return "is a FIFO, not a regular file";
	if (S_ISSOCK(mode))
		return "is a socket, not a regular file";
	if (S_ISCHR(mode) || S_ISBLK(mode))
		return "is a device, not a regular file";
	return "is not a regular file";
}

static void say_size(char *why, size_t whylen, size_t max)
{
	if (!why || !whylen)
		return;
	if (max >= 1024 && max % 1024 == 0)
		snprintf(why, whylen, "larger than %zu KiB", max / 1024);
	else
		snprintf(why, whylen, "larger than %zu bytes", max);
}

enum ca_err ca_read_file(const char *path, size_t max, char **out, size_t *len,
                         int64_t *mtime_ns, char *why, size_t whylen)
{
	enum ca_err rc = CA_EIO;
	char *buf = NULL;
	size_t cap = 0, used = 0;
	/* O_NONBLOCK: open() of a FIFO without a writer would block for
	 * ever; the fstat below refuses it before any read. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);

	*out = NULL;
	if (len)
		*len = 0;
	if (fd < 0) {
		rc = errno == ENOENT ? CA_ENOTFOUND : CA_EIO;
		say(why, whylen, errno == ENOENT ? "no such file" : strerror(errno));
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		say(why, whylen, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = CA_EINVAL;
		say(why, whylen, kind_of(st.st_mode));
		goto out;
	}
	if (mtime_ns)
		*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	/* Size from fstat (+1 to see EOF without growing); files in /proc
	 * say 0, so start small then. */
	cap = st.st_size > 0 && (uint64_t)st.st_size < (uint64_t)max ? (size_t)st.st_size + 1 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	if (!(buf = malloc(cap + 1))) {
		rc = CA_ENOMEM;
		say(why, whylen, "out of memory");
		goto out;
	}
	for (;;) {
		if (used == cap) {
			if (cap > max) {
				rc = CA_ETOOBIG;
				say_size(why, whylen, max);
				goto out;
			}
			size_t ncap = cap > max / 2 ? max + 1 : cap * 2;
			char *nbuf = malloc(ncap + 1);
			if (!nbuf) {
				rc = CA_ENOMEM;
				say(why, whylen, "out of memory");
				goto out;
			}
			memcpy(nbuf, buf, used);
			ca_free_secret_n(buf, cap + 1);
			buf = nbuf;
			cap = ncap;
		}
		ssize_t n = read(fd, buf + used, cap - used);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			say(why, whylen, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > max) {
		rc = CA_ETOOBIG;
		say_size(why, whylen, max);
		goto out;
	}
	buf[used] = '\0';
	*out = buf;
	buf = NULL;
	if (len)
		*len = used;
	rc = CA_OK;
out:
	ca_free_secret_n(buf, cap + 1);
	if (fd >= 0)
		close(fd);
	return rc;
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

enum ca_err ca_read_secret(const char *path, unsigned flags, char **out, size_t *len,
                           int64_t *mtime_ns, char *why, size_t whylen)
{
	size_t n = 0;
	char *data = NULL;
	enum ca_err rc = ca_read_file(path, CA_SECRET_MAX, &data, &n, mtime_ns, why, whylen);
	*out = NULL;
	if (len)
		*len = 0;
	if (rc != CA_OK)
		return rc;
	size_t size = n + 1; /* what the buffer holds, for the wipe */
	while (n > 0 && is_space(data[n - 1]))
		data[--n] = '\0';
	if (n == 0) {
		say(why, whylen, "is empty");
		ca_free_secret_n(data, size);
		return CA_EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)data[i];
		bool allowed = (flags & CA_SECRET_LINES) && (c == '\n' || c == '\r' || c == '\t');
		if ((c < 0x20 || c == 0x7f) && !allowed) {
			say(why, whylen, flags & CA_SECRET_LINES
			                 ? "holds control bytes (NUL or other non-text bytes)"
			                 : "holds control bytes (a secret is one line of printable text)");
			ca_free_secret_n(data, size);
			return CA_EINVAL;
		}
	}
	*out = data;
	if (len)
		*len = n;
	return CA_OK;
}

static enum ca_err writable_dir(const char *dir, char *why, size_t whylen)
{
	struct stat st;
	if (stat(dir, &st) != 0) {
		int e = errno;
		say(why, whylen, e == ENOENT ? "no such directory" : strerror(e));
		return e == ENOENT ? CA_ENOTFOUND : CA_EIO;
	}
	if (!S_ISDIR(st.st_mode)) {
		say(why, whylen, "not a directory");
		return CA_EIO;
	}
	if (faccessat(AT_FDCWD, dir, W_OK | X_OK, AT_EACCESS) != 0) {
		if (why && whylen)
			snprintf(why, whylen, "not writable: %s", strerror(errno));
		return CA_EIO;
	}
	return CA_OK;
}

enum ca_err ca_check_writable_dir(const char *dir, bool may_create, char *why, size_t whylen)
{
	if (!dir || !*dir) {
		say(why, whylen, "no directory named");
		return CA_EIO;
	}
	enum ca_err rc = writable_dir(dir, why, whylen);
	if (rc != CA_ENOTFOUND || !may_create)
		return rc;
	/* Only trying tells (procfs refuses even root): a directory that did
	 * not exist is removed again. */
	if (mkdir(dir, 0700) != 0) {
		if (why && whylen)
			snprintf(why, whylen, "cannot create it: %s", strerror(errno));
		return CA_EIO;
	}
	rmdir(dir);
	return CA_OK;
}
