/* For the device fuzzers (fuzz_blk.c, fuzz_net.c): CHECK, the virtio PCI
 * transport replaced by stubs, so a harness drives a device's ops directly
 * and sets its queues up itself (broken_calls counts the rings the device
 * reported malformed; like the real transport, a report sets NEEDS_RESET),
 * and the input template the fuzzed bytes are XORed onto: HDR bytes of
 * harness parameters, then MEM_SIZE bytes of guest RAM at MEM_GPA, which the
 * harness defines before including this, once. */
#ifndef TARN_FUZZ_VIRTIO_STUB_H
#define TARN_FUZZ_VIRTIO_STUB_H

#include <pthread.h>
#include <string.h>

#include "virtio/virtio_pci.h"

#define CHECK(x)                                                              \
	do {                                                                  \
		if (!(x))                                                     \
			__builtin_trap();                                     \
	} while (0)

static int broken_calls;

int virtio_pci_init(struct virtio_dev *vd, struct pci_root *root, const struct guest_mem *gm,
		    const struct virtio_dev_ops *ops, void *opaque)
{
	memset(vd, 0, sizeof(*vd));
	vd->ops = ops;
	vd->opaque = opaque;
	vd->gm = gm;
	pthread_mutex_init(&vd->lock, NULL);
	return 0;
}

void virtio_pci_queue_interrupt(struct virtio_dev *vd, unsigned q)
{
	CHECK(q < vd->ops->num_queues);
}

void virtio_pci_queue_broken(struct virtio_dev *vd, unsigned q, int err)
{
	CHECK(q < vd->ops->num_queues && err < 0);
	CHECK(vd->q[q].vq.broken);
	vd->status |= VIRTIO_STATUS_NEEDS_RESET;
	broken_calls++;
}

/* The template: put() writes at a RAM offset, put_desc() descriptor i of
 * the table at RAM offset table, its buffer at RAM offset gpa_off. */
static uint8_t tmpl[HDR + MEM_SIZE];

static void put(uint64_t off, const void *v, size_t n)
{
	memcpy(tmpl + HDR + off, v, n);
}

static void put_desc(uint64_t table, unsigned i, uint64_t gpa_off, uint32_t len, uint16_t flags, uint16_t next)
{
	uint64_t addr = MEM_GPA + gpa_off;

	put(table + 16 * i, &addr, 8);
	put(table + 16 * i + 8, &len, 4);
	put(table + 16 * i + 12, &flags, 2);
	put(table + 16 * i + 14, &next, 2);
}

#endif
