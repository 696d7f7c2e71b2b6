/* SPDX-License-Identifier: MIT */
/* bzImage header parser and loader, on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>

#include "tests/fuzz/fuzz-boot.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bzimage_info bi;
	const char *err = NULL;

	if (bzimage_parse(data, size, &bi, &err) == 0) {
		/* The payload may end before the file does: syssize paragraphs
		 * count, padding after them does not. */
		if (bi.payload_offset >= size || bi.payload_size == 0 ||
		    bi.payload_size > size - bi.payload_offset || bi.protocol < 0x020c)
			abort();
	} else if (!err) {
		abort();
	}
	fuzz_boot_load(data, size);
	return 0;
}
