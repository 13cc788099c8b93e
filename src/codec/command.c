/* codec/command.c: decoding a Command, the one message the agent receives.
 *
 * The payload comes from the network, so each field is checked before it is
 * copied, and the first problem found is reported in words precise enough
 * for the sender to fix its message (the reason ends up in the rejected
 * CommandResult). Both formats end in the same struct and the same final
 * checks; the caller has already capped the payload's total size. */
#include "codec/codec.h"
#include "core/utf8.h"

#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "core/timeutil.h"
#include "proto/agent.pb-c.h"

#define MIN_TIME_S (-62135596800LL) /* 0001-01-01T00:00:00Z */
#define MAX_TIME_S (253402300799LL) /* 9999-12-31T23:59:59Z */

__attribute__((format(printf, 4, 5)))
static enum ca_err fail(char *err, size_t errlen, enum ca_err code, const char *fmt, ...)
{
	if (err && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* The string fields of a Command, with their protobuf field numbers. */
struct str_field {
	const char *name;
	unsigned number;
	size_t offset;
};

static const struct str_field str_fields[] = {
	{ "id", 1, offsetof(struct ca_command, id) },
	{ "cluster_id", 2, offsetof(struct ca_command, cluster_id) },
	{ "tool", 3, offsetof(struct ca_command, tool) },
	{ "action", 4, offsetof(struct ca_command, action) },
	{ "namespace", 6, offsetof(struct ca_command, namespace_) },
	{ "issuer", 10, offsetof(struct ca_command, issuer) },
	{ "signature", 11, offsetof(struct ca_command, signature) },
};
#define N_STR_FIELDS (sizeof str_fields / sizeof str_fields[0])
#define ARGS_NUMBER 5u

static char **field_slot(struct ca_command *c, const struct str_field *f)
{
	return (char **)(void *)((char *)c + f->offset);
}

static enum ca_err check_text(const char *name, const char *s, size_t len, char *err, size_t errlen)
{
	if (len > CA_COMMAND_MAX_STRING)
		return fail(err, errlen, CA_EINVAL, "field '%s' is %zu bytes long; at most %d are allowed", name,
		            len, CA_COMMAND_MAX_STRING);
	if (memchr(s, '\0', len))
		return fail(err, errlen, CA_EINVAL, "field '%s' contains a NUL byte", name);
	if (!ca_utf8_valid(s, len))
		return fail(err, errlen, CA_EINVAL, "field '%s' is not valid UTF-8", name);
	return CA_OK;
}

static enum ca_err dup_text(char **slot, const char *s, size_t len)
{
	char *p = malloc(len + 1);
	if (!p)
		return CA_ENOMEM;
	memcpy(p, s, len);
	p[len] = '\0';
	free(*slot);
	*slot = p;
	return CA_OK;
}

void ca_command_fini(struct ca_command *cmd)
{
	if (!cmd)
		return;
	for (size_t i = 0; i < N_STR_FIELDS; i++)
		free(*field_slot(cmd, &str_fields[i]));
	for (size_t i = 0; cmd->args && i < cmd->n_args; i++)
		free(cmd->args[i]);
	free(cmd->args);
	memset(cmd, 0, sizeof *cmd);
}

/* Absent string fields become "" so users never test for NULL. */
static enum ca_err fill_empty(struct ca_command *c)
{
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		char **slot = field_slot(c, &str_fields[i]);
		if (!*slot && dup_text(slot, "", 0) != CA_OK)
			return CA_ENOMEM;
	}
	return CA_OK;
}

/* Checks that do not depend on the format. */
static enum ca_err check_common(const struct ca_command *c, bool id_present, char *err, size_t errlen)
{
	if (!c->id[0])
		return fail(err, errlen, CA_EINVAL, id_present ? "field 'id' is empty" : "field 'id' is missing");
	/* The id goes into NATS headers (Nats-Msg-Id) and log lines. */
	for (const unsigned char *p = (const unsigned char *)c->id; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return fail(err, errlen, CA_EINVAL, "field 'id' contains control characters");
	if (c->timeout_seconds < 0)
		return fail(err, errlen, CA_EINVAL, "field 'timeout_seconds' must not be negative");
	return CA_OK;
}

/* ------------------------------------------------------------------- JSON */

static const char *json_kind(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT: return "an object";
	case JSON_ARRAY: return "a list";
	case JSON_STRING: return "a string";
	case JSON_INTEGER: return "an integer";
	case JSON_REAL: return "a fractional number";
	case JSON_TRUE:
	case JSON_FALSE: return "a boolean";
	case JSON_NULL: return "null";
	}
	return "unknown";
}

/* proto3 JSON writes int64 as a decimal string; accept that form exactly. */
static bool parse_int_string(const char *s, size_t len, int64_t *out)
{
	size_t i = 0;
	bool neg = false;
	uint64_t v = 0;
	if (len > 0 && s[0] == '-') {
		neg = true;
		i = 1;
	}
	if (i == len)
		return false;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (!neg && v > (uint64_t)INT64_MAX)
		return false;
	if (neg && v > (uint64_t)INT64_MAX + 1)
		return false;
	*out = neg ? (v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v) : (int64_t)v;
	return true;
}

static enum ca_err json_time(const json_t *root, const char *name, int64_t *ms, char *err, size_t errlen)
{
	const json_t *v = json_object_get(root, name);
	*ms = 0;
	if (!v || json_is_null(v))
		return CA_OK;
	if (!json_is_string(v))
		return fail(err, errlen, CA_EINVAL, "field '%s' must be an RFC 3339 timestamp string, not %s", name,
		            json_kind(v));
	enum ca_err e = check_text(name, json_string_value(v), json_string_length(v), err, errlen);
	if (e)
		return e;
	if (ca_parse_rfc3339(json_string_value(v), ms) != CA_OK)
		return fail(err, errlen, CA_EINVAL, "field '%s' is not an RFC 3339 timestamp", name);
	/* The same range as protobuf, so a command means the same in both. */
	if (*ms < MIN_TIME_S * 1000 || *ms > MAX_TIME_S * 1000 + 999) {
		*ms = 0;
		return fail(err, errlen, CA_EINVAL, "field '%s' is not a valid timestamp (out of range)", name);
	}
	return CA_OK;
}

static enum ca_err decode_json(const void *data, size_t len, struct ca_command *c, bool *id_present,
                               char *err, size_t errlen)
{
	json_error_t jerr;
	enum ca_err rc = CA_EINVAL;
	/* Duplicate keys are refused: two readers of one signed payload must
	 * never see different values. NULs are let through the parser so the
	 * rejection can name the field. */
	json_t *root = json_loadb(data ? data : "", len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	                          &jerr);
	if (!root)
		return fail(err, errlen, CA_EPROTO, "malformed JSON at line %d column %d: %s", jerr.line,
		            jerr.column, jerr.text);
	if (!json_is_object(root)) {
		rc = fail(err, errlen, CA_EINVAL, "command is not a JSON object (it is %s)", json_kind(root));
		goto out;
	}

	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		const struct str_field *f = &str_fields[i];
		const json_t *v = json_object_get(root, f->name);
		if (!v || json_is_null(v))
			continue;
		if (!json_is_string(v)) {
			rc = fail(err, errlen, CA_EINVAL, "field '%s' must be a string, not %s", f->name, json_kind(v));
			goto out;
		}
		if (i == 0)
			*id_present = true;
		rc = check_text(f->name, json_string_value(v), json_string_length(v), err, errlen);
		if (rc)
			goto out;
		rc = dup_text(field_slot(c, f), json_string_value(v), json_string_length(v));
		if (rc)
			goto out;
	}

	const json_t *args = json_object_get(root, "args");
	if (args && !json_is_null(args)) {
		if (!json_is_array(args)) {
			rc = fail(err, errlen, CA_EINVAL, "field 'args' must be a list of strings, not %s",
			          json_kind(args));
			goto out;
		}
		size_t n = json_array_size(args);
		if (n > CA_COMMAND_MAX_ARGS) {
			rc = fail(err, errlen, CA_EINVAL, "field 'args' has %zu entries; at most %d are allowed", n,
			          CA_COMMAND_MAX_ARGS);
			goto out;
		}
		if (n) {
			c->args = calloc(n, sizeof *c->args);
			if (!c->args) {
				rc = fail(err, errlen, CA_ENOMEM, "out of memory");
				goto out;
			}
		}
		for (size_t i = 0; i < n; i++) {
			const json_t *a = json_array_get(args, i);
			char name[32];
			if (!json_is_string(a)) {
				rc = fail(err, errlen, CA_EINVAL, "field 'args' must be a list of strings: args[%zu] is %s",
				          i, json_kind(a));
				goto out;
			}
			snprintf(name, sizeof name, "args[%zu]", i);
			rc = check_text(name, json_string_value(a), json_string_length(a), err, errlen);
			if (rc)
				goto out;
			rc = dup_text(&c->args[i], json_string_value(a), json_string_length(a));
			if (rc)
				goto out;
			c->n_args = i + 1;
		}
	}

	const json_t *t = json_object_get(root, "timeout_seconds");
	if (t && !json_is_null(t)) {
		if (json_is_integer(t)) {
			c->timeout_seconds = json_integer_value(t);
		} else if (!json_is_string(t) ||
		           !parse_int_string(json_string_value(t), json_string_length(t), &c->timeout_seconds)) {
			rc = fail(err, errlen, CA_EINVAL, "field 'timeout_seconds' must be an integer, not %s",
			          json_is_string(t) ? "a non-numeric string" : json_kind(t));
			goto out;
		}
	}

	rc = json_time(root, "issued_at", &c->issued_at, err, errlen);
	if (!rc)
		rc = json_time(root, "expires_at", &c->expires_at, err, errlen);
out:
	json_decref(root);
	return rc;
}

/* --------------------------------------------------------------- protobuf */

static bool read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t r = 0;
	for (unsigned shift = 0; shift < 64 && *pos < len; shift += 7) {
		uint8_t b = p[(*pos)++];
		r |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80)) {
			*v = r;
			return true;
		}
	}
	return false;
}

/* protobuf-c cuts strings at a NUL and accepts any bytes, so the text rules
 * are checked on the wire before unpacking; this walk also gives a position
 * for malformed input where protobuf-c only says no. */
static enum ca_err prescan(const uint8_t *p, size_t len, char *err, size_t errlen)
{
	size_t pos = 0, n_args = 0;
	while (pos < len) {
		size_t at = pos;
		uint64_t key, v;
		if (!read_varint(p, len, &pos, &key))
			return fail(err, errlen, CA_EPROTO, "malformed protobuf: bad field key at byte %zu", at);
		uint64_t number = key >> 3;
		unsigned wire = (unsigned)(key & 7);
		if (number == 0 || number > 536870911u)
			return fail(err, errlen, CA_EPROTO, "malformed protobuf: bad field number at byte %zu", at);
		switch (wire) {
		case 0:
			if (!read_varint(p, len, &pos, &v))
				return fail(err, errlen, CA_EPROTO, "malformed protobuf: truncated varint at byte %zu", at);
			break;
		case 1:
		case 5: {
			size_t w = wire == 1 ? 8 : 4;
			if (len - pos < w)
				return fail(err, errlen, CA_EPROTO, "malformed protobuf: truncated field at byte %zu", at);
			pos += w;
			break;
		}
		case 2: {
			if (!read_varint(p, len, &pos, &v) || v > len - pos)
				return fail(err, errlen, CA_EPROTO, "malformed protobuf: truncated field at byte %zu", at);
			const char *s = (const char *)p + pos;
			size_t n = (size_t)v;
			pos += n;
			const char *name = NULL;
			char argname[32];
			if (number == ARGS_NUMBER) {
				if (++n_args > CA_COMMAND_MAX_ARGS)
					continue; /* counted, reported below */
				snprintf(argname, sizeof argname, "args[%zu]", n_args - 1);
				name = argname;
			}
			for (size_t i = 0; !name && i < N_STR_FIELDS; i++)
				if (str_fields[i].number == number)
					name = str_fields[i].name;
			if (name) {
				enum ca_err e = check_text(name, s, n, err, errlen);
				if (e)
					return e;
			}
			break;
		}
		default:
			return fail(err, errlen, CA_EPROTO, "malformed protobuf: unsupported wire type %u at byte %zu",
			            wire, at);
		}
	}
	if (n_args > CA_COMMAND_MAX_ARGS)
		return fail(err, errlen, CA_EINVAL, "field 'args' has %zu entries; at most %d are allowed", n_args,
		            CA_COMMAND_MAX_ARGS);
	return CA_OK;
}

static enum ca_err pb_time(const Google__Protobuf__Timestamp *t, const char *name, int64_t *ms, char *err,
                           size_t errlen)
{
	*ms = 0;
	if (!t)
		return CA_OK;
	if (t->seconds < MIN_TIME_S || t->seconds > MAX_TIME_S || t->nanos < 0 || t->nanos > 999999999)
		return fail(err, errlen, CA_EINVAL, "field '%s' is not a valid timestamp (out of range)", name);
	*ms = t->seconds * 1000 + t->nanos / 1000000;
	return CA_OK;
}

static enum ca_err decode_protobuf(const void *data, size_t len, struct ca_command *c, char *err, size_t errlen)
{
	const uint8_t *bytes = data ? data : (const uint8_t *)"";
	enum ca_err rc = prescan(bytes, len, err, errlen);
	if (rc)
		return rc;
	Collectagent__V1__Command *p = collectagent__v1__command__unpack(NULL, len, bytes);
	if (!p)
		return fail(err, errlen, CA_EPROTO, "malformed protobuf: not a collectagent.v1.Command");

	/* In the order of str_fields. */
	const char *values[N_STR_FIELDS] = { p->id, p->cluster_id, p->tool, p->action,
	                                     p->namespace_, p->issuer, p->signature };
	for (size_t i = 0; i < N_STR_FIELDS; i++) {
		const char *s = values[i];
		if (s && *s && (rc = dup_text(field_slot(c, &str_fields[i]), s, strlen(s))) != CA_OK)
			goto out;
	}
	if (p->n_args) {
		c->args = calloc(p->n_args, sizeof *c->args);
		if (!c->args) {
			rc = CA_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < p->n_args; i++) {
			rc = dup_text(&c->args[i], p->args[i], strlen(p->args[i]));
			if (rc)
				goto out;
			c->n_args = i + 1;
		}
	}
	c->timeout_seconds = p->timeout_seconds;
	rc = pb_time(p->issued_at, "issued_at", &c->issued_at, err, errlen);
	if (!rc)
		rc = pb_time(p->expires_at, "expires_at", &c->expires_at, err, errlen);
out:
	if (rc == CA_ENOMEM)
		fail(err, errlen, rc, "out of memory");
	collectagent__v1__command__free_unpacked(p, NULL);
	return rc;
}

/* ----------------------------------------------------------------- public */

enum ca_err ca_codec_decode_command(enum ca_codec_format f, const void *data, size_t len, struct ca_command *cmd,
                                    char *err, size_t errlen)
{
	struct ca_command c = { 0 };
	bool id_present = false;
	enum ca_err rc;

	if (err && errlen)
		err[0] = '\0';
	if (!cmd)
		return fail(err, errlen, CA_EINVAL, "no command to fill");
	memset(cmd, 0, sizeof *cmd);
	if (!data && len)
		return fail(err, errlen, CA_EINVAL, "no data");

	if (f == CA_CODEC_JSON) {
		rc = decode_json(data, len, &c, &id_present, err, errlen);
	} else if (f == CA_CODEC_PROTOBUF) {
		rc = decode_protobuf(data, len, &c, err, errlen);
		id_present = true; /* proto3 cannot tell absent from empty */
	} else {
		rc = fail(err, errlen, CA_EINVAL, "unknown encoding");
	}
	if (rc)
		goto out;
	rc = fill_empty(&c);
	if (rc) {
		fail(err, errlen, rc, "out of memory");
		goto out;
	}
	if (f == CA_CODEC_PROTOBUF && !c.id[0])
		rc = fail(err, errlen, CA_EINVAL, "field 'id' is missing or empty");
	else
		rc = check_common(&c, id_present, err, errlen);
	if (rc)
		goto out;
	*cmd = c;
	memset(&c, 0, sizeof c);
out:
	ca_command_fini(&c);
	return rc;
}
