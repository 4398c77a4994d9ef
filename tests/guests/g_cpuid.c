/* The guest sees a sane CPU: long mode active, the hypervisor bit, an APIC
 * ID matching the LAPIC's ID register, and MSRs that exist read back. */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	uint32_t a, b, c, d;

	cpuid(0, 0, &a, &b, &c, &d);
	GUEST_ASSERT(a >= 1);
	cpuid(1, 0, &a, &b, &c, &d);
	GUEST_ASSERT(c & (1u << 31));	  /* running under a hypervisor */
	GUEST_ASSERT(d & (1u << 9));	  /* APIC */
	GUEST_ASSERT_EQ(b >> 24, cpu);
	cpuid(0x80000001, 0, &a, &b, &c, &d);
	GUEST_ASSERT(d & (1u << 29));	  /* long mode */
	GUEST_ASSERT(rdmsr(0xc0000080) & (1u << 10)); /* EFER.LMA */
	GUEST_ASSERT_EQ(rdmsr(0x1b) & 0xfffff000ULL, LAPIC_BASE);
	GUEST_ASSERT_EQ(lapic_read(LAPIC_ID) >> 24, cpu);
	wrmsr(0xc0000102, 0x1234567890ULL); /* KERNEL_GS_BASE */
	GUEST_ASSERT_EQ(rdmsr(0xc0000102), 0x1234567890ULL);
	GUEST_SYNC(1, 0);
}
