/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/random.h>

#include "vmm/devices/virtio/rng.h"

struct virtio_rng {
	struct virtio_dev vd;
	struct virtq_chain chain;
};

#define to_rng(vdp) ((struct virtio_rng *)((char *)(vdp) - offsetof(struct virtio_rng, vd)))

/* Fills one buffer; getrandom returns short counts for large requests or on
 * signals, so loop.  Returns the bytes filled. */
static size_t fill(void *buf, size_t len)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = getrandom((char *)buf + done, len - done, 0);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		done += (size_t)n;
	}
	return done;
}

/* At most VIRTIO_RNG_CHAIN_MAX bytes per chain.  A chain may name up to
 * 2 GiB (and a ring 256 of them), which would keep the event loop in
 * getrandom() for minutes; the spec (5.4.6.1) lets the device use less
 * than the whole buffer, and drivers ask for a few dozen bytes at a time. */
static uint32_t fill_chain(struct virtq_chain *c)
{
	uint32_t written = 0;

	for (unsigned i = c->n_out; i < (unsigned)c->n_out + c->n_in; i++) {
		size_t want = c->iov[i].iov_len;
		size_t n;

		if (want > VIRTIO_RNG_CHAIN_MAX - written)
			want = VIRTIO_RNG_CHAIN_MAX - written;
		n = fill(c->iov[i].iov_base, want);
		written += (uint32_t)n;
		if (n < c->iov[i].iov_len)
			break;
	}
	return written;
}

static void rng_queue_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_rng *r = to_rng(vd);
	unsigned done = 0;

	while (done < vd->vq[0].size && virtio_dev_pop(vd, 0, &r->chain) > 0) {
		virtio_dev_push(vd, 0, r->chain.head, fill_chain(&r->chain));
		done++;
	}
	if (done)
		virtio_dev_signal(vd, 0);
}

static const struct virtio_dev_ops rng_ops = {
	.device_id = VIRTIO_ID_RNG,
	.num_queues = 1,
	.queue_notify = rng_queue_notify,
};

int virtio_rng_create(const struct guest_mem *m, struct virtio_rng **ret)
{
	struct virtio_rng *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->vd.ops = &rng_ops;
	r->vd.mem = m;
	*ret = r;
	return 0;
}

void virtio_rng_destroy(struct virtio_rng *r)
{
	free(r);
}

struct virtio_dev *virtio_rng_dev(struct virtio_rng *r) { return &r->vd; }
