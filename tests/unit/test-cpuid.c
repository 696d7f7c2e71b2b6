/* SPDX-License-Identifier: MIT */
/* cpuid_build() on a made-up "supported" table: no KVM needed. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "vmm/arch/x86/cpuid.h"

#define INTEL_EBX 0x756e6547u  /* "Genu" */
#define AMD_EBX   0x68747541u  /* "Auth" */

static struct kvm_cpuid2 *fake(uint32_t vendor)
{
	static const struct kvm_cpuid_entry2 e[] = {
		{ .function = 0, .eax = 0x1f },
		{ .function = 1, .eax = 0x906a0, .ebx = 0x00ff00aa, .ecx = 0x00200000, .edx = 1u << 28 },
		{ .function = 4, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x121 },
		{ .function = 4, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x143 },
		{ .function = 4, .index = 2, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x163 },
		{ .function = 4, .index = 3, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0 },
		{ .function = 0xb, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 1, .ebx = 2 },
		{ .function = 0xb, .index = 1, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 7, .ebx = 64 },
		{ .function = 0x1f, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 1 },
		{ .function = 0x40000000, .eax = 0x40000001, .ebx = 0x4b4d564b, .ecx = 0x564b4d56, .edx = 0x4d },
		{ .function = 0x40000001, .eax = 0x01007afb },   /* KVM features, PV_SEND_IPI too */
		{ .function = 0x80000008, .eax = 0x3030, .ecx = 0xf00f },
	};
	unsigned n = sizeof(e) / sizeof(e[0]), i;
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + n * sizeof(e[0]));

	c->nent = n;
	for (i = 0; i < n; i++)
		c->entries[i] = e[i];
	c->entries[0].ebx = vendor;
	return c;
}

static const struct kvm_cpuid_entry2 *get(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	unsigned i, hits = 0;
	const struct kvm_cpuid_entry2 *r = NULL;

	for (i = 0; i < c->nent; i++)
		if (c->entries[i].function == fn && c->entries[i].index == idx) {
			r = &c->entries[i];
			hits++;
		}
	CHECK(hits <= 1);
	return r;
}

static void test_intel(void)
{
	struct kvm_cpuid2 *sup = fake(INTEL_EBX), *c = NULL;
	const struct kvm_cpuid_entry2 *e;

	CHECK_EQ(cpuid_build(sup, 5, 8, 0, &c), 0);
	e = get(c, 1, 0);
	CHECK(e != NULL);
	CHECK_EQ(e->ebx >> 24, 5);               /* initial APIC id */
	CHECK_EQ((e->ebx >> 16) & 0xff, 8);      /* logical processors */
	CHECK_EQ((e->ebx >> 8) & 0xff, 8);       /* CLFLUSH 64 bytes */
	CHECK_EQ(e->ebx & 0xff, 0xaa);           /* brand index kept */
	CHECK(e->ecx & (1u << 31));              /* hypervisor */
	CHECK(e->ecx & (1u << 21));              /* host bits kept */
	CHECK(e->edx & (1u << 28));              /* HTT */
	CHECK_EQ(get(c, 4, 0)->eax, 0x121 | (7u << 26));
	CHECK_EQ(get(c, 4, 2)->eax, 0x163 | (7u << 14) | (7u << 26));  /* L3 shared */
	CHECK_EQ(get(c, 4, 3)->eax, 0);
	e = get(c, 0xb, 0);
	CHECK_EQ(e->eax, 0);
	CHECK_EQ(e->ebx, 1);
	CHECK_EQ(e->ecx, 0x100);
	CHECK_EQ(e->edx, 5);
	e = get(c, 0xb, 1);
	CHECK_EQ(e->eax, 3);                     /* 8 cores: 3 id bits */
	CHECK_EQ(e->ebx, 8);
	CHECK_EQ(e->ecx, 0x201);
	CHECK_EQ(e->edx, 5);
	e = get(c, 0xb, 2);
	CHECK_EQ(e->ecx, 2);                     /* invalid level ends the list */
	CHECK_EQ(e->ebx, 0);
	CHECK(get(c, 0x1f, 1) != NULL);
	CHECK_EQ(get(c, 0x1f, 1)->edx, 5);
	CHECK_EQ(get(c, 0x40000000, 0)->ebx, 0x4b4d564b);
	/* PV send-IPI hidden (its hypercall hangs an emulating host), the
	 * other KVM features kept */
	CHECK_EQ(get(c, 0x40000001, 0)->eax, 0x01007afb & ~(1u << 11));
	CHECK_EQ(get(c, 0x80000008, 0)->ecx, 0xf00f);   /* AMD-only patch */
	free(c);

	CHECK_EQ(cpuid_build(sup, 0, 1, 0, &c), 0);
	CHECK_EQ(get(c, 1, 0)->edx & (1u << 28), 0);
	CHECK_EQ(get(c, 0xb, 1)->eax, 0);
	free(c);
	c = NULL;
	CHECK_EQ(cpuid_build(sup, 3, 3, 0, &c), -EINVAL);
	CHECK_EQ(cpuid_build(sup, 0, 0, 0, &c), -EINVAL);
	CHECK(c == NULL);
	free(sup);
}

static void test_amd(void)
{
	struct kvm_cpuid2 *sup = fake(AMD_EBX), *c = NULL;

	CHECK_EQ(cpuid_build(sup, 2, 32, 0, &c), 0);
	CHECK_EQ(get(c, 0x80000008, 0)->ecx, (5u << 12) | 31);
	CHECK_EQ(get(c, 0xb, 1)->eax, 5);
	free(c);
	free(sup);
}

/* The timing leaf: added only with a frequency and KVM's signature, and
 * the hypervisor range's maximum raised to reach it. */
static void test_tsc_leaf(void)
{
	struct kvm_cpuid2 *sup = fake(AMD_EBX), *c = NULL;
	unsigned i;

	CHECK_EQ(cpuid_build(sup, 0, 1, 0, &c), 0);
	CHECK(get(c, 0x40000010, 0) == NULL);
	CHECK_EQ(get(c, 0x40000000, 0)->eax, 0x40000001);
	free(c);
	CHECK_EQ(cpuid_build(sup, 1, 2, 2100000, &c), 0);
	CHECK(get(c, 0x40000010, 0) != NULL);
	CHECK_EQ(get(c, 0x40000010, 0)->eax, 2100000);
	CHECK_EQ(get(c, 0x40000010, 0)->ebx, 1000000);
	CHECK_EQ(get(c, 0x40000000, 0)->eax, 0x40000010);
	free(c);
	/* Not KVM's signature: nothing added. */
	for (i = 0; i < sup->nent; i++)
		if (sup->entries[i].function == 0x40000000)
			sup->entries[i].ebx = 0x7263694d;  /* "Micr" */
	CHECK_EQ(cpuid_build(sup, 0, 1, 2100000, &c), 0);
	CHECK(get(c, 0x40000010, 0) == NULL);
	free(c);
	free(sup);
}

int main(void)
{
	test_intel();
	test_amd();
	test_tsc_leaf();
	return check_result("cpuid");
}
