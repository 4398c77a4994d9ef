/* A VM's port: the vhost-user back end (vport.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"
#include "core/ratelimit.h"
#include "mem/gm.h"
#include "switch/offload.h"
#include "switch/vport.h"
#include "virtio/iov.h"
#include "virtio/net_backend.h"
#include "virtio/vhost_user.h"
#include "virtio/virtqueue.h"

#define RXQ 0
#define TXQ 1
#define NET_HDR_LEN sizeof(struct virtio_net_hdr) /* the 1.x interface always has num_buffers */

#define VIRTIO_F_VERSION_1 32
#define F(bit) (1ULL << (bit))
#define OFFERED                                                                                              \
	(F(VIRTIO_F_VERSION_1) | F(VIRTIO_F_INDIRECT_DESC) | F(VIRTIO_F_EVENT_IDX) | F(VIRTIO_NET_F_MAC) |   \
	 F(VIRTIO_NET_F_STATUS) | F(VIRTIO_NET_F_MRG_RXBUF) | F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | \
	 F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) | F(VIRTIO_NET_F_GUEST_TSO4) |                    \
	 F(VIRTIO_NET_F_GUEST_TSO6) | F(VU_F_PROTOCOL_FEATURES))
/* REPLY_ACK: a front end may ask whether a message was taken. */
#define PROTOCOL_OFFERED (1ULL << VU_PROTOCOL_F_REPLY_ACK)

struct ring {
	uint32_t num;
	uint64_t desc, used, avail; /* the front end's addresses */
	uint16_t base;
	int kick, call;
	bool running; /* started by its kick descriptor, until GET_VRING_BASE */
	bool enabled;
	struct vq vq;
};

struct vport {
	char path[108];
	int listen_fd, conn_fd;
	vport_frame_fn *on_frame;
	void *opaque;
	uint64_t features, protocol_features;
	/* Guest memory as the front end gave it. */
	unsigned nregions;
	struct vu_region regions[VU_MAX_REGIONS];
	void *maps[VU_MAX_REGIONS];
	size_t map_len[VU_MAX_REGIONS];
	struct guest_mem gm;
	struct ring ring[2];
	unsigned gen; /* bumped whenever vport_fds would say otherwise */
	/* The guest's transmit rate (the owner's limiter; NULL: none): over
	 * it the ring is left alone, the guest asked not to kick, until the
	 * timer says the bucket has tokens again. */
	struct rate_limiter *tx_rl;
	int timer_fd;
	struct vq_chain chain, rx_first; /* rx_first: a received frame's first buffer */
	uint16_t rx_heads[256];		  /* the buffers a received frame took (MRG_RXBUF) */
	uint32_t rx_lens[256];
	uint8_t frame[NET_HDR_LEN + SW_GSO_MAX_FRAME];
};

static void unmap_memory(struct vport *vp)
{
	for (unsigned i = 0; i < vp->nregions; i++)
		munmap(vp->maps[i], vp->map_len[i]);
	vp->nregions = 0;
	memset(&vp->gm, 0, sizeof(vp->gm));
}

static void ring_reset(struct ring *r)
{
	if (r->kick >= 0)
		close(r->kick);
	if (r->call >= 0)
		close(r->call);
	*r = (struct ring){ .kick = -1, .call = -1 };
}

/* The front end went (or broke the protocol): back to listening. */
static void disconnect(struct vport *vp, const char *why)
{
	if (vp->conn_fd < 0)
		return;
	pr_info("switch: %s: front end gone: %s", vp->path, why);
	close(vp->conn_fd);
	vp->conn_fd = -1;
	vp->gen++;
	for (int q = 0; q < 2; q++)
		ring_reset(&vp->ring[q]);
	unmap_memory(vp);
	vp->features = vp->protocol_features = 0;
}

struct vport *vport_create(const char *path, vport_frame_fn *on_frame, void *opaque, char *err, size_t len)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct vport *vp;

	if (strlen(path) >= sizeof(a.sun_path)) {
		snprintf(err, len, "%s: a socket path of at most %zu bytes", path, sizeof(a.sun_path) - 1);
		return NULL;
	}
	if (!(vp = calloc(1, sizeof(*vp)))) {
		snprintf(err, len, "out of memory");
		return NULL;
	}
	snprintf(vp->path, sizeof(vp->path), "%s", path);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	vp->on_frame = on_frame;
	vp->opaque = opaque;
	vp->conn_fd = -1;
	for (int q = 0; q < 2; q++)
		vp->ring[q] = (struct ring){ .kick = -1, .call = -1 };
	vp->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	vp->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	unlink(path);
	if (vp->timer_fd < 0 || vp->listen_fd < 0 || bind(vp->listen_fd, (struct sockaddr *)&a, sizeof(a)) ||
	    listen(vp->listen_fd, 4)) {
		snprintf(err, len, "%s: %s", path, strerror(errno));
		if (vp->listen_fd >= 0)
			close(vp->listen_fd);
		if (vp->timer_fd >= 0)
			close(vp->timer_fd);
		free(vp);
		return NULL;
	}
	return vp;
}

void vport_destroy(struct vport *vp)
{
	if (!vp)
		return;
	disconnect(vp, "the port was removed");
	close(vp->listen_fd);
	close(vp->timer_fd);
	unlink(vp->path);
	free(vp);
}

unsigned vport_gen(const struct vport *vp)
{
	return vp->gen;
}

unsigned vport_fds(const struct vport *vp, int *fds)
{
	unsigned n = 0;

	fds[n++] = vp->listen_fd;
	fds[n++] = vp->timer_fd;
	if (vp->conn_fd >= 0)
		fds[n++] = vp->conn_fd;
	for (int q = 0; q < 2; q++)
		if (vp->ring[q].running && vp->ring[q].kick >= 0)
			fds[n++] = vp->ring[q].kick;
	return n;
}

void vport_set_tx_limit(struct vport *vp, struct rate_limiter *rl)
{
	vp->tx_rl = rl;
}

bool vport_running(const struct vport *vp)
{
	return vp->conn_fd >= 0 && vp->ring[RXQ].running && vp->ring[TXQ].running;
}

/* ---- the rings ---- */

static bool ring_live(const struct ring *r)
{
	return r->running && r->enabled && !r->vq.broken;
}

static void interrupt(struct ring *r)
{
	if (vq_needs_notify(&r->vq) && r->call >= 0)
		(void)eventfd_write(r->call, 1);
}

static void ring_broken(struct vport *vp, int q, int err)
{
	pr_warn_ratelimited("switch: %s: %s ring: %s", vp->path, q == TXQ ? "transmit" : "receive", vq_strerror(err));
}

/* Every frame the guest queued to send, to the owner. */
static void serve_tx(struct vport *vp)
{
	struct ring *r = &vp->ring[TXQ];
	struct vq_chain *c = &vp->chain;
	int ret;

	if (!ring_live(r))
		return;
	vq_set_notify(&r->vq, false);
	for (;;) {
		uint64_t wait = vp->tx_rl ? rl_wait_ns(vp->tx_rl) : 0;

		if (wait) {
			/* Over the rate: the guest's frames wait in its ring. */
			struct itimerspec t = { .it_value = { (time_t)(wait / 1000000000), (long)(wait % 1000000000) } };

			timerfd_settime(vp->timer_fd, 0, &t, NULL);
			ret = 0;
			break;
		}
		if ((ret = vq_pop_serving(&r->vq, c)) <= 0)
			break;
		size_t n = c->out_len <= sizeof(vp->frame) ? iov_copy(c->iov, c->nr_out, 0, vp->frame, c->out_len, false) : 0;

		/* A frame too long or too short for a header is the guest's
		 * loss; the chain goes back all the same. The owner charges
		 * the rate (it knows how many frames a GSO one makes). */
		if (n > NET_HDR_LEN) {
			struct virtio_net_hdr h;

			memcpy(&h, vp->frame, NET_HDR_LEN);
			vp->on_frame(vp->opaque, &h, vp->frame + NET_HDR_LEN, n - NET_HDR_LEN);
		}
		if ((ret = vq_push_chain(&r->vq, c, 0)) < 0)
			break;
	}
	if (ret < 0)
		ring_broken(vp, TXQ, ret);
	else
		interrupt(r);
}

void vport_offloads(const struct vport *vp, unsigned *tx, unsigned *rx)
{
	uint64_t f = vp->features;

	*tx = (f & F(VIRTIO_NET_F_CSUM) ? NET_OFFLOAD_CSUM : 0) | (f & F(VIRTIO_NET_F_HOST_TSO4) ? NET_OFFLOAD_TSO4 : 0) |
	      (f & F(VIRTIO_NET_F_HOST_TSO6) ? NET_OFFLOAD_TSO6 : 0);
	*rx = (f & F(VIRTIO_NET_F_GUEST_CSUM) ? NET_OFFLOAD_CSUM : 0) |
	      (f & F(VIRTIO_NET_F_GUEST_TSO4) ? NET_OFFLOAD_TSO4 : 0) |
	      (f & F(VIRTIO_NET_F_GUEST_TSO6) ? NET_OFFLOAD_TSO6 : 0);
}

/* Bytes [off, off + n) of the header followed by the frame, into the
 * buffer's iovecs from its start. */
static void rx_fill(const struct vq_chain *c, const struct virtio_net_hdr *h, const uint8_t *frame, size_t off,
		    size_t n)
{
	const struct iovec *in = c->iov + c->nr_out;
	size_t from_hdr = off < NET_HDR_LEN ? NET_HDR_LEN - off : 0;

	if (from_hdr > n)
		from_hdr = n;
	if (from_hdr)
		iov_copy(in, c->nr_in, 0, (uint8_t *)h + off, from_hdr, true);
	if (n > from_hdr)
		iov_copy(in, c->nr_in, from_hdr, (void *)(frame + off + from_hdr - NET_HDR_LEN), n - from_hdr, true);
}

int vport_rx(struct vport *vp, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len)
{
	struct ring *r = &vp->ring[RXQ];
	struct virtio_net_hdr hdr = h ? *h : (struct virtio_net_hdr){ 0 };
	bool mrg = vp->features & F(VIRTIO_NET_F_MRG_RXBUF);
	uint16_t start = r->vq.last_avail, nbuf = 0;
	size_t total = NET_HDR_LEN + len, done = 0;
	int ret = 0;

	if (vp->conn_fd < 0 || !ring_live(r))
		return -1;
	/* Buffers until the frame fits: one without MRG_RXBUF (and one too
	 * small goes back empty, the frame dropped), as many as it takes
	 * with it; too few posted, and those taken are left for the next. */
	while (done < total) {
		struct vq_chain *c = nbuf ? &vp->chain : &vp->rx_first;
		size_t w;

		if (nbuf == sizeof(vp->rx_heads) / sizeof(vp->rx_heads[0]) || (ret = vq_pop(&r->vq, c)) <= 0)
			goto none;
		w = c->in_len < total - done ? c->in_len : total - done;
		if ((!mrg && w < total) || (!nbuf && w < NET_HDR_LEN)) {
			ret = vq_push_chain(&r->vq, c, 0);
			goto out;
		}
		rx_fill(c, &hdr, frame, done, w);
		vq_mark_written(&r->vq, c->iov + c->nr_out, c->nr_in);
		vp->rx_heads[nbuf] = c->head;
		vp->rx_lens[nbuf++] = (uint32_t)w;
		done += w;
	}
	hdr.num_buffers = nbuf;
	iov_copy(vp->rx_first.iov + vp->rx_first.nr_out, vp->rx_first.nr_in, 0, &hdr, NET_HDR_LEN, true);
	for (unsigned i = 0; i < nbuf && ret >= 0; i++)
		ret = vq_push(&r->vq, vp->rx_heads[i], vp->rx_lens[i]);
	len = 0;
	goto out;
none:
	r->vq.last_avail = start; /* the buffers taken stay the guest's, for the next frame */
out:
	if (ret < 0)
		ring_broken(vp, RXQ, ret);
	return len ? -1 : 0;
}

void vport_rx_flush(struct vport *vp)
{
	if (vp->conn_fd >= 0 && ring_live(&vp->ring[RXQ]))
		interrupt(&vp->ring[RXQ]);
}

/* The guest-physical address of front-end address uaddr (n bytes from
 * it in one region), or UINT64_MAX. */
static uint64_t to_gpa(const struct vport *vp, uint64_t uaddr, uint64_t n)
{
	for (unsigned i = 0; i < vp->nregions; i++) {
		const struct vu_region *g = &vp->regions[i];

		if (uaddr >= g->uaddr && uaddr - g->uaddr < g->size && n <= g->size - (uaddr - g->uaddr))
			return g->gpa + (uaddr - g->uaddr);
	}
	return UINT64_MAX;
}

/* Map the ring into the memory the front end gave and start it at its
 * base. 0 or -EINVAL (addresses outside that memory, a bad size). */
static int ring_start(struct vport *vp, int q)
{
	struct ring *r = &vp->ring[q];
	struct vq_config c = {
		.size = r->num,
		.desc_gpa = to_gpa(vp, r->desc, 16ULL * r->num),
		.avail_gpa = to_gpa(vp, r->avail, 6 + 2ULL * r->num),
		.used_gpa = to_gpa(vp, r->used, 6 + 8ULL * r->num),
		.features = vp->features,
		.max_bytes = NET_HDR_LEN + SW_GSO_MAX_FRAME,
	};

	if (!vp->nregions || vq_init(&r->vq, &vp->gm, &c))
		return -EINVAL;
	r->vq.last_avail = r->base;
	r->vq.used_idx = __atomic_load_n(&r->vq.used_hdr[1], __ATOMIC_ACQUIRE);
	r->running = true;
	vp->gen++;
	/* Without protocol features a ring runs as soon as it starts; with
	 * them, while SET_VRING_ENABLE (before or after) says so. */
	if (!(vp->features & 1ULL << VU_F_PROTOCOL_FEATURES))
		r->enabled = true;
	return 0;
}

/* ---- the protocol ---- */

static int set_mem_table(struct vport *vp, const struct vu_msg *m, const int *fds, unsigned nfds)
{
	struct gm_region g[VU_MAX_REGIONS];
	uint32_t n = m->mem.nregions;

	if (m->size < 8 + n * sizeof(struct vu_region) || !n || n > VU_MAX_REGIONS || n > GM_MAX_REGIONS || nfds != n)
		return -EPROTO;
	unmap_memory(vp);
	for (uint32_t i = 0; i < n; i++) {
		struct vu_region r;
		size_t len;
		void *p;

		memcpy(&r, (const uint8_t *)m->raw + 8 + i * sizeof(r), sizeof(r)); /* the message is packed */
		len = (size_t)(r.size + r.mmap_offset);
		if (!r.size || len < r.size || r.uaddr + r.size < r.uaddr)
			goto bad;
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fds[i], 0);
		if (p == MAP_FAILED)
			goto bad;
		vp->maps[i] = p;
		vp->map_len[i] = len;
		vp->regions[i] = r;
		vp->nregions = i + 1;
		g[i] = (struct gm_region){ .gpa = r.gpa, .size = r.size, .hva = (uint8_t *)p + r.mmap_offset };
	}
	if (gm_init_regions(&vp->gm, g, (int)n))
		goto bad;
	/* Rings already running move into the new mapping. */
	for (int q = 0; q < 2; q++) {
		if (vp->ring[q].running) {
			vp->ring[q].base = vp->ring[q].vq.last_avail;
			if (ring_start(vp, q))
				goto bad;
		}
	}
	return 0;
bad:
	unmap_memory(vp);
	return -EPROTO;
}

static void close_all(const int *fds, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		close(fds[i]);
}

/* The messages that carry a ring's eventfd (or none, with VU_VRING_NOFD):
 * it is kept, or closed. 0 or -EPROTO. */
static int set_ring_fd(struct vport *vp, const struct vu_msg *m, const int *fds, unsigned nfds)
{
	uint32_t q = (uint32_t)(m->u64 & VU_VRING_IDX_MASK);
	int fd = nfds == 1 ? fds[0] : -1;
	struct ring *r;

	if (m->size < 8 || q > 1 || nfds != ((m->u64 & VU_VRING_NOFD) ? 0u : 1u) ||
	    (m->request == VU_SET_VRING_KICK && fd < 0) /* polling: not offered */) {
		close_all(fds, nfds);
		return -EPROTO;
	}
	r = &vp->ring[q];
	if (m->request == VU_SET_VRING_ERR) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	if (m->request == VU_SET_VRING_CALL) {
		if (r->call >= 0)
			close(r->call);
		r->call = fd;
		return 0;
	}
	if (r->kick >= 0)
		close(r->kick);
	r->kick = fd;
	return ring_start(vp, (int)q) ? -EPROTO : 0;
}

/* Handle one message (the descriptors that came with it are its to keep
 * or close); a reply into *m when it wants one (1), 0 when not, or
 * -EPROTO. */
static int handle(struct vport *vp, struct vu_msg *m, int *fds, unsigned nfds)
{
	uint32_t q = m->state.index;
	struct ring *r;
	int ret;

	switch (m->request) {
	case VU_SET_MEM_TABLE:
		ret = set_mem_table(vp, m, fds, nfds);
		close_all(fds, nfds); /* mapped: the mappings stay */
		return ret;
	case VU_SET_VRING_KICK:
	case VU_SET_VRING_CALL:
	case VU_SET_VRING_ERR:
		return set_ring_fd(vp, m, fds, nfds);
	}
	if (nfds) {
		close_all(fds, nfds);
		return -EPROTO;
	}
	switch (m->request) {
	case VU_GET_FEATURES:
		m->u64 = OFFERED;
		m->size = 8;
		return 1;
	case VU_SET_FEATURES:
		if (m->size < 8 || (m->u64 & ~OFFERED))
			return -EPROTO;
		vp->features = m->u64;
		return 0;
	case VU_SET_PROTOCOL_FEATURES:
		if (m->size < 8 || (m->u64 & ~PROTOCOL_OFFERED))
			return -EPROTO;
		vp->protocol_features = m->u64;
		return 0;
	case VU_SET_OWNER:
		return 0;
	case VU_RESET_OWNER:
		for (int i = 0; i < 2; i++)
			ring_reset(&vp->ring[i]);
		return 0;
	case VU_GET_PROTOCOL_FEATURES:
		m->u64 = PROTOCOL_OFFERED;
		m->size = 8;
		return 1;
	}
	/* The rest name a ring. */
	if (m->size < 8 || q > 1)
		return -EPROTO;
	r = &vp->ring[q];
	switch (m->request) {
	case VU_SET_VRING_NUM:
		if (!m->state.num || m->state.num > VQ_MAX_SIZE || (m->state.num & (m->state.num - 1)))
			return -EPROTO;
		r->num = m->state.num;
		return 0;
	case VU_SET_VRING_ADDR:
		if (m->size < sizeof(m->addr))
			return -EPROTO;
		r->desc = m->addr.desc;
		r->used = m->addr.used;
		r->avail = m->addr.avail;
		return 0;
	case VU_SET_VRING_BASE:
		r->base = (uint16_t)m->state.num;
		return 0;
	case VU_GET_VRING_BASE:
		/* The ring stops; its position goes back. */
		m->state.num = r->running ? r->vq.last_avail : r->base;
		m->size = 8;
		r->running = false;
		if (r->kick >= 0)
			close(r->kick);
		r->kick = -1;
		vp->gen++;
		return 1;
	case VU_SET_VRING_ENABLE:
		r->enabled = m->state.num;
		return 0;
	}
	return -EPROTO;
}

static void on_message(struct vport *vp)
{
	int fds[VU_MAX_FDS];
	unsigned nfds;
	struct vu_msg m;
	int ret = vu_recv(vp->conn_fd, &m, fds, &nfds);

	if (ret) {
		disconnect(vp, ret == -EPIPE ? "closed" : strerror(-ret));
		return;
	}
	pr_debug("switch: %s: %s (%u bytes, %u fds)", vp->path, vu_request_name(m.request), m.size, nfds);
	ret = handle(vp, &m, fds, nfds);
	if (ret < 0) {
		char why[96];

		snprintf(why, sizeof(why), "a malformed or unknown %s (%u)", vu_request_name(m.request), m.request);
		disconnect(vp, why);
		return;
	}
	if (!ret && (m.flags & VU_FLAG_NEED_REPLY) && (vp->protocol_features & 1ULL << VU_PROTOCOL_F_REPLY_ACK)) {
		m.u64 = 0; /* taken */
		m.size = 8;
		ret = 1;
	}
	if (ret > 0) {
		m.flags = VU_VERSION | VU_FLAG_REPLY;
		if (vu_send(vp->conn_fd, &m, NULL, 0))
			disconnect(vp, "a reply could not be sent");
	}
}

void vport_ready(struct vport *vp, int fd)
{
	if (fd == vp->listen_fd) {
		int c = accept4(vp->listen_fd, NULL, NULL, SOCK_CLOEXEC);

		if (c < 0)
			return;
		if (vp->conn_fd >= 0) {
			close(c); /* one front end at a time */
			return;
		}
		vp->conn_fd = c;
		vp->gen++;
		pr_info("switch: %s: front end connected", vp->path);
		return;
	}
	if (fd == vp->conn_fd) {
		on_message(vp);
		return;
	}
	if (fd == vp->timer_fd) {
		uint64_t n;

		if (read(fd, &n, sizeof(n)) == sizeof(n))
			serve_tx(vp); /* the bucket has tokens again */
		return;
	}
	for (int q = 0; q < 2; q++) {
		if (fd == vp->ring[q].kick) {
			eventfd_t n;

			(void)eventfd_read(fd, &n);
			if (q == TXQ)
				serve_tx(vp);
			/* Receive: new buffers; frames do not wait for them. */
		}
	}
}
