/* SPDX-License-Identifier: MIT */
/* virtio-net over a SOCK_SEQPACKET socketpair (one message = one frame,
 * like a TAP fd), and over a real TAP device when /dev/net/tun opens. */
#include <errno.h>
#include <net/if.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/devices/virtio/net.h"

#define TX_GPA   DRV_DATA_BASE
#define RX_GPA   (DRV_DATA_BASE + 0x10000)
#define GUARD    0xcc
#define WANT     ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_NET_F_MAC) | \
                  (1ULL << VIRTIO_NET_F_STATUS))

static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static void fill_frame(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 3);
}

static void test_config(struct drv *d)
{
	uint8_t b[6];
	uint16_t status;

	for (int i = 0; i < 6; i++)
		CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + i, &b[i], 1), 0);
	CHECK(memcmp(b, mac, 6) == 0);
	CHECK_EQ(virtio_mmio_read(&d->t, VIRTIO_MMIO_CONFIG + 6, &status, 2), 0);
	CHECK_EQ(status, VIRTIO_NET_S_LINK_UP);
	CHECK_EQ(drv_rd(d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_NET);
}

static void test_tx(struct drv *d, struct virtio_net *n, int peer)
{
	uint8_t *hdr = drv_ptr(d, TX_GPA), *frame = hdr + 64, got[2048];
	uint32_t id = 0, len = 1;

	memset(hdr, 0, VIRTIO_NET_HDR_SIZE);
	fill_frame(frame, 60, 1);
	drv_post(d, VIRTIO_NET_TXQ, (struct drv_seg[]){ { TX_GPA, VIRTIO_NET_HDR_SIZE, false },
	                                                { TX_GPA + 64, 60, false } }, 2);
	drv_kick(d, VIRTIO_NET_TXQ);
	CHECK(drv_used(d, VIRTIO_NET_TXQ, &id, &len));
	CHECK_EQ(len, 0);
	CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), 60);
	CHECK(memcmp(got, frame, 60) == 0);

	/* Header and frame in one descriptor. */
	fill_frame(hdr + VIRTIO_NET_HDR_SIZE, 1514, 9);
	drv_post(d, VIRTIO_NET_TXQ, &(struct drv_seg){ TX_GPA, VIRTIO_NET_HDR_SIZE + 1514, false }, 1);
	drv_kick(d, VIRTIO_NET_TXQ);
	CHECK(drv_used(d, VIRTIO_NET_TXQ, &id, &len));
	CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), 1514);
	CHECK(memcmp(got, hdr + VIRTIO_NET_HDR_SIZE, 1514) == 0);

	/* Shorter than the header: dropped and counted, buffer returned. */
	drv_post(d, VIRTIO_NET_TXQ, &(struct drv_seg){ TX_GPA, 5, false }, 1);
	drv_kick(d, VIRTIO_NET_TXQ);
	CHECK(drv_used(d, VIRTIO_NET_TXQ, &id, &len));
	CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), -1);
	CHECK_EQ(virtio_net_stats(n)->tx_frames, 2);
	CHECK_EQ(virtio_net_stats(n)->tx_bytes, 60 + 1514);
	CHECK_EQ(virtio_net_stats(n)->tx_dropped, 1);
}

/* Posts one RX buffer of VIRTIO_NET_HDR_SIZE + room bytes with guard bytes
 * after it. */
static uint16_t post_rx(struct drv *d, uint32_t room)
{
	memset(drv_ptr(d, RX_GPA), GUARD, 0x4000);
	return drv_post(d, VIRTIO_NET_RXQ, &(struct drv_seg){ RX_GPA, VIRTIO_NET_HDR_SIZE + room, true }, 1);
}

static void test_rx(struct drv *d, struct virtio_net *n, int peer)
{
	uint8_t frame[3000], *buf = drv_ptr(d, RX_GPA);
	uint16_t num_buffers, head;
	uint32_t id = 0, len = 0;

	head = post_rx(d, 1514);
	drv_kick(d, VIRTIO_NET_RXQ);
	fill_frame(frame, 100, 3);
	CHECK_EQ(send(peer, frame, 100, 0), 100);
	virtio_net_rx_ready(n);
	CHECK(drv_used(d, VIRTIO_NET_RXQ, &id, &len));
	CHECK_EQ(id, head);
	CHECK_EQ(len, VIRTIO_NET_HDR_SIZE + 100);
	memcpy(&num_buffers, buf + 10, 2);
	CHECK_EQ(num_buffers, 1);
	CHECK_EQ(buf[0], 0);
	CHECK(memcmp(buf + VIRTIO_NET_HDR_SIZE, frame, 100) == 0);
	CHECK_EQ(buf[VIRTIO_NET_HDR_SIZE + 100], GUARD);

	/* No buffer yet: the frame waits until the driver posts one. */
	fill_frame(frame, 200, 4);
	CHECK_EQ(send(peer, frame, 200, 0), 200);
	virtio_net_rx_ready(n);
	CHECK(!drv_used(d, VIRTIO_NET_RXQ, &id, &len));
	post_rx(d, 1514);
	drv_kick(d, VIRTIO_NET_RXQ);
	CHECK(drv_used(d, VIRTIO_NET_RXQ, &id, &len));
	CHECK_EQ(len, VIRTIO_NET_HDR_SIZE + 200);
	CHECK(memcmp(buf + VIRTIO_NET_HDR_SIZE, frame, 200) == 0);

	/* Too big for the buffer: dropped, counted, no overrun; the buffer
	 * then takes the next frame. */
	head = post_rx(d, 64);
	fill_frame(frame, 2000, 5);
	CHECK_EQ(send(peer, frame, 2000, 0), 2000);
	CHECK_EQ(send(peer, frame, 64, 0), 64);
	virtio_net_rx_ready(n);
	CHECK_EQ(virtio_net_stats(n)->rx_dropped, 1);
	CHECK(drv_used(d, VIRTIO_NET_RXQ, &id, &len));
	CHECK_EQ(id, head);
	CHECK_EQ(len, VIRTIO_NET_HDR_SIZE + 64);
	for (int i = VIRTIO_NET_HDR_SIZE + 64; i < 0x4000; i++)
		if (buf[i] != GUARD) {
			CHECK(!"rx overran the buffer");
			break;
		}
	CHECK_EQ(virtio_net_stats(n)->rx_frames, 3);
}

static unsigned reap(struct drv *d, unsigned q)
{
	uint32_t id, len;
	unsigned n = 0;

	while (drv_used(d, q, &id, &len))
		n++;
	return n;
}

static void fire(struct drv *d, struct virtio_net *n)
{
	struct pollfd p = { .fd = virtio_net_timer_fd(n), .events = POLLIN };

	CHECK_EQ(poll(&p, 1, 2000), 1);
	virtio_mmio_lock(&d->t);
	virtio_net_timer(n);
	virtio_mmio_unlock(&d->t);
}

/* 20 frames/s each way: a second frame waits for the timer, in either
 * direction, and the other direction is not held up by it. */
static void test_limits(struct drv *d, struct virtio_net *n, int peer)
{
	struct ratelimit_config c = { .ops = 20 }, off = { 0 };
	struct drv_seg tx[2] = { { TX_GPA, VIRTIO_NET_HDR_SIZE, false }, { TX_GPA + 64, 60, false } };
	uint8_t got[2048], frame[100];
	uint64_t tx_frames = virtio_net_stats(n)->tx_frames;
	uint64_t rx_frames = virtio_net_stats(n)->rx_frames;

	reap(d, VIRTIO_NET_TXQ);
	reap(d, VIRTIO_NET_RXQ);
	virtio_net_set_limits(n, &c);
	for (int i = 0; i < 3; i++)
		drv_post(d, VIRTIO_NET_TXQ, tx, 2);
	drv_kick(d, VIRTIO_NET_TXQ);
	CHECK_EQ(reap(d, VIRTIO_NET_TXQ), 1);
	/* receiving has a bucket of its own */
	fill_frame(frame, 100, 7);
	CHECK_EQ(send(peer, frame, 100, 0), 100);
	CHECK_EQ(send(peer, frame, 100, 0), 100);
	post_rx(d, 1514);
	post_rx(d, 1514);
	drv_kick(d, VIRTIO_NET_RXQ);
	CHECK_EQ(reap(d, VIRTIO_NET_RXQ), 1);
	fire(d, n);
	/* the earlier deadline fired; whatever is due went, the rest re-armed */
	unsigned sent = reap(d, VIRTIO_NET_TXQ), recvd = reap(d, VIRTIO_NET_RXQ);
	CHECK(sent + recvd >= 1);
	virtio_net_set_limits(n, &off);
	fire(d, n);
	sent += reap(d, VIRTIO_NET_TXQ);
	recvd += reap(d, VIRTIO_NET_RXQ);
	CHECK_EQ(sent, 2);
	CHECK_EQ(recvd, 1);
	CHECK_EQ(virtio_net_stats(n)->tx_frames - tx_frames, 3);
	CHECK_EQ(virtio_net_stats(n)->rx_frames - rx_frames, 2);
	for (int i = 0; i < 3; i++)
		CHECK_EQ(recv(peer, got, sizeof(got), MSG_DONTWAIT), 60);
	CHECK(virtio_net_limiter(n, true)->throttled_ns > 0);
	CHECK(virtio_net_limiter(n, false)->throttled_ns > 0);
}

static void test_socketpair(void)
{
	struct virtio_net *n;
	struct drv d;
	int sv[2];

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) < 0) {
		perror("socketpair");
		CHECK(0);
		return;
	}
	drv_open(&d);
	CHECK_EQ(virtio_net_create(sv[0], mac, &d.mem, &n), 0);
	drv_attach(&d, virtio_net_dev(n));
	CHECK_EQ(drv_init(&d, WANT, 2, 16), WANT);
	test_config(&d);
	test_tx(&d, n, sv[1]);
	test_rx(&d, n, sv[1]);
	test_limits(&d, n, sv[1]);
	virtio_net_destroy(n);
	close(sv[1]);
	drv_close(&d);
}

static int link_up(const char *name)
{
	struct ifreq ifr = { 0 };
	int s = socket(AF_INET, SOCK_DGRAM, 0), r = -1;

	if (s < 0)
		return -1;
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
		ifr.ifr_flags |= IFF_UP;
		r = ioctl(s, SIOCSIFFLAGS, &ifr);
	}
	close(s);
	return r;
}

/* A real TAP: a frame the guest sends is accepted by the kernel. */
static void test_tap(void)
{
	char name[IFNAMSIZ];
	struct virtio_net *n;
	struct drv d;
	uint32_t id = 0, len = 0;
	int fd, r;

	snprintf(name, sizeof(name), "mvmt%d", (int)getpid() % 100000);
	r = virtio_net_tap_open(name, &fd);
	if (r < 0) {
		fprintf(stderr, "skipping TAP case: %s\n", strerror(-r));
		return;
	}
	drv_open(&d);
	CHECK_EQ(virtio_net_create(fd, mac, &d.mem, &n), 0);
	drv_attach(&d, virtio_net_dev(n));
	CHECK_EQ(drv_init(&d, WANT, 2, 16), WANT);
	if (link_up(name) < 0) {
		fprintf(stderr, "skipping TAP transmit: cannot bring %s up\n", name);
	} else {
		uint8_t *p = drv_ptr(&d, TX_GPA);

		memset(p, 0, VIRTIO_NET_HDR_SIZE);
		memset(p + VIRTIO_NET_HDR_SIZE, 0xff, 6);               /* broadcast */
		memcpy(p + VIRTIO_NET_HDR_SIZE + 6, mac, 6);
		memcpy(p + VIRTIO_NET_HDR_SIZE + 12, "\x88\xb5", 2);     /* local experimental */
		memset(p + VIRTIO_NET_HDR_SIZE + 14, 0x42, 46);
		drv_post(&d, VIRTIO_NET_TXQ, &(struct drv_seg){ TX_GPA, VIRTIO_NET_HDR_SIZE + 60, false }, 1);
		drv_kick(&d, VIRTIO_NET_TXQ);
		CHECK(drv_used(&d, VIRTIO_NET_TXQ, &id, &len));
		CHECK_EQ(virtio_net_stats(n)->tx_frames, 1);
	}
	/* Whatever the kernel sends on a fresh link must not break RX. */
	post_rx(&d, 1514);
	drv_kick(&d, VIRTIO_NET_RXQ);
	virtio_net_rx_ready(n);
	CHECK_EQ(drv_rd(&d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	virtio_net_destroy(n);
	drv_close(&d);
}

static void test_parse_mac(void)
{
	uint8_t m[6];

	CHECK_EQ(virtio_net_parse_mac("52:54:00:12:34:56", m), 0);
	CHECK(memcmp(m, mac, 6) == 0);
	CHECK_EQ(virtio_net_parse_mac("52:54:00:12:34", m), -EINVAL);
	CHECK_EQ(virtio_net_parse_mac("52:54:00:12:34:56:78", m), -EINVAL);
	CHECK_EQ(virtio_net_parse_mac("52:54:00:12:34:5g", m), -EINVAL);
}

int main(void)
{
	test_socketpair();
	test_tap();
	test_parse_mac();
	return check_result("test-virtio-net");
}
