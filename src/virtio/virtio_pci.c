/* The virtio 1.x modern PCI transport: see virtio_pci.h. */
#include "virtio/virtio_pci.h"

#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/log.h"
#include "core/devctx.h"
#include "pci/pci.h"

/* virtio_pci_cap.cfg_type */
enum { CAP_COMMON = 1, CAP_NOTIFY = 2, CAP_ISR = 3, CAP_DEVICE = 4 };

static uint64_t offered(const struct virtio_dev *vd)
{
	return vd->ops->features | 1ULL << VIRTIO_F_VERSION_1;
}

static struct virtio_queue *selected(struct virtio_dev *vd)
{
	return vd->queue_select < vd->ops->num_queues ? &vd->q[vd->queue_select] : NULL;
}

/* Raise vector (MSI-X), or INTx with isr_bit when MSI-X is off. */
static void interrupt(struct virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	bool msix;

	pthread_mutex_lock(&vd->pci->msix_lock);
	msix = vd->pci->msix_enabled;
	pthread_mutex_unlock(&vd->pci->msix_lock);
	if (msix) {
		if (vector != VIRTIO_MSI_NO_VECTOR)
			(void)pci_msix_notify(vd->pci, vector); /* delivered or pending */
		return;
	}
	vd->isr |= isr_bit;
	pci_set_irq(vd->pci, true);
}

void virtio_pci_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	if (q < vd->ops->num_queues)
		interrupt(vd, vd->q[q].msix_vector, VIRTIO_ISR_QUEUE);
}

/* "net", "blk", ... for log lines, by virtio device ID. */
static const char *kind(const struct virtio_dev *vd)
{
	static const char *const names[] = { [1] = "net", [2] = "blk", [3] = "console", [4] = "rng" };
	unsigned t = vd->ops->device_type;

	return t < sizeof(names) / sizeof(names[0]) && names[t] ? names[t] : "device";
}

void virtio_pci_queue_broken(struct virtio_dev *vd, unsigned q, int err)
{
	pr_warn_ratelimited("virtio-%s at 00:%02x.0: queue %u broken (%s): device needs reset", kind(vd),
			    vd->pci->slot, q, vq_strerror(err));
	if (vd->status & VIRTIO_STATUS_NEEDS_RESET)
		return;
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	vd->config_generation++;
	interrupt(vd, vd->msix_config, VIRTIO_ISR_CONFIG);
}

static void reset(struct virtio_dev *vd)
{
	if (vd->ops->reset)
		vd->ops->reset(vd);
	vd->dfselect = vd->gfselect = 0;
	vd->driver_features = 0;
	vd->msix_config = VIRTIO_MSI_NO_VECTOR;
	vd->queue_select = 0;
	vd->status = 0;
	vd->isr = 0;
	pci_set_irq(vd->pci, false);
	for (unsigned i = 0; i < VIRTIO_PCI_MAX_QUEUES; i++) {
		memset(&vd->q[i], 0, sizeof(vd->q[i]));
		vd->q[i].size = vd->ops->queue_max;
		vd->q[i].msix_vector = VIRTIO_MSI_NO_VECTOR;
	}
}

/* The common configuration as the driver reads it. */
static void common_image(struct virtio_dev *vd, uint8_t img[VIRTIO_COMMON_SIZE])
{
	struct virtio_queue *q = selected(vd);
	uint32_t df = vd->dfselect < 2 ? (uint32_t)(offered(vd) >> (32 * vd->dfselect)) : 0;
	uint32_t gf = vd->gfselect < 2 ? (uint32_t)(vd->driver_features >> (32 * vd->gfselect)) : 0;
	uint16_t nq = vd->ops->num_queues, noff = vd->queue_select;

	memset(img, 0, VIRTIO_COMMON_SIZE);
	memcpy(img + VIRTIO_COMMON_DFSELECT, &vd->dfselect, 4);
	memcpy(img + VIRTIO_COMMON_DF, &df, 4);
	memcpy(img + VIRTIO_COMMON_GFSELECT, &vd->gfselect, 4);
	memcpy(img + VIRTIO_COMMON_GF, &gf, 4);
	memcpy(img + VIRTIO_COMMON_MSIX, &vd->msix_config, 2);
	memcpy(img + VIRTIO_COMMON_NUMQ, &nq, 2);
	img[VIRTIO_COMMON_STATUS] = vd->status;
	img[VIRTIO_COMMON_CFGGEN] = vd->config_generation;
	memcpy(img + VIRTIO_COMMON_Q_SELECT, &vd->queue_select, 2);
	if (!q)
		return; /* queue_size 0: no such queue */
	uint16_t en = q->enabled;
	memcpy(img + VIRTIO_COMMON_Q_SIZE, &q->size, 2);
	memcpy(img + VIRTIO_COMMON_Q_MSIX, &q->msix_vector, 2);
	memcpy(img + VIRTIO_COMMON_Q_ENABLE, &en, 2);
	memcpy(img + VIRTIO_COMMON_Q_NOFF, &noff, 2);
	memcpy(img + VIRTIO_COMMON_Q_DESC, &q->desc, 8);
	memcpy(img + VIRTIO_COMMON_Q_DRIVER, &q->driver, 8);
	memcpy(img + VIRTIO_COMMON_Q_DEVICE, &q->device, 8);
}

static uint16_t checked_vector(const struct virtio_dev *vd, uint16_t v)
{
	return v < vd->pci->msix_n ? v : VIRTIO_MSI_NO_VECTOR;
}

static void status_write(struct virtio_dev *vd, uint8_t s)
{
	if (!s) {
		reset(vd);
		return;
	}
	if ((s & VIRTIO_STATUS_FEATURES_OK) && !(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		/* Accept only offered features, and only the 1.x interface. */
		if ((vd->driver_features & ~offered(vd)) ||
		    !(vd->driver_features & 1ULL << VIRTIO_F_VERSION_1))
			s &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
	}
	if ((s & VIRTIO_STATUS_DRIVER_OK) && !(vd->status & VIRTIO_STATUS_DRIVER_OK) && vd->ops->driver_ok) {
		vd->status = (uint8_t)(s | (vd->status & VIRTIO_STATUS_NEEDS_RESET));
		vd->ops->driver_ok(vd);
		return;
	}
	vd->status = (uint8_t)(s | (vd->status & VIRTIO_STATUS_NEEDS_RESET));
}

static void queue_enable(struct virtio_dev *vd, struct virtio_queue *q)
{
	struct vq_config c = {
		.size = q->size,
		.desc_gpa = q->desc,
		.avail_gpa = q->driver,
		.used_gpa = q->device,
		.features = vd->driver_features,
	};
	int ret;

	q->enabled = true;
	ret = vq_init(&q->vq, vd->gm, &c);
	if (ret)
		virtio_pci_queue_broken(vd, (unsigned)(q - vd->q), ret);
}

static bool covers(unsigned off, unsigned len, unsigned field)
{
	return field >= off && field < off + len;
}

static void common_write(struct virtio_dev *vd, unsigned off, const void *data, unsigned len)
{
	uint8_t img[VIRTIO_COMMON_SIZE];
	struct virtio_queue *q;
	uint16_t v16;
	uint32_t v32;

	if (off >= VIRTIO_COMMON_SIZE || off + len > VIRTIO_COMMON_SIZE)
		return;
	common_image(vd, img);
	memcpy(img + off, data, len);
#define FIELD(o, v) (memcpy(&(v), img + (o), sizeof(v)), covers(off, len, (o)))
	if (FIELD(VIRTIO_COMMON_DFSELECT, v32))
		vd->dfselect = v32;
	if (FIELD(VIRTIO_COMMON_GFSELECT, v32))
		vd->gfselect = v32;
	if (FIELD(VIRTIO_COMMON_GF, v32) && vd->gfselect < 2 && !(vd->status & VIRTIO_STATUS_FEATURES_OK)) {
		unsigned sh = 32 * vd->gfselect;

		vd->driver_features = (vd->driver_features & ~(0xffffffffULL << sh)) | (uint64_t)v32 << sh;
	}
	if (FIELD(VIRTIO_COMMON_MSIX, v16))
		vd->msix_config = checked_vector(vd, v16);
	if (covers(off, len, VIRTIO_COMMON_STATUS))
		status_write(vd, img[VIRTIO_COMMON_STATUS]);
	if (FIELD(VIRTIO_COMMON_Q_SELECT, v16))
		vd->queue_select = v16;
	q = selected(vd);
	if (!q || q->enabled)
		return; /* the queue registers are fixed once enabled */
	if (FIELD(VIRTIO_COMMON_Q_SIZE, v16) && v16 <= vd->ops->queue_max)
		q->size = v16; /* a non-power of two breaks the queue at enable */
	if (FIELD(VIRTIO_COMMON_Q_MSIX, v16))
		q->msix_vector = checked_vector(vd, v16);
	if (covers(off, len, VIRTIO_COMMON_Q_DESC) || covers(off, len, VIRTIO_COMMON_Q_DESC + 4))
		memcpy(&q->desc, img + VIRTIO_COMMON_Q_DESC, 8);
	if (covers(off, len, VIRTIO_COMMON_Q_DRIVER) || covers(off, len, VIRTIO_COMMON_Q_DRIVER + 4))
		memcpy(&q->driver, img + VIRTIO_COMMON_Q_DRIVER, 8);
	if (covers(off, len, VIRTIO_COMMON_Q_DEVICE) || covers(off, len, VIRTIO_COMMON_Q_DEVICE + 4))
		memcpy(&q->device, img + VIRTIO_COMMON_Q_DEVICE, 8);
	if (FIELD(VIRTIO_COMMON_Q_ENABLE, v16) && v16 == 1)
		queue_enable(vd, q);
#undef FIELD
}

/* ---- kicks through eventfds ---- */

/* Serve the kicks the backend queued on the eventfds (vd->lock held). A
 * kick of a queue that is not ready is dropped, as bar_write drops it. */
static void serve_kicks(struct virtio_dev *vd)
{
	for (unsigned q = 0; vd->kick_gpa && q < vd->ops->num_queues; q++) {
		uint64_t n;

		if (read(vd->kick_fd[q], &n, sizeof(n)) == (ssize_t)sizeof(n) && virtio_pci_queue_ready(vd, q)) {
			vd->kicks_eventfd++;
			vd->ops->queue_notify(vd, q);
		}
	}
}

static void *io_thread(void *arg)
{
	struct virtio_dev *vd = arg;
	struct pollfd p[VIRTIO_PCI_MAX_QUEUES + 1];
	unsigned n = vd->ops->num_queues;

	for (unsigned q = 0; q < n; q++)
		p[q] = (struct pollfd){ .fd = vd->kick_fd[q], .events = POLLIN };
	p[n] = (struct pollfd){ .fd = vd->stop_fd, .events = POLLIN };
	for (;;) {
		if (poll(p, n + 1, -1) < 0 && errno != EINTR)
			break;
		if (p[n].revents)
			break;
		pthread_mutex_lock(&vd->lock);
		serve_kicks(vd);
		pthread_mutex_unlock(&vd->lock);
	}
	return NULL;
}

/* (Un)register every queue's notify address at base with the backend. */
static int kicks_assign(struct virtio_dev *vd, uint64_t base, bool assign)
{
	const struct devctx *ctx = vd->pci->root->ctx;
	int ret = 0;

	for (unsigned q = 0; q < vd->ops->num_queues && !ret; q++) {
		ret = dev_ioeventfd(ctx, base + VIRTIO_PCI_NOTIFY_MULT * q, 2, vd->kick_fd[q], assign);
		if (ret && assign)
			while (q--)
				(void)dev_ioeventfd(ctx, base + VIRTIO_PCI_NOTIFY_MULT * q, 2, vd->kick_fd[q], false);
	}
	return ret;
}

/* Keep the eventfds on the notify area wherever the guest puts BAR 0 (and
 * off it while memory decoding is off); start the I/O thread the first
 * time. Where the backend has no ioeventfd (the emulator) kicks stay MMIO
 * writes handled in bar_write. Root lock held (pci.h), then vd->lock. */
static void kicks_follow_bar(struct virtio_dev *vd)
{
	struct pci_device *d = vd->pci;
	uint64_t want = d->bar_on[0] ? d->bar_addr[0] + VIRTIO_PCI_NOTIFY_OFF : 0;

	pthread_mutex_lock(&vd->lock);
	if (want == vd->kick_gpa || vd->stop_fd < 0)
		goto out;
	if (vd->kick_gpa) {
		(void)kicks_assign(vd, vd->kick_gpa, false);
		serve_kicks(vd); /* what came before the move */
		vd->kick_gpa = 0;
	}
	if (!want || kicks_assign(vd, want, true))
		goto out;
	vd->kick_gpa = want;
	if (!vd->io_started) {
		if (pthread_create(&vd->io_thread, NULL, io_thread, vd)) {
			(void)kicks_assign(vd, want, false);
			vd->kick_gpa = 0;
			goto out;
		}
		vd->io_started = true;
	}
out:
	pthread_mutex_unlock(&vd->lock);
}

static void config_written(void *opaque, unsigned off, unsigned len)
{
	kicks_follow_bar(opaque);
}

static void bar_read(void *opaque, int bar, uint64_t off, void *data, unsigned len)
{
	struct virtio_dev *vd = opaque;

	memset(data, 0, len);
	if (bar != 0)
		return;
	pthread_mutex_lock(&vd->lock);
	serve_kicks(vd);
	if (off < VIRTIO_PCI_ISR_OFF) {
		uint8_t img[VIRTIO_COMMON_SIZE];

		if (off + len <= VIRTIO_COMMON_SIZE) {
			common_image(vd, img);
			memcpy(data, img + off, len);
		}
	} else if (off == VIRTIO_PCI_ISR_OFF) {
		*(uint8_t *)data = vd->isr; /* reading clears it */
		vd->isr = 0;
		pci_set_irq(vd->pci, false);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_NOTIFY_OFF) {
		off -= VIRTIO_PCI_DEVICE_OFF;
		if (vd->ops->config_read && off + len <= vd->ops->config_size)
			vd->ops->config_read(vd, (unsigned)off, data, len);
	}
	pthread_mutex_unlock(&vd->lock);
}

static void bar_write(void *opaque, int bar, uint64_t off, const void *data, unsigned len)
{
	struct virtio_dev *vd = opaque;

	if (bar != 0)
		return;
	pthread_mutex_lock(&vd->lock);
	if (off < VIRTIO_PCI_ISR_OFF) {
		common_write(vd, (unsigned)off, data, len);
	} else if (off >= VIRTIO_PCI_DEVICE_OFF && off < VIRTIO_PCI_NOTIFY_OFF) {
		off -= VIRTIO_PCI_DEVICE_OFF;
		if (vd->ops->config_write && off + len <= vd->ops->config_size)
			vd->ops->config_write(vd, (unsigned)off, data, len);
	} else if (off >= VIRTIO_PCI_NOTIFY_OFF) {
		unsigned qi = (unsigned)((off - VIRTIO_PCI_NOTIFY_OFF) / VIRTIO_PCI_NOTIFY_MULT);

		if (qi < vd->ops->num_queues && virtio_pci_queue_ready(vd, qi)) {
			vd->kicks_mmio++;
			vd->ops->queue_notify(vd, qi);
		}
	}
	pthread_mutex_unlock(&vd->lock);
}

static const struct pci_device_ops virtio_pci_ops = { bar_read, bar_write, config_written };

static int add_cap(struct pci_device *d, uint8_t type, uint32_t off, uint32_t len, uint32_t extra, bool has_extra)
{
	/* struct virtio_pci_cap after cap_vndr/cap_next: cap_len, cfg_type,
	 * bar, id, padding[2], offset, length [, notify_off_multiplier]. */
	uint8_t body[18] = { 0 };
	unsigned n = has_extra ? 18 : 14;

	body[0] = (uint8_t)(n + 2);
	body[1] = type;
	body[2] = 0; /* BAR 0 */
	memcpy(body + 6, &off, 4);
	memcpy(body + 10, &len, 4);
	memcpy(body + 14, &extra, 4);
	return pci_add_capability(d, PCI_CAP_ID_VNDR, body, n) ? 0 : -ENOSPC;
}

/* ---- snapshots ---- */

/* The transport's registers and each queue's place in its rings. Chains a
 * device holds without having used them (ops->held) are given back: the
 * saved position is before them, so the restored device takes them again
 * from the avail ring, where the driver left them. */
static void vd_save(void *obj, struct snap_buf *b)
{
	struct virtio_dev *vd = obj;

	pthread_mutex_lock(&vd->lock);
	snap_put_u32(b, vd->dfselect);
	snap_put_u32(b, vd->gfselect);
	snap_put_u64(b, vd->driver_features);
	snap_put_u16(b, vd->msix_config);
	snap_put_u16(b, vd->queue_select);
	snap_put_u8(b, vd->status);
	snap_put_u8(b, vd->isr);
	snap_put_u8(b, vd->config_generation);
	snap_put_u8(b, (uint8_t)vd->ops->num_queues);
	for (unsigned i = 0; i < vd->ops->num_queues; i++) {
		const struct virtio_queue *q = &vd->q[i];
		uint16_t held = q->enabled && vd->ops->held ? vd->ops->held(vd, i) : 0;

		snap_put_u16(b, q->size);
		snap_put_u16(b, q->msix_vector);
		snap_put_u8(b, q->enabled);
		snap_put_u8(b, q->vq.broken);
		snap_put_u8(b, q->vq.notify);
		snap_put_u8(b, q->vq.signalled_valid);
		snap_put_u64(b, q->desc);
		snap_put_u64(b, q->driver);
		snap_put_u64(b, q->device);
		snap_put_u16(b, (uint16_t)(q->vq.last_avail - held));
		snap_put_u16(b, q->vq.used_idx);
		snap_put_u16(b, q->vq.signalled_used);
	}
	pthread_mutex_unlock(&vd->lock);
}

static int vd_restore_queue(struct virtio_dev *vd, unsigned i, struct snap_cur *c, char *err, size_t len)
{
	struct virtio_queue *q = &vd->q[i];
	uint8_t en, broken, notify, sig_valid;
	uint16_t last_avail, used_idx, sig_used, avail_idx;
	int r;

	q->size = snap_get_u16(c);
	q->msix_vector = snap_get_u16(c);
	en = snap_get_u8(c);
	broken = snap_get_u8(c);
	notify = snap_get_u8(c);
	sig_valid = snap_get_u8(c);
	q->desc = snap_get_u64(c);
	q->driver = snap_get_u64(c);
	q->device = snap_get_u64(c);
	last_avail = snap_get_u16(c);
	used_idx = snap_get_u16(c);
	sig_used = snap_get_u16(c);
	if (c->short_read)
		return errorf(err, len, -EINVAL, "section too short");
	if ((en | broken | notify | sig_valid) > 1 || q->size > vd->ops->queue_max ||
	    (q->msix_vector != VIRTIO_MSI_NO_VECTOR && q->msix_vector >= vd->pci->msix_n))
		return errorf(err, len, -EINVAL, "queue %u: size %u, vector %u or flags out of range", i, q->size,
			      q->msix_vector);
	if (!en)
		return 0;
	q->enabled = true;
	r = vq_init(&q->vq, vd->gm, &(struct vq_config){ .size = q->size, .desc_gpa = q->desc, .avail_gpa = q->driver,
							  .used_gpa = q->device, .features = vd->driver_features });
	if (r && !broken)
		return errorf(err, len, -EINVAL, "queue %u: %s", i, vq_strerror(r));
	if (broken) {
		q->vq.broken = true;
		q->vq.err = r ? r : VQ_ERR_BROKEN;
		return 0;
	}
	avail_idx = __atomic_load_n(&q->vq.avail[1], __ATOMIC_ACQUIRE);
	if ((uint16_t)(avail_idx - last_avail) > q->size || (uint16_t)(last_avail - used_idx) > q->size)
		return errorf(err, len, -EINVAL, "queue %u: positions avail %u, next %u, used %u out of range", i,
			      avail_idx, last_avail, used_idx);
	q->vq.last_avail = last_avail;
	q->vq.used_idx = used_idx;
	q->vq.signalled_used = sig_used;
	q->vq.signalled_valid = sig_valid;
	vq_set_notify(&q->vq, notify);
	return 0;
}

static int vd_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct virtio_dev *vd = obj;
	const uint8_t known = VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_DRIVER_OK |
			      VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_NEEDS_RESET | VIRTIO_STATUS_FAILED;
	int ret = 0;
	uint8_t nq;

	pthread_mutex_lock(&vd->lock);
	vd->dfselect = snap_get_u32(c);
	vd->gfselect = snap_get_u32(c);
	vd->driver_features = snap_get_u64(c);
	vd->msix_config = snap_get_u16(c);
	vd->queue_select = snap_get_u16(c);
	vd->status = snap_get_u8(c);
	vd->isr = snap_get_u8(c);
	vd->config_generation = snap_get_u8(c);
	nq = snap_get_u8(c);
	if (nq != vd->ops->num_queues)
		ret = errorf(err, len, -EINVAL, "%u queues; this device has %u", nq, vd->ops->num_queues);
	else if ((vd->status & ~known) || (vd->driver_features & ~offered(vd)) || vd->isr > 3 ||
		 (vd->msix_config != VIRTIO_MSI_NO_VECTOR && vd->msix_config >= vd->pci->msix_n))
		ret = errorf(err, len, -EINVAL, "status %#x, features %#llx, ISR %#x or config vector %u out of range",
			     vd->status, (unsigned long long)vd->driver_features, vd->isr, vd->msix_config);
	for (unsigned i = 0; i < nq && !ret; i++)
		ret = vd_restore_queue(vd, i, c, err, len);
	pthread_mutex_unlock(&vd->lock);
	return ret;
}

static const struct snap_ops vd_snap = {
	.name = "virtio device", .id = SNAP_ID("VIRT"), .version = 1, .save = vd_save, .restore = vd_restore,
};

int virtio_pci_init(struct virtio_dev *vd, struct pci_root *root, const struct guest_mem *gm,
		    const struct virtio_dev_ops *ops, void *opaque)
{
	struct pci_device_info info = {
		.vendor = VIRTIO_PCI_VENDOR,
		.device = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_type),
		.subsys_vendor = VIRTIO_PCI_VENDOR,
		.subsys_id = (uint16_t)(VIRTIO_PCI_DEVICE_BASE + ops->device_type),
		.class_code = 0xff0000,
		.revision = 1,
		.irq_pin = 1,
		.bars = { [0] = { PCI_BAR_MEM64, VIRTIO_PCI_BAR_SIZE, false } },
		.msix_vectors = 1u + ops->num_queues,
		.msix_bar = VIRTIO_PCI_MSIX_BAR,
	};
	int ret;

	if (!ops->num_queues || ops->num_queues > VIRTIO_PCI_MAX_QUEUES || !ops->queue_max ||
	    ops->queue_max > VQ_MAX_SIZE || (ops->queue_max & (ops->queue_max - 1)) || ops->config_size > 4096 ||
	    !ops->queue_notify)
		return -EINVAL;
	memset(vd, 0, sizeof(*vd));
	vd->ops = ops;
	vd->opaque = opaque;
	vd->gm = gm;
	vd->stop_fd = -1;
	for (unsigned q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++)
		vd->kick_fd[q] = -1;
	ret = pci_register_device(root, &virtio_pci_ops, vd, &info, &vd->pci);
	if (ret)
		return ret;
	ret = add_cap(vd->pci, CAP_COMMON, VIRTIO_PCI_COMMON_OFF, VIRTIO_COMMON_SIZE, 0, false);
	if (!ret)
		ret = add_cap(vd->pci, CAP_NOTIFY, VIRTIO_PCI_NOTIFY_OFF,
			      VIRTIO_PCI_NOTIFY_MULT * ops->num_queues, VIRTIO_PCI_NOTIFY_MULT, true);
	if (!ret)
		ret = add_cap(vd->pci, CAP_ISR, VIRTIO_PCI_ISR_OFF, 1, 0, false);
	if (!ret && ops->config_size)
		ret = add_cap(vd->pci, CAP_DEVICE, VIRTIO_PCI_DEVICE_OFF, ops->config_size, 0, false);
	if (ret)
		return ret;
	pthread_mutex_init(&vd->lock, NULL);
	reset(vd);
	ret = dev_register_state(root->ctx, &vd_snap, vd, (uint32_t)vd->pci->slot);
	if (ret)
		return ret;
	/* Without eventfds (stop_fd -1) kicks stay MMIO writes. */
	vd->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	for (unsigned q = 0; q < ops->num_queues && vd->stop_fd >= 0; q++) {
		vd->kick_fd[q] = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (vd->kick_fd[q] < 0) {
			close(vd->stop_fd);
			vd->stop_fd = -1;
		}
	}
	kicks_follow_bar(vd); /* the BAR decodes from the start (pci.c) */
	return 0;
}

void virtio_device_drain(struct virtio_dev *vd)
{
	pthread_mutex_lock(&vd->lock);
	if (vd->ops->drain)
		vd->ops->drain(vd, true);
	pthread_mutex_unlock(&vd->lock);
}

void virtio_device_pause(struct virtio_dev *vd, bool pause)
{
	pthread_mutex_lock(&vd->lock);
	vd->paused = pause;
	if (pause && vd->ops->drain)
		vd->ops->drain(vd, false);
	for (unsigned q = 0; !pause && q < vd->ops->num_queues; q++)
		if (virtio_pci_queue_ready(vd, q))
			vd->ops->queue_notify(vd, q);
	pthread_mutex_unlock(&vd->lock);
}

int virtio_device_handover(struct virtio_dev *vd, bool give, char *err, size_t len)
{
	return vd->ops->handover ? vd->ops->handover(vd, give, err, len) : 0;
}

void virtio_device_destroy(struct virtio_dev *vd)
{
	if (!vd)
		return;
	if (vd->io_started) {
		(void)write(vd->stop_fd, &(uint64_t){ 1 }, sizeof(uint64_t));
		pthread_join(vd->io_thread, NULL);
	}
	if (vd->kick_gpa)
		(void)kicks_assign(vd, vd->kick_gpa, false);
	for (unsigned q = 0; q < VIRTIO_PCI_MAX_QUEUES; q++)
		if (vd->kick_fd[q] >= 0)
			close(vd->kick_fd[q]);
	if (vd->stop_fd >= 0)
		close(vd->stop_fd);
	/* The device's own threads (virtio-blk's workers) end in its
	 * destroy, taking vd->lock as they go, and vd goes with it: the lock
	 * is not destroyed first (a worker once waited forever on a destroyed
	 * one, under ASan, in snap_corrupt), and a default mutex holds nothing
	 * to release. */
	if (vd->ops->destroy)
		vd->ops->destroy(vd);
}
