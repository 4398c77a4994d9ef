/* 16550A UART. Register map per the National Semiconductor PC16550D data
 * sheet; what Linux's 8250 driver probes (scratch, IER read-back, FIFO
 * detection through IIR, loopback MSR test) behaves as on hardware. */
#include "hw/uart8250.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/devctx.h"

enum {
	UART_RBR_THR = 0, UART_IER = 1, UART_IIR_FCR = 2, UART_LCR = 3,
	UART_MCR = 4, UART_LSR = 5, UART_MSR = 6, UART_SCR = 7,
};

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04
#define IER_MSI 0x08
#define IIR_NO_INT 0x01
#define IIR_MSI 0x00
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_FIFO_ENABLED 0xc0
#define LCR_DLAB 0x80
#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define LSR_DR 0x01
#define LSR_THRE 0x20
#define LSR_TEMT 0x40
#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

static uint8_t uart_iir(const struct uart8250 *u)
{
	uint8_t fifo = (u->fcr & 1) ? IIR_FIFO_ENABLED : 0;

	if ((u->ier & IER_RDI) && u->rx_count)
		return IIR_RDI | fifo;
	if ((u->ier & IER_THRI) && u->thre_pending)
		return IIR_THRI | fifo;
	return IIR_NO_INT | fifo;
}

/* Called with the lock held. The line follows "an interrupt is pending". */
static void uart_update_irq(struct uart8250 *u)
{
	bool level = !(uart_iir(u) & IIR_NO_INT);

	if (level != u->irq_level) {
		u->irq_level = level;
		dev_irq_line(u->ctx, u->irq, level);
	}
}

static void uart_push_rx(struct uart8250 *u, uint8_t c)
{
	if (u->rx_count == UART_RX_BUF)
		return; /* overrun: drop, as hardware does */
	u->rx[(u->rx_head + u->rx_count) % UART_RX_BUF] = c;
	u->rx_count++;
}

static void uart_transmit(struct uart8250 *u, uint8_t c)
{
	if (u->mcr & MCR_LOOP) {
		uart_push_rx(u, c);
	} else if (u->out_fd >= 0) {
		/* A closed or full console must not stop the guest. A slow
		 * reader gets up to 100 ms of back-pressure; past that the
		 * console counts as stalled and output is dropped (without
		 * waiting) until it drains. The fd stays blocking: it is
		 * usually the terminal tarn shares with its parent. */
		struct pollfd p = { .fd = u->out_fd, .events = POLLOUT };
		ssize_t n = -1;

		if (poll(&p, 1, u->out_stalled ? 0 : 100) == 1 && (p.revents & POLLOUT)) {
			do {
				n = write(u->out_fd, &c, 1);
			} while (n < 0 && errno == EINTR);
		}
		u->out_stalled = n != 1;
		if (n != 1)
			u->tx_dropped++;
	}
	if (u->tx_tap && !(u->mcr & MCR_LOOP))
		u->tx_tap(u->tx_tap_opaque, c);
	u->tx_bytes++;
	/* Transmission is instantaneous: THR is empty again at once. */
	u->thre_pending = true;
}

static void uart_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct uart8250 *u = opaque;
	uint8_t v = 0xff;
	bool drained = false;

	if (len != 1)
		return; /* the 8250 is a byte device; wider reads float */
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_RBR_THR:
		if (u->lcr & LCR_DLAB) {
			v = u->divisor & 0xff;
		} else {
			v = 0;
			if (u->rx_count) {
				drained = u->rx_count == UART_RX_BUF;
				v = u->rx[u->rx_head];
				u->rx_head = (u->rx_head + 1) % UART_RX_BUF;
				u->rx_count--;
			}
		}
		break;
	case UART_IER:
		v = (u->lcr & LCR_DLAB) ? u->divisor >> 8 : u->ier;
		break;
	case UART_IIR_FCR:
		v = uart_iir(u);
		/* Reading IIR acknowledges a THR-empty interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			u->thre_pending = false;
		break;
	case UART_LCR:
		v = u->lcr;
		break;
	case UART_MCR:
		v = u->mcr;
		break;
	case UART_LSR:
		v = LSR_THRE | LSR_TEMT | (u->rx_count ? LSR_DR : 0);
		break;
	case UART_MSR:
		if (u->mcr & MCR_LOOP) {
			v = (u->mcr & MCR_RTS ? MSR_CTS : 0) | (u->mcr & MCR_DTR ? MSR_DSR : 0) |
			    (u->mcr & MCR_OUT1 ? MSR_RI : 0) | (u->mcr & MCR_OUT2 ? MSR_DCD : 0);
		} else {
			/* A console is always connected: carrier, DSR, CTS. */
			v = MSR_DCD | MSR_DSR | MSR_CTS;
		}
		break;
	case UART_SCR:
		v = u->scr;
		break;
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	*(uint8_t *)data = v;
	if (drained && u->rx_drained)
		u->rx_drained(u->rx_drained_opaque);
}

static void uart_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct uart8250 *u = opaque;
	uint8_t v = *(const uint8_t *)data;

	if (len != 1)
		return;
	pthread_mutex_lock(&u->lock);
	switch (off) {
	case UART_RBR_THR:
		if (u->lcr & LCR_DLAB) {
			u->divisor = (u->divisor & 0xff00) | v;
		} else {
			u->thre_pending = false;
			uart_transmit(u, v);
		}
		break;
	case UART_IER:
		if (u->lcr & LCR_DLAB) {
			u->divisor = (uint16_t)((u->divisor & 0xff) | v << 8);
		} else {
			/* Enabling THRI while THR is empty raises it at once. */
			if (!(u->ier & IER_THRI) && (v & IER_THRI))
				u->thre_pending = true;
			u->ier = v & 0x0f;
		}
		break;
	case UART_IIR_FCR:
		u->fcr = v & 0xc9;
		if (v & 0x02) { /* clear RX FIFO */
			u->rx_head = 0;
			u->rx_count = 0;
		}
		break;
	case UART_LCR:
		/* Leaving DLAB with a new divisor is the guest choosing its speed:
		 * worth one info line (tests watch for it). */
		if ((u->lcr & LCR_DLAB) && !(v & LCR_DLAB) && u->divisor)
			pr_info("COM@%#x: guest set divisor %u (%u baud), LCR %#x", u->base,
				u->divisor, 115200 / u->divisor, v);
		u->lcr = v;
		break;
	case UART_MCR:
		u->mcr = v & 0x1f;
		break;
	case UART_SCR:
		u->scr = v;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
}

static const struct bus_ops uart_ops = { .read = uart_read, .write = uart_write };

/* ---- snapshots ---- */

static void uart_save(void *obj, struct snap_buf *b)
{
	struct uart8250 *u = obj;

	pthread_mutex_lock(&u->lock);
	snap_put_u8(b, u->ier);
	snap_put_u8(b, u->lcr);
	snap_put_u8(b, u->mcr);
	snap_put_u8(b, u->lsr_extra);
	snap_put_u8(b, u->msr);
	snap_put_u8(b, u->scr);
	snap_put_u8(b, u->fcr);
	snap_put_u8(b, u->thre_pending);
	snap_put_u16(b, u->divisor);
	snap_put_u32(b, u->rx_count);
	for (unsigned i = 0; i < u->rx_count; i++)
		snap_put_u8(b, u->rx[(u->rx_head + i) % UART_RX_BUF]);
	pthread_mutex_unlock(&u->lock);
}

static int uart_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct uart8250 *u = obj;
	uint8_t r[8];
	uint16_t div;
	uint32_t n;

	for (int i = 0; i < 8; i++)
		r[i] = snap_get_u8(c);
	div = snap_get_u16(c);
	n = snap_get_u32(c);
	if (n > UART_RX_BUF || n > c->len - c->off)
		return errorf(err, len, -EINVAL, "%u bytes of input (at most %d)", n, UART_RX_BUF);
	if ((r[0] & 0xf0) || (r[2] & 0xe0) || r[7] > 1)
		return errorf(err, len, -EINVAL, "IER %#x or MCR %#x sets reserved bits", r[0], r[2]);
	pthread_mutex_lock(&u->lock);
	u->ier = r[0], u->lcr = r[1], u->mcr = r[2], u->lsr_extra = r[3];
	u->msr = r[4], u->scr = r[5], u->fcr = r[6], u->thre_pending = r[7];
	u->divisor = div;
	u->rx_head = 0;
	u->rx_count = n;
	snap_get_bytes(c, u->rx, n);
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return 0;
}

static const struct snap_ops uart_snap = {
	.name = "serial port", .id = SNAP_ID("UART"), .version = 1, .save = uart_save, .restore = uart_restore,
};

int uart8250_init(struct uart8250 *u, const struct devctx *ctx, uint16_t base, unsigned irq, int out_fd)
{
	memset(u, 0, sizeof(*u));
	pthread_mutex_init(&u->lock, NULL);
	u->ctx = ctx;
	u->base = base;
	u->irq = irq;
	u->out_fd = out_fd;
	u->divisor = 12; /* 9600 baud, the power-on default */
	u->lcr = 0x03;
	if (dev_register_state(ctx, &uart_snap, u, base))
		return -ENOMEM;
	return bus_register(ctx->pio, base, 8, &uart_ops, u, "uart8250");
}

void uart8250_destroy(struct uart8250 *u)
{
	pthread_mutex_destroy(&u->lock);
}

unsigned uart8250_receive(struct uart8250 *u, const uint8_t *buf, unsigned len)
{
	unsigned n = 0;

	pthread_mutex_lock(&u->lock);
	while (n < len && u->rx_count < UART_RX_BUF)
		uart_push_rx(u, buf[n++]);
	uart_update_irq(u);
	pthread_mutex_unlock(&u->lock);
	return n;
}
