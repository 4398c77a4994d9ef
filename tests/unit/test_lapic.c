/* The local APIC model (hw/lapic.c) against a fake APIC bus owner and a
 * fake clock: what a guest kernel relies on — the timer in its three modes,
 * interrupt priority through IRR/ISR/TPR and EOI, IPIs (fixed, broadcast,
 * logical, INIT/SIPI, NMI), the virtual-wire ExtINT path and the
 * IA32_APIC_BASE MSR. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "hw/lapic.h"

#define NCPU 2

struct fixture {
	struct apic_bus bus;
	struct lapic l[NCPU];
	uint64_t now;
	int kicks[NCPU];
	int eois[8];
	int nr_eois;
	int extint_vector;
};

static void fake_kick(void *opaque, int cpu)
{
	struct fixture *f = opaque;

	f->kicks[cpu]++;
}

static void fake_eoi(void *opaque, int vector)
{
	struct fixture *f = opaque;

	if (f->nr_eois < 8)
		f->eois[f->nr_eois++] = vector;
}

static int fake_extint_ack(void *opaque)
{
	struct fixture *f = opaque;

	return f->extint_vector;
}

static uint64_t fake_now(void *opaque)
{
	struct fixture *f = opaque;

	return f->now;
}

static const struct apic_bus_ops fake_ops = {
	.kick = fake_kick,
	.eoi = fake_eoi,
	.extint_ack = fake_extint_ack,
	.now_ns = fake_now,
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->now = 1000000000ULL;
	assert_int_equal(apic_bus_init(&f->bus, &fake_ops, f), 0);
	for (int i = 0; i < NCPU; i++)
		assert_int_equal(lapic_init(&f->l[i], &f->bus, i, (uint8_t)i, i == 0), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < NCPU; i++)
		lapic_destroy(&f->l[i]);
	free(f);
	return 0;
}

static uint32_t rd(struct lapic *l, uint32_t reg)
{
	uint32_t v = 0xdeadbeef;

	lapic_mmio_read(l, reg, &v, 4);
	return v;
}

static void wr(struct lapic *l, uint32_t reg, uint32_t v)
{
	lapic_mmio_write(l, reg, &v, 4);
}

/* What a guest does first: software-enable with spurious vector 0xff. */
static void enable(struct lapic *l)
{
	wr(l, LAPIC_SVR, APIC_SVR_ENABLE | 0xff);
}

static bool irr_has(struct lapic *l, int v)
{
	return rd(l, LAPIC_IRR + 0x10 * (uint32_t)(v / 32)) & (1u << (v % 32));
}

static bool isr_has(struct lapic *l, int v)
{
	return rd(l, LAPIC_ISR + 0x10 * (uint32_t)(v / 32)) & (1u << (v % 32));
}

static void send_ipi(struct lapic *l, uint8_t dest, uint32_t icr_lo)
{
	wr(l, LAPIC_ICR_HI, (uint32_t)dest << 24);
	wr(l, LAPIC_ICR_LO, icr_lo);
}

/* ---- reset ---- */

static void test_reset_state(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(rd(&f->l[0], LAPIC_ID), 0);
	assert_int_equal(rd(&f->l[1], LAPIC_ID), 1u << 24);
	assert_int_equal(rd(&f->l[0], LAPIC_LVR), LAPIC_VERSION);
	assert_int_equal(rd(&f->l[0], LAPIC_SVR), 0xff);
	assert_int_equal(rd(&f->l[0], LAPIC_DFR), 0xffffffff);
	/* The BSP is left in virtual-wire mode: LINT0 ExtINT, LINT1 NMI. */
	assert_int_equal(rd(&f->l[0], LAPIC_LVT_LINT0), APIC_DM_EXTINT << 8);
	assert_int_equal(rd(&f->l[0], LAPIC_LVT_LINT1), APIC_DM_NMI << 8);
	assert_int_equal(rd(&f->l[1], LAPIC_LVT_LINT0), APIC_LVT_MASKED);
	assert_int_equal(rd(&f->l[1], LAPIC_LVT_LINT1), APIC_LVT_MASKED);
	assert_int_equal(rd(&f->l[0], LAPIC_LVT_TIMER), APIC_LVT_MASKED);
	assert_int_equal(lapic_get_init_state(&f->l[0]), LAPIC_RUNNING);
	assert_int_equal(lapic_get_init_state(&f->l[1]), LAPIC_WAIT_FOR_SIPI);
	assert_int_equal(lapic_get_apic_base(&f->l[0]),
			 LAPIC_DEFAULT_BASE | APIC_BASE_ENABLE | APIC_BASE_BSP);
	assert_int_equal(lapic_get_apic_base(&f->l[1]), LAPIC_DEFAULT_BASE | APIC_BASE_ENABLE);
}

/* ---- timer ---- */

static void test_timer_oneshot(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	uint64_t t0 = f->now;

	enable(l);
	wr(l, LAPIC_TIMER_DCR, 0x0); /* divide by 2: 2 ns per tick at 1 GHz */
	wr(l, LAPIC_LVT_TIMER, 0x40);
	wr(l, LAPIC_TIMER_ICR, 1000);
	assert_int_equal(rd(l, LAPIC_TIMER_ICR), 1000);
	assert_int_equal(rd(l, LAPIC_TIMER_CCR), 1000);
	f->now = t0 + 500;
	assert_int_equal(rd(l, LAPIC_TIMER_CCR), 750);
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 2000);

	lapic_timer_update(l, t0 + 1999);
	assert_false(irr_has(l, 0x40));
	lapic_timer_update(l, t0 + 2000);
	assert_true(irr_has(l, 0x40));
	assert_int_equal(f->kicks[0], 1);
	/* One-shot: stopped at 0, nothing more to do. */
	f->now = t0 + 5000;
	assert_int_equal(rd(l, LAPIC_TIMER_CCR), 0);
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);
	assert_int_equal(lapic_ack_interrupt(l), 0x40);
}

static void test_timer_periodic(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	uint64_t t0 = f->now;

	enable(l);
	wr(l, LAPIC_TIMER_DCR, 0xb); /* divide by 1 */
	wr(l, LAPIC_LVT_TIMER, APIC_TIMER_PERIODIC | 0x41);
	wr(l, LAPIC_TIMER_ICR, 200000); /* 200 us */
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 200000);
	lapic_timer_update(l, t0 + 200000);
	assert_int_equal(lapic_ack_interrupt(l), 0x41);
	wr(l, LAPIC_EOI, 0);
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 400000);
	/* The count reloads: 50 us into the second period, 150000 remain. */
	f->now = t0 + 250000;
	assert_int_equal(rd(l, LAPIC_TIMER_CCR), 150000);

	/* Late by several periods: one interrupt, next boundary after now. */
	lapic_timer_update(l, t0 + 1050000);
	assert_int_equal(lapic_ack_interrupt(l), 0x41);
	assert_int_equal(lapic_get_interrupt(l), -1);
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 1200000);

	/* Masking keeps it counting but raises nothing. */
	wr(l, LAPIC_EOI, 0);
	wr(l, LAPIC_LVT_TIMER, APIC_TIMER_PERIODIC | APIC_LVT_MASKED | 0x41);
	lapic_timer_update(l, t0 + 1200000);
	assert_false(irr_has(l, 0x41));
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 1400000);
}

static void test_timer_periodic_clamped(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	enable(l);
	wr(l, LAPIC_TIMER_DCR, 0xb);
	wr(l, LAPIC_LVT_TIMER, APIC_TIMER_PERIODIC | 0x42);
	wr(l, LAPIC_TIMER_ICR, 1); /* 1 ns asked: the host is not a 1 GHz interrupt source */
	assert_int_equal(lapic_next_deadline_ns(l), f->now + LAPIC_MIN_PERIOD_NS);
	wr(l, LAPIC_TIMER_ICR, 0); /* writing 0 stops it */
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);
}

static void test_timer_divider(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	static const struct { uint32_t dcr; uint64_t div; } cases[] = {
		{ 0x0, 2 }, { 0x1, 4 }, { 0x2, 8 }, { 0x3, 16 },
		{ 0x8, 32 }, { 0x9, 64 }, { 0xa, 128 }, { 0xb, 1 },
	};

	enable(l);
	wr(l, LAPIC_LVT_TIMER, 0x43);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		wr(l, LAPIC_TIMER_DCR, cases[i].dcr);
		assert_int_equal(rd(l, LAPIC_TIMER_DCR), cases[i].dcr);
		wr(l, LAPIC_TIMER_ICR, 100);
		assert_int_equal(lapic_next_deadline_ns(l), f->now + 100 * cases[i].div);
	}
}

static void test_timer_tsc_deadline(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	uint64_t t0 = f->now;

	enable(l);
	/* Guest TSC = 3 GHz, 1e6 at t0. */
	lapic_set_tsc_clock(l, 3000000000ULL, t0, 1000000);
	/* Outside TSC-deadline mode the MSR ignores writes. */
	lapic_set_tsc_deadline(l, 2000000, t0);
	assert_int_equal(lapic_get_tsc_deadline(l), 0);

	wr(l, LAPIC_LVT_TIMER, APIC_TIMER_TSC_DEADLINE | 0x44);
	wr(l, LAPIC_TIMER_ICR, 12345); /* ignored in this mode */
	assert_int_equal(rd(l, LAPIC_TIMER_ICR), 0);
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);
	lapic_set_tsc_deadline(l, 1000000 + 3000, t0); /* 3000 ticks = 1 us ahead */
	assert_int_equal(lapic_get_tsc_deadline(l), 1003000);
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 1000);
	lapic_timer_update(l, t0 + 999);
	assert_false(irr_has(l, 0x44));
	lapic_timer_update(l, t0 + 1000);
	assert_true(irr_has(l, 0x44));
	assert_int_equal(lapic_get_tsc_deadline(l), 0); /* fired: reads 0 */
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);

	/* A deadline already past fires at the next update; 0 disarms. */
	lapic_set_tsc_deadline(l, 5, t0 + 2000);
	assert_int_equal(lapic_next_deadline_ns(l), t0 + 2000);
	lapic_set_tsc_deadline(l, 0, t0 + 2000);
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);

	/* Leaving the mode disarms. */
	lapic_set_tsc_deadline(l, 1000000 + 3000000, t0);
	wr(l, LAPIC_LVT_TIMER, 0x44);
	assert_int_equal(lapic_next_deadline_ns(l), UINT64_MAX);
}

/* ---- priority, ISR, EOI ---- */

static void fixed_to(struct fixture *f, uint8_t dest, uint8_t vector, bool level)
{
	struct apic_msg m = { .vector = vector, .dm = APIC_DM_FIXED, .level = level,
			      .assert = true, .dest = dest, .src_cpu = -1 };

	apic_bus_deliver(&f->bus, &m);
}

static void test_priority_and_eoi(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	enable(l);
	fixed_to(f, 0, 0x31, false);
	fixed_to(f, 0, 0x52, false);
	assert_true(irr_has(l, 0x31) && irr_has(l, 0x52));
	assert_int_equal(f->kicks[0], 2);

	/* Highest first; while it is in service its class blocks lower ones. */
	assert_int_equal(lapic_ack_interrupt(l), 0x52);
	assert_true(isr_has(l, 0x52));
	assert_false(irr_has(l, 0x52));
	assert_int_equal(rd(l, LAPIC_PPR), 0x50);
	assert_int_equal(lapic_get_interrupt(l), -1);
	/* A higher class nests. */
	fixed_to(f, 0, 0x61, false);
	assert_int_equal(lapic_ack_interrupt(l), 0x61);
	/* EOI retires the highest in-service vector. */
	wr(l, LAPIC_EOI, 0);
	assert_false(isr_has(l, 0x61));
	assert_true(isr_has(l, 0x52));
	wr(l, LAPIC_EOI, 0);
	assert_int_equal(rd(l, LAPIC_PPR), 0);
	assert_int_equal(f->nr_eois, 0); /* edge: nothing for the IOAPIC */

	/* TPR holds back classes at or below it. */
	wr(l, LAPIC_TPR, 0x40);
	assert_int_equal(lapic_get_interrupt(l), -1);
	wr(l, LAPIC_TPR, 0x20);
	assert_int_equal(lapic_ack_interrupt(l), 0x31);
	wr(l, LAPIC_EOI, 0);
	assert_int_equal(lapic_get_interrupt(l), -1);

	/* Only a higher class beats PPR (SDM 11.8.3.1): a vector of the class
	 * in service, or of TPR's class, waits however high it is within it. */
	wr(l, LAPIC_TPR, 0);
	fixed_to(f, 0, 0x81, false);
	assert_int_equal(lapic_ack_interrupt(l), 0x81);
	fixed_to(f, 0, 0x8f, false);
	assert_int_equal(lapic_get_interrupt(l), -1);
	wr(l, LAPIC_EOI, 0);
	wr(l, LAPIC_TPR, 0x80);
	assert_int_equal(lapic_get_interrupt(l), -1);
	wr(l, LAPIC_TPR, 0x70);
	assert_int_equal(lapic_ack_interrupt(l), 0x8f);
}

static void test_level_eoi_broadcast(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	enable(l);
	fixed_to(f, 0, 0x70, true);
	assert_true(rd(l, LAPIC_TMR + 0x30) & (1u << 16));
	assert_int_equal(lapic_ack_interrupt(l), 0x70);
	wr(l, LAPIC_EOI, 0);
	assert_int_equal(f->nr_eois, 1);
	assert_int_equal(f->eois[0], 0x70);
}

static void test_sw_disabled(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	/* Software-disabled: fixed messages are dropped... */
	fixed_to(f, 0, 0x80, false);
	assert_false(irr_has(l, 0x80));
	/* ...but a vector put into IRR directly is still dispatched. */
	lapic_set_irr(l, 0x81);
	assert_int_equal(f->kicks[0], 1);
	assert_int_equal(lapic_ack_interrupt(l), 0x81);
	/* LVT writes stay masked while disabled. */
	wr(l, LAPIC_LVT_TIMER, 0x45);
	assert_int_equal(rd(l, LAPIC_LVT_TIMER), APIC_LVT_MASKED | 0x45);
	/* Illegal vectors never reach IRR. */
	enable(l);
	fixed_to(f, 0, 0x05, false);
	assert_int_equal(rd(l, LAPIC_IRR), 0);
}

/* ---- IPIs ---- */

static void start_ap(struct fixture *f)
{
	lapic_set_init_state(&f->l[1], LAPIC_RUNNING);
	enable(&f->l[1]);
}

static void test_ipi_fixed_and_shorthands(void **state)
{
	struct fixture *f = *state;

	enable(&f->l[0]);
	start_ap(f);
	send_ipi(&f->l[0], 1, 0x90); /* fixed, physical, to APIC 1 */
	assert_true(irr_has(&f->l[1], 0x90));
	assert_false(irr_has(&f->l[0], 0x90));

	send_ipi(&f->l[0], 0, (3u << 18) | 0x91); /* all excluding self */
	assert_true(irr_has(&f->l[1], 0x91));
	assert_false(irr_has(&f->l[0], 0x91));
	send_ipi(&f->l[1], 0, (2u << 18) | 0x92); /* all including self */
	assert_true(irr_has(&f->l[0], 0x92) && irr_has(&f->l[1], 0x92));
	send_ipi(&f->l[1], 0, (1u << 18) | 0x93); /* self */
	assert_true(irr_has(&f->l[1], 0x93));
	assert_false(irr_has(&f->l[0], 0x93));
	send_ipi(&f->l[0], 0xff, 0x94); /* physical broadcast */
	assert_true(irr_has(&f->l[0], 0x94) && irr_has(&f->l[1], 0x94));

	/* An illegal vector is refused at the sender (ESR after a write). */
	send_ipi(&f->l[0], 1, 0x03);
	wr(&f->l[0], LAPIC_ESR, 0);
	assert_int_equal(rd(&f->l[0], LAPIC_ESR), APIC_ESR_SEND_ILLEGAL);
}

static void test_ipi_logical(void **state)
{
	struct fixture *f = *state;

	enable(&f->l[0]);
	start_ap(f);
	/* Flat model: one bit per APIC. */
	wr(&f->l[0], LAPIC_LDR, 0x01u << 24);
	wr(&f->l[1], LAPIC_LDR, 0x02u << 24);
	send_ipi(&f->l[0], 0x02, (1u << 11) | 0xa0);
	assert_true(irr_has(&f->l[1], 0xa0));
	assert_false(irr_has(&f->l[0], 0xa0));
	send_ipi(&f->l[0], 0x03, (1u << 11) | 0xa1);
	assert_true(irr_has(&f->l[0], 0xa1) && irr_has(&f->l[1], 0xa1));

	/* Cluster model: high nibble cluster, low nibble members. */
	for (int i = 0; i < NCPU; i++)
		wr(&f->l[i], LAPIC_DFR, 0x0fffffff);
	wr(&f->l[0], LAPIC_LDR, 0x21u << 24);
	wr(&f->l[1], LAPIC_LDR, 0x31u << 24);
	send_ipi(&f->l[0], 0x31, (1u << 11) | 0xa2);
	assert_true(irr_has(&f->l[1], 0xa2));
	assert_false(irr_has(&f->l[0], 0xa2));

	/* Lowest priority goes to one APIC of the set: tarn's arbitration is
	 * the lowest APIC ID (deterministic: the same CPU every time). */
	send_ipi(&f->l[1], 0xff, (1u << 11) | (APIC_DM_LOWEST << 8) | 0xa3);
	assert_true(irr_has(&f->l[0], 0xa3));
	assert_false(irr_has(&f->l[1], 0xa3));
}

static void test_init_sipi(void **state)
{
	struct fixture *f = *state;
	struct lapic *ap = &f->l[1];

	enable(&f->l[0]);
	assert_int_equal(lapic_take_sipi(ap), -1);
	/* Linux: INIT assert (level), then SIPI twice. */
	send_ipi(&f->l[0], 1, (1u << 15) | (1u << 14) | (APIC_DM_INIT << 8));
	assert_true(lapic_take_init(ap));
	assert_false(lapic_take_init(ap));
	assert_int_equal(lapic_get_init_state(ap), LAPIC_WAIT_FOR_SIPI);
	send_ipi(&f->l[0], 1, (APIC_DM_SIPI << 8) | 0x9a);
	send_ipi(&f->l[0], 1, (APIC_DM_SIPI << 8) | 0x9b); /* before the AP ran: ignored */
	assert_int_equal(lapic_take_sipi(ap), 0x9a);
	assert_int_equal(lapic_get_init_state(ap), LAPIC_RUNNING);
	send_ipi(&f->l[0], 1, (APIC_DM_SIPI << 8) | 0x9c); /* running: ignored */
	assert_int_equal(lapic_take_sipi(ap), -1);
	/* INIT de-assert does nothing. */
	send_ipi(&f->l[0], 1, (1u << 15) | (APIC_DM_INIT << 8));
	assert_false(lapic_take_init(ap));
	/* INIT resets the registers but keeps the ID. */
	enable(ap);
	send_ipi(&f->l[0], 1, (1u << 14) | (APIC_DM_INIT << 8));
	assert_int_equal(rd(ap, LAPIC_SVR), 0xff);
	assert_int_equal(rd(ap, LAPIC_ID), 1u << 24);
}

static void test_nmi(void **state)
{
	struct fixture *f = *state;

	enable(&f->l[0]);
	start_ap(f);
	send_ipi(&f->l[0], 1, APIC_DM_NMI << 8);
	assert_true(lapic_has_nmi(&f->l[1]));
	assert_true(lapic_take_nmi(&f->l[1]));
	assert_false(lapic_take_nmi(&f->l[1]));
	/* LINT1 as NMI (the BSP's reset state): a rising edge. */
	lapic_set_lint(&f->l[0], 1, 1);
	assert_true(lapic_take_nmi(&f->l[0]));
	lapic_set_lint(&f->l[0], 1, 1); /* still high: no new edge */
	assert_false(lapic_take_nmi(&f->l[0]));
}

static void test_extint_virtual_wire(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];

	f->extint_vector = 0x08;
	assert_false(lapic_has_extint(l));
	lapic_set_lint(l, 0, 1); /* the PIC's INTR */
	assert_int_equal(f->kicks[0], 1);
	assert_true(lapic_has_extint(l));
	assert_int_equal(lapic_ack_extint(l), 0x08);
	lapic_set_lint(l, 0, 0);
	assert_false(lapic_has_extint(l));
	assert_int_equal(lapic_ack_extint(l), -1);
	/* Masking LINT0 (what Linux does once it uses the IOAPIC). */
	wr(l, LAPIC_LVT_LINT0, APIC_LVT_MASKED | (APIC_DM_EXTINT << 8));
	lapic_set_lint(l, 0, 1);
	assert_false(lapic_has_extint(l));
	/* Unmasking while INTR is high makes it pending again. */
	enable(l);
	wr(l, LAPIC_LVT_LINT0, APIC_DM_EXTINT << 8);
	assert_true(lapic_has_extint(l));
	/* An ExtINT message (IOAPIC pin in ExtINT mode) works too. */
	lapic_set_lint(l, 0, 0);
	apic_bus_deliver(&f->bus, &(struct apic_msg){ .dm = APIC_DM_EXTINT, .dest = 0, .src_cpu = -1 });
	assert_true(lapic_has_extint(l));
	assert_int_equal(lapic_ack_extint(l), 0x08);
	assert_false(lapic_has_extint(l));
}

/* ---- registers and IA32_APIC_BASE ---- */

static void test_registers(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	uint8_t b = 0;
	uint16_t h = 0;

	wr(l, LAPIC_TPR, 0x1234);
	assert_int_equal(rd(l, LAPIC_TPR), 0x34);
	/* Sub-word reads of one register. */
	lapic_mmio_read(l, LAPIC_LVR, &b, 1);
	assert_int_equal(b, LAPIC_VERSION & 0xff);
	lapic_mmio_read(l, LAPIC_LVR + 2, &h, 2);
	assert_int_equal(h, LAPIC_VERSION >> 16);
	/* Unaligned or narrow writes are dropped. */
	lapic_mmio_write(l, LAPIC_TPR + 1, &(uint32_t){ 0x77 }, 4);
	lapic_mmio_write(l, LAPIC_TPR, &(uint8_t){ 0x77 }, 1);
	assert_int_equal(rd(l, LAPIC_TPR), 0x34);
	/* Read-only registers ignore writes. */
	wr(l, LAPIC_LVR, 0);
	assert_int_equal(rd(l, LAPIC_LVR), LAPIC_VERSION);
	/* A reserved register sets "illegal register address". */
	enable(l);
	wr(l, 0x3f0, 1);
	wr(l, LAPIC_ESR, 0);
	assert_int_equal(rd(l, LAPIC_ESR), APIC_ESR_ILLEGAL_REG);
	wr(l, LAPIC_ESR, 0);
	assert_int_equal(rd(l, LAPIC_ESR), 0);
}

static void test_apic_base(void **state)
{
	struct fixture *f = *state;
	struct lapic *l = &f->l[0];
	uint64_t base = lapic_get_apic_base(l);

	assert_true(lapic_owns_gpa(l, LAPIC_DEFAULT_BASE));
	assert_true(lapic_owns_gpa(l, LAPIC_DEFAULT_BASE + 0xfff));
	assert_false(lapic_owns_gpa(l, LAPIC_DEFAULT_BASE + 0x1000));
	/* x2APIC is not offered; reserved bits are refused. */
	assert_int_equal(lapic_set_apic_base(l, base | APIC_BASE_X2APIC), -EINVAL);
	assert_int_equal(lapic_set_apic_base(l, base | 1), -EINVAL);
	/* Relocation. */
	assert_int_equal(lapic_set_apic_base(l, 0xfed00000ULL | APIC_BASE_ENABLE | APIC_BASE_BSP), 0);
	assert_true(lapic_owns_gpa(l, 0xfed00020ULL));
	assert_false(lapic_owns_gpa(l, LAPIC_DEFAULT_BASE));
	/* Disabling hides the page, drops messages and loses the state. */
	enable(l);
	assert_int_equal(lapic_set_apic_base(l, 0xfed00000ULL | APIC_BASE_BSP), 0);
	assert_false(lapic_owns_gpa(l, 0xfed00020ULL));
	fixed_to(f, 0, 0x40, false);
	assert_int_equal(lapic_get_interrupt(l), -1);
	assert_int_equal(lapic_set_apic_base(l, base), 0);
	assert_int_equal(rd(l, LAPIC_SVR), 0xff);
	assert_int_equal(rd(l, LAPIC_IRR + 0x20), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_reset_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_oneshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_periodic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_periodic_clamped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_divider, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_tsc_deadline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority_and_eoi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_level_eoi_broadcast, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sw_disabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipi_fixed_and_shorthands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ipi_logical, setup, teardown),
		cmocka_unit_test_setup_teardown(test_init_sipi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_nmi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_extint_virtual_wire, setup, teardown),
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_apic_base, setup, teardown),
	};

	return cmocka_run_group_tests_name("lapic", tests, NULL, NULL);
}
