/* Legacy PC devices through the PIO bus: the i8042 (probe and reset), the
 * CMOS RTC, port 0x80 and the debug-exit port. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_vm.h"
#include "hw/legacy.h"

/* IRQ 1 as the interrupt controller sees it. */
static int irq1, irq1_edges;

static int fake_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	if (gsi == 1) {
		irq1_edges += level && !irq1;
		irq1 = level;
	}
	return 0;
}

static const struct devctx_ops kbc_ops = { .irq_line = fake_irq_line, .request_stop = fake_vm_stop };

struct fixture {
	struct fake_vm vm;
	struct i8042 kbc;
	struct cmos_rtc rtc;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	fake_vm_init(&f->vm, &kbc_ops);
	irq1 = 0;
	irq1_edges = 0;
	assert_int_equal(i8042_init(&f->kbc, &f->vm.ctx), 0);
	assert_int_equal(cmos_rtc_init(&f->rtc, &f->vm.ctx), 0);
	assert_int_equal(debug_ports_init(&f->vm.ctx), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	fake_vm_destroy(&f->vm);
	free(f);
	return 0;
}

static uint8_t inb(struct fixture *f, uint16_t port)
{
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->vm.pio, port, &v, 1, false), 0);
	return v;
}

static void outb(struct fixture *f, uint16_t port, uint8_t v)
{
	assert_int_equal(bus_access(&f->vm.pio, port, &v, 1, true), 0);
}

/* ---- i8042 ---- */

static void test_i8042_status(void **state)
{
	struct fixture *f = *state;

	/* Status port 0x64: system flag set (POST passed), keyboard not
	 * inhibited, output buffer empty. Linux's i8042 probe and its reboot
	 * path read this. */
	assert_int_equal(inb(f, 0x64), 0x14);
	assert_false(f->vm.stopping);
}

static void test_i8042_self_test(void **state)
{
	struct fixture *f = *state;

	outb(f, 0x64, 0xaa); /* controller self test */
	assert_int_equal(inb(f, 0x64) & 0x01, 0x01); /* OBF: a reply waits */
	assert_int_equal(inb(f, 0x60), 0x55);
	assert_int_equal(inb(f, 0x64) & 0x01, 0x00);
	outb(f, 0x64, 0xab); /* keyboard interface test */
	assert_int_equal(inb(f, 0x64) & 0x01, 0x01);
	assert_int_equal(inb(f, 0x60), 0x00);
	assert_int_equal(inb(f, 0x64) & 0x01, 0x00);
}

static void test_i8042_cmd_byte(void **state)
{
	struct fixture *f = *state;

	outb(f, 0x64, 0x20); /* read command byte */
	assert_int_equal(inb(f, 0x60), 0x30);
	outb(f, 0x64, 0x60); /* write command byte */
	outb(f, 0x60, 0x45);
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60), 0x45);
	/* The data byte went to the command byte, not the output buffer. */
	assert_int_equal(inb(f, 0x64) & 0x01, 0x00);
	outb(f, 0x64, 0xad); /* disable keyboard: sets bit 4 */
	outb(f, 0x64, 0x20);
	assert_int_equal(inb(f, 0x60), 0x55);
	assert_false(f->vm.stopping);
}

static void test_i8042_reset(void **state)
{
	struct fixture *f = *state;

	assert_false(f->vm.stopping);
	/* What Linux's reboot=k and the FADT's RESET_REG both do. */
	outb(f, 0x64, 0xfe);
	assert_true(f->vm.stopping);
	assert_int_equal(f->vm.status, VM_EXIT_RESET);
}

static void test_i8042_data_write_no_reset(void **state)
{
	struct fixture *f = *state;

	/* 0xfe written to the data port is a keyboard command (resend), not
	 * a reset. */
	outb(f, 0x60, 0xfe);
	assert_false(f->vm.stopping);
}

/* The guest reads n bytes from the output buffer; each one interrupts. */
static void expect_bytes(struct fixture *f, const uint8_t *want, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		assert_int_equal(irq1, 1);
		assert_int_equal(inb(f, 0x64) & 0x01, 0x01);
		assert_int_equal(inb(f, 0x60), want[i]);
	}
	assert_int_equal(inb(f, 0x64) & 0x01, 0x00);
	assert_int_equal(irq1, 0);
}

/* What Linux's i8042 and atkbd drivers do at boot: interrupts on, the
 * keyboard identified, reset, its scan-code set asked, enabled. */
static void test_keyboard_probe(void **state)
{
	struct fixture *f = *state;

	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x01); /* IRQ 1 on, keyboard on, no translation */
	outb(f, 0x60, 0xf2); /* identify */
	expect_bytes(f, (const uint8_t[]){ 0xfa, 0xab, 0x83 }, 3);
	assert_int_equal(irq1_edges, 3);
	outb(f, 0x60, 0xff); /* reset */
	expect_bytes(f, (const uint8_t[]){ 0xfa, 0xaa }, 2);
	outb(f, 0x60, 0xf0); /* which scan-code set? */
	outb(f, 0x60, 0x00);
	expect_bytes(f, (const uint8_t[]){ 0xfa, 0xfa, 0x02 }, 3);
	outb(f, 0x60, 0xed); /* LEDs, with their argument */
	outb(f, 0x60, 0x07);
	outb(f, 0x60, 0xf4); /* enable */
	expect_bytes(f, (const uint8_t[]){ 0xfa, 0xfa, 0xfa }, 3);
	/* Interrupts off: the bytes wait without one. */
	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x00);
	outb(f, 0x60, 0xee); /* echo */
	assert_int_equal(irq1, 0);
	assert_int_equal(inb(f, 0x60), 0xee);
}

static void test_ctrl_alt_del(void **state)
{
	struct fixture *f = *state;
	static const uint8_t set2[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	static const uint8_t set1[] = { 0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d };

	/* The keyboard is off until the guest turns it on. */
	assert_int_equal(i8042_ctrl_alt_del(&f->kbc), -EAGAIN);
	assert_int_equal(inb(f, 0x64) & 0x01, 0x00);
	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x01);
	assert_int_equal(i8042_ctrl_alt_del(&f->kbc), 0);
	assert_int_equal(i8042_ctrl_alt_del(&f->kbc), -EBUSY); /* not read yet */
	expect_bytes(f, set2, sizeof(set2));
	/* With translation on, the guest reads set 1. */
	outb(f, 0x64, 0x60);
	outb(f, 0x60, 0x41);
	assert_int_equal(i8042_ctrl_alt_del(&f->kbc), 0);
	expect_bytes(f, set1, sizeof(set1));
	assert_false(f->vm.stopping);
}

/* ---- RTC ---- */

static uint8_t cmos_read(struct fixture *f, uint8_t idx)
{
	outb(f, 0x70, idx);
	return inb(f, 0x71);
}

static int from_bcd(uint8_t v)
{
	assert_true((v & 0x0f) <= 9);
	assert_true((v >> 4) <= 9);
	return (v >> 4) * 10 + (v & 0x0f);
}

static void test_rtc_regs(void **state)
{
	struct fixture *f = *state;
	uint8_t b = cmos_read(f, 0x0b);

	assert_true(b & 0x02);	  /* 24-hour */
	assert_false(b & 0x04);	  /* BCD, not binary */
	assert_false(b & 0x70);	  /* no interrupts enabled */
	assert_false(cmos_read(f, 0x0a) & 0x80); /* no update in progress */
	assert_true(cmos_read(f, 0x0d) & 0x80);	 /* battery good */
}

static void test_rtc_time(void **state)
{
	struct fixture *f = *state;

	for (int attempt = 0; attempt < 5; attempt++) {
		time_t before = time(NULL), after, t;
		struct tm tm = { 0 };

		tm.tm_sec = from_bcd(cmos_read(f, 0x00));
		tm.tm_min = from_bcd(cmos_read(f, 0x02));
		tm.tm_hour = from_bcd(cmos_read(f, 0x04));
		tm.tm_mday = from_bcd(cmos_read(f, 0x07));
		tm.tm_mon = from_bcd(cmos_read(f, 0x08)) - 1;
		tm.tm_year = from_bcd(cmos_read(f, 0x09)) + from_bcd(cmos_read(f, 0x32)) * 100 - 1900;
		after = time(NULL);
		if (from_bcd(cmos_read(f, 0x00)) != tm.tm_sec)
			continue; /* a second ticked mid-read: try again */
		t = timegm(&tm);
		if (t < before - 2 || t > after + 2)
			fail_msg("RTC says %lld, host says %lld", (long long)t, (long long)before);
		{
			struct tm now;

			gmtime_r(&t, &now);
			assert_int_equal(from_bcd(cmos_read(f, 0x06)), now.tm_wday + 1);
		}
		return;
	}
	fail_msg("could not read a consistent time");
}

static void test_rtc_ram(void **state)
{
	struct fixture *f = *state;

	for (unsigned i = 0x0e; i < 0x80; i++) {
		if (i == 0x32)
			continue; /* the century register */
		outb(f, 0x70, (uint8_t)i);
		outb(f, 0x71, (uint8_t)(i ^ 0xa5));
	}
	for (unsigned i = 0x0e; i < 0x80; i++) {
		if (i == 0x32)
			continue;
		if (cmos_read(f, (uint8_t)i) != (uint8_t)(i ^ 0xa5))
			fail_msg("CMOS byte %#x did not read back", i);
	}
	/* Bit 7 of the index is the NMI mask, not part of the index. */
	assert_int_equal(cmos_read(f, 0x80 | 0x40), 0x40 ^ 0xa5);
	assert_int_equal(cmos_read(f, 0x80 | 0x0b), 0x02);
	outb(f, 0x70, 0x80 | 0x50);
	outb(f, 0x71, 0x77);
	assert_int_equal(cmos_read(f, 0x50), 0x77);
	/* The clock is not writable (yet): writes to it are dropped. */
	outb(f, 0x70, 0x0b);
	outb(f, 0x71, 0x06);
	assert_int_equal(cmos_read(f, 0x0b), 0x02);
}

/* ---- port 0x80 and debug exit ---- */

static void test_port80(void **state)
{
	struct fixture *f = *state;

	for (unsigned v = 0; v < 256; v++)
		outb(f, 0x80, (uint8_t)v);
	assert_false(f->vm.stopping);
	assert_int_equal(inb(f, 0x80), 0xff);
}

static void test_debug_exit(void **state)
{
	struct fixture *f = *state;
	uint32_t v = 0x2a;

	assert_int_equal(bus_access(&f->vm.pio, DEBUG_EXIT_PORT, &v, 4, true), 0);
	assert_true(f->vm.stopping);
	assert_int_equal(f->vm.status, 0x55);
}

static void test_debug_exit_zero(void **state)
{
	struct fixture *f = *state;
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->vm.pio, DEBUG_EXIT_PORT, &v, 1, true), 0);
	assert_true(f->vm.stopping);
	assert_int_equal(f->vm.status, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_i8042_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_i8042_self_test, setup, teardown),
		cmocka_unit_test_setup_teardown(test_i8042_cmd_byte, setup, teardown),
		cmocka_unit_test_setup_teardown(test_i8042_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_i8042_data_write_no_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_keyboard_probe, setup, teardown),
		cmocka_unit_test_setup_teardown(test_ctrl_alt_del, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_regs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_time, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rtc_ram, setup, teardown),
		cmocka_unit_test_setup_teardown(test_port80, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debug_exit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_debug_exit_zero, setup, teardown),
	};

	return cmocka_run_group_tests_name("legacy", tests, NULL, NULL);
}
