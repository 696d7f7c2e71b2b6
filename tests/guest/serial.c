/* SPDX-License-Identifier: MIT */
/* COM1 16550 driver. */
#include "lib.h"

#define COM1     0x3f8
#define UART_RBR 0  /* receive buffer (read) */
#define UART_THR 0  /* transmit holding (write) */
#define UART_IER 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define LSR_DR   0x01
#define LSR_THRE 0x20

static volatile uint32_t serial_lock_word;
/* Set until the first line is printed: the entry stubs sent its 'M'
 * (guest.h).  Initialised data, since .bss is zeroed after the stubs. */
static bool early_m_sent = true;

/* "MVMTEST", less the 'M' the entry stubs already sent if this is the
 * first line.  Lines start with it so the guest's output stays as
 * PROTOCOL.md says. */
const char *serial_tag(void)
{
	const char *tag = "MVMTEST";

	if (!early_m_sent)
		return tag;
	early_m_sent = false;
	return tag + 1;
}

/* Bytes the transmitter takes without another LSR read: THRE means the
 * transmit FIFO is empty, and it holds 16 once serial_init() enabled it.
 * Every LSR read is a VM exit, so this halves the exits per byte. */
#define TX_FIFO_SIZE 16
static unsigned tx_room, tx_fifo = 1;

void serial_init(void)
{
	outb(COM1 + UART_IER, 0);
	outb(COM1 + UART_LCR, 0x80);   /* DLAB: divisor follows */
	outb(COM1 + 0, 1);             /* 115200 baud */
	outb(COM1 + 1, 0);
	outb(COM1 + UART_LCR, 0x03);   /* 8N1 */
	outb(COM1 + UART_FCR, 0xc7);   /* FIFOs on and cleared */
	outb(COM1 + UART_MCR, 0x0b);   /* DTR, RTS, OUT2 (gates the IRQ) */
	tx_room = 0;
	tx_fifo = TX_FIFO_SIZE;
}

void serial_putc(char c)
{
	if (!tx_room) {
		/* Bounded: a VMM that never drains must not hang the guest. */
		for (unsigned i = 0; i < 100000 && !(inb(COM1 + UART_LSR) & LSR_THRE); i++)
			cpu_relax();
		tx_room = tx_fifo;
	}
	tx_room--;
	outb(COM1 + UART_THR, (uint8_t)c);
}

bool serial_getc(char *ret)
{
	if (!(inb(COM1 + UART_LSR) & LSR_DR))
		return false;
	*ret = (char)inb(COM1 + UART_RBR);
	return true;
}

void serial_enable_irq(void)
{
	outb(COM1 + UART_IER, 0x01);   /* received data available */
}

/* Plain xchg spinlock (implicitly locked); no cmpxchg16b. */
void serial_lock(void)
{
	uint32_t v;

	for (;;) {
		v = 1;
		__asm__ volatile("xchg %0, %1" : "+r"(v), "+m"(serial_lock_word) : : "memory");
		if (!v)
			return;
		while (serial_lock_word)
			cpu_relax();
	}
}

void serial_unlock(void)
{
	__asm__ volatile("" ::: "memory");
	serial_lock_word = 0;
}
