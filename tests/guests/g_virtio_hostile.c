/* A hostile virtio driver: each case of enum hostile_case (lib/virtio.h) in
 * turn against virtio-rng device A, while device B, a virtio-blk disk,
 * keeps serving correct requests: after each case it writes a sector, reads
 * it back and reads the one the host wrote (the host checks the file). A malformed queue must set NEEDS_RESET,
 * complete nothing, and stay stopped until the driver resets the device;
 * after the reset A is brought up again from scratch and works. The legal
 * oddities (zero-length buffers, notifies to queues never enabled, writes
 * outside the registers) must leave A running untouched. One SYNC per case:
 * args = case, A's device_status; the host checks the warning tarn logged.
 * The malformed cases outnumber the log's burst: the host also checks the
 * ones past it (lib/virtio.h, HOSTILE_AGAIN). */
#include "lib/virtio.h"

#define QSIZE 8
#define STATUS_OK (VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER | VIRTIO_FEATURES_OK | VIRTIO_DRIVER_OK)
#define W VIRTQ_DESC_F_WRITE
#define N VIRTQ_DESC_F_NEXT
#define PAST_RAM (1ULL << 32) /* the guest has 64 MiB */

static uint8_t ring_a[VIRTQ_MEM_SIZE] __attribute__((aligned(4096)));
static uint8_t ring_b[VIRTQ_MEM_SIZE] __attribute__((aligned(4096)));
static uint8_t buf[256] __attribute__((aligned(16)));
static struct virtq_desc table1[2] __attribute__((aligned(16)));
static struct virtq_desc table2[1] __attribute__((aligned(16)));
static uint8_t sector[512], expect[512];
static struct virtio_dev a, b;
static struct virtq qa, qb;

static uint64_t bufp(unsigned off)
{
	return (uint64_t)(uintptr_t)buf + off;
}

/* A correct request of one 64-byte writable buffer. */
static void good_request(struct virtq *q)
{
	struct vbuf v = { bufp(0), 64, 1 };

	GUEST_ASSERT_EQ(virtq_request(q, q->avail_idx % q->size, &v, 1), 64);
}

static void bring_up(struct virtio_dev *d, struct virtq *q, void *ring, uint16_t size)
{
	virtio_init(d, 1ULL << VIRTIO_F_INDIRECT_DESC);
	virtq_setup(d, q, 0, size, ring, VIRTIO_NO_VECTOR);
	virtio_driver_ok(d);
	GUEST_ASSERT_EQ(virtio_status(d), STATUS_OK);
}

static void disk_pattern(uint8_t *p, unsigned n)
{
	for (unsigned i = 0; i < 512; i++)
		p[i] = HOSTILE_DISK_BYTE(n, i);
}

/* Device B: write sector n and read it back, read the host's sector 0. */
static void disk_round(unsigned n)
{
	disk_pattern(sector, n);
	GUEST_ASSERT_EQ(virtio_blk_rw(&qb, VIRTIO_BLK_T_OUT, n, sector, sizeof(sector)), 0);
	memset(sector, 0, sizeof(sector));
	GUEST_ASSERT_EQ(virtio_blk_rw(&qb, VIRTIO_BLK_T_IN, n, sector, sizeof(sector)), 0);
	disk_pattern(expect, n);
	GUEST_ASSERT_EQ(n << 8 | !memcmp(sector, expect, sizeof(sector)), n << 8 | 1);
	GUEST_ASSERT_EQ(virtio_blk_rw(&qb, VIRTIO_BLK_T_IN, 0, sector, sizeof(sector)), 0);
	disk_pattern(expect, 0);
	GUEST_ASSERT_EQ(n << 8 | !memcmp(sector, expect, sizeof(sector)), n << 8 | 1);
}

/* Descriptor 0 alone, offered and kicked. */
static void offer_one(uint64_t addr, uint32_t len, uint16_t flags)
{
	virtq_set_desc(&qa, 0, addr, len, flags, 0);
	virtq_publish(&qa, 0);
	virtq_kick(&qa);
}

/* Chains of zero-length buffers are legal (spec 2.7.4 does not forbid
 * them); nothing is accessed, so not even a zero-length buffer's address
 * matters. used.len counts the bytes written. */
static void zero_length(void)
{
	struct virtq_used_elem e;

	virtq_set_desc(&qa, 0, PAST_RAM, 0, W | N, 1);
	virtq_set_desc(&qa, 1, bufp(0), 16, W | N, 2);
	virtq_set_desc(&qa, 2, bufp(16), 0, W, 0);
	virtq_publish(&qa, 0);
	virtq_kick(&qa);
	GUEST_ASSERT(virtq_poll(&qa, &e));
	GUEST_ASSERT_EQ(e.id, 0);
	GUEST_ASSERT_EQ(e.len, 16);

	virtq_set_desc(&qa, 3, 0, 0, N, 4); /* readable, zero-length, at 0 */
	virtq_set_desc(&qa, 4, bufp(0), 0, W, 0);
	virtq_publish(&qa, 3);
	virtq_kick(&qa);
	GUEST_ASSERT(virtq_poll(&qa, &e));
	GUEST_ASSERT_EQ(e.id, 3);
	GUEST_ASSERT_EQ(e.len, 0);
}

/* Notifies for queue 0 before it is enabled, and for queues the device
 * does not have, before and after DRIVER_OK; then A is set up normally. */
static void stray_notifies(void)
{
	virtio_init(&a, 1ULL << VIRTIO_F_INDIRECT_DESC);
	for (unsigned i = 0; i < 9; i++)
		mmio_write16(a.notify + (uint64_t)i * a.notify_mult, (uint16_t)i);
	mmio_write32(a.notify, 0xffffffff);
	GUEST_ASSERT_EQ(virtio_status(&a), VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER | VIRTIO_FEATURES_OK);
	virtq_setup(&a, &qa, 0, QSIZE, ring_a, VIRTIO_NO_VECTOR);
	virtio_driver_ok(&a);
	for (unsigned i = 1; i < 9; i++)
		mmio_write16(a.notify + (uint64_t)i * a.notify_mult, (uint16_t)i);
	GUEST_ASSERT_EQ(virtq_used_idx(&qa), 0);
}

/* Writes past the common configuration's 0x38 bytes, into the gaps of BAR 0
 * (rng has no device configuration), to a queue that does not exist, and
 * with selectors out of range: all ignored, and they read as 0. */
static void stray_writes(void)
{
	static const uint32_t offs[] = { 0x38, 0x3c, 0x100, 0xffc, 0x1004, 0x1ffc,
					 0x2000, 0x2ffc, 0x3004, 0x3ffc };
	uint64_t c = a.common;

	for (unsigned i = 0; i < sizeof(offs) / sizeof(offs[0]); i++) {
		mmio_write32(a.bar0 + offs[i], 0xffffffff);
		GUEST_ASSERT_EQ(mmio_read32(a.bar0 + offs[i]), 0);
	}
	mmio_write64(c + 0x34, ~0ULL); /* straddles the end */
	mmio_write16(c + VCOMMON_Q_SELECT, 5);
	GUEST_ASSERT_EQ(mmio_read16(c + VCOMMON_Q_SIZE), 0);
	mmio_write16(c + VCOMMON_Q_SIZE, 4);
	virtio_write64(c + VCOMMON_Q_DESC, PAST_RAM);
	mmio_write16(c + VCOMMON_Q_ENABLE, 1);
	GUEST_ASSERT_EQ(mmio_read16(c + VCOMMON_Q_ENABLE), 0);
	mmio_write16(c + VCOMMON_Q_SELECT, 0xffff);
	mmio_write16(c + VCOMMON_Q_ENABLE, 1);
	mmio_write16(c + VCOMMON_Q_SELECT, 0);
	GUEST_ASSERT_EQ(mmio_read32(c + VCOMMON_Q_DESC), (uint32_t)(uintptr_t)ring_a);
	GUEST_ASSERT_EQ(mmio_read16(c + VCOMMON_Q_ENABLE), 1);
	mmio_write32(c + VCOMMON_DFSELECT, 0xffffffff);
	GUEST_ASSERT_EQ(mmio_read32(c + VCOMMON_DF), 0);
	mmio_write32(c + VCOMMON_GFSELECT, 7);
	mmio_write32(c + VCOMMON_GF, 0xffffffff);
	mmio_write32(c + VCOMMON_DFSELECT, 0);
	mmio_write32(c + VCOMMON_GFSELECT, 0);
	GUEST_ASSERT_EQ(mmio_read32(c + VCOMMON_GF), (uint32_t)a.features);
}

static void run_case(enum hostile_case c)
{
	switch (c) {
	case HOSTILE_LOOP: /* 0 -> 1 -> 0 -> ... */
		virtq_set_desc(&qa, 1, bufp(16), 16, W | N, 0);
		virtq_set_desc(&qa, 0, bufp(0), 16, W | N, 1);
		virtq_publish(&qa, 0);
		virtq_kick(&qa);
		break;
	case HOSTILE_NEXT:
		virtq_set_desc(&qa, 0, bufp(0), 16, W | N, QSIZE);
		virtq_publish(&qa, 0);
		virtq_kick(&qa);
		break;
	case HOSTILE_HEAD:
		virtq_set_desc(&qa, 0, bufp(0), 16, W, 0);
		virtq_publish(&qa, QSIZE);
		virtq_kick(&qa);
		break;
	case HOSTILE_AVAIL_IDX: /* size + 1 entries "available" at once */
		qa.avail_idx += QSIZE;
		offer_one(bufp(0), 16, W);
		break;
	case HOSTILE_BEYOND_RAM:
		offer_one(PAST_RAM, 16, W);
		break;
	case HOSTILE_MMIO: /* the device would write its own registers */
		offer_one(a.bar0, 16, W);
		break;
	case HOSTILE_WRAP:
		offer_one(~0ULL - 0xfff, 0x2000, W);
		break;
	case HOSTILE_HUGE_LEN:
		offer_one(bufp(0), 0xffffffff, W);
		break;
	case HOSTILE_NESTED:
		table2[0] = (struct virtq_desc){ bufp(0), 16, W, 0 };
		table1[0] = (struct virtq_desc){ bufp(16), 16, W | N, 1 };
		table1[1] = (struct virtq_desc){ (uint64_t)(uintptr_t)table2, sizeof(table2), VIRTQ_DESC_F_INDIRECT, 0 };
		offer_one((uint64_t)(uintptr_t)table1, sizeof(table1), VIRTQ_DESC_F_INDIRECT);
		break;
	case HOSTILE_INDIRECT_LEN: /* a valid table, but 20 bytes is not whole descriptors */
		table1[0] = (struct virtq_desc){ bufp(0), 16, W, 0 };
		offer_one((uint64_t)(uintptr_t)table1, 20, VIRTQ_DESC_F_INDIRECT);
		break;
	case HOSTILE_QUEUE_SIZE3:
		virtio_init(&a, 1ULL << VIRTIO_F_INDIRECT_DESC);
		virtq_setup(&a, &qa, 0, 3, ring_a, VIRTIO_NO_VECTOR);
		virtio_driver_ok(&a);
		break;
	case HOSTILE_ZERO_LEN:
		zero_length();
		break;
	case HOSTILE_NOTIFY:
		stray_notifies();
		break;
	case HOSTILE_OFFSETS:
		stray_writes();
		break;
	case HOSTILE_NR_CASES:
	case HOSTILE_AGAIN:
		break;
	}
}

/* Case c against A (on a fresh ring, but for the cases that set A up
 * themselves), then a round of the disk's sector n; returns A's status. */
static uint8_t one_case(enum hostile_case c, unsigned n)
{
	int legal = c >= HOSTILE_ZERO_LEN;
	uint16_t used = 0;
	uint8_t st;

	if (c != HOSTILE_NOTIFY && c != HOSTILE_QUEUE_SIZE3) {
		bring_up(&a, &qa, ring_a, QSIZE);
		GUEST_ASSERT(a.features & 1ULL << VIRTIO_F_INDIRECT_DESC);
		good_request(&qa);
		used = virtq_used_idx(&qa);
	}
	run_case(c);
	st = virtio_status(&a);
	/* The case number rides along in both values of a failed check. */
	GUEST_ASSERT_EQ(c << 8 | st, c << 8 | (legal ? STATUS_OK : STATUS_OK | VIRTIO_NEEDS_RESET));
	if (legal) {
		good_request(&qa);
	} else {
		/* Nothing completed, and the queue stays stopped. */
		GUEST_ASSERT_EQ(c << 16 | virtq_used_idx(&qa), c << 16 | used);
		if (c != HOSTILE_QUEUE_SIZE3) {
			struct virtq_used_elem e;

			offer_one(bufp(0), 16, W);
			GUEST_ASSERT_EQ(c << 8 | virtq_poll_for(&qa, &e, 1000), c << 8);
		}
	}
	/* The other device never noticed. */
	disk_round(n);
	GUEST_ASSERT_EQ(virtio_status(&b), STATUS_OK);
	return st;
}

void guest_main(unsigned cpu, uint64_t arg)
{
	virtio_find(VIRTIO_ID_RNG, 0, &a);
	virtio_find(VIRTIO_ID_BLOCK, 0, &b);
	bring_up(&b, &qb, ring_b, QSIZE);
	disk_round(HOSTILE_DISK_SECTORS - 1);

	for (unsigned c = 0; c < HOSTILE_NR_CASES; c++) {
		GUEST_SYNC(c, one_case(c, c + 1));
		virtio_reset(&a);
	}
	/* A works again after the last reset. */
	bring_up(&a, &qa, ring_a, QSIZE);
	good_request(&qa);
	/* The host starts a new window of its log's rate limiter. */
	GUEST_SYNC(HOSTILE_NR_CASES, virtio_status(&a));
	/* Past the burst, the first malformed queue is still caught and
	 * named, after the count of the warnings that were not. */
	GUEST_SYNC(HOSTILE_AGAIN, one_case(HOSTILE_LOOP, HOSTILE_NR_CASES + 1));
	virtio_reset(&a);
	bring_up(&a, &qa, ring_a, QSIZE);
	good_request(&qa);
}
