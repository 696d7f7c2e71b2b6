/* SPDX-License-Identifier: MIT */
#ifndef MVM_I8042_H
#define MVM_I8042_H

#include "vmm/io.h"
#include "vmm/devices/devices.h"

/*
 * i8042 keyboard controller with a minimal AT keyboard behind it (enough for
 * Linux's i8042 and atkbd drivers to bind) and no AUX port.  Register
 * i8042_data_ops at I8042_DATA_PORT and i8042_cmd_ops at I8042_CMD_PORT, one
 * port each.  A pulse of the reset line (command 0xFE, or output port bit 0
 * cleared) calls reset_cb once, without the device lock held.
 */
struct i8042;

int i8042_new(const struct irq_line *irq, void (*reset_cb)(void *opaque),
              void *opaque, struct i8042 **ret);
void i8042_free(struct i8042 *k);

/* Queues Ctrl-Alt-Del make and break codes from the keyboard and raises
 * IRQ 1: scan code set 1 while the controller translates (the default),
 * set 2 otherwise.  -ENOSPC if the output queue has no room.  Thread-safe. */
int i8042_send_ctrl_alt_del(struct i8042 *k);

extern const struct io_ops i8042_data_ops;
extern const struct io_ops i8042_cmd_ops;

#endif
