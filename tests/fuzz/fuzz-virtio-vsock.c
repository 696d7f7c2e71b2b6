/* SPDX-License-Identifier: MIT */
/*
 * virtio-vsock behind the virtio-mmio transport, with real Unix sockets.
 * Input: a 28-byte header (le16 queue size for rx and tx; u8 flags:
 * bits 1-3 number of host clients that send "CONNECT <1000+i>\n", bit 4
 * clients write stream bytes each round, bit 5 reset the device at the
 * end, bit 6 clients shut their sending side after round 1; u8 rounds
 * (low 3 bits); le32 rx desc, avail, used;
 * le32 tx desc, avail, used guest addresses) and the first bytes of a
 * 64 KiB guest RAM.  A host service listens on <uds>_5000 for the guest
 * to reach.  The fuzzer plays a Linux-like driver, then alternates tx/rx
 * notifications with event-loop turns.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "vmm/devices/virtio/mmio.h"
#include "vmm/devices/virtio/vsock.h"
#include "tests/fuzz/fuzz-virtio.h"

#define RAM_SIZE  0x10000
#define HDR_SIZE  28
#define CLIENTS   7

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char dir[32], uds[48], port_path[64];
static int port_listener = -1;

static void cleanup(void)
{
	if (port_listener >= 0) {
		close(port_listener);
		unlink(port_path);
	}
	rmdir(dir);
}

static int unix_socket(const char *path, struct sockaddr_un *sa)
{
	*sa = (struct sockaddr_un){ .sun_family = AF_UNIX };
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
	return socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
}

/* One temporary directory per process: the device's socket, and a host
 * service on port 5000 the guest may connect to. */
static void init_once(void)
{
	struct sockaddr_un sa;

	if (dir[0])
		return;
	snprintf(dir, sizeof(dir), "/tmp/mvm-fuzz-vsock-XXXXXX");
	if (!mkdtemp(dir))
		abort();
	snprintf(uds, sizeof(uds), "%s/v.sock", dir);
	snprintf(port_path, sizeof(port_path), "%s_5000", uds);
	port_listener = unix_socket(port_path, &sa);
	if (port_listener < 0 || bind(port_listener, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(port_listener, 64) < 0)
		abort();
	atexit(cleanup);
}

static void driver_setup(struct virtio_mmio *t, const uint8_t *hdr)
{
	uint16_t qsize;
	uint32_t a[6];

	memcpy(&qsize, hdr, 2);
	memcpy(a, hdr + 4, sizeof(a));
	wr(t, VIRTIO_MMIO_STATUS, 0);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1);  /* VIRTIO_F_VERSION_1 */
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	wr(t, VIRTIO_MMIO_DRIVER_FEATURES, 1u << VIRTIO_VSOCK_F_STREAM);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                          VIRTIO_STATUS_FEATURES_OK);
	setup_queue(t, VIRTIO_VSOCK_RXQ, qsize, a);
	setup_queue(t, VIRTIO_VSOCK_TXQ, qsize, a + 3);
	wr(t, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER |
	                          VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
}

static void clients_open(int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct sockaddr_un sa;
		char line[32];
		int len = snprintf(line, sizeof(line), "CONNECT %u\n", 1000 + i);

		fds[i] = unix_socket(uds, &sa);
		if (fds[i] < 0 || connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
		    write(fds[i], line, (size_t)len) != len)
			abort();
	}
}

static void read_config(struct virtio_mmio *t)
{
	uint8_t b[8];

	for (unsigned off = 0; off < 0x10; off++)
		virtio_mmio_read(t, VIRTIO_MMIO_CONFIG + off, b, 1 + (off & 7));
}

/* Connections the device made to port 5000 during this input. */
static void drain_listener(void)
{
	int fd;

	while ((fd = accept(port_listener, NULL, NULL)) >= 0)
		close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct virtio_mmio_callbacks cb = { 0 };
	struct virtio_vsock *v = NULL;
	int fds[CLIENTS] = { 0 };
	struct virtio_mmio t;
	struct guest_mem m;
	unsigned nclients;
	uint8_t *ram;

	if (size < HDR_SIZE)
		return 0;
	init_once();
	ram = fuzz_guest_ram(data, size, HDR_SIZE, RAM_SIZE, &m);
	if (virtio_vsock_create(3, uds, &m, &v) < 0)
		abort();
	virtio_mmio_init(&t, virtio_vsock_dev(v), &cb);
	nclients = (data[2] >> 1) & 7;
	clients_open(fds, nclients);
	virtio_vsock_ready(v);
	driver_setup(&t, data);
	for (unsigned r = 0; r <= (data[3] & 7); r++) {
		virtio_mmio_notify(&t, VIRTIO_VSOCK_TXQ);
		if (data[2] & 0x10)
			for (unsigned i = 0; i < nclients; i++)
				if (send(fds[i], "0123456789", 10, MSG_NOSIGNAL) < 0)
					continue;  /* the device closed it */
		if ((data[2] & 0x40) && r == 1)
			for (unsigned i = 0; i < nclients; i++)
				shutdown(fds[i], SHUT_WR);
		virtio_vsock_ready(v);
		virtio_mmio_notify(&t, r & 1 ? VIRTIO_VSOCK_EVQ : VIRTIO_VSOCK_RXQ);
	}
	read_config(&t);
	if (data[2] & 0x20)
		wr(&t, VIRTIO_MMIO_STATUS, 0);
	virtio_mmio_destroy(&t);
	virtio_vsock_destroy(v);
	for (unsigned i = 0; i < nclients; i++)
		close(fds[i]);
	drain_listener();
	free(ram);
	return 0;
}
