/* Unit tests of exec/signature: the canonical bytes against the vectors
 * that tests/lib/command_signing.py generated (each command decoded by the
 * agent's own decoder, from JSON and from protobuf), verification of every
 * vector, a single changed byte anywhere failing it, strict base64, the
 * length and key reasons, and key-file loading errors. */
#include <inttypes.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/buf.h"
#include "exec/signature.h"
#include "check.h"

#define FIXTURES CA_SOURCE_ROOT "/tests/fixtures/exec/signing/"

/* ------------------------------------------------------------- helpers */

static struct ca_exec_keys *load_keys(const char *a, const char *b)
{
	char *items[2] = {(char *)a, (char *)b};
	struct ca_strlist files = {items, b ? 2 : 1};
	struct ca_exec_keys *k = NULL;
	char err[256] = "";
	enum ca_err rc = ca_exec_keys_load(&files, &k, err, sizeof err);
	CHECK_INT(rc, CA_OK);
	if (rc != CA_OK)
		fprintf(stderr, "   %s\n", err);
	return k;
}

/* Test-side base64 (OpenSSL's, lenient) so the code under test does not
 * check itself. */
static unsigned char *unbase64(const char *s, size_t *len)
{
	size_t n = strlen(s);
	unsigned char *out = malloc(n / 4 * 3 + 1);
	int got = out ? EVP_DecodeBlock(out, (const unsigned char *)s, (int)n) : -1;
	if (got < 0) {
		free(out);
		return NULL;
	}
	size_t pads = (n && s[n - 1] == '=') + (n > 1 && s[n - 2] == '=');
	*len = (size_t)got - pads;
	return out;
}

static char *base64(const unsigned char *data, size_t len)
{
	char *out = malloc((len + 2) / 3 * 4 + 1);
	if (out)
		EVP_EncodeBlock((unsigned char *)out, data, (int)len);
	return out;
}

static bool canonical_is(const struct ca_command *c, const unsigned char *want, size_t want_len)
{
	struct ca_buf b;
	ca_buf_init(&b, 0);
	bool ok = ca_exec_canonical(c, &b) == CA_OK && b.len == want_len &&
	          memcmp(b.data, want, want_len) == 0;
	ca_buf_fini(&b);
	return ok;
}

static bool same_canonical(const struct ca_command *a, const struct ca_command *b)
{
	struct ca_buf x, y;
	ca_buf_init(&x, 0);
	ca_buf_init(&y, 0);
	bool ok = ca_exec_canonical(a, &x) == CA_OK && ca_exec_canonical(b, &y) == CA_OK &&
	          x.len == y.len && memcmp(x.data, y.data, x.len) == 0;
	ca_buf_fini(&x);
	ca_buf_fini(&y);
	return ok;
}

/* Encode c in format f with the agent's encoder and decode it back. */
static bool round_trip(enum ca_codec_format f, const struct ca_command *c, struct ca_command *out)
{
	struct ca_buf b;
	char err[256] = "";
	ca_buf_init(&b, 0);
	bool ok = ca_codec_encode_command(f, c, &b) == CA_OK &&
	          ca_codec_decode_command(f, b.data, b.len, out, err, sizeof err) == CA_OK;
	if (!ok)
		fprintf(stderr, "   round trip (%s) failed: %s\n",
		        f == CA_CODEC_JSON ? "json" : "protobuf", err);
	ca_buf_fini(&b);
	return ok;
}

static enum ca_err verify(const struct ca_exec_keys *k, const struct ca_command *c, char *why,
                          size_t whylen)
{
	why[0] = '\0';
	return ca_exec_verify(k, c, why, whylen);
}

static int denied_count;

/* The mutated command must be refused as not verifying. */
static void expect_denied(const struct ca_exec_keys *k, const struct ca_command *c, const char *vec,
                          const char *what)
{
	char why[256];
	enum ca_err rc = verify(k, c, why, sizeof why);
	denied_count++;
	CHECK(rc == CA_EDENIED && check_contains(why, "does not verify"));
	if (rc != CA_EDENIED)
		fprintf(stderr, "   vector '%s': %s was accepted\n", vec, what);
}

/* ------------------------------------------------------------- mutations */

static char **string_slot(struct ca_command *c, int i)
{
	char **slots[] = {&c->id, &c->cluster_id, &c->tool, &c->action, &c->namespace_, &c->issuer};
	return slots[i];
}

static const char *const string_names[] = {"id",     "cluster_id", "tool",
                                           "action", "namespace",  "issuer"};

/* Every single-byte change of s (each byte xor 1, unless that makes a NUL),
 * one byte appended and the last byte dropped: each must fail. */
static void mutate_string(const struct ca_exec_keys *k, struct ca_command *c, char **slot,
                          const char *vec, const char *name)
{
	char *orig = *slot;
	size_t n = strlen(orig);
	char *copy = malloc(n + 2);
	char what[96];
	if (!copy) {
		CHECK(!"out of memory");
		return;
	}
	*slot = copy;
	for (size_t i = 0; i < n; i++) {
		memcpy(copy, orig, n + 1);
		if ((copy[i] ^ 1) == 0)
			continue;
		copy[i] ^= 1;
		snprintf(what, sizeof what, "%s with byte %zu flipped", name, i);
		expect_denied(k, c, vec, what);
	}
	memcpy(copy, orig, n);
	copy[n] = 'x';
	copy[n + 1] = '\0';
	snprintf(what, sizeof what, "%s with a byte appended", name);
	expect_denied(k, c, vec, what);
	if (n) {
		copy[n - 1] = '\0';
		snprintf(what, sizeof what, "%s with its last byte dropped", name);
		expect_denied(k, c, vec, what);
	}
	*slot = orig;
	free(copy);
}

static void mutate_int(const struct ca_exec_keys *k, struct ca_command *c, int64_t *v,
                       const char *vec, const char *name)
{
	char what[96];
	int64_t orig = *v;
	for (int d = -1; d <= 1; d += 2) {
		if ((d < 0 && orig == INT64_MIN) || (d > 0 && orig == INT64_MAX))
			continue;
		*v = orig + d;
		snprintf(what, sizeof what, "%s %+d", name, d);
		expect_denied(k, c, vec, what);
	}
	*v = orig;
}

/* Swap in another argument list for one verification. */
static void with_args(const struct ca_exec_keys *k, struct ca_command *c, char **args, size_t n,
                      const char *vec, const char *what)
{
	char **orig = c->args;
	size_t orig_n = c->n_args;
	c->args = args;
	c->n_args = n;
	expect_denied(k, c, vec, what);
	c->args = orig;
	c->n_args = orig_n;
}

static void mutate_args(const struct ca_exec_keys *k, struct ca_command *c, const char *vec)
{
	size_t n = c->n_args;
	char **list = calloc(n + 1, sizeof *list);
	char what[96];
	if (!list) {
		CHECK(!"out of memory");
		return;
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(what, sizeof what, "args[%zu]", i);
		mutate_string(k, c, &c->args[i], vec, what);
	}
	/* One more (empty) arg, the last one removed, the first one removed. */
	if (n)
		memcpy(list, c->args, n * sizeof *list);
	list[n] = (char *)"";
	with_args(k, c, list, n + 1, vec, "an empty arg appended");
	if (n) {
		with_args(k, c, list, n - 1, vec, "the last arg removed");
		with_args(k, c, list + 1, n - 1, vec, "the first arg removed");
	}
	/* A character moved across the boundary of two adjacent args, both
	 * ways: the bytes in sequence stay the same, only the split moves. */
	for (size_t i = 0; i + 1 < n; i++) {
		const char *a = c->args[i], *b = c->args[i + 1];
		size_t la = strlen(a), lb = strlen(b);
		char *na = malloc(la + lb + 2), *nb = malloc(la + lb + 2);
		if (!na || !nb) {
			free(na);
			free(nb);
			CHECK(!"out of memory");
			break;
		}
		memcpy(list, c->args, n * sizeof *list);
		list[i] = na;
		list[i + 1] = nb;
		if (la) { /* last char of a to the front of b */
			snprintf(na, la + lb + 2, "%.*s", (int)(la - 1), a);
			snprintf(nb, la + lb + 2, "%c%s", a[la - 1], b);
			snprintf(what, sizeof what, "a char moved from args[%zu] to args[%zu]", i,
			         i + 1);
			with_args(k, c, list, n, vec, what);
		}
		if (lb) { /* first char of b to the end of a */
			snprintf(na, la + lb + 2, "%s%c", a, b[0]);
			snprintf(nb, la + lb + 2, "%s", b + 1);
			snprintf(what, sizeof what, "a char moved from args[%zu] to args[%zu]",
			         i + 1, i);
			with_args(k, c, list, n, vec, what);
		}
		free(na);
		free(nb);
	}
	free(list);
}

/* Two string fields trading values (names are part of the form). */
static void mutate_swaps(const struct ca_exec_keys *k, struct ca_command *c, const char *vec)
{
	for (int i = 0; i < 6; i++)
		for (int j = i + 1; j < 6; j++) {
			char **a = string_slot(c, i), **b = string_slot(c, j), *t;
			if (strcmp(*a, *b) == 0)
				continue;
			t = *a;
			*a = *b;
			*b = t;
			char what[96];
			snprintf(what, sizeof what, "%s and %s swapped", string_names[i],
			         string_names[j]);
			expect_denied(k, c, vec, what);
			*b = *a;
			*a = t;
		}
}

/* ------------------------------------------------------------- vectors */

struct vector {
	char *name;
	char *json; /* the command as JSON text */
	unsigned char *canonical;
	size_t canonical_len;
	char *signature, *signature_other;
};

static size_t load_vectors(struct vector **out)
{
	json_error_t jerr;
	json_t *root = json_load_file(FIXTURES "vectors.json", 0, &jerr);
	json_t *list = root ? json_object_get(root, "vectors") : NULL;
	size_t n = json_array_size(list);
	struct vector *v = calloc(n ? n : 1, sizeof *v);
	CHECK(root != NULL && v != NULL);
	if (!root || !v) {
		fprintf(stderr, "   vectors.json: %s\n", jerr.text);
		json_decref(root);
		free(v);
		*out = NULL;
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		json_t *e = json_array_get(list, i);
		v[i].name = strdup(json_string_value(json_object_get(e, "name")));
		v[i].json = json_dumps(json_object_get(e, "command"), JSON_COMPACT);
		v[i].canonical = unbase64(json_string_value(json_object_get(e, "canonical")),
		                          &v[i].canonical_len);
		v[i].signature = strdup(json_string_value(json_object_get(e, "signature")));
		v[i].signature_other =
		        strdup(json_string_value(json_object_get(e, "signature_other")));
		CHECK(v[i].name && v[i].json && v[i].canonical && v[i].signature &&
		      v[i].signature_other);
	}
	json_decref(root);
	*out = v;
	return n;
}

static void free_vectors(struct vector *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++) {
		free(v[i].name);
		free(v[i].json);
		free(v[i].canonical);
		free(v[i].signature);
		free(v[i].signature_other);
	}
	free(v);
}

static void set_signature(struct ca_command *c, const char *sig)
{
	free(c->signature);
	c->signature = strdup(sig);
	CHECK(c->signature != NULL);
}

static void test_vectors(const struct vector *v, size_t n)
{
	struct ca_exec_keys *mine = load_keys(FIXTURES "public.pem", NULL);
	struct ca_exec_keys *other = load_keys(FIXTURES "other_public.pem", NULL);
	struct ca_exec_keys *both = load_keys(FIXTURES "other_public.pem", FIXTURES "public.pem");
	char why[256];
	CHECK(n >= 12);
	CHECK_INT(ca_exec_keys_count(both), 2);
	for (size_t i = 0; i < n; i++) {
		struct ca_command c = {0}, pb = {0}, js = {0};
		char err[256] = "";
		CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, v[i].json, strlen(v[i].json), &c,
		                                  err, sizeof err),
		          CA_OK);
		if (err[0])
			fprintf(stderr, "   vector '%s': %s\n", v[i].name, err);
		/* The C canonical form is the Python one, byte for byte, and
		 * does not depend on the wire format. */
		CHECK(canonical_is(&c, v[i].canonical, v[i].canonical_len));
		CHECK(round_trip(CA_CODEC_PROTOBUF, &c, &pb));
		CHECK(round_trip(CA_CODEC_JSON, &c, &js));
		CHECK(canonical_is(&pb, v[i].canonical, v[i].canonical_len));
		CHECK(canonical_is(&js, v[i].canonical, v[i].canonical_len));
		if (!canonical_is(&c, v[i].canonical, v[i].canonical_len))
			fprintf(stderr, "   vector '%s': canonical bytes differ\n", v[i].name);

		set_signature(&c, v[i].signature);
		set_signature(&pb, v[i].signature);
		CHECK_INT(verify(mine, &c, why, sizeof why), CA_OK);
		CHECK_INT(verify(mine, &pb, why, sizeof why), CA_OK);
		CHECK_INT(verify(both, &c, why, sizeof why), CA_OK);
		/* The unrelated key does not verify it. */
		CHECK_INT(verify(other, &c, why, sizeof why), CA_EDENIED);
		CHECK_STR(why, "signature does not verify with the 1 configured key");

		/* Every change to any covered field breaks it. */
		for (int f = 0; f < 6; f++)
			mutate_string(mine, &c, string_slot(&c, f), v[i].name, string_names[f]);
		mutate_int(mine, &c, &c.timeout_seconds, v[i].name, "timeout_seconds");
		mutate_int(mine, &c, &c.issued_at, v[i].name, "issued_at");
		mutate_int(mine, &c, &c.expires_at, v[i].name, "expires_at");
		mutate_args(mine, &c, v[i].name);
		mutate_swaps(mine, &c, v[i].name);
		/* ...and after all that the command is intact and verifies. */
		CHECK_INT(verify(mine, &c, why, sizeof why), CA_OK);

		/* The other signer: only a key set holding its key accepts it. */
		set_signature(&c, v[i].signature_other);
		CHECK_INT(verify(both, &c, why, sizeof why), CA_OK);
		CHECK_INT(verify(other, &c, why, sizeof why), CA_OK);
		CHECK_INT(verify(mine, &c, why, sizeof why), CA_EDENIED);
		ca_command_fini(&c);
		ca_command_fini(&pb);
		ca_command_fini(&js);
	}
	/* Both keys listed, neither signed it. */
	struct ca_command c = {0};
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, v[0].json, strlen(v[0].json), &c, NULL, 0),
	          CA_OK);
	set_signature(&c, v[1].signature);
	CHECK_INT(verify(both, &c, why, sizeof why), CA_EDENIED);
	CHECK_STR(why, "signature does not verify with any of the 2 configured keys");
	ca_command_fini(&c);
	printf("%d changed commands refused\n", denied_count);
	ca_exec_keys_free(mine);
	ca_exec_keys_free(other);
	ca_exec_keys_free(both);
}

/* ------------------------------------------------------------- canonical */

static void test_canonical_form(const struct vector *v, size_t n)
{
	char *args[] = {(char *)"pods", (char *)"-o", (char *)"wide"};
	struct ca_command c = {
	        .id = (char *)"cmd-42",
	        .cluster_id = (char *)"*",
	        .tool = (char *)"kubectl",
	        .action = (char *)"get",
	        .namespace_ = (char *)"shop",
	        .issuer = (char *)"ops@example.com",
	        .signature = (char *)"not covered",
	        .args = args,
	        .n_args = 3,
	        .timeout_seconds = 30,
	        .issued_at = 1795307190123LL,
	        .expires_at = 1795307250123LL,
	};
	static const char want[] = "collect-agent-command-v1\n"
	                           "id=6:cmd-42\n"
	                           "cluster_id=1:*\n"
	                           "tool=7:kubectl\n"
	                           "action=3:get\n"
	                           "namespace=4:shop\n"
	                           "issuer=15:ops@example.com\n"
	                           "timeout_seconds=30\n"
	                           "issued_at=1795307190123\n"
	                           "expires_at=1795307250123\n"
	                           "args=3\n"
	                           "4:pods\n"
	                           "2:-o\n"
	                           "4:wide\n";
	CHECK(canonical_is(&c, (const unsigned char *)want, strlen(want)));
	CHECK(n > 0 && canonical_is(&c, v[0].canonical, v[0].canonical_len));

	/* NULL strings and NULL args are "" and none: the "only an id" vector. */
	struct ca_command bare = {.id = (char *)"x"};
	CHECK(n > 1 && canonical_is(&bare, v[1].canonical, v[1].canonical_len));
	bare.n_args = 3; /* args NULL: no args, whatever n_args says */
	CHECK(n > 1 && canonical_is(&bare, v[1].canonical, v[1].canonical_len));

	/* Appends; on failure the buffer is as it was. */
	struct ca_buf b;
	ca_buf_init(&b, 40);
	CHECK_INT(ca_buf_append_str(&b, "prefix"), CA_OK);
	CHECK_INT(ca_exec_canonical(&c, &b), CA_ETOOBIG);
	CHECK_INT(b.len, 6);
	CHECK_STR(b.data, "prefix");
	ca_buf_fini(&b);
	ca_buf_init(&b, 0);
	CHECK_INT(ca_buf_append_str(&b, "prefix"), CA_OK);
	CHECK_INT(ca_exec_canonical(&c, &b), CA_OK);
	CHECK(b.len == 6 + strlen(want) && memcmp(b.data + 6, want, strlen(want)) == 0);
	CHECK_INT(ca_exec_canonical(NULL, &b), CA_EINVAL);
	CHECK_INT(ca_exec_canonical(&c, NULL), CA_EINVAL);
	ca_buf_fini(&b);

	/* Negative and extreme integers in plain decimal. */
	struct ca_command ext = {.id = (char *)"e",
	                         .timeout_seconds = INT64_MAX,
	                         .issued_at = -1,
	                         .expires_at = INT64_MIN};
	ca_buf_init(&b, 0);
	CHECK_INT(ca_exec_canonical(&ext, &b), CA_OK);
	CHECK(check_contains(b.data, "\ntimeout_seconds=9223372036854775807\nissued_at=-1\n"
	                       "expires_at=-9223372036854775808\nargs=0\n"));
	ca_buf_fini(&b);
}

/* A JSON command and the same command in protobuf sign the same bytes,
 * including timestamps finer than a millisecond (floored on both paths). */
static size_t put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	do {
		p[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v);
	return n;
}

static size_t pb_command(unsigned char *p, const char *id, int64_t seconds, int32_t nanos)
{
	unsigned char ts[32];
	size_t tn = 0, n = 0;
	ts[tn++] = 0x08; /* Timestamp.seconds */
	tn += put_varint(ts + tn, (uint64_t)seconds);
	ts[tn++] = 0x10; /* Timestamp.nanos */
	tn += put_varint(ts + tn, (uint64_t)(int64_t)nanos);
	p[n++] = 0x0a; /* Command.id */
	p[n++] = (unsigned char)strlen(id);
	memcpy(p + n, id, strlen(id));
	n += strlen(id);
	p[n++] = 0x42; /* Command.issued_at */
	p[n++] = (unsigned char)tn;
	memcpy(p + n, ts, tn);
	return n + tn;
}

static void test_json_protobuf_same_bytes(void)
{
	static const struct {
		const char *json;
		int64_t seconds;
		int32_t nanos;
	} cases[] = {
	        {"{\"id\":\"t\",\"issued_at\":\"2026-11-22T00:26:30.123999Z\"}", 1795307190,
	         123999000},
	        {"{\"id\":\"t\",\"issued_at\":\"2026-11-22T01:26:30.123999999+01:00\"}", 1795307190,
	         123999999},
	        {"{\"id\":\"t\",\"issued_at\":\"1969-12-31T23:59:59.9999Z\"}", -1, 999900000},
	        {"{\"id\":\"t\",\"issued_at\":\"1970-01-01T00:00:00.0005Z\"}", 0, 500000},
	};
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		struct ca_command j = {0}, p = {0};
		unsigned char pb[64];
		size_t len = pb_command(pb, "t", cases[i].seconds, cases[i].nanos);
		CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, cases[i].json,
		                                  strlen(cases[i].json), &j, NULL, 0),
		          CA_OK);
		CHECK_INT(ca_codec_decode_command(CA_CODEC_PROTOBUF, pb, len, &p, NULL, 0), CA_OK);
		CHECK_INT(j.issued_at, p.issued_at);
		CHECK(same_canonical(&j, &p));
		ca_command_fini(&j);
		ca_command_fini(&p);
	}

	/* A full command built here, encoded by the agent in both formats. */
	char *args[] = {(char *)"logs", (char *)"", (char *)"a:b\nc",
	                (char *)"\xc3\xa9\xf0\x9f\x9a\x80"};
	struct ca_command c = {
	        .id = (char *)"both",
	        .cluster_id = (char *)"prod",
	        .tool = (char *)"kubectl",
	        .action = (char *)"logs",
	        .namespace_ = (char *)"caf\xc3\xa9",
	        .issuer = (char *)"",
	        .signature = (char *)"",
	        .args = args,
	        .n_args = 4,
	        .timeout_seconds = 7,
	        .issued_at = -62135596800000LL,
	        .expires_at = 253402300799999LL,
	};
	struct ca_command j = {0}, p = {0};
	CHECK(round_trip(CA_CODEC_JSON, &c, &j));
	CHECK(round_trip(CA_CODEC_PROTOBUF, &c, &p));
	CHECK(same_canonical(&c, &j));
	CHECK(same_canonical(&j, &p));
	ca_command_fini(&j);
	ca_command_fini(&p);
}

/* ------------------------------------------------------------- signature text */

static void expect_reason(const struct ca_exec_keys *k, struct ca_command *c, const char *sig,
                          enum ca_err want, const char *reason)
{
	char why[256];
	set_signature(c, sig);
	enum ca_err rc = verify(k, c, why, sizeof why);
	CHECK_INT(rc, want);
	CHECK_STR(why, reason);
	if (rc != want)
		fprintf(stderr, "   signature \"%s\"\n", sig);
}

static void test_signature_text(const struct vector *v)
{
	struct ca_exec_keys *k = load_keys(FIXTURES "public.pem", FIXTURES "other_public.pem");
	struct ca_command c = {0};
	const char *good = v[0].signature;
	size_t n = strlen(good);
	char s[256];
	const char *bad64 = "signature is not valid base64";
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, v[0].json, strlen(v[0].json), &c, NULL, 0),
	          CA_OK);
	CHECK(n == 88 && good[86] == '=' && good[87] == '=');
	expect_reason(k, &c, good, CA_OK, "");

	expect_reason(k, &c, "", CA_EDENIED,
	              "command is not signed (exec.require_signature is on)");
	free(c.signature);
	c.signature = NULL;
	char why[256];
	CHECK_INT(verify(k, &c, why, sizeof why), CA_EDENIED);
	CHECK_STR(why, "command is not signed (exec.require_signature is on)");

	/* whitespace: inside, around, a trailing newline */
	snprintf(s, sizeof s, "%.40s %s", good, good + 40);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%.40s\n%.47s", good, good + 40); /* still 88 chars */
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%s\n", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, " %s", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	/* padding: missing (86 chars), one missing, extra */
	snprintf(s, sizeof s, "%.86s", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%.87s", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%s=", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%s====", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%.84s====", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%.85s===", good);
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	snprintf(s, sizeof s, "%.40s=%s", good, good + 41); /* '=' inside */
	expect_reason(k, &c, s, CA_EDENIED, bad64);
	expect_reason(k, &c, "====", CA_EDENIED, bad64);
	expect_reason(k, &c, "=", CA_EDENIED, bad64);
	/* the URL-safe alphabet, other bytes */
	const char *const foreign[] = {"-", "_", ".", "*", "\xc3\xa9", "\x7f"};
	for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
		size_t fl = strlen(foreign[i]);
		snprintf(s, sizeof s, "%.*s%s%s", (int)(10 - fl + 1), good, foreign[i], good + 11);
		if (fl == 1)
			CHECK_INT(strlen(s), 88);
		expect_reason(k, &c, s, CA_EDENIED, bad64);
	}
	/* The same signature in the URL-safe alphabet. */
	snprintf(s, sizeof s, "%s", good);
	bool changed = false;
	for (char *p = s; *p; p++) {
		if (*p == '+' || *p == '/') {
			*p = *p == '+' ? '-' : '_';
			changed = true;
		}
	}
	if (changed)
		expect_reason(k, &c, s, CA_EDENIED, bad64);
	/* Bits under the padding must be zero: "xQ==" and "xR==" would both
	 * decode to the same last byte. */
	snprintf(s, sizeof s, "%s", good);
	s[85] = s[85] == 'A' ? 'B' : s[85] == 'Q' ? 'R' : s[85] == 'g' ? 'h' : 'x';
	expect_reason(k, &c, s, CA_EDENIED, bad64);

	/* Valid base64, wrong length. */
	unsigned char raw[66];
	size_t raw_len = 0;
	unsigned char *dec = unbase64(good, &raw_len);
	CHECK(dec && raw_len == 64);
	memcpy(raw, dec, 64);
	raw[64] = 0;
	raw[65] = 0;
	free(dec);
	const size_t lengths[] = {63, 65, 1, 2, 3, 32, 66};
	for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
		char *b = base64(raw, lengths[i]);
		char reason[96];
		snprintf(reason, sizeof reason,
		         "signature is %zu bytes; an ed25519 signature is 64", lengths[i]);
		expect_reason(k, &c, b, CA_EDENIED, reason);
		free(b);
	}
	/* 64 bytes that are not the signature: each bit of the signature matters. */
	for (size_t i = 0; i < 64; i++) {
		raw[i] ^= (unsigned char)(1u << (i % 8));
		char *b = base64(raw, 64);
		expect_reason(k, &c, b, CA_EDENIED,
		              "signature does not verify with any of the 2 configured keys");
		free(b);
		raw[i] ^= (unsigned char)(1u << (i % 8));
	}
	memset(raw, 0, 64);
	char *zeros = base64(raw, 64);
	expect_reason(k, &c, zeros, CA_EDENIED,
	              "signature does not verify with any of the 2 configured keys");
	free(zeros);

	/* why may be NULL or tiny; NULL arguments. */
	set_signature(&c, good);
	CHECK_INT(ca_exec_verify(k, &c, NULL, 0), CA_OK);
	set_signature(&c, "");
	char tiny[8];
	CHECK_INT(ca_exec_verify(k, &c, tiny, sizeof tiny), CA_EDENIED);
	CHECK_STR(tiny, "command");
	CHECK_INT(ca_exec_verify(NULL, &c, NULL, 0), CA_EINVAL);
	CHECK_INT(ca_exec_verify(k, NULL, NULL, 0), CA_EINVAL);
	ca_command_fini(&c);
	ca_exec_keys_free(k);
}

/* ------------------------------------------------------------- keys */

static void expect_load_error(const char *path, enum ca_err want, const char *reason)
{
	char *items[] = {(char *)FIXTURES "public.pem", (char *)path};
	struct ca_strlist files = {items, 2};
	struct ca_exec_keys *k = (struct ca_exec_keys *)&files; /* must be reset to NULL */
	char err[512] = "";
	enum ca_err rc = ca_exec_keys_load(&files, &k, err, sizeof err);
	CHECK_INT(rc, want);
	CHECK(k == NULL);
	CHECK_CONTAINS(err, "exec.public_key_files: ");
	CHECK_CONTAINS(err, path);
	CHECK_CONTAINS(err, reason);
	ca_exec_keys_free(rc == CA_OK ? k : NULL);
}

static void test_keys(const struct vector *v)
{
	expect_load_error(FIXTURES "missing.pem", CA_ENOTFOUND, "no such file");
	expect_load_error(FIXTURES, CA_EINVAL, "directory");
	expect_load_error(FIXTURES "not_pem.txt", CA_EINVAL,
	                  "is not a PEM file (no -----BEGIN PUBLIC KEY----- line)");
	expect_load_error(FIXTURES "vectors.json", CA_EINVAL, "is not a PEM file");
	expect_load_error(FIXTURES "rsa_public.pem", CA_EINVAL,
	                  "holds a key of type RSA; only ed25519 keys are accepted");
	expect_load_error(FIXTURES "ec_public.pem", CA_EINVAL,
	                  "holds a key of type EC; only ed25519 keys are accepted");
	expect_load_error(FIXTURES "ed448_public.pem", CA_EINVAL,
	                  "holds a key of type ED448; only ed25519 keys are accepted");
	expect_load_error(FIXTURES "rsa_pkcs1_public.pem", CA_EINVAL,
	                  "holds a PEM 'RSA PUBLIC KEY' block, not 'PUBLIC KEY'");
	expect_load_error(FIXTURES "private.pem", CA_EINVAL, "holds a private key");
	expect_load_error(FIXTURES "other_private.pem", CA_EINVAL, "holds a private key");
	expect_load_error(FIXTURES "two_keys.pem", CA_EINVAL,
	                  "holds 2 PEM blocks; put one key in each file");
	expect_load_error(FIXTURES "corrupt_public.pem", CA_EINVAL,
	                  "holds a PUBLIC KEY block that does not decode");

	/* Files written here: an OpenSSH key, an empty file, a certificate
	 * label, a private key after a public one. */
	static const struct {
		const char *content, *reason;
	} written[] = {
	        {"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2sgbW9jayBtb2NrIG1vY2sgbW9jayBtb2Nr "
	         "me\n",
	         "is an OpenSSH public key"},
	        {"", "is not a PEM file"},
	        {"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
	         "holds a PEM 'CERTIFICATE' block"},
	        {"-----BEGIN PUBLIC KEY-\n", "has a malformed PEM header line"},
	        {"-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA\n-----END PUBLIC KEY-----\n"
	         "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE "
	         "KEY-----\n",
	         "holds a private key"},
	};
	for (size_t i = 0; i < sizeof written / sizeof written[0]; i++) {
		char path[] = "/tmp/test_signature_XXXXXX";
		int fd = mkstemp(path);
		CHECK(fd >= 0);
		if (fd < 0)
			continue;
		size_t len = strlen(written[i].content);
		CHECK(write(fd, written[i].content, len) == (ssize_t)len);
		close(fd);
		expect_load_error(path, CA_EINVAL, written[i].reason);
		unlink(path);
	}

	/* The first bad file stops the load, whatever follows. */
	char *items[] = {(char *)FIXTURES "public.pem", (char *)FIXTURES "rsa_public.pem",
	                 (char *)FIXTURES "missing.pem"};
	struct ca_strlist files = {items, 3};
	struct ca_exec_keys *k = NULL;
	char err[512];
	CHECK_INT(ca_exec_keys_load(&files, &k, err, sizeof err), CA_EINVAL);
	CHECK_CONTAINS(err, "rsa_public.pem");
	CHECK(k == NULL);

	/* No files: no keys; nothing verifies. */
	files.count = 0;
	CHECK_INT(ca_exec_keys_load(&files, &k, err, sizeof err), CA_OK);
	CHECK_INT(ca_exec_keys_count(k), 0);
	struct ca_command c = {0};
	CHECK_INT(ca_codec_decode_command(CA_CODEC_JSON, v[0].json, strlen(v[0].json), &c, NULL, 0),
	          CA_OK);
	set_signature(&c, v[0].signature);
	char why[256];
	CHECK_INT(verify(k, &c, why, sizeof why), CA_EDENIED);
	CHECK_CONTAINS(why, "no public key is configured");
	ca_command_fini(&c);
	ca_exec_keys_free(k);

	/* The same key twice is harmless. */
	files.items[1] = (char *)FIXTURES "public.pem";
	files.count = 2;
	CHECK_INT(ca_exec_keys_load(&files, &k, err, sizeof err), CA_OK);
	CHECK_INT(ca_exec_keys_count(k), 2);
	ca_exec_keys_free(k);

	/* NULL arguments. */
	k = NULL;
	CHECK_INT(ca_exec_keys_load(NULL, &k, err, sizeof err), CA_EINVAL);
	CHECK_INT(ca_exec_keys_load(&files, NULL, NULL, 0), CA_EINVAL);
	CHECK_INT(ca_exec_keys_count(NULL), 0);
	ca_exec_keys_free(NULL);
}

/* ------------------------------------------------------------- threads */

struct worker {
	const struct ca_exec_keys *k;
	const struct vector *v;
	size_t n;
	int failures;
};

static void *verify_many(void *arg)
{
	struct worker *w = arg;
	for (int round = 0; round < 20; round++)
		for (size_t i = 0; i < w->n; i++) {
			struct ca_command c = {0};
			char why[128];
			bool good = (round + i) % 2 == 0;
			if (ca_codec_decode_command(CA_CODEC_JSON, w->v[i].json,
			                            strlen(w->v[i].json), &c, NULL, 0) != CA_OK) {
				w->failures++;
				continue;
			}
			free(c.signature);
			c.signature =
			        strdup(good ? w->v[i].signature : w->v[(i + 1) % w->n].signature);
			enum ca_err rc = ca_exec_verify(w->k, &c, why, sizeof why);
			if (rc != (good ? CA_OK : CA_EDENIED))
				w->failures++;
			ca_command_fini(&c);
		}
	return NULL;
}

static void test_threads(const struct vector *v, size_t n)
{
	struct ca_exec_keys *k = load_keys(FIXTURES "public.pem", FIXTURES "other_public.pem");
	struct worker w[3] = {{k, v, n, 0}, {k, v, n, 0}, {k, v, n, 0}};
	pthread_t t[3];
	for (int i = 0; i < 3; i++)
		CHECK_INT(pthread_create(&t[i], NULL, verify_many, &w[i]), 0);
	for (int i = 0; i < 3; i++) {
		pthread_join(t[i], NULL);
		CHECK_INT(w[i].failures, 0);
	}
	ca_exec_keys_free(k);
}

/* ------------------------------------------------------------- signing */

/* agentctl's side: what ca_exec_sign makes verifies under the matching
 * public key only; a key file that is not an ed25519 private key is
 * refused with its name. */
static void test_sign(void)
{
	char *args[] = {"pods", "-A"};
	struct ca_command cmd = {
		.id = "cmd-sign", .cluster_id = "c1", .tool = "kubectl", .action = "get",
		.namespace_ = "", .issuer = "ops", .args = args, .n_args = 2,
		.timeout_seconds = 5, .issued_at = 1795307190123, .expires_at = 1795307250123,
	};
	struct ca_buf sig;
	char err[256] = "";
	ca_buf_init(&sig, 0);
	CHECK_INT(ca_exec_sign(&cmd, FIXTURES "private.pem", &sig, err, sizeof err), CA_OK);
	CHECK(sig.len == 88);
	cmd.signature = sig.data;
	struct ca_exec_keys *good = load_keys(FIXTURES "public.pem", NULL);
	struct ca_exec_keys *other = load_keys(FIXTURES "other_public.pem", NULL);
	char why[256] = "";
	CHECK_INT(ca_exec_verify(good, &cmd, why, sizeof why), CA_OK);
	CHECK_INT(ca_exec_verify(other, &cmd, why, sizeof why), CA_EDENIED);
	/* The signature covers the fields: another arg does not verify. */
	args[1] = "-n";
	CHECK_INT(ca_exec_verify(good, &cmd, why, sizeof why), CA_EDENIED);
	ca_exec_keys_free(good);
	ca_exec_keys_free(other);

	ca_buf_reset(&sig);
	CHECK_INT(ca_exec_sign(&cmd, FIXTURES "public.pem", &sig, err, sizeof err), CA_EINVAL);
	CHECK(sig.len == 0 && strstr(err, "public.pem") != NULL);
	CHECK_INT(ca_exec_sign(&cmd, FIXTURES "no-such-key.pem", &sig, err, sizeof err), CA_ENOTFOUND);
	CHECK(strstr(err, "no-such-key.pem") != NULL);
	ca_buf_fini(&sig);
}

int main(void)
{
	struct vector *v = NULL;
	size_t n = load_vectors(&v);
	if (n < 2)
		return check_report();
	test_canonical_form(v, n);
	test_json_protobuf_same_bytes();
	test_vectors(v, n);
	test_signature_text(v);
	test_keys(v);
	test_threads(v, n);
	test_sign();
	free_vectors(v, n);
	return check_report();
}
