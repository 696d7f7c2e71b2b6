/* SPDX-License-Identifier: MIT */
/*
 * Guest-physical memory map of an mvm x86-64 microVM.  Every guest address
 * and size the VMM uses is named here and nowhere else.
 *
 *   0x0000_0000  real-mode IVT / BDA (left zero)
 *   0x0000_0500  boot GDT                      BOOT_GDT_START
 *   0x0000_0520  boot IDT (empty)              BOOT_IDT_START
 *   0x0000_6000  PVH hvm_start_info            PVH_INFO_START
 *   0x0000_6040  PVH memory map entries        PVH_MEMMAP_START
 *   0x0000_7000  Linux zero page (boot_params) ZERO_PAGE_START
 *   0x0000_9000  PML4                          BOOT_PML4_START
 *   0x0000_a000  PDPT                          BOOT_PDPT_START
 *   0x0000_b000  4 page directories (4 GiB)    BOOT_PD_START
 *   0x0002_0000  kernel command line           CMDLINE_START
 *   0x0009_fc00  MP floating pointer + table   MPTABLE_START
 *   0x000e_0000  ACPI RSDP, then tables        ACPI_START
 *   0x0010_0000  kernel (bzImage pm code, or ELF segments)
 *        ...     initrd, page aligned, as high as allowed below the hole
 *   0xc000_0000  32-bit MMIO hole (1 GiB)      MMIO_HOLE_START
 *   0xd000_0000  virtio-mmio windows           VIRTIO_MMIO_START
 *   0xfec0_0000  IOAPIC                        IOAPIC_START
 *   0xfee0_0000  local APIC                    LAPIC_START
 *   0x1_0000_0000 RAM above the hole           HIGH_RAM_START
 */
#ifndef MVM_X86_LAYOUT_H
#define MVM_X86_LAYOUT_H

#define KiB(x) ((unsigned long long)(x) << 10)
#define MiB(x) ((unsigned long long)(x) << 20)
#define GiB(x) ((unsigned long long)(x) << 30)

/* Low memory: boot structures the VMM writes before the first instruction. */
#define BOOT_GDT_START       0x500ULL
#define BOOT_GDT_ENTRIES     4          /* null, code64, data, tss */
#define BOOT_IDT_START       0x520ULL
#define PVH_INFO_START       0x6000ULL
#define PVH_MEMMAP_START     0x6040ULL
#define PVH_MEMMAP_MAX       8
#define ZERO_PAGE_START      0x7000ULL
#define BOOT_STACK_POINTER   0x8ff0ULL  /* 64-bit entry stack, below PML4 */
#define BOOT_PML4_START      0x9000ULL
#define BOOT_PDPT_START      0xa000ULL
#define BOOT_PD_START        0xb000ULL  /* 4 pages, 2 MiB pages: map 0-4 GiB */
#define BOOT_PD_COUNT        4
#define CMDLINE_START        0x20000ULL
#define CMDLINE_MAX_SIZE     0x10000ULL /* including the NUL */

/* Legacy area: 640 KiB of conventional RAM ends where the EBDA begins. */
#define EBDA_START           0x9fc00ULL
#define MPTABLE_START        EBDA_START
#define MPTABLE_MAX_SIZE     (0xa0000ULL - MPTABLE_START)
#define ACPI_START           0xe0000ULL  /* inside the BIOS scan area */
#define ACPI_MAX_SIZE        0x20000ULL  /* up to 1 MiB */
#define BIOS_AREA_END        0x100000ULL

/* Kernel placement. */
#define HIMEM_START          0x100000ULL /* bzImage protected-mode code */
#define INITRD_ALIGN         0x1000ULL

/* The 32-bit MMIO hole and the devices in it. */
#define MMIO_HOLE_START      0xc0000000ULL
#define MMIO_HOLE_SIZE       0x40000000ULL
#define HIGH_RAM_START       0x100000000ULL
#define VIRTIO_MMIO_START    0xd0000000ULL
#define VIRTIO_MMIO_SIZE     0x1000ULL   /* one window per device */
#define VIRTIO_MMIO_MAX      16
/* Virtio GSIs: 5, 6, 7, then 10..22.  8 (RTC) and 9 (the ACPI SCI, level
 * triggered in the MADT) are left alone, so every virtio line is a plain
 * edge-triggered IOAPIC pin that irqfd can drive. */
#define VIRTIO_IRQ_BASE      5
#define VIRTIO_IRQ_SKIP_FROM 8           /* first GSI skipped */
#define VIRTIO_IRQ_RESUME    10          /* first GSI after the skip */
static inline unsigned virtio_slot_gsi(unsigned slot)
{
	unsigned gsi = VIRTIO_IRQ_BASE + slot;

	return gsi < VIRTIO_IRQ_SKIP_FROM ? gsi : gsi + (VIRTIO_IRQ_RESUME - VIRTIO_IRQ_SKIP_FROM);
}
#define IOAPIC_START         0xfec00000ULL
#define LAPIC_START          0xfee00000ULL

/* KVM needs three pages for the real-mode TSS and one for the EPT identity
 * map on Intel; place them at the top of the hole, clear of every device. */
#define KVM_TSS_START        0xfffbd000ULL
#define KVM_IDENTITY_MAP     0xfffbc000ULL

/* Legacy I/O ports and IRQs. */
#define I8042_DATA_PORT      0x60
#define I8042_CMD_PORT       0x64
#define I8042_IRQ            1
#define COM1_PORT            0x3f8
#define COM1_IRQ             4
#define ACPI_SLEEP_CTL_PORT  0x3c0  /* FADT SLEEP_CONTROL_REG (1 byte) */
#define ACPI_SLEEP_STS_PORT  0x3c1  /* FADT SLEEP_STATUS_REG (1 byte) */
#define ACPI_S5_SLP_TYP      5      /* value the DSDT's \_S5 package names */
#define ACPI_SCI_IRQ         9

/* Guest RAM bounds the VMM accepts. */
#define GUEST_MEM_MIN        MiB(16)
#define GUEST_MEM_MAX        GiB(512)
#define VCPUS_MAX            32

#endif
