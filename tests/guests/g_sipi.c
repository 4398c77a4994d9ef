/* BSP sends INIT + SIPI to AP 1; the AP's real-mode trampoline at 0x8000
 * writes the debug-exit port. */
#include "lib/guest.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	static const uint8_t tramp[] = {
		0xba, 0xf4, 0x00,	/* mov dx, 0xf4 */
		0x8c, 0xc8,		/* mov ax, cs */
		0x3d, 0x00, 0x08,	/* cmp ax, 0x800 */
		0x75, 0x04,		/* jne bad */
		0xb0, 0x21,		/* mov al, 0x21 */
		0xee,			/* out dx, al */
		0xf4,			/* hlt */
		0xb0, 0x22,		/* bad: mov al, 0x22 */
		0xee, 0xf4,
	};
	if (cpu != 0) {
		cli();
		for (;;)
			hlt();
	}
	memcpy((void *)0x8000, tramp, sizeof(tramp));
	lapic_enable();
	for (volatile int i = 0; i < 100000; i++)
		;
	lapic_write(LAPIC_ICR_HI, 1u << 24);
	lapic_write(LAPIC_ICR_LO, (1u << 15) | (1u << 14) | (5u << 8));
	lapic_write(LAPIC_ICR_LO, (6u << 8) | 0x08);
	lapic_write(LAPIC_ICR_LO, (6u << 8) | 0x08);
	for (;;)
		pause();
}
