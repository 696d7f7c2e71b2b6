/* SPDX-License-Identifier: MIT */
/* Reads the Linux zero page or the PVH start info into struct bootinfo. */
#include "boot.h"

/* struct boot_params offsets (Documentation/arch/x86/zero-page.rst). */
#define BP_ACPI_RSDP       0x070
#define BP_EXT_RAMDISK_IMG 0x0c0
#define BP_EXT_RAMDISK_SZ  0x0c4
#define BP_EXT_CMDLINE     0x0c8
#define BP_E820_ENTRIES    0x1e8
#define BP_RAMDISK_IMAGE   0x218
#define BP_RAMDISK_SIZE    0x21c
#define BP_CMD_LINE_PTR    0x228
#define BP_E820_TABLE      0x2d0
#define BP_E820_MAX        128

#define PVH_MAGIC 0x336ec578

struct hvm_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr;
	uint64_t memmap_paddr;     /* version >= 1 */
	uint32_t memmap_entries, reserved;
};
struct hvm_modlist_entry { uint64_t paddr, size, cmdline_paddr, reserved; };
struct hvm_memmap_entry { uint64_t addr, size; uint32_t type, reserved; };

struct bootinfo boot;

#define RD(base, off, type) (*(const type *)((base) + (off)))

static void copy_cmdline(uint64_t addr)
{
	const char *s = (const char *)addr;
	size_t i;

	if (!addr)
		return;
	for (i = 0; i < sizeof(boot.cmdline) - 1 && s[i]; i++)
		boot.cmdline[i] = s[i];
	boot.cmdline[i] = '\0';
}

static void add_e820(uint64_t addr, uint64_t size, uint32_t type)
{
	if (boot.ne820 < E820_MAX)
		boot.e820[boot.ne820++] = (struct e820){ addr, size, type };
}

static void parse_zero_page(const uint8_t *zp)
{
	unsigned n = RD(zp, BP_E820_ENTRIES, uint8_t);

	copy_cmdline(RD(zp, BP_CMD_LINE_PTR, uint32_t) |
	             (uint64_t)RD(zp, BP_EXT_CMDLINE, uint32_t) << 32);
	boot.initrd_addr = RD(zp, BP_RAMDISK_IMAGE, uint32_t) |
	                   (uint64_t)RD(zp, BP_EXT_RAMDISK_IMG, uint32_t) << 32;
	boot.initrd_size = RD(zp, BP_RAMDISK_SIZE, uint32_t) |
	                   (uint64_t)RD(zp, BP_EXT_RAMDISK_SZ, uint32_t) << 32;
	boot.rsdp = RD(zp, BP_ACPI_RSDP, uint64_t);
	if (n > BP_E820_MAX)
		n = BP_E820_MAX;
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *e = zp + BP_E820_TABLE + 20 * i;

		add_e820(RD(e, 0, uint64_t), RD(e, 8, uint64_t), RD(e, 16, uint32_t));
	}
}

static void parse_pvh(const struct hvm_start_info *si)
{
	if (si->magic != PVH_MAGIC)
		fail("pvh start info magic %x", si->magic);
	copy_cmdline(si->cmdline_paddr);
	boot.rsdp = si->rsdp_paddr;
	if (si->nr_modules && si->modlist_paddr) {
		const struct hvm_modlist_entry *m = (const void *)si->modlist_paddr;

		boot.initrd_addr = m->paddr;
		boot.initrd_size = m->size;
	}
	if (si->version >= 1 && si->memmap_paddr) {
		const struct hvm_memmap_entry *e = (const void *)si->memmap_paddr;

		for (unsigned i = 0; i < si->memmap_entries && i < E820_MAX; i++)
			add_e820(e[i].addr, e[i].size, e[i].type);
	}
}

void boot_parse(int entry, uint64_t info)
{
	boot.entry = entry;
	if (entry == ENTRY_PVH)
		parse_pvh((const struct hvm_start_info *)info);
	else
		parse_zero_page((const uint8_t *)info);
}

const char *boot_entry_name(int entry)
{
	switch (entry) {
	case ENTRY_LINUX64: return "linux64";
	case ENTRY_PVH: return "pvh";
	case ENTRY_ELF64: return "elf64";
	}
	return "unknown";
}

/* Whether [addr, addr+size) lies inside one RAM entry. */
bool boot_ram_covers(uint64_t addr, uint64_t size)
{
	for (unsigned i = 0; i < boot.ne820; i++) {
		const struct e820 *e = &boot.e820[i];

		if (e->type == E820_RAM && addr >= e->addr && size <= e->size &&
		    addr - e->addr <= e->size - size)
			return true;
	}
	return false;
}
