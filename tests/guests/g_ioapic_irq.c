/* A device interrupt through the IOAPIC to this vCPU's LAPIC: COM1's
 * transmitter-empty interrupt on ISA IRQ 4, routed by the IOAPIC's
 * redirection entry 4 to vector 0x44. */
#include "lib/guest.h"

#define COM1 0x3f8
#define VEC 0x44

static volatile int hits;

static void on_irq(struct irq_frame *f)
{
	uint8_t iir = inb(COM1 + 2); /* reading IIR acknowledges THRE */

	GUEST_ASSERT_EQ(iir & 0x0f, 0x02);
	outb(COM1 + 1, 0); /* IER: no more interrupts */
	hits++;
	lapic_eoi();
}

void guest_main(unsigned cpu, uint64_t arg)
{
	idt_install();
	idt_set_handler(VEC, on_irq);
	lapic_enable();
	/* Redirection entry 4: fixed, physical destination APIC 0, edge,
	 * active high, unmasked. */
	ioapic_write(0x10 + 2 * 4 + 1, guest_apic_id() << 24);
	ioapic_write(0x10 + 2 * 4, VEC);
	outb(COM1 + 4, 0x08); /* OUT2: the PC's IRQ enable */
	sti();
	outb(COM1 + 1, 0x02); /* IER: THR empty -> interrupt at once */
	for (int i = 0; i < 1000000 && !hits; i++)
		pause();
	cli();
	GUEST_ASSERT_EQ(hits, 1);
	GUEST_SYNC(hits, 0);
}
