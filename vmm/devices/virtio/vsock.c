/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/devices/virtio/vsock.h"

_Static_assert(sizeof(struct virtio_vsock_hdr) == VIRTIO_VSOCK_HDR_SIZE, "vsock header size");

/* "CONNECT 4294967295\n" is 19 bytes; anything longer is not a request. */
#define LINE_MAX_LEN   24
/* RSTs owed to the guest for packets that have no connection (or just lost
 * it).  When full, further ones are dropped: the guest's connect times out. */
#define RST_QUEUE_MAX  64
/* Host-bound bytes kept per connection: the advertised buffer plus room for
 * the "OK <port>\n" line, which is not stream data. */
#define OBUF_CAP       (VIRTIO_VSOCK_BUF_ALLOC + LINE_MAX_LEN)
/* Tell the guest about freed buffer space once this much was forwarded. */
#define CREDIT_THRESHOLD (VIRTIO_VSOCK_BUF_ALLOC / 2)
/* epoll tags that are not connections; connection tags are gen << 8 | slot. */
#define TAG_LISTEN     UINT64_MAX
#define TAG_KICK       (UINT64_MAX - 1)
#define EVENTS_BATCH   16

/* Control packets a connection owes the guest (bit set until delivered). */
#define PEND_REQUEST        1u
#define PEND_RESPONSE       2u
#define PEND_CREDIT_UPDATE  4u
#define PEND_CREDIT_REQUEST 8u
#define PEND_SHUTDOWN       16u

enum conn_state {
	CONN_HOST_LINE,     /* accepted; reading "CONNECT <port>\n" */
	CONN_REQUEST_SENT,  /* REQUEST owed/sent to the guest; awaiting RESPONSE */
	CONN_ESTABLISHED,
};

struct vsock_conn {
	int fd;
	unsigned slot;
	uint32_t gen;
	enum conn_state state;
	uint32_t host_port, guest_port;
	uint32_t events;        /* epoll interest; 0 = not in the epoll set */
	unsigned pending;       /* PEND_* */
	bool readable;          /* host fd signalled input not yet read */
	bool host_eof;          /* host stopped sending; SHUTDOWN owed/sent */
	bool host_shut_wr;      /* guest's SHUTDOWN(SEND) passed on to the host */
	bool credit_asked;      /* CREDIT_REQUEST sent since credit ran out */
	uint32_t peer_shut;     /* SHUTDOWN flags received from the guest */
	/* Credit (spec 5.10.6.3): the guest's buffer and what it consumed, and
	 * our own counts of sent / received / forwarded stream bytes. */
	uint32_t peer_buf_alloc, peer_fwd_cnt, tx_cnt;
	uint32_t rx_cnt, fwd_cnt, last_fwd_sent;
	/* Host-bound bytes the socket did not take yet (ring of OBUF_CAP);
	 * the first octl of them are the OK line, not stream data. */
	uint8_t *obuf;
	uint32_t ohead, olen, octl;
	char line[LINE_MAX_LEN];
	unsigned line_len;
};

struct rst_entry { uint32_t src_port, dst_port; };

struct virtio_vsock {
	struct virtio_dev vd;
	uint64_t config_cid;    /* le64 guest_cid, the whole config space */
	uint32_t cid;
	char *uds_path;
	/* What guest connects dial "<dial>_PORT" by: uds_path, or after
	 * virtio_vsock_rebase its name relative to the new root (the cwd);
	 * NULL when uds_path is outside that root: nothing to dial. */
	const char *dial;
	int listen_fd, epfd, kick_fd;
	struct vsock_conn *conns[VIRTIO_VSOCK_MAX_CONNS];
	unsigned nconns, rr;
	uint32_t gen, next_port;
	struct rst_entry rst[RST_QUEUE_MAX];
	unsigned rst_head, rst_len;
	struct virtio_vsock_stats stats;
	struct virtq_chain chain;
	struct iovec iov[VIRTQ_MAX_SIZE];
};

#define to_vsock(vdp) ((struct virtio_vsock *)((char *)(vdp) - offsetof(struct virtio_vsock, vd)))

/* ---- connections ---- */

static struct vsock_conn *conn_find(struct virtio_vsock *v, uint32_t guest_port, uint32_t host_port)
{
	for (unsigned i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = v->conns[i];

		if (c && c->state != CONN_HOST_LINE && c->guest_port == guest_port &&
		    c->host_port == host_port)
			return c;
	}
	return NULL;
}

static struct vsock_conn *conn_new(struct virtio_vsock *v, int fd)
{
	struct vsock_conn *c;
	unsigned i;

	for (i = 0; i < VIRTIO_VSOCK_MAX_CONNS && v->conns[i]; i++)
		;
	if (i == VIRTIO_VSOCK_MAX_CONNS)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->fd = fd;
	c->slot = i;
	c->gen = ++v->gen & 0xffffff;
	v->conns[i] = c;
	v->nconns++;
	return c;
}

static void conn_free(struct virtio_vsock *v, struct vsock_conn *c)
{
	/* close() drops the fd from the epoll set. */
	close(c->fd);
	v->conns[c->slot] = NULL;
	v->nconns--;
	free(c->obuf);
	free(c);
}

/* Keeps the fd in the epoll set only while we want something from it, so
 * that EPOLLHUP (always reported) cannot spin while we wait on the guest. */
static int conn_watch(struct virtio_vsock *v, struct vsock_conn *c)
{
	uint32_t want = 0;
	struct epoll_event ev;
	int op;

	if (c->state == CONN_HOST_LINE ||
	    (c->state == CONN_ESTABLISHED && !c->readable && !c->host_eof &&
	     !(c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV)))
		want |= EPOLLIN;
	if (c->olen)
		want |= EPOLLOUT;
	if (want == c->events)
		return 0;
	op = !want ? EPOLL_CTL_DEL : c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
	ev = (struct epoll_event){ .events = want,
	                           .data.u64 = (uint64_t)c->gen << 8 | c->slot };
	if (epoll_ctl(v->epfd, op, c->fd, &ev) < 0)
		return -errno;
	c->events = want;
	return 0;
}

static void rst_queue(struct virtio_vsock *v, uint32_t src_port, uint32_t dst_port)
{
	if (v->rst_len == RST_QUEUE_MAX) {
		v->stats.rx_dropped++;
		return;
	}
	v->rst[(v->rst_head + v->rst_len++) % RST_QUEUE_MAX] =
		(struct rst_entry){ .src_port = src_port, .dst_port = dst_port };
	v->stats.rst_sent++;
}

/* The connection is over: the guest learns it by RST, the host by close. */
static void conn_reset(struct virtio_vsock *v, struct vsock_conn *c)
{
	if (c->state != CONN_HOST_LINE)
		rst_queue(v, c->host_port, c->guest_port);
	conn_free(v, c);
}

static uint32_t peer_credit(const struct vsock_conn *c)
{
	uint32_t in_flight = c->tx_cnt - c->peer_fwd_cnt;

	return in_flight >= c->peer_buf_alloc ? 0 : c->peer_buf_alloc - in_flight;
}

/* ---- host socket output ---- */

static ssize_t send_iov(int fd, struct iovec *iov, unsigned n)
{
	struct msghdr msg = { .msg_iov = iov, .msg_iovlen = n };
	ssize_t w;

	do
		w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	return w;
}

/* Appends iov[0..n) from byte `off` on to the ring; the caller checked room. */
static int obuf_append(struct vsock_conn *c, const struct iovec *iov, unsigned n, size_t off,
                       uint32_t len)
{
	uint32_t tail, first;

	if (!c->obuf) {
		c->obuf = malloc(OBUF_CAP);
		if (!c->obuf)
			return -ENOMEM;
	}
	tail = (c->ohead + c->olen) % OBUF_CAP;
	first = len < OBUF_CAP - tail ? len : OBUF_CAP - tail;
	iov_to_buf(iov, n, off, c->obuf + tail, first);
	iov_to_buf(iov, n, off + first, c->obuf, len - first);
	c->olen += len;
	return 0;
}

/* Sends len bytes of iov to the host socket, keeping what it does not take
 * now.  Returns the bytes sent at once, -ENOBUFS when the rest does not fit
 * or a socket error. */
static ssize_t host_send(struct vsock_conn *c, struct iovec *iov, unsigned n, uint32_t len)
{
	ssize_t w = 0;
	int r;

	if (!c->olen) {
		w = send_iov(c->fd, iov, n);
		if (w < 0)
			return w;
	}
	if (len - (uint32_t)w > OBUF_CAP - c->olen)
		return -ENOBUFS;
	r = obuf_append(c, iov, n, (size_t)w, len - (uint32_t)w);
	return r < 0 ? r : w;
}

/* Counts sent stream bytes as forwarded and owes the guest a credit
 * update once enough buffer space was freed. */
static void conn_forwarded(struct vsock_conn *c, uint32_t n)
{
	c->fwd_cnt += n;
	if (c->fwd_cnt - c->last_fwd_sent >= CREDIT_THRESHOLD)
		c->pending |= PEND_CREDIT_UPDATE;
}

static int obuf_flush(struct vsock_conn *c)
{
	uint32_t first = c->olen < OBUF_CAP - c->ohead ? c->olen : OBUF_CAP - c->ohead;
	struct iovec iov[2] = {
		{ c->obuf + c->ohead, first },
		{ c->obuf, c->olen - first },
	};
	uint32_t ctl;
	ssize_t w;

	if (!c->olen)
		return 0;
	w = send_iov(c->fd, iov, c->olen > first ? 2 : 1);
	if (w < 0)
		return (int)w;
	c->ohead = (c->ohead + (uint32_t)w) % OBUF_CAP;
	c->olen -= (uint32_t)w;
	ctl = (uint32_t)w < c->octl ? (uint32_t)w : c->octl;
	c->octl -= ctl;
	conn_forwarded(c, (uint32_t)w - ctl);
	return 0;
}

/* After the guest's SHUTDOWN: pass it on once every byte reached the host,
 * and end the connection when neither side will send again.  Then, or when
 * the epoll set refuses the fd, c is freed and the result is true. */
static bool conn_settle(struct virtio_vsock *v, struct vsock_conn *c)
{
	bool guest_done = c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND;

	if (guest_done && !c->olen) {
		if (c->peer_shut == (VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV) ||
		    c->host_eof) {
			conn_reset(v, c);
			return true;
		}
		if (!c->host_shut_wr) {
			shutdown(c->fd, SHUT_WR);
			c->host_shut_wr = true;
		}
	}
	if (conn_watch(v, c) < 0) {
		conn_reset(v, c);
		return true;
	}
	return false;
}

/* ---- host side: listener and CONNECT line ---- */

static uint32_t alloc_host_port(struct virtio_vsock *v)
{
	for (;;) {
		uint32_t p = v->next_port++;
		bool used = false;

		/* Port 0xffffffff is VMADDR_PORT_ANY. */
		if (v->next_port == UINT32_MAX)
			v->next_port = VIRTIO_VSOCK_HOST_PORT_BASE;
		for (unsigned i = 0; i < VIRTIO_VSOCK_MAX_CONNS && !used; i++)
			used = v->conns[i] && v->conns[i]->host_port == p;
		/* At most MAX_CONNS ports are taken, so this ends. */
		if (!used)
			return p;
	}
}

static int parse_connect(const char *s, uint32_t *ret_port)
{
	unsigned long port = 0;
	const char *p;

	if (strncmp(s, "CONNECT ", 8) != 0)
		return -EINVAL;
	for (p = s + 8; *p >= '0' && *p <= '9' && port <= UINT32_MAX; p++)
		port = port * 10 + (unsigned long)(*p - '0');
	if (p == s + 8 || *p != '\0' || port > UINT32_MAX)
		return -EINVAL;
	*ret_port = (uint32_t)port;
	return 0;
}

/* Consumes the CONNECT line without reading past its newline: peek, then
 * take up to and including '\n' (or all of it when there is none yet), so
 * stream bytes the host sent after the line stay in the socket.  Returns 1
 * when the line is complete, 0 for more to come, <0 to drop the client. */
static int read_line(struct vsock_conn *c)
{
	size_t room = sizeof(c->line) - 1 - c->line_len;
	char *nl, *dst = c->line + c->line_len;
	ssize_t n;

	do
		n = recv(c->fd, dst, room, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
	if (n == 0)
		return -ECONNRESET;
	nl = memchr(dst, '\n', (size_t)n);
	if (nl)
		n = nl - dst + 1;
	if (recv(c->fd, dst, (size_t)n, MSG_DONTWAIT) != n)
		return -EIO;
	c->line_len += (unsigned)n;
	if (!nl)
		return c->line_len + 1 >= sizeof(c->line) ? -EINVAL : 0;
	*nl = '\0';
	return 1;
}

static void conn_host_line(struct virtio_vsock *v, struct vsock_conn *c)
{
	int r = read_line(c);

	if (r == 0)
		return;
	if (r < 0 || parse_connect(c->line, &c->guest_port) < 0) {
		conn_free(v, c);
		return;
	}
	c->host_port = alloc_host_port(v);
	c->state = CONN_REQUEST_SENT;
	c->pending |= PEND_REQUEST;
	if (conn_watch(v, c) < 0)
		conn_free(v, c);
}

static void listener_ready(struct virtio_vsock *v)
{
	/* Bounded: the listener is level-triggered and comes back. */
	for (unsigned i = 0; i < EVENTS_BATCH; i++) {
		int fd = accept4(v->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct vsock_conn *c;

		if (fd < 0)
			return;
		c = conn_new(v, fd);
		if (!c) {
			close(fd);  /* table full: the client sees EOF */
			continue;
		}
		if (conn_watch(v, c) < 0) {
			conn_free(v, c);
			continue;
		}
		conn_host_line(v, c);
	}
}

/* ---- packets to the guest (rx queue) ---- */

static void hdr_init(struct virtio_vsock *v, struct virtio_vsock_hdr *h, uint32_t src_port,
                     uint32_t dst_port, uint16_t op)
{
	*h = (struct virtio_vsock_hdr){
		.src_cid = htole64(VIRTIO_VSOCK_HOST_CID), .dst_cid = htole64(v->cid),
		.src_port = htole32(src_port), .dst_port = htole32(dst_port),
		.type = htole16(VIRTIO_VSOCK_TYPE_STREAM), .op = htole16(op),
	};
}

/* Fills in our credit: every packet of a connection carries it. */
static void hdr_credit(struct virtio_vsock_hdr *h, struct vsock_conn *c)
{
	h->buf_alloc = htole32(VIRTIO_VSOCK_BUF_ALLOC);
	h->fwd_cnt = htole32(c->fwd_cnt);
	c->last_fwd_sent = c->fwd_cnt;
}

static uint32_t put_hdr(struct virtq_chain *ch, const struct virtio_vsock_hdr *h)
{
	iov_from_buf(ch->iov + ch->n_out, ch->n_in, 0, h, sizeof(*h));
	return sizeof(*h);
}

static uint16_t take_control(struct vsock_conn *c, uint32_t *ret_flags)
{
	static const struct { unsigned bit; uint16_t op; } order[] = {
		{ PEND_REQUEST, VIRTIO_VSOCK_OP_REQUEST },
		{ PEND_RESPONSE, VIRTIO_VSOCK_OP_RESPONSE },
		{ PEND_CREDIT_UPDATE, VIRTIO_VSOCK_OP_CREDIT_UPDATE },
		{ PEND_CREDIT_REQUEST, VIRTIO_VSOCK_OP_CREDIT_REQUEST },
		{ PEND_SHUTDOWN, VIRTIO_VSOCK_OP_SHUTDOWN },
	};

	for (unsigned i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (c->pending & order[i].bit) {
			c->pending &= ~order[i].bit;
			*ret_flags = order[i].op == VIRTIO_VSOCK_OP_SHUTDOWN ?
			             VIRTIO_VSOCK_SHUTDOWN_SEND : 0;
			return order[i].op;
		}
	}
	return 0;
}

/* Reads host bytes straight into the guest buffer, within the guest's
 * credit.  Returns the packet size, 0 when there is nothing to send now,
 * or a negative errno when the host socket failed. */
static int conn_rx_data(struct virtio_vsock *v, struct vsock_conn *c, struct virtq_chain *ch)
{
	uint32_t room = ch->in_len - VIRTIO_VSOCK_HDR_SIZE, credit = peer_credit(c);
	struct virtio_vsock_hdr h;
	ssize_t n;
	int cnt;

	if (c->state != CONN_ESTABLISHED || !c->readable || c->host_eof ||
	    (c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_RCV))
		return 0;
	if (!credit) {
		/* Ask once per stall; the guest also updates as its reader drains. */
		if (!c->credit_asked)
			c->pending |= PEND_CREDIT_REQUEST;
		c->credit_asked = true;
		return 0;
	}
	c->credit_asked = false;
	room = room < credit ? room : credit;
	room = room < VIRTIO_VSOCK_MAX_PAYLOAD ? room : VIRTIO_VSOCK_MAX_PAYLOAD;
	cnt = iov_slice(ch->iov + ch->n_out, ch->n_in, VIRTIO_VSOCK_HDR_SIZE, room, v->iov, VIRTQ_MAX_SIZE);
	if (cnt < 0)
		return 0;
	do
		n = readv(c->fd, v->iov, cnt);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		c->readable = false;
		return 0;
	}
	if (n < 0)
		return -errno;
	if (n == 0) {
		c->host_eof = true;
		c->pending |= PEND_SHUTDOWN;
		return 0;
	}
	hdr_init(v, &h, c->host_port, c->guest_port, VIRTIO_VSOCK_OP_RW);
	h.len = htole32((uint32_t)n);
	hdr_credit(&h, c);
	c->tx_cnt += (uint32_t)n;
	v->stats.rx_bytes += (uint64_t)n;
	return (int)(put_hdr(ch, &h) + (uint32_t)n);
}

/* One packet of connection c into ch; 0 when c has nothing to send. */
static int conn_rx(struct virtio_vsock *v, struct vsock_conn *c, struct virtq_chain *ch)
{
	struct virtio_vsock_hdr h;
	uint32_t flags = 0;
	uint16_t op;
	int r;

	op = take_control(c, &flags);
	if (!op) {
		r = conn_rx_data(v, c, ch);
		/* EOF or a stall may have made a control packet due. */
		if (r == 0)
			op = take_control(c, &flags);
		if (!op)
			return r;
	}
	hdr_init(v, &h, c->host_port, c->guest_port, op);
	h.flags = htole32(flags);
	hdr_credit(&h, c);
	return (int)put_hdr(ch, &h);
}

static int rst_rx(struct virtio_vsock *v, struct virtq_chain *ch)
{
	struct rst_entry e = v->rst[v->rst_head];
	struct virtio_vsock_hdr h;

	v->rst_head = (v->rst_head + 1) % RST_QUEUE_MAX;
	v->rst_len--;
	hdr_init(v, &h, e.src_port, e.dst_port, VIRTIO_VSOCK_OP_RST);
	return (int)put_hdr(ch, &h);
}

/* The next packet for the guest into ch, RSTs first, then connections in
 * turn so one busy stream cannot starve the others.  0 when none is due. */
static int rx_next(struct virtio_vsock *v, struct virtq_chain *ch)
{
	if (v->rst_len)
		return rst_rx(v, ch);
	for (unsigned i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		unsigned slot = (v->rr + i) % VIRTIO_VSOCK_MAX_CONNS;
		struct vsock_conn *c = v->conns[slot];
		int r;

		if (!c)
			continue;
		r = conn_rx(v, c, ch);
		if (r < 0 || conn_watch(v, c) < 0) {
			conn_reset(v, c);
			if (r > 0)
				return r;
			if (v->rst_len)
				return rst_rx(v, ch);
			continue;
		}
		if (r > 0) {
			v->rr = slot + 1;
			return r;
		}
	}
	return 0;
}

/* Fills guest receive buffers while both buffers and packets remain.
 * Bounded per call; if work is left over, the kick eventfd keeps our epoll
 * fd readable so the VMM calls back instead of us looping on the guest's
 * behalf. */
static void vsock_rx(struct virtio_vsock *v)
{
	struct virtq *q = &v->vd.vq[VIRTIO_VSOCK_RXQ];
	unsigned n = 0, budget = 2u * q->size;
	bool used = false;
	int r = 0;

	for (; n < budget && virtio_dev_pop(&v->vd, VIRTIO_VSOCK_RXQ, &v->chain) > 0; n++) {
		if (v->chain.in_len < VIRTIO_VSOCK_HDR_SIZE) {
			/* No room for a header: hand it back empty. */
			virtio_dev_push(&v->vd, VIRTIO_VSOCK_RXQ, v->chain.head, 0);
			used = true;
			continue;
		}
		r = rx_next(v, &v->chain);
		if (r <= 0) {
			virtq_unpop(q);
			break;
		}
		virtio_dev_push(&v->vd, VIRTIO_VSOCK_RXQ, v->chain.head, (uint32_t)r);
		v->stats.rx_pkts++;
		used = true;
	}
	if (n == budget && budget) {
		uint64_t one = 1;

		/* Fails only when the counter is already non-zero: still readable. */
		if (write(v->kick_fd, &one, sizeof(one)) < 0)
			errno = 0;
	}
	if (used)
		virtio_dev_signal(&v->vd, VIRTIO_VSOCK_RXQ);
}

/* ---- packets from the guest (tx queue) ---- */

static void hdr_decode(struct virtio_vsock_hdr *h)
{
	h->src_cid = le64toh(h->src_cid);
	h->dst_cid = le64toh(h->dst_cid);
	h->src_port = le32toh(h->src_port);
	h->dst_port = le32toh(h->dst_port);
	h->len = le32toh(h->len);
	h->type = le16toh(h->type);
	h->op = le16toh(h->op);
	h->flags = le32toh(h->flags);
	h->buf_alloc = le32toh(h->buf_alloc);
	h->fwd_cnt = le32toh(h->fwd_cnt);
}

/* Header checks that do not depend on a connection; payload is the number
 * of bytes the descriptors hold after the header. */
static bool hdr_valid(const struct virtio_vsock *v, const struct virtio_vsock_hdr *h, uint32_t payload)
{
	if (h->type != VIRTIO_VSOCK_TYPE_STREAM)
		return false;
	if (h->src_cid != v->cid || h->dst_cid != VIRTIO_VSOCK_HOST_CID)
		return false;
	if (h->op < VIRTIO_VSOCK_OP_REQUEST || h->op > VIRTIO_VSOCK_OP_CREDIT_REQUEST)
		return false;
	if (h->len > payload || h->len > VIRTIO_VSOCK_MAX_PAYLOAD)
		return false;
	return h->op == VIRTIO_VSOCK_OP_RW || h->len == 0;
}

static int guest_connect(struct virtio_vsock *v, uint32_t port)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, n;

	if (!v->dial)
		return -ENOENT;
	n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s_%u", v->dial, port);
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A Unix stream connect completes or fails at once (EAGAIN when the
	 * listener's backlog is full, which we treat as refused). */
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int r = -errno;

		close(fd);
		return r;
	}
	return fd;
}

static void tx_request(struct virtio_vsock *v, const struct virtio_vsock_hdr *h)
{
	struct vsock_conn *c;
	int fd = guest_connect(v, h->dst_port);

	if (fd < 0) {
		rst_queue(v, h->dst_port, h->src_port);
		return;
	}
	c = conn_new(v, fd);
	if (!c) {
		close(fd);
		rst_queue(v, h->dst_port, h->src_port);
		return;
	}
	c->state = CONN_ESTABLISHED;
	c->guest_port = h->src_port;
	c->host_port = h->dst_port;
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	c->pending |= PEND_RESPONSE;
	if (conn_watch(v, c) < 0)
		conn_reset(v, c);
}

static int tx_response(struct vsock_conn *c)
{
	char ok[LINE_MAX_LEN];
	int n = snprintf(ok, sizeof(ok), "OK %u\n", c->host_port);
	struct iovec iov = { ok, (size_t)n };
	ssize_t w;

	if (c->state != CONN_REQUEST_SENT)
		return -EPROTO;
	c->state = CONN_ESTABLISHED;
	w = host_send(c, &iov, 1, (uint32_t)n);
	if (w < 0)
		return (int)w;
	c->octl = (uint32_t)n - (uint32_t)w;
	return 0;
}

/* Guest stream bytes to the host; the guest must stay within our credit. */
static int tx_rw(struct vsock_conn *c, const struct virtq_chain *ch, uint32_t len, struct iovec *tmp)
{
	uint32_t unforwarded = c->rx_cnt - c->fwd_cnt;
	ssize_t w;
	int cnt;

	if (c->state != CONN_ESTABLISHED || (c->peer_shut & VIRTIO_VSOCK_SHUTDOWN_SEND))
		return -EPROTO;
	if (len > VIRTIO_VSOCK_BUF_ALLOC - unforwarded)
		return -ENOBUFS;
	if (!len)
		return 0;
	cnt = iov_slice(ch->iov, ch->n_out, VIRTIO_VSOCK_HDR_SIZE, len, tmp, VIRTQ_MAX_SIZE);
	if (cnt < 0)
		return -EINVAL;
	c->rx_cnt += len;
	w = host_send(c, tmp, (unsigned)cnt, len);
	if (w < 0)
		return (int)w;
	conn_forwarded(c, (uint32_t)w);
	return 0;
}

static int tx_shutdown(struct vsock_conn *c, uint32_t flags)
{
	if (c->state != CONN_ESTABLISHED)
		return -EPROTO;
	c->peer_shut |= flags & (VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV);
	return 0;
}

/* Applies one valid packet to connection c (<0: reset it). */
static int tx_conn(struct virtio_vsock *v, struct vsock_conn *c, const struct virtio_vsock_hdr *h)
{
	/* Every packet of a connection carries the guest's current credit. */
	c->peer_buf_alloc = h->buf_alloc;
	c->peer_fwd_cnt = h->fwd_cnt;
	switch (h->op) {
	case VIRTIO_VSOCK_OP_RESPONSE:
		return tx_response(c);
	case VIRTIO_VSOCK_OP_RW:
		v->stats.tx_bytes += h->len;
		return tx_rw(c, &v->chain, h->len, v->iov);
	case VIRTIO_VSOCK_OP_SHUTDOWN:
		return tx_shutdown(c, h->flags);
	case VIRTIO_VSOCK_OP_CREDIT_REQUEST:
		c->pending |= PEND_CREDIT_UPDATE;
		return 0;
	case VIRTIO_VSOCK_OP_CREDIT_UPDATE:
		return 0;
	default:  /* REQUEST on an existing connection */
		return -EPROTO;
	}
}

static void tx_one(struct virtio_vsock *v, const struct virtq_chain *ch)
{
	struct virtio_vsock_hdr h;
	struct vsock_conn *c;

	if (ch->out_len < VIRTIO_VSOCK_HDR_SIZE) {
		v->stats.bad_pkts++;  /* no addresses to answer to */
		return;
	}
	iov_to_buf(ch->iov, ch->n_out, 0, &h, sizeof(h));
	hdr_decode(&h);
	c = conn_find(v, h.src_port, h.dst_port);
	if (!hdr_valid(v, &h, ch->out_len - VIRTIO_VSOCK_HDR_SIZE)) {
		v->stats.bad_pkts++;
		if (c)
			conn_free(v, c);
		/* Never answer an RST with an RST. */
		if (h.op != VIRTIO_VSOCK_OP_RST)
			rst_queue(v, h.dst_port, h.src_port);
		return;
	}
	if (h.op == VIRTIO_VSOCK_OP_RST) {
		if (c)
			conn_free(v, c);
		return;
	}
	if (!c && h.op == VIRTIO_VSOCK_OP_REQUEST) {
		tx_request(v, &h);
		return;
	}
	if (!c || tx_conn(v, c, &h) < 0) {
		if (c)
			conn_free(v, c);
		rst_queue(v, h.dst_port, h.src_port);
		return;
	}
	conn_settle(v, c);
}

static void vsock_tx(struct virtio_vsock *v)
{
	unsigned done = 0;

	while (done < v->vd.vq[VIRTIO_VSOCK_TXQ].size &&
	       virtio_dev_pop(&v->vd, VIRTIO_VSOCK_TXQ, &v->chain) > 0) {
		tx_one(v, &v->chain);
		v->stats.tx_pkts++;
		virtio_dev_push(&v->vd, VIRTIO_VSOCK_TXQ, v->chain.head, 0);
		done++;
	}
	if (done)
		virtio_dev_signal(&v->vd, VIRTIO_VSOCK_TXQ);
}

/* ---- event loop ---- */

static void conn_event(struct virtio_vsock *v, struct vsock_conn *c, uint32_t events)
{
	if (c->state == CONN_HOST_LINE) {
		conn_host_line(v, c);
		return;
	}
	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		c->readable = true;
	if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && c->olen && obuf_flush(c) < 0) {
		conn_reset(v, c);
		return;
	}
	conn_settle(v, c);
}

static void dispatch(struct virtio_vsock *v, const struct epoll_event *ev)
{
	uint64_t tag = ev->data.u64, drain;
	struct vsock_conn *c;

	if (tag == TAG_LISTEN) {
		listener_ready(v);
		return;
	}
	if (tag == TAG_KICK) {
		if (read(v->kick_fd, &drain, sizeof(drain)) < 0)
			drain = 0;
		return;
	}
	/* An earlier event of this batch may have freed the connection; the
	 * generation tells a reused slot from the one the event was for. */
	c = v->conns[tag & 0xff & (VIRTIO_VSOCK_MAX_CONNS - 1)];
	if (c && (tag & 0xff) == c->slot && (uint32_t)(tag >> 8) == c->gen)
		conn_event(v, c, ev->events);
}

void virtio_vsock_ready(struct virtio_vsock *v)
{
	struct epoll_event ev[EVENTS_BATCH];
	int n;

	do
		n = epoll_wait(v->epfd, ev, EVENTS_BATCH, 0);
	while (n < 0 && errno == EINTR);
	for (int i = 0; i < n; i++)
		dispatch(v, &ev[i]);
	vsock_rx(v);
}

/* ---- virtio ops ---- */

static void vsock_config_read(struct virtio_dev *vd, uint32_t off, void *buf, uint32_t len)
{
	memcpy(buf, (const uint8_t *)&to_vsock(vd)->config_cid + off, len);
}

static void vsock_queue_notify(struct virtio_dev *vd, uint16_t q)
{
	struct virtio_vsock *v = to_vsock(vd);

	if (q == VIRTIO_VSOCK_TXQ)
		vsock_tx(v);
	/* New receive buffers, or replies the packets above made due. */
	if (q != VIRTIO_VSOCK_EVQ)
		vsock_rx(v);
}

static void vsock_activate(struct virtio_dev *vd)
{
	vsock_rx(to_vsock(vd));
}

/* Drops the connections the guest knows of (all of them with `all`); a host
 * client whose REQUEST was not delivered yet waits for the new driver. */
static void conns_drop(struct virtio_vsock *v, bool all)
{
	for (unsigned i = 0; i < VIRTIO_VSOCK_MAX_CONNS; i++) {
		struct vsock_conn *c = v->conns[i];

		if (c && (all || !(c->state == CONN_HOST_LINE || (c->pending & PEND_REQUEST))))
			conn_free(v, c);
	}
}

/* The driver forgot every connection: so do we (hosts see EOF). */
static void vsock_reset(struct virtio_dev *vd)
{
	struct virtio_vsock *v = to_vsock(vd);

	conns_drop(v, false);
	v->rst_len = 0;
}

static const struct virtio_dev_ops vsock_ops = {
	.device_id = VIRTIO_ID_VSOCK,
	.num_queues = 3,
	.config_size = sizeof(uint64_t),
	.config_read = vsock_config_read,
	.queue_notify = vsock_queue_notify,
	.activate = vsock_activate,
	.reset = vsock_reset,
};

/* ---- creation ---- */

/* Binds uds_path; a socket file left by a dead VMM (connect refused) is
 * replaced, a live one is not. */
static int listen_uds(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	if (r < 0 && errno == EADDRINUSE) {
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		struct stat st;

		if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) < 0 &&
		    errno == ECONNREFUSED && lstat(path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(path);
		if (probe >= 0)
			close(probe);
		r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	}
	if (r < 0 || listen(fd, 32) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

static int epoll_tag(int epfd, int fd, uint64_t tag)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = tag };

	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

static int vsock_open_fds(struct virtio_vsock *v)
{
	int r;

	v->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (v->epfd < 0)
		return -errno;
	v->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (v->kick_fd < 0)
		return -errno;
	r = listen_uds(v->uds_path, &v->listen_fd);
	if (r < 0)
		return r;
	r = epoll_tag(v->epfd, v->listen_fd, TAG_LISTEN);
	if (r < 0)
		return r;
	return epoll_tag(v->epfd, v->kick_fd, TAG_KICK);
}

static void vsock_close_fds(struct virtio_vsock *v)
{
	if (v->listen_fd >= 0) {
		close(v->listen_fd);
		unlink(v->uds_path);
	}
	if (v->kick_fd >= 0)
		close(v->kick_fd);
	if (v->epfd >= 0)
		close(v->epfd);
}

int virtio_vsock_create(uint64_t guest_cid, const char *uds_path, const struct guest_mem *m,
                        struct virtio_vsock **ret)
{
	struct virtio_vsock *v;
	int r;

	/* 0-2 are reserved (hypervisor, local, host); 0xffffffff is CID_ANY. */
	if (guest_cid <= VIRTIO_VSOCK_HOST_CID || guest_cid >= UINT32_MAX || !uds_path)
		return -EINVAL;
	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->epfd = v->kick_fd = v->listen_fd = -1;
	v->uds_path = strdup(uds_path);
	if (!v->uds_path) {
		r = -ENOMEM;
		goto fail;
	}
	v->dial = v->uds_path;
	r = vsock_open_fds(v);
	if (r < 0)
		goto fail;
	v->cid = (uint32_t)guest_cid;
	v->config_cid = htole64(guest_cid);
	v->next_port = VIRTIO_VSOCK_HOST_PORT_BASE;
	v->vd.ops = &vsock_ops;
	v->vd.mem = m;
	v->vd.device_features = 1ULL << VIRTIO_VSOCK_F_STREAM;
	*ret = v;
	return 0;
fail:
	vsock_close_fds(v);
	free(v->uds_path);
	free(v);
	return r;
}

void virtio_vsock_destroy(struct virtio_vsock *v)
{
	if (!v)
		return;
	conns_drop(v, true);
	vsock_close_fds(v);
	free(v->uds_path);
	free(v);
}

struct virtio_dev *virtio_vsock_dev(struct virtio_vsock *v) { return &v->vd; }
int virtio_vsock_fd(const struct virtio_vsock *v) { return v->epfd; }
const struct virtio_vsock_stats *virtio_vsock_stats(const struct virtio_vsock *v) { return &v->stats; }
unsigned virtio_vsock_conn_count(const struct virtio_vsock *v) { return v->nconns; }

void virtio_vsock_rebase(struct virtio_vsock *v, const char *dir)
{
	size_t n = strlen(dir);

	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (!strncmp(v->uds_path, dir, n) && v->uds_path[n] == '/' && v->uds_path[n + 1])
		v->dial = v->uds_path + n + 1;
	else
		v->dial = NULL;
}
