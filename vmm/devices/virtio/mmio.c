/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "vmm/arch/x86/layout.h"
#include "vmm/devices/virtio/mmio.h"

#define FEATURES_TRANSPORT (1ULL << VIRTIO_F_VERSION_1)

static uint64_t offered_features(const struct virtio_mmio *t)
{
	return t->vd->device_features | FEATURES_TRANSPORT;
}

static void raise_irq(struct virtio_mmio *t, uint32_t bits)
{
	t->interrupt_status |= bits;
	if (t->cb.irq_raise)
		t->cb.irq_raise(t->cb.opaque);
}

static void mmio_signal_used(struct virtio_dev *vd, uint16_t q)
{
	raise_irq(vd->transport_data, VIRTIO_MMIO_INT_VRING);
}

static void mmio_signal_config(struct virtio_dev *vd)
{
	struct virtio_mmio *t = vd->transport_data;

	t->config_generation++;
	raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

/* Spec 2.1.2: on an error the device sets DEVICE_NEEDS_RESET and, once the
 * driver is running, sends a config-change interrupt.  The reason goes to
 * the VMM only on the transition so a looping guest can't flood the log. */
static void mmio_fail(struct virtio_dev *vd, const char *reason)
{
	struct virtio_mmio *t = vd->transport_data;

	if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	if (t->cb.error)
		t->cb.error(t->cb.opaque, reason);
	if (vd->status & VIRTIO_STATUS_DRIVER_OK)
		raise_irq(t, VIRTIO_MMIO_INT_CONFIG);
}

static const struct virtio_transport mmio_transport = {
	.signal_used = mmio_signal_used,
	.signal_config = mmio_signal_config,
	.fail = mmio_fail,
};

void virtio_mmio_init(struct virtio_mmio *t, struct virtio_dev *vd,
                      const struct virtio_mmio_callbacks *cb)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->lock, NULL);
	t->vd = vd;
	t->cb = *cb;
	vd->transport = &mmio_transport;
	vd->transport_data = t;
	vd->status = 0;
	vd->driver_features = 0;
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&vd->vq[i]);
}

void virtio_mmio_destroy(struct virtio_mmio *t)
{
	pthread_mutex_destroy(&t->lock);
}

static void device_reset(struct virtio_mmio *t)
{
	struct virtio_dev *vd = t->vd;

	if (vd->ops->reset)
		vd->ops->reset(vd);
	for (unsigned i = 0; i < VIRTIO_MAX_QUEUES; i++)
		virtq_reset(&vd->vq[i]);
	vd->status = 0;
	vd->driver_features = 0;
	t->device_features_sel = t->driver_features_sel = t->queue_sel = 0;
	if (t->interrupt_status && t->cb.irq_lower)
		t->cb.irq_lower(t->cb.opaque);
	t->interrupt_status = 0;
}

static struct virtq *selected_queue(struct virtio_mmio *t)
{
	if (t->queue_sel >= t->vd->ops->num_queues)
		return NULL;
	return &t->vd->vq[t->queue_sel];
}

static uint32_t features_word(uint64_t features, uint32_t sel)
{
	if (sel > 1)
		return 0;
	return (uint32_t)(features >> (32 * sel));
}

static uint32_t read_reg(struct virtio_mmio *t, uint64_t off)
{
	struct virtq *q = selected_queue(t);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:       return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:           return 2;
	case VIRTIO_MMIO_DEVICE_ID:         return t->vd->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:         return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:   return features_word(offered_features(t), t->device_features_sel);
	case VIRTIO_MMIO_QUEUE_NUM_MAX:     return q ? VIRTQ_MAX_SIZE : 0;
	case VIRTIO_MMIO_QUEUE_READY:       return q ? q->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:  return t->interrupt_status;
	case VIRTIO_MMIO_STATUS:            return t->vd->status;
	case VIRTIO_MMIO_CONFIG_GENERATION: return t->config_generation;
	/* No shared memory regions: length (and base) read as -1. */
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
	case VIRTIO_MMIO_SHM_BASE_LOW:
	case VIRTIO_MMIO_SHM_BASE_HIGH:     return UINT32_MAX;
	default:                            return 0;  /* write-only or reserved */
	}
}

static int config_range_ok(const struct virtio_mmio *t, uint64_t off, unsigned len)
{
	uint64_t coff = off - VIRTIO_MMIO_CONFIG;

	if (len != 1 && len != 2 && len != 4 && len != 8)
		return 0;
	return coff < t->vd->ops->config_size && len <= t->vd->ops->config_size - coff;
}

static int read_locked(struct virtio_mmio *t, uint64_t off, void *data, unsigned len)
{
	uint32_t v;

	memset(data, 0, len);
	if (off >= VIRTIO_MMIO_CONFIG) {
		if (!config_range_ok(t, off, len) || !t->vd->ops->config_read)
			return -EINVAL;
		t->vd->ops->config_read(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
		return 0;
	}
	if (len != 4 || (off & 3))
		return -EINVAL;
	v = read_reg(t, off);
	memcpy(data, &v, 4);
	return 0;
}

/* Accepts FEATURES_OK only for a subset of what was offered that includes
 * VIRTIO_F_VERSION_1 (no legacy interface). */
static bool features_acceptable(const struct virtio_mmio *t)
{
	uint64_t drv = t->vd->driver_features;

	return !(drv & ~offered_features(t)) && (drv & FEATURES_TRANSPORT);
}

/* Status writes only ever add bits (0 = reset); the state machine is
 * ACKNOWLEDGE -> DRIVER -> FEATURES_OK -> DRIVER_OK, and a step the device
 * refuses is simply not recorded, which is how the driver learns of it. */
static int write_status(struct virtio_mmio *t, uint32_t v)
{
	struct virtio_dev *vd = t->vd;
	uint8_t old = vd->status;
	uint8_t set;

	if (v == 0) {
		device_reset(t);
		return 0;
	}
	v &= 0xff & ~VIRTIO_STATUS_NEEDS_RESET;
	if ((old & ~VIRTIO_STATUS_NEEDS_RESET) & ~v)
		return -EINVAL;
	set = (uint8_t)(v & ~old);
	if ((set & VIRTIO_STATUS_FEATURES_OK) &&
	    (!(v & VIRTIO_STATUS_DRIVER) || !features_acceptable(t)))
		set &= ~VIRTIO_STATUS_FEATURES_OK;
	if ((set & VIRTIO_STATUS_DRIVER_OK) && !((old | set) & VIRTIO_STATUS_FEATURES_OK))
		set &= ~VIRTIO_STATUS_DRIVER_OK;
	vd->status = old | set;
	if ((set & VIRTIO_STATUS_DRIVER_OK) && vd->ops->activate && virtio_dev_running(vd))
		vd->ops->activate(vd);
	return 0;
}

static void write_driver_features(struct virtio_mmio *t, uint32_t v)
{
	struct virtio_dev *vd = t->vd;
	uint32_t sel = t->driver_features_sel;

	/* Only between DRIVER and FEATURES_OK (spec 3.1.1). */
	if (!(vd->status & VIRTIO_STATUS_DRIVER) || (vd->status & VIRTIO_STATUS_FEATURES_OK) || sel > 1)
		return;
	vd->driver_features &= ~(0xffffffffULL << (32 * sel));
	vd->driver_features |= (uint64_t)v << (32 * sel);
}

static void set_half(uint64_t *dst, uint32_t v, bool high)
{
	if (high)
		*dst = (*dst & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		*dst = (*dst & ~0xffffffffULL) | v;
}

static void write_queue_ready(struct virtio_mmio *t, struct virtq *q, uint32_t v)
{
	const char *err = NULL;

	if (!v) {
		q->ready = false;
		return;
	}
	if (q->ready)
		return;
	if (virtq_enable(q, t->vd->mem, VIRTQ_MAX_SIZE, &err) < 0)
		mmio_fail(t->vd, err);
}

/* The queue layout registers may change only while the queue is disabled. */
static int write_queue_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	struct virtq *q = selected_queue(t);

	if (!q)
		return -EINVAL;
	if (off == VIRTIO_MMIO_QUEUE_READY) {
		write_queue_ready(t, q, v);
		return 0;
	}
	if (q->ready)
		return -EINVAL;
	switch (off) {
	case VIRTIO_MMIO_QUEUE_NUM:
		/* Kept as written (truncation would hide a bad size); checked
		 * when the queue is enabled. */
		q->size = v > UINT16_MAX ? 0 : (uint16_t)v;
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:    set_half(&q->desc_gpa, v, false); break;
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:   set_half(&q->desc_gpa, v, true); break;
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:  set_half(&q->avail_gpa, v, false); break;
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH: set_half(&q->avail_gpa, v, true); break;
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:  set_half(&q->used_gpa, v, false); break;
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH: set_half(&q->used_gpa, v, true); break;
	}
	return 0;
}

static void notify_locked(struct virtio_mmio *t, uint32_t queue)
{
	struct virtio_dev *vd = t->vd;

	if (queue >= vd->ops->num_queues || !virtio_dev_running(vd) || !vd->vq[queue].ready)
		return;
	vd->ops->queue_notify(vd, (uint16_t)queue);
}

static int write_reg(struct virtio_mmio *t, uint64_t off, uint32_t v)
{
	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL: t->device_features_sel = v; return 0;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL: t->driver_features_sel = v; return 0;
	case VIRTIO_MMIO_DRIVER_FEATURES:     write_driver_features(t, v); return 0;
	case VIRTIO_MMIO_QUEUE_SEL:           t->queue_sel = v; return 0;
	case VIRTIO_MMIO_QUEUE_NOTIFY:        notify_locked(t, v); return 0;
	case VIRTIO_MMIO_STATUS:              return write_status(t, v);
	case VIRTIO_MMIO_SHM_SEL:             return 0;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		t->interrupt_status &= ~v;
		if (!t->interrupt_status && t->cb.irq_lower)
			t->cb.irq_lower(t->cb.opaque);
		return 0;
	case VIRTIO_MMIO_QUEUE_NUM:
	case VIRTIO_MMIO_QUEUE_READY:
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
	case VIRTIO_MMIO_QUEUE_DRIVER_LOW:
	case VIRTIO_MMIO_QUEUE_DRIVER_HIGH:
	case VIRTIO_MMIO_QUEUE_DEVICE_LOW:
	case VIRTIO_MMIO_QUEUE_DEVICE_HIGH:
		return write_queue_reg(t, off, v);
	default:
		return -EINVAL;  /* read-only or reserved */
	}
}

static int write_locked(struct virtio_mmio *t, uint64_t off, const void *data, unsigned len)
{
	uint32_t v;

	if (off >= VIRTIO_MMIO_CONFIG) {
		if (!config_range_ok(t, off, len) || !t->vd->ops->config_write)
			return -EINVAL;
		t->vd->ops->config_write(t->vd, (uint32_t)(off - VIRTIO_MMIO_CONFIG), data, len);
		return 0;
	}
	if (len != 4 || (off & 3))
		return -EINVAL;
	memcpy(&v, data, 4);
	return write_reg(t, off, v);
}

int virtio_mmio_read(struct virtio_mmio *t, uint64_t off, void *data, unsigned len)
{
	int r;

	virtio_mmio_lock(t);
	r = read_locked(t, off, data, len);
	virtio_mmio_unlock(t);
	return r;
}

int virtio_mmio_write(struct virtio_mmio *t, uint64_t off, const void *data, unsigned len)
{
	int r;

	virtio_mmio_lock(t);
	r = write_locked(t, off, data, len);
	virtio_mmio_unlock(t);
	return r;
}

void virtio_mmio_notify(struct virtio_mmio *t, uint32_t queue)
{
	virtio_mmio_lock(t);
	notify_locked(t, queue);
	virtio_mmio_unlock(t);
}

int virtio_mmio_slot(unsigned index, uint64_t *ret_base, uint32_t *ret_gsi)
{
	if (index >= VIRTIO_MMIO_MAX)
		return -ENOSPC;
	*ret_base = VIRTIO_MMIO_START + (uint64_t)index * VIRTIO_MMIO_SIZE;
	*ret_gsi = virtio_slot_gsi(index);
	return 0;
}

int virtio_mmio_cmdline_append(char *buf, size_t size, uint64_t base, uint32_t gsi)
{
	size_t used = strnlen(buf, size);
	int n;

	if (used >= size)
		return -ENOSPC;
	n = snprintf(buf + used, size - used, "%svirtio_mmio.device=%lluK@0x%" PRIx64 ":%" PRIu32,
	             used ? " " : "", VIRTIO_MMIO_SIZE >> 10, base, gsi);
	if (n < 0 || (size_t)n >= size - used) {
		buf[used] = '\0';
		return -ENOSPC;
	}
	return 0;
}
