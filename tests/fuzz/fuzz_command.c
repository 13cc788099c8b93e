/* Fuzz target: ca_codec_decode_command in both encodings, plus the
 * protobuf -> JSON transcoder.
 *
 * The first byte selects what the rest is fed to:
 *   bit 0      0 = JSON, 1 = protobuf command
 *   bit 1      also transcode the rest with ca_codec_protobuf_to_json
 *   bits 2..7  message type for the transcoder (modulo 6)
 * A command that decodes must survive a round trip through both encoders
 * unchanged; anything else aborts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codec/codec.h"
#include "core/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = { "AgentInfo", "Heartbeat", "Event", "MetricsSample", "Command", "CommandResult" };

static int same_str(const char *a, const char *b)
{
	return a && b && strcmp(a, b) == 0;
}

static void check_same(const struct ca_command *a, const struct ca_command *b)
{
	if (!same_str(a->id, b->id) || !same_str(a->cluster_id, b->cluster_id) || !same_str(a->tool, b->tool) ||
	    !same_str(a->action, b->action) || !same_str(a->namespace_, b->namespace_) ||
	    !same_str(a->issuer, b->issuer) || !same_str(a->signature, b->signature) || a->n_args != b->n_args ||
	    a->timeout_seconds != b->timeout_seconds || a->issued_at != b->issued_at ||
	    a->expires_at != b->expires_at)
		abort();
	for (size_t i = 0; i < a->n_args; i++)
		if (!same_str(a->args[i], b->args[i]))
			abort();
}

static void round_trip(const struct ca_command *cmd, enum ca_codec_format f)
{
	struct ca_buf b;
	struct ca_command again;
	char err[256];
	ca_buf_init(&b, 0);
	if (ca_codec_encode_command(f, cmd, &b) != CA_OK)
		abort();
	if (ca_codec_decode_command(f, b.data, b.len, &again, err, sizeof err) != CA_OK)
		abort();
	check_same(cmd, &again);
	ca_command_fini(&again);
	ca_buf_fini(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	uint8_t sel = data[0];
	data++;
	size--;

	enum ca_codec_format f = (sel & 1) ? CA_CODEC_PROTOBUF : CA_CODEC_JSON;
	struct ca_command cmd;
	char err[256];
	enum ca_err rc = ca_codec_decode_command(f, data, size, &cmd, err, sizeof err);
	if (rc == CA_OK) {
		round_trip(&cmd, CA_CODEC_JSON);
		round_trip(&cmd, CA_CODEC_PROTOBUF);
		ca_command_fini(&cmd);
	} else if (err[0] == '\0' || cmd.id || cmd.args) {
		abort(); /* a rejection always says why and leaves cmd empty */
	}

	if (sel & 2) {
		struct ca_buf out;
		ca_buf_init(&out, 0);
		(void)ca_codec_protobuf_to_json(types[(sel >> 2) % 6], data, size, &out);
		ca_buf_fini(&out);
	}
	return 0;
}
