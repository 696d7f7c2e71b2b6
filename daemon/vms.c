/* SPDX-License-Identifier: MIT */
/*
 * One record per VM, found by its row id in a hash table, and the one path
 * every state change takes: vm_commit() sets the state, stores the row with
 * its event and tells the observers (systemd's "stay uniform").
 *
 * Group commit: a fact (vm_commit_fact: a worker booted or ended) and a
 * spawned pid go into the database's open batch and stay on the unstored
 * list, batched, until it commits: with the next vm_commit (an intent
 * must be stored before mvmd acts on it, so it commits at once, the batch
 * with it) or at the loop turn's end (control.c).  Clients hear of
 * neither before that commit: control.c holds every reply and event
 * while a batch is open (docs/architecture.md, "Group commit").  The layers
 * above keep their per-VM part in the record (struct vm in mvmd.h) and hold
 * a reference while they do; the record goes when the last one lets go.
 */
#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/mvmd.h"

#define VMS_BUCKETS_MIN 64

void vms_init(struct mvmd *d)
{
	d->vms = NULL;
	d->vms_buckets = 0;
	d->nvms = 0;
	TAILQ_INIT(&d->vm_observers);
	TAILQ_INIT(&d->unstored);
}

void vms_free(struct mvmd *d)
{
	if (d->nvms)
		log_debug("%zu VM records still held at exit", d->nvms);
	free(d->vms);
	d->vms = NULL;
	d->vms_buckets = 0;
}

void vms_observe(struct mvmd *d, struct vm_observer *o)
{
	TAILQ_INSERT_TAIL(&d->vm_observers, o, link);
}

static size_t bucket_of(size_t buckets, int64_t id)
{
	/* Fibonacci hashing: row ids are dense and sequential */
	return (size_t)(((uint64_t)id * 0x9e3779b97f4a7c15ull) >> 32) & (buckets - 1);
}

/* Double the table once it holds more records than buckets. */
static int grow(struct mvmd *d)
{
	size_t n = d->vms_buckets ? d->vms_buckets * 2 : VMS_BUCKETS_MIN;
	struct vm **t = calloc(n, sizeof(*t)), *vm, *next;

	if (!t)
		return -ENOMEM;
	for (size_t i = 0; i < d->vms_buckets; i++)
		for (vm = d->vms[i]; vm; vm = next) {
			next = vm->hnext;
			vm->hnext = t[bucket_of(n, vm->row.id)];
			t[bucket_of(n, vm->row.id)] = vm;
		}
	free(d->vms);
	d->vms = t;
	d->vms_buckets = n;
	return 0;
}

struct vm *vms_find(struct mvmd *d, int64_t id)
{
	if (!d->vms_buckets)
		return NULL;
	for (struct vm *vm = d->vms[bucket_of(d->vms_buckets, id)]; vm; vm = vm->hnext)
		if (vm->row.id == id)
			return vm;
	return NULL;
}

struct vm *vms_hold(struct mvmd *d, const struct proto_vm *row)
{
	struct vm *vm = vms_find(d, row->id);
	size_t b;

	if (vm)
		return vm_ref(vm);
	if (d->nvms >= d->vms_buckets && grow(d) < 0)
		return NULL;
	vm = calloc(1, sizeof(*vm));
	if (!vm)
		return NULL;
	if (proto_vm_copy(row, &vm->row) < 0) {
		free(vm);
		return NULL;
	}
	vm->row.id = row->id;
	vm->d = d;
	vm->refs = 1;
	TAILQ_INIT(&vm->waiters);
	b = bucket_of(d->vms_buckets, row->id);
	vm->hnext = d->vms[b];
	d->vms[b] = vm;
	d->nvms++;
	return vm;
}

struct vm *vm_ref(struct vm *vm)
{
	vm->refs++;
	return vm;
}

void vm_release(struct vm *vm)
{
	struct mvmd *d;
	struct vm **pp;

	if (!vm || --vm->refs > 0)
		return;
	d = vm->d;
	for (pp = &d->vms[bucket_of(d->vms_buckets, vm->row.id)]; *pp; pp = &(*pp)->hnext)
		if (*pp == vm) {
			*pp = vm->hnext;
			break;
		}
	d->nvms--;
	proto_vm_clear(&vm->row);
	free(vm);
}

static void publish(struct vm *vm, const char *reason, double time)
{
	struct vm_observer *o;

	TAILQ_FOREACH(o, &vm->d->vm_observers, link)
		o->changed_cb(o, vm, reason, time);
}

static void unstored_clear(struct vm *vm)
{
	if (!vm->unstored)
		return;
	TAILQ_REMOVE(&vm->d->unstored, vm, unstored_link);
	vm->unstored = false;
	vm->unstored_batched = false;
	free(vm->unstored_reason);
	vm->unstored_reason = NULL;
	vm_release(vm);
}

/* Store vm's row as it is now, with the event of the fact kept (if the
 * change kept has one); batched: into the open batch. */
static int unstored_store(struct vm *vm, bool batched)
{
	struct db *db = vm->d->db;
	double now = mvmd_now();
	int r;

	if (vm->unstored_event)
		r = batched ? db_vm_transition_batched(db, &vm->row, vm->unstored_reason, now)
		            : db_vm_transition(db, &vm->row, vm->unstored_reason, now);
	else
		r = batched ? db_vm_store_batched(db, &vm->row) : db_vm_store(db, &vm->row);
	if (r == 0 && batched) {
		vm->unstored_batched = true;
	} else if (r == 0) {
		log_info("VM %s: state %s stored at last", vm->row.name,
		         proto_vm_state_name(vm->row.state));
		unstored_clear(vm);
	}
	return r;
}

static void unstored_timer_cb(uv_timer_t *t)
{
	struct mvmd *d = t->data;
	struct vm *vm, *next;

	for (vm = TAILQ_FIRST(&d->unstored); vm; vm = next) {
		next = TAILQ_NEXT(vm, unstored_link);
		if (!vm->unstored_batched && unstored_store(vm, false) < 0)
			break;          /* the same disk: the rest wait too */
	}
	if (TAILQ_EMPTY(&d->unstored))
		uv_timer_stop(t);
}

/* The disk did not take vm's kept change: retry every VMS_RETRY_S. */
static void unstored_retry(struct vm *vm)
{
	struct mvmd *d = vm->d;

	if (!d->unstored_timer_init) {
		uv_timer_init(d->loop, &d->unstored_timer);
		d->unstored_timer.data = d;
		d->unstored_timer_init = true;
	}
	if (!uv_is_active((uv_handle_t *)&d->unstored_timer))
		uv_timer_start(&d->unstored_timer, unstored_timer_cb, VMS_RETRY_S * 1000,
		               VMS_RETRY_S * 1000);
	log_warn("VM %s: state %s kept in memory; storing it again every %d s",
	         vm->row.name, proto_vm_state_name(vm->row.state), VMS_RETRY_S);
}

/* Keep vm's change (with its event, or a detail without one) until it is
 * known stored: when its batch commits (batched), else by a retry. */
static void unstored_keep(struct vm *vm, const char *reason, bool event, bool batched)
{
	if (!vm->unstored) {
		vm->unstored = true;
		vm->unstored_event = false;
		vm_ref(vm);
		TAILQ_INSERT_TAIL(&vm->d->unstored, vm, unstored_link);
	}
	if (event) {
		free(vm->unstored_reason);
		vm->unstored_reason = reason ? strdup(reason) : NULL;
		vm->unstored_event = true;
	}
	vm->unstored_batched = batched;
	if (!batched)
		unstored_retry(vm);
}

/* db.c ended a batch: its changes are stored (r == 0) or all rolled back. */
static void batch_cb(void *arg, int r)
{
	struct mvmd *d = arg;
	struct vm *vm, *next;
	bool lost = false;

	for (vm = TAILQ_FIRST(&d->unstored); vm; vm = next) {
		next = TAILQ_NEXT(vm, unstored_link);
		if (!vm->unstored_batched)
			continue;
		if (r == 0) {
			unstored_clear(vm);
			continue;
		}
		if (!lost)
			log_error("cannot store the state changes of a loop turn: %s", strerror(-r));
		lost = true;
		vm->unstored_batched = false;
		unstored_retry(vm);
	}
}

void vms_db_opened(struct mvmd *d)
{
	db_batch_watch(d->db, batch_cb, d);
}

bool vms_batch_open(const struct mvmd *d)
{
	return d->db && db_batch_open(d->db);
}

void vms_commit_batch(struct mvmd *d)
{
	if (d->db)
		db_batch_commit(d->db);         /* batch_cb hears how it went */
}

int vm_commit(struct vm *vm, enum proto_vm_state state, const char *reason)
{
	enum proto_vm_state old = vm->row.state;
	double now = mvmd_now();
	int r;

	/* an older fact first, so the events stay in order; one in the open
	 * batch is committed with this change */
	if (vm->unstored && !vm->unstored_batched && (r = unstored_store(vm, false)) < 0)
		return r;
	vm->row.state = state;
	r = db_vm_transition(vm->d->db, &vm->row, reason, now);
	if (r < 0) {
		vm->row.state = old;
		return r;
	}
	publish(vm, reason, now);
	return 0;
}

int vm_commit_fact(struct vm *vm, enum proto_vm_state state, const char *reason)
{
	struct mvmd *d = vm->d;
	double now = mvmd_now();
	int r = 0, r2;

	if (vm->unstored && !vm->unstored_batched)
		r = unstored_store(vm, true);
	vm->row.state = state;
	if (r == 0)
		r = db_vm_transition_batched(d->db, &vm->row, reason, now);
	/* Memory is authoritative: the worker is gone whatever the disk
	 * says, so the record, the database's cache and the observers all
	 * see the new state at once, and it stays kept until stored. */
	if (r < 0 && (r2 = db_vm_remember(d->db, &vm->row)) < 0)
		log_error("VM %s: cannot keep state %s even in memory: %s", vm->row.name,
		          proto_vm_state_name(state), strerror(-r2));
	unstored_keep(vm, reason, true, r == 0);
	publish(vm, reason, now);
	return r;
}

void vms_flush(struct mvmd *d)
{
	struct vm *vm, *next;

	vms_commit_batch(d);
	for (vm = TAILQ_FIRST(&d->unstored); vm; vm = next) {
		next = TAILQ_NEXT(vm, unstored_link);
		if (unstored_store(vm, false) < 0) {
			log_error("VM %s: state %s was never stored; the next mvmd finds its "
			          "worker gone and reconciles", vm->row.name,
			          proto_vm_state_name(vm->row.state));
			unstored_clear(vm);
		}
	}
	if (d->unstored_timer_init) {
		d->unstored_timer_init = false;
		uv_close((uv_handle_t *)&d->unstored_timer, NULL);
	}
}

int vm_store(struct vm *vm)
{
	return db_vm_store(vm->d->db, &vm->row);
}

int vm_store_batched(struct vm *vm)
{
	int r = 0;

	if (vm->unstored && !vm->unstored_batched)
		r = unstored_store(vm, true);
	if (r == 0)
		r = db_vm_store_batched(vm->d->db, &vm->row);
	if (r == 0)
		unstored_keep(vm, NULL, false, true);
	return r;
}

int vm_delete(struct vm *vm)
{
	double now = mvmd_now();
	int r = db_vm_delete(vm->d->db, &vm->row, now);

	if (r < 0)
		return r;
	unstored_clear(vm);
	vm->row.state = PROTO_VM_DELETED;
	publish(vm, NULL, now);
	return 0;
}

void vms_storage_error(const struct mvmd *d, int r, struct proto_error *err)
{
	const char *dir = d->cfg.state_dir;

	if (r == -EBUSY)
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL, "the state database in %s is "
		                "locked by another process (held past %d ms; an sqlite3 shell?); "
		                "nothing changed; close it and retry", dir, DB_BUSY_TIMEOUT_MS);
	else if (r == -EROFS)
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL, "the state dir %s is read-only "
		                "(%s); nothing changed; remount it read-write", dir, strerror(-r));
	else if (r == -ENOSPC || r == -EDQUOT)
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL, "the state dir %s is full (%s); "
		                "nothing changed; free disk space there", dir, strerror(-r));
	else if (r == -EACCES || r == -EPERM)
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL, "mvmd may not write to its state "
		                "dir %s (%s); nothing changed; fix its permissions", dir, strerror(-r));
	else
		proto_error_set(err, PROTO_ERR_STORAGE_ERROR, NULL, "the state database could not "
		                "commit the change (%s); nothing changed; check space and "
		                "permissions of the state dir %s", strerror(-r), dir);
}

/* ---- the files a start needs ------------------------------------------- */

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
