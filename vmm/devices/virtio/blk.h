/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_BLK_H
#define MVM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/devices/virtio/ratelimit.h"
#include "vmm/devices/virtio/virtio.h"

/* virtio-blk (spec 5.2) over a raw image file. */

#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_RO       5
#define VIRTIO_BLK_F_FLUSH    9

#define VIRTIO_BLK_T_IN       0
#define VIRTIO_BLK_T_OUT      1
#define VIRTIO_BLK_T_FLUSH    4
#define VIRTIO_BLK_T_GET_ID   8

#define VIRTIO_BLK_S_OK       0
#define VIRTIO_BLK_S_IOERR    1
#define VIRTIO_BLK_S_UNSUPP   2

#define VIRTIO_BLK_SECTOR_SIZE 512
#define VIRTIO_BLK_ID_BYTES    20

struct virtio_blk_stats {
	uint64_t reads, writes, flushes, errors;
	uint64_t read_bytes, write_bytes;
};

struct virtio_blk;

/* Takes ownership of fd (closed by virtio_blk_destroy, or here on failure).
 * Capacity is the file size in whole sectors.  id (may be NULL) is the drive
 * id returned by GET_ID, truncated to VIRTIO_BLK_ID_BYTES. */
int virtio_blk_create(int fd, bool read_only, const char *id, const struct guest_mem *m,
                      struct virtio_blk **ret);
/* Opens path (O_RDONLY when read_only) and calls virtio_blk_create. */
int virtio_blk_open(const char *path, bool read_only, const char *id, const struct guest_mem *m,
                    struct virtio_blk **ret);
void virtio_blk_destroy(struct virtio_blk *b);

struct virtio_dev *virtio_blk_dev(struct virtio_blk *b);
uint64_t virtio_blk_capacity(const struct virtio_blk *b);  /* sectors */
const struct virtio_blk_stats *virtio_blk_stats(const struct virtio_blk *b);

/*
 * Rate limits (vmm/devices/virtio/ratelimit.h): every request is one op and
 * its data bytes.  While the limiter refuses, the queue is not processed and
 * its notifications are ignored; the device's timerfd resumes it: register
 * virtio_blk_timer_fd() for EPOLLIN and call virtio_blk_timer() (transport
 * locked) when it fires.  c must have passed ratelimit_config_check.
 */
void virtio_blk_set_limits(struct virtio_blk *b, const struct ratelimit_config *c);
const struct ratelimit *virtio_blk_limiter(const struct virtio_blk *b);
int virtio_blk_timer_fd(const struct virtio_blk *b);
void virtio_blk_timer(struct virtio_blk *b);

#endif
