/* core/module.h: what the agent asks of every module.
 *
 * Each module (nats, kubernetes, cluster, events, and the metrics collector
 * and executor that follow) exports one static table of these operations.
 * The agent keeps a list of modules and combines them: /health/ready is 200
 * when every running module is ready, /health/live when every one is live,
 * /health holds each module's JSON under its name, /metrics renders each
 * module's families. A new module plugs in by adding its table to the
 * agent's list: no new logic in agent.c.
 *
 * Every operation runs on the loop thread and only reads the module's
 * state. self may be NULL (the module is not running: not enabled, waiting
 * for the cluster ID, or failed to start): health() is then not called,
 * and render_metrics() must still write the module's families (zeros), so
 * dashboards see 0 rather than "no data". */
#ifndef CA_CORE_MODULE_H
#define CA_CORE_MODULE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/prom.h"

struct ca_module_health {
	/* Doing its job now (connected, synced and streaming...). */
	bool ready;
	/* false only when a restart is what helps: a watch stuck for
	 * kubernetes.stall_timeout, a NATS connection closed for good. */
	bool live;
	/* Why not ready or not live, in words; "" when both hold. */
	char reason[384];
};

struct ca_module_ops {
	const char *name; /* its key in /health: "nats", "kubernetes", "events" */
	/* Fill out (ready and live start true, reason ""). NULL: always both. */
	void (*health)(const void *self, struct ca_module_health *out);
	/* One JSON object for /health. NULL: the module has nothing to add. */
	void (*health_json)(const void *self, struct ca_buf *out);
	/* Its Prometheus families; self may be NULL (write zeros). May be NULL. */
	void (*render_metrics)(const void *self, struct ca_prom *p);
};

#endif
