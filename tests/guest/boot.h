/* SPDX-License-Identifier: MIT */
/* What the guest learned from its loader, whatever the boot protocol. */
#ifndef MVMTEST_BOOT_H
#define MVMTEST_BOOT_H

#include "lib.h"

#define E820_MAX 32
#define E820_RAM 1

struct e820 { uint64_t addr, size; uint32_t type; };

struct bootinfo {
	int entry;                 /* ENTRY_* */
	char cmdline[4096];        /* copied: low memory gets reused */
	uint64_t initrd_addr, initrd_size;
	uint64_t rsdp;             /* 0: scan the BIOS area */
	unsigned ne820;
	struct e820 e820[E820_MAX];
};

extern struct bootinfo boot;

void boot_parse(int entry, uint64_t info);
const char *boot_entry_name(int entry);
bool boot_ram_covers(uint64_t addr, uint64_t size);

#endif
