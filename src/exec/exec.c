/* exec/exec.c: intake (layers 1-3), the queue, children driven by the loop,
 * results and audit lines. See exec.h.
 *
 * Output does not live in memory while a command runs: each stream is
 * read from its pipe as it comes and written, up to exec.max_output_bytes,
 * to an unnamed file (O_TMPFILE) in exec.work_dir, outside the child's
 * directory and so out of its reach (Landlock lets it write only there).
 * The rest is read and thrown away, and the stream marked truncated. A
 * result is encoded only when the bus can take it, one at a time, so the
 * agent holds at most one encoded result however many commands ran: what
 * memory the executor needs does not grow with max_concurrent x output. */
#include "exec/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/prom.h"
#include "core/timeutil.h"
#include "exec/policy.h"
#include "exec/replay.h"
#include "exec/sandbox.h"
#include "exec/signature.h"
#include "log/log.h"

enum status { ST_SUCCEEDED = 0, ST_FAILED, ST_REJECTED, ST_TIMEOUT, ST_COUNT };
static const char *const status_names[ST_COUNT] = { "succeeded", "failed", "rejected", "timeout" };
static const double duration_bounds[] = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300 };

#define READ_CHUNK (64 * 1024)
#define READS_PER_WAKE 16         /* then back to the loop: one loud child cannot starve the rest */
#define KILL_GRACE_MS 2000        /* TERM, then KILL this much later */
#define DRAIN_GRACE_MS 1000       /* after the exit, the pipes' last bytes */
#define RETRY_MS 250              /* results the bus could not take yet */
#define QUEUE_MAX_BYTES (256 * 1024) /* decoded commands waiting, at most */
#define KILL_REAP_MS 1000         /* a child sent SIGKILL is waited for this long */
#define RESULT_SLACK 1024         /* headers and subject next to a result in max_payload */
#define AUDIT_RATE 10.0           /* rejection lines a second ... */
#define AUDIT_BURST 20.0          /* ... and at once; the rest counted */
#define ORPHAN_GROUPS 64          /* finished commands' groups swept for orphans ... */
#define ORPHAN_SWEEP_MS 1000      /* ... this often ... */
#define ORPHAN_WATCH_MS 30000     /* ... for this long */

struct stream {
	int pipe_fd;                 /* -1 once at EOF */
	struct ca_loop_fd *h;
	int spool_fd;                /* unnamed file holding what is kept */
	uint64_t kept, seen;         /* kept: bytes in the spool file, never more */
	bool spool_full;             /* a write came up short: keep no more */
};

struct job {
	struct job *next;
	struct ca_exec *x;
	struct ca_command cmd;
	struct ca_exec_plan plan;
	char *reply;                 /* allowed reply subject, or NULL */
	size_t bytes;                /* what the queue counts for it */
	int64_t received_mono_ms;

	/* running */
	int64_t timeout_ms;
	char dir[PATH_MAX];
	struct ca_sandbox_child child;
	bool spawned, exited, timed_out, killed;
	bool aborted;                /* not started, or stopped by the agent: error says why */
	struct ca_loop_fd *pid_h;
	struct ca_loop_timer *timer; /* timeout, then the KILL grace, then the drain grace */
	struct stream out, err;
	int64_t started_unix_ms, started_mono_ms, finished_unix_ms;
	int exit_code, term_signal;
	enum status status;
	char error[512];
};

struct ca_exec {
	struct ca_loop *loop;
	struct ca_kube *kube;
	const struct ca_config *cfg;
	enum ca_codec_format format;
	char cluster_id[128], agent_id[128];
	struct ca_exec_sink sink;
	void *sink_arg;

	struct ca_exec_policy *policy;
	struct ca_sandbox *sandbox;
	struct ca_exec_keys *keys;
	struct ca_replay *replay;

	struct job *queue_head, *queue_tail;
	size_t queued, queued_bytes;
	struct job *running;         /* list */
	size_t nrunning;
	struct job *done_head, *done_tail; /* finished, result not taken by the bus yet */
	size_t ndone;
	struct ca_loop_timer *retry;

	/* When the agent is PID 1 (a container without an init), what is left
	 * of a command's group when its leader dies -- killed at once by the
	 * sandbox -- becomes the agent's child: these groups are reaped
	 * (waitid P_PGID, never anyone else's) so no zombie stays. */
	struct {
		pid_t pgid;
		int64_t until_ms;
	} orphans[ORPHAN_GROUPS];
	size_t norphans;
	struct ca_loop_timer *sweep;

	uint64_t by_status[ST_COUNT];
	uint64_t results_lost, truncated;
	struct ca_histogram duration;
	double audit_tokens;
	int64_t audit_last_ms;
	uint64_t audit_suppressed;
	bool stopping;
};

/* ------------------------------------------------------------ helpers */

static const char *or_empty(const char *s)
{
	return s ? s : "";
}

/* The command's args as one JSON array, for the audit line (cut at 2 KiB). */
static void args_json(const struct ca_command *c, struct ca_buf *out)
{
	ca_buf_init(out, 4096);
	ca_buf_append_str(out, "[");
	for (size_t i = 0; i < c->n_args; i++) {
		if (out->len > 2048) {
			ca_buf_append_str(out, ",\"...\"");
			break;
		}
		if (i)
			ca_buf_append_str(out, ",");
		ca_buf_append_json_string(out, c->args[i]);
	}
	ca_buf_append_str(out, "]");
}

static bool reply_allowed(const struct ca_exec *x, const char *reply)
{
	if (!reply || !*reply)
		return false;
	const struct ca_strlist *l = &x->cfg->exec.reply_prefixes;
	for (size_t i = 0; i < l->count; i++)
		if (l->items[i][0] && strncmp(reply, l->items[i], strlen(l->items[i])) == 0)
			return true;
	return false;
}

static const char *reply_note(const struct ca_exec *x, const char *reply)
{
	if (!reply || !*reply)
		return "no reply subject";
	return reply_allowed(x, reply) ? "yes" : "no: not under exec.reply_prefixes";
}

static bool audit_allowed(struct ca_exec *x)
{
	int64_t now = ca_now_monotonic_ms();
	x->audit_tokens += (double)(now - x->audit_last_ms) * AUDIT_RATE / 1000.0;
	if (x->audit_tokens > AUDIT_BURST)
		x->audit_tokens = AUDIT_BURST;
	x->audit_last_ms = now;
	if (x->audit_tokens < 1.0)
		return false;
	x->audit_tokens -= 1.0;
	return true;
}

/* ------------------------------------------------------------ results */

static void result_msg_id(const struct ca_exec *x, const char *command_id, char *out, size_t len)
{
	snprintf(out, len, "%s-result-%s", x->agent_id, command_id && *command_id ? command_id : "invalid");
}

/* Publish an encoded result. false when the bus said not now. */
static bool publish_payload(struct ca_exec *x, const char *reply, const char *command_id, const struct ca_buf *b)
{
	char msg_id[320];
	result_msg_id(x, command_id, msg_id, sizeof msg_id);
	enum ca_err rc = x->sink.publish(x->sink_arg, reply_allowed(x, reply) ? reply : NULL, msg_id,
	                                 b->data ? b->data : "", b->len);
	if (rc == CA_EAGAIN)
		return false;
	if (rc != CA_OK) {
		x->results_lost++;
		ca_log(CA_LOG_WARN, "exec", "command result not published", "command_id", or_empty(command_id),
		       "error", ca_strerror(rc), NULL);
	}
	return true;
}

/* A rejection is small and answered at once; if the bus cannot take it
 * now it is lost, counted (a flood is what fills the bus). */
static void send_rejection(struct ca_exec *x, const char *reply, const struct ca_command *cmd, const char *why)
{
	int64_t now = ca_now_unix_ms();
	struct ca_msg_command_result r = {
		.command_id = cmd ? cmd->id : "",
		.agent_id = x->agent_id,
		.cluster_id = x->cluster_id,
		.status = "rejected",
		.exit_code = -1,
		.started_at = now,
		.finished_at = now,
		.error = why,
	};
	struct ca_buf b;
	ca_buf_init(&b, 0);
	if (ca_codec_encode_command_result(x->format, &r, &b) == CA_OK) {
		if (!publish_payload(x, reply, r.command_id, &b)) {
			x->results_lost++;
		}
	} else {
		x->results_lost++;
	}
	ca_buf_fini(&b);
}

static void reject(struct ca_exec *x, const struct ca_exec_msg *msg, const struct ca_command *cmd, const char *why)
{
	x->by_status[ST_REJECTED]++;
	ca_histogram_observe(&x->duration, 0);
	if (audit_allowed(x)) {
		char suppressed[24];
		struct ca_buf args;
		args_json(cmd ? cmd : &(struct ca_command){ 0 }, &args);
		snprintf(suppressed, sizeof suppressed, "%" PRIu64, x->audit_suppressed);
		ca_log(CA_LOG_WARN, "audit", "command rejected", "command_id", cmd ? or_empty(cmd->id) : "",
		       "issuer", cmd ? or_empty(cmd->issuer) : "", "tool", cmd ? or_empty(cmd->tool) : "",
		       "action", cmd ? or_empty(cmd->action) : "", "args", args.data ? args.data : "[]",
		       "namespace", cmd ? or_empty(cmd->namespace_) : "", "verdict", "rejected", "reason", why,
		       "reply_sent", reply_note(x, msg->reply),
		       "not_logged_before", x->audit_suppressed ? suppressed : NULL, NULL);
		ca_buf_fini(&args);
		x->audit_suppressed = 0;
	} else {
		x->audit_suppressed++;
	}
	send_rejection(x, msg->reply, cmd, why);
}

/* Map a spool's len bytes, read-only: page cache the kernel may drop,
 * not heap, while the result is encoded. */
/* Map the first *len bytes of a spool file, never past its end (a page
 * beyond it is SIGBUS when read): *len shrinks to the file's size. */
static enum ca_err map_spool(int fd, size_t *len, char **out)
{
	*out = NULL;
	struct stat st;
	if (fd >= 0 && *len && fstat(fd, &st) == 0 && (uint64_t)st.st_size < *len)
		*len = (size_t)st.st_size;
	if (fd < 0 || *len == 0)
		return CA_OK;
	void *p = mmap(NULL, *len, PROT_READ, MAP_PRIVATE, fd, 0);
	if (p == MAP_FAILED)
		return CA_EIO;
	*out = p;
	return CA_OK;
}

/* The most a result's encoding may take: both streams at their cap and the
 * rest. Escapes make an encoding longer than its bytes: such a result is
 * cut further (an eighth at a time) until it fits. */
static size_t result_cap(const struct ca_config *cfg)
{
	return 2 * (size_t)cfg->exec.max_output_bytes + READ_CHUNK;
}

/* Encode j's result, cutting its output until it fits the server's
 * max_payload and result_cap(). CA_OK with b filled. */
static enum ca_err encode_result(struct ca_exec *x, struct job *j, struct ca_buf *b)
{
	size_t limit = x->sink.max_payload ? x->sink.max_payload(x->sink_arg) : 0;
	limit = limit > 2 * RESULT_SLACK ? limit - RESULT_SLACK : 0;
	size_t cap = result_cap(x->cfg);
	b->max = limit && limit < cap ? limit : cap;
	size_t out_mapped = (size_t)j->out.kept, err_mapped = (size_t)j->err.kept;
	char *out = NULL, *err = NULL;
	enum ca_err rc = map_spool(j->out.spool_fd, &out_mapped, &out);
	if (rc == CA_OK)
		rc = map_spool(j->err.spool_fd, &err_mapped, &err);
	size_t out_len = out_mapped, err_len = err_mapped;
	bool out_cut = j->out.seen > out_mapped, err_cut = j->err.seen > err_mapped;
	for (int attempt = 0; rc == CA_OK && attempt < 32; attempt++) {
		struct ca_msg_command_result r = {
			.command_id = j->cmd.id,
			.agent_id = x->agent_id,
			.cluster_id = x->cluster_id,
			.status = status_names[j->status],
			.exit_code = j->exit_code,
			.stdout_data = out ? out : "",
			.stdout_len = out_len,
			.stderr_data = err ? err : "",
			.stderr_len = err_len,
			.stdout_truncated = out_cut,
			.stderr_truncated = err_cut,
			.started_at = j->started_unix_ms,
			.finished_at = j->finished_unix_ms,
			.duration_ms = j->finished_unix_ms - j->started_unix_ms,
			.error = j->error,
		};
		ca_buf_reset(b);
		rc = ca_codec_encode_command_result(x->format, &r, b);
		if (rc != CA_ETOOBIG)
			break;
		/* Over the cap (the server's max_payload, or result_cap):
		 * cut an eighth of both streams, at a UTF-8 boundary, and
		 * try again. */
		if (out_len + err_len == 0)
			break;
		rc = CA_OK;
		if (out_len) {
			out_len -= out_len / 8 + 1;
			while (out_len && ((unsigned char)out[out_len] & 0xC0) == 0x80)
				out_len--;
			out_cut = true;
		}
		if (err_len) {
			err_len -= err_len / 8 + 1;
			while (err_len && ((unsigned char)err[err_len] & 0xC0) == 0x80)
				err_len--;
			err_cut = true;
		}
	}
	if (rc == CA_OK && (out_cut || err_cut))
		x->truncated++;
	if (out)
		munmap(out, out_mapped);
	if (err)
		munmap(err, err_mapped);
	return rc;
}

static void stream_close(struct stream *s)
{
	ca_loop_fd_del(s->h);
	s->h = NULL;
	if (s->pipe_fd >= 0)
		close(s->pipe_fd);
	s->pipe_fd = -1;
}

static void job_free(struct job *j)
{
	if (!j)
		return;
	stream_close(&j->out);
	stream_close(&j->err);
	if (j->out.spool_fd >= 0)
		close(j->out.spool_fd);
	if (j->err.spool_fd >= 0)
		close(j->err.spool_fd);
	ca_loop_fd_del(j->pid_h);
	ca_loop_timer_free(j->timer);
	if (j->spawned && !j->exited) {
		int code, sig;
		ca_sandbox_kill_group(&j->child, SIGKILL);
		ca_sandbox_reap_killed(&j->child, KILL_REAP_MS, &code, &sig);
	}
	if (j->dir[0])
		ca_sandbox_remove_dir(j->dir);
	ca_command_fini(&j->cmd);
	ca_exec_plan_fini(&j->plan);
	free(j->reply);
	free(j);
}

static void start_next(struct ca_exec *x);

/* Hand finished results to the bus in order; stop at the first it cannot
 * take (the retry timer and ca_exec_flush() come back). */
static void drain_done(struct ca_exec *x)
{
	while (x->done_head) {
		struct job *j = x->done_head;
		struct ca_buf b;
		ca_buf_init(&b, 0);
		enum ca_err rc = encode_result(x, j, &b);
		bool taken = true;
		if (rc == CA_OK)
			taken = publish_payload(x, j->reply, j->cmd.id, &b);
		else {
			x->results_lost++;
			ca_log(CA_LOG_ERROR, "exec", "command result cannot be encoded", "command_id", j->cmd.id,
			       "error", ca_strerror(rc), NULL);
		}
		ca_buf_fini(&b);
		if (!taken) {
			if (!ca_loop_timer_active(x->retry))
				ca_loop_timer_start(x->retry, RETRY_MS, 0);
			return;
		}
		x->done_head = j->next;
		if (!x->done_head)
			x->done_tail = NULL;
		x->ndone--;
		job_free(j);
	}
}

/* Results left: their slots take the commands waiting. */
static void drain_and_start(struct ca_exec *x)
{
	drain_done(x);
	if (!x->stopping)
		start_next(x);
}

static void retry_cb(void *arg)
{
	drain_and_start(arg);
}

static void sweep_cb(void *arg)
{
	struct ca_exec *x = arg;
	int64_t now = ca_now_monotonic_ms();
	size_t kept = 0;
	for (size_t i = 0; i < x->norphans; i++) {
		siginfo_t info;
		int rc;
		do {
			memset(&info, 0, sizeof info);
			rc = waitid(P_PGID, (id_t)x->orphans[i].pgid, &info, WEXITED | WNOHANG);
		} while (rc == 0 && info.si_pid != 0);
		if (rc == 0 && x->orphans[i].until_ms > now) /* some still running */
			x->orphans[kept++] = x->orphans[i];
	}
	x->norphans = kept;
	if (!kept)
		ca_loop_timer_stop(x->sweep);
}

static void watch_orphans(struct ca_exec *x, pid_t pgid)
{
	if (x->norphans == ORPHAN_GROUPS) /* the oldest has had its time */
		memmove(&x->orphans[0], &x->orphans[1], (ORPHAN_GROUPS - 1) * sizeof x->orphans[0]);
	else
		x->norphans++;
	x->orphans[x->norphans - 1].pgid = pgid;
	x->orphans[x->norphans - 1].until_ms = ca_now_monotonic_ms() + ORPHAN_WATCH_MS;
	if (!ca_loop_timer_active(x->sweep))
		ca_loop_timer_start(x->sweep, ORPHAN_SWEEP_MS, ORPHAN_SWEEP_MS);
}

void ca_exec_flush(struct ca_exec *x)
{
	if (x)
		drain_and_start(x);
}

/* ------------------------------------------------------------ running */


static void unlink_running(struct ca_exec *x, struct job *j)
{
	for (struct job **p = &x->running; *p; p = &(*p)->next)
		if (*p == j) {
			*p = j->next;
			j->next = NULL;
			x->nrunning--;
			return;
		}
}

static const char *signal_words(int sig)
{
	switch (sig) {
	case SIGKILL: return "SIGKILL";
	case SIGTERM: return "SIGTERM";
	case SIGSYS: return "SIGSYS: a system call the sandbox forbids";
	case SIGXCPU: return "SIGXCPU: exec.max_cpu_time used up";
	case SIGXFSZ: return "SIGXFSZ: a file over exec.max_file_bytes";
	case SIGSEGV: return "SIGSEGV";
	case SIGABRT: return "SIGABRT";
	case SIGPIPE: return "SIGPIPE";
	default: return "a signal";
	}
}

/* The child has exited and both pipes are done (or the drain grace is
 * over): the result waits for the bus, the next command starts. */
static void finish(struct ca_exec *x, struct job *j)
{
	stream_close(&j->out);
	stream_close(&j->err);
	ca_loop_fd_del(j->pid_h);
	j->pid_h = NULL;
	ca_loop_timer_free(j->timer);
	j->timer = NULL;
	if (j->dir[0]) {
		ca_sandbox_remove_dir(j->dir);
		j->dir[0] = '\0';
	}
	j->finished_unix_ms = ca_now_unix_ms();
	int64_t dur = ca_now_monotonic_ms() - j->started_mono_ms;
	if (j->aborted) {
		j->status = ST_FAILED;
	} else if (j->timed_out) {
		j->status = ST_TIMEOUT;
		char t[32];
		ca_format_duration(j->timeout_ms, t, sizeof t);
		ca_set_err(j->error, sizeof j->error, "timed out after %s; its process group was killed", t);
	} else if (j->term_signal) {
		j->status = ST_FAILED;
		ca_set_err(j->error, sizeof j->error, "killed by signal %d (%s)", j->term_signal,
		           signal_words(j->term_signal));
	} else if (j->exit_code != 0) {
		j->status = ST_FAILED;
		ca_set_err(j->error, sizeof j->error, "%s exited with code %d", j->plan.tool, j->exit_code);
	} else {
		j->status = ST_SUCCEEDED;
	}
	x->by_status[j->status]++;
	ca_histogram_observe(&x->duration, (double)(ca_now_monotonic_ms() - j->received_mono_ms) / 1000.0);

	char code[16], ms[24], outb[24], errb[24];
	snprintf(code, sizeof code, "%d", j->exit_code);
	snprintf(ms, sizeof ms, "%" PRId64, dur);
	snprintf(outb, sizeof outb, "%" PRIu64, j->out.seen);
	snprintf(errb, sizeof errb, "%" PRIu64, j->err.seen);
	struct ca_buf args;
	args_json(&j->cmd, &args);
	ca_log(j->status == ST_SUCCEEDED ? CA_LOG_INFO : CA_LOG_WARN, "audit", "command finished", "command_id",
	       j->cmd.id, "issuer", j->cmd.issuer, "tool", j->plan.tool, "action", j->plan.action, "args",
	       args.data ? args.data : "[]", "namespace", j->cmd.namespace_, "verdict", status_names[j->status],
	       "exit_code", code, "signal", j->term_signal ? signal_words(j->term_signal) : NULL, "duration_ms",
	       ms, "stdout_bytes", outb, "stderr_bytes", errb, "stdout_truncated",
	       j->out.seen > j->out.kept ? "true" : "false", "stderr_truncated",
	       j->err.seen > j->err.kept ? "true" : "false", "reply_sent", reply_note(x, j->reply),
	       "error", j->error[0] ? j->error : NULL, NULL);
	ca_buf_fini(&args);

	unlink_running(x, j);
	if (x->done_tail)
		x->done_tail->next = j;
	else
		x->done_head = j;
	x->done_tail = j;
	x->ndone++;
	drain_and_start(x);
}

static void maybe_finish(struct ca_exec *x, struct job *j)
{
	if (j->exited && j->out.pipe_fd < 0 && j->err.pipe_fd < 0)
		finish(x, j);
}

/* Read what the pipe has (bounded per wake-up); keep up to the cap in the
 * spool, count and drop the rest. */
static void pump(struct ca_exec *x, struct job *j, struct stream *s)
{
	char buf[READ_CHUNK];
	uint64_t cap = (uint64_t)x->cfg->exec.max_output_bytes;
	for (int i = 0; i < READS_PER_WAKE && s->pipe_fd >= 0; i++) {
		ssize_t n = read(s->pipe_fd, buf, sizeof buf);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			stream_close(s);
			break;
		}
		s->seen += (uint64_t)n;
		if (s->kept < cap && s->spool_fd >= 0 && !s->spool_full) {
			size_t keep = (size_t)n;
			if (keep > cap - s->kept)
				keep = (size_t)(cap - s->kept);
			size_t off = 0;
			while (off < keep) {
				ssize_t w = pwrite(s->spool_fd, buf + off, keep - off, (off_t)(s->kept + off));
				if (w < 0 && errno == EINTR)
					continue;
				if (w <= 0)
					break;
				off += (size_t)w;
			}
			/* Short: the work dir is full (or a quota). What is
			 * written is kept, and counted as exactly that: the
			 * result maps kept bytes of the file, and reading past
			 * its end would be SIGBUS. seen > kept marks it cut. */
			s->kept += off;
			if (off < keep)
				s->spool_full = true;
		}
	}
}

static void out_cb(void *arg, int fd, int events)
{
	struct job *j = arg;
	(void)fd;
	(void)events;
	pump(j->x, j, &j->out);
	maybe_finish(j->x, j);
}

static void err_cb(void *arg, int fd, int events)
{
	struct job *j = arg;
	(void)fd;
	(void)events;
	pump(j->x, j, &j->err);
	maybe_finish(j->x, j);
}

static void drain_timeout(void *arg)
{
	struct job *j = arg;
	/* Something outside the group still holds a pipe: stop waiting. */
	pump(j->x, j, &j->out);
	pump(j->x, j, &j->err);
	stream_close(&j->out);
	stream_close(&j->err);
	maybe_finish(j->x, j);
}

static void exit_cb(void *arg, int fd, int events)
{
	struct job *j = arg;
	(void)fd;
	(void)events;
	ca_loop_fd_del(j->pid_h);
	j->pid_h = NULL;
	ca_sandbox_reap(&j->child, &j->exit_code, &j->term_signal);
	j->exited = true;
	watch_orphans(j->x, j->child.pid);
	ca_loop_timer_free(j->timer);
	j->timer = NULL;
	if (ca_loop_timer_new(j->x->loop, drain_timeout, j, &j->timer) == CA_OK)
		ca_loop_timer_start(j->timer, DRAIN_GRACE_MS, 0);
	pump(j->x, j, &j->out);
	pump(j->x, j, &j->err);
	maybe_finish(j->x, j);
}

static void timeout_cb(void *arg)
{
	struct job *j = arg;
	if (j->exited)
		return;
	if (!j->timed_out) {
		j->timed_out = true;
		ca_sandbox_kill_group(&j->child, SIGTERM);
		ca_loop_timer_start(j->timer, KILL_GRACE_MS, 0);
	} else if (!j->killed) {
		j->killed = true;
		ca_sandbox_kill_group(&j->child, SIGKILL);
	}
}

static enum ca_err open_spool(const char *dir, int *out)
{
	int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL)) {
		/* No O_TMPFILE on this file system: a named file, unlinked at once. */
		char path[PATH_MAX];
		if (snprintf(path, sizeof path, "%s/collect-agent-out-XXXXXX", dir) >= (int)sizeof path)
			return CA_EINVAL;
		fd = mkostemp(path, O_CLOEXEC);
		if (fd >= 0)
			unlink(path);
	}
	*out = fd;
	return fd >= 0 ? CA_OK : CA_EIO;
}

static enum ca_err write_kubeconfig(struct ca_exec *x, struct job *j, char *path, size_t pathlen, char *why,
                                    size_t whylen)
{
	if (!x->kube) {
		ca_set_err(why, whylen, "kubectl needs the agent's Kubernetes credentials, and none were found");
		return CA_EDENIED;
	}
	struct ca_buf yaml;
	ca_buf_init(&yaml, 1 << 20);
	enum ca_err rc = ca_kube_child_kubeconfig(x->kube, &yaml, why, whylen);
	if (rc != CA_OK) {
		ca_buf_fini(&yaml);
		return rc;
	}
	if (snprintf(path, pathlen, "%s/kubeconfig", j->dir) >= (int)pathlen) {
		ca_buf_fini(&yaml);
		ca_set_err(why, whylen, "work dir path too long");
		return CA_EINVAL;
	}
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	size_t off = 0;
	while (fd >= 0 && off < yaml.len) {
		ssize_t n = write(fd, yaml.data + off, yaml.len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	int saved = errno;
	if (fd >= 0)
		close(fd);
	ca_buf_fini(&yaml);
	if (fd < 0 || off < yaml.len) {
		ca_set_err(why, whylen, "cannot write the command's kubeconfig %s: %s", path, strerror(saved));
		return CA_EIO;
	}
	return CA_OK;
}

/* Start j: private dir, kubeconfig, spools, the child, its watchers.
 * false: it could not start (j->error says why; the caller answers). */
static bool start_job(struct ca_exec *x, struct job *j)
{
	char why[384] = "";
	char kubeconfig[PATH_MAX + 16] = "";
	enum ca_err rc = ca_sandbox_make_dir(x->cfg->exec.work_dir, j->dir, sizeof j->dir, why, sizeof why);
	if (rc != CA_OK) {
		j->dir[0] = '\0';
		goto fail;
	}
	if (j->plan.kind == CA_EXEC_TOOL_KUBECTL) {
		rc = write_kubeconfig(x, j, kubeconfig, sizeof kubeconfig, why, sizeof why);
		if (rc != CA_OK)
			goto fail;
	}
	if (open_spool(x->cfg->exec.work_dir, &j->out.spool_fd) != CA_OK ||
	    open_spool(x->cfg->exec.work_dir, &j->err.spool_fd) != CA_OK) {
		ca_set_err(why, sizeof why, "cannot make an output file in %s: %s", x->cfg->exec.work_dir,
		           strerror(errno));
		goto fail;
	}

	/* A clean environment: nothing of the agent's. */
	char home[PATH_MAX + 8], tmp[PATH_MAX + 8], kc[PATH_MAX + 32];
	snprintf(home, sizeof home, "HOME=%s", j->dir);
	snprintf(tmp, sizeof tmp, "TMPDIR=%s", j->dir);
	char *envp[6];
	size_t ne = 0;
	envp[ne++] = home;
	envp[ne++] = tmp;
	envp[ne++] = "PATH=/usr/bin:/bin";
	envp[ne++] = "LANG=C.UTF-8";
	if (kubeconfig[0]) {
		snprintf(kc, sizeof kc, "KUBECONFIG=%s", kubeconfig);
		envp[ne++] = kc;
	}
	envp[ne] = NULL;

	/* A longer timeout than exec.max_timeout is cut to it (not refused). */
	int64_t max_timeout = x->cfg->exec.max_timeout_ms;
	if (j->cmd.timeout_seconds <= 0)
		j->timeout_ms = x->cfg->exec.default_timeout_ms;
	else if (j->cmd.timeout_seconds > max_timeout / 1000)
		j->timeout_ms = max_timeout;
	else
		j->timeout_ms = j->cmd.timeout_seconds * 1000;

	j->started_unix_ms = ca_now_unix_ms();
	j->started_mono_ms = ca_now_monotonic_ms();
	rc = ca_sandbox_spawn(x->sandbox, j->plan.path, j->plan.argv, envp, j->dir, &j->child, why, sizeof why);
	if (rc != CA_OK)
		goto fail;
	j->spawned = true;
	j->out.pipe_fd = j->child.out_fd;
	j->err.pipe_fd = j->child.err_fd;
	if (ca_loop_fd_add(x->loop, j->child.pidfd, CA_LOOP_READ, exit_cb, j, &j->pid_h) != CA_OK ||
	    ca_loop_fd_add(x->loop, j->out.pipe_fd, CA_LOOP_READ, out_cb, j, &j->out.h) != CA_OK ||
	    ca_loop_fd_add(x->loop, j->err.pipe_fd, CA_LOOP_READ, err_cb, j, &j->err.h) != CA_OK ||
	    ca_loop_timer_new(x->loop, timeout_cb, j, &j->timer) != CA_OK) {
		ca_set_err(why, sizeof why, "cannot watch the child: out of memory");
		ca_sandbox_kill_group(&j->child, SIGKILL);
		ca_sandbox_reap_killed(&j->child, KILL_REAP_MS, &j->exit_code, &j->term_signal);
		j->exited = true;
		goto fail;
	}
	ca_loop_timer_start(j->timer, j->timeout_ms, 0);
	return true;
fail:
	ca_set_err(j->error, sizeof j->error, "%s", why[0] ? why : "the command could not be started");
	return false;
}

static void answer_not_started(struct ca_exec *x, struct job *j)
{
	j->status = ST_FAILED;
	j->exit_code = -1;
	j->started_unix_ms = j->finished_unix_ms = ca_now_unix_ms();
	j->started_mono_ms = ca_now_monotonic_ms();
	/* finish() logs, counts and queues the result like any other. */
	j->exited = true;
	stream_close(&j->out);
	stream_close(&j->err);
	j->aborted = true;
	j->next = x->running;
	x->running = j;
	x->nrunning++;
	finish(x, j);
}

/* Commands holding an executor slot: running, or finished with a result
 * the bus has not taken yet (NATS slow or away). Those keep their spool
 * files (two fds, up to 2 x max_output_bytes on disk) as a running one
 * does, so they count against exec.max_concurrent: nothing piles up
 * while results cannot leave. */
static size_t slots_taken(const struct ca_exec *x)
{
	return x->nrunning + x->ndone;
}

static void start_next(struct ca_exec *x)
{
	while (x->queue_head && slots_taken(x) < (size_t)x->cfg->exec.max_concurrent) {
		struct job *j = x->queue_head;
		x->queue_head = j->next;
		if (!x->queue_head)
			x->queue_tail = NULL;
		x->queued--;
		x->queued_bytes -= j->bytes;
		j->next = NULL;
		if (!start_job(x, j)) {
			answer_not_started(x, j);
			continue;
		}
		j->next = x->running;
		x->running = j;
		x->nrunning++;
	}
}

/* ------------------------------------------------------------ intake */

static size_t command_bytes(const struct ca_command *c)
{
	size_t n = sizeof(struct job) + strlen(c->id) + strlen(c->cluster_id) + strlen(c->tool) +
	           strlen(c->action) + strlen(c->namespace_) + strlen(c->issuer) + strlen(c->signature) + 16;
	for (size_t i = 0; i < c->n_args; i++)
		n += 2 * (strlen(c->args[i]) + 1) + 2 * sizeof(char *);
	return n;
}

void ca_exec_submit(struct ca_exec *x, const struct ca_exec_msg *msg)
{
	char why[512];
	struct ca_command cmd = { 0 };

	/* 1. size and schema */
	if ((int64_t)msg->len > x->cfg->exec.max_command_bytes) {
		snprintf(why, sizeof why, "command is %zu bytes; the limit is %" PRId64 " (exec.max_command_bytes)",
		         msg->len, x->cfg->exec.max_command_bytes);
		reject(x, msg, NULL, why);
		return;
	}
	enum ca_codec_format format;
	if (ca_codec_format_from_content_type(msg->content_type, &format) != CA_OK) {
		/* Without a Content-Type, a payload starting with '{' is JSON. */
		size_t i = 0;
		while (i < msg->len && (msg->data[i] == ' ' || msg->data[i] == '\n' || msg->data[i] == '\t' ||
		                        msg->data[i] == '\r'))
			i++;
		format = (i < msg->len && msg->data[i] == '{') ? CA_CODEC_JSON : CA_CODEC_PROTOBUF;
	}
	char decode_err[256] = "";
	if (ca_codec_decode_command(format, msg->data, msg->len, &cmd, decode_err, sizeof decode_err) != CA_OK) {
		snprintf(why, sizeof why, "command does not decode as %s: %s",
		         format == CA_CODEC_JSON ? "JSON" : "protobuf", decode_err);
		reject(x, msg, NULL, why);
		return;
	}

	/* 2. target and freshness */
	int64_t now = ca_now_unix_ms(), max_age = x->cfg->exec.max_age_ms;
	char age[32]; /* exec.max_age in words, written only for a refusal */
	if (!*cmd.cluster_id) {
		snprintf(why, sizeof why, "command has no cluster_id (this is \"%s\"; \"*\" means any cluster)",
		         x->cluster_id);
		goto rejected;
	}
	if (strcmp(cmd.cluster_id, "*") != 0 && strcmp(cmd.cluster_id, x->cluster_id) != 0) {
		snprintf(why, sizeof why, "command is for cluster \"%.80s\", this is \"%s\"", cmd.cluster_id,
		         x->cluster_id);
		goto rejected;
	}
	if (!x->cfg->exec.enabled) {
		snprintf(why, sizeof why, "command execution is disabled on this agent (exec.enabled: false)");
		goto rejected;
	}
	if (cmd.issued_at == 0) {
		snprintf(why, sizeof why, "command has no issued_at; it is required to tell a fresh command from a "
		                          "replayed one");
		goto rejected;
	}
	if (cmd.issued_at < now - max_age) {
		char d[32];
		ca_format_duration(now - cmd.issued_at, d, sizeof d);
		ca_format_duration(max_age, age, sizeof age);
		snprintf(why, sizeof why, "command was issued %s ago; older than exec.max_age (%s)", d, age);
		goto rejected;
	}
	if (cmd.issued_at > now + max_age) {
		char d[32];
		ca_format_duration(cmd.issued_at - now, d, sizeof d);
		ca_format_duration(max_age, age, sizeof age);
		snprintf(why, sizeof why, "command is issued %s in the future; more than exec.max_age (%s): check the "
		                          "clocks", d, age);
		goto rejected;
	}
	if (cmd.expires_at && cmd.expires_at <= now) {
		char d[32];
		ca_format_duration(now - cmd.expires_at, d, sizeof d);
		snprintf(why, sizeof why, "command expired %s ago (expires_at)", d);
		goto rejected;
	}
	int64_t mono = ca_now_monotonic_ms();
	if (ca_replay_seen(x->replay, cmd.id, mono)) {
		snprintf(why, sizeof why, "command id \"%.128s\" was already received: a replay", cmd.id);
		goto rejected;
	}

	/* 3. authenticity */
	if (x->cfg->exec.require_signature) {
		if (ca_exec_verify(x->keys, &cmd, why, sizeof why) != CA_OK)
			goto rejected;
	}
	/* Recorded only once authentic: a forged command must not be able to
	 * burn the id of a real one that is still on its way. */
	if (ca_replay_record(x->replay, cmd.id, mono) != CA_OK) {
		snprintf(why, sizeof why, "busy: %zu command ids are remembered for replay checks "
		                          "(exec.replay_cache_size); try again later", ca_replay_count(x->replay));
		goto rejected;
	}

	/* 4-5. policy and arguments */
	struct ca_exec_plan plan = { 0 };
	enum ca_err rc = ca_exec_policy_check(x->policy, &cmd, &plan, why, sizeof why);
	if (rc != CA_OK) {
		if (rc != CA_EDENIED)
			snprintf(why, sizeof why, "command cannot be checked: %s", ca_strerror(rc));
		goto rejected;
	}

	/* the queue */
	size_t bytes = command_bytes(&cmd);
	bool room = slots_taken(x) < (size_t)x->cfg->exec.max_concurrent ||
	            (x->queued < (size_t)x->cfg->exec.queue_size && x->queued_bytes + bytes <= QUEUE_MAX_BYTES);
	if (!room) {
		ca_exec_plan_fini(&plan);
		snprintf(why, sizeof why,
		         "busy: %zu commands running, %zu results waiting for NATS and %zu commands waiting "
		         "(exec.max_concurrent %" PRId64 ", exec.queue_size %" PRId64 ")",
		         x->nrunning, x->ndone, x->queued, x->cfg->exec.max_concurrent, x->cfg->exec.queue_size);
		goto rejected;
	}
	struct job *j = calloc(1, sizeof *j);
	if (!j) {
		ca_exec_plan_fini(&plan);
		snprintf(why, sizeof why, "busy: out of memory");
		goto rejected;
	}
	j->x = x;
	j->cmd = cmd;
	j->plan = plan;
	j->bytes = bytes;
	j->received_mono_ms = mono;
	j->out.pipe_fd = j->err.pipe_fd = -1;
	j->out.spool_fd = j->err.spool_fd = -1;
	j->reply = reply_allowed(x, msg->reply) ? strdup(msg->reply) : NULL;
	if (msg->reply && *msg->reply && reply_allowed(x, msg->reply) && !j->reply) {
		j->cmd = (struct ca_command){ 0 };
		job_free(j);
		snprintf(why, sizeof why, "busy: out of memory");
		goto rejected;
	}
	if (x->queue_tail)
		x->queue_tail->next = j;
	else
		x->queue_head = j;
	x->queue_tail = j;
	x->queued++;
	x->queued_bytes += bytes;
	start_next(x);
	return;

rejected:
	reject(x, msg, &cmd, why);
	ca_command_fini(&cmd);
}

/* ------------------------------------------------------------ life cycle */

enum ca_err ca_exec_new(struct ca_exec **out, struct ca_loop *loop, struct ca_kube *kube,
                        const struct ca_config *cfg, enum ca_codec_format format, const char *cluster_id,
                        const char *agent_id, const struct ca_exec_sink *sink, void *sink_arg, char *err,
                        size_t errlen)
{
	*out = NULL;
	struct ca_exec *x = calloc(1, sizeof *x);
	if (!x) {
		ca_set_err(err, errlen, "out of memory");
		return CA_ENOMEM;
	}
	x->loop = loop;
	x->kube = kube;
	x->cfg = cfg;
	x->format = format;
	ca_strlcpy(x->cluster_id, cluster_id, sizeof x->cluster_id);
	ca_strlcpy(x->agent_id, agent_id, sizeof x->agent_id);
	x->sink = *sink;
	x->sink_arg = sink_arg;
	x->audit_tokens = AUDIT_BURST;
	x->audit_last_ms = ca_now_monotonic_ms();
	ca_histogram_init(&x->duration, duration_bounds, sizeof duration_bounds / sizeof duration_bounds[0]);

	enum ca_err rc = ca_replay_new((size_t)cfg->exec.replay_cache_size, 2 * cfg->exec.max_age_ms, &x->replay);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "replay cache: %s", ca_strerror(rc));
		goto fail;
	}
	rc = ca_loop_timer_new(loop, retry_cb, x, &x->retry);
	if (rc == CA_OK)
		rc = ca_loop_timer_new(loop, sweep_cb, x, &x->sweep);
	if (rc != CA_OK) {
		ca_set_err(err, errlen, "out of memory");
		goto fail;
	}
	if (cfg->exec.enabled) {
		rc = ca_exec_policy_new(cfg, &x->policy, err, errlen);
		if (rc != CA_OK)
			goto fail;
		struct ca_sandbox_limits lim = {
			.memory_bytes = cfg->exec.max_memory_bytes,
			.cpu_seconds = (cfg->exec.max_cpu_ms + 999) / 1000,
			.processes = cfg->exec.max_processes,
			.open_files = cfg->exec.max_open_files,
			.file_bytes = cfg->exec.max_file_bytes,
		};
		rc = ca_sandbox_new(&lim, &x->sandbox, err, errlen);
		if (rc != CA_OK)
			goto fail;
		if (cfg->exec.require_signature) {
			rc = ca_exec_keys_load(&cfg->exec.public_key_files, &x->keys, err, errlen);
			if (rc != CA_OK)
				goto fail;
		}
		struct stat st;
		if (stat(cfg->exec.work_dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(cfg->exec.work_dir, W_OK) != 0) {
			ca_set_err(err, errlen, "exec.work_dir %s is not a writable directory", cfg->exec.work_dir);
			rc = CA_EINVAL;
			goto fail;
		}
		if (geteuid() == 0)
			ca_log(CA_LOG_WARN, "exec",
			       "the agent runs as root: commands keep root's capabilities and the kernel does not apply "
			       "exec.max_processes to them; run it as its own user (the Deployment runs as 65534)",
			       NULL);
		ca_log(ca_sandbox_landlock_abi(x->sandbox) ? CA_LOG_INFO : CA_LOG_WARN, "exec", "command sandbox ready",
		       "landlock", ca_sandbox_landlock_status(x->sandbox), "tools_unavailable",
		       *ca_exec_policy_problem(x->policy) ? ca_exec_policy_problem(x->policy) : NULL, NULL);
	}
	*out = x;
	return CA_OK;
fail:
	ca_exec_free(x);
	return rc;
}

void ca_exec_free(struct ca_exec *x)
{
	if (!x)
		return;
	x->stopping = true;
	/* Running commands: killed, answered failed; queued ones the same. */
	while (x->running) {
		struct job *j = x->running;
		if (!j->exited) {
			ca_sandbox_kill_group(&j->child, SIGKILL);
			ca_sandbox_reap_killed(&j->child, KILL_REAP_MS, &j->exit_code, &j->term_signal);
			j->exited = true;
		}
		pump(x, j, &j->out);
		pump(x, j, &j->err);
		stream_close(&j->out);
		stream_close(&j->err);
		j->aborted = true;
		ca_set_err(j->error, sizeof j->error, "the agent is stopping: the command was killed");
		finish(x, j);
	}
	while (x->queue_head) {
		struct job *j = x->queue_head;
		x->queue_head = j->next;
		x->queued--;
		ca_set_err(j->error, sizeof j->error, "the agent is stopping");
		j->next = NULL;
		answer_not_started(x, j);
	}
	drain_done(x);
	while (x->done_head) {
		struct job *j = x->done_head;
		x->done_head = j->next;
		x->results_lost++;
		job_free(j);
	}
	ca_exec_audit_summary(x);
	ca_loop_timer_free(x->retry);
	ca_loop_timer_free(x->sweep);
	ca_replay_free(x->replay);
	ca_exec_keys_free(x->keys);
	ca_sandbox_free(x->sandbox);
	ca_exec_policy_free(x->policy);
	free(x);
}

/* ------------------------------------------------------------ reporting */

void ca_exec_audit_summary(struct ca_exec *x)
{
	if (!x || !x->audit_suppressed)
		return;
	char n[24];
	snprintf(n, sizeof n, "%" PRIu64, x->audit_suppressed);
	ca_log(CA_LOG_WARN, "audit", "rejected commands not logged one by one (rate limit)", "count", n, NULL);
	x->audit_suppressed = 0;
}

size_t ca_exec_tool_count(const struct ca_exec *x)
{
	return x && x->policy ? ca_exec_policy_tool_count(x->policy) : 0;
}

const char *ca_exec_tool(const struct ca_exec *x, size_t i)
{
	return ca_exec_policy_tool(x->policy, i);
}

size_t ca_exec_action_count(const struct ca_exec *x)
{
	return x && x->policy ? ca_exec_policy_action_count(x->policy) : 0;
}

const char *ca_exec_action(const struct ca_exec *x, size_t i)
{
	return ca_exec_policy_action(x->policy, i);
}

void ca_exec_stats(const struct ca_exec *x, struct ca_exec_stats *out)
{
	memset(out, 0, sizeof *out);
	for (int i = 0; i < ST_COUNT; i++)
		out->by_status[i] = x->by_status[i];
	out->results_lost = x->results_lost;
	out->queued = x->queued;
	out->running = x->nrunning;
	out->results_waiting = x->ndone;
}

void ca_exec_budget(const struct ca_config *cfg, struct ca_budget *b)
{
	if (!cfg->exec.enabled)
		return;
	ca_budget_add(b, "exec: commands waiting (decoded, at most 256 KiB)", "exec.queue_size",
	              (uint64_t)QUEUE_MAX_BYTES);
	/* Output is spooled to files; in memory: the one result being encoded,
	 * its two streams read back and the encoding (escapes can double it). */
	/* Output is spooled to files and mapped back, not read into the heap;
	 * the protobuf encoder copies both streams (to replace bad UTF-8). */
	ca_budget_add(b, "exec: the result being encoded (protobuf's copy of the streams, the encoding)",
	              "exec.max_output_bytes", 2 * (uint64_t)cfg->exec.max_output_bytes + result_cap(cfg));
	ca_budget_add(b, "exec: replay cache of command ids", "exec.replay_cache_size",
	              ca_replay_bytes((size_t)cfg->exec.replay_cache_size));
}

static void module_health_json(const void *self, struct ca_buf *out)
{
	const struct ca_exec *x = self;
	ca_buf_printf(out, "{\"enabled\":%s,\"running\":%zu,\"queued\":%zu,\"results_waiting\":%zu",
	              x->cfg->exec.enabled ? "true" : "false", x->nrunning, x->queued, x->ndone);
	ca_buf_printf(out, ",\"max_concurrent\":%" PRId64 ",\"queue_size\":%" PRId64, x->cfg->exec.max_concurrent,
	              x->cfg->exec.queue_size);
	ca_buf_append_str(out, ",\"commands\":{");
	for (int i = 0; i < ST_COUNT; i++)
		ca_buf_printf(out, "%s\"%s\":%" PRIu64, i ? "," : "", status_names[i], x->by_status[i]);
	ca_buf_printf(out, "},\"results_lost\":%" PRIu64 ",\"replay_ids\":%zu,\"require_signature\":%s", x->results_lost,
	              ca_replay_count(x->replay), x->cfg->exec.require_signature ? "true" : "false");
	ca_buf_append_str(out, ",\"landlock\":");
	ca_buf_append_json_string(out, x->sandbox ? ca_sandbox_landlock_status(x->sandbox) : "");
	ca_buf_append_str(out, ",\"tools\":[");
	for (size_t i = 0; i < ca_exec_tool_count(x); i++) {
		if (i)
			ca_buf_append_str(out, ",");
		ca_buf_append_json_string(out, ca_exec_tool(x, i));
	}
	ca_buf_append_str(out, "],\"actions\":[");
	for (size_t i = 0; i < ca_exec_action_count(x); i++) {
		if (i)
			ca_buf_append_str(out, ",");
		ca_buf_append_json_string(out, ca_exec_action(x, i));
	}
	ca_buf_append_str(out, "],\"tools_unavailable\":");
	ca_buf_append_json_string(out, x->policy ? ca_exec_policy_problem(x->policy) : "");
	ca_buf_append_str(out, "}");
}

static void module_metrics(const void *self, struct ca_prom *p)
{
	const struct ca_exec *x = self;
	ca_prom_single(p, "agent_command_queue_size", "gauge", "Commands waiting for an executor slot.",
	               x ? (double)x->queued : 0);
	ca_prom_single(p, "agent_commands_running", "gauge", "Commands running now.", x ? (double)x->nrunning : 0);
	ca_prom_single(p, "agent_result_queue_size", "gauge", "Command results waiting to be published.",
	               x ? (double)x->ndone : 0);
	ca_prom_family(p, "agent_commands_total", "counter", "Commands received, by final status.");
	for (int i = 0; i < ST_COUNT; i++)
		ca_prom_sample(p, "agent_commands_total", "status", status_names[i], x ? (double)x->by_status[i] : 0);
	struct ca_histogram empty;
	ca_histogram_init(&empty, duration_bounds, sizeof duration_bounds / sizeof duration_bounds[0]);
	ca_prom_histogram(p, "agent_command_duration_seconds", "Time from receiving a command to its result.",
	                  x ? &x->duration : &empty);
	ca_prom_single(p, "agent_command_results_lost_total", "counter",
	               "Command results that could not be published.", x ? (double)x->results_lost : 0);
	ca_prom_single(p, "agent_command_output_truncated_total", "counter",
	               "Command results whose stdout or stderr was cut.", x ? (double)x->truncated : 0);
}

const struct ca_module_ops ca_exec_module = {
	.name = "exec",
	.health = NULL,
	.health_json = module_health_json,
	.render_metrics = module_metrics,
};
