/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_REGS_H
#define MVM_X86_REGS_H

#include "vmm/memory.h"
#include "vmm/arch/x86/boot.h"

/*
 * Puts the boot vCPU at the kernel entry: for BOOT_ENTRY_LINUX64/ELF64 long
 * mode with the GDT at BOOT_GDT_START and identity page tables (0-4 GiB, 2 MiB
 * pages) at BOOT_PML4_START, rsi = zero page; for BOOT_ENTRY_PVH32 flat
 * 32-bit protected mode, paging off, ebx = hvm_start_info.  Writes the
 * tables into guest RAM, then sets sregs, regs and FPU on vcpu_fd.
 */
int regs_setup_boot_cpu(int vcpu_fd, const struct guest_mem *m, const struct boot_result *b);

/* Writes the GDT and page tables only (unit-testable without KVM). */
int regs_write_boot_tables(const struct guest_mem *m);

#endif
