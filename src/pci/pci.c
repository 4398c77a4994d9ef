/* The PCI root complex: see pci.h for the layout, routing and locking. */
#include "pci/pci.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "bus/bus.h"
#include "core/devctx.h"

#define PCI_STATUS_RW1C 0xf900 /* parity, target/master aborts, SERR (PCI 3.0 §6.2.3) */
#define PCI_COMMAND_RW 0x0547  /* IO, MEM, MASTER, PARITY, SERR, INTX_DISABLE */

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static bool is_pow2(uint64_t v)
{
	return v && !(v & (v - 1));
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }

static uint16_t command(const struct pci_device *d)
{
	return (uint16_t)(d->cfg[PCI_COMMAND] | d->cfg[PCI_COMMAND + 1] << 8);
}

/* ---- header set-up ---- */

static void init_header(struct pci_device *d, const struct pci_device_info *info)
{
	wr16(d->cfg + PCI_VENDOR_ID, info->vendor);
	wr16(d->cfg + PCI_DEVICE_ID, info->device);
	wr32(d->cfg + PCI_CLASS_REVISION, info->class_code << 8 | info->revision);
	d->cfg[PCI_HEADER_TYPE] = 0; /* type 0, single function */
	wr16(d->cfg + PCI_SUBSYSTEM_VENDOR_ID, info->subsys_vendor);
	wr16(d->cfg + PCI_SUBSYSTEM_ID, info->subsys_id);
	d->cfg[PCI_INTERRUPT_PIN] = info->irq_pin;
	wr16(d->wmask + PCI_COMMAND, PCI_COMMAND_RW);
	wr16(d->w1cmask + PCI_STATUS, PCI_STATUS_RW1C);
	d->wmask[0x0c] = 0xff; /* cache line size */
	d->wmask[0x0d] = 0xff; /* latency timer */
	d->wmask[PCI_INTERRUPT_LINE] = 0xff;
	/* Expansion ROM BAR (0x30) stays read-only 0: no ROM. */
	d->cap_end = 0x40;
}

unsigned pci_add_capability(struct pci_device *d, uint8_t id, const void *body, unsigned len)
{
	unsigned off = (unsigned)align_up(d->cap_end, 4);

	if (off + 2 + len > 256)
		return 0;
	d->cfg[off] = id;
	d->cfg[off + 1] = 0;
	memcpy(d->cfg + off + 2, body, len);
	if (d->cap_last)
		d->cfg[d->cap_last + 1] = (uint8_t)off;
	else
		d->cfg[PCI_CAPABILITY_LIST] = (uint8_t)off;
	d->cfg[PCI_STATUS] |= PCI_STATUS_CAP_LIST;
	d->cap_last = (uint8_t)off;
	d->cap_end = (uint8_t)(off + 2 + len);
	return off;
}

/* ---- BARs ---- */

/* Recompute where each BAR decodes from the config bytes and the command
 * register (root lock held for writing). */
static void update_bars(struct pci_device *d)
{
	uint16_t cmd = command(d);

	for (int i = 0; i < 6; i++) {
		const struct pci_bar_info *b = &d->bars[i];
		uint32_t lo = rd32(d->cfg + PCI_BAR0 + 4 * i);
		uint64_t addr;
		bool on;

		switch (b->type) {
		case PCI_BAR_MEM32:
			addr = lo & ~0xfu;
			on = cmd & PCI_COMMAND_MEMORY;
			break;
		case PCI_BAR_MEM64:
			addr = (lo & ~0xfull) | (uint64_t)rd32(d->cfg + PCI_BAR0 + 4 * (i + 1)) << 32;
			on = cmd & PCI_COMMAND_MEMORY;
			break;
		case PCI_BAR_IO:
			addr = lo & 0xfffc;
			on = cmd & PCI_COMMAND_IO;
			break;
		default:
			addr = 0;
			on = false;
		}
		d->bar_addr[i] = addr;
		d->bar_on[i] = on && addr;
	}
}

static int setup_bar(struct pci_root *r, struct pci_device *d, int i, const struct pci_bar_info *b)
{
	uint8_t *c = d->cfg + PCI_BAR0 + 4 * i, *w = d->wmask + PCI_BAR0 + 4 * i;
	uint64_t addr;

	d->bars[i] = *b;
	if (b->type == PCI_BAR_IO) {
		if (!is_pow2(b->size) || b->size < 4 || b->size > 256)
			return -EINVAL;
		addr = align_up(r->io_next, b->size);
		if (addr + b->size > PCI_IO_BASE + PCI_IO_SIZE)
			return -ENOSPC;
		r->io_next = (uint32_t)(addr + b->size);
		wr32(c, (uint32_t)addr | 0x1);
		wr32(w, (uint32_t)~(b->size - 1) & 0xfffc);
		return 0;
	}
	if (!is_pow2(b->size) || b->size < 4096 || b->size > PCI_MMIO32_SIZE / 2)
		return -EINVAL;
	if (b->type == PCI_BAR_MEM64 && i == 5)
		return -EINVAL;
	addr = align_up(r->mmio_next, b->size);
	if (addr + b->size > PCI_MMIO32_BASE + PCI_MMIO32_SIZE)
		return -ENOSPC;
	r->mmio_next = addr + b->size;
	wr32(c, (uint32_t)addr | (b->type == PCI_BAR_MEM64 ? 0x4 : 0) | (b->prefetchable ? 0x8 : 0));
	wr32(w, (uint32_t)~(b->size - 1) & ~0xfu);
	if (b->type == PCI_BAR_MEM64)
		wr32(w + 4, (uint32_t)(~(b->size - 1) >> 32)); /* the high half: address bits */
	return 0;
}

/* ---- MSI-X ---- */

/* Send vector v's message: through its irqfd where the backend has them
 * (KVM: a write to an eventfd, no ioctl), else as one MSI (msix_lock held). */
static void msix_send(struct pci_device *d, unsigned v, uint64_t addr, uint32_t data)
{
	if (d->msix_irqfd && !dev_irqfd_send(d->root->ctx, &d->msix_irqfd[v], addr, data)) {
		d->msix_sent_irqfd++;
		return;
	}
	dev_signal_msi(d->root->ctx, addr, data);
	d->msix_sent_ioctl++;
}

/* Deliver vector v if it is pending and nothing masks it (msix_lock held). */
static void msix_flush(struct pci_device *d, unsigned v)
{
	const struct pci_msix_entry *e = &d->msix_table[v];

	if (!d->msix_enabled || d->msix_masked || (e->ctrl & PCI_MSIX_ENTRY_MASKED))
		return;
	if (!(d->msix_pba[v / 64] & (1ULL << (v % 64))))
		return;
	d->msix_pba[v / 64] &= ~(1ULL << (v % 64));
	msix_send(d, v, (uint64_t)e->addr_hi << 32 | e->addr_lo, e->data);
}

int pci_msix_notify(struct pci_device *d, unsigned v)
{
	int ret = 0;

	if (v >= d->msix_n)
		return -EINVAL;
	pthread_mutex_lock(&d->msix_lock);
	if (!d->msix_enabled) {
		ret = -ENOTSUP;
	} else {
		d->msix_pba[v / 64] |= 1ULL << (v % 64);
		msix_flush(d, v);
	}
	pthread_mutex_unlock(&d->msix_lock);
	return ret;
}

static void msix_control_written(struct pci_device *d)
{
	uint8_t hi = d->cfg[d->msix_cap + 3];

	pthread_mutex_lock(&d->msix_lock);
	d->msix_enabled = hi & (PCI_MSIX_FLAGS_ENABLE >> 8);
	d->msix_masked = hi & (PCI_MSIX_FLAGS_MASKALL >> 8);
	for (unsigned v = 0; v < d->msix_n; v++)
		msix_flush(d, v);
	pthread_mutex_unlock(&d->msix_lock);
}

/* Table and PBA accesses: dword or aligned qword (PCI 3.0 §6.8.2). */
static void msix_bar_access(struct pci_device *d, uint64_t off, void *data, unsigned len, bool wr)
{
	if ((len != 4 && len != 8) || (off & (len - 1)))
		return;
	pthread_mutex_lock(&d->msix_lock);
	for (unsigned k = 0; k < len; k += 4, off += 4) {
		uint32_t *p = NULL, v;

		memcpy(&v, (uint8_t *)data + k, 4);
		if (off < 16ULL * d->msix_n) {
			struct pci_msix_entry *e = &d->msix_table[off / 16];
			uint32_t *f[4] = { &e->addr_lo, &e->addr_hi, &e->data, &e->ctrl };

			p = f[(off % 16) / 4];
			if (wr) {
				*p = p == &e->ctrl ? (v & PCI_MSIX_ENTRY_MASKED) : v;
				msix_flush(d, (unsigned)(off / 16));
			}
		} else if (off >= d->msix_pba_off && off - d->msix_pba_off < 8ULL * ((d->msix_n + 63) / 64)) {
			uint64_t q = d->msix_pba[(off - d->msix_pba_off) / 8];

			v = (uint32_t)(q >> (((off - d->msix_pba_off) % 8) * 8)); /* read-only */
			if (!wr)
				memcpy((uint8_t *)data + k, &v, 4);
			continue;
		}
		if (!wr && p)
			memcpy((uint8_t *)data + k, p, 4);
		else if (!wr)
			memset((uint8_t *)data + k, 0, 4);
	}
	pthread_mutex_unlock(&d->msix_lock);
}

static int setup_msix(struct pci_root *r, struct pci_device *d, const struct pci_device_info *info)
{
	unsigned n = info->msix_vectors;
	uint8_t body[10];
	uint64_t size;
	int ret;

	if (n > 2048 || info->msix_bar < 0 || info->msix_bar > 5 || info->bars[info->msix_bar].type)
		return -EINVAL;
	if (info->msix_bar > 0 && info->bars[info->msix_bar - 1].type == PCI_BAR_MEM64)
		return -EINVAL;
	d->msix_n = n;
	d->msix_bar = info->msix_bar;
	d->msix_pba_off = (uint32_t)align_up(16ULL * n, 8);
	size = 4096;
	while (size < d->msix_pba_off + 8ULL * ((n + 63) / 64))
		size <<= 1;
	d->msix_table = calloc(n, sizeof(*d->msix_table));
	d->msix_pba = calloc((n + 63) / 64, 8);
	if (!d->msix_table || !d->msix_pba)
		return -ENOMEM;
	if (r->ctx->irqfd) {
		d->msix_irqfd = calloc(n, sizeof(*d->msix_irqfd));
		if (!d->msix_irqfd)
			return -ENOMEM;
		for (unsigned v = 0; v < n; v++)
			d->msix_irqfd[v] = (struct vm_irqfd){ .fd = -1, .gsi = -1 };
	}
	for (unsigned v = 0; v < n; v++)
		d->msix_table[v].ctrl = PCI_MSIX_ENTRY_MASKED; /* reset state: masked */
	ret = setup_bar(r, d, d->msix_bar, &(struct pci_bar_info){ PCI_BAR_MEM32, size, false });
	if (ret)
		return ret;
	wr16(body, (uint16_t)(n - 1));
	wr32(body + 2, (uint32_t)d->msix_bar);			  /* table at offset 0 */
	wr32(body + 6, d->msix_pba_off | (uint32_t)d->msix_bar); /* then the PBA */
	d->msix_cap = (uint8_t)pci_add_capability(d, PCI_CAP_ID_MSIX, body, sizeof(body));
	if (!d->msix_cap)
		return -ENOSPC;
	d->wmask[d->msix_cap + 3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
	return 0;
}

/* ---- INTx ---- */

unsigned pci_intx_gsi(int slot, unsigned pin)
{
	return PCI_INTX_GSI_BASE + (((unsigned)slot + pin - 1) & 3);
}

/* Bring the GSI in line with the device's state (intx_lock held). */
static void intx_update(struct pci_device *d)
{
	struct pci_root *r = d->root;
	bool want = d->intx_level && !d->intx_disabled;
	unsigned pin = d->cfg[PCI_INTERRUPT_PIN], idx, gsi;

	if (!pin || want == d->intx_driven)
		return;
	gsi = pci_intx_gsi(d->slot, pin);
	idx = gsi - PCI_INTX_GSI_BASE;
	d->intx_driven = want;
	if (want ? r->intx_count[idx]++ == 0 : --r->intx_count[idx] == 0)
		dev_irq_line(r->ctx, gsi, want);
}

void pci_set_irq(struct pci_device *d, bool level)
{
	pthread_mutex_lock(&d->root->intx_lock);
	__atomic_store_n(&d->intx_level, level, __ATOMIC_RELAXED);
	intx_update(d);
	pthread_mutex_unlock(&d->root->intx_lock);
}

/* ---- config space ---- */

static struct pci_device *lookup(struct pci_root *r, int slot, int fn)
{
	if (slot < 0 || slot >= PCI_MAX_SLOTS || fn != 0)
		return NULL;
	return r->slots[slot];
}

static bool overlaps(unsigned reg, unsigned len, unsigned start, unsigned end)
{
	return reg < end && start < reg + len;
}

uint32_t pci_config_read(struct pci_root *r, int slot, int fn, unsigned reg, unsigned len)
{
	uint32_t v = 0;
	struct pci_device *d;

	pthread_rwlock_rdlock(&r->lock);
	d = lookup(r, slot, fn);
	for (unsigned i = 0; i < len; i++) {
		unsigned o = reg + i;
		uint32_t b = 0xff;

		if (d && o < PCI_CFG_SIZE) {
			b = d->cfg[o];
			if (o == PCI_STATUS && __atomic_load_n(&d->intx_level, __ATOMIC_RELAXED))
				b |= PCI_STATUS_INTERRUPT;
		}
		v |= b << (8 * i);
	}
	pthread_rwlock_unlock(&r->lock);
	return v;
}

void pci_config_write(struct pci_root *r, int slot, int fn, unsigned reg, unsigned len, uint32_t val)
{
	struct pci_device *d;

	pthread_rwlock_wrlock(&r->lock);
	d = lookup(r, slot, fn);
	if (!d || reg >= PCI_CFG_SIZE) {
		pthread_rwlock_unlock(&r->lock);
		return;
	}
	if (len > PCI_CFG_SIZE - reg)
		len = PCI_CFG_SIZE - reg;
	for (unsigned i = 0; i < len; i++) {
		unsigned o = reg + i;
		uint8_t b = (uint8_t)(val >> (8 * i)), old = d->cfg[o];

		old &= (uint8_t)~(b & d->w1cmask[o]);
		d->cfg[o] = (uint8_t)((old & ~d->wmask[o]) | (b & d->wmask[o]));
	}
	if (overlaps(reg, len, PCI_COMMAND, PCI_COMMAND + 2) || overlaps(reg, len, PCI_BAR0, PCI_BAR0 + 24))
		update_bars(d);
	if (overlaps(reg, len, PCI_COMMAND, PCI_COMMAND + 2)) {
		pthread_mutex_lock(&r->intx_lock);
		d->intx_disabled = command(d) & PCI_COMMAND_INTX_DISABLE;
		intx_update(d);
		pthread_mutex_unlock(&r->intx_lock);
	}
	if (d->msix_cap && overlaps(reg, len, d->msix_cap + 2u, d->msix_cap + 4u))
		msix_control_written(d);
	if (d->ops && d->ops->config_written)
		d->ops->config_written(d->opaque, reg, len);
	pthread_rwlock_unlock(&r->lock);
}

/* ---- bus front-ends ---- */

static void cf8_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pci_root *r = opaque;
	uint32_t v = __atomic_load_n(&r->cf8, __ATOMIC_RELAXED);

	if (len == 4) /* only dword accesses reach CONFIG_ADDRESS */
		memcpy(data, &v, 4);
}

static void cf8_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pci_root *r = opaque;
	uint32_t v;

	if (len != 4)
		return;
	memcpy(&v, data, 4);
	__atomic_store_n(&r->cf8, v & 0x80fffffc, __ATOMIC_RELAXED);
}

/* CONFIG_ADDRESS: enable (31), bus (23:16), device (15:11), function
 * (10:8), dword register (7:2); the data port's byte lane adds off. */
static bool cfc_target(struct pci_root *r, uint64_t off, int *slot, int *fn, unsigned *reg)
{
	uint32_t a = __atomic_load_n(&r->cf8, __ATOMIC_RELAXED);

	if (!(a & 0x80000000u) || ((a >> 16) & 0xff) != 0)
		return false;
	*slot = (a >> 11) & 31;
	*fn = (a >> 8) & 7;
	*reg = (a & 0xfc) + (unsigned)off;
	return true;
}

static void cfc_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	int slot, fn;
	unsigned reg;
	uint32_t v;

	if (!cfc_target(opaque, off, &slot, &fn, &reg))
		return; /* all-ones */
	v = pci_config_read(opaque, slot, fn, reg, len);
	memcpy(data, &v, len);
}

static void cfc_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	int slot, fn;
	unsigned reg;
	uint32_t v = 0;

	if (!cfc_target(opaque, off, &slot, &fn, &reg))
		return;
	memcpy(&v, data, len);
	pci_config_write(opaque, slot, fn, reg, len, v);
}

/* ECAM offset: bus (27:20, only 0 here), device (19:15), function (14:12),
 * register (11:0). Qword accesses are split in two dwords. */
static void ecam_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	for (unsigned k = 0; k < len; k += 4) {
		unsigned n = len - k < 4 ? len - k : 4;
		uint64_t o = off + k;
		uint32_t v = pci_config_read(opaque, (int)(o >> 15) & 31, (int)(o >> 12) & 7,
					     (unsigned)(o & 0xfff), n);

		memcpy((uint8_t *)data + k, &v, n);
	}
}

static void ecam_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	for (unsigned k = 0; k < len; k += 4) {
		unsigned n = len - k < 4 ? len - k : 4;
		uint64_t o = off + k;
		uint32_t v = 0;

		memcpy(&v, (const uint8_t *)data + k, n);
		pci_config_write(opaque, (int)(o >> 15) & 31, (int)(o >> 12) & 7, (unsigned)(o & 0xfff), n, v);
	}
}

/* Find the BAR decoding [addr, addr+len) and forward the access. */
static void bar_dispatch(struct pci_root *r, bool io, uint64_t addr, void *data, unsigned len, bool wr)
{
	pthread_rwlock_rdlock(&r->lock);
	for (int s = 1; s < PCI_MAX_SLOTS; s++) {
		struct pci_device *d = r->slots[s];

		for (int i = 0; d && i < 6; i++) {
			uint64_t off = addr - d->bar_addr[i];

			if (!d->bar_on[i] || (d->bars[i].type == PCI_BAR_IO) != io || addr < d->bar_addr[i] ||
			    off >= d->bars[i].size || len > d->bars[i].size - off)
				continue;
			if (d->msix_n && i == d->msix_bar)
				msix_bar_access(d, off, data, len, wr);
			else if (wr && d->ops->bar_write)
				d->ops->bar_write(d->opaque, i, off, data, len);
			else if (!wr && d->ops->bar_read)
				d->ops->bar_read(d->opaque, i, off, data, len);
			pthread_rwlock_unlock(&r->lock);
			return;
		}
	}
	pthread_rwlock_unlock(&r->lock);
	pr_warn_ratelimited("pci: %s %s at %#llx (%u bytes): no BAR decodes it", wr ? "write" : "read",
			    io ? "port" : "mmio", (unsigned long long)addr, len);
}

static void mmio_win_read(void *o, uint64_t off, void *data, unsigned len)
{
	bar_dispatch(o, false, PCI_MMIO32_BASE + off, data, len, false);
}

static void mmio_win_write(void *o, uint64_t off, const void *data, unsigned len)
{
	bar_dispatch(o, false, PCI_MMIO32_BASE + off, (void *)data, len, true);
}

static void io_win_read(void *o, uint64_t off, void *data, unsigned len)
{
	bar_dispatch(o, true, PCI_IO_BASE + off, data, len, false);
}

static void io_win_write(void *o, uint64_t off, const void *data, unsigned len)
{
	bar_dispatch(o, true, PCI_IO_BASE + off, (void *)data, len, true);
}

static const struct bus_ops cf8_ops = { cf8_read, cf8_write };
static const struct bus_ops cfc_ops = { cfc_read, cfc_write };
static const struct bus_ops ecam_ops = { ecam_read, ecam_write };
static const struct bus_ops mmio_win_ops = { mmio_win_read, mmio_win_write };
static const struct bus_ops io_win_ops = { io_win_read, io_win_write };

/* ---- snapshots ---- */

/* A device's config space, INTx input and MSI-X table and PBA (root lock
 * held for reading). */
static void dev_save(struct pci_device *d, struct snap_buf *b)
{
	snap_put_bytes(b, d->cfg, sizeof(d->cfg));
	snap_put_u8(b, __atomic_load_n(&d->intx_level, __ATOMIC_RELAXED));
	snap_put_u32(b, d->msix_n);
	pthread_mutex_lock(&d->msix_lock);
	for (unsigned v = 0; v < d->msix_n; v++) {
		const struct pci_msix_entry *e = &d->msix_table[v];

		snap_put_u32(b, e->addr_lo);
		snap_put_u32(b, e->addr_hi);
		snap_put_u32(b, e->data);
		snap_put_u32(b, e->ctrl);
	}
	for (unsigned i = 0; i < (d->msix_n + 63) / 64; i++)
		snap_put_u64(b, d->msix_pba[i]);
	pthread_mutex_unlock(&d->msix_lock);
}

/* Check everything first: the bytes the guest cannot write must be this
 * tarn's (the same device, capabilities and BAR sizes), the MSI-X
 * entries' reserved bits clear; then apply it as a guest's writes would
 * take effect (BAR decoding, INTx, MSI-X control; config_written). Root
 * lock held for writing. */
static int dev_restore(struct pci_device *d, struct snap_cur *c, char *err, size_t len)
{
	uint8_t cfg[PCI_CFG_SIZE];
	struct pci_msix_entry *t = NULL;
	uint64_t pba[32] = { 0 };
	uint8_t level;
	uint32_t n;
	int ret = 0;

	snap_get_bytes(c, cfg, sizeof(cfg));
	level = snap_get_u8(c);
	n = snap_get_u32(c);
	if (c->short_read)
		return errorf(err, len, -EINVAL, "section too short");
	for (unsigned o = 0; o < PCI_CFG_SIZE; o++)
		if ((cfg[o] ^ d->cfg[o]) & ~(d->wmask[o] | d->w1cmask[o]))
			return errorf(err, len, -EINVAL, "config space byte %#x is %#x where this device has %#x", o,
				      cfg[o], d->cfg[o]);
	if (level > 1 || n != d->msix_n)
		return errorf(err, len, -EINVAL, "INTx level %u, %u MSI-X vectors (this device has %u)", level, n,
			      d->msix_n);
	if (n && !(t = calloc(n, sizeof(*t))))
		return errorf(err, len, -ENOMEM, "out of memory");
	for (unsigned v = 0; v < n; v++) {
		t[v].addr_lo = snap_get_u32(c);
		t[v].addr_hi = snap_get_u32(c);
		t[v].data = snap_get_u32(c);
		t[v].ctrl = snap_get_u32(c);
		if (t[v].ctrl & ~PCI_MSIX_ENTRY_MASKED)
			ret = errorf(err, len, -EINVAL, "MSI-X vector %u: control %#x sets reserved bits", v, t[v].ctrl);
	}
	for (unsigned i = 0; i < (n + 63) / 64; i++)
		pba[i] = snap_get_u64(c);
	if (n % 64 && pba[(n - 1) / 64] >> (n % 64))
		ret = errorf(err, len, -EINVAL, "MSI-X pending bits beyond the table");
	if (ret || c->short_read) {
		free(t);
		return ret ? ret : errorf(err, len, -EINVAL, "section too short");
	}
	memcpy(d->cfg, cfg, sizeof(cfg));
	update_bars(d);
	pthread_mutex_lock(&d->root->intx_lock);
	d->intx_disabled = command(d) & PCI_COMMAND_INTX_DISABLE;
	__atomic_store_n(&d->intx_level, level, __ATOMIC_RELAXED);
	intx_update(d);
	pthread_mutex_unlock(&d->root->intx_lock);
	if (n) {
		pthread_mutex_lock(&d->msix_lock);
		memcpy(d->msix_table, t, n * sizeof(*t));
		memcpy(d->msix_pba, pba, (n + 63) / 64 * sizeof(uint64_t));
		pthread_mutex_unlock(&d->msix_lock);
		msix_control_written(d);
	}
	free(t);
	if (d->ops && d->ops->config_written)
		d->ops->config_written(d->opaque, 0, PCI_CFG_SIZE);
	return 0;
}

static void device_save(void *obj, struct snap_buf *b)
{
	struct pci_device *d = obj;

	pthread_rwlock_rdlock(&d->root->lock);
	dev_save(d, b);
	pthread_rwlock_unlock(&d->root->lock);
}

static int device_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct pci_device *d = obj;
	int ret;

	pthread_rwlock_wrlock(&d->root->lock);
	ret = dev_restore(d, c, err, len);
	pthread_rwlock_unlock(&d->root->lock);
	return ret;
}

static const struct snap_ops device_snap = {
	.name = "PCI device", .id = SNAP_ID("PCI "), .version = 1, .save = device_save, .restore = device_restore,
};

/* The root: the CF8 address register and the host bridge. */
static void root_save(void *obj, struct snap_buf *b)
{
	struct pci_root *r = obj;

	pthread_rwlock_rdlock(&r->lock);
	snap_put_u32(b, r->cf8);
	dev_save(&r->host, b);
	pthread_rwlock_unlock(&r->lock);
}

static int root_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct pci_root *r = obj;
	int ret;

	pthread_rwlock_wrlock(&r->lock);
	r->cf8 = snap_get_u32(c);
	ret = dev_restore(&r->host, c, err, len);
	pthread_rwlock_unlock(&r->lock);
	return ret;
}

static const struct snap_ops root_snap = {
	.name = "PCI host bridge", .id = SNAP_ID("PCIH"), .version = 1, .save = root_save, .restore = root_restore,
};

/* ---- root ---- */

int pci_root_init(struct pci_root *r, const struct devctx *ctx)
{
	static const struct pci_device_info host = {
		.vendor = PCI_HOST_VENDOR,
		.device = PCI_HOST_DEVICE,
		.class_code = 0x060000, /* bridge, host bridge */
	};
	int ret;

	memset(r, 0, sizeof(*r));
	r->ctx = ctx;
	pthread_rwlock_init(&r->lock, NULL);
	pthread_mutex_init(&r->intx_lock, NULL);
	pthread_mutex_init(&r->host.msix_lock, NULL);
	r->mmio_next = PCI_MMIO32_BASE;
	r->io_next = PCI_IO_BASE;
	r->host.root = r;
	init_header(&r->host, &host);
	r->slots[0] = &r->host;
	if (dev_register_state(ctx, &root_snap, r, 0))
		return -ENOMEM;

	ret = bus_register(ctx->pio, PCI_CONFIG_ADDR, 4, &cf8_ops, r, "pci-cf8");
	if (!ret)
		ret = bus_register(ctx->pio, PCI_CONFIG_DATA, 4, &cfc_ops, r, "pci-cfc");
	if (!ret)
		ret = bus_register(ctx->pio, PCI_IO_BASE, PCI_IO_SIZE, &io_win_ops, r, "pci-io");
	if (!ret)
		ret = bus_register(ctx->mmio, PCI_ECAM_BASE, PCI_ECAM_SIZE, &ecam_ops, r, "pci-ecam");
	if (!ret)
		ret = bus_register(ctx->mmio, PCI_MMIO32_BASE, PCI_MMIO32_SIZE, &mmio_win_ops, r, "pci-mmio");
	return ret;
}

static void free_device(struct pci_device *d)
{
	for (unsigned v = 0; d->msix_irqfd && v < d->msix_n; v++)
		dev_irqfd_release(d->root->ctx, &d->msix_irqfd[v]);
	free(d->msix_irqfd);
	free(d->msix_table);
	free(d->msix_pba);
	pthread_mutex_destroy(&d->msix_lock);
	free(d);
}

void pci_root_destroy(struct pci_root *r)
{
	if (!r->ctx)
		return;
	for (int s = 1; s < PCI_MAX_SLOTS; s++)
		if (r->slots[s])
			free_device(r->slots[s]);
	pthread_mutex_destroy(&r->host.msix_lock);
	pthread_mutex_destroy(&r->intx_lock);
	pthread_rwlock_destroy(&r->lock);
	r->ctx = NULL;
}

int pci_register_device(struct pci_root *r, const struct pci_device_ops *ops, void *opaque,
			const struct pci_device_info *info, struct pci_device **out)
{
	struct pci_device *d;
	int slot, ret = 0;
	uint16_t cmd = 0;

	if (!ops || info->irq_pin > 4)
		return -EINVAL;
	for (slot = 1; slot < PCI_MAX_SLOTS && r->slots[slot]; slot++)
		;
	if (slot == PCI_MAX_SLOTS)
		return -ENOSPC;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->msix_lock, NULL);
	d->root = r;
	d->slot = slot;
	d->ops = ops;
	d->opaque = opaque;
	init_header(d, info);
	/* Interrupt Line: what firmware writes there, the routed GSI (the
	 * guest's OS takes routing from _PRT; the register is a scratch pad). */
	if (info->irq_pin)
		d->cfg[PCI_INTERRUPT_LINE] = (uint8_t)pci_intx_gsi(slot, info->irq_pin);
	/* Largest BARs first would pack tighter; in order keeps it simple
	 * and each BAR is still naturally aligned. */
	for (int i = 0; i < 6 && !ret; i++) {
		if (!info->bars[i].type)
			continue;
		ret = setup_bar(r, d, i, &info->bars[i]);
		cmd |= info->bars[i].type == PCI_BAR_IO ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY;
		if (info->bars[i].type == PCI_BAR_MEM64)
			i++;
	}
	if (!ret && info->msix_vectors) {
		ret = setup_msix(r, d, info);
		cmd |= PCI_COMMAND_MEMORY;
	}
	if (!ret)
		ret = dev_register_state(r->ctx, &device_snap, d, (uint32_t)slot);
	if (ret) {
		free_device(d);
		return ret;
	}
	/* Decoding on, as firmware leaves devices it assigned. */
	wr16(d->cfg + PCI_COMMAND, cmd);
	update_bars(d);
	pthread_rwlock_wrlock(&r->lock);
	r->slots[slot] = d;
	pthread_rwlock_unlock(&r->lock);
	if (out)
		*out = d;
	return 0;
}
