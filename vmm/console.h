/* SPDX-License-Identifier: MIT */
#ifndef MVM_CONSOLE_H
#define MVM_CONSOLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/loop.h"

/*
 * Where the guest's serial console goes and comes from.
 *
 * Output (console_write, the UART's tx_cb) goes to the sink fd (stdout or the
 * --serial FILE), to an optional size-bounded log file, and to an observer
 * (the daemon link).  The log never exceeds log_max bytes: when the next
 * write would pass the bound, the oldest half is dropped in place (the newest
 * bytes move to the start of the file, which is then truncated), so the file
 * always holds the most recent output.  A log that fails to write is turned
 * off with one message on stderr; so is a sink whose reader went away.
 *
 * Input comes from stdin (when `read_stdin`) and from console_input(); both
 * feed one bounded queue that drains into the UART's receive FIFO as the
 * guest reads it.  Stdin is not read while the queue is full, so nothing is
 * lost; EOF on stdin just stops reading.  A stdin that is a terminal is put
 * in raw mode (signal keys still work, so ^C stops the VMM) and restored by
 * console_free().
 */
struct serial;
struct console;

struct console_config {
	const char *out_path;   /* NULL: stdout */
	const char *log_path;   /* NULL: no log */
	uint64_t log_max;
	bool read_stdin;
};

typedef void (*console_observer_cb)(void *opaque, const uint8_t *buf, size_t len);

/* On failure *ret_what names the file that could not be opened. */
int console_new(const struct console_config *cfg, struct console **ret,
                const char **ret_what);
void console_free(struct console *c);

/* Connects input: watches stdin and the receive-ready wakeup on the loop. */
int console_attach(struct console *c, struct loop *l, struct serial *s);

/* Guest output.  Called by the UART with its lock held, so calls are
 * serialised. */
void console_write(struct console *c, const uint8_t *buf, size_t len);
/* UART rx_ready_cb: wakes the main loop to push more queued input. */
void console_rx_ready(struct console *c);

/* The VM is stopping: writes to a blocked sink give up, so the vCPU
 * threads can be joined.  Any thread. */
void console_abandon(struct console *c);

/* Set before the vCPUs start. */
void console_set_observer(struct console *c, console_observer_cb cb, void *opaque);

/* Queues input for the guest from any thread; returns the bytes taken. */
size_t console_input(struct console *c, const uint8_t *buf, size_t len);

#endif
