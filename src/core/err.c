#include "core/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *ca_strerror(enum ca_err err)
{
	switch (err) {
	case CA_OK: return "success";
	case CA_ENOMEM: return "out of memory";
	case CA_EINVAL: return "invalid argument";
	case CA_EIO: return "input/output error";
	case CA_EPROTO: return "protocol error";
	case CA_ETIMEDOUT: return "timed out";
	case CA_EDENIED: return "denied";
	case CA_ENOTFOUND: return "not found";
	case CA_ETOOBIG: return "too big";
	case CA_EAGAIN: return "temporarily unavailable";
	case CA_EGONE: return "gone";
	case CA_EUNSUPPORTED: return "unsupported";
	}
	return "unknown error";
}

void ca_set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}
