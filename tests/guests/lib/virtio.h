/* A minimal virtio 1.x driver for micro-guests: the modern PCI transport
 * (virtio spec 4.1) found by scanning bus 0 through CF8/CFC, its vendor
 * capabilities walked to the common, notify, ISR and device structures,
 * VERSION_1 negotiated, and split virtqueues (spec 2.7) in guest memory,
 * one request in flight at a time, completions polled from the used ring.
 *
 * It trusts nothing the tests do: the rings are plain memory, so a test may
 * write any descriptor, avail entry or index itself (that is how the hostile
 * tests build their malformed queues) and use virtq_publish/virtq_kick.
 *
 * The first part is shared with the host (runner.c): the hostile cases of
 * g_virtio_hostile.c, which the host maps to the error it expects tarn to
 * log for each, and the bytes of its disk. */
#ifndef TARN_GUEST_VIRTIO_H
#define TARN_GUEST_VIRTIO_H

#include <stdint.h>

/* g_virtio_hostile.c, in order: one SYNC each, args[0] = the case. */
enum hostile_case {
	HOSTILE_LOOP,		/* a chain whose next points back */
	HOSTILE_NEXT,		/* next index == queue size */
	HOSTILE_HEAD,		/* head index from the avail ring == queue size */
	HOSTILE_AVAIL_IDX,	/* avail->idx jumps size + 1 ahead */
	HOSTILE_NESTED,		/* an indirect table inside an indirect table */
	HOSTILE_INDIRECT_LEN,	/* indirect table of 20 bytes */
	HOSTILE_QUEUE_SIZE3,	/* queue size 3 at enable */
	/* these four give the same error, so last: tarn's log rate limit (a
	 * burst of 10) drops the eleventh warning, and the host checks that */
	HOSTILE_BEYOND_RAM,	/* buffer at 4 GiB, past the guest's RAM */
	HOSTILE_MMIO,		/* buffer on the device's own BAR */
	HOSTILE_WRAP,		/* addr + len wraps 2^64 */
	HOSTILE_HUGE_LEN,	/* len 0xffffffff */
	/* legal: no NEEDS_RESET, the queue keeps working */
	HOSTILE_ZERO_LEN,	/* zero-length buffers, one at an address past RAM */
	HOSTILE_NOTIFY,		/* notify queues never enabled or not there */
	HOSTILE_OFFSETS,	/* writes past the common config and into gaps */
	HOSTILE_NR_CASES,
	/* Then two more SYNCs: at HOSTILE_NR_CASES the host starts a new
	 * window of tarn's log rate limiter, and HOSTILE_AGAIN is
	 * HOSTILE_LOOP once more: warned about after the count of the
	 * warnings the burst dropped. */
	HOSTILE_AGAIN,
};

/* g_virtio_hostile's disk: 64 sectors; the host fills sector 0 and the
 * guest writes sector n + 1 after case n (HOSTILE_NR_CASES + 1 after
 * HOSTILE_AGAIN), all with these bytes. */
#define HOSTILE_DISK_SECTORS 64
#define HOSTILE_DISK_BYTE(sector, i) ((uint8_t)((sector) * 31u + (i) * 7u + 1u))

#ifndef TARN_HOST
#include "lib/guest.h"

#define VIRTIO_VENDOR 0x1af4
#define VIRTIO_DEVICE_BASE 0x1040
#define VIRTIO_ID_BLOCK 2
#define VIRTIO_ID_RNG 4

#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_VERSION_1 32

#define VIRTIO_ACKNOWLEDGE 1
#define VIRTIO_DRIVER 2
#define VIRTIO_DRIVER_OK 4
#define VIRTIO_FEATURES_OK 8
#define VIRTIO_NEEDS_RESET 0x40
#define VIRTIO_NO_VECTOR 0xffff

/* Common configuration (spec 4.1.4.3) */
#define VCOMMON_DFSELECT 0x00
#define VCOMMON_DF 0x04
#define VCOMMON_GFSELECT 0x08
#define VCOMMON_GF 0x0c
#define VCOMMON_MSIX 0x10
#define VCOMMON_NUMQ 0x12
#define VCOMMON_STATUS 0x14
#define VCOMMON_Q_SELECT 0x16
#define VCOMMON_Q_SIZE 0x18
#define VCOMMON_Q_MSIX 0x1a
#define VCOMMON_Q_ENABLE 0x1c
#define VCOMMON_Q_NOFF 0x1e
#define VCOMMON_Q_DESC 0x20
#define VCOMMON_Q_DRIVER 0x28
#define VCOMMON_Q_DEVICE 0x30

#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4

/* Split virtqueue layout (spec 2.7.5, 2.7.6, 2.7.8) */
struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};
_Static_assert(sizeof(struct virtq_desc) == 16, "spec 2.7.5");

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

/* Ring memory for a queue of up to VIRTQ_MAX entries, in one page:
 * descriptors at 0, avail ring at 1024, used ring at 2048. */
#define VIRTQ_MAX 64
#define VIRTQ_MEM_SIZE 4096

struct virtio_dev {
	unsigned slot;
	uint64_t bar0;	  /* where the capabilities point (BAR of the common cfg) */
	uint64_t common, isr, device, notify;
	uint32_t notify_mult;
	uint64_t features; /* negotiated */
};

struct virtq {
	struct virtio_dev *dev;
	uint16_t index, size;
	uint64_t notify_addr;
	volatile struct virtq_desc *desc;
	volatile uint16_t *avail;		/* flags, idx, ring[size] */
	volatile uint16_t *used;		/* flags, idx, then the elements */
	volatile struct virtq_used_elem *used_ring;
	uint16_t avail_idx;			/* our next avail->idx */
	uint16_t last_used;			/* used->idx we consumed up to */
};

/* A buffer of a request: gpa, length, device-writable or not. */
struct vbuf {
	uint64_t addr;
	uint32_t len;
	int writable;
};

/* ---- PCI configuration space through CF8/CFC (bus 0, function 0) ---- */

static inline uint32_t pci_cfg_read32(unsigned slot, unsigned reg)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	return inl(0xcfc);
}

static inline uint8_t pci_cfg_read8(unsigned slot, unsigned reg)
{
	return (uint8_t)(pci_cfg_read32(slot, reg) >> (8 * (reg & 3)));
}

static inline void pci_cfg_write32(unsigned slot, unsigned reg, uint32_t v)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	outl(0xcfc, v);
}

/* Offset of the capability with this id after `from` (0: from the start), or 0. */
static inline unsigned pci_next_cap(unsigned slot, unsigned from, uint8_t id)
{
	unsigned cap = from ? pci_cfg_read8(slot, from + 1) : pci_cfg_read8(slot, 0x34);

	for (int n = 0; cap && n < 48; n++, cap = pci_cfg_read8(slot, cap + 1))
		if (pci_cfg_read8(slot, cap) == id)
			return cap;
	return 0;
}

static inline uint64_t pci_bar_addr(unsigned slot, unsigned bar)
{
	uint32_t lo = pci_cfg_read32(slot, 0x10 + 4 * bar);
	uint64_t hi = (lo & 6) == 4 ? pci_cfg_read32(slot, 0x14 + 4 * bar) : 0;

	return hi << 32 | (lo & ~0xfu);
}

/* ---- the transport ---- */

static inline uint8_t virtio_status(const struct virtio_dev *d)
{
	return mmio_read8(d->common + VCOMMON_STATUS);
}

static inline void virtio_set_status(const struct virtio_dev *d, uint8_t s)
{
	mmio_write8(d->common + VCOMMON_STATUS, s);
}

/* Writing 0 resets; the device reports 0 once the reset is done (spec 4.1.4.3.2). */
static inline void virtio_reset(const struct virtio_dev *d)
{
	virtio_set_status(d, 0);
	for (int i = 0; i < 1000 && virtio_status(d); i++)
		pause();
	GUEST_ASSERT_EQ(virtio_status(d), 0);
}

/* Find the nth (from 0) virtio device of this type on bus 0, switch on its
 * memory decoding and bus mastering, and locate its structures. */
static inline void virtio_find(uint16_t type, unsigned nth, struct virtio_dev *d)
{
	memset(d, 0, sizeof(*d));
	for (unsigned slot = 0; slot < 32; slot++) {
		if (pci_cfg_read32(slot, 0) != ((uint32_t)(VIRTIO_DEVICE_BASE + type) << 16 | VIRTIO_VENDOR))
			continue;
		if (nth--)
			continue;
		d->slot = slot;
		pci_cfg_write32(slot, 0x04, pci_cfg_read32(slot, 0x04) | 0x6); /* memory, bus master */
		for (unsigned cap = pci_next_cap(slot, 0, 0x09); cap; cap = pci_next_cap(slot, cap, 0x09)) {
			uint8_t cfg_type = pci_cfg_read8(slot, cap + 3);
			uint64_t a = pci_bar_addr(slot, pci_cfg_read8(slot, cap + 4)) + pci_cfg_read32(slot, cap + 8);

			if (cfg_type == 1) {
				d->common = a;
				d->bar0 = a - pci_cfg_read32(slot, cap + 8);
			} else if (cfg_type == 2) {
				d->notify = a;
				d->notify_mult = pci_cfg_read32(slot, cap + 16);
			} else if (cfg_type == 3) {
				d->isr = a;
			} else if (cfg_type == 4) {
				d->device = a;
			}
		}
		GUEST_ASSERT(d->common && d->notify && d->isr);
		return;
	}
	GUEST_ASSERT(!"no such virtio device on bus 0");
}

/* Reset, then ACKNOWLEDGE, DRIVER, features (VERSION_1 and those of
 * `wanted` the device offers), FEATURES_OK. Returns the features. */
static inline uint64_t virtio_init(struct virtio_dev *d, uint64_t wanted)
{
	uint64_t offered, f;

	virtio_reset(d);
	virtio_set_status(d, VIRTIO_ACKNOWLEDGE);
	virtio_set_status(d, VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER);
	mmio_write32(d->common + VCOMMON_DFSELECT, 0);
	offered = mmio_read32(d->common + VCOMMON_DF);
	mmio_write32(d->common + VCOMMON_DFSELECT, 1);
	offered |= (uint64_t)mmio_read32(d->common + VCOMMON_DF) << 32;
	GUEST_ASSERT(offered & 1ULL << VIRTIO_F_VERSION_1);
	f = offered & (wanted | 1ULL << VIRTIO_F_VERSION_1);
	mmio_write32(d->common + VCOMMON_GFSELECT, 0);
	mmio_write32(d->common + VCOMMON_GF, (uint32_t)f);
	mmio_write32(d->common + VCOMMON_GFSELECT, 1);
	mmio_write32(d->common + VCOMMON_GF, (uint32_t)(f >> 32));
	virtio_set_status(d, VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER | VIRTIO_FEATURES_OK);
	GUEST_ASSERT_EQ(virtio_status(d), VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER | VIRTIO_FEATURES_OK);
	d->features = f;
	return f;
}

static inline void virtio_driver_ok(const struct virtio_dev *d)
{
	virtio_set_status(d, (uint8_t)(virtio_status(d) | VIRTIO_DRIVER_OK));
}

/* 64-bit registers as two 32-bit halves, low first, as Linux writes them. */
static inline void virtio_write64(uint64_t a, uint64_t v)
{
	mmio_write32(a, (uint32_t)v);
	mmio_write32(a + 4, (uint32_t)(v >> 32));
}

/* Set up and enable queue `index` with `size` entries (not checked: a test
 * may pass a bad one) in mem (VIRTQ_MEM_SIZE bytes, page-aligned), its
 * interrupts on MSI-X `vector` (VIRTIO_NO_VECTOR: none). */
static inline void virtq_setup(struct virtio_dev *d, struct virtq *q, uint16_t index, uint16_t size,
			       void *mem, uint16_t vector)
{
	uint64_t base = (uint64_t)(uintptr_t)mem;

	GUEST_ASSERT(size <= VIRTQ_MAX && !(base & 0xfff));
	memset(mem, 0, VIRTQ_MEM_SIZE);
	memset(q, 0, sizeof(*q));
	q->dev = d;
	q->index = index;
	q->size = size;
	q->desc = mem;
	q->avail = (volatile uint16_t *)(base + 1024);
	q->used = (volatile uint16_t *)(base + 2048);
	q->used_ring = (volatile struct virtq_used_elem *)(base + 2048 + 4);
	mmio_write16(d->common + VCOMMON_Q_SELECT, index);
	GUEST_ASSERT(mmio_read16(d->common + VCOMMON_Q_SIZE) >= size);
	mmio_write16(d->common + VCOMMON_Q_SIZE, size);
	mmio_write16(d->common + VCOMMON_Q_MSIX, vector);
	GUEST_ASSERT_EQ(mmio_read16(d->common + VCOMMON_Q_MSIX), vector);
	virtio_write64(d->common + VCOMMON_Q_DESC, base);
	virtio_write64(d->common + VCOMMON_Q_DRIVER, base + 1024);
	virtio_write64(d->common + VCOMMON_Q_DEVICE, base + 2048);
	q->notify_addr = d->notify + (uint64_t)mmio_read16(d->common + VCOMMON_Q_NOFF) * d->notify_mult;
	mmio_write16(d->common + VCOMMON_Q_ENABLE, 1);
}

static inline void virtq_set_desc(struct virtq *q, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
				  uint16_t next)
{
	q->desc[i].addr = addr;
	q->desc[i].len = len;
	q->desc[i].flags = flags;
	q->desc[i].next = next;
}

/* Offer the chain at head: the ring entry first, then (release: the
 * descriptors and the entry are visible before the index) avail->idx. */
static inline void virtq_publish(struct virtq *q, uint16_t head)
{
	q->avail[2 + q->avail_idx % q->size] = head;
	__asm__ volatile("" ::: "memory"); /* x86 keeps stores in order */
	q->avail[1] = ++q->avail_idx;
}

static inline void virtq_kick(const struct virtq *q)
{
	__asm__ volatile("mfence" ::: "memory"); /* avail->idx before the notify */
	mmio_write16(q->notify_addr, q->index);
}

static inline uint16_t virtq_used_idx(const struct virtq *q)
{
	return q->used[1];
}

/* The next used element within `spins` polls: 1 and *e, or 0 (*e all
 * ones) if none came. */
static inline int virtq_poll_for(struct virtq *q, struct virtq_used_elem *e, int spins)
{
	e->id = e->len = 0xffffffff;
	for (int i = 0; i < spins; i++) {
		if (virtq_used_idx(q) != q->last_used) {
			__asm__ volatile("" ::: "memory"); /* the index before the element */
			e->id = q->used_ring[q->last_used % q->size].id;
			e->len = q->used_ring[q->last_used % q->size].len;
			q->last_used++;
			return 1;
		}
		pause();
	}
	return 0;
}

/* A completion expected: it may come from a device thread (virtio-blk's
 * workers, a kick through an ioeventfd), so the wait is for time, not a
 * number of spins: up to 10^10 TSC ticks (3 to 10 s). A loaded host, the
 * nested bed above all, can leave that thread unscheduled for longer than
 * 100,000 spins took (it failed so once). */
static inline int virtq_poll(struct virtq *q, struct virtq_used_elem *e)
{
	uint64_t t0 = rdtsc();

	do {
		if (virtq_poll_for(q, e, 1000))
			return 1;
	} while (rdtsc() - t0 < 10000000000ULL);
	return 0;
}

/* One request: bufs as a chain in descriptors head, head+1, ... (mod
 * size), published, kicked, and its completion awaited and checked.
 * Returns used.len. */
static inline uint32_t virtq_request(struct virtq *q, uint16_t head, const struct vbuf *bufs, unsigned n)
{
	struct virtq_used_elem e;

	GUEST_ASSERT(n && n <= q->size);
	for (unsigned i = 0; i < n; i++) {
		uint16_t d = (uint16_t)((head + i) % q->size);

		virtq_set_desc(q, d, bufs[i].addr, bufs[i].len,
			       (uint16_t)((bufs[i].writable ? VIRTQ_DESC_F_WRITE : 0) |
					  (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			       (uint16_t)((d + 1) % q->size));
	}
	virtq_publish(q, head);
	virtq_kick(q);
	GUEST_ASSERT(virtq_poll(q, &e));
	GUEST_ASSERT_EQ(e.id, head);
	GUEST_ASSERT_EQ(virtq_used_idx(q), q->avail_idx);
	return e.len;
}

/* ---- virtio-blk (spec 5.2.6) ---- */

#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1

struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};
_Static_assert(sizeof(struct virtio_blk_req_hdr) == 16, "spec 5.2.6");

/* Read (VIRTIO_BLK_T_IN) or write (OUT) len bytes at sector: header,
 * data, status byte in one chain. Checks used.len; returns the status. */
static inline uint8_t virtio_blk_rw(struct virtq *q, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	struct virtio_blk_req_hdr hdr = { type, 0, sector };
	uint8_t status = 0xff;
	const struct vbuf b[3] = {
		{ (uint64_t)(uintptr_t)&hdr, sizeof(hdr), 0 },
		{ (uint64_t)(uintptr_t)data, len, type == VIRTIO_BLK_T_IN },
		{ (uint64_t)(uintptr_t)&status, 1, 1 },
	};

	GUEST_ASSERT_EQ(virtq_request(q, q->avail_idx % q->size, b, 3),
			(type == VIRTIO_BLK_T_IN ? len : 0) + 1);
	return *(volatile uint8_t *)&status;
}

/* Program MSI-X table entry `entry` to deliver `vector` to this CPU and
 * enable MSI-X (spec: PCI 3.0 6.8.2). */
static inline void virtio_msix_enable(const struct virtio_dev *d, unsigned entry, uint8_t vector)
{
	unsigned cap = pci_next_cap(d->slot, 0, 0x11);
	uint32_t tbl;
	uint64_t e;

	GUEST_ASSERT(cap);
	tbl = pci_cfg_read32(d->slot, cap + 4);
	e = pci_bar_addr(d->slot, tbl & 7) + (tbl & ~7u) + 16ULL * entry;
	mmio_write32(e + 0, 0xfee00000u | guest_apic_id() << 12);
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, vector); /* fixed, edge */
	mmio_write32(e + 12, 0);     /* unmasked */
	pci_cfg_write32(d->slot, cap, pci_cfg_read32(d->slot, cap) | 0x80000000u);
}

#endif /* !TARN_HOST */
#endif
