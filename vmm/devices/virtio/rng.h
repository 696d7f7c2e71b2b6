/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_RNG_H
#define MVM_VIRTIO_RNG_H

#include "vmm/devices/virtio/virtio.h"

/* virtio-rng (spec 5.4): fills every writable buffer from getrandom(), up
 * to VIRTIO_RNG_CHAIN_MAX bytes per chain. */

#define VIRTIO_RNG_CHAIN_MAX 0x10000

struct virtio_rng;

int virtio_rng_create(const struct guest_mem *m, struct virtio_rng **ret);
void virtio_rng_destroy(struct virtio_rng *r);
struct virtio_dev *virtio_rng_dev(struct virtio_rng *r);

#endif
