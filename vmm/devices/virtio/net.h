/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_NET_H
#define MVM_VIRTIO_NET_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/devices/virtio/ratelimit.h"
#include "vmm/devices/virtio/virtio.h"

/*
 * virtio-net (spec 5.1) over a TAP-like fd: one read() yields one Ethernet
 * frame, one writev() sends one (a TAP opened with IFF_TAP|IFF_NO_PI and no
 * IFF_VNET_HDR, or a SOCK_SEQPACKET/SOCK_DGRAM socket in tests).  No
 * offloads are offered, so the 12-byte virtio_net_hdr_v1 is all zeroes on
 * receive and ignored on transmit.
 *
 * Event loop contract: register virtio_net_fd() for EPOLLIN | EPOLLET and
 * call virtio_net_rx_ready() when it fires.  The device reads until the fd
 * is empty or the guest has no receive buffers; in the latter case it keeps
 * the frame and resumes when the driver adds buffers (RX notify).
 */

#define VIRTIO_NET_F_MAC      5
#define VIRTIO_NET_F_STATUS   16
#define VIRTIO_NET_S_LINK_UP  1

#define VIRTIO_NET_HDR_SIZE   12
#define VIRTIO_NET_RXQ        0
#define VIRTIO_NET_TXQ        1
#define VIRTIO_NET_FRAME_MAX  65550  /* largest frame read from the backend */

struct virtio_net_stats {
	uint64_t rx_frames, rx_bytes, rx_dropped;
	uint64_t tx_frames, tx_bytes, tx_dropped;
};

struct virtio_net;

/* Takes ownership of fd (made non-blocking; closed by destroy, or here on
 * failure). */
int virtio_net_create(int fd, const uint8_t mac[6], const struct guest_mem *m,
                      struct virtio_net **ret);
void virtio_net_destroy(struct virtio_net *n);
struct virtio_dev *virtio_net_dev(struct virtio_net *n);
int virtio_net_fd(const struct virtio_net *n);
const struct virtio_net_stats *virtio_net_stats(const struct virtio_net *n);

/*
 * Rate limits: the same limits apply to each direction on its own (frames
 * received and sent; a frame is one op).  While a direction is throttled
 * the device neither reads the backend nor takes transmit buffers; its
 * timerfd resumes it: register virtio_net_timer_fd() for EPOLLIN and call
 * virtio_net_timer() (transport locked) when it fires.
 */
void virtio_net_set_limits(struct virtio_net *n, const struct ratelimit_config *c);
const struct ratelimit *virtio_net_limiter(const struct virtio_net *n, bool tx);
int virtio_net_timer_fd(const struct virtio_net *n);
void virtio_net_timer(struct virtio_net *n);

/* The backend fd became readable. */
void virtio_net_rx_ready(struct virtio_net *n);

/* Opens /dev/net/tun and attaches to (or creates) TAP interface ifname. */
int virtio_net_tap_open(const char *ifname, int *ret_fd);

/* Parses "52:54:00:12:34:56". */
int virtio_net_parse_mac(const char *s, uint8_t mac[6]);

#endif
