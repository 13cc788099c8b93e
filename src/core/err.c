#include "core/err.h"

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
