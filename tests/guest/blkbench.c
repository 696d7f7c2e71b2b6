/* SPDX-License-Identifier: MIT */
/*
 * blkbench:N[,K]: write N MiB to the first virtio-blk, read it back, flush,
 * in requests of at most K KiB (default and most: 1 MiB).
 * Built to measure the device path, not the guest: requests are as large as
 * the device allows, as many are in flight as the queue holds, they are
 * published in batches with one notification each, and completions are
 * reaped from the used ring without touching device registers.  Pattern
 * generation and checking run in ring 3 at native speed, outside the timed
 * phases.
 */
#include "virtio.h"
#include "boot.h"
#include "user.h"

#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_FLUSH    9
#define CFG_SIZE_MAX          8
#define CFG_SEG_MAX           12

#define BLK_T_IN       0
#define BLK_T_OUT      1
#define BLK_T_FLUSH    4
#define BLK_S_OK       0
#define SECTOR         512

/* The N MiB buffer: above the DMA area, within the identity-mapped 4 GiB. */
#define BUF_BASE       (64UL << 20)
#define BUF_LIMIT      (1UL << 32)
/* DMA area: the ring, then one header and one status byte per slot. */
#define RING_OFF       0x0000UL
#define HDR_OFF        0x10000UL
#define STATUS_OFF     0x11000UL
#define REQ_MAX        (1UL << 20)   /* bytes per request at most */
#define SLOTS_MAX      32            /* requests in flight at most */
#define WAIT_TICKS     (2 * VIRTIO_TICKS_PER_SEC)

struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

/* Shared by the CPL0 and ring-3 halves: everything the ring-3 half touches
 * is a plain pointer computed (and checked) once in CPL0. */
struct bench {
	struct vdev *dev;
	struct vq q;
	uint8_t *buf;
	struct blk_hdr *hdr;        /* one per slot */
	volatile uint8_t *status;   /* one per slot */
	uint64_t bytes;      /* N MiB */
	uint64_t req_bytes;  /* data bytes per request (the last may be short) */
	uint64_t req_max;    /* the K of blkbench:N,K in bytes */
	uint64_t seg_bytes;  /* data bytes per descriptor */
	unsigned descs;      /* descriptors per request: header, segments, status */
	unsigned slots;      /* requests in flight at most */
	uint32_t busy;       /* slot bitmap */
	uint32_t type;       /* this phase's request type */
	uint64_t nreq, next, done;
	struct vring_used_elem bad;  /* a completion that failed the checks */
};

static struct vdev devs[VIRTIO_DEVS_MAX];

/* Largest request: one descriptor per size_max bytes (unlimited if the
 * device sets no size_max), no more data descriptors than seg_max. */
static void bench_geometry(struct bench *b)
{
	uint64_t seg = b->req_max, nseg;

	if (b->dev->features & 1UL << VIRTIO_BLK_F_SIZE_MAX) {
		uint32_t size_max = vdev_cfg32(b->dev, CFG_SIZE_MAX) & ~(SECTOR - 1U);

		if (size_max && size_max < seg)
			seg = size_max;
	}
	nseg = b->req_max / seg;
	if (nseg > b->q.size - 2UL)
		nseg = b->q.size - 2UL;
	if (b->dev->features & 1UL << VIRTIO_BLK_F_SEG_MAX) {
		uint32_t seg_max = vdev_cfg32(b->dev, CFG_SEG_MAX);

		if (seg_max && seg_max < nseg)
			nseg = seg_max;
	}
	b->seg_bytes = seg;
	b->req_bytes = seg * nseg;
	b->descs = (unsigned)nseg + 2;
	b->slots = b->q.size / b->descs;
	if (b->slots > SLOTS_MAX)
		b->slots = SLOTS_MAX;
}

/*
 * Ring 3 from here to u_bench_step: CPL0 is emulated slowly on this host,
 * so building chains and reaping completions happen at native speed; only
 * the notification (an MMIO write, which exits the same from any ring) and
 * the sleep need the device or CPL0.
 */

/* Writes request k's chain into slot's descriptors; returns its head. */
static uint16_t bench_chain(struct bench *b, unsigned slot, uint64_t k)
{
	uint64_t off = k * b->req_bytes, left = b->bytes - off;
	uint64_t len = left < b->req_bytes ? left : b->req_bytes;
	uint16_t d = (uint16_t)(slot * b->descs), head = d;
	uint16_t dir = b->type == BLK_T_IN ? VRING_DESC_F_WRITE : 0;

	b->hdr[slot] = (struct blk_hdr){ .type = b->type, .sector = off / SECTOR };
	b->status[slot] = 0xff;
	vq_set_desc(&b->q, d, (uint64_t)&b->hdr[slot], sizeof(b->hdr[slot]), VRING_DESC_F_NEXT,
	            (uint16_t)(d + 1));
	for (uint64_t s = 0; s < len; s += b->seg_bytes, d++) {
		uint64_t n = len - s < b->seg_bytes ? len - s : b->seg_bytes;

		vq_set_desc(&b->q, d + 1U, (uint64_t)b->buf + off + s, (uint32_t)n,
		            VRING_DESC_F_NEXT | dir, (uint16_t)(d + 2));
	}
	vq_set_desc(&b->q, d + 1U, (uint64_t)&b->status[slot], 1, VRING_DESC_F_WRITE, 0);
	return head;
}

/* Fills every free slot; all but the last head go into the available ring
 * unpublished, and vq_submit publishes the lot with one notification. */
static void bench_post(struct bench *b)
{
	uint16_t head = 0;
	bool staged = false;

	for (unsigned slot = 0; slot < b->slots && b->next < b->nreq; slot++) {
		if (b->busy & 1U << slot)
			continue;
		if (staged)
			b->q.avail->ring[b->q.avail_idx++ % b->q.size] = head;
		head = bench_chain(b, slot, b->next++);
		b->busy |= 1U << slot;
		staged = true;
	}
	if (staged)
		vq_submit(&b->q, head);
}

/* Takes a used entry without waiting and without a register access. */
static bool bench_reap(struct vq *q, struct vring_used_elem *ret)
{
	volatile struct vring_used_elem *e;

	if (q->used->idx == q->used_seen)
		return false;
	__asm__ volatile("" ::: "memory");
	e = &q->used->ring[q->used_seen++ % q->size];
	ret->id = e->id;
	ret->len = e->len;
	return true;
}

/* False (and the entry kept in b->bad) for a completion that is not a
 * head in flight or whose status is not OK. */
static bool bench_complete(struct bench *b, const struct vring_used_elem *e)
{
	unsigned slot = e->id / b->descs;

	if (e->id % b->descs || slot >= b->slots || !(b->busy & 1U << slot) ||
	    b->status[slot] != BLK_S_OK) {
		b->bad = *e;
		return false;
	}
	b->busy &= ~(1U << slot);
	b->done++;
	return true;
}

/* Reaps what completed, then posts what fits: 1 on a bad completion. */
static uint64_t u_bench_step(void *arg)
{
	struct bench *b = arg;
	struct vring_used_elem e;

	while (bench_reap(&b->q, &e))
		if (!bench_complete(b, &e))
			return 1;
	bench_post(b);
	return 0;
}

/* Back in CPL0. */
static noreturn void bench_fail(const struct bench *b)
{
	unsigned slot = b->bad.id / b->descs;

	if (b->bad.id % b->descs || slot >= b->slots || !(b->busy & 1U << slot))
		fail("blkbench: completion for descriptor %u, not a head in flight", b->bad.id);
	fail("blkbench: %s sector %lu status %u", b->type == BLK_T_IN ? "read" : "write",
	     b->hdr[slot].sector, b->status[slot]);
}

/* Moves the whole buffer; returns the TSC cycles it took. */
static uint64_t bench_phase(struct bench *b, uint32_t type)
{
	uint64_t t0 = rdtsc();
	struct vring_used_elem e;

	b->type = type;
	b->nreq = (b->bytes + b->req_bytes - 1) / b->req_bytes;
	b->next = b->done = 0;
	for (;;) {
		if (user_run(u_bench_step, b))
			bench_fail(b);
		if (b->done == b->nreq)
			break;
		if (!vq_wait(&b->q, WAIT_TICKS, &e))
			fail("blkbench: %s request got no completion (status %x)",
			     type == BLK_T_IN ? "read" : "write", vdev_status(b->dev));
		if (!bench_complete(b, &e))
			bench_fail(b);
	}
	return rdtsc() - t0;
}

static void bench_flush(struct bench *b)
{
	struct vring_used_elem e;

	if (!(b->dev->features & 1UL << VIRTIO_BLK_F_FLUSH))
		fail("blkbench: device does not offer VIRTIO_BLK_F_FLUSH");
	b->hdr[0] = (struct blk_hdr){ .type = BLK_T_FLUSH };
	b->status[0] = 0xff;
	vq_set_desc(&b->q, 0, (uint64_t)&b->hdr[0], sizeof(b->hdr[0]), VRING_DESC_F_NEXT, 1);
	vq_set_desc(&b->q, 1, (uint64_t)&b->status[0], 1, VRING_DESC_F_WRITE, 0);
	vq_submit(&b->q, 0);
	if (!vq_wait(&b->q, WAIT_TICKS, &e) || e.id != 0 || b->status[0] != BLK_S_OK)
		fail("blkbench: flush failed (status %u)", b->status[0]);
}

static void bench_open(struct bench *b, uint64_t mib)
{
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);
	uint64_t cap;

	b->dev = virtio_find(devs, n, VIRTIO_ID_BLK, 0);
	if (!b->dev)
		fail("blkbench: no virtio-blk device");
	b->bytes = mib << 20;
	if (b->bytes > BUF_LIMIT - BUF_BASE || !boot_ram_covers(BUF_BASE, b->bytes))
		fail("blkbench: %lu MiB at %lu MiB is not RAM below 4 GiB", mib, BUF_BASE >> 20);
	b->buf = (uint8_t *)BUF_BASE;
	b->hdr = virtio_dma(HDR_OFF, SLOTS_MAX * sizeof(*b->hdr));
	b->status = virtio_dma(STATUS_OFF, SLOTS_MAX);
	vdev_init(b->dev, 1UL << VIRTIO_BLK_F_SIZE_MAX | 1UL << VIRTIO_BLK_F_SEG_MAX |
	                  1UL << VIRTIO_BLK_F_FLUSH);
	vq_setup(&b->q, b->dev, 0, RING_OFF);
	vdev_irq_enable(b->dev);
	vdev_driver_ok(b->dev);
	cap = (uint64_t)vdev_cfg32(b->dev, 4) << 32 | vdev_cfg32(b->dev, 0);
	if (cap < b->bytes / SECTOR)
		fail("blkbench: capacity %lu sectors, need %lu", cap, b->bytes / SECTOR);
	if (b->q.size < 3)
		fail("blkbench: queue of %u entries", b->q.size);
	bench_geometry(b);
}

/* "N" or "N,K": MiB to move, KiB per request at most (1 to 1024). */
static bool parse_args(const char *arg, uint64_t *ret_mib, uint64_t *ret_req)
{
	char buf[32];
	unsigned i = 0;
	uint64_t kib = REQ_MAX >> 10;

	for (; arg[i] && arg[i] != ',' && i < sizeof(buf) - 1; i++)
		buf[i] = arg[i];
	buf[i] = '\0';
	if (!parse_u64(buf, ret_mib) || *ret_mib > (BUF_LIMIT >> 20))
		return false;
	if (arg[i] == ',' && (!parse_u64(arg + i + 1, &kib) || kib == 0 || kib > (REQ_MAX >> 10)))
		return false;
	*ret_req = kib << 10;
	return true;
}

void blkbench_run(const char *arg)
{
	static struct bench b;
	uint64_t mib, seed = rdtsc(), tsc, bad;

	if (!arg || !parse_args(arg, &mib, &b.req_max))
		fail("blkbench: bad argument '%s'", arg ? arg : "");
	kprintf("MVMTEST blkbench start mib=%lu\n", mib);
	bench_open(&b, mib);
	/* A per-boot seed: data left on the disk by an earlier run cannot pass. */
	user_fill64(b.buf, b.bytes, seed);
	tsc = bench_phase(&b, BLK_T_OUT);
	kprintf("MVMTEST blkbench write done reqs=%lu tsc=%lu\n", b.nreq, tsc);
	user_memset(b.buf, 0, b.bytes);
	tsc = bench_phase(&b, BLK_T_IN);
	bad = user_check64(b.buf, b.bytes, seed);
	if (bad != b.bytes)
		fail("blkbench: read mismatch at byte %lu", bad);
	kprintf("MVMTEST blkbench read done reqs=%lu tsc=%lu ok\n", b.nreq, tsc);
	tsc = rdtsc();
	bench_flush(&b);
	kprintf("MVMTEST blkbench flush done tsc=%lu\n", rdtsc() - tsc);
	vdev_reset(b.dev);
	virtio_irqs_report();
}
