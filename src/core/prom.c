#include "core/prom.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ca_prom_init(struct ca_prom *p, struct ca_buf *out, const char *cluster_id)
{
	memset(p, 0, sizeof *p);
	p->out = out;
	p->cluster_id = cluster_id ? cluster_id : "";
}

struct carried {
	char *series; /* name{labels} as written */
	double value;
};

struct ca_prom_carry {
	struct carried items[CA_PROM_CARRY_MAX];
	size_t n;
};

enum ca_err ca_prom_carry_new(struct ca_prom_carry **out)
{
	*out = calloc(1, sizeof **out);
	return *out ? CA_OK : CA_ENOMEM;
}

void ca_prom_carry_free(struct ca_prom_carry *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->n; i++)
		free(c->items[i].series);
	free(c);
}

void ca_prom_init_capture(struct ca_prom *p, struct ca_buf *scratch, const char *cluster_id,
                          struct ca_prom_carry *c)
{
	ca_prom_init(p, scratch, cluster_id);
	p->carry = c;
	p->capture = true;
}

void ca_prom_set_carry(struct ca_prom *p, struct ca_prom_carry *c)
{
	p->carry = c;
}

static struct carried *carried_find(struct ca_prom_carry *c, const char *series, size_t len, bool add)
{
	for (size_t i = 0; i < c->n; i++)
		if (strlen(c->items[i].series) == len && memcmp(c->items[i].series, series, len) == 0)
			return &c->items[i];
	if (!add || c->n == CA_PROM_CARRY_MAX)
		return NULL;
	char *copy = malloc(len + 1);
	if (!copy)
		return NULL;
	memcpy(copy, series, len);
	copy[len] = '\0';
	c->items[c->n] = (struct carried){ .series = copy };
	return &c->items[c->n++];
}

/* The sample's series was just written from offset start: the value to
 * write for it. */
static double carried_value(struct ca_prom *p, size_t start, double v)
{
	if (!p->carry || !p->cumulative || p->out->len < start)
		return v;
	const char *series = p->out->data + start;
	size_t len = p->out->len - start;
	struct carried *c = carried_find(p->carry, series, len, p->capture);
	if (!c)
		return v;
	if (p->capture) {
		c->value += v;
		return v;
	}
	return v + c->value;
}

void ca_prom_family(struct ca_prom *p, const char *name, const char *type, const char *help)
{
	p->cumulative = strcmp(type, "counter") == 0 || strcmp(type, "histogram") == 0;
	ca_buf_printf(p->out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void escaped(struct ca_buf *b, const char *v)
{
	for (; *v; v++) {
		switch (*v) {
		case '\\': ca_buf_append(b, "\\\\", 2); break;
		case '"': ca_buf_append(b, "\\\"", 2); break;
		case '\n': ca_buf_append(b, "\\n", 2); break;
		default: ca_buf_append(b, v, 1);
		}
	}
}

static void value(struct ca_buf *b, double v)
{
	if (isnan(v))
		ca_buf_append_str(b, "NaN");
	else if (isinf(v))
		ca_buf_append_str(b, v > 0 ? "+Inf" : "-Inf");
	else if (fabs(v) < 9e15 && v == (double)(long long)v) /* range first: the cast is UB beyond it */
		ca_buf_printf(b, "%lld", (long long)v);
	else {
		/* Shortest of %.15g / %.17g that reads back as the same double. */
		char tmp[40];
		snprintf(tmp, sizeof tmp, "%.15g", v);
		if (strtod(tmp, NULL) != v)
			snprintf(tmp, sizeof tmp, "%.17g", v);
		ca_buf_append_str(b, tmp);
	}
}

void ca_prom_sample(struct ca_prom *p, const char *name, const char *label_name,
                    const char *label_value, double v)
{
	size_t start = p->out->len;
	ca_buf_printf(p->out, "%s{cluster_id=\"", name);
	escaped(p->out, p->cluster_id);
	ca_buf_append(p->out, "\"", 1);
	if (label_name) {
		ca_buf_printf(p->out, ",%s=\"", label_name);
		escaped(p->out, label_value ? label_value : "");
		ca_buf_append(p->out, "\"", 1);
	}
	ca_buf_append(p->out, "}", 1);
	v = carried_value(p, start, v);
	ca_buf_append(p->out, " ", 1);
	value(p->out, v);
	ca_buf_append(p->out, "\n", 1);
}

void ca_prom_sample_labels(struct ca_prom *p, const char *name, double v, ...)
{
	va_list ap;
	size_t start = p->out->len;
	ca_buf_printf(p->out, "%s{cluster_id=\"", name);
	escaped(p->out, p->cluster_id);
	ca_buf_append(p->out, "\"", 1);
	va_start(ap, v);
	const char *label;
	while ((label = va_arg(ap, const char *)) != NULL) {
		const char *lv = va_arg(ap, const char *);
		ca_buf_printf(p->out, ",%s=\"", label);
		escaped(p->out, lv ? lv : "");
		ca_buf_append(p->out, "\"", 1);
	}
	va_end(ap);
	ca_buf_append(p->out, "}", 1);
	v = carried_value(p, start, v);
	ca_buf_append(p->out, " ", 1);
	value(p->out, v);
	ca_buf_append(p->out, "\n", 1);
}

void ca_prom_single(struct ca_prom *p, const char *name, const char *type,
                    const char *help, double v)
{
	ca_prom_family(p, name, type, help);
	ca_prom_sample(p, name, NULL, NULL, v);
}

void ca_histogram_init(struct ca_histogram *h, const double *bounds, size_t nbounds)
{
	memset(h, 0, sizeof *h);
	h->bounds = bounds;
	h->nbounds = nbounds > CA_HISTOGRAM_MAX_BUCKETS ? CA_HISTOGRAM_MAX_BUCKETS : nbounds;
}

void ca_histogram_observe(struct ca_histogram *h, double v)
{
	for (size_t i = 0; i < h->nbounds; i++) {
		if (v <= h->bounds[i]) {
			h->counts[i]++;
			break;
		}
	}
	h->count++;
	h->sum += v;
}

void ca_prom_histogram(struct ca_prom *p, const char *name, const char *help,
                       const struct ca_histogram *h)
{
	char series[128];
	ca_prom_family(p, name, "histogram", help);
	snprintf(series, sizeof series, "%s_bucket", name);
	uint64_t cumulative = 0;
	for (size_t i = 0; i < h->nbounds; i++) {
		char le[32];
		cumulative += h->counts[i];
		snprintf(le, sizeof le, "%g", h->bounds[i]);
		ca_prom_sample(p, series, "le", le, (double)cumulative);
	}
	ca_prom_sample(p, series, "le", "+Inf", (double)h->count);
	snprintf(series, sizeof series, "%s_sum", name);
	ca_prom_sample(p, series, NULL, NULL, h->sum);
	snprintf(series, sizeof series, "%s_count", name);
	ca_prom_sample(p, series, NULL, NULL, (double)h->count);
}
