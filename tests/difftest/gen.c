/* Random instruction sequences: an encoder for the user-level integer and
 * SSE/SSE2 instructions of 64-bit mode and a generator that strings a few
 * of them together with random operands.
 *
 * Every memory operand, stack access and string operation is made to hit
 * the data area, now and then straddling its two pages, or its edges: the
 * read-only page below it, the not-present pages around (difftest.h).
 * Just before the instruction, `mov r64, imm64` loads its base/index (or
 * RSI/RDI/RCX/RSP) with values whose sum is the chosen address; other
 * registers keep their random values. About one item in 30 is made to
 * fault (i_fault). The generator tracks which RFLAGS bits are undefined
 * (per the SDM) after each instruction, never emits an instruction that
 * reads an undefined flag, and records the set at each instruction start so
 * the comparison can mask them. */
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
	bool stop;	  /* nothing after this instruction can run */
	bool no_a32;	  /* mem_at: no address-size prefix */
};

/* A ModRM r/m operand: a register or memory. */
struct rm {
	int reg; /* >= 0: a register (byte operands: HIGH8.. for ah-bh); -1: memory */
	int base, index, scale; /* -1: none; base RIPREL: RIP-relative */
	int dispsz;		/* 0, 1 or 4 bytes */
	int64_t disp;
	bool a32;
	uint8_t seg;   /* 0, or a 0x64 (fs:) / 0x65 (gs:) prefix: DT_FS_BASE, DT_GS_BASE */
	uint64_t addr; /* the linear address it must produce */
};

uint8_t dt_int_quirks[32];

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

static uint64_t seg_base(const struct rm *m)
{
	return m->seg == 0x64 ? DT_FS_BASE : m->seg == 0x65 ? DT_GS_BASE : 0;
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
	m->seg = pct(g, 5) ? (pct(g, 50) ? 0x64 : 0x65) : 0;
	addr -= seg_base(m); /* the registers and disp make the offset */
	m->base = m->index = -1;
	m->scale = (int)rn(g, 4);
	m->a32 = pct(g, 10) && !g->no_a32;
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

/* A random address in the data area for an access of sz bytes, leaving
 * room around it (bit offsets, string runs); now and then one straddling
 * its two pages, or at or across its edges (difftest.h): into the
 * not-present page above (#PF on any access), the read-only page below
 * (#PF on a store, with P=1), or the not-present page below that. A
 * faulting instruction writes nothing, on either side. */
static uint64_t data_addr(struct gen *g, unsigned sz)
{
	uint64_t a = DT_DATA + 256 + rn(g, DT_DATA_SIZE - 512);
	unsigned k = rn(g, 100);

	if (k < 10) { /* across the page boundary */
		g->c->tags |= DT_TAG_SPLIT;
		return DT_DATA + DT_PAGE - 1 - rn(g, 15);
	}
	if (k < 18) {
		g->c->tags |= DT_TAG_EDGE;
		switch (k) {
		case 10: case 11: case 12: /* across the top edge */
			return DT_DATA + DT_DATA_SIZE - 1 - rn(g, 7);
		case 13: case 14: /* across the bottom edge, from the read-only page */
			return DT_DATA - 1 - rn(g, 7);
		case 15: case 16: /* in the read-only page */
			return DT_RO + rn(g, DT_PAGE - 8);
		default: /* in a not-present page, or across into one */
			return pct(g, 50) ? DT_GUARD_HI + rn(g, DT_PAGE) : DT_RO - 1 - rn(g, 7);
		}
	}
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
	if (m && m->reg < 0 && m->seg)
		out8(g, m->seg);
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
		disp = (int64_t)(m->addr - seg_base(m) - (DT_CODE + g->n));
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
		/* The bit offset reaches beyond the operand: keep it near, or
		 * now and then as far as the pages around the data area. */
		int64_t off = (int64_t)rn(g, 3200) - 1600;

		if (pct(g, 10)) {
			off = (pct(g, 50) ? 1 : -1) * (int64_t)(DT_PAGE + rn(g, DT_PAGE)) * 8;
			g->c->tags |= DT_TAG_EDGE;
		}

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
	else if (pct(g, 5)) { /* into the read-only or not-present page */
		a = pct(g, 50) ? DT_RO + (rn(g, DT_PAGE) & ~15ULL) : DT_DATA + DT_DATA_SIZE - (w ? 0 : 4);
		g->c->tags |= DT_TAG_EDGE;
	}
	flags_def(g, ZF, 0);
	if (pct(g, 50) && a - DT_DATA <= DT_DATA_SIZE - 16) {
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

		if (pct(g, 5)) { /* pushes into the read-only page, pops from the one above */
			sp = pct(g, 50) ? DT_DATA + rn(g, 24) : DT_DATA + DT_DATA_SIZE - rn(g, 24);
			g->c->tags |= DT_TAG_EDGE;
		}
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

		g->c->tags |= DT_TAG_EDGE;
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

/* ---- SSE and SSE2 (what the emulator's CPUID claims, sse.c) ---- */

/* Operand forms. X: an XMM register; M16/M8/M4: memory of that many bytes
 * (A: 16-byte aligned or #GP, as legacy SSE wants); G: a general register
 * (32 or 64 bits); I: imm8. First the destination. */
enum {
	S_X_XM16A,  /* xmm, xmm/m128 aligned */
	S_X_XM16,   /* xmm, xmm/m128 unaligned (movups, movdqu) */
	S_X_XM8,    /* xmm, xmm/m64 */
	S_X_XM4,    /* xmm, xmm/m32 */
	S_X_XM16AI, /* xmm, xmm/m128 aligned, imm8 */
	S_X_XM8I,   /* xmm, xmm/m64, imm8 (cmpsd) */
	S_X_XM4I,   /* xmm, xmm/m32, imm8 (cmpss) */
	S_XI,	    /* xmm (rm), imm8, /digit: shifts by immediate */
	S_X_X,	    /* xmm, xmm: movhlps, movlhps (12/16 register forms) */
	S_X_M8,	    /* xmm, m64: movlps/movhps/movlpd/movhpd loads */
	S_G_X,	    /* r32/64, xmm: movmskps/pd, pmovmskb */
	S_G_XI,	    /* r32/64, xmm, imm8: pextrw */
	S_G_XM4,    /* r32/64, xmm/m32: cvt(t)ss2si */
	S_G_XM8,    /* r32/64, xmm/m64: cvt(t)sd2si */
	S_X_GM,	    /* xmm, r/m32/64: cvtsi2ss/sd, movd/movq */
	S_X_GM2I,   /* xmm, r32/m16, imm8: pinsrw */
	S_M16A_X,   /* m128 aligned, xmm: movaps, movntps, movdqa, movntdq */
	S_XM16_X,   /* xmm/m128, xmm: movups, movupd, movdqu stores */
	S_XM8_X,    /* xmm/m64, xmm: movsd, movq (d6) stores */
	S_XM4_X,    /* xmm/m32, xmm: movss store */
	S_M8_X,	    /* m64, xmm: movlps/movhps/movlpd/movhpd stores */
	S_GM_X,	    /* r/m32/64, xmm: movd/movq (66 7e) */
	S_M_G,	    /* m32/64, r32/64: movnti */
	S_M4,	    /* m32: ldmxcsr, stmxcsr (/digit) */
};

struct sse_op {
	uint8_t pfx, opc, form, digit;
};

#define FP(o, f) { 0, o, f, 0 }, { 0x66, o, f, 0 }
static const struct sse_op sse_ops[] = {
	{ 0, 0x10, S_X_XM16, 0 }, { 0x66, 0x10, S_X_XM16, 0 }, { 0xf3, 0x10, S_X_XM4, 0 }, { 0xf2, 0x10, S_X_XM8, 0 },
	{ 0, 0x11, S_XM16_X, 0 }, { 0x66, 0x11, S_XM16_X, 0 }, { 0xf3, 0x11, S_XM4_X, 0 }, { 0xf2, 0x11, S_XM8_X, 0 },
	{ 0, 0x12, S_X_M8, 0 }, { 0, 0x12, S_X_X, 0 }, { 0x66, 0x12, S_X_M8, 0 },
	{ 0, 0x13, S_M8_X, 0 }, { 0x66, 0x13, S_M8_X, 0 },
	FP(0x14, S_X_XM16A), FP(0x15, S_X_XM16A),
	{ 0, 0x16, S_X_M8, 0 }, { 0, 0x16, S_X_X, 0 }, { 0x66, 0x16, S_X_M8, 0 },
	{ 0, 0x17, S_M8_X, 0 }, { 0x66, 0x17, S_M8_X, 0 },
	FP(0x28, S_X_XM16A), FP(0x29, S_M16A_X), FP(0x2b, S_M16A_X),
	{ 0xf3, 0x2a, S_X_GM, 0 }, { 0xf2, 0x2a, S_X_GM, 0 },
	{ 0xf3, 0x2c, S_G_XM4, 0 }, { 0xf2, 0x2c, S_G_XM8, 0 }, { 0xf3, 0x2d, S_G_XM4, 0 }, { 0xf2, 0x2d, S_G_XM8, 0 },
	{ 0, 0x2e, S_X_XM4, 0 }, { 0x66, 0x2e, S_X_XM8, 0 }, { 0, 0x2f, S_X_XM4, 0 }, { 0x66, 0x2f, S_X_XM8, 0 },
	FP(0x50, S_G_X),
	FP(0x51, S_X_XM16A), { 0xf3, 0x51, S_X_XM4, 0 }, { 0xf2, 0x51, S_X_XM8, 0 },
	{ 0, 0x52, S_X_XM16A, 0 }, { 0xf3, 0x52, S_X_XM4, 0 }, { 0, 0x53, S_X_XM16A, 0 }, { 0xf3, 0x53, S_X_XM4, 0 },
	FP(0x54, S_X_XM16A), FP(0x55, S_X_XM16A), FP(0x56, S_X_XM16A), FP(0x57, S_X_XM16A),
	FP(0x58, S_X_XM16A), { 0xf3, 0x58, S_X_XM4, 0 }, { 0xf2, 0x58, S_X_XM8, 0 },
	FP(0x59, S_X_XM16A), { 0xf3, 0x59, S_X_XM4, 0 }, { 0xf2, 0x59, S_X_XM8, 0 },
	{ 0, 0x5a, S_X_XM8, 0 }, { 0x66, 0x5a, S_X_XM16A, 0 }, { 0xf3, 0x5a, S_X_XM4, 0 }, { 0xf2, 0x5a, S_X_XM8, 0 },
	{ 0, 0x5b, S_X_XM16A, 0 }, { 0x66, 0x5b, S_X_XM16A, 0 }, { 0xf3, 0x5b, S_X_XM16A, 0 },
	FP(0x5c, S_X_XM16A), { 0xf3, 0x5c, S_X_XM4, 0 }, { 0xf2, 0x5c, S_X_XM8, 0 },
	FP(0x5d, S_X_XM16A), { 0xf3, 0x5d, S_X_XM4, 0 }, { 0xf2, 0x5d, S_X_XM8, 0 },
	FP(0x5e, S_X_XM16A), { 0xf3, 0x5e, S_X_XM4, 0 }, { 0xf2, 0x5e, S_X_XM8, 0 },
	FP(0x5f, S_X_XM16A), { 0xf3, 0x5f, S_X_XM4, 0 }, { 0xf2, 0x5f, S_X_XM8, 0 },
	{ 0x66, 0x6e, S_X_GM, 0 }, { 0x66, 0x6f, S_X_XM16A, 0 }, { 0xf3, 0x6f, S_X_XM16, 0 },
	{ 0x66, 0x70, S_X_XM16AI, 0 }, { 0xf3, 0x70, S_X_XM16AI, 0 }, { 0xf2, 0x70, S_X_XM16AI, 0 },
	{ 0x66, 0x71, S_XI, 2 }, { 0x66, 0x71, S_XI, 4 }, { 0x66, 0x71, S_XI, 6 },
	{ 0x66, 0x72, S_XI, 2 }, { 0x66, 0x72, S_XI, 4 }, { 0x66, 0x72, S_XI, 6 },
	{ 0x66, 0x73, S_XI, 2 }, { 0x66, 0x73, S_XI, 3 }, { 0x66, 0x73, S_XI, 6 }, { 0x66, 0x73, S_XI, 7 },
	{ 0x66, 0x7e, S_GM_X, 0 }, { 0xf3, 0x7e, S_X_XM8, 0 },
	{ 0x66, 0x7f, S_M16A_X, 0 }, { 0xf3, 0x7f, S_XM16_X, 0 },
	FP(0xc2, S_X_XM16AI), { 0xf3, 0xc2, S_X_XM4I, 0 }, { 0xf2, 0xc2, S_X_XM8I, 0 },
	{ 0, 0xc3, S_M_G, 0 }, { 0x66, 0xc4, S_X_GM2I, 0 }, { 0x66, 0xc5, S_G_XI, 0 }, FP(0xc6, S_X_XM16AI),
	{ 0x66, 0xd6, S_XM8_X, 0 }, { 0x66, 0xd7, S_G_X, 0 }, { 0x66, 0xe6, S_X_XM16A, 0 },
	{ 0xf3, 0xe6, S_X_XM8, 0 }, { 0xf2, 0xe6, S_X_XM16A, 0 }, { 0x66, 0xe7, S_M16A_X, 0 },
	{ 0, 0xae, S_M4, 2 }, { 0, 0xae, S_M4, 3 },
};
#undef FP

/* The 66 xx integer ops: 0F 60-6D, 74-76, D1-D5, D8-DF, E0-E5, E8-EF,
 * F1-F6, F8-FE: all xmm, xmm/m128 aligned. */
static bool sse_int_op(uint8_t o)
{
	return (o >= 0x60 && o <= 0x6d) || (o >= 0x74 && o <= 0x76) || (o >= 0xd1 && o <= 0xd5) ||
	       (o >= 0xd8 && o <= 0xdf) || (o >= 0xe0 && o <= 0xe5) || (o >= 0xe8 && o <= 0xef) ||
	       (o >= 0xf1 && o <= 0xf6) || (o >= 0xf8 && o <= 0xfe);
}

/* A random value for a lane: integers near the edges, or floats that
 * matter (zeros, ones, denormals, infinities, NaNs, near-overflow). */
static uint64_t sse_val(struct gen *g, bool dbl)
{
	static const uint32_t f[] = { 0, 0x80000000, 0x3f800000, 0xbf800000, 0x00000001, 0x807fffff, 0x7f800000,
				      0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0x7f7fffff, 0x4f000000,
				      0xcf000000, 0x3effffff, 0x3f000000 };
	static const uint64_t d[] = { 0, 0x8000000000000000ULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
				      1, 0x800fffffffffffffULL, 0x7ff0000000000000ULL, 0xfff0000000000000ULL,
				      0x7ff8000000000000ULL, 0xfff8000000000000ULL, 0x7ff0000000000001ULL,
				      0x7fefffffffffffffULL, 0x43e0000000000000ULL, 0xc3e0000000000000ULL,
				      0x41e0000000000000ULL, 0x3fe0000000000000ULL };

	switch (rn(g, 4)) {
	case 0:
		return dbl ? d[rn(g, 16)] : f[rn(g, 16)] | (uint64_t)f[rn(g, 16)] << 32;
	case 1: /* ordinary numbers in [2, 8), random mantissas */
		if (dbl)
			return 0x4000000000000000ULL | (rnd(g) & 0x001fffffffffffffULL);
		return (0x40000000 | (rnd(g) & 0x00ffffff)) << 32 | (0x40000000 | (rnd(g) & 0x00ffffff));
	default:
		return pct(g, 50) ? val(g) : rnd(g);
	}
}

static void sse_xmm(struct gen *g, struct rm *m, unsigned msz, bool aligned, bool mem)
{
	if (!mem) {
		m->reg = (int)rn(g, 16);
		return;
	}
	{
		uint64_t a = data_addr(g, msz);

		if (aligned && pct(g, 90))
			a &= ~15ULL;
		mem_at(g, m, a, 0, false);
	}
}

/* One SSE/SSE2 instruction with random operands; memory operands in and
 * around the data area, aligned or not (legacy SSE: #GP on a misaligned
 * m128 where alignment is required). */
static void i_sse(struct gen *g)
{
	struct sse_op op;
	struct rm m = { 0 };
	unsigned pfx, sz = 4, immlen = 0;
	bool mem = pct(g, 40);
	int reg = (int)rn(g, 16);
	uint64_t imm = rnd(g);
	uint8_t o[2] = { 0x0f, 0 };

	if (pct(g, 35)) { /* 66 0F integer op */
		do
			op.opc = (uint8_t)(0x60 + rn(g, 0xa0));
		while (!sse_int_op(op.opc));
		op = (struct sse_op){ 0x66, op.opc, S_X_XM16A, 0 };
	} else {
		op = sse_ops[rn(g, sizeof(sse_ops) / sizeof(sse_ops[0]))];
	}
	o[1] = op.opc;
	pfx = op.pfx == 0x66 ? P_66W : op.pfx == 0xf3 ? P_REP : op.pfx == 0xf2 ? P_REPNE : 0;
	/* capstone 4 does not decode some SSE2 instructions with an
	 * address-size prefix (66 67 0f 6c, 6d, d6, e6): the encoding check
	 * would fail on its account. */
	g->no_a32 = true;
	flags_def(g, op.opc == 0x2e || op.opc == 0x2f ? ARITH : 0, 0);
	switch (op.form) {
	case S_X_XM16A: case S_X_XM16AI: sse_xmm(g, &m, 16, true, mem); break;
	case S_X_XM16: sse_xmm(g, &m, 16, false, mem); break;
	case S_X_XM8: case S_X_XM8I: case S_G_XM8: sse_xmm(g, &m, 8, false, mem); break;
	case S_X_XM4: case S_X_XM4I: case S_G_XM4: sse_xmm(g, &m, 4, false, mem); break;
	case S_XI: case S_X_X: case S_G_X: case S_G_XI: sse_xmm(g, &m, 0, false, false); break;
	case S_X_M8: case S_M8_X: sse_xmm(g, &m, 8, false, true); break;
	case S_M16A_X: sse_xmm(g, &m, 16, true, true); break;
	case S_XM16_X: sse_xmm(g, &m, 16, false, mem); break;
	case S_XM8_X: sse_xmm(g, &m, 8, false, mem); break;
	case S_XM4_X: sse_xmm(g, &m, 4, false, mem); break;
	case S_M4:
		sse_xmm(g, &m, 4, false, true);
		reg = op.digit;
		if (reg == 2 && pct(g, 70) && m.addr - DT_DATA <= DT_DATA_SIZE - 4) { /* a valid MXCSR to load */
			uint32_t v = 0x1f80 | (uint32_t)(rnd(g) & 0xe07f);

			memcpy(&g->c->data[m.addr - DT_DATA], &v, 4);
		}
		break;
	case S_X_GM: case S_GM_X: case S_M_G: case S_X_GM2I:
		sz = pct(g, 50) ? 8 : 4;
		if (op.form == S_X_GM2I)
			sz = 4;
		if (mem || op.form == S_M_G)
			mem_at(g, &m, data_addr(g, sz), 0, false);
		else
			m.reg = (int)rn(g, 16);
		break;
	default: break;
	}
	if (op.form == S_G_X || op.form == S_G_XI || op.form == S_G_XM4 || op.form == S_G_XM8) {
		sz = pct(g, 50) ? 8 : 4; /* the general register's size (REX.W) */
		if (reg == RSP && sz == 8)
			g->rsp_ok = false;
	}
	if (op.form == S_XI) {
		m.reg = reg;
		reg = op.digit;
		imm = pct(g, 70) ? rn(g, 70) : rnd(g);
	}
	if (op.form == S_X_XM16AI || op.form == S_X_XM8I || op.form == S_X_XM4I || op.form == S_G_XI ||
	    op.form == S_X_GM2I || op.form == S_XI)
		immlen = 1;
	if (op.opc == 0xc2) /* compare predicates 0-7 (8 and up are AVX's) */
		imm &= 7;
	if (op.form == S_X_GM || op.form == S_GM_X || op.form == S_M_G) {
		if (op.form != S_M_G && m.reg == RSP && sz == 8)
			g->rsp_ok = false;
	}
	/* 66 with REX.W (movq) keeps the 66: P_66W does that. */
	enc(g, pfx, sz, true, o, 2, reg, false, &m, false, immlen, imm);
	g->no_a32 = false;
}

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

unsigned dt_features;

/* pushfq; or dword [rsp], bits; popfq: set TF or AC (IF is 1 on both
 * sides, the rest as it was). The pushed image is compared, as memory. */
static void set_rflags_bits(struct gen *g, uint32_t bits)
{
	stack_ok(g);
	begin(g);
	out8(g, 0x9c);
	begin(g);
	outn(g, 0x240c81, 3);
	outn(g, bits, 4);
	begin(g);
	out8(g, 0x9d);
}

/* An instruction made to fault or trap, as user code on Linux meets it:
 * invalid in 64-bit mode, privileged or I/O at CPL 3, lock where it does
 * not belong, int n, non-canonical addresses, a jump to a page that is not
 * executable or not present, alignment checks (RFLAGS.AC), single-step
 * traps (RFLAGS.TF). Left out: syscall/sysenter/int 0x80 (the sandbox
 * kills them), rdtsc/cpuid (values differ), sgdt and the like (UMIP: the
 * host kernel emulates them), non-canonical jump targets (Intel faults on
 * the jump, AMD on the target). */
static void i_fault(struct gen *g)
{
	static const uint8_t inval[] = { 0x06, 0x07, 0x0e, 0x16, 0x17, 0x1e, 0x1f, 0x27, 0x2f,
					 0x37, 0x3f, 0x60, 0x61, 0xce, 0xd4, 0xd5, 0xd6 };
	static const uint8_t priv[] = { 0xf4, 0xfa, 0xfb, 0xe4, 0xe5, 0xe6, 0xe7, 0xec,
					0xed, 0xee, 0xef, 0x6c, 0x6d, 0x6e, 0x6f };
	static const uint8_t priv0f[] = { 0x06, 0x07, 0x08, 0x09, 0x30, 0x32, 0x33, 0x0b, 0xff };
	static const uint64_t noncanon[] = { 0x0000800000000000ULL, 0x00007ffffffffffcULL, 0xffff7ffffffffffcULL,
					     0x8000000000000000ULL, 0xffff800000000000ULL - 2 };
	struct rm m;
	uint8_t o;

	g->c->tags |= DT_TAG_FAULT;
	flags_def(g, 0, 0);
	switch (rn(g, 11)) {
	case 0: /* invalid in 64-bit mode */
		begin(g);
		g->c->opaque |= 1ULL << (g->c->ninsn - 1);
		out8(g, inval[rn(g, sizeof(inval))]);
		break;
	case 1: /* hlt, cli, sti, in, out, ins, outs: #GP at CPL 3, IOPL 0 */
		begin(g);
		o = priv[rn(g, sizeof(priv))];
		out8(g, o);
		if (o >= 0xe4 && o <= 0xe7)
			out8(g, rnd(g));
		break;
	case 2: /* clts sysret invd wbinvd wrmsr rdmsr rdpmc ud2 ud0, mov cr/dr */
		begin(g);
		g->c->opaque |= 1ULL << (g->c->ninsn - 1); /* ud0, cr9 and the like */
		if (pct(g, 30)) {
			out8(g, 0x40 | (rn(g, 2) << 2) | rn(g, 2)); /* REX.R: cr8-15, REX.B */
			outn(g, 0x200f + (rn(g, 4) << 8), 2);
			out8(g, 0xc0 | rn(g, 64));
		} else {
			out8(g, 0x0f);
			out8(g, priv0f[rn(g, sizeof(priv0f))]);
		}
		break;
	case 3: { /* int n (not 0x80: a system call), int3, int1 */
		unsigned n = rn(g, 256);

		begin(g);
		g->c->opaque |= 1ULL << (g->c->ninsn - 1);
		if (pct(g, 30)) {
			out8(g, pct(g, 50) ? 0xcc : 0xf1);
		} else {
			out8(g, 0xcd);
			out8(g, n == 0x80 || dt_int_quirk(n) ? 3 : n);
		}
		break;
	}
	case 4: /* lock on a register destination or on mov */
		if (pct(g, 50)) {
			rm_pick(g, &m, 8, false, 0, false);
			enc(g, P_LOCK, 8, true, (uint8_t[]){ (uint8_t)(rn(g, 8) * 8 + 1) }, 1, (int)rn(g, 16), false, &m,
			    false, 0, 0);
		} else {
			rm_pick(g, &m, 4, true, 0, false);
			enc(g, P_LOCK, 4, true, (uint8_t[]){ 0x89 }, 1, (int)rn(g, 16), false, &m, false, 0, 0);
		}
		g->c->opaque |= 1ULL << (g->c->ninsn - 1); /* capstone may refuse it */
		break;
	case 5: case 6: { /* non-canonical: #GP, or #SS with RSP/RBP as base */
		uint64_t a = noncanon[rn(g, sizeof(noncanon) / sizeof(noncanon[0]))];

		if (pct(g, 50))
			a ^= rnd(g) & 0x7fffffffffffULL;
		mem_at(g, &m, a, 0, false);
		if (m.base == RSP)
			g->rsp_ok = false;
		enc(g, 0, 8, true, (uint8_t[]){ pct(g, 50) ? 0x8b : 0x89 }, 1, (int)rn(g, 16), false, &m, false, 0,
		    0);
		break;
	}
	case 7: { /* jmp r64 into the data area (not executable), a guard page */
		int r = (int)rn(g, 16);
		uint64_t t = pct(g, 50) ? DT_DATA + rn(g, DT_DATA_SIZE) : pct(g, 50) ? DT_RO + rn(g, DT_PAGE)
										 : DT_GUARD_HI + rn(g, DT_PAGE);

		if (r == RSP)
			r = RAX;
		set_reg(g, r, t);
		begin(g);
		if (r >= 8)
			out8(g, 0x41);
		out8(g, 0xff);
		out8(g, 0xe0 | (r & 7));
		g->stop = true;
		break;
	}
	case 8: case 9: /* RFLAGS.AC on, then a misaligned load: #AC */
		if ((g->undef & ARITH) || !(dt_features & DT_F_GAPS)) /* pushf would store undefined flags */
			return i_fault(g);
		set_rflags_bits(g, DT_AC);
		if (pct(g, 50)) {
			mem_at(g, &m, (data_addr(g, 4) & ~3ULL) + 1 + rn(g, 3), 0, false);
			enc(g, 0, 4, true, (uint8_t[]){ 0x8b }, 1, (int)rn(g, 16), false, &m, false, 0, 0);
		}
		break;
	default: /* RFLAGS.TF on: #DB after the next instruction (one of
		  * the case's, not the final jmp into the harness) */
		if ((g->undef & ARITH) || !(dt_features & DT_F_GAPS))
			return i_fault(g);
		set_rflags_bits(g, 0x100);
		i_mov(g);
		return;
	}
	flags_def(g, 0, 0);
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
	unsigned k = rn(g, g->in_jcc ? 100 : 125), cc = rn(g, 16), op = rn(g, 8);
	uint32_t reads = 0;

	if (k >= 117) { /* about one item in 15 */
		i_sse(g);
		g->undef = (g->undef & ~g->defw) | g->newundef;
		return true;
	}
	if (k >= 113) { /* about one item in 30 */
		i_fault(g);
		g->undef = (g->undef & ~g->defw) | g->newundef;
		return true;
	}
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

/* Random data and registers, RSP in the stack area, and random flags. */
static void gen_init(struct gen *g)
{
	struct dt_case *c = g->c;

	memset(c, 0, offsetof(struct dt_case, data));
	for (unsigned i = 0; i < DT_DATA_SIZE; i += 8) {
		uint64_t v = pct(g, 20) ? 0 : rnd(g);

		memcpy(&c->data[i], &v, 8);
	}
	for (int i = 0; i < 16; i++)
		c->regs[i] = val(g);
	c->regs[RSP] = DT_DATA + 2048 + rn(g, 256) * 8;
	g->rsp_ok = true;
	c->flags = (rnd(g) & (ARITH)) | (pct(g, 25) ? DF : 0);
	c->mxcsr = 0x1f80; /* Linux's default */
	if (pct(g, 30)) /* rounding, FTZ, DAZ, sticky flags */
		c->mxcsr |= (uint32_t)(rnd(g) & 0xe07f);
	if (pct(g, 10)) { /* an exception unmasked: #XM. Overflow and
			   * underflow only with DT_F_GAPS: the emulator gets
			   * their flags wrong (sse.c, mx_done). */
		static const unsigned bits[] = { 7, 8, 9, 12, 10, 11 };

		c->mxcsr &= ~(1u << bits[rn(g, dt_features & DT_F_GAPS ? 6 : 4)]);
	}
	for (int i = 0; i < 16; i++) {
		c->xmm[i][0] = sse_val(g, pct(g, 50));
		c->xmm[i][1] = sse_val(g, pct(g, 50));
	}
}

/* jmp [DT_CTL_RET] */
static void gen_end(struct gen *g)
{
	begin(g);
	out8(g, 0xff);
	out8(g, 0x24);
	out8(g, 0x25);
	outn(g, DT_CTL_RET, 4);
	g->c->code_len = g->n;
	g->c->undef = g->undef;
}

void dt_gen(struct dt_case *c, uint64_t seed)
{
	struct gen g = { .c = c, .rs = seed };
	unsigned n;

	gen_init(&g);
	/* 1-4 items of at most ~70 bytes and 7 instructions each (a branch
	 * over the largest setup + instruction): well inside DT_CODE_MAX and
	 * DT_INSN_MAX. */
	n = 1 + rn(&g, 4);
	for (unsigned i = 0; i < n && !g.stop;)
		if (one(&g))
			i++;
	gen_end(&g);
}

void dt_gen_insn(struct dt_case *c, const uint8_t *insn, size_t len, uint64_t seed)
{
	struct gen g = { .c = c, .rs = seed };

	gen_init(&g);
	/* Memory operands land in the data area, near it, or far off. */
	for (int i = 0; i < 16; i++) {
		unsigned k = rn(&g, 4);

		if (i == RSP)
			continue;
		if (k < 2)
			c->regs[i] = DT_DATA + rn(&g, DT_DATA_SIZE);
		else if (k == 2)
			c->regs[i] = rn(&g, 256); /* short string runs, small indexes */
	}
	if (len) {
		begin(&g);
		memcpy(c->code, insn, len);
		g.n = (unsigned)len;
	}
	gen_end(&g);
}

void dt_ro_fill(uint8_t *p)
{
	uint64_t s = 0x726f; /* any fixed seed */

	for (unsigned i = 0; i < DT_PAGE; i += 8) {
		uint64_t v = dt_rand(&s);

		memcpy(p + i, &v, 8);
	}
}
