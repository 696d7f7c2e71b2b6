/* SPDX-License-Identifier: MIT */
/* insn_finish() on made-up CPU states: no KVM needed. */
#include <string.h>

#include "check.h"
#include "vmm/arch/x86/insn.h"

#define RIP   0xffffffff81000000ULL
#define ZF    (1ULL << 6)
#define CF    (1ULL << 0)
#define AC    (1ULL << 18)

static struct insn_cpu cpu0(void)
{
	struct insn_cpu c;
	unsigned i;

	memset(&c, 0, sizeof(c));
	for (i = 0; i < 16; i++)
		c.gpr[i] = 0x1111111111111111ULL * (i + 1);
	c.rip = RIP;
	c.rflags = 0x2 | CF;
	c.cr0 = 0x80050033;    /* PG WP NE ET MP PE, as Linux runs */
	c.long64 = true;
	c.fcw = 0x37f;
	return c;
}

static enum insn_result run(struct insn_cpu *c, const char *bytes, size_t len, uint8_t *vec)
{
	return insn_finish(c, (const uint8_t *)bytes, len, vec);
}

static void test_int3(void)
{
	struct insn_cpu c = cpu0();
	uint8_t vec = 0;

	CHECK_EQ(run(&c, "\xcc", 1, &vec), INSN_RAISE);
	CHECK_EQ(vec, 3);
	CHECK_EQ(c.rip, RIP + 1);   /* a trap: reported past the instruction */
}

static void test_fwait(void)
{
	struct insn_cpu c = cpu0(), before;
	uint8_t vec = 0;

	CHECK_EQ(run(&c, "\x9b\x90", 2, &vec), INSN_DONE);
	CHECK_EQ(c.rip, RIP + 1);
	/* TS and MP: #NM, rip unchanged (a fault) */
	c = cpu0();
	c.cr0 |= 1 << 3;
	CHECK_EQ(run(&c, "\x9b", 1, &vec), INSN_RAISE);
	CHECK_EQ(vec, 7);
	CHECK_EQ(c.rip, RIP);
	/* an unmasked pending exception (ZE): #MF */
	c = cpu0();
	c.fcw = 0x37b;
	c.fsw = 0x0084;
	CHECK_EQ(run(&c, "\x9b", 1, &vec), INSN_RAISE);
	CHECK_EQ(vec, 16);
	CHECK_EQ(c.rip, RIP);
	/* the same exception masked: nothing to report */
	c = cpu0();
	c.fsw = 0x0084;
	CHECK_EQ(run(&c, "\x9b", 1, &vec), INSN_DONE);
	/* without CR0.NE the CPU would signal FERR#: left alone */
	c = cpu0();
	c.cr0 &= ~(1ULL << 5);
	c.fcw = 0x37b;
	c.fsw = 0x0084;
	before = c;
	CHECK_EQ(run(&c, "\x9b", 1, &vec), INSN_UNKNOWN);
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
}

static void test_popcnt(void)
{
	struct insn_cpu c = cpu0(), before;
	uint8_t vec = 0;

	/* popcnt %rdi, %rax (f3 48 0f b8 c7): Linux's __arch_hweight64 */
	c.gpr[7] = 0xf0f0000000000001ULL;
	CHECK_EQ(run(&c, "\xf3\x48\x0f\xb8\xc7", 5, &vec), INSN_DONE);
	CHECK_EQ(c.gpr[0], 9);
	CHECK_EQ(c.rip, RIP + 5);
	CHECK_EQ(c.rflags & (ZF | CF), 0);
	/* popcnt %edi, %eax: 32 bits, the result zero-extends */
	c = cpu0();
	c.gpr[7] = 0xffffffff00000003ULL;
	CHECK_EQ(run(&c, "\xf3\x0f\xb8\xc7", 4, &vec), INSN_DONE);
	CHECK_EQ(c.gpr[0], 2);
	CHECK_EQ(c.rip, RIP + 4);
	/* zero source sets ZF */
	c = cpu0();
	c.gpr[7] = 0xffffffff00000000ULL;
	CHECK_EQ(run(&c, "\xf3\x0f\xb8\xc7", 4, &vec), INSN_DONE);
	CHECK_EQ(c.gpr[0], 0);
	CHECK(c.rflags & ZF);
	/* 16 bits (66 f3 0f b8 c7): only ax changes */
	c = cpu0();
	c.gpr[7] = 0x00000000000f00ffULL;
	CHECK_EQ(run(&c, "\x66\xf3\x0f\xb8\xc7", 5, &vec), INSN_DONE);
	CHECK_EQ(c.gpr[0], 0x1111111111110008ULL);
	/* popcnt %r9, %r10 (f3 4d 0f b8 d1): REX.R and REX.B */
	c = cpu0();
	c.gpr[9] = 0x7;
	CHECK_EQ(run(&c, "\xf3\x4d\x0f\xb8\xd1", 5, &vec), INSN_DONE);
	CHECK_EQ(c.gpr[10], 3);
	/* a memory operand, a cut-off instruction, no F3, 32-bit mode: not ours */
	c = cpu0();
	before = c;
	CHECK_EQ(run(&c, "\xf3\x48\x0f\xb8\x07", 5, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\xf3\x48\x0f\xb8", 4, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\x66\x0f\xb8\xc7", 4, &vec), INSN_UNKNOWN);
	c.long64 = false;
	before.long64 = false;
	CHECK_EQ(run(&c, "\xf3\x0f\xb8\xc7", 4, &vec), INSN_UNKNOWN);
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
}

static void test_clac_stac(void)
{
	struct insn_cpu c = cpu0();
	uint8_t vec = 0;

	CHECK_EQ(run(&c, "\x0f\x01\xcb", 3, &vec), INSN_DONE);
	CHECK(c.rflags & AC);
	CHECK_EQ(c.rip, RIP + 3);
	CHECK_EQ(run(&c, "\x0f\x01\xca", 3, &vec), INSN_DONE);
	CHECK(!(c.rflags & AC));
	CHECK_EQ(c.rip, RIP + 6);
	/* from user mode: #UD */
	c = cpu0();
	c.cpl = 3;
	CHECK_EQ(run(&c, "\x0f\x01\xca", 3, &vec), INSN_RAISE);
	CHECK_EQ(vec, 6);
	CHECK_EQ(c.rip, RIP);
	/* other 0f 01 instructions (vmcall 0f 01 c1) and nothing at all */
	CHECK_EQ(run(&c, "\x0f\x01\xc1", 3, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\x0f\x01", 2, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "", 0, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\x90", 1, &vec), INSN_UNKNOWN);
}

int main(void)
{
	test_int3();
	test_fwait();
	test_popcnt();
	test_clac_stac();
	return check_result("insn");
}
