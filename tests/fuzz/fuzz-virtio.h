/* SPDX-License-Identifier: MIT */
/* Shared by the virtio device fuzzers: a driver's 32-bit register write,
 * and the guest RAM the input describes after its header. */
#ifndef MVM_FUZZ_VIRTIO_H
#define MVM_FUZZ_VIRTIO_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/mmio.h"

static inline void wr(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	virtio_mmio_write(t, off, &v, 4);
}

/* Queue q as a driver programs it: size, then the descriptor, driver and
 * device ring addresses a[0..2] (low halves), then ready. */
static inline void setup_queue(struct virtio_mmio *t, unsigned q, uint16_t size,
                               const uint32_t *a)
{
	wr(t, VIRTIO_MMIO_QUEUE_SEL, q);
	wr(t, VIRTIO_MMIO_QUEUE_NUM, size);
	wr(t, VIRTIO_MMIO_QUEUE_DESC_LOW, a[0]);
	wr(t, VIRTIO_MMIO_QUEUE_DRIVER_LOW, a[1]);
	wr(t, VIRTIO_MMIO_QUEUE_DEVICE_LOW, a[2]);
	wr(t, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* ram_size bytes, page-aligned, zero but for data[hdr_size..size) copied to
 * the start (size >= hdr_size), and *m over them; free() the result. */
static inline uint8_t *fuzz_guest_ram(const uint8_t *data, size_t size, size_t hdr_size,
                                      size_t ram_size, struct guest_mem *m)
{
	uint8_t *ram = aligned_alloc(4096, ram_size);
	size_t n = size - hdr_size;

	if (!ram)
		abort();
	memset(ram, 0, ram_size);
	memcpy(ram, data + hdr_size, n < ram_size ? n : ram_size);
	guest_mem_init_buffer(m, ram, ram_size);
	return ram;
}

#endif
