/* tests/unit/test_sandbox.c: exec/sandbox driven directly, with the probe
 * (tests/tools/sandbox_probe.c) as the command.
 *
 * The test process makes itself a child subreaper, as the agent is when it
 * runs as PID 1 of its container: the group members that ca_sandbox_reap
 * kills after their leader are reparented here, and reap_orphans() collects
 * them, so "the group is gone" can be checked with kill(-pgid, 0). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <limits.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <seccomp.h>

#include "check.h"
#include "exec/sandbox.h"

#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#define UNDER_VALGRIND() RUNNING_ON_VALGRIND
#endif
#endif
#ifndef UNDER_VALGRIND
#define UNDER_VALGRIND() 0
#endif

#define MIB ((int64_t)1 << 20)

static const char *probe = CA_SANDBOX_PROBE;
static char *const clean_env[] = {"CA_ONLY=1", "PATH=/usr/bin:/bin", NULL};
static int64_t default_processes;

struct result {
	enum ca_err rc;
	char why[256];
	char *out, *err;
	size_t out_len, err_len;
	int exit_code, term_signal;
	pid_t pid;
	bool timed_out;
};

/* What run() does to the child while it runs. */
struct opts {
	const char *term_on; /* SIGTERM the group once stdout holds this */
	int term_after_ms;   /* or this long after the start (0: never) */
	bool close_out;      /* close stdout's read end at once (SIGPIPE) */
	int timeout_ms;      /* then SIGKILL (default 20 s) */
	void (*on_spawn)(const struct ca_sandbox_child *c, void *arg);
	void *arg;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static void reap_orphans(void)
{
	siginfo_t si;
	for (;;) {
		memset(&si, 0, sizeof si);
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG) != 0 || si.si_pid == 0)
			return;
	}
}

/* No process left in the group (orphans reaped), within 3 s. */
static bool group_gone(pid_t pgid)
{
	int64_t end = now_ms() + 3000;
	do {
		reap_orphans();
		if (kill(-pgid, 0) != 0 && errno == ESRCH)
			return true;
		sleep_ms(10);
	} while (now_ms() < end);
	return false;
}

static void drain(int *fd, char **buf, size_t *len)
{
	for (;;) {
		char chunk[65536];
		ssize_t n = read(*fd, chunk, sizeof chunk);
		if (n > 0) {
			char *nb = realloc(*buf, *len + (size_t)n + 1);
			if (!nb)
				abort();
			memcpy(nb + *len, chunk, (size_t)n);
			*len += (size_t)n;
			nb[*len] = '\0';
			*buf = nb;
			continue;
		}
		if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close(*fd);
			*fd = -1;
		}
		return;
	}
}

/* Spawn the probe with argv (NULL-terminated, argv[0] is the path) and
 * drive it to the end with a poll loop over stdout, stderr and the pidfd,
 * as the executor's event loop would. */
static void run_path(const struct ca_sandbox *sb, const char *path, char *const argv[],
                     char *const envp[], const char *dir, const struct opts *o, struct result *r)
{
	static const struct opts none;
	struct ca_sandbox_child c;
	if (!o)
		o = &none;
	memset(r, 0, sizeof *r);
	r->out = calloc(1, 1);
	r->err = calloc(1, 1);
	r->exit_code = -2;
	r->term_signal = -1;
	int64_t start = now_ms();
	r->rc = ca_sandbox_spawn(sb, path, argv, envp, dir, &c, r->why, sizeof r->why);
	r->pid = c.pid;
	if (r->rc != CA_OK)
		return;
	if (o->on_spawn)
		o->on_spawn(&c, o->arg);
	if (o->close_out) {
		close(c.out_fd);
		c.out_fd = -1;
	}
	bool termed = false, killed = false;
	int64_t deadline = start + (o->timeout_ms ? o->timeout_ms : 20000);
	while (c.out_fd >= 0 || c.err_fd >= 0 || c.pidfd >= 0) {
		struct pollfd p[3] = {
		        {c.out_fd, POLLIN, 0}, {c.err_fd, POLLIN, 0}, {c.pidfd, POLLIN, 0}};
		int n = poll(p, 3, 50);
		if (n < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			drain(&c.out_fd, &r->out, &r->out_len);
		if (p[1].revents)
			drain(&c.err_fd, &r->err, &r->err_len);
		if (p[2].revents)
			CHECK_INT(ca_sandbox_reap(&c, &r->exit_code, &r->term_signal), CA_OK);
		if (!termed && ((o->term_on && strstr(r->out, o->term_on)) ||
		                (o->term_after_ms && now_ms() - start >= o->term_after_ms))) {
			ca_sandbox_kill_group(&c, SIGTERM);
			termed = true;
		}
		if (!killed && now_ms() > deadline) {
			r->timed_out = true;
			ca_sandbox_kill_group(&c, SIGKILL);
			killed = true;
		}
	}
	reap_orphans();
}

static void run(const struct ca_sandbox *sb, const char *dir, const struct opts *o,
                struct result *r, const char *a1, const char *a2, const char *a3, const char *a4)
{
	char *argv[] = {(char *)probe, (char *)a1, (char *)a2, (char *)a3, (char *)a4, NULL};
	run_path(sb, probe, argv, clean_env, dir, o, r);
}

static void result_free(struct result *r)
{
	free(r->out);
	free(r->err);
}

/* /proc files say size 0: read until EOF (check_read_file sizes by seek). */
static char *read_proc(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	size_t cap = 65536, len = 0;
	char *buf = malloc(cap + 1);
	ssize_t n;
	while (buf && len < cap && (n = read(fd, buf + len, cap - len)) > 0)
		len += (size_t)n;
	close(fd);
	if (buf)
		buf[len] = '\0';
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Tasks (threads included, as RLIMIT_NPROC counts them) whose real UID is
 * uid, from /proc. */
static int64_t tasks_of_uid(uid_t uid)
{
	int64_t count = 0;
	DIR *d = opendir("/proc");
	struct dirent *e;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		char path[300];
		snprintf(path, sizeof path, "/proc/%s/status", e->d_name);
		char *s = read_proc(path);
		if (!s)
			continue;
		const char *u = strstr(s, "\nUid:");
		const char *t = strstr(s, "\nThreads:");
		if (u && t && strtoul(u + 5, NULL, 10) == uid)
			count += strtol(t + 9, NULL, 10);
		free(s);
	}
	if (d)
		closedir(d);
	return count;
}

static struct ca_sandbox *new_sandbox(int64_t memory, int64_t cpu, int64_t files_bytes,
                                      int64_t processes)
{
	struct ca_sandbox_limits lim = {.memory_bytes = memory,
	                                .cpu_seconds = cpu,
	                                .processes = processes ? processes : default_processes,
	                                .open_files = 256,
	                                .file_bytes = files_bytes};
	struct ca_sandbox *sb = NULL;
	char err[256] = "";
	enum ca_err rc = ca_sandbox_new(&lim, &sb, err, sizeof err);
	CHECK_INT(rc, CA_OK);
	if (rc != CA_OK)
		fprintf(stderr, "ca_sandbox_new: %s\n", err);
	return sb;
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	while (d && readdir(d))
		n++;
	if (d)
		closedir(d);
	return n;
}

/* ------------------------------------------------------------------ */

static void test_new(struct ca_sandbox *sb)
{
	struct ca_sandbox_limits bad = {.memory_bytes = 0,
	                                .cpu_seconds = 1,
	                                .processes = 1,
	                                .open_files = 8,
	                                .file_bytes = 0};
	struct ca_sandbox *none = (struct ca_sandbox *)1;
	char err[128] = "";
	CHECK_INT(ca_sandbox_new(&bad, &none, err, sizeof err), CA_EINVAL);
	CHECK(none == NULL);
	CHECK(err[0] != '\0');
	ca_sandbox_free(NULL);

	int abi = ca_sandbox_landlock_abi(sb);
	const char *status = ca_sandbox_landlock_status(sb);
	printf("note: %s\n", status);
	if (abi > 0) {
		char want[32];
		snprintf(want, sizeof want, "landlock ABI %d: ", abi);
		CHECK(strncmp(status, want, strlen(want)) == 0);
	} else {
		CHECK(strncmp(status, "landlock unavailable: ", 22) == 0);
	}
}

static void test_make_dir(void)
{
	char dir[PATH_MAX], err[256];
	mode_t old = umask(0777); /* mkdtemp's mode goes through the umask */
	CHECK_INT(ca_sandbox_make_dir("/tmp/", dir, sizeof dir, err, sizeof err), CA_OK);
	umask(old);
	CHECK(strncmp(dir, "/tmp/collect-agent-cmd-", 23) == 0);
	CHECK_INT(strlen(dir), 23 + 6);
	struct stat st;
	CHECK(lstat(dir, &st) == 0 && S_ISDIR(st.st_mode));
	CHECK_INT(st.st_mode & 07777, 0700);
	CHECK_INT(ca_sandbox_remove_dir(dir), CA_OK);

	char small[16];
	CHECK_INT(ca_sandbox_make_dir("/tmp", small, sizeof small, err, sizeof err), CA_EINVAL);
	CHECK_INT(ca_sandbox_make_dir("", dir, sizeof dir, err, sizeof err), CA_EINVAL);
	CHECK_INT(ca_sandbox_make_dir("/nonexistent-ca-base", dir, sizeof dir, err, sizeof err),
	          CA_EIO);
	CHECK(strstr(err, "mkdtemp /nonexistent-ca-base/collect-agent-cmd-") != NULL);
}

static void test_env_fds_cwd(struct ca_sandbox *sb, const char *dir)
{
	struct result r;
	setenv("CA_SANDBOX_CANARY", "leaked", 1);
	run(sb, dir, NULL, &r, "env", NULL, NULL, NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_INT(r.exit_code, 0);
	CHECK_STR(r.out, "CA_ONLY=1\nPATH=/usr/bin:/bin\n");
	result_free(&r);
	unsetenv("CA_SANDBOX_CANARY");

	/* A descriptor the agent forgot to mark close-on-exec, at a low and
	 * a high number. */
	int leak = open("/dev/null", O_RDONLY);
	int leak_high = fcntl(leak, F_DUPFD, 200);
	CHECK(leak >= 0 && leak_high >= 200);
	run(sb, dir, NULL, &r, "fds", NULL, NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	CHECK_INT(count_lines(r.out), 3);
	CHECK(strncmp(r.out, "0 /dev/null\n1 pipe:[", 20) == 0);
	CHECK(strstr(r.out, "\n2 pipe:[") != NULL);
	if (count_lines(r.out) != 3)
		fprintf(stderr, "fds seen by the child:\n%s", r.out);
	result_free(&r);
	close(leak);
	close(leak_high);

	run(sb, dir, NULL, &r, "cwd", NULL, NULL, NULL);
	char want[PATH_MAX + 2], real[PATH_MAX];
	CHECK(realpath(dir, real) != NULL);
	snprintf(want, sizeof want, "%s\n", real);
	CHECK_STR(r.out, want);
	result_free(&r);

	/* argv passes through as given; the exit code comes back. */
	run(sb, dir, NULL, &r, "echo", "a", "b c", "--x=1");
	CHECK_STR(r.out, "a\nb c\n--x=1\n");
	result_free(&r);
	run(sb, dir, NULL, &r, "exit", "42", NULL, NULL);
	CHECK_INT(r.exit_code, 42);
	CHECK_INT(r.term_signal, 0);
	result_free(&r);
}

static void test_landlock(struct ca_sandbox *sb, const char *dir)
{
	struct result r;
	char path[PATH_MAX + 64], outside[PATH_MAX], err[256];

	run(sb, dir, NULL, &r, "write", "inside.txt", NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	result_free(&r);
	snprintf(path, sizeof path, "%s/inside.txt", dir);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 5);
	snprintf(path, sizeof path, "%s/absolute.txt", dir);
	run(sb, dir, NULL, &r, "write", path, NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	result_free(&r);
	run(sb, dir, NULL, &r, "write", "/dev/null", NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	result_free(&r);

	CHECK_INT(ca_sandbox_make_dir("/tmp", outside, sizeof outside, err, sizeof err), CA_OK);
	snprintf(path, sizeof path, "%s/escaped.txt", outside);
	run(sb, dir, NULL, &r, "write", path, NULL, NULL);
	if (ca_sandbox_landlock_abi(sb) > 0) {
		CHECK_INT(r.exit_code, 3);
		CHECK(strstr(r.out, "Permission denied") != NULL);
		CHECK(access(path, F_OK) != 0);
	} else {
		printf("note: landlock unavailable, writing outside the dir not checked\n");
	}
	result_free(&r);
	/* Reads stay allowed (kubectl reads /etc/ssl, its kubeconfig). */
	run(sb, dir, NULL, &r, "ls", "/etc", NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	CHECK(strstr(r.out, "passwd\n") != NULL);
	result_free(&r);

	/* ABI 6 scopes signals: the command cannot signal the agent. */
	char pid[32];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	run(sb, dir, NULL, &r, "signal", pid, NULL, NULL);
	if (ca_sandbox_landlock_abi(sb) >= 6)
		CHECK_INT(r.exit_code, 3);
	else
		printf("note: landlock ABI < 6, signal scoping not checked\n");
	result_free(&r);
	CHECK_INT(ca_sandbox_remove_dir(outside), CA_OK);
}

static void test_seccomp(struct ca_sandbox *sb, const char *dir)
{
	static const char *const killed[] = {
		"mount",
		"umount2",
		"pivot_root",
		"chroot",
		"move_mount",
		"open_tree",
		"fsopen",
		"fsconfig",
		"fsmount",
		"fspick",
		"mount_setattr",
		"ptrace",
		"process_vm_readv",
		"process_vm_writev",
		"bpf",
		"keyctl",
		"add_key",
		"request_key",
		"kexec",
		"kexec_file_load",
		"init_module",
		"finit_module",
		"delete_module",
		"reboot",
		"unshare",
		"setns",
		"swapon",
		"swapoff",
		"acct",
		"settimeofday",
		"clock_settime",
		"clock_adjtime",
		"adjtimex",
		"perf_event_open",
		"userfaultfd",
		"open_by_handle_at",
		"name_to_handle_at",
		"quotactl",
		"syslog",
		"ioperm",
		"iopl",
		"lookup_dcookie",
		"vhangup",
		"clone-newns",
		"clone-newuser",
		"clone-newpid",
		"clone-newnet",
		"clone-newuts",
		"clone-newipc",
		"clone-newcgroup",
#if defined(__x86_64__)
		"x32",
		"i386", /* non-native ABIs: libseccomp's bad-arch action */
#endif
	};
	struct result r;
	for (size_t i = 0; i < sizeof killed / sizeof killed[0]; i++) {
		run(sb, dir, NULL, &r, "syscall", killed[i], NULL, NULL);
		if (!strcmp(killed[i], "i386") && r.exit_code == 8) {
			printf("note: this kernel has no int 0x80, the i386 ABI not checked\n");
			result_free(&r);
			continue;
		}
		CHECK_INT(r.term_signal, SIGSYS);
		if (r.term_signal != SIGSYS)
			fprintf(stderr, "syscall %s: exit %d signal %d: %s\n", killed[i],
			        r.exit_code, r.term_signal, r.out);
		result_free(&r);
	}
	static const struct {
		const char *name, *out;
	} refused[] = {
	        {"clone3", "clone3: errno 38 (ENOSYS)\n"},
	        {"io_uring_setup", "io_uring_setup: errno 38 (ENOSYS)\n"},
	        {"setsid", "setsid: errno 1 (EPERM)\n"},
	        {"setpgid", "setpgid: errno 1 (EPERM)\n"},
	        {"clone-plain", "clone-plain: returned 0\n"}, /* clone itself is allowed */
	};
	for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
		run(sb, dir, NULL, &r, "syscall", refused[i].name, NULL, NULL);
		CHECK_INT(r.exit_code, 4);
		CHECK_STR(r.out, refused[i].out);
		result_free(&r);
	}
}

static void read_proc_limits(const struct ca_sandbox_child *c, void *arg)
{
	char path[64];
	snprintf(path, sizeof path, "/proc/%d/limits", (int)c->pid);
	*(char **)arg = read_proc(path);
	snprintf(path, sizeof path, "/proc/%d/status", (int)c->pid);
	char *status = read_proc(path);
	CHECK(status && strstr(status, "\nNoNewPrivs:\t1\n"));
	CHECK(status && strstr(status, "\nSeccomp:\t2\n"));
	free(status);
	ca_sandbox_kill_group(c, SIGKILL);
}

static bool limit_is(const char *limits, const char *name, const char *soft, const char *hard)
{
	const char *l = limits ? strstr(limits, name) : NULL;
	char s[32], h[32];
	return l && sscanf(l + strlen(name), " %31s %31s", s, h) == 2 && !strcmp(s, soft) &&
	       !strcmp(h, hard);
}

static void test_limits(struct ca_sandbox *sb, const char *dir)
{
	char *limits = NULL;
	struct opts o = {.on_spawn = read_proc_limits, .arg = &limits};
	struct result r;
	run(sb, dir, &o, &r, "sleep", "30", NULL, NULL);
	CHECK_INT(r.term_signal, SIGKILL);
	CHECK(limit_is(limits, "Max cpu time", "10", "11"));
	CHECK(limit_is(limits, "Max file size", "16777216", "16777216"));
	CHECK(limit_is(limits, "Max open files", "256", "256"));
	CHECK(limit_is(limits, "Max address space", "536870912", "536870912"));
	CHECK(limit_is(limits, "Max core file size", "0", "0"));
	char nproc[32];
	snprintf(nproc, sizeof nproc, "%lld", (long long)default_processes);
	CHECK(limit_is(limits, "Max processes", nproc, nproc));
	free(limits);
	result_free(&r);

	/* Memory: RLIMIT_AS makes malloc fail. */
	struct ca_sandbox *small = new_sandbox(256 * MIB, 10, 64 * 1024, 0);
	char bytes[32];
	snprintf(bytes, sizeof bytes, "%lld", (long long)(512 * MIB));
	run(small, dir, NULL, &r, "alloc", bytes, NULL, NULL);
	CHECK_INT(r.exit_code, 6);
	result_free(&r);
	snprintf(bytes, sizeof bytes, "%lld", (long long)(16 * MIB));
	run(small, dir, NULL, &r, "alloc", bytes, NULL, NULL);
	CHECK_INT(r.exit_code, 0);
	result_free(&r);

	/* File size: SIGXFSZ keeps its default action, so a write past the
	 * limit kills the command (a program that ignores EFBIG cannot loop
	 * on it), and the file stops at the limit. */
	run(small, dir, NULL, &r, "write", "big.bin", "1048576", NULL);
	CHECK_INT(r.term_signal, SIGXFSZ);
	result_free(&r);
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/big.bin", dir);
	struct stat st;
	CHECK(stat(path, &st) == 0 && st.st_size == 64 * 1024);
	run(small, dir, NULL, &r, "write", "small.bin", "1000", NULL);
	CHECK_INT(r.exit_code, 0);
	result_free(&r);
	ca_sandbox_free(small);

	/* CPU: SIGXCPU at the soft limit (SIGKILL a second later). */
	struct ca_sandbox *cpu = new_sandbox(256 * MIB, 1, 0, 0);
	int64_t t0 = now_ms();
	run(cpu, dir, NULL, &r, "cpu", NULL, NULL, NULL);
	CHECK(r.term_signal == SIGXCPU || r.term_signal == SIGKILL);
	CHECK(!r.timed_out);
	printf("note: cpu loop stopped by signal %d after %lld ms\n", r.term_signal,
	       (long long)(now_ms() - t0));
	result_free(&r);
	ca_sandbox_free(cpu);
}

/* RLIMIT_NPROC counts tasks per real UID and is not enforced for root: as
 * root, a child under an unused UID runs the sandbox. */
static void test_forkbomb(void)
{
	uid_t uid = getuid();
	if (uid == 0) {
		for (uid = 61000; uid < 61100 && tasks_of_uid(uid) > 0; uid++)
			;
	}
	int64_t limit = tasks_of_uid(uid) + 30;
	int fds[2];
	CHECK(pipe(fds) == 0);
	pid_t helper = fork();
	if (helper == 0) {
		close(fds[0]);
		if (getuid() == 0 && (setgroups(0, NULL) != 0 || setresgid(uid, uid, uid) != 0 ||
		                      setresuid(uid, uid, uid) != 0))
			_exit(90);
		struct ca_sandbox_limits lim = {256 * MIB, 10, limit, 256, MIB};
		struct ca_sandbox *sb = NULL;
		char err[256], dir[PATH_MAX], line[128];
		if (ca_sandbox_new(&lim, &sb, err, sizeof err) != CA_OK ||
		    ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err) != CA_OK)
			_exit(91);
		struct result r;
		struct opts o = {.timeout_ms = 30000};
		run(sb, dir, &o, &r, "forkbomb", NULL, NULL, NULL);
		int n = snprintf(line, sizeof line, "%d %d %d %ld\n", (int)r.rc, r.exit_code,
		                 r.term_signal, strtol(r.out, NULL, 10));
		if (write(fds[1], line, (size_t)n) != n)
			_exit(92);
		ca_sandbox_remove_dir(dir);
		ca_sandbox_free(sb);
		result_free(&r);
		_exit(0);
	}
	close(fds[1]);
	char line[128] = "";
	ssize_t n = read(fds[0], line, sizeof line - 1);
	line[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	int st = 0;
	waitpid(helper, &st, 0);
	reap_orphans();
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	int rc = -1, code = -1, sig = -1;
	long forks = -1;
	CHECK(sscanf(line, "%d %d %d %ld", &rc, &code, &sig, &forks) == 4);
	CHECK_INT(rc, CA_OK);
	CHECK_INT(code, 5);
	CHECK(forks >= 1 && forks <= 30);
	printf("note: forkbomb under uid %u, RLIMIT_NPROC %lld: %ld forks\n", (unsigned)uid,
	       (long long)limit, forks);
}

static void test_groups(struct ca_sandbox *sb, const char *dir)
{
	struct result r;

	/* Children and the leader sleep: SIGTERM to the group, then SIGKILL
	 * for good measure, leaves nobody. */
	struct opts o = {.term_on = "started 3\n"};
	run(sb, dir, &o, &r, "spawn-sleepers", "3", "30", NULL);
	CHECK_INT(r.rc, CA_OK);
	CHECK_INT(r.term_signal, SIGTERM);
	CHECK(!r.timed_out);
	CHECK(group_gone(r.pid));
	result_free(&r);

	/* The leader exits while its children still run: reap kills them. */
	run(sb, dir, NULL, &r, "orphan", "3", "30", NULL);
	CHECK_INT(r.exit_code, 0);
	CHECK_STR(r.out, "started 3\n");
	CHECK(!r.timed_out);
	CHECK(group_gone(r.pid));
	result_free(&r);

	/* The agent's blocked SIGTERM and ignored SIGPIPE do not leak. */
	sigset_t term, old;
	sigemptyset(&term);
	sigaddset(&term, SIGTERM);
	sigprocmask(SIG_BLOCK, &term, &old);
	struct sigaction ign = {.sa_handler = SIG_IGN}, old_pipe;
	sigaction(SIGPIPE, &ign, &old_pipe);
	struct opts after = {.term_after_ms = 100};
	run(sb, dir, &after, &r, "sleep", "30", NULL, NULL);
	CHECK_INT(r.term_signal, SIGTERM);
	result_free(&r);
	struct opts closed = {.close_out = true};
	run(sb, dir, &closed, &r, "flood", "1048576", "stdout", NULL);
	CHECK_INT(r.term_signal, SIGPIPE);
	result_free(&r);
	sigaction(SIGPIPE, &old_pipe, NULL);
	sigprocmask(SIG_SETMASK, &old, NULL);
}

static void check_out_fds(const struct ca_sandbox_child *c, void *arg)
{
	(void)arg;
	CHECK(fcntl(c->out_fd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(c->err_fd, F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(c->out_fd, F_GETFD) & FD_CLOEXEC);
	CHECK(fcntl(c->err_fd, F_GETFD) & FD_CLOEXEC);
	CHECK(fcntl(c->pidfd, F_GETFD) & FD_CLOEXEC);
	CHECK(getpgid(c->pid) == c->pid);
	CHECK(getsid(c->pid) == c->pid);
	/* Not exited yet (it is writing 2 MiB into full pipes). */
	CHECK_INT(ca_sandbox_reap((struct ca_sandbox_child *)c, NULL, NULL), CA_EAGAIN);
}

static void test_output(struct ca_sandbox *sb, const char *dir)
{
	struct result r;
	struct opts o = {.on_spawn = check_out_fds};
	run(sb, dir, &o, &r, "flood", "1048576", "both", NULL);
	CHECK_INT(r.exit_code, 0);
	CHECK_INT(r.out_len, 1048576);
	CHECK_INT(r.err_len, 1048576);
	result_free(&r);
}

static void test_spawn_errors(struct ca_sandbox *sb, const char *dir)
{
	struct result r;
	char *argv[] = {"/nonexistent/ca-probe", NULL};
	run_path(sb, "/nonexistent/ca-probe", argv, clean_env, dir, NULL, &r);
	CHECK_INT(r.rc, CA_EIO);
	CHECK_STR(r.why, "exec /nonexistent/ca-probe: No such file or directory");
	CHECK_INT(r.pid, -1);
	errno = 0;
	CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD); /* reaped: no child left */
	result_free(&r);

	/* Not executable: execve's EACCES. */
	char path[PATH_MAX + 64];
	snprintf(path, sizeof path, "%s/not-exec", dir);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	CHECK(fd >= 0 && write(fd, "#!/bin/sh\n", 10) == 10);
	close(fd);
	argv[0] = path;
	run_path(sb, path, argv, clean_env, dir, NULL, &r);
	CHECK_INT(r.rc, CA_EIO);
	CHECK(strncmp(r.why, "exec ", 5) == 0 && strstr(r.why, "Permission denied"));
	result_free(&r);

	argv[0] = "sandbox_probe";
	run_path(sb, "sandbox_probe", argv, clean_env, dir, NULL, &r);
	CHECK_INT(r.rc, CA_EINVAL);
	result_free(&r);

	/* A dir that is gone: named by the step that found out. */
	run_path(sb, probe, argv, clean_env, "/nonexistent-ca-dir", NULL, &r);
	CHECK_INT(r.rc, CA_EIO);
	CHECK(strstr(r.why, "/nonexistent-ca-dir") != NULL);
	result_free(&r);
}

static bool copy_file(const char *from, const char *to, mode_t mode)
{
	size_t len;
	char *data = check_read_file(from, &len);
	int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	bool ok = data && fd >= 0 && write(fd, data, len) == (ssize_t)len;
	if (fd >= 0)
		close(fd);
	free(data);
	return ok;
}

/* The probe copied as "kubectl" next to a beacon file reports each start. */
static void test_beacon(struct ca_sandbox *sb, const char *dir)
{
	char tools[PATH_MAX], kubectl[PATH_MAX + 16], beacon[PATH_MAX + 16], err[256];
	CHECK_INT(ca_sandbox_make_dir("/tmp", tools, sizeof tools, err, sizeof err), CA_OK);
	chmod(tools, 0755);
	snprintf(kubectl, sizeof kubectl, "%s/kubectl", tools);
	snprintf(beacon, sizeof beacon, "%s/beacon", tools);
	CHECK(copy_file(probe, kubectl, 0755));

	int ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t salen = sizeof sa;
	CHECK(bind(ls, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(ls, 8) == 0 &&
	      getsockname(ls, (struct sockaddr *)&sa, &salen) == 0);
	char port[16];
	int n = snprintf(port, sizeof port, "%u\n", (unsigned)ntohs(sa.sin_port));
	int fd = open(beacon, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	CHECK(fd >= 0 && write(fd, port, (size_t)n) == n);
	close(fd);

	struct result r;
	char *argv[] = {kubectl, "echo", "hi", NULL};
	for (int i = 0; i < 2; i++) {
		run_path(sb, kubectl, argv, clean_env, dir, NULL, &r);
		CHECK_INT(r.exit_code, 0);
		CHECK_STR(r.out, "hi\n");
		result_free(&r);
	}
	char want[PATH_MAX + 32];
	snprintf(want, sizeof want, "%s echo hi\n", kubectl);
	int seen = 0;
	for (;;) {
		struct pollfd p = {ls, POLLIN, 0};
		if (poll(&p, 1, 500) <= 0)
			break;
		int c = accept(ls, NULL, NULL);
		if (c < 0)
			break;
		char line[PATH_MAX + 32];
		size_t got = 0;
		ssize_t k;
		while (got < sizeof line - 1 &&
		       (k = read(c, line + got, sizeof line - 1 - got)) > 0)
			got += (size_t)k;
		line[got] = '\0';
		CHECK_STR(line, want);
		close(c);
		seen++;
	}
	CHECK_INT(seen, 2);
	close(ls);
	CHECK_INT(ca_sandbox_remove_dir(tools), CA_OK);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	if (flag == FTW_DP || flag == FTW_D)
		chmod(path, 0700);
	return remove(path) == 0 ? 0 : 0;
}

static void test_remove_dir(void)
{
	char dir[PATH_MAX], outside[PATH_MAX], p[PATH_MAX + 64], err[256];
	CHECK_INT(ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err), CA_OK);
	CHECK_INT(ca_sandbox_make_dir("/tmp", outside, sizeof outside, err, sizeof err), CA_OK);
	snprintf(p, sizeof p, "%s/secret.txt", outside);
	int fd = open(p, O_WRONLY | O_CREAT, 0600);
	CHECK(fd >= 0 && write(fd, "keep", 4) == 4);
	close(fd);

	/* The tree a hostile command could leave: nested dirs, one unreadable,
	 * one unwritable, a symlink to an outside file and to an outside dir,
	 * a fifo. */
	snprintf(p, sizeof p, "%s/a", dir);
	CHECK(mkdir(p, 0700) == 0);
	snprintf(p, sizeof p, "%s/a/b", dir);
	CHECK(mkdir(p, 0700) == 0);
	snprintf(p, sizeof p, "%s/a/b/c", dir);
	CHECK(mkdir(p, 0700) == 0);
	snprintf(p, sizeof p, "%s/a/b/c/file", dir);
	CHECK(close(open(p, O_WRONLY | O_CREAT, 0600)) == 0);
	snprintf(p, sizeof p, "%s/a/file", dir);
	CHECK(close(open(p, O_WRONLY | O_CREAT, 0600)) == 0);
	char target[PATH_MAX + 16];
	snprintf(target, sizeof target, "%s/secret.txt", outside);
	snprintf(p, sizeof p, "%s/link", dir);
	CHECK(symlink(target, p) == 0);
	snprintf(p, sizeof p, "%s/a/dirlink", dir);
	CHECK(symlink(outside, p) == 0);
	snprintf(p, sizeof p, "%s/fifo", dir);
	CHECK(mkfifo(p, 0600) == 0);
	snprintf(p, sizeof p, "%s/a/b", dir);
	CHECK(chmod(p, 0) == 0);
	snprintf(p, sizeof p, "%s/a", dir);
	CHECK(chmod(p, 0500) == 0);

	CHECK_INT(ca_sandbox_remove_dir(dir), CA_OK);
	CHECK(access(dir, F_OK) != 0 && errno == ENOENT);
	snprintf(p, sizeof p, "%s/secret.txt", outside);
	char *kept = check_read_file(p, NULL);
	CHECK_STR(kept, "keep");
	free(kept);

	CHECK_INT(ca_sandbox_remove_dir(dir), CA_ENOTFOUND);
	/* The dir itself a symlink: refused, the target untouched. */
	snprintf(p, sizeof p, "%s-link", outside);
	CHECK(symlink(outside, p) == 0);
	CHECK_INT(ca_sandbox_remove_dir(p), CA_EINVAL);
	unlink(p);
	snprintf(p, sizeof p, "%s/secret.txt", outside);
	CHECK(access(p, F_OK) == 0);

	/* Deeper than the cap: refused, bounded; cleaned here instead. */
	CHECK_INT(ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err), CA_OK);
	int dfd = open(dir, O_RDONLY | O_DIRECTORY);
	for (int i = 0; i < CA_SANDBOX_MAX_DEPTH + 2 && dfd >= 0; i++) {
		mkdirat(dfd, "d", 0700);
		int next = openat(dfd, "d", O_RDONLY | O_DIRECTORY);
		close(dfd);
		dfd = next;
	}
	if (dfd >= 0)
		close(dfd);
	CHECK_INT(ca_sandbox_remove_dir(dir), CA_ETOOBIG);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	CHECK(access(dir, F_OK) != 0);

	CHECK_INT(ca_sandbox_remove_dir(outside), CA_OK);
}

/* A container runtime whose seccomp profile answers clone3 with ENOSYS
 * (Docker's did): spawn falls back to fork + pidfd_open. Run in a helper
 * that installs such a filter on itself. */
static void test_fork_fallback(void)
{
	int fds[2];
	CHECK(pipe(fds) == 0);
	pid_t helper = fork();
	if (helper == 0) {
		close(fds[0]);
		scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
		if (!ctx ||
		    seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0) != 0 ||
		    seccomp_load(ctx) != 0)
			_exit(90);
		seccomp_release(ctx);
		struct ca_sandbox_limits lim = {256 * MIB, 10, default_processes, 256, MIB};
		struct ca_sandbox *sb = NULL;
		char err[256], dir[PATH_MAX], line[512];
		if (ca_sandbox_new(&lim, &sb, err, sizeof err) != CA_OK ||
		    ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err) != CA_OK)
			_exit(91);
		struct result r, m;
		run(sb, dir, NULL, &r, "echo", "fallback", NULL, NULL);
		char *argv[] = {"/nonexistent/ca-probe", NULL};
		run_path(sb, argv[0], argv, clean_env, dir, NULL, &m);
		int n = snprintf(line, sizeof line, "%d %d %s|%d %s\n", (int)r.rc, r.exit_code,
		                 r.out, (int)m.rc, m.why);
		if (write(fds[1], line, (size_t)n) != n)
			_exit(92);
		ca_sandbox_remove_dir(dir);
		ca_sandbox_free(sb);
		result_free(&r);
		result_free(&m);
		_exit(0);
	}
	close(fds[1]);
	char line[512] = "";
	ssize_t n = read(fds[0], line, sizeof line - 1);
	line[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	int st = 0;
	waitpid(helper, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_STR(line, "0 0 fallback\n|3 exec /nonexistent/ca-probe: No such file or directory\n");
}

/* valgrind 3.19 knows neither seccomp(2) nor Landlock nor clone3: its
 * ENOSYS makes libseccomp's kernel probe report API level 1, and a child,
 * which runs under valgrind until execve, cannot install the filter. So
 * the level is forced (the filter is still built, and checked for leaks),
 * the dir tests run, and one spawn checks the failure path: the child
 * names the step and the parent reaps it. */
static int valgrind_main(void)
{
	printf("note: under valgrind: spawns cannot install seccomp; dir tests and the "
	       "failure path only\n");
	seccomp_api_set(3);
	struct ca_sandbox *sb = new_sandbox(512 * MIB, 10, 16 * MIB, 0);
	char dir[PATH_MAX], err[256];
	CHECK_INT(ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err), CA_OK);
	if (!sb)
		return check_report();
	test_new(sb);
	test_make_dir();
	test_remove_dir();
	struct result r;
	run(sb, dir, NULL, &r, "exit", "7", NULL, NULL);
	if (r.rc == CA_OK) {
		CHECK_INT(r.exit_code, 7);
	} else {
		CHECK_INT(r.rc, CA_EIO);
		CHECK_INT(r.pid, -1);
		printf("note: under valgrind the spawn failed as expected: %s\n", r.why);
	}
	result_free(&r);
	errno = 0;
	CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
	CHECK_INT(ca_sandbox_remove_dir(dir), CA_OK);
	ca_sandbox_free(sb);
	return check_report();
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	default_processes = tasks_of_uid(getuid()) + 256;
	if (UNDER_VALGRIND())
		return valgrind_main();
	/* As the agent is when it runs as PID 1: orphans come back here. */
	prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);

	int fds_before = count_fds();
	struct ca_sandbox *sb = new_sandbox(512 * MIB, 10, 16 * MIB, 0);
	char dir[PATH_MAX], err[256];
	CHECK_INT(ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err), CA_OK);
	if (!sb)
		return check_report();

	test_new(sb);
	test_make_dir();
	test_env_fds_cwd(sb, dir);
	test_landlock(sb, dir);
	test_seccomp(sb, dir);
	test_limits(sb, dir);
	test_groups(sb, dir);
	test_output(sb, dir);
	test_spawn_errors(sb, dir);
	test_beacon(sb, dir);
	test_remove_dir();
	test_forkbomb();
	test_fork_fallback();

	CHECK_INT(ca_sandbox_remove_dir(dir), CA_OK);
	ca_sandbox_free(sb);
	CHECK_INT(count_fds(), fds_before); /* nothing leaked in the parent */
	return check_report();
}
