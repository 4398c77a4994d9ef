/* Decode and execute one instruction.
 *
 * Decoding reads straight from the host page that holds RIP (cached across
 * instructions); only an instruction that crosses a page boundary touches
 * a second page, and only when it needs the byte there. The 15-byte limit
 * is enforced (#GP). Each opcode handler reads its operands, computes, and
 * commits: memory writes first, then registers and RIP, so that a fault or
 * a port/MMIO read exit halfway leaves nothing changed (see emu_priv.h).
 *
 * Flags are computed eagerly. Undefined flags follow what Intel parts do
 * where that is well known, else a fixed choice (documented at the helper). */
#include <stdio.h>

#include "arch/x86/cpuid.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"

struct dec {
	const uint8_t *p, *end;
	const uint8_t *start; /* host address of the first byte */
	uintptr_t pbase; /* p - pbase: bytes consumed (dlen); kept by fetch_more */
	uint64_t rip;
	uint64_t lin; /* linear address of the first byte */
	int opsize, adsize;
	int seg; /* override, SEG_NONE if none */
	uint8_t rep;
	bool lock, p66;
	uint8_t rex;
	uint8_t mod, reg, rm;
	bool mem;
	bool sp_base; /* the memory operand's base is RSP (pop r/m adjusts) */
	uint64_t ea;
	int eseg;
};

enum { OP_ADD, OP_OR, OP_ADC, OP_SBB, OP_AND, OP_SUB, OP_XOR, OP_CMP, OP_INC, OP_DEC, OP_NOT, OP_NEG };

/* ---- fetch ---- */

/* Instruction bytes consumed so far. */
static inline int dlen(const struct dec *d)
{
	return (int)((uintptr_t)d->p - d->pbase);
}

static void fetch_more(struct emu_cpu *c, struct dec *d)
{
	uint64_t lin;
	const uint8_t *page;
	unsigned off, avail;
	int len = dlen(d);

	if (len >= 15)
		emu_fault(c, EXC_GP, 0);
	lin = d->lin + (uint64_t)len;
	if (!c->long64)
		lin &= 0xffffffffULL;
	page = emu_fetch_page(c, lin);
	off = lin & 0xfff;
	avail = 4096 - off;
	if (avail > 15u - (unsigned)len)
		avail = 15u - (unsigned)len;
	d->p = page + off;
	d->end = d->p + avail;
	d->pbase = (uintptr_t)d->p - (uintptr_t)len;
}

static inline __attribute__((always_inline)) uint8_t f8(struct emu_cpu *c, struct dec *d)
{
	if (unlikely(d->p >= d->end))
		fetch_more(c, d);
	return *d->p++;
}

/* The next byte without consuming it (the ModRM reg field of a group). */
static inline __attribute__((always_inline)) uint8_t peek8(struct emu_cpu *c, struct dec *d)
{
	if (unlikely(d->p >= d->end))
		fetch_more(c, d);
	return *d->p;
}

static inline __attribute__((always_inline)) uint64_t fn(struct emu_cpu *c, struct dec *d, int n)
{
	uint64_t v = 0;

	if (likely(d->p + n <= d->end)) {
		switch (n) { /* constant sizes: no call to memcpy */
		case 1: v = *d->p; break;
		case 2: { uint16_t t; memcpy(&t, d->p, 2); v = t; break; }
		case 4: { uint32_t t; memcpy(&t, d->p, 4); v = t; break; }
		default: memcpy(&v, d->p, 8); break;
		}
		d->p += n;
		return v;
	}
	for (int i = 0; i < n; i++)
		v |= (uint64_t)f8(c, d) << (8 * i);
	return v;
}

static inline __attribute__((always_inline)) int64_t fimm_s(struct emu_cpu *c, struct dec *d, int n)
{
	uint64_t v = fn(c, d, n);

	switch (n) {
	case 1: return (int8_t)v;
	case 2: return (int16_t)v;
	case 4: return (int32_t)v;
	default: return (int64_t)v;
	}
}

/* Immediate of an operand of size sz: at most 4 bytes, sign-extended. */
static inline int immsz(int sz)
{
	return sz == 8 ? 4 : sz;
}

static inline uint64_t next_rip(struct emu_cpu *c, struct dec *d)
{
	uint64_t n = d->rip + (uint64_t)dlen(d);

	return c->long64 ? n : (c->def_size == 2 ? n & 0xffff : n & 0xffffffffULL);
}

/* ---- ModRM ---- */

static void modrm_mem(struct emu_cpu *c, struct dec *d, int imm_bytes, uint8_t m)
{
	int rm = m & 7, defseg = SEG_DS;
	uint64_t ea = 0;

	d->mem = true;
	d->sp_base = false;
	if (d->adsize == 2) {
		static const uint8_t b1[8] = { R_RBX, R_RBX, R_RBP, R_RBP, R_RSI, R_RDI, R_RBP, R_RBX };
		static const int8_t b2[8] = { R_RSI, R_RDI, R_RSI, R_RDI, -1, -1, -1, -1 };

		if (d->mod == 0 && rm == 6) {
			ea = fn(c, d, 2);
		} else {
			ea = c->r[b1[rm]];
			if (b2[rm] >= 0)
				ea += c->r[b2[rm]];
			if (rm == 2 || rm == 3 || rm == 6)
				defseg = SEG_SS;
			if (d->mod == 1)
				ea += (uint64_t)fimm_s(c, d, 1);
			else if (d->mod == 2)
				ea += fn(c, d, 2);
		}
		ea &= 0xffff;
	} else {
		bool riprel = false;

		if (rm == 4) {
			uint8_t sib = f8(c, d);
			int idx = ((sib >> 3) & 7) | ((d->rex & 2) << 2);
			int base = (sib & 7) | ((d->rex & 1) << 3);

			if (idx != 4)
				ea += c->r[idx] << (sib >> 6);
			if ((base & 7) == 5 && d->mod == 0) {
				ea += (uint64_t)fimm_s(c, d, 4);
			} else {
				ea += c->r[base];
				d->sp_base = base == R_RSP;
				if (base == R_RSP || base == R_RBP)
					defseg = SEG_SS;
			}
		} else if (rm == 5 && d->mod == 0) {
			ea = (uint64_t)fimm_s(c, d, 4);
			riprel = c->long64;
		} else {
			int base = rm | ((d->rex & 1) << 3);

			ea = c->r[base];
			if (base == R_RBP)
				defseg = SEG_SS;
		}
		if (d->mod == 1)
			ea += (uint64_t)fimm_s(c, d, 1);
		else if (d->mod == 2)
			ea += (uint64_t)fimm_s(c, d, 4);
		if (riprel)
			ea += d->rip + (uint64_t)dlen(d) + (uint64_t)imm_bytes;
		if (d->adsize == 4)
			ea &= 0xffffffffULL;
	}
	d->ea = ea;
	d->eseg = d->seg != SEG_NONE ? d->seg : defseg;
}

static inline __attribute__((always_inline)) void modrm(struct emu_cpu *c, struct dec *d, int imm_bytes)
{
	uint8_t m = f8(c, d);

	d->mod = m >> 6;
	d->reg = (uint8_t)(((m >> 3) & 7) | ((d->rex & 4) << 1));
	if (d->mod == 3) {
		d->rm = (uint8_t)((m & 7) | ((d->rex & 1) << 3));
		d->mem = false;
		return;
	}
	modrm_mem(c, d, imm_bytes, m);
}

/* MOV to and from CR and DR: r/m names a register whatever mod says (SDM
 * vol. 2, MOV-Move to/from Control Registers: "the 2 bits in the mod field
 * are ignored"), and no displacement follows. */
static inline void modrm_regs(struct emu_cpu *c, struct dec *d)
{
	uint8_t m = f8(c, d);

	d->mod = 3;
	d->reg = (uint8_t)(((m >> 3) & 7) | ((d->rex & 4) << 1));
	d->rm = (uint8_t)((m & 7) | ((d->rex & 1) << 3));
	d->mem = false;
}

/* ---- registers ---- */

static inline __attribute__((always_inline)) uint64_t getr(struct emu_cpu *c, const struct dec *d,
							 int r, int sz)
{
	switch (sz) {
	case 1:
		if (!d->rex && r >= 4 && r < 8)
			return (c->r[r - 4] >> 8) & 0xff;
		return c->r[r] & 0xff;
	case 2: return c->r[r] & 0xffff;
	case 4: return c->r[r] & 0xffffffffULL;
	default: return c->r[r];
	}
}

static inline __attribute__((always_inline)) void setr(struct emu_cpu *c, const struct dec *d, int r,
						       int sz, uint64_t v)
{
	switch (sz) {
	case 1:
		if (!d->rex && r >= 4 && r < 8)
			c->r[r - 4] = (c->r[r - 4] & ~0xff00ULL) | ((v & 0xff) << 8);
		else
			c->r[r] = (c->r[r] & ~0xffULL) | (v & 0xff);
		break;
	case 2: c->r[r] = (c->r[r] & ~0xffffULL) | (v & 0xffff); break;
	case 4: c->r[r] = v & 0xffffffffULL; break;
	default: c->r[r] = v;
	}
}

static inline __attribute__((always_inline)) uint64_t rm_read(struct emu_cpu *c, struct dec *d,
							    int sz)
{
	if (d->mem)
		return emu_read(c, d->eseg, d->ea, sz);
	return getr(c, d, d->rm, sz);
}

/* r/m read by an instruction that writes it back (emu_read_rmw_lin). */
static inline __attribute__((always_inline)) uint64_t rm_read_rmw(struct emu_cpu *c, struct dec *d,
								int sz)
{
	if (d->mem)
		return emu_read_rmw_lin(c, emu_linear(c, d->eseg, d->ea, sz, ACC_W), sz);
	return getr(c, d, d->rm, sz);
}

static inline __attribute__((always_inline)) void rm_write(struct emu_cpu *c, struct dec *d, int sz,
							   uint64_t v)
{
	if (d->mem)
		emu_write(c, d->eseg, d->ea, sz, v);
	else
		setr(c, d, d->rm, sz, v);
}

/* Set a register to an address-sized value (string ops, loop). */
static inline void set_adreg(struct emu_cpu *c, int r, int adsize, uint64_t v)
{
	if (adsize == 8)
		c->r[r] = v;
	else if (adsize == 4)
		c->r[r] = v & 0xffffffffULL;
	else
		c->r[r] = (c->r[r] & ~0xffffULL) | (v & 0xffff);
}

/* ---- stack ---- */

static inline uint64_t sp_mask(const struct emu_cpu *c)
{
	return emu_size_mask(c->stack_size);
}

static inline void set_rsp(struct emu_cpu *c, uint64_t v)
{
	set_adreg(c, R_RSP, c->stack_size, v);
}

static inline void push(struct emu_cpu *c, int sz, uint64_t v)
{
	uint64_t sp = (c->r[R_RSP] - (uint64_t)sz) & sp_mask(c);

	emu_write(c, SEG_SS, sp, sz, v);
	set_rsp(c, sp);
}

/* Read the value n bytes above the stack top (commit with set_rsp). */
static inline uint64_t peek(struct emu_cpu *c, int sz, uint64_t n)
{
	return emu_read(c, SEG_SS, (c->r[R_RSP] + n) & sp_mask(c), sz);
}

/* ---- flags ---- */

static inline __attribute__((always_inline)) uint64_t szp(uint64_t r, int sz)
{
	/* Branch-free: these bits follow the data, so branches on them
	 * would be mispredicted about half the time. */
	return (r ? 0 : F_ZF) | (((r >> (sz * 8 - 1)) & 1) ? F_SF : 0) |
	       (uint64_t)!__builtin_parity((unsigned)(r & 0xff)) * F_PF;
}

static inline __attribute__((always_inline)) uint64_t alu(struct emu_cpu *c, int op, int sz, uint64_t a, uint64_t b)
{
	const uint64_t m = emu_size_mask(sz);
	const int sh = sz * 8 - 1;
	uint64_t r, f = c->flags & ~(uint64_t)F_ARITH, cin;

	a &= m;
	b &= m;
	switch (op) {
	case OP_ADD:
	case OP_ADC:
		cin = op == OP_ADC ? (c->flags & F_CF) : 0;
		r = (a + b + cin) & m;
		if ((((a & b) | ((a | b) & ~r)) >> sh) & 1)
			f |= F_CF;
		if ((((a ^ r) & (b ^ r)) >> sh) & 1)
			f |= F_OF;
		f |= (a ^ b ^ r) & F_AF;
		break;
	case OP_SUB:
	case OP_CMP:
	case OP_SBB:
		cin = op == OP_SBB ? (c->flags & F_CF) : 0;
		r = (a - b - cin) & m;
		if ((((~a & b) | ((~a | b) & r)) >> sh) & 1)
			f |= F_CF;
		if ((((a ^ b) & (a ^ r)) >> sh) & 1)
			f |= F_OF;
		f |= (a ^ b ^ r) & F_AF;
		break;
	case OP_OR: r = a | b; break;
	case OP_AND: r = a & b; break;
	case OP_XOR: r = a ^ b; break;
	case OP_INC:
		r = (a + 1) & m;
		f |= c->flags & F_CF;
		if (((~a & r) >> sh) & 1)
			f |= F_OF;
		f |= (a ^ 1 ^ r) & F_AF;
		break;
	case OP_DEC:
		r = (a - 1) & m;
		f |= c->flags & F_CF;
		if (((a & ~r) >> sh) & 1)
			f |= F_OF;
		f |= (a ^ 1 ^ r) & F_AF;
		break;
	case OP_NOT:
		return ~a & m; /* flags unchanged */
	case OP_NEG:
	default:
		r = (0 - a) & m;
		if (a)
			f |= F_CF;
		if (((a & r) >> sh) & 1)
			f |= F_OF;
		f |= (a ^ r) & F_AF;
		break;
	}
	c->flags = f | szp(r, sz);
	return r;
}

/* Shifts and rotates (group 2). count is the raw count; it is masked to 5
 * bits (6 with 64-bit operands) and a masked count of 0 changes nothing.
 * OF is computed with the count-1 formula for every count and AF is
 * cleared (both undefined for count > 1 / shifts). */
static inline __attribute__((always_inline)) uint64_t shift(struct emu_cpu *c, int op, int sz,
							  uint64_t a, unsigned count)
{
	const unsigned bits = (unsigned)sz * 8, sh = bits - 1;
	const uint64_t m = emu_size_mask(sz);
	unsigned cnt = count & (sz == 8 ? 63 : 31), rc;
	uint64_t r, cf, of, f = c->flags;

	a &= m;
	if (!cnt)
		return a;
	switch (op) {
	case 0: /* rol */
		rc = cnt % bits;
		r = rc ? ((a << rc) | (a >> (bits - rc))) & m : a;
		cf = r & 1;
		of = ((r >> sh) & 1) ^ cf;
		goto rot;
	case 1: /* ror */
		rc = cnt % bits;
		r = rc ? ((a >> rc) | (a << (bits - rc))) & m : a;
		cf = (r >> sh) & 1;
		of = cf ^ ((r >> (sh - 1)) & 1);
		goto rot;
	case 2: /* rcl */
		rc = cnt % (bits + 1);
		r = a;
		cf = f & F_CF;
		for (unsigned i = 0; i < rc; i++) {
			uint64_t nc = (r >> sh) & 1;

			r = ((r << 1) | cf) & m;
			cf = nc;
		}
		of = ((r >> sh) & 1) ^ cf;
		goto rot;
	case 3: /* rcr */
		rc = cnt % (bits + 1);
		r = a;
		cf = f & F_CF;
		of = ((a >> sh) & 1) ^ cf;
		for (unsigned i = 0; i < rc; i++) {
			uint64_t nc = r & 1;

			r = (r >> 1) | (cf << sh);
			cf = nc;
		}
		goto rot;
	case 4:
	case 6: /* shl/sal */
		r = cnt < 64 ? (a << cnt) & m : 0;
		cf = cnt <= bits ? (a >> (bits - cnt)) & 1 : 0;
		of = ((r >> sh) & 1) ^ cf;
		break;
	case 5: /* shr */
		r = a >> cnt;
		cf = (a >> (cnt - 1)) & 1;
		of = (a >> sh) & 1;
		break;
	case 7: /* sar */
	default: {
		int64_t sa = (int64_t)(a << (63 - sh)) >> (63 - sh);

		r = (uint64_t)(sa >> (cnt < 64 ? cnt : 63)) & m;
		cf = (uint64_t)(sa >> (cnt - 1 < 63 ? cnt - 1 : 63)) & 1;
		of = 0;
		break;
	}
	}
	c->flags = (f & ~(uint64_t)F_ARITH) | (cf ? F_CF : 0) | (of ? F_OF : 0) | szp(r, sz);
	return r;
rot:
	c->flags = (f & ~(uint64_t)(F_CF | F_OF)) | (cf ? F_CF : 0) | (of ? F_OF : 0);
	return r;
}

/* shld/shrd. A 16-bit count above 16 (undefined) shifts through dst:src:dst. */
static uint64_t shxd(struct emu_cpu *c, bool left, int sz, uint64_t dst, uint64_t src, unsigned count)
{
	const unsigned bits = (unsigned)sz * 8, sh = bits - 1;
	const uint64_t m = emu_size_mask(sz);
	unsigned cnt = count & (sz == 8 ? 63 : 31);
	uint64_t r, cf;

	dst &= m;
	src &= m;
	if (!cnt)
		return dst;
	if (sz == 2) {
		uint64_t v = (dst << 32) | (src << 16) | dst;

		if (left) {
			r = (v >> (32 - cnt)) & 0xffff;
			cf = (v >> (48 - cnt)) & 1;
		} else {
			r = (v >> cnt) & 0xffff;
			cf = (v >> (cnt - 1)) & 1;
		}
	} else if (left) {
		r = ((dst << cnt) | (src >> (bits - cnt))) & m;
		cf = (dst >> (bits - cnt)) & 1;
	} else {
		r = ((dst >> cnt) | (src << (bits - cnt))) & m;
		cf = (dst >> (cnt - 1)) & 1;
	}
	c->flags = (c->flags & ~(uint64_t)F_ARITH) | (cf ? F_CF : 0) |
		   ((((r ^ dst) >> sh) & 1) ? F_OF : 0) | szp(r, sz);
	return r;
}

static inline bool cond(uint64_t f, int cc)
{
	bool r;

	switch (cc >> 1) {
	case 0: r = f & F_OF; break;
	case 1: r = f & F_CF; break;
	case 2: r = f & F_ZF; break;
	case 3: r = f & (F_CF | F_ZF); break;
	case 4: r = f & F_SF; break;
	case 5: r = f & F_PF; break;
	case 6: r = !(f & F_SF) != !(f & F_OF); break;
	default: r = (f & F_ZF) || (!(f & F_SF) != !(f & F_OF)); break;
	}
	return r ^ (cc & 1);
}

/* ---- read-modify-write with lock ---- */

#define ATOMIC_RMW(T)                                                              \
	do {                                                                       \
		T *p_ = ptr;                                                       \
		T old_ = __atomic_load_n(p_, __ATOMIC_RELAXED), new_;              \
		do {                                                               \
			c->flags = f0;                                             \
			new_ = (T)alu(c, op, sz, old_, src);                       \
		} while (!__atomic_compare_exchange_n(p_, &old_, new_, false,      \
						      __ATOMIC_SEQ_CST,            \
						      __ATOMIC_RELAXED));          \
	} while (0)

static void rmw_mem(struct emu_cpu *c, struct dec *d, int op, int sz, uint64_t src)
{
	uint64_t lin, a, r;

	if (d->lock && op == OP_CMP) /* #UD before any memory fault */
		emu_fault(c, EXC_UD, 0);
	lin = emu_linear(c, d->eseg, d->ea, sz, op == OP_CMP ? ACC_R : ACC_W);
	if (d->lock) {
		void *ptr = emu_rmw_ptr(c, lin, sz);
		uint64_t f0 = c->flags;

		if (ptr) {
			switch (sz) {
			case 1: ATOMIC_RMW(uint8_t); break;
			case 2: ATOMIC_RMW(uint16_t); break;
			case 4: ATOMIC_RMW(uint32_t); break;
			default: ATOMIC_RMW(uint64_t); break;
			}
			return;
		}
	}
	a = op == OP_CMP ? emu_read_lin(c, lin, sz) : emu_read_rmw_lin(c, lin, sz);
	r = alu(c, op, sz, a, src);
	if (op != OP_CMP)
		emu_write_lin(c, lin, sz, r);
}

/* ALU op on the r/m operand: registers inline, memory in rmw_mem(). */
static inline __attribute__((always_inline)) void rmw(struct emu_cpu *c, struct dec *d, int op,
						      int sz, uint64_t src)
{
	uint64_t r;

	if (d->mem) {
		rmw_mem(c, d, op, sz, src);
		return;
	}
	if (d->lock)
		emu_fault(c, EXC_UD, 0);
	r = alu(c, op, sz, getr(c, d, d->rm, sz), src);
	if (op != OP_CMP)
		setr(c, d, d->rm, sz, r);
}

/* ---- misc helpers ---- */

static _Noreturn void undef(struct emu_cpu *c, struct dec *d)
{
	char hex[64];
	int n = 0, avail = (int)(d->end - d->start);

	if (dlen(d) < avail)
		avail = dlen(d);
	if (avail > 15)
		avail = 15;
	for (int i = 0; i < avail && n < (int)sizeof(hex) - 4; i++)
		n += snprintf(hex + n, sizeof(hex) - (size_t)n, "%s%02x", i ? " " : "", d->start[i]);
	hex[n] = 0;
	pr_warn_ratelimited("emu: vcpu %d: unimplemented instruction at rip 0x%llx: %s",
			    c->vcpu ? c->vcpu->id : -1, (unsigned long long)d->rip, hex);
	emu_fault(c, EXC_UD, 0);
}

static inline void need_cpl0(struct emu_cpu *c)
{
	if (c->cpl != 0)
		emu_fault(c, EXC_GP, 0);
}

static inline unsigned iopl(const struct emu_cpu *c)
{
	return (c->flags & F_IOPL) >> 12;
}

static void io_check(struct emu_cpu *c, uint16_t port, int sz)
{
	uint64_t base, bits;

	if (c->mode == MODE_REAL)
		return;
	if (!(c->flags & F_VM) && (unsigned)c->cpl <= iopl(c))
		return;
	if (c->tr.limit < 0x67 || (c->tr.type & 7) != 3)
		emu_fault(c, EXC_GP, 0);
	base = emu_read_slow(c, c->tr.base + 0x66, 2, true);
	if (base + port / 8 + 1 > c->tr.limit)
		emu_fault(c, EXC_GP, 0);
	bits = emu_read_slow(c, c->tr.base + base + port / 8, 2, true);
	if ((bits >> (port & 7)) & ((1u << sz) - 1))
		emu_fault(c, EXC_GP, 0);
}

static inline int stack_opsize(struct emu_cpu *c, struct dec *d)
{
	if (c->long64)
		return d->p66 && !(d->rex & 8) ? 2 : 8; /* REX.W beats 0x66 */
	return d->opsize;
}

static void jump(struct emu_cpu *c, struct dec *d, uint64_t target, int sz)
{
	if (c->long64) {
		/* Non-canonical target: #GP on the jump itself (as Intel does). */
		if ((uint64_t)((int64_t)(target << 16) >> 16) != target)
			emu_fault(c, EXC_GP, 0);
		c->rip = target;
	} else {
		target &= sz == 2 ? 0xffffULL : 0xffffffffULL;
		/* Beyond the code segment's limit: #GP on the jump. */
		if (target > c->seg[SEG_CS].limit)
			emu_fault(c, EXC_GP, 0);
		c->rip = target;
	}
}

/* ---- mul / div ---- */

static void mul1(struct emu_cpu *c, struct dec *d, int sz, uint64_t src, bool sign)
{
	uint64_t lo, hi, f = c->flags & ~(uint64_t)F_ARITH;
	bool ovf;

	switch (sz) {
	case 1: {
		uint64_t a = c->r[R_RAX] & 0xff;
		uint16_t r = sign ? (uint16_t)((int8_t)a * (int8_t)src) : (uint16_t)(a * (src & 0xff));

		ovf = sign ? (int16_t)r != (int8_t)r : (r >> 8) != 0;
		setr(c, d, R_RAX, 2, r);
		lo = r & 0xff;
		break;
	}
	case 2: {
		uint64_t a = c->r[R_RAX] & 0xffff;
		uint32_t r = sign ? (uint32_t)((int16_t)a * (int16_t)src) : (uint32_t)(a * (src & 0xffff));

		ovf = sign ? (int32_t)r != (int16_t)r : (r >> 16) != 0;
		setr(c, d, R_RAX, 2, r);
		setr(c, d, R_RDX, 2, r >> 16);
		lo = r & 0xffff;
		break;
	}
	case 4: {
		uint64_t a = c->r[R_RAX] & 0xffffffffULL;
		uint64_t r = sign ? (uint64_t)((int64_t)(int32_t)a * (int32_t)src)
				  : a * (src & 0xffffffffULL);

		ovf = sign ? (int64_t)r != (int32_t)r : (r >> 32) != 0;
		c->r[R_RAX] = r & 0xffffffffULL;
		c->r[R_RDX] = r >> 32;
		lo = r & 0xffffffffULL;
		break;
	}
	default: {
		if (sign) {
			__int128 r = (__int128)(int64_t)c->r[R_RAX] * (int64_t)src;

			lo = (uint64_t)r;
			hi = (uint64_t)((unsigned __int128)r >> 64);
			ovf = r != (int64_t)lo;
		} else {
			unsigned __int128 r = (unsigned __int128)c->r[R_RAX] * src;

			lo = (uint64_t)r;
			hi = (uint64_t)(r >> 64);
			ovf = hi != 0;
		}
		c->r[R_RAX] = lo;
		c->r[R_RDX] = hi;
		break;
	}
	}
	c->flags = f | (ovf ? (F_CF | F_OF) : 0) | szp(lo, sz);
}

/* Two/three-operand imul: truncated product, CF=OF on overflow. */
static inline __attribute__((always_inline)) uint64_t imul2(struct emu_cpu *c, int sz, uint64_t a,
							  uint64_t b)
{
	uint64_t r;
	bool ovf;

	switch (sz) {
	case 2: {
		int32_t p = (int16_t)a * (int16_t)b;

		r = (uint16_t)p;
		ovf = p != (int16_t)p;
		break;
	}
	case 4: {
		int64_t p = (int64_t)(int32_t)a * (int32_t)b;

		r = (uint32_t)p;
		ovf = p != (int32_t)p;
		break;
	}
	default: {
		__int128 p = (__int128)(int64_t)a * (int64_t)b;

		r = (uint64_t)p;
		ovf = p != (int64_t)r;
		break;
	}
	}
	c->flags = (c->flags & ~(uint64_t)F_ARITH) | (ovf ? (F_CF | F_OF) : 0) | szp(r, sz);
	return r;
}

static void div1(struct emu_cpu *c, struct dec *d, int sz, uint64_t src, bool sign)
{
	src &= emu_size_mask(sz);
	if (!src)
		emu_fault(c, EXC_DE, 0);
	switch (sz) {
	case 1: {
		uint64_t n = c->r[R_RAX] & 0xffff;

		if (sign) {
			int32_t q = (int16_t)n / (int8_t)src, r = (int16_t)n % (int8_t)src;

			if (q < -128 || q > 127)
				emu_fault(c, EXC_DE, 0);
			setr(c, d, R_RAX, 2, ((uint64_t)(uint8_t)r << 8) | (uint8_t)q);
		} else {
			uint64_t q = n / src, r = n % src;

			if (q > 0xff)
				emu_fault(c, EXC_DE, 0);
			setr(c, d, R_RAX, 2, (r << 8) | q);
		}
		break;
	}
	case 2: {
		uint64_t n = ((c->r[R_RDX] & 0xffff) << 16) | (c->r[R_RAX] & 0xffff);

		if (sign) {
			int64_t q = (int64_t)(int32_t)n / (int16_t)src, r = (int64_t)(int32_t)n % (int16_t)src;

			if (q < -32768 || q > 32767)
				emu_fault(c, EXC_DE, 0);
			setr(c, d, R_RAX, 2, (uint64_t)q);
			setr(c, d, R_RDX, 2, (uint64_t)r);
		} else {
			uint64_t q = n / src, r = n % src;

			if (q > 0xffff)
				emu_fault(c, EXC_DE, 0);
			setr(c, d, R_RAX, 2, q);
			setr(c, d, R_RDX, 2, r);
		}
		break;
	}
	case 4: {
		uint64_t n = ((c->r[R_RDX] & 0xffffffffULL) << 32) | (c->r[R_RAX] & 0xffffffffULL);

		if (sign) {
			__int128 q = (__int128)(int64_t)n / (int32_t)src;
			__int128 r = (__int128)(int64_t)n % (int32_t)src;

			if (q < INT32_MIN || q > INT32_MAX)
				emu_fault(c, EXC_DE, 0);
			c->r[R_RAX] = (uint32_t)q;
			c->r[R_RDX] = (uint32_t)r;
		} else {
			uint64_t q = n / src, r = n % src;

			if (q > 0xffffffffULL)
				emu_fault(c, EXC_DE, 0);
			c->r[R_RAX] = q;
			c->r[R_RDX] = r;
		}
		break;
	}
	default: {
		unsigned __int128 n = ((unsigned __int128)c->r[R_RDX] << 64) | c->r[R_RAX];

		if (sign) {
			__int128 sn = (__int128)n, q, r;
			int64_t s = (int64_t)src;

			if (n == ((unsigned __int128)1 << 127))
				emu_fault(c, EXC_DE, 0); /* |dividend| overflows any quotient */
			q = sn / s;
			r = sn % s;
			if (q < INT64_MIN || q > INT64_MAX)
				emu_fault(c, EXC_DE, 0);
			c->r[R_RAX] = (uint64_t)q;
			c->r[R_RDX] = (uint64_t)r;
		} else {
			if (c->r[R_RDX] >= src)
				emu_fault(c, EXC_DE, 0);
			c->r[R_RAX] = (uint64_t)(n / src);
			c->r[R_RDX] = (uint64_t)(n % src);
		}
		break;
	}
	}
}

/* ---- string instructions ---- */

enum { STR_MOVS, STR_CMPS, STR_STOS, STR_LODS, STR_SCAS, STR_INS, STR_OUTS };

static void string_op(struct emu_cpu *c, struct dec *d, int op, int sz)
{
	const int as = d->adsize;
	const uint64_t am = emu_size_mask(as);
	const bool rep = d->rep != 0;
	const int64_t step = (c->flags & F_DF) ? -sz : sz;
	const int sseg = d->seg != SEG_NONE ? d->seg : SEG_DS;
	const uint64_t next = next_rip(c, d);
	uint16_t port = (uint16_t)c->r[R_RDX];

	if (op == STR_INS || op == STR_OUTS)
		io_check(c, port, sz);
	for (unsigned n = 0;; n++) {
		uint64_t v, b;

		if (rep && !(c->r[R_RCX] & am))
			break;
		switch (op) {
		case STR_MOVS:
			v = emu_read(c, sseg, c->r[R_RSI] & am, sz);
			emu_write(c, SEG_ES, c->r[R_RDI] & am, sz, v);
			set_adreg(c, R_RSI, as, c->r[R_RSI] + (uint64_t)step);
			set_adreg(c, R_RDI, as, c->r[R_RDI] + (uint64_t)step);
			break;
		case STR_STOS:
			emu_write(c, SEG_ES, c->r[R_RDI] & am, sz, c->r[R_RAX]);
			set_adreg(c, R_RDI, as, c->r[R_RDI] + (uint64_t)step);
			break;
		case STR_LODS:
			v = emu_read(c, sseg, c->r[R_RSI] & am, sz);
			setr(c, d, R_RAX, sz, v);
			set_adreg(c, R_RSI, as, c->r[R_RSI] + (uint64_t)step);
			break;
		case STR_CMPS:
			v = emu_read(c, sseg, c->r[R_RSI] & am, sz);
			b = emu_read(c, SEG_ES, c->r[R_RDI] & am, sz);
			alu(c, OP_CMP, sz, v, b);
			set_adreg(c, R_RSI, as, c->r[R_RSI] + (uint64_t)step);
			set_adreg(c, R_RDI, as, c->r[R_RDI] + (uint64_t)step);
			break;
		case STR_SCAS:
			b = emu_read(c, SEG_ES, c->r[R_RDI] & am, sz);
			alu(c, OP_CMP, sz, c->r[R_RAX], b);
			set_adreg(c, R_RDI, as, c->r[R_RDI] + (uint64_t)step);
			break;
		case STR_INS:
			/* Check the destination before the port is read. */
			emu_linear(c, SEG_ES, c->r[R_RDI] & am, sz, ACC_W);
			v = emu_io_in(c, port, sz);
			emu_write(c, SEG_ES, c->r[R_RDI] & am, sz, v);
			set_adreg(c, R_RDI, as, c->r[R_RDI] + (uint64_t)step);
			break;
		case STR_OUTS:
		default:
			v = emu_read(c, sseg, c->r[R_RSI] & am, sz);
			emu_io_out(c, port, sz, v);
			set_adreg(c, R_RSI, as, c->r[R_RSI] + (uint64_t)step);
			break;
		}
		if (rep)
			set_adreg(c, R_RCX, as, c->r[R_RCX] - 1);
		/* This element is committed. */
		c->insn_flags = c->flags;
		c->rlog_n = c->rlog_idx = 0;
		if (!rep || !(c->r[R_RCX] & am))
			break;
		if (op == STR_CMPS || op == STR_SCAS) {
			bool zf = c->flags & F_ZF;

			if ((d->rep == 0xf3 && !zf) || (d->rep == 0xf2 && zf))
				break;
		}
		/* Stay on this instruction: an exit is due, or a kick/irq. */
		if (c->exit_ready)
			return;
		if ((n & 255) == 255 && atomic_load_explicit(&c->attn, memory_order_relaxed))
			return;
	}
	c->rip = next;
}

/* ---- bit tests ---- */

static void bit_op(struct emu_cpu *c, struct dec *d, int op, int sz, uint64_t off, bool imm)
{
	const unsigned bits = (unsigned)sz * 8;
	uint64_t v, lin, bit, mask;
	int64_t soff;
	uint64_t addr;

	if (!d->mem || imm) {
		bit = off & (bits - 1);
		if (!d->mem) {
			if (d->lock)
				emu_fault(c, EXC_UD, 0);
			v = getr(c, d, d->rm, sz);
			goto reg;
		}
		addr = d->ea;
	} else {
		soff = (int64_t)(sz == 2 ? (uint64_t)(int16_t)off : sz == 4 ? (uint64_t)(int32_t)off : off);
		addr = d->ea + (uint64_t)((soff >> (sz == 2 ? 4 : sz == 4 ? 5 : 6)) * sz);
		bit = (uint64_t)soff & (bits - 1);
	}
	addr &= emu_size_mask(d->adsize);
	mask = 1ULL << bit;
	lin = emu_linear(c, d->eseg, addr, sz, op ? ACC_W : ACC_R);
	if (d->lock && op) {
		void *p = emu_rmw_ptr(c, lin, sz);

		if (p) {
			uint64_t old = 0;

			/* A byte is enough for one bit: no width games. */
			uint8_t *bp = (uint8_t *)p + bit / 8, bm = (uint8_t)(1u << (bit % 8));

			if (op == 1)
				old = __atomic_fetch_or(bp, bm, __ATOMIC_SEQ_CST);
			else if (op == 2)
				old = __atomic_fetch_and(bp, (uint8_t)~bm, __ATOMIC_SEQ_CST);
			else
				old = __atomic_fetch_xor(bp, bm, __ATOMIC_SEQ_CST);
			c->flags = (c->flags & ~(uint64_t)F_CF) | ((old & bm) ? F_CF : 0);
			return;
		}
	} else if (d->lock) {
		emu_fault(c, EXC_UD, 0);
	}
	v = op ? emu_read_rmw_lin(c, lin, sz) : emu_read_lin(c, lin, sz);
	switch (op) {
	case 1: emu_write_lin(c, lin, sz, v | mask); break;
	case 2: emu_write_lin(c, lin, sz, v & ~mask); break;
	case 3: emu_write_lin(c, lin, sz, v ^ mask); break;
	default: break;
	}
	c->flags = (c->flags & ~(uint64_t)F_CF) | ((v & mask) ? F_CF : 0);
	return;
reg:
	mask = 1ULL << bit;
	switch (op) {
	case 1: setr(c, d, d->rm, sz, v | mask); break;
	case 2: setr(c, d, d->rm, sz, v & ~mask); break;
	case 3: setr(c, d, d->rm, sz, v ^ mask); break;
	default: break;
	}
	c->flags = (c->flags & ~(uint64_t)F_CF) | ((v & mask) ? F_CF : 0);
}

/* ---- control registers ---- */

#define CR4_ALLOWED (0x4ULL | 0x8ULL | X86_CR4_PSE | X86_CR4_PAE | 0x40ULL | X86_CR4_PGE | 0x100ULL | \
		     X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT)

static void write_cr(struct emu_cpu *c, int n, uint64_t v)
{
	switch (n) {
	case 0: {
		uint64_t old = c->cr0;

		if (v >> 32)
			emu_fault(c, EXC_GP, 0);
		v |= X86_CR0_ET;
		if ((v & X86_CR0_PG) && !(v & X86_CR0_PE))
			emu_fault(c, EXC_GP, 0);
		if ((v & X86_CR0_NW) && !(v & X86_CR0_CD))
			emu_fault(c, EXC_GP, 0);
		if ((v & X86_CR0_PG) && !(old & X86_CR0_PG) && (c->efer & X86_EFER_LME)) {
			if (!(c->cr4 & X86_CR4_PAE))
				emu_fault(c, EXC_GP, 0);
			c->efer |= X86_EFER_LMA;
		}
		if (!(v & X86_CR0_PG) && (old & X86_CR0_PG) && (c->efer & X86_EFER_LMA)) {
			if (c->long64)
				emu_fault(c, EXC_GP, 0);
			c->efer &= ~X86_EFER_LMA;
		}
		c->cr0 = v;
		if ((old ^ v) & (X86_CR0_PG | X86_CR0_PE | X86_CR0_WP))
			emu_tlb_flush(c);
		emu_update_mode(c);
		break;
	}
	case 2: c->cr2 = v; break;
	case 3:
		if ((c->efer & X86_EFER_LMA) && (v >> 52))
			emu_fault(c, EXC_GP, 0);
		c->cr3 = v;
		emu_tlb_flush(c);
		break;
	case 4:
		if (v & ~CR4_ALLOWED)
			emu_fault(c, EXC_GP, 0);
		if ((c->efer & X86_EFER_LMA) && !(v & X86_CR4_PAE))
			emu_fault(c, EXC_GP, 0);
		if ((v ^ c->cr4) & (X86_CR4_PSE | X86_CR4_PAE | X86_CR4_PGE))
			emu_tlb_flush(c);
		c->cr4 = v;
		break;
	case 8:
		if (v >> 4)
			emu_fault(c, EXC_GP, 0);
		emu_set_cr8(c, v); /* the LAPIC's TPR[7:4] */
		break;
	default:
		emu_fault(c, EXC_UD, 0);
	}
}

static uint64_t read_cr(struct emu_cpu *c, int n)
{
	switch (n) {
	case 0: return c->cr0;
	case 2: return c->cr2;
	case 3: return c->cr3;
	case 4: return c->cr4;
	case 8: return emu_get_cr8(c);
	default: emu_fault(c, EXC_UD, 0);
	}
}

static void popf(struct emu_cpu *c, int sz, uint64_t v)
{
	uint64_t mask = F_ARITH | F_TF | F_DF | F_NT | F_AC | F_ID;

	if (c->cpl == 0)
		mask |= F_IOPL;
	if ((unsigned)c->cpl <= iopl(c))
		mask |= F_IF;
	if (sz == 2)
		mask &= 0xffff;
	c->flags = (c->flags & ~mask) | (v & mask) | 2;
}

/* ---- x87 / SSE: decoded here, executed by x87.c / sse.c ---- */

static void fpu_decode(struct emu_cpu *c, struct dec *d, uint8_t opc, bool imm,
		       struct emu_fpu_insn *in)
{
	in->modrm = peek8(c, d);
	modrm(c, d, imm ? 1 : 0);
	in->opc = opc;
	in->pfx = d->rep ? d->rep : d->p66 ? 0x66 : 0;
	in->reg = d->reg;
	in->rm = d->rm;
	in->mem = d->mem;
	in->rexw = (d->rex & 8) != 0;
	in->seg = d->eseg;
	in->ea = d->ea;
	in->opsize = d->opsize;
	in->imm = imm ? f8(c, d) : 0;
}

/* ---- the two-byte map ---- */

static inline __attribute__((always_inline)) void exec_0f(struct emu_cpu *c, struct dec *d)
{
	uint8_t b = f8(c, d);
	int sz = d->opsize;
	uint64_t v, s;

	if (unlikely(d->lock)) {
		switch (b) {
		case 0xab: case 0xb0: case 0xb1: case 0xb3: case 0xba: case 0xbb:
		case 0xc0: case 0xc1: case 0xc7:
			break;
		default:
			emu_fault(c, EXC_UD, 0);
		}
	}

	switch (b) {
	case 0x00: /* group 6 */
		if (c->mode == MODE_REAL || (c->flags & F_VM))
			emu_fault(c, EXC_UD, 0);
		modrm(c, d, 0);
		switch (d->reg & 7) {
		case 0: /* sldt */
			rm_write(c, d, d->mem ? 2 : sz, c->ldt.sel);
			break;
		case 1: /* str */
			rm_write(c, d, d->mem ? 2 : sz, c->tr.sel);
			break;
		case 2: /* lldt */
			need_cpl0(c);
			emu_lldt(c, (uint16_t)rm_read(c, d, 2));
			break;
		case 3: /* ltr */
			need_cpl0(c);
			emu_ltr(c, (uint16_t)rm_read(c, d, 2));
			break;
		case 4: /* verr */
		case 5: /* verw */
			if (emu_verify_seg(c, (uint16_t)rm_read(c, d, 2), (d->reg & 7) == 5))
				c->flags |= F_ZF;
			else
				c->flags &= ~(uint64_t)F_ZF;
			break;
		default:
			undef(c, d);
		}
		break;
	case 0x02: /* lar */
	case 0x03: { /* lsl */
		uint64_t r;

		if (c->mode == MODE_REAL || (c->flags & F_VM))
			emu_fault(c, EXC_UD, 0);
		modrm(c, d, 0);
		if (emu_lar_lsl(c, (uint16_t)rm_read(c, d, 2), b == 0x03, &r)) {
			setr(c, d, d->reg, sz, r);
			c->flags |= F_ZF;
		} else {
			c->flags &= ~(uint64_t)F_ZF;
		}
		break;
	}
	case 0x01: /* group 7 */
		modrm(c, d, 0);
		if (d->mod == 3) {
			uint8_t m = (uint8_t)(0xc0 | ((d->reg & 7) << 3) | (d->rm & 7));

			switch (m) {
			case 0xf8: /* swapgs */
				if (!c->long64)
					emu_fault(c, EXC_UD, 0);
				need_cpl0(c);
				v = c->seg[SEG_GS].base;
				c->seg[SEG_GS].base = c->kgs_base;
				c->kgs_base = v;
				break;
			case 0xf9: /* rdtscp */
				if ((c->cr4 & 0x4) && c->cpl)
					emu_fault(c, EXC_GP, 0);
				v = emu_rdtsc(c);
				c->r[R_RAX] = v & 0xffffffffULL;
				c->r[R_RDX] = v >> 32;
				c->r[R_RCX] = c->tsc_aux & 0xffffffffULL;
				break;
			default:
				if ((d->reg & 7) == 4) { /* smsw reg */
					setr(c, d, d->rm, sz, c->cr0 & emu_size_mask(sz));
					break;
				}
				if ((d->reg & 7) == 6) { /* lmsw reg */
					need_cpl0(c);
					v = getr(c, d, d->rm, 2);
					write_cr(c, 0, (c->cr0 & ~0xeULL) | (v & 0xf) | (c->cr0 & 1));
					break;
				}
				undef(c, d);
			}
			break;
		}
		switch (d->reg & 7) {
		case 0: /* sgdt */
		case 1: { /* sidt */
			struct x86_dtable *t = (d->reg & 7) ? &c->idt : &c->gdt;

			emu_write(c, d->eseg, d->ea, 2, t->limit);
			if (c->long64)
				emu_write(c, d->eseg, (d->ea + 2) & emu_size_mask(d->adsize), 8, t->base);
			else
				emu_write(c, d->eseg, (d->ea + 2) & emu_size_mask(d->adsize), 4, t->base);
			break;
		}
		case 2: /* lgdt */
		case 3: { /* lidt */
			struct x86_dtable *t = (d->reg & 7) == 3 ? &c->idt : &c->gdt;
			uint16_t lim;
			uint64_t base;

			need_cpl0(c);
			lim = (uint16_t)emu_read(c, d->eseg, d->ea, 2);
			if (c->long64) {
				base = emu_read(c, d->eseg, (d->ea + 2) & emu_size_mask(d->adsize), 8);
				if ((uint64_t)((int64_t)(base << 16) >> 16) != base)
					emu_fault(c, EXC_GP, 0);
			} else {
				base = emu_read(c, d->eseg, (d->ea + 2) & emu_size_mask(d->adsize), 4);
				if (sz == 2)
					base &= 0xffffff;
			}
			t->limit = lim;
			t->base = base;
			break;
		}
		case 4: /* smsw m16 */
			emu_write(c, d->eseg, d->ea, 2, c->cr0 & 0xffff);
			break;
		case 6: /* lmsw */
			need_cpl0(c);
			v = emu_read(c, d->eseg, d->ea, 2);
			write_cr(c, 0, (c->cr0 & ~0xeULL) | (v & 0xf) | (c->cr0 & 1));
			break;
		case 7: /* invlpg */
			need_cpl0(c);
			emu_tlb_flush_page(c, d->ea);
			break;
		default:
			undef(c, d);
		}
		break;
	case 0x05: /* syscall */
		emu_syscall(c, next_rip(c, d));
		return;
	case 0x06: /* clts */
		need_cpl0(c);
		c->cr0 &= ~X86_CR0_TS;
		break;
	case 0x07: /* sysret */
		emu_sysret(c, d->rex & 8);
		return;
	case 0x08: /* invd */
	case 0x09: /* wbinvd */
		need_cpl0(c);
		break;
	case 0x0b: /* ud2 */
		emu_fault(c, EXC_UD, 0);
	case 0x0d: /* prefetch hints */
	case 0x18: case 0x19: case 0x1a: case 0x1b: case 0x1c: case 0x1d: case 0x1e: case 0x1f:
		modrm(c, d, 0);
		break;
	case 0x20: /* mov r, cr */
	case 0x22: { /* mov cr, r */
		int n;

		modrm_regs(c, d);
		n = d->reg;
		if (n != 0 && n != 2 && n != 3 && n != 4 && n != 8)
			emu_fault(c, EXC_UD, 0); /* before the privilege check */
		need_cpl0(c);
		if (b == 0x20) {
			v = read_cr(c, n);
			setr(c, d, d->rm, c->long64 ? 8 : 4, v);
		} else {
			v = getr(c, d, d->rm, c->long64 ? 8 : 4);
			write_cr(c, n, v);
		}
		break;
	}
	case 0x21: /* mov r, dr */
	case 0x23: { /* mov dr, r */
		int n;

		modrm_regs(c, d);
		n = d->reg;
		if (n > 7) /* dr8-15: #UD before the privilege check */
			emu_fault(c, EXC_UD, 0);
		need_cpl0(c);
		if (n == 4 || n == 5) {
			if (c->cr4 & 0x8)
				emu_fault(c, EXC_UD, 0);
			n += 2;
		}
		if (b == 0x21) {
			setr(c, d, d->rm, c->long64 ? 8 : 4, c->dr[n]);
		} else {
			v = getr(c, d, d->rm, c->long64 ? 8 : 4);
			if (n == 6)
				v = (v & 0xe00f) | 0xffff0ff0ULL;
			else if (n == 7)
				v = (v & 0xffff2bffULL) | 0x400;
			c->dr[n] = v;
		}
		break;
	}
	case 0x30: /* wrmsr */
		need_cpl0(c);
		v = ((c->r[R_RDX] & 0xffffffffULL) << 32) | (c->r[R_RAX] & 0xffffffffULL);
		if (emu_wrmsr(c, (uint32_t)c->r[R_RCX], v) < 0) {
			if (!msr_is_pmu((uint32_t)c->r[R_RCX])) /* no PMU: no warning (cpuid.h) */
				pr_warn_ratelimited("emu: wrmsr 0x%x <- 0x%llx refused (#GP)",
						    (unsigned)c->r[R_RCX], (unsigned long long)v);
			emu_fault(c, EXC_GP, 0);
		}
		break;
	case 0x31: /* rdtsc */
		if ((c->cr4 & 0x4) && c->cpl)
			emu_fault(c, EXC_GP, 0);
		v = emu_rdtsc(c);
		c->r[R_RAX] = v & 0xffffffffULL;
		c->r[R_RDX] = v >> 32;
		break;
	case 0x33: /* rdpmc: outside CPL 0 without CR4.PCE #GP; and there are
		    * no counters (no PMU in CPUID) for ECX to name: #GP */
		emu_fault(c, EXC_GP, 0);
	case 0x32: /* rdmsr */
		need_cpl0(c);
		if (emu_rdmsr(c, (uint32_t)c->r[R_RCX], &v) < 0) {
			if (!msr_is_pmu((uint32_t)c->r[R_RCX]))
				pr_warn_ratelimited("emu: rdmsr 0x%x unknown (#GP)", (unsigned)c->r[R_RCX]);
			emu_fault(c, EXC_GP, 0);
		}
		c->r[R_RAX] = v & 0xffffffffULL;
		c->r[R_RDX] = v >> 32;
		break;
	case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
	case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f:
		modrm(c, d, 0);
		v = rm_read(c, d, sz);
		if (cond(c->flags, b & 15))
			setr(c, d, d->reg, sz, v);
		else if (sz == 4)
			setr(c, d, d->reg, 4, getr(c, d, d->reg, 4));
		break;
	case 0x80: case 0x81: case 0x82: case 0x83: case 0x84: case 0x85: case 0x86: case 0x87:
	case 0x88: case 0x89: case 0x8a: case 0x8b: case 0x8c: case 0x8d: case 0x8e: case 0x8f: {
		int osz = c->long64 ? 4 : d->opsize;
		int64_t rel = fimm_s(c, d, osz);
		uint64_t nx = next_rip(c, d);

		if (cond(c->flags, b & 15))
			jump(c, d, nx + (uint64_t)rel, c->long64 ? 8 : d->opsize);
		else
			c->rip = nx;
		return;
	}
	case 0x90: case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97:
	case 0x98: case 0x99: case 0x9a: case 0x9b: case 0x9c: case 0x9d: case 0x9e: case 0x9f:
		modrm(c, d, 0);
		rm_write(c, d, 1, cond(c->flags, b & 15));
		break;
	case 0xa0: /* push fs */
	case 0xa8: /* push gs */
		push(c, stack_opsize(c, d), c->seg[b == 0xa0 ? SEG_FS : SEG_GS].sel);
		break;
	case 0xa1: /* pop fs */
	case 0xa9: { /* pop gs */
		int osz = stack_opsize(c, d);

		v = peek(c, osz, 0);
		emu_load_seg(c, b == 0xa1 ? SEG_FS : SEG_GS, (uint16_t)v);
		set_rsp(c, c->r[R_RSP] + (uint64_t)osz);
		break;
	}
	case 0xa2: { /* cpuid */
		uint32_t out[4];

		emu_cpuid(c, (uint32_t)c->r[R_RAX], (uint32_t)c->r[R_RCX], out);
		c->r[R_RAX] = out[0];
		c->r[R_RBX] = out[1];
		c->r[R_RCX] = out[2];
		c->r[R_RDX] = out[3];
		break;
	}
	case 0xa3: /* bt */
	case 0xab: /* bts */
	case 0xb3: /* btr */
	case 0xbb: /* btc */
		modrm(c, d, 0);
		bit_op(c, d, b == 0xa3 ? 0 : b == 0xab ? 1 : b == 0xb3 ? 2 : 3, sz, getr(c, d, d->reg, sz), false);
		break;
	case 0xba: { /* group 8: bt/bts/btr/btc imm8 */
		uint8_t imm;

		modrm(c, d, 1);
		imm = f8(c, d);
		if ((d->reg & 7) < 4)
			undef(c, d);
		bit_op(c, d, (d->reg & 7) - 4, sz, imm, true);
		break;
	}
	case 0xa4: /* shld imm */
	case 0xac: /* shrd imm */
	case 0xa5: /* shld cl */
	case 0xad: { /* shrd cl */
		unsigned cnt;

		modrm(c, d, (b & 1) ? 0 : 1);
		cnt = (b & 1) ? (unsigned)(c->r[R_RCX] & 0xff) : f8(c, d);
		v = rm_read_rmw(c, d, sz);
		v = shxd(c, b < 0xa8, sz, v, getr(c, d, d->reg, sz), cnt);
		rm_write(c, d, sz, v);
		break;
	}
	case 0xae: /* group 15 */
		if ((peek8(c, d) >> 6) != 3 && ((peek8(c, d) >> 3) & 7) < 4) {
			struct emu_fpu_insn in; /* fxsave fxrstor ldmxcsr stmxcsr */

			fpu_decode(c, d, b, false, &in);
			emu_sse_exec(c, &in);
			break;
		}
		modrm(c, d, 0);
		if (d->mod == 3) {
			switch (d->reg & 7) {
			case 5: case 6: case 7: /* lfence, mfence, sfence */
				__atomic_thread_fence(__ATOMIC_SEQ_CST);
				break;
			default:
				undef(c, d);
			}
		} else if ((d->reg & 7) == 7) {
			/* clflush: caches are coherent here; still checks the address. */
			emu_linear(c, d->eseg, d->ea, 1, ACC_R);
		} else {
			undef(c, d);
		}
		break;
	case 0xaf: /* imul r, r/m */
		modrm(c, d, 0);
		v = rm_read(c, d, sz);
		setr(c, d, d->reg, sz, imul2(c, sz, getr(c, d, d->reg, sz), v));
		break;
	case 0xb0: /* cmpxchg */
	case 0xb1: {
		uint64_t acc, cur;
		int osz = b == 0xb0 ? 1 : sz;

		modrm(c, d, 0);
		acc = getr(c, d, R_RAX, osz);
		s = getr(c, d, d->reg, osz);
		if (d->mem) {
			uint64_t lin = emu_linear(c, d->eseg, d->ea, osz, ACC_W);
			void *p = emu_rmw_ptr(c, lin, osz);

			if (p) {
				bool ok;

				switch (osz) {
				case 1: { uint8_t e = (uint8_t)acc; ok = __atomic_compare_exchange_n((uint8_t *)p, &e, (uint8_t)s, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); cur = e; break; }
				case 2: { uint16_t e = (uint16_t)acc; ok = __atomic_compare_exchange_n((uint16_t *)p, &e, (uint16_t)s, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); cur = e; break; }
				case 4: { uint32_t e = (uint32_t)acc; ok = __atomic_compare_exchange_n((uint32_t *)p, &e, (uint32_t)s, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); cur = e; break; }
				default: { uint64_t e = acc; ok = __atomic_compare_exchange_n((uint64_t *)p, &e, s, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST); cur = e; break; }
				}
				(void)ok;
			} else {
				cur = emu_read_rmw_lin(c, lin, osz);
				emu_write_lin(c, lin, osz, cur == acc ? s : cur);
			}
		} else {
			cur = getr(c, d, d->rm, osz);
			if (cur == acc)
				setr(c, d, d->rm, osz, s);
		}
		alu(c, OP_CMP, osz, acc, cur);
		if (cur != acc)
			setr(c, d, R_RAX, osz, cur);
		break;
	}
	case 0xb2: /* lss */
	case 0xb4: /* lfs */
	case 0xb5: { /* lgs */
		uint16_t sel;

		modrm(c, d, 0);
		if (!d->mem)
			emu_fault(c, EXC_UD, 0);
		v = emu_read(c, d->eseg, d->ea, sz);
		sel = (uint16_t)emu_read(c, d->eseg, (d->ea + (uint64_t)sz) & emu_size_mask(d->adsize), 2);
		emu_load_seg(c, b == 0xb2 ? SEG_SS : b == 0xb4 ? SEG_FS : SEG_GS, sel);
		setr(c, d, d->reg, sz, v);
		break;
	}
	case 0xb6: /* movzx r, r/m8 */
	case 0xb7: /* movzx r, r/m16 */
		modrm(c, d, 0);
		v = rm_read(c, d, b == 0xb6 ? 1 : 2);
		setr(c, d, d->reg, sz, v);
		break;
	case 0xbe: /* movsx r, r/m8 */
	case 0xbf: /* movsx r, r/m16 */
		modrm(c, d, 0);
		v = rm_read(c, d, b == 0xbe ? 1 : 2);
		v = b == 0xbe ? (uint64_t)(int8_t)v : (uint64_t)(int16_t)v;
		setr(c, d, d->reg, sz, v);
		break;
	case 0xbc: /* bsf */
	case 0xbd: /* bsr */
		modrm(c, d, 0);
		v = rm_read(c, d, sz);
		if (!v) {
			c->flags |= F_ZF; /* destination unchanged */
		} else {
			c->flags &= ~(uint64_t)F_ZF;
			setr(c, d, d->reg, sz, b == 0xbc ? (uint64_t)__builtin_ctzll(v) : (uint64_t)(63 - __builtin_clzll(v)));
		}
		break;
	case 0xc0: /* xadd */
	case 0xc1: {
		int osz = b == 0xc0 ? 1 : sz;
		uint64_t old;

		modrm(c, d, 0);
		s = getr(c, d, d->reg, osz);
		if (d->mem) {
			uint64_t lin = emu_linear(c, d->eseg, d->ea, osz, ACC_W);
			void *p = d->lock ? emu_rmw_ptr(c, lin, osz) : NULL;

			if (p) {
				switch (osz) {
				case 1: old = __atomic_fetch_add((uint8_t *)p, (uint8_t)s, __ATOMIC_SEQ_CST); break;
				case 2: old = __atomic_fetch_add((uint16_t *)p, (uint16_t)s, __ATOMIC_SEQ_CST); break;
				case 4: old = __atomic_fetch_add((uint32_t *)p, (uint32_t)s, __ATOMIC_SEQ_CST); break;
				default: old = __atomic_fetch_add((uint64_t *)p, s, __ATOMIC_SEQ_CST); break;
				}
				v = alu(c, OP_ADD, osz, old, s);
			} else {
				old = emu_read_rmw_lin(c, lin, osz);
				v = alu(c, OP_ADD, osz, old, s);
				emu_write_lin(c, lin, osz, v);
			}
			setr(c, d, d->reg, osz, old);
		} else {
			if (d->lock)
				emu_fault(c, EXC_UD, 0);
			old = getr(c, d, d->rm, osz);
			v = alu(c, OP_ADD, osz, old, s);
			setr(c, d, d->reg, osz, old);
			setr(c, d, d->rm, osz, v);
		}
		break;
	}
	case 0xc7: { /* group 9 */
		modrm(c, d, 0);
		if ((d->reg & 7) != 1 || !d->mem)
			undef(c, d);
		if (d->rex & 8) { /* cmpxchg16b */
			uint64_t lin, lo = c->r[R_RAX], hi = c->r[R_RDX], clo, chi;
			uint8_t *p;
			bool ok;

			/* Alignment first: #GP before the #SS/#GP of a
			 * non-canonical address (as the CPU orders them). */
			if ((d->ea + (d->eseg >= SEG_FS ? c->seg[d->eseg].base : 0)) & 15)
				emu_fault(c, EXC_GP, 0);
			lin = emu_linear(c, d->eseg, d->ea, 16, ACC_W);
			p = emu_rmw_ptr(c, lin, 16);
#if defined(__x86_64__)
			if (p && !((uintptr_t)p & 15)) {
				clo = lo;
				chi = hi;
				__asm__ volatile("lock cmpxchg16b %1"
						 : "=@ccz"(ok), "+m"(*(unsigned __int128 *)p), "+a"(clo), "+d"(chi)
						 : "b"(c->r[R_RBX]), "c"(c->r[R_RCX])
						 : "memory");
			} else
#endif
			{
				clo = emu_read_rmw_lin(c, lin, 8);
				chi = emu_read_rmw_lin(c, lin + 8, 8);
				ok = clo == lo && chi == hi;
				emu_write_lin(c, lin, 8, ok ? c->r[R_RBX] : clo);
				emu_write_lin(c, lin + 8, 8, ok ? c->r[R_RCX] : chi);
			}
			if (ok) {
				c->flags |= F_ZF;
			} else {
				c->flags &= ~(uint64_t)F_ZF;
				c->r[R_RAX] = clo;
				c->r[R_RDX] = chi;
			}
		} else { /* cmpxchg8b */
			uint64_t lin = emu_linear(c, d->eseg, d->ea, 8, ACC_W);
			uint64_t exp = ((c->r[R_RDX] & 0xffffffffULL) << 32) | (c->r[R_RAX] & 0xffffffffULL);
			uint64_t nw = ((c->r[R_RCX] & 0xffffffffULL) << 32) | (c->r[R_RBX] & 0xffffffffULL);
			uint64_t cur = exp;
			void *p = emu_rmw_ptr(c, lin, 8);
			bool ok;

			if (p) {
				ok = __atomic_compare_exchange_n((uint64_t *)p, &cur, nw, false, __ATOMIC_SEQ_CST,
								 __ATOMIC_SEQ_CST);
			} else {
				cur = emu_read_rmw_lin(c, lin, 8);
				ok = cur == exp;
				emu_write_lin(c, lin, 8, ok ? nw : cur);
			}
			if (ok) {
				c->flags |= F_ZF;
			} else {
				c->flags &= ~(uint64_t)F_ZF;
				c->r[R_RAX] = cur & 0xffffffffULL;
				c->r[R_RDX] = cur >> 32;
			}
		}
		break;
	}
	case 0xc8: case 0xc9: case 0xca: case 0xcb: case 0xcc: case 0xcd: case 0xce: case 0xcf: {
		int r = (b & 7) | ((d->rex & 1) << 3);

		if (sz == 8)
			c->r[r] = __builtin_bswap64(c->r[r]);
		else if (sz == 4)
			c->r[r] = __builtin_bswap32((uint32_t)c->r[r]);
		else
			setr(c, d, r, 2, 0); /* undefined; Intel gives 0 */
		break;
	}
	case 0x10 ... 0x17: case 0x28 ... 0x2f: case 0x50 ... 0x7f:
	case 0xc2 ... 0xc6: case 0xd0 ... 0xff: { /* SSE/SSE2 */
		struct emu_fpu_insn in;

		fpu_decode(c, d, b, emu_sse_has_imm(b), &in);
		emu_sse_exec(c, &in);
		break;
	}
	default:
		undef(c, d);
	}
	c->rip = next_rip(c, d);
}

/* ---- the one-byte map ---- */

/* Bytes that are (or, 40-4f, may be) prefixes. */
static const bool maybe_prefix[256] = {
	[0x26] = true, [0x2e] = true, [0x36] = true, [0x3e] = true, [0x40 ... 0x4f] = true,
	[0x64 ... 0x67] = true, [0xf0] = true, [0xf2] = true, [0xf3] = true,
};

static inline __attribute__((always_inline)) void exec_one(struct emu_cpu *c)
{
	struct dec d;
	uint64_t lin, tag, v, s;
	const uint8_t *page;
	unsigned avail;
	uint8_t b;
	bool a67 = false;
	int sz;

	c->insn_rip = c->rip;
	c->insn_flags = c->flags;
	c->shadow = 0;
	c->insns++;

	lin = c->long64 ? c->rip : ((c->seg[SEG_CS].base + c->rip) & 0xffffffffULL);
	tag = (lin >> 12) + 1;
	page = likely(c->fetch_tag == tag) ? c->fetch_hva : emu_fetch_page(c, lin);
	d.p = d.start = page + (lin & 0xfff);
	avail = 4096 - (unsigned)(lin & 0xfff);
	d.end = d.p + (avail > 15 ? 15 : avail);
	d.lin = lin;
	d.pbase = (uintptr_t)d.p;
	d.rip = c->rip;
	d.seg = SEG_NONE;
	d.rep = 0;
	d.lock = false;
	d.p66 = false;
	d.rex = 0;
	d.mem = false;

	for (;;) {
		b = f8(c, &d);
		if (likely(!maybe_prefix[b])) /* most instructions: skip the switch */
			break;
		if ((b & 0xf0) == 0x40) { /* REX in 64-bit mode, else inc/dec */
			if (!c->long64)
				break;
			d.rex = b;
			continue;
		}
		switch (b) {
		case 0x66: d.p66 = true; d.rex = 0; continue;
		case 0x67: a67 = true; d.rex = 0; continue;
		case 0x26: if (!c->long64) d.seg = SEG_ES; d.rex = 0; continue;
		case 0x2e: if (!c->long64) d.seg = SEG_CS; d.rex = 0; continue;
		case 0x36: if (!c->long64) d.seg = SEG_SS; d.rex = 0; continue;
		case 0x3e: if (!c->long64) d.seg = SEG_DS; d.rex = 0; continue;
		case 0x64: d.seg = SEG_FS; d.rex = 0; continue;
		case 0x65: d.seg = SEG_GS; d.rex = 0; continue;
		case 0xf0: d.lock = true; d.rex = 0; continue;
		case 0xf2: case 0xf3: d.rep = b; d.rex = 0; continue;
		default:
			break;
		}
		break;
	}
	if (c->long64) {
		d.opsize = (d.rex & 8) ? 8 : d.p66 ? 2 : 4;
		d.adsize = a67 ? 4 : 8;
	} else {
		d.opsize = d.p66 ? 6 - c->def_size : c->def_size;
		d.adsize = a67 ? 6 - c->def_size : c->def_size;
	}
	sz = d.opsize;

	if (unlikely(d.lock)) {
		switch (b) {
		case 0x00: case 0x01: case 0x08: case 0x09: case 0x10: case 0x11: case 0x18: case 0x19:
		case 0x20: case 0x21: case 0x28: case 0x29: case 0x30: case 0x31:
		case 0x80: case 0x81: case 0x83: case 0x86: case 0x87: case 0xf6: case 0xf7:
		case 0xfe: case 0xff: case 0x0f:
			break;
		default:
			emu_fault(c, EXC_UD, 0);
		}
	}

	switch (b) {
	/* ALU: 00-3f, forms x0-x5 */
	case 0x00: case 0x01: case 0x08: case 0x09: case 0x10: case 0x11: case 0x18: case 0x19:
	case 0x20: case 0x21: case 0x28: case 0x29: case 0x30: case 0x31: case 0x38: case 0x39: {
		int osz = (b & 1) ? sz : 1;

		modrm(c, &d, 0);
		rmw(c, &d, b >> 3, osz, getr(c, &d, d.reg, osz));
		break;
	}
	case 0x02: case 0x03: case 0x0a: case 0x0b: case 0x12: case 0x13: case 0x1a: case 0x1b:
	case 0x22: case 0x23: case 0x2a: case 0x2b: case 0x32: case 0x33: case 0x3a: case 0x3b: {
		int osz = (b & 1) ? sz : 1, op = b >> 3;

		modrm(c, &d, 0);
		v = rm_read(c, &d, osz);
		v = alu(c, op, osz, getr(c, &d, d.reg, osz), v);
		if (op != OP_CMP)
			setr(c, &d, d.reg, osz, v);
		break;
	}
	case 0x04: case 0x0c: case 0x14: case 0x1c: case 0x24: case 0x2c: case 0x34: case 0x3c:
		v = fn(c, &d, 1);
		v = alu(c, b >> 3, 1, c->r[R_RAX], v);
		if ((b >> 3) != OP_CMP)
			setr(c, &d, R_RAX, 1, v);
		break;
	case 0x05: case 0x0d: case 0x15: case 0x1d: case 0x25: case 0x2d: case 0x35: case 0x3d:
		v = (uint64_t)fimm_s(c, &d, immsz(sz));
		v = alu(c, b >> 3, sz, c->r[R_RAX], v);
		if ((b >> 3) != OP_CMP)
			setr(c, &d, R_RAX, sz, v);
		break;
	case 0x06: case 0x0e: case 0x16: case 0x1e: /* push es/cs/ss/ds */
		if (c->long64)
			undef(c, &d);
		push(c, sz, c->seg[b >> 3].sel);
		break;
	case 0x07: case 0x17: case 0x1f: /* pop es/ss/ds */
		if (c->long64)
			undef(c, &d);
		v = peek(c, sz, 0);
		emu_load_seg(c, b >> 3, (uint16_t)v);
		set_rsp(c, c->r[R_RSP] + (uint64_t)sz);
		if (b == 0x17) {
			c->rip = next_rip(c, &d);
			c->shadow = 1;
			return;
		}
		break;
	case 0x0f:
		exec_0f(c, &d);
		return;
	case 0x40: case 0x41: case 0x42: case 0x43: case 0x44: case 0x45: case 0x46: case 0x47:
		setr(c, &d, b & 7, sz, alu(c, OP_INC, sz, c->r[b & 7], 0));
		break;
	case 0x48: case 0x49: case 0x4a: case 0x4b: case 0x4c: case 0x4d: case 0x4e: case 0x4f:
		setr(c, &d, b & 7, sz, alu(c, OP_DEC, sz, c->r[b & 7], 0));
		break;
	case 0x50: case 0x51: case 0x52: case 0x53: case 0x54: case 0x55: case 0x56: case 0x57: {
		int osz = stack_opsize(c, &d);

		push(c, osz, getr(c, &d, (b & 7) | ((d.rex & 1) << 3), osz));
		break;
	}
	case 0x58: case 0x59: case 0x5a: case 0x5b: case 0x5c: case 0x5d: case 0x5e: case 0x5f: {
		int osz = stack_opsize(c, &d);

		v = peek(c, osz, 0);
		set_rsp(c, c->r[R_RSP] + (uint64_t)osz);
		setr(c, &d, (b & 7) | ((d.rex & 1) << 3), osz, v);
		break;
	}
	case 0x60: { /* pusha */
		uint64_t sp = c->r[R_RSP];

		if (c->long64)
			undef(c, &d);
		for (int i = 0; i < 8; i++)
			emu_write(c, SEG_SS, (sp - (uint64_t)(sz * (i + 1))) & sp_mask(c), sz,
				  i == R_RSP ? sp : c->r[i]);
		set_rsp(c, sp - (uint64_t)(8 * sz));
		break;
	}
	case 0x61: { /* popa */
		uint64_t vals[8];

		if (c->long64)
			undef(c, &d);
		for (int i = 0; i < 8; i++)
			vals[7 - i] = peek(c, sz, (uint64_t)(sz * i));
		for (int i = 0; i < 8; i++)
			if (i != R_RSP)
				setr(c, &d, i, sz, vals[i]);
		set_rsp(c, c->r[R_RSP] + (uint64_t)(8 * sz));
		break;
	}
	case 0x63: /* movsxd */
		if (!c->long64)
			undef(c, &d); /* arpl */
		modrm(c, &d, 0);
		v = rm_read(c, &d, 4);
		setr(c, &d, d.reg, sz, sz == 8 ? (uint64_t)(int32_t)v : v);
		break;
	case 0x68: /* push imm */
	case 0x6a: {
		int osz = stack_opsize(c, &d);

		v = (uint64_t)fimm_s(c, &d, b == 0x6a ? 1 : immsz(osz));
		push(c, osz, v);
		break;
	}
	case 0x69: /* imul r, r/m, imm */
	case 0x6b: {
		int isz = b == 0x6b ? 1 : immsz(sz);

		modrm(c, &d, isz);
		s = (uint64_t)fimm_s(c, &d, isz);
		v = rm_read(c, &d, sz);
		setr(c, &d, d.reg, sz, imul2(c, sz, v, s));
		break;
	}
	case 0x6c: string_op(c, &d, STR_INS, 1); return;
	case 0x6d: string_op(c, &d, STR_INS, sz == 2 ? 2 : 4); return;
	case 0x6e: string_op(c, &d, STR_OUTS, 1); return;
	case 0x6f: string_op(c, &d, STR_OUTS, sz == 2 ? 2 : 4); return;
	case 0x70: case 0x71: case 0x72: case 0x73: case 0x74: case 0x75: case 0x76: case 0x77:
	case 0x78: case 0x79: case 0x7a: case 0x7b: case 0x7c: case 0x7d: case 0x7e: case 0x7f: {
		int64_t rel = fimm_s(c, &d, 1);
		uint64_t nx = next_rip(c, &d);

		if (cond(c->flags, b & 15))
			jump(c, &d, nx + (uint64_t)rel, c->long64 ? 8 : sz);
		else
			c->rip = nx;
		return;
	}
	case 0x80: case 0x81: case 0x82: case 0x83: {
		int osz = (b & 1) ? sz : 1;
		int isz = b == 0x81 ? immsz(sz) : 1;

		if (b == 0x82 && c->long64)
			undef(c, &d);
		modrm(c, &d, isz);
		s = (uint64_t)fimm_s(c, &d, isz);
		rmw(c, &d, d.reg & 7, osz, s);
		break;
	}
	case 0x84: case 0x85: { /* test */
		int osz = (b & 1) ? sz : 1;

		modrm(c, &d, 0);
		v = rm_read(c, &d, osz);
		alu(c, OP_AND, osz, v, getr(c, &d, d.reg, osz));
		break;
	}
	case 0x86: case 0x87: { /* xchg r/m, r (locked with memory) */
		int osz = (b & 1) ? sz : 1;

		modrm(c, &d, 0);
		s = getr(c, &d, d.reg, osz);
		if (d.mem) {
			uint64_t l = emu_linear(c, d.eseg, d.ea, osz, ACC_W);
			void *p = emu_rmw_ptr(c, l, osz);

			if (p) {
				switch (osz) {
				case 1: v = __atomic_exchange_n((uint8_t *)p, (uint8_t)s, __ATOMIC_SEQ_CST); break;
				case 2: v = __atomic_exchange_n((uint16_t *)p, (uint16_t)s, __ATOMIC_SEQ_CST); break;
				case 4: v = __atomic_exchange_n((uint32_t *)p, (uint32_t)s, __ATOMIC_SEQ_CST); break;
				default: v = __atomic_exchange_n((uint64_t *)p, s, __ATOMIC_SEQ_CST); break;
				}
			} else {
				v = emu_read_rmw_lin(c, l, osz);
				emu_write_lin(c, l, osz, s);
			}
		} else {
			if (d.lock)
				emu_fault(c, EXC_UD, 0);
			v = getr(c, &d, d.rm, osz);
			setr(c, &d, d.rm, osz, s);
		}
		setr(c, &d, d.reg, osz, v);
		break;
	}
	case 0x88: case 0x89: { /* mov r/m, r */
		int osz = (b & 1) ? sz : 1;

		modrm(c, &d, 0);
		rm_write(c, &d, osz, getr(c, &d, d.reg, osz));
		break;
	}
	case 0x8a: case 0x8b: { /* mov r, r/m */
		int osz = (b & 1) ? sz : 1;

		modrm(c, &d, 0);
		setr(c, &d, d.reg, osz, rm_read(c, &d, osz));
		break;
	}
	case 0x8c: /* mov r/m, sreg */
		modrm(c, &d, 0);
		if ((d.reg & 7) > 5)
			emu_fault(c, EXC_UD, 0);
		if (d.mem)
			emu_write(c, d.eseg, d.ea, 2, c->seg[d.reg & 7].sel);
		else
			setr(c, &d, d.rm, sz == 2 ? 2 : sz, c->seg[d.reg & 7].sel);
		break;
	case 0x8d: /* lea */
		modrm(c, &d, 0);
		if (!d.mem)
			emu_fault(c, EXC_UD, 0);
		setr(c, &d, d.reg, sz, d.ea);
		break;
	case 0x8e: { /* mov sreg, r/m */
		int sr;

		modrm(c, &d, 0);
		sr = d.reg & 7;
		if (sr > 5 || sr == SEG_CS)
			emu_fault(c, EXC_UD, 0);
		v = rm_read(c, &d, 2);
		emu_load_seg(c, sr, (uint16_t)v);
		if (sr == SEG_SS) {
			c->rip = next_rip(c, &d);
			c->shadow = 1;
			return;
		}
		break;
	}
	case 0x8f: { /* pop r/m */
		int osz = stack_opsize(c, &d);

		modrm(c, &d, 0);
		if ((d.reg & 7) != 0)
			undef(c, &d);
		v = peek(c, osz, 0);
		/* RSP is incremented first: an RSP-based address sees the new
		 * value, and pop rsp keeps the popped value. */
		if (d.mem) {
			uint64_t ea = d.sp_base ? (d.ea + (uint64_t)osz) & emu_size_mask(d.adsize) : d.ea;

			emu_write(c, d.eseg, ea, osz, v);
			set_rsp(c, c->r[R_RSP] + (uint64_t)osz);
		} else {
			set_rsp(c, c->r[R_RSP] + (uint64_t)osz);
			setr(c, &d, d.rm, osz, v);
		}
		break;
	}
	case 0x90:
		if (d.rex & 1) {
			v = c->r[R_R8];
			setr(c, &d, R_R8, sz, c->r[R_RAX]);
			setr(c, &d, R_RAX, sz, v);
		}
		/* nop / pause */
		break;
	case 0x91: case 0x92: case 0x93: case 0x94: case 0x95: case 0x96: case 0x97: {
		int r = (b & 7) | ((d.rex & 1) << 3);

		v = getr(c, &d, r, sz);
		setr(c, &d, r, sz, c->r[R_RAX]);
		setr(c, &d, R_RAX, sz, v);
		break;
	}
	case 0x98: /* cbw/cwde/cdqe */
		if (sz == 2)
			setr(c, &d, R_RAX, 2, (uint64_t)(int8_t)c->r[R_RAX]);
		else if (sz == 4)
			setr(c, &d, R_RAX, 4, (uint64_t)(int16_t)c->r[R_RAX]);
		else
			c->r[R_RAX] = (uint64_t)(int32_t)c->r[R_RAX];
		break;
	case 0x99: /* cwd/cdq/cqo */
		v = (getr(c, &d, R_RAX, sz) >> (sz * 8 - 1)) & 1;
		setr(c, &d, R_RDX, sz, v ? ~0ULL : 0);
		break;
	case 0x9a: { /* call far ptr16:16/32 */
		uint64_t off;
		uint16_t sel;

		if (c->long64)
			undef(c, &d);
		off = fn(c, &d, sz);
		sel = (uint16_t)fn(c, &d, 2);
		emu_far_jump(c, sel, off, true, sz, next_rip(c, &d));
		return;
	}
	case 0x9b: /* fwait */
		emu_x87_wait(c);
		break;
	case 0x9c: { /* pushf */
		int osz = stack_opsize(c, &d);

		if ((c->flags & F_VM) && iopl(c) < 3)
			emu_fault(c, EXC_GP, 0);
		push(c, osz, c->flags & ~(uint64_t)(F_VM | F_RF));
		break;
	}
	case 0x9d: { /* popf */
		int osz = stack_opsize(c, &d);

		if ((c->flags & F_VM) && iopl(c) < 3)
			emu_fault(c, EXC_GP, 0);
		v = peek(c, osz, 0);
		set_rsp(c, c->r[R_RSP] + (uint64_t)osz);
		popf(c, osz, v);
		break;
	}
	case 0x9e: /* sahf */
		c->flags = (c->flags & ~(uint64_t)(F_SF | F_ZF | F_AF | F_PF | F_CF)) |
			   ((c->r[R_RAX] >> 8) & (F_SF | F_ZF | F_AF | F_PF | F_CF));
		break;
	case 0x9f: /* lahf */
		c->r[R_RAX] = (c->r[R_RAX] & ~0xff00ULL) | (((c->flags & 0xd7) | 2) << 8);
		break;
	case 0xa0: case 0xa1: case 0xa2: case 0xa3: { /* mov moffs */
		int osz = (b & 1) ? sz : 1;
		uint64_t off = fn(c, &d, d.adsize);
		int sg = d.seg != SEG_NONE ? d.seg : SEG_DS;

		if (b < 0xa2)
			setr(c, &d, R_RAX, osz, emu_read(c, sg, off, osz));
		else
			emu_write(c, sg, off, osz, c->r[R_RAX]);
		break;
	}
	case 0xa4: string_op(c, &d, STR_MOVS, 1); return;
	case 0xa5: string_op(c, &d, STR_MOVS, sz); return;
	case 0xa6: string_op(c, &d, STR_CMPS, 1); return;
	case 0xa7: string_op(c, &d, STR_CMPS, sz); return;
	case 0xa8: /* test al, imm8 */
		alu(c, OP_AND, 1, c->r[R_RAX], fn(c, &d, 1));
		break;
	case 0xa9:
		alu(c, OP_AND, sz, c->r[R_RAX], (uint64_t)fimm_s(c, &d, immsz(sz)));
		break;
	case 0xaa: string_op(c, &d, STR_STOS, 1); return;
	case 0xab: string_op(c, &d, STR_STOS, sz); return;
	case 0xac: string_op(c, &d, STR_LODS, 1); return;
	case 0xad: string_op(c, &d, STR_LODS, sz); return;
	case 0xae: string_op(c, &d, STR_SCAS, 1); return;
	case 0xaf: string_op(c, &d, STR_SCAS, sz); return;
	case 0xb0: case 0xb1: case 0xb2: case 0xb3: case 0xb4: case 0xb5: case 0xb6: case 0xb7:
		setr(c, &d, (b & 7) | ((d.rex & 1) << 3), 1, fn(c, &d, 1));
		break;
	case 0xb8: case 0xb9: case 0xba: case 0xbb: case 0xbc: case 0xbd: case 0xbe: case 0xbf:
		setr(c, &d, (b & 7) | ((d.rex & 1) << 3), sz, fn(c, &d, sz));
		break;
	case 0xc0: case 0xc1: case 0xd0: case 0xd1: case 0xd2: case 0xd3: { /* group 2 */
		int osz = (b & 1) ? sz : 1;
		unsigned cnt;

		modrm(c, &d, b < 0xd0 ? 1 : 0);
		cnt = b < 0xd0 ? f8(c, &d) : b < 0xd2 ? 1 : (unsigned)(c->r[R_RCX] & 0xff);
		v = rm_read_rmw(c, &d, osz);
		v = shift(c, d.reg & 7, osz, v, cnt);
		rm_write(c, &d, osz, v);
		break;
	}
	case 0xc2: /* ret imm16 */
	case 0xc3: { /* ret */
		int osz = stack_opsize(c, &d);
		uint64_t imm = b == 0xc2 ? fn(c, &d, 2) : 0;

		v = peek(c, osz, 0);
		jump(c, &d, v, osz); /* may fault: before RSP commits */
		set_rsp(c, c->r[R_RSP] + (uint64_t)osz + imm);
		return;
	}
	case 0xc4: /* les */
	case 0xc5: { /* lds */
		uint16_t sel;

		if (c->long64)
			undef(c, &d); /* VEX: no AVX */
		modrm(c, &d, 0);
		if (!d.mem)
			undef(c, &d);
		v = emu_read(c, d.eseg, d.ea, sz);
		sel = (uint16_t)emu_read(c, d.eseg, (d.ea + (uint64_t)sz) & emu_size_mask(d.adsize), 2);
		emu_load_seg(c, b == 0xc4 ? SEG_ES : SEG_DS, sel);
		setr(c, &d, d.reg, sz, v);
		break;
	}
	case 0xc6: case 0xc7: { /* mov r/m, imm */
		int osz = (b & 1) ? sz : 1;
		int isz = immsz(osz);

		modrm(c, &d, isz);
		if ((d.reg & 7) != 0)
			undef(c, &d);
		v = (uint64_t)fimm_s(c, &d, isz);
		rm_write(c, &d, osz, v);
		break;
	}
	case 0xc8: { /* enter */
		int osz = stack_opsize(c, &d);
		uint64_t size = fn(c, &d, 2), m = sp_mask(c);
		unsigned level = (unsigned)fn(c, &d, 1) & 31;
		uint64_t sp = c->r[R_RSP], bp = c->r[R_RBP], frame;

		sp = (sp - (uint64_t)osz) & m;
		emu_write(c, SEG_SS, sp, osz, bp);
		frame = sp;
		for (unsigned i = 1; i < level; i++) {
			uint64_t t = emu_read(c, SEG_SS, (bp - (uint64_t)osz * i) & m, osz);

			sp = (sp - (uint64_t)osz) & m;
			emu_write(c, SEG_SS, sp, osz, t);
		}
		if (level) {
			sp = (sp - (uint64_t)osz) & m;
			emu_write(c, SEG_SS, sp, osz, frame);
		}
		/* "ENTER causes a page fault whenever a write using the final
		 * value of the stack pointer would do so" (SDM): probe it, after
		 * the pushes (which the CPU has made by then). */
		if (size)
			emu_rmw_ptr(c, emu_linear(c, SEG_SS, (sp - size) & m, 1, ACC_W), 1);
		setr(c, &d, R_RBP, osz, frame);
		set_rsp(c, sp - size);
		break;
	}
	case 0xc9: { /* leave */
		int osz = stack_opsize(c, &d);
		uint64_t bp = c->r[R_RBP] & sp_mask(c);

		v = emu_read(c, SEG_SS, bp, osz);
		set_rsp(c, bp + (uint64_t)osz);
		setr(c, &d, R_RBP, osz, v);
		break;
	}
	case 0xca: /* retf imm16 */
	case 0xcb: { /* retf */
		uint16_t imm = b == 0xca ? (uint16_t)fn(c, &d, 2) : 0;

		emu_far_ret(c, sz, imm);
		return;
	}
	case 0xcc: /* int3 */
		emu_deliver(c, EXC_BP, -1, true, false, next_rip(c, &d));
		return;
	case 0xcd: { /* int imm8 */
		uint8_t vec = (uint8_t)fn(c, &d, 1);

		if ((c->flags & F_VM) && iopl(c) < 3)
			emu_fault(c, EXC_GP, 0);
		emu_deliver(c, vec, -1, true, false, next_rip(c, &d));
		return;
	}
	case 0xce: /* into */
		if (c->long64)
			undef(c, &d);
		if (c->flags & F_OF) {
			emu_deliver(c, EXC_OF, -1, true, false, next_rip(c, &d));
			return;
		}
		break;
	case 0xcf: /* iret */
		emu_iret(c, c->long64 && (d.rex & 8) ? 8 : sz);
		return;
	case 0xd7: { /* xlat */
		int sg = d.seg != SEG_NONE ? d.seg : SEG_DS;

		v = emu_read(c, sg, (c->r[R_RBX] + (c->r[R_RAX] & 0xff)) & emu_size_mask(d.adsize), 1);
		setr(c, &d, R_RAX, 1, v);
		break;
	}
	case 0xd8: case 0xd9: case 0xda: case 0xdb: case 0xdc: case 0xdd: case 0xde: case 0xdf: {
		struct emu_fpu_insn in;

		if (c->cr0 & (X86_CR0_EM | X86_CR0_TS))
			emu_fault(c, EXC_NM, 0);
		fpu_decode(c, &d, b, false, &in);
		emu_x87_exec(c, &in);
		break;
	}
	case 0xe0: /* loopne */
	case 0xe1: /* loope */
	case 0xe2: /* loop */
	case 0xe3: { /* jrcxz */
		int64_t rel = fimm_s(c, &d, 1);
		uint64_t nx = next_rip(c, &d), am = emu_size_mask(d.adsize), cnt;
		bool take;

		if (b == 0xe3) {
			take = !(c->r[R_RCX] & am);
		} else {
			cnt = (c->r[R_RCX] - 1) & am;
			set_adreg(c, R_RCX, d.adsize, cnt);
			take = cnt != 0;
			if (b == 0xe0)
				take = take && !(c->flags & F_ZF);
			else if (b == 0xe1)
				take = take && (c->flags & F_ZF);
		}
		if (take)
			jump(c, &d, nx + (uint64_t)rel, c->long64 ? 8 : sz);
		else
			c->rip = nx;
		return;
	}
	case 0xe4: case 0xe5: case 0xec: case 0xed: { /* in */
		int osz = (b & 1) ? (sz == 2 ? 2 : 4) : 1;
		uint16_t port = (b & 8) ? (uint16_t)c->r[R_RDX] : (uint16_t)fn(c, &d, 1);

		io_check(c, port, osz);
		v = emu_io_in(c, port, osz);
		setr(c, &d, R_RAX, osz, v);
		break;
	}
	case 0xe6: case 0xe7: case 0xee: case 0xef: { /* out */
		int osz = (b & 1) ? (sz == 2 ? 2 : 4) : 1;
		uint16_t port = (b & 8) ? (uint16_t)c->r[R_RDX] : (uint16_t)fn(c, &d, 1);

		io_check(c, port, osz);
		emu_io_out(c, port, osz, c->r[R_RAX] & emu_size_mask(osz));
		break;
	}
	case 0xe8: { /* call rel */
		int osz = c->long64 ? 8 : sz;
		int64_t rel = fimm_s(c, &d, c->long64 ? 4 : sz);
		uint64_t nx = next_rip(c, &d);

		jump(c, &d, nx + (uint64_t)rel, osz); /* may fault: before the push */
		push(c, osz, nx);
		return;
	}
	case 0xe9: /* jmp rel */
	case 0xeb: {
		int64_t rel = fimm_s(c, &d, b == 0xeb ? 1 : (c->long64 ? 4 : sz));

		jump(c, &d, next_rip(c, &d) + (uint64_t)rel, c->long64 ? 8 : sz);
		return;
	}
	case 0xea: { /* jmp far ptr */
		uint64_t off;
		uint16_t sel;

		if (c->long64)
			undef(c, &d);
		off = fn(c, &d, sz);
		sel = (uint16_t)fn(c, &d, 2);
		emu_far_jump(c, sel, off, false, sz, 0);
		return;
	}
	case 0xf1: /* int1 */
		emu_deliver(c, EXC_DB, -1, false, false, next_rip(c, &d));
		return;
	case 0xf4: /* hlt */
		need_cpl0(c);
		c->rip = next_rip(c, &d);
		if ((c->flags & F_IF) && (atomic_load(&c->attn) & ATTN_IRQ))
			return; /* an interrupt is pending: it ends the halt at once */
		c->exit->reason = VCPU_EXIT_HLT;
		c->exit_ready = true;
		return;
	case 0xf5: c->flags ^= F_CF; break;
	case 0xf6: case 0xf7: { /* group 3 */
		int osz = (b & 1) ? sz : 1;
		int op = (peek8(c, &d) >> 3) & 7;

		modrm(c, &d, op < 2 ? immsz(osz) : 0);
		if (d.lock && op != 2 && op != 3)
			emu_fault(c, EXC_UD, 0);
		switch (op) {
		case 0: case 1: /* test */
			s = (uint64_t)fimm_s(c, &d, immsz(osz));
			alu(c, OP_AND, osz, rm_read(c, &d, osz), s);
			break;
		case 2: rmw(c, &d, OP_NOT, osz, 0); break;
		case 3: rmw(c, &d, OP_NEG, osz, 0); break;
		case 4: mul1(c, &d, osz, rm_read(c, &d, osz), false); break;
		case 5: mul1(c, &d, osz, rm_read(c, &d, osz), true); break;
		case 6: div1(c, &d, osz, rm_read(c, &d, osz), false); break;
		default: div1(c, &d, osz, rm_read(c, &d, osz), true); break;
		}
		break;
	}
	case 0xf8: c->flags &= ~(uint64_t)F_CF; break;
	case 0xf9: c->flags |= F_CF; break;
	case 0xfa: /* cli */
	case 0xfb: /* sti */
		if (c->mode != MODE_REAL && (unsigned)c->cpl > iopl(c))
			emu_fault(c, EXC_GP, 0);
		if (b == 0xfa) {
			c->flags &= ~(uint64_t)F_IF;
		} else {
			if (!(c->flags & F_IF))
				c->shadow = 1;
			c->flags |= F_IF;
		}
		break;
	case 0xfc: c->flags &= ~(uint64_t)F_DF; break;
	case 0xfd: c->flags |= F_DF; break;
	case 0xfe: /* group 4 */
		modrm(c, &d, 0);
		if ((d.reg & 7) > 1)
			undef(c, &d);
		rmw(c, &d, (d.reg & 7) ? OP_DEC : OP_INC, 1, 0);
		break;
	case 0xff: { /* group 5 */
		int op;

		modrm(c, &d, 0);
		op = d.reg & 7;
		if (d.lock && op > 1)
			emu_fault(c, EXC_UD, 0);
		switch (op) {
		case 0: rmw(c, &d, OP_INC, sz, 0); break;
		case 1: rmw(c, &d, OP_DEC, sz, 0); break;
		case 2: { /* call r/m */
			int osz = c->long64 ? 8 : sz;

			v = rm_read(c, &d, osz);
			jump(c, &d, v, osz); /* may fault: before the push commits RSP */
			push(c, osz, next_rip(c, &d));
			return;
		}
		case 4: { /* jmp r/m */
			int osz = c->long64 ? 8 : sz;

			jump(c, &d, rm_read(c, &d, osz), osz);
			return;
		}
		case 3: /* call far m16:sz */
		case 5: { /* jmp far m16:sz */
			uint16_t sel;

			if (!d.mem)
				undef(c, &d);
			v = emu_read(c, d.eseg, d.ea, sz);
			sel = (uint16_t)emu_read(c, d.eseg, (d.ea + (uint64_t)sz) & emu_size_mask(d.adsize), 2);
			emu_far_jump(c, sel, v, op == 3, sz, next_rip(c, &d));
			return;
		}
		case 6: { /* push r/m */
			int osz = stack_opsize(c, &d);

			push(c, osz, rm_read(c, &d, osz));
			break;
		}
		default:
			undef(c, &d);
		}
		break;
	}
	default:
		undef(c, &d);
	}
	c->rip = next_rip(c, &d);
}

/* Run instructions until an exit is due or something needs the run loop's
 * attention (kick, pending interrupt); a bounded batch so the caller's
 * checks still run often. The loop lives here so that the per-instruction
 * work is one inlined body, not a call. */
void emu_exec_block(struct emu_cpu *c)
{
	/* The batch stops at the instruction limit too (emu_set_insn_limit). */
	uint64_t left = c->insns < c->insn_limit ? c->insn_limit - c->insns : 0;
	int n = left < 4096 ? (int)left : 4096;

	for (int i = 0; i < n; i++) {
		exec_one(c);
		/* Retired: the replay log belonged to that instruction. */
		if (unlikely(c->rlog_n))
			c->rlog_n = c->rlog_idx = 0;
		if (unlikely(c->exit_ready || atomic_load_explicit(&c->attn, memory_order_relaxed)))
			return;
	}
}
