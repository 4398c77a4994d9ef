/* cpu/emu fuzz: random bytes as guest code, started in every CPU mode the
 * interpreter has (real, 16- and 32-bit protected, 32-bit with non-PAE and
 * PAE paging, 32-bit ring 3, compatibility, 64-bit ring 0 and ring 3), over
 * descriptor tables, gates, page tables and a TSS that are partly random too;
 * half the runs start with system instructions built from templates. Port
 * and MMIO reads are answered with random data. A run ends at hlt,
 * shutdown, an error exit, or when its exit/instruction budget is spent (a
 * kicker thread breaks endless loops). Pass: no crash, no ASan/UBSan report
 * (make check builds this program with both), and the state the backend
 * reports stays architecturally consistent.
 *
 *   FUZZ_RUNS=n     runs per mode (default 1500: 12,000 runs in all)
 *   FUZZ_SEED=s     first seed for every mode (default: fixed per mode); a
 *                   failure prints its run's seed, FUZZ_SEED=that FUZZ_RUNS=1
 *                   replays it (a run the kicker had to stop may end at
 *                   another point: the kicks are timed)
 *   FUZZ_VERBOSE=1  print every exit and the emulator's warnings */
#include "unit.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/cpu.h"
#include "cpu/emu/emu.h"
#include "mem/gm.h"

#define RAM_SIZE (512u << 10)
#define IVT 0x0
#define GDT 0x1000
#define GDT_LIMIT 0xff
#define LDT 0x1800
#define IDT 0x2000
#define TSS 0x3000
#define PML4 0x4000
#define PDPT 0x5000
#define PD 0x6000  /* long mode and PAE */
#define PT 0x7000  /* 4 KiB pages for 0-2 MiB (long mode and PAE) */
#define PD32 0x8000 /* non-PAE page directory */
#define PT32 0x9000 /* non-PAE page table for 0-4 MiB */
#define PDPT_PAE 0xa000
#define HANDLER 0xb000 /* "hlt" stubs for gates that do not point at random code */
#define CODE 0x10000
#define CODE_SIZE 0x10000
#define STACK_TOP 0x70000
#define RSP0_TOP 0x78000
#define IST_TOP 0x7c000

#define RUN_EXITS 48	  /* exits handled per run */
#define RUN_INSNS 20000	  /* a run that retired this many instructions ends at its next exit */

enum fmode { F_REAL, F_PROT16, F_PROT32, F_PAGING32, F_USER32, F_COMPAT, F_LONG, F_USER64, F_NMODES };
static const char *const mode_names[F_NMODES] = { "real",   "prot16", "prot32", "paging32",
						  "user32", "compat", "long64", "user64" };

struct fuzz {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *ram;
	uint8_t *tmpl; /* fixed tables, copied in before every run */
	struct vcpu_exit exit;
	uint64_t rng;
	atomic_bool stop;
	pthread_t kicker;
	unsigned long runs, exits, insns;
	bool verbose; /* FUZZ_VERBOSE=1: print every exit */
};

static struct fuzz fz;
static enum fmode cur_mode;
static uint64_t cur_seed;

/* A failed check names the run, so FUZZ_SEED + FUZZ_RUNS=1 replays it. */
#define FCHECK(cond)                                                          \
	do {                                                                  \
		if (!(cond))                                                  \
			fail_msg("%s run seed %#llx: %s", mode_names[cur_mode], \
				 (unsigned long long)cur_seed, #cond);        \
	} while (0)

static uint64_t rnd(void)
{
	return unit_rnd(&fz.rng);
}

static void put64(uint8_t *m, uint64_t gpa, uint64_t v)
{
	memcpy(m + gpa, &v, 8);
}

static void put32(uint8_t *m, uint64_t gpa, uint32_t v)
{
	memcpy(m + gpa, &v, 4);
}

static void fill_random(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i += 8) {
		uint64_t v = rnd();

		memcpy(p + i, &v, n - i < 8 ? n - i : 8);
	}
}

/* Tables shared by every mode: GDT, TSS, page tables for all three paging
 * formats. Everything identity-maps the first 2 MiB (RAM is 512 KiB: the
 * rest is MMIO) and 4 GiB with large pages. */
static void build_template(uint8_t *m)
{
	static const uint64_t gdt[] = {
		0,
		0x00209a0000000000ULL, /* 0x08 64-bit code */
		0x00cf92000000ffffULL, /* 0x10 flat data */
		0x00cff2000000ffffULL, /* 0x18 user data */
		0x0020fa0000000000ULL, /* 0x20 user 64-bit code */
		0x00cf9a000000ffffULL, /* 0x28 flat 32-bit code */
		0x00009a010000ffffULL, /* 0x30 16-bit code, base 0x10000 */
		0x000092000000ffffULL, /* 0x38 16-bit data */
		0,		       /* 0x40 TSS (16 bytes) */
		0,
		0x000082001800003fULL, /* 0x50 LDT */
		0x00cffa000000ffffULL, /* 0x58 user 32-bit code */
		0x00cf96000000efffULL, /* 0x60 expand-down data */
	};

	memset(m, 0, RAM_SIZE);
	memcpy(m + GDT, gdt, sizeof(gdt));
	put64(m, GDT + 0x40, 0x67 | ((uint64_t)TSS << 16) | (0x89ULL << 40));
	put64(m, TSS + 4, RSP0_TOP); /* 64-bit TSS; 32-bit modes set ss0 below */
	for (int i = 0; i < 7; i++)
		put64(m, TSS + 0x24 + 8 * (uint64_t)i, IST_TOP - 0x400 * (uint64_t)i);
	for (int i = 0; i < 0x1000; i++)
		m[HANDLER + i] = 0xf4; /* hlt */

	/* 4-level: PML4 -> PDPT; PDPT[0] -> PD, PDPT[1..3] 1 GiB pages. */
	put64(m, PML4, PDPT | 7);
	put64(m, PDPT, PD | 7);
	for (int i = 1; i < 4; i++)
		put64(m, PDPT + 8 * (uint64_t)i, ((uint64_t)i << 30) | 0x87);
	put64(m, PD, PT | 7);
	for (int i = 1; i < 512; i++)
		put64(m, PD + 8 * (uint64_t)i, ((uint64_t)i << 21) | 0x87);
	for (int i = 0; i < 512; i++)
		put64(m, PT + 8 * (uint64_t)i, ((uint64_t)i << 12) | 7);
	/* PAE: four PDPTEs, the first shares PD. */
	put64(m, PDPT_PAE, PD | 1);
	for (int i = 1; i < 4; i++)
		put64(m, PDPT_PAE + 8 * (uint64_t)i, PD | 1);
	/* 32-bit: PD32[0] -> PT32, the rest 4 MiB pages. */
	put32(m, PD32, PT32 | 7);
	for (int i = 1; i < 1024; i++)
		put32(m, PD32 + 4 * (uint64_t)i, ((uint32_t)i << 22) | 0x87);
	for (int i = 0; i < 1024; i++)
		put32(m, PT32 + 4 * (uint64_t)i, ((uint32_t)i << 12) | 7);
}

static struct x86_seg seg_from(uint64_t d, uint16_t sel)
{
	struct x86_seg s = { 0 };
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));

	s.sel = sel;
	s.base = ((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000);
	s.g = (d >> 55) & 1;
	s.limit = s.g ? (limit << 12) | 0xfff : limit;
	s.type = (d >> 40) & 0xf;
	s.s = (d >> 44) & 1;
	s.dpl = (d >> 45) & 3;
	s.present = (d >> 47) & 1;
	s.l = (d >> 53) & 1;
	s.db = (d >> 54) & 1;
	return s;
}

static struct x86_seg gdt_seg(uint16_t sel)
{
	uint64_t d;

	memcpy(&d, fz.ram + GDT + (sel & ~7u), 8);
	return seg_from(d, sel);
}

static uint64_t interesting(void)
{
	static const uint64_t v[] = { 0, 1, 0x7f, 0x80, 0xffff, 0x10000, 0x7fffffff, 0x80000000,
				      0xffffffff, 0x8000000000000000ULL, ~0ULL, CODE, STACK_TOP - 64 };

	return (rnd() & 1) ? v[rnd() % (sizeof(v) / sizeof(v[0]))] : rnd();
}

/* ---- system-instruction snippets ----
 * Random bytes alone rarely load a valid selector or flip CR0.PG, so half
 * the runs start with a few instructions built from templates -- control
 * register writes, segment loads, far transfers, iret frames, gates,
 * ltr/lldt/lgdt/lidt, MSR writes, syscall/sysret -- with operands drawn
 * from values that mean something to this machine, then random bytes. */
#define PTRS 0x20000 /* descriptor-table pointers for lgdt/lidt */

struct emitter {
	uint8_t *p;
	size_t n, max;
	int opsz; /* 2, 4 or 8: the start mode's operand size */
};

static void e8(struct emitter *e, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes && e->n < e->max; i++)
		e->p[e->n++] = (uint8_t)(v >> (8 * i));
}

static void e_bytes(struct emitter *e, const char *b, int len)
{
	for (int i = 0; i < len; i++)
		e8(e, (uint8_t)b[i], 1);
}

/* mov eax, imm32 in any mode. */
static void e_mov_eax(struct emitter *e, uint32_t v)
{
	if (e->opsz == 2)
		e8(e, 0x66, 1);
	e8(e, 0xb8, 1);
	e8(e, v, 4);
}

static void e_push_imm(struct emitter *e, uint32_t v)
{
	e8(e, 0x68, 1);
	e8(e, v, e->opsz == 2 ? 2 : 4);
}

static uint16_t rnd_sel(void)
{
	static const uint16_t sels[] = { 0x08, 0x10, 0x1b, 0x23, 0x28, 0x30, 0x38, 0x40, 0x50, 0x5b,
					 0x60, 0x6b, 0x70, 0x73, 0x04, 0x0c, 0x14 /* LDT */ };

	if (rnd() & 1)
		return (uint16_t)(sels[rnd() % (sizeof(sels) / sizeof(sels[0]))] | (rnd() & 3));
	return (uint16_t)(rnd() & 0x1ff);
}

static uint32_t rnd_target(void)
{
	return (rnd() & 1) ? CODE + (uint32_t)(rnd() % CODE_SIZE) : (uint32_t)interesting();
}

static void e_absmem(struct emitter *e, uint8_t reg, uint32_t addr)
{
	/* modrm for [disp] with reg field reg (SIB form in 64-bit mode). */
	if (e->opsz == 2) {
		e8(e, 0x06 | (reg << 3), 1);
		e8(e, addr - PTRS, 2);
	} else if (e->opsz == 4) {
		e8(e, 0x05 | (reg << 3), 1);
		e8(e, addr, 4);
	} else {
		e8(e, 0x04 | (reg << 3), 1);
		e8(e, 0x25, 1);
		e8(e, addr, 4);
	}
}

static void emit_snippet(struct emitter *e)
{
	static const uint32_t cr0s[] = { 0x11, 0x10, 0x80000011, 0x80010031, 0x60000011, 0x31, 0x80000001 };
	static const uint32_t cr3s[] = { PML4, PD32, PDPT_PAE, 0x1000, 0xfffff000 };
	static const uint32_t msrs[] = { 0xc0000080, 0xc0000081, 0xc0000082, 0xc0000084, 0xc0000100,
					 0xc0000101, 0xc0000102, 0x174, 0x175, 0x176, 0x1b, 0x277 };
	bool w = e->opsz == 8;

	switch (rnd() % 14) {
	case 0: { /* mov crN, eax */
		static const uint8_t crs[] = { 0, 3, 4, 2, 8 };
		uint8_t cr = crs[rnd() % 5];
		uint32_t v = cr == 0 ? cr0s[rnd() % 7] : cr == 3 ? cr3s[rnd() % 5] : (uint32_t)(rnd() & 0x6b0);

		e_mov_eax(e, (rnd() & 7) ? v : (uint32_t)rnd());
		e_bytes(e, "\x0f\x22", 2);
		e8(e, 0xc0 | (cr << 3), 1);
		break;
	}
	case 1: { /* mov sreg, ax */
		static const uint8_t sregs[] = { 0, 2, 3, 4, 5 };

		e_mov_eax(e, rnd_sel());
		e8(e, 0x8e, 1);
		e8(e, 0xc0 | (sregs[rnd() % 5] << 3), 1);
		break;
	}
	case 2: /* far return to sel:target, sometimes to an outer level */
		if (rnd() & 1) {
			e_push_imm(e, rnd_sel());
			e_push_imm(e, STACK_TOP - 0x200);
		}
		e_push_imm(e, rnd_sel());
		e_push_imm(e, rnd_target());
		if (w)
			e8(e, 0x48, 1);
		e8(e, (rnd() & 3) ? 0xcb : 0xca, 1);
		break;
	case 3: /* iret through a built frame (ss:sp pushed too: outer levels) */
		e_push_imm(e, rnd_sel());
		e_push_imm(e, STACK_TOP - 0x100);
		e_push_imm(e, (uint32_t)(2 | (rnd() & 0x3cd5)));
		e_push_imm(e, rnd_sel());
		e_push_imm(e, rnd_target());
		if (w)
			e8(e, 0x48, 1);
		e8(e, 0xcf, 1);
		break;
	case 4: /* int n, int3, into, int1 */
		switch (rnd() & 3) {
		case 0: e8(e, 0xcc, 1); break;
		case 1: e8(e, 0xce, 1); break;
		case 2: e8(e, 0xf1, 1); break;
		default: e8(e, 0xcd, 1); e8(e, rnd(), 1); break;
		}
		break;
	case 5: { /* syscall, sysret, sysenter, sysexit */
		static const char *const ops[] = { "\x0f\x05", "\x0f\x07", "\x48\x0f\x07", "\x0f\x34", "\x0f\x35" };
		unsigned k = (unsigned)(rnd() % 5);

		e_bytes(e, ops[k], k == 2 ? 3 : 2);
		break;
	}
	case 6: /* ltr / lldt / verr / verw / lar / lsl ax */
		e_mov_eax(e, rnd_sel());
		e8(e, 0x0f, 1);
		if (rnd() & 1) {
			e8(e, 0x00, 1);
			e8(e, 0xc0 | (uint8_t)((rnd() % 6) << 3), 1); /* sldt str lldt ltr verr verw */
		} else {
			e8(e, (rnd() & 1) ? 0x02 : 0x03, 1);
			e8(e, 0xc0, 1);
		}
		break;
	case 7: /* lgdt / lidt from a pointer in memory */
		e8(e, 0x0f, 1);
		e8(e, 0x01, 1);
		e_absmem(e, (rnd() & 1) ? 2 : 3, PTRS + (uint32_t)(rnd() % 4) * 16);
		break;
	case 8: /* wrmsr */
		if (e->opsz == 2)
			e8(e, 0x66, 1);
		e8(e, 0xb9, 1);
		e8(e, msrs[rnd() % (sizeof(msrs) / sizeof(msrs[0]))], 4);
		e_mov_eax(e, (uint32_t)interesting());
		e_bytes(e, "\x31\xd2\x0f\x30", 4);
		break;
	case 9: /* far jmp / call through memory (m16:opsz) */
		e8(e, 0xff, 1);
		e_absmem(e, (rnd() & 1) ? 5 : 3, PTRS + 0x40 + (uint32_t)(rnd() % 4) * 16);
		break;
	case 10: /* direct far jmp/call (not in 64-bit mode: #UD there) */
		e8(e, (rnd() & 1) ? 0xea : 0x9a, 1);
		e8(e, rnd_target(), e->opsz == 2 ? 2 : 4);
		e8(e, rnd_sel(), 2);
		break;
	case 11: { /* invlpg / mov cr3 reload / wbinvd / clts */
		static const char *const ops[] = { "\x0f\x01\x38", "\x0f\x20\xd8\x0f\x22\xd8", "\x0f\x09", "\x0f\x06" };
		static const int lens[] = { 3, 6, 2, 2 };
		unsigned k = (unsigned)(rnd() % 4);

		e_bytes(e, ops[k], lens[k]);
		break;
	}
	case 12: /* pushf/popf with IOPL/VM/NT bits, cli/sti, swapgs */
		e_push_imm(e, (uint32_t)(rnd() & 0x27fd7));
		e8(e, 0x9d, 1);
		e8(e, (const uint8_t[]){ 0xfa, 0xfb, 0xf4, 0x90 }[rnd() % 4], 1);
		if (w && (rnd() & 1))
			e_bytes(e, "\x0f\x01\xf8", 3);
		break;
	default: /* an in/out */
		e8(e, (const uint8_t[]){ 0xe4, 0xe5, 0xe6, 0xe7, 0xec, 0xed, 0xee, 0xef, 0x6c, 0x6e }[rnd() % 10], 1);
		e8(e, rnd(), 1);
		break;
	}
}

static void fill_code(enum fmode mode)
{
	struct emitter e = { fz.ram + CODE, 0, CODE_SIZE, 4 };

	fill_random(fz.ram + CODE, CODE_SIZE);
	/* Pointers for lgdt/lidt (limit, base) and far jumps (offset, sel). */
	for (int i = 0; i < 4; i++) {
		uint64_t base = (uint64_t[]){ GDT, IDT, rnd(), LDT }[rnd() % 4];

		put32(fz.ram, PTRS + 16 * (uint64_t)i, (uint32_t)((rnd() & 3) ? (rnd() & 0xfff) : 0xffff) |
								  (uint32_t)(base << 16));
		put64(fz.ram, PTRS + 16 * (uint64_t)i + 4, base >> 16);
		put64(fz.ram, PTRS + 0x40 + 16 * (uint64_t)i, rnd_target());
		put32(fz.ram, PTRS + 0x40 + 16 * (uint64_t)i + 4, rnd_sel());
		put32(fz.ram, PTRS + 0x40 + 16 * (uint64_t)i + 8, rnd_sel());
	}
	if (rnd() & 1)
		return;
	e.opsz = mode == F_REAL || mode == F_PROT16 ? 2 : mode >= F_LONG ? 8 : 4;
	for (int n = 1 + (int)(rnd() % 8); n > 0; n--)
		emit_snippet(&e);
}

/* Randomise what a run may trip over: GDT slots 0x60-0xf8, the LDT, gates,
 * some page-table entries, and of course the code. */
static void randomise_tables(enum fmode mode)
{
	bool lm = mode >= F_COMPAT;
	int gsz = lm ? 16 : 8;

	fill_code(mode);
	if (!lm)
		put32(fz.ram, TSS + 8, 0x10); /* 32-bit TSS: esp0 at 4, ss0 at 8 */
	fill_random(fz.ram + GDT + 0x80, GDT_LIMIT + 1 - 0x80);
	/* Call gates: 0x68 (DPL 3, 2 parameters) in legacy modes, 0x70 a 16-byte
	 * one in long mode, both into the random code. */
	{
		uint64_t off = CODE + rnd() % CODE_SIZE;
		uint64_t gate = (off & 0xffff) | ((uint64_t)(lm ? 0x08 : 0x28) << 16) |
				((off & 0xffff0000ULL) << 32) | (0xecULL << 40) | (lm ? 0 : 2ULL << 32);

		put64(fz.ram, GDT + 0x68, gate);
		put64(fz.ram, GDT + 0x70, gate);
		put64(fz.ram, GDT + 0x78, 0);
	}
	fill_random(fz.ram + LDT, 0x40);
	/* Real-mode IVT: handlers in the random code. */
	for (int v = 0; v < 256; v++)
		put32(fz.ram, IVT + 4 * (uint64_t)v, 0x10000000u | (uint32_t)(rnd() & 0xffff));
	for (int v = 0; v < 256; v++) {
		uint64_t base = IDT + (uint64_t)v * (uint64_t)gsz, off, lo, hi = 0;
		uint64_t r = rnd();
		uint16_t sel = lm ? 0x08 : 0x28;

		off = (r & 1) ? HANDLER + (uint64_t)v * 4 : CODE + ((r >> 8) & 0xffff);
		if ((r & 0x30) == 0x30)
			sel = (uint16_t)(rnd() & 0xff);
		lo = (off & 0xffff) | ((uint64_t)sel << 16) | ((off & 0xffff0000ULL) << 32) |
		     ((0x8eULL | ((r >> 2) & 1) | (((r >> 4) & 3) << 5)) << 40);
		if (lm)
			lo |= ((r >> 12) & ((r & 0x40) ? 7 : 0)) << 32; /* IST sometimes */
		if (!lm && (r & 0x80))
			lo &= ~(8ULL << 40); /* 16-bit gate */
		if ((r & 0x3f00) == 0)
			lo = rnd(); /* garbage */
		put64(fz.ram, base, lo);
		if (lm)
			put64(fz.ram, base + 8, hi);
	}
	/* A few page-table entries of the low 2 MiB with random permission bits
	 * (not the tables themselves, or nothing would run). */
	for (int i = 0; i < 8; i++) {
		uint64_t page = 0x10 + rnd() % 0x1f0, bits = rnd() & 0x8000000000000067ULL;

		put64(fz.ram, PT + page * 8, (page << 12) | bits);
		put32(fz.ram, PT32 + page * 4, (uint32_t)((page << 12) | (bits & 0x67)));
	}
	if ((rnd() & 15) == 0)
		put64(fz.ram, PT + (0x10 + rnd() % 0x10) * 8, rnd()); /* reserved bits */
}

static void start_state(enum fmode mode, struct x86_state *st)
{
	struct x86_seg data;

	memset(st, 0, sizeof(*st));
	for (int i = 0; i < 16; i++)
		st->gpr[i] = interesting();
	st->gpr[R_RSP] = STACK_TOP - (rnd() & 0xff) * 8;
	st->rflags = 2 | (rnd() & 0x8d5) | ((rnd() & 3) ? 0 : 0x400);
	st->ldt = (rnd() & 1) ? (struct x86_seg){ .unusable = 1 }
			      : (struct x86_seg){ .sel = 0x50, .base = LDT, .limit = 0x3f, .type = 2, .present = 1 };
	st->gdt = (struct x86_dtable){ GDT, GDT_LIMIT };
	st->tr = (struct x86_seg){ .sel = 0x40, .base = TSS, .limit = 0x67, .type = 0xb, .present = 1 };
	st->efer = (rnd() & 1) ? X86_EFER_NXE : 0;
	st->cr0 = X86_CR0_ET | X86_CR0_NE | ((rnd() & 1) ? X86_CR0_WP : 0);

	if (mode == F_REAL) {
		struct x86_seg s = { .limit = 0xffff, .type = 3, .s = 1, .present = 1 };

		st->idt = (struct x86_dtable){ IVT, 0x3ff };
		st->es = st->ds = st->fs = st->gs = st->ss = s;
		st->cs = s;
		st->cs.type = 0xb;
		st->cs.sel = 0x1000;
		st->cs.base = 0x10000;
		st->rip = 0;
		st->gpr[R_RSP] &= 0xffff;
		st->ss.sel = 0x6000;
		st->ss.base = 0x60000;
		st->ds.sel = PTRS >> 4; /* [disp16] reaches the lgdt/far pointers */
		st->ds.base = PTRS;
		return;
	}
	st->cr0 |= X86_CR0_PE;
	st->idt = (struct x86_dtable){ IDT, mode >= F_COMPAT ? 0xfff : 0x7ff };
	data = gdt_seg(0x10);
	st->es = st->ds = st->fs = st->gs = st->ss = data;
	st->rip = CODE;
	switch (mode) {
	case F_PROT16:
		st->cs = gdt_seg(0x30);
		st->ss = gdt_seg(0x38);
		st->ds = st->es = st->ss;
		st->rip = 0;
		st->gpr[R_RSP] &= 0xffff;
		break;
	case F_PROT32:
		st->cs = gdt_seg(0x28);
		break;
	case F_USER32:
		st->cs = gdt_seg(0x5b);
		st->ss = st->ds = st->es = gdt_seg(0x1b);
		break;
	case F_PAGING32:
		st->cs = gdt_seg(0x28);
		st->cr0 |= X86_CR0_PG;
		if (rnd() & 1) {
			st->cr4 = X86_CR4_PAE;
			st->cr3 = PDPT_PAE;
		} else {
			st->cr4 = (rnd() & 1) ? X86_CR4_PSE : 0;
			st->cr3 = PD32;
		}
		break;
	case F_COMPAT:
	case F_LONG:
	case F_USER64:
		st->cr0 |= X86_CR0_PG;
		st->cr4 = X86_CR4_PAE | ((rnd() & 1) ? X86_CR4_PGE : 0);
		st->cr3 = PML4;
		st->efer |= X86_EFER_LME | X86_EFER_LMA | X86_EFER_SCE;
		st->cs = gdt_seg(mode == F_COMPAT ? 0x28 : 0x08);
		if (mode == F_USER64) {
			st->cs = gdt_seg(0x23);
			st->ss = st->ds = st->es = gdt_seg(0x1b);
			st->rflags |= 0x200;
		}
		break;
	default:
		break;
	}
}

/* What must hold whatever the guest did. */
static void check_state(const struct x86_state *st, uint64_t seed, enum fmode mode)
{
	bool lma = st->efer & X86_EFER_LMA;
	bool ok = true;

	ok &= (st->rflags & 2) != 0;
	ok &= !(st->rflags & ~0x3f7fd7ULL);
	if (lma) {
		ok &= (st->cr0 & X86_CR0_PG) && (st->cr0 & X86_CR0_PE) && (st->cr4 & X86_CR4_PAE);
		ok &= (st->efer & X86_EFER_LME) != 0;
		if (st->cs.l)
			ok &= (uint64_t)((int64_t)(st->rip << 16) >> 16) == st->rip;
	} else {
		ok &= st->rip <= 0xffffffffULL;
	}
	if ((st->cr0 & X86_CR0_PG))
		ok &= (st->cr0 & X86_CR0_PE) != 0;
	if (!ok)
		fail_msg("%s run seed %#llx: inconsistent state: rip %#llx rflags %#llx cr0 %#llx cr4 %#llx efer %#llx cs.l %d",
			 mode_names[mode], (unsigned long long)seed, (unsigned long long)st->rip,
			 (unsigned long long)st->rflags, (unsigned long long)st->cr0,
			 (unsigned long long)st->cr4, (unsigned long long)st->efer, st->cs.l);
}

static void one_run(enum fmode mode, uint64_t seed)
{
	struct x86_state st, back;
	uint64_t insns0;
	int intrs = 0;

	cur_mode = mode;
	cur_seed = seed;
	fz.rng = seed | 1;
	memcpy(fz.ram, fz.tmpl, RAM_SIZE);
	randomise_tables(mode);
	start_state(mode, &st);
	FCHECK(emu_cpu_ops.set_state(&fz.vcpu, &st) == 0);
	insns0 = emu_insn_count(&fz.vcpu);
	for (int n = 0; n < RUN_EXITS; n++) {
		struct vcpu_exit *ex = &fz.exit;
		bool done = false;

		memset(ex, 0, sizeof(*ex));
		FCHECK(emu_cpu_ops.vcpu_run(&fz.vcpu, ex) == 0);
		fz.exits++;
		if (fz.verbose) {
			struct x86_state now;

			emu_cpu_ops.get_state(&fz.vcpu, &now);
			print_message("# exit %d reason %d rip %#llx cs %#x cr0 %#llx\n", n, ex->reason,
				      (unsigned long long)now.rip, now.cs.sel, (unsigned long long)now.cr0);
		}
		switch (ex->reason) {
		case VCPU_EXIT_IO:
			if (!(ex->io.size == 1 || ex->io.size == 2 || ex->io.size == 4))
				fail_msg("%s run seed %#llx: port %#x access of %u bytes", mode_names[mode],
					 (unsigned long long)seed, ex->io.port, ex->io.size);
			FCHECK(ex->io.count == 1);
			if (!ex->io.write)
				fill_random(ex->io.data, ex->io.size);
			break;
		case VCPU_EXIT_MMIO:
			FCHECK(ex->mmio.len >= 1 && ex->mmio.len <= 8);
			FCHECK(ex->mmio.gpa >= RAM_SIZE);
			if (!ex->mmio.write)
				fill_random(ex->mmio.data, ex->mmio.len);
			break;
		case VCPU_EXIT_INTR:
			done = ++intrs >= 3;
			break;
		case VCPU_EXIT_HLT:
			/* Sometimes wake it with an interrupt and go on. */
			if ((rnd() & 3) == 0)
				FCHECK(emu_inject_interrupt(&fz.vcpu, (uint8_t)(0x20 + rnd() % 0xe0)) == 0);
			else
				done = true;
			break;
		case VCPU_EXIT_SHUTDOWN:
		case VCPU_EXIT_ERROR:
		case VCPU_EXIT_RESET:
		case VCPU_EXIT_POWEROFF:
			done = true;
			break;
		default:
			fail_msg("%s run seed %#llx: unknown exit reason %d", mode_names[mode],
				 (unsigned long long)seed, ex->reason);
		}
		if (emu_insn_count(&fz.vcpu) - insns0 > RUN_INSNS)
			done = true;
		if (done)
			break;
	}
	fz.insns += emu_insn_count(&fz.vcpu) - insns0;
	FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &st) == 0);
	check_state(&st, seed, mode);
	/* The state reads back as it was written. */
	FCHECK(emu_cpu_ops.set_state(&fz.vcpu, &st) == 0);
	FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &back) == 0);
	FCHECK(back.rip == st.rip);
	FCHECK(back.cr3 == st.cr3);
	fz.runs++;
}

static void *kicker(void *arg)
{
	const struct timespec ts = { 0, 300 * 1000 };

	while (!atomic_load(&fz.stop)) {
		nanosleep(&ts, NULL);
		emu_cpu_ops.kick(&fz.vcpu);
	}
	return NULL;
}

static unsigned long env_ul(const char *name, unsigned long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoul(v, NULL, 0) : def;
}

static void fuzz_mode(enum fmode mode)
{
	unsigned long runs = env_ul("FUZZ_RUNS", 1500);
	/* FUZZ_SEED replays from a printed seed in every mode. */
	uint64_t seed0 = getenv("FUZZ_SEED") ? env_ul("FUZZ_SEED", 0)
					      : 0x7a726e66757a7aULL + (uint64_t)mode * 0x9e3779b97f4a7c15ULL;
	unsigned long before = fz.runs;

	for (unsigned long i = 0; i < runs; i++)
		one_run(mode, seed0 + i);
	print_message("# %s: %lu runs\n", mode_names[mode], fz.runs - before);
}

static void t_real(void **s) { fuzz_mode(F_REAL); }
static void t_prot16(void **s) { fuzz_mode(F_PROT16); }
static void t_prot32(void **s) { fuzz_mode(F_PROT32); }
static void t_paging32(void **s) { fuzz_mode(F_PAGING32); }
static void t_user32(void **s) { fuzz_mode(F_USER32); }
static void t_compat(void **s) { fuzz_mode(F_COMPAT); }
static void t_long64(void **s) { fuzz_mode(F_LONG); }
static void t_user64(void **s) { fuzz_mode(F_USER64); }

static int setup(void **s)
{
	memset(&fz, 0, sizeof(fz));
	fz.ram = aligned_alloc(4096, RAM_SIZE);
	fz.tmpl = aligned_alloc(4096, RAM_SIZE);
	if (!fz.ram || !fz.tmpl)
		return -1;
	fz.rng = 1;
	fz.verbose = env_ul("FUZZ_VERBOSE", 0) != 0;
	log_threshold = fz.verbose ? LOG_DEBUG : LOG_ERR; /* guest-triggered warnings by the thousand */
	build_template(fz.tmpl);
	memcpy(fz.ram, fz.tmpl, RAM_SIZE);
	if (gm_init_fake(&fz.vm.mem, 0, fz.ram, RAM_SIZE))
		return -1;
	fz.vm.cpu = &emu_cpu_ops;
	fz.vm.nr_vcpus = 1;
	fz.vcpu.vm = &fz.vm;
	if (emu_cpu_ops.vm_init(&fz.vm) || emu_cpu_ops.vcpu_init(&fz.vcpu))
		return -1;
	atomic_store(&fz.stop, false);
	return pthread_create(&fz.kicker, NULL, kicker, NULL) ? -1 : 0;
}

static int teardown(void **s)
{
	atomic_store(&fz.stop, true);
	pthread_join(fz.kicker, NULL);
	print_message("# %lu runs, %lu exits, %lu instructions\n", fz.runs, fz.exits, fz.insns);
	emu_cpu_ops.vcpu_destroy(&fz.vcpu);
	emu_cpu_ops.vm_destroy(&fz.vm);
	free(fz.ram);
	free(fz.tmpl);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_real),     cmocka_unit_test(t_prot16), cmocka_unit_test(t_prot32),
		cmocka_unit_test(t_paging32), cmocka_unit_test(t_user32), cmocka_unit_test(t_compat),
		cmocka_unit_test(t_long64),
		cmocka_unit_test(t_user64),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
