/* The CMOS RTC reports the host's time: the guest reads the BCD clock and
 * hands it to the host, which checks it lies between the test's start and
 * the report (runner.c, sync_rtc). */
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

/* Date as yyyymmdd, time of day in seconds. */
static void rtc_read(uint64_t *date, uint64_t *secs)
{
	*secs = bcd(cmos(4)) * 3600 + bcd(cmos(2)) * 60 + bcd(cmos(0));
	*date = (bcd(cmos(9)) + 100 * bcd(cmos(0x32))) * 10000 + bcd(cmos(8)) * 100 + bcd(cmos(7));
}

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t date, secs, date2, secs2;

	while (cmos(0x0a) & 0x80) /* update in progress */
		pause();
	GUEST_ASSERT_EQ(cmos(0x0b) & 0x06, 0x02); /* BCD, 24-hour */
	/* The registers are read one by one: read until two readings agree,
	 * as no second ended in between. */
	rtc_read(&date2, &secs2);
	do {
		date = date2;
		secs = secs2;
		rtc_read(&date2, &secs2);
	} while (date != date2 || secs != secs2);
	GUEST_SYNC4(date, secs, 0, 0);
}
