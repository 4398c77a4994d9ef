/* virtio-net (virtio/net.c) driven as a guest driver would, through the PCI
 * transport, with the fd= backend on a SOCK_SEQPACKET socketpair as a fake
 * tap: what the guest transmits comes out of the peer socket, what the
 * test writes into the peer arrives in the guest's receive buffers. The
 * event loop is dispatched by hand (one epoll_wait at a time), so a test
 * also sees whether the device is polling its backend. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/devices.h"
#include "virtio/net_backend.h"
#include "virtio_harness.h"

#define RAM_SIZE 0x40000
#define QSIZE 8
#define HDR 12
#define F_CSUM 0
#define F_MRG_RXBUF 15
#define F_HOST_TSO4 11
#define BUF 0x4000 /* buffers from here */

struct fixture {
	struct fake_vm vm;
	struct pci_root root;
	struct evloop loop;
	struct virtio_dev *dev;
	int peer; /* the "host" end */
	_Alignas(16) uint8_t ram[RAM_SIZE]; /* the rings need aligned host views */
};

static int make_dev(struct fixture *f, const char *extra, struct virtio_dev **out, int *peer, char *err,
		    size_t len)
{
	char spec[128];
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv))
		return -errno;
	snprintf(spec, sizeof(spec), "fd=%d%s", sv[0], extra);
	ret = virtio_net_create(&f->vm.ctx, spec, out, err, len);
	if (ret) {
		close(sv[0]);
		close(sv[1]);
		return ret;
	}
	*peer = sv[1];
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[200];

	if (!f || vh_vm_init(&f->vm, &f->root, &f->loop, f->ram, RAM_SIZE))
		return -1;
	if (make_dev(f, ",mac=52:54:00:12:34:56", &f->dev, &f->peer, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	virtio_device_destroy(f->dev);
	if (f->peer >= 0)
		close(f->peer);
	vh_vm_destroy(&f->vm);
	free(f);
	return 0;
}

/* ---- a minimal driver (the device sits in slot 1) ---- */

static uint64_t rd(struct fixture *f, uint64_t off, unsigned len) { return vh_rd(&f->vm, 1, off, len); }
static void wr(struct fixture *f, uint64_t off, unsigned len, uint64_t v) { vh_wr(&f->vm, 1, off, len, v); }
static uint8_t status(struct fixture *f) { return vh_status(&f->vm, 1); }

/* Rings of queue q at 0x1000 + q * 0x1000 (desc, avail +VH_AVAIL, used +VH_USED). */
static uint64_t ring(int q) { return 0x1000 + (uint64_t)q * 0x1000; }

/* Negotiate features lo (bits 0-31) + VERSION_1 and bring both queues up. */
static void driver_up(struct fixture *f, uint32_t lo)
{
	wr(f, VIRTIO_COMMON_STATUS, 1, 0);
	memset(f->ram + ring(0), 0, 0x2000);
	vh_negotiate(&f->vm, 1, lo | 1ULL << 32);
	assert_true(status(f) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned q = 0; q < 2; q++)
		vh_queue(&f->vm, 1, q, QSIZE, ring((int)q), VIRTIO_MSI_NO_VECTOR);
	vh_driver_ok(&f->vm, 1);
}

static void put_desc(struct fixture *f, int q, uint16_t d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vh_desc(&f->vm, ring(q), d, addr, len, flags, next);
}

/* Offer head on queue q; kick when asked. */
static void offer(struct fixture *f, int q, uint16_t head, bool do_kick)
{
	vh_avail(&f->vm, ring(q), QSIZE, head);
	if (do_kick)
		vh_notify(&f->vm, 1, (unsigned)q);
}

/* One buffer as descriptor d of queue q (device-writable on the receive
 * queue 0), offered and kicked. */
static void post(struct fixture *f, int q, uint16_t d, uint64_t addr, uint32_t len)
{
	put_desc(f, q, d, addr, len, q == 0 ? VIRTQ_DESC_F_WRITE : 0, 0);
	offer(f, q, d, true);
}

static uint16_t used_idx(struct fixture *f, int q) { return vh_used_idx(&f->vm, ring(q)); }
static uint32_t used_id(struct fixture *f, int q, unsigned n) { return vh_used_id(&f->vm, ring(q), QSIZE, n); }
static uint32_t used_len(struct fixture *f, int q, unsigned n) { return vh_used_len(&f->vm, ring(q), QSIZE, n); }
static int loop_once(struct fixture *f, int ms) { return vh_loop_once(&f->vm, ms); }

static struct virtio_net_stats stats(struct fixture *f)
{
	struct virtio_net_stats st;

	virtio_net_get_stats(f->dev, &st);
	return st;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7 + seed);
}

/* A header with only num_buffers (rx) or nothing (tx) set. */
static void plain_hdr(uint8_t *h)
{
	memset(h, 0, HDR);
}

/* ---- tests ---- */

static void test_identity_and_config(void **state)
{
	struct fixture *f = *state;
	uint8_t mac[6];
	uint64_t df;

	assert_int_equal(pci_config_read(&f->root, 1, 0, PCI_DEVICE_ID, 2), 0x1041);
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)rd(f, VIRTIO_PCI_DEVICE_OFF + (uint64_t)i, 1);
	assert_memory_equal(mac, "\x52\x54\x00\x12\x34\x56", 6);
	assert_int_equal(rd(f, VIRTIO_PCI_DEVICE_OFF + 6, 2), 1); /* VIRTIO_NET_S_LINK_UP */
	wr(f, VIRTIO_COMMON_DFSELECT, 4, 0);
	df = rd(f, VIRTIO_COMMON_DF, 4);
	wr(f, VIRTIO_COMMON_DFSELECT, 4, 1);
	df |= rd(f, VIRTIO_COMMON_DF, 4) << 32;
	assert_true(df & 1ULL << 5);  /* MAC */
	assert_true(df & 1ULL << 16); /* STATUS */
	assert_true(df & 1ULL << F_MRG_RXBUF);
	assert_true(df & 1ULL << F_CSUM);
	assert_true(df & 1ULL << F_HOST_TSO4);
	assert_true(df & 1ULL << 28 && df & 1ULL << 29 && df & 1ULL << 32);
}

static void test_spec_errors(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *d = NULL;
	char err[200];
	int peer;
	static const struct {
		const char *extra, *says;
	} bad[] = {
		{ ",mac=52:54:00:zz:00:01", "mac=" },
		{ ",mac=52:54:00:12:34", "mac=" },
		{ ",mac=53:54:00:12:34:56", "multicast" },
		{ ",mac=00:00:00:00:00:00", "all-zero" },
		{ ",colour=blue", "unknown key 'colour'" },
		{ ",tap=x", "more than one backend" },
		{ ",offload=maybe", "offload=maybe" },
		{ ",mac", "not key=value" },
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(make_dev(f, bad[i].extra, &d, &peer, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].says))
			fail_msg("%s: '%s' does not say '%s'", bad[i].extra, err, bad[i].says);
	}
	assert_int_equal(virtio_net_create(&f->vm.ctx, "mac=52:54:00:12:34:56", &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "no backend"));
	assert_int_equal(virtio_net_create(&f->vm.ctx, "fd=1000000", &d, err, sizeof(err)), -EBADF);
	assert_non_null(strstr(err, "not an open file descriptor"));
}

static void test_default_mac(void **state)
{
	struct fixture *f = *state;
	struct virtio_dev *d;
	char err[200];
	int peer;
	uint8_t m0;

	assert_int_equal(make_dev(f, "", &d, &peer, err, sizeof(err)), 0);
	/* slot 2: the fixture's device has slot 1 */
	m0 = (uint8_t)vh_rd(&f->vm, 2, VIRTIO_PCI_DEVICE_OFF, 1);
	assert_int_equal(m0, 0x52); /* locally administered, unicast */
	virtio_device_destroy(d);
	close(peer);
}

/* A frame whose header spans two descriptors reaches the backend intact. */
static void test_tx_frame(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[HDR + 100], got[sizeof(frame) + 10];

	driver_up(f, 0);
	plain_hdr(frame);
	fill(frame + HDR, 100, 1);
	memcpy(f->ram + BUF, frame, sizeof(frame));
	put_desc(f, 1, 0, BUF, 5, VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 1, 1, BUF + 5, sizeof(frame) - 5, 0, 0);
	offer(f, 1, 0, true);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(used_id(f, 1, 0), 0);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), sizeof(frame));
	assert_memory_equal(got, frame, sizeof(frame));
	assert_int_equal(stats(f).tx_frames, 1);
	assert_int_equal(stats(f).tx_bytes, 100);
}

/* While the device serves the transmit queue it asks the driver not to
 * kick; once done it must ask again, or the driver never kicks again: the
 * used ring's NO_NOTIFY flag cleared (without EVENT_IDX), avail_event at
 * the driver's next index (with it). */
static void test_tx_kicks_wanted_after_serving(void **state)
{
	struct fixture *f = *state;
	uint8_t frame[HDR + 60];

	plain_hdr(frame);
	fill(frame + HDR, 60, 3);
	memcpy(f->ram + BUF, frame, sizeof(frame));
	for (int event_idx = 0; event_idx < 2; event_idx++) {
		uint16_t flags, avail_event;

		driver_up(f, event_idx ? 1u << 29 /* VIRTIO_F_EVENT_IDX */ : 0);
		for (uint16_t d = 0; d < 2; d++) {
			put_desc(f, 1, d, BUF, sizeof(frame), 0, 0);
			offer(f, 1, d, d == 1); /* two frames, one kick */
		}
		assert_int_equal(used_idx(f, 1), 2);
		memcpy(&flags, f->ram + ring(1) + VH_USED, 2);
		memcpy(&avail_event, f->ram + ring(1) + VH_USED + 4 + 8 * QSIZE, 2);
		assert_int_equal(flags & 1 /* VIRTQ_USED_F_NO_NOTIFY */, 0);
		if (event_idx)
			assert_int_equal(avail_event, 2);
	}
}

/* Too short, too long, or offloads not negotiated: dropped and counted,
 * the chain still comes back, and the queue keeps working. */
static void test_tx_bad_frames_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t got[256];
	uint8_t gso[HDR] = { 0, 1 /* GSO_TCPV4 */ };

	driver_up(f, 0);
	post(f, 1, 0, BUF, 8); /* shorter than the header */
	post(f, 1, 1, BUF, HDR + 65551); /* one byte over the largest frame */
	memcpy(f->ram + BUF + 0x20000, gso, HDR); /* TSO without HOST_TSO4 */
	post(f, 1, 2, BUF + 0x20000, HDR + 60);
	assert_int_equal(used_idx(f, 1), 3);
	assert_int_equal(stats(f).tx_dropped, 3);
	assert_int_equal(stats(f).tx_frames, 0);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), -1);
	assert_int_equal(status(f) & VIRTIO_STATUS_NEEDS_RESET, 0);

	plain_hdr(f->ram + BUF);
	fill(f->ram + BUF + HDR, 60, 2);
	post(f, 1, 3, BUF, HDR + 60);
	assert_int_equal(used_idx(f, 1), 4);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), HDR + 60);
	assert_memory_equal(got + HDR, f->ram + BUF + HDR, 60);
	assert_int_equal(stats(f).tx_frames, 1);
}

/* With HOST_TSO4 negotiated the same GSO header goes through. */
static void test_tx_tso_negotiated(void **state)
{
	struct fixture *f = *state;
	uint8_t got[256];
	uint8_t gso[HDR] = { 1 /* NEEDS_CSUM */, 1 /* GSO_TCPV4 */ };

	driver_up(f, 1u << F_CSUM | 1u << F_HOST_TSO4);
	memcpy(f->ram + BUF, gso, HDR);
	post(f, 1, 0, BUF, HDR + 60);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), HDR + 60);
	assert_memory_equal(got, gso, HDR);
	assert_int_equal(stats(f).tx_dropped, 0);
}

static void send_frame(struct fixture *f, size_t payload, unsigned seed, uint8_t *copy)
{
	uint8_t *fr = calloc(1, HDR + payload);

	assert_non_null(fr);
	fill(fr + HDR, payload, seed);
	assert_int_equal(send(f->peer, fr, HDR + payload, 0), (ssize_t)(HDR + payload));
	if (copy)
		memcpy(copy, fr, HDR + payload);
	free(fr);
}

static uint16_t num_buffers(const uint8_t *hdr)
{
	uint16_t v;

	memcpy(&v, hdr + 10, 2);
	return v;
}

/* One frame into one buffer: header with num_buffers 1, then the bytes. */
static void test_rx_frame(void **state)
{
	struct fixture *f = *state;
	uint8_t want[HDR + 100];

	driver_up(f, 0);
	memset(f->ram + BUF, 0xee, 2048);
	post(f, 0, 0, BUF, 2048);
	send_frame(f, 100, 3, want);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_len(f, 0, 0), HDR + 100);
	assert_int_equal(num_buffers(f->ram + BUF), 1);
	assert_memory_equal(f->ram + BUF + HDR, want + HDR, 100);
	assert_int_equal(stats(f).rx_frames, 1);
	assert_int_equal(stats(f).rx_bytes, 100);
}

/* MRG_RXBUF: a 2488-byte frame, 2500 bytes with its header, spread over
 * three 1000-byte buffers. */
static void test_rx_mergeable(void **state)
{
	struct fixture *f = *state;
	uint8_t want[2500];

	driver_up(f, 1u << F_MRG_RXBUF);
	for (uint16_t i = 0; i < 4; i++) {
		put_desc(f, 0, i, BUF + 0x1000 * (uint64_t)i, 1000, VIRTQ_DESC_F_WRITE, 0);
		offer(f, 0, i, i == 3);
	}
	send_frame(f, sizeof(want) - HDR, 4, want);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(used_len(f, 0, 0), 1000);
	assert_int_equal(used_len(f, 0, 1), 1000);
	assert_int_equal(used_len(f, 0, 2), 500);
	assert_int_equal(num_buffers(f->ram + BUF), 3);
	assert_memory_equal(f->ram + BUF + HDR, want + HDR, 1000 - HDR);
	assert_memory_equal(f->ram + BUF + 0x1000, want + 1000, 1000);
	assert_memory_equal(f->ram + BUF + 0x2000, want + 2000, 500);
	/* The fourth buffer, parked, takes the next frame. */
	send_frame(f, 50, 5, NULL);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 4);
	assert_int_equal(used_id(f, 0, 3), 3);
	assert_int_equal(used_len(f, 0, 3), HDR + 50);
}

/* MRG_RXBUF: a frame larger than every buffer of the queue together is
 * dropped, its chains stay parked, and later frames fill them in order,
 * each in the guest's own buffers. */
static void test_rx_mergeable_parked(void **state)
{
	struct fixture *f = *state;
	uint8_t want[250];

	driver_up(f, 1u << F_MRG_RXBUF);
	for (uint16_t i = 0; i < QSIZE; i++) {
		put_desc(f, 0, i, BUF + 0x1000 * (uint64_t)i, 100, VIRTQ_DESC_F_WRITE, 0);
		offer(f, 0, i, i == QSIZE - 1);
	}
	send_frame(f, 2000 - HDR, 4, NULL);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(stats(f).rx_dropped, 1);
	send_frame(f, sizeof(want) - HDR, 5, NULL); /* buffers 0-2 */
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 3);
	send_frame(f, sizeof(want) - HDR, 6, want); /* buffers 3-5 */
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 6);
	for (unsigned n = 3; n < 6; n++)
		assert_int_equal(used_id(f, 0, n), n);
	assert_int_equal(used_len(f, 0, 5), 50);
	assert_int_equal(num_buffers(f->ram + BUF + 0x3000), 3);
	assert_memory_equal(f->ram + BUF + 0x3000 + HDR, want + HDR, 100 - HDR);
	assert_memory_equal(f->ram + BUF + 0x4000, want + 100, 100);
	assert_memory_equal(f->ram + BUF + 0x5000, want + 200, 50);
	assert_true(vh_all_zero(f->ram + BUF + 0x6000, 100)); /* still parked, untouched */
}

/* Out of buffers: the frame waits, the device stops polling the backend
 * (no spinning, nothing dropped), and the guest's next kick delivers it. */
static void test_rx_waits_for_buffers(void **state)
{
	struct fixture *f = *state;
	uint8_t want[HDR + 64];

	driver_up(f, 0);
	post(f, 0, 0, BUF, 2048);
	send_frame(f, 64, 6, NULL);
	send_frame(f, 64, 7, want);
	send_frame(f, 64, 8, NULL);
	assert_true(loop_once(f, 1000) > 0); /* one frame in, the next finds no buffer */
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(loop_once(f, 50), 0); /* still readable, but not polled */
	post(f, 0, 1, BUF + 0x1000, 2048); /* the kick delivers the waiting frame */
	assert_int_equal(used_idx(f, 0), 2);
	assert_int_equal(used_id(f, 0, 1), 1);
	assert_memory_equal(f->ram + BUF + 0x1000 + HDR, want + HDR, 64);
	post(f, 0, 2, BUF + 0x2000, 2048);
	assert_true(loop_once(f, 1000) > 0); /* polled again: the third frame */
	assert_int_equal(used_idx(f, 0), 3);
	assert_int_equal(stats(f).rx_frames, 3);
	assert_int_equal(stats(f).rx_dropped, 0);
}

/* Without MRG_RXBUF a frame larger than the buffer is dropped and counted;
 * the buffer stays for the next frame, which fits. */
static void test_rx_too_big_dropped(void **state)
{
	struct fixture *f = *state;
	uint8_t want[HDR + 80];

	driver_up(f, 0);
	post(f, 0, 0, BUF, 200);
	send_frame(f, 500, 8, NULL);
	send_frame(f, 80, 9, want);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(stats(f).rx_dropped, 1);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_len(f, 0, 0), HDR + 80);
	assert_memory_equal(f->ram + BUF + HDR, want + HDR, 80);
}

/* A receive buffer smaller than the header goes back empty, counted. */
static void test_rx_tiny_buffer(void **state)
{
	struct fixture *f = *state;

	driver_up(f, 1u << F_MRG_RXBUF);
	put_desc(f, 0, 0, BUF, 4, VIRTQ_DESC_F_WRITE, 0);
	put_desc(f, 0, 1, BUF + 0x1000, 1500, VIRTQ_DESC_F_WRITE, 0);
	offer(f, 0, 0, false);
	offer(f, 0, 1, true);
	send_frame(f, 40, 10, NULL);
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(used_idx(f, 0), 2);
	assert_int_equal(used_id(f, 0, 0), 0);
	assert_int_equal(used_len(f, 0, 0), 0);
	assert_int_equal(used_id(f, 0, 1), 1);
	assert_int_equal(used_len(f, 0, 1), HDR + 40);
	assert_int_equal(stats(f).rx_bad_buffers, 1);
}

/* A frame whose header asks for an offload the guest did not take (TSO,
 * a partial checksum) is dropped and counted; DATA_VALID is cleared
 * without GUEST_CSUM. The next frame arrives. */
static void test_rx_offload_not_negotiated(void **state)
{
	struct fixture *f = *state;
	uint8_t fr[HDR + 40] = { 0 };

	driver_up(f, 0);
	post(f, 0, 0, BUF, 2048);
	fr[1] = 1; /* GSO_TCPV4 */
	assert_int_equal(send(f->peer, fr, sizeof(fr), 0), sizeof(fr));
	fr[1] = 0;
	fr[0] = 1; /* NEEDS_CSUM */
	assert_int_equal(send(f->peer, fr, sizeof(fr), 0), sizeof(fr));
	fr[0] = 2; /* DATA_VALID */
	assert_int_equal(send(f->peer, fr, sizeof(fr), 0), sizeof(fr));
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(stats(f).rx_dropped, 2);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(f->ram[BUF], 0); /* flags cleared */
}

/* The backend hangs up: the device stops watching it (no spinning on
 * EPOLLHUP) and transmit still completes the guest's chains. */
static void test_backend_hangup(void **state)
{
	struct fixture *f = *state;

	driver_up(f, 0);
	close(f->peer);
	f->peer = -1;
	assert_true(loop_once(f, 1000) > 0);
	assert_int_equal(loop_once(f, 50), 0);
	plain_hdr(f->ram + BUF);
	post(f, 1, 0, BUF, HDR + 20);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(stats(f).tx_dropped, 1);
}

/* A malformed ring sets NEEDS_RESET; a reset brings the device back. */
static void test_malformed_ring(void **state)
{
	struct fixture *f = *state;
	uint8_t got[256];

	driver_up(f, 0);
	put_desc(f, 1, 0, BUF, HDR + 20, VIRTQ_DESC_F_NEXT, 0); /* loops on itself */
	offer(f, 1, 0, true);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
	driver_up(f, 0);
	assert_int_equal(status(f) & VIRTIO_STATUS_NEEDS_RESET, 0);
	plain_hdr(f->ram + BUF);
	post(f, 1, 0, BUF, HDR + 20);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(recv(f->peer, got, sizeof(got), MSG_DONTWAIT), HDR + 20);

	/* receive side: avail index runs ahead by more than the queue size */
	vh_set_avail_idx(&f->vm, ring(0), QSIZE + 1);
	wr(f, VIRTIO_PCI_NOTIFY_OFF, 2, 0);
	send_frame(f, 20, 11, NULL);
	loop_once(f, 100);
	assert_true(status(f) & VIRTIO_STATUS_NEEDS_RESET);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spec_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_mac, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_kicks_wanted_after_serving, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_bad_frames_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tx_tso_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_frame, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_mergeable_parked, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_waits_for_buffers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_too_big_dropped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_tiny_buffer, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rx_offload_not_negotiated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backend_hangup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_ring, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
