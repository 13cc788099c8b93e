/* core/process_metrics.c: process_* families from /proc/self, the way the
 * Prometheus client libraries compute them (client_golang's process
 * collector reads the same files). */
#include "core/process_metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* Fields of /proc/self/stat we use, numbered as in proc(5). */
enum {
	STAT_UTIME = 14,
	STAT_STIME = 15,
	STAT_STARTTIME = 22,
	STAT_VSIZE = 23,
	STAT_RSS = 24,
	STAT_LAST = STAT_RSS,
};

struct proc_stat {
	unsigned long long field[STAT_LAST + 1]; /* indexed by field number */
};

/* Read a small file whole; the /proc files here are far below 4 KiB. */
static bool read_small(const char *path, char *buf, size_t buflen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	size_t len = 0;
	bool ok = false;
	while (len + 1 < buflen) {
		ssize_t n = read(fd, buf + len, buflen - 1 - len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	ok = len > 0;
out:
	close(fd);
	return ok;
}

static bool read_proc_stat(struct proc_stat *st)
{
	char buf[4096];
	if (!read_small("/proc/self/stat", buf, sizeof buf))
		return false;
	/* Field 2 is the command name in parentheses and may itself hold
	 * spaces and ')'; the fields we want follow the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return false;
	p++;
	memset(st, 0, sizeof *st);
	for (int field = 3; field <= STAT_LAST; field++) {
		while (*p == ' ')
			p++;
		if (!*p)
			return false;
		bool wanted = field == STAT_UTIME || field == STAT_STIME || field >= STAT_STARTTIME;
		if (!wanted) { /* skip it; some of these are signed (tpgid, nice) */
			while (*p && *p != ' ')
				p++;
			continue;
		}
		if (*p < '0' || *p > '9')
			return false;
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (errno == ERANGE || (*end != ' ' && *end != '\n' && *end != '\0'))
			return false;
		st->field[field] = v;
		p = end;
	}
	return true;
}

/* Seconds since the epoch at which the system booted ("btime" in /proc/stat). */
static bool boot_time(unsigned long long *out)
{
	FILE *f = fopen("/proc/stat", "re");
	if (!f)
		return false;
	char line[256];
	bool at_line_start = true, found = false;
	/* Lines such as "intr" can be far longer than the buffer: only a read
	 * that starts a line may be the btime line. */
	while (fgets(line, sizeof line, f)) {
		bool starts = at_line_start;
		at_line_start = strchr(line, '\n') != NULL;
		if (!starts || strncmp(line, "btime ", 6) != 0)
			continue;
		char *end = NULL;
		errno = 0;
		unsigned long long v = strtoull(line + 6, &end, 10);
		if (end != line + 6 && errno == 0) {
			*out = v;
			found = true;
		}
		break;
	}
	fclose(f);
	return found;
}

static long open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	long count = 0;
	int own = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (de->d_name[0] == '.')
			continue;
		char *end = NULL;
		long fd = strtol(de->d_name, &end, 10);
		if (*end == '\0' && fd == own)
			continue; /* the directory stream we are reading with */
		count++;
	}
	closedir(d);
	return count;
}

int64_t ca_process_rss_bytes(void)
{
	struct proc_stat st;
	long page = sysconf(_SC_PAGESIZE);
	if (page <= 0 || !read_proc_stat(&st))
		return -1;
	unsigned long long pages = st.field[STAT_RSS];
	if (pages > (unsigned long long)INT64_MAX / (unsigned long long)page)
		return -1;
	return (int64_t)(pages * (unsigned long long)page);
}

void ca_process_render_metrics(struct ca_prom *p)
{
	struct proc_stat st;
	bool have_stat = read_proc_stat(&st);
	long ticks = sysconf(_SC_CLK_TCK);

	if (have_stat && ticks > 0)
		ca_prom_single(p, "process_cpu_seconds_total", "counter",
		               "Total user and system CPU time spent in seconds.",
		               (double)(st.field[STAT_UTIME] + st.field[STAT_STIME]) / (double)ticks);

	int64_t rss = ca_process_rss_bytes();
	if (rss >= 0)
		ca_prom_single(p, "process_resident_memory_bytes", "gauge",
		               "Resident memory size in bytes.", (double)rss);

	if (have_stat)
		ca_prom_single(p, "process_virtual_memory_bytes", "gauge",
		               "Virtual memory size in bytes.", (double)st.field[STAT_VSIZE]);

	long fds = open_fds();
	if (fds >= 0)
		ca_prom_single(p, "process_open_fds", "gauge",
		               "Number of open file descriptors.", (double)fds);

	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY)
		ca_prom_single(p, "process_max_fds", "gauge",
		               "Maximum number of open file descriptors.", (double)rl.rlim_cur);

	unsigned long long btime;
	if (have_stat && ticks > 0 && boot_time(&btime))
		ca_prom_single(p, "process_start_time_seconds", "gauge",
		               "Start time of the process since unix epoch in seconds.",
		               (double)btime + (double)st.field[STAT_STARTTIME] / (double)ticks);
}
