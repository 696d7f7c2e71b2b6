/* SPDX-License-Identifier: MIT */
#ifndef MVM_DEVICES_H
#define MVM_DEVICES_H

/*
 * What devices share: an interrupt line they drive.  `set` is called with
 * 1 to assert and 0 to deassert, only on changes, with the device's lock
 * held so that the line's last value always matches the device state.
 * The VMM wires it to KVM_IRQ_LINE; unit tests wire it to a recorder.
 */
struct irq_line {
	void (*set)(void *opaque, int level);
	void *opaque;
};

#endif
