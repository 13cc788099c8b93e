/* events/filter.c: the include/exclude filters of the events section.
 *
 * Lists are short (a few names typed by a person), so they are scanned;
 * the regular expressions are POSIX extended, compiled once. The message
 * regexes see the message as published (after truncation). */
#include <stdio.h>
#include <string.h>

#include "events/events_int.h"

static bool in_list(const struct ca_strlist *l, const char *s)
{
	for (size_t i = 0; i < l->count; i++)
		if (strcmp(l->items[i], s) == 0)
			return true;
	return false;
}

static enum ca_err compile(regex_t *re, bool *has, const char *key, const char *pattern,
                           char *err, size_t errlen)
{
	*has = false;
	if (!pattern || !pattern[0])
		return CA_OK;
	int rc = regcomp(re, pattern, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char why[128];
		regerror(rc, re, why, sizeof why);
		snprintf(err, errlen, "events.%s: invalid regular expression \"%s\": %s "
		         "(a POSIX extended regular expression is allowed)", key, pattern, why);
		return CA_EINVAL;
	}
	*has = true;
	return CA_OK;
}

enum ca_err ca_events_filter_init(struct ca_events_filter *f, const struct ca_config *cfg,
                                  char *err, size_t errlen)
{
	enum ca_err rc;

	memset(f, 0, sizeof *f);
	f->namespaces = &cfg->events.namespaces;
	f->exclude_namespaces = &cfg->events.exclude_namespaces;
	f->types = &cfg->events.include_types;
	f->reasons = &cfg->events.include_reasons;
	f->exclude_reasons = &cfg->events.exclude_reasons;
	f->kinds = &cfg->events.include_kinds;
	f->exclude_kinds = &cfg->events.exclude_kinds;
	f->min_severity = CA_SEV_INFO;
	if (cfg->events.min_severity && cfg->events.min_severity[0] &&
	    ca_events_severity_parse(cfg->events.min_severity, &f->min_severity) != CA_OK) {
		snprintf(err, errlen, "events.min_severity: invalid value \"%s\" "
		         "(allowed: info, warning, critical)", cfg->events.min_severity);
		return CA_EINVAL;
	}
	rc = compile(&f->message_re, &f->has_message_re, "message_regex",
	             cfg->events.message_regex, err, errlen);
	if (rc != CA_OK)
		goto out;
	rc = compile(&f->exclude_message_re, &f->has_exclude_message_re, "exclude_message_regex",
	             cfg->events.exclude_message_regex, err, errlen);
out:
	if (rc != CA_OK)
		ca_events_filter_fini(f);
	return rc;
}

void ca_events_filter_fini(struct ca_events_filter *f)
{
	if (f->has_message_re)
		regfree(&f->message_re);
	if (f->has_exclude_message_re)
		regfree(&f->exclude_message_re);
	f->has_message_re = f->has_exclude_message_re = false;
}

static enum ca_event_severity severity_of(const char *s)
{
	enum ca_event_severity v = CA_SEV_INFO;
	ca_events_severity_parse(s, &v);
	return v;
}

bool ca_events_filter_match(const struct ca_events_filter *f, const struct ca_event_rec *rec)
{
	const struct ca_msg_event *m = &rec->msg;

	if (f->namespaces && f->namespaces->count && !in_list(f->namespaces, m->namespace_))
		return false;
	if (f->exclude_namespaces && in_list(f->exclude_namespaces, m->namespace_))
		return false;
	if (f->types && f->types->count && !in_list(f->types, m->type))
		return false;
	if (f->reasons && f->reasons->count && !in_list(f->reasons, m->reason))
		return false;
	if (f->exclude_reasons && in_list(f->exclude_reasons, m->reason))
		return false;
	if (f->kinds && f->kinds->count && !in_list(f->kinds, m->involved_object.kind))
		return false;
	if (f->exclude_kinds && in_list(f->exclude_kinds, m->involved_object.kind))
		return false;
	if (severity_of(m->severity) < f->min_severity)
		return false;
	if (f->has_message_re && regexec(&f->message_re, m->message, 0, NULL, 0) != 0)
		return false;
	if (f->has_exclude_message_re && regexec(&f->exclude_message_re, m->message, 0, NULL, 0) == 0)
		return false;
	return true;
}
