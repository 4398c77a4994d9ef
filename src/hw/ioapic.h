/* I/O APIC, modelled on the Intel 82093AA (datasheet, order no. 290566):
 * 24 input pins, a redirection table entry per pin, delivery of interrupt
 * messages to the LAPICs through struct apic_bus (lapic.h). For cpu/emu;
 * KVM has its own in-kernel IOAPIC.
 *
 * Register window on the MMIO bus at IOAPIC_DEFAULT_BASE (4 KiB range):
 *   +0x00 IOREGSEL  index of the register IOWIN shows (bits 0-7)
 *   +0x10 IOWIN     the selected register
 * Only aligned 32-bit accesses at those two offsets do anything; other
 * accesses read all-ones and are dropped (the guest is hostile).
 * Indirect registers: 0x00 ID, 0x01 version (0x00170011: 24 entries,
 * version 0x11), 0x02 arbitration ID, 0x10 + 2n / 0x11 + 2n redirection
 * entry n low / high dword.
 *
 * Pin levels are logical ("asserted"), as vm_irq_line() drives them: the
 * polarity bit is kept for the guest to read back but not applied — the
 * MADT describes every line's polarity, and KVM and QEMU do the same.
 *
 * Locking: one mutex. Delivery to the LAPICs happens with it held (order
 * PIT -> PIC -> IOAPIC -> LAPIC); a LAPIC's EOI broadcast reaches
 * ioapic_eoi() after the LAPIC has dropped its own lock. */
#ifndef TARN_IOAPIC_H
#define TARN_IOAPIC_H

#include <pthread.h>
#include <stdint.h>

#include "hw/lapic.h"

struct bus;

#define IOAPIC_DEFAULT_BASE 0xfec00000ULL
#define IOAPIC_MMIO_SIZE 0x1000
#define IOAPIC_NR_PINS 24
/* The PC wires the PIT's ISA IRQ 0 to pin 2 (the MADT says so with an
 * interrupt source override); every other ISA IRQ n is pin n. */
#define IOAPIC_PIT_PIN 2
#define IOAPIC_VERSION 0x00170011u
#define IOAPIC_IOREGSEL 0x00
#define IOAPIC_IOWIN 0x10

/* Redirection entry bits (82093AA §3.2.4). */
#define IOAPIC_RTE_VECTOR 0xffULL
#define IOAPIC_RTE_DM_SHIFT 8
#define IOAPIC_RTE_LOGICAL (1ULL << 11)
#define IOAPIC_RTE_DELIVS (1ULL << 12)	/* read-only; always 0 (delivery is immediate) */
#define IOAPIC_RTE_POLARITY (1ULL << 13)
#define IOAPIC_RTE_REMOTE_IRR (1ULL << 14) /* read-only */
#define IOAPIC_RTE_LEVEL (1ULL << 15)
#define IOAPIC_RTE_MASKED (1ULL << 16)
#define IOAPIC_RTE_DEST_SHIFT 56

/* Private; exposed so the owner can embed it. */
struct ioapic {
	pthread_mutex_t lock;
	struct apic_bus *apic;
	uint32_t ioregsel;
	uint32_t id;			/* register 0x00: ID in bits 24-27 */
	uint64_t rte[IOAPIC_NR_PINS];
	uint32_t level;			/* bit per pin: input asserted */
};

/* Plain state for snapshots. */
struct ioapic_state {
	uint32_t ioregsel;
	uint32_t id;
	uint64_t rte[IOAPIC_NR_PINS];
	uint32_t level;
	uint32_t pad;
};
_Static_assert(sizeof(struct ioapic_state) == 208, "ioapic_state is a snapshot format");

/* Reset (every pin masked, edge, vector 0; ID 0) and claim
 * [base, base + IOAPIC_MMIO_SIZE) on mmio (NULL: registers nowhere, for
 * tests that call ioapic_mmio_*). io must outlive the bus. 0 or -errno from
 * bus_register. */
int ioapic_init(struct ioapic *io, struct apic_bus *apic, struct bus *mmio, uint64_t base)
	__attribute__((warn_unused_result));
void ioapic_destroy(struct ioapic *io);

/* A device drives input pin (0..23) to level (0 or non-zero). Edge pins
 * deliver on a rising edge while unmasked; level pins deliver while
 * asserted, unmasked and remote IRR clear. Out-of-range pins are ignored. */
void ioapic_set_irq(struct ioapic *io, unsigned pin, int level);

/* A LAPIC retired level-triggered vector: clear remote IRR of the pins
 * using it, and redeliver any still asserted (82093AA §3.2.4 bit 14). */
void ioapic_eoi(struct ioapic *io, int vector);

/* The register window, as the MMIO bus calls it (off relative to base). */
void ioapic_mmio_read(struct ioapic *io, uint64_t off, void *data, unsigned len);
void ioapic_mmio_write(struct ioapic *io, uint64_t off, const void *data, unsigned len);

/* Snapshots: restore validates (reserved bits, pin levels) or returns
 * -EINVAL without touching io. Restore the LAPICs first: restore
 * re-delivers asserted, unmasked level pins whose remote IRR is clear. */
void ioapic_save(struct ioapic *io, struct ioapic_state *st);
int ioapic_restore(struct ioapic *io, const struct ioapic_state *st)
	__attribute__((warn_unused_result));

#endif
