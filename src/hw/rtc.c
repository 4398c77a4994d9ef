/* MC146818 CMOS RTC at ports 0x70/0x71. The time registers report the
 * host's current UTC time in BCD, 24-hour mode, read at the moment of the
 * access; the rest is 128 bytes of CMOS RAM. No alarm or periodic
 * interrupts yet. */
#include "hw/legacy.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "core/devctx.h"

#define RTC_REG_A 0x0a
#define RTC_REG_B 0x0b
#define RTC_REG_C 0x0c
#define RTC_REG_D 0x0d
#define RTC_CENTURY 0x32

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) % 10) << 4 | (v % 10));
}

static uint8_t rtc_reg(struct cmos_rtc *r, uint8_t idx)
{
	struct tm tm;
	time_t now;

	if (idx > RTC_REG_D && idx != RTC_CENTURY)
		return r->ram[idx];
	now = time(NULL);
	gmtime_r(&now, &tm);
	switch (idx) {
	case 0x00: return bcd(tm.tm_sec);
	case 0x02: return bcd(tm.tm_min);
	case 0x04: return bcd(tm.tm_hour);
	case 0x06: return bcd(tm.tm_wday + 1);
	case 0x07: return bcd(tm.tm_mday);
	case 0x08: return bcd(tm.tm_mon + 1);
	case 0x09: return bcd(tm.tm_year % 100);
	case RTC_CENTURY: return bcd((tm.tm_year + 1900) / 100);
	case RTC_REG_A: return 0x26; /* 32.768 kHz base, 1024 Hz rate, UIP clear */
	case RTC_REG_B: return 0x02; /* 24-hour, BCD, no interrupts */
	case RTC_REG_C: return 0x00;
	case RTC_REG_D: return 0x80; /* battery good */
	default: return r->ram[idx];  /* alarm registers */
	}
}

static void rtc_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct cmos_rtc *r = opaque;
	uint8_t v;

	pthread_mutex_lock(&r->lock);
	v = off == 0 ? r->index : rtc_reg(r, r->index);
	pthread_mutex_unlock(&r->lock);
	memset(data, v, len);
}

static void rtc_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct cmos_rtc *r = opaque;
	uint8_t v = *(const uint8_t *)data;

	pthread_mutex_lock(&r->lock);
	if (off == 0)
		r->index = v & 0x7f; /* bit 7 is the NMI mask */
	else if (r->index > RTC_REG_D && r->index != RTC_CENTURY)
		r->ram[r->index] = v; /* guests may not set the clock (yet) */
	pthread_mutex_unlock(&r->lock);
}

static const struct bus_ops rtc_ops = { .read = rtc_read, .write = rtc_write };

/* The clock itself is the host's (read on each access); the RAM and
 * the index are the state. */
static void rtc_save(void *obj, struct snap_buf *b)
{
	struct cmos_rtc *r = obj;

	pthread_mutex_lock(&r->lock);
	snap_put_u8(b, r->index);
	snap_put_bytes(b, r->ram, sizeof(r->ram));
	pthread_mutex_unlock(&r->lock);
}

static int rtc_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct cmos_rtc *r = obj;

	(void)err, (void)len;
	pthread_mutex_lock(&r->lock);
	r->index = snap_get_u8(c) & 0x7f;
	snap_get_bytes(c, r->ram, sizeof(r->ram));
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static const struct snap_ops rtc_snap = {
	.name = "CMOS RTC", .id = SNAP_ID("RTC "), .version = 1, .save = rtc_save, .restore = rtc_restore,
};

int cmos_rtc_init(struct cmos_rtc *r, const struct devctx *ctx)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->lock, NULL);
	if (dev_register_state(ctx, &rtc_snap, r, 0))
		return -ENOMEM;
	return bus_register(ctx->pio, 0x70, 2, &rtc_ops, r, "cmos-rtc");
}
