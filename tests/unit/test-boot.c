/* SPDX-License-Identifier: MIT */
/* bzImage / ELF parsing and boot_load() into a malloc'd guest RAM. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vmm/arch/x86/boot.h"
#include "vmm/arch/x86/layout.h"

#define BZ_LEN 8192
#define BZ_SETUP 1024   /* setup_sects = 1 */
#define ELF_LEN 0x1100
#define RAM_64M MiB(64)

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint16_t r16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t r32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t r64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* A minimal valid bzImage: protocol 2.15, 64-bit, 1 setup sector. */
static void make_bz(uint8_t *b)
{
	unsigned i;

	memset(b, 0, BZ_LEN);
	b[0x1f1] = 1;
	w16(b + 0x1fe, 0xaa55);
	b[0x200] = 0xeb;
	b[0x201] = 0x6a;            /* header ends at 0x26c */
	memcpy(b + 0x202, "HdrS", 4);
	w16(b + 0x206, 0x020f);
	b[0x211] = 0x01;            /* LOADED_HIGH */
	w32(b + 0x214, 0x100000);
	w32(b + 0x22c, 0x7fffffff); /* initrd_addr_max */
	w32(b + 0x230, 0x200000);   /* kernel_alignment */
	w16(b + 0x236, 0x3);        /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	w32(b + 0x238, 2047);       /* cmdline_size */
	w64(b + 0x258, 0x1000000);  /* pref_address */
	w32(b + 0x260, 0x10000);    /* init_size: 64 KiB */
	for (i = BZ_SETUP; i < BZ_LEN; i++)
		b[i] = (uint8_t)(i * 7 + 3);
}

static int bz_err(const uint8_t *b, size_t len, const char *want)
{
	struct bzimage_info bi;
	const char *err = NULL;
	int r = bzimage_parse(b, len, &bi, &err);

	if (r != -EINVAL || !err || !strstr(err, want)) {
		fprintf(stderr, "  bzimage: want error containing '%s', got r=%d err=%s\n",
		        want, r, err ? err : "(null)");
		return 0;
	}
	return 1;
}

static void test_bz_parse(void)
{
	static uint8_t b[BZ_LEN];
	struct bzimage_info bi;
	const char *err = NULL;

	make_bz(b);
	CHECK_EQ(bzimage_parse(b, BZ_LEN, &bi, &err), 0);
	CHECK_EQ(bi.protocol, 0x020f);
	CHECK_EQ(bi.setup_size, BZ_SETUP);
	CHECK_EQ(bi.payload_offset, BZ_SETUP);
	CHECK_EQ(bi.payload_size, BZ_LEN - BZ_SETUP);
	CHECK_EQ(bi.initrd_addr_max, 0x7fffffff);
	CHECK_EQ(bi.cmdline_size, 2047);
	CHECK_EQ(bi.pref_address, 0x1000000);
	CHECK_EQ(bi.init_size, 0x10000);
	CHECK_EQ(bi.kernel_alignment, 0x200000);
	CHECK_EQ(bi.relocatable, 0);

	CHECK(bz_err(b, 1023, "shorter than 1024"));
	make_bz(b); b[0x1fe] = 0;
	CHECK(bz_err(b, BZ_LEN, "0xAA55"));
	make_bz(b); b[0x205] = 'X';
	CHECK(bz_err(b, BZ_LEN, "HdrS"));
	make_bz(b); w16(b + 0x206, 0x020b);
	CHECK(bz_err(b, BZ_LEN, "too old"));
	make_bz(b); w16(b + 0x236, 0x2);
	CHECK(bz_err(b, BZ_LEN, "XLF_KERNEL_64"));
	make_bz(b); b[0x211] = 0;
	CHECK(bz_err(b, BZ_LEN, "LOADED_HIGH"));
	make_bz(b); b[0x1f1] = 16;  /* 17 * 512 > 8192 */
	CHECK(bz_err(b, BZ_LEN, "past the end of the file"));
	make_bz(b); b[0x1f1] = 15;  /* exactly 8192: nothing left */
	CHECK(bz_err(b, BZ_LEN, "no protected-mode kernel"));

	/* syssize says how long the payload is: a shorter file is truncated. */
	make_bz(b); w32(b + 0x1f4, (BZ_LEN - BZ_SETUP) / 16);
	CHECK_EQ(bzimage_parse(b, BZ_LEN, &bi, &err), 0);
	CHECK_EQ(bi.payload_size, BZ_LEN - BZ_SETUP);
	CHECK(bz_err(b, BZ_LEN - 16, "truncated"));

	/* setup_sects 0 means 4. */
	make_bz(b); b[0x1f1] = 0; b[0x234] = 1;
	CHECK_EQ(bzimage_parse(b, BZ_LEN, &bi, &err), 0);
	CHECK_EQ(bi.setup_size, 5 * 512);
	CHECK_EQ(bi.relocatable, 1);
}

/* An ELF64 vmlinux: one PT_LOAD (file 0x1000.., paddr 1 MiB, 0x100 bytes of
 * data, 0x2000 in memory) and one PT_NOTE at 0x200 holding a PVH note. */
static void make_elf(uint8_t *e, int with_note)
{
	uint8_t *ph = e + 64, *note = e + 0x200;
	unsigned i;

	memset(e, 0, ELF_LEN);
	memcpy(e, "\177ELF", 4);
	e[4] = 2; e[5] = 1; e[6] = 1;
	w16(e + 16, 2);          /* ET_EXEC */
	w16(e + 18, 62);         /* EM_X86_64 */
	w32(e + 20, 1);
	w64(e + 24, 0x100040);   /* e_entry */
	w64(e + 32, 64);         /* e_phoff */
	w16(e + 52, 64);
	w16(e + 54, 56);
	w16(e + 56, with_note ? 2 : 1);
	w32(ph, 1);
	w64(ph + 8, 0x1000);
	w64(ph + 16, 0xffffffff80100000ULL);
	w64(ph + 24, 0x100000);
	w64(ph + 32, 0x100);
	w64(ph + 40, 0x2000);
	ph += 56;
	w32(ph, 4);
	w64(ph + 8, 0x200);
	w64(ph + 32, 20);
	w64(ph + 48, 4);
	w32(note, 4); w32(note + 4, 4); w32(note + 8, 18);
	memcpy(note + 12, "Xen", 4);
	w32(note + 16, 0x100010);
	for (i = 0x1000; i < 0x1100; i++)
		e[i] = (uint8_t)(i ^ 0x5a);
}

static int elf_err(const uint8_t *e, size_t len, const char *want)
{
	struct elf_info ei;
	const char *err = NULL;
	int r = elf_parse(e, len, &ei, &err);

	if (r != -EINVAL || !err || !strstr(err, want)) {
		fprintf(stderr, "  elf: want error containing '%s', got r=%d err=%s\n",
		        want, r, err ? err : "(null)");
		return 0;
	}
	return 1;
}

static void test_elf_parse_good(void)
{
	static uint8_t e[ELF_LEN];
	struct elf_info ei;
	const char *err = NULL;

	make_elf(e, 1);
	CHECK_EQ(elf_parse(e, ELF_LEN, &ei, &err), 0);
	CHECK_EQ(ei.has_pvh, 1);
	CHECK_EQ(ei.pvh_entry, 0x100010);
	CHECK_EQ(ei.entry, 0x100040);
	CHECK_EQ(ei.nsegs, 1);
	CHECK_EQ(ei.segs[0].offset, 0x1000);
	CHECK_EQ(ei.segs[0].paddr, 0x100000);
	CHECK_EQ(ei.segs[0].filesz, 0x100);
	CHECK_EQ(ei.segs[0].memsz, 0x2000);

	/* 8-byte descriptor. */
	make_elf(e, 1);
	w32(e + 0x200 + 4, 8);
	w64(e + 64 + 56 + 32, 24);  /* PT_NOTE p_filesz */
	w64(e + 0x200 + 16, 0x200000);
	CHECK_EQ(elf_parse(e, ELF_LEN, &ei, &err), 0);
	CHECK_EQ(ei.pvh_entry, 0x200000);

	/* A "Xen" note of another type is not the entry. */
	make_elf(e, 1);
	w32(e + 0x200 + 8, 17);
	CHECK_EQ(elf_parse(e, ELF_LEN, &ei, &err), 0);
	CHECK_EQ(ei.has_pvh, 0);

	/* The PVH note after another note (GNU, 8 bytes of name). */
	make_elf(e, 1);
	{
		uint8_t *n = e + 0x200;
		w32(n, 4); w32(n + 4, 4); w32(n + 8, 3);
		memcpy(n + 12, "GNU", 4);
		w32(n + 20, 4); w32(n + 24, 4); w32(n + 28, 18);
		memcpy(n + 32, "Xen", 4);
		w32(n + 36, 0x100020);
		w64(e + 64 + 56 + 32, 40);
	}
	CHECK_EQ(elf_parse(e, ELF_LEN, &ei, &err), 0);
	CHECK_EQ(ei.has_pvh, 1);
	CHECK_EQ(ei.pvh_entry, 0x100020);
}

static void test_elf_parse_bad(void)
{
	static uint8_t e[ELF_LEN];
	uint8_t *ph0 = e + 64, *ph1 = e + 64 + 56, *n = e + 0x200;
	unsigned i;

	make_elf(e, 1);
	CHECK(elf_err(e, 63, "no ELF header"));
	make_elf(e, 1); e[4] = 1;
	CHECK(elf_err(e, ELF_LEN, "ELFCLASS64"));
	make_elf(e, 1); e[5] = 2;
	CHECK(elf_err(e, ELF_LEN, "little-endian"));
	make_elf(e, 1); w16(e + 18, 3);
	CHECK(elf_err(e, ELF_LEN, "EM_X86_64"));
	make_elf(e, 1); w16(e + 16, 3);
	CHECK(elf_err(e, ELF_LEN, "ET_EXEC"));
	make_elf(e, 1); w16(e + 54, 32);
	CHECK(elf_err(e, ELF_LEN, "e_phentsize"));
	make_elf(e, 1); w16(e + 56, 0);
	CHECK(elf_err(e, ELF_LEN, "e_phnum"));
	make_elf(e, 1); w64(e + 32, ELF_LEN - 100);
	CHECK(elf_err(e, ELF_LEN, "program header table lies outside"));
	make_elf(e, 1); w64(e + 32, UINT64_MAX - 8);
	CHECK(elf_err(e, ELF_LEN, "program header table lies outside"));
	make_elf(e, 1); w16(e + 56, 200);
	CHECK(elf_err(e, ELF_LEN, "program header table lies outside"));
	make_elf(e, 1); w64(ph0 + 32, 0x3000);
	CHECK(elf_err(e, ELF_LEN, "p_filesz > p_memsz"));
	make_elf(e, 1); w64(ph0 + 8, ELF_LEN - 0x80);
	CHECK(elf_err(e, ELF_LEN, "outside the file"));
	make_elf(e, 1); w64(ph0 + 8, UINT64_MAX - 0x10);
	CHECK(elf_err(e, ELF_LEN, "outside the file"));
	make_elf(e, 1); w64(ph0 + 24, UINT64_MAX - 0x1000);
	CHECK(elf_err(e, ELF_LEN, "overflows"));
	make_elf(e, 1); w32(ph0, 0);
	CHECK(elf_err(e, ELF_LEN, "no loadable"));
	/* Note lengths that lie. */
	make_elf(e, 1); w32(n, 0xffffffff);
	CHECK(elf_err(e, ELF_LEN, "runs past the end of its PT_NOTE"));
	make_elf(e, 1); w32(n + 4, 0xfffffffd);
	CHECK(elf_err(e, ELF_LEN, "runs past the end of its PT_NOTE"));
	make_elf(e, 1); w32(n + 4, 8);  /* desc runs past filesz 20 */
	CHECK(elf_err(e, ELF_LEN, "runs past the end of its PT_NOTE"));
	make_elf(e, 1); w32(n + 4, 2);
	CHECK(elf_err(e, ELF_LEN, "wrong size"));
	make_elf(e, 1); w32(n + 4, 8); w64(ph1 + 32, 24); w64(n + 16, 0x100000000ULL);
	CHECK(elf_err(e, ELF_LEN, "above 4 GiB"));
	make_elf(e, 1); w64(ph1 + 8, ELF_LEN - 10);
	CHECK(elf_err(e, ELF_LEN, "PT_NOTE segment lies outside"));
	/* 17 loads: phdrs at 0x200.. (overwrites the note; drop it). */
	make_elf(e, 0);
	w64(e + 32, 0x200);
	w16(e + 56, 17);
	for (i = 0; i < 17; i++) {
		uint8_t *ph = e + 0x200 + i * 56;
		w32(ph, 1); w64(ph + 8, 0x1000); w64(ph + 24, 0x100000 + i * 0x1000);
		w64(ph + 32, 0x10); w64(ph + 40, 0x10);
	}
	CHECK(elf_err(e, ELF_LEN, "more than 16"));
}

static uint8_t *new_ram(struct guest_mem *m, uint64_t size)
{
	uint8_t *ram = malloc(size);

	if (!ram) {
		fprintf(stderr, "out of memory\n");
		exit(2);
	}
	memset(ram, 0xcc, size);
	guest_mem_init_buffer(m, ram, size);
	return ram;
}

static void check_e820_64m(const uint8_t *t, unsigned stride)
{
	CHECK_EQ(r64(t), 0);
	CHECK_EQ(r64(t + 8), EBDA_START);
	CHECK_EQ(r32(t + 16), E820_TYPE_RAM);
	t += stride;
	CHECK_EQ(r64(t), EBDA_START);
	CHECK_EQ(r64(t + 8), BIOS_AREA_END - EBDA_START);
	CHECK_EQ(r32(t + 16), E820_TYPE_RESERVED);
	t += stride;
	CHECK_EQ(r64(t), HIMEM_START);
	CHECK_EQ(r64(t + 8), RAM_64M - HIMEM_START);
	CHECK_EQ(r32(t + 16), E820_TYPE_RAM);
}

static void test_bz_load(void)
{
	static uint8_t b[BZ_LEN], initrd[5000];
	struct guest_mem m;
	uint8_t *ram = new_ram(&m, RAM_64M), *zp = ram + ZERO_PAGE_START;
	struct boot_params_in in = { b, BZ_LEN, initrd, sizeof(initrd), "console=ttyS0 quiet", 0xe0000 };
	struct boot_result br;
	const char *err = NULL;
	uint64_t iaddr = (RAM_64M - sizeof(initrd)) & ~(INITRD_ALIGN - 1);

	make_bz(b);
	memset(initrd, 0x42, sizeof(initrd));
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(br.mode, BOOT_ENTRY_LINUX64);
	CHECK_EQ(br.entry, HIMEM_START + 0x200);
	CHECK_EQ(br.boot_param, ZERO_PAGE_START);
	CHECK_EQ(br.kernel_end, HIMEM_START + 0x10000);
	CHECK(memcmp(ram + HIMEM_START, b + BZ_SETUP, BZ_LEN - BZ_SETUP) == 0);
	CHECK(strcmp((char *)ram + CMDLINE_START, "console=ttyS0 quiet") == 0);
	/* Setup header copied, loader fields set. */
	CHECK_EQ(r16(zp + 0x1fe), 0xaa55);
	CHECK(memcmp(zp + 0x202, "HdrS", 4) == 0);
	CHECK_EQ(r16(zp + 0x206), 0x020f);
	CHECK_EQ(r32(zp + 0x238), 2047);
	CHECK_EQ(zp[0x210], 0xff);
	CHECK(zp[0x211] & 0x01);
	CHECK_EQ(r32(zp + 0x228), CMDLINE_START);
	CHECK_EQ(r32(zp + 0xc8), 0);
	CHECK_EQ(r32(zp + 0x218), iaddr);
	CHECK_EQ(r32(zp + 0x21c), sizeof(initrd));
	CHECK_EQ(r32(zp + 0xc0), 0);
	CHECK_EQ(r32(zp + 0xc4), 0);
	CHECK_EQ(r64(zp + 0x70), 0xe0000);
	CHECK(memcmp(ram + iaddr, initrd, sizeof(initrd)) == 0);
	CHECK_EQ(zp[0x1e8], 3);
	check_e820_64m(zp + 0x2d0, 20);
	CHECK_EQ(zp[0x100], 0);  /* rest of the page cleared */
	free(ram);
}

static void test_bz_load_limits(void)
{
	static uint8_t b[BZ_LEN], initrd[4096], longline[CMDLINE_MAX_SIZE + 10];
	struct guest_mem m;
	uint8_t *ram = new_ram(&m, RAM_64M), *zp = ram + ZERO_PAGE_START;
	struct boot_params_in in = { b, BZ_LEN, initrd, sizeof(initrd), NULL, 0 };
	struct boot_result br;
	const char *err = NULL;

	/* initrd_addr_max below the top of RAM. */
	make_bz(b); w32(b + 0x22c, 0x2fffff);
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(r32(zp + 0x218), 0x300000 - 4096);
	CHECK_EQ(ram[CMDLINE_START], 0);  /* no cmdline: empty string */
	CHECK_EQ(r64(zp + 0x70), 0);

	/* Too big: 63 MiB above a kernel that ends at 1 MiB + 64 KiB. */
	make_bz(b);
	in.initrd_len = MiB(63);
	CHECK_EQ(boot_load(&m, &in, &br, &err), -ENOMEM);
	CHECK(err && strstr(err, "initrd (63 MiB) does not fit") && strstr(err, "--mem"));
	/* Just fits. */
	in.initrd_len = RAM_64M - HIMEM_START - 0x10000;
	in.initrd = malloc(in.initrd_len);
	CHECK(in.initrd != NULL);
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(r32(zp + 0x218), HIMEM_START + 0x10000);
	free((void *)in.initrd);
	in.initrd = NULL;

	/* The kernel's own cmdline_size, then mvm's limit. */
	w32(b + 0x238, 16);
	in.cmdline = "0123456789abcdef";
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	in.cmdline = "0123456789abcdefg";
	CHECK_EQ(boot_load(&m, &in, &br, &err), -E2BIG);
	CHECK(err && strstr(err, "at most 16"));
	w32(b + 0x238, 0xffffffff);
	memset(longline, 'a', sizeof(longline) - 1);
	in.cmdline = (char *)longline;
	CHECK_EQ(boot_load(&m, &in, &br, &err), -E2BIG);
	CHECK(err && strstr(err, "mvm accepts"));
	longline[CMDLINE_MAX_SIZE - 1] = 0;  /* 0xffff chars + NUL: fits */
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);

	/* init_size larger than RAM. */
	in.cmdline = NULL;
	make_bz(b); w32(b + 0x260, (uint32_t)MiB(100));
	CHECK_EQ(boot_load(&m, &in, &br, &err), -ENOMEM);
	CHECK(err && strstr(err, "100 MiB") && strstr(err, "--mem"));

	/* A header length byte of 0xff must not spill past the header. */
	make_bz(b); b[0x201] = 0xff;
	memset(b + 0x290, 0x77, 0x301 - 0x290);
	w64(b + 0x250, 0x1234);  /* setup_data from the image is dropped */
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(zp[0x290], 0);
	CHECK_EQ(zp[0x2cf], 0);
	CHECK_EQ(r64(zp + 0x250), 0);
	check_e820_64m(zp + 0x2d0, 20);

	/* Neither format. */
	memset(b, 0x90, BZ_LEN);
	CHECK_EQ(boot_load(&m, &in, &br, &err), -EINVAL);
	CHECK(err && strstr(err, "neither a bzImage nor an ELF"));
	free(ram);
}

static void test_pvh_load(void)
{
	static uint8_t e[ELF_LEN], initrd[8192];
	struct guest_mem m;
	uint8_t *ram = new_ram(&m, RAM_64M), *si = ram + PVH_INFO_START;
	uint8_t *ml = ram + PVH_MODLIST_START;
	struct boot_params_in in = { e, ELF_LEN, initrd, sizeof(initrd), "pvh", 0xe0000 };
	struct boot_result br;
	const char *err = NULL;
	unsigned i;

	make_elf(e, 1);
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(br.mode, BOOT_ENTRY_PVH32);
	CHECK_EQ(br.entry, 0x100010);
	CHECK_EQ(br.boot_param, PVH_INFO_START);
	CHECK_EQ(br.kernel_end, 0x102000);
	CHECK(memcmp(ram + 0x100000, e + 0x1000, 0x100) == 0);
	for (i = 0x100; i < 0x2000; i++)
		if (ram[0x100000 + i] != 0)
			break;
	CHECK_EQ(i, 0x2000);  /* bss zeroed */
	CHECK_EQ(r32(si), 0x336ec578);
	CHECK_EQ(r32(si + 4), 1);
	CHECK_EQ(r32(si + 8), 0);
	CHECK_EQ(r32(si + 12), 1);
	CHECK_EQ(r64(si + 16), PVH_MODLIST_START);
	CHECK_EQ(r64(si + 24), CMDLINE_START);
	CHECK_EQ(r64(si + 32), 0xe0000);
	CHECK_EQ(r64(si + 40), PVH_MEMMAP_START);
	CHECK_EQ(r32(si + 48), 3);
	check_e820_64m(ram + PVH_MEMMAP_START, 24);
	CHECK_EQ(r64(ml), RAM_64M - sizeof(initrd));
	CHECK_EQ(r64(ml + 8), sizeof(initrd));
	CHECK(PVH_MODLIST_START + 32 <= ZERO_PAGE_START);
	CHECK(strcmp((char *)ram + CMDLINE_START, "pvh") == 0);

	/* No initrd: no modules. */
	in.initrd = NULL;
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(r32(si + 12), 0);
	CHECK_EQ(r64(si + 16), 0);
	free(ram);
}

static void test_elf64_load(void)
{
	static uint8_t e[ELF_LEN];
	struct guest_mem m;
	uint8_t *ram = new_ram(&m, RAM_64M), *zp = ram + ZERO_PAGE_START;
	struct boot_params_in in = { e, ELF_LEN, NULL, 0, "elf", 0 };
	struct boot_result br;
	const char *err = NULL;

	make_elf(e, 0);
	CHECK_EQ(boot_load(&m, &in, &br, &err), 0);
	CHECK_EQ(br.mode, BOOT_ENTRY_ELF64);
	CHECK_EQ(br.entry, 0x100040);
	CHECK_EQ(br.boot_param, ZERO_PAGE_START);
	CHECK_EQ(r16(zp + 0x1fe), 0xaa55);
	CHECK(memcmp(zp + 0x202, "HdrS", 4) == 0);
	CHECK_EQ(r32(zp + 0x228), CMDLINE_START);
	CHECK_EQ(zp[0x210], 0xff);
	CHECK_EQ(zp[0x1e8], 3);
	check_e820_64m(zp + 0x2d0, 20);

	make_elf(e, 0); w64(e + 64 + 24, 0x80000);
	CHECK_EQ(boot_load(&m, &in, &br, &err), -EINVAL);
	CHECK(err && strstr(err, "below 1 MiB"));
	make_elf(e, 0); w64(e + 64 + 24, RAM_64M - 0x1000); w64(e + 24, RAM_64M - 0x1000);
	CHECK_EQ(boot_load(&m, &in, &br, &err), -ENOMEM);
	CHECK(err && strstr(err, "outside guest RAM"));
	make_elf(e, 0); w64(e + 24, MiB(200));
	CHECK_EQ(boot_load(&m, &in, &br, &err), -EINVAL);
	CHECK(err && strstr(err, "entry point"));
	free(ram);
}

static void test_e820(void)
{
	struct e820_entry_x e[E820_MAX_X];
	struct guest_mem m;

	/* boot_e820 only reads sizes: no host memory behind these. */
	guest_mem_init_buffer(&m, NULL, MiB(64));
	CHECK_EQ(boot_e820(&m, e, E820_MAX_X), 3);
	CHECK_EQ(e[2].addr, HIMEM_START);
	CHECK_EQ(e[2].size, MiB(63));

	guest_mem_init_buffer(&m, NULL, GiB(3));
	CHECK_EQ(boot_e820(&m, e, E820_MAX_X), 3);
	CHECK_EQ(e[2].size, GiB(3) - HIMEM_START);

	guest_mem_init_buffer(&m, NULL, GiB(5));
	CHECK_EQ(boot_e820(&m, e, E820_MAX_X), 4);
	CHECK_EQ(e[0].addr, 0);
	CHECK_EQ(e[0].size, EBDA_START);
	CHECK_EQ(e[1].type, E820_TYPE_RESERVED);
	CHECK_EQ(e[2].addr, HIMEM_START);
	CHECK_EQ(e[2].size, MMIO_HOLE_START - HIMEM_START);
	CHECK_EQ(e[2].type, E820_TYPE_RAM);
	CHECK_EQ(e[3].addr, HIGH_RAM_START);
	CHECK_EQ(e[3].size, GiB(2));
	CHECK_EQ(e[3].type, E820_TYPE_RAM);
	/* All RAM is reported except the legacy hole [EBDA, 1 MiB). */
	CHECK_EQ(e[0].size + e[2].size + e[3].size, GiB(5) - (HIMEM_START - EBDA_START));

	/* Truncated to what the caller has room for. */
	CHECK_EQ(boot_e820(&m, e, 2), 2);
}

static void test_cmdline_has(void)
{
	CHECK(boot_cmdline_has("acpi=off", "acpi=off"));
	CHECK(boot_cmdline_has("console=ttyS0 acpi=off root=/dev/vda", "acpi=off"));
	CHECK(!boot_cmdline_has("console=ttyS0 acpi=offx", "acpi=off"));
	CHECK(!boot_cmdline_has("noacpi=off", "acpi=off"));
	CHECK(!boot_cmdline_has("acpi=force", "acpi=off"));
	CHECK(boot_cmdline_has("a tsc_early_khz=100", "tsc_early_khz"));
	CHECK(boot_cmdline_has("tsc_early_khz", "tsc_early_khz"));
	CHECK(!boot_cmdline_has("xtsc_early_khz=1 tsc_early_khzz=2", "tsc_early_khz"));
	CHECK(!boot_cmdline_has("tsc_early_khz=1", "tsc_early_khz=2"));
	CHECK(!boot_cmdline_has(NULL, "acpi=off"));
	CHECK(!boot_cmdline_has("", "acpi=off"));
}

int main(void)
{
	test_cmdline_has();
	test_bz_parse();
	test_elf_parse_good();
	test_elf_parse_bad();
	test_bz_load();
	test_bz_load_limits();
	test_pvh_load();
	test_elf64_load();
	test_e820();
	return check_result("test-boot");
}
