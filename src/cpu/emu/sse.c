/* SSE and SSE2 (0F xx with none/66/F3/F2), fxsave/fxrstor, ldmxcsr/stmxcsr.
 *
 * Register-to-register arithmetic runs on the host's own SSE unit: the
 * operands are copied into host XMM registers and the same instruction is
 * executed on them, with the guest's MXCSR (rounding, FTZ, DAZ) loaded and
 * every exception masked; the exception flags it raised are then merged
 * into the guest MXCSR. That gives bit-exact results and flags (NaN
 * propagation, denormals, rcpps/rsqrtps approximations as a native run
 * would see them) without re-deriving IEEE corner cases in C. Moves,
 * shuffles and the GPR forms are plain C. This file therefore needs an
 * x86-64 host, like the x87 side (x87.c) and the emulator as a whole.
 *
 * An unmasked SIMD exception leaves the destination unchanged, sets the
 * flag, and raises #XM (#UD when CR4.OSXMMEXCPT is clear), as the SDM
 * describes. Detection is that of the masked run, which can differ from
 * hardware only for underflow (unmasked underflow also fires on exact
 * tiny results). MMX (no-prefix integer forms) is not implemented and
 * not advertised: those opcodes raise #UD. */
#include <errno.h>
#include <stdio.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"

typedef long long v128 __attribute__((vector_size(16)));

#define MXCSR_DEFAULT 0x1f80u

enum { P_NONE, P_66, P_F3, P_F2 };

static int pidx(uint8_t pfx)
{
	switch (pfx) {
	case 0x66: return P_66;
	case 0xf3: return P_F3;
	case 0xf2: return P_F2;
	default: return P_NONE;
	}
}

/* The guest's MXCSR is loaded into the host's to run its operations, so
 * the guest may set only bits the host accepts too (DAZ is the one that
 * varies), and none beyond the architectural 16. */
static uint32_t host_mxcsr_mask(void)
{
	uint8_t img[512] __attribute__((aligned(16)));
	uint32_t m;

	memset(img, 0, sizeof(img));
	asm volatile("fxsave %0" : "=m"(img));
	memcpy(&m, img + 28, 4);
	return (m ? m : 0xffbfu) & 0xffffu; /* 0: the SDM's default mask */
}

void emu_fpu_reset(struct emu_cpu *c)
{
	memset(&c->fpu, 0, sizeof(c->fpu));
	c->fpu.fcw = 0x37f;
	c->fpu.mxcsr = MXCSR_DEFAULT;
	c->fpu.mxcsr_mask = host_mxcsr_mask();
}

static _Noreturn void sse_undef(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	pr_warn_ratelimited("emu: vcpu %d: unimplemented SSE instruction at rip 0x%llx: "
			    "prefix %02x 0f %02x /%d",
			    c->vcpu ? c->vcpu->id : -1, (unsigned long long)c->insn_rip, in->pfx,
			    in->opc, in->reg & 7);
	emu_fault(c, EXC_UD, 0);
}

/* #UD without OSFXSR or with EM, #NM with TS (SDM vol. 2, SSE exceptions). */
static void sse_check(struct emu_cpu *c)
{
	if ((c->cr0 & X86_CR0_EM) || !(c->cr4 & X86_CR4_OSFXSR))
		emu_fault(c, EXC_UD, 0);
	if (c->cr0 & X86_CR0_TS)
		emu_fault(c, EXC_NM, 0);
}

/* ---- registers and memory ---- */

static v128 xget(const struct emu_cpu *c, int r)
{
	v128 v;

	memcpy(&v, c->fpu.xmm[r], 16);
	return v;
}

static void xset(struct emu_cpu *c, int r, v128 v)
{
	memcpy(c->fpu.xmm[r], &v, 16);
}

static uint64_t lin16(struct emu_cpu *c, const struct emu_fpu_insn *in, int size, enum acc acc,
		      bool align)
{
	uint64_t lin = emu_linear(c, in->seg, in->ea, size, acc);

	if (align && (lin & 15))
		emu_fault(c, EXC_GP, 0);
	return lin;
}

/* Fault now, before anything is written, if [lin, lin+len) is not all
 * writable (the accessors check one page at a time). */
static void probe_write(struct emu_cpu *c, uint64_t lin, unsigned len)
{
	if ((lin & 0xfff) + len > 4096) {
		(void)emu_rmw_ptr(c, lin, 1);
		(void)emu_rmw_ptr(c, emu_next_page(c, lin), 1);
	}
}

/* Source operand: the rm register or size bytes of memory (zero-extended). */
static v128 src_op(struct emu_cpu *c, const struct emu_fpu_insn *in, int size, bool align)
{
	v128 v = { 0, 0 };

	if (!in->mem)
		return xget(c, in->rm);
	if (size == 16) {
		uint64_t lin = lin16(c, in, 16, ACC_R, align);

		v[0] = (long long)emu_read_lin(c, lin, 8);
		v[1] = (long long)emu_read_lin(c, lin + 8, 8);
	} else {
		v[0] = (long long)emu_read(c, in->seg, in->ea, size);
	}
	return v;
}

/* Store to the rm operand: the whole register, or size bytes of memory. */
static void store_op(struct emu_cpu *c, const struct emu_fpu_insn *in, int size, bool align, v128 v)
{
	if (!in->mem) {
		xset(c, in->rm, v);
		return;
	}
	if (size == 16) {
		uint64_t lin = lin16(c, in, 16, ACC_W, align);

		probe_write(c, lin, 16);
		emu_write_lin(c, lin, 8, (uint64_t)v[0]);
		emu_write_lin(c, lin + 8, 8, (uint64_t)v[1]);
	} else {
		emu_write(c, in->seg, in->ea, size, (uint64_t)v[0]);
	}
}

static uint64_t gpr_src(struct emu_cpu *c, const struct emu_fpu_insn *in, int size)
{
	if (in->mem)
		return emu_read(c, in->seg, in->ea, size);
	return c->r[in->rm] & emu_size_mask(size);
}

/* ---- host execution ---- */

static inline uint32_t mx_enter(uint32_t guest)
{
	uint32_t saved, m = (guest & ~0x3fu) | 0x1f80u;

	asm volatile("stmxcsr %0\n\tldmxcsr %1" : "=m"(saved) : "m"(m) : "memory");
	return saved;
}

/* Restores the host MXCSR; returns the flags the guest operation raised. */
static inline uint32_t mx_leave(uint32_t saved)
{
	uint32_t m;

	asm volatile("stmxcsr %0\n\tldmxcsr %1" : "=m"(m) : "m"(saved) : "memory");
	return m & 0x3f;
}

/* Merge flags; an unmasked one aborts the instruction before it commits. */
static void mx_done(struct emu_cpu *c, uint32_t flags)
{
	uint32_t unmasked = flags & ~(c->fpu.mxcsr >> 7) & 0x3f;

	/* An unmasked invalid, denormal or divide-by-zero exception is found
	 * before anything is computed (SDM vol. 1, 11.5.1): the flags of the
	 * computation (overflow, underflow, precision) are not raised.
	 * (Unmasked overflow and underflow are not right yet: the CPU then
	 * reports underflow for exact tiny results too, and precision as of
	 * the unrounded exponent; flags here come from a masked run.) */
	if (unmasked & 0x7)
		flags &= 0x7;
	c->fpu.mxcsr |= flags;
	if (unmasked)
		emu_fault(c, (c->cr4 & X86_CR4_OSXMMEXCPT) ? EXC_XM : EXC_UD, 0);
}

typedef void host_fn(v128 *d, v128 s);

#define HOST(name, insn)                                                        \
	static void h_##name(v128 *d, v128 s)                                   \
	{                                                                       \
		asm volatile(insn " %1, %0" : "+x"(*d) : "x"(s));               \
	}

/* Floating point (MXCSR-dependent). */
HOST(sqrtps, "sqrtps") HOST(sqrtpd, "sqrtpd") HOST(sqrtss, "sqrtss") HOST(sqrtsd, "sqrtsd")
HOST(rsqrtps, "rsqrtps") HOST(rsqrtss, "rsqrtss") HOST(rcpps, "rcpps") HOST(rcpss, "rcpss")
HOST(addps, "addps") HOST(addpd, "addpd") HOST(addss, "addss") HOST(addsd, "addsd")
HOST(mulps, "mulps") HOST(mulpd, "mulpd") HOST(mulss, "mulss") HOST(mulsd, "mulsd")
HOST(subps, "subps") HOST(subpd, "subpd") HOST(subss, "subss") HOST(subsd, "subsd")
HOST(minps, "minps") HOST(minpd, "minpd") HOST(minss, "minss") HOST(minsd, "minsd")
HOST(divps, "divps") HOST(divpd, "divpd") HOST(divss, "divss") HOST(divsd, "divsd")
HOST(maxps, "maxps") HOST(maxpd, "maxpd") HOST(maxss, "maxss") HOST(maxsd, "maxsd")
HOST(cvtps2pd, "cvtps2pd") HOST(cvtpd2ps, "cvtpd2ps") HOST(cvtss2sd, "cvtss2sd")
HOST(cvtsd2ss, "cvtsd2ss") HOST(cvtdq2ps, "cvtdq2ps") HOST(cvtps2dq, "cvtps2dq")
HOST(cvttps2dq, "cvttps2dq") HOST(cvttpd2dq, "cvttpd2dq") HOST(cvtdq2pd, "cvtdq2pd")
HOST(cvtpd2dq, "cvtpd2dq")
/* Bitwise and integer. */
HOST(andps, "andps") HOST(andnps, "andnps") HOST(orps, "orps") HOST(xorps, "xorps")
HOST(unpcklps, "unpcklps") HOST(unpcklpd, "unpcklpd") HOST(unpckhps, "unpckhps")
HOST(unpckhpd, "unpckhpd")
HOST(punpcklbw, "punpcklbw") HOST(punpcklwd, "punpcklwd") HOST(punpckldq, "punpckldq")
HOST(packsswb, "packsswb") HOST(pcmpgtb, "pcmpgtb") HOST(pcmpgtw, "pcmpgtw")
HOST(pcmpgtd, "pcmpgtd") HOST(packuswb, "packuswb") HOST(punpckhbw, "punpckhbw")
HOST(punpckhwd, "punpckhwd") HOST(punpckhdq, "punpckhdq") HOST(packssdw, "packssdw")
HOST(punpcklqdq, "punpcklqdq") HOST(punpckhqdq, "punpckhqdq")
HOST(pcmpeqb, "pcmpeqb") HOST(pcmpeqw, "pcmpeqw") HOST(pcmpeqd, "pcmpeqd")
HOST(psrlw, "psrlw") HOST(psrld, "psrld") HOST(psrlq, "psrlq") HOST(paddq, "paddq")
HOST(pmullw, "pmullw") HOST(psubusb, "psubusb") HOST(psubusw, "psubusw")
HOST(pminub, "pminub") HOST(pand, "pand") HOST(paddusb, "paddusb") HOST(paddusw, "paddusw")
HOST(pmaxub, "pmaxub") HOST(pandn, "pandn") HOST(pavgb, "pavgb") HOST(psraw, "psraw")
HOST(psrad, "psrad") HOST(pavgw, "pavgw") HOST(pmulhuw, "pmulhuw") HOST(pmulhw, "pmulhw")
HOST(psubsb, "psubsb") HOST(psubsw, "psubsw") HOST(pminsw, "pminsw") HOST(por, "por")
HOST(paddsb, "paddsb") HOST(paddsw, "paddsw") HOST(pmaxsw, "pmaxsw") HOST(pxor, "pxor")
HOST(psllw, "psllw") HOST(pslld, "pslld") HOST(psllq, "psllq") HOST(pmuludq, "pmuludq")
HOST(pmaddwd, "pmaddwd") HOST(psadbw, "psadbw") HOST(psubb, "psubb") HOST(psubw, "psubw")
HOST(psubd, "psubd") HOST(psubq, "psubq") HOST(paddb, "paddb") HOST(paddw, "paddw")
HOST(paddd, "paddd")

/* Table of the "op xmm, xmm/mem" forms: host function, memory operand
 * size (16: 16-byte aligned), and whether MXCSR applies. */
struct sse_op {
	host_fn *fn;
	uint8_t msz;
	bool fp;
};

#define I(n) { h_##n, 16, false }
#define F(n, sz) { h_##n, sz, true }
#define FOUR(n) { [P_NONE] = F(n##ps, 16), [P_66] = F(n##pd, 16), [P_F3] = F(n##ss, 4), [P_F2] = F(n##sd, 8) }
#define INT66(n) { [P_66] = I(n) }

static const struct sse_op sse_ops[256][4] = {
	[0x14] = { [P_NONE] = I(unpcklps), [P_66] = I(unpcklpd) },
	[0x15] = { [P_NONE] = I(unpckhps), [P_66] = I(unpckhpd) },
	[0x51] = FOUR(sqrt),
	[0x52] = { [P_NONE] = F(rsqrtps, 16), [P_F3] = F(rsqrtss, 4) },
	[0x53] = { [P_NONE] = F(rcpps, 16), [P_F3] = F(rcpss, 4) },
	[0x54] = { [P_NONE] = I(andps), [P_66] = I(andps) },
	[0x55] = { [P_NONE] = I(andnps), [P_66] = I(andnps) },
	[0x56] = { [P_NONE] = I(orps), [P_66] = I(orps) },
	[0x57] = { [P_NONE] = I(xorps), [P_66] = I(xorps) },
	[0x58] = FOUR(add),
	[0x59] = FOUR(mul),
	[0x5a] = { [P_NONE] = F(cvtps2pd, 8), [P_66] = F(cvtpd2ps, 16), [P_F3] = F(cvtss2sd, 4),
		   [P_F2] = F(cvtsd2ss, 8) },
	[0x5b] = { [P_NONE] = F(cvtdq2ps, 16), [P_66] = F(cvtps2dq, 16), [P_F3] = F(cvttps2dq, 16) },
	[0x5c] = FOUR(sub),
	[0x5d] = FOUR(min),
	[0x5e] = FOUR(div),
	[0x5f] = FOUR(max),
	[0x60] = INT66(punpcklbw), [0x61] = INT66(punpcklwd), [0x62] = INT66(punpckldq),
	[0x63] = INT66(packsswb), [0x64] = INT66(pcmpgtb), [0x65] = INT66(pcmpgtw),
	[0x66] = INT66(pcmpgtd), [0x67] = INT66(packuswb), [0x68] = INT66(punpckhbw),
	[0x69] = INT66(punpckhwd), [0x6a] = INT66(punpckhdq), [0x6b] = INT66(packssdw),
	[0x6c] = INT66(punpcklqdq), [0x6d] = INT66(punpckhqdq),
	[0x74] = INT66(pcmpeqb), [0x75] = INT66(pcmpeqw), [0x76] = INT66(pcmpeqd),
	[0xd1] = INT66(psrlw), [0xd2] = INT66(psrld), [0xd3] = INT66(psrlq), [0xd4] = INT66(paddq),
	[0xd5] = INT66(pmullw), [0xd8] = INT66(psubusb), [0xd9] = INT66(psubusw),
	[0xda] = INT66(pminub), [0xdb] = INT66(pand), [0xdc] = INT66(paddusb),
	[0xdd] = INT66(paddusw), [0xde] = INT66(pmaxub), [0xdf] = INT66(pandn),
	[0xe0] = INT66(pavgb), [0xe1] = INT66(psraw), [0xe2] = INT66(psrad), [0xe3] = INT66(pavgw),
	[0xe4] = INT66(pmulhuw), [0xe5] = INT66(pmulhw),
	[0xe6] = { [P_66] = F(cvttpd2dq, 16), [P_F3] = F(cvtdq2pd, 8), [P_F2] = F(cvtpd2dq, 16) },
	[0xe8] = INT66(psubsb), [0xe9] = INT66(psubsw), [0xea] = INT66(pminsw), [0xeb] = INT66(por),
	[0xec] = INT66(paddsb), [0xed] = INT66(paddsw), [0xee] = INT66(pmaxsw), [0xef] = INT66(pxor),
	[0xf1] = INT66(psllw), [0xf2] = INT66(pslld), [0xf3] = INT66(psllq), [0xf4] = INT66(pmuludq),
	[0xf5] = INT66(pmaddwd), [0xf6] = INT66(psadbw), [0xf8] = INT66(psubb), [0xf9] = INT66(psubw),
	[0xfa] = INT66(psubd), [0xfb] = INT66(psubq), [0xfc] = INT66(paddb), [0xfd] = INT66(paddw),
	[0xfe] = INT66(paddd),
};

/* cmpps/cmppd/cmpss/cmpsd with predicate imm & 7 (the others are VEX-only). */
#define CMPN(insn, n)                                                           \
	case n: asm volatile(insn " $" #n ", %1, %0" : "+x"(*d) : "x"(s)); break;
#define CMPALL(insn)                                                            \
	switch (imm & 7) {                                                      \
	CMPN(insn, 0) CMPN(insn, 1) CMPN(insn, 2) CMPN(insn, 3)                 \
	CMPN(insn, 4) CMPN(insn, 5) CMPN(insn, 6) default: CMPN(insn, 7)        \
	}

static void host_cmp(int p, unsigned imm, v128 *d, v128 s)
{
	switch (p) {
	case P_NONE: CMPALL("cmpps"); break;
	case P_66: CMPALL("cmppd"); break;
	case P_F3: CMPALL("cmpss"); break;
	default: CMPALL("cmpsd"); break;
	}
}

/* cvt(t)ss2si / cvt(t)sd2si. */
static uint64_t host_cvt2si(uint8_t opc, int p, bool q, v128 s)
{
	uint64_t r64 = 0;
	uint32_t r32 = 0;

#define CVT(insn) do { if (q) asm volatile(insn " %1, %0" : "=r"(r64) : "x"(s)); \
		       else asm volatile(insn " %1, %0" : "=r"(r32) : "x"(s)); } while (0)
	if (p == P_F3) {
		if (opc == 0x2c)
			CVT("cvttss2si");
		else
			CVT("cvtss2si");
	} else {
		if (opc == 0x2c)
			CVT("cvttsd2si");
		else
			CVT("cvtsd2si");
	}
#undef CVT
	return q ? r64 : r32;
}

/* ---- C helpers ---- */

static v128 shuffle_words(v128 s, unsigned imm, int half)
{
	uint16_t w[8], r[8];

	memcpy(w, &s, 16);
	memcpy(r, w, 16);
	for (int i = 0; i < 4; i++)
		r[half * 4 + i] = w[half * 4 + ((imm >> (2 * i)) & 3)];
	memcpy(&s, r, 16);
	return s;
}

static v128 byte_shift(v128 s, unsigned n, bool left)
{
	uint8_t b[16], r[16] = { 0 };

	memcpy(b, &s, 16);
	if (n < 16) {
		if (left)
			memcpy(r + n, b, 16 - n);
		else
			memcpy(r, b + n, 16 - n);
	}
	memcpy(&s, r, 16);
	return s;
}

static void set_gpr32(struct emu_cpu *c, int r, uint64_t v, bool q)
{
	c->r[r] = q ? v : (uint32_t)v;
}

/* ---- fxsave / fxrstor (SDM vol. 1 10.5.1, table 10-2) ---- */

#define FXSAVE_SIZE 512

static void fx_image(struct emu_cpu *c, uint8_t *b, bool w64)
{
	const struct emu_fpu *f = &c->fpu;
	int top = (f->fsw >> 11) & 7;
	uint32_t mask = f->mxcsr_mask;

	memset(b, 0, 416);
	memcpy(b + 0, &f->fcw, 2);
	memcpy(b + 2, &f->fsw, 2);
	b[4] = f->ftw;
	memcpy(b + 6, &f->fop, 2);
	if (w64) {
		memcpy(b + 8, &f->fip, 8);
		memcpy(b + 16, &f->fdp, 8);
	} else { /* FCS/FDS stored as 0: deprecated, as on current CPUs */
		memcpy(b + 8, &f->fip, 4);
		memcpy(b + 16, &f->fdp, 4);
	}
	memcpy(b + 24, &f->mxcsr, 4);
	memcpy(b + 28, &mask, 4);
	for (int i = 0; i < 8; i++)
		memcpy(b + 32 + 16 * i, &f->st[(top + i) & 7], 10);
	memcpy(b + 160, f->xmm, c->long64 ? 256 : 128);
}

static void fxsave(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	uint8_t b[416];
	int n = c->long64 ? 416 : 288;
	uint64_t lin = lin16(c, in, FXSAVE_SIZE, ACC_W, true);

	probe_write(c, lin, (unsigned)n);
	fx_image(c, b, in->rexw);
	for (int i = 0; i < n; i += 8) {
		uint64_t v;

		memcpy(&v, b + i, 8);
		emu_write_lin(c, lin + (uint64_t)i, 8, v);
	}
}

/* Load an image of n bytes (288: XMM0-7; 416: XMM0-15) with 32-bit (w64
 * false) or 64-bit FIP/FDP. -EINVAL, changing nothing, when MXCSR has bits
 * the mask does not allow. */
static int fx_load(struct emu_cpu *c, const uint8_t *b, int n, bool w64)
{
	struct emu_fpu *f = &c->fpu;
	uint32_t mx;
	int top;

	memcpy(&mx, b + 24, 4);
	if (mx & ~c->fpu.mxcsr_mask)
		return -EINVAL;
	memcpy(&f->fcw, b + 0, 2);
	memcpy(&f->fsw, b + 2, 2);
	f->ftw = b[4];
	memcpy(&f->fop, b + 6, 2);
	f->fop &= 0x7ff;
	f->fip = f->fdp = 0;
	if (w64) {
		memcpy(&f->fip, b + 8, 8);
		memcpy(&f->fdp, b + 16, 8);
	} else {
		memcpy(&f->fip, b + 8, 4);
		memcpy(&f->fdp, b + 16, 4);
	}
	f->mxcsr = mx;
	top = (f->fsw >> 11) & 7;
	for (int i = 0; i < 8; i++) {
		long double *st = &f->st[(top + i) & 7];

		memset(st, 0, sizeof(*st));
		memcpy(st, b + 32 + 16 * i, 10);
	}
	memcpy(f->xmm, b + 160, (size_t)(n - 160));
	return 0;
}

static void fxrstor(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	uint8_t b[416];
	int n = c->long64 ? 416 : 288;
	uint64_t lin = lin16(c, in, FXSAVE_SIZE, ACC_R, true);

	for (int i = 0; i < n; i += 8) {
		uint64_t v = emu_read_lin(c, lin + (uint64_t)i, 8);

		memcpy(b + i, &v, 8);
	}
	if (fx_load(c, b, n, in->rexw))
		emu_fault(c, EXC_GP, 0);
}

void emu_fx_get(struct emu_cpu *c, uint8_t img[512])
{
	bool long64 = c->long64;

	memset(img, 0, 512);
	c->long64 = true; /* all sixteen XMM registers */
	fx_image(c, img, true);
	c->long64 = long64;
}

int emu_fx_set(struct emu_cpu *c, const uint8_t img[512])
{
	return fx_load(c, img, 416, true);
}

static void group15(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	/* fxsave, fxrstor, ldmxcsr, stmxcsr are NP: #UD with 66, F2 or F3. */
	if (in->pfx)
		emu_fault(c, EXC_UD, 0);
	switch (in->reg & 7) {
	case 0: /* fxsave */
	case 1: /* fxrstor */
		if (c->cr0 & (X86_CR0_TS | X86_CR0_EM))
			emu_fault(c, EXC_NM, 0);
		if (in->reg & 1)
			fxrstor(c, in);
		else
			fxsave(c, in);
		return;
	case 2: { /* ldmxcsr */
		uint32_t v;

		sse_check(c);
		v = (uint32_t)emu_read(c, in->seg, in->ea, 4);
		if (v & ~c->fpu.mxcsr_mask)
			emu_fault(c, EXC_GP, 0);
		c->fpu.mxcsr = v;
		return;
	}
	default: /* stmxcsr */
		sse_check(c);
		emu_write(c, in->seg, in->ea, 4, c->fpu.mxcsr);
		return;
	}
}

bool emu_sse_has_imm(uint8_t opc)
{
	return (opc >= 0x70 && opc <= 0x73) || (opc >= 0xc2 && opc <= 0xc6 && opc != 0xc3);
}

void emu_sse_exec(struct emu_cpu *c, const struct emu_fpu_insn *in)
{
	const int p = pidx(in->pfx);
	const uint8_t o = in->opc;
	const int reg = in->reg;
	const struct sse_op *op;
	v128 d, s;

	if (o == 0xae) {
		group15(c, in);
		return;
	}
	if (o == 0xc3) { /* movnti m32/m64, r: integer, no SSE state */
		if (!in->mem || p != P_NONE)
			sse_undef(c, in);
		emu_write(c, in->seg, in->ea, in->rexw ? 8 : 4, c->r[reg]);
		return;
	}
	sse_check(c);

	op = &sse_ops[o][p];
	if (op->fn) {
		s = src_op(c, in, op->msz, true);
		d = xget(c, reg);
		if (op->fp) {
			uint32_t saved = mx_enter(c->fpu.mxcsr);

			op->fn(&d, s);
			mx_done(c, mx_leave(saved));
		} else {
			op->fn(&d, s);
		}
		xset(c, reg, d);
		return;
	}

	switch (o) {
	case 0x10: /* movups movupd movss movsd: load */
	case 0x11: { /* store */
		int size = p == P_F3 ? 4 : p == P_F2 ? 8 : 16;

		if (o == 0x10) {
			s = src_op(c, in, size, false);
			if (size < 16 && !in->mem) { /* register form merges */
				d = xget(c, reg);
				memcpy(&d, &s, (size_t)size);
				s = d;
			}
			xset(c, reg, s);
		} else {
			s = xget(c, reg);
			if (size < 16 && !in->mem) {
				d = xget(c, in->rm);
				memcpy(&d, &s, (size_t)size);
				s = d;
			}
			store_op(c, in, size, false, s);
		}
		return;
	}
	case 0x12: /* movlps/movlpd xmm, m64; movhlps */
	case 0x16: /* movhps/movhpd xmm, m64; movlhps */
		if (p > P_66 || (p == P_66 && !in->mem))
			sse_undef(c, in);
		d = xget(c, reg);
		s = src_op(c, in, 8, false);
		if (o == 0x12)
			d[0] = in->mem ? s[0] : s[1];
		else
			d[1] = s[0];
		xset(c, reg, d);
		return;
	case 0x13: /* movlps/movlpd m64, xmm */
	case 0x17: /* movhps/movhpd m64, xmm */
		if (p > P_66 || !in->mem)
			sse_undef(c, in);
		emu_write(c, in->seg, in->ea, 8, (uint64_t)xget(c, reg)[o == 0x17]);
		return;
	case 0x28: /* movaps movapd */
		if (p > P_66)
			sse_undef(c, in);
		xset(c, reg, src_op(c, in, 16, true));
		return;
	case 0x29:
	case 0x2b: /* movntps movntpd */
		if (p > P_66 || (o == 0x2b && !in->mem))
			sse_undef(c, in);
		store_op(c, in, 16, true, xget(c, reg));
		return;
	case 0x2a: { /* cvtsi2ss cvtsi2sd */
		uint64_t v;
		uint32_t saved;

		if (p < P_F3)
			sse_undef(c, in); /* MMX source forms */
		v = gpr_src(c, in, in->rexw ? 8 : 4);
		d = xget(c, reg);
		saved = mx_enter(c->fpu.mxcsr);
		if (p == P_F3) {
			if (in->rexw)
				asm volatile("cvtsi2ssq %1, %0" : "+x"(d) : "r"(v));
			else
				asm volatile("cvtsi2ssl %1, %0" : "+x"(d) : "r"((uint32_t)v));
		} else {
			if (in->rexw)
				asm volatile("cvtsi2sdq %1, %0" : "+x"(d) : "r"(v));
			else
				asm volatile("cvtsi2sdl %1, %0" : "+x"(d) : "r"((uint32_t)v));
		}
		mx_done(c, mx_leave(saved));
		xset(c, reg, d);
		return;
	}
	case 0x2c: /* cvttss2si cvttsd2si */
	case 0x2d: { /* cvtss2si cvtsd2si */
		uint64_t v;
		uint32_t saved;

		if (p < P_F3)
			sse_undef(c, in);
		s = src_op(c, in, p == P_F3 ? 4 : 8, false);
		saved = mx_enter(c->fpu.mxcsr);
		v = host_cvt2si(o, p, in->rexw, s);
		mx_done(c, mx_leave(saved));
		set_gpr32(c, reg, v, in->rexw);
		return;
	}
	case 0x2e: /* ucomiss ucomisd */
	case 0x2f: { /* comiss comisd */
		bool z, pf, cf;
		uint32_t saved;

		if (p > P_66)
			sse_undef(c, in);
		s = src_op(c, in, p == P_66 ? 8 : 4, false);
		d = xget(c, reg);
		saved = mx_enter(c->fpu.mxcsr);
#define COMI(insn) asm volatile(insn " %[s], %[d]" : "=@ccz"(z), "=@ccp"(pf), "=@ccc"(cf) \
				      : [d] "x"(d), [s] "x"(s))
		if (o == 0x2e && p == P_NONE)
			COMI("ucomiss");
		else if (o == 0x2e)
			COMI("ucomisd");
		else if (p == P_NONE)
			COMI("comiss");
		else
			COMI("comisd");
#undef COMI
		mx_done(c, mx_leave(saved));
		c->flags = (c->flags & ~(uint64_t)F_ARITH) | (z ? F_ZF : 0) | (pf ? F_PF : 0) | (cf ? F_CF : 0);
		return;
	}
	case 0x50: { /* movmskps movmskpd */
		unsigned m = 0;

		if (p > P_66 || in->mem)
			sse_undef(c, in);
		s = xget(c, in->rm);
		if (p == P_66) {
			m = (unsigned)(((uint64_t)s[0] >> 63) | (((uint64_t)s[1] >> 63) << 1));
		} else {
			uint32_t e[4];

			memcpy(e, &s, 16);
			for (int i = 0; i < 4; i++)
				m |= (e[i] >> 31) << i;
		}
		c->r[reg] = m;
		return;
	}
	case 0x6e: /* movd/movq xmm, r/m */
		if (p != P_66)
			sse_undef(c, in);
		d = (v128){ (long long)gpr_src(c, in, in->rexw ? 8 : 4), 0 };
		xset(c, reg, d);
		return;
	case 0x6f: /* movdqa movdqu load */
	case 0x7f: /* store */
		if (p != P_66 && p != P_F3)
			sse_undef(c, in);
		if (o == 0x6f)
			xset(c, reg, src_op(c, in, 16, p == P_66));
		else
			store_op(c, in, 16, p == P_66, xget(c, reg));
		return;
	case 0x70: /* pshufd pshufhw pshuflw */
		if (p == P_NONE)
			sse_undef(c, in);
		s = src_op(c, in, 16, true);
		if (p == P_66) {
			uint32_t e[4], r[4];

			memcpy(e, &s, 16);
			for (int i = 0; i < 4; i++)
				r[i] = e[(in->imm >> (2 * i)) & 3];
			memcpy(&d, r, 16);
		} else {
			d = shuffle_words(s, in->imm, p == P_F3);
		}
		xset(c, reg, d);
		return;
	case 0x71: /* psrlw psraw psllw imm */
	case 0x72: /* psrld psrad pslld imm */
	case 0x73: { /* psrlq psrldq psllq pslldq imm */
		static host_fn *const sh[3][8] = {
			{ [2] = h_psrlw, [4] = h_psraw, [6] = h_psllw },
			{ [2] = h_psrld, [4] = h_psrad, [6] = h_pslld },
			{ [2] = h_psrlq, [6] = h_psllq },
		};
		int sub = reg & 7;

		if (p != P_66 || in->mem)
			sse_undef(c, in);
		d = xget(c, in->rm);
		if (o == 0x73 && (sub == 3 || sub == 7)) {
			d = byte_shift(d, in->imm, sub == 7);
		} else if (sh[o - 0x71][sub]) {
			sh[o - 0x71][sub](&d, (v128){ in->imm, 0 });
		} else {
			sse_undef(c, in);
		}
		xset(c, in->rm, d);
		return;
	}
	case 0x7e: /* movd/movq r/m, xmm; movq xmm, xmm/m64 */
		if (p == P_66) {
			uint64_t v = (uint64_t)xget(c, reg)[0];

			if (in->mem)
				emu_write(c, in->seg, in->ea, in->rexw ? 8 : 4, v);
			else
				set_gpr32(c, in->rm, v, in->rexw);
		} else if (p == P_F3) {
			s = src_op(c, in, 8, false);
			xset(c, reg, (v128){ s[0], 0 });
		} else {
			sse_undef(c, in);
		}
		return;
	case 0xc2: { /* cmpps cmppd cmpss cmpsd */
		static const uint8_t msz[4] = { 16, 16, 4, 8 };
		uint32_t saved;

		s = src_op(c, in, msz[p], true);
		d = xget(c, reg);
		saved = mx_enter(c->fpu.mxcsr);
		host_cmp(p, in->imm, &d, s);
		mx_done(c, mx_leave(saved));
		xset(c, reg, d);
		return;
	}
	case 0xc4: { /* pinsrw xmm, r32/m16, imm */
		uint16_t w;

		if (p != P_66)
			sse_undef(c, in);
		w = (uint16_t)gpr_src(c, in, 2);
		d = xget(c, reg);
		memcpy((uint8_t *)&d + 2 * (in->imm & 7), &w, 2);
		xset(c, reg, d);
		return;
	}
	case 0xc5: { /* pextrw r32, xmm, imm */
		uint16_t w;

		if (p != P_66 || in->mem)
			sse_undef(c, in);
		s = xget(c, in->rm);
		memcpy(&w, (uint8_t *)&s + 2 * (in->imm & 7), 2);
		c->r[reg] = w;
		return;
	}
	case 0xc6: /* shufps shufpd */
		if (p > P_66)
			sse_undef(c, in);
		s = src_op(c, in, 16, true);
		d = xget(c, reg);
		if (p == P_66) {
			d = (v128){ d[in->imm & 1], s[(in->imm >> 1) & 1] };
		} else {
			uint32_t a[4], b[4], r[4];

			memcpy(a, &d, 16);
			memcpy(b, &s, 16);
			r[0] = a[in->imm & 3];
			r[1] = a[(in->imm >> 2) & 3];
			r[2] = b[(in->imm >> 4) & 3];
			r[3] = b[(in->imm >> 6) & 3];
			memcpy(&d, r, 16);
		}
		xset(c, reg, d);
		return;
	case 0xd6: /* movq xmm/m64, xmm */
		if (p != P_66)
			sse_undef(c, in);
		s = xget(c, reg);
		if (in->mem)
			emu_write(c, in->seg, in->ea, 8, (uint64_t)s[0]);
		else
			xset(c, in->rm, (v128){ s[0], 0 });
		return;
	case 0xd7: { /* pmovmskb r32, xmm */
		uint8_t b[16];
		unsigned m = 0;

		if (p != P_66 || in->mem)
			sse_undef(c, in);
		s = xget(c, in->rm);
		memcpy(b, &s, 16);
		for (int i = 0; i < 16; i++)
			m |= (unsigned)(b[i] >> 7) << i;
		c->r[reg] = m;
		return;
	}
	case 0xe7: /* movntdq */
		if (p != P_66 || !in->mem)
			sse_undef(c, in);
		store_op(c, in, 16, true, xget(c, reg));
		return;
	default:
		sse_undef(c, in);
	}
}
