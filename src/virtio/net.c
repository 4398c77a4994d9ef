/* virtio-net (virtio spec 5.1): queue 0 receives, queue 1 transmits, over
 * a backend from net_backend.h.
 *
 * Transmit runs in the vCPU thread that kicks (vd->lock held): each chain
 * is one frame behind a 12-byte header, written to the backend as it
 * stands in guest memory, except the header, which is copied out, checked
 * against the negotiated features and written from that copy.
 *
 * Receive runs in the event loop: when the backend is readable it takes
 * vd->lock, reads one frame into a bounce buffer (its size is then known),
 * and pops receive chains until they hold it (several with MRG_RXBUF,
 * num_buffers telling the guest how many). Chains popped but not yet used
 * stay parked for the next frame. With no buffers left the frame stays
 * pending and the backend is not polled until the guest kicks queue 0.
 *
 * Rate limits, each way (rx_bw=, rx_pps=, tx_bw=, tx_pps=: core/ratelimit.h,
 * Firecracker's rx_rate_limiter and tx_rate_limiter): every frame pays its
 * bytes (without the header) and one operation. While the transmit bucket
 * is empty no chain is taken and the guest is not asked to kick; while the
 * receive bucket is empty the backend is not polled (a tap's queue fills
 * and the host drops, as a slow link would). A timer in the event loop
 * takes up the direction that waits when its bucket has tokens again. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "core/evloop.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/devctx.h"
#include "core/ratelimit.h"
#include "virtio/devices.h"
#include "virtio/iov.h"
#include "virtio/net_backend.h"
#include "virtio/net_hdr.h"
#include "virtio/virtio_pci.h"

#define BIT(n) (1ULL << (n))

#define VIRTIO_NET_S_LINK_UP 1

/* struct virtio_net_config (spec 5.1.4), up to max_virtqueue_pairs. */
struct virtio_net_config {
	uint8_t mac[6];
	uint16_t status;
	uint16_t max_virtqueue_pairs;
};
_Static_assert(sizeof(struct virtio_net_config) == 10, "virtio_net_config is 10 bytes");

#define HDR_LEN sizeof(struct virtio_net_hdr)
/* Largest frame either way: 64 KiB of TSO payload plus link headers, as
 * the spec's 65550-byte limit for a receive buffer without MRG_RXBUF. */
#define MAX_FRAME 65550
#define QUEUE_SIZE 256
#define RXQ 0
#define TXQ 1
#define RX_BATCH 64 /* frames read per event-loop wake-up */
#define RX_POOL (2 * VQ_MAX_SEGS) /* iovecs of parked receive chains */

struct rx_parked {
	uint16_t head;
	uint32_t iov, nr_iov; /* its writable buffers: pool[iov .. iov + nr_iov) */
	uint64_t len;
};

struct virtio_net {
	struct virtio_dev vd;
	struct virtio_dev_ops ops; /* offered features depend on the backend */
	struct evloop *loop;
	struct net_backend nb;
	uint8_t mac[6];
	/* Under vd.lock from here on. */
	struct virtio_net_stats st;
	struct rate_limiter rl[2]; /* [RXQ], [TXQ] */
	struct rl_key limits[4];   /* rx_bw= rx_pps= tx_bw= tx_pps= */
	int timer_fd;		   /* timerfd: a direction waits for tokens */
	int announce_fd;	   /* timerfd of virtio_net_announce, -1 when none is due */
	unsigned announce_left;	   /* announcements still to send */
	bool waits[2];		   /* [RXQ], [TXQ]: throttled until the timer */
	unsigned offloads_set; /* NET_OFFLOAD_* asked of the backend */
	bool polling;	       /* backend fd watched for EPOLLIN */
	bool backend_gone;     /* hung up: never polled again */
	uint32_t pending;      /* bytes of a frame in rx_frame not yet delivered */
	uint32_t nr_parked, pool_used;
	uint64_t parked_len;
	struct rx_parked parked[QUEUE_SIZE];
	struct iovec pool[RX_POOL];
	struct vq_chain chain;		   /* scratch for vq_pop */
	struct iovec txiov[VQ_MAX_SEGS + 1]; /* header copy + the frame */
	uint8_t rx_frame[HDR_LEN + MAX_FRAME];
};

static bool has(const struct virtio_net *n, int feature)
{
	return n->vd.driver_features & BIT(feature);
}

/* ---- copies between flat memory and iovecs ---- */

/* A header is acceptable when it asks only for what was negotiated: the
 * checksum feature for NEEDS_CSUM, the TSO feature for each GSO type. */
static bool hdr_ok(const struct virtio_net *n, const struct virtio_net_hdr *h, int csum, int tso4, int tso6)
{
	if ((h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && !has(n, csum))
		return false;
	switch (h->gso_type) {
	case VIRTIO_NET_HDR_GSO_NONE:
		return true;
	case VIRTIO_NET_HDR_GSO_TCPV4:
		return has(n, tso4);
	case VIRTIO_NET_HDR_GSO_TCPV6:
		return has(n, tso6);
	default:
		return false;
	}
}

/* ---- transmit ---- */

static uint32_t tx_frame(struct virtio_dev *vd, struct vq_chain *c)
{
	struct virtio_net *n = vd->opaque;
	struct virtio_net_hdr h;
	int cnt;
	ssize_t r;

	/* guest-controlled: sizes, header; the header is read once, here */
	if (c->out_len < HDR_LEN || c->out_len > HDR_LEN + MAX_FRAME)
		goto drop;
	iov_copy(c->iov, c->nr_out, 0, &h, HDR_LEN, false);
	if (!hdr_ok(n, &h, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6))
		goto drop;
	h.num_buffers = 0;
	n->txiov[0] = (struct iovec){ &h, HDR_LEN };
	cnt = 1 + (int)iov_slice(c->iov, c->nr_out, HDR_LEN, c->out_len - HDR_LEN, n->txiov + 1);
	if (cnt > VQ_MAX_SEGS) /* writev's limit (IOV_MAX) */
		goto drop;
	r = n->nb.ops->write(&n->nb, n->txiov, cnt);
	if (r < 0)
		goto drop;
	n->st.tx_frames++;
	n->st.tx_bytes += c->out_len - HDR_LEN;
	rl_charge(&n->rl[TXQ], c->out_len - HDR_LEN, 1);
	return 0;
drop:
	n->st.tx_dropped++;
	return 0;
}

/* ---- receive ---- */

static void rx_poll(struct virtio_net *n, bool on)
{
	on = on && !n->backend_gone;
	if (n->polling == on)
		return;
	if (evloop_mod(n->loop, n->nb.ops->fd(&n->nb), on ? EPOLLIN : 0) == 0)
		n->polling = on;
}

/* Ask the backend for the offloads the guest accepts on receive. */
static void rx_offloads(struct virtio_net *n)
{
	unsigned want = 0;

	if (has(n, VIRTIO_NET_F_GUEST_CSUM)) {
		want = NET_OFFLOAD_CSUM;
		if (has(n, VIRTIO_NET_F_GUEST_TSO4))
			want |= NET_OFFLOAD_TSO4;
		if (has(n, VIRTIO_NET_F_GUEST_TSO6))
			want |= NET_OFFLOAD_TSO6;
	}
	want &= n->nb.offloads;
	if (want != n->offloads_set && n->nb.ops->set_offload(&n->nb, want) == 0)
		n->offloads_set = want;
}

/* Forget the parked chains (reset: the guest owns its buffers again). */
static void rx_unpark_all(struct virtio_net *n)
{
	n->nr_parked = n->pool_used = 0;
	n->parked_len = 0;
}

/* Park a popped chain's writable buffers; one too small to hold even the
 * header breaks spec 5.1.6.3.1 and goes straight back, empty. */
static int rx_park(struct virtio_net *n, struct vq *vq, const struct vq_chain *c)
{
	struct rx_parked *p = &n->parked[n->nr_parked];

	if (c->in_len < HDR_LEN) {
		n->st.rx_bad_buffers++;
		return vq_push_chain(vq, c, 0);
	}
	p->head = c->head;
	p->iov = n->pool_used;
	p->nr_iov = c->nr_in;
	p->len = c->in_len;
	memcpy(&n->pool[n->pool_used], &c->iov[c->nr_out], c->nr_in * sizeof(struct iovec));
	n->pool_used += c->nr_in;
	n->parked_len += c->in_len;
	n->nr_parked++;
	return 0;
}

/* Drop the first k parked chains (used), keeping the rest in order. */
static void rx_unpark(struct virtio_net *n, uint32_t k)
{
	uint32_t first = k < n->nr_parked ? n->parked[k].iov : n->pool_used;

	for (uint32_t i = 0; i < k; i++)
		n->parked_len -= n->parked[i].len;
	memmove(n->pool, n->pool + first, (n->pool_used - first) * sizeof(struct iovec));
	n->pool_used -= first;
	memmove(n->parked, n->parked + k, (n->nr_parked - k) * sizeof(n->parked[0]));
	n->nr_parked -= k;
	for (uint32_t i = 0; i < n->nr_parked; i++)
		n->parked[i].iov -= first;
}

/* Deliver the pending frame: 1 done (delivered or dropped and counted),
 * 0 waiting for buffers, or a VQ_ERR_*. */
static int rx_deliver(struct virtio_net *n, struct vq *vq)
{
	bool mrg = has(n, VIRTIO_NET_F_MRG_RXBUF);
	uint32_t len = n->pending, k = 0;
	uint16_t nbuf;
	uint64_t have = 0;
	int r;

	while (mrg ? n->parked_len < len : !n->nr_parked) {
		/* No room to park another chain: the frame cannot fit. */
		if (n->nr_parked == vq->size || RX_POOL - n->pool_used < VQ_MAX_SEGS)
			goto drop;
		r = vq_pop(vq, &n->chain);
		if (r <= 0)
			return r;
		r = rx_park(n, vq, &n->chain);
		if (r < 0)
			return r;
	}
	if (!mrg && n->parked[0].len < len)
		goto drop; /* keep the chain for a smaller frame */
	while (have < len)
		have += n->parked[k++].len;
	nbuf = (uint16_t)k; /* k <= QUEUE_SIZE */
	memcpy(n->rx_frame + offsetof(struct virtio_net_hdr, num_buffers), &nbuf, sizeof(nbuf));
	have = 0;
	for (uint32_t i = 0; i < k; i++) {
		const struct rx_parked *p = &n->parked[i];
		size_t w = iov_copy(&n->pool[p->iov], p->nr_iov, 0, n->rx_frame + have, len - have, true);

		have += w;
		vq_mark_written(vq, &n->pool[p->iov], p->nr_iov);
		r = vq_push(vq, p->head, (uint32_t)w);
		if (r < 0)
			return r;
	}
	rx_unpark(n, k);
	n->st.rx_frames++;
	n->st.rx_bytes += len - HDR_LEN;
	n->pending = 0;
	return 1;
drop:
	n->st.rx_dropped++;
	n->pending = 0;
	return 1;
}

/* Read one frame into rx_frame: 1, 0 when none waits, -1 when one was lost
 * (counted: a read error, a runt, or an offload the guest did not take). */
static int rx_read(struct virtio_net *n)
{
	struct iovec iov = { n->rx_frame, sizeof(n->rx_frame) };
	struct virtio_net_hdr h;
	ssize_t r = n->nb.ops->read(&n->nb, &iov, 1);

	if (r == -EAGAIN || r == -EINTR)
		return 0;
	memcpy(&h, n->rx_frame, HDR_LEN);
	if (r < (ssize_t)HDR_LEN ||
	    !hdr_ok(n, &h, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_TSO4, VIRTIO_NET_F_GUEST_TSO6)) {
		n->st.rx_dropped++;
		return -1;
	}
	if (!has(n, VIRTIO_NET_F_GUEST_CSUM)) /* spec 5.1.6.4.1: only with GUEST_CSUM */
		n->rx_frame[0] &= (uint8_t)~VIRTIO_NET_HDR_F_DATA_VALID;
	n->pending = (uint32_t)r;
	rl_charge(&n->rl[RXQ], (uint64_t)r - HDR_LEN, 1);
	return 1;
}

/* Wake up in wait ns to take up queue q again (its bucket is empty). */
static void limit_wait(struct virtio_net *n, unsigned q, uint64_t wait)
{
	struct itimerspec cur, its = { .it_value = { (time_t)(wait / NS_PER_SEC), (long)(wait % NS_PER_SEC) } };

	n->waits[q] = true;
	/* An earlier wake-up already set stays. */
	if (!timerfd_gettime(n->timer_fd, &cur) && (cur.it_value.tv_sec || cur.it_value.tv_nsec) &&
	    (uint64_t)cur.it_value.tv_sec * NS_PER_SEC + (uint64_t)cur.it_value.tv_nsec <= wait)
		return;
	if (timerfd_settime(n->timer_fd, 0, &its, NULL))
		pr_warn_ratelimited("virtio-net: rate limit timer: %s", strerror(errno));
}

/* Move frames to the guest: the pending one, then up to reads more. */
static void rx_run(struct virtio_net *n, int reads)
{
	struct vq *vq = &n->vd.q[RXQ].vq;
	bool wait = false;
	uint16_t used = vq->used_idx;
	int r = 0;

	if (!virtio_pci_queue_ready(&n->vd, RXQ)) {
		rx_poll(n, false); /* until the guest kicks queue 0 */
		return;
	}
	rx_offloads(n);
	while (n->pending || reads-- > 0) {
		uint64_t limit = n->pending ? 0 : rl_wait_ns(&n->rl[RXQ]);

		if (limit) {
			limit_wait(n, RXQ, limit);
			break;
		}
		int got = n->pending ? 1 : rx_read(n);

		if (got == 0)
			break;
		if (got < 0)
			continue;
		r = rx_deliver(n, vq);
		if (r <= 0) {
			wait = true;
			break;
		}
	}
	if (r < 0) {
		virtio_pci_queue_broken(&n->vd, RXQ, r);
		rx_poll(n, false);
		return;
	}
	rx_poll(n, !wait && !n->waits[RXQ]);
	if (vq->used_idx != used && vq_needs_notify(vq))
		virtio_pci_queue_interrupt(&n->vd, RXQ);
}

static void rx_event(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;

	pthread_mutex_lock(&n->vd.lock);
	if ((events & (EPOLLHUP | EPOLLERR)) && !(events & EPOLLIN)) {
		pr_warn("virtio-net: the backend hung up; no more frames for the guest");
		n->backend_gone = true;
		evloop_del(n->loop, n->nb.ops->fd(&n->nb));
	} else {
		rx_run(n, RX_BATCH);
	}
	pthread_mutex_unlock(&n->vd.lock);
}

/* ---- the device ---- */

static void tx_run(struct virtio_net *n)
{
	uint64_t wait = virtio_pci_queue_serve_limited(&n->vd, TXQ, &n->chain, tx_frame, &n->rl[TXQ]);

	if (wait)
		limit_wait(n, TXQ, wait);
}

static void net_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_net *n = vd->opaque;

	if (q == TXQ) {
		if (!n->waits[TXQ])
			tx_run(n);
	} else if (!n->waits[RXQ]) {
		rx_run(n, 0); /* new buffers: deliver a waiting frame, poll again */
	}
}

/* The timer: the directions that waited for tokens go on. */
static void limit_event(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;
	uint64_t ticks;

	if (read(n->timer_fd, &ticks, sizeof(ticks)) < 0)
		return;
	pthread_mutex_lock(&n->vd.lock);
	if (n->waits[TXQ]) {
		n->waits[TXQ] = false;
		if (virtio_pci_queue_ready(&n->vd, TXQ))
			tx_run(n);
	}
	if (n->waits[RXQ]) {
		n->waits[RXQ] = false;
		rx_run(n, RX_BATCH);
	}
	pthread_mutex_unlock(&n->vd.lock);
}

static int net_set_limits(struct virtio_dev *vd, const char *spec, char *err, size_t len)
{
	struct virtio_net *n = vd->opaque;

	return rl_options(spec, n->limits, 4, err, len);
}

void virtio_net_config(const uint8_t mac[6], unsigned off, void *data, unsigned len)
{
	struct virtio_net_config c = { .status = VIRTIO_NET_S_LINK_UP, .max_virtqueue_pairs = 1 };

	memcpy(c.mac, mac, sizeof(c.mac));
	memcpy(data, (uint8_t *)&c + off, len); /* off + len <= config_size: the transport checks */
}

static void net_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned len)
{
	struct virtio_net *n = vd->opaque;

	virtio_net_config(n->mac, off, data, len);
}

static void net_reset(struct virtio_dev *vd)
{
	struct virtio_net *n = vd->opaque;

	n->pending = 0;
	n->waits[RXQ] = n->waits[TXQ] = false;
	rx_unpark_all(n);
	rx_poll(n, false);
}

/* The timer, the limiters; their keys. */
static void limits_free(struct virtio_net *n)
{
	if (n->timer_fd >= 0) {
		evloop_del(n->loop, n->timer_fd);
		close(n->timer_fd);
	}
	rl_destroy(&n->rl[RXQ]);
	rl_destroy(&n->rl[TXQ]);
}

static int limits_init(struct virtio_net *n)
{
	static const char *const names[4] = { "rx_bw", "rx_pps", "tx_bw", "tx_pps" };
	int ret;

	rl_init(&n->rl[RXQ]);
	rl_init(&n->rl[TXQ]);
	for (unsigned i = 0; i < 4; i++)
		n->limits[i] = (struct rl_key){ names[i], &n->rl[i < 2 ? RXQ : TXQ], i % 2 ? RL_OPS : RL_BYTES };
	n->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (n->timer_fd < 0)
		return -errno;
	ret = evloop_add(n->loop, n->timer_fd, EPOLLIN, limit_event, n);
	if (ret) {
		close(n->timer_fd);
		n->timer_fd = -1;
	}
	return ret;
}

static void net_destroy(struct virtio_dev *vd)
{
	struct virtio_net *n = vd->opaque;

	pr_info("virtio-net: tx %llu frames %llu bytes %llu dropped; rx %llu frames %llu bytes %llu dropped",
		(unsigned long long)n->st.tx_frames, (unsigned long long)n->st.tx_bytes,
		(unsigned long long)n->st.tx_dropped, (unsigned long long)n->st.rx_frames,
		(unsigned long long)n->st.rx_bytes, (unsigned long long)n->st.rx_dropped);
	if (!n->backend_gone)
		evloop_del(n->loop, n->nb.ops->fd(&n->nb));
	if (n->announce_fd >= 0) {
		evloop_del(n->loop, n->announce_fd);
		close(n->announce_fd);
	}
	n->nb.ops->close(&n->nb);
	limits_free(n);
	free(n);
}

/* ---- after a migration: the guest's MAC announced ---- */

#define ANNOUNCE_ROUNDS 5
#define ANNOUNCE_FIRST_MS 50 /* then 100 ms more each time: 50, 150, 250, 350 (QEMU's) */

/* A RARP request from the guest's MAC to everyone (RFC 903): bridges and
 * switches learn where the MAC now is, even from a guest that says
 * nothing, as QEMU's self-announce does. */
static void announce_send(struct virtio_net *n)
{
	uint8_t f[HDR_LEN + 60] = { 0 }, *e = f + HDR_LEN;
	static const uint8_t rarp[10] = { 0x80, 0x35, 0, 1, 0x08, 0x00, 6, 4, 0, 3 };
	struct iovec iov = { f, sizeof(f) };

	memset(e, 0xff, 6);
	memcpy(e + 6, n->mac, 6);
	memcpy(e + 12, rarp, sizeof(rarp)); /* type; hardware Ethernet, protocol IPv4, 6, 4, reverse request */
	memcpy(e + 22, n->mac, 6);	    /* sender: the MAC, IP 0 */
	memcpy(e + 32, n->mac, 6);	    /* target: the MAC, IP 0 */
	if (n->nb.ops->write(&n->nb, &iov, 1) < 0)
		pr_debug("virtio-net: announcement not sent");
}

static void announce_tick(void *opaque, uint32_t events)
{
	struct virtio_net *n = opaque;
	uint64_t expired;
	unsigned k = ANNOUNCE_ROUNDS - n->announce_left;

	(void)events;
	if (read(n->announce_fd, &expired, sizeof(expired)) != sizeof(expired))
		return;
	announce_send(n);
	if (--n->announce_left) {
		long ms = ANNOUNCE_FIRST_MS + 100 * (long)k;
		struct itimerspec t = { .it_value = { ms / 1000, ms % 1000 * 1000000 } };

		timerfd_settime(n->announce_fd, 0, &t, NULL);
		return;
	}
	evloop_del(n->loop, n->announce_fd);
	close(n->announce_fd);
	n->announce_fd = -1;
}

int virtio_net_announce(struct virtio_dev *vd)
{
	struct virtio_net *n = vd->opaque;
	struct itimerspec now = { .it_value = { 0, 1 } };
	int ret;

	if (vd->ops->destroy != net_destroy || n->backend_gone)
		return -EINVAL;
	if (n->announce_fd < 0) {
		n->announce_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (n->announce_fd < 0)
			return -errno;
		if ((ret = evloop_add(n->loop, n->announce_fd, EPOLLIN, announce_tick, n))) {
			close(n->announce_fd);
			n->announce_fd = -1;
			return ret;
		}
	}
	n->announce_left = ANNOUNCE_ROUNDS;
	return timerfd_settime(n->announce_fd, 0, &now, NULL) ? -errno : 0;
}

void virtio_net_get_stats(struct virtio_dev *vd, struct virtio_net_stats *st)
{
	struct virtio_net *n = vd->opaque;

	pthread_mutex_lock(&vd->lock);
	*st = n->st;
	pthread_mutex_unlock(&vd->lock);
}

/* Firecracker's names where it has the counter. */
static unsigned net_metrics(struct virtio_dev *vd, struct virtio_metric *m)
{
	struct virtio_net_stats st;

	virtio_net_get_stats(vd, &st);
	m[0] = (struct virtio_metric){ "tx_packets_count", st.tx_frames };
	m[1] = (struct virtio_metric){ "tx_bytes_count", st.tx_bytes };
	m[2] = (struct virtio_metric){ "tx_dropped", st.tx_dropped };
	m[3] = (struct virtio_metric){ "rx_packets_count", st.rx_frames };
	m[4] = (struct virtio_metric){ "rx_bytes_count", st.rx_bytes };
	m[5] = (struct virtio_metric){ "rx_dropped", st.rx_dropped };
	m[6] = (struct virtio_metric){ "rx_bad_buffers", st.rx_bad_buffers };
	for (unsigned q = 0; q < 2; q++) {
		struct rate_limiter *rl = &((struct virtio_net *)vd->opaque)->rl[q];

		pthread_mutex_lock(&rl->lock);
		m[7 + q] = (struct virtio_metric){ q == RXQ ? "rx_rate_limiter_throttled" : "tx_rate_limiter_throttled",
						   rl->throttled };
		pthread_mutex_unlock(&rl->lock);
	}
	return 9;
}

static uint16_t net_held(struct virtio_dev *vd, unsigned q)
{
	struct virtio_net *n = vd->opaque;

	return q == RXQ ? (uint16_t)n->nr_parked : 0;
}

static const struct virtio_dev_ops net_ops = {
	.device_type = 1,
	.num_queues = 2,
	.queue_max = QUEUE_SIZE,
	.features = BIT(VIRTIO_NET_F_MAC) | BIT(VIRTIO_NET_F_STATUS) | BIT(VIRTIO_NET_F_MRG_RXBUF) |
		    BIT(VIRTIO_F_INDIRECT_DESC) | BIT(VIRTIO_F_EVENT_IDX),
	.config_size = sizeof(struct virtio_net_config),
	.config_read = net_config_read,
	.queue_notify = net_notify,
	.reset = net_reset,
	.held = net_held,
	.destroy = net_destroy,
	.metrics_group = "net",
	.metrics = net_metrics,
	.set_limits = net_set_limits,
};

/* ---- the option string ---- */

enum offload_opt { OFFLOAD_ON, OFFLOAD_CSUM, OFFLOAD_OFF };

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = (char)(c | 0x20);
	return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Exactly six two-digit hex bytes separated by colons. */
int net_parse_mac(const char *s, uint8_t mac[6])
{
	if (strlen(s) != 17)
		return -1;
	for (int i = 0; i < 6; i++) {
		int hi = hexval(s[3 * i]), lo = hexval(s[3 * i + 1]);

		if (hi < 0 || lo < 0 || (i < 5 && s[3 * i + 2] != ':'))
			return -1;
		mac[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}

bool net_mac_ok(const char *mac)
{
	uint8_t b[6];

	return !net_parse_mac(mac, b);
}

/* A stable, locally administered unicast address from the backend's name:
 * 52:54:00 (QEMU's prefix, locally administered) + 24 bits of FNV-1a. */
static void default_mac(const char *key, const char *val, uint8_t mac[6])
{
	uint32_t h = 2166136261u;

	for (const char *s = key; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	for (const char *s = val; *s; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	mac[0] = 0x52;
	mac[1] = 0x54;
	mac[2] = 0x00;
	mac[3] = (uint8_t)(h >> 16);
	mac[4] = (uint8_t)(h >> 8);
	mac[5] = (uint8_t)h;
}

/* Parse spec into n (backend ops, MAC) and the backend's argument. */
static int parse_spec(struct virtio_net *n, const char *spec, char *buf, size_t buflen, const char **arg,
		      enum offload_opt *off, char *err, size_t len)
{
	bool have_mac = false, have_off = false;

	if (!spec || strlen(spec) >= buflen) {
		snprintf(err, len, "--net: expected tap=NAME[,mac=52:54:00:XX:XX:XX][,offload=on|csum|off]");
		return -EINVAL;
	}
	strcpy(buf, spec);
	*off = OFFLOAD_ON;
	for (char *save = NULL, *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *val = strchr(kv, '='), why[200];
		const struct net_backend_ops *const *b;
		int r = rl_option(kv, n->limits, 4, why, sizeof(why));

		if (r) {
			if (r < 0) {
				snprintf(err, len, "--net %s: %s", spec, why);
				return -EINVAL;
			}
			continue;
		}
		if (!val) {
			snprintf(err, len, "--net %s: '%s' is not key=value", spec, kv);
			return -EINVAL;
		}
		*val++ = 0;
		for (b = net_backends; *b && strcmp((*b)->key, kv); b++)
			;
		if (*b) {
			if (n->nb.ops) {
				snprintf(err, len, "--net %s: more than one backend (%s=, %s=)", spec,
					 n->nb.ops->key, kv);
				return -EINVAL;
			}
			n->nb.ops = *b;
			*arg = val;
		} else if (!strcmp(kv, "mac") && !have_mac) {
			have_mac = true;
			if (net_parse_mac(val, n->mac)) {
				snprintf(err, len, "--net %s: mac=%s: expected six hex bytes like 52:54:00:12:34:56",
					 spec, val);
				return -EINVAL;
			}
			if (n->mac[0] & 1) {
				snprintf(err, len, "--net %s: mac=%s is a multicast address (first byte odd)", spec,
					 val);
				return -EINVAL;
			}
			if (!(n->mac[0] | n->mac[1] | n->mac[2] | n->mac[3] | n->mac[4] | n->mac[5])) {
				snprintf(err, len, "--net %s: mac=%s: the all-zero address", spec, val);
				return -EINVAL;
			}
		} else if (!strcmp(kv, "offload") && !have_off) {
			have_off = true;
			if (!strcmp(val, "on"))
				*off = OFFLOAD_ON;
			else if (!strcmp(val, "csum"))
				*off = OFFLOAD_CSUM;
			else if (!strcmp(val, "off"))
				*off = OFFLOAD_OFF;
			else {
				snprintf(err, len, "--net %s: offload=%s: expected on, csum or off", spec, val);
				return -EINVAL;
			}
		} else {
			snprintf(err, len, "--net %s: %s key '%s' (keys: tap=, fd=, mac=, offload=, rx_bw=, rx_pps=, tx_bw=, tx_pps=)", spec,
				 (!strcmp(kv, "mac") || !strcmp(kv, "offload")) ? "repeated" : "unknown", kv);
			return -EINVAL;
		}
	}
	if (!n->nb.ops) {
		snprintf(err, len, "--net %s: no backend (tap=NAME or fd=N)", spec);
		return -EINVAL;
	}
	if (!have_mac)
		default_mac(n->nb.ops->key, *arg, n->mac);
	return 0;
}

/* What we offer: checksums both ways unless offload=off, TSO both ways
 * with offload=on; towards the guest only what the backend can deliver. */
static uint64_t offload_features(enum offload_opt off, unsigned can)
{
	uint64_t f = 0;

	if (off == OFFLOAD_OFF)
		return 0;
	f |= BIT(VIRTIO_NET_F_CSUM);
	if (can & NET_OFFLOAD_CSUM)
		f |= BIT(VIRTIO_NET_F_GUEST_CSUM);
	if (off == OFFLOAD_CSUM)
		return f;
	f |= BIT(VIRTIO_NET_F_HOST_TSO4) | BIT(VIRTIO_NET_F_HOST_TSO6);
	if ((can & NET_OFFLOAD_CSUM) && (can & NET_OFFLOAD_TSO4))
		f |= BIT(VIRTIO_NET_F_GUEST_TSO4);
	if ((can & NET_OFFLOAD_CSUM) && (can & NET_OFFLOAD_TSO6))
		f |= BIT(VIRTIO_NET_F_GUEST_TSO6);
	return f;
}

int virtio_net_create(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err, size_t len)
{
	struct virtio_net *n = calloc(1, sizeof(*n));
	char buf[256], why[200] = "";
	const char *arg = NULL;
	enum offload_opt off;
	int ret;

	if (!n)
		return -ENOMEM;
	n->loop = ctx->loop;
	n->nb.fd = -1;
	n->announce_fd = -1;
	ret = limits_init(n);
	if (ret) {
		snprintf(err, len, "--net %s: rate limit timer: %s", spec, strerror(-ret));
		goto fail;
	}
	ret = parse_spec(n, spec, buf, sizeof(buf), &arg, &off, err, len);
	if (ret)
		goto fail;
	ret = n->nb.ops->open(&n->nb, arg, why, sizeof(why));
	if (ret) {
		snprintf(err, len, "--net %s", why); /* why starts with the backend's key=value */
		goto fail;
	}
	/* Watched for EPOLLIN only once the guest's receive queue runs. */
	ret = evloop_add(n->loop, n->nb.ops->fd(&n->nb), 0, rx_event, n);
	if (ret) {
		snprintf(err, len, "--net %s: event loop: %s", spec, strerror(-ret));
		goto close;
	}
	n->ops = net_ops;
	n->ops.features |= offload_features(off, n->nb.offloads);
	ret = virtio_pci_init(&n->vd, ctx->pci, ctx->mem, &n->ops, n);
	if (ret) {
		snprintf(err, len, "--net %s: %s", spec, strerror(-ret));
		evloop_del(n->loop, n->nb.ops->fd(&n->nb));
		goto close;
	}
	*out = &n->vd;
	return 0;
close:
	n->nb.ops->close(&n->nb);
fail:
	limits_free(n);
	free(n);
	return ret;
}
