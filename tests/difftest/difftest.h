/* Differential testing of the emulator (src/cpu/emu) against the host CPU.
 *
 * A case is a short sequence of random user-level integer instructions
 * (gen.c) with random registers, flags and data. It runs natively in a
 * forked, seccomp-strict child (native.c) and in the emulator (emu_run.c),
 * both with the code, data and control pages at the same fixed linear
 * addresses; then registers, the defined flags and the data page are
 * compared (difftest.c). */
#ifndef TARN_DIFFTEST_H
#define TARN_DIFFTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Fixed linear addresses, the same in the native child and the guest. */
#define DT_CODE 0x10000000ULL
#define DT_DATA 0x10010000ULL
#define DT_CTL 0x10020000ULL
#define DT_PAGE 4096u
#define DT_DATA_SIZE (2 * DT_PAGE) /* two pages: accesses may straddle them */
#define DT_CODE_MAX 512

/* Control page layout: slots addressed absolutely by the native stubs. */
#define DT_CTL_RET (DT_CTL + 0x00)	/* where the case's final jmp goes */
#define DT_CTL_HOSTRSP (DT_CTL + 0x08)	/* native: harness stack pointer */
#define DT_CTL_ENTRY (DT_CTL + 0x10)	/* native: DT_CODE, for the first jmp */
#define DT_CTL_FLAGS (DT_CTL + 0x18)	/* RFLAGS in, then out */
#define DT_CTL_REGS (DT_CTL + 0x20)	/* 16 GPRs in, then out */

/* RFLAGS bits compared (when defined): CF PF AF ZF SF OF DF. */
#define DT_FLAGS 0xcd5u

#define DT_INSN_MAX 48

struct dt_case {
	uint8_t code[DT_CODE_MAX];
	unsigned code_len;
	unsigned ninsn; /* instructions, setup included, and the final jmp */
	uint16_t ioff[DT_INSN_MAX];   /* where each starts in code */
	uint32_t iundef[DT_INSN_MAX]; /* flags undefined before it */
	uint64_t regs[16];
	uint64_t flags;
	uint32_t undef; /* RFLAGS bits undefined at the end of the sequence */
	uint8_t data[DT_DATA_SIZE];
};

/* Outcome of a run: either the sequence completed (fault = 0) or it
 * faulted with a class of exception at rip. */
enum dt_fault { DT_OK, DT_DE, DT_UD, DT_GP, DT_OTHER, DT_CRASH };

struct dt_result {
	int fault;
	uint64_t rip; /* faulting instruction, when fault */
	uint64_t regs[16];
	uint64_t flags;
	uint8_t data[DT_DATA_SIZE];
};

/* gen.c: optional instructions to generate, when both the emulator's
 * CPUID and the host's advertise them. */
#define DT_F_POPCNT 1u
#define DT_F_TZCNT 2u
#define DT_F_LZCNT 4u
extern unsigned dt_features;

/* gen.c: fill *c with the case generated from seed. */
void dt_gen(struct dt_case *c, uint64_t seed);
/* gen.c: the generator's random number source (splitmix64 on *s). */
uint64_t dt_rand(uint64_t *s);

/* native.c: run cases[0..n) in a sandboxed child; res[i] for each. A case
 * that kills the child gets DT_CRASH; later cases run in a new child.
 * Returns 0, or -1 when the sandbox cannot be set up (reason in *why). */
int dt_native_run(const struct dt_case *cases, struct dt_result *res, size_t n, const char **why);
/* The same in two steps, so the caller can work while the child runs;
 * cases must stay untouched until dt_native_wait returns. */
struct dt_native;
struct dt_native *dt_native_start(const struct dt_case *cases, size_t n, const char **why);
int dt_native_wait(struct dt_native *nt, struct dt_result *res, const char **why);

/* emu_run.c */
struct dt_emu;
struct dt_emu *dt_emu_new(void);
void dt_emu_free(struct dt_emu *e);
void dt_emu_run(struct dt_emu *e, const struct dt_case *c, struct dt_result *r);
/* CPUID leaf (subleaf 0) as the guest sees it: out = eax, ebx, ecx, edx. */
void dt_emu_cpuid(struct dt_emu *e, uint32_t leaf, uint32_t out[4]);
/* Run code[0..n), one instruction of length n per the reference decoder,
 * in the emulator with all canonical addresses mapped: its length as the
 * emulator decodes it; DT_LEN_OTHER when that is not n but not known;
 * DT_LEN_UNKNOWN when the instruction did not complete (fault, exit). */
#define DT_LEN_UNKNOWN (-1)
#define DT_LEN_OTHER (-2)
int dt_emu_insn_len(struct dt_emu *e, const uint8_t *code, size_t n, uint64_t seed);

#endif
