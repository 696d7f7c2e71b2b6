/* SPDX-License-Identifier: MIT */
/*
 * Restart policies and health: an observer of worker ends (worker_hooks)
 * that restarts VMs through admission as vm.start would, pings workers and
 * kills the hung, and keeps systemd's watchdog fed.
 *
 * Restart policies (docs/protocol.md): a VM that ended without being asked
 * to restarts after 1 s, doubling to 60 s; the count of failures resets
 * once a run lasted 60 s.  After N failed restarts in a row (restart_max;
 * 0 means no limit) it stays crashed with reason "crash-loop: ...".  The
 * count lives in the VM's row (db_vm_set_failures), so an mvmd restart
 * neither forgets a crash loop nor a restart that was waiting out its
 * backoff: the next mvmd schedules that again.  Every interval here is on
 * the monotonic clock.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "daemon/restart_policy.h"
#include "daemon/tap.h"
#include "util/util.h"

/* A restart that failed short of fds, processes or memory: next try. */
#define RESTART_RETRY_S 5

#define BOOT_MARKER "mvmd.booted"       /* in the run dir: absent after a reboot */

/* A VM's restart state, in its record (vm->restart). */
struct restart_rec {
	TAILQ_ENTRY(restart_rec) link;
	struct restart_state *st;
	struct vm *vm;                  /* a reference */
	int failures;                   /* ended without being asked, in a row */
	uv_timer_t timer;
	bool timer_init;
	bool spawning;                  /* its restart is on the spawner thread */
};

struct restart_state {
	struct mvmd *d;
	uv_timer_t health;
	bool health_init;
	double health_last;             /* mvmd_mono() of the last health tick */
	unsigned slices, slice;         /* ticks per interval; the next one */
	uint64_t pings, ticks;          /* since start, for host.info */
	uint64_t starved;               /* overdue verdicts that waited: no CPU */
	double cpu_s;                   /* mvmd's CPU in health ticks */
	/* each slice's workers, kept as workers come and go, so a tick
	 * visits its own slice: an index of the whole fleet rebuilt after
	 * every change cost O(N) a tick while VMs came and went (36% of the
	 * loop's samples with 8,000 VMs held); NULL: out of memory, every
	 * tick walks every worker */
	struct worker_list *slice_workers;
	uv_timer_t watchdog;            /* sd_notify WATCHDOG=1 (WatchdogSec) */
	bool watchdog_init;
	TAILQ_HEAD(, restart_rec) recs;
	int handles;                    /* open handles; freed at 0 after restart_free */
	bool freeing;
};

void restart_init(struct mvmd *d)
{
	struct restart_state *st = calloc(1, sizeof(*st));

	if (!st) {
		log_error("out of memory: restart policies and health checks are off");
		return;
	}
	st->d = d;
	TAILQ_INIT(&st->recs);
	d->restart = st;
}

/* ---- restart policies --------------------------------------------------- */

/* vm's restart state, created with the failure count its row kept. */
static struct restart_rec *rec_of(struct restart_state *st, struct vm *vm)
{
	struct restart_rec *r;
	int n;

	if (vm->restart)
		return vm->restart;
	if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->st = st;
	r->vm = vm_ref(vm);
	n = db_vm_failures(st->d->db, &vm->row);
	r->failures = n > 0 ? n : 0;
	TAILQ_INSERT_TAIL(&st->recs, r, link);
	vm->restart = r;
	return r;
}

static void set_failures(struct restart_rec *rec, int n)
{
	int r;

	rec->failures = n;
	r = db_vm_set_failures(rec->st->d->db, &rec->vm->row, n);
	/* the count in memory still paces this mvmd's restarts */
	if (r < 0 && r != -ENOENT)
		log_warn("VM %s: cannot store its restart failures: %s", rec->vm->row.name,
		         strerror(-r));
}

/* Owner credentials for files opened on the owner's behalf (a restart
 * has no client). */
static void owner_cred(uint32_t uid, struct cred *c)
{
	struct passwd *pw = getpwuid(uid);

	memset(c, 0, sizeof(*c));
	c->uid = uid;
	c->gid = pw ? pw->pw_gid : uid;
	c->pid = 0;
	c->ngroups = 64;
	if (!pw || getgrouplist(pw->pw_name, pw->pw_gid, c->groups, &c->ngroups) < 0) {
		c->groups[0] = c->gid;
		c->ngroups = 1;
	}
}

static int open_files(struct mvmd *d, const struct proto_vm *vm, struct vm_files *f,
                      struct proto_error *err)
{
	struct cred cred;
	size_t i;
	json_t *disk;
	json_t *nic;
	int r;

	owner_cred(vm->owner_uid, &cred);
	vm_files_init(f);
	r = access_open(d, &cred, "kernel", vm->kernel, false, true, &f->kernel_fd, err);
	if (r == 0 && vm->initrd)
		r = access_open(d, &cred, "initrd", vm->initrd, false, true, &f->initrd_fd, err);
	json_array_foreach(vm->disks, i, disk) {
		if (r < 0 || f->ndisks >= 16)
			break;
		r = access_open(d, &cred, "disks", json_string_value(json_object_get(disk, "path")),
		                !json_is_true(json_object_get(disk, "readonly")), false,
		                &f->disk_fds[f->ndisks], err);
		if (r == 0)
			f->ndisks++;
	}
	/* TAPs again as the owner, through the same check as vm.create: an
	 * owner who lost the right to a TAP meanwhile gets no restart */
	json_array_foreach(vm->nics, i, nic) {
		if (r < 0 || f->nnics >= 8)
			break;
		r = tap_open(d, &cred, json_string_value(json_object_get(nic, "tap")),
		             &f->nic_fds[f->nnics], err);
		if (r == 0)
			f->nnics++;
	}
	if (r < 0)
		vm_files_close(f);
	return r;
}

static void record_failure(struct vm *vm, const char *why)
{
	free(vm->row.exit_reason);
	vm->row.exit_reason = strdup(why);
	if (vm_commit_fact(vm, PROTO_VM_CRASHED, why) < 0)
		log_error("VM %s: cannot store state crashed; kept in memory", vm->row.name);
}

/* Short of fds, processes or memory for a moment (another user's flood,
 * a fork storm): not the VM's fault, so it is tried again, not left
 * crashed. */
static bool transient(int r)
{
	return r == -EMFILE || r == -ENFILE || r == -EAGAIN || r == -ENOMEM;
}

static void schedule(struct restart_rec *rec, double delay_s);

/* The restart did not start the VM: a transient failure is tried again. */
static void restart_failed(struct restart_rec *rec, int r, const struct proto_error *err)
{
	struct vm *vm = rec->vm;
	char why[700];

	if (transient(r)) {
		snprintf(why, sizeof(why), "restart failed: %s; retrying in %d s", err->message,
		         RESTART_RETRY_S);
		log_warn("VM %s: %s", vm->row.name, why);
		record_failure(vm, why);
		schedule(rec, RESTART_RETRY_S);
		return;
	}
	snprintf(why, sizeof(why), "restart failed: %s", err->message);
	log_error("VM %s: %s", vm->row.name, why);
	record_failure(vm, why);
}

/* The backoff ran out: start the VM through admission, as vm.start would. */
static void restart_now(struct restart_rec *rec)
{
	struct mvmd *d = rec->st->d;
	struct vm *vm = rec->vm;
	struct proto_error err;
	struct vm_files files;
	struct admission *a;
	int r;

	if (vm->row.state != PROTO_VM_CRASHED && vm->row.state != PROTO_VM_STOPPED &&
	    vm->row.state != PROTO_VM_CREATED)
		return;                 /* removed, started or changed by hand meanwhile */
	if (vm->worker)
		return;
	log_info("VM %s: restarting (policy %s%s, failure %d)", vm->row.name,
	         proto_restart_name(vm->row.restart), vm->row.autostart ? ", autostart" : "",
	         rec->failures);
	r = open_files(d, &vm->row, &files, &err);
	if (r == 0) {
		r = admit_reserve(d, &vm->row, false, &a, &err);
		if (r == 0) {
			r = admit_launch(a, vm, &files, &err);
			/* a spawn that fails on the spawner thread is
			 * start_done_cb()'s to judge, as if it failed here */
			rec->spawning = r >= 0 && vm->worker && vm->worker->spawning;
			if (r >= 0)
				return;
		} else {
			vm_files_close(&files);
		}
	}
	restart_failed(rec, r, &err);
}

static void start_done_cb(struct vm *vm, int r, const struct proto_error *err)
{
	struct restart_rec *rec = vm->restart;

	if (!rec || !rec->spawning)
		return;
	rec->spawning = false;
	/* a worker that ran and was killed: its end, next, is the judge */
	if (err && !vm->worker && vm->row.state == PROTO_VM_CRASHED)
		restart_failed(rec, r, err);
}

static void restart_timer_cb(uv_timer_t *t)
{
	restart_now(t->data);
}

static void schedule(struct restart_rec *rec, double delay_s)
{
	struct mvmd *d = rec->st->d;

	if (!rec->timer_init) {
		uv_timer_init(d->loop, &rec->timer);
		rec->timer.data = rec;
		rec->timer_init = true;
		rec->st->handles++;
	}
	uv_timer_start(&rec->timer, restart_timer_cb, (uint64_t)(delay_s * 1000), 0);
}

static bool scheduled(const struct restart_rec *rec)
{
	return rec->timer_init && uv_is_active((const uv_handle_t *)&rec->timer);
}

static void crash_loop(struct vm *vm, int failures)
{
	char why[128];

	snprintf(why, sizeof(why), "crash-loop: failed %d times in a row; not restarting "
	         "(mvmctl start resets)", failures);
	log_error("VM %s: %s", vm->row.name, why);
	record_failure(vm, why);
}

void restart_vm_ended(struct vm *vm, bool requested, double ran_s)
{
	struct restart_state *st = vm->d->restart;
	struct restart_decision dec;
	struct restart_end e = {
		.policy = vm->row.restart, .restart_max = vm->row.restart_max,
		.state = vm->row.state, .requested = requested, .ran_s = ran_s,
	};
	struct restart_rec *rec;

	if (!st || vm->d->shutting_down || vm->row.state == PROTO_VM_DELETED)
		return;
	rec = rec_of(st, vm);
	if (!rec)
		return;
	e.failures = rec->failures;
	restart_decide(&e, &dec);
	if (dec.action == RESTART_CRASH_LOOP)
		crash_loop(vm, dec.loop_failures);
	if (dec.failures != rec->failures)
		set_failures(rec, dec.failures);
	if (dec.action == RESTART_AFTER)
		schedule(rec, dec.delay_s);
}

const struct worker_hooks restart_worker_hooks = {
	.start_done_cb = start_done_cb,
	.ended_cb = restart_vm_ended,
};

/* Run f on the record of every row that passes want (start-up only). */
static void for_rows(struct mvmd *d, bool (*want)(const struct proto_vm *),
                     void (*f)(struct restart_rec *rec))
{
	struct restart_state *st = d->restart;
	size_t n = db_vm_count(d->db);

	for (size_t i = 0; st && i < n; i++) {
		const struct proto_vm *row = db_vm_at(d->db, i);
		struct vm *vm;
		struct restart_rec *rec;

		vm = vms_find(d, row->id);
		if (!want(row) || (vm && vm->worker))
			continue;
		vm = vms_hold(d, row);
		rec = vm ? rec_of(st, vm) : NULL;
		if (rec && !scheduled(rec))
			f(rec);
		vm_release(vm);
	}
}

/* A VM that failed and was waiting out its backoff when the earlier mvmd
 * ended (its row kept the count). */
static bool waiting_restart(const struct proto_vm *vm)
{
	return (vm->state == PROTO_VM_CRASHED || vm->state == PROTO_VM_STOPPED) &&
	       vm->restart != PROTO_RESTART_NO;
}

static void resume_one(struct restart_rec *rec)
{
	if (rec->failures <= 0)
		return;
	log_info("VM %s: resuming its restart policy (failure %d)", rec->vm->row.name,
	         rec->failures);
	schedule(rec, restart_backoff_s(rec->failures));
}

static bool autostarts(const struct proto_vm *vm)
{
	return vm->autostart && (vm->state == PROTO_VM_CREATED || vm->state == PROTO_VM_STOPPED ||
	                         vm->state == PROTO_VM_CRASHED);
}

static void start_one(struct restart_rec *rec)
{
	schedule(rec, 0);
}

/* ---- health ------------------------------------------------------------- */

/* Each worker is checked once per health_interval, but not all at once:
 * the interval is cut into slices of about HEALTH_TICK_MS and a worker is
 * checked in the slice its VM's id falls in (ids are sequential, so a
 * fleet spreads evenly).  Pinging thousands of workers in one tick woke
 * them all within ~100 ms (issue 13: 385 runnable tasks at 3,000 VMs). */
#define HEALTH_TICK_MS 100
#define HEALTH_SLICES_MAX 1000

static double thread_cpu_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

unsigned restart_health_slices(double interval_s)
{
	double n = interval_s * 1000 / HEALTH_TICK_MS;

	if (!(n >= 1))
		return 1;
	return n > HEALTH_SLICES_MAX ? HEALTH_SLICES_MAX : (unsigned)n;
}

/* What the worker's loop thread (its main thread, whose tid is the pid)
 * has done: /proc/PID/stat's state, /proc/PID/schedstat's times. */
static int loop_sample(pid_t pid, struct health_sample *s)
{
	char path[64], buf[128];
	unsigned long long run, wait;
	int r;

	r = mvmd_proc_stat(pid, &s->state, NULL);
	if (r < 0)
		return r;
	snprintf(path, sizeof(path), "/proc/%d/schedstat", (int)pid);
	r = util_read_file(path, buf, sizeof(buf));
	if (r < 0)
		return r;
	if (sscanf(buf, "%llu %llu", &run, &wait) != 2)
		return -EINVAL;
	s->run_ns = run;
	s->wait_ns = wait;
	return 0;
}

/* A worker whose oldest ping is older than health_timeout: true when it
 * should be pinged again, false when it is dealt with.  The verdict is the
 * worker's own progress, not only mvmd's clock: on a host short of CPU (a
 * fill of thousands of VMs on 2 cores under other load) a healthy loop
 * can wait longer than the timeout for a CPU, and mvmd itself may have
 * been too busy to read the pong (issue 13: fills aborted at ~580 VMs with
 * "crashed hung" workers). */
static bool overdue(struct restart_state *st, struct worker *w, double now)
{
	struct health_sample s;
	enum health_verdict v;
	char why[200];
	double window, waited;

	/* its answer may be in the socket: this loop turn ran its timers
	 * before reading, after a callback that took long */
	if (supervisor_link_unread(w))
		return false;
	if (loop_sample((pid_t)w->vm->row.pid, &s) < 0) {
		supervisor_hung(w, "its state is unreadable");
		return false;
	}
	if (!w->overdue) {
		if (s.state == 'T' || s.state == 't') {
			snprintf(why, sizeof(why), "for %.1f s; it is stopped (state %c)",
			         now - w->ping_since, s.state);
			supervisor_hung(w, why);
			return false;
		}
		/* judged on what its loop does over one more interval */
		w->overdue = true;
		w->overdue_since = now;
		w->overdue_sample = s;
		return true;
	}
	window = now - w->overdue_since;
	v = health_judge(&w->overdue_sample, &s, window, w->answered);
	waited = (double)(s.wait_ns - w->overdue_sample.wait_ns) / 1e9;
	if (v == HEALTH_HUNG) {
		snprintf(why, sizeof(why), "for %.1f s; its loop thread: state %c, ran %.0f ms "
		         "and waited %.1f s for a CPU in the last %.1f s", now - w->ping_since,
		         s.state, (double)(s.run_ns - w->overdue_sample.run_ns) / 1e6, waited,
		         window);
		supervisor_hung(w, why);
		return false;
	}
	if (!w->starved_logged) {
		w->starved_logged = true;
		log_warn("VM %s: worker pid %lld has not answered pings for %.1f s, but its loop "
		         "thread %s (waited %.1f s for a CPU in %.1f s): not killed; the host is "
		         "short of CPU (load, or too many VMs for its cores)", w->vm->row.name,
		         (long long)w->vm->row.pid, now - w->ping_since,
		         v == HEALTH_STARVED ? "is waiting for a CPU" : "is still setting up",
		         waited, window);
	}
	w->overdue_since = now;
	w->overdue_sample = s;
	st->starved++;
	return true;
}

static unsigned slice_of(const struct restart_state *st, const struct worker *w)
{
	return (unsigned)((uint64_t)w->vm->row.id % st->slices);
}

/* A linked worker is in its slice's list whenever the lists exist:
 * health_start() enrols those linked before it, these hooks the rest;
 * after restart_free the lists are gone with the state. */
void restart_worker_linked(struct worker *w)
{
	struct restart_state *st = w->d->restart;

	if (st && st->slice_workers)
		TAILQ_INSERT_TAIL(&st->slice_workers[slice_of(st, w)], w, slice_link);
}

void restart_worker_unlinked(struct worker *w)
{
	struct restart_state *st = w->d->restart;

	if (st && st->slice_workers)
		TAILQ_REMOVE(&st->slice_workers[slice_of(st, w)], w, slice_link);
}

static void health_visit(struct restart_state *st, struct worker *w, double now)
{
	if (w->exited || w->link_eof || w->finished)
		return;
	/* still queued on the spawner: no process to judge yet, and its wait
	 * there is the start's, not a hang */
	if (w->spawning) {
		w->ping_since = 0;
		return;
	}
	/* timed from the oldest unanswered ping, not the last pong: the
	 * timeout may be shorter than the interval */
	if (w->ping_since > 0 && now - w->ping_since > st->d->cfg.health_timeout &&
	    !overdue(st, w, now))
		return;
	supervisor_ping(w);
	st->pings++;
}

static void health_cb(uv_timer_t *t)
{
	struct restart_state *st = t->data;
	struct mvmd *d = st->d;
	double now = mvmd_mono(), cpu0 = thread_cpu_s();
	struct worker *w, *next;
	unsigned slice = st->slice;
	/* mvmd itself stood still (a database lock held for seconds): pongs
	 * may wait unread, so nobody is hung for that; pings start afresh */
	bool stalled = st->health_last > 0 &&
	               now - st->health_last > 2 * d->cfg.health_interval + 1;

	st->health_last = now;
	st->slice = (slice + 1) % st->slices;
	st->ticks++;
	if (stalled) {
		TAILQ_FOREACH(w, &d->workers, link) {
			w->ping_since = 0;
			w->overdue = false;
		}
	}
	if (st->slice_workers) {
		uint64_t gen = d->workers_gen;

		/* a visit never ends a worker; should one, the walk stops */
		for (w = TAILQ_FIRST(&st->slice_workers[slice]); w; w = next) {
			next = TAILQ_NEXT(w, slice_link);
			health_visit(st, w, now);
			if (gen != d->workers_gen)
				break;
		}
	} else {
		for (w = TAILQ_FIRST(&d->workers); w; w = next) {
			next = TAILQ_NEXT(w, link);
			if (slice_of(st, w) == slice)
				health_visit(st, w, now);
		}
	}
	st->cpu_s += thread_cpu_s() - cpu0;
}

static void health_start(struct restart_state *st)
{
	struct mvmd *d = st->d;
	uint64_t ms = (uint64_t)(d->cfg.health_interval * 1000), tick;

	if (ms == 0 || st->health_init)
		return;
	st->slices = restart_health_slices(d->cfg.health_interval);
	tick = ms / st->slices;
	st->slice_workers = calloc(st->slices, sizeof(*st->slice_workers));
	if (st->slice_workers) {
		struct worker *w;

		for (unsigned s = 0; s < st->slices; s++)
			TAILQ_INIT(&st->slice_workers[s]);
		TAILQ_FOREACH(w, &d->workers, link)
			restart_worker_linked(w);
	} else {
		log_warn("out of memory for the health slices: each health tick walks every worker");
	}
	uv_timer_init(d->loop, &st->health);
	st->health.data = st;
	st->health_init = true;
	st->handles++;
	uv_timer_start(&st->health, health_cb, tick, tick);
}

json_t *restart_health_json(struct mvmd *d)
{
	struct restart_state *st = d->restart;

	if (!st || !st->health_init)
		return json_pack("{s:b}", "enabled", false);
	return json_pack("{s:b, s:f, s:f, s:i, s:f, s:I, s:I, s:f, s:f}",
		"enabled", true,
		"interval_s", d->cfg.health_interval,
		"timeout_s", d->cfg.health_timeout,
		"slices", (int)st->slices,
		"tick_ms", d->cfg.health_interval * 1000 / st->slices,
		"pings", (json_int_t)st->pings,
		/* overdue workers given another interval: their loop waited for a CPU */
		"starved", (json_int_t)st->starved,
		/* mvmd's side only: the worker's wake-up and pong are its own */
		"cpu_us_per_ping", st->pings ? st->cpu_s * 1e6 / (double)st->pings : 0.0,
		"cpu_ms_per_tick", st->ticks ? st->cpu_s * 1e3 / (double)st->ticks : 0.0);
}

/* ---- systemd watchdog --------------------------------------------------- */

/* WATCHDOG=1 from the loop itself, at half the period systemd asked for:
 * a loop that stops turning stops the pings, and systemd restarts mvmd
 * (KillMode=process: the workers stay and are re-adopted). */
static void watchdog_cb(uv_timer_t *t)
{
	notify_send("WATCHDOG=1");
}

static void watchdog_start(struct restart_state *st)
{
	const char *usec = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
	unsigned long long us = usec ? strtoull(usec, NULL, 10) : 0;

	if (us == 0 || st->watchdog_init || (wpid && atoi(wpid) != (int)getpid()))
		return;
	uv_timer_init(st->d->loop, &st->watchdog);
	st->watchdog.data = st;
	st->watchdog_init = true;
	st->handles++;
	uv_timer_start(&st->watchdog, watchdog_cb, 0, us / 2000 ? us / 2000 : 1);
}

/* ---- start and teardown ------------------------------------------------- */

/* A run dir without our marker was wiped: the host rebooted (or someone
 * emptied it), so autostart VMs start again. */
static bool host_booted(struct mvmd *d)
{
	char path[4096];
	int fd;

	snprintf(path, sizeof(path), "%s/" BOOT_MARKER, d->cfg.run_dir);
	if (access(path, F_OK) == 0)
		return false;
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	return true;
}

void restart_start(struct mvmd *d)
{
	struct restart_state *st = d->restart;

	if (!st)
		return;
	health_start(st);
	watchdog_start(st);
	for_rows(d, waiting_restart, resume_one);
	if (host_booted(d))
		for_rows(d, autostarts, start_one);
}

static void state_release(struct restart_state *st)
{
	struct restart_rec *r;

	if (--st->handles > 0 || !st->freeing)
		return;
	while ((r = TAILQ_FIRST(&st->recs))) {
		TAILQ_REMOVE(&st->recs, r, link);
		r->vm->restart = NULL;
		vm_release(r->vm);
		free(r);
	}
	free(st->slice_workers);
	free(st);
}

static void health_close_cb(uv_handle_t *h)
{
	state_release(h->data);
}

static void rec_close_cb(uv_handle_t *h)
{
	state_release(((struct restart_rec *)h->data)->st);
}

void restart_free(struct mvmd *d)
{
	struct restart_state *st = d->restart;
	struct restart_rec *r;

	if (!st)
		return;
	d->restart = NULL;
	st->freeing = true;
	st->handles++;                  /* held until every close was asked for */
	if (st->health_init)
		uv_close((uv_handle_t *)&st->health, health_close_cb);
	if (st->watchdog_init)
		uv_close((uv_handle_t *)&st->watchdog, health_close_cb);
	TAILQ_FOREACH(r, &st->recs, link)
		if (r->timer_init)
			uv_close((uv_handle_t *)&r->timer, rec_close_cb);
	state_release(st);
}
