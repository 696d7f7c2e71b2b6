/* SPDX-License-Identifier: MIT */
/*
 * Worker side of the daemon link.  Guest output arrives on vCPU threads;
 * they only append raw bytes to a bounded buffer and wake the main loop
 * through an eventfd.  The main loop encodes link messages and writes them
 * without blocking, so a slow daemon never stalls a vCPU.  Console output
 * that does not fit is dropped from the link only: the serial log keeps it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "proto/proto.h"
#include "vmm/control.h"
#include "vmm/vmm.h"

#define RAW_MAX   (1024 * 1024)         /* console bytes waiting for the loop */
#define OUT_MAX   (4 * 1024 * 1024)     /* encoded bytes waiting for the daemon */
#define EXIT_FLUSH_MS 1000

struct control {
	struct vm *vm;
	struct loop *loop;
	int fd;                         /* -1 once the daemon went away */
	int efd;
	bool want_out;                  /* EPOLLOUT registered */
	pthread_mutex_t lock;           /* raw, raw_len, booted, woken */
	uint8_t *raw;
	size_t raw_len;
	bool booted, booted_sent, woken;
	char *out;                      /* encoded lines not yet written */
	size_t out_len, out_cap;
	struct proto_linebuf in;
};

/* ---- output ------------------------------------------------------------- */

static int out_append(struct control *c, const char *buf, size_t len)
{
	if (c->out_len + len > OUT_MAX)
		return -ENOBUFS;
	if (c->out_len + len > c->out_cap) {
		size_t cap = c->out_cap ? c->out_cap * 2 : 65536;
		char *p;

		while (cap < c->out_len + len)
			cap *= 2;
		p = realloc(c->out, cap);
		if (!p)
			return -ENOMEM;
		c->out = p;
		c->out_cap = cap;
	}
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

static int out_msg(struct control *c, const struct proto_link_msg *m)
{
	char *line;
	size_t len;
	int r = proto_link_encode(m, &line, &len);

	if (r < 0)
		return r;
	r = out_append(c, line, len);
	free(line);
	return r;
}

static void control_drop(struct control *c)
{
	if (c->fd < 0)
		return;
	loop_del_fd(c->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->out_len = 0;
}

static void control_io_cb(void *opaque, uint32_t events);

/* Write what the socket takes; watch for EPOLLOUT while output remains. */
static void out_flush(struct control *c)
{
	ssize_t n;

	while (c->fd >= 0 && c->out_len > 0) {
		n = write(c->fd, c->out, c->out_len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			control_drop(c);        /* daemon gone: keep the VM running */
			return;
		}
		memmove(c->out, c->out + n, c->out_len - n);
		c->out_len -= n;
	}
	if (c->fd >= 0 && c->want_out != (c->out_len > 0)) {
		c->want_out = c->out_len > 0;
		loop_mod_fd(c->loop, c->fd, EPOLLIN | (c->want_out ? EPOLLOUT : 0));
	}
}

/* vCPU thread: queue guest output and wake the loop once. */
static void console_cb(void *opaque, const uint8_t *buf, size_t len)
{
	struct control *c = opaque;
	uint64_t one = 1;
	bool wake;

	pthread_mutex_lock(&c->lock);
	c->booted = true;
	if (len > RAW_MAX - c->raw_len)
		len = RAW_MAX - c->raw_len;
	memcpy(c->raw + c->raw_len, buf, len);
	c->raw_len += len;
	wake = !c->woken;
	c->woken = true;
	pthread_mutex_unlock(&c->lock);
	if (wake && write(c->efd, &one, sizeof(one)) < 0)
		return;                 /* the counter cannot overflow here */
}

/* Main loop: turn queued console bytes into link messages. */
static void encode_console(struct control *c, const uint8_t *raw, size_t len)
{
	struct proto_link_msg m = { .type = PROTO_LINK_CONSOLE };

	while (len > 0) {
		m.data = (unsigned char *)raw;
		m.data_len = len < PROTO_LINK_CONSOLE_MAX ? len : PROTO_LINK_CONSOLE_MAX;
		if (out_msg(c, &m) < 0)
			return;
		raw += m.data_len;
		len -= m.data_len;
	}
}

static void wake_cb(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	struct proto_link_msg booted = { .type = PROTO_LINK_BOOTED };
	uint8_t *raw = malloc(RAW_MAX);
	size_t len = 0;
	uint64_t v;
	bool send_booted;

	if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		v = 0;
	pthread_mutex_lock(&c->lock);
	if (raw) {
		memcpy(raw, c->raw, c->raw_len);
		len = c->raw_len;
		c->raw_len = 0;
	}
	send_booted = c->booted && !c->booted_sent;
	c->booted_sent = c->booted;
	c->woken = false;
	pthread_mutex_unlock(&c->lock);
	if (c->fd >= 0) {
		if (send_booted)
			out_msg(c, &booted);
		encode_console(c, raw, len);
		out_flush(c);
	}
	free(raw);
}

/* ---- input -------------------------------------------------------------- */

static void handle_line(struct control *c, const char *line, size_t len)
{
	struct proto_link_msg m;

	if (proto_link_decode(line, len, &m) < 0)
		return;                 /* malformed: ignore, the daemon is trusted but may be newer */
	if (m.type == PROTO_LINK_CONSOLE_IN)
		/* the 4 KiB input queue bounds typing; excess is dropped */
		vm_console_input(c->vm, m.data, m.data_len);
	else if (m.type == PROTO_LINK_SHUTDOWN)
		vm_request_ctrl_alt_del(c->vm);
	proto_link_clear(&m);
}

static void read_input(struct control *c)
{
	char buf[65536], *line;
	size_t len;
	ssize_t n;
	int r;

	n = read(c->fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || proto_linebuf_feed(&c->in, buf, n) < 0) {
		control_drop(c);
		return;
	}
	while ((r = proto_linebuf_next(&c->in, &line, &len)) != 0)
		if (r > 0)
			handle_line(c, line, len);
}

static void control_io_cb(void *opaque, uint32_t events)
{
	struct control *c = opaque;

	if (events & (EPOLLIN | EPOLLHUP | EPOLLERR))
		read_input(c);
	if (c->fd >= 0 && (events & EPOLLOUT))
		out_flush(c);
}

/* ---- exit --------------------------------------------------------------- */

static void exit_reason(int status, const char *detail, char *buf, size_t size)
{
	static const char *const names[] = {
		[VMM_EXIT_OK] = "reset",
		[VMM_EXIT_USAGE] = "vmm-error",
		[VMM_EXIT_ERROR] = "vmm-error",
		[VMM_EXIT_TRIPLE_FAULT] = "triple-fault",
		[VMM_EXIT_INTERNAL_ERROR] = "internal-error",
		[VMM_EXIT_EMULATION] = "emulation-failure",
	};

	if (status == VMM_EXIT_OK && detail && strstr(detail, "poweroff"))
		snprintf(buf, size, "poweroff");
	else if (status >= 0 && status <= VMM_EXIT_EMULATION)
		snprintf(buf, size, "%s", names[status]);
	else if (status > 128)
		snprintf(buf, size, "signal %s", proto_signal_name(status - 128));
	else
		snprintf(buf, size, "worker-exit %d", status);
}

/* The loop has stopped: write the last output and the exit message,
 * waiting a little for a slow daemon. */
static void exit_cb(void *opaque, int status, const char *reason)
{
	struct control *c = opaque;
	struct proto_link_msg m = { .type = PROTO_LINK_EXIT, .status = status & 0xff };
	struct pollfd p;

	if (c->fd < 0)
		return;
	wake_cb(c, 0);
	exit_reason(status, reason, m.reason, sizeof(m.reason));
	out_msg(c, &m);
	while (c->fd >= 0 && c->out_len > 0) {
		p = (struct pollfd){ .fd = c->fd, .events = POLLOUT };
		if (poll(&p, 1, EXIT_FLUSH_MS) <= 0)
			break;
		out_flush(c);
	}
}

/* ---- setup -------------------------------------------------------------- */

int control_attach(struct vm *vm, int fd, struct control **ret)
{
	struct control *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->vm = vm;
	c->loop = vm_loop(vm);
	c->fd = fd;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->raw = malloc(RAW_MAX);
	pthread_mutex_init(&c->lock, NULL);
	proto_linebuf_init(&c->in);
	if (c->efd < 0 || !c->raw || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		r = c->raw ? -errno : -ENOMEM;
		goto fail;
	}
	r = loop_add_fd(c->loop, c->efd, EPOLLIN, wake_cb, c);
	if (r < 0)
		goto fail;
	r = loop_add_fd(c->loop, fd, EPOLLIN, control_io_cb, c);
	if (r < 0) {
		loop_del_fd(c->loop, c->efd);
		goto fail;
	}
	vm_console_set_observer(vm, console_cb, c);
	vm_set_exit_observer(vm, exit_cb, c);
	*ret = c;
	return 0;
fail:
	c->fd = -1;                     /* the caller still owns fd on failure */
	control_free(c);
	return r;
}

void control_free(struct control *c)
{
	if (!c)
		return;
	if (c->fd >= 0)
		close(c->fd);
	if (c->efd >= 0)
		close(c->efd);
	pthread_mutex_destroy(&c->lock);
	proto_linebuf_free(&c->in);
	free(c->raw);
	free(c->out);
	free(c);
}
