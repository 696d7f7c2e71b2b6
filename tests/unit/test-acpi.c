/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables and the AML encoder.  The checks read the tables back the way
 * a guest does (RSDP -> XSDT -> FADT/MADT -> DSDT) and walk the DSDT with a
 * small AML decoder written here, independent of the encoder.
 *
 *   test-acpi                       run the checks
 *   test-acpi --dump DIR NCPU NDEV  write the tables as DIR/<SIG>.dat (for iasl)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tests/unit/check.h"
#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/aml.h"
#include "vmm/arch/x86/layout.h"

#define MEM_SIZE MiB(2)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static void make_devs(struct acpi_mmio_dev *d, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		d[i] = (struct acpi_mmio_dev){ .base = VIRTIO_MMIO_START + i * VIRTIO_MMIO_SIZE,
		                               .size = VIRTIO_MMIO_SIZE,
		                               .gsi = virtio_slot_gsi(i) };
}

/* ---- a minimal AML decoder, only for what the DSDT should contain ---- */

struct dec {
	const uint8_t *p, *end;
	int bad;
	unsigned devices, lnro, s5_first, s5_count, crs;
	int s5_seen;
};

/* Returns the byte count of the PkgLength at p and stores its value. */
static unsigned dec_pkglen(const uint8_t *p, const uint8_t *end, uint32_t *ret)
{
	unsigned n = (p[0] >> 6) + 1;
	uint32_t v;

	if (p + n > end)
		return 0;
	if (n == 1) {
		*ret = p[0] & 0x3f;
		return 1;
	}
	v = p[0] & 0x0f;
	for (unsigned i = 1; i < n; i++)
		v |= (uint32_t)p[i] << (4 + 8 * (i - 1));
	*ret = v;
	return n;
}

static int is_lead(uint8_t c) { return (c >= 'A' && c <= 'Z') || c == '_'; }

/* Skips a NameString; copies the last segment into seg. */
static const uint8_t *dec_name(const uint8_t *p, const uint8_t *end, char seg[5])
{
	unsigned n = 1;

	if (p < end && *p == '\\')
		p++;
	while (p < end && *p == '^')
		p++;
	if (p < end && *p == 0x2e) {
		n = 2;
		p++;
	} else if (p + 1 < end && *p == 0x2f) {
		n = p[1];
		p += 2;
	} else if (p < end && *p == 0x00) {
		seg[0] = 0;
		return p + 1;
	}
	if (p + 4 * n > end || !is_lead(*p))
		return NULL;
	memcpy(seg, p + 4 * (n - 1), 4);
	seg[4] = 0;
	return p + 4 * n;
}

static int dec_integer(const uint8_t **pp, const uint8_t *end, uint64_t *ret)
{
	const uint8_t *p = *pp;
	static const unsigned size[] = { [0x0a] = 1, [0x0b] = 2, [0x0c] = 4, [0x0e] = 8 };

	if (p >= end)
		return 0;
	if (*p == 0x00 || *p == 0x01) {
		*ret = *p;
		*pp = p + 1;
		return 1;
	}
	if (*p < 0x0a || *p > 0x0e || *p == 0x0d || p + 1 + size[*p] > end)
		return 0;
	*ret = 0;
	memcpy(ret, p + 1, size[*p]);
	*pp = p + 1 + size[*p];
	return 1;
}

static void dec_term_list(struct dec *d, const uint8_t *p, const uint8_t *end);

/* DataObject after a NameOp: integer, string, buffer or package. */
static const uint8_t *dec_data(struct dec *d, const uint8_t *p, const uint8_t *end, const char *name)
{
	uint64_t v;
	uint32_t len;
	unsigned n;

	if (dec_integer(&p, end, &v))
		return p;
	if (p < end && *p == 0x0d) {
		const uint8_t *z = memchr(p + 1, 0, (size_t)(end - p - 1));

		if (!z)
			return NULL;
		if (!strcmp(name, "_HID") && !strcmp((const char *)p + 1, "LNRO0005"))
			d->lnro++;
		return z + 1;
	}
	if (p >= end || (*p != 0x11 && *p != 0x12))
		return NULL;
	n = dec_pkglen(p + 1, end, &len);
	if (!n || len > (uint32_t)(end - p - 1))
		return NULL;
	if (*p == 0x11) {
		const uint8_t *q = p + 1 + n, *bend = p + 1 + len;

		if (!dec_integer(&q, bend, &v) || v != (uint64_t)(bend - q))
			return NULL;
		if (!strcmp(name, "_CRS")) {
			d->crs++;
			/* End tag, and the whole template sums to zero. */
			CHECK(v >= 2 && bend[-2] == 0x79 && acpi_checksum(q, v) == 0);
		}
	} else if (!strcmp(name, "_S5_")) {
		const uint8_t *q = p + 1 + n + 1;

		d->s5_seen = 1;
		d->s5_count = p[1 + n];
		if (!dec_integer(&q, p + 1 + len, &v))
			return NULL;
		d->s5_first = (unsigned)v;
	}
	return p + 1 + len;
}

/* A PkgLength-framed object: ScopeOp or DeviceOp. */
static const uint8_t *dec_framed(struct dec *d, const uint8_t *p, const uint8_t *end)
{
	uint32_t len;
	unsigned n = dec_pkglen(p, end, &len);
	const uint8_t *q, *oend;
	char seg[5];

	if (!n || len > (uint32_t)(end - p))
		return NULL;
	oend = p + len;
	q = dec_name(p + n, oend, seg);
	if (!q)
		return NULL;
	dec_term_list(d, q, oend);
	return oend;
}

static void dec_term_list(struct dec *d, const uint8_t *p, const uint8_t *end)
{
	char seg[5];

	while (p && p < end && !d->bad) {
		if (*p == 0x08) {
			p = dec_name(p + 1, end, seg);
			p = p ? dec_data(d, p, end, seg) : NULL;
		} else if (*p == 0x10) {
			p = dec_framed(d, p + 1, end);
		} else if (p + 1 < end && p[0] == 0x5b && p[1] == 0x82) {
			d->devices++;
			p = dec_framed(d, p + 2, end);
		} else {
			p = NULL;
		}
	}
	if (!p || p != end)
		d->bad = 1;
}

/* ---- table checks ---- */

static const uint8_t *table(const struct guest_mem *m, uint64_t gpa, const char *sig)
{
	const uint8_t *t = guest_mem_ptr(m, gpa, 36);

	CHECK(t != NULL);
	if (!t)
		return NULL;
	CHECK(!memcmp(t, sig, 4));
	CHECK(gpa >= ACPI_START && gpa % 16 == 0);
	CHECK(gpa + rd32(t + 4) <= ACPI_START + ACPI_MAX_SIZE);
	CHECK(acpi_checksum(t, rd32(t + 4)) == 0);
	CHECK(!memcmp(t + 10, "MVM   ", 6) && !memcmp(t + 16, "MVMVM   ", 8) &&
	      !memcmp(t + 28, "MVMC", 4));
	return t;
}

static void check_gas_io8(const uint8_t *g, uint16_t port)
{
	CHECK_EQ(g[0], 1);  /* system I/O */
	CHECK_EQ(g[1], 8);
	CHECK_EQ(g[2], 0);
	CHECK_EQ(g[3], 1);  /* byte access */
	CHECK_EQ(rd64(g + 4), port);
}

static uint64_t check_fadt(const uint8_t *f)
{
	uint32_t flags = rd32(f + 112);
	uint16_t boot = rd16(f + 109);

	CHECK_EQ(rd32(f + 4), 276);
	CHECK_EQ(f[8], 6);
	CHECK_EQ(f[131], 5);
	CHECK(flags & (1u << 20));  /* HW_REDUCED_ACPI */
	CHECK(flags & (1u << 4));   /* PWR_BUTTON: none fixed */
	CHECK(boot & (1u << 1));    /* 8042 present */
	CHECK(boot & (1u << 2));    /* no VGA */
	CHECK_EQ(rd16(f + 46), ACPI_SCI_IRQ);
	CHECK_EQ(rd32(f + 76), 0);  /* no PM timer */
	check_gas_io8(f + 244, ACPI_SLEEP_CTL_PORT);
	check_gas_io8(f + 256, ACPI_SLEEP_STS_PORT);
	if (flags & (1u << 10)) {
		check_gas_io8(f + 116, I8042_CMD_PORT);
		CHECK_EQ(f[128], 0xfe);
	}
	CHECK(!memcmp(f + 268, "MVM", 3));
	CHECK(rd64(f + 140) != 0);
	CHECK_EQ(rd64(f + 140), rd32(f + 40));
	return rd64(f + 140);
}

struct madt_seen { unsigned lapics, ioapics, iso_pit, nmi; };

static void check_madt_entry(const uint8_t *e, unsigned nvcpus, struct madt_seen *s)
{
	switch (e[0]) {
	case 0:
		CHECK_EQ(e[1], 8);
		CHECK_EQ(e[2], s->lapics);    /* UID = index */
		CHECK_EQ(e[3], s->lapics);    /* APIC id = index */
		CHECK(rd32(e + 4) & 1);       /* enabled */
		s->lapics++;
		break;
	case 1:
		CHECK_EQ(e[1], 12);
		CHECK(e[2] >= nvcpus);        /* no clash with a CPU's APIC id */
		CHECK_EQ(rd32(e + 4), IOAPIC_START);
		CHECK_EQ(rd32(e + 8), 0);
		s->ioapics++;
		break;
	case 2:
		CHECK_EQ(e[1], 10);
		if (e[3] == 0) {
			CHECK_EQ(rd32(e + 4), 2);
			CHECK_EQ(rd16(e + 8) & 0xc, 0x4);  /* edge */
			s->iso_pit++;
		}
		break;
	case 4:
		CHECK_EQ(e[1], 6);
		CHECK_EQ(e[2], 0xff);
		CHECK_EQ(e[5], 1);            /* LINT1 */
		s->nmi++;
		break;
	default:
		CHECK(!"unexpected MADT entry type");
	}
}

static void check_madt(const uint8_t *t, unsigned nvcpus)
{
	uint32_t len = rd32(t + 4), off = 44;
	struct madt_seen s = { 0 };

	CHECK_EQ(rd32(t + 36), LAPIC_START);
	CHECK(rd32(t + 40) & 1);  /* PCAT_COMPAT */
	while (off + 2 <= len) {
		CHECK(t[off + 1] >= 2 && off + t[off + 1] <= len);
		if (t[off + 1] < 2 || off + t[off + 1] > len)
			return;
		check_madt_entry(t + off, nvcpus, &s);
		off += t[off + 1];
	}
	CHECK_EQ(off, len);
	CHECK_EQ(s.lapics, nvcpus);
	CHECK_EQ(s.ioapics, 1);
	CHECK_EQ(s.iso_pit, 1);
	CHECK_EQ(s.nmi, 1);
}

static void check_device_resources(const uint8_t *t, uint32_t len, const struct acpi_mmio_dev *d)
{
	uint8_t mem[12] = { 0x86, 0x09, 0x00, 0x01 }, irq[9] = { 0x89, 0x06, 0x00, 0x03, 0x01 };
	uint32_t base = (uint32_t)d->base, size = (uint32_t)d->size;

	memcpy(mem + 4, &base, 4);
	memcpy(mem + 8, &size, 4);
	memcpy(irq + 5, &d->gsi, 4);
	CHECK(memmem(t, len, mem, sizeof(mem)) != NULL);
	CHECK(memmem(t, len, irq, sizeof(irq)) != NULL);
}

static void check_dsdt(const uint8_t *t, const struct acpi_mmio_dev *devs, unsigned ndevs)
{
	static const uint8_t pnp0501[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };
	uint32_t len = rd32(t + 4);
	struct dec d = { 0 };

	CHECK_EQ(t[8], 2);
	dec_term_list(&d, t + 36, t + len);
	CHECK(!d.bad);
	CHECK(d.s5_seen);
	CHECK_EQ(d.s5_first, ACPI_S5_SLP_TYP);
	CHECK_EQ(d.s5_count, 4);
	CHECK_EQ(d.lnro, ndevs);
	CHECK_EQ(d.devices, ndevs + 2);   /* + COM1, i8042 */
	CHECK_EQ(d.crs, ndevs + 2);
	CHECK(memmem(t, len, pnp0501, sizeof(pnp0501)) != NULL);
	for (unsigned i = 0; i < ndevs; i++)
		check_device_resources(t, len, &devs[i]);
}

static void check_tables(unsigned nvcpus, unsigned ndevs)
{
	uint8_t *buf = calloc(1, MEM_SIZE);
	struct acpi_mmio_dev devs[VIRTIO_MMIO_MAX];
	const uint8_t *rsdp, *xsdt, *fadt = NULL, *madt = NULL;
	struct guest_mem m;
	uint64_t rsdp_gpa = 0;

	make_devs(devs, ndevs);
	guest_mem_init_buffer(&m, buf, MEM_SIZE);
	CHECK_EQ(acpi_build(&m, nvcpus, devs, ndevs, &rsdp_gpa), 0);
	CHECK_EQ(rsdp_gpa, ACPI_START);
	rsdp = guest_mem_ptr(&m, rsdp_gpa, 36);
	CHECK(!memcmp(rsdp, "RSD PTR ", 8));
	CHECK_EQ(rsdp[15], 2);
	CHECK_EQ(rd32(rsdp + 20), 36);
	CHECK_EQ(acpi_checksum(rsdp, 20), 0);
	CHECK_EQ(acpi_checksum(rsdp, 36), 0);
	xsdt = table(&m, rd64(rsdp + 24), "XSDT");
	if (!xsdt)
		goto out;
	CHECK_EQ(rd32(xsdt + 4), 36 + 16);
	for (uint32_t off = 36; off + 8 <= rd32(xsdt + 4); off += 8) {
		const uint8_t *t = guest_mem_ptr(&m, rd64(xsdt + off), 4);

		if (t && !memcmp(t, "FACP", 4))
			fadt = table(&m, rd64(xsdt + off), "FACP");
		else if (t && !memcmp(t, "APIC", 4))
			madt = table(&m, rd64(xsdt + off), "APIC");
	}
	CHECK(fadt && madt);
	if (madt)
		check_madt(madt, nvcpus);
	if (fadt) {
		const uint8_t *dsdt = table(&m, check_fadt(fadt), "DSDT");

		if (dsdt)
			check_dsdt(dsdt, devs, ndevs);
	}
out:
	free(buf);
}

/* ---- the encoder ---- */

static void check_pkglength_values(void)
{
	static const struct { uint32_t v; unsigned n; uint8_t b[4]; } cases[] = {
		{ 0, 1, { 0x00 } },
		{ 63, 1, { 0x3f } },
		{ 64, 2, { 0x40, 0x04 } },
		{ 4095, 2, { 0x4f, 0xff } },
		{ 4096, 3, { 0x80, 0x00, 0x01 } },
		{ 0xfffff, 3, { 0x8f, 0xff, 0xff } },
		{ 0x100000, 4, { 0xc0, 0x00, 0x00, 0x01 } },
		{ 0xfffffff, 4, { 0xcf, 0xff, 0xff, 0xff } },
	};
	uint8_t out[4];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		memset(out, 0xaa, sizeof(out));
		CHECK_EQ(aml_pkglength_encode(cases[i].v, out), cases[i].n);
		CHECK(!memcmp(out, cases[i].b, cases[i].n));
	}
	CHECK_EQ(aml_pkglength_encode(0x10000000, out), 0);
}

/* A package whose body (NumElements + filler) is `body` bytes: the
 * PkgLength must count itself and pick the shortest encoding. */
static void check_pkglength_wrap(size_t body, unsigned want_n)
{
	static uint8_t buf[8192], filler[8192];
	struct aml a;
	uint32_t v = 0;
	size_t mark;

	aml_init(&a, buf, sizeof(buf));
	mark = aml_package_begin(&a, 0);
	aml_bytes(&a, filler, body - 1);
	aml_end(&a, mark);
	CHECK_EQ(a.err, 0);
	CHECK_EQ(buf[0], 0x12);
	CHECK_EQ(dec_pkglen(buf + 1, buf + a.len, &v), want_n);
	CHECK_EQ(v, body + want_n);
	CHECK_EQ(a.len, 1 + want_n + body);
}

static void check_bytes(void (*emit)(struct aml *, const void *), const void *arg,
                        const uint8_t *want, size_t n, int line)
{
	uint8_t buf[64];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	emit(&a, arg);
	if (a.err || a.len != n || memcmp(buf, want, n)) {
		fprintf(stderr, "%s:%d: encoding mismatch (err %d, len %zu)\n", __FILE__, line, a.err, a.len);
		check_failures++;
	}
}

static void emit_int(struct aml *a, const void *v) { aml_integer(a, *(const uint64_t *)v); }
static void emit_name(struct aml *a, const void *s) { aml_name_string(a, s); }
static void emit_eisa(struct aml *a, const void *s) { aml_eisaid(a, s); }

#define INT_IS(v, ...) do { uint64_t v_ = (v); const uint8_t w_[] = { __VA_ARGS__ }; \
	check_bytes(emit_int, &v_, w_, sizeof(w_), __LINE__); } while (0)
#define NAME_IS(s, ...) do { const uint8_t w_[] = { __VA_ARGS__ }; \
	check_bytes(emit_name, s, w_, sizeof(w_), __LINE__); } while (0)

static void check_encodings(void)
{
	uint8_t buf[16];
	struct aml a;

	INT_IS(0, 0x00);
	INT_IS(1, 0x01);
	INT_IS(5, 0x0a, 0x05);
	INT_IS(0xff, 0x0a, 0xff);
	INT_IS(0x100, 0x0b, 0x00, 0x01);
	INT_IS(0x10000, 0x0c, 0x00, 0x00, 0x01, 0x00);
	INT_IS(0x100000000ull, 0x0e, 0, 0, 0, 0, 1, 0, 0, 0);
	NAME_IS("\\_SB_", '\\', '_', 'S', 'B', '_');
	NAME_IS("_S5", '_', 'S', '5', '_');
	NAME_IS("_SB_.COM1", 0x2e, '_', 'S', 'B', '_', 'C', 'O', 'M', '1');
	NAME_IS("A.B.C", 0x2f, 3, 'A', '_', '_', '_', 'B', '_', '_', '_', 'C', '_', '_', '_');
	NAME_IS("^^UP", '^', '^', 'U', 'P', '_', '_');
	{
		const uint8_t w[] = { 0x0c, 0x41, 0xd0, 0x05, 0x01 };

		check_bytes(emit_eisa, "PNP0501", w, sizeof(w), __LINE__);
	}
	for (const char *const *bad = (const char *const[]){ "1ABC", "ABCDE", "A..B", "ab", "A.", NULL };
	     *bad; bad++) {
		aml_init(&a, buf, sizeof(buf));
		aml_name_string(&a, *bad);
		CHECK_EQ(a.err, -EINVAL);
	}
	aml_init(&a, buf, sizeof(buf));
	aml_eisaid(&a, "PNP05G1");
	CHECK_EQ(a.err, -EINVAL);
	/* Overflow is sticky and never writes past cap. */
	memset(buf, 0xaa, sizeof(buf));
	aml_init(&a, buf, 4);
	aml_string(&a, "LNRO0005");
	CHECK_EQ(a.err, -ENOSPC);
	CHECK(a.len <= 4);
	aml_integer(&a, 0);
	CHECK(a.len <= 4);
	CHECK_EQ(a.err, -ENOSPC);
	for (size_t i = 4; i < sizeof(buf); i++)
		CHECK_EQ(buf[i], 0xaa);
}

static void check_resource_template(void)
{
	uint8_t buf[64];
	struct aml a;

	aml_init(&a, buf, sizeof(buf));
	aml_res_io(&a, 0x3f8, 0x3f8, 0, 8);
	aml_res_irq_noflags(&a, 4);
	aml_res_end(&a);
	CHECK_EQ(a.err, 0);
	CHECK_EQ(a.len, 8 + 3 + 2);
	CHECK(!memcmp(buf, (const uint8_t[]){ 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08,
	                                      0x22, 0x10, 0x00, 0x79 }, 12));
	CHECK_EQ(acpi_checksum(buf, a.len), 0);
	aml_init(&a, buf, sizeof(buf));
	aml_res_irq_noflags(&a, 16);
	CHECK_EQ(a.err, -EINVAL);
}

/* ---- errors and the dump ---- */

static void check_errors(void)
{
	uint8_t *buf = calloc(1, MEM_SIZE);
	struct acpi_mmio_dev devs[VIRTIO_MMIO_MAX + 1];
	struct guest_mem m;
	uint64_t rsdp = 0x1234;

	make_devs(devs, VIRTIO_MMIO_MAX + 1);
	guest_mem_init_buffer(&m, buf, MEM_SIZE);
	CHECK_EQ(acpi_build(&m, 0, NULL, 0, &rsdp), -EINVAL);
	CHECK_EQ(acpi_build(&m, VCPUS_MAX + 1, NULL, 0, &rsdp), -EINVAL);
	CHECK_EQ(acpi_build(&m, 1, devs, VIRTIO_MMIO_MAX + 1, &rsdp), -EINVAL);
	devs[0].base = HIGH_RAM_START;
	CHECK_EQ(acpi_build(&m, 1, devs, 1, &rsdp), -EINVAL);
	CHECK_EQ(rsdp, 0x1234);  /* not written on failure */
	guest_mem_init_buffer(&m, buf, ACPI_START + 0x1000);
	CHECK_EQ(acpi_build(&m, 1, NULL, 0, &rsdp), -EFAULT);
	free(buf);
}

static int file_equals(const char *dir, const char *name, const void *want, size_t len)
{
	char path[4096], got[65536];
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "rb");
	if (!f)
		return 0;
	n = fread(got, 1, sizeof(got), f);
	fclose(f);
	return n == len && !memcmp(got, want, len);
}

static void check_dump(void)
{
	uint8_t *buf = calloc(1, MEM_SIZE);
	char dir[] = "/tmp/test-acpi-XXXXXX";
	const char *names[] = { "RSDP.dat", "XSDT.dat", "FACP.dat", "APIC.dat", "DSDT.dat" };
	struct guest_mem m;
	uint64_t rsdp = 0;
	uint8_t *x;

	guest_mem_init_buffer(&m, buf, MEM_SIZE);
	CHECK(mkdtemp(dir) != NULL);
	CHECK_EQ(acpi_build(&m, 2, NULL, 0, &rsdp), 0);
	CHECK_EQ(acpi_dump(&m, rsdp, dir), 0);
	CHECK(file_equals(dir, "RSDP.dat", buf + rsdp, 36));
	x = buf + rd64(buf + rsdp + 24);
	CHECK(file_equals(dir, "XSDT.dat", x, rd32(x + 4)));
	CHECK(file_equals(dir, "FACP.dat", buf + rd64(x + 36), rd32(buf + rd64(x + 36) + 4)));
	/* A guest-corrupted table is refused, not followed. */
	memcpy(buf + rd64(x + 44), "../", 3);
	CHECK_EQ(acpi_dump(&m, rsdp, dir), -EINVAL);
	memcpy(x + 4, &(uint32_t){ 0xffffffff }, 4);
	CHECK_EQ(acpi_dump(&m, rsdp, dir), -EINVAL);
	CHECK_EQ(acpi_dump(&m, MEM_SIZE - 8, dir), -EINVAL);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		char path[64];

		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		unlink(path);
	}
	CHECK_EQ(rmdir(dir), 0);
	free(buf);
}

static int dump_main(const char *dir, unsigned nvcpus, unsigned ndevs)
{
	uint8_t *buf = calloc(1, MEM_SIZE);
	struct acpi_mmio_dev devs[VIRTIO_MMIO_MAX];
	struct guest_mem m;
	uint64_t rsdp;
	int r;

	if (!buf || ndevs > VIRTIO_MMIO_MAX)
		return 2;
	make_devs(devs, ndevs);
	guest_mem_init_buffer(&m, buf, MEM_SIZE);
	r = acpi_build(&m, nvcpus, devs, ndevs, &rsdp);
	if (r == 0)
		r = acpi_dump(&m, rsdp, dir);
	free(buf);
	if (r < 0) {
		fprintf(stderr, "acpi: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static const unsigned cpus[] = { 1, 4, 32 }, ndevs[] = { 0, 3, 16 };

	if (argc == 5 && !strcmp(argv[1], "--dump"))
		return dump_main(argv[2], (unsigned)atoi(argv[3]), (unsigned)atoi(argv[4]));
	if (argc != 1) {
		fprintf(stderr, "usage: %s [--dump DIR NVCPUS NDEVS]\n", argv[0]);
		return 2;
	}
	check_pkglength_values();
	check_pkglength_wrap(62, 1);
	check_pkglength_wrap(63, 2);
	check_pkglength_wrap(4093, 2);
	check_pkglength_wrap(4094, 3);
	check_encodings();
	check_resource_template();
	for (size_t i = 0; i < 3; i++)
		for (size_t j = 0; j < 3; j++)
			check_tables(cpus[i], ndevs[j]);
	check_errors();
	check_dump();
	return check_result("test-acpi");
}
