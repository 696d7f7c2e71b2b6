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
#include <linux/magic.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/util.h"

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
	int fd = (int)syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));

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

/* procfs files (/proc/self/environ, /proc/N/cmdline, ...) describe
 * processes, mvmd's own among them; no VM boots from one. */
static bool on_procfs(int fd)
{
	struct statfs sf;

	return fstatfs(fd, &sf) == 0 && sf.f_type == PROC_SUPER_MAGIC;
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
