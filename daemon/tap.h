/* SPDX-License-Identifier: MIT */
#ifndef MVMD_TAP_H
#define MVMD_TAP_H

#include "daemon/mvmd.h"

/*
 * Opens the existing TAP interface `name` for a VM of the client `cred`
 * (docs/security.md, "Network interfaces").  A root mvmd opens /dev/net/tun
 * as itself and attaches (TUNSETIFF) with the client's uid, gid and groups
 * as the calling thread's effective ids, so the tun driver applies its own
 * owner/group check and a client without CAP_NET_ADMIN can neither create
 * an interface nor take one it does not own.  A TAP with neither owner nor
 * group (which the kernel gives anyone) is refused to every client but
 * root.  The fd (IFF_TAP | IFF_NO_PI, blocking, close-on-exec) goes to the
 * worker as --net fd=N; the worker never needs CAP_NET_ADMIN.
 */
int tap_open(const struct mvmd *d, const struct cred *cred, const char *name,
             int *ret_fd, struct proto_error *err);

#endif
