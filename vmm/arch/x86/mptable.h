/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_MPTABLE_H
#define MVM_X86_MPTABLE_H

#include "vmm/memory.h"

/* Intel MP spec 1.4 floating pointer and configuration table at
 * MPTABLE_START: one processor entry per vCPU (APIC id = index), ISA bus,
 * the IOAPIC, and 16 ISA interrupt assignments. */
int mptable_build(const struct guest_mem *m, unsigned nvcpus);

#endif
