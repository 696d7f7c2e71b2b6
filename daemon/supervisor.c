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

static void worker_finish(struct worker *w);
static void collect_status(struct worker *w);
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
	restart_worker_unlinked(w);
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
	if (w->spawning) {
		/* its first words outran the spawner's answer: running once
		 * its pid is stored (spawn_done_cb) */
		w->boot_early = true;
		return;
	}
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
	long ms = mvmd_test_stall_ms("MVM_TEST_PONG_STALL_MS");

	if (ms <= 0)
		return;
	supervisor_ping(w);
	mvmd_sleep_ms(ms);
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
	else if (!w->spawning)
		worker_watch(w);        /* a spawning one is watched once it runs */
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

/* A worker still spawning gets the signal once it runs. */
static int worker_signal(struct worker *w, int sig)
{
	int fd;

	if (w->spawning) {
		w->pending_signals |= 1ULL << sig;
		return 0;
	}
	fd = worker_pidfd(w);
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
	/* an adopted worker's exit message read after its pidfd fired: it
	 * alone tells the status (else a crash would read as exit 0, stopped) */
	if (w->exited && !w->has_status)
		collect_status(w);
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
static void status_of(struct worker *w, int status)
{
	w->term_signal = proto_exit_signal(status);
	w->exit_status = w->term_signal ? 0 : status;
	w->has_status = true;
}

static void collect_status(struct worker *w)
{
	siginfo_t si;
	int status;

	if (spawn_reap(w->pidfd, &si, false) == 0)
		status = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
	else if (w->has_link_status)
		status = w->link_status;
	else
		return;
	status_of(w, status);
}

/*
 * Without a pidfd (mvmd is out of fds): whether the process is gone, by
 * its pid.  Our child's pid stays ours until we reap it, so a waitid on
 * it is safe; an adopted worker is not ours to reap, and only its pid's
 * absence tells (a pid taken again meanwhile waits for the pidfd, whose
 * start time check then finds it gone).
 */
static bool gone_by_pid(struct worker *w)
{
	siginfo_t si;

	if (w->adopted)
		return kill(w->pid, 0) < 0 && errno == ESRCH;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, (id_t)w->pid, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return false;
	status_of(w, si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status);
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
	/* out of fds or memory for now: it may be gone all the same (a
	 * restart must not wait for fds to come back), else look again */
	if (gone_by_pid(w)) {
		w->exited = true;
		if (!w->has_status)
			collect_status(w);
		worker_finish(w);
		return;
	}
	if (!w->watch_warned)
		log_warn("VM %s: cannot watch worker pid %lld: %s; trying again each %d ms",
		         w->vm->row.name, (long long)w->pid, strerror(-r), EXIT_SETTLE_MS);
	w->watch_warned = true;
	uv_timer_start(&w->timer, watch_retry_cb, EXIT_SETTLE_MS, 0);
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

/* After spawning, on the spawner thread: the pid and its process start
 * time beside the VM's logs (adopt.c checks both before it takes a worker
 * over).  0 or -errno, which the loop logs. */
static int record_spawn(const char *path, const struct spawn_job *j)
{
	char line[64];
	ssize_t w;
	int fd, n, r;

	if (j->start_r < 0)
		return 0;               /* no start time to record */
	n = snprintf(line, sizeof(line), "%d %llu\n", (int)j->pid, (unsigned long long)j->start_time);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (fd < 0)
		return -errno;
	w = write(fd, line, (size_t)n);
	r = w < 0 ? -errno : w != n ? -EIO : 0;
	close(fd);
	return r;
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

/* <state-dir>/vms/<name>/ and the worker's log in it, on the preparer
 * thread: an ext4 mkdir or create can wait for the disk, and the loop
 * must not.  The fd or -errno. */
static int open_vmm_log(const char *dir, const char *log)
{
	int fd;

	if (mkdir(dir, 0750) < 0 && errno != EEXIST)
		return -errno;
	fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
	return fd < 0 ? -errno : fd;
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
	restart_worker_linked(w);
	w->vm->worker = w;
}

/* The link pipe and the timer, from the start (the pidfd watch comes at
 * the link's EOF); the link pipe owns link_fd once opened (*ret_opened),
 * before that the caller still closes it. */
static int worker_link_handles(struct worker *w, int link_fd, bool *ret_opened)
{
	int r;

	*ret_opened = false;
	uv_pipe_init(w->d->loop, &w->link_pipe, 0);
	uv_timer_init(w->d->loop, &w->timer);
	w->link_pipe.data = w->timer.data = w;
	w->handles += 2;
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

/* A start on the preparer and spawner threads: the files and fds its
 * worker gets, and its cgroups' cgroup.procs, all open until it is done. */
struct worker_start {
	struct spawn_job job;
	struct worker *w;
	struct vm_files files;
	int log_fd, link_fd;
	/* what start_prepare() makes, in this order, and where it failed */
	enum { PREP_LOG, PREP_DIR, PREP_CGROUP } prep;
	struct sandbox_dir_plan dir_plan;       /* path "": none (no sandbox, no vsock) */
	struct start_cgroup cgs;                /* make NULL: none */
	struct cgroup_vm *cg;           /* made by start_prepare(), until cgs.made() */
	char cg_why[512];               /* why start_prepare() failed */
	bool attach_fail;               /* test builds: MVM_TEST_ATTACH_FAIL */
	int record_r;                   /* start_spawned()'s */
	const char *attach_dirs[SPAWN_MAX_ATTACH];
	char vm_dir[4096], vmm_log[4096], record[4096];
	char console_log[4096], sock[4096], vsock[4096];
};

static void worker_start_free(struct worker_start *s)
{
	vm_files_close(&s->files);
	if (s->log_fd >= 0)
		close(s->log_fd);
	if (s->link_fd >= 0)
		close(s->link_fd);
	for (int i = 0; i < s->job.nattach; i++)
		close(s->job.attach_fds[i]);
	if (s->cg)
		cgroup_vm_close(s->cg);
	spawn_job_clear(&s->job);
	free(s);
}

/* The job's own count on w's handles, so w outlives it. */
static void worker_job_done(struct worker *w)
{
	w->spawning = false;
	if (--w->handles == 0)
		worker_free(w);
}

/* The start never ran a worker: the row says why; the hook tells whoever
 * waits (notify), unless supervisor_start() itself returns the error. */
static void start_failed(struct worker *w, int r, const struct proto_error *err, bool notify)
{
	commit_start_failed(w, err);
	worker_unlink(w);
	w->finished = true;
	w->link_eof = true;
	calls_fail(w);
	worker_close_handle(w, (uv_handle_t *)&w->timer);
	worker_close_handle(w, (uv_handle_t *)&w->link_pipe);
	if (w->uid || w->vm->row.vsock_cid)
		sandbox_remove(w->d, w->vm->row.name);
	if (notify)
		HOOKS(w, start_done_cb, w->vm, r, err);
}

static void spawn_error(struct worker_start *s, struct proto_error *err)
{
	struct spawn_job *j = &s->job;

	if (j->stage == SPAWN_STAGE_PREPARE && s->prep == PREP_LOG)
		start_fail(err, j->r, "VM directory");
	else if (j->stage == SPAWN_STAGE_PREPARE && s->prep == PREP_DIR)
		start_fail(err, j->r, s->w->uid ? "sandbox directory" : "vsock directory");
	else if (j->stage == SPAWN_STAGE_PREPARE && j->r == -EBUSY) {
		/* the host's paths and pids are for the operator, not the client */
		log_error("VM %s: %s", s->w->vm->row.name, s->cg_why);
		proto_error_set(err, PROTO_ERR_UNAVAILABLE, NULL,
		                "the VM's cgroup holds processes this mvmd did not start; "
		                "mvmd's log names them: ask the host's operator");
	} else if (j->stage == SPAWN_STAGE_PREPARE)
		proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "cannot create the VM's cgroup: %s",
		                s->cg_why);
	else if (j->stage >= 0 && j->stage < j->nattach)
		proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                "cannot start the worker: cgroup: it could not join %s: %s",
		                s->attach_dirs[j->stage], strerror(-j->r));
	else if (j->stage == SPAWN_STAGE_CLONE)
		proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                "cannot start the worker: clone: %s; mvmd is short of processes, "
		                "fds or memory (its cgroup's pids.max, kernel.pid_max, "
		                "kernel.threads-max, its open-file limit)", strerror(-j->r));
	else
		proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                "cannot start the worker %s: %s; point mvmd's vmm_path (or --vmm) "
		                "at an executable mvm-vmm", s->w->d->cfg.vmm_path, strerror(-j->r));
}

/* It runs: send what was asked for meanwhile, store its pid. */
static int worker_running(struct worker *w, struct proto_error *err)
{
	int r;

	for (int sig = 1; sig < 64; sig++)
		if (w->pending_signals & (1ULL << sig) &&
		    (sig == SIGKILL || !(w->pending_signals & (1ULL << SIGKILL))))
			spawn_signal(w->pidfd, sig);
	w->pending_signals = 0;
	/* a detail of "starting", which is stored: into the batch, like a
	 * fact (the worker record finds the worker if it is lost) */
	r = vm_store_batched(w->vm);
	if (r < 0) {
		/* the client must not hear of a start that is not stored */
		w->kill_requested = true;
		spawn_signal(w->pidfd, SIGKILL);
		vms_storage_error(w->d, r, err);
	}
	/* the link says when it ends, and worker_pidfd() opens a pidfd again
	 * to signal; a link that ended while it spawned: watch it go now */
	if (w->link_eof) {
		worker_watch(w);
	} else {
		close(w->pidfd);
		w->pidfd = -1;
	}
	return r;
}

/* On the loop, the spawner's answer. */
static void spawn_done_cb(struct spawn_job *j)
{
	struct worker_start *s = (struct worker_start *)j;
	struct worker *w = s->w;
	struct proto_error err;
	int r;

	w->spawning = false;
	if (j->r < 0)
		spawn_error(s, &err);   /* before made(): it names the cgroup's dirs */
	if (s->cg) {
		s->cgs.made(w->vm, s->cg);
		s->cg = NULL;
	}
	if (j->r < 0) {
		log_error("VM %s: %s", w->vm->row.name, err.message);
		if (!w->finished)
			start_failed(w, j->r, &err, true);
		else if (w->uid || w->vm->row.vsock_cid)
			sandbox_remove(w->d, w->vm->row.name);
	} else {
		w->pidfd = j->pidfd;
		w->pid = j->pid;
		w->vm->row.pid = j->pid;
		/* without the record, adoption falls back to the socket's own proof */
		if (s->record_r < 0)
			log_warn("VM %s: cannot record its worker in %s: %s", w->vm->row.name,
			         s->record, strerror(-s->record_r));
		if (w->finished) {
			/* mvmd is exiting: it runs on, the next mvmd adopts it */
		} else {
			HOOKS(w, spawned_cb, w->vm, j->pid);
			r = worker_running(w, &err);
			if (r < 0) {
				log_error("VM %s: %s", w->vm->row.name, err.message);
				HOOKS(w, start_done_cb, w->vm, r, &err);
				if (w->exited)
					worker_finish(w);
			} else {
				HOOKS(w, start_done_cb, w->vm, 0, NULL);
				if (w->boot_early && !w->exited)
					worker_booted(w);
			}
		}
	}
	worker_start_free(s);
	worker_job_done(w);
}

/* On the preparer thread, before the spawner takes the job: the VM's
 * directory and the worker's log, its sandbox directory, its cgroup and
 * the cgroup.procs the child joins before its exec. */
static int start_prepare(struct spawn_job *j)
{
	struct worker_start *s = (struct worker_start *)j;
	int r;

	s->prep = PREP_LOG;
	s->log_fd = open_vmm_log(s->vm_dir, s->vmm_log);
	if (s->log_fd < 0)
		return s->log_fd;
	j->fds[1] = j->fds[2] = s->log_fd;      /* spawn_worker_job()'s stdout, stderr */
	s->prep = PREP_DIR;
	if (s->dir_plan.path[0] && (r = sandbox_dir_make(&s->dir_plan)) < 0)
		return r;
	s->prep = PREP_CGROUP;
	if (!s->cgs.make)
		return 0;
	r = s->cgs.make(&s->cgs, &s->cg, s->cg_why, sizeof(s->cg_why));
	if (r < 0)
		return r;
	r = cgroup_vm_open_procs(s->cg, j->attach_fds, s->attach_dirs, SPAWN_MAX_ATTACH,
	                         s->cg_why, sizeof(s->cg_why));
	if (r < 0)
		return r;
	j->nattach = r;
#ifdef MVM_TEST_HOOKS
	/* the child's first cgroup write fails */
	if (s->attach_fail && j->nattach > 0) {
		close(j->attach_fds[0]);
		j->attach_fds[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	}
#endif
	return 0;
}

/* On the spawner thread, after the spawn. */
static void start_spawned(struct spawn_job *j)
{
	struct worker_start *s = (struct worker_start *)j;

	s->record_r = record_spawn(s->record, j);
}

/* The job for the spawner: the worker's command line and fds (the log's
 * are start_prepare()'s), and what start_prepare() makes. */
static int start_job(struct worker_start *s, const struct start_cgroup *cg, char *why, size_t n)
{
	struct worker *w = s->w;
	struct mvmd *d = w->d;
	struct spawn_worker_req req = {
		.vmm_path = d->cfg.vmm_path, .vm = &w->vm->row, .files = &s->files,
		.console_log = s->console_log, .log_fd = s->log_fd, .link_fd = s->link_fd,
		.sandbox_lease_fd = sandbox_uid_lease_fd(w->uid), .vsock_uid = -1,
	};
	int r;

	r = mvmd_vm_dir(d, w->vm->row.name, NULL, s->vm_dir, sizeof(s->vm_dir));
	if (r == 0)
		r = mvmd_vm_dir(d, w->vm->row.name, "vmm.log", s->vmm_log, sizeof(s->vmm_log));
	if (r == 0)
		r = mvmd_vm_dir(d, w->vm->row.name, "worker", s->record, sizeof(s->record));
	if (r == 0)
		r = mvmd_vm_dir(d, w->vm->row.name, "console.log", s->console_log,
		                sizeof(s->console_log));
	if (r == 0 && w->uid) {
		req.sandbox_dir = s->dir_plan.path;     /* sandbox_prepare() planned it */
		req.sandbox_id = sandbox_uid_id(d, w->uid);
	}
	if (r == 0 && w->vm->row.vsock_cid) {
		req.vsock_uds = s->vsock;       /* supervisor_start() made it */
		/* bound by the worker as root: the owner's to connect to */
		req.vsock_uid = geteuid() == 0 ? (int64_t)w->vm->row.owner_uid : -1;
	}
	if (r < 0) {
		snprintf(why, n, "VM directory");
		return r;
	}
	if (mvmd_adopt_socket(d, w->vm->row.name, s->sock, sizeof(s->sock)) == 0)
		req.adopt_socket = s->sock;
	if (cg)
		s->cgs = *cg;
	s->job.prepare = start_prepare;
	s->job.spawned = start_spawned;
#ifdef MVM_TEST_HOOKS
	/* Test builds only: MVM_TEST_ATTACH_FAIL=<VM name> in mvmd's
	 * environment makes that VM's child fail its first cgroup write. */
	const char *t = getenv("MVM_TEST_ATTACH_FAIL");

	s->attach_fail = t && !strcmp(t, w->vm->row.name);
#endif
	s->job.done_cb = spawn_done_cb;
	r = spawn_worker_job(&req, &s->job);
	if (r < 0)
		snprintf(why, n, "out of memory");
#ifdef MVM_TEST_HOOKS
	/* MVM_TEST_SPAWN_STALL_MS=N: each child waits N ms before its exec,
	 * a window for killing mvmd mid-spawn */
	if (r == 0 && (t = getenv("MVM_TEST_SPAWN_STALL_MS")))
		s->job.req.test_stall_ms = (unsigned)strtoul(t, NULL, 10);
#endif
	return r;
}

static struct worker_start *worker_start_new(struct worker *w, struct vm_files *files)
{
	struct worker_start *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->w = w;
	s->files = *files;
	vm_files_init(files);
	s->log_fd = s->link_fd = -1;
	return s;
}

int supervisor_start(struct vm *vm, struct vm_files *files, const struct start_cgroup *cg,
                     struct proto_error *err)
{
	struct mvmd *d = vm->d;
	struct worker *w = worker_new(vm);
	struct worker_start *s = w ? worker_start_new(w, files) : NULL;
	char why[512] = "";
	int sp[2] = { -1, -1 }, r;
	bool opened;

	if (!s) {
		vm_files_close(files);
		if (w)
			worker_free(w);
		return start_fail(err, -ENOMEM, "out of memory");
	}
	if (vm->row.vsock_cid && sandbox_vsock_path(d, vm->row.name, s->vsock, sizeof(s->vsock)) < 0) {
		r = start_fail(err, -ENAMETOOLONG, "vsock: its socket path is too long for a Unix "
		               "socket; give mvmd a shorter run_dir or the VM a shorter name");
		goto fail;
	}
	if (sandbox_enabled(d) &&
	    (r = sandbox_prepare(d, &vm->row, &w->uid, &s->dir_plan, why, sizeof(why))) < 0) {
		start_fail(err, r, r == -EUSERS ? "sandbox: every uid of sandbox_uid_count is leased; "
		                                  "raise sandbox_uid_count or stop a VM"
		                                : why[0] ? why : "sandbox directory");
		goto fail;
	}
	if (!w->uid && vm->row.vsock_cid && (r = sandbox_vsock_dir(d, &vm->row, &s->dir_plan)) < 0) {
		start_fail(err, r, "vsock directory");
		goto fail;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		r = start_fail(err, -errno, "socketpair");
		goto fail;
	}
	s->link_fd = sp[1];
	r = start_job(s, cg, why, sizeof(why));
	if (r < 0) {
		start_fail(err, r, why);
		goto fail_pair;
	}
	r = commit_starting(w, err);
	if (r < 0)
		goto fail_pair;
	r = worker_link_handles(w, sp[0], &opened);
	if (r < 0) {
		if (!opened)
			close(sp[0]);
		start_fail(err, r, "link");
		w->handles++;           /* start_failed() closes them */
		start_failed(w, r, err, false);
		worker_start_free(s);
		worker_job_done(w);
		return r;
	}
	worker_link(w);
	w->spawning = true;
	w->handles++;                   /* the job's, worker_job_done() */
	spawner_submit(d, &s->job);
	return 0;
fail_pair:
	close(sp[0]);
fail:
	worker_start_free(s);
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
	r = worker_link_handles(w, link_fd, &opened);
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
