/* agentctl: the orchestrator side's command-line client for collect-agent.
 * Parses the global options, dispatches to a verb, and holds what the
 * verbs share: the NATS settings, the connection, decoding by
 * Content-Type (agentctl.h). */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "agentctl/agentctl.h"
#include "build_config.h"
#include "codec/codec.h"
#include "core/buf.h"
#include "core/timeutil.h"
#include "log/log.h"

extern char **environ;

#define ENV_NATS_PREFIX "COLLECT_AGENT_NATS_"

/* The variable each NATS flag stands for, in CA_AGENTCTL_GLOBAL_OPTIONS's
 * order; a TLS file turns TLS on too. */
static const struct {
	const char *flag, *var;
	bool tls;
} nats_flags[CA_AGENTCTL_NATS_FLAGS] = {
        {"--creds", "AUTH_CREDENTIALS_FILE", false},
        {"--nkey", "AUTH_NKEY_SEED_FILE", false},
        {"--user", "AUTH_USER", false},
        {"--password-file", "AUTH_PASSWORD_FILE", false},
        {"--token-file", "AUTH_TOKEN_FILE", false},
        {"--tls-ca", "TLS_CA_FILE", true},
        {"--tls-cert", "TLS_CERT_FILE", true},
        {"--tls-key", "TLS_KEY_FILE", true},
};

#define DEFAULT_TIMEOUT_MS 5000

static void usage(FILE *out)
{
	fputs("Usage: agentctl [OPTIONS] VERB [VERB OPTIONS]\n"
	      "\n"
	      "Talk to collect-agents over NATS: list them, follow what they publish, run a\n"
	      "command in a cluster.\n"
	      "\n"
	      "Verbs:\n"
	      "  agents [--window D] [--offline-after D]\n"
	      "        listen for registrations and heartbeats for a while (default: --timeout)\n"
	      "        and print one line per agent seen\n"
	      "  tail events|metrics|heartbeats|results [--cluster ID] [--count N]\n"
	      "        print what agents publish until interrupted or N messages\n"
	      "  exec --cluster ID [--namespace NS] [--sign-key FILE] [--issuer NAME] -- TOOL "
	      "ACTION [ARGS...]\n"
	      "        run a command through the agent of cluster ID; its stdout, stderr and\n"
	      "        exit code become agentctl's\n"
	      "\n"
	      "Options (before or after the verb):\n"
	      "      --nats URLS        NATS servers, comma-separated (default "
	      "nats://127.0.0.1:4222)\n"
	      "      --timeout D        how long to wait: 500ms, 5s, 2m (default 5s); for exec\n"
	      "                         the command's timeout (default 30s), waited for\n"
	      "                         with 5s more for the answer\n"
	      "  -o, --output FORMAT    text (default) or json\n"
	      "      --prefix PREFIX    subject prefix (default agent)\n"
	      "      --version          print the version and exit\n"
	      "  -h, --help             this help\n"
	      "\n"
	      "NATS authentication and TLS, as the agent's (over its environment variables):\n"
	      "      --config FILE      an agent's config file: its nats section\n"
	      "      --creds FILE       credentials file (JWT and NKey seed)\n"
	      "      --nkey FILE        NKey seed file\n"
	      "      --user NAME        user, with --password-file FILE\n"
	      "      --token-file FILE  token\n"
	      "      --tls-ca FILE      CA bundle to verify the server (turns TLS on)\n"
	      "      --tls-cert FILE, --tls-key FILE\n"
	      "                         client certificate and key\n"
	      "The agent's environment variables work too: COLLECT_AGENT_NATS_AUTH_USER,\n"
	      "_AUTH_PASSWORD(_FILE), _AUTH_TOKEN(_FILE), _AUTH_CREDENTIALS_FILE,\n"
	      "_AUTH_NKEY_SEED_FILE, _TLS_CA_FILE, _TLS_CERT_FILE, _TLS_KEY_FILE, _ENCODING\n"
	      "(of commands) and the rest of COLLECT_AGENT_NATS_*.\n"
	      "\n"
	      "Exit status: 0 ok; 1 nothing answered (agents) or failed; 2 rejected (exec);\n"
	      "3 no agent answered (exec); 4 NATS unreachable or refused the credentials;\n"
	      "5 a reply that does not decode; 64 usage error; 124 the command timed out;\n"
	      "exec passes the command's own exit code through.\n",
	      out);
}

int ca_agentctl_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("agentctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\nTry 'agentctl --help'.\n", stderr);
	return CA_AGENTCTL_EXIT_USAGE;
}

int ca_agentctl_duration(const char *flag, const char *arg, int64_t *ms)
{
	if (ca_parse_duration(arg, ms) != CA_OK || *ms <= 0)
		return ca_agentctl_usage_error("%s: '%s' is not a duration (e.g. 500ms, 30s, 2m)",
		                               flag, arg);
	return 0;
}

int ca_agentctl_global_option(struct ca_agentctl *ctl, int opt, const char *arg)
{
	switch (opt) {
	case CA_AGENTCTL_OPT_NATS:
		if (!*arg)
			return ca_agentctl_usage_error("--nats: empty server list");
		ctl->nats = arg;
		return 0;
	case CA_AGENTCTL_OPT_TIMEOUT:
		ctl->timeout_given = true;
		return ca_agentctl_duration("--timeout", arg, &ctl->timeout_ms);
	case CA_AGENTCTL_OPT_PREFIX:
		if (!*arg || strpbrk(arg, " \t\r\n*>"))
			return ca_agentctl_usage_error("--prefix: '%s' is not a subject prefix",
			                               arg);
		ctl->prefix_flag = arg;
		return 0;
	case CA_AGENTCTL_OPT_CONFIG:
		ctl->config_path = arg;
		return 0;
	case 'o':
		if (strcmp(arg, "json") == 0)
			ctl->json = true;
		else if (strcmp(arg, "text") == 0)
			ctl->json = false;
		else
			return ca_agentctl_usage_error(
			        "-o: '%s' is not an output format (json or text)", arg);
		return 0;
	case 'h':
		usage(stdout);
		exit(0); /* nothing is allocated while options are parsed */
	case '?':
		return ca_agentctl_usage_error("bad option");
	default:
		if (opt >= CA_AGENTCTL_OPT_NATS_FLAG &&
		    opt < CA_AGENTCTL_OPT_NATS_FLAG + CA_AGENTCTL_NATS_FLAGS) {
			if (!*arg)
				return ca_agentctl_usage_error(
				        "%s: empty value",
				        nats_flags[opt - CA_AGENTCTL_OPT_NATS_FLAG].flag);
			ctl->nats_flags[opt - CA_AGENTCTL_OPT_NATS_FLAG] = arg;
			return 0;
		}
		return 1;
	}
}

/* ------------------------------------------------------------ connection */

/* The config's nats section from defaults, --config, COLLECT_AGENT_NATS_*,
 * the NATS flags and --nats: agentctl runs on an operator's machine, where
 * the agent's other variables mean nothing. The flags go in as variables
 * after the environment's, so they win. */
static int load_config(struct ca_agentctl *ctl)
{
	size_t n = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, ENV_NATS_PREFIX, sizeof ENV_NATS_PREFIX - 1) == 0)
			n++;
	char **envp = calloc(n + 2 * CA_AGENTCTL_NATS_FLAGS + 1, sizeof *envp);
	struct ca_buf vars; /* the flags' "NAME=value\0" strings */
	ca_buf_init(&vars, 0);
	size_t offsets[2 * CA_AGENTCTL_NATS_FLAGS], nvars = 0;
	bool tls = false, oom = !envp;
	for (size_t i = 0; i < CA_AGENTCTL_NATS_FLAGS && !oom; i++) {
		if (!ctl->nats_flags[i])
			continue;
		tls |= nats_flags[i].tls;
		offsets[nvars++] = vars.len;
		oom = ca_buf_printf(&vars, "%s%s=%s", ENV_NATS_PREFIX, nats_flags[i].var,
		                    ctl->nats_flags[i]) != CA_OK ||
		      ca_buf_append(&vars, "", 1) != CA_OK;
	}
	if (tls && !oom) {
		offsets[nvars++] = vars.len;
		oom = ca_buf_printf(&vars, "%sTLS_ENABLED=true", ENV_NATS_PREFIX) != CA_OK ||
		      ca_buf_append(&vars, "", 1) != CA_OK;
	}
	if (oom) {
		free(envp);
		ca_buf_fini(&vars);
		fputs("agentctl: out of memory\n", stderr);
		return CA_AGENTCTL_EXIT_FAILED;
	}
	n = 0;
	for (char **e = environ; e && *e; e++)
		if (strncmp(*e, ENV_NATS_PREFIX, sizeof ENV_NATS_PREFIX - 1) == 0)
			envp[n++] = *e;
	for (size_t i = 0; i < nvars; i++)
		envp[n++] = vars.data + offsets[i];
	struct ca_config_flags flags = {.nats_servers = ctl->nats, .config_path = ctl->config_path};
	char err[1024] = "";
	enum ca_err rc = ca_config_load(&ctl->cfg, &flags, envp, err, sizeof err);
	ctl->cfg_loaded = true;
	free(envp);
	ca_buf_fini(&vars);
	if (rc != CA_OK) {
		fprintf(stderr, "agentctl: invalid NATS settings: %s\n", err);
		return CA_AGENTCTL_EXIT_USAGE;
	}
	if (!ctl->cfg.nats.name || !*ctl->cfg.nats.name) {
		char *name = strdup("agentctl");
		if (!name) {
			fputs("agentctl: out of memory\n", stderr);
			return CA_AGENTCTL_EXIT_FAILED;
		}
		free(ctl->cfg.nats.name);
		ctl->cfg.nats.name = name;
	}
	ctl->prefix = ctl->prefix_flag ? ctl->prefix_flag : ctl->cfg.nats.subject_prefix;
	return 0;
}

static void on_signal(void *arg, int fd, int events)
{
	struct ca_agentctl *ctl = arg;
	struct signalfd_siginfo si;
	(void)events;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
		ctl->interrupted = true;
	ca_loop_stop(ctl->loop);
}

/* The servers (without user info) and the last error the bus recorded,
 * from its health object: the one place that keeps them. */
static void report_unreachable(struct ca_agentctl *ctl)
{
	struct ca_buf h;
	ca_buf_init(&h, 0);
	ca_bus_health_json(ctl->bus, &h);
	json_t *root = h.data ? json_loadb(h.data, h.len, 0, NULL) : NULL;
	struct ca_buf servers;
	ca_buf_init(&servers, 4096);
	json_t *list = root ? json_object_get(root, "servers") : NULL;
	size_t i;
	json_t *v;
	json_array_foreach(list, i, v)
	{
		if (json_is_string(v))
			ca_buf_printf(&servers, "%s%s", i ? "," : "", json_string_value(v));
	}
	const char *why = root ? ca_agentctl_str(root, "last_error", NULL) : NULL;
	/* nats.c retries forever unless the server refuses the credentials,
	 * and keeps no reason when it then gives up, nor when no server
	 * accepts the TCP connection (the bus's placeholder). */
	if (ca_bus_gave_up(ctl->bus))
		why = "the server refused the connection for good (wrong credentials?)";
	else if (!why || !*why || strcmp(why, "not connected yet") == 0)
		why = "no server accepted the connection";
	fprintf(stderr, "agentctl: cannot connect to NATS at %s: %s\n",
	        servers.data ? servers.data : "(no server)", why);
	ca_buf_fini(&servers);
	json_decref(root);
	ca_buf_fini(&h);
}

int ca_agentctl_connect(struct ca_agentctl *ctl, const char *const *subjects, size_t n,
                        void (*on_message)(void *arg, const struct ca_bus_msg *msg), void *arg)
{
	char err[512] = "";
	int status = load_config(ctl);
	if (status != 0)
		return status;
	status = CA_AGENTCTL_EXIT_FAILED;
	ctl->signal_fd = -1;
	if (ca_loop_new(&ctl->loop) != CA_OK) {
		fputs("agentctl: cannot create the event loop\n", stderr);
		return status;
	}
	/* Blocked before the bus starts nats.c's threads, which inherit the
	 * mask, so that only the signalfd sees SIGINT and SIGTERM. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) != 0 ||
	    (ctl->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)) < 0 ||
	    ca_loop_fd_add(ctl->loop, ctl->signal_fd, CA_LOOP_READ, on_signal, ctl,
	                   &ctl->signal_handle) != CA_OK) {
		fprintf(stderr, "agentctl: cannot watch signals: %s\n", strerror(errno));
		return status;
	}
	struct ca_bus_callbacks cbs = {.on_message = on_message};
	enum ca_err rc = ca_bus_new(&ctl->bus, ctl->loop, &ctl->cfg, &cbs, arg, err, sizeof err);
	if (rc != CA_OK) {
		fprintf(stderr, "agentctl: %s\n", err[0] ? err : ca_strerror(rc));
		return rc == CA_EINVAL ? CA_AGENTCTL_EXIT_USAGE : status;
	}
	for (size_t i = 0; i < n; i++) {
		rc = ca_bus_subscribe(ctl->bus, subjects[i], NULL, CA_AGENTCTL_PENDING_MSGS,
		                      CA_AGENTCTL_PENDING_BYTES);
		if (rc != CA_OK) {
			fprintf(stderr, "agentctl: cannot subscribe to %s: %s\n", subjects[i],
			        ca_strerror(rc));
			return status;
		}
	}
	/* nats.c tries every server once before ca_bus_connect() returns,
	 * then retries in the background. A command-line tool gives it one
	 * connect timeout (bounded by --timeout), not forever like the agent:
	 * time for a retry, and for nats.c to tell why (a refusal of the
	 * credentials comes asynchronously and ends the retries). */
	rc = ca_bus_connect(ctl->bus);
	int64_t grace = ctl->cfg.nats.connect_timeout_ms < ctl->timeout_ms
	                        ? ctl->cfg.nats.connect_timeout_ms
	                        : ctl->timeout_ms;
	int64_t deadline = ca_now_monotonic_ms() + grace;
	while (rc == CA_OK && !ca_bus_connected(ctl->bus) && !ca_bus_gave_up(ctl->bus) &&
	       ca_now_monotonic_ms() < deadline) {
		struct timespec pause = {0, 20 * 1000 * 1000};
		nanosleep(&pause, NULL);
	}
	if (rc != CA_OK || !ca_bus_connected(ctl->bus)) {
		report_unreachable(ctl);
		return CA_AGENTCTL_EXIT_NATS;
	}
	return 0;
}

bool ca_agentctl_report_drops(struct ca_agentctl *ctl, bool final)
{
	uint64_t dropped = ctl->bus ? ca_bus_received_dropped(ctl->bus) : 0;
	int64_t now = ca_now_monotonic_ms();
	/* At most a line a second while running: a flood of drops must not
	 * fill stderr (a pipe) and stall the output too. */
	if (dropped > ctl->drops_reported && (final || now - ctl->drops_reported_ms >= 1000)) {
		fprintf(stderr,
		        "agentctl: %" PRIu64
		        " messages dropped: they came faster than agentctl could "
		        "handle them; what it printed is incomplete\n",
		        dropped - ctl->drops_reported);
		ctl->drops_reported = dropped;
		ctl->drops_reported_ms = now;
	}
	return dropped > 0;
}

void ca_agentctl_close(struct ca_agentctl *ctl)
{
	ca_bus_free(ctl->bus);
	ctl->bus = NULL;
	ca_loop_fd_del(ctl->signal_handle);
	ctl->signal_handle = NULL;
	if (ctl->signal_fd >= 0)
		close(ctl->signal_fd);
	ctl->signal_fd = -1;
	ca_loop_free(ctl->loop);
	ctl->loop = NULL;
	if (ctl->cfg_loaded)
		ca_config_fini(&ctl->cfg);
	ctl->cfg_loaded = false;
}

/* ------------------------------------------------------------ decoding */

const char *ca_agentctl_str(const json_t *obj, const char *key, const char *def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_string(v) ? json_string_value(v) : def;
}

int64_t ca_agentctl_int(const json_t *obj, const char *key, int64_t def)
{
	const json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (int64_t)json_integer_value(v) : def;
}

bool ca_agentctl_decode(const struct ca_bus_msg *msg, const char *message_type, json_t **out,
                        char **text, char *why, size_t whylen)
{
	enum ca_codec_format f = CA_CODEC_JSON;
	struct ca_buf buf;
	ca_buf_init(&buf, 0);
	json_t *root = NULL;
	bool ok = false;
	*out = NULL;
	if (text)
		*text = NULL;
	if (msg->content_type &&
	    ca_codec_format_from_content_type(msg->content_type, &f) != CA_OK) {
		ca_set_err(why, whylen, "unknown Content-Type '%s'", msg->content_type);
		goto out;
	}
	if (msg->len == 0) {
		ca_set_err(why, whylen, "empty message");
		goto out;
	}
	enum ca_err rc = f == CA_CODEC_PROTOBUF ? ca_codec_protobuf_to_json(message_type, msg->data,
	                                                                    msg->len, &buf)
	                                        : ca_buf_append(&buf, msg->data, msg->len);
	if (rc != CA_OK) {
		ca_set_err(why, whylen, "not a %s in protobuf: %s", message_type, ca_strerror(rc));
		goto out;
	}
	json_error_t jerr;
	root = json_loadb(buf.data, buf.len, 0, &jerr);
	if (!json_is_object(root)) {
		ca_set_err(why, whylen, "not a %s in JSON: %s", message_type,
		           root ? "not an object" : jerr.text);
		goto out;
	}
	if (text) {
		*text = ca_buf_take(&buf, NULL);
		if (!*text) {
			ca_set_err(why, whylen, "out of memory");
			goto out;
		}
	}
	*out = root;
	root = NULL;
	ok = true;
out:
	json_decref(root);
	ca_buf_fini(&buf);
	return ok;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
	enum { OPT_VERSION = 2000 };
	static const struct option options[] = {
	        CA_AGENTCTL_GLOBAL_OPTIONS,
	        {"version", no_argument, NULL, OPT_VERSION},
	        {NULL, 0, NULL, 0},
	};
	struct ca_agentctl ctl = {.timeout_ms = DEFAULT_TIMEOUT_MS, .signal_fd = -1};
	int opt;
	/* '+': stop at the verb; its own options follow it. */
	while ((opt = getopt_long(argc, argv, "+ho:", options, NULL)) != -1) {
		if (opt == OPT_VERSION) {
			printf("agentctl %s (git %s)\n", CA_VERSION, CA_GIT_SHA);
			return 0;
		}
		int r = ca_agentctl_global_option(&ctl, opt, optarg);
		if (r > 1)
			return r;
		if (r == 1)
			return ca_agentctl_usage_error("bad option");
	}
	if (optind >= argc)
		return ca_agentctl_usage_error("no verb given (agents, tail or exec)");

	/* Library logs (the bus's, the config loader's) would repeat what
	 * agentctl says itself, in the agent's format: off unless asked for. */
	const char *level_name = getenv("AGENTCTL_LOG_LEVEL");
	enum ca_log_level level = CA_LOG_ERROR;
	if (level_name && *level_name && ca_log_level_parse(level_name, &level) == CA_OK) {
		ca_log_configure(level, false);
	} else {
		/* Held by the log module until exit. */
		int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
		if (devnull >= 0)
			ca_log_set_fd(devnull);
	}

	const char *verb = argv[optind];
	int vargc = argc - optind;
	char **vargv = argv + optind;
	int status;
	optind = 0; /* glibc: start the verb's parse afresh */
	if (strcmp(verb, "agents") == 0)
		status = ca_agentctl_agents(&ctl, vargc, vargv);
	else if (strcmp(verb, "tail") == 0)
		status = ca_agentctl_tail(&ctl, vargc, vargv);
	else if (strcmp(verb, "exec") == 0)
		status = ca_agentctl_exec(&ctl, vargc, vargv);
	else
		status = ca_agentctl_usage_error("unknown verb '%s' (agents, tail or exec)", verb);
	ca_agentctl_close(&ctl);
	ca_bus_library_cleanup(2000);
	ca_bus_openssl_exit(); /* last: see bus/openssl_exit.c */
	return status;
}
