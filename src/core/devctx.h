/* What a device gets from whoever creates it, instead of the VM itself: the
 * buses it claims its registers on, guest memory, the guest's clock, the
 * host event loop, PCI bus 0, where its save/restore pair is registered, and
 * the few services it asks of the VM (an interrupt line, an MSI, a stop
 * request, eventfd shortcuts) as functions. vm.c builds one per VM; unit
 * tests and fuzzers build their own with fakes. Devices include this, never
 * core/vm.h, and keep the pointer for their lifetime. */
#ifndef TARN_DEVCTX_H
#define TARN_DEVCTX_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include "snapshot/snapshot.h"

struct bus;
struct guest_mem;
struct guest_clock;
struct evloop;
struct pci_root;

/* Process exit status of `tarn run`, by how the VM ended. Odd values are
 * reserved for the debug-exit port: (value << 1) | 1. */
enum vm_status {
	VM_EXIT_POWEROFF = 0,	/* guest powered off (ACPI S5, or tarn asked to stop) */
	VM_EXIT_VMM_ERROR = 8,	/* VMM error while running */
	VM_EXIT_USAGE = 2,	/* bad input: options, files; nothing ran */
	VM_EXIT_RESET = 4,	/* guest asked for a reboot */
	VM_EXIT_CRASH = 6,	/* guest triple-faulted; registers dumped */
};

/* An MSI the backend sends whenever fd is written (cpu_ops.msi_irqfd). */
struct vm_irqfd {
	int fd, gsi; /* -1 until first used */
	uint64_t addr;
	uint32_t data;
};

struct devctx;

/* The VM's services. Any may be NULL: the call then fails with -ENOSYS (or
 * does nothing), as on a VM without that service. Any thread. */
struct devctx_ops {
	/* Raise or lower an interrupt line (GSI) of the interrupt controller. */
	int (*irq_line)(const struct devctx *c, unsigned gsi, int level);
	/* Send a message-signalled interrupt (MSI/MSI-X). */
	int (*signal_msi)(const struct devctx *c, uint64_t addr, uint32_t data);
	/* Send (addr, data) through r, binding or re-targeting it as needed;
	 * -ENOSYS where the backend has no irqfd (then use signal_msi). */
	int (*irqfd_send)(const struct devctx *c, struct vm_irqfd *r, uint64_t addr, uint32_t data);
	void (*irqfd_release)(const struct devctx *c, struct vm_irqfd *r);
	/* Have guest writes of len bytes to gpa signal fd without an exit, or
	 * stop that; -ENOSYS where the backend or configuration does not. */
	int (*ioeventfd)(const struct devctx *c, uint64_t gpa, unsigned len, int fd, bool assign);
	/* Ask the VM to stop with this status (enum vm_status or a debug-exit
	 * code); the first request wins. */
	void (*request_stop)(const struct devctx *c, int status);
};

struct devctx {
	struct bus *pio, *mmio;
	struct guest_mem *mem;
	struct guest_clock *clock;
	struct evloop *loop;	     /* host I/O (virtio back ends) */
	struct pci_root *pci;	     /* for PCI devices to register on */
	struct snap_registry *state; /* NULL: nothing is saved */
	bool irqfd;		     /* irqfd_send can work: worth keeping vm_irqfds */
	bool defer_locks; /* a migration's destination: disks lock at the handover */
	const struct devctx_ops *ops;
};

static inline int dev_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	return c->ops && c->ops->irq_line ? c->ops->irq_line(c, gsi, level) : -ENOSYS;
}

static inline int dev_signal_msi(const struct devctx *c, uint64_t addr, uint32_t data)
{
	return c->ops && c->ops->signal_msi ? c->ops->signal_msi(c, addr, data) : -ENOSYS;
}

static inline int dev_irqfd_send(const struct devctx *c, struct vm_irqfd *r, uint64_t addr, uint32_t data)
{
	return c->ops && c->ops->irqfd_send ? c->ops->irqfd_send(c, r, addr, data) : -ENOSYS;
}

static inline void dev_irqfd_release(const struct devctx *c, struct vm_irqfd *r)
{
	if (c->ops && c->ops->irqfd_release)
		c->ops->irqfd_release(c, r);
}

static inline int dev_ioeventfd(const struct devctx *c, uint64_t gpa, unsigned len, int fd, bool assign)
{
	return c->ops && c->ops->ioeventfd ? c->ops->ioeventfd(c, gpa, len, fd, assign) : -ENOSYS;
}

static inline void dev_request_stop(const struct devctx *c, int status)
{
	if (c->ops && c->ops->request_stop)
		c->ops->request_stop(c, status);
}

/* Register the device's save/restore pair (snapshot/snapshot.h), where the
 * VM saves anything. */
static inline int dev_register_state(const struct devctx *c, const struct snap_ops *ops, void *obj,
				     uint32_t instance)
{
	return c->state ? snap_register(c->state, ops, obj, instance) : 0;
}

#endif
