/* exec/policy.h: layers 4 and 5 of the command executor (DESIGN.md §4):
 * which tool, action, arguments, resources and namespace a command may use.
 *
 * The module owns the decision "may this command run, and with which argv":
 * it resolves each allowed tool to an absolute path once (at start-up), and
 * then checks decoded commands against the exec section of the config
 * without any I/O. It models kubectl's own flag parsing (pflag) so that a
 * flag is recognised in every spelling (--flag=v, --flag v, -x, -xv, -x=v,
 * combined shorthands, '_' for '-'), checks flags against a deny table and
 * then a per-action allowlist, and checks every resource a command names.
 * The rules, and why each exists, are in docs/EXEC_POLICY.md.
 *
 * It never runs anything: the sandbox (exec/sandbox.h) runs a plan, and the
 * executor writes kubectl's kubeconfig and sets KUBECONFIG itself, which is
 * why no plan ever holds --kubeconfig.
 *
 * A policy is immutable once built: any thread may call the const
 * functions at the same time. */
#ifndef CA_EXEC_POLICY_H
#define CA_EXEC_POLICY_H

#include <stddef.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/err.h"

struct ca_exec_policy;

enum ca_exec_tool_kind { CA_EXEC_TOOL_KUBECTL, CA_EXEC_TOOL_GENERIC };

/* What to run, as checked. Everything is heap, owned by the plan; free it
 * with ca_exec_plan_fini. */
struct ca_exec_plan {
	char *tool, *action; /* as checked, for the audit line; action is "auth can-i"
	                        when a subaction was matched */
	char *path;          /* absolute path of the tool */
	char **argv;         /* argc entries + a NULL; argv[0] = the tool name */
	size_t argc;
	enum ca_exec_tool_kind kind; /* KUBECTL: the executor writes it a kubeconfig */
};

/* Build the policy from cfg (borrowed for the call: everything needed is
 * copied). Resolves tool paths with stat(2): a tool must be an absolute path
 * to a regular file with an execute bit; exec.kubectl_path "" means the first
 * of /usr/bin/kubectl, /usr/local/bin/kubectl that is one (never $PATH). An
 * allowed tool that cannot be found is not an error: it is unavailable
 * (commands naming it are rejected with where it was looked for) and listed
 * by ca_exec_policy_problem.
 *
 * Errors: CA_EINVAL with one sentence in err for what config validation
 * does not check (an exec.tool_paths name given twice, an empty
 * exec.denied_resources entry, which would deny everything, an
 * exec.allowed_resources entry that can never match, a namespace list entry
 * that is not a namespace name); CA_ENOMEM. *out is NULL on failure. Any
 * thread (it calls stat). */
enum ca_err ca_exec_policy_new(const struct ca_config *cfg, struct ca_exec_policy **out, char *err,
                               size_t errlen);
/* Accepts NULL. */
void ca_exec_policy_free(struct ca_exec_policy *p);

/* Layers 4-5: check cmd (borrowed) and, when it may run, fill plan.
 *
 * CA_OK: plan filled (the caller frees it with ca_exec_plan_fini).
 * CA_EDENIED: the command may not run; why says which rule in words an
 * operator understands, stable enough to match in tests (e.g. "flag --token
 * changes credentials and is never allowed", "resource \"secrets\" is denied
 * (exec.denied_resources: secret)", "action \"delete\" of kubectl is not
 * allowed (exec.actions)", "args[3] holds a control byte 0x1b"). Text from
 * the command is quoted with anything outside printable ASCII escaped.
 * CA_ENOMEM. On any failure plan is left empty (all zero).
 *
 * Rules run in this order, and the first broken one is reported: tool
 * allowed; action allowed; every arg (empty, UTF-8, control characters,
 * shell metacharacters); subaction; namespace; for kubectl the flags and
 * positionals in argument order (deny table, allowlist, values, paths),
 * then resources; for other tools the path rules; last, the tool must have
 * been found (so a reason never depends on where the agent runs, except
 * for that one).
 *
 * Pure: no I/O, no logging. Any thread. */
enum ca_err ca_exec_policy_check(const struct ca_exec_policy *p, const struct ca_command *cmd,
                                 struct ca_exec_plan *plan, char *why, size_t whylen);

/* Free what plan owns and zero it; accepts an all-zero plan. */
void ca_exec_plan_fini(struct ca_exec_plan *plan);

/* Runnable tools (allowed and found), in exec.allowed_tools order, and the
 * allowed "tool action[ sub]" strings of those tools, in exec.actions order,
 * for AgentInfo and /health. Borrowed: valid until ca_exec_policy_free. */
size_t ca_exec_policy_tool_count(const struct ca_exec_policy *p);
const char *ca_exec_policy_tool(const struct ca_exec_policy *p, size_t i);
size_t ca_exec_policy_action_count(const struct ca_exec_policy *p);
const char *ca_exec_policy_action(const struct ca_exec_policy *p, size_t i);

/* "" or why configured tools are unavailable, "; "-separated ("kubectl: not
 * found at /usr/bin/kubectl or /usr/local/bin/kubectl"). Borrowed. */
const char *ca_exec_policy_problem(const struct ca_exec_policy *p);

#endif
