/* SPDX-License-Identifier: MIT */
/*
 * Just enough ACPI and MP-spec parsing for the smp and poweroff scenarios.
 * Failures here are the VMM's bugs the tests are looking for, so every
 * table's checksum and length is checked and reported.
 */
#include "acpi.h"
#include "boot.h"

struct sdt_header {
	char sig[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision, creator_id, creator_revision;
} __attribute__((packed));

#define TABLE_MAX_LEN (1U << 20)
/* Tables must lie in the identity-mapped 4 GiB. */
#define ADDR_LIMIT (1ULL << 32)

static uint8_t sum8(const void *p, size_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

static const void *scan(uint64_t start, uint64_t end, const char *sig, unsigned len, unsigned step)
{
	for (uint64_t a = start; a + len <= end; a += step)
		if (!memcmp((const void *)a, sig, len))
			return (const void *)a;
	return NULL;
}

static const uint8_t *find_rsdp(void)
{
	const uint8_t *r;

	if (boot.rsdp && boot.rsdp < ADDR_LIMIT)
		r = (const uint8_t *)boot.rsdp;
	else
		r = scan(0xe0000, 0x100000, "RSD PTR ", 8, 16);
	if (!r || memcmp(r, "RSD PTR ", 8))
		return NULL;
	if (sum8(r, 20))
		fail("acpi rsdp checksum");
	if (r[15] >= 2 && sum8(r, *(const uint32_t *)(r + 20) < 36 ? 36 : *(const uint32_t *)(r + 20)))
		fail("acpi rsdp extended checksum");
	return r;
}

static const struct sdt_header *check_table(uint64_t addr)
{
	const struct sdt_header *h = (const void *)addr;

	if (!addr || addr >= ADDR_LIMIT - TABLE_MAX_LEN)
		fail("acpi table address %lx out of range", addr);
	if (h->length < sizeof(*h) || h->length > TABLE_MAX_LEN)
		fail("acpi table %c%c%c%c length %u", h->sig[0], h->sig[1], h->sig[2], h->sig[3], h->length);
	if (sum8(h, h->length))
		fail("acpi checksum %c%c%c%c", h->sig[0], h->sig[1], h->sig[2], h->sig[3]);
	return h;
}

/* Looks sig up through the XSDT (or the RSDT on ACPI 1.0). */
static const struct sdt_header *acpi_find(const char *sig)
{
	const uint8_t *rsdp = find_rsdp();
	const struct sdt_header *root, *t;
	bool xsdt;
	unsigned n;

	if (!rsdp)
		return NULL;
	xsdt = rsdp[15] >= 2 && *(const uint64_t *)(rsdp + 24);
	root = check_table(xsdt ? *(const uint64_t *)(rsdp + 24) : *(const uint32_t *)(rsdp + 16));
	n = (root->length - sizeof(*root)) / (xsdt ? 8 : 4);
	for (unsigned i = 0; i < n; i++) {
		const uint8_t *ents = (const uint8_t *)(root + 1);
		uint64_t a = xsdt ? *(const uint64_t *)(ents + 8 * i) : *(const uint32_t *)(ents + 4 * i);

		t = check_table(a);
		if (!memcmp(t->sig, sig, 4))
			return t;
	}
	return NULL;
}

static void add_id(uint32_t *ids, unsigned max, int n, uint32_t id)
{
	if ((unsigned)n < max)
		ids[n] = id;
}

int acpi_madt_cpus(uint32_t *ids, unsigned max)
{
	const struct sdt_header *madt = acpi_find("APIC");
	const uint8_t *p, *end;
	int n = 0;

	if (!madt)
		return -1;
	p = (const uint8_t *)madt + sizeof(*madt) + 8;  /* lapic addr, flags */
	end = (const uint8_t *)madt + madt->length;
	while (p + 2 <= end) {
		if (p[1] < 2 || p + p[1] > end)
			fail("madt entry type %u length %u", p[0], p[1]);
		if (p[0] == 0 && p[1] >= 8 && (*(const uint32_t *)(p + 4) & 1))
			add_id(ids, max, n++, p[3]);
		else if (p[0] == 9 && p[1] >= 16 && (*(const uint32_t *)(p + 8) & 1))
			add_id(ids, max, n++, *(const uint32_t *)(p + 4));
		p += p[1];
	}
	return n;
}

/* The MP floating pointer lives in the EBDA's first KiB or the BIOS ROM. */
int mptable_cpus(void)
{
	const uint8_t *fp = scan(0x9fc00, 0xa0000, "_MP_", 4, 16);
	const uint8_t *t, *p, *end;
	int n = 0;

	if (!fp)
		fp = scan(0xf0000, 0x100000, "_MP_", 4, 16);
	if (!fp)
		return -1;
	if (sum8(fp, 16))
		fail("mptable floating pointer checksum");
	t = (const uint8_t *)(uint64_t)*(const uint32_t *)(fp + 4);
	if (!t || memcmp(t, "PCMP", 4))
		fail("mptable config table signature");
	if (sum8(t, *(const uint16_t *)(t + 4)))
		fail("mptable config table checksum");
	p = t + 44;
	end = t + *(const uint16_t *)(t + 4);
	for (unsigned i = 0; i < *(const uint16_t *)(t + 34) && p < end; i++) {
		if (p[0] == 0) {
			n += p[3] & 1;  /* cpu flags: enabled */
			p += 20;
		} else if (p[0] <= 4) {
			p += 8;
		} else {
			fail("mptable entry type %u", p[0]);
		}
	}
	return n;
}

/* First element of the \_S5 package: SLP_TYP. */
static int dsdt_s5(const struct sdt_header *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt, *end = p + dsdt->length;

	for (p += sizeof(*dsdt); p + 8 <= end; p++) {
		if (memcmp(p, "_S5_", 4) || p[4] != 0x12)  /* PackageOp */
			continue;
		p += 5 + 1 + (p[5] >> 6);  /* PkgLength: lead byte + (bits 7:6) more */
		p++;                       /* NumElements */
		if (p + 2 > end)
			break;
		switch (p[0]) {
		case 0x0a: return p[1];    /* BytePrefix */
		case 0x00: return 0;       /* ZeroOp */
		case 0x01: return 1;       /* OneOp */
		}
		fail("dsdt _S5_ element opcode %x", p[0]);
	}
	return -1;
}

struct gas { uint8_t space, bit_width, bit_offset, access_size; uint64_t address; } __attribute__((packed));

#define FADT_DSDT       40
#define FADT_PM1A_CNT   64
#define FADT_X_DSDT     140
#define FADT_SLEEP_CTL  244

/* The DSDT hangs off the FADT, not the XSDT. */
static const struct sdt_header *fadt_dsdt(const struct sdt_header *fadt)
{
	const uint8_t *f = (const uint8_t *)fadt;
	uint64_t dsdt;

	dsdt = fadt->length >= FADT_X_DSDT + 8 ? *(const uint64_t *)(f + FADT_X_DSDT) : 0;
	if (!dsdt)
		dsdt = *(const uint32_t *)(f + FADT_DSDT);
	return check_table(dsdt);
}

const uint8_t *acpi_dsdt_aml(uint32_t *ret_len)
{
	const struct sdt_header *fadt = acpi_find("FACP"), *dsdt;

	if (!fadt)
		return NULL;
	dsdt = fadt_dsdt(fadt);
	*ret_len = dsdt->length - (uint32_t)sizeof(*dsdt);
	return (const uint8_t *)(dsdt + 1);
}

/* MADT type 1: IOAPIC id, reserved, address (u32), GSI base (u32). */
uint64_t acpi_ioapic_for_gsi(uint32_t gsi, uint32_t *ret_base_gsi)
{
	const struct sdt_header *madt = acpi_find("APIC");
	const uint8_t *p, *end;
	uint64_t best = 0;
	uint32_t best_base = 0;

	if (!madt)
		return 0;
	p = (const uint8_t *)madt + sizeof(*madt) + 8;
	end = (const uint8_t *)madt + madt->length;
	for (; p + 2 <= end && p[1] >= 2 && p + p[1] <= end; p += p[1]) {
		uint32_t base;

		if (p[0] != 1 || p[1] < 12)
			continue;
		base = *(const uint32_t *)(p + 8);
		if (base <= gsi && (!best || base >= best_base)) {
			best = *(const uint32_t *)(p + 4);
			best_base = base;
		}
	}
	*ret_base_gsi = best_base;
	return best;
}

void acpi_poweroff(void)
{
	const struct sdt_header *fadt = acpi_find("FACP");
	const uint8_t *f = (const uint8_t *)fadt;
	const struct gas *ctl;
	int slp_typ;

	if (!fadt)
		fail("poweroff: no FADT");
	slp_typ = dsdt_s5(fadt_dsdt(fadt));
	if (slp_typ < 0)
		fail("poweroff: no \\_S5 in the DSDT");
	ctl = (const struct gas *)(f + FADT_SLEEP_CTL);
	if (fadt->length >= FADT_SLEEP_CTL + sizeof(*ctl) && ctl->address) {
		uint8_t v = (uint8_t)((slp_typ & 7) << 2 | 1 << 5);  /* SLP_TYPx, SLP_EN */

		if (ctl->space == 1)
			outb((uint16_t)ctl->address, v);
		else if (ctl->space == 0 && ctl->address < ADDR_LIMIT)
			mmio_write8(ctl->address, v);
		else
			fail("poweroff: sleep control register space %u", ctl->space);
	} else if (*(const uint32_t *)(f + FADT_PM1A_CNT)) {
		/* Not hardware-reduced: PM1a_CNT, SLP_TYP in bits 12:10. */
		outw((uint16_t)*(const uint32_t *)(f + FADT_PM1A_CNT),
		     (uint16_t)((slp_typ & 7) << 10 | 1 << 13));
	} else {
		fail("poweroff: FADT has no sleep control register");
	}
}
