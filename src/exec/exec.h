/* exec/exec.h: the command executor (DESIGN.md §4; issue 10).
 *
 * A command from agent.command.<cluster_id> goes through the layers in
 * order: its size and schema (decoded in either encoding), its target and
 * freshness (cluster_id, issued_at within exec.max_age, expires_at, the
 * replay cache), its signature when exec.require_signature is on
 * (signature.h), the policy and argument checks (policy.h), then a bounded
 * queue and at most exec.max_concurrent children in the sandbox
 * (sandbox.h). The loop drives each child through its pidfd and
 * non-blocking pipes, caps stdout and stderr while they stream, and kills
 * the child's process group at the timeout (TERM, then KILL). Every
 * command gets exactly one CommandResult, whose error says in words why it
 * was rejected or failed, and one audit line.
 *
 * Owns the policy, sandbox, keys, replay cache, queue, running children
 * with their buffers and private directories, and results waiting for the
 * bus. Never includes bus/ or agent/ headers. Loop thread only. */
#ifndef CA_EXEC_EXEC_H
#define CA_EXEC_EXEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec/codec.h"
#include "config/config.h"
#include "core/budget.h"
#include "core/err.h"
#include "core/loop.h"
#include "core/module.h"
#include "kube/kube.h"

struct ca_exec;

struct ca_exec_sink {
	/* Publish an encoded CommandResult on agent.result.<cluster_id> and,
	 * when reply is not NULL, on that reply subject too (the executor has
	 * checked it against exec.reply_prefixes). CA_OK: taken. CA_EAGAIN:
	 * not now; offered again after ca_exec_flush() or a short retry.
	 * Anything else: lost (counted). */
	enum ca_err (*publish)(void *arg, const char *reply, const char *msg_id, const char *payload, size_t len);
	/* The largest message the server takes (its max_payload); 0 when not
	 * known yet. A result is cut to fit. */
	size_t (*max_payload)(void *arg);
};

/* A command as it came off the bus; everything borrowed for the call. */
struct ca_exec_msg {
	const char *data;
	size_t len;
	const char *content_type; /* NULL: told from the payload */
	const char *reply;        /* NULL or "": none */
};

/* Set up the executor. cfg, kube (may be NULL: kubectl then cannot run)
 * and loop are borrowed and must outlive it; ids are copied; sink copied,
 * sink_arg borrowed. err gets one sentence on failure (CA_EINVAL: a key
 * file that does not load, a work_dir that is not a writable directory;
 * CA_ENOMEM; CA_EIO: the sandbox cannot be built). */
enum ca_err ca_exec_new(struct ca_exec **out, struct ca_loop *loop, struct ca_kube *kube,
                        const struct ca_config *cfg, enum ca_codec_format format, const char *cluster_id,
                        const char *agent_id, const struct ca_exec_sink *sink, void *sink_arg, char *err,
                        size_t errlen);
/* Take one command: it is answered now (rejected) or when it finishes. */
void ca_exec_submit(struct ca_exec *x, const struct ca_exec_msg *msg);
/* NATS takes messages again: offer the results that wait. */
void ca_exec_flush(struct ca_exec *x);
/* Stop: every running child's group is killed and reaped, its directory
 * removed, and it is answered `failed` ("the agent is stopping"), as is
 * every queued command. Then free. NULL is fine. */
void ca_exec_free(struct ca_exec *x);

/* Log how many rejections the audit rate limit kept out of the log since
 * the last line, if any (the heartbeat calls this). NULL is fine. */
void ca_exec_audit_summary(struct ca_exec *x);

/* Runnable tools and allowed "tool action" strings, for AgentInfo.
 * Borrowed, valid while x lives. */
size_t ca_exec_tool_count(const struct ca_exec *x);
const char *ca_exec_tool(const struct ca_exec *x, size_t i);
size_t ca_exec_action_count(const struct ca_exec *x);
const char *ca_exec_action(const struct ca_exec *x, size_t i);

/* The executor's rows of the memory budget for cfg: the queue of decoded
 * commands, each running child's output buffers, results waiting, the
 * replay cache. Any thread. */
void ca_exec_budget(const struct ca_config *cfg, struct ca_budget *b);

struct ca_exec_stats {
	uint64_t by_status[4]; /* succeeded, failed, rejected, timeout */
	uint64_t results_lost;
	size_t queued, running, results_waiting;
};
void ca_exec_stats(const struct ca_exec *x, struct ca_exec_stats *out);

/* /health "exec" and the agent_command* families; self NULL renders zeros. */
extern const struct ca_module_ops ca_exec_module;

#endif
