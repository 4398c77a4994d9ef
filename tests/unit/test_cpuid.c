/* CPUID policy: the topology a guest sees (APIC IDs, logical processor
 * counts, leaf 0xB levels) and the features hidden from it. */
#include "unit.h"

#include <string.h>

#include "arch/x86/cpuid.h"

/* A plausible host table, with host values the policy must override. */
static int host_table(struct cpuid_entry *e)
{
	int n = 0;

	e[n++] = (struct cpuid_entry){ .function = 0x0, .eax = 0x1f, .ebx = 0x756e6547,
				       .ecx = 0x6c65746e, .edx = 0x49656e69 };
	/* Host: APIC ID 0x2c, 32 logical CPUs, CLFLUSH 8, brand 0x05; HTT
	 * set, hypervisor bit clear. */
	e[n++] = (struct cpuid_entry){ .function = 0x1, .eax = 0x000906ea, .ebx = 0x2c200805,
				       .ecx = 0x7ffafbff, .edx = 0xbfebfbff };
	e[n++] = (struct cpuid_entry){ .function = 0x4, .index = 0, .flags = CPUID_FLAG_INDEXED,
				       .eax = 0x1c004121, .ebx = 0x01c0003f, .ecx = 0x3f };
	e[n++] = (struct cpuid_entry){ .function = 0x4, .index = 3, .flags = CPUID_FLAG_INDEXED,
				       .eax = 0x1c03c163, .ebx = 0x03c0003f, .ecx = 0x2fff };
	e[n++] = (struct cpuid_entry){ .function = 0x6, .eax = 0x27f7, .ebx = 2, .ecx = 9 };
	e[n++] = (struct cpuid_entry){ .function = 0x7, .index = 0, .flags = CPUID_FLAG_INDEXED,
				       .ebx = 0x029c6fbf };
	e[n++] = (struct cpuid_entry){ .function = 0xa, .eax = 0x07300404, .ebx = 0, .ecx = 0,
				       .edx = 0x603 };
	for (unsigned i = 0; i < 3; i++)
		e[n++] = (struct cpuid_entry){ .function = 0xb, .index = i,
					       .flags = CPUID_FLAG_INDEXED, .eax = 0x55,
					       .ebx = 0x55, .ecx = 0x55, .edx = 0x2c };
	e[n++] = (struct cpuid_entry){ .function = 0x80000000, .eax = 0x80000008 };
	return n;
}

static const struct cpuid_entry *find(const struct cpuid_entry *e, int n, uint32_t fn,
				      uint32_t idx)
{
	for (int i = 0; i < n; i++)
		if (e[i].function == fn && e[i].index == idx)
			return &e[i];
	fail_msg("leaf %#x.%u missing", fn, idx);
	return NULL;
}

static void check_leaf1(unsigned id, unsigned nr)
{
	struct cpuid_entry e[32], host[32];
	int n = host_table(e), m;
	const struct cpuid_entry *l1;

	memcpy(host, e, sizeof(host));
	m = cpuid_apply_policy(e, n, id, nr);
	assert_int_equal(m, n);
	l1 = find(e, m, 1, 0);
	assert_int_equal(l1->ebx >> 24, id);		/* initial APIC ID */
	assert_int_equal((l1->ebx >> 16) & 0xff, nr);	/* logical processors */
	assert_int_equal((l1->ebx >> 8) & 0xff, 8);	/* CLFLUSH line / 8 */
	assert_int_equal(l1->ebx & 0xff, 0x05);		/* brand index kept */
	assert_true(l1->ecx & CPUID_1_ECX_HYPERVISOR);
	if (nr > 1)
		assert_true(l1->edx & CPUID_1_EDX_HTT);
	else
		assert_false(l1->edx & CPUID_1_EDX_HTT);
	/* Signature and other features untouched. */
	assert_int_equal(l1->eax, host[1].eax);
	assert_int_equal(l1->ecx & ~CPUID_1_ECX_HYPERVISOR, host[1].ecx);
	assert_int_equal(l1->edx & ~CPUID_1_EDX_HTT, host[1].edx & ~CPUID_1_EDX_HTT);
	/* Leaves the policy does not touch are passed through. */
	assert_memory_equal(find(e, m, 0, 0), &host[0], sizeof(host[0]));
	assert_memory_equal(find(e, m, 7, 0), &host[5], sizeof(host[5]));
	assert_memory_equal(find(e, m, 0x80000000, 0), &host[n - 1], sizeof(host[0]));
}

static void test_leaf1_one_cpu(void **state)
{
	check_leaf1(0, 1);
}

static void test_leaf1_four_cpus(void **state)
{
	for (unsigned id = 0; id < 4; id++)
		check_leaf1(id, 4);
}

static void test_leaf1_max_cpus(void **state)
{
	check_leaf1(254, 255);
}

static void check_leafb(unsigned id, unsigned nr, unsigned shift)
{
	struct cpuid_entry e[32];
	int n = host_table(e);
	const struct cpuid_entry *l0, *l1, *l2;

	n = cpuid_apply_policy(e, n, id, nr);
	l0 = find(e, n, 0xb, 0);
	l1 = find(e, n, 0xb, 1);
	l2 = find(e, n, 0xb, 2);
	/* Level 0: SMT, one thread per core. */
	assert_int_equal(l0->eax & 0x1f, 0);
	assert_int_equal(l0->ebx & 0xffff, 1);
	assert_int_equal(l0->ecx & 0xff, 0);
	assert_int_equal((l0->ecx >> 8) & 0xff, 1);
	assert_int_equal(l0->edx, id);
	/* Level 1: cores, all nr of them in the package. */
	assert_int_equal(l1->eax & 0x1f, shift);
	assert_int_equal(l1->ebx & 0xffff, nr);
	assert_int_equal(l1->ecx & 0xff, 1);
	assert_int_equal((l1->ecx >> 8) & 0xff, 2);
	assert_int_equal(l1->edx, id);
	/* Level 2: invalid, which ends the enumeration. */
	assert_int_equal(l2->eax, 0);
	assert_int_equal(l2->ebx, 0);
	assert_int_equal(l2->ecx & 0xff, 2);
	assert_int_equal((l2->ecx >> 8) & 0xff, 0);
	assert_int_equal(l2->edx, id);
	/* The shift must cover every APIC ID. */
	assert_true((1u << shift) >= nr);
	assert_true(id >> shift == 0);
}

static void test_leafb(void **state)
{
	check_leafb(0, 1, 0);
	for (unsigned id = 0; id < 4; id++)
		check_leafb(id, 4, 2);
	check_leafb(2, 3, 2);
	check_leafb(4, 5, 3);
	check_leafb(200, 255, 8);
}

static void test_leafa_and_6_zeroed(void **state)
{
	struct cpuid_entry e[32];
	int n = host_table(e);
	const struct cpuid_entry *l;

	n = cpuid_apply_policy(e, n, 0, 2);
	l = find(e, n, 0xa, 0);
	/* No PMU: version 0, no counters. */
	assert_int_equal(l->eax, 0);
	assert_int_equal(l->ebx, 0);
	assert_int_equal(l->ecx, 0);
	assert_int_equal(l->edx, 0);
	l = find(e, n, 0x6, 0);
	assert_int_equal(l->eax | l->ebx | l->ecx | l->edx, 0);
}

static void test_leaf4_cores(void **state)
{
	struct cpuid_entry e[32];
	int n = host_table(e);
	const struct cpuid_entry *l1d, *l3;

	n = cpuid_apply_policy(e, n, 1, 4);
	l1d = find(e, n, 4, 0);
	l3 = find(e, n, 4, 3);
	/* Cache type and level survive. */
	assert_int_equal(l1d->eax & 0x1f, 1);
	assert_int_equal((l1d->eax >> 5) & 7, 1);
	assert_int_equal((l3->eax >> 5) & 7, 3);
	/* EAX[31:26] = cores per package - 1. */
	assert_int_equal(l1d->eax >> 26, 3);
	assert_int_equal(l3->eax >> 26, 3);
	/* EAX[25:14] = logical processors sharing the cache - 1: L1 is per
	 * core, L3 is shared by all. */
	assert_int_equal((l1d->eax >> 14) & 0xfff, 0);
	assert_int_equal((l3->eax >> 14) & 0xfff, 3);
}

static void test_leaf4_many_cpus(void **state)
{
	/* EAX[31:26] is 6 bits: 64 cores is the most it can say. With more
	 * vCPUs than that it must saturate, not wrap to a small count. */
	static const unsigned counts[] = { 64, 65, 100, 128, 255 };

	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct cpuid_entry e[32];
		int n = host_table(e);
		const struct cpuid_entry *l3;

		n = cpuid_apply_policy(e, n, 0, counts[i]);
		l3 = find(e, n, 4, 3);
		if ((l3->eax >> 26) != 63)
			fail_msg("%u vCPUs: leaf 4 reports %u cores per package", counts[i],
				 (l3->eax >> 26) + 1);
		assert_int_equal((l3->eax >> 5) & 7, 3);
		assert_int_equal((l3->eax >> 14) & 0xfff, counts[i] - 1);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_leaf1_one_cpu),
		cmocka_unit_test(test_leaf1_four_cpus),
		cmocka_unit_test(test_leaf1_max_cpus),
		cmocka_unit_test(test_leafb),
		cmocka_unit_test(test_leafa_and_6_zeroed),
		cmocka_unit_test(test_leaf4_cores),
		cmocka_unit_test(test_leaf4_many_cpus),
	};

	return cmocka_run_group_tests_name("cpuid", tests, NULL, NULL);
}
