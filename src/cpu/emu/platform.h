/* cpu/emu: the PC's interrupt controllers and timers for the emulator
 * backend (under KVM the kernel has its own). One per VM: the APIC bus with
 * a LAPIC per vCPU, the IOAPIC, the 8259 pair and the 8254 PIT, wired as
 * the MADT describes them (arch/x86/acpi.c). */
#ifndef TARN_CPU_EMU_PLATFORM_H
#define TARN_CPU_EMU_PLATFORM_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct emu_cpu;

/* Create the devices, register their ranges on vm's buses and set
 * vm->cpu_priv. 0 or -errno. */
int emu_platform_init(struct vm *vm) __attribute__((warn_unused_result));
void emu_platform_destroy(struct vm *vm);
/* cpu_ops.vm_pause: the PIT's host timer follows the guest's clock. */
int emu_platform_pause(struct vm *vm, bool pause);
/* cpu_ops.platform_get / platform_set. */
struct platform_state;
int emu_platform_get(struct vm *vm, struct platform_state *st);
int emu_platform_set(struct vm *vm, const struct platform_state *st) __attribute__((warn_unused_result));

/* Give c a LAPIC on the VM's APIC bus (APIC ID = vCPU id; vCPU 0 is the
 * BSP). vCPUs are added in order. 0 or -errno. */
int emu_platform_add_cpu(struct vm *vm, struct emu_cpu *c) __attribute__((warn_unused_result));
void emu_platform_remove_cpu(struct vm *vm, struct emu_cpu *c);

/* cpu_ops.irq_line: drive GSI gsi (IOAPIC pin; ISA IRQ on the PIC too). */
int emu_platform_irq_line(struct vm *vm, unsigned gsi, int level);
/* cpu_ops.signal_msi: an MSI write turned into an APIC bus message. */
int emu_platform_signal_msi(struct vm *vm, uint64_t addr, uint32_t data);

#endif
