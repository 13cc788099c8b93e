/* core/base64.c: see base64.h. */
#include "core/base64.h"

static const char ALPHABET[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int ca_base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

enum ca_err ca_base64_append(struct ca_buf *out, const void *data, size_t len)
{
	const unsigned char *d = data;
	size_t was = out->len;
	enum ca_err rc = ca_buf_reserve(out, (len + 2) / 3 * 4);
	for (size_t i = 0; rc == CA_OK && i < len; i += 3) {
		unsigned v = (unsigned)d[i] << 16;
		if (i + 1 < len)
			v |= (unsigned)d[i + 1] << 8;
		if (i + 2 < len)
			v |= d[i + 2];
		char q[4] = { ALPHABET[(v >> 18) & 63], ALPHABET[(v >> 12) & 63],
			      i + 1 < len ? ALPHABET[(v >> 6) & 63] : '=', i + 2 < len ? ALPHABET[v & 63] : '=' };
		rc = ca_buf_append(out, q, 4);
	}
	if (rc != CA_OK) {
		out->len = was;
		if (out->data)
			out->data[was] = '\0';
	}
	return rc;
}
