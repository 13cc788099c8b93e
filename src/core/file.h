/* core/file.h: small whole files (config, tokens, keys, seeds) and the
 * secrets they hold.
 *
 * Reading never leaves a copy of the content behind in freed memory: the
 * buffer is sized from fstat, and when it must grow the old block is zeroed
 * before it is freed; on failure whatever was read is zeroed. Any thread;
 * never logs. */
#ifndef CA_CORE_FILE_H
#define CA_CORE_FILE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Read path into a NUL-terminated heap buffer (*out, free with free() or
 * ca_free_secret_n) of at most max bytes. len and mtime_ns may be NULL.
 * Returns CA_OK; CA_ENOTFOUND when the file does not exist; CA_ETOOBIG
 * when it holds more than max bytes; CA_EIO for any other failure, with
 * errno's value in *err_no (may be NULL); CA_ENOMEM. */
enum ca_err ca_read_file(const char *path, size_t max, char **out, size_t *len,
                         int64_t *mtime_ns, int *err_no);

/* Zero then free: strlen(s) bytes, or n bytes. NULL is fine. */
void ca_free_secret(char *s);
void ca_free_secret_n(void *p, size_t n);

#endif
