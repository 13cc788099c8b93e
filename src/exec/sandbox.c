#include "exec/sandbox.h"

#include "core/buf.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <linux/filter.h>
#include <linux/landlock.h>
#include <linux/seccomp.h>

/* Debian 12's kernel headers are 6.1 (Landlock ABI 2); the rights and
 * scopes of later ABIs are fixed numbers in the kernel's UAPI. */
#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif
#ifndef LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
#define LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#endif
#ifndef LANDLOCK_SCOPE_SIGNAL
#define LANDLOCK_SCOPE_SIGNAL (1ULL << 1)
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

/* The kernel's struct landlock_ruleset_attr as of ABI 6; an older kernel
 * takes the larger struct as long as the fields it does not know are 0. */
struct ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

/* struct clone_args, version 0 (64 bytes): glibc 2.36 has no clone3. */
struct clone3_args {
	uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

struct ca_sandbox {
	struct ca_sandbox_limits lim;
	struct sock_fprog prog; /* prog.filter is ours */
	int landlock_abi;
	char landlock_status[160];
};

/* ------------------------------------------------------------------ */
/* seccomp                                                             */

/* Killed (SIGSYS): none of these has a use in a read-only client such as
 * kubectl, and each is a way to change the system, reach another process
 * or widen the kernel's attack surface. personality is left alone: its
 * flags (ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC) only weaken the process
 * that sets them, and no_new_privs already keeps them from a setuid exec. */
/* clang-format off */
static const char *const killed_calls[] = {
	"mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsconfig",
	"fsmount", "fspick", "mount_setattr", "ptrace", "process_vm_readv", "process_vm_writev",
	"bpf", "keyctl", "add_key", "request_key", "kexec_load", "kexec_file_load", "init_module",
	"finit_module", "delete_module", "reboot", "unshare", "setns", "swapon", "swapoff", "acct",
	"settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "perf_event_open",
	"userfaultfd", "open_by_handle_at", "name_to_handle_at", "quotactl", "syslog", "ioperm",
	"iopl", "lookup_dcookie", "vhangup"
};
/* clang-format on */

/* clone(2) takes its flags in a register, so a filter can see them; the
 * exit signal shares the low byte, which is why CLONE_NEWTIME (0x80, only
 * meaningful to clone3 and unshare) is not in this list. */
static const uint64_t clone_new_flags[] = {CLONE_NEWNS,  CLONE_NEWCGROUP, CLONE_NEWUTS,
                                           CLONE_NEWIPC, CLONE_NEWUSER,   CLONE_NEWPID,
                                           CLONE_NEWNET};

static enum ca_err seccomp_fail(int rc, const char *what, char *err, size_t errlen)
{
	ca_set_err(err, errlen, "seccomp: %s: %s", what, strerror(rc < 0 ? -rc : rc));
	return rc == -ENOMEM ? CA_ENOMEM : CA_EIO;
}

static enum ca_err rule(scmp_filter_ctx ctx, uint32_t action, const char *name, unsigned argc,
                        const struct scmp_arg_cmp *cmp, char *err, size_t errlen)
{
	int nr = seccomp_syscall_resolve_name(name);
	/* A call this libseccomp does not know, or one the native ABI does
	 * not have, cannot be made: nothing to filter. */
	if (nr == __NR_SCMP_ERROR || nr < 0)
		return CA_OK;
	int rc = seccomp_rule_add_array(ctx, action, nr, argc, cmp);
	return rc < 0 ? seccomp_fail(rc, name, err, errlen) : CA_OK;
}

/* Build the filter with libseccomp and export it as BPF into memory, so the
 * child installs it with one raw seccomp(2) and nothing allocates after the
 * fork. libseccomp 2.5 exports only to an fd: a memfd. */
static enum ca_err build_filter(struct sock_fprog *prog, char *err, size_t errlen)
{
	enum ca_err rc = CA_EIO;
	scmp_filter_ctx ctx = NULL;
	struct sock_filter *insns = NULL;
	int fd = -1, r;

	if (!(ctx = seccomp_init(SCMP_ACT_ALLOW))) {
		ca_set_err(err, errlen, "seccomp: seccomp_init failed");
		goto out;
	}
	/* Level 3 is SECCOMP_RET_KILL_PROCESS (Linux 4.14); without it a
	 * killed call would end one thread of a multi-threaded command. */
	unsigned api = seccomp_api_get();
	if (api < 3) {
		ca_set_err(err, errlen, "seccomp: no SECCOMP_RET_KILL_PROCESS (API level %u)", api);
		goto out;
	}
	/* i386 and x32 calls from a 64-bit process would bypass a filter
	 * keyed on x86_64 numbers: kill them. */
	if ((r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0) {
		rc = seccomp_fail(r, "bad-arch action", err, errlen);
		goto out;
	}
	for (size_t i = 0; i < sizeof killed_calls / sizeof killed_calls[0]; i++)
		if ((rc = rule(ctx, SCMP_ACT_KILL_PROCESS, killed_calls[i], 0, NULL, err, errlen)))
			goto out;
	for (size_t i = 0; i < sizeof clone_new_flags / sizeof clone_new_flags[0]; i++) {
		struct scmp_arg_cmp cmp =
		        SCMP_A0(SCMP_CMP_MASKED_EQ, clone_new_flags[i], clone_new_flags[i]);
		if ((rc = rule(ctx, SCMP_ACT_KILL_PROCESS, "clone", 1, &cmp, err, errlen)))
			goto out;
	}
	/* clone3's flags live in memory a filter cannot read; ENOSYS makes
	 * glibc and Go fall back to clone, which is filtered above. */
	if ((rc = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3", 0, NULL, err, errlen)))
		goto out;
	/* Operations submitted through an io_uring are not seen by seccomp;
	 * ENOSYS makes libraries that probe for it use plain calls. */
	if ((rc = rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "io_uring_setup", 0, NULL, err, errlen)))
		goto out;
	/* The child is its session and group leader before the filter is on;
	 * a descendant that moved to another group would outlive the
	 * timeout's kill of the group. */
	if ((rc = rule(ctx, SCMP_ACT_ERRNO(EPERM), "setsid", 0, NULL, err, errlen)) ||
	    (rc = rule(ctx, SCMP_ACT_ERRNO(EPERM), "setpgid", 0, NULL, err, errlen)))
		goto out;

	rc = CA_EIO;
	if ((fd = memfd_create("ca-seccomp-bpf", MFD_CLOEXEC)) < 0) {
		ca_set_err(err, errlen, "seccomp: memfd_create: %s", strerror(errno));
		goto out;
	}
	if ((r = seccomp_export_bpf(ctx, fd)) < 0) {
		rc = seccomp_fail(r, "export", err, errlen);
		goto out;
	}
	struct stat st;
	if (fstat(fd, &st) != 0) {
		ca_set_err(err, errlen, "seccomp: fstat: %s", strerror(errno));
		goto out;
	}
	size_t size = (size_t)st.st_size;
	if (size == 0 || size % sizeof(struct sock_filter) != 0 ||
	    size / sizeof(struct sock_filter) > BPF_MAXINSNS) {
		ca_set_err(err, errlen, "seccomp: exported program of %zu bytes", size);
		goto out;
	}
	if (!(insns = malloc(size))) {
		rc = CA_ENOMEM;
		ca_set_err(err, errlen, "seccomp: out of memory");
		goto out;
	}
	for (size_t done = 0; done < size;) {
		ssize_t n = pread(fd, (char *)insns + done, size - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ca_set_err(err, errlen, "seccomp: reading the program back: %s",
			           n < 0 ? strerror(errno) : "short file");
			goto out;
		}
		done += (size_t)n;
	}
	prog->len = (unsigned short)(size / sizeof(struct sock_filter));
	prog->filter = insns;
	insns = NULL;
	rc = CA_OK;
out:
	free(insns);
	if (fd >= 0)
		close(fd);
	if (ctx)
		seccomp_release(ctx);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Landlock                                                            */

static int probe_landlock(char *status, size_t len)
{
	long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
	if (abi > 0) {
		const char *scoped = "; signals and abstract unix sockets scoped to the command";
		snprintf(status, len, "landlock ABI %ld: writes only in the command's dir%s", abi,
		         abi >= 6 ? scoped : "");
		return (int)abi;
	}
	int e = abi == 0 ? EINVAL : errno;
	if (e == ENOSYS)
		snprintf(status, len, "landlock unavailable: the kernel has no Landlock (ENOSYS)");
	else if (e == EOPNOTSUPP)
		snprintf(status, len, "landlock unavailable: not enabled at boot (EOPNOTSUPP)");
	else
		snprintf(status, len, "landlock unavailable: %s", strerror(e));
	return 0;
}

/* Every write-type right this ABI knows; what is not handled stays
 * allowed (reads, execute, and the network: kubectl reads /etc/ssl and its
 * kubeconfig and talks to the API server). */
static uint64_t handled_fs(int abi)
{
	uint64_t a = LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_REMOVE_DIR |
	             LANDLOCK_ACCESS_FS_REMOVE_FILE | LANDLOCK_ACCESS_FS_MAKE_CHAR |
	             LANDLOCK_ACCESS_FS_MAKE_DIR | LANDLOCK_ACCESS_FS_MAKE_REG |
	             LANDLOCK_ACCESS_FS_MAKE_SOCK | LANDLOCK_ACCESS_FS_MAKE_FIFO |
	             LANDLOCK_ACCESS_FS_MAKE_BLOCK | LANDLOCK_ACCESS_FS_MAKE_SYM;
	if (abi >= 2)
		a |= LANDLOCK_ACCESS_FS_REFER;
	if (abi >= 3)
		a |= LANDLOCK_ACCESS_FS_TRUNCATE;
	if (abi >= 5)
		a |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
	return a;
}

static enum ca_err add_rule(int ruleset, const char *path, int flags, uint64_t access, char *err,
                            size_t errlen)
{
	struct landlock_path_beneath_attr pb = {.allowed_access = access};
	pb.parent_fd = open(path, O_PATH | O_CLOEXEC | flags);
	if (pb.parent_fd < 0) {
		ca_set_err(err, errlen, "landlock: open %s: %s", path, strerror(errno));
		return CA_EIO;
	}
	long r = syscall(SYS_landlock_add_rule, ruleset, LANDLOCK_RULE_PATH_BENEATH, &pb, 0);
	int e = errno;
	close(pb.parent_fd);
	if (r != 0) {
		ca_set_err(err, errlen, "landlock: rule for %s: %s", path, strerror(e));
		return CA_EIO;
	}
	return CA_OK;
}

/* The ruleset for one command, made before the fork (it allocates in the
 * kernel and opens fds). Writes are allowed beneath dir, except making
 * device nodes; and writing /dev/null, which shells and Go's os/exec open
 * for output they discard. */
static enum ca_err make_ruleset(int abi, const char *dir, int *out, char *err, size_t errlen)
{
	enum ca_err rc = CA_EIO;
	uint64_t handled = handled_fs(abi);
	struct ruleset_attr attr = {.handled_access_fs = handled};
	if (abi >= 6)
		attr.scoped = LANDLOCK_SCOPE_SIGNAL | LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET;
	int fd = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
	if (fd < 0) {
		ca_set_err(err, errlen, "landlock: create ruleset: %s", strerror(errno));
		return CA_EIO;
	}
	uint64_t in_dir = handled & ~(LANDLOCK_ACCESS_FS_MAKE_CHAR | LANDLOCK_ACCESS_FS_MAKE_BLOCK |
	                              LANDLOCK_ACCESS_FS_IOCTL_DEV);
	uint64_t dev_null = handled & (LANDLOCK_ACCESS_FS_WRITE_FILE | LANDLOCK_ACCESS_FS_TRUNCATE |
	                               LANDLOCK_ACCESS_FS_IOCTL_DEV);
	if ((rc = add_rule(fd, dir, O_DIRECTORY, in_dir, err, errlen)) ||
	    (rc = add_rule(fd, "/dev/null", 0, dev_null, err, errlen))) {
		close(fd);
		return rc;
	}
	*out = fd;
	return CA_OK;
}

/* ------------------------------------------------------------------ */
/* new / free                                                          */

enum ca_err ca_sandbox_new(const struct ca_sandbox_limits *lim, struct ca_sandbox **out, char *err,
                           size_t errlen)
{
	enum ca_err rc;
	struct ca_sandbox *sb = NULL;

	*out = NULL;
	if (!lim || lim->memory_bytes <= 0 || lim->cpu_seconds <= 0 || lim->processes <= 0 ||
	    lim->open_files <= 0 || lim->file_bytes < 0) {
		ca_set_err(err, errlen, "sandbox limits must be > 0 (file_bytes >= 0)");
		return CA_EINVAL;
	}
	if (!(sb = calloc(1, sizeof *sb))) {
		ca_set_err(err, errlen, "out of memory");
		return CA_ENOMEM;
	}
	sb->lim = *lim;
	if ((rc = build_filter(&sb->prog, err, errlen)) != CA_OK) {
		ca_sandbox_free(sb);
		return rc;
	}
	sb->landlock_abi = probe_landlock(sb->landlock_status, sizeof sb->landlock_status);
	*out = sb;
	return CA_OK;
}

void ca_sandbox_free(struct ca_sandbox *sb)
{
	if (!sb)
		return;
	free(sb->prog.filter);
	free(sb);
}

int ca_sandbox_landlock_abi(const struct ca_sandbox *sb)
{
	return sb->landlock_abi;
}

const char *ca_sandbox_landlock_status(const struct ca_sandbox *sb)
{
	return sb->landlock_status;
}

/* ------------------------------------------------------------------ */
/* The private dir                                                     */

enum ca_err ca_sandbox_make_dir(const char *base, char *out, size_t outlen, char *err,
                                size_t errlen)
{
	if (!base || !*base) {
		ca_set_err(err, errlen, "the work dir is empty");
		return CA_EINVAL;
	}
	size_t blen = strlen(base);
	const char *sep = base[blen - 1] == '/' ? "" : "/";
	int n = snprintf(out, outlen, "%s%scollect-agent-cmd-XXXXXX", base, sep);
	if (n < 0 || (size_t)n >= outlen) {
		ca_set_err(err, errlen, "work dir path too long: %s", base);
		if (outlen)
			out[0] = '\0';
		return CA_EINVAL;
	}
	const char *made = mkdtemp(out);
	if (!made) {
		ca_set_err(err, errlen, "mkdtemp %s: %s", out, strerror(errno));
		out[0] = '\0';
		return CA_EIO;
	}
	/* mkdtemp's 0700 passes through the umask; say it outright. */
	if (chmod(made, 0700) != 0) {
		ca_set_err(err, errlen, "chmod %s: %s", made, strerror(errno));
		(void)rmdir(made);
		out[0] = '\0';
		return CA_EIO;
	}
	return CA_OK;
}

static enum ca_err worse(enum ca_err a, enum ca_err b)
{
	return a != CA_OK ? a : b;
}

/* Open a subdirectory without following a symlink; one the command made
 * unreadable (chmod 000) is given back its owner bits first. By the time
 * this runs the command's group is dead, so nothing swaps the entry
 * between the fstatat and the fchmodat. */
static int open_subdir(int dfd, const char *name)
{
	int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd >= 0 || errno != EACCES)
		return fd;
	struct stat st;
	if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISDIR(st.st_mode) ||
	    fchmodat(dfd, name, 0700, 0) != 0) {
		errno = EACCES;
		return -1;
	}
	return openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

/* Empty the directory open as dfd (not closed here). */
static enum ca_err clear_dir(int dfd, int depth)
{
	enum ca_err rc = CA_OK;
	struct stat st;

	/* Entries are removed through dfd: that needs write and search on it. */
	if (fstat(dfd, &st) == 0 && (st.st_mode & 0700) != 0700)
		(void)fchmod(dfd, (st.st_mode & 07777) | 0700);
	/* Removing entries while readdir walks the directory is fine on Linux
	 * for entries already returned; a second pass catches anything a
	 * filesystem skipped. */
	for (int pass = 0; pass < 3; pass++) {
		int walk = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
		DIR *d = walk >= 0 ? fdopendir(walk) : NULL;
		if (!d) {
			if (walk >= 0)
				close(walk);
			return CA_EIO;
		}
		rewinddir(d);
		bool seen = false;
		rc = CA_OK;
		struct dirent *e;
		while ((e = readdir(d))) {
			const char *name = e->d_name;
			if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
				continue;
			seen = true;
			/* Files, symlinks (the link itself), fifos, sockets. */
			if (unlinkat(dfd, name, 0) == 0)
				continue;
			if (errno != EISDIR) {
				rc = worse(rc, CA_EIO);
				continue;
			}
			if (depth + 1 > CA_SANDBOX_MAX_DEPTH) {
				rc = worse(rc, CA_ETOOBIG);
				continue;
			}
			int sub = open_subdir(dfd, name);
			if (sub < 0) {
				rc = worse(rc, CA_EIO);
				continue;
			}
			enum ca_err r = clear_dir(sub, depth + 1);
			close(sub);
			rc = worse(rc, r);
			if (r == CA_OK && unlinkat(dfd, name, AT_REMOVEDIR) != 0)
				rc = worse(rc, CA_EIO);
		}
		closedir(d);
		if (!seen || rc != CA_OK)
			break;
	}
	return rc;
}

enum ca_err ca_sandbox_remove_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 && errno == EACCES) {
		struct stat st;
		if (lstat(dir, &st) == 0 && S_ISDIR(st.st_mode) && chmod(dir, 0700) == 0)
			fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	}
	if (fd < 0) {
		if (errno == ENOENT)
			return CA_ENOTFOUND;
		return errno == ENOTDIR || errno == ELOOP ? CA_EINVAL : CA_EIO;
	}
	enum ca_err rc = clear_dir(fd, 0);
	close(fd);
	if (rc == CA_OK && rmdir(dir) != 0)
		rc = CA_EIO;
	return rc;
}

/* ------------------------------------------------------------------ */
/* The child, between clone and execve: raw system calls only          */

enum step {
	STEP_SIGNALS = 1,
	STEP_SETSID,
	STEP_STDIN,
	STEP_STDOUT,
	STEP_STDERR,
	STEP_CHDIR,
	STEP_RLIMIT, /* + index into plan.rl */
	STEP_NO_NEW_PRIVS = STEP_RLIMIT + 16,
	STEP_LANDLOCK,
	STEP_CLOSE_FDS,
	STEP_SECCOMP,
	STEP_EXEC,
};

struct report {
	int32_t step, error;
};

#define N_RLIMITS 6

/* Everything the child needs, computed before the fork. */
struct plan {
	const char *path, *dir;
	char *const *argv, *const *envp;
	int null_fd, out_w, err_w, status_w, ruleset;
	int resource[N_RLIMITS];
	struct rlimit rl[N_RLIMITS];
	unsigned close_max; /* the close loop's bound when close_range is missing */
	const struct sock_fprog *prog;
};

static const char *const rlimit_names[N_RLIMITS] = {"RLIMIT_CPU",   "RLIMIT_AS",    "RLIMIT_NOFILE",
                                                    "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_CORE"};

/* The child runs on its own stack in the agent's memory (vfork_child):
 * AddressSanitizer's stack poisoning there would be left behind in the
 * shadow the agent shares, so its functions are not instrumented. */
#define CHILD_CODE __attribute__((no_sanitize_address))

static void fail(const struct plan *p, int step) __attribute__((noreturn));
CHILD_CODE static void fail(const struct plan *p, int step)
{
	struct report r = {step, errno};
	/* 8 bytes into a pipe: atomic, and the parent is reading. */
	while (write(p->status_w, &r, sizeof r) < 0 && errno == EINTR)
		;
	_exit(127);
}

CHILD_CODE static void close_others(const struct plan *p)
{
	unsigned keep = (unsigned)p->status_w; /* close-on-exec: goes at execve */
	if ((keep == 3 || close_range(3, keep - 1, 0) == 0) && close_range(keep + 1, ~0U, 0) == 0)
		return;
	if (errno != ENOSYS)
		fail(p, STEP_CLOSE_FDS);
	/* No close_range (kernel < 5.9, or a runtime's seccomp profile). */
	for (unsigned fd = 3; fd < p->close_max; fd++)
		if (fd != keep)
			(void)close((int)fd);
}

static void child(const struct plan *p) __attribute__((noreturn));
CHILD_CODE static void child(const struct plan *p)
{
	/* Handlers were copied from the agent and ignored signals survive
	 * execve; all go back to default (SIGPIPE too) before the mask, which
	 * the parent set to all-blocked around the clone, is emptied. */
	struct sigaction dfl;
	memset(&dfl, 0, sizeof dfl);
	dfl.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		if (sig != SIGKILL && sig != SIGSTOP)
			(void)sigaction(sig, &dfl, NULL); /* glibc's own two say EINVAL */
	sigset_t none;
	sigemptyset(&none);
	if (sigprocmask(SIG_SETMASK, &none, NULL) != 0)
		fail(p, STEP_SIGNALS);
	if (setsid() < 0)
		fail(p, STEP_SETSID);
	if (dup2(p->null_fd, 0) < 0)
		fail(p, STEP_STDIN);
	if (dup2(p->out_w, 1) < 0)
		fail(p, STEP_STDOUT);
	if (dup2(p->err_w, 2) < 0)
		fail(p, STEP_STDERR);
	if (chdir(p->dir) != 0)
		fail(p, STEP_CHDIR);
	/* The commands share the agent's container and its memory limit: when
	 * it is reached, the kernel kills a command, not the agent. Best
	 * effort (a read-only /proc says no); before Landlock, which would. */
	int oom = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (oom >= 0) {
		if (write(oom, "1000", 4) < 0) {
			/* keep going: the limit still holds, only the victim differs */
		}
		(void)close(oom);
	}
	for (int i = 0; i < N_RLIMITS; i++)
		if (setrlimit((__rlimit_resource_t)p->resource[i], &p->rl[i]) != 0)
			fail(p, STEP_RLIMIT + i);
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		fail(p, STEP_NO_NEW_PRIVS);
	if (p->ruleset >= 0 && syscall(SYS_landlock_restrict_self, p->ruleset, 0) != 0)
		fail(p, STEP_LANDLOCK);
	close_others(p);
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, p->prog) != 0)
		fail(p, STEP_SECCOMP);
	execve(p->path, p->argv, p->envp);
	fail(p, STEP_EXEC);
}

/* ------------------------------------------------------------------ */
/* spawn / kill / reap                                                 */

/* clone3 hands back a pidfd atomically; without it (kernel < 5.3, or a
 * container runtime whose seccomp profile answers ENOSYS) fork and
 * pidfd_open: safe, since the child cannot be reaped by anyone else before
 * we open its pidfd. Returns the pid, 0 in the child, -1 with errno. */
CHILD_CODE static int child_entry(void *arg)
{
	child(arg);
}

/* The way posix_spawn starts a child: it shares the agent's memory
 * (CLONE_VM) on a stack of its own, and the calling thread waits
 * (CLONE_VFORK) until it has exec'd or failed, so the agent's page tables
 * are neither copied at the clone nor torn down at the exec -- the cost of
 * a fork grows with the agent, this does not. Safe because the child makes
 * only raw system calls and writes nothing but its own stack (and errno)
 * before execve; its signal handlers are its own (no CLONE_SIGHAND).
 * Returns the pid, or -1 with errno (then the caller tries clone3). */
#define VFORK_STACK_BYTES (64 * 1024)

static pid_t vfork_child(const struct plan *p, int *pidfd)
{
	char *stack = mmap(NULL, VFORK_STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK,
	                   -1, 0);
	if (stack == MAP_FAILED)
		return -1;
	pid_t pid = clone(child_entry, stack + VFORK_STACK_BYTES, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD,
	                  (void *)p, pidfd);
	int e = errno;
	munmap(stack, VFORK_STACK_BYTES);
	errno = e;
	return pid;
}

static pid_t clone_child(int *pidfd, const char **what)
{
	struct clone3_args args;
	memset(&args, 0, sizeof args);
	args.flags = CLONE_PIDFD;
	args.pidfd = (uint64_t)(uintptr_t)pidfd;
	args.exit_signal = SIGCHLD; /* waitid without __WALL */
	*what = "clone3";
	long r = syscall(SYS_clone3, &args, sizeof args);
	if (r >= 0 || errno != ENOSYS)
		return (pid_t)r;
	*what = "fork";
	pid_t pid = fork();
	if (pid <= 0)
		return pid;
	*what = "pidfd_open";
	if ((*pidfd = pidfd_open(pid, 0)) < 0) {
		int e = errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		errno = e;
		return -1;
	}
	return pid;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* The child dup2s onto 0..2; a source fd among them (the agent started
 * with a standard fd closed) would be clobbered first. */
static int above_stdio(int *fd)
{
	if (*fd > 2)
		return 0;
	int nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (nfd < 0)
		return -1;
	close(*fd);
	*fd = nfd;
	return 0;
}

static void plan_limits(const struct ca_sandbox *sb, struct plan *p)
{
	const struct ca_sandbox_limits *l = &sb->lim;
	static const int res[N_RLIMITS] = {RLIMIT_CPU,   RLIMIT_AS,    RLIMIT_NOFILE,
	                                   RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_CORE};
	/* CPU: SIGXCPU at the soft limit, SIGKILL a second later. */
	const int64_t soft[N_RLIMITS] = {l->cpu_seconds, l->memory_bytes, l->open_files,
	                                 l->processes,   l->file_bytes,   0};
	const int64_t hard[N_RLIMITS] = {l->cpu_seconds + 1, l->memory_bytes, l->open_files,
	                                 l->processes,       l->file_bytes,   0};
	for (int i = 0; i < N_RLIMITS; i++) {
		struct rlimit cur;
		rlim_t s = (rlim_t)soft[i], h = (rlim_t)hard[i];
		/* Never above the agent's own hard limit: raising it is
		 * EPERM without CAP_SYS_RESOURCE. */
		if (getrlimit((__rlimit_resource_t)res[i], &cur) == 0 &&
		    cur.rlim_max != RLIM_INFINITY) {
			if (h > cur.rlim_max)
				h = cur.rlim_max;
			if (s > h)
				s = h;
		}
		p->resource[i] = res[i];
		p->rl[i].rlim_cur = s;
		p->rl[i].rlim_max = h;
	}
	struct rlimit nofile;
	p->close_max = 1024;
	if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY)
		p->close_max =
		        nofile.rlim_cur > (1u << 20) ? (1u << 20) : (unsigned)nofile.rlim_cur;
}

static void step_text(const struct plan *p, const struct report *r, char *err, size_t errlen)
{
	const char *why = strerror(r->error);
	if (r->step >= STEP_RLIMIT && r->step < STEP_RLIMIT + N_RLIMITS)
		ca_set_err(err, errlen, "setrlimit %s: %s", rlimit_names[r->step - STEP_RLIMIT],
		           why);
	else if (r->step == STEP_EXEC)
		ca_set_err(err, errlen, "exec %s: %s", p->path, why);
	else if (r->step == STEP_CHDIR)
		ca_set_err(err, errlen, "chdir %s: %s", p->dir, why);
	else {
		const char *name = r->step == STEP_SIGNALS        ? "signal mask"
		                   : r->step == STEP_SETSID       ? "setsid"
		                   : r->step == STEP_STDIN        ? "stdin"
		                   : r->step == STEP_STDOUT       ? "stdout"
		                   : r->step == STEP_STDERR       ? "stderr"
		                   : r->step == STEP_NO_NEW_PRIVS ? "no_new_privs"
		                   : r->step == STEP_LANDLOCK     ? "landlock"
		                   : r->step == STEP_CLOSE_FDS    ? "close fds"
		                   : r->step == STEP_SECCOMP      ? "seccomp"
		                                                  : "sandbox set-up";
		ca_set_err(err, errlen, "%s: %s", name, why);
	}
}

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for the child's execve: EOF on the status pipe (close-on-exec) is
 * success, a report is a failed step. 1 = exec'd, 0 = report in *r,
 * -1 = timed out, -2 = read error (errno). */
static int wait_exec(int fd, struct report *r)
{
	int64_t deadline = now_ms() + CA_SANDBOX_EXEC_WAIT_MS;
	size_t got = 0;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			return -1;
		struct pollfd pfd = {.fd = fd, .events = POLLIN};
		int n = poll(&pfd, 1, (int)left);
		if (n < 0 && errno != EINTR)
			return -2;
		if (n <= 0)
			continue;
		ssize_t k = read(fd, (char *)r + got, sizeof *r - got);
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			return -2;
		}
		if (k == 0)
			return got == 0 ? 1 : -2;
		if ((got += (size_t)k) == sizeof *r)
			return 0;
	}
}

static void reap_now(int pidfd)
{
	siginfo_t si;
	while (waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
}

enum ca_err ca_sandbox_spawn(const struct ca_sandbox *sb, const char *path, char *const argv[],
                             char *const envp[], const char *dir, struct ca_sandbox_child *out,
                             char *err, size_t errlen)
{
	static char *const no_env[] = {NULL};
	enum ca_err rc = CA_EIO;
	int null_fd = -1, out_p[2] = {-1, -1}, err_p[2] = {-1, -1}, st_p[2] = {-1, -1};
	int ruleset = -1, pidfd = -1;
	pid_t pid = -1;
	struct plan plan;

	out->pid = -1;
	out->pidfd = out->out_fd = out->err_fd = -1;
	if (!path || path[0] != '/' || !argv || !argv[0] || !dir || !*dir) {
		ca_set_err(err, errlen, "spawn needs an absolute path, argv[0] and a dir");
		return CA_EINVAL;
	}
	if ((null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		ca_set_err(err, errlen, "open /dev/null: %s", strerror(errno));
		goto out;
	}
	if (pipe2(out_p, O_CLOEXEC) != 0 || pipe2(err_p, O_CLOEXEC) != 0 ||
	    pipe2(st_p, O_CLOEXEC) != 0) {
		ca_set_err(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	if (above_stdio(&null_fd) || above_stdio(&out_p[1]) || above_stdio(&err_p[1]) ||
	    above_stdio(&st_p[1])) {
		ca_set_err(err, errlen, "fcntl F_DUPFD: %s", strerror(errno));
		goto out;
	}
	if (fcntl(out_p[0], F_SETFL, O_NONBLOCK) != 0 ||
	    fcntl(err_p[0], F_SETFL, O_NONBLOCK) != 0) {
		ca_set_err(err, errlen, "fcntl O_NONBLOCK: %s", strerror(errno));
		goto out;
	}
	if (sb->landlock_abi > 0 &&
	    (rc = make_ruleset(sb->landlock_abi, dir, &ruleset, err, errlen)) != CA_OK)
		goto out;
	rc = CA_EIO;

	memset(&plan, 0, sizeof plan);
	plan.path = path;
	plan.dir = dir;
	plan.argv = argv;
	plan.envp = envp ? envp : no_env;
	plan.null_fd = null_fd;
	plan.out_w = out_p[1];
	plan.err_w = err_p[1];
	plan.status_w = st_p[1];
	plan.ruleset = ruleset;
	plan.prog = &sb->prog;
	plan_limits(sb, &plan);

	/* No handler of the agent's may run in the child before it resets
	 * them: block everything around the clone (as posix_spawn does). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	const char *what = "clone";
	pid = vfork_child(&plan, &pidfd);
	if (pid < 0 && (errno == EINVAL || errno == ENOSYS || errno == EPERM)) {
		/* No CLONE_PIDFD (kernel < 5.2) or a runtime's profile refuses it. */
		what = "clone3";
		pid = clone_child(&pidfd, &what);
		if (pid == 0)
			child(&plan);
	}
	int clone_errno = errno;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (pid < 0) {
		ca_set_err(err, errlen, "%s: %s", what, strerror(clone_errno));
		goto out;
	}
	close_fd(&out_p[1]);
	close_fd(&err_p[1]);
	close_fd(&st_p[1]);
	close_fd(&null_fd);
	close_fd(&ruleset);

	struct report r;
	int w = wait_exec(st_p[0], &r);
	if (w != 1) {
		if (w == 0) {
			step_text(&plan, &r, err, errlen);
		} else if (w == -1) {
			rc = CA_ETIMEDOUT;
			ca_set_err(err, errlen, "the child did not exec within %d ms",
			           CA_SANDBOX_EXEC_WAIT_MS);
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
		} else {
			ca_set_err(err, errlen, "status pipe: %s", strerror(errno));
			kill(-pid, SIGKILL);
			kill(pid, SIGKILL);
		}
		/* A failed step _exits at once; a killed child goes at once. */
		reap_now(pidfd);
		goto out;
	}
	out->pid = pid;
	out->pidfd = pidfd;
	out->out_fd = out_p[0];
	out->err_fd = err_p[0];
	pidfd = out_p[0] = err_p[0] = -1;
	rc = CA_OK;
out:
	close_fd(&pidfd);
	close_fd(&null_fd);
	close_fd(&ruleset);
	for (int i = 0; i < 2; i++) {
		close_fd(&out_p[i]);
		close_fd(&err_p[i]);
		close_fd(&st_p[i]);
	}
	return rc;
}

void ca_sandbox_kill_group(const struct ca_sandbox_child *c, int sig)
{
	if (c && c->pid > 0)
		(void)kill(-c->pid, sig);
}

enum ca_err ca_sandbox_reap(struct ca_sandbox_child *c, int *exit_code, int *term_signal)
{
	siginfo_t si;

	if (exit_code)
		*exit_code = -1;
	if (term_signal)
		*term_signal = 0;
	if (!c || c->pidfd < 0)
		return CA_EINVAL;
	/* Peek first: the event loop must never block here. */
	memset(&si, 0, sizeof si);
	if (waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED | WNOHANG | WNOWAIT) == 0 &&
	    si.si_pid == 0)
		return CA_EAGAIN;
	/* The leader's zombie still pins the pgid: no new group can take it
	 * until the waitid below, so this reaches only the command's own. */
	(void)kill(-c->pid, SIGKILL);
	memset(&si, 0, sizeof si);
	int r;
	while ((r = waitid(P_PIDFD, (id_t)c->pidfd, &si, WEXITED)) < 0 && errno == EINTR)
		;
	close_fd(&c->pidfd);
	c->pid = -1;
	if (r < 0)
		return CA_EIO;
	if (si.si_code == CLD_EXITED) {
		if (exit_code)
			*exit_code = si.si_status;
	} else if (term_signal) {
		*term_signal = si.si_status;
	}
	return CA_OK;
}

enum ca_err ca_sandbox_reap_killed(struct ca_sandbox_child *c, int timeout_ms, int *exit_code,
                                   int *term_signal)
{
	if (!c || c->pidfd < 0)
		return ca_sandbox_reap(c, exit_code, term_signal);
	/* A pidfd turns readable when its process has exited. */
	struct pollfd p = {.fd = c->pidfd, .events = POLLIN};
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (int left = timeout_ms; left > 0;) {
		if (poll(&p, 1, left) >= 0 || errno != EINTR)
			break; /* exited, timed out, or an error: reap tells */
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = timeout_ms - (int)((now.tv_sec - start.tv_sec) * 1000 +
		                          (now.tv_nsec - start.tv_nsec) / 1000000);
	}
	return ca_sandbox_reap(c, exit_code, term_signal);
}
