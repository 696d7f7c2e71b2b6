/* SPDX-License-Identifier: MIT */
/*
 * Workers: one mvm-vmm process per running VM, spawned detached (its own
 * session, so it outlives mvmd; a sandboxed one as the init of its own PID
 * namespace, spawn.c) with one end of a socketpair as fd 3.  The
 * link carries booted/console/exit from the worker and console-in/shutdown
 * to it.  A worker is finished once both its process exited and its link
 * reached EOF (whichever comes last), so the exit message is never lost to
 * the race between the exit and the last read.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <seccomp.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"

/* After the process exited, wait this long for the link's EOF. */
#define EXIT_SETTLE_MS 1000

static void worker_finish(struct worker *w);
static void slot_release(struct worker *w);

void vm_files_init(struct vm_files *f)
{
	f->kernel_fd = f->initrd_fd = -1;
	f->ndisks = 0;
	f->nnics = 0;
}

void vm_files_close(struct vm_files *f)
{
	if (f->kernel_fd >= 0)
		close(f->kernel_fd);
	if (f->initrd_fd >= 0)
		close(f->initrd_fd);
	for (int i = 0; i < f->ndisks; i++)
		close(f->disk_fds[i]);
	for (int i = 0; i < f->nnics; i++)
		close(f->nic_fds[i]);
	vm_files_init(f);
}

struct worker *supervisor_find(struct mvmd *d, int64_t vm_id)
{
	for (struct worker *w = d->workers; w; w = w->next)
		if (w->vm.id == vm_id)
			return w;
	return NULL;
}

/* ---- lifetime ----------------------------------------------------------- */

static void worker_free(struct worker *w)
{
	if (w->pidfd >= 0)
		close(w->pidfd);
	if (w->slot_fd >= 0)
		close(w->slot_fd);
	proto_linebuf_free(&w->lb);
	proto_vm_clear(&w->vm);
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
	if (!w->pprev)
		return;
	if (w->next)
		w->next->pprev = w->pprev;
	*w->pprev = w->next;
	w->pprev = NULL;
}

/* ---- state -------------------------------------------------------------- */

int supervisor_transition(struct worker *w, enum proto_vm_state state,
                          const char *reason)
{
	enum proto_vm_state old = w->vm.state;
	double now = mvmd_now();
	int r;

	w->vm.state = state;
	r = db_vm_transition(w->d->db, &w->vm, reason, now);
	if (r < 0) {
		log_error("VM %s: cannot store state %s: %s", w->vm.name,
		          proto_vm_state_name(state), strerror(-r));
		w->vm.state = old;
		return r;
	}
	dispatch_event(w->d, &w->vm, reason, now);
	return 0;
}

static void waiter_answer(struct worker *w, struct waiter *wt)
{
	struct proto_error err;
	int r;

	if (!wt->rm_after) {
		conn_reply_ok(wt->conn, wt->id, json_pack("{s:o}", "vm", proto_vm_to_json(&w->vm)));
	} else if ((r = db_vm_delete(w->d->db, &w->vm, mvmd_now())) < 0) {
		proto_error_set(&err, PROTO_ERR_STORAGE_ERROR, NULL,
		                "the VM stopped but could not be deleted: %s", strerror(-r));
		conn_reply_error(wt->conn, wt->id, &err);
	} else {
		dispatch_deleted(w->d, &w->vm);
		conn_reply_ok(wt->conn, wt->id, NULL);
	}
	conn_resume(wt->conn);
}

/* Answer waiters of the given kind (all kinds when exit is true). */
static void worker_answer(struct worker *w, enum waiter_kind kind, bool all)
{
	struct waiter **pp = &w->waiters, *wt;

	while ((wt = *pp)) {
		if (!all && wt->kind != kind) {
			pp = &wt->next;
			continue;
		}
		*pp = wt->next;
		waiter_answer(w, wt);
		json_decref(wt->id);
		free(wt);
	}
}

void supervisor_add_waiter(struct worker *w, struct conn *c, json_t *id,
                           enum waiter_kind kind, bool rm_after)
{
	struct waiter *wt = calloc(1, sizeof(*wt));

	if (!wt) {
		conn_close(c);
		return;
	}
	wt->conn = c;
	wt->id = json_incref(id);
	wt->kind = kind;
	wt->rm_after = rm_after;
	wt->next = w->waiters;
	w->waiters = wt;
	c->busy = true;
}

void supervisor_forget_conn(struct mvmd *d, struct conn *c)
{
	admit_forget_conn(d, c);
	for (struct worker *w = d->workers; w; w = w->next) {
		struct waiter **pp = &w->waiters, *wt;

		while ((wt = *pp)) {
			if (wt->conn != c) {
				pp = &wt->next;
				continue;
			}
			*pp = wt->next;
			json_decref(wt->id);
			free(wt);
		}
	}
}

/* ---- link --------------------------------------------------------------- */

struct link_write {
	uv_write_t req;
	uv_buf_t buf;
};

static void link_write_cb(uv_write_t *req, int status)
{
	struct link_write *lw = (struct link_write *)req;

	free(lw->buf.base);
	free(lw);
}

static int link_send(struct worker *w, const struct proto_link_msg *msg)
{
	struct link_write *lw;
	char *buf;
	size_t len;
	int r;

	if (w->link_eof)
		return -EPIPE;
	r = proto_link_encode(msg, &buf, &len);
	if (r < 0)
		return r;
	lw = malloc(sizeof(*lw));
	if (!lw) {
		free(buf);
		return -ENOMEM;
	}
	lw->buf = uv_buf_init(buf, len);
	r = uv_write(&lw->req, (uv_stream_t *)&w->link, &lw->buf, 1, link_write_cb);
	if (r < 0) {
		free(buf);
		free(lw);
	}
	return r;
}

void supervisor_console_in(struct worker *w, const void *data, size_t len)
{
	struct proto_link_msg m = { .type = PROTO_LINK_CONSOLE_IN };

	while (len > 0) {
		m.data = (unsigned char *)data;
		m.data_len = len < PROTO_LINK_CONSOLE_MAX ? len : PROTO_LINK_CONSOLE_MAX;
		if (link_send(w, &m) < 0)
			return;
		data = (const char *)data + m.data_len;
		len -= m.data_len;
	}
}

static void worker_console(struct worker *w, const unsigned char *data, size_t len)
{
	struct conn *c, *next;

	for (c = w->d->conns; c; c = next) {
		next = c->next;
		if (c->mode == CONN_CONSOLE && c->console_vm == w->vm.id)
			conn_send_raw(c, data, len);
		else if (c->follow_vm == w->vm.id)
			conn_send(c, proto_event_log(w->vm.name, data, len));
	}
}

static void worker_booted(struct worker *w)
{
	if (w->booted)
		return;
	w->booted = true;
	if (w->vm.state == PROTO_VM_STARTING)
		supervisor_transition(w, PROTO_VM_RUNNING, NULL);
	worker_answer(w, WAIT_RUNNING, false);
	admit_booted(w->d, w->vm.id);   /* its first byte ends the starting phase */
}

static void link_message(struct worker *w, const char *line, size_t len)
{
	struct proto_link_msg m;

	if (proto_link_decode(line, len, &m) < 0) {
		log_warn("VM %s: malformed message from its worker ignored", w->vm.name);
		return;
	}
	switch (m.type) {
	case PROTO_LINK_BOOTED:
		worker_booted(w);
		break;
	case PROTO_LINK_CONSOLE:
		worker_booted(w);       /* output implies boot, even if "booted" was lost */
		worker_console(w, m.data, m.data_len);
		break;
	case PROTO_LINK_EXIT:
		w->has_link_status = true;
		w->link_status = m.status;
		snprintf(w->link_reason, sizeof(w->link_reason), "%s", m.reason);
		break;
	case PROTO_LINK_PONG:
		w->last_pong = mvmd_now();
		w->ping_since = 0;
		break;
	case PROTO_LINK_HELLO:
		break;                  /* adopt.c read the one that counts */
	case PROTO_LINK_SECCOMP:
		/* its SIGSYS handler, just before it dies: keep the first */
		if (!w->has_seccomp_nr) {
			w->has_seccomp_nr = true;
			w->seccomp_nr = m.nr;
		}
		break;
	default:
		log_warn("VM %s: unexpected '%s' from its worker", w->vm.name,
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
	worker_close_handle(w, (uv_handle_t *)&w->link);
	if (w->exited)
		worker_finish(w);
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
		if (w->stop_requested) {
			snprintf(reason, size, "stopped");
			return PROTO_VM_STOPPED;
		}
		snprintf(reason, size, "signal %s", proto_signal_name(w->term_signal));
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

/* Console and follow clients of a VM that ended get EOF. */
static void worker_close_clients(struct worker *w)
{
	struct conn *c, *next;

	for (c = w->d->conns; c; c = next) {
		next = c->next;
		if ((c->mode == CONN_CONSOLE && c->console_vm == w->vm.id) ||
		    c->follow_vm == w->vm.id)
			conn_end(c);
	}
}

/* The pidfd names this process even if its pid were reused. */
static int worker_signal(struct worker *w, int sig)
{
	return syscall(SYS_pidfd_send_signal, w->pidfd, sig, NULL, 0) < 0 ? -errno : 0;
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
		admit_exit_reason(w->d, w->vm.id, w->term_signal, reason, sizeof(reason));
	free(w->vm.exit_reason);
	w->vm.exit_reason = strdup(reason);
	w->vm.has_exit_status = true;
	w->vm.exit_status = w->term_signal ? 128 + w->term_signal : (int)w->exit_status;
	w->vm.pid = 0;
	log_info("VM %s: worker ended: %s", w->vm.name, reason);
	supervisor_transition(w, st, reason);
	worker_unlink(w);
	worker_answer(w, WAIT_EXIT, true);
	worker_close_clients(w);
	worker_close_handle(w, (uv_handle_t *)&w->timer);
	worker_close_handle(w, (uv_handle_t *)&w->link);
	if (w->watched)
		worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
	/* capacity back, cgroup gone, the next queued VM may start */
	admit_ended(w->d, w->vm.id);
	supervisor_sandbox_remove(w->d, w->vm.name);
	slot_release(w);
	adopt_worker_ended(w->d, &w->vm, w->stop_requested || w->kill_requested,
	                   mvmd_now() - w->vm.started_at);
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
	w->term_signal = proto_exit_signal(status);
	w->exit_status = w->term_signal ? 0 : status;
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

/* ---- control ------------------------------------------------------------ */

static void stop_timeout_cb(uv_timer_t *t)
{
	struct worker *w = t->data;

	if (!w->exited)
		worker_signal(w, SIGKILL);
}

int supervisor_stop(struct worker *w, int64_t timeout_s)
{
	struct proto_link_msg m = { .type = PROTO_LINK_SHUTDOWN };
	int r;

	if (w->stop_requested)
		return 0;
	r = supervisor_transition(w, PROTO_VM_STOPPING, NULL);
	if (r < 0)
		return r;
	w->stop_requested = true;
	if (timeout_s > 0 && link_send(w, &m) == 0) {
		uv_timer_start(&w->timer, stop_timeout_cb, (uint64_t)timeout_s * 1000, 0);
		return 0;
	}
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
	while ((w = d->workers)) {
		worker_unlink(w);
		w->finished = true;
		while (w->waiters) {
			struct waiter *wt = w->waiters;

			w->waiters = wt->next;
			json_decref(wt->id);
			free(wt);
		}
		worker_close_handle(w, (uv_handle_t *)&w->timer);
		worker_close_handle(w, (uv_handle_t *)&w->link);
		if (w->watched)
			worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
	}
}

/* ---- sandbox ------------------------------------------------------------ */

/* Sandboxing needs root: only root can give the worker its own uid. */
bool supervisor_sandbox_on(const struct mvmd *d, const char **ret_why)
{
	bool root = geteuid() == 0;

	if (root && d->cfg.sandbox != 0) {
		*ret_why = NULL;
		return true;
	}
	if (root)
		*ret_why = "config says sandbox = false";
	else if (d->cfg.sandbox > 0)
		*ret_why = "mvmd is not root, so it cannot give a worker its own uid "
		           "(sandbox = true ignored)";
	else
		*ret_why = "mvmd is not root, so it cannot give a worker its own uid";
	return false;
}

/* Said once, at the first start, when workers run without it. */
static bool sandbox_enabled(const struct mvmd *d)
{
	static bool told;
	const char *why;
	bool on = supervisor_sandbox_on(d, &why);

	if (!on && !told) {
		told = true;
		log_warn("workers run without their sandbox: %s", why);
	}
	return on;
}

/* <run-dir>/vms/<name>: the worker's sandbox directory, its whole root. */
static int sandbox_dir(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s/vms/%s", d->cfg.run_dir, name);

	return n < 0 || (size_t)n >= size ? -ENAMETOOLONG : 0;
}

/* Removes what dfd holds (taking dfd); bounded depth: the directory holds
 * sockets, at most a host application's own subdirectory. */
static void remove_below(int dfd, int depth)
{
	DIR *dp = fdopendir(dfd);
	struct dirent *e;
	int sub;

	if (!dp) {
		close(dfd);
		return;
	}
	while ((e = readdir(dp))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		if (unlinkat(dirfd(dp), e->d_name, 0) == 0 || errno != EISDIR)
			continue;
		sub = openat(dirfd(dp), e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (sub >= 0 && depth > 0)
			remove_below(sub, depth - 1);
		else if (sub >= 0)
			close(sub);
		unlinkat(dirfd(dp), e->d_name, AT_REMOVEDIR);
	}
	closedir(dp);
}

void supervisor_sandbox_remove(struct mvmd *d, const char *name)
{
	char path[4096];
	int fd;

	if (!name[0] || sandbox_dir(d, name, path, sizeof(path)) < 0)
		return;
	fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return;
	remove_below(fd, 4);
	if (rmdir(path) < 0 && errno != ENOENT)
		log_warn("VM %s: cannot remove its sandbox directory %s: %s", name, path,
		         strerror(errno));
}

/* The real uid of process `name` (a /proc entry), or -1. */
static long long proc_uid(int proc_fd, const char *name)
{
	char path[NAME_MAX + 16], buf[1024], *p;
	unsigned long uid;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/status", name);
	fd = openat(proc_fd, path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	p = strstr(buf, "\nUid:");
	return p && sscanf(p + 5, "%lu", &uid) == 1 ? (long long)uid : -1;
}

/* Marks the slots whose uid some process on the host runs as: another
 * mvmd's worker (a test daemon beside a real one) or anything else that
 * uses the range.  RLIMIT_NPROC counts every task of a uid, and a shared
 * uid would let two VMs' workers signal each other. */
static void slots_in_use_on_host(const struct config *c, uint64_t n, unsigned char *used)
{
	DIR *dp = opendir("/proc");
	struct dirent *e;
	long long uid;

	if (!dp)
		return;
	while ((e = readdir(dp)))
		if (e->d_name[0] >= '1' && e->d_name[0] <= '9' &&
		    (uid = proc_uid(dirfd(dp), e->d_name)) >= c->sandbox_uid_base &&
		    (uint64_t)uid - c->sandbox_uid_base < n) {
			uid -= c->sandbox_uid_base;
			used[uid / 8] |= (unsigned char)(1u << (uid % 8));
		}
	closedir(dp);
}

/*
 * A host-wide claim on a uid: the abstract Unix socket "mvm-uid-N" can be
 * bound only once per network namespace, so two mvmds (a test daemon
 * beside another) never hand out the same uid in the moment between
 * choosing it and the worker switching to it.  Held until the worker ends.
 */
static int slot_claim(uint32_t uid)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), n;

	if (fd < 0)
		return -errno;
	n = snprintf(sa.sun_path + 1, sizeof(sa.sun_path) - 1, "mvm-uid-%u", uid);
	if (bind(fd, (struct sockaddr *)&sa,
	         (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)) < 0) {
		n = -errno;
		close(fd);
		return n;
	}
	return fd;
}

static void slot_release(struct worker *w)
{
	if (w->slot_fd >= 0)
		close(w->slot_fd);
	w->slot_fd = -1;
	w->has_slot = false;
}

/* The lowest slot that no live worker holds, no process uses and no other
 * mvmd claimed: uid and gid base + slot, unique per live worker. */
static int slot_alloc(const struct mvmd *d, uint32_t *ret, int *ret_fd)
{
	uint64_t n = d->cfg.sandbox_uid_count, slot;
	unsigned char *used;
	int fd = -EUSERS;

	if (d->cfg.sandbox_uid_base + n > 0xffffffffULL)
		n = 0xffffffffULL - d->cfg.sandbox_uid_base;
	used = calloc(n / 8 + 1, 1);
	if (!used)
		return -ENOMEM;
	/* our own first: a worker just spawned still runs as root */
	for (const struct worker *w = d->workers; w; w = w->next)
		if (w->has_slot && w->slot < n)
			used[w->slot / 8] |= (unsigned char)(1u << (w->slot % 8));
	slots_in_use_on_host(&d->cfg, n, used);
	for (slot = 0; slot < n; slot++) {
		if (used[slot / 8] & (1u << (slot % 8)))
			continue;
		fd = slot_claim(d->cfg.sandbox_uid_base + (uint32_t)slot);
		if (fd >= 0 || fd != -EADDRINUSE)
			break;
	}
	free(used);
	if (slot == n)
		return -EUSERS;
	if (fd < 0)
		return fd;
	*ret = (uint32_t)slot;
	*ret_fd = fd;
	return 0;
}

/* A slot and a fresh, empty sandbox directory that only its uid may enter
 * (and root, for the host ends of vsock sockets). */
static int sandbox_prepare(struct worker *w, char *dir, size_t size)
{
	struct mvmd *d = w->d;
	uid_t id;
	int r;

	r = slot_alloc(d, &w->slot, &w->slot_fd);
	if (r < 0)
		return r;
	w->has_slot = true;
	id = d->cfg.sandbox_uid_base + w->slot;
	/* what a worker of this VM that died unseen left behind */
	supervisor_sandbox_remove(d, w->vm.name);
	r = sandbox_dir(d, "", dir, size);      /* <run-dir>/vms/ first */
	if (r == 0 && mkdir(dir, 0700) < 0 && errno != EEXIST)
		r = -errno;
	if (r == 0)
		r = sandbox_dir(d, w->vm.name, dir, size);
	if (r == 0 && mkdir(dir, 0700) < 0)
		r = -errno;
	else if (r == 0 && (chown(dir, id, id) < 0 || chmod(dir, 0700) < 0)) {
		r = -errno;
		rmdir(dir);
	}
	if (r < 0)
		slot_release(w);
	return r;
}

/* An adopted worker keeps its slot: its uid says which (0 before its
 * lockdown or unsandboxed: none). */
static void slot_of_adopted(struct worker *w)
{
	const struct config *c = &w->d->cfg;
	char path[64], line[256];
	unsigned long uid;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%lld/status", (long long)w->vm.pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Uid: %lu", &uid) == 1) {
			if (uid >= c->sandbox_uid_base && uid - c->sandbox_uid_base < c->sandbox_uid_count) {
				w->has_slot = true;
				w->slot = (uint32_t)(uid - c->sandbox_uid_base);
				w->slot_fd = slot_claim((uint32_t)uid);
			}
			break;
		}
	fclose(f);
}

/* ---- spawning ----------------------------------------------------------- */

#define ARGV_MAX 96
#define ARG_BUFS 32                     /* 6 + a disk or NIC value each */

struct spawn_args {
	char *argv[ARGV_MAX];
	int argc;
	char bufs[ARG_BUFS][4200];      /* formatted argument values */
	int nbufs;
};

static void arg_add(struct spawn_args *a, const char *s)
{
	if (a->argc < ARGV_MAX - 1)
		a->argv[a->argc++] = (char *)s;
}

static void arg_addf(struct spawn_args *a, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void arg_addf(struct spawn_args *a, const char *fmt, ...)
{
	va_list ap;
	char *b;

	if (a->nbufs >= ARG_BUFS)
		return;
	b = a->bufs[a->nbufs++];
	va_start(ap, fmt);
	vsnprintf(b, sizeof(a->bufs[0]), fmt, ap);
	va_end(ap);
	arg_add(a, b);
}

/* The worker's fd for disk i and NIC i: after the link (3), the kernel
 * (4) and the initrd (5, if any), in that order; worker_spawn() maps them. */
static int disk_fd_no(const struct vm_files *f, int i)
{
	return (f->initrd_fd >= 0 ? 6 : 5) + i;
}

static int nic_fd_no(const struct vm_files *f, int i)
{
	return disk_fd_no(f, f->ndisks) + i;
}

/* A NIC without a MAC in its definition gets 52:54:00 and three bytes of
 * FNV-1a over the VM's name and the NIC's index: stable across restarts,
 * different between VMs (the worker's own default only sees fd numbers). */
static void nic_default_mac(const char *vm_name, int index, char *buf, size_t size)
{
	uint32_t h = 2166136261u;

	for (const char *p = vm_name; *p; p++)
		h = (h ^ (uint8_t)*p) * 16777619u;
	h = (h ^ (uint8_t)index) * 16777619u;
	snprintf(buf, size, "52:54:00:%02x:%02x:%02x", (h >> 16) & 0xff, (h >> 8) & 0xff, h & 0xff);
}

/* --disk /proc/self/fd/N[,ro] and --net fd=N[,mac=MAC]: the worker uses
 * the very fds that were opened for the client (docs/security.md). */
static void build_device_argv(const struct proto_vm *vm, const struct vm_files *f,
                              struct spawn_args *a)
{
	char def_mac[18];
	json_t *o, *mac;

	for (int i = 0; i < f->ndisks; i++) {
		o = json_array_get(vm->disks, (size_t)i);
		arg_add(a, "--disk");
		arg_addf(a, "/proc/self/fd/%d%s", disk_fd_no(f, i),
		         json_is_true(json_object_get(o, "readonly")) ? ",ro" : "");
	}
	for (int i = 0; i < f->nnics; i++) {
		mac = json_object_get(json_array_get(vm->nics, (size_t)i), "mac");
		arg_add(a, "--net");
		if (json_is_string(mac))
			snprintf(def_mac, sizeof(def_mac), "%s", json_string_value(mac));
		else
			nic_default_mac(vm->name, i, def_mac, sizeof(def_mac));
		arg_addf(a, "fd=%d,mac=%s", nic_fd_no(f, i), def_mac);
	}
}

/* Worker fds: 3 the link, 4 the kernel, 5 the initrd, then disks and
 * NICs.  The worker opens /proc/self/fd/N for the kernel and initrd and
 * takes disk and TAP fds over as they are: the very files that were
 * checked for the client. */
static void build_argv(struct mvmd *d, const struct proto_vm *vm,
                       const struct vm_files *files, const char *log_path,
                       struct spawn_args *a)
{
	arg_add(a, d->cfg.vmm_path);
	arg_add(a, "--kernel");
	arg_addf(a, "/proc/self/fd/%d", 4);
	if (files->initrd_fd >= 0) {
		arg_add(a, "--initrd");
		arg_addf(a, "/proc/self/fd/%d", 5);
	}
	arg_add(a, "--cmdline");
	arg_add(a, vm->cmdline);
	arg_add(a, "--mem");
	arg_addf(a, "%lldM", (long long)vm->mem_mib);
	arg_add(a, "--vcpus");
	arg_addf(a, "%d", vm->vcpus);
	arg_add(a, "--serial");
	arg_add(a, "/dev/null");
	arg_add(a, "--serial-log");
	arg_add(a, log_path);
	arg_add(a, "--serial-log-max");
	arg_add(a, "1M");
	build_device_argv(vm, files, a);
	arg_add(a, "--control-fd");
	arg_add(a, "3");
	if (a->nbufs < ARG_BUFS &&
	    adopt_socket_path(d, vm->name, a->bufs[a->nbufs], sizeof(a->bufs[0])) == 0) {
		arg_add(a, "--adopt-socket");
		arg_add(a, a->bufs[a->nbufs++]);
	}
	a->argv[a->argc] = NULL;
}

/* docs/security.md "Worker sandbox": its own uid and gid, and the per-VM
 * directory as its whole root. */
static void build_sandbox_argv(const struct worker *w, const char *dir, struct spawn_args *a)
{
	uint32_t id = w->d->cfg.sandbox_uid_base + w->slot;

	arg_add(a, "--sandbox");
	arg_add(a, "--sandbox-uid");
	arg_addf(a, "%u", id);
	arg_add(a, "--sandbox-gid");
	arg_addf(a, "%u", id);
	arg_add(a, "--sandbox-dir");
	arg_add(a, dir);
#ifdef MVM_TEST_HOOKS
	/* Test builds only: MVM_TEST_FORBIDDEN_SYSCALL=<VM name> in mvmd's
	 * environment makes that VM's worker break its filter on purpose. */
	const char *t = getenv("MVM_TEST_FORBIDDEN_SYSCALL");

	if (t && !strcmp(t, w->vm.name))
		arg_add(a, "--test-forbidden-syscall");
#endif
	a->argv[a->argc] = NULL;
}

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

/* fd 0 /dev/null, 1 and 2 the VMM log, 3 the link, 4 the kernel, then
 * initrd, disks and TAPs in the order build_argv() named them. */
static int worker_spawn(struct worker *w, const struct vm_files *files, int link_fd,
                        int log_fd)
{
	struct mvmd *d = w->d;
	int fds[SPAWN_MAX_FDS];
	struct spawn_req req = { .path = d->cfg.vmm_path, .fds = fds,
	                         .new_pid_ns = w->has_slot };
	struct spawn_args *a = calloc(1, sizeof(*a));
	char console_log[4096], sandbox[4096];
	pid_t pid;
	int r, n = 0;

	if (!a)
		return -ENOMEM;
	r = mvmd_vm_dir(d, w->vm.name, "console.log", console_log, sizeof(console_log));
	if (r == 0 && w->has_slot)
		r = sandbox_dir(d, w->vm.name, sandbox, sizeof(sandbox));
	if (r < 0)
		goto out;
	build_argv(d, &w->vm, files, console_log, a);
	if (w->has_slot)
		build_sandbox_argv(w, sandbox, a);
	fds[n++] = -1;
	fds[n++] = log_fd;
	fds[n++] = log_fd;
	fds[n++] = link_fd;
	fds[n++] = files->kernel_fd;
	if (files->initrd_fd >= 0)
		fds[n++] = files->initrd_fd;
	for (int i = 0; i < files->ndisks; i++)
		fds[n++] = files->disk_fds[i];
	for (int i = 0; i < files->nnics; i++)
		fds[n++] = files->nic_fds[i];
	req.argv = a->argv;
	req.nfds = n;
	r = spawn_process(&req, &pid, &w->pidfd);
	if (r == 0) {
		w->vm.pid = pid;
		admit_spawned(d, w->vm.id, pid);
		adopt_record_spawn(d, w->vm.name, pid);
	}
out:
	free(a);
	return r;
}

static struct worker *worker_new(struct mvmd *d, const struct proto_vm *vm)
{
	struct worker *w = calloc(1, sizeof(*w));
	json_t *j;

	if (!w)
		return NULL;
	w->d = d;
	w->pidfd = -1;
	w->slot_fd = -1;
	w->last_pong = mvmd_now();
	proto_linebuf_init(&w->lb);
	/* a private copy of the row, kept in step with the db */
	j = proto_vm_to_json(vm);
	if (!j || proto_vm_from_json(j, &w->vm) < 0) {
		json_decref(j);
		free(w);
		return NULL;
	}
	json_decref(j);
	w->vm.id = vm->id;
	return w;
}

static void worker_link(struct mvmd *d, struct worker *w)
{
	w->next = d->workers;
	if (d->workers)
		d->workers->pprev = &w->next;
	w->pprev = &d->workers;
	d->workers = w;
}

/* The pidfd watch, link pipe and timer: all three must exist before any of
 * them can be closed through handle_close_cb.  The link pipe owns link_fd
 * once opened (*ret_opened); before that the caller still closes it. */
static int worker_handles(struct worker *w, int link_fd, bool *ret_opened)
{
	int r;

	*ret_opened = false;
	uv_pipe_init(w->d->loop, &w->link, 0);
	uv_timer_init(w->d->loop, &w->timer);
	w->link.data = w->timer.data = w->pidfd_poll.data = w;
	w->handles = 2;
	r = uv_poll_init(w->d->loop, &w->pidfd_poll, w->pidfd);
	if (r < 0)
		return r;
	w->handles = 3;
	w->watched = true;
	r = uv_poll_start(&w->pidfd_poll, UV_READABLE, pidfd_cb);
	if (r == 0)
		r = uv_pipe_open(&w->link, link_fd);
	*ret_opened = r == 0;
	if (r == 0)
		r = uv_read_start((uv_stream_t *)&w->link, link_alloc_cb, link_read_cb);
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
 * finds through the record adopt_record_spawn() wrote. */
static int commit_starting(struct worker *w, struct proto_error *err)
{
	int r;

	w->vm.pid = 0;
	w->vm.started_at = mvmd_now();
	w->vm.has_exit_status = false;
	free(w->vm.exit_reason);
	w->vm.exit_reason = NULL;
	r = supervisor_transition(w, PROTO_VM_STARTING, NULL);
	if (r < 0)
		dispatch_storage_error(w->d, r, err);
	return r;
}

/* The spawn failed after "starting" was stored: the row says why. */
static void commit_start_failed(struct worker *w, const struct proto_error *err)
{
	char why[600];

	snprintf(why, sizeof(why), "start failed: %s", err->message);
	free(w->vm.exit_reason);
	w->vm.exit_reason = strdup(why);
	w->vm.pid = 0;
	supervisor_transition(w, PROTO_VM_CRASHED, why);
}

/* The process runs: watch its link and store its pid. */
static int supervisor_started(struct worker *w, int link_fd, struct worker **ret_w,
                              struct proto_error *err)
{
	bool opened;
	int r = worker_handles(w, link_fd, &opened);

	if (r < 0) {
		if (!opened)
			close(link_fd);
		w->link_eof = true;
		w->kill_requested = true;
		worker_signal(w, SIGKILL);
		if (!w->watched) {
			/* nothing would see it exit: reap it here */
			siginfo_t si;

			spawn_reap(w->pidfd, &si, true);
			w->exited = true;
			w->term_signal = SIGKILL;
			worker_finish(w);
		}
		return start_fail(err, r, "link");
	}
	r = db_vm_store(w->d->db, &w->vm);
	if (r < 0) {
		/* the client must not hear of a start that is not stored */
		log_error("VM %s: cannot store its worker's pid: %s", w->vm.name, strerror(-r));
		w->kill_requested = true;
		worker_signal(w, SIGKILL);
		dispatch_storage_error(w->d, r, err);
		return r;
	}
	*ret_w = w;
	return 0;
}

int supervisor_start(struct mvmd *d, const struct proto_vm *vm,
                     struct vm_files *files, struct worker **ret_w,
                     struct proto_error *err)
{
	struct worker *w = worker_new(d, vm);
	char console_log[4096], sandbox[4096];
	int sp[2] = { -1, -1 }, log_fd, r;

	if (!w) {
		vm_files_close(files);
		return start_fail(err, -ENOMEM, "out of memory");
	}
	log_fd = open_vmm_log(d, vm->name, console_log, sizeof(console_log));
	if (log_fd < 0) {
		r = start_fail(err, log_fd, "VM directory");
		goto fail;
	}
	if (sandbox_enabled(d) && (r = sandbox_prepare(w, sandbox, sizeof(sandbox))) < 0) {
		start_fail(err, r, r == -EUSERS ? "sandbox: every uid of sandbox_uid_count is in use"
		                                 : "sandbox directory");
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
		goto fail_sp;
	}
	close(sp[1]);
	close(log_fd);
	vm_files_close(files);
	worker_link(d, w);
	return supervisor_started(w, sp[0], ret_w, err);
fail_sp:
	close(sp[0]);
	close(sp[1]);
	close(log_fd);
	vm_files_close(files);
	if (w->has_slot)
		supervisor_sandbox_remove(d, vm->name);
	slot_release(w);
	worker_free(w);
	return r;
fail_pair:
	close(sp[0]);
	close(sp[1]);
fail_log:
	close(log_fd);
	if (w->has_slot)
		supervisor_sandbox_remove(d, vm->name);
	slot_release(w);
fail:
	vm_files_close(files);
	worker_free(w);
	return r;
}

/* ---- re-adoption and health (the policy lives in adopt.c) --------------- */

static void handles_fail(struct worker *w)
{
	w->finished = true;
	w->link_eof = true;
	worker_close_handle(w, (uv_handle_t *)&w->timer);
	worker_close_handle(w, (uv_handle_t *)&w->link);
	if (w->watched)
		worker_close_handle(w, (uv_handle_t *)&w->pidfd_poll);
}

int supervisor_adopt(struct mvmd *d, const struct proto_vm *vm, int link_fd, int pidfd,
                     bool booted, struct worker **ret_w)
{
	struct worker *w = worker_new(d, vm);
	bool opened = false;
	int r;

	if (!w) {
		close(link_fd);
		close(pidfd);
		return -ENOMEM;
	}
	w->adopted = true;
	w->pidfd = pidfd;
	w->vm.pid = vm->pid;
	slot_of_adopted(w);
	r = worker_handles(w, link_fd, &opened);
	if (r < 0) {
		if (!opened)
			close(link_fd);
		handles_fail(w);
		return r;
	}
	worker_link(d, w);
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
		w->ping_since = mvmd_now();
	return link_send(w, &m);
}

void supervisor_hung(struct worker *w)
{
	if (w->exited || w->hung)
		return;
	log_error("VM %s: worker pid %lld did not answer pings; killing it as hung",
	          w->vm.name, (long long)w->vm.pid);
	w->hung = true;
	worker_signal(w, SIGKILL);
}
