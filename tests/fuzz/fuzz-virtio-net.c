/* SPDX-License-Identifier: MIT */
/*
 * virtio-net behind the virtio-mmio transport, with a socketpair standing in
 * for the TAP fd (one datagram or record = one frame).  Input: a 40-byte
 * header, then the first bytes of a 64 KiB guest RAM:
 *
 *   0  le16 rx queue size        2  le16 tx queue size
 *   4  u8 flags: bit 0 SOCK_SEQPACKET (else SOCK_DGRAM); bit 1 the driver
 *      recycles used buffers into the avail ring every round; bit 2 the host
 *      sends frames before DRIVER_OK; bit 3 TX is not drained until the end
 *      (the backend fills up); bit 4 reset and set up again after round 1,
 *      and reset at the end; bit 5 notify by a QueueNotify MMIO write (a vCPU
 *      exit) instead of the ioeventfd path; bit 6 the driver does not accept
 *      VIRTIO_F_VERSION_1; bit 7 read the config space
 *   5  u8 rounds (low 3 bits)    6  u8 frames per round (low 2 bits)
 *   7  u8 extra queue index notified every round (mostly out of range)
 *   8  le16 lengths of the 4 host->guest frames
 *  16  le32 rx desc, avail, used; le32 tx desc, avail, used guest addresses
 *
 * Each round the host writes frames (their bytes come from the input) into
 * its end and the event loop's readable callback runs; the driver kicks TX
 * and RX; the host drains what the guest sent.  At the end the frames the
 * host received must match the device's TX counters.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/net.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE   0x10000
#define HDR_SIZE   40
#define NFRAMES    4

#define F_SEQPACKET   0x01
#define F_RECYCLE     0x02
#define F_EARLY_RX    0x04
#define F_NO_DRAIN    0x08
#define F_RESET       0x10
#define F_MMIO_NOTIFY 0x20
#define F_LEGACY      0x40
#define F_CONFIG      0x80

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz {
	struct virtio_mmio t;
	struct virtio_net *n;
	uint8_t *ram;
	const uint8_t *hdr;
	int host;                       /* the host end of the "TAP" */
	uint16_t qsize[2];
	uint32_t ring[2][3];            /* desc, avail, used of rx, tx */
	uint16_t seen_used[2];          /* driver's view: used entries recycled */
	uint64_t host_frames, host_bytes;
};

static uint8_t frame_buf[UINT16_MAX];

static uint32_t rd(struct virtio_mmio *t, uint64_t off)
{
	uint32_t v;

	virtio_mmio_read(t, off, &v, 4);
	return v;
}

/* Only a queue the device offers (QueueNumMax != 0), as Linux does. */
static void net_setup_queue(struct fuzz *f, unsigned q)
{
	wr(&f->t, VIRTIO_MMIO_QUEUE_SEL, q);
	if (rd(&f->t, VIRTIO_MMIO_QUEUE_NUM_MAX) == 0)
		return;
	setup_queue(&f->t, q, f->qsize[q], f->ring[q]);
}

/* The order Linux's virtio_mmio and virtio_net drivers use. */
static void driver_setup(struct fuzz *f)
{
	uint32_t feat = rd(&f->t, VIRTIO_MMIO_DEVICE_FEATURES);
	uint32_t s = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER;

	wr(&f->t, VIRTIO_MMIO_STATUS, 0);
	wr(&f->t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	wr(&f->t, VIRTIO_MMIO_STATUS, s);
	wr(&f->t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(&f->t, VIRTIO_MMIO_DRIVER_FEATURES, f->hdr[4] & F_LEGACY ? 0 : 1);
	wr(&f->t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(&f->t, VIRTIO_MMIO_DRIVER_FEATURES, feat);
	wr(&f->t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK);
	if (!(rd(&f->t, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK))
		return;  /* a real driver gives up here */
	net_setup_queue(f, VIRTIO_NET_RXQ);
	net_setup_queue(f, VIRTIO_NET_TXQ);
	f->seen_used[0] = f->seen_used[1] = 0;
	wr(&f->t, VIRTIO_MMIO_STATUS, s | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void read_config(struct fuzz *f)
{
	uint8_t b[8];

	for (unsigned off = 0; off < 0x10; off++)
		virtio_mmio_read(&f->t, VIRTIO_MMIO_CONFIG + off, b, 1 + (off & 7));
	rd(&f->t, VIRTIO_MMIO_CONFIG_GENERATION);
}

/* Guest RAM as the driver sees it, or NULL when [gpa, gpa+len) is not in
 * RAM (the device has refused such a ring; the driver must not trip). */
static uint8_t *gptr(struct fuzz *f, uint64_t gpa, uint64_t len)
{
	return gpa <= RAM_SIZE && len <= RAM_SIZE - gpa ? f->ram + gpa : NULL;
}

/* A driver refilling its ring: every chain the device returned since the
 * last round is made available again. */
static void recycle(struct fuzz *f, unsigned q)
{
	uint16_t n = f->qsize[q];
	uint8_t *avail, *used;
	uint16_t used_idx, avail_idx;

	if (!n || (n & (n - 1)) || n > VIRTQ_MAX_SIZE)
		return;
	avail = gptr(f, f->ring[q][1], 4 + 2u * n);
	used = gptr(f, f->ring[q][2], 4 + 8u * n);
	if (!avail || !used)
		return;
	memcpy(&used_idx, used + 2, 2);
	memcpy(&avail_idx, avail + 2, 2);
	/* At most a ring's worth: the used index starts as input bytes. */
	for (unsigned k = 0; k < n && f->seen_used[q] != used_idx; k++, f->seen_used[q]++, avail_idx++) {
		uint32_t id;

		memcpy(&id, used + 4 + 8 * (f->seen_used[q] & (n - 1)), 4);
		memcpy(avail + 4 + 2 * (avail_idx & (n - 1)), &id, 2);
	}
	memcpy(avail + 2, &avail_idx, 2);
}

static void kick(struct fuzz *f, uint32_t q)
{
	if (f->hdr[4] & F_MMIO_NOTIFY)
		wr(&f->t, VIRTIO_MMIO_QUEUE_NOTIFY, q);
	else
		virtio_mmio_notify(&f->t, q);
}

/* The host stack sends frames; a full socket drops them, as a TAP would. */
static void host_send(struct fuzz *f, unsigned count)
{
	for (unsigned i = 0; i < count; i++) {
		uint16_t len;

		memcpy(&len, f->hdr + 8 + 2 * i, 2);
		if (send(f->host, frame_buf, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
		    errno != EAGAIN && errno != EMSGSIZE && errno != ENOBUFS)
			abort();
	}
}

/* What the event loop does when the backend fd becomes readable. */
static void backend_readable(struct fuzz *f)
{
	virtio_mmio_lock(&f->t);
	virtio_net_rx_ready(f->n);
	virtio_mmio_unlock(&f->t);
}

static void host_drain(struct fuzz *f)
{
	ssize_t len;

	/* The host end stays open, so 0 is an empty frame, not EOF. */
	while ((len = recv(f->host, frame_buf, sizeof(frame_buf), MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
		f->host_frames++;
		f->host_bytes += (uint64_t)len;
	}
	if (errno != EAGAIN)
		abort();
}

static void ack_interrupts(struct fuzz *f)
{
	wr(&f->t, VIRTIO_MMIO_INTERRUPT_ACK, rd(&f->t, VIRTIO_MMIO_INTERRUPT_STATUS));
}

static void round_run(struct fuzz *f, unsigned r)
{
	uint8_t fl = f->hdr[4];

	if (fl & F_RECYCLE) {
		recycle(f, VIRTIO_NET_RXQ);
		recycle(f, VIRTIO_NET_TXQ);
	}
	host_send(f, f->hdr[6] & 3);
	backend_readable(f);
	kick(f, r & 1 ? VIRTIO_NET_RXQ : VIRTIO_NET_TXQ);
	kick(f, r & 1 ? VIRTIO_NET_TXQ : VIRTIO_NET_RXQ);
	kick(f, f->hdr[7]);
	if (!(fl & F_NO_DRAIN))
		host_drain(f);
	ack_interrupts(f);
	if ((fl & F_RESET) && r == 1)
		driver_setup(f);
}

/* Every frame the device counted as sent reached the host, whole. */
static void check_tx(struct fuzz *f)
{
	const struct virtio_net_stats *st = virtio_net_stats(f->n);

	host_drain(f);
	if (st->tx_frames != f->host_frames || st->tx_bytes != f->host_bytes)
		abort();
}

static void fuzz_init(struct fuzz *f, const uint8_t *data, size_t size, struct guest_mem *m)
{
	size_t ram_len = size - HDR_SIZE < RAM_SIZE ? size - HDR_SIZE : RAM_SIZE;

	memset(f, 0, sizeof(*f));
	f->hdr = data;
	memcpy(f->qsize, data, 4);
	memcpy(f->ring, data + 16, sizeof(f->ring));
	f->ram = fuzz_guest_ram(data, size, HDR_SIZE, RAM_SIZE, m);
	/* Frame bytes: the input again, so frames differ between inputs. */
	memset(frame_buf, 0x5a, sizeof(frame_buf));
	memcpy(frame_buf, data + HDR_SIZE, ram_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct virtio_mmio_callbacks cb = { 0 };
	struct guest_mem m;
	struct fuzz f;
	int sv[2];

	if (size < HDR_SIZE)
		return 0;
	fuzz_init(&f, data, size, &m);
	if (socketpair(AF_UNIX, (data[4] & F_SEQPACKET ? SOCK_SEQPACKET : SOCK_DGRAM) |
	               SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	f.host = sv[1];
	if (virtio_net_create(sv[0], mac, &m, &f.n) < 0)
		abort();
	virtio_mmio_init(&f.t, virtio_net_dev(f.n), &cb);
	if (data[4] & F_EARLY_RX) {
		host_send(&f, NFRAMES);
		backend_readable(&f);
	}
	driver_setup(&f);
	if (data[4] & F_CONFIG)
		read_config(&f);
	for (unsigned r = 0; r <= (data[5] & 7); r++)
		round_run(&f, r);
	check_tx(&f);
	if (data[4] & F_RESET)
		wr(&f.t, VIRTIO_MMIO_STATUS, 0);
	virtio_mmio_destroy(&f.t);
	virtio_net_destroy(f.n);
	close(f.host);
	free(f.ram);
	return 0;
}
