/* exec/sandbox.h: layer 6 of DESIGN.md §4, starting one child safely.
 *
 * The module owns what is made once at start (struct ca_sandbox: the
 * seccomp filter exported to BPF, the Landlock ABI probe, the rlimits) and
 * the mechanics of one child: its private working dir, the clone/exec with
 * every restriction applied, signalling its process group and reaping it.
 * The caller (the executor) owns the policy: which path and argv, the
 * environment, the wall-clock timeout, the output caps, and the event loop
 * that polls the fds handed back here.
 *
 * The agent is multi-threaded (nats.c, libcurl), so everything that
 * allocates (the BPF program, the Landlock ruleset, argv and envp, paths) is
 * prepared before the fork and the child makes only raw system calls until
 * execve. It is started the way posix_spawn starts one: clone with
 * CLONE_VM | CLONE_VFORK | CLONE_PIDFD on a stack of its own, so the
 * agent's page tables are neither copied nor torn down (clone3 with a
 * pidfd, then fork and pidfd_open, where that is refused). Then, in order:
 *
 *   1. default signal dispositions (SIGPIPE too) and an empty signal mask;
 *   2. setsid: its own session and process group (pgid == pid);
 *   3. stdin = /dev/null, stdout/stderr = pipes (opened before the fork);
 *   4. chdir(dir), and oom_score_adj 1000 (best effort: at the container's
 *      memory limit the kernel kills a command, not the agent);
 *   5. rlimits: CPU (hard = soft + 1 s), AS, NOFILE, NPROC, FSIZE, CORE = 0;
 *   6. PR_SET_NO_NEW_PRIVS;
 *   7. Landlock (when the kernel has it): every write-type access handled
 *      and allowed only beneath dir (and writing /dev/null); reads, exec
 *      and network stay allowed. ABI >= 6 also scopes signals and abstract
 *      unix sockets to the command;
 *   8. closes every fd but 0, 1, 2 (close_range);
 *   9. the seccomp filter, last, so the set-up calls are not filtered;
 *  10. execve(path, argv, envp).
 * A failing step is written to a close-on-exec status pipe (step, errno) and
 * the child _exits(127); the parent reads that pipe until EOF (execve
 * succeeded) or a report, so spawn says which step failed.
 *
 * The seccomp filter allows by default and kills the process (SIGSYS) on
 * what a read-only command never needs: mount and the new mount API,
 * pivot_root, chroot, ptrace and process_vm_*, bpf, keyrings, kexec and
 * modules, reboot, unshare and setns, swap, acct, clock setting, perf,
 * userfaultfd, handle-based opens, quotactl, syslog, ioperm/iopl, vhangup;
 * clone with any CLONE_NEW* flag. clone3 fails with ENOSYS (its flags sit
 * in memory, out of a filter's reach; glibc and Go fall back to clone),
 * io_uring_setup with ENOSYS (io_uring operations bypass seccomp), setsid
 * and setpgid with EPERM (a process that left the group would outlive the
 * timeout's kill). Non-native system call ABIs (i386, x32) are killed.
 *
 * The caller must not ignore SIGCHLD (SIG_IGN or SA_NOCLDWAIT would let the
 * kernel reap children behind ca_sandbox_reap's back).
 *
 * Threads: ca_sandbox_new/free from one thread; the other calls may come
 * from any thread with a struct ca_sandbox that is not being freed (spawn
 * reads it only). Nothing here logs. */
#ifndef CA_EXEC_SANDBOX_H
#define CA_EXEC_SANDBOX_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "core/err.h"

/* Every limit is applied; all must be > 0 except file_bytes, which may be
 * 0 (no file may grow at all). cpu_seconds is the soft RLIMIT_CPU (SIGXCPU),
 * the hard limit one second later (SIGKILL). processes is RLIMIT_NPROC,
 * counted by the kernel per real UID: it includes the agent's own threads
 * and every command running at once. A limit above the agent's own hard
 * limit is lowered to it (an unprivileged process cannot raise it). */
struct ca_sandbox_limits {
	int64_t memory_bytes, cpu_seconds, processes, open_files, file_bytes;
};

/* Made once at start: the exported seccomp BPF, the Landlock ABI probe, the
 * limits. Opaque. */
struct ca_sandbox;

/* Build the seccomp filter, probe Landlock, copy lim. *out is NULL on
 * failure. Errors: CA_EINVAL (a limit out of range), CA_EIO (libseccomp
 * failed: "seccomp: ..." in err), CA_ENOMEM. A kernel without Landlock is
 * not an error: see ca_sandbox_landlock_status. */
enum ca_err ca_sandbox_new(const struct ca_sandbox_limits *lim, struct ca_sandbox **out, char *err,
                           size_t errlen);

/* NULL is fine. */
void ca_sandbox_free(struct ca_sandbox *sb);

/* The kernel's Landlock ABI version; 0 = unavailable (the child runs
 * without it). */
int ca_sandbox_landlock_abi(const struct ca_sandbox *sb);

/* One line for the executor to log once, static for sb's life:
 * "landlock ABI 4: writes only in the command's dir" or
 * "landlock unavailable: <why>". */
const char *ca_sandbox_landlock_status(const struct ca_sandbox *sb);

/* A private directory (0700) for one command under base:
 * base/collect-agent-cmd-XXXXXX, its path written to out. Errors: CA_EINVAL
 * (base empty or the path does not fit outlen), CA_EIO (mkdtemp failed:
 * "mkdtemp /base/...: Permission denied" in err). */
enum ca_err ca_sandbox_make_dir(const char *base, char *out, size_t outlen, char *err,
                                size_t errlen);

/* Remove dir and everything in it, never following a symlink (each level
 * opened with openat O_NOFOLLOW|O_DIRECTORY, entries removed with
 * unlinkat), directories the command made unreadable or unwritable are
 * chmod-ed back first. Depth is capped at CA_SANDBOX_MAX_DEPTH levels below
 * dir (one fd per level). Call it once the command's group is dead. Errors:
 * CA_ENOTFOUND (dir does not exist), CA_EINVAL (dir is not a directory or is
 * a symlink), CA_ETOOBIG (nested deeper than the cap: what is above is
 * removed, the rest left), CA_EIO (an entry could not be removed). */
#define CA_SANDBOX_MAX_DEPTH 64
enum ca_err ca_sandbox_remove_dir(const char *dir);

struct ca_sandbox_child {
	pid_t pid;          /* also its process group */
	int pidfd;          /* readable when the child exits; owned by the caller */
	int out_fd, err_fd; /* read ends of stdout/stderr: non-blocking, close-on-exec; owned by the
	                       caller */
};

/* Start path (absolute) with argv/envp (borrowed; envp is the whole
 * environment: nothing of the agent's is passed) in the sandbox, cwd = dir.
 * Returns once the child has exec'd; if exec or any sandbox step fails, the
 * child is reaped and CA_EIO comes back with why ("exec /x: No such file or
 * directory", "seccomp: Invalid argument", naming the step). Other errors:
 * CA_EINVAL (path not absolute, argv empty), CA_EIO for a pipe/open/clone
 * in the parent ("pipe: Too many open files"), CA_ETIMEDOUT (the child did
 * not reach execve within CA_SANDBOX_EXEC_WAIT_MS: it is killed and reaped).
 *
 * Blocking: spawn waits for the child's execve to succeed or fail, reading
 * the status pipe. That is a few system calls plus the kernel loading the
 * binary (about a millisecond), and it is bounded by CA_SANDBOX_EXEC_WAIT_MS
 * for the pathological case (a hung filesystem, a stopped child). It never
 * waits for the command itself. On success *out holds the child; on
 * failure out->pid is -1 and its fds are -1. */
#define CA_SANDBOX_EXEC_WAIT_MS 5000
enum ca_err ca_sandbox_spawn(const struct ca_sandbox *sb, const char *path, char *const argv[],
                             char *const envp[], const char *dir, struct ca_sandbox_child *out,
                             char *err, size_t errlen);

/* Signal the child's whole process group (kill(-pid, sig)); nothing once
 * reaped (pid -1). Async: the caller polls the pidfd. */
void ca_sandbox_kill_group(const struct ca_sandbox_child *c, int sig);

/* Once pidfd is readable: SIGKILL what is left of the group (before
 * reaping, while the leader's zombie still pins the pgid), then reap with
 * waitid(P_PIDFD). exit_code = code, or -1 when killed; term_signal = the
 * signal or 0 (either pointer may be NULL). Closes pidfd and sets pid and
 * pidfd to -1; out_fd/err_fd stay the caller's. Never blocks: CA_EAGAIN
 * (nothing closed) when the child has not exited yet; CA_EINVAL when it was
 * reaped already; CA_EIO when waitid fails (pidfd is closed all the same).
 *
 * The group members killed here were the leader's children: they are
 * reparented to the nearest child subreaper, else PID 1, which must reap
 * them. When the agent is PID 1 of its container, that is the agent. */
enum ca_err ca_sandbox_reap(struct ca_sandbox_child *c, int *exit_code, int *term_signal);
/* ca_sandbox_reap() for a child just sent SIGKILL: waits up to timeout_ms
 * for it to die first (a killed process takes a moment; one stuck in the
 * kernel may take longer, then CA_EAGAIN as above). Blocks the caller:
 * for shutdown and failure paths only. */
enum ca_err ca_sandbox_reap_killed(struct ca_sandbox_child *c, int timeout_ms, int *exit_code,
                                   int *term_signal);

#endif
