#include "core/file.h"

#include <errno.h>
#include <fcntl.h>
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

enum ca_err ca_read_file(const char *path, size_t max, char **out, size_t *len,
                         int64_t *mtime_ns, int *err_no)
{
	enum ca_err rc = CA_EIO;
	char *buf = NULL;
	size_t cap = 0, used = 0;
	int saved = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*out = NULL;
	if (len)
		*len = 0;
	if (fd < 0) {
		saved = errno;
		rc = errno == ENOENT ? CA_ENOTFOUND : CA_EIO;
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		saved = errno;
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		saved = EISDIR;
		goto out;
	}
	if (mtime_ns)
		*mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	/* Size from fstat (+1 to see EOF without growing); files in /proc and
	 * pipes say 0, so start small then. */
	cap = st.st_size > 0 && (uint64_t)st.st_size < (uint64_t)max ? (size_t)st.st_size + 1 : 4096;
	if (cap > max + 1)
		cap = max + 1;
	if (!(buf = malloc(cap + 1))) {
		rc = CA_ENOMEM;
		goto out;
	}
	for (;;) {
		if (used == cap) {
			if (cap > max) {
				rc = CA_ETOOBIG;
				goto out;
			}
			size_t ncap = cap > max / 2 ? max + 1 : cap * 2;
			char *nbuf = malloc(ncap + 1);
			if (!nbuf) {
				rc = CA_ENOMEM;
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
			saved = errno;
			goto out;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	if (used > max) {
		rc = CA_ETOOBIG;
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
	if (err_no)
		*err_no = saved;
	return rc;
}
