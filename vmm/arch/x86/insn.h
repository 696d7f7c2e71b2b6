/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_INSN_H
#define MVM_X86_INSN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Finishing the few instructions KVM's emulator gives up on.  Where the
 * host has no hardware virtualization, KVM emulates guest kernel code and
 * stops the VM with an emulation failure on instructions its emulator
 * lacks.  Linux runs some of them on every boot: int3 (alternatives
 * self-test, text_poke_bp), fwait (fpu__drop), popcnt (hweight),
 * clac/stac (SMAP) and cmpxchg16b (SLUB's lockless freelists).  mvm-vmm
 * executes them here as the CPU would and resumes the guest.  Pure apart
 * from the map() callback the caller supplies for guest memory: no KVM,
 * unit-tested and fuzzed on made-up states.
 */

/* The state the instructions read and write.  gpr[] is in the encoding's
 * order: rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8 ... r15. */
struct insn_cpu {
	uint64_t gpr[16];
	uint64_t rip, rflags, cr0;
	unsigned cpl;
	bool long64;            /* 64-bit code segment (CS.L) */
	uint16_t fsw, fcw;      /* x87 status and control words */
	uint64_t fs_base, gs_base;
	/* Guest memory for instructions with a memory operand: the host
	 * address of len bytes at linear address lin (within one page),
	 * writable if write, or NULL (not mapped, not writable, not RAM: the
	 * instruction is then left to the caller's error path).  NULL map:
	 * no memory operands at all. */
	void *(*map)(void *opaque, uint64_t lin, size_t len, bool write);
	void *map_opaque;
};

enum insn_result {
	INSN_UNKNOWN,           /* not one of ours: cpu untouched */
	INSN_DONE,              /* executed: cpu updated */
	INSN_RAISE,             /* raise *vector; rip already past a trap
	                           (#BP), at the insn for a fault */
	INSN_RAISE_ERR,         /* raise *vector with error code 0 (#GP(0)) */
};

#define INSN_MAX_LEN 15

/* code holds the len (<= INSN_MAX_LEN) bytes readable at cpu->rip. */
enum insn_result insn_finish(struct insn_cpu *cpu, const uint8_t *code, size_t len,
                             uint8_t *vector);

#endif
