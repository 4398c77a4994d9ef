/* ACPI PM1a registers and PM timer, driven through the port-I/O bus the way
 * a guest's in/out instructions reach them. The VM is a fake (fake_vm.h)
 * with a real bus, whose interrupt line records the SCI. */
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_vm.h"
#include "hw/acpi_pm.h"

static int sci_level = -1;
static unsigned sci_gsi;
static unsigned sci_calls;

static int fake_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	sci_gsi = gsi;
	sci_level = level;
	sci_calls++;
	return 0;
}

static const struct devctx_ops fake_ops = { .irq_line = fake_irq_line, .request_stop = fake_vm_stop };

struct fixture {
	struct fake_vm vm;
	struct acpi_pm pm;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	fake_vm_init(&f->vm, &fake_ops);
	sci_level = -1;
	sci_calls = 0;
	assert_int_equal(acpi_pm_init(&f->pm, &f->vm.ctx), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	acpi_pm_destroy(&f->pm);
	fake_vm_destroy(&f->vm);
	free(f);
	return 0;
}

static uint32_t in(struct fixture *f, uint16_t port, unsigned len)
{
	uint8_t d[8];
	memset(d, 0xff, sizeof(d)); /* as the bus presets unused bytes */
	bus_access(&f->vm.pio, port, d, len, false);
	uint32_t v = 0;
	for (unsigned i = 0; i < len && i < 4; i++)
		v |= (uint32_t)d[i] << (8 * i);
	return v;
}

static void out(struct fixture *f, uint16_t port, uint32_t v, unsigned len)
{
	uint8_t d[8] = { 0 };
	for (unsigned i = 0; i < len && i < 4; i++)
		d[i] = (uint8_t)(v >> (8 * i));
	bus_access(&f->vm.pio, port, d, len, true);
}

#define STS ACPI_PM1A_EVT_PORT
#define EN (ACPI_PM1A_EVT_PORT + 2)
#define CNT ACPI_PM1A_CNT_PORT
#define TMR ACPI_PM_TMR_PORT

static uint16_t slp(unsigned typ)
{
	return (uint16_t)(typ << ACPI_PM1_CNT_SLP_TYP_SHIFT);
}

static void test_s5_powers_off(void **state)
{
	struct fixture *f = *state;
	/* What Linux does: SLP_TYP alone first, then with SLP_EN. */
	out(f, CNT, ACPI_PM1_CNT_SCI_EN | slp(ACPI_SLP_TYP_S5), 2);
	assert_false(f->vm.stopping);
	out(f, CNT, ACPI_PM1_CNT_SCI_EN | slp(ACPI_SLP_TYP_S5) | ACPI_PM1_CNT_SLP_EN, 2);
	assert_true(f->vm.stopping);
	assert_int_equal(f->vm.status, VM_EXIT_POWEROFF);
}

static void test_s5_by_high_byte(void **state)
{
	struct fixture *f = *state;
	/* SLP_TYP and SLP_EN both live in the high byte: a byte write there
	 * is a complete request. */
	out(f, CNT + 1, (uint32_t)(slp(ACPI_SLP_TYP_S5) | ACPI_PM1_CNT_SLP_EN) >> 8, 1);
	assert_true(f->vm.stopping);
	assert_int_equal(f->vm.status, VM_EXIT_POWEROFF);
}

static void test_other_sleep_types_do_not_stop(void **state)
{
	struct fixture *f = *state;
	for (unsigned typ = 0; typ < 8; typ++) {
		if (typ == ACPI_SLP_TYP_S5)
			continue;
		out(f, CNT, slp(typ) | ACPI_PM1_CNT_SLP_EN, 2);
		assert_false(f->vm.stopping);
		/* The guest is woken at once rather than left waiting. */
		assert_true(in(f, STS, 2) & ACPI_PM1_WAK_STS);
		out(f, STS, ACPI_PM1_WAK_STS, 2);
		assert_int_equal(in(f, STS, 2) & ACPI_PM1_WAK_STS, 0);
	}
	/* S5 in SLP_TYP but no SLP_EN: nothing yet. */
	out(f, CNT, slp(ACPI_SLP_TYP_S5), 2);
	assert_false(f->vm.stopping);
	/* SLP_EN in a write that misses the high byte cannot happen: a
	 * low-byte write carries neither SLP_EN nor SLP_TYP. */
	out(f, CNT, 0xff, 1);
	assert_false(f->vm.stopping);
}

static void test_cnt_reads(void **state)
{
	struct fixture *f = *state;
	/* Always in ACPI mode: SCI_EN reads 1 whatever is written. */
	assert_int_equal(in(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
	out(f, CNT, 0, 2);
	assert_int_equal(in(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
	/* SLP_TYP is kept; SLP_EN and GBL_RLS are strobes and read 0. */
	out(f, CNT, slp(3) | ACPI_PM1_CNT_GBL_RLS, 2);
	assert_int_equal(in(f, CNT, 2), ACPI_PM1_CNT_SCI_EN | slp(3));
	assert_int_equal(in(f, CNT + 1, 1), slp(3) >> 8);
	assert_int_equal(in(f, CNT, 1), ACPI_PM1_CNT_SCI_EN);
}

static void test_timer_advances(void **state)
{
	struct fixture *f = *state;
	uint32_t t0 = in(f, TMR, 4);
	struct timespec ts = { 0, 2 * 1000 * 1000 }; /* 2 ms */
	nanosleep(&ts, NULL);
	uint32_t t1 = in(f, TMR, 4);
	assert_int_equal(t0 & ~ACPI_PM_TMR_MASK, 0); /* 24-bit counter */
	assert_int_equal(t1 & ~ACPI_PM_TMR_MASK, 0);
	uint32_t delta = (t1 - t0) & ACPI_PM_TMR_MASK;
	/* 2 ms at 3.579545 MHz is 7159 ticks; sleeping can only add. */
	assert_true(delta >= 7100);

	/* Read-only: a write neither resets nor stops it. */
	out(f, TMR, 0, 4);
	uint32_t t2 = in(f, TMR, 4);
	assert_true(((t2 - t0) & ACPI_PM_TMR_MASK) >= delta);
}

static void test_status_write_one_to_clear(void **state)
{
	struct fixture *f = *state;
	assert_int_equal(in(f, STS, 2), 0);
	acpi_pm_set_status(&f->pm, ACPI_PM1_PWRBTN | ACPI_PM1_RTC);
	assert_int_equal(in(f, STS, 2), ACPI_PM1_PWRBTN | ACPI_PM1_RTC);
	/* Writing 0s changes nothing. */
	out(f, STS, 0, 2);
	assert_int_equal(in(f, STS, 2), ACPI_PM1_PWRBTN | ACPI_PM1_RTC);
	/* A 1 clears exactly its bit. */
	out(f, STS, ACPI_PM1_PWRBTN, 2);
	assert_int_equal(in(f, STS, 2), ACPI_PM1_RTC);
	/* Byte access to the high byte: RTC_STS is bit 10 = bit 2 there. */
	assert_int_equal(in(f, STS + 1, 1), ACPI_PM1_RTC >> 8);
	out(f, STS + 1, ACPI_PM1_RTC >> 8, 1);
	assert_int_equal(in(f, STS, 2), 0);
	/* Nothing was enabled, so the SCI never moved. */
	assert_int_equal(sci_calls, 0);
}

static void test_enable_bits_and_sci(void **state)
{
	struct fixture *f = *state;
	/* Only bits that exist stick: ACPICA reads GBL_EN back to decide
	 * whether the global lock works. */
	out(f, EN, 0xffff, 2);
	uint16_t en = (uint16_t)in(f, EN, 2);
	assert_true(en & ACPI_PM1_GBL);
	assert_true(en & ACPI_PM1_PWRBTN);
	assert_int_equal(en & (ACPI_PM1_BM_STS | ACPI_PM1_WAK_STS | 0x0800), 0);
	out(f, EN, 0, 2);
	assert_int_equal(in(f, EN, 2), 0);

	/* An enabled event raises the SCI (level, on GSI 9) until cleared. */
	out(f, EN, ACPI_PM1_PWRBTN, 2);
	assert_int_equal(sci_calls, 0);
	acpi_pm_set_status(&f->pm, ACPI_PM1_PWRBTN);
	assert_int_equal(sci_gsi, ACPI_SCI_IRQ);
	assert_int_equal(sci_level, 1);
	out(f, STS, ACPI_PM1_PWRBTN, 2);
	assert_int_equal(sci_level, 0);
	assert_int_equal(sci_calls, 2);

	/* Latched while disabled, raised when enabled, dropped when disabled. */
	acpi_pm_set_status(&f->pm, ACPI_PM1_SLPBTN);
	assert_int_equal(sci_calls, 2);
	out(f, EN, ACPI_PM1_SLPBTN, 2);
	assert_int_equal(sci_level, 1);
	out(f, EN, 0, 2);
	assert_int_equal(sci_level, 0);
	assert_int_equal(sci_calls, 4);
}

static void test_odd_accesses(void **state)
{
	struct fixture *f = *state;
	acpi_pm_set_status(&f->pm, ACPI_PM1_RTC);
	out(f, EN, ACPI_PM1_GBL, 2);

	/* Wrong widths and offsets read all-ones... */
	assert_int_equal(in(f, STS, 4), 0xffffffffu); /* STS+EN in one read */
	assert_int_equal(in(f, STS + 1, 2), 0xffff);  /* straddles STS/EN */
	assert_int_equal(in(f, CNT + 2, 2), 0xffff);  /* unused hole */
	assert_int_equal(in(f, CNT + 3, 1), 0xff);
	assert_int_equal(in(f, TMR, 1), 0xff);	       /* timer is 32-bit only */
	assert_int_equal(in(f, TMR, 2), 0xffff);
	assert_int_equal(in(f, TMR + 1, 1), 0xff);
	assert_int_equal(in(f, STS, 8), 0xffffffffu);
	/* ...and writes there are ignored. */
	out(f, STS, 0xffffffffu, 4);
	out(f, STS + 1, 0xffff, 2);
	out(f, EN, 0xffffffffu, 4);
	out(f, CNT, 0xffffffffu, 4);
	out(f, CNT + 2, 0xffff, 2);
	out(f, TMR, 0, 1);
	out(f, TMR + 2, 0, 2);
	uint8_t eight[8];
	memset(eight, 0xff, sizeof(eight));
	bus_access(&f->vm.pio, STS, eight, 8, true);
	/* Past the end of the block: the bus refuses, we see nothing. */
	assert_int_equal(bus_access(&f->vm.pio, ACPI_PM_BASE + ACPI_PM_LEN - 2, eight, 4, true),
			 -ENOENT);

	assert_int_equal(in(f, STS, 2), ACPI_PM1_RTC);
	assert_int_equal(in(f, EN, 2), ACPI_PM1_GBL);
	assert_int_equal(in(f, CNT, 2), ACPI_PM1_CNT_SCI_EN);
	assert_false(f->vm.stopping);
}

/* vCPU threads hit the block concurrently: state stays coherent. */
static void *hammer(void *arg)
{
	struct fixture *f = arg;
	for (int i = 0; i < 20000; i++) {
		out(f, EN, ACPI_PM1_RTC, 2);
		acpi_pm_set_status(&f->pm, ACPI_PM1_RTC);
		(void)in(f, STS, 2);
		out(f, STS, ACPI_PM1_RTC, 2);
		(void)in(f, TMR, 4);
		out(f, EN, 0, 2);
	}
	return NULL;
}

static void test_concurrent_access(void **state)
{
	struct fixture *f = *state;
	pthread_t t[4];
	for (int i = 0; i < 4; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, f), 0);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	out(f, EN, 0, 2);
	out(f, STS, 0xffff, 2);
	assert_int_equal(in(f, STS, 2), 0);
	/* Level changes reached the fake controller in order, ending low. */
	assert_int_equal(sci_level, 0);
	assert_int_equal(sci_calls % 2, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_s5_powers_off, setup, teardown),
		cmocka_unit_test_setup_teardown(test_s5_by_high_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_sleep_types_do_not_stop, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cnt_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_timer_advances, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_write_one_to_clear, setup, teardown),
		cmocka_unit_test_setup_teardown(test_enable_bits_and_sci, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odd_accesses, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_access, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
