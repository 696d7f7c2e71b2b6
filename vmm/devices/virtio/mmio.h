/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_MMIO_H
#define MVM_VIRTIO_MMIO_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/devices/virtio/virtio.h"

/*
 * virtio-mmio transport, version 2 (virtio 1.x, 4.2).  One window of
 * VIRTIO_MMIO_SIZE bytes per device; the VMM routes guest accesses inside
 * the window to virtio_mmio_read/write with the offset from the base, and
 * either a QueueNotify write or an ioeventfd on base + VIRTIO_MMIO_QUEUE_NOTIFY
 * (datamatch = queue index) to virtio_mmio_notify().
 */

/* Register offsets. */
#define VIRTIO_MMIO_MAGIC_VALUE         0x000
#define VIRTIO_MMIO_VERSION             0x004
#define VIRTIO_MMIO_DEVICE_ID           0x008
#define VIRTIO_MMIO_VENDOR_ID           0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES     0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES     0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL           0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX       0x034
#define VIRTIO_MMIO_QUEUE_NUM           0x038
#define VIRTIO_MMIO_QUEUE_READY         0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY        0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS    0x060
#define VIRTIO_MMIO_INTERRUPT_ACK       0x064
#define VIRTIO_MMIO_STATUS              0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW      0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH     0x084
#define VIRTIO_MMIO_QUEUE_DRIVER_LOW    0x090
#define VIRTIO_MMIO_QUEUE_DRIVER_HIGH   0x094
#define VIRTIO_MMIO_QUEUE_DEVICE_LOW    0x0a0
#define VIRTIO_MMIO_QUEUE_DEVICE_HIGH   0x0a4
#define VIRTIO_MMIO_SHM_SEL             0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW         0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH        0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW        0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH       0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION   0x0fc
#define VIRTIO_MMIO_CONFIG              0x100

#define VIRTIO_MMIO_MAGIC     0x74726976  /* "virt" */
#define VIRTIO_MMIO_VENDOR    0x004d564d  /* "MVM" */

#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

/* Supplied by the VMM.  irq_raise is called whenever an InterruptStatus bit
 * is set (an irqfd write); irq_lower (may be NULL) when the driver has
 * acknowledged every bit, for a level-triggered line.  error gets a static
 * one-line reason when the guest broke the protocol (the VMM logs it,
 * rate-limited, and keeps running). */
struct virtio_mmio_callbacks {
	void (*irq_raise)(void *opaque);
	void (*irq_lower)(void *opaque);
	void (*error)(void *opaque, const char *reason);
	void *opaque;
};

struct virtio_mmio {
	/* vCPU threads (MMIO exits) and the event loop (ioeventfd, backend
	 * fds) both drive the device; read/write/notify take this lock, and
	 * the VMM holds it (virtio_mmio_lock) around any other call into the
	 * device, e.g. virtio_net_rx_ready. */
	pthread_mutex_t lock;
	struct virtio_dev *vd;
	struct virtio_mmio_callbacks cb;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t interrupt_status;
	uint32_t config_generation;
};

/* Binds device vd (ops, device_features and mem already set) to t. */
void virtio_mmio_init(struct virtio_mmio *t, struct virtio_dev *vd,
                      const struct virtio_mmio_callbacks *cb);
void virtio_mmio_destroy(struct virtio_mmio *t);

/* Guest access at `off` into the window, `len` bytes (1, 2, 4; registers
 * below VIRTIO_MMIO_CONFIG only 4, aligned).  An access the spec does not
 * allow returns -EINVAL (a read then yields zeroes) and changes nothing. */
int virtio_mmio_read(struct virtio_mmio *t, uint64_t off, void *data, unsigned len);
int virtio_mmio_write(struct virtio_mmio *t, uint64_t off, const void *data, unsigned len);

/* The driver notified queue `queue` (QueueNotify write or ioeventfd). */
void virtio_mmio_notify(struct virtio_mmio *t, uint32_t queue);

static inline void virtio_mmio_lock(struct virtio_mmio *t) { pthread_mutex_lock(&t->lock); }
static inline void virtio_mmio_unlock(struct virtio_mmio *t) { pthread_mutex_unlock(&t->lock); }

/* The window and GSI of the index-th virtio-mmio device (layout.h). */
int virtio_mmio_slot(unsigned index, uint64_t *ret_base, uint32_t *ret_gsi);

/* Appends " virtio_mmio.device=4K@0x<base>:<gsi>" to the NUL-terminated
 * command line in buf; -ENOSPC (buf unchanged) when it doesn't fit. */
int virtio_mmio_cmdline_append(char *buf, size_t size, uint64_t base, uint32_t gsi);

#endif
