/* A reset through the i8042 (what the FADT's reset register does). */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	GUEST_ASSERT_EQ(inb(0x64) & 0x04, 0x04); /* system flag: POST passed */
	outb(0x64, 0xfe);
	for (;;)
		hlt();
}
