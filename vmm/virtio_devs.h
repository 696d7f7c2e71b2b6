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
#include "vmm/devices/virtio/balloon.h"
#include "vmm/devices/virtio/ratelimit.h"

/*
 * The VM's virtio-mmio devices: the glue between the device models
 * (vmm/devices/virtio/), KVM (irqfd per device, ioeventfd per queue), the
 * MMIO bus (register accesses from vCPU threads) and the main loop
 * (notifications and backend fds).  Slots are handed out in one fixed
 * order (disks, NICs, rng, vsock, balloon: kinds[] in virtio_devs.c), so the kernel
 * command line or the DSDT can be written from the configuration alone,
 * before any backend is opened.
 */

#define VIRTIO_DEVS_BLK_ID_MAX 20  /* virtio-blk drive id bytes */

struct vm_disk {
	const char *path;      /* "/proc/self/fd/N": take over the open fd N */
	const char *id;        /* NULL: none */
	bool read_only;
	struct ratelimit_config limits;  /* all 0: none */
};

struct vm_nic {
	const char *tap;       /* interface name, or NULL to use fd */
	int fd;                /* an open TAP fd (IFF_TAP|IFF_NO_PI), taken over */
	uint8_t mac[6];
	bool has_mac;          /* false: derived from the name or fd and index */
	struct ratelimit_config limits;  /* each direction; bps/ops are bytes/frames */
};

struct virtio_devs_config {
	struct vm_disk disks[VIRTIO_MMIO_MAX];
	unsigned ndisks;
	struct vm_nic nics[VIRTIO_MMIO_MAX];
	unsigned nnics;
	bool rng;
	uint64_t vsock_cid;    /* 0: no vsock device */
	const char *vsock_uds;
	bool vsock_chown;      /* give the socket to vsock_uid after binding */
	uint32_t vsock_uid;
	bool balloon;
	uint64_t balloon_target;  /* bytes, at most the guest's RAM */
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

/* ---- run-time control (the daemon link, main thread) ---------------------- */

enum virtio_devs_kind { VIRTIO_DEVS_DISK, VIRTIO_DEVS_NET };

/* Counters of one disk or NIC.  Disks: rd = reads (to the guest), wr =
 * writes; NICs: rd = received frames, wr = sent frames. */
struct virtio_devs_dev_stats {
	enum virtio_devs_kind kind;
	unsigned index;                /* among the devices of its kind */
	uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops;
	uint64_t flushes;              /* disks */
	uint64_t errors;               /* disks: failed requests; NICs: dropped frames */
	uint64_t throttled_ns;         /* waiting for the rate limiter (NICs: both ways) */
	struct ratelimit_config limits;
};

struct virtio_devs_stats {
	struct virtio_devs_dev_stats dev[VIRTIO_MMIO_MAX];
	unsigned n;
	bool has_balloon;
	struct virtio_balloon_stats balloon;
	uint64_t balloon_max_pages;
};

/* The process's root became dir (the sandbox): paths the devices still
 * open after it (the vsock's guest-initiated dials) are made relative to
 * it.  NULL d is fine. */
void virtio_devs_rebase(struct virtio_devs *d, const char *dir);

/* Sets the limits of disk or NIC `index`: -ENODEV when there is none,
 * -EINVAL when c fails ratelimit_config_check. */
int virtio_devs_set_limits(struct virtio_devs *d, enum virtio_devs_kind kind, unsigned index,
                           const struct ratelimit_config *c);
/* New balloon target in bytes (rounded down to pages): -ENODEV without a
 * balloon, -EINVAL above the guest's RAM. */
int virtio_devs_set_balloon(struct virtio_devs *d, uint64_t bytes);
/* Fills *ret; the balloon statistics are those the guest sent last, and a
 * fresh set is asked for. */
void virtio_devs_get_stats(struct virtio_devs *d, struct virtio_devs_stats *ret);

/* MVM_VIRTIO_STATS=1: one line per device on stderr at exit (the block
 * benchmark counts requests and MMIO register exits with it). */
void virtio_devs_print_stats(const struct virtio_devs *d);

#endif
