/* SPDX-License-Identifier: MIT */
/*
 * Workers: one mvm-vmm process per running VM, spawned detached (its own
 * session, so it outlives mvmd) with one end of a socketpair as fd 3.  The
 * link carries booted/console/exit from the worker and console-in/shutdown
 * to it.  A worker is finished once both its process exited and its link
 * reached EOF (whichever comes last), so the exit message is never lost to
 * the race between SIGCHLD and the last read.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mvmd.h"

/* After the process exited, wait this long for the link's EOF. */
#define EXIT_SETTLE_MS 1000

static void worker_finish(struct worker *w);

void vm_files_init(struct vm_files *f)
{
	f->kernel_fd = f->initrd_fd = -1;
	f->ndisks = 0;
}

void vm_files_close(struct vm_files *f)
{
	if (f->kernel_fd >= 0)
		close(f->kernel_fd);
	if (f->initrd_fd >= 0)
		close(f->initrd_fd);
	for (int i = 0; i < f->ndisks; i++)
		close(f->disk_fds[i]);
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

/* Decide the final state and reason from how the process ended. */
static enum proto_vm_state exit_outcome(struct worker *w, char *reason, size_t size)
{
	const char *r;

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

static void worker_finish(struct worker *w)
{
	char reason[64];
	enum proto_vm_state st;

	if (w->finished)
		return;
	w->finished = true;
	uv_timer_stop(&w->timer);
	st = exit_outcome(w, reason, sizeof(reason));
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
	worker_close_handle(w, (uv_handle_t *)&w->proc);
}

static void settle_cb(uv_timer_t *t)
{
	worker_finish(t->data);
}

static void exit_cb(uv_process_t *p, int64_t status, int term_signal)
{
	struct worker *w = p->data;

	w->exited = true;
	w->exit_status = status;
	w->term_signal = term_signal;
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
		uv_process_kill(&w->proc, SIGKILL);
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
	w->kill_requested = true;
	return uv_process_kill(&w->proc, sig);
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
		worker_close_handle(w, (uv_handle_t *)&w->proc);
	}
}

/* ---- spawning ----------------------------------------------------------- */

#define ARGV_MAX 32

struct spawn_args {
	char *argv[ARGV_MAX];
	int argc;
	char bufs[6][4200];             /* formatted argument values */
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

	if (a->nbufs >= 6)
		return;
	b = a->bufs[a->nbufs++];
	va_start(ap, fmt);
	vsnprintf(b, sizeof(a->bufs[0]), fmt, ap);
	va_end(ap);
	arg_add(a, b);
}

/* Worker fds: 3 the link, 4 the kernel, 5 the initrd.  The worker opens
 * /proc/self/fd/N, the very files that were checked for the client. */
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
	arg_add(a, "--control-fd");
	arg_add(a, "3");
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

static int worker_spawn(struct worker *w, const struct vm_files *files, int link_fd,
                        int log_fd)
{
	struct mvmd *d = w->d;
	uv_stdio_container_t stdio[6];
	uv_process_options_t opt = { 0 };
	struct spawn_args *a = calloc(1, sizeof(*a));
	char console_log[4096];
	int r, n = 0;

	if (!a)
		return -ENOMEM;
	r = mvmd_vm_dir(d, w->vm.name, "console.log", console_log, sizeof(console_log));
	if (r < 0)
		goto out;
	build_argv(d, &w->vm, files, console_log, a);
	stdio[n++] = (uv_stdio_container_t){ .flags = UV_IGNORE };
	stdio[n++] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = log_fd };
	stdio[n++] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = log_fd };
	stdio[n++] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = link_fd };
	stdio[n++] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = files->kernel_fd };
	if (files->initrd_fd >= 0)
		stdio[n++] = (uv_stdio_container_t){ .flags = UV_INHERIT_FD, .data.fd = files->initrd_fd };
	opt.file = d->cfg.vmm_path;
	opt.args = a->argv;
	opt.exit_cb = exit_cb;
	opt.stdio = stdio;
	opt.stdio_count = n;
	/* its own session: a signal to mvmd's process group spares the VMs */
	opt.flags = UV_PROCESS_DETACHED;
	w->proc.data = w;
	r = uv_spawn(d->loop, &w->proc, &opt);
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

/* Process handle, link pipe and timer: all three must exist before any
 * of them can be closed through handle_close_cb. */
static int worker_handles(struct worker *w, int link_fd)
{
	uv_pipe_init(w->d->loop, &w->link, 0);
	uv_timer_init(w->d->loop, &w->timer);
	w->link.data = w->timer.data = w;
	w->handles = 3;
	if (uv_pipe_open(&w->link, link_fd) < 0)
		return -EIO;
	return uv_read_start((uv_stream_t *)&w->link, link_alloc_cb, link_read_cb);
}

static int start_fail(struct proto_error *err, int r, const char *what)
{
	proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "cannot start the worker: %s: %s",
	                what, strerror(-r));
	return r;
}

/* The process runs: watch its link and commit "starting". */
static int supervisor_started(struct worker *w, int link_fd, struct worker **ret_w,
                              struct proto_error *err)
{
	int r = worker_handles(w, link_fd);

	if (r < 0) {
		close(link_fd);
		w->link_eof = true;
		uv_process_kill(&w->proc, SIGKILL);
		return start_fail(err, r, "link");
	}
	w->vm.pid = w->proc.pid;
	w->vm.started_at = mvmd_now();
	w->vm.has_exit_status = false;
	free(w->vm.exit_reason);
	w->vm.exit_reason = NULL;
	r = supervisor_transition(w, PROTO_VM_STARTING, NULL);
	if (r < 0) {
		/* the client must not hear of a start that is not stored */
		w->kill_requested = true;
		uv_process_kill(&w->proc, SIGKILL);
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL,
		                "cannot store the VM's new state: %s; free disk space in the state dir",
		                strerror(-r));
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
	char console_log[4096];
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
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
		r = start_fail(err, -errno, "socketpair");
		goto fail_log;
	}
	r = worker_spawn(w, files, sp[1], log_fd);
	if (r < 0) {
		start_fail(err, r, d->cfg.vmm_path);
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
	/* a failed uv_spawn still initialised the handle: close it */
	w->handles = 1;
	worker_close_handle(w, (uv_handle_t *)&w->proc);
	return r;
fail_log:
	close(log_fd);
fail:
	vm_files_close(files);
	worker_free(w);
	return r;
}
