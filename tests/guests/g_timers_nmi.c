/* PIT channel 0 -> IOAPIC pin 2 -> LAPIC, then PIT -> PIC -> LINT0 ExtINT,
 * then TSC deadline timer, then self NMI via ICR. */
#include "lib/guest.h"

static volatile int ticks, pic_ticks, tscd, nmis;

static void on_pit(struct irq_frame *f) { ticks++; lapic_eoi(); }
static void on_pic(struct irq_frame *f) { pic_ticks++; outb(0x20, 0x20); }
static void on_tscd(struct irq_frame *f) { tscd++; lapic_eoi(); }
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
	ioapic_write(0x10 + 2 * 2, 0x30);
	outb(0x43, 0x34);
	outb(0x40, 1193 & 0xff);
	outb(0x40, 1193 >> 8);
	while (ticks < 20)
		sti_hlt();
	cli();
	ioapic_write(0x10 + 2 * 2, 0x10030); /* masked */
	/* PIC: base 0x20, unmask IRQ0 only. */
	outb(0x20, 0x11); outb(0x21, 0x20); outb(0x21, 0x04); outb(0x21, 0x01);
	outb(0xa0, 0x11); outb(0xa1, 0x28); outb(0xa1, 0x02); outb(0xa1, 0x01);
	outb(0x21, 0xfe); outb(0xa1, 0xff);
	while (pic_ticks < 10)
		sti_hlt();
	cli();
	outb(0x21, 0xff);
	/* TSC deadline */
	cpuid(1, 0, &a, &b, &c, &d);
	GUEST_ASSERT(c & (1u << 24));
	lapic_write(LAPIC_LVT_TIMER, 0x60 | (2u << 17));
	wrmsr(0x6e0, rdtsc() + 2000000); /* 2 ms at 1 GHz */
	GUEST_ASSERT(rdmsr(0x6e0) != 0);
	while (!tscd)
		sti_hlt();
	cli();
	GUEST_ASSERT_EQ(rdmsr(0x6e0), 0);
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
	GUEST_SYNC(ticks, pic_ticks);
}
