/* The CMOS RTC reports the host's time: the guest reads the BCD clock and
 * hands it to the host, which compares with its own. */
#include "lib/guest.h"

static uint8_t cmos(uint8_t idx)
{
	outb(0x70, idx);
	return inb(0x71);
}

static unsigned bcd(uint8_t v)
{
	return (v >> 4) * 10 + (v & 15);
}

void guest_main(unsigned cpu, uint64_t arg)
{
	unsigned s, m, h, day, mon, year;

	while (cmos(0x0a) & 0x80) /* update in progress */
		pause();
	GUEST_ASSERT_EQ(cmos(0x0b) & 0x06, 0x02); /* BCD, 24-hour */
	s = bcd(cmos(0));
	m = bcd(cmos(2));
	h = bcd(cmos(4));
	day = bcd(cmos(7));
	mon = bcd(cmos(8));
	year = bcd(cmos(9)) + 100 * bcd(cmos(0x32));
	GUEST_SYNC4(year * 10000 + mon * 100 + day, h * 3600 + m * 60 + s, 0, 0);
}
