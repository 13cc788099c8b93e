/* Unit tests of the agent module: the memory budget and --check-config.
 * (The running agent is tested end to end in tests/integration.) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/agent.h"
#include "bus/bus.h"
#include "check.h"
#include "config/config.h"
#include "core/budget.h"
#include "core/buf.h"

#define MIB (1024.0 * 1024.0)

static void load(struct ca_config *cfg, char **env)
{
	char err[512] = "";
	CHECK_INT(ca_config_load(cfg, NULL, env, err, sizeof err), CA_OK);
	if (err[0])
		fprintf(stderr, "%s\n", err);
}

/* The default configuration fits the Deployment's 128 MiB with the 10%
 * headroom, and the total is the one docs/ARCHITECTURE.md shows. */
static void test_default_budget(void)
{
	struct ca_config cfg;
	char *env[] = { NULL };
	load(&cfg, env);
	struct ca_budget b;
	ca_budget_init(&b);
	ca_agent_budget(&cfg, &b);
	CHECK(b.total < (uint64_t)(128 * MIB * 0.9));
	uint64_t sum = 0;
	for (size_t i = 0; i < b.n; i++) {
		CHECK(b.rows[i].bytes > 0);
		CHECK(b.rows[i].what[0] != '\0');
		sum += b.rows[i].bytes;
	}
	CHECK_INT(sum, b.total);

	char *doc = check_read_file(CA_SOURCE_ROOT "/docs/ARCHITECTURE.md", NULL);
	CHECK(doc != NULL);
	char want[64];
	snprintf(want, sizeof want, "| **total** | | **%.1f** |", (double)b.total / MIB);
	CHECK(doc && strstr(doc, want) != NULL);
	if (doc && !strstr(doc, want))
		fprintf(stderr, "docs/ARCHITECTURE.md should show %s\n", want);
	free(doc);
	ca_config_fini(&cfg);
}

/* 40 watched namespaces (one watch each) still fit; the rows grow with
 * them; a configuration that cannot fit is refused by --check-config with
 * the keys to lower, and the table is in the report. */
static void test_budget_limits(void)
{
	struct ca_config cfg;
	static char ns[4096];
	size_t used = (size_t)snprintf(ns, sizeof ns, "COLLECT_AGENT_EVENTS_NAMESPACES=");
	for (int i = 0; i < 40 && used < sizeof ns; i++)
		used += (size_t)snprintf(ns + used, sizeof ns - used, "%sns%d", i ? "," : "", i);
	/* ... with the metrics collector sized for the smaller cluster such a
	 * configuration is for. */
	char *env40[] = { ns, "COLLECT_AGENT_EVENTS_MAX_OBJECT_BYTES=262144", "COLLECT_AGENT_METRICS_MAX_PODS=20000",
		          "COLLECT_AGENT_METRICS_MAX_NODES=1000", "COLLECT_AGENT_METRICS_MAX_NAMESPACES=2000", NULL };
	load(&cfg, env40);
	struct ca_budget b40, b1;
	ca_budget_init(&b40);
	ca_agent_budget(&cfg, &b40);
	ca_config_fini(&cfg);
	char *env1[] = { "COLLECT_AGENT_METRICS_MAX_PODS=20000", "COLLECT_AGENT_METRICS_MAX_NODES=1000",
		         "COLLECT_AGENT_METRICS_MAX_NAMESPACES=2000", NULL };
	load(&cfg, env1);
	ca_budget_init(&b1);
	ca_agent_budget(&cfg, &b1);
	ca_config_fini(&cfg);
	CHECK(b40.total > b1.total + (uint64_t)(10 * MIB));
	CHECK(b40.total < (uint64_t)(128 * MIB * 0.9));
	/* ... but not with 1 MiB partial lines on each of them: refused with
	 * the key to lower. */
	char *env40big[] = { ns, NULL };
	load(&cfg, env40big);
	char why[1024] = "";
	CHECK_INT(ca_agent_check(&cfg, NULL, why, sizeof why), CA_EINVAL);
	CHECK(strstr(why, "events.max_object_bytes") != NULL);
	ca_config_fini(&cfg);

	char *env_big[] = { "COLLECT_AGENT_NATS_RECONNECT_BUFFER_BYTES=104857600", NULL };
	load(&cfg, env_big);
	struct ca_buf report;
	ca_buf_init(&report, 0);
	char err[1024] = "";
	enum ca_err rc = ca_agent_check(&cfg, &report, err, sizeof err);
	if (ca_budget_cgroup_limit() == 0 || ca_budget_cgroup_limit() < ((uint64_t)1 << 30)) {
		CHECK_INT(rc, CA_EINVAL);
		CHECK(strstr(err, "memory budget") != NULL);
		CHECK(strstr(err, "nats.reconnect_buffer_bytes") != NULL);
	}
	CHECK(report.data && strstr(report.data, "| nats: reconnect buffer") != NULL);
	CHECK(report.data && strstr(report.data, "| 100.0 |") != NULL);
	ca_buf_fini(&report);
	ca_config_fini(&cfg);
}

int main(void)
{
	test_default_budget();
	test_budget_limits();
	ca_bus_library_cleanup(2000);
	return check_report();
}
