/* The guest programs COM1 like a driver (divisor, 8N1) and prints a line;
 * the host reads it back from the console fd. */
#include "lib/guest.h"

#define COM1 0x3f8

static void putc_serial(char c)
{
	while (!(inb(COM1 + 5) & 0x20)) /* THR empty */
		pause();
	outb(COM1, (uint8_t)c);
}

void guest_main(unsigned cpu, uint64_t arg)
{
	const char *s = "hello from the micro-guest\n";

	outb(COM1 + 3, 0x80); /* DLAB */
	outb(COM1 + 0, 1);    /* 115200 baud */
	outb(COM1 + 1, 0);
	outb(COM1 + 3, 0x03); /* 8N1 */
	GUEST_ASSERT_EQ(inb(COM1 + 3), 0x03);
	outb(COM1 + 7, 0x5a); /* scratch register */
	GUEST_ASSERT_EQ(inb(COM1 + 7), 0x5a);
	while (*s)
		putc_serial(*s++);
}
