/* SPDX-License-Identifier: MIT */
/*
 * Helpers every mvmd file may use and that belong to no role: the logger,
 * the clocks (wall time for what people read, monotonic time for every
 * interval) and the paths of a VM's files.  They call nothing of mvmd.
 */
#include <errno.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"

enum log_level mvmd_log_level = LOG_INFO;
static bool log_journal;

/* systemd sets JOURNAL_STREAM to "DEV:INO" of the stream it connected to
 * stderr; only when stderr is still that stream does journald read a
 * leading <N> as the line's syslog priority (sd-daemon(3)). */
bool mvmd_log_init(void)
{
	const char *env = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;
	char tail;

	log_journal = env && sscanf(env, "%llu:%llu%c", &dev, &ino, &tail) == 2 &&
	              fstat(STDERR_FILENO, &st) == 0 &&
	              (unsigned long long)st.st_dev == dev &&
	              (unsigned long long)st.st_ino == ino;
	return log_journal;
}

void mvmd_log(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	/* LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG of syslog.h */
	static const char prio[] = { '3', '4', '6', '7' };
	va_list ap;

	if (level > mvmd_log_level)
		return;
	if (log_journal)
		fprintf(stderr, "<%c>", prio[level]);
	fprintf(stderr, "mvmd: %s: ", tags[level]);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

double mvmd_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

double mvmd_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int mvmd_vm_dir(const struct mvmd *d, const char *name, const char *file,
                char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s%s%s", d->cfg.state_dir, name,
	                 file ? "/" : "", file ? file : "");

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

int mvmd_adopt_socket(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	struct sockaddr_un sa;
	int n;

	n = snprintf(buf, size, "%s/vms", d->cfg.run_dir);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	n = snprintf(buf, size, "%s/vms/%s.sock", d->cfg.run_dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}
