/* SPDX-License-Identifier: MIT */
/*
 * balloon:N: a virtio-balloon driver.  Touches N MiB (ring 3), reports
 * them free (free page reporting), touches them again, then follows the
 * host's target by inflating and deflating pages of that range, answering
 * statistics requests, until the host types 'q'.  The host types a key
 * after "touched" and after "reported" (it measures its RSS there).  'o'
 * plays a guest out of memory (deflate-on-OOM, which it negotiated): it
 * takes every page back from the balloon without being asked, uses them,
 * and then leaves the target unmet until the host sets a new one.
 */
#include "virtio.h"
#include "boot.h"
#include "user.h"

#define F_STATS_VQ     1
#define F_DEFLATE_OOM  2
#define F_REPORTING    5
#define Q_INFLATE      0
#define Q_DEFLATE      1
#define Q_STATS        2
#define Q_REPORT       3
#define CFG_NUM_PAGES  0
#define CFG_ACTUAL     4
#define S_MEMFREE      4
#define S_MEMTOT       5
#define S_AVAIL        6

#define REGION_BASE    (64UL << 20)
#define PAGE           4096UL
#define REPORT_CHUNK   (4UL << 20)     /* bytes per reported range */
#define REPORT_DESCS   16              /* ranges per report chain */
#define PFN_BATCH      1024            /* PFNs per inflate/deflate chain */
#define PFN_OFF        0x10000UL       /* DMA offsets of the buffers */
#define STATS_OFF      0x20000UL
#define WAIT_TICKS     (2 * VIRTIO_TICKS_PER_SEC)
#define KEY_TICKS      (60 * VIRTIO_TICKS_PER_SEC)

struct stat_entry { uint16_t tag; uint64_t val; } __attribute__((packed));

struct balloon {
	struct vdev *dev;
	struct vq q[4];
	uint64_t pages;                  /* of the region */
	uint32_t actual;                 /* pages [0, actual) of the region are in the balloon */
	uint32_t oom_target;             /* the target an OOM deflate left unmet; 0 none */
	uint32_t *pfns;
	struct stat_entry *stats;
	unsigned stat_updates;
};

static struct vdev devs[VIRTIO_DEVS_MAX];

static void submit_wait(struct vq *q, const char *what)
{
	struct vring_used_elem e;

	vq_submit(q, 0);
	if (!vq_wait(q, WAIT_TICKS, &e))
		fail("balloon: no completion on %s (status %x)", what, vdev_status(q->dev));
}

/* Sends pages [from, to) of the region on queue qi, PFN_BATCH at a time. */
static void send_pages(struct balloon *b, unsigned qi, uint64_t from, uint64_t to)
{
	while (from < to) {
		unsigned n = to - from < PFN_BATCH ? (unsigned)(to - from) : PFN_BATCH;

		for (unsigned i = 0; i < n; i++)
			b->pfns[i] = (uint32_t)((REGION_BASE >> 12) + from + i);
		vq_set_desc(&b->q[qi], 0, (uint64_t)b->pfns, n * 4, 0, 0);
		submit_wait(&b->q[qi], qi == Q_INFLATE ? "inflate" : "deflate");
		from += n;
	}
}

static void report_free(struct balloon *b, uint64_t bytes)
{
	for (uint64_t off = 0; off < bytes; ) {
		unsigned n = 0;

		for (; n < REPORT_DESCS && off < bytes; n++, off += REPORT_CHUNK) {
			uint64_t len = bytes - off < REPORT_CHUNK ? bytes - off : REPORT_CHUNK;

			vq_set_desc(&b->q[Q_REPORT], n, REGION_BASE + off, (uint32_t)len,
			            VRING_DESC_F_WRITE | (n + 1 < REPORT_DESCS && off + len < bytes ?
			                                  VRING_DESC_F_NEXT : 0), (uint16_t)(n + 1));
		}
		submit_wait(&b->q[Q_REPORT], "reporting");
	}
}

/* The statistics buffer: the host returns it when it wants fresh numbers. */
static void stats_post(struct balloon *b)
{
	b->stats[0] = (struct stat_entry){ S_MEMTOT, b->pages * PAGE };
	b->stats[1] = (struct stat_entry){ S_MEMFREE, (b->pages - b->actual) * PAGE };
	b->stats[2] = (struct stat_entry){ S_AVAIL, 1000 + b->stat_updates };
	vq_set_desc(&b->q[Q_STATS], 0, (uint64_t)b->stats, 3 * sizeof(struct stat_entry), 0, 0);
	vq_submit(&b->q[Q_STATS], 0);
}

static void wait_key(void)
{
	uint32_t start = timer_ticks;
	char c;

	while (!serial_getc(&c)) {
		if (timer_ticks - start > KEY_TICKS)
			fail("balloon: no key from the host");
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
}

/* Moves the balloon to the target, as far as the region allows. */
static void follow(struct balloon *b, uint32_t target)
{
	uint32_t want = target < b->pages ? target : (uint32_t)b->pages;

	if (want > b->actual)
		send_pages(b, Q_INFLATE, b->actual, want);
	else
		send_pages(b, Q_DEFLATE, want, b->actual);
	b->actual = want;
	mmio_write32(b->dev->addr + 0x100 + CFG_ACTUAL, b->actual);
	kprintf("MVMTEST balloon actual=%u target=%u\n", b->actual, target);
}

/* Out of memory: deflate everything the balloon holds, unasked, and
 * touch it (ring 3), as a guest that needs the memory would. */
static void oom(struct balloon *b)
{
	uint32_t had = b->actual;

	b->oom_target = vdev_cfg32(b->dev, CFG_NUM_PAGES);
	if (!b->oom_target)
		b->oom_target = 0xffffffffu;
	send_pages(b, Q_DEFLATE, 0, had);
	b->actual = 0;
	mmio_write32(b->dev->addr + 0x100 + CFG_ACTUAL, 0);
	user_touch(REGION_BASE, (uint64_t)had * PAGE);
	kprintf("MVMTEST balloon oom deflated=%u target=%u actual=0\n", had,
	        vdev_cfg32(b->dev, CFG_NUM_PAGES));
}

static void run_loop(struct balloon *b)
{
	struct vring_used_elem e;
	uint32_t target;
	char c;

	for (;;) {
		target = vdev_cfg32(b->dev, CFG_NUM_PAGES);
		if (b->oom_target && target != b->oom_target)
			b->oom_target = 0;      /* a new target: follow it again */
		if (target != b->actual && !b->oom_target &&
		    !(target > b->pages && b->actual == b->pages))
			follow(b, target);
		if (vq_wait(&b->q[Q_STATS], 0, &e)) {
			b->stat_updates++;
			stats_post(b);
		}
		if (serial_getc(&c)) {
			if (c == 'q')
				return;
			if (c == 'o')
				oom(b);
		}
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
}

void balloon_run(const char *arg)
{
	static struct balloon b;
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);
	uint64_t mib, want = 1UL << F_STATS_VQ | 1UL << F_DEFLATE_OOM | 1UL << F_REPORTING;

	if (!arg || !parse_u64(arg, &mib) || mib == 0 || mib > 1024 || mib % 4)
		fail("balloon: bad argument '%s'", arg ? arg : "");
	if (!boot_ram_covers(REGION_BASE, mib << 20) || REGION_BASE + (mib << 20) > (1UL << 32))
		fail("balloon: %lu MiB at 64 MiB is not RAM below 4 GiB", mib);
	b.dev = virtio_find(devs, n, VIRTIO_ID_BALLOON, 0);
	if (!b.dev)
		fail("balloon: no virtio-balloon device");
	vdev_init(b.dev, want);
	if ((b.dev->features & want) != want)
		fail("balloon: features %lx lack stats, deflate-on-oom or reporting", b.dev->features);
	for (unsigned i = 0; i < 4; i++)
		vq_setup(&b.q[i], b.dev, i, i * VIRTIO_RING_AREA);
	vdev_irq_enable(b.dev);
	vdev_driver_ok(b.dev);
	b.pages = (mib << 20) / PAGE;
	b.pfns = virtio_dma(PFN_OFF, PFN_BATCH * 4);
	b.stats = virtio_dma(STATS_OFF, 3 * sizeof(struct stat_entry));
	stats_post(&b);
	/* the UART only takes host input while its receive interrupt is on;
	 * the line stays masked (PIC and IOAPIC), the keys are polled */
	serial_enable_irq();
	kprintf("MVMTEST balloon ready target=%u\n", vdev_cfg32(b.dev, CFG_NUM_PAGES));
	user_touch(REGION_BASE, mib << 20);
	kprintf("MVMTEST balloon touched mib=%lu\n", mib);
	wait_key();
	report_free(&b, mib << 20);
	kprintf("MVMTEST balloon reported mib=%lu\n", mib);
	wait_key();
	user_touch(REGION_BASE, mib << 20);
	kprintf("MVMTEST balloon retouched mib=%lu\n", mib);
	run_loop(&b);
	kprintf("MVMTEST balloon done actual=%u stats=%u\n", b.actual, b.stat_updates);
	vdev_reset(b.dev);
}
