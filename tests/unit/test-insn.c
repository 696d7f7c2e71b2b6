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

/* Guest memory for cmpxchg16b: one page at linear address MEM. */
#define MEM 0xffff888000010000ULL
static uint64_t page[512] __attribute__((aligned(4096)));

static void *map(void *opaque, uint64_t lin, size_t len, bool write)
{
	(void)opaque;
	(void)write;
	if (lin < MEM || lin - MEM + len > sizeof(page))
		return NULL;
	return (uint8_t *)page + (lin - MEM);
}

static struct insn_cpu cpu16(void)
{
	struct insn_cpu c = cpu0();

	c.map = map;
	c.gpr[0] = 0xa0;        /* rax: expected low */
	c.gpr[2] = 0xd0;        /* rdx: expected high */
	c.gpr[3] = 0xb0;        /* rbx: new low */
	c.gpr[1] = 0xc0;        /* rcx: new high */
	memset(page, 0, sizeof(page));
	return c;
}

static void test_cmpxchg16b(void)
{
	struct insn_cpu c = cpu16(), before;
	uint8_t vec = 0;

	/* lock cmpxchg16b (%rdi), equal: ZF, rcx:rbx stored */
	c.gpr[7] = MEM + 0x40;
	page[8] = 0xa0;
	page[9] = 0xd0;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_DONE);
	CHECK(c.rflags & ZF);
	CHECK_EQ(page[8], 0xb0);
	CHECK_EQ(page[9], 0xc0);
	CHECK_EQ(c.gpr[0], 0xa0);
	CHECK_EQ(c.rip, RIP + 5);
	/* again: now unequal, ZF clear, rdx:rax loaded, memory kept */
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_DONE);
	CHECK(!(c.rflags & ZF));
	CHECK_EQ(c.gpr[0], 0xb0);
	CHECK_EQ(c.gpr[2], 0xc0);
	CHECK_EQ(page[8], 0xb0);
	CHECK_EQ(c.rip, RIP + 10);
	/* cmpxchg16b %gs:0x10(%rsi): SLUB's per-CPU form */
	c = cpu16();
	c.gs_base = MEM + 0x100;
	c.gpr[6] = 0x20;
	page[0x130 / 8] = 0xa0;
	page[0x138 / 8] = 0xd0;
	CHECK_EQ(run(&c, "\x65\x48\x0f\xc7\x4e\x10", 6, &vec), INSN_DONE);
	CHECK(c.rflags & ZF);
	CHECK_EQ(page[0x130 / 8], 0xb0);
	CHECK_EQ(c.rip, RIP + 6);
	/* lock cmpxchg16b 0x20(%rax,%r9,2): SIB with REX.X */
	c = cpu16();
	c.gpr[0] = MEM;         /* also the expected low: compare fails */
	c.gpr[9] = 0x40;
	page[0xa0 / 8] = 0x1234;
	page[0xa8 / 8] = 0x5678;
	CHECK_EQ(run(&c, "\xf0\x4a\x0f\xc7\x4c\x48\x20", 7, &vec), INSN_DONE);
	CHECK(!(c.rflags & ZF));
	CHECK_EQ(c.gpr[0], 0x1234);
	CHECK_EQ(c.gpr[2], 0x5678);
	CHECK_EQ(c.rip, RIP + 7);
	/* RIP-relative: relative to the end of the 9-byte instruction */
	c = cpu16();
	c.rip = MEM + 0x200 - 9 - 0x100;
	page[0x200 / 8] = 0xa0;
	page[0x208 / 8] = 0xd0;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0d\x00\x01\x00\x00", 9, &vec), INSN_DONE);
	CHECK(c.rflags & ZF);
	CHECK_EQ(page[0x200 / 8], 0xb0);
	/* misaligned and non-canonical: #GP(0), nothing changed */
	c = cpu16();
	c.gpr[7] = MEM + 8;
	before = c;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_RAISE_ERR);
	CHECK_EQ(vec, 13);
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
	c.gpr[7] = 0x0000800000000000ULL;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_RAISE_ERR);
	/* a register operand: #UD */
	c = cpu16();
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\xc9", 5, &vec), INSN_RAISE);
	CHECK_EQ(vec, 6);
	CHECK_EQ(c.rip, RIP);
	/* not ours, state untouched: unmapped memory, no map at all,
	 * cmpxchg8b (no REX.W), rdrand (/6), cut off, 32-bit mode */
	c = cpu16();
	c.gpr[7] = 0x1000;
	before = c;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_UNKNOWN);
	c.gpr[7] = before.gpr[7] = MEM;
	c.map = before.map = NULL;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_UNKNOWN);
	c.map = before.map = map;
	CHECK_EQ(run(&c, "\xf0\x0f\xc7\x0f", 4, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\x48\x0f\xc7\xf0", 4, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x4e", 5, &vec), INSN_UNKNOWN);
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0d\x00\x01", 7, &vec), INSN_UNKNOWN);
	c.long64 = before.long64 = false;
	CHECK_EQ(run(&c, "\xf0\x48\x0f\xc7\x0f", 5, &vec), INSN_UNKNOWN);
	CHECK(memcmp(&c, &before, sizeof(c)) == 0);
	CHECK_EQ(page[0], 0);
}

int main(void)
{
	test_int3();
	test_fwait();
	test_popcnt();
	test_clac_stac();
	test_cmpxchg16b();
	return check_result("insn");
}
