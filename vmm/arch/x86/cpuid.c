/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <asm/kvm_para.h>

#include "vmm/arch/x86/cpuid.h"

#define LEAF1_EBX_CLFLUSH_64B (8u << 8)   /* CLFLUSH line size in 8-byte units */
#define LEAF1_EDX_HTT         (1u << 28)
#define LEAF1_ECX_HYPERVISOR  (1u << 31)
#define TOPO_LEVEL_SMT        1u
#define TOPO_LEVEL_CORE       2u
#define AMD_VENDOR_EBX        0x68747541u  /* "Auth" */
#define HYGON_VENDOR_EBX      0x6f677948u  /* "Hygo" */

static struct kvm_cpuid2 *cpuid_alloc(unsigned nent)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + nent * sizeof(c->entries[0]));

	if (c)
		c->nent = nent;
	return c;
}

int cpuid_get_supported(int kvm_fd, struct kvm_cpuid2 **ret)
{
	unsigned nent;

	/* KVM says E2BIG until the buffer holds every entry it has. */
	for (nent = 128; nent <= 4096; nent *= 2) {
		struct kvm_cpuid2 *c = cpuid_alloc(nent);

		if (!c)
			return -ENOMEM;
		if (ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			*ret = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG)
			return -errno;
	}
	return -E2BIG;
}

static const struct kvm_cpuid_entry2 *find(const struct kvm_cpuid2 *c, uint32_t fn)
{
	unsigned i;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn)
			return &c->entries[i];
	return NULL;
}

bool cpuid_is_amd(const struct kvm_cpuid2 *sup)
{
	const struct kvm_cpuid_entry2 *l0 = find(sup, 0);

	return l0 && (l0->ebx == AMD_VENDOR_EBX || l0->ebx == HYGON_VENDOR_EBX);
}

/* Bits needed to number n things: the x2APIC id shift of a level. */
static uint32_t order(unsigned n)
{
	uint32_t s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

static void patch_leaf1(struct kvm_cpuid_entry2 *e, unsigned id, unsigned nvcpus)
{
	unsigned count = nvcpus > 255 ? 255 : nvcpus;

	e->ebx = (id << 24) | (count << 16) | LEAF1_EBX_CLFLUSH_64B | (e->ebx & 0xff);
	e->ecx |= LEAF1_ECX_HYPERVISOR;
	if (nvcpus > 1)
		e->edx |= LEAF1_EDX_HTT;
	else
		e->edx &= ~LEAF1_EDX_HTT;
}

/* Deterministic cache parameters: every cache but the last level is per
 * core; the last level is shared by the package. */
static void patch_leaf4(struct kvm_cpuid_entry2 *e, unsigned nvcpus)
{
	uint32_t level = (e->eax >> 5) & 7;
	uint32_t cores = nvcpus - 1 > 63 ? 63 : nvcpus - 1;
	uint32_t sharing = level >= 3 ? nvcpus - 1 : 0;

	if ((e->eax & 0x1f) == 0)
		return;  /* no more caches */
	e->eax = (e->eax & 0x3fff) | (sharing << 14) | (cores << 26);
}

static void patch_amd_cores(struct kvm_cpuid_entry2 *e, unsigned nvcpus)
{
	/* ECX: NC (cores - 1) in 7:0, APIC id bits for cores in 15:12. */
	e->ecx = (e->ecx & ~0xf0ffu) | (order(nvcpus) << 12) | (nvcpus - 1);
}

/* Subleaf 0: threads (one per core); 1: cores; 2: the invalid terminator. */
static unsigned add_topology(struct kvm_cpuid_entry2 *out, uint32_t fn,
                             unsigned id, unsigned nvcpus)
{
	unsigned i;

	for (i = 0; i < 3; i++) {
		struct kvm_cpuid_entry2 *e = &out[i];

		memset(e, 0, sizeof(*e));
		e->function = fn;
		e->index = i;
		e->flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
		e->edx = id;
		e->ecx = i;
		if (i == 0) {
			e->eax = 0;
			e->ebx = 1;
			e->ecx |= TOPO_LEVEL_SMT << 8;
		} else if (i == 1) {
			e->eax = order(nvcpus);
			e->ebx = nvcpus;
			e->ecx |= TOPO_LEVEL_CORE << 8;
		}
	}
	return 3;
}

/* The hypervisor timing leaf (VMware's, also offered by QEMU's
 * vmware-cpuid-freq): TSC and local APIC timer frequencies in kHz.  KVM's
 * APIC timer counts at 1 GHz. */
#define CPUID_TIMING_LEAF 0x40000010u
#define KVM_APIC_BUS_KHZ  1000000u

static bool is_kvm_base(const struct kvm_cpuid_entry2 *e)
{
	return e->function == 0x40000000 && e->ebx == 0x4b4d564b &&   /* "KVMK" */
	       e->ecx == 0x564b4d56 && e->edx == 0x0000004d;          /* "VMKV" "M" */
}

int cpuid_build(const struct kvm_cpuid2 *sup, unsigned id, unsigned nvcpus,
                uint32_t tsc_khz, struct kvm_cpuid2 **ret)
{
	bool timing = false;
	const struct kvm_cpuid_entry2 *l0 = find(sup, 0);
	bool amd = cpuid_is_amd(sup);
	bool has_1f = find(sup, 0x1f) != NULL;
	struct kvm_cpuid2 *c;
	unsigned i, n = 0;

	if (nvcpus == 0 || id >= nvcpus)
		return -EINVAL;
	c = cpuid_alloc(sup->nent + 7);
	if (!c)
		return -ENOMEM;
	for (i = 0; i < sup->nent; i++) {
		struct kvm_cpuid_entry2 e = sup->entries[i];

		if (e.function == 0xb || e.function == 0x1f)
			continue;  /* rebuilt below */
		if (e.function == 1)
			patch_leaf1(&e, id, nvcpus);
		else if (e.function == 4)
			patch_leaf4(&e, nvcpus);
		else if (e.function == 0x80000008 && amd)
			patch_amd_cores(&e, nvcpus);
		else if (e.function == CPUID_TIMING_LEAF)
			continue;  /* ours, below */
		else if (e.function == KVM_CPUID_FEATURES)
			/* No PV send-IPI: where KVM emulates guest kernel
			 * code its hypercall never completes (the AP sits at
			 * the vmcall, the BSP spins on a lock it holds:
			 * docs/guests.md), and x2APIC IPIs work everywhere. */
			e.eax &= ~(1u << KVM_FEATURE_PV_SEND_IPI);
		if (tsc_khz && is_kvm_base(&e)) {
			if (e.eax < CPUID_TIMING_LEAF)
				e.eax = CPUID_TIMING_LEAF;
			timing = true;
		}
		c->entries[n++] = e;
	}
	if (timing) {
		struct kvm_cpuid_entry2 *e = &c->entries[n++];

		memset(e, 0, sizeof(*e));
		e->function = CPUID_TIMING_LEAF;
		e->eax = tsc_khz;
		e->ebx = KVM_APIC_BUS_KHZ;
	}
	if (l0 && l0->eax >= 0xb)
		n += add_topology(&c->entries[n], 0xb, id, nvcpus);
	if (has_1f && l0 && l0->eax >= 0x1f)
		n += add_topology(&c->entries[n], 0x1f, id, nvcpus);
	c->nent = n;
	*ret = c;
	return 0;
}
