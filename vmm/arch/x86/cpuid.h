/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_CPUID_H
#define MVM_X86_CPUID_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/kvm.h>

/*
 * Guest CPUID.  The topology shown to the guest is one package with one
 * core per vCPU and one thread per core; the APIC id (and x2APIC id) of
 * vCPU n is n.
 */

/* KVM_GET_SUPPORTED_CPUID on the /dev/kvm fd; free() the result. */
int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **ret);

/* Whether `sup` names an AMD (or Hygon) processor: they take AMD's MSRs
 * and topology leaves. */
bool cpuid_is_amd(const struct kvm_cpuid2 *sup);

/* The table for vCPU `id` of `nvcpus`: `sup` with leaf 1 (APIC id, logical
 * count, HTT, hypervisor bit), leaf 4 (cores per package, cache sharing),
 * leaves 0xB/0x1F (x2APIC topology) and AMD's 0x80000008 core count
 * rewritten.  KVM's paravirt leaves (0x40000000...) pass through; with a
 * non-zero tsc_khz and KVM's signature at 0x40000000, leaf 0x40000010
 * (EAX TSC kHz, EBX APIC timer kHz) is added for guests without kvmclock.
 * Needs no KVM: unit-testable on a made-up table.  free() the result. */
int cpuid_build(const struct kvm_cpuid2 *sup, unsigned id, unsigned nvcpus,
                uint32_t tsc_khz, struct kvm_cpuid2 **ret);

#endif
