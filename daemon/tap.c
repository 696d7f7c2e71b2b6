/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <net/if.h>
#include <linux/if_tun.h>

#include "daemon/tap.h"
#include "util/util.h"

/* The tun driver's rule (drivers/net/tun.c, tun_not_capable): TUNSETIFF on
 * an existing TAP is refused when it has an owner that is not the caller's
 * euid, or a group the caller is not in, unless the caller has
 * CAP_NET_ADMIN.  /dev/net/tun's own mode plays no part in it, so mvmd
 * opens the device as itself and only the ioctl runs as the client. */
static int tap_attach(const struct cred *cred, bool as_client, const char *name,
                      int *ret_fd)
{
	struct util_saved_cred saved;
	struct ifreq ifr;
	int fd, r = 0;

	memset(&ifr, 0, sizeof(ifr));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
	if (strlen(name) >= sizeof(ifr.ifr_name))
		return -ENAMETOOLONG;
	memcpy(ifr.ifr_name, name, strlen(name));
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (as_client)
		r = util_cred_enter(cred->uid, cred->gid, cred->ngroups, cred->groups, &saved);
	if (r == 0 && ioctl(fd, TUNSETIFF, &ifr) < 0)
		r = -errno;
	if (as_client)
		util_cred_leave(&saved);
	if (r < 0) {
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

/* A TAP with neither owner nor group: the kernel lets every user attach
 * it, so for anyone but root it is nobody's to give a VM. */
static bool tap_ownerless(const char *name)
{
	char path[128], owner[32], group[32];

	snprintf(path, sizeof(path), "/sys/class/net/%s/owner", name);
	if (util_read_file(path, owner, sizeof(owner)) <= 0)
		return false;           /* not a tun device: TUNSETIFF says so */
	snprintf(path, sizeof(path), "/sys/class/net/%s/group", name);
	if (util_read_file(path, group, sizeof(group)) <= 0)
		return false;
	return !strcmp(util_trim(owner), "-1") && !strcmp(util_trim(group), "-1");
}

int tap_open(const struct mvmd *d, const struct cred *cred, const char *name,
             int *ret_fd, struct proto_error *err)
{
	bool root = geteuid() == 0;
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
	if (cred->uid != 0 && tap_ownerless(name)) {
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, "nics", "TAP '%s' has no owner "
		                "or group, so any user could attach it; have root recreate it with "
		                "'ip tuntap add dev %s mode tap user <you>'", name, name);
		return -EPERM;
	}
	r = tap_attach(cred, root, name, ret_fd);
	if (r == -EPERM || r == -EACCES)
		proto_error_set(err, PROTO_ERR_PERMISSION_DENIED, "nics", "you may not use TAP '%s' "
		                "(%s): its owner or group is not yours; have it created with "
		                "'user <you>' or 'group <your group>'", name, strerror(-r));
	else if (r < 0)
		proto_error_set(err, PROTO_ERR_FILE_ERROR, "nics", "cannot attach TAP '%s': %s; check "
		                "that it is a TAP (not a TUN) and no other VM uses it", name, strerror(-r));
	return r;
}
