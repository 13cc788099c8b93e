/* core/base64.h: RFC 4648 base64, standard alphabet (+ and /, = padding).
 * One alphabet for the agent's readers -- the kubeconfig's lenient one
 * (config/kubeconfig.c) and the strict one of command signatures
 * (exec/signature.c) -- and its one writer. Pure functions. */
#ifndef CA_CORE_BASE64_H
#define CA_CORE_BASE64_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

/* The 6-bit value of an alphabet character; -1 for anything else ('='
 * included). */
int ca_base64_value(unsigned char c);

/* Append data's encoding, padded; CA_ENOMEM/CA_ETOOBIG from out (which is
 * then as it was). */
enum ca_err ca_base64_append(struct ca_buf *out, const void *data, size_t len);

#endif
