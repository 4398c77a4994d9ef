/* x87 floating point (D8-DF).
 *
 * The stack, tags and status word are kept here (struct emu_fpu); the
 * arithmetic itself runs on the host's x87 unit on copies of the operands,
 * with the guest's control word (precision, rounding) loaded and all
 * exceptions masked, and the flags it raised merged into the guest FSW.
 * Host `long double` is the x87 80-bit format, so values move between the
 * two without conversion and results are bit-exact, transcendentals
 * included. Stack overflow/underflow, tags and TOP are modelled in C.
 *
 * An unmasked exception sets FSW.ES/B; the next waiting x87 instruction
 * (or fwait) raises #MF. For unmasked invalid, denormal and zero-divide the
 * destination is left unchanged; for unmasked overflow/underflow the masked
 * result is stored (hardware stores a re-biased one). Not implemented
 * (#UD with a log line): fbld/fbstp and the 16-bit environment layout. */
#include <stdio.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"

#define SW_IE 0x0001u
#define SW_DE 0x0002u
#define SW_ZE 0x0004u
#define SW_SF 0x0040u
#define SW_ES 0x0080u
#define SW_C0 0x0100u
#define SW_C1 0x0200u
#define SW_C2 0x0400u
#define SW_C3 0x4000u
#define SW_B 0x8000u
#define SW_CC (SW_C0 | SW_C1 | SW_C2 | SW_C3)

typedef long double f80;

static _Noreturn void x87_undef(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	pr_warn_ratelimited("emu: vcpu %d: unimplemented x87 instruction at rip 0x%llx: %02x %02x",
			    c->vcpu ? c->vcpu->id : -1, (unsigned long long)c->insn_rip, in->opc,
			    in->modrm);
	emu_fault(c, EXC_UD, 0);
}

/* ---- stack ---- */

static int top(const struct emu_cpu *c)
{
	return (c->fpu.fsw >> 11) & 7;
}

static void set_top(struct emu_cpu *c, int t)
{
	c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~0x3800u) | ((unsigned)(t & 7) << 11));
}

static int phys(const struct emu_cpu *c, int i)
{
	return (top(c) + i) & 7;
}

static bool is_empty(const struct emu_cpu *c, int i)
{
	return !((c->fpu.ftw >> phys(c, i)) & 1);
}

static f80 indefinite(void)
{
	f80 v;
	uint8_t b[16] = { 0 };

	b[7] = 0xc0;
	b[8] = 0xff;
	b[9] = 0xff;
	memcpy(&v, b, sizeof(v));
	return v;
}

/* ES/B follow the unmasked exception flags. */
static void update_es(struct emu_cpu *c)
{
	if (c->fpu.fsw & ~c->fpu.fcw & 0x3f)
		c->fpu.fsw |= SW_ES | SW_B;
	else
		c->fpu.fsw &= (uint16_t)~(SW_ES | SW_B);
}

/* Record exception flags; false when one of them is unmasked and
 * suppresses the result (invalid, denormal, zero-divide). */
static bool raise_exc(struct emu_cpu *c, unsigned flags)
{
	flags &= 0x7f;
	c->fpu.fsw |= (uint16_t)flags;
	if (flags & ~c->fpu.fcw & 0x3f) {
		c->fpu.fsw |= SW_ES | SW_B;
		return !(flags & ~c->fpu.fcw & (SW_IE | SW_DE | SW_ZE));
	}
	return true;
}

/* Fetch ST(i); on an empty register a stack underflow: false if unmasked,
 * else the operand reads as the QNaN indefinite. */
static bool get(struct emu_cpu *c, int i, f80 *v)
{
	if (is_empty(c, i)) {
		c->fpu.fsw &= (uint16_t)~SW_C1;
		if (!raise_exc(c, SW_IE | SW_SF))
			return false;
		*v = indefinite();
		return true;
	}
	*v = c->fpu.st[phys(c, i)];
	return true;
}

static void put(struct emu_cpu *c, int i, f80 v)
{
	int p = phys(c, i);

	c->fpu.st[p] = v;
	c->fpu.ftw |= (uint8_t)(1u << p);
}

static void push(struct emu_cpu *c, f80 v)
{
	int t = (top(c) - 1) & 7;

	if ((c->fpu.ftw >> t) & 1) { /* stack overflow */
		c->fpu.fsw |= SW_C1;
		if (!raise_exc(c, SW_IE | SW_SF))
			return;
		v = indefinite();
	} else {
		c->fpu.fsw &= (uint16_t)~SW_C1; /* as fld does */
	}
	set_top(c, t);
	put(c, 0, v);
}

/* Push the second result of fptan/fsincos/fxtract: C1 is the first's. */
static void push_keep_c1(struct emu_cpu *c, f80 v)
{
	uint16_t c1 = c->fpu.fsw & SW_C1;

	push(c, v);
	c->fpu.fsw |= c1;
}

static void pop(struct emu_cpu *c)
{
	c->fpu.ftw &= (uint8_t)~(1u << top(c));
	set_top(c, top(c) + 1);
}

/* ---- host execution ---- */

static inline uint16_t host_enter(uint16_t fcw)
{
	uint16_t saved, cw = (uint16_t)(fcw | 0x3f);

	asm volatile("fnstcw %0\n\tfldcw %1\n\tfnclex" : "=m"(saved) : "m"(cw) : "memory");
	return saved;
}

/* Restores the host control word; returns the status the operation left. */
static inline uint16_t host_leave(uint16_t saved)
{
	uint16_t sw;

	asm volatile("fnstsw %0\n\tfnclex\n\tfldcw %1" : "=m"(sw) : "m"(saved) : "memory");
	return sw;
}

/* host_leave for operations that captured their status word themselves. */
static inline uint16_t leave_sw(uint16_t saved, uint16_t sw)
{
	(void)host_leave(saved);
	return sw;
}

/* Merge host status: exception flags, and the condition codes in cc. */
static bool host_done(struct emu_cpu *c, uint16_t sw, unsigned cc)
{
	c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~cc) | (sw & cc));
	return raise_exc(c, sw & 0x3f);
}

enum { A_ADD, A_MUL, A_COM, A_COMP, A_SUB, A_SUBR, A_DIV, A_DIVR, A_UCOM };

/* The second operand of an arithmetic instruction: an 80-bit value (a
 * register, or an integer, converted exactly), or a raw m32fp/m64fp that
 * the host instruction reads itself so that exception priorities (invalid
 * before denormal) come out as on hardware. */
struct src {
	int kind; /* 0 value, 1 m32fp, 2 m64fp */
	f80 v;
	uint64_t raw;
};

/* Run op on *x and s on the host; returns the status word right after it
 * (read inside the same asm: a later store would clear C1). */
static uint16_t host_arith(int op, f80 *x, const struct src *s)
{
	uint16_t sw = 0;
	f80 a = *x;
	float m32;
	double m64;

	memcpy(&m32, &s->raw, 4);
	memcpy(&m64, &s->raw, 8);
#define RA(insn) asm volatile(insn " %%st(1), %%st\n\tfnstsw %[sw]" : "+t"(a), [sw] "=m"(sw) : "u"(s->v))
#define RC(insn) asm volatile(insn " %%st(1)\n\tfnstsw %[sw]" : [sw] "=m"(sw) : "t"(a), "u"(s->v))
#define M4(insn) asm volatile(insn " %[m]\n\tfnstsw %[sw]" : "+t"(a), [sw] "=m"(sw) : [m] "m"(m32))
#define M8(insn) asm volatile(insn " %[m]\n\tfnstsw %[sw]" : "+t"(a), [sw] "=m"(sw) : [m] "m"(m64))
#define OPS(M, sfx, COM)                                                        \
	switch (op) {                                                           \
	case A_ADD: M("fadd" sfx); break;                                       \
	case A_MUL: M("fmul" sfx); break;                                       \
	case A_SUB: M("fsub" sfx); break;                                       \
	case A_SUBR: M("fsubr" sfx); break;                                     \
	case A_DIV: M("fdiv" sfx); break;                                       \
	case A_DIVR: M("fdivr" sfx); break;                                     \
	default: COM; break;                                                    \
	}
	switch (s->kind) {
	case 0:
		OPS(RA, "", if (op == A_UCOM) RC("fucom"); else RC("fcom"))
		break;
	case 1:
		OPS(M4, "s", M4("fcoms"))
		break;
	default:
		OPS(M8, "l", M8("fcoml"))
		break;
	}
#undef OPS
#undef M8
#undef M4
#undef RC
#undef RA
	*x = a;
	return sw;
}

/* op (A_COM/A_COMP/A_UCOM compare, setting C0 C2 C3) of a and s; the
 * result goes to ST(dst). False when an unmasked exception stopped it. */
static bool arith(struct emu_cpu *c, int op, int dst, f80 a, const struct src *s)
{
	uint16_t saved = host_enter(c->fpu.fcw), sw;
	bool cmp = op == A_COM || op == A_COMP || op == A_UCOM;

	sw = host_arith(op, &a, s);
	(void)host_leave(saved);
	if (cmp)
		return host_done(c, sw, SW_CC);
	if (!host_done(c, sw, SW_C1))
		return false;
	put(c, dst, a);
	return true;
}

static bool compare(struct emu_cpu *c, f80 a, f80 b, bool quiet)
{
	struct src s = { .v = b };

	return arith(c, quiet ? A_UCOM : A_COM, 0, a, &s);
}

/* Two-register arithmetic: ST(dst) = a op b, COMP pops. */
static void arith_reg(struct emu_cpu *c, int op, int dst, f80 a, f80 b)
{
	struct src s = { .v = b };

	if (arith(c, op, dst, a, &s) && op == A_COMP)
		pop(c);
}

/* ---- memory ---- */

static uint64_t mread(struct emu_cpu *c, const struct emu_fpu_insn *in, int off, int size)
{
	return emu_read(c, in->seg, in->ea + (uint64_t)off, size);
}

static void mwrite(struct emu_cpu *c, const struct emu_fpu_insn *in, int off, int size, uint64_t v)
{
	emu_write(c, in->seg, in->ea + (uint64_t)off, size, v);
}

/* Fail before the first write if a multi-part store would fault later. */
static void probe(struct emu_cpu *c, const struct emu_fpu_insn *in, int len)
{
	uint64_t lin = emu_linear(c, in->seg, in->ea, len, ACC_W);

	if ((lin & 0xfff) + (unsigned)len > 4096) {
		(void)emu_rmw_ptr(c, lin, 1);
		(void)emu_rmw_ptr(c, lin + (uint64_t)len - 1, 1);
	}
}

static f80 read80(struct emu_cpu *c, const struct emu_fpu_insn *in, int off)
{
	uint8_t b[16] = { 0 };
	uint64_t lo = mread(c, in, off, 8);
	uint16_t hi = (uint16_t)mread(c, in, off + 8, 2);
	f80 v;

	memcpy(b, &lo, 8);
	memcpy(b + 8, &hi, 2);
	memcpy(&v, b, sizeof(v));
	return v;
}

static void write80(struct emu_cpu *c, const struct emu_fpu_insn *in, int off, f80 v)
{
	uint8_t b[16];
	uint64_t lo;
	uint16_t hi;

	memcpy(b, &v, sizeof(v));
	memcpy(&lo, b, 8);
	memcpy(&hi, b + 8, 2);
	mwrite(c, in, off, 8, lo);
	mwrite(c, in, off + 8, 2, hi);
}

/* m32fp/m64fp (conversion may raise invalid/denormal) or m16/m32/m64int. */
static bool load_mem(struct emu_cpu *c, const struct emu_fpu_insn *in, int kind, f80 *out)
{
	uint64_t raw;
	uint16_t saved;
	volatile f80 r;

	switch (kind) {
	case 0: { /* m32fp */
		volatile float f;
		uint32_t u = (uint32_t)mread(c, in, 0, 4);

		memcpy((void *)&f, &u, 4);
		saved = host_enter(c->fpu.fcw);
		r = f;
		break;
	}
	case 1: { /* m64fp */
		volatile double f;

		raw = mread(c, in, 0, 8);
		memcpy((void *)&f, &raw, 8);
		saved = host_enter(c->fpu.fcw);
		r = f;
		break;
	}
	case 2: *out = (int16_t)mread(c, in, 0, 2); return true;
	case 3: *out = (int32_t)mread(c, in, 0, 4); return true;
	default: *out = (int64_t)mread(c, in, 0, 8); return true;
	}
	if (!host_done(c, host_leave(saved), 0))
		return false;
	*out = r;
	return true;
}

/* fst/fist/fisttp to memory of ST(0). kind: 0 m32fp 1 m64fp 2 m16int
 * 3 m32int 4 m64int; trunc: fisttp. */
static bool store_mem(struct emu_cpu *c, const struct emu_fpu_insn *in, int kind, bool trunc)
{
	static const int size[5] = { 4, 8, 2, 4, 8 };
	uint64_t v = 0;
	uint16_t saved, sw = 0;
	f80 x;

	if (!get(c, 0, &x))
		return false;
	saved = host_enter(c->fpu.fcw);
#define ST(insn, var) asm volatile(insn " %[m]\n\tfnstsw %[sw]" : [m] "=m"(var), [sw] "=m"(sw) : "t"(x))
#define STP(insn, var) asm volatile(insn " %[m]\n\tfnstsw %[sw]" : [m] "=m"(var), [sw] "=m"(sw) : "t"(x) : "st")
	switch (kind) {
	case 0: {
		uint32_t f;

		ST("fsts", f);
		v = f;
		break;
	}
	case 1: ST("fstl", v); break;
	case 2: {
		uint16_t i;

		if (trunc)
			STP("fisttps", i);
		else
			ST("fists", i);
		v = i;
		break;
	}
	case 3: {
		uint32_t i;

		if (trunc)
			STP("fisttpl", i);
		else
			ST("fistl", i);
		v = i;
		break;
	}
	default:
		if (trunc)
			STP("fisttpll", v);
		else
			STP("fistpll", v);
		break;
	}
#undef STP
#undef ST
	if (!host_done(c, leave_sw(saved, sw), SW_C1))
		return false;
	mwrite(c, in, 0, size[kind], v);
	return true;
}

/* ---- environment (protected-mode 32-bit layout, SDM vol. 1 fig. 8-9) ---- */

static unsigned full_tag(const struct emu_cpu *c)
{
	unsigned tw = 0;

	for (int p = 0; p < 8; p++) {
		unsigned t;
		uint8_t b[16];
		uint16_t exp;
		uint64_t man;

		memcpy(b, &c->fpu.st[p], 16);
		memcpy(&man, b, 8);
		memcpy(&exp, b + 8, 2);
		exp &= 0x7fff;
		if (!((c->fpu.ftw >> p) & 1))
			t = 3;
		else if (exp == 0x7fff || (exp == 0 && man) || (exp && !(man >> 63)))
			t = 2;
		else if (!exp && !man)
			t = 1;
		else
			t = 0;
		tw |= t << (2 * p);
	}
	return tw;
}

static void store_env(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	const struct emu_fpu *f = &c->fpu;

	if (in->opsize == 2)
		x87_undef(c, in);
	probe(c, in, 28);
	mwrite(c, in, 0, 4, 0xffff0000u | f->fcw);
	mwrite(c, in, 4, 4, 0xffff0000u | f->fsw);
	mwrite(c, in, 8, 4, 0xffff0000u | full_tag(c));
	mwrite(c, in, 12, 4, (uint32_t)f->fip);
	mwrite(c, in, 16, 4, (uint32_t)f->fop << 16);
	mwrite(c, in, 20, 4, (uint32_t)f->fdp);
	mwrite(c, in, 24, 4, 0xffff0000u);
}

static void load_env(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	struct emu_fpu *f = &c->fpu;
	uint16_t cw, sw, tw;
	uint32_t ip, op, dp;
	uint8_t ftw = 0;

	if (in->opsize == 2)
		x87_undef(c, in);
	cw = (uint16_t)mread(c, in, 0, 2);
	sw = (uint16_t)mread(c, in, 4, 2);
	tw = (uint16_t)mread(c, in, 8, 2);
	ip = (uint32_t)mread(c, in, 12, 4);
	op = (uint32_t)mread(c, in, 16, 4);
	dp = (uint32_t)mread(c, in, 20, 4);
	for (int p = 0; p < 8; p++)
		if (((tw >> (2 * p)) & 3) != 3)
			ftw |= (uint8_t)(1u << p);
	f->fcw = cw;
	f->fsw = sw;
	f->ftw = ftw;
	f->fip = ip;
	f->fop = (uint16_t)((op >> 16) & 0x7ff);
	f->fdp = dp;
	update_es(c);
}

static void fninit(struct emu_cpu *c)
{
	struct emu_fpu *f = &c->fpu;

	f->fcw = 0x37f;
	f->fsw = 0;
	f->ftw = 0;
	f->fop = 0;
	f->fip = f->fdp = 0;
}

/* ---- instructions ---- */

void emu_x87_wait(struct emu_cpu *c)
{
	if ((c->cr0 & (X86_CR0_TS | X86_CR0_MP)) == (X86_CR0_TS | X86_CR0_MP))
		emu_fault(c, EXC_NM, 0);
	if (c->fpu.fsw & SW_ES)
		emu_fault(c, EXC_MF, 0);
}

/* D9 E0-FF and the constants: operations on ST(0). */
static void d9_misc(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	uint8_t m = in->modrm;
	uint16_t saved, sw = 0;
	f80 x, y, r, r2;

	if (m >= 0xe8 && m <= 0xee) { /* fld1 fldl2t fldl2e fldpi fldlg2 fldln2 fldz */
		saved = host_enter(c->fpu.fcw);
		switch (m) {
		case 0xe8: asm volatile("fld1" : "=t"(r)); break;
		case 0xe9: asm volatile("fldl2t" : "=t"(r)); break;
		case 0xea: asm volatile("fldl2e" : "=t"(r)); break;
		case 0xeb: asm volatile("fldpi" : "=t"(r)); break;
		case 0xec: asm volatile("fldlg2" : "=t"(r)); break;
		case 0xed: asm volatile("fldln2" : "=t"(r)); break;
		default: asm volatile("fldz" : "=t"(r)); break;
		}
		(void)host_leave(saved);
		c->fpu.fsw &= (uint16_t)~SW_C1;
		push(c, r);
		return;
	}
	switch (m) {
	case 0xf6: /* fdecstp */
	case 0xf7: /* fincstp */
		c->fpu.fsw &= (uint16_t)~SW_C1;
		set_top(c, top(c) + (m == 0xf7 ? 1 : -1));
		return;
	case 0xe5: /* fxam */
		x = c->fpu.st[phys(c, 0)];
		asm volatile("fxam\n\tfnstsw %0" : "=a"(sw) : "t"(x));
		if (is_empty(c, 0))
			sw = (uint16_t)((sw & SW_C1) | SW_C3 | SW_C0);
		c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~SW_CC) | (sw & SW_CC));
		return;
	default:
		break;
	}
	if (!get(c, 0, &x))
		return;
	switch (m) {
	case 0xe0: /* fchs */
	case 0xe1: { /* fabs */
		uint8_t b[16];

		memcpy(b, &x, sizeof(x));
		b[9] = m == 0xe0 ? b[9] ^ 0x80 : b[9] & 0x7f;
		memcpy(&x, b, sizeof(x));
		c->fpu.fsw &= (uint16_t)~SW_C1;
		put(c, 0, x);
		return;
	}
	case 0xe4: /* ftst */
		compare(c, x, 0.0L, false);
		return;
	case 0xf2: /* fptan */
	case 0xfb: /* fsincos */
	case 0xfe: /* fsin */
	case 0xff: /* fcos */
		if (__builtin_isfinite(x) && __builtin_fabsl(x) >= 0x1p63L) {
			c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~SW_C2) | SW_C2); /* out of range */
			return;
		}
		c->fpu.fsw &= (uint16_t)~SW_C2;
		saved = host_enter(c->fpu.fcw);
		r2 = 0;
		if (m == 0xf2)
			asm volatile("fptan\n\tfnstsw %[sw]" : "=t"(r2), "=u"(r), [sw] "=m"(sw) : "0"(x));
		else if (m == 0xfb)
			asm volatile("fsincos\n\tfnstsw %[sw]" : "=t"(r2), "=u"(r), [sw] "=m"(sw) : "0"(x));
		else if (m == 0xfe)
			asm volatile("fsin\n\tfnstsw %[sw]" : "=t"(r), [sw] "=m"(sw) : "0"(x));
		else
			asm volatile("fcos\n\tfnstsw %[sw]" : "=t"(r), [sw] "=m"(sw) : "0"(x));
		if (!host_done(c, leave_sw(saved, sw), SW_C1))
			return;
		put(c, 0, r);
		if (m == 0xf2 || m == 0xfb)
			push_keep_c1(c, r2);
		return;
	case 0xf4: /* fxtract */
		saved = host_enter(c->fpu.fcw);
		asm volatile("fxtract\n\tfnstsw %[sw]" : "=t"(r2), "=u"(r), [sw] "=m"(sw) : "0"(x));
		if (!host_done(c, leave_sw(saved, sw), SW_C1))
			return;
		put(c, 0, r);
		push_keep_c1(c, r2);
		return;
	case 0xf0: /* f2xm1 */
	case 0xfa: /* fsqrt */
	case 0xfc: /* frndint */
		saved = host_enter(c->fpu.fcw);
		if (m == 0xf0)
			asm volatile("f2xm1\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw));
		else if (m == 0xfa)
			asm volatile("fsqrt\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw));
		else
			asm volatile("frndint\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw));
		if (host_done(c, leave_sw(saved, sw), SW_C1))
			put(c, 0, x);
		return;
	default:
		break;
	}
	/* Two operands: ST(0) and ST(1). */
	if (!get(c, 1, &y))
		return;
	saved = host_enter(c->fpu.fcw);
	switch (m) {
	case 0xf1: /* fyl2x: ST(1) = ST(1) * log2(ST(0)), pop */
		asm volatile("fyl2x\n\tfnstsw %[sw]" : "=t"(r), [sw] "=m"(sw) : "0"(x), "u"(y) : "st(1)");
		break;
	case 0xf9: /* fyl2xp1 */
		asm volatile("fyl2xp1\n\tfnstsw %[sw]" : "=t"(r), [sw] "=m"(sw) : "0"(x), "u"(y) : "st(1)");
		break;
	case 0xf3: /* fpatan: ST(1) = atan(ST(1) / ST(0)), pop */
		asm volatile("fpatan\n\tfnstsw %[sw]" : "=t"(r), [sw] "=m"(sw) : "0"(x), "u"(y) : "st(1)");
		break;
	case 0xf5: /* fprem1 */
		asm volatile("fprem1\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw) : "u"(y));
		r = x;
		break;
	case 0xf8: /* fprem */
		asm volatile("fprem\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw) : "u"(y));
		r = x;
		break;
	case 0xfd: /* fscale */
		asm volatile("fscale\n\tfnstsw %[sw]" : "+t"(x), [sw] "=m"(sw) : "u"(y));
		r = x;
		break;
	default:
		(void)host_leave(saved);
		x87_undef(c, in);
	}
	if (m == 0xf5 || m == 0xf8) {
		if (host_done(c, leave_sw(saved, sw), SW_CC))
			put(c, 0, r);
	} else if (m == 0xfd) {
		if (host_done(c, leave_sw(saved, sw), SW_C1))
			put(c, 0, r);
	} else if (host_done(c, leave_sw(saved, sw), SW_C1)) {
		put(c, 1, r);
		pop(c);
	}
}

static bool fcmov_cond(const struct emu_cpu *c, uint8_t opc, int sub)
{
	uint64_t f = c->flags;
	bool t;

	switch (sub & 3) {
	case 0: t = f & F_CF; break;
	case 1: t = f & F_ZF; break;
	case 2: t = f & (F_CF | F_ZF); break;
	default: t = f & F_PF; break;
	}
	return opc == 0xda ? t : !t;
}

static void x87_reg(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	const uint8_t o = in->opc, m = in->modrm;
	const int sub = (m >> 3) & 7, i = m & 7;
	f80 a, b;

	switch (o) {
	case 0xd8: /* op ST(0), ST(i) */
		if (get(c, 0, &a) && get(c, i, &b))
			arith_reg(c, sub, 0, a, b);
		return;
	case 0xdc: /* op ST(i), ST(0): sub/subr and div/divr swapped */
	case 0xde: /* ... and pop */
		if (o == 0xde && sub == 3) { /* fcompp (DE D9) */
			if (m != 0xd9)
				x87_undef(c, in);
			if (get(c, 0, &a) && get(c, 1, &b)) {
				compare(c, a, b, false);
				pop(c);
				pop(c);
			}
			return;
		}
		if (get(c, i, &a) && get(c, 0, &b)) {
			if (sub == A_COM || sub == A_COMP)
				arith_reg(c, sub, 0, b, a);
			else
				arith_reg(c, sub >= 4 ? sub ^ 1 : sub, i, a, b);
			if (o == 0xde && sub != A_COMP)
				pop(c);
		}
		return;
	case 0xd9:
		switch (sub) {
		case 0: /* fld ST(i) */
			if (get(c, i, &a))
				push(c, a);
			return;
		case 1: /* fxch */
			if (get(c, 0, &a) && get(c, i, &b)) {
				put(c, 0, b);
				put(c, i, a);
			}
			c->fpu.fsw &= (uint16_t)~SW_C1;
			return;
		case 2:
			if (m != 0xd0)
				x87_undef(c, in);
			return; /* fnop */
		case 3: /* fstp1 alias */
			if (get(c, 0, &a)) {
				put(c, i, a);
				pop(c);
			}
			return;
		default:
			d9_misc(c, in);
			return;
		}
	case 0xda:
	case 0xdb:
		if (sub < 4) { /* fcmov */
			if (get(c, i, &a) && fcmov_cond(c, o, sub))
				put(c, 0, a);
			return;
		}
		if (o == 0xda) {
			if (m != 0xe9) /* fucompp */
				x87_undef(c, in);
			if (get(c, 0, &a) && get(c, 1, &b)) {
				compare(c, a, b, true);
				pop(c);
				pop(c);
			}
			return;
		}
		if (sub == 5 || sub == 6) /* fucomi fcomi */
			goto comi;
		if (m == 0xe2) { /* fnclex */
			c->fpu.fsw &= 0x7f00;
			return;
		}
		if (m == 0xe3) { /* fninit */
			fninit(c);
			return;
		}
		if (m == 0xe0 || m == 0xe1 || m == 0xe4)
			return; /* feni fdisi fsetpm: no-ops on later parts */
		x87_undef(c, in);
	case 0xdd:
		switch (sub) {
		case 0: /* ffree */
			c->fpu.ftw &= (uint8_t)~(1u << phys(c, i));
			return;
		case 2: /* fst ST(i) */
		case 3: /* fstp ST(i) */
			if (get(c, 0, &a)) {
				put(c, i, a);
				if (sub == 3)
					pop(c);
			}
			return;
		case 4: /* fucom */
		case 5: /* fucomp */
			if (get(c, 0, &a) && get(c, i, &b)) {
				compare(c, a, b, true);
				if (sub == 5)
					pop(c);
			}
			return;
		default:
			x87_undef(c, in);
		}
	default: /* 0xdf */
		if (m == 0xe0) { /* fnstsw ax */
			c->r[R_RAX] = (c->r[R_RAX] & ~0xffffULL) | c->fpu.fsw;
			return;
		}
		if (sub == 5 || sub == 6) /* fucomip fcomip */
			goto comi;
		if (sub == 0) { /* ffreep */
			c->fpu.ftw &= (uint8_t)~(1u << phys(c, i));
			pop(c);
			return;
		}
		x87_undef(c, in);
	}
comi:
	if (get(c, 0, &a) && get(c, i, &b)) {
		uint16_t keep = c->fpu.fsw & SW_CC;

		c->fpu.fsw &= (uint16_t)~SW_CC;
		if (compare(c, a, b, sub == 5)) {
			uint16_t sw = c->fpu.fsw;

			c->flags = (c->flags & ~(uint64_t)F_ARITH) | ((sw & SW_C0) ? F_CF : 0) |
				   ((sw & SW_C2) ? F_PF : 0) | ((sw & SW_C3) ? F_ZF : 0);
		}
		c->fpu.fsw = (uint16_t)((c->fpu.fsw & ~SW_CC) | keep);
		if (o == 0xdf)
			pop(c);
	}
}

static void x87_mem(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	const uint8_t o = in->opc;
	const int sub = (in->modrm >> 3) & 7;
	f80 a;

	switch (o) {
	case 0xd8: /* op ST(0), m32fp */
	case 0xda: /* m32int */
	case 0xdc: /* m64fp */
	case 0xde: { /* m16int */
		struct src m = { 0 };

		if (o == 0xd8 || o == 0xdc) {
			m.kind = o == 0xd8 ? 1 : 2;
			m.raw = mread(c, in, 0, o == 0xd8 ? 4 : 8);
		} else if (!load_mem(c, in, o == 0xda ? 3 : 2, &m.v)) {
			return;
		}
		if (get(c, 0, &a) && arith(c, sub, 0, a, &m) && sub == A_COMP)
			pop(c);
		return;
	}
	case 0xd9:
		switch (sub) {
		case 0: /* fld m32fp */
			if (load_mem(c, in, 0, &a))
				push(c, a);
			return;
		case 2: /* fst m32fp */
		case 3: /* fstp */
			if (store_mem(c, in, 0, false) && sub == 3)
				pop(c);
			return;
		case 4: /* fldenv */
			load_env(c, in);
			return;
		case 5: /* fldcw */
			c->fpu.fcw = (uint16_t)mread(c, in, 0, 2);
			update_es(c);
			return;
		case 6: /* fnstenv: then masks all exceptions */
			store_env(c, in);
			c->fpu.fcw |= 0x3f;
			update_es(c);
			return;
		case 7: /* fnstcw */
			mwrite(c, in, 0, 2, c->fpu.fcw);
			return;
		default:
			x87_undef(c, in);
		}
	case 0xdb:
		switch (sub) {
		case 0: /* fild m32int */
			if (load_mem(c, in, 3, &a))
				push(c, a);
			return;
		case 1: /* fisttp m32int */
		case 2: /* fist */
		case 3: /* fistp */
			if (store_mem(c, in, 3, sub == 1) && sub != 2)
				pop(c);
			return;
		case 5: /* fld m80 */
			a = read80(c, in, 0);
			push(c, a);
			return;
		case 7: /* fstp m80 */
			if (!get(c, 0, &a))
				return;
			probe(c, in, 10);
			write80(c, in, 0, a);
			pop(c);
			return;
		default:
			x87_undef(c, in);
		}
	case 0xdd:
		switch (sub) {
		case 0: /* fld m64fp */
			if (load_mem(c, in, 1, &a))
				push(c, a);
			return;
		case 1: /* fisttp m64int */
			if (store_mem(c, in, 4, true))
				pop(c);
			return;
		case 2: /* fst m64fp */
		case 3: /* fstp */
			if (store_mem(c, in, 1, false) && sub == 3)
				pop(c);
			return;
		case 4: { /* frstor */
			f80 v[8];

			for (int i = 0; i < 8; i++)
				v[i] = read80(c, in, 28 + 10 * i);
			load_env(c, in);
			for (int i = 0; i < 8; i++)
				c->fpu.st[phys(c, i)] = v[i];
			return;
		}
		case 6: /* fnsave */
			probe(c, in, 108);
			store_env(c, in);
			for (int i = 0; i < 8; i++)
				write80(c, in, 28 + 10 * i, c->fpu.st[phys(c, i)]);
			fninit(c);
			return;
		case 7: /* fnstsw m16 */
			mwrite(c, in, 0, 2, c->fpu.fsw);
			return;
		default:
			x87_undef(c, in);
		}
	default: /* 0xdf */
		switch (sub) {
		case 0: /* fild m16int */
		case 5: /* fild m64int */
			if (load_mem(c, in, sub ? 4 : 2, &a))
				push(c, a);
			return;
		case 1: /* fisttp m16int */
		case 2: /* fist */
		case 3: /* fistp */
			if (store_mem(c, in, 2, sub == 1) && sub != 2)
				pop(c);
			return;
		case 7: /* fistp m64int */
			if (store_mem(c, in, 4, false))
				pop(c);
			return;
		default: /* fbld fbstp */
			x87_undef(c, in);
		}
	}
}

/* Control instructions: they neither wait for pending exceptions nor
 * update the last-instruction pointers. */
static bool is_control(const struct emu_fpu_insn *in)
{
	const int sub = (in->modrm >> 3) & 7;

	if (in->mem)
		return (in->opc == 0xd9 && sub >= 4) || (in->opc == 0xdd && (sub == 4 || sub >= 6));
	return (in->opc == 0xdb && (in->modrm == 0xe2 || in->modrm == 0xe3)) ||
	       (in->opc == 0xdf && in->modrm == 0xe0);
}

void emu_x87_exec(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	if (!is_control(in)) {
		if (c->fpu.fsw & SW_ES)
			emu_fault(c, EXC_MF, 0);
		c->fpu.fop = (uint16_t)(((in->opc & 7u) << 8) | in->modrm);
		c->fpu.fip = c->insn_rip;
		if (in->mem)
			c->fpu.fdp = in->ea;
	}
	if (in->mem)
		x87_mem(c, in);
	else
		x87_reg(c, in);
}
