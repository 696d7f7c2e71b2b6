/* SPDX-License-Identifier: MIT */
/*
 * Host ceilings: the kernel and process limits a fleet meets before the
 * configured capacity (mvmd's open files, kernel.pid_max,
 * kernel.threads-max, vm.max_map_count), each with the VM count it
 * allows and the fix.  A leaf: reads /proc and getrlimit, calls nothing
 * of the daemon.
 */
#ifndef MVM_DAEMON_CEILINGS_H
#define MVM_DAEMON_CEILINGS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* mvmd's fds per running VM: its end of the link and the sandbox uid
 * lease (a pidfd only once the worker is ending or signalled; measured:
 * docs/architecture.md "Host ceilings") */
#define CEIL_FDS_PER_VM 2
/* host tasks per running VM of n vCPUs: the worker's main thread, its
 * vCPU threads, KVM's NX huge page recovery thread (in the worker's
 * thread group) and KVM's PIT kthread (outside it; measured, same
 * section) */
#define CEIL_TASKS_PER_VM(vcpus) (3 + (uint64_t)(vcpus))
/* the kernel's largest kernel.pid_max (PID_MAX_LIMIT on 64-bit) */
#define CEIL_PID_MAX_LIMIT 4194304

#define CEIL_UNLIMITED UINT64_MAX
/* the VM the configured count is taken for: the smallest proto/args.c
 * accepts (mem_mib 16, 1 vCPU), so the most VMs the limits admit */
#define CEIL_VM_MIB 16
#define CEIL_VM_VCPUS 1

enum ceiling_kind { CEIL_NOFILE, CEIL_PID_MAX, CEIL_THREADS_MAX, CEIL_MAP_COUNT, CEIL_COUNT };

struct ceiling {
	const char *name;               /* "RLIMIT_NOFILE", "kernel.pid_max", ... */
	uint64_t limit;                 /* CEIL_UNLIMITED: none */
	uint64_t used;                  /* in use now (mvmd's fds, host tasks) */
	uint64_t per_vm;                /* 0: not a per-fleet limit */
	uint64_t vms;                   /* running VMs it allows; CEIL_UNLIMITED: no bound */
	bool binding;                   /* vms < the configured VM count */
	char fix[192];                  /* what to change; "" when not binding */
};

/* The running VMs a limit allows: the running ones plus what the headroom
 * (limit - used) holds at per_vm each; CEIL_UNLIMITED for no limit or
 * per_vm 0.  Saturates, never wraps. */
uint64_t ceiling_vms(uint64_t limit, uint64_t used, uint64_t per_vm, uint64_t running);
/* The limit that holds want VMs: used now + (want - running) * per_vm,
 * saturating; want <= running needs no more than used. */
uint64_t ceiling_needed(uint64_t limit_now, uint64_t used, uint64_t per_vm,
                        uint64_t running, uint64_t want);

/* Each ceiling from inputs already read (unit-tested without /proc):
 * limit and used in c[i] on entry; fills per_vm, vms, binding and fix
 * for running VMs of vcpus each and the configured VM count want. */
void ceilings_compute(struct ceiling c[CEIL_COUNT], uint64_t running, unsigned vcpus,
                      uint64_t want);
/* Read this host's limits and usage, then ceilings_compute.  0 or -errno
 * of the first one that could not be read (the others are filled). */
int ceilings_read(struct ceiling c[CEIL_COUNT], uint64_t running, unsigned vcpus,
                  uint64_t want);
/* host.info's "ceilings": one object per ceiling (vms null: no bound). */
json_t *ceilings_json(const struct ceiling c[CEIL_COUNT]);
/* Start-up: raise RLIMIT_NOFILE's soft limit to the hard one; msg says
 * what it is now. */
void ceilings_raise_nofile(char *msg, size_t size);

#endif
