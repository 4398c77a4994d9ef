#include "snapshot/vcpu_state.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

static void put_seg(struct snap_buf *b, const struct x86_seg *s)
{
	snap_put_u64(b, s->base);
	snap_put_u32(b, s->limit);
	snap_put_u16(b, s->sel);
	snap_put_u8(b, s->type);
	snap_put_u8(b, (uint8_t)(s->s | s->present << 1 | s->avl << 2 | s->l << 3 | s->db << 4 | s->g << 5 |
				 s->unusable << 6));
	snap_put_u8(b, s->dpl);
}

static void get_seg(struct snap_cur *c, struct x86_seg *s)
{
	uint8_t f;

	s->base = snap_get_u64(c);
	s->limit = snap_get_u32(c);
	s->sel = snap_get_u16(c);
	s->type = snap_get_u8(c);
	f = snap_get_u8(c);
	s->s = f & 1, s->present = f >> 1 & 1, s->avl = f >> 2 & 1, s->l = f >> 3 & 1;
	s->db = f >> 4 & 1, s->g = f >> 5 & 1, s->unusable = f >> 6 & 1;
	s->dpl = snap_get_u8(c);
	if (f >> 7)
		s->type = 0xff; /* refused by the checks */
}

void snap_put_vcpu(struct snap_buf *b, const struct x86_state *st)
{
	const struct x86_seg *segs[8] = { &st->cs, &st->ds, &st->es, &st->fs, &st->gs, &st->ss, &st->tr, &st->ldt };

	for (int i = 0; i < 16; i++)
		snap_put_u64(b, st->gpr[i]);
	snap_put_u64(b, st->rip);
	snap_put_u64(b, st->rflags);
	for (int i = 0; i < 8; i++)
		put_seg(b, segs[i]);
	snap_put_u64(b, st->gdt.base);
	snap_put_u16(b, st->gdt.limit);
	snap_put_u64(b, st->idt.base);
	snap_put_u16(b, st->idt.limit);
	snap_put_u64(b, st->cr0);
	snap_put_u64(b, st->cr2);
	snap_put_u64(b, st->cr3);
	snap_put_u64(b, st->cr4);
	snap_put_u64(b, st->cr8);
	snap_put_u64(b, st->efer);
	snap_put_u64(b, st->apic_base);
	snap_put_bytes(b, st->fxsave, sizeof(st->fxsave));
	snap_put_bytes(b, st->lapic, sizeof(st->lapic));
	for (int i = 0; i < 4; i++)
		snap_put_u64(b, st->dr[i]);
	snap_put_u64(b, st->dr6);
	snap_put_u64(b, st->dr7);
	snap_put_u32(b, X86_STATE_NR_MSRS);
	for (int i = 0; i < X86_STATE_NR_MSRS; i++) {
		snap_put_u32(b, x86_state_msr_index[i]);
		snap_put_u64(b, st->msr[i]);
	}
	snap_put_u8(b, st->ev.mp_state);
	snap_put_u8(b, st->ev.shadow);
	snap_put_u8(b, st->ev.nmi_pending);
	snap_put_u8(b, st->ev.nmi_masked);
	snap_put_u8(b, st->ev.exc_injected);
	snap_put_u8(b, st->ev.exc_vector);
	snap_put_u8(b, st->ev.exc_has_err);
	snap_put_u8(b, st->ev.irq_injected);
	snap_put_u8(b, st->ev.irq_vector);
	snap_put_u8(b, st->ev.irq_soft);
	snap_put_u32(b, st->ev.exc_err);
}

int snap_get_vcpu(const void *data, size_t len, unsigned version, struct x86_state *st, char *err,
		  size_t err_len)
{
	struct x86_seg *segs[8] = { &st->cs, &st->ds, &st->es, &st->fs, &st->gs, &st->ss, &st->tr, &st->ldt };
	struct snap_cur c;
	uint32_t n;

	if (version != SNAP_VCPU_VERSION)
		return errorf(err, err_len, -EINVAL, "vCPU state layout %u; this tarn reads %u", version, SNAP_VCPU_VERSION);
	memset(st, 0, sizeof(*st));
	snap_cur_init(&c, data, len);
	for (int i = 0; i < 16; i++)
		st->gpr[i] = snap_get_u64(&c);
	st->rip = snap_get_u64(&c);
	st->rflags = snap_get_u64(&c);
	for (int i = 0; i < 8; i++)
		get_seg(&c, segs[i]);
	st->gdt.base = snap_get_u64(&c);
	st->gdt.limit = snap_get_u16(&c);
	st->idt.base = snap_get_u64(&c);
	st->idt.limit = snap_get_u16(&c);
	st->cr0 = snap_get_u64(&c);
	st->cr2 = snap_get_u64(&c);
	st->cr3 = snap_get_u64(&c);
	st->cr4 = snap_get_u64(&c);
	st->cr8 = snap_get_u64(&c);
	st->efer = snap_get_u64(&c);
	st->apic_base = snap_get_u64(&c);
	snap_get_bytes(&c, st->fxsave, sizeof(st->fxsave));
	snap_get_bytes(&c, st->lapic, sizeof(st->lapic));
	for (int i = 0; i < 4; i++)
		st->dr[i] = snap_get_u64(&c);
	st->dr6 = snap_get_u64(&c);
	st->dr7 = snap_get_u64(&c);
	n = snap_get_u32(&c);
	if (n != X86_STATE_NR_MSRS)
		return errorf(err, err_len, -EINVAL, "vCPU state: %u MSRs, expected %d", n, X86_STATE_NR_MSRS);
	for (int i = 0; i < X86_STATE_NR_MSRS; i++) {
		uint32_t idx = snap_get_u32(&c);

		if (idx != x86_state_msr_index[i] && !c.short_read)
			return errorf(err, err_len, -EINVAL, "vCPU state: MSR %#x where %#x belongs", idx, x86_state_msr_index[i]);
		st->msr[i] = snap_get_u64(&c);
	}
	st->ev.mp_state = snap_get_u8(&c);
	st->ev.shadow = snap_get_u8(&c);
	st->ev.nmi_pending = snap_get_u8(&c);
	st->ev.nmi_masked = snap_get_u8(&c);
	st->ev.exc_injected = snap_get_u8(&c);
	st->ev.exc_vector = snap_get_u8(&c);
	st->ev.exc_has_err = snap_get_u8(&c);
	st->ev.irq_injected = snap_get_u8(&c);
	st->ev.irq_vector = snap_get_u8(&c);
	st->ev.irq_soft = snap_get_u8(&c);
	st->ev.exc_err = snap_get_u32(&c);
	if (!snap_cur_done(&c))
		return errorf(err, err_len, -EINVAL, "vCPU state: %zu bytes, layout %u has %s", len, version,
			   c.short_read ? "more" : "fewer");
	st->parts = X86_STATE_ALL;
	return x86_state_check(st, err, err_len);
}

static bool canonical(uint64_t a)
{
	return (uint64_t)((int64_t)(a << 16) >> 16) == a;
}

int x86_state_check(const struct x86_state *st, char *err, size_t len)
{
	static const char *const names[8] = { "CS", "DS", "ES", "FS", "GS", "SS", "TR", "LDTR" };
	const struct x86_seg *segs[8] = { &st->cs, &st->ds, &st->es, &st->fs, &st->gs, &st->ss, &st->tr, &st->ldt };
	bool pe = st->cr0 & X86_CR0_PE, pg = st->cr0 & X86_CR0_PG;
	bool lme = st->efer & X86_EFER_LME, lma = st->efer & X86_EFER_LMA;
	uint32_t mxcsr, tpr;

	/* RFLAGS: bit 1 set; 3, 5, 15 and 22-63 clear. */
	if (!(st->rflags & 2) || (st->rflags & ~0x3f7fd7ULL))
		return errorf(err, len, -EINVAL, "vCPU state: RFLAGS %#llx has reserved bits wrong", (unsigned long long)st->rflags);
	if (st->cr0 >> 32 || (pg && !pe) || ((st->cr0 & X86_CR0_NW) && !(st->cr0 & X86_CR0_CD)))
		return errorf(err, len, -EINVAL, "vCPU state: CR0 %#llx is not a value a CPU takes", (unsigned long long)st->cr0);
	if (st->cr4 >> 24)
		return errorf(err, len, -EINVAL, "vCPU state: CR4 %#llx sets reserved bits", (unsigned long long)st->cr4);
	if (st->efer & ~(X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE))
		return errorf(err, len, -EINVAL, "vCPU state: EFER %#llx sets bits tarn's vCPUs do not have",
			   (unsigned long long)st->efer);
	if (lma != (lme && pg))
		return errorf(err, len, -EINVAL, "vCPU state: EFER.LMA %d with LME %d and CR0.PG %d (LMA = LME and PG)", lma, lme,
			   pg);
	if (lma && !(st->cr4 & X86_CR4_PAE))
		return errorf(err, len, -EINVAL, "vCPU state: long mode without CR4.PAE");
	if (st->cr3 >> 52 || st->cr8 > 15)
		return errorf(err, len, -EINVAL, "vCPU state: CR3 %#llx or CR8 %#llx out of range", (unsigned long long)st->cr3,
			   (unsigned long long)st->cr8);
	if (lma && st->cs.l && st->cs.db)
		return errorf(err, len, -EINVAL, "vCPU state: CS with both L and D/B");
	if (lma && st->cs.l && !canonical(st->rip))
		return errorf(err, len, -EINVAL, "vCPU state: RIP %#llx not canonical in 64-bit mode", (unsigned long long)st->rip);
	for (int i = 0; i < 8; i++)
		if (segs[i]->type > 15 || segs[i]->dpl > 3)
			return errorf(err, len, -EINVAL, "vCPU state: %s has type %u, DPL %u", names[i], segs[i]->type, segs[i]->dpl);
	memcpy(&mxcsr, st->fxsave + 24, 4);
	if (mxcsr >> 16)
		return errorf(err, len, -EINVAL, "vCPU state: MXCSR %#x sets reserved bits", mxcsr);
	if ((st->parts & X86_STATE_EVENTS) &&
	    (st->ev.mp_state > X86_MP_WAIT_SIPI ||
	     (st->ev.shadow | st->ev.nmi_pending | st->ev.nmi_masked | st->ev.exc_injected | st->ev.exc_has_err |
	      st->ev.irq_injected | st->ev.irq_soft) > 1 ||
	     (st->ev.exc_injected && st->ev.exc_vector > 31) || (!st->ev.exc_has_err && st->ev.exc_err) ||
	     (st->ev.exc_injected && st->ev.irq_injected)))
		return errorf(err, len, -EINVAL, "vCPU state: run state %u or pending events out of range",
			      st->ev.mp_state);
	memcpy(&tpr, st->lapic + 0x80, 4);
	if ((st->parts & X86_STATE_LAPIC) && (tpr > 0xff || st->cr8 != tpr >> 4))
		return errorf(err, len, -EINVAL, "vCPU state: CR8 %#llx is not the LAPIC's TPR %#x >> 4",
			      (unsigned long long)st->cr8, tpr);
	return 0;
}
