/* Random instruction sequences: an encoder for the user-level integer
 * instructions of 64-bit mode and a generator that strings a few of them
 * together with random operands.
 *
 * Every memory operand, stack access and string operation is made to hit
 * the data page: just before the instruction, `mov r64, imm64` loads its
 * base/index (or RSI/RDI/RCX/RSP) with values whose sum is the chosen
 * address; other registers keep their random values. The generator tracks
 * which RFLAGS bits are undefined (per the SDM) after each instruction,
 * never emits an instruction that reads an undefined flag, and records the
 * set at each instruction start so the comparison can mask them. */
#include <string.h>

#include "difftest.h"

#define CF 0x001u
#define PF 0x004u
#define AF 0x010u
#define ZF 0x040u
#define SF 0x080u
#define OF 0x800u
#define DF 0x400u
#define ARITH (CF | PF | AF | ZF | SF | OF)

enum { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };
#define HIGH8 16 /* byte registers 16-19: ah, ch, dh, bh */
#define RIPREL 16 /* base: RIP-relative */

enum { P_LOCK = 1, P_REP = 2, P_REPNE = 4, P_66W = 8 /* 66 and REX.W: W wins */ };

struct gen {
	uint64_t rs;
	struct dt_case *c;
	unsigned n;	  /* code bytes so far */
	uint32_t undef;	  /* flags undefined now */
	uint32_t defw;	  /* set by the instruction: flags it defines */
	uint32_t newundef; /* ... and flags it leaves undefined */
	bool rsp_ok;	  /* RSP points into the data page's stack area */
	bool opreg;	  /* enc: register in the opcode byte, no ModRM */
	bool in_jcc;	  /* generating the instruction a jcc may skip */
};

/* A ModRM r/m operand: a register or memory. */
struct rm {
	int reg; /* >= 0: a register (byte operands: HIGH8.. for ah-bh); -1: memory */
	int base, index, scale; /* -1: none; base RIPREL: RIP-relative */
	int dispsz;		/* 0, 1 or 4 bytes */
	int64_t disp;
	bool a32;
	bool gs;       /* gs: prefix (GS.base = DT_DATA on both sides) */
	uint64_t addr; /* the linear address it must produce */
};

uint64_t dt_rand(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static uint64_t rnd(struct gen *g)
{
	return dt_rand(&g->rs);
}

static unsigned rn(struct gen *g, unsigned n)
{
	return (unsigned)(rnd(g) % n);
}

static bool pct(struct gen *g, unsigned p)
{
	return rn(g, 100) < p;
}

/* A random value biased towards the edges of each operand size. */
static uint64_t val(struct gen *g)
{
	static const uint64_t edge[] = { 0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff,
					 0x80000000, 0xffffffff, 0x7fffffffffffffffULL,
					 0x8000000000000000ULL, ~0ULL, 0xf, 0x10, 0x3f, 0x40, 0x1f, 0x20 };
	uint64_t r = rnd(g);

	switch (r & 7) {
	case 0: case 1: return edge[(r >> 3) % (sizeof(edge) / sizeof(edge[0]))];
	case 2: return edge[(r >> 3) % (sizeof(edge) / sizeof(edge[0]))] ^ (rnd(g) & 0xff); /* near an edge */
	case 3: return -(uint64_t)(r >> 3 & 0xff);
	case 4: return rnd(g) >> rn(g, 64);
	default: return rnd(g);
	}
}

static const unsigned sizes[4] = { 1, 2, 4, 8 };

static unsigned rsize(struct gen *g)
{
	return sizes[rn(g, 4)];
}

static unsigned rsize_w(struct gen *g) /* 2, 4 or 8 */
{
	return sizes[1 + rn(g, 3)];
}

static void out8(struct gen *g, uint64_t b)
{
	g->c->code[g->n++] = (uint8_t)b;
}

static void outn(struct gen *g, uint64_t v, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		out8(g, v >> (8 * i));
}

/* Start of an instruction: remember where, and what was undefined. */
static void begin(struct gen *g)
{
	struct dt_case *c = g->c;

	if (c->ninsn < DT_INSN_MAX) {
		c->ioff[c->ninsn] = (uint16_t)g->n;
		c->iundef[c->ninsn] = g->undef;
		c->ninsn++;
	}
}

/* mov r64, imm64 (setup; no flags). */
static void set_reg(struct gen *g, int r, uint64_t v)
{
	begin(g);
	out8(g, 0x48 | (r >> 3));
	out8(g, 0xb8 + (r & 7));
	outn(g, v, 8);
	if (r == RSP)
		g->rsp_ok = false;
}

/* A register for an operand of size sz. Byte operands get ah-bh now and
 * then unless REX is needed (norex < 0: REX forced by another operand). */
static int rreg(struct gen *g, unsigned sz, int norex)
{
	if (sz == 1 && norex >= 0 && pct(g, 25))
		return HIGH8 + (int)rn(g, 4);
	if (sz == 1 && norex > 0)
		return (int)rn(g, 4);
	return (int)rn(g, 16);
}

/* Does byte register r force REX (spl-dil, r8b-r15b) or forbid it (ah-bh)? */
static int rex_need(int r, bool byte)
{
	if (r >= HIGH8)
		return 1; /* forbids */
	if (r >= 8 || (byte && r >= 4))
		return -1; /* needs */
	return 0;
}

/* Choose registers and displacement for a memory operand at addr and load
 * the registers. Registers in avoid (bit mask) are not used; norex: only
 * registers 0-7 (the instruction has ah-bh). */
static void mem_at(struct gen *g, struct rm *m, uint64_t addr, uint32_t avoid, bool norex)
{
	unsigned lim = norex ? 8 : 16;
	int64_t disp;
	uint64_t idxv = 0, basev;
	unsigned kind = rn(g, 10);

	m->reg = -1;
	m->addr = addr;
	m->gs = pct(g, 5);
	if (m->gs)
		addr -= DT_DATA; /* the registers and disp make the offset */
	m->base = m->index = -1;
	m->scale = (int)rn(g, 4);
	m->a32 = pct(g, 10);
	m->dispsz = (int)(rn(g, 3) == 0 ? 0 : rn(g, 2) ? 1 : 4);
	if (kind == 0) { /* RIP-relative: disp fixed up by the encoder */
		m->base = RIPREL;
		m->a32 = false;
		m->dispsz = 4;
		return;
	}
	do
		m->base = kind == 1 ? -1 : (int)rn(g, lim);
	while (m->base >= 0 && (avoid >> m->base & 1));
	if (kind >= 5) {
		do
			m->index = (int)rn(g, lim);
		while (m->index == RSP || m->index == m->base || (avoid >> m->index & 1));
	}
	if (m->base < 0)
		m->dispsz = 4;
	if (m->base >= 0 && (m->base & 7) == RBP && m->dispsz == 0)
		m->dispsz = 1;
	disp = m->dispsz == 1 ? (int8_t)rnd(g) : m->dispsz == 4 ? (int32_t)(rnd(g) >> rn(g, 40)) : 0;
	if (m->index >= 0) {
		idxv = m->base < 0 ? (uint64_t)(int64_t)(int8_t)rnd(g) : val(g);
		if (m->a32)
			idxv = (rnd(g) << 32) | (uint32_t)idxv;
	}
	if (m->base < 0) {
		/* disp32 is the base: it must hold the rest of the sum. */
		disp = (int64_t)(addr - (idxv << m->scale));
		if (m->a32)
			disp = (int32_t)(uint32_t)disp;
		m->dispsz = 4;
	} else {
		basev = addr - (idxv << m->scale) - (uint64_t)disp;
		if (m->a32)
			basev = (rnd(g) << 32) | (uint32_t)basev;
		set_reg(g, m->base, basev);
	}
	m->disp = disp;
	if (m->index >= 0)
		set_reg(g, m->index, idxv);
}

/* A random address in the data page for an access of sz bytes, leaving
 * room around it (bit offsets, string runs). */
static uint64_t data_addr(struct gen *g, unsigned sz)
{
	uint64_t a = DT_DATA + 256 + rn(g, DT_DATA_SIZE - 512);

	if (pct(g, 10)) /* across the page boundary */
		return DT_DATA + DT_PAGE - 1 - rn(g, 15);
	if (pct(g, 2)) /* across an edge of the data area: #PF, nothing written */
		return pct(g, 50) ? DT_DATA + DT_DATA_SIZE - 1 - rn(g, 7) : DT_DATA - 1 - rn(g, 7);
	if (pct(g, 60))
		a &= ~(uint64_t)(sz - 1);
	return a;
}

/* r/m operand of size sz: register or memory. */
static void rm_pick(struct gen *g, struct rm *m, unsigned sz, bool mem, uint32_t avoid, bool norex)
{
	if (!mem) {
		m->reg = rreg(g, sz, norex ? 1 : 0);
		return;
	}
	mem_at(g, m, data_addr(g, sz), avoid, norex);
}

/* Emit one instruction: prefixes, REX, opcode, ModRM/SIB/disp, immediate.
 * sz is the operand size (8: REX.W unless the opcode defaults to 64,
 * 2: 0x66); regf is the ModRM reg field (a register, or a /digit);
 * byte_reg/byte_rm say whether those operands are byte registers. */
static void enc(struct gen *g, unsigned pfx, unsigned sz, bool w, const uint8_t *op, unsigned oplen,
		int regf, bool byte_reg, struct rm *m, bool byte_rm, unsigned immlen, uint64_t imm)
{
	uint8_t rex = 0x40;
	bool need = false, forbid = false;
	unsigned disp_at = 0;
	int mod = 0, rmf = 0;
	int64_t disp = m ? m->disp : 0;
	int r;

	begin(g);
	/* Any operand that is (part of) RSP may write it. */
	if (regf == RSP || (m && m->reg == RSP))
		g->rsp_ok = false;
	if (pfx & P_LOCK)
		out8(g, 0xf0);
	if (m && m->reg < 0 && m->gs)
		out8(g, 0x65);
	else if (pct(g, 3)) /* es, cs, ss, ds overrides: ignored in 64-bit mode */
		out8(g, (uint8_t[]){ 0x26, 0x2e, 0x36, 0x3e }[rn(g, 4)]);
	if (sz == 2 || (pfx & P_66W))
		out8(g, 0x66);
	if (m && m->reg < 0 && m->a32)
		out8(g, 0x67);
	if (pfx & P_REP)
		out8(g, 0xf3);
	if (pfx & P_REPNE)
		out8(g, 0xf2);
	if (sz == 8 && (w || (pfx & P_66W))) {
		rex |= 8;
		need = true;
	}
	r = rex_need(regf, byte_reg);
	if (r > 0)
		forbid = true;
	else if (r < 0)
		need = true;
	if (regf >= 0 && regf < HIGH8)
		rex |= (uint8_t)((regf >> 3) << 2);
	if (m && m->reg >= 0) {
		r = rex_need(m->reg, byte_rm);
		if (r > 0)
			forbid = true;
		else if (r < 0)
			need = true;
		if (m->reg < HIGH8)
			rex |= (uint8_t)(m->reg >> 3);
	} else if (m) {
		if (m->base >= 0 && m->base != RIPREL)
			rex |= (uint8_t)(m->base >> 3);
		if (m->index >= 0)
			rex |= (uint8_t)((m->index >> 3) << 1);
	}
	if (rex != 0x40)
		need = true;
	(void)forbid; /* the caller never mixes ah-bh with REX registers */
	if (need || (!forbid && pct(g, 5)))
		out8(g, rex);
	for (unsigned i = 0; i < oplen; i++)
		out8(g, op[i]);
	if (!m)
		goto imm;
	if (m->reg >= 0 && g->opreg)
		goto imm;
	if (m->reg >= 0) {
		out8(g, 0xc0 | ((regf & 7) << 3) | (m->reg >= HIGH8 ? m->reg - HIGH8 + 4 : m->reg & 7));
		goto imm;
	}
	if (m->base == RIPREL) {
		out8(g, ((regf & 7) << 3) | 5);
		disp_at = g->n;
		outn(g, 0, 4);
		outn(g, imm, immlen);
		disp = (int64_t)(m->addr - (m->gs ? DT_DATA : 0) - (DT_CODE + g->n));
		memcpy(&g->c->code[disp_at], &(int32_t){ (int32_t)disp }, 4);
		return;
	}
	mod = m->base < 0 ? 0 : m->dispsz == 0 ? 0 : m->dispsz == 1 ? 1 : 2;
	if (m->index >= 0 || m->base < 0 || (m->base & 7) == RSP) {
		rmf = 4;
		out8(g, (mod << 6) | ((regf & 7) << 3) | rmf);
		out8(g, (m->scale << 6) | ((m->index >= 0 ? m->index & 7 : 4) << 3) |
				(m->base < 0 ? 5 : m->base & 7));
	} else {
		out8(g, (mod << 6) | ((regf & 7) << 3) | (m->base & 7));
	}
	outn(g, (uint64_t)disp, m->base < 0 ? 4 : (unsigned)m->dispsz);
imm:
	outn(g, imm, immlen);
}

/* An opcode with the register in its low 3 bits (b0+r, b8+r, 50+r, 58+r,
 * 90+r, 0f c8+r). */
static void enc_opreg(struct gen *g, unsigned pfx, unsigned sz, bool w, const uint8_t *op, unsigned oplen, int r,
		      bool byte, unsigned immlen, uint64_t imm)
{
	uint8_t o[2];
	struct rm rr = { .reg = r };

	memcpy(o, op, oplen);
	o[oplen - 1] = (uint8_t)(o[oplen - 1] + (r >= HIGH8 ? r - HIGH8 + 4 : r & 7));
	g->opreg = true;
	enc(g, pfx, sz, w, o, oplen, -1, false, &rr, byte, immlen, imm);
	g->opreg = false;
}

static void flags_def(struct gen *g, uint32_t defw, uint32_t undef)
{
	g->defw = defw;
	g->newundef = undef;
}

static uint32_t cc_reads(unsigned cc)
{
	static const uint32_t r[8] = { OF, CF, ZF, CF | ZF, SF, PF, SF | OF, ZF | SF | OF };

	return r[(cc >> 1) & 7];
}

/* ---- instruction classes ---- */

static uint32_t alu_reads(unsigned op)
{
	return op == 2 || op == 3 ? CF : 0;
}

static void alu_flags(struct gen *g, unsigned op)
{
	if (op == 1 || op == 4 || op == 6)
		flags_def(g, ARITH & ~AF, AF);
	else
		flags_def(g, ARITH, 0);
}

/* Operands for a two-operand form: reg field and r/m (register or memory)
 * of size sz, consistent about REX vs ah-bh. */
static void two_ops(struct gen *g, unsigned sz, int *reg, struct rm *m, bool mem, uint32_t avoid)
{
	*reg = rreg(g, sz, 0);
	if (sz == 1 && *reg >= HIGH8) {
		rm_pick(g, m, sz, mem, avoid, true);
	} else if (sz == 1 && rex_need(*reg, true) < 0) {
		if (mem)
			mem_at(g, m, data_addr(g, sz), avoid, false);
		else
			m->reg = rreg(g, sz, -1);
	} else {
		rm_pick(g, m, sz, mem, avoid, false);
	}
}

static unsigned lock_if(struct gen *g, struct rm *m, bool ok)
{
	return ok && m->reg < 0 && pct(g, 30) ? P_LOCK : 0;
}

static void i_alu(struct gen *g, unsigned op)
{
	unsigned sz = rsize(g), form = rn(g, 6);
	struct rm m;
	int reg;
	uint8_t o;

	alu_flags(g, op);
	if (form >= 4) { /* al/eax, imm */
		o = (uint8_t)(op * 8 + 4 + (sz != 1));
		enc(g, 0, sz, true, &o, 1, -1, false, NULL, false, sz == 1 ? 1 : sz == 2 ? 2 : 4, val(g));
		return;
	}
	if (form == 3) { /* group 1: 80/81/83 */
		bool mem = pct(g, 50);
		unsigned imm8 = sz != 1 && pct(g, 50);

		rm_pick(g, &m, sz, mem, 0, false);
		o = sz == 1 ? 0x80 : imm8 ? 0x83 : 0x81;
		enc(g, lock_if(g, &m, op != 7), sz, true, &o, 1, (int)op, false, &m, sz == 1,
		    sz == 1 || imm8 ? 1 : sz == 2 ? 2 : 4, val(g));
		return;
	}
	two_ops(g, sz, &reg, &m, pct(g, 50), 0);
	o = (uint8_t)(op * 8 + (form & 2) + (sz != 1)); /* form bit 1: reg is the destination */
	enc(g, (form & 2) ? 0 : lock_if(g, &m, op != 7), sz, true, &o, 1, reg, sz == 1, &m, sz == 1, 0, 0);
}

static void i_incdec_negnot(struct gen *g)
{
	unsigned sz = rsize(g), k = rn(g, 4);
	struct rm m;
	uint8_t o;

	rm_pick(g, &m, sz, pct(g, 50), 0, false);
	if (k < 2) {
		o = sz == 1 ? 0xfe : 0xff;
		flags_def(g, ARITH & ~CF, 0);
	} else {
		o = sz == 1 ? 0xf6 : 0xf7;
		flags_def(g, k == 3 ? ARITH : 0, 0);
	}
	enc(g, lock_if(g, &m, true), sz, true, &o, 1, (int)k, false, &m, sz == 1, 0, 0);
}

static void i_test(struct gen *g)
{
	unsigned sz = rsize(g), form = rn(g, 3);
	struct rm m;
	int reg;
	uint8_t o;

	flags_def(g, ARITH & ~AF, AF);
	if (form == 0) {
		o = sz == 1 ? 0xa8 : 0xa9;
		enc(g, 0, sz, true, &o, 1, -1, false, NULL, false, sz == 1 ? 1 : sz == 2 ? 2 : 4, val(g));
	} else if (form == 1) {
		rm_pick(g, &m, sz, pct(g, 50), 0, false);
		o = sz == 1 ? 0xf6 : 0xf7;
		enc(g, 0, sz, true, &o, 1, 0, false, &m, sz == 1, sz == 1 ? 1 : sz == 2 ? 2 : 4, val(g));
	} else {
		two_ops(g, sz, &reg, &m, pct(g, 50), 0);
		o = sz == 1 ? 0x84 : 0x85;
		enc(g, 0, sz, true, &o, 1, reg, sz == 1, &m, sz == 1, 0, 0);
	}
}

static void i_mov(struct gen *g)
{
	unsigned sz = rsize(g), form = rn(g, 6);
	struct rm m;
	int reg;
	uint8_t o;

	flags_def(g, 0, 0);
	switch (form) {
	case 0: case 1: /* 88-8b */
		two_ops(g, sz, &reg, &m, pct(g, 50), 0);
		o = (uint8_t)(0x88 + form * 2 + (sz != 1));
		enc(g, 0, sz, true, &o, 1, reg, sz == 1, &m, sz == 1, 0, 0);
		break;
	case 2: /* c6/c7 /0 */
		rm_pick(g, &m, sz, pct(g, 50), 0, false);
		o = sz == 1 ? 0xc6 : 0xc7;
		enc(g, 0, sz, true, &o, 1, 0, false, &m, sz == 1, sz == 1 ? 1 : sz == 2 ? 2 : 4, val(g));
		break;
	case 3: /* b0+r / b8+r (imm64 with REX.W) */
		reg = rreg(g, sz, 0);
		o = sz == 1 ? 0xb0 : 0xb8;
		enc_opreg(g, 0, sz, true, &o, 1, reg, sz == 1, sz, val(g));
		if (reg == RSP && sz == 8)
			g->rsp_ok = false;
		break;
	case 4: { /* moffs: a0-a3 */
		uint64_t a = data_addr(g, sz);
		bool a32 = pct(g, 25);

		begin(g);
		if (sz == 2)
			out8(g, 0x66);
		if (a32)
			out8(g, 0x67);
		if (sz == 8)
			out8(g, 0x48);
		out8(g, 0xa0 + 2 * rn(g, 2) + (sz != 1));
		outn(g, a, a32 ? 4 : 8);
		break;
	}
	default: { /* movzx/movsx/movsxd */
		unsigned dsz = rsize_w(g), k = rn(g, 5);
		unsigned ssz = k == 4 ? 4 : (k & 1) ? 2 : 1;
		uint8_t op2[2] = { 0x0f, (uint8_t)(k < 2 ? 0xb6 + k : 0xbe + (k & 1)) };

		if (ssz >= dsz && k != 4)
			dsz = 4;
		reg = (int)rn(g, 16);
		rm_pick(g, &m, ssz, pct(g, 50), 0, false);
		if (k == 4) {
			o = 0x63;
			enc(g, 0, dsz == 2 ? 4 : dsz, true, &o, 1, reg, false, &m, false, 0, 0);
		} else {
			if (m.reg >= HIGH8 && reg >= 8)
				reg &= 7;
			enc(g, 0, dsz, true, op2, 2, reg, false, &m, ssz == 1, 0, 0);
		}
		break;
	}
	}
}

static void i_lea(struct gen *g)
{
	unsigned sz = rsize_w(g);
	struct rm m;
	uint8_t o = 0x8d;

	flags_def(g, 0, 0);
	/* No access: any address will do; still use the usual forms. */
	mem_at(g, &m, val(g), 0, false);
	enc(g, 0, sz, true, &o, 1, (int)rn(g, 16), false, &m, false, 0, 0);
}

static void i_xchg(struct gen *g)
{
	unsigned sz = rsize(g);
	struct rm m;
	int reg;
	uint8_t o;

	flags_def(g, 0, 0);
	if (sz != 1 && pct(g, 30)) { /* 90+r: xchg eAX, r (not 90 itself without REX.B) */
		o = 0x90;
		enc_opreg(g, 0, sz, true, &o, 1, 1 + (int)rn(g, 15), false, 0, 0);
		g->rsp_ok = false;
		return;
	}
	two_ops(g, sz, &reg, &m, pct(g, 50), 0);
	o = sz == 1 ? 0x86 : 0x87;
	enc(g, lock_if(g, &m, true), sz, true, &o, 1, reg, sz == 1, &m, sz == 1, 0, 0);
	if (reg == RSP && sz == 8)
		g->rsp_ok = false;
}

/* Flags of a shift/rotate by a known masked count m (op: ModRM digit). */
static void shift_flags(struct gen *g, unsigned op, unsigned sz, unsigned m)
{
	unsigned bits = sz * 8;

	if (!m) {
		flags_def(g, 0, 0);
		return;
	}
	if (op < 4) /* rotates: CF, and OF for single-bit ones */
		flags_def(g, CF | (m == 1 ? OF : 0), m == 1 ? 0 : OF);
	else if ((op == 4 || op == 5 || op == 6) && m >= bits)
		flags_def(g, PF | ZF | SF, AF | OF | CF);
	else
		flags_def(g, CF | PF | ZF | SF | (m == 1 ? OF : 0), AF | (m == 1 ? 0 : OF));
}

static void i_shift(struct gen *g)
{
	unsigned sz = rsize(g), form = rn(g, 3), op = rn(g, 8), cnt;
	struct rm m;
	uint8_t o;
	bool known = true;

	if (op == 6 && pct(g, 70))
		op = 4; /* sal's other encoding: keep it rare */
	rm_pick(g, &m, sz, pct(g, 40), 1u << RCX, false);
	if (form == 0) {
		cnt = pct(g, 80) ? rn(g, sz * 8 + 2) : rn(g, 256);
		o = sz == 1 ? 0xc0 : 0xc1;
	} else if (form == 1) {
		cnt = 1;
		o = sz == 1 ? 0xd0 : 0xd1;
	} else {
		o = sz == 1 ? 0xd2 : 0xd3;
		cnt = pct(g, 80) ? rn(g, sz * 8 + 2) : rn(g, 256);
		if (pct(g, 70))
			set_reg(g, RCX, (rnd(g) & ~0xffULL) | cnt);
		else
			known = false;
	}
	if (known)
		shift_flags(g, op, sz, cnt & (sz == 8 ? 63 : 31));
	else /* CL from the random inputs: count 0 keeps the flags */
		flags_def(g, 0, OF | AF | (op >= 4 ? CF : 0));
	enc(g, 0, sz, true, &o, 1, (int)op, false, &m, sz == 1, form == 0 ? 1 : 0, cnt);
	if (m.reg == RSP && sz == 8)
		g->rsp_ok = false;
}

static void i_shxd(struct gen *g)
{
	unsigned sz = rsize_w(g), cnt, mc;
	bool cl = pct(g, 50), left = pct(g, 50);
	uint8_t op[2] = { 0x0f, (uint8_t)((left ? 0xa4 : 0xac) + cl) };
	struct rm m;
	int reg = (int)rn(g, 16);

	do
		cnt = pct(g, 80) ? rn(g, sz * 8 + 1) : rn(g, 256);
	while (sz == 2 && (cnt & 31) > 16); /* result undefined */
	mc = cnt & (sz == 8 ? 63 : 31);
	if (cl) {
		rm_pick(g, &m, sz, pct(g, 40), 1u << RCX, false);
		set_reg(g, RCX, (rnd(g) & ~0xffULL) | cnt);
	} else {
		rm_pick(g, &m, sz, pct(g, 40), 0, false);
	}
	if (!mc)
		flags_def(g, 0, 0);
	else
		flags_def(g, CF | PF | ZF | SF | (mc == 1 ? OF : 0), AF | (mc == 1 ? 0 : OF));
	enc(g, 0, sz, true, op, 2, reg, false, &m, false, cl ? 0 : 1, cnt);
}

static void i_muldiv(struct gen *g)
{
	unsigned sz = rsize(g), k = rn(g, 7);
	struct rm m;
	uint8_t o;

	if (k >= 4) { /* imul r, r/m [, imm] */
		uint8_t op2[2] = { 0x0f, 0xaf };
		int reg = (int)rn(g, 16);

		sz = rsize_w(g);
		rm_pick(g, &m, sz, pct(g, 40), 0, false);
		flags_def(g, CF | OF, SF | ZF | AF | PF);
		if (k == 4)
			enc(g, 0, sz, true, op2, 2, reg, false, &m, false, 0, 0);
		else if (k == 5)
			enc(g, 0, sz, true, (uint8_t[]){ 0x6b }, 1, reg, false, &m, false, 1, val(g));
		else
			enc(g, 0, sz, true, (uint8_t[]){ 0x69 }, 1, reg, false, &m, false, sz == 2 ? 2 : 4, val(g));
		return;
	}
	o = sz == 1 ? 0xf6 : 0xf7;
	if (k < 2) { /* mul, imul */
		rm_pick(g, &m, sz, pct(g, 40), 0, false);
		flags_def(g, CF | OF, SF | ZF | AF | PF);
		enc(g, 0, sz, true, &o, 1, 4 + (int)k, false, &m, sz == 1, 0, 0);
		return;
	}
	/* div, idiv: usually with a dividend that fits (cbw/cwd/cdq/cqo or a
	 * zeroed high half), sometimes as it comes (#DE on both). The
	 * dividend is set up first: it may share registers with the address. */
	if (pct(g, 70)) {
		if (k == 3) {
			begin(g);
			if (sz == 2 || sz == 1)
				out8(g, 0x66);
			if (sz == 8)
				out8(g, 0x48);
			out8(g, sz == 1 ? 0x98 : 0x99);
		} else if (sz == 1) {
			begin(g);
			outn(g, 0xe430, 2); /* xor ah, ah */
			g->undef = (g->undef & ~ARITH) | AF;
		} else {
			set_reg(g, RDX, 0);
		}
	}
	rm_pick(g, &m, sz, pct(g, 40), (1u << RAX) | (1u << RDX), false);
	flags_def(g, 0, ARITH);
	enc(g, 0, sz, true, &o, 1, 4 + (int)k, false, &m, sz == 1, 0, 0);
}

static void i_bt(struct gen *g)
{
	unsigned sz = rsize_w(g), op = rn(g, 4);
	bool imm = pct(g, 40), mem = pct(g, 50);
	struct rm m;
	int reg = -1;

	flags_def(g, CF, OF | SF | AF | PF);
	if (imm) {
		uint8_t op2[2] = { 0x0f, 0xba };

		rm_pick(g, &m, sz, mem, 0, false);
		enc(g, lock_if(g, &m, op != 0), sz, true, op2, 2, 4 + (int)op, false, &m, false, 1, rnd(g));
		return;
	}
	reg = (int)rn(g, 16);
	if (mem) {
		/* The bit offset reaches beyond the operand: keep it near. */
		int64_t off = (int64_t)rn(g, 3200) - 1600;

		mem_at(g, &m, DT_DATA + DT_PAGE - 32 + rn(g, 64), 1u << reg, false);
		set_reg(g, reg, sz == 8 ? (uint64_t)off : (rnd(g) << (sz * 8)) | ((uint64_t)off & ((1ULL << (sz * 8)) - 1)));
	} else {
		rm_pick(g, &m, sz, false, 0, false);
	}
	enc(g, lock_if(g, &m, op != 0), sz, true, (uint8_t[]){ 0x0f, (uint8_t)(0xa3 + 8 * op) }, 2, reg, false,
	    &m, false, 0, 0);
}

static void i_bsx(struct gen *g)
{
	unsigned sz = rsize_w(g);
	struct rm m;

	flags_def(g, ZF, CF | OF | SF | AF | PF);
	rm_pick(g, &m, sz, pct(g, 40), 0, false);
	enc(g, 0, sz, true, (uint8_t[]){ 0x0f, (uint8_t)(0xbc + rn(g, 2)) }, 2, (int)rn(g, 16), false, &m, false,
	    0, 0);
}

static void i_bswap(struct gen *g)
{
	unsigned sz = pct(g, 50) ? 4 : 8;
	int r = (int)rn(g, 16);

	flags_def(g, 0, 0);
	enc_opreg(g, 0, sz, true, (uint8_t[]){ 0x0f, 0xc8 }, 2, r, false, 0, 0);
	if (r == RSP && sz == 8)
		g->rsp_ok = false;
}

static void i_cmov(struct gen *g, unsigned cc)
{
	unsigned sz = rsize_w(g);
	struct rm m;

	flags_def(g, 0, 0);
	rm_pick(g, &m, sz, pct(g, 40), 0, false);
	enc(g, 0, sz, true, (uint8_t[]){ 0x0f, (uint8_t)(0x40 + cc) }, 2, (int)rn(g, 16), false, &m, false, 0, 0);
}

static void i_setcc(struct gen *g, unsigned cc)
{
	struct rm m;

	flags_def(g, 0, 0);
	rm_pick(g, &m, 1, pct(g, 40), 0, false);
	enc(g, 0, 1, true, (uint8_t[]){ 0x0f, (uint8_t)(0x90 + cc) }, 2, 0, false, &m, true, 0, 0);
}

/* xadd / cmpxchg */
static void i_xadd_cmpxchg(struct gen *g)
{
	unsigned sz = rsize(g);
	bool cx = pct(g, 50), mem = pct(g, 60);
	struct rm m;
	int reg;

	flags_def(g, ARITH, 0);
	two_ops(g, sz, &reg, &m, mem, 1u << RAX);
	if (cx && pct(g, 50)) {
		/* Make the comparison succeed: the accumulator equals r/m. */
		uint64_t v = val(g);

		if (m.reg >= HIGH8) /* al == ah, ch, dh or bh */
			v = (v & ~0xffffULL) | (v & 0xff) * 0x101;
		set_reg(g, RAX, v);
		if (m.reg < 0) {
			if (m.addr - DT_DATA <= DT_DATA_SIZE - sz) /* not at an edge */
				memcpy(&g->c->data[m.addr - DT_DATA], &v, sz);
		} else if (m.reg < HIGH8 && m.reg != RAX)
			set_reg(g, m.reg, v);
		else if (m.reg > HIGH8) /* ch, dh, bh: same byte pattern */
			set_reg(g, m.reg - HIGH8, v);
	}
	enc(g, lock_if(g, &m, true), sz, true, (uint8_t[]){ 0x0f, (uint8_t)((cx ? 0xb0 : 0xc0) + (sz != 1)) }, 2,
	    reg, sz == 1, &m, sz == 1, 0, 0);
}

static void i_cmpxchg8b16b(struct gen *g)
{
	bool w = pct(g, 50);
	uint64_t a = DT_DATA + 256 + (rn(g, DT_DATA_SIZE - 512) & ~15ULL);
	struct rm m;

	if (pct(g, 5))
		a += 1 + rn(g, 15); /* misaligned: #GP for cmpxchg16b */
	flags_def(g, ZF, 0);
	if (pct(g, 50)) {
		uint64_t lo = val(g), hi = val(g);

		memcpy(&g->c->data[a - DT_DATA], &lo, 8);
		if (w)
			memcpy(&g->c->data[a - DT_DATA + 8], &hi, 8);
		else
			hi = lo >> 32;
		set_reg(g, RAX, w ? lo : (rnd(g) << 32) | (uint32_t)lo);
		set_reg(g, RDX, w ? hi : (rnd(g) << 32) | (uint32_t)hi);
	}
	mem_at(g, &m, a, (1u << RAX) | (1u << RDX) | (1u << RBX) | (1u << RCX), false);
	enc(g, lock_if(g, &m, true), w ? 8 : 4, true, (uint8_t[]){ 0x0f, 0xc7 }, 2, 1, false, &m, false, 0, 0);
}

static void i_misc(struct gen *g)
{
	static const uint8_t ops[] = { 0x98, 0x99, 0x9e, 0xf8, 0xf9, 0xfc, 0xfd };
	uint8_t o = ops[rn(g, sizeof(ops))];
	unsigned sz = (o == 0x98 || o == 0x99) ? rsize_w(g) : 4;

	switch (o) {
	case 0x9e: flags_def(g, CF | PF | AF | ZF | SF, 0); break;
	case 0xf8: case 0xf9: flags_def(g, CF, 0); break;
	default: flags_def(g, 0, 0); break;
	}
	enc(g, 0, sz, true, &o, 1, -1, false, NULL, false, 0, 0);
}

static void stack_ok(struct gen *g)
{
	if (!g->rsp_ok || pct(g, 20)) {
		uint64_t sp = DT_DATA + 1024 + rn(g, DT_DATA_SIZE - 2048);

		set_reg(g, RSP, pct(g, 90) ? sp & ~7ULL : sp);
		g->rsp_ok = true;
	}
}

static void i_pushpop(struct gen *g)
{
	unsigned k = rn(g, 5), sz = pct(g, 20) ? 2 : 8;
	unsigned w66 = sz == 8 && pct(g, 15) ? P_66W : 0;
	struct rm m;
	int r = (int)rn(g, 16);

	flags_def(g, 0, 0);
	stack_ok(g);
	switch (k) {
	case 0: { /* 50+r / 58+r */
		bool pop = pct(g, 50);

		enc_opreg(g, w66, sz, false, (uint8_t[]){ pop ? 0x58 : 0x50 }, 1, r, false, 0, 0);
		if (pop && r == RSP)
			g->rsp_ok = false;
		break;
	}
	case 1: /* push r/m */
	case 2: /* pop r/m */
		if (pct(g, 30)) { /* [rsp + disp8]: pop computes it after the increment */
			m = (struct rm){ .reg = -1, .base = RSP, .index = -1, .dispsz = 1, .disp = (int8_t)rnd(g) };
		} else {
			rm_pick(g, &m, sz, pct(g, 50), 1u << RSP, false);
		}
		enc(g, w66, sz, false, (uint8_t[]){ k == 1 ? 0xff : 0x8f }, 1, k == 1 ? 6 : 0, false, &m, false, 0, 0);
		if (k == 2 && m.reg == RSP)
			g->rsp_ok = false;
		break;
	case 3:
		enc(g, w66, sz, false, (uint8_t[]){ 0x6a }, 1, -1, false, NULL, false, 1, val(g));
		break;
	default:
		enc(g, w66, sz, false, (uint8_t[]){ 0x68 }, 1, -1, false, NULL, false, sz == 2 ? 2 : 4, val(g));
		break;
	}
}

static void i_lahf(struct gen *g)
{
	flags_def(g, 0, 0);
	enc(g, 0, 4, true, (uint8_t[]){ 0x9f }, 1, -1, false, NULL, false, 0, 0);
}

static void i_cmc(struct gen *g)
{
	flags_def(g, CF, 0);
	enc(g, 0, 4, true, (uint8_t[]){ 0xf5 }, 1, -1, false, NULL, false, 0, 0);
}

static void i_string(struct gen *g, unsigned kind)
{
	static const uint8_t base[5] = { 0xa4, 0xaa, 0xac, 0xa6, 0xae }; /* movs stos lods cmps scas */
	unsigned sz = rsize(g), cnt = rn(g, 9), pfx = 0;
	bool rep = pct(g, 60), a32 = pct(g, 15);
	uint64_t si = DT_DATA + 256 + rn(g, DT_DATA_SIZE - 512), di = DT_DATA + 256 + rn(g, DT_DATA_SIZE - 512);
	uint64_t hi = a32 ? rnd(g) << 32 : 0;

	if (rep)
		pfx = kind >= 3 && pct(g, 50) ? P_REPNE : P_REP;
	if (kind >= 3 && pct(g, 60)) /* runs of equal elements */
		memmove(&g->c->data[di - DT_DATA], &g->c->data[si - DT_DATA], sz * rn(g, 9));
	if (pct(g, 4)) { /* run off an edge of the data area: #PF partway */
		uint64_t *p = pct(g, 50) ? &si : &di;

		*p = pct(g, 50) ? DT_DATA + DT_DATA_SIZE - sz * rn(g, 4) - rn(g, 2) : DT_DATA + sz * rn(g, 4);
	}
	if (kind != 1 && kind != 4)
		set_reg(g, RSI, hi | si);
	if (kind != 2)
		set_reg(g, RDI, hi | di);
	if (rep)
		set_reg(g, RCX, (a32 ? rnd(g) << 32 : 0) | cnt);
	if (kind >= 3 && (!rep || cnt))
		flags_def(g, ARITH, 0);
	else
		flags_def(g, 0, 0);
	begin(g);
	if (sz == 2)
		out8(g, 0x66);
	if (a32)
		out8(g, 0x67);
	if (pfx & P_REP)
		out8(g, 0xf3);
	if (pfx & P_REPNE)
		out8(g, 0xf2);
	if (sz == 8)
		out8(g, 0x48);
	out8(g, base[kind] + (sz != 1));
}

static void i_frame(struct gen *g)
{
	bool leave = pct(g, 50), p66 = pct(g, 15);

	flags_def(g, 0, 0);
	stack_ok(g);
	set_reg(g, RBP, DT_DATA + 1024 + rn(g, 2048) / 8 * 8);
	begin(g);
	if (p66)
		out8(g, 0x66);
	if (leave) {
		out8(g, 0xc9); /* rsp = rbp + 8: still in the stack area */
		g->rsp_ok = !p66;
		return;
	}
	out8(g, 0xc8); /* enter size, level */
	outn(g, rn(g, 80), 2);
	out8(g, pct(g, 80) ? rn(g, 4) : rn(g, 256));
}

static void i_xlat(struct gen *g)
{
	bool a32 = pct(g, 20);

	flags_def(g, 0, 0);
	set_reg(g, RBX, (a32 ? rnd(g) << 32 : 0) | (DT_DATA + 256 + rn(g, DT_DATA_SIZE - 768)));
	begin(g);
	if (a32)
		out8(g, 0x67);
	if (pct(g, 20))
		out8(g, 0x48);
	out8(g, 0xd7);
}

static void i_nop(struct gen *g)
{
	struct rm m;

	flags_def(g, 0, 0);
	/* Memory forms only (no access): capstone 4 rejects 0f 1f with a
	 * register operand, which the CPU runs as a nop too. */
	mem_at(g, &m, val(g), 0, false);
	enc(g, 0, pct(g, 50) ? 2 : 4, true, (uint8_t[]){ 0x0f, 0x1f }, 2, 0, false, &m, false, 0, 0);
}

unsigned dt_features;

/* popcnt (F3 0F B8), tzcnt (F3 0F BC), lzcnt (F3 0F BD): op 0, 1, 2. */
static void i_bitcount(struct gen *g, unsigned op)
{
	static const uint8_t opc[3] = { 0xb8, 0xbc, 0xbd };
	unsigned sz = rsize_w(g);
	struct rm m;

	if (op == 0)
		flags_def(g, ARITH, 0); /* ZF by the result, the rest cleared */
	else
		flags_def(g, CF | ZF, OF | SF | PF | AF);
	rm_pick(g, &m, sz, pct(g, 40), 0, false);
	enc(g, P_REP, sz, true, (uint8_t[]){ 0x0f, opc[op] }, 2, (int)rn(g, 16), false, &m, false, 0, 0);
}

static bool one(struct gen *g);

/* Forward branches over the next instruction (with its setup): jcc rel8,
 * jcc rel32, jmp rel8/rel32, loop/loope/loopne/jrcxz (kind 0-3, sub picks
 * within). Flags after it are undefined if undefined on either path. */
static uint32_t branch_reads(unsigned kind, unsigned sub, unsigned cc)
{
	if (kind < 2)
		return cc_reads(cc);
	return kind == 3 && sub < 2 ? ZF : 0; /* loopne, loope */
}

static void i_branch(struct gen *g, unsigned kind, unsigned sub, unsigned cc)
{
	uint32_t undef = g->undef;
	bool rsp_ok = g->rsp_ok, rel32 = kind == 1 || (kind == 2 && (sub & 1));
	unsigned at, rel;

	if (kind == 3 && pct(g, 60)) /* a small count, so loop both falls through and jumps */
		set_reg(g, RCX, (rnd(g) & ~3ULL) | rn(g, 3));
	begin(g);
	if (kind == 3 && pct(g, 20))
		out8(g, 0x67); /* ecx */
	if (kind == 0)
		out8(g, 0x70 + cc);
	else if (kind == 1)
		outn(g, 0x800f + (cc << 8), 2);
	else if (kind == 2)
		out8(g, rel32 ? 0xe9 : 0xeb);
	else
		out8(g, 0xe0 + sub);
	at = g->n;
	outn(g, 0, rel32 ? 4 : 1);
	g->in_jcc = true;
	while (!one(g))
		;
	g->in_jcc = false;
	rel = g->n - at - (rel32 ? 4 : 1); /* < 128: one instruction and its setup */
	memcpy(&g->c->code[at], &rel, rel32 ? 4 : 1);
	g->undef |= undef;
	g->rsp_ok = g->rsp_ok && rsp_ok;
}

/* One instruction (with its setup); false when it would read an
 * undefined flag (the caller picks another). */
static bool one(struct gen *g)
{
	unsigned k = rn(g, g->in_jcc ? 100 : 113), cc = rn(g, 16), op = rn(g, 8);
	uint32_t reads = 0;

	if (k >= 110 && !(dt_features & (1u << (k - 110))))
		return false; /* not advertised (or not on the host) */
	if (k >= 110) {
		i_bitcount(g, k - 110);
		g->undef = (g->undef & ~g->defw) | g->newundef;
		return true;
	}

	/* Flags read first, decided before any byte is emitted. */
	if (k < 18)
		reads = alu_reads(op);
	else if (k >= 44 && k < 50)
		reads = CF; /* shifts: rcl/rcr read CF; be conservative */
	else if (k >= 66 && k < 70)
		reads = cc_reads(cc);
	else if (k == 98)
		reads = CF | PF | AF | ZF | SF;
	else if (k == 99)
		reads = CF;
	else if (k >= 100 && k < 103)
		reads = branch_reads(op & 3, cc & 3, cc);
	if (reads & g->undef)
		return false;
	if (k >= 100 && k < 103) {
		i_branch(g, op & 3, cc & 3, cc);
		return true;
	}

	if (k < 18) i_alu(g, op);
	else if (k < 22) i_incdec_negnot(g);
	else if (k < 25) i_test(g);
	else if (k < 33) i_mov(g);
	else if (k < 35) i_lea(g);
	else if (k < 38) i_xchg(g);
	else if (k < 44) i_muldiv(g);
	else if (k < 50) i_shift(g);
	else if (k < 53) i_shxd(g);
	else if (k < 57) i_bt(g);
	else if (k < 59) i_bsx(g);
	else if (k < 60) i_bswap(g);
	else if (k < 66) i_xadd_cmpxchg(g);
	else if (k < 68) i_cmov(g, cc);
	else if (k < 70) i_setcc(g, cc);
	else if (k < 72) i_cmpxchg8b16b(g);
	else if (k < 76) i_misc(g);
	else if (k < 82) i_pushpop(g);
	else if (k < 98) i_string(g, rn(g, 5));
	else if (k == 98) i_lahf(g);
	else if (k == 99) i_cmc(g);
	else if (k < 106) i_frame(g);
	else if (k < 108) i_xlat(g);
	else i_nop(g); /* 108, 109 */
	g->undef = (g->undef & ~g->defw) | g->newundef;
	return true;
}

void dt_gen(struct dt_case *c, uint64_t seed)
{
	struct gen g = { .c = c, .rs = seed };
	unsigned n;

	memset(c, 0, offsetof(struct dt_case, data));
	for (unsigned i = 0; i < DT_DATA_SIZE; i += 8) {
		uint64_t v = pct(&g, 20) ? 0 : rnd(&g);

		memcpy(&c->data[i], &v, 8);
	}
	for (int i = 0; i < 16; i++)
		c->regs[i] = val(&g);
	c->regs[RSP] = DT_DATA + 2048 + rn(&g, 256) * 8;
	g.rsp_ok = true;
	c->flags = (rnd(&g) & (ARITH)) | (pct(&g, 25) ? DF : 0);
	/* 1-4 items of at most ~70 bytes and 7 instructions each (a branch
	 * over the largest setup + instruction): well inside DT_CODE_MAX and
	 * DT_INSN_MAX. */
	n = 1 + rn(&g, 4);
	for (unsigned i = 0; i < n;)
		if (one(&g))
			i++;
	/* jmp [DT_CTL_RET] */
	begin(&g);
	out8(&g, 0xff);
	out8(&g, 0x24);
	out8(&g, 0x25);
	outn(&g, DT_CTL_RET, 4);
	c->code_len = g.n;
	c->undef = g.undef;
}
