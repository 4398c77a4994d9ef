/* cpu/emu x87, SSE and SSE2 against the host CPU: every snippet is
 * assembled at test time with `as` (binutils), run natively and in the
 * emulator (64-bit long mode) from the same inputs -- random values mixed
 * with NaNs, infinities, denormals, signed zeros, random rounding modes
 * and FTZ/DAZ -- and the XMM registers, MXCSR, x87 stack and status, GPRs,
 * arithmetic flags and memory compared. Exceptions (#NM, #UD, #GP, #XM,
 * #MF) are checked in the emulator alone. */
#include "unit.h"

#include "assemble.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/vm.h"
#include "cpu/cpu.h"
#include "cpu/emu/emu.h"
#include "mem/gm.h"

#define RAM_SIZE (4u << 20)
#define GDT 0x500
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define PT_HI 0x5000
#define IDT 0x6000
#define MBOX 0x7000 /* exception handlers store their vector here */
#define HANDLERS 0x8000
#define CODE 0x10000
#define DATA 0x100000
#define STACK_TOP 0x80000
#define RET_HLT 0xff000 /* snippets return here: hlt */
#define NOT_PRESENT 0x201000 /* an unmapped page */

#define SLOT 512 /* bytes per assembled snippet */

/* The block a snippet works on (rdi points to it). */
enum {
	B_XMM = 0,	/* 16 x 16 in */
	B_MXCSR = 256,	/* in */
	B_HOSTMX = 260, /* the host's MXCSR, restored at the end */
	B_GPR = 264,	/* rax rbx rcx rdx in/out */
	B_FCW = 296,	/* in */
	B_FLAGS = 304,	/* in */
	B_FLAGS_OUT = 312,
	B_X87 = 320,	/* 4 x 80-bit in, 16 apart */
	B_MEM = 384,	/* 256 bytes of memory operands, in/out */
	B_FX = 640,	/* fxsave64 image out */
	B_SIZE = 1152,
};

struct emu_t {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *ram;
	struct x86_state st;
	struct vcpu_exit exit;
};

static void put64(struct emu_t *t, uint64_t gpa, uint64_t v)
{
	memcpy(t->ram + gpa, &v, 8);
}

/* Long mode, identity map of the first 4 MiB (2 MiB pages), a handler
 * for every exception vector that records it in MBOX and halts. */
static void emu_setup(struct emu_t *t)
{
	struct x86_seg code = { .sel = 0x08, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1 };
	struct x86_seg data = { .sel = 0x10, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1 };

	memset(t, 0, sizeof(*t));
	t->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(t->ram);
	memset(t->ram, 0, RAM_SIZE);
	assert_int_equal(gm_init_fake(&t->vm.mem, 0, t->ram, RAM_SIZE), 0);
	t->vm.cpu = &emu_cpu_ops;
	t->vcpu.vm = &t->vm;
	assert_int_equal(emu_cpu_ops.vm_init(&t->vm), 0);
	assert_int_equal(emu_cpu_ops.vcpu_init(&t->vcpu), 0);

	put64(t, PML4, PDPT | 7);
	put64(t, PDPT, PD | 7);
	put64(t, PD, 0x000000 | 0x87);
	put64(t, PD + 8, PT_HI | 7); /* 2-4 MiB in 4 KiB pages, NOT_PRESENT missing */
	for (int i = 0; i < 512; i++)
		put64(t, PT_HI + (uint64_t)i * 8, (0x200000 + (uint64_t)i * 0x1000) | 7);
	put64(t, PT_HI + ((NOT_PRESENT - 0x200000) >> 12) * 8, 0);
	put64(t, GDT + 0x08, 0x00209a0000000000ULL);
	put64(t, GDT + 0x10, 0x00cf92000000ffffULL);
	for (int v = 0; v < 32; v++) {
		uint64_t h = HANDLERS + (uint64_t)v * 16;
		uint8_t stub[9] = { 0xc6, 0x04, 0x25, MBOX & 0xff, (MBOX >> 8) & 0xff, 0, 0, (uint8_t)v, 0xf4 };

		memcpy(t->ram + h, stub, sizeof(stub));
		put64(t, IDT + (uint64_t)v * 16, (h & 0xffff) | (0x08ULL << 16) | (0x8eULL << 40) |
							 ((h >> 16) & 0xffff) << 48);
		put64(t, IDT + (uint64_t)v * 16 + 8, h >> 32);
	}
	t->ram[RET_HLT] = 0xf4;

	t->st.cs = code;
	t->st.ds = t->st.es = t->st.ss = t->st.fs = t->st.gs = data;
	t->st.tr = (struct x86_seg){ .sel = 0, .limit = 0x67, .type = 0xb, .present = 1 };
	t->st.ldt = (struct x86_seg){ .unusable = 1 };
	t->st.gdt = (struct x86_dtable){ GDT, 0x17 };
	t->st.idt = (struct x86_dtable){ IDT, 0x1ff };
	t->st.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE | X86_CR0_MP;
	t->st.cr3 = PML4;
	t->st.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
	t->st.efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE;
	t->st.rflags = 2;
}

static void emu_teardown(struct emu_t *t)
{
	emu_cpu_ops.vcpu_destroy(&t->vcpu);
	emu_cpu_ops.vm_destroy(&t->vm);
	free(t->ram);
}

/* Run the guest from rip until it halts; returns the vector an exception
 * handler recorded, or -1 when the code itself reached hlt. */
static int run_guest(struct emu_t *t, uint64_t rip, uint64_t rdi)
{
	t->ram[MBOX] = 0xff;
	t->st.rip = rip;
	t->st.gpr[R_RSP] = STACK_TOP - 8;
	put64(t, STACK_TOP - 8, RET_HLT);
	t->st.gpr[R_RDI] = rdi;
	t->st.parts &= ~X86_STATE_EVENTS; /* not halted as the last run ended */
	assert_int_equal(emu_cpu_ops.set_state(&t->vcpu, &t->st), 0);
	assert_int_equal(emu_cpu_ops.vcpu_run(&t->vcpu, &t->exit), 0);
	if (t->exit.reason != VCPU_EXIT_HLT)
		fail_msg("expected hlt exit, got %d", t->exit.reason);
	assert_int_equal(emu_cpu_ops.get_state(&t->vcpu, &t->st), 0);
	return t->ram[MBOX] == 0xff ? -1 : t->ram[MBOX];
}

/* ---- inputs ---- */

static uint64_t rng_state = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
	return unit_rnd(&rng_state);
}

static uint32_t rnd_f32(void)
{
	static const uint32_t v[] = {
		0x00000000, 0x80000000, 0x3f800000, 0xbf800000, 0x7f800000, 0xff800000, /* +-0 1 inf */
		0x7fc00000, 0xffc00000, 0x7fa00001, 0xff800123,			/* qnan snan */
		0x00000001, 0x807fffff, 0x00400000, 0x00800000, 0x7f7fffff,		/* denormal, min, max */
		0x4f000000, 0xcf000000, 0x5f000000, 0x3f000000, 0x40490fdb, 0x4b000001, /* 2^31 2^63 0.5 pi */
		0x3fc00000, 0x40200000, 0x3effffff, 0x4effffff, 0xdf000000,
	};
	uint64_t r = rnd();

	switch (r & 3) {
	case 0: return v[(r >> 2) % (sizeof(v) / sizeof(v[0]))];
	case 1: return (uint32_t)(r >> 32);
	default: return (uint32_t)((((r >> 8) % 60) + 100) << 23) | (uint32_t)((r >> 20) & 0x807fffff);
	}
}

static uint64_t rnd_f64(void)
{
	static const uint64_t v[] = {
		0, 0x8000000000000000ULL, 0x3ff0000000000000ULL, 0xbff0000000000000ULL,
		0x7ff0000000000000ULL, 0xfff0000000000000ULL, 0x7ff8000000000000ULL,
		0xfff8000000000000ULL, 0x7ff4000000000001ULL, 0xfff0000000000777ULL,
		0x0000000000000001ULL, 0x800fffffffffffffULL, 0x0010000000000000ULL,
		0x7fefffffffffffffULL, 0x41e0000000000000ULL, 0xc1e0000000000000ULL,
		0x43e0000000000000ULL, 0xc3e0000000000000ULL, 0x3fe0000000000000ULL,
		0x400921fb54442d18ULL, 0x41dfffffffc00000ULL, 0x3ff8000000000000ULL,
		0x4004000000000000ULL, 0x36a0000000000000ULL, 0x47efffffe0000000ULL,
	};
	uint64_t r = rnd();

	switch (r & 3) {
	case 0: return v[(r >> 2) % (sizeof(v) / sizeof(v[0]))];
	case 1: return rnd();
	default: return ((((r >> 8) % 200) + 923) << 52) | (rnd() & 0x800fffffffffffffULL);
	}
}

/* 16 bytes: floats, doubles, small shift counts or byte patterns. */
static void rnd_vec(uint8_t *p)
{
	uint64_t r = rnd();

	for (int i = 0; i < 2; i++) {
		uint64_t q;

		switch ((r >> (4 * i)) & 7) {
		case 0: case 1: q = rnd_f32() | (uint64_t)rnd_f32() << 32; break;
		case 2: case 3: q = rnd_f64(); break;
		case 4: q = rnd() % 72; break;
		case 5: q = rnd() & 0x8080ff7f00ff8001ULL; break;
		default: q = rnd(); break;
		}
		memcpy(p + 8 * i, &q, 8);
	}
}

static uint64_t rnd_int(void)
{
	static const uint64_t v[] = { 0, 1, 0x7fffffff, 0x80000000, 0xffffffff, 0x7fffffffffffffffULL,
				      0x8000000000000000ULL, ~0ULL, 0xfffffffffffffffeULL, 12345 };
	uint64_t r = rnd();

	if (r & 1)
		return v[(r >> 1) % (sizeof(v) / sizeof(v[0]))];
	return rnd() >> (rnd() % 64);
}

/* An 80-bit value: one of the special classes, or a random one. */
static void rnd_f80(uint8_t *p)
{
	uint64_t r = rnd(), man = rnd() | (1ULL << 63);
	uint16_t se = (uint16_t)(0x3fff - 70 + (r >> 8) % 140);

	switch (r & 15) {
	case 0: man = 0; se = 0; break;				/* +0 */
	case 1: man = 0; se = 0x8000; break;			/* -0 */
	case 2: man = 1ULL << 63; se = 0x7fff; break;		/* inf */
	case 3: man = 3ULL << 62; se = 0xffff; break;		/* qnan indefinite */
	case 4: man = (1ULL << 63) | 5; se = 0x7fff; break;	/* snan */
	case 5: man >>= 1 + (r >> 40) % 62; se = 0; break;	/* denormal */
	case 6: se = (uint16_t)(0x3fff + (r >> 20) % 64); man = 1ULL << 63; break; /* 2^n */
	case 7: { /* an integer, which fist and frndint hit exactly */
		long double v = (long double)(int64_t)(rnd() >> (rnd() % 64));

		memcpy(p, &v, 10);
		return;
	}
	default: break;
	}
	if (r & (1ULL << 60))
		se |= 0x8000;
	memcpy(p, &man, 8);
	memcpy(p + 8, &se, 2);
}

static void rnd_block(uint8_t *b)
{
	static const uint16_t pc[3] = { 0x000, 0x200, 0x300 };
	uint32_t mx = 0x1f80 | ((uint32_t)(rnd() % 4) << 13);
	uint16_t fcw = (uint16_t)(0x7f | ((rnd() % 4) << 10) | pc[rnd() % 3]);
	uint64_t r = rnd(), fl = 0x202 | (rnd() & 0x8d5);

	memset(b, 0, B_SIZE);
	for (int i = 0; i < 16; i++)
		rnd_vec(b + B_XMM + 16 * i);
	if (r & 1)
		mx |= 0x8000; /* FTZ */
	if (r & 2)
		mx |= 0x40; /* DAZ */
	if ((r & 12) == 0)
		mx |= (uint32_t)(rnd() & 0x3f); /* sticky flags already set */
	memcpy(b + B_MXCSR, &mx, 4);
	for (int i = 0; i < 4; i++) {
		uint64_t v = rnd_int();

		memcpy(b + B_GPR + 8 * i, &v, 8);
	}
	memcpy(b + B_FCW, &fcw, 2);
	memcpy(b + B_FLAGS, &fl, 8);
	for (int i = 0; i < 4; i++)
		rnd_f80(b + B_X87 + 16 * i);
	for (int i = 0; i < 256; i += 16) {
		if (rnd() & 1)
			rnd_vec(b + B_MEM + i);
		else
			rnd_f80(b + B_MEM + i);
	}
}

/* ---- snippets ---- */

#define X1 "fld tbyte ptr [rdi+320]\n"
#define X2 X1 "fld tbyte ptr [rdi+336]\n"
#define X3 X2 "fld tbyte ptr [rdi+352]\n"
#define X8 X3 "fld1\nfldpi\nfldz\nfld st(3)\nfld st(3)\n" /* every register in use */

static const char *const snippets[] = {
	/* moves */
	"movaps xmm0, xmm1", "movaps xmm2, [rdi+384]", "movaps [rdi+400], xmm3", "movapd xmm9, [rdi+416]",
	"movapd [rdi+432], xmm10", "movups xmm1, [rdi+389]", "movups [rdi+395], xmm4", "movupd xmm5, [rdi+387]",
	"movupd [rdi+399], xmm12", "movdqa xmm5, [rdi+400]", "movdqa [rdi+416], xmm1", "movdqu xmm6, [rdi+385]",
	"movdqu [rdi+387], xmm7", "movdqa xmm15, xmm3", "movss xmm0, xmm1", "movss xmm0, [rdi+388]",
	"movss [rdi+392], xmm2", "movsd xmm0, xmm1", "movsd xmm1, [rdi+392]", "movsd [rdi+404], xmm3",
	"movlps xmm0, [rdi+384]", "movhps xmm1, [rdi+392]", "movlps [rdi+400], xmm2", "movhps [rdi+408], xmm3",
	"movhlps xmm0, xmm1", "movlhps xmm2, xmm3", "movlpd xmm4, [rdi+384]", "movhpd xmm5, [rdi+392]",
	"movlpd [rdi+400], xmm6", "movhpd [rdi+408], xmm7", "movd xmm0, eax", "movq xmm1, rbx",
	"movd xmm2, [rdi+384]", "movq xmm3, qword ptr [rdi+388]", "movd eax, xmm4", "movq rbx, xmm5",
	"movd [rdi+384], xmm6", "movq [rdi+392], xmm7", "movq xmm0, xmm1", "movq xmm8, xmm2",
	"movntdq [rdi+400], xmm1", "movnti [rdi+384], eax", "movnti [rdi+392], rbx", "movntps [rdi+416], xmm2",
	"movntpd [rdi+432], xmm3", "movd xmm11, ecx", "movq r8, xmm11\nmov rax, r8",
	/* logic and integer */
	"pxor xmm0, xmm1", "por xmm2, xmm3", "pand xmm4, xmm5", "pandn xmm6, xmm7", "pxor xmm0, [rdi+400]",
	"xorps xmm1, xmm2", "andps xmm3, xmm4", "orps xmm5, xmm6", "andnps xmm7, xmm0", "xorpd xmm1, xmm9",
	"andpd xmm2, [rdi+384]", "andnpd xmm3, xmm4", "orpd xmm5, xmm13",
	"paddb xmm0, xmm1", "paddw xmm2, xmm3", "paddd xmm4, xmm5", "paddq xmm6, xmm7",
	"psubb xmm0, xmm1", "psubw xmm2, xmm3", "psubd xmm4, xmm5", "psubq xmm6, [rdi+400]",
	"paddusb xmm0, xmm1", "paddusw xmm2, xmm3", "psubusb xmm4, xmm5", "psubusw xmm6, xmm7",
	"paddsb xmm0, xmm1", "paddsw xmm2, xmm3", "psubsb xmm4, xmm5", "psubsw xmm6, xmm7",
	"pcmpeqb xmm0, xmm1", "pcmpeqw xmm2, xmm3", "pcmpeqd xmm4, xmm5", "pcmpeqb xmm6, xmm6",
	"pcmpgtb xmm0, xmm1", "pcmpgtw xmm2, xmm3", "pcmpgtd xmm4, [rdi+416]",
	"pmovmskb eax, xmm1", "pmovmskb r9d, xmm14\nmov rbx, r9", "pminub xmm0, xmm1", "pmaxub xmm2, xmm3",
	"pminsw xmm4, xmm5", "pmaxsw xmm6, xmm7", "pavgb xmm0, xmm1", "pavgw xmm2, xmm3", "psadbw xmm4, xmm5",
	"pmullw xmm0, xmm1", "pmulhw xmm2, xmm3", "pmulhuw xmm4, xmm5", "pmuludq xmm6, xmm7", "pmaddwd xmm0, xmm2",
	"packsswb xmm0, xmm1", "packssdw xmm2, xmm3", "packuswb xmm4, xmm5",
	"punpcklbw xmm0, xmm1", "punpcklwd xmm2, xmm3", "punpckldq xmm4, xmm5", "punpcklqdq xmm6, xmm7",
	"punpckhbw xmm0, xmm1", "punpckhwd xmm2, xmm3", "punpckhdq xmm4, xmm5", "punpckhqdq xmm6, [rdi+384]",
	"psllw xmm0, 3", "psllw xmm1, 17", "pslld xmm2, 5", "pslld xmm3, 32", "psllq xmm4, 33", "psllq xmm4, 64",
	"psrlw xmm5, 4", "psrld xmm6, 31", "psrlq xmm7, 1", "psraw xmm0, 15", "psraw xmm1, 40", "psrad xmm2, 7",
	"psrad xmm3, 200", "pslldq xmm4, 5", "pslldq xmm5, 16", "psrldq xmm6, 9", "psrldq xmm7, 0",
	"psllw xmm0, xmm4", "pslld xmm1, xmm4", "psllq xmm2, xmm4", "psrlw xmm3, xmm4", "psrld xmm5, xmm4",
	"psrlq xmm6, [rdi+384]", "psraw xmm7, xmm4", "psrad xmm0, xmm4",
	/* shuffles, inserts, masks */
	"pshufd xmm0, xmm1, 0x1b", "pshufd xmm2, [rdi+400], 0xe4", "pshuflw xmm3, xmm4, 0x93",
	"pshufhw xmm5, xmm6, 0x39", "shufps xmm0, xmm1, 0x4e", "shufpd xmm2, xmm3, 1", "shufpd xmm2, xmm3, 2",
	"shufps xmm4, [rdi+384], 0xb1", "unpcklps xmm0, xmm1", "unpckhps xmm2, xmm3", "unpcklpd xmm4, xmm5",
	"unpckhpd xmm6, [rdi+400]", "pinsrw xmm0, eax, 3", "pinsrw xmm1, [rdi+386], 7", "pextrw eax, xmm2, 5",
	"pextrw rbx, xmm3, 0", "movmskps eax, xmm1", "movmskpd ebx, xmm2",
	/* floating point */
	"addps xmm0, xmm1", "addpd xmm2, xmm3", "addss xmm4, xmm5", "addsd xmm6, xmm7", "addss xmm0, [rdi+388]",
	"subps xmm0, xmm1", "subpd xmm2, [rdi+400]", "subss xmm4, xmm5", "subsd xmm6, [rdi+392]",
	"mulps xmm0, xmm1", "mulpd xmm2, xmm3", "mulss xmm4, xmm5", "mulsd xmm6, xmm7",
	"divps xmm0, xmm1", "divpd xmm2, xmm3", "divss xmm4, xmm5", "divsd xmm6, xmm7", "divsd xmm0, [rdi+392]",
	"minps xmm0, xmm1", "minpd xmm2, xmm3", "minss xmm4, xmm5", "minsd xmm6, xmm7",
	"maxps xmm0, xmm1", "maxpd xmm2, xmm3", "maxss xmm4, xmm5", "maxsd xmm6, xmm7",
	"sqrtps xmm0, xmm1", "sqrtpd xmm2, xmm3", "sqrtss xmm4, xmm5", "sqrtsd xmm6, xmm7", "sqrtsd xmm0, [rdi+384]",
	"rcpps xmm0, xmm1", "rcpss xmm2, xmm3", "rsqrtps xmm4, xmm5", "rsqrtss xmm6, xmm7",
	"cmpeqps xmm0, xmm1", "cmpltps xmm2, xmm3", "cmpleps xmm4, xmm5", "cmpunordps xmm6, xmm7",
	"cmpneqpd xmm0, xmm1", "cmpnltpd xmm2, xmm3", "cmpnlepd xmm4, xmm5", "cmpordpd xmm6, xmm7",
	"cmpltss xmm0, xmm1", "cmpneqss xmm2, [rdi+384]", "cmplesd xmm4, xmm5", "cmpunordsd xmm6, xmm7",
	"comiss xmm0, xmm1", "ucomiss xmm2, xmm3", "comisd xmm4, xmm5", "ucomisd xmm6, xmm7",
	"ucomisd xmm0, [rdi+392]", "comiss xmm1, [rdi+388]",
	"cvtsi2sd xmm0, eax", "cvtsi2sd xmm1, rbx", "cvtsi2ss xmm2, ecx", "cvtsi2ss xmm3, rdx",
	"cvtsi2ss xmm1, dword ptr [rdi+384]", "cvtsi2sd xmm2, qword ptr [rdi+384]",
	"cvttsd2si eax, xmm1", "cvttsd2si rax, xmm2", "cvtsd2si rbx, xmm3", "cvtsd2si ecx, xmm4",
	"cvtss2si ecx, xmm5", "cvtss2si rcx, xmm6", "cvttss2si edx, xmm7", "cvttss2si rdx, [rdi+388]",
	"cvtsd2ss xmm0, xmm1", "cvtss2sd xmm2, xmm3", "cvtdq2pd xmm4, xmm5", "cvtpd2dq xmm6, xmm7",
	"cvttpd2dq xmm0, xmm1", "cvtdq2ps xmm2, xmm3", "cvtps2dq xmm4, xmm5", "cvttps2dq xmm6, xmm7",
	"cvtps2pd xmm0, xmm1", "cvtpd2ps xmm2, xmm3", "cvtps2pd xmm4, [rdi+384]", "cvtdq2pd xmm5, [rdi+392]",
	"cvtsd2ss xmm6, [rdi+392]",
	/* MXCSR, fxsave/fxrstor */
	"stmxcsr [rdi+384]",
	"and eax, 0xffff\nor eax, 0x1f80\nmov [rdi+384], eax\nldmxcsr [rdi+384]\naddps xmm0, xmm1\nstmxcsr [rdi+388]",
	X8 "fxsave [rdi+384]\nmov qword ptr [rdi+390], 0\nmov qword ptr [rdi+398], 0\nmov qword ptr [rdi+406], 0\nmov dword ptr [rdi+412], 0",
	X8 "fxsave64 [rdi+384]\nmov dword ptr [rdi+544], eax\nmov word ptr [rdi+384], 0x27f\n"
	"fxrstor64 [rdi+384]\naddsd xmm0, xmm1\nfadd st, st(3)\nfstp st(0)\n" X1 "fadd st, st(0)\nmov qword ptr [rdi+390], 0\n"
	"mov qword ptr [rdi+398], 0\nmov qword ptr [rdi+406], 0\nmov dword ptr [rdi+412], 0",
	/* x87 */
	X2 "fadd st, st(1)", X2 "fadd st(1), st", X2 "faddp", X2 "fsub st, st(1)", X2 "fsub st(1), st",
	X2 "fsubp", X2 "fsubr st, st(1)", X2 "fsubr st(1), st", X2 "fsubrp", X2 "fmul st, st(1)",
	X2 "fmulp", X2 "fdiv st, st(1)", X2 "fdiv st(1), st", X2 "fdivp", X2 "fdivr st, st(1)",
	X2 "fdivr st(1), st", X2 "fdivrp", X1 "fadd dword ptr [rdi+384]", X1 "fsub qword ptr [rdi+392]",
	X1 "fmul dword ptr [rdi+388]", X1 "fdivr qword ptr [rdi+400]", X1 "fsubr dword ptr [rdi+384]",
	X1 "fdiv dword ptr [rdi+396]", X1 "fiadd dword ptr [rdi+384]", X1 "fisub word ptr [rdi+386]",
	X1 "fimul word ptr [rdi+384]", X1 "fidivr dword ptr [rdi+388]",
	X2 "fcom st(1)", X2 "fcomp st(1)", X2 "fcompp", X2 "fucom st(1)", X2 "fucomp st(1)", X2 "fucompp",
	X2 "fcomi st, st(1)", X2 "fucomi st, st(1)", X2 "fcomip st, st(1)", X2 "fucomip st, st(1)",
	X1 "fcom dword ptr [rdi+384]", X1 "fcomp qword ptr [rdi+392]", X1 "ficom word ptr [rdi+384]",
	X2 "fcom st(1)\nfnstsw ax", X1 "ftst", X1 "fxam", "fxam", X3 "ffree st(1)\nfxam",
	X1 "fchs", X1 "fabs", X1 "fsqrt", X1 "frndint", X2 "fscale", X2 "fprem", X2 "fprem1",
	X1 "fxtract", X1 "f2xm1", X2 "fyl2x", X2 "fyl2xp1", X2 "fpatan", X1 "fptan", X1 "fsin", X1 "fcos",
	X1 "fsincos", X2 "fxch st(1)", X3 "fxch st(2)", X2 "fld st(1)", X2 "fst st(1)", X3 "fstp st(2)",
	X2 "ffree st(0)", X2 "fdecstp", X2 "fincstp", "fld1", "fldz", "fldpi", "fldl2e", "fldl2t", "fldlg2",
	"fldln2", "fld dword ptr [rdi+384]", "fld qword ptr [rdi+392]", "fld tbyte ptr [rdi+400]",
	"fild word ptr [rdi+384]", "fild dword ptr [rdi+388]", "fild qword ptr [rdi+392]",
	X1 "fst dword ptr [rdi+400]", X1 "fstp qword ptr [rdi+400]", X1 "fstp tbyte ptr [rdi+400]",
	X1 "fist word ptr [rdi+400]", X1 "fistp dword ptr [rdi+400]", X1 "fistp qword ptr [rdi+400]",
	X1 "fisttp word ptr [rdi+400]", X1 "fisttp dword ptr [rdi+400]", X1 "fisttp qword ptr [rdi+400]",
	"fnstcw [rdi+400]", X2 "mov word ptr [rdi+400], 0x0c7f\nfldcw [rdi+400]\nfdiv st, st(1)",
	X2 "fnstenv [rdi+400]\nfldenv [rdi+400]\nmov qword ptr [rdi+412], 0\nmov qword ptr [rdi+420], 0",
	X3 "fnsave [rdi+400]\nfrstor [rdi+400]\nmov qword ptr [rdi+412], 0\nmov qword ptr [rdi+420], 0",
	X2 "fadd st, st(1)\nfnstsw [rdi+400]\nfnclex\nfwait", X1 "fld st(0)\nfld st(0)\nfld st(0)\n"
	"fld st(0)\nfld st(0)\nfld st(0)\nfld st(0)\nfld st(0)", /* stack overflow */
	"fadd st, st(1)", /* stack underflow */
	X2 "fcmovb st, st(1)", X2 "fcmove st, st(1)", X2 "fcmovbe st, st(1)", X2 "fcmovu st, st(1)",
	X2 "fcmovnb st, st(1)", X2 "fcmovne st, st(1)", X2 "fcmovnbe st, st(1)", X2 "fcmovnu st, st(1)",
	/* odds and ends that must simply work */
	"pause\nlfence\nmfence\nsfence\nclflush [rdi+384]\nprefetcht0 [rdi+384]\nprefetchnta [rdi]\nfwait",
};

#define NSNIP (sizeof(snippets) / sizeof(snippets[0]))

/* Prologue/epilogue around each snippet: load everything from the block,
 * run it, store everything back, leave the host FPU as the ABI wants. */
static void emit_snippet(FILE *f, size_t i)
{
	fprintf(f, ".org %zu\n", i * SLOT);
	fprintf(f, "push rbx\nstmxcsr [rdi+260]\nldmxcsr [rdi+256]\n");
	for (int r = 0; r < 16; r++)
		fprintf(f, "movdqu xmm%d, [rdi+%d]\n", r, 16 * r);
	fprintf(f, "mov rax, [rdi+264]\nmov rbx, [rdi+272]\nmov rcx, [rdi+280]\nmov rdx, [rdi+288]\n"
		   "fninit\nfldcw [rdi+296]\npush qword ptr [rdi+304]\npopfq\n");
	fprintf(f, "%s\n", snippets[i]);
	fprintf(f, "pushfq\npop qword ptr [rdi+312]\n"
		   "mov [rdi+264], rax\nmov [rdi+272], rbx\nmov [rdi+280], rcx\nmov [rdi+288], rdx\n"
		   "fxsave64 [rdi+640]\nfninit\nldmxcsr [rdi+260]\npop rbx\nret\n");
}

/* Differences that matter between a native and an emulated run. */
static bool same(const uint8_t *h, const uint8_t *g, char *why, size_t len)
{
	const uint8_t *hf = h + B_FX, *gf = g + B_FX;
	uint64_t fh, fg;

	memcpy(&fh, h + B_FLAGS_OUT, 8);
	memcpy(&fg, g + B_FLAGS_OUT, 8);
	if ((fh ^ fg) & 0x8d5) {
		snprintf(why, len, "rflags %#llx vs %#llx", (unsigned long long)fh, (unsigned long long)fg);
		return false;
	}
	if (memcmp(h + B_GPR, g + B_GPR, 32)) {
		snprintf(why, len, "gprs");
		return false;
	}
	for (int i = 0; i < 256; i++) {
		if (h[B_MEM + i] != g[B_MEM + i]) {
			snprintf(why, len, "memory at +%d: %#x vs %#x", i, h[B_MEM + i], g[B_MEM + i]);
			return false;
		}
	}
	/* fxsave image: FCW FSW FTW, MXCSR, XMM; FOP/FIP/FDP (6..23) hold
	 * addresses that differ between the runs. */
	if (memcmp(hf, gf, 5) || memcmp(hf + 24, gf + 24, 4)) { /* not MXCSR_MASK: host's may differ */
		uint16_t a, b;

		memcpy(&a, hf + 2, 2);
		memcpy(&b, gf + 2, 2);
		snprintf(why, len, "fcw %#x vs %#x fsw %#x vs %#x ftw %#x vs %#x mxcsr %#x vs %#x mask %#x vs %#x",
			 *(const uint16_t *)hf, *(const uint16_t *)gf, a, b, hf[4], gf[4],
			 *(const uint32_t *)(hf + 24), *(const uint32_t *)(gf + 24),
			 *(const uint32_t *)(hf + 28), *(const uint32_t *)(gf + 28));
		return false;
	}
	for (int i = 0; i < 8; i++) {
		int p = (((hf[3] >> 3) & 7) + i) & 7;

		if (((hf[4] >> p) & 1) && memcmp(hf + 32 + 16 * i, gf + 32 + 16 * i, 10)) {
			snprintf(why, len, "st(%d)", i);
			return false;
		}
	}
	for (int i = 0; i < 16; i++) {
		if (memcmp(hf + 160 + 16 * i, gf + 160 + 16 * i, 16)) {
			snprintf(why, len, "xmm%d %016llx%016llx vs %016llx%016llx", i,
				 *(const unsigned long long *)(hf + 168 + 16 * i),
				 *(const unsigned long long *)(hf + 160 + 16 * i),
				 *(const unsigned long long *)(gf + 168 + 16 * i),
				 *(const unsigned long long *)(gf + 160 + 16 * i));
			return false;
		}
	}
	return true;
}

static uint8_t *code_buf;
static size_t code_len;

static void build_code(void)
{
	char *src;
	size_t sz;
	FILE *f = open_memstream(&src, &sz);

	assert_non_null(f);
	for (size_t i = 0; i < NSNIP; i++)
		emit_snippet(f, i);
	fclose(f);
	code_buf = malloc(NSNIP * SLOT);
	assert_non_null(code_buf);
	code_len = assemble(src, code_buf, NSNIP * SLOT);
	free(src);
}

static void test_vs_host(void **state)
{
	struct emu_t t;
	uint8_t *exec, *host, *in;
	int mismatches = 0, ran = 0;
	char why[160];

	(void)state;
	build_code();
	exec = host_exec_map(NSNIP * SLOT);
	memcpy(exec, code_buf, code_len);
	host = aligned_alloc(64, B_SIZE);
	in = aligned_alloc(64, B_SIZE);
	emu_setup(&t);
	memcpy(t.ram + CODE, code_buf, code_len);

	for (size_t i = 0; i < NSNIP; i++) {
		int bad = 0;

		for (int iter = 0; iter < 150; iter++) {
			int vec;

			rnd_block(in);
			memcpy(host, in, B_SIZE);
			((void (*)(uint8_t *))(exec + i * SLOT))(host);
			memcpy(t.ram + DATA, in, B_SIZE);
			vec = run_guest(&t, CODE + i * SLOT, DATA);
			ran++;
			if (vec >= 0) {
				snprintf(why, sizeof(why), "exception %d at rip %#llx", vec,
					 (unsigned long long)t.st.rip);
			} else if (same(host, t.ram + DATA, why, sizeof(why))) {
				continue;
			}
			if (bad++ < 2)
				print_message("# %s: %s (mxcsr in %#x fcw in %#x)\n", snippets[i], why,
					      *(uint32_t *)(in + B_MXCSR), *(uint16_t *)(in + B_FCW));
			mismatches++;
		}
	}
	print_message("# %d runs of %zu snippets against the host CPU, %d mismatches\n", ran, NSNIP,
		      mismatches);
	munmap(exec, NSNIP * SLOT);
	free(host);
	free(in);
	free(code_buf);
	emu_teardown(&t);
	assert_int_equal(mismatches, 0);
}

/* ---- exceptions, in the emulator only ---- */

struct exc_case {
	const char *src;
	uint64_t cr0_set, cr4_clear;
	int vec; /* -1: completes */
};

static void test_exceptions(void **state)
{
	static const struct exc_case cases[] = {
		{ "addps xmm0, xmm1", X86_CR0_TS, 0, 7 },
		{ "fld1", X86_CR0_TS, 0, 7 },
		{ "fxsave [rdi]", X86_CR0_TS, 0, 7 },
		{ "fwait", X86_CR0_TS, 0, 7 },
		{ "fld1", X86_CR0_EM, 0, 7 },
		{ "addps xmm0, xmm1", X86_CR0_EM, 0, 6 },
		{ "addps xmm0, xmm1", 0, X86_CR4_OSFXSR, 6 },
		{ "movdqa xmm0, [rdi]", 0, X86_CR4_OSFXSR, 6 },
		{ "fld1\nfsqrt", 0, X86_CR4_OSFXSR, -1 }, /* x87 does not need OSFXSR */
		{ "movaps xmm0, [rdi+8]", 0, 0, 13 },
		{ "movaps [rdi+4], xmm0", 0, 0, 13 },
		{ "movdqa xmm0, [rdi+1]", 0, 0, 13 },
		{ "addpd xmm0, [rdi+8]", 0, 0, 13 },
		{ "fxsave [rdi+8]", 0, 0, 13 },
		{ "movups xmm0, [rdi+8]\nmovdqu [rdi+1], xmm0\naddsd xmm0, [rdi+8]", 0, 0, -1 },
		{ "mov dword ptr [rdi], 0x10000\nldmxcsr [rdi]", 0, 0, 13 }, /* reserved bit */
		{ "mov dword ptr [rdi], 0x1d80\nldmxcsr [rdi]\nmov eax, 0x3f800000\nmovd xmm0, eax\nxorps xmm1, xmm1\ndivss xmm0, xmm1", 0, 0, 19 },
		{ "mov dword ptr [rdi], 0x1d80\nldmxcsr [rdi]\nmov eax, 0x3f800000\nmovd xmm0, eax\nxorps xmm1, xmm1\ndivss xmm0, xmm1", 0,
		  X86_CR4_OSXMMEXCPT, 6 },
		{ "mov word ptr [rdi], 0x37b\nfldcw [rdi]\nfld1\nfldz\nfdivp\nfld1", 0, 0, 16 },
		{ "mov word ptr [rdi], 0x37b\nfldcw [rdi]\nfld1\nfldz\nfdivp\nfnclex\nfld1", 0, 0, -1 },
		{ "emms", 0, 0, 6 },	     /* MMX is not implemented (or advertised) */
		{ "paddb mm0, mm1", 0, 0, 6 },
		{ "addsubps xmm0, xmm1", 0, 0, 6 }, /* SSE3 is not advertised */
	};
	struct emu_t t;
	uint8_t code[256];

	(void)state;
	emu_setup(&t);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct exc_case *e = &cases[i];
		char src[512];
		size_t n;
		int vec;

		snprintf(src, sizeof(src), "fninit\n%s\nret", e->src);
		n = assemble(src, code, sizeof(code));
		memcpy(t.ram + CODE, code, n);
		t.st.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE | X86_CR0_MP;
		t.st.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT;
		t.st.cr0 |= e->cr0_set;
		t.st.cr4 &= ~e->cr4_clear;
		/* fninit itself would fault with TS/EM: start past it then. */
		vec = run_guest(&t, CODE + (e->cr0_set ? 2 : 0), DATA);
		if (vec != e->vec)
			fail_msg("%s (cr0 |= %#llx, cr4 &= ~%#llx): vector %d, expected %d", e->src,
				 (unsigned long long)e->cr0_set, (unsigned long long)e->cr4_clear, vec, e->vec);
	}
	emu_teardown(&t);
}

/* An unmasked SIMD exception sets its flag and leaves the destination. */
static void test_xm_no_commit(void **state)
{
	struct emu_t t;
	uint8_t code[256];
	size_t n;
	uint32_t mx;
	uint64_t lo;

	(void)state;
	n = assemble("mov dword ptr [rdi], 0x1d80\nldmxcsr [rdi]\nmov rax, 0x3ff0000000000000\n"
		     "movq xmm0, rax\nxorps xmm1, xmm1\ndivsd xmm0, xmm1\nret",
		     code, sizeof(code));
	emu_setup(&t);
	memcpy(t.ram + CODE, code, n);
	assert_int_equal(run_guest(&t, CODE, DATA), 19);
	/* The handler halted; read the state back with stmxcsr/movq. */
	n = assemble("stmxcsr [rdi]\nmovq [rdi+8], xmm0\nret", code, sizeof(code));
	memcpy(t.ram + CODE, code, n);
	assert_int_equal(run_guest(&t, CODE, DATA), -1);
	memcpy(&mx, t.ram + DATA, 4);
	memcpy(&lo, t.ram + DATA + 8, 8);
	assert_int_equal(mx, 0x1d80 | 0x4);
	assert_int_equal(lo, 0x3ff0000000000000ULL);
	emu_teardown(&t);
}

static void test_cpuid_bits(void **state)
{
	struct emu_t t;
	uint8_t code[64];
	size_t n;
	uint64_t edx;

	(void)state;
	n = assemble("mov eax, 1\ncpuid\nmov [rdi], rdx\nret", code, sizeof(code));
	emu_setup(&t);
	memcpy(t.ram + CODE, code, n);
	assert_int_equal(run_guest(&t, CODE, DATA), -1);
	memcpy(&edx, t.ram + DATA, 8);
	/* fpu fxsr sse sse2 are what a 64-bit kernel insists on. */
	assert_true(edx & 1);
	assert_true(edx & (1u << 24));
	assert_true(edx & (1u << 25));
	assert_true(edx & (1u << 26));
	assert_false(edx & (1u << 23)); /* mmx: not implemented */
	emu_teardown(&t);
}

/* A store that faults on its second page writes nothing to the first. */
static void test_split_store_fault(void **state)
{
	static const char *const stores[] = {
		"movups [0x200ff8], xmm0", "movdqu [0x200ff1], xmm0", "fstp tbyte ptr [0x200ff8]",
		"fxsave [0x200f00]", "fnsave [0x200fc0]",
	};
	struct emu_t t;
	uint8_t code[128];

	(void)state;
	emu_setup(&t);
	for (size_t i = 0; i < sizeof(stores) / sizeof(stores[0]); i++) {
		char src[256];
		size_t n;

		snprintf(src, sizeof(src), "pcmpeqb xmm0, xmm0\nfld1\n%s\nret", stores[i]);
		n = assemble(src, code, sizeof(code));
		memcpy(t.ram + CODE, code, n);
		memset(t.ram + 0x200f00, 0x5a, 256);
		assert_int_equal(run_guest(&t, CODE, DATA), 14);
		for (int b = 0; b < 256; b++)
			if (t.ram[0x200f00 + b] != 0x5a)
				fail_msg("%s: byte %#x written before the #PF", stores[i], 0x200f00 + b);
		assert_int_equal(t.st.cr2 >> 12, NOT_PRESENT >> 12);
	}
	emu_teardown(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cpuid_bits),
		cmocka_unit_test(test_exceptions),
		cmocka_unit_test(test_xm_no_commit),
		cmocka_unit_test(test_split_store_fault),
		cmocka_unit_test(test_vs_host),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
