/* The vCPU backend interface. cpu/kvm and cpu/emu implement the same small
 * table; everything above it (boot, devices, bus, snapshots) is shared.
 *
 * A vCPU runs until an exit. For port I/O and MMIO exits, exit->io.data /
 * exit->mmio.data point into a buffer the backend owns: for a read the core
 * fills it before the next vcpu_run, which completes the instruction. */
#ifndef TARN_CPU_H
#define TARN_CPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arch/x86/cpu_state.h"

struct vm;
struct vcpu;

enum vcpu_exit_reason {
	VCPU_EXIT_IO,	    /* port I/O: handled through the PIO bus */
	VCPU_EXIT_MMIO,	    /* access outside RAM: handled through the MMIO bus */
	VCPU_EXIT_HLT,	    /* halted; the next vcpu_run waits in the backend for a wake-up */
	VCPU_EXIT_INTR,	    /* kicked: look at the vCPU's command */
	VCPU_EXIT_SHUTDOWN, /* triple fault */
	VCPU_EXIT_RESET,    /* guest asked for a reset (backend saw it) */
	VCPU_EXIT_POWEROFF, /* guest asked for power-off (backend saw it) */
	VCPU_EXIT_ERROR,    /* backend cannot continue; see error.msg */
};

struct vcpu_exit {
	enum vcpu_exit_reason reason;
	union {
		struct {
			uint16_t port;
			uint8_t size;  /* 1, 2 or 4 */
			bool write;
			uint32_t count; /* > 1 for rep ins/outs: count items of size */
			uint8_t *data;  /* count * size bytes */
		} io;
		struct {
			uint64_t gpa;
			uint8_t len;
			bool write;
			uint8_t *data;
		} mmio;
		struct {
			char msg[128];
		} error;
	};
};

struct cpu_ops {
	const char *name;
	/* 0 when the backend can run on this host, else -errno with a reason. */
	int (*probe)(char *why, size_t why_len);
	/* Create the VM-wide backend state; guest memory is already laid out. */
	int (*vm_init)(struct vm *vm);
	void (*vm_destroy)(struct vm *vm);
	int (*vcpu_init)(struct vcpu *vcpu);
	void (*vcpu_destroy)(struct vcpu *vcpu);
	/* Run from the vCPU's own thread. Returns 0 with *exit filled, or -errno. */
	int (*vcpu_run)(struct vcpu *vcpu, struct vcpu_exit *exit);
	int (*get_state)(struct vcpu *vcpu, struct x86_state *st);
	int (*set_state)(struct vcpu *vcpu, const struct x86_state *st);
	/* Make vcpu_run return VCPU_EXIT_INTR soon; callable from any thread. */
	void (*kick)(struct vcpu *vcpu);
	/* Drive an interrupt line (GSI) of the VM's interrupt controller. */
	int (*irq_line)(struct vm *vm, unsigned gsi, int level);
	/* Optional: deliver one MSI (x86 address/data format, SDM 11.11). */
	int (*signal_msi)(struct vm *vm, uint64_t addr, uint32_t data);
	/* Set the vCPU's CPUID table (the policy decides what it holds). */
	int (*set_cpuid)(struct vcpu *vcpu);
};

extern const struct cpu_ops kvm_cpu_ops;
extern const struct cpu_ops emu_cpu_ops;

/* "kvm", "emu" or "auto". Returns NULL and fills why when none fits. */
const struct cpu_ops *cpu_select(const char *name, char *why, size_t why_len);

#endif
