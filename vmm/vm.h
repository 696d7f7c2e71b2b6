/* SPDX-License-Identifier: MIT */
#ifndef MVM_VM_H
#define MVM_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/io.h"
#include "vmm/loop.h"
#include "vmm/memory.h"
#include "vmm/virtio_devs.h"

/*
 * One microVM: guest memory, the KVM VM, legacy devices, vCPU threads and
 * the main-thread loop.  Lifecycle: vm_create() (everything up to the first
 * instruction), hook registration, vm_run() (returns the exit status once
 * every vCPU thread has stopped), vm_destroy().
 */

#define VM_SERIAL_LOG_MAX_DEFAULT MiB(1)

struct vm_config {
	const char *kernel_path;   /* may be NULL only with dump_acpi */
	const char *initrd_path;   /* NULL: none */
	const char *cmdline;       /* NULL: empty */
	uint64_t mem_size;
	unsigned nvcpus;
	const char *serial_path;   /* NULL: stdio (output stdout, input stdin) */
	const char *serial_log_path;
	uint64_t serial_log_max;
	bool dump_acpi;            /* build memory and tables only; no KVM */
	struct virtio_devs_config virtio;  /* disks, NICs, rng, vsock */
};

/* Why vm_create() failed: a vmm_exit_status and a one-line message of the
 * form "<what was wrong>; <what to do>" (no program name, no newline). */
struct vm_error {
	int status;
	char msg[384];
};

struct vm;

/* Fills *err (status + formatted message) and returns r if negative, else
 * -EINVAL: the one way VM set-up code reports a failure. */
int vm_fail(struct vm_error *err, int status, int r, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

int vm_create(const struct vm_config *cfg, struct vm **ret, struct vm_error *err);
/* Runs the guest until it stops; returns its vmm_exit_status (or 128+signo
 * when stopped by vm_stop() for a signal).  Call once. */
int vm_run(struct vm *vm);
/* The reason the VM stopped, once vm_run() returned ("" before). */
const char *vm_exit_reason(const struct vm *vm);
void vm_destroy(struct vm *vm);

/* --dump-acpi: writes the ACPI tables built by vm_create() to dir. */
int vm_dump_acpi(struct vm *vm, const char *dir, struct vm_error *err);

/*
 * Ends the VM: the first caller's status and reason win, later calls do
 * nothing.  Safe from any thread (vCPU threads, devices, the main loop).
 */
void vm_stop(struct vm *vm, int status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
bool vm_stopping(const struct vm *vm);

/*
 * Pause (vm.pause, main thread): every vCPU thread leaves KVM_RUN and parks
 * until vm_resume(); the main loop (devices, the daemon link) runs on.
 * kvmclock is read at pause and written back at resume, so the guest's
 * clocks do not move while paused: its wall time falls behind by the
 * pause (an NTP client corrects it).  vm_pause: 0, -ETIMEDOUT (a vCPU did
 * not park within 5 s; the pause is lifted), -ESHUTDOWN (the VM stops).
 * vm_resume: 0, or -errno of KVM_SET_CLOCK (the vCPUs run anyway).
 */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_paused(const struct vm *vm);
/* vCPU threads: whether to park, and parking until the pause is lifted;
 * vm_park returns false when the VM stops meanwhile. */
bool vm_pausing(const struct vm *vm);
bool vm_park(struct vm *vm);

/* For the vCPU threads and devices. */
int vm_fd(const struct vm *vm);
unsigned vm_nvcpus(const struct vm *vm);
const struct guest_mem *vm_guest_mem(const struct vm *vm);
/* KVM's guest TSC frequency in kHz, 0 when KVM cannot say. */
uint32_t vm_tsc_khz(const struct vm *vm);
struct io_bus *vm_pio_bus(struct vm *vm);
struct io_bus *vm_mmio_bus(struct vm *vm);

/*
 * Hooks for the daemon link (vmm/control.c).  Register them between
 * vm_create() and vm_run().
 */
/* The virtio devices, for run-time limits, balloon and stats (main thread;
 * NULL with dump_acpi). */
struct virtio_devs *vm_virtio_devs(struct vm *vm);

/* Main-thread event loop: plug file descriptors in with loop_add_fd(). */
struct loop *vm_loop(struct vm *vm);

/* Called with every chunk of guest serial output, from the thread that
 * emitted it (a vCPU thread), in order.  The first call means "booted". */
typedef void (*vm_console_observer_cb)(void *opaque, const uint8_t *buf, size_t len);
void vm_console_set_observer(struct vm *vm, vm_console_observer_cb cb, void *opaque);

/* Injects serial input; thread-safe.  Returns the bytes queued, which is
 * less than len only when the input queue (4 KiB) is full. */
size_t vm_console_input(struct vm *vm, const uint8_t *buf, size_t len);

/* Presses Ctrl-Alt-Del on the guest keyboard; -ENOSPC if its buffer is full. */
int vm_request_ctrl_alt_del(struct vm *vm);

/* Called once on the main thread, after every vCPU stopped and before
 * vm_run() returns, with the final status and reason. */
typedef void (*vm_exit_observer_cb)(void *opaque, int status, const char *reason);
void vm_set_exit_observer(struct vm *vm, vm_exit_observer_cb cb, void *opaque);

#endif
