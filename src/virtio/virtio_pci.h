/* The virtio 1.x modern PCI transport (virtio spec 4.1): vendor 0x1af4,
 * device 0x1040 + type, revision 1. One 64-bit memory BAR (BAR 0) holds the
 * four structures the vendor capabilities point at:
 *   0x0000 common configuration   0x1000 ISR status
 *   0x2000 device configuration   0x3000 notifications (4 bytes per queue)
 * MSI-X (BAR 2) has one vector for configuration changes plus one per queue;
 * with MSI-X disabled interrupts go through INTA# and the ISR register.
 *
 * A device supplies a virtio_dev_ops table. Its callbacks run with the
 * transport's lock held (vd->lock): in the thread of the guest access (a
 * vCPU), or for queue_notify in the device's I/O thread when the backend
 * delivers kicks through eventfds (KVM), so that no vCPU waits on the
 * device's I/O; from there it may call virtio_pci_queue_interrupt and
 * virtio_pci_queue_broken, which expect that lock held. Devices do not
 * know which backend runs them. */
#ifndef TARN_VIRTIO_PCI_H
#define TARN_VIRTIO_PCI_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/ratelimit.h"
#include "mem/gm.h"
#include "virtio/virtqueue.h"

struct pci_root;
struct pci_device;
struct virtio_dev;

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_DEVICE_BASE 0x1040
#define VIRTIO_PCI_MAX_QUEUES 8
#define VIRTIO_F_VERSION_1 32
#define VIRTIO_MSI_NO_VECTOR 0xffff

/* device_status bits */
#define VIRTIO_STATUS_ACKNOWLEDGE 1
#define VIRTIO_STATUS_DRIVER 2
#define VIRTIO_STATUS_DRIVER_OK 4
#define VIRTIO_STATUS_FEATURES_OK 8
#define VIRTIO_STATUS_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED 0x80

/* ISR bits */
#define VIRTIO_ISR_QUEUE 1
#define VIRTIO_ISR_CONFIG 2

/* BAR 0 layout */
#define VIRTIO_PCI_COMMON_OFF 0x0000
#define VIRTIO_PCI_ISR_OFF 0x1000
#define VIRTIO_PCI_DEVICE_OFF 0x2000
#define VIRTIO_PCI_NOTIFY_OFF 0x3000
#define VIRTIO_PCI_BAR_SIZE 0x4000
#define VIRTIO_PCI_NOTIFY_MULT 4
#define VIRTIO_PCI_MSIX_BAR 2

/* Common configuration offsets (spec 4.1.4.3) */
#define VIRTIO_COMMON_DFSELECT 0x00
#define VIRTIO_COMMON_DF 0x04
#define VIRTIO_COMMON_GFSELECT 0x08
#define VIRTIO_COMMON_GF 0x0c
#define VIRTIO_COMMON_MSIX 0x10
#define VIRTIO_COMMON_NUMQ 0x12
#define VIRTIO_COMMON_STATUS 0x14
#define VIRTIO_COMMON_CFGGEN 0x15
#define VIRTIO_COMMON_Q_SELECT 0x16
#define VIRTIO_COMMON_Q_SIZE 0x18
#define VIRTIO_COMMON_Q_MSIX 0x1a
#define VIRTIO_COMMON_Q_ENABLE 0x1c
#define VIRTIO_COMMON_Q_NOFF 0x1e
#define VIRTIO_COMMON_Q_DESC 0x20
#define VIRTIO_COMMON_Q_DRIVER 0x28
#define VIRTIO_COMMON_Q_DEVICE 0x30
#define VIRTIO_COMMON_SIZE 0x38

#define VIRTIO_METRICS_MAX 12

struct virtio_metric {
	const char *name;
	uint64_t value;
};

struct virtio_dev_ops {
	uint16_t device_type;	/* virtio device ID: 4 for entropy */
	uint16_t num_queues;	/* 1 .. VIRTIO_PCI_MAX_QUEUES */
	uint16_t queue_max;	/* largest queue size offered, power of two */
	uint64_t features;	/* offered; VIRTIO_F_VERSION_1 is added */
	unsigned config_size;	/* bytes of device configuration (<= 4096) */
	/* Optional: device configuration accesses, off < config_size. */
	void (*config_read)(struct virtio_dev *vd, unsigned off, void *data, unsigned len);
	void (*config_write)(struct virtio_dev *vd, unsigned off, const void *data, unsigned len);
	/* The driver kicked queue q (enabled, DRIVER_OK set). */
	void (*queue_notify)(struct virtio_dev *vd, unsigned q);
	/* Optional, for a device that serves requests in threads of its own:
	 * wait until none is in flight. With all, first serve every chain the
	 * driver made available (tests; a snapshot); without, take no more
	 * until the next kick. vd->lock held; it may wait on that lock. */
	void (*drain)(struct virtio_dev *vd, bool all);
	/* Optional: the driver set DRIVER_OK, its queues set up: a device
	 * whose rings another process serves (vhost-user) hands them over. */
	void (*driver_ok)(struct virtio_dev *vd);
	/* Optional: the driver reset the device (status 0). It runs before
	 * the transport forgets the queues: a device finishes (drain) what it
	 * has in flight here. */
	void (*reset)(struct virtio_dev *vd);
	/* Optional: chains the device took from queue q and has not used
	 * yet (virtio-net's parked receive buffers). A snapshot gives them
	 * back: its queue position is before them. vd->lock held. */
	uint16_t (*held)(struct virtio_dev *vd, unsigned q);
	/* Free the device (virtio_device_destroy, after the VM stopped). */
	void (*destroy)(struct virtio_dev *vd);
	/* Optional, for metrics: the group of the device's counters
	 * (Firecracker's names: "block", "net", "entropy") and the counters,
	 * totals since the device was made, into m; returns how many (at
	 * most VIRTIO_METRICS_MAX). Any thread. */
	const char *metrics_group;
	unsigned (*metrics)(struct virtio_dev *vd, struct virtio_metric *m);
	/* Optional: change rate limits at runtime from "NAME=VALUE,..."
	 * (core/ratelimit.h), all or none. 0, or -EINVAL with the reason in
	 * err. Any thread. */
	int (*set_limits)(struct virtio_dev *vd, const char *spec, char *err, size_t len);
	/* Optional, for a migration, the VM paused: give, at the source
	 * before its state goes: write back what the host holds for the
	 * guest and let go of what the destination's tarn takes (a disk's
	 * lock); !give: take it (the destination before the guest runs, or
	 * the source again when the migration failed). 0, or -errno with the
	 * reason in err. */
	int (*handover)(struct virtio_dev *vd, bool give, char *err, size_t len);
};

struct virtio_queue {
	uint16_t size, msix_vector;
	bool enabled;
	uint64_t desc, driver, device;
	struct vq vq;
};

struct virtio_dev {
	const struct virtio_dev_ops *ops;
	void *opaque; /* the device's */
	const struct guest_mem *gm;
	struct pci_device *pci;
	pthread_mutex_t lock;
	uint32_t dfselect, gfselect;
	uint64_t driver_features;
	uint16_t msix_config, queue_select;
	uint8_t status, isr, config_generation;
	struct virtio_queue q[VIRTIO_PCI_MAX_QUEUES];
	/* Kicks the backend delivers without a vCPU exit (KVM's ioeventfd):
	 * one eventfd per queue, registered for the notify area wherever
	 * BAR 0 decodes, served by the device's I/O thread -- or first by any
	 * read of BAR 0 that follows them, so the driver sees the effect of
	 * its kick when it next looks (as a read flushes posted writes). */
	int kick_fd[VIRTIO_PCI_MAX_QUEUES];
	uint64_t kick_gpa; /* notify area's address as registered; 0: not */
	int stop_fd;	   /* ends the I/O thread */
	pthread_t io_thread;
	bool io_started;
	uint64_t kicks_mmio, kicks_eventfd; /* kicks served, by path */
	/* The VM is paused (virtio_device_pause): no queue is ready. */
	bool paused;
};

/* Register a virtio device on root. vd is the caller's; it must stay put
 * until virtio_device_destroy (after the VM stopped). 0 or -errno. */
int virtio_pci_init(struct virtio_dev *vd, struct pci_root *root, const struct guest_mem *gm,
		    const struct virtio_dev_ops *ops, void *opaque) __attribute__((warn_unused_result));

/* May the device serve queue q (< num_queues)? Enabled, not broken, the
 * driver ready (DRIVER_OK) and no NEEDS_RESET: when kicks are delivered. */
static inline bool virtio_pci_queue_ready(const struct virtio_dev *vd, unsigned q)
{
	return vd->q[q].enabled && !vd->q[q].vq.broken && (vd->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vd->status & VIRTIO_STATUS_NEEDS_RESET) && !vd->paused;
}
/* Interrupt the driver for queue q (after vq_needs_notify said so). */
void virtio_pci_queue_interrupt(struct virtio_dev *vd, unsigned q);
/* A queue reported a malformed ring: set NEEDS_RESET and raise a
 * configuration-change interrupt. */
void virtio_pci_queue_broken(struct virtio_dev *vd, unsigned q, int err);

/* Serve every chain the driver made available on queue q, one at a time in
 * c (the device's scratch chain): handle returns the bytes it wrote into
 * the chain's writable buffers and the chain goes back with that length.
 * While it serves, the driver is asked not to kick (it adds chains without
 * an exit, as QEMU and kvmtool ask); at the end kicks are wanted again and
 * the ring is looked at once more, so no chain waits for a kick that never
 * comes. Then a malformed ring breaks the queue (NEEDS_RESET), or the
 * driver is interrupted if it asked to be. vd->lock held. */
typedef uint32_t virtio_chain_fn(struct virtio_dev *vd, struct vq_chain *c);

/* The same, while rl (NULL: none) has tokens: the nanoseconds until it
 * has again when it ran out (the chains left wait for the caller to serve
 * again then; the driver is not asked to kick meanwhile), else 0. */
static inline uint64_t virtio_pci_queue_serve_limited(struct virtio_dev *vd, unsigned q, struct vq_chain *c,
						      virtio_chain_fn *handle, struct rate_limiter *rl)
{
	struct vq *vq = &vd->q[q].vq;
	uint64_t wait = 0;
	int r;

	vq_set_notify(vq, false);
	for (;;) {
		if (rl && (wait = rl_wait_ns(rl))) {
			r = 0;
			break;
		}
		r = vq_pop_serving(vq, c);
		if (r <= 0 || (r = vq_push_chain(vq, c, handle(vd, c))) < 0)
			break;
	}
	if (r < 0)
		virtio_pci_queue_broken(vd, q, r);
	else if (vq_needs_notify(vq))
		virtio_pci_queue_interrupt(vd, q);
	return wait;
}

static inline void virtio_pci_queue_serve(struct virtio_dev *vd, unsigned q, struct vq_chain *c,
					  virtio_chain_fn *handle)
{
	virtio_pci_queue_serve_limited(vd, q, c, handle, NULL);
}

/* Serve every chain the driver made available and wait until the device
 * has nothing in flight (ops->drain; immediate for a device that serves
 * kicks in the caller's thread). vd->lock not held. */
void virtio_device_drain(struct virtio_dev *vd);

/* Pause: what the device has in flight completes, then it takes nothing
 * from the guest's queues (kicks wait) and writes nothing into guest
 * memory until resumed, when every queue is served once (the kicks that
 * waited). vd->lock not held. */
void virtio_device_pause(struct virtio_dev *vd, bool pause);

/* ops->handover, where the device has one (else 0). */
int virtio_device_handover(struct virtio_dev *vd, bool give, char *err, size_t len);

/* Tear down a device made by one of the create functions in
 * virtio/devices.h: the transport, then the device's own destroy. */
void virtio_device_destroy(struct virtio_dev *vd);

#endif
