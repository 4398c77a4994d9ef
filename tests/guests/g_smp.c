/* Every vCPU runs: each reports its APIC ID, and all of them increment a
 * shared counter with lock xadd until they have seen each other. */
#include "lib/guest.h"

static volatile uint32_t arrived;

void guest_main(unsigned cpu, uint64_t arg)
{
	uint32_t a, b, c, d, n;

	cpuid(1, 0, &a, &b, &c, &d);
	n = (b >> 16) & 0xff; /* logical processors per package */
	__atomic_fetch_add(&arrived, 1, __ATOMIC_SEQ_CST);
	while (__atomic_load_n(&arrived, __ATOMIC_SEQ_CST) < n)
		pause();
	GUEST_SYNC(cpu, n);
}
