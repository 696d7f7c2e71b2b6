/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_QUEUE_H
#define MVM_VIRTIO_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "vmm/memory.h"

/*
 * Split virtqueue (virtio 1.x, 2.7).  Every value the guest writes (ring
 * addresses, queue size, avail index, descriptor index/address/length/flags)
 * is checked here before any device sees it; a device gets a chain as host
 * iovecs that are known to lie inside guest RAM.
 */

#define VIRTQ_MAX_SIZE       256  /* QueueNumMax every device offers */

#define VIRTQ_DESC_F_NEXT     1
#define VIRTQ_DESC_F_WRITE    2
#define VIRTQ_DESC_F_INDIRECT 4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

/* Longest total chain payload accepted; keeps byte counts within uint32_t
 * (the used-ring length field). */
#define VIRTQ_CHAIN_MAX_BYTES 0x7fffffffULL

struct virtq {
	/* Set by the transport from the guest's queue registers. */
	uint16_t size;            /* QueueNum: validated by virtq_enable() */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool ready;

	/* Private: host views of the rings (valid while ready) and indices. */
	const struct guest_mem *mem;
	uint8_t *desc, *avail, *used;
	uint16_t last_avail;      /* next avail ring slot to consume */
	uint16_t used_idx;        /* next used ring slot to fill */
};

/* One descriptor chain: readable (driver->device) buffers first, then
 * writable ones, as the spec requires of the driver. */
struct virtq_chain {
	uint16_t head;
	uint16_t n_out, n_in;     /* iov[0..n_out) readable, then n_in writable */
	uint32_t out_len, in_len; /* total bytes of each part */
	struct iovec iov[VIRTQ_MAX_SIZE];
};

/* Clears the queue to its reset state (not ready, size 0, addresses 0). */
void virtq_reset(struct virtq *q);

/* Checks size and ring placement and maps the rings; on failure *ret_err
 * names the problem and the queue stays disabled. */
int virtq_enable(struct virtq *q, const struct guest_mem *m, uint16_t max_size,
                 const char **ret_err);

/* 1 with *c filled, 0 when the ring is empty, -EINVAL (with *ret_err) when
 * the guest broke the ring: the device must then stop using the queue. */
int virtq_pop(struct virtq *q, struct virtq_chain *c, const char **ret_err);

/* Gives the last popped chain back to the ring (it will be popped again). */
void virtq_unpop(struct virtq *q);

/* Returns a chain to the driver with `written` bytes placed in its
 * writable part. */
void virtq_push(struct virtq *q, uint16_t head, uint32_t written);

/* False when the driver asked not to be interrupted (VIRTQ_AVAIL_F_NO_INTERRUPT). */
bool virtq_should_interrupt(const struct virtq *q);

/* Copies `len` bytes starting `off` bytes into iov[0..n) to dst; returns the
 * number of bytes copied (less than len when the iovecs are shorter). */
size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len);
size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len);

/* Fills dst[0..max) with the sub-range [off, off+len) of iov[0..n); returns
 * the number of iovecs written, or -EINVAL when the range doesn't fit. */
int iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
              struct iovec *dst, unsigned max);

#endif
