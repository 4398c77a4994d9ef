/* PIT channel 0 -> IOAPIC pin 2 -> LAPIC, then PIT -> PIC -> LINT0 ExtINT,
 * then TSC deadline timer, then self NMI via ICR. Each timer is set going
 * right after a SYNC and the next SYNC reports what it was asked to time:
 * the host measures the time between the two on its own clock (runner.c,
 * sync_timers_nmi). The TSC-deadline interrupt must also find the TSC at
 * or past the deadline. */
#include "lib/guest.h"

#define PIT_COUNT 1193 /* 1 ms of the 1.193182 MHz PIT, mode 2 */
#define PIT_TICKS 20
#define PIC_TICKS 10
#define TSCD_CYCLES 50000000u /* 50 ms at 1 GHz */

static volatile int ticks, pic_ticks, tscd, nmis;
static volatile uint64_t tscd_at;

static void on_pit(struct irq_frame *f) { ticks++; lapic_eoi(); }
static void on_pic(struct irq_frame *f) { pic_ticks++; outb(0x20, 0x20); }
static void on_tscd(struct irq_frame *f) { tscd_at = rdtsc(); tscd++; lapic_eoi(); }

/* Channel 0, lobyte/hibyte, mode 2 (rate generator): a new count restarts it. */
static void pit_start(void)
{
	outb(0x43, 0x34);
	outb(0x40, PIT_COUNT & 0xff);
	outb(0x40, PIT_COUNT >> 8);
}

static void on_nmi(struct irq_frame *f)
{
	nmis++;
	if (nmis == 1) {
		lapic_write(LAPIC_ICR_HI, 0);
		lapic_write(LAPIC_ICR_LO, (2u << 18) | (4u << 8));
		for (int i = 0; i < 1000; i++)
			pause();
		GUEST_ASSERT_EQ(nmis, 1); /* blocked until iret */
	}
}

void guest_main(unsigned cpu, uint64_t arg)
{
	uint32_t a, b, c, d;

	idt_install();
	idt_set_handler(0x30, on_pit);
	idt_set_handler(0x20, on_pic);
	idt_set_handler(0x60, on_tscd);
	idt_set_handler(2, on_nmi);
	lapic_enable();
	ioapic_write(0x10 + 2 * 2 + 1, guest_apic_id() << 24);
	GUEST_SYNC4(1, 0, 0, rdtsc());
	ioapic_write(0x10 + 2 * 2, 0x30);
	pit_start();
	while (ticks < PIT_TICKS)
		sti_hlt();
	cli();
	ioapic_write(0x10 + 2 * 2, 0x10030); /* masked */
	GUEST_SYNC4(2, PIT_COUNT, ticks, rdtsc());
	/* PIC: base 0x20, unmask IRQ0 only. */
	outb(0x20, 0x11); outb(0x21, 0x20); outb(0x21, 0x04); outb(0x21, 0x01);
	outb(0xa0, 0x11); outb(0xa1, 0x28); outb(0xa1, 0x02); outb(0xa1, 0x01);
	GUEST_SYNC4(3, 0, 0, rdtsc());
	pit_start();
	outb(0x21, 0xfe); outb(0xa1, 0xff);
	while (pic_ticks < PIC_TICKS)
		sti_hlt();
	cli();
	outb(0x21, 0xff);
	GUEST_SYNC4(4, PIT_COUNT, pic_ticks, rdtsc());
	/* TSC deadline */
	cpuid(1, 0, &a, &b, &c, &d);
	GUEST_ASSERT(c & (1u << 24));
	lapic_write(LAPIC_LVT_TIMER, 0x60 | (2u << 17));
	GUEST_SYNC(5, 0);
	{
		uint64_t deadline = rdtsc() + TSCD_CYCLES;

		wrmsr(0x6e0, deadline);
		GUEST_ASSERT(rdmsr(0x6e0) != 0);
		while (!tscd)
			sti_hlt();
		cli();
		GUEST_ASSERT_EQ(rdmsr(0x6e0), 0);
		/* Never early: the TSC has reached the deadline (else: by how
		 * many cycles it had not). */
		GUEST_ASSERT_EQ(tscd_at >= deadline ? 0 : deadline - tscd_at, 0);
	}
	GUEST_SYNC4(6, TSCD_CYCLES, tscd, 0);
	/* NMI to self via all-including-self shorthand */
	lapic_write(LAPIC_ICR_HI, 0);
	lapic_write(LAPIC_ICR_LO, (2u << 18) | (4u << 8));
	for (int i = 0; i < 1000000 && nmis < 2; i++)
		pause();
	GUEST_ASSERT_EQ(nmis, 2);
	{
		uint64_t v = 5;
		__asm__ volatile("mov %0, %%cr8" :: "r"(v));
		GUEST_ASSERT_EQ(lapic_read(0x80), 0x50);
		lapic_write(0x80, 0x70);
		__asm__ volatile("mov %%cr8, %0" : "=r"(v));
		GUEST_ASSERT_EQ(v, 7);
		lapic_write(0x80, 0);
	}
	GUEST_SYNC(7, 0);
}
