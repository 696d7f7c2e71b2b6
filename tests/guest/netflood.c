/* SPDX-License-Identifier: MIT */
/*
 * netflood:N,S: sends N frames of S bytes (60 to 1514) on the first
 * virtio-net as fast as the device takes them, 32 at a time, so a host
 * reading the backend measures the device's rate limit.
 */
#include "virtio.h"

#define NET_HDR_LEN  12
#define RX_RING_OFF  0x0000UL
#define TX_RING_OFF  0x2000UL
#define TX_BUF_OFF   0x10000UL
#define BATCH        32
#define WAIT_TICKS   (5 * VIRTIO_TICKS_PER_SEC)

static struct vdev devs[VIRTIO_DEVS_MAX];

static bool parse_args(const char *arg, uint64_t *ret_n, uint64_t *ret_size)
{
	char buf[32];
	unsigned i = 0;

	for (; arg && arg[i] && arg[i] != ',' && i < sizeof(buf) - 1; i++)
		buf[i] = arg[i];
	buf[i] = '\0';
	return arg && arg[i] == ',' && parse_u64(buf, ret_n) && parse_u64(arg + i + 1, ret_size) &&
	       *ret_size >= 60 && *ret_size <= 1514;
}

void netflood_run(const char *arg)
{
	struct vq rx, tx;
	struct vring_used_elem e;
	uint64_t n, size, sent = 0;
	uint8_t *buf = virtio_dma(TX_BUF_OFF, NET_HDR_LEN + 1514);
	struct vdev *d;

	if (!parse_args(arg, &n, &size))
		fail("netflood: bad argument '%s'", arg ? arg : "");
	d = virtio_find(devs, virtio_discover(devs, VIRTIO_DEVS_MAX), VIRTIO_ID_NET, 0);
	if (!d)
		fail("netflood: no virtio-net device");
	vdev_init(d, 0);
	vq_setup(&rx, d, 0, RX_RING_OFF);
	vq_setup(&tx, d, 1, TX_RING_OFF);
	vdev_irq_enable(d);
	vdev_driver_ok(d);
	/* one frame for all: broadcast, a locally administered source, the
	 * IEEE local experimental EtherType */
	memset(buf, 0, NET_HDR_LEN + size);
	memset(buf + NET_HDR_LEN, 0xff, 6);
	buf[NET_HDR_LEN + 6] = 0x02;
	buf[NET_HDR_LEN + 12] = 0x88;
	buf[NET_HDR_LEN + 13] = 0xb5;
	kprintf("MVMTEST netflood start frames=%lu size=%lu\n", n, size);
	while (sent < n) {
		unsigned k = n - sent < BATCH ? (unsigned)(n - sent) : BATCH;

		for (unsigned i = 0; i < k; i++) {
			vq_set_desc(&tx, i, (uint64_t)buf, (uint32_t)(NET_HDR_LEN + size), 0, 0);
			tx.avail->ring[tx.avail_idx++ % tx.size] = (uint16_t)i;
		}
		tx.avail_idx--;
		vq_submit(&tx, (uint16_t)(k - 1));
		for (unsigned i = 0; i < k; i++)
			if (!vq_wait(&tx, WAIT_TICKS, &e))
				fail("netflood: frame %lu not sent (status %x)", sent + i, vdev_status(d));
		sent += k;
	}
	kprintf("MVMTEST netflood done frames=%lu\n", sent);
	vdev_reset(d);
}
