/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>

#include "daemon/tap.h"

struct saved_ids {
	int ngroups;
	gid_t groups[64];
};

/* Raw syscalls: they change only this thread (glibc's wrappers would
 * change every thread).  Leaving euid 0 also clears this thread's
 * effective capabilities, CAP_NET_ADMIN included; going back restores
 * them from the permitted set. */
static int ids_enter(const struct cred *cred, struct saved_ids *saved)
{
	saved->ngroups = getgroups(64, saved->groups);
	if (saved->ngroups < 0)
		return -errno;
	if (syscall(SYS_setgroups, (size_t)cred->ngroups, cred->groups) < 0 ||
	    syscall(SYS_setresgid, (gid_t)-1, cred->gid, (gid_t)-1) < 0 ||
	    syscall(SYS_setresuid, (uid_t)-1, cred->uid, (uid_t)-1) < 0)
		return -errno;
	return 0;
}

static void ids_leave(const struct saved_ids *saved)
{
	/* Cannot fail: the real and saved ids are still root. */
	syscall(SYS_setresuid, (uid_t)-1, getuid(), (uid_t)-1);
	syscall(SYS_setresgid, (gid_t)-1, getgid(), (gid_t)-1);
	if (saved->ngroups >= 0)
		syscall(SYS_setgroups, (size_t)saved->ngroups, saved->groups);
}

static int tap_attach(const char *name, int *ret_fd)
{
	struct ifreq ifr;
	int fd, r;

	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (strlen(name) >= sizeof(ifr.ifr_name))
		return -ENAMETOOLONG;
	memcpy(ifr.ifr_name, name, strlen(name));
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* TUNSETIFF creates a missing interface when allowed: for a client it
 * never is (no CAP_NET_ADMIN), for root it would be, so look first. */
static bool tap_exists(const char *name)
{
	return if_nametoindex(name) != 0;
}

int tap_open(const struct mvmd *d, const struct cred *cred, const char *name,
             int *ret_fd, struct proto_error *err)
{
	bool root = geteuid() == 0;
	struct saved_ids saved;
	int r;

	if (!root && cred->uid != d->uid) {
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, "nics",
		                "mvmd runs as uid %u and cannot attach TAPs for uid %u; "
		                "run mvmd as root", (unsigned)d->uid, (unsigned)cred->uid);
		return -EPERM;
	}
	if (!tap_exists(name)) {
		proto_error_set(err, PROTO_ERR_FILE_ERROR, "nics", "no network interface '%s'; "
		                "create it first: ip tuntap add dev %s mode tap user <you>", name, name);
		return -ENODEV;
	}
	r = root ? ids_enter(cred, &saved) : 0;
	if (r == 0)
		r = tap_attach(name, ret_fd);
	if (root)
		ids_leave(&saved);
	if (r == -EPERM || r == -EACCES)
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, "nics", "you may not use TAP '%s' "
		                "(%s); have it created with 'user <you>' or 'group <your group>'",
		                name, strerror(-r));
	else if (r < 0)
		proto_error_set(err, PROTO_ERR_FILE_ERROR, "nics", "cannot attach TAP '%s': %s; check "
		                "that it is a TAP (not a TUN) and no other VM uses it", name, strerror(-r));
	return r;
}
