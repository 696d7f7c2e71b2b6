/* SPDX-License-Identifier: MIT */
/*
 * Intel MultiProcessor Specification 1.4 tables, for guests booted without
 * ACPI (acpi=off) and for the test guest, which cross-checks them against
 * the MADT.  The floating pointer sits at the start of the EBDA, where a
 * guest scans for it, and the configuration table follows it directly.
 */
#include <errno.h>
#include <string.h>

#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/arch/x86/mptable.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tables are written as host structs");

struct mpf_intel {
	char signature[4];         /* "_MP_" */
	uint32_t physptr;          /* configuration table */
	uint8_t length;            /* in 16-byte paragraphs */
	uint8_t spec_rev;
	uint8_t checksum;
	uint8_t feature[5];        /* all zero: a configuration table is present,
	                            * and virtual-wire mode (no IMCR) */
} __attribute__((packed));
_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer");

struct mpc_table {
	char signature[4];         /* "PCMP" */
	uint16_t length;           /* base table, header included */
	uint8_t spec_rev;
	uint8_t checksum;
	char oem[8];
	char product[12];
	uint32_t oem_ptr;
	uint16_t oem_size;
	uint16_t count;            /* entries in the base table */
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_table) == 44, "MP configuration table header");

struct mpc_cpu {
	uint8_t type, apic_id, apic_ver, flags;
	uint32_t signature;
	uint32_t features;
	uint32_t reserved[2];
} __attribute__((packed));
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry");

struct mpc_bus {
	uint8_t type, bus_id;
	char bus_type[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, id, version, flags;
	uint32_t address;
} __attribute__((packed));

/* I/O and local interrupt assignment entries share one layout. */
struct mpc_intsrc {
	uint8_t type, irq_type;
	uint16_t flags;            /* 0: polarity and trigger conform to the bus */
	uint8_t src_bus, src_irq, dst_id, dst_pin;
} __attribute__((packed));

#define MP_SPEC_REV        4      /* MP spec 1.4 */
#define MPC_TYPE_CPU       0
#define MPC_TYPE_BUS       1
#define MPC_TYPE_IOAPIC    2
#define MPC_TYPE_INTSRC    3
#define MPC_TYPE_LINTSRC   4
#define MPC_CPU_ENABLED    0x01
#define MPC_CPU_BSP        0x02
#define MPC_IOAPIC_ENABLED 0x01
#define MP_INT             0
#define MP_NMI             1
#define MP_EXTINT          3
#define MP_ALL_LAPICS      0xff

#define LAPIC_VERSION      0x14   /* integrated APIC, as KVM reports */
#define IOAPIC_VERSION     0x11   /* as KVM's IOAPIC reports */
/* A plausible family 6 CPU: family 6, model 0xf, stepping 1; FPU + APIC. */
#define MP_CPU_SIGNATURE   ((6u << 8) | (0xfu << 4) | 1u)
#define MP_CPU_FEATURES    ((1u << 0) | (1u << 9))

#define ISA_BUS_ID         0
#define ISA_IRQS           16
#define ISA_CASCADE_IRQ    2      /* never delivered: its pin carries IRQ0 */
#define MP_ISA_ENTRIES     (ISA_IRQS - 1)

#define MPTABLE_SIZE(ncpu) \
	(sizeof(struct mpf_intel) + sizeof(struct mpc_table) + \
	 (ncpu) * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) + \
	 sizeof(struct mpc_ioapic) + (MP_ISA_ENTRIES + 2) * sizeof(struct mpc_intsrc))
_Static_assert(MPTABLE_SIZE(VCPUS_MAX) <= MPTABLE_MAX_SIZE, "MP table for VCPUS_MAX fits the EBDA");

static uint8_t *put_cpus(uint8_t *p, unsigned nvcpus)
{
	for (unsigned i = 0; i < nvcpus; i++) {
		struct mpc_cpu *c = (struct mpc_cpu *)p;

		*c = (struct mpc_cpu){
			.type = MPC_TYPE_CPU, .apic_id = (uint8_t)i, .apic_ver = LAPIC_VERSION,
			.flags = MPC_CPU_ENABLED | (i == 0 ? MPC_CPU_BSP : 0),
			.signature = MP_CPU_SIGNATURE, .features = MP_CPU_FEATURES };
		p += sizeof(*c);
	}
	return p;
}

static uint8_t *put_intsrc(uint8_t *p, uint8_t type, uint8_t irq_type, uint8_t src_irq,
                           uint8_t dst_id, uint8_t dst_pin)
{
	*(struct mpc_intsrc *)p = (struct mpc_intsrc){
		.type = type, .irq_type = irq_type, .flags = 0, .src_bus = ISA_BUS_ID,
		.src_irq = src_irq, .dst_id = dst_id, .dst_pin = dst_pin };
	return p + sizeof(struct mpc_intsrc);
}

/* ISA IRQ n on IOAPIC pin n, except the PIT's IRQ0 which is wired to pin 2
 * (the same override the MADT states); IRQ2, the cascade, is left out. */
static uint8_t *put_isa_irqs(uint8_t *p, uint8_t ioapic_id)
{
	for (unsigned irq = 0; irq < ISA_IRQS; irq++) {
		if (irq == ISA_CASCADE_IRQ)
			continue;
		p = put_intsrc(p, MPC_TYPE_INTSRC, MP_INT, (uint8_t)irq, ioapic_id,
		               irq == 0 ? ISA_CASCADE_IRQ : (uint8_t)irq);
	}
	return p;
}

static uint8_t *put_bus_and_ioapic(uint8_t *p, uint8_t ioapic_id)
{
	struct mpc_bus *b = (struct mpc_bus *)p;
	struct mpc_ioapic *io = (struct mpc_ioapic *)(b + 1);

	*b = (struct mpc_bus){ .type = MPC_TYPE_BUS, .bus_id = ISA_BUS_ID };
	memcpy(b->bus_type, "ISA   ", 6);
	*io = (struct mpc_ioapic){ .type = MPC_TYPE_IOAPIC, .id = ioapic_id,
	                           .version = IOAPIC_VERSION, .flags = MPC_IOAPIC_ENABLED,
	                           .address = (uint32_t)IOAPIC_START };
	return (uint8_t *)(io + 1);
}

static void fill_headers(struct mpf_intel *mpf, struct mpc_table *mpc, const uint8_t *end,
                         unsigned nvcpus)
{
	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = (uint16_t)(end - (const uint8_t *)mpc);
	mpc->spec_rev = MP_SPEC_REV;
	memcpy(mpc->oem, "MVM     ", 8);
	memcpy(mpc->product, "MICROVM     ", 12);
	mpc->count = (uint16_t)(nvcpus + 2 + MP_ISA_ENTRIES + 2);
	mpc->lapic = (uint32_t)LAPIC_START;
	mpc->checksum = (uint8_t)-acpi_checksum(mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(MPTABLE_START + sizeof(*mpf));
	mpf->length = 1;
	mpf->spec_rev = MP_SPEC_REV;
	mpf->checksum = (uint8_t)-acpi_checksum(mpf, sizeof(*mpf));
}

int mptable_build(const struct guest_mem *m, unsigned nvcpus)
{
	size_t size = MPTABLE_SIZE(nvcpus);
	uint8_t ioapic_id = (uint8_t)acpi_ioapic_id(nvcpus);
	struct mpf_intel *mpf;
	struct mpc_table *mpc;
	uint8_t *p;

	if (nvcpus == 0 || nvcpus > VCPUS_MAX)
		return -EINVAL;
	if (size > MPTABLE_MAX_SIZE)
		return -ENOSPC;
	mpf = guest_mem_ptr(m, MPTABLE_START, size);
	if (!mpf)
		return -EFAULT;
	memset(mpf, 0, size);
	mpc = (struct mpc_table *)(mpf + 1);

	p = put_cpus((uint8_t *)(mpc + 1), nvcpus);
	p = put_bus_and_ioapic(p, ioapic_id);
	p = put_isa_irqs(p, ioapic_id);
	/* LINT0 takes the 8259's ExtINT (virtual-wire mode), LINT1 is NMI. */
	p = put_intsrc(p, MPC_TYPE_LINTSRC, MP_EXTINT, 0, MP_ALL_LAPICS, 0);
	p = put_intsrc(p, MPC_TYPE_LINTSRC, MP_NMI, 0, MP_ALL_LAPICS, 1);
	fill_headers(mpf, mpc, p, nvcpus);
	return 0;
}
