/* A guest with no usable IDT takes an exception: #UD, then #GP/#DF while
 * delivering it, then a triple fault. tarn reports a crash with registers;
 * the guest first tells the host where its ud2 is, which must be the RIP
 * of the crash. */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) empty = { 0, 0 };
	uint64_t ud2_at;

	__asm__ volatile("lea 1f(%%rip), %0" : "=r"(ud2_at));
	GUEST_SYNC(ud2_at, 0);
	__asm__ volatile("lidt %0\n\t"
			 "1: ud2" :: "m"(empty));
}
