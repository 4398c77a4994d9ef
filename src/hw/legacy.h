/* Small legacy PC devices: i8042 (keyboard controller and keyboard), the CMOS RTC, port
 * 0x80 and the debug-exit port. Each registers itself on the PIO bus. */
#ifndef TARN_HW_LEGACY_H
#define TARN_HW_LEGACY_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct devctx;

struct i8042 {
	pthread_mutex_t lock;
	const struct devctx *ctx;
	uint8_t cmd_byte;
	uint8_t pending_cmd; /* controller command waiting for its data byte */
	uint8_t out[16];     /* output buffer queue (controller and keyboard replies) */
	unsigned out_count;
	bool irq_level;	     /* what we drive on IRQ 1 */
	uint8_t kbd_cmd;     /* keyboard command waiting for its argument */
	uint8_t kbd_set;     /* the keyboard's scan-code set (1..3) */
	bool xlate_break;    /* translating: a break prefix (0xF0) came */
};

struct cmos_rtc {
	pthread_mutex_t lock;
	uint8_t index;
	uint8_t ram[128];
};

int i8042_init(struct i8042 *k, const struct devctx *ctx) __attribute__((warn_unused_result));
/* Press and release Ctrl+Alt+Del on the keyboard. 0; -EAGAIN while the
 * guest keeps the keyboard off (not yet probed); -EBUSY while the guest
 * has not read the last keys. */
int i8042_ctrl_alt_del(struct i8042 *k);
int cmos_rtc_init(struct cmos_rtc *r, const struct devctx *ctx) __attribute__((warn_unused_result));
/* Port 0x80 (POST codes: swallowed) and the debug-exit port at 0xf4. */
int debug_ports_init(const struct devctx *ctx) __attribute__((warn_unused_result));

#define DEBUG_EXIT_PORT 0xf4

#endif
