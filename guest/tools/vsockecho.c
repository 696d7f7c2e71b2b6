/* SPDX-License-Identifier: MIT */
/*
 * vsockecho: both ends of an AF_VSOCK stream inside a guest, for trying a
 * VM's vsock (docs/guests.md "vsock").  Built static, so it runs on the
 * busybox root of guest/build-rootfs.sh:
 *
 *   gcc -O2 -static -o DIR/bin/vsockecho guest/tools/vsockecho.c
 *   guest/build-rootfs.sh --add DIR root.img
 *
 *   (guest) vsockecho listen PORT        echo every connection to PORT back
 *                                        until its peer closes (forever)
 *   (guest) vsockecho connect CID PORT MSG
 *                                        send MSG to CID:PORT (2: the host),
 *                                        close the sending side, print what
 *                                        comes back as "vsockecho: got MSG"
 *
 * Exit status: 0, 1 on an error (said on stderr), 2 on bad usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <linux/vm_sockets.h>

static int fail(const char *what)
{
	fprintf(stderr, "vsockecho: %s: %s\n", what, strerror(errno));
	return 1;
}

static int parse_u32(const char *s, unsigned *ret)
{
	char *end;
	unsigned long v;

	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || end == s || *end || v > 0xffffffffUL)
		return -1;
	*ret = (unsigned)v;
	return 0;
}

static void echo(int fd)
{
	char buf[4096];
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (ssize_t off = 0, w; off < n; off += w)
			if ((w = write(fd, buf + off, (size_t)(n - off))) <= 0)
				return;
}

static int do_listen(unsigned port)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = VMADDR_CID_ANY,
	                          .svm_port = port };
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0), c;

	if (fd < 0)
		return fail("socket(AF_VSOCK) (is the kernel's vsock driver there?)");
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 8) < 0)
		return fail("bind/listen");
	signal(SIGCHLD, SIG_IGN);       /* no zombies from the per-connection children */
	fprintf(stderr, "vsockecho: listening on port %u\n", port);
	for (;;) {
		c = accept(fd, NULL, NULL);
		if (c < 0) {
			if (errno == EINTR)
				continue;
			return fail("accept");
		}
		if (fork() == 0) {
			close(fd);
			echo(c);
			_exit(0);
		}
		close(c);
	}
}

static int do_connect(unsigned cid, unsigned port, const char *msg)
{
	struct sockaddr_vm sa = { .svm_family = AF_VSOCK, .svm_cid = cid, .svm_port = port };
	struct timeval tv = { .tv_sec = 10 };
	char buf[4096];
	size_t len = 0;
	ssize_t n;
	int fd = socket(AF_VSOCK, SOCK_STREAM, 0);

	if (fd < 0)
		return fail("socket(AF_VSOCK) (is the kernel's vsock driver there?)");
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return fail("connect (is something listening on the host's <uds>_PORT?)");
	if (write(fd, msg, strlen(msg)) != (ssize_t)strlen(msg))
		return fail("write");
	shutdown(fd, SHUT_WR);
	while (len < sizeof(buf) - 1 && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0)
		len += (size_t)n;
	buf[len] = '\0';
	printf("vsockecho: got %s\n", buf);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	unsigned cid, port;

	if (argc == 3 && !strcmp(argv[1], "listen") && parse_u32(argv[2], &port) == 0)
		return do_listen(port);
	if (argc == 5 && !strcmp(argv[1], "connect") && parse_u32(argv[2], &cid) == 0 &&
	    parse_u32(argv[3], &port) == 0)
		return do_connect(cid, port, argv[4]);
	fprintf(stderr, "usage: vsockecho listen PORT | vsockecho connect CID PORT MSG\n");
	return 2;
}
