/* SPDX-License-Identifier: MIT */
/*
 * Workers: one mvm-vmm process per running VM, spawned detached (its own
 * session, so it outlives mvmd; a sandboxed one as the init of its own PID
 * namespace, spawn.c) with one end of a socketpair as fd 3.  The
 * link carries booted/console/exit from the worker and console-in/shutdown
 * to it.  A worker is finished once both its process exited and its link
 * reached EOF (whichever comes last), so the exit message is never lost to
 * the race between the exit and the last read.
 *
 * This file knows processes only: it commits the VM's state through
 * vm_commit() and tells everything else (waiting clients, console
 * clients, capacity, the restart policy) through worker_hooks.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/util.h"

/* After the process exited, wait this long for the link's EOF. */
#define EXIT_SETTLE_MS 1000
/* A worker whose link ended but that cannot be watched yet: look again. */
#define WATCH_RETRY_MS 100

static void worker_finish(struct worker *w);
static void worker_watch(struct worker *w);

/* One supervisor_request waiting for its reply. */
struct worker_call {
	TAILQ_ENTRY(worker_call) link;
	int64_t seq;
	enum proto_link_type want;      /* result or stats-reply */
	worker_reply_fn cb;
	void *arg;
};

/* Every call in flight hears NULL: the worker is gone or let go. */
static void calls_fail(struct worker *w)
{
	struct worker_call *c;

	while ((c = TAILQ_FIRST(&w->calls))) {
		TAILQ_REMOVE(&w->calls, c, link);
		c->cb(c->arg, NULL);
		free(c);
	}
}

/* ---- lifetime ----------------------------------------------------------- */

static void worker_free(struct worker *w)
{
	calls_fail(w);
	if (w->pidfd >= 0)
		close(w->pidfd);
	sandbox_uid_release(w->d, w->uid);
	proto_linebuf_free(&w->lb);
	if (w->vm->worker == w)
		w->vm->worker = NULL;
	vm_release(w->vm);
	free(w);
}

static void handle_close_cb(uv_handle_t *h)
{
	struct worker *w = h->data;

	if (--w->handles == 0)
		worker_free(w);
}

static void worker_close_handle(struct worker *w, uv_handle_t *h)
{
	if (!uv_is_closing(h))
		uv_close(h, handle_close_cb);
}

static void worker_unlink(struct worker *w)
{
	if (!w->linked)
		return;
	TAILQ_REMOVE(&w->d->workers, w, link);
	w->d->workers_gen++;
	w->linked = false;
	if (w->vm->worker == w)
		w->vm->worker = NULL;
}

void supervisor_observe(struct mvmd *d, const struct worker_hooks *h)
{
	assert(d->nworker_hooks < WORKER_HOOKS_MAX);  /* main.c wires a fixed set */
	d->worker_hooks[d->nworker_hooks++] = h;
}

/* Tell every observer that has this hook. */
#define HOOKS(w, hook, ...)                                                   \
	do {                                                                  \
		for (int i_ = 0; i_ < (w)->d->nworker_hooks; i_++)            \
			if ((w)->d->worker_hooks[i_]->hook)                   \
				(w)->d->worker_hooks[i_]->hook(__VA_ARGS__);  \
	} while (0)

/* A state change the worker made (it booted, it ended): a fact, kept in
 * memory if the disk cannot take it; a failure is logged here, once. */
static int transition(struct worker *w, enum proto_vm_state state, const char *reason)
{
	int r = vm_commit_fact(w->vm, state, reason);

	if (r < 0)
		log_error("VM %s: cannot store state %s: %s", w->vm->row.name,
		          proto_vm_state_name(state), strerror(-r));
	return r;
}

/* ---- link --------------------------------------------------------------- */

/* Console input queued on the link past this stops its clients' reading
 * (dispatch.c pauses them) until half of it is written: one client's
 * flood costs mvmd this much, not its memory, and a ping or a shutdown
 * waits behind at most this many console bytes. */
#define LINK_CONSOLE_IN_MAX (2 * PROTO_LINK_CONSOLE_MAX)

struct link_write {
	uv_write_t req;
	uv_buf_t buf;
	char *mem;                      /* buf is its tail */
	struct worker *w;
};

static void link_write_cb(uv_write_t *req, int status)
{
	struct link_write *lw = (struct link_write *)req;
	struct worker *w = lw->w;

	free(lw->mem);
	free(lw);
	if (status == 0 && w->console_full &&
	    uv_stream_get_write_queue_size((uv_stream_t *)&w->link_pipe) <
	    LINK_CONSOLE_IN_MAX / 2) {
		w->console_full = false;
		HOOKS(w, console_drained_cb, w->vm);
	}
}

static int link_send(struct worker *w, const struct proto_link_msg *msg)
{
	struct link_write *lw;
	uv_buf_t b;
	char *buf;
	size_t len, done;
	int r;

	if (w->link_eof)
		return -EPIPE;
	r = proto_link_encode(msg, &buf, &len);
	if (r < 0)
		return r;
	/* A message mostly fits the socket at once: uv_try_write sends it
	 * with no request, and without the epoll_ctl that follows each
	 * uv_write (an idle fleet's pings: a third of mvmd's syscalls).  It
	 * writes nothing while earlier writes wait, so the order holds. */
	lw = malloc(sizeof(*lw));
	if (!lw) {
		free(buf);
		return -ENOMEM;
	}
	b = uv_buf_init(buf, len);
	r = uv_try_write((uv_stream_t *)&w->link_pipe, &b, 1);
	done = r > 0 ? (size_t)r : 0;
	if (done == len || (r < 0 && r != UV_EAGAIN)) {
		free(buf);
		free(lw);
		return done == len ? 0 : r;
	}
	lw->mem = buf;
	lw->buf = uv_buf_init(buf + done, len - done);
	lw->w = w;
	r = uv_write(&lw->req, (uv_stream_t *)&w->link_pipe, &lw->buf, 1, link_write_cb);
	if (r < 0) {
		free(buf);
		free(lw);
	}
	return r;
}

bool supervisor_console_in(struct worker *w, const void *data, size_t len)
{
	struct proto_link_msg m = { .type = PROTO_LINK_CONSOLE_IN };

	while (len > 0) {
		m.data = (unsigned char *)data;
		m.data_len = len < PROTO_LINK_CONSOLE_MAX ? len : PROTO_LINK_CONSOLE_MAX;
		if (link_send(w, &m) < 0)
			return true;    /* the link is gone; its end closes the client */
		data = (const char *)data + m.data_len;
		len -= m.data_len;
	}
	if (uv_stream_get_write_queue_size((uv_stream_t *)&w->link_pipe) > LINK_CONSOLE_IN_MAX)
		w->console_full = true;
	return !w->console_full;
}

static void worker_booted(struct worker *w)
{
	if (w->booted)
		return;
	w->booted = true;
	if (w->vm->row.state == PROTO_VM_STARTING)
		transition(w, PROTO_VM_RUNNING, NULL);
	HOOKS(w, booted_cb, w->vm);
}

int supervisor_request(struct worker *w, struct proto_link_msg *m, worker_reply_fn cb,
                       void *arg)
{
	struct worker_call *c;
	int r;

	if (m->type != PROTO_LINK_SET_LIMITS && m->type != PROTO_LINK_BALLOON &&
	    m->type != PROTO_LINK_STATS && m->type != PROTO_LINK_PAUSE &&
	    m->type != PROTO_LINK_RESUME)
		return -EINVAL;
	if (w->finished || !w->linked)
		return -EPIPE;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	m->seq = ++w->call_seq;
	r = link_send(w, m);
	if (r < 0) {
		free(c);
		return r;
	}
	c->seq = m->seq;
	c->want = m->type == PROTO_LINK_STATS ? PROTO_LINK_STATS_REPLY : PROTO_LINK_RESULT;
	c->cb = cb;
	c->arg = arg;
	TAILQ_INSERT_TAIL(&w->calls, c, link);
	return 0;
}

/* A reply to a call in flight; one nobody waits for (its caller's wait
 * ended, or a confused worker) is dropped. */
static void call_reply(struct worker *w, const struct proto_link_msg *m)
{
	struct worker_call *c;

	TAILQ_FOREACH(c, &w->calls, link)
		if (c->seq == m->seq)
			break;
	if (!c || c->want != m->type) {
		log_warn("VM %s: '%s' from its worker answers no request (seq %lld)",
		         w->vm->row.name, proto_link_name(m->type), (long long)m->seq);
		return;
	}
	TAILQ_REMOVE(&w->calls, c, link);
	c->cb(c->arg, m);
	free(c);
}

#ifdef MVM_TEST_HOOKS
/* Test builds only: MVM_TEST_PONG_STALL_MS=N makes mvmd, on each pong,
 * ping again at once and then stand still for N ms inside this read
 * callback, as a long request would: the next pong waits unread in the
 * socket while the next loop turn runs its timers first. */
static void pong_stall(struct worker *w)
{
	const char *t = getenv("MVM_TEST_PONG_STALL_MS");
	struct timespec ts;
	long ms = t ? atol(t) : 0;

	if (ms <= 0)
		return;
	supervisor_ping(w);
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (ms % 1000) * 1000000L;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
#endif

static void link_message(struct worker *w, const char *line, size_t len)
{
	struct proto_link_msg m;

	if (proto_link_decode(line, len, &m) < 0) {
		log_warn("VM %s: malformed message from its worker ignored", w->vm->row.name);
		return;
	}
	switch (m.type) {
	case PROTO_LINK_BOOTED:
		worker_booted(w);
		break;
	case PROTO_LINK_CONSOLE:
		worker_booted(w);       /* output implies boot, even if "booted" was lost */
		HOOKS(w, console_cb, w->vm, m.data, m.data_len);
		break;
	case PROTO_LINK_EXIT:
		w->has_link_status = true;
		w->link_status = m.status;
		snprintf(w->link_reason, sizeof(w->link_reason), "%s", m.reason);
		break;
	case PROTO_LINK_PONG:
		w->last_pong = mvmd_mono();
		w->ping_since = 0;
		w->answered = true;
		w->overdue = false;
#ifdef MVM_TEST_HOOKS
		pong_stall(w);
#endif
		break;
	case PROTO_LINK_HELLO:
		w->answered = true;
		break;                  /* adopt.c read the one that counts */
	case PROTO_LINK_RESULT:
	case PROTO_LINK_STATS_REPLY:
		call_reply(w, &m);
		break;
	case PROTO_LINK_SECCOMP:
		/* its SIGSYS handler, just before it dies: keep the first */
		if (!w->has_seccomp_nr) {
			w->has_seccomp_nr = true;
			w->seccomp_nr = m.nr;
		}
		break;
	default:
		log_warn("VM %s: unexpected '%s' from its worker", w->vm->row.name,
		         proto_link_name(m.type));
	}
	proto_link_clear(&m);
}

static void link_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	buf->base = malloc(65536);
	buf->len = buf->base ? 65536 : 0;
}

static void link_eof(struct worker *w)
{
	w->link_eof = true;
	worker_close_handle(w, (uv_handle_t *)&w->link_pipe);
	if (w->exited)
		worker_finish(w);
	else
		worker_watch(w);
}

static void link_read_cb(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	struct worker *w = s->data;
	char *line;
	size_t len;
	int r;

	if (n > 0 && proto_linebuf_feed(&w->lb, buf->base, n) == 0) {
		while ((r = proto_linebuf_next(&w->lb, &line, &len)) != 0)
			if (r > 0)
				link_message(w, line, len);
	}
	free(buf->base);
	if (n < 0)
		link_eof(w);
}

/* ---- exit --------------------------------------------------------------- */

static const char *status_reason(int status)
{
	switch (status) {
	case 0: return "reset";
	case 2: return "vmm-error";
	case 3: return "triple-fault";
	case 4: return "internal-error";
	case 5: return "emulation-failure";
	default: return NULL;
	}
}

/* "killed: seccomp violation (syscall NAME)", NAME from the worker's own
 * report (libseccomp knows the names of the native ABI's numbers). */
static void seccomp_reason(const struct worker *w, char *reason, size_t size)
{
	char *name = NULL, num[24] = "unknown";

	if (w->has_seccomp_nr) {
		name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, (int)w->seccomp_nr);
		snprintf(num, sizeof(num), "%lld", (long long)w->seccomp_nr);
	}
	snprintf(reason, size, "killed: seccomp violation (syscall %s)", name ? name : num);
	free(name);
}

/* Death by SIGSYS is the seccomp filter's doing unless a user sent it; an
 * adopted worker's status is unknown, so there the report alone counts. */
static bool seccomp_killed(const struct worker *w)
{
	if (w->kill_requested)
		return false;
	if (w->term_signal == SIGSYS)
		return true;
	return w->adopted && w->has_seccomp_nr && !w->has_link_status;
}

/* The stop timeout's SIGKILL ended it: distinct from a clean stop, as the
 * guest never shut down. */
static enum proto_vm_state forced_stop(const struct worker *w, char *reason, size_t size)
{
	if (w->stop_timeout_s > 0)
		snprintf(reason, size, "killed after the %lld s stop timeout",
		         (long long)w->stop_timeout_s);
	else if (w->stop_timeout_s < 0)
		snprintf(reason, size, "killed at once: no worker link to ask the guest over");
	else
		snprintf(reason, size, "killed at once: stop timeout 0");
	return PROTO_VM_STOPPED;
}

/* Decide the final state and reason from how the process ended. */
static enum proto_vm_state exit_outcome(struct worker *w, char *reason, size_t size)
{
	const char *r;

	if (w->hung) {
		snprintf(reason, size, "hung");
		return PROTO_VM_CRASHED;
	}
	if (seccomp_killed(w)) {
		seccomp_reason(w, reason, size);
		return PROTO_VM_CRASHED;
	}
	/* not our child: only its exit message tells how it ended */
	if (w->adopted && !w->has_link_status && !w->kill_requested && !w->stop_requested) {
		snprintf(reason, size, "unknown (worker not a child of this mvmd)");
		return PROTO_VM_CRASHED;
	}
	if (w->term_signal) {
		if (w->kill_requested) {
			snprintf(reason, size, "killed");
			return PROTO_VM_CRASHED;
		}
		if (w->stop_requested && w->stop_forced)
			return forced_stop(w, reason, size);
		if (w->stop_requested) {
			snprintf(reason, size, "stopped");
			return PROTO_VM_STOPPED;
		}
		snprintf(reason, size, "signal %s", proto_signal_name(w->term_signal));
		return PROTO_VM_CRASHED;
	}
	/* an adopted worker's SIGKILL leaves no status and no exit message */
	if (w->stop_requested && w->stop_forced && w->adopted && !w->has_link_status)
		return forced_stop(w, reason, size);
	if (w->kill_requested && w->adopted && !w->has_link_status) {
		snprintf(reason, size, "killed");
		return PROTO_VM_CRASHED;
	}
	if (w->exit_status == 0 && w->stop_requested) {
		snprintf(reason, size, "stopped");
		return PROTO_VM_STOPPED;
	}
	r = w->link_reason[0] ? w->link_reason : status_reason((int)w->exit_status);
	if (r)
		snprintf(reason, size, "%s", r);
	else
		snprintf(reason, size, "worker-exit %lld", (long long)w->exit_status);
	return w->exit_status == 0 ? PROTO_VM_STOPPED : PROTO_VM_CRASHED;
}

/*
 * The worker's pidfd, opened when first needed: mvmd holds none while a
 * worker runs (issue 13: its fds cap the fleet), since the link's EOF
 * says when the worker ends.  A spawned worker is our child, so its pid
 * names it until we reap it; an adopted one's pid may have gone to
 * another process, so the one behind the new pidfd must have the start
 * time adoption checked (a later process with that pid has a later one).
 */
static int worker_pidfd(struct worker *w)
{
	uint64_t start;
	int fd;

	if (w->pidfd >= 0)
		return w->pidfd;
	fd = (int)syscall(SYS_pidfd_open, w->pid, 0);
	if (fd < 0)
		return -errno;
	if (w->adopted && (util_proc_start_time(w->pid, &start) < 0 || start != w->start_time)) {
		close(fd);
		return -ESRCH;
	}
	w->pidfd = fd;
	return fd;
}

static int worker_signal(struct worker *w, int sig)
{
	int fd = worker_pidfd(w);

	return fd < 0 ? fd : spawn_signal(fd, sig);
}

static void worker_finish(struct worker *w)
{
	char reason[PROTO_LINK_REASON_MAX];
	enum proto_vm_state st;

	if (w->finished)
		return;
	w->finished = true;
	uv_timer_stop(&w->timer);
	st = exit_outcome(w, reason, sizeof(reason));
	if (w->term_signal == SIGKILL && !w->kill_requested && !w->stop_requested)
		HOOKS(w, exit_reason_cb, w->vm, reason, sizeof(reason));
	free(w->vm->row.exit_reason);
	w->vm->row.exit_reason = strdup(reason);
	w->vm->row.has_exit_status = true;
	w->vm->row.exit_status = w->term_signal ? 128 + w->term_signal : (int)w->exit_status;
	w->vm->row.pid = 0;
	log_info("VM %s: worker ended: %s", w->vm->row.name, reason);
	transition(w, st, reason);
	worker_unlink(w);
	calls_fail(w);
	worker_close_handle(w, (uv_handle_t *)&w->timer);
	worker_close_handle(w, (uv_handle_t *)&w->link_pipe);
	if (w->watched)
		worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
	supervisor_remove_runtime(w->d, w->vm->row.name);
	sandbox_uid_release(w->d, w->uid);
	w->uid = NULL;
	/* waiters answered, capacity back, the restart policy applied */
	HOOKS(w, ended_cb, w->vm, w->stop_requested || w->kill_requested,
	      mvmd_mono() - w->started_mono);
}

static void settle_cb(uv_timer_t *t)
{
	worker_finish(t->data);
}

/*
 * How the process ended.  Our child is reaped through its pidfd; mvm-vmm
 * exits 128 + N only when signal N stopped it (as a PID namespace's init it
 * cannot die by a signal it raises itself), which counts as that signal.
 * An adopted worker's status went to its real parent: only its exit
 * message tells.
 */
static void status_set(struct worker *w, int status)
{
	w->term_signal = proto_exit_signal(status);
	w->exit_status = w->term_signal ? 0 : status;
}

static int status_of(const siginfo_t *si)
{
	return si->si_code == CLD_EXITED ? si->si_status : 128 + si->si_status;
}

static void collect_status(struct worker *w)
{
	siginfo_t si;

	if (spawn_reap(w->pidfd, &si, false) == 0)
		status_set(w, status_of(&si));
	else if (w->has_link_status)
		status_set(w, w->link_status);
}

/* Our child reaped by its pid, where mvmd has no fd left for a pidfd:
 * until reaped, its pid names only it.  True once it was. */
static bool reap_by_pid(struct worker *w)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	if (w->adopted || waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG) < 0 ||
	    si.si_pid != w->pid)
		return false;
	w->exited = true;
	status_set(w, status_of(&si));
	return true;
}

/* The pidfd is readable once the worker exited. */
static void pidfd_cb(uv_poll_t *p, int status, int events)
{
	struct worker *w = p->data;

	(void)status;
	(void)events;
	if (w->exited)
		return;
	uv_poll_stop(p);
	w->exited = true;
	collect_status(w);
	if (w->link_eof) {
		worker_finish(w);
		return;
	}
	uv_timer_stop(&w->timer);
	uv_timer_start(&w->timer, settle_cb, EXIT_SETTLE_MS, 0);
}

static void watch_retry_cb(uv_timer_t *t)
{
	worker_watch(t->data);
}

/* Its link ended: watch the process until it is gone too (it may still
 * be on its way out, or have closed the link and run on). */
static void worker_watch(struct worker *w)
{
	int fd, r;

	if (w->exited)
		return;
	fd = worker_pidfd(w);
	if (fd == -ESRCH) {
		/* an adopted worker, already reaped by its parent */
		w->exited = true;
		collect_status(w);
		worker_finish(w);
		return;
	}
	r = fd;
	if (fd >= 0 && !w->watched && (r = uv_poll_init(w->d->loop, &w->pidfd_poll, fd)) == 0) {
		w->pidfd_poll.data = w;
		w->handles++;
		w->watched = true;
	}
	if (w->watched && (r = uv_poll_start(&w->pidfd_poll, UV_READABLE, pidfd_cb)) == 0)
		return;
	/* out of fds (or memory) for now: look again, by pid for our child,
	 * so its end (and a restart) does not wait for fds to come back */
	if (reap_by_pid(w)) {
		worker_finish(w);
		return;
	}
	if (!w->watch_warned)
		log_warn("VM %s: cannot watch worker pid %lld: %s; looking again every %d ms",
		         w->vm->row.name, (long long)w->pid, strerror(-r), WATCH_RETRY_MS);
	w->watch_warned = true;
	uv_timer_start(&w->timer, watch_retry_cb, WATCH_RETRY_MS, 0);
}

/* ---- control ------------------------------------------------------------ */

static void stop_timeout_cb(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (!w->exited && worker_signal(w, SIGKILL) == 0)
		w->stop_forced = true;
}

int supervisor_stop(struct worker *w, int64_t timeout_s)
{
	struct proto_link_msg m = { .type = PROTO_LINK_SHUTDOWN };
	int r;

	if (w->stop_requested)
		return 0;
	r = vm_commit(w->vm, PROTO_VM_STOPPING, NULL);
	if (r < 0)
		return r;
	w->stop_requested = true;
	w->stop_timeout_s = timeout_s;
	if (timeout_s > 0 && link_send(w, &m) == 0) {
		uv_timer_start(&w->timer, stop_timeout_cb, (uint64_t)timeout_s * 1000, 0);
		return 0;
	}
	if (timeout_s > 0)
		w->stop_timeout_s = -1;         /* no link to ask the guest over */
	stop_timeout_cb(&w->timer);
	return 0;
}

int supervisor_kill(struct worker *w, int sig)
{
	if (w->exited)
		return -ESRCH;
	/* mvm-vmm would ignore it, or the kernel drop it without a word */
	if (!proto_signal_worker_honours(sig))
		return -EINVAL;
	/* Only a signal that ends the worker makes its death the user's doing;
	 * after SIGCONT or SIGSTOP a later crash keeps its own reason. */
	if (proto_signal_ends_process(sig))
		w->kill_requested = true;
	return worker_signal(w, sig);
}

void supervisor_detach_all(struct mvmd *d)
{
	struct worker *w;

	/* Closing the process handle leaves the process running; closing the
	 * link tells the worker nobody listens (it keeps its VM running). */
	while ((w = TAILQ_FIRST(&d->workers))) {
		worker_unlink(w);
		w->finished = true;
		worker_close_handle(w, (uv_handle_t *)&w->timer);
		worker_close_handle(w, (uv_handle_t *)&w->link_pipe);
		if (w->watched)
			worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
	}
}

/* ---- runtime files ------------------------------------------------------ */

/* After spawning: the pid and its process start time beside the VM's logs
 * (adopt.c checks both before it takes a worker over). */
static void record_spawn(struct mvmd *d, const char *name, pid_t pid)
{
	char path[4096], line[64];
	uint64_t start;
	int fd, n;

	if (util_proc_start_time(pid, &start) < 0 ||
	    mvmd_vm_dir(d, name, "worker", path, sizeof(path)) < 0)
		return;
	n = snprintf(line, sizeof(line), "%d %llu\n", (int)pid, (unsigned long long)start);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	/* without the record, adoption falls back to the socket's own proof */
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		log_warn("VM %s: cannot record its worker in %s: %s", name, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

int supervisor_spawn_record(struct mvmd *d, const char *name, pid_t *ret_pid,
                            uint64_t *ret_start)
{
	char path[4096];
	unsigned long long start;
	int pid, r = -ENOENT;
	FILE *f;

	if (mvmd_vm_dir(d, name, "worker", path, sizeof(path)) < 0)
		return -ENAMETOOLONG;
	f = fopen(path, "re");
	if (!f)
		return -errno;
	if (fscanf(f, "%d %llu", &pid, &start) == 2 && pid > 0) {
		*ret_pid = pid;
		*ret_start = start;
		r = 0;
	}
	fclose(f);
	return r;
}

void supervisor_remove_runtime(struct mvmd *d, const char *name)
{
	char path[4096];

	if (mvmd_adopt_socket(d, name, path, sizeof(path)) == 0)
		unlink(path);
	if (mvmd_vm_dir(d, name, "worker", path, sizeof(path)) == 0)
		unlink(path);
	sandbox_remove(d, name);
}

/* ---- spawning ----------------------------------------------------------- */

static int open_vmm_log(struct mvmd *d, const char *name, char *console_log, size_t size)
{
	char path[4096];
	int r;

	r = mvmd_vm_dir(d, name, NULL, path, sizeof(path));
	if (r < 0)
		return r;
	if (mkdir(path, 0750) < 0 && errno != EEXIST)
		return -errno;
	r = mvmd_vm_dir(d, name, "console.log", console_log, size);
	if (r == 0)
		r = mvmd_vm_dir(d, name, "vmm.log", path, sizeof(path));
	if (r < 0)
		return r;
	r = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	return r < 0 ? -errno : r;
}

static int worker_spawn(struct worker *w, const struct vm_files *files, int link_fd,
                        int log_fd)
{
	struct mvmd *d = w->d;
	char console_log[4096], sandbox[4096], sock[4096], vsock[4096];
	struct spawn_worker_req req = {
		.vmm_path = d->cfg.vmm_path, .vm = &w->vm->row, .files = files,
		.console_log = console_log, .log_fd = log_fd, .link_fd = link_fd,
		.sandbox_lease_fd = sandbox_uid_lease_fd(w->uid), .vsock_uid = -1,
	};
	pid_t pid;
	int r;

	r = mvmd_vm_dir(d, w->vm->row.name, "console.log", console_log, sizeof(console_log));
	if (r == 0 && w->uid) {
		r = sandbox_dir(d, w->vm->row.name, sandbox, sizeof(sandbox));
		req.sandbox_dir = sandbox;
		req.sandbox_id = sandbox_uid_id(d, w->uid);
	}
	if (r == 0 && w->vm->row.vsock_cid) {
		r = sandbox_vsock_path(d, w->vm->row.name, vsock, sizeof(vsock));
		req.vsock_uds = vsock;
		/* bound by the worker as root: the owner's to connect to */
		req.vsock_uid = geteuid() == 0 ? (int64_t)w->vm->row.owner_uid : -1;
	}
	if (r < 0)
		return r;
	if (mvmd_adopt_socket(d, w->vm->row.name, sock, sizeof(sock)) == 0)
		req.adopt_socket = sock;
	r = spawn_worker(&req, &pid, &w->pidfd);
	if (r == 0) {
		w->pid = pid;
		w->vm->row.pid = pid;
		HOOKS(w, spawned_cb, w->vm, pid);
		record_spawn(d, w->vm->row.name, pid);
	}
	return r;
}

static struct worker *worker_new(struct vm *vm)
{
	struct worker *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->d = vm->d;
	w->vm = vm_ref(vm);
	w->pidfd = -1;
	w->last_pong = mvmd_mono();
	w->started_mono = mvmd_mono();
	TAILQ_INIT(&w->calls);
	proto_linebuf_init(&w->lb);
	return w;
}

static void worker_link(struct worker *w)
{
	TAILQ_INSERT_TAIL(&w->d->workers, w, link);
	w->d->workers_gen++;
	w->linked = true;
	w->vm->worker = w;
}

/* The link pipe and timer: both must exist before either can be closed
 * through handle_close_cb (the pidfd watch comes at the link's EOF).  The
 * link pipe owns link_fd once opened (*ret_opened); before that the
 * caller still closes it. */
static int worker_handles(struct worker *w, int link_fd, bool *ret_opened)
{
	int r;

	*ret_opened = false;
	uv_pipe_init(w->d->loop, &w->link_pipe, 0);
	uv_timer_init(w->d->loop, &w->timer);
	w->link_pipe.data = w->timer.data = w;
	w->handles = 2;
	r = uv_pipe_open(&w->link_pipe, link_fd);
	*ret_opened = r == 0;
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&w->link_pipe, link_alloc_cb, link_read_cb);
	return r;
}

static int start_fail(struct proto_error *err, int r, const char *what)
{
	proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "cannot start the worker: %s: %s",
	                what, strerror(-r));
	return r;
}

/* Crash ordering (docs/architecture.md): "starting" is committed before
 * the spawn, as the intent to spawn, and the pid after it.  A crash in
 * between leaves a row "starting" whose worker, if any, the next mvmd
 * finds through the record record_spawn() wrote. */
static int commit_starting(struct worker *w, struct proto_error *err)
{
	int r;

	w->vm->row.pid = 0;
	w->vm->row.started_at = mvmd_now();
	w->vm->row.has_exit_status = false;
	free(w->vm->row.exit_reason);
	w->vm->row.exit_reason = NULL;
	w->started_mono = mvmd_mono();
	r = vm_commit(w->vm, PROTO_VM_STARTING, NULL);
	if (r < 0)
		vms_storage_error(w->d, r, err);
	return r;
}

/* The spawn failed after "starting" was stored: the row says why. */
static void commit_start_failed(struct worker *w, const struct proto_error *err)
{
	char why[600];

	snprintf(why, sizeof(why), "start failed: %s", err->message);
	free(w->vm->row.exit_reason);
	w->vm->row.exit_reason = strdup(why);
	w->vm->row.pid = 0;
	transition(w, PROTO_VM_CRASHED, why);
}

/* The process runs: watch its link and store its pid. */
static int supervisor_started(struct worker *w, int link_fd, struct proto_error *err)
{
	bool opened;
	siginfo_t si;
	int r = worker_handles(w, link_fd, &opened);

	if (r < 0) {
		if (!opened)
			close(link_fd);
		w->link_eof = true;
		w->kill_requested = true;
		worker_signal(w, SIGKILL);
		/* nothing would see it exit: reap it here */
		spawn_reap(w->pidfd, &si, true);
		w->exited = true;
		w->term_signal = SIGKILL;
		worker_finish(w);
		return start_fail(err, r, "link");
	}
	r = vm_store(w->vm);
	if (r < 0) {
		/* the client must not hear of a start that is not stored; the
		 * caller logs err */
		w->kill_requested = true;
		worker_signal(w, SIGKILL);
		vms_storage_error(w->d, r, err);
		return r;
	}
	/* the link says when it ends; worker_pidfd() opens one again */
	close(w->pidfd);
	w->pidfd = -1;
	return 0;
}

int supervisor_start(struct vm *vm, struct vm_files *files, struct proto_error *err)
{
	struct mvmd *d = vm->d;
	struct worker *w = worker_new(vm);
	char console_log[4096], sandbox[4096], why[512];
	int sp[2] = { -1, -1 }, log_fd, r;

	if (!w) {
		vm_files_close(files);
		return start_fail(err, -ENOMEM, "out of memory");
	}
	log_fd = open_vmm_log(d, vm->row.name, console_log, sizeof(console_log));
	if (log_fd < 0) {
		r = start_fail(err, log_fd, "VM directory");
		goto fail;
	}
	if (vm->row.vsock_cid && sandbox_vsock_path(d, vm->row.name, sandbox, sizeof(sandbox)) < 0) {
		r = start_fail(err, -ENAMETOOLONG, "vsock: its socket path is too long for a Unix "
		               "socket; give mvmd a shorter run_dir or the VM a shorter name");
		goto fail_log;
	}
	if (sandbox_enabled(d) &&
	    (r = sandbox_prepare(d, &vm->row, &w->uid, sandbox, sizeof(sandbox), why,
	                         sizeof(why))) < 0) {
		start_fail(err, r, r == -EUSERS ? "sandbox: every uid of sandbox_uid_count is leased; "
		                                  "raise sandbox_uid_count or stop a VM"
		                                : why[0] ? why : "sandbox directory");
		goto fail_log;
	}
	if (!w->uid && vm->row.vsock_cid && (r = sandbox_vsock_dir(d, &vm->row)) < 0) {
		start_fail(err, r, "vsock directory");
		goto fail_log;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		r = start_fail(err, -errno, "socketpair");
		goto fail_log;
	}
	r = commit_starting(w, err);
	if (r < 0)
		goto fail_pair;
	r = worker_spawn(w, files, sp[1], log_fd);
	if (r < 0) {
		proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                "cannot start the worker %s: %s; point mvmd's vmm_path (or --vmm) "
		                "at an executable mvm-vmm", d->cfg.vmm_path, strerror(-r));
		commit_start_failed(w, err);
		goto fail_pair;
	}
	close(sp[1]);
	close(log_fd);
	vm_files_close(files);
	worker_link(w);
	return supervisor_started(w, sp[0], err);
fail_pair:
	close(sp[0]);
	close(sp[1]);
fail_log:
	close(log_fd);
	if (w->uid || vm->row.vsock_cid)
		sandbox_remove(d, vm->row.name);
fail:
	vm_files_close(files);
	worker_free(w);
	return r;
}

/* ---- re-adoption and health (the policy lives in restart.c) ------------- */

static void handles_fail(struct worker *w)
{
	w->finished = true;
	w->link_eof = true;
	worker_close_handle(w, (uv_handle_t *)&w->timer);
	worker_close_handle(w, (uv_handle_t *)&w->link_pipe);
	if (w->watched)
		worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
}

int supervisor_adopt(struct vm *vm, int link_fd, uint64_t start_time, bool booted,
                     struct worker **ret_w)
{
	struct worker *w = worker_new(vm);
	bool opened = false;
	int r;

	if (!w) {
		close(link_fd);
		return -ENOMEM;
	}
	w->answered = true;             /* its loop sent the hello adopt.c read */
	w->adopted = true;
	w->pid = (pid_t)vm->row.pid;
	w->start_time = start_time;
	/* it runs since started_at, on the wall clock the row keeps */
	w->started_mono = mvmd_mono() - (mvmd_now() - vm->row.started_at);
	w->uid = sandbox_uid_of(vm->d, (pid_t)vm->row.pid);
	r = worker_handles(w, link_fd, &opened);
	if (r < 0) {
		if (!opened)
			close(link_fd);
		handles_fail(w);
		return r;
	}
	worker_link(w);
	/* hello said booted: the first byte of output may be long past */
	if (booted)
		worker_booted(w);
	*ret_w = w;
	return 0;
}

int supervisor_ping(struct worker *w)
{
	struct proto_link_msg m = { .type = PROTO_LINK_PING, .seq = ++w->ping_seq };

	if (w->ping_since == 0)
		w->ping_since = mvmd_mono();
	return link_send(w, &m);
}

bool supervisor_link_unread(struct worker *w)
{
	uv_os_fd_t fd;
	int n = 0;

	if (w->link_eof || uv_fileno((uv_handle_t *)&w->link_pipe, &fd) < 0)
		return false;
	return ioctl(fd, FIONREAD, &n) == 0 && n > 0;
}

void supervisor_hung(struct worker *w, const char *why)
{
	if (w->exited || w->hung)
		return;
	log_error("VM %s: worker pid %lld did not answer pings (%s); killing it as hung",
	          w->vm->row.name, (long long)w->vm->row.pid, why);
	w->hung = true;
	worker_signal(w, SIGKILL);
}
