/* SPDX-License-Identifier: MIT */
/*
 * A minimal virtio-mmio (version 2, VIRTIO_F_VERSION_1) driver with split
 * virtqueues, for the blk, net, rng and hostile scenarios.  Kernel-mode code
 * is emulated slowly here, so setup is short and bulk loops run in ring 3.
 */
#ifndef MVMTEST_VIRTIO_H
#define MVMTEST_VIRTIO_H

#include "lib.h"

#define VIRTIO_DEVS_MAX    16

#define VIRTIO_ID_NET      1
#define VIRTIO_ID_BLK      2
#define VIRTIO_ID_RNG      4
#define VIRTIO_ID_BALLOON  5
#define VIRTIO_ID_VSOCK    19

#define VIRTIO_F_VERSION_1 32

/* Device status bits. */
#define VIRTIO_S_ACK         0x01
#define VIRTIO_S_DRIVER      0x02
#define VIRTIO_S_DRIVER_OK   0x04
#define VIRTIO_S_FEATURES_OK 0x08
#define VIRTIO_S_NEEDS_RESET 0x40
#define VIRTIO_S_FAILED      0x80

/* Where a device was announced. */
#define VDEV_SRC_CMDLINE   1
#define VDEV_SRC_ACPI      2

struct vdev {
	uint64_t addr, size;
	uint32_t irq;
	unsigned src;          /* VDEV_SRC_* bits */
	uint32_t id;           /* DeviceID register */
	uint64_t features;     /* negotiated, after vdev_init */
};

#define VRING_DESC_F_NEXT  1
#define VRING_DESC_F_WRITE 2

struct vring_desc { uint64_t addr; uint32_t len; uint16_t flags, next; };
struct vring_avail { uint16_t flags, idx, ring[]; };
struct vring_used_elem { uint32_t id, len; };
struct vring_used { uint16_t flags, idx; struct vring_used_elem ring[]; };

struct vq {
	const struct vdev *dev;
	unsigned index;
	uint16_t size;
	uint16_t avail_idx, used_seen;
	volatile struct vring_desc *desc;
	volatile struct vring_avail *avail;
	volatile struct vring_used *used;
};

/*
 * DMA memory: a fixed RAM range the driver carves into rings and buffers.
 * Guest-physical equals virtual (identity map), so pointers are addresses.
 */
#define VIRTIO_DMA_BASE    (32UL << 20)
#define VIRTIO_DMA_SIZE    (4UL << 20)
#define VIRTIO_RING_AREA   0x2000UL   /* per queue: desc + avail, used at +0x1000 */
#define VIRTIO_QUEUE_MAX   64         /* entries per queue we ask for */
void *virtio_dma(uint64_t offset, uint64_t len);

/*
 * Discovery: every virtio_mmio.device=<size>@<addr>:<irq> on the command
 * line and every _HID "LNRO0005" device in the DSDT, sorted by address.
 * Prints one "MVMTEST virtio dev" line per device and FAILs when both
 * sources list devices but not the same ones.  Returns the count.
 */
unsigned virtio_discover(struct vdev *devs, unsigned max);
/* The n-th (from 0) discovered device with DeviceID id, or NULL. */
struct vdev *virtio_find(struct vdev *devs, unsigned ndevs, uint32_t id, unsigned n);

/* Reset, ACKNOWLEDGE|DRIVER, negotiate VERSION_1 plus the wanted bits the
 * device offers, FEATURES_OK.  FAILs if the device is not usable. */
void vdev_init(struct vdev *d, uint64_t wanted);
void vdev_driver_ok(struct vdev *d);
void vdev_reset(struct vdev *d);
uint32_t vdev_status(const struct vdev *d);
uint32_t vdev_cfg32(const struct vdev *d, unsigned off);
uint32_t vdev_cfg_generation(const struct vdev *d);
uint8_t vdev_cfg8(const struct vdev *d, unsigned off);
/* Routes the device's GSI to VEC_VIRTIO and starts the tick timer. */
void vdev_irq_enable(const struct vdev *d);

/* Sets up queue index with ring memory at VIRTIO_DMA_BASE + area_off. */
void vq_setup(struct vq *q, const struct vdev *d, unsigned index, uint64_t area_off);
void vq_set_desc(struct vq *q, unsigned i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next);
/* Publishes head in the available ring and notifies the device. */
void vq_submit(struct vq *q, uint16_t head);
/* Waits up to ticks timer ticks for a used entry; true and the entry if
 * one arrived.  Also returns early, false, if the device sets NEEDS_RESET. */
bool vq_wait(struct vq *q, unsigned ticks, struct vring_used_elem *ret);

/* About 3 ms per tick with KVM's 1 GHz APIC timer clock. */
#define VIRTIO_TICKS_PER_SEC 300
extern volatile uint32_t virtio_irqs, timer_ticks;
void virtio_irqs_report(void);

/* Scenarios (balloon.c, blk.c, blkbench.c, net.c, netflood.c, rng.c, virtio.c,
 * vsock.c). */
void virtio_list_run(const char *arg);
void blk_run(const char *arg);
void blkbench_run(const char *arg);
void hostile_run(const char *arg);
void net_run(const char *arg);
void rng_run(const char *arg);
void vsock_run(const char *arg);
void balloon_run(const char *arg);
void netflood_run(const char *arg);

#endif
