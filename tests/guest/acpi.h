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
/* ACPI S5 through the FADT; returns only if it could not be attempted. */
void acpi_poweroff(void);

#endif
