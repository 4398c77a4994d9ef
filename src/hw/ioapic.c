/* I/O APIC after the Intel 82093AA datasheet (§3.2 register descriptions).
 * Everything arriving through the register window is guest-controlled. */
#include "hw/ioapic.h"

#include <errno.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"

/* Writable bits of a redirection entry: vector, delivery mode, destination
 * mode, polarity, trigger mode, mask (low dword); destination (high). */
#define RTE_WRITABLE (0x1afffULL | (0xffULL << IOAPIC_RTE_DEST_SHIFT))
#define RTE_RO (IOAPIC_RTE_DELIVS | IOAPIC_RTE_REMOTE_IRR)

enum { IOAPIC_REG_ID = 0x00, IOAPIC_REG_VER = 0x01, IOAPIC_REG_ARB = 0x02, IOAPIC_REG_RTE = 0x10 };

static unsigned rte_dm(uint64_t rte)
{
	return (rte >> IOAPIC_RTE_DM_SHIFT) & 7;
}

/* Whether the entry's interrupt is one remote IRR tracks: a level-triggered
 * fixed or lowest-priority interrupt with a deliverable vector. NMI, SMI,
 * INIT and ExtINT are edge by definition (82093AA §3.2.4, bit 15). */
static bool rte_tracks_eoi(uint64_t rte)
{
	unsigned dm = rte_dm(rte);

	return (rte & IOAPIC_RTE_LEVEL) && (dm == APIC_DM_FIXED || dm == APIC_DM_LOWEST) &&
	       (rte & IOAPIC_RTE_VECTOR) >= 16;
}

/* Send pin's interrupt message (lock held; see the lock order in ioapic.h). */
static void deliver(struct ioapic *io, unsigned pin)
{
	uint64_t rte = io->rte[pin];
	struct apic_msg m = {
		.vector = rte & IOAPIC_RTE_VECTOR,
		.dm = (uint8_t)rte_dm(rte),
		.logical = rte & IOAPIC_RTE_LOGICAL,
		.level = rte_tracks_eoi(rte),
		.assert = true,
		.dest = (uint8_t)(rte >> IOAPIC_RTE_DEST_SHIFT),
		.src_cpu = -1,
	};

	switch (m.dm) {
	case APIC_DM_FIXED: case APIC_DM_LOWEST: case APIC_DM_NMI:
	case APIC_DM_INIT: case APIC_DM_EXTINT:
		break;
	default: /* SMI and the reserved encodings 3 and 6 */
		pr_warn_ratelimited("ioapic: pin %u delivery mode %u dropped", pin, m.dm);
		return;
	}
	if (m.level)
		io->rte[pin] |= IOAPIC_RTE_REMOTE_IRR;
	apic_bus_deliver(io->apic, &m);
}

/* A level pin is delivered while asserted, unmasked and not in service. */
static void service_level(struct ioapic *io, unsigned pin)
{
	uint64_t rte = io->rte[pin];

	if ((rte & (IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASKED | IOAPIC_RTE_REMOTE_IRR)) != IOAPIC_RTE_LEVEL)
		return;
	if (io->level & (1u << pin))
		deliver(io, pin);
}

void ioapic_set_irq(struct ioapic *io, unsigned pin, int level)
{
	uint32_t bit;
	bool rising;

	if (pin >= IOAPIC_NR_PINS)
		return;
	bit = 1u << pin;
	pthread_mutex_lock(&io->lock);
	rising = level && !(io->level & bit);
	if (level)
		io->level |= bit;
	else
		io->level &= ~bit;
	if (io->rte[pin] & IOAPIC_RTE_LEVEL)
		service_level(io, pin);
	else if (rising && !(io->rte[pin] & IOAPIC_RTE_MASKED))
		deliver(io, pin); /* masked edges are lost (82093AA bit 16) */
	pthread_mutex_unlock(&io->lock);
}

void ioapic_eoi(struct ioapic *io, int vector)
{
	pthread_mutex_lock(&io->lock);
	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++) {
		uint64_t rte = io->rte[pin];

		if ((int)(rte & IOAPIC_RTE_VECTOR) != vector || !(rte & IOAPIC_RTE_REMOTE_IRR))
			continue;
		io->rte[pin] &= ~IOAPIC_RTE_REMOTE_IRR;
		/* Still asserted: the device wants service again. Each round
		 * costs the guest an EOI, so this cannot spin in the host. */
		service_level(io, pin);
	}
	pthread_mutex_unlock(&io->lock);
}

static uint32_t reg_read(struct ioapic *io, uint32_t reg)
{
	switch (reg) {
	case IOAPIC_REG_ID: return io->id;
	case IOAPIC_REG_VER: return IOAPIC_VERSION;
	case IOAPIC_REG_ARB: return io->id; /* arbitration ID is loaded from the ID */
	}
	if (reg >= IOAPIC_REG_RTE && reg < IOAPIC_REG_RTE + 2 * IOAPIC_NR_PINS) {
		uint64_t rte = io->rte[(reg - IOAPIC_REG_RTE) / 2];

		return (reg & 1) ? (uint32_t)(rte >> 32) : (uint32_t)rte;
	}
	return 0; /* unimplemented registers read as zero */
}

static void reg_write(struct ioapic *io, uint32_t reg, uint32_t v)
{
	unsigned pin;
	uint64_t old, val;

	if (reg == IOAPIC_REG_ID) {
		io->id = v & 0x0f000000; /* 4-bit ID in bits 24-27 */
		return;
	}
	if (reg < IOAPIC_REG_RTE || reg >= IOAPIC_REG_RTE + 2 * IOAPIC_NR_PINS)
		return; /* version and arbitration are read-only */
	pin = (reg - IOAPIC_REG_RTE) / 2;
	old = io->rte[pin];
	if (reg & 1)
		val = (old & 0xffffffffULL) | ((uint64_t)v << 32);
	else
		val = (old & ~0xffffffffULL) | v;
	val = (val & RTE_WRITABLE) | (old & RTE_RO);
	/* Remote IRR is undefined for edge pins: switching to edge clears it,
	 * so a later switch back does not find a stale one (as KVM). */
	if (!(val & IOAPIC_RTE_LEVEL))
		val &= ~IOAPIC_RTE_REMOTE_IRR;
	io->rte[pin] = val;
	/* Unmasking (or making level) an asserted level pin delivers it. */
	service_level(io, pin);
}

void ioapic_mmio_read(struct ioapic *io, uint64_t off, void *data, unsigned len)
{
	uint32_t v;

	if (len != 4 || (off != IOAPIC_IOREGSEL && off != IOAPIC_IOWIN))
		return; /* guest-controlled: the bus preset all-ones */
	pthread_mutex_lock(&io->lock);
	v = off == IOAPIC_IOREGSEL ? io->ioregsel : reg_read(io, io->ioregsel);
	pthread_mutex_unlock(&io->lock);
	memcpy(data, &v, 4);
}

void ioapic_mmio_write(struct ioapic *io, uint64_t off, const void *data, unsigned len)
{
	uint32_t v;

	if (len != 4 || (off != IOAPIC_IOREGSEL && off != IOAPIC_IOWIN))
		return;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&io->lock);
	if (off == IOAPIC_IOREGSEL)
		io->ioregsel = v & 0xff;
	else
		reg_write(io, io->ioregsel, v);
	pthread_mutex_unlock(&io->lock);
}

static void ioapic_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	ioapic_mmio_read(opaque, off, data, len);
}

static void ioapic_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	ioapic_mmio_write(opaque, off, data, len);
}

static const struct bus_ops ioapic_ops = { .read = ioapic_bus_read, .write = ioapic_bus_write };

int ioapic_init(struct ioapic *io, struct apic_bus *apic, struct bus *mmio, uint64_t base)
{
	memset(io, 0, sizeof(*io));
	pthread_mutex_init(&io->lock, NULL);
	io->apic = apic;
	for (unsigned i = 0; i < IOAPIC_NR_PINS; i++)
		io->rte[i] = IOAPIC_RTE_MASKED; /* reset state: all masked (§3.2.4) */
	if (!mmio)
		return 0;
	return bus_register(mmio, base, IOAPIC_MMIO_SIZE, &ioapic_ops, io, "ioapic");
}

void ioapic_destroy(struct ioapic *io)
{
	pthread_mutex_destroy(&io->lock);
}

void ioapic_save(struct ioapic *io, struct ioapic_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&io->lock);
	st->ioregsel = io->ioregsel;
	st->id = io->id;
	memcpy(st->rte, io->rte, sizeof(st->rte));
	st->level = io->level;
	pthread_mutex_unlock(&io->lock);
}

int ioapic_restore(struct ioapic *io, const struct ioapic_state *st)
{
	if (st->ioregsel > 0xff || (st->id & ~0x0f000000u) || (st->level >> IOAPIC_NR_PINS))
		return -EINVAL;
	for (unsigned i = 0; i < IOAPIC_NR_PINS; i++) {
		uint64_t rte = st->rte[i];

		if (rte & ~(RTE_WRITABLE | IOAPIC_RTE_REMOTE_IRR))
			return -EINVAL;
		if ((rte & IOAPIC_RTE_REMOTE_IRR) && !(rte & IOAPIC_RTE_LEVEL))
			return -EINVAL;
	}
	pthread_mutex_lock(&io->lock);
	io->ioregsel = st->ioregsel;
	io->id = st->id;
	memcpy(io->rte, st->rte, sizeof(io->rte));
	io->level = st->level;
	for (unsigned i = 0; i < IOAPIC_NR_PINS; i++)
		service_level(io, i);
	pthread_mutex_unlock(&io->lock);
	return 0;
}
