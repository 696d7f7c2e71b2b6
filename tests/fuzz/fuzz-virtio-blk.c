/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk behind the virtio-mmio transport.  Input: a 16-byte header
 * (le16 queue size, u8 flags: bit 0 read-only, bit 1 offer-only legacy
 * features, bit 2 a limit of one request per second (all but the first
 * wait: the throttled path, then the timer's), bit 3 lift it before the
 * timer; u8 notify count, le32 desc, avail, used guest addresses) and
 * the first bytes of a 64 KiB guest RAM.  The fuzzer plays a driver that
 * sets the device up the way Linux does, then lets the device process
 * whatever rings the input describes, against a 32 KiB memfd disk.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vmm/devices/virtio/blk.h"
#include "vmm/devices/virtio/mmio.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE  0x10000
#define DISK_SIZE 0x8000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void driver_setup(struct virtio_mmio *t, const uint8_t *hdr)
{
	uint16_t qsize;
	uint32_t a[3];
	uint32_t feat_hi = hdr[2] & 2 ? 0 : 1;  /* VIRTIO_F_VERSION_1 is bit 32 */

	memcpy(&qsize, hdr, 2);
	memcpy(a, hdr + 4, 12);
	wr(t, VIRTIO_MMIO_STATUS, 0);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, feat_hi);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_BLK_F_FLUSH);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                          VIRTIO_STATUS_FEATURES_OK);
	setup_queue(t, 0, qsize, a);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                          VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void read_config(struct virtio_mmio *t)
{
	uint8_t b[8];

	for (unsigned off = 0; off < 0x40; off++)
		virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + off, b, 1 + (off & 7));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_mmio_callbacks cb = { 0 };
	struct virtio_mmio t;
	struct virtio_blk *b = NULL;
	uint8_t *ram = NULL;
	struct guest_mem m;
	int fd;

	if (size < 16)
		return 0;
	fd = memfd_create("fuzz-virtio-blk", MFD_CLOEXEC);
	if (fd < 0 || ftruncate(fd, DISK_SIZE) < 0)
		abort();
	ram = fuzz_guest_ram(data, size, 16, RAM_SIZE, &m);
	if (virtio_blk_create(fd, data[2] & 1, "fuzz", &m, &b) < 0)
		abort();
	virtio_mmio_init(&t, virtio_blk_dev(b), &cb);
	driver_setup(&t, data);
	read_config(&t);
	if (data[2] & 4)
		virtio_blk_set_limits(b, &(struct ratelimit_config){ .ops = 1 });
	for (unsigned i = 0; i <= (data[3] & 3); i++)
		virtio_mmio_notify(&t, i & 1 ? 0 : data[3] >> 2);
	if (data[2] & 8)
		virtio_blk_set_limits(b, &(struct ratelimit_config){ 0 });
	if (data[2] & 12)
		virtio_blk_timer(b);
	virtio_mmio_destroy(&t);
	virtio_blk_destroy(b);
	free(ram);
	return 0;
}
