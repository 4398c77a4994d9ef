/* cpu/emu fuzz: random bytes as guest code, started in every CPU mode the
 * interpreter has (real, 16- and 32-bit protected, 32-bit with non-PAE and
 * PAE paging, 32-bit ring 3, compatibility, 64-bit ring 0 and ring 3), over
 * descriptor tables, gates, page tables and a TSS that are partly random too;
 * half the runs start with system instructions built from templates. Port
 * and MMIO reads are answered with random data.
 *
 * Every run ends in one class, and the counts are printed last ("# ends:
 * hlt N, shutdown N, ..."): hlt, shutdown (triple fault), budget (its
 * exits or instructions spent), kicked (halted with nothing to wake it, a
 * kicker thread ended it), or an error exit of the backend. An error exit is a
 * pass only when its code (cpu.h, enum vcpu_error) is one of the guest-
 * caused ends in guest_errors[] below, each there with the reason it is not
 * a bug; VCPU_ERR_INTERNAL or any other code fails the test. Pass: no crash,
 * no ASan/UBSan report (make check builds this program with both), no
 * internal error, and the state the backend reports stays architecturally
 * consistent.
 *
 * Seeds: each start takes a new seed and prints it first ("# seed: N");
 * every mode's run seeds derive from it, and a failure prints both with the
 * commands that replay it:
 *   SEED=N          the program seed (make check SEED=N passes it on too)
 *   FUZZ_RUNS=n     runs per mode (default 1500: 12,000 runs in all)
 *   FUZZ_MODE=name  run one mode (real, prot16, ..., user64); the rest SKIP
 *   FUZZ_SEED=s     first run seed of every mode, instead of SEED's:
 *                   FUZZ_MODE=long64 FUZZ_SEED=s FUZZ_RUNS=1 replays one run
 *   FUZZ_VERBOSE=1  print every exit and the emulator's warnings
 * Each run gets a fresh VM and vCPU and stops after RUN_INSNS instructions,
 * so a replay takes the same path; only a LAPIC timer the guest programmed
 * (it counts real time) can fire at another point. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "bus/bus.h"
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
#define RUN_INSNS 2000	  /* instructions per run (emu_set_insn_limit: the same each replay) */
#define KICK_MS 50	  /* a run this long sleeps, halted for good: the kicker ends it */

enum fmode { F_REAL, F_PROT16, F_PROT32, F_PAGING32, F_USER32, F_COMPAT, F_LONG, F_USER64, F_NMODES };
static const char *const mode_names[F_NMODES] = { "real",   "prot16", "prot32", "paging32",
						  "user32", "compat", "long64", "user64" };

/* How a run ended. The END_ERR_* classes are the error exits that are the
 * guest's doing; guest_errors[] says why each is one. */
enum end {
	END_HLT, END_SHUTDOWN, END_BUDGET, END_KICKED, END_RESET, END_POWEROFF,
	END_ERR_FETCH, END_ERR_EVENT_MMIO, END_ERR_MMIO_LIMIT, END_ERR_V8086, END_N
};
static const char *const end_names[END_N] = {
	"hlt", "shutdown", "budget", "kicked", "reset", "poweroff",
	"fetch-outside-ram", "unsupported-event-mmio", "unsupported-mmio-limit", "unsupported-v8086",
};

static const struct {
	enum vcpu_error code;
	enum end end;
} guest_errors[] = {
	/* Random jumps and far transfers land beyond the 512 KiB of RAM (in
	 * the modes without paging the test checks that they did). tarn has
	 * no ROM to run there, and KVM cannot run code from MMIO either. */
	{ VCPU_ERR_FETCH, END_ERR_FETCH },
	/* lidt/lgdt/ltr and mov ss/rsp from random values put the IDT, GDT,
	 * TSS or stack outside RAM, and the next exception or interrupt is
	 * delivered through it: not restartable after an exit, and KVM stops
	 * the same way (KVM_INTERNAL_ERROR_DELIVERY_EV). */
	{ VCPU_ERR_EVENT_MMIO, END_ERR_EVENT_MMIO },
	/* An instruction whose device-memory accesses do not fit the replay
	 * log, which holds the largest single instruction (emu_priv.h): only
	 * with descriptor tables in device memory as well. */
	{ VCPU_ERR_MMIO_LIMIT, END_ERR_MMIO_LIMIT },
	/* Virtual-8086 mode is not implemented; no start state sets VM and
	 * iret to it #GPs, so this stays 0 unless that changes. */
	{ VCPU_ERR_V8086, END_ERR_V8086 },
};

struct fuzz {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *ram;
	uint8_t *tmpl; /* fixed tables, copied in before every run */
	struct vcpu_exit exit;
	uint64_t rng;
	atomic_bool stop;
	atomic_ulong run_gen; /* one_run() counts; the kicker watches */
	pthread_mutex_t vcpu_lock; /* the kicker's kick against machine_fresh() */
	pthread_t kicker;
	unsigned long runs, exits, insns;
	unsigned long ends[END_N];
	bool verbose; /* FUZZ_VERBOSE=1: print every exit */
	uint64_t seed; /* SEED: every run seed derives from it */
};

static struct fuzz fz;
static enum fmode cur_mode;
static uint64_t cur_seed;

/* A failure names the program seed and the run, with the commands that
 * replay either. */
static void __attribute__((format(printf, 1, 2), noreturn)) fuzz_fail(const char *fmt, ...)
{
	char what[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (getenv("FUZZ_SEED"))
		fail_msg("%s run seed %#llx: %s\n# replay: FUZZ_MODE=%s FUZZ_SEED=%#llx FUZZ_RUNS=1 %s",
			 mode_names[cur_mode], (unsigned long long)cur_seed, what, mode_names[cur_mode],
			 (unsigned long long)cur_seed, program_invocation_name);
	fail_msg("%s run seed %#llx (seed %llu): %s\n"
		 "# replay: SEED=%llu %s; this run alone: FUZZ_MODE=%s FUZZ_SEED=%#llx FUZZ_RUNS=1 %s",
		 mode_names[cur_mode], (unsigned long long)cur_seed, (unsigned long long)fz.seed, what,
		 (unsigned long long)fz.seed, program_invocation_name, mode_names[cur_mode],
		 (unsigned long long)cur_seed, program_invocation_name);
	abort(); /* fail_msg does not return */
}

#define FCHECK(cond)                                                          \
	do {                                                                  \
		if (!(cond))                                                  \
			fuzz_fail("%s", #cond);                               \
	} while (0)

/* splitmix64's finaliser: run seeds that differ in one bit start far apart. */
static uint64_t mix64(uint64_t x)
{
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
	return x ^ (x >> 31);
}

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
static void check_state(const struct x86_state *st)
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
		fuzz_fail("inconsistent state: rip %#llx rflags %#llx cr0 %#llx cr4 %#llx efer %#llx cs.l %d",
			  (unsigned long long)st->rip, (unsigned long long)st->rflags,
			  (unsigned long long)st->cr0, (unsigned long long)st->cr4,
			  (unsigned long long)st->efer, st->cs.l);
}

/* The class of an error exit; an internal error fails the test here. */
static enum end error_end(const struct vcpu_exit *ex)
{
	struct x86_state st;

	for (size_t i = 0; i < sizeof(guest_errors) / sizeof(guest_errors[0]); i++) {
		if (guest_errors[i].code != ex->error.code)
			continue;
		if (ex->error.code == VCPU_ERR_FETCH) {
			/* Without paging the linear address is the physical
			 * one: the instruction must reach past the end of RAM
			 * (it stopped at its first byte; 15 at most). */
			FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &st) == 0);
			if (!(st.cr0 & X86_CR0_PG) && ((st.cs.base + st.rip) & 0xffffffffULL) + 15 < RAM_SIZE)
				fuzz_fail("fetch outside RAM at linear %#llx, which is RAM: %s",
					  (unsigned long long)((st.cs.base + st.rip) & 0xffffffffULL), ex->error.msg);
		}
		return guest_errors[i].end;
	}
	fuzz_fail("internal error of the emulator (code %d): %s", (int)ex->error.code, ex->error.msg);
}

static void machine_down(void)
{
	emu_cpu_ops.vcpu_destroy(&fz.vcpu);
	emu_cpu_ops.vm_destroy(&fz.vm);
	bus_destroy(&fz.vm.pio);
	bus_destroy(&fz.vm.mmio);
}

/* A new VM and vCPU -- LAPIC, x87/SSE, MSRs, pending events all at power-on
 * -- so that a run depends on its seed alone, and replays alone. */
static int machine_fresh(void)
{
	int ret;

	pthread_mutex_lock(&fz.vcpu_lock);
	if (fz.vcpu.priv)
		machine_down();
	ret = emu_cpu_ops.vm_init(&fz.vm);
	if (!ret)
		ret = emu_cpu_ops.vcpu_init(&fz.vcpu);
	pthread_mutex_unlock(&fz.vcpu_lock);
	return ret;
}

static void one_run(enum fmode mode, uint64_t seed)
{
	struct x86_state st, back;
	uint64_t insns0;
	enum end end = END_BUDGET;

	cur_mode = mode;
	cur_seed = seed;
	atomic_fetch_add(&fz.run_gen, 1);
	fz.rng = mix64(seed) ?: 1; /* xorshift's state must not be 0 */
	FCHECK(machine_fresh() == 0);
	memcpy(fz.ram, fz.tmpl, RAM_SIZE);
	randomise_tables(mode);
	start_state(mode, &st);
	FCHECK(emu_cpu_ops.set_state(&fz.vcpu, &st) == 0);
	insns0 = emu_insn_count(&fz.vcpu);
	emu_set_insn_limit(&fz.vcpu, insns0 + RUN_INSNS);
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
				fuzz_fail("port %#x access of %u bytes", ex->io.port, ex->io.size);
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
			/* RUN_INSNS reached, or the kicker woke a sleeper. */
			done = true;
			end = emu_insn_count(&fz.vcpu) - insns0 >= RUN_INSNS ? END_BUDGET : END_KICKED;
			break;
		case VCPU_EXIT_HLT:
			/* Sometimes wake it with an interrupt and go on (with
			 * IF = 0 nothing would wake it: it would sleep until
			 * the kicker came). */
			FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &st) == 0);
			if ((rnd() & 3) == 0 && (st.rflags & X86_RFLAGS_IF))
				FCHECK(emu_inject_interrupt(&fz.vcpu, (uint8_t)(0x20 + rnd() % 0xe0)) == 0);
			else
				done = true;
			end = END_HLT;
			break;
		case VCPU_EXIT_SHUTDOWN:
			done = true;
			end = END_SHUTDOWN;
			break;
		case VCPU_EXIT_RESET:
			done = true;
			end = END_RESET;
			break;
		case VCPU_EXIT_POWEROFF:
			done = true;
			end = END_POWEROFF;
			break;
		case VCPU_EXIT_ERROR:
			done = true;
			end = error_end(ex);
			break;
		default:
			fuzz_fail("unknown exit reason %d", ex->reason);
		}
		if (done)
			break;
		end = END_BUDGET;
	}
	fz.ends[end]++;
	fz.insns += emu_insn_count(&fz.vcpu) - insns0;
	FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &st) == 0);
	check_state(&st);
	/* The state reads back as it was written. */
	FCHECK(emu_cpu_ops.set_state(&fz.vcpu, &st) == 0);
	FCHECK(emu_cpu_ops.get_state(&fz.vcpu, &back) == 0);
	FCHECK(back.rip == st.rip);
	FCHECK(back.cr3 == st.cr3);
	fz.runs++;
}

/* Running code stops at RUN_INSNS; only a vCPU halted with nothing to wake
 * it (interrupts masked by the TPR, INIT, ...) sleeps on. Kick a run that
 * has lasted KICK_MS, so that a kick never lands in a run that was going to
 * end by itself (which would make it end differently on replay). */
static void *kicker(void *arg)
{
	const struct timespec tick = { 0, 10 * 1000 * 1000 };
	unsigned long seen = 0;
	int ticks = 0;

	while (!atomic_load(&fz.stop)) {
		unsigned long gen;

		nanosleep(&tick, NULL);
		gen = atomic_load(&fz.run_gen);
		if (gen != seen) {
			seen = gen;
			ticks = 0;
		} else if (++ticks * 10 >= KICK_MS) {
			pthread_mutex_lock(&fz.vcpu_lock);
			emu_cpu_ops.kick(&fz.vcpu);
			pthread_mutex_unlock(&fz.vcpu_lock);
			ticks = 0;
		}
	}
	return NULL;
}

static unsigned long long env_ul(const char *name, unsigned long long def)
{
	const char *v = getenv(name);

	return v && *v ? strtoull(v, NULL, 0) : def;
}

/* "hlt N, shutdown N, ..." for ends[], every class (zeros too). */
static void print_ends(const char *what, const unsigned long *ends)
{
	char line[512];
	int n = 0;

	for (int i = 0; i < END_N; i++)
		n += snprintf(line + n, sizeof(line) - (size_t)n, "%s%s %lu", i ? ", " : "", end_names[i], ends[i]);
	print_message("# %s: %s\n", what, line);
}

static void fuzz_mode(enum fmode mode)
{
	unsigned long runs = env_ul("FUZZ_RUNS", 1500), ends[END_N];
	const char *only = getenv("FUZZ_MODE");
	/* Run seeds: FUZZ_SEED's, else a stream of SEED's per mode. */
	uint64_t seed0 = getenv("FUZZ_SEED") ? env_ul("FUZZ_SEED", 0) : mix64(fz.seed * F_NMODES + mode);
	char what[64];

	if (only && *only && strcmp(only, mode_names[mode]))
		skip();
	memcpy(ends, fz.ends, sizeof(ends));
	for (unsigned long i = 0; i < runs; i++)
		one_run(mode, seed0 + i);
	for (int i = 0; i < END_N; i++)
		ends[i] = fz.ends[i] - ends[i]; /* this mode's */
	snprintf(what, sizeof(what), "%s: %lu runs, ends", mode_names[mode], runs);
	print_ends(what, ends);
}

static void t_real(void **s) { fuzz_mode(F_REAL); }
static void t_prot16(void **s) { fuzz_mode(F_PROT16); }
static void t_prot32(void **s) { fuzz_mode(F_PROT32); }
static void t_paging32(void **s) { fuzz_mode(F_PAGING32); }
static void t_user32(void **s) { fuzz_mode(F_USER32); }
static void t_compat(void **s) { fuzz_mode(F_COMPAT); }
static void t_long64(void **s) { fuzz_mode(F_LONG); }
static void t_user64(void **s) { fuzz_mode(F_USER64); }

static uint64_t start_seed; /* main() draws it before setup() */

static int setup(void **s)
{
	memset(&fz, 0, sizeof(fz));
	fz.ram = aligned_alloc(4096, RAM_SIZE);
	fz.tmpl = aligned_alloc(4096, RAM_SIZE);
	if (!fz.ram || !fz.tmpl)
		return -1;
	fz.rng = 1;
	fz.seed = start_seed;
	fz.verbose = env_ul("FUZZ_VERBOSE", 0) != 0;
	log_threshold = fz.verbose ? LOG_DEBUG : LOG_ERR; /* guest-triggered warnings by the thousand */
	build_template(fz.tmpl);
	memcpy(fz.ram, fz.tmpl, RAM_SIZE);
	if (gm_init_fake(&fz.vm.mem, 0, fz.ram, RAM_SIZE))
		return -1;
	fz.vm.cpu = &emu_cpu_ops;
	fz.vm.nr_vcpus = 1;
	fz.vcpu.vm = &fz.vm;
	pthread_mutex_init(&fz.vcpu_lock, NULL);
	if (machine_fresh())
		return -1;
	atomic_store(&fz.stop, false);
	return pthread_create(&fz.kicker, NULL, kicker, NULL) ? -1 : 0;
}

static int teardown(void **s)
{
	atomic_store(&fz.stop, true);
	pthread_join(fz.kicker, NULL);
	print_message("# %lu runs, %lu exits, %lu instructions (seed %llu)\n", fz.runs, fz.exits, fz.insns,
		      (unsigned long long)fz.seed);
	print_ends("ends", fz.ends);
	machine_down();
	pthread_mutex_destroy(&fz.vcpu_lock);
	free(fz.ram);
	free(fz.tmpl);
	return 0;
}

int main(void)
{
	uint32_t r;

	/* A new seed each start unless SEED names one; 32 bits, like the
	 * libFuzzer harnesses' -seed, so one SEED serves make check. */
	if (getenv("SEED") && *getenv("SEED"))
		start_seed = env_ul("SEED", 0);
	else if (getrandom(&r, sizeof(r), 0) == sizeof(r))
		start_seed = r;
	else
		start_seed = (uint64_t)time(NULL) ^ (uint64_t)getpid();
	printf("# seed: %llu\n", (unsigned long long)start_seed);
	if (getenv("FUZZ_SEED"))
		printf("# FUZZ_SEED=%s: first run seed of every mode\n", getenv("FUZZ_SEED"));
	fflush(stdout);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_real),     cmocka_unit_test(t_prot16), cmocka_unit_test(t_prot32),
		cmocka_unit_test(t_paging32), cmocka_unit_test(t_user32), cmocka_unit_test(t_compat),
		cmocka_unit_test(t_long64),
		cmocka_unit_test(t_user64),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
