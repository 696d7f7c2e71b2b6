/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_ether.h>
#include <linux/if_tun.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "vmm/devices/virtio/net.h"

/* struct virtio_net_config (spec 5.1.4) up to status. */
struct net_config {
	uint8_t mac[6];
	uint16_t status;
} __attribute__((packed));

struct virtio_net {
	struct virtio_dev vd;
	int fd;
	struct net_config config;
	struct virtio_net_stats stats;
	struct ratelimit rl[2];      /* VIRTIO_NET_RXQ, VIRTIO_NET_TXQ */
	bool throttled[2];
	int timer_fd;
	uint64_t timer_deadline;     /* CLOCK_MONOTONIC ns; 0: not armed */
	size_t pending_len;          /* frame waiting in `frame` for an RX buffer */
	struct virtq_chain chain;
	struct iovec txiov[VIRTQ_MAX_SIZE];
	uint8_t frame[VIRTIO_NET_FRAME_MAX];
};

#define to_net(vdp) ((struct virtio_net *)((char *)(vdp) - offsetof(struct virtio_net, vd)))

static void net_config_read(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, (const uint8_t *)&to_net(vd)->config + off, len);
}

/* Reads the next frame into n->frame unless one is already waiting.
 * Returns 1 with a frame, 0 when the backend has none. */
static int rx_fill(struct virtio_net *n)
{
	ssize_t len;

	if (n->pending_len)
		return 1;
	do
		len = read(n->fd, n->frame, sizeof(n->frame));
	while (len < 0 && errno == EINTR);
	if (len <= 0)
		return 0;
	n->pending_len = (size_t)len;
	return 1;
}

/* Places the waiting frame in chain c, or drops it when c is too small:
 * the chain then goes back to the ring for the next frame.  Returns 1 when
 * the chain was used. */
static int rx_place(struct virtio_net *n, struct virtq_chain *c)
{
	static const uint8_t hdr[VIRTIO_NET_HDR_SIZE] = { [10] = 1 };  /* num_buffers = 1 */
	const struct iovec *in = c->iov + c->n_out;
	size_t len = n->pending_len;

	n->pending_len = 0;
	if (c->in_len < VIRTIO_NET_HDR_SIZE || len > c->in_len - VIRTIO_NET_HDR_SIZE) {
		n->stats.rx_dropped++;
		virtq_unpop(&n->vd.vq[VIRTIO_NET_RXQ]);
		return 0;
	}
	iov_from_buf(in, c->n_in, 0, hdr, sizeof(hdr));
	iov_from_buf(in, c->n_in, sizeof(hdr), n->frame, len);
	virtio_dev_push(&n->vd, VIRTIO_NET_RXQ, c->head, (uint32_t)(sizeof(hdr) + len));
	n->stats.rx_frames++;
	n->stats.rx_bytes += len;
	return 1;
}

/* One timer serves both directions: it is armed for the earlier of their
 * deadlines, and each direction re-arms for its own when it fires. */
static void net_arm(struct virtio_net *n, uint64_t now, uint64_t ns)
{
	uint64_t deadline = now + ns;

	if (n->timer_deadline && n->timer_deadline <= deadline)
		return;
	if (ratelimit_timer_arm(n->timer_fd, ns) == 0)
		n->timer_deadline = deadline;
}

/* True when direction q may move its next frame; else it is throttled
 * until the timer fires. */
static bool net_admit(struct virtio_net *n, int q)
{
	uint64_t now, wait;

	if (n->throttled[q])
		return false;
	if (!ratelimit_enabled(&n->rl[q]))
		return true;
	now = ratelimit_now_ns();
	wait = ratelimit_wait_ns(&n->rl[q], now);
	if (!wait)
		return true;
	n->throttled[q] = true;
	net_arm(n, now, wait);
	return false;
}

/* Moves frames from the backend to the guest until either side runs dry.
 * Each pass either fills a guest buffer (at most the ring's worth before
 * the ring is empty) or consumes a frame from the backend. */
static void net_rx(struct virtio_net *n)
{
	bool used = false;

	while (virtio_dev_running(&n->vd) && net_admit(n, VIRTIO_NET_RXQ) && rx_fill(n)) {
		size_t len = n->pending_len;

		if (virtio_dev_pop(&n->vd, VIRTIO_NET_RXQ, &n->chain) <= 0)
			break;  /* keep the frame until the driver adds buffers */
		if (rx_place(n, &n->chain)) {
			ratelimit_charge(&n->rl[VIRTIO_NET_RXQ], len, 1);
			used = true;
		}
	}
	if (used)
		virtio_dev_signal(&n->vd, VIRTIO_NET_RXQ);
}

static void tx_one(struct virtio_net *n, const struct virtq_chain *c)
{
	size_t flen;
	ssize_t w;
	int cnt;

	/* A frame shorter than an Ethernet header is dropped here: a TAP
	 * refuses it (EINVAL) and a socket backend silently sends nothing for
	 * an empty writev, which would have been counted as a frame sent. */
	if (c->out_len < VIRTIO_NET_HDR_SIZE + ETH_HLEN ||
	    c->out_len - VIRTIO_NET_HDR_SIZE > VIRTIO_NET_FRAME_MAX) {
		n->stats.tx_dropped++;
		return;
	}
	flen = c->out_len - VIRTIO_NET_HDR_SIZE;
	cnt = iov_slice(c->iov, c->n_out, VIRTIO_NET_HDR_SIZE, flen, n->txiov, VIRTQ_MAX_SIZE);
	if (cnt < 0) {
		n->stats.tx_dropped++;
		return;
	}
	do
		w = writev(n->fd, n->txiov, cnt);
	while (w < 0 && errno == EINTR);
	/* A full backend drops the frame, as a NIC would; the guest's
	 * protocols retransmit. */
	if (w < 0 || (size_t)w != flen) {
		n->stats.tx_dropped++;
		return;
	}
	n->stats.tx_frames++;
	n->stats.tx_bytes += flen;
}

static void net_tx(struct virtio_net *n)
{
	unsigned done = 0;

	while (done < n->vd.vq[VIRTIO_NET_TXQ].size && net_admit(n, VIRTIO_NET_TXQ) &&
	       virtio_dev_pop(&n->vd, VIRTIO_NET_TXQ, &n->chain) > 0) {
		tx_one(n, &n->chain);
		ratelimit_charge(&n->rl[VIRTIO_NET_TXQ], n->chain.out_len > VIRTIO_NET_HDR_SIZE ?
		                 n->chain.out_len - VIRTIO_NET_HDR_SIZE : 0, 1);
		virtio_dev_push(&n->vd, VIRTIO_NET_TXQ, n->chain.head, 0);
		done++;
	}
	/* notifications were ignored while throttled: go on from the timer */
	if (ratelimit_enabled(&n->rl[VIRTIO_NET_TXQ]) && done == n->vd.vq[VIRTIO_NET_TXQ].size)
		net_arm(n, ratelimit_now_ns(), 0);
	if (done)
		virtio_dev_signal(&n->vd, VIRTIO_NET_TXQ);
}

static void net_queue_notify(struct virtio_dev *vd, uint16_t q)
{
	if (q == VIRTIO_NET_RXQ)
		net_rx(to_net(vd));
	else
		net_tx(to_net(vd));
}

static void net_activate(struct virtio_dev *vd)
{
	net_rx(to_net(vd));
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *n = to_net(vd);

	n->pending_len = 0;
	n->throttled[0] = n->throttled[1] = false;
}

void virtio_net_timer(struct virtio_net *n)
{
	ratelimit_timer_clear(n->timer_fd);
	n->timer_deadline = 0;
	n->throttled[0] = n->throttled[1] = false;
	if (!virtio_dev_running(&n->vd))
		return;
	if (n->vd.vq[VIRTIO_NET_RXQ].ready)
		net_rx(n);
	if (n->vd.vq[VIRTIO_NET_TXQ].ready)
		net_tx(n);
}

void virtio_net_set_limits(struct virtio_net *n, const struct ratelimit_config *c)
{
	uint64_t now = ratelimit_now_ns();

	ratelimit_set(&n->rl[0], c, now);
	ratelimit_set(&n->rl[1], c, now);
	if (n->throttled[0] || n->throttled[1])
		net_arm(n, now, 0);
}

void virtio_net_rx_ready(struct virtio_net *n)
{
	net_rx(n);
}

static const struct virtio_dev_ops net_ops = {
	.device_id = VIRTIO_ID_NET,
	.num_queues = 2,
	.config_size = sizeof(struct net_config),
	.config_read = net_config_read,
	.queue_notify = net_queue_notify,
	.activate = net_activate,
	.reset = net_reset,
};

int virtio_net_create(int fd, const uint8_t mac[6], const struct guest_mem *m,
                      struct virtio_net **ret)
{
	struct virtio_net *n;
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		close(fd);
		return -ENOMEM;
	}
	n->timer_fd = ratelimit_timer_open();
	if (n->timer_fd < 0) {
		int r = n->timer_fd;
		close(fd);
		free(n);
		return r;
	}
	n->fd = fd;
	memcpy(n->config.mac, mac, 6);
	n->config.status = VIRTIO_NET_S_LINK_UP;
	n->vd.ops = &net_ops;
	n->vd.mem = m;
	n->vd.device_features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS);
	*ret = n;
	return 0;
}

void virtio_net_destroy(struct virtio_net *n)
{
	if (!n)
		return;
	close(n->fd);
	close(n->timer_fd);
	free(n);
}

struct virtio_dev *virtio_net_dev(struct virtio_net *n) { return &n->vd; }
int virtio_net_fd(const struct virtio_net *n) { return n->fd; }
const struct virtio_net_stats *virtio_net_stats(const struct virtio_net *n) { return &n->stats; }
int virtio_net_timer_fd(const struct virtio_net *n) { return n->timer_fd; }
const struct ratelimit *virtio_net_limiter(const struct virtio_net *n, bool tx)
{
	return &n->rl[tx ? VIRTIO_NET_TXQ : VIRTIO_NET_RXQ];
}

int virtio_net_tap_open(const char *ifname, int *ret_fd)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd;

	if (strlen(ifname) >= sizeof(ifr.ifr_name))
		return -EINVAL;
	fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	strcpy(ifr.ifr_name, ifname);
	if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
		int r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

int virtio_net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char end;

	if (sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &end) != 6)
		return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	return 0;
}
