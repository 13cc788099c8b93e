/* agentctl/agentctl.h: what agentctl's verbs share (main.c).
 *
 * agentctl is the orchestrator side's command-line client: it connects to
 * NATS with the agent's own bus (the nats section of the config, from
 * defaults, COLLECT_AGENT_NATS_* and --nats), subscribes, and runs the
 * agent's event loop until the verb is done. Each verb lives in its own
 * file (agents.c, tail.c, exec.c) and returns the process's exit status.
 * Everything runs on the main thread, which is the loop thread. */
#ifndef CA_AGENTCTL_AGENTCTL_H
#define CA_AGENTCTL_AGENTCTL_H

#include <stdbool.h>
#include <getopt.h>
#include <stdint.h>

#include <jansson.h>

#include "bus/bus.h"
#include "config/config.h"
#include "core/loop.h"

/* Exit statuses (docs/AGENTCTL.md). exec also passes the command's own
 * exit code through. */
enum {
	CA_AGENTCTL_EXIT_OK = 0,
	CA_AGENTCTL_EXIT_FAILED = 1,    /* none answered, failed without a code, internal error */
	CA_AGENTCTL_EXIT_REJECTED = 2,  /* exec: the agent refused the command */
	CA_AGENTCTL_EXIT_NO_ANSWER = 3, /* exec: no agent answered in time */
	CA_AGENTCTL_EXIT_NATS = 4,      /* NATS unreachable or refused the credentials */
	CA_AGENTCTL_EXIT_BAD_REPLY = 5, /* a reply that does not decode */
	CA_AGENTCTL_EXIT_USAGE = 64,    /* bad verb, flag or value */
	CA_AGENTCTL_EXIT_TIMEOUT = 124, /* exec: the agent timed the command out */
};

/* What each of agentctl's subscriptions may hold while the terminal
 * catches up. It follows a whole fleet, and an agent publishes the last
 * 5 minutes' events in one burst when it starts (thousands on a busy
 * cluster): the bus's defaults, sized for the agent's commands, would
 * drop most of such a burst. */
#define CA_AGENTCTL_PENDING_MSGS 65536
#define CA_AGENTCTL_PENDING_BYTES ((size_t)64 << 20)

/* The NATS authentication and TLS flags (main.c's nats_flags table). */
#define CA_AGENTCTL_NATS_FLAGS 8

/* Options every verb takes (before or after the verb). */
struct ca_agentctl {
	const char *nats;        /* --nats, NULL = config (nats://127.0.0.1:4222) */
	const char *prefix_flag; /* --prefix, NULL = config ("agent") */
	struct ca_config cfg;    /* only the nats section matters; loaded by connect */
	bool cfg_loaded;
	const char *prefix; /* subject prefix: --prefix, else cfg.nats.subject_prefix */
	int64_t timeout_ms; /* --timeout; 5 s */
	bool timeout_given;
	bool json;               /* -o json */
	const char *config_path; /* --config: an agent's config file (its nats section) */
	/* --creds, --nkey, --user, --password-file, --token-file, --tls-ca,
	 * --tls-cert, --tls-key, as the COLLECT_AGENT_NATS_* variables they
	 * stand for (over the environment's). */
	const char *nats_flags[CA_AGENTCTL_NATS_FLAGS];

	/* Set up by ca_agentctl_connect(), torn down by ca_agentctl_close(). */
	struct ca_loop *loop;
	struct ca_bus *bus;
	int signal_fd;
	struct ca_loop_fd *signal_handle;
	bool interrupted;          /* SIGINT or SIGTERM stopped the loop */
	uint64_t drops_reported;   /* incoming messages dropped, as last reported */
	int64_t drops_reported_ms; /* when (monotonic) */
};

/* The options every verb accepts, for a verb's getopt_long table, and
 * their handler: returns 0 when opt was one of them (ctl updated), 1 when
 * it is not a global option, or an exit status (> 1) after printing why. */
enum {
	CA_AGENTCTL_OPT_NATS = 1000,
	CA_AGENTCTL_OPT_TIMEOUT,
	CA_AGENTCTL_OPT_PREFIX,
	CA_AGENTCTL_OPT_CONFIG,
	CA_AGENTCTL_OPT_NATS_FLAG, /* + the index in the nats_flags table: the last */
};
#define CA_AGENTCTL_GLOBAL_OPTIONS                                                                 \
	{"nats", required_argument, NULL, CA_AGENTCTL_OPT_NATS},                                   \
	        {"timeout", required_argument, NULL, CA_AGENTCTL_OPT_TIMEOUT},                     \
	        {"prefix", required_argument, NULL, CA_AGENTCTL_OPT_PREFIX},                       \
	        {"config", required_argument, NULL, CA_AGENTCTL_OPT_CONFIG},                       \
	        {"creds", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 0},                 \
	        {"nkey", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 1},                  \
	        {"user", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 2},                  \
	        {"password-file", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 3},         \
	        {"token-file", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 4},            \
	        {"tls-ca", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 5},                \
	        {"tls-cert", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 6},              \
	        {"tls-key", required_argument, NULL, CA_AGENTCTL_OPT_NATS_FLAG + 7},               \
	        {"output", required_argument, NULL, 'o'},                                          \
	{                                                                                          \
		"help", no_argument, NULL, 'h'                                                     \
	}
int ca_agentctl_global_option(struct ca_agentctl *ctl, int opt, const char *arg);
/* Print "agentctl: <why>" and the hint to --help; returns the usage status. */
int ca_agentctl_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A duration flag ("500ms", "30s", "2m"; > 0): 0 or a usage status. */
int ca_agentctl_duration(const char *flag, const char *arg, int64_t *ms);

/* Create the loop and the bus, subscribe to each of subjects (n of them),
 * and connect. Messages go to on_message(arg, msg) on the loop thread;
 * SIGINT/SIGTERM stop the loop (ctl->interrupted). Returns 0 when
 * connected, else prints why to stderr and returns an exit status. */
int ca_agentctl_connect(struct ca_agentctl *ctl, const char *const *subjects, size_t n,
                        void (*on_message)(void *arg, const struct ca_bus_msg *msg), void *arg);
/* Say on stderr how many incoming messages were dropped since the last
 * report (they came faster than agentctl could handle them, and beyond
 * CA_AGENTCTL_PENDING_*): at most once a second unless final. True when
 * any ever was: what was printed is incomplete. */
bool ca_agentctl_report_drops(struct ca_agentctl *ctl, bool final);
/* Close the bus and free the loop; safe after a failed connect. */
void ca_agentctl_close(struct ca_agentctl *ctl);

/* Decode an agent message by its Content-Type (protobuf goes through
 * ca_codec_protobuf_to_json, so both encodings give the JSON encoder's
 * object). message_type: "AgentInfo", "Heartbeat", "Event",
 * "MetricsSample", "CommandResult". On success *out is a new reference
 * and, when text is not NULL, *text a heap copy of that JSON (free()).
 * On failure why gets the reason and NULLs are left. */
bool ca_agentctl_decode(const struct ca_bus_msg *msg, const char *message_type, json_t **out,
                        char **text, char *why, size_t whylen);

/* A string member of obj, or def when absent or not a string. */
const char *ca_agentctl_str(const json_t *obj, const char *key, const char *def);
/* An integer member of obj, or def. */
int64_t ca_agentctl_int(const json_t *obj, const char *key, int64_t def);

/* Verbs: argc/argv are what follows the verb (argv[0] is the verb). */
int ca_agentctl_agents(struct ca_agentctl *ctl, int argc, char **argv);
int ca_agentctl_tail(struct ca_agentctl *ctl, int argc, char **argv);
int ca_agentctl_exec(struct ca_agentctl *ctl, int argc, char **argv);

#endif
