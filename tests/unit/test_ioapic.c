/* The I/O APIC model (hw/ioapic.c) delivering to real LAPIC models through
 * the APIC bus: the register window, redirection entries, masking, edge and
 * level pins with remote IRR and the re-delivery after EOI that a guest's
 * level-triggered devices (PCI INTx, the ACPI SCI) depend on. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "hw/ioapic.h"
#include "hw/lapic.h"

#define NCPU 2

struct fixture {
	struct apic_bus bus;
	struct lapic l[NCPU];
	struct ioapic io;
	struct bus mmio;
};

static void fake_kick(void *opaque, int cpu)
{
	(void)opaque;
	(void)cpu;
}

/* As the emulator wires it: a LAPIC's EOI of a level vector reaches the IOAPIC. */
static void fake_eoi(void *opaque, int vector)
{
	struct fixture *f = opaque;

	ioapic_eoi(&f->io, vector);
}

static const struct apic_bus_ops fake_ops = { .kick = fake_kick, .eoi = fake_eoi };

static void lapic_wr(struct lapic *l, uint32_t reg, uint32_t v)
{
	lapic_mmio_write(l, reg, &v, 4);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(apic_bus_init(&f->bus, &fake_ops, f), 0);
	for (int i = 0; i < NCPU; i++) {
		assert_int_equal(lapic_init(&f->l[i], &f->bus, i, (uint8_t)i, i == 0), 0);
		lapic_set_init_state(&f->l[i], LAPIC_RUNNING);
		lapic_wr(&f->l[i], LAPIC_SVR, APIC_SVR_ENABLE | 0xff);
	}
	bus_init(&f->mmio, "mmio");
	assert_int_equal(ioapic_init(&f->io, &f->bus, &f->mmio, IOAPIC_DEFAULT_BASE), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ioapic_destroy(&f->io);
	for (int i = 0; i < NCPU; i++)
		lapic_destroy(&f->l[i]);
	bus_destroy(&f->mmio);
	free(f);
	return 0;
}

/* Through the MMIO bus, as a guest reaches it. */
static uint32_t reg_rd(struct fixture *f, uint32_t reg)
{
	uint32_t v = 0;

	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + IOAPIC_IOREGSEL, &reg, 4, true), 0);
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + IOAPIC_IOWIN, &v, 4, false), 0);
	return v;
}

static void reg_wr(struct fixture *f, uint32_t reg, uint32_t v)
{
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + IOAPIC_IOREGSEL, &reg, 4, true), 0);
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + IOAPIC_IOWIN, &v, 4, true), 0);
}

static void set_rte(struct fixture *f, unsigned pin, uint64_t rte)
{
	reg_wr(f, 0x11 + 2 * pin, (uint32_t)(rte >> 32));
	reg_wr(f, 0x10 + 2 * pin, (uint32_t)rte);
}

static uint64_t get_rte(struct fixture *f, unsigned pin)
{
	return reg_rd(f, 0x10 + 2 * pin) | (uint64_t)reg_rd(f, 0x11 + 2 * pin) << 32;
}

static bool irr_has(struct lapic *l, int v)
{
	uint32_t r = 0;

	lapic_mmio_read(l, LAPIC_IRR + 0x10 * (uint32_t)(v / 32), &r, 4);
	return r & (1u << (v % 32));
}

static void test_registers(void **state)
{
	struct fixture *f = *state;
	uint32_t v = 0;

	assert_int_equal(reg_rd(f, 0x01), IOAPIC_VERSION); /* 24 entries, version 0x11 */
	reg_wr(f, 0x00, 0xffffffff);
	assert_int_equal(reg_rd(f, 0x00), 0x0f000000); /* 4-bit ID */
	/* IOREGSEL reads back. */
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE, &v, 4, false), 0);
	assert_int_equal(v, 0x00);
	/* Reset: every pin masked. */
	for (unsigned pin = 0; pin < IOAPIC_NR_PINS; pin++)
		assert_int_equal(get_rte(f, pin), IOAPIC_RTE_MASKED);
	/* Read-only bits (delivery status, remote IRR) ignore writes. */
	set_rte(f, 3, 0x30 | IOAPIC_RTE_DELIVS | IOAPIC_RTE_REMOTE_IRR | IOAPIC_RTE_MASKED);
	assert_int_equal(get_rte(f, 3), 0x30 | IOAPIC_RTE_MASKED);
	/* Other widths and offsets read all-ones and do nothing. */
	v = 0;
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + 0x04, &v, 4, false), 0);
	assert_int_equal(v, 0xffffffff);
	v = 0;
	assert_int_equal(bus_access(&f->mmio, IOAPIC_DEFAULT_BASE + IOAPIC_IOWIN, &v, 2, false), 0);
	assert_int_equal(v, 0xffff);
}

static void test_edge(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 4, 0x44); /* fixed, physical, APIC 0, edge, unmasked */
	ioapic_set_irq(&f->io, 4, 1);
	assert_true(irr_has(&f->l[0], 0x44));
	assert_false(irr_has(&f->l[1], 0x44));
	assert_int_equal(lapic_ack_interrupt(&f->l[0]), 0x44);
	lapic_wr(&f->l[0], LAPIC_EOI, 0);
	/* Held high: no new edge, no new interrupt. */
	ioapic_set_irq(&f->io, 4, 1);
	assert_false(irr_has(&f->l[0], 0x44));
	/* Down and up again: one more. */
	ioapic_set_irq(&f->io, 4, 0);
	ioapic_set_irq(&f->io, 4, 1);
	assert_true(irr_has(&f->l[0], 0x44));
	assert_int_equal(lapic_ack_interrupt(&f->l[0]), 0x44);
	lapic_wr(&f->l[0], LAPIC_EOI, 0);
	ioapic_set_irq(&f->io, 4, 0);

	/* A masked edge is lost, not remembered. */
	set_rte(f, 4, 0x44 | IOAPIC_RTE_MASKED);
	ioapic_set_irq(&f->io, 4, 1);
	set_rte(f, 4, 0x44);
	assert_false(irr_has(&f->l[0], 0x44));

	/* Destination: APIC 1, and logical (flat) to both. */
	ioapic_set_irq(&f->io, 4, 0);
	set_rte(f, 4, 0x45 | (1ULL << IOAPIC_RTE_DEST_SHIFT));
	ioapic_set_irq(&f->io, 4, 1);
	assert_true(irr_has(&f->l[1], 0x45));
	assert_false(irr_has(&f->l[0], 0x45));
	lapic_wr(&f->l[0], LAPIC_LDR, 0x01u << 24);
	lapic_wr(&f->l[1], LAPIC_LDR, 0x02u << 24);
	ioapic_set_irq(&f->io, 4, 0);
	set_rte(f, 4, 0x46 | IOAPIC_RTE_LOGICAL | (3ULL << IOAPIC_RTE_DEST_SHIFT));
	ioapic_set_irq(&f->io, 4, 1);
	assert_true(irr_has(&f->l[0], 0x46) && irr_has(&f->l[1], 0x46));
	/* Out-of-range pins are ignored. */
	ioapic_set_irq(&f->io, IOAPIC_NR_PINS, 1);
}

static void test_level_remote_irr(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	set_rte(f, 9, 0x59 | IOAPIC_RTE_LEVEL);
	ioapic_set_irq(&f->io, 9, 1);
	assert_true(irr_has(l, 0x59));
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* TMR marks it level, so the EOI is broadcast back to the IOAPIC. */
	assert_int_equal(lapic_ack_interrupt(l), 0x59);
	/* Still asserted at EOI (the handler did not quiet the device):
	 * delivered again, remote IRR set again. */
	lapic_wr(l, LAPIC_EOI, 0);
	assert_true(irr_has(l, 0x59));
	assert_true(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	assert_int_equal(lapic_ack_interrupt(l), 0x59);
	/* Device quiet, then EOI: remote IRR clear, nothing pending. */
	ioapic_set_irq(&f->io, 9, 0);
	lapic_wr(l, LAPIC_EOI, 0);
	assert_false(irr_has(l, 0x59));
	assert_false(get_rte(f, 9) & IOAPIC_RTE_REMOTE_IRR);
	/* While remote IRR is set, a new assertion waits for the EOI. */
	ioapic_set_irq(&f->io, 9, 1);
	assert_int_equal(lapic_ack_interrupt(l), 0x59);
	ioapic_set_irq(&f->io, 9, 0);
	ioapic_set_irq(&f->io, 9, 1);
	assert_false(irr_has(l, 0x59));
	lapic_wr(l, LAPIC_EOI, 0);
	assert_true(irr_has(l, 0x59));
}

static void test_level_mask_unmask(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	/* Asserted while masked: delivered when unmasked (level, not latched edge). */
	set_rte(f, 10, 0x5a | IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASKED);
	ioapic_set_irq(&f->io, 10, 1);
	assert_false(irr_has(l, 0x5a));
	set_rte(f, 10, 0x5a | IOAPIC_RTE_LEVEL);
	assert_true(irr_has(l, 0x5a));
	/* Masked after delivery: the EOI clears remote IRR, delivers nothing. */
	assert_int_equal(lapic_ack_interrupt(l), 0x5a);
	set_rte(f, 10, 0x5a | IOAPIC_RTE_LEVEL | IOAPIC_RTE_MASKED);
	lapic_wr(l, LAPIC_EOI, 0);
	assert_false(irr_has(l, 0x5a));
	assert_false(get_rte(f, 10) & IOAPIC_RTE_REMOTE_IRR);
	/* Switching a pin to edge drops a stale remote IRR. */
	set_rte(f, 10, 0x5a | IOAPIC_RTE_LEVEL);
	assert_true(get_rte(f, 10) & IOAPIC_RTE_REMOTE_IRR);
	set_rte(f, 10, 0x5a);
	assert_false(get_rte(f, 10) & IOAPIC_RTE_REMOTE_IRR);
}

static void test_nmi_and_extint_pins(void **state)
{
	struct fixture *f = *state;

	set_rte(f, 2, (APIC_DM_NMI << IOAPIC_RTE_DM_SHIFT));
	ioapic_set_irq(&f->io, 2, 1);
	assert_true(lapic_take_nmi(&f->l[0]));
	set_rte(f, 0, (APIC_DM_EXTINT << IOAPIC_RTE_DM_SHIFT));
	ioapic_set_irq(&f->io, 0, 1);
	assert_true(lapic_has_extint(&f->l[0]));
	/* Vectors below 16 are not delivered as fixed interrupts. */
	set_rte(f, 5, 0x05);
	ioapic_set_irq(&f->io, 5, 1);
	assert_int_equal(lapic_get_interrupt(&f->l[0]), -1);
}

static void test_save_restore(void **state)
{
	struct fixture *f = *state;
	struct ioapic_state st;

	set_rte(f, 9, 0x59 | IOAPIC_RTE_LEVEL);
	ioapic_save(&f->io, &st);
	assert_int_equal(st.rte[9], 0x59 | IOAPIC_RTE_LEVEL);
	st.rte[9] |= IOAPIC_RTE_DELIVS; /* not a state a guest can make */
	assert_int_equal(ioapic_restore(&f->io, &st), -EINVAL);
	st.rte[9] &= ~IOAPIC_RTE_DELIVS;
	st.level = 1u << 9;
	assert_int_equal(ioapic_restore(&f->io, &st), 0);
	/* The asserted level pin is delivered on restore. */
	assert_true(irr_has(&f->l[0], 0x59));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_remote_irr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_mask_unmask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nmi_and_extint_pins, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_restore, setup, teardown),
	};

	return cmocka_run_group_tests_name("ioapic", tests, NULL, NULL);
}
