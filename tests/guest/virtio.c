/* SPDX-License-Identifier: MIT */
/* virtio-mmio discovery (command line and DSDT), transport and split queues. */
#include "virtio.h"
#include "acpi.h"
#include "boot.h"
#include "smp.h"
#include "user.h"

/* virtio-mmio version 2 registers (virtio 1.x, 4.2.2). */
#define VM_MAGIC          0x000
#define VM_VERSION        0x004
#define VM_DEVICE_ID      0x008
#define VM_DEV_FEATURES   0x010
#define VM_DEV_FEAT_SEL   0x014
#define VM_DRV_FEATURES   0x020
#define VM_DRV_FEAT_SEL   0x024
#define VM_QUEUE_SEL      0x030
#define VM_QUEUE_NUM_MAX  0x034
#define VM_QUEUE_NUM      0x038
#define VM_QUEUE_READY    0x044
#define VM_QUEUE_NOTIFY   0x050
#define VM_INT_STATUS     0x060
#define VM_INT_ACK        0x064
#define VM_STATUS         0x070
#define VM_QUEUE_DESC     0x080
#define VM_QUEUE_DRIVER   0x090
#define VM_QUEUE_DEVICE   0x0a0
#define VM_CONFIG_GEN     0x0fc
#define VM_CONFIG         0x100
#define VIRTIO_MAGIC      0x74726976  /* "virt" */

#define IOAPIC_DEFAULT    0xfec00000UL
#define LAPIC_LVT_TMR     0x320
#define LAPIC_TMR_INIT    0x380
#define LAPIC_TMR_DIV     0x3e0
#define TICK_COUNT        200000      /* / 16 at 1 GHz: 3.2 ms */

static uint32_t rd(const struct vdev *d, unsigned off) { return mmio_read32(d->addr + off); }
static void wr(const struct vdev *d, unsigned off, uint32_t v) { mmio_write32(d->addr + off, v); }

void *virtio_dma(uint64_t offset, uint64_t len)
{
	if (offset > VIRTIO_DMA_SIZE || len > VIRTIO_DMA_SIZE - offset)
		fail("virtio: dma range %lx+%lx out of bounds", offset, len);
	if (!boot_ram_covers(VIRTIO_DMA_BASE, VIRTIO_DMA_SIZE))
		fail("virtio: dma area %lx+%lx is not RAM", VIRTIO_DMA_BASE, VIRTIO_DMA_SIZE);
	return (void *)(VIRTIO_DMA_BASE + offset);
}

/* ---- discovery ---- */

/* Decimal or 0x-hex, then (if suffix) an optional K/M/G as Linux's memparse. */
static bool parse_num(const char **s, bool suffix, uint64_t *ret)
{
	const char *p = *s;
	unsigned base = 10, digits = 0;
	uint64_t v = 0;

	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X'))
		base = 16, p += 2;
	for (;; p++, digits++) {
		unsigned c;

		if (*p >= '0' && *p <= '9')
			c = (unsigned)(*p - '0');
		else if (base == 16 && (*p | 0x20) >= 'a' && (*p | 0x20) <= 'f')
			c = (unsigned)((*p | 0x20) - 'a' + 10);
		else
			break;
		if (v > (~0UL - c) / base)
			return false;
		v = v * base + c;
	}
	if (!digits)
		return false;
	if (suffix) {
		unsigned shift = (*p | 0x20) == 'k' ? 10 : (*p | 0x20) == 'm' ? 20 : (*p | 0x20) == 'g' ? 30 : 0;

		if (shift) {
			if (v > (~0UL >> shift))
				return false;
			v <<= shift;
			p++;
		}
	}
	*s = p;
	*ret = v;
	return true;
}

static void add_dev(struct vdev *devs, unsigned *n, unsigned max,
                    uint64_t addr, uint64_t size, uint32_t irq, unsigned src)
{
	for (unsigned i = 0; i < *n; i++) {
		struct vdev *d = &devs[i];

		if (d->addr != addr)
			continue;
		if (d->src & src)
			fail("virtio: device %lx listed twice in %s", addr,
			     src == VDEV_SRC_ACPI ? "acpi" : "cmdline");
		if (d->size != size || d->irq != irq)
			fail("virtio: cmdline and acpi disagree on %lx: size %lx/%lx irq %u/%u",
			     addr, d->size, size, d->irq, irq);
		d->src |= src;
		return;
	}
	if (*n >= max)
		fail("virtio: more than %u devices", max);
	devs[(*n)++] = (struct vdev){ .addr = addr, .size = size, .irq = irq, .src = src };
}

/* virtio_mmio.device=<size>@<addr>:<irq>[:<id>] as Linux parses it. */
static void parse_cmdline(struct vdev *devs, unsigned *n, unsigned max)
{
	static const char key[] = "virtio_mmio.device=";
	const char *s = boot.cmdline;

	for (; *s; s++) {
		uint64_t size, addr, irq;
		const char *p = s;

		if ((s != boot.cmdline && s[-1] != ' ') || memcmp(s, key, sizeof(key) - 1))
			continue;
		p += sizeof(key) - 1;
		if (!parse_num(&p, true, &size) || *p++ != '@' || !parse_num(&p, true, &addr) ||
		    *p++ != ':' || !parse_num(&p, false, &irq) || irq > 255 || !size)
			fail("virtio: bad command line entry at '%s'", s);
		add_dev(devs, n, max, addr, size, (uint32_t)irq, VDEV_SRC_CMDLINE);
	}
}

/* AML PkgLength: lead byte bits 7:6 = extra bytes; returns the length. */
static uint32_t aml_pkglen(const uint8_t *p, unsigned *ret_bytes)
{
	unsigned extra = p[0] >> 6;
	uint32_t len = extra ? p[0] & 0x0f : p[0] & 0x3f;

	for (unsigned i = 0; i < extra; i++)
		len |= (uint32_t)p[1 + i] << (4 + 8 * i);
	*ret_bytes = 1 + extra;
	return len;
}

static bool read_le(const uint8_t *p, const uint8_t *end, unsigned n, uint32_t *ret)
{
	uint32_t v = 0;

	if (p + n > end)
		return false;
	for (unsigned i = 0; i < n; i++)
		v |= (uint32_t)p[i] << (8 * i);
	*ret = v;
	return true;
}

/* Resource template: Memory32Fixed (0x86), Extended Interrupt (0x89) or
 * a small IRQ descriptor (tag 4); stops at the end tag. */
static bool parse_resources(const uint8_t *p, const uint8_t *end, uint64_t *ret_addr,
                            uint64_t *ret_size, uint32_t *ret_irq)
{
	bool have_mem = false, have_irq = false;
	uint32_t v, w;

	while (p < end) {
		if (p[0] & 0x80) {  /* large item: tag, u16 length, body */
			uint32_t len;

			if (!read_le(p + 1, end, 2, &len) || p + 3 + len > end)
				return false;
			if (p[0] == 0x86 && len >= 9 && read_le(p + 4, end, 4, &v) && read_le(p + 8, end, 4, &w))
				*ret_addr = v, *ret_size = w, have_mem = true;
			else if (p[0] == 0x89 && len >= 6 && p[4] >= 1 && read_le(p + 5, end, 4, &v))
				*ret_irq = v, have_irq = true;
			p += 3 + len;
			continue;
		}
		if (((p[0] >> 3) & 0xf) == 0xf)   /* end tag */
			break;
		if (((p[0] >> 3) & 0xf) == 4 && read_le(p + 1, end, 2, &v) && v) {
			*ret_irq = (uint32_t)__builtin_ctz(v);
			have_irq = true;
		}
		p += 1 + (p[0] & 7);
	}
	return have_mem && have_irq;
}

/* Name(_CRS, Buffer(size) {...}) found after the _HID string at p. */
static bool parse_crs(const uint8_t *p, const uint8_t *end, uint64_t *ret_addr,
                      uint64_t *ret_size, uint32_t *ret_irq)
{
	const uint8_t *limit = p + 512 < end ? p + 512 : end;
	unsigned nb;
	uint32_t len;

	for (; p + 6 < limit; p++) {
		if (memcmp(p, "_CRS", 4) || p[4] != 0x11)  /* BufferOp */
			continue;
		p += 5;
		len = aml_pkglen(p, &nb);
		if (len < nb || p + len > end)
			return false;
		end = p + len;
		p += nb;
		switch (*p++) {    /* BufferSize: an integer */
		case 0x0a: p += 1; break;
		case 0x0b: p += 2; break;
		case 0x0c: p += 4; break;
		case 0x00: case 0x01: break;
		default: return false;
		}
		return parse_resources(p, end, ret_addr, ret_size, ret_irq);
	}
	return false;
}

/* Every StringPrefix "LNRO0005" is a _HID; its device's _CRS follows. */
static void parse_dsdt(struct vdev *devs, unsigned *n, unsigned max)
{
	uint32_t len = 0;
	const uint8_t *aml = acpi_dsdt_aml(&len), *end = aml + len;

	if (!aml)
		return;
	for (const uint8_t *p = aml + 1; p + 9 <= end; p++) {
		uint64_t addr = 0, size = 0;
		uint32_t irq = 0;

		if (p[-1] != 0x0d || memcmp(p, "LNRO0005", 9))  /* includes the NUL */
			continue;
		if (!parse_crs(p + 9, end, &addr, &size, &irq))
			fail("virtio: dsdt LNRO0005 at offset %lx has no usable _CRS",
			     (uint64_t)(p - aml) + 36);
		add_dev(devs, n, max, addr, size, irq, VDEV_SRC_ACPI);
	}
}

static const char *src_name(unsigned src)
{
	return src == (VDEV_SRC_CMDLINE | VDEV_SRC_ACPI) ? "both" :
	       src == VDEV_SRC_ACPI ? "acpi" : "cmdline";
}

static void sort_devs(struct vdev *devs, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j && devs[j - 1].addr > devs[j].addr; j--) {
			struct vdev t = devs[j];

			devs[j] = devs[j - 1];
			devs[j - 1] = t;
		}
}

unsigned virtio_discover(struct vdev *devs, unsigned max)
{
	unsigned n = 0, seen = 0;

	parse_cmdline(devs, &n, max);
	parse_dsdt(devs, &n, max);
	sort_devs(devs, n);
	for (unsigned i = 0; i < n; i++)
		seen |= devs[i].src;
	for (unsigned i = 0; i < n; i++) {
		struct vdev *d = &devs[i];

		/* One source may be absent altogether (a VMM without ACPI, or
		 * QEMU microvm with acpi=on); if both speak they must agree. */
		if (seen == (VDEV_SRC_CMDLINE | VDEV_SRC_ACPI) && d->src != seen)
			fail("virtio: device %lx only in %s", d->addr, src_name(d->src));
		if (!d->addr || d->addr >= (1UL << 32) || d->size < VM_CONFIG ||
		    d->size > (1UL << 32) - d->addr || boot_ram_covers(d->addr, d->size))
			fail("virtio: device window %lx+%lx unusable", d->addr, d->size);
		if (rd(d, VM_MAGIC) != VIRTIO_MAGIC)
			fail("virtio: device %lx bad magic %x", d->addr, rd(d, VM_MAGIC));
		d->id = rd(d, VM_DEVICE_ID);
		kprintf("MVMTEST virtio dev addr=%lx irq=%u id=%u src=%s\n", d->addr, d->irq, d->id,
		        src_name(d->src));
	}
	return n;
}

struct vdev *virtio_find(struct vdev *devs, unsigned ndevs, uint32_t id, unsigned n)
{
	for (unsigned i = 0; i < ndevs; i++)
		if (devs[i].id == id && !n--)
			return &devs[i];
	return NULL;
}

void virtio_list_run(const char *arg)
{
	static struct vdev devs[VIRTIO_DEVS_MAX];

	kprintf("MVMTEST virtio done n=%u\n", virtio_discover(devs, VIRTIO_DEVS_MAX));
}

/* ---- transport ---- */

uint32_t vdev_status(const struct vdev *d) { return rd(d, VM_STATUS); }
uint32_t vdev_cfg32(const struct vdev *d, unsigned off) { return rd(d, VM_CONFIG + off); }
uint32_t vdev_cfg_generation(const struct vdev *d) { return rd(d, VM_CONFIG_GEN); }
uint8_t vdev_cfg8(const struct vdev *d, unsigned off)
{
	return *(volatile uint8_t *)(d->addr + VM_CONFIG + off);
}

void vdev_reset(struct vdev *d)
{
	wr(d, VM_STATUS, 0);
	/* The spec lets a device take its time; ours should be immediate. */
	for (unsigned i = 0; i < 1000 && rd(d, VM_STATUS); i++)
		cpu_relax();
	if (rd(d, VM_STATUS))
		fail("virtio %lx: status %x after reset", d->addr, rd(d, VM_STATUS));
}

void vdev_init(struct vdev *d, uint64_t wanted)
{
	uint64_t offered;
	uint32_t st;

	if (rd(d, VM_VERSION) != 2)
		fail("virtio %lx: version %u, want 2", d->addr, rd(d, VM_VERSION));
	vdev_reset(d);
	wr(d, VM_STATUS, VIRTIO_S_ACK);
	wr(d, VM_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
	wr(d, VM_DEV_FEAT_SEL, 1);
	offered = (uint64_t)rd(d, VM_DEV_FEATURES) << 32;
	wr(d, VM_DEV_FEAT_SEL, 0);
	offered |= rd(d, VM_DEV_FEATURES);
	if (!(offered & (1UL << VIRTIO_F_VERSION_1)))
		fail("virtio %lx: no VIRTIO_F_VERSION_1 (features %lx)", d->addr, offered);
	d->features = offered & (wanted | 1UL << VIRTIO_F_VERSION_1);
	wr(d, VM_DRV_FEAT_SEL, 1);
	wr(d, VM_DRV_FEATURES, (uint32_t)(d->features >> 32));
	wr(d, VM_DRV_FEAT_SEL, 0);
	wr(d, VM_DRV_FEATURES, (uint32_t)d->features);
	wr(d, VM_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	st = rd(d, VM_STATUS);
	if (!(st & VIRTIO_S_FEATURES_OK))
		fail("virtio %lx: FEATURES_OK not accepted (status %x)", d->addr, st);
}

void vdev_driver_ok(struct vdev *d)
{
	wr(d, VM_STATUS, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK | VIRTIO_S_DRIVER_OK);
}

static void ioapic_route_gsi(uint32_t gsi, unsigned vec, uint32_t dest)
{
	uint32_t gbase = 0, pin, max_pin;
	uint64_t base = acpi_ioapic_for_gsi(gsi, &gbase);

	if (!base)
		base = IOAPIC_DEFAULT, gbase = 0;
	pin = gsi - gbase;
	mmio_write32(base, 0x01);  /* version: bits 23:16 = last entry */
	max_pin = (mmio_read32(base + 0x10) >> 16) & 0xff;
	if (pin > max_pin)
		fail("virtio: gsi %u beyond IOAPIC %lx (%u pins)", gsi, base, max_pin + 1);
	mmio_write32(base, 0x10 + 2 * pin + 1);
	mmio_write32(base + 0x10, dest << 24);
	mmio_write32(base, 0x10 + 2 * pin);
	mmio_write32(base + 0x10, vec);  /* fixed, physical, edge, active high */
}

/* The tick timer bounds every wait even when no device interrupt comes. */
void vdev_irq_enable(const struct vdev *d)
{
	static bool timer_on;

	if (!timer_on) {
		lapic_enable();
		lapic_write(LAPIC_TMR_DIV, 0x3);
		lapic_write(LAPIC_LVT_TMR, (1 << 17) | VEC_TIMER);
		lapic_write(LAPIC_TMR_INIT, TICK_COUNT);
		timer_on = true;
	}
	ioapic_route_gsi(d->irq, VEC_VIRTIO, lapic_id());
}

/* Sleeps until an interrupt or the next tick; acknowledges the device. */
static void vdev_sleep(const struct vdev *d)
{
	uint32_t isr;

	/* sti takes effect after hlt starts: no lost wake-up. */
	__asm__ volatile("sti; hlt; cli" ::: "memory");
	isr = rd(d, VM_INT_STATUS);
	if (isr)
		wr(d, VM_INT_ACK, isr);
}

/* A completion seen by polling left its interrupt pending: acknowledge it
 * and let it in, so irqs= counts what the device raised.  hlt rather than a
 * one-instruction sti window: where KVM emulates guest kernel code the
 * pending interrupt may not be injected inside that window, while hlt
 * returns as soon as it is (or at the next tick if it was already taken). */
static void vdev_take_irq(const struct vdev *d)
{
	uint32_t isr = rd(d, VM_INT_STATUS);

	if (isr) {
		wr(d, VM_INT_ACK, isr);
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
}

void virtio_irqs_report(void)
{
	kprintf("MVMTEST virtio irqs=%u\n", virtio_irqs);
}

/* ---- split virtqueues ---- */

static void wr64(const struct vdev *d, unsigned off, uint64_t v)
{
	wr(d, off, (uint32_t)v);
	wr(d, off + 4, (uint32_t)(v >> 32));
}

void vq_setup(struct vq *q, const struct vdev *d, unsigned index, uint64_t area_off)
{
	uint8_t *mem = virtio_dma(area_off, VIRTIO_RING_AREA);
	uint32_t max;

	wr(d, VM_QUEUE_SEL, index);
	if (rd(d, VM_QUEUE_READY))
		fail("virtio %lx: queue %u ready before setup", d->addr, index);
	max = rd(d, VM_QUEUE_NUM_MAX);
	if (!max)
		fail("virtio %lx: queue %u not available", d->addr, index);
	user_memset(mem, 0, VIRTIO_RING_AREA);
	*q = (struct vq){
		.dev = d, .index = index,
		.size = (uint16_t)(max < VIRTIO_QUEUE_MAX ? max : VIRTIO_QUEUE_MAX),
		.desc = (void *)mem,
		.avail = (void *)(mem + 16 * VIRTIO_QUEUE_MAX),
		.used = (void *)(mem + 0x1000),
	};
	wr(d, VM_QUEUE_NUM, q->size);
	wr64(d, VM_QUEUE_DESC, (uint64_t)q->desc);
	wr64(d, VM_QUEUE_DRIVER, (uint64_t)q->avail);
	wr64(d, VM_QUEUE_DEVICE, (uint64_t)q->used);
	wr(d, VM_QUEUE_READY, 1);
}

void vq_set_desc(struct vq *q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	volatile struct vring_desc *dp = &q->desc[i % q->size];

	dp->addr = addr;
	dp->len = len;
	dp->flags = flags;
	dp->next = next;
}

void vq_submit(struct vq *q, uint16_t head)
{
	q->avail->ring[q->avail_idx % q->size] = head;
	/* x86 keeps stores in order; the barrier only stops the compiler. */
	__asm__ volatile("" ::: "memory");
	q->avail->idx = ++q->avail_idx;
	/* Stores are not reordered on x86 and the notify's exit drains them. */
	__asm__ volatile("" ::: "memory");
	wr(q->dev, VM_QUEUE_NOTIFY, q->index);
}

/* Takes a used entry if one is there, without waiting. */
static bool vq_poll(struct vq *q, struct vring_used_elem *ret)
{
	volatile struct vring_used_elem *e;

	if (q->used->idx == q->used_seen)
		return false;
	__asm__ volatile("" ::: "memory");
	e = &q->used->ring[q->used_seen % q->size];
	ret->id = e->id;
	ret->len = e->len;
	q->used_seen++;
	return true;
}

bool vq_wait(struct vq *q, unsigned ticks, struct vring_used_elem *ret)
{
	uint32_t start = timer_ticks;

	for (;;) {
		if (vq_poll(q, ret)) {
			vdev_take_irq(q->dev);
			return true;
		}
		if (timer_ticks - start > ticks)
			return false;
		vdev_sleep(q->dev);
		if (rd(q->dev, VM_STATUS) & VIRTIO_S_NEEDS_RESET)
			return vq_poll(q, ret);
	}
}
