/* SPDX-License-Identifier: MIT */
/*
 * File access on behalf of a client (docs/security.md).  A client may only
 * make a VM use files it can open itself.  A root mvmd opens each file with
 * the client's uid, gid and supplementary groups as the effective ids of
 * the control thread (util_cred_enter), then hands the open fd to the
 * worker, so the file the worker uses is the file that was
 * checked.  Magic links and procfs files are refused: they would hand the
 * guest files of mvmd's own (its database through /proc/self/fd/N).
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/util.h"

/* procfs files (/proc/self/environ, /proc/N/cmdline, ...) describe
 * processes, mvmd's own among them; no VM boots from one. */
static bool on_procfs(int fd)
{
	struct statfs sf;

	return fstatfs(fd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
}

#define WALK_MAX_LINKS 40   /* the kernel's own limit on nested symlinks */

/* rest = target + "/" + rest, within cap bytes. */
static int splice_link(char *rest, size_t cap, const char *target)
{
	size_t t = strlen(target), n = strlen(rest);

	if (t + 1 + n + 1 > cap)
		return -ENAMETOOLONG;
	memmove(rest + t + 1, rest, n + 1);
	memcpy(rest, target, t);
	rest[t] = '/';
	return 0;
}

/* Moves dirfd to "/" or "." for a path that starts (again) there. */
static int walk_restart(int *dirfd, const char *rest)
{
	int fd = open(rest[0] == '/' ? "/" : ".", O_PATH | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (*dirfd >= 0)
		close(*dirfd);
	*dirfd = fd;
	return 0;
}

/*
 * openat2 is missing before Linux 5.6, and systemd-nspawn's seccomp
 * allowlist answers it ENOSYS.  Then the path is resolved here one
 * component at a time with O_PATH | O_NOFOLLOW, symlinks expanded by us
 * rather than by the kernel, and any component on procfs refused: so a
 * magic link is never followed.  Every lookup still runs with the thread's
 * (the client's) credentials.  The final open has O_NOFOLLOW, so a
 * component swapped for a symlink after the check fails instead.
 */
static int open_walk(const char *path, int flags)
{
	char rest[2 * PATH_MAX], target[PATH_MAX], comp[NAME_MAX + 1];
	int dirfd = -1, fd = -1, links = 0, r;

	if (strlen(path) >= PATH_MAX)
		return -ENAMETOOLONG;
	strcpy(rest, path);
	if ((r = walk_restart(&dirfd, rest)) < 0)
		return r;
	for (;;) {
		char *p = rest + strspn(rest, "/"), *end = strchrnul(p, '/');
		size_t len = (size_t)(end - p);
		struct stat st;
		ssize_t n;

		if (len > NAME_MAX) {
			r = -ENAMETOOLONG;
			break;
		}
		memcpy(comp, len ? p : ".", len ? len : 1);
		comp[len ? len : 1] = '\0';
		memmove(rest, end, strlen(end) + 1);
		fd = openat(dirfd, comp, O_PATH | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &st) < 0) {
			r = -errno;
			break;
		}
		if (S_ISLNK(st.st_mode)) {
			n = readlinkat(fd, "", target, sizeof(target) - 1);
			close(fd);
			fd = -1;
			if (n < 0 || ++links > WALK_MAX_LINKS) {
				r = n < 0 ? -errno : -ELOOP;
				break;
			}
			target[n] = '\0';
			if ((r = splice_link(rest, sizeof(rest), target)) < 0 ||
			    (target[0] == '/' && (r = walk_restart(&dirfd, rest)) < 0))
				break;
			continue;
		}
		if (on_procfs(fd)) {
			r = -ELOOP;   /* as openat2 answers a magic link */
			break;
		}
		if (rest[strspn(rest, "/")] == '\0') {
			/* the last component, checked: open it for real */
			close(fd);
			fd = openat(dirfd, comp, flags | O_NOFOLLOW);
			r = fd < 0 ? -errno : fd;
			fd = -1;
			break;
		}
		close(dirfd);
		dirfd = fd;
		fd = -1;
	}
	if (fd >= 0)
		close(fd);
	close(dirfd);
	return r;
}

/* No magic links (/proc/N/fd/M, /proc/N/root, /proc/N/exe): through them
 * a path names a file mvmd (or another process) holds open, not one the
 * client can reach by name; the client's own permission check would then
 * be of the link, which /proc lets mvmd's own fds pass.  Plain symlinks
 * stay allowed: they are resolved with the client's rights. */
static int open_checked(const char *path, int flags)
{
	struct open_how how = {
		.flags = (uint64_t)flags,
		.resolve = RESOLVE_NO_MAGICLINKS,
	};
	int fd;

#ifdef MVM_TEST_HOOKS
	/* Test builds only: MVM_TEST_NO_OPENAT2=1 takes the fallback path. */
	if (getenv("MVM_TEST_NO_OPENAT2"))
		return open_walk(path, flags);
#endif
	fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	if (fd < 0 && errno == ENOSYS)
		return open_walk(path, flags);
	return fd < 0 ? -errno : fd;
}

static int open_as(const struct cred *cred, bool as_client, const char *path,
                   int flags, int *ret_fd)
{
	struct util_saved_cred saved;
	int fd, r = 0;

	if (as_client) {
		r = util_cred_enter(cred->uid, cred->gid, cred->ngroups, cred->groups, &saved);
		if (r < 0) {
			util_cred_leave(&saved);
			return r;
		}
	}
	fd = open_checked(path, flags);
	if (as_client)
		util_cred_leave(&saved);
	if (fd < 0)
		return fd;
	*ret_fd = fd;
	return 0;
}


static int file_kind_ok(int fd, bool regular_only)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -errno;
	if (S_ISREG(st.st_mode) || (!regular_only && S_ISBLK(st.st_mode)))
		return 0;
	return -EINVAL;
}

int access_open(const struct mvmd *d, const struct cred *cred, const char *field,
                const char *path, bool write, bool regular_only, int *ret_fd,
                struct proto_error *err)
{
	/* O_NONBLOCK: a FIFO must not stall the control thread */
	int flags = (write ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;
	bool root = geteuid() == 0;
	int fd = -1, r;

	if (!root && cred->uid != d->uid) {
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, field,
		                "mvmd runs as uid %u and cannot check files for uid %u; ask the owner of mvmd or run mvmd as root",
		                (unsigned)d->uid, (unsigned)cred->uid);
		return -EPERM;
	}
	r = open_as(cred, root, path, flags, &fd);
	if (r == -ELOOP || (r == 0 && on_procfs(fd))) {
		if (r == 0)
			close(fd);
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, field,
		                "%s is a /proc file or goes through a /proc magic link (or a "
		                "symlink loop), which mvmd does not open for a VM; give the "
		                "file's own path instead",
		                path);
		return -EPERM;
	}
	if (r == -EACCES || r == -EPERM || r == -EROFS) {
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, field,
		                "you may not %s %s (%s); fix its permissions or pick another file",
		                write ? "read and write" : "read", path, strerror(-r));
		return r;
	}
	if (r < 0) {
		proto_error_set(err, PROTO_ERR_FILE_ERROR, field, "cannot open %s: %s",
		                path, strerror(-r));
		return r;
	}
	r = file_kind_ok(fd, regular_only);
	if (r < 0) {
		close(fd);
		proto_error_set(err, PROTO_ERR_FILE_ERROR, field, "%s is not a regular file%s",
		                path, regular_only ? "" : " or block device");
		return r;
	}
	/* back to blocking for the worker */
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	*ret_fd = fd;
	return 0;
}
