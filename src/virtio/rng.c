/* virtio-rng (virtio spec 5.4): one queue of writable buffers, each filled
 * with bytes from getrandom(2). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "core/devctx.h"
#include "virtio/devices.h"
#include "virtio/virtio_pci.h"

struct virtio_rng {
	struct virtio_dev vd;
	struct vq_chain chain; /* used under vd.lock */
	uint64_t bytes, requests; /* metrics: under vd.lock, read with relaxed atomics */
};

/* Fill the chain's writable buffers; returns the bytes written. */
static uint32_t fill(struct virtio_dev *vd, struct vq_chain *c)
{
	struct virtio_rng *rng = vd->opaque;
	uint64_t total = 0;

	for (uint32_t i = c->nr_out; i < c->nr_out + c->nr_in; i++) {
		uint8_t *p = c->iov[i].iov_base;
		size_t left = c->iov[i].iov_len;

		while (left) {
			ssize_t n = getrandom(p, left, 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				goto out;
			p += n;
			left -= (size_t)n;
			total += (uint64_t)n;
		}
	}
out:
	__atomic_store_n(&rng->requests, rng->requests + 1, __ATOMIC_RELAXED);
	__atomic_store_n(&rng->bytes, rng->bytes + total, __ATOMIC_RELAXED);
	return (uint32_t)total;
}

static void rng_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_rng *rng = vd->opaque;

	virtio_pci_queue_serve(vd, q, &rng->chain, fill);
}

static unsigned rng_metrics(struct virtio_dev *vd, struct virtio_metric *m)
{
	struct virtio_rng *rng = vd->opaque;

	m[0] = (struct virtio_metric){ "entropy_event_count", __atomic_load_n(&rng->requests, __ATOMIC_RELAXED) };
	m[1] = (struct virtio_metric){ "entropy_bytes", __atomic_load_n(&rng->bytes, __ATOMIC_RELAXED) };
	return 2;
}

static void rng_destroy(struct virtio_dev *vd)
{
	free(vd->opaque);
}

static const struct virtio_dev_ops rng_ops = {
	.device_type = 4,
	.num_queues = 1,
	.queue_max = 256,
	.features = 1ULL << VIRTIO_F_INDIRECT_DESC, /* the queue code handles it; QEMU offers it too */
	.queue_notify = rng_notify,
	.destroy = rng_destroy,
	.metrics_group = "entropy",
	.metrics = rng_metrics,
};

int virtio_rng_create(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err, size_t len)
{
	struct virtio_rng *rng = calloc(1, sizeof(*rng));
	int ret;

	(void)spec;
	if (!rng)
		return -ENOMEM;
	ret = virtio_pci_init(&rng->vd, ctx->pci, ctx->mem, &rng_ops, rng);
	if (ret) {
		snprintf(err, len, "virtio-rng: %s", strerror(-ret));
		free(rng);
		return ret;
	}
	*out = &rng->vd;
	return 0;
}
