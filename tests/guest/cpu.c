/* SPDX-License-Identifier: MIT */
/* TSS, IDT, exception reporting, reset and triple fault. */
#include "lib.h"

struct idt_gate {
	uint16_t off_lo, sel;
	uint8_t ist, type_attr;
	uint16_t off_mid;
	uint32_t off_hi, zero;
} __attribute__((packed));

struct tss {
	uint32_t reserved0;
	uint64_t rsp0, rsp1, rsp2, reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3, iomap_base;
} __attribute__((packed));

struct desc_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

/* Saved by isr_common; matches its push order. */
struct exc_frame {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rdi, rsi, rbp, rbx, rdx, rcx, rax;
	uint64_t vec, err, rip, cs, rflags, rsp, ss;
};

extern uint64_t gdt_tss[2];
extern char user_exit[];
noreturn void user_return(uint64_t result);
void exception_handler(struct exc_frame *f);

extern struct idt_gate idt[256];  /* intr.S, complete at link time */
static struct tss tss __attribute__((aligned(16)));
static uint8_t rsp0_stack[RSP0_STACK_SIZE] __attribute__((aligned(16), section(".stack")));

void cpu_load_idt(void)
{
	struct desc_ptr p = { sizeof(idt) - 1, (uint64_t)idt };

	__asm__ volatile("lidt %0" : : "m"(p));
}

static void tss_init(void)
{
	uint64_t base = (uint64_t)&tss, limit = sizeof(tss) - 1;

	tss.rsp0 = (uint64_t)(rsp0_stack + sizeof(rsp0_stack));
	tss.iomap_base = sizeof(tss);  /* no I/O bitmap: ring 3 gets no ports */
	gdt_tss[0] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
	             (0x89ULL << 40) | (((base >> 24) & 0xff) << 56);
	gdt_tss[1] = base >> 32;
	__asm__ volatile("ltr %w0" : : "r"(SEL_TSS));
}

/* The legacy PIC could deliver its IRQs on exception vectors: mask it. */
static void pic_mask(void)
{
	outb(0x21, 0xff);
	outb(0xa1, 0xff);
}

void cpu_init(void)
{
	cpu_load_idt();
	tss_init();
	pic_mask();
}

static volatile uint32_t in_exception;

void exception_handler(struct exc_frame *f)
{
	/* A fault while printing (or a second CPU faulting) must not
	 * deadlock on the serial lock: only the first one reports. */
	uint32_t first = 1;

	if (f->vec == 6 && f->rip == (uint64_t)user_exit && (f->cs & 3) == 3)
		user_return(f->rdi);
	__asm__ volatile("xchg %0, %1" : "+r"(first), "+m"(in_exception) : : "memory");
	if (first)
		triple_fault();
	serial_unlock();
	kprintf("MVMTEST FAIL exception %u rip=%lx\n", (unsigned)f->vec, f->rip);
	reset();
}

noreturn void triple_fault(void)
{
	struct desc_ptr empty = { 0, 0 };

	/* With no IDT the #UD cannot be delivered, nor can the #DF: shutdown. */
	__asm__ volatile("lidt %0\n\tud2" : : "m"(empty));
	for (;;)
		__asm__ volatile("cli; hlt");
}

noreturn void reset(void)
{
	outb(0x64, 0xfe);
	/* No i8042 (QEMU microvm): fall back to a triple fault, which makes
	 * QEMU -no-reboot exit too. */
	delay(5000);
	triple_fault();
}

noreturn void fail(const char *fmt, ...)
{
	va_list ap;

	serial_lock();
	for (const char *p = serial_tag(); *p; p++)
		serial_putc(*p);
	for (const char *p = " FAIL "; *p; p++)
		serial_putc(*p);
	va_start(ap, fmt);
	kvprintf(fmt, ap);
	va_end(ap);
	serial_putc('\n');
	serial_unlock();
	reset();
}
