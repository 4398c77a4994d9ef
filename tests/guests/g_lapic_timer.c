/* The LAPIC timer: one-shot wakes a halted vCPU; periodic mode ticks
 * repeatedly; the current count runs down. Each timer is set going right
 * after a SYNC and the next SYNC reports what it was asked to time, in
 * APIC bus clocks (divide by 1): the host measures the time between the
 * two on its own clock (runner.c, sync_lapic_timer). */
#include "lib/guest.h"

#define VEC 0x50
#define ONESHOT 20000000u /* 20 ms of the 1 GHz APIC bus */
#define PERIOD 4000000u	  /* 4 ms */
#define PERIODS 5

static volatile int ticks;

static void on_timer(struct irq_frame *f)
{
	ticks++;
	lapic_eoi();
}

void guest_main(unsigned cpu, uint64_t arg)
{
	int periodic;

	idt_install();
	idt_set_handler(VEC, on_timer);
	lapic_enable();
	lapic_write(LAPIC_TIMER_DCR, 0xb); /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, VEC); /* one-shot */
	GUEST_SYNC(1, 0);
	lapic_write(LAPIC_TIMER_ICR, ONESHOT);
	GUEST_ASSERT(lapic_read(LAPIC_TIMER_CCR) <= ONESHOT);
	while (!ticks)
		sti_hlt();
	cli();
	GUEST_ASSERT_EQ(ticks, 1);
	GUEST_ASSERT_EQ(lapic_read(LAPIC_TIMER_CCR), 0);
	GUEST_SYNC4(2, ONESHOT, 1, 0);

	lapic_write(LAPIC_LVT_TIMER, VEC | (1 << 17)); /* periodic */
	GUEST_SYNC(3, 0);
	lapic_write(LAPIC_TIMER_ICR, PERIOD);
	while (ticks < 1 + PERIODS)
		sti_hlt();
	cli();
	periodic = ticks - 1;
	lapic_write(LAPIC_LVT_TIMER, 1 << 16); /* masked */
	GUEST_SYNC4(4, PERIOD, periodic, 0);
}
