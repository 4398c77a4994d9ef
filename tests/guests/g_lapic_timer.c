/* The LAPIC timer: one-shot wakes a halted vCPU; periodic mode ticks
 * repeatedly; the current count runs down. */
#include "lib/guest.h"

#define VEC 0x50

static volatile int ticks;

static void on_timer(struct irq_frame *f)
{
	ticks++;
	lapic_eoi();
}

void guest_main(unsigned cpu, uint64_t arg)
{
	idt_install();
	idt_set_handler(VEC, on_timer);
	lapic_enable();
	lapic_write(LAPIC_TIMER_DCR, 0xb); /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, VEC); /* one-shot */
	lapic_write(LAPIC_TIMER_ICR, 100000);
	GUEST_ASSERT(lapic_read(LAPIC_TIMER_CCR) <= 100000);
	while (!ticks)
		sti_hlt();
	cli();
	GUEST_ASSERT_EQ(ticks, 1);
	GUEST_ASSERT_EQ(lapic_read(LAPIC_TIMER_CCR), 0);
	lapic_write(LAPIC_LVT_TIMER, VEC | (1 << 17)); /* periodic */
	lapic_write(LAPIC_TIMER_ICR, 50000);
	while (ticks < 5)
		sti_hlt();
	cli();
	lapic_write(LAPIC_LVT_TIMER, 1 << 16); /* masked */
	GUEST_SYNC(ticks, 0);
}
