/* libFuzzer harness for virtio-net (virtio/net.c): the input is the
 * negotiated features, both queues' configs, guest memory, and three
 * frames the backend delivers, so the fuzzer controls the rings, every
 * transmit header and frame size, the receive buffers (sizes, splits,
 * indirect tables) and the headers and sizes of received frames. It drives
 * the real paths: transmit through ops->queue_notify(1), receive through
 * the device's event-loop handler and ops->queue_notify(0), with the fd=
 * backend on a SOCK_SEQPACKET socketpair standing for the tap.
 *
 * Checked: nothing outside guest RAM is touched (ASan; RAM is a global of
 * exactly its size, with ASan's redzone behind it); every frame the backend gets is a header plus at most 65550
 * bytes; the counters agree with what crossed the socket (each frame
 * counted as sent reached the peer, no more frames delivered or dropped
 * than were offered); a malformed ring is reported, never crashes.
 *
 * The PCI transport is replaced by the stubs in virtio_stub.h; the harness
 * sets the queues up itself. The input is XORed onto a template holding well-formed queues
 * (frames to send, receive buffers) so an empty input runs them all.
 * Input (each byte XORed onto the template's):
 *        [0] features: bit 0 MRG_RXBUF, 1 CSUM, 2 GUEST_CSUM, 3 HOST_TSO4,
 *            4 HOST_TSO6, 5 GUEST_TSO4, 6 INDIRECT_DESC, 7 EVENT_IDX
 *        [1] [2] receive, transmit queue size 1 << (b & 7)
 *        [3] bit 0 kick receive before the frames arrive, bit 1 transmit
 *            first, bit 2 reset in between, bit 3 kick receive again
 *        [4..9] [10..15] rx, tx desc/avail/used offsets into guest RAM
 *        [16..21] lengths of three received frames (little endian)
 *        [22..57] their three 12-byte virtio_net_hdr
 *        [58..] guest RAM (MEM_SIZE bytes at MEM_GPA) */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/log.h"
#include "core/devctx.h"
#include "virtio/devices.h"
#include "virtio/net_backend.h"
#include "virtio/virtio_pci.h"

#define MEM_SIZE 0x20000
#define MEM_GPA 0x40000
#define HDR 58
#define NHDR 12
#define NFRAMES 3
#define MAX_FRAME 65550

#include "virtio_stub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the device ---- */
static struct devctx ctx; /* no VM: only a loop (guest memory comes per input) */
static struct evloop loop;
static struct virtio_dev *dev;
static int dev_fd, peer;
static uint8_t frame[NHDR + MAX_FRAME + 16];
static uint8_t pattern[NHDR + MAX_FRAME + 16]; /* payload of received frames */

static void setup(void)
{
	char spec[64], err[256];
	int sv[2];

	log_threshold = LOG_ERR; /* the device's rate-limited warnings */
	CHECK(evloop_init(&loop) == 0);
	ctx.loop = &loop;
	CHECK(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0);
	dev_fd = sv[0];
	peer = sv[1];
	snprintf(spec, sizeof(spec), "fd=%d,mac=52:54:00:00:00:01", dev_fd);
	if (virtio_net_create(&ctx, spec, &dev, err, sizeof(err))) {
		fprintf(stderr, "fuzz_net: %s\n", err);
		abort();
	}
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* The device's event-loop handler, for what is ready now. */
static void dispatch(void)
{
	for (int round = 0; round < 8; round++) {
		struct epoll_event ev[4];
		int n = epoll_wait(loop.epfd, ev, 4, 0);

		if (n <= 0)
			return;
		for (int i = 0; i < n; i++) {
			struct evloop_handler *h = ev[i].data.ptr;

			if (h && h->in_use)
				h->cb(h->opaque, ev[i].events);
		}
	}
}

/* Frames the device wrote to its backend; returns how many. */
static unsigned drain_peer(void)
{
	unsigned n = 0;
	ssize_t r;

	while ((r = recv(peer, frame, sizeof(frame), MSG_DONTWAIT | MSG_TRUNC)) >= 0) {
		CHECK(r >= NHDR && r <= NHDR + MAX_FRAME);
		n++;
	}
	return n;
}

/* ---- the template ---- */
#define T_RX_DESC 0x0000 /* 16 descriptors */
#define T_RX_AVAIL 0x0100
#define T_RX_USED 0x0180
#define T_TX_DESC 0x0400
#define T_TX_AVAIL 0x0500
#define T_TX_USED 0x0580
#define T_ITABLE 0x0800
#define T_TXDATA 0x1000 /* frames to send */
#define T_RXBUF 0x8000	/* receive buffers */

static void put16(unsigned off, uint16_t v)
{
	tmpl[off] = (uint8_t)v;
	tmpl[off + 1] = (uint8_t)(v >> 8);
}

static void make_template(void)
{
	const uint8_t gso4[NHDR] = { 1, 1, 54, 0, 0x5c, 0x05, 34, 0, 16, 0 }; /* NEEDS_CSUM, TCPV4, mss 1372 */
	uint16_t heads[16], n = 0, idx;

	tmpl[0] = 0xff;
	tmpl[1] = 4; /* 16 entries */
	tmpl[2] = 4;
	tmpl[3] = 1 | 8;
	put16(4, T_RX_DESC), put16(6, T_RX_AVAIL), put16(8, T_RX_USED);
	put16(10, T_TX_DESC), put16(12, T_TX_AVAIL), put16(14, T_TX_USED);
	put16(16, NHDR + 60), put16(18, NHDR + 3000), put16(20, NHDR + 9000);
	memcpy(tmpl + 22 + 2 * NHDR, gso4, NHDR);

	/* transmit: a plain frame; a header split over two descriptors; a
	 * TSO frame; a frame through an indirect table */
	put_desc(T_TX_DESC, 0, T_TXDATA, NHDR + 60, 0, 0);
	heads[n++] = 0;
	put_desc(T_TX_DESC, 1, T_TXDATA + 0x100, 5, VIRTQ_DESC_F_NEXT, 2);
	put_desc(T_TX_DESC, 2, T_TXDATA + 0x105, NHDR - 5 + 100, 0, 0);
	heads[n++] = 1;
	put(T_TXDATA + 0x400, gso4, NHDR);
	put_desc(T_TX_DESC, 3, T_TXDATA + 0x400, NHDR + 3000, 0, 0);
	heads[n++] = 3;
	put_desc(T_ITABLE, 0, T_TXDATA + 0x2000, NHDR, VIRTQ_DESC_F_NEXT, 1);
	put_desc(T_ITABLE, 1, T_TXDATA + 0x2100, 500, 0, 0);
	put_desc(T_TX_DESC, 4, T_ITABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
	heads[n++] = 4;
	put(T_TX_AVAIL + 4, heads, 2 * n);
	idx = n;
	put(T_TX_AVAIL + 2, &idx, 2);

	/* receive: six 2 KiB buffers, one split in two, one indirect */
	n = 0;
	for (unsigned i = 0; i < 6; i++) {
		put_desc(T_RX_DESC, i, T_RXBUF + 0x800 * i, 2048, VIRTQ_DESC_F_WRITE, 0);
		heads[n++] = (uint16_t)i;
	}
	put_desc(T_RX_DESC, 6, T_RXBUF + 0x4000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 7);
	put_desc(T_RX_DESC, 7, T_RXBUF + 0x4100, 4000, VIRTQ_DESC_F_WRITE, 0);
	heads[n++] = 6;
	put_desc(T_ITABLE + 0x100, 0, T_RXBUF + 0x6000, 16000, VIRTQ_DESC_F_WRITE, 0);
	put_desc(T_RX_DESC, 8, T_ITABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	heads[n++] = 8;
	put(T_RX_AVAIL + 4, heads, 2 * n);
	idx = n;
	put(T_RX_AVAIL + 2, &idx, 2);
}

/* Reset the device and bring it up as the input says. */
static void driver_up(const uint8_t *in)
{
	static const int fbit[8] = { 15, 0, 1, 11, 12, 7, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX };
	uint64_t f = 1ULL << VIRTIO_F_VERSION_1;

	pthread_mutex_lock(&dev->lock);
	for (int i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++)
		memset(&dev->q[i], 0, sizeof(dev->q[i]));
	dev->status = 0;
	dev->ops->reset(dev);
	for (int i = 0; i < 8; i++)
		if (in[0] & 1 << i)
			f |= 1ULL << fbit[i];
	dev->driver_features = f & (dev->ops->features | 1ULL << VIRTIO_F_VERSION_1);
	for (int q = 0; q < 2; q++) {
		const uint8_t *o = in + 4 + 6 * q;
		struct vq_config cfg = {
			.size = 1u << (in[1 + q] & 7),
			.desc_gpa = MEM_GPA + get16(o),
			.avail_gpa = MEM_GPA + get16(o + 2),
			.used_gpa = MEM_GPA + get16(o + 4),
			.features = dev->driver_features,
		};

		dev->q[q].enabled = true;
		dev->q[q].size = (uint16_t)cfg.size;
		if (vq_init(&dev->q[q].vq, dev->gm, &cfg))
			dev->status |= VIRTIO_STATUS_NEEDS_RESET;
	}
	dev->status |= VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
		       VIRTIO_STATUS_DRIVER_OK;
	pthread_mutex_unlock(&dev->lock);
}

/* What the transport does on a kick: only for a live queue. */
static void kick(unsigned q)
{
	pthread_mutex_lock(&dev->lock);
	if (!dev->q[q].vq.broken && !(dev->status & VIRTIO_STATUS_NEEDS_RESET))
		dev->ops->queue_notify(dev, q);
	pthread_mutex_unlock(&dev->lock);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	static struct guest_mem gm;
	/* Static, not malloc'ed: large allocations cost an mmap each run. */
	static uint8_t mem[MEM_SIZE], in[sizeof(tmpl)];
	struct virtio_net_stats a, b;
	unsigned sent = 0, got;

	if (!ready) {
		setup();
		make_template();
		for (size_t k = 0; k < sizeof(pattern); k++)
			pattern[k] = (uint8_t)(k * 13 + (k >> 8));
		ready = true;
	}
	memcpy(in, tmpl, sizeof(tmpl));
	for (size_t i = 0; i < size && i < sizeof(tmpl); i++)
		in[i] ^= data[i];
	memcpy(mem, in + HDR, MEM_SIZE);
	CHECK(gm_init_fake(&gm, MEM_GPA, mem, MEM_SIZE) == 0);
	dev->gm = &gm;

	/* Nothing left over from the last input on either end. */
	while (recv(dev_fd, frame, sizeof(frame), MSG_DONTWAIT) >= 0)
		;
	drain_peer();
	driver_up(in);
	virtio_net_get_stats(dev, &a);

	if (in[3] & 1)
		kick(0);
	if (in[3] & 2)
		kick(1);
	for (int i = 0; i < NFRAMES; i++) {
		size_t len = get16(in + 16 + 2 * i);

		struct iovec iov[2] = { { in + 22 + NHDR * i, len < NHDR ? len : NHDR },
					{ pattern + NHDR, len > NHDR ? len - NHDR : 0 } };
		struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };

		if (sendmsg(peer, &m, MSG_DONTWAIT) >= 0)
			sent++;
		dispatch();
		if ((in[3] & 4) && i == 0)
			driver_up(in);
	}
	if (in[3] & 8)
		kick(0);
	dispatch();
	if (!(in[3] & 2))
		kick(1);
	got = drain_peer();
	virtio_net_get_stats(dev, &b);

	if (getenv("FUZZ_NET_VERBOSE")) /* to see what an input reaches */
		fprintf(stderr, "tx %llu sent, %llu dropped; rx %u offered, %llu delivered, %llu dropped; broken %d\n",
			(unsigned long long)(b.tx_frames - a.tx_frames), (unsigned long long)(b.tx_dropped - a.tx_dropped),
			sent, (unsigned long long)(b.rx_frames - a.rx_frames),
			(unsigned long long)(b.rx_dropped - a.rx_dropped), broken_calls);
	CHECK(b.tx_frames - a.tx_frames == got);
	CHECK((b.rx_frames - a.rx_frames) + (b.rx_dropped - a.rx_dropped) <= sent);

	return 0;
}
