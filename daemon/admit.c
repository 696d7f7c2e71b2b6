/* SPDX-License-Identifier: MIT */
/*
 * Capacity in mvmd: the one place where VMs are admitted (capacity.c's
 * accounting), queued while the boot-storm limits say wait, started in
 * FIFO order as start permits free, placed in their cgroup, and where
 * their reservation is given back when they end.
 *
 * Admission is atomic with the state change: mvmd's loop is single-
 * threaded, so between cap_admit() and the SQLite commit that moves the
 * VM to queued or starting no other request runs; a failed commit gives
 * the reservation back before the next request is read.
 *
 * A VM's reservation lives in its admission from admission until its
 * worker ended (or it left the queue), and cap_release() zeroes the token,
 * so every path (stop, crash, kill, rm, failed start) gives it back once.
 *
 * admit.c answers no client: admit_launch() returns what happened, and a
 * queued VM whose start fails later is reported through
 * d->admit_start_failed_cb.  It starts workers through d->start_worker and
 * hears of them through admit_worker_hooks (main.c wires both), so
 * tests/unit/test-admit.c runs it without the supervisor.
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

/*
 * One admitted VM: its reservation from admission until it ends, its place
 * in the start queue and the files its start needs while queued, and its
 * cgroup once started.  Only VMs that hold a reservation (queued, starting,
 * running, stopping) have one.
 */
struct admission {
	TAILQ_ENTRY(admission) link;
	bool linked;
	struct mvmd *d;
	struct vm *vm;                  /* its record (a reference) once launched */
	struct cap_resv resv;
	struct cap_qnode qnode;
	bool starting;                  /* counted by cap_start_try */
	struct vm_files files;          /* queued: opened for the client */
	struct cgroup_vm *cg;
};

static void drain(struct mvmd *d);

/* ---- removing cgroups off the loop -------------------------------------- */

/*
 * An ended VM's cgroup directories go on a thread of their own: rmdir
 * waits for the kernel to let go of the worker's last tasks (cgroup.c
 * retries for up to a second), and a storm of exits must not stall
 * every client behind it.  One thread, FIFO: a start of the same name
 * waits (cg_reaper_wait) until that name's removal is done, so a new
 * cgroup is never removed under a new worker.  Results are logged from
 * the loop.  Without the thread (it could not start), removal is inline.
 */
struct cg_job {
	struct workq_job wq;
	struct cgroup_vm *v;
	int r;
	char err[512];
	char name[64];
};

static struct cg_job *cg_job_of(const struct workq_job *wq)
{
	return (struct cg_job *)((char *)wq - offsetof(struct cg_job, wq));
}

static void reaper_run(struct workq_job *wq)
{
	struct cg_job *j = cg_job_of(wq);

	j->r = cgroup_vm_destroy(j->v, j->err, sizeof(j->err));
	j->v = NULL;
}

/* On the loop: log what the thread could not remove. */
static void reaper_done(struct workq_job *wq)
{
	struct cg_job *j = cg_job_of(wq);

	if (j->r < 0)
		log_warn("VM %s: cgroup: %s", j->name, j->err);
	free(j);
}

static void reaper_start(struct mvmd *d)
{
	int r;

	d->cg_reaper = NULL;
	if (!cgroup_usable(&d->cg))
		return;
	r = workq_start(d->loop, "mvmd-cg-reaper", &d->cg_reaper);
	if (r < 0) {
		log_warn("cgroup: no thread to remove cgroups (%s); removing them inline",
		         strerror(-r));
		d->cg_reaper = NULL;
	}
}

/* Every queued removal done (daemon exit), then the thread gone. */
static void reaper_stop(struct mvmd *d)
{
	if (!d->cg_reaper)
		return;
	workq_stop(d->cg_reaper);
	d->cg_reaper = NULL;
}

static bool same_name(const struct workq_job *wq, const void *name)
{
	return !strcmp(cg_job_of(wq)->name, name);
}

/* Before the VM name's cgroup is made or opened: its old one is gone. */
static void cg_reaper_wait(struct mvmd *d, const char *name)
{
	if (d->cg_reaper)
		workq_wait_none(d->cg_reaper, same_name, name);
}

/* Remove v (the worker ended): on the thread, or here without one. */
static void cg_remove(struct mvmd *d, const char *name, struct cgroup_vm *v)
{
	struct cg_job *j = d->cg_reaper ? calloc(1, sizeof(*j)) : NULL;
	char err[512];

	if (j && strlen(name) < sizeof(j->name)) {
		j->v = v;
		strcpy(j->name, name);
		j->wq.run = reaper_run;
		j->wq.done = reaper_done;
		workq_submit(d->cg_reaper, &j->wq);
		return;
	}
	free(j);
	if (cgroup_vm_destroy(v, err, sizeof(err)) < 0)
		log_warn("VM %s: cgroup: %s", name, err);
}

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
	struct cgroup_opts o = { .root = d->cfg.cgroup_root, .parent = d->cfg.cgroup_parent,
	                         .move_to_leaf = true };
	char err[512], id[32], *state;
	int r;

	/* this mvmd's own cgroup subtree, named after its state dir: the same
	 * after a restart, another for every other mvmd */
	state = realpath(d->cfg.state_dir, NULL);
	cgroup_instance_id(state ? state : d->cfg.state_dir, id, sizeof(id));
	free(state);
	o.instance = id;

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
	if (cgroup_usable(&d->cg)) {
		log_info("cgroups: %s", cgroup_reason(&d->cg));
		if (!d->cg.favordynmods)
			log_info("cgroups: %s", CGROUP_DYNMODS_FIX);
	} else {
		log_warn("cgroups: %s; VMs run without resource limits (admission still applies)",
		         cgroup_reason(&d->cg));
	}
	set_budget(d);
	uv_timer_init(d->loop, &d->start_timer);
	d->start_timer.data = d;
	TAILQ_INIT(&d->admissions);
	reaper_start(d);
	d->admit_ready = true;
	return 0;
}

/* ---- admissions -------------------------------------------------------- */

static struct admission *adm_new(struct mvmd *d)
{
	struct admission *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->d = d;
	vm_files_init(&a->files);
	return a;
}

/* From now on its record knows it. */
static void adm_link(struct admission *a, struct vm *vm)
{
	a->vm = vm_ref(vm);
	vm->adm = a;
	TAILQ_INSERT_TAIL(&a->d->admissions, a, link);
	a->linked = true;
}

/* Give everything back.  destroy: remove the cgroup (false at daemon
 * exit, when the worker keeps running in it). */
static void adm_free(struct admission *a, bool destroy)
{
	struct mvmd *d = a->d;

	if (a->linked)
		TAILQ_REMOVE(&d->admissions, a, link);
	cap_queue_remove(&d->cap, &a->qnode);
	if (a->starting)
		cap_start_done(&d->cap);
	cap_release(&d->cap, &a->resv);
	if (a->cg && !destroy)
		cgroup_vm_close(a->cg);
	else if (a->cg)
		cg_remove(d, a->vm ? a->vm->row.name : "?", a->cg);
	vm_files_close(&a->files);
	if (a->vm) {
		a->vm->adm = NULL;
		vm_release(a->vm);
	}
	free(a);
}

void admit_free(struct mvmd *d)
{
	if (!d->admit_ready)
		return;
	d->admit_ready = false;
	while (!TAILQ_EMPTY(&d->admissions))
		adm_free(TAILQ_FIRST(&d->admissions), false);
	uv_close((uv_handle_t *)&d->start_timer, NULL);
	reaper_stop(d);
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
	r->balloon = vm->has_balloon;
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

/* What the client can do about a capacity refusal. */
static const char *refusal_hint(int r)
{
	switch (r) {
	case -EAGAIN: return "; retry once other VMs have stopped, or ask the host's operator "
	                     "to raise the limit (mvmctl host set)";
	case -ENOSPC: return "; ask for less, or ask the host's operator to raise the limit "
	                     "(mvmctl host set)";
	default: return "";
	}
}

int admit_reserve(struct mvmd *d, const struct proto_vm *vm, bool no_queue,
                  struct admission **ret, struct proto_error *err)
{
	struct admission *a = adm_new(d);
	struct cap_request req;
	char msg[512];
	int r;

	if (!a)
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "out of memory");
	if (pressure_check(&d->cfg.pressure, d->cfg.proc_root, msg, sizeof(msg)) == 1) {
		free(a);
		return proto_error_set(err, PROTO_ERR_UNAVAILABLE, NULL, "%s", msg);
	}
	r = request_of(vm, &req);
	if (r == 0)
		r = cap_admit(&d->cap, &req, &a->resv, msg, sizeof(msg));
	if (r < 0) {
		proto_error_set(err, admit_error_code(r), r == -ENOENT ? "pools" : NULL, "%s%s",
		                r == -EINVAL && !msg[0] ? "too many pools" : msg, refusal_hint(r));
		d->start_refusals[err->code]++;         /* metrics.c */
		free(a);
		return r;
	}
	/* FIFO: nobody overtakes a VM already queued */
	r = cap_queue_len(&d->cap) ? -EBUSY : cap_start_try(&d->cap, now_ns());
	if (r == 0) {
		a->starting = true;
	} else if (no_queue) {
		if (cap_queue_len(&d->cap))
			snprintf(msg, sizeof(msg), "starts: %zu VMs queued ahead",
			         cap_queue_len(&d->cap));
		else
			cap_start_explain(&d->cap, r, now_ns(), msg, sizeof(msg));
		proto_error_set(err, admit_error_code(-EAGAIN), NULL, "%s; not queued (no_queue)", msg);
		d->start_refusals[err->code]++;
		adm_free(a, true);
		return r;
	}
	*ret = a;
	return 0;
}

const struct cgroup_vm *admit_vm_cgroup(const struct vm *vm)
{
	return vm->adm ? vm->adm->cg : NULL;
}

void admit_abandon(struct admission *a)
{
	adm_free(a, true);
}

/* ---- starting ----------------------------------------------------------- */

/* On the preparer thread (start_cgroup in mvmd.h): once the removal of the
 * name's old cgroup is done, its new one.  Reads only what admit_init()
 * set up and no later code changes (d->cg, d->cg_reaper). */
static int cg_make(const struct start_cgroup *sc, struct cgroup_vm **ret, char *err, size_t n)
{
	cg_reaper_wait(sc->d, sc->name);
	return cgroup_vm_create(&sc->d->cg, sc->name, sc->mem_bytes, sc->vcpus, 0, ret, err, n);
}

/* On the loop: the start's cgroup is its admission's from now on (gone
 * only at mvmd's exit, when the next mvmd opens it again by name). */
static void cg_made(struct vm *vm, struct cgroup_vm *cg)
{
	if (vm->adm && !vm->adm->cg)
		vm->adm->cg = cg;
	else
		cgroup_vm_close(cg);
}

/* Start the VM's worker; the preparer thread makes its cgroup, which the
 * child joins before its exec (spawn.c).  A failure there fails the start
 * through the start_done_cb hook, with the cgroup's -errno (restart.c
 * retries a transient one).  On failure here err says why and the caller
 * frees a. */
static int adm_start(struct admission *a, struct vm_files *files, struct proto_error *err)
{
	struct mvmd *d = a->d;
	const struct proto_vm *vm = &a->vm->row;
	uint64_t mem = (uint64_t)vm->mem_mib + cap_limits(&d->cap)->vmm_overhead_mib;
	struct start_cgroup sc = { .d = d, .mem_bytes = mem << 20, .vcpus = (unsigned)vm->vcpus,
	                           .make = cg_make, .made = cg_made };

	if ((size_t)snprintf(sc.name, sizeof(sc.name), "%s", vm->name) >= sizeof(sc.name)) {
		vm_files_close(files);
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL,
		                       "cannot create the VM's cgroup: its name is too long");
	}
	return d->start_worker(a->vm, files, &sc, err);
}

/* The start failed: give everything back (unless the worker's end did). */
static void adm_start_failed(struct admission *a, struct vm *vm)
{
	struct mvmd *d = a->d;

	if (vm->adm == a)
		adm_free(a, true);
	drain(d);       /* its starting permit is free again */
}

/* Commit "queued" and wait in the FIFO, holding the client's files. */
static int adm_queue(struct admission *a, struct vm_files *files)
{
	int r = vm_commit(a->vm, PROTO_VM_QUEUED, NULL);

	if (r < 0)
		return r;
	a->files = *files;
	vm_files_init(files);
	cap_queue_push(&a->d->cap, &a->qnode, a->vm->row.id);
	return 0;
}

int admit_launch(struct admission *a, struct vm *vm, struct vm_files *files,
                 struct proto_error *err)
{
	struct mvmd *d = a->d;
	int r;

	adm_link(a, vm);
	if (a->starting) {
		r = adm_start(a, files, err);
		if (r < 0) {
			log_error("VM %s: %s", vm->row.name, err->message);
			adm_start_failed(a, vm);
		}
		return r;
	}
	r = adm_queue(a, files);
	if (r < 0) {
		vm_files_close(files);
		vms_storage_error(d, r, err);
		adm_free(a, true);
		return r;
	}
	drain(d);               /* arms the rate timer when that is what waits */
	return 1;
}

/* A queued VM whose turn came: start it, or record why it could not. */
static void start_queued(struct admission *a)
{
	struct mvmd *d = a->d;
	struct vm *vm = vm_ref(a->vm);
	struct proto_error err;

	if (adm_start(a, &a->files, &err) < 0) {
		log_error("VM %s: queued start failed: %s", vm->row.name, err.message);
		free(vm->row.exit_reason);
		vm->row.exit_reason = strdup("start failed");
		/* a fact: the row must not stay queued if the disk is full */
		if (vm_commit_fact(vm, PROTO_VM_CRASHED, "start failed") < 0)
			log_error("VM %s: cannot store state crashed; kept in memory", vm->row.name);
		if (d->admit_start_failed_cb)
			d->admit_start_failed_cb(vm, &err);
		if (vm->adm == a)
			adm_free(a, true);
	}
	vm_release(vm);
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
		struct admission *a = (struct admission *)((char *)n - offsetof(struct admission, qnode));

		a->starting = true;
		start_queued(a);
	}
}

int admit_cancel(struct vm *vm, const char *reason)
{
	struct admission *a = vm->adm;
	struct mvmd *d = vm->d;
	int r = 0;

	if (!a || !cap_queue_linked(&a->qnode))
		return -ENOENT;
	cap_queue_remove(&d->cap, &a->qnode);
	if (reason) {
		free(vm->row.exit_reason);
		vm->row.exit_reason = strdup(reason);
		r = vm_commit(vm, PROTO_VM_STOPPED, reason);
	}
	adm_free(a, true);
	drain(d);
	return r;
}

/* The adopted VM holds capacity again, exactly once: a forced reservation
 * (it runs already, whatever the limits say now) and its cgroup. */
void admit_adopted(struct vm *vm)
{
	struct mvmd *d = vm->d;
	struct admission *a = adm_new(d);
	struct cap_request req;
	char err[512];

	if (!a) {
		log_error("VM %s: out of memory; its capacity is not counted", vm->row.name);
		return;
	}
	/* the same request admission built when the VM started */
	if (request_of(&vm->row, &req) < 0 ||
	    cap_reserve_force(&d->cap, &req, &a->resv, err, sizeof(err)) < 0)
		log_warn("VM %s: its capacity cannot be counted: %s", vm->row.name,
		         req.npools == CAP_REQ_MAX_POOLS ? "too many pools" : err);
	cg_reaper_wait(d, vm->row.name);
	if (cgroup_usable(&d->cg) &&
	    cgroup_vm_open(&d->cg, vm->row.name, &a->cg, err, sizeof(err)) < 0)
		a->cg = NULL;
	adm_link(a, vm);
}

/* ---- worker hooks ------------------------------------------------------- */

/* A start on the spawner thread failed: as if admit_launch() had. */
static void start_done_cb(struct vm *vm, int r, const struct proto_error *err)
{
	if (err && vm->adm)
		adm_start_failed(vm->adm, vm);
}

/* Its first byte ends the starting phase. */
static void booted_cb(struct vm *vm)
{
	struct admission *a = vm->adm;

	if (!a || !a->starting)
		return;
	a->starting = false;
	cap_start_done(&a->d->cap);
	drain(a->d);
}

/* The kernel OOM-killed the worker. */
static void exit_reason_cb(struct vm *vm, char *reason, size_t size)
{
	struct admission *a = vm->adm;

	if (!a)
		return;
	if (a->cg && cgroup_vm_oom_killed(a->cg) > 0)
		snprintf(reason, size, "oom-killed: memory limit %" PRIu64 " MiB, budget %" PRIu64 " MiB",
		         a->cg->mem_bytes >> 20, budget_mib(cap_limits(&a->d->cap)));
}

/* Capacity back, cgroup gone, the next queued VM may start. */
static void ended_cb(struct vm *vm, bool requested, double ran_s)
{
	struct mvmd *d = vm->d;

	(void)requested;
	(void)ran_s;
	if (!vm->adm)
		return;
	adm_free(vm->adm, true);
	drain(d);
}

const struct worker_hooks admit_worker_hooks = {
	.start_done_cb = start_done_cb,
	.booted_cb = booted_cb,
	.exit_reason_cb = exit_reason_cb,
	.ended_cb = ended_cb,
};

void admit_cleanup_stale(struct mvmd *d, const char *name)
{
	struct cgroup_vm *v;
	char err[512];

	cg_reaper_wait(d, name);
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

	bool slow = cgroup_usable(&d->cg) && !d->cg.favordynmods;

	return json_pack("{s:o, s:o, s:b, s:s?, s:{s:b, s:s, s:b, s:s?}}",
		"limits", limits_json(cap_limits(&d->cap)),
		"usage", usage_json(&d->cap),
		"over_limit", n > 0, "over_limit_reason", n > 0 ? over : NULL,
		"cgroup", "usable", cgroup_usable(&d->cg), "status", cgroup_reason(&d->cg),
		"favordynmods", d->cg.favordynmods, "attach_note", slow ? CGROUP_DYNMODS_FIX : NULL);
}

/* New limits in force: cap the cgroup parent, start what now fits. */
int admit_set_limits(struct mvmd *d, const struct cap_limits *l, char *err, size_t n)
{
	int r = cap_set_limits(&d->cap, l, err, n);

	if (r < 0)
		return r;
	set_budget(d);
	drain(d);
	return 0;
}

int admit_host_set(struct mvmd *d, const char *key, const char *value, char *msg,
                   size_t size)
{
	struct cap_limits *l = malloc(sizeof(*l));
	int r;

	if (!l) {
		snprintf(msg, size, "out of memory");
		return -ENOMEM;
	}
	*l = *cap_limits(&d->cap);
	r = cap_limits_set(l, key, value, msg, size);
	if (r == 0)
		r = admit_set_limits(d, l, msg, size);
	free(l);
	return r;
}
