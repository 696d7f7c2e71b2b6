/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_REGS_H
#define MVM_X86_REGS_H

#include <linux/kvm.h>

#include "vmm/memory.h"
#include "vmm/arch/x86/boot.h"

/* Boot GDT selectors (entries: null, code, data, TSS). */
#define BOOT_SEL_CODE 0x08
#define BOOT_SEL_DATA 0x10
#define BOOT_SEL_TSS  0x18

/*
 * Puts the boot vCPU at the kernel entry: for BOOT_ENTRY_LINUX64/ELF64 long
 * mode with the GDT at BOOT_GDT_START and identity page tables (0-4 GiB, 2 MiB
 * pages) at BOOT_PML4_START, rsi = zero page; for BOOT_ENTRY_PVH32 flat
 * 32-bit protected mode, paging off, ebx = hvm_start_info (the GDT's code
 * entry is then a 32-bit one).  Writes the tables into guest RAM, then sets
 * sregs, regs and the default FPU state on vcpu_fd.
 */
int regs_setup_boot_cpu(int vcpu_fd, const struct guest_mem *m, const struct boot_result *b);

/* Writes the long-mode GDT, the empty IDT and the page tables only
 * (unit-testable without KVM). */
int regs_write_boot_tables(const struct guest_mem *m);

/* Fills the entry state into sregs (start from KVM_GET_SREGS's values, so
 * apic_base and the interrupt bitmap are kept) and regs (overwritten).
 * No KVM needed; regs_setup_boot_cpu() uses it. */
void regs_fill_boot(const struct boot_result *b, struct kvm_sregs *sregs, struct kvm_regs *regs);

#endif
