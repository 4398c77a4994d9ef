/* 16550A UART (the PC's COM ports). Output goes straight to a host fd;
 * input arrives from the console through uart_receive(). Interrupts in both
 * directions: received data available and transmitter empty. */
#ifndef TARN_UART8250_H
#define TARN_UART8250_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct devctx;

#define UART_RX_BUF 4096

struct uart8250 {
	pthread_mutex_t lock;
	const struct devctx *ctx;
	uint16_t base;
	unsigned irq;
	int out_fd;
	bool irq_level;

	uint8_t ier, lcr, mcr, lsr_extra, msr, scr, fcr;
	uint16_t divisor;
	bool thre_pending; /* THR-empty interrupt waiting to be seen in IIR */

	uint8_t rx[UART_RX_BUF];
	unsigned rx_head, rx_count;

	/* Called (from a vCPU thread) when the guest has drained a full RX
	 * buffer, so the console can resume reading input. */
	void (*rx_drained)(void *opaque);
	void *rx_drained_opaque;
	/* Optional: every byte the guest transmits, also (on the vCPU thread
	 * that wrote it; must not block): the console's socket clients. */
	void (*tx_tap)(void *opaque, uint8_t c);
	void *tx_tap_opaque;

	bool out_stalled;    /* the console stopped reading: drop, don't wait */
	uint64_t tx_bytes;   /* for tests */
	uint64_t tx_dropped; /* bytes a stalled or closed console lost */
};

#define UART_COM1_BASE 0x3f8
#define UART_COM1_IRQ 4

int uart8250_init(struct uart8250 *u, const struct devctx *ctx, uint16_t base, unsigned irq, int out_fd)
	__attribute__((warn_unused_result));
void uart8250_destroy(struct uart8250 *u);
/* Queue input bytes; returns how many fit. */
unsigned uart8250_receive(struct uart8250 *u, const uint8_t *buf, unsigned len);

#endif
