/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "vmm/sandbox.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"
#include "vmm/vmm.h"
#include "vmm/arch/x86/cpuid.h"
#include "vmm/arch/x86/insn.h"
#include "vmm/arch/x86/regs.h"

/* vCPU threads only run KVM_RUN and device handlers: a small stack keeps
 * 32 of them cheap.  Sanitizers need more room per frame. */
#if defined(__SANITIZE_ADDRESS__)
#define VCPU_STACK_SIZE (1024 * 1024)
#else
#define VCPU_STACK_SIZE (256 * 1024)
#endif

#define MSR_IA32_TSC            0x00000010
#define MSR_IA32_SYSENTER_CS    0x00000174
#define MSR_IA32_SYSENTER_ESP   0x00000175
#define MSR_IA32_SYSENTER_EIP   0x00000176
#define MSR_IA32_MISC_ENABLE    0x000001a0
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102
#define MISC_ENABLE_FAST_STRING 0x1ULL
#define MSR_AMD64_HWCR          0xc0010015
#define HWCR_TSC_FREQ_SEL       (1ULL << 24)

#define APIC_LVT_LINT0   0x350
#define APIC_LVT_LINT1   0x360
#define APIC_MODE_NMI    0x4
#define APIC_MODE_EXTINT 0x7

struct vcpu {
	struct vm *vm;
	unsigned id;
	int fd;
	struct kvm_run *run;
	size_t run_size;
	pthread_t thread;
	bool started;
};

static void kick_handler(int sig)
{
	(void)sig;  /* only there to make KVM_RUN return EINTR */
}

int vcpu_signals_init(void)
{
	struct sigaction sa = { .sa_handler = kick_handler };

	sigemptyset(&sa.sa_mask);
	sa.sa_flags = 0;  /* no SA_RESTART: KVM_RUN must return */
	return sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

static int setup_cpuid(struct vcpu *v, const struct kvm_cpuid2 *supported)
{
	struct kvm_cpuid2 *c;
	int r = cpuid_build(supported, v->id, vm_nvcpus(v->vm), vm_tsc_khz(v->vm), &c);

	if (r < 0)
		return r;
	r = ioctl(v->fd, KVM_SET_CPUID2, c) < 0 ? -errno : 0;
	free(c);
	return r;
}

static int setup_msrs(struct vcpu *v)
{
	static const struct { uint32_t index; uint64_t data; } init[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_LSTAR, 0 },
		{ MSR_CSTAR, 0 }, { MSR_SYSCALL_MASK, 0 }, { MSR_KERNEL_GS_BASE, 0 },
		{ MSR_IA32_TSC, 0 }, { MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
	};
	const unsigned n = sizeof(init) / sizeof(init[0]);
	/* A union, not a struct with the header first: the header ends in a
	 * flexible array, which ISO C allows only at the end of a struct. */
	union {
		struct kvm_msrs hdr;
		char room[sizeof(struct kvm_msrs) +
			  sizeof(init) / sizeof(init[0]) * sizeof(struct kvm_msr_entry)];
	} msrs;
	unsigned i;
	int r;

	memset(&msrs, 0, sizeof(msrs));
	msrs.hdr.nmsrs = n;
	for (i = 0; i < n; i++) {
		msrs.hdr.entries[i].index = init[i].index;
		msrs.hdr.entries[i].data = init[i].data;
	}
	/* KVM_SET_MSRS returns how many it set, stopping at the first refusal. */
	r = ioctl(v->fd, KVM_SET_MSRS, &msrs);
	if (r < 0)
		return -errno;
	return (unsigned)r == n ? 0 : -EINVAL;
}

static int msr_rw(struct vcpu *v, unsigned long req, uint32_t index, uint64_t *data)
{
	union {
		struct kvm_msrs hdr;
		char room[sizeof(struct kvm_msrs) + sizeof(struct kvm_msr_entry)];
	} m;
	int r;

	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = 1;
	m.hdr.entries[0].index = index;
	m.hdr.entries[0].data = *data;
	r = ioctl(v->fd, req, &m);
	if (r < 0)
		return -errno;
	if (r != 1)
		return -EINVAL;
	*data = m.hdr.entries[0].data;
	return 0;
}

/* Real AMD firmware sets HWCR.TscFreqSel (the TSC counts at the P0
 * frequency); Linux calls its absence a firmware bug.  KVM takes the bit
 * from userspace since Linux 6.7; an older KVM refuses it, and the guest
 * only warns, so a refusal is not an error. */
static void setup_amd_hwcr(struct vcpu *v, const struct kvm_cpuid2 *supported)
{
	uint64_t hwcr = 0;

	if (!cpuid_is_amd(supported) ||
	    msr_rw(v, KVM_GET_MSRS, MSR_AMD64_HWCR, &hwcr) < 0)
		return;
	hwcr |= HWCR_TSC_FREQ_SEL;
	(void)msr_rw(v, KVM_SET_MSRS, MSR_AMD64_HWCR, &hwcr);
}

static int setup_fpu(struct vcpu *v)
{
	struct kvm_fpu fpu;

	memset(&fpu, 0, sizeof(fpu));
	fpu.fcw = 0x37f;     /* x87 default after FNINIT */
	fpu.mxcsr = 0x1f80;  /* SSE default: all exceptions masked */
	return ioctl(v->fd, KVM_SET_FPU, &fpu) < 0 ? -errno : 0;
}

static void set_lvt_mode(struct kvm_lapic_state *s, unsigned reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, &s->regs[reg], sizeof(v));
	v = (v & ~0x700u) | (mode << 8);
	memcpy(&s->regs[reg], &v, sizeof(v));
}

/* Virtual wire mode as firmware leaves it: PIC interrupts arrive on LINT0,
 * NMIs on LINT1. */
static int setup_lapic(struct vcpu *v)
{
	struct kvm_lapic_state s;

	if (ioctl(v->fd, KVM_GET_LAPIC, &s) < 0)
		return -errno;
	set_lvt_mode(&s, APIC_LVT_LINT0, APIC_MODE_EXTINT);
	set_lvt_mode(&s, APIC_LVT_LINT1, APIC_MODE_NMI);
	return ioctl(v->fd, KVM_SET_LAPIC, &s) < 0 ? -errno : 0;
}

int vcpu_create(struct vm *vm, unsigned id, int run_size,
                const struct kvm_cpuid2 *supported, struct vcpu **ret)
{
	struct vcpu *v = calloc(1, sizeof(*v));
	int r;

	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->run = MAP_FAILED;
	v->fd = ioctl(vm_fd(vm), KVM_CREATE_VCPU, (unsigned long)id);
	if (v->fd < 0) {
		r = -errno;
		goto fail;
	}
	v->run_size = (size_t)run_size;
	v->run = mmap(NULL, v->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	/* CPUID first: KVM checks MSRs and LAPIC state against it. */
	if ((r = setup_cpuid(v, supported)) < 0 || (r = setup_msrs(v)) < 0 ||
	    (r = setup_fpu(v)) < 0 || (r = setup_lapic(v)) < 0)
		goto fail;
	setup_amd_hwcr(v, supported);
	*ret = v;
	return 0;
fail:
	vcpu_destroy(v);
	return r;
}

int vcpu_setup_boot(struct vcpu *v, const struct guest_mem *m, const struct boot_result *b)
{
	return regs_setup_boot_cpu(v->fd, m, b);
}

static unsigned long long vcpu_rip(struct vcpu *v)
{
	struct kvm_regs regs;

	if (ioctl(v->fd, KVM_GET_REGS, &regs) < 0)
		return ~0ULL;
	return regs.rip;
}

/* Logs unclaimed accesses when MVM_DEBUG is set, at most 32 lines: Linux
 * probes many absent ports, and a busy guest would flood stderr. */
static void log_unclaimed(const char *bus, uint64_t addr, uint32_t len, bool write)
{
	static atomic_int budget = INT_MIN;  /* INT_MIN: not read from the environment yet */
	int left = atomic_load(&budget);

	if (left == INT_MIN) {
		int init = getenv("MVM_DEBUG") ? 32 : 0;

		atomic_compare_exchange_strong(&budget, &left, init);
	}
	if (atomic_fetch_sub(&budget, 1) > 0)
		fprintf(stderr, "mvm-vmm: unclaimed %s %s 0x%llx len %u\n", bus,
		        write ? "write" : "read", (unsigned long long)addr, len);
}

static void handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint8_t *p = (uint8_t *)run + run->io.data_offset;
	struct io_bus *bus = vm_pio_bus(v->vm);
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t i;
	int r;

	/* String instructions (rep ins/outs) arrive as count items. */
	for (i = 0; i < run->io.count; i++, p += run->io.size) {
		if (out)
			r = io_bus_write(bus, run->io.port, p, run->io.size);
		else
			r = io_bus_read(bus, run->io.port, p, run->io.size);
		if (r == -ENOENT)
			log_unclaimed("pio", run->io.port, run->io.size, out);
	}
}

static void handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	struct io_bus *bus = vm_mmio_bus(v->vm);
	uint32_t len = run->mmio.len;
	int r;

	if (len > sizeof(run->mmio.data))
		len = sizeof(run->mmio.data);
	if (run->mmio.is_write)
		r = io_bus_write(bus, run->mmio.phys_addr, run->mmio.data, len);
	else
		r = io_bus_read(bus, run->mmio.phys_addr, run->mmio.data, len);
	if (r == -ENOENT)
		log_unclaimed("mmio", run->mmio.phys_addr, len, run->mmio.is_write);
}

static void handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_stop(v->vm, VMM_EXIT_OK, "guest shutdown (vcpu %u)", v->id);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_stop(v->vm, VMM_EXIT_OK, "guest reset (vcpu %u)", v->id);
		break;
	default:
		vm_stop(v->vm, VMM_EXIT_EMULATION, "guest system event %u (vcpu %u)",
		        v->run->system_event.type, v->id);
		break;
	}
}

/* Reads up to max code bytes at linear address rip, page by page (an
 * instruction may straddle two); returns how many it could. */
static size_t read_code(struct vcpu *v, uint64_t rip, uint8_t *buf, size_t max)
{
	size_t n = 0;

	while (n < max) {
		struct kvm_translation tr = { .linear_address = rip + n };
		size_t chunk = 4096 - ((rip + n) & 4095);
		const uint8_t *p;

		if (chunk > max - n)
			chunk = max - n;
		if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid)
			break;
		p = guest_mem_ptr(vm_guest_mem(v->vm), tr.physical_address, chunk);
		if (!p)
			break;
		memcpy(buf + n, p, chunk);
		n += chunk;
	}
	return n;
}

/* insn_cpu.map: the host address of len bytes at linear address lin, all
 * within one guest page, through the guest's page tables. */
static void *map_guest(void *opaque, uint64_t lin, size_t len, bool write)
{
	struct vcpu *v = opaque;
	struct kvm_translation tr = { .linear_address = lin };

	if ((lin & 4095) + len > 4096 || ioctl(v->fd, KVM_TRANSLATE, &tr) < 0 || !tr.valid ||
	    (write && !tr.writeable))
		return NULL;
	return guest_mem_ptr(vm_guest_mem(v->vm), tr.physical_address, len);
}

/* MVM_DEBUG: the first 16 finished instructions, so what a host needs can
 * be seen. */
static void log_finished(const uint8_t *code, size_t len, uint64_t rip)
{
	char hex[3 * 5 + 1] = "";
	size_t i;

	static atomic_int budget = INT_MIN;  /* INT_MIN: not read from the environment yet */
	int left = atomic_load(&budget);

	if (left == INT_MIN) {
		int init = getenv("MVM_DEBUG") ? 16 : 0;

		atomic_compare_exchange_strong(&budget, &left, init);
	}
	if (atomic_fetch_sub(&budget, 1) <= 0)
		return;
	for (i = 0; i < len && i < 5; i++)
		snprintf(hex + 3 * i, sizeof(hex) - 3 * i, " %02x", code[i]);
	fprintf(stderr, "mvm-vmm: finished instruction%s... at rip 0x%llx\n", hex,
	        (unsigned long long)rip);
}

/* kvm_regs field of each register in the encoding's order (insn.h). */
static uint64_t *gpr_slot(struct kvm_regs *r, unsigned i)
{
	uint64_t *const slot[16] = {
		(uint64_t *)&r->rax, (uint64_t *)&r->rcx, (uint64_t *)&r->rdx, (uint64_t *)&r->rbx,
		(uint64_t *)&r->rsp, (uint64_t *)&r->rbp, (uint64_t *)&r->rsi, (uint64_t *)&r->rdi,
		(uint64_t *)&r->r8, (uint64_t *)&r->r9, (uint64_t *)&r->r10, (uint64_t *)&r->r11,
		(uint64_t *)&r->r12, (uint64_t *)&r->r13, (uint64_t *)&r->r14, (uint64_t *)&r->r15,
	};
	return slot[i];
}

/*
 * Where the host has no hardware virtualization, KVM emulates guest kernel
 * code, and its emulator reports an emulation failure on instructions it
 * lacks (int3 outside real mode, fwait, popcnt, clac/stac, cmpxchg16b:
 * insn.h).  Linux
 * runs them on every boot, so execute them here as the CPU would and
 * resume.  Returns false, touching nothing, for any other failure.
 */
static bool finish_insn(struct vcpu *v)
{
	uint8_t code[INSN_MAX_LEN], vector = 0;
	struct insn_cpu cpu = { .rip = 0 };
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct kvm_fpu fpu;
	enum insn_result res;
	size_t len;
	unsigned i;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(v->fd, KVM_GET_FPU, &fpu) < 0 || ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		return false;
	if (ev.exception.injected || ev.exception.pending)
		return false;  /* a fault while delivering one: not ours to fix */
	len = read_code(v, regs.rip, code, sizeof(code));
	for (i = 0; i < 16; i++)
		cpu.gpr[i] = *gpr_slot(&regs, i);
	cpu.rip = regs.rip;
	cpu.rflags = regs.rflags;
	cpu.cr0 = sregs.cr0;
	cpu.cpl = sregs.cs.selector & 3;
	cpu.long64 = sregs.cs.l;
	cpu.fsw = fpu.fsw;
	cpu.fcw = fpu.fcw;
	cpu.fs_base = sregs.fs.base;
	cpu.gs_base = sregs.gs.base;
	cpu.map = map_guest;
	cpu.map_opaque = v;
	res = insn_finish(&cpu, code, len, &vector);
	if (res == INSN_UNKNOWN)
		return false;
	log_finished(code, len, regs.rip);
	for (i = 0; i < 16; i++)
		*gpr_slot(&regs, i) = cpu.gpr[i];
	regs.rip = cpu.rip;
	regs.rflags = cpu.rflags;
	if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
		return false;
	if (res == INSN_DONE)
		return true;
	ev.exception.injected = 1;
	ev.exception.nr = vector;
	ev.exception.has_error_code = res == INSN_RAISE_ERR;
	ev.exception.error_code = 0;
	ev.flags = 0;
	return ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) == 0;
}

/*
 * One switch over every KVM exit reason, kept together so the mapping from
 * exit to VMM exit status (vmm.h) reads in one place.  Returns false when
 * the thread must stop.
 */
static bool handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;  /* kicked: the loop re-checks the stop flag */
	case KVM_EXIT_SHUTDOWN:
		vm_stop(v->vm, VMM_EXIT_TRIPLE_FAULT, "guest triple fault (vcpu %u)", v->id);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		handle_system_event(v);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		if (finish_insn(v))
			return true;
		vm_stop(v->vm, VMM_EXIT_INTERNAL_ERROR,
		        "KVM internal error, suberror %u (vcpu %u, rip 0x%llx)",
		        run->internal.suberror, v->id, vcpu_rip(v));
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		vm_stop(v->vm, VMM_EXIT_EMULATION,
		        "KVM entry failed, hardware reason 0x%llx (vcpu %u)",
		        (unsigned long long)run->fail_entry.hardware_entry_failure_reason,
		        v->id);
		return false;
	case KVM_EXIT_UNKNOWN:
		vm_stop(v->vm, VMM_EXIT_EMULATION,
		        "unknown KVM exit, hardware reason 0x%llx (vcpu %u, rip 0x%llx)",
		        (unsigned long long)run->hw.hardware_exit_reason, v->id, vcpu_rip(v));
		return false;
	case KVM_EXIT_HLT:
		/* The in-kernel irqchip handles HLT; this means it is off. */
		vm_stop(v->vm, VMM_EXIT_EMULATION, "unexpected HLT exit (vcpu %u, rip 0x%llx)",
		        v->id, vcpu_rip(v));
		return false;
	default:
		vm_stop(v->vm, VMM_EXIT_EMULATION, "unhandled KVM exit reason %u (vcpu %u, rip 0x%llx)",
		        run->exit_reason, v->id, vcpu_rip(v));
		return false;
	}
}

/* vm.pause: hold here until resumed.  Then KVM_KVMCLOCK_CTRL sets
 * PVCLOCK_GUEST_STOPPED, so a guest's soft-lockup watchdog knows the gap
 * was the host's doing (EINVAL: the guest has no kvmclock; nothing to
 * tell). */
static void park(struct vcpu *v)
{
	if (!vm_park(v->vm))
		return;
	__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	(void)ioctl(v->fd, KVM_KVMCLOCK_CTRL, 0);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	int r = sandbox_enter_vcpu(v->id);

	if (r < 0) {
		vm_stop(v->vm, VMM_EXIT_ERROR, "cannot sandbox vcpu %u: %s", v->id, strerror(-r));
		return NULL;
	}
	while (!vm_stopping(v->vm)) {
		if (vm_pausing(v->vm)) {
			park(v);
			continue;
		}
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			/* EINTR: kicked.  EAGAIN: an AP just left wait-for-SIPI. */
			if (errno == EINTR || errno == EAGAIN) {
				/* The kick did its job; the loop re-checks the flags
				 * set before it.  Left set, a kick for a pause that
				 * was lifted before this vCPU parked would bounce
				 * every KVM_RUN. */
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				continue;
			}
			vm_stop(v->vm, VMM_EXIT_ERROR, "KVM_RUN failed on vcpu %u: %s",
			        v->id, strerror(errno));
			break;
		}
		if (!handle_exit(v))
			break;
	}
	if (getenv("MVM_DEBUG")) {
		/* Where each vCPU was when the VM stopped: for guests that
		 * stall without an exit (docs/guests.md, SMP). */
		struct kvm_regs regs;
		struct kvm_sregs sregs;

		if (ioctl(v->fd, KVM_GET_REGS, &regs) == 0 &&
		    ioctl(v->fd, KVM_GET_SREGS, &sregs) == 0)
			fprintf(stderr, "mvm-vmm: vcpu %u stopped at cs 0x%x rip 0x%llx rflags 0x%llx "
			        "cr0 0x%llx cr3 0x%llx rax 0x%llx rsp 0x%llx\n", v->id,
			        sregs.cs.selector, (unsigned long long)regs.rip,
			        (unsigned long long)regs.rflags, (unsigned long long)sregs.cr0,
			        (unsigned long long)sregs.cr3, (unsigned long long)regs.rax,
			        (unsigned long long)regs.rsp);
	}
	return NULL;
}

int vcpu_start(struct vcpu *v)
{
	pthread_attr_t attr;
	char name[16];
	int r;

	pthread_attr_init(&attr);
	pthread_attr_setstacksize(&attr, VCPU_STACK_SIZE);
	r = -pthread_create(&v->thread, &attr, vcpu_thread, v);
	pthread_attr_destroy(&attr);
	if (r < 0)
		return r;
	v->started = true;
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(v->thread, name);
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->started)
		return;
	/* immediate_exit covers a thread that is about to enter KVM_RUN; the
	 * signal covers one already inside it. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

/* Kicks again every 50 ms until the thread is gone: a kick that arrived
 * while the thread was outside KVM_RUN, about to block in a write to the
 * console, would otherwise be lost. */
void vcpu_join(struct vcpu *v)
{
	struct timespec ts;

	if (!v->started)
		return;
	for (;;) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000 * 1000;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		if (pthread_timedjoin_np(v->thread, NULL, &ts) != ETIMEDOUT)
			break;
		vcpu_kick(v);
	}
	v->started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	if (!v)
		return;
	vcpu_join(v);
	if (v->run != MAP_FAILED)
		munmap(v->run, v->run_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v);
}
