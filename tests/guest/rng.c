/* SPDX-License-Identifier: MIT */
/* The rng scenario: two 64-byte reads from virtio-rng must differ. */
#include "virtio.h"

#define RING_OFF   0x0000UL
#define BUF_OFF    0x10000UL
#define RNG_BYTES  64

/* The device may hand back fewer bytes than asked: keep asking. */
static void rng_read(struct vq *q, uint8_t *buf)
{
	unsigned got = 0;

	for (unsigned tries = 0; got < RNG_BYTES && tries < RNG_BYTES; tries++) {
		struct vring_used_elem e;

		vq_set_desc(q, 0, (uint64_t)(buf + got), RNG_BYTES - got, VRING_DESC_F_WRITE, 0);
		vq_submit(q, 0);
		if (!vq_wait(q, 2 * VIRTIO_TICKS_PER_SEC, &e))
			fail("rng: no completion (status %x)", vdev_status(q->dev));
		if (e.id != 0 || e.len > RNG_BYTES - got)
			fail("rng: bad completion id %u len %u", e.id, e.len);
		got += e.len;
	}
	if (got < RNG_BYTES)
		fail("rng: only %u bytes", got);
}

void rng_run(const char *arg)
{
	static struct vdev devs[VIRTIO_DEVS_MAX];
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);
	struct vdev *d = virtio_find(devs, n, VIRTIO_ID_RNG, 0);
	uint8_t *a = virtio_dma(BUF_OFF, 2 * RNG_BYTES), *b = a + RNG_BYTES;
	uint8_t any = 0;
	struct vq q;

	if (!d)
		fail("rng: no virtio-rng device");
	vdev_init(d, 0);
	vq_setup(&q, d, 0, RING_OFF);
	vdev_irq_enable(d);
	vdev_driver_ok(d);
	memset(a, 0, 2 * RNG_BYTES);
	rng_read(&q, a);
	rng_read(&q, b);
	for (unsigned i = 0; i < RNG_BYTES; i++)
		any |= a[i];
	if (!any)
		fail("rng: all zero");
	if (!memcmp(a, b, RNG_BYTES))
		fail("rng: two reads are equal");
	kprintf("MVMTEST rng ok bytes=%u\n", RNG_BYTES);
	vdev_reset(d);
	virtio_irqs_report();
}
