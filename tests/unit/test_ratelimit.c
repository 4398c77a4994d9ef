/* Token buckets (core/ratelimit.h): the spec syntax, and the arithmetic
 * of budgets, bursts and debt. The waits are computed, not slept: each
 * check allows for the few microseconds between two calls. */
#include "unit.h"

#include <errno.h>
#include <string.h>

#include "core/ratelimit.h"

#define MS 1000000ULL

static struct tb_config parsed(const char *s)
{
	struct tb_config c;
	char err[200];

	assert_int_equal(rl_parse(s, &c, err, sizeof(err)), 0);
	return c;
}

static void test_parse(void **state)
{
	struct tb_config c;
	char err[200];

	/* Rates: a tenth of a second's worth every 100 ms. */
	c = parsed("10MB/s");
	assert_int_equal(c.size, 1000000);
	assert_int_equal(c.refill_ms, 100);
	assert_int_equal(c.one_time_burst, 0);
	c = parsed("50Mbit/s"); /* 6.25 MB/s */
	assert_int_equal(c.size, 625000);
	assert_int_equal(c.refill_ms, 100);
	c = parsed("1MiB");
	assert_int_equal(c.size, 104858);
	c = parsed("500");
	assert_int_equal(c.size, 50);
	assert_int_equal(c.refill_ms, 100);
	c = parsed("2.5K/s");
	assert_int_equal(c.size, 250);
	/* Under 10 a second: one token, and the time it takes. */
	c = parsed("4");
	assert_int_equal(c.size, 1);
	assert_int_equal(c.refill_ms, 250);
	/* Firecracker's three numbers. */
	c = parsed("4096:10:65536");
	assert_int_equal(c.size, 4096);
	assert_int_equal(c.refill_ms, 10);
	assert_int_equal(c.one_time_burst, 65536);
	c = parsed("100:1000");
	assert_int_equal(c.one_time_burst, 0);
	/* A one-time burst in the rate's units. */
	c = parsed("10MB/s+50MB");
	assert_int_equal(c.size, 1000000);
	assert_int_equal(c.one_time_burst, 50000000);
	c = parsed("100Mbit/s+8Mbit");
	assert_int_equal(c.size, 1250000);
	assert_int_equal(c.one_time_burst, 1000000);
	assert_int_equal(parsed("500+2000").one_time_burst, 2000);
	/* No limit. */
	assert_int_equal(parsed("0").size, 0);
	assert_int_equal(parsed("0:0").size, 0);
	/* Junk. */
	const char *bad[] = { "", "x", "10XB", "-5", "10MB/h", "1:", "1:0", ":5", "1:2:3:4", "1e400", "1:2x",
			      "10MB/s+", "10MB/s+5MB/s", "+5", "10MB/s+x", "1+2+3" };
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		err[0] = 0;
		assert_int_equal(rl_parse(bad[i], &c, err, sizeof(err)), -EINVAL);
		assert_non_null(strstr(err, "expected"));
	}
}

static void test_budget_and_debt(void **state)
{
	struct rate_limiter rl;
	struct tb_config c = { .size = 1000, .refill_ms = 1000 }; /* a token a ms */
	uint64_t w;

	rl_init(&rl);
	assert_false(rl_active(&rl));
	assert_int_equal(rl_wait_ns(&rl), 0); /* unlimited */
	rl_charge(&rl, 1ULL << 40, 1ULL << 40);
	assert_int_equal(rl_wait_ns(&rl), 0);

	rl_set(&rl, RL_BYTES, &c);
	assert_true(rl_active(&rl));
	assert_int_equal(rl_wait_ns(&rl), 0); /* starts full */
	rl_charge(&rl, 999, 7);		      /* ops: unlimited */
	assert_int_equal(rl_wait_ns(&rl), 0); /* one token left */
	rl_charge(&rl, 501, 0);		      /* 500 in debt */
	w = rl_wait_ns(&rl);
	assert_true(w > 490 * MS && w <= 501 * MS);
	assert_int_equal(rl.throttled, 1);
	/* A new setting starts full again. */
	rl_set(&rl, RL_BYTES, &c);
	assert_int_equal(rl_wait_ns(&rl), 0);
	/* Off again. */
	rl_set(&rl, RL_BYTES, &(struct tb_config){ 0 });
	rl_charge(&rl, 1ULL << 40, 0);
	assert_int_equal(rl_wait_ns(&rl), 0);
	rl_destroy(&rl);
}

static void test_burst_and_ops(void **state)
{
	struct rate_limiter rl;
	uint64_t w;

	rl_init(&rl);
	/* 10 ops per 100 ms, 5 more once. */
	rl_set(&rl, RL_OPS, &(struct tb_config){ .size = 10, .refill_ms = 100, .one_time_burst = 5 });
	rl_charge(&rl, 0, 5); /* all from the burst */
	rl_charge(&rl, 0, 9);
	assert_int_equal(rl_wait_ns(&rl), 0);
	rl_charge(&rl, 0, 3); /* 2 in debt: 20 ms */
	w = rl_wait_ns(&rl);
	assert_true(w > 18 * MS && w <= 21 * MS);
	/* Two buckets: the longer wait counts. */
	rl_set(&rl, RL_BYTES, &(struct tb_config){ .size = 100, .refill_ms = 1000 });
	rl_charge(&rl, 200, 0); /* 100 bytes in debt: 1 s */
	w = rl_wait_ns(&rl);
	assert_true(w > 990 * MS && w <= 1001 * MS);
	rl_destroy(&rl);
}

static void test_options(void **state)
{
	struct rate_limiter a, b;
	struct rl_key keys[] = { { "bw", &a, RL_BYTES }, { "iops", &a, RL_OPS }, { "tx_bw", &b, RL_BYTES } };
	char err[200];

	rl_init(&a);
	rl_init(&b);
	assert_int_equal(rl_option("ro", keys, 3, err, sizeof(err)), 0);
	assert_int_equal(rl_option("bw=1M", keys, 3, err, sizeof(err)), 1);
	assert_int_equal(a.b[RL_BYTES].c.size, 100000);
	assert_int_equal(rl_option("iops=x", keys, 3, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "iops: "));
	/* All or none. */
	assert_int_equal(rl_options("iops=500,tx_bw=8Mbit/s", keys, 3, err, sizeof(err)), 0);
	assert_int_equal(a.b[RL_OPS].c.size, 50);
	assert_int_equal(b.b[RL_BYTES].c.size, 100000);
	assert_int_equal(rl_options("iops=7,bw=junk", keys, 3, err, sizeof(err)), -EINVAL);
	assert_int_equal(a.b[RL_OPS].c.size, 50);
	assert_int_equal(rl_options("iops=7,serial=x", keys, 3, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a limit here (bw=, iops=, tx_bw=)"));
	assert_int_equal(a.b[RL_OPS].c.size, 50);
	rl_destroy(&a);
	rl_destroy(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_budget_and_debt),
		cmocka_unit_test(test_burst_and_ops),
		cmocka_unit_test(test_options),
	};

	return cmocka_run_group_tests_name("ratelimit", tests, NULL, NULL);
}
