/* SPDX-License-Identifier: MIT */
/*
 * The worker's seccomp allowlists as data.  Each row allows one syscall,
 * optionally only when its arguments match (rows for the same syscall are
 * alternatives).  Every row was found by running the test-guest scenarios
 * under `strace -f` after the lockdown point and says who needs it; a call
 * missing here kills the worker (sandbox.c reports which).  Keep the tables
 * short: each entry is attack surface a hostile guest can reach through a
 * bug in a device model.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <linux/kvm.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <termios.h>

/* The type bits of socket()'s second argument, without the flags. */
#define SOCK_TYPE_MASK 0xf

#include "vmm/seccomp_policy.h"

/* Stands for the worker's own pid in a rule's datum; filled in at build. */
#define SELF_PID 0xfffffffffffff00dULL

struct arg_rule {
	unsigned arg;
	enum scmp_compare op;
	uint64_t a, b;
};

struct seccomp_rule {
	const char *name;
	uint32_t action;             /* 0: allow; else an SCMP_ACT_* value */
	unsigned nargs;
	struct arg_rule args[2];
};

#define ALLOW(n) { .name = n }
#define ALLOW_IF(n, i, o, x, y) { .name = n, .nargs = 1, .args = { { i, o, x, y } } }
#define ALLOW_IF2(n, i, o, x, y, j, p, v, w) \
	{ .name = n, .nargs = 2, .args = { { i, o, x, y }, { j, p, v, w } } }
/* ioctl's request is an unsigned int in the kernel: compare 32 bits only. */
#define IOCTL(req) ALLOW_IF("ioctl", 1, SCMP_CMP_MASKED_EQ, 0xffffffffu, (req))
#define NO_EXEC(n) ALLOW_IF(n, 2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0)
/* The futex command without its private and clock flags. */
#define FUTEX(cmd) ALLOW_IF("futex", 1, SCMP_CMP_MASKED_EQ, (uint32_t)FUTEX_CMD_MASK, (cmd))
#define END { .name = NULL }

/*
 * Main thread: the epoll loop (serial input, the daemon link, virtio
 * queues and backends), vCPU thread creation in vm_run(), and teardown.
 * The filter loaded on it is this table plus vcpu_rules (see
 * seccomp_policy_build()).
 */
static const struct seccomp_rule main_rules[] = {
	ALLOW("epoll_wait"),              /* loop_run() */
	ALLOW("epoll_ctl"),               /* fds added and dropped while running */
	ALLOW("read"),                    /* stdin, eventfds, signalfd, control link, TAP */
	ALLOW("write"),                   /* stdout, eventfds, irqfds, control link, stderr */
	ALLOW("writev"),                  /* virtio-net: frames to the TAP */
	ALLOW("readv"),                   /* virtio-vsock: host socket input */
	ALLOW("preadv"),                  /* virtio-blk reads (queues run on the loop) */
	ALLOW("pwritev"),                 /* virtio-blk writes */
	ALLOW("fdatasync"),               /* virtio-blk flush */
	ALLOW("getrandom"),               /* virtio-rng */
	ALLOW("close"),                   /* dropped link, vsock connections, teardown */
	ALLOW("poll"),                    /* control: flush the exit message */
	ALLOW("eventfd2"),                /* console_attach(): serial input wake-up */
	ALLOW("timerfd_settime"),         /* virtio-blk/net: resume after a rate limit */
	/* main.c's run(): a new signalfd (fd -1) only, never re-arming another. */
	ALLOW_IF("signalfd4", 0, SCMP_CMP_MASKED_EQ, 0xffffffffu, 0xffffffffu),
	IOCTL(KVM_IRQ_LINE),              /* serial interrupts raised by console input */
	IOCTL(KVM_GET_CLOCK),             /* vm_pause(): kvmclock held over a pause */
	IOCTL(KVM_SET_CLOCK),             /* vm_resume() */
	IOCTL(TCGETS),                    /* console: is stdin a terminal */
	IOCTL(TCSETSF),                   /* console: raw mode on, restored at exit */
	/* virtio-vsock: host connections in, guest connections out.  Only
	 * Unix stream sockets can be made, and connect() can only reach the
	 * sockets in the per-VM directory, the one host path the sandbox's
	 * root holds (--sandbox-dir; see security.md). */
	ALLOW("accept4"),                 /* also control.c: a daemon re-adopts the worker */
	/* control.c: the adopting daemon's uid (SO_PEERCRED), nothing else */
	ALLOW_IF2("getsockopt", 1, SCMP_CMP_EQ, SOL_SOCKET, 0, 2, SCMP_CMP_EQ, SO_PEERCRED, 0),
	ALLOW_IF2("socket", 0, SCMP_CMP_EQ, AF_UNIX, 0, 1, SCMP_CMP_MASKED_EQ, SOCK_TYPE_MASK,
	          SOCK_STREAM),
	ALLOW("connect"),
	ALLOW("recvfrom"),
	ALLOW("sendmsg"),
	ALLOW("shutdown"),
	/* pthread_setname_np() opens /proc/self/task/N/comm, and vsock teardown
	 * unlinks its socket: in the empty root no path exists, so answer as
	 * the filesystem would instead of killing the worker. */
	{ .name = "openat", .action = SCMP_ACT_ERRNO(ENOENT) },
	{ .name = "unlink", .action = SCMP_ACT_ERRNO(ENOENT) },
	ALLOW("brk"),                     /* malloc */
	NO_EXEC("mmap"),                  /* malloc, thread stacks; never executable */
	NO_EXEC("mprotect"),              /* thread stacks made writable past the guard */
	ALLOW("munmap"),                  /* free, thread stacks, kvm_run at teardown */
	/* vm_run(): threads only, never a new process. */
	ALLOW_IF("clone", 0, SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD),
	/* clone3's flags sit in memory seccomp cannot read: glibc falls back to
	 * clone() on ENOSYS, whose flags are checked above. */
	{ .name = "clone3", .action = SCMP_ACT_ERRNO(ENOSYS) },
	ALLOW("set_robust_list"),         /* a new thread's glibc start-up */
	ALLOW("rseq"),                    /* a new thread's glibc start-up */
	FUTEX(FUTEX_WAIT),                /* mutexes, condvars, pthread_join */
	FUTEX(FUTEX_WAKE),
	FUTEX(FUTEX_WAIT_BITSET),
	ALLOW("rt_sigprocmask"),          /* pthread_create, raise */
	/* vcpu_signals_init() and die_by_signal(); never SIGSYS, so the
	 * violation report cannot be replaced or ignored. */
	ALLOW_IF("rt_sigaction", 0, SCMP_CMP_NE, SIGSYS, 0),
	ALLOW("rt_sigreturn"),            /* end of any signal handler */
	ALLOW("getpid"),                  /* raise(), pthread_kill() */
	ALLOW("gettid"),                  /* raise() */
	ALLOW_IF("tgkill", 0, SCMP_CMP_EQ, SELF_PID, 0), /* vcpu_kick(), raise(): own threads */
	/* The SIGSYS handler's last call, on any thread (the strictest action
	 * of the stacked filters wins): a PID namespace's init cannot signal
	 * itself to death, but a seccomp kill is forced.  Nothing else in
	 * mvm-vmm calls kill(). */
	{ .name = "kill", .action = SCMP_ACT_KILL_PROCESS },
	/* vCPU threads add their own filter; a filter can only narrow. */
	ALLOW_IF("seccomp", 0, SCMP_CMP_EQ, SECCOMP_SET_MODE_FILTER, 0),
	/* A vCPU thread names itself before loading its own filter. */
	ALLOW_IF("prctl", 0, SCMP_CMP_EQ, PR_SET_NAME, 0),
	ALLOW("exit"),                    /* a thread ends */
	ALLOW("exit_group"),
	END,
};

/*
 * vCPU threads: KVM_RUN and what an exit handler does inline (port and MMIO
 * device registers, console output).  Virtio queues are not here: their
 * notifications are ioeventfds the main loop serves.  The main filter
 * applies as well, so a row here never widens it.
 */
static const struct seccomp_rule vcpu_rules[] = {
	IOCTL(KVM_RUN),
	IOCTL(KVM_IRQ_LINE),              /* serial and i8042 interrupts */
	IOCTL(KVM_GET_REGS),              /* rip for a fatal exit's message */
	IOCTL(KVM_SET_REGS),              /* finishing an insn the host's emulator cannot */
	IOCTL(KVM_GET_SREGS),             /* its CR0, CPL and code segment */
	IOCTL(KVM_GET_FPU),               /* fwait's x87 state */
	IOCTL(KVM_TRANSLATE),
	IOCTL(KVM_GET_VCPU_EVENTS),
	IOCTL(KVM_SET_VCPU_EVENTS),
	IOCTL(KVM_KVMCLOCK_CTRL),         /* after a pause: tell the guest it was stopped */
	ALLOW("write"),                   /* console output, eventfd wake-ups, stderr */
	ALLOW("read"),                    /* eventfd counters */
	ALLOW("pread64"),                 /* serial log shrink */
	ALLOW("pwrite64"),                /* serial log */
	ALLOW("ftruncate"),               /* serial log shrink */
	ALLOW("poll"),                    /* console: wait for a full output pipe */
	FUTEX(FUTEX_WAIT),                /* locks shared with the loop */
	FUTEX(FUTEX_WAKE),
	FUTEX(FUTEX_WAIT_BITSET),
	ALLOW("rt_sigreturn"),            /* after the kick signal's handler */
	ALLOW("rt_sigprocmask"),          /* glibc thread exit */
	/* thread exit frees its stack; on the main thread (whose filter has
	 * these rows too) virtio-balloon gives guest pages back */
	ALLOW_IF("madvise", 2, SCMP_CMP_EQ, MADV_DONTNEED, 0),
	NO_EXEC("mmap"),                  /* a first malloc() in this thread makes an arena */
	NO_EXEC("mprotect"),
	ALLOW("munmap"),
	ALLOW("exit"),
	ALLOW("exit_group"),
	END,
};

#if defined(__SANITIZE_ADDRESS__)
/*
 * AddressSanitizer's runtime, in both classes: its allocator maps and
 * returns shadow and chunk memory, each new thread gets an alternate signal
 * stack, and it reads the thread's stack bounds.  Only sanitizer builds
 * (CI's) carry these; release builds never do.
 */
static const struct seccomp_rule asan_rules[] = {
	NO_EXEC("mmap"),
	ALLOW("munmap"),
	ALLOW("madvise"),
	ALLOW("sigaltstack"),
	ALLOW("sched_yield"),             /* allocator spin locks */
	ALLOW("sched_getaffinity"),       /* thread start: stack bounds via pthread_getattr_np */
	ALLOW("getpid"),
	ALLOW("gettid"),
	ALLOW("rt_sigprocmask"),
	END,
};
#endif

static const struct seccomp_rule *class_rules(enum seccomp_class cls)
{
	return cls == SECCOMP_CLASS_VCPU ? vcpu_rules : main_rules;
}

static int add_rule(scmp_filter_ctx ctx, const struct seccomp_rule *r, pid_t self)
{
	struct scmp_arg_cmp cmp[2];
	int nr = seccomp_syscall_resolve_name(r->name);
	unsigned i;

	if (nr == __NR_SCMP_ERROR)
		return -ENOSYS;
	for (i = 0; i < r->nargs; i++) {
		cmp[i] = (struct scmp_arg_cmp){
			.arg = r->args[i].arg, .op = r->args[i].op,
			.datum_a = r->args[i].a == SELF_PID ? (uint64_t)self : r->args[i].a,
			.datum_b = r->args[i].b,
		};
	}
	return seccomp_rule_add_array(ctx, r->action ? r->action : SCMP_ACT_ALLOW, nr,
	                              r->nargs, cmp);
}

static int add_rules(scmp_filter_ctx ctx, const struct seccomp_rule *rules, pid_t self)
{
	int r;

	for (; rules->name; rules++) {
		r = add_rule(ctx, rules, self);
		/* The same unconditional row in two tables (sanitizer extras). */
		if (r == -EEXIST)
			continue;
		if (r < 0)
			return r;
	}
	return 0;
}

int seccomp_policy_build(enum seccomp_class cls, uint32_t default_action, pid_t self,
                         scmp_filter_ctx *ret)
{
	scmp_filter_ctx ctx = seccomp_init(default_action);
	int r;

	if (!ctx)
		return -ENOMEM;
	/* A 32-bit or x32 syscall would dodge every rule: kill on sight. */
	r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
	if (r == 0)
		r = add_rules(ctx, class_rules(cls), self);
	/* vCPU threads are created under the main thread's filter, and every
	 * filter must allow a call for it to run: the main one carries theirs. */
	if (r == 0 && cls == SECCOMP_CLASS_MAIN)
		r = add_rules(ctx, vcpu_rules, self);
#if defined(__SANITIZE_ADDRESS__)
	if (r == 0)
		r = add_rules(ctx, asan_rules, self);
#endif
	if (r < 0) {
		seccomp_release(ctx);
		return r;
	}
	*ret = ctx;
	return 0;
}

unsigned seccomp_policy_count(enum seccomp_class cls)
{
	const struct seccomp_rule *rules = class_rules(cls), *p, *q;
	unsigned n = 0;

	for (p = rules; p->name; p++) {
		for (q = rules; q != p && strcmp(q->name, p->name); q++)
			;
		n += q == p;
	}
	return n;
}
