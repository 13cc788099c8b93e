/* agent/agent.h: wiring and lifecycle of the whole daemon.
 *
 * The agent owns the event loop and every module: it resolves the cluster
 * ID, connects the bus, registers on every (re)connect, sends heartbeats,
 * answers commands, serves the probes and /metrics, and shuts down on
 * SIGTERM/SIGINT with a last `stopping` heartbeat and a flushed connection.
 * Modules never see each other; the agent passes data between them. */
#ifndef CA_AGENT_AGENT_H
#define CA_AGENT_AGENT_H

#include <stddef.h>

#include "config/config.h"
#include "core/budget.h"
#include "core/err.h"

struct ca_agent;

/* cfg and flags are borrowed and must outlive the agent. Sets up every
 * module (no network traffic yet). On failure writes why into err. */
enum ca_err ca_agent_new(struct ca_agent **out, const struct ca_config *cfg,
                         const struct ca_config_flags *flags, char *err, size_t errlen);
/* The memory budget of an agent with configuration cfg: every module's
 * caps (core/budget.h), added up. Any thread. */
void ca_agent_budget(const struct ca_config *cfg, struct ca_budget *b);

/* --check-config: everything start-up checks, without contacting anything
 * or binding a port: the memory budget against the limit (this cgroup's,
 * else the Deployment's 128 MiB), the Kubernetes credentials, the NATS
 * options and their files, the event watcher's set-up. report (may be NULL)
 * gets the budget table. On failure err says what is wrong. Main thread,
 * before ca_agent_new(). */
enum ca_err ca_agent_check(const struct ca_config *cfg, struct ca_buf *report, char *err,
                           size_t errlen);

/* Run until SIGTERM/SIGINT; returns once shutdown is complete. */
enum ca_err ca_agent_run(struct ca_agent *agent);
void ca_agent_free(struct ca_agent *agent);

#endif
