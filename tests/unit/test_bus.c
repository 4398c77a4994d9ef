/* Port-I/O and MMIO dispatch: registration rules, lookups, and what an
 * access nobody claims (or one that straddles a device's end) does. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"

struct dev {
	int reads, writes;
	uint64_t last_off;
	unsigned last_len;
	uint8_t last_data[8];
	uint8_t fill;
};

static void dev_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct dev *d = opaque;

	d->reads++;
	d->last_off = off;
	d->last_len = len;
	memset(data, d->fill, len);
}

static void dev_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct dev *d = opaque;

	d->writes++;
	d->last_off = off;
	d->last_len = len;
	memcpy(d->last_data, data, len);
}

static const struct bus_ops dev_ops = { .read = dev_read, .write = dev_write };

static void test_register_lookup(void **state)
{
	struct bus bus;
	struct dev a = { .fill = 0xaa }, b = { .fill = 0xbb };
	uint8_t data[4];
	uint32_t v = 0x11223344;
	const struct bus_range *r;

	bus_init(&bus, "pio");
	assert_int_equal(bus_register(&bus, 0x3f8, 8, &dev_ops, &a, "a"), 0);
	assert_int_equal(bus_register(&bus, 0x60, 1, &dev_ops, &b, "b"), 0);

	r = bus_find(&bus, 0x3f8);
	assert_non_null(r);
	assert_string_equal(r->name, "a");
	assert_ptr_equal(bus_find(&bus, 0x3ff), r);
	assert_null(bus_find(&bus, 0x400));
	assert_null(bus_find(&bus, 0x3f7));
	assert_string_equal(bus_find(&bus, 0x60)->name, "b");
	assert_null(bus_find(&bus, 0x61));

	/* Reads reach the device with the offset relative to its base. */
	assert_int_equal(bus_access(&bus, 0x3fd, data, 1, false), 0);
	assert_int_equal(a.reads, 1);
	assert_int_equal(a.last_off, 5);
	assert_int_equal(data[0], 0xaa);
	assert_int_equal(bus_access(&bus, 0x3fc, &v, 4, true), 0);
	assert_int_equal(a.writes, 1);
	assert_int_equal(a.last_off, 4);
	assert_int_equal(a.last_len, 4);
	assert_memory_equal(a.last_data, &v, 4);
	assert_int_equal(b.reads + b.writes, 0);
	bus_destroy(&bus);
	assert_null(bus.ranges);
	assert_int_equal(bus.nr, 0);
}

static void test_overlap(void **state)
{
	struct bus bus;
	struct dev d = { 0 };

	bus_init(&bus, "mmio");
	assert_int_equal(bus_register(&bus, 0x1000, 0x100, &dev_ops, &d, "mid"), 0);
	/* Overlapping the start, the end, containing, inside, identical. */
	assert_int_equal(bus_register(&bus, 0xf80, 0x100, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x10ff, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x0, 0x10000, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x1010, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x1000, 0x100, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x1000, 1, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x10ff, 1, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus.nr, 1);
	/* Adjacent on both sides is fine. */
	assert_int_equal(bus_register(&bus, 0xf00, 0x100, &dev_ops, &d, "before"), 0);
	assert_int_equal(bus_register(&bus, 0x1100, 0x100, &dev_ops, &d, "after"), 0);
	assert_int_equal(bus.nr, 3);
	/* Now overlaps with neighbours in every position are still caught,
	 * including one spanning all three and one bridging two. */
	assert_int_equal(bus_register(&bus, 0xe00, 0x500, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x10f0, 0x20, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0x11ff, 0x10, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0xe00, 0x101, &dev_ops, &d, "x"), -EEXIST);
	assert_int_equal(bus_register(&bus, 0xe00, 0x100, &dev_ops, &d, "x"), 0);
	assert_int_equal(bus_register(&bus, 0x1200, 0x100, &dev_ops, &d, "x"), 0);
	assert_int_equal(bus.nr, 5);
	/* Sorted by base. */
	for (int i = 1; i < bus.nr; i++)
		assert_true(bus.ranges[i - 1].base + bus.ranges[i - 1].len <= bus.ranges[i].base);
	assert_string_equal(bus_find(&bus, 0xfff)->name, "before");
	assert_string_equal(bus_find(&bus, 0x1000)->name, "mid");
	assert_string_equal(bus_find(&bus, 0x1100)->name, "after");
	bus_destroy(&bus);
}

static void test_register_invalid(void **state)
{
	static const struct bus_ops no_read = { .write = dev_write };
	static const struct bus_ops no_write = { .read = dev_read };
	struct bus bus;
	struct dev d = { 0 };

	bus_init(&bus, "mmio");
	assert_int_equal(bus_register(&bus, 0x1000, 4, NULL, &d, "x"), -EINVAL);
	assert_int_equal(bus_register(&bus, 0x1000, 4, &no_read, &d, "x"), -EINVAL);
	assert_int_equal(bus_register(&bus, 0x1000, 4, &no_write, &d, "x"), -EINVAL);
	assert_int_equal(bus_register(&bus, 0x1000, 0, &dev_ops, &d, "x"), -EINVAL);
	/* [2^64 - 4, 2^64 + 4) overflows. */
	assert_int_equal(bus_register(&bus, UINT64_MAX - 3, 8, &dev_ops, &d, "x"), -EINVAL);
	assert_int_equal(bus_register(&bus, 2, UINT64_MAX, &dev_ops, &d, "x"), -EINVAL);
	assert_int_equal(bus.nr, 0);
	/* Ending exactly at 2^64 is allowed. */
	assert_int_equal(bus_register(&bus, UINT64_MAX - 3, 4, &dev_ops, &d, "top"), 0);
	assert_non_null(bus_find(&bus, UINT64_MAX));
	assert_null(bus_find(&bus, UINT64_MAX - 4));
	bus_destroy(&bus);
}

static void test_straddle_and_unclaimed(void **state)
{
	struct bus bus;
	struct dev d = { .fill = 0x00 };
	uint8_t data[8];
	uint64_t v = 0;

	bus_init(&bus, "pio");
	assert_int_equal(bus_register(&bus, 0x70, 2, &dev_ops, &d, "rtc"), 0);
	assert_int_equal(bus_register(&bus, 0x72, 2, &dev_ops, &d, "next"), 0);

	/* Straddles the end of [0x70, 0x72): refused, reads are all-ones,
	 * and the device never sees it. */
	memset(data, 0, sizeof(data));
	assert_int_equal(bus_access(&bus, 0x71, data, 2, false), -ENOENT);
	assert_int_equal(data[0], 0xff);
	assert_int_equal(data[1], 0xff);
	memset(data, 0, sizeof(data));
	assert_int_equal(bus_access(&bus, 0x70, data, 4, false), -ENOENT);
	for (int i = 0; i < 4; i++)
		assert_int_equal(data[i], 0xff);
	assert_int_equal(bus_access(&bus, 0x71, &v, 2, true), -ENOENT);
	assert_int_equal(d.reads + d.writes, 0);

	/* Unclaimed: all-ones, writes dropped. */
	memset(data, 0, sizeof(data));
	assert_int_equal(bus_access(&bus, 0x1234, data, 8, false), -ENOENT);
	for (int i = 0; i < 8; i++)
		assert_int_equal(data[i], 0xff);
	assert_int_equal(bus_access(&bus, 0x1234, &v, 4, true), -ENOENT);
	/* Invalid lengths. */
	assert_int_equal(bus_access(&bus, 0x70, data, 0, false), -ENOENT);
	assert_int_equal(d.reads + d.writes, 0);

	/* A fitting access works. */
	memset(data, 0x55, sizeof(data));
	assert_int_equal(bus_access(&bus, 0x70, data, 2, false), 0);
	assert_int_equal(data[0], 0);
	assert_int_equal(data[1], 0);
	assert_int_equal(data[2], 0x55);
	bus_destroy(&bus);
}

/* Deterministic PRNG (xorshift64) so a failure is reproducible. */
static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

struct span {
	uint64_t base, len;
};

static const struct span *linear_find(const struct span *s, int n, uint64_t addr)
{
	for (int i = 0; i < n; i++)
		if (addr >= s[i].base && addr - s[i].base < s[i].len)
			return &s[i];
	return NULL;
}

static void test_many_ranges(void **state)
{
	enum { N = 100 };
	struct span spans[N];
	struct dev devs[N];
	struct bus bus;
	int n = 0;

	memset(devs, 0, sizeof(devs));
	bus_init(&bus, "mmio");
	/* 100 random non-overlapping ranges in [0, 1 MiB), registered in
	 * random order; candidates that overlap are rejected by both the bus
	 * and the reference. */
	while (n < N) {
		uint64_t base = rng() % 0x100000, len = 1 + rng() % 0x800;
		bool overlap = false;
		int ret;

		for (int i = 0; i < n; i++)
			if (base < spans[i].base + spans[i].len && spans[i].base < base + len)
				overlap = true;
		ret = bus_register(&bus, base, len, &dev_ops, &devs[n], "r");
		assert_int_equal(ret, overlap ? -EEXIST : 0);
		if (!overlap)
			spans[n++] = (struct span){ base, len };
	}
	assert_int_equal(bus.nr, N);

	/* Probe every range's edges and random addresses. */
	for (int i = 0; i < N; i++) {
		uint64_t probes[] = { spans[i].base, spans[i].base + spans[i].len - 1,
				      spans[i].base + spans[i].len, spans[i].base - 1 };

		for (size_t j = 0; j < sizeof(probes) / sizeof(probes[0]); j++) {
			const struct span *ref = linear_find(spans, N, probes[j]);
			const struct bus_range *r = bus_find(&bus, probes[j]);

			if (!ref) {
				assert_null(r);
			} else {
				assert_non_null(r);
				assert_int_equal(r->base, ref->base);
				assert_int_equal(r->len, ref->len);
				assert_ptr_equal(r->opaque, &devs[ref - spans]);
			}
		}
	}
	for (int k = 0; k < 20000; k++) {
		uint64_t addr = rng() % 0x101000;
		const struct span *ref = linear_find(spans, N, addr);
		const struct bus_range *r = bus_find(&bus, addr);

		if (!ref) {
			assert_null(r);
		} else {
			assert_non_null(r);
			assert_int_equal(r->base, ref->base);
			assert_ptr_equal(r->opaque, &devs[ref - spans]);
		}
	}
	/* And a dispatch lands in the right device with the right offset. */
	for (int i = 0; i < N; i++) {
		uint8_t b = 0;

		assert_int_equal(bus_access(&bus, spans[i].base + spans[i].len - 1, &b, 1, true), 0);
		assert_int_equal(devs[i].writes, 1);
		assert_int_equal(devs[i].last_off, spans[i].len - 1);
	}
	bus_destroy(&bus);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_register_lookup),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_register_invalid),
		cmocka_unit_test(test_straddle_and_unclaimed),
		cmocka_unit_test(test_many_ranges),
	};

	return cmocka_run_group_tests_name("bus", tests, NULL, NULL);
}
