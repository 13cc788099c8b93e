/* Fuzz target: ca_exec_policy_check on commands made from raw bytes.
 *
 * The first byte picks the policy: bit 0 clear is the default config, set
 * is the default config with namespace and resource allowlists. The rest
 * is split on NUL bytes into tool, action, namespace and args (at most
 * 64). kubectl is /proc/self/exe, so that a command can pass on any
 * machine.
 *
 * Invariants: the check never crashes; a denial says why and leaves the
 * plan empty; an accepted plan is the command's argv, and its args are
 * re-checked here, simply and independently of policy.c: no control byte,
 * no shell metacharacter, no ".." segment, no local path, no denied flag in
 * any spelling, no *-file output format, no resource naming "secret", and
 * with the allowlists no -A and only an allowed namespace. Anything else
 * aborts. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_int.h"
#include "exec/policy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ca_exec_policy *policies[2];

static struct ca_exec_policy *make_policy(const char *yaml)
{
	struct ca_config cfg;
	struct ca_exec_policy *p = NULL;
	char err[512];
	if (ca_config_init_defaults(&cfg) != CA_OK ||
	    ca_config_load_from_memory(&cfg, yaml, strlen(yaml), "fuzz", err, sizeof err) !=
	            CA_OK ||
	    ca_exec_policy_new(&cfg, &p, err, sizeof err) != CA_OK ||
	    ca_exec_policy_tool_count(p) != 1)
		abort();
	ca_config_fini(&cfg);
	return p;
}

static char lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

static bool starts(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

static bool in(const char *word, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(word, *set) == 0)
			return true;
	return false;
}

/* A long flag name, '_' read as '-' (kubectl's normalisation). */
static bool denied_long(const char *name)
{
	static const char *const prefixes[] = {"kubeconfig",
	                                       "token",
	                                       "user",
	                                       "password",
	                                       "client-",
	                                       "as",
	                                       "context",
	                                       "cluster",
	                                       "insecure",
	                                       "tls-",
	                                       "certificate-authority",
	                                       "profile",
	                                       "log-file",
	                                       "log-dir",
	                                       "exec-",
	                                       "auth-provider",
	                                       NULL};
	static const char *const exact[] = {
	        "server",   "raw",       "v",         "vmodule",          "namespace",
	        "filename", "kustomize", "cache-dir", "output-directory", NULL};
	for (const char *const *p = prefixes; *p; p++)
		if (starts(name, *p))
			return true;
	return in(name, exact);
}

static bool file_format(const char *value)
{
	char f[64];
	size_t n = 0;
	for (; value[n] && value[n] != '=' && n < sizeof f - 1; n++)
		f[n] = lower(value[n]);
	f[n] = '\0';
	return strcmp(f, "templatefile") == 0 || (n >= 5 && strcmp(f + n - 5, "-file") == 0);
}

static bool names_secret(const char *ref)
{
	/* every comma element's part before '/' */
	for (const char *e = ref;;) {
		char t[256];
		size_t n = 0;
		for (; *e && *e != ',' && *e != '/' && n < sizeof t - 1; e++)
			t[n++] = lower(*e);
		t[n] = '\0';
		if (strstr(t, "secret"))
			return true;
		e = strchr(e, ',');
		if (!e)
			return false;
		e++;
	}
}

/* What no accepted value holds. */
static bool bad_value(const char *a)
{
	for (const unsigned char *s = (const unsigned char *)a; *s; s++)
		if (*s < 0x20 || *s == 0x7f || strchr(";|&$`<>\\", *s))
			return true;
	if (a[0] == '/' || a[0] == '~' || strcmp(a, "..") == 0 || starts(a, "../") ||
	    strstr(a, "/../") || strstr(a, "=../") || strstr(a, ",../"))
		return true;
	size_t n = strlen(a);
	return n >= 3 && (strcmp(a + n - 3, "/..") == 0 || strcmp(a + n - 3, "=..") == 0);
}

/* What no accepted arg holds; --flag=VALUE also as a value. */
static bool bad_text(const char *a)
{
	const char *eq = a[0] == '-' ? strchr(a, '=') : NULL;
	return bad_value(a) || (eq && (eq[1] == '/' || eq[1] == '~'));
}

/* Re-read an accepted kubectl argv. */
static void recheck(const struct ca_exec_plan *plan, const struct ca_command *cmd, bool strict)
{
	static const char *const value_flags[] = {"output",
	                                          "selector",
	                                          "field-selector",
	                                          "label-columns",
	                                          "sort-by",
	                                          "chunk-size",
	                                          "subresource",
	                                          "template",
	                                          "container",
	                                          "tail",
	                                          "since",
	                                          "since-time",
	                                          "limit-bytes",
	                                          "max-log-requests",
	                                          "pod-running-timeout",
	                                          "for",
	                                          "types",
	                                          "api-version",
	                                          "api-group",
	                                          "verbs",
	                                          "categories",
	                                          "request-timeout",
	                                          NULL};
	const char *action = plan->argv[1];
	bool logs = strcmp(action, "logs") == 0;
	bool can_i = strcmp(action, "auth") == 0;
	size_t first = can_i ? 3 : 2; /* after "auth can-i" */
	size_t end = plan->argc - (cmd->namespace_[0] ? 1 : 0);
	size_t npos = 0;
	if (strcmp(plan->argv[0], "kubectl") != 0 || plan->argv[plan->argc] != NULL)
		abort();
	for (size_t i = first; i < end; i++) {
		const char *a = plan->argv[i];
		if (bad_text(a))
			abort();
		if (starts(a, "--")) {
			char name[128];
			size_t n = 0;
			for (const char *s = a + 2; *s && *s != '=' && n < sizeof name - 1; s++)
				name[n++] = *s == '_' ? '-' : *s;
			name[n] = '\0';
			if (n == 0 || denied_long(name) ||
			    (strict && strcmp(name, "all-namespaces") == 0))
				abort();
			const char *eq = strchr(a, '=');
			const char *value = eq ? eq + 1 : NULL;
			if (!eq && in(name, value_flags))
				value = plan->argv[++i];
			if (!value)
				continue;
			if (bad_value(value) ||
			    (strcmp(name, "output") == 0 && file_format(value)) ||
			    (strcmp(name, "for") == 0 && names_secret(value)))
				abort();
			continue;
		}
		if (a[0] == '-') {
			for (const char *s = a + 1; *s; s++) {
				if (strchr("snvk", *s) || (*s == 'f' && !logs) ||
				    (strict && *s == 'A'))
					abort();
				if (strchr("oLlc", *s)) {
					const char *value = s[1] == '=' ? s + 2
					                    : s[1]      ? s + 1
					                                : plan->argv[++i];
					if (!value || bad_value(value) ||
					    (*s == 'o' && file_format(value)))
						abort();
					break;
				}
			}
			continue;
		}
		/* a positional: which ones name resources */
		bool resource = strchr(a, '/') != NULL;
		if (npos == 0 && !logs && !can_i)
			resource = true; /* get, describe, explain: TYPE; top: node or pod */
		if (can_i && npos == 0)
			resource = false; /* the verb */
		if (can_i && npos == 1)
			resource = true;
		if (strcmp(action, "explain") == 0)
			resource = true;
		if (resource && names_secret(a))
			abort();
		npos++;
	}
	if (strict) {
		const char *ns = cmd->namespace_[0] ? cmd->namespace_ : "default";
		if (strcmp(ns, "default") != 0 && strcmp(ns, "web") != 0)
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!policies[0]) {
		policies[0] = make_policy("exec: {kubectl_path: /proc/self/exe}\n");
		policies[1] = make_policy(
		        "exec:\n  kubectl_path: /proc/self/exe\n"
		        "  allowed_namespaces: [default, web]\n"
		        "  denied_namespaces: [kube-system]\n"
		        "  allowed_resources: [pods, pod, nodes, deployments, events]\n");
	}
	if (size == 0 || size > 65536)
		return 0;
	bool strict = data[0] & 1;
	data++;
	size--;

	/* fields: tool, action, namespace, args... */
	char *copy = malloc(size + 1);
	char *fields[3 + CA_COMMAND_MAX_ARGS];
	size_t n = 0;
	if (!copy)
		return 0;
	memcpy(copy, data, size);
	copy[size] = '\0';
	for (char *s = copy; n < 3 + CA_COMMAND_MAX_ARGS;) {
		fields[n++] = s;
		char *nul = memchr(s, '\0', (size_t)(copy + size - s));
		if (!nul || nul == copy + size)
			break;
		s = nul + 1;
	}
	while (n < 3)
		fields[n++] = "";
	struct ca_command cmd = {.tool = fields[0],
	                         .action = fields[1],
	                         .namespace_ = fields[2],
	                         .args = n > 3 ? &fields[3] : NULL,
	                         .n_args = n - 3};
	struct ca_exec_plan plan;
	char why[512];
	enum ca_err rc = ca_exec_policy_check(policies[strict], &cmd, &plan, why, sizeof why);
	if (rc == CA_OK) {
		if (plan.argc != cmd.n_args + 2 + (cmd.namespace_[0] ? 1 : 0) || !plan.path ||
		    plan.path[0] != '/' || plan.kind != CA_EXEC_TOOL_KUBECTL)
			abort();
		for (size_t i = 0; i < cmd.n_args; i++)
			if (strcmp(plan.argv[2 + i], cmd.args[i]) != 0)
				abort();
		recheck(&plan, &cmd, strict);
		ca_exec_plan_fini(&plan);
	} else if (rc != CA_EDENIED || why[0] == '\0' || plan.argv || plan.path) {
		abort();
	}
	free(copy);
	return 0;
}
