/* SPDX-License-Identifier: MIT */
/*
 * The vsock scenario: a virtio-vsock stream driver just big enough for two
 * connections.  Guest to host: connect to CID 2 port 5000, send
 * "mvm-vsock-ping", expect "mvm-vsock-pong", shut down.  Host to guest: the
 * guest listens on port 6000 from the start, expects "mvm-vsock-hello",
 * answers "mvm-vsock-world", shuts down.  Credit (spec 5.10.6.3) is kept both
 * ways: every header we send carries our buf_alloc and fwd_cnt, and we never
 * send more than the host's credit allows.
 */
#include "virtio.h"

#define VIRTIO_VSOCK_F_STREAM 0

#define OP_REQUEST        1
#define OP_RESPONSE       2
#define OP_RST            3
#define OP_SHUTDOWN       4
#define OP_RW             5
#define OP_CREDIT_UPDATE  6
#define OP_CREDIT_REQUEST 7
#define SHUT_BOTH         3   /* VIRTIO_VSOCK_SHUTDOWN_RCV | _SEND */
#define TYPE_STREAM       1
#define HOST_CID          2

/* DMA area layout: three rings, then the tx packet, events, rx buffers. */
#define RX_RING_OFF       0x0000UL
#define TX_RING_OFF       0x2000UL
#define EV_RING_OFF       0x4000UL
#define TX_BUF_OFF        0x10000UL
#define EV_BUF_OFF        0x11000UL
#define RX_BUF_OFF        0x20000UL
#define RX_BUF_SIZE       4096
#define RX_BUFS           16
#define EV_BUFS           4
#define EV_BUF_SIZE       8       /* struct virtio_vsock_event: le32 id + pad */

/* Our receive buffer per connection: buf_alloc in every header we send. */
#define CONN_BUF          64
#define MSG_MAX           32      /* largest payload we send */

#define HOST_PORT_G2H     5000
#define LISTEN_PORT       6000
#define G2H_LOCAL_PORT    40000   /* + attempt number */
#define CONNECT_TRIES     10
#define TRY_TICKS         (VIRTIO_TICKS_PER_SEC / 2)
#define REPLY_TICKS       (5 * VIRTIO_TICKS_PER_SEC)
#define ACCEPT_TICKS      (10 * VIRTIO_TICKS_PER_SEC)
#define CLOSE_TICKS       (2 * VIRTIO_TICKS_PER_SEC)
#define TX_TICKS          (2 * VIRTIO_TICKS_PER_SEC)

struct vsock_hdr {
	uint64_t src_cid, dst_cid;
	uint32_t src_port, dst_port, len;
	uint16_t type, op;
	uint32_t flags, buf_alloc, fwd_cnt;
} __attribute__((packed));
#define HDR_SIZE sizeof(struct vsock_hdr)
_Static_assert(sizeof(struct vsock_hdr) == 44, "virtio_vsock_hdr is 44 bytes");

enum conn_state { C_FREE, C_CONNECTING, C_OPEN, C_CLOSED };

struct vconn {
	enum conn_state state;
	uint32_t lport, pport;
	/* The host's credit and what we sent; what we took out of buf. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt, fwd_cnt;
	uint32_t peer_shut;     /* SHUTDOWN flags the host sent */
	uint8_t buf[CONN_BUF];
	uint32_t len;
};

struct vsock {
	struct vdev *dev;
	struct vq rx, tx, ev;
	uint64_t cid;
	struct vconn g2h, h2g;
};

static const char ping[] = "mvm-vsock-ping", pong[] = "mvm-vsock-pong";
static const char hello[] = "mvm-vsock-hello", world[] = "mvm-vsock-world";

/* ---- sending ---- */

/* One packet (header + payload in one descriptor); waits for the device
 * to consume it.  c supplies our credit fields, if there is a connection. */
static void vs_send(struct vsock *vs, const struct vconn *c, uint32_t lport, uint32_t pport,
                    uint16_t op, uint32_t flags, const void *data, uint32_t len)
{
	struct vsock_hdr *h = virtio_dma(TX_BUF_OFF, HDR_SIZE + MSG_MAX);
	struct vring_used_elem e;

	if (len > MSG_MAX)
		fail("vsock: %u-byte message is over %u", len, MSG_MAX);
	*h = (struct vsock_hdr){
		.src_cid = vs->cid, .dst_cid = HOST_CID, .src_port = lport, .dst_port = pport,
		.len = len, .type = TYPE_STREAM, .op = op, .flags = flags,
		.buf_alloc = c ? CONN_BUF : 0, .fwd_cnt = c ? c->fwd_cnt : 0,
	};
	memcpy(h + 1, data, len);
	vq_set_desc(&vs->tx, 0, (uint64_t)h, (uint32_t)HDR_SIZE + len, 0, 0);
	vq_submit(&vs->tx, 0);
	if (!vq_wait(&vs->tx, TX_TICKS, &e) || e.id != 0)
		fail("vsock: tx op %u got no completion (status %x)", op, vdev_status(vs->dev));
}

static void conn_send(struct vsock *vs, struct vconn *c, uint16_t op, uint32_t flags,
                      const void *data, uint32_t len)
{
	vs_send(vs, c, c->lport, c->pport, op, flags, data, len);
	if (op == OP_RW)
		c->tx_cnt += len;
}

static uint32_t peer_credit(const struct vconn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* ---- receiving ---- */

static struct vconn *conn_lookup(struct vsock *vs, uint32_t lport, uint32_t pport)
{
	struct vconn *cs[2] = { &vs->g2h, &vs->h2g };

	for (unsigned i = 0; i < 2; i++)
		if (cs[i]->state != C_FREE && cs[i]->lport == lport && cs[i]->pport == pport)
			return cs[i];
	return NULL;
}

/* A host connection to our listening port; one is all the scenario takes. */
static void rx_request(struct vsock *vs, const struct vsock_hdr *h)
{
	struct vconn *c = &vs->h2g;

	if (h->dst_port != LISTEN_PORT || c->state != C_FREE) {
		vs_send(vs, NULL, h->dst_port, h->src_port, OP_RST, 0, NULL, 0);
		return;
	}
	*c = (struct vconn){ .state = C_OPEN, .lport = h->dst_port, .pport = h->src_port,
	                     .peer_buf_alloc = h->buf_alloc, .peer_fwd_cnt = h->fwd_cnt };
	conn_send(vs, c, OP_RESPONSE, 0, NULL, 0);
}

static void rx_data(struct vconn *c, const uint8_t *data, uint32_t len)
{
	if (c->state != C_OPEN)
		fail("vsock: port %u: data in state %u", c->lport, c->state);
	/* Our credit is the free space in buf: more is the host's error. */
	if (len > CONN_BUF - c->len)
		fail("vsock: port %u: host sent %u bytes with %u of credit", c->lport, len,
		     CONN_BUF - c->len);
	memcpy(c->buf + c->len, data, len);
	c->len += len;
}

/* Applies a packet for an existing connection. */
static void rx_conn(struct vsock *vs, struct vconn *c, const struct vsock_hdr *h, const uint8_t *data)
{
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case OP_RESPONSE:
		if (c->state != C_CONNECTING)
			fail("vsock: port %u: RESPONSE in state %u", c->lport, c->state);
		c->state = C_OPEN;
		break;
	case OP_RST:
		c->state = C_CLOSED;
		break;
	case OP_SHUTDOWN:
		c->peer_shut |= h->flags & SHUT_BOTH;
		break;
	case OP_RW:
		rx_data(c, data, h->len);
		break;
	case OP_CREDIT_REQUEST:
		conn_send(vs, c, OP_CREDIT_UPDATE, 0, NULL, 0);
		break;
	case OP_CREDIT_UPDATE:
		break;
	default:  /* REQUEST on a live connection */
		fail("vsock: port %u: unexpected op %u", c->lport, h->op);
	}
}

static void rx_packet(struct vsock *vs, const struct vsock_hdr *h, uint32_t len)
{
	struct vconn *c;

	if (h->src_cid != HOST_CID || h->dst_cid != vs->cid || h->type != TYPE_STREAM ||
	    h->len > len - HDR_SIZE)
		fail("vsock: bad packet from device: cid %lu->%lu type %u len %u of %u",
		     h->src_cid, h->dst_cid, h->type, h->len, len);
	c = conn_lookup(vs, h->dst_port, h->src_port);
	if (c)
		rx_conn(vs, c, h, (const uint8_t *)(h + 1));
	else if (h->op == OP_REQUEST)
		rx_request(vs, h);
	else if (h->op != OP_RST)  /* never answer an RST with one */
		vs_send(vs, NULL, h->dst_port, h->src_port, OP_RST, 0, NULL, 0);
}

static void rx_post(struct vsock *vs, uint16_t i)
{
	vq_set_desc(&vs->rx, i, VIRTIO_DMA_BASE + RX_BUF_OFF + (uint64_t)i * RX_BUF_SIZE,
	            RX_BUF_SIZE, VRING_DESC_F_WRITE, 0);
	vq_submit(&vs->rx, i);
}

/* Handles received packets until done(c) or ticks pass; returns done(c). */
static bool vs_wait(struct vsock *vs, struct vconn *c, bool (*done)(const struct vconn *),
                    unsigned ticks)
{
	uint32_t start = timer_ticks;
	struct vring_used_elem e;

	while (!done(c) && timer_ticks - start <= ticks) {
		if (!vq_wait(&vs->rx, ticks - (timer_ticks - start), &e))
			break;
		if (e.id >= RX_BUFS || e.len < HDR_SIZE || e.len > RX_BUF_SIZE)
			fail("vsock: bad rx completion id %u len %u", e.id, e.len);
		rx_packet(vs, virtio_dma(RX_BUF_OFF + (uint64_t)e.id * RX_BUF_SIZE, RX_BUF_SIZE), e.len);
		rx_post(vs, (uint16_t)e.id);
	}
	if (vdev_status(vs->dev) & VIRTIO_S_NEEDS_RESET)
		fail("vsock: device needs reset (status %x)", vdev_status(vs->dev));
	return done(c);
}

static bool never(const struct vconn *c) { return false; }
static bool not_connecting(const struct vconn *c) { return c->state != C_CONNECTING; }
static bool is_closed(const struct vconn *c) { return c->state == C_CLOSED; }
/* A whole message (all our messages are the same size), or no more coming. */
static bool has_msg(const struct vconn *c)
{
	return c->len >= sizeof(ping) - 1 || c->state == C_CLOSED || (c->peer_shut & 2);
}
/* Room for the longest message we send. */
static bool has_credit(const struct vconn *c) { return peer_credit(c) >= sizeof(world) - 1; }
static bool h2g_msg(const struct vconn *c)
{
	return c->state != C_FREE && (c->len >= sizeof(hello) - 1 || c->state == C_CLOSED ||
	                              (c->peer_shut & 2));
}

/* ---- the scenario ---- */

/* Sends msg within the host's credit, asking for more if it is short. */
static void conn_write(struct vsock *vs, struct vconn *c, const char *who, const char *msg)
{
	uint32_t len = (uint32_t)strlen(msg);

	if (peer_credit(c) < len) {
		conn_send(vs, c, OP_CREDIT_REQUEST, 0, NULL, 0);
		vs_wait(vs, c, has_credit, REPLY_TICKS / 5);
		if (peer_credit(c) < len)
			fail("vsock %s: host gives %u bytes of credit, need %u", who, peer_credit(c), len);
	}
	conn_send(vs, c, OP_RW, 0, msg, len);
}

/* Takes a whole message out of c's buffer (crediting the host) and checks it. */
static void conn_expect(struct vconn *c, const char *who, const char *want)
{
	uint32_t n = (uint32_t)strlen(want);
	char got[CONN_BUF + 1];

	for (uint32_t i = 0; i < c->len; i++)
		got[i] = c->buf[i] >= 0x20 && c->buf[i] < 0x7f ? (char)c->buf[i] : '?';
	got[c->len] = '\0';
	if (c->len != n || memcmp(c->buf, want, n))
		fail("vsock %s: got '%s' (%u bytes, state %u) want '%s'", who, got, c->len, c->state, want);
	c->fwd_cnt += n;
	c->len = 0;
}

/* SHUTDOWN both ways; the device then ends the connection with RST. */
static void conn_close(struct vsock *vs, struct vconn *c, const char *who)
{
	conn_send(vs, c, OP_SHUTDOWN, SHUT_BOTH, NULL, 0);
	if (!vs_wait(vs, c, is_closed, CLOSE_TICKS))
		fail("vsock %s: no RST after SHUTDOWN", who);
}

/* A refused connection (RST: nobody listens on the host yet) is retried
 * from a fresh local port, so a late answer to an old try is told apart. */
static void g2h_connect(struct vsock *vs)
{
	struct vconn *c = &vs->g2h;

	for (unsigned i = 0; i < CONNECT_TRIES; i++) {
		uint32_t start = timer_ticks;

		*c = (struct vconn){ .state = C_CONNECTING, .lport = G2H_LOCAL_PORT + i,
		                     .pport = HOST_PORT_G2H };
		conn_send(vs, c, OP_REQUEST, 0, NULL, 0);
		vs_wait(vs, c, not_connecting, TRY_TICKS);
		if (c->state == C_OPEN)
			return;
		if (c->state == C_CONNECTING)  /* no answer: forget it */
			vs_send(vs, c, c->lport, c->pport, OP_RST, 0, NULL, 0);
		if (timer_ticks - start < TRY_TICKS)
			vs_wait(vs, c, never, TRY_TICKS - (timer_ticks - start));
	}
	fail("vsock g2h: connection to %u:%u refused %u times", HOST_CID, HOST_PORT_G2H,
	     CONNECT_TRIES);
}

static void g2h_run(struct vsock *vs)
{
	struct vconn *c = &vs->g2h;

	g2h_connect(vs);
	conn_write(vs, c, "g2h", ping);
	vs_wait(vs, c, has_msg, REPLY_TICKS);
	conn_expect(c, "g2h", pong);
	conn_close(vs, c, "g2h");
	kprintf("MVMTEST vsock g2h ok\n");
}

static void h2g_run(struct vsock *vs)
{
	struct vconn *c = &vs->h2g;

	if (!vs_wait(vs, c, h2g_msg, ACCEPT_TICKS) && c->state == C_FREE)
		fail("vsock h2g: no connection to port %u", LISTEN_PORT);
	conn_expect(c, "h2g", hello);
	conn_write(vs, c, "h2g", world);
	conn_close(vs, c, "h2g");
	kprintf("MVMTEST vsock h2g ok\n");
}

static uint64_t read_cid(const struct vdev *d)
{
	for (unsigned i = 0; i < 4; i++) {
		uint32_t gen = vdev_cfg_generation(d);
		uint64_t cid = vdev_cfg32(d, 0) | (uint64_t)vdev_cfg32(d, 4) << 32;

		if (gen == vdev_cfg_generation(d))
			return cid;
	}
	fail("vsock: config generation keeps changing");
}

static void vs_open(struct vsock *vs)
{
	vdev_init(vs->dev, 1UL << VIRTIO_VSOCK_F_STREAM);
	vs->cid = read_cid(vs->dev);
	kprintf("MVMTEST vsock cid=%lu\n", vs->cid);
	if (vs->cid <= HOST_CID || vs->cid >= 0xffffffffUL)
		fail("vsock: guest cid %lu is reserved", vs->cid);
	vq_setup(&vs->rx, vs->dev, 0, RX_RING_OFF);
	vq_setup(&vs->tx, vs->dev, 1, TX_RING_OFF);
	vq_setup(&vs->ev, vs->dev, 2, EV_RING_OFF);
	if (vs->rx.size < RX_BUFS || vs->ev.size < EV_BUFS)
		fail("vsock: queues hold %u/%u, need %u/%u", vs->rx.size, vs->ev.size, RX_BUFS, EV_BUFS);
	vdev_irq_enable(vs->dev);
	vdev_driver_ok(vs->dev);
	for (uint16_t i = 0; i < RX_BUFS; i++)
		rx_post(vs, i);
	/* Events (transport reset) are never acted on, but the queue is filled
	 * as the spec asks of a driver. */
	for (uint16_t i = 0; i < EV_BUFS; i++) {
		vq_set_desc(&vs->ev, i, VIRTIO_DMA_BASE + EV_BUF_OFF + i * EV_BUF_SIZE, EV_BUF_SIZE,
		            VRING_DESC_F_WRITE, 0);
		vq_submit(&vs->ev, i);
	}
}

void vsock_run(const char *arg)
{
	static struct vdev devs[VIRTIO_DEVS_MAX];
	static struct vsock vs;
	unsigned n = virtio_discover(devs, VIRTIO_DEVS_MAX);

	vs.dev = virtio_find(devs, n, VIRTIO_ID_VSOCK, 0);
	if (!vs.dev)
		fail("vsock: no virtio-vsock device");
	vs_open(&vs);
	g2h_run(&vs);
	h2g_run(&vs);
	vdev_reset(vs.dev);
	virtio_irqs_report();
}
