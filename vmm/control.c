/* SPDX-License-Identifier: MIT */
/*
 * Worker side of the daemon link.  Guest output arrives on vCPU threads;
 * they only append raw bytes to a bounded buffer and wake the main loop
 * through an eventfd.  The main loop encodes link messages and writes them
 * without blocking, so a slow daemon never stalls a vCPU.  Console output
 * that does not fit is dropped from the link only (and counted): the
 * serial log keeps it.  Every buffer is allocated once at attach and never
 * grows: a realloc past glibc's mmap threshold calls mremap, which the
 * sandbox's seccomp filter does not allow (a stopped mvmd used to get its
 * VMs killed that way).  Control messages (pong, booted, exit, hello) have
 * OUT_RESERVE of their own that console output never takes.
 *
 * Re-adoption (--adopt-socket PATH): the worker also listens on a Unix
 * socket created before the sandbox locks it down (after the chroot the
 * path is unreachable, but the listening fd still accepts).  When a daemon
 * connects, and SO_PEERCRED says it runs as the uid that started this
 * worker, that connection becomes the link (replacing any old one) and the
 * worker greets it with a hello: pid, process start time, VM name and boot
 * state, which the daemon checks against its records.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "proto/proto.h"
#include "vmm/control.h"
#include "vmm/devctl.h"
#include "vmm/vmm.h"
#include "util/util.h"

#define RAW_MAX   (1024 * 1024)         /* console bytes waiting for the loop */
#define OUT_MAX   (2 * 1024 * 1024)     /* encoded bytes waiting for the daemon */
#define OUT_RESERVE (64 * 1024)         /* of OUT_MAX, for control messages only */
#define EXIT_FLUSH_MS 1000

struct control {
	struct vm *vm;
	struct loop *loop;
	int fd;                         /* -1 once the daemon went away */
	int efd;
	bool want_out;                  /* EPOLLOUT registered */
	pthread_mutex_t lock;           /* raw, raw_len, booted, woken */
	uint8_t *raw;                   /* RAW_MAX: filled by vCPU threads */
	uint8_t *raw_loop;              /* RAW_MAX: the loop's, swapped with raw */
	size_t raw_len;
	uint64_t raw_dropped;           /* bytes that did not fit in raw */
	bool booted, booted_sent, woken;
	char *out;                      /* OUT_MAX: encoded lines not yet written */
	size_t out_len;
	uint64_t dropped;               /* console bytes not sent since the last report */
	uint64_t dropped_total;
	struct proto_linebuf in;
	int listen_fd;                  /* adoption socket; -1: none */
	char *listen_path;
	uid_t daemon_uid;               /* only this uid may adopt the worker */
	uint64_t start_time;            /* our /proc/self/stat starttime */
	pid_t outer_pid;                /* our pid in mvmd's PID namespace */
	char name[64];
};

/* ---- output ------------------------------------------------------------- */

/* A whole control line or nothing; the reserve is theirs. */
static int out_append(struct control *c, const char *buf, size_t len)
{
	if (len > OUT_MAX - c->out_len)
		return -ENOBUFS;
	memcpy(c->out + c->out_len, buf, len);
	c->out_len += len;
	return 0;
}

/* Control messages (console output goes through encode_console). */
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

/* Once the link takes console output again, say how much it missed (in
 * vmm.log; the guest's serial log has every byte). */
static void report_dropped(struct control *c)
{
	if (!c->dropped)
		return;
	c->dropped_total += c->dropped;
	fprintf(stderr, "mvm-vmm: link: the daemon read too slowly; %llu console bytes not "
	        "sent to it (%llu in all; the serial log has them)\n",
	        (unsigned long long)c->dropped, (unsigned long long)c->dropped_total);
	c->dropped = 0;
}

static void control_drop(struct control *c)
{
	if (c->fd < 0)
		return;
	loop_del_fd(c->loop, c->fd);
	close(c->fd);
	c->fd = -1;
	c->out_len = 0;                 /* the next daemon gets a fresh stream */
	c->want_out = false;
	/* a half line from this link must not prefix the next link's first */
	proto_linebuf_free(&c->in);
	proto_linebuf_init(&c->in);
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
	if (len > RAW_MAX - c->raw_len) {
		c->raw_dropped += len - (RAW_MAX - c->raw_len);
		len = RAW_MAX - c->raw_len;
	}
	memcpy(c->raw + c->raw_len, buf, len);
	c->raw_len += len;
	wake = !c->woken;
	c->woken = true;
	pthread_mutex_unlock(&c->lock);
	if (wake && write(c->efd, &one, sizeof(one)) < 0)
		return;                 /* the counter cannot overflow here */
}

/* Main loop: turn queued console bytes into link messages, encoded in
 * place (no allocation per message); what does not fit is counted in
 * c->dropped. */
static void encode_console(struct control *c, const uint8_t *raw, size_t len)
{
	size_t max = OUT_MAX - OUT_RESERVE, chunk;
	int n;

	while (len > 0) {
		chunk = len < PROTO_LINK_CONSOLE_MAX ? len : PROTO_LINK_CONSOLE_MAX;
		n = c->out_len < max ?
		    proto_link_encode_console(raw, chunk, c->out + c->out_len, max - c->out_len) :
		    -ENOBUFS;
		if (n < 0) {
			c->dropped += len;
			return;
		}
		c->out_len += (size_t)n;
		if (chunk == len)
			report_dropped(c);
		raw += chunk;
		len -= chunk;
	}
}

static void wake_cb(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	struct proto_link_msg booted = { .type = PROTO_LINK_BOOTED };
	uint8_t *raw;
	size_t len;
	uint64_t v, raw_dropped;
	bool send_booted;

	if (read(c->efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		v = 0;
	/* swap the buffers: the vCPUs fill the other one meanwhile */
	pthread_mutex_lock(&c->lock);
	raw = c->raw;
	len = c->raw_len;
	c->raw = c->raw_loop;
	c->raw_loop = raw;
	c->raw_len = 0;
	raw_dropped = c->raw_dropped;
	c->raw_dropped = 0;
	send_booted = c->booted && !c->booted_sent;
	c->booted_sent = c->booted;
	c->woken = false;
	pthread_mutex_unlock(&c->lock);
	if (c->fd < 0)
		return;
	c->dropped += raw_dropped;
	if (send_booted)
		out_msg(c, &booted);
	encode_console(c, raw, len);
	out_flush(c);
}

/* ---- input -------------------------------------------------------------- */

/* Health check: answered from the main loop, so a pong proves the loop
 * (which serves the link, the devices and the exit path) still turns. */
static void send_pong(struct control *c, int64_t seq)
{
	struct proto_link_msg m = { .type = PROTO_LINK_PONG, .seq = seq };

	if (out_msg(c, &m) == 0)
		out_flush(c);
}

/* vm.pause / vm.resume: a result, its error naming what went wrong. */
static void pause_resume(struct control *c, const struct proto_link_msg *m)
{
	struct proto_link_msg reply = { .type = PROTO_LINK_RESULT, .seq = m->seq };
	int r = m->type == PROTO_LINK_PAUSE ? vm_pause(c->vm) : vm_resume(c->vm);

	if (r == -ETIMEDOUT)
		reply.error = strdup("a vCPU did not stop within 3 s; the VM runs on");
	else if (r == -ESHUTDOWN)
		reply.error = strdup("the VM is stopping");
	else if (r < 0 && asprintf(&reply.error, "cannot %s: %s",
	                           m->type == PROTO_LINK_PAUSE ? "pause" : "restore the clock",
	                           strerror(-r)) < 0)
		reply.error = NULL;
	fprintf(stderr, "mvm-vmm: %s%s%s\n", m->type == PROTO_LINK_PAUSE ? "paused" : "resumed",
	        reply.error ? ": " : "", reply.error ? reply.error : "");
	if (out_msg(c, &reply) == 0)
		out_flush(c);
	proto_link_clear(&reply);
}

static void handle_line(struct control *c, const char *line, size_t len)
{
	struct proto_link_msg m, reply;

	if (proto_link_decode(line, len, &m) < 0)
		return;                 /* malformed: ignore, the daemon is trusted but may be newer */
	if (devctl_handle(c->vm, &m, &reply)) {
		if (out_msg(c, &reply) == 0)
			out_flush(c);
		proto_link_clear(&reply);
	} else if (m.type == PROTO_LINK_CONSOLE_IN)
		/* the 4 KiB input queue bounds typing; excess is dropped */
		vm_console_input(c->vm, m.data, m.data_len);
	else if (m.type == PROTO_LINK_SHUTDOWN) {
		/* a paused guest cannot see the key press: run it again */
		vm_resume(c->vm);
		vm_request_ctrl_alt_del(c->vm);
	} else if (m.type == PROTO_LINK_PAUSE || m.type == PROTO_LINK_RESUME)
		pause_resume(c, &m);
	else if (m.type == PROTO_LINK_PING)
		send_pong(c, m.seq);
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
	/* c->fd may change under handle_line (never today), so stop at a drop */
	while (c->fd >= 0 && (r = proto_linebuf_next(&c->in, &line, &len)) != 0)
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

/* ---- adoption ----------------------------------------------------------- */

static void send_hello(struct control *c)
{
	struct proto_link_msg m = { .type = PROTO_LINK_HELLO, .pid = c->outer_pid,
	                            .start_time = c->start_time };

	pthread_mutex_lock(&c->lock);
	m.booted = c->booted_sent;
	pthread_mutex_unlock(&c->lock);
	m.paused = vm_paused(c->vm);
	snprintf(m.name, sizeof(m.name), "%s", c->name);
	if (out_msg(c, &m) == 0)
		out_flush(c);
}

static bool peer_is_daemon(const struct control *c, int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0)
		return false;
	return cred.uid == c->daemon_uid;
}

/* A daemon (re)connects: it becomes the link, replacing any old one, since
 * a new mvmd only connects when it does not hold the old link. */
static void accept_cb(void *opaque, uint32_t events)
{
	struct control *c = opaque;
	int fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;                 /* EAGAIN, or the peer gave up already */
	if (!peer_is_daemon(c, fd)) {
		close(fd);
		return;
	}
	control_drop(c);
	if (loop_add_fd(c->loop, fd, EPOLLIN, control_io_cb, c) < 0) {
		close(fd);
		return;
	}
	c->fd = fd;
	send_hello(c);
}

/* The VM's name is the socket's file name without ".sock". */
static void name_from_path(struct control *c, const char *path)
{
	const char *b = strrchr(path, '/');
	size_t n;

	b = b ? b + 1 : path;
	n = strlen(b);
	if (n > 5 && !strcmp(b + n - 5, ".sock"))
		n -= 5;
	snprintf(c->name, sizeof(c->name), "%.*s", (int)n, b);
}

static int listen_socket(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	/* a socket file left by a dead worker of this VM: mvmd only starts one
	 * worker per VM, so whatever is there is stale */
	if (unlink(path) < 0 && errno != ENOENT)
		goto fail;
	/* owner-only from the start: the peer check is the second lock */
	if (fchmod(fd, 0600) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    chmod(path, 0600) < 0 || listen(fd, 8) < 0)
		goto fail;
	*ret_fd = fd;
	return 0;
fail:
	r = -errno;
	close(fd);
	return r;
}

int control_listen(struct control *c, const char *path)
{
	int r;

	if (c->listen_fd >= 0)
		return -EBUSY;
	c->daemon_uid = getuid();       /* mvmd spawned us: its uid is ours now */
	name_from_path(c, path);
	/* with the pid it names this process across pid reuse; read before
	 * lockdown, /proc is gone afterwards */
	r = util_proc_start_time(0, &c->start_time);
	if (r < 0)
		return r;
	/* as mvmd sees it: in the worker's own PID namespace getpid() is 1 */
	c->outer_pid = util_proc_outer_pid();
	c->listen_path = strdup(path);
	if (!c->listen_path)
		return -ENOMEM;
	r = listen_socket(path, &c->listen_fd);
	if (r < 0)
		return r;
	r = loop_add_fd(c->loop, c->listen_fd, EPOLLIN, accept_cb, c);
	if (r < 0) {
		close(c->listen_fd);
		c->listen_fd = -1;
		unlink(path);
	}
	return r;
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

void control_report_setup_error(int fd, int status, const char *msg)
{
	struct proto_link_msg m = { .type = PROTO_LINK_EXIT, .status = status & 0xff };
	char *line;
	size_t len, off = 0;
	ssize_t n;

	snprintf(m.reason, sizeof(m.reason), "vmm-error: %s", msg);
	if (proto_link_encode(&m, &line, &len) < 0)
		return;
	while (off < len) {
		n = write(fd, line + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		off += (size_t)n;
	}
	free(line);
}

int control_attach(struct vm *vm, int fd, struct control **ret)
{
	struct control *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->vm = vm;
	c->loop = vm_loop(vm);
	c->fd = fd;
	c->listen_fd = -1;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	c->raw = malloc(RAW_MAX);
	c->raw_loop = malloc(RAW_MAX);
	c->out = malloc(OUT_MAX);
	pthread_mutex_init(&c->lock, NULL);
	proto_linebuf_init(&c->in);
	if (!c->raw || !c->raw_loop || !c->out) {
		r = -ENOMEM;
		goto fail;
	}
	if (c->efd < 0 || fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		r = -errno;
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
	if (c->listen_fd >= 0) {
		close(c->listen_fd);
		/* fails harmlessly in the sandbox's empty root; mvmd removes it */
		unlink(c->listen_path);
	}
	free(c->listen_path);
	pthread_mutex_destroy(&c->lock);
	proto_linebuf_free(&c->in);
	free(c->raw);
	free(c->raw_loop);
	free(c->out);
	free(c);
}
