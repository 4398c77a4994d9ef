/* The emulator's MMU: segmentation outside 64-bit mode, the page walkers
 * (32-bit, PAE, 4-level with 2 MiB / 1 GiB pages, NX, WP, U/S), a direct-
 * mapped software TLB, and the slow paths of guest memory access, where
 * accesses that miss RAM become MMIO exits.
 *
 * Page-table entries are guest memory shared with other vCPUs: each is read
 * once with an atomic load, and accessed/dirty bits are set with an atomic
 * OR, as the hardware does. Page tables outside RAM read as not present. */
#include <errno.h>
#include <stdio.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"

#define PTE_P 0x1ULL
#define PTE_W 0x2ULL
#define PTE_U 0x4ULL
#define PTE_A 0x20ULL
#define PTE_D 0x40ULL
#define PTE_PS 0x80ULL
#define PTE_NX (1ULL << 63)
#define PHYS_BITS 46
#define PTE_ADDR (((1ULL << PHYS_BITS) - 1) & ~0xfffULL)
/* Bits 51:PHYS_BITS must be zero. */
#define PTE_RSVD_HI (((1ULL << 52) - 1) & ~((1ULL << PHYS_BITS) - 1))

void emu_tlb_flush(struct emu_cpu *c)
{
	memset(c->tlb, 0, sizeof(c->tlb));
	c->fetch_tag = 0;
}

void emu_tlb_flush_page(struct emu_cpu *c, uint64_t lin)
{
	struct tlb_entry *e = emu_tlb_slot(c, lin);

	/* A large page covers many 4 KiB slots; entries are per 4 KiB page, so
	 * invlpg of any address of a large page must drop them all. Cheap
	 * enough to flush everything: invlpg is rare next to loads. */
	(void)e;
	emu_tlb_flush(c);
}

uint64_t emu_linear_legacy(struct emu_cpu *c, int seg, uint64_t off, int size, enum acc acc)
{
	const struct x86_seg *s = &c->seg[seg];
	uint64_t last = off + (uint64_t)size - 1;

	if (c->mode != MODE_REAL) {
		if (s->unusable)
			emu_fault(c, seg == SEG_SS ? EXC_SS : EXC_GP, 0);
		if (s->s && !(s->type & 8) && (s->type & 4)) {
			/* Expand-down data: valid offsets are (limit, top]. */
			uint64_t top = s->db ? 0xffffffffULL : 0xffffULL;
			if (off <= s->limit || last > top)
				emu_fault(c, seg == SEG_SS ? EXC_SS : EXC_GP, 0);
			return (s->base + off) & 0xffffffffULL;
		}
	}
	if (last > s->limit)
		emu_fault(c, seg == SEG_SS ? EXC_SS : EXC_GP, 0);
	return (s->base + off) & 0xffffffffULL;
}

static _Noreturn void page_fault(struct emu_cpu *c, uint64_t lin, uint32_t err)
{
	c->cr2 = lin;
	emu_fault(c, EXC_PF, (int)err);
}

/* One page-table entry: atomic read; returns false when it is not in RAM. */
static bool pte_read(struct emu_cpu *c, uint64_t gpa, bool wide, void **ptr, uint64_t *val)
{
	void *p = gm_ptr(c->gm, gpa, wide ? 8 : 4);

	if (!p)
		return false;
	*ptr = p;
	if (wide)
		*val = __atomic_load_n((uint64_t *)p, __ATOMIC_ACQUIRE);
	else
		*val = __atomic_load_n((uint32_t *)p, __ATOMIC_ACQUIRE);
	return true;
}

static void pte_set(struct emu_cpu *c, void *p, bool wide, uint64_t old, uint64_t bits)
{
	if ((old & bits) == bits)
		return;
	gm_mark_dirty_hva(c->gm, p, wide ? 8 : 4);
	if (wide)
		__atomic_fetch_or((uint64_t *)p, bits, __ATOMIC_ACQ_REL);
	else
		__atomic_fetch_or((uint32_t *)p, (uint32_t)bits, __ATOMIC_ACQ_REL);
}

/* Walk the page tables for lin. Returns the guest-physical address and the
 * TLB permission bits of the 4 KiB page; raises #PF. */
static uint64_t walk(struct emu_cpu *c, uint64_t lin, enum acc acc, bool user, uint32_t *perm)
{
	uint32_t pfec = (acc == ACC_W ? PFEC_W : 0) | (user ? PFEC_U : 0);
	bool nxe = c->efer & X86_EFER_NXE;
	bool wp = c->cr0 & X86_CR0_WP;
	bool w = true, u = true, nx = false;
	void *ptrs[4];
	uint64_t ents[4];
	int n = 0, levels, shift;
	bool wide;
	uint64_t table, gpa, e = 0;

	/* I/D is reported only where NX exists: PAE/4-level paging with
	 * EFER.NXE (the model has no SMEP). */
	if (acc == ACC_X && nxe && (c->cr4 & X86_CR4_PAE))
		pfec |= PFEC_I;

	if (c->efer & X86_EFER_LMA) {
		levels = 4;
		wide = true;
		table = c->cr3 & PTE_ADDR;
		shift = 39;
	} else if (c->cr4 & X86_CR4_PAE) {
		void *p;
		uint64_t pdpte;

		if (!pte_read(c, (c->cr3 & 0xffffffe0ULL) + ((lin >> 30) & 3) * 8, true, &p, &pdpte) ||
		    !(pdpte & PTE_P))
			page_fault(c, lin, pfec);
		if (pdpte & (PTE_RSVD_HI | 0x1e6ULL | PTE_NX))
			page_fault(c, lin, pfec | PFEC_P | PFEC_RSVD);
		levels = 2;
		wide = true;
		table = pdpte & PTE_ADDR;
		shift = 21;
	} else {
		levels = 2;
		wide = false;
		table = c->cr3 & 0xfffff000ULL;
		shift = 22;
	}

	for (int lvl = levels; lvl >= 1; lvl--, shift -= wide ? 9 : 10) {
		uint64_t idx = (lin >> shift) & (wide ? 511 : 1023);
		void *p;
		bool leaf;

		if (!pte_read(c, table + idx * (wide ? 8 : 4), wide, &p, &e) || !(e & PTE_P))
			page_fault(c, lin, pfec);
		if (wide && ((e & PTE_RSVD_HI) || ((e & PTE_NX) && !nxe)))
			page_fault(c, lin, pfec | PFEC_P | PFEC_RSVD);
		leaf = lvl == 1;
		if (lvl > 1 && (e & PTE_PS)) {
			if (wide && levels == 4 && lvl == 4)
				page_fault(c, lin, pfec | PFEC_P | PFEC_RSVD);
			if (wide || (c->cr4 & X86_CR4_PSE))
				leaf = true;
		}
		w = w && (e & PTE_W);
		u = u && (e & PTE_U);
		if (wide && (e & PTE_NX))
			nx = true;
		ptrs[n] = p;
		ents[n++] = e;
		if (leaf) {
			uint64_t psize = 1ULL << shift;

			/* A large page's address bits below its size, but for the
			 * PAT bit (12), must be zero. */
			if (wide && lvl > 1 && (e & (psize - 1) & ~0x1fffULL))
				page_fault(c, lin, pfec | PFEC_P | PFEC_RSVD);

			if (wide)
				gpa = (e & PTE_ADDR & ~(psize - 1)) | (lin & (psize - 1));
			else if (lvl == 2)
				gpa = (e & 0xffc00000ULL) | (lin & 0x3fffffULL);
			else
				gpa = (e & 0xfffff000ULL) | (lin & 0xfffULL);
			goto found;
		}
		table = wide ? (e & PTE_ADDR) : (e & 0xfffff000ULL);
	}
	__builtin_unreachable();

found:
	/* Permission check before any A/D update. */
	if (user && !u)
		page_fault(c, lin, pfec | PFEC_P);
	if (acc == ACC_W && !w && (user || wp))
		page_fault(c, lin, pfec | PFEC_P);
	if (acc == ACC_X && nx)
		page_fault(c, lin, pfec | PFEC_P);
	for (int i = 0; i < n - 1; i++)
		pte_set(c, ptrs[i], wide, ents[i], PTE_A);
	pte_set(c, ptrs[n - 1], wide, e, acc == ACC_W ? (PTE_A | PTE_D) : PTE_A);

	{
		bool dirty = acc == ACC_W || (e & PTE_D);
		uint32_t pm = TLB_RS;

		if (dirty && (w || !wp))
			pm |= TLB_WS;
		if (!nx)
			pm |= TLB_XS;
		if (u) {
			pm |= TLB_RU;
			if (dirty && w)
				pm |= TLB_WU;
			if (!nx)
				pm |= TLB_XU;
		}
		*perm = pm;
	}
	return gpa;
}

/* Translate lin for one access and return its TLB entry (RAM pages) or NULL
 * with *gpa set (not RAM: MMIO). */
static struct tlb_entry *lookup(struct emu_cpu *c, uint64_t lin, enum acc acc, bool sup, uint64_t *gpa)
{
	bool user = !sup && c->cpl == 3;
	uint32_t need = acc == ACC_R ? TLB_RS : acc == ACC_W ? TLB_WS : TLB_XS;
	struct tlb_entry *e = emu_tlb_slot(c, lin);
	uint32_t perm;
	uint64_t pa;
	uint8_t *hva;

	if (user)
		need <<= 3;
	if (e->tag == (lin >> 12) + 1 && (e->perm & need)) {
		*gpa = e->gpa + (lin & 0xfff);
		return e;
	}
	if (c->long64 || (c->efer & X86_EFER_LMA)) {
		if ((uint64_t)((int64_t)(lin << 16) >> 16) != lin)
			emu_fault(c, EXC_GP, 0);
	}
	if (c->cr0 & X86_CR0_PG) {
		pa = walk(c, lin, acc, user, &perm);
	} else {
		pa = lin;
		perm = TLB_RS | TLB_WS | TLB_XS | TLB_RU | TLB_WU | TLB_XU;
	}
	*gpa = pa;
	hva = gm_ptr(c->gm, pa & ~0xfffULL, 4096);
	if (!hva)
		return NULL;
	/* Tracking dirty pages: an entry lets writes through only once a
	 * write has marked its page (until the next take flushes the TLB). */
	if (c->gm->dirty) {
		if (acc == ACC_W)
			gm_mark_dirty_hva(c->gm, hva, 4096);
		else
			perm &= ~(uint32_t)(TLB_WS | TLB_WU);
	}
	if (e->tag == (lin >> 12) + 1 && e->gpa == (pa & ~0xfffULL))
		perm |= e->perm;
	e->tag = (lin >> 12) + 1;
	e->hva = hva;
	e->gpa = pa & ~0xfffULL;
	e->perm = perm;
	if (c->fetch_tag == e->tag)
		c->fetch_tag = 0;
	return e;
}

static uint64_t load_le(const uint8_t *p, int size)
{
	uint64_t v = 0;

	memcpy(&v, p, (size_t)size);
	return v;
}

/* Delivering an exception or external interrupt cannot be restarted after a
 * port/MMIO exit: the faulting instruction would run again and fault again
 * with the replay log cleared, exiting for the same read forever; an
 * interrupt's vector, already taken from the LAPIC, would be lost. So
 * delivery through device memory ends the VM, as it does under KVM. */
static void no_event_bus(struct emu_cpu *c, uint64_t addr, bool io)
{
	if (unlikely(c->in_event))
		emu_exit_error(c, VCPU_ERR_EVENT_MMIO,
			       "emu: exception or interrupt delivery touches %s %#llx (IDT, GDT, TSS or "
			       "stack outside RAM)", io ? "port" : "device memory at gpa", (unsigned long long)addr);
}

/* A port or MMIO read: answered from the replay log, or recorded there and
 * turned into an exit (the instruction restarts when the core resumes). */
static uint64_t bus_read(struct emu_cpu *c, uint64_t addr, int size, bool io)
{
	struct rlog_entry *r;
	uint64_t v;

	/* This vCPU's LAPIC answers at once, in this thread (no exit). */
	if (!io && emu_lapic_read(c, addr, size, &v))
		return v;
	if (c->rlog_idx < c->rlog_n) {
		r = &c->rlog[c->rlog_idx++];
		if (r->addr == addr && r->len == size && r->io == io)
			return load_le(r->data, size);
		/* The restarted instruction read something else (its memory
		 * changed under it): start the log over. */
		c->rlog_n = c->rlog_idx = 0;
	}
	no_event_bus(c, addr, io);
	if (c->rlog_n == RLOG_MAX)
		emu_exit_error(c, VCPU_ERR_MMIO_LIMIT, "emu: more than %d port/MMIO reads in one instruction",
			       RLOG_MAX);
	r = &c->rlog[c->rlog_n++];
	r->addr = addr;
	r->len = (uint8_t)size;
	r->io = io;
	memset(r->data, 0xff, sizeof(r->data));
	if (io) {
		c->exit->reason = VCPU_EXIT_IO;
		c->exit->io.port = (uint16_t)addr;
		c->exit->io.size = (uint8_t)size;
		c->exit->io.write = false;
		c->exit->io.count = 1;
		c->exit->io.data = r->data;
	} else {
		c->exit->reason = VCPU_EXIT_MMIO;
		c->exit->mmio.gpa = addr;
		c->exit->mmio.len = (uint8_t)size;
		c->exit->mmio.write = false;
		c->exit->mmio.data = r->data;
	}
	emu_exit_now(c);
}

static void bus_write(struct emu_cpu *c, uint64_t addr, int size, uint64_t val, bool io)
{
	struct wq_entry *w;

	if (!io && emu_lapic_write(c, addr, size, val))
		return;
	no_event_bus(c, addr, io);
	if (c->wq_n == WQ_MAX)
		emu_exit_error(c, VCPU_ERR_MMIO_LIMIT, "emu: more than %d port/MMIO writes in one instruction",
			       WQ_MAX);
	w = &c->wq[c->wq_n++];
	w->addr = addr;
	w->len = (uint8_t)size;
	w->io = io;
	memcpy(w->data, &val, sizeof(w->data));
	c->exit_ready = true;
}

static uint64_t read_one(struct emu_cpu *c, uint64_t lin, int size, bool sup)
{
	uint64_t gpa;
	struct tlb_entry *e = lookup(c, lin, ACC_R, sup, &gpa);
	uint8_t *p;

	if (e)
		return load_le(e->hva + (lin & 0xfff), size);
	p = gm_ptr(c->gm, gpa, (uint64_t)size);
	if (p)
		return load_le(p, size);
	return bus_read(c, gpa, size, false);
}

static void write_one(struct emu_cpu *c, uint64_t lin, int size, uint64_t val, bool sup)
{
	uint64_t gpa;
	struct tlb_entry *e = lookup(c, lin, ACC_W, sup, &gpa);
	uint8_t *p;

	if (e) {
		memcpy(e->hva + (lin & 0xfff), &val, (size_t)size);
		return;
	}
	p = gm_ptr(c->gm, gpa, (uint64_t)size);
	if (p) {
		memcpy(p, &val, (size_t)size);
		gm_mark_dirty_hva(c->gm, p, (uint64_t)size);
		return;
	}
	bus_write(c, gpa, size, val, false);
}

uint64_t emu_read_slow(struct emu_cpu *c, uint64_t lin, int size, bool sup)
{
	uint64_t v = 0;

	if (!c->long64)
		lin &= 0xffffffffULL;
	if ((lin & 0xfff) + (unsigned)size <= 4096)
		return read_one(c, lin, size, sup);
	/* Crosses a page: bytewise, each byte translated on its own. */
	for (int i = 0; i < size; i++)
		v |= read_one(c, lin + (uint64_t)i, 1, sup) << (8 * i);
	return v;
}

void emu_write_slow(struct emu_cpu *c, uint64_t lin, int size, uint64_t val, bool sup)
{
	uint64_t gpa;

	if (!c->long64)
		lin &= 0xffffffffULL;
	if ((lin & 0xfff) + (unsigned)size <= 4096) {
		write_one(c, lin, size, val, sup);
		return;
	}
	/* Both pages must be writable before any byte is written; a fault on
	 * the second is at its first byte (CR2), as the CPU reports it. */
	lookup(c, lin, ACC_W, sup, &gpa);
	lookup(c, emu_next_page(c, lin), ACC_W, sup, &gpa);
	for (int i = 0; i < size; i++)
		write_one(c, lin + (uint64_t)i, 1, val >> (8 * i), sup);
}

uint64_t emu_read_rmw_slow(struct emu_cpu *c, uint64_t lin, int size)
{
	uint64_t gpa;

	if (!c->long64)
		lin &= 0xffffffffULL;
	lookup(c, lin, ACC_W, false, &gpa);
	if ((lin & 0xfff) + (unsigned)size > 4096)
		lookup(c, emu_next_page(c, lin), ACC_W, false, &gpa);
	return emu_read_slow(c, lin, size, false);
}

void *emu_rmw_ptr(struct emu_cpu *c, uint64_t lin, int size)
{
	uint64_t gpa;
	struct tlb_entry *e;

	if ((lin & 0xfff) + (unsigned)size > 4096)
		return NULL;
	e = lookup(c, lin, ACC_W, false, &gpa);
	return e ? e->hva + (lin & 0xfff) : NULL;
}

const uint8_t *emu_fetch_page(struct emu_cpu *c, uint64_t lin)
{
	uint64_t gpa;
	struct tlb_entry *e = lookup(c, lin, ACC_X, false, &gpa);

	if (!e)
		emu_exit_error(c, VCPU_ERR_FETCH, "emu: instruction fetch outside RAM at gpa %#llx",
			       (unsigned long long)gpa);
	c->fetch_tag = (lin >> 12) + 1;
	c->fetch_hva = e->hva;
	return e->hva;
}

uint64_t emu_io_in(struct emu_cpu *c, uint16_t port, int size)
{
	return bus_read(c, port, size, true);
}

void emu_io_out(struct emu_cpu *c, uint16_t port, int size, uint64_t val)
{
	bus_write(c, port, size, val, true);
}
