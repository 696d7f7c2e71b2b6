/* SPDX-License-Identifier: MIT */
/* Test guest entry: report how we booted, then run the chosen scenario. */
#include "acpi.h"
#include "boot.h"
#include "smp.h"
#include "user.h"
#include "virtio.h"

#define IOAPIC_BASE    0xfec00000UL
#define COM1_GSI       4
#define LAPIC_EOI      0x0b0
#define LAPIC_LVT_TMR  0x320
#define LAPIC_TMR_INIT 0x380
#define LAPIC_TMR_DIV  0x3e0
#define TOUCH_BASE     (16UL << 20)

extern volatile uint32_t serial_irqs;
void kmain(int entry, uint64_t info);

static void do_hello(const char *arg)
{
	kprintf("MVMTEST hello\n");
	for (unsigned i = 0; i < boot.ne820; i++)
		kprintf("MVMTEST e820 %lx %lx %u\n", boot.e820[i].addr, boot.e820[i].size,
		        boot.e820[i].type);
	kprintf("MVMTEST e820 done n=%u\n", boot.ne820);
}

static void ioapic_route(unsigned gsi, unsigned vec, uint32_t dest)
{
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * gsi + 1);
	mmio_write32(IOAPIC_BASE + 0x10, dest << 24);
	mmio_write32(IOAPIC_BASE, 0x10 + 2 * gsi);
	mmio_write32(IOAPIC_BASE + 0x10, vec);  /* fixed, physical, edge, high */
}

/*
 * Interrupt driven: COM1's IRQ wakes the hlt.  A slow periodic LAPIC timer
 * also wakes it, so a VMM whose serial IRQ is broken still gets its echo
 * (the irqs= line then shows 0).
 */
static void do_echo(const char *arg)
{
	char line[8];
	unsigned len = 0;
	char c, last = '\n';

	lapic_enable();
	ioapic_route(COM1_GSI, VEC_SERIAL, lapic_id());
	lapic_write(LAPIC_TMR_DIV, 0x3);               /* divide by 16 */
	lapic_write(LAPIC_LVT_TMR, (1 << 17) | VEC_TIMER);  /* periodic */
	lapic_write(LAPIC_TMR_INIT, 2000000);
	serial_enable_irq();
	kprintf("MVMTEST echo ready\n");
	for (;;) {
		while (serial_getc(&c)) {
			serial_putc(c);
			last = c;
			if (c != '\n' && c != '\r') {
				if (len < sizeof(line))
					line[len] = c;
				len++;
				continue;
			}
			if (len == 4 && !memcmp(line, "quit", 4))
				goto done;
			len = 0;
		}
		/* sti takes effect after hlt starts: no lost wake-up. */
		__asm__ volatile("sti; hlt; cli" ::: "memory");
	}
done:
	lapic_write(LAPIC_TMR_INIT, 0);
	if (last != '\n')
		serial_putc('\n');
	kprintf("MVMTEST echo irqs=%u\n", serial_irqs);
	kprintf("MVMTEST echo done\n");
}

static void do_smp(const char *arg)
{
	smp_run();
}

static void do_poweroff(const char *arg)
{
	kprintf("MVMTEST poweroff\n");
	acpi_poweroff();
	delay(5000);
	fail("poweroff: still running");
}

static void do_initrd(const char *arg)
{
	uint32_t crc = 0;

	if (boot.initrd_size) {
		if (boot.initrd_addr + boot.initrd_size > (1UL << 32) ||
		    boot.initrd_addr + boot.initrd_size < boot.initrd_addr)
			fail("initrd %lx+%lx is not below 4 GiB", boot.initrd_addr, boot.initrd_size);
		crc = (uint32_t)user_crc32((const void *)boot.initrd_addr, boot.initrd_size);
	}
	kprintf("MVMTEST initrd addr=%lx size=%lu crc32=%08x\n",
	        boot.initrd_size ? boot.initrd_addr : 0, boot.initrd_size, crc);
}

static noreturn void do_triple(const char *arg)
{
	kprintf("MVMTEST triple\n");
	triple_fault();
}

static noreturn void do_idle(const char *arg)
{
	kprintf("MVMTEST idle\n");
	for (;;)
		__asm__ volatile("sti; hlt" ::: "memory");
}

static noreturn void do_spin(const char *arg)
{
	kprintf("MVMTEST spin\n");
	user_spin();
}

static uint64_t arg_u64(const char *name, const char *arg, uint64_t max)
{
	uint64_t v;

	if (!arg || !parse_u64(arg, &v) || v > max)
		fail("%s: bad argument '%s'", name, arg ? arg : "");
	return v;
}

static void do_touch(const char *arg)
{
	uint64_t mib = arg_u64("touch", arg, 1UL << 20);

	kprintf("MVMTEST touch start mib=%lu\n", mib);
	if (!boot_ram_covers(TOUCH_BASE, mib << 20) || TOUCH_BASE + (mib << 20) > (1UL << 32))
		fail("touch: %lu MiB at 16 MiB is not RAM below 4 GiB", mib);
	user_touch(TOUCH_BASE, mib << 20);
	kprintf("MVMTEST touch done mib=%lu\n", mib);
}

static void do_kspeed(const char *arg)
{
	uint64_t n = arg_u64("kspeed", arg, 1UL << 30);
	uint64_t i = n * 1000000;

	kprintf("MVMTEST kspeed start n=%lu\n", n);
	if (i)
		__asm__ volatile("1: dec %0; jnz 1b" : "+r"(i));
	kprintf("MVMTEST kspeed done\n");
}

static void do_uspeed(const char *arg)
{
	uint64_t n = arg_u64("uspeed", arg, 1UL << 30);

	kprintf("MVMTEST uspeed start n=%lu\n", n);
	user_loop(n * 1000000);
	kprintf("MVMTEST uspeed done\n");
}

/* Console output as fast as the serial port takes it, for links and logs
 * that must cope with a reader that stopped. */
static noreturn void do_flood(const char *arg)
{
	kprintf("MVMTEST flood\n");
	for (uint64_t i = 0;; i++)
		kprintf("MVMTEST flood line=%lu ................................................\n", i);
}

static const struct scenario {
	const char *name;
	void (*run)(const char *arg);
} scenarios[] = {
	{ "hello", do_hello },
	{ "echo", do_echo },
	{ "smp", do_smp },
	{ "poweroff", do_poweroff },
	{ "initrd", do_initrd },
	{ "triple", do_triple },
	{ "idle", do_idle },
	{ "spin", do_spin },
	{ "flood", do_flood },
	{ "touch", do_touch },
	{ "kspeed", do_kspeed },
	{ "uspeed", do_uspeed },
	{ "virtio", virtio_list_run },
	{ "blk", blk_run },
	{ "blkbench", blkbench_run },
	{ "rng", rng_run },
	{ "net", net_run },
	{ "hostile", hostile_run },
	{ "vsock", vsock_run },
	{ "balloon", balloon_run },
	{ "netflood", netflood_run },
};

static bool starts_with(const char *s, const char *prefix)
{
	while (*prefix && *s == *prefix)
		s++, prefix++;
	return !*prefix;
}

/* Finds mvmtest=NAME[:ARG] in the command line; splits it in buf. */
static void find_scenario(char *buf, size_t size, const char **name, const char **arg)
{
	const char *s = boot.cmdline;
	size_t n = 0;

	*name = "";
	*arg = NULL;
	for (; *s; s++) {
		if ((s == boot.cmdline || s[-1] == ' ') && starts_with(s, "mvmtest="))
			break;
	}
	if (!*s)
		return;
	for (s += 8; *s && *s != ' ' && n < size - 1; s++)
		buf[n++] = *s;
	buf[n] = '\0';
	*name = buf;
	for (char *p = buf; *p; p++) {
		if (*p == ':') {
			*p = '\0';
			*arg = p + 1;
			break;
		}
	}
}

void kmain(int entry, uint64_t info)
{
	static char buf[128];
	const char *name, *arg;

	serial_init();
	boot_parse(entry, info);
	cpu_init();
	kprintf("%s boot entry=%s cmdline=%s\n", serial_tag(), boot_entry_name(entry),
	        boot.cmdline);
	find_scenario(buf, sizeof(buf), &name, &arg);
	for (unsigned i = 0; i < ARRAY_SIZE(scenarios); i++) {
		if (!strcmp(name, scenarios[i].name)) {
			scenarios[i].run(arg);
			reset();
		}
	}
	fail("unknown scenario %s", name);
}
