/* exec/signature.h: verifies command signatures; owns the loaded ed25519
 * public keys.
 *
 * When exec.require_signature is on, a Command carries `signature`: the
 * base64 (RFC 4648 standard alphabet, padded) ed25519 signature of the
 * command's canonical bytes (ca_exec_canonical; docs/MESSAGES.md "Signing
 * commands" specifies them), and it must verify under one of the keys of
 * exec.public_key_files. The canonical bytes are built from the decoded
 * struct ca_command, so a JSON and a protobuf command with the same fields
 * sign the same bytes.
 *
 * OpenSSL (libcrypto) lives behind this file only; no OpenSSL type shows
 * here. The keys are read-only once loaded, so any number of threads may
 * verify with them at once (openssl-threads(7): objects used without being
 * modified are thread safe; each verification has its own context). Free
 * the keys before OpenSSL's cleanup at exit (ca_bus_openssl_exit). Nothing
 * here logs: reasons go to the caller's err/why buffers. */
#ifndef CA_EXEC_SIGNATURE_H
#define CA_EXEC_SIGNATURE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/err.h"

struct ca_command; /* codec/codec.h */
struct ca_strlist; /* config/config.h */

struct ca_exec_keys;

/* Load every file of files (absolute paths; borrowed) as one PEM
 * SubjectPublicKeyInfo ("-----BEGIN PUBLIC KEY-----") ed25519 key. A file
 * must hold exactly one PEM block; a private key, a PKCS#1 "RSA PUBLIC KEY",
 * a certificate, an RSA, EC or Ed448 key, a block that does not decode or a
 * file that is not PEM at all is refused. An empty list loads no key (every
 * verification then fails; config validation refuses that combination with
 * exec.require_signature).
 *
 * On success *out is a new key set (free with ca_exec_keys_free). On failure
 * *out is NULL and err gets one sentence naming the file and why, e.g.
 * "exec.public_key_files: /etc/ca/rsa.pem holds an RSA key; only ed25519
 * keys are accepted". Errors: CA_EINVAL (the content, a NULL argument), the
 * file reader's CA_ENOTFOUND / CA_EIO / CA_ETOOBIG (more than 64 KiB),
 * CA_ENOMEM. File contents are wiped before they are freed (a private key
 * named by mistake is a secret). Any thread. */
enum ca_err ca_exec_keys_load(const struct ca_strlist *files, struct ca_exec_keys **out, char *err,
                              size_t errlen);

/* Free the keys; NULL is fine. No verification may be running. */
void ca_exec_keys_free(struct ca_exec_keys *k);

/* Number of keys loaded (0 for NULL). */
size_t ca_exec_keys_count(const struct ca_exec_keys *k);

/* Append the canonical bytes a signature covers to out: the signature
 * field itself is not covered; NULL strings count as "" and NULL args as
 * none. On failure out is left as it was. Errors: CA_EINVAL (NULL
 * argument), CA_ENOMEM, CA_ETOOBIG (out's cap). Any thread. */
enum ca_err ca_exec_canonical(const struct ca_command *cmd, struct ca_buf *out);

/* CA_OK when cmd->signature verifies under one of the keys. Otherwise
 * CA_EDENIED and why gets the reason, one of:
 *   "command is not signed (exec.require_signature is on)"
 *   "signature is not valid base64" (strict: whitespace, a missing or
 *     extra '=', the URL-safe '-' '_', or non-zero bits under the padding)
 *   "signature is 63 bytes; an ed25519 signature is 64"
 *   "signature does not verify with any of the 2 configured keys"
 *     ("... with the 1 configured key", "no public key is configured")
 * CA_ENOMEM when memory runs out (why says so), CA_EINVAL for a NULL k or
 * cmd. why may be NULL; it is cut to whylen. Borrowed arguments; nothing
 * allocated outlives the call. Any thread, concurrently with other
 * verifications. */
enum ca_err ca_exec_verify(const struct ca_exec_keys *k, const struct ca_command *cmd, char *why,
                           size_t whylen);

/* Sign cmd for agentctl: append the base64 (padded, standard alphabet)
 * ed25519 signature of ca_exec_canonical(cmd) to out, made with the
 * unencrypted PEM private key in key_file ("-----BEGIN PRIVATE KEY-----",
 * as `openssl genpkey -algorithm ed25519` writes it). cmd->signature is not
 * covered and not read. The key file's bytes are wiped before they are
 * freed. On failure out is as it was and err gets one sentence naming the
 * file and why. Errors: CA_EINVAL (not an ed25519 private key, NULL
 * argument), the file reader's CA_ENOTFOUND / CA_EIO / CA_ETOOBIG,
 * CA_ENOMEM. Any thread. */
enum ca_err ca_exec_sign(const struct ca_command *cmd, const char *key_file, struct ca_buf *out,
                         char *err, size_t errlen);

#endif
