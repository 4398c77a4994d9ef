/* What g_state loads and runner.c's check_state expects: values made from
 * a round number (1: the guest's, 2: the host's set_state) and a slot. */
#ifndef TARN_GUEST_STATE_H
#define TARN_GUEST_STATE_H

#include <stdint.h>

#define STATE_MXCSR 0x1f80 /* all exceptions masked (the reset value) */

/* The LAPIC as g_state programs it: enabled (spurious vector 0xff), TPR
 * 0x20, the timer masked and one-shot with vector 0xec, counting down from
 * 2^32 - 1 at 1/128 of the 1 GHz bus (nine minutes). */
#define STATE_APIC_BASE 0xfee00000UL
#define STATE_APIC_SVR 0x1ff
#define STATE_APIC_TPR 0x20
#define STATE_APIC_DCR 0xa
#define STATE_APIC_LVTT 0x100ec
#define STATE_APIC_TMICT 0xffffffffu

static inline uint64_t state_pattern(unsigned round, unsigned slot)
{
	return 0x0123456789abcdefULL * (round * 64 + slot + 1) ^ ((uint64_t)slot << 56);
}

/* A canonical kernel-half address. */
static inline uint64_t state_addr(unsigned round, unsigned slot)
{
	return 0xffffffff80000000ULL | (state_pattern(round, slot) & 0x7ffff000ULL);
}

/* MSRs the guest writes: index, and which kind of value it takes. */
enum { MSR_ADDR, MSR_CS, MSR_32 };
static const struct {
	uint32_t index;
	int kind;
} state_msrs[] = {
	{ 0x174, MSR_CS },	    /* SYSENTER_CS */
	{ 0x175, MSR_32 },	    /* SYSENTER_ESP: 32 bits on AMD (KVM on SVM */
	{ 0x176, MSR_32 },	    /* SYSENTER_EIP:  keeps no more for an AMD guest) */
	{ 0xc0000081, MSR_32 },	    /* STAR: its high half (selectors) */
	{ 0xc0000082, MSR_ADDR },   /* LSTAR */
	{ 0xc0000083, MSR_ADDR },   /* CSTAR */
	{ 0xc0000084, MSR_32 },	    /* SFMASK */
	{ 0xc0000102, MSR_ADDR },   /* KERNEL_GS_BASE */
};
#define STATE_NR_MSRS (sizeof(state_msrs) / sizeof(state_msrs[0]))

static inline uint64_t state_msr_value(unsigned round, unsigned i)
{
	switch (state_msrs[i].kind) {
	case MSR_CS: return (state_pattern(round, 40 + i) & 0xfff8);
	case MSR_32: return (uint32_t)state_pattern(round, 40 + i) & 0x7fffffff;
	default: return state_addr(round, 40 + i);
	}
}

#endif
