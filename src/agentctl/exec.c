/* agentctl exec: run one command through the agent of a cluster. The
 * Command goes out as a NATS request on <prefix>.command.<cluster>; the
 * agent answers the CommandResult on the reply subject, whose stdout,
 * stderr and exit code become agentctl's. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "agentctl/agentctl.h"
#include "codec/codec.h"
#include "core/buf.h"
#include "core/timeutil.h"
#include "exec/signature.h"

/* The agent answers a timed-out command after its kill grace (2 s) and
 * the pipes' drain grace (1 s); wait that much longer, and some. */
#define ANSWER_MARGIN_MS 5000
/* expires_at is issued_at + the timeout + this: the command may wait in
 * the agent's queue for a slot. */
#define EXPIRY_MARGIN_MS 60000
#define EXIT_INTERRUPTED 130
/* Without --timeout a command gets the agent's documented default
 * (exec.default_timeout), sent explicitly so that agentctl knows how long
 * the answer may take; agentctl's own 5 s default is for listening. */
#define DEFAULT_COMMAND_TIMEOUT_S 30

enum outcome { WAITING = 0, ANSWERED, NO_RESPONDERS, NO_ANSWER, BAD_REPLY };

struct exec_state {
	struct ca_agentctl *ctl;
	const char *command_id;
	enum outcome outcome;
	json_t *result;
	char *result_text;
	char why[256];
};

static void on_message(void *arg, const struct ca_bus_msg *msg)
{
	struct exec_state *x = arg;
	if (x->outcome != WAITING)
		return;
	/* The server's "no responders" status (503) is an empty message
	 * without our headers: nobody subscribes to the command subject. */
	if (msg->len == 0 && !msg->content_type) {
		x->outcome = NO_RESPONDERS;
		ca_loop_stop(x->ctl->loop);
		return;
	}
	if (!ca_agentctl_decode(msg, "CommandResult", &x->result, &x->result_text, x->why,
	                        sizeof x->why)) {
		x->outcome = BAD_REPLY;
	} else if (strcmp(ca_agentctl_str(x->result, "command_id", ""), x->command_id) != 0) {
		snprintf(x->why, sizeof x->why, "the result is for command '%s', not '%s'",
		         ca_agentctl_str(x->result, "command_id", ""), x->command_id);
		x->outcome = BAD_REPLY;
	} else {
		x->outcome = ANSWERED;
	}
	ca_loop_stop(x->ctl->loop);
}

static void on_deadline(void *arg)
{
	struct exec_state *x = arg;
	if (x->outcome == WAITING)
		x->outcome = NO_ANSWER;
	ca_loop_stop(x->ctl->loop);
}

static bool random_hex(char *out, size_t bytes)
{
	unsigned char r[32];
	if (bytes > sizeof r || getrandom(r, bytes, 0) != (ssize_t)bytes)
		return false;
	for (size_t i = 0; i < bytes; i++)
		snprintf(out + 2 * i, 3, "%02x", r[i]);
	return true;
}

static bool valid_cluster(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '.' || *s == '*' || *s == '>' || *s == 0x7f)
			return false;
	return true;
}

static void write_all(FILE *f, const json_t *result, const char *key)
{
	const json_t *v = json_object_get(result, key);
	if (json_is_string(v) && json_string_length(v) > 0) {
		fwrite(json_string_value(v), 1, json_string_length(v), f);
		fflush(f);
	}
}

/* The answer's exit status, after printing what it carried. */
static int report(struct exec_state *x, int64_t timeout_seconds)
{
	const json_t *r = x->result;
	const char *st = ca_agentctl_str(r, "status", "");
	const char *error = ca_agentctl_str(r, "error", "");
	int64_t code = ca_agentctl_int(r, "exit_code", 0);
	if (x->ctl->json) {
		printf("%s\n", x->result_text);
		fflush(stdout);
	} else {
		write_all(stdout, r, "stdout");
		write_all(stderr, r, "stderr");
		if (json_is_true(json_object_get(r, "stdout_truncated")))
			fputs("agentctl: the agent cut stdout (exec.max_output_bytes)\n", stderr);
		if (json_is_true(json_object_get(r, "stderr_truncated")))
			fputs("agentctl: the agent cut stderr (exec.max_output_bytes)\n", stderr);
	}
	if (strcmp(st, "succeeded") == 0)
		return (int)(code & 0xff);
	if (strcmp(st, "rejected") == 0) {
		fprintf(stderr, "rejected: %s\n", *error ? error : "(no reason given)");
		return CA_AGENTCTL_EXIT_REJECTED;
	}
	if (strcmp(st, "timeout") == 0) {
		fprintf(stderr,
		        "agentctl: the command timed out on the agent after %" PRId64 "s%s%s\n",
		        timeout_seconds, *error ? ": " : "", error);
		return CA_AGENTCTL_EXIT_TIMEOUT;
	}
	if (strcmp(st, "failed") == 0) {
		if (code > 0 && code <= 255)
			return (int)code;
		fprintf(stderr, "agentctl: the command failed: %s\n",
		        *error ? error : "(no reason given)");
		return CA_AGENTCTL_EXIT_FAILED;
	}
	fprintf(stderr, "agentctl: the reply has an unknown status '%s'\n", st);
	return CA_AGENTCTL_EXIT_BAD_REPLY;
}

int ca_agentctl_exec(struct ca_agentctl *ctl, int argc, char **argv)
{
	enum { OPT_CLUSTER = 1, OPT_NAMESPACE, OPT_SIGN_KEY, OPT_ISSUER };
	static const struct option options[] = {
	        CA_AGENTCTL_GLOBAL_OPTIONS,
	        {"cluster", required_argument, NULL, OPT_CLUSTER},
	        {"namespace", required_argument, NULL, OPT_NAMESPACE},
	        {"sign-key", required_argument, NULL, OPT_SIGN_KEY},
	        {"issuer", required_argument, NULL, OPT_ISSUER},
	        {NULL, 0, NULL, 0},
	};
	const char *cluster = NULL, *namespace_ = "", *sign_key = NULL, *issuer = "agentctl";
	int opt, r;
	while ((opt = getopt_long(argc, argv, "+ho:", options, NULL)) != -1) {
		r = 0;
		if (opt == OPT_CLUSTER)
			cluster = optarg;
		else if (opt == OPT_NAMESPACE)
			namespace_ = optarg;
		else if (opt == OPT_SIGN_KEY)
			sign_key = optarg;
		else if (opt == OPT_ISSUER)
			issuer = optarg;
		else
			r = ca_agentctl_global_option(ctl, opt, optarg);
		if (r != 0)
			return r == 1 ? ca_agentctl_usage_error("exec: bad option") : r;
	}
	if (!cluster)
		return ca_agentctl_usage_error("exec: --cluster ID is required");
	if (!valid_cluster(cluster))
		return ca_agentctl_usage_error("exec: --cluster: '%s' is not a cluster ID",
		                               cluster);
	if (*namespace_ && !ca_config_valid_namespace(namespace_))
		return ca_agentctl_usage_error("exec: --namespace: '%s' is not a namespace name",
		                               namespace_);
	if (optind < 2 || strcmp(argv[optind - 1], "--") != 0)
		return ca_agentctl_usage_error("exec: put '--' before the command, e.g. "
		                               "agentctl exec --cluster c1 -- kubectl get pods -A");
	if (argc - optind < 2)
		return ca_agentctl_usage_error(
		        "exec: give a TOOL and an ACTION after '--', e.g. -- kubectl get pods");

	char id[64] = "agentctl-", inbox[96] = "_INBOX.agentctl.";
	if (!random_hex(id + strlen(id), 16) || !random_hex(inbox + strlen(inbox), 16)) {
		fputs("agentctl: getrandom failed\n", stderr);
		return CA_AGENTCTL_EXIT_FAILED;
	}
	int64_t timeout_seconds =
	        ctl->timeout_given ? (ctl->timeout_ms + 999) / 1000 : DEFAULT_COMMAND_TIMEOUT_S;
	struct ca_command cmd = {
	        .id = id,
	        .cluster_id = (char *)cluster,
	        .tool = argv[optind],
	        .action = argv[optind + 1],
	        .namespace_ = (char *)namespace_,
	        .issuer = (char *)issuer,
	        .args = argc - optind > 2 ? argv + optind + 2 : NULL,
	        .n_args = (size_t)(argc - optind - 2),
	        .timeout_seconds = timeout_seconds,
	};
	cmd.issued_at = ca_now_unix_ms();
	cmd.expires_at = cmd.issued_at + timeout_seconds * 1000 + EXPIRY_MARGIN_MS;

	struct exec_state x = {.ctl = ctl, .command_id = id};
	struct ca_loop_timer *timer = NULL;
	struct ca_buf signature, payload, subject;
	ca_buf_init(&signature, 1024);
	ca_buf_init(&payload, 0);
	ca_buf_init(&subject, 1024);
	char err[512];
	int status = CA_AGENTCTL_EXIT_FAILED;
	if (sign_key) {
		if (ca_exec_sign(&cmd, sign_key, &signature, err, sizeof err) != CA_OK) {
			fprintf(stderr, "agentctl: --sign-key %s\n", err);
			status = CA_AGENTCTL_EXIT_USAGE;
			goto out;
		}
		cmd.signature = signature.data;
	}
	status = ca_agentctl_connect(ctl, NULL, 0, on_message, &x);
	if (status != 0)
		goto out;
	status = CA_AGENTCTL_EXIT_FAILED;
	enum ca_codec_format format =
	        ctl->cfg.nats.encoding == CA_ENCODING_PROTOBUF ? CA_CODEC_PROTOBUF : CA_CODEC_JSON;
	enum ca_err rc = ca_codec_encode_command(format, &cmd, &payload);
	if (rc != CA_OK) {
		fprintf(stderr, "agentctl: cannot encode the command: %s\n", ca_strerror(rc));
		goto out;
	}
	if (ca_buf_printf(&subject, "%s.command.%s", ctl->prefix, cluster) != CA_OK ||
	    ca_loop_timer_new(ctl->loop, on_deadline, &x, &timer) != CA_OK) {
		fputs("agentctl: out of memory\n", stderr);
		goto out;
	}
	/* Subscribed before the request goes out, on the same connection, so
	 * the server knows the inbox before any agent can answer. */
	rc = ca_bus_subscribe(ctl->bus, inbox, NULL, CA_AGENTCTL_PENDING_MSGS,
	                      CA_AGENTCTL_PENDING_BYTES);
	if (rc == CA_OK)
		rc = ca_bus_publish_request(ctl->bus, subject.data, inbox,
		                            ca_codec_content_type(format), id, payload.data,
		                            payload.len);
	if (rc != CA_OK) {
		fprintf(stderr, "agentctl: cannot send the command on %s: %s\n", subject.data,
		        ca_strerror(rc));
		status = rc == CA_EAGAIN ? CA_AGENTCTL_EXIT_NATS : CA_AGENTCTL_EXIT_FAILED;
		goto out;
	}
	int64_t wait_ms = timeout_seconds * 1000 + ANSWER_MARGIN_MS;
	ca_loop_timer_start(timer, wait_ms, 0);
	ca_loop_run(ctl->loop);

	char waited[32];
	ca_format_duration(wait_ms, waited, sizeof waited);
	if (x.outcome == WAITING && ctl->interrupted) {
		fprintf(stderr, "agentctl: interrupted; command %s may still run on the agent\n",
		        id);
		status = EXIT_INTERRUPTED;
	} else if (x.outcome == NO_RESPONDERS) {
		fprintf(stderr,
		        "agentctl: no agent listens on %s: is an agent for cluster %s connected?\n",
		        subject.data, cluster);
		status = CA_AGENTCTL_EXIT_NO_ANSWER;
	} else if (x.outcome == NO_ANSWER || x.outcome == WAITING) {
		fprintf(stderr,
		        "agentctl: no agent answered on %s within %s: is an agent for cluster %s "
		        "connected?\n",
		        subject.data, waited, cluster);
		status = CA_AGENTCTL_EXIT_NO_ANSWER;
	} else if (x.outcome == BAD_REPLY) {
		fprintf(stderr, "agentctl: the reply to command %s does not decode: %s\n", id,
		        x.why);
		status = CA_AGENTCTL_EXIT_BAD_REPLY;
	} else {
		status = report(&x, timeout_seconds);
	}
out:
	ca_loop_timer_free(timer);
	json_decref(x.result);
	free(x.result_text);
	ca_buf_fini(&signature);
	ca_buf_fini(&payload);
	ca_buf_fini(&subject);
	return status;
}
