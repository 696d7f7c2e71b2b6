/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devices/virtio/balloon.h"

#define PFN_BATCH 256                  /* PFNs copied out of a chain at a time */
#define STATS_MAX 64                   /* entries read from one stats buffer */

enum bq_role { BQ_INFLATE, BQ_DEFLATE, BQ_STATS, BQ_REPORTING, BQ_NONE };

struct balloon_config {
	uint32_t num_pages;
	uint32_t actual;
} __attribute__((packed));

struct virtio_balloon {
	struct virtio_dev vd;
	struct balloon_config config;
	struct virtio_balloon_stats stats;
	uint64_t max_pages;
	bool stats_held;                   /* the driver's buffer waits in stats_head */
	uint16_t stats_head, stats_queue;
	struct virtq_chain chain;
};

#define to_balloon(vdp) ((struct virtio_balloon *)((char *)(vdp) - offsetof(struct virtio_balloon, vd)))

/* Drivers number only the queues whose features they accepted. */
static enum bq_role queue_role(const struct virtio_dev *vd, uint16_t q)
{
	uint16_t next = 2;

	if (q < 2)
		return q == 0 ? BQ_INFLATE : BQ_DEFLATE;
	if (virtio_has_feature(vd, VIRTIO_BALLOON_F_STATS_VQ) && q == next++)
		return BQ_STATS;
	if (virtio_has_feature(vd, VIRTIO_BALLOON_F_REPORTING) && q == next)
		return BQ_REPORTING;
	return BQ_NONE;
}

static void balloon_config_read(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, (const uint8_t *)&to_balloon(vd)->config + off, len);
}

/* Only `actual` is the driver's to write; num_pages is the host's. */
static void balloon_config_write(struct virtio_dev *vd, uint32_t off, const void *buf, uint32_t len)
{
	struct virtio_balloon *b = to_balloon(vd);
	uint32_t start = off < 4 ? 4 : off;

	if (off + len <= start)
		return;
	memcpy((uint8_t *)&b->config + start, (const uint8_t *)buf + (start - off), off + len - start);
	b->stats.actual_pages = b->config.actual;
}

/* Gives [first, first + n) pages back to the host; n > 0. */
static void discard_run(struct virtio_balloon *b, uint64_t first, uint64_t n)
{
	uint64_t gpa = first << VIRTIO_BALLOON_PFN_SHIFT, len = n << VIRTIO_BALLOON_PFN_SHIFT;
	void *p = guest_mem_ptr(b->vd.mem, gpa, len);
	int64_t r;

	if (!p) {
		/* a run across a hole or past the end: page by page, so the
		 * valid ones still go */
		for (uint64_t i = 0; i < n; i++) {
			p = guest_mem_ptr(b->vd.mem, gpa + (i << VIRTIO_BALLOON_PFN_SHIFT),
			                  GUEST_PAGE_SIZE);
			if (!p) {
				b->stats.bad_pfns++;
				continue;
			}
			r = guest_mem_discard(b->vd.mem, p, GUEST_PAGE_SIZE);
			if (r > 0)
				b->stats.discarded_bytes += (uint64_t)r;
		}
		return;
	}
	r = guest_mem_discard(b->vd.mem, p, len);
	if (r > 0)
		b->stats.discarded_bytes += (uint64_t)r;
}

/* One inflate chain: le32 PFNs in its readable part, merged into runs of
 * consecutive pages so a large inflation costs few madvise calls. */
static void inflate_chain(struct virtio_balloon *b, const struct virtq_chain *c)
{
	uint32_t pfns[PFN_BATCH];
	uint64_t n = c->out_len / 4, run_first = 0, run_len = 0;

	for (uint64_t i = 0; i < n; i += PFN_BATCH) {
		uint64_t k = n - i < PFN_BATCH ? n - i : PFN_BATCH;

		iov_to_buf(c->iov, c->n_out, i * 4, pfns, k * 4);
		for (uint64_t j = 0; j < k; j++) {
			if (run_len && pfns[j] == run_first + run_len) {
				run_len++;
				continue;
			}
			if (run_len)
				discard_run(b, run_first, run_len);
			run_first = pfns[j];
			run_len = 1;
		}
	}
	if (run_len)
		discard_run(b, run_first, run_len);
	b->stats.inflated += n;
}

/* Free page reporting: every buffer of the chain is a free guest range. */
static void report_chain(struct virtio_balloon *b, const struct virtq_chain *c)
{
	for (unsigned i = 0; i < (unsigned)c->n_out + c->n_in; i++) {
		int64_t r = guest_mem_discard(b->vd.mem, c->iov[i].iov_base, c->iov[i].iov_len);

		if (r > 0) {
			b->stats.discarded_bytes += (uint64_t)r;
			b->stats.reported_bytes += (uint64_t)r;
		}
	}
}

static void stats_chain(struct virtio_balloon *b, const struct virtq_chain *c, uint16_t q)
{
	uint8_t e[VIRTIO_BALLOON_STAT_SIZE];
	uint64_t n = c->out_len / VIRTIO_BALLOON_STAT_SIZE;
	uint16_t tag;
	uint64_t val;

	if (n > STATS_MAX)
		n = STATS_MAX;
	for (uint64_t i = 0; i < n; i++) {
		iov_to_buf(c->iov, c->n_out, i * VIRTIO_BALLOON_STAT_SIZE, e, sizeof(e));
		memcpy(&tag, e, 2);
		memcpy(&val, e + 2, 8);
		if (tag >= VIRTIO_BALLOON_STAT_TAGS)
			continue;
		b->stats.guest[tag] = val;
		b->stats.guest_valid |= 1u << tag;
	}
	b->stats.stats_updates++;
	/* the driver keeps one buffer here; a second one returns the first */
	if (b->stats_held) {
		virtio_dev_push(&b->vd, q, b->stats_head, 0);
		virtio_dev_signal(&b->vd, q);
	}
	b->stats_held = true;
	b->stats_head = c->head;
	b->stats_queue = q;
}

static void balloon_queue_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_balloon *b = to_balloon(vd);
	enum bq_role role = queue_role(vd, q);
	unsigned done = 0;

	if (role == BQ_NONE)
		return;
	while (done < vd->vq[q].size && virtio_dev_pop(vd, q, &b->chain) > 0) {
		done++;
		if (role == BQ_STATS) {
			stats_chain(b, &b->chain, q);
			continue;
		}
		if (role == BQ_INFLATE)
			inflate_chain(b, &b->chain);
		else if (role == BQ_DEFLATE)
			b->stats.deflated += b->chain.out_len / 4;
		else
			report_chain(b, &b->chain);
		virtio_dev_push(vd, q, b->chain.head, 0);
	}
	if (done && role != BQ_STATS)
		virtio_dev_signal(vd, q);
}

static void balloon_reset(struct virtio_dev *vd)
{
	struct virtio_balloon *b = to_balloon(vd);

	/* a driver starting over holds no pages and no stats buffer */
	b->stats_held = false;
	b->config.actual = 0;
	b->stats.actual_pages = 0;
}

static const struct virtio_dev_ops balloon_ops = {
	.device_id = VIRTIO_ID_BALLOON,
	.num_queues = 4,
	.config_size = sizeof(struct balloon_config),
	.config_read = balloon_config_read,
	.config_write = balloon_config_write,
	.queue_notify = balloon_queue_notify,
	.reset = balloon_reset,
};

int virtio_balloon_create(const struct guest_mem *m, uint32_t target_pages,
                          struct virtio_balloon **ret)
{
	struct virtio_balloon *b;

	if (target_pages > m->size >> VIRTIO_BALLOON_PFN_SHIFT)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->vd.ops = &balloon_ops;
	b->vd.mem = m;
	b->vd.device_features = (1ULL << VIRTIO_BALLOON_F_STATS_VQ) |
	                        (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM) |
	                        (1ULL << VIRTIO_BALLOON_F_REPORTING);
	b->max_pages = m->size >> VIRTIO_BALLOON_PFN_SHIFT;
	b->config.num_pages = target_pages;
	b->stats.target_pages = target_pages;
	*ret = b;
	return 0;
}

void virtio_balloon_destroy(struct virtio_balloon *b)
{
	free(b);
}

struct virtio_dev *virtio_balloon_dev(struct virtio_balloon *b) { return &b->vd; }
uint64_t virtio_balloon_max_pages(const struct virtio_balloon *b) { return b->max_pages; }

const struct virtio_balloon_stats *virtio_balloon_stats(const struct virtio_balloon *b)
{
	return &b->stats;
}

int virtio_balloon_set_target(struct virtio_balloon *b, uint64_t pages)
{
	if (pages > b->max_pages)
		return -EINVAL;
	b->config.num_pages = (uint32_t)pages;
	b->stats.target_pages = (uint32_t)pages;
	if (b->vd.status & VIRTIO_STATUS_DRIVER_OK)
		virtio_dev_config_changed(&b->vd);
	return 0;
}

void virtio_balloon_request_stats(struct virtio_balloon *b)
{
	if (!b->stats_held || !virtio_dev_running(&b->vd) || !b->vd.vq[b->stats_queue].ready)
		return;
	b->stats_held = false;
	virtio_dev_push(&b->vd, b->stats_queue, b->stats_head, 0);
	virtio_dev_signal(&b->vd, b->stats_queue);
}
