/* SPDX-License-Identifier: MIT */
/* Interrupt stubs and the ring-0 <-> ring-3 round trip. */
#include "guest.h"

	.text
/*
 * Exception stubs for vectors 0-31, 16 bytes apart (cpu.c indexes them).
 * Vectors without a CPU error code push a zero so the frame is uniform.
 */
	.p2align 4
	.globl isr_exceptions
isr_exceptions:
	.set vec_i, 0
	.rept 32
	.p2align 4
	.if (vec_i == 8) || (vec_i >= 10 && vec_i <= 14) || (vec_i == 17) || (vec_i == 21) || (vec_i == 29) || (vec_i == 30)
	.else
	pushq $0
	.endif
	pushq $vec_i
	jmp isr_common
	.set vec_i, vec_i + 1
	.endr

isr_common:
	push %rax
	push %rcx
	push %rdx
	push %rbx
	push %rbp
	push %rsi
	push %rdi
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	and $~15, %rsp
	call exception_handler		/* does not return */
1:	cli
	hlt
	jmp 1b

/* Device interrupts we only need to acknowledge (wake-ups from hlt). */
#define LAPIC_EOI 0xfee000b0
	.globl isr_ignore
isr_ignore:
	push %rax
	mov $LAPIC_EOI, %eax
	movl $0, (%rax)
	pop %rax
	iretq

	.globl isr_serial
isr_serial:
	lock incl serial_irqs(%rip)
	jmp isr_ignore

	.globl isr_virtio
isr_virtio:
	lock incl virtio_irqs(%rip)
	jmp isr_ignore

	.globl isr_timer
isr_timer:
	lock incl timer_ticks(%rip)
	jmp isr_ignore

	.globl isr_spurious
isr_spurious:
	iretq
	.globl isr_end
isr_end:

/*
 * The IDT, complete at link time.  Filling its 256 gates at boot took
 * ~3,500 kernel-mode instructions, ~2.6 ms of each boot on a host that
 * emulates guest kernel mode (this CI's); a gate holds its handler's
 * address in three parts, which guest.ld splits (the assembler cannot
 * split a relocatable address).  All handlers share their upper 48 bits
 * (guest.ld asserts it), so each vector needs only its low 16.
 */
.macro gate lo
	.word \lo
	.word SEL_KCODE
	.byte 0, 0x8e			/* no IST; present DPL 0 interrupt gate */
	.word isr_mid16
	.long isr_hi32
	.long 0
.endm

	.data
	.p2align 4
	.globl idt
idt:
	.set vec_i, 0
	.rept 256
	.if vec_i < 32
	gate "isr_exceptions_lo16 + 16 * vec_i"
	.elseif vec_i == VEC_SERIAL
	gate isr_serial_lo16
	.elseif vec_i == VEC_VIRTIO
	gate isr_virtio_lo16
	.elseif vec_i == VEC_TIMER
	gate isr_timer_lo16
	.elseif vec_i == VEC_SPURIOUS
	gate isr_spurious_lo16
	.else
	gate isr_ignore_lo16
	.endif
	.set vec_i, vec_i + 1
	.endr

/*
 * uint64_t user_call(uint64_t (*fn)(void *), void *arg, void *stack_top)
 * Runs fn(arg) in ring 3 and returns its result.  The callee-saved registers
 * and %rsp are kept in user_saved_rsp; ring 3 comes back by executing ud2 at
 * user_exit, whose #UD cpu.c turns into user_return(result), which restores
 * them like a longjmp.  On this host neither int $0x80 (#UD) nor syscall
 * (returns with CPL 3) works from ring 3; exceptions are delivered properly.
 */
	.globl user_call
user_call:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, user_saved_rsp(%rip)
	pushq $(SEL_UDATA | 3)		/* ss */
	push %rdx			/* rsp */
	pushq $0x2			/* rflags: interrupts off */
	pushq $(SEL_UCODE | 3)		/* cs */
	lea user_trampoline(%rip), %rax
	push %rax			/* rip */
	iretq

user_trampoline:
	mov %rdi, %rax
	mov %rsi, %rdi
	call *%rax
	mov %rax, %rdi
	.globl user_exit
user_exit:
	ud2
1:	jmp 1b

	/* void user_return(uint64_t result): back into user_call's caller. */
	.globl user_return
user_return:
	mov $SEL_KDATA, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %rdi, %rax
	mov user_saved_rsp(%rip), %rsp
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

	.bss
	.p2align 3
user_saved_rsp:
	.quad 0
	.globl serial_irqs
serial_irqs:
	.long 0
	.globl virtio_irqs
virtio_irqs:
	.long 0
	.globl timer_ticks
timer_ticks:
	.long 0
