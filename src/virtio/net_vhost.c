/* virtio-net whose rings another process serves: tarn as a vhost-user
 * front end (virtio/vhost_user.h), `--net vhost-user=PATH[,mac=MAC]`, for
 * tarn's switch (tarn-switch) or any vhost-user net back end. tarn keeps
 * the PCI device (configuration, feature negotiation, interrupts); the back
 * end maps guest memory (the VM's RAM is then a memfd: gm_init_shared) and
 * takes frames from the transmit ring and puts them into the receive
 * buffers itself. Kicks go to it through an eventfd per ring; its
 * interrupts come back through another, which the event loop turns into
 * the queue's interrupt.
 *
 * Pause stops the rings (GET_VRING_BASE: the back end touches guest memory
 * no more) and the first kick after the pause starts them again where they
 * were. A snapshot of such a VM is refused (vm_snapshot_save): the rings'
 * positions are the back end's. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/devctx.h"
#include "core/evloop.h"
#include "core/log.h"
#include "mem/gm.h"
#include "virtio/devices.h"
#include "virtio/net_backend.h"
#include "virtio/net_hdr.h"
#include "virtio/vhost_user.h"
#include "virtio/virtio_pci.h"
#include <sys/epoll.h>

#define NQ 2
#define QUEUE_SIZE 256
/* What tarn lets through of the back end's features: the rings' and the
 * frames' (offloads, mergeable buffers), which the back end serves; the
 * rest of the device, MAC and link status, is tarn's own. */
#define F(bit) (1ULL << (bit))
#define PASSED                                                                                                  \
	(F(VIRTIO_F_INDIRECT_DESC) | F(VIRTIO_F_EVENT_IDX) | F(VIRTIO_F_VERSION_1) | F(VIRTIO_NET_F_MRG_RXBUF) | \
	 F(VIRTIO_NET_F_CSUM) | F(VIRTIO_NET_F_GUEST_CSUM) | F(VIRTIO_NET_F_HOST_TSO4) | F(VIRTIO_NET_F_HOST_TSO6) | \
	 F(VIRTIO_NET_F_GUEST_TSO4) | F(VIRTIO_NET_F_GUEST_TSO6))

struct vnet {
	struct virtio_dev vd;
	struct virtio_dev_ops ops;
	const struct devctx *ctx;
	char path[108];
	int sock;
	uint64_t backend_features;
	bool protocol; /* VU_F_PROTOCOL_FEATURES: rings start disabled */
	uint8_t mac[6];
	int kick[NQ];
	struct vnet_call {
		struct vnet *n;
		unsigned q;
		int fd;
	} call[NQ];
	bool running[NQ];
	uint16_t base[NQ];
	bool broken; /* the back end went away: the device does nothing more */
};

/* One request, and its reply when it has one (reply != NULL). */
static int request(struct vnet *n, uint32_t req, const void *payload, uint32_t size, const int *fds, unsigned nfds,
		   struct vu_msg *reply)
{
	struct vu_msg m = { .request = req, .flags = VU_VERSION, .size = size };
	int rfds[VU_MAX_FDS];
	unsigned rn;
	int ret;

	if (n->broken)
		return -EPIPE;
	memcpy(m.raw, payload, size);
	ret = vu_send(n->sock, &m, fds, nfds);
	if (!ret && reply) {
		ret = vu_recv(n->sock, reply, rfds, &rn);
		while (!ret && rn)
			close(rfds[--rn]);
		if (!ret && (reply->request != req || !(reply->flags & VU_FLAG_REPLY) || reply->size < 8))
			ret = -EPROTO;
	}
	if (ret) {
		pr_warn("--net vhost-user=%s: %s: %s; the NIC stops", n->path, vu_request_name(req), strerror(-ret));
		n->broken = true;
	}
	return ret;
}

static int request_u64(struct vnet *n, uint32_t req, uint64_t v)
{
	return request(n, req, &v, 8, NULL, 0, NULL);
}

static int request_state(struct vnet *n, uint32_t req, uint32_t index, uint32_t num)
{
	uint32_t s[2] = { index, num };

	return request(n, req, s, 8, NULL, 0, NULL);
}

/* Ring q to the back end, from base[q] on. */
static void ring_start(struct vnet *n, unsigned q)
{
	const struct virtio_queue *vq = &n->vd.q[q];
	const struct guest_mem *gm = n->vd.gm;
	uint8_t addr[40] = { 0 };
	uint64_t a[3] = {
		(uint64_t)(uintptr_t)gm_ptr(gm, vq->desc, 16ULL * vq->size),
		(uint64_t)(uintptr_t)gm_ptr(gm, vq->device, 6 + 8ULL * vq->size),
		(uint64_t)(uintptr_t)gm_ptr(gm, vq->driver, 6 + 2ULL * vq->size),
	};
	uint32_t idx = q;

	if (!a[0] || !a[1] || !a[2])
		return; /* the transport found the ring outside RAM: broken already */
	memcpy(addr, &idx, 4);
	memcpy(addr + 8, a, sizeof(a)); /* descriptors, used, available (the protocol's order) */
	if (request_state(n, VU_SET_VRING_NUM, q, vq->size) || request_state(n, VU_SET_VRING_BASE, q, n->base[q]) ||
	    request(n, VU_SET_VRING_ADDR, addr, sizeof(addr), NULL, 0, NULL) ||
	    request(n, VU_SET_VRING_KICK, &(uint64_t){ q }, 8, &n->kick[q], 1, NULL) ||
	    (n->protocol && request_state(n, VU_SET_VRING_ENABLE, q, 1)))
		return;
	n->running[q] = true;
	(void)eventfd_write(n->kick[q], 1); /* what the driver queued before */
}

/* The back end stops ring q and says where it stood. */
static void ring_stop(struct vnet *n, unsigned q)
{
	struct vu_msg r;
	uint32_t s[2] = { q, 0 };

	if (!n->running[q])
		return;
	n->running[q] = false;
	if (!request(n, VU_GET_VRING_BASE, s, 8, NULL, 0, &r))
		n->base[q] = (uint16_t)r.state.num;
}

static void vnet_driver_ok(struct virtio_dev *vd)
{
	struct vnet *n = vd->opaque;
	const struct guest_mem *gm = vd->gm;
	uint8_t mem[8 + VU_MAX_REGIONS * sizeof(struct vu_region)] = { 0 };
	int fds[VU_MAX_REGIONS];
	uint32_t nr = (uint32_t)gm->nr_regions;

	/* The features the driver took that the back end knows of. */
	if (request_u64(n, VU_SET_FEATURES,
			(vd->driver_features & n->backend_features) | (n->protocol ? 1ULL << VU_F_PROTOCOL_FEATURES : 0)))
		return;
	memcpy(mem, &nr, 4);
	for (uint32_t i = 0; i < nr; i++) {
		const struct gm_region *g = &gm->regions[i];
		struct vu_region r = { g->gpa, g->size, (uint64_t)(uintptr_t)g->hva, (uint64_t)(g->hva - gm->base) };

		memcpy(mem + 8 + i * sizeof(r), &r, sizeof(r));
		fds[i] = gm->fd;
	}
	if (request(n, VU_SET_MEM_TABLE, mem, 8 + nr * (uint32_t)sizeof(struct vu_region), fds, nr, NULL))
		return;
	for (unsigned q = 0; q < NQ; q++) {
		n->base[q] = 0;
		if (virtio_pci_queue_ready(vd, q))
			ring_start(n, q);
	}
}

static void vnet_notify(struct virtio_dev *vd, unsigned q)
{
	struct vnet *n = vd->opaque;

	if (!n->running[q] && !n->broken)
		ring_start(n, q); /* after a pause */
	else if (n->running[q])
		(void)eventfd_write(n->kick[q], 1);
}

/* Pause (and reset): the back end lets go of the rings. */
static void vnet_drain(struct virtio_dev *vd, bool all)
{
	struct vnet *n = vd->opaque;

	for (unsigned q = 0; q < NQ; q++)
		ring_stop(n, q);
}

static void vnet_reset(struct virtio_dev *vd)
{
	struct vnet *n = vd->opaque;

	vnet_drain(vd, false);
	n->base[0] = n->base[1] = 0;
}

static void vnet_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned len)
{
	struct vnet *n = vd->opaque;

	virtio_net_config(n->mac, off, data, len);
}

/* The back end interrupts (the event loop's thread): the queue's
 * interrupt, where the driver still has it running. */
static void call_event(void *opaque, uint32_t events)
{
	struct vnet_call *c = opaque;
	struct virtio_dev *vd = &c->n->vd;
	eventfd_t v;

	if (eventfd_read(c->fd, &v))
		return;
	pthread_mutex_lock(&vd->lock);
	if (vd->q[c->q].enabled && (vd->status & VIRTIO_STATUS_DRIVER_OK))
		virtio_pci_queue_interrupt(vd, c->q);
	pthread_mutex_unlock(&vd->lock);
}

static void vnet_free(struct vnet *n)
{
	for (unsigned q = 0; q < NQ; q++) {
		if (n->call[q].fd >= 0) {
			evloop_del(n->ctx->loop, n->call[q].fd);
			close(n->call[q].fd);
		}
		if (n->kick[q] >= 0)
			close(n->kick[q]);
	}
	if (n->sock >= 0)
		close(n->sock);
	free(n);
}

static void vnet_destroy(struct virtio_dev *vd)
{
	vnet_free(vd->opaque);
}

static const struct virtio_dev_ops vnet_ops = {
	.device_type = 1,
	.num_queues = NQ,
	.queue_max = QUEUE_SIZE,
	.features = 1ULL << VIRTIO_NET_F_MAC | 1ULL << VIRTIO_NET_F_STATUS,
	.config_size = VIRTIO_NET_CONFIG_SIZE,
	.config_read = vnet_config_read,
	.queue_notify = vnet_notify,
	.driver_ok = vnet_driver_ok,
	.drain = vnet_drain,
	.reset = vnet_reset,
	.destroy = vnet_destroy,
};

/* "vhost-user=PATH[,mac=MAC]" into n. 0 or -EINVAL with why. */
static int parse_spec(struct vnet *n, const char *spec, char *err, size_t len)
{
	const char *path = spec + strlen("vhost-user="), *comma = strchr(path, ',');
	size_t plen = comma ? (size_t)(comma - path) : strlen(path);

	if (!plen || plen >= sizeof(n->path))
		return errorf(err, len, -EINVAL, "--net %s: vhost-user=PATH, a socket path of at most %zu bytes", spec,
			      sizeof(n->path) - 1);
	memcpy(n->path, path, plen);
	n->path[plen] = 0;
	/* Default MAC: 52:54:00 and three bytes of the path's hash. */
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < plen; i++)
		h = (h ^ (uint8_t)path[i]) * 16777619u;
	memcpy(n->mac, (uint8_t[]){ 0x52, 0x54, 0, (uint8_t)(h >> 16), (uint8_t)(h >> 8), (uint8_t)h }, 6);
	if (!comma)
		return 0;
	if (strncmp(comma, ",mac=", 5) || net_parse_mac(comma + 5, n->mac) || (n->mac[0] & 1))
		return errorf(err, len, -EINVAL, "--net %s: after vhost-user=PATH only mac=MAC (a unicast address; "
						 "rate limits are the switch's)", spec);
	return 0;
}

int virtio_net_vhost_create(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err, size_t len)
{
	struct vnet *n = calloc(1, sizeof(*n));
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	struct vu_msg r;
	int ret;

	if (!n)
		return -ENOMEM;
	n->ctx = ctx;
	n->sock = -1;
	for (unsigned q = 0; q < NQ; q++) {
		n->kick[q] = -1;
		n->call[q] = (struct vnet_call){ n, q, -1 };
	}
	if ((ret = parse_spec(n, spec, err, len)))
		goto fail;
	if (ctx->mem->fd < 0) {
		ret = errorf(err, len, -EINVAL, "--net %s: guest memory is not shared (a restored VM?)", spec);
		goto fail;
	}
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", n->path);
	n->sock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (n->sock < 0 || connect(n->sock, (struct sockaddr *)&a, sizeof(a))) {
		ret = errorf(err, len, -errno, "--net %s: cannot connect: %s (is the switch running?)", spec,
			     strerror(errno));
		goto fail;
	}
	/* The handshake: features, owner, interrupts' eventfds. */
	if (request(n, VU_GET_FEATURES, NULL, 0, NULL, 0, &r)) {
		ret = errorf(err, len, -EPROTO, "--net %s: the back end does not answer GET_FEATURES", spec);
		goto fail;
	}
	n->backend_features = r.u64;
	if (!(n->backend_features & 1ULL << VIRTIO_F_VERSION_1)) {
		ret = errorf(err, len, -EPROTO, "--net %s: the back end lacks the virtio 1.x interface", spec);
		goto fail;
	}
	n->protocol = n->backend_features & 1ULL << VU_F_PROTOCOL_FEATURES;
	if ((n->protocol && (request(n, VU_GET_PROTOCOL_FEATURES, NULL, 0, NULL, 0, &r) ||
			     request_u64(n, VU_SET_PROTOCOL_FEATURES, 0))) ||
	    request(n, VU_SET_OWNER, NULL, 0, NULL, 0, NULL)) {
		ret = errorf(err, len, -EPROTO, "--net %s: the back end broke off the handshake", spec);
		goto fail;
	}
	for (unsigned q = 0; q < NQ; q++) {
		n->kick[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		n->call[q].fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (n->kick[q] < 0 || n->call[q].fd < 0) {
			ret = errorf(err, len, -errno, "--net %s: eventfd: %s", spec, strerror(errno));
			goto fail;
		}
		if ((ret = evloop_add(ctx->loop, n->call[q].fd, EPOLLIN, call_event, &n->call[q]))) {
			close(n->call[q].fd);
			n->call[q].fd = -1;
			errorf(err, len, ret, "--net %s: event loop: %s", spec, strerror(-ret));
			goto fail;
		}
		if (request(n, VU_SET_VRING_CALL, &(uint64_t){ q }, 8, &n->call[q].fd, 1, NULL)) {
			ret = errorf(err, len, -EPROTO, "--net %s: the back end refused SET_VRING_CALL", spec);
			goto fail;
		}
	}
	n->ops = vnet_ops;
	n->ops.features |= n->backend_features & PASSED;
	if ((ret = virtio_pci_init(&n->vd, ctx->pci, ctx->mem, &n->ops, n))) {
		errorf(err, len, ret, "--net %s: %s", spec, strerror(-ret));
		goto fail;
	}
	*out = &n->vd;
	return 0;
fail:
	vnet_free(n);
	return ret;
}
