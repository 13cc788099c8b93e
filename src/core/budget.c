#include "core/budget.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/file.h"

void ca_budget_init(struct ca_budget *b)
{
	memset(b, 0, sizeof *b);
}

void ca_budget_add(struct ca_budget *b, const char *what, const char *key, uint64_t bytes)
{
	b->total += bytes;
	if (b->n == CA_BUDGET_ROWS) {
		b->rows[CA_BUDGET_ROWS - 1].bytes += bytes;
		return;
	}
	struct ca_budget_row *r = &b->rows[b->n++];
	ca_strlcpy(r->what, what ? what : "", sizeof r->what);
	ca_strlcpy(r->key, key ? key : "", sizeof r->key);
	r->bytes = bytes;
}

static double mib(uint64_t bytes)
{
	return (double)bytes / (1024.0 * 1024.0);
}

void ca_budget_render(const struct ca_budget *b, struct ca_buf *out)
{
	ca_buf_append_str(out, "| what | set by | MiB |\n|---|---|---:|\n");
	for (size_t i = 0; i < b->n; i++)
		ca_buf_printf(out, "| %s | %s | %.1f |\n", b->rows[i].what,
		              b->rows[i].key[0] ? b->rows[i].key : "fixed", mib(b->rows[i].bytes));
	ca_buf_printf(out, "| **total** | | **%.1f** |\n", mib(b->total));
}

/* The first unsigned number in a small cgroup file; 0 for "max", a
 * missing file, or v1's "no limit" (a number near 2^63). */
static uint64_t read_limit(const char *path)
{
	char *text = NULL;
	uint64_t v = 0;
	if (ca_read_file(path, 64, &text, NULL, NULL, NULL, 0) != CA_OK)
		return 0;
	char *end = NULL;
	unsigned long long n = strtoull(text, &end, 10);
	if (end != text && n > 0 && n < ((uint64_t)1 << 60))
		v = n;
	free(text);
	return v;
}

uint64_t ca_budget_cgroup_limit(void)
{
	uint64_t v = read_limit("/sys/fs/cgroup/memory.max");
	if (!v)
		v = read_limit("/sys/fs/cgroup/memory/memory.limit_in_bytes");
	return v;
}
