/* SPDX-License-Identifier: MIT */
#ifndef MVM_SECCOMP_POLICY_H
#define MVM_SECCOMP_POLICY_H

#include <seccomp.h>
#include <stdint.h>
#include <sys/types.h>

/*
 * The worker's syscall allowlists, one per thread class (seccomp_policy.c
 * holds them as commented tables).  A vCPU thread runs under both: it
 * inherits the main filter when created and adds its own narrower one.
 */
enum seccomp_class {
	SECCOMP_CLASS_MAIN,  /* main thread: event loop, devices, teardown */
	SECCOMP_CLASS_VCPU,  /* vCPU threads: KVM_RUN and exit handling */
};

/* Builds the filter for `cls`; calls outside the table get default_action.
 * `self` is the worker's pid (kill and tgkill may only target it). */
int seccomp_policy_build(enum seccomp_class cls, uint32_t default_action, pid_t self,
                         scmp_filter_ctx *ret);

/* Distinct syscalls the class allows (one syscall may have several rows). */
unsigned seccomp_policy_count(enum seccomp_class cls);

#endif
