/* Fuzz target: the signature check of an untrusted command
 * (ca_exec_verify: strict base64 of the signature, the canonical bytes,
 * ed25519 verification) under the committed test key.
 *
 * The input is a JSON command (as it comes off the bus). When it decodes,
 * its signature is checked as sent; then again with the input's last 88
 * bytes as the signature, so the base64 reader sees arbitrary text. A
 * verdict must be CA_OK or CA_EDENIED with a reason, and CA_OK only for a
 * signature that really covers the command: the fuzzer cannot forge one,
 * so CA_OK aborts unless the input is a committed signed seed. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "config/config.h"
#include "exec/signature.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ca_exec_keys *keys;

static void load_keys(void)
{
	char *path = (char *)CA_SOURCE_ROOT "/tests/fixtures/exec/signing/public.pem";
	struct ca_strlist files = { .items = &path, .count = 1 };
	char err[256];
	if (ca_exec_keys_load(&files, &keys, err, sizeof err) != CA_OK) {
		fprintf(stderr, "fuzz_signature: %s\n", err);
		abort();
	}
}

static void check(const struct ca_command *cmd, int may_verify)
{
	char why[256] = "";
	enum ca_err rc = ca_exec_verify(keys, cmd, why, sizeof why);
	if (rc == CA_OK && !may_verify)
		abort();
	if (rc != CA_OK && rc != CA_EDENIED && rc != CA_ENOMEM)
		abort();
	if (rc == CA_EDENIED && why[0] == '\0')
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!keys)
		load_keys();
	struct ca_command cmd;
	char err[256];
	if (ca_codec_decode_command(CA_CODEC_JSON, data, size, &cmd, err, sizeof err) != CA_OK)
		return 0;
	/* A seed may carry a real signature; a mutated command keeps it only
	 * if the mutation left every covered field alone. */
	check(&cmd, 1);
	if (size >= 88) {
		char *sig = malloc(89);
		if (!sig)
			abort();
		memcpy(sig, data + size - 88, 88);
		sig[88] = '\0';
		free(cmd.signature);
		cmd.signature = sig;
		/* Verifies only if those bytes happen to be this command's true
		 * signature, which a mutation cannot make. */
		check(&cmd, 0);
	}
	ca_command_fini(&cmd);
	return 0;
}
