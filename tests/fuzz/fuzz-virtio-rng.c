/* SPDX-License-Identifier: MIT */
/*
 * virtio-rng behind the virtio-mmio transport.  Input: a 16-byte header
 * (le16 queue size, u8 flags: bit 0 notify by a QueueNotify MMIO write
 * instead of the ioeventfd path, bit 1 reset at the end; u8 notify count
 * (low 2 bits); le32 desc, avail, used guest addresses) and the first bytes
 * of a 64 KiB guest RAM.  The sanitizers are the oracle: random bytes land
 * wherever the guest points, the rings included, so the used ring cannot be
 * checked afterwards.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/rng.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE 0x10000
#define HDR_SIZE 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void driver_setup(struct virtio_mmio *t, const uint8_t *hdr)
{
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	uint16_t qsize;
	uint32_t a[3];

	memcpy(&qsize, hdr, 2);
	memcpy(a, hdr + 4, 12);
	wr(t, VIRTIO_MMIO_STATUS, 0);
	wr(t, VIRTIO_MMIO_STATUS, s);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);  /* VIRTIO_F_VERSION_1 */
	wr(t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK);
	setup_queue(t, 0, qsize, a);
	wr(t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_mmio_callbacks cb = { 0 };
	struct virtio_rng *r = NULL;
	struct virtio_mmio t;
	struct guest_mem m;
	uint8_t *ram;

	if (size < HDR_SIZE)
		return 0;
	ram = fuzz_guest_ram(data, size, HDR_SIZE, RAM_SIZE, &m);
	if (virtio_rng_create(&m, &r) < 0)
		abort();
	virtio_mmio_init(&t, virtio_rng_dev(r), &cb);
	driver_setup(&t, data);
	for (unsigned i = 0; i <= (data[3] & 3); i++) {
		if (data[2] & 1)
			wr(&t, VIRTIO_MMIO_QUEUE_NOTIFY, 0);
		else
			virtio_mmio_notify(&t, 0);
	}
	if (data[2] & 2)
		wr(&t, VIRTIO_MMIO_STATUS, 0);
	virtio_mmio_destroy(&t);
	virtio_rng_destroy(r);
	free(ram);
	return 0;
}
