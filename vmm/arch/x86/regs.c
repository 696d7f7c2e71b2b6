/* SPDX-License-Identifier: MIT */
/*
 * Boot CPU state: the boot GDT, identity page tables and the register file
 * at kernel entry (64-bit Linux boot protocol, or PVH's 32-bit flat mode).
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>

#include "vmm/arch/x86/layout.h"
#include "vmm/arch/x86/regs.h"

#define CR0_PE   (1ULL << 0)
#define CR0_ET   (1ULL << 4)
#define CR0_NE   (1ULL << 5)
#define CR0_PG   (1ULL << 31)
#define CR4_PAE  (1ULL << 5)
#define EFER_LME (1ULL << 8)
#define EFER_LMA (1ULL << 10)

#define PTE_PRESENT 0x1ULL
#define PTE_RW      0x2ULL
#define PDE_PS      0x80ULL  /* 2 MiB page */
#define PAGE_SIZE   0x1000ULL
#define PT_ENTRIES  512

#define IDT_SIZE    8        /* one zero (not present) gate */

/* Flat descriptors: base 0, limit 0xfffff with 4 KiB granularity. */
static const uint64_t gdt_long[BOOT_GDT_ENTRIES] = {
	0,
	0x00af9b000000ffffULL,  /* code: L=1, D=0, execute/read, accessed */
	0x00cf93000000ffffULL,  /* data: D/B=1, read/write, accessed */
	0x008f8b000000ffffULL,  /* TSS: busy 32/64-bit TSS, as KVM requires for TR */
};

/* PVH enters in 32-bit protected mode: the same table with a 32-bit code
 * segment, so a reload of CS with BOOT_SEL_CODE keeps the mode. */
static const uint64_t gdt_pvh[BOOT_GDT_ENTRIES] = {
	0,
	0x00cf9b000000ffffULL,  /* code: D=1, execute/read, accessed */
	0x00cf93000000ffffULL,
	0x008f8b000000ffffULL,
};

_Static_assert(BOOT_GDT_START + sizeof(gdt_long) <= BOOT_IDT_START, "GDT overlaps IDT");

static void put64(uint8_t *p, uint64_t v)
{
	unsigned i;

	for (i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static int write_gdt(const struct guest_mem *m, const uint64_t *gdt)
{
	uint8_t *p = guest_mem_ptr(m, BOOT_GDT_START, BOOT_GDT_ENTRIES * 8);
	uint8_t *idt = guest_mem_ptr(m, BOOT_IDT_START, IDT_SIZE);
	unsigned i;

	if (!p || !idt)
		return -EFAULT;
	for (i = 0; i < BOOT_GDT_ENTRIES; i++)
		put64(p + 8 * i, gdt[i]);
	memset(idt, 0, IDT_SIZE);
	return 0;
}

static int write_page_tables(const struct guest_mem *m)
{
	uint8_t *pml4 = guest_mem_ptr(m, BOOT_PML4_START, PAGE_SIZE);
	uint8_t *pdpt = guest_mem_ptr(m, BOOT_PDPT_START, PAGE_SIZE);
	uint8_t *pd = guest_mem_ptr(m, BOOT_PD_START, BOOT_PD_COUNT * PAGE_SIZE);
	unsigned i;

	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, PAGE_SIZE);
	memset(pdpt, 0, PAGE_SIZE);
	put64(pml4, BOOT_PDPT_START | PTE_PRESENT | PTE_RW);
	for (i = 0; i < BOOT_PD_COUNT; i++)
		put64(pdpt + 8 * i, (BOOT_PD_START + i * PAGE_SIZE) | PTE_PRESENT | PTE_RW);
	/* The page directories are contiguous: entry i maps [i*2M, (i+1)*2M). */
	for (i = 0; i < BOOT_PD_COUNT * PT_ENTRIES; i++)
		put64(pd + 8 * i, ((uint64_t)i << 21) | PTE_PRESENT | PTE_RW | PDE_PS);
	return 0;
}

int regs_write_boot_tables(const struct guest_mem *m)
{
	int r = write_gdt(m, gdt_long);

	return r < 0 ? r : write_page_tables(m);
}

/* Unpacks a descriptor into KVM's segment cache format (limit in bytes). */
static struct kvm_segment seg_from_desc(uint64_t d, uint16_t sel)
{
	struct kvm_segment s = {
		.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000),
		.limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000)),
		.selector = sel,
		.type = (d >> 40) & 0xf,
		.s = (d >> 44) & 1,
		.dpl = (d >> 45) & 3,
		.present = (d >> 47) & 1,
		.avl = (d >> 52) & 1,
		.l = (d >> 53) & 1,
		.db = (d >> 54) & 1,
		.g = (d >> 55) & 1,
	};

	if (s.g)
		s.limit = (s.limit << 12) | 0xfff;
	return s;
}

static void fill_segments(const uint64_t *gdt, struct kvm_sregs *sr)
{
	struct kvm_segment data = seg_from_desc(gdt[2], BOOT_SEL_DATA);

	sr->cs = seg_from_desc(gdt[1], BOOT_SEL_CODE);
	sr->ds = sr->es = sr->fs = sr->gs = sr->ss = data;
	sr->tr = seg_from_desc(gdt[3], BOOT_SEL_TSS);
	sr->gdt.base = BOOT_GDT_START;
	sr->gdt.limit = BOOT_GDT_ENTRIES * 8 - 1;
	sr->idt.base = BOOT_IDT_START;
	sr->idt.limit = IDT_SIZE - 1;
	/* LDTR keeps its reset value (null selector, type LDT): unused. */
}

void regs_fill_boot(const struct boot_result *b, struct kvm_sregs *sregs, struct kvm_regs *regs)
{
	memset(regs, 0, sizeof(*regs));
	regs->rflags = 0x2;  /* bit 1 is reserved, always 1 */
	regs->rip = b->entry;
	if (b->mode == BOOT_ENTRY_PVH32) {
		fill_segments(gdt_pvh, sregs);
		sregs->cr0 = CR0_PE | CR0_ET;
		sregs->cr3 = 0;
		sregs->cr4 = 0;
		sregs->efer = 0;
		regs->rbx = b->boot_param;
		return;
	}
	fill_segments(gdt_long, sregs);
	sregs->cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
	sregs->cr3 = BOOT_PML4_START;
	sregs->cr4 = CR4_PAE;
	sregs->efer = EFER_LME | EFER_LMA;
	regs->rsi = b->boot_param;
	regs->rsp = regs->rbp = BOOT_STACK_POINTER;
}

static int set_fpu(int vcpu_fd)
{
	struct kvm_fpu fpu = {
		.fcw = 0x37f,      /* x87 default: all exceptions masked */
		.mxcsr = 0x1f80,   /* SSE default: all exceptions masked */
	};

	return ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

int regs_setup_boot_cpu(int vcpu_fd, const struct guest_mem *m, const struct boot_result *b)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	int r;

	r = regs_write_boot_tables(m);
	if (r == 0 && b->mode == BOOT_ENTRY_PVH32)
		r = write_gdt(m, gdt_pvh);
	if (r < 0)
		return r;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	regs_fill_boot(b, &sregs, &regs);
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return set_fpu(vcpu_fd);
}
