/* SPDX-License-Identifier: MIT */
/* The 16550A model driven through its PIO ops, as a guest driver would. */
#include <string.h>

#include "check.h"
#include "vmm/io.h"
#include "vmm/devices/serial.h"
#include "vmm/arch/x86/layout.h"

static int irq_level, irq_changes, rx_ready_calls;
static unsigned char tx[256];
static size_t tx_len;

static void irq_set(void *opaque, int level)
{
	irq_level = level;
	irq_changes++;
}

static void tx_cb(void *opaque, const uint8_t *buf, size_t len)
{
	memcpy(tx + tx_len, buf, len);
	tx_len += len;
}

static void rx_ready(void *opaque)
{
	rx_ready_calls++;
}

static struct io_bus bus;

static void out(unsigned reg, uint8_t v)
{
	CHECK_EQ(io_bus_write(&bus, COM1_PORT + reg, &v, 1), 0);
}

static uint8_t in(unsigned reg)
{
	uint8_t v = 0;

	CHECK_EQ(io_bus_read(&bus, COM1_PORT + reg, &v, 1), 0);
	return v;
}

static struct serial *setup(void)
{
	struct irq_line irq = { irq_set, NULL };
	struct serial_callbacks cb = { tx_cb, rx_ready, NULL };
	struct serial *s = NULL;

	memset(&bus, 0, sizeof(bus));
	irq_level = irq_changes = rx_ready_calls = 0;
	tx_len = 0;
	CHECK_EQ(serial_new(&irq, &cb, &s), 0);
	CHECK_EQ(io_bus_register(&bus, COM1_PORT, 8, &serial_io_ops, s), 0);
	return s;
}

/* What Linux's 8250 autoconfig checks before it calls the port a 16550A. */
static void test_probe(void)
{
	struct serial *s = setup();

	out(1, 0);
	CHECK_EQ(in(1) & 0x0f, 0);
	out(1, 0x0f);
	CHECK_EQ(in(1), 0x0f);
	out(1, 0xff);
	CHECK_EQ(in(1), 0x0f);          /* upper IER bits do not exist */
	out(1, 0);
	out(7, 0xa5);
	CHECK_EQ(in(7), 0xa5);          /* scratch */
	out(4, 0x10 | 0x0a);            /* loopback with RTS and OUT2 */
	CHECK_EQ(in(6) & 0xf0, 0x90);   /* CTS and DCD follow them */
	out(4, 0x10 | 0x05);            /* DTR and OUT1 */
	CHECK_EQ(in(6) & 0xf0, 0x60);   /* DSR and RI */
	out(4, 0x0b);
	CHECK_EQ(in(6) & 0xb0, 0xb0);   /* not looped: a peer is there */
	CHECK_EQ(in(2), 0x01);          /* FIFOs off, nothing pending */
	out(2, 0x07);
	CHECK_EQ(in(2), 0xc1);          /* FIFOs on */
	CHECK_EQ(in(5), 0x60);          /* THRE | TEMT, no data */
	serial_free(s);
}

static void test_dlab(void)
{
	struct serial *s = setup();

	out(3, 0x80);
	out(0, 0x01);
	out(1, 0x02);
	CHECK_EQ(in(0), 0x01);
	CHECK_EQ(in(1), 0x02);
	out(3, 0x03);
	CHECK_EQ(tx_len, 0);            /* divisor writes are not output */
	CHECK_EQ(in(1), 0);             /* IER untouched */
	CHECK_EQ(in(3), 0x03);
	out(0, 'h');
	out(0, 'i');
	CHECK_EQ(tx_len, 2);
	CHECK(!memcmp(tx, "hi", 2));
	serial_free(s);
}

static void test_thre_interrupt(void)
{
	struct serial *s = setup();

	out(2, 0x01);
	CHECK_EQ(irq_level, 0);
	out(1, 0x02);                   /* enabling THRE interrupts at once */
	CHECK_EQ(irq_level, 1);
	CHECK_EQ(in(2), 0xc2);
	CHECK_EQ(irq_level, 0);         /* reading IIR acknowledged it */
	CHECK_EQ(in(2), 0xc1);
	out(0, 'x');                    /* the byte "leaves" at once */
	CHECK_EQ(irq_level, 1);
	out(1, 0);
	CHECK_EQ(irq_level, 0);
	serial_free(s);
}

static void test_receive(void)
{
	struct serial *s = setup();
	uint8_t buf[100];
	unsigned i;

	for (i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)i;
	/* Not listening yet: nothing is taken, the producer is told later. */
	CHECK_EQ(serial_receive(s, buf, 3), 0);
	CHECK_EQ(rx_ready_calls, 0);
	out(1, 0x03);                   /* RDA and THRE */
	CHECK_EQ(rx_ready_calls, 1);
	CHECK_EQ(serial_receive(s, buf, sizeof(buf)), SERIAL_RX_FIFO_SIZE);
	CHECK_EQ(irq_level, 1);
	CHECK_EQ(in(2) & 0x0f, 0x04);   /* RDA outranks THRE */
	CHECK_EQ(in(5) & 0x01, 1);
	for (i = 0; i < SERIAL_RX_FIFO_SIZE / 2 - 1; i++)
		CHECK_EQ(in(0), i);
	CHECK_EQ(rx_ready_calls, 1);
	CHECK_EQ(in(0), i);             /* half empty: producer woken */
	CHECK_EQ(rx_ready_calls, 2);
	for (i++; i < SERIAL_RX_FIFO_SIZE; i++)
		CHECK_EQ(in(0), i);
	CHECK_EQ(in(5) & 0x01, 0);
	CHECK_EQ(in(2) & 0x0f, 0x02);   /* THRE is next */
	CHECK_EQ(in(2) & 0x0f, 0x01);
	CHECK_EQ(irq_level, 0);
	/* A FIFO reset drops what the guest had not read. */
	CHECK_EQ(serial_receive(s, buf, 5), 5);
	out(2, 0x03);
	CHECK_EQ(in(5) & 0x01, 0);
	CHECK_EQ(irq_level, 0);
	serial_free(s);
}

static void test_loopback(void)
{
	struct serial *s = setup();
	unsigned i;

	out(4, 0x10);
	out(0, 'L');
	CHECK_EQ(tx_len, 0);
	CHECK_EQ(in(5) & 0x01, 1);
	CHECK_EQ(in(0), 'L');
	for (i = 0; i <= SERIAL_RX_FIFO_SIZE; i++)
		out(0, 'a');
	CHECK_EQ(in(5) & 0x03, 0x03);   /* overrun reported once */
	CHECK_EQ(in(5) & 0x02, 0);
	serial_free(s);
}

static void test_widths(void)
{
	struct serial *s = setup();
	uint8_t w[2] = { 'a', 'b' };

	CHECK_EQ(io_bus_write(&bus, COM1_PORT, w, 2), 0);
	CHECK_EQ(tx_len, 0);            /* word writes reach no register */
	CHECK_EQ(io_bus_read(&bus, COM1_PORT + 5, w, 2), 0);
	CHECK_EQ(w[0], 0xff);
	CHECK_EQ(io_bus_read(&bus, COM1_PORT + 7, w, 2), -2);  /* past the range */
	serial_free(s);
}

int main(void)
{
	test_probe();
	test_dlab();
	test_thre_interrupt();
	test_receive();
	test_loopback();
	test_widths();
	return check_result("serial");
}
