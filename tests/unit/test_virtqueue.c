/* Split virtqueue on fake guest memory: well-formed chains (direct,
 * indirect, readable + writable, zero-length), the used ring and both
 * notification-suppression schemes, and every hostile shape a guest can
 * build, each giving its own error, a broken queue, and leaving a second
 * queue on the same memory working. */
#include "unit.h"

#include <stdlib.h>
#include <string.h>

#include "mem/gm.h"
#include "virtio/virtqueue.h"

#define BASE 0x100000ULL   /* guest-physical start of the fake RAM */
#define RAM (1ULL << 20)   /* 1 MiB */
#define DESC (BASE + 0x00000)
#define AVAIL (BASE + 0x08000)
#define USED (BASE + 0x09000)
#define DESC_B (BASE + 0x10000) /* the second queue */
#define AVAIL_B (BASE + 0x18000)
#define USED_B (BASE + 0x19000)
#define ITABLE (BASE + 0x20000) /* indirect tables */
#define DATA (BASE + 0x80000)	/* buffers */
#define F_IND (1ULL << VIRTIO_F_INDIRECT_DESC)
#define F_EVT (1ULL << VIRTIO_F_EVENT_IDX)

static struct guest_mem gm;
static uint8_t *ram;
static struct vq vq;
static struct vq_chain chain;

static void *at(uint64_t gpa, uint64_t len)
{
	void *p = gm_ptr(&gm, gpa, len);

	assert_non_null(p);
	return p;
}

static void put_desc(uint64_t table, uint32_t i, uint64_t addr, uint32_t len, uint16_t flags,
		     uint16_t next)
{
	struct vq_desc d = { addr, len, flags, next };

	memcpy(at(table + 16ULL * i, 16), &d, 16);
}

static uint16_t *ring16(uint64_t gpa, uint32_t i)
{
	return at(gpa + 2ULL * i, 2);
}

/* Driver side: make head available in the queue at avail. */
static void offer(uint64_t avail, uint32_t size, uint16_t head)
{
	uint16_t *idx = ring16(avail, 1);

	*ring16(avail, 2 + (*idx & (size - 1))) = head;
	(*idx)++;
}

static int qinit(struct vq *q, uint32_t size, uint64_t desc, uint64_t avail, uint64_t used,
		 uint64_t features, uint64_t max_bytes)
{
	struct vq_config cfg = { size, desc, avail, used, features, max_bytes };

	return vq_init(q, &gm, &cfg);
}

static int setup(void **state)
{
	ram = aligned_alloc(4096, RAM);
	assert_non_null(ram);
	memset(ram, 0, RAM);
	assert_int_equal(gm_init_fake(&gm, BASE, ram, RAM), 0);
	return 0;
}

static int teardown(void **state)
{
	free(ram);
	return 0;
}

static void test_direct_chain(void **state)
{
	assert_int_equal(qinit(&vq, 8, DESC, AVAIL, USED, 0, 0), 0);
	put_desc(DESC, 5, DATA, 16, VIRTQ_DESC_F_NEXT, 2);
	put_desc(DESC, 2, DATA + 0x100, 0, VIRTQ_DESC_F_NEXT, 7);
	put_desc(DESC, 7, DATA + 0x200, 32, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	put_desc(DESC, 0, DATA + 0x300, 8, VIRTQ_DESC_F_WRITE, 0);
	offer(AVAIL, 8, 5);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(chain.head, 5);
	assert_int_equal(chain.nr_out, 2);
	assert_int_equal(chain.nr_in, 2);
	assert_int_equal(chain.out_len, 16);
	assert_int_equal(chain.in_len, 40);
	assert_ptr_equal(chain.iov[0].iov_base, at(DATA, 16));
	assert_int_equal(chain.iov[0].iov_len, 16);
	assert_int_equal(chain.iov[1].iov_len, 0); /* zero-length kept, harmless */
	assert_ptr_equal(chain.iov[2].iov_base, at(DATA + 0x200, 32));
	assert_int_equal(chain.gpa[3], DATA + 0x300);
	assert_int_equal(vq_pop(&vq, &chain), 0); /* empty now */

	assert_int_equal(vq_push(&vq, 5, 33), 0);
	assert_int_equal(*ring16(USED, 1), 1);
	struct vq_used_elem *e = at(USED + 4, 8);
	assert_int_equal(e->id, 5);
	assert_int_equal(e->len, 33);
	assert_false(vq.broken);
}

static void test_indirect_chain(void **state)
{
	assert_int_equal(qinit(&vq, 4, DESC, AVAIL, USED, F_IND, 0), 0);
	put_desc(ITABLE, 0, DATA, 12, VIRTQ_DESC_F_NEXT, 2);
	put_desc(ITABLE, 2, DATA + 0x40, 0, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 1);
	put_desc(ITABLE, 1, DATA + 0x80, 100, VIRTQ_DESC_F_WRITE, 0);
	put_desc(DESC, 3, ITABLE, 3 * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(AVAIL, 4, 3);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(chain.head, 3);
	assert_int_equal(chain.nr_out, 1);
	assert_int_equal(chain.nr_in, 2);
	assert_int_equal(chain.out_len, 12);
	assert_int_equal(chain.in_len, 100);
	assert_ptr_equal(chain.iov[2].iov_base, at(DATA + 0x80, 100));

	/* A full table of VQ_MAX_SEGS entries is fine (and not a loop). */
	for (uint32_t i = 0; i < VQ_MAX_SEGS; i++)
		put_desc(ITABLE, i, DATA + i, 1, i + 1 < VQ_MAX_SEGS ? VIRTQ_DESC_F_NEXT : 0, i + 1);
	put_desc(DESC, 0, ITABLE, VQ_MAX_SEGS * 16, VIRTQ_DESC_F_INDIRECT, 0);
	offer(AVAIL, 4, 0);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(chain.nr_out, VQ_MAX_SEGS);
	assert_int_equal(chain.out_len, VQ_MAX_SEGS);
}

/* Many chains through a tiny ring: the ring and 16-bit indices wrap. */
static void test_wraparound(void **state)
{
	assert_int_equal(qinit(&vq, 2, DESC, AVAIL, USED, F_EVT, 0), 0);
	put_desc(DESC, 0, DATA, 4, 0, 0);
	put_desc(DESC, 1, DATA, 4, VIRTQ_DESC_F_WRITE, 0);
	for (uint32_t i = 0; i < 70000; i++) {
		offer(AVAIL, 2, i & 1);
		if (i & 1)
			offer(AVAIL, 2, 0); /* two outstanding: a full ring */
		assert_int_equal(vq_pop(&vq, &chain), 1);
		assert_int_equal(chain.head, i & 1);
		assert_int_equal(vq_push(&vq, chain.head, i), 0);
		if (i & 1) {
			assert_int_equal(vq_pop(&vq, &chain), 1);
			assert_int_equal(vq_push(&vq, chain.head, 0), 0);
		}
	}
	assert_int_equal(vq_pop(&vq, &chain), 0);
	assert_int_equal(*ring16(USED, 1), (uint16_t)(70000 + 35000));
	assert_int_equal(*ring16(USED, 1), *ring16(AVAIL, 1));
	/* avail_event (after the used ring) follows what we consumed. */
	assert_int_equal(*ring16(USED + 4 + 8 * 2, 0), *ring16(AVAIL, 1));
}

static void test_notify_flags(void **state)
{
	assert_int_equal(qinit(&vq, 4, DESC, AVAIL, USED, 0, 0), 0);
	put_desc(DESC, 0, DATA, 4, 0, 0);
	assert_false(vq_needs_notify(&vq)); /* nothing used yet */
	offer(AVAIL, 4, 0);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(vq_push(&vq, 0, 0), 0);
	assert_true(vq_needs_notify(&vq));
	assert_false(vq_needs_notify(&vq)); /* nothing new since */
	*ring16(AVAIL, 0) = VIRTQ_AVAIL_F_NO_INTERRUPT;
	offer(AVAIL, 4, 0);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(vq_push(&vq, 0, 0), 0);
	assert_false(vq_needs_notify(&vq));
	*ring16(AVAIL, 0) = 0;
	offer(AVAIL, 4, 0);
	assert_int_equal(vq_pop(&vq, &chain), 1);
	assert_int_equal(vq_push(&vq, 0, 0), 0);
	assert_true(vq_needs_notify(&vq));

	/* Device side: ask the driver not to kick, then again to kick. */
	vq_set_notify(&vq, false);
	assert_int_equal(*ring16(USED, 0), VIRTQ_USED_F_NO_NOTIFY);
	vq_set_notify(&vq, true);
	assert_int_equal(*ring16(USED, 0), 0);
}

static void test_notify_event_idx(void **state)
{
	uint16_t *used_event = ring16(AVAIL, 2 + 4), *avail_event = ring16(USED + 4 + 8 * 4, 0);

	assert_int_equal(qinit(&vq, 4, DESC, AVAIL, USED, F_EVT, 0), 0);
	put_desc(DESC, 0, DATA, 4, 0, 0);
	*ring16(AVAIL, 0) = VIRTQ_AVAIL_F_NO_INTERRUPT; /* ignored with EVENT_IDX */
	*used_event = 2; /* interrupt me once used->idx passes 2 */
	for (int i = 1; i <= 4; i++) {
		offer(AVAIL, 4, 0);
		assert_int_equal(vq_pop(&vq, &chain), 1);
		assert_int_equal(*avail_event, i);
		assert_int_equal(vq_push(&vq, 0, 0), 0);
		/* First ever check always notifies; then only crossing 2->3. */
		if (i == 1 || i == 3)
			assert_true(vq_needs_notify(&vq));
		else
			assert_false(vq_needs_notify(&vq));
	}
	/* Several pushes in one batch crossing used_event: one notification. */
	*used_event = 5;
	for (int i = 0; i < 3; i++) {
		offer(AVAIL, 4, 0);
		assert_int_equal(vq_pop(&vq, &chain), 1);
		assert_int_equal(vq_push(&vq, 0, 0), 0);
	}
	assert_true(vq_needs_notify(&vq));
	assert_false(vq_needs_notify(&vq));

	/* Empty pop re-arms avail_event at what we have consumed. */
	*avail_event = 0;
	assert_int_equal(vq_pop(&vq, &chain), 0);
	assert_int_equal(*avail_event, 7);
}

static void test_config_refused(void **state)
{
	static const uint32_t bad_sizes[] = { 0, 3, 6, 1000, 65536, 0x80000000u };

	for (size_t i = 0; i < sizeof(bad_sizes) / sizeof(bad_sizes[0]); i++) {
		assert_int_equal(qinit(&vq, bad_sizes[i], DESC, AVAIL, USED, 0, 0), VQ_ERR_SIZE);
		assert_true(vq.broken);
		assert_int_equal(vq_pop(&vq, &chain), VQ_ERR_BROKEN);
	}
	assert_int_equal(qinit(&vq, 8, DESC + 8, AVAIL, USED, 0, 0), VQ_ERR_ALIGN);
	assert_int_equal(qinit(&vq, 8, DESC, AVAIL + 1, USED, 0, 0), VQ_ERR_ALIGN);
	assert_int_equal(qinit(&vq, 8, DESC, AVAIL, USED + 2, 0, 0), VQ_ERR_ALIGN);
	assert_int_equal(qinit(&vq, 8, 0, AVAIL, USED, 0, 0), VQ_ERR_RING_ADDR);
	assert_int_equal(qinit(&vq, 8, DESC, BASE + RAM - 8, USED, 0, 0), VQ_ERR_RING_ADDR);
	assert_int_equal(qinit(&vq, 8, DESC, AVAIL, 0xfffffffffffffff0ULL, 0, 0),
			 VQ_ERR_RING_ADDR);
	/* A ring ends with its event field (used_event, avail_event): a ring
	 * whose event field would lie past the end of RAM is refused, or the
	 * device would write the guest's avail_event outside guest memory.
	 * Size 8: avail 4 + 16 + 2 bytes, used 4 + 64 + 2 bytes. */
	assert_int_equal(qinit(&vq, 8, DESC, BASE + RAM - 20, USED, F_EVT, 0), VQ_ERR_RING_ADDR);
	assert_int_equal(qinit(&vq, 8, DESC, AVAIL, BASE + RAM - 68, F_EVT, 0), VQ_ERR_RING_ADDR);
	assert_int_equal(qinit(&vq, 8, DESC, BASE + RAM - 22, BASE + RAM - 96, F_EVT, 0), 0);
	assert_int_equal(qinit(&vq, 32768, DESC, BASE + RAM - 0x20000, USED, 0, 0), 0);
	assert_false(vq.broken);
	assert_int_equal(vq_push(&vq, 32768 - 1, 0), 0);
	assert_int_equal(qinit(&vq, 4, DESC, AVAIL, USED, 0, 0), 0);
	assert_int_equal(vq_push(&vq, 4, 0), VQ_ERR_PUSH_HEAD); /* device bug, not the guest's */
	assert_false(vq.broken);
}

/* ---- hostile queues: each builds one bad chain at head 0 of queue A ---- */

static void h_loop(void)
{
	put_desc(DESC, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 0);
}
static void h_self_loop(void) { put_desc(DESC, 0, DATA, 0, VIRTQ_DESC_F_NEXT, 0); }
static void h_indirect_loop(void)
{
	put_desc(ITABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(ITABLE, 1, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 0, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_head(void) { *ring16(AVAIL, 2) = 8; }
static void h_head_huge(void) { *ring16(AVAIL, 2) = 0xffff; }
static void h_next(void) { put_desc(DESC, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 8); }
static void h_indirect_next(void)
{
	put_desc(ITABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 2); /* table has 2 entries */
	put_desc(DESC, 0, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_addr_outside(void) { put_desc(DESC, 0, BASE + RAM, 4, 0, 0); }
static void h_addr_below(void) { put_desc(DESC, 0, BASE - 4, 4, 0, 0); }
static void h_addr_straddle(void) { put_desc(DESC, 0, BASE + RAM - 4, 8, 0, 0); }
static void h_addr_wrap(void) { put_desc(DESC, 0, 0xfffffffffffffffcULL, 16, 0, 0); }
static void h_len_huge(void) { put_desc(DESC, 0, DATA, 0xffffffffu, 0, 0); }
static void h_too_big(void) /* cap is 100 bytes for these queues */
{
	put_desc(DESC, 0, DATA, 64, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, DATA, 64, VIRTQ_DESC_F_WRITE, 0);
}
static void h_order(void)
{
	put_desc(DESC, 0, DATA, 4, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, DATA, 0, 0, 0); /* even zero-length */
}
static void h_nested(void)
{
	put_desc(ITABLE, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(ITABLE, 1, ITABLE + 0x100, 16, VIRTQ_DESC_F_INDIRECT, 0);
	put_desc(ITABLE + 0x100, 0, DATA, 4, 0, 0);
	put_desc(DESC, 0, ITABLE, 32, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_indirect_and_next(void)
{
	put_desc(ITABLE, 0, DATA, 4, 0, 0);
	put_desc(DESC, 0, ITABLE, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1);
}
static void h_indirect_not_head(void)
{
	put_desc(ITABLE, 0, DATA, 4, 0, 0);
	put_desc(DESC, 0, DATA, 4, VIRTQ_DESC_F_NEXT, 1);
	put_desc(DESC, 1, ITABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_ilen_odd(void) { put_desc(DESC, 0, ITABLE, 24, VIRTQ_DESC_F_INDIRECT, 0); }
static void h_ilen_zero(void) { put_desc(DESC, 0, ITABLE, 0, VIRTQ_DESC_F_INDIRECT, 0); }
static void h_ilen_long(void)
{
	put_desc(DESC, 0, ITABLE, (VQ_MAX_SEGS + 1) * 16, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_itable_outside(void)
{
	put_desc(DESC, 0, BASE + RAM - 16, 32, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_itable_wrap(void)
{
	put_desc(DESC, 0, 0xfffffffffffffff0ULL, 32, VIRTQ_DESC_F_INDIRECT, 0);
}
static void h_avail_jump(void) { *ring16(AVAIL, 1) = 9; } /* size 8 */
static void h_avail_back(void) { *ring16(AVAIL, 1) = 0xffff; } /* "-1": 65535 ahead */

struct hostile {
	const char *name;
	void (*build)(void);
	uint64_t features;
	int err;
};

static const struct hostile hostiles[] = {
	{ "loop", h_loop, 0, VQ_ERR_LOOP },
	{ "self loop", h_self_loop, 0, VQ_ERR_LOOP },
	{ "indirect loop", h_indirect_loop, F_IND, VQ_ERR_LOOP },
	{ "head out of range", h_head, 0, VQ_ERR_HEAD },
	{ "head 0xffff", h_head_huge, 0, VQ_ERR_HEAD },
	{ "next out of range", h_next, 0, VQ_ERR_NEXT },
	{ "indirect next out of range", h_indirect_next, F_IND, VQ_ERR_NEXT },
	{ "buffer past RAM", h_addr_outside, 0, VQ_ERR_BUF_ADDR },
	{ "buffer below RAM", h_addr_below, 0, VQ_ERR_BUF_ADDR },
	{ "buffer straddling end", h_addr_straddle, 0, VQ_ERR_BUF_ADDR },
	{ "buffer wrapping", h_addr_wrap, 0, VQ_ERR_BUF_ADDR },
	{ "4 GiB length", h_len_huge, 0, VQ_ERR_BUF_ADDR },
	{ "over byte cap", h_too_big, 0, VQ_ERR_TOO_BIG },
	{ "readable after writable", h_order, 0, VQ_ERR_ORDER },
	{ "indirect not negotiated", h_indirect_loop, 0, VQ_ERR_INDIRECT },
	{ "nested indirect", h_nested, F_IND, VQ_ERR_INDIRECT_NESTED },
	{ "indirect with next", h_indirect_and_next, F_IND, VQ_ERR_INDIRECT_NEXT },
	{ "indirect not at head", h_indirect_not_head, F_IND, VQ_ERR_INDIRECT_NEXT },
	{ "indirect len 24", h_ilen_odd, F_IND, VQ_ERR_INDIRECT_LEN },
	{ "indirect len 0", h_ilen_zero, F_IND, VQ_ERR_INDIRECT_LEN },
	{ "indirect too long", h_ilen_long, F_IND, VQ_ERR_INDIRECT_LEN },
	{ "indirect table past RAM", h_itable_outside, F_IND, VQ_ERR_INDIRECT_ADDR },
	{ "indirect table wrapping", h_itable_wrap, F_IND, VQ_ERR_INDIRECT_ADDR },
	{ "avail idx jump", h_avail_jump, 0, VQ_ERR_AVAIL_IDX },
	{ "avail idx backwards", h_avail_back, 0, VQ_ERR_AVAIL_IDX },
};

static void test_hostile(void **state)
{
	for (size_t i = 0; i < sizeof(hostiles) / sizeof(hostiles[0]); i++) {
		const struct hostile *h = &hostiles[i];
		struct vq qb;

		print_message("# hostile: %s\n", h->name);
		memset(ram, 0, RAM);
		assert_int_equal(qinit(&vq, 8, DESC, AVAIL, USED, h->features, 100), 0);
		assert_int_equal(qinit(&qb, 8, DESC_B, AVAIL_B, USED_B, F_IND, 100), 0);
		/* Queue B on the same memory: one good chain before, one after. */
		put_desc(DESC_B, 0, DATA, 10, VIRTQ_DESC_F_NEXT, 1);
		put_desc(DESC_B, 1, DATA + 0x10, 20, VIRTQ_DESC_F_WRITE, 0);
		offer(AVAIL_B, 8, 0);
		assert_int_equal(vq_pop(&qb, &chain), 1);

		offer(AVAIL, 8, 0);
		h->build();
		assert_int_equal(vq_pop(&vq, &chain), h->err);
		assert_true(vq.broken);
		assert_int_equal(vq.err, h->err);
		assert_int_equal(vq_pop(&vq, &chain), VQ_ERR_BROKEN);
		assert_int_equal(vq_push(&vq, 0, 0), VQ_ERR_BROKEN);
		assert_false(vq_needs_notify(&vq));
		assert_int_equal(*ring16(USED, 1), 0); /* nothing written back */

		assert_int_equal(vq_push(&qb, 0, 20), 0);
		offer(AVAIL_B, 8, 0);
		assert_int_equal(vq_pop(&qb, &chain), 1);
		assert_int_equal(chain.nr_out, 1);
		assert_int_equal(chain.in_len, 20);
		assert_false(qb.broken);
	}
}

static void test_too_many(void **state)
{
	/* A direct chain longer than VQ_MAX_SEGS in a big queue: refused. */
	assert_int_equal(qinit(&vq, 2048, DESC, AVAIL, USED, 0, 0), 0);
	for (uint32_t i = 0; i <= VQ_MAX_SEGS; i++)
		put_desc(DESC, i, DATA, 1, VIRTQ_DESC_F_NEXT, i + 1);
	put_desc(DESC, VQ_MAX_SEGS, DATA, 1, 0, 0);
	offer(AVAIL, 2048, 0);
	assert_int_equal(vq_pop(&vq, &chain), VQ_ERR_TOO_MANY);
	assert_true(vq.broken);
}

/* The default cap: a chain over 4 GiB - 1 in total (used.len is 32 bits),
 * in real (lazily reserved) guest memory with RAM above the 4 GiB hole. */
static void test_default_cap(void **state)
{
	struct guest_mem big;
	struct vq_config cfg = { 4, 0x1000, 0x2000, 0x3000, 0, 0 };
	uint8_t *desc, *avail;
	struct vq_desc d[3] = {
		{ 0x10000000ULL, 0xa0000000u, VIRTQ_DESC_F_NEXT, 1 },	       /* 2.5 GiB */
		{ 0x100000000ULL, 0x60000000u - 2, VIRTQ_DESC_F_NEXT, 2 }, /* 1.5 GiB - 2 */
		{ 0x100000000ULL, 1, VIRTQ_DESC_F_WRITE, 0 },
	};

	if (gm_init(&big, 6ULL << 30))
		SKIP_BECAUSE("cannot reserve 6 GiB of address space for guest RAM");
	desc = gm_ptr(&big, 0x1000, 64);
	avail = gm_ptr(&big, 0x2000, 16);
	memcpy(desc, d, sizeof(d));
	avail[2] = 1; /* idx 1, ring[0] = head 0 */
	assert_int_equal(vq_init(&vq, &big, &cfg), 0);
	assert_int_equal(vq_pop(&vq, &chain), 1); /* exactly 4 GiB - 1 */
	assert_int_equal(chain.out_len + chain.in_len, 0xffffffffULL);
	d[2].len = 2;
	memcpy(desc, d, sizeof(d));
	avail[2] = 2;
	assert_int_equal(vq_pop(&vq, &chain), VQ_ERR_TOO_BIG);
	assert_true(vq.broken);
	gm_destroy(&big);
}

static void test_strerror(void **state)
{
	for (int e = VQ_ERR_BROKEN; e >= VQ_ERR_PUSH_HEAD; e--) {
		assert_string_not_equal(vq_strerror(e), "unknown error");
		for (int f = e - 1; f >= VQ_ERR_PUSH_HEAD; f--)
			assert_string_not_equal(vq_strerror(e), vq_strerror(f));
	}
	assert_string_equal(vq_strerror(-99), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_direct_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_indirect_chain, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wraparound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_notify_event_idx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hostile, setup, teardown),
		cmocka_unit_test_setup_teardown(test_too_many, setup, teardown),
		cmocka_unit_test(test_default_cap),
		cmocka_unit_test_setup_teardown(test_strerror, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
