/* Differential testing of the emulator (src/cpu/emu) against the host CPU.
 *
 * A case is a short sequence of random user-level instructions (gen.c), or
 * one random instruction from the length check, with random registers,
 * flags and data. It runs natively in a forked, seccomp-strict child
 * (native.c) and in the emulator at CPL 3 (emu_run.c), both with the same
 * pages at the same fixed linear addresses, mapped the same way; then how
 * it ended (completed, or which exception at which instruction, with the
 * error code and for #PF the faulting address), registers, the defined
 * flags and the data pages are compared (difftest.c). */
#ifndef TARN_DIFFTEST_H
#define TARN_DIFFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed linear addresses, the same in the native child and the guest, and
 * mapped the same way on both sides:
 *   DT_CODE          code, read/write/execute
 *   DT_DATA - 2 pages  not present (PROT_NONE)
 *   DT_RO            read-only, fixed content (dt_ro_fill): loads work,
 *                    stores take #PF with P=1 W=1
 *   DT_DATA          two read/write pages (not executable): accesses may
 *                    straddle them
 *   DT_DATA + 2 pages  not present
 *   DT_CTL           the harness's control page
 * so an access running off either edge of the data area takes #PF. */
#define DT_CODE 0x10000000ULL
#define DT_DATA 0x10010000ULL
#define DT_CTL 0x10020000ULL
#define DT_PAGE 4096u
#define DT_DATA_SIZE (2 * DT_PAGE)
#define DT_RO (DT_DATA - DT_PAGE)
#define DT_GUARD_LO (DT_DATA - 2 * DT_PAGE)
#define DT_GUARD_HI (DT_DATA + DT_DATA_SIZE)
#define DT_CODE_MAX 512
/* Segment bases: fs: and gs: operands are relative to these on both sides. */
#define DT_FS_BASE (DT_DATA + DT_PAGE)
#define DT_GS_BASE DT_DATA

/* Control page layout: slots addressed absolutely by the native stubs. */
#define DT_CTL_RET (DT_CTL + 0x00)	/* where the case's final jmp goes */
#define DT_CTL_HOSTRSP (DT_CTL + 0x08)	/* native: harness stack pointer */
#define DT_CTL_ENTRY (DT_CTL + 0x10)	/* native: DT_CODE, for the first jmp */
#define DT_CTL_FLAGS (DT_CTL + 0x18)	/* RFLAGS in, then out */
#define DT_CTL_REGS (DT_CTL + 0x20)	/* 16 GPRs in, then out */
#define DT_CTL_MXCSR (DT_CTL + 0xa0)	/* MXCSR in, then out */
#define DT_CTL_XMM (DT_CTL + 0x100)	/* 16 XMM registers in, then out */

/* RFLAGS bits compared (when defined): CF PF AF ZF SF OF DF AC. */
#define DT_AC 0x40000u
#define DT_FLAGS (0xcd5u | DT_AC)

#define DT_INSN_MAX 48

struct dt_case {
	uint8_t code[DT_CODE_MAX];
	unsigned code_len;
	unsigned ninsn; /* instructions, setup included, and the final jmp */
	uint16_t ioff[DT_INSN_MAX];   /* where each starts in code */
	uint64_t opaque;	      /* bit i: instruction i may be no valid
				       * instruction (made to #UD): capstone
				       * need not decode it */
	uint32_t iundef[DT_INSN_MAX]; /* flags undefined before it */
	uint64_t regs[16];
	uint64_t flags;
	uint64_t xmm[16][2];
	uint32_t mxcsr;
	uint32_t undef; /* RFLAGS bits undefined at the end of the sequence */
	unsigned tags;	/* DT_TAG_*: what the generator aimed at (for the tally) */
	/* Set by the caller where the CPU's behaviour is its own choice (see
	 * where they are set): a #PF address anywhere in [x - cr2_span + 1,
	 * x + cr2_span - 1) of the other side's matches; data bytes
	 * [skip_off, skip_off + skip_len) are not compared. */
	uint32_t cr2_span;
	bool cr2_wrap32; /* 32-bit addressing: the area wraps at 4 GiB */
	uint16_t skip_off, skip_len;
	uint8_t data[DT_DATA_SIZE];
};

/* An access straddles the two data pages; one runs into the read-only or
 * a not-present page; the sequence was made to fault (privileged,
 * invalid, non-canonical, misaligned). */
#define DT_TAG_SPLIT 1u
#define DT_TAG_EDGE 2u
#define DT_TAG_FAULT 4u

/* How a run ended: the sequence completed, or an exception stopped it at
 * rip (the faulting instruction; for traps such as #BP the next one), or
 * the run went wrong in a way that is not an exception of the sequence
 * (the native child died, the emulator exited or looped). */
enum dt_end { DT_OK, DT_FAULT, DT_CRASH };

/* Vectors that push an error code (compared as well). */
#define DT_VEC_HAS_ERR(v) ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21)

struct dt_result {
	int end;
	int vec;       /* DT_FAULT: the vector (host: the signal's trap number) */
	uint32_t err;  /* its error code, where it has one */
	uint64_t addr; /* #PF: the faulting linear address (CR2; si_addr) */
	uint64_t rip;
	bool ro_written; /* the emulator changed the read-only page */
	uint64_t regs[16];
	uint64_t flags;
	uint64_t xmm[16][2];
	uint32_t mxcsr;
	uint8_t data[DT_DATA_SIZE];
};

/* gen.c: optional instructions to generate, when both the emulator's
 * CPUID and the host's advertise them. */
#define DT_F_POPCNT 1u
#define DT_F_TZCNT 2u
#define DT_F_LZCNT 4u
/* What the emulator is known to get wrong, so only generated on request:
 * single-step traps (RFLAGS.TF) and alignment checks (#AC), which it does
 * not implement; unmasked SSE overflow and underflow exceptions, whose
 * MXCSR flags it does not get right. */
#define DT_F_GAPS 8u
extern unsigned dt_features;

/* Vectors n for which the host's "int n" at CPL 3 does not do what the
 * architecture and Linux's IDT say (#GP, error code n * 8 + 2, at the
 * instruction): a host kernel may own a gate of its own (seen: vector
 * 0x17 on a PVM host, #GP(0) after the instruction). difftest.c probes
 * them at start; gen.c does not generate them. */
extern uint8_t dt_int_quirks[32];
static inline bool dt_int_quirk(unsigned n)
{
	return dt_int_quirks[n / 8] >> (n % 8) & 1;
}

/* gen.c: fill *c with the case generated from seed. */
void dt_gen(struct dt_case *c, uint64_t seed);
/* gen.c: fill *c with one given instruction, then the final jmp, with
 * random data, flags and registers from seed (registers point into the
 * data area, or are small). Undefined flags are the caller's to set. */
void dt_gen_insn(struct dt_case *c, const uint8_t *insn, size_t len, uint64_t seed);
/* gen.c: the read-only page's content (DT_PAGE bytes), the same for all. */
void dt_ro_fill(uint8_t *p);
/* gen.c: the generator's random number source (splitmix64 on *s). */
uint64_t dt_rand(uint64_t *s);

/* native.c: run cases[0..n) in a sandboxed child; res[i] for each. A case
 * that kills the child gets DT_CRASH; later cases run in a new child.
 * Returns 0, or -1 when the sandbox cannot be set up (reason in *why). */
int dt_native_run(const struct dt_case *cases, struct dt_result *res, size_t n, const char **why);
/* The same in two steps, so the caller can work while the child runs;
 * cases must stay untouched until dt_native_wait returns. On failure,
 * res[0..*ran) still hold the results of the cases that ran. */
struct dt_native;
struct dt_native *dt_native_start(const struct dt_case *cases, size_t n, const char **why);
int dt_native_wait(struct dt_native *nt, struct dt_result *res, size_t *ran, const char **why);

/* emu_run.c */
struct dt_emu;
struct dt_emu *dt_emu_new(void);
void dt_emu_free(struct dt_emu *e);
void dt_emu_run(struct dt_emu *e, const struct dt_case *c, struct dt_result *r);
/* CPUID leaf, subleaf as the guest sees it: out = eax, ebx, ecx, edx. */
void dt_emu_cpuid(struct dt_emu *e, uint32_t leaf, uint32_t sub, uint32_t out[4]);
/* Run code[0..n), one instruction of length n per the reference decoder,
 * in the emulator with all canonical addresses mapped: its length as the
 * emulator decodes it; DT_LEN_OTHER when that is not n but not known;
 * DT_LEN_UNKNOWN when the instruction did not complete (fault, exit). */
#define DT_LEN_UNKNOWN (-1)
#define DT_LEN_OTHER (-2)
int dt_emu_insn_len(struct dt_emu *e, const uint8_t *code, size_t n, uint64_t seed);

#endif
