/* SPDX-License-Identifier: MIT */
/*
 * mvm-vmm: runs one KVM microVM.  Parses options, builds the VM, runs it,
 * and turns the way it ended into the exit status (vmm.h).  This is the
 * layer that prints errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "vmm/control.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"
#include "vmm/arch/x86/layout.h"

#define PROG "mvm-vmm"

static void usage(FILE *f)
{
	fprintf(f,
"Usage: " PROG " --kernel IMG [options]\n"
"Run one KVM microVM with the guest's serial console on stdio.\n"
"\n"
"  -k, --kernel IMG          bzImage (64-bit boot protocol) or ELF (PVH note or 64-bit entry)\n"
"  -i, --initrd FILE         initial ramdisk\n"
"  -c, --cmdline STR         kernel command line\n"
"  -m, --mem SIZE            guest RAM, e.g. 512K, 128M, 1G or bytes (default 128M;\n"
"                            16M to 512G)\n"
"  -n, --vcpus N             number of vCPUs, 1 to 32 (default 1)\n"
"      --serial stdio|FILE   where COM1 output goes (default stdio: stdout, with\n"
"                            stdin as input; a terminal is put in raw mode)\n"
"      --serial-log FILE     also append COM1 output to FILE\n"
"      --serial-log-max SIZE keep the log at most SIZE bytes (default 1M); when full,\n"
"                            the oldest half is dropped\n"
"      --control-fd N        talk to mvmd over the socket on fd N (docs/protocol.md)\n"
"      --dump-acpi DIR       write the ACPI tables as DIR/<SIG>.dat and exit; needs\n"
"                            no KVM (--kernel is optional here)\n"
"  -h, --help                show this help\n"
"  -V, --version             show the version\n"
"\n"
"Exit status:\n"
"  0  the guest reset (i8042 0xFE) or powered off (ACPI S5)\n"
"  1  bad option or input file; nothing ran\n"
"  2  host-side failure (KVM, memory)\n"
"  3  guest triple fault\n"
"  4  KVM internal error (the message gives suberror and rip)\n"
"  5  failed VM entry, unhandled exit or emulation failure\n"
"  SIGINT, SIGTERM, SIGHUP stop the VM and end " PROG " by that signal.\n"
"Set MVM_DEBUG=1 to log (some) guest accesses to absent devices.\n");
}

struct options {
	struct vm_config cfg;
	const char *dump_dir;
	int control_fd;  /* daemon link (vmm/control.c); -1: none */
};

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs(PROG ": ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return VMM_EXIT_USAGE;
}

/* "128M", "1G", "512K", "4096": a K/M/G/T suffix (optionally "iB" or "B"),
 * nothing else after the digits, no overflow. */
static int parse_size(const char *s, uint64_t *ret)
{
	unsigned long long v;
	unsigned shift = 0;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -ERANGE;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	case 't': case 'T': shift = 40; end++; break;
	default: break;
	}
	if (shift && (!strcmp(end, "iB") || !strcmp(end, "B")))
		end += strlen(end);
	if (*end)
		return -EINVAL;
	if (shift && v > (~0ULL >> shift))
		return -ERANGE;
	*ret = v << shift;
	return 0;
}

static int parse_uint(const char *s, unsigned max, unsigned *ret)
{
	unsigned long v;
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || *end)
		return -EINVAL;
	if (v > max)
		return -ERANGE;
	*ret = (unsigned)v;
	return 0;
}

static int check_mem(const char *arg, uint64_t mem)
{
	if (mem < GUEST_MEM_MIN || mem > GUEST_MEM_MAX)
		return usage_error("--mem %s is out of range; use %lluM to %lluG",
		                   arg, GUEST_MEM_MIN >> 20, GUEST_MEM_MAX >> 30);
	return 0;
}

enum {
	OPT_SERIAL = 256, OPT_SERIAL_LOG, OPT_SERIAL_LOG_MAX, OPT_DUMP_ACPI, OPT_CONTROL_FD,
};

static const struct option long_opts[] = {
	{ "kernel", required_argument, NULL, 'k' },
	{ "initrd", required_argument, NULL, 'i' },
	{ "cmdline", required_argument, NULL, 'c' },
	{ "mem", required_argument, NULL, 'm' },
	{ "vcpus", required_argument, NULL, 'n' },
	{ "serial", required_argument, NULL, OPT_SERIAL },
	{ "serial-log", required_argument, NULL, OPT_SERIAL_LOG },
	{ "serial-log-max", required_argument, NULL, OPT_SERIAL_LOG_MAX },
	{ "dump-acpi", required_argument, NULL, OPT_DUMP_ACPI },
	{ "control-fd", required_argument, NULL, OPT_CONTROL_FD },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	{ NULL, 0, NULL, 0 },
};

/* Handles one option; returns -1 to go on, else the exit status. */
static int parse_one(int c, const char *arg, struct options *o)
{
	switch (c) {
	case 'k': o->cfg.kernel_path = arg; return -1;
	case 'i': o->cfg.initrd_path = arg; return -1;
	case 'c': o->cfg.cmdline = arg; return -1;
	case 'm':
		if (parse_size(arg, &o->cfg.mem_size) < 0)
			return usage_error("invalid --mem '%s'; use a size like 128M, 1G or bytes", arg);
		return check_mem(arg, o->cfg.mem_size) ? VMM_EXIT_USAGE : -1;
	case 'n':
		if (parse_uint(arg, VCPUS_MAX, &o->cfg.nvcpus) < 0 || o->cfg.nvcpus == 0)
			return usage_error("invalid --vcpus '%s'; use 1 to %d", arg, VCPUS_MAX);
		return -1;
	case OPT_SERIAL:
		o->cfg.serial_path = strcmp(arg, "stdio") ? arg : NULL;
		return -1;
	case OPT_SERIAL_LOG: o->cfg.serial_log_path = arg; return -1;
	case OPT_SERIAL_LOG_MAX:
		if (parse_size(arg, &o->cfg.serial_log_max) < 0 || o->cfg.serial_log_max == 0)
			return usage_error("invalid --serial-log-max '%s'; use a size like 1M", arg);
		return -1;
	case OPT_DUMP_ACPI: o->dump_dir = arg; return -1;
	case OPT_CONTROL_FD:
		if (parse_uint(arg, 65535, (unsigned *)&o->control_fd) < 0)
			return usage_error("invalid --control-fd '%s'; pass an open fd number", arg);
		return -1;
	case 'h': usage(stdout); return VMM_EXIT_OK;
	case 'V': printf(PROG " %s\n", MVM_VERSION); return VMM_EXIT_OK;
	default: return VMM_EXIT_USAGE;
	}
}

static int parse_args(int argc, char **argv, struct options *o)
{
	int c, r;

	o->cfg.mem_size = MiB(128);
	o->cfg.nvcpus = 1;
	o->control_fd = -1;
	opterr = 0;  /* our own messages, in our format */
	while ((c = getopt_long(argc, argv, ":k:i:c:m:n:hV", long_opts, NULL)) != -1) {
		if (c == '?' && optopt)
			return usage_error("unknown option '-%c'; see " PROG " --help", optopt);
		if (c == '?')
			return usage_error("unknown option '%s'; see " PROG " --help", argv[optind - 1]);
		if (c == ':')
			return usage_error("option '%s' needs a value; see " PROG " --help",
			                   argv[optind - 1]);
		r = parse_one(c, optarg, o);
		if (r >= 0)
			return r;
	}
	if (optind < argc)
		return usage_error("unexpected argument '%s'; see " PROG " --help", argv[optind]);
	if (!o->cfg.kernel_path && !o->dump_dir)
		return usage_error("no kernel given; pass --kernel IMG");
	if (o->cfg.cmdline && strlen(o->cfg.cmdline) >= CMDLINE_MAX_SIZE)
		return usage_error("--cmdline is longer than %llu bytes; shorten it",
		                   CMDLINE_MAX_SIZE - 1);
	o->cfg.dump_acpi = o->dump_dir != NULL;
	return -1;
}

/* Signals that end the VM arrive on a signalfd in the main loop; vCPU
 * threads inherit the blocked mask, so only the loop sees them. */
struct sig_watch {
	struct vm *vm;
	int fd;
	int signo;  /* the one that stopped the VM, 0 if none */
};

static void signal_cb(void *opaque, uint32_t events)
{
	struct sig_watch *w = opaque;
	struct signalfd_siginfo si;

	if (read(w->fd, &si, sizeof(si)) != sizeof(si))
		return;
	if (!w->signo)
		w->signo = (int)si.ssi_signo;
	vm_stop(w->vm, 128 + (int)si.ssi_signo, "stopped by signal %s",
	        strsignal((int)si.ssi_signo));
}

static void block_signals(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGHUP);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	/* A closed stdout must not kill the VM; writes then fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
}

/* Dies by the same signal, so the parent sees what happened. */
static void die_by_signal(int signo, const sigset_t *set)
{
	signal(signo, SIG_DFL);
	pthread_sigmask(SIG_UNBLOCK, set, NULL);
	raise(signo);
}

static int run(struct vm *vm, const sigset_t *set, int *ret_signo)
{
	struct sig_watch w = { .vm = vm, .fd = signalfd(-1, set, SFD_CLOEXEC | SFD_NONBLOCK) };
	int status;

	if (w.fd < 0 || loop_add_fd(vm_loop(vm), w.fd, EPOLLIN, signal_cb, &w) < 0) {
		fprintf(stderr, PROG ": cannot watch signals: %s; raise the open file limit\n",
		        strerror(errno));
		if (w.fd >= 0)
			close(w.fd);
		return VMM_EXIT_ERROR;
	}
	status = vm_run(vm);
	loop_del_fd(vm_loop(vm), w.fd);
	close(w.fd);
	*ret_signo = w.signo;
	if (status != VMM_EXIT_OK && !w.signo)
		fprintf(stderr, PROG ": %s\n", vm_exit_reason(vm));
	return status;
}

static int dump_acpi(struct vm *vm, const char *dir)
{
	struct vm_error err = { 0 };

	if (vm_dump_acpi(vm, dir, &err) < 0)
		return usage_error("%s", err.msg);
	return VMM_EXIT_OK;
}

/* A closed stdin/stdout/stderr would be reused by the first open() (say
 * /dev/kvm) and then read or written as the console: park /dev/null there. */
static void ensure_std_fds(void)
{
	int fd;

	for (fd = 0; fd <= 2; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF &&
		    open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY) != fd)
			_exit(VMM_EXIT_ERROR);
}

int main(int argc, char **argv)
{
	struct options o = { 0 };
	struct vm_error err = { 0 };
	struct control *ctl = NULL;
	struct vm *vm;
	sigset_t set;
	int status, signo = 0;

	ensure_std_fds();
	status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	block_signals(&set);
	if (vm_create(&o.cfg, &vm, &err) < 0) {
		usage_error("%s", err.msg);
		return err.status;
	}
	if (o.control_fd >= 0 && !o.dump_dir && control_attach(vm, o.control_fd, &ctl) < 0) {
		vm_destroy(vm);
		return usage_error("cannot use --control-fd %d: %s", o.control_fd, strerror(errno));
	}
	if (o.dump_dir)
		status = dump_acpi(vm, o.dump_dir);
	else
		status = run(vm, &set, &signo);
	vm_destroy(vm);  /* restores the terminal */
	control_free(ctl);
	if (signo)
		die_by_signal(signo, &set);
	return status;
}
