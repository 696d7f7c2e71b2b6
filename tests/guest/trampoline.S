/* SPDX-License-Identifier: MIT */
/*
 * AP start-up code.  smp.c copies tramp_start..tramp_end to TRAMPOLINE_BASE
 * and sends SIPIs with vector TRAMPOLINE_BASE >> 12; the AP begins in real
 * mode at CS = TRAMPOLINE_BASE >> 4, IP = 0, so everything before the jump
 * to 64-bit code is addressed relative to the copy.
 */
#include "guest.h"

#define T(sym) (TRAMPOLINE_BASE + (sym) - tramp_start)

	.section .rodata.trampoline, "a"
	.code16
	.globl tramp_start
tramp_start:
	cli
	cld
	mov %cs, %ax
	mov %ax, %ds
	lgdtl (tramp_gdtr - tramp_start)
	mov %cr0, %eax
	or $CR0_PE, %eax
	mov %eax, %cr0
	ljmpl $SEL_KCODE32, $T(tramp32)

	.code32
tramp32:
	enter_long_mode ap_entry64

	.p2align 3
tramp_gdtr:
	.word GDT_LIMIT
	.long gdt
	.globl tramp_end
tramp_end:

	.text
	.code64
ap_entry64:
	/* Each AP takes the next stack; the index comes from an atomic add
	 * since several APs may get here at once. */
	mov $1, %eax
	lock xadd %eax, ap_next(%rip)
	cmp $(MAX_CPUS - 1), %eax
	jae 2f
	inc %eax
	imul $AP_STACK_SIZE, %eax, %eax
	mov $ap_stacks, %rsp
	add %rax, %rsp
	call ap_main
2:	cli
	hlt
	jmp 2b

	.data
	.p2align 2
ap_next:
	.long 0

	.section .stack, "aw", @nobits
	.p2align 12
ap_stacks:
	.skip AP_STACK_SIZE * (MAX_CPUS - 1)
