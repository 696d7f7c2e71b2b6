/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "vmm/console.h"
#include "vmm/devices/serial.h"

#define INPUT_QUEUE 4096

enum stdin_mode {
	STDIN_OFF,        /* not read, or EOF reached */
	STDIN_POLLED,     /* epoll tells us when it is readable */
	STDIN_DIRECT,     /* regular file or /dev/null: reads never block */
};

struct console {
	int out_fd, log_fd;
	bool out_owned;
	/* A sink that failed is only skipped here: console_write() runs on
	 * vCPU threads, whose seccomp filter has no close(); console_free()
	 * closes it on the main thread. */
	bool out_broken, log_broken;
	atomic_bool abandoned;  /* the VM is stopping: stop waiting on the sink */
	uint64_t log_size, log_max;
	console_observer_cb observer;
	void *observer_opaque;

	/* Input side: the queue is shared with console_input() callers. */
	pthread_mutex_t in_lock;
	uint8_t in[INPUT_QUEUE];
	size_t in_len;
	enum stdin_mode stdin_mode;
	bool stdin_paused;
	int rx_efd;
	struct loop *loop;
	struct serial *serial;

	bool tty_raw;
	struct termios tty_saved;
};

static int open_out(struct console *c, const struct console_config *cfg)
{
	if (!cfg->out_path) {
		c->out_fd = STDOUT_FILENO;
		return 0;
	}
	c->out_fd = open(cfg->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (c->out_fd < 0)
		return -errno;
	c->out_owned = true;
	return 0;
}

/* The log keeps earlier runs' output (a restarted VM appends); the bound
 * applies from the first write. */
static int open_log(struct console *c, const struct console_config *cfg)
{
	struct stat st;

	c->log_max = cfg->log_max;
	if (!cfg->log_path)
		return 0;
	c->log_fd = open(cfg->log_path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);  /* read back when shrinking */
	if (c->log_fd < 0)
		return -errno;
	if (fstat(c->log_fd, &st) < 0)
		return -errno;
	c->log_size = (uint64_t)st.st_size;
	return 0;
}

int console_new(const struct console_config *cfg, struct console **ret,
                const char **ret_what)
{
	struct console *c = calloc(1, sizeof(*c));
	const char *what = NULL;
	int r;

	if (!c)
		return -ENOMEM;
	c->log_fd = c->rx_efd = -1;
	pthread_mutex_init(&c->in_lock, NULL);
	c->stdin_mode = cfg->read_stdin ? STDIN_POLLED : STDIN_OFF;
	r = open_out(c, cfg);
	if (r < 0) {
		what = cfg->out_path;
		goto fail;
	}
	r = open_log(c, cfg);
	if (r < 0) {
		what = cfg->log_path;
		goto fail;
	}
	*ret = c;
	return 0;
fail:
	if (ret_what)
		*ret_what = what;
	console_free(c);
	return r;
}

static void tty_restore(struct console *c)
{
	if (c->tty_raw)
		tcsetattr(STDIN_FILENO, TCSAFLUSH, &c->tty_saved);
	c->tty_raw = false;
}

void console_free(struct console *c)
{
	if (!c)
		return;
	tty_restore(c);
	if (c->rx_efd >= 0)
		close(c->rx_efd);
	if (c->log_fd >= 0)
		close(c->log_fd);
	if (c->out_owned && c->out_fd >= 0)
		close(c->out_fd);
	pthread_mutex_destroy(&c->in_lock);
	free(c);
}

/* Writes everything, waiting if the fd was left non-blocking by whoever
 * gave it to us.  Gives up (-ECANCELED) once the console is abandoned: a
 * sink that blocks (a full pipe, a terminal stopped with ^S) must not keep
 * a vCPU thread from being joined; its kicks interrupt the write. */
static int write_all(struct console *c, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n;

		if (atomic_load(&c->abandoned))
			return -ECANCELED;
		n = write(c->out_fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN) {
				struct pollfd p = { .fd = c->out_fd, .events = POLLOUT };

				poll(&p, 1, -1);
				continue;
			}
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

void console_abandon(struct console *c)
{
	atomic_store(&c->abandoned, true);
}

static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Moves the newest `keep` bytes of the log to its start and cuts the rest. */
static int log_shrink(struct console *c, uint64_t keep)
{
	uint8_t chunk[4096];
	uint64_t from = c->log_size - keep, done = 0;
	int r;

	while (done < keep) {
		size_t want = keep - done < sizeof(chunk) ? keep - done : sizeof(chunk);
		ssize_t n = pread(c->log_fd, chunk, want, (off_t)(from + done));

		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		r = pwrite_all(c->log_fd, chunk, (size_t)n, done);
		if (r < 0)
			return r;
		done += (uint64_t)n;
	}
	if (ftruncate(c->log_fd, (off_t)keep) < 0)
		return -errno;
	c->log_size = keep;
	return 0;
}

static int log_append(struct console *c, const uint8_t *buf, size_t len)
{
	int r;

	if (len > c->log_max) {
		buf += len - c->log_max;
		len = c->log_max;
	}
	if (c->log_size + len > c->log_max) {
		uint64_t keep = c->log_max / 2;

		if (keep > c->log_max - len)
			keep = c->log_max - len;
		if (keep > c->log_size)
			keep = c->log_size;
		r = log_shrink(c, keep);
		if (r < 0)
			return r;
	}
	r = pwrite_all(c->log_fd, buf, len, c->log_size);
	if (r < 0)
		return r;
	c->log_size += len;
	return 0;
}

void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	int r;

	if (c->out_fd >= 0 && !c->out_broken && write_all(c, buf, len) < 0) {
		/* The reader went away (EPIPE) or the sink broke: the guest
		 * keeps running; the log and observer still get its output. */
		c->out_broken = true;
	}
	if (c->log_fd >= 0 && !c->log_broken) {
		r = log_append(c, buf, len);
		if (r < 0) {
			fprintf(stderr, "mvm-vmm: serial log write failed: %s; log disabled\n",
			        strerror(-r));
			c->log_broken = true;
		}
	}
	if (c->observer)
		c->observer(c->observer_opaque, buf, len);
}

void console_set_observer(struct console *c, console_observer_cb cb, void *opaque)
{
	c->observer = cb;
	c->observer_opaque = opaque;
}

/* Moves queued input into the UART FIFO.  Caller holds in_lock. */
static void push_locked(struct console *c)
{
	size_t n;

	if (!c->serial || !c->in_len)
		return;
	n = serial_receive(c->serial, c->in, c->in_len);
	memmove(c->in, c->in + n, c->in_len - n);
	c->in_len -= n;
}

size_t console_input(struct console *c, const uint8_t *buf, size_t len)
{
	size_t n;

	pthread_mutex_lock(&c->in_lock);
	n = INPUT_QUEUE - c->in_len;
	if (n > len)
		n = len;
	memcpy(c->in + c->in_len, buf, n);
	c->in_len += n;
	push_locked(c);
	pthread_mutex_unlock(&c->in_lock);
	return n;
}

static void stdin_stop(struct console *c)
{
	if (c->stdin_mode == STDIN_POLLED)
		loop_del_fd(c->loop, STDIN_FILENO);
	c->stdin_mode = STDIN_OFF;
}

/* Reads what fits in the queue.  Returns false once stdin is done. */
static bool stdin_read(struct console *c)
{
	uint8_t buf[INPUT_QUEUE];
	size_t room;
	ssize_t n;

	pthread_mutex_lock(&c->in_lock);
	room = INPUT_QUEUE - c->in_len;
	pthread_mutex_unlock(&c->in_lock);
	if (!room)
		return true;
	n = read(STDIN_FILENO, buf, room);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return true;
	if (n <= 0) {
		stdin_stop(c);  /* EOF or a broken stdin: the VM keeps running */
		return false;
	}
	console_input(c, buf, (size_t)n);
	return true;
}

/* Pauses stdin while the queue is full; resumes it when there is room. */
static void stdin_flow(struct console *c)
{
	bool full;

	pthread_mutex_lock(&c->in_lock);
	full = c->in_len == INPUT_QUEUE;
	pthread_mutex_unlock(&c->in_lock);
	if (c->stdin_mode == STDIN_DIRECT) {
		while (!full && stdin_read(c)) {
			pthread_mutex_lock(&c->in_lock);
			full = c->in_len == INPUT_QUEUE;
			pthread_mutex_unlock(&c->in_lock);
		}
		return;
	}
	if (c->stdin_mode == STDIN_POLLED && full != c->stdin_paused) {
		c->stdin_paused = full;
		loop_mod_fd(c->loop, STDIN_FILENO, full ? 0 : EPOLLIN);
	}
}

static void stdin_cb(void *opaque, uint32_t events)
{
	struct console *c = opaque;

	if (stdin_read(c))
		stdin_flow(c);
}

static void rx_ready_cb(void *opaque, uint32_t events)
{
	struct console *c = opaque;
	uint64_t v;

	if (read(c->rx_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	pthread_mutex_lock(&c->in_lock);
	push_locked(c);
	pthread_mutex_unlock(&c->in_lock);
	stdin_flow(c);
}

void console_rx_ready(struct console *c)
{
	uint64_t one = 1;

	if (c->rx_efd >= 0 && write(c->rx_efd, &one, sizeof(one)) < 0) {
		/* The counter cannot overflow in practice; nothing to do. */
	}
}

static void tty_make_raw(struct console *c)
{
	struct termios raw;

	if (!isatty(STDIN_FILENO) || tcgetattr(STDIN_FILENO, &c->tty_saved) < 0)
		return;
	raw = c->tty_saved;
	cfmakeraw(&raw);
	raw.c_lflag |= ISIG;  /* keep ^C / ^\ as a way out */
	if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw) == 0)
		c->tty_raw = true;
}

static int attach_stdin(struct console *c)
{
	int r = loop_add_fd(c->loop, STDIN_FILENO, EPOLLIN, stdin_cb, c);

	if (r == -EPERM || r == -EBADF) {  /* not pollable, or closed */
		c->stdin_mode = STDIN_DIRECT;
		stdin_flow(c);
		return 0;
	}
	if (r < 0)
		return r;
	tty_make_raw(c);
	return 0;
}

int console_attach(struct console *c, struct loop *l, struct serial *s)
{
	int r;

	c->loop = l;
	pthread_mutex_lock(&c->in_lock);
	c->serial = s;
	pthread_mutex_unlock(&c->in_lock);
	c->rx_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->rx_efd < 0)
		return -errno;
	r = loop_add_fd(l, c->rx_efd, EPOLLIN, rx_ready_cb, c);
	if (r < 0)
		return r;
	if (c->stdin_mode != STDIN_OFF)
		return attach_stdin(c);
	return 0;
}
