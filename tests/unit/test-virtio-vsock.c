/* SPDX-License-Identifier: MIT */
/* virtio-vsock driven by the fake driver, with real Unix sockets in a
 * temporary directory standing for the host side. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "test-virtio-driver.h"
#include "vmm/devices/virtio/vsock.h"

#define CID      3
#define QSIZE    64
#define RX_GPA   DRV_DATA_BASE                /* RX_SLOTS buffers of RX_BUF */
#define RX_BUF   (VIRTIO_VSOCK_HDR_SIZE + 4096)
#define RX_SLOTS 32
#define TX_GPA   (DRV_DATA_BASE + 0x100000)   /* header, then payload */
#define WANT     ((1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_VSOCK_F_STREAM))

struct t {
	struct drv d;
	struct virtio_vsock *v;
	char dir[64], uds[128];
	uint64_t head_gpa[QSIZE];
	unsigned rx_next_slot;
	uint32_t guest_fwd;     /* guest's fwd_cnt, sent in its headers */
};

/* A packet the device put in the rx queue. */
struct pkt {
	struct virtio_vsock_hdr h;
	uint8_t data[4096];
	uint32_t used_len;
};

static void t_open(struct t *t)
{
	memset(t, 0, sizeof(*t));
	snprintf(t->dir, sizeof(t->dir), "/tmp/mvm-vsock-XXXXXX");
	if (!mkdtemp(t->dir)) {
		perror("mkdtemp");
		exit(1);
	}
	snprintf(t->uds, sizeof(t->uds), "%s/v.sock", t->dir);
	drv_open(&t->d);
	CHECK_EQ(virtio_vsock_create(CID, t->uds, &t->d.mem, &t->v), 0);
	drv_attach(&t->d, virtio_vsock_dev(t->v));
	CHECK_EQ(drv_init(&t->d, WANT, 3, QSIZE), WANT);
}

static void t_close(struct t *t)
{
	virtio_vsock_destroy(t->v);
	drv_close(&t->d);
	CHECK(access(t->uds, F_OK) < 0);  /* destroy removed the socket */
	rmdir(t->dir);
}

static void post_rx(struct t *t, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		uint64_t gpa = RX_GPA + (uint64_t)(t->rx_next_slot++ % RX_SLOTS) * RX_BUF;
		uint16_t head = drv_post(&t->d, VIRTIO_VSOCK_RXQ,
		                         &(struct drv_seg){ gpa, RX_BUF, true }, 1);

		t->head_gpa[head] = gpa;
	}
	drv_kick(&t->d, VIRTIO_VSOCK_RXQ);
}

static bool get_rx(struct t *t, struct pkt *p)
{
	uint32_t id, len;
	uint8_t *buf;

	if (!drv_used(&t->d, VIRTIO_VSOCK_RXQ, &id, &len))
		return false;
	CHECK(id < QSIZE && len >= VIRTIO_VSOCK_HDR_SIZE && len <= RX_BUF);
	if (id >= QSIZE || len < VIRTIO_VSOCK_HDR_SIZE || len > RX_BUF)
		return false;
	buf = drv_ptr(&t->d, t->head_gpa[id]);
	memcpy(&p->h, buf, sizeof(p->h));
	memcpy(p->data, buf + VIRTIO_VSOCK_HDR_SIZE, len - VIRTIO_VSOCK_HDR_SIZE);
	p->used_len = len;
	CHECK_EQ(p->h.src_cid, VIRTIO_VSOCK_HOST_CID);
	CHECK_EQ(p->h.dst_cid, CID);
	CHECK_EQ(p->h.type, VIRTIO_VSOCK_TYPE_STREAM);
	CHECK_EQ(p->h.len, len - VIRTIO_VSOCK_HDR_SIZE);
	return true;
}

static void pump(struct t *t)
{
	for (int i = 0; i < 8; i++)
		virtio_vsock_ready(t->v);
}

static struct virtio_vsock_hdr mkhdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t len)
{
	return (struct virtio_vsock_hdr){
		.src_cid = CID, .dst_cid = VIRTIO_VSOCK_HOST_CID,
		.src_port = src_port, .dst_port = dst_port, .len = len,
		.type = VIRTIO_VSOCK_TYPE_STREAM, .op = op, .buf_alloc = 1 << 20,
	};
}

/* Sends header + payload (payload_room bytes of descriptor) on the tx
 * queue, header and payload in separate descriptors. */
static void tx_raw(struct t *t, const struct virtio_vsock_hdr *h, const void *data, uint32_t room)
{
	uint32_t id = 0, len = 0;

	memcpy(drv_ptr(&t->d, TX_GPA), h, sizeof(*h));
	if (room) {
		memcpy(drv_ptr(&t->d, TX_GPA + 0x1000), data, room);
		drv_post(&t->d, VIRTIO_VSOCK_TXQ, (struct drv_seg[]){
			{ TX_GPA, VIRTIO_VSOCK_HDR_SIZE, false }, { TX_GPA + 0x1000, room, false } }, 2);
	} else {
		drv_post(&t->d, VIRTIO_VSOCK_TXQ, &(struct drv_seg){ TX_GPA, VIRTIO_VSOCK_HDR_SIZE, false }, 1);
	}
	drv_kick(&t->d, VIRTIO_VSOCK_TXQ);
	CHECK(drv_used(&t->d, VIRTIO_VSOCK_TXQ, &id, &len));
}

static void tx(struct t *t, uint16_t op, uint32_t src, uint32_t dst, const void *data, uint32_t n)
{
	struct virtio_vsock_hdr h = mkhdr(op, src, dst, n);

	h.fwd_cnt = t->guest_fwd;
	if (op == VIRTIO_VSOCK_OP_SHUTDOWN)
		h.flags = n, h.len = 0, n = 0;
	tx_raw(t, &h, data, n);
}

static int uds_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		perror("connect");
		exit(1);
	}
	return fd;
}

static int uds_listen(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 4) < 0) {
		perror("listen");
		exit(1);
	}
	return fd;
}

/* Reads exactly n bytes the device sent to a host socket (it has already
 * written them, or never will: no waiting beyond a short poll). */
static bool host_read(int fd, void *buf, size_t n)
{
	size_t got = 0;

	while (got < n) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t r;

		if (poll(&p, 1, 200) <= 0)
			return false;
		r = recv(fd, (uint8_t *)buf + got, n - got, 0);
		if (r <= 0)
			return false;
		got += (size_t)r;
	}
	return true;
}

static bool host_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	return poll(&p, 1, 200) == 1 && recv(fd, &c, 1, MSG_DONTWAIT) == 0;
}

static bool host_quiet(int fd)
{
	char c;

	return recv(fd, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN;
}

/* Expects one RST from the device for guest port gport / host port hport. */
static void expect_rst(struct t *t, uint32_t hport, uint32_t gport)
{
	struct pkt p;

	CHECK(get_rx(t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_RST);
	CHECK_EQ(p.h.src_port, hport);
	CHECK_EQ(p.h.dst_port, gport);
}

static void test_config(struct t *t)
{
	uint64_t cid = 0;

	CHECK_EQ(drv_rd(&t->d, VIRTIO_MMIO_DEVICE_ID), VIRTIO_ID_VSOCK);
	CHECK_EQ(virtio_mmio_read(&t->d.t, VIRTIO_MMIO_CONFIG, &cid, 4), 0);
	CHECK_EQ(virtio_mmio_read(&t->d.t, VIRTIO_MMIO_CONFIG + 4, (uint8_t *)&cid + 4, 4), 0);
	CHECK_EQ(cid, CID);
}

/* "CONNECT 1234\n" -> REQUEST -> RESPONSE -> "OK <port>\n", data both ways
 * (including bytes the host sent right behind the CONNECT line), then a
 * half-close from the host and a full close from the guest. */
static void test_host_initiated(void)
{
	static const char line[] = "CONNECT 1234\nearly";
	char buf[64], ok[32];
	struct pkt p;
	uint32_t hport;
	struct t t;
	int fd;

	t_open(&t);
	test_config(&t);
	fd = uds_connect(t.uds);
	CHECK_EQ(write(fd, line, sizeof(line) - 1), (ssize_t)sizeof(line) - 1);
	pump(&t);
	CHECK(!get_rx(&t, &p));  /* no receive buffers yet */
	post_rx(&t, 8);
	CHECK(get_rx(&t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_REQUEST);
	CHECK_EQ(p.h.dst_port, 1234);
	CHECK(p.h.src_port >= VIRTIO_VSOCK_HOST_PORT_BASE);
	CHECK_EQ(p.h.buf_alloc, VIRTIO_VSOCK_BUF_ALLOC);
	hport = p.h.src_port;
	CHECK(!get_rx(&t, &p));
	CHECK(host_quiet(fd));  /* nothing for the host before RESPONSE */

	tx(&t, VIRTIO_VSOCK_OP_RESPONSE, 1234, hport, NULL, 0);
	snprintf(ok, sizeof(ok), "OK %u\n", hport);
	CHECK(host_read(fd, buf, strlen(ok)));
	CHECK(memcmp(buf, ok, strlen(ok)) == 0);
	pump(&t);
	CHECK(get_rx(&t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_RW);
	CHECK_EQ(p.h.len, 5);
	CHECK(memcmp(p.data, "early", 5) == 0);

	tx(&t, VIRTIO_VSOCK_OP_RW, 1234, hport, "hello host", 10);
	CHECK(host_read(fd, buf, 10));
	CHECK(memcmp(buf, "hello host", 10) == 0);
	CHECK_EQ(write(fd, "hello guest", 11), 11);
	pump(&t);
	CHECK(get_rx(&t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_RW);
	CHECK_EQ(p.h.src_port, hport);
	CHECK_EQ(p.h.dst_port, 1234);
	CHECK(p.h.len == 11 && memcmp(p.data, "hello guest", 11) == 0);
	CHECK(!get_rx(&t, &p));

	/* Host half-closes: the guest gets SHUTDOWN(SEND) and can still reply. */
	shutdown(fd, SHUT_WR);
	pump(&t);
	CHECK(get_rx(&t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_SHUTDOWN);
	CHECK_EQ(p.h.flags, VIRTIO_VSOCK_SHUTDOWN_SEND);
	tx(&t, VIRTIO_VSOCK_OP_RW, 1234, hport, "bye", 3);
	CHECK(host_read(fd, buf, 3));
	CHECK(memcmp(buf, "bye", 3) == 0);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 1);
	tx(&t, VIRTIO_VSOCK_OP_SHUTDOWN, 1234, hport, NULL,
	   VIRTIO_VSOCK_SHUTDOWN_SEND | VIRTIO_VSOCK_SHUTDOWN_RCV);
	expect_rst(&t, hport, 1234);
	CHECK(host_eof(fd));
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	close(fd);

	/* A client that sends garbage is dropped without bothering the guest. */
	fd = uds_connect(t.uds);
	CHECK_EQ(write(fd, "HELLO 1\n", 8), 8);
	pump(&t);
	CHECK(host_eof(fd));
	CHECK(!get_rx(&t, &p));
	close(fd);
	fd = uds_connect(t.uds);
	CHECK_EQ(write(fd, "CONNECT 99999999999\n", 20), 20);
	pump(&t);
	CHECK(host_eof(fd));
	close(fd);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	CHECK_EQ(drv_rd(&t.d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	t_close(&t);
}

/* The guest connects to <uds>_5000 (listening) and to <uds>_5001 (absent). */
static void test_guest_initiated(void)
{
	char path[160], buf[64];
	struct pkt p;
	int lfd, sfd;
	struct t t;

	t_open(&t);
	snprintf(path, sizeof(path), "%s_5000", t.uds);
	lfd = uds_listen(path);
	post_rx(&t, 8);
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 777, 5000, NULL, 0);
	CHECK(get_rx(&t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_RESPONSE);
	CHECK_EQ(p.h.src_port, 5000);
	CHECK_EQ(p.h.dst_port, 777);
	sfd = accept(lfd, NULL, NULL);
	CHECK(sfd >= 0);

	tx(&t, VIRTIO_VSOCK_OP_RW, 777, 5000, "ping", 4);
	CHECK(host_read(sfd, buf, 4));
	CHECK(memcmp(buf, "ping", 4) == 0);
	CHECK_EQ(write(sfd, "pong", 4), 4);
	pump(&t);
	CHECK(get_rx(&t, &p));
	CHECK(p.h.op == VIRTIO_VSOCK_OP_RW && p.h.len == 4 && memcmp(p.data, "pong", 4) == 0);

	/* A second connection from another guest port is separate. */
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 778, 5000, NULL, 0);
	CHECK(get_rx(&t, &p));
	CHECK(p.h.op == VIRTIO_VSOCK_OP_RESPONSE && p.h.dst_port == 778);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 2);
	/* A REQUEST for a connection that exists is a protocol error. */
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 778, 5000, NULL, 0);
	expect_rst(&t, 5000, 778);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 1);

	/* Guest RST: the host sees EOF, and no RST comes back. */
	tx(&t, VIRTIO_VSOCK_OP_RST, 777, 5000, NULL, 0);
	CHECK(host_eof(sfd));
	CHECK(!get_rx(&t, &p));
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	close(sfd);
	sfd = accept(lfd, NULL, NULL);  /* the one of port 778 */
	CHECK(host_eof(sfd));
	close(sfd);

	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 779, 5001, NULL, 0);
	expect_rst(&t, 5001, 779);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	close(lfd);
	unlink(path);
	t_close(&t);
}

/* Rebased onto its directory (the sandbox's root and cwd), the device
 * dials <name>_PORT relative to its cwd; a socket outside that root is
 * never dialled.  A chdir stands in for the chroot. */
static void test_rebase(void)
{
	char path[160], cwd[PATH_MAX], other[64];
	struct pkt p;
	int lfd, sfd;
	struct t t;

	CHECK(getcwd(cwd, sizeof(cwd)) != NULL);
	t_open(&t);
	snprintf(path, sizeof(path), "%s_5000", t.uds);
	lfd = uds_listen(path);
	post_rx(&t, 8);
	virtio_vsock_rebase(t.v, t.dir);
	CHECK_EQ(chdir("/"), 0);                /* "v.sock_5000" is not here */
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 777, 5000, NULL, 0);
	expect_rst(&t, 5000, 777);
	CHECK_EQ(chdir(t.dir), 0);              /* the root the device was told */
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 778, 5000, NULL, 0);
	CHECK(get_rx(&t, &p));
	CHECK(p.h.op == VIRTIO_VSOCK_OP_RESPONSE && p.h.dst_port == 778);
	sfd = accept(lfd, NULL, NULL);
	CHECK(sfd >= 0);
	close(sfd);
	/* A root the socket is not in: nothing to dial, even from its cwd;
	 * nor is a mere prefix of its directory's name a root above it. */
	snprintf(other, sizeof(other), "%.*s", (int)strlen(t.dir) - 1, t.dir);
	virtio_vsock_rebase(t.v, other);
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 779, 5000, NULL, 0);
	expect_rst(&t, 5000, 779);
	virtio_vsock_rebase(t.v, "/nonexistent");
	tx(&t, VIRTIO_VSOCK_OP_REQUEST, 780, 5000, NULL, 0);
	expect_rst(&t, 5000, 780);
	CHECK_EQ(chdir(cwd), 0);
	close(lfd);
	unlink(path);
	t_close(&t);
}

/* Each malformed packet gets exactly one RST (none for an RST or a
 * header-less packet); the device keeps running.  A malformed descriptor
 * chain, finally, is the queue layer's business: NEEDS_RESET. */
static void test_malformed(void)
{
	static const uint8_t junk[64] = { 1, 2, 3 };
	struct virtio_vsock_hdr h;
	struct pkt p;
	uint32_t id = 0, len = 1;
	struct t t;

	t_open(&t);
	post_rx(&t, 16);
	h = mkhdr(VIRTIO_VSOCK_OP_RW, 40, 41, 100);       /* len beyond the descriptor */
	tx_raw(&t, &h, junk, 10);
	expect_rst(&t, 41, 40);
	h = mkhdr(VIRTIO_VSOCK_OP_RW, 40, 41, 0x7fffffff);
	tx_raw(&t, &h, junk, 64);
	expect_rst(&t, 41, 40);
	h = mkhdr(VIRTIO_VSOCK_OP_REQUEST, 42, 43, 0);
	h.src_cid = CID + 1;                              /* spoofed source */
	tx_raw(&t, &h, NULL, 0);
	expect_rst(&t, 43, 42);
	h = mkhdr(VIRTIO_VSOCK_OP_REQUEST, 44, 45, 0);
	h.dst_cid = 7;                                    /* not the host */
	tx_raw(&t, &h, NULL, 0);
	expect_rst(&t, 45, 44);
	h = mkhdr(99, 46, 47, 0);                         /* unknown op */
	tx_raw(&t, &h, NULL, 0);
	expect_rst(&t, 47, 46);
	h = mkhdr(VIRTIO_VSOCK_OP_REQUEST, 48, 49, 0);
	h.type = 2;                                       /* SEQPACKET: not offered */
	tx_raw(&t, &h, NULL, 0);
	expect_rst(&t, 49, 48);
	h = mkhdr(VIRTIO_VSOCK_OP_REQUEST, 50, 51, 8);    /* payload on a REQUEST */
	tx_raw(&t, &h, junk, 8);
	expect_rst(&t, 51, 50);
	tx(&t, VIRTIO_VSOCK_OP_RW, 52, 53, "x", 1);        /* no such connection */
	expect_rst(&t, 53, 52);
	tx(&t, VIRTIO_VSOCK_OP_CREDIT_UPDATE, 52, 53, NULL, 0);
	expect_rst(&t, 53, 52);
	h = mkhdr(99, 54, 55, 0);
	h.op = VIRTIO_VSOCK_OP_RST;                       /* RST: never answered */
	h.dst_cid = 9;
	tx_raw(&t, &h, NULL, 0);
	tx(&t, VIRTIO_VSOCK_OP_RST, 56, 57, NULL, 0);
	CHECK(!get_rx(&t, &p));

	/* Too short for a header: consumed, counted, not answered. */
	drv_post(&t.d, VIRTIO_VSOCK_TXQ, &(struct drv_seg){ TX_GPA, 20, false }, 1);
	drv_kick(&t.d, VIRTIO_VSOCK_TXQ);
	CHECK(drv_used(&t.d, VIRTIO_VSOCK_TXQ, &id, &len));
	CHECK(!get_rx(&t, &p));
	CHECK_EQ(virtio_vsock_stats(t.v)->bad_pkts, 9);
	CHECK_EQ(drv_rd(&t.d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	CHECK_EQ(t.d.errors, 0);

	/* A receive buffer too small for a header comes back empty, and the
	 * packet goes in the next one.  Use up the 7 buffers left first. */
	for (int i = 0; i < 7; i++) {
		tx(&t, VIRTIO_VSOCK_OP_RW, 60, 61, "x", 1);
		expect_rst(&t, 61, 60);
	}
	drv_post(&t.d, VIRTIO_VSOCK_RXQ, &(struct drv_seg){ RX_GPA, 8, true }, 1);
	post_rx(&t, 1);
	tx(&t, VIRTIO_VSOCK_OP_RW, 58, 59, "x", 1);
	CHECK(drv_used(&t.d, VIRTIO_VSOCK_RXQ, &id, &len));
	CHECK_EQ(len, 0);
	expect_rst(&t, 59, 58);

	/* A descriptor that loops onto itself. */
	drv_set_desc(&t.d, VIRTIO_VSOCK_TXQ, 5, TX_GPA, 64, VIRTQ_DESC_F_NEXT, 5);
	drv_publish(&t.d, VIRTIO_VSOCK_TXQ, 5);
	drv_kick(&t.d, VIRTIO_VSOCK_TXQ);
	CHECK(drv_rd(&t.d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET);
	CHECK_EQ(t.d.errors, 1);
	t_close(&t);
}

/* Sets up a guest-initiated connection guest port 900 <-> host 6000 whose
 * guest side advertises buf_alloc; returns the host end. */
static int connect_pair(struct t *t, int lfd, uint32_t buf_alloc)
{
	struct virtio_vsock_hdr h = mkhdr(VIRTIO_VSOCK_OP_REQUEST, 900, 6000, 0);
	struct pkt p;

	h.buf_alloc = buf_alloc;
	tx_raw(t, &h, NULL, 0);
	CHECK(get_rx(t, &p));
	CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_RESPONSE);
	return accept(lfd, NULL, NULL);
}

/* Host -> guest: never more than the guest's free credit. */
static void test_credit_to_guest(struct t *t, int lfd)
{
	uint8_t big[300];
	uint32_t got = 0;
	struct virtio_vsock_hdr h;
	struct pkt p;
	int sfd = connect_pair(t, lfd, 100);

	for (unsigned i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	CHECK_EQ(write(sfd, big, sizeof(big)), (ssize_t)sizeof(big));
	pump(t);
	while (get_rx(t, &p)) {
		if (p.h.op == VIRTIO_VSOCK_OP_RW) {
			CHECK(memcmp(p.data, big + got, p.h.len) == 0);
			got += p.h.len;
		} else {
			CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_CREDIT_REQUEST);
		}
	}
	CHECK_EQ(got, 100);
	/* The guest's reader consumed 60 bytes: 60 more may come. */
	h = mkhdr(VIRTIO_VSOCK_OP_CREDIT_UPDATE, 900, 6000, 0);
	h.buf_alloc = 100;
	h.fwd_cnt = 60;
	tx_raw(t, &h, NULL, 0);
	pump(t);
	while (get_rx(t, &p))
		if (p.h.op == VIRTIO_VSOCK_OP_RW) {
			CHECK(memcmp(p.data, big + got, p.h.len) == 0);
			got += p.h.len;
		}
	CHECK_EQ(got, 160);
	/* A bigger buffer lets the rest through. */
	h.buf_alloc = 4096;
	tx_raw(t, &h, NULL, 0);
	pump(t);
	while (get_rx(t, &p))
		if (p.h.op == VIRTIO_VSOCK_OP_RW)
			got += p.h.len;
	CHECK_EQ(got, 300);
	tx(t, VIRTIO_VSOCK_OP_RST, 900, 6000, NULL, 0);
	close(sfd);
}

/* Guest -> host: bytes the host does not read yet are kept up to the
 * advertised buf_alloc; a guest that sends beyond its credit is reset.
 * Every byte accepted before that reaches the host in order. */
static void test_credit_from_guest(struct t *t, int lfd)
{
	enum { CHUNK = 16384 };
	uint32_t sent = 0, fwd = 0, buf_alloc = VIRTIO_VSOCK_BUF_ALLOC, n;
	uint8_t *chunk = malloc(CHUNK), *rd = malloc(CHUNK);
	int sfd = connect_pair(t, lfd, 1 << 20);
	uint64_t seen = 0;
	unsigned unsolicited = 0;
	struct pkt p;
	bool reset = false;

	for (int i = 0; i < CHUNK; i++)
		chunk[i] = (uint8_t)(i * 7);
	/* Stay within credit until the host socket is full and the device's
	 * buffer has taken all it advertised; when the credit seems used up,
	 * ask for the exact count. */
	for (int k = 0; k < 4096 && !reset; k++) {
		bool asked = false;

		while (get_rx(t, &p)) {
			CHECK(p.h.op == VIRTIO_VSOCK_OP_CREDIT_UPDATE || p.h.op == VIRTIO_VSOCK_OP_RST);
			reset |= p.h.op == VIRTIO_VSOCK_OP_RST;
			unsolicited++;
			fwd = p.h.fwd_cnt;
			buf_alloc = p.h.buf_alloc;
		}
		n = buf_alloc - (sent - fwd);
		if (n == 0 && !asked) {
			tx(t, VIRTIO_VSOCK_OP_CREDIT_REQUEST, 900, 6000, NULL, 0);
			asked = true;
			CHECK(get_rx(t, &p));
			CHECK_EQ(p.h.op, VIRTIO_VSOCK_OP_CREDIT_UPDATE);
			fwd = p.h.fwd_cnt;
			n = buf_alloc - (sent - fwd);
		}
		if (n == 0)
			break;
		n = n < CHUNK ? n : CHUNK;
		tx(t, VIRTIO_VSOCK_OP_RW, 900, 6000, chunk, n);
		sent += n;
		pump(t);
	}
	CHECK(!reset);
	/* The host took far more than buf_alloc before it filled up, so the
	 * device must have updated the guest's credit on its own. */
	CHECK(unsolicited > 0);
	CHECK_EQ(sent - fwd, VIRTIO_VSOCK_BUF_ALLOC);
	CHECK_EQ(virtio_vsock_conn_count(t->v), 1);
	/* One byte beyond the credit. */
	tx(t, VIRTIO_VSOCK_OP_RW, 900, 6000, chunk, 1);
	expect_rst(t, 6000, 900);
	CHECK_EQ(virtio_vsock_conn_count(t->v), 0);
	/* The host got a prefix of what was credited, byte-exact, then EOF:
	 * buffered bytes die with the reset connection. */
	for (;;) {
		ssize_t r = recv(sfd, rd, CHUNK, 0);

		if (r <= 0)
			break;
		for (ssize_t i = 0; i < r; i++, seen++)
			if (rd[i] != (uint8_t)((seen % CHUNK) * 7)) {
				CHECK(!"host stream corrupted");
				r = 0;
				break;
			}
	}
	CHECK_EQ(seen, fwd);
	CHECK(fwd < sent);
	free(chunk);
	free(rd);
	close(sfd);
}

static void test_credit(void)
{
	char path[160];
	struct t t;
	int lfd;

	t_open(&t);
	snprintf(path, sizeof(path), "%s_6000", t.uds);
	lfd = uds_listen(path);
	post_rx(&t, 32);
	test_credit_to_guest(&t, lfd);
	post_rx(&t, 32);
	test_credit_from_guest(&t, lfd);
	CHECK_EQ(drv_rd(&t.d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_NEEDS_RESET, 0);
	close(lfd);
	unlink(path);
	t_close(&t);
}

/* A host client queued before the driver is up survives the driver's
 * probe-time reset; an established one does not. */
static void test_reset(void)
{
	struct pkt p;
	struct t t;
	int fd;

	t_open(&t);
	drv_wr(&t.d, VIRTIO_MMIO_STATUS, 0);
	fd = uds_connect(t.uds);
	CHECK_EQ(write(fd, "CONNECT 22\n", 11), 11);
	pump(&t);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 1);
	CHECK_EQ(drv_init(&t.d, WANT, 3, QSIZE), WANT);
	memset(t.head_gpa, 0, sizeof(t.head_gpa));
	post_rx(&t, 4);
	CHECK(get_rx(&t, &p));
	CHECK(p.h.op == VIRTIO_VSOCK_OP_REQUEST && p.h.dst_port == 22);
	drv_wr(&t.d, VIRTIO_MMIO_STATUS, 0);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	CHECK(host_eof(fd));
	close(fd);

	/* A full table turns further host clients away. */
	int fds[VIRTIO_VSOCK_MAX_CONNS + 1];
	for (int i = 0; i <= VIRTIO_VSOCK_MAX_CONNS; i++) {
		fds[i] = uds_connect(t.uds);
		pump(&t);
	}
	CHECK_EQ(virtio_vsock_conn_count(t.v), VIRTIO_VSOCK_MAX_CONNS);
	CHECK(host_eof(fds[VIRTIO_VSOCK_MAX_CONNS]));
	for (int i = 0; i <= VIRTIO_VSOCK_MAX_CONNS; i++)
		close(fds[i]);
	pump(&t);
	CHECK_EQ(virtio_vsock_conn_count(t.v), 0);
	t_close(&t);
}

static void test_create_args(void)
{
	struct virtio_vsock *v;
	struct guest_mem m = { 0 };
	char dir[] = "/tmp/mvm-vsock-XXXXXX", path[128];

	CHECK(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/a.sock", dir);
	CHECK_EQ(virtio_vsock_create(2, path, &m, &v), -EINVAL);
	CHECK_EQ(virtio_vsock_create(0xffffffffULL, path, &m, &v), -EINVAL);
	CHECK_EQ(virtio_vsock_create(1ULL << 40, path, &m, &v), -EINVAL);
	CHECK_EQ(virtio_vsock_create(3, NULL, &m, &v), -EINVAL);
	/* A stale socket file is replaced; a live one is not. */
	close(uds_listen(path));
	CHECK_EQ(virtio_vsock_create(3, path, &m, &v), 0);
	{
		struct virtio_vsock *v2 = NULL;

		CHECK_EQ(virtio_vsock_create(4, path, &m, &v2), -EADDRINUSE);
	}
	virtio_vsock_destroy(v);
	rmdir(dir);
}

int main(void)
{
	test_host_initiated();
	test_guest_initiated();
	test_rebase();
	test_malformed();
	test_credit();
	test_reset();
	test_create_args();
	return check_result("test-virtio-vsock");
}
