/* A guest with no usable IDT takes an exception: #UD, then #GP/#DF while
 * delivering it, then a triple fault. tarn reports a crash with registers. */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = { 0, 0 };
	uint64_t here;

	__asm__ volatile("lea 1f(%%rip), %0\n\t"
			 "lidt %1\n\t"
			 "1: ud2" : "=&r"(here) : "m"(empty));
	(void)here;
}
