/* vCPU threads: each runs its backend until an exit and serves port/MMIO
 * exits synchronously through the buses. */
#ifndef TARN_VCPU_H
#define TARN_VCPU_H

struct vcpu;

/* Start the vCPU's thread (vm_run does this). */
void vcpu_start(struct vcpu *vcpu);

#endif
