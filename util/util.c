/* SPDX-License-Identifier: MIT */
/* Small shared helpers; see util.h. */
#include "util/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

int util_parse_u64_prefix(const char *s, uint64_t *ret, const char **ret_end)
{
	unsigned long long v;
	char *end;

	/* strtoull would take blanks, a sign and wrap "-1" around */
	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	*ret = v;
	*ret_end = end;
	return 0;
}

int util_parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	const char *end;
	uint64_t v;
	int r = util_parse_u64_prefix(s, &v, &end);

	if (r < 0)
		return r;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

/* The multiplier of a unit suffix ("" : unit), or 0 if it is none. */
static uint64_t size_unit(const char *sfx, uint64_t unit)
{
	static const char letters[] = "kmgt";
	const char *l;

	if (!*sfx)
		return unit;
	l = strchr(letters, tolower((unsigned char)sfx[0]));
	if (!l)
		return 0;
	sfx++;
	if (*sfx && strcasecmp(sfx, "B") && strcasecmp(sfx, "iB"))
		return 0;
	return 1ull << (10 * (l - letters + 1));
}

int util_parse_size(const char *s, uint64_t unit, uint64_t *ret_bytes)
{
	uint64_t whole, frac = 0, scale = 1, mul, v;
	const char *end;
	int r = util_parse_u64_prefix(s, &whole, &end);

	if (r < 0)
		return r;
	if (*end == '.') {
		/* up to 18 fractional digits, so frac * 10 never overflows */
		if (end[1] < '0' || end[1] > '9')
			return -EINVAL;
		for (end++; *end >= '0' && *end <= '9'; end++) {
			if (scale >= 1000000000000000000ull)
				return -EINVAL;
			frac = frac * 10 + (uint64_t)(*end - '0');
			scale *= 10;
		}
	}
	mul = size_unit(end, unit);
	if (!mul)
		return -EINVAL;
	if (whole > UINT64_MAX / mul)
		return -ERANGE;
	v = whole * mul;
	if (frac) {
		/* frac / scale of mul: exact, or it is not a whole number of bytes */
		unsigned __int128 f = (unsigned __int128)frac * mul;

		if (f % scale)
			return -EINVAL;
		if ((uint64_t)(f / scale) > UINT64_MAX - v)
			return -ERANGE;
		v += (uint64_t)(f / scale);
	}
	*ret_bytes = v;
	return 0;
}

const char *util_fmt_ratio(char *buf, size_t len, double v)
{
	size_t n;

	snprintf(buf, len, "%.3f", v);
	n = strlen(buf);
	while (n > 2 && buf[n - 1] == '0' && buf[n - 2] != '.')
		buf[--n] = '\0';
	return buf;
}

int util_proc_fd_number(const char *path)
{
	static const char prefix[] = "/proc/self/fd/";
	uint64_t v;

	if (!path || strncmp(path, prefix, sizeof(prefix) - 1))
		return -1;
	if (util_parse_uint(path + sizeof(prefix) - 1, 0, 65535, &v) < 0)
		return -1;
	return (int)v;
}

int util_read_file(const char *path, char *buf, size_t len)
{
	ssize_t n;
	int fd, r;

	if (len == 0)
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	r = n < 0 ? -errno : (int)n;
	close(fd);
	if (r >= 0)
		buf[r] = '\0';
	return r;
}

int util_write_file(const char *path, const char *s)
{
	size_t len = strlen(s);
	ssize_t n;
	int fd, r;

	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = write(fd, s, len);
	r = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

int util_proc_start_time(pid_t pid, uint64_t *ret)
{
	char path[64], buf[1024], *p;
	unsigned long long v;
	int n;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/stat");
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	n = util_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return n;
	p = strrchr(buf, ')');  /* comm may hold spaces and parentheses */
	if (!p || p[1] != ' ')
		return -EIO;
	/* a zombie has exited: nothing to adopt, nothing to kill */
	if (p[2] == 'Z' || p[2] == 'X')
		return -ESRCH;
	for (int i = 0; p && i < 20; i++)  /* the space before field i + 3 */
		p = strchr(p + 1, ' ');
	if (!p || sscanf(p + 1, "%llu", &v) != 1)
		return -EIO;
	*ret = v;
	return 0;
}

pid_t util_proc_outer_pid(void)
{
	char buf[4096], *p;
	long v;

	if (util_read_file("/proc/self/status", buf, sizeof(buf)) < 0 ||
	    !(p = strstr(buf, "\nNSpid:")) || sscanf(p + 7, "%ld", &v) != 1 || v <= 0)
		return getpid();
	return (pid_t)v;
}

void util_bprintf(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!buf || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
}

char *util_trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

int util_cred_enter(uid_t uid, gid_t gid, int ngroups, const gid_t *groups,
                    struct util_saved_cred *saved)
{
	saved->ngroups = getgroups(64, saved->groups);
	if (saved->ngroups < 0)
		return -errno;
	/* groups and gid first: once euid is not 0 they cannot change */
	if (syscall(SYS_setgroups, (size_t)ngroups, groups) < 0 ||
	    syscall(SYS_setresgid, (gid_t)-1, gid, (gid_t)-1) < 0 ||
	    syscall(SYS_setresuid, (uid_t)-1, uid, (uid_t)-1) < 0)
		return -errno;
	return 0;
}

void util_cred_leave(const struct util_saved_cred *saved)
{
	/* Cannot fail: the real and saved ids are still root. */
	syscall(SYS_setresuid, (uid_t)-1, getuid(), (uid_t)-1);
	syscall(SYS_setresgid, (gid_t)-1, getgid(), (gid_t)-1);
	if (saved->ngroups >= 0)
		syscall(SYS_setgroups, (size_t)saved->ngroups, saved->groups);
}

int util_dir_tighten(const char *path, mode_t forbidden, mode_t *ret_old)
{
	struct stat st;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		r = -errno;
	else if (st.st_mode & forbidden)
		r = fchmod(fd, st.st_mode & 07777 & ~forbidden) < 0 ? -errno : 1;
	close(fd);
	if (r == 1 && ret_old)
		*ret_old = st.st_mode & 07777;
	return r;
}
