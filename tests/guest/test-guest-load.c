/* SPDX-License-Identifier: MIT */
/*
 * The VMM's image parsers and loader accept both test guest images and pick
 * the intended entry: the bzImage's 64-bit entry at payload + 0x200 and the
 * ELF's PVH note.  (The guest's own format checks are in check_images.py.)
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vmm/arch/x86/boot.h"
#include "vmm/arch/x86/layout.h"

static void *read_file(const char *path, size_t *ret_len)
{
	FILE *f = fopen(path, "rb");
	void *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n);
		if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		*ret_len = (size_t)n;
	}
	fclose(f);
	return buf;
}

static void load(const void *img, size_t len, struct boot_result *res)
{
	static uint8_t ram[MiB(32)];
	struct guest_mem m;
	const char *err = NULL;
	struct boot_params_in in = { .kernel = img, .kernel_len = len, .cmdline = "mvmtest=hello" };

	guest_mem_init_buffer(&m, ram, sizeof(ram));
	CHECK_EQ(boot_load(&m, &in, res, &err), 0);
	if (err)
		fprintf(stderr, "boot_load: %s\n", err);
	/* The loaded code begins with startup_32's cli; hlt. */
	CHECK_EQ(ram[HIMEM_START], 0xfa);
}

int main(int argc, char **argv)
{
	size_t elf_len = 0, bz_len = 0;
	void *elf, *bz;
	struct bzimage_info bi;
	struct elf_info ei;
	struct boot_result res;
	const char *err = NULL;

	if (argc != 3) {
		fprintf(stderr, "usage: %s mvmtest.elf mvmtest.bzImage\n", argv[0]);
		return 2;
	}
	elf = read_file(argv[1], &elf_len);
	bz = read_file(argv[2], &bz_len);
	CHECK(elf && bz);
	if (!elf || !bz)
		return check_result("guest-load");

	CHECK_EQ(bzimage_parse(bz, bz_len, &bi, &err), 0);
	CHECK_EQ(bi.protocol, 0x020f);
	CHECK_EQ(bi.pref_address, HIMEM_START);
	CHECK_EQ(bi.relocatable, 0);
	CHECK(bi.cmdline_size >= 255);
	load(bz, bz_len, &res);
	CHECK_EQ(res.mode, BOOT_ENTRY_LINUX64);
	CHECK_EQ(res.entry, HIMEM_START + 0x200);

	CHECK_EQ(elf_parse(elf, elf_len, &ei, &err), 0);
	CHECK(ei.has_pvh);
	CHECK(ei.entry != HIMEM_START + 0x200);  /* elf64_entry, its own stub */
	load(elf, elf_len, &res);
	CHECK_EQ(res.mode, BOOT_ENTRY_PVH32);
	CHECK_EQ(res.entry, ei.pvh_entry);

	free(elf);
	free(bz);
	return check_result("guest-load");
}
