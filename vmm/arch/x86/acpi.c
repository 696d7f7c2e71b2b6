/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables for a hardware-reduced x86 microVM (ACPI 6.5): RSDP -> XSDT ->
 * {FADT -> DSDT, MADT}, all inside [ACPI_START, ACPI_START + ACPI_MAX_SIZE).
 * Hardware-reduced means no PM1/GPE blocks, no PM timer and no SMI_CMD: the
 * guest powers off through the FADT sleep control register, which the VMM
 * traps as an I/O port.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/aml.h"
#include "vmm/arch/x86/layout.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "tables are written as host structs");

#define ACPI_OEM_ID        "MVM   "
#define ACPI_OEM_TABLE_ID  "MVMVM   "
#define ACPI_CREATOR_ID    "MVMC"
#define ACPI_OEM_REVISION  1
#define ACPI_CREATOR_REV   1
#define ACPI_TABLE_ALIGN   64

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;          /* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP");
#define ACPI_RSDP_V1_LEN 20

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "SDT header");

struct acpi_gas {
	uint8_t space_id;
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size;
	uint64_t address;
} __attribute__((packed));
#define ACPI_GAS_SYSTEM_IO  1
#define ACPI_GAS_ACCESS_BYTE 1

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl;
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t legacy_regs[43];   /* ACPI_ENABLE .. GPE1_BASE: unused when reduced */
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_legacy_blocks[8]; /* X_PM1a_EVT_BLK .. X_GPE1_BLK */
	struct acpi_gas sleep_control;
	struct acpi_gas sleep_status;
	char hypervisor_vendor[8];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT 6.5");
_Static_assert(__builtin_offsetof(struct acpi_fadt, iapc_boot_arch) == 109, "FADT");
_Static_assert(__builtin_offsetof(struct acpi_fadt, x_dsdt) == 140, "FADT");
_Static_assert(__builtin_offsetof(struct acpi_fadt, sleep_control) == 244, "FADT");

/* IAPC_BOOT_ARCH: what a PC-compatible guest may expect to find. */
#define IAPC_LEGACY_DEVICES  (1u << 0)  /* COM1 and the i8042 sit on ISA ports */
#define IAPC_8042            (1u << 1)  /* we emulate one (reset via 0xFE) */
#define IAPC_VGA_NOT_PRESENT (1u << 2)
#define IAPC_MSI_NOT_SUPPORTED (1u << 3) /* no PCI at all; virtio-mmio uses GSIs */
#define IAPC_CMOS_RTC_NOT_PRESENT (1u << 5) /* no RTC: keep Linux off ports 0x70/0x71 */

#define FADT_PWR_BUTTON      (1u << 4)  /* no fixed-feature power button */
#define FADT_SLP_BUTTON      (1u << 5)  /* no fixed-feature sleep button */
#define FADT_RESET_REG_SUP   (1u << 10)
#define FADT_HW_REDUCED_ACPI (1u << 20)

struct madt_header {
	struct acpi_header h;
	uint32_t lapic_address;
	uint32_t flags;
} __attribute__((packed));
#define MADT_PCAT_COMPAT 1u

struct madt_lapic {
	uint8_t type, length, uid, apic_id;
	uint32_t flags;
} __attribute__((packed));
#define MADT_TYPE_LAPIC    0
#define MADT_LAPIC_ENABLED 1u

struct madt_ioapic {
	uint8_t type, length, id, reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
#define MADT_TYPE_IOAPIC 1

struct madt_iso {
	uint8_t type, length, bus, source;
	uint32_t gsi;
	uint16_t flags;
} __attribute__((packed));
#define MADT_TYPE_ISO       2
#define MPS_POLARITY_HIGH   0x1
#define MPS_TRIGGER_EDGE    (0x1 << 2)
#define MPS_TRIGGER_LEVEL   (0x3 << 2)

struct madt_lapic_nmi {
	uint8_t type, length, uid;
	uint16_t flags;
	uint8_t lint;
} __attribute__((packed));
#define MADT_TYPE_LAPIC_NMI 4
#define MADT_ALL_PROCESSORS 0xff

#define PIT_ISA_IRQ 0
#define PIT_GSI     2  /* the IOAPIC's pin 0 is the 8259 cascade (ExtINT) */

/* Bump allocator over the ACPI region of guest RAM. */
struct acpi_ctx {
	const struct guest_mem *m;
	uint64_t next, end;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Reserves `len` zeroed bytes; returns the host pointer and *ret_gpa, or
 * NULL when the region is full (acpi_build checked it is all RAM). */
static void *acpi_alloc(struct acpi_ctx *c, uint64_t len, uint64_t align, uint64_t *ret_gpa)
{
	uint64_t gpa = align_up(c->next, align);
	uint8_t *p;

	if (gpa > c->end || len > c->end - gpa)
		return NULL;
	p = guest_mem_ptr(c->m, gpa, len);
	if (!p)
		return NULL;
	memset(p, 0, len);
	c->next = gpa + len;
	*ret_gpa = gpa;
	return p;
}

uint8_t acpi_checksum(const void *p, uint64_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	for (uint64_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return sum;
}

static void acpi_header_init(struct acpi_header *h, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, ACPI_OEM_ID, 6);
	memcpy(h->oem_table_id, ACPI_OEM_TABLE_ID, 8);
	h->oem_revision = ACPI_OEM_REVISION;
	memcpy(h->creator_id, ACPI_CREATOR_ID, 4);
	h->creator_revision = ACPI_CREATOR_REV;
}

/* Call last, once every field of the table is written. */
static void acpi_header_sum(struct acpi_header *h)
{
	h->checksum = 0;
	h->checksum = (uint8_t)-acpi_checksum(h, h->length);
}

/* Name (_CRS, ResourceTemplate () { ... }) from a finished template. */
static void dsdt_crs(struct aml *a, const struct aml *res)
{
	aml_name(a, "_CRS");
	if (res->err)
		aml_fail(a, res->err);
	else
		aml_buffer(a, res->buf, res->len);
}

static void dsdt_com1(struct aml *a)
{
	uint8_t rbuf[32];
	struct aml r;
	size_t dev;

	aml_init(&r, rbuf, sizeof(rbuf));
	aml_res_io(&r, COM1_PORT, COM1_PORT, 0, 8);
	aml_res_irq_noflags(&r, COM1_IRQ);
	aml_res_end(&r);
	dev = aml_device_begin(a, "COM1");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0501");
	aml_name(a, "_UID");
	aml_integer(a, 0);
	dsdt_crs(a, &r);
	aml_end(a, dev);
}

/* Linux's i8042 driver finds the controller through this PNP id. */
static void dsdt_i8042(struct aml *a)
{
	uint8_t rbuf[32];
	struct aml r;
	size_t dev;

	aml_init(&r, rbuf, sizeof(rbuf));
	aml_res_io(&r, I8042_DATA_PORT, I8042_DATA_PORT, 1, 1);
	aml_res_io(&r, I8042_CMD_PORT, I8042_CMD_PORT, 1, 1);
	aml_res_irq_noflags(&r, I8042_IRQ);
	aml_res_end(&r);
	dev = aml_device_begin(a, "PS2K");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0303");
	dsdt_crs(a, &r);
	aml_end(a, dev);
}

static void dsdt_mmio_device(struct aml *a, unsigned idx, const struct acpi_mmio_dev *d)
{
	static const char hex[] = "0123456789ABCDEF";
	char name[5] = { 'V', 'R', hex[(idx >> 4) & 0xf], hex[idx & 0xf], 0 };
	uint8_t rbuf[32];
	struct aml r;
	size_t dev;

	/* Memory32Fixed: the window must lie below 4 GiB. */
	if (d->base > UINT32_MAX || d->size > UINT32_MAX || d->size > (1ull << 32) - d->base) {
		aml_fail(a, -EINVAL);
		return;
	}
	aml_init(&r, rbuf, sizeof(rbuf));
	aml_res_mem32_fixed(&r, 1, (uint32_t)d->base, (uint32_t)d->size);
	/* Edge-triggered, active high, as Firecracker and cloud-hypervisor
	 * describe virtio-mmio: the VMM injects through a KVM irqfd, which
	 * pulses the line, and Linux's virtio-mmio driver reads the interrupt
	 * status register on every interrupt, so no event is lost. */
	aml_res_interrupt(&r, AML_IRQ_EDGE, AML_IRQ_ACTIVE_HIGH, d->gsi);
	aml_res_end(&r);

	dev = aml_device_begin(a, name);
	aml_name(a, "_HID");
	aml_string(a, "LNRO0005");
	aml_name(a, "_UID");
	aml_integer(a, idx);
	aml_name(a, "_CCA");  /* DMA is cache-coherent */
	aml_integer(a, 1);
	dsdt_crs(a, &r);
	aml_end(a, dev);
}

static void dsdt_body(struct aml *a, const struct acpi_mmio_dev *devs, unsigned ndevs)
{
	size_t pkg, scope;

	/* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved.  A hardware-reduced
	 * guest writes SLP_TYPa into the sleep control register. */
	aml_name(a, "_S5_");
	pkg = aml_package_begin(a, 4);
	aml_integer(a, ACPI_S5_SLP_TYP);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_integer(a, 0);
	aml_end(a, pkg);

	scope = aml_scope_begin(a, "\\_SB_");
	dsdt_com1(a);
	dsdt_i8042(a);
	for (unsigned i = 0; i < ndevs; i++)
		dsdt_mmio_device(a, i, &devs[i]);
	aml_end(a, scope);
}

/* The DSDT is variable-sized: it takes the rest of the region, then gives
 * back what the AML did not use. */
static int build_dsdt(struct acpi_ctx *c, const struct acpi_mmio_dev *devs,
                      unsigned ndevs, uint64_t *ret_gpa)
{
	struct acpi_header *h;
	uint64_t gpa = align_up(c->next, ACPI_TABLE_ALIGN), room;
	struct aml a;

	if (gpa >= c->end || c->end - gpa <= sizeof(*h))
		return -ENOSPC;
	room = c->end - gpa;
	h = guest_mem_ptr(c->m, gpa, room);
	if (!h)
		return -EFAULT;
	memset(h, 0, sizeof(*h));
	aml_init(&a, (uint8_t *)h + sizeof(*h), room - sizeof(*h));
	dsdt_body(&a, devs, ndevs);
	if (a.err)
		return a.err;
	/* Revision 2: AML integers are 64 bits wide. */
	acpi_header_init(h, "DSDT", (uint32_t)(sizeof(*h) + a.len), 2);
	acpi_header_sum(h);
	c->next = gpa + h->length;
	*ret_gpa = gpa;
	return 0;
}

static void gas_io8(struct acpi_gas *g, uint16_t port)
{
	g->space_id = ACPI_GAS_SYSTEM_IO;
	g->bit_width = 8;
	g->bit_offset = 0;
	g->access_size = ACPI_GAS_ACCESS_BYTE;
	g->address = port;
}

static int build_fadt(struct acpi_ctx *c, uint64_t dsdt, uint64_t *ret_gpa)
{
	struct acpi_fadt *f = acpi_alloc(c, sizeof(*f), ACPI_TABLE_ALIGN, ret_gpa);

	if (!f)
		return -ENOSPC;
	/* Revision 6, minor 5: ACPI 6.5.  Linux honours HW_REDUCED_ACPI
	 * only from revision 5 on. */
	acpi_header_init(&f->h, "FACP", sizeof(*f), 6);
	f->minor_version = 5;
	f->dsdt = (uint32_t)dsdt;
	f->x_dsdt = dsdt;
	f->sci_int = ACPI_SCI_IRQ;
	f->iapc_boot_arch = IAPC_LEGACY_DEVICES | IAPC_8042 | IAPC_VGA_NOT_PRESENT |
	                    IAPC_MSI_NOT_SUPPORTED | IAPC_CMOS_RTC_NOT_PRESENT;
	f->flags = FADT_HW_REDUCED_ACPI | FADT_PWR_BUTTON | FADT_SLP_BUTTON |
	           FADT_RESET_REG_SUP;
	/* Reset through the i8042's pulse-reset command, which the VMM
	 * already turns into a guest reset. */
	gas_io8(&f->reset_reg, I8042_CMD_PORT);
	f->reset_value = 0xfe;
	gas_io8(&f->sleep_control, ACPI_SLEEP_CTL_PORT);
	gas_io8(&f->sleep_status, ACPI_SLEEP_STS_PORT);
	memcpy(f->hypervisor_vendor, "MVM", 3);
	acpi_header_sum(&f->h);
	return 0;
}

static uint64_t madt_size(unsigned nvcpus)
{
	return sizeof(struct madt_header) + nvcpus * sizeof(struct madt_lapic) +
	       sizeof(struct madt_ioapic) + 2 * sizeof(struct madt_iso) +
	       sizeof(struct madt_lapic_nmi);
}

static uint8_t *madt_iso(uint8_t *p, uint8_t irq, uint32_t gsi, uint16_t flags)
{
	struct madt_iso *e = (struct madt_iso *)p;

	*e = (struct madt_iso){ .type = MADT_TYPE_ISO, .length = sizeof(*e),
	                        .bus = 0, .source = irq, .gsi = gsi, .flags = flags };
	return p + sizeof(*e);
}

static int build_madt(struct acpi_ctx *c, unsigned nvcpus, uint64_t *ret_gpa)
{
	uint64_t len = madt_size(nvcpus);
	struct madt_header *h = acpi_alloc(c, len, ACPI_TABLE_ALIGN, ret_gpa);
	uint8_t *p;

	if (!h)
		return -ENOSPC;
	/* Revision 5 (ACPI 6.3+): Linux then also reads the Online Capable bit. */
	acpi_header_init(&h->h, "APIC", (uint32_t)len, 5);
	h->lapic_address = (uint32_t)LAPIC_START;
	h->flags = MADT_PCAT_COMPAT;
	p = (uint8_t *)(h + 1);
	for (unsigned i = 0; i < nvcpus; i++) {
		struct madt_lapic *e = (struct madt_lapic *)p;

		*e = (struct madt_lapic){ .type = MADT_TYPE_LAPIC, .length = sizeof(*e),
		                          .uid = (uint8_t)i, .apic_id = (uint8_t)i,
		                          .flags = MADT_LAPIC_ENABLED };
		p += sizeof(*e);
	}
	*(struct madt_ioapic *)p = (struct madt_ioapic){
		.type = MADT_TYPE_IOAPIC, .length = sizeof(struct madt_ioapic),
		.id = (uint8_t)acpi_ioapic_id(nvcpus), .address = (uint32_t)IOAPIC_START,
		.gsi_base = 0 };
	p += sizeof(struct madt_ioapic);
	p = madt_iso(p, PIT_ISA_IRQ, PIT_GSI, MPS_POLARITY_HIGH | MPS_TRIGGER_EDGE);
	/* The SCI is level, active high (as QEMU describes it); a
	 * hardware-reduced guest never enables it, but Linux still parses it. */
	p = madt_iso(p, ACPI_SCI_IRQ, ACPI_SCI_IRQ, MPS_POLARITY_HIGH | MPS_TRIGGER_LEVEL);
	*(struct madt_lapic_nmi *)p = (struct madt_lapic_nmi){
		.type = MADT_TYPE_LAPIC_NMI, .length = sizeof(struct madt_lapic_nmi),
		.uid = MADT_ALL_PROCESSORS, .flags = 0, .lint = 1 };
	acpi_header_sum(&h->h);
	return 0;
}

static int build_xsdt(struct acpi_ctx *c, const uint64_t *tables, unsigned n, uint64_t *ret_gpa)
{
	uint64_t len = sizeof(struct acpi_header) + 8ull * n;
	struct acpi_header *h = acpi_alloc(c, len, ACPI_TABLE_ALIGN, ret_gpa);

	if (!h)
		return -ENOSPC;
	acpi_header_init(h, "XSDT", (uint32_t)len, 1);
	/* Entries are 64-bit and only 4-byte aligned: copy, don't cast. */
	memcpy(h + 1, tables, 8ull * n);
	acpi_header_sum(h);
	return 0;
}

static void fill_rsdp(struct acpi_rsdp *r, uint64_t xsdt)
{
	memcpy(r->signature, "RSD PTR ", 8);
	memcpy(r->oem_id, ACPI_OEM_ID, 6);
	r->revision = 2;
	r->rsdt_address = 0;   /* XSDT only, as ACPI 6 allows */
	r->length = sizeof(*r);
	r->xsdt_address = xsdt;
	r->checksum = (uint8_t)-acpi_checksum(r, ACPI_RSDP_V1_LEN);
	r->extended_checksum = (uint8_t)-acpi_checksum(r, sizeof(*r));
}

int acpi_build(const struct guest_mem *m, unsigned nvcpus,
               const struct acpi_mmio_dev *devs, unsigned ndevs, uint64_t *ret_rsdp)
{
	struct acpi_ctx c = { .m = m, .next = ACPI_START, .end = ACPI_START + ACPI_MAX_SIZE };
	uint64_t rsdp = 0, xsdt = 0, tables[2] = { 0, 0 }, dsdt = 0;
	struct acpi_rsdp *rp;
	int r;

	if (nvcpus == 0 || nvcpus > VCPUS_MAX || ndevs > VIRTIO_MMIO_MAX || (ndevs && !devs))
		return -EINVAL;
	if (!guest_mem_ptr(m, ACPI_START, ACPI_MAX_SIZE))
		return -EFAULT;
	/* The RSDP goes first, 16-byte aligned inside the BIOS area, where a
	 * guest that scans for it (no boot-params pointer) looks. */
	rp = acpi_alloc(&c, sizeof(*rp), 16, &rsdp);
	if (!rp)
		return -ENOSPC;
	r = build_madt(&c, nvcpus, &tables[1]);
	if (r < 0)
		return r;
	r = build_dsdt(&c, devs, ndevs, &dsdt);
	if (r < 0)
		return r;
	r = build_fadt(&c, dsdt, &tables[0]);
	if (r < 0)
		return r;
	r = build_xsdt(&c, tables, 2, &xsdt);
	if (r < 0)
		return r;
	fill_rsdp(rp, xsdt);
	*ret_rsdp = rsdp;
	return 0;
}

/* Everything below serves --dump-acpi: it reads tables back out of guest
 * RAM, so every length and pointer is checked before use. */

static int write_file(int dirfd, const char *name, const void *p, size_t len)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	const uint8_t *b = p;
	int r = 0;

	if (fd < 0)
		return -errno;
	while (len) {
		ssize_t n = write(fd, b, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		b += n;
		len -= (size_t)n;
	}
	if (close(fd) < 0 && r == 0)
		r = -errno;
	return r;
}

/* Host pointer to a whole table at gpa after checking its header. */
static const struct acpi_header *table_at(const struct guest_mem *m, uint64_t gpa)
{
	const struct acpi_header *h = guest_mem_ptr(m, gpa, sizeof(*h));

	if (!h || h->length < sizeof(*h) || h->length > ACPI_MAX_SIZE)
		return NULL;
	for (int i = 0; i < 4; i++) {
		char ch = h->signature[i];

		/* The signature becomes a file name. */
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_'))
			return NULL;
	}
	return guest_mem_ptr(m, gpa, h->length);
}

static int dump_table(const struct guest_mem *m, int dirfd, uint64_t gpa,
                      const struct acpi_header **ret)
{
	const struct acpi_header *h = table_at(m, gpa);
	char name[9];

	if (!h)
		return -EINVAL;
	memcpy(name, h->signature, 4);
	memcpy(name + 4, ".dat", 5);
	if (ret)
		*ret = h;
	return write_file(dirfd, name, h, h->length);
}

static int dump_dsdt_of(const struct guest_mem *m, int dirfd, const struct acpi_header *fadt)
{
	const struct acpi_fadt *f = (const struct acpi_fadt *)fadt;
	uint64_t dsdt;

	if (fadt->length < __builtin_offsetof(struct acpi_fadt, x_dsdt) + 8)
		return -EINVAL;
	dsdt = f->x_dsdt ? f->x_dsdt : f->dsdt;
	return dump_table(m, dirfd, dsdt, NULL);
}

static int dump_from_rsdp(const struct guest_mem *m, int dirfd, uint64_t rsdp)
{
	const struct acpi_rsdp *rp = guest_mem_ptr(m, rsdp, sizeof(*rp));
	const struct acpi_header *x, *t;
	int r;

	if (!rp || memcmp(rp->signature, "RSD PTR ", 8) || rp->revision < 2)
		return -EINVAL;
	r = write_file(dirfd, "RSDP.dat", rp, sizeof(*rp));
	if (r < 0)
		return r;
	r = dump_table(m, dirfd, rp->xsdt_address, &x);
	if (r < 0)
		return r;
	for (uint32_t off = sizeof(*x); off + 8 <= x->length; off += 8) {
		uint64_t gpa;

		memcpy(&gpa, (const uint8_t *)x + off, 8);
		r = dump_table(m, dirfd, gpa, &t);
		if (r < 0)
			return r;
		if (!memcmp(t->signature, "FACP", 4)) {
			r = dump_dsdt_of(m, dirfd, t);
			if (r < 0)
				return r;
		}
	}
	return 0;
}

int acpi_dump(const struct guest_mem *m, uint64_t rsdp, const char *dir)
{
	int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int r;

	if (dirfd < 0)
		return -errno;
	r = dump_from_rsdp(m, dirfd, rsdp);
	close(dirfd);
	return r;
}
