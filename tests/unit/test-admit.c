/* SPDX-License-Identifier: MIT */
/*
 * daemon/admit.c alone, over the real parts below it (capacity.c,
 * cgroup.c with no usable controller, vms.c, a real SQLite file, a libuv
 * loop): admission, the FIFO start queue, cancelling, capacity given back
 * at a worker's end and a queued start that fails.  Workers are started
 * through d->start_worker, which here records the start and commits
 * "starting" as supervisor_start does; their boot and end are told
 * through admit_worker_hooks, as the supervisor tells them.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "tests/unit/check.h"

static int starts;              /* start_worker calls */
static int fail_starts;         /* fail this many of the next starts */
static int start_failures_told; /* admit_start_failed_cb calls */
static char told_message[sizeof(((struct proto_error *)0)->message)];

static int fake_start(struct vm *vm, struct vm_files *files, const struct start_cgroup *cg,
                      struct proto_error *err)
{
	(void)cg;
	starts++;
	vm_files_close(files);
	if (fail_starts > 0) {
		fail_starts--;
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "cannot start the worker: test");
	}
	return vm_commit(vm, PROTO_VM_STARTING, NULL);
}

static void start_failed_cb(struct vm *vm, const struct proto_error *err)
{
	start_failures_told++;
	snprintf(told_message, sizeof(told_message), "%s", err->message);
}

struct env {
	struct mvmd d;
	char dir[64];
};

static void env_init(struct env *e)
{
	struct mvmd *d = &e->d;
	char path[128];

	memset(e, 0, sizeof(*e));
	snprintf(e->dir, sizeof(e->dir), "/tmp/mvm-test-admit-XXXXXX");
	CHECK(mkdtemp(e->dir) != NULL);
	snprintf(path, sizeof(path), "%s/mvmd.db", e->dir);
	CHECK_EQ(db_open(path, &d->db), 0);
	d->loop = malloc(sizeof(*d->loop));
	CHECK_EQ(uv_loop_init(d->loop), 0);
	d->cfg.state_dir = e->dir;
	d->cfg.cgroup_root = e->dir;    /* no controllers there: cgroups off */
	cap_limits_init(&d->cfg.limits);
	d->cfg.limits.host_mem_mib = 4096;
	d->cfg.limits.host_cpus = 4;
	d->cfg.limits.memory_reserved_mib = 0;
	d->cfg.limits.max_vms = 3;
	d->cfg.limits.max_concurrent_starts = 1;
	d->cfg.limits.start_rate = 0;
	d->start_worker = fake_start;
	d->admit_start_failed_cb = start_failed_cb;
	vms_init(d);
	vms_db_opened(d);
	TAILQ_INIT(&d->workers);
	TAILQ_INIT(&d->conns);
	mvmd_log_level = LOG_ERROR;
	CHECK_EQ(admit_init(d), 0);
}

static void env_free(struct env *e)
{
	char path[128];

	admit_free(&e->d);
	vms_flush(&e->d);       /* as mvmd's exit: the batch, then the timer */
	uv_run(e->d.loop, UV_RUN_DEFAULT);
	/* every handle closed, every record let go */
	CHECK_EQ(uv_loop_close(e->d.loop), 0);
	CHECK_EQ(e->d.nvms, 0);
	vms_free(&e->d);
	free(e->d.loop);
	db_close(e->d.db);
	snprintf(path, sizeof(path), "%s/mvmd.db", e->dir);
	unlink(path);
	strcat(path, "-wal");
	unlink(path);
	path[strlen(path) - 4] = '\0';
	strcat(path, "-shm");
	unlink(path);
	rmdir(e->dir);
}

/* A stored VM of mem_mib, as vm.create leaves it. */
static void define(struct env *e, const char *name, int64_t mem_mib, struct proto_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->name = strdup(name);
	vm->kernel = strdup("/boot/vmlinuz");
	vm->cmdline = strdup("");
	vm->vcpus = 1;
	vm->mem_mib = mem_mib;
	vm->disks = json_array();
	vm->nics = json_array();
	vm->labels = json_object();
	vm->pools = json_array();
	CHECK_EQ(db_vm_insert(e->d.db, vm), 0);
}

/* Admit and launch: 0 started, 1 queued, <0 refused; *ret its record. */
static int launch(struct env *e, struct proto_vm *row, bool no_queue, struct vm **ret,
                  struct proto_error *err)
{
	struct admission *a;
	struct vm_files files;
	int r;

	vm_files_init(&files);
	*ret = NULL;
	r = admit_reserve(&e->d, row, no_queue, &a, err);
	if (r < 0)
		return r;
	*ret = vms_hold(&e->d, row);
	return admit_launch(a, *ret, &files, err);
}

static enum proto_vm_state stored_state(struct env *e, const char *name)
{
	struct proto_vm row;
	enum proto_vm_state st;

	if (db_vm_get(e->d.db, name, &row) < 0)
		return PROTO_VM_DELETED;
	st = row.state;
	proto_vm_clear(&row);
	return st;
}

static uint64_t used_vms(struct env *e)
{
	struct cap_usage u;

	cap_usage_get(&e->d.cap, &u);
	return u.vms;
}

static void test_queue(void)
{
	struct proto_vm ra, rb, rc, rd;
	struct vm *a, *b, *c, *dd;
	struct proto_error err;
	struct env e;

	env_init(&e);
	define(&e, "a", 256, &ra);
	define(&e, "b", 256, &rb);
	define(&e, "c", 256, &rc);
	define(&e, "d", 256, &rd);

	/* one start at a time: a starts, b and c wait in order */
	CHECK_EQ(launch(&e, &ra, false, &a, &err), 0);
	CHECK_EQ(starts, 1);
	CHECK_EQ(a->row.state, PROTO_VM_STARTING);
	CHECK_EQ(launch(&e, &rb, false, &b, &err), 1);
	CHECK_EQ(launch(&e, &rc, false, &c, &err), 1);
	CHECK_EQ(stored_state(&e, "b"), PROTO_VM_QUEUED);
	CHECK_EQ(starts, 1);

	/* max_vms 3: the fourth is refused for now and nothing changes */
	CHECK_EQ(launch(&e, &rd, false, &dd, &err), -EAGAIN);
	CHECK_EQ(err.code, PROTO_ERR_UNAVAILABLE);
	CHECK_EQ(stored_state(&e, "d"), PROTO_VM_CREATED);
	CHECK_EQ(used_vms(&e), 3);

	/* a's first output ends its starting phase: b (not c) starts */
	admit_worker_hooks.booted_cb(a);
	CHECK_EQ(starts, 2);
	CHECK_EQ(b->row.state, PROTO_VM_STARTING);
	CHECK_EQ(stored_state(&e, "c"), PROTO_VM_QUEUED);

	/* c leaves the queue: stopped, its capacity back */
	CHECK_EQ(admit_cancel(c, "stopped while queued"), 0);
	CHECK_EQ(stored_state(&e, "c"), PROTO_VM_STOPPED);
	CHECK(c->row.exit_reason && !strcmp(c->row.exit_reason, "stopped while queued"));
	CHECK_EQ(admit_cancel(c, NULL), -ENOENT);
	CHECK_EQ(used_vms(&e), 2);

	/* while b starts, --no-queue is refused rather than queued */
	CHECK_EQ(launch(&e, &rd, true, &dd, &err), -EBUSY);
	CHECK(strstr(err.message, "not queued") != NULL);
	CHECK_EQ(err.code, PROTO_ERR_UNAVAILABLE);
	CHECK_EQ(used_vms(&e), 2);

	/* a worker's end gives its capacity back exactly once */
	admit_worker_hooks.ended_cb(a, false, 1);
	admit_worker_hooks.ended_cb(a, false, 1);
	CHECK_EQ(used_vms(&e), 1);
	admit_worker_hooks.ended_cb(b, false, 1);
	CHECK_EQ(used_vms(&e), 0);

	vm_release(a);
	vm_release(b);
	vm_release(c);
	proto_vm_clear(&ra);
	proto_vm_clear(&rb);
	proto_vm_clear(&rc);
	proto_vm_clear(&rd);
	env_free(&e);
}

static void test_queued_start_fails(void)
{
	struct proto_vm ra, rb;
	struct vm *a, *b;
	struct proto_error err;
	struct env e;

	env_init(&e);
	starts = 0;
	define(&e, "a", 128, &ra);
	define(&e, "b", 128, &rb);
	CHECK_EQ(launch(&e, &ra, false, &a, &err), 0);
	CHECK_EQ(launch(&e, &rb, false, &b, &err), 1);

	/* b's turn comes and its start fails: crashed, told once, nothing held */
	fail_starts = 1;
	admit_worker_hooks.booted_cb(a);
	CHECK_EQ(starts, 2);
	CHECK_EQ(stored_state(&e, "b"), PROTO_VM_CRASHED);
	CHECK(b->row.exit_reason && !strcmp(b->row.exit_reason, "start failed"));
	CHECK_EQ(start_failures_told, 1);
	CHECK(strstr(told_message, "cannot start the worker") != NULL);
	CHECK(b->adm == NULL);
	CHECK_EQ(used_vms(&e), 1);

	/* a direct start that fails gives everything back and says why */
	admit_worker_hooks.ended_cb(a, false, 1);
	fail_starts = 1;
	CHECK(launch(&e, &rb, false, &b, &err) < 0);
	CHECK(strstr(err.message, "cannot start the worker") != NULL);
	CHECK_EQ(used_vms(&e), 0);

	vm_release(a);
	vm_release(b);
	vm_release(b);
	proto_vm_clear(&ra);
	proto_vm_clear(&rb);
	env_free(&e);
}

static void write_at(const char *dir, const char *name, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	CHECK(f != NULL);
	if (f) {
		fputs(text, f);
		fclose(f);
	}
}

/* PSI and MemAvailable from files laid out as /proc: each threshold trips
 * alone, says what and how much, and 0 turns it off. */
static void test_pressure(void)
{
	char dir[] = "/tmp/mvm-test-pressure-XXXXXX", sub[512], msg[256];
	struct pressure_limits l = { 0 };
	uint64_t kib;
	double v;

	CHECK(mkdtemp(dir) != NULL);
	snprintf(sub, sizeof(sub), "%s/pressure", dir);
	CHECK_EQ(mkdir(sub, 0700), 0);
	write_at(dir, "pressure/memory", "some avg10=42.50 avg60=10.00 avg300=1.00 total=5\n"
	                                 "full avg10=20.00 avg60=0.00 avg300=0.00 total=2\n");
	write_at(dir, "meminfo", "MemTotal:  8000000 kB\nMemFree:  100 kB\n"
	                         "MemAvailable:   524288 kB\n");
	CHECK_EQ(pressure_parse_psi("some avg10=3.25 avg60=0", &v), 0);
	CHECK(v > 3.2 && v < 3.3);
	CHECK_EQ(pressure_parse_psi("full avg10=3.25", &v), -EINVAL);
	CHECK_EQ(pressure_parse_meminfo("MemAvailable: 12 kB", &kib), 0);
	CHECK_EQ(kib, 12);
	CHECK_EQ(pressure_parse_meminfo("MemFree: 12 kB", &kib), -EINVAL);
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 0);        /* both off */
	l.psi_some_avg10 = 50;
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 0);
	l.psi_some_avg10 = 40;
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 1);
	CHECK(strstr(msg, "PSI memory some avg10 is 42.50%") && strstr(msg, "admit_memory_psi"));
	l.psi_some_avg10 = 0;
	l.mem_available_mib = 512;
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 0);     /* 512 MiB is not below */
	l.mem_available_mib = 513;
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 1);
	CHECK(strstr(msg, "MemAvailable is 512 MiB") && strstr(msg, "admit_mem_available_mib 513"));
	/* a kernel without PSI: that check is skipped, not failed */
	snprintf(sub, sizeof(sub), "rm -rf '%s'", dir);
	CHECK_EQ(system(sub), 0);
	l.psi_some_avg10 = 1;
	l.mem_available_mib = 0;
	CHECK_EQ(pressure_check(&l, dir, msg, sizeof(msg)), 0);
}

int main(void)
{
	test_pressure();
	test_queue();
	test_queued_start_fails();
	return check_result("admit");
}
