/* agentctl tail: follow what agents publish, one line per message, until
 * interrupted or --count messages. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentctl/agentctl.h"
#include "core/buf.h"

struct kind;

struct tail {
	struct ca_agentctl *ctl;
	const struct kind *kind;
	int64_t count, seen;
	struct ca_buf line;
};

/* A string member for a one-line display: control bytes (a message's
 * newlines) become spaces. */
static void put(struct ca_buf *b, const json_t *o, const char *key)
{
	const char *s = ca_agentctl_str(o, key, "-");
	size_t start = b->len;
	if (ca_buf_append_str(b, *s ? s : "-") != CA_OK)
		return;
	for (size_t i = start; i < b->len; i++)
		if ((unsigned char)b->data[i] < 0x20 || b->data[i] == 0x7f)
			b->data[i] = ' ';
}

static void put_int(struct ca_buf *b, const json_t *o, const char *key)
{
	ca_buf_printf(b, "%" PRId64, ca_agentctl_int(o, key, 0));
}

static const char *yes_no(const json_t *o, const char *key)
{
	return json_is_true(json_object_get(o, key)) ? "yes" : "no";
}

static void format_event(struct ca_buf *b, const json_t *e)
{
	const json_t *obj = json_object_get(e, "involved_object");
	put(b, e, "last_timestamp");
	ca_buf_append_str(b, " ");
	put(b, e, "cluster_id");
	ca_buf_append_str(b, " ");
	put(b, e, "severity");
	ca_buf_append_str(b, " ");
	put(b, e, "category");
	ca_buf_append_str(b, " ");
	put(b, e, "type");
	ca_buf_append_str(b, " ");
	put(b, obj, "namespace");
	ca_buf_append_str(b, "/");
	put(b, obj, "kind");
	ca_buf_append_str(b, "/");
	put(b, obj, "name");
	ca_buf_append_str(b, " ");
	put(b, e, "reason");
	ca_buf_append_str(b, ": ");
	put(b, e, "message");
	if (ca_agentctl_int(e, "count", 1) > 1)
		ca_buf_printf(b, " (x%" PRId64 ")", ca_agentctl_int(e, "count", 1));
}

/* Kubernetes' binary suffixes, one decimal below 10 (1.5Gi, 224Mi, 14Gi). */
static void put_bytes(struct ca_buf *b, int64_t n)
{
	static const char *const units[] = {"Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
	if (n < 1024) {
		ca_buf_printf(b, "%" PRId64, n);
		return;
	}
	double v = (double)n;
	size_t u = 0;
	for (v /= 1024; v >= 1024 && u + 1 < sizeof units / sizeof units[0]; v /= 1024)
		u++;
	if (v < 10 && (int64_t)(v * 10) % 10 != 0)
		ca_buf_printf(b, "%.1f%s", (double)(int64_t)(v * 10) / 10, units[u]);
	else
		ca_buf_printf(b, "%" PRId64 "%s", (int64_t)v, units[u]);
}

/* "used of allocatable" for one resource of the summary. */
static void put_usage(struct ca_buf *b, const json_t *summary, const char *key, bool bytes)
{
	int64_t used = ca_agentctl_int(json_object_get(summary, "usage"), key, 0);
	int64_t alloc = ca_agentctl_int(json_object_get(summary, "allocatable"), key, 0);
	if (bytes) {
		put_bytes(b, used);
		ca_buf_append_str(b, " of ");
		put_bytes(b, alloc);
	} else {
		ca_buf_printf(b, "%" PRId64 "m of %" PRId64 "m", used, alloc);
	}
}

/* The unhealthy pods a line names; the rest are counted as "+N more". */
#define UNHEALTHY_SHOWN 4

/* One line a person can read at a glance: nodes, pods by phase, restarts,
 * usage against allocatable, and the worst pods with their reasons (those
 * of this part: a sample in parts shares its unhealthy pods among them). */
static void format_metrics(struct ca_buf *b, const json_t *m)
{
	static const char *const phases[] = {"running", "pending", "succeeded", "failed",
	                                     "unknown"};
	const json_t *s = json_object_get(m, "summary");
	const json_t *pods = json_object_get(s, "pods");
	int64_t total = 0;
	for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++)
		total += ca_agentctl_int(pods, phases[i], 0);
	put(b, m, "timestamp");
	ca_buf_append_str(b, " ");
	put(b, m, "cluster_id");
	ca_buf_printf(b, " part %" PRId64 "/%" PRId64 ": nodes %" PRId64 "/%" PRId64 " ready",
	              ca_agentctl_int(m, "part", 1), ca_agentctl_int(m, "parts", 1),
	              ca_agentctl_int(s, "nodes_ready", 0), ca_agentctl_int(s, "nodes_total", 0));
	ca_buf_printf(b, "; pods %" PRId64, total);
	const char *sep = ": ";
	for (size_t i = 0; i < sizeof phases / sizeof phases[0]; i++) {
		int64_t n = ca_agentctl_int(pods, phases[i], 0);
		if (n == 0)
			continue;
		ca_buf_printf(b, "%s%" PRId64 " %s", sep, n, phases[i]);
		sep = ", ";
	}
	ca_buf_printf(b, "; %" PRId64 " restarts", ca_agentctl_int(s, "restarts", 0));
	if (json_is_object(json_object_get(s, "usage"))) {
		ca_buf_append_str(b, "; in use: cpu ");
		put_usage(b, s, "cpu_millicores", false);
		ca_buf_append_str(b, ", memory ");
		put_usage(b, s, "memory_bytes", true);
		ca_buf_append_str(b, " allocatable");
	} else if (ca_agentctl_str(m, "usage_unavailable_reason", NULL)) {
		ca_buf_append_str(b, "; no usage: ");
		put(b, m, "usage_unavailable_reason");
	}
	int64_t unhealthy = ca_agentctl_int(s, "unhealthy_pods", 0);
	ca_buf_printf(b, "; %" PRId64 " unhealthy", unhealthy);
	const json_t *list = json_object_get(m, "unhealthy_pods");
	int64_t shown = 0;
	size_t i;
	const json_t *p;
	json_array_foreach(list, i, p)
	{
		if (shown == UNHEALTHY_SHOWN)
			break;
		ca_buf_append_str(b, shown ? ", " : ": ");
		put(b, p, "namespace");
		ca_buf_append_str(b, "/");
		put(b, p, "name");
		ca_buf_append_str(b, " ");
		put(b, p, "reason");
		int64_t restarts = ca_agentctl_int(p, "restarts", 0);
		if (restarts > 0)
			ca_buf_printf(b, " (%" PRId64 " restart%s)", restarts,
			              restarts == 1 ? "" : "s");
		shown++;
	}
	if (shown > 0 && unhealthy > shown)
		ca_buf_printf(b, " (+%" PRId64 " more)", unhealthy - shown);
}

static void format_heartbeat(struct ca_buf *b, const json_t *h)
{
	put(b, h, "timestamp");
	ca_buf_append_str(b, " ");
	put(b, h, "cluster_id");
	ca_buf_append_str(b, " ");
	put(b, h, "agent_id");
	ca_buf_append_str(b, " ");
	put(b, h, "status");
	ca_buf_printf(b,
	              " uptime %" PRId64 "s kube_api_ok=%s nats_connected=%s events %" PRId64
	              " published %" PRId64 " dropped",
	              ca_agentctl_int(h, "uptime_seconds", 0), yes_no(h, "kube_api_ok"),
	              yes_no(h, "nats_connected"), ca_agentctl_int(h, "events_published_total", 0),
	              ca_agentctl_int(h, "events_dropped_total", 0));
	if (ca_agentctl_str(h, "last_error", NULL)) {
		ca_buf_append_str(b, " last_error: ");
		put(b, h, "last_error");
	}
}

static void format_result(struct ca_buf *b, const json_t *r)
{
	put(b, r, "finished_at");
	ca_buf_append_str(b, " ");
	put(b, r, "cluster_id");
	ca_buf_append_str(b, " ");
	put(b, r, "agent_id");
	ca_buf_append_str(b, " ");
	put(b, r, "command_id");
	ca_buf_append_str(b, " ");
	put(b, r, "status");
	ca_buf_append_str(b, " exit ");
	put_int(b, r, "exit_code");
	ca_buf_append_str(b, " ");
	put_int(b, r, "duration_ms");
	ca_buf_append_str(b, "ms");
	if (ca_agentctl_str(r, "error", NULL)) {
		ca_buf_append_str(b, " error: ");
		put(b, r, "error");
	}
}

struct kind {
	const char *verb, *token, *message_type;
	void (*format)(struct ca_buf *b, const json_t *message);
};

static const struct kind kinds[] = {
        {"events", "event", "Event", format_event},
        {"metrics", "metrics", "MetricsSample", format_metrics},
        {"heartbeats", "heartbeat", "Heartbeat", format_heartbeat},
        {"results", "result", "CommandResult", format_result},
};

static void on_message(void *arg, const struct ca_bus_msg *msg)
{
	struct tail *t = arg;
	json_t *root = NULL;
	char *text = NULL;
	char why[256];
	if (t->count && t->seen >= t->count)
		return; /* already queued when the loop was asked to stop */
	if (!ca_agentctl_decode(msg, t->kind->message_type, &root, &text, why, sizeof why)) {
		fprintf(stderr, "agentctl: skipped a message on %s: %s\n", msg->subject, why);
		return;
	}
	ca_buf_reset(&t->line);
	if (t->ctl->json)
		ca_buf_append_str(&t->line, text);
	else
		t->kind->format(&t->line, root);
	ca_buf_append_str(&t->line, "\n");
	fwrite(t->line.data, 1, t->line.len, stdout);
	fflush(stdout);
	free(text);
	json_decref(root);
	t->seen++;
	ca_agentctl_report_drops(t->ctl, false);
	if (ferror(stdout) || (t->count && t->seen >= t->count))
		ca_loop_stop(t->ctl->loop);
}

/* A cluster ID as one subject token, or "*". */
static bool valid_token(const char *s)
{
	if (!*s)
		return false;
	if (strcmp(s, "*") == 0)
		return true;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == '.' || *s == '*' || *s == '>' || *s == 0x7f)
			return false;
	return true;
}

int ca_agentctl_tail(struct ca_agentctl *ctl, int argc, char **argv)
{
	enum { OPT_CLUSTER = 1, OPT_COUNT };
	static const struct option options[] = {
	        CA_AGENTCTL_GLOBAL_OPTIONS,
	        {"cluster", required_argument, NULL, OPT_CLUSTER},
	        {"count", required_argument, NULL, OPT_COUNT},
	        {NULL, 0, NULL, 0},
	};
	const char *cluster = "*";
	struct tail t = {.ctl = ctl};
	int opt, r;
	/* Not '+': the kind may come before or after the options. */
	while ((opt = getopt_long(argc, argv, "ho:", options, NULL)) != -1) {
		r = 0;
		if (opt == OPT_CLUSTER) {
			cluster = optarg;
			if (!valid_token(cluster))
				return ca_agentctl_usage_error(
				        "--cluster: '%s' is not a cluster ID (or *)", cluster);
		} else if (opt == OPT_COUNT) {
			char *end = NULL;
			long long n = strtoll(optarg, &end, 10);
			if (!*optarg || *end || n <= 0)
				return ca_agentctl_usage_error(
				        "--count: '%s' is not a positive number", optarg);
			t.count = n;
		} else {
			r = ca_agentctl_global_option(ctl, opt, optarg);
		}
		if (r != 0)
			return r == 1 ? ca_agentctl_usage_error("tail: bad option") : r;
	}
	if (optind >= argc)
		return ca_agentctl_usage_error(
		        "tail: what to follow? events, metrics, heartbeats or results");
	for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
		if (strcmp(argv[optind], kinds[i].verb) == 0)
			t.kind = &kinds[i];
	if (!t.kind)
		return ca_agentctl_usage_error(
		        "tail: '%s' is not one of events, metrics, heartbeats, results",
		        argv[optind]);
	if (optind + 1 < argc)
		return ca_agentctl_usage_error("tail: unexpected argument '%s'", argv[optind + 1]);

	struct ca_buf subject;
	ca_buf_init(&subject, 1024);
	ca_buf_init(&t.line, 0);
	int status = ca_agentctl_connect(ctl, NULL, 0, on_message, &t);
	if (status != 0)
		goto out;
	status = CA_AGENTCTL_EXIT_FAILED;
	if (ca_buf_printf(&subject, "%s.%s.%s", ctl->prefix, t.kind->token, cluster) != CA_OK ||
	    ca_bus_subscribe(ctl->bus, subject.data, NULL, CA_AGENTCTL_PENDING_MSGS,
	                     CA_AGENTCTL_PENDING_BYTES) != CA_OK) {
		fprintf(stderr, "agentctl: cannot subscribe to %s.%s.%s\n", ctl->prefix,
		        t.kind->token, cluster);
		goto out;
	}
	ca_loop_run(ctl->loop);
	bool dropped = ca_agentctl_report_drops(ctl, true);
	status = ferror(stdout) || dropped ? CA_AGENTCTL_EXIT_FAILED : CA_AGENTCTL_EXIT_OK;
out:
	ca_buf_fini(&subject);
	ca_buf_fini(&t.line);
	return status;
}
