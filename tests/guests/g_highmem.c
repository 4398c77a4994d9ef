/* RAM above the 4 GiB hole is real, distinct memory: the guest maps
 * [4 GiB, 5 GiB) with its own page directory, writes a pattern at both
 * sides of the hole, and the host checks the bytes through its own view. */
#include "lib/guest.h"

static uint64_t pd[512] __attribute__((aligned(4096)));

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(*(uint64_t *)(uintptr_t)(read_cr3() & ~0xfffULL) & ~0xfffULL);
	volatile uint64_t *lo = (volatile uint64_t *)0xbff00000ULL;	 /* just below the hole */
	volatile uint64_t *hi = (volatile uint64_t *)0x100000000ULL;	 /* first byte above */
	volatile uint64_t *hi2 = (volatile uint64_t *)0x13ff00000ULL;

	for (int i = 0; i < 512; i++)
		pd[i] = (0x100000000ULL + ((uint64_t)i << 21)) | 0x83;
	pdpt[4] = (uint64_t)(uintptr_t)pd | 3;
	write_cr3(read_cr3());
	*lo = 0x10f0f0f0f0f0f0f0ULL;
	*hi = 0x4444444444444444ULL;
	*hi2 = 0x5555555555555555ULL;
	GUEST_ASSERT_EQ(*lo, 0x10f0f0f0f0f0f0f0ULL);
	GUEST_ASSERT_EQ(*hi, 0x4444444444444444ULL);
	GUEST_SYNC(*hi2, 0);
}
