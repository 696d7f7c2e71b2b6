/* SPDX-License-Identifier: MIT */
#ifndef MVM_VIRTIO_VSOCK_H
#define MVM_VIRTIO_VSOCK_H

#include <stdint.h>

#include "vmm/devices/virtio/virtio.h"

/*
 * virtio-vsock (spec 5.10), stream sockets only, with the host side exposed
 * the way Firecracker does it:
 *
 *  - host-initiated: a host process connects to the Unix socket `uds_path`
 *    and writes "CONNECT <port>\n"; the device sends the guest a REQUEST to
 *    <port> from a fresh host port (>= VIRTIO_VSOCK_HOST_PORT_BASE) and, once
 *    the guest answers RESPONSE, writes "OK <host port>\n" to the Unix
 *    connection; from then on it is a byte stream both ways.
 *  - guest-initiated: a guest REQUEST to host CID 2, port P connects to the
 *    Unix socket "<uds_path>_P"; RESPONSE on success, RST otherwise.
 *
 * Every guest header is checked (type, op, CIDs, length against the
 * descriptor, credit); a bad packet is answered with RST.  Only a malformed
 * descriptor chain marks the device NEEDS_RESET (queue layer).
 *
 * Event loop contract: the device keeps every socket it owns in a private
 * epoll set.  Register virtio_vsock_fd() for EPOLLIN (level-triggered) and
 * call virtio_vsock_ready() when it fires, holding the transport lock
 * (virtio_mmio_lock) as for any call into a device.  Nothing blocks.
 */

#define VIRTIO_VSOCK_F_STREAM        0

#define VIRTIO_VSOCK_RXQ             0
#define VIRTIO_VSOCK_TXQ             1
#define VIRTIO_VSOCK_EVQ             2

#define VIRTIO_VSOCK_HOST_CID        2
#define VIRTIO_VSOCK_TYPE_STREAM     1

#define VIRTIO_VSOCK_OP_REQUEST        1
#define VIRTIO_VSOCK_OP_RESPONSE       2
#define VIRTIO_VSOCK_OP_RST            3
#define VIRTIO_VSOCK_OP_SHUTDOWN       4
#define VIRTIO_VSOCK_OP_RW             5
#define VIRTIO_VSOCK_OP_CREDIT_UPDATE  6
#define VIRTIO_VSOCK_OP_CREDIT_REQUEST 7

#define VIRTIO_VSOCK_SHUTDOWN_RCV    1
#define VIRTIO_VSOCK_SHUTDOWN_SEND   2

#define VIRTIO_VSOCK_HDR_SIZE        44
#define VIRTIO_VSOCK_MAX_CONNS       64
/* Receive buffer advertised per connection (buf_alloc): guest bytes the
 * host socket has not taken yet are kept, up to this many. */
#define VIRTIO_VSOCK_BUF_ALLOC       (64u * 1024)
/* Largest payload in one packet, either way (Linux sends up to 64 KiB). */
#define VIRTIO_VSOCK_MAX_PAYLOAD     (64u * 1024)
#define VIRTIO_VSOCK_HOST_PORT_BASE  (1u << 30)

/* struct virtio_vsock_hdr (spec 5.10.6), little-endian on the wire. */
struct virtio_vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port;
	uint32_t len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));

struct virtio_vsock_stats {
	uint64_t rx_pkts, tx_pkts;  /* packets to / from the guest */
	uint64_t rx_bytes, tx_bytes;  /* stream payload to / from the guest */
	uint64_t rst_sent;          /* RSTs queued for the guest */
	uint64_t bad_pkts;          /* guest packets rejected */
	uint64_t rx_dropped;        /* RSTs that did not fit the queue */
};

struct virtio_vsock;

/* guest_cid must be 3 ..= 0xfffffffe.  Binds and listens on uds_path
 * (replacing a stale socket nobody listens on). */
int virtio_vsock_create(uint64_t guest_cid, const char *uds_path, const struct guest_mem *m,
                        struct virtio_vsock **ret);
/* The process's root, and its cwd, became dir (the sandbox,
 * vmm/sandbox.c): guest connects then dial "<uds_path>_PORT" by its name
 * relative to dir, or, where uds_path is not inside dir, nothing at all
 * (the guest gets a reset). */
void virtio_vsock_rebase(struct virtio_vsock *v, const char *dir);
/* Closes every connection and removes uds_path. */
void virtio_vsock_destroy(struct virtio_vsock *v);
struct virtio_dev *virtio_vsock_dev(struct virtio_vsock *v);
int virtio_vsock_fd(const struct virtio_vsock *v);
const struct virtio_vsock_stats *virtio_vsock_stats(const struct virtio_vsock *v);
/* Live connections (including ones still reading their CONNECT line). */
unsigned virtio_vsock_conn_count(const struct virtio_vsock *v);

/* virtio_vsock_fd() is readable: serve the sockets that are ready. */
void virtio_vsock_ready(struct virtio_vsock *v);

#endif
