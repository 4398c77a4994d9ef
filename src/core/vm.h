/* A VM and its lifecycle: guest memory, the two buses, the platform devices,
 * the vCPU threads, and how it ends. */
#ifndef TARN_VM_H
#define TARN_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/devctx.h"
#include "cpu/cpu.h"
#include "mem/gm.h"
#include "snapshot/snapshot.h"

#define VM_MAX_CPUS 255 /* xAPIC IDs 0..254 in the MADT */
#define VM_MAX_DISKS 8
#define VM_MAX_NETS 8

struct vm_config {
	const char *kernel;
	const char *initrd;
	const char *cmdline;
	uint64_t mem_size;
	int nr_cpus;
	const char *backend; /* "kvm", "emu", "auto" */
	/* bzImage: run the kernel's own decompressor in the guest instead of
	 * unpacking the payload on the host (arch/x86/kpayload.h). */
	bool guest_unpack;
	int console_in;	     /* fd the guest's serial input comes from, -1 for none */
	int console_out;     /* fd the guest's serial output goes to */
	/* Micro-guests: start every vCPU at the kernel's entry in the boot
	 * state instead of leaving APs waiting for INIT/SIPI. */
	bool all_cpus_at_entry;
	/* virtio devices (virtio/devices.h), each as its option string */
	int nr_rng; /* virtio-rng devices (--rng: one) */
	const char *disks[VM_MAX_DISKS]; /* --disk */
	int nr_disks;
	const char *nets[VM_MAX_NETS]; /* --net */
	int nr_nets;
	const char *vconsole; /* --vconsole: pty or file=PATH, NULL for none */
	/* KVM: deliver virtio kicks through ioeventfds to the devices' I/O
	 * threads (virtio_pci.h). Off by default: see README "Devices". */
	bool ioeventfd;
	/* Build the VM from this snapshot (snap_open) instead of booting a
	 * kernel: memory mapped from its file (read in whole with
	 * restore_eager), every component's state applied, left paused. */
	const struct snap_image *restore;
	bool restore_eager;
	/* A migration's destination (migrate/migrate.h): restore holds only
	 * what the VM is (snap_open_state, no memory file); guest memory and
	 * the state arrive later (vm_restore_state), and the disks are locked
	 * at the handover (vm_handover). */
	bool incoming;
	/* The CPU the guest sees: NULL the backend's own (KVM: the host's);
	 * "portable" the emulator's model on either backend, so that its
	 * snapshots restore under the other (vm.cpu_template). A restore
	 * takes the snapshot's table instead. */
	const char *cpu_template;
	/* Track the pages written between snapshots, so that a diff snapshot
	 * saves only those (vm.track_dirty_pages; KVM's dirty log, the
	 * emulator's and the devices' writes through guest_mem). */
	bool track_dirty;
};

/* The exits a vCPU's thread handled, by kind (vm_metrics). */
enum { VCPU_EXITS_IO_IN, VCPU_EXITS_IO_OUT, VCPU_EXITS_MMIO_READ, VCPU_EXITS_MMIO_WRITE, VCPU_EXITS_NR };

struct vcpu {
	struct vm *vm;
	int id;
	pthread_t thread;
	bool thread_started;
	void *priv; /* backend state */
	struct vcpu_exit exit;
	uint64_t exits[VCPU_EXITS_NR]; /* relaxed atomics: its thread writes them */
	atomic_bool throttle_due; /* vm_throttle_tick: sleep at the next boundary */
};

struct uart8250;
struct pci_root;
struct vm_devices;
struct evloop;

struct vm {
	struct vm_config cfg;
	struct guest_mem mem;
	struct bus pio;
	struct bus mmio;
	const struct cpu_ops *cpu;
	void *cpu_priv; /* backend VM state */
	struct vcpu *vcpus;
	int nr_vcpus;

	struct x86_state boot_state; /* the BSP's entry state (APs too with all_cpus_at_entry) */

	struct uart8250 *uart;
	struct vm_devices *devs; /* the platform devices (vm.c) */
	struct pci_root *pci;	 /* PCI bus 0 (pci/pci.h), for devices to register on */
	struct evloop *loop;	 /* host I/O; runs on the thread in vm_run() */
	struct snap_registry state; /* what a snapshot saves, as devices were created */
	struct devctx dev;	    /* what the devices get of the VM (vm.c) */
	uint64_t intx_sent_irqfd; /* PCI INTx raises through an irqfd (KVM), atomic */

	/* The guest's time: the host's monotonic clock, standing still while
	 * the VM is paused. The emulator's TSC and the device timers run on it. */
	struct guest_clock clock;

	/* How the VM ended: set once by vm_request_stop(). */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool stopping;
	int status;
	atomic_bool stop_flag; /* read by vCPU loops without the lock */

	/* Pause (vm_pause, vm_resume; one caller at a time: pause_lock).
	 * vCPU threads park at their next instruction boundary while
	 * pause_flag is set; parked and paused are under lock. */
	pthread_mutex_t pause_lock;
	atomic_bool pause_flag;
	int parked;
	bool paused;
	uint64_t pause_ns, resume_ns; /* how long the last pause and resume took (lock) */
	/* Auto-converge (vm_throttle): the share of time, in percent, each
	 * vCPU sleeps; 0 runs it free. */
	atomic_int throttle_pct;
	/* The VM went on at a migration's destination: it stopped here
	 * without powering off (tarn run says so). */
	bool migrated;
	/* A diff snapshot has a base: the VM was restored, or a snapshot of
	 * it was taken, since which the dirty bits count (snapshot.c). */
	bool dirty_base;
};

/* Build a VM from cfg: memory, backend, devices, kernel loaded, boot state
 * set; or, with cfg->restore, everything as the snapshot has it, paused.
 * On failure returns -errno with a one-line reason in err. */
int vm_create(struct vm **out, const struct vm_config *cfg, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* Start the vCPU threads and block until the VM stops. Returns the status
 * (enum vm_status or a debug-exit code). */
int vm_run(struct vm *vm);

/* Ask the VM to stop with this status; the first request wins. Safe from any
 * thread, including vCPU threads and device callbacks. */
void vm_request_stop(struct vm *vm, int status);

void vm_destroy(struct vm *vm);

/* Pause a running VM: every vCPU stops at an instruction boundary, the
 * devices finish what they have in flight and then take nothing from the
 * guest's queues and write nothing into its memory, and the guest's clocks
 * (vm->clock; on KVM its TSC and kvmclock) stand still. 0, also when it was
 * paused already; -ESHUTDOWN when the VM is stopping. vm_resume undoes it
 * (0, also when it was not paused). From any thread but a vCPU's, while
 * vm_run runs. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);

/* A migration's destination: apply img's state (every section, as a
 * restore does) to a VM built with cfg.incoming whose memory has arrived,
 * and leave it paused. 0, or -errno with the reason in err. */
int vm_restore_state(struct vm *vm, const struct snap_image *img, char *err, size_t err_len)
	__attribute__((warn_unused_result));
/* The devices' part of a migration's handover (virtio_dev_ops.handover),
 * the VM paused: give (the source: disks written back and unlocked) or
 * take (the destination; the source again after a failure). 0, or -errno
 * with the device and the reason in err. */
int vm_handover(struct vm *vm, bool give, char *err, size_t err_len) __attribute__((warn_unused_result));

/* A migration's destination, the VM running: each NIC announces its MAC
 * (virtio_net_announce) from the event loop vm_run runs. */
void vm_announce(struct vm *vm);

/* The i-th virtio-blk disk (the order of --disk), or NULL. */
struct virtio_dev *vm_disk(struct vm *vm, int i);

/* Migrations (migrate/migrate.h). vm_dirty_start: track the pages
 * written from now on, on a running VM too (guest_mem's bitmap and the
 * backend's log); tracking stays on. 0, -EOPNOTSUPP (a vhost-user NIC), or
 * -errno. vm_dirty_take: OR the pages written since the last take into
 * bits (gm_dirty_words long) and clear them; on the emulator the vCPUs
 * stand still for the moment of the take. Any thread but a vCPU's. */
int vm_dirty_start(struct vm *vm) __attribute__((warn_unused_result));
int vm_dirty_take(struct vm *vm, uint64_t *bits) __attribute__((warn_unused_result));

/* Auto-converge: each vCPU sleeps pct percent of the time (0 to
 * VM_THROTTLE_MAX), a slice of VM_THROTTLE_SLICE_NS running then its sleep,
 * as long as vm_throttle_tick is called about once a slice (it kicks each
 * vCPU to take its sleep at its next instruction boundary). */
#define VM_THROTTLE_MAX 95
#define VM_THROTTLE_SLICE_NS 10000000ULL
void vm_throttle(struct vm *vm, int pct);
void vm_throttle_tick(struct vm *vm);

/* Press the ACPI power button (PM1 PWRBTN_STS, an SCI where the guest
 * enabled it): a guest with an ACPI daemon (systemd-logind, acpid) shuts
 * down, one without ignores it. -EBUSY while paused. */
int vm_power_button(struct vm *vm);

/* Press Ctrl+Alt+Del on the VM's keyboard (hw/i8042.c): what the guest
 * does then is its own affair (Linux reboots, and tarn ends with
 * VM_EXIT_RESET). -EBUSY while paused or while the guest has not read the
 * last keys; -EAGAIN before the guest turned its keyboard on. */
int vm_ctrl_alt_del(struct vm *vm);

/* The VM's counters, for metrics: fn gets each with its group (Firecracker's
 * names: "vcpu", "uart", "block", "net", "entropy", "latencies_us"), the
 * device's index among its kind's (-1 for the VM's own groups), its name
 * and its value. Counters are totals since the VM was built; latencies_us
 * holds the last pause's and resume's times. Any thread. */
typedef void vm_metric_fn(void *opaque, const char *group, int index, const char *name, uint64_t value);
void vm_metrics(struct vm *vm, vm_metric_fn *fn, void *opaque);
/* Change the rate limits of the index-th virtio device of a metrics group
 * ("block", "net": the order of --disk, --net) at runtime, from
 * "NAME=VALUE,..." (core/ratelimit.h). 0, -ENOENT, or -EINVAL; the reason
 * in err. */
int vm_set_limits(struct vm *vm, const char *group, int index, const char *spec, char *err, size_t len);

/* Print registers of a vCPU to stderr (crash reports). */
void vcpu_dump(struct vcpu *vcpu, const char *why);

#endif
