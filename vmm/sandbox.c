/* SPDX-License-Identifier: MIT */
/*
 * The worker's lockdown (docs/security.md, "Worker sandbox").  By the time
 * sandbox_enter() runs, the VM is built: /dev/kvm, the VM and vCPU fds, the
 * kvm_run mappings, guest memory, the console and log, disks and TAPs are
 * all open (step 2 of the issue is the VMM's own setup).  What is left is to
 * throw away everything else the process could reach, in an order where
 * each step still has the privilege it needs and no longer needs what the
 * steps before it removed.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

#include "proto/proto.h"
#include "vmm/sandbox.h"
#include "vmm/seccomp_policy.h"
#include "util/util.h"

/* Inherited fds are those open when the process started; mvm-vmm's own
 * are all opened later.  Numbers past this are closed wholesale. */
#define FD_SCAN_MAX 1024
#define NOFILE_MARGIN 16        /* fds still opened after lockdown (signalfd) */
#define FSIZE_MARGIN (1u << 20) /* stderr may still grow a little */
/* Threads of our uid besides ours and the vCPUs: KVM's per-VM worker
 * (kvm-nx-lpage-recovery, since 6.13 a vhost task cloned from this
 * process on the first KVM_RUN and counted against RLIMIT_NPROC), and a
 * thread of a predecessor with this uid that is still being torn down. */
#define NPROC_MARGIN 2
#define BPF_MAX_INSNS 4096      /* the kernel's BPF_MAXINSNS */

/* What the steps need besides the options. */
struct lockdown {
	const struct sandbox_config *cfg;
	const struct vm_config *vm;
	int control_fd;
	unsigned nvcpus;        /* threads vm_run() still starts */
	uint64_t log_max;       /* the serial log never grows past this */
	pid_t outer_pid;        /* our pid on the host (getpid() is 1 here) */
	bool landlock;          /* a Landlock domain instead of a network namespace */
};

static unsigned char inherited[FD_SCAN_MAX / 8];
static int report_fd = -1;
/* Run by hand: a pidfd for the process sandbox_enter_pidns() left waiting,
 * whose death ends us too; -1 when mvmd started us (workers outlive it). */
static int waiter_pidfd = -1;
static struct sock_filter vcpu_insns[BPF_MAX_INSNS];
static struct sock_fprog vcpu_prog;

/* Runs before main(): the only moment the inherited fds can be told apart
 * from the ones the VMM opens. */
__attribute__((constructor)) static void note_inherited_fds(void)
{
	int fd;

	for (fd = 3; fd < FD_SCAN_MAX; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			inherited[fd / 8] |= (unsigned char)(1u << (fd % 8));
}

static int parse_id(const char *arg, unsigned *ret)
{
	uint64_t v;

	/* never 0 (root) nor the overflow id 2^32 - 1 */
	if (util_parse_uint(arg, 1, 0xfffffffeULL, &v) < 0)
		return -EINVAL;
	*ret = (unsigned)v;
	return 0;
}

/*
 * --sandbox-dir DIR must be spelled as the paths under it are (a vsock
 * uds=DIR/vsock.sock): absolute, no "." or ".." or empty components,
 * no trailing slash, so mirroring it below the new root keeps every such
 * path valid inside.
 */
static int check_dir(const char *dir)
{
	const char *p;

	if (dir[0] != '/' || !dir[1] || strlen(dir) >= PATH_MAX / 2)
		return -EINVAL;
	for (p = dir; *p; p++) {
		if (*p != '/')
			continue;
		if (p[1] == '/' || p[1] == '\0' || (p[1] == '.' && (p[2] == '/' || !p[2])) ||
		    (p[1] == '.' && p[2] == '.' && (p[3] == '/' || !p[3])))
			return -EINVAL;
	}
	return 0;
}

int sandbox_parse_option(struct sandbox_config *cfg, int c, const char *arg, const char **ret_why)
{
	unsigned id;

	switch (c) {
	case SANDBOX_OPT_ENABLE: cfg->enabled = true; return 1;
	case SANDBOX_OPT_DIR:
		if (check_dir(arg) < 0) {
			*ret_why = "--sandbox-dir takes an absolute path without '.', '..', '//' "
			           "or a trailing '/'";
			return -EINVAL;
		}
		cfg->dir = arg;
		return 1;
	case SANDBOX_OPT_UID:
	case SANDBOX_OPT_GID:
		if (parse_id(arg, &id) < 0) {
			*ret_why = "--sandbox-uid and --sandbox-gid take a non-zero id";
			return -EINVAL;
		}
		if (c == SANDBOX_OPT_UID)
			cfg->uid = id, cfg->have_uid = true;
		else
			cfg->gid = id, cfg->have_gid = true;
		return 1;
	case SANDBOX_OPT_CGROUP:
		if (cfg->ncgroups == SANDBOX_CGROUPS_MAX) {
			*ret_why = "too many --cgroup-procs";
			return -EINVAL;
		}
		cfg->cgroup_procs[cfg->ncgroups++] = arg;
		return 1;
	case SANDBOX_OPT_LEASE_FD:
		if (parse_id(arg, &id) < 0 || id < 3 || id >= FD_SCAN_MAX ||
		    cfg->nkeep == SANDBOX_KEEP_FDS_MAX) {
			*ret_why = "--sandbox-lease-fd takes an inherited fd from 3 to 1023";
			return -EINVAL;
		}
		cfg->keep_fds[cfg->nkeep++] = (int)id;
		cfg->have_lease = true;
		return 1;
	case SANDBOX_OPT_TEST_FORBIDDEN: cfg->test_forbidden_syscall = true; return 1;
	case SANDBOX_OPT_TEST_NETNS: cfg->test_netns = true; return 1;
	case SANDBOX_OPT_TEST_ABSTRACT: cfg->test_abstract = arg; return 1;
	default: return 0;
	}
}

/* The inherited fds the running VM still uses: the daemon link, TAPs and
 * disks handed over by number (virtio_devs takes those fds over). */
static bool is_kept(const struct lockdown *l, int fd)
{
	const struct virtio_devs_config *v = &l->vm->virtio;
	unsigned i;

	if (fd == l->control_fd)
		return true;
	for (i = 0; i < l->cfg->nkeep; i++)
		if (l->cfg->keep_fds[i] == fd)
			return true;
	for (i = 0; i < v->nnics; i++)
		if (v->nics[i].fd == fd)
			return true;
	for (i = 0; i < v->ndisks; i++)
		if (util_proc_fd_number(v->disks[i].path) == fd)
			return true;
	return false;
}

/* All of the environment goes but the VMM's own debug switches (vcpu.c
 * and vm.c read them later): flags, never secrets. */
static int clear_environment(void)
{
	static const char *const keep[] = { "MVM_DEBUG", "MVM_VIRTIO_STATS" };
	char *val[sizeof(keep) / sizeof(keep[0])] = { NULL };
	unsigned i;
	int r = 0;

	for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++)
		if (getenv(keep[i]) && !(val[i] = strdup(getenv(keep[i]))))
			r = -ENOMEM;
	if (r == 0 && clearenv())
		r = -ENOMEM;
	for (i = 0; i < sizeof(keep) / sizeof(keep[0]); i++) {
		if (r == 0 && val[i] && setenv(keep[i], val[i], 1) < 0)
			r = -errno;
		free(val[i]);
	}
	return r;
}

/* Step 1.  Safe now: everything mvm-vmm needs was opened by number above
 * the inherited ones, and the kernel and initrd passed as /proc/self/fd/N
 * were read into guest memory already. */
static int close_inherited(const struct lockdown *l)
{
	int fd;

	for (fd = 3; fd < FD_SCAN_MAX; fd++)
		if ((inherited[fd / 8] & (1u << (fd % 8))) && !is_kept(l, fd))
			close(fd);
	if (close_range(FD_SCAN_MAX, ~0u, 0) < 0 && errno != ENOSYS)
		return -errno;
	return clear_environment();
}

/* The id a worker run by hand takes by default; set by take_lease. */
static unsigned default_id;

/* Step 1b, while the host's /run is still there.  Run by hand without
 * --sandbox-uid, the worker leases its uid as mvmd does, in the same
 * directory: two of them, or one and mvmd, never share a uid.  The lease
 * fd is ours (not inherited) and stays open until we exit. */
static int take_lease(const struct lockdown *l)
{
	unsigned first = (unsigned)l->outer_pid % SANDBOX_ID_SPAN, i;
	char why[512];
	int dfd, fd = -EWOULDBLOCK;

	if (l->cfg->have_lease && !l->cfg->have_uid) {
		fprintf(stderr, "mvm-vmm: --sandbox-lease-fd needs the --sandbox-uid it leases\n");
		return -EINVAL;
	}
	if (l->cfg->have_uid)
		return 0;
	dfd = uid_lease_dir_open(UID_LEASE_DIR_DEFAULT, why, sizeof(why));
	if (dfd < 0) {
		fprintf(stderr, "mvm-vmm: %s\n", why);
		return dfd;
	}
	for (i = 0; i < SANDBOX_ID_SPAN && fd == -EWOULDBLOCK; i++) {
		default_id = SANDBOX_ID_BASE + (first + i) % SANDBOX_ID_SPAN;
		fd = uid_lease_take(dfd, default_id);
	}
	close(dfd);
	if (fd == -EWOULDBLOCK) {
		fprintf(stderr, "mvm-vmm: every uid from %u to %u is leased in %s; "
		        "pass --sandbox-uid and --sandbox-gid\n", SANDBOX_ID_BASE,
		        SANDBOX_ID_BASE + SANDBOX_ID_SPAN - 1, UID_LEASE_DIR_DEFAULT);
		return -EUSERS;
	}
	return fd < 0 ? fd : 0;
}

/* Step 5, done before step 3: the cgroup.procs paths live on the host
 * filesystem, which the worker can no longer see once it chroots. */
static int join_cgroups(const struct lockdown *l)
{
	const struct sandbox_config *cfg = l->cfg;
	unsigned i;
	int r;

	/* "0" is the writer itself, whatever PID namespace it is in */
	for (i = 0; i < cfg->ncgroups; i++)
		if ((r = util_write_file(cfg->cgroup_procs[i], "0\n")) < 0)
			return r;
	return 0;
}

/* An empty tmpfs on dir (in this private namespace only, so nothing is
 * left behind on the host); nr_inodes bounds what it can ever hold. */
static int mount_empty(const char *dir)
{
	if (mount("mvm-sandbox", dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
	          "size=4k,nr_inodes=2,mode=0555") < 0)
		return -errno;
	return 0;
}

static int remount_ro(const char *path)
{
	return mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV |
	             MS_NOEXEC, NULL) < 0 ? -errno : 0;
}

/*
 * The new root on dir: with keep, dir itself, bound onto itself read-only
 * (the vsock device then dials its `<uds>_PORT` host listeners by their
 * path inside dir: virtio_devs_rebase); else an empty tmpfs.  Not a tmpfs
 * holding dir at its own path, as before: every superblock registers a
 * shrinker that every memory cgroup on the host keeps a slot for, and the
 * kernel never gives those slots back, so one superblock per worker cost
 * each VM's cgroup 1 KiB per 32 workers alive (260 KiB per VM at 8,000
 * VMs, and for every cgroup made after, until the host reboots).  A bind
 * mount shares dir's superblock.
 */
static int make_root(const char *dir, bool keep)
{
	int r;

	if (!keep)
		r = mount_empty(dir);
	else
		r = mount(dir, dir, NULL, MS_BIND, NULL) < 0 ? -errno : 0;
	return r < 0 ? r : remount_ro(dir);
}

/*
 * Step 3.  The PID namespace is not unshared here: once a process's
 * pid_for_children differs from its own namespace the kernel refuses it
 * CLONE_THREAD (copy_process), so vm_run() could not start the vCPU
 * threads, and forking into it afterwards is no way out because KVM binds a
 * VM to the mm that created it.  So the process is born as the init of a
 * new PID namespace: mvmd clones it so (daemon/spawn.c), and run by hand
 * sandbox_enter_pidns() forked it so before anything was opened.  Here we
 * only check it: the worker sees no other process, and when it ends the
 * kernel kills whatever might still be in its namespace.
 *
 * No IPC namespace: creating one mounts an mqueue superblock, whose cost
 * grows with the fleet (make_root), and it would guard nothing the
 * seccomp filters leave open: they allow no SysV IPC or POSIX message
 * queue call, and /dev/shm is not in the root.
 *
 * CLONE_NEWNET only where Landlock cannot scope abstract Unix sockets
 * (l->landlock, step 4c): a network namespace costs 85-90 KiB of kernel
 * memory and 0.6 ms per start.  It works even with a TAP: the TAP fd stays
 * bound to its device in the host namespace, and reads and writes on an
 * open fd never look the namespace up again.
 */
static int enter_namespaces(const struct lockdown *l)
{
	const char *dir = l->cfg->dir ? l->cfg->dir : SANDBOX_DIR_DEFAULT;
	int r;

	if (getpid() != 1)
		return -ESRCH;  /* not the init of its own PID namespace */
	if (unshare(CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWCGROUP |
	            (l->landlock ? 0 : CLONE_NEWNET)) < 0)
		return -errno;
	/* Nothing mounted from here on may propagate back to the host. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
		return -errno;
	if ((r = make_root(dir, l->cfg->dir != NULL)) < 0)
		return r;
	if (chdir(dir) < 0)
		return -errno;
	/* Move the new root over "/" and make it our root.  Not pivot_root:
	 * that walks every task on the host to repoint those whose root or
	 * cwd is the old one (chroot_fs_refs), 1.3-1.5 ms per start at
	 * 500-1,000 VMs.  The old tree stays beneath, unreachable: ".." at
	 * our root stays there, no fd to a host directory is left, and from
	 * step 4 on we hold no CAP_SYS_CHROOT nor CAP_SYS_ADMIN and seccomp
	 * forbids chroot, mount and fchdir and answers openat with ENOENT
	 * (docs/security.md, "Worker sandbox"). */
	if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
		return -errno;
	if (chroot(".") < 0 || chdir("/") < 0)
		return -errno;
	return 0;
}

/*
 * Landlock, spelled out here: the build host's <linux/landlock.h> may
 * predate the net and scope fields (Linux 6.7 and 6.12).  The kernel takes
 * the attribute's size, so one built for ABI 6 works on any later kernel.
 */
struct ll_ruleset_attr {
	uint64_t handled_access_fs;
	uint64_t handled_access_net;
	uint64_t scoped;
};

#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#define __NR_landlock_restrict_self 446
#endif
#define LL_CREATE_RULESET_VERSION (1u << 0)
#define LL_ABI_SCOPES 6
/* Every filesystem right of ABI 6 (EXECUTE .. IOCTL_DEV, bits 0-15). */
#define LL_ACCESS_FS_ALL ((1ULL << 16) - 1)
#define LL_ACCESS_NET_BIND_TCP (1ULL << 0)
#define LL_ACCESS_NET_CONNECT_TCP (1ULL << 1)
#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ULL << 0)
#define LL_SCOPE_SIGNAL (1ULL << 1)

/* The kernel's Landlock ABI: 0 where it is not built in or not enabled. */
static int landlock_abi(void)
{
	long v = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);

	return v < 0 ? 0 : (int)v;
}

/*
 * Step 4c, after no_new_privs (which landlock_restrict_self() needs
 * without CAP_SYS_ADMIN) and before seccomp, whose filter has no landlock
 * calls.  What the network namespace stopped, and what of it is left to
 * stop (docs/security.md, "Worker sandbox"): connecting or sending to the
 * host's abstract Unix sockets.  The domain adds, with no rule granting
 * anything: no signal leaves it, no file is opened, made, renamed,
 * truncated or ioctl'd by path, no TCP port is bound or dialled.  fds
 * opened before keep all their rights (guest memory, /dev/kvm, disks,
 * TAPs), and connect() to the vsock listeners in the per-VM directory is
 * not a filesystem access Landlock governs in ABI 6-7.  The vCPU threads
 * are started later and inherit the domain.
 */
static int enter_landlock(const struct lockdown *l)
{
	struct ll_ruleset_attr attr = {
		.handled_access_fs = LL_ACCESS_FS_ALL,
		.handled_access_net = LL_ACCESS_NET_BIND_TCP | LL_ACCESS_NET_CONNECT_TCP,
		.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL,
	};
	int fd, r = 0;

	if (!l->landlock)
		return 0;
	fd = (int)syscall(__NR_landlock_create_ruleset, &attr, sizeof(attr), 0);
	if (fd < 0)
		return -errno;
	if (syscall(__NR_landlock_restrict_self, fd, 0) < 0)
		r = -errno;
	close(fd);
	return r;
}

/* Ambient and bounding sets first: dropping them needs CAP_SETPCAP, which
 * the uid change below takes away. */
static int drop_capability_sets(void)
{
	int cap;

	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
		return -errno;
	for (cap = 0; cap < 64; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			if (errno == EINVAL)
				break;  /* past the kernel's last capability */
			return -errno;
		}
	return 0;
}

static int clear_capabilities(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	return syscall(SYS_capset, &hdr, data) < 0 ? -errno : 0;
}

/* Die with the waiting parent (run by hand only): set PR_SET_PDEATHSIG,
 * then make sure the parent did not die before (its pidfd is readable). */
static int die_with_waiter(void)
{
	struct pollfd p = { .fd = waiter_pidfd, .events = POLLIN };

	if (waiter_pidfd < 0)
		return 0;
	if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
		return -errno;
	return poll(&p, 1, 0) != 0 ? -ESRCH : 0;
}

/* The uid change cleared PR_SET_PDEATHSIG: set it for good. */
static int rearm_parent_death(void)
{
	int r = die_with_waiter();

	if (waiter_pidfd >= 0)
		close(waiter_pidfd);
	waiter_pidfd = -1;
	return r;
}

/* Step 4a.  After the mounts: mount needed CAP_SYS_ADMIN, chroot
 * CAP_SYS_CHROOT. */
static int drop_privileges(const struct lockdown *l)
{
	const struct sandbox_config *cfg = l->cfg;
	uid_t uid = cfg->have_uid ? cfg->uid : default_id;
	gid_t gid = cfg->have_gid ? cfg->gid : cfg->have_uid ? cfg->uid : default_id;
	int r;

	if ((r = drop_capability_sets()) < 0)
		return r;
	if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
		return -errno;
	/* setresuid() cleared the permitted and effective sets; inheritable
	 * survives a uid change, so clear all three explicitly. */
	if ((r = clear_capabilities()) < 0)
		return r;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
		return -errno;
	return rearm_parent_death();
}

static int set_limit(int resource, rlim_t v)
{
	struct rlimit rl = { v, v };

	return setrlimit(resource, &rl) < 0 ? -errno : 0;
}

/* The highest open fd and the largest writable regular file (disks, the
 * serial log, a log on stderr). */
static void scan_fds(int *ret_max_fd, uint64_t *ret_max_size)
{
	struct stat st;
	int fd, fl;

	*ret_max_fd = 2;
	*ret_max_size = 0;
	for (fd = 0; fd < FD_SCAN_MAX; fd++) {
		fl = fcntl(fd, F_GETFL);
		if (fl < 0)
			continue;
		*ret_max_fd = fd;
		if ((fl & O_ACCMODE) != O_RDONLY && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
		    (uint64_t)st.st_size > *ret_max_size)
			*ret_max_size = (uint64_t)st.st_size;
	}
}

/* Step 4b.  NPROC counts threads of the uid: room for the main thread,
 * the vCPU threads vm_run() still starts, one spare and NPROC_MARGIN.  A
 * write past FSIZE fails with EFBIG instead of killing the VM with SIGXFSZ. */
static int set_rlimits(const struct lockdown *l)
{
	uint64_t fsize;
	int max_fd, r;

	scan_fds(&max_fd, &fsize);
	if (l->log_max > fsize)
		fsize = l->log_max;
	signal(SIGXFSZ, SIG_IGN);
	if ((r = set_limit(RLIMIT_NOFILE, (rlim_t)max_fd + 1 + NOFILE_MARGIN)) < 0 ||
	    (r = set_limit(RLIMIT_NPROC, (rlim_t)l->nvcpus + 2 + NPROC_MARGIN)) < 0 ||
	    (r = set_limit(RLIMIT_FSIZE, (rlim_t)(fsize + FSIZE_MARGIN))) < 0 ||
	    (r = set_limit(RLIMIT_CORE, 0)) < 0 ||
	    (r = set_limit(RLIMIT_MEMLOCK, 0)) < 0)
		return r;
	return 0;
}

/* Async-signal-safe decimal formatting for the SIGSYS report. */
static size_t put_uint(char *p, unsigned v)
{
	char tmp[12];
	size_t n = 0, i;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10) != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

static size_t put_str(char *p, const char *s)
{
	size_t n = strlen(s);

	memcpy(p, s, n);
	return n;
}

/*
 * A call outside the allowlist traps here (SECCOMP_RET_TRAP) instead of
 * killing outright, so the daemon learns which call it was: one link line
 * {"msg":"seccomp","nr":N} and one stderr line, then death by SIGSYS.  The
 * syscall itself never ran.  Death comes from kill(), which the filter
 * answers with SECCOMP_RET_KILL_PROCESS: the init of a PID namespace
 * cannot end itself with a signal it sends (the kernel drops it), but a
 * seccomp kill is forced.
 */
static void sigsys_handler(int sig, siginfo_t *si, void *uc)
{
	char msg[96];
	size_t n = 0;
	unsigned nr = (unsigned)si->si_syscall;

	n += put_str(msg + n, "{\"msg\":\"seccomp\",\"nr\":");
	n += put_uint(msg + n, nr);
	n += put_str(msg + n, "}\n");
	if (report_fd >= 0 && write(report_fd, msg, n) < 0) {
		/* The link is gone or full: stderr still has it. */
	}
	n = put_str(msg, "mvm-vmm: seccomp violation (syscall ");
	n += put_uint(msg + n, nr);
	n += put_str(msg + n, "): killed\n");
	if (write(STDERR_FILENO, msg, n) < 0) {
		/* Nothing else to tell it to. */
	}
	syscall(SYS_kill, 0, SIGSYS);
	_exit(128 + SIGSYS);    /* not reached: kill() is a seccomp kill */
}

/* The vCPU program is compiled now, while libseccomp may still allocate and
 * use pipes, and loaded by each vCPU thread with one seccomp() call. */
static int compile_vcpu_filter(pid_t self)
{
	scmp_filter_ctx ctx;
	ssize_t n;
	int p[2], r;

	r = seccomp_policy_build(SECCOMP_CLASS_VCPU, SCMP_ACT_TRAP, self, &ctx);
	if (r < 0)
		return r;
	if (pipe2(p, O_CLOEXEC) < 0) {
		seccomp_release(ctx);
		return -errno;
	}
	r = seccomp_export_bpf(ctx, p[1]);
	seccomp_release(ctx);
	close(p[1]);
	n = r < 0 ? -1 : read(p[0], vcpu_insns, sizeof(vcpu_insns));
	if (r == 0 && n < 0)
		r = -errno;
	close(p[0]);
	if (r < 0)
		return r;
	if (n <= 0 || n % (ssize_t)sizeof(vcpu_insns[0]) || n == (ssize_t)sizeof(vcpu_insns))
		return -E2BIG;
	vcpu_prog.len = (unsigned short)(n / (ssize_t)sizeof(vcpu_insns[0]));
	vcpu_prog.filter = vcpu_insns;
	return 0;
}

/* Step 6.  Last: every step before needed calls the filter forbids. */
static int install_filters(const struct lockdown *l)
{
	struct sigaction sa = { .sa_sigaction = sigsys_handler,
	                        .sa_flags = SA_SIGINFO | SA_RESETHAND };
	scmp_filter_ctx ctx;
	pid_t self = getpid();
	int r;

	report_fd = l->control_fd;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSYS, &sa, NULL) < 0)
		return -errno;
	if ((r = compile_vcpu_filter(self)) < 0)
		return r;
	r = seccomp_policy_build(SECCOMP_CLASS_MAIN, SCMP_ACT_TRAP, self, &ctx);
	if (r < 0)
		return r;
	/* TSYNC: any thread that exists (none should) gets the filter too. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (r == 0)
		r = seccomp_load(ctx);
	seccomp_release(ctx);
	/* libseccomp's scratch doubled the heap (136 -> 270 KiB, ~95 in use
	 * after): give the free part back, or every worker keeps it dirty. */
	malloc_trim(0);
	return r;
}

/* Test hook: what a taken-over worker gets when it dials a host abstract
 * Unix socket; the kernel must refuse it (EPERM from Landlock's scope,
 * ECONNREFUSED from an empty network namespace). */
static void test_abstract_connect(const char *name)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n = strlen(name);
	int fd, r;

	if (n >= sizeof(sa.sun_path))
		n = sizeof(sa.sun_path) - 1;
	memcpy(sa.sun_path + 1, name, n);  /* sun_path[0] = 0: abstract */
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	r = fd < 0 ? -errno : connect(fd, (struct sockaddr *)&sa,
	                             (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n));
	fprintf(stderr, "mvm-vmm: test: connect to abstract @%.*s: %s\n", (int)n, name,
	        r == 0 ? "connected" : strerror(fd < 0 ? -r : errno));
	if (fd >= 0)
		close(fd);
}

int sandbox_enter(const struct sandbox_config *cfg, const struct vm_config *vm,
                  int control_fd, const char **ret_step)
{
	static const struct {
		const char *name;
		int (*fn)(const struct lockdown *l);
	} steps[] = {
		{ "close inherited fds", close_inherited },
		{ "lease a uid", take_lease },
		{ "join cgroups", join_cgroups },
		{ "enter namespaces and empty root", enter_namespaces },
		{ "drop uid, gid and capabilities", drop_privileges },
		{ "enter a Landlock domain", enter_landlock },
		{ "set resource limits", set_rlimits },
		{ "install seccomp filters", install_filters },
	};
	struct lockdown l = {
		.cfg = cfg, .vm = vm, .control_fd = control_fd, .nvcpus = vm->nvcpus,
		.log_max = vm->serial_log_max ? vm->serial_log_max : VM_SERIAL_LOG_MAX_DEFAULT,
		.outer_pid = util_proc_outer_pid(),  /* /proc is still there */
		.landlock = !cfg->test_netns && landlock_abi() >= LL_ABI_SCOPES,
	};
	unsigned i;
	int r;

	if (!cfg->enabled)
		return 0;
#if defined(__SANITIZE_ADDRESS__)
	/* LeakSanitizer's exit check needs /proc and ptrace, both gone after
	 * the lockdown: run it now (it covers setup) and skip it at exit. */
	__lsan_do_leak_check();
#endif
	for (i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		r = steps[i].fn(&l);
		if (r < 0) {
			*ret_step = steps[i].name;
			return r;
		}
	}
	if (cfg->test_forbidden_syscall) {
		/* Test hook: must die here by SIGSYS, reporting socket. */
		syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
		*ret_step = "test: a forbidden syscall survived";
		return -EPERM;
	}
	if (cfg->test_abstract)
		test_abstract_connect(cfg->test_abstract);
	return 0;
}

int sandbox_enter_vcpu(unsigned id)
{
	char name[16];

	/* The thread names itself: naming it from outside opens
	 * /proc/self/task/N/comm, which the sandbox's root does not have. */
	snprintf(name, sizeof(name), "vcpu%u", id);
	prctl(PR_SET_NAME, name, 0, 0, 0);
	if (!vcpu_prog.len)
		return 0;
	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &vcpu_prog) < 0 ? -errno : 0;
}

/*
 * Run by hand (not PID 1): split off the worker as the init of a new PID
 * namespace, before anything is opened or any thread exists.  This process
 * stays behind as its waiter, like `unshare --pid --fork`: it passes the
 * stop signals on and ends as the worker did.  It keeps no fds, makes no
 * threads (the namespace change would forbid them) and never returns.  The
 * worker dies with it (PR_SET_PDEATHSIG, re-armed after the uid change).
 */
static void __attribute__((noreturn)) wait_for_worker(pid_t child)
{
	siginfo_t si;
	sigset_t set;
	int st, sig;

	syscall(SYS_close_range, 3, ~0U, 0);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	for (const int *p = proto_vmm_stop_signals; *p; p++)
		sigaddset(&set, *p);
	for (;;) {
		if (sigwaitinfo(&set, &si) < 0)
			continue;
		if (si.si_signo != SIGCHLD) {
			kill(child, si.si_signo);
			continue;
		}
		if (waitpid(child, &st, WNOHANG) == child)
			break;
	}
	/* As the worker ended: its own death by a signal, or the 128 + N it
	 * exits with because as a namespace init it could not die by N. */
	sig = WIFSIGNALED(st) ? WTERMSIG(st) : proto_exit_signal(WEXITSTATUS(st));
	if (!sig)
		_exit(WEXITSTATUS(st));
	prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);  /* its core, if any, was the worker's */
	signal(sig, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, sig);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	raise(sig);
	_exit(128 + sig);
}

int sandbox_enter_pidns(const struct sandbox_config *cfg)
{
	sigset_t chld, old;
	pid_t child;
	int fd, r;

	if (!cfg->enabled || getpid() == 1)
		return 0;
	/* SIGCHLD waits in the mask, so a worker that dies at once is seen. */
	sigemptyset(&chld);
	sigaddset(&chld, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld, &old);
	fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
	if (fd >= 0 && unshare(CLONE_NEWPID) == 0) {
		fflush(NULL);
		child = fork();
		if (child > 0)
			wait_for_worker(child);
		if (child == 0) {
			sigprocmask(SIG_SETMASK, &old, NULL);
			waiter_pidfd = fd;
			return die_with_waiter();
		}
	}
	r = -errno;
	if (fd >= 0)
		close(fd);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return r;
}
