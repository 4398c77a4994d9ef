/* Small legacy PC devices: i8042 (for the reset line), the CMOS RTC, port
 * 0x80 and the debug-exit port. Each registers itself on the PIO bus. */
#ifndef TARN_HW_LEGACY_H
#define TARN_HW_LEGACY_H

#include <pthread.h>
#include <stdint.h>

struct devctx;

struct i8042 {
	pthread_mutex_t lock;
	const struct devctx *ctx;
	uint8_t cmd_byte;
	uint8_t pending_cmd; /* controller command waiting for its data byte */
	uint8_t out[4];	     /* output buffer queue (controller and keyboard replies) */
	unsigned out_count;
};

struct cmos_rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128];
};

int i8042_init(struct i8042 *k, const struct devctx *ctx) __attribute__((warn_unused_result));
int cmos_rtc_init(struct cmos_rtc *r, const struct devctx *ctx) __attribute__((warn_unused_result));
/* Port 0x80 (POST codes: swallowed) and the debug-exit port at 0xf4. */
int debug_ports_init(const struct devctx *ctx) __attribute__((warn_unused_result));

#define DEBUG_EXIT_PORT 0xf4

#endif
