/* The PC's pair of Intel 8259A programmable interrupt controllers (8259A
 * data sheet, order no. 231468), cascaded through master IRQ 2, with the
 * PIIX/ICH edge/level control registers (ELCR). For cpu/emu; KVM has its
 * own in-kernel PIC.
 *
 * Ports (registered on the PIO bus by pic_init):
 *   0x20/0x21  master: ICW1/OCW2/OCW3 | ICW2-4/OCW1 (IMR)
 *   0xa0/0xa1  slave, same
 *   0x4d0/0x4d1  ELCR master / slave: bit set = level-triggered. IRQ 0, 1,
 *              2, 8 and 13 are always edge (the bits read 0).
 *
 * The master's INTR output goes to the owner through ops->intr whenever it
 * changes; tarn wires it to the BSP LAPIC's LINT0 (lapic_set_lint), where
 * the LVT makes it ExtINT, and the CPU answers with pic_ack (the INTA
 * cycle) through lapic_ack_extint.
 *
 * Locking: one mutex for the pair. ops->intr is called with it held, so
 * successive edges reach the LAPIC in order (lock order PIT -> PIC ->
 * LAPIC); the callee must not call back into the PIC. */
#ifndef TARN_PIC_H
#define TARN_PIC_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct bus;

#define PIC_MASTER_BASE 0x20
#define PIC_SLAVE_BASE 0xa0
#define PIC_ELCR_BASE 0x4d0

/* tarn boots kernels directly, without firmware, so both backends leave the
 * 8259s as a PC BIOS does: vectors 0x08 and 0x70, cascade on IRQ 2, every
 * line masked but the cascade, 8086 mode (ICW4 = 1). Linux reprograms them;
 * a guest that uses only the IOAPIC must not also get ExtINTs through LINT0
 * (an unprogrammed 8259 would send IRQ n as vector n, an exception). */
#define PIC_FW_MASTER_VECTOR 0x08
#define PIC_FW_SLAVE_VECTOR 0x70
#define PIC_FW_MASTER_IMR 0xfb
#define PIC_FW_SLAVE_IMR 0xff

struct pic_ops {
	/* The master's INTR line changed to level (0 or 1). Optional. */
	void (*intr)(void *opaque, int level);
};

/* One 8259A. Private; exposed so the owner can embed struct pic. */
struct pic_chip {
	uint8_t irr, imr, isr;
	uint8_t last_irr;	/* input levels as last seen, for edge detection */
	uint8_t elcr, elcr_mask;
	uint8_t priority_add;	/* rotation: IRQ with the highest priority */
	uint8_t irq_base;	/* ICW2 & 0xf8 */
	uint8_t init_state;	/* 0 ready, 1 want ICW2, 2 want ICW3, 3 want ICW4 */
	bool read_isr;		/* OCW3 RR/RIS: reads of port 0 give ISR, else IRR */
	bool poll;		/* OCW3 P: the next read is a poll command */
	bool special_mask;	/* OCW3 SMM */
	bool auto_eoi, rotate_on_auto_eoi, sfnm, init4, single;
};

struct pic {
	pthread_mutex_t lock;
	const struct pic_ops *ops;
	void *opaque;
	struct pic_chip chip[2];	/* 0 master, 1 slave */
	int intr_level;			/* what ops->intr last heard */
};

/* Plain state for snapshots. */
struct pic_chip_state {
	uint8_t irr, imr, isr, last_irr, elcr, priority_add, irq_base, init_state;
	uint8_t read_isr, poll, special_mask, auto_eoi, rotate_on_auto_eoi, sfnm, init4, single;
};
struct pic_state {
	struct pic_chip_state chip[2];
};
_Static_assert(sizeof(struct pic_state) == 32, "pic_state is a snapshot format");

/* Reset both chips (as after ICW1 with nothing programmed: vector base 0,
 * all unmasked) and claim the ports above on pio (NULL: no ports, for
 * tests). ops may be NULL. 0 or -errno from bus_register. */
int pic_init(struct pic *p, struct bus *pio, const struct pic_ops *ops, void *opaque)
	__attribute__((warn_unused_result));
void pic_destroy(struct pic *p);

/* A device drives ISA IRQ irq (0..15, not 2: that is the cascade) to level.
 * Edge-triggered IRQs latch on a rising edge; level ones follow the line. */
void pic_set_irq(struct pic *p, unsigned irq, int level);

/* The INTA cycle: the vector of the highest-priority pending request,
 * moved to in-service (unless auto-EOI). With nothing pending any more the
 * 8259A answers IRQ 7 of the master (or IRQ 15 via the slave) without
 * setting its ISR bit: the spurious interrupt. */
int pic_ack(struct pic *p);

/* The master's INTR output: whether a request is waiting for INTA. */
bool pic_has_interrupt(struct pic *p);

/* Port access, as the PIO bus calls it (port absolute: 0x20, 0x21, 0xa0,
 * 0xa1, 0x4d0, 0x4d1; byte accesses only, others read 0xff). */
uint8_t pic_ioport_read(struct pic *p, uint16_t port);
void pic_ioport_write(struct pic *p, uint16_t port, uint8_t v);

/* Snapshots: restore validates and returns -EINVAL without touching p.
 * Input levels are part of it (last_irr), so edges are not doubled. */
void pic_save(struct pic *p, struct pic_state *st);
int pic_restore(struct pic *p, const struct pic_state *st) __attribute__((warn_unused_result));

#endif
