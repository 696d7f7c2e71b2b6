/* SPDX-License-Identifier: MIT */
#include <string.h>

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
#define VEC_GP 13

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

/* An atomic 16-byte compare-exchange on host memory p (16-byte aligned):
 * true and new stored if *p was old; false and *old updated otherwise.
 * Other vCPUs run at the same time, hence the locked instruction itself. */
static bool cas16(void *p, uint64_t old[2], const uint64_t new[2])
{
#if defined(__x86_64__)
	bool ok;

	__asm__ volatile("lock cmpxchg16b %1\n\tsete %0"
	                 : "=q"(ok), "+m"(*(volatile unsigned __int128 *)p),
	                   "+a"(old[0]), "+d"(old[1])
	                 : "b"(new[0]), "c"(new[1])
	                 : "memory", "cc");
	return ok;
#else
	/* No x86 guest runs under KVM on another host architecture; this
	 * keeps the unit test and the fuzz target building there. */
	uint64_t cur[2];

	memcpy(cur, p, sizeof(cur));
	if (cur[0] == old[0] && cur[1] == old[1]) {
		memcpy(p, new, sizeof(cur));
		return true;
	}
	old[0] = cur[0];
	old[1] = cur[1];
	return false;
#endif
}

static int32_t sext32(const uint8_t *b)
{
	return (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
	                 (uint32_t)b[3] << 24);
}

/* The effective address of a 64-bit-mode ModRM memory operand at code[*i]
 * (the ModRM byte), advancing *i past ModRM, SIB and displacement.  A
 * RIP-relative operand is relative to the instruction's end, which the
 * caller knows only afterwards: *riprel says so and the result is the bare
 * displacement.  False when the bytes run out. */
static bool modrm_ea(const struct insn_cpu *c, const uint8_t *code, size_t len, size_t *i,
                     uint8_t rex, uint64_t *ea, bool *riprel)
{
	uint8_t modrm, mod, rm, sib;
	unsigned base, index, scale;
	uint64_t addr = 0;
	bool nobase = false;
	size_t disp;

	if (*i >= len)
		return false;
	modrm = code[(*i)++];
	mod = modrm >> 6;
	rm = modrm & 7;
	*riprel = false;
	if (rm == 4) {
		if (*i >= len)
			return false;
		sib = code[(*i)++];
		scale = sib >> 6;
		index = ((rex >> 1) & 1) << 3 | ((sib >> 3) & 7);
		base = (rex & 1) << 3 | (sib & 7);
		if (index != 4)  /* rsp as index means none (r12 is one) */
			addr += c->gpr[index] << scale;
		if ((sib & 7) == 5 && mod == 0)
			nobase = true;  /* disp32, no base */
		if (!nobase)
			addr += c->gpr[base];
	} else if (rm == 5 && mod == 0) {
		*riprel = true;
	} else {
		addr += c->gpr[(rex & 1) << 3 | rm];
	}
	disp = mod == 1 ? 1 : (mod == 2 || nobase || *riprel) ? 4 : 0;
	if (*i + disp > len)
		return false;
	if (disp == 1)
		addr += (uint64_t)(int64_t)(int8_t)code[*i];
	else if (disp == 4)
		addr += (uint64_t)(int64_t)sext32(code + *i);
	*i += disp;
	*ea = addr;
	return true;
}

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

/*
 * cmpxchg16b m128 in 64-bit mode: [F0] [seg] [67] REX.W 0F C7 /1.  Compare
 * RDX:RAX with the 16 bytes at m128: equal, ZF set and RCX:RBX stored;
 * else ZF clear and RDX:RAX loaded.  A misaligned or non-canonical operand
 * is #GP(0), a register operand #UD.  Linux's SLUB runs it (locked on
 * struct slab, %gs-relative on the per-CPU slab) whenever CPUID says CX16.
 */
static enum insn_result do_cmpxchg16b(struct insn_cpu *c, const uint8_t *code, size_t len,
                                      uint8_t *vector)
{
	size_t i = 0;
	uint64_t seg = 0, ea = 0, lin, old[2], new[2];
	bool addr32 = false, riprel;
	uint8_t rex = 0;
	void *p;

	if (!c->long64)
		return INSN_UNKNOWN;
	for (; i < len; i++) {
		if (code[i] == 0xf0 || code[i] == 0x2e || code[i] == 0x36 ||
		    code[i] == 0x3e || code[i] == 0x26)
			continue;  /* lock; CS/SS/DS/ES have base 0 in 64-bit mode */
		else if (code[i] == 0x64)
			seg = c->fs_base;
		else if (code[i] == 0x65)
			seg = c->gs_base;
		else if (code[i] == 0x67)
			addr32 = true;
		else
			break;
	}
	if (i < len && (code[i] & 0xf0) == 0x40)
		rex = code[i++];
	/* Without REX.W it is cmpxchg8b, which 64-bit Linux does not use. */
	if (!(rex & 8) || i + 3 > len || code[i] != 0x0f || code[i + 1] != 0xc7 ||
	    ((code[i + 2] >> 3) & 7) != 1)
		return INSN_UNKNOWN;
	if ((code[i + 2] >> 6) == 3)
		return raise(vector, VEC_UD);
	i += 2;
	if (!modrm_ea(c, code, len, &i, rex, &ea, &riprel))
		return INSN_UNKNOWN;
	if (riprel)
		ea += c->rip + i;
	if (addr32)
		ea &= 0xffffffffULL;
	lin = ea + seg;
	if (!canonical(lin) || (lin & 15)) {
		*vector = VEC_GP;
		return INSN_RAISE_ERR;
	}
	if (!c->map || !(p = c->map(c->map_opaque, lin, 16, true)) || ((uintptr_t)p & 15))
		return INSN_UNKNOWN;
	old[0] = c->gpr[0];     /* rax */
	old[1] = c->gpr[2];     /* rdx */
	new[0] = c->gpr[3];     /* rbx */
	new[1] = c->gpr[1];     /* rcx */
	if (cas16(p, old, new)) {
		c->rflags |= RFLAGS_ZF;
	} else {
		c->rflags &= ~RFLAGS_ZF;
		c->gpr[0] = old[0];
		c->gpr[2] = old[1];
	}
	c->rip += i;
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
		/* prefixes, REX.W: cmpxchg16b or not ours */
		return do_cmpxchg16b(c, code, len, vector);
	}
}
