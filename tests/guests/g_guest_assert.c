/* The harness itself: a failing GUEST_ASSERT must reach the host as a
 * failure naming this file and line (the host test expects exactly that). */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	volatile int two = 2;

	GUEST_ASSERT_EQ(two + two, 5); /* line 9 */
}
