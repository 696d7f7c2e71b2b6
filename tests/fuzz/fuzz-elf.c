/* SPDX-License-Identifier: MIT */
/* ELF vmlinux parser (program headers, PT_NOTE / PVH note) and loader. */
#include <stdint.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz-boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct elf_info ei;
	const char *err = NULL;
	unsigned i;

	if (elf_parse(data, size, &ei, &err) == 0) {
		if (ei.nsegs == 0 || ei.nsegs > ELF_MAX_SEGMENTS)
			abort();
		for (i = 0; i < ei.nsegs; i++)
			if (ei.segs[i].filesz > ei.segs[i].memsz ||
			    ei.segs[i].offset + ei.segs[i].filesz > size)
				abort();
	} else if (!err) {
		abort();
	}
	fuzz_boot_load(data, size);
	return 0;
}
