/* SPDX-License-Identifier: MIT */
/*
 * Constants shared by the test guest's C and assembly.  The guest is a
 * separate program from the VMM: it only relies on architectural addresses
 * (local APIC, IOAPIC, legacy ports) and on what the boot tables tell it.
 */
#ifndef MVMTEST_GUEST_H
#define MVMTEST_GUEST_H

#define KERNEL_BASE      0x100000

/* GDT selectors (guest.ld-independent; the table is in entry64.S). */
#define SEL_KCODE32      0x08  /* 32-bit code: AP trampoline */
#define SEL_KCODE        0x10
#define SEL_KDATA        0x18
#define SEL_UDATA        0x20  /* | 3 when loaded */
#define SEL_UCODE        0x28  /* | 3 when loaded */
#define SEL_TSS          0x30
#define GDT_LIMIT        (0x40 - 1)  /* 6 descriptors + 16-byte TSS */

/* How the guest was entered (first argument of kmain). */
#define ENTRY_LINUX64    1
#define ENTRY_PVH        2
#define ENTRY_ELF64      3

/* AP real-mode trampoline: 4 KiB aligned below 1 MiB, clear of the VMM's
 * boot structures (0-0x9fff) and the EBDA/BIOS area (0x9fc00-0xfffff). */
#define TRAMPOLINE_BASE  0x70000
#define MAX_CPUS         64
#define AP_STACK_SIZE    4096

#define BOOT_STACK_SIZE  16384
#define USER_STACK_SIZE  16384
#define RSP0_STACK_SIZE  8192

/* Interrupt vectors. */
#define VEC_SERIAL       0x24
#define VEC_VIRTIO       0x28  /* every virtio-mmio device's GSI */
#define VEC_TIMER        0x30
#define VEC_SPURIOUS     0xff

#define COM1_PORT        0x3f8

#ifdef __ASSEMBLER__
/*
 * The first thing every entry point does: send the 'M' of the first
 * "MVMTEST" line, so the first serial byte marks when guest code first ran
 * rather than the end of the guest's own set-up (which is slow where KVM
 * emulates guest kernel code).  A 16550 transmits without any set-up.
 * Clobbers %eax and %edx; works in 32- and 64-bit mode.  serial_tag()
 * leaves the 'M' out of the first line printed.
 */
.macro early_putc_m
	mov $COM1_PORT, %edx
	mov $'M', %eax
	outb %al, %dx
.endm
#endif

#define MSR_EFER         0xc0000080
#define EFER_LME         0x100
#define CR0_PE           0x1
#define CR0_PG           0x80000000
#define CR4_PAE          0x20

#ifdef __ASSEMBLER__
/*
 * From flat 32-bit protected mode into long mode on kernel_pml4, shared by
 * the PVH entry and the AP trampoline: load the data segments, enable PAE,
 * point CR3 at the page tables, set EFER.LME, turn paging on, and jump to
 * the 64-bit `target` through the kernel code selector.
 */
.macro enter_long_mode target
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %cr4, %eax
	or $CR4_PAE, %eax
	mov %eax, %cr4
	mov $kernel_pml4, %eax
	mov %eax, %cr3
	mov $MSR_EFER, %ecx
	rdmsr
	or $EFER_LME, %eax
	wrmsr
	mov %cr0, %eax
	or $(CR0_PG | CR0_PE), %eax
	mov %eax, %cr0
	ljmp $SEL_KCODE, $\target
.endm
#endif

#endif
