/* A hostile vCPU: interrupts off, spinning forever, never exiting to the
 * VMM. tests/integration/stop.sh boots it with `tarn run` and checks that
 * SIGTERM still stops the VM at once; the runner does not list it. */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	cli();
	for (;;)
		__asm__ volatile("" ::: "memory");
}
