/* SPDX-License-Identifier: MIT */
/* The virtio-mmio transport with a small device of the test's own: register
 * layout, feature negotiation, the status state machine, queue setup
 * checks, config space and generation, interrupts, notifications, reset. */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/arch/x86/layout.h"

#define DEV_ID      42
#define DEV_FEATURE 3

struct test_dev {
	struct virtio_dev vd;
	uint8_t config[12];
	unsigned notified[VIRTIO_MAX_QUEUES], activated, resets;
};

#define to_td(vdp) ((struct test_dev *)((char *)(vdp) - offsetof(struct test_dev, vd)))

static void td_config_read(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, to_td(vd)->config + off, len);
}

static void td_config_write(struct virtio_dev *vd, uint32_t off, const void *buf, uint32_t len)
{
	memcpy(to_td(vd)->config + off, buf, len);
}

static void td_notify(struct virtio_dev *vd, uint16_t q) { to_td(vd)->notified[q]++; }
static void td_activate(struct virtio_dev *vd) { to_td(vd)->activated++; }
static void td_reset(struct virtio_dev *vd) { to_td(vd)->resets++; }

static const struct virtio_dev_ops td_ops = {
	.device_id = DEV_ID,
	.num_queues = 2,
	.config_size = 12,
	.config_read = td_config_read,
	.config_write = td_config_write,
	.queue_notify = td_notify,
	.activate = td_activate,
	.reset = td_reset,
};

static void setup(struct drv *d, struct test_dev *td)
{
	drv_open(d);
	memset(td, 0, sizeof(*td));
	td->vd.ops = &td_ops;
	td->vd.mem = &d->mem;
	td->vd.device_features = 1ULL << DEV_FEATURE;
	for (int i = 0; i < 12; i++)
		td->config[i] = (uint8_t)(0x10 + i);
	drv_attach(d, &td->vd);
}

static void test_layout(struct drv *d)
{
	uint8_t b[8];
	uint16_t w;
	uint64_t q;

	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_MAGIC_VALUE), 0x74726976);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_VERSION), 2);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), DEV_ID);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_VENDOR_ID), VIRTIO_MMIO_VENDOR);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES), 1u << DEV_FEATURE);
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES), 1u << (VIRTIO_F_VERSION_1 - 32));
	drv_wr(d, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 7);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_FEATURES), 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_SHM_LEN_LOW), 0xffffffffu);
	/* Registers are 32-bit only, aligned. */
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_MAGIC_VALUE, &w, 2), -EINVAL);
	CHECK_EQ(w, 0);
	CHECK_EQ(virtio_mmio_read(&d->t, 2, b, 4), -EINVAL);
	CHECK_EQ(drv_wr(d, VIRTIO_MMIO_MAGIC_VALUE, 1), -EINVAL);
	/* Config space: any width within config_size. */
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 1, b, 1), 0);
	CHECK_EQ(b[0], 0x11);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 2, &w, 2), 0);
	CHECK_EQ(w, 0x1312);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 4, &q, 8), 0);
	CHECK_EQ(q, 0x1b1a191817161514ULL);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 10, b, 4), -EINVAL);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 12, b, 1), -EINVAL);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 0xefc, b, 4), -EINVAL);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG, b, 3), -EINVAL);
	b[0] = 0x99;
	CHECK_EQ(virtio_mmio_write(&d->t, VIRTIO_MMIO_CONFIG + 11, b, 1), 0);
	CHECK_EQ(virtio_mmio_write(&d->t, VIRTIO_MMIO_CONFIG + 11, b, 2), -EINVAL);
}

static void test_negotiation(struct drv *d, struct test_dev *td)
{
	/* Without VIRTIO_F_VERSION_1 (a legacy driver) FEATURES_OK is refused. */
	CHECK_EQ(drv_init(d, 1ULL << DEV_FEATURE, 2, 8), 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* DRIVER_OK without FEATURES_OK isn't recorded. */
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                              VIRTIO_STATUS_DRIVER_OK);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK, 0);
	CHECK_EQ(td->activated, 0);

	/* A feature that was not offered. */
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, (1u << DEV_FEATURE) | 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                              VIRTIO_STATUS_FEATURES_OK);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, 0);

	/* Features written before DRIVER are ignored. */
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	CHECK(td->resets >= 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 1);
	CHECK_EQ(td->vd.driver_features, 0);

	/* The normal path. */
	CHECK_EQ(drv_init(d, ~0ULL, 2, 8), (1ULL << DEV_FEATURE) | (1ULL << VIRTIO_F_VERSION_1));
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS), 15);
	CHECK_EQ(td->activated, 1);
	CHECK(virtio_has_feature(&td->vd, DEV_FEATURE));
	/* Features are frozen after FEATURES_OK. */
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	drv_wr(d, VIRTIO_MMIO_DRIVER_FEATURES, 0);
	CHECK(virtio_has_feature(&td->vd, DEV_FEATURE));
	/* Bits can't be cleared except by reset. */
	CHECK_EQ(drv_wr(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE), -EINVAL);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS), 15);
}

static void test_queues(struct drv *d, struct test_dev *td)
{
	unsigned errors = d->errors;

	CHECK_EQ(drv_init(d, ~0ULL, 2, 8) != 0, 1);
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 1);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX), VIRTQ_MAX_SIZE);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_QUEUE_READY), 1);
	/* Layout registers are locked while the queue is ready. */
	CHECK_EQ(drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, 4), -EINVAL);
	CHECK_EQ(td->vd.vq[1].size, 8);
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 2);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_QUEUE_NUM_MAX), 0);
	CHECK_EQ(drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, 4), -EINVAL);

	/* Notifications reach the device with the queue index; bad indices
	 * and not-ready queues are dropped. */
	drv_kick(d, 1);
	drv_kick(d, 0);
	drv_kick(d, 2);
	drv_kick(d, 0xffff);
	virtio_mmio_notify(&d->t, 1);
	CHECK_EQ(td->notified[0], 1);
	CHECK_EQ(td->notified[1], 2);
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	drv_wr(d, VIRTIO_MMIO_QUEUE_READY, 0);
	drv_kick(d, 0);
	CHECK_EQ(td->notified[0], 1);
	CHECK_EQ(d->errors, errors);

	/* Bad queue setups: each ends in NEEDS_RESET with a reason. */
	for (int c = 0; c < 5; c++) {
		drv_init(d, ~0ULL, 2, 8);
		drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
		drv_wr(d, VIRTIO_MMIO_QUEUE_READY, 0);
		switch (c) {
		case 0: drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, 6); break;
		case 1: drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, 512); break;
		case 2: drv_wr(d, VIRTIO_MMIO_QUEUE_NUM, 0x10008); break;
		case 3: drv_wr(d, VIRTIO_MMIO_QUEUE_DESC_LOW, DRV_RING_BASE + 8); break;
		case 4: drv_wr(d, VIRTIO_MMIO_QUEUE_DEVICE_LOW, DRV_RAM_SIZE - 64); break;
		}
		drv_wr(d, VIRTIO_MMIO_QUEUE_READY, 1);
		CHECK_EQ(drv_rd(d, VIRTIO_MMIO_QUEUE_READY), 0);
		CHECK(drv_rd(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
		CHECK_EQ(d->errors, errors + 1 + (unsigned)c);
		CHECK(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_CONFIG);
	}
	/* NEEDS_RESET: notifications are dropped until reset. */
	drv_kick(d, 1);
	CHECK_EQ(td->notified[1], 2);
}

static void test_config_and_irq(struct drv *d, struct test_dev *td)
{
	uint32_t gen;
	unsigned irqs, lowers;

	drv_init(d, ~0ULL, 2, 8);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	gen = drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION);
	irqs = d->irqs;
	td->config[0] = 0x77;
	virtio_dev_config_changed(&td->vd);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_CONFIG_GENERATION), gen + 1);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(d->irqs, irqs + 1);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_CONFIG) & 0xff, 0x77);

	/* Used-buffer interrupt only when the driver hasn't suppressed it. */
	td->vd.vq[0].used_idx = 0;
	virtio_dev_push(&td->vd, 0, 0, 0);
	virtio_dev_signal(&td->vd, 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG | VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(d->irqs, irqs + 2);
	*(uint16_t *)drv_ptr(d, d->q[0].avail) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	virtio_dev_push(&td->vd, 0, 0, 0);
	virtio_dev_signal(&td->vd, 0);
	CHECK_EQ(d->irqs, irqs + 2);

	lowers = d->lowers;
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(d->lowers, lowers);
	drv_wr(d, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_CONFIG);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK_EQ(d->lowers, lowers + 1);

	/* Reset clears status, features, queues and pending interrupts. */
	virtio_dev_config_changed(&td->vd);
	drv_wr(d, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_STATUS), 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_INTERRUPT_STATUS), 0);
	CHECK_EQ(td->vd.driver_features, 0);
	CHECK(!td->vd.vq[0].ready && !td->vd.vq[1].ready);
	drv_wr(d, VIRTIO_MMIO_QUEUE_SEL, 0);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_QUEUE_READY), 0);
}

static void test_announce(void)
{
	char buf[64] = "console=ttyS0";
	char small[40] = "console=ttyS0";
	uint64_t base = 0;
	uint32_t gsi = 0;

	CHECK_EQ(virtio_mmio_slot(0, &base, &gsi), 0);
	CHECK_EQ(base, VIRTIO_MMIO_START);
	CHECK_EQ(gsi, VIRTIO_IRQ_BASE);
	CHECK_EQ(virtio_mmio_slot(3, &base, &gsi), 0);
	CHECK_EQ(base, VIRTIO_MMIO_START + 3 * VIRTIO_MMIO_SIZE);
	CHECK_EQ(gsi, 10);  /* 8 and 9 are skipped */
	CHECK_EQ(virtio_mmio_slot(VIRTIO_MMIO_MAX, &base, &gsi), -ENOSPC);

	CHECK_EQ(virtio_mmio_cmdline_append(buf, sizeof(buf), 0xd0000000, 5), 0);
	CHECK(strcmp(buf, "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5") == 0);
	CHECK_EQ(virtio_mmio_cmdline_append(small, sizeof(small), 0xd0000000, 5), -ENOSPC);
	CHECK(strcmp(small, "console=ttyS0") == 0);
}

int main(void)
{
	struct test_dev td;
	struct drv d;

	setup(&d, &td);
	test_layout(&d);
	test_negotiation(&d, &td);
	test_queues(&d, &td);
	test_config_and_irq(&d, &td);
	drv_close(&d);
	test_announce();
	return check_result("test-virtio-mmio");
}
