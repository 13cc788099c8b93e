#include "core/buf.h"

#include "core/json.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CA_BUF_DEFAULT_MAX ((size_t)64 << 20)

void ca_buf_init(struct ca_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max ? max : CA_BUF_DEFAULT_MAX;
}

void ca_buf_fini(struct ca_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

void ca_buf_reset(struct ca_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

enum ca_err ca_buf_reserve(struct ca_buf *b, size_t n)
{
	if (n > b->max || b->len > b->max - n)
		return CA_ETOOBIG;
	size_t need = b->len + n + 1;
	if (need <= b->cap)
		return CA_OK;
	size_t cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	char *p = realloc(b->data, cap);
	if (!p)
		return CA_ENOMEM;
	b->data = p;
	b->cap = cap;
	return CA_OK;
}

enum ca_err ca_buf_append(struct ca_buf *b, const void *data, size_t n)
{
	enum ca_err err = ca_buf_reserve(b, n);
	if (err)
		return err;
	if (n)
		memcpy(b->data + b->len, data, n);
	b->len += n;
	b->data[b->len] = '\0';
	return CA_OK;
}

enum ca_err ca_buf_append_str(struct ca_buf *b, const char *s)
{
	return ca_buf_append(b, s, strlen(s));
}

enum ca_err ca_buf_vprintf(struct ca_buf *b, const char *fmt, va_list ap)
{
	va_list ap2;
	va_copy(ap2, ap);
	int n = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (n < 0)
		return CA_EINVAL;
	enum ca_err err = ca_buf_reserve(b, (size_t)n);
	if (err)
		return err;
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	b->len += (size_t)n;
	return CA_OK;
}

enum ca_err ca_buf_printf(struct ca_buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	enum ca_err err = ca_buf_vprintf(b, fmt, ap);
	va_end(ap);
	return err;
}

void ca_buf_consume(struct ca_buf *b, size_t n)
{
	if (n >= b->len) {
		ca_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

char *ca_buf_take(struct ca_buf *b, size_t *len)
{
	char *p = b->data;
	size_t l = b->len;
	if (!p) {
		p = calloc(1, 1);
		l = 0;
	}
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	if (len)
		*len = l;
	return p;
}

enum ca_err ca_strlcpy(char *dst, const char *src, size_t dstlen)
{
	if (dstlen == 0)
		return CA_ETOOBIG;
	size_t n = strnlen(src, dstlen);
	if (n == dstlen) {
		memcpy(dst, src, dstlen - 1);
		dst[dstlen - 1] = '\0';
		return CA_ETOOBIG;
	}
	memcpy(dst, src, n + 1);
	return CA_OK;
}

enum ca_err ca_buf_append_json_string(struct ca_buf *b, const char *s)
{
	return ca_json_append_string(b, s ? s : "", s ? strlen(s) : 0);
}
