/* SPDX-License-Identifier: MIT */
#ifndef MVM_VCPU_H
#define MVM_VCPU_H

#include <linux/kvm.h>
#include <signal.h>

#include "vmm/arch/x86/boot.h"

struct vm;
struct vcpu;

/* Signal that knocks a vCPU thread out of KVM_RUN; its handler does nothing
 * and is installed without SA_RESTART by vcpu_signals_init(). */
#define VCPU_KICK_SIGNAL SIGUSR1

int vcpu_signals_init(void);

/* KVM_CREATE_VCPU and the state every vCPU starts with: CPUID from
 * `supported`, MSRs, FPU, LINT0/LINT1.  APs then wait for INIT-SIPI. */
int vcpu_create(struct vm *vm, unsigned id, int run_size,
                const struct kvm_cpuid2 *supported, struct vcpu **ret);
/* The boot vCPU only: registers at the kernel entry point. */
int vcpu_setup_boot(struct vcpu *v, const struct guest_mem *m, const struct boot_result *b);

int vcpu_start(struct vcpu *v);
/* Makes the thread leave KVM_RUN soon; it exits once vm_stopping(). */
void vcpu_kick(struct vcpu *v);
/* Once the VM is stopping: waits for the thread, kicking it again while
 * it lingers. */
void vcpu_join(struct vcpu *v);
void vcpu_destroy(struct vcpu *v);

#endif
