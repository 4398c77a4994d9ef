/* The 16550A UART, driven through the PIO bus the way a guest driver does:
 * transmit, divisor latch, scratch, interrupt enable/identification, the
 * receive buffer, loopback (what Linux's 8250 autoconfig probes) and odd
 * access widths. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
#include "fake_vm.h"
#include "hw/uart8250.h"

#define COM1 0x3f8
enum { RBR = 0, THR = 0, DLL = 0, IER = 1, DLM = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4,
       LSR = 5, MSR = 6, SCR = 7 };

struct fixture {
	struct fake_vm vm;
	struct uart8250 u;
	int pipe[2];
	int drained;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fake_vm_init(&f->vm, &fake_vm_ops); /* no interrupt controller */
	assert_int_equal(pipe2(f->pipe, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(uart8250_init(&f->u, &f->vm.ctx, COM1, 4, f->pipe[1]), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	uart8250_destroy(&f->u);
	fake_vm_destroy(&f->vm);
	close(f->pipe[0]);
	close(f->pipe[1]);
	free(f);
	return 0;
}

static uint8_t in8(struct fixture *f, unsigned reg)
{
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->vm.pio, COM1 + reg, &v, 1, false), 0);
	return v;
}

static void out8(struct fixture *f, unsigned reg, uint8_t v)
{
	assert_int_equal(bus_access(&f->vm.pio, COM1 + reg, &v, 1, true), 0);
}

static void test_registered(void **state)
{
	struct fixture *f = *state;

	assert_non_null(bus_find(&f->vm.pio, COM1));
	assert_non_null(bus_find(&f->vm.pio, COM1 + 7));
	assert_null(bus_find(&f->vm.pio, COM1 + 8));
	/* Power-on: 8N1, no interrupts, transmitter empty, nothing received. */
	assert_int_equal(in8(f, LCR), 0x03);
	assert_int_equal(in8(f, IER), 0);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x01);
	assert_int_equal(in8(f, LSR), 0x60);
	assert_false(f->u.irq_level);
}

static void test_thr_to_pipe(void **state)
{
	struct fixture *f = *state;
	const char *msg = "Linux version 6.x\r\n";
	char buf[64];
	ssize_t n;

	for (const char *p = msg; *p; p++) {
		/* Drivers poll LSR.THRE before each byte. */
		assert_true(in8(f, LSR) & 0x20);
		out8(f, THR, (uint8_t)*p);
	}
	n = read(f->pipe[0], buf, sizeof(buf));
	assert_int_equal(n, (ssize_t)strlen(msg));
	assert_memory_equal(buf, msg, strlen(msg));
	assert_int_equal(f->u.tx_bytes, strlen(msg));
	/* Nothing echoed into the receiver. */
	assert_false(in8(f, LSR) & 0x01);
}

static void test_divisor_latch(void **state)
{
	struct fixture *f = *state;
	char c;

	out8(f, LCR, 0x83); /* DLAB, 8N1 */
	/* The power-on divisor is 12 (9600 baud). */
	assert_int_equal(in8(f, DLL), 12);
	assert_int_equal(in8(f, DLM), 0);
	out8(f, DLL, 0x01); /* 115200 */
	out8(f, DLM, 0x02);
	assert_int_equal(in8(f, DLL), 0x01);
	assert_int_equal(in8(f, DLM), 0x02);
	assert_int_equal(f->u.divisor, 0x0201);
	out8(f, LCR, 0x03);
	assert_int_equal(in8(f, LCR), 0x03);
	/* Divisor writes went to the latch, not to the line or IER. */
	assert_int_equal(read(f->pipe[0], &c, 1), -1);
	assert_int_equal(in8(f, IER), 0);
	out8(f, LCR, 0x83);
	out8(f, DLM, 0x00);
	assert_int_equal(in8(f, DLL), 0x01);
	assert_int_equal(in8(f, DLM), 0x00);
	out8(f, LCR, 0x03);
}

static void test_scratch(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in8(f, SCR), 0);
	out8(f, SCR, 0xa5);
	assert_int_equal(in8(f, SCR), 0xa5);
	out8(f, SCR, 0x5a);
	assert_int_equal(in8(f, SCR), 0x5a);
}

static void test_ier_mask(void **state)
{
	struct fixture *f = *state;

	/* Linux's autoconfig: IER=0 reads 0, IER=0x0f reads 0x0f. */
	out8(f, IER, 0x00);
	assert_int_equal(in8(f, IER), 0x00);
	out8(f, IER, 0xff);
	assert_int_equal(in8(f, IER), 0x0f);
	out8(f, IER, 0xf1);
	assert_int_equal(in8(f, IER), 0x01);
}

static void test_iir_thre(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(in8(f, IIR) & 0x0f, 0x01);
	out8(f, IER, 0x02); /* THRI */
	assert_true(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x02);
	/* Reading IIR acknowledged it. */
	assert_false(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x01);
	/* Writing a byte empties THR again: a new THRE interrupt. */
	out8(f, THR, 'x');
	assert_true(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x02);
	assert_false(f->u.irq_level);
	/* Disabling THRI with one pending drops the line. */
	out8(f, THR, 'y');
	assert_true(f->u.irq_level);
	out8(f, IER, 0x00);
	assert_false(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x01);
	/* FIFO enabled shows in IIR's top bits (16550A detection). */
	out8(f, FCR, 0x01);
	assert_int_equal(in8(f, IIR) & 0xc0, 0xc0);
	out8(f, FCR, 0x00);
	assert_int_equal(in8(f, IIR) & 0xc0, 0x00);
}

static void test_rx(void **state)
{
	struct fixture *f = *state;

	assert_false(in8(f, LSR) & 0x01);
	assert_int_equal(uart8250_receive(&f->u, (const uint8_t *)"abc", 3), 3);
	/* No RDI enabled: no interrupt. */
	assert_false(f->u.irq_level);
	assert_true(in8(f, LSR) & 0x01);
	assert_int_equal(in8(f, RBR), 'a');
	out8(f, IER, 0x01); /* RDI */
	assert_true(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x04);
	/* Reading IIR does not acknowledge received data. */
	assert_true(f->u.irq_level);
	assert_int_equal(in8(f, RBR), 'b');
	assert_true(in8(f, LSR) & 0x01);
	assert_int_equal(in8(f, RBR), 'c');
	assert_false(in8(f, LSR) & 0x01);
	assert_false(f->u.irq_level);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x01);
	/* Empty RBR reads 0 and does not underflow the buffer. */
	assert_int_equal(in8(f, RBR), 0);
	assert_false(in8(f, LSR) & 0x01);
	assert_int_equal(uart8250_receive(&f->u, (const uint8_t *)"d", 1), 1);
	assert_true(f->u.irq_level);
	assert_int_equal(in8(f, RBR), 'd');
	assert_false(f->u.irq_level);
	/* RX data outranks THRE in IIR. */
	out8(f, IER, 0x03);
	assert_int_equal(uart8250_receive(&f->u, (const uint8_t *)"e", 1), 1);
	assert_int_equal(in8(f, IIR) & 0x0f, 0x04);
	assert_int_equal(in8(f, RBR), 'e');
	assert_int_equal(in8(f, IIR) & 0x0f, 0x02);
	assert_false(f->u.irq_level);
}

static void on_drained(void *opaque)
{
	struct fixture *f = opaque;

	f->drained++;
}

static void test_rx_full(void **state)
{
	struct fixture *f = *state;
	static uint8_t buf[UART_RX_BUF + 100];

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 7);
	f->u.rx_drained = on_drained;
	f->u.rx_drained_opaque = f;
	assert_int_equal(uart8250_receive(&f->u, buf, 10), 10);
	/* Only what fits is accepted; the caller keeps the rest. */
	assert_int_equal(uart8250_receive(&f->u, buf + 10, sizeof(buf) - 10), UART_RX_BUF - 10);
	assert_int_equal(uart8250_receive(&f->u, buf, 1), 0);
	assert_int_equal(f->drained, 0);
	/* Bytes come out in order; draining the full buffer tells the console. */
	for (unsigned i = 0; i < UART_RX_BUF; i++) {
		if (in8(f, RBR) != buf[i])
			fail_msg("byte %u out of order", i);
		if (i == 0)
			assert_int_equal(f->drained, 1);
	}
	assert_false(in8(f, LSR) & 0x01);
	assert_int_equal(f->drained, 1);
	/* FCR's "clear RX FIFO" drops pending input. */
	assert_int_equal(uart8250_receive(&f->u, buf, 5), 5);
	out8(f, FCR, 0x03);
	assert_false(in8(f, LSR) & 0x01);
}

static void test_loopback(void **state)
{
	struct fixture *f = *state;
	char c;

	/* Outside loopback the modem lines say "connected". */
	assert_int_equal(in8(f, MSR) & 0xf0, 0xb0);
	/* Linux 8250 autoconfig: MCR = LOOP | OUT2 | RTS, expect MSR = DCD | CTS. */
	out8(f, MCR, 0x10 | 0x0a);
	assert_int_equal(in8(f, MCR), 0x1a);
	assert_int_equal(in8(f, MSR) & 0xf0, 0x90);
	out8(f, MCR, 0x10 | 0x05); /* DTR | OUT1 -> DSR | RI */
	assert_int_equal(in8(f, MSR) & 0xf0, 0x60);
	out8(f, MCR, 0x1f);
	assert_int_equal(in8(f, MSR) & 0xf0, 0xf0);
	out8(f, MCR, 0x10);
	assert_int_equal(in8(f, MSR) & 0xf0, 0x00);

	/* THR comes back through RBR, not out of the port. */
	out8(f, THR, 'Q');
	out8(f, THR, 'R');
	assert_true(in8(f, LSR) & 0x01);
	assert_int_equal(in8(f, RBR), 'Q');
	assert_int_equal(in8(f, RBR), 'R');
	assert_false(in8(f, LSR) & 0x01);
	assert_int_equal(read(f->pipe[0], &c, 1), -1);

	/* Leaving loopback restores the line. */
	out8(f, MCR, 0x0b);
	assert_int_equal(in8(f, MSR) & 0xf0, 0xb0);
	out8(f, THR, 'S');
	assert_int_equal(read(f->pipe[0], &c, 1), 1);
	assert_int_equal(c, 'S');
	assert_false(in8(f, LSR) & 0x01);
}

static void test_wide_access(void **state)
{
	struct fixture *f = *state;
	uint32_t v32 = 0;
	uint16_t v16 = 0;
	char c;

	out8(f, SCR, 0x42);
	assert_int_equal(bus_access(&f->vm.pio, COM1, &v32, 4, false), 0);
	assert_int_equal(v32, 0xffffffff);
	assert_int_equal(bus_access(&f->vm.pio, COM1 + 6, &v16, 2, false), 0);
	assert_int_equal(v16, 0xffff);
	/* Straddling the end of the UART's ports. */
	assert_int_equal(bus_access(&f->vm.pio, COM1 + 6, &v32, 4, false), -ENOENT);
	assert_int_equal(v32, 0xffffffff);
	/* Wide writes are ignored: nothing transmitted, scratch unchanged. */
	v32 = 0x41414141;
	assert_int_equal(bus_access(&f->vm.pio, COM1, &v32, 4, true), 0);
	v16 = 0x1111;
	assert_int_equal(bus_access(&f->vm.pio, COM1 + 6, &v16, 2, true), 0);
	assert_int_equal(read(f->pipe[0], &c, 1), -1);
	assert_int_equal(f->u.tx_bytes, 0);
	assert_int_equal(in8(f, SCR), 0x42);
	/* Wide reads do not consume received data. */
	assert_int_equal(uart8250_receive(&f->u, (const uint8_t *)"z", 1), 1);
	assert_int_equal(bus_access(&f->vm.pio, COM1, &v16, 2, false), 0);
	assert_int_equal(in8(f, RBR), 'z');
}

static void test_closed_output(void **state)
{
	struct fixture *f = *state;

	/* A console that went away must not stop the guest's writes. */
	close(f->pipe[0]);
	f->pipe[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
	assert_true(f->pipe[0] >= 0);
	signal(SIGPIPE, SIG_IGN);
	out8(f, THR, 'a');
	assert_int_equal(f->u.tx_bytes, 1);
	assert_true(in8(f, LSR) & 0x20);
}

struct tx_thread {
	struct fixture *f;
	volatile bool done;
};

static void *tx_one(void *arg)
{
	struct tx_thread *t = arg;
	uint8_t v = '!';

	bus_access(&t->f->vm.pio, COM1 + THR, &v, 1, true);
	t->done = true;
	return NULL;
}

/* uart8250.c promises "a closed or full console must not stop the guest".
 * The console is normally a blocking stdout: when whatever reads it stops
 * reading (a full pipe, a paused terminal), a THR write must still
 * complete rather than stall the vCPU inside the device. */
static void test_full_output_does_not_block(void **state)
{
	struct fixture *f = *state;
	struct tx_thread t = { .f = f };
	char junk[4096];
	pthread_t th;
	bool done = false;

	/* Fill the pipe, then make the write end blocking, like stdout. */
	fcntl(f->pipe[1], F_SETPIPE_SZ, 4096);
	memset(junk, 'j', sizeof(junk));
	while (write(f->pipe[1], junk, sizeof(junk)) > 0)
		;
	while (write(f->pipe[1], junk, 1) > 0)
		;
	assert_int_equal(fcntl(f->pipe[1], F_SETFL, 0), 0);

	assert_int_equal(pthread_create(&th, NULL, tx_one, &t), 0);
	for (int i = 0; i < 100 && !done; i++) {
		struct timespec ts = { 0, 10 * 1000 * 1000 };

		nanosleep(&ts, NULL);
		done = t.done;
	}
	/* Unblock the writer either way before judging. */
	while (!t.done) {
		ssize_t n = read(f->pipe[0], junk, sizeof(junk));

		if (n <= 0) {
			struct timespec ts = { 0, 1000 * 1000 };

			nanosleep(&ts, NULL);
		}
	}
	pthread_join(th, NULL);
	if (!done)
		fail_msg("a THR write blocked for 1 s on a full console");
	/* The guest still sees an empty transmitter. */
	assert_true(in8(f, LSR) & 0x20);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registered, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thr_to_pipe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_scratch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ier_mask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iir_thre, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wide_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_closed_output, setup, teardown),
		cmocka_unit_test_setup_teardown(test_full_output_does_not_block, setup, teardown),
	};

	return cmocka_run_group_tests_name("uart8250", tests, NULL, NULL);
}
