/* SPDX-License-Identifier: MIT */
/*
 * A fake virtio-mmio driver for the unit tests: it owns a malloc'd guest
 * RAM, writes the transport registers in the order Linux's virtio_mmio
 * driver does, lays out split rings in that RAM and posts descriptor chains
 * into them.  Devices under test see exactly what a guest would produce.
 */
#ifndef MVM_TEST_VIRTIO_DRIVER_H
#define MVM_TEST_VIRTIO_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/mmio.h"

#define DRV_RAM_SIZE   (4u << 20)
#define DRV_RING_BASE  0x10000u   /* queue i at DRV_RING_BASE + i * 0x10000 */
#define DRV_DATA_BASE  0x100000u  /* tests put buffers from here on */

struct drv_queue {
	uint64_t desc, avail, used;
	uint16_t size;
	uint16_t avail_idx;   /* next avail ring slot we fill */
	uint16_t used_seen;   /* used entries already consumed */
	uint16_t next_desc;   /* next free descriptor (round robin) */
};

struct drv {
	uint8_t *ram;
	struct guest_mem mem;
	struct virtio_mmio t;
	struct drv_queue q[VIRTIO_MAX_QUEUES];
	unsigned irqs, lowers, errors;
	const char *last_error;
};

/* One buffer of a chain to post. */
struct drv_seg { uint64_t addr; uint32_t len; bool write; };

static inline void drv_irq_cb(void *opaque) { ((struct drv *)opaque)->irqs++; }
static inline void drv_lower_cb(void *opaque) { ((struct drv *)opaque)->lowers++; }
static inline void drv_error_cb(void *opaque, const char *reason)
{
	struct drv *d = opaque;

	d->errors++;
	d->last_error = reason;
}

static inline uint32_t drv_rd(struct drv *d, uint64_t off)
{
	uint32_t v = 0xdeadbeef;

	if (virtio_mmio_read(&d->t, off, &v, 4) < 0)
		return 0xdeadbeef;
	return v;
}

static inline int drv_wr(struct drv *d, uint64_t off, uint32_t v)
{
	return virtio_mmio_write(&d->t, off, &v, 4);
}

static inline void *drv_ptr(struct drv *d, uint64_t gpa) { return d->ram + gpa; }

/* Allocates RAM and binds the device; vd->mem must be &d->mem, so callers
 * create the device after drv_open. */
static inline void drv_open(struct drv *d)
{
	memset(d, 0, sizeof(*d));
	d->ram = aligned_alloc(4096, DRV_RAM_SIZE);
	memset(d->ram, 0, DRV_RAM_SIZE);
	guest_mem_init_buffer(&d->mem, d->ram, DRV_RAM_SIZE);
}

static inline void drv_attach(struct drv *d, struct virtio_dev *vd)
{
	struct virtio_mmio_callbacks cb = {
		.irq_raise = drv_irq_cb, .irq_lower = drv_lower_cb,
		.error = drv_error_cb, .opaque = d,
	};

	virtio_mmio_init(&d->t, vd, &cb);
}

static inline void drv_close(struct drv *d)
{
	if (d->t.vd)
		virtio_mmio_destroy(&d->t);
	free(d->ram);
}

static inline void drv_setup_queue(struct drv *d, unsigned i, uint16_t size)
{
	struct drv_queue *q = &d->q[i];
	uint64_t base = DRV_RING_BASE + (uint64_t)i * 0x10000;

	memset(q, 0, sizeof(*q));
	q->size = size;
	q->desc = base;
	q->avail = base + 0x4000;
	q->used = base + 0x8000;
	memset(drv_ptr(d, base), 0, 0x10000);
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, i);
	drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, size);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)q->desc);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(q->desc >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_DRIVER_LOW, (uint32_t)q->avail);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DRIVER_HIGH, (uint32_t)(q->avail >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, (uint32_t)q->used);
	drv_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_HIGH, (uint32_t)(q->used >> 32));
	drv_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
}

/* Linux's probe order (virtio_mmio.c + virtio.c): reset, ACKNOWLEDGE,
 * DRIVER, features, FEATURES_OK (read back), queues, DRIVER_OK.  Returns the
 * negotiated feature bits, or 0 if the device refused FEATURES_OK. */
static inline uint64_t drv_init(struct drv *d, uint64_t want, unsigned nqueues, uint16_t qsize)
{
	uint64_t offered, feat;

	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	offered = (uint64_t)drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES) << 32;
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	offered |= drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES);
	feat = offered & want;
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(feat >> 32));
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)feat);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                              VIRTIO_STATUS_FEATURES_OK);
	if (!(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
		return 0;
	for (unsigned i = 0; i < nqueues; i++)
		drv_setup_queue(d, i, qsize);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                              VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
	return feat;
}

static inline void drv_set_desc(struct drv *d, unsigned qi, uint16_t idx, uint64_t addr,
                                uint32_t len, uint16_t flags, uint16_t next)
{
	uint8_t *p = drv_ptr(d, d->q[qi].desc + 16u * idx);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

/* Publishes head in the avail ring (no notification). */
static inline void drv_publish(struct drv *d, unsigned qi, uint16_t head)
{
	struct drv_queue *q = &d->q[qi];
	uint8_t *avail = drv_ptr(d, q->avail);
	uint16_t slot = q->avail_idx % q->size;

	memcpy(avail + 4 + 2 * slot, &head, 2);
	q->avail_idx++;
	__atomic_store_n((uint16_t *)(avail + 2), q->avail_idx, __ATOMIC_RELEASE);
}

/* Writes segs as a chain of fresh descriptors and publishes it. */
static inline uint16_t drv_post(struct drv *d, unsigned qi, const struct drv_seg *segs, unsigned n)
{
	struct drv_queue *q = &d->q[qi];
	uint16_t head = q->next_desc;

	for (unsigned i = 0; i < n; i++) {
		uint16_t idx = (uint16_t)((head + i) % q->size);
		uint16_t next = (uint16_t)((idx + 1) % q->size);
		uint16_t flags = (segs[i].write ? VIRTQ_DESC_F_WRITE : 0) |
		                 (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0);

		drv_set_desc(d, qi, idx, segs[i].addr, segs[i].len, flags, next);
	}
	q->next_desc = (uint16_t)((head + n) % q->size);
	drv_publish(d, qi, head);
	return head;
}

static inline void drv_kick(struct drv *d, unsigned qi)
{
	drv_wr(d, VIRTIO_MMIO_QUEUE_NOTIFY, qi);
}

/* Takes the next used element; false when the device returned none. */
static inline bool drv_used(struct drv *d, unsigned qi, uint32_t *ret_id, uint32_t *ret_len)
{
	struct drv_queue *q = &d->q[qi];
	uint8_t *used = drv_ptr(d, q->used);
	uint16_t idx = __atomic_load_n((uint16_t *)(used + 2), __ATOMIC_ACQUIRE);
	uint8_t *e;

	if (idx == q->used_seen)
		return false;
	e = used + 4 + 8 * (q->used_seen % q->size);
	memcpy(ret_id, e, 4);
	memcpy(ret_len, e + 4, 4);
	q->used_seen++;
	return true;
}

#endif
