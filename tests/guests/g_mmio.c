/* MMIO exits reach a device the host registered at 0xd0000000 (in the
 * hole below 4 GiB): 8 bytes of scratch memory, every access width. */
#include "lib/guest.h"

#define DEV 0xd0000000ULL

void guest_main(unsigned cpu, uint64_t arg)
{
	mmio_write64(DEV, 0x1122334455667788ULL);
	GUEST_ASSERT_EQ(mmio_read64(DEV), 0x1122334455667788ULL);
	GUEST_ASSERT_EQ(mmio_read32(DEV + 4), 0x11223344);
	GUEST_ASSERT_EQ(mmio_read16(DEV + 2), 0x5566);
	GUEST_ASSERT_EQ(mmio_read8(DEV + 7), 0x11);
	mmio_write8(DEV + 1, 0xab);
	mmio_write16(DEV + 4, 0xcdef);
	GUEST_SYNC(mmio_read64(DEV), 0);
}
