/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "vmm/arch/x86/aml.h"

/* Opcodes (ACPI 6.5 section 20.3). */
#define AML_ZERO_OP        0x00
#define AML_ONE_OP         0x01
#define AML_NAME_OP        0x08
#define AML_BYTE_PREFIX    0x0a
#define AML_WORD_PREFIX    0x0b
#define AML_DWORD_PREFIX   0x0c
#define AML_STRING_PREFIX  0x0d
#define AML_QWORD_PREFIX   0x0e
#define AML_SCOPE_OP       0x10
#define AML_BUFFER_OP      0x11
#define AML_PACKAGE_OP     0x12
#define AML_EXT_OP_PREFIX  0x5b
#define AML_DEVICE_OP      0x82  /* after AML_EXT_OP_PREFIX */
#define AML_DUAL_NAME      0x2e
#define AML_MULTI_NAME     0x2f
#define AML_NULL_NAME      0x00
#define AML_ROOT_CHAR      '\\'
#define AML_PARENT_CHAR    '^'

/* Resource descriptor tags (ACPI 6.5 section 6.4). */
#define RES_IRQ_NOFLAGS    0x22  /* small item 0x04, length 2 */
#define RES_IO             0x47  /* small item 0x08, length 7 */
#define RES_END_TAG        0x79  /* small item 0x0f, length 1 */
#define RES_MEM32_FIXED    0x86  /* large item 0x06 */
#define RES_EXT_IRQ        0x89  /* large item 0x09 */

#define PKGLENGTH_MAX      0x0fffffffu

void aml_init(struct aml *a, void *buf, size_t cap)
{
	a->buf = buf;
	a->len = 0;
	a->cap = cap;
	a->err = 0;
}

void aml_fail(struct aml *a, int err)
{
	if (!a->err)
		a->err = err;
}

static int aml_reserve(struct aml *a, size_t n)
{
	if (a->err)
		return 0;
	if (n > a->cap - a->len) {
		aml_fail(a, -ENOSPC);
		return 0;
	}
	return 1;
}

void aml_bytes(struct aml *a, const void *p, size_t n)
{
	if (!aml_reserve(a, n))
		return;
	memcpy(a->buf + a->len, p, n);
	a->len += n;
}

void aml_byte(struct aml *a, uint8_t v)
{
	aml_bytes(a, &v, 1);
}

static void aml_le(struct aml *a, uint64_t v, unsigned n)
{
	uint8_t b[8];

	for (unsigned i = 0; i < n; i++)
		b[i] = (uint8_t)(v >> (8 * i));
	aml_bytes(a, b, n);
}

unsigned aml_pkglength_encode(uint32_t total, uint8_t out[4])
{
	unsigned extra;

	if (total <= 0x3f) {
		out[0] = (uint8_t)total;
		return 1;
	}
	if (total > PKGLENGTH_MAX)
		return 0;
	/* Lead byte: bits 7-6 count the following bytes, bits 3-0 hold the
	 * low nibble; each following byte holds the next 8 bits. */
	extra = total <= 0xfff ? 1 : total <= 0xfffff ? 2 : 3;
	out[0] = (uint8_t)((extra << 6) | (total & 0xf));
	for (unsigned i = 0; i < extra; i++)
		out[1 + i] = (uint8_t)(total >> (4 + 8 * i));
	return 1 + extra;
}

/* PkgLength counts its own bytes, so the size depends on the result. */
static unsigned pkglength_for_body(size_t body, uint8_t out[4])
{
	for (unsigned n = 1; n <= 4; n++) {
		if (body + n > PKGLENGTH_MAX)
			return 0;
		if (aml_pkglength_encode((uint32_t)(body + n), out) == n)
			return n;
	}
	return 0;
}

void aml_end(struct aml *a, size_t mark)
{
	uint8_t enc[4];
	size_t body;
	unsigned n;

	if (a->err)
		return;
	body = a->len - mark;
	n = pkglength_for_body(body, enc);
	if (!n) {
		aml_fail(a, -E2BIG);
		return;
	}
	if (!aml_reserve(a, n))
		return;
	memmove(a->buf + mark + n, a->buf + mark, body);
	memcpy(a->buf + mark, enc, n);
	a->len += n;
}

static int name_char_ok(char c, int first)
{
	if ((c >= 'A' && c <= 'Z') || c == '_')
		return 1;
	return !first && c >= '0' && c <= '9';
}

/* Writes one segment (up to '.' or NUL), padded with '_'; returns the
 * characters consumed or 0 if the segment is empty, too long or invalid. */
static size_t name_seg(struct aml *a, const char *s)
{
	char seg[4] = { '_', '_', '_', '_' };
	size_t n = 0;

	while (s[n] && s[n] != '.') {
		if (n == 4 || !name_char_ok(s[n], n == 0))
			return 0;
		seg[n] = s[n];
		n++;
	}
	if (n)
		aml_bytes(a, seg, 4);
	return n;
}

static unsigned count_segs(const char *s)
{
	unsigned n = *s ? 1 : 0;

	for (; *s; s++)
		n += *s == '.';
	return n;
}

void aml_name_string(struct aml *a, const char *path)
{
	unsigned nsegs;

	if (*path == AML_ROOT_CHAR)
		aml_byte(a, *path++);
	else
		while (*path == AML_PARENT_CHAR)
			aml_byte(a, *path++);
	nsegs = count_segs(path);
	if (nsegs == 0)
		aml_byte(a, AML_NULL_NAME);
	else if (nsegs == 2)
		aml_byte(a, AML_DUAL_NAME);
	else if (nsegs > 2) {
		if (nsegs > 255) {
			aml_fail(a, -EINVAL);
			return;
		}
		aml_byte(a, AML_MULTI_NAME);
		aml_byte(a, (uint8_t)nsegs);
	}
	for (unsigned i = 0; i < nsegs; i++) {
		size_t used = name_seg(a, path);

		if (!used) {
			aml_fail(a, -EINVAL);
			return;
		}
		path += used + (path[used] == '.');
	}
}

void aml_integer(struct aml *a, uint64_t v)
{
	if (v == 0) {
		aml_byte(a, AML_ZERO_OP);
	} else if (v == 1) {
		aml_byte(a, AML_ONE_OP);
	} else if (v <= 0xff) {
		aml_byte(a, AML_BYTE_PREFIX);
		aml_le(a, v, 1);
	} else if (v <= 0xffff) {
		aml_byte(a, AML_WORD_PREFIX);
		aml_le(a, v, 2);
	} else if (v <= 0xffffffffu) {
		aml_byte(a, AML_DWORD_PREFIX);
		aml_le(a, v, 4);
	} else {
		aml_byte(a, AML_QWORD_PREFIX);
		aml_le(a, v, 8);
	}
}

void aml_string(struct aml *a, const char *s)
{
	aml_byte(a, AML_STRING_PREFIX);
	aml_bytes(a, s, strlen(s) + 1);
}

static int hex_val(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Three letters of 5 bits each then four hex digits, stored big-endian. */
void aml_eisaid(struct aml *a, const char *id)
{
	uint32_t v = 0;

	if (strlen(id) != 7) {
		aml_fail(a, -EINVAL);
		return;
	}
	for (int i = 0; i < 3; i++) {
		if (id[i] < 'A' || id[i] > 'Z') {
			aml_fail(a, -EINVAL);
			return;
		}
		v = (v << 5) | (uint32_t)(id[i] - 0x40);
	}
	for (int i = 3; i < 7; i++) {
		int h = hex_val(id[i]);

		if (h < 0) {
			aml_fail(a, -EINVAL);
			return;
		}
		v = (v << 4) | (uint32_t)h;
	}
	aml_integer(a, __builtin_bswap32(v));
}

void aml_name(struct aml *a, const char *name)
{
	aml_byte(a, AML_NAME_OP);
	aml_name_string(a, name);
}

void aml_buffer(struct aml *a, const void *bytes, size_t n)
{
	size_t mark;

	aml_byte(a, AML_BUFFER_OP);
	mark = a->len;
	aml_integer(a, n);
	aml_bytes(a, bytes, n);
	aml_end(a, mark);
}

size_t aml_scope_begin(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_SCOPE_OP);
	mark = a->len;
	aml_name_string(a, name);
	return mark;
}

size_t aml_device_begin(struct aml *a, const char *name)
{
	size_t mark;

	aml_byte(a, AML_EXT_OP_PREFIX);
	aml_byte(a, AML_DEVICE_OP);
	mark = a->len;
	aml_name_string(a, name);
	return mark;
}

size_t aml_package_begin(struct aml *a, uint8_t nelems)
{
	size_t mark;

	aml_byte(a, AML_PACKAGE_OP);
	mark = a->len;
	aml_byte(a, nelems);
	return mark;
}

void aml_res_io(struct aml *a, uint16_t min, uint16_t max, uint8_t align, uint8_t len)
{
	aml_byte(a, RES_IO);
	aml_byte(a, 0x01);  /* decodes 16 address lines */
	aml_le(a, min, 2);
	aml_le(a, max, 2);
	aml_byte(a, align);
	aml_byte(a, len);
}

void aml_res_irq_noflags(struct aml *a, unsigned irq)
{
	if (irq > 15) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_byte(a, RES_IRQ_NOFLAGS);
	aml_le(a, 1u << irq, 2);
}

void aml_res_mem32_fixed(struct aml *a, int writable, uint32_t base, uint32_t size)
{
	aml_byte(a, RES_MEM32_FIXED);
	aml_le(a, 9, 2);  /* body length */
	aml_byte(a, writable ? 1 : 0);
	aml_le(a, base, 4);
	aml_le(a, size, 4);
}

void aml_res_interrupt(struct aml *a, int edge, int active_low, uint32_t gsi)
{
	/* bit 0 consumer, bit 1 edge, bit 2 active low; exclusive, no wake */
	uint8_t flags = (uint8_t)(0x01 | (edge ? 0x02 : 0) | (active_low ? 0x04 : 0));

	aml_byte(a, RES_EXT_IRQ);
	aml_le(a, 6, 2);    /* flags, table length, one DWORD */
	aml_byte(a, flags);
	aml_byte(a, 1);
	aml_le(a, gsi, 4);
}

void aml_res_end(struct aml *a)
{
	uint8_t sum = RES_END_TAG;

	aml_byte(a, RES_END_TAG);
	if (a->err)
		return;
	for (size_t i = 0; i + 1 < a->len; i++)
		sum = (uint8_t)(sum + a->buf[i]);
	aml_byte(a, (uint8_t)-sum);
}
