/* exec/signature.c: ed25519 command signatures (signature.h). */
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/base64.h"
#include "core/file.h"
#include "exec/signature.h"

#define ED25519_SIGNATURE_BYTES 64
/* A PEM ed25519 key is 113 bytes; the cap only keeps a wrong path (a log
 * file, a disk image) from being read whole. */
#define KEY_FILE_MAX ((size_t)64 << 10)
#define PEM_BEGIN "-----BEGIN "

struct ca_exec_keys {
	EVP_PKEY **keys;
	size_t count;
};

/* ------------------------------------------------------------------------ */
/* Key files */

static const char *find_bytes(const char *hay, size_t haylen, const char *needle)
{
	return memmem(hay, haylen, needle, strlen(needle));
}

static size_t count_bytes(const char *hay, size_t haylen, const char *needle)
{
	size_t n = 0, step = strlen(needle);
	const char *p = hay, *end = hay + haylen;
	while ((p = find_bytes(p, (size_t)(end - p), needle)) != NULL) {
		n++;
		p += step;
	}
	return n;
}

/* The label of the PEM block at begin ("PUBLIC KEY", "CERTIFICATE"): its
 * length, or 0 when the line is not a well-formed PEM header. */
static size_t pem_label(const char *begin, const char *end)
{
	const char *label = begin + strlen(PEM_BEGIN), *p = label;
	while (p < end && p - label < 64 &&
	       ((*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == ' '))
		p++;
	if (p == label || (size_t)(end - p) < 5 || memcmp(p, "-----", 5) != 0)
		return 0;
	return (size_t)(p - label);
}

/* Refuse, with a reason a person can act on, everything but one
 * SubjectPublicKeyInfo block, before OpenSSL sees the text: its own errors
 * ("no start line") do not say what the file holds instead. */
static bool check_pem_shape(const char *text, size_t len, char *why, size_t whylen)
{
	const char *end = text + len;
	const char *first = find_bytes(text, len, PEM_BEGIN);
	if (!first) {
		if (len > 12 && memcmp(text, "ssh-ed25519 ", 12) == 0)
			ca_set_err(why, whylen,
			           "is an OpenSSH public key; give it as PEM (-----BEGIN PUBLIC "
			           "KEY-----)");
		else
			ca_set_err(why, whylen,
			           "is not a PEM file (no -----BEGIN PUBLIC KEY----- line)");
		return false;
	}
	for (const char *p = first; p; p = find_bytes(p + 1, (size_t)(end - p - 1), PEM_BEGIN)) {
		size_t n = pem_label(p, end);
		const char *label = p + strlen(PEM_BEGIN);
		if (n >= 11 && memcmp(label + n - 11, "PRIVATE KEY", 11) == 0) {
			ca_set_err(why, whylen,
			           "holds a private key; give the public key only "
			           "(`openssl pkey -in <file> -pubout`)");
			return false;
		}
	}
	size_t blocks = count_bytes(text, len, PEM_BEGIN);
	if (blocks != 1) {
		ca_set_err(why, whylen, "holds %zu PEM blocks; put one key in each file", blocks);
		return false;
	}
	size_t n = pem_label(first, end);
	const char *label = first + strlen(PEM_BEGIN);
	if (n == 0) {
		ca_set_err(why, whylen, "has a malformed PEM header line");
		return false;
	}
	if (n != 10 || memcmp(label, "PUBLIC KEY", 10) != 0) {
		ca_set_err(why, whylen,
		           "holds a PEM '%.*s' block, not 'PUBLIC KEY' (SubjectPublicKeyInfo)",
		           (int)n, label);
		return false;
	}
	return true;
}

static enum ca_err load_key(const char *path, EVP_PKEY **out, char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	EVP_PKEY *key = NULL;
	char why[160];
	enum ca_err rc = ca_read_file(path, KEY_FILE_MAX, &text, &len, NULL, why, sizeof why);
	if (rc != CA_OK)
		goto out;
	rc = CA_EINVAL;
	if (!check_pem_shape(text, len, why, sizeof why))
		goto out;
	bio = BIO_new_mem_buf(text, (int)len); /* len <= KEY_FILE_MAX */
	if (!bio) {
		rc = CA_ENOMEM;
		ca_set_err(why, sizeof why, "out of memory");
		goto out;
	}
	key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	if (!key) {
		const char *reason = ERR_reason_error_string(ERR_peek_last_error());
		ca_set_err(why, sizeof why, "holds a PUBLIC KEY block that does not decode (%s)",
		           reason ? reason : "bad base64 or DER");
		goto out;
	}
	if (!EVP_PKEY_is_a(key, "ED25519")) {
		const char *type = EVP_PKEY_get0_type_name(key);
		ca_set_err(why, sizeof why,
		           "holds a key of type %s; only ed25519 keys are accepted",
		           type ? type : "unknown");
		goto out;
	}
	*out = key;
	key = NULL;
	rc = CA_OK;
out:
	if (rc != CA_OK)
		ca_set_err(err, errlen, "exec.public_key_files: %s: %s", path, why);
	EVP_PKEY_free(key);
	BIO_free(bio);
	ca_free_secret_n(text, len);
	/* Leave nothing on this thread's OpenSSL error queue for nats.c or
	 * libcurl to mistake for their own. */
	ERR_clear_error();
	return rc;
}

enum ca_err ca_exec_keys_load(const struct ca_strlist *files, struct ca_exec_keys **out, char *err,
                              size_t errlen)
{
	struct ca_exec_keys *k = NULL;
	enum ca_err rc = CA_EINVAL;
	if (out)
		*out = NULL;
	if (!files || !out || (files->count && !files->items)) {
		ca_set_err(err, errlen, "exec.public_key_files: no list given");
		goto out;
	}
	rc = CA_ENOMEM;
	k = calloc(1, sizeof *k);
	if (!k || (files->count && !(k->keys = calloc(files->count, sizeof *k->keys)))) {
		ca_set_err(err, errlen, "exec.public_key_files: out of memory");
		goto out;
	}
	for (size_t i = 0; i < files->count; i++) {
		rc = load_key(files->items[i], &k->keys[i], err, errlen);
		if (rc != CA_OK)
			goto out;
		k->count++;
	}
	*out = k;
	k = NULL;
	rc = CA_OK;
out:
	ca_exec_keys_free(k);
	return rc;
}

void ca_exec_keys_free(struct ca_exec_keys *k)
{
	if (!k)
		return;
	for (size_t i = 0; i < k->count; i++)
		EVP_PKEY_free(k->keys[i]);
	free(k->keys);
	free(k);
}

size_t ca_exec_keys_count(const struct ca_exec_keys *k)
{
	return k ? k->count : 0;
}

/* ------------------------------------------------------------------------ */
/* Canonical bytes (docs/MESSAGES.md "Signing commands") */

static enum ca_err put_bytes(struct ca_buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	enum ca_err rc = ca_buf_printf(b, "%zu:", n);
	if (rc == CA_OK && n)
		rc = ca_buf_append(b, s, n);
	if (rc == CA_OK)
		rc = ca_buf_append(b, "\n", 1);
	return rc;
}

static enum ca_err put_string(struct ca_buf *b, const char *name, const char *s)
{
	enum ca_err rc = ca_buf_printf(b, "%s=", name);
	return rc == CA_OK ? put_bytes(b, s) : rc;
}

enum ca_err ca_exec_canonical(const struct ca_command *cmd, struct ca_buf *out)
{
	if (!cmd || !out)
		return CA_EINVAL;
	size_t mark = out->len;
	enum ca_err rc = ca_buf_append_str(out, "collect-agent-command-v1\n");
	if (rc == CA_OK)
		rc = put_string(out, "id", cmd->id);
	if (rc == CA_OK)
		rc = put_string(out, "cluster_id", cmd->cluster_id);
	if (rc == CA_OK)
		rc = put_string(out, "tool", cmd->tool);
	if (rc == CA_OK)
		rc = put_string(out, "action", cmd->action);
	if (rc == CA_OK)
		rc = put_string(out, "namespace", cmd->namespace_);
	if (rc == CA_OK)
		rc = put_string(out, "issuer", cmd->issuer);
	if (rc == CA_OK)
		rc = ca_buf_printf(out,
		                   "timeout_seconds=%" PRId64 "\nissued_at=%" PRId64
		                   "\nexpires_at=%" PRId64 "\n",
		                   cmd->timeout_seconds, cmd->issued_at, cmd->expires_at);
	size_t n_args = cmd->args ? cmd->n_args : 0;
	if (rc == CA_OK)
		rc = ca_buf_printf(out, "args=%zu\n", n_args);
	for (size_t i = 0; rc == CA_OK && i < n_args; i++)
		rc = put_bytes(out, cmd->args[i]);
	if (rc != CA_OK && out->data) {
		out->len = mark;
		out->data[mark] = '\0';
	}
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Verification */

/* Strict RFC 4648 section 4 base64: whole 4-character groups, '=' only to
 * pad the last one, zero bits under the padding. One string is one
 * signature; a lenient decoder would let many strings stand for it.
 * Writes the decoded length to *outlen, and the bytes to out when out is
 * not NULL (outcap bytes available). */
static bool base64_decode(const char *in, size_t len, unsigned char *out, size_t outcap,
                          size_t *outlen)
{
	if (len % 4 != 0)
		return false;
	size_t pads = 0;
	if (len && in[len - 1] == '=')
		pads = len >= 2 && in[len - 2] == '=' ? 2 : 1;
	size_t n = len / 4 * 3 - pads;
	if (out && n > outcap)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < len; i += 4) {
		bool last = i + 4 == len;
		int v[4];
		for (size_t j = 0; j < 4; j++) {
			bool padded = last && j >= 4 - pads;
			v[j] = padded ? 0 : ca_base64_value((unsigned char)in[i + j]);
			if (v[j] < 0)
				return false;
		}
		uint32_t acc = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
		               (uint32_t)v[3];
		if (last && pads && (acc & (pads == 1 ? 0xffu : 0xffffu)) != 0)
			return false; /* non-zero bits under the padding */
		unsigned char group[3] = {(unsigned char)(acc >> 16), (unsigned char)(acc >> 8),
		                          (unsigned char)acc};
		size_t take = last ? 3 - pads : 3;
		if (out)
			memcpy(out + o, group, take);
		o += take;
	}
	*outlen = o;
	return true;
}

/* 1 when sig verifies msg under key, 0 when not, -1 out of memory. Any
 * other OpenSSL failure counts as "does not verify": refusing is the safe
 * side. */
static int verify_one(EVP_PKEY *key, const unsigned char *sig, const struct ca_buf *msg)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (!ctx)
		return -1;
	/* Ed25519 is PureEdDSA: no digest (NULL) and the one-shot call. */
	int ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, key) == 1 &&
	         EVP_DigestVerify(ctx, sig, ED25519_SIGNATURE_BYTES,
	                          (const unsigned char *)msg->data, msg->len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

enum ca_err ca_exec_verify(const struct ca_exec_keys *k, const struct ca_command *cmd, char *why,
                           size_t whylen)
{
	struct ca_buf msg;
	unsigned char sig[ED25519_SIGNATURE_BYTES];
	size_t siglen = 0;
	enum ca_err rc = CA_EDENIED;
	ca_buf_init(&msg, 0); /* the decoder's caps keep a command far below it */
	if (!k || !cmd) {
		rc = CA_EINVAL;
		ca_set_err(why, whylen, "no keys or no command");
		goto out;
	}
	const char *text = cmd->signature ? cmd->signature : "";
	size_t len = strlen(text);
	if (len == 0) {
		ca_set_err(why, whylen, "command is not signed (exec.require_signature is on)");
		goto out;
	}
	if (!base64_decode(text, len, NULL, 0, &siglen)) {
		ca_set_err(why, whylen, "signature is not valid base64");
		goto out;
	}
	if (siglen != ED25519_SIGNATURE_BYTES) {
		ca_set_err(why, whylen, "signature is %zu bytes; an ed25519 signature is %d",
		           siglen, ED25519_SIGNATURE_BYTES);
		goto out;
	}
	if (!base64_decode(text, len, sig, sizeof sig, &siglen)) {
		ca_set_err(why, whylen, "signature is not valid base64");
		goto out;
	}
	if (k->count == 0) {
		ca_set_err(why, whylen,
		           "signature cannot be checked: no public key is configured "
		           "(exec.public_key_files)");
		goto out;
	}
	rc = ca_exec_canonical(cmd, &msg);
	if (rc != CA_OK) {
		ca_set_err(why, whylen, "cannot build the signed bytes: %s", ca_strerror(rc));
		goto out;
	}
	for (size_t i = 0; i < k->count; i++) {
		int r = verify_one(k->keys[i], sig, &msg);
		if (r != 0) {
			rc = r > 0 ? CA_OK : CA_ENOMEM;
			if (r < 0)
				ca_set_err(why, whylen, "out of memory verifying the signature");
			goto out;
		}
	}
	rc = CA_EDENIED;
	if (k->count == 1)
		ca_set_err(why, whylen, "signature does not verify with the 1 configured key");
	else
		ca_set_err(why, whylen,
		           "signature does not verify with any of the %zu configured keys",
		           k->count);
out:
	ca_buf_fini(&msg);
	ERR_clear_error();
	return rc;
}

/* ------------------------------------------------------------------------ */
/* Signing (agentctl) */

enum ca_err ca_exec_sign(const struct ca_command *cmd, const char *key_file, struct ca_buf *out,
                         char *err, size_t errlen)
{
	char *text = NULL;
	size_t len = 0;
	BIO *bio = NULL;
	EVP_PKEY *key = NULL;
	EVP_MD_CTX *ctx = NULL;
	struct ca_buf msg;
	unsigned char sig[ED25519_SIGNATURE_BYTES];
	size_t siglen = sizeof sig;
	char why[160] = "";
	ca_buf_init(&msg, 0);
	enum ca_err rc = CA_EINVAL;
	if (!cmd || !key_file || !out) {
		ca_set_err(why, sizeof why, "no command, key file or output");
		goto out;
	}
	rc = ca_read_file(key_file, KEY_FILE_MAX, &text, &len, NULL, why, sizeof why);
	if (rc != CA_OK)
		goto out;
	rc = CA_ENOMEM;
	bio = BIO_new_mem_buf(text, (int)len); /* len <= KEY_FILE_MAX */
	if (!bio) {
		ca_set_err(why, sizeof why, "out of memory");
		goto out;
	}
	rc = CA_EINVAL;
	key = PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL);
	if (!key) {
		ca_set_err(why, sizeof why, "holds no PEM private key that decodes (an unencrypted "
		           "\"BEGIN PRIVATE KEY\" block is needed)");
		goto out;
	}
	if (!EVP_PKEY_is_a(key, "ED25519")) {
		const char *type = EVP_PKEY_get0_type_name(key);
		ca_set_err(why, sizeof why, "holds a key of type %s; only ed25519 keys sign commands",
		           type ? type : "unknown");
		goto out;
	}
	rc = ca_exec_canonical(cmd, &msg);
	if (rc != CA_OK) {
		ca_set_err(why, sizeof why, "cannot build the canonical bytes: %s", ca_strerror(rc));
		goto out;
	}
	rc = CA_ENOMEM;
	ctx = EVP_MD_CTX_new();
	if (!ctx) {
		ca_set_err(why, sizeof why, "out of memory");
		goto out;
	}
	rc = CA_EIO;
	/* Ed25519 is PureEdDSA: no digest and the one-shot call, as verify_one. */
	if (EVP_DigestSignInit(ctx, NULL, NULL, NULL, key) != 1 ||
	    EVP_DigestSign(ctx, sig, &siglen, (const unsigned char *)msg.data, msg.len) != 1 ||
	    siglen != sizeof sig) {
		ca_set_err(why, sizeof why, "signing failed");
		goto out;
	}
	rc = ca_base64_append(out, sig, siglen);
	if (rc != CA_OK)
		ca_set_err(why, sizeof why, "%s", ca_strerror(rc));
out:
	if (rc != CA_OK)
		ca_set_err(err, errlen, "%s: %s", key_file ? key_file : "(no key file)", why);
	EVP_MD_CTX_free(ctx);
	EVP_PKEY_free(key);
	BIO_free(bio);
	ca_free_secret_n(text, len);
	ca_buf_fini(&msg);
	ERR_clear_error();
	return rc;
}
