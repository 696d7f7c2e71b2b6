/* SPDX-License-Identifier: MIT */
/*
 * virtio-balloon behind the virtio-mmio transport.  Input: a 28-byte header
 * (le16 queue size; u8 flags: bit 0 no STATS_VQ, bit 1 no REPORTING, bit 2
 * reset at the end; u8 number of operations (low 3 bits, plus one); le32
 * desc, avail, used guest addresses of queue 0, each further queue's rings
 * 0x4000 bytes on; le32 a page count; 8 operation bytes) and the first bytes
 * of a 64 KiB guest RAM.  An operation byte: bits 0-1 the queue to notify,
 * bit 2 ask for fresh statistics, bit 3 set the target to the page count,
 * bit 4 write it to `actual`.  Inflate PFNs and free page reports discard
 * (zero) guest RAM, the rings included; the sanitizers and the checks below
 * are the oracle.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/balloon.h"
#include "vmm/devices/virtio/mmio.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE  0x10000
#define HDR_SIZE  28
#define QUEUE_GAP 0x4000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void driver_setup(struct virtio_mmio *t, const uint8_t *hdr)
{
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;
	uint32_t feat = 1u << VIRTIO_BALLOON_F_DEFLATE_ON_OOM;
	unsigned nq = 2;
	uint16_t qsize;
	uint32_t a[3];

	if (!(hdr[2] & 1))
		feat |= 1u << VIRTIO_BALLOON_F_STATS_VQ, nq++;
	if (!(hdr[2] & 2))
		feat |= 1u << VIRTIO_BALLOON_F_REPORTING, nq++;
	memcpy(&qsize, hdr, 2);
	memcpy(a, hdr + 4, 12);
	wr(t, VIRTIO_MMIO_STATUS, 0);
	wr(t, VIRTIO_MMIO_STATUS, s);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);  /* VIRTIO_F_VERSION_1 */
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, feat);
	wr(t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < nq; q++) {
		uint32_t qa[3] = { a[0] + q * QUEUE_GAP, a[1] + q * QUEUE_GAP, a[2] + q * QUEUE_GAP };

		setup_queue(t, q, qsize, qa);
	}
	wr(t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void run_op(struct virtio_mmio *t, struct virtio_balloon *b, uint8_t op, uint32_t pages)
{
	const struct virtio_balloon_stats *st = virtio_balloon_stats(b);

	if (op & 8) {
		int r = virtio_balloon_set_target(b, pages);

		if ((r == 0) != (pages <= RAM_SIZE / 4096))
			abort();  /* a target beyond guest RAM must be refused, others taken */
	}
	if (op & 16)
		virtio_mmio_write(t, VIRTIO_MMIO_CONFIG + 4, &pages, 4);
	if (op & 4)
		virtio_balloon_request_stats(b);
	virtio_mmio_notify(t, op & 3);
	if (st->target_pages > RAM_SIZE / 4096 || st->discarded_bytes < st->reported_bytes ||
	    st->guest_valid >> VIRTIO_BALLOON_STAT_TAGS)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_mmio_callbacks cb = { 0 };
	struct virtio_balloon *b = NULL;
	struct virtio_mmio t;
	struct guest_mem m;
	uint32_t pages;
	uint8_t *ram;

	if (size < HDR_SIZE)
		return 0;
	ram = fuzz_guest_ram(data, size, HDR_SIZE, RAM_SIZE, &m);
	if (virtio_balloon_create(&m, 0, &b) < 0)
		abort();
	virtio_mmio_init(&t, virtio_balloon_dev(b), &cb);
	driver_setup(&t, data);
	memcpy(&pages, data + 16, 4);
	for (unsigned i = 0; i <= (data[3] & 7u); i++)
		run_op(&t, b, data[20 + i], pages);
	if (data[2] & 4)
		wr(&t, VIRTIO_MMIO_STATUS, 0);
	virtio_mmio_destroy(&t);
	virtio_balloon_destroy(b);
	free(ram);
	return 0;
}
