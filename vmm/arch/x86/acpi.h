/* SPDX-License-Identifier: MIT */
#ifndef MVM_X86_ACPI_H
#define MVM_X86_ACPI_H

#include <stdint.h>
#include "vmm/memory.h"

/* A virtio-mmio device to describe in the DSDT (_HID "LNRO0005"). */
struct acpi_mmio_dev { uint64_t base, size; uint32_t gsi; };

/*
 * Writes RSDP, XSDT, FADT (hardware-reduced, sleep control/status registers
 * at ACPI_SLEEP_{CTL,STS}_PORT), MADT (one local APIC per vCPU, the IOAPIC,
 * interrupt source overrides) and DSDT (\_S5, COM1, one device per entry of
 * devs) into guest RAM at ACPI_START.  *ret_rsdp gets the RSDP address.
 */
int acpi_build(const struct guest_mem *m, unsigned nvcpus,
               const struct acpi_mmio_dev *devs, unsigned ndevs, uint64_t *ret_rsdp);

/* Writes each table as DIR/<SIG>.dat (e.g. DSDT.dat, APIC.dat) for iasl. */
int acpi_dump(const struct guest_mem *m, uint64_t rsdp, const char *dir);

/* Byte sum of a region; ACPI tables sum to 0. */
uint8_t acpi_checksum(const void *p, uint64_t len);

#endif
