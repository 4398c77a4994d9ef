/* An access to MMIO nobody claims: reads give all-ones, writes vanish, the
 * guest keeps running and tarn logs (rate-limited). */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	for (int i = 0; i < 100; i++) /* more than the log's burst */
		mmio_write32(0xe0000000ULL + 4 * (uint64_t)i, 0x1234);
	GUEST_ASSERT_EQ(mmio_read32(0xe0000000ULL), 0xffffffff);
	GUEST_ASSERT_EQ(mmio_read8(0xe0001000ULL), 0xff);
	GUEST_SYNC(1, 0);
}
