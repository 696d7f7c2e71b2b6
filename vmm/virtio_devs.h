/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_DEVS_H
#define MVM_VIRTIO_DEVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/loop.h"
#include "vmm/memory.h"
#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/layout.h"

/*
 * The VM's virtio-mmio devices: the glue between the device models
 * (vmm/devices/virtio/), KVM (irqfd per device, ioeventfd per queue), the
 * MMIO bus (register accesses from vCPU threads) and the main loop
 * (notifications and backend fds).  Slots are handed out in one fixed
 * order (disks, NICs, rng, vsock: kinds[] in virtio_devs.c), so the kernel
 * command line or the DSDT can be written from the configuration alone,
 * before any backend is opened.
 */

#define VIRTIO_DEVS_BLK_ID_MAX 20  /* virtio-blk drive id bytes */

struct vm_disk {
	const char *path;      /* "/proc/self/fd/N": take over the open fd N */
	const char *id;        /* NULL: none */
	bool read_only;
};

struct vm_nic {
	const char *tap;       /* interface name, or NULL to use fd */
	int fd;                /* an open TAP fd (IFF_TAP|IFF_NO_PI), taken over */
	uint8_t mac[6];
	bool has_mac;          /* false: derived from the name or fd and index */
};

struct virtio_devs_config {
	struct vm_disk disks[VIRTIO_MMIO_MAX];
	unsigned ndisks;
	struct vm_nic nics[VIRTIO_MMIO_MAX];
	unsigned nnics;
	bool rng;
	uint64_t vsock_cid;    /* 0: no vsock device */
	const char *vsock_uds;
};

struct vm_error;
struct virtio_devs;

/* Devices the configuration asks for; at most VIRTIO_MMIO_MAX is valid. */
unsigned virtio_devs_count(const struct virtio_devs_config *c);

/*
 * Describes every configured device to the guest once: with on_cmdline,
 * appends " virtio_mmio.device=4K@0x<base>:<gsi>" to the NUL-terminated
 * cmdline (-ENOSPC when it does not fit) and sets *ret_n to 0; otherwise
 * fills devs[0..*ret_n) for the DSDT and leaves cmdline alone.  Linux
 * refuses a device listed both ways (the second claim of the window fails
 * with -EBUSY).  devs must have room for VIRTIO_MMIO_MAX entries.
 */
int virtio_devs_announce(const struct virtio_devs_config *c, bool on_cmdline,
                         char *cmdline, size_t size,
                         struct acpi_mmio_dev *devs, unsigned *ret_n);

/* Opens the backends and builds the device models.  On failure err says
 * what (status VMM_EXIT_USAGE for a bad file or fd) and nothing is left
 * open, fds passed by number included. */
int virtio_devs_create(const struct virtio_devs_config *c, const struct guest_mem *m,
                       struct virtio_devs **ret, struct vm_error *err);

/* Wires the devices into KVM, the MMIO bus and the loop; call once, before
 * any vCPU runs. */
int virtio_devs_attach(struct virtio_devs *d, int vm_fd, struct io_bus *mmio,
                       struct loop *loop, struct vm_error *err);

/* Tears down in reverse order; vCPU threads must be gone.  NULL is fine. */
void virtio_devs_destroy(struct virtio_devs *d);

/* MVM_VIRTIO_STATS=1: one line per device on stderr at exit (the block
 * benchmark counts requests and MMIO register exits with it). */
void virtio_devs_print_stats(const struct virtio_devs *d);

#endif
