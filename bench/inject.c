/* bench/inject: the frame injector of bench/switch.sh's forwarding figures.
 *
 *   inject TX_IF RX_IF FRAMES
 *   inject --vhost-user A.sock B.sock FRAMES
 *   inject --tap TAP_A TAP_B FRAMES
 *
 * The first form sends FRAMES 64-byte Ethernet frames (EtherType 0x88b5, local
 * experimental) out of TX_IF with sendmmsg, 256 to a call, as fast as the
 * socket takes them, while a thread counts those that arrive at RX_IF with
 * recvmmsg. Prints the arrival rate in frames a second: the count over the
 * time from the first to the last frame received (receiving stops after
 * 0.5 s without a frame). A frame the sending socket refuses (ENOBUFS,
 * EAGAIN) is sent again, so the rate is what the path between the two
 * interfaces carries, not what the injector could queue.
 *
 * Before the flood, one frame goes the other way (RX_IF to TX_IF), so that
 * a learning switch knows where the destination is and forwards instead of
 * flooding. Needs CAP_NET_RAW.
 *
 * The second is two VMs' NICs without the VMs: a vhost-user front end on
 * each of two switch ports, sharing a memfd with the switch as a VMM
 * shares guest RAM. A thread plays A's driver, keeping A's transmit ring
 * full of 64-byte frames (kicking as the switch asks); another plays B's,
 * keeping B's receive ring full of buffers and counting the frames the
 * switch puts there. Neither makes a system call per frame, as a guest's
 * driver would not: what is measured is the switch's work between two
 * VMs' rings. Prints frames a second, as above.
 *
 * The third is the same for two VMs' tap NICs (as a VMM with taps drives
 * them: a 12-byte virtio-net header before each frame): a thread writes
 * the frames into TAP_A, another reads what arrives at TAP_B, each with
 * one system call a frame, as a VMM's tap back end does. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>

#include "virtio/vhost_user.h"

#define ETHERTYPE 0x88b5
#define BATCH 256
#define FRAME_LEN 64

static const uint8_t mac_a[6] = { 2, 0, 0, 0, 0, 1 }, mac_b[6] = { 2, 0, 0, 0, 0, 2 };

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A packet socket on IFNAME: one that receives (the EtherType's frames
 * that arrive, not those sent) or only sends (receives nothing). */
static int packet_socket(const char *ifname, struct sockaddr_ll *sll, int receive)
{
	int proto = receive ? htons(ETHERTYPE) : 0, one = 1;
	int fd = socket(AF_PACKET, SOCK_RAW, proto);

	if (fd < 0) {
		perror("inject: socket(AF_PACKET)");
		exit(1);
	}
	memset(sll, 0, sizeof(*sll));
	sll->sll_family = AF_PACKET;
	sll->sll_protocol = (uint16_t)proto;
	sll->sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll->sll_ifindex || bind(fd, (struct sockaddr *)sll, sizeof(*sll))) {
		fprintf(stderr, "inject: %s: %s\n", ifname, strerror(errno));
		exit(1);
	}
	if (receive)
		setsockopt(fd, SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof(one));
	return fd;
}

static void frame(uint8_t *f, const uint8_t *dst, const uint8_t *src)
{
	memset(f, 0, FRAME_LEN);
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	f[12] = ETHERTYPE >> 8;
	f[13] = ETHERTYPE & 0xff;
}

struct counter {
	int fd;
	unsigned long got;
	double first, last;
};

static void *count(void *arg)
{
	struct counter *c = arg;
	static uint8_t bufs[BATCH][128];
	struct mmsghdr msgs[BATCH];
	struct iovec iov[BATCH];
	struct timeval tv = { .tv_usec = 500000 };

	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (int i = 0; i < BATCH; i++) {
		iov[i] = (struct iovec){ bufs[i], sizeof(bufs[i]) };
		msgs[i].msg_hdr = (struct msghdr){ .msg_iov = &iov[i], .msg_iovlen = 1 };
	}
	for (;;) {
		int n = recvmmsg(c->fd, msgs, BATCH, MSG_WAITFORONE, NULL);

		if (n <= 0) {
			if (n < 0 && errno == EINTR)
				continue;
			return NULL; /* 0.5 s of silence: the flood is over */
		}
		c->last = now_s();
		if (!c->got)
			c->first = c->last;
		c->got += (unsigned long)n;
	}
}

/* ---- two VMs' rings, through vhost-user ----
 *
 * One memfd holds both rings and their buffers; its offsets are the
 * "guest-physical" addresses in descriptors, its mapping here the
 * front-end addresses of SET_MEM_TABLE and SET_VRING_ADDR. */
#define QSIZE 256u
#define MEM_SIZE (4u << 20)
#define NET_HDR 12u /* virtio_net_hdr_v1 */
#define RX_BUF 2048u
#define VIRTIO_F_VERSION_1 32
#define USED_F_NO_NOTIFY 1

struct vring {
	unsigned off; /* desc at off, avail at off + 4 KiB, used at off + 8 KiB */
	volatile uint8_t *desc, *avail, *used;
	int kick, call;
};

static uint8_t *mem;

static void vring_init(struct vring *r, unsigned off)
{
	r->off = off;
	r->desc = mem + off;
	r->avail = mem + off + 4096;
	r->used = mem + off + 8192;
	r->kick = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	r->call = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
}

static void desc_set(struct vring *r, unsigned i, uint64_t addr, uint32_t len, uint16_t flags)
{
	volatile uint8_t *d = r->desc + 16 * i;

	memcpy((void *)d, &addr, 8);
	memcpy((void *)(d + 8), &len, 4);
	memcpy((void *)(d + 12), &flags, 2);
	memset((void *)(d + 14), 0, 2);
}

static uint16_t avail_idx(struct vring *r) { return *(volatile uint16_t *)(r->avail + 2); }
static uint16_t used_idx(struct vring *r) { return __atomic_load_n((uint16_t *)(r->used + 2), __ATOMIC_ACQUIRE); }

/* Offer n descriptor heads: those the switch gave back from used
 * position from on, or (from < 0) heads 0 to n - 1, the first time.
 * Then kick, unless the switch asked not to be. */
static void offer(struct vring *r, int from, uint16_t n)
{
	uint16_t idx = avail_idx(r);

	for (uint16_t k = 0; k < n; k++) {
		uint32_t id = from < 0 ? k : *(volatile uint32_t *)(r->used + 4 + 8 * ((from + k) % QSIZE));

		((volatile uint16_t *)(r->avail + 4))[(uint16_t)(idx + k) % QSIZE] = (uint16_t)(id % QSIZE);
	}
	__atomic_store_n((uint16_t *)(r->avail + 2), (uint16_t)(idx + n), __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(*(volatile uint16_t *)r->used & USED_F_NO_NOTIFY))
		(void)eventfd_write(r->kick, 1);
}

/* Sleep until the switch signals the ring (or ms pass); 0 on timeout. */
static int await(struct vring *r, int ms)
{
	struct pollfd p = { r->call, POLLIN, 0 };
	eventfd_t v;

	if (poll(&p, 1, ms) <= 0)
		return 0;
	(void)eventfd_read(r->call, &v);
	return 1;
}

static void vu_req(int sock, uint32_t req, const void *payload, uint32_t size, const int *fds, unsigned nfds,
		   struct vu_msg *reply)
{
	struct vu_msg m = { .request = req, .flags = VU_VERSION, .size = size };
	int rfds[VU_MAX_FDS];
	unsigned rn;

	memcpy(m.raw, payload, size);
	if (vu_send(sock, &m, fds, nfds) || (reply && vu_recv(sock, reply, rfds, &rn))) {
		fprintf(stderr, "inject: vhost-user %s failed\n", vu_request_name(req));
		exit(1);
	}
}

/* Connect to the switch's port at path and hand it ring r as queue q. */
static void vu_attach(const char *path, int memfd, unsigned q, struct vring *r)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct vu_msg reply;
	int sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	uint64_t features = 1ULL << VIRTIO_F_VERSION_1;
	struct { uint32_t nregions, pad; struct vu_region r; } table = {
		1, 0, { 0, MEM_SIZE, (uint64_t)(uintptr_t)mem, 0 }
	};
	struct { uint32_t index, flags; uint64_t desc, used, avail, log; } addr = {
		q, 0, (uint64_t)(uintptr_t)r->desc, (uint64_t)(uintptr_t)r->used, (uint64_t)(uintptr_t)r->avail, 0
	};
	uint32_t num[2] = { q, QSIZE }, base[2] = { q, 0 };

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	if (connect(sock, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "inject: %s: %s\n", path, strerror(errno));
		exit(1);
	}
	vu_req(sock, VU_SET_OWNER, NULL, 0, NULL, 0, NULL);
	vu_req(sock, VU_GET_FEATURES, NULL, 0, NULL, 0, &reply);
	vu_req(sock, VU_SET_FEATURES, &features, 8, NULL, 0, NULL);
	vu_req(sock, VU_SET_MEM_TABLE, &table, sizeof(table), &memfd, 1, NULL);
	vu_req(sock, VU_SET_VRING_NUM, num, 8, NULL, 0, NULL);
	vu_req(sock, VU_SET_VRING_BASE, base, 8, NULL, 0, NULL);
	vu_req(sock, VU_SET_VRING_ADDR, &addr, sizeof(addr), NULL, 0, NULL);
	vu_req(sock, VU_SET_VRING_CALL, &(uint64_t){ q }, 8, &r->call, 1, NULL);
	vu_req(sock, VU_SET_VRING_KICK, &(uint64_t){ q }, 8, &r->kick, 1, NULL);
	/* The socket stays open (the port's connection) until exit. */
}

static struct vring ring_a, ring_b;
static long vu_frames;

/* A's driver: every descriptor holds the one frame; reused as the switch
 * gives them back, until vu_frames are sent. */
static void *vu_send_all(void *arg)
{
	struct vring *r = &ring_a;
	unsigned frame_off = 0x10000;
	uint16_t done = 0;
	long posted;

	(void)arg;
	memset(mem + frame_off, 0, NET_HDR); /* no offloads */
	frame(mem + frame_off + NET_HDR, mac_b, mac_a);
	for (unsigned i = 0; i < QSIZE; i++)
		desc_set(r, i, frame_off, NET_HDR + FRAME_LEN, 0);
	posted = vu_frames < QSIZE ? vu_frames : QSIZE;
	offer(r, -1, (uint16_t)posted);
	while (posted < vu_frames) {
		uint16_t now = used_idx(r), n = (uint16_t)(now - done);

		if (!n) {
			await(r, 10);
			continue;
		}
		if (n > vu_frames - posted)
			n = (uint16_t)(vu_frames - posted);
		offer(r, done, n);
		done = (uint16_t)(done + n);
		posted += n;
	}
	return NULL;
}

static int vu_main(const char *a, const char *b, long frames)
{
	struct counter c = { 0 };
	struct vring *r = &ring_b;
	int memfd = memfd_create("inject", MFD_CLOEXEC);
	uint16_t seen = 0;
	pthread_t th;

	if (memfd < 0 || ftruncate(memfd, MEM_SIZE) ||
	    (mem = mmap(NULL, MEM_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0)) == MAP_FAILED) {
		perror("inject: guest memory");
		return 1;
	}
	vring_init(&ring_a, 0);
	vring_init(&ring_b, 0x4000);
	vu_frames = frames;
	/* B's driver posts every buffer before A sends anything. */
	for (unsigned i = 0; i < QSIZE; i++)
		desc_set(r, i, 0x100000 + i * RX_BUF, RX_BUF, 2 /* VRING_DESC_F_WRITE */);
	vu_attach(b, memfd, 0, &ring_b);
	vu_attach(a, memfd, 1, &ring_a);
	offer(r, -1, QSIZE);
	if (pthread_create(&th, NULL, vu_send_all, NULL)) {
		fprintf(stderr, "inject: cannot start the sending thread\n");
		return 1;
	}
	for (;;) {
		uint16_t now = used_idx(r), n = (uint16_t)(now - seen);

		if (!n) {
			if (!await(r, c.got ? 500 : 5000))
				break; /* the flood is over (or never came) */
			continue;
		}
		c.last = now_s();
		if (!c.got)
			c.first = c.last;
		c.got += n;
		offer(r, seen, n); /* the buffers again */
		seen = now;
	}
	pthread_join(th, NULL);
	printf("%.0f\n", c.got > 1 && c.last > c.first ? (c.got - 1) / (c.last - c.first) : 0);
	return 0;
}

/* ---- two VMs' taps ---- */
static int tap_a;
static long tap_frames;

static int tap_open(const char *name)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR };
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC), hdr = NET_HDR;

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", name);
	if (fd < 0 || ioctl(fd, TUNSETIFF, &ifr) || ioctl(fd, TUNSETVNETHDRSZ, &hdr)) {
		fprintf(stderr, "inject: tap %s: %s\n", name, strerror(errno));
		exit(1);
	}
	return fd;
}

static void *tap_send_all(void *arg)
{
	uint8_t buf[NET_HDR + FRAME_LEN] = { 0 };

	(void)arg;
	frame(buf + NET_HDR, mac_b, mac_a);
	for (long k = 0; k < tap_frames; k++)
		if (write(tap_a, buf, sizeof(buf)) < 0 && errno != EAGAIN && errno != ENOBUFS && errno != EINTR) {
			perror("inject: write");
			exit(1);
		}
	return NULL;
}

static int tap_main(const char *a, const char *b, long frames)
{
	struct counter c = { 0 };
	int tb = tap_open(b);
	uint8_t buf[4096];
	pthread_t th;

	tap_a = tap_open(a);
	tap_frames = frames;
	if (pthread_create(&th, NULL, tap_send_all, NULL)) {
		fprintf(stderr, "inject: cannot start the sending thread\n");
		return 1;
	}
	for (;;) {
		struct pollfd p = { tb, POLLIN, 0 };

		if (poll(&p, 1, c.got ? 500 : 5000) <= 0)
			break;
		if (read(tb, buf, sizeof(buf)) <= (ssize_t)NET_HDR)
			continue;
		c.last = now_s();
		if (!c.got)
			c.first = c.last;
		c.got++;
	}
	pthread_join(th, NULL);
	printf("%.0f\n", c.got > 1 && c.last > c.first ? (c.got - 1) / (c.last - c.first) : 0);
	return 0;
}

int main(int argc, char **argv)
{
	struct sockaddr_ll tx_sll, rx_sll;
	uint8_t f[FRAME_LEN], back[FRAME_LEN];
	struct mmsghdr msgs[BATCH];
	struct iovec iov = { f, FRAME_LEN };
	struct counter c = { 0 };
	pthread_t th;
	long frames;

	if (argc == 5 && !strcmp(argv[1], "--vhost-user") && (frames = strtol(argv[4], NULL, 10)) > 0)
		return vu_main(argv[2], argv[3], frames);
	if (argc == 5 && !strcmp(argv[1], "--tap") && (frames = strtol(argv[4], NULL, 10)) > 0)
		return tap_main(argv[2], argv[3], frames);
	if (argc != 4 || (frames = strtol(argv[3], NULL, 10)) <= 0) {
		fprintf(stderr, "usage: inject TX_IF RX_IF FRAMES\n       inject --vhost-user A.sock B.sock FRAMES\n"
				"       inject --tap TAP_A TAP_B FRAMES\n");
		return 2;
	}
	int tx = packet_socket(argv[1], &tx_sll, 0);
	c.fd = packet_socket(argv[2], &rx_sll, 1);
	int rcvbuf = 1 << 24;
	setsockopt(c.fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof(rcvbuf));

	/* The far station speaks first, then drains what that brought. */
	frame(back, mac_a, mac_b);
	if (sendto(c.fd, back, FRAME_LEN, 0, (struct sockaddr *)&rx_sll, sizeof(rx_sll)) < 0)
		perror("inject: sendto");
	usleep(200000);
	while (recv(c.fd, back, sizeof(back), MSG_DONTWAIT) > 0)
		;
	frame(f, mac_b, mac_a);

	if (pthread_create(&th, NULL, count, &c)) {
		fprintf(stderr, "inject: cannot start the counting thread\n");
		return 1;
	}
	for (int i = 0; i < BATCH; i++)
		msgs[i].msg_hdr = (struct msghdr){ .msg_name = &tx_sll, .msg_namelen = sizeof(tx_sll),
						   .msg_iov = &iov, .msg_iovlen = 1 };
	for (long left = frames; left > 0;) {
		int n = sendmmsg(tx, msgs, left < BATCH ? (unsigned)left : BATCH, 0);

		if (n > 0)
			left -= n;
		else if (n < 0 && errno != ENOBUFS && errno != EAGAIN && errno != EINTR) {
			perror("inject: sendmmsg");
			return 1;
		} else
			usleep(50); /* the interface's queue is full: let it drain */
	}
	pthread_join(th, NULL);
	printf("%.0f\n", c.got > 1 && c.last > c.first ? (c.got - 1) / (c.last - c.first) : 0);
	return 0;
}
