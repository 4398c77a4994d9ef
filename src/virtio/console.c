/* virtio-console (virtio spec 5.3) with one port and no optional features
 * (no F_SIZE, no MULTIPORT, no EMERG_WRITE): queue 0 is receiveq0 (host ->
 * guest), queue 1 transmitq0 (guest -> host); Linux calls it /dev/hvc0.
 *
 * The host side is a pseudo-terminal ("pty": both directions) or a file
 * ("file=PATH": guest output appended, no input).
 *
 * Output is written on the kick, in the vCPU thread. It never waits: what a
 * full pty cannot take now is dropped, because a console nobody reads must
 * not stall the guest (Linux's hvc console busy-waits for its buffers).
 *
 * Input belongs to the event loop. Up to one buffer of it (pending[]) is
 * read from the pty and copied into the guest's receive buffers. With no
 * receive buffer the pty leaves the event loop (nothing is read, nothing
 * spins) until the driver kicks queue 0; that kick only writes an eventfd,
 * since the loop's handler table is the loop thread's own. We hold the pty's
 * slave side open ourselves, so the master never reports a hang-up while no
 * one else has it open; if it still does (EOF or EIO), input ends for good. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <termios.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/log.h"
#include "core/devctx.h"
#include "virtio/devices.h"
#include "virtio/iov.h"
#include "virtio/virtio_pci.h"

#define CONSOLE_RXQ 0
#define CONSOLE_TXQ 1

struct virtio_console {
	struct virtio_dev vd;
	struct evloop *loop;
	int out_fd;	   /* guest output: pty master or file */
	int in_fd;	   /* pty master, -1 for no input (file=, or after a hang-up) */
	int slave_fd;	   /* the pty's slave side, held open (see above) */
	int kick_fd;	   /* eventfd: the driver posted receive buffers */
	bool polling;	   /* in_fd is in the event loop (loop thread only) */
	/* Under vd.lock: */
	bool rx_wait;	   /* the loop waits for a kick of queue 0 */
	unsigned pending_off, pending_len;
	uint8_t pending[4096];
	struct vq_chain chain;
};

/* Write the chain's readable buffers to the output; what it cannot take now
 * (a full pty) or at all (an I/O error) is dropped. */
static uint32_t tx_chain(struct virtio_dev *vd, struct vq_chain *c)
{
	struct virtio_console *con = vd->opaque;
	int fd = con->out_fd;
	struct iovec *iov = c->iov;
	unsigned n = c->nr_out;

	while (n) {
		ssize_t w = writev(fd, iov, n > IOV_MAX ? IOV_MAX : (int)n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			break;
		iov_advance(&iov, &n, (size_t)w);
	}
	return 0;
}

/* Copy pending input into the chain's writable buffers; bytes copied. */
static uint32_t rx_fill(struct virtio_console *con)
{
	struct vq_chain *c = &con->chain;
	uint32_t total = 0;

	for (uint32_t i = c->nr_out; i < c->nr_out + c->nr_in && con->pending_off < con->pending_len; i++) {
		size_t n = con->pending_len - con->pending_off;

		if (n > c->iov[i].iov_len)
			n = c->iov[i].iov_len;
		memcpy(c->iov[i].iov_base, con->pending + con->pending_off, n);
		con->pending_off += (unsigned)n;
		total += (uint32_t)n;
	}
	return total;
}

/* Move input from the pty into receive buffers until one side runs dry.
 * vd.lock held; event-loop thread. Returns true to keep reading the pty. */
static bool rx_pump(struct virtio_console *con)
{
	struct virtio_dev *vd = &con->vd;
	struct vq *vq = &vd->q[CONSOLE_RXQ].vq;
	bool pushed = false;
	int r = 0;

	con->rx_wait = false;
	for (;;) {
		if (con->pending_off == con->pending_len) {
			ssize_t n;

			if (con->in_fd < 0)
				break;
			n = read(con->in_fd, con->pending, sizeof(con->pending));
			if (n < 0 && errno == EINTR)
				continue;
			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0) {
				pr_warn("virtio-console: input closed (%s)", n ? strerror(errno) : "end of file");
				con->in_fd = -1;
				break;
			}
			con->pending_off = 0;
			con->pending_len = (unsigned)n;
		}
		if (!virtio_pci_queue_ready(vd, CONSOLE_RXQ)) {
			con->rx_wait = true;
			break;
		}
		r = vq_pop(vq, &con->chain);
		if (r <= 0) {
			con->rx_wait = r == 0;
			break;
		}
		r = vq_push_chain(vq, &con->chain, rx_fill(con));
		if (r < 0)
			break;
		pushed = true;
	}
	if (r < 0)
		virtio_pci_queue_broken(vd, CONSOLE_RXQ, r);
	else if (pushed && vq_needs_notify(vq))
		virtio_pci_queue_interrupt(vd, CONSOLE_RXQ);
	/* A broken queue waits for the reset and re-initialisation, whose
	 * first receive buffers come with a kick. */
	if (r < 0)
		con->rx_wait = true;
	return con->in_fd >= 0 && !con->rx_wait;
}

static void on_input(void *opaque, uint32_t events);

/* Event-loop thread: pump, then watch the pty only while it may be read. */
static void rx_run(struct virtio_console *con)
{
	int fd = con->in_fd;
	bool want;

	pthread_mutex_lock(&con->vd.lock);
	want = rx_pump(con);
	pthread_mutex_unlock(&con->vd.lock);
	if (want && !con->polling) {
		con->polling = evloop_add(con->loop, fd, EPOLLIN, on_input, con) == 0;
		if (!con->polling)
			pr_warn("virtio-console: cannot watch the pty: input stops");
	} else if (!want && con->polling) {
		evloop_del(con->loop, fd);
		con->polling = false;
	}
}

static void on_input(void *opaque, uint32_t events)
{
	rx_run(opaque);
}

static void on_kick(void *opaque, uint32_t events)
{
	struct virtio_console *con = opaque;
	uint64_t v;

	if (read(con->kick_fd, &v, sizeof(v)) == sizeof(v))
		rx_run(con);
}

static void console_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_console *con = vd->opaque;
	uint64_t one = 1;

	if (q == CONSOLE_TXQ) {
		virtio_pci_queue_serve(vd, CONSOLE_TXQ, &con->chain, tx_chain);
	} else if (con->rx_wait) {
		con->rx_wait = false;
		if (write(con->kick_fd, &one, sizeof(one)) < 0) {
			/* an eventfd only fails to count past 2^64 - 2 */
		}
	}
}

static void console_free(struct virtio_console *con)
{
	if (con->kick_fd >= 0) {
		evloop_del(con->loop, con->kick_fd);
		close(con->kick_fd);
	}
	if (con->polling)
		evloop_del(con->loop, con->out_fd);
	if (con->slave_fd >= 0)
		close(con->slave_fd);
	if (con->out_fd >= 0)
		close(con->out_fd);
	free(con);
}

static void console_destroy(struct virtio_dev *vd)
{
	console_free(vd->opaque);
}

static const struct virtio_dev_ops console_ops = {
	.device_type = 3,
	.num_queues = 2,
	.queue_max = 128,
	.features = 1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_F_EVENT_IDX,
	.queue_notify = console_notify,
	.destroy = console_destroy,
};

/* A new pty in raw mode (no echo of guest output back into the guest, no
 * line editing); the slave stays open in con->slave_fd. 0 or -errno. */
static int open_pty(struct virtio_console *con, char *path, size_t path_len)
{
	struct termios t;
	int fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	con->out_fd = fd;
	if (grantpt(fd) || unlockpt(fd) || ptsname_r(fd, path, path_len))
		return -errno;
	con->slave_fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
	if (con->slave_fd < 0 || tcgetattr(con->slave_fd, &t))
		return -errno;
	cfmakeraw(&t);
	if (tcsetattr(con->slave_fd, TCSANOW, &t))
		return -errno;
	con->in_fd = fd;
	con->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	return con->kick_fd < 0 ? -errno : 0;
}

int virtio_console_create(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err, size_t len)
{
	struct virtio_console *con = calloc(1, sizeof(*con));
	char path[256];
	int ret;

	if (!con)
		return -ENOMEM;
	con->loop = ctx->loop;
	con->out_fd = con->in_fd = con->slave_fd = con->kick_fd = -1;
	if (spec && !strcmp(spec, "pty")) {
		ret = open_pty(con, path, sizeof(path));
		if (ret) {
			snprintf(err, len, "--vconsole pty: cannot open a pseudo-terminal: %s", strerror(-ret));
			goto fail;
		}
		/* Safe before the loop runs; later only the loop thread edits it. */
		ret = evloop_add(con->loop, con->kick_fd, EPOLLIN, on_kick, con);
		if (!ret) {
			ret = evloop_add(con->loop, con->in_fd, EPOLLIN, on_input, con);
			con->polling = !ret;
		}
		if (ret) {
			snprintf(err, len, "virtio-console: event loop: %s", strerror(-ret));
			goto fail;
		}
	} else if (spec && !strncmp(spec, "file=", 5) && spec[5]) {
		con->out_fd = open(spec + 5, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
		if (con->out_fd < 0) {
			ret = -errno;
			snprintf(err, len, "--vconsole %s: %s", spec, strerror(-ret));
			goto fail;
		}
	} else {
		ret = -EINVAL;
		snprintf(err, len, "--vconsole %s: expected pty or file=PATH", spec ? spec : "");
		goto fail;
	}
	ret = virtio_pci_init(&con->vd, ctx->pci, ctx->mem, &console_ops, con);
	if (ret) {
		snprintf(err, len, "virtio-console: %s", strerror(-ret));
		goto fail;
	}
	if (con->in_fd >= 0)
		fprintf(stderr, "tarn: virtio-console on %s\n", path);
	*out = &con->vd;
	return 0;
fail:
	console_free(con);
	return ret;
}
