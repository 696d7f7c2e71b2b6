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
#include <time.h>

#include "daemon/mvmd.h"

enum log_level mvmd_log_level = LOG_INFO;

void mvmd_log(enum log_level level, const char *fmt, ...)
{
	static const char *const tags[] = { "error", "warning", "info", "debug" };
	va_list ap;

	if (level > mvmd_log_level)
		return;
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
