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
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "proto/proto.h"
#include "vmm/control.h"
#include "vmm/sandbox.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/devices/virtio/net.h"
#include "util/util.h"

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
"      --disk PATH[,ro][,id=ID]\n"
"                            virtio-blk disk backed by the raw image PATH (repeatable);\n"
"                            ro: read-only; ID: drive id, up to 20 printable bytes.\n"
"                            /proc/self/fd/N uses the already-open fd N as is\n"
"      --net tap=NAME[,mac=MAC]\n"
"      --net fd=N[,mac=MAC]  virtio-net NIC on TAP interface NAME, or on the open TAP\n"
"                            fd N (IFF_TAP|IFF_NO_PI); default MAC 52:54:00:xx:xx:xx\n"
"                            derived from NAME (or N) and the NIC's index (repeatable)\n"
"      --rng                 virtio-rng entropy device (host getrandom)\n"
"      --vsock cid=N,uds=PATH[,uid=U]\n"
"                            virtio-vsock with guest CID N (3 or more); host side is\n"
"                            the Unix socket PATH (CONNECT <port>), guest connections\n"
"                            to port P reach PATH_P; uid=: chown PATH to U (root)\n"
"      --control-fd N        talk to mvmd over the socket on fd N (docs/protocol.md)\n"
"      --adopt-socket PATH   with --control-fd: also listen on the Unix socket PATH so\n"
"                            a restarted mvmd (same uid) can take over the link\n"
"      --dump-acpi DIR       write the ACPI tables as DIR/<SIG>.dat and exit; needs\n"
"                            no KVM (--kernel is optional here)\n"
SANDBOX_USAGE
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
"  SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR2, SIGALRM stop the VM and\n"
"  end " PROG " by that signal; the init of a PID namespace (a worker mvmd\n"
"  sandboxed) exits 128 + the signal's number instead.\n"
"Set MVM_DEBUG=1 to log (some) guest accesses to absent devices, the first\n"
"instructions finished for KVM and where each vCPU was when the VM stopped, and\n"
"MVM_VIRTIO_STATS=1 to print per-device virtio counters at exit.\n"
"Virtio devices take slots in the order disks, NICs, rng, vsock, balloon (at most %d).\n",
	        VIRTIO_MMIO_MAX);
}

struct options {
	struct vm_config cfg;
	const char *dump_dir;
	int control_fd;  /* daemon link (vmm/control.c); -1: none */
	const char *adopt_path;  /* re-adoption socket; NULL: none */
	struct sandbox_config sandbox;
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

/* A size in bytes when no unit is given (util_parse_size): "128M", "1G",
 * "512K", "4096". */
static int parse_size(const char *s, uint64_t *ret)
{
	return util_parse_size(s, 1, ret);
}

static int parse_uint(const char *s, unsigned max, unsigned *ret)
{
	uint64_t v;
	int r = util_parse_uint(s, 0, max, &v);

	if (r < 0)
		return r;
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

/* Splits "a,b,c" in place: returns the next field and advances *s. */
static char *next_field(char **s)
{
	char *f = *s, *comma = strchr(f, ',');

	if (comma) {
		*comma = '\0';
		*s = comma + 1;
	} else {
		*s = f + strlen(f);
	}
	return f;
}

/* A virtio-blk id is at most 20 bytes; printable ASCII keeps it sane in
 * the guest's /sys/block/X/serial and in our logs. */
static bool valid_blk_id(const char *id)
{
	size_t len = strlen(id);

	if (len == 0 || len > VIRTIO_DEVS_BLK_ID_MAX)
		return false;
	for (; *id; id++)
		if (*id <= ' ' || *id >= 0x7f)
			return false;
	return true;
}

/* bps=, <ops>=, bps_burst=, <ops>_burst= of --disk (ops "iops") and --net
 * (ops "pps"): LIMIT_SET if f was one of them, 0 if not, LIMIT_BAD (after
 * printing why) if its value is bad. */
enum { LIMIT_SET = 1, LIMIT_BAD = 2 };

static int parse_limit_field(const char *opt, const char *ops, const char *f,
                             struct ratelimit_config *c)
{
	size_t n = strlen(ops);
	const char *v = strchr(f, '=');
	uint64_t *dst, val;
	bool bytes;

	if (!v)
		return 0;
	v++;
	if ((bytes = !strncmp(f, "bps=", 4)))
		dst = &c->bps;
	else if ((bytes = !strncmp(f, "bps_burst=", 10)))
		dst = &c->bps_burst;
	else if (!strncmp(f, ops, n) && f[n] == '=')
		dst = &c->ops;
	else if (!strncmp(f, ops, n) && !strncmp(f + n, "_burst=", 7))
		dst = &c->ops_burst;
	else
		return 0;
	if ((bytes ? parse_size(v, &val) : util_parse_uint(v, 0, UINT64_MAX, &val)) < 0 ||
	    val == 0 || val > RATELIMIT_MAX) {
		usage_error("invalid --%s %.*s '%s'; use 1 to %llu%s, or leave it out for no limit",
		            opt, (int)(v - f - 1), f, v, RATELIMIT_MAX,
		            bytes ? " bytes/s (K, M, G suffixes allowed)" : " per second");
		return LIMIT_BAD;
	}
	*dst = val;
	return LIMIT_SET;
}

/* A burst needs its rate. */
static int check_limits(const char *opt, const char *ops, const struct ratelimit_config *c)
{
	const char *why;

	bool b = c->bps_burst && !c->bps;

	/* values are in range already: only a burst without its rate is left */
	if (ratelimit_config_check(c, &why) < 0)
		return usage_error("--%s %s_burst needs %s too; set the rate the burst is on top of",
		                   opt, b ? "bps" : ops, b ? "bps" : ops);
	return 0;
}

/* PATH[,ro][,id=ID]; arg is a copy we may cut up (it lives until exit). */
static int parse_disk(char *arg, struct options *o)
{
	struct vm_disk *d = &o->cfg.virtio.disks[o->cfg.virtio.ndisks];
	char *rest = arg, *f;
	int r;

	if (virtio_devs_count(&o->cfg.virtio) >= VIRTIO_MMIO_MAX)
		return usage_error("too many virtio devices; use at most %d", VIRTIO_MMIO_MAX);
	d->path = next_field(&rest);
	if (!*d->path)
		return usage_error("--disk needs a path; use --disk PATH[,ro][,id=ID]");
	while (*rest) {
		f = next_field(&rest);
		if ((r = parse_limit_field("disk", "iops", f, &d->limits)) != 0) {
			if (r == LIMIT_BAD)
				return VMM_EXIT_USAGE;
		} else if (!strcmp(f, "ro"))
			d->read_only = true;
		else if (!strncmp(f, "id=", 3) && valid_blk_id(f + 3))
			d->id = f + 3;
		else if (!strncmp(f, "id=", 3))
			return usage_error("invalid --disk id '%s'; use 1 to %d printable bytes, "
			                   "no spaces or commas", f + 3, VIRTIO_DEVS_BLK_ID_MAX);
		else
			return usage_error("unknown --disk option '%s'; use PATH[,ro][,id=ID]"
			                   "[,bps=SIZE][,iops=N]", f);
	}
	if (check_limits("disk", "iops", &d->limits))
		return VMM_EXIT_USAGE;
	o->cfg.virtio.ndisks++;
	return -1;
}

static int parse_net_field(char *f, struct vm_nic *n)
{
	unsigned fd;
	int r = parse_limit_field("net", "pps", f, &n->limits);

	if (r)
		return r == LIMIT_SET ? -1 : VMM_EXIT_USAGE;
	if (!strncmp(f, "tap=", 4) && f[4] && !n->tap && n->fd < 0) {
		if (strlen(f + 4) >= 16)
			return usage_error("TAP name '%s' is too long; use at most 15 bytes", f + 4);
		n->tap = f + 4;
	} else if (!strncmp(f, "fd=", 3) && !n->tap && n->fd < 0) {
		if (parse_uint(f + 3, 65535, &fd) < 0 || fd <= 2)
			return usage_error("invalid --net fd '%s'; pass an open TAP fd above 2", f + 3);
		n->fd = (int)fd;
	} else if (!strncmp(f, "mac=", 4)) {
		if (virtio_net_parse_mac(f + 4, n->mac) < 0 || (n->mac[0] & 1))
			return usage_error("invalid --net mac '%s'; use a unicast MAC like "
			                   "52:54:00:12:34:56", f + 4);
		n->has_mac = true;
	} else {
		return usage_error("invalid --net option '%s'; use tap=NAME[,mac=MAC] or "
		                   "fd=N[,mac=MAC], and bps=SIZE, pps=N for limits", f);
	}
	return -1;
}

/* tap=NAME[,mac=MAC] or fd=N[,mac=MAC] */
static int parse_net(char *arg, struct options *o)
{
	struct vm_nic *n = &o->cfg.virtio.nics[o->cfg.virtio.nnics];
	char *rest = arg;
	int r;

	if (virtio_devs_count(&o->cfg.virtio) >= VIRTIO_MMIO_MAX)
		return usage_error("too many virtio devices; use at most %d", VIRTIO_MMIO_MAX);
	n->fd = -1;
	while (*rest)
		if ((r = parse_net_field(next_field(&rest), n)) >= 0)
			return r;
	if (!n->tap && n->fd < 0)
		return usage_error("--net needs tap=NAME or fd=N; see " PROG " --help");
	if (check_limits("net", "pps", &n->limits))
		return VMM_EXIT_USAGE;
	o->cfg.virtio.nnics++;
	return -1;
}

/* cid=N,uds=PATH[,uid=U] */
static int parse_vsock(char *arg, struct options *o)
{
	struct virtio_devs_config *v = &o->cfg.virtio;
	uint64_t cid, uid;
	char *rest = arg, *f;

	if (v->vsock_cid)
		return usage_error("--vsock given twice; a VM has one vsock device");
	while (*rest) {
		f = next_field(&rest);
		if (!strncmp(f, "cid=", 4)) {
			/* 0-2 are reserved (hypervisor, local, host); ~0U is "any". */
			if (util_parse_uint(f + 4, 3, 0xfffffffeULL, &cid) < 0)
				return usage_error("invalid --vsock cid '%s'; use 3 to 4294967294", f + 4);
			v->vsock_cid = cid;
		} else if (!strncmp(f, "uds=", 4) && f[4]) {
			v->vsock_uds = f + 4;
		} else if (!strncmp(f, "uid=", 4)) {
			if (util_parse_uint(f + 4, 0, 0xfffffffeULL, &uid) < 0)
				return usage_error("invalid --vsock uid '%s'; use a uid from 0 to "
				                   "4294967294", f + 4);
			v->vsock_uid = (uint32_t)uid;
			v->vsock_chown = true;
		} else {
			return usage_error("invalid --vsock option '%s'; use cid=N,uds=PATH[,uid=U]", f);
		}
	}
	if (!v->vsock_cid || !v->vsock_uds) {
		v->vsock_cid = 0;
		return usage_error("--vsock needs cid=N and uds=PATH");
	}
	if (virtio_devs_count(v) > VIRTIO_MMIO_MAX)
		return usage_error("too many virtio devices; use at most %d", VIRTIO_MMIO_MAX);
	return -1;
}

enum {
	OPT_SERIAL = 256, OPT_SERIAL_LOG, OPT_SERIAL_LOG_MAX, OPT_DUMP_ACPI, OPT_CONTROL_FD,
	OPT_DISK, OPT_NET, OPT_RNG, OPT_VSOCK, OPT_ADOPT_SOCKET, OPT_BALLOON,
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
	{ "adopt-socket", required_argument, NULL, OPT_ADOPT_SOCKET },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "net", required_argument, NULL, OPT_NET },
	{ "rng", no_argument, NULL, OPT_RNG },
	{ "vsock", required_argument, NULL, OPT_VSOCK },
	{ "balloon", required_argument, NULL, OPT_BALLOON },
	{ "help", no_argument, NULL, 'h' },
	{ "version", no_argument, NULL, 'V' },
	SANDBOX_LONG_OPTIONS
	{ NULL, 0, NULL, 0 },
};

/* Handles one option; returns -1 to go on, else the exit status.  arg
 * points into argv, which lives until exit: device options cut it up. */
static int parse_one(int c, char *arg, struct options *o)
{
	switch (c) {
	case OPT_DISK: return parse_disk(arg, o);
	case OPT_NET: return parse_net(arg, o);
	case OPT_VSOCK: return parse_vsock(arg, o);
	case OPT_BALLOON:
		if (!o->cfg.virtio.balloon && virtio_devs_count(&o->cfg.virtio) >= VIRTIO_MMIO_MAX)
			return usage_error("too many virtio devices; use at most %d", VIRTIO_MMIO_MAX);
		if (parse_size(arg, &o->cfg.virtio.balloon_target) < 0)
			return usage_error("invalid --balloon '%s'; use a size like 0, 64M or 1G", arg);
		o->cfg.virtio.balloon = true;
		return -1;
	case OPT_RNG:
		if (!o->cfg.virtio.rng && virtio_devs_count(&o->cfg.virtio) >= VIRTIO_MMIO_MAX)
			return usage_error("too many virtio devices; use at most %d", VIRTIO_MMIO_MAX);
		o->cfg.virtio.rng = true;
		return -1;
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
	case OPT_ADOPT_SOCKET: o->adopt_path = arg; return -1;
	case 'h': usage(stdout); return VMM_EXIT_OK;
	case 'V': printf(PROG " %s\n", MVM_VERSION); return VMM_EXIT_OK;
	default: {
		const char *why = "";
		int r = sandbox_parse_option(&o->sandbox, c, arg, &why);

		if (r < 0)
			return usage_error("%s", why);
		return r ? -1 : VMM_EXIT_USAGE;
	}
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
	if (o->adopt_path && o->control_fd < 0)
		return usage_error("--adopt-socket needs --control-fd");
	if (!o->cfg.kernel_path && !o->dump_dir)
		return usage_error("no kernel given; pass --kernel IMG");
	if (o->cfg.cmdline && strlen(o->cfg.cmdline) >= CMDLINE_MAX_SIZE)
		return usage_error("--cmdline is longer than %llu bytes; shorten it",
		                   CMDLINE_MAX_SIZE - 1);
	if (o->cfg.virtio.balloon && o->cfg.virtio.balloon_target > o->cfg.mem_size)
		return usage_error("--balloon %llu is larger than the guest's %llu bytes of RAM "
		                   "(--mem); lower it", (unsigned long long)o->cfg.virtio.balloon_target,
		                   (unsigned long long)o->cfg.mem_size);
	o->cfg.dump_acpi = o->dump_dir != NULL;
	return -1;
}

/* msg with each "/proc/self/fd/N" (how mvmd hands over the client's
 * files) replaced by the path the kernel knows that file by, so the
 * client reads the name of its own file. */
static void name_fd_paths(const char *msg, char *out, size_t size)
{
	static const char prefix[] = "/proc/self/fd/";
	char link[24], target[512];
	size_t o = 0, n;
	ssize_t t;

	while (*msg && o + 1 < size) {
		n = strncmp(msg, prefix, sizeof(prefix) - 1) ? 0 :
		    strspn(msg + sizeof(prefix) - 1, "0123456789");
		if (n == 0 || n > 5) {
			out[o++] = *msg++;
			continue;
		}
		snprintf(link, sizeof(link), "%.*s", (int)(sizeof(prefix) - 1 + n), msg);
		t = readlink(link, target, sizeof(target) - 1);
		if (t <= 0 || target[0] != '/')
			t = (ssize_t)snprintf(target, sizeof(target), "%s", link);
		target[t] = '\0';
		o += (size_t)snprintf(out + o, size - o, "%s", target);
		if (o >= size)
			o = size - 1;
		msg += sizeof(prefix) - 1 + n;
	}
	out[o] = '\0';
}

/* A VM that could not be set up: the message on stderr (vmm.log) and, for
 * mvmd, on the link, both with the client's paths. */
static int setup_error(const struct options *o, const struct vm_error *err)
{
	char msg[sizeof(err->msg) + 512];

	name_fd_paths(err->msg, msg, sizeof(msg));
	usage_error("%s", msg);
	if (o->control_fd >= 0)
		control_report_setup_error(o->control_fd, err->status, msg);
	return err->status;
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
	for (const int *s = proto_vmm_stop_signals; *s; s++)
		sigaddset(set, *s);
	pthread_sigmask(SIG_BLOCK, set, NULL);
	/* A closed stdout must not kill the VM; writes then fail with EPIPE. */
	signal(SIGPIPE, SIG_IGN);
}

/* Dies by the same signal, so the parent sees what happened.  The init of
 * a PID namespace (a sandboxed worker) cannot: the kernel drops a signal it
 * sends itself, so it exits 128 + signo, which mvmd and the waiting parent
 * (sandbox_enter_pidns) read as that signal. */
static void __attribute__((noreturn)) die_by_signal(int signo, const sigset_t *set)
{
	if (getpid() != 1) {
		signal(signo, SIG_DFL);
		pthread_sigmask(SIG_UNBLOCK, set, NULL);
		raise(signo);
	}
	exit(128 + signo);
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
	const char *step = "";
	sigset_t set;
	int status, signo = 0;

	ensure_std_fds();
	status = parse_args(argc, argv, &o);
	if (status >= 0)
		return status;
	block_signals(&set);
	if (!o.dump_dir && (status = sandbox_enter_pidns(&o.sandbox)) < 0) {
		fprintf(stderr, PROG ": sandbox step 'enter a new PID namespace' failed: %s; "
		        "the guest was not started\n", strerror(-status));
		return VMM_EXIT_ERROR;
	}
	if (vm_create(&o.cfg, &vm, &err) < 0)
		return setup_error(&o, &err);
	if (o.control_fd >= 0 && !o.dump_dir && control_attach(vm, o.control_fd, &ctl) < 0) {
		vm_destroy(vm);
		return usage_error("cannot use --control-fd %d: %s", o.control_fd, strerror(errno));
	}
	if (ctl && o.adopt_path && (status = control_listen(ctl, o.adopt_path)) < 0) {
		control_free(ctl);
		vm_destroy(vm);
		return usage_error("cannot listen on --adopt-socket %s: %s", o.adopt_path,
		                   strerror(-status));
	}
	if (!o.dump_dir && (status = sandbox_enter(&o.sandbox, &o.cfg, o.control_fd, &step)) < 0) {
		fprintf(stderr, PROG ": sandbox step '%s' failed: %s; the guest was not started\n",
		        step, strerror(-status));
		status = VMM_EXIT_ERROR;
	} else if (o.dump_dir)
		status = dump_acpi(vm, o.dump_dir);
	else {
		if (o.sandbox.enabled && o.sandbox.dir)
			virtio_devs_rebase(vm_virtio_devs(vm), o.sandbox.dir);  /* now our root */
		status = run(vm, &set, &signo);
	}
	vm_destroy(vm);  /* restores the terminal */
	control_free(ctl);
	if (signo)
		die_by_signal(signo, &set);
	return status;
}
