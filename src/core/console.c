#include "core/console.h"

#include <errno.h>
#include <signal.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/uart8250.h"

#define CTRL_A 0x01
#define CONSOLE_CLIENTS 4 /* on the console socket at once */

static struct console {
	struct vm *vm;
	int in_fd;
	int sig_fd;
	int drained_fd; /* eventfd: the UART has room again */
	int srv_fd;	/* the console socket's listening fd, or -1 */
	bool reading;	/* input sources polled (not while the UART is full) */
	bool escape; /* last byte was Ctrl-A */
	bool tty_saved;
	struct termios saved;
	uint8_t pending[256];
	unsigned pending_len, pending_off;
	/* The socket's clients: their input joins in_fd's, the guest's
	 * output goes to each (console_tap, on vCPU threads: under lock). */
	pthread_mutex_t lock;
	int clients[CONSOLE_CLIENTS];
	int nr_clients;
} con = { .in_fd = -1, .sig_fd = -1, .drained_fd = -1, .srv_fd = -1, .lock = PTHREAD_MUTEX_INITIALIZER };

void console_detach(void)
{
	if (con.tty_saved) {
		tcsetattr(con.in_fd, TCSANOW, &con.saved);
		con.tty_saved = false;
	}
}

/* Poll every input source, or none (while the UART holds what we gave it). */
static void sources_poll(bool on)
{
	uint32_t ev = on ? EPOLLIN : 0;

	con.reading = on;
	if (con.in_fd >= 0 && evloop_mod(con.vm->loop, con.in_fd, ev))
		con.in_fd = -1; /* not in the loop (a file, or ended) */
	for (int i = 0; i < con.nr_clients; i++)
		if (evloop_mod(con.vm->loop, con.clients[i], ev))
			pr_debug("console: client %d: cannot poll", con.clients[i]);
}

static void client_close(int fd)
{
	evloop_del(con.vm->loop, fd);
	pthread_mutex_lock(&con.lock);
	for (int i = 0; i < con.nr_clients; i++)
		if (con.clients[i] == fd)
			con.clients[i] = con.clients[--con.nr_clients];
	pthread_mutex_unlock(&con.lock);
	close(fd);
}

/* Feed what we hold to the UART; stop reading input while it is full. */
static void console_flush_pending(void)
{
	unsigned n = uart8250_receive(con.vm->uart, con.pending + con.pending_off,
				      con.pending_len - con.pending_off);

	con.pending_off += n;
	if (con.pending_off < con.pending_len) {
		if (con.reading)
			sources_poll(false);
	} else if (!con.reading) {
		sources_poll(true);
	}
}

static void console_input(void *opaque, uint32_t events)
{
	int fd = (int)(intptr_t)opaque;
	bool tty = fd == con.in_fd && con.tty_saved;
	ssize_t n;

	n = read(fd, con.pending, sizeof(con.pending));
	if (n <= 0) {
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			return;
		/* End of input: the guest keeps running without it. */
		if (fd == con.in_fd) {
			evloop_del(con.vm->loop, con.in_fd);
			con.in_fd = -1;
		} else {
			client_close(fd);
		}
		return;
	}
	/* On the terminal, Ctrl-A x stops the VM (as in QEMU); Ctrl-A Ctrl-A
	 * sends one Ctrl-A. The socket's clients send bytes as they are. */
	unsigned out = 0;
	for (ssize_t i = 0; i < n; i++) {
		uint8_t c = con.pending[i];

		if (tty && con.escape) {
			con.escape = false;
			if (c == 'x' || c == 'X') {
				vm_request_stop(con.vm, VM_EXIT_POWEROFF);
				return;
			}
			if (c != CTRL_A)
				continue;
		} else if (tty && c == CTRL_A) {
			con.escape = true;
			continue;
		}
		con.pending[out++] = c;
	}
	con.pending_len = out;
	con.pending_off = 0;
	console_flush_pending();
}

/* A client on the console socket: one more input source and reader. */
static void console_accept(void *opaque, uint32_t events)
{
	int fd = accept4(con.srv_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (con.nr_clients == CONSOLE_CLIENTS ||
	    evloop_add(con.vm->loop, fd, con.reading ? EPOLLIN : 0, console_input, (void *)(intptr_t)fd)) {
		static const char full[] = "tarn: the console has its clients already\r\n";

		if (send(fd, full, sizeof(full) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			pr_debug("console: %s", strerror(errno));
		close(fd);
		return;
	}
	pthread_mutex_lock(&con.lock);
	con.clients[con.nr_clients++] = fd;
	pthread_mutex_unlock(&con.lock);
}

/* Each byte the guest writes, to every client; one that cannot take it
 * now loses it (the console log keeps all). On a vCPU thread. */
static void console_tap(void *opaque, uint8_t c)
{
	pthread_mutex_lock(&con.lock);
	for (int i = 0; i < con.nr_clients; i++)
		if (send(con.clients[i], &c, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			pr_debug("console: client %d: %s", con.clients[i], strerror(errno));
	pthread_mutex_unlock(&con.lock);
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

void console_listen(int fd)
{
	con.srv_fd = fd;
}

/* The console socket, where there is one: clients join. */
static int console_serve(struct vm *vm)
{
	if (con.srv_fd < 0)
		return 0;
	vm->uart->tx_tap = console_tap;
	return evloop_add(vm->loop, con.srv_fd, EPOLLIN, console_accept, NULL);
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
	if (in_fd < 0 && con.srv_fd < 0)
		return 0;
	con.drained_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (con.drained_fd < 0)
		return -errno;
	ret = evloop_add(vm->loop, con.drained_fd, EPOLLIN, console_drained, NULL);
	if (ret)
		return ret;
	vm->uart->rx_drained = console_rx_drained;
	if (in_fd < 0) {
		con.reading = true;
		return console_serve(vm);
	}
	if (isatty(in_fd) && tcgetattr(in_fd, &con.saved) == 0) {
		struct termios raw = con.saved;

		cfmakeraw(&raw);
		raw.c_oflag |= OPOST | ONLCR; /* keep our own messages readable */
		if (tcsetattr(in_fd, TCSANOW, &raw) == 0) {
			con.tty_saved = true;
			atexit(console_detach);
		}
	}
	/* epoll refuses regular files: such input is not read. */
	con.reading = true;
	ret = evloop_add(vm->loop, in_fd, EPOLLIN, console_input, (void *)(intptr_t)in_fd);
	if (ret == -EPERM)
		con.in_fd = -1;
	else if (ret)
		return ret;
	return console_serve(vm);
}
