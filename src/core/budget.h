/* core/budget.h: the agent's memory budget, one row per cap.
 *
 * Memory is a budget, not a set of independent caps: every buffer the
 * agent keeps has a byte cap, each module reports its caps as rows here
 * (from the configuration, before anything is allocated), and the agent
 * adds them up against the container's memory limit. --check-config prints
 * the table; docs/ARCHITECTURE.md shows it for the default configuration.
 * Plain data; any thread. */
#ifndef CA_CORE_BUDGET_H
#define CA_CORE_BUDGET_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define CA_BUDGET_ROWS 32

struct ca_budget_row {
	char what[112]; /* "events: queued events" */
	char key[64];   /* the config key that sets it, or "" for a fixed cap */
	uint64_t bytes;
};

struct ca_budget {
	struct ca_budget_row rows[CA_BUDGET_ROWS];
	size_t n;
	uint64_t total;
};

void ca_budget_init(struct ca_budget *b);
/* Add a row (what and key copied, cut to fit). Past CA_BUDGET_ROWS rows the
 * bytes still count in the total, in the last row. */
void ca_budget_add(struct ca_budget *b, const char *what, const char *key, uint64_t bytes);
/* A Markdown table: | what | key | MiB |, then the total. */
void ca_budget_render(const struct ca_budget *b, struct ca_buf *out);
/* The memory limit of the cgroup this process runs in (v2 memory.max, or
 * v1 memory.limit_in_bytes), 0 when there is none. */
uint64_t ca_budget_cgroup_limit(void);

#endif
