/* SPDX-License-Identifier: MIT */
#ifndef MVM_UID_LEASE_H
#define MVM_UID_LEASE_H

#include <stddef.h>
#include <stdint.h>

/*
 * Host-wide leases on sandbox uids (docs/security.md "Sandbox uids"): one
 * file per uid in a root-owned 0700 directory, held by an flock on an open
 * file description.  Whoever holds an fd of it holds the lease (mvmd and
 * the worker it hands a copy to); the kernel drops it when the last such
 * fd closes, so a lease lives exactly as long as the processes holding it.
 * No unprivileged process can open the directory, so none can take one.
 * flock is per file description, not per process or network namespace:
 * two openers in one process, two mvmds, and mvmds in different netns
 * all exclude each other.
 */

#define UID_LEASE_DIR_DEFAULT "/run/mvm-uid-leases"

/* Creates dir (0700) if missing and checks it is a directory owned by us
 * that no one else can write in (one others may only read is made 0700):
 * an fd of it, or -errno with why[] set (what is wrong and the fix). */
int uid_lease_dir_open(const char *dir, char *why, size_t whylen);

/* Takes the lease on uid (dfd from uid_lease_dir_open): its fd
 * (close-on-exec), -EWOULDBLOCK if someone holds it, or -errno. */
int uid_lease_take(int dfd, uint32_t uid);

#endif
