/* Guest memory: the layout around the 32-bit MMIO hole, and the bounds
 * checks every accessor must make on guest-supplied addresses. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem/gm.h"

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

static void test_layout_64m(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 64 * MiB), 0);
	assert_int_equal(gm.nr_regions, 1);
	assert_int_equal(gm.regions[0].gpa, 0);
	assert_int_equal(gm.regions[0].size, 64 * MiB);
	assert_int_equal(gm.ram_size, 64 * MiB);
	assert_int_equal(gm_low_end(&gm), 64 * MiB);
	/* Memory is usable at both ends. */
	assert_non_null(gm_ptr(&gm, 0, 1));
	assert_non_null(gm_ptr(&gm, 64 * MiB - 8, 8));
	assert_null(gm_ptr(&gm, 64 * MiB, 1));
	gm_destroy(&gm);
	assert_int_equal(gm.nr_regions, 0);
}

static void test_layout_3g(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, 3 * GiB), 0);
	/* Exactly fills the space below the hole: nothing above 4 GiB. */
	assert_int_equal(gm.nr_regions, 1);
	assert_int_equal(gm.regions[0].gpa, 0);
	assert_int_equal(gm.regions[0].size, 3 * GiB);
	assert_int_equal(gm_low_end(&gm), GM_HOLE_START);
	assert_non_null(gm_ptr(&gm, GM_HOLE_START - 4, 4));
	assert_null(gm_ptr(&gm, GM_HOLE_START, 1));
	assert_null(gm_ptr(&gm, GM_HOLE_END, 1));
	gm_destroy(&gm);
}

static void test_layout_4g(void **state)
{
	struct guest_mem gm;
	uint32_t v = 0x12345678, r = 0;

	assert_int_equal(gm_init(&gm, 4 * GiB), 0);
	assert_int_equal(gm.nr_regions, 2);
	assert_int_equal(gm.regions[0].gpa, 0);
	assert_int_equal(gm.regions[0].size, 3 * GiB);
	assert_int_equal(gm.regions[1].gpa, GM_HOLE_END);
	assert_int_equal(gm.regions[1].size, 1 * GiB);
	assert_int_equal(gm.ram_size, 4 * GiB);
	assert_int_equal(gm_low_end(&gm), GM_HOLE_START);

	/* The hole [3G, 4G) is not RAM, at either edge or in the middle. */
	assert_null(gm_ptr(&gm, GM_HOLE_START, 1));
	assert_null(gm_ptr(&gm, GM_HOLE_START + GiB / 2, 1));
	assert_null(gm_ptr(&gm, GM_HOLE_END - 1, 1));
	assert_int_equal(gm_write(&gm, 0xFEE00000ULL, &v, 4), -EFAULT);
	assert_int_equal(gm_read(&gm, 0xFEC00000ULL, &r, 4), -EFAULT);

	/* RAM above 4 GiB up to 5 GiB. */
	assert_int_equal(gm_write(&gm, GM_HOLE_END, &v, 4), 0);
	assert_int_equal(gm_read(&gm, GM_HOLE_END, &r, 4), 0);
	assert_int_equal(r, v);
	assert_non_null(gm_ptr(&gm, GM_HOLE_END + GiB - 4, 4));
	assert_null(gm_ptr(&gm, GM_HOLE_END + GiB, 1));

	/* Low and high regions are distinct memory. */
	assert_int_equal(gm_write(&gm, 0, "low!", 4), 0);
	assert_int_equal(gm_read(&gm, GM_HOLE_END, &r, 4), 0);
	assert_int_equal(r, v);
	assert_ptr_not_equal(gm_ptr(&gm, 0, 1), gm_ptr(&gm, GM_HOLE_END, 1));
	gm_destroy(&gm);
}

/* Dirty tracking: pages by their place in the memory file, so a page above
 * the hole is counted after the low RAM; a write across pages marks both;
 * a take hands the bits over once and clears them. */
static void test_dirty(void **state)
{
	struct guest_mem gm, fake;
	uint8_t buf[64];
	size_t words;
	uint64_t *bits;
	uint32_t v = 1;

	assert_int_equal(gm_init(&gm, 3 * GiB + 64 * MiB), 0);
	words = gm_dirty_words(&gm);
	assert_int_equal(words, (3 * GiB + 64 * MiB) / 4096 / 64);
	bits = calloc(words, sizeof(uint64_t));
	assert_non_null(bits);
	assert_int_equal(gm_write(&gm, 0, &v, 4), 0); /* not tracking yet */
	assert_int_equal(gm_dirty_start(&gm), 0);
	assert_int_equal(gm_write(&gm, 4096 * 5 + 4094, &v, 4), 0); /* pages 5 and 6 */
	assert_int_equal(gm_write(&gm, GM_HOLE_END + 4096, &v, 4), 0);
	assert_int_equal(gm_write(&gm, GM_HOLE_START, &v, 4), -EFAULT); /* the hole: nothing */
	gm_mark_dirty_hva(&gm, gm_ptr(&gm, 64 * 4096, 1), 1);
	gm_dirty_take(&gm, bits);
	assert_int_equal(bits[0], 3ULL << 5); /* not page 0: written before */
	assert_int_equal(bits[1], 1ULL); /* page 64 */
	uint64_t hi = GM_HOLE_START / 4096 + 1; /* the high region's second page */
	assert_int_equal(bits[hi / 64], 1ULL << (hi % 64));
	for (size_t i = 0; i < words; i++)
		if (i != 0 && i != 1 && i != hi / 64)
			assert_int_equal(bits[i], 0);
	memset(bits, 0, words * sizeof(uint64_t));
	gm_dirty_take(&gm, bits); /* taken: nothing left */
	for (size_t i = 0; i < words; i++)
		assert_int_equal(bits[i], 0);
	bits[2] = 0x10;
	gm_dirty_restore(&gm, bits); /* a failed snapshot gives them back */
	bits[2] = 0;
	gm_dirty_take(&gm, bits);
	assert_int_equal(bits[2], 0x10);
	assert_int_equal(gm.dirty_gen, 4); /* the start and three takes: each flushes what caches writable pages */
	free(bits);
	gm_destroy(&gm);
	/* Fake memory has no reservation: no tracking. */
	assert_int_equal(gm_init_fake(&fake, 0, buf, sizeof(buf)), 0);
	assert_int_equal(gm_dirty_start(&fake), -EINVAL);
}

static void test_init_rejects_small(void **state)
{
	struct guest_mem gm;

	assert_int_equal(gm_init(&gm, GM_MIN_RAM - 1), -EINVAL);
	assert_int_equal(gm_init(&gm, 15 * MiB), -EINVAL);
	assert_int_equal(gm_init(&gm, 0), -EINVAL);
	assert_int_equal(gm.nr_regions, 0);
	assert_int_equal(gm_init(&gm, GM_MIN_RAM), 0);
	assert_int_equal(gm_low_end(&gm), GM_MIN_RAM);
	gm_destroy(&gm);
}

/* Backends map each region into the guest as is (KVM memory slots must be
 * whole pages), so a size like --mem 65537K must be refused or rounded
 * to pages, never laid out as a region ending mid-page. */
static void test_init_page_granular(void **state)
{
	static const uint64_t sizes[] = { 64 * MiB + 1024, 64 * MiB + 1, 3 * GiB + 1024 };

	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		struct guest_mem gm;
		int ret = gm_init(&gm, sizes[i]);

		if (ret) {
			assert_int_equal(ret, -EINVAL);
			continue;
		}
		for (int r = 0; r < gm.nr_regions; r++) {
			if (gm.regions[r].size & 0xfff)
				fail_msg("gm_init(%llu): region %d is %#llx bytes, not whole pages",
					 (unsigned long long)sizes[i], r,
					 (unsigned long long)gm.regions[r].size);
			assert_int_equal(gm.regions[r].gpa & 0xfff, 0);
		}
		gm_destroy(&gm);
	}
}

struct fake {
	uint8_t buf[4096];
	struct guest_mem gm;
};

#define FAKE_GPA 0x10000ULL

static int fake_setup(void **state)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	for (size_t i = 0; i < sizeof(f->buf); i++)
		f->buf[i] = (uint8_t)i;
	assert_int_equal(gm_init_fake(&f->gm, FAKE_GPA, f->buf, sizeof(f->buf)), 0);
	*state = f;
	return 0;
}

static int fake_teardown(void **state)
{
	free(*state);
	return 0;
}

static void test_fake(void **state)
{
	struct fake *f = *state;
	struct guest_mem gm;
	uint8_t b[4];

	assert_int_equal(f->gm.nr_regions, 1);
	assert_ptr_equal(gm_ptr(&f->gm, FAKE_GPA, 1), f->buf);
	assert_ptr_equal(gm_ptr(&f->gm, FAKE_GPA + 100, 4), f->buf + 100);
	assert_int_equal(gm_read(&f->gm, FAKE_GPA + 4, b, 4), 0);
	assert_memory_equal(b, f->buf + 4, 4);
	assert_null(gm_ptr(&f->gm, FAKE_GPA - 1, 1));
	assert_null(gm_ptr(&f->gm, 0, 1));
	assert_int_equal(gm_low_end(&f->gm), FAKE_GPA + sizeof(f->buf));
	/* gm_destroy on fake memory must not unmap the caller's buffer. */
	gm_destroy(&f->gm);
	f->buf[0] = 1;

	assert_int_equal(gm_init_fake(&gm, 0, f->buf, 0), -EINVAL);
	assert_int_equal(gm_init_fake(&gm, UINT64_MAX - 10, f->buf, 4096), -EINVAL);
}

static void test_bounds_region_end(void **state)
{
	struct fake *f = *state;
	uint64_t end = FAKE_GPA + sizeof(f->buf);
	uint8_t b[8];

	memset(b, 0xee, sizeof(b));
	assert_non_null(gm_ptr(&f->gm, end - 8, 8));
	assert_null(gm_ptr(&f->gm, end - 7, 8));
	assert_null(gm_ptr(&f->gm, end - 1, 2));
	assert_null(gm_ptr(&f->gm, end, 1));
	assert_null(gm_ptr(&f->gm, FAKE_GPA - 4, 8)); /* straddles the start */
	assert_null(gm_ptr(&f->gm, FAKE_GPA, sizeof(f->buf) + 1));
	assert_non_null(gm_ptr(&f->gm, FAKE_GPA, sizeof(f->buf)));
	assert_int_equal(gm_read(&f->gm, end - 4, b, 8), -EFAULT);
	assert_int_equal(gm_write(&f->gm, end - 4, b, 8), -EFAULT);
	/* A failed write changes nothing. */
	assert_int_equal(f->buf[sizeof(f->buf) - 4], (uint8_t)(sizeof(f->buf) - 4));
	assert_int_equal(gm_read(&f->gm, end - 8, b, 8), 0);
	assert_memory_equal(b, f->buf + sizeof(f->buf) - 8, 8);
	/* Huge lengths do not overflow the check. */
	assert_null(gm_ptr(&f->gm, FAKE_GPA, UINT64_MAX));
	assert_null(gm_ptr(&f->gm, FAKE_GPA + 1, UINT64_MAX - FAKE_GPA));
}

static void test_bounds_straddle_hole(void **state)
{
	struct guest_mem gm;
	uint8_t b[16] = { 0 };

	assert_int_equal(gm_init(&gm, 4 * GiB), 0);
	/* [3G - 8, 3G + 8) begins in RAM and ends in the hole. */
	assert_null(gm_ptr(&gm, GM_HOLE_START - 8, 16));
	assert_int_equal(gm_write(&gm, GM_HOLE_START - 8, b, 16), -EFAULT);
	/* [4G - 8, 4G + 8) begins in the hole and ends in RAM. */
	assert_null(gm_ptr(&gm, GM_HOLE_END - 8, 16));
	assert_int_equal(gm_read(&gm, GM_HOLE_END - 8, b, 16), -EFAULT);
	/* A range spanning the whole hole, from low RAM into high RAM: both
	 * ends are RAM, but the hva would run past the low region into the
	 * high one, which is contiguous on the host. */
	assert_null(gm_ptr(&gm, GM_HOLE_START - 8, GM_HOLE_END - GM_HOLE_START + 16));
	assert_int_equal(gm_read(&gm, GM_HOLE_START - 8, b, 1), 0);
	gm_destroy(&gm);
}

static void test_bounds_wrap(void **state)
{
	struct fake *f = *state;
	struct guest_mem gm;
	uint8_t b[8];
	uint8_t *top = calloc(1, 4096);

	assert_non_null(top);
	/* Region at the very top of the address space. */
	assert_int_equal(gm_init_fake(&gm, UINT64_MAX - 4095, top, 4095), 0);
	assert_non_null(gm_ptr(&gm, UINT64_MAX - 4095, 4095));
	/* gpa = 2^64 - 4, len 8: wraps past 2^64 back to 4. */
	assert_null(gm_ptr(&gm, UINT64_MAX - 3, 8));
	assert_int_equal(gm_read(&gm, UINT64_MAX - 3, b, 8), -EFAULT);
	assert_int_equal(gm_write(&gm, UINT64_MAX - 3, b, 8), -EFAULT);
	assert_null(gm_ptr(&f->gm, UINT64_MAX - 3, 8));
	/* A wrapping range whose wrapped end lands inside a region. */
	assert_null(gm_ptr(&f->gm, UINT64_MAX - 3, FAKE_GPA + 16));
	assert_int_equal(gm_read(&f->gm, UINT64_MAX, b, 2), -EFAULT);
	free(top);
}

static void test_len_zero(void **state)
{
	struct fake *f = *state;
	uint8_t b = 0x5a;

	/* len 0 is checked as one byte (gm.h). */
	assert_ptr_equal(gm_ptr(&f->gm, FAKE_GPA, 0), f->buf);
	assert_non_null(gm_ptr(&f->gm, FAKE_GPA + sizeof(f->buf) - 1, 0));
	assert_null(gm_ptr(&f->gm, FAKE_GPA + sizeof(f->buf), 0));
	assert_null(gm_ptr(&f->gm, 0, 0));
	assert_int_equal(gm_read(&f->gm, FAKE_GPA, &b, 0), 0);
	assert_int_equal(b, 0x5a);
	assert_int_equal(gm_write(&f->gm, FAKE_GPA, &b, 0), 0);
	assert_int_equal(f->buf[0], 0);
	assert_int_equal(gm_read(&f->gm, 0, &b, 0), -EFAULT);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_layout_64m),
		cmocka_unit_test(test_layout_3g),
		cmocka_unit_test(test_layout_4g),
		cmocka_unit_test(test_dirty),
		cmocka_unit_test(test_init_rejects_small),
		cmocka_unit_test(test_init_page_granular),
		cmocka_unit_test_setup_teardown(test_fake, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_bounds_region_end, fake_setup, fake_teardown),
		cmocka_unit_test(test_bounds_straddle_hole),
		cmocka_unit_test_setup_teardown(test_bounds_wrap, fake_setup, fake_teardown),
		cmocka_unit_test_setup_teardown(test_len_zero, fake_setup, fake_teardown),
	};

	return cmocka_run_group_tests_name("gm", tests, NULL, NULL);
}
