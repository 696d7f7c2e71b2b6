/* SPDX-License-Identifier: MIT */
/*
 * The control socket: listening, peer credentials, line framing, in-order
 * request handling, writes.  What a line or a console byte means is
 * dispatch.c's business; this file only moves them.
 */
#include <errno.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"

/* Stop reading from a busy connection past this much buffered input. */
#define CONN_INPUT_MAX   (4 * PROTO_MAX_LINE)
/* A client that lets this much output pile up is dropped. */
#define CONN_OUTPUT_MAX  (16 * 1024 * 1024)

struct write_req {
	uv_write_t req;
	uv_buf_t buf;
};

static void conn_pump(struct conn *c);
static void conn_set_reading(struct conn *c, bool on);

bool conn_may_access(const struct conn *c, uint32_t owner)
{
	return c->cred.uid == 0 || c->cred.uid == c->d->uid || c->cred.uid == owner;
}

/* ---- closing ------------------------------------------------------------ */

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	proto_linebuf_free(&c->lb);
	free(c);
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	TAILQ_REMOVE(&c->d->conns, c, link);
	dispatch_conn_closed(c);
	/* uv_close lets queued writes fail with ECANCELED; their callbacks
	 * still run and free the buffers. */
	uv_close((uv_handle_t *)&c->pipe, conn_close_cb);
}

static void shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	free(req);
	conn_close(c);
}

void conn_end(struct conn *c)
{
	uv_shutdown_t *req;

	if (c->closing || c->ending)
		return;
	req = malloc(sizeof(*req));
	if (!req) {
		conn_close(c);
		return;
	}
	req->data = c;
	c->ending = true;
	c->follow_vm = 0;
	c->subscribed = false;
	conn_set_reading(c, false);
	if (uv_shutdown(req, (uv_stream_t *)&c->pipe, shutdown_cb) < 0) {
		free(req);
		conn_close(c);
	}
}

void control_close_all(struct mvmd *d)
{
	while (!TAILQ_EMPTY(&d->conns))
		conn_close(TAILQ_FIRST(&d->conns));
	if (d->listening) {
		d->listening = false;
		uv_close((uv_handle_t *)&d->listener, NULL);
		unlink(d->cfg.socket_path);
	}
}

/* ---- writing ------------------------------------------------------------ */

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;

	free(w->buf.base);
	free(w);
}

/* Queue buf (taken over) on c. */
static void conn_write(struct conn *c, char *buf, size_t len)
{
	struct write_req *w;

	if (c->closing) {
		free(buf);
		return;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) > CONN_OUTPUT_MAX) {
		log_warn("client pid %d is not reading; closing its connection", (int)c->cred.pid);
		free(buf);
		conn_close(c);
		return;
	}
	w = malloc(sizeof(*w));
	if (!w) {
		free(buf);
		conn_close(c);
		return;
	}
	w->buf = uv_buf_init(buf, len);
	if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, write_cb) < 0) {
		free(buf);
		free(w);
		conn_close(c);
	}
}

void conn_send(struct conn *c, json_t *msg)
{
	char *buf;
	size_t len;

	if (!msg || proto_encode(msg, &buf, &len) < 0) {
		log_error("cannot encode a message for client pid %d", (int)c->cred.pid);
		json_decref(msg);
		conn_close(c);
		return;
	}
	json_decref(msg);
	conn_write(c, buf, len);
}

void conn_send_line(struct conn *c, char *buf, size_t len)
{
	conn_write(c, buf, len);
}

void conn_send_raw(struct conn *c, const void *data, size_t len)
{
	char *buf = malloc(len ? len : 1);

	if (!buf) {
		conn_close(c);
		return;
	}
	memcpy(buf, data, len);
	conn_write(c, buf, len);
}

void conn_reply_ok(struct conn *c, json_t *id, json_t *result)
{
	conn_send(c, proto_response_ok(id, result));
}

void conn_reply_error(struct conn *c, json_t *id, const struct proto_error *err)
{
	conn_send(c, proto_response_error(id, err));
}

/* ---- reading ------------------------------------------------------------ */

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = malloc(65536);
	buf->len = buf->base ? 65536 : 0;
}

static void conn_handle_line(struct conn *c, const char *line, size_t len)
{
	struct proto_request req;
	struct proto_error err;

	if (proto_request_decode(line, len, &req, &err) < 0) {
		log_debug("client pid %d: %s: %s", (int)c->cred.pid, proto_err_name(err.code),
		          err.message);
		conn_reply_error(c, req.id, &err);
	} else {
		dispatch_request(c, &req);
	}
	proto_request_done(&req);
}

static void conn_too_large(struct conn *c)
{
	struct proto_error err;

	proto_error_set(&err, PROTO_ERR_TOO_LARGE, NULL,
	                "request line longer than %d bytes was dropped; send smaller requests",
	                PROTO_MAX_LINE);
	conn_reply_error(c, json_null(), &err);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void conn_set_reading(struct conn *c, bool on)
{
	if (c->closing || c->reading == on)
		return;
	c->reading = on;
	if (on)
		uv_read_start((uv_stream_t *)&c->pipe, alloc_cb, read_cb);
	else
		uv_read_stop((uv_stream_t *)&c->pipe);
}

/* Handle buffered lines in order until one makes the connection wait. */
static void conn_pump(struct conn *c)
{
	const char *rest;
	size_t len, rest_len;
	char *line;
	int r;

	if (c->ending)
		return;
	while (!c->closing && !c->busy && c->mode == CONN_JSON) {
		r = proto_linebuf_next(&c->lb, &line, &len);
		if (r == 0)
			break;
		if (r == -EMSGSIZE)
			conn_too_large(c);
		else
			conn_handle_line(c, line, len);
	}
	if (!c->closing && c->mode == CONN_CONSOLE) {
		/* bytes sent right after the vm.console request are input */
		proto_linebuf_take_rest(&c->lb, &rest, &rest_len);
		if (rest_len)
			dispatch_console_in(c, rest, rest_len);
	}
	conn_set_reading(c, proto_linebuf_pending(&c->lb) < CONN_INPUT_MAX);
}

void conn_resume(struct conn *c)
{
	c->busy = false;
	conn_pump(c);
}

static void read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (n < 0) {
		free(buf->base);
		conn_close(c);
		return;
	}
	if (n == 0 || c->closing || c->ending) {
		free(buf->base);
		return;
	}
	if (c->mode == CONN_CONSOLE) {
		dispatch_console_in(c, buf->base, n);
	} else if (proto_linebuf_feed(&c->lb, buf->base, n) < 0) {
		free(buf->base);
		conn_close(c);
		return;
	}
	free(buf->base);
	conn_pump(c);
}

/* ---- accepting ---------------------------------------------------------- */

static int conn_read_cred(struct conn *c)
{
	struct ucred uc;
	socklen_t len = sizeof(uc);
	uv_os_fd_t fd;

	if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
		return -errno;
	c->cred.uid = uc.uid;
	c->cred.gid = uc.gid;
	c->cred.pid = uc.pid;
	/* Supplementary groups decide file access (access.c); a kernel that
	 * lacks SO_PEERGROUPS leaves only the primary group. */
	len = sizeof(c->cred.groups);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, c->cred.groups, &len) == 0)
		c->cred.ngroups = len / sizeof(gid_t);
	else
		c->cred.ngroups = 0;
	return 0;
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct mvmd *d = server->data;
	struct conn *c;

	if (status < 0) {
		log_warn("accept: %s", uv_strerror(status));
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->d = d;
	proto_linebuf_init(&c->lb);
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	TAILQ_INSERT_TAIL(&d->conns, c, link);
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 || conn_read_cred(c) < 0) {
		conn_close(c);
		return;
	}
	log_debug("connection from pid %d uid %u", (int)c->cred.pid, (unsigned)c->cred.uid);
	conn_set_reading(c, true);
}

/* Refuse to steal the socket of a running mvmd; remove a stale one. */
static int socket_claim(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
	close(fd);
	if (r == 0)
		return -EADDRINUSE;
	if (unlink(path) < 0 && errno != ENOENT)
		return -errno;
	return 0;
}

/* 0660, group mvm where it exists, so members of mvm may connect. */
static int socket_secure(const char *path)
{
	struct group *g = getgrnam("mvm");

	if (chmod(path, 0660) < 0)
		return -errno;
	if (g && chown(path, (uid_t)-1, g->gr_gid) < 0)
		log_warn("cannot give %s to group mvm: %s", path, strerror(errno));
	return 0;
}

int control_listen(struct mvmd *d)
{
	const char *path = d->cfg.socket_path;
	int r;

	r = socket_claim(path);
	if (r < 0) {
		log_error("socket %s: %s", path, r == -EADDRINUSE ?
		          "another mvmd is listening there; stop it or pass --socket PATH" :
		          strerror(-r));
		return r;
	}
	uv_pipe_init(d->loop, &d->listener, 0);
	d->listener.data = d;
	d->listening = true;
	r = uv_pipe_bind(&d->listener, path);
	if (r == 0)
		r = socket_secure(path);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&d->listener, SOMAXCONN, connection_cb);
	if (r < 0)
		log_error("cannot listen on %s: %s", path, r > -4096 ? strerror(-r) : "error");
	return r;
}
