/* core/file.h: small whole files (config, kubeconfig, tokens, keys, seeds,
 * state) and the secrets they hold: the one file reader and the one secret
 * reader of the program.
 *
 * Reading never leaves a copy of the content behind in freed memory: the
 * buffer is sized from fstat, and when it must grow the old block is zeroed
 * before it is freed; on failure whatever was read is zeroed. Only regular
 * files are read: the file is opened with O_NONBLOCK, so a FIFO (or a
 * device) named by mistake or by an attacker is refused at once instead of
 * hanging the caller in open(). Any thread; never logs. */
#ifndef CA_CORE_FILE_H
#define CA_CORE_FILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Read path into a NUL-terminated heap buffer (*out, free with free() or
 * ca_free_secret_n) of at most max bytes. len and mtime_ns may be NULL.
 * On failure *out is NULL and why (may be NULL) gets the reason in a few
 * words for the caller's message: "no such file", "is a directory", "is a
 * FIFO, not a regular file", "larger than 64 KiB", or strerror's text.
 * Returns CA_OK; CA_ENOTFOUND when the file does not exist; CA_ETOOBIG when
 * it holds more than max bytes; CA_EINVAL when it is not a regular file;
 * CA_EIO for any other failure; CA_ENOMEM. */
enum ca_err ca_read_file(const char *path, size_t max, char **out, size_t *len,
                         int64_t *mtime_ns, char *why, size_t whylen);

/* The cap on every secret file: tokens (a projected service-account token
 * is about 1 KiB), passwords, NKey seeds and .pub files. */
#define CA_SECRET_MAX ((size_t)64 << 10)

enum {
	CA_SECRET_LINE = 0,  /* one line: no control byte may remain after trimming */
	CA_SECRET_LINES = 1, /* several lines: '\n', '\r' and '\t' allowed inside */
};

/* The one reader of secret files. ca_read_file() capped at CA_SECRET_MAX;
 * trailing whitespace (space, tab, CR, LF) is cut, because files written
 * by editors, `echo` or Kubernetes Secrets often end with a newline that is
 * not part of the secret; then the content is refused when it is empty or
 * holds a control byte (NUL, CR/LF inside a one-line secret, DEL...): a
 * token with a CR/LF would inject HTTP headers. On success *out holds the
 * secret (free with ca_free_secret), *len its length (may be NULL). On
 * failure why gets the reason ("is empty", "holds control bytes (a secret
 * is one line of printable text)", or ca_read_file's reason) and the
 * status is ca_read_file's, or CA_EINVAL for the content rules. Any
 * thread. */
enum ca_err ca_read_secret(const char *path, unsigned flags, char **out, size_t *len,
                           int64_t *mtime_ns, char *why, size_t whylen);

/* Whether files could be created and written in dir, found without
 * changing what exists (for --check-config, which may run beside a live
 * agent): dir is a directory this process may write and search, or, with
 * may_create, dir is missing and can be created (it is, then removed
 * again). On failure why gets the reason in a few words ("not a
 * directory", "not writable: Read-only file system", "no such directory",
 * "cannot create it: Permission denied") and the status is CA_ENOTFOUND
 * (missing) or CA_EIO. Any thread. */
enum ca_err ca_check_writable_dir(const char *dir, bool may_create, char *why, size_t whylen);

/* Zero then free: strlen(s) bytes, or n bytes. NULL is fine. */
void ca_free_secret(char *s);
void ca_free_secret_n(void *p, size_t n);

#endif
