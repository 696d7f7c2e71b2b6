/* SPDX-License-Identifier: MIT */
/*
 * 64-bit entry points, the GDT and the static identity page tables.
 *
 * Layout of the start of the image (guest.ld checks it):
 *   0x100000 startup_32  bzImage 32-bit entry (unused here: halts)
 *   0x100200 startup_64  bzImage 64-bit entry (Linux boot protocol)
 * The ELF e_entry is elf64_entry, a separate stub, so the guest can tell a
 * bzImage boot from an ELF loaded without its PVH note.
 */
#include "guest.h"

	.section .text.head, "ax"
	.code32
	.globl startup_32
startup_32:
	cli
1:	hlt
	jmp 1b

	.org 0x200
	.code64
	.globl startup_64
startup_64:
	/* Long mode, identity mapped, interrupts off, %rsi = zero page. */
	early_putc_m
	mov $ENTRY_LINUX64, %edi
	jmp common64

	.text
	.globl elf64_entry
elf64_entry:
	early_putc_m
	mov $ENTRY_ELF64, %edi
	jmp common64

	/* %edi = entry kind, %rsi = boot information (zero page or PVH info). */
	.globl common64
common64:
	cli
	cld
	lgdt gdt_desc(%rip)
	mov $kernel_pml4, %rax
	mov %rax, %cr3
	/* Ring 3 runs out of pages the kernel uses: no SMEP/SMAP. */
	mov %cr4, %rax
	and $~((1 << 20) | (1 << 21)), %rax
	mov %rax, %cr4
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	xor %eax, %eax
	mov %eax, %fs
	mov %eax, %gs
	mov $boot_stack_top, %rsp
	/* Reload %cs with our own code selector. */
	pushq $SEL_KCODE
	lea 2f(%rip), %rax
	push %rax
	lretq
2:	mov %rdi, %r12
	mov %rsi, %r13
	/* Zero .bss: loaders need not (a bzImage payload stops at _edata). */
	mov $__bss_start, %rdi
	mov $__bss_end, %rcx
	sub %rdi, %rcx
	shr $3, %rcx
	xor %eax, %eax
	rep stosq
	mov %r12, %rdi
	mov %r13, %rsi
	call kmain
3:	cli
	hlt
	jmp 3b

	.section .rodata
	.p2align 4
	.globl gdt_desc
gdt_desc:
	.word gdt_end - gdt - 1
	.quad gdt

	.data
	.p2align 4
	.globl gdt
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* 0x08 kernel code, 32-bit */
	.quad 0x00af9a000000ffff	/* 0x10 kernel code, 64-bit */
	.quad 0x00cf92000000ffff	/* 0x18 kernel data */
	.quad 0x00cff2000000ffff	/* 0x20 user data, DPL 3 */
	.quad 0x00affa000000ffff	/* 0x28 user code, 64-bit, DPL 3 */
	.globl gdt_tss
gdt_tss:
	.quad 0, 0			/* 0x30 TSS, filled in by cpu.c */
gdt_end:
	.if gdt_end - gdt - 1 != GDT_LIMIT
	.error "GDT_LIMIT in guest.h is stale"
	.endif

/*
 * Identity map of 0-4 GiB with 2 MiB pages, all user accessible (ring-3
 * scenarios run kernel-linked code and touch RAM anywhere).  Static data, so
 * no CPL0 instructions are spent building it (CPL0 is emulated here).
 */
#define PTE_P   0x1
#define PTE_W   0x2
#define PTE_U   0x4
#define PTE_PWT 0x8
#define PTE_PCD 0x10
#define PTE_PS  0x80
	.p2align 12
	.globl kernel_pml4
kernel_pml4:
	.quad kernel_pdpt + (PTE_P | PTE_W | PTE_U)
	.fill 511, 8, 0
kernel_pdpt:
	.quad kernel_pd + 0x0000 + (PTE_P | PTE_W | PTE_U)
	.quad kernel_pd + 0x1000 + (PTE_P | PTE_W | PTE_U)
	.quad kernel_pd + 0x2000 + (PTE_P | PTE_W | PTE_U)
	.quad kernel_pd + 0x3000 + (PTE_P | PTE_W | PTE_U)
	.fill 508, 8, 0
kernel_pd:
	.set pd_i, 0
	.rept 1536
	.quad (pd_i << 21) + (PTE_P | PTE_W | PTE_U | PTE_PS)
	.set pd_i, pd_i + 1
	.endr
	/* The top GiB is the MMIO hole: uncached. */
	.rept 512
	.quad (pd_i << 21) + (PTE_P | PTE_W | PTE_U | PTE_PS | PTE_PCD | PTE_PWT)
	.set pd_i, pd_i + 1
	.endr

	.section .stack, "aw", @nobits
	.p2align 12
	.skip BOOT_STACK_SIZE
	.globl boot_stack_top
boot_stack_top:
