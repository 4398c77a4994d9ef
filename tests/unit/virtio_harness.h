/* What the virtio unit tests share: a fake VM (fake_vm.h: fake guest RAM, a
 * PCI root, an event loop if asked) whose services record MSIs and INTx levels, a
 * guest-style driver for the modern PCI transport (config space through
 * the PCI root, BAR 0 through the MMIO bus), and split rings in fake guest
 * memory. Include after unit.h. Devices are addressed by PCI slot (the
 * first device created sits in slot 1), rings by guest address: the
 * descriptor table there, the avail ring at +VH_AVAIL, the used ring at
 * +VH_USED. */
#ifndef TARN_VIRTIO_HARNESS_H
#define TARN_VIRTIO_HARNESS_H

#include <stdbool.h>
#include <string.h>
#include <sys/epoll.h>

#include "core/evloop.h"
#include "fake_vm.h"
#include "pci/pci.h"
#include "virtio/virtio_pci.h"

#define VH_AVAIL 0x400
#define VH_USED 0x800

/* What the fake backend saw since vh_vm_init. */
static struct {
	int n;		   /* MSIs signalled */
	uint32_t data[16]; /* the first ones' data */
	int gsi_level[24]; /* each line's last level */
	int raised;	   /* INTx assertions, all lines */
} vh_rec;

static inline int vh_fake_msi(const struct devctx *c, uint64_t addr, uint32_t data)
{
	if (vh_rec.n < 16)
		vh_rec.data[vh_rec.n] = data;
	vh_rec.n++;
	return 0;
}

static inline int vh_fake_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	if (gsi < 24)
		vh_rec.gsi_level[gsi] = level;
	vh_rec.raised += level;
	return 0;
}

static const struct devctx_ops vh_fake_ops = {
	.irq_line = vh_fake_irq_line, .signal_msi = vh_fake_msi, .request_stop = fake_vm_stop,
};

/* A VM on the fake backend with ram as its memory at 0, root as its PCI
 * bus and, unless loop is NULL, loop as its event loop. 0 or -1. */
static inline int vh_vm_init(struct fake_vm *vm, struct pci_root *root, struct evloop *loop, void *ram, uint64_t size)
{
	memset(&vh_rec, 0, sizeof(vh_rec));
	fake_vm_init(vm, &vh_fake_ops);
	if (gm_init_fake(&vm->mem, 0, ram, size) || pci_root_init(root, &vm->ctx))
		return -1;
	vm->ctx.pci = root;
	if (loop) {
		if (evloop_init(loop))
			return -1;
		vm->ctx.loop = loop;
	}
	return 0;
}

/* After the devices are destroyed. */
static inline void vh_vm_destroy(struct fake_vm *vm)
{
	if (vm->ctx.loop)
		evloop_destroy(vm->ctx.loop);
	pci_root_destroy(vm->ctx.pci);
	fake_vm_destroy(vm);
}

/* One round of the event loop: wait up to ms, dispatch as evloop_run does.
 * Returns the number of events dispatched. */
static inline int vh_loop_once(struct fake_vm *vm, int ms)
{
	struct epoll_event ev[16];
	int n = epoll_wait(vm->ctx.loop->epfd, ev, 16, ms);

	for (int i = 0; i < n; i++) {
		struct evloop_handler *h = ev[i].data.ptr;

		if (h && h->in_use)
			h->cb(h->opaque, ev[i].events);
	}
	return n < 0 ? 0 : n;
}

/* ---- the transport, as a driver sees it ---- */

static inline uint32_t vh_cfg_rd(struct fake_vm *vm, unsigned slot, unsigned reg, unsigned len)
{
	return pci_config_read(vm->ctx.pci, slot, 0, reg, len);
}

static inline void vh_cfg_wr(struct fake_vm *vm, unsigned slot, unsigned reg, unsigned len, uint32_t v)
{
	pci_config_write(vm->ctx.pci, slot, 0, reg, len, v);
}

/* BAR n's address (64-bit BARs take two registers). */
static inline uint64_t vh_bar(struct fake_vm *vm, unsigned slot, int n)
{
	uint64_t lo = vh_cfg_rd(vm, slot, PCI_BAR0 + 4 * (unsigned)n, 4);

	if ((lo & 6) == 4)
		lo |= (uint64_t)vh_cfg_rd(vm, slot, PCI_BAR0 + 4 * (unsigned)n + 4, 4) << 32;
	return lo & ~0xfULL;
}

/* BAR 0 at off. */
static inline uint64_t vh_rd(struct fake_vm *vm, unsigned slot, uint64_t off, unsigned len)
{
	uint64_t v = 0;

	bus_access(&vm->mmio, vh_bar(vm, slot, 0) + off, &v, len, false);
	return v;
}

static inline void vh_wr(struct fake_vm *vm, unsigned slot, uint64_t off, unsigned len, uint64_t v)
{
	bus_access(&vm->mmio, vh_bar(vm, slot, 0) + off, &v, len, true);
}

static inline uint8_t vh_status(struct fake_vm *vm, unsigned slot)
{
	return (uint8_t)vh_rd(vm, slot, VIRTIO_COMMON_STATUS, 1);
}

/* The device's 64 feature bits. */
static inline uint64_t vh_offered(struct fake_vm *vm, unsigned slot)
{
	vh_wr(vm, slot, VIRTIO_COMMON_DFSELECT, 4, 0);
	uint64_t lo = vh_rd(vm, slot, VIRTIO_COMMON_DF, 4);

	vh_wr(vm, slot, VIRTIO_COMMON_DFSELECT, 4, 1);
	return lo | vh_rd(vm, slot, VIRTIO_COMMON_DF, 4) << 32;
}

/* Reset, ACKNOWLEDGE, DRIVER, write features (low word, then the high
 * word: GFSELECT is left at 1), FEATURES_OK. The caller checks whether
 * FEATURES_OK stuck. */
static inline void vh_negotiate(struct fake_vm *vm, unsigned slot, uint64_t features)
{
	vh_wr(vm, slot, VIRTIO_COMMON_STATUS, 1, 0);
	vh_wr(vm, slot, VIRTIO_COMMON_STATUS, 1, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	for (unsigned w = 0; w < 2; w++) {
		vh_wr(vm, slot, VIRTIO_COMMON_GFSELECT, 4, w);
		vh_wr(vm, slot, VIRTIO_COMMON_GF, 4, (uint32_t)(features >> (32 * w)));
	}
	vh_wr(vm, slot, VIRTIO_COMMON_STATUS, 1,
	      VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
}

static inline void vh_wr64(struct fake_vm *vm, unsigned slot, uint64_t off, uint64_t v)
{
	vh_wr(vm, slot, off, 4, (uint32_t)v);
	vh_wr(vm, slot, off + 4, 4, v >> 32);
}

/* Set up and enable queue q: size entries, rings at ring, MSI-X vector
 * (VIRTIO_MSI_NO_VECTOR for none). */
static inline void vh_queue(struct fake_vm *vm, unsigned slot, unsigned q, unsigned size, uint64_t ring, uint16_t vector)
{
	vh_wr(vm, slot, VIRTIO_COMMON_Q_SELECT, 2, q);
	vh_wr(vm, slot, VIRTIO_COMMON_Q_SIZE, 2, size);
	vh_wr(vm, slot, VIRTIO_COMMON_Q_MSIX, 2, vector);
	vh_wr64(vm, slot, VIRTIO_COMMON_Q_DESC, ring);
	vh_wr64(vm, slot, VIRTIO_COMMON_Q_DRIVER, ring + VH_AVAIL);
	vh_wr64(vm, slot, VIRTIO_COMMON_Q_DEVICE, ring + VH_USED);
	vh_wr(vm, slot, VIRTIO_COMMON_Q_ENABLE, 2, 1);
}

static inline void vh_driver_ok(struct fake_vm *vm, unsigned slot)
{
	vh_wr(vm, slot, VIRTIO_COMMON_STATUS, 1, vh_status(vm, slot) | VIRTIO_STATUS_DRIVER_OK);
}

/* Kick queue q at the notify address its queue_notify_off gives. */
static inline void vh_notify(struct fake_vm *vm, unsigned slot, unsigned q)
{
	vh_wr(vm, slot, VIRTIO_COMMON_Q_SELECT, 2, q);
	vh_wr(vm, slot, VIRTIO_PCI_NOTIFY_OFF + VIRTIO_PCI_NOTIFY_MULT * vh_rd(vm, slot, VIRTIO_COMMON_Q_NOFF, 2), 2, q);
}

static inline bool vh_all_zero(const uint8_t *p, size_t n)
{
	for (size_t k = 0; k < n; k++)
		if (p[k])
			return false;
	return true;
}

/* ---- split rings in fake guest memory ---- */

static inline uint8_t *vh_ram(struct fake_vm *vm, uint64_t gpa, uint64_t len)
{
	uint8_t *p = gm_ptr(&vm->mem, gpa, len);

	assert_non_null(p);
	return p;
}

/* Descriptor d of the table at gpa table (a ring or an indirect table). */
static inline void vh_desc(struct fake_vm *vm, uint64_t table, unsigned d, uint64_t addr, uint32_t len, uint16_t flags,
		    uint16_t next)
{
	uint8_t *p = vh_ram(vm, table + 16 * (uint64_t)d, 16);

	memcpy(p, &addr, 8);
	memcpy(p + 8, &len, 4);
	memcpy(p + 12, &flags, 2);
	memcpy(p + 14, &next, 2);
}

static inline uint16_t vh_avail_idx(struct fake_vm *vm, uint64_t ring)
{
	uint16_t v;

	memcpy(&v, vh_ram(vm, ring + VH_AVAIL + 2, 2), 2);
	return v;
}

static inline void vh_set_avail_idx(struct fake_vm *vm, uint64_t ring, uint16_t idx)
{
	memcpy(vh_ram(vm, ring + VH_AVAIL + 2, 2), &idx, 2);
}

/* Put head on the avail ring (qsize entries) and publish it. */
static inline void vh_avail(struct fake_vm *vm, uint64_t ring, unsigned qsize, uint16_t head)
{
	uint16_t idx = vh_avail_idx(vm, ring);

	memcpy(vh_ram(vm, ring + VH_AVAIL + 4 + 2 * (uint64_t)(idx % qsize), 2), &head, 2);
	vh_set_avail_idx(vm, ring, (uint16_t)(idx + 1));
}

static inline uint16_t vh_used_idx(struct fake_vm *vm, uint64_t ring)
{
	uint16_t v;

	memcpy(&v, vh_ram(vm, ring + VH_USED + 2, 2), 2);
	return v;
}

/* Used element n (mod qsize): its id and its written length. */
static inline uint32_t vh_used_id(struct fake_vm *vm, uint64_t ring, unsigned qsize, unsigned n)
{
	uint32_t v;

	memcpy(&v, vh_ram(vm, ring + VH_USED + 4 + 8 * (uint64_t)(n % qsize), 4), 4);
	return v;
}

static inline uint32_t vh_used_len(struct fake_vm *vm, uint64_t ring, unsigned qsize, unsigned n)
{
	uint32_t v;

	memcpy(&v, vh_ram(vm, ring + VH_USED + 4 + 8 * (uint64_t)(n % qsize) + 4, 4), 4);
	return v;
}

#endif
