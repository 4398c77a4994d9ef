/* A device's creator in unit tests, in place of a VM: real buses, guest
 * memory and clock (zero until a test sets them up), and a devctx whose
 * services are the test's own fakes (ops). fake_vm_stop records stop
 * requests as the VM does: the first one's status. Include after unit.h. */
#ifndef TARN_TEST_FAKE_VM_H
#define TARN_TEST_FAKE_VM_H

#include <stdbool.h>
#include <stddef.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/devctx.h"
#include "mem/gm.h"

struct fake_vm {
	struct bus pio, mmio;
	struct guest_mem mem;
	struct guest_clock clock;
	struct devctx ctx;
	bool stopping; /* a stop was requested */
	int status;    /* the first request's status */
};

static inline struct fake_vm *fake_vm_of(const struct devctx *c)
{
	return (struct fake_vm *)((char *)c - offsetof(struct fake_vm, ctx));
}

static inline void fake_vm_stop(const struct devctx *c, int status)
{
	struct fake_vm *f = fake_vm_of(c);

	if (!f->stopping) {
		f->stopping = true;
		f->status = status;
	}
}

/* No interrupt controller: only stop requests. */
static const struct devctx_ops fake_vm_ops = { .request_stop = fake_vm_stop };

static inline void fake_vm_init(struct fake_vm *f, const struct devctx_ops *ops)
{
	bus_init(&f->pio, "pio");
	bus_init(&f->mmio, "mmio");
	f->ctx = (struct devctx){ .pio = &f->pio, .mmio = &f->mmio, .mem = &f->mem, .clock = &f->clock, .ops = ops };
}

static inline void fake_vm_destroy(struct fake_vm *f)
{
	bus_destroy(&f->pio);
	bus_destroy(&f->mmio);
}

#endif
