/* SPDX-License-Identifier: MIT */
/* Shared by the image fuzzers: boot_load() the input into one 32 MiB guest
 * RAM (allocated once, reused) and check what a success promises. */
#ifndef MVM_FUZZ_BOOT_H
#define MVM_FUZZ_BOOT_H

#include <stdint.h>
#include <stdlib.h>

#include "vmm/arch/x86/boot.h"
#include "vmm/arch/x86/layout.h"

#define FUZZ_RAM MiB(32)

static const struct guest_mem *fuzz_ram(void)
{
	static struct guest_mem m;
	static uint8_t *ram;

	if (!ram) {
		ram = calloc(1, FUZZ_RAM);
		if (!ram)
			abort();
		guest_mem_init_buffer(&m, ram, FUZZ_RAM);
	}
	return &m;
}

static void fuzz_boot_load(const uint8_t *data, size_t size)
{
	static const uint8_t initrd[3000] = { 1, 2, 3 };
	const struct guest_mem *m = fuzz_ram();
	struct boot_params_in in = { data, size, initrd, sizeof(initrd),
	                             "console=ttyS0 mvmtest=hello", 0xe0000 };
	struct boot_result br;
	const char *err = NULL;

	if (boot_load(m, &in, &br, &err) < 0) {
		if (!err)
			abort();  /* every failure must say why */
		return;
	}
	if (!guest_mem_ptr(m, br.entry, 1) || br.kernel_end > FUZZ_RAM ||
	    (br.mode != BOOT_ENTRY_PVH32 && br.boot_param != ZERO_PAGE_START) ||
	    (br.mode == BOOT_ENTRY_PVH32 && br.boot_param != PVH_INFO_START))
		abort();
}

#endif
