/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <linux/kvm.h>

#include "vmm/vm.h"
#include "vmm/vmm.h"
#include "vmm/vcpu.h"
#include "vmm/console.h"
#include "vmm/devices/serial.h"
#include "vmm/devices/i8042.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/arch/x86/boot.h"
#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/mptable.h"
#include "vmm/arch/x86/cpuid.h"

#define ACPI_SLP_EN 0x20

struct vm_irq {
	struct vm *vm;
	unsigned gsi;
};

struct vm {
	struct vm_config cfg;
	int kvm_fd, vm_fd, stop_efd;
	int run_size;
	struct guest_mem mem;
	uint64_t rsdp;
	struct boot_result boot;
	struct kvm_cpuid2 *cpuid;

	struct io_bus pio, mmio;
	struct vm_irq serial_irq, kbd_irq;
	struct serial *serial;
	struct i8042 *i8042;
	struct console *console;
	struct loop *loop;
	struct virtio_devs *virtio;
	char *cmdline;           /* cfg.cmdline plus what write_cmdline() adds */
	uint32_t tsc_khz;        /* KVM's guest TSC frequency; 0: unknown */
	unsigned ndevices;       /* vm_devices[] entries set up */
	struct vcpu *vcpus[VCPUS_MAX];
	unsigned nvcpus;

	atomic_bool stop;        /* set once, after status and reason */
	atomic_int stop_claimed; /* first vm_stop() caller wins */
	int status;
	char reason[256];
	vm_exit_observer_cb exit_cb;
	void *exit_opaque;

	/* vm_pause(): vCPU threads park in vm_park() while pause_want */
	pthread_mutex_t pause_lock;     /* parked, and waits on pause_cond */
	pthread_cond_t pause_cond;      /* parked changed, pause lifted, stop */
	atomic_bool pause_want;
	unsigned parked;
	bool paused;                    /* main thread's: every vCPU parked */
	bool clock_saved;
	struct kvm_clock_data clock;    /* kvmclock when the pause began */
};

struct loaded_file {
	void *buf;
	size_t len;
};

int vm_fail(struct vm_error *err, int status, int r, const char *fmt, ...)
{
	va_list ap;

	err->status = status;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return r < 0 ? r : -EINVAL;
}

/* Images live only until the loader has copied them into guest RAM.  An
 * anonymous mapping gives the pages back when unmapped; a free()d heap
 * block of that size stayed resident and cost the VMM ~0.1 MiB of RSS. */
static void unload_file(struct loaded_file *f)
{
	if (f->buf)
		munmap(f->buf, f->len);
	f->buf = NULL;
}

static int read_fd(int fd, struct loaded_file *f, size_t len)
{
	size_t done = 0;

	f->buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (f->buf == MAP_FAILED) {
		f->buf = NULL;
		return -ENOMEM;
	}
	f->len = len;
	while (done < len) {
		ssize_t n = read(fd, (uint8_t *)f->buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			int r = n < 0 ? -errno : -ENODATA;  /* ENODATA: shrank under us */

			unload_file(f);
			return r;
		}
		done += (size_t)n;
	}
	return 0;
}

/* Reads a whole kernel or initrd; `what` names it in messages. */
static int load_file(const char *path, const char *what, uint64_t mem_size,
                     struct loaded_file *f, struct vm_error *err)
{
	struct stat st;
	int fd, r;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return vm_fail(err, VMM_EXIT_USAGE, -errno, "cannot open %s '%s': %s; check the path",
		            what, path, strerror(errno));
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		r = vm_fail(err, VMM_EXIT_USAGE, -EINVAL, "%s '%s' is not a regular file; pass an image file",
		         what, path);
	} else if (st.st_size == 0) {
		r = vm_fail(err, VMM_EXIT_USAGE, -EINVAL, "%s '%s' is empty; pass a valid image", what, path);
	} else if ((uint64_t)st.st_size > mem_size) {
		r = vm_fail(err, VMM_EXIT_USAGE, -E2BIG,
		         "%s '%s' (%lld bytes) is bigger than guest memory (%llu bytes); raise --mem",
		         what, path, (long long)st.st_size, (unsigned long long)mem_size);
	} else {
		r = read_fd(fd, f, (size_t)st.st_size);
		if (r < 0)
			vm_fail(err, r == -ENOMEM ? VMM_EXIT_ERROR : VMM_EXIT_USAGE, r,
			     "cannot read %s '%s': %s; check the file", what, path,
			     r == -ENODATA ? "file shrank while reading" : strerror(-r));
	}
	close(fd);
	return r;
}

/*
 * The command line the guest gets: cfg.cmdline, then what mvm-vmm adds.
 * Each virtio device is described once: as a DSDT LNRO0005 device, or as
 * virtio_mmio.device= when the guest runs without ACPI (Linux rejects a
 * device described both ways, -EBUSY).  tsc_early_khz= gives a kernel
 * without kvmclock the TSC frequency: hardware-reduced ACPI has no PIT,
 * HPET or PM timer to calibrate against, and Linux 6.1 reads no CPUID
 * frequency leaf under KVM on AMD (CPUID 0x40000010 is set too, for guests
 * that read it).  With kvmclock it is the same number kvmclock reports.
 */
static int write_cmdline(struct vm *vm, struct acpi_mmio_dev *devs, unsigned *ret_n,
                         struct vm_error *err)
{
	size_t len;
	int r;

	/* malloc, not calloc: zeroing would make all 64 KiB resident in every
	 * worker for a line of a few hundred bytes. */
	vm->cmdline = malloc(CMDLINE_MAX_SIZE);
	if (!vm->cmdline)
		return vm_fail(err, VMM_EXIT_ERROR, -ENOMEM, "out of memory; free some memory");
	vm->cmdline[0] = '\0';
	if (vm->cfg.cmdline)
		snprintf(vm->cmdline, CMDLINE_MAX_SIZE, "%s", vm->cfg.cmdline);
	r = virtio_devs_announce(&vm->cfg.virtio, boot_cmdline_has(vm->cmdline, "acpi=off"),
	                         vm->cmdline, CMDLINE_MAX_SIZE, devs, ret_n);
	len = strlen(vm->cmdline);
	if (r == 0 && vm->tsc_khz && !boot_cmdline_has(vm->cmdline, "tsc_early_khz") &&
	    (size_t)snprintf(vm->cmdline + len, CMDLINE_MAX_SIZE - len, "%stsc_early_khz=%u",
	                     len ? " " : "", vm->tsc_khz) >= CMDLINE_MAX_SIZE - len)
		r = -ENOSPC;
	if (r < 0)
		return vm_fail(err, VMM_EXIT_USAGE, r, "--cmdline and what mvm-vmm adds to it do not "
		            "fit in %llu bytes; shorten --cmdline", CMDLINE_MAX_SIZE - 1);
	return 0;
}

/* Firmware tables, then the kernel: the zero page points at the RSDP. */
static int build_guest(struct vm *vm, struct vm_error *err)
{
	struct loaded_file kernel = { 0 }, initrd = { 0 };
	struct boot_params_in in = { 0 };
	struct acpi_mmio_dev devs[VIRTIO_MMIO_MAX];
	const char *why = "unknown error";
	unsigned ndevs = 0;
	int r;

	if ((r = write_cmdline(vm, devs, &ndevs, err)) < 0)
		return r;
	in.cmdline = vm->cmdline;
	r = mptable_build(&vm->mem, vm->nvcpus);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot build the MP table: %s; this is a bug",
		            strerror(-r));
	r = acpi_build(&vm->mem, vm->nvcpus, devs, ndevs, &vm->rsdp);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot build ACPI tables: %s; this is a bug",
		            strerror(-r));
	if (!vm->cfg.kernel_path)
		return 0;
	r = load_file(vm->cfg.kernel_path, "kernel", vm->cfg.mem_size, &kernel, err);
	if (r < 0)
		return r;
	if (vm->cfg.initrd_path) {
		r = load_file(vm->cfg.initrd_path, "initrd", vm->cfg.mem_size, &initrd, err);
		if (r < 0)
			goto out;
		if (kernel.len + initrd.len > vm->cfg.mem_size) {
			r = vm_fail(err, VMM_EXIT_USAGE, -E2BIG, "kernel and initrd (%zu bytes together) "
			         "do not fit in guest memory (%llu bytes); raise --mem",
			         kernel.len + initrd.len, (unsigned long long)vm->cfg.mem_size);
			goto out;
		}
	}
	in.kernel = kernel.buf;
	in.kernel_len = kernel.len;
	in.initrd = initrd.buf;
	in.initrd_len = initrd.len;
	in.rsdp_addr = vm->rsdp;
	r = boot_load(&vm->mem, &in, &vm->boot, &why);
	if (r < 0)
		vm_fail(err, VMM_EXIT_USAGE, r, "cannot load '%s': %s; check --kernel, --initrd, "
		     "--cmdline and --mem", vm->cfg.kernel_path, why ? why : strerror(-r));
out:
	unload_file(&kernel);
	unload_file(&initrd);
	return r;
}

static int kvm_check(int kvm_fd, struct vm_error *err)
{
	static const struct { int cap; const char *name; } caps[] = {
		{ KVM_CAP_IRQCHIP, "IRQCHIP" }, { KVM_CAP_USER_MEMORY, "USER_MEMORY" },
		{ KVM_CAP_IRQFD, "IRQFD" }, { KVM_CAP_IOEVENTFD, "IOEVENTFD" },
		{ KVM_CAP_PIT2, "PIT2" }, { KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR" },
		{ KVM_CAP_EXT_CPUID, "EXT_CPUID" }, { KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT" },
	};
	unsigned i;
	int v = ioctl(kvm_fd, KVM_GET_API_VERSION, 0);

	if (v != KVM_API_VERSION)
		return vm_fail(err, VMM_EXIT_ERROR, -ENOTSUP, "KVM API version %d is not %d; "
		            "use a Linux kernel with a standard KVM", v, KVM_API_VERSION);
	for (i = 0; i < sizeof(caps) / sizeof(caps[0]); i++)
		if (ioctl(kvm_fd, KVM_CHECK_EXTENSION, caps[i].cap) <= 0)
			return vm_fail(err, VMM_EXIT_ERROR, -ENOTSUP, "KVM lacks KVM_CAP_%s; "
			            "use a newer host kernel", caps[i].name);
	return 0;
}

static int set_memslot(struct vm *vm, uint32_t slot, uint64_t gpa, uint64_t size, void *host)
{
	struct kvm_userspace_memory_region region = {
		.slot = slot, .guest_phys_addr = gpa, .memory_size = size,
		.userspace_addr = (uint64_t)(uintptr_t)host,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0 ? -errno : 0;
}

#define KVM_FAIL(what) \
	vm_fail(err, VMM_EXIT_ERROR, -errno, "%s failed: %s; check the host's KVM", what, strerror(errno))

/* The VM, in the order KVM needs: TSS and identity map before the
 * irqchip, irqchip before the PIT and the vCPUs.  RAM goes in first: on a
 * VM that already has an irqchip, KVM_SET_USER_MEMORY_REGION took a median
 * 7 ms on the 6.18 host (an SRCU grace period, it seems) against 0.1-0.4 ms
 * without one; that was half of mvm-vmm's exec-to-first-guest-byte time. */
static int kvm_setup(struct vm *vm, struct vm_error *err)
{
	struct kvm_pit_config pit = { .flags = 0 };
	uint64_t ident = KVM_IDENTITY_MAP;
	int r;

	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		return vm_fail(err, VMM_EXIT_ERROR, -errno, "cannot open /dev/kvm: %s; "
		            "check that KVM is loaded and you may use it", strerror(errno));
	if ((r = kvm_check(vm->kvm_fd, err)) < 0)
		return r;
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0)
		return KVM_FAIL("KVM_GET_VCPU_MMAP_SIZE");
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		return KVM_FAIL("KVM_CREATE_VM");
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_START) < 0)
		return KVM_FAIL("KVM_SET_TSS_ADDR");
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &ident) < 0)
		return KVM_FAIL("KVM_SET_IDENTITY_MAP_ADDR");
	if (set_memslot(vm, 0, 0, vm->mem.low_size, vm->mem.host) < 0)
		return KVM_FAIL("KVM_SET_USER_MEMORY_REGION (low RAM)");
	if (vm->mem.size > vm->mem.low_size &&
	    set_memslot(vm, 1, HIGH_RAM_START, vm->mem.size - vm->mem.low_size,
	                vm->mem.host + vm->mem.low_size) < 0)
		return KVM_FAIL("KVM_SET_USER_MEMORY_REGION (high RAM)");
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return KVM_FAIL("KVM_CREATE_IRQCHIP");
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return KVM_FAIL("KVM_CREATE_PIT2");
	r = cpuid_get_supported(vm->kvm_fd, &vm->cpuid);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "KVM_GET_SUPPORTED_CPUID failed: %s; "
		            "check the host's KVM", strerror(-r));
	/* KVM_GET_TSC_KHZ on the VM fd exists since Linux 6.0 (with the VM
	 * TSC control, even where that control itself is not offered); an
	 * older KVM says ENOTTY, and the guest still has kvmclock. */
	r = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_GET_TSC_KHZ) > 0 ?
	    ioctl(vm->vm_fd, KVM_GET_TSC_KHZ, 0) : -1;
	vm->tsc_khz = r > 0 ? (uint32_t)r : 0;
	return 0;
}

static void irq_set(void *opaque, int level)
{
	struct vm_irq *q = opaque;
	struct kvm_irq_level l = { .irq = q->gsi, .level = (uint32_t)level };

	/* Cannot fail for an ISA line on a VM with an irqchip. */
	ioctl(q->vm->vm_fd, KVM_IRQ_LINE, &l);
}

static void serial_tx(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;

	console_write(vm->console, buf, len);
}

static void serial_rx_ready(void *opaque)
{
	struct vm *vm = opaque;

	console_rx_ready(vm->console);
}

static void kbd_reset(void *opaque)
{
	vm_stop(opaque, VMM_EXIT_OK, "guest reset (i8042)");
}

/* ACPI hardware-reduced sleep registers: S5 through SLP_TYP|SLP_EN is
 * poweroff; the status register always reads "nothing to report". */
static void sleep_ctl_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	if (len == 1 && (data[0] & ACPI_SLP_EN) && ((data[0] >> 2) & 7) == ACPI_S5_SLP_TYP)
		vm_stop(opaque, VMM_EXIT_OK, "guest ACPI poweroff (S5)");
}

static void sleep_read_zero(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	memset(data, 0, len);
}

static const struct io_ops sleep_ctl_ops = { .read = sleep_read_zero, .write = sleep_ctl_write };
static const struct io_ops sleep_sts_ops = { .read = sleep_read_zero };

static int serial_setup(struct vm *vm)
{
	struct serial_callbacks cb = { serial_tx, serial_rx_ready, vm };
	struct irq_line irq = { irq_set, &vm->serial_irq };
	int r;

	vm->serial_irq = (struct vm_irq){ vm, COM1_IRQ };
	r = serial_new(&irq, &cb, &vm->serial);
	if (r < 0)
		return r;
	return io_bus_register(&vm->pio, COM1_PORT, 8, &serial_io_ops, vm->serial);
}

static void serial_teardown(struct vm *vm)
{
	serial_free(vm->serial);
	vm->serial = NULL;
}

static int i8042_setup(struct vm *vm)
{
	struct irq_line irq = { irq_set, &vm->kbd_irq };
	int r;

	vm->kbd_irq = (struct vm_irq){ vm, I8042_IRQ };
	r = i8042_new(&irq, kbd_reset, vm, &vm->i8042);
	if (r < 0)
		return r;
	r = io_bus_register(&vm->pio, I8042_DATA_PORT, 1, &i8042_data_ops, vm->i8042);
	if (r < 0)
		return r;
	return io_bus_register(&vm->pio, I8042_CMD_PORT, 1, &i8042_cmd_ops, vm->i8042);
}

static void i8042_teardown(struct vm *vm)
{
	i8042_free(vm->i8042);
	vm->i8042 = NULL;
}

static int sleep_regs_setup(struct vm *vm)
{
	int r = io_bus_register(&vm->pio, ACPI_SLEEP_CTL_PORT, 1, &sleep_ctl_ops, vm);

	if (r < 0)
		return r;
	return io_bus_register(&vm->pio, ACPI_SLEEP_STS_PORT, 1, &sleep_sts_ops, vm);
}

/* Every device of the VM, created in this order and freed in reverse.  A
 * device registers its ranges on the buses before any vCPU runs. */
static const struct vm_device {
	const char *name;
	int (*setup)(struct vm *vm);
	void (*teardown)(struct vm *vm);  /* NULL: nothing to free */
} vm_devices[] = {
	{ "COM1 serial port", serial_setup, serial_teardown },
	{ "i8042 controller", i8042_setup, i8042_teardown },
	{ "ACPI sleep registers", sleep_regs_setup, NULL },
};

#define VM_NDEVICES (sizeof(vm_devices) / sizeof(vm_devices[0]))

static int devices_setup(struct vm *vm, struct vm_error *err)
{
	int r;

	for (vm->ndevices = 0; vm->ndevices < VM_NDEVICES; vm->ndevices++) {
		const struct vm_device *d = &vm_devices[vm->ndevices];

		r = d->setup(vm);
		if (r < 0) {
			vm->ndevices++;  /* tear down the half-made one too */
			return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up the %s: %s; "
			            "free some memory", d->name, strerror(-r));
		}
	}
	return 0;
}

static void devices_teardown(struct vm *vm)
{
	while (vm->ndevices > 0) {
		const struct vm_device *d = &vm_devices[--vm->ndevices];

		if (d->teardown)
			d->teardown(vm);
	}
}

static int vcpus_setup(struct vm *vm, struct vm_error *err)
{
	unsigned i;
	int r;

	for (i = 0; i < vm->nvcpus; i++) {
		r = vcpu_create(vm, i, vm->run_size, vm->cpuid, &vm->vcpus[i]);
		if (r < 0)
			return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set up vcpu %u: %s; "
			            "check the host's KVM", i, strerror(-r));
	}
	r = vcpu_setup_boot(vm->vcpus[0], &vm->mem, &vm->boot);
	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot set boot registers: %s; "
		            "check the kernel image and the host's KVM", strerror(-r));
	return 0;
}

static int console_setup(struct vm *vm, struct vm_error *err)
{
	struct console_config cc = {
		.out_path = vm->cfg.serial_path,
		.log_path = vm->cfg.serial_log_path,
		.log_max = vm->cfg.serial_log_max ? vm->cfg.serial_log_max : VM_SERIAL_LOG_MAX_DEFAULT,
		.read_stdin = vm->cfg.serial_path == NULL,
	};
	const char *what = NULL;
	int r = console_new(&cc, &vm->console, &what);

	if (r < 0)
		return vm_fail(err, VMM_EXIT_USAGE, r, "cannot open '%s': %s; check --serial and --serial-log",
		            what ? what : "console", strerror(-r));
	return 0;
}

static int loop_setup(struct vm *vm, struct vm_error *err)
{
	int r = loop_new(&vm->loop);

	if (r < 0)
		return vm_fail(err, VMM_EXIT_ERROR, r, "cannot create the event loop: %s; "
		            "raise the open file limit", strerror(-r));
	vm->stop_efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->stop_efd < 0)
		return vm_fail(err, VMM_EXIT_ERROR, -errno, "cannot create an eventfd: %s; "
		            "raise the open file limit", strerror(errno));
	return 0;
}

int vm_create(const struct vm_config *cfg, struct vm **ret, struct vm_error *err)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	int r;

	if (!vm)
		return vm_fail(err, VMM_EXIT_ERROR, -ENOMEM, "out of memory; free some memory");
	vm->cfg = *cfg;
	vm->nvcpus = cfg->nvcpus;
	vm->kvm_fd = vm->vm_fd = vm->stop_efd = -1;
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	r = guest_mem_alloc(&vm->mem, cfg->mem_size);
	if (r < 0) {
		vm_fail(err, VMM_EXIT_ERROR, r, "cannot map %llu bytes of guest memory: %s; lower --mem",
		     (unsigned long long)cfg->mem_size, strerror(-r));
		goto fail;
	}
	/* Backends first: fds passed by number are still the caller's only
	 * while the VM has opened nothing of its own. */
	if (cfg->dump_acpi) {
		if ((r = build_guest(vm, err)) < 0)
			goto fail;
		*ret = vm;
		return 0;
	}
	if ((r = virtio_devs_create(&cfg->virtio, &vm->mem, &vm->virtio, err)) < 0)
		goto fail;
	/* KVM before the guest image: the command line carries KVM's TSC
	 * frequency. */
	if ((r = console_setup(vm, err)) < 0 || (r = loop_setup(vm, err)) < 0 ||
	    (r = kvm_setup(vm, err)) < 0 || (r = build_guest(vm, err)) < 0 ||
	    (r = devices_setup(vm, err)) < 0 ||
	    (r = virtio_devs_attach(vm->virtio, vm->vm_fd, &vm->mmio, vm->loop, err)) < 0 ||
	    (r = vcpus_setup(vm, err)) < 0)
		goto fail;
	*ret = vm;
	return 0;
fail:
	vm_destroy(vm);
	return r;
}

int vm_dump_acpi(struct vm *vm, const char *dir, struct vm_error *err)
{
	int r = acpi_dump(&vm->mem, vm->rsdp, dir);

	if (r < 0)
		return vm_fail(err, VMM_EXIT_USAGE, r, "cannot write ACPI tables to '%s': %s; "
		            "pass an existing writable directory", dir, strerror(-r));
	return 0;
}

void vm_stop(struct vm *vm, int status, const char *fmt, ...)
{
	int expected = 0;
	uint64_t one = 1;
	va_list ap;

	if (!atomic_compare_exchange_strong(&vm->stop_claimed, &expected, 1))
		return;
	vm->status = status;
	va_start(ap, fmt);
	vsnprintf(vm->reason, sizeof(vm->reason), fmt, ap);
	va_end(ap);
	atomic_store(&vm->stop, true);
	/* parked vCPUs wake and leave; a vm_pause() waiting gives up */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	/* The main thread kicks and joins the vCPUs: it alone knows which
	 * threads exist.  An eventfd write cannot block. */
	if (write(vm->stop_efd, &one, sizeof(one)) < 0) {
		/* Only fails if the counter is saturated: already woken. */
	}
}

bool vm_stopping(const struct vm *vm)
{
	return atomic_load(&vm->stop);
}

/* ---- pause -------------------------------------------------------------- */

bool vm_pausing(const struct vm *vm)
{
	return atomic_load(&vm->pause_want);
}

bool vm_park(struct vm *vm)
{
	bool resumed;

	pthread_mutex_lock(&vm->pause_lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->pause_cond);
	while (atomic_load(&vm->pause_want) && !vm_stopping(vm))
		pthread_cond_wait(&vm->pause_cond, &vm->pause_lock);
	vm->parked--;
	resumed = !vm_stopping(vm);
	pthread_mutex_unlock(&vm->pause_lock);
	return resumed;
}

static void lift_pause(struct vm *vm)
{
	pthread_mutex_lock(&vm->pause_lock);
	atomic_store(&vm->pause_want, false);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
}

/* Kicks every 50 ms (a kick that lands while a vCPU is outside KVM_RUN is
 * lost) until all are parked, for at most VM_PAUSE_WAIT_MS. */
#define VM_PAUSE_WAIT_MS 3000

int vm_pause(struct vm *vm)
{
	struct timespec ts;
	unsigned i, rounds;
	bool all = false;

	if (vm->paused)
		return 0;
	if (vm_stopping(vm))
		return -ESHUTDOWN;
	atomic_store(&vm->pause_want, true);
	for (rounds = 0; !all && rounds < VM_PAUSE_WAIT_MS / 50; rounds++) {
		for (i = 0; i < vm->nvcpus; i++)
			vcpu_kick(vm->vcpus[i]);
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_mutex_lock(&vm->pause_lock);
		while (vm->parked < vm->nvcpus && !vm_stopping(vm))
			if (pthread_cond_timedwait(&vm->pause_cond, &vm->pause_lock, &ts) == ETIMEDOUT)
				break;
		all = vm->parked == vm->nvcpus;
		pthread_mutex_unlock(&vm->pause_lock);
		if (vm_stopping(vm))
			break;
	}
	if (!all || vm_stopping(vm)) {
		lift_pause(vm);
		return vm_stopping(vm) ? -ESHUTDOWN : -ETIMEDOUT;
	}
	/* kvmclock stands still from here: restored at resume, so guest
	 * time does not jump over the pause (docs/protocol.md "vm.pause") */
	vm->clock_saved = ioctl(vm->vm_fd, KVM_GET_CLOCK, &vm->clock) == 0;
	vm->paused = true;
	return 0;
}

int vm_resume(struct vm *vm)
{
	struct kvm_clock_data c;
	int r = 0;

	if (!vm->paused)
		return 0;
	if (vm->clock_saved) {
		c = vm->clock;
		/* no KVM_CLOCK_REALTIME: that would advance it by the time
		 * paused, the jump this avoids */
		c.flags = 0;
		if (ioctl(vm->vm_fd, KVM_SET_CLOCK, &c) < 0)
			r = -errno;
	}
	vm->paused = false;
	lift_pause(vm);
	return r;
}

bool vm_paused(const struct vm *vm)
{
	return vm->paused;
}

static void stop_cb(void *opaque, uint32_t events)
{
	struct vm *vm = opaque;
	uint64_t v;

	if (read(vm->stop_efd, &v, sizeof(v)) < 0 && errno != EAGAIN)
		return;
	if (vm_stopping(vm))
		loop_quit(vm->loop);
}

static int start(struct vm *vm)
{
	unsigned i;
	int r;

	if ((r = vcpu_signals_init()) < 0 ||
	    (r = loop_add_fd(vm->loop, vm->stop_efd, EPOLLIN, stop_cb, vm)) < 0 ||
	    (r = console_attach(vm->console, vm->loop, vm->serial)) < 0) {
		vm_stop(vm, VMM_EXIT_ERROR, "cannot start the event loop: %s", strerror(-r));
		return r;
	}
	for (i = 0; i < vm->nvcpus; i++) {
		r = vcpu_start(vm->vcpus[i]);
		if (r < 0) {
			vm_stop(vm, VMM_EXIT_ERROR, "cannot start vcpu %u thread: %s",
			        i, strerror(-r));
			return r;
		}
	}
	return 0;
}

int vm_run(struct vm *vm)
{
	unsigned i;
	int r;

	/* A failed start already called vm_stop(): go straight to joining. */
	if (start(vm) == 0) {
		r = loop_run(vm->loop);
		if (r < 0)
			vm_stop(vm, VMM_EXIT_ERROR, "event loop failed: %s", strerror(-r));
	}
	/* The stop flag is set: every kick from here on lands. */
	console_abandon(vm->console);
	for (i = 0; i < vm->nvcpus; i++)
		vcpu_kick(vm->vcpus[i]);
	for (i = 0; i < vm->nvcpus; i++)
		vcpu_join(vm->vcpus[i]);
	if (getenv("MVM_VIRTIO_STATS"))
		virtio_devs_print_stats(vm->virtio);
	if (vm->exit_cb)
		vm->exit_cb(vm->exit_opaque, vm->status, vm->reason);
	return vm->status;
}

const char *vm_exit_reason(const struct vm *vm)
{
	return vm->reason;
}

void vm_destroy(struct vm *vm)
{
	unsigned i;

	if (!vm)
		return;
	for (i = vm->nvcpus; i-- > 0;)
		vcpu_destroy(vm->vcpus[i]);
	virtio_devs_destroy(vm->virtio);
	devices_teardown(vm);
	free(vm->cpuid);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	loop_free(vm->loop);
	if (vm->stop_efd >= 0)
		close(vm->stop_efd);
	console_free(vm->console);
	guest_mem_free(&vm->mem);
	free(vm->cmdline);
	pthread_cond_destroy(&vm->pause_cond);
	pthread_mutex_destroy(&vm->pause_lock);
	free(vm);
}

int vm_fd(const struct vm *vm) { return vm->vm_fd; }
unsigned vm_nvcpus(const struct vm *vm) { return vm->nvcpus; }
const struct guest_mem *vm_guest_mem(const struct vm *vm) { return &vm->mem; }
uint32_t vm_tsc_khz(const struct vm *vm) { return vm->tsc_khz; }
struct io_bus *vm_pio_bus(struct vm *vm) { return &vm->pio; }
struct io_bus *vm_mmio_bus(struct vm *vm) { return &vm->mmio; }
struct virtio_devs *vm_virtio_devs(struct vm *vm)
{
	return vm->virtio;
}

struct loop *vm_loop(struct vm *vm) { return vm->loop; }

void vm_console_set_observer(struct vm *vm, vm_console_observer_cb cb, void *opaque)
{
	console_set_observer(vm->console, cb, opaque);
}

size_t vm_console_input(struct vm *vm, const uint8_t *buf, size_t len)
{
	return console_input(vm->console, buf, len);
}

int vm_request_ctrl_alt_del(struct vm *vm)
{
	return i8042_send_ctrl_alt_del(vm->i8042);
}

void vm_set_exit_observer(struct vm *vm, vm_exit_observer_cb cb, void *opaque)
{
	vm->exit_cb = cb;
	vm->exit_opaque = opaque;
}
