/* SPDX-License-Identifier: MIT */
/*
 * Boot GDT, page tables and entry register state.  The table and register
 * checks need no KVM; when /dev/kvm opens, two tiny guests also run from the
 * entry state (64-bit and PVH 32-bit) to prove KVM accepts it and the CPU
 * decodes in the intended mode.  Without /dev/kvm that part is skipped.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/arch/x86/regs.h"

static uint64_t r64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* Walks the 4-level tables in guest RAM like the MMU; ~0 when unmapped. */
static uint64_t translate(const uint8_t *ram, uint64_t va)
{
	uint64_t e = r64(ram + BOOT_PML4_START + 8 * ((va >> 39) & 511));

	if (!(e & 1))
		return ~0ULL;
	e = r64(ram + (e & ~0xfffULL) + 8 * ((va >> 30) & 511));
	if (!(e & 1))
		return ~0ULL;
	e = r64(ram + (e & ~0xfffULL) + 8 * ((va >> 21) & 511));
	if (!(e & 1) || !(e & 0x80))
		return ~0ULL;
	return (e & ~0x1fffffULL & ((1ULL << 52) - 1)) | (va & 0x1fffff);
}

static void test_tables(void)
{
	static uint8_t ram[MiB(1)];
	struct guest_mem m;
	unsigned i;

	memset(ram, 0xcc, sizeof(ram));
	guest_mem_init_buffer(&m, ram, sizeof(ram));
	CHECK_EQ(regs_write_boot_tables(&m), 0);
	CHECK_EQ(r64(ram + BOOT_GDT_START), 0);
	CHECK_EQ(r64(ram + BOOT_GDT_START + 8), 0x00af9b000000ffffULL);
	CHECK_EQ(r64(ram + BOOT_GDT_START + 16), 0x00cf93000000ffffULL);
	CHECK_EQ(r64(ram + BOOT_GDT_START + 24), 0x008f8b000000ffffULL);
	CHECK_EQ(r64(ram + BOOT_IDT_START), 0);
	CHECK_EQ(r64(ram + BOOT_PML4_START), BOOT_PDPT_START | 3);
	CHECK_EQ(r64(ram + BOOT_PML4_START + 8), 0);
	for (i = 0; i < 4; i++)
		CHECK_EQ(r64(ram + BOOT_PDPT_START + 8 * i), (BOOT_PD_START + 0x1000 * i) | 3);
	CHECK_EQ(r64(ram + BOOT_PDPT_START + 32), 0);
	CHECK_EQ(r64(ram + BOOT_PD_START), 0x83);
	CHECK_EQ(r64(ram + BOOT_PD_START + 8 * 2047), 0xffe00083ULL);
	/* Identity over 0-4 GiB, nothing above. */
	CHECK_EQ(translate(ram, 0), 0);
	CHECK_EQ(translate(ram, 0x123456), 0x123456);
	CHECK_EQ(translate(ram, 0x40201234ULL), 0x40201234ULL);
	CHECK_EQ(translate(ram, LAPIC_START + 0x30), LAPIC_START + 0x30);
	CHECK_EQ(translate(ram, 0xffffffffULL), 0xffffffffULL);
	CHECK_EQ(translate(ram, 0x100000000ULL), ~0ULL);

	/* Too little RAM for the page directories. */
	guest_mem_init_buffer(&m, ram, BOOT_PD_START + 0x1000);
	CHECK_EQ(regs_write_boot_tables(&m), -EFAULT);
}

static void check_flat(const struct kvm_segment *s, uint16_t sel, uint8_t type)
{
	CHECK_EQ(s->selector, sel);
	CHECK_EQ(s->base, 0);
	CHECK_EQ(s->limit, 0xffffffffULL);
	CHECK_EQ(s->type, type);
	CHECK_EQ(s->present, 1);
	CHECK_EQ(s->dpl, 0);
	CHECK_EQ(s->g, 1);
}

static void test_fill_long(void)
{
	struct boot_result b = { BOOT_ENTRY_LINUX64, 0x100200, ZERO_PAGE_START, 0 };
	struct kvm_sregs s;
	struct kvm_regs r;

	memset(&s, 0, sizeof(s));
	s.apic_base = 0xfee00900;
	regs_fill_boot(&b, &s, &r);
	CHECK_EQ(s.apic_base, 0xfee00900);  /* kept */
	CHECK_EQ(s.cr0, 0x80000031ULL);     /* PG | NE | ET | PE */
	CHECK_EQ(s.cr3, BOOT_PML4_START);
	CHECK_EQ(s.cr4, 0x20);
	CHECK_EQ(s.efer, 0x500);
	check_flat(&s.cs, 0x8, 0xb);
	CHECK_EQ(s.cs.l, 1);
	CHECK_EQ(s.cs.db, 0);
	CHECK_EQ(s.cs.s, 1);
	check_flat(&s.ds, 0x10, 0x3);
	CHECK_EQ(s.ds.db, 1);
	CHECK_EQ(s.ss.selector, 0x10);
	CHECK_EQ(s.es.selector, 0x10);
	CHECK_EQ(s.fs.selector, 0x10);
	CHECK_EQ(s.gs.selector, 0x10);
	check_flat(&s.tr, 0x18, 0xb);
	CHECK_EQ(s.tr.s, 0);
	CHECK_EQ(s.gdt.base, BOOT_GDT_START);
	CHECK_EQ(s.gdt.limit, 31);
	CHECK_EQ(s.idt.base, BOOT_IDT_START);
	CHECK_EQ(r.rip, 0x100200);
	CHECK_EQ(r.rsi, ZERO_PAGE_START);
	CHECK_EQ(r.rsp, BOOT_STACK_POINTER);
	CHECK_EQ(r.rbp, BOOT_STACK_POINTER);
	CHECK_EQ(r.rflags, 2);
	CHECK_EQ(r.rbx, 0);
}

static void test_fill_pvh(void)
{
	struct boot_result b = { BOOT_ENTRY_PVH32, 0x1000030, PVH_INFO_START, 0 };
	struct kvm_sregs s;
	struct kvm_regs r;

	memset(&s, 0xff, sizeof(s));
	regs_fill_boot(&b, &s, &r);
	CHECK_EQ(s.cr0, 0x11);
	CHECK_EQ(s.cr3, 0);
	CHECK_EQ(s.cr4, 0);
	CHECK_EQ(s.efer, 0);
	check_flat(&s.cs, 0x8, 0xb);
	CHECK_EQ(s.cs.l, 0);
	CHECK_EQ(s.cs.db, 1);
	check_flat(&s.ss, 0x10, 0x3);
	CHECK_EQ(s.ss.db, 1);
	CHECK_EQ(r.rip, 0x1000030);
	CHECK_EQ(r.rbx, PVH_INFO_START);
	CHECK_EQ(r.rsi, 0);
	CHECK_EQ(r.rflags, 2);
}

/* ---- optional: run the entry state on KVM ------------------------------ */

#define KVM_RAM MiB(4)

struct kvm_ctx { int kvm, vm, vcpu; struct kvm_run *run; size_t run_size; uint8_t *ram; };

static int set_cpuid(struct kvm_ctx *c)
{
	struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + 100 * sizeof(cpuid->entries[0]));
	int r = 0;

	if (!cpuid)
		return -ENOMEM;
	cpuid->nent = 100;
	/* Long mode is only accepted when the guest CPUID offers it. */
	if (ioctl(c->kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0 ||
	    ioctl(c->vcpu, KVM_SET_CPUID2, cpuid) < 0)
		r = -errno;
	free(cpuid);
	return r;
}

static int kvm_open_ctx(struct kvm_ctx *c)
{
	struct kvm_userspace_memory_region reg = { .memory_size = KVM_RAM };

	c->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (c->kvm < 0)
		return -errno;
	c->vm = ioctl(c->kvm, KVM_CREATE_VM, 0);
	if (c->vm < 0 || ioctl(c->vm, KVM_SET_TSS_ADDR, KVM_TSS_START) < 0)
		return -errno;
	c->ram = mmap(NULL, KVM_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (c->ram == MAP_FAILED)
		return -errno;
	reg.userspace_addr = (uintptr_t)c->ram;
	if (ioctl(c->vm, KVM_SET_USER_MEMORY_REGION, &reg) < 0)
		return -errno;
	c->vcpu = ioctl(c->vm, KVM_CREATE_VCPU, 0);
	if (c->vcpu < 0)
		return -errno;
	c->run_size = (size_t)ioctl(c->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	c->run = mmap(NULL, c->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->vcpu, 0);
	if (c->run == MAP_FAILED)
		return -errno;
	return set_cpuid(c);
}

static void kvm_close_ctx(struct kvm_ctx *c)
{
	if (c->run && c->run != MAP_FAILED)
		munmap(c->run, c->run_size);
	if (c->ram && c->ram != MAP_FAILED)
		munmap(c->ram, KVM_RAM);
	if (c->vcpu > 0)
		close(c->vcpu);
	if (c->vm > 0)
		close(c->vm);
	if (c->kvm > 0)
		close(c->kvm);
}

/* Runs code at 1 MiB from the entry state of `mode` until HLT. */
static int kvm_run_code(enum boot_entry_mode mode, const uint8_t *code, size_t n,
                        uint64_t param, uint32_t marker, struct kvm_regs *out)
{
	struct kvm_ctx c = { 0 };
	struct boot_result b = { mode, HIMEM_START, param, 0 };
	struct guest_mem m;
	int r = kvm_open_ctx(&c);

	if (r < 0)
		goto out;
	guest_mem_init_buffer(&m, c.ram, KVM_RAM);
	memcpy(c.ram + HIMEM_START, code, n);
	memcpy(c.ram + param, &marker, 4);
	r = regs_setup_boot_cpu(c.vcpu, &m, &b);
	if (r < 0)
		goto out;
	do
		r = ioctl(c.vcpu, KVM_RUN, 0);
	while (r < 0 && (errno == EINTR || errno == EAGAIN));
	if (r < 0) {
		r = -errno;
		goto out;
	}
	if (c.run->exit_reason != KVM_EXIT_HLT) {
		fprintf(stderr, "  kvm: exit reason %u, not HLT\n", c.run->exit_reason);
		r = -EIO;
		goto out;
	}
	r = ioctl(c.vcpu, KVM_GET_REGS, out) < 0 ? -errno : 0;
out:
	kvm_close_ctx(&c);
	return r;
}

static void test_kvm(void)
{
	/* movabs $0x1122334455667788,%rax; mov (%rsi),%ebx; hlt */
	static const uint8_t code64[] = { 0x48, 0xb8, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33,
	                                  0x22, 0x11, 0x8b, 0x1e, 0xf4 };
	/* xor %eax,%eax; 0x48 (dec %eax in 32-bit mode, REX.W in 64-bit); nop;
	 * mov (%ebx),%ecx; hlt */
	static const uint8_t code32[] = { 0x31, 0xc0, 0x48, 0x90, 0x8b, 0x0b, 0xf4 };
	struct kvm_regs r;
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0) {
		fprintf(stderr, "test-regs: /dev/kvm: %s; skipping the KVM run part\n", strerror(errno));
		return;
	}
	close(fd);
	CHECK_EQ(kvm_run_code(BOOT_ENTRY_LINUX64, code64, sizeof(code64), ZERO_PAGE_START,
	                      0xfeedf00d, &r), 0);
	CHECK_EQ(r.rax, 0x1122334455667788ULL);
	CHECK_EQ(r.rbx, 0xfeedf00d);
	CHECK_EQ(r.rip, HIMEM_START + sizeof(code64));
	CHECK_EQ(kvm_run_code(BOOT_ENTRY_PVH32, code32, sizeof(code32), PVH_INFO_START,
	                      0x336ec578, &r), 0);
	CHECK_EQ(r.rax, 0xffffffffULL);
	CHECK_EQ(r.rcx, 0x336ec578);
	CHECK_EQ(r.rip, HIMEM_START + sizeof(code32));
}

int main(void)
{
	test_tables();
	test_fill_long();
	test_fill_pvh();
	test_kvm();
	return check_result("test-regs");
}
