/* SPDX-License-Identifier: MIT */
/*
 * Capacity in mvmd: the one place where VMs are admitted (capacity.c's
 * accounting), queued while the boot-storm limits say wait, started in
 * FIFO order as starting slots free, placed in their cgroup, and where
 * their reservation is given back when they end.
 *
 * Admission is atomic with the state change: mvmd's loop is single-
 * threaded, so between cap_admit() and the SQLite commit that moves the
 * VM to queued or starting no other request runs; a failed commit gives
 * the reservation back before the next request is read.
 *
 * A VM's reservation lives in its vm_slot from admission until its worker
 * ended (or it left the queue), and cap_release() zeroes the token, so
 * every path (stop, crash, kill, rm, failed start) gives it back once.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "daemon/mvmd.h"

static void drain(struct mvmd *d);

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The physical budget the parent cgroup caps: without the overcommit. */
static uint64_t budget_mib(const struct cap_limits *l)
{
	if (l->memory_budget_mib)
		return l->memory_budget_mib;
	return l->host_mem_mib > l->memory_reserved_mib ?
	       l->host_mem_mib - l->memory_reserved_mib : 0;
}

static void set_budget(struct mvmd *d)
{
	char err[512];

	if (cgroup_parent_set_budget(&d->cg, budget_mib(cap_limits(&d->cap)) << 20,
	                             err, sizeof(err)) < 0)
		log_warn("cgroup: cannot cap the VMs' parent: %s", err);
}

int admit_init(struct mvmd *d)
{
	struct cgroup_opts o = { .parent = d->cfg.cgroup_parent, .move_to_leaf = true };
	char err[512];
	int r;

	r = cap_init(&d->cap, &d->cfg.limits, err, sizeof(err));
	if (r < 0) {
		log_error("capacity limits: %s; fix the config", err);
		return r;
	}
	r = cgroup_init(&d->cg, &o);
	if (r < 0) {
		log_error("cgroup_parent '%s': %s; use a relative or absolute cgroup path",
		          o.parent ? o.parent : "mvm", strerror(-r));
		cap_free(&d->cap);
		return r;
	}
	if (cgroup_usable(&d->cg))
		log_info("cgroups: %s", cgroup_reason(&d->cg));
	else
		log_warn("cgroups: %s; VMs run without resource limits (admission still applies)",
		         cgroup_reason(&d->cg));
	set_budget(d);
	uv_timer_init(d->loop, &d->start_timer);
	d->start_timer.data = d;
	d->admit_ready = true;
	return 0;
}

/* ---- slots -------------------------------------------------------------- */

static struct vm_slot *slot_find(struct mvmd *d, int64_t vm_id)
{
	for (struct vm_slot *s = d->slots; s; s = s->next)
		if (s->vm_id == vm_id)
			return s;
	return NULL;
}

static void slot_link(struct mvmd *d, struct vm_slot *s)
{
	s->next = d->slots;
	if (d->slots)
		d->slots->pprev = &s->next;
	s->pprev = &d->slots;
	d->slots = s;
}

static void slot_unlink(struct vm_slot *s)
{
	if (!s->pprev)
		return;
	if (s->next)
		s->next->pprev = s->pprev;
	*s->pprev = s->next;
	s->pprev = NULL;
}

/* A waiting client of a queued VM hears the VM or an error, once. */
static void slot_answer(struct vm_slot *s, const struct proto_vm *vm,
                        const struct proto_error *err)
{
	struct conn *c = s->wait_conn;

	if (!c)
		return;
	if (err)
		conn_reply_error(c, s->wait_id, err);
	else
		conn_reply_ok(c, s->wait_id, json_pack("{s:o}", "vm", proto_vm_to_json(vm)));
	json_decref(s->wait_id);
	s->wait_conn = NULL;
	s->wait_id = NULL;
	conn_resume(c);
}

/* Give everything back.  destroy: remove the cgroup (false at daemon
 * exit, when the worker keeps running in it). */
static void slot_free(struct vm_slot *s, bool destroy)
{
	struct mvmd *d = s->d;
	char err[512];

	slot_unlink(s);
	cap_queue_remove(&d->cap, &s->qnode);
	if (s->starting)
		cap_start_done(&d->cap);
	cap_release(&d->cap, &s->resv);
	if (s->cg && !destroy)
		cgroup_vm_close(s->cg);
	else if (s->cg && cgroup_vm_destroy(s->cg, err, sizeof(err)) < 0)
		log_warn("VM id %lld: cgroup: %s", (long long)s->vm_id, err);
	json_decref(s->wait_id);        /* a waiter left only at daemon exit */
	vm_files_close(&s->files);
	proto_vm_clear(&s->vm);
	free(s);
}

void admit_free(struct mvmd *d)
{
	if (!d->admit_ready)
		return;
	d->admit_ready = false;
	while (d->slots)
		slot_free(d->slots, false);
	uv_close((uv_handle_t *)&d->start_timer, NULL);
	cap_free(&d->cap);
	cgroup_free(&d->cg);
}

/* ---- admission ---------------------------------------------------------- */

static int request_of(const struct proto_vm *vm, struct cap_request *r)
{
	size_t i;
	json_t *p;

	memset(r, 0, sizeof(*r));
	r->uid = vm->owner_uid;
	r->mem_mib = (uint64_t)vm->mem_mib;
	r->vcpus = (uint64_t)vm->vcpus;
	json_array_foreach(vm->pools, i, p) {
		if (r->npools == CAP_REQ_MAX_POOLS)
			return -EINVAL;
		r->pools[r->npools++] = json_string_value(p);
	}
	return 0;
}

static enum proto_err admit_error_code(int r)
{
	switch (r) {
	case -ENOSPC: return PROTO_ERR_LIMIT_EXCEEDED;  /* never fits as asked */
	case -EAGAIN: return PROTO_ERR_UNAVAILABLE;     /* may fit later */
	case -ENOENT: return PROTO_ERR_NOT_FOUND;
	case -EINVAL: return PROTO_ERR_BAD_REQUEST;
	default: return PROTO_ERR_INTERNAL;
	}
}

int admit_reserve(struct mvmd *d, const struct proto_vm *vm, bool no_queue,
                  struct vm_slot **ret, struct proto_error *err)
{
	struct vm_slot *s = calloc(1, sizeof(*s));
	struct cap_request req;
	char msg[512];
	int r;

	if (!s)
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "out of memory");
	s->d = d;
	vm_files_init(&s->files);
	r = request_of(vm, &req);
	if (r == 0)
		r = cap_admit(&d->cap, &req, &s->resv, msg, sizeof(msg));
	if (r < 0) {
		proto_error_set(err, admit_error_code(r), r == -ENOENT ? "pools" : NULL,
		                "%s", r == -EINVAL && !msg[0] ? "too many pools" : msg);
		free(s);
		return r;
	}
	/* FIFO: nobody overtakes a VM already queued */
	r = cap_queue_len(&d->cap) ? -EBUSY : cap_start_try(&d->cap, now_ns());
	if (r == 0) {
		s->starting = true;
	} else if (no_queue) {
		if (cap_queue_len(&d->cap))
			snprintf(msg, sizeof(msg), "starts: %zu VMs queued ahead",
			         cap_queue_len(&d->cap));
		else
			cap_start_explain(&d->cap, r, now_ns(), msg, sizeof(msg));
		proto_error_set(err, admit_error_code(-EAGAIN), NULL, "%s; not queued (no_queue)", msg);
		slot_free(s, true);
		return r;
	}
	*ret = s;
	return 0;
}

void admit_abandon(struct vm_slot *s)
{
	slot_free(s, true);
}

/* ---- starting ----------------------------------------------------------- */

/* Create the VM's cgroup and spawn its worker (admit_spawned puts it in
 * the cgroup).  On failure err says why and the caller frees s. */
static int slot_start(struct vm_slot *s, const struct proto_vm *vm, struct vm_files *files,
                      struct worker **ret_w, struct proto_error *err)
{
	struct mvmd *d = s->d;
	uint64_t mem = (uint64_t)vm->mem_mib + cap_limits(&d->cap)->vmm_overhead_mib;
	char msg[512];
	int r;

	r = cgroup_vm_create(&d->cg, vm->name, mem << 20, (unsigned)vm->vcpus, 0, &s->cg,
	                     msg, sizeof(msg));
	if (r < 0) {
		vm_files_close(files);
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                       "cannot create the VM's cgroup: %s", msg);
	}
	return supervisor_start(d, vm, files, ret_w, err);
}

/* Commit "queued" and wait in the FIFO, holding the client's files. */
static int slot_queue(struct vm_slot *s, const struct proto_vm *vm, struct vm_files *files)
{
	struct mvmd *d = s->d;
	double now = mvmd_now();
	int r = proto_vm_copy(vm, &s->vm);

	if (r < 0)
		return r;
	s->vm.state = PROTO_VM_QUEUED;
	r = db_vm_transition(d->db, &s->vm, NULL, now);
	if (r < 0)
		return r;
	s->files = *files;
	vm_files_init(files);
	cap_queue_push(&d->cap, &s->qnode, s->vm_id);
	dispatch_event(d, &s->vm, NULL, now);
	return 0;
}

void admit_launch(struct conn *c, struct proto_request *req, struct vm_slot *s,
                  const struct proto_vm *vm, struct vm_files *files, bool wait)
{
	struct mvmd *d = s->d;
	struct proto_error err;
	struct worker *w;
	int r;

	/* c NULL: a restart policy or autostart (adopt.c); nobody to answer */
	s->vm_id = vm->id;
	slot_link(s->d, s);
	if (s->starting) {
		r = slot_start(s, vm, files, &w, &err);
		if (r < 0) {
			log_error("VM %s: %s", vm->name, err.message);
			if (c)
				conn_reply_error(c, req->id, &err);
			slot_free(s, true);
			drain(d);       /* its starting slot is free again */
		} else if (!c) {
			return;
		} else if (wait && w->vm.state == PROTO_VM_STARTING) {
			supervisor_add_waiter(w, c, req->id, WAIT_RUNNING, false);
		} else {
			conn_reply_ok(c, req->id, json_pack("{s:o}", "vm", proto_vm_to_json(&w->vm)));
		}
		return;
	}
	r = slot_queue(s, vm, files);
	if (r < 0) {
		vm_files_close(files);
		dispatch_storage_error(d, r, &err);
		if (c)
			conn_reply_error(c, req->id, &err);
		slot_free(s, true);
		return;
	}
	if (!c) {
		/* nobody waits */
	} else if (wait) {
		s->wait_conn = c;
		s->wait_id = json_incref(req->id);
		c->busy = true;
	} else {
		conn_reply_ok(c, req->id, json_pack("{s:o}", "vm", proto_vm_to_json(&s->vm)));
	}
	drain(s->d);            /* arms the rate timer when that is what waits */
}

/* A queued VM whose turn came: start it, or record why it could not. */
static void start_queued(struct vm_slot *s)
{
	struct mvmd *d = s->d;
	struct proto_error err;
	struct worker *w;
	double now;

	if (slot_start(s, &s->vm, &s->files, &w, &err) == 0) {
		if (s->wait_conn && w->vm.state == PROTO_VM_STARTING)
			supervisor_add_waiter(w, s->wait_conn, s->wait_id, WAIT_RUNNING, false);
		else
			slot_answer(s, &w->vm, NULL);
		json_decref(s->wait_id);
		s->wait_conn = NULL;
		s->wait_id = NULL;
		return;
	}
	log_error("VM %s: queued start failed: %s", s->vm.name, err.message);
	now = mvmd_now();
	s->vm.state = PROTO_VM_CRASHED;
	free(s->vm.exit_reason);
	s->vm.exit_reason = strdup("start failed");
	if (db_vm_transition(d->db, &s->vm, "start failed", now) == 0)
		dispatch_event(d, &s->vm, "start failed", now);
	slot_answer(s, NULL, &err);
	slot_free(s, true);
}

static void timer_cb(uv_timer_t *t)
{
	drain(t->data);
}

/* Start queued VMs in FIFO order while the boot-storm limits allow. */
static void drain(struct mvmd *d)
{
	struct cap_qnode *n;
	uint64_t now, wake;
	int r;

	if (!d->admit_ready || d->shutting_down)
		return;
	while ((n = cap_queue_peek(&d->cap))) {
		now = now_ns();
		r = cap_start_try(&d->cap, now);
		if (r == -EAGAIN) {
			wake = cap_next_wakeup_ns(&d->cap, now);
			uv_timer_start(&d->start_timer, timer_cb, (wake - now + 999999) / 1000000, 0);
			return;
		}
		if (r < 0)
			return;         /* -EBUSY: the next start_done drains */
		cap_queue_pop(&d->cap);
		struct vm_slot *s = (struct vm_slot *)((char *)n - offsetof(struct vm_slot, qnode));

		s->starting = true;
		start_queued(s);
	}
}

int admit_cancel(struct mvmd *d, struct proto_vm *vm, const char *reason)
{
	struct vm_slot *s = slot_find(d, vm->id);
	double now = mvmd_now();
	int r = 0;

	if (!s || !cap_queue_linked(&s->qnode))
		return -ENOENT;
	cap_queue_remove(&d->cap, &s->qnode);
	if (reason) {
		vm->state = PROTO_VM_STOPPED;
		free(vm->exit_reason);
		vm->exit_reason = strdup(reason);
		r = db_vm_transition(d->db, vm, reason, now);
		if (r == 0)
			dispatch_event(d, vm, reason, now);
	}
	slot_answer(s, vm, NULL);
	slot_free(s, true);
	drain(d);
	return r;
}

/* ---- worker hooks ------------------------------------------------------- */

/* Right after the spawn: the worker has only exec'd, its vCPU threads come
 * later and inherit the cgroup.  A worker that cannot join is killed. */
void admit_spawned(struct mvmd *d, int64_t vm_id, pid_t pid)
{
	struct vm_slot *s = slot_find(d, vm_id);
	char err[512];

	if (!s || !s->cg || cgroup_vm_attach(s->cg, pid, err, sizeof(err)) == 0)
		return;
	log_error("VM %lld: cannot move its worker into its cgroup: %s; killing it",
	          (long long)vm_id, err);
	s->attach_failed = true;
	kill(pid, SIGKILL);
}

static void start_done(struct mvmd *d, struct vm_slot *s)
{
	if (!s->starting)
		return;
	s->starting = false;
	cap_start_done(&d->cap);
	drain(d);
}

void admit_booted(struct mvmd *d, int64_t vm_id)
{
	struct vm_slot *s = slot_find(d, vm_id);

	if (s)
		start_done(d, s);
}

void admit_exit_reason(struct mvmd *d, int64_t vm_id, int term_signal, char *reason,
                       size_t size)
{
	struct vm_slot *s = slot_find(d, vm_id);

	if (!s || term_signal != SIGKILL)
		return;
	if (s->attach_failed)
		snprintf(reason, size, "cgroup: worker could not join its cgroup");
	else if (s->cg && cgroup_vm_oom_killed(s->cg) > 0)
		snprintf(reason, size, "oom-killed: memory limit %" PRIu64 " MiB, budget %" PRIu64 " MiB",
		         s->cg->mem_bytes >> 20, budget_mib(cap_limits(&d->cap)));
}

void admit_ended(struct mvmd *d, int64_t vm_id)
{
	struct vm_slot *s = slot_find(d, vm_id);

	if (!s)
		return;
	slot_free(s, true);
	drain(d);
}

void admit_forget_conn(struct mvmd *d, struct conn *c)
{
	for (struct vm_slot *s = d->slots; s; s = s->next) {
		if (s->wait_conn != c)
			continue;
		json_decref(s->wait_id);
		s->wait_conn = NULL;
		s->wait_id = NULL;
	}
}

void admit_cleanup_stale(struct mvmd *d, const char *name)
{
	struct cgroup_vm *v;
	char err[512];

	if (!cgroup_usable(&d->cg) || cgroup_vm_open(&d->cg, name, &v, err, sizeof(err)) < 0)
		return;
	if (cgroup_vm_destroy(v, err, sizeof(err)) < 0)
		log_warn("VM %s: leftover cgroup: %s", name, err);
}

/* ---- host.info, host.set, SIGHUP ---------------------------------------- */

static json_t *limits_json(const struct cap_limits *l)
{
	json_t *pools = json_object(), *owners = json_array();

	for (size_t i = 0; i < l->npools; i++)
		json_object_set_new(pools, l->pools[i].name, json_integer((json_int_t)l->pools[i].max));
	for (size_t i = 0; i < l->nowners; i++)
		json_array_append_new(owners, json_pack("{s:I, s:I, s:I, s:I}",
			"uid", (json_int_t)l->owners[i].uid,
			"max_vms", (json_int_t)l->owners[i].max_vms,
			"max_mem_mib", (json_int_t)l->owners[i].max_mem_mib,
			"max_vcpus", (json_int_t)l->owners[i].max_vcpus));
	return json_pack("{s:I, s:I, s:I, s:I, s:f, s:I, s:I, s:f, s:I, s:I, s:f, s:I,"
	                 " s:o, s:o, s:{s:I, s:I, s:I}}",
		"max_vms", (json_int_t)l->max_vms,
		"memory_budget_mib", (json_int_t)budget_mib(l),
		"memory_reserved_mib", (json_int_t)l->memory_reserved_mib,
		"vmm_overhead_mib", (json_int_t)l->vmm_overhead_mib,
		"memory_overcommit", l->memory_overcommit,
		"memory_limit_mib", (json_int_t)cap_limits_mem_mib(l),
		"host_cpus", (json_int_t)l->host_cpus,
		"vcpu_oversubscription", l->vcpu_oversubscription,
		"vcpus_limit", (json_int_t)cap_limits_vcpus(l),
		"max_concurrent_starts", (json_int_t)l->max_concurrent_starts,
		"start_rate", l->start_rate,
		"start_burst", (json_int_t)l->start_burst,
		"pools", pools, "owners", owners,
		"owner_default",
		"max_vms", (json_int_t)l->owner_default.max_vms,
		"max_mem_mib", (json_int_t)l->owner_default.max_mem_mib,
		"max_vcpus", (json_int_t)l->owner_default.max_vcpus);
}

static json_t *usage_json(const struct cap *c)
{
	struct cap_usage u;
	json_t *pools = json_object();

	cap_usage_get(c, &u);
	for (size_t i = 0; i < u.npools; i++)
		json_object_set_new(pools, u.pools[i].name, json_pack("{s:I, s:I, s:b}",
			"used", (json_int_t)u.pools[i].used, "max", (json_int_t)u.pools[i].max,
			"defined", u.pools[i].defined));
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:o}",
		"vms", (json_int_t)u.vms, "mem_mib", (json_int_t)u.mem_mib,
		"vcpus", (json_int_t)u.vcpus, "starting", (json_int_t)u.starting,
		"queued", (json_int_t)u.queued, "pools", pools);
}

json_t *admit_host_json(struct mvmd *d)
{
	char over[1024];
	int n = cap_over_limit(&d->cap, over, sizeof(over));

	return json_pack("{s:o, s:o, s:b, s:s?, s:{s:b, s:s}}",
		"limits", limits_json(cap_limits(&d->cap)),
		"usage", usage_json(&d->cap),
		"over_limit", n > 0, "over_limit_reason", n > 0 ? over : NULL,
		"cgroup", "usable", cgroup_usable(&d->cg), "status", cgroup_reason(&d->cg));
}

/* New limits in force: cap the cgroup parent, start what now fits. */
static int apply_limits(struct mvmd *d, const struct cap_limits *l, char *err, size_t n)
{
	int r = cap_set_limits(&d->cap, l, err, n);

	if (r < 0)
		return r;
	set_budget(d);
	drain(d);
	return 0;
}

void admit_host_set(struct conn *c, struct proto_request *req)
{
	const char *key = proto_arg_str(req, "key"), *value = proto_arg_str(req, "value");
	struct cap_limits *l = malloc(sizeof(*l));
	struct proto_error err = { 0 };
	char msg[512] = "";
	int r;

	if (c->cred.uid != 0 && c->cred.uid != c->d->uid) {
		proto_error_set(&err, PROTO_ERR_PERMISSION_DENIED, "key",
		                "only root or mvmd's own user may change host limits");
		goto out;
	}
	if (!l) {
		proto_error_set(&err, PROTO_ERR_INTERNAL, NULL, "out of memory");
		goto out;
	}
	*l = *cap_limits(&c->d->cap);
	r = cap_limits_set(l, key, value, msg, sizeof(msg));
	if (r == 0)
		r = apply_limits(c->d, l, msg, sizeof(msg));
	if (r < 0) {
		proto_error_set(&err, PROTO_ERR_BAD_REQUEST, r == -ENOENT ? "key" : "value",
		                "%s", msg);
		goto out;
	}
	log_info("uid %u set %s = %s", (unsigned)c->cred.uid, key, value);
	conn_reply_ok(c, req->id, json_pack("{s:o}", "host", admit_host_json(c->d)));
out:
	if (err.code)
		conn_reply_error(c, req->id, &err);
	free(l);
}

void admit_reload(struct mvmd *d)
{
	struct config cfg;
	char msg[512];
	int line = 0, r;

	if (!d->cfg.path) {
		log_info("SIGHUP: no --config file; limits unchanged");
		return;
	}
	r = config_defaults(&cfg, NULL);
	if (r == 0)
		r = config_load(&cfg, d->cfg.path, &line);
	if (r < 0) {
		log_error("SIGHUP: config %s line %d: %s; limits unchanged", d->cfg.path, line,
		          cfg.error[0] ? cfg.error : strerror(-r));
	} else if (apply_limits(d, &cfg.limits, msg, sizeof(msg)) < 0) {
		log_error("SIGHUP: %s; limits unchanged", msg);
	} else {
		log_info("SIGHUP: capacity limits reloaded from %s", d->cfg.path);
	}
	config_free(&cfg);
}
