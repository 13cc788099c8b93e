/* collect-agent: command line entry point. Parses flags, loads and
 * validates the configuration, then hands over to the agent module. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "bus/bus.h"
#include "build_config.h"
#include "config/config.h"
#include "core/buf.h"
#include "log/log.h"

static void usage(FILE *out)
{
	fputs("Usage: collect-agent [OPTIONS]\n"
	      "\n"
	      "Kubernetes agent: streams cluster events, samples metrics and runs read-only\n"
	      "diagnostics for a central orchestrator, over NATS on agent.* subjects.\n"
	      "\n"
	      "Options:\n"
	      "  -c, --config FILE          YAML configuration file (default: $COLLECT_AGENT_CONFIG, else built-in defaults)\n"
	      "      --kubeconfig FILE      kubeconfig to use instead of in-cluster credentials\n"
	      "      --nats URLS            NATS servers, comma-separated (nats://host:4222,...)\n"
	      "      --cluster-id ID        cluster ID (skips detection)\n"
	      "      --log-level LEVEL      debug, info, warn or error\n"
	      "      --print-default-config print the documented default configuration and exit\n"
	      "      --check-config         load and validate the configuration, then exit\n"
	      "      --version              print the version and exit\n"
	      "  -h, --help                 this help\n"
	      "\n"
	      "Every configuration key can be overridden with COLLECT_AGENT_<SECTION>_<KEY>,\n"
	      "e.g. COLLECT_AGENT_HEARTBEAT_INTERVAL=10s. Exit status: 0 ok, 1 runtime failure,\n"
	      "2 usage or configuration error.\n",
	      out);
}

int main(int argc, char **argv)
{
	enum { OPT_KUBECONFIG = 256, OPT_NATS, OPT_CLUSTER_ID, OPT_LOG_LEVEL, OPT_PRINT_DEFAULT,
	       OPT_CHECK, OPT_VERSION };
	static const struct option options[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "kubeconfig", required_argument, NULL, OPT_KUBECONFIG },
		{ "nats", required_argument, NULL, OPT_NATS },
		{ "cluster-id", required_argument, NULL, OPT_CLUSTER_ID },
		{ "log-level", required_argument, NULL, OPT_LOG_LEVEL },
		{ "print-default-config", no_argument, NULL, OPT_PRINT_DEFAULT },
		{ "check-config", no_argument, NULL, OPT_CHECK },
		{ "version", no_argument, NULL, OPT_VERSION },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct ca_config_flags flags = { 0 };
	int check_only = 0;
	int opt;
	while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
		switch (opt) {
		case 'c': flags.config_path = optarg; break;
		case OPT_KUBECONFIG: flags.kubeconfig = optarg; break;
		case OPT_NATS: flags.nats_servers = optarg; break;
		case OPT_CLUSTER_ID: flags.cluster_id = optarg; break;
		case OPT_LOG_LEVEL: flags.log_level = optarg; break;
		case OPT_PRINT_DEFAULT:
			fputs(ca_config_default_yaml(), stdout);
			return 0;
		case OPT_CHECK: check_only = 1; break;
		case OPT_VERSION:
			printf("collect-agent %s (git %s)\n", CA_VERSION, CA_GIT_SHA);
			return 0;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "collect-agent: unexpected argument '%s'\n", argv[optind]);
		usage(stderr);
		return 2;
	}

	struct ca_config cfg;
	char err[1024] = "";
	int status = 2;
	struct ca_agent *agent = NULL;
	if (ca_config_load(&cfg, &flags, NULL, err, sizeof err) != CA_OK) {
		fprintf(stderr, "collect-agent: invalid configuration: %s\n", err);
		goto out;
	}
	enum ca_log_level level = CA_LOG_INFO;
	ca_log_level_parse(cfg.log.level, &level);
	ca_log_configure(level, strcmp(cfg.log.format, "text") != 0);
	if (check_only) {
		struct ca_buf report;
		ca_buf_init(&report, 0);
		if (ca_agent_check(&cfg, &report, err, sizeof err) == CA_OK) {
			printf("configuration OK\n%s", report.data ? report.data : "");
			status = 0;
		} else {
			fputs(report.data ? report.data : "", stderr);
			fprintf(stderr, "collect-agent: invalid configuration: %s\n", err);
		}
		ca_buf_fini(&report);
		ca_bus_library_cleanup(2000);
		goto out;
	}
	status = 1;
	if (ca_agent_new(&agent, &cfg, &flags, err, sizeof err) != CA_OK) {
		ca_log(CA_LOG_ERROR, "agent", "cannot start", "error", err, NULL);
		goto out;
	}
	if (ca_agent_run(agent) == CA_OK)
		status = 0;
out:
	ca_agent_free(agent);
	ca_config_fini(&cfg);
	ca_bus_openssl_exit(); /* last, even after a failed start: see bus/openssl_exit.c */
	return status;
}
