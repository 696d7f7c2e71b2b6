/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_BALLOON_H
#define MVM_VIRTIO_BALLOON_H

#include <stdint.h>

#include "vmm/devices/virtio/virtio.h"

/*
 * virtio-balloon (spec 5.5): the host sets a target (num_pages, 4 KiB
 * pages); the driver inflates toward it by handing pages over on the
 * inflate queue and takes them back on the deflate queue, reporting its
 * balloon size in `actual`.  Inflated pages and pages the driver reports
 * free (VIRTIO_BALLOON_F_REPORTING) are given back to the host with
 * MADV_DONTNEED.  DEFLATE_ON_OOM lets the guest deflate by itself when it
 * runs out of memory.  The statistics queue holds the driver's last
 * buffer; virtio_balloon_request_stats() returns it so the driver sends a
 * fresh set.
 *
 * Queue indices follow the negotiated features, as drivers number them:
 * 0 inflate, 1 deflate, then stats (if STATS_VQ), then reporting (if
 * REPORTING).
 */

#define VIRTIO_BALLOON_F_MUST_TELL_HOST  0
#define VIRTIO_BALLOON_F_STATS_VQ        1
#define VIRTIO_BALLOON_F_DEFLATE_ON_OOM  2
#define VIRTIO_BALLOON_F_REPORTING       5

#define VIRTIO_BALLOON_PFN_SHIFT 12
#define VIRTIO_BALLOON_STAT_TAGS 16    /* tags 0..15 kept; others ignored */
#define VIRTIO_BALLOON_STAT_SIZE 10    /* le16 tag, le64 value */

/* Statistics tags (spec 5.5.6.3). */
#define VIRTIO_BALLOON_S_SWAP_IN   0
#define VIRTIO_BALLOON_S_SWAP_OUT  1
#define VIRTIO_BALLOON_S_MAJFLT    2
#define VIRTIO_BALLOON_S_MINFLT    3
#define VIRTIO_BALLOON_S_MEMFREE   4
#define VIRTIO_BALLOON_S_MEMTOT    5
#define VIRTIO_BALLOON_S_AVAIL     6
#define VIRTIO_BALLOON_S_CACHES    7

struct virtio_balloon_stats {
	uint32_t target_pages;         /* what the host asks for */
	uint32_t actual_pages;         /* what the driver says it holds */
	uint64_t inflated, deflated;   /* pages through each queue */
	uint64_t discarded_bytes;      /* given back to the host, both ways */
	uint64_t reported_bytes;       /* of which free page reports */
	uint64_t bad_pfns;             /* outside guest RAM: ignored */
	uint64_t stats_updates;        /* statistics buffers received */
	uint32_t guest_valid;          /* bit t: guest[t] was sent */
	uint64_t guest[VIRTIO_BALLOON_STAT_TAGS];
};

struct virtio_balloon;

/* target_pages must not exceed guest RAM (-EINVAL). */
int virtio_balloon_create(const struct guest_mem *m, uint32_t target_pages,
                          struct virtio_balloon **ret);
void virtio_balloon_destroy(struct virtio_balloon *b);
struct virtio_dev *virtio_balloon_dev(struct virtio_balloon *b);

/* Guest RAM in balloon pages: the largest target. */
uint64_t virtio_balloon_max_pages(const struct virtio_balloon *b);
/* New target; -EINVAL above virtio_balloon_max_pages().  Interrupts the
 * driver (config change) if it is running.  Transport locked. */
int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t pages);
/* Asks the driver for fresh statistics (transport locked). */
void virtio_balloon_request_stats(struct virtio_balloon *b);
const struct virtio_balloon_stats *virtio_balloon_stats(const struct virtio_balloon *b);

#endif
