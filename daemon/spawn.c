/* SPDX-License-Identifier: MIT */
/*
 * Starting a worker process, in place of uv_spawn: libuv cannot put a child
 * into a new PID namespace, and a sandboxed worker must be the init of its
 * own (docs/security.md).  The kernel only lets a process create threads in
 * the PID namespace it was born in, so the namespace has to exist at the
 * clone, not be unshared by the worker later.  clone also hands back a
 * pidfd, which is how mvmd watches, signals and reaps every worker.
 *
 * The child shares mvmd's memory until its execve (CLONE_VM | CLONE_VFORK,
 * as posix_spawn does): copying mvmd's page tables for every start and
 * tearing the copy down again at the exec cost the loop more the larger
 * the fleet.  mvmd is suspended meanwhile, so the child must not touch
 * malloc, locks or anything of mvmd's but the request prepared for it: it
 * only makes system calls, on its own stack, with every signal blocked
 * until its handlers are reset (a handler of mvmd's must never run in it).
 *
 * Before its exec the child moves itself into the VM's cgroups (a "0" to
 * each cgroup.procs fd it was given), so not one instruction of mvm-vmm
 * runs outside them.  Those writes wait for an RCU grace period each
 * (unless favordynmods), and the clone waits for the exec: the spawner
 * thread below does both, so mvmd's loop never waits for a start.  mvmd
 * may be killed meanwhile: the child keeps no fd of mvmd's past its first
 * steps, and does not exec once mvmd is gone (architecture.md, "Crash
 * consistency").
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/mvmd.h"
#include "util/util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_UNSHARE
#define CLOSE_RANGE_UNSHARE (1U << 1)
#endif

extern char **environ;

/* The child runs on a stack ASan does not know, and never returns. */
#define CHILD_FN __attribute__((noreturn, no_sanitize_address))
#define CHILD_STACK_SIZE (256 * 1024)

/* Only in the child: report what failed (SPAWN_STAGE_EXEC or the index of
 * the cgroup.procs fd) and its errno on the pipe, and die. */
static void CHILD_FN child_fail(int err_fd, int stage)
{
	int e[2] = { stage, errno };

	if (write(err_fd, e, sizeof(e)) < 0) {
		/* the parent sees EOF and a child that exited 127 */
	}
	_exit(127);
}

/*
 * Slots: fds of mvmd's own (parked on /dev/null), taken at start-up while
 * its fd numbers are small.  Just before a clone the spawner points them
 * at the child's fds; the child shares mvmd's fd table (CLONE_FILES) and
 * makes its own copy of only the fds up to the last slot (close_range
 * with CLOSE_RANGE_UNSHARE).  A child given a copy of the whole table
 * took a reference to each of mvmd's fds (2 per VM) and dropped them all
 * again: 8.6 ms of each start with 8,000 VMs held, against 0.9 ms at 200
 * (perf).  Without slots (none could be taken) the child gets the whole
 * copy as before.
 */
#define SLOTS (SPAWN_MAX_FDS + 2 + SPAWN_MAX_ATTACH)

static pthread_mutex_t slot_lock = PTHREAD_MUTEX_INITIALIZER;
static int slot[SLOTS];
static int slot_null = -1;              /* /dev/null, what a slot holds when idle */
static int slot_top = -1;               /* the highest slot; -1: no slots */

static void slots_take_locked(void)
{
	int top = -1, i;

	if (slot_top >= 0 || slot_null >= 0)
		return;                 /* taken, or tried and failed */
	slot_null = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (slot_null < 0)
		return;
	for (i = 0; i < SLOTS; i++) {
		slot[i] = fcntl(slot_null, F_DUPFD_CLOEXEC, 3);
		if (slot[i] < 0) {
			while (i-- > 0)
				close(slot[i]);
			return;
		}
		if (slot[i] > top)
			top = slot[i];
	}
	slot_top = top;
}

void spawn_init(void)
{
	pthread_mutex_lock(&slot_lock);
	slots_take_locked();
	pthread_mutex_unlock(&slot_lock);
}

/* The child's fd i, from 0: the worker's r->fds, then its own error
 * pipe, the read end of the life pipe and the cgroup.procs fds (-1:
 * /dev/null).  Both the child and slots_fill() go by it. */
static int __attribute__((no_sanitize_address))
child_fd(const struct spawn_req *r, int err_fd, int life_fd, int i)
{
	return i < r->nfds ? r->fds[i] : i == r->nfds ? err_fd : i == r->nfds + 1 ? life_fd :
	       r->attach_fds[i - r->nfds - 2];
}

/* The child's fds as child_fd() numbers them; in slot[] instead where
 * slots is true. */
static void CHILD_FN child(const struct spawn_req *r, int err_fd, int life_fd, bool slots)
{
	int src[SLOTS], high[SLOTS];
	int n = r->nfds + 2 + r->nattach, i, fd;
	struct pollfd life = { .fd = r->nfds + 1, .events = POLLIN };
	struct sigaction sa;
	sigset_t none;

	/* First of all, everything of mvmd's it was not given is closed: a
	 * copy of mvmd's lock or listening socket held here would outlive
	 * an mvmd killed meanwhile and stop (or fool) the next one.  A child
	 * that shares mvmd's table first copies its low part (slots and all)
	 * and leaves the shared table alone from then on. */
	if (slots) {
		if (syscall(SYS_close_range, (unsigned)slot_top + 1, ~0U, CLOSE_RANGE_UNSHARE) < 0 &&
		    unshare(CLONE_FILES) < 0)
			child_fail(err_fd, SPAWN_STAGE_EXEC);
		for (i = 0; i < n; i++)
			src[i] = slot[i];
	} else {
		for (i = 0; i < n; i++)
			src[i] = child_fd(r, err_fd, life_fd, i);
	}
	/* Every source above the target range first, so no dup below can
	 * overwrite a source (or the error pipe) still to be moved. */
	for (i = 0; i < n; i++) {
		fd = src[i] >= 0 ? src[i] : open("/dev/null", O_RDWR | O_CLOEXEC);
		if (fd < 0 || (high[i] = fcntl(fd, F_DUPFD_CLOEXEC, n)) < 0)
			child_fail(err_fd, SPAWN_STAGE_EXEC);
		if (src[i] < 0)
			close(fd);
	}
	err_fd = high[r->nfds];
	/* the worker's own fds cross the exec, the child's close there (the
	 * error pipe's close tells the parent the exec worked) */
	for (i = 0; i < n; i++)
		if (dup3(high[i], i, i < r->nfds ? 0 : O_CLOEXEC) < 0)
			child_fail(err_fd, SPAWN_STAGE_EXEC);
	err_fd = r->nfds;
	if (syscall(SYS_close_range, n, ~0U, 0) < 0) {
		struct rlimit rl = { .rlim_cur = 4096 };

		getrlimit(RLIMIT_NOFILE, &rl);
		for (i = n; (rlim_t)i < rl.rlim_cur; i++)
			close(i);
	}
	/* uv_spawn's start state: nothing blocked, every handler default (mvmd
	 * ignores SIGPIPE; the worker chooses its own). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	for (i = 1; i < _NSIG; i++)
		if (i != SIGKILL && i != SIGSTOP)
			sigaction(i, &sa, NULL);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (i = 0; i < r->nattach; i++)
		if (write(r->nfds + 2 + i, "0", 1) != 1)
			child_fail(err_fd, i);
	/* its own session: a signal to mvmd's process group spares the VMs */
	if (setsid() < 0)
		child_fail(err_fd, SPAWN_STAGE_EXEC);
	if (r->test_stall_ms) {
		struct timespec ts = { r->test_stall_ms / 1000, (r->test_stall_ms % 1000) * 1000000L };

		nanosleep(&ts, NULL);
	}
	/* mvmd died since the clone (the life pipe's only writer is gone): a
	 * worker exec'd now would run unsupervised, and the next mvmd, which
	 * finds stray workers by their command line, would not see it yet */
	if (poll(&life, 1, 0) != 0) {
		errno = ESRCH;
		child_fail(err_fd, SPAWN_STAGE_EXEC);
	}
	execve(r->path, r->argv, environ);
	child_fail(err_fd, SPAWN_STAGE_EXEC);
}

int spawn_reap(int pidfd, siginfo_t *si, bool block)
{
	int r;

	memset(si, 0, sizeof(*si));
	do
		r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | (block ? 0 : WNOHANG));
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	return si->si_pid != 0 ? 0 : -EAGAIN;
}

struct child_arg {
	const struct spawn_req *r;
	int err_fd, life_fd;
	bool slots;
};

static int CHILD_FN child_entry(void *arg)
{
	const struct child_arg *a = arg;

	child(a->r, a->err_fd, a->life_fd, a->slots);
}

/* Parks the first n slots again: mvmd must hold no copy of the child's
 * fds (the error pipe's write end held here would keep its read from
 * ever ending). */
static void slots_park(int n)
{
	for (int i = 0; i < n; i++)
		dup3(slot_null, slot[i], O_CLOEXEC);
}

/* Points the slots at the child's fds, in the child's order; false (and
 * the slots parked again) where a dup failed. */
static bool slots_fill(const struct spawn_req *r, int err_fd, int life_fd)
{
	int n = r->nfds + 2 + r->nattach, i, fd;

	for (i = 0; i < n; i++) {
		fd = child_fd(r, err_fd, life_fd, i);
		if (dup3(fd >= 0 ? fd : slot_null, slot[i], O_CLOEXEC) < 0) {
			slots_park(i);
			return false;
		}
	}
	return true;
}

/* One stack per spawning thread: that thread is suspended while its child
 * uses it. */
static void *child_stack(void)
{
	static __thread void *stack;

	if (!stack) {
		stack = mmap(NULL, CHILD_STACK_SIZE, PROT_READ | PROT_WRITE,
		             MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
		if (stack == MAP_FAILED)
			stack = NULL;
	}
	return stack;
}

/* The read end of a pipe whose write end only mvmd holds, never written:
 * a child sees it hang up once mvmd is gone.  Made at the first spawn (and
 * again at the next if that failed); both ends live as long as mvmd. */
static int life_fd(void)
{
	static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
	static int rd = -1;
	int p[2], r;

	pthread_mutex_lock(&lock);
	if (rd < 0)
		rd = pipe2(p, O_CLOEXEC) == 0 ? p[0] : -errno;
	r = rd;
	if (rd < 0)
		rd = -1;
	pthread_mutex_unlock(&lock);
	return r;
}

int spawn_process(const struct spawn_req *r, pid_t *ret_pid, int *ret_pidfd, int *ret_stage)
{
	struct child_arg ca = { .r = r };
	sigset_t all, old;
	int pidfd = -1, p[2], err[2] = { SPAWN_STAGE_EXEC, 0 };
	char *stack = child_stack();
	ssize_t n;
	long pid;

	*ret_stage = SPAWN_STAGE_CLONE;
	if (r->nfds > SPAWN_MAX_FDS || r->nattach > SPAWN_MAX_ATTACH)
		return -E2BIG;
	if (!stack)
		return -ENOMEM;
	ca.life_fd = life_fd();
	if (ca.life_fd < 0)
		return ca.life_fd;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	ca.err_fd = p[1];
	pthread_mutex_lock(&slot_lock);
	slots_take_locked();
	ca.slots = slot_top >= 0 && slots_fill(r, ca.err_fd, ca.life_fd);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	/* returns once the child exec'd or exited; the stack grows down */
	pid = clone(child_entry, stack + CHILD_STACK_SIZE,
	            CLONE_VM | CLONE_VFORK | CLONE_PIDFD | (ca.slots ? CLONE_FILES : 0) |
	            (r->new_pid_ns ? CLONE_NEWPID : 0) | SIGCHLD, &ca, &pidfd);
	err[1] = pid < 0 ? errno : 0;
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (ca.slots)
		slots_park(r->nfds + 2 + r->nattach);
	pthread_mutex_unlock(&slot_lock);
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return -err[1];
	}
	*ret_stage = SPAWN_STAGE_EXEC;
	close(p[1]);
	do
		n = read(p[0], err, sizeof(err));
	while (n < 0 && errno == EINTR);
	close(p[0]);
	if (n > 0) {
		/* the attach or the exec failed: the child has exited 127 */
		siginfo_t si;

		spawn_reap(pidfd, &si, true);
		close(pidfd);
		*ret_stage = n == sizeof(err) ? err[0] : SPAWN_STAGE_EXEC;
		return n == sizeof(err) && err[1] > 0 ? -err[1] : -EIO;
	}
	*ret_pid = (pid_t)pid;
	*ret_pidfd = pidfd;
	return 0;
}

int spawn_signal(int pidfd, int sig)
{
	return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

/* ---- the worker's command line and fds --------------------------------- */

#define ARGV_MAX 96
#define ARG_BUFS 40                     /* 6, a disk or NIC each, ids, lease, vsock */

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
 * (4) and the initrd (5, if any), in that order; spawn_worker() maps them. */
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

/* ",bps=N,iops=N,..." for the rate limits a disk or NIC object holds (the
 * decoder checked their ranges), "" for none. */
static void limit_suffix(json_t *o, const char *ops, char *buf, size_t size)
{
	char ops_burst[16];
	const char *names[4] = { "bps", "bps_burst", ops, ops_burst };
	size_t n = 0;
	json_t *v;

	snprintf(ops_burst, sizeof(ops_burst), "%s_burst", ops);
	buf[0] = '\0';
	for (int i = 0; i < 4 && n < size; i++) {
		v = json_object_get(o, names[i]);
		if (json_is_integer(v))
			n += (size_t)snprintf(buf + n, size - n, ",%s=%lld", names[i],
			                      (long long)json_integer_value(v));
	}
}

/* --disk /proc/self/fd/N[,ro][,limits] and --net fd=N,mac=MAC[,limits]:
 * the worker uses the very fds that were opened for the client
 * (docs/security.md). */
static void build_device_argv(const struct proto_vm *vm, const struct vm_files *f,
                              struct spawn_args *a)
{
	char def_mac[18], lim[128];
	json_t *o, *mac;

	for (int i = 0; i < f->ndisks; i++) {
		o = json_array_get(vm->disks, (size_t)i);
		limit_suffix(o, "iops", lim, sizeof(lim));
		arg_add(a, "--disk");
		arg_addf(a, "/proc/self/fd/%d%s%s", disk_fd_no(f, i),
		         json_is_true(json_object_get(o, "readonly")) ? ",ro" : "", lim);
	}
	for (int i = 0; i < f->nnics; i++) {
		o = json_array_get(vm->nics, (size_t)i);
		mac = json_object_get(o, "mac");
		limit_suffix(o, "pps", lim, sizeof(lim));
		arg_add(a, "--net");
		if (json_is_string(mac))
			snprintf(def_mac, sizeof(def_mac), "%s", json_string_value(mac));
		else
			nic_default_mac(vm->name, i, def_mac, sizeof(def_mac));
		arg_addf(a, "fd=%d,mac=%s%s", nic_fd_no(f, i), def_mac, lim);
	}
	if (vm->has_rng)
		arg_add(a, "--rng");
	if (vm->has_balloon) {
		arg_add(a, "--balloon");
		arg_addf(a, "%lldM", (long long)vm->balloon_mib);
	}
}

/* Worker fds: 3 the link, 4 the kernel, 5 the initrd, then disks and
 * NICs.  The worker opens /proc/self/fd/N for the kernel and initrd and
 * takes disk and TAP fds over as they are: the very files that were
 * checked for the client. */
static void build_argv(const struct spawn_worker_req *r, struct spawn_args *a)
{
	const struct proto_vm *vm = r->vm;

	arg_add(a, r->vmm_path);
	arg_add(a, "--kernel");
	arg_addf(a, "/proc/self/fd/%d", 4);
	if (r->files->initrd_fd >= 0) {
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
	arg_add(a, r->console_log);
	arg_add(a, "--serial-log-max");
	arg_add(a, "1M");
	build_device_argv(vm, r->files, a);
	if (r->vsock_uds && r->vsock_uid >= 0) {
		arg_add(a, "--vsock");
		arg_addf(a, "cid=%u,uds=%s,uid=%lld", vm->vsock_cid, r->vsock_uds,
		         (long long)r->vsock_uid);
	} else if (r->vsock_uds) {
		arg_add(a, "--vsock");
		arg_addf(a, "cid=%u,uds=%s", vm->vsock_cid, r->vsock_uds);
	}
	arg_add(a, "--control-fd");
	arg_add(a, "3");
	if (r->adopt_socket) {
		arg_add(a, "--adopt-socket");
		arg_add(a, r->adopt_socket);
	}
}

/* docs/security.md "Worker sandbox": its own uid and gid, and the per-VM
 * directory as its whole root. */
static void build_sandbox_argv(const struct spawn_worker_req *r, struct spawn_args *a)
{
	arg_add(a, "--sandbox");
	arg_add(a, "--sandbox-uid");
	arg_addf(a, "%u", r->sandbox_id);
	arg_add(a, "--sandbox-gid");
	arg_addf(a, "%u", r->sandbox_id);
	arg_add(a, "--sandbox-dir");
	arg_add(a, r->sandbox_dir);
#ifdef MVM_TEST_HOOKS
	/* Test builds only: MVM_TEST_FORBIDDEN_SYSCALL=<VM name> in mvmd's
	 * environment makes that VM's worker break its filter on purpose. */
	const char *t = getenv("MVM_TEST_FORBIDDEN_SYSCALL");

	if (t && !strcmp(t, r->vm->name))
		arg_add(a, "--test-forbidden-syscall");
#endif
}

/* fd 0 /dev/null, 1 and 2 the VMM log, 3 the link, 4 the kernel, then
 * initrd, disks and TAPs in the order build_argv() named them, then the
 * uid lease.  The job keeps the command line; the fds stay the caller's. */
int spawn_worker_job(const struct spawn_worker_req *r, struct spawn_job *j)
{
	const struct vm_files *f = r->files;
	struct spawn_args *a = calloc(1, sizeof(*a));
	int *fds = j->fds, n = 0;

	if (!a)
		return -ENOMEM;
	build_argv(r, a);
	if (r->sandbox_dir)
		build_sandbox_argv(r, a);
	fds[n++] = -1;
	fds[n++] = r->log_fd;
	fds[n++] = r->log_fd;
	fds[n++] = r->link_fd;
	fds[n++] = f->kernel_fd;
	if (f->initrd_fd >= 0)
		fds[n++] = f->initrd_fd;
	for (int i = 0; i < f->ndisks; i++)
		fds[n++] = f->disk_fds[i];
	for (int i = 0; i < f->nnics; i++)
		fds[n++] = f->nic_fds[i];
	/* the worker keeps a copy of its uid lease: it holds the uid for as
	 * long as it lives, past mvmd's own exit */
	if (r->sandbox_dir && r->sandbox_lease_fd >= 0) {
		arg_add(a, "--sandbox-lease-fd");
		arg_addf(a, "%d", n);
		fds[n++] = r->sandbox_lease_fd;
	}
	a->argv[a->argc] = NULL;
	j->args = a;
	j->req = (struct spawn_req){ .path = r->vmm_path, .argv = a->argv, .fds = fds,
	                             .nfds = n, .new_pid_ns = r->sandbox_dir != NULL,
	                             .attach_fds = j->attach_fds, .nattach = j->nattach };
	j->pidfd = -1;
	return 0;
}

void spawn_job_clear(struct spawn_job *j)
{
	free(j->args);
	j->args = NULL;
}

/* ---- the spawner thread ------------------------------------------------- */

/*
 * mvmd's fd table, shared by its threads, grows by doubling as fds are
 * opened, and a growth of a shared table waits for an RCU grace period
 * (the kernel's expand_fdtable; 5-20 ms on the test host), which put a
 * loop's open among the slowest vm.list calls of a fill.  The spawner
 * grows it ahead instead, before a job's clone (a growth after it would
 * hold the job's answer back while the worker boots), to twice the
 * highest fd the job was handed, with a copy it closes at once (F_DUPFD
 * takes the lowest free fd from there up, so no fd in use is touched).
 * The kernel never shrinks the table.
 */
static void fdtable_ahead(const struct spawn_job *j)
{
	static int ahead;               /* the spawner thread's alone */
	struct rlimit rl;
	int hi = -1, fd, to;

	for (int i = 0; i < j->req.nfds; i++)
		if (j->fds[i] > hi)
			hi = j->fds[i];
	if (hi < 0 || hi < ahead / 2)
		return;
	to = hi < 128 ? 256 : 2 * hi;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
	    (rlim_t)to >= rl.rlim_cur)
		to = (int)rl.rlim_cur - 1;
	if (to <= hi || to <= ahead)
		return;
	fd = fcntl(hi, F_DUPFD_CLOEXEC, to);
	if (fd >= 0)
		close(fd);
	ahead = to;
}

/*
 * A job runs in two FIFO stages, each on a thread of its own (workq.c):
 * prepare() on the preparer (the VM's directories, log and cgroup,
 * supervisor.c), then the spawn and spawned() (its record) on the
 * spawner.  Two, so that one start's files and cgroup are made while the
 * spawner waits for the last one's clone and its cgroup.procs writes
 * (an RCU grace period each); one each, since the kernel serialises
 * cgroup attaches on one lock anyway, and it keeps the starts in the
 * order admission granted them.  Each stage's end comes back to the
 * loop; done_cb runs after the last.
 */
static void job_release(struct spawn_job *j)
{
	if (--j->holds == 0)
		j->done_cb(j);
}

static void prep_run(struct workq_job *wq)
{
	struct spawn_job *j = (struct spawn_job *)((char *)wq - offsetof(struct spawn_job, prep_wq));

	j->r = j->prepare(j);
	if (j->r < 0) {
		j->stage = SPAWN_STAGE_PREPARE;
		j->holds = 1;           /* no spawn: this stage's done is the last */
		return;
	}
	workq_submit(j->spawner, &j->wq);
}

static void prep_done(struct workq_job *wq)
{
	job_release((struct spawn_job *)((char *)wq - offsetof(struct spawn_job, prep_wq)));
}

static void spawn_run(struct workq_job *wq)
{
	struct spawn_job *j = (struct spawn_job *)((char *)wq - offsetof(struct spawn_job, wq));

	fdtable_ahead(j);       /* before the clone: the worker waits, not the loop */
	j->start_r = -ESRCH;
	j->req.nattach = j->nattach;
	j->r = spawn_process(&j->req, &j->pid, &j->pidfd, &j->stage);
	if (j->r == 0)
		j->start_r = util_proc_start_time(j->pid, &j->start_time);
	if (j->r == 0 && j->spawned)
		j->spawned(j);
}

static void spawn_done(struct workq_job *wq)
{
	job_release((struct spawn_job *)((char *)wq - offsetof(struct spawn_job, wq)));
}

int spawner_init(struct mvmd *d)
{
	int r = workq_start(d->loop, "mvmd-spawner", &d->spawner);

	if (r == 0 && (r = workq_start(d->loop, "mvmd-preparer", &d->preparer)) < 0) {
		workq_stop(d->spawner);
		d->spawner = NULL;
	}
	return r;
}

void spawner_submit(struct mvmd *d, struct spawn_job *j)
{
	j->wq.run = spawn_run;
	j->wq.done = spawn_done;
	j->spawner = d->spawner;
	if (!j->prepare) {
		j->holds = 1;
		workq_submit(d->spawner, &j->wq);
		return;
	}
	j->holds = 2;
	j->prep_wq.run = prep_run;
	j->prep_wq.done = prep_done;
	workq_submit(d->preparer, &j->prep_wq);
}

/* Every job submitted still runs (its row says "starting"), then its
 * done_cb, here; then the thread ends. */
void spawner_free(struct mvmd *d)
{
	if (!d->spawner)
		return;
	/* the preparer first: what it finishes goes on to the spawner */
	workq_stop(d->preparer);
	d->preparer = NULL;
	workq_stop(d->spawner);
	d->spawner = NULL;
}
