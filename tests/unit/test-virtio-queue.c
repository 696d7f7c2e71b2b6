/* SPDX-License-Identifier: MIT */
/* The split-virtqueue parser on its own: ring placement checks, chains of
 * the maximum length, index wrap-around, unpop, and the iovec helpers. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "test-virtio-driver.h"

static void init_q(struct drv *d, struct virtq *q, uint16_t size)
{
	d->q[0] = (struct drv_queue){ .desc = DRV_RING_BASE, .avail = DRV_RING_BASE + 0x4000,
	                              .used = DRV_RING_BASE + 0x8000, .size = size };
	virtq_reset(q);
	q->size = size;
	q->desc_gpa = d->q[0].desc;
	q->avail_gpa = d->q[0].avail;
	q->used_gpa = d->q[0].used;
}

static void test_enable(struct drv *d)
{
	struct virtq q;
	const char *err = NULL;

	init_q(d, &q, 16);
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), 0);
	CHECK(q.ready);
	init_q(d, &q, 0);
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	init_q(d, &q, 512);
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	init_q(d, &q, 16);
	q.avail_gpa += 1;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	init_q(d, &q, 16);
	q.used_gpa += 2;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	CHECK(!q.ready);
	/* Descriptor table ending one byte past RAM. */
	init_q(d, &q, 16);
	q.desc_gpa = DRV_RAM_SIZE - 16 * 16 + 16;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	init_q(d, &q, 16);
	q.desc_gpa = DRV_RAM_SIZE - 16 * 16;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), 0);
	/* Addresses in the MMIO hole and far beyond RAM. */
	init_q(d, &q, 16);
	q.used_gpa = 0xd0000000;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
	init_q(d, &q, 16);
	q.avail_gpa = 0xfffffffffffffff0ULL;
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), -EINVAL);
}

/* A chain of exactly `size` descriptors is fine; the same ring with the
 * last one pointing back to the first loops. */
static void test_max_chain(struct drv *d)
{
	struct virtq_chain c;
	struct virtq q;
	const char *err = NULL;
	const uint16_t size = 8;

	init_q(d, &q, size);
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), 0);
	for (uint16_t i = 0; i < size; i++)
		drv_set_desc(d, 0, i, DRV_DATA_BASE + 100u * i, 100,
		             (i < 3 ? 0 : VIRTQ_DESC_F_WRITE) | (i + 1 < size ? VIRTQ_DESC_F_NEXT : 0),
		             (uint16_t)(i + 1));
	drv_publish(d, 0, 0);
	CHECK_EQ(virtq_pop(&q, &c, &err), 1);
	CHECK_EQ(c.n_out, 3);
	CHECK_EQ(c.n_in, 5);
	CHECK_EQ(c.out_len, 300);
	CHECK_EQ(c.in_len, 500);
	CHECK(c.iov[7].iov_base == drv_ptr(d, DRV_DATA_BASE + 700));
	CHECK_EQ(virtq_pop(&q, &c, &err), 0);

	virtq_unpop(&q);
	CHECK_EQ(virtq_pop(&q, &c, &err), 1);
	CHECK_EQ(c.head, 0);

	drv_set_desc(d, 0, size - 1, DRV_DATA_BASE, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	drv_publish(d, 0, 0);
	err = NULL;
	CHECK_EQ(virtq_pop(&q, &c, &err), -EINVAL);
	CHECK(err && strstr(err, "loops"));
}

/* The 16-bit ring indices wrap; the device must follow. */
static void test_wrap(struct drv *d)
{
	struct virtq_chain c;
	struct virtq q;
	const char *err = NULL;
	uint32_t id = 0, len = 0;

	init_q(d, &q, 4);
	memset(drv_ptr(d, DRV_RING_BASE), 0, 0x10000);
	CHECK_EQ(virtq_enable(&q, &d->mem, VIRTQ_MAX_SIZE, &err), 0);
	q.last_avail = q.used_idx = 65534;
	d->q[0].avail_idx = d->q[0].used_seen = 65534;
	for (int i = 0; i < 4; i++) {
		drv_set_desc(d, 0, (uint16_t)i, DRV_DATA_BASE, 10, VIRTQ_DESC_F_WRITE, 0);
		drv_publish(d, 0, (uint16_t)i);
		CHECK_EQ(virtq_pop(&q, &c, &err), 1);
		CHECK_EQ(c.head, i);
		virtq_push(&q, c.head, 7);
		CHECK(drv_used(d, 0, &id, &len));
		CHECK_EQ(id, i);
		CHECK_EQ(len, 7);
	}
	CHECK_EQ(q.last_avail, 2);
	CHECK_EQ(virtq_pop(&q, &c, &err), 0);
}

static void test_iov(void)
{
	uint8_t a[5] = "abcde", b[3] = "fgh", out[8] = { 0 };
	struct iovec iov[2] = { { a, 5 }, { b, 3 } }, dst[2];

	CHECK_EQ(iov_to_buf(iov, 2, 3, out, 4), 4);
	CHECK(memcmp(out, "defg", 4) == 0);
	CHECK_EQ(iov_to_buf(iov, 2, 6, out, 8), 2);
	CHECK_EQ(iov_from_buf(iov, 2, 4, "XY", 2), 2);
	CHECK(a[4] == 'X' && b[0] == 'Y');
	CHECK_EQ(iov_slice(iov, 2, 4, 3, dst, 2), 2);
	CHECK(dst[0].iov_base == a + 4 && dst[0].iov_len == 1 && dst[1].iov_len == 2);
	CHECK_EQ(iov_slice(iov, 2, 4, 5, dst, 2), -EINVAL);
	CHECK_EQ(iov_slice(iov, 2, 0, 8, dst, 1), -EINVAL);
	CHECK_EQ(iov_slice(iov, 2, 5, 0, dst, 2), 0);
}

int main(void)
{
	struct drv d;

	drv_open(&d);
	test_enable(&d);
	test_max_chain(&d);
	test_wrap(&d);
	test_iov();
	drv_close(&d);
	return check_result("test-virtio-queue");
}
