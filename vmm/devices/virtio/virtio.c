/* SPDX-License-Identifier: MIT */
#include <errno.h>

#include "vmm/devices/virtio/virtio.h"

int virtio_dev_pop(struct virtio_dev *vd, uint16_t q, struct virtq_chain *c)
{
	const char *err = NULL;
	int r;

	if (q >= vd->ops->num_queues || !virtio_dev_running(vd))
		return 0;
	r = virtq_pop(&vd->vq[q], c, &err);
	/* NEEDS_RESET stops all queue processing until the driver resets. */
	if (r < 0)
		virtio_dev_fail(vd, err);
	return r;
}

void virtio_dev_signal(struct virtio_dev *vd, uint16_t q)
{
	if (q < vd->ops->num_queues && virtq_should_interrupt(&vd->vq[q]))
		vd->transport->signal_used(vd, q);
}
