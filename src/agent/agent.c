#include "agent/agent.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "build_config.h"
#include "bus/bus.h"
#include "cluster/cluster.h"
#include "codec/codec.h"
#include "core/buf.h"
#include "core/loop.h"
#include "core/process_metrics.h"
#include "core/prom.h"
#include "core/timeutil.h"
#include "events/events.h"
#include "exec/exec.h"
#include "ha/ha.h"
#include "metrics/metrics.h"
#include "http/http.h"
#include "kube/kube.h"
#include "log/log.h"

#define CLUSTER_ID_MAX 81
#define SUBJECT_MAX 256

/* One module of the agent (core/module.h). self is NULL while the module
 * is not running: waiting for what it needs (waiting = true: another
 * module's reason explains it), or failed to start (error says why). */
struct module_slot {
	const struct ca_module_ops *ops;
	const void *self;
	bool wanted;       /* enabled by the configuration */
	bool waiting;
	char error[512];
};

enum { MOD_NATS = 0, MOD_KUBE, MOD_CLUSTER, MOD_EVENTS, MOD_METRICS, MOD_EXEC, MOD_HA, MOD_COUNT };

/* A resume point of one events watch, waiting for the bus to confirm
 * every message up to seq (checkpoint_rv()). */
#define CHECKPOINT_DEPTH 4
struct checkpoint_candidate {
	uint64_t seq;
	char rv[128];
};
struct checkpoint_watch {
	struct checkpoint_candidate waiting[CHECKPOINT_DEPTH];
	size_t head, count;
	char confirmed[128]; /* "" until the first confirmation this term */
};

struct ca_agent {
	const struct ca_config *cfg;
	const struct ca_config_flags *flags;
	struct ca_loop *loop;
	struct ca_bus *bus;
	struct ca_http *http;
	struct ca_kube *kube;       /* NULL when no credentials were found */
	struct ca_cluster *cluster;
	struct ca_events *events;   /* NULL until the cluster ID is known, or when disabled */
	struct ca_metrics *metrics; /* likewise */
	struct ca_exec *exec;       /* from the cluster ID on; NULL while stopping */
	/* With ha.enabled: the election. events and metrics then run only
	 * while this replica leads (docs/HA.md). */
	struct ca_ha *ha;
	/* Counters of the events watcher and metrics collector of earlier
	 * terms as leader, so /metrics never goes backwards (core/prom.h). */
	struct ca_prom_carry *carry;
	/* Per events watch while leading: resume points waiting for NATS to
	 * confirm the messages before them (checkpoint_rv()). */
	struct checkpoint_watch *checkpoints;
	size_t checkpoint_watches;
	char kube_error[512];       /* why there is no kube client */
	int signal_fd;
	struct ca_loop_fd *signal_watch;
	struct ca_loop_timer *heartbeat_timer;
	enum ca_codec_format format;

	char agent_id[256];
	char hostname[256];
	const char *node_name, *pod_name, *pod_namespace; /* from the downward API env, borrowed */
	char cluster_id[CLUSTER_ID_MAX];
	char cluster_source[32];
	struct ca_cluster_info cluster_info; /* copy of what the detector found */
	char subject_register[SUBJECT_MAX];
	char subject_heartbeat[SUBJECT_MAX];
	char subject_event[SUBJECT_MAX];
	char subject_metrics[SUBJECT_MAX];
	char subject_result[SUBJECT_MAX];
	char subject_command[SUBJECT_MAX];
	char queue_group[SUBJECT_MAX];

	int64_t started_unix_ms, started_mono_ms;
	uint64_t registrations;
	uint64_t registered_epoch; /* the bus connection the last AgentInfo went out on */
	bool registered_without_version; /* /version had not answered yet: send it again once it has */
	uint64_t heartbeats;
	char last_error[256];
	bool stopping;
	struct module_slot modules[MOD_COUNT];
	uint64_t budget_bytes;
};

/* ------------------------------------------------------------ memory budget */

/* Commands wait for the loop in at most COMMAND_PENDING_MSGS messages and
 * the bus's default 2 MiB, or two of the largest command allowed: enough
 * that a flood is answered (rejected as busy by the executor) rather than
 * dropped unanswered by the subscription's limit. */
#define COMMAND_PENDING_MSGS 4096

static size_t command_pending_bytes(const struct ca_config *cfg)
{
	size_t pending = CA_BUS_SUB_PENDING_BYTES;
	if ((size_t)cfg->exec.max_command_bytes > pending / 2)
		pending = 2 * (size_t)cfg->exec.max_command_bytes;
	return pending;
}

/* What the process holds before any cap: code and shared libraries
 * (libcurl, OpenSSL, GnuTLS pulled in by libcurl's dependencies, nats.c,
 * libyaml, jansson, libmicrohttpd), their global state, and the threads'
 * stacks in use. Idle RSS measured at 12.8 MiB (BENCHMARKS.md). */
#define PROCESS_BASELINE_BYTES ((uint64_t)16 << 20)

/* Event watches: one per watched events namespace (or one for all). */
static size_t event_watches(const struct ca_config *cfg)
{
	if (!cfg->events.enabled)
		return 0;
	return cfg->events.namespaces.count ? cfg->events.namespaces.count : 1;
}

/* Watches the agent keeps open: the events' and the metrics collector's
 * three (nodes, pods, namespaces). */
static size_t agent_watches(const struct ca_config *cfg)
{
	return event_watches(cfg) + (cfg->metrics.enabled ? 3 : 0);
}

void ca_agent_budget(const struct ca_config *cfg, struct ca_budget *b)
{
	ca_budget_add(b, "process: code, libraries, their state, thread stacks", "", PROCESS_BASELINE_BYTES);
	ca_budget_add(b, "log: one record being written, per writing thread (2)", "",
	              2 * (uint64_t)CA_LOG_RECORD_MAX);
	ca_bus_budget(cfg, command_pending_bytes(cfg), COMMAND_PENDING_MSGS, b);
	if (cfg->events.enabled)
		ca_kube_watch_budget(event_watches(cfg), (size_t)cfg->events.max_object_bytes, "event",
		                     "events.max_object_bytes", b);
	int64_t line = cfg->events.enabled ? cfg->events.max_object_bytes : 0;
	const char *line_key = "events.max_object_bytes";
	if (cfg->metrics.enabled && cfg->metrics.max_object_bytes > line) {
		line = cfg->metrics.max_object_bytes;
		line_key = "metrics.max_object_bytes";
	}
	if (line)
		ca_kube_parse_budget((size_t)line, (size_t)cfg->kubernetes.max_list_page_bytes, line_key, b);
	ca_kube_budget((size_t)cfg->kubernetes.max_list_page_bytes, b);
	ca_events_budget(cfg, b);
	ca_metrics_budget(cfg, b);
	ca_exec_budget(cfg, b);
	ca_ha_budget(cfg, b);
	if (cfg->ha.enabled) {
		ca_budget_add(b, "agent: counters carried across terms as leader (ha)", "",
		              CA_PROM_CARRY_MAX * (uint64_t)256);
		if (cfg->events.enabled)
			ca_budget_add(b, "agent: events resume points awaiting NATS confirmation (ha), per watch",
			              "events.namespaces", (uint64_t)event_watches(cfg) * sizeof(struct checkpoint_watch));
	}
	ca_http_budget(b);
}

/* The limit the budget must fit: the cgroup's when there is one, else the
 * shipped Deployment's (deploy/base/deployment.yaml). Leaves 10% headroom for
 * what no cap counts (allocator overhead and fragmentation). */
#define DEPLOYMENT_LIMIT_BYTES ((uint64_t)128 << 20)

static enum ca_err check_budget(const struct ca_config *cfg, uint64_t limit, char *err, size_t errlen)
{
	struct ca_budget b;
	ca_budget_init(&b);
	ca_agent_budget(cfg, &b);
	if (limit == 0 || b.total <= limit - limit / 10)
		return CA_OK;
	ca_set_err(err, errlen,
	           "the memory budget is %.1f MiB, over 90%% of the memory limit of %.1f MiB: lower "
	           "events.max_object_bytes (each watched namespace may hold a partial line that long), "
	           "events.buffer_bytes, events.dedup_window_bytes, metrics.max_pods, metrics.max_nodes, "
	           "metrics.max_namespaces, nats.reconnect_buffer_bytes or kubernetes.max_list_page_bytes, "
	           "or watch fewer events.namespaces (see --check-config "
	           "for the table)",
	           (double)b.total / 1048576.0, (double)limit / 1048576.0);
	return CA_EINVAL;
}

/* File descriptors: every watch holds a connection, the probe port up to
 * its connection cap, and the rest is a few dozen (NATS, the loop's own).
 * The soft limit is raised to the hard one (as most servers do); a hard
 * limit too low for the configured watches is refused now rather than
 * failing connections later. */
#define FDS_BESIDES_WATCHES 128

static enum ca_err check_fds(const struct ca_config *cfg, bool raise, char *err, size_t errlen)
{
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return CA_OK;
	rlim_t need = (rlim_t)(agent_watches(cfg) + 2 + FDS_BESIDES_WATCHES);
	if (raise && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		(void)setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < need) {
		ca_set_err(err, errlen, "events.namespaces: %zu watches need about %llu file descriptors, "
		           "and the limit (RLIMIT_NOFILE) is %llu: watch fewer namespaces (an empty "
		           "events.namespaces watches all of them with one connection) or raise the limit",
		           agent_watches(cfg), (unsigned long long)need, (unsigned long long)rl.rlim_max);
		return CA_EINVAL;
	}
	return CA_OK;
}

enum ca_err ca_agent_check(const struct ca_config *cfg, struct ca_buf *report, char *err, size_t errlen)
{
	enum ca_err rc;
	struct ca_loop *loop = NULL;
	struct ca_kube *kube = NULL;
	struct ca_bus *bus = NULL;
	struct ca_events *events = NULL;
	char kerr[512] = "";

	struct ca_budget b;
	ca_budget_init(&b);
	ca_agent_budget(cfg, &b);
	uint64_t cgroup = ca_budget_cgroup_limit();
	uint64_t limit = cgroup ? cgroup : DEPLOYMENT_LIMIT_BYTES;
	if (report) {
		ca_buf_append_str(report, "memory budget:\n");
		ca_budget_render(&b, report);
		ca_buf_printf(report, "limit: %.1f MiB (%s)\n", (double)limit / 1048576.0,
		              cgroup ? "this cgroup's memory limit" : "the Deployment's, deploy/base/deployment.yaml");
	}
	if ((rc = check_budget(cfg, limit, err, errlen)) != CA_OK ||
	    (rc = check_fds(cfg, false, err, errlen)) != CA_OK)
		return rc;

	/* Everything start-up sets up, without contacting anything: the
	 * credentials, NATS options and files, the event filters. */
	if ((rc = ca_loop_new(&loop)) != CA_OK) {
		ca_set_err(err, errlen, "cannot create the event loop: %s", ca_strerror(rc));
		goto out;
	}
	struct ca_kube_options kopts = {
		.kubeconfig = cfg->kubernetes.kubeconfig,
		.context = cfg->kubernetes.context,
		.service_account_dir = cfg->kubernetes.service_account_dir,
		.allow_insecure_http = cfg->kubernetes.allow_insecure_http,
	};
	rc = ca_kube_new(&kube, loop, &kopts, kerr, sizeof kerr);
	if (rc != CA_OK && !(rc == CA_ENOTFOUND && !(cfg->kubernetes.kubeconfig && *cfg->kubernetes.kubeconfig))) {
		ca_set_err(err, errlen, "Kubernetes credentials: %s", kerr);
		goto out;
	}
	if ((rc = ca_bus_new(&bus, loop, cfg, NULL, NULL, err, errlen)) != CA_OK)
		goto out;
	/* The watcher is built without its files, which are only looked at:
	 * a live agent beside this check may be using them. Both only with
	 * credentials: without them (a ConfigMap checked on a laptop) the
	 * pod's paths mean nothing here. */
	struct ca_config fileless = *cfg;
	fileless.events.spool_dir = NULL;
	fileless.events.state_file = NULL;
	if (kube && (rc = ca_events_check_files(cfg, err, errlen)) != CA_OK)
		goto out;
	if (cfg->events.enabled && kube &&
	    (rc = ca_events_new_loop(&events, loop, kube, &fileless, "check", NULL, NULL, err, errlen)) != CA_OK)
		goto out;
	rc = CA_OK;
out:
	ca_events_free(events);
	ca_bus_free(bus);
	ca_kube_free(kube);
	ca_loop_free(loop);
	return rc;
}

/* ---------------------------------------------------------------- identity */

static void build_subjects(struct ca_agent *a)
{
	const char *prefix = a->cfg->nats.subject_prefix;
	snprintf(a->subject_register, SUBJECT_MAX, "%s.register.%s", prefix, a->cluster_id);
	snprintf(a->subject_heartbeat, SUBJECT_MAX, "%s.heartbeat.%s", prefix, a->cluster_id);
	snprintf(a->subject_event, SUBJECT_MAX, "%s.event.%s", prefix, a->cluster_id);
	snprintf(a->subject_metrics, SUBJECT_MAX, "%s.metrics.%s", prefix, a->cluster_id);
	snprintf(a->subject_result, SUBJECT_MAX, "%s.result.%s", prefix, a->cluster_id);
	snprintf(a->subject_command, SUBJECT_MAX, "%s.command.%s", prefix, a->cluster_id);
	snprintf(a->queue_group, SUBJECT_MAX, "collect-agent.%s", a->cluster_id);
}

static bool cluster_known(const struct ca_agent *a)
{
	return a->cluster_id[0] != '\0';
}

static void set_last_error(struct ca_agent *a, const char *what)
{
	ca_strlcpy(a->last_error, what, sizeof a->last_error);
}

/* --------------------------------------------------------------- publishing */

static enum ca_err publish(struct ca_agent *a, const char *subject, const char *msg_id,
                           const struct ca_buf *payload)
{
	enum ca_err err = ca_bus_publish(a->bus, subject, ca_codec_content_type(a->format), msg_id,
	                                 payload->data ? payload->data : "", payload->len);
	if (err) {
		char why[sizeof a->last_error];
		/* A long reply subject may be cut: the message is for people. */
		ca_set_err(why, sizeof why, "publish to %s failed: %s", subject, ca_strerror(err));
		set_last_error(a, why);
	}
	return err;
}

static const char *kubernetes_version(const struct ca_agent *a)
{
	const struct ca_cluster_info *info = a->cluster ? ca_cluster_info(a->cluster) : NULL;
	return info ? info->kubernetes_version : "";
}

/* leader|standby with ha.enabled, "" without. */
static const char *ha_role(const struct ca_agent *a)
{
	if (!a->cfg->ha.enabled)
		return "";
	return ca_ha_leading(a->ha) ? "leader" : "standby";
}

static void send_registration(struct ca_agent *a)
{
	struct ca_buf payload;
	char msg_id[320];
	/* Once per connection: the cluster ID and the connection may become
	 * known in either order, and both paths call this. */
	uint64_t epoch = ca_bus_connection_epoch(a->bus);
	if (epoch == a->registered_epoch && !(a->registered_without_version && *kubernetes_version(a)))
		return;
	struct ca_msg_agent_info info = {
		.agent_id = a->agent_id,
		.cluster_id = a->cluster_id,
		.cluster_source = a->cluster_source,
		.provider = a->cluster_info.provider,
		.region = a->cluster_info.region,
		.cluster_uid = a->cluster_info.cluster_uid,
		.version = CA_VERSION,
		.git_sha = CA_GIT_SHA,
		.kubernetes_version = kubernetes_version(a),
		.node_name = a->node_name ? a->node_name : "",
		.pod_name = a->pod_name ? a->pod_name : "",
		.pod_namespace = a->pod_namespace ? a->pod_namespace : "",
		.encoding = a->format == CA_CODEC_PROTOBUF ? "protobuf" : "json",
		.hostname = a->hostname,
		.started_at = a->started_unix_ms,
		/* A standby has them too: it runs them once it leads. */
		.cap_events = a->events != NULL || (a->ha && a->cfg->events.enabled),
		.cap_metrics = a->metrics != NULL || (a->ha && a->cfg->metrics.enabled),
		.role = ha_role(a),
		.cap_exec = a->exec && a->cfg->exec.enabled && ca_exec_tool_count(a->exec) > 0,
	};
	const char *tools[64], *actions[256];
	size_t ntools = 0, nactions = 0;
	for (size_t i = 0; a->exec && i < ca_exec_tool_count(a->exec) && ntools < 64; i++)
		tools[ntools++] = ca_exec_tool(a->exec, i);
	for (size_t i = 0; a->exec && i < ca_exec_action_count(a->exec) && nactions < 256; i++)
		actions[nactions++] = ca_exec_action(a->exec, i);
	info.allowed_tools = tools;
	info.n_allowed_tools = ntools;
	info.allowed_actions = actions;
	info.n_allowed_actions = nactions;
	ca_buf_init(&payload, 0);
	if (ca_codec_encode_agent_info(a->format, &info, &payload) == CA_OK) {
		/* The id names this process and connection: a second send for
		 * the same connection would be the same message -- except the
		 * one that adds kubernetes_version, which is new news. */
		bool update = epoch == a->registered_epoch;
		snprintf(msg_id, sizeof msg_id, "%s-register-%" PRId64 "-%" PRIu64 "%s", a->agent_id,
		         a->started_unix_ms, epoch, update ? "-version" : "");
		if (publish(a, a->subject_register, msg_id, &payload) == CA_OK) {
			a->registrations++;
			a->registered_epoch = epoch;
			a->registered_without_version = !*kubernetes_version(a);
			ca_log(CA_LOG_INFO, "agent", "registered", "subject", a->subject_register, NULL);
		}
	}
	ca_buf_fini(&payload);
}

static void send_heartbeat(struct ca_agent *a, const char *status)
{
	struct ca_buf payload;
	char msg_id[320];
	int64_t now = ca_now_unix_ms();
	struct ca_msg_heartbeat hb = {
		.agent_id = a->agent_id,
		.cluster_id = a->cluster_id,
		.status = status,
		.timestamp = now,
		.uptime_seconds = (ca_now_monotonic_ms() - a->started_mono_ms) / 1000,
		.kube_api_ok = a->kube && ca_kube_api_ok(a->kube),
		.nats_connected = ca_bus_connected(a->bus),
		.last_error = a->last_error[0] ? a->last_error : NULL,
		.role = ha_role(a),
	};
	struct ca_ha_stats ha_st = { 0 };
	if (a->ha) {
		ca_ha_get_stats(a->ha, &ha_st);
		hb.leader = ha_st.holder;
	}
	if (a->events) {
		struct ca_events_stats st;
		ca_events_get_stats(a->events, &st);
		hb.queues.events = (int64_t)st.queue_size;
		hb.events_published_total = (int64_t)st.published;
		hb.events_dropped_total = (int64_t)st.dropped;
	}
	if (a->metrics) {
		struct ca_metrics_stats st;
		ca_metrics_get_stats(a->metrics, &st);
		hb.queues.metrics = (int64_t)st.queue_parts;
	}
	if (a->exec) {
		struct ca_exec_stats st;
		ca_exec_stats(a->exec, &st);
		hb.queues.commands = (int64_t)st.queued;
		hb.queues.results = (int64_t)st.results_waiting;
	}
	ca_buf_init(&payload, 0);
	if (ca_codec_encode_heartbeat(a->format, &hb, &payload) == CA_OK) {
		a->heartbeats++;
		snprintf(msg_id, sizeof msg_id, "%s-heartbeat-%" PRId64 "-%" PRIu64, a->agent_id,
		         a->started_unix_ms, a->heartbeats);
		publish(a, a->subject_heartbeat, msg_id, &payload);
	}
	ca_buf_fini(&payload);
}

/* Ask every module (core/module.h). ready/live: all wanted modules are;
 * not_ready and not_live (may be NULL) get the reasons, "; "-separated. */
static void modules_health(const struct ca_agent *a, bool *ready, bool *live, struct ca_buf *not_ready,
                           struct ca_buf *not_live)
{
	*ready = *live = true;
	for (size_t i = 0; i < MOD_COUNT; i++) {
		const struct module_slot *m = &a->modules[i];
		struct ca_module_health h = { .ready = true, .live = true };
		if (!m->wanted || !m->ops)
			continue;
		if (!m->self) {
			if (m->waiting)
				continue; /* another module's reason explains it */
			h.ready = false;
			ca_set_err(h.reason, sizeof h.reason, "%s: %s", m->ops->name,
			           m->error[0] ? m->error : "not running");
		} else if (m->ops->health) {
			m->ops->health(m->self, &h);
		}
		if (!h.ready) {
			*ready = false;
			if (not_ready)
				ca_buf_printf(not_ready, "%s%s", not_ready->len ? "; " : "", h.reason);
		}
		if (!h.live) {
			*live = false;
			if (not_live)
				ca_buf_printf(not_live, "%s%s", not_live->len ? "; " : "", h.reason);
		}
	}
	if (a->stopping) {
		*ready = false;
		if (not_ready)
			ca_buf_printf(not_ready, "%sshutting down", not_ready->len ? "; " : "");
	}
}

/* Running but not doing all of its job. */
static bool degraded(const struct ca_agent *a)
{
	bool ready, live;
	modules_health(a, &ready, &live, NULL, NULL);
	return !ready || !live;
}

static void on_heartbeat_timer(void *arg)
{
	struct ca_agent *a = arg;
	ca_exec_audit_summary(a->exec);
	/* With the cluster ID from env or config, the first AgentInfo can go
	 * out before /version answers: send it again with the version. */
	if (a->registered_without_version && cluster_known(a) && ca_bus_connected(a->bus) && !a->stopping)
		send_registration(a);
	/* A heartbeat is a statement about now: while disconnected, buffering
	 * it for later would only deliver stale news. */
	if (cluster_known(a) && ca_bus_connected(a->bus))
		send_heartbeat(a, degraded(a) ? "degraded" : "ok");
}

/* ---------------------------------------------------------------- commands */

/* A command's reply subject is only answered when it is a request inbox
 * (exec.reply_prefixes, checked by the executor): otherwise a command could
 * make the agent publish on any subject it may publish on, its own event
 * stream included. */
static enum ca_err publish_result(void *arg, const char *reply, const char *msg_id, const char *payload,
                                  size_t len)
{
	struct ca_agent *a = arg;
	struct ca_buf b = { .data = (char *)payload, .len = len };
	enum ca_err err = ca_bus_publish_durable(a->bus, a->subject_result, ca_codec_content_type(a->format), msg_id,
	                                         payload, len);
	if (err) {
		char why[sizeof a->last_error];
		ca_set_err(why, sizeof why, "publish to %s failed: %s", a->subject_result, ca_strerror(err));
		set_last_error(a, why);
	}
	/* The reply to a request stays core NATS: an inbox is no stream's. */
	if (err == CA_OK && reply && *reply)
		publish(a, reply, msg_id, &b);
	return err;
}

static size_t bus_max_payload(void *arg)
{
	struct ca_agent *a = arg;
	return ca_bus_max_payload(a->bus);
}

static void start_exec(struct ca_agent *a)
{
	struct module_slot *m = &a->modules[MOD_EXEC];
	static const struct ca_exec_sink sink = { .publish = publish_result, .max_payload = bus_max_payload };
	if (a->exec)
		return;
	m->waiting = false;
	if (ca_exec_new(&a->exec, a->loop, a->kube, a->cfg, a->format, a->cluster_id, a->agent_id, &sink, a,
	                m->error, sizeof m->error) != CA_OK) {
		ca_log(CA_LOG_ERROR, "exec", "cannot set up the command executor: commands are not answered", "error",
		       m->error, NULL);
		set_last_error(a, m->error);
		return;
	}
	m->self = a->exec;
}

/* ------------------------------------------------------------------ events */

static enum ca_err publish_event(void *arg, const struct ca_msg_event *ev)
{
	struct ca_agent *a = arg;
	struct ca_buf payload;
	char msg_id[320];
	enum ca_err err;

	/* While NATS is down, the bus takes events into the nats.c reconnect
	 * buffer until it is full and then answers CA_EAGAIN: they wait in the
	 * watcher's own bounded queue (drop-oldest) from there on. */
	ca_buf_init(&payload, 0);
	err = ca_codec_encode_event(a->format, ev, &payload);
	if (err == CA_OK) {
		ca_events_msg_id(ev, msg_id, sizeof msg_id);
		err = ca_bus_publish_durable(a->bus, a->subject_event, ca_codec_content_type(a->format), msg_id,
		                             payload.data ? payload.data : "", payload.len);
	}
	ca_buf_fini(&payload);
	return err;
}

/* ------------------------------------------------ the checkpoint in the Lease
 *
 * The leader writes, per events watch, the resourceVersion a successor
 * may resume from into an annotation of the Lease; a new leader starts its
 * watches there (docs/HA.md). One annotation per watch: the watch over all
 * namespaces, or one per namespace of events.namespaces. */

#define CHECKPOINT_KEY "collect-agent.io/events-resource-version"

static void checkpoint_key(const char *ns, char *out, size_t outlen)
{
	if (*ns)
		snprintf(out, outlen, "%s.events.collect-agent.io/resource-version", ns);
	else
		snprintf(out, outlen, "%s", CHECKPOINT_KEY);
}

/* The resourceVersion of watch i that a successor may resume from: every
 * event before it was confirmed by NATS (acked by the stream in JetStream
 * mode, a PING/PONG after it in core mode; bus.h). The events watcher
 * says which resourceVersion it has handed everything before to the bus
 * (spooled events not included); that point is sampled together with the
 * bus's published sequence, and becomes the checkpoint once the bus's
 * confirmed sequence reaches that sequence. A successor thus resumes at
 * most a few samples too early (re-sends the stream's duplicate window
 * removes), and never after an event that was still waiting for its
 * confirmation when the leader was killed. But "confirmed" also covers
 * events the bus gave up on (ca_bus_confirmed_seq() in bus.h): in
 * JetStream mode those dropped by when_full: drop_oldest, refused for good
 * by the stream, or still unacknowledged when the bus closed; in core mode
 * those nats.c refused for good, and those that were in the socket when a
 * connection died (the PONG after the reconnect confirms them). The
 * checkpoint moves past them, so a successor does not send them again:
 * they stay lost, counted in agent_nats_publish_lost_total, except the
 * core-mode ones lost in the socket, which nothing counts. */
static const char *checkpoint_rv(struct ca_agent *a, size_t i)
{
	struct checkpoint_watch *w = &a->checkpoints[i];
	const char *handed = ca_events_handed_rv(a->events, i);
	uint64_t published = ca_bus_published_seq(a->bus);
	const struct checkpoint_candidate *newest =
	        w->count ? &w->waiting[(w->head + w->count - 1) % CHECKPOINT_DEPTH] : NULL;
	const char *last = newest ? newest->rv : w->confirmed;
	if (*handed && strlen(handed) < sizeof w->confirmed && strcmp(handed, last) != 0) {
		/* Full: the newest sample is replaced, so the oldest keep moving. */
		size_t slot = (w->head + (w->count < CHECKPOINT_DEPTH ? w->count++ : w->count - 1)) %
		              CHECKPOINT_DEPTH;
		w->waiting[slot].seq = published;
		ca_strlcpy(w->waiting[slot].rv, handed, sizeof w->waiting[slot].rv);
	}
	uint64_t confirmed = ca_bus_confirmed_seq(a->bus);
	while (w->count && w->waiting[w->head].seq <= confirmed) {
		ca_strlcpy(w->confirmed, w->waiting[w->head].rv, sizeof w->confirmed);
		w->head = (w->head + 1) % CHECKPOINT_DEPTH;
		w->count--;
	}
	return w->confirmed;
}

static void write_checkpoint(struct ca_agent *a)
{
	char key[128];
	if (!a->events || !a->ha || !a->checkpoints)
		return;
	for (size_t i = 0; i < ca_events_watch_count(a->events) && i < a->checkpoint_watches; i++) {
		const char *rv = checkpoint_rv(a, i);
		if (!*rv)
			continue;
		checkpoint_key(ca_events_watch_namespace(a->events, i), key, sizeof key);
		enum ca_err rc = ca_ha_set_annotation(a->ha, key, rv);
		if (rc != CA_OK)
			ca_log(CA_LOG_WARN, "ha", "cannot keep the events resume point in the Lease", "annotation", key,
			       "resource_version", rv, "error", ca_strerror(rc), NULL);
	}
}

static void resume_from_lease(struct ca_agent *a)
{
	char key[128];
	for (size_t i = 0; i < ca_events_watch_count(a->events); i++) {
		checkpoint_key(ca_events_watch_namespace(a->events, i), key, sizeof key);
		const char *rv = ca_ha_annotation(a->ha, key);
		if (!rv || !*rv)
			continue;
		if (ca_events_set_resume(a->events, i, rv) == CA_OK)
			ca_log(CA_LOG_INFO, "ha", "events resume where the last leader stopped", "annotation", key,
			       "resource_version", rv, NULL);
		else
			ca_log(CA_LOG_WARN, "ha", "ignoring an unusable resume point in the Lease", "annotation", key,
			       NULL);
	}
}

static void start_events(struct ca_agent *a)
{
	struct module_slot *m = &a->modules[MOD_EVENTS];
	static const struct ca_events_sink sink = { .publish = publish_event };
	if (!a->cfg->events.enabled || !a->kube || a->events)
		return;
	m->waiting = false;
	if (ca_events_new_loop(&a->events, a->loop, a->kube, a->cfg, a->cluster_id, &sink, a, m->error,
	                       sizeof m->error) != CA_OK) {
		ca_log(CA_LOG_ERROR, "events", "cannot set up the event watcher", "error", m->error, NULL);
		set_last_error(a, m->error);
		return;
	}
	if (a->ha) {
		resume_from_lease(a);
		free(a->checkpoints);
		a->checkpoint_watches = ca_events_watch_count(a->events);
		a->checkpoints = calloc(a->checkpoint_watches ? a->checkpoint_watches : 1, sizeof *a->checkpoints);
		if (!a->checkpoints) {
			a->checkpoint_watches = 0;
			ca_log(CA_LOG_WARN, "ha", "no memory for the events resume points: a successor re-lists "
			       "with events.since", NULL);
		}
	}
	enum ca_err rc = ca_events_start(a->events);
	if (rc != CA_OK) {
		ca_set_err(m->error, sizeof m->error, "cannot start the event watcher: %s", ca_strerror(rc));
		ca_log(CA_LOG_ERROR, "events", m->error, NULL);
		set_last_error(a, m->error);
		ca_events_free(a->events);
		a->events = NULL;
		return;
	}
	m->self = a->events;
}

/* ----------------------------------------------------------------- metrics */

static enum ca_err publish_metrics(void *arg, const char *payload, size_t len, const char *msg_id)
{
	struct ca_agent *a = arg;
	return ca_bus_publish_durable(a->bus, a->subject_metrics, ca_codec_content_type(a->format), msg_id, payload,
	                              len);
}

static void start_metrics(struct ca_agent *a)
{
	struct module_slot *m = &a->modules[MOD_METRICS];
	static const struct ca_metrics_sink sink = { .publish = publish_metrics, .max_payload = bus_max_payload };
	if (!a->cfg->metrics.enabled || !a->kube || a->metrics)
		return;
	m->waiting = false;
	if (ca_metrics_new(&a->metrics, a->loop, a->kube, a->cfg, a->format, a->cluster_id, a->agent_id, &sink, a,
	                   m->error, sizeof m->error) != CA_OK) {
		ca_log(CA_LOG_ERROR, "metrics", "cannot set up the metrics collector", "error", m->error, NULL);
		set_last_error(a, m->error);
		return;
	}
	enum ca_err rc = ca_metrics_start(a->metrics);
	if (rc != CA_OK) {
		ca_set_err(m->error, sizeof m->error, "cannot start the metrics collector: %s", ca_strerror(rc));
		ca_log(CA_LOG_ERROR, "metrics", m->error, NULL);
		set_last_error(a, m->error);
		ca_metrics_free(a->metrics);
		a->metrics = NULL;
		return;
	}
	m->self = a->metrics;
}

/* --------------------------------------------------------------------- ha
 *
 * With ha.enabled the events watcher and the metrics collector exist only
 * while this replica leads: made and started when it becomes leader (the
 * watcher from the Lease's checkpoint), freed when it stops. A standby so
 * holds none of their memory, opens none of their watches, and cannot
 * publish by mistake; its probes skip them (waiting: the ha module
 * explains). Their counters are carried across terms (core/prom.h).
 * Commands are served by every replica (the queue group), leader or not. */

#define STANDBY_EVENTS "standby: the leader publishes events (ha.enabled)"
#define STANDBY_METRICS "standby: the leader publishes metrics samples (ha.enabled)"

static void carry_counters(struct ca_agent *a, const struct ca_module_ops *ops, const void *self)
{
	struct ca_buf scratch;
	struct ca_prom p;
	if (!a->carry || !ops->render_metrics)
		return;
	ca_buf_init(&scratch, (size_t)1 << 20);
	ca_prom_init_capture(&p, &scratch, a->cluster_id, a->carry);
	ops->render_metrics(self, &p);
	ca_buf_fini(&scratch);
}

static void stop_leader_modules(struct ca_agent *a)
{
	struct module_slot *ev = &a->modules[MOD_EVENTS], *mt = &a->modules[MOD_METRICS];
	if (a->events) {
		carry_counters(a, &ca_events_module, a->events);
		ca_events_free(a->events);
		a->events = NULL;
	}
	free(a->checkpoints);
	a->checkpoints = NULL;
	a->checkpoint_watches = 0;
	if (a->metrics) {
		carry_counters(a, &ca_metrics_module, a->metrics);
		ca_metrics_free(a->metrics);
		a->metrics = NULL;
	}
	ev->self = mt->self = NULL;
	ev->waiting = mt->waiting = true;
	ca_strlcpy(ev->error, STANDBY_EVENTS, sizeof ev->error);
	ca_strlcpy(mt->error, STANDBY_METRICS, sizeof mt->error);
}

static void on_started_leading(void *arg)
{
	struct ca_agent *a = arg;
	if (a->stopping)
		return;
	a->modules[MOD_EVENTS].error[0] = '\0';
	a->modules[MOD_METRICS].error[0] = '\0';
	start_events(a);
	start_metrics(a);
}

static void on_stopped_leading(void *arg, const char *why)
{
	struct ca_agent *a = arg;
	stop_leader_modules(a);
	char msg[sizeof a->last_error];
	ca_set_err(msg, sizeof msg, "stopped leading: %s", why);
	set_last_error(a, msg);
}

static void on_checkpoint(void *arg)
{
	write_checkpoint(arg);
}

static void start_ha(struct ca_agent *a)
{
	static const struct ca_ha_callbacks cbs = {
		.on_started_leading = on_started_leading,
		.on_stopped_leading = on_stopped_leading,
		.checkpoint = on_checkpoint,
	};
	struct module_slot *m = &a->modules[MOD_HA];
	char identity[CA_HA_IDENTITY_MAX], name[254];
	if (!a->kube || a->ha)
		return; /* without the API the kubernetes module says why */
	m->waiting = false;
	const char *ns = a->cfg->ha.lease_namespace;
	if (!ns || !*ns)
		ns = a->pod_namespace && *a->pod_namespace ? a->pod_namespace : ca_kube_namespace(a->kube);
	if (a->cfg->ha.lease_name && *a->cfg->ha.lease_name)
		ca_strlcpy(name, a->cfg->ha.lease_name, sizeof name);
	else
		ca_ha_default_lease_name(a->cluster_id, name, sizeof name);
	ca_ha_identity(a->pod_name, a->hostname, (long)getpid(), identity, sizeof identity);
	stop_leader_modules(a); /* standby until the Lease says otherwise */
	if (ca_ha_new(&a->ha, a->loop, a->kube, a->cfg, identity, ns, name, &cbs, a, m->error, sizeof m->error) !=
	    CA_OK) {
		ca_log(CA_LOG_ERROR, "ha", "cannot set up leader election: nothing is published", "error", m->error,
		       NULL);
		set_last_error(a, m->error);
		return;
	}
	m->self = a->ha;
	ca_ha_start(a->ha);
}

/* ---------------------------------------------------------------- cluster */

static void on_cluster_known(void *arg, const struct ca_cluster_info *info)
{
	struct ca_agent *a = arg;
	a->cluster_info = *info;
	ca_strlcpy(a->cluster_id, info->id, sizeof a->cluster_id);
	ca_strlcpy(a->cluster_source, info->source, sizeof a->cluster_source);
	build_subjects(a);
	ca_log_set_cluster_id(a->cluster_id);
	/* The stream holds what the agent publishes about this cluster, not
	 * the commands to it: a command is for a live agent now, and a stored
	 * one would be replayed to whoever reads the stream later. */
	const char *stored[] = { a->subject_register, a->subject_heartbeat, a->subject_event, a->subject_metrics,
		                 a->subject_result };
	enum ca_err jrc = ca_bus_jetstream_bind(a->bus, a->cluster_id, stored, sizeof stored / sizeof stored[0]);
	if (jrc != CA_OK)
		ca_log(CA_LOG_ERROR, "agent", "cannot name the JetStream stream", "error", ca_strerror(jrc), NULL);
	ca_log(CA_LOG_INFO, "cluster", "cluster ID known", "cluster_id", info->id, "source", info->source,
	       "provider", info->provider, "region", info->region, NULL);
	start_exec(a);
	enum ca_err rc = ca_bus_subscribe(a->bus, a->subject_command, a->queue_group, COMMAND_PENDING_MSGS,
	                                  command_pending_bytes(a->cfg));
	if (rc != CA_OK)
		ca_log(CA_LOG_ERROR, "agent", "cannot subscribe to commands", "subject", a->subject_command,
		       "error", ca_strerror(rc), NULL);
	if (a->cfg->ha.enabled) {
		start_ha(a);
	} else {
		start_events(a);
		start_metrics(a);
	}
	if (ca_bus_connected(a->bus) && !a->stopping)
		send_registration(a);
}

/* -------------------------------------------------------------- bus events */

static void on_bus_connected(void *arg, bool reconnected)
{
	struct ca_agent *a = arg;
	ca_log(CA_LOG_INFO, "agent", reconnected ? "NATS connection restored" : "connected to NATS", NULL);
	if (cluster_known(a) && !a->stopping)
		send_registration(a);
	if (a->events)
		ca_events_flush(a->events);
	ca_metrics_flush(a->metrics);
	ca_exec_flush(a->exec);
}

/* The bus refused something as full and has room again: what the
 * modules kept goes out now rather than with the next event. */
static void on_bus_room(void *arg)
{
	struct ca_agent *a = arg;
	if (a->stopping)
		return;
	if (a->events)
		ca_events_flush(a->events);
	ca_metrics_flush(a->metrics);
	ca_exec_flush(a->exec);
}

static void on_bus_disconnected(void *arg)
{
	struct ca_agent *a = arg;
	set_last_error(a, "disconnected from NATS");
}

static void on_bus_message(void *arg, const struct ca_bus_msg *msg)
{
	struct ca_agent *a = arg;
	if (a->stopping)
		return;
	if (a->exec && strcmp(msg->subject, a->subject_command) == 0) {
		struct ca_exec_msg m = { .data = msg->data, .len = msg->len, .content_type = msg->content_type,
			                 .reply = msg->reply };
		ca_exec_submit(a->exec, &m);
	}
}

/* ------------------------------------------------------------ http handlers */

static int handle_live(void *arg, struct ca_buf *body)
{
	struct ca_agent *a = arg;
	/* This handler runs on the loop thread, so answering at all proves the
	 * loop turns; a stuck loop makes the probe time out. What remains is a
	 * module that only a restart can help (a stuck watch, NATS closed for
	 * good). */
	struct ca_buf why;
	bool ready, live;
	ca_buf_init(&why, 8192);
	modules_health(a, &ready, &live, NULL, &why);
	if (live) {
		ca_buf_append_str(body, "{\"status\":\"ok\"}");
	} else {
		ca_buf_append_str(body, "{\"status\":\"failed\",\"reason\":");
		ca_buf_append_json_string(body, why.data);
		ca_buf_append_str(body, "}");
	}
	ca_buf_fini(&why);
	return live ? 200 : 503;
}

static int handle_ready(void *arg, struct ca_buf *body)
{
	struct ca_agent *a = arg;
	struct ca_buf why;
	bool ready, live;
	ca_buf_init(&why, 8192);
	modules_health(a, &ready, &live, &why, NULL);
	if (ready) {
		ca_buf_append_str(body, "{\"status\":\"ok\"}");
	} else {
		ca_buf_append_str(body, "{\"status\":\"not ready\",\"reason\":");
		ca_buf_append_json_string(body, why.data);
		ca_buf_append_str(body, "}");
	}
	ca_buf_fini(&why);
	return ready ? 200 : 503;
}

static int handle_health(void *arg, struct ca_buf *body)
{
	struct ca_agent *a = arg;
	struct ca_buf why, why_live;
	bool ready, live;
	ca_buf_init(&why, 8192);
	ca_buf_init(&why_live, 8192);
	modules_health(a, &ready, &live, &why, &why_live);
	ca_buf_printf(body, "{\"status\":\"%s\",\"ready\":%s,\"live\":%s,\"reason\":",
	              ready && live ? "ok" : "degraded", ready ? "true" : "false", live ? "true" : "false");
	ca_buf_append_json_string(body, why.len ? why.data : "");
	ca_buf_append_str(body, ",\"live_reason\":");
	ca_buf_append_json_string(body, why_live.len ? why_live.data : "");
	ca_buf_append_str(body, ",\"agent_id\":");
	ca_buf_append_json_string(body, a->agent_id);
	ca_buf_append_str(body, ",\"cluster_id\":");
	ca_buf_append_json_string(body, a->cluster_id);
	ca_buf_append_str(body, ",\"cluster_source\":");
	ca_buf_append_json_string(body, a->cluster_source);
	ca_buf_printf(body, ",\"version\":\"%s\",\"uptime_seconds\":%" PRId64
	              ",\"loop_last_turn_ms_ago\":%" PRId64 ",\"registrations\":%" PRIu64
	              ",\"heartbeats\":%" PRIu64 ",\"memory_budget_bytes\":%" PRIu64 ",\"last_error\":",
	              CA_VERSION, (ca_now_monotonic_ms() - a->started_mono_ms) / 1000,
	              ca_now_monotonic_ms() - ca_loop_last_turn_ms(a->loop), a->registrations, a->heartbeats,
	              a->budget_bytes);
	ca_buf_append_json_string(body, a->last_error);
	for (size_t i = 0; i < MOD_COUNT; i++) {
		const struct module_slot *m = &a->modules[i];
		if (!m->ops)
			continue;
		ca_buf_printf(body, ",\"%s\":", m->ops->name);
		if (m->self && m->ops->health_json) {
			m->ops->health_json(m->self, body);
		} else {
			ca_buf_printf(body, "{\"enabled\":%s,\"running\":false,\"error\":",
			              m->wanted ? "true" : "false");
			ca_buf_append_json_string(body, m->error);
			ca_buf_append_str(body, "}");
		}
	}
	ca_buf_append_str(body, "}");
	ca_buf_fini(&why);
	ca_buf_fini(&why_live);
	return ready && live ? 200 : 503;
}

static void handle_metrics(void *arg, struct ca_buf *body)
{
	struct ca_agent *a = arg;
	struct ca_prom p;
	ca_prom_init(&p, body, a->cluster_id);
	ca_prom_set_carry(&p, a->carry);

	ca_prom_family(&p, "agent_info", "gauge", "Agent build and identity; always 1.");
	ca_prom_sample_labels(&p, "agent_info", 1, "version", CA_VERSION, "git_sha", CA_GIT_SHA,
	                      "agent_id", a->agent_id, "encoding",
	                      a->format == CA_CODEC_PROTOBUF ? "protobuf" : "json", (const char *)NULL);
	ca_prom_single(&p, "agent_running", "gauge", "1 while the agent runs, 0 while it shuts down.",
	               a->stopping ? 0 : 1);
	ca_prom_single(&p, "agent_uptime_seconds", "gauge", "Seconds since the agent started.",
	               (double)(ca_now_monotonic_ms() - a->started_mono_ms) / 1000.0);
	ca_prom_single(&p, "agent_registrations_total", "counter", "AgentInfo messages published.", (double)a->registrations);
	ca_prom_single(&p, "agent_heartbeats_total", "counter", "Heartbeats published.", (double)a->heartbeats);
	for (size_t i = 0; i < MOD_COUNT; i++) {
		const struct module_slot *m = &a->modules[i];
		if (m->ops && m->ops->render_metrics)
			m->ops->render_metrics(m->self, &p);
	}
	ca_process_render_metrics(&p);
}

/* ---------------------------------------------------------------- signals */

static void on_released(void *arg)
{
	struct ca_agent *a = arg;
	ca_loop_stop(a->loop);
}

static void begin_shutdown(struct ca_agent *a, const char *why)
{
	if (a->stopping)
		return;
	a->stopping = true;
	ca_log(CA_LOG_INFO, "agent", "shutting down", "reason", why, NULL);
	ca_loop_timer_stop(a->heartbeat_timer);
	/* Running commands are killed and answered before the bus flushes. */
	ca_exec_free(a->exec);
	a->exec = NULL;
	a->modules[MOD_EXEC].self = NULL;
	if (a->ha) {
		/* The last resume point goes with the release, and nothing is
		 * published once a standby may lead. */
		if (ca_ha_leading(a->ha))
			write_checkpoint(a);
		stop_leader_modules(a);
	}
	if (cluster_known(a) && ca_bus_connected(a->bus))
		send_heartbeat(a, "stopping");
	ca_bus_close(a->bus); /* flushes, bounded by nats.flush_timeout */
	if (a->ha)
		ca_ha_release(a->ha, on_released, a); /* a standby takes over at once */
	else
		ca_loop_stop(a->loop);
}

static void on_signal(void *arg, int fd, int events)
{
	struct ca_agent *a = arg;
	struct signalfd_siginfo si;
	(void)events;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
			begin_shutdown(a, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
	}
}

/* ---------------------------------------------------------------- lifecycle */

enum ca_err ca_agent_new(struct ca_agent **out, const struct ca_config *cfg,
                         const struct ca_config_flags *flags, char *err, size_t errlen)
{
	enum ca_err rc = CA_ENOMEM;
	/* Refuse what cannot fit in the container (a pod's memory limit):
	 * better a clear exit than an OOM kill under load. */
	if ((rc = check_budget(cfg, ca_budget_cgroup_limit(), err, errlen)) != CA_OK ||
	    (rc = check_fds(cfg, true, err, errlen)) != CA_OK)
		return rc;
	rc = CA_ENOMEM;
	struct ca_agent *a = calloc(1, sizeof *a);
	if (!a) {
		snprintf(err, errlen, "out of memory");
		return CA_ENOMEM;
	}
	a->cfg = cfg;
	a->flags = flags;
	a->signal_fd = -1;
	a->started_unix_ms = ca_now_unix_ms();
	a->started_mono_ms = ca_now_monotonic_ms();
	a->format = cfg->nats.encoding == CA_ENCODING_PROTOBUF ? CA_CODEC_PROTOBUF : CA_CODEC_JSON;
	a->node_name = getenv("NODE_NAME");
	a->pod_name = getenv("POD_NAME");
	a->pod_namespace = getenv("POD_NAMESPACE");
	if (gethostname(a->hostname, sizeof a->hostname) != 0)
		ca_strlcpy(a->hostname, "unknown", sizeof a->hostname);
	a->hostname[sizeof a->hostname - 1] = '\0';
	ca_strlcpy(a->agent_id, a->pod_name && *a->pod_name ? a->pod_name : a->hostname, sizeof a->agent_id);

	/* Block the shutdown signals before any thread exists, so nats.c's
	 * threads inherit the mask and only the signalfd sees them. */
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (pthread_sigmask(SIG_BLOCK, &mask, NULL) != 0) {
		snprintf(err, errlen, "cannot block signals");
		rc = CA_EIO;
		goto fail;
	}
	signal(SIGPIPE, SIG_IGN);
	a->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (a->signal_fd < 0) {
		snprintf(err, errlen, "signalfd: %s", strerror(errno));
		rc = CA_EIO;
		goto fail;
	}

	if ((rc = ca_loop_new(&a->loop)) != CA_OK) {
		snprintf(err, errlen, "cannot create the event loop: %s", ca_strerror(rc));
		goto fail;
	}
	if ((rc = ca_loop_fd_add(a->loop, a->signal_fd, CA_LOOP_READ, on_signal, a, &a->signal_watch)) != CA_OK ||
	    (rc = ca_loop_timer_new(a->loop, on_heartbeat_timer, a, &a->heartbeat_timer)) != CA_OK) {
		snprintf(err, errlen, "event loop set-up failed: %s", ca_strerror(rc));
		goto fail;
	}

	char user_agent[64];
	snprintf(user_agent, sizeof user_agent, "collect-agent/%s", CA_VERSION);
	struct ca_kube_options kopts = {
		.kubeconfig = cfg->kubernetes.kubeconfig,
		.context = cfg->kubernetes.context,
		.request_timeout_ms = cfg->kubernetes.request_timeout_ms,
		.connect_timeout_ms = cfg->kubernetes.connect_timeout_ms,
		.user_agent = user_agent,
		.service_account_dir = cfg->kubernetes.service_account_dir,
		.allow_insecure_http = cfg->kubernetes.allow_insecure_http,
		.watches = agent_watches(cfg),
	};
	rc = ca_kube_new(&a->kube, a->loop, &kopts, a->kube_error, sizeof a->kube_error);
	bool named = cfg->kubernetes.kubeconfig && *cfg->kubernetes.kubeconfig;
	if (rc == CA_ENOTFOUND && !named) {
		/* Keep running without the API: NATS, probes and commands still
		 * work, and readiness says exactly what is missing. */
		ca_log(CA_LOG_ERROR, "kube", "no Kubernetes credentials; not ready until configured",
		       "error", a->kube_error, NULL);
	} else if (rc != CA_OK) {
		snprintf(err, errlen, "Kubernetes credentials: %s", a->kube_error);
		goto fail;
	} else {
		ca_log(CA_LOG_INFO, "kube", "API server", "server", ca_kube_server(a->kube),
		       "credentials", ca_kube_credential_source(a->kube), NULL);
	}
	if ((rc = ca_cluster_new(&a->cluster, a->loop, a->kube, cfg, flags ? flags->cluster_id : NULL,
	                         on_cluster_known, a)) != CA_OK) {
		snprintf(err, errlen, "cluster detector: %s", ca_strerror(rc));
		goto fail;
	}

	static const struct ca_http_handlers handlers = {
		.live = handle_live, .ready = handle_ready, .health = handle_health, .metrics = handle_metrics,
	};
	if ((rc = ca_http_new(&a->http, a->loop, cfg->http.listen_host, cfg->http.port, &handlers, a, err, errlen)) != CA_OK)
		goto fail;

	static const struct ca_bus_callbacks bus_callbacks = {
		.on_connected = on_bus_connected, .on_disconnected = on_bus_disconnected, .on_message = on_bus_message,
		.on_room = on_bus_room,
	};
	if ((rc = ca_bus_new(&a->bus, a->loop, cfg, &bus_callbacks, a, err, errlen)) != CA_OK)
		goto fail;

	/* The modules, in the order /health lists them. */
	a->modules[MOD_NATS] = (struct module_slot){ .ops = &ca_bus_module, .self = a->bus, .wanted = true };
	a->modules[MOD_KUBE] = (struct module_slot){ .ops = &ca_kube_module, .self = a->kube, .wanted = true };
	if (!a->kube)
		ca_set_err(a->modules[MOD_KUBE].error, sizeof a->modules[MOD_KUBE].error, "%s", a->kube_error);
	a->modules[MOD_CLUSTER] = (struct module_slot){ .ops = &ca_cluster_module, .self = a->cluster,
	                                                .wanted = true };
	a->modules[MOD_EVENTS] = (struct module_slot){ .ops = &ca_events_module, .wanted = cfg->events.enabled,
	                                               .waiting = true };
	a->modules[MOD_METRICS] = (struct module_slot){ .ops = &ca_metrics_module, .wanted = cfg->metrics.enabled,
	                                                .waiting = true };
	a->modules[MOD_EXEC] = (struct module_slot){ .ops = &ca_exec_module, .wanted = true, .waiting = true };
	a->modules[MOD_HA] = (struct module_slot){ .ops = &ca_ha_module, .wanted = cfg->ha.enabled, .waiting = true };
	if ((rc = ca_prom_carry_new(&a->carry)) != CA_OK) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	struct ca_budget budget;
	ca_budget_init(&budget);
	ca_agent_budget(cfg, &budget);
	a->budget_bytes = budget.total;
	*out = a;
	return CA_OK;
fail:
	ca_agent_free(a);
	return rc;
}

enum ca_err ca_agent_run(struct ca_agent *a)
{
	enum ca_err rc;
	ca_log(CA_LOG_INFO, "agent", "starting", "version", CA_VERSION, "git_sha", CA_GIT_SHA,
	       "agent_id", a->agent_id, NULL);
	if ((rc = ca_bus_connect(a->bus)) != CA_OK)
		return rc;
	if ((rc = ca_cluster_start(a->cluster)) != CA_OK)
		return rc;
	ca_loop_timer_start(a->heartbeat_timer, a->cfg->heartbeat.interval_ms, a->cfg->heartbeat.interval_ms);
	char port[16];
	snprintf(port, sizeof port, "%d", ca_http_port(a->http));
	ca_log(CA_LOG_INFO, "http", "serving probes and metrics", "host", a->cfg->http.listen_host, "port", port, NULL);
	rc = ca_loop_run(a->loop);
	ca_log(CA_LOG_INFO, "agent", "stopped", NULL);
	return rc;
}

void ca_agent_free(struct ca_agent *a)
{
	if (!a)
		return;
	ca_exec_free(a->exec);
	ca_events_free(a->events);
	free(a->checkpoints);
	ca_metrics_free(a->metrics);
	ca_cluster_free(a->cluster);
	ca_ha_free(a->ha); /* before the client its request belongs to */
	ca_kube_free(a->kube);
	ca_prom_carry_free(a->carry);
	ca_bus_free(a->bus);
	/* nats.c keeps library threads until told to stop; valgrind and LSan
	 * would report them otherwise. Normally over in milliseconds. */
	ca_bus_library_cleanup(4000);
	ca_http_free(a->http);
	ca_loop_timer_free(a->heartbeat_timer);
	ca_loop_fd_del(a->signal_watch);
	ca_loop_free(a->loop);
	if (a->signal_fd >= 0)
		close(a->signal_fd);
	free(a);
}
