/* The 8254 PIT (hw/pit.c) on a fake clock: what Linux uses it for — channel
 * 0 as the periodic (mode 2) or one-shot (mode 0) tick on IRQ 0, channel 2
 * with its gate and OUT on port 0x61 to calibrate the TSC — plus mode 3,
 * the counter latch and read-back commands, byte access modes and BCD. */
#include "unit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "hw/pit.h"

#define T0 5000000000ULL /* an arbitrary CLOCK_MONOTONIC origin */

struct fixture {
	struct pit pit;
	int pulses;	 /* rising edges seen on IRQ 0 */
	int level;
	int changed;
	uint64_t now;
};

static void fake_irq(void *opaque, int level)
{
	struct fixture *f = opaque;

	if (level && !f->level)
		f->pulses++;
	f->level = level;
}

static void fake_changed(void *opaque)
{
	struct fixture *f = opaque;

	f->changed++;
}

static uint64_t fake_now(void *opaque)
{
	struct fixture *f = opaque;

	return f->now;
}

static const struct pit_ops ops = { .irq = fake_irq, .now_ns = fake_now, .timer_changed = fake_changed };

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(pit_init(&f->pit, NULL, &ops, f), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pit_destroy(&f->pit);
	free(f);
	return 0;
}

/* The first nanosecond after base at which n input clocks have passed. */
static uint64_t at_from(uint64_t base, uint64_t n)
{
	return base + (n * 1000000000ULL + PIT_FREQ_HZ - 1) / PIT_FREQ_HZ;
}

static uint64_t at(uint64_t n)
{
	return at_from(T0, n);
}

static void out(struct fixture *f, uint16_t port, uint8_t v, uint64_t now)
{
	pit_ioport_write(&f->pit, port, v, now);
}

static uint8_t in(struct fixture *f, uint16_t port, uint64_t now)
{
	return pit_ioport_read(&f->pit, port, now);
}

static unsigned read16(struct fixture *f, uint16_t port, uint64_t now)
{
	unsigned lo = in(f, port, now);

	return lo | (unsigned)in(f, port, now) << 8;
}

/* Channel 0, lobyte/hibyte, mode m, binary, count c, loaded at T0. */
static void program0(struct fixture *f, unsigned m, unsigned c)
{
	out(f, 0x43, (uint8_t)(0x30 | m << 1), T0);
	out(f, 0x40, (uint8_t)c, T0);
	out(f, 0x40, (uint8_t)(c >> 8), T0);
}

static void test_mode2_periodic(void **state)
{
	struct fixture *f = *state;

	program0(f, 2, 1193); /* ~1 kHz, as HZ=1000 */
	assert_true(f->changed > 0);
	assert_int_equal(read16(f, 0x40, T0), 1193);
	assert_int_equal(read16(f, 0x40, at(100)), 1093);
	assert_int_equal(read16(f, 0x40, at(1192)), 1);
	assert_int_equal(read16(f, 0x40, at(1193)), 1193); /* reloaded */
	/* OUT low for the one clock at count 1, else high. */
	assert_true(pit_get_out(&f->pit, 0, at(1191)));
	assert_false(pit_get_out(&f->pit, 0, at(1192)));
	assert_true(pit_get_out(&f->pit, 0, at(1193)));

	/* IRQ 0 at every reload. */
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(1193));
	pit_update(&f->pit, at(1193) - 1);
	assert_int_equal(f->pulses, 0);
	pit_update(&f->pit, at(1193));
	assert_int_equal(f->pulses, 1);
	assert_int_equal(f->level, 0); /* a pulse: up, then down */
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(2 * 1193));
	/* Late by many periods: one pulse, next edge after now. */
	pit_update(&f->pit, at(10 * 1193 + 5));
	assert_int_equal(f->pulses, 2);
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(11 * 1193));
}

static void test_mode0_oneshot(void **state)
{
	struct fixture *f = *state;

	program0(f, 0, 500);
	assert_false(pit_get_out(&f->pit, 0, at(499)));
	assert_true(pit_get_out(&f->pit, 0, at(500)));
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(500));
	pit_update(&f->pit, at(500));
	assert_int_equal(f->pulses, 1);
	assert_int_equal(pit_next_deadline_ns(&f->pit), UINT64_MAX);
	/* The counter keeps counting down (wrapping) after terminal count. */
	assert_int_equal(read16(f, 0x40, at(510)), 65526);
	/* A new count restarts it. */
	out(f, 0x40, 0x10, at(600));
	out(f, 0x40, 0x00, at(600));
	assert_false(pit_get_out(&f->pit, 0, at(601)));
}

/* A count of 0 is the largest count, 65536 (10000 in BCD): the BIOS's
 * 18.2 Hz tick, which DOS-era code and some boot loaders still program. */
static void test_count_zero(void **state)
{
	struct fixture *f = *state;

	program0(f, 2, 0);
	assert_int_equal(read16(f, 0x40, at(1)), 65535);
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(65536));
	pit_update(&f->pit, at(65536));
	assert_int_equal(f->pulses, 1);
	assert_int_equal(pit_next_deadline_ns(&f->pit), at(2 * 65536));
	/* One-shot: OUT rises after 65536 clocks, not at once. */
	program0(f, 0, 0);
	assert_false(pit_get_out(&f->pit, 0, at(65535)));
	assert_true(pit_get_out(&f->pit, 0, at(65536)));
	/* BCD: 0 counts 10000, read back as 9999 one clock later. */
	out(f, 0x43, 0x35, T0);
	out(f, 0x40, 0x00, T0);
	out(f, 0x40, 0x00, T0);
	assert_int_equal(read16(f, 0x40, at(1)), 0x9999);
}

static void test_mode3_square_wave(void **state)
{
	struct fixture *f = *state;

	program0(f, 3, 100);
	/* Counts down by two, twice per period; OUT high for the first half. */
	assert_int_equal(read16(f, 0x40, at(10)), 80);
	assert_true(pit_get_out(&f->pit, 0, at(49)));
	assert_false(pit_get_out(&f->pit, 0, at(50)));
	assert_int_equal(read16(f, 0x40, at(60)), 80);
	assert_false(pit_get_out(&f->pit, 0, at(99)));
	assert_true(pit_get_out(&f->pit, 0, at(100)));
	/* 100 clocks is 84 us: IRQ 0 is held to PIT_MIN_PERIOD_NS (10 kHz). */
	assert_int_equal(pit_next_deadline_ns(&f->pit), T0 + PIT_MIN_PERIOD_NS);
}

static void test_latch(void **state)
{
	struct fixture *f = *state;

	program0(f, 2, 1000);
	out(f, 0x43, 0x00, at(100)); /* counter latch, channel 0 */
	out(f, 0x43, 0x00, at(200)); /* a second latch before the read: ignored */
	assert_int_equal(in(f, 0x40, at(300)), 900 & 0xff);
	assert_int_equal(in(f, 0x40, at(400)), 900 >> 8);
	/* Unlatched again: the live count. */
	assert_int_equal(read16(f, 0x40, at(500)), 500);
}

static void test_read_back(void **state)
{
	struct fixture *f = *state;
	uint8_t status;

	program0(f, 2, 1000);
	out(f, 0x43, 0xc2, at(250)); /* read-back: count and status of channel 0 */
	status = in(f, 0x40, at(300));
	/* OUT high, count loaded, RW lobyte/hibyte, mode 2, binary. */
	assert_int_equal(status, 0x80 | 0x30 | 2 << 1);
	assert_int_equal(read16(f, 0x40, at(300)), 750);
	/* Status only (bit 5 set: no count latch). */
	out(f, 0x43, 0xe2, at(400));
	assert_int_equal(in(f, 0x40, at(400)), status);
	assert_int_equal(read16(f, 0x40, at(400)), 600);
	/* After a control word, before the count: null count set. */
	out(f, 0x43, 0x34, at(500));
	out(f, 0x43, 0xe2, at(500));
	assert_int_equal(in(f, 0x40, at(500)) & 0x40, 0x40);
}

static void test_byte_modes_and_bcd(void **state)
{
	struct fixture *f = *state;

	/* LSB only. */
	out(f, 0x43, 0x14, T0); /* channel 0, LSB, mode 2 */
	out(f, 0x40, 200, T0);
	assert_int_equal(in(f, 0x40, at(50)), 150);
	assert_int_equal(in(f, 0x40, at(50)), 150);
	/* MSB only: count = 0x0200. */
	out(f, 0x43, 0x24, T0);
	out(f, 0x40, 0x02, T0);
	assert_int_equal(in(f, 0x40, at(256)), 0x01);
	/* BCD: count 1000 (written 0x1000), read back in BCD. */
	out(f, 0x43, 0x35, T0);
	out(f, 0x40, 0x00, T0);
	out(f, 0x40, 0x10, T0);
	assert_int_equal(read16(f, 0x40, at(1)), 0x0999);
	assert_int_equal(read16(f, 0x40, at(123)), 0x0877);
}

static void test_channel2_gate_port61(void **state)
{
	struct fixture *f = *state;
	uint64_t t1 = T0 + 1000000000ULL, t2 = t1 + 1000000000ULL;

	/* Linux's pit_calibrate_tsc(): gate on, speaker off, mode 0 on
	 * channel 2, then poll OUT2 (port 0x61 bit 5). */
	out(f, 0x61, 0x01, T0);
	assert_int_equal(in(f, 0x61, T0) & 0x03, 0x01);
	out(f, 0x43, 0xb0, T0);
	out(f, 0x42, 0xe8, T0);
	out(f, 0x42, 0x03, T0); /* 1000 clocks */
	assert_int_equal(in(f, 0x61, at(999)) & 0x20, 0);
	assert_int_equal(in(f, 0x61, at(1000)) & 0x20, 0x20);
	assert_int_equal(f->pulses, 0); /* channel 2 is not IRQ 0 */

	/* Gate low pauses mode 0; high resumes where it stopped. Paused for
	 * exactly one second, so the clock arithmetic stays exact. */
	out(f, 0x43, 0xb0, t1);
	out(f, 0x42, 0xe8, t1);
	out(f, 0x42, 0x03, t1);
	out(f, 0x61, 0x00, at_from(t1, 100));
	assert_int_equal(read16(f, 0x42, at_from(t1, 5000)), 900);
	assert_false(pit_get_out(&f->pit, 2, at_from(t1, 5000)));
	out(f, 0x61, 0x01, at_from(t2, 100));
	assert_int_equal(read16(f, 0x42, at_from(t2, 200)), 800);
	assert_false(pit_get_out(&f->pit, 2, at_from(t2, 999)));
	assert_true(pit_get_out(&f->pit, 2, at_from(t2, 1000)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_mode2_periodic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode0_oneshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_count_zero, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mode3_square_wave, setup, teardown),
		cmocka_unit_test_setup_teardown(test_latch, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_byte_modes_and_bcd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_channel2_gate_port61, setup, teardown),
	};

	return cmocka_run_group_tests_name("pit", tests, NULL, NULL);
}
