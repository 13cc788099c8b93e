/* tests/tools/sandbox_probe.c: a stand-in command for the sandbox tests.
 *
 * It does one thing per run, chosen by argv[1], and says what happened on
 * stdout (exit codes below). Copied under another name (e.g. kubectl) into
 * a directory that holds a file "beacon" with a TCP port, it first connects
 * to 127.0.0.1:PORT and sends its argv joined by spaces and a newline, so a
 * test can count the processes that were really started.
 *
 *   env                        print the environment, one per line
 *   fds                        "N target" for each open fd
 *   cwd                        print the working directory
 *   write PATH [BYTES]         create PATH, write BYTES (5); 0 ok, 3 failed
 *   syscall NAME               attempt NAME with harmless arguments; if it
 *                              returns, print "NAME: errno E (name)" or
 *                              "NAME: returned R" and exit 4 (x32 and
 *                              i386 make getpid through those ABIs; 8
 *                              when this kernel has no int 0x80)
 *   sleep SECONDS
 *   spawn-sleepers N SECONDS   fork N sleepers, print "started N", sleep too
 *   orphan N SECONDS           fork N sleepers, print "started N", exit 0
 *   forkbomb                   fork (children pause) until fork fails:
 *                              print the count, exit 5 (7 at 20000: no limit)
 *   alloc BYTES                malloc and touch; 0 ok, 6 failed
 *   flood BYTES [stdout|stderr|both]
 *   echo ARGS...               one per line
 *   cpu                        busy loop
 *   exit CODE
 *   ls DIR                     one entry per line; 3 when DIR cannot be read
 *   signal PID                 kill(PID, 0); 0 ok, 3 failed */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void beacon(int argc, char **argv)
{
	char exe[4096], path[4200], buf[32];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
	if (n <= 0)
		return;
	exe[n] = '\0';
	char *slash = strrchr(exe, '/');
	if (!slash)
		return;
	*slash = '\0';
	snprintf(path, sizeof path, "%s/beacon", exe);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	long port = strtol(buf, NULL, 10);
	if (port <= 0 || port > 65535)
		return;
	int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0)
		return;
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (connect(s, (struct sockaddr *)&sa, sizeof sa) == 0) {
		char line[8192];
		size_t len = 0;
		for (int i = 0; i < argc && len < sizeof line - 2; i++) {
			int k = snprintf(line + len, sizeof line - 1 - len, "%s%s", i ? " " : "",
			                 argv[i]);
			if (k < 0)
				break;
			len += (size_t)k < sizeof line - 1 - len ? (size_t)k
			                                         : sizeof line - 2 - len;
		}
		line[len++] = '\n';
		for (size_t off = 0; off < len;) {
			ssize_t w = write(s, line + off, len - off);
			if (w <= 0)
				break;
			off += (size_t)w;
		}
	}
	close(s);
}

static int fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d) {
		perror("opendir /proc/self/fd");
		return 1;
	}
	struct dirent *e;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		int fd = (int)strtol(e->d_name, NULL, 10);
		if (fd == dirfd(d))
			continue;
		char target[4096];
		ssize_t n = readlinkat(dirfd(d), e->d_name, target, sizeof target - 1);
		target[n > 0 ? n : 0] = '\0';
		printf("%d %s\n", fd, target);
	}
	closedir(d);
	return 0;
}

static int write_file(const char *path, long long bytes)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0) {
		printf("write %s: %s\n", path, strerror(errno));
		return 3;
	}
	static char chunk[65536];
	memset(chunk, 'x', sizeof chunk);
	for (long long done = 0; done < bytes;) {
		size_t want = bytes - done > (long long)sizeof chunk ? sizeof chunk
		                                                     : (size_t)(bytes - done);
		ssize_t n = write(fd, chunk, want);
		if (n < 0) {
			printf("write %s: %s\n", path, strerror(errno));
			close(fd);
			return 3;
		}
		done += n;
	}
	close(fd);
	printf("ok\n");
	return 0;
}

static pid_t raw_clone(unsigned long flags)
{
	return (pid_t)syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
}

/* In a child: the probe itself is a group leader, for whom setsid and
 * setpgid fail anyway. */
static long in_child(int which)
{
	pid_t pid = fork();
	if (pid == 0) {
		long r = which ? setpgid(0, 0) : setsid();
		_exit(r < 0 ? (errno & 0x7f) : 0);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) < 0)
		return -1;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	errno = WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
	return -1;
}

#if defined(__x86_64__)
static void no_int80(int sig)
{
	(void)sig;
	static const char msg[] = "i386: int 0x80 unavailable\n";
	(void)!write(1, msg, sizeof msg - 1);
	_exit(8);
}
#endif

/* Arguments that are harmless should the filter be missing (as root too):
 * bad magic, bad fds, paths that do not exist, no-op requests. */
static long attempt(const char *name, int *known)
{
	const char *nx = "/nonexistent-ca-probe";
	*known = 1;
	if (!strcmp(name, "mount"))
		return syscall(SYS_mount, NULL, NULL, NULL, 0, NULL);
	if (!strcmp(name, "umount2"))
		return syscall(SYS_umount2, nx, 0);
	if (!strcmp(name, "pivot_root"))
		return syscall(SYS_pivot_root, nx, nx);
	if (!strcmp(name, "chroot"))
		return syscall(SYS_chroot, nx);
	if (!strcmp(name, "move_mount"))
		return syscall(SYS_move_mount, -1, nx, -1, nx, 0);
	if (!strcmp(name, "open_tree"))
		return syscall(SYS_open_tree, -1, nx, 0);
	if (!strcmp(name, "fsopen"))
		return syscall(SYS_fsopen, "nonexistent-ca-probe", 0);
	if (!strcmp(name, "fsconfig"))
		return syscall(SYS_fsconfig, -1, 0, NULL, NULL, 0);
	if (!strcmp(name, "fsmount"))
		return syscall(SYS_fsmount, -1, 0, 0);
	if (!strcmp(name, "fspick"))
		return syscall(SYS_fspick, -1, nx, 0);
	if (!strcmp(name, "mount_setattr"))
		return syscall(SYS_mount_setattr, -1, nx, 0, NULL, 0);
	if (!strcmp(name, "ptrace"))
		return syscall(SYS_ptrace, PTRACE_PEEKDATA, getppid(), NULL, NULL);
	if (!strcmp(name, "process_vm_readv"))
		return syscall(SYS_process_vm_readv, getpid(), NULL, 0, NULL, 0, 0);
	if (!strcmp(name, "process_vm_writev"))
		return syscall(SYS_process_vm_writev, getpid(), NULL, 0, NULL, 0, 0);
	if (!strcmp(name, "bpf"))
		return syscall(SYS_bpf, -1, NULL, 0);
	if (!strcmp(name, "keyctl"))
		return syscall(SYS_keyctl, -1, 0, 0, 0, 0);
	if (!strcmp(name, "add_key"))
		return syscall(SYS_add_key, NULL, NULL, NULL, 0, 0);
	if (!strcmp(name, "request_key"))
		return syscall(SYS_request_key, NULL, NULL, NULL, 0);
	if (!strcmp(name, "kexec") || !strcmp(name, "kexec_load"))
		return syscall(SYS_kexec_load, 0, 0, NULL, 0xdead0000UL);
	if (!strcmp(name, "kexec_file_load"))
		return syscall(SYS_kexec_file_load, -1, -1, 0, NULL, 0xdead0000UL);
	if (!strcmp(name, "init_module"))
		return syscall(SYS_init_module, NULL, 0, "");
	if (!strcmp(name, "finit_module"))
		return syscall(SYS_finit_module, -1, "", 0);
	if (!strcmp(name, "delete_module"))
		return syscall(SYS_delete_module, "ca_probe_nonexistent", O_NONBLOCK);
	if (!strcmp(name, "reboot"))
		return syscall(SYS_reboot, 0, 0, 0, NULL); /* bad magic: EINVAL */
	if (!strcmp(name, "unshare"))
		return syscall(SYS_unshare, 0);
	if (!strcmp(name, "setns"))
		return syscall(SYS_setns, -1, 0);
	if (!strcmp(name, "swapon"))
		return syscall(SYS_swapon, nx, 0);
	if (!strcmp(name, "swapoff"))
		return syscall(SYS_swapoff, nx);
	if (!strcmp(name, "acct"))
		return syscall(SYS_acct, nx);
	if (!strcmp(name, "settimeofday"))
		return syscall(SYS_settimeofday, NULL, NULL); /* both NULL: a no-op */
	if (!strcmp(name, "clock_settime"))
		return syscall(SYS_clock_settime, -1, NULL);
	if (!strcmp(name, "clock_adjtime"))
		return syscall(SYS_clock_adjtime, -1, NULL);
	if (!strcmp(name, "adjtimex"))
		return syscall(SYS_adjtimex, NULL);
	if (!strcmp(name, "perf_event_open"))
		return syscall(SYS_perf_event_open, NULL, 0, -1, -1, 0);
	if (!strcmp(name, "userfaultfd"))
		return syscall(SYS_userfaultfd, O_CLOEXEC);
	if (!strcmp(name, "open_by_handle_at"))
		return syscall(SYS_open_by_handle_at, -1, NULL, 0);
	if (!strcmp(name, "name_to_handle_at"))
		return syscall(SYS_name_to_handle_at, -1, nx, NULL, NULL, 0);
	if (!strcmp(name, "quotactl"))
		return syscall(SYS_quotactl, 0, NULL, 0, NULL);
	if (!strcmp(name, "syslog"))
		return syscall(SYS_syslog, 10, NULL, 0); /* SYSLOG_ACTION_SIZE_BUFFER */
	if (!strcmp(name, "ioperm"))
		return syscall(SYS_ioperm, 0, 0, 0);
	if (!strcmp(name, "iopl"))
		return syscall(SYS_iopl, 0);
	if (!strcmp(name, "lookup_dcookie"))
		return syscall(SYS_lookup_dcookie, 0, NULL, 0);
	if (!strcmp(name, "vhangup"))
		return syscall(SYS_vhangup); /* no controlling tty: nothing to hang up */
	if (!strcmp(name, "io_uring_setup"))
		return syscall(SYS_io_uring_setup, 1, NULL);
#if defined(__x86_64__)
	/* Other ABIs of the same kernel: an x32 getpid, an i386 getpid. */
	if (!strcmp(name, "x32"))
		return syscall(0x40000000 | SYS_getpid);
	if (!strcmp(name, "i386")) {
		/* Kernels can turn int 0x80 off (ia32_emulation=0, confidential
		 * guests): a #GP, SIGSEGV. Say so with exit 8. */
		signal(SIGSEGV, no_int80);
		long r;
		__asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
		return r;
	}
#endif
	if (!strcmp(name, "setsid"))
		return in_child(0);
	if (!strcmp(name, "setpgid"))
		return in_child(1);
	if (!strcmp(name, "clone3")) {
		struct clone_args a;
		memset(&a, 0, sizeof a);
		a.exit_signal = SIGCHLD;
		long r = syscall(SYS_clone3, &a, sizeof a);
		if (r == 0)
			_exit(0);
		if (r > 0)
			waitpid((pid_t)r, NULL, 0);
		return r;
	}
	static const struct {
		const char *name;
		unsigned long flag;
	} clones[] = {
	        {"clone-newns", CLONE_NEWNS},         {"clone-newuser", CLONE_NEWUSER},
	        {"clone-newpid", CLONE_NEWPID},       {"clone-newnet", CLONE_NEWNET},
	        {"clone-newuts", CLONE_NEWUTS},       {"clone-newipc", CLONE_NEWIPC},
	        {"clone-newcgroup", CLONE_NEWCGROUP},
	};
	for (size_t i = 0; i < sizeof clones / sizeof clones[0]; i++) {
		if (strcmp(name, clones[i].name))
			continue;
		pid_t pid = raw_clone(clones[i].flag);
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return pid;
	}
	if (!strcmp(name, "clone-plain")) {
		pid_t pid = raw_clone(0);
		if (pid == 0)
			_exit(0);
		if (pid > 0)
			waitpid(pid, NULL, 0);
		return pid > 0 ? 0 : -1;
	}
	*known = 0;
	return -1;
}

static const char *errno_name(int e)
{
	switch (e) {
	case EPERM:
		return "EPERM";
	case ENOENT:
		return "ENOENT";
	case ESRCH:
		return "ESRCH";
	case EBADF:
		return "EBADF";
	case EFAULT:
		return "EFAULT";
	case EINVAL:
		return "EINVAL";
	case ENOSYS:
		return "ENOSYS";
	case EACCES:
		return "EACCES";
	case EOPNOTSUPP:
		return "EOPNOTSUPP";
	default:
		return "other";
	}
}

static void sleep_s(long s)
{
	while (s > 0)
		s = (long)sleep((unsigned)s);
}

static int sleepers(long n, long secs, int leader_waits)
{
	for (long i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid == 0) {
			sleep_s(secs);
			_exit(0);
		}
		if (pid < 0) {
			perror("fork");
			return 1;
		}
	}
	printf("started %ld\n", n);
	fflush(stdout);
	if (!leader_waits)
		return 0;
	sleep_s(secs);
	while (wait(NULL) > 0)
		;
	return 0;
}

static int forkbomb(void)
{
	long count = 0;
	for (;;) {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		if (pid < 0) {
			printf("%ld\n", count);
			fflush(stdout);
			return 5;
		}
		if (++count >= 20000) {
			printf("%ld (no limit)\n", count);
			fflush(stdout);
			return 7;
		}
	}
}

static int flood(long long bytes, const char *where)
{
	static char chunk[65536];
	memset(chunk, 'y', sizeof chunk);
	int to_out = !where || !strcmp(where, "stdout") || !strcmp(where, "both");
	int to_err = where && (!strcmp(where, "stderr") || !strcmp(where, "both"));
	for (int fd = 1; fd <= 2; fd++) {
		if ((fd == 1 && !to_out) || (fd == 2 && !to_err))
			continue;
		for (long long done = 0; done < bytes;) {
			size_t want = bytes - done > (long long)sizeof chunk
			                      ? sizeof chunk
			                      : (size_t)(bytes - done);
			ssize_t n = write(fd, chunk, want);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return 1;
			}
			done += n;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	beacon(argc, argv);
	if (argc < 2) {
		fprintf(stderr, "usage: sandbox_probe MODE [ARGS]\n");
		return 2;
	}
	const char *mode = argv[1];
	const char *a2 = argc > 2 ? argv[2] : NULL, *a3 = argc > 3 ? argv[3] : NULL;

	if (!strcmp(mode, "env")) {
		for (char **e = environ; *e; e++)
			printf("%s\n", *e);
		return 0;
	}
	if (!strcmp(mode, "fds"))
		return fds();
	if (!strcmp(mode, "cwd")) {
		char buf[4096];
		if (!getcwd(buf, sizeof buf))
			return 1;
		printf("%s\n", buf);
		return 0;
	}
	if (!strcmp(mode, "write") && a2)
		return write_file(a2, a3 ? strtoll(a3, NULL, 10) : 5);
	if (!strcmp(mode, "syscall") && a2) {
		int known;
		errno = 0;
		long r = attempt(a2, &known);
		if (!known) {
			fprintf(stderr, "unknown syscall %s\n", a2);
			return 2;
		}
		if (r < 0)
			printf("%s: errno %d (%s)\n", a2, errno, errno_name(errno));
		else
			printf("%s: returned %ld\n", a2, r);
		return 4;
	}
	if (!strcmp(mode, "sleep") && a2) {
		sleep_s(strtol(a2, NULL, 10));
		return 0;
	}
	if (!strcmp(mode, "spawn-sleepers") && a2 && a3)
		return sleepers(strtol(a2, NULL, 10), strtol(a3, NULL, 10), 1);
	if (!strcmp(mode, "orphan") && a2 && a3)
		return sleepers(strtol(a2, NULL, 10), strtol(a3, NULL, 10), 0);
	if (!strcmp(mode, "forkbomb"))
		return forkbomb();
	if (!strcmp(mode, "alloc") && a2) {
		size_t n = (size_t)strtoull(a2, NULL, 10);
		char *p = malloc(n);
		if (!p) {
			printf("alloc %zu: failed\n", n);
			return 6;
		}
		for (size_t i = 0; i < n; i += 4096)
			p[i] = 1;
		printf("ok\n");
		free(p);
		return 0;
	}
	if (!strcmp(mode, "flood") && a2)
		return flood(strtoll(a2, NULL, 10), a3);
	if (!strcmp(mode, "echo")) {
		for (int i = 2; i < argc; i++)
			printf("%s\n", argv[i]);
		return 0;
	}
	if (!strcmp(mode, "cpu")) {
		volatile unsigned long x = 0;
		for (;;)
			x++;
	}
	if (!strcmp(mode, "exit") && a2)
		return (int)strtol(a2, NULL, 10);
	if (!strcmp(mode, "ls") && a2) {
		DIR *d = opendir(a2);
		if (!d) {
			printf("ls %s: %s\n", a2, strerror(errno));
			return 3;
		}
		struct dirent *e;
		while ((e = readdir(d)))
			if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				printf("%s\n", e->d_name);
		closedir(d);
		return 0;
	}
	if (!strcmp(mode, "signal") && a2) {
		if (kill((pid_t)strtol(a2, NULL, 10), 0) != 0) {
			printf("signal %s: %s\n", a2, strerror(errno));
			return 3;
		}
		printf("ok\n");
		return 0;
	}
	fprintf(stderr, "unknown mode %s\n", mode);
	return 2;
}
