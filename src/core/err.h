/* core/err.h: the one status type of the program.
 *
 * Every function that can fail returns enum ca_err (CA_OK is 0). Errors are
 * reported (logged) once, by the caller that knows why the call was made;
 * leaf helpers only return the status. */
#ifndef CA_CORE_ERR_H
#define CA_CORE_ERR_H

enum ca_err {
	CA_OK = 0,
	CA_ENOMEM,      /* allocation failed */
	CA_EINVAL,      /* bad argument or malformed input */
	CA_EIO,         /* system call or file failed */
	CA_EPROTO,      /* the peer broke the protocol (bad JSON, bad framing) */
	CA_ETIMEDOUT,   /* a deadline passed */
	CA_EDENIED,     /* refused by policy or authorisation */
	CA_ENOTFOUND,   /* no such object, key or file */
	CA_ETOOBIG,     /* a size cap was hit */
	CA_EAGAIN,      /* try again later (not connected, queue full) */
	CA_EGONE,       /* the resource is gone (HTTP 410): start over */
	CA_EUNSUPPORTED /* valid request the agent does not implement */
};

/* Static English text for an error code; never NULL. Any thread. */
const char *ca_strerror(enum ca_err err);

#include <stddef.h>

/* Write a printf-formatted sentence into err (always terminated, cut to
 * errlen). err may be NULL or errlen 0: then nothing is written. The one
 * helper every module uses for its "char *err, size_t errlen" outputs. */
void ca_set_err(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#endif
