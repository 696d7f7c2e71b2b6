/* SPDX-License-Identifier: MIT */
#ifndef MVM_SERIAL_H
#define MVM_SERIAL_H

#include <stddef.h>
#include <stdint.h>
#include "vmm/io.h"
#include "vmm/devices/devices.h"

/*
 * 16550A UART (COM1).  Register it on the PIO bus with serial_io_ops and an
 * 8-port range.  The device prints nothing: transmitted bytes go to tx_cb,
 * and rx_ready_cb says the receive FIFO has room again after serial_receive()
 * could not take everything.  Both callbacks run on the vCPU thread that
 * touched the UART, with the device lock held: they must not call back into
 * the device.
 */
struct serial_callbacks {
	void (*tx_cb)(void *opaque, const uint8_t *buf, size_t len);
	void (*rx_ready_cb)(void *opaque);
	void *opaque;
};

#define SERIAL_RX_FIFO_SIZE 64

struct serial;

int serial_new(const struct irq_line *irq, const struct serial_callbacks *cb,
               struct serial **ret);
void serial_free(struct serial *s);

/* Queues input into the receive FIFO; returns how many bytes it took (less
 * than len when the FIFO is full or the guest has the receive interrupt
 * disabled; rx_ready_cb follows when that changes).  Thread-safe. */
size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len);

extern const struct io_ops serial_io_ops;

#endif
