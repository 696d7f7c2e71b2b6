/* SPDX-License-Identifier: MIT */
/* The blk and hostile scenarios: a virtio-blk driver, well- and ill-behaved. */
#include "virtio.h"
#include "user.h"

#define VIRTIO_BLK_F_RO     5
#define VIRTIO_BLK_F_FLUSH  9

#define BLK_T_IN       0
#define BLK_T_OUT      1
#define BLK_T_FLUSH    4
#define BLK_T_GET_ID   8
#define BLK_S_OK       0
#define BLK_S_IOERR    1
#define BLK_ID_BYTES   20
#define SECTOR         512

/* DMA area layout: two queues, request header/status/id, then data. */
#define RING0_OFF      0x0000UL
#define RING1_OFF      0x2000UL
#define HDR_OFF        0x10000UL
#define STATUS_OFF     0x10100UL
#define ID_OFF         0x10200UL
#define DATA_OFF       0x100000UL
#define DATA_SIZE      0x100000UL

#define PATTERN_BYTES  (1UL << 20)  /* the host's pattern: first MiB */
#define CHUNK          0x10000UL    /* bytes per read/write request */
#define REQ_TICKS      (2 * VIRTIO_TICKS_PER_SEC)

struct blk_hdr { uint32_t type, reserved; uint64_t sector; };

static struct vdev devs[VIRTIO_DEVS_MAX];

static volatile uint8_t *blk_status(void) { return virtio_dma(STATUS_OFF, 1); }
static uint8_t *blk_data(void) { return virtio_dma(DATA_OFF, DATA_SIZE); }

/* Header, optional data, status: descriptors 0, 1, 2. */
static void blk_post(struct vq *q, uint32_t type, uint64_t sector, uint64_t data, uint32_t len)
{
	struct blk_hdr *h = virtio_dma(HDR_OFF, sizeof(*h));
	uint16_t write = type == BLK_T_OUT ? 0 : VRING_DESC_F_WRITE;

	*h = (struct blk_hdr){ .type = type, .sector = sector };
	*blk_status() = 0xff;
	vq_set_desc(q, 0, (uint64_t)h, sizeof(*h), VRING_DESC_F_NEXT, len ? 1 : 2);
	if (len)
		vq_set_desc(q, 1, data, len, VRING_DESC_F_NEXT | write, 2);
	vq_set_desc(q, 2, VIRTIO_DMA_BASE + STATUS_OFF, 1, VRING_DESC_F_WRITE, 0);
	vq_submit(q, 0);
}

static uint8_t blk_request_at(struct vq *q, uint32_t type, uint64_t sector, uint64_t data,
                              uint32_t len)
{
	struct vring_used_elem e;

	blk_post(q, type, sector, data, len);
	if (!vq_wait(q, REQ_TICKS, &e))
		fail("blk: request type %u sector %lu got no completion (status %x)", type, sector,
		     vdev_status(q->dev));
	if (e.id != 0)
		fail("blk: completion for descriptor %u, posted 0", e.id);
	return *blk_status();
}

/* A request whose data (if any) is at the start of the data buffer. */
static uint8_t blk_request(struct vq *q, uint32_t type, uint64_t sector, uint32_t len)
{
	return blk_request_at(q, type, sector, VIRTIO_DMA_BASE + DATA_OFF, len);
}

/* Reads or writes [sector, sector + len / 512) from/to the data buffer. */
static void blk_rw(struct vq *q, uint32_t type, uint64_t sector, uint64_t len)
{
	for (uint64_t off = 0; off < len; off += CHUNK) {
		uint8_t st = blk_request_at(q, type, sector + off / SECTOR,
		                            VIRTIO_DMA_BASE + DATA_OFF + off, CHUNK);

		if (st != BLK_S_OK)
			fail("blk: %s sector %lu status %u", type == BLK_T_IN ? "read" : "write",
			     sector + off / SECTOR, st);
	}
}

static uint64_t blk_capacity(const struct vdev *d)
{
	uint32_t gen, lo, hi;

	/* A 64-bit field read in two halves: retry if the config generation
	 * changed under us (bounded: the VMM may be buggy). */
	for (unsigned i = 0; i < 100; i++) {
		gen = vdev_cfg_generation(d);
		lo = vdev_cfg32(d, 0);
		hi = vdev_cfg32(d, 4);
		if (gen == vdev_cfg_generation(d))
			return (uint64_t)hi << 32 | lo;
	}
	fail("blk: config generation keeps changing");
}

static void blk_print_id(struct vq *q, uint64_t capacity)
{
	char id[BLK_ID_BYTES + 1];
	const char *raw = virtio_dma(ID_OFF, BLK_ID_BYTES);
	uint8_t st;
	unsigned i;

	memset((void *)raw, 0, BLK_ID_BYTES);
	st = blk_request_at(q, BLK_T_GET_ID, 0, VIRTIO_DMA_BASE + ID_OFF, BLK_ID_BYTES);
	for (i = 0; st == BLK_S_OK && i < BLK_ID_BYTES && raw[i]; i++)
		id[i] = raw[i] > ' ' && raw[i] < 0x7f ? raw[i] : '?';
	id[i] = '\0';
	kprintf("MVMTEST blk id=%s capacity=%lu\n", id, capacity);
}

static void blk_open(struct vdev *d, struct vq *q, uint64_t area)
{
	vdev_init(d, 1UL << VIRTIO_BLK_F_FLUSH | 1UL << VIRTIO_BLK_F_RO);
	vq_setup(q, d, 0, area);
	vdev_irq_enable(d);
	vdev_driver_ok(d);
}

/* Device 1, attached read-only: a write must fail with IOERR. */
static void blk_ro_write(struct vdev *d)
{
	struct vq q;

	blk_open(d, &q, RING1_OFF);
	user_pattern_fill(blk_data(), SECTOR, 0, 13, 5);
	kprintf("MVMTEST blk ro-write status=%u\n", blk_request(&q, BLK_T_OUT, 0, SECTOR));
	vdev_reset(d);
}

void blk_run(const char *arg)
{
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);
	struct vdev *d = virtio_find(devs, n, VIRTIO_ID_BLK, 0), *ro;
	uint64_t cap, bad;
	struct vq q;

	if (!d)
		fail("blk: no virtio-blk device");
	blk_open(d, &q, RING0_OFF);
	cap = blk_capacity(d);
	blk_print_id(&q, cap);
	if (cap < 2 * PATTERN_BYTES / SECTOR)
		fail("blk: capacity %lu sectors, need %lu", cap, 2 * PATTERN_BYTES / SECTOR);

	blk_rw(&q, BLK_T_IN, 0, PATTERN_BYTES);
	bad = user_pattern_check(blk_data(), PATTERN_BYTES, 0, 7, 3);
	if (bad != PATTERN_BYTES)
		fail("blk: read mismatch at byte %lu: %x", bad, blk_data()[bad]);
	kprintf("MVMTEST blk read ok\n");

	user_pattern_fill(blk_data(), PATTERN_BYTES, PATTERN_BYTES, 13, 5);
	blk_rw(&q, BLK_T_OUT, PATTERN_BYTES / SECTOR, PATTERN_BYTES);
	if (!(d->features & 1UL << VIRTIO_BLK_F_FLUSH))
		fail("blk: device does not offer VIRTIO_BLK_F_FLUSH");
	if (blk_request(&q, BLK_T_FLUSH, 0, 0) != BLK_S_OK)
		fail("blk: flush failed");
	/* Read the second MiB back: the write reached the device's backing. */
	user_memset(blk_data(), 0, PATTERN_BYTES);
	blk_rw(&q, BLK_T_IN, PATTERN_BYTES / SECTOR, PATTERN_BYTES);
	bad = user_pattern_check(blk_data(), PATTERN_BYTES, PATTERN_BYTES, 13, 5);
	if (bad != PATTERN_BYTES)
		fail("blk: read-back mismatch at byte %lu", bad);
	kprintf("MVMTEST blk write ok\n");

	/* A request crossing the end of the disk must be refused. */
	kprintf("MVMTEST blk past-end status=%u\n", blk_request(&q, BLK_T_IN, cap - 1, 2 * SECTOR));
	vdev_reset(d);
	ro = virtio_find(devs, n, VIRTIO_ID_BLK, 1);
	if (ro)
		blk_ro_write(ro);
	virtio_irqs_report();
}

/* ---- hostile: malformed chains, one per device reset ---- */

#define BAD_ADDR 0xfffff00000000000UL

enum hostile_case { H_LOOP, H_BADADDR, H_BIGLEN, H_BADNEXT, H_LONG, H_BADHEAD, H_COUNT };
static const char *const hostile_names[H_COUNT] = {
	"loop", "badaddr", "biglen", "badnext", "long", "badhead",
};

/* Builds the malformed chain; returns the head to publish. */
static uint16_t hostile_build(struct vq *q, enum hostile_case c)
{
	struct blk_hdr *h = virtio_dma(HDR_OFF, sizeof(*h));
	uint64_t data = VIRTIO_DMA_BASE + DATA_OFF, st = VIRTIO_DMA_BASE + STATUS_OFF;
	const uint16_t nw = VRING_DESC_F_NEXT | VRING_DESC_F_WRITE;

	*h = (struct blk_hdr){ .type = c == H_LONG ? BLK_T_OUT : BLK_T_IN, .sector = 2048 };
	vq_set_desc(q, 0, (uint64_t)h, sizeof(*h), VRING_DESC_F_NEXT, 1);
	vq_set_desc(q, 1, data, SECTOR, nw, 2);
	vq_set_desc(q, 2, st, 1, VRING_DESC_F_WRITE, 0);
	switch (c) {
	case H_LOOP:     vq_set_desc(q, 0, (uint64_t)h, sizeof(*h), VRING_DESC_F_NEXT, 0); break;
	case H_BADADDR:  vq_set_desc(q, 1, BAD_ADDR, SECTOR, nw, 2); break;
	case H_BIGLEN:   vq_set_desc(q, 1, data, 0xffffffff, nw, 2); break;
	case H_BADNEXT:  vq_set_desc(q, 0, (uint64_t)h, sizeof(*h), VRING_DESC_F_NEXT, q->size); break;
	case H_LONG:
		/* Every descriptor chains to the next and the last to the
		 * first: a write request that never ends. */
		for (unsigned i = 1; i < q->size; i++)
			vq_set_desc(q, i, data, SECTOR, VRING_DESC_F_NEXT, (uint16_t)((i + 1) % q->size));
		break;
	case H_BADHEAD:  return (uint16_t)(q->size + 3);
	case H_COUNT:    break;
	}
	return 0;
}

static void hostile_case(struct vdev *d, enum hostile_case c)
{
	struct vring_used_elem e;
	struct vq q;

	blk_open(d, &q, RING0_OFF);
	vq_submit(&q, hostile_build(&q, c));
	/* Either NEEDS_RESET (ends the wait early) or nothing: 100 ms. */
	vq_wait(&q, VIRTIO_TICKS_PER_SEC / 10, &e);
	kprintf("MVMTEST hostile case=%s status=%x\n", hostile_names[c], vdev_status(d));
	vdev_reset(d);
}

void hostile_run(const char *arg)
{
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);
	struct vdev *d = virtio_find(devs, n, VIRTIO_ID_BLK, 0);
	uint8_t st;
	struct vq q;

	if (!d)
		fail("hostile: no virtio-blk device");
	for (unsigned c = 0; c < H_COUNT; c++)
		hostile_case(d, c);
	blk_open(d, &q, RING0_OFF);
	st = blk_request(&q, BLK_T_IN, 0, SECTOR);
	if (st != BLK_S_OK)
		fail("hostile: read after reset status %u", st);
	kprintf("MVMTEST hostile recovered\n");
	vdev_reset(d);
	virtio_irqs_report();
}
