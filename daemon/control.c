/* SPDX-License-Identifier: MIT */
/*
 * The control socket: listening, peer credentials, line framing, in-order
 * request handling, writes.  What a line or a console byte means is
 * dispatch.c's business; this file only moves them.
 */
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"

/* Stop reading from a busy connection past this much buffered input. */
#define CONN_INPUT_MAX   (4 * PROTO_MAX_LINE)
/* A client that lets this much output pile up is dropped. */
#define CONN_OUTPUT_MAX  (16 * 1024 * 1024)
/* Past this much unsent output its next requests wait until it reads. */
#define CONN_OUTPUT_PAUSE (1024 * 1024)

/* What one uid's connections hold: counted against client_max_per_uid
 * and client_output_max_per_uid; freed when it holds nothing. */
struct client_uid {
	TAILQ_ENTRY(client_uid) link;
	uid_t uid;
	uint32_t nconns;
	uint64_t out_bytes;
	uint64_t refused;               /* refused while it held any, for the log */
};

struct write_req {
	uv_write_t req;
	uv_buf_t buf;
	struct conn *c;                 /* valid until its callback ran */
	TAILQ_ENTRY(write_req) held_link;
};

static void conn_pump(struct conn *c);
static void conn_set_reading(struct conn *c, bool on);
static void held_drop(struct conn *c);

bool conn_may_access(const struct conn *c, uint32_t owner)
{
	return c->cred.uid == 0 || c->cred.uid == c->d->uid || c->cred.uid == owner;
}

/* ---- per-uid use -------------------------------------------------------- */

static struct client_uid *uid_use(struct mvmd *d, uid_t uid)
{
	struct client_uid *u;

	TAILQ_FOREACH(u, &d->client_uids, link)
		if (u->uid == uid)
			return u;
	u = calloc(1, sizeof(*u));
	if (!u)
		return NULL;
	u->uid = uid;
	TAILQ_INSERT_TAIL(&d->client_uids, u, link);
	return u;
}

static void uid_put(struct mvmd *d, struct client_uid *u)
{
	if (u && u->nconns == 0 && u->out_bytes == 0) {
		TAILQ_REMOVE(&d->client_uids, u, link);
		free(u);
	}
}

/* ---- closing ------------------------------------------------------------ */

static void conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;
	struct mvmd *d = c->d;

	/* every write callback ran before this one */
	if (c->counted) {
		c->u->nconns--;
		if (c->cred.uid != 0)
			d->nconns_counted--;
	}
	uid_put(d, c->u);
	proto_linebuf_free(&c->lb);
	free(c);
}

void conn_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	held_drop(c);
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
	if (!TAILQ_EMPTY(&c->held)) {
		c->end_held = req;      /* after the held output: conn_release */
		return;
	}
	if (uv_shutdown(req, (uv_stream_t *)&c->pipe, shutdown_cb) < 0) {
		free(req);
		conn_close(c);
	}
}

void control_close_all(struct mvmd *d)
{
	while (!TAILQ_EMPTY(&d->conns))
		conn_close(TAILQ_FIRST(&d->conns));
	if (d->turn_init) {
		d->turn_init = false;
		uv_close((uv_handle_t *)&d->turn_prepare, NULL);
		uv_close((uv_handle_t *)&d->turn_check, NULL);
	}
	if (d->line_timer_init) {
		d->line_timer_init = false;
		uv_close((uv_handle_t *)&d->line_timer, NULL);
	}
	if (d->listening) {
		d->listening = false;
		uv_close((uv_handle_t *)&d->listener, NULL);
		unlink(d->cfg.socket_path);
	}
}

/* ---- writing ------------------------------------------------------------ */

/* Bytes queued on c: in libuv's queue and held for the batch. */
static size_t unsent(struct conn *c)
{
	return uv_stream_get_write_queue_size((uv_stream_t *)&c->pipe) + c->held_bytes;
}

static void write_cb(uv_write_t *req, int status)
{
	struct write_req *w = (struct write_req *)req;
	struct conn *c = w->c;

	if (c->u)
		c->u->out_bytes -= w->buf.len;  /* conn_close_cb runs after, and puts it */
	free(w->buf.base);
	free(w);
	/* it read: the requests it sent meanwhile go on */
	if (!c->closing && c->out_paused && unsent(c) < CONN_OUTPUT_PAUSE / 2) {
		c->out_paused = false;
		conn_pump(c);
	}
}

/* Queue buf (taken over) on c. */
static void conn_write(struct conn *c, char *buf, size_t len)
{
	struct write_req *w;

	if (c->closing) {
		free(buf);
		return;
	}
	if (unsent(c) > CONN_OUTPUT_MAX) {
		log_warn("client pid %d is not reading; closing its connection", (int)c->cred.pid);
		free(buf);
		conn_close(c);
		return;
	}
	if (c->u && c->cred.uid != 0 &&
	    c->u->out_bytes + len > c->d->cfg.client_output_max_per_uid) {
		log_warn("uid %u has %llu bytes unsent on its connections (client_output_max_per_uid "
		         "%llu); closing the connection of pid %d", (unsigned)c->cred.uid,
		         (unsigned long long)c->u->out_bytes,
		         (unsigned long long)c->d->cfg.client_output_max_per_uid, (int)c->cred.pid);
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
	w->c = c;
	if (vms_batch_open(c->d) || !TAILQ_EMPTY(&c->held)) {
		/* group commit: nothing leaves before what came earlier is stored */
		TAILQ_INSERT_TAIL(&c->held, w, held_link);
		c->held_bytes += len;
		c->d->output_held = true;
	} else if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, write_cb) < 0) {
		free(buf);
		free(w);
		conn_close(c);
		return;
	}
	if (c->u)
		c->u->out_bytes += len;
	if (unsent(c) > CONN_OUTPUT_PAUSE)
		c->out_paused = true;
}

/* ---- group commit: output waits for the batch ---------------------------
 *
 * A fact (a VM booted or ended) and a spawned pid are committed in one
 * transaction per loop turn (vms.c); so that no client hears of a change
 * a kill -9 of mvmd would lose, everything written to a client while that
 * transaction is open is held, and the turn's end commits it first, then
 * sends (docs/architecture.md, "Group commit").  A failed commit keeps the
 * facts in memory (they happened) and the output goes out all the same.
 */

static void held_drop(struct conn *c)
{
	struct write_req *w;

	while ((w = TAILQ_FIRST(&c->held))) {
		TAILQ_REMOVE(&c->held, w, held_link);
		if (c->u)
			c->u->out_bytes -= w->buf.len;
		free(w->buf.base);
		free(w);
	}
	c->held_bytes = 0;
	free(c->end_held);
	c->end_held = NULL;
}

/* Hand c's held output to libuv in order, then the shutdown conn_end
 * asked for meanwhile. */
static void conn_release(struct conn *c)
{
	uv_shutdown_t *req = c->end_held;
	struct write_req *w;

	while ((w = TAILQ_FIRST(&c->held))) {
		TAILQ_REMOVE(&c->held, w, held_link);
		c->held_bytes -= w->buf.len;
		if (uv_write(&w->req, (uv_stream_t *)&c->pipe, &w->buf, 1, write_cb) < 0) {
			if (c->u)
				c->u->out_bytes -= w->buf.len;
			free(w->buf.base);
			free(w);
			conn_close(c);
			return;
		}
	}
	c->end_held = NULL;
	if (req && uv_shutdown(req, (uv_stream_t *)&c->pipe, shutdown_cb) < 0) {
		free(req);
		conn_close(c);
	}
}

#ifdef MVM_TEST_HOOKS
/* Test builds only: MVM_TEST_COMMIT_STALL_MS=N makes the turn's end stand
 * still N ms before it commits an open batch, so a test can kill -9 mvmd
 * inside the window in which no held output may have left. */
static void commit_stall(struct mvmd *d)
{
	long ms = mvmd_test_stall_ms("MVM_TEST_COMMIT_STALL_MS");

	if (ms > 0 && vms_batch_open(d))
		mvmd_sleep_ms(ms);
}
#endif

static void turn_end(struct mvmd *d)
{
	struct conn *c, *next;

#ifdef MVM_TEST_HOOKS
	commit_stall(d);
#endif
	vms_commit_batch(d);
	if (!d->output_held)
		return;
	d->output_held = false;
	for (c = TAILQ_FIRST(&d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		conn_release(c);
	}
}

/* After the I/O callbacks (check) and before the loop would block
 * (prepare), so a batch stays open at most one turn. */
static void turn_check_cb(uv_check_t *h)
{
	turn_end(h->data);
}

static void turn_prepare_cb(uv_prepare_t *h)
{
	turn_end(h->data);
}

static void turn_init(struct mvmd *d)
{
	uv_prepare_init(d->loop, &d->turn_prepare);
	uv_check_init(d->loop, &d->turn_check);
	d->turn_prepare.data = d->turn_check.data = d;
	uv_prepare_start(&d->turn_prepare, turn_prepare_cb);
	uv_check_start(&d->turn_check, turn_check_cb);
	/* they keep nothing alive: the loop ends when the rest does */
	uv_unref((uv_handle_t *)&d->turn_prepare);
	uv_unref((uv_handle_t *)&d->turn_check);
	d->turn_init = true;
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
	while (!c->closing && !c->busy && !c->out_paused && c->mode == CONN_JSON) {
		r = proto_linebuf_next(&c->lb, &line, &len);
		if (r == 0)
			break;
		c->line_since = 0;      /* a line ended; the next starts afresh */
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
	if (c->closing)
		return;
	/* a partial line left after whole ones starts its clock now */
	if (c->mode == CONN_JSON && c->line_since == 0 && proto_linebuf_pending(&c->lb))
		c->line_since = mvmd_mono();
	if (c->mode == CONN_CONSOLE)
		conn_set_reading(c, !c->console_paused);
	else
		conn_set_reading(c, !c->out_paused &&
		                 proto_linebuf_pending(&c->lb) < CONN_INPUT_MAX);
}

void conn_console_pause(struct conn *c, bool paused)
{
	if (c->closing || c->console_paused == paused)
		return;
	c->console_paused = paused;
	if (c->mode == CONN_CONSOLE)
		conn_set_reading(c, !paused);
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
	} else if (c->line_since == 0) {
		c->line_since = mvmd_mono();
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

/* Unfinished request lines older than client_line_timeout: a client that
 * trickles a line (slowloris) holds its buffer only that long. */
static void line_timer_cb(uv_timer_t *t)
{
	struct mvmd *d = t->data;
	double now = mvmd_mono(), limit = d->cfg.client_line_timeout;
	struct proto_error err;
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->mode != CONN_JSON || c->busy || c->out_paused || c->ending ||
		    c->line_since == 0 || now - c->line_since <= limit)
			continue;
		if (proto_linebuf_pending(&c->lb) == 0) {
			c->line_since = 0;
			continue;
		}
		log_warn("client pid %d uid %u left a request line unfinished for %.0f s; "
		         "closing its connection", (int)c->cred.pid, (unsigned)c->cred.uid,
		         now - c->line_since);
		proto_error_set(&err, PROTO_ERR_LIMIT_EXCEEDED, NULL, "request line unfinished "
		                "for %.0f s (client_line_timeout); send whole lines", limit);
		conn_reply_error(c, json_null(), &err);
		conn_end(c);
	}
}

static int fd_limit(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY ||
	    rl.rlim_cur > INT32_MAX)
		return INT32_MAX;
	return (int)rl.rlim_cur;
}

/* Why c may not stay (NULL: it may): fds run short, too many
 * connections in all or of its uid.  Root is bounded only by half the fd
 * reserve, so a flood of any other uid never locks root out. */
static const char *conn_refusal(struct conn *c, int fd, char *why, size_t size)
{
	struct mvmd *d = c->d;
	uint32_t reserve = d->cfg.fd_reserve;
	int lim = fd_limit();

	/* fds are handed out lowest first: fd is about how many are open */
	if ((int64_t)fd + (c->cred.uid == 0 ? reserve / 2 : reserve) >= lim) {
		snprintf(why, size, "mvmd is short of file descriptors (fd %d of %d, %u kept "
		         "for workers: fd_reserve); retry later", fd, lim, reserve);
		return why;
	}
	if (c->cred.uid == 0)
		return NULL;
	if (d->nconns_counted >= d->cfg.client_max) {
		snprintf(why, size, "mvmd has %u client connections (client_max); close some "
		         "and retry", d->nconns_counted);
		return why;
	}
	if (c->u->nconns >= d->cfg.client_max_per_uid) {
		snprintf(why, size, "uid %u has %u connections open (client_max_per_uid); close "
		         "some and retry", (unsigned)c->cred.uid, c->u->nconns);
		return why;
	}
	return NULL;
}

static void connection_cb(uv_stream_t *server, int status)
{
	struct mvmd *d = server->data;
	struct proto_error err;
	struct conn *c;
	uv_os_fd_t fd;
	char why[256];
	uint64_t ms;

	if (status < 0) {
		/* libuv accepted and closed the client to make room (EMFILE) */
		log_warn("accept: %s; a client was refused (fd_reserve %u)", uv_strerror(status),
		         d->cfg.fd_reserve);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return;
	c->d = d;
	TAILQ_INIT(&c->held);
	proto_linebuf_init(&c->lb);
	uv_pipe_init(d->loop, &c->pipe, 0);
	c->pipe.data = c;
	TAILQ_INSERT_TAIL(&d->conns, c, link);
	if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0 || conn_read_cred(c) < 0 ||
	    uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 || !(c->u = uid_use(d, c->cred.uid))) {
		conn_close(c);
		return;
	}
	if (conn_refusal(c, fd, why, sizeof(why))) {
		/* the first of a flood, then every 1000th */
		if (c->u->refused++ % 1000 == 0)
			log_warn("refused a connection from pid %d uid %u (%llu so far): %s",
			         (int)c->cred.pid, (unsigned)c->cred.uid,
			         (unsigned long long)c->u->refused, why);
		proto_error_set(&err, PROTO_ERR_LIMIT_EXCEEDED, NULL, "%s", why);
		conn_reply_error(c, json_null(), &err);
		conn_end(c);
		return;
	}
	c->counted = true;
	c->u->nconns++;
	if (c->cred.uid != 0)
		d->nconns_counted++;
	if (!d->line_timer_init && d->cfg.client_line_timeout > 0) {
		uv_timer_init(d->loop, &d->line_timer);
		d->line_timer.data = d;
		d->line_timer_init = true;
		ms = (uint64_t)(d->cfg.client_line_timeout * 1000 / 4) + 1;
		uv_timer_start(&d->line_timer, line_timer_cb, ms, ms);
	}
	log_debug("connection from pid %d uid %u", (int)c->cred.pid, (unsigned)c->cred.uid);
	conn_set_reading(c, true);
}

/* Whether the process that listens on connected fd is gone: an mvmd
 * killed while spawning, whose child still holds a copy of its socket for
 * a moment (spawn.c).  Nobody will accept there. */
static bool listener_gone(int fd)
{
	struct ucred cr;
	socklen_t n = sizeof(cr);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &n) == 0 && cr.pid > 0 &&
	       kill(cr.pid, 0) < 0 && errno == ESRCH;
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
	if (r == 0 && listener_gone(fd))
		r = -1;
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

	TAILQ_INIT(&d->client_uids);
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
	turn_init(d);
	r = uv_pipe_bind(&d->listener, path);
	if (r == 0)
		r = socket_secure(path);
	if (r == 0)
		r = uv_listen((uv_stream_t *)&d->listener, SOMAXCONN, connection_cb);
	if (r < 0)
		log_error("cannot listen on %s: %s", path, r > -4096 ? strerror(-r) : "error");
	return r;
}
