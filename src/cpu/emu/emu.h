/* The software x86-64 backend (cpu/emu): what code outside the emulator may
 * call besides the cpu_ops table. */
#ifndef TARN_CPU_EMU_H
#define TARN_CPU_EMU_H

#include <stdint.h>

struct vcpu;

/* Make an external (maskable) interrupt with this vector pending on the
 * vCPU. It is delivered at an instruction boundary once RFLAGS.IF = 1 and
 * the vCPU is not in an interrupt shadow (after sti, mov ss, pop ss); a
 * halted vCPU wakes for it. Callable from any thread: the future LAPIC
 * calls this when it accepts an interrupt for this vCPU. Vectors 0-15 are
 * rejected with -EINVAL. */
int emu_inject_interrupt(struct vcpu *vcpu, uint8_t vector);

/* Instructions retired by this vCPU since vcpu_init (benchmarks, tests). */
uint64_t emu_insn_count(const struct vcpu *vcpu);

#endif
