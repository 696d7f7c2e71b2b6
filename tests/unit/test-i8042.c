/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "vmm/io.h"
#include "vmm/devices/i8042.h"
#include "vmm/arch/x86/layout.h"

static int irq_level, irq_rises, resets;
static struct io_bus bus;

static void irq_set(void *opaque, int level)
{
	if (level && !irq_level)
		irq_rises++;
	irq_level = level;
}

static void reset_cb(void *opaque)
{
	resets++;
}

static void out(unsigned port, uint8_t v)
{
	CHECK_EQ(io_bus_write(&bus, port, &v, 1), 0);
}

static uint8_t in(unsigned port)
{
	uint8_t v = 0;

	CHECK_EQ(io_bus_read(&bus, port, &v, 1), 0);
	return v;
}

static struct i8042 *setup(void)
{
	struct irq_line irq = { irq_set, NULL };
	struct i8042 *k = NULL;

	memset(&bus, 0, sizeof(bus));
	irq_level = irq_rises = resets = 0;
	CHECK_EQ(i8042_new(&irq, reset_cb, NULL, &k), 0);
	CHECK_EQ(io_bus_register(&bus, I8042_DATA_PORT, 1, &i8042_data_ops, k), 0);
	CHECK_EQ(io_bus_register(&bus, I8042_CMD_PORT, 1, &i8042_cmd_ops, k), 0);
	return k;
}

static void test_controller(void)
{
	struct i8042 *k = setup();

	CHECK_EQ(in(I8042_CMD_PORT) & 0x01, 0);   /* nothing to read */
	CHECK_EQ(in(I8042_CMD_PORT) & 0x04, 0x04);/* system flag: POST done */
	out(I8042_CMD_PORT, 0xaa);
	CHECK_EQ(in(I8042_CMD_PORT) & 0x09, 0x09);/* OBF, last write a command */
	CHECK_EQ(irq_level, 1);
	CHECK_EQ(in(I8042_DATA_PORT), 0x55);
	CHECK_EQ(in(I8042_CMD_PORT) & 0x01, 0);
	CHECK_EQ(irq_level, 0);
	out(I8042_CMD_PORT, 0xab);
	CHECK_EQ(in(I8042_DATA_PORT), 0x00);
	out(I8042_CMD_PORT, 0x20);
	CHECK_EQ(in(I8042_DATA_PORT), 0x65);      /* kbd irq, sys, no aux, xlate */
	out(I8042_CMD_PORT, 0x60);
	out(I8042_DATA_PORT, 0x44);               /* irqs off */
	out(I8042_CMD_PORT, 0xad);
	out(I8042_CMD_PORT, 0x20);
	CHECK_EQ(irq_level, 0);                   /* KBD_INT is off now */
	CHECK_EQ(in(I8042_DATA_PORT), 0x54);
	out(I8042_CMD_PORT, 0xae);
	out(I8042_CMD_PORT, 0x20);
	CHECK_EQ(in(I8042_DATA_PORT), 0x44);
	out(I8042_CMD_PORT, 0xd0);
	CHECK_EQ(in(I8042_DATA_PORT) & 0x01, 0x01);
	out(I8042_CMD_PORT, 0xd1);
	out(I8042_DATA_PORT, 0x03);               /* reset line stays high */
	CHECK_EQ(resets, 0);
	out(I8042_CMD_PORT, 0xd1);
	out(I8042_DATA_PORT, 0x02);
	CHECK_EQ(resets, 1);
	out(I8042_CMD_PORT, 0xff);                /* pulses no line */
	CHECK_EQ(resets, 1);
	out(I8042_CMD_PORT, 0xfe);
	CHECK_EQ(resets, 2);
	i8042_free(k);
}

static void test_keyboard(void)
{
	struct i8042 *k = setup();

	out(I8042_DATA_PORT, 0xf2);               /* identify */
	CHECK_EQ(in(I8042_DATA_PORT), 0xfa);
	CHECK_EQ(in(I8042_DATA_PORT), 0xab);
	CHECK_EQ(in(I8042_DATA_PORT), 0x83);
	CHECK_EQ(irq_rises, 3);                   /* one edge per byte */
	out(I8042_DATA_PORT, 0xed);               /* LEDs, then their value */
	CHECK_EQ(in(I8042_DATA_PORT), 0xfa);
	out(I8042_DATA_PORT, 0x07);
	CHECK_EQ(in(I8042_DATA_PORT), 0xfa);
	out(I8042_DATA_PORT, 0xff);
	CHECK_EQ(in(I8042_DATA_PORT), 0xfa);
	CHECK_EQ(in(I8042_DATA_PORT), 0xaa);
	CHECK_EQ(in(I8042_CMD_PORT) & 0x01, 0);
	i8042_free(k);
}

static void test_ctrl_alt_del(void)
{
	static const uint8_t set1[] = { 0x1d, 0x38, 0x53, 0x9d, 0xb8, 0xd3 };
	static const uint8_t set2[] = { 0x14, 0x11, 0x71, 0xf0, 0x14, 0xf0, 0x11, 0xf0, 0x71 };
	struct i8042 *k = setup();
	unsigned i;

	CHECK_EQ(i8042_send_ctrl_alt_del(k), 0);
	CHECK_EQ(irq_level, 1);
	for (i = 0; i < sizeof(set1); i++)
		CHECK_EQ(in(I8042_DATA_PORT), set1[i]);
	CHECK_EQ(irq_rises, 6);
	CHECK_EQ(in(I8042_CMD_PORT) & 0x01, 0);
	out(I8042_CMD_PORT, 0x60);
	out(I8042_DATA_PORT, 0x05);               /* translation off */
	CHECK_EQ(i8042_send_ctrl_alt_del(k), 0);
	for (i = 0; i < sizeof(set2); i++)
		CHECK_EQ(in(I8042_DATA_PORT), set2[i]);
	CHECK_EQ(i8042_send_ctrl_alt_del(k), 0);
	CHECK_EQ(i8042_send_ctrl_alt_del(k), -ENOSPC);  /* never half a chord */
	i8042_free(k);
}

int main(void)
{
	test_controller();
	test_keyboard();
	test_ctrl_alt_del();
	return check_result("i8042");
}
