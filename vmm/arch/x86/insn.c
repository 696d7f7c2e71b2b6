/* SPDX-License-Identifier: MIT */
#include "vmm/arch/x86/insn.h"

#define X86_CR0_MP     (1ULL << 1)
#define X86_CR0_TS     (1ULL << 3)
#define X86_CR0_NE     (1ULL << 5)
#define RFLAGS_CF      (1ULL << 0)
#define RFLAGS_PF      (1ULL << 2)
#define RFLAGS_AF      (1ULL << 4)
#define RFLAGS_ZF      (1ULL << 6)
#define RFLAGS_SF      (1ULL << 7)
#define RFLAGS_OF      (1ULL << 11)
#define RFLAGS_AC      (1ULL << 18)

#define VEC_UD 6
#define VEC_BP 3
#define VEC_NM 7
#define VEC_MF 16

/* x87 exception flags (IE..PE) are bits 5:0 of both FSW and FCW. */
#define X87_EXC_MASK   0x3fu

static enum insn_result raise(uint8_t *vector, uint8_t v)
{
	*vector = v;
	return INSN_RAISE;
}

/* fwait: #NM when MP and TS are both set, #MF with an unmasked x87
 * exception pending (CR0.NE; without it the CPU would signal FERR#, which
 * this machine does not wire, so leave that to the caller's error path). */
static enum insn_result do_fwait(struct insn_cpu *c, uint8_t *vector)
{
	if ((c->cr0 & (X86_CR0_MP | X86_CR0_TS)) == (X86_CR0_MP | X86_CR0_TS))
		return raise(vector, VEC_NM);
	if (c->fsw & ~c->fcw & X87_EXC_MASK) {
		if (!(c->cr0 & X86_CR0_NE))
			return INSN_UNKNOWN;
		return raise(vector, VEC_MF);
	}
	c->rip += 1;
	return INSN_DONE;
}

/* popcnt r, r/m in 64-bit mode, register operand only (Linux's hweight
 * alternatives are register to register).  [66] F3 [REX] 0F B8 /r. */
static enum insn_result do_popcnt(struct insn_cpu *c, const uint8_t *code, size_t len)
{
	size_t i = 0;
	bool opsize = false, rep = false;
	uint8_t rex = 0, modrm;
	unsigned reg, rm, bits;
	uint64_t src, mask, cnt;

	if (!c->long64)
		return INSN_UNKNOWN;
	for (; i < len && (code[i] == 0x66 || code[i] == 0xf3); i++) {
		if (code[i] == 0x66)
			opsize = true;
		else
			rep = true;
	}
	if (i < len && (code[i] & 0xf0) == 0x40)
		rex = code[i++];
	if (!rep || i + 3 > len || code[i] != 0x0f || code[i + 1] != 0xb8)
		return INSN_UNKNOWN;
	modrm = code[i + 2];
	if ((modrm >> 6) != 3)
		return INSN_UNKNOWN;
	reg = ((rex >> 2) & 1) << 3 | ((modrm >> 3) & 7);
	rm = (rex & 1) << 3 | (modrm & 7);
	bits = (rex & 8) ? 64 : opsize ? 16 : 32;
	mask = bits == 64 ? ~0ULL : (1ULL << bits) - 1;
	src = c->gpr[rm] & mask;
	cnt = (uint64_t)__builtin_popcountll(src);
	if (bits == 16)
		c->gpr[reg] = (c->gpr[reg] & ~0xffffULL) | cnt;
	else
		c->gpr[reg] = cnt;  /* a 32-bit result zero-extends */
	c->rflags &= ~(RFLAGS_CF | RFLAGS_PF | RFLAGS_AF | RFLAGS_ZF | RFLAGS_SF | RFLAGS_OF);
	if (src == 0)
		c->rflags |= RFLAGS_ZF;
	c->rip += i + 3;
	return INSN_DONE;
}

/* clac / stac: 0F 01 CA / CB, CPL 0 only. */
static enum insn_result do_clac_stac(struct insn_cpu *c, bool set, uint8_t *vector)
{
	if (c->cpl != 0)
		return raise(vector, VEC_UD);
	if (set)
		c->rflags |= RFLAGS_AC;
	else
		c->rflags &= ~RFLAGS_AC;
	c->rip += 3;
	return INSN_DONE;
}

enum insn_result insn_finish(struct insn_cpu *c, const uint8_t *code, size_t len,
                             uint8_t *vector)
{
	if (len > INSN_MAX_LEN)
		len = INSN_MAX_LEN;
	if (len == 0)
		return INSN_UNKNOWN;
	switch (code[0]) {
	case 0xcc:  /* int3: a trap, reported past the one-byte instruction */
		c->rip += 1;
		return raise(vector, VEC_BP);
	case 0x9b:
		return do_fwait(c, vector);
	case 0x0f:
		if (len >= 3 && code[1] == 0x01 && (code[2] == 0xca || code[2] == 0xcb))
			return do_clac_stac(c, code[2] == 0xcb, vector);
		return INSN_UNKNOWN;
	case 0x66:
	case 0xf3:
		return do_popcnt(c, code, len);
	default:
		return INSN_UNKNOWN;
	}
}
