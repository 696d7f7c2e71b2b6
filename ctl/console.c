/* SPDX-License-Identifier: MIT */
/* Streams: the interactive serial console, the console log, and events. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "ctl/ctl.h"
#include "util/util.h"

#define CONSOLE_ESCAPE 0x1d /* Ctrl-] as telnet and virsh use it */
#define CONSOLE_IDLE_DEFAULT_S 2

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Sends stdin bytes up to the escape; 1 when the user detached. */
static int console_input(struct ctl *c, const char *buf, size_t n)
{
	const char *esc = memchr(buf, CONSOLE_ESCAPE, n);
	size_t len = esc ? (size_t)(esc - buf) : n;

	if (len && ctl_write_all(c->fd, buf, len) < 0)
		return -EPIPE;
	return esc ? 1 : 0;
}

struct console_state {
	bool stdin_open;
	long long idle_ms;     /* after stdin's end: quit after this much quiet */
	long long last_output; /* ms timestamp of the last guest byte or stdin EOF */
};

/*
 * One poll round. Returns 1 to keep going, 0 when the session ended
 * normally (detach, server closed, idle after stdin's end), <0 on error.
 */
static int console_step(struct ctl *c, struct console_state *st)
{
	struct pollfd p[2] = {
		{ .fd = c->fd, .events = POLLIN },
		{ .fd = st->stdin_open ? STDIN_FILENO : -1, .events = POLLIN },
	};
	long long left = st->stdin_open ? -1 : st->last_output + st->idle_ms - now_ms();
	char buf[4096];
	ssize_t n;

	if (!st->stdin_open && left <= 0)
		return 0;
	if (poll(p, 2, (int)(left > INT_MAX ? INT_MAX : left)) < 0)
		return errno == EINTR ? 1 : -errno;
	if (p[0].revents) {
		n = read(c->fd, buf, sizeof(buf));
		if (n <= 0)
			return n < 0 && errno != ECONNRESET ? -errno : 0;
		if (ctl_write_all(STDOUT_FILENO, buf, (size_t)n) < 0)
			return -EPIPE;
		st->last_output = now_ms();
	}
	if (p[1].revents) {
		n = read(STDIN_FILENO, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			return 1;
		if (n <= 0) {
			st->stdin_open = false;
			st->last_output = now_ms();
			return 1;
		}
		n = console_input(c, buf, (size_t)n);
		if (n != 0)
			return n < 0 ? (int)n : 0;
	}
	return 1;
}

static int console_loop(struct ctl *c, long long idle_s)
{
	struct console_state st = { .stdin_open = true, .idle_ms = idle_s * 1000 };
	struct termios saved, raw;
	bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
	const char *early;
	size_t early_len;
	int r;

	/* output that arrived together with the response line */
	ctl_take_buffered(c, &early, &early_len);
	if (early_len)
		ctl_write_all(STDOUT_FILENO, early, early_len);
	if (tty) {
		fprintf(stderr, "Connected to the console; Ctrl-] detaches.\r\n");
		raw = saved;
		cfmakeraw(&raw);
		tcsetattr(STDIN_FILENO, TCSANOW, &raw);
	}
	while ((r = console_step(c, &st)) > 0)
		;
	if (tty) {
		tcsetattr(STDIN_FILENO, TCSANOW, &saved);
		fprintf(stderr, "\nDetached.\n");
	}
	if (r < 0) {
		fprintf(stderr, "mvmctl: console: %s\n", strerror(-r));
		return CTL_EXIT_CONNECT;
	}
	return CTL_EXIT_OK;
}

int console_console(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "idle", required_argument, NULL, 'i' },
		{ 0 }
	};
	long long idle = CONSOLE_IDLE_DEFAULT_S;
	json_t *req;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		uint64_t v;

		if (o != 'i' || util_parse_uint(optarg, 0, 86400, &v) < 0)
			return ctl_usage_error("console", "bad option or value '%s'", argv[optind - 1]);
		idle = (long long)v;
	}
	if (optind + 1 != argc)
		return ctl_usage_error("console", "console wants exactly one NAME");
	r = ctl_connect(c);
	if (r)
		return r;
	req = ctl_request(c, PROTO_OP_VM_CONSOLE);
	proto_request_set_str(req, "name", argv[optind]);
	r = ctl_call(c, req, NULL);
	if (r)
		return r;
	return console_loop(c, idle);
}

static void print_data(const json_t *obj)
{
	const char *d = json_string_value(json_object_get(obj, "data"));

	if (d) {
		fputs(d, stdout);
		fflush(stdout);
	}
}

/* Reads event messages until mvmd closes; each is passed to fn. */
/* what: NULL when mvmd's closing the stream is its normal end (logs -f:
 * the worker ended); else the stream is endless and its end is exit 3. */
static int stream(struct ctl *c, void (*fn)(struct ctl *c, const struct proto_response *ev),
                  const char *what)
{
	struct proto_response msg;
	int r;

	for (;;) {
		r = ctl_read_message(c, -1, &msg);
		if ((r == -EPIPE || r == -ECONNRESET) && !what)
			return CTL_EXIT_OK;
		if (r == -EPIPE || r == -ECONNRESET) {
			fprintf(stderr, "mvmctl: mvmd closed the %s (it stopped or restarted); "
			        "run the command again once mvmd is back\n", what);
			return CTL_EXIT_CONNECT;
		}
		if (r < 0) {
			fprintf(stderr, "mvmctl: reading from mvmd: %s\n", strerror(-r));
			return CTL_EXIT_CONNECT;
		}
		if (msg.is_event)
			fn(c, &msg);
		proto_response_done(&msg);
	}
}

static void log_event_cb(struct ctl *c, const struct proto_response *ev)
{
	if (!strcmp(ev->event, "log"))
		print_data(ev->root);
}

int console_logs(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "follow", no_argument, NULL, 'f' },
		{ "tail", required_argument, NULL, 't' },
		{ 0 }
	};
	json_t *req = ctl_request(c, PROTO_OP_VM_LOGS), *res = NULL;
	bool follow = false;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		uint64_t n;

		if (o == 'f') {
			follow = true;
		} else if (o == 't' && util_parse_uint(optarg, 0, INT_MAX, &n) == 0) {
			proto_request_set_int(req, "tail", (json_int_t)n);
		} else {
			json_decref(req);
			return ctl_usage_error("logs", "bad option or value '%s'", argv[optind - 1]);
		}
	}
	if (optind + 1 != argc) {
		json_decref(req);
		return ctl_usage_error("logs", "logs wants exactly one NAME");
	}
	proto_request_set_str(req, "name", argv[optind]);
	proto_request_set_bool(req, "follow", follow);
	r = ctl_connect(c);
	if (!r)
		r = ctl_call(c, req, &res);
	else
		json_decref(req);
	if (r)
		return r;
	print_data(res);
	json_decref(res);
	return follow ? stream(c, log_event_cb, NULL) : CTL_EXIT_OK;
}

static void vm_event_cb(struct ctl *c, const struct proto_response *ev)
{
	if (strcmp(ev->event, "vm"))
		return;
	if (c->json) {
		/* one compact object per line, so scripts can read it line by line */
		json_dumpf(ev->root, stdout, JSON_COMPACT | JSON_SORT_KEYS);
		putchar('\n');
		fflush(stdout);
	} else {
		output_event(ev->root);
	}
}

int console_events(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "vm", required_argument, NULL, 'v' },
		{ "since", required_argument, NULL, 's' },
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	json_t *req = ctl_request(c, PROTO_OP_EVENTS_SUBSCRIBE);
	uint64_t since;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		if (o == 'v') {
			proto_request_set_str(req, "vm", optarg);
		} else if (o == 's' && util_parse_uint(optarg, 0, INT64_MAX, &since) == 0) {
			proto_request_set_int(req, "since", (json_int_t)since);
		} else if (o != 'o' || ctl_parse_output(optarg, c) < 0) {
			json_decref(req);
			return ctl_usage_error("events", "bad option or value '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc) {
		json_decref(req);
		return ctl_usage_error("events", "events takes no NAME; use --vm NAME");
	}
	r = ctl_connect(c);
	if (!r)
		r = ctl_call(c, req, NULL);
	else
		json_decref(req);
	if (r)
		return r;
	if (!c->json)
		setvbuf(stdout, NULL, _IOLBF, 0);
	return stream(c, vm_event_cb, "event stream");
}
