/* The software x86-64 backend (cpu/emu): what code outside the emulator may
 * call besides the cpu_ops table. */
#ifndef TARN_CPU_EMU_H
#define TARN_CPU_EMU_H

#include <stdint.h>

struct vcpu;

/* Make a fixed, edge-triggered interrupt with this vector pending in the
 * vCPU's LAPIC IRR, as if the LAPIC had accepted it (even while software-
 * disabled: see lapic_set_irr). It is delivered at an instruction boundary
 * once RFLAGS.IF = 1, the vCPU is not in an interrupt shadow (after sti,
 * mov ss, pop ss) and its priority beats the LAPIC's PPR; it then sits in
 * ISR until the guest writes EOI. A halted vCPU wakes for it. Callable
 * from any thread (tests; devices go through cpu_ops.irq_line). Vectors
 * 0-15 are rejected with -EINVAL. */
int emu_inject_interrupt(struct vcpu *vcpu, uint8_t vector);

/* Instructions retired by this vCPU since vcpu_init (benchmarks, tests). */
uint64_t emu_insn_count(const struct vcpu *vcpu);

/* The SSE registers and MXCSR, for tests that compare them with the host's:
 * emu_get_sse reads them; emu_set_sse writes them and resets the x87 unit
 * as fninit does, its registers zeroed. MXCSR bits outside the MXCSR mask
 * are dropped. */
void emu_get_sse(const struct vcpu *vcpu, uint64_t xmm[16][2], uint32_t *mxcsr);
void emu_set_sse(struct vcpu *vcpu, const uint64_t xmm[16][2], uint32_t mxcsr);

/* Tests: vcpu_run returns VCPU_EXIT_INTR once emu_insn_count() has reached
 * count, at the same instruction each time (a kick lands wherever it
 * lands). UINT64_MAX, the default, sets no limit. */
void emu_set_insn_limit(struct vcpu *vcpu, uint64_t count);

#endif
