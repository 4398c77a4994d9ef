/* Bytes the host queued as console input arrive through COM1's RBR, with
 * LSR.DR telling when data is ready; the guest echoes their sum. */
#include "lib/guest.h"

#define COM1 0x3f8

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t sum = 0, n = 0;

	while (n < 5) {
		if (inb(COM1 + 5) & 1) {
			sum += inb(COM1);
			n++;
		}
	}
	GUEST_ASSERT_EQ(inb(COM1 + 5) & 1, 0); /* drained */
	GUEST_SYNC(sum, n);
}
