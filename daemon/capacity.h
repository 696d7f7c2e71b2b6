/* SPDX-License-Identifier: MIT */
/*
 * Host capacity: admission against host-wide, pool and per-owner limits,
 * and boot-storm control (concurrent starts, start rate, FIFO queue).
 *
 * Pure accounting: no I/O (except cap_host_defaults), no libuv, no
 * allocation on the admission path except the first time an owner uid is
 * seen.  Every decision is O(1) in the number of VMs: the module keeps
 * running sums, never scans VMs.  Single-threaded, like mvmd's loop.
 *
 * Its one user is daemon/admit.c: config.c hands it the capacity lines
 * (cap_limits_parse_line); admit_reserve() calls cap_admit() (-ENOSPC: can never fit, answered
 * `limit_exceeded`; -EAGAIN: not now, answered `unavailable`) and, for a
 * start now, cap_start_try() before the row moves to starting or queued
 * (a failed commit gives the reservation back with cap_release()); a
 * queued VM waits in cap_queue_push()'s FIFO, drained while
 * cap_start_try() allows, with a uv_timer at cap_next_wakeup_ns() for the
 * start rate; the first guest output or the worker's end calls
 * cap_start_done(), and the end cap_release() (the token is zeroed, so a
 * second call is a no-op).  A worker re-adopted at start-up is counted
 * again with cap_reserve_force().  host.set and SIGHUP: cap_limits_set()
 * on a copy, then cap_set_limits() (existing reservations stay).
 *
 * Units: memory in MiB, time in CLOCK_MONOTONIC nanoseconds.  For count
 * limits (max_vms, max_concurrent_starts, owner quotas, start_rate) the
 * value 0 means unlimited; a pool's max of 0 means none available.
 */
#ifndef MVM_CAPACITY_H
#define MVM_CAPACITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CAP_MAX_POOLS        64
#define CAP_POOL_NAME_MAX    32     /* [a-z0-9_-]{1,32} */
#define CAP_MAX_OWNER_QUOTAS 64
#define CAP_REQ_MAX_POOLS    8      /* pools one VM may name */

#define CAP_DEFAULT_MEMORY_RESERVED_MIB 512
/* a worker really costs 1.2-1.9 MiB of host memory, kernel included, for
 * an idle small guest (bench/density.py; README "Density"); 8 MiB leaves
 * room for page tables of guests of a few GiB that touch all their memory */
#define CAP_DEFAULT_VMM_OVERHEAD_MIB    8
#define CAP_DEFAULT_OVERCOMMIT          1.0
#define CAP_DEFAULT_OVERSUBSCRIPTION    4.0
#define CAP_DEFAULT_START_BURST         8

struct cap_owner_quota {
	uint32_t uid;
	uint64_t max_vms;               /* 0 = unlimited, in all three */
	uint64_t max_mem_mib;
	uint64_t max_vcpus;
};

struct cap_pool_limit {
	char name[CAP_POOL_NAME_MAX + 1];
	uint64_t max;
};

struct cap_limits {
	uint64_t max_vms;               /* 0 = unlimited */
	uint64_t host_mem_mib;          /* MemTotal, from cap_host_defaults */
	uint64_t memory_budget_mib;     /* 0 = auto: host_mem - reserved */
	uint64_t memory_reserved_mib;
	uint64_t vmm_overhead_mib;      /* charged per VM on top of its memory */
	double memory_overcommit;       /* guest memory may reach budget x this */
	uint64_t host_cpus;
	double vcpu_oversubscription;   /* vCPUs may reach host_cpus x this */
	uint64_t max_concurrent_starts; /* 0 = unlimited */
	double start_rate;              /* starts per second; 0 = unlimited */
	uint64_t start_burst;
	size_t npools;
	struct cap_pool_limit pools[CAP_MAX_POOLS];
	struct cap_owner_quota owner_default;   /* uid field unused */
	size_t nowners;
	struct cap_owner_quota owners[CAP_MAX_OWNER_QUOTAS];
};

/* Built-in defaults with a 1-CPU, 0-MiB host: call cap_host_defaults next. */
void cap_limits_init(struct cap_limits *l);
/* Fill host_mem_mib and host_cpus from /proc/meminfo and sysconf. */
int cap_host_defaults(struct cap_limits *l);
/*
 * Set one limit from text.  Keys: max_vms, memory_budget ("auto" or a
 * size), memory_reserved, vmm_overhead, memory_overcommit, host_cpus,
 * vcpu_oversubscription, max_concurrent_starts, start_rate, start_burst,
 * pool.NAME (N, or "none" to remove), owner.UID.{max_vms,max_mem,max_vcpus}
 * and owner.default.{...}.  Sizes are MiB, or take a K/M/G/T[iB] suffix;
 * "unlimited" is accepted where 0 means unlimited.  Returns 0, or -EINVAL
 * / -ENOENT (unknown key) / -ENOSPC (too many pools or owners) with a
 * message in err; *l is unchanged on failure.
 */
int cap_limits_set(struct cap_limits *l, const char *key, const char *value,
                   char *err, size_t errlen);
/* One config line: `key = value`, `key=value` or `pool NAME max N`.
 * Returns 0 when applied, 1 when the key is not a capacity key (the caller
 * may handle it), negative errno with err set on a bad value. */
int cap_limits_parse_line(struct cap_limits *l, const char *line,
                          char *err, size_t errlen);
/* Effective limits derived from the settings: the memory limit is the
 * physical budget times memory_overcommit, which only VMs with a balloon
 * may use; cap_limits_phys_mib is the budget itself. */
uint64_t cap_limits_mem_mib(const struct cap_limits *l);
uint64_t cap_limits_phys_mib(const struct cap_limits *l);
uint64_t cap_limits_vcpus(const struct cap_limits *l);
/* The VMs of mem_mib and vcpus each that max_vms, the memory limit and
 * the vCPU limit admit together (pools and owner quotas aside). */
uint64_t cap_limits_vms(const struct cap_limits *l, uint64_t mem_mib, uint64_t vcpus);

/* ---- admission ----------------------------------------------------------- */

struct cap_request {
	uint32_t uid;
	uint64_t mem_mib;
	uint64_t vcpus;
	/* it has a balloon, so its memory can be reclaimed: only such VMs
	 * take part in memory_overcommit; the others count at full size
	 * against the physical budget */
	bool balloon;
	size_t npools;
	const char *pools[CAP_REQ_MAX_POOLS];
};

/*
 * What one admitted VM holds.  cap_admit fills it; cap_release gives
 * exactly that back and zeroes it, so releasing twice is a no-op: the
 * daemon keeps one per VM and never copies it.
 */
struct cap_resv {
	bool held;
	uint32_t uid;
	uint64_t mem_mib;               /* charged: guest memory + overhead */
	uint64_t vcpus;
	bool balloon;
	uint8_t npools;
	uint8_t pool_slot[CAP_REQ_MAX_POOLS];
};

struct cap_pool_use {
	char name[CAP_POOL_NAME_MAX + 1];
	uint64_t max;
	uint64_t used;
	bool defined;                   /* false: removed while still in use */
};

struct cap_owner_use {
	uint32_t uid;
	bool live;
	uint64_t vms, mem_mib, vcpus;
};

/* A FIFO of queued starts; embed a node in the daemon's VM record and
 * zero it before first use (unlinked = next is NULL). */
struct cap_qnode {
	struct cap_qnode *prev, *next;
	int64_t vm_id;
};

/* Holds a list sentinel: initialise in place with cap_init, never copy. */
struct cap {
	struct cap_limits limits;
	uint64_t vms, mem_mib, vcpus;   /* running sums of all reservations */
	uint64_t mem_fixed_mib;         /* the part of mem_mib without a balloon */
	struct cap_pool_use pools[CAP_MAX_POOLS];
	struct cap_owner_use *owners;   /* open-addressed by uid */
	size_t owners_cap, owners_len;
	/* boot storms */
	uint64_t starting;
	uint64_t tat_ns;                /* GCRA theoretical arrival time */
	struct cap_qnode queue;         /* sentinel of a circular list */
	size_t queued;
};

/* cap_init validates the limits like cap_set_limits. */
int cap_init(struct cap *c, const struct cap_limits *l, char *err, size_t errlen);
void cap_free(struct cap *c);
const struct cap_limits *cap_limits(const struct cap *c);
/* Replace the limits; reservations are kept as they are (the host may be
 * over a limit until it drains).  A pool removed while in use stays
 * listed until it drains.  Fails (-ENOSPC) only when old in-use pools and
 * new ones do not fit together in CAP_MAX_POOLS; nothing changes then. */
int cap_set_limits(struct cap *c, const struct cap_limits *l, char *err, size_t errlen);

/*
 * Check every limit, in this fixed order: request shape, max_vms, memory,
 * vcpus, each pool in request order, owner vms, owner memory, owner vcpus.
 * Every limit is checked first against no usage at all, so that a request
 * no empty host could take is told apart from one that does not fit now.
 * All or nothing: 0 and *ret filled (ret must not be held); -EAGAIN when
 * only what is left refuses it (it may fit once VMs stop), with a message
 * naming the limit, what was asked and what is left; -ENOSPC when it
 * exceeds a limit itself ("it can never fit" while the limits stay);
 * -ENOENT for an undefined pool, -EINVAL for a malformed request,
 * -ENOMEM; nothing is reserved then.
 */
int cap_admit(struct cap *c, const struct cap_request *r, struct cap_resv *ret,
              char *err, size_t errlen);
/* Reserve without checking limits (VMs re-adopted after a daemon restart).
 * Fails only on a malformed request, no pool slot, or -ENOMEM. */
int cap_reserve_force(struct cap *c, const struct cap_request *r,
                      struct cap_resv *ret, char *err, size_t errlen);
/* Give back what *resv holds and zero it; a no-op on a zeroed token. */
void cap_release(struct cap *c, struct cap_resv *resv);

/* Limits currently exceeded, as "; "-separated text; returns their count. */
int cap_over_limit(const struct cap *c, char *buf, size_t len);

struct cap_usage {
	uint64_t vms, vms_limit;        /* limit 0 = unlimited */
	uint64_t mem_mib, mem_limit_mib;
	uint64_t vcpus, vcpus_limit;
	uint64_t starting, starting_limit;
	size_t queued;
	size_t npools;
	struct cap_pool_use pools[CAP_MAX_POOLS];
};
void cap_usage_get(const struct cap *c, struct cap_usage *ret);
/* What uid holds now (zeros if nothing). */
void cap_owner_usage(const struct cap *c, uint32_t uid, struct cap_owner_use *ret);

/* ---- boot-storm control ------------------------------------------------- */

/* May a start proceed now?  0: yes, and it is counted as starting until
 * cap_start_done; -EBUSY: max_concurrent_starts reached; -EAGAIN: the
 * start rate allows none before cap_next_wakeup_ns(). */
int cap_start_try(struct cap *c, uint64_t now_ns);
/* A started VM left the starting phase. -EALREADY if none was starting. */
int cap_start_done(struct cap *c);
/* Absolute time (>= now) at which the rate limit next allows a start. */
uint64_t cap_next_wakeup_ns(const struct cap *c, uint64_t now_ns);
/* Why a start cannot proceed (r from cap_start_try), for --no-queue. */
void cap_start_explain(const struct cap *c, int r, uint64_t now_ns,
                       char *err, size_t errlen);

void cap_queue_push(struct cap *c, struct cap_qnode *n, int64_t vm_id);
struct cap_qnode *cap_queue_peek(const struct cap *c);
struct cap_qnode *cap_queue_pop(struct cap *c);
/* Unlink n if it is queued (a queued VM stopped or removed). */
void cap_queue_remove(struct cap *c, struct cap_qnode *n);
bool cap_queue_linked(const struct cap_qnode *n);
size_t cap_queue_len(const struct cap *c);

#endif
