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
 * interrupt source overrides) and DSDT (\_S5, COM1, the i8042, one device per
 * entry of devs) into guest RAM at ACPI_START.  *ret_rsdp gets the RSDP
 * address.  -EINVAL: nvcpus not in 1..VCPUS_MAX, ndevs > VIRTIO_MMIO_MAX or a
 * device not below 4 GiB; -EFAULT: the ACPI region is not RAM; -ENOSPC: the
 * tables do not fit in ACPI_MAX_SIZE.
 */
int acpi_build(const struct guest_mem *m, unsigned nvcpus,
               const struct acpi_mmio_dev *devs, unsigned ndevs, uint64_t *ret_rsdp);

/* Walks the tables from the RSDP in guest RAM (bounds-checked: the guest may
 * have rewritten them) and writes each as DIR/<SIG>.dat for iasl: RSDP.dat,
 * XSDT.dat, FACP.dat, APIC.dat, DSDT.dat.  -EINVAL for a malformed table. */
int acpi_dump(const struct guest_mem *m, uint64_t rsdp, const char *dir);

/* The IOAPIC's id in the MADT and the MP table: the first id after the
 * vCPUs' APIC ids (0..nvcpus-1), so the two never clash. */
static inline unsigned acpi_ioapic_id(unsigned nvcpus) { return nvcpus; }

/* Byte sum of a region; ACPI tables sum to 0. */
uint8_t acpi_checksum(const void *p, uint64_t len);

#endif
