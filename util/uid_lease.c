/* SPDX-License-Identifier: MIT */
/* Host-wide sandbox uid leases; see uid_lease.h. */
#include "util/uid_lease.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int uid_lease_dir_open(const char *dir, char *why, size_t whylen)
{
	struct stat st;
	int fd, r;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		r = -errno;
		snprintf(why, whylen, "cannot create the uid lease directory %s: %s", dir,
		         strerror(errno));
		return r;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		r = -errno;
		snprintf(why, whylen, "cannot open the uid lease directory %s: %s", dir,
		         strerror(errno));
		return r;
	}
	if (fstat(fd, &st) < 0) {
		r = -errno;
		close(fd);
		snprintf(why, whylen, "cannot stat %s: %s", dir, strerror(-r));
		return r;
	}
	/* Anyone else who could write in it could hold every uid hostage;
	 * one only readable by others (systemd's RuntimeDirectoryMode) held
	 * nothing of theirs, and is closed now. */
	if (st.st_uid == geteuid() && !(st.st_mode & 022) && (st.st_mode & 077) &&
	    fchmod(fd, 0700) == 0)
		st.st_mode &= ~(mode_t)077;
	if (st.st_uid != geteuid() || (st.st_mode & 077)) {
		close(fd);
		snprintf(why, whylen, "the uid lease directory %s is owned by uid %u with mode %04o; "
		         "it must be owned by uid %u and closed to others (chown %u %s && "
		         "chmod 0700 %s)", dir, (unsigned)st.st_uid, (unsigned)(st.st_mode & 07777),
		         (unsigned)geteuid(), (unsigned)geteuid(), dir, dir);
		return -EPERM;
	}
	return fd;
}

int uid_lease_take(int dfd, uint32_t uid)
{
	char name[16];
	int fd, r;

	snprintf(name, sizeof(name), "%u", uid);
	/* O_RDONLY: a worker that holds a copy cannot write through it */
	fd = openat(dfd, name, O_RDONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		r = errno == EWOULDBLOCK ? -EWOULDBLOCK : -errno;
		close(fd);
		return r;
	}
	return fd;
}
