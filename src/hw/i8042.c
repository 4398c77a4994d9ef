/* i8042 keyboard controller: just enough for Linux's probe to succeed
 * quickly and for the guest to reset the machine (command 0xFE, which is
 * also where the FADT's reset register points). No keyboard input: tarn's
 * console is the serial port. */
#include "hw/legacy.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/devctx.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define STS_OBF 0x01 /* output buffer full */
#define STS_SYS 0x04 /* system flag: POST passed */
#define STS_CMD 0x08 /* last write was a command */

static void kbc_queue(struct i8042 *k, uint8_t v)
{
	if (k->out_count < sizeof(k->out))
		k->out[k->out_count++] = v;
}

/* The data (0x60) and command/status (0x64) ports are registered as two
 * one-byte ranges, so each access arrives at offset 0: the ops tell them
 * apart. */
static void kbc_read(struct i8042 *k, bool data_port, void *data, unsigned len)
{
	uint8_t v;

	pthread_mutex_lock(&k->lock);
	if (data_port) {
		v = k->out_count ? k->out[0] : 0;
		if (k->out_count) {
			memmove(k->out, k->out + 1, --k->out_count);
		}
	} else { /* port 0x64 */
		v = STS_SYS | (k->out_count ? STS_OBF : 0);
	}
	pthread_mutex_unlock(&k->lock);
	memset(data, v, len);
}

static void kbc_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case 0x20: kbc_queue(k, k->cmd_byte); break;	/* read command byte */
	case 0x60: case 0xd1: case 0xd2: case 0xd3: case 0xd4:
		k->pending_cmd = cmd; break;		/* next data byte is for us */
	case 0xa7: k->cmd_byte |= 0x20; break;		/* disable aux */
	case 0xa8: k->cmd_byte &= (uint8_t)~0x20; break;
	case 0xa9: kbc_queue(k, 0xff); break;		/* aux test: no aux port */
	case 0xaa: kbc_queue(k, 0x55); break;		/* self test passed */
	case 0xab: kbc_queue(k, 0x00); break;		/* keyboard interface ok */
	case 0xad: k->cmd_byte |= 0x10; break;		/* disable keyboard */
	case 0xae: k->cmd_byte &= (uint8_t)~0x10; break;
	case 0xfe: dev_request_stop(k->ctx, VM_EXIT_RESET); break; /* pulse reset */
	default: break;
	}
}

static void kbc_write(struct i8042 *k, bool data_port, const void *data)
{
	uint8_t v = *(const uint8_t *)data;

	pthread_mutex_lock(&k->lock);
	if (data_port) {
		switch (k->pending_cmd) {
		case 0x60: k->cmd_byte = v; break;
		case 0xd1: /* output port: bit 0 low resets the CPU */
			if (!(v & 1))
				dev_request_stop(k->ctx, VM_EXIT_RESET);
			break;
		case 0xd2: kbc_queue(k, v); break; /* echo as keyboard input */
		case 0xd4: break;		   /* to the (absent) mouse */
		default:
			/* A keyboard command: no keyboard behind us, so time out
			 * like an empty port (0xfe would invite retries). */
			break;
		}
		k->pending_cmd = 0;
	} else {
		kbc_command(k, v);
	}
	pthread_mutex_unlock(&k->lock);
}

static void data_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	kbc_read(opaque, true, data, len);
}

static void data_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	kbc_write(opaque, true, data);
}

static void cmd_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	kbc_read(opaque, false, data, len);
}

static void cmd_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	kbc_write(opaque, false, data);
}

static const struct bus_ops data_ops = { .read = data_read, .write = data_write };
static const struct bus_ops cmd_ops = { .read = cmd_read, .write = cmd_write };

static void kbc_save(void *obj, struct snap_buf *b)
{
	struct i8042 *k = obj;

	pthread_mutex_lock(&k->lock);
	snap_put_u8(b, k->cmd_byte);
	snap_put_u8(b, k->pending_cmd);
	snap_put_u8(b, (uint8_t)k->out_count);
	snap_put_bytes(b, k->out, sizeof(k->out));
	pthread_mutex_unlock(&k->lock);
}

static int kbc_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct i8042 *k = obj;
	uint8_t cmd = snap_get_u8(c), pending = snap_get_u8(c), n = snap_get_u8(c);

	if (n > sizeof(k->out))
		return errorf(err, len, -EINVAL, "%u bytes queued (at most %zu)", n, sizeof(k->out));
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = cmd;
	k->pending_cmd = pending;
	k->out_count = n;
	snap_get_bytes(c, k->out, sizeof(k->out));
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static const struct snap_ops kbc_snap = {
	.name = "i8042", .id = SNAP_ID("KBC "), .version = 1, .save = kbc_save, .restore = kbc_restore,
};

int i8042_init(struct i8042 *k, const struct devctx *ctx)
{
	int ret;

	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->ctx = ctx;
	k->cmd_byte = 0x30; /* keyboard and aux disabled, no interrupts */
	if (dev_register_state(ctx, &kbc_snap, k, 0))
		return -ENOMEM;
	ret = bus_register(ctx->pio, I8042_DATA, 1, &data_ops, k, "i8042");
	if (!ret)
		ret = bus_register(ctx->pio, I8042_CMD, 1, &cmd_ops, k, "i8042");
	return ret;
}
