/* An access to MMIO nobody claims: reads give all-ones, writes vanish, the
 * guest keeps running and tarn warns, naming the access, rate-limited. The
 * host checks the lines at each SYNC (runner.c, sync_mmio_unmapped) and
 * moves the rate limiter's clock: args = step, address, accesses. */
#include "lib/guest.h"

#define BASE 0xe0000000ULL
#define WRITES 100 /* far more than the log's burst */

void guest_main(unsigned cpu, uint64_t arg)
{
	for (int i = 0; i < WRITES; i++)
		mmio_write32(BASE + 4 * (uint64_t)i, 0x1234);
	GUEST_ASSERT_EQ(mmio_read32(BASE), 0xffffffff);
	GUEST_ASSERT_EQ(mmio_read8(BASE + 0x1000), 0xff);
	/* The burst's lines, the rest dropped; the host moves the clock to
	 * just short of the window's end. */
	GUEST_SYNC4(1, BASE, WRITES + 2, 0);
	GUEST_ASSERT_EQ(mmio_read16(BASE + 0x2000), 0xffff);
	/* Still dropped; the host moves the clock to the window's end. */
	GUEST_SYNC4(2, BASE + 0x2000, 1, 0);
	GUEST_ASSERT_EQ(mmio_read16(BASE + 0x3000), 0xffff);
	/* A new window: the count of those dropped, then this one's line. */
	GUEST_SYNC4(3, BASE + 0x3000, 1, 0);
}
