#include "core/console.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/uart8250.h"

#define CTRL_A 0x01

static struct console {
	struct vm *vm;
	int in_fd;
	int sig_fd;
	int drained_fd; /* eventfd: the UART has room again */
	bool reading;
	bool escape; /* last byte was Ctrl-A */
	bool tty_saved;
	struct termios saved;
	uint8_t pending[256];
	unsigned pending_len, pending_off;
} con = { .in_fd = -1, .sig_fd = -1, .drained_fd = -1 };

void console_detach(void)
{
	if (con.tty_saved) {
		tcsetattr(con.in_fd, TCSANOW, &con.saved);
		con.tty_saved = false;
	}
}

/* Feed what we hold to the UART; stop reading input while it is full. */
static void console_flush_pending(void);

static void console_input(void *opaque, uint32_t events)
{
	ssize_t n;

	n = read(con.in_fd, con.pending, sizeof(con.pending));
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		/* End of input: the guest keeps running without it. */
		evloop_del(con.vm->loop, con.in_fd);
		con.reading = false;
		return;
	}
	/* Ctrl-A x stops the VM (as in QEMU); Ctrl-A Ctrl-A sends one Ctrl-A. */
	unsigned out = 0;
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = con.pending[i];

		if (con.escape) {
			con.escape = false;
			if (c == 'x' || c == 'X') {
				vm_request_stop(con.vm, VM_EXIT_POWEROFF);
				return;
			}
			if (c != CTRL_A)
				continue;
		} else if (c == CTRL_A && con.tty_saved) {
			con.escape = true;
			continue;
		}
		con.pending[out++] = c;
	}
	con.pending_len = out;
	con.pending_off = 0;
	console_flush_pending();
}

static void console_flush_pending(void)
{
	unsigned n = uart8250_receive(con.vm->uart, con.pending + con.pending_off,
				      con.pending_len - con.pending_off);

	con.pending_off += n;
	if (con.pending_off < con.pending_len) {
		if (con.reading)
			evloop_del(con.vm->loop, con.in_fd);
		con.reading = false;
	} else if (!con.reading) {
		if (evloop_add(con.vm->loop, con.in_fd, EPOLLIN, console_input, NULL) == 0)
			con.reading = true;
	}
}

/* Runs on a vCPU thread: only signal the event loop. */
static void console_rx_drained(void *opaque)
{
	uint64_t one = 1;

	if (write(con.drained_fd, &one, sizeof(one)) < 0) {
		/* eventfd counter overflow is impossible in practice */
	}
}

static void console_drained(void *opaque, uint32_t events)
{
	uint64_t v;

	if (read(con.drained_fd, &v, sizeof(v)) < 0)
		return;
	if (con.pending_off < con.pending_len)
		console_flush_pending();
}

static void console_signal(void *opaque, uint32_t events)
{
	struct signalfd_siginfo si;

	if (read(con.sig_fd, &si, sizeof(si)) != sizeof(si))
		return;
	pr_info("signal %u: stopping the VM", si.ssi_signo);
	vm_request_stop(con.vm, VM_EXIT_POWEROFF);
}

int console_attach(struct vm *vm, int in_fd)
{
	sigset_t set;
	int ret;

	con.vm = vm;
	con.in_fd = in_fd;
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	/* Blocked before any vCPU thread starts, so every thread inherits it
	 * and the signals arrive only through the signalfd. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	con.sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (con.sig_fd < 0)
		return -errno;
	ret = evloop_add(vm->loop, con.sig_fd, EPOLLIN, console_signal, NULL);
	if (ret)
		return ret;
	if (in_fd < 0)
		return 0;
	con.drained_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (con.drained_fd < 0)
		return -errno;
	ret = evloop_add(vm->loop, con.drained_fd, EPOLLIN, console_drained, NULL);
	if (ret)
		return ret;
	vm->uart->rx_drained = console_rx_drained;
	if (isatty(in_fd) && tcgetattr(in_fd, &con.saved) == 0) {
		struct termios raw = con.saved;

		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR; /* keep our own messages readable */
		if (tcsetattr(in_fd, TCSANOW, &raw) == 0) {
			con.tty_saved = true;
			atexit(console_detach);
		}
	}
	/* epoll refuses regular files: a file as input is read at once. */
	ret = evloop_add(vm->loop, in_fd, EPOLLIN, console_input, NULL);
	if (ret == -EPERM)
		return 0;
	if (ret)
		return ret;
	con.reading = true;
	return 0;
}
