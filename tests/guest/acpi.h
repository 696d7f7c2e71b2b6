/* SPDX-License-Identifier: MIT */
#ifndef MVMTEST_ACPI_H
#define MVMTEST_ACPI_H

#include "lib.h"

#define ACPI_MAX_CPUS MAX_CPUS

/* Enabled local APIC / x2APIC ids from the MADT; returns the count or -1
 * if there is no MADT.  At most max ids are stored. */
int acpi_madt_cpus(uint32_t *ids, unsigned max);
/* Enabled processors in the MP configuration table; -1 if none is found. */
int mptable_cpus(void);
/* The DSDT's AML (after its header) and its length; NULL without a FADT. */
const uint8_t *acpi_dsdt_aml(uint32_t *ret_len);
/* Address of the IOAPIC serving gsi (the MADT entry with the highest GSI
 * base not above it) and that base; 0 if the MADT lists none. */
uint64_t acpi_ioapic_for_gsi(uint32_t gsi, uint32_t *ret_base_gsi);
/* ACPI S5 through the FADT; returns only if it could not be attempted. */
void acpi_poweroff(void);

#endif
