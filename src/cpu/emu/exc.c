/* Exceptions, interrupts and everything else that loads a segment through a
 * descriptor table: event delivery through the IVT (real mode), 32-bit
 * gates (protected mode) and 64-bit gates with IST (long mode), the #DF /
 * triple-fault escalation, segment loads, far jmp/call/ret, iret,
 * syscall/sysret, ltr/lldt.
 *
 * Descriptor tables, the TSS and exception frames are guest memory read
 * with implicit supervisor accesses; every index is checked against the
 * table limit before it is read. Nothing is committed to the register file
 * until every read and write an operation needs has succeeded, so a fault in
 * the middle leaves the state as it was (and escalates to #DF). */
#include <stdarg.h>
#include <stdio.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"

void emu_fault(struct emu_cpu *c, int vec, int err)
{
	switch (vec) {
	case EXC_DF: case EXC_TS: case EXC_NP: case EXC_SS: case EXC_GP: case EXC_PF: case EXC_AC:
		break;
	default:
		err = -1;
	}
	c->exc_vec = vec;
	c->exc_err = err;
	longjmp(c->jb, JMP_FAULT);
}

void emu_exit_now(struct emu_cpu *c)
{
	longjmp(c->jb, JMP_EXIT);
}

void emu_exit_error(struct emu_cpu *c, enum vcpu_error code, const char *fmt, ...)
{
	va_list ap;

	c->exit->reason = VCPU_EXIT_ERROR;
	c->exit->error.code = code;
	va_start(ap, fmt);
	vsnprintf(c->exit->error.msg, sizeof(c->exit->error.msg), fmt, ap);
	va_end(ap);
	emu_exit_now(c);
}

static uint64_t sys_read(struct emu_cpu *c, uint64_t lin, int size)
{
	return emu_read_slow(c, lin, size, true);
}

static void sys_write(struct emu_cpu *c, uint64_t lin, int size, uint64_t val)
{
	emu_write_slow(c, lin, size, val, true);
}

static void desc_to_seg(uint64_t d, uint64_t hi, bool sys64, uint16_t sel, struct x86_seg *s)
{
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

	memset(s, 0, sizeof(*s));
	s->sel = sel;
	s->base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	if (sys64)
		s->base |= (hi & 0xffffffffULL) << 32;
	s->g = (d >> 55) & 1;
	s->limit = s->g ? (limit << 12) | 0xfff : limit;
	s->type = (d >> 40) & 0xf;
	s->s = (d >> 44) & 1;
	s->dpl = (d >> 45) & 3;
	s->present = (d >> 47) & 1;
	s->avl = (d >> 52) & 1;
	s->l = (d >> 53) & 1;
	s->db = (d >> 54) & 1;
}

/* Read the descriptor sel points at; false when it lies beyond the table. */
static bool read_desc(struct emu_cpu *c, uint16_t sel, uint64_t *d, uint64_t *addr)
{
	uint64_t base, limit;

	if (sel & 4) {
		if (c->ldt.unusable || !c->ldt.present)
			return false;
		base = c->ldt.base;
		limit = c->ldt.limit;
	} else {
		base = c->gdt.base;
		limit = c->gdt.limit;
	}
	if ((uint64_t)(sel | 7) > limit)
		return false;
	*addr = base + (sel & ~7u);
	*d = sys_read(c, *addr, 8);
	return true;
}

static bool legacy_mode(const struct emu_cpu *c)
{
	return c->mode == MODE_REAL || (c->flags & F_VM);
}

/* The SS a privilege change loads in long mode: a null selector at cpl
 * (also what loading a null SS in 64-bit mode below ring 3 gives). */
static void null_ss(struct x86_seg *s, int cpl)
{
	memset(s, 0, sizeof(*s));
	s->sel = (uint16_t)cpl;
	s->dpl = (uint8_t)cpl;
	s->present = 1;
	s->s = 1;
	s->type = 3;
	s->db = 1;
	s->g = 1;
	s->limit = 0xffffffff;
}

/* A data/stack segment for sel as a load at privilege cpl would produce it;
 * raises the fault the load would. */
static void seg_for_load(struct emu_cpu *c, int sreg, uint16_t sel, int cpl, struct x86_seg *out)
{
	uint64_t d, addr;
	int rpl = sel & 3;

	if ((sel & ~3) == 0) {
		if (sreg == SEG_SS) {
			/* 64-bit mode allows a null SS below ring 3 (sel == cpl). */
			if (!(c->efer & X86_EFER_LMA) || cpl == 3 || rpl != cpl)
				emu_fault(c, EXC_GP, 0);
			null_ss(out, cpl);
		} else {
			memset(out, 0, sizeof(*out));
			out->sel = sel;
			out->unusable = 1;
		}
		return;
	}
	if (!read_desc(c, sel, &d, &addr))
		emu_fault(c, EXC_GP, sel & ~3);
	desc_to_seg(d, 0, false, sel, out);
	if (sreg == SEG_SS) {
		if (rpl != cpl || out->dpl != cpl || !out->s || (out->type & 8) || !(out->type & 2))
			emu_fault(c, EXC_GP, sel & ~3);
		if (!out->present)
			emu_fault(c, EXC_SS, sel & ~3);
	} else {
		if (!out->s || ((out->type & 8) && !(out->type & 2)))
			emu_fault(c, EXC_GP, sel & ~3);
		if ((!(out->type & 8) || !(out->type & 4)) && (out->dpl < cpl || out->dpl < rpl))
			emu_fault(c, EXC_GP, sel & ~3);
		if (!out->present)
			emu_fault(c, EXC_NP, sel & ~3);
	}
	if (!(out->type & 1)) { /* set the accessed bit, as the CPU does */
		sys_write(c, addr + 5, 1, ((d >> 40) & 0xff) | 1);
		out->type |= 1;
	}
}

static void real_seg(struct x86_seg *s, uint16_t sel)
{
	s->sel = sel;
	s->base = (uint64_t)sel << 4;
	s->unusable = 0;
	s->present = 1;
}

void emu_load_seg(struct emu_cpu *c, int sreg, uint16_t sel)
{
	struct x86_seg s;

	if (legacy_mode(c)) {
		real_seg(&c->seg[sreg], sel);
		if (c->flags & F_VM) {
			c->seg[sreg].limit = 0xffff;
			c->seg[sreg].dpl = 3;
		}
	} else {
		seg_for_load(c, sreg, sel, c->cpl, &s);
		c->seg[sreg] = s;
	}
	if (sreg == SEG_SS || sreg == SEG_CS)
		emu_update_mode(c);
}

/* A code segment for a far transfer to sel; raises what the CPU would. */
static void code_seg(struct emu_cpu *c, uint16_t sel, int *new_cpl, bool ret, struct x86_seg *out)
{
	uint64_t d, addr;
	int rpl = sel & 3;

	if ((sel & ~3) == 0)
		emu_fault(c, EXC_GP, 0);
	if (!read_desc(c, sel, &d, &addr))
		emu_fault(c, EXC_GP, sel & ~3);
	desc_to_seg(d, 0, false, sel, out);
	if (!out->s) /* gates are handled by the caller; far returns never take one */
		emu_fault(c, EXC_GP, sel & ~3);
	if (!(out->type & 8))
		emu_fault(c, EXC_GP, sel & ~3);
	if (ret) {
		if (rpl < c->cpl)
			emu_fault(c, EXC_GP, sel & ~3);
		if ((out->type & 4) ? out->dpl > rpl : out->dpl != rpl)
			emu_fault(c, EXC_GP, sel & ~3);
		*new_cpl = rpl;
	} else {
		if (out->type & 4) {
			if (out->dpl > c->cpl)
				emu_fault(c, EXC_GP, sel & ~3);
		} else if (rpl > c->cpl || out->dpl != c->cpl) {
			emu_fault(c, EXC_GP, sel & ~3);
		}
		*new_cpl = c->cpl;
	}
	if (!out->present)
		emu_fault(c, EXC_NP, sel & ~3);
	out->sel = (uint16_t)((sel & ~3) | *new_cpl);
}

/* The new RIP of a far transfer to cs: canonical for 64-bit code, within the
 * limit otherwise; checked before anything commits. */
static void check_target(struct emu_cpu *c, const struct x86_seg *cs, uint64_t ip, int err)
{
	if ((c->efer & X86_EFER_LMA) && cs->l) {
		if ((uint64_t)((int64_t)(ip << 16) >> 16) != ip)
			emu_fault(c, EXC_GP, err);
	} else if ((ip & 0xffffffffULL) > cs->limit) {
		emu_fault(c, EXC_GP, err);
	}
}

static uint64_t stack_mask(const struct x86_seg *ss, bool long64)
{
	if (long64)
		return ~0ULL;
	return ss->db ? 0xffffffffULL : 0xffffULL;
}

/* Stack slot i (of size bytes) below sp on stack segment ss. */
static uint64_t stk_lin(const struct emu_cpu *c, const struct x86_seg *ss, uint64_t sp, bool long64)
{
	uint64_t m = stack_mask(ss, long64);

	if (long64)
		return sp;
	return (ss->base + (sp & m)) & 0xffffffffULL;
}

static void set_sp(struct emu_cpu *c, uint64_t sp, const struct x86_seg *ss, bool long64)
{
	uint64_t m = stack_mask(ss, long64);

	c->r[R_RSP] = (c->r[R_RSP] & ~m) | (sp & m);
}

/* The code segment an interrupt, trap or call gate points at; raises what
 * the CPU would, with ext_bit in the error codes. */
static void gate_cs(struct emu_cpu *c, uint16_t sel, int ext_bit, struct x86_seg *cs, int *new_cpl)
{
	bool lm = c->efer & X86_EFER_LMA;
	uint64_t d, addr;

	if ((sel & ~3) == 0)
		emu_fault(c, EXC_GP, ext_bit);
	if (!read_desc(c, sel, &d, &addr))
		emu_fault(c, EXC_GP, (sel & ~3) + ext_bit);
	desc_to_seg(d, 0, false, sel, cs);
	if (!cs->s || !(cs->type & 8) || cs->dpl > c->cpl)
		emu_fault(c, EXC_GP, (sel & ~3) + ext_bit);
	if (lm && (!cs->l || cs->db))
		emu_fault(c, EXC_GP, (sel & ~3) + ext_bit);
	if (!cs->present)
		emu_fault(c, EXC_NP, (sel & ~3) + ext_bit);
	*new_cpl = (cs->type & 4) ? c->cpl : cs->dpl;
	cs->sel = (uint16_t)((sel & ~3) | *new_cpl);
}

/* A stack pointer from the 64-bit TSS at byte offset slot (RSPn or ISTn). */
static uint64_t tss_rsp64(struct emu_cpu *c, uint64_t slot, int ext_bit)
{
	if (slot + 7 > c->tr.limit)
		emu_fault(c, EXC_TS, (c->tr.sel & ~3) + ext_bit);
	return sys_read(c, c->tr.base + slot, 8);
}

/* SS:ESP for new_cpl from the 32-bit TSS. */
static uint64_t tss_stack32(struct emu_cpu *c, int new_cpl, int ext_bit, struct x86_seg *nss)
{
	uint64_t slot = 4 + (uint64_t)new_cpl * 8, sp;
	uint16_t ssel;

	if (slot + 5 > c->tr.limit)
		emu_fault(c, EXC_TS, (c->tr.sel & ~3) + ext_bit);
	sp = sys_read(c, c->tr.base + slot, 4);
	ssel = (uint16_t)sys_read(c, c->tr.base + slot + 4, 2);
	seg_for_load(c, SEG_SS, ssel, new_cpl, nss);
	return sp;
}

/* Far call or jmp through a call gate (SDM vol. 3A 5.8.3-5.8.6): to the
 * same level, or (call only) to an inner one on the TSS's stack with the
 * gate's parameter count copied across (legacy mode; none in long mode). */
static void call_gate(struct emu_cpu *c, uint16_t gsel, uint64_t d, uint64_t addr, bool call,
		      uint64_t ret_rip)
{
	bool lm = c->efer & X86_EFER_LMA;
	int type = (d >> 40) & 0xf, gdpl = (d >> 45) & 3, new_cpl;
	int w = type == 4 ? 2 : lm ? 8 : 4;
	unsigned params = lm ? 0 : (unsigned)((d >> 32) & 0x1f);
	uint64_t off = (d & 0xffff) | ((d >> 32) & 0xffff0000ULL), sp = c->r[R_RSP], old_sp = sp;
	uint16_t sel = (uint16_t)(d >> 16);
	struct x86_seg cs, nss = c->seg[SEG_SS];
	const struct x86_seg *oss = &c->seg[SEG_SS];
	uint64_t vals[40];
	int n = 0;

	if (lm ? type != 0xc : (type != 0xc && type != 4)) {
		if (type == 5 || type == 1 || type == 9)
			pr_warn_ratelimited("emu: far transfer to a task (type %d) is unsupported", type);
		emu_fault(c, EXC_GP, gsel & ~3);
	}
	if (gdpl < c->cpl || gdpl < (gsel & 3))
		emu_fault(c, EXC_GP, gsel & ~3);
	if (!((d >> 47) & 1))
		emu_fault(c, EXC_NP, gsel & ~3);
	if (lm) {
		uint64_t limit = (gsel & 4) ? c->ldt.limit : c->gdt.limit;
		uint64_t hi;

		if ((uint64_t)(gsel | 7) + 8 > limit)
			emu_fault(c, EXC_GP, gsel & ~3);
		hi = sys_read(c, addr + 8, 8);
		if ((hi >> 40) & 0x1f)
			emu_fault(c, EXC_GP, gsel & ~3);
		off |= (hi & 0xffffffffULL) << 32;
	}
	if (w == 2)
		off &= 0xffff;
	gate_cs(c, sel, 0, &cs, &new_cpl);
	if (!call && !(cs.type & 4) && cs.dpl != c->cpl)
		emu_fault(c, EXC_GP, sel & ~3);
	check_target(c, &cs, off, 0);
	if (!call)
		goto commit;
	if (new_cpl < c->cpl) {
		if (lm) {
			sp = tss_rsp64(c, 4 + (uint64_t)new_cpl * 8, 0);
			null_ss(&nss, new_cpl);
		} else {
			sp = tss_stack32(c, new_cpl, 0, &nss);
		}
		vals[n++] = oss->sel;
		vals[n++] = old_sp;
		for (unsigned i = params; i > 0; i--)
			vals[n++] = emu_read(c, SEG_SS, (old_sp + (uint64_t)(i - 1) * (uint64_t)w) &
					     stack_mask(oss, c->long64), w);
	}
	vals[n++] = c->seg[SEG_CS].sel;
	vals[n++] = ret_rip;
	for (int i = 0; i < n; i++) {
		uint64_t lin = stk_lin(c, &nss, sp - (uint64_t)(w * (i + 1)), lm);

		/* The inner stack is written with supervisor rights; the same
		 * level's with the caller's own. */
		if (new_cpl < c->cpl)
			sys_write(c, lin, w, vals[i]);
		else
			emu_write_lin(c, lin, w, vals[i]);
	}
	sp -= (uint64_t)(w * n);
commit:
	c->seg[SEG_CS] = cs;
	c->seg[SEG_SS] = nss;
	c->cpl = new_cpl;
	emu_update_mode(c);
	if (call) {
		if (lm)
			c->r[R_RSP] = sp;
		else
			set_sp(c, sp, &nss, false);
	}
	c->rip = off;
}

void emu_far_jump(struct emu_cpu *c, uint16_t sel, uint64_t off, bool call, int opsize,
		  uint64_t ret_rip)
{
	struct x86_seg cs;
	int cpl;
	uint64_t sp = c->r[R_RSP];
	bool l64 = c->long64;

	if (legacy_mode(c)) {
		if (call) {
			sys_write(c, stk_lin(c, &c->seg[SEG_SS], sp - (uint64_t)opsize, false), opsize,
				  c->seg[SEG_CS].sel);
			sys_write(c, stk_lin(c, &c->seg[SEG_SS], sp - 2 * (uint64_t)opsize, false), opsize,
				  ret_rip);
			set_sp(c, sp - 2 * (uint64_t)opsize, &c->seg[SEG_SS], false);
		}
		real_seg(&c->seg[SEG_CS], sel);
		c->rip = off & emu_size_mask(opsize);
		return;
	}
	{
		uint64_t d, addr;

		if ((sel & ~3) && read_desc(c, sel, &d, &addr) && !((d >> 44) & 1)) {
			call_gate(c, sel, d, addr, call, ret_rip);
			return;
		}
	}
	code_seg(c, sel, &cpl, false, &cs);
	check_target(c, &cs, (c->efer & X86_EFER_LMA) && cs.l ? off : off & emu_size_mask(opsize), 0);
	if (call) {
		emu_write(c, SEG_SS, (sp - (uint64_t)opsize) & stack_mask(&c->seg[SEG_SS], l64), opsize,
			  c->seg[SEG_CS].sel);
		emu_write(c, SEG_SS, (sp - 2 * (uint64_t)opsize) & stack_mask(&c->seg[SEG_SS], l64),
			  opsize, ret_rip);
		set_sp(c, sp - 2 * (uint64_t)opsize, &c->seg[SEG_SS], l64);
	}
	c->seg[SEG_CS] = cs;
	emu_update_mode(c);
	c->rip = c->long64 ? off : off & emu_size_mask(opsize);
}

void emu_far_ret(struct emu_cpu *c, int opsize, uint16_t imm)
{
	const struct x86_seg *ss = &c->seg[SEG_SS];
	bool l64 = c->long64;
	uint64_t m = stack_mask(ss, l64), sp = c->r[R_RSP];
	uint64_t ip = emu_read(c, SEG_SS, sp & m, opsize);
	uint16_t sel = (uint16_t)emu_read(c, SEG_SS, (sp + (uint64_t)opsize) & m, opsize);
	struct x86_seg cs, nss;
	int cpl;

	if (legacy_mode(c)) {
		real_seg(&c->seg[SEG_CS], sel);
		c->rip = ip;
		set_sp(c, sp + 2 * (uint64_t)opsize + imm, ss, false);
		return;
	}
	code_seg(c, sel, &cpl, true, &cs);
	check_target(c, &cs, (c->efer & X86_EFER_LMA) && cs.l ? ip : ip & emu_size_mask(opsize), 0);
	if (cpl > c->cpl) {
		uint64_t nsp = emu_read(c, SEG_SS, (sp + 2 * (uint64_t)opsize + imm) & m, opsize);
		uint16_t nsel = (uint16_t)emu_read(c, SEG_SS, (sp + 3 * (uint64_t)opsize + imm) & m, opsize);

		seg_for_load(c, SEG_SS, nsel, cpl, &nss);
		c->seg[SEG_CS] = cs;
		c->seg[SEG_SS] = nss;
		c->cpl = cpl;
		emu_update_mode(c);
		set_sp(c, nsp + imm, &nss, c->long64);
	} else {
		c->seg[SEG_CS] = cs;
		emu_update_mode(c);
		set_sp(c, sp + 2 * (uint64_t)opsize + imm, ss, l64);
	}
	c->rip = c->long64 ? ip : ip & emu_size_mask(opsize);
}

static void null_outer_segs(struct emu_cpu *c)
{
	static const int segs[] = { SEG_ES, SEG_DS, SEG_FS, SEG_GS };

	for (unsigned i = 0; i < 4; i++) {
		struct x86_seg *s = &c->seg[segs[i]];
		bool conforming_code = (s->type & 0xc) == 0xc;

		if (!s->unusable && !conforming_code && s->dpl < c->cpl) {
			s->sel = 0;
			s->unusable = 1;
		}
	}
}

void emu_iret(struct emu_cpu *c, int opsize)
{
	const struct x86_seg *ss = &c->seg[SEG_SS];
	bool l64 = c->long64;
	uint64_t m = stack_mask(ss, l64), sp = c->r[R_RSP], o = (uint64_t)opsize;
	uint64_t ip, fl, mask, nsp = 0;
	uint16_t sel, nsel = 0;
	struct x86_seg cs, nss;
	int cpl, old_cpl = c->cpl;
	bool pop_ss;

	/* IRET ends NMI blocking, even if it then faults (SDM 6.7.1). */
	if (c->nmi_blocked) {
		c->nmi_blocked = false;
		atomic_fetch_or(&c->attn, ATTN_IRQ); /* a held NMI goes now */
	}
	ip = emu_read(c, SEG_SS, sp & m, opsize);
	sel = (uint16_t)emu_read(c, SEG_SS, (sp + o) & m, opsize);
	fl = emu_read(c, SEG_SS, (sp + 2 * o) & m, opsize);

	if (c->mode == MODE_REAL) {
		/* Reserved bits keep their fixed values, whatever was popped. */
		mask = F_ARITH | F_TF | F_IF | F_DF | F_IOPL | F_NT;
		if (opsize != 2)
			mask |= F_RF | F_AC | F_ID;
		real_seg(&c->seg[SEG_CS], sel);
		c->rip = ip;
		c->flags = (c->flags & ~mask) | (fl & mask) | 2;
		set_sp(c, sp + 3 * o, ss, false);
		return;
	}
	if ((c->flags & F_VM) || (!(c->efer & X86_EFER_LMA) && (c->flags & F_NT))) {
		pr_warn_ratelimited("emu: iret from virtual-8086 mode or task return is unsupported");
		emu_fault(c, EXC_GP, 0);
	}
	code_seg(c, sel, &cpl, true, &cs);
	check_target(c, &cs, (c->efer & X86_EFER_LMA) && cs.l ? ip : ip & emu_size_mask(opsize), 0);
	pop_ss = l64 || cpl > c->cpl;
	if (pop_ss) {
		nsp = emu_read(c, SEG_SS, (sp + 3 * o) & m, opsize);
		nsel = (uint16_t)emu_read(c, SEG_SS, (sp + 4 * o) & m, opsize);
		seg_for_load(c, SEG_SS, nsel, cpl, &nss);
	}
	if ((fl & F_VM) && old_cpl == 0 && !(c->efer & X86_EFER_LMA)) {
		pr_warn_ratelimited("emu: iret to virtual-8086 mode is unsupported");
		emu_fault(c, EXC_GP, 0);
	}
	mask = F_ARITH | F_TF | F_DF | F_NT | F_RF | F_AC | F_ID;
	if (old_cpl == 0)
		mask |= F_IOPL | F_VIF | F_VIP;
	if ((unsigned)old_cpl <= ((c->flags & F_IOPL) >> 12))
		mask |= F_IF;
	if (opsize == 2)
		mask &= 0xffff;
	c->flags = (c->flags & ~mask) | (fl & mask) | 2;
	c->seg[SEG_CS] = cs;
	c->cpl = cpl;
	if (pop_ss)
		c->seg[SEG_SS] = nss;
	emu_update_mode(c);
	if (pop_ss) {
		if (c->long64)
			c->r[R_RSP] = nsp;
		else
			set_sp(c, nsp, &nss, false);
	} else {
		set_sp(c, sp + 3 * o, ss, false);
	}
	if (cpl > old_cpl && !c->long64)
		null_outer_segs(c);
	c->rip = c->long64 ? ip : ip & emu_size_mask(opsize);
}

static void deliver_real(struct emu_cpu *c, int vec, uint64_t ret_rip)
{
	const struct x86_seg *ss = &c->seg[SEG_SS];
	uint64_t sp = c->r[R_RSP];
	uint32_t ent;

	if ((uint64_t)vec * 4 + 3 > c->idt.limit)
		emu_fault(c, EXC_GP, 0);
	ent = (uint32_t)sys_read(c, c->idt.base + (uint64_t)vec * 4, 4);
	sys_write(c, stk_lin(c, ss, sp - 2, false), 2, c->flags);
	sys_write(c, stk_lin(c, ss, sp - 4, false), 2, c->seg[SEG_CS].sel);
	sys_write(c, stk_lin(c, ss, sp - 6, false), 2, ret_rip);
	set_sp(c, sp - 6, ss, false);
	c->flags &= ~(uint64_t)(F_IF | F_TF | F_AC | F_RF);
	real_seg(&c->seg[SEG_CS], (uint16_t)(ent >> 16));
	c->rip = ent & 0xffff;
}

void emu_deliver(struct emu_cpu *c, int vec, int err, bool soft, bool ext, uint64_t ret_rip)
{
	bool lm = c->efer & X86_EFER_LMA;
	int gsz = lm ? 16 : 8, ext_bit = ext ? 1 : 0, new_cpl, type, ist = 0;
	int idt_err = vec * 8 + 2 + ext_bit;
	uint64_t lo, hi = 0, off, sp, old_sp = c->r[R_RSP], fl = c->flags;
	uint16_t sel;
	struct x86_seg cs, nss = c->seg[SEG_SS];
	bool gate32, intr_gate, switch_stack;

	if (c->mode == MODE_REAL) {
		deliver_real(c, vec, ret_rip);
		return;
	}
	if (c->flags & F_VM)
		emu_exit_error(c, VCPU_ERR_V8086, "emu: interrupt in virtual-8086 mode (unsupported)");
	if ((uint64_t)vec * (uint64_t)gsz + (uint64_t)gsz - 1 > c->idt.limit)
		emu_fault(c, EXC_GP, idt_err);
	lo = sys_read(c, c->idt.base + (uint64_t)vec * (uint64_t)gsz, 8);
	if (lm)
		hi = sys_read(c, c->idt.base + (uint64_t)vec * 16 + 8, 8);
	type = (lo >> 40) & 0x1f; /* S bit included: must be 0 */
	if (lm ? (type != 0xe && type != 0xf) : (type != 0xe && type != 0xf && type != 6 && type != 7)) {
		if (type == 5)
			pr_warn_ratelimited("emu: task gates are unsupported (vector %d)", vec);
		emu_fault(c, EXC_GP, idt_err);
	}
	if (soft && (int)((lo >> 45) & 3) < c->cpl)
		emu_fault(c, EXC_GP, idt_err);
	if (!((lo >> 47) & 1))
		emu_fault(c, EXC_NP, idt_err);
	gate32 = lm || (type & 8);
	intr_gate = !(type & 1);
	sel = (uint16_t)(lo >> 16);
	off = (lo & 0xffff) | ((lo >> 32) & 0xffff0000ULL);
	if (lm) {
		off |= (hi & 0xffffffffULL) << 32;
		ist = (int)((lo >> 32) & 7);
	}
	if (!gate32)
		off &= 0xffff;

	gate_cs(c, sel, ext_bit, &cs, &new_cpl);
	check_target(c, &cs, off, ext_bit);
	switch_stack = new_cpl < c->cpl;

	if (lm) {
		sp = c->r[R_RSP];
		if (switch_stack || ist)
			sp = tss_rsp64(c, ist ? 0x24 + (uint64_t)(ist - 1) * 8 : 4 + (uint64_t)new_cpl * 8,
				       ext_bit);
		sp &= ~15ULL;
		{
			uint64_t frame[6];
			int n = 0;

			if (err >= 0)
				frame[n++] = (uint64_t)(uint32_t)err;
			frame[n++] = ret_rip;
			frame[n++] = c->seg[SEG_CS].sel;
			frame[n++] = fl;
			frame[n++] = old_sp;
			frame[n++] = c->seg[SEG_SS].sel;
			for (int i = 0; i < n; i++)
				sys_write(c, sp - 8 * (uint64_t)(n - i), 8, frame[i]);
			sp -= 8 * (uint64_t)n;
		}
		if (switch_stack)
			null_ss(&nss, new_cpl);
		c->r[R_RSP] = sp;
	} else {
		int w = gate32 ? 4 : 2;
		uint64_t vals[7];
		int n = 0;

		if (switch_stack) {
			sp = tss_stack32(c, new_cpl, ext_bit, &nss);
			vals[n++] = c->seg[SEG_SS].sel;
			vals[n++] = old_sp;
		} else {
			sp = c->r[R_RSP];
		}
		vals[n++] = fl;
		vals[n++] = c->seg[SEG_CS].sel;
		vals[n++] = ret_rip;
		if (err >= 0)
			vals[n++] = (uint64_t)(uint32_t)err;
		for (int i = 0; i < n; i++)
			sys_write(c, stk_lin(c, &nss, sp - (uint64_t)(w * (i + 1)), false), w, vals[i]);
		set_sp(c, sp - (uint64_t)(w * n), &nss, false);
	}
	c->seg[SEG_CS] = cs;
	c->seg[SEG_SS] = nss;
	c->cpl = new_cpl;
	c->flags &= ~(uint64_t)(F_TF | F_NT | F_RF | F_VM);
	if (intr_gate)
		c->flags &= ~(uint64_t)F_IF;
	emu_update_mode(c);
	if (switch_stack && !lm)
		null_outer_segs(c);
	c->rip = off;
}

static bool contributory(int v)
{
	return v == EXC_DE || (v >= EXC_TS && v <= EXC_GP);
}

bool emu_deliver_pending_exception(struct emu_cpu *c)
{
	int vec = c->exc_vec, err = c->exc_err;

	if (c->delivering >= 0) {
		int first = c->delivering;

		if (first == EXC_DF) {
			c->delivering = -1;
			return true;
		}
		if ((contributory(first) && contributory(vec)) ||
		    (first == EXC_PF && (contributory(vec) || vec == EXC_PF))) {
			vec = EXC_DF;
			err = 0;
		}
	}
	c->delivering = vec;
	c->in_event = true;
	emu_deliver(c, vec, err, false, false, c->insn_rip);
	c->in_event = false;
	c->delivering = -1;
	return false;
}

void emu_syscall(struct emu_cpu *c, uint64_t next_rip)
{
	struct x86_seg *cs = &c->seg[SEG_CS], *ss = &c->seg[SEG_SS];
	uint16_t sel = (uint16_t)((c->star >> 32) & 0xfffc);

	if (!(c->efer & X86_EFER_SCE) || !(c->efer & X86_EFER_LMA))
		emu_fault(c, EXC_UD, 0);
	if (c->long64) {
		c->r[R_RCX] = next_rip;
		c->r[R_R11] = c->flags & ~(uint64_t)F_RF;
	} else {
		c->r[R_RCX] = next_rip & 0xffffffffULL;
		c->r[R_R11] = c->flags & ~(uint64_t)F_RF;
	}
	memset(cs, 0, sizeof(*cs));
	cs->sel = sel;
	cs->limit = 0xffffffff;
	cs->type = 0xb;
	cs->s = 1;
	cs->present = 1;
	cs->l = 1;
	cs->g = 1;
	memset(ss, 0, sizeof(*ss));
	ss->sel = (uint16_t)(sel + 8);
	ss->limit = 0xffffffff;
	ss->type = 3;
	ss->s = 1;
	ss->present = 1;
	ss->db = 1;
	ss->g = 1;
	c->flags &= ~(c->sfmask | F_RF);
	c->flags |= 2;
	c->cpl = 0;
	/* From compatibility mode the entry point is CSTAR (as AMD does). */
	c->rip = c->long64 ? c->lstar : c->cstar;
	emu_update_mode(c);
}

void emu_sysret(struct emu_cpu *c, bool w64)
{
	struct x86_seg *cs = &c->seg[SEG_CS], *ss = &c->seg[SEG_SS];
	uint16_t base = (uint16_t)((c->star >> 48) & 0xfffc);
	uint64_t rip = c->r[R_RCX];

	if (!(c->efer & X86_EFER_SCE) || !(c->efer & X86_EFER_LMA))
		emu_fault(c, EXC_UD, 0);
	if (c->cpl != 0)
		emu_fault(c, EXC_GP, 0);
	if (w64 && (uint64_t)((int64_t)(rip << 16) >> 16) != rip)
		emu_fault(c, EXC_GP, 0);
	memset(cs, 0, sizeof(*cs));
	cs->limit = 0xffffffff;
	cs->type = 0xb;
	cs->s = 1;
	cs->present = 1;
	cs->dpl = 3;
	cs->g = 1;
	if (w64) {
		cs->sel = (uint16_t)((base + 16) | 3);
		cs->l = 1;
	} else {
		cs->sel = (uint16_t)(base | 3);
		cs->db = 1;
		rip &= 0xffffffffULL;
	}
	memset(ss, 0, sizeof(*ss));
	ss->sel = (uint16_t)((base + 8) | 3);
	ss->limit = 0xffffffff;
	ss->type = 3;
	ss->s = 1;
	ss->present = 1;
	ss->dpl = 3;
	ss->db = 1;
	ss->g = 1;
	c->flags = (c->r[R_R11] & 0x3c7fd7ULL) | 2;
	c->cpl = 3;
	emu_update_mode(c);
	c->rip = rip;
}

/* The descriptor sel names, if the current CPL may look at it (what VERR,
 * VERW, LAR and LSL share): false for null, out of the table, or a
 * non-conforming segment / system descriptor more privileged than CPL and
 * RPL. */
static bool visible_desc(struct emu_cpu *c, uint16_t sel, uint64_t *d)
{
	uint64_t addr;
	int dpl;

	if ((sel & ~3) == 0 || !read_desc(c, sel, d, &addr))
		return false;
	dpl = (*d >> 45) & 3;
	if (((*d >> 44) & 1) && (*d & (0xcULL << 40)) == (0xcULL << 40))
		return true; /* conforming code */
	return dpl >= c->cpl && dpl >= (sel & 3);
}

bool emu_verify_seg(struct emu_cpu *c, uint16_t sel, bool write)
{
	uint64_t d;
	unsigned type;

	if (!visible_desc(c, sel, &d) || !((d >> 44) & 1))
		return false;
	type = (d >> 40) & 0xf;
	if (type & 8) /* code: never writable, readable if R */
		return !write && (type & 2);
	return !write || (type & 2);
}

bool emu_lar_lsl(struct emu_cpu *c, uint16_t sel, bool lsl, uint64_t *out)
{
	bool lm = c->efer & X86_EFER_LMA;
	uint64_t d;
	unsigned type;

	if (!visible_desc(c, sel, &d))
		return false;
	type = (d >> 40) & 0xf;
	if (!((d >> 44) & 1)) {
		/* System descriptors: LDT and TSSs; LAR also takes gates. */
		bool ok = lm ? (type == 2 || type == 9 || type == 0xb || (!lsl && type == 0xc))
			     : (type == 1 || type == 2 || type == 3 || type == 9 || type == 0xb ||
				(!lsl && (type == 4 || type == 5 || type == 0xc)));
		if (!ok)
			return false;
	}
	if (lsl) {
		struct x86_seg s;

		desc_to_seg(d, 0, false, sel, &s);
		*out = s.limit;
	} else {
		*out = (d >> 32) & 0x00f0ff00ULL;
	}
	return true;
}

/* The GDT descriptor of a system segment (TSS, LDT) for ltr/lldt: 16 bytes
 * in long mode. #GP(sel) for an LDT selector or one past the GDT's limit;
 * *d and *addr: its low quadword and where it is. */
static void read_sys_desc(struct emu_cpu *c, uint16_t sel, uint64_t *d, uint64_t *addr,
			  struct x86_seg *s)
{
	uint64_t hi = 0;

	if ((sel & 4) || !read_desc(c, sel, d, addr))
		emu_fault(c, EXC_GP, sel & ~3);
	if (c->efer & X86_EFER_LMA) {
		if ((uint64_t)(sel | 7) + 8 > c->gdt.limit)
			emu_fault(c, EXC_GP, sel & ~3);
		hi = sys_read(c, *addr + 8, 8);
	}
	desc_to_seg(*d, hi, c->efer & X86_EFER_LMA, sel, s);
}

void emu_ltr(struct emu_cpu *c, uint16_t sel)
{
	uint64_t d, addr;
	struct x86_seg s;

	if ((sel & ~3) == 0)
		emu_fault(c, EXC_GP, 0);
	read_sys_desc(c, sel, &d, &addr, &s);
	if (s.s || (s.type != 9 && s.type != 1))
		emu_fault(c, EXC_GP, sel & ~3);
	if (!s.present)
		emu_fault(c, EXC_NP, sel & ~3);
	sys_write(c, addr + 5, 1, ((d >> 40) & 0xff) | 2); /* busy */
	s.type |= 2;
	c->tr = s;
}

void emu_lldt(struct emu_cpu *c, uint16_t sel)
{
	uint64_t d, addr;
	struct x86_seg s;

	if ((sel & ~3) == 0) {
		memset(&c->ldt, 0, sizeof(c->ldt));
		c->ldt.unusable = 1;
		return;
	}
	read_sys_desc(c, sel, &d, &addr, &s);
	if (s.s || s.type != 2)
		emu_fault(c, EXC_GP, sel & ~3);
	if (!s.present)
		emu_fault(c, EXC_NP, sel & ~3);
	c->ldt = s;
}
