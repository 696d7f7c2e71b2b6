/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_H
#define MVM_VIRTIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/memory.h"
#include "vmm/devices/virtio/queue.h"

/*
 * What a virtio device model sees: its queues, the negotiated features and a
 * handful of calls to return buffers and report trouble.  The transport
 * (virtio-mmio today) fills in struct virtio_transport; devices never
 * include a transport header.
 */

/* Device status bits (spec 2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE  1
#define VIRTIO_STATUS_DRIVER       2
#define VIRTIO_STATUS_DRIVER_OK    4
#define VIRTIO_STATUS_FEATURES_OK  8
#define VIRTIO_STATUS_NEEDS_RESET  64
#define VIRTIO_STATUS_FAILED       128

/* Transport-level feature bits. */
#define VIRTIO_F_VERSION_1         32

/* Device IDs (spec 5). */
#define VIRTIO_ID_NET    1
#define VIRTIO_ID_BLOCK  2
#define VIRTIO_ID_RNG    4
#define VIRTIO_ID_BALLOON 5
#define VIRTIO_ID_VSOCK  19

#define VIRTIO_MAX_QUEUES 4

struct virtio_dev;

struct virtio_dev_ops {
	uint32_t device_id;
	uint16_t num_queues;
	/* Device-specific config space: reads/writes arrive bounds-checked
	 * against config_size.  config_write may be NULL (read-only config). */
	uint32_t config_size;
	void (*config_read)(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len);
	void (*config_write)(struct virtio_dev *vd, uint32_t off, const void *buf, uint32_t len);
	/* The driver made buffers available on queue q (q < num_queues, the
	 * device is DRIVER_OK and the queue is ready). */
	void (*queue_notify)(struct virtio_dev *vd, uint16_t q);
	/* Called once DRIVER_OK is set, before any queue_notify; may be NULL. */
	void (*activate)(struct virtio_dev *vd);
	/* Back to the initial state: drop in-flight work; may be NULL. */
	void (*reset)(struct virtio_dev *vd);
};

/* Implemented by the transport. */
struct virtio_transport {
	void (*signal_used)(struct virtio_dev *vd, uint16_t q);
	void (*signal_config)(struct virtio_dev *vd);
	void (*fail)(struct virtio_dev *vd, const char *reason);
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	uint64_t device_features;  /* offered, without VIRTIO_F_VERSION_1 */
	uint64_t driver_features;  /* accepted by the driver (valid once FEATURES_OK) */
	const struct guest_mem *mem;
	uint8_t status;            /* VIRTIO_STATUS_*, kept by the transport */
	struct virtq vq[VIRTIO_MAX_QUEUES];

	const struct virtio_transport *transport;
	void *transport_data;
};

static inline bool virtio_has_feature(const struct virtio_dev *vd, unsigned bit)
{
	return (vd->driver_features >> bit) & 1;
}

/* Pops the next chain of queue q; on a malformed chain the device is marked
 * NEEDS_RESET (with the reason reported) and the result is negative. */
int virtio_dev_pop(struct virtio_dev *vd, uint16_t q, struct virtq_chain *c);

/* Returns a chain to the driver (no interrupt yet: call virtio_dev_signal). */
static inline void virtio_dev_push(struct virtio_dev *vd, uint16_t q, uint16_t head, uint32_t written)
{
	virtq_push(&vd->vq[q], head, written);
}

/* Interrupts the driver for used buffers on q unless it asked not to be. */
void virtio_dev_signal(struct virtio_dev *vd, uint16_t q);

/* Config space changed (bumps the config generation, interrupts). */
static inline void virtio_dev_config_changed(struct virtio_dev *vd)
{
	vd->transport->signal_config(vd);
}

/* The device can't go on: NEEDS_RESET, config interrupt, reason to the VMM. */
static inline void virtio_dev_fail(struct virtio_dev *vd, const char *reason)
{
	vd->transport->fail(vd, reason);
}

/* True while the device may process queues (DRIVER_OK, not NEEDS_RESET). */
static inline bool virtio_dev_running(const struct virtio_dev *vd)
{
	return (vd->status & (VIRTIO_STATUS_DRIVER_OK | VIRTIO_STATUS_NEEDS_RESET |
	                      VIRTIO_STATUS_FAILED)) == VIRTIO_STATUS_DRIVER_OK;
}

#endif
