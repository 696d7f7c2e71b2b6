/* SPDX-License-Identifier: MIT */
/* MP tables, read back the way a guest finds them: scan the EBDA for the
 * floating pointer, follow it, walk the base table entries. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/check.h"
#include "vmm/arch/x86/acpi.h"
#include "vmm/arch/x86/layout.h"
#include "vmm/arch/x86/mptable.h"

#define MEM_SIZE MiB(2)

static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s = (uint8_t)(s + *p++);
	return s;
}

/* Linux scans the first KiB of the EBDA on 16-byte boundaries. */
static const uint8_t *find_mpf(const uint8_t *mem)
{
	for (uint64_t a = EBDA_START; a + 16 <= EBDA_START + 1024; a += 16)
		if (!memcmp(mem + a, "_MP_", 4) && sum(mem + a, 16) == 0)
			return mem + a;
	return NULL;
}

struct seen { unsigned cpus, bsp, buses, ioapics, ints, lints, pin_used; int pit_pin; };

static void check_entry(const uint8_t *e, unsigned nvcpus, struct seen *s)
{
	switch (e[0]) {
	case 0:
		CHECK_EQ(e[1], s->cpus);        /* APIC id = index */
		CHECK_EQ(e[2], 0x14);
		CHECK(e[3] & 1);                /* enabled */
		s->bsp += (e[3] & 2) ? 1 : 0;
		CHECK_EQ(!!(e[3] & 2), s->cpus == 0);
		CHECK_EQ((rd32(e + 4) >> 8) & 0xf, 6);  /* family 6 */
		CHECK(rd32(e + 8) & (1u << 9));  /* APIC feature */
		s->cpus++;
		break;
	case 1:
		CHECK(!memcmp(e + 2, "ISA   ", 6));
		s->buses++;
		break;
	case 2:
		CHECK_EQ(e[1], acpi_ioapic_id(nvcpus));
		CHECK_EQ(e[2], 0x11);
		CHECK(e[3] & 1);
		CHECK_EQ(rd32(e + 4), IOAPIC_START);
		s->ioapics++;
		break;
	case 3:
		CHECK_EQ(e[1], 0);              /* INT */
		CHECK_EQ(e[4], 0);              /* ISA bus */
		CHECK(e[5] < 16 && e[5] != 2);
		CHECK_EQ(e[6], acpi_ioapic_id(nvcpus));
		CHECK(!(s->pin_used & (1u << e[7])));  /* one IRQ per pin */
		s->pin_used |= 1u << e[7];
		if (e[5] == 0)
			s->pit_pin = e[7];
		else
			CHECK_EQ(e[7], e[5]);
		s->ints++;
		break;
	case 4:
		CHECK_EQ(e[6], 0xff);
		CHECK_EQ(e[7], s->lints);       /* LINT0 then LINT1 */
		CHECK_EQ(e[1], s->lints == 0 ? 3 : 1);  /* ExtINT, then NMI */
		s->lints++;
		break;
	default:
		CHECK(!"unknown MP entry type");
	}
}

static void check_table(unsigned nvcpus)
{
	uint8_t *mem = calloc(1, MEM_SIZE);
	struct guest_mem m;
	struct seen s = { .pit_pin = -1 };
	const uint8_t *mpf, *t, *e;
	uint16_t len, count;

	guest_mem_init_buffer(&m, mem, MEM_SIZE);
	CHECK_EQ(mptable_build(&m, nvcpus), 0);
	mpf = find_mpf(mem);
	CHECK(mpf != NULL);
	if (!mpf)
		goto out;
	CHECK_EQ(mpf[8], 1);
	CHECK_EQ(mpf[9], 4);
	CHECK(rd32(mpf + 4) >= EBDA_START && rd32(mpf + 4) < EBDA_START + MPTABLE_MAX_SIZE);
	t = mem + rd32(mpf + 4);
	CHECK(!memcmp(t, "PCMP", 4));
	len = rd16(t + 4);
	count = rd16(t + 34);
	CHECK(rd32(mpf + 4) + len <= MPTABLE_START + MPTABLE_MAX_SIZE);
	CHECK_EQ(t[6], 4);
	CHECK_EQ(sum(t, len), 0);
	CHECK(!memcmp(t + 8, "MVM", 3));
	CHECK_EQ(rd32(t + 36), LAPIC_START);
	e = t + 44;
	for (unsigned i = 0; i < count && e < t + len; i++) {
		check_entry(e, nvcpus, &s);
		e += e[0] == 0 ? 20 : 8;
	}
	CHECK(e == t + len);
	CHECK_EQ(s.cpus, nvcpus);
	CHECK_EQ(s.bsp, 1);
	CHECK_EQ(s.buses, 1);
	CHECK_EQ(s.ioapics, 1);
	CHECK_EQ(s.ints, 15);
	CHECK_EQ(s.pit_pin, 2);          /* matches the MADT override */
	CHECK_EQ(s.lints, 2);
out:
	free(mem);
}

int main(void)
{
	uint8_t *mem = calloc(1, MEM_SIZE);
	struct guest_mem m;

	check_table(1);
	check_table(4);
	check_table(VCPUS_MAX);
	guest_mem_init_buffer(&m, mem, MEM_SIZE);
	CHECK_EQ(mptable_build(&m, 0), -EINVAL);
	CHECK_EQ(mptable_build(&m, VCPUS_MAX + 1), -EINVAL);
	guest_mem_init_buffer(&m, mem, EBDA_START + 16);
	CHECK_EQ(mptable_build(&m, 1), -EFAULT);
	free(mem);
	return check_result("test-mptable");
}
