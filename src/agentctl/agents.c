/* agentctl agents: who is out there. Listens to registrations (sent on
 * every connect) and heartbeats (every heartbeat.interval) for a window and
 * prints one line per agent seen. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentctl/agentctl.h"
#include "core/buf.h"
#include "core/timeutil.h"

#define DEFAULT_OFFLINE_AFTER_MS 60000
#define MAX_AGENTS 100000 /* a bound on what a flood of fake agent IDs can make us hold */

struct agent {
	char *cluster_id, *agent_id, *version, *kubernetes_version, *status;
	int64_t heartbeat_ms; /* the last heartbeat's timestamp (agent's clock), 0 = none */
};

struct agents {
	struct ca_agentctl *ctl;
	struct agent *items;
	size_t count, cap;
	bool out_of_memory;
};

static void agent_fini(struct agent *a)
{
	free(a->cluster_id);
	free(a->agent_id);
	free(a->version);
	free(a->kubernetes_version);
	free(a->status);
}

/* Replace *field with a copy of value when value is not NULL. */
static bool set_field(char **field, const char *value)
{
	if (!value)
		return true;
	char *copy = strdup(value);
	if (!copy)
		return false;
	free(*field);
	*field = copy;
	return true;
}

static struct agent *find_or_add(struct agents *s, const char *cluster_id, const char *agent_id)
{
	for (size_t i = 0; i < s->count; i++)
		if (strcmp(s->items[i].cluster_id, cluster_id) == 0 &&
		    strcmp(s->items[i].agent_id, agent_id) == 0)
			return &s->items[i];
	if (s->count >= MAX_AGENTS)
		return NULL;
	if (s->count == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 16;
		struct agent *items = realloc(s->items, cap * sizeof *items);
		if (!items)
			return NULL;
		s->items = items;
		s->cap = cap;
	}
	struct agent *a = &s->items[s->count];
	memset(a, 0, sizeof *a);
	a->cluster_id = strdup(cluster_id);
	a->agent_id = strdup(agent_id);
	if (!a->cluster_id || !a->agent_id) {
		agent_fini(a);
		return NULL;
	}
	s->count++;
	return a;
}

/* "<prefix>.<kind>.<cluster>": is kind the one after the prefix? */
static bool subject_kind(const struct agents *s, const char *subject, const char *kind)
{
	size_t plen = strlen(s->ctl->prefix), klen = strlen(kind);
	return strncmp(subject, s->ctl->prefix, plen) == 0 && subject[plen] == '.' &&
	       strncmp(subject + plen + 1, kind, klen) == 0 && subject[plen + 1 + klen] == '.';
}

static void on_message(void *arg, const struct ca_bus_msg *msg)
{
	struct agents *s = arg;
	bool heartbeat = subject_kind(s, msg->subject, "heartbeat");
	json_t *root = NULL;
	char why[256];
	if (!ca_agentctl_decode(msg, heartbeat ? "Heartbeat" : "AgentInfo", &root, NULL, why,
	                        sizeof why)) {
		fprintf(stderr, "agentctl: skipped a message on %s: %s\n", msg->subject, why);
		return;
	}
	const char *cluster_id = ca_agentctl_str(root, "cluster_id", "");
	const char *agent_id = ca_agentctl_str(root, "agent_id", "");
	struct agent *a = find_or_add(s, cluster_id, agent_id);
	if (!a) {
		s->out_of_memory = true;
		json_decref(root);
		return;
	}
	bool ok = true;
	if (heartbeat) {
		int64_t ts = 0;
		const char *t = ca_agentctl_str(root, "timestamp", NULL);
		if (t && ca_parse_rfc3339(t, &ts) == CA_OK && ts >= a->heartbeat_ms) {
			a->heartbeat_ms = ts;
			ok = set_field(&a->status, ca_agentctl_str(root, "status", NULL));
		}
	} else {
		ok = set_field(&a->version, ca_agentctl_str(root, "version", NULL)) &&
		     set_field(&a->kubernetes_version,
		               ca_agentctl_str(root, "kubernetes_version", NULL));
	}
	if (!ok)
		s->out_of_memory = true;
	json_decref(root);
}

static void on_window_end(void *arg)
{
	struct ca_agentctl *ctl = arg;
	ca_loop_stop(ctl->loop);
}

static int by_cluster_then_agent(const void *x, const void *y)
{
	const struct agent *a = x, *b = y;
	int c = strcmp(a->cluster_id, b->cluster_id);
	return c ? c : strcmp(a->agent_id, b->agent_id);
}

static int width(const char *s, int w)
{
	int n = (int)strlen(s ? s : "-");
	return n > w ? n : w;
}

static void print_agents(struct agents *s, int64_t offline_after_ms)
{
	int64_t now = ca_now_unix_ms();
	if (s->count) /* qsort of NULL is undefined, even for no items */
		qsort(s->items, s->count, sizeof *s->items, by_cluster_then_agent);
	int wc = 7, wa = 5, wv = 7, wk = 10; /* the headers' widths */
	char(*ages)[32] = calloc(s->count ? s->count : 1, sizeof *ages);
	if (!ages) {
		s->out_of_memory = true;
		return;
	}
	for (size_t i = 0; i < s->count; i++) {
		struct agent *a = &s->items[i];
		wc = width(a->cluster_id, wc);
		wa = width(a->agent_id, wa);
		wv = width(a->version, wv);
		wk = width(a->kubernetes_version, wk);
		if (a->heartbeat_ms) {
			int64_t age = now - a->heartbeat_ms;
			snprintf(ages[i], sizeof ages[i], "%" PRId64 "s",
			         (age < 0 ? 0 : age) / 1000);
		} else {
			snprintf(ages[i], sizeof ages[i], "-");
		}
	}
	if (!s->ctl->json)
		printf("%-*s  %-*s  %-*s  %-*s  %-9s  %s\n", wc, "CLUSTER", wa, "AGENT", wv,
		       "VERSION", wk, "KUBERNETES", "HEARTBEAT", "STATE");
	for (size_t i = 0; i < s->count; i++) {
		struct agent *a = &s->items[i];
		int64_t age = a->heartbeat_ms ? now - a->heartbeat_ms : 0;
		if (age < 0)
			age = 0; /* the agent's clock is ahead of ours */
		/* Seen in the window but no heartbeat yet: it has just registered. */
		bool online = age <= offline_after_ms &&
		              !(a->status && strcmp(a->status, "stopping") == 0);
		const char *state = online ? "online" : "offline";
		if (!s->ctl->json) {
			printf("%-*s  %-*s  %-*s  %-*s  %-9s  %s\n", wc, a->cluster_id, wa,
			       a->agent_id, wv, a->version ? a->version : "-", wk,
			       a->kubernetes_version ? a->kubernetes_version : "-", ages[i], state);
			continue;
		}
		char ts[CA_RFC3339_LEN];
		ca_format_rfc3339(a->heartbeat_ms, ts);
		json_t *o = json_pack(
		        "{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:s}", "cluster_id", a->cluster_id,
		        "agent_id", a->agent_id, "version",
		        a->version ? json_string(a->version) : json_null(), "kubernetes_version",
		        a->kubernetes_version ? json_string(a->kubernetes_version) : json_null(),
		        "last_heartbeat", a->heartbeat_ms ? json_string(ts) : json_null(),
		        "last_heartbeat_age_seconds",
		        a->heartbeat_ms ? json_integer(age / 1000) : json_null(), "status",
		        a->status ? json_string(a->status) : json_null(), "state", state);
		char *line = o ? json_dumps(o, JSON_COMPACT) : NULL;
		if (line)
			printf("%s\n", line);
		else
			s->out_of_memory = true;
		free(line);
		json_decref(o);
	}
	free(ages);
}

int ca_agentctl_agents(struct ca_agentctl *ctl, int argc, char **argv)
{
	enum { OPT_WINDOW = 1, OPT_OFFLINE_AFTER };
	static const struct option options[] = {
	        CA_AGENTCTL_GLOBAL_OPTIONS,
	        {"window", required_argument, NULL, OPT_WINDOW},
	        {"offline-after", required_argument, NULL, OPT_OFFLINE_AFTER},
	        {NULL, 0, NULL, 0},
	};
	int64_t window_ms = 0, offline_after_ms = DEFAULT_OFFLINE_AFTER_MS;
	int opt, r;
	while ((opt = getopt_long(argc, argv, "+ho:", options, NULL)) != -1) {
		if (opt == OPT_WINDOW)
			r = ca_agentctl_duration("--window", optarg, &window_ms);
		else if (opt == OPT_OFFLINE_AFTER)
			r = ca_agentctl_duration("--offline-after", optarg, &offline_after_ms);
		else
			r = ca_agentctl_global_option(ctl, opt, optarg);
		if (r != 0)
			return r == 1 ? ca_agentctl_usage_error("agents: bad option") : r;
	}
	if (optind < argc)
		return ca_agentctl_usage_error("agents: unexpected argument '%s'", argv[optind]);
	if (!window_ms)
		window_ms = ctl->timeout_ms;

	struct agents s = {.ctl = ctl};
	struct ca_loop_timer *timer = NULL;
	struct ca_buf reg, hb;
	ca_buf_init(&reg, 1024);
	ca_buf_init(&hb, 1024);
	/* The prefix is known once the config is loaded: subscribe after. */
	int status = ca_agentctl_connect(ctl, NULL, 0, on_message, &s);
	if (status != 0)
		goto out;
	status = CA_AGENTCTL_EXIT_FAILED;
	if (ca_buf_printf(&reg, "%s.register.*", ctl->prefix) != CA_OK ||
	    ca_buf_printf(&hb, "%s.heartbeat.*", ctl->prefix) != CA_OK ||
	    ca_bus_subscribe(ctl->bus, reg.data, NULL, CA_AGENTCTL_PENDING_MSGS,
	                     CA_AGENTCTL_PENDING_BYTES) != CA_OK ||
	    ca_bus_subscribe(ctl->bus, hb.data, NULL, CA_AGENTCTL_PENDING_MSGS,
	                     CA_AGENTCTL_PENDING_BYTES) != CA_OK ||
	    ca_loop_timer_new(ctl->loop, on_window_end, ctl, &timer) != CA_OK) {
		fprintf(stderr, "agentctl: cannot subscribe to %s.register.*\n", ctl->prefix);
		goto out;
	}
	ca_loop_timer_start(timer, window_ms, 0);
	ca_loop_run(ctl->loop);
	print_agents(&s, offline_after_ms);
	ca_agentctl_report_drops(ctl, true); /* an agent's every heartbeat dropped: it is missing */
	if (s.out_of_memory) {
		fputs("agentctl: out of memory; the list is incomplete\n", stderr);
	} else if (s.count == 0) {
		char w[32];
		ca_format_duration(window_ms, w, sizeof w);
		fprintf(stderr,
		        "agentctl: no agent answered on %s or %s within %s (agents register when "
		        "they connect "
		        "and send a heartbeat every heartbeat.interval, 30s by default: try "
		        "--window 35s)\n",
		        reg.data, hb.data, w);
	} else {
		status = CA_AGENTCTL_EXIT_OK;
	}
out:
	ca_loop_timer_free(timer);
	for (size_t i = 0; i < s.count; i++)
		agent_fini(&s.items[i]);
	free(s.items);
	ca_buf_fini(&reg);
	ca_buf_fini(&hb);
	return status;
}
