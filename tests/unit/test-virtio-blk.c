/* SPDX-License-Identifier: MIT */
/* virtio-blk over a temp file, driven through the virtio-mmio registers by
 * the fake driver: I/O paths, read-only disks, range checks, and hostile
 * descriptor chains that must end in NEEDS_RESET without touching the file. */
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/devices/virtio/blk.h"

#define DISK_SECTORS 64
#define HDR_GPA      (DRV_DATA_BASE)
#define DATA_GPA     (DRV_DATA_BASE + 0x1000)
#define STATUS_GPA   (DRV_DATA_BASE + 0x10000)
#define WANT         ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_BLK_F_FLUSH) | \
                      (1ULL << VIRTIO_BLK_F_SEG_MAX) | (1ULL << VIRTIO_BLK_F_RO))

static uint8_t pattern(uint64_t off) { return (uint8_t)(off * 7 + (off >> 9)); }

static int make_disk(char *path)
{
	uint8_t buf[DISK_SECTORS * 512];
	int fd;

	strcpy(path, "/tmp/test-virtio-blk-XXXXXX");
	fd = mkstemp(path);
	if (fd < 0)
		return -1;
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = pattern(i);
	if (pwrite(fd, buf, sizeof(buf), 0) != (ssize_t)sizeof(buf))
		return -1;
	return fd;
}

static void put_hdr(struct drv *d, uint32_t type, uint64_t sector)
{
	uint8_t *h = drv_ptr(d, HDR_GPA);

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
}

/* Posts header + data (len bytes at DATA_GPA, device-writable for reads) +
 * status, kicks, and returns the status byte (or -1 if nothing came back). */
static int blk_req(struct drv *d, uint32_t type, uint64_t sector, uint32_t len, uint32_t *ret_used)
{
	struct drv_seg segs[3];
	unsigned n = 0;
	uint32_t id = 0, used = 0;
	uint16_t head;

	put_hdr(d, type, sector);
	*(uint8_t *)drv_ptr(d, STATUS_GPA) = 0xee;
	segs[n++] = (struct drv_seg){ HDR_GPA, 16, false };
	if (len)
		segs[n++] = (struct drv_seg){ DATA_GPA, len, type != VIRTIO_BLK_T_OUT };
	segs[n++] = (struct drv_seg){ STATUS_GPA, 1, true };
	head = drv_post(d, 0, segs, n);
	drv_kick(d, 0);
	if (!drv_used(d, 0, &id, &used) || id != head)
		return -1;
	if (ret_used)
		*ret_used = used;
	return *(uint8_t *)drv_ptr(d, STATUS_GPA);
}

static void test_io(struct drv *d, struct virtio_blk *b, int fd)
{
	uint8_t buf[1024];
	uint32_t used = 0, cap_lo, cap_hi;
	unsigned irqs = d->irqs;

	cap_lo = drv_rd(d, VIRTIO_MMIO_CONFIG);
	cap_hi = drv_rd(d, VIRTIO_MMIO_CONFIG + 4);
	CHECK_EQ(((uint64_t)cap_hi << 32) | cap_lo, DISK_SECTORS);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_BLOCK);

	/* Read sectors 3-4. */
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, 3, 1024, &used), VIRTIO_BLK_S_OK);
	CHECK_EQ(used, 1025);
	for (unsigned i = 0; i < 1024; i++)
		if (((uint8_t *)drv_ptr(d, DATA_GPA))[i] != pattern(3 * 512 + i)) {
			CHECK(!"read data mismatch");
			break;
		}
	CHECK(d->irqs > irqs);
	CHECK(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);

	/* Write sector 10, then check the file itself. */
	memset(drv_ptr(d, DATA_GPA), 0xa5, 512);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_OUT, 10, 512, &used), VIRTIO_BLK_S_OK);
	CHECK_EQ(used, 1);
	CHECK_EQ(pread(fd, buf, 512, 10 * 512), 512);
	CHECK(buf[0] == 0xa5 && buf[511] == 0xa5);
	CHECK_EQ(pread(fd, buf, 1, 11 * 512), 1);
	CHECK_EQ(buf[0], pattern(11 * 512));

	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_FLUSH, 0, 0, &used), VIRTIO_BLK_S_OK);
	CHECK_EQ(virtio_blk_stats(b)->flushes, 1);

	memset(drv_ptr(d, DATA_GPA), 0xff, 20);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_GET_ID, 0, 20, &used), VIRTIO_BLK_S_OK);
	CHECK_EQ(used, 21);
	CHECK(memcmp(drv_ptr(d, DATA_GPA), "mvm-disk-0\0\0\0\0\0\0\0\0\0\0", 20) == 0);

	CHECK_EQ(blk_req(d, 99, 0, 0, NULL), VIRTIO_BLK_S_UNSUPP);
}

static void test_ranges(struct drv *d, int fd)
{
	uint8_t before[DISK_SECTORS * 512], after[DISK_SECTORS * 512];

	CHECK_EQ(pread(fd, before, sizeof(before), 0), sizeof(before));
	/* Last sector reads fine; one past crosses the end. */
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 512, NULL), VIRTIO_BLK_S_OK);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, DISK_SECTORS - 1, 1024, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, DISK_SECTORS, 512, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, UINT64_MAX, 512, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_OUT, DISK_SECTORS - 1, 1024, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_OUT, UINT64_MAX / 512, 512, NULL), VIRTIO_BLK_S_IOERR);
	/* Not a whole number of sectors. */
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_OUT, 0, 100, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(pread(fd, after, sizeof(after), 0), sizeof(after));
	CHECK(memcmp(before, after, sizeof(before)) == 0);
}

/* The header split over two descriptors and the data over three: any
 * layout is legal with VIRTIO_F_VERSION_1. */
static void test_any_layout(struct drv *d)
{
	struct drv_seg segs[] = {
		{ HDR_GPA, 8, false }, { HDR_GPA + 8, 8, false },
		{ DATA_GPA, 100, true }, { DATA_GPA + 100, 400, true }, { DATA_GPA + 500, 12, true },
		{ STATUS_GPA, 1, true },
	};
	uint32_t id = 0, used = 0;

	put_hdr(d, VIRTIO_BLK_T_IN, 5);
	drv_post(d, 0, segs, 6);
	drv_kick(d, 0);
	CHECK(drv_used(d, 0, &id, &used));
	CHECK_EQ(used, 513);
	CHECK_EQ(*(uint8_t *)drv_ptr(d, STATUS_GPA), VIRTIO_BLK_S_OK);
	CHECK_EQ(((uint8_t *)drv_ptr(d, DATA_GPA))[511], pattern(5 * 512 + 511));
}

static void test_read_only(const char *path)
{
	uint8_t before[DISK_SECTORS * 512], after[DISK_SECTORS * 512];
	struct virtio_blk *b;
	struct drv d;
	int fd = open(path, O_RDONLY);
	uint64_t feat;

	CHECK_EQ(pread(fd, before, sizeof(before), 0), sizeof(before));
	drv_open(&d);
	CHECK_EQ(virtio_blk_open(path, true, NULL, &d.mem, &b), 0);
	drv_attach(&d, virtio_blk_dev(b));
	feat = drv_init(&d, WANT, 1, 16);
	CHECK(feat & (1ULL << VIRTIO_BLK_F_RO));
	memset(drv_ptr(&d, DATA_GPA), 0x5a, 1024);
	CHECK_EQ(blk_req(&d, VIRTIO_BLK_T_OUT, 0, 1024, NULL), VIRTIO_BLK_S_IOERR);
	CHECK_EQ(blk_req(&d, VIRTIO_BLK_T_IN, 0, 512, NULL), VIRTIO_BLK_S_OK);
	CHECK_EQ(blk_req(&d, VIRTIO_BLK_T_FLUSH, 0, 0, NULL), VIRTIO_BLK_S_OK);
	CHECK_EQ(pread(fd, after, sizeof(after), 0), sizeof(after));
	CHECK(memcmp(before, after, sizeof(before)) == 0);
	CHECK_EQ(virtio_blk_stats(b)->writes, 0);
	virtio_blk_destroy(b);
	drv_close(&d);
	close(fd);
}

/* Each hostile layout: NEEDS_RESET, a config interrupt, a reason for the
 * VMM, no used entry; then a reset brings the device back. */
enum hostile { H_SELF_LOOP, H_CYCLE, H_OUT_OF_RAM, H_HUGE_LEN, H_HEAD_RANGE, H_NEXT_RANGE,
               H_AVAIL_JUMP, H_INDIRECT, H_NO_STATUS, H_READ_AFTER_WRITE, H_COUNT };

/* A word of the reason each case must produce. */
static const char *const hostile_reason[H_COUNT] = {
	[H_SELF_LOOP] = "loops", [H_CYCLE] = "loops", [H_OUT_OF_RAM] = "outside guest RAM",
	[H_HUGE_LEN] = "outside guest RAM", [H_HEAD_RANGE] = "beyond the queue size",
	[H_NEXT_RANGE] = "next index", [H_AVAIL_JUMP] = "avail index", [H_INDIRECT] = "indirect",
	[H_NO_STATUS] = "status byte", [H_READ_AFTER_WRITE] = "readable descriptor after",
};

static void post_hostile(struct drv *d, enum hostile h)
{
	struct drv_queue *q = &d->q[0];
	const uint16_t N = VIRTQ_DESC_F_NEXT, W = VIRTQ_DESC_F_WRITE;

	put_hdr(d, VIRTIO_BLK_T_OUT, 0);
	switch (h) {
	case H_SELF_LOOP:  drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 0); break;
	case H_CYCLE:
		drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 1);
		drv_set_desc(d, 0, 1, DATA_GPA, 512, N, 2);
		drv_set_desc(d, 0, 2, DATA_GPA, 512, N, 1);
		break;
	case H_OUT_OF_RAM:
		drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 1);
		drv_set_desc(d, 0, 1, DRV_RAM_SIZE - 256, 512, N, 2);
		drv_set_desc(d, 0, 2, STATUS_GPA, 1, W, 0);
		break;
	case H_HUGE_LEN:
		drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 1);
		drv_set_desc(d, 0, 1, DATA_GPA, 0xffffffffu, N, 2);
		drv_set_desc(d, 0, 2, STATUS_GPA, 1, W, 0);
		break;
	case H_HEAD_RANGE:
		q->next_desc = 0;
		drv_publish(d, 0, 200);
		return;
	case H_NEXT_RANGE:
		drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 16);
		break;
	case H_AVAIL_JUMP:
		/* A valid chain, so only the index jump is wrong. */
		drv_set_desc(d, 0, 0, HDR_GPA, 16, N, 1);
		drv_set_desc(d, 0, 1, STATUS_GPA, 1, W, 0);
		q->avail_idx += 100;
		drv_publish(d, 0, 0);
		return;
	case H_INDIRECT:   drv_set_desc(d, 0, 0, HDR_GPA, 16, VIRTQ_DESC_F_INDIRECT, 0); break;
	case H_NO_STATUS:  drv_set_desc(d, 0, 0, HDR_GPA, 16, 0, 0); break;
	case H_READ_AFTER_WRITE:
		drv_set_desc(d, 0, 0, STATUS_GPA, 1, N | W, 1);
		drv_set_desc(d, 0, 1, HDR_GPA, 16, 0, 0);
		break;
	default: break;
	}
	drv_publish(d, 0, 0);
}

static void test_hostile(struct drv *d, int fd)
{
	uint8_t before[DISK_SECTORS * 512], after[DISK_SECTORS * 512];
	uint32_t id = 0, len = 0;

	CHECK_EQ(pread(fd, before, sizeof(before), 0), sizeof(before));
	for (int h = 0; h < H_COUNT; h++) {
		unsigned errors = d->errors;

		CHECK(drv_init(d, WANT, 1, 16) != 0);
		post_hostile(d, (enum hostile)h);
		drv_kick(d, 0);
		if (!(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET))
			fprintf(stderr, "hostile case %d not rejected\n", h);
		CHECK(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
		CHECK(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
		CHECK_EQ(d->errors, errors + 1);
		CHECK(d->last_error && strstr(d->last_error, hostile_reason[h]));
		CHECK(!drv_used(d, 0, &id, &len));
		/* Further notifications are ignored until reset. */
		drv_kick(d, 0);
		CHECK_EQ(d->errors, errors + 1);
	}
	CHECK_EQ(pread(fd, after, sizeof(after), 0), sizeof(after));
	CHECK(memcmp(before, after, sizeof(before)) == 0);
	/* A reset brings the device back. */
	CHECK(drv_init(d, WANT, 1, 16) != 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	CHECK_EQ(blk_req(d, VIRTIO_BLK_T_IN, 1, 512, NULL), VIRTIO_BLK_S_OK);
}

/* Posts a 512-byte read of sector 0 without waiting for it. */
static void post_read(struct drv *d)
{
	struct drv_seg segs[3] = {
		{ HDR_GPA, 16, false }, { DATA_GPA, 512, true }, { STATUS_GPA, 1, true },
	};

	put_hdr(d, VIRTIO_BLK_T_IN, 0);
	drv_post(d, 0, segs, 3);
}

static unsigned reap(struct drv *d)
{
	uint32_t id, len;
	unsigned n = 0;

	while (drv_used(d, 0, &id, &len))
		n++;
	return n;
}

/* 10 ops/s: of three requests one goes at once, the others wait for the
 * timer (not for the driver's notifications), and the second waits most of 100 ms. */
static void test_limits(struct drv *d, struct virtio_blk *b)
{
	struct ratelimit_config c = { .ops = 10 }, off = { 0 };
	struct pollfd p = { .fd = virtio_blk_timer_fd(b), .events = POLLIN };
	uint64_t t0, dt;

	reap(d);
	virtio_blk_set_limits(b, &c);
	for (int i = 0; i < 3; i++)
		post_read(d);
	t0 = ratelimit_now_ns();
	drv_kick(d, 0);
	CHECK_EQ(reap(d), 1);
	drv_kick(d, 0);                  /* throttled: ignored */
	CHECK_EQ(reap(d), 0);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	virtio_mmio_lock(&d->t);
	virtio_blk_timer(b);
	virtio_mmio_unlock(&d->t);
	dt = ratelimit_now_ns() - t0;
	CHECK_EQ(reap(d), 1);
	CHECK(dt >= (100 - RATELIMIT_BUCKET_MS) * 1000000ULL);  /* 1 op less the bucket, at 10/s */
	CHECK(virtio_blk_limiter(b)->throttled_ns > 0);
	/* lifting the limit lets the last one go from the timer at once */
	virtio_blk_set_limits(b, &off);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	virtio_mmio_lock(&d->t);
	virtio_blk_timer(b);
	virtio_mmio_unlock(&d->t);
	CHECK_EQ(reap(d), 1);
	CHECK_EQ(virtio_blk_stats(b)->read_bytes >= 3 * 512, 1);
	/* a timer that fires after a reset does nothing */
	virtio_blk_set_limits(b, &c);
	post_read(d);
	post_read(d);
	drv_kick(d, 0);
	CHECK_EQ(reap(d), 1);
	CHECK(drv_init(d, WANT, 1, 16) != 0);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	virtio_mmio_lock(&d->t);
	virtio_blk_timer(b);
	virtio_mmio_unlock(&d->t);
	CHECK_EQ(reap(d), 0);
	virtio_blk_set_limits(b, &off);
}

int main(void)
{
	char path[64];
	struct virtio_blk *b;
	struct drv d;
	int fd = make_disk(path);

	if (fd < 0) {
		perror("make_disk");
		return 1;
	}
	drv_open(&d);
	CHECK_EQ(virtio_blk_create(dup(fd), false, "mvm-disk-0", &d.mem, &b), 0);
	drv_attach(&d, virtio_blk_dev(b));
	/* Notifications before DRIVER_OK do nothing. */
	drv_kick(&d, 0);
	CHECK(drv_init(&d, WANT, 1, 16) & (1ULL << VIRTIO_F_VERSION_1));
	CHECK_EQ(virtio_blk_capacity(b), DISK_SECTORS);
	test_io(&d, b, fd);
	test_any_layout(&d);
	test_ranges(&d, fd);
	test_hostile(&d, fd);
	test_limits(&d, b);
	virtio_blk_destroy(b);
	drv_close(&d);
	test_read_only(path);
	close(fd);
	unlink(path);
	return check_result("test-virtio-blk");
}
