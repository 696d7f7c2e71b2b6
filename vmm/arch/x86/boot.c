/* SPDX-License-Identifier: MIT */
/*
 * Kernel image parsing (bzImage, ELF vmlinux with an optional PVH note) and
 * loading into guest RAM.  The image is untrusted input: every offset and
 * length read from it is checked against the buffer before use, and every
 * guest range goes through guest_mem_ptr().  References: Linux
 * Documentation/arch/x86/boot.rst and zero-page.rst, the ELF-64 spec, and
 * Xen's hvm/start_info.h for PVH.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "vmm/arch/x86/boot.h"
#include "vmm/arch/x86/layout.h"

/* Setup header offsets, relative to the start of the image file (and of the
 * zero page, which embeds the same header at the same offset). */
#define HDR_SETUP_SECTS      0x1f1
#define HDR_SYSSIZE          0x1f4  /* payload size in 16-byte units */
#define HDR_BOOT_FLAG        0x1fe
#define HDR_JUMP             0x200
#define HDR_MAGIC            0x202
#define HDR_VERSION          0x206
#define HDR_TYPE_OF_LOADER   0x210
#define HDR_LOADFLAGS        0x211
#define HDR_RAMDISK_IMAGE    0x218
#define HDR_RAMDISK_SIZE     0x21c
#define HDR_HEAP_END_PTR     0x224
#define HDR_CMD_LINE_PTR     0x228
#define HDR_INITRD_ADDR_MAX  0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE      0x234
#define HDR_XLOADFLAGS       0x236
#define HDR_CMDLINE_SIZE     0x238
#define HDR_SETUP_DATA       0x250
#define HDR_PREF_ADDRESS     0x258
#define HDR_INIT_SIZE        0x260
#define HDR_END_MAX          0x290  /* edd_mbr_sig_buffer follows the header */

#define BOOT_FLAG_MAGIC      0xaa55
#define HDRS_MAGIC           0x53726448u  /* "HdrS" */
#define LOADED_HIGH          0x01
#define CAN_USE_HEAP         0x80
#define XLF_KERNEL_64        0x01
#define BZ_MIN_PROTOCOL      0x020c
#define BZ_MIN_SIZE          1024
#define BZ_ENTRY64_OFFSET    0x200  /* 64-bit entry: startup_64 */
#define LOADER_UNDEFINED     0xff

/* boot_params fields outside the setup header (zero-page.rst). */
#define ZP_SIZE              0x1000
#define ZP_ACPI_RSDP_ADDR    0x070
#define ZP_EXT_RAMDISK_IMAGE 0x0c0
#define ZP_EXT_RAMDISK_SIZE  0x0c4
#define ZP_EXT_CMD_LINE_PTR  0x0c8
#define ZP_E820_ENTRIES      0x1e8
#define ZP_E820_TABLE        0x2d0
#define ZP_E820_ENTRY_SIZE   20
#define ZP_E820_MAX          128

/* ELF-64. */
#define EHDR_SIZE            64
#define PHDR_SIZE            56
#define ELFCLASS64           2
#define ELFDATA2LSB          1
#define ET_EXEC              2
#define EM_X86_64            62
#define PT_LOAD              1
#define PT_NOTE              4
#define PN_XNUM              0xffff
#define NOTE_HDR_SIZE        12
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/* PVH (Xen hvm_start_info, version 1). */
#define PVH_MAGIC            0x336ec578u
#define PVH_INFO_SIZE        56
#define PVH_MODLIST_ENTRY_SIZE 32

_Static_assert(PVH_INFO_START + PVH_INFO_SIZE <= PVH_MEMMAP_START, "start_info overlaps memmap");
_Static_assert(PVH_MODLIST_START + PVH_MODLIST_ENTRY_SIZE <= ZERO_PAGE_START, "modlist overlaps zero page");
_Static_assert(E820_MAX_X <= PVH_MEMMAP_MAX, "PVH memmap too small for the e820 map");
_Static_assert(0x202 + 0xff + 1 > HDR_END_MAX, "header copy must be clamped");

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) | (uint32_t)rd16(p + 2) << 16; }
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32; }
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }
static void wr64(uint8_t *p, uint64_t v) { wr32(p, (uint32_t)v); wr32(p + 4, (uint32_t)(v >> 32)); }

static int fail(const char **ret_err, const char *msg, int r)
{
	if (ret_err)
		*ret_err = msg;
	return r;
}

/* Messages that carry numbers are formatted into a per-thread buffer: the
 * caller sees a stable string until its next boot_load() call. */
__attribute__((format(printf, 3, 4)))
static int failf(const char **ret_err, int r, const char *fmt, ...)
{
	static __thread char buf[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	return fail(ret_err, buf, r);
}

static uint64_t mib_up(uint64_t n) { return (n + MiB(1) - 1) >> 20; }

/* ---- bzImage --------------------------------------------------------- */

static int bz_check_magic(const uint8_t *p, size_t len, const char **ret_err)
{
	if (len < BZ_MIN_SIZE)
		return fail(ret_err, "bzImage: file is shorter than 1024 bytes "
		            "(a bzImage starts with a boot sector and a setup header)", -EINVAL);
	if (rd16(p + HDR_BOOT_FLAG) != BOOT_FLAG_MAGIC)
		return fail(ret_err, "bzImage: no 0xAA55 boot flag at offset 0x1fe", -EINVAL);
	if (rd32(p + HDR_MAGIC) != HDRS_MAGIC)
		return fail(ret_err, "bzImage: no \"HdrS\" magic at offset 0x202 "
		            "(kernel predates boot protocol 2.00)", -EINVAL);
	return 0;
}

static int bz_check_caps(const uint8_t *p, const char **ret_err)
{
	if (rd16(p + HDR_VERSION) < BZ_MIN_PROTOCOL)
		return fail(ret_err, "bzImage: boot protocol is too old "
		            "(need >= 2.12 with XLF_KERNEL_64)", -EINVAL);
	if (!(rd16(p + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return fail(ret_err, "bzImage: no 64-bit entry point (xloadflags lacks "
		            "XLF_KERNEL_64; build the kernel for x86_64)", -EINVAL);
	if (!(p[HDR_LOADFLAGS] & LOADED_HIGH))
		return fail(ret_err, "bzImage: loadflags lacks LOADED_HIGH (a zImage that "
		            "loads at 0x10000 is not supported; need a bzImage)", -EINVAL);
	return 0;
}

int bzimage_parse(const void *img, size_t len, struct bzimage_info *ret, const char **ret_err)
{
	const uint8_t *p = img;
	struct bzimage_info bi = { 0 };
	uint64_t syssize;
	unsigned sects;
	int r;

	r = bz_check_magic(p, len, ret_err);
	if (r < 0)
		return r;
	r = bz_check_caps(p, ret_err);
	if (r < 0)
		return r;
	sects = p[HDR_SETUP_SECTS] ? p[HDR_SETUP_SECTS] : 4;  /* 0 means 4 */
	bi.setup_size = (sects + 1) * 512;
	if (bi.setup_size > len)
		return fail(ret_err, "bzImage: setup_sects says the setup code runs past the "
		            "end of the file (truncated image?)", -EINVAL);
	if (bi.setup_size == len)
		return fail(ret_err, "bzImage: no protected-mode kernel after the setup code "
		            "(truncated image?)", -EINVAL);
	bi.protocol = rd16(p + HDR_VERSION);
	bi.payload_offset = bi.setup_size;
	bi.payload_size = len - bi.setup_size;
	/* The kernel build pads the payload to syssize paragraphs, so a file
	 * shorter than that lost its tail; loading it would boot garbage.
	 * 0 means the loader that made the image did not say. */
	syssize = (uint64_t)rd32(p + HDR_SYSSIZE) * 16;
	if (syssize > bi.payload_size)
		return failf(ret_err, -EINVAL, "bzImage: truncated: the header says the kernel "
		             "has %llu bytes after the setup code but the file has %llu",
		             (unsigned long long)syssize, (unsigned long long)bi.payload_size);
	if (syssize)
		bi.payload_size = syssize;
	bi.initrd_addr_max = rd32(p + HDR_INITRD_ADDR_MAX);
	bi.cmdline_size = rd32(p + HDR_CMDLINE_SIZE);
	bi.pref_address = rd64(p + HDR_PREF_ADDRESS);
	bi.init_size = rd32(p + HDR_INIT_SIZE);
	bi.kernel_alignment = rd32(p + HDR_KERNEL_ALIGNMENT);
	bi.relocatable = p[HDR_RELOCATABLE] != 0;
	*ret = bi;
	return 0;
}

/* ---- ELF --------------------------------------------------------------- */

static int elf_check_ehdr(const uint8_t *p, size_t len, const char **ret_err)
{
	if (len < EHDR_SIZE || memcmp(p, "\177ELF", 4) != 0)
		return fail(ret_err, "ELF: no ELF header (file too short or bad magic)", -EINVAL);
	if (p[4] != ELFCLASS64)
		return fail(ret_err, "ELF: not a 64-bit ELF file (need ELFCLASS64)", -EINVAL);
	if (p[5] != ELFDATA2LSB)
		return fail(ret_err, "ELF: not little-endian (need ELFDATA2LSB)", -EINVAL);
	if (rd16(p + 18) != EM_X86_64)
		return fail(ret_err, "ELF: machine is not x86-64 (need EM_X86_64)", -EINVAL);
	if (rd16(p + 16) != ET_EXEC)
		return fail(ret_err, "ELF: not an executable (need ET_EXEC, e.g. vmlinux)", -EINVAL);
	return 0;
}

/* Reads the PVH entry from one note's descriptor. */
static int elf_pvh_desc(const uint8_t *d, uint64_t descsz, struct elf_info *ei,
                        const char **ret_err)
{
	uint64_t v;

	if (descsz != 4 && descsz != 8)
		return fail(ret_err, "ELF: Xen PHYS32_ENTRY note has a descriptor of the wrong "
		            "size (need 4 or 8 bytes)", -EINVAL);
	v = descsz == 4 ? rd32(d) : rd64(d);
	if (v > UINT32_MAX)
		return fail(ret_err, "ELF: Xen PHYS32_ENTRY address is above 4 GiB "
		            "(a 32-bit entry point is required)", -EINVAL);
	ei->has_pvh = 1;
	ei->pvh_entry = (uint32_t)v;
	return 0;
}

/* Walks the notes in [n, n+size); align is 4 or 8 (from p_align). */
static int elf_scan_notes(const uint8_t *n, uint64_t size, uint64_t align,
                          struct elf_info *ei, const char **ret_err)
{
	uint64_t off = 0;

	while (size - off >= NOTE_HDR_SIZE) {
		uint64_t namesz = rd32(n + off), descsz = rd32(n + off + 4);
		uint32_t type = rd32(n + off + 8);
		uint64_t name_off = off + NOTE_HDR_SIZE;
		/* 32-bit sizes in 64-bit arithmetic: these sums cannot wrap. */
		uint64_t desc_off = name_off + ((namesz + align - 1) & ~(align - 1));
		uint64_t next = desc_off + ((descsz + align - 1) & ~(align - 1));

		if (desc_off > size || descsz > size - desc_off)
			return fail(ret_err, "ELF: a note's name or descriptor runs past the end "
			            "of its PT_NOTE segment", -EINVAL);
		if (namesz == 4 && memcmp(n + name_off, "Xen", 4) == 0 &&
		    type == XEN_ELFNOTE_PHYS32_ENTRY) {
			int r = elf_pvh_desc(n + desc_off, descsz, ei, ret_err);
			if (r < 0)
				return r;
		}
		if (next >= size)
			break;
		off = next;
	}
	return 0;
}

static int elf_add_load(const uint8_t *ph, size_t len, struct elf_info *ei, const char **ret_err)
{
	struct elf_segment s = {
		.offset = rd64(ph + 8), .paddr = rd64(ph + 24),
		.filesz = rd64(ph + 32), .memsz = rd64(ph + 40),
	};

	if (s.filesz > s.memsz)
		return fail(ret_err, "ELF: PT_LOAD segment has p_filesz > p_memsz", -EINVAL);
	if (s.offset > len || s.filesz > len - s.offset)
		return fail(ret_err, "ELF: PT_LOAD segment data lies outside the file "
		            "(truncated image?)", -EINVAL);
	if (s.paddr + s.memsz < s.paddr)
		return fail(ret_err, "ELF: PT_LOAD segment's p_paddr + p_memsz overflows", -EINVAL);
	if (s.memsz == 0)
		return 0;
	if (ei->nsegs == ELF_MAX_SEGMENTS)
		return fail(ret_err, "ELF: more than 16 PT_LOAD segments", -EINVAL);
	ei->segs[ei->nsegs++] = s;
	return 0;
}

static int elf_add_note(const uint8_t *p, size_t len, const uint8_t *ph,
                        struct elf_info *ei, const char **ret_err)
{
	uint64_t off = rd64(ph + 8), filesz = rd64(ph + 32), align = rd64(ph + 48);

	if (off > len || filesz > len - off)
		return fail(ret_err, "ELF: PT_NOTE segment lies outside the file", -EINVAL);
	return elf_scan_notes(p + off, filesz, align == 8 ? 8 : 4, ei, ret_err);
}

int elf_parse(const void *img, size_t len, struct elf_info *ret, const char **ret_err)
{
	const uint8_t *p = img;
	struct elf_info ei = { 0 };
	uint64_t phoff;
	unsigned phentsize, phnum, i;
	int r;

	r = elf_check_ehdr(p, len, ret_err);
	if (r < 0)
		return r;
	phoff = rd64(p + 32);
	phentsize = rd16(p + 54);
	phnum = rd16(p + 56);
	if (phentsize < PHDR_SIZE || phnum == 0 || phnum == PN_XNUM)
		return fail(ret_err, "ELF: bad program header table (e_phentsize < 56, "
		            "or e_phnum 0 or PN_XNUM)", -EINVAL);
	/* phentsize * phnum < 2^32: no overflow in 64 bits. */
	if (phoff > len || (uint64_t)phentsize * phnum > len - phoff)
		return fail(ret_err, "ELF: program header table lies outside the file", -EINVAL);
	for (i = 0; i < phnum; i++) {
		const uint8_t *ph = p + phoff + (uint64_t)i * phentsize;
		uint32_t type = rd32(ph);

		if (type == PT_LOAD)
			r = elf_add_load(ph, len, &ei, ret_err);
		else if (type == PT_NOTE)
			r = elf_add_note(p, len, ph, &ei, ret_err);
		if (r < 0)
			return r;
	}
	if (ei.nsegs == 0)
		return fail(ret_err, "ELF: no loadable (PT_LOAD) segments", -EINVAL);
	ei.entry = rd64(p + 24);
	*ret = ei;
	return 0;
}

/* ---- memory map -------------------------------------------------------- */

static unsigned e820_add(struct e820_entry_x *out, unsigned n, unsigned max,
                         uint64_t addr, uint64_t size, uint32_t type)
{
	if (n < max && size)
		out[n++] = (struct e820_entry_x){ addr, size, type };
	return n;
}

unsigned boot_e820(const struct guest_mem *m, struct e820_entry_x *out, unsigned max)
{
	unsigned n = 0;

	n = e820_add(out, n, max, 0, EBDA_START, E820_TYPE_RAM);
	/* EBDA (the MP table lives here), VGA hole, BIOS area with ACPI tables. */
	n = e820_add(out, n, max, EBDA_START, BIOS_AREA_END - EBDA_START, E820_TYPE_RESERVED);
	if (m->low_size > HIMEM_START)
		n = e820_add(out, n, max, HIMEM_START, m->low_size - HIMEM_START, E820_TYPE_RAM);
	if (m->size > m->low_size)
		n = e820_add(out, n, max, HIGH_RAM_START, m->size - m->low_size, E820_TYPE_RAM);
	return n;
}

/* ---- common loading steps ---------------------------------------------- */

/* Writes the command line at CMDLINE_START; max_len excludes the NUL. */
static int load_cmdline(const struct guest_mem *m, const char *cmdline, uint64_t max_len,
                        uint64_t *ret_len, const char **ret_err)
{
	size_t len = cmdline ? strlen(cmdline) : 0;

	if (len + 1 > CMDLINE_MAX_SIZE)
		return failf(ret_err, -E2BIG, "kernel command line is %zu bytes; mvm accepts at "
		             "most %llu", len, CMDLINE_MAX_SIZE - 1);
	if (len > max_len)
		return failf(ret_err, -E2BIG, "kernel command line is %zu bytes; this kernel "
		             "accepts at most %llu (cmdline_size)", len,
		             (unsigned long long)max_len);
	if (guest_mem_write(m, CMDLINE_START, cmdline ? cmdline : "", len + 1) < 0)
		return fail(ret_err, "guest RAM too small for the command line", -ENOMEM);
	*ret_len = len;
	return 0;
}

/* Places the initrd as high as possible below `limit` (exclusive) and above
 * kernel_end; *ret_addr is 0 when there is no initrd. */
static int load_initrd(const struct guest_mem *m, const struct boot_params_in *in,
                       uint64_t limit, uint64_t kernel_end, uint64_t *ret_addr,
                       const char **ret_err)
{
	uint64_t addr;

	*ret_addr = 0;
	if (!in->initrd || in->initrd_len == 0)
		return 0;
	if (limit > guest_mem_low_end(m))
		limit = guest_mem_low_end(m);
	if (in->initrd_len > limit || ((limit - in->initrd_len) & ~(INITRD_ALIGN - 1)) < kernel_end)
		return failf(ret_err, -ENOMEM, "initrd (%llu MiB) does not fit in guest memory "
		             "below 0x%llx above the kernel (ends 0x%llx); give the VM more --mem",
		             (unsigned long long)mib_up(in->initrd_len), (unsigned long long)limit,
		             (unsigned long long)kernel_end);
	addr = (limit - in->initrd_len) & ~(INITRD_ALIGN - 1);
	if (guest_mem_write(m, addr, in->initrd, in->initrd_len) < 0)
		return fail(ret_err, "initrd: guest RAM write failed", -EFAULT);
	*ret_addr = addr;
	return 0;
}

static void zp_fill(uint8_t *zp, const struct guest_mem *m, const struct boot_params_in *in,
                    uint64_t initrd_addr)
{
	struct e820_entry_x e[E820_MAX_X];
	unsigned n = boot_e820(m, e, E820_MAX_X), i;
	uint64_t isize = initrd_addr ? in->initrd_len : 0;

	zp[HDR_TYPE_OF_LOADER] = LOADER_UNDEFINED;
	/* The heap matters only to the 16-bit setup code, which we skip, but
	 * boot.rst asks loaders to set it; the end of the setup segment is safe. */
	zp[HDR_LOADFLAGS] |= LOADED_HIGH | CAN_USE_HEAP;
	wr16(zp + HDR_HEAP_END_PTR, 0xfe00);
	wr32(zp + HDR_CMD_LINE_PTR, (uint32_t)CMDLINE_START);
	wr32(zp + ZP_EXT_CMD_LINE_PTR, (uint32_t)(CMDLINE_START >> 32));
	wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)initrd_addr);
	wr32(zp + ZP_EXT_RAMDISK_IMAGE, (uint32_t)(initrd_addr >> 32));
	wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)isize);
	wr32(zp + ZP_EXT_RAMDISK_SIZE, (uint32_t)(isize >> 32));
	wr64(zp + ZP_ACPI_RSDP_ADDR, in->rsdp_addr);
	zp[ZP_E820_ENTRIES] = (uint8_t)n;
	for (i = 0; i < n; i++) {
		uint8_t *d = zp + ZP_E820_TABLE + i * ZP_E820_ENTRY_SIZE;
		wr64(d, e[i].addr);
		wr64(d + 8, e[i].size);
		wr32(d + 16, e[i].type);
	}
}

static uint8_t *zp_get(const struct guest_mem *m, const char **ret_err)
{
	uint8_t *zp = guest_mem_ptr(m, ZERO_PAGE_START, ZP_SIZE);

	if (zp)
		memset(zp, 0, ZP_SIZE);
	else
		fail(ret_err, "guest RAM too small for the zero page", -ENOMEM);
	return zp;
}

/* ---- bzImage loading ---------------------------------------------------- */

static int bz_place_kernel(const struct guest_mem *m, const uint8_t *p,
                           const struct bzimage_info *bi, uint64_t *ret_end,
                           const char **ret_err)
{
	uint64_t need = bi->payload_size > bi->init_size ? bi->payload_size : bi->init_size;
	uint64_t room = guest_mem_low_end(m) - HIMEM_START;

	/* Always HIMEM_START, even for a relocatable kernel: boot.rst lets the
	 * loader pick any aligned address, 1 MiB is what every loader uses, and
	 * it keeps the layout fixed so the initrd always goes above it. */
	if (need > room)
		return failf(ret_err, -ENOMEM, "bzImage: kernel needs %llu MiB from 1 MiB "
		             "(payload %llu KiB, init_size %u KiB) but only %llu MiB of low RAM "
		             "is there; give the VM more --mem",
		             (unsigned long long)mib_up(need), (unsigned long long)((bi->payload_size + 1023) >> 10),
		             bi->init_size >> 10, (unsigned long long)(room >> 20));
	if (guest_mem_write(m, HIMEM_START, p + bi->payload_offset, bi->payload_size) < 0)
		return fail(ret_err, "bzImage: guest RAM write failed", -EFAULT);
	*ret_end = (HIMEM_START + need + INITRD_ALIGN - 1) & ~(INITRD_ALIGN - 1);
	return 0;
}

static int load_bzimage(const struct guest_mem *m, const struct boot_params_in *in,
                        struct boot_result *ret, const char **ret_err)
{
	const uint8_t *p = in->kernel;
	struct bzimage_info bi;
	uint64_t kend = 0, initrd_addr = 0, clen = 0, hdr_end;
	uint8_t *zp;
	int r;

	r = bzimage_parse(in->kernel, in->kernel_len, &bi, ret_err);
	if (r < 0)
		return r;
	r = bz_place_kernel(m, p, &bi, &kend, ret_err);
	if (r < 0)
		return r;
	r = load_cmdline(m, in->cmdline, bi.cmdline_size, &clen, ret_err);
	if (r < 0)
		return r;
	r = load_initrd(m, in, (uint64_t)bi.initrd_addr_max + 1, kend, &initrd_addr, ret_err);
	if (r < 0)
		return r;
	zp = zp_get(m, ret_err);
	if (!zp)
		return -ENOMEM;
	/* The byte at 0x201 (the jump's displacement) is the header length past
	 * 0x202; clamp to the end of the header in struct boot_params. */
	hdr_end = HDR_MAGIC + p[HDR_JUMP + 1];
	if (hdr_end > HDR_END_MAX)
		hdr_end = HDR_END_MAX;
	memcpy(zp + HDR_SETUP_SECTS, p + HDR_SETUP_SECTS, hdr_end - HDR_SETUP_SECTS);
	/* A setup_data chain is the loader's to build, and we build none. */
	if (hdr_end >= HDR_SETUP_DATA + 8)
		wr64(zp + HDR_SETUP_DATA, 0);
	zp_fill(zp, m, in, initrd_addr);
	*ret = (struct boot_result){ BOOT_ENTRY_LINUX64, HIMEM_START + BZ_ENTRY64_OFFSET,
	                             ZERO_PAGE_START, kend };
	return 0;
}

/* ---- ELF loading -------------------------------------------------------- */

static int elf_load_segments(const struct guest_mem *m, const uint8_t *p,
                             const struct elf_info *ei, uint64_t *ret_end,
                             const char **ret_err)
{
	uint64_t end = 0;
	unsigned i;

	for (i = 0; i < ei->nsegs; i++) {
		const struct elf_segment *s = &ei->segs[i];
		uint8_t *dst = guest_mem_ptr(m, s->paddr, s->memsz);

		if (s->paddr < HIMEM_START)
			return failf(ret_err, -EINVAL, "ELF: segment at 0x%llx is below 1 MiB, "
			             "where mvm keeps its boot tables", (unsigned long long)s->paddr);
		if (!dst)
			return failf(ret_err, -ENOMEM, "ELF: segment at 0x%llx (%llu KiB) is outside "
			             "guest RAM; give the VM more --mem", (unsigned long long)s->paddr,
			             (unsigned long long)(s->memsz >> 10));
		memcpy(dst, p + s->offset, s->filesz);
		memset(dst + s->filesz, 0, s->memsz - s->filesz);
		if (s->paddr + s->memsz > end)
			end = s->paddr + s->memsz;
	}
	*ret_end = (end + INITRD_ALIGN - 1) & ~(INITRD_ALIGN - 1);
	return 0;
}

static int pvh_write(const struct guest_mem *m, const struct boot_params_in *in,
                     uint64_t initrd_addr, const char **ret_err)
{
	struct e820_entry_x e[E820_MAX_X];
	unsigned n = boot_e820(m, e, E820_MAX_X), i;
	uint8_t *si = guest_mem_ptr(m, PVH_INFO_START, ZERO_PAGE_START - PVH_INFO_START);

	if (!si)
		return fail(ret_err, "guest RAM too small for the PVH start info", -ENOMEM);
	memset(si, 0, ZERO_PAGE_START - PVH_INFO_START);
	wr32(si, PVH_MAGIC);
	wr32(si + 4, 1);
	wr64(si + 24, CMDLINE_START);
	wr64(si + 32, in->rsdp_addr);
	wr64(si + 40, PVH_MEMMAP_START);
	wr32(si + 48, n);
	for (i = 0; i < n; i++) {
		uint8_t *d = si + (PVH_MEMMAP_START - PVH_INFO_START) + i * PVH_MEMMAP_ENTRY_SIZE;
		wr64(d, e[i].addr);
		wr64(d + 8, e[i].size);
		wr32(d + 16, e[i].type);
	}
	if (initrd_addr) {
		uint8_t *d = si + (PVH_MODLIST_START - PVH_INFO_START);
		wr32(si + 12, 1);
		wr64(si + 16, PVH_MODLIST_START);
		wr64(d, initrd_addr);
		wr64(d + 8, in->initrd_len);
	}
	return 0;
}

/* A vmlinux has no setup header to copy: fill in the few fields the 64-bit
 * entry reads so it recognises a valid boot_params. */
static void zp_fake_header(uint8_t *zp, uint64_t cmdline_size)
{
	wr16(zp + HDR_BOOT_FLAG, BOOT_FLAG_MAGIC);
	wr32(zp + HDR_MAGIC, HDRS_MAGIC);
	wr16(zp + HDR_VERSION, BZ_MIN_PROTOCOL);
	wr32(zp + HDR_KERNEL_ALIGNMENT, (uint32_t)MiB(2));
	wr32(zp + HDR_CMDLINE_SIZE, (uint32_t)cmdline_size);
}

static int load_elf(const struct guest_mem *m, const struct boot_params_in *in,
                    struct boot_result *ret, const char **ret_err)
{
	struct elf_info ei;
	uint64_t kend = 0, initrd_addr = 0, clen = 0, entry;
	uint8_t *zp;
	int r;

	r = elf_parse(in->kernel, in->kernel_len, &ei, ret_err);
	if (r < 0)
		return r;
	entry = ei.has_pvh ? ei.pvh_entry : ei.entry;
	if (!guest_mem_ptr(m, entry, 1))
		return failf(ret_err, -EINVAL, "ELF: entry point 0x%llx is not in guest RAM",
		             (unsigned long long)entry);
	r = elf_load_segments(m, in->kernel, &ei, &kend, ret_err);
	if (r < 0)
		return r;
	r = load_cmdline(m, in->cmdline, CMDLINE_MAX_SIZE - 1, &clen, ret_err);
	if (r < 0)
		return r;
	r = load_initrd(m, in, guest_mem_low_end(m), kend, &initrd_addr, ret_err);
	if (r < 0)
		return r;
	if (ei.has_pvh) {
		r = pvh_write(m, in, initrd_addr, ret_err);
		if (r < 0)
			return r;
		*ret = (struct boot_result){ BOOT_ENTRY_PVH32, entry, PVH_INFO_START, kend };
		return 0;
	}
	zp = zp_get(m, ret_err);
	if (!zp)
		return -ENOMEM;
	zp_fake_header(zp, CMDLINE_MAX_SIZE - 1);
	zp_fill(zp, m, in, initrd_addr);
	*ret = (struct boot_result){ BOOT_ENTRY_ELF64, entry, ZERO_PAGE_START, kend };
	return 0;
}

static int is_bzimage(const uint8_t *p, size_t len)
{
	return (len >= HDR_MAGIC + 4 && rd32(p + HDR_MAGIC) == HDRS_MAGIC) ||
	       (len >= HDR_BOOT_FLAG + 2 && rd16(p + HDR_BOOT_FLAG) == BOOT_FLAG_MAGIC);
}

int boot_load(const struct guest_mem *m, const struct boot_params_in *in,
              struct boot_result *ret, const char **ret_err)
{
	const uint8_t *p = in->kernel;

	if (m->low_size <= HIMEM_START)
		return fail(ret_err, "guest RAM must extend above 1 MiB", -EINVAL);
	/* ELF first: its magic sits at offset 0 and is unambiguous, while any
	 * file may carry 0xAA55 at 0x1fe by chance. */
	if (p && in->kernel_len >= 4 && memcmp(p, "\177ELF", 4) == 0)
		return load_elf(m, in, ret, ret_err);
	if (p && is_bzimage(p, in->kernel_len))
		return load_bzimage(m, in, ret, ret_err);
	return fail(ret_err, "kernel image is neither a bzImage nor an ELF vmlinux", -EINVAL);
}

bool boot_cmdline_has(const char *cmdline, const char *key)
{
	size_t n = strlen(key);
	bool prefix = strchr(key, '=') == NULL;
	const char *p;

	if (!cmdline || n == 0)
		return false;
	for (p = cmdline; (p = strstr(p, key)) != NULL; p += n) {
		char next = p[n];

		if (p != cmdline && p[-1] != ' ')
			continue;
		if (next == ' ' || next == '\0' || (prefix && next == '='))
			return true;
	}
	return false;
}
