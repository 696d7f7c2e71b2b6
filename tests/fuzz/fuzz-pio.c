/* SPDX-License-Identifier: MIT */
/*
 * The legacy port-I/O devices (16550A COM1 and the i8042) on a PIO bus wired
 * as vm.c wires them, driven by a hostile guest and a host console.  The
 * input is a little program; each op starts with one byte b:
 *
 *   b & 3 == 0  guest OUT: port ports[(b >> 2) & 15], width widths[b >> 6],
 *               value from the next `width` bytes (little endian)
 *   b & 3 == 1  guest IN, same port and width selection
 *   b & 3 == 2  host console input: the next (b >> 2) bytes join the host's
 *               pending input, which is then offered to the UART
 *   b & 3 == 3  (b >> 2) & 1 ? offer pending input again (what the console
 *               does after rx_ready_cb) : send Ctrl-Alt-Del to the i8042
 *
 * The ports cover each device's range and its neighbours, so accesses that
 * straddle or miss a range are exercised too.  Beside "no crash, leak or
 * hang", a shadow model checks what the devices promise: registers read
 * back what the guest wrote, reads only return bytes the guest or the host
 * caused, the receive FIFO holds at most SERIAL_RX_FIFO_SIZE bytes in order,
 * the IRQ lines change only on edges and always match IIR / "output buffer
 * full", host input is never lost or stuck, and reset_cb runs once per reset
 * pulse without the device lock held.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/io.h"
#include "vmm/devices/i8042.h"
#include "vmm/devices/serial.h"
#include "vmm/arch/x86/layout.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define EXPECT(c) do { if (!(c)) fail(__LINE__, #c); } while (0)

static void fail(int line, const char *what)
{
	fprintf(stderr, "fuzz-pio:%d: invariant broken: %s\n", line, what);
	abort();
}

static const uint16_t ports[16] = {
	COM1_PORT - 1, COM1_PORT, COM1_PORT + 1, COM1_PORT + 2, COM1_PORT + 3,
	COM1_PORT + 4, COM1_PORT + 5, COM1_PORT + 6, COM1_PORT + 7, COM1_PORT + 8,
	I8042_DATA_PORT - 1, I8042_DATA_PORT, I8042_DATA_PORT + 1,
	I8042_CMD_PORT - 1, I8042_CMD_PORT, I8042_CMD_PORT + 1,
};
static const uint32_t widths[4] = { 1, 2, 4, 1 };

/* What the guest and host have done, as the 16550A semantics of serial.c
 * say the UART must look afterwards. */
struct uart_model {
	uint8_t ier, lcr, mcr, scr, dll, dlm;
	bool fifo_on, overrun, thr_pending;
	uint8_t fifo[SERIAL_RX_FIFO_SIZE];
	unsigned head, count;
	int irq_level;
	bool waiting;     /* serial_receive() left some input behind */
	bool wake;        /* rx_ready_cb came and nobody retried yet */
	uint8_t pending[1024];
	size_t pending_len;
	uint8_t tx_expect[8];
	unsigned tx_expect_len;
};

/* The same for the i8042 and its keyboard. */
struct kbc_model {
	uint8_t status, ccb, outport, pending_cmd, last;
	bool kbd_param;
	uint8_t q[16];
	unsigned head, count;
	int irq_level;
	unsigned resets_expected;
};

static struct fuzz_state {
	struct io_bus bus;
	struct serial *serial;
	struct i8042 *kbc;
	struct uart_model u;
	struct kbc_model k;
	unsigned resets;
	uint8_t out[4096];   /* console output, flushed to /dev/null */
	size_t out_len;
	int null_fd;
} st = { .null_fd = -1 };

static void flush_output(void)
{
	if (st.out_len && write(st.null_fd, st.out, st.out_len) != (ssize_t)st.out_len)
		abort();
	st.out_len = 0;
}

/* Callbacks: they run with the device lock held (serial) or not (reset),
 * and do only what vm.c's do: record, forward, or signal. */
static void serial_irq_cb(void *opaque, int level)
{
	EXPECT(level == !st.u.irq_level);  /* edges only */
	st.u.irq_level = level;
}

static void kbd_irq_cb(void *opaque, int level)
{
	EXPECT(level == !st.k.irq_level);
	st.k.irq_level = level;
}

static void tx_cb(void *opaque, const uint8_t *buf, size_t len)
{
	EXPECT(len <= st.u.tx_expect_len);
	EXPECT(memcmp(buf, st.u.tx_expect, len) == 0);
	st.u.tx_expect_len -= (unsigned)len;
	if (st.out_len + len > sizeof(st.out))
		flush_output();
	memcpy(st.out + st.out_len, buf, len);
	st.out_len += len;
}

static void rx_ready_cb(void *opaque)
{
	EXPECT(st.u.waiting);
	st.u.waiting = false;
	st.u.wake = true;
}

static void reset_cb(void *opaque)
{
	uint8_t v;

	/* Promised to run without the i8042 lock: touching the device again
	 * would deadlock (a hang the fuzzer reports) if that were not so. */
	io_bus_read(&st.bus, I8042_CMD_PORT, &v, 1);
	st.resets++;
}

/* ---- UART model ---- */

#define U_DLAB (st.u.lcr & 0x80)
#define U_LOOP (st.u.mcr & 0x10)

static void u_push(uint8_t b)
{
	EXPECT(st.u.count < SERIAL_RX_FIFO_SIZE);
	st.u.fifo[(st.u.head + st.u.count) % SERIAL_RX_FIFO_SIZE] = b;
	st.u.count++;
}

static uint8_t u_iir_source(void)
{
	if ((st.u.ier & 0x04) && st.u.overrun)
		return 0x06;
	if ((st.u.ier & 0x01) && st.u.count)
		return 0x04;
	if ((st.u.ier & 0x02) && st.u.thr_pending)
		return 0x02;
	return 0x01;
}

static void u_write(unsigned off, uint8_t v)
{
	switch (off) {
	case 0:
		if (U_DLAB) {
			st.u.dll = v;
			break;
		}
		if (!U_LOOP)
			st.u.tx_expect[st.u.tx_expect_len++] = v;
		else if (st.u.count == SERIAL_RX_FIFO_SIZE)
			st.u.overrun = true;
		else
			u_push(v);
		st.u.thr_pending = true;
		break;
	case 1:
		if (U_DLAB) {
			st.u.dlm = v;
			break;
		}
		if ((v & 0x02) && !(st.u.ier & 0x02))
			st.u.thr_pending = true;
		st.u.ier = v & 0x0f;
		break;
	case 2:
		if ((v & 0x02) || ((v & 1) != st.u.fifo_on))
			st.u.head = st.u.count = 0;
		st.u.fifo_on = v & 1;
		break;
	case 3: st.u.lcr = v; break;
	case 4: st.u.mcr = v & 0x1f; break;
	case 7: st.u.scr = v; break;
	}
}

static uint8_t u_msr(void)
{
	uint8_t m = st.u.mcr;

	if (!U_LOOP)
		return 0xb0;
	return (uint8_t)((m & 2 ? 0x10 : 0) | (m & 1 ? 0x20 : 0) |
	                 (m & 4 ? 0x40 : 0) | (m & 8 ? 0x80 : 0));
}

static void u_check_read(unsigned off, uint8_t v)
{
	uint8_t want;

	switch (off) {
	case 0:
		if (U_DLAB) {
			want = st.u.dll;
		} else if (!st.u.count) {
			want = 0;  /* nothing received: no stale or foreign bytes */
		} else {
			want = st.u.fifo[st.u.head];
			st.u.head = (st.u.head + 1) % SERIAL_RX_FIFO_SIZE;
			st.u.count--;
		}
		break;
	case 1: want = U_DLAB ? st.u.dlm : st.u.ier; break;
	case 2:
		want = u_iir_source();
		if (want == 0x02)
			st.u.thr_pending = false;
		want |= st.u.fifo_on ? 0xc0 : 0;
		break;
	case 3: want = st.u.lcr; break;
	case 4: want = st.u.mcr; break;
	case 5:
		want = 0x60 | (st.u.count ? 0x01 : 0) | (st.u.overrun ? 0x02 : 0);
		st.u.overrun = false;
		break;
	case 6: want = u_msr(); break;
	default: want = st.u.scr; break;
	}
	EXPECT(v == want);
}

/* Offers the host's pending input, as the console does. */
static void u_offer(void)
{
	size_t n, room = SERIAL_RX_FIFO_SIZE - st.u.count;

	st.u.wake = false;
	if (!st.u.pending_len)
		return;
	n = serial_receive(st.serial, st.u.pending, st.u.pending_len);
	/* It takes all that fits while the guest listens, nothing otherwise. */
	if (st.u.ier & 0x01)
		EXPECT(n == (st.u.pending_len < room ? st.u.pending_len : room));
	else
		EXPECT(n == 0);
	for (size_t i = 0; i < n; i++)
		u_push(st.u.pending[i]);
	memmove(st.u.pending, st.u.pending + n, st.u.pending_len - n);
	st.u.pending_len -= n;
	if (st.u.pending_len)
		st.u.waiting = true;
}

static void u_check_state(void)
{
	EXPECT(st.u.irq_level == (u_iir_source() != 0x01));
	EXPECT(st.u.tx_expect_len == 0);
	/* Input left behind while the guest listens and the FIFO has room
	 * must have a wake-up on its way, or the console would stall. */
	if (st.u.pending_len && (st.u.ier & 0x01) &&
	    st.u.count <= SERIAL_RX_FIFO_SIZE / 2)
		EXPECT(st.u.wake);
}

/* ---- i8042 model ---- */

static void k_push(uint8_t b)
{
	if (st.k.count == sizeof(st.k.q))
		return;
	st.k.q[(st.k.head + st.k.count) % sizeof(st.k.q)] = b;
	st.k.count++;
}

static void k_keyboard(uint8_t v)
{
	if (st.k.kbd_param) {
		st.k.kbd_param = false;
		k_push(0xfa);
		return;
	}
	switch (v) {
	case 0xff: k_push(0xfa); k_push(0xaa); break;
	case 0xf2: k_push(0xfa); k_push(0xab); k_push(0x83); break;
	case 0xee: k_push(0xee); break;
	case 0xed: case 0xf0: case 0xf3:
		st.k.kbd_param = true;
		k_push(0xfa);
		break;
	default: k_push(0xfa); break;
	}
}

static void k_write_data(uint8_t v)
{
	uint8_t cmd = st.k.pending_cmd;

	st.k.pending_cmd = 0;
	st.k.status &= (uint8_t)~0x08;
	switch (cmd) {
	case 0x60:
		st.k.ccb = v;
		st.k.status = (uint8_t)((st.k.status & ~0x04) | (v & 0x04));
		break;
	case 0xd1:
		st.k.outport = v;
		if (!(v & 1))
			st.k.resets_expected++;
		break;
	case 0xd2: k_push(v); break;
	case 0xd3: case 0xd4: break;
	default: k_keyboard(v); break;
	}
}

static void k_write_cmd(uint8_t v)
{
	st.k.status |= 0x08;
	st.k.pending_cmd = 0;
	switch (v) {
	case 0x20: k_push(st.k.ccb); break;
	case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
		st.k.pending_cmd = v;
		break;
	case 0xa7: st.k.ccb |= 0x20; break;
	case 0xa8: st.k.ccb &= (uint8_t)~0x20; break;
	case 0xa9: k_push(0x01); break;
	case 0xaa: k_push(0x55); st.k.status |= 0x04; break;
	case 0xab: k_push(0x00); break;
	case 0xad: st.k.ccb |= 0x10; break;
	case 0xae: st.k.ccb &= (uint8_t)~0x10; break;
	case 0xd0: k_push(st.k.outport); break;
	default:
		if (v >= 0xf0 && !(v & 1))
			st.k.resets_expected++;
		break;
	}
}

static void k_check_read(uint16_t port, uint8_t v)
{
	uint8_t want;

	if (port == I8042_CMD_PORT) {
		want = st.k.status | (st.k.count ? 0x01 : 0);
	} else if (st.k.count) {
		want = st.k.last = st.k.q[st.k.head];
		st.k.head = (st.k.head + 1) % sizeof(st.k.q);
		st.k.count--;
	} else {
		want = st.k.last;  /* an empty buffer repeats the last byte */
	}
	EXPECT(v == want);
}

static void k_ctrl_alt_del(void)
{
	static const uint8_t set1[] = { 0x1d, 0x38, 0x53, 0x9d, 0xb8, 0xd3 };
	static const uint8_t set2[] = { 0x14, 0x11, 0x71, 0xf0, 0x14, 0xf0, 0x11, 0xf0, 0x71 };
	bool xlate = st.k.ccb & 0x40;
	const uint8_t *c = xlate ? set1 : set2;
	unsigned n = xlate ? sizeof(set1) : sizeof(set2);
	int r = i8042_send_ctrl_alt_del(st.kbc);

	if (sizeof(st.k.q) - st.k.count < n) {
		EXPECT(r == -ENOSPC);
		return;
	}
	EXPECT(r == 0);
	for (unsigned i = 0; i < n; i++)
		k_push(c[i]);
}

static void k_check_state(void)
{
	EXPECT(st.k.irq_level == (st.k.count && (st.k.ccb & 0x01)));
	EXPECT(st.resets == st.k.resets_expected);
}

/* ---- the program ---- */

static bool claimed(uint16_t port, uint32_t width, unsigned *ret_off)
{
	if (port >= COM1_PORT && port + width <= COM1_PORT + 8) {
		*ret_off = port - COM1_PORT;
		return true;
	}
	*ret_off = 0;
	return width == 1 && (port == I8042_DATA_PORT || port == I8042_CMD_PORT);
}

static void guest_out(uint16_t port, uint32_t width, uint32_t val)
{
	uint8_t b[4];
	unsigned off;
	bool hit = claimed(port, width, &off);

	memcpy(b, &val, sizeof(b));
	/* The model goes first: tx_cb checks bytes against it. */
	if (hit && width == 1) {  /* only byte accesses reach registers */
		if (port == I8042_DATA_PORT)
			k_write_data(b[0]);
		else if (port == I8042_CMD_PORT)
			k_write_cmd(b[0]);
		else
			u_write(off, b[0]);
	}
	EXPECT((io_bus_write(&st.bus, port, b, width) == 0) == hit);
}

static void guest_in(uint16_t port, uint32_t width)
{
	uint8_t b[4];
	unsigned off;
	int r = io_bus_read(&st.bus, port, b, width);

	EXPECT((r == 0) == claimed(port, width, &off));
	if (r < 0 || width != 1) {
		for (uint32_t i = 0; i < width; i++)
			EXPECT(b[i] == 0xff);  /* empty bus, or a wide access */
		return;
	}
	if (port == I8042_DATA_PORT || port == I8042_CMD_PORT)
		k_check_read(port, b[0]);
	else
		u_check_read(off, b[0]);
}

static void host_input(const uint8_t *p, size_t n)
{
	size_t room = sizeof(st.u.pending) - st.u.pending_len;

	if (n > room)
		n = room;
	memcpy(st.u.pending + st.u.pending_len, p, n);
	st.u.pending_len += n;
	u_offer();
}

static void setup(void)
{
	struct irq_line sirq = { serial_irq_cb, NULL }, kirq = { kbd_irq_cb, NULL };
	struct serial_callbacks cb = { tx_cb, rx_ready_cb, NULL };
	int fd = st.null_fd;

	memset(&st, 0, sizeof(st));
	st.null_fd = fd >= 0 ? fd : open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (st.null_fd < 0 ||
	    serial_new(&sirq, &cb, &st.serial) < 0 ||
	    io_bus_register(&st.bus, COM1_PORT, 8, &serial_io_ops, st.serial) < 0 ||
	    i8042_new(&kirq, reset_cb, NULL, &st.kbc) < 0 ||
	    io_bus_register(&st.bus, I8042_DATA_PORT, 1, &i8042_data_ops, st.kbc) < 0 ||
	    io_bus_register(&st.bus, I8042_CMD_PORT, 1, &i8042_cmd_ops, st.kbc) < 0)
		abort();
	/* The power-on state serial.c and i8042.c document. */
	st.u.dll = 0x0c;
	st.u.lcr = 0x03;
	st.u.mcr = 0x08;
	st.k.status = 0x14;
	st.k.ccb = 0x65;
	st.k.outport = 0x03;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t i = 0;

	setup();
	while (i < size) {
		uint8_t b = data[i++];
		uint32_t width = widths[b >> 6], val = 0;
		size_t n;

		switch (b & 3) {
		case 0:
			n = size - i < width ? size - i : width;
			memcpy(&val, data + i, n);  /* little-endian host */
			i += n;
			guest_out(ports[(b >> 2) & 15], width, val);
			break;
		case 1:
			guest_in(ports[(b >> 2) & 15], width);
			break;
		case 2:
			n = size - i < (size_t)(b >> 2) ? size - i : (size_t)(b >> 2);
			host_input(data + i, n);
			i += n;
			break;
		default:
			if ((b >> 2) & 1)
				u_offer();
			else
				k_ctrl_alt_del();
			break;
		}
		u_check_state();
		k_check_state();
	}
	flush_output();
	i8042_free(st.kbc);
	serial_free(st.serial);
	return 0;
}
