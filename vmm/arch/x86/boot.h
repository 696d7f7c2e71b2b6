/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_BOOT_H
#define MVM_X86_BOOT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include "vmm/memory.h"
#include "vmm/arch/x86/layout.h"

/*
 * Kernel image parsing and loading.  Parsers take an untrusted buffer and
 * never read outside it (they are fuzzed); loaders place the result in guest
 * RAM at the addresses in layout.h.  All return 0 or a negative errno; on
 * failure *ret_err (when given) points at a static one-line reason that names
 * what was wrong, e.g. "bzImage: boot protocol is too old (need >= 2.12 with
 * XLF_KERNEL_64)".  Reasons that carry sizes live in a per-thread buffer,
 * valid until the same thread's next call.
 */

enum boot_entry_mode {
	BOOT_ENTRY_LINUX64,  /* 64-bit Linux boot protocol: rsi = zero page   */
	BOOT_ENTRY_PVH32,    /* PVH: 32-bit protected mode, ebx = start_info */
	BOOT_ENTRY_ELF64,    /* plain ELF entry in 64-bit mode, rsi = zero page */
};

struct bzimage_info {
	uint16_t protocol;         /* boot protocol version, e.g. 0x020f */
	uint32_t setup_size;       /* bytes of real-mode setup (incl. boot sector) */
	uint64_t payload_offset;   /* protected-mode code offset in the file */
	uint64_t payload_size;
	uint32_t initrd_addr_max;
	uint32_t cmdline_size;     /* max cmdline length the kernel accepts */
	uint64_t pref_address;
	uint32_t init_size;
	uint32_t kernel_alignment;
	int relocatable;
};

struct elf_segment { uint64_t offset, paddr, filesz, memsz; };
#define ELF_MAX_SEGMENTS 16

struct elf_info {
	uint64_t entry;            /* e_entry, physical (ELF64 path) */
	int has_pvh;               /* XEN_ELFNOTE_PHYS32_ENTRY present */
	uint32_t pvh_entry;
	unsigned nsegs;
	struct elf_segment segs[ELF_MAX_SEGMENTS];
};

int bzimage_parse(const void *img, size_t len, struct bzimage_info *ret, const char **ret_err);
int elf_parse(const void *img, size_t len, struct elf_info *ret, const char **ret_err);

/* PVH module list (the initrd): right after the largest memory map, still
 * below the zero page.  Derived from layout.h, so no new address. */
#define PVH_MEMMAP_ENTRY_SIZE 24
#define PVH_MODLIST_START (PVH_MEMMAP_START + PVH_MEMMAP_MAX * PVH_MEMMAP_ENTRY_SIZE)

/* What the BSP needs to start the guest. */
struct boot_result {
	enum boot_entry_mode mode;
	uint64_t entry;        /* guest-physical entry point */
	uint64_t boot_param;   /* zero page (rsi) or hvm_start_info (ebx) */
	uint64_t kernel_end;   /* first byte after the loaded kernel */
};

struct boot_params_in {
	const void *kernel; size_t kernel_len;
	const void *initrd; size_t initrd_len;   /* initrd may be NULL */
	const char *cmdline;                     /* may be NULL */
	uint64_t rsdp_addr;                      /* 0 if none */
};

/* Detects the format (bzImage, else ELF), loads kernel, initrd and command
 * line, and writes the zero page or hvm_start_info including the e820 map. */
int boot_load(const struct guest_mem *m, const struct boot_params_in *in,
              struct boot_result *ret, const char **ret_err);

/* Whether the kernel command line holds key as a whole word, or, for a
 * key without '=', a word "key=...": how mvm-vmm tells what the user
 * already chose (acpi=off, tsc_early_khz=) before adding its own. */
bool boot_cmdline_has(const char *cmdline, const char *key);

/* e820 map of a VM with this memory; returns the number of entries. */
struct e820_entry_x { uint64_t addr, size; uint32_t type; };
#define E820_TYPE_RAM      1
#define E820_TYPE_RESERVED 2
#define E820_MAX_X 8
unsigned boot_e820(const struct guest_mem *m, struct e820_entry_x *out, unsigned max);

#endif
