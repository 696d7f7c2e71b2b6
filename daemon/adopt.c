/* SPDX-License-Identifier: MIT */
/*
 * Start-up reconciliation: re-adopting the workers of an earlier mvmd,
 * recording why the others are gone, and sweeping what nothing accounts
 * for (workers without a row, stale sockets, files of deleted VMs).
 * Restart policies and health checks are restart.c's.
 *
 * A worker listens on <run-dir>/vms/<name>.sock (vmm/control.c).  At start
 * mvmd connects to it for every row left starting/running/stopping and
 * takes the worker over only if the socket's peer (SO_PEERCRED), the
 * worker's hello and the pid recorded at spawn all name the same pid, and
 * that process's start time (/proc/PID/stat field 22) is the one recorded
 * at spawn: a recycled pid is never adopted, nor ever signalled.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
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
#include "util/util.h"

#define HELLO_TIMEOUT_MS 2000

static int pidfd_open_(pid_t pid)
{
	return (int)syscall(SYS_pidfd_open, pid, 0);
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

	r = mvmd_adopt_socket(d, name, path, sizeof(path));
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

/* ---- reconciling at start ----------------------------------------------- */

/* The worker is gone (or was never there): store what can be known. */
static int mark_gone(struct vm *vm, const char *why)
{
	struct mvmd *d = vm->d;
	enum proto_vm_state st = vm->row.state == PROTO_VM_STOPPING ? PROTO_VM_STOPPED
	                                                             : PROTO_VM_CRASHED;
	const char *reason = why;
	int r;

	if (!reason)
		reason = vm->row.state == PROTO_VM_STARTING ? "daemon died during start"
		       : vm->row.state == PROTO_VM_STOPPING ? "stopped while mvmd was down"
		       : "worker vanished while mvmd was down";
	vm->row.pid = 0;
	vm->row.has_exit_status = false;
	free(vm->row.exit_reason);
	vm->row.exit_reason = strdup(reason);
	r = vm_commit(vm, st, reason);
	if (r < 0)
		return r;
	log_info("VM %s: marked %s (%s)", vm->row.name, proto_vm_state_name(st), reason);
	admit_cleanup_stale(d, vm->row.name);
	supervisor_remove_runtime(d, vm->row.name);
	/* a host reboot or a crash while mvmd was down is not the user's doing */
	restart_vm_ended(vm, st == PROTO_VM_STOPPED, 0);
	return 0;
}

static int take_over(struct vm *vm, pid_t pid, int fd, uint64_t start, bool booted, bool paused)
{
	struct worker *w;
	int r;

	/* found through the spawn record: the row gets the pid it missed */
	if (vm->row.pid != pid) {
		vm->row.pid = pid;
		r = vm_store(vm);
		if (r < 0)
			log_warn("VM %s: cannot store its worker's pid: %s", vm->row.name,
			         strerror(-r));
	}
	r = supervisor_adopt(vm, fd, start, booted, &w);
	if (r < 0)
		return r;
	admit_adopted(vm);
	log_info("VM %s: re-adopted worker pid %lld%s", vm->row.name, (long long)vm->row.pid,
	         paused ? " (paused)" : "");
	/* the worker knows best whether it is paused: an earlier mvmd may
	 * have died between asking and committing the answer */
	if (vm->row.state == PROTO_VM_PAUSED && !paused)
		r = vm_commit(vm, PROTO_VM_RUNNING, "resumed while mvmd was down");
	else if (paused && (vm->row.state == PROTO_VM_RUNNING ||
	                    vm->row.state == PROTO_VM_STARTING))
		r = vm_commit(vm, PROTO_VM_PAUSED, "paused while mvmd was down");
	else
		r = 0;
	if (r < 0)
		log_warn("VM %s: cannot store its state: %s", vm->row.name, strerror(-r));
	/* a stop an earlier mvmd began: finish it, with a fresh timeout */
	if (vm->row.state == PROTO_VM_STOPPING) {
		vm->row.state = PROTO_VM_RUNNING;
		supervisor_stop(w, 10);
	}
	return 0;
}

static int adopt_vm(struct vm *vm)
{
	struct mvmd *d = vm->d;
	struct proto_link_msg hello;
	uint64_t start, rec_start = 0;
	pid_t pid = (pid_t)vm->row.pid, rec_pid = 0;
	int pidfd = -1, fd, r;
	bool recorded;

	recorded = supervisor_spawn_record(d, vm->row.name, &rec_pid, &rec_start) == 0;
	/* mvmd died between spawning and storing the pid: the record (written
	 * right after the spawn) names the worker; greet() still proves it */
	if (pid <= 0 && vm->row.state == PROTO_VM_STARTING && recorded)
		pid = rec_pid;
	if (pid <= 0 || (pidfd = pidfd_open_(pid)) < 0 || util_proc_start_time(pid, &start) < 0)
		goto gone;
	/* a different process now has the pid: never touch it */
	if (recorded && (rec_pid != pid || rec_start != start))
		goto gone;
	r = greet(d, vm->row.name, pid, start, &fd, &hello);
	if (r == 0 && take_over(vm, pid, fd, start, hello.booted, hello.paused) == 0) {
		close(pidfd);
		return 0;
	}
	if (r == 0)
		goto gone;      /* take_over closed fd */
	if (recorded) {
		/* our worker, but it cannot be supervised: end it */
		spawn_signal(pidfd, SIGKILL);
		close(pidfd);
		return mark_gone(vm, "worker could not be re-adopted; killed");
	}
gone:
	if (pidfd >= 0)
		close(pidfd);
	return mark_gone(vm, NULL);
}

/* Its files and client went with the earlier mvmd. */
static int recover_queued(struct vm *vm)
{
	free(vm->row.exit_reason);
	vm->row.exit_reason = strdup("daemon restarted while queued");
	log_info("VM %s: was queued; marked stopped (daemon restarted)", vm->row.name);
	return vm_commit(vm, PROTO_VM_STOPPED, "daemon restarted while queued");
}

static int recover_one(struct mvmd *d, const struct proto_vm *row)
{
	struct vm *vm;
	int r = 0;

	if (row->state != PROTO_VM_QUEUED && row->state != PROTO_VM_STARTING &&
	    row->state != PROTO_VM_RUNNING && row->state != PROTO_VM_STOPPING &&
	    row->state != PROTO_VM_PAUSED)
		return 0;
	vm = vms_hold(d, row);
	if (!vm)
		return -ENOMEM;
	if (row->state == PROTO_VM_QUEUED)
		r = recover_queued(vm);
	else
		r = adopt_vm(vm);       /* take the worker over, or record why it is gone */
	vm_release(vm);
	return r;
}

int adopt_recover(struct mvmd *d)
{
	struct proto_vm *vms;
	size_t n;
	int r = db_vm_list(d->db, NULL, &vms, &n);

	if (r < 0)
		return r;
	for (size_t i = 0; i < n && r == 0; i++)
		r = recover_one(d, &vms[i]);
	db_vm_list_free(vms, n);
	return r;
}

static bool has_worker(struct mvmd *d, const char *name)
{
	struct worker *w;

	TAILQ_FOREACH(w, &d->workers, link)
		if (!strcmp(w->vm->row.name, name))
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
	if (mvmd_adopt_socket(d, name, path, sizeof(path)) < 0)
		return;
	if (connect_socket(path, &fd) == 0) {
		if (read_hello(fd, &hello) == 0 && peer_pid(fd) == hello.pid &&
		    (pidfd = pidfd_open_((pid_t)hello.pid)) >= 0) {
			log_warn("VM %s: worker pid %lld runs without a row that says so; killing it",
			         name, (long long)hello.pid);
			spawn_signal(pidfd, SIGKILL);
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
	struct worker *w;
	int ppid = -1;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	if (util_read_file(path, buf, sizeof(buf)) >= 0 && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %d", &ppid);

	TAILQ_FOREACH(w, &d->workers, link)
		if (w->vm->row.pid == pid || w->vm->row.pid == ppid)
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
		spawn_signal(pidfd, SIGKILL);
		close(pidfd);
	}
	closedir(dp);
}

void adopt_sweep(struct mvmd *d)
{
	sweep_sockets(d);
	sweep_orphans(d);
	sweep_vm_dirs(d);
}
