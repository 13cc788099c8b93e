/* bench_sandbox: what the sandbox costs per command (exec/sandbox.h).
 *
 * Times, wall clock, N runs each after 20 warm-up runs, of the probe's
 * `exit 0` (tests/tools/sandbox_probe):
 *   sandbox  ca_sandbox_spawn (Landlock ruleset, pipes, clone3, the child's
 *            set-up, seccomp, execve, the wait for the exec status), poll
 *            of the pidfd, ca_sandbox_reap, closing the pipes
 *   bare     fork, execve, waitpid: no pipes, no limits, no filter
 * and prints the median and p99 in microseconds. The probe is a small
 * dynamically linked C program, so both include the same loader work.
 *
 * usage: bench_sandbox [N]   (default 500) */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec/sandbox.h"

static const char *probe = CA_SANDBOX_PROBE;

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const char *name, int64_t *ns, int n)
{
	qsort(ns, (size_t)n, sizeof ns[0], cmp_i64);
	int p99 = (n * 99 + 99) / 100 - 1;
	printf("%-8s n=%d median %.0f us  p99 %.0f us  min %.0f us\n", name, n, ns[n / 2] / 1e3,
	       ns[p99 < n ? p99 : n - 1] / 1e3, ns[0] / 1e3);
}

static int sandbox_once(const struct ca_sandbox *sb, const char *dir, char *const argv[],
                        char *const envp[])
{
	struct ca_sandbox_child c;
	char err[256];
	if (ca_sandbox_spawn(sb, probe, argv, envp, dir, &c, err, sizeof err) != CA_OK) {
		fprintf(stderr, "spawn: %s\n", err);
		return -1;
	}
	struct pollfd p = {c.pidfd, POLLIN, 0};
	while (poll(&p, 1, -1) < 0 && errno == EINTR)
		;
	int code = -1, sig = 0;
	ca_sandbox_reap(&c, &code, &sig);
	close(c.out_fd);
	close(c.err_fd);
	return code;
}

static int bare_once(char *const argv[], char *const envp[])
{
	pid_t pid = fork();
	if (pid == 0) {
		execve(probe, argv, envp);
		_exit(127);
	}
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 500;
	if (n < 1)
		n = 1;
	struct ca_sandbox_limits lim = {.memory_bytes = (int64_t)1 << 30,
	                                .cpu_seconds = 10,
	                                .processes = 100000,
	                                .open_files = 256,
	                                .file_bytes = 16 << 20};
	struct ca_sandbox *sb = NULL;
	char err[256], dir[PATH_MAX];
	if (ca_sandbox_new(&lim, &sb, err, sizeof err) != CA_OK ||
	    ca_sandbox_make_dir("/tmp", dir, sizeof dir, err, sizeof err) != CA_OK) {
		fprintf(stderr, "bench_sandbox: %s\n", err);
		return 1;
	}
	printf("%s\n", ca_sandbox_landlock_status(sb));
	char *args[] = {(char *)probe, "exit", "0", NULL};
	char *env[] = {"PATH=/usr/bin:/bin", NULL};
	int64_t *sand = calloc((size_t)n, sizeof *sand), *bare = calloc((size_t)n, sizeof *bare);
	if (!sand || !bare)
		return 1;
	for (int i = 0; i < 20; i++)
		if (sandbox_once(sb, dir, args, env) != 0 || bare_once(args, env) != 0)
			return 1;
	/* Interleaved, so drift on a shared machine hits both alike. */
	for (int i = 0; i < n; i++) {
		int64_t t0 = now_ns();
		if (sandbox_once(sb, dir, args, env) != 0)
			return 1;
		int64_t t1 = now_ns();
		if (bare_once(args, env) != 0)
			return 1;
		int64_t t2 = now_ns();
		sand[i] = t1 - t0;
		bare[i] = t2 - t1;
	}
	report("sandbox", sand, n);
	report("bare", bare, n);
	free(sand);
	free(bare);
	ca_sandbox_remove_dir(dir);
	ca_sandbox_free(sb);
	return 0;
}
