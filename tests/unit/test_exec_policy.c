/* Unit tests of exec/policy: allowed commands and the exact argv they
 * produce, every rule with its reason, config variants (namespace and
 * resource lists, a generic tool, kubectl not found), and the two shared
 * corpora tests/fixtures/exec/{hostile,allowed}_commands.json that the
 * integration test also sends to a running agent. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "config/config_int.h"
#include "exec/policy.h"
#include "check.h"

#define FIXTURES CA_SOURCE_ROOT "/tests/fixtures/exec"

static char tmp_dir[] = "/tmp/test_exec_policy.XXXXXX";
static char fake_kubectl[256], fake_tool[256], not_executable[256];

static void write_file(const char *path, mode_t mode)
{
	FILE *f = fopen(path, "w");
	if (f) {
		fputs("#!/bin/sh\nexit 0\n", f);
		fclose(f);
	}
	chmod(path, mode);
}

/* The defaults, then yaml (may be NULL), then the policy. */
static struct ca_exec_policy *policy_yaml(const char *yaml, enum ca_err want, const char *want_err)
{
	struct ca_config cfg;
	struct ca_exec_policy *p = NULL;
	char err[512] = "";
	enum ca_err rc = ca_config_init_defaults(&cfg);
	if (rc == CA_OK && yaml)
		rc = ca_config_load_from_memory(&cfg, yaml, strlen(yaml), "test.yaml", err,
		                                sizeof err);
	if (rc != CA_OK)
		fprintf(stderr, "config: %s\n%s\n", err, yaml);
	CHECK_INT(rc, CA_OK);
	if (rc == CA_OK) {
		rc = ca_exec_policy_new(&cfg, &p, err, sizeof err);
		CHECK_INT(rc, want);
		if (want_err)
			CHECK_CONTAINS(err, want_err);
		if (rc != CA_OK)
			CHECK(p == NULL);
	}
	ca_config_fini(&cfg);
	return p;
}

/* The defaults with kubectl at the fake path, plus extra exec lines. */
static struct ca_exec_policy *policy_with(const char *extra)
{
	char yaml[4096];
	snprintf(yaml, sizeof yaml, "exec:\n  kubectl_path: %s\n%s", fake_kubectl,
	         extra ? extra : "");
	return policy_yaml(yaml, CA_OK, NULL);
}

struct result {
	enum ca_err rc;
	char why[1024];
	struct ca_exec_plan plan;
};

/* Check a command given as tool, action, namespace and a NULL-ended list
 * of args. */
static void run(const struct ca_exec_policy *p, struct result *r, const char *tool,
                const char *action, const char *ns, ...)
{
	char *args[80];
	size_t n = 0;
	va_list ap;
	va_start(ap, ns);
	for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 80;)
		args[n++] = (char *)a;
	va_end(ap);
	struct ca_command cmd = {.id = "t",
	                         .cluster_id = "c",
	                         .tool = (char *)tool,
	                         .action = (char *)action,
	                         .namespace_ = (char *)ns,
	                         .issuer = "",
	                         .signature = "",
	                         .args = n ? args : NULL,
	                         .n_args = n};
	r->rc = ca_exec_policy_check(p, &cmd, &r->plan, r->why, sizeof r->why);
}

/* argv joined with '|'. */
static const char *joined(const struct ca_exec_plan *plan, char *buf, size_t len)
{
	size_t o = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < plan->argc && o < len; i++)
		o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "|" : "", plan->argv[i]);
	return buf;
}

#define DENY(p, reason, tool, action, ns, ...)                                                     \
	do {                                                                                       \
		struct result r_;                                                                  \
		run((p), &r_, (tool), (action), (ns), __VA_ARGS__, NULL);                          \
		CHECK_INT(r_.rc, CA_EDENIED);                                                      \
		CHECK_CONTAINS(r_.why, (reason));                                                  \
		CHECK(r_.plan.argv == NULL && r_.plan.argc == 0 && !r_.plan.path);                 \
		ca_exec_plan_fini(&r_.plan);                                                       \
	} while (0)

#define ALLOW(p, want_argv, tool, action, ns, ...)                                                 \
	do {                                                                                       \
		struct result r_;                                                                  \
		char buf_[2048];                                                                   \
		run((p), &r_, (tool), (action), (ns), __VA_ARGS__, NULL);                          \
		if (r_.rc != CA_OK)                                                                \
			fprintf(stderr, "   denied: %s\n", r_.why);                                \
		CHECK_INT(r_.rc, CA_OK);                                                           \
		if (r_.rc == CA_OK) {                                                              \
			CHECK_STR(joined(&r_.plan, buf_, sizeof buf_), (want_argv));               \
			CHECK(r_.plan.argv[r_.plan.argc] == NULL);                                 \
		}                                                                                  \
		ca_exec_plan_fini(&r_.plan);                                                       \
	} while (0)

/* ------------------------------------------------------------------------ */

static void test_defaults(void)
{
	struct ca_exec_policy *p = policy_with(NULL);
	CHECK_INT(ca_exec_policy_tool_count(p), 1);
	CHECK_STR(ca_exec_policy_tool(p, 0), "kubectl");
	CHECK(ca_exec_policy_tool(p, 1) == NULL);
	CHECK_INT(ca_exec_policy_action_count(p), 11);
	CHECK_STR(ca_exec_policy_action(p, 0), "kubectl get");
	CHECK_STR(ca_exec_policy_action(p, 10), "kubectl auth can-i");
	CHECK_STR(ca_exec_policy_problem(p), "");

	struct result r;
	run(p, &r, "kubectl", "get", "web", "pods", "-o", "wide", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_STR(r.why, "");
	CHECK_STR(r.plan.tool, "kubectl");
	CHECK_STR(r.plan.action, "get");
	CHECK_STR(r.plan.path, fake_kubectl);
	CHECK_INT(r.plan.kind, CA_EXEC_TOOL_KUBECTL);
	CHECK_INT(r.plan.argc, 6);
	CHECK_STR(r.plan.argv[0], "kubectl");
	CHECK_STR(r.plan.argv[5], "--namespace=web");
	CHECK(r.plan.argv[6] == NULL);
	ca_exec_plan_fini(&r.plan);
	CHECK(r.plan.argv == NULL && r.plan.tool == NULL);
	ca_exec_plan_fini(&r.plan); /* twice is fine */

	run(p, &r, "kubectl", "auth", "", "can-i", "get", "pods", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_STR(r.plan.action, "auth can-i");
	ca_exec_plan_fini(&r.plan);

	/* the argv forms */
	ALLOW(p, "kubectl|get|pods", "kubectl", "get", "", "pods");
	ALLOW(p, "kubectl|api-versions", "kubectl", "api-versions", "", NULL);
	ALLOW(p, "kubectl|logs|web-1|-c|app|--namespace=web", "kubectl", "logs", "web", "web-1",
	      "-c", "app");
	ALLOW(p, "kubectl|get|pods|-lapp=web|-L=tier", "kubectl", "get", "", "pods", "-lapp=web",
	      "-L=tier");
	ca_exec_policy_free(p);
	ca_exec_policy_free(NULL);
}

static void test_flags(void)
{
	struct ca_exec_policy *p = policy_with(NULL);
	/* pflag forms */
	ALLOW(p, "kubectl|get|pods|--selector|app=web", "kubectl", "get", "", "pods", "--selector",
	      "app=web");
	ALLOW(p, "kubectl|get|--watch|pods", "kubectl", "get", "", "--watch", "pods");
	ALLOW(p, "kubectl|get|-wA|pods", "kubectl", "get", "", "-wA", "pods");
	ALLOW(p, "kubectl|get|-Al|app=x|pods", "kubectl", "get", "", "-Al", "app=x", "pods");
	ALLOW(p, "kubectl|get|pods|--watch=false", "kubectl", "get", "", "pods", "--watch=false");
	ALLOW(p, "kubectl|get|pods|--all_namespaces", "kubectl", "get", "", "pods",
	      "--all_namespaces");
	ALLOW(p, "kubectl|logs|web|-f", "kubectl", "logs", "", "web", "-f");
	ALLOW(p, "kubectl|logs|web|--tail=-1", "kubectl", "logs", "", "web", "--tail=-1");
	ALLOW(p, "kubectl|get|pods|--request-timeout|5s", "kubectl", "get", "", "pods",
	      "--request-timeout", "5s");
	ALLOW(p, "kubectl|version|--client=true", "kubectl", "version", "", "--client=true");
	ALLOW(p, "kubectl|get|pods|-o|go-template={{.metadata.name}}", "kubectl", "get", "", "pods",
	      "-o", "go-template={{.metadata.name}}");
	ALLOW(p, "kubectl|get|pods|--template={{.kind}}", "kubectl", "get", "", "pods",
	      "--template={{.kind}}");
	ALLOW(p, "kubectl|explain|pods|-o|plaintext-openapiv2", "kubectl", "explain", "", "pods",
	      "-o", "plaintext-openapiv2");

	/* a bool does not take the next arg: "secrets" is then a resource */
	DENY(p, "resource \"secrets\" is denied", "kubectl", "get", "", "--show-labels", "secrets");
	DENY(p, "resource \"secrets\" is denied", "kubectl", "get", "", "-w", "secrets");
	/* a value flag does */
	ALLOW(p, "kubectl|get|pods|-l|secrets", "kubectl", "get", "", "pods", "-l", "secrets");
	DENY(p, "flag -l (--selector) needs a value", "kubectl", "get", "", "pods", "-l");
	DENY(p, "flag --sort-by needs a value", "kubectl", "get", "", "pods", "--sort-by");
	DENY(p, "flag --tail takes a value, but args[2] starts with '-' (write --tail=VALUE)",
	     "kubectl", "logs", "", "web", "--tail", "-1");
	DENY(p, "flag --watch takes true or false, not \"1\"", "kubectl", "get", "", "pods",
	     "--watch=1");
	DENY(p, "flag -A (--all-namespaces) takes true or false", "kubectl", "get", "", "pods",
	     "-A=yes");
	DENY(p, "flag --follow is not allowed for kubectl get", "kubectl", "get", "", "pods",
	     "--follow");
	DENY(p, "flag --containers is not allowed for kubectl get", "kubectl", "get", "", "pods",
	     "--containers");
	DENY(p, "flag -c is not allowed for kubectl get", "kubectl", "get", "", "pods", "-c", "x");
	DENY(p, "flag --list is not allowed for kubectl get", "kubectl", "get", "", "--list");
	DENY(p, "flag --show-labels is not allowed for kubectl auth can-i", "kubectl", "auth", "",
	     "can-i", "--show-labels");
	DENY(p, "flag --selector is not allowed for kubectl cluster-info", "kubectl",
	     "cluster-info", "", "--selector=x");
	DENY(p, "flag --Token is not allowed for kubectl get", "kubectl", "get", "", "--Token=x");
	DENY(p, "flag -\\xc3 is not allowed for kubectl get", "kubectl", "get", "", "-\xc3\xa9");
	DENY(p, "flag --server changes the target cluster", "kubectl", "get", "", "--server");
	DENY(p, "flag --as_uid (--as-uid) changes identity", "kubectl", "get", "", "--as_uid=0");
	DENY(p, "flag --client-key changes credentials", "kubectl", "version", "",
	     "--client-key=k");
	DENY(p, "flag --exec-command changes credentials", "kubectl", "get", "",
	     "--exec-command=x");
	DENY(p, "flag --output-directory writes local files", "kubectl", "get", "",
	     "--output-directory=x");
	DENY(p, "output format \"wide\" is not allowed for kubectl version (one of: json, yaml)",
	     "kubectl", "version", "", "-o", "wide");
	DENY(p, "output format \"json=x\" is not allowed", "kubectl", "get", "", "pods", "-o",
	     "json=x");
	DENY(p, "output format \"TemplateFile\" reads a local file", "kubectl", "get", "", "pods",
	     "-o", "TemplateFile");
	/* a long flag name is quoted and cut */
	char longflag[300];
	memset(longflag, 'a', sizeof longflag);
	memcpy(longflag, "--", 2);
	longflag[sizeof longflag - 1] = '\0';
	DENY(p, "...", "kubectl", "get", "", longflag);
	ca_exec_policy_free(p);
}

static void test_args(void)
{
	struct ca_exec_policy *p = policy_with(NULL);
	DENY(p, "args[3] holds a control byte 0x1b", "kubectl", "get", "", "pods", "-o", "wide",
	     "\x1b[2J");
	DENY(p, "args[0] holds a control byte 0x01", "kubectl", "get", "", "\x01");
	DENY(p, "args[0] is not valid UTF-8", "kubectl", "get", "", "pods\xff");
	DENY(p, "args[0] holds a control character U+0085", "kubectl", "get", "", "pods\xc2\x85");
	DENY(p, "bidirectional control character U+2066", "kubectl", "get", "", "a\xe2\x81\xa6");
	DENY(p, "shell metacharacter '\\\\'", "kubectl", "get", "", "a\\b");
	DENY(p, "no shell ever runs a command, so it can only be an injection attempt", "kubectl",
	     "get", "", "a|b");
	/* what is not a path */
	ALLOW(p, "kubectl|get|a...b", "kubectl", "get", "", "a...b");
	ALLOW(p, "kubectl|get|pods|-o|jsonpath={..name}", "kubectl", "get", "", "pods", "-o",
	      "jsonpath={..name}");
	ALLOW(p, "kubectl|get|pods|..x", "kubectl", "get", "", "pods", "..x");
	DENY(p, "path traversal", "kubectl", "get", "", "pods", "x/..");
	DENY(p, "args[1] holds a \"..\" path segment", "kubectl", "get", "", "pods", "-l../x");
	DENY(p, "args[1] holds a \"..\" path segment", "kubectl", "get", "", "pods", "-wl=..");
	DENY(p, "path traversal", "kubectl", "get", "", "pods,..");
	DENY(p, "args[1] names a local path \"~root\"", "kubectl", "get", "", "pods", "~root");
	DENY(p, "args[1] names a local path \"/x\"", "kubectl", "get", "", "pods", "-lapp=/x");
	DENY(p, "args[0] names a local path \"~-e\"", "kubectl", "logs", "", "-l,=~-e");
	DENY(p, "args[0] is a lone \"-\"", "kubectl", "get", "", "-", "pods");

	/* more args than the decoder lets through */
	struct result r;
	char *many[70];
	for (size_t i = 0; i < 70; i++)
		many[i] = "pods";
	struct ca_command cmd = {
	        .tool = "kubectl", .action = "get", .namespace_ = "", .args = many, .n_args = 70};
	r.rc = ca_exec_policy_check(p, &cmd, &r.plan, r.why, sizeof r.why);
	CHECK_INT(r.rc, CA_EDENIED);
	CHECK_CONTAINS(r.why, "the command has 70 args; at most 64");
	/* NULL strings in a hand-made command are "" */
	struct ca_command nulls = {0};
	r.rc = ca_exec_policy_check(p, &nulls, &r.plan, r.why, sizeof r.why);
	CHECK_INT(r.rc, CA_EDENIED);
	CHECK_CONTAINS(r.why, "tool \"\" is not allowed (exec.allowed_tools: kubectl)");
	/* a small why buffer is cut, never overrun */
	char small[8];
	r.rc = ca_exec_policy_check(p, &nulls, &r.plan, small, sizeof small);
	CHECK_INT(r.rc, CA_EDENIED);
	CHECK_STR(small, "tool \"\"");
	r.rc = ca_exec_policy_check(p, &nulls, &r.plan, NULL, 0);
	CHECK_INT(r.rc, CA_EDENIED);
	ca_exec_policy_free(p);
}

static void test_positionals(void)
{
	struct ca_exec_policy *p = policy_with(NULL);
	ALLOW(p, "kubectl|top|pod|web-1|--containers", "kubectl", "top", "", "pod", "web-1",
	      "--containers");
	ALLOW(p, "kubectl|top|no", "kubectl", "top", "", "no");
	/* TYPE/NAME names a resource wherever it is */
	DENY(p, "resource \"secrets\" is denied", "kubectl", "top", "", "pod", "secrets/x");
	DENY(p, "resource \"secret\" is denied", "kubectl", "logs", "", "web", "secret/x");
	DENY(p, "resource \"secret\" is denied", "kubectl", "auth", "", "can-i", "get", "pods",
	     "secret/x");
	ALLOW(p, "kubectl|auth|can-i|get/secrets|pods", "kubectl", "auth", "", "can-i",
	      "get/secrets", "pods");
	DENY(p, "kubectl top takes node or pod first, not \"services\"", "kubectl", "top", "",
	     "services");
	DENY(p, "kubectl logs takes at most 2 positional arguments", "kubectl", "logs", "", "a",
	     "b", "c");
	DENY(p, "kubectl auth can-i takes at most 3 positional arguments", "kubectl", "auth", "",
	     "can-i", "get", "pods", "x", "y");
	ALLOW(p, "kubectl|auth|can-i|get|pods/web", "kubectl", "auth", "", "can-i", "get",
	      "pods/web");
	/* the verb of can-i is not a resource */
	ALLOW(p, "kubectl|auth|can-i|secret-verb|pods", "kubectl", "auth", "", "can-i",
	      "secret-verb", "pods");
	DENY(p, "resource \"Secrets\" is denied", "kubectl", "auth", "", "can-i", "*", "Secrets");
	DENY(p, "kubectl api-resources takes no positional argument (args[0] \"pods\")", "kubectl",
	     "api-resources", "", "pods");
	DENY(p, "kubectl cluster-info takes no positional argument", "kubectl", "cluster-info", "",
	     "nodes");
	DENY(p, "args[0] names an empty resource type", "kubectl", "get", "", "pods,,nodes");
	DENY(p, "args[0] names an empty resource type", "kubectl", "get", "", "pods,/x");
	DENY(p, "args[0] names an empty resource type", "kubectl", "get", "", ",x");
	DENY(p, "resource type \"po_ds\" in args[0] holds a character other", "kubectl", "get", "",
	     "po_ds");
	DENY(p, "resource \"secrets\" is denied", "kubectl", "get", "", "pods/a,secrets/b");
	DENY(p, "resource \"secrets\" is denied", "kubectl", "events", "", "--for=secrets");
	char longtype[400];
	memset(longtype, 'a', sizeof longtype);
	longtype[sizeof longtype - 1] = '\0';
	DENY(p, "names a resource type longer than 255 bytes", "kubectl", "get", "", longtype);
	/* names after a type are names */
	ALLOW(p, "kubectl|describe|pods|my-secret|your-secret", "kubectl", "describe", "", "pods",
	      "my-secret", "your-secret");
	ca_exec_policy_free(p);
}

static void test_namespaces_and_resources(void)
{
	struct ca_exec_policy *p = policy_with(
	        "  allowed_namespaces: [web, default]\n  denied_namespaces: [kube-system]\n"
	        "  allowed_resources: [pods, deployments, nodes, pod, '*']\n"
	        "  denied_resources: [secret, Token]\n");
	ALLOW(p, "kubectl|get|pods|--namespace=web", "kubectl", "get", "web", "pods");
	ALLOW(p, "kubectl|get|deployments.v1.apps", "kubectl", "get", "", "deployments.v1.apps");
	ALLOW(p, "kubectl|get|Pods/web", "kubectl", "get", "", "Pods/web");
	ALLOW(p, "kubectl|logs|web-1", "kubectl", "logs", "", "web-1");
	ALLOW(p, "kubectl|auth|can-i|get|*", "kubectl", "auth", "", "can-i", "get", "*");
	DENY(p, "namespace \"kube-system\" is denied (exec.denied_namespaces)", "kubectl", "get",
	     "kube-system", "pods");
	DENY(p, "namespace \"prod\" is not in exec.allowed_namespaces", "kubectl", "get", "prod",
	     "pods");
	DENY(p, "resource \"services\" is not in exec.allowed_resources", "kubectl", "get", "",
	     "pods,services");
	DENY(p, "resource \"deployment\" is not in exec.allowed_resources", "kubectl", "logs", "",
	     "deployment/web");
	DENY(p, "resource \"serviceaccounttokens\" is denied (exec.denied_resources: token)",
	     "kubectl", "get", "", "serviceaccounttokens");
	DENY(p, "flag -A (--all-namespaces) reaches every namespace", "kubectl", "get", "web", "-A",
	     "pods");
	ALLOW(p, "kubectl|top|nodes", "kubectl", "top", "", "nodes");
	DENY(p, "resource \"no\" is not in exec.allowed_resources", "kubectl", "top", "", "no");
	ALLOW(p, "kubectl|top|pod", "kubectl", "top", "", "pod");
	ca_exec_policy_free(p);

	p = policy_with("  allowed_resources: [nodes]\n");
	DENY(p, "resource \"pods\" (kubectl logs of a pod) is not in exec.allowed_resources",
	     "kubectl", "logs", "", "web-1");
	DENY(p, "resource \"*\" is not in exec.allowed_resources", "kubectl", "auth", "", "can-i",
	     "get", "*");
	ca_exec_policy_free(p);

	p = policy_with("  denied_namespaces: [default]\n");
	DENY(p, "namespace \"default\" (kubectl's default when the command names none) is denied",
	     "kubectl", "get", "", "nodes");
	ALLOW(p, "kubectl|get|nodes|--namespace=web", "kubectl", "get", "web", "nodes");
	ca_exec_policy_free(p);
}

static void test_actions(void)
{
	/* an operator's own actions: a three-word entry next to a two-word
	 * one, and a kubectl action without a flag table */
	struct ca_exec_policy *p =
	        policy_with("  actions: [kubectl get, kubectl rollout status, kubectl auth, "
	                    "kubectl auth can-i]\n");
	CHECK_INT(ca_exec_policy_action_count(p), 4);
	ALLOW(p, "kubectl|rollout|status|deployment/web|--request-timeout=5s", "kubectl", "rollout",
	      "", "status", "deployment/web", "--request-timeout=5s");
	DENY(p, "action \"rollout restart\" of kubectl is not allowed (exec.actions)", "kubectl",
	     "rollout", "", "restart", "deployment/web");
	DENY(p, "flag --watch is not allowed for kubectl rollout status", "kubectl", "rollout", "",
	     "status", "deployment/web", "--watch");
	DENY(p, "resource \"secrets\" is denied", "kubectl", "rollout", "", "status", "secrets");
	DENY(p, "flag --token changes credentials", "kubectl", "rollout", "", "status",
	     "--token=x");
	DENY(p, "action \"describe\" of kubectl is not allowed (exec.actions)", "kubectl",
	     "describe", "", "pods");
	/* can-i still matched as a subaction, whoami under the two-word entry */
	struct result r;
	run(p, &r, "kubectl", "auth", "", "can-i", "--list", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_STR(r.plan.action, "auth can-i");
	ca_exec_plan_fini(&r.plan);
	run(p, &r, "kubectl", "auth", "", "whoami", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_STR(r.plan.action, "auth");
	ca_exec_plan_fini(&r.plan);
	ca_exec_policy_free(p);

	p = policy_with("  actions: [kubectl cluster-info dump]\n");
	DENY(p, "kubectl cluster-info dump writes files and dumps every log", "kubectl",
	     "cluster-info", "", "dump");
	ca_exec_policy_free(p);
}

static void test_generic_tool(void)
{
	char extra[1024];
	snprintf(extra, sizeof extra,
	         "  allowed_tools: [kubectl, mytool]\n  tool_paths: [mytool=%s]\n"
	         "  actions: [kubectl get, mytool run, mytool status check]\n",
	         fake_tool);
	struct ca_exec_policy *p = policy_with(extra);
	CHECK_INT(ca_exec_policy_tool_count(p), 2);
	CHECK_STR(ca_exec_policy_tool(p, 1), "mytool");
	CHECK_INT(ca_exec_policy_action_count(p), 3);
	CHECK_STR(ca_exec_policy_action(p, 2), "mytool status check");
	struct result r;
	run(p, &r, "mytool", "run", "", "--fast", "x", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_INT(r.plan.kind, CA_EXEC_TOOL_GENERIC);
	CHECK_STR(r.plan.path, fake_tool);
	CHECK_STR(r.plan.tool, "mytool");
	ca_exec_plan_fini(&r.plan);
	ALLOW(p, "mytool|run|--fast|x", "mytool", "run", "", "--fast", "x");
	ALLOW(p, "mytool|status|check|-v", "mytool", "status", "", "check", "-v");
	/* kubectl's flags are not modelled for other tools; the rules for
	 * every tool are */
	ALLOW(p, "mytool|run|--token=x|--|-", "mytool", "run", "", "--token=x", "--", "-");
	DENY(p, "namespace \"web\" is set, but only kubectl takes a namespace", "mytool", "run",
	     "web", "x");
	DENY(p, "args[0] names a local path \"/etc/passwd\"", "mytool", "run", "", "/etc/passwd");
	DENY(p, "args[1] names a local path \"~/x\"", "mytool", "run", "", "x", "--in=~/x");
	DENY(p, "path traversal", "mytool", "run", "", "a/../b");
	DENY(p, "shell metacharacter ';'", "mytool", "run", "", "a;b");
	DENY(p, "action \"status other\" of mytool is not allowed", "mytool", "status", "",
	     "other");
	DENY(p, "action \"status\" of mytool needs a subaction", "mytool", "status", "", NULL);
	DENY(p, "action \"get\" of mytool is not allowed", "mytool", "get", "", "x");
	DENY(p, "tool \"other\" is not allowed (exec.allowed_tools: kubectl, mytool)", "other",
	     "run", "", "x");
	ca_exec_policy_free(p);

	/* a tool path that is not there, not a file, not executable */
	snprintf(extra, sizeof extra,
	         "exec:\n  kubectl_path: %s\n  allowed_tools: [kubectl, a, b, c]\n"
	         "  tool_paths: [a=%s/missing, b=%s, c=%s]\n  actions: [a run, b run, c run]\n",
	         fake_kubectl, tmp_dir, tmp_dir, not_executable);
	p = policy_yaml(extra, CA_OK, NULL);
	CHECK_INT(ca_exec_policy_tool_count(p), 1);
	CHECK_INT(ca_exec_policy_action_count(p), 0);
	char want[1024];
	snprintf(want, sizeof want,
	         "a: not found at %s/missing; b: no executable file at %s (not a regular file); c: "
	         "no executable file at %s (not executable)",
	         tmp_dir, tmp_dir, not_executable);
	CHECK_STR(ca_exec_policy_problem(p), want);
	snprintf(want, sizeof want, "tool \"a\" is not available (a: not found at %s/missing)",
	         tmp_dir);
	DENY(p, want, "a", "run", "", "x");
	DENY(p, "shell metacharacter", "a", "run", "", "x|y"); /* rules first, availability last */
	ca_exec_policy_free(p);
}

static void test_kubectl_missing(void)
{
	struct ca_exec_policy *p =
	        policy_yaml("exec:\n  kubectl_path: /nonexistent/kubectl\n", CA_OK, NULL);
	CHECK_INT(ca_exec_policy_tool_count(p), 0);
	CHECK_INT(ca_exec_policy_action_count(p), 0);
	CHECK_STR(ca_exec_policy_problem(p), "kubectl: not found at /nonexistent/kubectl");
	DENY(p, "tool \"kubectl\" is not available (kubectl: not found at /nonexistent/kubectl)",
	     "kubectl", "get", "", "pods");
	/* the rules still give their own reason */
	DENY(p, "resource \"secrets\" is denied", "kubectl", "get", "", "secrets");
	ca_exec_policy_free(p);

	/* the default search: /usr/bin/kubectl, then /usr/local/bin/kubectl */
	p = policy_yaml(NULL, CA_OK, NULL);
	if (ca_exec_policy_tool_count(p) == 1) {
		struct result r;
		run(p, &r, "kubectl", "version", "", "--client", NULL);
		CHECK_INT(r.rc, CA_OK);
		CHECK(r.rc == CA_OK && (strcmp(r.plan.path, "/usr/bin/kubectl") == 0 ||
		                        strcmp(r.plan.path, "/usr/local/bin/kubectl") == 0));
		ca_exec_plan_fini(&r.plan);
	} else {
		CHECK_CONTAINS(ca_exec_policy_problem(p),
		               "/usr/bin/kubectl or /usr/local/bin/kubectl");
	}
	ca_exec_policy_free(p);
}

static void test_config_errors(void)
{
	char yaml[1024];
	snprintf(yaml, sizeof yaml,
	         "exec:\n  allowed_tools: [kubectl, a]\n  tool_paths: [a=%s, a=/bin/true]\n",
	         fake_tool);
	CHECK(policy_yaml(yaml, CA_EINVAL, "exec.tool_paths gives a two paths") == NULL);
	CHECK(policy_yaml("exec:\n  denied_resources: [secret, '']\n", CA_EINVAL,
	                  "an empty entry would deny everything") == NULL);
	CHECK(policy_yaml("exec:\n  denied_resources: [pods/log]\n", CA_EINVAL,
	                  "exec.denied_resources entry \"pods/log\" is not a resource name") ==
	      NULL);
	CHECK(policy_yaml("exec:\n  allowed_resources: [Deployments.apps]\n", CA_EINVAL,
	                  "exec.allowed_resources entry \"Deployments.apps\" can never match") ==
	      NULL);
	CHECK(policy_yaml("exec:\n  allowed_namespaces: [Web]\n", CA_EINVAL,
	                  "exec.allowed_namespaces entry \"Web\" is not a namespace name") == NULL);
	CHECK(policy_yaml("exec:\n  denied_namespaces: ['']\n", CA_EINVAL,
	                  "exec.denied_namespaces entry") == NULL);
	struct ca_exec_policy *p = NULL;
	char err[128];
	CHECK_INT(ca_exec_policy_new(NULL, &p, err, sizeof err), CA_EINVAL);
	CHECK(p == NULL);
}

/* ------------------------------------------------------------------------ */
/* The corpora                                                              */

/* A policy for an entry: the defaults plus its "config" object (JSON is
 * YAML, so it is applied as the exec section), kubectl at fake (NULL =
 * where the default config finds it). */
static struct ca_exec_policy *entry_policy(json_t *config, const char *fake)
{
	json_t *exec = config ? json_deep_copy(config) : json_object();
	if (fake)
		json_object_set_new(exec, "kubectl_path", json_string(fake));
	char *text = json_dumps(exec, JSON_COMPACT);
	json_decref(exec);
	size_t len = strlen(text) + 16;
	char *yaml = malloc(len);
	snprintf(yaml, len, "exec: %s\n", text);
	struct ca_exec_policy *p = policy_yaml(yaml, CA_OK, NULL);
	free(yaml);
	free(text);
	return p;
}

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

static bool entry_command(json_t *e, struct ca_command *cmd)
{
	json_t *c = json_object_get(e, "command"), *args = json_object_get(c, "args");
	memset(cmd, 0, sizeof *cmd);
	if (!json_is_object(c) || !json_is_array(args))
		return false;
	cmd->tool = (char *)json_string_value(json_object_get(c, "tool"));
	cmd->action = (char *)json_string_value(json_object_get(c, "action"));
	cmd->namespace_ = (char *)json_string_value(json_object_get(c, "namespace"));
	cmd->n_args = json_array_size(args);
	cmd->args = cmd->n_args ? calloc(cmd->n_args, sizeof *cmd->args) : NULL;
	for (size_t i = 0; i < cmd->n_args; i++)
		cmd->args[i] = (char *)json_string_value(json_array_get(args, i));
	for (size_t i = 0; i < cmd->n_args; i++)
		if (!cmd->args[i])
			return false;
	return cmd->tool && cmd->action && cmd->namespace_;
}

static json_t *load_corpus(const char *name)
{
	char path[512];
	json_error_t jerr;
	snprintf(path, sizeof path, "%s/%s", FIXTURES, name);
	json_t *list = json_load_file(path, 0, &jerr);
	if (!list)
		fprintf(stderr, "%s: %s (line %d)\n", path, jerr.text, jerr.line);
	CHECK(json_is_array(list));
	return list;
}

static void test_hostile_corpus(void)
{
	json_t *list = load_corpus("hostile_commands.json");
	CHECK(json_array_size(list) >= 70);
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *reason = json_string_value(json_object_get(e, "reason"));
		struct ca_command cmd;
		CHECK(name && reason && reason[0]);
		if (!entry_command(e, &cmd) || !name || !reason) {
			fprintf(stderr, "hostile entry %zu is malformed\n", i);
			CHECK(false);
			free(cmd.args);
			continue;
		}
		/* the default config as the agent loads it: the rules never
		 * depend on whether kubectl is found */
		struct ca_exec_policy *p = entry_policy(json_object_get(e, "config"), NULL);
		struct ca_exec_plan plan;
		char why[1024];
		enum ca_err rc =
		        p ? ca_exec_policy_check(p, &cmd, &plan, why, sizeof why) : CA_EINVAL;
		if (rc != CA_EDENIED || !check_contains(why, reason))
			fprintf(stderr, "hostile \"%s\": rc %d, reason \"%s\", want \"%s\"\n", name,
			        (int)rc, rc == CA_OK ? "" : why, reason);
		CHECK_INT(rc, CA_EDENIED);
		CHECK(check_contains(why, reason));
		if (rc == CA_OK)
			ca_exec_plan_fini(&plan);
		ca_exec_policy_free(p);
		free(cmd.args);
	}
	json_decref(list);
}

static void test_allowed_corpus(void)
{
	json_t *list = load_corpus("allowed_commands.json");
	CHECK(json_array_size(list) >= 15);
	size_t i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		const char *name = json_string_value(json_object_get(e, "name"));
		json_t *argv = json_object_get(e, "argv");
		struct ca_command cmd;
		if (!entry_command(e, &cmd) || !name || !json_is_array(argv)) {
			fprintf(stderr, "allowed entry %zu is malformed\n", i);
			CHECK(false);
			free(cmd.args);
			continue;
		}
		struct ca_exec_policy *p = entry_policy(json_object_get(e, "config"), fake_kubectl);
		struct ca_exec_plan plan;
		char why[1024];
		enum ca_err rc =
		        p ? ca_exec_policy_check(p, &cmd, &plan, why, sizeof why) : CA_EINVAL;
		if (rc != CA_OK)
			fprintf(stderr, "allowed \"%s\": rc %d, reason \"%s\"\n", name, (int)rc,
			        why);
		CHECK_INT(rc, CA_OK);
		if (rc == CA_OK) {
			bool same = plan.argc == json_array_size(argv);
			for (size_t k = 0; same && k < plan.argc; k++)
				same = strcmp(plan.argv[k], or_empty(json_string_value(
				                                    json_array_get(argv, k)))) == 0;
			if (!same)
				fprintf(stderr, "allowed \"%s\": argv differs\n", name);
			CHECK(same);
			const char *action = json_string_value(json_object_get(e, "action"));
			if (action)
				CHECK_STR(plan.action, action);
			CHECK_STR(plan.path, fake_kubectl);
			ca_exec_plan_fini(&plan);
		}
		ca_exec_policy_free(p);
		free(cmd.args);
	}
	json_decref(list);
}

int main(void)
{
	if (!mkdtemp(tmp_dir)) {
		perror("mkdtemp");
		return 1;
	}
	snprintf(fake_kubectl, sizeof fake_kubectl, "%s/kubectl", tmp_dir);
	snprintf(fake_tool, sizeof fake_tool, "%s/mytool", tmp_dir);
	snprintf(not_executable, sizeof not_executable, "%s/plain", tmp_dir);
	write_file(fake_kubectl, 0755);
	write_file(fake_tool, 0755);
	write_file(not_executable, 0644);

	test_defaults();
	test_flags();
	test_args();
	test_positionals();
	test_namespaces_and_resources();
	test_actions();
	test_generic_tool();
	test_kubectl_missing();
	test_config_errors();
	test_hostile_corpus();
	test_allowed_corpus();

	unlink(fake_kubectl);
	unlink(fake_tool);
	unlink(not_executable);
	rmdir(tmp_dir);
	return check_report();
}
