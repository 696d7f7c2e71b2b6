/* SPDX-License-Identifier: MIT */
/*
 * Reliability: re-adopting the workers of an earlier mvmd, reconciling the
 * rows whose worker is gone, worker health checks and restart policies.
 *
 * A worker listens on <run-dir>/vms/<name>.sock (vmm/control.c).  At start
 * mvmd connects to it for every row left starting/running/stopping and
 * takes the worker over only if the socket's peer (SO_PEERCRED), the
 * worker's hello and the pid recorded at spawn all name the same pid, and
 * that process's start time (/proc/PID/stat field 22) is the one recorded
 * at spawn: a recycled pid is never adopted, nor ever signalled.
 *
 * Restart policies (docs/protocol.md): a VM that ended without being asked
 * to restarts after 1 s, doubling to 60 s; the count of failures resets
 * once a run lasted 60 s.  After N failed restarts in a row (restart_max;
 * 0 means no limit) it stays crashed with reason "crash-loop: ...".  The
 * count lives in the VM's row (db_vm_set_failures), so an mvmd restart
 * neither forgets a crash loop nor a restart that was waiting out its
 * backoff: the next mvmd schedules that again.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "daemon/tap.h"
#include "util/util.h"

#define HELLO_TIMEOUT_MS 2000
#define BACKOFF_MIN_S 1.0
#define BACKOFF_MAX_S 60.0
#define RESET_AFTER_S 60.0              /* a run this long forgets failures */
#define BOOT_MARKER "mvmd.booted"       /* in the run dir: absent after a reboot */

struct restart_rec {
	struct restart_rec *next;
	struct adopt_state *st;
	int64_t vm_id;
	char name[64];
	int failures;                   /* ended without being asked, in a row */
	uv_timer_t timer;
	bool timer_init;
};

struct adopt_state {
	struct mvmd *d;
	uv_timer_t health;
	bool health_init;
	double health_last;             /* mvmd_now() of the last health tick */
	uv_timer_t watchdog;            /* sd_notify WATCHDOG=1 (WatchdogSec) */
	bool watchdog_init;
	struct restart_rec *recs;
	int handles;                    /* open handles; freed at 0 after adopt_free */
	bool freeing;
};

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
}

static int pidfd_kill(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* ---- paths and records -------------------------------------------------- */

int adopt_socket_path(const struct mvmd *d, const char *name, char *buf, size_t size)
{
	struct sockaddr_un sa;
	int n;

	n = snprintf(buf, size, "%s/vms", d->cfg.run_dir);
	if (n < 0 || (size_t)n >= size)
		return -ENAMETOOLONG;
	if (mkdir(buf, 0700) < 0 && errno != EEXIST)
		return -errno;
	n = snprintf(buf, size, "%s/vms/%s.sock", d->cfg.run_dir, name);
	if (n < 0 || (size_t)n >= size || (size_t)n >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	return 0;
}

void adopt_record_spawn(struct mvmd *d, const char *name, pid_t pid)
{
	char path[4096], line[64];
	uint64_t start;
	int fd, n;

	if (util_proc_start_time(pid, &start) < 0 ||
	    mvmd_vm_dir(d, name, "worker", path, sizeof(path)) < 0)
		return;
	n = snprintf(line, sizeof(line), "%d %llu\n", (int)pid, (unsigned long long)start);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	/* without the record, adoption falls back to the socket's own proof */
	if (fd < 0 || write(fd, line, (size_t)n) != n)
		log_warn("VM %s: cannot record its worker in %s: %s", name, path, strerror(errno));
	if (fd >= 0)
		close(fd);
}

/* 0 and the recorded pid and start time, or -errno (none recorded). */
static int read_record(struct mvmd *d, const char *name, pid_t *ret_pid, uint64_t *ret_start)
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

static void remove_runtime(struct mvmd *d, const char *name)
{
	char path[4096];

	if (adopt_socket_path(d, name, path, sizeof(path)) == 0)
		unlink(path);
	if (mvmd_vm_dir(d, name, "worker", path, sizeof(path)) == 0)
		unlink(path);
	supervisor_sandbox_remove(d, name);
}

/* ---- talking to a worker's socket --------------------------------------- */

static int connect_socket(const char *path, int *ret_fd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0), r;

	if (fd < 0)
		return -errno;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		r = -errno;
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* Read exactly the hello line, byte by byte, so nothing after it is taken
 * from the stream the link will read. */
static int read_hello(int fd, struct proto_link_msg *ret)
{
	char line[1024];
	size_t n = 0;
	struct pollfd p = { .fd = fd, .events = POLLIN };

	while (n < sizeof(line) - 1) {
		if (poll(&p, 1, HELLO_TIMEOUT_MS) <= 0)
			return -ETIMEDOUT;
		if (read(fd, line + n, 1) != 1)
			return -ECONNRESET;
		if (line[n] == '\n')
			break;
		n++;
	}
	if (proto_link_decode(line, n, ret) < 0)
		return -EPROTO;
	proto_link_clear(ret);
	return ret->type == PROTO_LINK_HELLO ? 0 : -EPROTO;
}

static pid_t peer_pid(int fd)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 ? -1 : cred.pid;
}

/* Connect to name's socket and check that the worker there is pid, started
 * at start.  0 and the connected fd and hello, or -errno. */
static int greet(struct mvmd *d, const char *name, pid_t pid, uint64_t start, int *ret_fd,
                 struct proto_link_msg *ret_hello)
{
	char path[4096];
	int fd, r;

	r = adopt_socket_path(d, name, path, sizeof(path));
	if (r == 0)
		r = connect_socket(path, &fd);
	if (r < 0)
		return r;
	r = read_hello(fd, ret_hello);
	if (r == 0 && (peer_pid(fd) != pid || ret_hello->pid != pid ||
	               ret_hello->start_time != start))
		r = -ESRCH;
	if (r < 0) {
		close(fd);
		return r;
	}
	*ret_fd = fd;
	return 0;
}

/* ---- capacity of adopted VMs -------------------------------------------- */

/* The adopted VM holds capacity again, exactly once: a forced reservation
 * (it runs already, whatever the limits say now) and its cgroup. */
static void adopt_reserve(struct mvmd *d, const struct proto_vm *vm)
{
	struct vm_slot *s = calloc(1, sizeof(*s));
	struct cap_request req = { 0 };
	char err[512];
	size_t i;
	json_t *p;

	if (!s) {
		log_error("VM %s: out of memory; its capacity is not counted", vm->name);
		return;
	}
	s->d = d;
	s->vm_id = vm->id;
	vm_files_init(&s->files);
	/* the same request admission built when the VM started */
	req.uid = vm->owner_uid;
	req.vcpus = (uint64_t)vm->vcpus;
	req.mem_mib = (uint64_t)vm->mem_mib;
	json_array_foreach(vm->pools, i, p) {
		if (req.npools < CAP_REQ_MAX_POOLS)
			req.pools[req.npools++] = json_string_value(p);
	}
	if (cap_reserve_force(&d->cap, &req, &s->resv, err, sizeof(err)) < 0)
		log_warn("VM %s: its capacity cannot be counted: %s", vm->name, err);
	if (cgroup_usable(&d->cg) && cgroup_vm_open(&d->cg, vm->name, &s->cg, err, sizeof(err)) < 0)
		s->cg = NULL;
	s->next = d->slots;
	if (d->slots)
		d->slots->pprev = &s->next;
	s->pprev = &d->slots;
	d->slots = s;
}

/* ---- reconciling at start ----------------------------------------------- */

/* The worker is gone (or was never there): store what can be known. */
static int mark_gone(struct mvmd *d, struct proto_vm *vm, const char *why)
{
	enum proto_vm_state st = vm->state == PROTO_VM_STOPPING ? PROTO_VM_STOPPED
	                                                         : PROTO_VM_CRASHED;
	const char *reason = why;
	double now = mvmd_now();
	int r;

	if (!reason)
		reason = vm->state == PROTO_VM_STARTING ? "daemon died during start"
		       : vm->state == PROTO_VM_STOPPING ? "stopped while mvmd was down"
		       : "worker vanished while mvmd was down";
	vm->state = st;
	vm->pid = 0;
	vm->has_exit_status = false;
	free(vm->exit_reason);
	vm->exit_reason = strdup(reason);
	r = db_vm_transition(d->db, vm, reason, now);
	if (r < 0)
		return r;
	log_info("VM %s: marked %s (%s)", vm->name, proto_vm_state_name(st), reason);
	admit_cleanup_stale(d, vm->name);
	remove_runtime(d, vm->name);
	dispatch_event(d, vm, reason, now);
	/* a host reboot or a crash while mvmd was down is not the user's doing */
	adopt_worker_ended(d, vm, st == PROTO_VM_STOPPED, 0);
	return 0;
}

static int take_over(struct mvmd *d, struct proto_vm *vm, pid_t pid, int fd, int pidfd,
                     bool booted)
{
	struct worker *w;
	int r;

	/* found through the spawn record: the row gets the pid it missed */
	if (vm->pid != pid) {
		vm->pid = pid;
		r = db_vm_store(d->db, vm);
		if (r < 0)
			log_warn("VM %s: cannot store its worker's pid: %s", vm->name, strerror(-r));
	}
	r = supervisor_adopt(d, vm, fd, pidfd, booted, &w);
	if (r < 0)
		return r;
	adopt_reserve(d, vm);
	log_info("VM %s: re-adopted worker pid %lld", vm->name, (long long)vm->pid);
	/* a stop an earlier mvmd began: finish it, with a fresh timeout */
	if (vm->state == PROTO_VM_STOPPING) {
		w->vm.state = PROTO_VM_RUNNING;
		supervisor_stop(w, 10);
	}
	return 0;
}

int adopt_vm(struct mvmd *d, struct proto_vm *vm)
{
	struct proto_link_msg hello;
	uint64_t start, rec_start = 0;
	pid_t pid = (pid_t)vm->pid, rec_pid = 0;
	int pidfd = -1, fd, r;
	bool recorded;

	recorded = read_record(d, vm->name, &rec_pid, &rec_start) == 0;
	/* mvmd died between spawning and storing the pid: the record (written
	 * right after the spawn) names the worker; greet() still proves it */
	if (pid <= 0 && vm->state == PROTO_VM_STARTING && recorded)
		pid = rec_pid;
	if (pid <= 0 || (pidfd = pidfd_open_(pid)) < 0 || util_proc_start_time(pid, &start) < 0)
		goto gone;
	/* a different process now has the pid: never touch it */
	if (recorded && (rec_pid != pid || rec_start != start))
		goto gone;
	r = greet(d, vm->name, pid, start, &fd, &hello);
	if (r == 0 && take_over(d, vm, pid, fd, pidfd, hello.booted) == 0)
		return 0;
	if (r == 0)
		goto gone;      /* take_over closed both */
	if (recorded) {
		/* our worker, but it cannot be supervised: end it */
		pidfd_kill(pidfd, SIGKILL);
		close(pidfd);
		return mark_gone(d, vm, "worker could not be re-adopted; killed");
	}
gone:
	if (pidfd >= 0)
		close(pidfd);
	return mark_gone(d, vm, NULL);
}

static bool has_worker(struct mvmd *d, const char *name)
{
	for (struct worker *w = d->workers; w; w = w->next)
		if (!strcmp(w->vm.name, name))
			return true;
	return false;
}

/* A socket no adopted worker owns: a worker without a row (or whose row
 * says it should not run, e.g. mvmd died between spawn and commit) is
 * killed; a dead worker's socket is removed. */
static void sweep_one(struct mvmd *d, const char *file)
{
	struct proto_link_msg hello;
	char path[4096], name[64];
	size_t n = strlen(file);
	int fd, pidfd;

	if (n <= 5 || n - 5 >= sizeof(name) || strcmp(file + n - 5, ".sock"))
		return;
	snprintf(name, sizeof(name), "%.*s", (int)(n - 5), file);
	if (has_worker(d, name))
		return;
	if (adopt_socket_path(d, name, path, sizeof(path)) < 0)
		return;
	if (connect_socket(path, &fd) == 0) {
		if (read_hello(fd, &hello) == 0 && peer_pid(fd) == hello.pid &&
		    (pidfd = pidfd_open_((pid_t)hello.pid)) >= 0) {
			log_warn("VM %s: worker pid %lld runs without a row that says so; killing it",
			         name, (long long)hello.pid);
			pidfd_kill(pidfd, SIGKILL);
			close(pidfd);
		}
		close(fd);
	}
	unlink(path);
}

static void sweep_sockets(struct mvmd *d)
{
	char dir[4096];
	struct dirent *e;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/vms", d->cfg.run_dir);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((e = readdir(dp)))
		sweep_one(d, e->d_name);
	closedir(dp);
}

/* ---- restart policies --------------------------------------------------- */

static struct adopt_state *state_get(struct mvmd *d)
{
	if (!d->adopt && !d->shutting_down) {
		d->adopt = calloc(1, sizeof(*d->adopt));
		if (d->adopt)
			d->adopt->d = d;
	}
	return d->adopt;
}

/* vm's record, created with the failure count its row kept. */
static struct restart_rec *rec_find(struct adopt_state *st, const struct proto_vm *vm)
{
	struct restart_rec *r;
	int n;

	for (r = st->recs; r; r = r->next)
		if (r->vm_id == vm->id)
			return r;
	if (!(r = calloc(1, sizeof(*r))))
		return NULL;
	r->st = st;
	r->vm_id = vm->id;
	snprintf(r->name, sizeof(r->name), "%s", vm->name);
	n = db_vm_failures(st->d->db, vm);
	r->failures = n > 0 ? n : 0;
	r->next = st->recs;
	st->recs = r;
	return r;
}

static void set_failures(struct restart_rec *rec, int n)
{
	struct proto_vm key = { .id = rec->vm_id, .name = rec->name };
	int r;

	rec->failures = n;
	r = db_vm_set_failures(rec->st->d->db, &key, n);
	/* the count in memory still paces this mvmd's restarts */
	if (r < 0 && r != -ENOENT)
		log_warn("VM %s: cannot store its restart failures: %s", rec->name, strerror(-r));
}

/* 1 s after the first failure, doubling up to 60 s. */
static double backoff_s(int failures)
{
	double delay = BACKOFF_MIN_S;

	for (int i = 1; i < failures && delay < BACKOFF_MAX_S; i++)
		delay *= 2;
	return delay < BACKOFF_MAX_S ? delay : BACKOFF_MAX_S;
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

static void record_failure(struct mvmd *d, struct proto_vm *vm, const char *why)
{
	double now = mvmd_now();

	vm->state = PROTO_VM_CRASHED;
	free(vm->exit_reason);
	vm->exit_reason = strdup(why);
	if (db_vm_transition(d->db, vm, why, now) == 0)
		dispatch_event(d, vm, why, now);
}

/* The backoff ran out: start the VM through admission, as vm.start would. */
static void restart_now(struct restart_rec *rec)
{
	struct mvmd *d = rec->st->d;
	struct proto_error err;
	struct vm_files files;
	struct vm_slot *s;
	struct proto_vm vm;
	char why[600];

	if (db_vm_get(d->db, rec->name, &vm) < 0 || vm.id != rec->vm_id)
		return;                 /* removed meanwhile */
	if ((vm.state != PROTO_VM_CRASHED && vm.state != PROTO_VM_STOPPED &&
	     vm.state != PROTO_VM_CREATED) || supervisor_find(d, vm.id))
		goto out;               /* started or changed by hand meanwhile */
	log_info("VM %s: restarting (policy %s, failure %d)", vm.name,
	         vm.restart ? vm.restart : "autostart", rec->failures);
	if (open_files(d, &vm, &files, &err) == 0) {
		if (admit_reserve(d, &vm, false, &s, &err) == 0) {
			admit_launch(NULL, NULL, s, &vm, &files, false);
			goto out;
		}
		vm_files_close(&files);
	}
	snprintf(why, sizeof(why), "restart failed: %s", err.message);
	log_error("VM %s: %s", vm.name, why);
	record_failure(d, &vm, why);
out:
	proto_vm_clear(&vm);
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

static void crash_loop(struct mvmd *d, const struct proto_vm *vm, int failures)
{
	struct proto_vm row;
	char why[128];

	snprintf(why, sizeof(why), "crash-loop: failed %d times in a row; not restarting "
	         "(mvmctl start resets)", failures);
	log_error("VM %s: %s", vm->name, why);
	if (db_vm_get(d->db, vm->name, &row) < 0)
		return;
	record_failure(d, &row, why);
	proto_vm_clear(&row);
}

void adopt_worker_ended(struct mvmd *d, const struct proto_vm *vm, bool requested,
                        double ran_s)
{
	struct adopt_state *st = state_get(d);
	const char *pol = vm->restart ? vm->restart : "no";
	struct restart_rec *rec;

	remove_runtime(d, vm->name);
	if (!st || d->shutting_down)
		return;
	rec = rec_find(st, vm);
	if (!rec)
		return;
	if (requested || ran_s >= RESET_AFTER_S)
		set_failures(rec, 0);
	if (requested || !strcmp(pol, "no") ||
	    (!strcmp(pol, "on-failure") && vm->state != PROTO_VM_CRASHED))
		return;
	/* restart_max 0: no limit, the backoff alone paces the retries */
	if (rec->failures + 1 > vm->restart_max && vm->restart_max > 0) {
		crash_loop(d, vm, rec->failures + 1);
		set_failures(rec, 0);   /* a manual start begins a new count */
		return;
	}
	set_failures(rec, rec->failures + 1);
	schedule(rec, backoff_s(rec->failures));
}

/* Daemon start: a VM that failed and was waiting out its backoff when the
 * earlier mvmd ended (its row kept the count) is scheduled again. */
static void resume_restarts(struct mvmd *d)
{
	struct adopt_state *st = state_get(d);
	size_t n = db_vm_count(d->db);
	struct restart_rec *rec;

	for (size_t i = 0; st && i < n; i++) {
		const struct proto_vm *vm = db_vm_at(d->db, i);

		if ((vm->state != PROTO_VM_CRASHED && vm->state != PROTO_VM_STOPPED) ||
		    !vm->restart || !strcmp(vm->restart, "no") || supervisor_find(d, vm->id) ||
		    db_vm_failures(d->db, vm) <= 0)
			continue;
		rec = rec_find(st, vm);
		if (!rec || (rec->timer_init && uv_is_active((uv_handle_t *)&rec->timer)))
			continue;
		log_info("VM %s: resuming its restart policy (failure %d)", vm->name, rec->failures);
		schedule(rec, backoff_s(rec->failures));
	}
}

/* ---- health ------------------------------------------------------------- */

static void health_cb(uv_timer_t *t)
{
	struct adopt_state *st = t->data;
	struct mvmd *d = st->d;
	double now = mvmd_now();
	struct worker *w, *next;
	/* mvmd itself stood still (a database lock held for seconds): pongs
	 * may wait unread, so nobody is hung for that; pings start afresh */
	bool stalled = st->health_last > 0 &&
	               now - st->health_last > 2 * d->cfg.health_interval + 1;

	st->health_last = now;
	for (w = d->workers; w; w = next) {
		next = w->next;
		if (w->exited || w->link_eof || w->finished)
			continue;
		if (stalled)
			w->ping_since = 0;
		/* timed from the oldest unanswered ping, not the last pong: the
		 * timeout may be shorter than the interval */
		if (w->ping_since > 0 && now - w->ping_since > d->cfg.health_timeout)
			supervisor_hung(w);
		else
			supervisor_ping(w);
	}
}

static void health_start(struct mvmd *d)
{
	struct adopt_state *st = state_get(d);
	uint64_t ms = (uint64_t)(d->cfg.health_interval * 1000);

	if (!st || ms == 0 || st->health_init)
		return;
	uv_timer_init(d->loop, &st->health);
	st->health.data = st;
	st->health_init = true;
	st->handles++;
	uv_timer_start(&st->health, health_cb, ms, ms);
}

/* ---- systemd watchdog --------------------------------------------------- */

/* WATCHDOG=1 from the loop itself, at half the period systemd asked for:
 * a loop that stops turning stops the pings, and systemd restarts mvmd
 * (KillMode=process: the workers stay and are re-adopted). */
static void watchdog_cb(uv_timer_t *t)
{
	notify_send("WATCHDOG=1");
}

static void watchdog_start(struct mvmd *d)
{
	struct adopt_state *st = state_get(d);
	const char *usec = getenv("WATCHDOG_USEC"), *wpid = getenv("WATCHDOG_PID");
	unsigned long long us = usec ? strtoull(usec, NULL, 10) : 0;

	if (!st || us == 0 || st->watchdog_init || (wpid && atoi(wpid) != (int)getpid()))
		return;
	uv_timer_init(d->loop, &st->watchdog);
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

static void autostart(struct mvmd *d)
{
	struct adopt_state *st = state_get(d);
	size_t n = db_vm_count(d->db);
	struct restart_rec *rec;

	for (size_t i = 0; st && i < n; i++) {
		const struct proto_vm *vm = db_vm_at(d->db, i);

		if (!vm->autostart || supervisor_find(d, vm->id) ||
		    (vm->state != PROTO_VM_CREATED && vm->state != PROTO_VM_STOPPED &&
		     vm->state != PROTO_VM_CRASHED))
			continue;
		rec = rec_find(st, vm);
		if (!rec || (rec->timer_init && uv_is_active((uv_handle_t *)&rec->timer)))
			continue;
		schedule(rec, 0);
	}
}

/* <state-dir>/vms/<name>/ of a VM without a row (mvmd died between
 * vm.rm's commit and removing the VM's files): remove it, so a new VM of
 * that name does not start with the old one's logs. */
static void sweep_vm_dirs(struct mvmd *d)
{
	static const char *const files[] = { "console.log", "vmm.log", "worker" };
	char dir[4096], path[4096];
	struct proto_vm vm;
	struct dirent *e;
	DIR *dp;

	snprintf(dir, sizeof(dir), "%s/vms", d->cfg.state_dir);
	dp = opendir(dir);
	if (!dp)
		return;
	while ((e = readdir(dp))) {
		if (e->d_name[0] == '.')
			continue;
		if (db_vm_get(d->db, e->d_name, &vm) == 0) {
			proto_vm_clear(&vm);
			continue;
		}
		for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++)
			if (mvmd_vm_dir(d, e->d_name, files[i], path, sizeof(path)) == 0)
				unlink(path);
		if (mvmd_vm_dir(d, e->d_name, NULL, path, sizeof(path)) == 0 && rmdir(path) == 0)
			log_info("removed the files of deleted VM %s", e->d_name);
	}
	closedir(dp);
}

/* Whether pid is an adopted worker, or the child of one (a sandboxed
 * worker's VMM runs as its child, in its own PID namespace). */
static bool is_adopted(struct mvmd *d, pid_t pid)
{
	char path[64], buf[1024], *p;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(path, buf, sizeof(buf)) >= 0 && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %d", &ppid);
	for (struct worker *w = d->workers; w; w = w->next)
		if (w->vm.pid == pid || w->vm.pid == ppid)
			return true;
	return false;
}

/* Whether the process serves this mvmd: its --adopt-socket lies in our
 * run dir.  Only workers carry that option, and only mvmd starts them. */
static bool serves_us(struct mvmd *d, const char *pid)
{
	char path[64], argv[8192], prefix[4096];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%s/cmdline", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	n = read(fd, argv, sizeof(argv) - 1);
	close(fd);
	if (n <= 0)
		return false;
	argv[n] = '\0';
	snprintf(prefix, sizeof(prefix), "%s/vms/", d->cfg.run_dir);
	for (char *a = argv; a < argv + n; a += strlen(a) + 1)
		if (!strcmp(a, "--adopt-socket") && a + strlen(a) + 1 < argv + n)
			return !strncmp(a + strlen(a) + 1, prefix, strlen(prefix));
	return false;
}

/* Workers no row accounts for.  The socket sweep only finds workers whose
 * socket exists: one the old mvmd spawned just before it died may not have
 * made its socket yet when we looked, and must not run on unsupervised.
 * Runs before any restart or autostart, so every worker found is old. */
static void sweep_orphans(struct mvmd *d)
{
	struct dirent *e;
	int pidfd;
	DIR *dp = opendir("/proc");

	if (!dp)
		return;
	while ((e = readdir(dp))) {
		pid_t pid = (pid_t)atoi(e->d_name);

		if (pid <= 0 || pid == getpid() || !serves_us(d, e->d_name) || is_adopted(d, pid))
			continue;
		pidfd = pidfd_open_(pid);
		if (pidfd < 0)
			continue;
		log_warn("worker pid %lld runs without a row that says so; killing it", (long long)pid);
		pidfd_kill(pidfd, SIGKILL);
		close(pidfd);
	}
	closedir(dp);
}

int adopt_finish(struct mvmd *d)
{
	sweep_sockets(d);
	sweep_orphans(d);
	sweep_vm_dirs(d);
	health_start(d);
	watchdog_start(d);
	resume_restarts(d);
	if (host_booted(d))
		autostart(d);
	return 0;
}

static void state_release(struct adopt_state *st)
{
	if (--st->handles > 0 || !st->freeing)
		return;
	while (st->recs) {
		struct restart_rec *r = st->recs;

		st->recs = r->next;
		free(r);
	}
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

void adopt_free(struct mvmd *d)
{
	struct adopt_state *st = d->adopt;

	if (!st)
		return;
	d->adopt = NULL;
	st->freeing = true;
	st->handles++;                  /* held until every close was asked for */
	if (st->health_init)
		uv_close((uv_handle_t *)&st->health, health_close_cb);
	if (st->watchdog_init)
		uv_close((uv_handle_t *)&st->watchdog, health_close_cb);
	for (struct restart_rec *r = st->recs; r; r = r->next)
		if (r->timer_init)
			uv_close((uv_handle_t *)&r->timer, rec_close_cb);
	state_release(st);
}
