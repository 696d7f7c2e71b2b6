/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "vmm/devices/virtio/blk.h"

#define BLK_HDR_SIZE 16  /* le32 type, le32 reserved, le64 sector */

/* The part of struct virtio_blk_config (spec 5.2.4) we fill in. */
struct blk_config {
	uint64_t capacity;
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads;
	uint8_t sectors;
	uint32_t blk_size;
} __attribute__((packed));

struct virtio_blk {
	struct virtio_dev vd;
	int fd;
	bool read_only;
	uint64_t capacity;
	char id[VIRTIO_BLK_ID_BYTES];
	struct blk_config config;
	struct virtio_blk_stats stats;
	struct ratelimit rl;
	int timer_fd;
	bool throttled;              /* timer armed: the queue waits for it */
	struct virtq_chain chain;
	struct iovec data[VIRTQ_MAX_SIZE];
};

#define to_blk(vdp) ((struct virtio_blk *)((char *)(vdp) - offsetof(struct virtio_blk, vd)))

static void blk_config_read(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	struct virtio_blk *b = to_blk(vd);

	memcpy(buf, (const uint8_t *)&b->config + off, len);
}

/* Transfers the whole of iov[0..n) at file offset off, resuming after short
 * transfers; iov is consumed. */
static int blk_rw(int fd, struct iovec *iov, int n, uint64_t off, bool write)
{
	while (n > 0) {
		ssize_t done = write ? pwritev(fd, iov, n, (off_t)off) : preadv(fd, iov, n, (off_t)off);

		if (done < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (done == 0)
			return -EIO;  /* the image shrank under us */
		off += (uint64_t)done;
		while (n > 0 && (size_t)done >= iov->iov_len) {
			done -= (ssize_t)iov->iov_len;
			iov++;
			n--;
		}
		if (n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + done;
			iov->iov_len -= (size_t)done;
		}
	}
	return 0;
}

/* Sector range [sector, sector + len/512) must be whole sectors inside the disk. */
static bool blk_range_ok(const struct virtio_blk *b, uint64_t sector, uint64_t len)
{
	uint64_t nsec = len / VIRTIO_BLK_SECTOR_SIZE;

	if (len % VIRTIO_BLK_SECTOR_SIZE)
		return false;
	return sector <= b->capacity && nsec <= b->capacity - sector;
}

static uint8_t blk_read(struct virtio_blk *b, struct virtq_chain *c, uint64_t sector, uint32_t *written)
{
	uint32_t len = c->in_len - 1;
	int n;

	if (!blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov + c->n_out, c->n_in, 0, len, b->data, VIRTQ_MAX_SIZE);
	if (n < 0 || blk_rw(b->fd, b->data, n, sector * VIRTIO_BLK_SECTOR_SIZE, false) < 0)
		return VIRTIO_BLK_S_IOERR;
	b->stats.reads++;
	b->stats.read_bytes += len;
	*written += len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_write(struct virtio_blk *b, struct virtq_chain *c, uint64_t sector)
{
	uint32_t len = c->out_len - BLK_HDR_SIZE;
	int n;

	if (b->read_only || !blk_range_ok(b, sector, len))
		return VIRTIO_BLK_S_IOERR;
	n = iov_slice(c->iov, c->n_out, BLK_HDR_SIZE, len, b->data, VIRTQ_MAX_SIZE);
	if (n < 0 || blk_rw(b->fd, b->data, n, sector * VIRTIO_BLK_SECTOR_SIZE, true) < 0)
		return VIRTIO_BLK_S_IOERR;
	b->stats.writes++;
	b->stats.write_bytes += len;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_flush(struct virtio_blk *b)
{
	int r;

	do
		r = fdatasync(b->fd);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return VIRTIO_BLK_S_IOERR;
	b->stats.flushes++;
	return VIRTIO_BLK_S_OK;
}

static uint8_t blk_get_id(struct virtio_blk *b, struct virtq_chain *c, uint32_t *written)
{
	uint32_t len = c->in_len - 1;

	if (len > VIRTIO_BLK_ID_BYTES)
		len = VIRTIO_BLK_ID_BYTES;
	*written += (uint32_t)iov_from_buf(c->iov + c->n_out, c->n_in, 0, b->id, len);
	return VIRTIO_BLK_S_OK;
}

/* One request: header in the readable part, status byte at the very end of
 * the writable part, data in between (any descriptor layout, spec 2.7.4). */
static int blk_request(struct virtio_blk *b, struct virtq_chain *c)
{
	uint32_t type;
	uint64_t sector;
	uint8_t hdr[BLK_HDR_SIZE], status;
	uint32_t written = 0;

	if (c->out_len < BLK_HDR_SIZE || c->in_len < 1)
		return -EINVAL;
	iov_to_buf(c->iov, c->n_out, 0, hdr, sizeof(hdr));
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	switch (type) {
	case VIRTIO_BLK_T_IN:     status = blk_read(b, c, sector, &written); break;
	case VIRTIO_BLK_T_OUT:    status = blk_write(b, c, sector); break;
	case VIRTIO_BLK_T_FLUSH:  status = blk_flush(b); break;
	case VIRTIO_BLK_T_GET_ID: status = blk_get_id(b, c, &written); break;
	default:                  status = VIRTIO_BLK_S_UNSUPP; break;
	}
	if (status != VIRTIO_BLK_S_OK)
		b->stats.errors++;
	iov_from_buf(c->iov + c->n_out, c->n_in, c->in_len - 1, &status, 1);
	virtio_dev_push(&b->vd, 0, c->head, written + 1);
	return 0;
}

/* The data bytes a request moves, as the limiter charges them: everything
 * but the header and the status byte. */
static uint64_t blk_payload(const struct virtq_chain *c)
{
	uint64_t n = (uint64_t)c->out_len + c->in_len;

	return n > BLK_HDR_SIZE + 1 ? n - BLK_HDR_SIZE - 1 : 0;
}

static void blk_throttle(struct virtio_blk *b, uint64_t ns)
{
	/* a timerfd that cannot be armed leaves the queue to the next
	 * notification rather than stalling it */
	b->throttled = ratelimit_timer_arm(b->timer_fd, ns) == 0;
}

/* At most one ring's worth per notification: anything the driver adds
 * later comes with a notification of its own.  Under a limit, the driver's
 * notifications are ignored while throttled, so a full ring's worth goes on
 * from the timer instead. */
static void blk_run(struct virtio_blk *b)
{
	struct virtio_dev *vd = &b->vd;
	bool limited = ratelimit_enabled(&b->rl);
	unsigned done = 0;
	uint64_t wait;

	while (done < vd->vq[0].size && virtio_dev_pop(vd, 0, &b->chain) > 0) {
		if (limited && (wait = ratelimit_wait_ns(&b->rl, ratelimit_now_ns()))) {
			virtq_unpop(&vd->vq[0]);
			blk_throttle(b, wait);
			break;
		}
		if (blk_request(b, &b->chain) < 0) {
			virtio_dev_fail(vd, "virtio-blk request without header or status byte");
			break;
		}
		ratelimit_charge(&b->rl, blk_payload(&b->chain), 1);
		done++;
	}
	if (limited && done == vd->vq[0].size && !b->throttled)
		blk_throttle(b, 0);
	if (done)
		virtio_dev_signal(vd, 0);
}

static void blk_queue_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_blk *b = to_blk(vd);

	if (!b->throttled)
		blk_run(b);
}

static void blk_reset(struct virtio_dev *vd)
{
	struct virtio_blk *b = to_blk(vd);

	/* a timer still armed finds the queue disabled and does nothing */
	b->throttled = false;
}

void virtio_blk_timer(struct virtio_blk *b)
{
	ratelimit_timer_clear(b->timer_fd);
	b->throttled = false;
	if (virtio_dev_running(&b->vd) && b->vd.vq[0].ready)
		blk_run(b);
}

void virtio_blk_set_limits(struct virtio_blk *b, const struct ratelimit_config *c)
{
	ratelimit_set(&b->rl, c, ratelimit_now_ns());
	/* requests waiting under the old limit go on under the new one */
	if (b->throttled)
		blk_throttle(b, 0);
}

static const struct virtio_dev_ops blk_ops = {
	.device_id = VIRTIO_ID_BLOCK,
	.num_queues = 1,
	.config_size = sizeof(struct blk_config),
	.config_read = blk_config_read,
	.queue_notify = blk_queue_notify,
	.reset = blk_reset,
};

int virtio_blk_create(int fd, bool read_only, const char *id, const struct guest_mem *m,
                      struct virtio_blk **ret)
{
	struct virtio_blk *b;
	struct stat st;

	if (fstat(fd, &st) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	b = calloc(1, sizeof(*b));
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	b->timer_fd = ratelimit_timer_open();
	if (b->timer_fd < 0) {
		int r = b->timer_fd;
		close(fd);
		free(b);
		return r;
	}
	b->fd = fd;
	b->read_only = read_only;
	b->capacity = (uint64_t)st.st_size / VIRTIO_BLK_SECTOR_SIZE;
	if (id)
		memcpy(b->id, id, strnlen(id, sizeof(b->id)));  /* NUL-padded, not terminated */
	b->config.capacity = b->capacity;
	b->config.seg_max = VIRTQ_MAX_SIZE - 2;  /* minus header and status */
	b->vd.ops = &blk_ops;
	b->vd.mem = m;
	b->vd.device_features = (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_FLUSH) |
	                        (read_only ? 1ULL << VIRTIO_BLK_F_RO : 0);
	*ret = b;
	return 0;
}

int virtio_blk_open(const char *path, bool read_only, const char *id, const struct guest_mem *m,
                    struct virtio_blk **ret)
{
	int fd = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	return virtio_blk_create(fd, read_only, id, m, ret);
}

void virtio_blk_destroy(struct virtio_blk *b)
{
	if (!b)
		return;
	close(b->fd);
	close(b->timer_fd);
	free(b);
}

struct virtio_dev *virtio_blk_dev(struct virtio_blk *b) { return &b->vd; }
uint64_t virtio_blk_capacity(const struct virtio_blk *b) { return b->capacity; }
const struct virtio_blk_stats *virtio_blk_stats(const struct virtio_blk *b) { return &b->stats; }
const struct ratelimit *virtio_blk_limiter(const struct virtio_blk *b) { return &b->rl; }
int virtio_blk_timer_fd(const struct virtio_blk *b) { return b->timer_fd; }
