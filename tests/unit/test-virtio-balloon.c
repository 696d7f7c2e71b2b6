/* SPDX-License-Identifier: MIT */
/* virtio-balloon through the virtio-mmio registers by the fake driver:
 * inflate/deflate with PFNs in and out of guest RAM, free page reports,
 * the statistics queue, the target and `actual` in config space, queue
 * numbering without STATS_VQ; and guest_mem_discard() on a real mapping. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/devices/virtio/balloon.h"

#define PFN_GPA    (DRV_DATA_BASE)
#define STATS_GPA  (DRV_DATA_BASE + 0x1000)
#define PAGES_GPA  (DRV_DATA_BASE + 0x10000)   /* pages handed to the balloon */
#define PAGE       4096u
#define ALL        ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_BALLOON_F_STATS_VQ) | \
                    (1ULL << VIRTIO_BALLOON_F_DEFLATE_ON_OOM) | (1ULL << VIRTIO_BALLOON_F_REPORTING))
#define Q_INFLATE  0
#define Q_DEFLATE  1
#define Q_STATS    2
#define Q_REPORT   3

static bool filled(struct drv *d, uint64_t gpa, uint64_t len, uint8_t v)
{
	const uint8_t *p = drv_ptr(d, gpa);

	for (uint64_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* Sends n PFNs on queue q and waits for the chain to come back. */
static bool send_pfns(struct drv *d, unsigned q, const uint32_t *pfns, unsigned n)
{
	struct drv_seg seg = { PFN_GPA, n * 4, false };
	uint32_t id, len;

	memcpy(drv_ptr(d, PFN_GPA), pfns, n * 4);
	drv_post(d, q, &seg, 1);
	drv_kick(d, q);
	return drv_used(d, q, &id, &len) && len == 0;
}

static void test_inflate(struct drv *d, struct virtio_balloon *b)
{
	uint32_t pfns[6];
	const struct virtio_balloon_stats *st = virtio_balloon_stats(b);

	memset(drv_ptr(d, PAGES_GPA), 0xaa, 8 * PAGE);
	/* three consecutive pages (one run), one apart, and two outside RAM */
	pfns[0] = PAGES_GPA / PAGE;
	pfns[1] = PAGES_GPA / PAGE + 1;
	pfns[2] = PAGES_GPA / PAGE + 2;
	pfns[3] = PAGES_GPA / PAGE + 5;
	pfns[4] = DRV_RAM_SIZE / PAGE;
	pfns[5] = UINT32_MAX;
	CHECK(send_pfns(d, Q_INFLATE, pfns, 6));
	CHECK(filled(d, PAGES_GPA, 3 * PAGE, 0));
	CHECK(filled(d, PAGES_GPA + 3 * PAGE, 2 * PAGE, 0xaa));
	CHECK(filled(d, PAGES_GPA + 5 * PAGE, PAGE, 0));
	CHECK(filled(d, PAGES_GPA + 6 * PAGE, 2 * PAGE, 0xaa));
	CHECK_EQ(st->inflated, 6);
	CHECK_EQ(st->bad_pfns, 2);
	CHECK_EQ(st->discarded_bytes, 4 * PAGE);
	/* a run that starts in RAM and runs off its end: the valid page goes */
	pfns[0] = DRV_RAM_SIZE / PAGE - 1;
	pfns[1] = DRV_RAM_SIZE / PAGE;
	memset(drv_ptr(d, DRV_RAM_SIZE - PAGE), 0xbb, PAGE);
	CHECK(send_pfns(d, Q_INFLATE, pfns, 2));
	CHECK(filled(d, DRV_RAM_SIZE - PAGE, PAGE, 0));
	CHECK_EQ(st->bad_pfns, 3);
	/* the driver says what it holds */
	uint32_t actual = 8;
	CHECK_EQ(virtio_mmio_write(&d->t, VIRTIO_MMIO_CONFIG + 4, &actual, 4), 0);
	CHECK_EQ(st->actual_pages, 8);
	/* num_pages is the host's: a driver write is ignored */
	uint32_t bogus = 12345;
	virtio_mmio_write(&d->t, VIRTIO_MMIO_CONFIG, &bogus, 4);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_CONFIG), st->target_pages);
	/* deflate: counted, nothing touched */
	memset(drv_ptr(d, PAGES_GPA), 0xcc, PAGE);
	CHECK(send_pfns(d, Q_DEFLATE, pfns, 2));
	CHECK_EQ(st->deflated, 2);
	CHECK(filled(d, PAGES_GPA, PAGE, 0xcc));
}

static void test_report(struct drv *d, struct virtio_balloon *b)
{
	const struct virtio_balloon_stats *st = virtio_balloon_stats(b);
	/* page-aligned 2 pages, and a misaligned range covering one whole page */
	struct drv_seg segs[2] = {
		{ PAGES_GPA, 2 * PAGE, true }, { PAGES_GPA + 4 * PAGE - 100, PAGE + 200, true },
	};
	uint64_t before = st->reported_bytes;
	uint32_t id, len;

	memset(drv_ptr(d, PAGES_GPA), 0xdd, 8 * PAGE);
	drv_post(d, Q_REPORT, segs, 2);
	drv_kick(d, Q_REPORT);
	CHECK(drv_used(d, Q_REPORT, &id, &len));
	CHECK(filled(d, PAGES_GPA, 2 * PAGE, 0));
	CHECK(filled(d, PAGES_GPA + 2 * PAGE, 2 * PAGE, 0xdd));
	CHECK(filled(d, PAGES_GPA + 4 * PAGE, PAGE, 0));
	CHECK(filled(d, PAGES_GPA + 5 * PAGE, PAGE, 0xdd));
	CHECK_EQ(st->reported_bytes - before, 3 * PAGE);
}

static void put_stat(struct drv *d, unsigned i, uint16_t tag, uint64_t val)
{
	uint8_t *p = drv_ptr(d, STATS_GPA + i * VIRTIO_BALLOON_STAT_SIZE);

	memcpy(p, &tag, 2);
	memcpy(p + 2, &val, 8);
}

static void test_stats(struct drv *d, struct virtio_balloon *b)
{
	const struct virtio_balloon_stats *st = virtio_balloon_stats(b);
	struct drv_seg seg = { STATS_GPA, 3 * VIRTIO_BALLOON_STAT_SIZE, false };
	uint32_t id, len;

	put_stat(d, 0, VIRTIO_BALLOON_S_MEMFREE, 1000);
	put_stat(d, 1, VIRTIO_BALLOON_S_MEMTOT, 4000);
	put_stat(d, 2, 999, 5);                    /* unknown tag: ignored */
	drv_post(d, Q_STATS, &seg, 1);
	drv_kick(d, Q_STATS);
	/* the device keeps the buffer until it wants fresh numbers */
	CHECK(!drv_used(d, Q_STATS, &id, &len));
	CHECK_EQ(st->stats_updates, 1);
	CHECK_EQ(st->guest[VIRTIO_BALLOON_S_MEMFREE], 1000);
	CHECK_EQ(st->guest[VIRTIO_BALLOON_S_MEMTOT], 4000);
	CHECK_EQ(st->guest_valid, 1u << VIRTIO_BALLOON_S_MEMFREE | 1u << VIRTIO_BALLOON_S_MEMTOT);
	virtio_balloon_request_stats(b);
	CHECK(drv_used(d, Q_STATS, &id, &len));
	virtio_balloon_request_stats(b);           /* nothing held: nothing to return */
	CHECK(!drv_used(d, Q_STATS, &id, &len));
	put_stat(d, 0, VIRTIO_BALLOON_S_MEMFREE, 2000);
	drv_post(d, Q_STATS, &seg, 1);
	drv_kick(d, Q_STATS);
	CHECK_EQ(st->guest[VIRTIO_BALLOON_S_MEMFREE], 2000);
	/* a second buffer while one is held returns the first */
	drv_post(d, Q_STATS, &seg, 1);
	drv_kick(d, Q_STATS);
	CHECK(drv_used(d, Q_STATS, &id, &len));
	CHECK_EQ(st->stats_updates, 3);
}

static void test_target(struct drv *d, struct virtio_balloon *b)
{
	unsigned irqs = d->irqs;

	CHECK_EQ(virtio_balloon_max_pages(b), DRV_RAM_SIZE / PAGE);
	CHECK_EQ(virtio_balloon_set_target(b, 100), 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_CONFIG), 100);
	CHECK(d->irqs > irqs);
	CHECK(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(virtio_balloon_set_target(b, DRV_RAM_SIZE / PAGE), 0);
	CHECK_EQ(virtio_balloon_set_target(b, DRV_RAM_SIZE / PAGE + 1), -EINVAL);
	CHECK_EQ(virtio_balloon_set_target(b, UINT64_MAX), -EINVAL);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_CONFIG), DRV_RAM_SIZE / PAGE);
	CHECK_EQ(virtio_balloon_stats(b)->target_pages, DRV_RAM_SIZE / PAGE);
}

/* Without STATS_VQ the reporting queue is number 2, as drivers count. */
static void test_no_stats_queue(struct drv *d, struct virtio_balloon *b)
{
	const struct virtio_balloon_stats *st = virtio_balloon_stats(b);
	struct drv_seg seg = { PAGES_GPA, PAGE, true };
	uint64_t before = st->reported_bytes;
	uint64_t feat = drv_init(d, ALL & ~(1ULL << VIRTIO_BALLOON_F_STATS_VQ), 3, 16);
	uint32_t id, len;

	CHECK(!(feat & 1ULL << VIRTIO_BALLOON_F_STATS_VQ));
	CHECK(feat & 1ULL << VIRTIO_BALLOON_F_REPORTING);
	/* a reset forgets what the old driver held */
	CHECK_EQ(st->actual_pages, 0);
	memset(drv_ptr(d, PAGES_GPA), 0xee, PAGE);
	drv_post(d, 2, &seg, 1);
	drv_kick(d, 2);
	CHECK(drv_used(d, 2, &id, &len));
	CHECK(filled(d, PAGES_GPA, PAGE, 0));
	CHECK_EQ(st->reported_bytes - before, PAGE);
}

/* A real anonymous mapping: discarded pages leave memory and read zero. */
static void test_discard_real(void)
{
	struct guest_mem m;
	unsigned char vec[16];
	long page = sysconf(_SC_PAGESIZE);

	if (guest_mem_alloc(&m, 64 * PAGE) < 0) {
		CHECK(!"guest_mem_alloc");
		return;
	}
	memset(m.host, 0x5a, 64 * PAGE);
	CHECK_EQ(guest_mem_discard(&m, m.host + 8 * PAGE, 16 * PAGE), 16 * PAGE);
	CHECK_EQ(m.host[8 * PAGE], 0);           /* reads as a fresh zero page */
	CHECK_EQ(m.host[8 * PAGE - 1], 0x5a);
	CHECK_EQ(m.host[24 * PAGE], 0x5a);
	if (page == PAGE && mincore(m.host + 9 * PAGE, 15 * PAGE, vec) == 0) {
		unsigned resident = 0;

		for (int i = 0; i < 15; i++)
			resident += vec[i] & 1;
		CHECK_EQ(resident, 0);
	}
	/* partial pages stay; outside the mapping is refused */
	CHECK_EQ(guest_mem_discard(&m, m.host + 100, PAGE), 0);
	CHECK_EQ(m.host[100], 0x5a);
	CHECK_EQ(guest_mem_discard(&m, m.host + 60 * PAGE, 8 * PAGE), -EFAULT);
	CHECK_EQ(guest_mem_discard(&m, m.host - PAGE, PAGE), -EFAULT);
	CHECK_EQ(guest_mem_discard(&m, m.host, UINT64_MAX), -EFAULT);
	guest_mem_free(&m);
}

int main(void)
{
	struct virtio_balloon *b;
	struct drv d;

	drv_open(&d);
	CHECK_EQ(virtio_balloon_create(&d.mem, DRV_RAM_SIZE / PAGE + 1, &b), -EINVAL);
	CHECK_EQ(virtio_balloon_create(&d.mem, 16, &b), 0);
	drv_attach(&d, virtio_balloon_dev(b));
	CHECK_EQ(drv_rd(&d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BALLOON);
	CHECK_EQ(drv_init(&d, ALL, 4, 16), ALL);
	CHECK_EQ(drv_rd(&d, VIRTIO_MMIO_CONFIG), 16);
	test_inflate(&d, b);
	test_report(&d, b);
	test_stats(&d, b);
	test_target(&d, b);
	test_no_stats_queue(&d, b);
	drv_close(&d);
	virtio_balloon_destroy(b);
	test_discard_real();
	return check_result("test-virtio-balloon");
}
