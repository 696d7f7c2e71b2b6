/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vmm/devices/i8042.h"

#define STS_OBF      0x01
#define STS_SYS      0x04
#define STS_CMD      0x08  /* last write went to the command port */
#define STS_UNLOCKED 0x10

#define CCB_KBD_INT  0x01
#define CCB_SYS      0x04
#define CCB_KBD_OFF  0x10
#define CCB_AUX_OFF  0x20
#define CCB_XLATE    0x40

#define CMD_READ_CCB    0x20
#define CMD_WRITE_CCB   0x60
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE  0xa8
#define CMD_AUX_TEST    0xa9
#define CMD_SELF_TEST   0xaa
#define CMD_KBD_TEST    0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE  0xae
#define CMD_READ_OUTP   0xd0
#define CMD_WRITE_OUTP  0xd1
#define CMD_WRITE_KBD_OUT 0xd2
#define CMD_WRITE_AUX_OUT 0xd3
#define CMD_WRITE_AUX   0xd4
#define CMD_PULSE_RESET 0xfe

#define OUTP_RESET_HIGH 0x01  /* 0 holds the CPU in reset */
#define OUTP_A20        0x02

#define KBD_ACK   0xfa
#define KBD_BAT_OK 0xaa

#define QUEUE_SIZE 16

struct i8042 {
	pthread_mutex_t lock;
	uint8_t status, ccb, outport;
	uint8_t pending_cmd;     /* controller command waiting for its data byte */
	bool kbd_wants_param;    /* keyboard command waiting for its argument */
	uint8_t last;            /* data port reads repeat it when empty */
	int irq_level;
	uint8_t q[QUEUE_SIZE];
	unsigned head, count;
	struct irq_line irq;
	void (*reset_cb)(void *opaque);
	void *opaque;
};

int i8042_new(const struct irq_line *irq, void (*reset_cb)(void *opaque),
              void *opaque, struct i8042 **ret)
{
	struct i8042 *k = calloc(1, sizeof(*k));

	if (!k)
		return -ENOMEM;
	pthread_mutex_init(&k->lock, NULL);
	k->irq = *irq;
	k->reset_cb = reset_cb;
	k->opaque = opaque;
	/* The state firmware leaves behind after POST. */
	k->status = STS_SYS | STS_UNLOCKED;
	k->ccb = CCB_KBD_INT | CCB_SYS | CCB_AUX_OFF | CCB_XLATE;
	k->outport = OUTP_RESET_HIGH | OUTP_A20;
	*ret = k;
	return 0;
}

void i8042_free(struct i8042 *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static void set_irq(struct i8042 *k, int level)
{
	if (level != k->irq_level) {
		k->irq_level = level;
		k->irq.set(k->irq.opaque, level);
	}
}

/* IRQ 1 follows "output buffer full" while keyboard interrupts are on. */
static void update_irq(struct i8042 *k)
{
	set_irq(k, k->count && (k->ccb & CCB_KBD_INT));
}

static bool queue_room(const struct i8042 *k, unsigned n)
{
	return QUEUE_SIZE - k->count >= n;
}

static void push(struct i8042 *k, uint8_t b)
{
	if (!queue_room(k, 1))
		return;  /* a real controller drops bytes the host never reads */
	k->q[(k->head + k->count) % QUEUE_SIZE] = b;
	k->count++;
}

static uint8_t pop(struct i8042 *k)
{
	if (!k->count)
		return k->last;
	k->last = k->q[k->head];
	k->head = (k->head + 1) % QUEUE_SIZE;
	k->count--;
	return k->last;
}

/* A byte written to the data port with no controller command pending goes
 * to the keyboard, which acknowledges everything it understands. */
static void kbd_command(struct i8042 *k, uint8_t v)
{
	if (k->kbd_wants_param) {
		k->kbd_wants_param = false;
		push(k, KBD_ACK);
		return;
	}
	switch (v) {
	case 0xff:  /* reset: ack, then basic assurance test passed */
		push(k, KBD_ACK);
		push(k, KBD_BAT_OK);
		break;
	case 0xf2:  /* identify: MF2 keyboard */
		push(k, KBD_ACK);
		push(k, 0xab);
		push(k, 0x83);
		break;
	case 0xee:  /* echo */
		push(k, 0xee);
		break;
	case 0xed:  /* set LEDs */
	case 0xf0:  /* scan code set */
	case 0xf3:  /* typematic rate */
		k->kbd_wants_param = true;
		push(k, KBD_ACK);
		break;
	default:
		push(k, KBD_ACK);
		break;
	}
}

/* Returns true when the write pulls the reset line. */
static bool write_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;

	k->pending_cmd = 0;
	k->status &= ~STS_CMD;
	switch (cmd) {
	case CMD_WRITE_CCB:
		k->ccb = v;
		k->status = (k->status & ~STS_SYS) | (v & CCB_SYS);
		return false;
	case CMD_WRITE_OUTP:
		k->outport = v;
		return !(v & OUTP_RESET_HIGH);
	case CMD_WRITE_KBD_OUT:
		push(k, v);
		return false;
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:
		return false;  /* no AUX device: the byte goes nowhere */
	default:
		kbd_command(k, v);
		return false;
	}
}

/* Returns true when the command pulses the reset line. */
static bool write_cmd(struct i8042 *k, uint8_t v)
{
	k->status |= STS_CMD;
	k->pending_cmd = 0;
	switch (v) {
	case CMD_READ_CCB:    push(k, k->ccb); break;
	case CMD_WRITE_CCB:
	case CMD_WRITE_OUTP:
	case CMD_WRITE_KBD_OUT:
	case CMD_WRITE_AUX_OUT:
	case CMD_WRITE_AUX:   k->pending_cmd = v; break;
	case CMD_AUX_DISABLE: k->ccb |= CCB_AUX_OFF; break;
	case CMD_AUX_ENABLE:  k->ccb &= ~CCB_AUX_OFF; break;
	case CMD_AUX_TEST:    push(k, 0x01); break;  /* clock stuck: no AUX */
	case CMD_SELF_TEST:   push(k, 0x55); k->status |= STS_SYS; break;
	case CMD_KBD_TEST:    push(k, 0x00); break;
	case CMD_KBD_DISABLE: k->ccb |= CCB_KBD_OFF; break;
	case CMD_KBD_ENABLE:  k->ccb &= ~CCB_KBD_OFF; break;
	case CMD_READ_OUTP:   push(k, k->outport); break;
	default:
		/* 0xf0-0xff pulse output port lines low for each clear bit 0-3;
		 * bit 0 is the CPU reset line. */
		return v >= 0xf0 && !(v & OUTP_RESET_HIGH);
	}
	return false;
}

static void i8042_data_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	data[0] = pop(k);
	/* Drop the line so the next queued byte makes a fresh edge. */
	set_irq(k, 0);
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

static void finish_write(struct i8042 *k, bool reset)
{
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	if (reset && k->reset_cb)
		k->reset_cb(k->opaque);
}

static void i8042_data_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	finish_write(k, write_data(k, data[0]));
}

static void i8042_cmd_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	data[0] = k->status | (k->count ? STS_OBF : 0);
	pthread_mutex_unlock(&k->lock);
}

static void i8042_cmd_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct i8042 *k = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&k->lock);
	finish_write(k, write_cmd(k, data[0]));
}

int i8042_send_ctrl_alt_del(struct i8042 *k)
{
	/* Ctrl, Alt, keypad Del (Linux's keymap binds Ctrl-Alt-KP. to Boot
	 * too) pressed, then released in the same order. */
	static const uint8_t set1[] = { 0x1d, 0x38, 0x53, 0x9d, 0xb8, 0xd3 };
	static const uint8_t set2[] = { 0x14, 0x11, 0x71,
	                                0xf0, 0x14, 0xf0, 0x11, 0xf0, 0x71 };
	const uint8_t *codes;
	unsigned n, i;
	int r = 0;

	pthread_mutex_lock(&k->lock);
	codes = (k->ccb & CCB_XLATE) ? set1 : set2;
	n = (k->ccb & CCB_XLATE) ? sizeof(set1) : sizeof(set2);
	if (!queue_room(k, n)) {
		r = -ENOSPC;
	} else {
		for (i = 0; i < n; i++)
			push(k, codes[i]);
	}
	update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return r;
}

const struct io_ops i8042_data_ops = {
	.read = i8042_data_read,
	.write = i8042_data_write,
};

const struct io_ops i8042_cmd_ops = {
	.read = i8042_cmd_read,
	.write = i8042_cmd_write,
};
