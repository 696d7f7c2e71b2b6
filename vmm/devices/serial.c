/* SPDX-License-Identifier: MIT */
/*
 * 16550A UART.  Transmission is instantaneous: the transmitter is always
 * empty (LSR THRE|TEMT) and a THR write re-arms the THRE interrupt at once,
 * as the guest driver expects after the byte "left".
 *
 * Host input only enters the receive FIFO while the guest has the receive
 * interrupt enabled (IER bit 0): that is how a driver says it is listening.
 * Input sent earlier waits with the producer instead of being thrown away
 * by the FIFO resets of the guest's UART setup, and a driver that masks the
 * interrupt to throttle input pauses the producer too.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "vmm/devices/serial.h"

enum {
	REG_RBR_THR = 0, REG_IER = 1, REG_IIR_FCR = 2, REG_LCR = 3,
	REG_MCR = 4, REG_LSR = 5, REG_MSR = 6, REG_SCR = 7,
};

#define IER_RDA    0x01
#define IER_THRE   0x02
#define IER_RLS    0x04
#define IER_MASK   0x0f

#define IIR_NONE   0x01
#define IIR_RLS    0x06
#define IIR_RDA    0x04
#define IIR_THRE   0x02
#define IIR_FIFO   0xc0

#define FCR_ENABLE   0x01
#define FCR_CLEAR_RX 0x02
#define FCR_KEEP     0xc9  /* enable, DMA mode, trigger level */

#define LCR_DLAB   0x80

#define MCR_DTR    0x01
#define MCR_RTS    0x02
#define MCR_OUT1   0x04
#define MCR_OUT2   0x08
#define MCR_LOOP   0x10
#define MCR_MASK   0x1f

#define LSR_DR     0x01
#define LSR_OE     0x02
#define LSR_THRE   0x20
#define LSR_TEMT   0x40

#define MSR_CTS    0x10
#define MSR_DSR    0x20
#define MSR_RI     0x40
#define MSR_DCD    0x80

struct serial {
	pthread_mutex_t lock;
	uint8_t ier, lcr, mcr, fcr, scr, dll, dlm;
	bool overrun;         /* LSR OE, cleared by reading LSR */
	bool thr_ipending;    /* THRE interrupt condition, cleared by IIR read */
	bool rx_wait;         /* a producer is waiting for FIFO room */
	int irq_level;
	uint8_t rx[SERIAL_RX_FIFO_SIZE];
	unsigned rx_head, rx_count;
	struct irq_line irq;
	struct serial_callbacks cb;
};

int serial_new(const struct irq_line *irq, const struct serial_callbacks *cb,
               struct serial **ret)
{
	struct serial *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->irq = *irq;
	s->cb = *cb;
	s->dll = 0x0c;            /* 9600 baud, as firmware would leave it */
	s->lcr = 0x03;            /* 8N1 */
	s->mcr = MCR_OUT2;
	s->thr_ipending = false;  /* only armed by enabling THRE or a write */
	*ret = s;
	return 0;
}

void serial_free(struct serial *s)
{
	if (!s)
		return;
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Highest-priority pending interrupt, in 16550 order. */
static uint8_t iir_source(const struct serial *s)
{
	if ((s->ier & IER_RLS) && s->overrun)
		return IIR_RLS;
	if ((s->ier & IER_RDA) && s->rx_count)
		return IIR_RDA;
	if ((s->ier & IER_THRE) && s->thr_ipending)
		return IIR_THRE;
	return IIR_NONE;
}

static void update_irq(struct serial *s)
{
	int level = iir_source(s) != IIR_NONE;

	if (level != s->irq_level) {
		s->irq_level = level;
		s->irq.set(s->irq.opaque, level);
	}
}

static bool rx_push(struct serial *s, uint8_t b)
{
	if (s->rx_count == SERIAL_RX_FIFO_SIZE)
		return false;
	s->rx[(s->rx_head + s->rx_count) % SERIAL_RX_FIFO_SIZE] = b;
	s->rx_count++;
	return true;
}

static uint8_t rx_pop(struct serial *s)
{
	uint8_t b;

	if (!s->rx_count)
		return 0;
	b = s->rx[s->rx_head];
	s->rx_head = (s->rx_head + 1) % SERIAL_RX_FIFO_SIZE;
	s->rx_count--;
	/* Wake the producer once there is real room, not on every byte. */
	if (s->rx_wait && s->rx_count <= SERIAL_RX_FIFO_SIZE / 2) {
		s->rx_wait = false;
		if (s->cb.rx_ready_cb)
			s->cb.rx_ready_cb(s->cb.opaque);
	}
	return b;
}

size_t serial_receive(struct serial *s, const uint8_t *buf, size_t len)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	while (n < len && (s->ier & IER_RDA) && rx_push(s, buf[n]))
		n++;
	if (n < len)
		s->rx_wait = true;
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
	return n;
}

static void write_thr(struct serial *s, uint8_t v)
{
	if (s->mcr & MCR_LOOP) {
		if (!rx_push(s, v))
			s->overrun = true;
	} else if (s->cb.tx_cb) {
		s->cb.tx_cb(s->cb.opaque, &v, 1);
	}
	s->thr_ipending = true;
}

static void write_fcr(struct serial *s, uint8_t v)
{
	/* Toggling FIFO enable or asking for it clears the receive FIFO. */
	if ((v & FCR_CLEAR_RX) || ((v ^ s->fcr) & FCR_ENABLE)) {
		s->rx_head = s->rx_count = 0;
		if (s->rx_wait && s->cb.rx_ready_cb) {
			s->rx_wait = false;
			s->cb.rx_ready_cb(s->cb.opaque);
		}
	}
	s->fcr = v & FCR_KEEP;
}

static void write_reg(struct serial *s, uint64_t off, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (off) {
	case REG_RBR_THR:
		if (dlab)
			s->dll = v;
		else
			write_thr(s, v);
		break;
	case REG_IER:
		if (dlab) {
			s->dlm = v;
			break;
		}
		/* Enabling THRE with an empty transmitter interrupts at once. */
		if ((v & IER_THRE) && !(s->ier & IER_THRE))
			s->thr_ipending = true;
		if ((v & IER_RDA) && !(s->ier & IER_RDA) && s->rx_wait) {
			s->rx_wait = false;
			if (s->cb.rx_ready_cb)
				s->cb.rx_ready_cb(s->cb.opaque);
		}
		s->ier = v & IER_MASK;
		break;
	case REG_IIR_FCR:
		write_fcr(s, v);
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & MCR_MASK;
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default:  /* LSR and MSR are read-only */
		break;
	}
}

static uint8_t read_iir(struct serial *s)
{
	uint8_t src = iir_source(s);

	if (src == IIR_THRE)
		s->thr_ipending = false;
	return src | ((s->fcr & FCR_ENABLE) ? IIR_FIFO : 0);
}

static uint8_t read_lsr(struct serial *s)
{
	uint8_t v = LSR_THRE | LSR_TEMT;

	if (s->rx_count)
		v |= LSR_DR;
	if (s->overrun)
		v |= LSR_OE;
	s->overrun = false;
	return v;
}

static uint8_t read_msr(const struct serial *s)
{
	uint8_t v = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS;  /* a peer is always there */
	/* Loopback wires the modem outputs back to the inputs. */
	if (s->mcr & MCR_RTS)
		v |= MSR_CTS;
	if (s->mcr & MCR_DTR)
		v |= MSR_DSR;
	if (s->mcr & MCR_OUT1)
		v |= MSR_RI;
	if (s->mcr & MCR_OUT2)
		v |= MSR_DCD;
	return v;
}

static uint8_t read_reg(struct serial *s, uint64_t off)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (off) {
	case REG_RBR_THR:
		return dlab ? s->dll : rx_pop(s);
	case REG_IER:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR:
		return read_iir(s);
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return read_lsr(s);
	case REG_MSR:
		return read_msr(s);
	case REG_SCR:
		return s->scr;
	default:
		return 0xff;
	}
}

/* Only byte accesses reach registers; wider ones read as 0xff. */
static void serial_read(void *opaque, uint64_t off, uint8_t *data, uint32_t len)
{
	struct serial *s = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&s->lock);
	data[0] = read_reg(s, off);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_write(void *opaque, uint64_t off, const uint8_t *data, uint32_t len)
{
	struct serial *s = opaque;

	if (len != 1)
		return;
	pthread_mutex_lock(&s->lock);
	write_reg(s, off, data[0]);
	update_irq(s);
	pthread_mutex_unlock(&s->lock);
}

const struct io_ops serial_io_ops = {
	.read = serial_read,
	.write = serial_write,
};
