/* SPDX-License-Identifier: MIT */
/*
 * The smp scenario: count CPUs in the MADT and the MP table, then start each
 * AP with INIT-SIPI-SIPI through the xAPIC.  CPL0 code is emulated slowly
 * here, so the waits are short and bounded by the TSC.
 */
#include "acpi.h"
#include "smp.h"

#define LAPIC_BASE   0xfee00000UL
#define LAPIC_ID     0x020
#define LAPIC_SVR    0x0f0
#define LAPIC_ICR_LO 0x300
#define LAPIC_ICR_HI 0x310
#define ICR_INIT     0x4500  /* INIT, level assert */
#define ICR_SIPI     0x4600  /* start-up */
#define ICR_BUSY     0x1000

/* ~1 s at a 2-3 GHz TSC; generous for an emulated real-to-long switch. */
#define AP_TIMEOUT_TSC 3000000000UL

extern char tramp_start[], tramp_end[];
static volatile uint32_t aps_up;

uint32_t lapic_read(unsigned reg) { return mmio_read32(LAPIC_BASE + reg); }
void lapic_write(unsigned reg, uint32_t v) { mmio_write32(LAPIC_BASE + reg, v); }
uint32_t lapic_id(void) { return lapic_read(LAPIC_ID) >> 24; }

void lapic_enable(void)
{
	lapic_write(LAPIC_SVR, 0x100 | VEC_SPURIOUS);
}

static void send_ipi(uint32_t apic_id, uint32_t icr)
{
	lapic_write(LAPIC_ICR_HI, apic_id << 24);
	lapic_write(LAPIC_ICR_LO, icr);
	for (unsigned i = 0; i < 1000 && (lapic_read(LAPIC_ICR_LO) & ICR_BUSY); i++)
		cpu_relax();
}

/* C entry of each AP (from trampoline.S), on its own stack. */
void ap_main(void);
void ap_main(void)
{
	cpu_load_idt();
	kprintf("MVMTEST cpu apic=%u up\n", lapic_id());
	__asm__ volatile("lock incl %0" : "+m"(aps_up) : : "memory");
	for (;;)
		__asm__ volatile("cli; hlt");
}

static bool start_ap(uint32_t id)
{
	uint32_t before = aps_up;
	uint64_t t0;

	send_ipi(id, ICR_INIT);
	delay(200);
	send_ipi(id, ICR_SIPI | (TRAMPOLINE_BASE >> 12));
	delay(200);
	if (aps_up == before)
		send_ipi(id, ICR_SIPI | (TRAMPOLINE_BASE >> 12));
	for (t0 = rdtsc(); aps_up == before; cpu_relax())
		if (rdtsc() - t0 > AP_TIMEOUT_TSC)
			return false;
	return true;
}

void smp_run(void)
{
	uint32_t ids[MAX_CPUS], self;
	int madt = acpi_madt_cpus(ids, MAX_CPUS);
	int mp = mptable_cpus();

	kprintf("MVMTEST smp madt cpus=%d\n", madt < 0 ? 0 : madt);
	kprintf("MVMTEST smp mptable cpus=%d\n", mp < 0 ? 0 : mp);
	if (madt < 0)
		fail("smp: no MADT");
	if (madt != mp)
		fail("smp: madt cpus=%d mptable cpus=%d", madt, mp);
	if (madt > MAX_CPUS)
		fail("smp: %d cpus, the guest supports %d", madt, MAX_CPUS);
	memcpy((void *)TRAMPOLINE_BASE, tramp_start, (size_t)(tramp_end - tramp_start));
	lapic_enable();
	self = lapic_id();
	for (int i = 0; i < madt; i++)
		if (ids[i] != self && !start_ap(ids[i]))
			fail("smp: cpu apic=%u did not start", ids[i]);
	kprintf("MVMTEST smp ok cpus=%u\n", aps_up + 1);
}
