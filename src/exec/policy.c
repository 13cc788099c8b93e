/* exec/policy.c: layers 4 and 5 of the executor (see policy.h and
 * docs/EXEC_POLICY.md).
 *
 * The kubectl part is a model of pflag, kubectl's flag parser: a command is
 * only as safe as our reading of its argv agrees with kubectl's. Where the
 * two could disagree we refuse instead of guessing (a flag value taken
 * from the next arg may not start with '-', a lone "--" or "-" is refused,
 * flags outside the allowlist are refused even when kubectl knows them). */
#include "exec/policy.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/buf.h"
#include "core/utf8.h"

/* ------------------------------------------------------------------------ */
/* The flag tables                                                          */

/* kubectl actions that have a table; K_OTHER is any other action an
 * operator allowed, which gets only the global flags below. */
enum kaction {
	K_GET,
	K_DESCRIBE,
	K_LOGS,
	K_TOP,
	K_EVENTS,
	K_EXPLAIN,
	K_API_RESOURCES,
	K_API_VERSIONS,
	K_VERSION,
	K_CLUSTER_INFO,
	K_AUTH_CAN_I,
	K_OTHER,
};

#define B(a) (1u << (a))
#define ALL_ACTIONS 0xffffu

enum fkind {
	F_BOOL,     /* pflag NoOptDefVal "true": never takes the next arg */
	F_VALUE,    /* --flag=v, --flag v, -xv, -x v, -x=v */
	F_OUTPUT,   /* a value checked against the action's output formats */
	F_RESOURCE, /* a value that names a resource (events --for TYPE/NAME) */
	F_ALLNS,    /* -A: a boolean refused while a namespace list is set */
};

struct kflag {
	const char *name;
	char shorthand;
	unsigned char kind;
	unsigned actions;
};

/* The allowlist: read-only display and selection flags, from
 * `kubectl <action> --help` of kubectl v1.32 (and `kubectl options` for
 * --request-timeout). Whether a flag takes a value must match kubectl
 * exactly: a boolean modelled as taking a value would hide the next arg,
 * a resource, from the resource checks. */
static const struct kflag allowed_flags[] = {
        {"output", 'o', F_OUTPUT,
         B(K_GET) | B(K_EVENTS) | B(K_EXPLAIN) | B(K_API_RESOURCES) | B(K_VERSION)},
        {"selector", 'l', F_VALUE, B(K_GET) | B(K_DESCRIBE) | B(K_LOGS) | B(K_TOP)},
        {"field-selector", 0, F_VALUE, B(K_GET) | B(K_TOP)},
        {"watch", 'w', F_BOOL, B(K_GET) | B(K_EVENTS)},
        {"watch-only", 0, F_BOOL, B(K_GET)},
        {"output-watch-events", 0, F_BOOL, B(K_GET)},
        {"show-labels", 0, F_BOOL, B(K_GET)},
        {"show-kind", 0, F_BOOL, B(K_GET)},
        {"label-columns", 'L', F_VALUE, B(K_GET)},
        {"sort-by", 0, F_VALUE, B(K_GET) | B(K_TOP) | B(K_API_RESOURCES)},
        {"no-headers", 0, F_BOOL,
         B(K_GET) | B(K_TOP) | B(K_EVENTS) | B(K_API_RESOURCES) | B(K_AUTH_CAN_I)},
        {"chunk-size", 0, F_VALUE, B(K_GET) | B(K_DESCRIBE) | B(K_EVENTS)},
        {"ignore-not-found", 0, F_BOOL, B(K_GET)},
        {"subresource", 0, F_VALUE, B(K_GET) | B(K_AUTH_CAN_I)},
        /* --template is a template string unless -o names a *-file format,
         * and those formats are refused on their own. */
        {"template", 0, F_VALUE, B(K_GET) | B(K_EVENTS)},
        {"all-namespaces", 'A', F_ALLNS,
         B(K_GET) | B(K_DESCRIBE) | B(K_TOP) | B(K_EVENTS) | B(K_AUTH_CAN_I)},
        {"show-managed-fields", 0, F_BOOL, B(K_GET) | B(K_EVENTS)},
        {"allow-missing-template-keys", 0, F_BOOL, B(K_GET) | B(K_EVENTS)},
        {"server-print", 0, F_BOOL, B(K_GET)},
        {"show-events", 0, F_BOOL, B(K_DESCRIBE)},
        {"container", 'c', F_VALUE, B(K_LOGS)},
        {"previous", 'p', F_BOOL, B(K_LOGS)},
        {"tail", 0, F_VALUE, B(K_LOGS)},
        {"since", 0, F_VALUE, B(K_LOGS)},
        {"since-time", 0, F_VALUE, B(K_LOGS)},
        {"timestamps", 0, F_BOOL, B(K_LOGS)},
        {"all-containers", 0, F_BOOL, B(K_LOGS)},
        {"prefix", 0, F_BOOL, B(K_LOGS)},
        {"limit-bytes", 0, F_VALUE, B(K_LOGS)},
        {"follow", 'f', F_BOOL, B(K_LOGS)}, /* logs -f is --follow, not --filename */
        {"max-log-requests", 0, F_VALUE, B(K_LOGS)},
        {"ignore-errors", 0, F_BOOL, B(K_LOGS)},
        {"pod-running-timeout", 0, F_VALUE, B(K_LOGS)},
        {"all-pods", 0, F_BOOL, B(K_LOGS)},
        {"containers", 0, F_BOOL, B(K_TOP)},
        {"sum", 0, F_BOOL, B(K_TOP)},
        {"use-protocol-buffers", 0, F_BOOL, B(K_TOP)},
        {"show-capacity", 0, F_BOOL, B(K_TOP)},
        {"for", 0, F_RESOURCE, B(K_EVENTS)},
        {"types", 0, F_VALUE, B(K_EVENTS)},
        {"recursive", 0, F_BOOL, B(K_EXPLAIN)},
        {"api-version", 0, F_VALUE, B(K_EXPLAIN)},
        {"api-group", 0, F_VALUE, B(K_API_RESOURCES)},
        {"namespaced", 0, F_BOOL, B(K_API_RESOURCES)},
        {"verbs", 0, F_VALUE, B(K_API_RESOURCES)},
        {"categories", 0, F_VALUE, B(K_API_RESOURCES)},
        {"cached", 0, F_BOOL, B(K_API_RESOURCES)},
        {"client", 0, F_BOOL, B(K_VERSION)},
        {"list", 0, F_BOOL, B(K_AUTH_CAN_I)},
        {"quiet", 'q', F_BOOL, B(K_AUTH_CAN_I)},
        /* The sandbox's wall clock bounds a command anyway; a shorter client
         * timeout only helps. */
        {"request-timeout", 0, F_VALUE, ALL_ACTIONS},
};

enum deny_why {
	D_CRED,
	D_IDENT,
	D_TARGET,
	D_TLS,
	D_FILE_READ,
	D_FILE_WRITE,
	D_RAW,
	D_VERBOSE,
	D_NAMESPACE,
};

static const char *const deny_text[] = {
        [D_CRED] = "changes credentials and is never allowed",
        [D_IDENT] = "changes identity (impersonation) and is never allowed",
        [D_TARGET] = "changes the target cluster and is never allowed",
        [D_TLS] = "weakens the server's verification and is never allowed",
        [D_FILE_READ] = "reads local files and is never allowed",
        [D_FILE_WRITE] = "writes local files and is never allowed",
        [D_RAW] = "sends a raw request to any API path and is never allowed",
        [D_VERBOSE] = "raises verbosity (request and response dumps) and is never allowed",
        [D_NAMESPACE] = "is never allowed in args: set the command's namespace field",
};

struct kdeny {
	const char *name;
	char shorthand;
	bool prefix; /* also every flag whose name starts with name */
	unsigned char why;
};

/* Checked before the allowlist so that the reason is precise whatever the
 * spelling. Prefixes catch kubectl's spellings to come (--as-uid came
 * after --as-group) and the ones pflag normalises (--as_group). */
static const struct kdeny denied_flags[] = {
        {"kubeconfig", 0, true, D_CRED},
        {"token", 0, true, D_CRED},
        {"user", 0, true, D_CRED}, /* --user, --username */
        {"password", 0, true, D_CRED},
        {"client-", 0, true,
         D_CRED}, /* --client-certificate, --client-key; not version's --client */
        {"auth-provider", 0, true, D_CRED},
        {"exec-", 0, true, D_CRED},
        {"as", 0, true, D_IDENT},         /* --as, --as-group, --as-uid */
        {"server", 's', false, D_TARGET}, /* not get's --server-print */
        {"context", 0, true, D_TARGET},
        {"cluster", 0, true, D_TARGET},
        {"certificate-authority", 0, true, D_TLS},
        {"insecure", 0, true, D_TLS}, /* and logs' --insecure-skip-tls-verify-backend */
        {"tls-", 0, true, D_TLS},
        {"filename", 'f', false, D_FILE_READ},
        {"kustomize", 'k', false, D_FILE_READ},
        {"cache-dir", 0, false, D_FILE_WRITE},
        {"log-file", 0, true, D_FILE_WRITE},
        {"log-dir", 0, true, D_FILE_WRITE},
        {"profile", 0, true, D_FILE_WRITE}, /* --profile, --profile-output */
        {"output-directory", 0, false, D_FILE_WRITE},
        {"raw", 0, false, D_RAW},
        {"v", 'v', false, D_VERBOSE},
        {"vmodule", 0, false, D_VERBOSE},
        {"namespace", 'n', false, D_NAMESPACE},
};

#define N_ELEMS(a) (sizeof(a) / sizeof((a)[0]))

struct output_format {
	const char *name;
	bool takes_value; /* jsonpath=..., custom-columns=... */
};

static const struct output_format printable_formats[] = {
        {"json", false},          {"yaml", false},
        {"name", false},          {"wide", false},
        {"go-template", true},    {"template", true},
        {"jsonpath", true},       {"jsonpath-as-json", true},
        {"custom-columns", true},
};
static const struct output_format explain_formats[] = {{"plaintext", false},
                                                       {"plaintext-openapiv2", false}};
static const struct output_format api_resources_formats[] = {{"wide", false}, {"name", false}};
static const struct output_format version_formats[] = {{"json", false}, {"yaml", false}};

/* ------------------------------------------------------------------------ */
/* The policy                                                               */

struct tool {
	char *name;
	char *path;    /* NULL: unavailable */
	char *problem; /* why it is unavailable; NULL when found */
	bool kubectl;
};

struct action {
	size_t tool; /* index into tools */
	char *action;
	char *sub; /* NULL: a two-word entry */
	char *text;
};

struct list {
	char **items;
	size_t count;
};

struct ca_exec_policy {
	struct tool *tools;
	size_t n_tools;
	struct action *actions;
	size_t n_actions;
	const char **runnable; /* borrowed from tools */
	size_t n_runnable;
	const char **action_texts; /* borrowed from actions, runnable tools only */
	size_t n_action_texts;
	struct list allowed_resources, denied_resources; /* lower case */
	struct list allowed_namespaces, denied_namespaces;
	char *problem;
};

static void list_free(struct list *l)
{
	for (size_t i = 0; i < l->count; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static enum ca_err list_copy(struct list *dst, const struct ca_strlist *src, bool lower)
{
	if (src->count == 0)
		return CA_OK;
	dst->items = calloc(src->count, sizeof *dst->items);
	if (!dst->items)
		return CA_ENOMEM;
	for (size_t i = 0; i < src->count; i++) {
		char *s = strdup(src->items[i]);
		if (!s)
			return CA_ENOMEM;
		for (char *c = s; lower && *c; c++)
			if (*c >= 'A' && *c <= 'Z')
				*c = (char)(*c - 'A' + 'a');
		dst->items[dst->count++] = s;
	}
	return CA_OK;
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A DNS-1123 label, which is what a namespace name is. */
static bool dns_label(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* How a candidate path fails; NULL when it is a regular executable file. */
static const char *unusable(const char *path, int *err_no)
{
	struct stat st;
	*err_no = 0;
	if (path[0] != '/')
		return "not an absolute path";
	if (stat(path, &st) != 0) {
		*err_no = errno;
		return errno == ENOENT || errno == ENOTDIR ? "not found" : strerror(errno);
	}
	if (!S_ISREG(st.st_mode))
		return "not a regular file";
	if (!(st.st_mode & 0111))
		return "not executable";
	return NULL;
}

/* Resolve t from its candidate paths; when none is usable, say why. */
static enum ca_err resolve_tool(struct tool *t, const char *const *candidates, size_t n)
{
	struct ca_buf b;
	bool all_missing = true;
	ca_buf_init(&b, 4096);
	for (size_t i = 0; i < n; i++) {
		int e;
		const char *bad = unusable(candidates[i], &e);
		if (!bad) {
			ca_buf_fini(&b);
			t->path = strdup(candidates[i]);
			return t->path ? CA_OK : CA_ENOMEM;
		}
		all_missing = all_missing && (e == ENOENT || e == ENOTDIR);
	}
	enum ca_err rc = ca_buf_printf(&b, "%s: %s", t->name,
	                               all_missing ? "not found at " : "no executable file at ");
	for (size_t i = 0; i < n && rc == CA_OK; i++) {
		int e;
		const char *bad = unusable(candidates[i], &e);
		rc = ca_buf_printf(&b, "%s%s", i ? " or " : "", candidates[i]);
		if (rc == CA_OK && !all_missing)
			rc = ca_buf_printf(&b, " (%s)", bad);
	}
	if (rc == CA_OK) {
		t->problem = ca_buf_take(&b, NULL);
		rc = t->problem ? CA_OK : CA_ENOMEM;
	}
	ca_buf_fini(&b);
	return rc == CA_ETOOBIG ? CA_ENOMEM : rc;
}

/* The path configured for a tool other than kubectl: "name=/path". */
static const char *tool_path_of(const struct ca_config *cfg, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < cfg->exec.tool_paths.count; i++) {
		const char *e = cfg->exec.tool_paths.items[i];
		if (strncmp(e, name, n) == 0 && e[n] == '=')
			return e + n + 1;
	}
	return NULL;
}

static enum ca_err check_config(const struct ca_config *cfg, char *err, size_t errlen)
{
	const struct ca_strlist *tp = &cfg->exec.tool_paths;
	for (size_t i = 0; i < tp->count; i++) {
		const char *eq = strchr(tp->items[i], '=');
		size_t n = eq ? (size_t)(eq - tp->items[i]) : strlen(tp->items[i]);
		for (size_t j = 0; j < i; j++)
			if (strncmp(tp->items[j], tp->items[i], n) == 0 && tp->items[j][n] == '=') {
				ca_set_err(err, errlen, "exec.tool_paths gives %.*s two paths",
				           (int)n, tp->items[i]);
				return CA_EINVAL;
			}
	}
	const struct ca_strlist *dr = &cfg->exec.denied_resources;
	for (size_t i = 0; i < dr->count; i++) {
		const char *s = dr->items[i];
		bool ok = *s != '\0';
		for (; *s && ok; s++)
			ok = is_lower_alnum(*s) || (*s >= 'A' && *s <= 'Z') || *s == '.' ||
			     *s == '-';
		if (!ok) {
			ca_set_err(err, errlen,
			           "exec.denied_resources entry \"%s\" is not a resource name "
			           "(letters, digits, '.' and '-'; an empty entry would deny "
			           "everything)",
			           dr->items[i]);
			return CA_EINVAL;
		}
	}
	const struct ca_strlist *ar = &cfg->exec.allowed_resources;
	for (size_t i = 0; i < ar->count; i++) {
		const char *s = ar->items[i];
		bool ok = *s != '\0';
		for (; *s && ok; s++)
			ok = is_lower_alnum(*s) || *s == '-';
		if (!ok && strcmp(ar->items[i], "*") != 0) {
			ca_set_err(err, errlen,
			           "exec.allowed_resources entry \"%s\" can never match: a "
			           "command's resource type is compared in lower case up to its "
			           "first '.' (e.g. deployments, not Deployments.apps)",
			           ar->items[i]);
			return CA_EINVAL;
		}
	}
	const struct ca_strlist *ns[2] = {&cfg->exec.allowed_namespaces,
	                                  &cfg->exec.denied_namespaces};
	for (size_t k = 0; k < 2; k++)
		for (size_t i = 0; i < ns[k]->count; i++)
			if (!dns_label(ns[k]->items[i])) {
				ca_set_err(err, errlen,
				           "exec.%s_namespaces entry \"%s\" is not a namespace "
				           "name (a DNS-1123 label)",
				           k ? "denied" : "allowed", ns[k]->items[i]);
				return CA_EINVAL;
			}
	return CA_OK;
}

static enum ca_err add_tools(struct ca_exec_policy *p, const struct ca_config *cfg)
{
	const struct ca_strlist *at = &cfg->exec.allowed_tools;
	if (at->count == 0)
		return CA_OK;
	p->tools = calloc(at->count, sizeof *p->tools);
	p->runnable = calloc(at->count, sizeof *p->runnable);
	if (!p->tools || !p->runnable)
		return CA_ENOMEM;
	for (size_t i = 0; i < at->count; i++) {
		const char *name = at->items[i];
		bool dup = false;
		for (size_t j = 0; j < p->n_tools && !dup; j++)
			dup = strcmp(p->tools[j].name, name) == 0;
		if (dup)
			continue;
		struct tool *t = &p->tools[p->n_tools++];
		t->name = strdup(name);
		if (!t->name)
			return CA_ENOMEM;
		t->kubectl = strcmp(name, "kubectl") == 0;
		const char *kubectl_default[] = {"/usr/bin/kubectl", "/usr/local/bin/kubectl"};
		const char *one[1];
		enum ca_err rc;
		if (t->kubectl && (!cfg->exec.kubectl_path || !cfg->exec.kubectl_path[0])) {
			rc = resolve_tool(t, kubectl_default, 2);
		} else {
			one[0] = t->kubectl ? cfg->exec.kubectl_path : tool_path_of(cfg, name);
			if (!one[0])
				one[0] = ""; /* config validation prevents it */
			rc = resolve_tool(t, one, 1);
		}
		if (rc != CA_OK)
			return rc;
		if (t->path)
			p->runnable[p->n_runnable++] = t->name;
	}
	return CA_OK;
}

static enum ca_err add_actions(struct ca_exec_policy *p, const struct ca_config *cfg)
{
	const struct ca_strlist *acts = &cfg->exec.actions;
	if (acts->count == 0)
		return CA_OK;
	p->actions = calloc(acts->count, sizeof *p->actions);
	p->action_texts = calloc(acts->count, sizeof *p->action_texts);
	if (!p->actions || !p->action_texts)
		return CA_ENOMEM;
	for (size_t i = 0; i < acts->count; i++) {
		/* config validation made it "tool action" or "tool action sub",
		 * single spaces, words without other characters. */
		const char *text = acts->items[i];
		const char *sp1 = strchr(text, ' ');
		if (!sp1)
			continue;
		const char *sp2 = strchr(sp1 + 1, ' ');
		size_t tool = p->n_tools;
		for (size_t j = 0; j < p->n_tools; j++)
			if (strlen(p->tools[j].name) == (size_t)(sp1 - text) &&
			    strncmp(p->tools[j].name, text, (size_t)(sp1 - text)) == 0)
				tool = j;
		if (tool == p->n_tools)
			continue;
		bool dup = false;
		for (size_t j = 0; j < p->n_actions && !dup; j++)
			dup = strcmp(p->actions[j].text, text) == 0;
		if (dup)
			continue;
		struct action *a = &p->actions[p->n_actions++];
		a->tool = tool;
		a->text = strdup(text);
		a->action = sp2 ? strndup(sp1 + 1, (size_t)(sp2 - sp1 - 1)) : strdup(sp1 + 1);
		a->sub = sp2 ? strdup(sp2 + 1) : NULL;
		if (!a->text || !a->action || (sp2 && !a->sub))
			return CA_ENOMEM;
		if (p->tools[tool].path)
			p->action_texts[p->n_action_texts++] = a->text;
	}
	return CA_OK;
}

static enum ca_err join_problems(struct ca_exec_policy *p)
{
	struct ca_buf b;
	enum ca_err rc = CA_OK;
	ca_buf_init(&b, 0);
	for (size_t i = 0; i < p->n_tools && rc == CA_OK; i++)
		if (p->tools[i].problem)
			rc = ca_buf_printf(&b, "%s%s", b.len ? "; " : "", p->tools[i].problem);
	if (rc == CA_OK) {
		p->problem = ca_buf_take(&b, NULL);
		rc = p->problem ? CA_OK : CA_ENOMEM;
	}
	ca_buf_fini(&b);
	return rc == CA_OK ? CA_OK : CA_ENOMEM;
}

enum ca_err ca_exec_policy_new(const struct ca_config *cfg, struct ca_exec_policy **out, char *err,
                               size_t errlen)
{
	struct ca_exec_policy *p = NULL;
	enum ca_err rc = CA_EINVAL;
	*out = NULL;
	if (!cfg) {
		ca_set_err(err, errlen, "no config");
		goto out;
	}
	rc = check_config(cfg, err, errlen);
	if (rc != CA_OK)
		goto out;
	rc = CA_ENOMEM;
	p = calloc(1, sizeof *p);
	if (!p)
		goto out;
	if (list_copy(&p->allowed_resources, &cfg->exec.allowed_resources, true) != CA_OK ||
	    list_copy(&p->denied_resources, &cfg->exec.denied_resources, true) != CA_OK ||
	    list_copy(&p->allowed_namespaces, &cfg->exec.allowed_namespaces, false) != CA_OK ||
	    list_copy(&p->denied_namespaces, &cfg->exec.denied_namespaces, false) != CA_OK)
		goto out;
	if (add_tools(p, cfg) != CA_OK || add_actions(p, cfg) != CA_OK || join_problems(p) != CA_OK)
		goto out;
	*out = p;
	p = NULL;
	rc = CA_OK;
out:
	if (rc == CA_ENOMEM)
		ca_set_err(err, errlen, "out of memory");
	ca_exec_policy_free(p);
	return rc;
}

void ca_exec_policy_free(struct ca_exec_policy *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n_tools; i++) {
		free(p->tools[i].name);
		free(p->tools[i].path);
		free(p->tools[i].problem);
	}
	free(p->tools);
	for (size_t i = 0; i < p->n_actions; i++) {
		free(p->actions[i].action);
		free(p->actions[i].sub);
		free(p->actions[i].text);
	}
	free(p->actions);
	free(p->runnable);
	free(p->action_texts);
	list_free(&p->allowed_resources);
	list_free(&p->denied_resources);
	list_free(&p->allowed_namespaces);
	list_free(&p->denied_namespaces);
	free(p->problem);
	free(p);
}

size_t ca_exec_policy_tool_count(const struct ca_exec_policy *p)
{
	return p ? p->n_runnable : 0;
}

const char *ca_exec_policy_tool(const struct ca_exec_policy *p, size_t i)
{
	return p && i < p->n_runnable ? p->runnable[i] : NULL;
}

size_t ca_exec_policy_action_count(const struct ca_exec_policy *p)
{
	return p ? p->n_action_texts : 0;
}

const char *ca_exec_policy_action(const struct ca_exec_policy *p, size_t i)
{
	return p && i < p->n_action_texts ? p->action_texts[i] : NULL;
}

const char *ca_exec_policy_problem(const struct ca_exec_policy *p)
{
	return p && p->problem ? p->problem : "";
}

void ca_exec_plan_fini(struct ca_exec_plan *plan)
{
	if (!plan)
		return;
	for (size_t i = 0; plan->argv && i < plan->argc; i++)
		free(plan->argv[i]);
	free(plan->argv);
	free(plan->tool);
	free(plan->action);
	free(plan->path);
	memset(plan, 0, sizeof *plan);
}

/* ------------------------------------------------------------------------ */
/* Reasons                                                                  */

/* Command text for a reason: printable ASCII as is, '"' and '\' escaped,
 * anything else as \xNN, at most 64 bytes of s and then "...". Returns
 * buf, which should hold 4 * 64 + 4 bytes. */
#define QUOTE_MAX 64
#define QUOTE_BUF (4 * QUOTE_MAX + 4)
static const char *quote(char *buf, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c == '"' || c == '\\') {
			buf[o++] = '\\';
			buf[o++] = (char)c;
		} else if (c >= 0x20 && c < 0x7f) {
			buf[o++] = (char)c;
		} else {
			buf[o++] = '\\';
			buf[o++] = 'x';
			buf[o++] = hex[c >> 4];
			buf[o++] = hex[c & 15];
		}
	}
	if (n > QUOTE_MAX) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

static const char *quote_str(char *buf, const char *s)
{
	return quote(buf, s, strlen(s));
}

/* ------------------------------------------------------------------------ */
/* Rules for every tool                                                     */

static uint32_t decode_utf8(const unsigned char *s, size_t n)
{
	static const unsigned char mask[] = {0, 0x7f, 0x1f, 0x0f, 0x07};
	uint32_t cp = s[0] & mask[n];
	for (size_t i = 1; i < n; i++)
		cp = (cp << 6) | (s[i] & 0x3f);
	return cp;
}

/* Empty, not UTF-8, control characters, shell metacharacters. */
static bool check_arg_text(size_t i, const char *arg, char *why, size_t whylen)
{
	const unsigned char *s = (const unsigned char *)arg;
	size_t len = strlen(arg);
	if (len == 0) {
		ca_set_err(why, whylen, "args[%zu] is empty", i);
		return false;
	}
	for (size_t k = 0; k < len;) {
		unsigned c = s[k];
		if (c < 0x20 || c == 0x7f) {
			ca_set_err(why, whylen, "args[%zu] holds a control byte 0x%02x", i, c);
			return false;
		}
		if (c >= 0x80) {
			size_t n = ca_utf8_seq(s + k, len - k);
			if (n == 0) {
				ca_set_err(why, whylen, "args[%zu] is not valid UTF-8", i);
				return false;
			}
			uint32_t cp = decode_utf8(s + k, n);
			if ((cp >= 0x80 && cp <= 0x9f) || cp == 0x2028 || cp == 0x2029) {
				ca_set_err(why, whylen,
				           "args[%zu] holds a control character U+%04X", i,
				           (unsigned)cp);
				return false;
			}
			/* Trojan Source: text that displays in another order than
			 * kubectl reads it, in an audit line or a review. */
			if (cp == 0x061c || cp == 0x200e || cp == 0x200f ||
			    (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069)) {
				ca_set_err(
				        why, whylen,
				        "args[%zu] holds a bidirectional control character U+%04X",
				        i, (unsigned)cp);
				return false;
			}
			k += n;
			continue;
		}
		if (strchr(";|&$`<>\\", (int)c)) {
			ca_set_err(why, whylen,
			           "args[%zu] holds the shell metacharacter '%s': no shell ever "
			           "runs a command, so it can only be an injection attempt",
			           i, c == '\\' ? "\\\\" : (const char[]){(char)c, '\0'});
			return false;
		}
		k++;
	}
	return true;
}

/* A ".." path segment: between start, '/', '=' or ',' and end, '/' or ','.
 * "..." and jsonpath's recursive descent "{..name}" are not segments. */
static bool has_dotdot(const char *s)
{
	for (const char *p = s; (p = strstr(p, "..")) != NULL; p++) {
		bool start = p == s || p[-1] == '/' || p[-1] == '=' || p[-1] == ',';
		bool end = p[2] == '\0' || p[2] == '/' || p[2] == ',';
		if (start && end)
			return true;
	}
	return false;
}

static bool local_path(const char *s)
{
	return s[0] == '/' || s[0] == '~';
}

static bool deny_dotdot(size_t i, char *why, size_t whylen)
{
	ca_set_err(why, whylen, "args[%zu] holds a \"..\" path segment (path traversal)", i);
	return false;
}

static bool deny_local(size_t i, const char *path, char *why, size_t whylen)
{
	char q[QUOTE_BUF];
	ca_set_err(
	        why, whylen,
	        "args[%zu] names a local path \"%s\": paths starting with / or ~ are never allowed",
	        i, quote_str(q, path));
	return false;
}

/* The path rules for a tool whose flags we do not model. */
static bool check_arg_paths(size_t i, const char *arg, char *why, size_t whylen)
{
	if (has_dotdot(arg))
		return deny_dotdot(i, why, whylen);
	if (local_path(arg))
		return deny_local(i, arg, why, whylen);
	const char *eq = arg[0] == '-' ? strchr(arg, '=') : NULL;
	if (eq && local_path(eq + 1))
		return deny_local(i, eq + 1, why, whylen);
	return true;
}

static bool in_list(const struct list *l, const char *s, size_t n)
{
	for (size_t i = 0; i < l->count; i++)
		if (strlen(l->items[i]) == n && memcmp(l->items[i], s, n) == 0)
			return true;
	return false;
}

static bool check_namespace(const struct ca_exec_policy *p, const char *ns, char *why,
                            size_t whylen)
{
	char q[QUOTE_BUF];
	if (ns[0] && !dns_label(ns)) {
		ca_set_err(why, whylen,
		           "namespace \"%s\" is not a namespace name (a DNS-1123 label: at most 63 "
		           "lowercase letters, digits and '-', starting and ending with a letter "
		           "or digit)",
		           quote_str(q, ns));
		return false;
	}
	/* No namespace: kubectl uses the kubeconfig's, and the one the
	 * executor writes names none, so kubectl's "default". */
	const char *eff = ns[0] ? ns : "default";
	const char *note = ns[0] ? "" : " (kubectl's default when the command names none)";
	if (in_list(&p->denied_namespaces, eff, strlen(eff))) {
		ca_set_err(why, whylen, "namespace \"%s\"%s is denied (exec.denied_namespaces)",
		           eff, note);
		return false;
	}
	if (p->allowed_namespaces.count && !in_list(&p->allowed_namespaces, eff, strlen(eff))) {
		ca_set_err(why, whylen, "namespace \"%s\"%s is not in exec.allowed_namespaces", eff,
		           note);
		return false;
	}
	return true;
}

/* ------------------------------------------------------------------------ */
/* kubectl                                                                  */

struct kctx {
	const struct ca_exec_policy *p;
	const struct ca_command *cmd;
	enum kaction act;
	char act_name[160]; /* "get", "auth can-i": for reasons */
	size_t first;       /* index of the first arg after the subaction */
	size_t *pos;        /* indices of positional args */
	size_t n_pos;
	char *why;
	size_t whylen;
};

static enum kaction kaction_of(const char *action, const char *sub)
{
	static const struct {
		const char *action, *sub;
		enum kaction act;
	} map[] = {
	        {"get", NULL, K_GET},
	        {"describe", NULL, K_DESCRIBE},
	        {"logs", NULL, K_LOGS},
	        {"top", NULL, K_TOP},
	        {"events", NULL, K_EVENTS},
	        {"explain", NULL, K_EXPLAIN},
	        {"api-resources", NULL, K_API_RESOURCES},
	        {"api-versions", NULL, K_API_VERSIONS},
	        {"version", NULL, K_VERSION},
	        {"cluster-info", NULL, K_CLUSTER_INFO},
	        {"auth", "can-i", K_AUTH_CAN_I},
	};
	for (size_t i = 0; i < N_ELEMS(map); i++)
		if (strcmp(map[i].action, action) == 0 &&
		    (map[i].sub ? sub && strcmp(map[i].sub, sub) == 0 : !sub))
			return map[i].act;
	return K_OTHER;
}

/* A resource type: the part of a reference before '/' (TYPE/NAME), one
 * element of a comma list. star_ok: "*" alone (auth can-i). */
static bool check_type(struct kctx *c, size_t i, const char *tok, size_t n, bool star_ok)
{
	const struct ca_exec_policy *p = c->p;
	char lower[256], q[QUOTE_BUF];
	if (n == 0) {
		ca_set_err(c->why, c->whylen, "args[%zu] names an empty resource type", i);
		return false;
	}
	if (n >= sizeof lower) {
		ca_set_err(c->why, c->whylen,
		           "args[%zu] names a resource type longer than %zu bytes", i,
		           sizeof lower - 1);
		return false;
	}
	for (size_t k = 0; k < n; k++)
		lower[k] = tok[k] >= 'A' && tok[k] <= 'Z' ? (char)(tok[k] - 'A' + 'a') : tok[k];
	lower[n] = '\0';
	for (size_t d = 0; d < p->denied_resources.count; d++)
		if (strstr(lower, p->denied_resources.items[d])) {
			ca_set_err(c->why, c->whylen,
			           "resource \"%s\" is denied (exec.denied_resources: %s)",
			           quote(q, tok, n), p->denied_resources.items[d]);
			return false;
		}
	bool star = star_ok && n == 1 && tok[0] == '*';
	for (size_t k = 0; k < n && !star; k++)
		if (!is_lower_alnum(lower[k]) && lower[k] != '.' && lower[k] != '-') {
			ca_set_err(c->why, c->whylen,
			           "resource type \"%s\" in args[%zu] holds a character other than "
			           "letters, digits, '.' and '-'",
			           quote(q, tok, n), i);
			return false;
		}
	if (p->allowed_resources.count) {
		size_t base = 0;
		while (base < n && lower[base] != '.')
			base++;
		if (!in_list(&p->allowed_resources, lower, base)) {
			ca_set_err(c->why, c->whylen,
			           "resource \"%s\" is not in exec.allowed_resources",
			           quote(q, tok, n));
			return false;
		}
	}
	return true;
}

/* A reference: TYPE, TYPE/NAME, TYPE1,TYPE2, TYPE.group... Every comma
 * element's part before '/' is a type (kubectl's own reading of
 * "a/x,b/y" differs by version; checking each element is the safe one). */
static bool check_reference(struct kctx *c, size_t i, const char *tok, bool star_ok)
{
	for (const char *e = tok;;) {
		const char *comma = strchr(e, ',');
		size_t n = comma ? (size_t)(comma - e) : strlen(e);
		const char *slash = memchr(e, '/', n);
		if (!check_type(c, i, e, slash ? (size_t)(slash - e) : n, star_ok))
			return false;
		if (!comma)
			return true;
		e = comma + 1;
	}
}

static const struct kflag *find_allowed_long(enum kaction act, const char *name)
{
	for (size_t i = 0; i < N_ELEMS(allowed_flags); i++)
		if ((allowed_flags[i].actions & B(act)) && strcmp(allowed_flags[i].name, name) == 0)
			return &allowed_flags[i];
	return NULL;
}

static const struct kflag *find_allowed_short(enum kaction act, char s)
{
	for (size_t i = 0; i < N_ELEMS(allowed_flags); i++)
		if ((allowed_flags[i].actions & B(act)) && allowed_flags[i].shorthand == s)
			return &allowed_flags[i];
	return NULL;
}

static const struct kdeny *find_denied_long(const char *name)
{
	for (size_t i = 0; i < N_ELEMS(denied_flags); i++) {
		const struct kdeny *d = &denied_flags[i];
		if (d->prefix ? strncmp(name, d->name, strlen(d->name)) == 0
		              : strcmp(name, d->name) == 0)
			return d;
	}
	return NULL;
}

static const struct kdeny *find_denied_short(char s)
{
	for (size_t i = 0; i < N_ELEMS(denied_flags); i++)
		if (denied_flags[i].shorthand == s)
			return &denied_flags[i];
	return NULL;
}

static bool check_output(struct kctx *c, const char *value)
{
	const struct output_format *set;
	size_t n;
	char q[QUOTE_BUF], lower[40];
	switch (c->act) {
	case K_EXPLAIN:
		set = explain_formats;
		n = N_ELEMS(explain_formats);
		break;
	case K_API_RESOURCES:
		set = api_resources_formats;
		n = N_ELEMS(api_resources_formats);
		break;
	case K_VERSION:
		set = version_formats;
		n = N_ELEMS(version_formats);
		break;
	default:
		set = printable_formats;
		n = N_ELEMS(printable_formats);
		break;
	}
	const char *eq = strchr(value, '=');
	size_t len = eq ? (size_t)(eq - value) : strlen(value);
	size_t k = 0;
	for (; k < len && k < sizeof lower - 1; k++)
		lower[k] = value[k] >= 'A' && value[k] <= 'Z' ? (char)(value[k] - 'A' + 'a')
		                                              : value[k];
	lower[k] = '\0';
	/* kubectl reads a template, a jsonpath or columns from a file in
	 * these forms; lower case because some printers fold case. */
	if (len < sizeof lower - 1 && ((k >= 5 && strcmp(lower + k - 5, "-file") == 0) ||
	                               strcmp(lower, "templatefile") == 0)) {
		ca_set_err(c->why, c->whylen,
		           "output format \"%s\" reads a local file and is never allowed",
		           quote(q, value, len));
		return false;
	}
	for (size_t i = 0; i < n && len < sizeof lower - 1; i++)
		if (strcmp(set[i].name, lower) == 0 && (!eq || set[i].takes_value))
			return true;
	struct ca_buf b;
	ca_buf_init(&b, 1024);
	for (size_t i = 0; i < n; i++)
		if (ca_buf_printf(&b, "%s%s", i ? ", " : "", set[i].name) != CA_OK)
			break;
	ca_set_err(c->why, c->whylen,
	           "output format \"%s\" is not allowed for kubectl %s (one of: %s)",
	           quote(q, value, strlen(value)), c->act_name, b.data ? b.data : "");
	ca_buf_fini(&b);
	return false;
}

static bool deny_flag(struct kctx *c, const char *spelled, const char *canonical,
                      const struct kdeny *d)
{
	if (canonical)
		ca_set_err(c->why, c->whylen, "flag %s (--%s) %s", spelled, canonical,
		           deny_text[d->why]);
	else
		ca_set_err(c->why, c->whylen, "flag %s %s", spelled, deny_text[d->why]);
	return false;
}

/* Take the value of a flag from the next arg, as pflag does. *i is moved
 * past it. */
static const char *next_value(struct kctx *c, size_t *i, const char *spelled, const char *bare)
{
	const struct ca_command *cmd = c->cmd;
	if (*i + 1 >= cmd->n_args) {
		ca_set_err(c->why, c->whylen, "flag %s needs a value", spelled);
		return NULL;
	}
	const char *v = cmd->args[*i + 1];
	/* pflag would take "-x" as the value; we refuse rather than hope
	 * every reader of the argv (cobra's own sub-command search is one)
	 * agrees. */
	if (v[0] == '-') {
		ca_set_err(c->why, c->whylen,
		           "flag %s takes a value, but args[%zu] starts with '-' (write %s=VALUE)",
		           spelled, *i + 1, bare);
		return NULL;
	}
	(*i)++;
	return v;
}

/* Check the value of flag f spelled so; vi is the index of the arg that
 * holds it. has_value: the value was given (always, for value flags). */
static bool use_flag(struct kctx *c, const struct kflag *f, const char *spelled, bool has_value,
                     const char *value, size_t vi)
{
	const struct ca_exec_policy *p = c->p;
	char q[QUOTE_BUF];
	switch (f->kind) {
	case F_ALLNS:
		if (p->allowed_namespaces.count || p->denied_namespaces.count) {
			ca_set_err(c->why, c->whylen,
			           "flag %s reaches every namespace and is not allowed while "
			           "exec.allowed_namespaces or exec.denied_namespaces is set",
			           spelled);
			return false;
		}
		/* fall through */
	case F_BOOL:
		if (has_value && strcmp(value, "true") != 0 && strcmp(value, "false") != 0) {
			ca_set_err(c->why, c->whylen, "flag %s takes true or false, not \"%s\"",
			           spelled, quote_str(q, value));
			return false;
		}
		return true;
	default:
		break;
	}
	/* The value, wherever it was: "--x=../y", "-x../y", "-x ../y". */
	if (has_dotdot(value))
		return deny_dotdot(vi, c->why, c->whylen);
	if (local_path(value))
		return deny_local(vi, value, c->why, c->whylen);
	if (f->kind == F_OUTPUT)
		return check_output(c, value);
	if (f->kind == F_RESOURCE)
		return check_reference(c, vi, value, false);
	return true;
}

/* Normalise a long flag name as kubectl does ('_' is '-'); false when it
 * cannot be a flag of ours (too long). */
static bool normalise(const char *name, size_t n, char *out, size_t outlen)
{
	if (n >= outlen)
		return false;
	for (size_t k = 0; k < n; k++)
		out[k] = name[k] == '_' ? '-' : name[k];
	out[n] = '\0';
	return true;
}

static bool parse_long(struct kctx *c, size_t *i)
{
	const char *tok = c->cmd->args[*i];
	const char *name = tok + 2;
	char q[QUOTE_BUF], spelled[QUOTE_BUF + 4], norm[64];
	size_t vi = *i;
	if (name[0] == '-' || name[0] == '=') {
		ca_set_err(c->why, c->whylen, "args[%zu] \"%s\" is not a valid flag", *i,
		           quote_str(q, tok));
		return false;
	}
	const char *eq = strchr(name, '=');
	size_t n = eq ? (size_t)(eq - name) : strlen(name);
	snprintf(spelled, sizeof spelled, "--%s", quote(q, name, n));
	bool ok = normalise(name, n, norm, sizeof norm);
	const struct kdeny *d = ok ? find_denied_long(norm) : NULL;
	if (d)
		return deny_flag(c, spelled, strncmp(name, norm, n) ? norm : NULL, d);
	const struct kflag *f = ok ? find_allowed_long(c->act, norm) : NULL;
	if (!f) {
		ca_set_err(c->why, c->whylen, "flag %s is not allowed for kubectl %s", spelled,
		           c->act_name);
		return false;
	}
	const char *value = eq ? eq + 1 : NULL;
	if (!eq && f->kind != F_BOOL && f->kind != F_ALLNS) {
		value = next_value(c, i, spelled, spelled);
		if (!value)
			return false;
		vi = *i;
	}
	return use_flag(c, f, spelled, value != NULL, value, vi);
}

/* "-abc": each letter a flag, until one that takes a value takes the rest
 * ("-lapp=x", "-l=app=x") or, at the end, the next arg. */
static bool parse_short(struct kctx *c, size_t *i)
{
	const char *tok = c->cmd->args[*i];
	char q[QUOTE_BUF], spelled[QUOTE_BUF + 4];
	size_t ti = *i;
	for (size_t k = 1; tok[k]; k++) {
		char s = tok[k];
		snprintf(spelled, sizeof spelled, "-%s", quote(q, &tok[k], 1));
		const struct kflag *f = find_allowed_short(c->act, s);
		if (!f) {
			const struct kdeny *d = find_denied_short(s);
			if (d)
				return deny_flag(c, spelled, d->name, d);
			ca_set_err(c->why, c->whylen, "flag %s is not allowed for kubectl %s",
			           spelled, c->act_name);
			return false;
		}
		size_t sl = strlen(spelled);
		snprintf(spelled + sl, sizeof spelled - sl, " (--%s)", f->name);
		const char *rest = tok + k + 1;
		const char *value = NULL;
		size_t vi = ti;
		if (rest[0] == '=' && rest[1] != '\0')
			value = rest + 1; /* -x=value */
		else if (f->kind == F_BOOL || f->kind == F_ALLNS) {
			if (!use_flag(c, f, spelled, false, NULL, ti))
				return false;
			continue;
		} else if (rest[0] != '\0') {
			value = rest; /* -xvalue */
		} else {
			char bare[8];
			snprintf(bare, sizeof bare, "-%s", quote(q, &tok[k], 1));
			value = next_value(c, i, spelled, bare);
			if (!value)
				return false;
			vi = *i;
		}
		return use_flag(c, f, spelled, true, value, vi);
	}
	return true;
}

static bool deny_dump(char *why, size_t whylen)
{
	ca_set_err(
	        why, whylen,
	        "kubectl cluster-info dump writes files and dumps every log; it is never allowed");
	return false;
}

static bool positional_count(struct kctx *c, size_t max, const char *what)
{
	char q[QUOTE_BUF];
	if (c->n_pos <= max)
		return true;
	size_t i = c->pos[max];
	if (max == 0)
		ca_set_err(c->why, c->whylen,
		           "kubectl %s takes no positional argument (args[%zu] \"%s\")%s",
		           c->act_name, i, quote_str(q, c->cmd->args[i]), what);
	else
		ca_set_err(c->why, c->whylen,
		           "kubectl %s takes at most %zu positional arguments (%s); args[%zu] "
		           "\"%s\" is one more",
		           c->act_name, max, what, i, quote_str(q, c->cmd->args[i]));
	return false;
}

static bool check_positionals(struct kctx *c)
{
	const struct ca_command *cmd = c->cmd;
	char q[QUOTE_BUF];
	/* Whatever the action, TYPE/NAME names a resource; only can-i's verb
	 * comes first and is not one. Names hold no '/'. */
	for (size_t k = c->act == K_AUTH_CAN_I ? 1 : 0; k < c->n_pos; k++) {
		const char *a = cmd->args[c->pos[k]];
		if (strchr(a, '/') && !check_reference(c, c->pos[k], a, c->act == K_AUTH_CAN_I))
			return false;
	}
	switch (c->act) {
	case K_GET:
	case K_DESCRIBE:
	case K_OTHER:
		/* TYPE[,TYPE...] [NAME...] or TYPE/NAME... */
		return c->n_pos == 0 || check_reference(c, c->pos[0], cmd->args[c->pos[0]], false);
	case K_EXPLAIN:
		for (size_t k = 0; k < c->n_pos; k++)
			if (!check_reference(c, c->pos[k], cmd->args[c->pos[k]], false))
				return false;
		return true;
	case K_TOP: {
		static const char *const kinds[] = {"node", "nodes", "no", "pod", "pods", "po"};
		if (c->n_pos == 0)
			return true;
		const char *a = cmd->args[c->pos[0]];
		if (!check_type(c, c->pos[0], a, strlen(a), false))
			return false;
		bool ok = false;
		for (size_t k = 0; k < N_ELEMS(kinds) && !ok; k++)
			ok = strcmp(kinds[k], a) == 0;
		if (!ok) {
			ca_set_err(c->why, c->whylen,
			           "kubectl top takes node or pod first, not \"%s\" (args[%zu])",
			           quote_str(q, a), c->pos[0]);
			return false;
		}
		return true;
	}
	case K_LOGS:
		if (!positional_count(c, 2, "a pod or TYPE/NAME, then a container"))
			return false;
		if (c->n_pos == 0 || strchr(cmd->args[c->pos[0]], '/'))
			return true;
		/* A bare name is a pod. */
		if (c->p->allowed_resources.count &&
		    !in_list(&c->p->allowed_resources, "pods", 4) &&
		    !in_list(&c->p->allowed_resources, "pod", 3)) {
			ca_set_err(c->why, c->whylen,
			           "resource \"pods\" (kubectl logs of a pod) is not in "
			           "exec.allowed_resources");
			return false;
		}
		return true;
	case K_AUTH_CAN_I:
		/* VERB TYPE[/NAME] [NAME]; the verb is not a resource. */
		if (!positional_count(c, 3, "a verb, a resource and a name"))
			return false;
		if (c->n_pos >= 2 && !strchr(cmd->args[c->pos[1]], '/'))
			return check_reference(c, c->pos[1], cmd->args[c->pos[1]], true);
		return true;
	case K_EVENTS:
		return positional_count(c, 0, ": use --for TYPE/NAME");
	case K_CLUSTER_INFO: /* "dump" is refused as soon as it is seen */
	case K_API_RESOURCES:
	case K_API_VERSIONS:
	case K_VERSION:
		return positional_count(c, 0, "");
	}
	return true;
}

static bool check_kubectl(struct kctx *c)
{
	const struct ca_command *cmd = c->cmd;
	for (size_t i = c->first; i < cmd->n_args; i++) {
		const char *a = cmd->args[i];
		if (a[0] == '-' && a[1] == '-' && a[2] == '\0') {
			ca_set_err(c->why, c->whylen,
			           "args[%zu] is a lone \"--\", which would end flag parsing; it "
			           "is not allowed",
			           i);
			return false;
		}
		if (a[0] == '-' && a[1] == '\0') {
			ca_set_err(c->why, c->whylen,
			           "args[%zu] is a lone \"-\" (standard input); it is not allowed",
			           i);
			return false;
		}
		if (a[0] == '-') {
			size_t at = i;
			if (!(a[1] == '-' ? parse_long(c, &i) : parse_short(c, &i)))
				return false;
			/* The rule for every tool as well: kubectl's value of
			 * "-lapp=/x" is "app=/x", but nothing needs that. */
			if (!check_arg_paths(at, a, c->why, c->whylen))
				return false;
			continue;
		}
		if (has_dotdot(a))
			return deny_dotdot(i, c->why, c->whylen);
		if (local_path(a))
			return deny_local(i, a, c->why, c->whylen);
		/* Refused before any later flag, whatever that says: dump is
		 * the one sub-command of an allowed action that writes. */
		if (c->act == K_CLUSTER_INFO && strcmp(a, "dump") == 0)
			return deny_dump(c->why, c->whylen);
		c->pos[c->n_pos++] = i;
	}
	return check_positionals(c);
}

/* ------------------------------------------------------------------------ */
/* The check                                                                */

static const struct tool *find_tool(const struct ca_exec_policy *p, const char *name)
{
	for (size_t i = 0; i < p->n_tools; i++)
		if (strcmp(p->tools[i].name, name) == 0)
			return &p->tools[i];
	return NULL;
}

static const struct action *find_action(const struct ca_exec_policy *p, size_t tool,
                                        const char *action, const char *sub, bool any_sub)
{
	for (size_t i = 0; i < p->n_actions; i++) {
		const struct action *a = &p->actions[i];
		if (a->tool != tool || strcmp(a->action, action) != 0)
			continue;
		if (any_sub || (sub ? a->sub && strcmp(a->sub, sub) == 0 : !a->sub))
			return a;
	}
	return NULL;
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static enum ca_err build_plan(const struct tool *t, const struct ca_command *cmd, const char *sub,
                              struct ca_exec_plan *plan)
{
	/* tool, action, args, --namespace=, NULL */
	size_t cap = cmd->n_args + 4, n = 0;
	char **argv = calloc(cap, sizeof *argv);
	if (!argv)
		return CA_ENOMEM;
	plan->argv = argv;
	bool ok = (argv[n++] = strdup(t->name)) != NULL;
	ok = ok && (argv[n++] = strdup(cmd->action)) != NULL;
	for (size_t i = 0; ok && i < cmd->n_args; i++)
		ok = (argv[n++] = strdup(cmd->args[i])) != NULL;
	if (ok && t->kubectl && or_empty(cmd->namespace_)[0]) {
		size_t len = strlen(cmd->namespace_) + sizeof "--namespace=";
		ok = (argv[n] = malloc(len)) != NULL;
		if (ok)
			snprintf(argv[n++], len, "--namespace=%s", cmd->namespace_);
	}
	plan->argc = ok ? n : cap - 1; /* on failure fini frees every slot; NULLs are fine */
	if (!ok)
		return CA_ENOMEM;
	plan->tool = strdup(t->name);
	plan->path = strdup(t->path);
	if (sub) {
		size_t len = strlen(cmd->action) + strlen(sub) + 2;
		plan->action = malloc(len);
		if (plan->action)
			snprintf(plan->action, len, "%s %s", cmd->action, sub);
	} else {
		plan->action = strdup(cmd->action);
	}
	plan->kind = t->kubectl ? CA_EXEC_TOOL_KUBECTL : CA_EXEC_TOOL_GENERIC;
	return plan->tool && plan->path && plan->action ? CA_OK : CA_ENOMEM;
}

enum ca_err ca_exec_policy_check(const struct ca_exec_policy *p, const struct ca_command *cmd,
                                 struct ca_exec_plan *plan, char *why, size_t whylen)
{
	char q[QUOTE_BUF], q2[QUOTE_BUF];
	size_t *pos = NULL;
	enum ca_err rc = CA_EDENIED;
	memset(plan, 0, sizeof *plan);
	if (why && whylen)
		why[0] = '\0';
	const char *tool_name = or_empty(cmd->tool), *action = or_empty(cmd->action);
	const char *ns = or_empty(cmd->namespace_);

	const struct tool *t = find_tool(p, tool_name);
	if (!t) {
		struct ca_buf b;
		ca_buf_init(&b, 1024);
		for (size_t i = 0; i < p->n_tools; i++)
			if (ca_buf_printf(&b, "%s%s", i ? ", " : "", p->tools[i].name) != CA_OK)
				break;
		ca_set_err(why, whylen, "tool \"%s\" is not allowed (exec.allowed_tools: %s)",
		           quote_str(q, tool_name), b.len ? b.data : "none");
		ca_buf_fini(&b);
		goto out;
	}
	size_t ti = (size_t)(t - p->tools);
	if (!find_action(p, ti, action, NULL, true)) {
		ca_set_err(why, whylen, "action \"%s\" of %s is not allowed (exec.actions)",
		           quote_str(q, action), t->name);
		goto out;
	}
	if (cmd->n_args > CA_COMMAND_MAX_ARGS) {
		ca_set_err(why, whylen, "the command has %zu args; at most %d are allowed",
		           cmd->n_args, CA_COMMAND_MAX_ARGS);
		goto out;
	}
	for (size_t i = 0; i < cmd->n_args; i++)
		if (!check_arg_text(i, or_empty(cmd->args[i]), why, whylen))
			goto out;

	/* A three-word entry ("kubectl auth can-i") consumes args[0]. */
	const char *sub = NULL;
	if (cmd->n_args > 0 && find_action(p, ti, action, cmd->args[0], false))
		sub = cmd->args[0];
	else if (!find_action(p, ti, action, NULL, false)) {
		if (cmd->n_args > 0)
			ca_set_err(why, whylen,
			           "action \"%s %s\" of %s is not allowed (exec.actions)",
			           quote_str(q, action), quote_str(q2, cmd->args[0]), t->name);
		else
			ca_set_err(
			        why, whylen,
			        "action \"%s\" of %s needs a subaction as args[0] (exec.actions)",
			        quote_str(q, action), t->name);
		goto out;
	}
	size_t first = sub ? 1 : 0;

	if (t->kubectl) {
		if (!check_namespace(p, ns, why, whylen))
			goto out;
		rc = CA_ENOMEM;
		pos = calloc(cmd->n_args + 1, sizeof *pos);
		if (!pos)
			goto out;
		rc = CA_EDENIED;
		struct kctx c = {.p = p,
		                 .cmd = cmd,
		                 .first = first,
		                 .pos = pos,
		                 .why = why,
		                 .whylen = whylen};
		c.act = kaction_of(action, sub);
		snprintf(c.act_name, sizeof c.act_name, "%s%s%s", quote_str(q, action),
		         sub ? " " : "", sub ? quote_str(q2, sub) : "");
		if (strcmp(action, "cluster-info") == 0 && sub && strcmp(sub, "dump") == 0) {
			deny_dump(why, whylen);
			goto out;
		}
		if (!check_kubectl(&c))
			goto out;
	} else {
		if (ns[0]) {
			ca_set_err(why, whylen,
			           "namespace \"%s\" is set, but only kubectl takes a namespace "
			           "(tool \"%s\")",
			           quote_str(q, ns), t->name);
			goto out;
		}
		for (size_t i = first; i < cmd->n_args; i++)
			if (!check_arg_paths(i, cmd->args[i], why, whylen))
				goto out;
	}

	if (!t->path) {
		ca_set_err(why, whylen, "tool \"%s\" is not available (%s)", t->name, t->problem);
		goto out;
	}
	rc = build_plan(t, cmd, sub, plan);
out:
	free(pos);
	if (rc != CA_OK)
		ca_exec_plan_fini(plan);
	if (rc == CA_ENOMEM)
		ca_set_err(why, whylen, "out of memory");
	return rc;
}
