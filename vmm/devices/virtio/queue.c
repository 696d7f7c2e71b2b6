/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "vmm/devices/virtio/queue.h"

/*
 * Guest RAM is shared with running vCPUs, so every ring field is read once
 * with an atomic load into a local and only the local is checked and used:
 * the guest cannot change a value between its check and its use.
 */
#define DESC_SIZE 16

static uint16_t load16(const uint8_t *p) { return __atomic_load_n((const uint16_t *)p, __ATOMIC_RELAXED); }
static uint32_t load32(const uint8_t *p) { return __atomic_load_n((const uint32_t *)p, __ATOMIC_RELAXED); }
static uint64_t load64(const uint8_t *p) { return __atomic_load_n((const uint64_t *)p, __ATOMIC_RELAXED); }

void virtq_reset(struct virtq *q)
{
	memset(q, 0, sizeof(*q));
}

static bool is_pow2(unsigned v) { return v && !(v & (v - 1)); }

/* Maps one ring; alignment per spec 2.7 keeps every field naturally aligned
 * for the atomic loads above. */
static uint8_t *map_ring(const struct guest_mem *m, uint64_t gpa, uint64_t len, uint64_t align)
{
	if (gpa & (align - 1))
		return NULL;
	return guest_mem_ptr(m, gpa, len);
}

int virtq_enable(struct virtq *q, const struct guest_mem *m, uint16_t max_size,
                 const char **ret_err)
{
	uint64_t n = q->size;

	if (!is_pow2(q->size) || q->size > max_size) {
		*ret_err = "queue size is not a power of two within QueueNumMax";
		return -EINVAL;
	}
	q->desc = map_ring(m, q->desc_gpa, DESC_SIZE * n, 16);
	q->avail = map_ring(m, q->avail_gpa, 6 + 2 * n, 2);
	q->used = map_ring(m, q->used_gpa, 6 + 8 * n, 4);
	if (!q->desc || !q->avail || !q->used) {
		q->desc = q->avail = q->used = NULL;
		*ret_err = "virtqueue ring misaligned or outside guest RAM";
		return -EINVAL;
	}
	q->mem = m;
	q->last_avail = 0;
	q->used_idx = 0;
	q->ready = true;
	return 0;
}

/* Reads the avail ring entry for the next chain; 0 when empty. */
static int next_head(struct virtq *q, uint16_t *ret_head, const char **ret_err)
{
	uint16_t avail_idx = __atomic_load_n((uint16_t *)(q->avail + 2), __ATOMIC_ACQUIRE);
	uint16_t pending = (uint16_t)(avail_idx - q->last_avail);
	uint16_t head;

	if (pending == 0)
		return 0;
	if (pending > q->size) {
		*ret_err = "avail index moved by more than the queue size";
		return -EINVAL;
	}
	head = load16(q->avail + 4 + 2 * (q->last_avail & (q->size - 1)));
	if (head >= q->size) {
		*ret_err = "avail ring names a descriptor index beyond the queue size";
		return -EINVAL;
	}
	*ret_head = head;
	return 1;
}

/* Checks one descriptor and appends it to the chain. */
static int add_desc(struct virtq *q, struct virtq_chain *c, uint64_t addr, uint32_t len,
                    uint16_t flags, const char **ret_err)
{
	void *p;

	if (flags & VIRTQ_DESC_F_INDIRECT) {
		*ret_err = "indirect descriptor, but VIRTIO_F_INDIRECT_DESC was not offered";
		return -EINVAL;
	}
	if (!(flags & VIRTQ_DESC_F_WRITE) && c->n_in) {
		*ret_err = "readable descriptor after a writable one";
		return -EINVAL;
	}
	p = guest_mem_ptr(q->mem, addr, len);
	if (!p) {
		*ret_err = "descriptor buffer outside guest RAM";
		return -EINVAL;
	}
	if ((uint64_t)c->out_len + c->in_len + len > VIRTQ_CHAIN_MAX_BYTES) {
		*ret_err = "descriptor chain longer than 2 GiB";
		return -EINVAL;
	}
	c->iov[c->n_out + c->n_in] = (struct iovec){ .iov_base = p, .iov_len = len };
	if (flags & VIRTQ_DESC_F_WRITE) {
		c->n_in++;
		c->in_len += len;
	} else {
		c->n_out++;
		c->out_len += len;
	}
	return 0;
}

/* Walks the chain from c->head.  A chain can visit at most q->size
 * descriptors, so a loop is caught when it exceeds that. */
static int walk_chain(struct virtq *q, struct virtq_chain *c, const char **ret_err)
{
	uint16_t idx = c->head;
	unsigned count;
	int r;

	for (count = 0; count < q->size; count++) {
		const uint8_t *d = q->desc + (size_t)DESC_SIZE * idx;
		uint64_t addr = load64(d);
		uint32_t len = load32(d + 8);
		uint16_t flags = load16(d + 12);
		uint16_t next = load16(d + 14);

		r = add_desc(q, c, addr, len, flags, ret_err);
		if (r < 0)
			return r;
		if (!(flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (next >= q->size) {
			*ret_err = "descriptor next index beyond the queue size";
			return -EINVAL;
		}
		idx = next;
	}
	*ret_err = "descriptor chain loops or is longer than the queue size";
	return -EINVAL;
}

int virtq_pop(struct virtq *q, struct virtq_chain *c, const char **ret_err)
{
	uint16_t head;
	int r;

	if (!q->ready)
		return 0;
	r = next_head(q, &head, ret_err);
	if (r <= 0)
		return r;
	c->head = head;
	c->n_out = c->n_in = 0;
	c->out_len = c->in_len = 0;
	r = walk_chain(q, c, ret_err);
	if (r < 0)
		return r;
	q->last_avail++;
	return 1;
}

void virtq_unpop(struct virtq *q)
{
	q->last_avail--;
}

void virtq_push(struct virtq *q, uint16_t head, uint32_t written)
{
	uint8_t *elem;

	if (!q->ready)
		return;
	elem = q->used + 4 + 8 * (size_t)(q->used_idx & (q->size - 1));
	__atomic_store_n((uint32_t *)elem, (uint32_t)head, __ATOMIC_RELAXED);
	__atomic_store_n((uint32_t *)(elem + 4), written, __ATOMIC_RELAXED);
	q->used_idx++;
	/* Release: the element is visible before the index that publishes it. */
	__atomic_store_n((uint16_t *)(q->used + 2), q->used_idx, __ATOMIC_RELEASE);
}

bool virtq_should_interrupt(const struct virtq *q)
{
	if (!q->ready)
		return false;
	/* Full fence: our used-index store must be ordered before reading the
	 * driver's flags, or an interrupt the driver wants could be missed. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !(load16(q->avail) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

/* Copies between the iovec's bytes from off on and a flat buffer, in the
 * direction to_iov says; returns the bytes copied (fewer if iov ends). */
static size_t iov_copy(const struct iovec *iov, unsigned n, size_t off, uint8_t *buf,
		       size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		uint8_t *base = iov[i].iov_base;
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		chunk = iov[i].iov_len - off;
		if (chunk > len - done)
			chunk = len - done;
		if (to_iov)
			memcpy(base + off, buf + done, chunk);
		else
			memcpy(buf + done, base + off, chunk);
		done += chunk;
		off = 0;
	}
	return done;
}

size_t iov_to_buf(const struct iovec *iov, unsigned n, size_t off, void *dst, size_t len)
{
	return iov_copy(iov, n, off, dst, len, false);
}

size_t iov_from_buf(const struct iovec *iov, unsigned n, size_t off, const void *src, size_t len)
{
	/* iov_copy only reads buf when to_iov is set */
	return iov_copy(iov, n, off, (uint8_t *)src, len, true);
}

int iov_slice(const struct iovec *iov, unsigned n, size_t off, size_t len,
              struct iovec *dst, unsigned max)
{
	unsigned out = 0;

	for (unsigned i = 0; i < n && len; i++) {
		size_t chunk;

		if (off >= iov[i].iov_len) {
			off -= iov[i].iov_len;
			continue;
		}
		if (out == max)
			return -EINVAL;
		chunk = iov[i].iov_len - off;
		if (chunk > len)
			chunk = len;
		dst[out++] = (struct iovec){ .iov_base = (uint8_t *)iov[i].iov_base + off,
		                             .iov_len = chunk };
		len -= chunk;
		off = 0;
	}
	return len ? -EINVAL : (int)out;
}
