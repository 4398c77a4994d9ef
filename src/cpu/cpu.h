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
struct platform_state;
struct cpuid_model;

enum vcpu_exit_reason {
	VCPU_EXIT_IO,	    /* port I/O: handled through the PIO bus */
	VCPU_EXIT_MMIO,	    /* access outside RAM: handled through the MMIO bus */
	VCPU_EXIT_HLT,	    /* halted; the next vcpu_run waits in the backend for a wake-up */
	VCPU_EXIT_INTR,	    /* kicked: look at the vCPU's command */
	VCPU_EXIT_SHUTDOWN, /* triple fault */
	VCPU_EXIT_RESET,    /* guest asked for a reset (backend saw it) */
	VCPU_EXIT_POWEROFF, /* guest asked for power-off (backend saw it) */
	VCPU_EXIT_ERROR,    /* backend cannot continue; see error.code and error.msg */
};

/* Why a backend could not continue (VCPU_EXIT_ERROR): a stable code, the
 * message beside it says the details. All but VCPU_ERR_INTERNAL are ends the
 * guest brought about by asking for something the backend does not do; KVM
 * refuses the same things (its emulation failures and
 * KVM_INTERNAL_ERROR_DELIVERY_EV). Tests treat VCPU_ERR_INTERNAL, and only
 * it, as a bug in tarn. */
enum vcpu_error {
	VCPU_ERR_INTERNAL,    /* the backend broke one of its own invariants */
	VCPU_ERR_HOST,	      /* the host's KVM failed (entry failure, its own internal error) */
	VCPU_ERR_FETCH,	      /* instruction fetch from outside RAM (device memory or nothing) */
	VCPU_ERR_EVENT_MMIO,  /* exception or interrupt delivery touches device memory or
			       * nothing: an IDT, GDT, TSS or stack outside RAM */
	VCPU_ERR_MMIO_LIMIT,  /* one instruction touches more device memory than the
			       * backend can replay (emu: 64 reads, 64 writes) */
	VCPU_ERR_V8086,	      /* virtual-8086 mode (emu: not implemented) */
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
			/* The backend could not keep the registers of the
			 * crash (KVM on AMD re-initialises the vCPU). */
			bool state_lost;
		} shutdown;
		struct {
			enum vcpu_error code;
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
	/* Set the vCPU's CPUID table: the backend's own (model NULL: KVM
	 * the host's, the emulator its model), or model (a snapshot's, a
	 * CPU template), -EOPNOTSUPP when it has a feature the backend cannot
	 * give. The policy (arch/x86/cpuid.h) then sets the vCPU's topology
	 * fields. get_cpuid reads back what was set. */
	int (*set_cpuid)(struct vcpu *vcpu, const struct cpuid_model *model);
	int (*get_cpuid)(struct vcpu *vcpu, struct cpuid_model *model);
	/* Optional: while assigned, a guest write of exactly len bytes to
	 * gpa does not exit: the backend signals eventfd fd instead and the
	 * vCPU goes on (KVM_IOEVENTFD). Other writes there exit as usual. */
	int (*ioeventfd)(struct vm *vm, uint64_t gpa, unsigned len, int fd, bool assign);
	/* Optional: each write to eventfd fd sends the MSI (addr, data)
	 * without a system call into the VM (KVM_IRQFD on a GSI routed to the
	 * MSI). *gsi < 0: bind fd to a new route, set *gsi; else re-target
	 * *gsi. msi_irqfd_release undoes the binding. */
	int (*msi_irqfd)(struct vm *vm, int *gsi, int fd, uint64_t addr, uint32_t data);
	void (*msi_irqfd_release)(struct vm *vm, int gsi, int fd);
	/* Optional: the VM is being paused (every vCPU parked, devices quiet)
	 * or resumed (before any vCPU runs again): keep the guest's clocks
	 * from moving meanwhile. 0 or -errno. */
	int (*vm_pause)(struct vm *vm, bool pause);
	/* Snapshots, while the VM is paused: the interrupt controllers, the
	 * PIT and the guest's clock (hw/platform_state.h). set validates
	 * (-EINVAL) and leaves the clocks as a pause would, for the resume
	 * that follows; call it after every vCPU's set_state. */
	int (*platform_get)(struct vm *vm, struct platform_state *st);
	int (*platform_set)(struct vm *vm, const struct platform_state *st);
	/* Optional, with vm_config.track_dirty or after dirty_log_start: OR into bits (a bit per page
	 * of vm->mem's reservation, as guest_mem's) the pages the guest's
	 * vCPUs wrote since the last call, and clear them. Backends whose
	 * vCPUs write through guest_mem (the emulator) mark them there and
	 * leave this NULL. 0 or -errno. */
	int (*dirty_log)(struct vm *vm, uint64_t *bits);
	/* Optional, with dirty_log: start logging on a VM built without
	 * vm_config.track_dirty (a migration), from any thread. 0 or -errno. */
	int (*dirty_log_start)(struct vm *vm);
};

extern const struct cpu_ops kvm_cpu_ops;
extern const struct cpu_ops emu_cpu_ops;

/* What kind of KVM /dev/kvm is (ask after kvm_cpu_ops.probe succeeded):
 *   KVM_HARDWARE  this host's own VT-x/AMD-V
 *   KVM_NESTED    this host is itself a VM (CPUID's hypervisor bit): the
 *                 KVM virtualizes on its hypervisor's nested VT-x/SVM
 *   KVM_NESTED_TCG  ... whose hypervisor is QEMU's software emulator
 *                 (signature "TCGTCGTCGTCG"): its SVM and MMU are QEMU's
 *                 code, with QEMU's gaps (tests/nested/bed.sh makes one)
 *   KVM_PVM       PVM, a software KVM (module kvm_pvm) that runs guests in
 *                 ring 3 under page-table isolation: it runs only kernels
 *                 built as PVM guests, and emulates everything outside
 *                 64-bit mode with KVM's instruction emulator.
 * The one probe the backend, `tarn probe` and the tests share. */
enum kvm_flavour { KVM_HARDWARE, KVM_NESTED, KVM_NESTED_TCG, KVM_PVM };
enum kvm_flavour kvm_flavour(void);
const char *kvm_flavour_name(enum kvm_flavour f);

/* "kvm", "emu" or "auto" (KVM unless /dev/kvm is unusable or is PVM, on
 * which an ordinary kernel cannot run). Returns NULL and fills why when
 * none fits. */
const struct cpu_ops *cpu_select(const char *name, char *why, size_t why_len);

#endif
