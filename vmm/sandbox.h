/* SPDX-License-Identifier: MIT */
#ifndef MVM_SANDBOX_H
#define MVM_SANDBOX_H

#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/uid_lease.h"
#include "vmm/vm.h"

/*
 * The worker's lockdown (docs/security.md, "Worker sandbox").  main.c calls
 * sandbox_enter() once the VM is built and every file it needs is open, and
 * before any vCPU thread exists; each vCPU thread calls sandbox_enter_vcpu()
 * before its first KVM_RUN.
 */

#define SANDBOX_CGROUPS_MAX 8
#define SANDBOX_KEEP_FDS_MAX 8
/* Default per-VM ids when run by hand: the first free uid lease
 * (util/uid_lease.h, in UID_LEASE_DIR_DEFAULT, shared with mvmd) from
 * SANDBOX_ID_BASE + pid % SANDBOX_ID_SPAN on, within the span. */
#define SANDBOX_ID_BASE 100000u
#define SANDBOX_ID_SPAN 60000u
#define SANDBOX_DIR_DEFAULT "/tmp"

struct sandbox_config {
	bool enabled;
	/* NULL: the root is an empty tmpfs mounted on SANDBOX_DIR_DEFAULT.
	 * Else the per-VM directory (absolute, normalised), which becomes the
	 * root, read-only (a bind mount: no superblock of its own). */
	const char *dir;
	bool have_uid, have_gid;
	bool have_lease;        /* --sandbox-lease-fd: mvmd leased the uid */
	uid_t uid;
	gid_t gid;
	const char *cgroup_procs[SANDBOX_CGROUPS_MAX];
	unsigned ncgroups;
	/* Inherited fds that stay open besides 0-2, the control link and the
	 * TAP and disk fds named in the vm_config. */
	int keep_fds[SANDBOX_KEEP_FDS_MAX];
	unsigned nkeep;
	bool test_forbidden_syscall; /* only with -Dtest_hooks=true */
	bool test_netns;             /* test: the netns even where Landlock would do */
	const char *test_abstract;   /* test: dial this abstract socket once locked */
};

/* getopt_long entries and their --help text, for main.c's tables. */
enum {
	SANDBOX_OPT_ENABLE = 1000, SANDBOX_OPT_DIR, SANDBOX_OPT_UID, SANDBOX_OPT_GID,
	SANDBOX_OPT_CGROUP, SANDBOX_OPT_TEST_FORBIDDEN, SANDBOX_OPT_LEASE_FD,
	SANDBOX_OPT_TEST_NETNS, SANDBOX_OPT_TEST_ABSTRACT,
};

#ifdef MVM_TEST_HOOKS
#define SANDBOX_TEST_OPTIONS \
	{ "test-forbidden-syscall", no_argument, NULL, SANDBOX_OPT_TEST_FORBIDDEN }, \
	{ "test-sandbox-netns", no_argument, NULL, SANDBOX_OPT_TEST_NETNS }, \
	{ "test-abstract-connect", required_argument, NULL, SANDBOX_OPT_TEST_ABSTRACT },
#else
#define SANDBOX_TEST_OPTIONS
#endif

#define SANDBOX_LONG_OPTIONS \
	{ "sandbox", no_argument, NULL, SANDBOX_OPT_ENABLE }, \
	{ "sandbox-dir", required_argument, NULL, SANDBOX_OPT_DIR }, \
	{ "sandbox-uid", required_argument, NULL, SANDBOX_OPT_UID }, \
	{ "sandbox-gid", required_argument, NULL, SANDBOX_OPT_GID }, \
	{ "cgroup-procs", required_argument, NULL, SANDBOX_OPT_CGROUP }, \
	{ "sandbox-lease-fd", required_argument, NULL, SANDBOX_OPT_LEASE_FD }, \
	SANDBOX_TEST_OPTIONS

#define SANDBOX_USAGE \
"      --sandbox             lock the worker down before the guest runs: empty root,\n" \
"                            own namespaces, uid and gid, no capabilities, Landlock\n" \
"                            (where the kernel has ABI 6) or a network namespace,\n" \
"                            seccomp\n" \
"      --sandbox-dir DIR     the root is the per-VM directory DIR (absolute),\n" \
"                            read-only: put --vsock uds=DIR/NAME\n" \
"                            and its NAME_PORT listeners there (default: an empty root)\n" \
"      --sandbox-uid N, --sandbox-gid N\n" \
"                            ids to run as (default: the first uid from 100000 +\n" \
"                            pid %% 60000 whose lease in " UID_LEASE_DIR_DEFAULT " is free)\n" \
"      --sandbox-lease-fd N  inherited fd N holds the uid's lease: keep it open\n" \
"      --cgroup-procs FILE   join a cgroup by writing to its cgroup.procs (repeatable)\n"

/* Returns 1 if c was a sandbox option (taken), 0 if not one, -EINVAL for a
 * bad value (*ret_why says what is wrong). */
int sandbox_parse_option(struct sandbox_config *cfg, int c, const char *arg, const char **ret_why);

/* Before anything is opened: unless already PID 1 (mvmd cloned it into a
 * new PID namespace), fork so the VMM runs as the init of a new one while
 * this process waits for it (it never returns; the worker does, with 0).
 * Nothing without --sandbox.  -errno if the namespace or fork failed. */
int sandbox_enter_pidns(const struct sandbox_config *cfg);

/* Steps 1 to 6 of the lockdown; on failure *ret_step names the step that
 * failed and the worker must not run the guest.  `vm` sizes the limits;
 * control_fd (-1: none) stays open and receives the seccomp report. */
int sandbox_enter(const struct sandbox_config *cfg, const struct vm_config *vm,
                  int control_fd, const char **ret_step);

/* Names the calling vCPU thread "vcpuN" and loads the vCPU filter in it
 * (no filter without --sandbox). */
int sandbox_enter_vcpu(unsigned id);

#endif
