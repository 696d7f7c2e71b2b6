/* SPDX-License-Identifier: MIT */
/*
 * Memory reclaim under host pressure.  Every reclaim_interval seconds the
 * host's memory pressure is read (pressure.c: PSI "some avg10" above
 * reclaim_memory_psi, or MemAvailable below reclaim_mem_available_mib).
 * Under pressure one running VM with a balloon gives up reclaim_step_mib
 * a tick: the one whose guest reports the most available memory (its
 * balloon stats, the idlest first), never below reclaim_min_guest_mib of
 * guest memory, and never one whose guest lags a step behind its target
 * (it ignores the balloon: its cgroup memory limit still bounds it).  The
 * stats are asked for only under pressure, so the first step comes one
 * tick after the pressure does.  Once
 * the pressure has been gone for RELIEF_TICKS ticks, what was taken goes
 * back a step a tick, the VM holding most first.  Reclaim adds to the
 * target the user set (vm.update, kept in the row); it is never stored,
 * and a VM's new worker starts without it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/mvmd.h"

#define RELIEF_TICKS 3
#define PAGE_BYTES   4096ULL
#define GUEST_FREE   4                  /* virtio balloon stat tags */
#define GUEST_AVAIL  6

struct reclaim {
	struct mvmd *d;
	uv_timer_t timer;
	uint64_t interval_ms;
	bool pressure;
	unsigned relief;                /* ticks without pressure */
	uint64_t inflations, deflations;
	char why[256];                  /* the last pressure seen */
};

struct reclaim_call {
	struct vm *vm;                  /* a reference */
	bool stats;
	int64_t target_mib;
};

static bool eligible(const struct vm *vm)
{
	return vm->worker && vm->row.has_balloon && vm->row.state == PROTO_VM_RUNNING;
}

static void call_cb(void *arg, const struct proto_link_msg *reply)
{
	struct reclaim_call *c = arg;
	struct vm *vm = c->vm;

	vm->reclaim_busy = false;
	if (c->stats && reply && reply->stats && reply->stats->has_balloon) {
		const struct proto_link_balloon_stats *b = &reply->stats->balloon;

		vm->reclaim_actual_mib = (int64_t)(b->actual_pages * PAGE_BYTES >> 20);
		if (b->guest_valid & (1u << GUEST_AVAIL))
			vm->reclaim_avail = b->guest[GUEST_AVAIL];
		else if (b->guest_valid & (1u << GUEST_FREE))
			vm->reclaim_avail = b->guest[GUEST_FREE];
	} else if (!c->stats && reply && reply->error) {
		log_warn("reclaim: VM %s refused balloon target %lld MiB: %s", vm->row.name,
		         (long long)c->target_mib, reply->error);
	}
	vm_release(vm);
	free(c);
}

static int reclaim_send(struct vm *vm, bool stats, int64_t target_mib)
{
	struct proto_link_msg m = { .type = stats ? PROTO_LINK_STATS : PROTO_LINK_BALLOON };
	struct reclaim_call *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	c->vm = vm_ref(vm);
	c->stats = stats;
	c->target_mib = target_mib;
	m.target = (uint64_t)target_mib << 20;
	r = supervisor_request(vm->worker, &m, call_cb, c);
	if (r < 0) {
		vm_release(vm);
		free(c);
		return r;
	}
	vm->reclaim_busy = true;
	return 0;
}

/* What reclaim may still take from vm, in MiB. */
static int64_t room_mib(const struct mvmd *d, const struct vm *vm)
{
	int64_t floor = (int64_t)d->cfg.pressure.reclaim_min_guest_mib;
	int64_t target = vm->row.balloon_mib + vm->reclaim_mib;

	if (floor >= vm->row.mem_mib)
		return 0;
	/* a guest a step behind its target is not following it */
	if (vm->reclaim_mib && target - vm->reclaim_actual_mib >=
	    (int64_t)d->cfg.pressure.reclaim_step_mib)
		return 0;
	return vm->row.mem_mib - floor - target > 0 ? vm->row.mem_mib - floor - target : 0;
}

static void set_target(struct reclaim *st, struct vm *vm, int64_t delta)
{
	int64_t from = vm->row.balloon_mib + vm->reclaim_mib;
	int r;

	if (vm->reclaim_busy)
		return;
	r = reclaim_send(vm, false, from + delta);
	if (r < 0) {
		log_warn("reclaim: cannot reach VM %s's worker: %s", vm->row.name, strerror(-r));
		return;
	}
	vm->reclaim_mib += delta;
	if (delta > 0)
		st->inflations++;
	else
		st->deflations++;
	log_info("reclaim: %s: VM %s balloon %lld -> %lld MiB (%lld MiB reclaimed from it)",
	         delta > 0 ? st->why : "host memory pressure gone", vm->row.name,
	         (long long)from, (long long)(from + delta), (long long)vm->reclaim_mib);
}

static void tick(uv_timer_t *t)
{
	struct reclaim *st = t->data;
	struct mvmd *d = st->d;
	int64_t step = (int64_t)d->cfg.pressure.reclaim_step_mib, room;
	struct vm *best = NULL;
	struct worker *w;
	bool was = st->pressure;

	st->pressure = pressure_reclaim_check(&d->cfg.pressure, d->cfg.proc_root, st->why,
	                                      sizeof(st->why)) == 1;
	st->relief = st->pressure ? 0 : st->relief + 1;
	if (st->pressure != was)
		log_info("reclaim: %s", st->pressure ? st->why : "host memory pressure gone");
	/* the choice under pressure needs the guests' stats: at its onset
	 * they are asked for first and chosen from one tick later */
	if (st->pressure && !was)
		goto stats;
	TAILQ_FOREACH(w, &d->workers, link) {
		struct vm *vm = w->vm;

		if (!vm || !eligible(vm))
			continue;
		if (st->pressure) {
			room = room_mib(d, vm);
			if (room > 0 && (!best || vm->reclaim_avail > best->reclaim_avail))
				best = vm;
		} else if (vm->reclaim_mib > 0 && (!best || vm->reclaim_mib > best->reclaim_mib)) {
			best = vm;
		}
	}
	if (best && st->pressure) {
		room = room_mib(d, best);
		set_target(st, best, room < step ? room : step);
	} else if (best && st->relief >= RELIEF_TICKS) {
		set_target(st, best, -(best->reclaim_mib < step ? best->reclaim_mib : step));
	}
stats:
	/* Fresh stats for the next tick's choice, only while under pressure:
	 * asking every idle guest each tick woke the whole fleet at once
	 * (issue 13: 4,000 requests every 5 s, half of an idle mvmd's
	 * syscalls).  Without pressure the choice is by what reclaim holds. */
	if (!st->pressure)
		return;
	TAILQ_FOREACH(w, &d->workers, link)
		if (w->vm && eligible(w->vm) && !w->vm->reclaim_busy)
			reclaim_send(w->vm, true, 0);
}

/* A new worker starts with the balloon the user set: nothing reclaimed. */
static void spawned_cb(struct vm *vm, pid_t pid)
{
	(void)pid;
	vm->reclaim_mib = 0;
	vm->reclaim_actual_mib = 0;
	vm->reclaim_avail = 0;
}

const struct worker_hooks reclaim_worker_hooks = {
	.spawned_cb = spawned_cb,
};

int reclaim_init(struct mvmd *d)
{
	struct reclaim *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	st->d = d;
	uv_timer_init(d->loop, &st->timer);
	st->timer.data = st;
	d->reclaim = st;
	reclaim_reload(d);
	return 0;
}

void reclaim_reload(struct mvmd *d)
{
	struct reclaim *st = d->reclaim;
	const struct pressure_limits *l = &d->cfg.pressure;
	uint64_t ms;

	if (!st)
		return;
	ms = (uint64_t)(l->reclaim_interval * 1000);
	if (!pressure_reclaim_enabled(l) || !ms) {
		uv_timer_stop(&st->timer);
		st->interval_ms = 0;
		/* off: give back what was taken, at once */
		st->pressure = false;
		return;
	}
	if (ms != st->interval_ms) {
		st->interval_ms = ms;
		uv_timer_start(&st->timer, tick, ms, ms);
	}
}

static void close_cb(uv_handle_t *h)
{
	free(h->data);
}

void reclaim_free(struct mvmd *d)
{
	struct reclaim *st = d->reclaim;

	if (!st)
		return;
	d->reclaim = NULL;
	uv_close((uv_handle_t *)&st->timer, close_cb);
}

json_t *reclaim_json(struct mvmd *d)
{
	const struct pressure_limits *l = &d->cfg.pressure;
	struct reclaim *st = d->reclaim;
	int64_t held = 0;
	struct worker *w;

	if (!st)
		return json_null();
	TAILQ_FOREACH(w, &d->workers, link)
		if (w->vm)
			held += w->vm->reclaim_mib;
	return json_pack("{s:b, s:b, s:f, s:I, s:I, s:I, s:I, s:I, s:I}",
		"enabled", st->interval_ms > 0, "pressure", st->pressure,
		"interval_s", l->reclaim_interval,
		"step_mib", (json_int_t)l->reclaim_step_mib,
		"min_guest_mib", (json_int_t)l->reclaim_min_guest_mib,
		"mem_available_mib", (json_int_t)l->reclaim_mem_available_mib,
		"reclaimed_mib", (json_int_t)held,
		"inflations", (json_int_t)st->inflations,
		"deflations", (json_int_t)st->deflations);
}
