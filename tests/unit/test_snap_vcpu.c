/* A vCPU's state as a snapshot section (snapshot/vcpu_state.h): written
 * and read back equal, and states that pass the checksum but that no CPU
 * could be in are refused, each with its reason. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "snapshot/vcpu_state.h"

static void sample(struct x86_state *st)
{
	uint32_t mxcsr = 0x1f80;

	x86_state_long_mode(st, 0x9000, 0x500, 0x37);
	srandom(7);
	for (int i = 0; i < 16; i++)
		st->gpr[i] = (uint64_t)random() << 33 ^ (uint64_t)random();
	st->rip = 0xffffffff81000000ULL;
	for (size_t i = 0; i < sizeof(st->fxsave); i++)
		st->fxsave[i] = (uint8_t)random();
	memcpy(st->fxsave + 24, &mxcsr, 4);
	for (int i = 0; i < 4; i++)
		st->dr[i] = 0x1000u * (unsigned)i;
	st->dr6 = 0xffff0ff0;
	st->dr7 = 0x400;
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		st->msr[i] = (uint64_t)random();
	st->ev = (struct x86_events){ .mp_state = X86_MP_HALTED, .nmi_masked = 1, .exc_injected = 1,
				      .exc_vector = 14, .exc_has_err = 1, .exc_err = 2 };
	st->parts = X86_STATE_ALL;
}

/* Write st, then read it back: the result, reason in err. */
static int round_trip(const struct x86_state *st, struct x86_state *out, char *err, size_t len)
{
	struct snap_buf b;
	int ret;

	snap_buf_init(&b);
	snap_put_vcpu(&b, st);
	assert_false(b.oom);
	ret = snap_get_vcpu(b.p, b.len, SNAP_VCPU_VERSION, out, err, len);
	snap_buf_free(&b);
	return ret;
}

static void test_round_trip(void **state)
{
	struct x86_state st, out;
	char err[200] = "";

	sample(&st);
	assert_int_equal(round_trip(&st, &out, err, sizeof(err)), 0);
	assert_memory_equal(&st, &out, sizeof(st));
}

/* Invalid state i: what it is, a word of the reason expected, and the
 * change to a valid state that makes it. */
static const struct {
	const char *what, *sign;
} invalid[] = {
	{ "RFLAGS bit 1 clear", "RFLAGS" },	   { "RFLAGS bit 63 set", "RFLAGS" },
	{ "CR0.PG without PE", "CR0" },		   { "CR0.NW without CD", "CR0" },
	{ "CR4 reserved bit", "CR4" },		   { "EFER.LMA without LME", "LMA" },
	{ "EFER.LME, paging, no LMA", "LMA" },	   { "long mode without PAE", "PAE" },
	{ "EFER unknown bit", "EFER" },		   { "CS with L and D/B", "L and D/B" },
	{ "RIP not canonical", "canonical" },	   { "CR3 beyond 52 bits", "CR3" },
	{ "CR8 over 15", "CR8" },		   { "segment type 16", "type" },
	{ "DPL 4", "DPL" },			   { "MXCSR reserved bits", "MXCSR" },
	{ "CR8 not the LAPIC's TPR", "TPR" },	   { "run state 3", "run state" },
	{ "exception vector 32", "pending events" }, { "an exception and an interrupt", "pending events" },
};

static void spoil(size_t i, struct x86_state *s)
{
	switch (i) {
	case 0: s->rflags &= ~2ULL; break;
	case 1: s->rflags |= 1ULL << 63; break;
	case 2: s->cr0 &= ~X86_CR0_PE; break;
	case 3: s->cr0 |= X86_CR0_NW; break;
	case 4: s->cr4 |= 1ULL << 40; break;
	case 5: s->efer &= ~X86_EFER_LME; break;
	case 6: s->efer &= ~X86_EFER_LMA; break;
	case 7: s->cr4 &= ~X86_CR4_PAE; break;
	case 8: s->efer |= 1ULL << 20; break;
	case 9: s->cs.db = 1; break;
	case 10: s->rip = 0x0000800000000000ULL; break;
	case 11: s->cr3 |= 1ULL << 60; break;
	case 12: s->cr8 = 16; break;
	case 13: s->ss.type = 16; break;
	case 14: s->ds.dpl = 4; break;
	case 15: s->fxsave[26] = 1; break;
	case 16: s->cr8 = 5; break;
	case 17: s->ev.mp_state = 3; break;
	case 18: s->ev.exc_vector = 32; break;
	case 19: s->ev.irq_injected = 1; break;
	}
}

static void test_invalid_states_refused(void **state)
{
	struct x86_state st, out;
	char err[200];

	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		sample(&st);
		spoil(i, &st);
		err[0] = 0;
		if (round_trip(&st, &out, err, sizeof(err)) != -EINVAL || !strstr(err, invalid[i].sign))
			fail_msg("%s: not refused as \"%s\" (%s)", invalid[i].what, invalid[i].sign, err);
	}
}

static void test_bad_layout_refused(void **state)
{
	struct x86_state st, out;
	struct snap_buf b;
	char err[200];
	enum { V = SNAP_VCPU_VERSION, EV = 14 /* the events after the MSRs */ };

	sample(&st);
	snap_buf_init(&b);
	snap_put_vcpu(&b, &st);
	assert_int_equal(snap_get_vcpu(b.p, b.len, 1, &out, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "vCPU state layout 1; this tarn reads 2");
	assert_int_equal(snap_get_vcpu(b.p, b.len - 1, V, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has more"));
	snap_put_u8(&b, 0);
	assert_int_equal(snap_get_vcpu(b.p, b.len, V, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "has fewer"));
	b.len--;
	/* The first MSR's index, after the count, changed. */
	b.p[b.len - EV - 12 * X86_STATE_NR_MSRS] ^= 1;
	assert_int_equal(snap_get_vcpu(b.p, b.len, V, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "belongs"));
	b.p[b.len - EV - 12 * X86_STATE_NR_MSRS] ^= 1;
	b.p[b.len - EV - 12 * X86_STATE_NR_MSRS - 4] ^= 1; /* the count */
	assert_int_equal(snap_get_vcpu(b.p, b.len, V, &out, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "MSRs, expected"));
	snap_buf_free(&b);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_invalid_states_refused),
		cmocka_unit_test(test_bad_layout_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
