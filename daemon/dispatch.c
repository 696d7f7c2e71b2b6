/* SPDX-License-Identifier: MIT */
/*
 * One handler per operation.  Every handler answers exactly once: now, or
 * (requests that wait on a VM) later through a waiter on the VM's record
 * while the connection is busy.  State changes are committed before the
 * answer.  Only this file answers clients: the layers below report through
 * vm_observer (every committed change, fanned out as events), worker_hooks
 * (boot, console output, exit) and d->admit_start_failed_cb.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include "daemon/ceilings.h"
#include "daemon/mvmd.h"
#include "daemon/tap.h"

#define LOG_READ_MAX (4 * 1024 * 1024)

typedef void (*handler_fn)(struct conn *c, struct proto_request *req);

static void reply_err(struct conn *c, struct proto_request *req, enum proto_err code,
                      const char *field, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));

static void reply_err(struct conn *c, struct proto_request *req, enum proto_err code,
                      const char *field, const char *fmt, ...)
{
	struct proto_error err = { .code = code };
	va_list ap;

	snprintf(err.field, sizeof(err.field), "%s", field ? field : "");
	va_start(ap, fmt);
	vsnprintf(err.message, sizeof(err.message), fmt, ap);
	va_end(ap);
	conn_reply_error(c, req->id, &err);
}

static void reply_storage(struct conn *c, struct proto_request *req, int r)
{
	struct proto_error err;

	vms_storage_error(c->d, r, &err);
	log_error("database: %s", err.message);
	conn_reply_error(c, req->id, &err);
}

/* The VM object, with what only mvmd knows: where its vsock socket is
 * (derived from the run dir and the name, so re-adopted workers keep it). */
static json_t *vm_json(const struct mvmd *d, const struct proto_vm *vm)
{
	json_t *o = proto_vm_to_json(vm);
	char path[4096];

	if (o && vm->vsock_cid && sandbox_vsock_path(d, vm->name, path, sizeof(path)) == 0)
		json_object_set_new(o, "vsock_path", json_string(path));
	else if (o)
		json_object_set_new(o, "vsock_path", json_null());
	return o;
}

static json_t *vm_result(const struct mvmd *d, const struct proto_vm *vm)
{
	return json_pack("{s:o}", "vm", vm_json(d, vm));
}

/* Load the named VM the caller may access; answers the error itself. */
static int load_vm(struct conn *c, struct proto_request *req, const char *name,
                   struct proto_vm *ret_vm)
{
	int r = db_vm_get(c->d->db, name, ret_vm);

	if (r == -ENOENT) {
		reply_err(c, req, PROTO_ERR_NOT_FOUND, "name",
		          "no VM named '%s'; see 'mvmctl list'", name);
		return r;
	}
	if (r < 0) {
		reply_storage(c, req, r);
		return r;
	}
	if (!conn_may_access(c, ret_vm->owner_uid)) {
		reply_err(c, req, PROTO_ERR_PERMISSION_DENIED, "name",
		          "VM '%s' belongs to uid %u; only its owner or root may use it",
		          name, (unsigned)ret_vm->owner_uid);
		proto_vm_clear(ret_vm);
		return -EPERM;
	}
	return 0;
}

static struct worker *vm_worker(struct conn *c, const struct proto_vm *vm)
{
	struct vm *rec = vms_find(c->d, vm->id);

	return rec ? rec->worker : NULL;
}

/* ---- waiters ------------------------------------------------------------ */

/* A client waiting on a VM: answered on a state change or at exit, or
 * (WAIT_STARTED) once its start left the spawner thread. */
enum waiter_kind { WAIT_RUNNING, WAIT_EXIT, WAIT_STARTED };

struct waiter {
	TAILQ_ENTRY(waiter) link;
	struct waiter_list *list;       /* the one it is on */
	struct vm *vm;                  /* a reference */
	struct conn *conn;
	json_t *id;
	enum waiter_kind kind;
	bool rm_after;                  /* vm.rm --force: delete after exit */
};

static void waiter_free(struct waiter *wt)
{
	TAILQ_REMOVE(wt->list, wt, link);
	wt->conn->waiter = NULL;
	json_decref(wt->id);
	vm_release(wt->vm);
	free(wt);
}

/* Answer later: the connection reads nothing more until then. */
static void add_waiter(struct conn *c, struct proto_request *req, struct vm *vm,
                       enum waiter_kind kind, bool rm_after)
{
	struct waiter *wt = calloc(1, sizeof(*wt));

	if (!wt) {
		conn_close(c);
		return;
	}
	wt->vm = vm_ref(vm);
	wt->conn = c;
	wt->id = json_incref(req->id);
	wt->kind = kind;
	wt->rm_after = rm_after;
	TAILQ_INSERT_TAIL(&vm->waiters, wt, link);
	wt->list = &vm->waiters;
	c->waiter = wt;
	c->busy = true;
}

static void remove_vm_files(struct mvmd *d, const char *name);

/* The VM, or with rm_after its deletion; err: what went wrong instead. */
static void waiter_answer(struct waiter *wt, const struct proto_error *err)
{
	struct conn *c = wt->conn;
	struct vm *vm = wt->vm;
	struct proto_error e;
	int r;

	if (err) {
		conn_reply_error(c, wt->id, err);
	} else if (!wt->rm_after) {
		conn_reply_ok(c, wt->id, vm_result(c->d, &vm->row));
	} else if ((r = vm_delete(vm)) < 0) {
		proto_error_set(&e, PROTO_ERR_STORAGE_ERROR, NULL,
		                "the VM stopped but could not be deleted: %s", strerror(-r));
		conn_reply_error(c, wt->id, &e);
	} else {
		remove_vm_files(c->d, vm->row.name);
		conn_reply_ok(c, wt->id, NULL);
	}
	waiter_free(wt);
	conn_resume(c);
}

/* Answer vm's waiters of kind (all of them when all is true).  They are
 * taken off first: an answer lets its connection go on with its next
 * request, which may wait on this VM again and must not be answered now. */
static void answer_waiters(struct vm *vm, enum waiter_kind kind, bool all,
                           const struct proto_error *err)
{
	struct waiter_list due = TAILQ_HEAD_INITIALIZER(due);
	struct waiter *wt, *next;

	vm_ref(vm);
	for (wt = TAILQ_FIRST(&vm->waiters); wt; wt = next) {
		next = TAILQ_NEXT(wt, link);
		if (!all && wt->kind != kind)
			continue;
		TAILQ_REMOVE(&vm->waiters, wt, link);
		TAILQ_INSERT_TAIL(&due, wt, link);
		wt->list = &due;        /* a connection closed meanwhile leaves it */
	}
	while ((wt = TAILQ_FIRST(&due)))
		waiter_answer(wt, err);
	vm_release(vm);
}

static void dispatch_pending_closed(struct conn *c);

void dispatch_conn_closed(struct conn *c)
{
	if (c->waiter)
		waiter_free(c->waiter);
	dispatch_pending_closed(c);
}

/* ---- events and console fan-out ----------------------------------------- */

static void publish_event(struct mvmd *d, const struct proto_vm *vm, const char *reason,
                          double time)
{
	/* observers hear of a change right after its event was stored; the
	 * wire key is event_id, as "id" marks a response */
	json_int_t id = (json_int_t)db_last_event_id(d->db);
	struct conn *c, *next;
	json_t *ev;

	for (c = TAILQ_FIRST(&d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (!c->subscribed || !conn_may_access(c, vm->owner_uid))
			continue;
		if (c->sub_vm[0] && strcmp(c->sub_vm, vm->name))
			continue;
		ev = proto_event_vm(vm->name, vm->state, reason, time);
		if (ev)
			json_object_set_new(ev, "event_id", json_integer(id));
		conn_send(c, ev);
	}
}

static void vm_changed_cb(struct vm_observer *o, struct vm *vm, const char *reason,
                          double time)
{
	(void)o;
	publish_event(vm->d, &vm->row, reason, time);
}

static struct vm_observer events_observer = { .changed_cb = vm_changed_cb };

static void booted_cb(struct vm *vm)
{
	answer_waiters(vm, WAIT_RUNNING, false, NULL);
}

static void console_cb(struct vm *vm, const unsigned char *data, size_t len)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&vm->d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->mode == CONN_CONSOLE && c->console_vm == vm->row.id)
			conn_send_raw(c, data, len);
		else if (c->follow_vm == vm->row.id)
			conn_send(c, proto_event_log(vm->row.name, data, len));
	}
}

/* The worker link took the console input queued: read its clients again. */
static void console_drained_cb(struct vm *vm)
{
	struct conn *c, *next;

	for (c = TAILQ_FIRST(&vm->d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if (c->mode == CONN_CONSOLE && c->console_vm == vm->row.id)
			conn_console_pause(c, false);
	}
}

/* Everyone waiting hears; console and follow clients get EOF. */
static void ended_cb(struct vm *vm, bool requested, double ran_s)
{
	struct conn *c, *next;

	(void)requested;
	(void)ran_s;
	answer_waiters(vm, WAIT_EXIT, true, NULL);
	for (c = TAILQ_FIRST(&vm->d->conns); c; c = next) {
		next = TAILQ_NEXT(c, link);
		if ((c->mode == CONN_CONSOLE && c->console_vm == vm->row.id) ||
		    c->follow_vm == vm->row.id)
			conn_end(c);
	}
}

/* The spawner is done with its start: the start's error goes to who waits
 * for it; who waits for its exit (a stop or rm meanwhile) hears it ended. */
static void start_done_cb(struct vm *vm, int r, const struct proto_error *err)
{
	answer_waiters(vm, WAIT_STARTED, false, err);
	if (err) {
		answer_waiters(vm, WAIT_RUNNING, false, err);
		if (!vm->worker)
			answer_waiters(vm, WAIT_EXIT, false, NULL);
	}
}

const struct worker_hooks dispatch_worker_hooks = {
	.start_done_cb = start_done_cb,
	.booted_cb = booted_cb,
	.console_cb = console_cb,
	.console_drained_cb = console_drained_cb,
	.ended_cb = ended_cb,
};

/* A queued VM's turn came and its start failed. */
static void start_failed_cb(struct vm *vm, const struct proto_error *err)
{
	answer_waiters(vm, WAIT_RUNNING, true, err);
}

void dispatch_init(struct mvmd *d)
{
	vms_observe(d, &events_observer);
	d->admit_start_failed_cb = start_failed_cb;
}

void dispatch_console_in(struct conn *c, const void *data, size_t len)
{
	struct vm *vm = vms_find(c->d, c->console_vm);

	if (!vm || !vm->worker) {
		conn_close(c);
		return;
	}
	if (!supervisor_console_in(vm->worker, data, len))
		conn_console_pause(c, true);
}

static void remove_vm_files(struct mvmd *d, const char *name)
{
	static const char *const files[] = { "console.log", "vmm.log" };
	char path[4096];

	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
		if (mvmd_vm_dir(d, name, files[i], path, sizeof(path)) == 0)
			unlink(path);
	if (mvmd_vm_dir(d, name, NULL, path, sizeof(path)) == 0)
		rmdir(path);
}


/* ---- hello, version, host ----------------------------------------------- */

static json_t *version_result(void)
{
	return json_pack("{s:i, s:s}", "version", PROTO_VERSION, "server", PROTO_SERVER);
}

static void op_hello(struct conn *c, struct proto_request *req)
{
	int64_t v = proto_arg_int(req, "version", 0);

	if (v != PROTO_VERSION) {
		reply_err(c, req, PROTO_ERR_UNSUPPORTED_VERSION, "version",
		          "this mvmd speaks protocol version %d, not %lld; use a matching mvmctl",
		          PROTO_VERSION, (long long)v);
		return;
	}
	conn_reply_ok(c, req->id, version_result());
}

static void op_version(struct conn *c, struct proto_request *req)
{
	conn_reply_ok(c, req->id, version_result());
}

static void op_host_info(struct conn *c, struct proto_request *req)
{
	struct db_totals t;
	struct sysinfo si;
	struct ceiling ceil[CEIL_COUNT];
	const char *why;
	bool sandboxed = sandbox_on(c->d, &why);
	int r = db_vm_totals(c->d->db, &t);

	if (r < 0) {
		reply_storage(c, req, r);
		return;
	}
	sysinfo(&si);
	ceilings_read(ceil, (uint64_t)t.active, CEIL_VM_VCPUS,
	              cap_limits_vms(cap_limits(&c->d->cap), CEIL_VM_MIB, CEIL_VM_VCPUS));
	conn_reply_ok(c, req->id, json_pack("{s:{s:i, s:I, s:I, s:I, s:I, s:I, s:s, s:i, s:o,"
	                                             " s:{s:b, s:s?, s:I, s:I}, s:o, s:o, s:o}}",
		"host",
		"cpus", (int)sysconf(_SC_NPROCESSORS_ONLN),
		"mem_mib", (json_int_t)((uint64_t)si.totalram * si.mem_unit >> 20),
		"vms", (json_int_t)t.vms,
		"vms_active", (json_int_t)t.active,
		"vcpus_used", (json_int_t)t.active_vcpus,
		"mem_mib_used", (json_int_t)t.active_mem_mib,
		"server", PROTO_SERVER, "version", PROTO_VERSION,
		"capacity", admit_host_json(c->d),
		"sandbox", "enabled", sandboxed, "reason", why,
		"uid_base", (json_int_t)c->d->cfg.sandbox_uid_base,
		"uid_count", (json_int_t)c->d->cfg.sandbox_uid_count,
		"health", restart_health_json(c->d),
		"ceilings", ceilings_json(ceil),
		"reclaim", reclaim_json(c->d)));
}

/* The Prometheus text GET /metrics serves, for mvmctl metrics. */
/* mvmctl metrics: the per-VM series of the caller's VMs. */
static bool metrics_may_see(void *arg, uint32_t owner)
{
	return conn_may_access(arg, owner);
}

static void op_metrics(struct conn *c, struct proto_request *req)
{
	char *text = NULL;
	size_t len = 0;
	int r = metrics_render(c->d, metrics_may_see, c, &text, &len);

	if (r < 0) {
		reply_storage(c, req, r);
		return;
	}
	conn_reply_ok(c, req->id, json_pack("{s:s%}", "text", text, len));
	free(text);
}

static void op_host_set(struct conn *c, struct proto_request *req)
{
	const char *key = proto_arg_str(req, "key"), *value = proto_arg_str(req, "value");
	char msg[512] = "";
	int r;

	if (c->cred.uid != 0 && c->cred.uid != c->d->uid) {
		reply_err(c, req, PROTO_ERR_PERMISSION_DENIED, "key",
		          "only root or mvmd's own user may change host limits");
		return;
	}
	r = admit_host_set(c->d, key, value, msg, sizeof(msg));
	if (r == -ENOMEM) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		return;
	}
	if (r < 0) {
		reply_err(c, req, PROTO_ERR_BAD_REQUEST, r == -ENOENT ? "key" : "value", "%s", msg);
		return;
	}
	log_info("uid %u set %s = %s", (unsigned)c->cred.uid, key, value);
	conn_reply_ok(c, req->id, json_pack("{s:o}", "host", admit_host_json(c->d)));
}

/* ---- files -------------------------------------------------------------- */

/* Open kernel, initrd and disks as the caller, and attach its TAPs (as
 * the caller too, tap.c); answers errors itself. */
static int open_vm_files(struct conn *c, struct proto_request *req,
                         const struct proto_vm *vm, struct vm_files *f)
{
	struct proto_error err;
	size_t i;
	json_t *disk, *nic;
	int r;

	vm_files_init(f);
	r = access_open(c->d, &c->cred, "kernel", vm->kernel, false, true, &f->kernel_fd, &err);
	if (r == 0 && vm->initrd)
		r = access_open(c->d, &c->cred, "initrd", vm->initrd, false, true, &f->initrd_fd, &err);
	json_array_foreach(vm->disks, i, disk) {
		if (r < 0 || f->ndisks >= 16)
			break;
		r = access_open(c->d, &c->cred, "disks",
		                json_string_value(json_object_get(disk, "path")),
		                !json_is_true(json_object_get(disk, "readonly")), false,
		                &f->disk_fds[f->ndisks], &err);
		if (r == 0)
			f->ndisks++;
	}
	json_array_foreach(vm->nics, i, nic) {
		if (r < 0 || f->nnics >= 8)
			break;
		r = tap_open(c->d, &c->cred, json_string_value(json_object_get(nic, "tap")),
		             &f->nic_fds[f->nnics], &err);
		if (r == 0)
			f->nnics++;
	}
	if (r < 0) {
		vm_files_close(f);
		conn_reply_error(c, req->id, &err);
	}
	return r;
}

/* Start or queue the admitted vm (admit.c) and answer; with wait, once
 * the guest is running. */
static void launch(struct conn *c, struct proto_request *req, struct admission *a,
                   const struct proto_vm *row, struct vm_files *files, bool wait)
{
	struct vm *vm = vms_hold(c->d, row);
	struct proto_error err;
	int r;

	if (!vm) {
		admit_abandon(a);
		vm_files_close(files);
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		return;
	}
	r = admit_launch(a, vm, files, &err);
	if (r < 0)
		conn_reply_error(c, req->id, &err);
	else if (wait && (vm->row.state == PROTO_VM_STARTING || vm->row.state == PROTO_VM_QUEUED))
		add_waiter(c, req, vm, WAIT_RUNNING, false);
	else if (vm->worker && vm->worker->spawning)
		add_waiter(c, req, vm, WAIT_STARTED, false);    /* its errors are the client's */
	else
		conn_reply_ok(c, req->id, vm_result(c->d, &vm->row));
	vm_release(vm);
}

/* Admit vm and start or queue it. */
static void start_vm(struct conn *c, struct proto_request *req,
                     const struct proto_vm *vm, bool wait)
{
	struct proto_error err;
	struct vm_files files;
	struct admission *a;

	if (open_vm_files(c, req, vm, &files) < 0)
		return;
	if (admit_reserve(c->d, vm, false, &a, &err) < 0) {
		vm_files_close(&files);
		conn_reply_error(c, req->id, &err);
		return;
	}
	launch(c, req, a, vm, &files, wait);
}

/* ---- create ------------------------------------------------------------- */

static int dup_arg(struct proto_request *req, const char *key, char **ret)
{
	const char *s = proto_arg_str(req, key);

	*ret = s ? strdup(s) : NULL;
	return (s && !*ret) ? -ENOMEM : 0;
}

static int vm_from_args(struct conn *c, struct proto_request *req, struct proto_vm *vm)
{
	int r;

	memset(vm, 0, sizeof(*vm));
	vm->state = PROTO_VM_CREATED;
	vm->owner_uid = c->cred.uid;
	vm->vcpus = proto_arg_int(req, "vcpus", 1);
	vm->mem_mib = proto_arg_int(req, "mem_mib", 128);
	vm->restart = proto_restart_from_name(proto_arg_str(req, "restart"));
	if ((int)vm->restart < 0)
		vm->restart = PROTO_RESTART_NO;     /* checked by the decoder */
	vm->restart_max = proto_arg_int(req, "restart_max", 0);
	vm->autostart = proto_arg_bool(req, "autostart", false);
	vm->balloon_mib = proto_arg_int(req, "balloon_mib", -1);
	vm->has_balloon = vm->balloon_mib >= 0;
	if (!vm->has_balloon)
		vm->balloon_mib = 0;
	vm->has_rng = proto_arg_bool(req, "rng", false);
	vm->vsock_cid = (uint32_t)proto_arg_int(req, "vsock", 0);
	vm->created_at = mvmd_now();
	vm->disks = json_deep_copy(proto_arg_json(req, "disks"));
	vm->nics = json_deep_copy(proto_arg_json(req, "nics"));
	vm->labels = json_deep_copy(proto_arg_json(req, "labels"));
	vm->pools = json_deep_copy(proto_arg_json(req, "pools"));
	r = dup_arg(req, "name", &vm->name);
	r = r ?: dup_arg(req, "kernel", &vm->kernel);
	r = r ?: dup_arg(req, "initrd", &vm->initrd);
	r = r ?: dup_arg(req, "cmdline", &vm->cmdline);
	if (r == 0 && (!vm->disks || !vm->nics || !vm->labels || !vm->pools))
		r = -ENOMEM;
	return r;
}

static void op_vm_create(struct conn *c, struct proto_request *req)
{
	bool start = proto_arg_bool(req, "start", true);
	struct admission *s = NULL;
	struct proto_error err;
	struct vm_files files;
	struct proto_vm vm;
	int r;

	if (vm_from_args(c, req, &vm) < 0) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		goto out;
	}
	if (vm.has_balloon && vm.balloon_mib >= vm.mem_mib) {
		reply_err(c, req, PROTO_ERR_BAD_REQUEST, "balloon_mib",
		          "balloon target %lld MiB is not below the guest's %lld MiB (mem_mib); "
		          "lower it (0 starts with the balloon empty)",
		          (long long)vm.balloon_mib, (long long)vm.mem_mib);
		goto out;
	}
	/* check the files now, so a VM that can never start is not stored */
	if (open_vm_files(c, req, &vm, &files) < 0)
		goto out;
	if (!start)
		vm_files_close(&files);
	/* admitted before its row exists: a refused create stores nothing */
	if (start && admit_reserve(c->d, &vm, proto_arg_bool(req, "no_queue", false),
	                           &s, &err) < 0) {
		vm_files_close(&files);
		conn_reply_error(c, req->id, &err);
		goto out;
	}
	r = db_vm_insert(c->d->db, &vm);
	if (r < 0 && s) {
		admit_abandon(s);
		vm_files_close(&files);
	}
	if (r == -EEXIST) {
		reply_err(c, req, PROTO_ERR_EXISTS, "name",
		          "a VM named '%s' exists; pick another name or remove it with 'mvmctl rm'",
		          vm.name);
		goto out;
	}
	if (r < 0) {
		reply_storage(c, req, r);
		goto out;
	}
	publish_event(c->d, &vm, NULL, vm.created_at);
	if (s)
		launch(c, req, s, &vm, &files, proto_arg_bool(req, "wait", false));
	else
		conn_reply_ok(c, req->id, vm_result(c->d, &vm));
out:
	proto_vm_clear(&vm);
}

/* ---- start, stop, kill, rm ---------------------------------------------- */

static void op_vm_start(struct conn *c, struct proto_request *req)
{
	struct proto_vm vm;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	if (vm_worker(c, &vm) || vm.state == PROTO_VM_STARTING || vm.state == PROTO_VM_RUNNING ||
	    vm.state == PROTO_VM_QUEUED)
		reply_err(c, req, PROTO_ERR_INVALID_STATE, "name",
		          "VM '%s' is %s; stop it first", vm.name, proto_vm_state_name(vm.state));
	else
		start_vm(c, req, &vm, proto_arg_bool(req, "wait", false));
	proto_vm_clear(&vm);
}

static struct worker *running_worker(struct conn *c, struct proto_request *req,
                                     const struct proto_vm *vm)
{
	struct worker *w = vm_worker(c, vm);

	if (!w || w->finished)
		reply_err(c, req, PROTO_ERR_INVALID_STATE, "name",
		          "VM '%s' is %s, not running; start it with 'mvmctl start %s'",
		          vm->name, proto_vm_state_name(vm->state), vm->name);
	return w && !w->finished ? w : NULL;
}

/* vm.stop and vm.kill of a queued VM: it leaves the queue, stopped, and
 * gives its capacity back.  False if vm is not queued. */
static bool stop_queued(struct conn *c, struct proto_request *req, struct proto_vm *vm,
                        const char *reason)
{
	struct vm *rec = vms_find(c->d, vm->id);
	int r = -ENOENT;

	if (vm->state != PROTO_VM_QUEUED)
		return false;
	if (rec) {
		vm_ref(rec);
		r = admit_cancel(rec, reason);
		/* a create --wait that waited for it hears how it ended */
		answer_waiters(rec, WAIT_RUNNING, true, NULL);
	}
	if (r < 0 && r != -ENOENT)
		reply_storage(c, req, r);
	else
		conn_reply_ok(c, req->id, vm_result(c->d, rec ? &rec->row : vm));
	vm_release(rec);
	return true;
}

static void op_vm_stop(struct conn *c, struct proto_request *req)
{
	struct proto_vm vm;
	struct worker *w;
	int r;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	if (stop_queued(c, req, &vm, "stopped while queued"))
		goto out;
	w = running_worker(c, req, &vm);
	if (w) {
		r = supervisor_stop(w, proto_arg_int(req, "timeout_s", 10));
		if (r < 0)
			reply_storage(c, req, r);
		else
			add_waiter(c, req, w->vm, WAIT_EXIT, false);
	}
out:
	proto_vm_clear(&vm);
}

/* The refusal names what to send instead, from the list mvm-vmm uses. */
static void reply_signal_ignored(struct conn *c, struct proto_request *req, const char *name,
                                 int sig)
{
	char stops[128] = "";
	size_t n = 0;

	for (const int *s = proto_vmm_stop_signals; *s && n < sizeof(stops); s++)
		n += (size_t)snprintf(stops + n, sizeof(stops) - n, "%s%s",
		                      n ? ", " : "", proto_signal_name(*s));
	reply_err(c, req, PROTO_ERR_BAD_REQUEST, "signal",
	          "VM '%s': its worker would ignore %s (a sandboxed worker is the init of "
	          "its own PID namespace); send one of %s (each stops the VM), SIGKILL, "
	          "SIGSTOP or SIGCONT", name, proto_signal_name(sig), stops);
}

static void op_vm_kill(struct conn *c, struct proto_request *req)
{
	int sig = proto_signal_from_name(proto_arg_str(req, "signal"));
	struct proto_vm vm;
	struct worker *w;
	int r;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	if (stop_queued(c, req, &vm, "killed while queued"))
		goto out;
	w = running_worker(c, req, &vm);
	if (!w)
		goto out;
	r = supervisor_kill(w, sig);
	if (r == -EINVAL)
		reply_signal_ignored(c, req, vm.name, sig);
	else if (r < 0)
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "cannot signal the worker: %s",
		          strerror(-r));
	else if (proto_signal_ends_process(sig))
		add_waiter(c, req, w->vm, WAIT_EXIT, false);
	else
		conn_reply_ok(c, req->id, vm_result(c->d, &w->vm->row));
out:
	proto_vm_clear(&vm);
}

/* A VM without a worker: a queued one leaves the queue first. */
static void rm_now(struct conn *c, struct proto_request *req, const struct proto_vm *row)
{
	struct vm *vm = vms_hold(c->d, row);
	int r;

	if (!vm) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		return;
	}
	if (admit_cancel(vm, NULL) == 0)
		answer_waiters(vm, WAIT_RUNNING, true, NULL);
	r = vm_delete(vm);
	if (r < 0) {
		reply_storage(c, req, r);
	} else {
		remove_vm_files(c->d, vm->row.name);
		conn_reply_ok(c, req->id, NULL);
	}
	vm_release(vm);
}

static void op_vm_rm(struct conn *c, struct proto_request *req)
{
	struct proto_vm vm;
	struct worker *w;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	w = vm_worker(c, &vm);
	if ((w || vm.state == PROTO_VM_QUEUED) && !proto_arg_bool(req, "force", false)) {
		reply_err(c, req, PROTO_ERR_INVALID_STATE, "name",
		          "VM '%s' is %s; stop it first or remove it with force (mvmctl rm -f)",
		          vm.name, proto_vm_state_name(w ? w->vm->row.state : vm.state));
	} else if (w) {
		supervisor_kill(w, SIGKILL);
		add_waiter(c, req, w->vm, WAIT_EXIT, true);
	} else {
		rm_now(c, req, &vm);
	}
	proto_vm_clear(&vm);
}

/* ---- list, show --------------------------------------------------------- */

static bool labels_match(json_t *want, json_t *have)
{
	const char *k;
	json_t *v;

	json_object_foreach(want, k, v) {
		json_t *h = json_object_get(have, k);

		if (!h || strcmp(json_string_value(h), json_string_value(v)))
			return false;
	}
	return true;
}

static bool list_match(struct conn *c, const struct proto_vm *vm, int state,
                       json_t *want)
{
	return (state < 0 || (int)vm->state == state) && conn_may_access(c, vm->owner_uid) &&
	       (!want || labels_match(want, vm->labels));
}

/* Straight from db's in-memory rows and their cached encodings into one
 * buffer: no SQL, no JSON tree, one write (10,000 VMs are megabytes). */
static void op_vm_list(struct conn *c, struct proto_request *req)
{
	const char *state = proto_arg_str(req, "state");
	int want_state = state ? proto_vm_state_from_name(state) : -1;
	json_t *want = proto_arg_json(req, "labels");
	struct db *db = c->d->db;
	struct proto_listbuf out;
	const char *wire;
	size_t n = db_vm_count(db), len;
	char *buf;
	int r;

	r = proto_listbuf_begin(&out, req->id, "vms", 65536);
	for (size_t i = 0; i < n && r == 0; i++) {
		if (!list_match(c, db_vm_at(db, i), want_state, want))
			continue;
		r = db_vm_wire(db, i, &wire, &len);
		if (r == 0)
			proto_listbuf_add(&out, wire, len);
	}
	if (r < 0)
		out.error = r;
	r = proto_listbuf_finish(&out, &buf, &len);
	if (r < 0)
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory listing VMs");
	else
		conn_send_line(c, buf, len);
}

static void op_vm_show(struct conn *c, struct proto_request *req)
{
	struct proto_vm vm;
	json_t *events;
	int r;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	r = db_event_list(c->d->db, vm.id, &events);
	if (r < 0)
		reply_storage(c, req, r);
	else
		conn_reply_ok(c, req->id, json_pack("{s:o, s:o}", "vm", vm_json(c->d, &vm),
		                                    "events", events));
	proto_vm_clear(&vm);
}

/* ---- logs, console, events ---------------------------------------------- */

/* The console log (bounded by the worker); missing means no output yet. */
static int read_log(struct mvmd *d, const char *name, char **ret, size_t *ret_len)
{
	char path[4096];
	ssize_t n;
	size_t len = 0;
	char *buf = malloc(LOG_READ_MAX);
	int fd, r = mvmd_vm_dir(d, name, "console.log", path, sizeof(path));

	if (!buf)
		return -ENOMEM;
	fd = r < 0 ? -1 : open(path, O_RDONLY | O_CLOEXEC);
	while (fd >= 0 && len < LOG_READ_MAX &&
	       (n = read(fd, buf + len, LOG_READ_MAX - len)) > 0)
		len += n;
	if (fd >= 0)
		close(fd);
	*ret = buf;
	*ret_len = len;
	return 0;
}

/* Start of the last `lines` lines (a final unterminated line counts). */
static size_t tail_start(const char *buf, size_t len, int64_t lines)
{
	size_t i = len;

	if (lines <= 0)
		return len;
	if (i > 0 && buf[i - 1] == '\n')
		i--;
	while (i > 0) {
		if (buf[i - 1] == '\n' && --lines == 0)
			return i;
		i--;
	}
	return 0;
}

static void op_vm_logs(struct conn *c, struct proto_request *req)
{
	int64_t tail = proto_arg_int(req, "tail", -1);
	struct proto_vm vm;
	struct worker *w;
	size_t len, start = 0;
	char *buf;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	if (read_log(c->d, vm.name, &buf, &len) < 0) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		goto out;
	}
	if (tail >= 0)
		start = tail_start(buf, len, tail);
	conn_reply_ok(c, req->id, json_pack("{s:o}", "data",
	                                    proto_json_string_lossy(buf + start, len - start)));
	free(buf);
	w = vm_worker(c, &vm);
	if (proto_arg_bool(req, "follow", false)) {
		if (w && !w->finished)
			c->follow_vm = vm.id;
		else
			conn_end(c);    /* nothing more will come */
	}
out:
	proto_vm_clear(&vm);
}

static void op_vm_console(struct conn *c, struct proto_request *req)
{
	struct proto_vm vm;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	if (running_worker(c, req, &vm)) {
		conn_reply_ok(c, req->id, NULL);
		c->mode = CONN_CONSOLE;
		c->console_vm = vm.id;
	}
	proto_vm_clear(&vm);
}

/* events.subscribe since: at most this many stored events replayed */
#define EVENTS_REPLAY_MAX 100000

static void op_events_subscribe(struct conn *c, struct proto_request *req)
{
	const char *name = proto_arg_str(req, "vm");
	json_t *past = NULL, *e;
	struct proto_vm vm;
	size_t i;
	int r;

	if (name) {
		if (load_vm(c, req, name, &vm) < 0)
			return;
		proto_vm_clear(&vm);
	}
	if (proto_arg_int(req, "since", -1) >= 0) {
		r = db_event_since(c->d->db, proto_arg_int(req, "since", 0), EVENTS_REPLAY_MAX + 1,
		                   &past);
		if (r < 0) {
			reply_storage(c, req, r);
			return;
		}
		if (json_array_size(past) > EVENTS_REPLAY_MAX) {
			json_decref(past);
			reply_err(c, req, PROTO_ERR_BAD_REQUEST, "since",
			          "more than %d events were stored after id %lld; subscribe from a "
			          "later id (the newest is %lld)", EVENTS_REPLAY_MAX,
			          (long long)proto_arg_int(req, "since", 0),
			          (long long)db_last_event_id(c->d->db));
			return;
		}
	}
	snprintf(c->sub_vm, sizeof(c->sub_vm), "%s", name ? name : "");
	conn_reply_ok(c, req->id, NULL);
	/* stored events first, then live ones: nothing runs in between */
	json_array_foreach(past, i, e) {
		json_int_t owner = json_integer_value(json_object_get(e, "owner_uid"));
		const char *vm_name = json_string_value(json_object_get(e, "vm"));

		/* a deleted VM's owner is unknown: only privileged clients see it */
		if (owner < 0 ? !conn_may_access(c, UINT32_MAX) : !conn_may_access(c, (uint32_t)owner))
			continue;
		if (c->sub_vm[0] && strcmp(c->sub_vm, vm_name))
			continue;
		json_object_del(e, "owner_uid");
		/* "id" marks a response on the wire: an event's is event_id */
		json_object_set(e, "event_id", json_object_get(e, "id"));
		json_object_del(e, "id");
		json_object_set_new(e, "event", json_string("vm"));
		conn_send(c, json_incref(e));
	}
	json_decref(past);
	c->subscribed = true;
}

/* ---- run-time requests to workers: update, stats ------------------------ */

/* How long vm.update and vm.stats wait for workers: a loaded worker
 * answers in milliseconds; one that does not is reported, not waited on. */
#define PENDING_TIMEOUT_MS 5000

enum pending_kind { PENDING_UPDATE, PENDING_STATS, PENDING_PAUSE };

/* A client waiting for worker replies.  It lives until every request it
 * sent was answered or failed (the supervisor calls back exactly once) and
 * its timer closed; conn is NULL once the client was answered or left. */
struct pending {
	struct mvmd *d;
	struct conn *conn;
	json_t *id;
	enum pending_kind kind;
	uv_timer_t timer;
	int refs;                       /* the timer + each request in flight */
	int waiting;                    /* requests not yet answered */
	json_t *vms;                    /* stats: the objects so far */
	struct vm *vm;                  /* update, pause: its VM (a reference) */
	char error[300];                /* update: the first refusal; stats: why none */
	enum proto_err code;            /* error's code; 0: bad_request */
	bool pause;                     /* pause: vm.pause, not vm.resume */
};

/* update: one set-limits or balloon request */
struct update_call {
	struct pending *p;
	bool balloon;
	bool disk;
	int index;
	json_t *obj;                    /* the device's new object (limits merged) */
	int64_t balloon_mib;
};

static void pending_unref(struct pending *p)
{
	if (--p->refs > 0)
		return;
	json_decref(p->id);
	json_decref(p->vms);
	if (p->vm)
		vm_release(p->vm);
	free(p);
}

static void pending_timer_closed(uv_handle_t *h)
{
	pending_unref(h->data);
}

/* The one answer, now or when the last reply came or the wait ended. */
static void pending_answer(struct pending *p, bool timed_out)
{
	struct conn *c = p->conn;
	struct proto_error err;
	json_t *res;

	if (!c)
		return;
	p->conn = NULL;
	c->pending = NULL;
	if (p->kind == PENDING_STATS && !p->error[0]) {
		res = json_pack("{s:O}", "vms", p->vms);
		if (timed_out)
			json_object_set_new(res, "incomplete", json_string(
			        "some workers did not answer within 5 s and are left out"));
		conn_reply_ok(c, p->id, res);
	} else if (p->error[0] || timed_out) {
		proto_error_set(&err, timed_out ? PROTO_ERR_UNAVAILABLE :
		                p->code ? p->code : PROTO_ERR_BAD_REQUEST,
		                NULL, "%s", timed_out && !p->error[0]
		                ? "the worker did not answer within 5 s; the change may still "
		                  "apply: see 'mvmctl stats'" : p->error);
		conn_reply_error(c, p->id, &err);
	} else {
		conn_reply_ok(c, p->id, vm_result(c->d, &p->vm->row));
	}
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, pending_timer_closed);
	if (c->busy)
		conn_resume(c);
}

static void pending_timeout_cb(uv_timer_t *t)
{
	pending_answer(t->data, true);
}

static struct pending *pending_new(struct conn *c, struct proto_request *req,
                                   enum pending_kind kind)
{
	struct pending *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->d = c->d;
	p->conn = c;
	p->id = json_incref(req->id);
	p->kind = kind;
	p->refs = 1;
	uv_timer_init(c->d->loop, &p->timer);
	p->timer.data = p;
	c->pending = p;
	return p;
}

/* Every request is out: answer now if none is, else wait (busy). */
static void pending_go(struct pending *p)
{
	if (p->waiting == 0) {
		pending_answer(p, false);
		return;
	}
	p->conn->busy = true;
	uv_timer_start(&p->timer, pending_timeout_cb, PENDING_TIMEOUT_MS, 0);
}

/* A reply counted: answer when it was the last. */
static void pending_replied(struct pending *p)
{
	if (--p->waiting == 0)
		pending_answer(p, false);
	pending_unref(p);
}

static void dispatch_pending_closed(struct conn *c)
{
	struct pending *p = c->pending;

	if (!p)
		return;
	c->pending = NULL;
	p->conn = NULL;
	uv_timer_stop(&p->timer);
	uv_close((uv_handle_t *)&p->timer, pending_timer_closed);
}

/* ---- vm.update ---------------------------------------------------------- */

/* A change the worker took is the VM's definition from now on: stored
 * for the next start, whether or not the client still waits. */
static void update_store(struct update_call *u)
{
	struct vm *vm = u->p->vm;
	int r;

	if (u->balloon) {
		vm->row.balloon_mib = u->balloon_mib;
		/* the worker's target is the user's now: reclaim.c starts over */
		vm->reclaim_mib = 0;
	} else {
		json_array_set(u->disk ? vm->row.disks : vm->row.nics, (size_t)u->index, u->obj);
	}
	r = db_vm_set_devices(u->p->d->db, &vm->row);
	if (r < 0)
		log_error("VM %s: the new %s is in force but could not be stored: %s",
		          vm->row.name, u->balloon ? "balloon target" : "rate limit",
		          strerror(-r));
}

static void update_reply_cb(void *arg, const struct proto_link_msg *reply)
{
	struct update_call *u = arg;
	struct pending *p = u->p;
	char what[32];

	if (u->balloon)
		snprintf(what, sizeof(what), "balloon");
	else
		snprintf(what, sizeof(what), "%s %d", u->disk ? "disk" : "nic", u->index);
	if (reply && !reply->error)
		update_store(u);
	else if (!p->error[0])
		snprintf(p->error, sizeof(p->error), "%s: %s", what,
		         reply ? reply->error : "the worker ended before it answered");
	json_decref(u->obj);
	free(u);
	pending_replied(p);
}

/* Merge the limit fields of change into a copy of the device's object;
 * null removes one.  NULL when out of memory. */
static json_t *merge_limits(json_t *dev, json_t *change)
{
	json_t *o = json_deep_copy(dev), *v;
	const char *k;

	if (!o)
		return NULL;
	json_object_foreach(change, k, v) {
		if (!strcmp(k, "index"))
			continue;
		if (json_is_null(v))
			json_object_del(o, k);
		else
			json_object_set(o, k, v);
	}
	return o;
}

static void limits_of(json_t *o, const char *ops, struct proto_link_limits *l)
{
	char ops_burst[16];

	snprintf(ops_burst, sizeof(ops_burst), "%s_burst", ops);
	l->bps = (uint64_t)json_integer_value(json_object_get(o, "bps"));
	l->bps_burst = (uint64_t)json_integer_value(json_object_get(o, "bps_burst"));
	l->ops = (uint64_t)json_integer_value(json_object_get(o, ops));
	l->ops_burst = (uint64_t)json_integer_value(json_object_get(o, ops_burst));
}

/* Check every change against the VM before sending any: a refused
 * vm.update changes nothing.  0 or -1 (answered). */
static int update_check(struct conn *c, struct proto_request *req, const struct proto_vm *vm,
                        json_t *changes[2], int64_t balloon_mib)
{
	static const char *const keys[2] = { "disks", "nics" };
	json_t *devs[2] = { vm->disks, vm->nics };
	size_t i;
	json_t *ch;

	if (!changes[0] && !changes[1] && balloon_mib < 0) {
		reply_err(c, req, PROTO_ERR_BAD_REQUEST, NULL,
		          "nothing to change: give disks, nics or balloon_mib");
		return -1;
	}
	for (int k = 0; k < 2; k++) {
		json_array_foreach(changes[k], i, ch) {
			json_int_t idx = json_integer_value(json_object_get(ch, "index"));
			const char *ops = k ? "pps" : "iops";
			struct proto_link_limits l;
			json_t *m;

			if ((size_t)idx >= json_array_size(devs[k])) {
				reply_err(c, req, PROTO_ERR_BAD_REQUEST, keys[k],
				          "VM '%s' has %zu %s; index %lld is not one (they count "
				          "from 0 in the order of 'mvmctl show')", vm->name,
				          json_array_size(devs[k]), keys[k], (long long)idx);
				return -1;
			}
			m = merge_limits(json_array_get(devs[k], (size_t)idx), ch);
			if (!m) {
				reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
				return -1;
			}
			limits_of(m, ops, &l);
			json_decref(m);
			if ((l.bps_burst && !l.bps) || (l.ops_burst && !l.ops)) {
				reply_err(c, req, PROTO_ERR_BAD_REQUEST, keys[k],
				          "%s %lld would have a burst without its rate; set the rate "
				          "too or remove the burst (null)", keys[k], (long long)idx);
				return -1;
			}
		}
	}
	if (balloon_mib >= 0 && !vm->has_balloon) {
		reply_err(c, req, PROTO_ERR_INVALID_STATE, "balloon_mib",
		          "VM '%s' has no balloon device; recreate it with a balloon "
		          "('mvmctl create --balloon SIZE') to reclaim its memory", vm->name);
		return -1;
	}
	if (balloon_mib >= vm->mem_mib) {
		reply_err(c, req, PROTO_ERR_BAD_REQUEST, "balloon_mib",
		          "balloon target %lld MiB is not below VM '%s''s %lld MiB of memory; "
		          "lower it", (long long)balloon_mib, vm->name, (long long)vm->mem_mib);
		return -1;
	}
	return 0;
}

static int update_send(struct pending *p, struct worker *w, struct update_call *u)
{
	struct proto_link_msg m = { 0 };
	int r;

	if (u->balloon) {
		m.type = PROTO_LINK_BALLOON;
		m.target = (uint64_t)u->balloon_mib << 20;
	} else {
		m.type = PROTO_LINK_SET_LIMITS;
		m.dev_kind = u->disk ? PROTO_LINK_DISK : PROTO_LINK_NET;
		m.dev_index = u->index;
		limits_of(u->obj, u->disk ? "iops" : "pps", &m.limits);
	}
	u->p = p;
	r = supervisor_request(w, &m, update_reply_cb, u);
	if (r < 0) {
		json_decref(u->obj);
		free(u);
		return r;
	}
	p->refs++;
	p->waiting++;
	return 0;
}

static void op_vm_update(struct conn *c, struct proto_request *req)
{
	json_t *changes[2] = { proto_arg_json(req, "disks"), proto_arg_json(req, "nics") };
	int64_t balloon_mib = proto_arg_int(req, "balloon_mib", -1);
	struct pending *p;
	struct proto_vm vm;
	struct worker *w;
	struct vm *rec;
	size_t i;
	json_t *ch;
	int r = 0;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	w = vm_worker(c, &vm);
	if (update_check(c, req, &vm, changes, balloon_mib) < 0)
		goto out;
	if (!w || vm.state != PROTO_VM_RUNNING) {
		reply_err(c, req, PROTO_ERR_INVALID_STATE, "name",
		          "VM '%s' is %s; vm.update changes a running VM: start it first "
		          "('mvmctl start %s')", vm.name, proto_vm_state_name(vm.state), vm.name);
		goto out;
	}
	rec = vms_find(c->d, vm.id);
	p = pending_new(c, req, PENDING_UPDATE);
	if (!p) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		goto out;
	}
	p->vm = vm_ref(rec);
	for (int k = 0; k < 2 && r == 0; k++) {
		json_array_foreach(changes[k], i, ch) {
			struct update_call *u = calloc(1, sizeof(*u));
			size_t idx = (size_t)json_integer_value(json_object_get(ch, "index"));

			if (!u) {
				r = -ENOMEM;
				break;
			}
			u->disk = k == 0;
			u->index = (int)idx;
			u->obj = merge_limits(json_array_get(k ? rec->row.nics : rec->row.disks, idx),
			                      ch);
			r = u->obj ? update_send(p, w, u) : -ENOMEM;
			if (!u->obj)
				free(u);
			if (r < 0)
				break;
		}
	}
	if (r == 0 && balloon_mib >= 0) {
		struct update_call *u = calloc(1, sizeof(*u));

		if (u) {
			u->balloon = true;
			u->balloon_mib = balloon_mib;
		}
		r = u ? update_send(p, w, u) : -ENOMEM;
	}
	if (r < 0)
		snprintf(p->error, sizeof(p->error), "cannot ask the worker: %s%s", strerror(-r),
		         p->waiting ? " (the changes before it were sent)" : "");
	pending_go(p);
out:
	proto_vm_clear(&vm);
}

/* ---- vm.stats ----------------------------------------------------------- */

static void stats_cb(void *arg, struct vm *vm, json_t *stats)
{
	struct pending *p = arg;

	(void)vm;
	if (stats && p->conn)
		json_array_append_new(p->vms, stats);
	else
		json_decref(stats);
	pending_replied(p);
}

static bool stats_ask(struct pending *p, struct vm *vm)
{
	if (vmstats_collect(vm, stats_cb, p) < 0)
		return false;
	p->refs++;
	p->waiting++;
	return true;
}

/* One VM (name) or every running VM the caller may see, as vm.list. */
static void op_vm_stats(struct conn *c, struct proto_request *req)
{
	const char *name = proto_arg_str(req, "name");
	struct db *db = c->d->db;
	struct pending *p;
	struct proto_vm vm;
	struct vm *rec;

	if (name) {
		if (load_vm(c, req, name, &vm) < 0)
			return;
		rec = vm_worker(c, &vm) ? vms_find(c->d, vm.id) : NULL;
		if (!rec) {
			reply_err(c, req, PROTO_ERR_INVALID_STATE, "name",
			          "VM '%s' is %s; only a running VM has stats", vm.name,
			          proto_vm_state_name(vm.state));
			proto_vm_clear(&vm);
			return;
		}
		proto_vm_clear(&vm);
	}
	p = pending_new(c, req, PENDING_STATS);
	if (p && !(p->vms = json_array())) {
		c->pending = NULL;
		free(p);
		p = NULL;
	}
	if (!p) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		return;
	}
	if (name) {
		/* running in the table but its worker is ending: say so, an
		 * empty list would read as "no such VM" */
		if (!stats_ask(p, rec)) {
			p->code = PROTO_ERR_INVALID_STATE;
			snprintf(p->error, sizeof(p->error), "VM '%s' is stopping; only a "
			         "running VM has stats", name);
		}
	} else {
		for (size_t i = 0, n = db_vm_count(db); i < n; i++) {
			const struct proto_vm *row = db_vm_at(db, i);

			if (!conn_may_access(c, row->owner_uid))
				continue;
			rec = vms_find(c->d, row->id);
			if (rec && rec->worker)
				stats_ask(p, rec);
		}
	}
	pending_go(p);
}

/* ---- vm.pause, vm.resume ------------------------------------------------ */

/* The worker held or released its vCPUs: that is the VM's state now,
 * whether or not the client still waits; a stop that began meanwhile
 * wins (the worker resumes for the Ctrl-Alt-Del). */
static void pause_reply_cb(void *arg, const struct proto_link_msg *reply)
{
	struct pending *p = arg;
	struct vm *vm = p->vm;
	enum proto_vm_state st = p->pause ? PROTO_VM_PAUSED : PROTO_VM_RUNNING;
	struct worker *w = vm->worker;
	int r;

	if (!reply || reply->error) {
		p->code = reply ? PROTO_ERR_INTERNAL : PROTO_ERR_INVALID_STATE;
		snprintf(p->error, sizeof(p->error), "VM '%s': %s", vm->row.name,
		         reply ? reply->error : "the worker ended before it answered");
	} else if (w && !w->finished && !w->stop_requested && vm->row.state != st) {
		r = vm_commit(vm, st, p->pause ? "paused" : "resumed");
		if (r < 0) {
			log_error("VM %s: %s but that cannot be stored: %s", vm->row.name,
			          p->pause ? "paused" : "resumed", strerror(-r));
			p->code = PROTO_ERR_STORAGE_ERROR;
			snprintf(p->error, sizeof(p->error), "VM '%s' is %s but the state "
			         "cannot be stored: %s", vm->row.name,
			         p->pause ? "paused" : "resumed", strerror(-r));
		}
	}
	pending_replied(p);
}

static void pause_op(struct conn *c, struct proto_request *req, bool pause)
{
	struct proto_link_msg m = { .type = pause ? PROTO_LINK_PAUSE : PROTO_LINK_RESUME };
	enum proto_vm_state want = pause ? PROTO_VM_RUNNING : PROTO_VM_PAUSED;
	struct pending *p;
	struct proto_vm vm;
	struct worker *w;
	int r;

	if (load_vm(c, req, proto_arg_str(req, "name"), &vm) < 0)
		return;
	w = vm_worker(c, &vm);
	if (!w || w->finished || w->stop_requested || vm.state != want) {
		if (pause && vm.state == PROTO_VM_PAUSED)
			reply_err(c, req, PROTO_ERR_INVALID_STATE, "name", "VM '%s' is paused "
			          "already; 'mvmctl resume %s' runs it again", vm.name, vm.name);
		else if (pause)
			reply_err(c, req, PROTO_ERR_INVALID_STATE, "name", "VM '%s' is %s; only "
			          "a running VM can be paused", vm.name,
			          proto_vm_state_name(vm.state));
		else
			reply_err(c, req, PROTO_ERR_INVALID_STATE, "name", "VM '%s' is %s, not "
			          "paused; 'mvmctl pause %s' pauses it", vm.name,
			          proto_vm_state_name(vm.state), vm.name);
		goto out;
	}
	p = pending_new(c, req, PENDING_PAUSE);
	if (!p) {
		reply_err(c, req, PROTO_ERR_INTERNAL, NULL, "out of memory");
		goto out;
	}
	p->vm = vm_ref(w->vm);
	p->pause = pause;
	r = supervisor_request(w, &m, pause_reply_cb, p);
	if (r < 0) {
		p->code = PROTO_ERR_INTERNAL;
		snprintf(p->error, sizeof(p->error), "cannot ask the worker: %s", strerror(-r));
	} else {
		p->refs++;
		p->waiting++;
	}
	pending_go(p);
out:
	proto_vm_clear(&vm);
}

static void op_vm_pause(struct conn *c, struct proto_request *req)
{
	pause_op(c, req, true);
}

static void op_vm_resume(struct conn *c, struct proto_request *req)
{
	pause_op(c, req, false);
}

static const handler_fn handlers[PROTO_OP_COUNT_] = {
	[PROTO_OP_HELLO] = op_hello,
	[PROTO_OP_VERSION] = op_version,
	[PROTO_OP_VM_CREATE] = op_vm_create,
	[PROTO_OP_VM_START] = op_vm_start,
	[PROTO_OP_VM_STOP] = op_vm_stop,
	[PROTO_OP_VM_KILL] = op_vm_kill,
	[PROTO_OP_VM_RM] = op_vm_rm,
	[PROTO_OP_VM_LIST] = op_vm_list,
	[PROTO_OP_VM_SHOW] = op_vm_show,
	[PROTO_OP_VM_LOGS] = op_vm_logs,
	[PROTO_OP_VM_CONSOLE] = op_vm_console,
	[PROTO_OP_EVENTS_SUBSCRIBE] = op_events_subscribe,
	[PROTO_OP_HOST_INFO] = op_host_info,
	[PROTO_OP_HOST_SET] = op_host_set,
	[PROTO_OP_VM_UPDATE] = op_vm_update,
	[PROTO_OP_VM_STATS] = op_vm_stats,
	[PROTO_OP_METRICS] = op_metrics,
	[PROTO_OP_VM_PAUSE] = op_vm_pause,
	[PROTO_OP_VM_RESUME] = op_vm_resume,
};

void dispatch_request(struct conn *c, struct proto_request *req)
{
	log_debug("uid %u: %s", (unsigned)c->cred.uid, proto_op_name(req->op));
	/* an op the decoder knows but this mvmd does not serve yet */
	if (!handlers[req->op]) {
		reply_err(c, req, PROTO_ERR_UNKNOWN_OP, "op", "this mvmd does not implement %s",
		          proto_op_name(req->op));
		return;
	}
	handlers[req->op](c, req);
}
