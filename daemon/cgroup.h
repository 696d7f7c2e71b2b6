/* SPDX-License-Identifier: MIT */
/*
 * Per-VM cgroups: memory (guest memory + VMM overhead, no swap), CPU
 * (quota = vCPUs x period, weight proportional to vCPUs) and pids, under
 * one daemon-owned parent that caps the host budget.  Each controller is
 * detected on its own, as Firecracker's jailer does: cgroup v2 (unified at
 * <root> or <root>/unified in the hybrid layout, controller listed in
 * cgroup.controllers and enabled through cgroup.subtree_control) is
 * preferred, else v1 (<root>/<controller> mounted and writable).  Where no
 * controller is usable, cgroup_init still succeeds: cgroup_usable() is
 * false, cgroup_reason() says why, and every other call is a no-op.
 * Errors are negative errno plus a message in err; nothing is printed.
 *
 * Its one user is daemon/admit.c: cgroup_init() at start with the
 * config's cgroup_parent (its reason logged once and shown in host.info),
 * cgroup_parent_set_budget() with the memory budget (again on SIGHUP or
 * host.set); cgroup_vm_create() before a worker is spawned (a failure
 * refuses the start), cgroup_vm_attach() right after the spawn (the vCPU
 * threads come later and inherit it; a failure kills the worker),
 * cgroup_vm_oom_killed() for the exit reason of a worker killed by
 * SIGKILL, cgroup_vm_destroy() once it ended; cgroup_vm_open() for a
 * worker re-adopted at start-up, cgroup_vm_close() for workers left
 * running at daemon exit.
 */
#ifndef MVM_CGROUP_H
#define MVM_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum cgroup_ctrl { CGROUP_MEMORY, CGROUP_CPU, CGROUP_PIDS, CGROUP_NCTRL };
enum cgroup_mode { CGROUP_NONE, CGROUP_V1, CGROUP_V2 };

#define CGROUP_CPU_PERIOD_US 100000
#define CGROUP_DEFAULT_PIDS_MAX 64

struct cgroup_opts {
	const char *root;       /* cgroup mounts; NULL: /sys/fs/cgroup */
	/* NULL: "mvm".  Relative: beneath mvmd's own cgroup, per hierarchy.
	 * Absolute: from the hierarchy's root. */
	const char *parent;
	/* NULL: VMs' cgroups sit in the parent.  Else this mvmd's own subtree
	 * <parent>/mvm-<instance> holds them (cgroup_instance_id), so two
	 * mvmds never share a VM's cgroup. */
	const char *instance;
	bool no_v2;             /* use v1 even where v2 is usable (tests) */
	/* v2 only: where the cgroup we start from holds processes (a systemd
	 * service with Delegate=yes), move them into its "daemon" child so
	 * it may hand controllers down.  The daemon sets this; tests don't. */
	bool move_to_leaf;
};

struct cgroup {
	enum cgroup_mode mode[CGROUP_NCTRL];
	/* the kernel favours dynamic modifications (cgroup_favordynmods):
	 * false means every attach waits for an RCU grace period */
	bool favordynmods;
	char *parent[CGROUP_NCTRL];     /* absolute directory, NULL if none */
	unsigned created[CGROUP_NCTRL]; /* trailing levels of it we made */
	char reason[1024];
};

struct cgroup_vm {
	enum cgroup_mode mode[CGROUP_NCTRL];
	char *dir[CGROUP_NCTRL];
	uint64_t mem_bytes;
	char note[256];                 /* a limit that could not be set */
};

/* A stable id for the mvmd whose state lives at key (its state dir): 16
 * hex digits, the same across restarts, so re-adopted workers' cgroups are
 * found again.  buf holds at least 17 bytes. */
void cgroup_instance_id(const char *key, char *buf, size_t len);
/* 0 whether or not any controller is usable; -ENOMEM or -EINVAL (bad
 * opts.parent) otherwise. */
int cgroup_init(struct cgroup *cg, const struct cgroup_opts *opts);
void cgroup_free(struct cgroup *cg);
/*
 * Whether the kernel's one threadgroup lock of all hierarchies is kept in
 * the mode that favours moving tasks: some cgroup or cgroup2 mount in
 * mounts (/proc/self/mounts text) has the favordynmods option, or the
 * kernel command line cmdline sets cgroup_favordynmods= true.  Without
 * it each write of a pid to cgroup.procs waits for an RCU grace period
 * (measured 5-15 ms on the 2-core test host), on mvmd's loop.
 */
bool cgroup_dynmods_favored(const char *mounts, const char *cmdline);
/* What to do when it is not: for admit.c's log line and host.info. */
#define CGROUP_DYNMODS_FIX "each start waits for an RCU grace period in cgroup.procs; " \
	"boot with cgroup_favordynmods=true (v1 and v2) or remount cgroup2 with " \
	"-o remount,favordynmods"
bool cgroup_usable(const struct cgroup *cg);
/* Which hierarchy each controller uses and where, or why none is usable. */
const char *cgroup_reason(const struct cgroup *cg);
const char *cgroup_mode_name(enum cgroup_mode m);
const char *cgroup_ctrl_name(enum cgroup_ctrl c);
/* Cap the parent's memory (all VMs together); 0 = no cap. */
int cgroup_parent_set_budget(const struct cgroup *cg, uint64_t mem_bytes,
                             char *err, size_t errlen);
/* Remove the parent directories this cgroup_init created (they must be
 * empty); for tests and uninstall. */
int cgroup_parent_remove(struct cgroup *cg, char *err, size_t errlen);

/* mem_bytes: guest memory + VMM overhead; pids_max 0: the default.  A
 * VM's directory is vm-<name> (so no VM name is a control file's).  An
 * existing empty one (a crashed mvmd's) is reused; one that holds
 * processes is refused with -EBUSY: they are not ours to adopt or kill.
 * With no usable controller, *ret is an empty handle (all no-ops). */
int cgroup_vm_create(const struct cgroup *cg, const char *vm_name, uint64_t mem_bytes,
                     unsigned vcpus, uint64_t pids_max, struct cgroup_vm **ret,
                     char *err, size_t errlen);
/* The handle of an existing per-VM cgroup (re-adoption), values untouched. */
int cgroup_vm_open(const struct cgroup *cg, const char *vm_name, struct cgroup_vm **ret,
                   char *err, size_t errlen);
/* CPU quota in thousandths of a CPU (1000 = one core); 0 = no quota. */
int cgroup_vm_set_cpu(const struct cgroup_vm *v, uint64_t millicpus, char *err, size_t errlen);
int cgroup_vm_attach(const struct cgroup_vm *v, pid_t pid, char *err, size_t errlen);
/* Open the cgroup.procs of each of its directories for a child to write
 * itself into (spawn.c): how many (at most max), with each one's directory
 * in ret_dirs; -errno and err on failure (none left open). */
int cgroup_vm_open_procs(const struct cgroup_vm *v, int *fds, const char **ret_dirs, int max,
                         char *err, size_t errlen);
/* 1 if the kernel OOM-killed a task in it, 0 if not, -EOPNOTSUPP when
 * memory is not controlled, other negative errno on failure. */
int cgroup_vm_oom_killed(const struct cgroup_vm *v);
/* What the kernel counts for a VM's cgroup (vm.stats). */
struct cgroup_vm_stats {
	bool has_mem, has_cpu;          /* false: not controlled or unreadable */
	uint64_t mem_bytes;             /* memory.current / memory.usage_in_bytes */
	uint64_t mem_limit_bytes;       /* 0: no limit */
	uint64_t cpu_ns;                /* CPU time used, all threads */
	uint64_t throttled_ns;          /* time held back by the CPU quota */
};

/* Read them (no-op fields stay false/0 where a controller is missing).
 * Always 0. */
int cgroup_vm_read_stats(const struct cgroup_vm *v, struct cgroup_vm_stats *ret);
/* Directory of one controller's cgroup, NULL when not controlled. */
const char *cgroup_vm_dir(const struct cgroup_vm *v, enum cgroup_ctrl c);
/*
 * Remove every directory, retried for up to a second while the worker's
 * last tasks go (it ended before this is called).  Tasks still inside
 * were not spawned by mvmd as this VM's worker and are never killed: the
 * directory stays and -EBUSY says which pids hold it.  Frees v in all
 * cases; returns the first failure.
 */
int cgroup_vm_destroy(struct cgroup_vm *v, char *err, size_t errlen);
/* Free the handle and leave the cgroup as it is (daemon exit while the
 * worker keeps running, for re-adoption). */
void cgroup_vm_close(struct cgroup_vm *v);

#endif
