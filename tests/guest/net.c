/* SPDX-License-Identifier: MIT */
/*
 * The net scenario: ARP for the host address given as mvmtest=net:<ipv4>,
 * send it a UDP datagram "mvm-net-ping" to port 7 and wait for "mvm-net-pong"
 * back.  The guest is 10.0.2.15 and answers ARP requests for itself.
 */
#include "virtio.h"

#define VIRTIO_NET_F_MAC  5
#define NET_HDR_LEN       12        /* virtio_net_hdr with VERSION_1 */

#define RX_RING_OFF       0x0000UL
#define TX_RING_OFF       0x2000UL
#define TX_BUF_OFF        0x10000UL
#define RX_BUF_OFF        0x100000UL
#define RX_BUF_SIZE       2048      /* header + 1514-byte frame fits */
#define RX_BUFS           16

#define ETH_ARP           0x0806
#define ETH_IP            0x0800
#define GUEST_IP          0x0a00020f  /* 10.0.2.15 */
#define GUEST_PORT        40000
#define ECHO_PORT         7
#define TRIES             5
#define TRY_TICKS         (VIRTIO_TICKS_PER_SEC / 2)

static const char ping[] = "mvm-net-ping", pong[] = "mvm-net-pong";

struct net {
	struct vdev *dev;
	struct vq rx, tx;
	uint8_t mac[6], peer_mac[6];
	uint32_t peer_ip;
	bool have_peer, got_pong;
};

static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static void put32(uint8_t *p, uint32_t v) { put16(p, (uint16_t)(v >> 16)); put16(p + 2, (uint16_t)v); }
static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t get32(const uint8_t *p) { return (uint32_t)get16(p) << 16 | get16(p + 2); }

/* Dotted quad, each part 0-255. */
static bool parse_ipv4(const char *s, uint32_t *ret)
{
	uint32_t ip = 0;

	for (int part = 0; part < 4; part++) {
		unsigned v = 0, digits = 0;

		for (; *s >= '0' && *s <= '9' && digits < 4; s++, digits++)
			v = v * 10 + (unsigned)(*s - '0');
		if (!digits || v > 255 || *s != (part < 3 ? '.' : '\0'))
			return false;
		s++;
		ip = ip << 8 | v;
	}
	*ret = ip;
	return true;
}

static void rx_post(struct net *n, uint16_t i)
{
	vq_set_desc(&n->rx, i, VIRTIO_DMA_BASE + RX_BUF_OFF + (uint64_t)i * RX_BUF_SIZE, RX_BUF_SIZE,
	            VRING_DESC_F_WRITE, 0);
	vq_submit(&n->rx, i);
}

/* Sends one frame (padded to the 60-byte Ethernet minimum). */
static void tx_frame(struct net *n, const uint8_t *frame, unsigned len)
{
	uint8_t *buf = virtio_dma(TX_BUF_OFF, NET_HDR_LEN + 1514);
	struct vring_used_elem e;

	memset(buf, 0, NET_HDR_LEN + 60);
	memcpy(buf + NET_HDR_LEN, frame, len);
	if (len < 60)
		len = 60;
	vq_set_desc(&n->tx, 0, (uint64_t)buf, NET_HDR_LEN + len, 0, 0);
	vq_submit(&n->tx, 0);
	if (!vq_wait(&n->tx, 2 * VIRTIO_TICKS_PER_SEC, &e) || e.id != 0)
		fail("net: transmit did not complete (status %x)", vdev_status(n->dev));
}

static unsigned eth_header(const struct net *n, uint8_t *f, const uint8_t *dst, uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, n->mac, 6);
	put16(f + 12, type);
	return 14;
}

static void send_arp(struct net *n, uint16_t op, const uint8_t *tha, uint32_t tpa)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t f[60] = { 0 };
	uint8_t *a = f + eth_header(n, f, op == 1 ? bcast : tha, ETH_ARP);

	put16(a, 1);            /* Ethernet */
	put16(a + 2, ETH_IP);
	a[4] = 6, a[5] = 4;
	put16(a + 6, op);
	memcpy(a + 8, n->mac, 6);
	put32(a + 14, GUEST_IP);
	if (op == 2)
		memcpy(a + 18, tha, 6);
	put32(a + 24, tpa);
	tx_frame(n, f, 42);
}

static uint16_t ip_checksum(const uint8_t *p, unsigned len)
{
	uint32_t sum = 0;

	for (unsigned i = 0; i < len; i += 2)
		sum += get16(p + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* IPv4 + UDP (checksum 0: none, allowed over IPv4) to peer:7. */
static void send_ping(struct net *n)
{
	uint8_t f[64] = { 0 };
	uint8_t *ip = f + eth_header(n, f, n->peer_mac, ETH_IP), *udp = ip + 20;
	unsigned plen = sizeof(ping) - 1;

	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(20 + 8 + plen));
	put16(ip + 6, 0x4000);  /* don't fragment */
	ip[8] = 64;
	ip[9] = 17;
	put32(ip + 12, GUEST_IP);
	put32(ip + 16, n->peer_ip);
	put16(ip + 10, ip_checksum(ip, 20));
	put16(udp, GUEST_PORT);
	put16(udp + 2, ECHO_PORT);
	put16(udp + 4, (uint16_t)(8 + plen));
	memcpy(udp + 8, ping, plen);
	tx_frame(n, f, 14 + 20 + 8 + plen);
}

static void rx_arp(struct net *n, const uint8_t *a, unsigned len)
{
	if (len < 28 || get16(a) != 1 || get16(a + 2) != ETH_IP || a[4] != 6 || a[5] != 4)
		return;
	if (get16(a + 6) == 2 && get32(a + 14) == n->peer_ip) {
		memcpy(n->peer_mac, a + 8, 6);
		n->have_peer = true;
	} else if (get16(a + 6) == 1 && get32(a + 24) == GUEST_IP) {
		send_arp(n, 2, a + 8, get32(a + 14));
	}
}

static void rx_ip(struct net *n, const uint8_t *ip, unsigned len)
{
	unsigned ihl = (ip[0] & 0xf) * 4u, plen = sizeof(pong) - 1;
	const uint8_t *udp = ip + ihl;

	if (len < 20 || (ip[0] >> 4) != 4 || ihl < 20 || len < ihl + 8 || ip[9] != 17)
		return;
	if (get32(ip + 12) != n->peer_ip || get32(ip + 16) != GUEST_IP)
		return;
	if (get16(udp) != ECHO_PORT || get16(udp + 2) != GUEST_PORT || get16(udp + 4) != 8 + plen ||
	    len < ihl + 8 + plen)
		return;
	if (!memcmp(udp + 8, pong, plen))
		n->got_pong = true;
}

static void rx_frame(struct net *n, const uint8_t *buf, uint32_t len)
{
	const uint8_t *f = buf + NET_HDR_LEN;

	if (len < NET_HDR_LEN + 14 || len > RX_BUF_SIZE)
		return;
	len -= NET_HDR_LEN + 14;
	if (get16(f + 12) == ETH_ARP)
		rx_arp(n, f + 14, len);
	else if (get16(f + 12) == ETH_IP)
		rx_ip(n, f + 14, len);
}

/* Handles received frames for up to ticks, or until *flag is set. */
static bool rx_until(struct net *n, const bool *flag, unsigned ticks)
{
	uint32_t start = timer_ticks;
	struct vring_used_elem e;

	while (!*flag && timer_ticks - start <= ticks) {
		if (!vq_wait(&n->rx, ticks - (timer_ticks - start), &e))
			break;
		if (e.id >= RX_BUFS)
			fail("net: rx completion for descriptor %u", e.id);
		rx_frame(n, virtio_dma(RX_BUF_OFF + (uint64_t)e.id * RX_BUF_SIZE, RX_BUF_SIZE), e.len);
		rx_post(n, (uint16_t)e.id);
	}
	return *flag;
}

static void net_open(struct net *n)
{
	vdev_init(n->dev, 1UL << VIRTIO_NET_F_MAC);
	vq_setup(&n->rx, n->dev, 0, RX_RING_OFF);
	vq_setup(&n->tx, n->dev, 1, TX_RING_OFF);
	if (n->rx.size < RX_BUFS)
		fail("net: rx queue holds %u, need %u", n->rx.size, RX_BUFS);
	vdev_irq_enable(n->dev);
	vdev_driver_ok(n->dev);
	for (uint16_t i = 0; i < RX_BUFS; i++)
		rx_post(n, i);
	for (unsigned i = 0; i < 6; i++)
		n->mac[i] = vdev_cfg8(n->dev, i);
	kprintf("MVMTEST net mac=%02x:%02x:%02x:%02x:%02x:%02x\n", n->mac[0], n->mac[1], n->mac[2],
	        n->mac[3], n->mac[4], n->mac[5]);
}

void net_run(const char *arg)
{
	static struct vdev devs[VIRTIO_DEVS_MAX];
	static struct net n;
	unsigned count = virtio_discover(devs, VIRTIO_DEVS_MAX);
	unsigned i;

	if (!arg || !parse_ipv4(arg, &n.peer_ip))
		fail("net: bad argument '%s'", arg ? arg : "");
	n.dev = virtio_find(devs, count, VIRTIO_ID_NET, 0);
	if (!n.dev)
		fail("net: no virtio-net device");
	net_open(&n);
	for (i = 0; i < TRIES && !n.have_peer; i++) {
		send_arp(&n, 1, NULL, n.peer_ip);
		if (!i)
			kprintf("MVMTEST net tx ok\n");
		rx_until(&n, &n.have_peer, TRY_TICKS);
	}
	if (!n.have_peer)
		fail("net: no ARP reply from %u.%u.%u.%u", n.peer_ip >> 24, (n.peer_ip >> 16) & 0xff,
		     (n.peer_ip >> 8) & 0xff, n.peer_ip & 0xff);
	kprintf("MVMTEST net peer mac=%02x:%02x:%02x:%02x:%02x:%02x\n", n.peer_mac[0], n.peer_mac[1],
	        n.peer_mac[2], n.peer_mac[3], n.peer_mac[4], n.peer_mac[5]);
	for (i = 0; i < TRIES && !n.got_pong; i++) {
		send_ping(&n);
		rx_until(&n, &n.got_pong, TRY_TICKS);
	}
	if (!n.got_pong)
		fail("net: no reply to %s", ping);
	kprintf("MVMTEST net rx ok\n");
	vdev_reset(n.dev);
	virtio_irqs_report();
}
