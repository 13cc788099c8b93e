#include "kube/salvage.h"

#include <stdbool.h>
#include <string.h>

#include "kube/json_parse.h"

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
		p++;
	return p;
}

/* Past the string whose opening quote is at p, or NULL. */
static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/* Past the value that starts at p (a container is skipped with its
 * brackets balanced, strings respected), or NULL. Nothing inside is
 * validated: that is the item parser's job. */
static const char *skip_value(const char *p, const char *end)
{
	if (p >= end)
		return NULL;
	if (*p == '"')
		return skip_string(p, end);
	if (*p != '{' && *p != '[') {
		while (p < end && *p != ',' && *p != '}' && *p != ']' && *p != ' ' && *p != '\t' &&
		       *p != '\r' && *p != '\n')
			p++;
		return p;
	}
	size_t depth = 0;
	for (; p < end; p++) {
		if (*p == '"') {
			p = skip_string(p, end);
			if (!p)
				return NULL;
			p--;
		} else if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (--depth == 0)
				return p + 1;
		}
	}
	return NULL;
}

static bool key_is(const char *k, const char *kend, const char *name)
{
	size_t n = strlen(name);
	return (size_t)(kend - k) == n + 2 && memcmp(k + 1, name, n) == 0;
}

enum ca_err ca_kube_list_salvage(const char *body, size_t len, struct ca_buf *out, size_t *bad)
{
	const char *p = body, *end = body + len;
	const char *meta = NULL, *meta_end = NULL, *items = NULL;
	struct ca_json_doc *doc = NULL;
	enum ca_err rc = CA_EPROTO;

	*bad = 0;
	ca_buf_reset(out);
	p = skip_ws(p, end);
	if (p == end || *p != '{')
		return CA_EPROTO;
	p++;
	/* The members of the top-level object: keep where metadata and items
	 * are, skip the rest. */
	for (;;) {
		p = skip_ws(p, end);
		if (p < end && *p == '}')
			break;
		if (p == end || *p != '"')
			return CA_EPROTO;
		const char *k = p;
		if (!(p = skip_string(p, end)))
			return CA_EPROTO;
		const char *kend = p;
		p = skip_ws(p, end);
		if (p == end || *p != ':')
			return CA_EPROTO;
		p = skip_ws(p + 1, end);
		const char *v = p;
		if (!(p = skip_value(p, end)))
			return CA_EPROTO;
		if (key_is(k, kend, "metadata")) {
			meta = v;
			meta_end = p;
		} else if (key_is(k, kend, "items") && *v == '[') {
			items = v;
		}
		p = skip_ws(p, end);
		if (p < end && *p == ',') {
			p++;
			continue;
		}
		if (p < end && *p == '}')
			break;
		return CA_EPROTO;
	}
	if (!items)
		return CA_EPROTO;

	if ((rc = ca_kube_json_doc_new(&doc)) != CA_OK)
		return rc;
	/* Without usable metadata (the resourceVersion, the continue token)
	 * the items are of no use: the page is refused. */
	const struct ca_kobj *mroot = NULL;
	if (meta && (ca_kube_json_parse(doc, meta, (size_t)(meta_end - meta), &mroot, NULL, 0) != CA_OK ||
	             mroot->type != CA_JSON_OBJECT)) {
		ca_kube_json_doc_free(doc);
		return CA_EPROTO;
	}
	rc = ca_buf_append_str(out, "{\"metadata\":");
	if (rc == CA_OK)
		rc = meta ? ca_buf_append(out, meta, (size_t)(meta_end - meta)) : ca_buf_append_str(out, "{}");
	if (rc == CA_OK)
		rc = ca_buf_append_str(out, ",\"items\":[");
	bool first = true;
	p = skip_ws(items + 1, end);
	while (rc == CA_OK && p < end && *p != ']') {
		const char *item = p;
		if (!(p = skip_value(p, end))) {
			rc = CA_EPROTO;
			break;
		}
		const struct ca_kobj *root = NULL;
		if (ca_kube_json_parse(doc, item, (size_t)(p - item), &root, NULL, 0) == CA_OK &&
		    root->type == CA_JSON_OBJECT) {
			if (!first)
				rc = ca_buf_append(out, ",", 1);
			if (rc == CA_OK)
				rc = ca_buf_append(out, item, (size_t)(p - item));
			first = false;
		} else {
			(*bad)++;
		}
		ca_kube_json_doc_trim(doc, 64 << 10);
		p = skip_ws(p, end);
		if (p < end && *p == ',')
			p = skip_ws(p + 1, end);
		else if (p < end && *p != ']')
			rc = CA_EPROTO;
	}
	if (rc == CA_OK && p >= end)
		rc = CA_EPROTO;
	if (rc == CA_OK)
		rc = ca_buf_append_str(out, "]}");
	ca_kube_json_doc_free(doc);
	if (rc != CA_OK)
		ca_buf_reset(out);
	return rc;
}
