/* cpu/emu: the interrupt controllers and timers of the emulated PC.
 *
 * Wiring (as the MADT in arch/x86/acpi.c describes it):
 *   GSI n      -> IOAPIC pin n; for n < 16 also the 8259 pair's IRQ n
 *   PIT OUT0   -> 8259 IRQ 0 and IOAPIC pin 2 (the MADT's IRQ0 override)
 *   8259 INTR  -> LINT0 of the BSP's LAPIC (ExtINT in virtual-wire mode)
 *   IOAPIC, ICR -> the APIC bus -> LAPICs -> the vCPU (emu.c asks its LAPIC
 *                 at instruction boundaries).
 *
 * Timer sources. A LAPIC timer belongs to its vCPU: the vCPU's run loop
 * checks its deadline between instruction blocks, and a halted vCPU sleeps
 * until it (emu.c). The PIT is VM-wide and must tick while every vCPU is
 * halted, so it is driven by a timerfd on the VM's event loop: the event
 * thread calls pit_update() when the timerfd fires, and whoever reprograms
 * the PIT (a vCPU writing port 0x40-0x43) re-arms the timerfd through
 * pit_ops.timer_changed. A VM without an event loop (unit tests) has a PIT
 * whose counters read right but that raises no IRQ 0.
 *
 * Locks: PIT -> PIC -> IOAPIC -> LAPIC (see the models' headers), then a
 * vCPU's wait_lock, which the LAPIC's kick takes last. timer_lock only
 * orders re-arms of the timerfd and is never held while calling a model
 * that could call back. */
#include "cpu/emu/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/evloop.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu_priv.h"
#include "hw/ioapic.h"
#include "hw/lapic.h"
#include "hw/pic.h"
#include "hw/pit.h"
#include "hw/platform_state.h"


struct emu_platform {
	struct vm *vm;
	struct apic_bus apic;
	struct ioapic ioapic;
	struct pic pic;
	struct pit pit;
	struct emu_cpu *cpus[LAPIC_MAX_CPUS]; /* by APIC bus index */
	int pit_fd;			      /* timerfd on vm->loop, -1 without one */
	pthread_mutex_t timer_lock;
};

/* ---- APIC bus ---- */

static void apic_kick(void *opaque, int cpu)
{
	struct emu_platform *p = opaque;
	struct emu_cpu *c = cpu >= 0 && cpu < LAPIC_MAX_CPUS ? p->cpus[cpu] : NULL;

	if (c)
		emu_wake(c, ATTN_IRQ);
}

static void apic_eoi(void *opaque, int vector)
{
	struct emu_platform *p = opaque;

	ioapic_eoi(&p->ioapic, vector);
}

static int apic_extint_ack(void *opaque)
{
	struct emu_platform *p = opaque;

	return pic_ack(&p->pic);
}

/* The LAPIC timers and the PIT run on the guest's clock. */
static uint64_t platform_now(void *opaque)
{
	struct emu_platform *p = opaque;

	return guest_clock_ns(&p->vm->clock);
}

static const struct apic_bus_ops apic_ops = {
	.kick = apic_kick,
	.eoi = apic_eoi,
	.extint_ack = apic_extint_ack,
	.now_ns = platform_now,
};

/* ---- 8259 ---- */

static void pic_intr(void *opaque, int level)
{
	struct emu_platform *p = opaque;
	struct lapic *bsp = p->apic.nr_cpus ? p->apic.cpus[0] : NULL;

	if (bsp)
		lapic_set_lint(bsp, 0, level);
}

static const struct pic_ops pic_ops = { .intr = pic_intr };

/* The firmware hand-off state (hw/pic.h), programmed as a BIOS does:
 * ICW1-4, then OCW1 (the mask). */
static void pic_firmware_setup(struct pic *pic)
{
	static const struct { uint16_t port; uint8_t val; } seq[] = {
		{ 0x20, 0x11 }, { 0x21, PIC_FW_MASTER_VECTOR }, { 0x21, 0x04 }, { 0x21, 0x01 },
		{ 0x21, PIC_FW_MASTER_IMR },
		{ 0xa0, 0x11 }, { 0xa1, PIC_FW_SLAVE_VECTOR }, { 0xa1, 0x02 }, { 0xa1, 0x01 },
		{ 0xa1, PIC_FW_SLAVE_IMR },
	};

	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++)
		pic_ioport_write(pic, seq[i].port, seq[i].val);
}

/* ---- 8254 ---- */

static void pit_irq(void *opaque, int level)
{
	struct emu_platform *p = opaque;

	pic_set_irq(&p->pic, 0, level);
	ioapic_set_irq(&p->ioapic, IOAPIC_PIT_PIN, level);
}

/* Point the timerfd at the PIT's next IRQ 0 edge (or disarm it, also
 * while the guest's clock stands still: emu_vm_pause arms it again). */
static void pit_timer_arm(struct emu_platform *p)
{
	struct itimerspec its = { 0 };
	uint64_t d;

	if (p->pit_fd < 0)
		return;
	pthread_mutex_lock(&p->timer_lock);
	d = guest_clock_stopped(&p->vm->clock) ? UINT64_MAX : pit_next_deadline_ns(&p->pit);
	if (d != UINT64_MAX) {
		d = guest_clock_host_ns(&p->vm->clock, d);
		if (d == 0)
			d = 1; /* 0 would disarm */
		its.it_value.tv_sec = (time_t)(d / 1000000000ULL);
		its.it_value.tv_nsec = (long)(d % 1000000000ULL);
	}
	if (timerfd_settime(p->pit_fd, TFD_TIMER_ABSTIME, &its, NULL))
		pr_warn_ratelimited("emu: PIT timer: %s", strerror(errno));
	pthread_mutex_unlock(&p->timer_lock);
}

static void pit_timer_changed(void *opaque)
{
	pit_timer_arm(opaque);
}

/* Event-loop thread: the timerfd fired. */
static void pit_timer_fired(void *opaque, uint32_t events)
{
	struct emu_platform *p = opaque;
	uint64_t n;

	(void)events;
	if (read(p->pit_fd, &n, sizeof(n)) < 0 && errno != EAGAIN)
		pr_warn_ratelimited("emu: PIT timer read: %s", strerror(errno));
	pit_update(&p->pit, platform_now(p));
	pit_timer_arm(p);
}

static const struct pit_ops pit_ops = {
	.irq = pit_irq,
	.now_ns = platform_now,
	.timer_changed = pit_timer_changed,
};

/* ---- life cycle ---- */

int emu_platform_init(struct vm *vm)
{
	struct emu_platform *p = calloc(1, sizeof(*p));
	int ret;

	if (!p)
		return -ENOMEM;
	p->vm = vm;
	p->pit_fd = -1;
	pthread_mutex_init(&p->timer_lock, NULL);
	vm->cpu_priv = p;
	ret = apic_bus_init(&p->apic, &apic_ops, p);
	if (!ret)
		ret = ioapic_init(&p->ioapic, &p->apic, &vm->mmio, IOAPIC_DEFAULT_BASE);
	if (!ret)
		ret = pic_init(&p->pic, &vm->pio, &pic_ops, p);
	if (!ret)
		ret = pit_init(&p->pit, &vm->pio, &pit_ops, p);
	if (ret)
		goto fail;
	pic_firmware_setup(&p->pic);
	if (vm->loop) {
		p->pit_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (p->pit_fd < 0) {
			ret = -errno;
			goto fail;
		}
		ret = evloop_add(vm->loop, p->pit_fd, EPOLLIN, pit_timer_fired, p);
		if (ret) {
			close(p->pit_fd);
			p->pit_fd = -1;
			goto fail;
		}
	}
	return 0;
fail:
	emu_platform_destroy(vm);
	return ret;
}

int emu_platform_pause(struct vm *vm, bool pause)
{
	pit_timer_arm(vm->cpu_priv); /* off while the clock stands still */
	return 0;
}

/* The guest's kvmclock reads VM time + clock_offset, the same on every
 * vCPU (emu.c). */
int emu_platform_get(struct vm *vm, struct platform_state *st)
{
	struct emu_platform *p = vm->cpu_priv;
	uint64_t now = platform_now(p);

	pic_save(&p->pic, &st->pic);
	ioapic_save(&p->ioapic, &st->ioapic);
	pit_save(&p->pit, &st->pit, now);
	st->kvmclock_ns = p->cpus[0] ? now + (uint64_t)p->cpus[0]->clock_offset : now;
	return 0;
}

int emu_platform_set(struct vm *vm, const struct platform_state *st)
{
	struct emu_platform *p = vm->cpu_priv;
	uint64_t now = platform_now(p);

	if (pic_restore(&p->pic, &st->pic) || ioapic_restore(&p->ioapic, &st->ioapic) ||
	    pit_restore(&p->pit, &st->pit, now))
		return -EINVAL;
	for (int i = 0; i < LAPIC_MAX_CPUS; i++)
		if (p->cpus[i]) {
			p->cpus[i]->clock_offset = (int64_t)(st->kvmclock_ns - now);
			if (emu_kvmclock_write_time(p->cpus[i]))
				return -EINVAL;
		}
	pit_timer_arm(p);
	return 0;
}

void emu_platform_destroy(struct vm *vm)
{
	struct emu_platform *p = vm->cpu_priv;

	if (!p)
		return;
	if (p->pit_fd >= 0) {
		evloop_del(vm->loop, p->pit_fd);
		close(p->pit_fd);
	}
	/* The buses keep pointers into p until vm_destroy frees them; nothing
	 * dispatches on them any more. */
	pit_destroy(&p->pit);
	pic_destroy(&p->pic);
	ioapic_destroy(&p->ioapic);
	pthread_mutex_destroy(&p->timer_lock);
	free(p);
	vm->cpu_priv = NULL;
}

int emu_platform_add_cpu(struct vm *vm, struct emu_cpu *c)
{
	struct emu_platform *p = vm->cpu_priv;
	struct lapic *l;
	int id = c->vcpu->id, idx, ret;

	if (!p)
		return -EINVAL;
	if (id < 0 || id >= LAPIC_MAX_CPUS)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	idx = p->apic.nr_cpus;
	ret = lapic_init(l, &p->apic, idx, (uint8_t)id, id == 0);
	if (ret) {
		free(l);
		return ret;
	}
	c->lapic = l;
	p->cpus[idx] = c;
	return 0;
}

void emu_platform_remove_cpu(struct vm *vm, struct emu_cpu *c)
{
	struct emu_platform *p = vm->cpu_priv;

	if (!c->lapic)
		return;
	if (p)
		p->cpus[c->lapic->cpu] = NULL;
	lapic_destroy(c->lapic);
	free(c->lapic);
	c->lapic = NULL;
}

/* MSI address: 0xFEE in 31:20, destination ID in 19:12, destination mode
 * in bit 2 (1: logical); data: vector in 7:0, delivery mode in 10:8
 * (SDM 11.11.1-2). MSIs are edge messages: the trigger bits are ignored,
 * like KVM does for fixed/lowest-priority delivery. */
int emu_platform_signal_msi(struct vm *vm, uint64_t addr, uint32_t data)
{
	struct emu_platform *p = vm->cpu_priv;
	struct apic_msg m = {
		.vector = (uint8_t)data,
		.dm = (uint8_t)((data >> 8) & 7),
		.logical = addr & 4,
		.assert = true,
		.dest = (uint8_t)(addr >> 12),
		.src_cpu = -1,
	};

	if (!p || (addr >> 20) != 0xfee)
		return -EINVAL;
	switch (m.dm) {
	case APIC_DM_FIXED: case APIC_DM_LOWEST: case APIC_DM_NMI: case APIC_DM_INIT:
		break;
	default:
		return -EINVAL;
	}
	apic_bus_deliver(&p->apic, &m);
	return 0;
}

int emu_platform_irq_line(struct vm *vm, unsigned gsi, int level)
{
	struct emu_platform *p = vm->cpu_priv;

	if (!p || gsi >= IOAPIC_NR_PINS)
		return -EINVAL;
	if (gsi < 16)
		pic_set_irq(&p->pic, gsi, level); /* IRQ 2 is the cascade: ignored */
	ioapic_set_irq(&p->ioapic, gsi, level);
	return 0;
}
