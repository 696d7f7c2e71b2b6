/* SPDX-License-Identifier: MIT */
/* virtio-rng through the virtio-mmio registers: every writable buffer of a
 * chain is filled and the used length says how much. */
#include <string.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/devices/virtio/rng.h"

#define BUF_GPA DRV_DATA_BASE

static unsigned count_zero(const uint8_t *p, size_t len)
{
	unsigned n = 0;

	for (size_t i = 0; i < len; i++)
		n += p[i] == 0;
	return n;
}

int main(void)
{
	struct virtio_rng *r;
	struct drv d;
	uint32_t id = 0, len = 0;
	uint16_t head;

	drv_open(&d);
	CHECK_EQ(virtio_rng_create(&d.mem, &r), 0);
	drv_attach(&d, virtio_rng_dev(r));
	CHECK_EQ(drv_rd(&d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_RNG);
	CHECK(drv_init(&d, 1ULL << VIRTIO_F_VERSION_1, 1, 8) != 0);

	/* One 4 KiB buffer: zero before, random after (a 4 KiB random buffer
	 * with more than 64 zero bytes has probability far below 1e-9). */
	head = drv_post(&d, 0, &(struct drv_seg){ BUF_GPA, 4096, true }, 1);
	drv_kick(&d, 0);
	CHECK(drv_used(&d, 0, &id, &len));
	CHECK_EQ(id, head);
	CHECK_EQ(len, 4096);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA), 4096) < 64);
	CHECK(d.irqs > 0);

	/* Two segments, and the byte after them stays untouched. */
	memset(drv_ptr(&d, BUF_GPA), 0, 8192);
	head = drv_post(&d, 0, (struct drv_seg[]){ { BUF_GPA, 100, true },
	                                           { BUF_GPA + 1000, 300, true } }, 2);
	drv_kick(&d, 0);
	CHECK(drv_used(&d, 0, &id, &len));
	CHECK_EQ(id, head);
	CHECK_EQ(len, 400);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA), 100) < 10);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA + 100), 900) == 900);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA + 1000), 300) < 20);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA + 1300), 100) == 100);

	/* Many requests in one notification, more than fit in the ring at once
	 * are posted over several rounds. */
	for (int round = 0; round < 4; round++) {
		unsigned got = 0;

		for (int i = 0; i < 8; i++)
			drv_post(&d, 0, &(struct drv_seg){ BUF_GPA + 64u * i, 64, true }, 1);
		drv_kick(&d, 0);
		while (drv_used(&d, 0, &id, &len))
			got++;
		CHECK_EQ(got, 8);
	}
	/* A chain of 3 x 48 KiB gets VIRTIO_RNG_CHAIN_MAX bytes, not 144 KiB:
	 * a guest cannot keep the loop in getrandom() for long. */
	memset(drv_ptr(&d, BUF_GPA), 0, 3 * 0xc000);
	head = drv_post(&d, 0, (struct drv_seg[]){ { BUF_GPA, 0xc000, true },
	                                           { BUF_GPA + 0xc000, 0xc000, true },
	                                           { BUF_GPA + 0x18000, 0xc000, true } }, 3);
	drv_kick(&d, 0);
	CHECK(drv_used(&d, 0, &id, &len));
	CHECK_EQ(id, head);
	CHECK_EQ(len, VIRTIO_RNG_CHAIN_MAX);
	CHECK(count_zero(drv_ptr(&d, BUF_GPA + VIRTIO_RNG_CHAIN_MAX - 4096), 4096) < 64);
	CHECK_EQ(count_zero(drv_ptr(&d, BUF_GPA + VIRTIO_RNG_CHAIN_MAX), 4096), 4096);

	/* A buffer beyond guest RAM: NEEDS_RESET, nothing written. */
	drv_post(&d, 0, &(struct drv_seg){ DRV_RAM_SIZE - 16, 32, true }, 1);
	drv_kick(&d, 0);
	CHECK(drv_rd(&d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK(!drv_used(&d, 0, &id, &len));
	CHECK_EQ(count_zero(drv_ptr(&d, DRV_RAM_SIZE - 16), 16), 16);

	virtio_rng_destroy(r);
	drv_close(&d);
	return check_result("test-virtio-rng");
}
