/* SPDX-License-Identifier: MIT */
/* The instruction finisher on guest-chosen bytes and state: the first
 * bytes pick CR0, CPL, mode, x87 words, register values and whether
 * guest memory (one page at linear 0, as the registers' low bits can
 * reach) is mapped; the rest is the code at rip. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/arch/x86/insn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STATE_BYTES 8

static uint8_t page[4096] __attribute__((aligned(4096)));

static void *map(void *opaque, uint64_t lin, size_t len, bool write)
{
	(void)opaque;
	(void)write;
	if (lin >= sizeof(page) || len > sizeof(page) - lin)
		return NULL;
	return page + lin;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct insn_cpu c, before;
	uint8_t vec = 0xff;
	enum insn_result r;
	unsigned i;

	if (size < STATE_BYTES)
		return 0;
	memset(&c, 0, sizeof(c));
	for (i = 0; i < 16; i++)
		c.gpr[i] = 0x0101010101010101ULL * data[i % STATE_BYTES] * (i + 1);
	c.rip = 0xffffffff81000000ULL;
	c.rflags = 0x2 | ((uint64_t)data[0] << 11);
	c.cr0 = data[1];
	c.cpl = data[2] & 3;
	c.long64 = data[2] & 4;
	c.fsw = (uint16_t)(data[3] | data[4] << 8);
	c.fcw = (uint16_t)(data[5] | data[6] << 8);
	if (data[7] & 1) {
		/* registers mostly within the page */
		for (i = 0; i < 16; i++)
			c.gpr[i] &= 0xff0;
		c.map = map;
	}
	c.gs_base = (data[7] & 2) ? 0x100 : 0;
	before = c;
	r = insn_finish(&c, data + STATE_BYTES, size - STATE_BYTES, &vec);
	switch (r) {
	case INSN_UNKNOWN:
		if (memcmp(&c, &before, sizeof(c)) != 0)
			abort();  /* "not ours" must leave the state alone */
		break;
	case INSN_DONE:
	case INSN_RAISE:
	case INSN_RAISE_ERR:
		if (c.rip - before.rip > INSN_MAX_LEN || c.rip - before.rip > size - STATE_BYTES)
			abort();  /* never past the bytes it was given */
		if (r != INSN_DONE && vec > 31)
			abort();
		break;
	default:
		abort();
	}
	return 0;
}
