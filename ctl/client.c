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
	return ctl_error(CTL_EXIT_CONNECT, "connect", "cannot connect to mvmd at %s: %s", path, fix);
}

/* Connects without printing: 0, or negative errno (`run` retries some). */
int ctl_try_connect(struct ctl *c)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd;

	if (strlen(c->socket_path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, c->socket_path, strlen(c->socket_path) + 1);

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int err = errno;

		close(fd);
		return -err;
	}
	c->fd = fd;
	proto_linebuf_init_max(&c->lb, CTL_MAX_RESPONSE);
	return 0;
}

int ctl_connect(struct ctl *c)
{
	int r = ctl_try_connect(c);

	return r < 0 ? connect_error(c->socket_path, -r) : CTL_EXIT_OK;
}

void ctl_disconnect(struct ctl *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	proto_linebuf_free(&c->lb);
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

/* Reads more bytes into the line buffer; 1, 0 on EOF, or -ETIMEDOUT etc. */
static int fill(struct ctl *c, int timeout_ms)
{
	static char chunk[1 << 20];     /* big reads: a list is megabytes */
	struct pollfd p = { .fd = c->fd, .events = POLLIN };
	ssize_t n;
	int r;

	do
		r = poll(&p, 1, timeout_ms);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return -ETIMEDOUT;
	do
		n = read(c->fd, chunk, sizeof(chunk));
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	r = proto_linebuf_feed(&c->lb, chunk, (size_t)n);
	return r < 0 ? r : n > 0;
}

/* The next line, valid until the next read; errors as ctl_read_message. */
static int read_line(struct ctl *c, int timeout_ms, char **ret_line, size_t *ret_len)
{
	int r;

	while ((r = proto_linebuf_next(&c->lb, ret_line, ret_len)) == 0) {
		r = fill(c, timeout_ms);
		if (r < 0)
			return r;
		if (r == 0)
			return -EPIPE;
	}
	return r < 0 ? (r == -EMSGSIZE ? -EFBIG : r) : 0;
}

/*
 * Reads the next message (response or event). 0 and *ret on success;
 * -EPIPE when mvmd closed the connection; -ETIMEDOUT; -EBADMSG for a line
 * that is not a response or event (a daemon bug, or not mvmd at all);
 * -EFBIG for a line longer than CTL_MAX_RESPONSE.
 */
int ctl_read_message(struct ctl *c, int timeout_ms, struct proto_response *ret)
{
	size_t len;
	char *line;
	int r = read_line(c, timeout_ms, &line, &len);

	if (r < 0)
		return r;
	r = proto_response_parse(line, len, ret);
	return r == -EINVAL ? -EBADMSG : r;
}

/* Hands out bytes that arrived after the last JSON line (console mode);
 * valid until the next read. */
void ctl_take_buffered(struct ctl *c, const char **ret_data, size_t *ret_len)
{
	proto_linebuf_take_rest(&c->lb, ret_data, ret_len);
}

static int daemon_error(const struct proto_response *resp)
{
	/* a scheduler requeues on 75 and fails the job on 1 */
	return ctl_error(resp->err_code == PROTO_ERR_UNAVAILABLE ? CTL_EXIT_TEMPFAIL : CTL_EXIT_DAEMON,
			 resp->err_name, "%s (%s)", resp->err_message, resp->err_name);
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
	int exit = r == -EMSGSIZE ? CTL_EXIT_USAGE : CTL_EXIT_CONNECT;

	if (r == -EPIPE || r == -ECONNRESET)
		return ctl_error(exit, "connection", "mvmd closed the connection before "
				 "answering; check its log ('journalctl -u mvmd')");
	if (r == -EBADMSG)
		return ctl_error(exit, "connection", "mvmd sent a line that is not a protocol "
				 "message; is --socket pointing at mvmd?");
	if (r == -EFBIG)
		return ctl_error(exit, "connection", "mvmd's answer exceeds %u MiB; narrow it "
				 "with --state or --label", CTL_MAX_RESPONSE >> 20);
	if (r == -EMSGSIZE)
		return ctl_error(exit, "too_large", "the request exceeds the protocol's %d-byte "
				 "line limit; shorten the command line or labels", PROTO_MAX_LINE);
	return ctl_error(exit, "connection", "talking to mvmd failed: %s", strerror(-r));
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

/* The id of a checked message line (none: an event) and, when it says
 * ok, its result.  -EBADMSG for a line that is no message. */
static int scan_message(const char *line, size_t len, bool *ret_has_id, long long *ret_id,
                        bool *ret_ok, struct proto_span *ret_result)
{
	struct proto_span msg, k, v;
	size_t pos = 0;
	int r;

	if (proto_scan_check(line, len, &msg) < 0 || msg.p[0] != '{')
		return -EBADMSG;
	*ret_has_id = *ret_ok = false;
	*ret_id = 0;
	ret_result->p = NULL;
	while ((r = proto_scan_next(msg, &pos, &k, &v)) == 1) {
		if (proto_scan_key_is(k, "id"))
			*ret_has_id = true, proto_scan_int(v, ret_id);
		else if (proto_scan_key_is(k, "ok"))
			*ret_ok = v.n == 4 && !memcmp(v.p, "true", 4);
		else if (proto_scan_key_is(k, "result") && v.p[0] == '{')
			*ret_result = v;
	}
	return r < 0 ? -EBADMSG : 0;
}

/*
 * ctl_call for large results (vm.list): the result is read in place from
 * the response line instead of being loaded as a JSON tree.  On success
 * *ret_result spans the result object, valid until the next read on c.
 */
int ctl_call_span(struct ctl *c, json_t *req, struct proto_span *ret_result)
{
	long long want = json_integer_value(json_object_get(req, "id")), id;
	struct proto_response resp;
	struct proto_span result;
	bool has_id = false, ok = false;
	size_t len;
	char *line;
	int r;

	r = send_request(c, req);
	json_decref(req);
	while (r == 0) {
		r = read_line(c, -1, &line, &len);
		if (r == 0)
			r = scan_message(line, len, &has_id, &id, &ok, &result);
		if (r == 0 && has_id && id == want)
			break;
	}
	if (r < 0)
		return lost_connection(r);
	if (ok && result.p) {
		*ret_result = result;
		return CTL_EXIT_OK;
	}
	/* an error answer is small: read it the usual way */
	if (proto_response_parse(line, len, &resp) < 0)
		return lost_connection(-EBADMSG);
	r = resp.ok ? lost_connection(-EBADMSG) : daemon_error(&resp);
	proto_response_done(&resp);
	return r;
}
