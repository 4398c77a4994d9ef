/* virtio-console (virtio/console.c) driven at the device level: the queues
 * are set up in fake guest memory as the transport would after the driver's
 * handshake, kicks call the device's queue_notify with vd->lock held (as the
 * transport does), and the VM's event loop is stepped by the test. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "virtio/devices.h"
#include "virtio_harness.h"

#define RAM_SIZE 0x10000
#define QSIZE 8
#define RXQ 0
#define TXQ 1
/* Queue q's rings at 0x1000 + q * 0x1000 (desc, avail +VH_AVAIL, used +VH_USED);
 * buffers from 0x8000. */
#define BUF 0x8000

struct fixture {
	struct fake_vm vm;
	struct evloop loop;
	struct pci_root root;
	struct virtio_dev *vd;
	int slave; /* the pty's slave side, opened by the test ("pty" only) */
	char log[64]; /* the output file ("file=" only) */
	_Alignas(16) uint8_t ram[RAM_SIZE]; /* the rings need aligned host views */
};

static uint64_t ring(unsigned q) { return 0x1000 + 0x1000 * (uint64_t)q; }

/* What the transport does once the driver set DRIVER_OK with both queues. */
static void driver_ok(struct fixture *f)
{
	struct virtio_dev *vd = f->vd;

	for (unsigned q = 0; q < 2; q++) {
		struct vq_config c = { .size = QSIZE, .desc_gpa = ring(q), .avail_gpa = ring(q) + VH_AVAIL,
				       .used_gpa = ring(q) + VH_USED };

		vd->q[q].size = QSIZE;
		assert_int_equal(vq_init(&vd->q[q].vq, &f->vm.mem, &c), 0);
		vd->q[q].enabled = true;
	}
	vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		     VIRTIO_STATUS_DRIVER_OK;
}

static struct fixture *make(const char *spec)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	f->slave = -1;
	assert_int_equal(vh_vm_init(&f->vm, &f->root, &f->loop, f->ram, RAM_SIZE), 0);
	if (!spec) {
		strcpy(f->log, "/tmp/tarn-vconsole-XXXXXX");
		int fd = mkstemp(f->log);

		assert_true(fd >= 0);
		close(fd);
		snprintf(err, sizeof(err), "file=%s", f->log);
		spec = err;
	}
	assert_int_equal(virtio_console_create(&f->vm.ctx, spec, &f->vd, err, sizeof(err)), 0);
	driver_ok(f);
	return f;
}

static void destroy(struct fixture *f)
{
	virtio_device_destroy(f->vd);
	if (f->slave >= 0)
		close(f->slave);
	if (f->log[0])
		unlink(f->log);
	vh_vm_destroy(&f->vm);
	free(f);
}

/* The pty master the device watches: the handler whose fd has a ptsname. */
static int master_fd(struct fixture *f)
{
	char path[64];

	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		if (f->loop.h[i].in_use && ptsname_r(f->loop.h[i].fd, path, sizeof(path)) == 0)
			return f->loop.h[i].fd;
	return -1;
}

static struct fixture *make_pty(void)
{
	struct fixture *f = make("pty");
	char path[64];
	int m = master_fd(f);

	assert_true(m >= 0);
	assert_int_equal(ptsname_r(m, path, sizeof(path)), 0);
	f->slave = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
	assert_true(f->slave >= 0);
	return f;
}

static int loop_once(struct fixture *f, int timeout_ms) { return vh_loop_once(&f->vm, timeout_ms); }

static void put_desc(struct fixture *f, unsigned q, uint16_t d, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	vh_desc(&f->vm, ring(q), d, addr, len, flags, next);
}

/* Put head on queue q's avail ring; then kick as the transport would. */
static void avail(struct fixture *f, unsigned q, uint16_t head) { vh_avail(&f->vm, ring(q), QSIZE, head); }

static void kick(struct fixture *f, unsigned q)
{
	pthread_mutex_lock(&f->vd->lock);
	f->vd->ops->queue_notify(f->vd, q);
	pthread_mutex_unlock(&f->vd->lock);
}

static uint16_t used_idx(struct fixture *f, unsigned q) { return vh_used_idx(&f->vm, ring(q)); }
static uint32_t used_len(struct fixture *f, unsigned q, unsigned n) { return vh_used_len(&f->vm, ring(q), QSIZE, n); }

static bool watched(struct fixture *f, int fd)
{
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		if (f->loop.h[i].in_use && f->loop.h[i].fd == fd)
			return true;
	return false;
}

/* ---- tests ---- */

static void test_bad_spec(void **state)
{
	struct devctx ctx = { .loop = NULL };
	struct virtio_dev *vd = NULL;
	char err[256];

	assert_int_equal(virtio_console_create(&ctx, "tty", &vd, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "expected pty or file=PATH"));
	assert_int_equal(virtio_console_create(&ctx, "file=", &vd, err, sizeof(err)), -EINVAL);
	assert_int_equal(virtio_console_create(&ctx, "file=/nonexistent/dir/log", &vd, err, sizeof(err)), -ENOENT);
	assert_non_null(strstr(err, "/nonexistent/dir/log"));
	assert_null(vd);
}

static void test_identity(void **state)
{
	struct fixture *f = make(NULL);

	assert_int_equal(pci_config_read(&f->root, 1, 0, PCI_DEVICE_ID, 2), 0x1043);
	assert_int_equal(f->vd->ops->num_queues, 2);
	destroy(f);
}

/* file=: a chain of two readable buffers lands in the file, appended. */
static void test_tx_file(void **state)
{
	struct fixture *f = make(NULL);
	char got[64] = { 0 };
	int fd;

	memcpy(f->ram + BUF, "hello ", 6);
	memcpy(f->ram + BUF + 0x100, "world\n", 6);
	put_desc(f, TXQ, 0, BUF, 6, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, TXQ, 1, BUF + 0x100, 6, 0, 0);
	avail(f, TXQ, 0);
	kick(f, TXQ);
	put_desc(f, TXQ, 2, BUF, 5, 0, 0);
	avail(f, TXQ, 2);
	kick(f, TXQ);
	/* Output is the readable buffers only: a device-writable one that a
	 * driver put in the chain is not the guest's output. */
	memcpy(f->ram + BUF + 0x200, "bye\n", 4);
	memcpy(f->ram + BUF + 0x300, "XXXX", 4);
	put_desc(f, TXQ, 3, BUF + 0x200, 4, VIRTQ_DESC_F_NEXT, 4);
	put_desc(f, TXQ, 4, BUF + 0x300, 4, VIRTQ_DESC_F_WRITE, 0);
	avail(f, TXQ, 3);
	kick(f, TXQ);
	assert_int_equal(used_idx(f, TXQ), 3);
	assert_int_equal(used_len(f, TXQ, 0), 0); /* the device wrote nothing */
	assert_int_equal(used_len(f, TXQ, 2), 0);
	assert_true(vh_rec.raised > 0);
	fd = open(f->log, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(read(fd, got, sizeof(got)), 21);
	close(fd);
	assert_string_equal(got, "hello world\nhellobye\n");
	destroy(f);
}

/* pty: guest output comes out of the slave side. */
static void test_tx_pty(void **state)
{
	struct fixture *f = make_pty();
	char got[16] = { 0 };

	memcpy(f->ram + BUF, "out\n", 4);
	put_desc(f, TXQ, 0, BUF, 4, 0, 0);
	avail(f, TXQ, 0);
	kick(f, TXQ);
	assert_int_equal(used_idx(f, TXQ), 1);
	assert_int_equal(read(f->slave, got, sizeof(got)), 4);
	assert_string_equal(got, "out\n"); /* raw: no \r added */
	destroy(f);
}

/* pty input fills receive buffers; with none left the pty leaves the event
 * loop (nothing spins) until the driver kicks the receive queue. */
static void test_rx_pty_waits_for_buffers(void **state)
{
	struct fixture *f = make_pty();
	int m = master_fd(f);

	put_desc(f, RXQ, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
	avail(f, RXQ, 0);
	kick(f, RXQ); /* no input yet: nothing to do */
	assert_int_equal(used_idx(f, RXQ), 0);
	assert_int_equal(write(f->slave, "abcdefgh", 8), 8);
	assert_true(loop_once(f, 5000) > 0);
	assert_int_equal(used_idx(f, RXQ), 1);
	assert_int_equal(used_len(f, RXQ, 0), 4);
	assert_memory_equal(f->ram + BUF, "abcd", 4);
	assert_true(vh_rec.raised > 0);
	/* No buffer for "efgh": the pty is no longer watched, the loop idles. */
	assert_false(watched(f, m));
	assert_int_equal(loop_once(f, 0), 0);
	/* A new buffer and a kick bring the rest, and the pty back. */
	put_desc(f, RXQ, 1, BUF + 0x100, 64, VIRTQ_DESC_F_WRITE, 0);
	avail(f, RXQ, 1);
	kick(f, RXQ);
	assert_true(loop_once(f, 5000) > 0);
	assert_int_equal(used_idx(f, RXQ), 2);
	assert_int_equal(used_len(f, RXQ, 1), 4);
	assert_memory_equal(f->ram + BUF + 0x100, "efgh", 4);
	assert_true(watched(f, m));
	/* More input goes to the rest of that buffer's successors. */
	put_desc(f, RXQ, 2, BUF + 0x200, 64, VIRTQ_DESC_F_WRITE, 0);
	avail(f, RXQ, 2);
	kick(f, RXQ);
	assert_int_equal(write(f->slave, "xyz", 3), 3);
	assert_true(loop_once(f, 5000) > 0);
	assert_int_equal(used_idx(f, RXQ), 3);
	assert_memory_equal(f->ram + BUF + 0x200, "xyz", 3);
	destroy(f);
}

/* The user's side of the pty closing is no hang-up for the device (it holds
 * the slave open): the loop does not wake up again. */
static void test_peer_close_no_spin(void **state)
{
	struct fixture *f = make_pty();

	put_desc(f, RXQ, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	avail(f, RXQ, 0);
	kick(f, RXQ);
	assert_int_equal(write(f->slave, "bye", 3), 3);
	close(f->slave);
	f->slave = -1;
	assert_true(loop_once(f, 5000) > 0);
	assert_int_equal(used_len(f, RXQ, 0), 3);
	assert_true(watched(f, master_fd(f)));
	assert_int_equal(loop_once(f, 0), 0);
	destroy(f);
}

/* Input before the driver is ready waits (bounded) for its first buffers. */
static void test_rx_before_driver(void **state)
{
	struct fixture *f = make_pty();
	int m = master_fd(f);

	f->vd->status = 0;
	assert_int_equal(write(f->slave, "early", 5), 5);
	assert_true(loop_once(f, 5000) > 0);
	assert_false(watched(f, m));
	f->vd->status = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			VIRTIO_STATUS_DRIVER_OK;
	put_desc(f, RXQ, 0, BUF, 64, VIRTQ_DESC_F_WRITE, 0);
	avail(f, RXQ, 0);
	kick(f, RXQ);
	assert_true(loop_once(f, 5000) > 0);
	assert_int_equal(used_len(f, RXQ, 0), 5);
	assert_memory_equal(f->ram + BUF, "early", 5);
	destroy(f);
}

/* Malformed rings: NEEDS_RESET, and the input side stops watching the pty. */
static void test_broken_rings(void **state)
{
	struct fixture *f = make_pty();
	int m = master_fd(f);

	put_desc(f, TXQ, 0, RAM_SIZE - 2, 4, 0, 0); /* past the end of RAM */
	avail(f, TXQ, 0);
	kick(f, TXQ);
	assert_true(f->vd->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_true(f->vd->q[TXQ].vq.broken);

	avail(f, RXQ, QSIZE + 3); /* head out of range */
	assert_int_equal(write(f->slave, "in", 2), 2);
	f->vd->status &= (uint8_t)~VIRTIO_STATUS_NEEDS_RESET; /* as if only rx were hit */
	assert_true(loop_once(f, 5000) > 0);
	assert_true(f->vd->q[RXQ].vq.broken);
	assert_true(f->vd->status & VIRTIO_STATUS_NEEDS_RESET);
	assert_false(watched(f, m));
	assert_int_equal(loop_once(f, 0), 0);
	destroy(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_spec),
		cmocka_unit_test(test_identity),
		cmocka_unit_test(test_tx_file),
		cmocka_unit_test(test_tx_pty),
		cmocka_unit_test(test_rx_pty_waits_for_buffers),
		cmocka_unit_test(test_peer_close_no_spin),
		cmocka_unit_test(test_rx_before_driver),
		cmocka_unit_test(test_broken_rings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
