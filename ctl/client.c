/* SPDX-License-Identifier: MIT */
/*
 * The connection to mvmd: connect with a diagnosis a user can act on,
 * newline-delimited JSON framing, and matching each response to its request.
 * Functions here return a ctl_exit code and print the error themselves,
 * since mvmctl is the layer that decides what the user sees.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctl/ctl.h"

static int connect_error(const char *path, int err)
{
	const char *fix;

	switch (err) {
	case ENOENT:
		fix = "the socket does not exist: is mvmd running? Start it "
		      "('systemctl start mvmd' or 'mvmd'), or point mvmctl at "
		      "its socket with --socket PATH or MVM_SOCKET";
		break;
	case EACCES:
	case EPERM:
		fix = "permission denied: join the 'mvm' group "
		      "('usermod -aG mvm $USER', then log in again), run as "
		      "root, or use --socket PATH for a daemon you own";
		break;
	case ECONNREFUSED:
		fix = "nobody listens on the socket (mvmd exited and left it "
		      "behind): start mvmd, or use --socket PATH";
		break;
	case ENAMETOOLONG:
		fix = "the socket path is too long for a Unix socket: use a "
		      "shorter --socket PATH";
		break;
	default:
		fix = strerror(err);
		break;
	}
	fprintf(stderr, "mvmctl: cannot connect to mvmd at %s: %s\n", path, fix);
	return CTL_EXIT_CONNECT;
}

int ctl_connect(struct ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(c->socket_path) >= sizeof(sa.sun_path))
		return connect_error(c->socket_path, ENAMETOOLONG);
	memcpy(sa.sun_path, c->socket_path, strlen(c->socket_path) + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return connect_error(c->socket_path, errno);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		return connect_error(c->socket_path, err);
	}
	c->fd = fd;
	return CTL_EXIT_OK;
}

void ctl_disconnect(struct ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->rbuf);
	c->rbuf = NULL;
	c->rlen = c->rcap = 0;
}

int ctl_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, p, len);
		if (n < 0)
			return -errno;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Makes room for at least one more read; -EMSGSIZE past the bound. */
static int reserve(struct ctl *c, size_t want)
{
	size_t cap = c->rcap ? c->rcap : 16384;
	char *b;

	if (c->rcap - c->rlen >= want)
		return 0;
	while (cap - c->rlen < want)
		cap *= 2;
	if (cap > CTL_MAX_RESPONSE + want)
		return -EMSGSIZE;
	b = realloc(c->rbuf, cap);
	if (!b)
		return -ENOMEM;
	c->rbuf = b;
	c->rcap = cap;
	return 0;
}

/* Reads more bytes into the buffer; 1, 0 on EOF, or -ETIMEDOUT etc. */
static int fill(struct ctl *c, int timeout_ms)
{
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	ssize_t n;
	int r;

	r = reserve(c, 65536);
	if (r < 0)
		return r == -EMSGSIZE ? -EFBIG : r;
	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	do
		n = read(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->rlen += (size_t)n;
	return n > 0;
}

/*
 * Reads the next message (response or event). 0 and *ret on success;
 * -EPIPE when mvmd closed the connection; -ETIMEDOUT; -EBADMSG for a line
 * that is not a response or event (a daemon bug, or not mvmd at all).
 */
int ctl_read_message(struct ctl *c, int timeout_ms, struct proto_response *ret)
{
	size_t scanned = 0, len;
	char *nl;
	int r;

	for (;;) {
		nl = c->rlen > scanned ? memchr(c->rbuf + scanned, '\n', c->rlen - scanned) : NULL;
		if (nl)
			break;
		scanned = c->rlen;
		r = fill(c, timeout_ms);
		if (r < 0)
			return r;
		if (r == 0)
			return -EPIPE;
	}
	len = (size_t)(nl - c->rbuf);
	r = proto_response_parse(c->rbuf, len, ret);
	memmove(c->rbuf, nl + 1, c->rlen - len - 1);
	c->rlen -= len + 1;
	return r == -EINVAL ? -EBADMSG : r;
}

/* Hands out bytes that arrived after the last JSON line (console mode). */
void ctl_take_buffered(struct ctl *c, const char **ret_data, size_t *ret_len)
{
	*ret_data = c->rbuf;
	*ret_len = c->rlen;
	c->rlen = 0;
}

static int daemon_error(const struct proto_response *resp)
{
	fprintf(stderr, "mvmctl: %s (%s)\n", resp->err_message, resp->err_name);
	return CTL_EXIT_DAEMON;
}

static int send_request(struct ctl *c, const json_t *req)
{
	char *line;
	size_t len;
	int r;

	r = proto_encode(req, &line, &len);
	if (r < 0)
		return r;
	r = ctl_write_all(c->fd, line, len);
	free(line);
	return r;
}

static int lost_connection(int r)
{
	if (r == -EPIPE || r == -ECONNRESET)
		fprintf(stderr, "mvmctl: mvmd closed the connection before "
			"answering; check its log ('journalctl -u mvmd')\n");
	else if (r == -EBADMSG)
		fprintf(stderr, "mvmctl: mvmd sent a line that is not a protocol "
			"message; is --socket pointing at mvmd?\n");
	else if (r == -EFBIG)
		fprintf(stderr, "mvmctl: mvmd's answer exceeds %u MiB; narrow it "
			"with --state or --label\n", CTL_MAX_RESPONSE >> 20);
	else if (r == -EMSGSIZE)
		fprintf(stderr, "mvmctl: the request exceeds the protocol's %d-byte "
			"line limit; shorten the command line or labels\n", PROTO_MAX_LINE);
	else
		fprintf(stderr, "mvmctl: talking to mvmd failed: %s\n", strerror(-r));
	return r == -EMSGSIZE ? CTL_EXIT_USAGE : CTL_EXIT_CONNECT;
}

/* A request with the next id on this connection; aborts on ENOMEM. */
json_t *ctl_request(struct ctl *c, enum proto_op op)
{
	json_t *req = proto_request_new(++c->next_id, op);

	if (!req)
		abort(); /* a CLI out of memory has nothing better to do */
	return req;
}

/*
 * Sends req (consumed) and waits for its response, skipping events. On
 * success *ret_result, if asked for, holds a reference to the result.
 */
int ctl_call(struct ctl *c, json_t *req, json_t **ret_result)
{
	json_int_t id = json_integer_value(json_object_get(req, "id"));
	struct proto_response resp;
	int r;

	r = send_request(c, req);
	json_decref(req);
	if (r < 0)
		return lost_connection(r);
	for (;;) {
		r = ctl_read_message(c, -1, &resp);
		if (r < 0)
			return lost_connection(r);
		if (!resp.is_event && json_integer_value(resp.id) == id)
			break;
		proto_response_done(&resp);
	}
	if (!resp.ok) {
		r = daemon_error(&resp);
		proto_response_done(&resp);
		return r;
	}
	if (ret_result)
		*ret_result = json_incref(resp.result);
	proto_response_done(&resp);
	return CTL_EXIT_OK;
}
