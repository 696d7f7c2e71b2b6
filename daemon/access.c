/* SPDX-License-Identifier: MIT */
/*
 * File access on behalf of a client (docs/security.md).  A client may only
 * make a VM use files it can open itself.  A root mvmd opens each file with
 * the client's uid, gid and supplementary groups as the filesystem
 * credentials of the control thread, then hands the open fd to the worker,
 * so the file the worker uses is the file that was checked.  The raw
 * setfsuid/setfsgid/setgroups syscalls change only the calling thread (the
 * glibc wrappers would change every thread of the process).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "daemon/mvmd.h"

struct saved_cred {
	int ngroups;
	gid_t groups[64];
};

static int cred_enter(const struct cred *cred, struct saved_cred *saved)
{
	saved->ngroups = getgroups(64, saved->groups);
	if (saved->ngroups < 0)
		return -errno;
	if (syscall(SYS_setgroups, (size_t)cred->ngroups, cred->groups) < 0)
		return -errno;
	syscall(SYS_setfsgid, cred->gid);
	syscall(SYS_setfsuid, cred->uid);
	/* setfsuid reports the previous value, never an error: read it back */
	if ((uid_t)syscall(SYS_setfsuid, cred->uid) != cred->uid ||
	    (gid_t)syscall(SYS_setfsgid, cred->gid) != cred->gid)
		return -EPERM;
	return 0;
}

static void cred_leave(const struct saved_cred *saved)
{
	syscall(SYS_setfsuid, geteuid());
	syscall(SYS_setfsgid, getegid());
	syscall(SYS_setgroups, (size_t)saved->ngroups, saved->groups);
}

static int open_as(const struct cred *cred, bool as_client, const char *path,
                   int flags, int *ret_fd)
{
	struct saved_cred saved;
	int fd, r = 0;

	if (as_client) {
		r = cred_enter(cred, &saved);
		if (r < 0) {
			cred_leave(&saved);
			return r;
		}
	}
	fd = open(path, flags);
	if (fd < 0)
		r = -errno;
	if (as_client)
		cred_leave(&saved);
	if (r == 0)
		*ret_fd = fd;
	return r;
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
