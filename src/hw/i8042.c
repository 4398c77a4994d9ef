/* i8042 keyboard controller with a PS/2 keyboard behind it: enough for
 * Linux's i8042 and atkbd drivers to find both at once, for the guest to
 * reset the machine (command 0xFE, which is also where the FADT's reset
 * register points), and for the host to press Ctrl+Alt+Del
 * (i8042_ctrl_alt_del; the API's SendCtrlAltDel, as Firecracker). No other
 * keys and no mouse: tarn's console is the serial port.
 *
 * The keyboard answers the commands a driver sends (reset, identify, LEDs,
 * scan-code set, typematic rate, enable, disable) in scan-code set 2, and
 * the controller translates to set 1 when the guest turns translation on
 * (command byte bit 6), for the codes this keyboard ever sends. Every byte
 * put in the output buffer raises IRQ 1 while the guest enables it
 * (command byte bit 0), as QEMU's does. */
#include "hw/legacy.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include "bus/bus.h"
#include "core/devctx.h"
#include "core/log.h"

#define I8042_DATA 0x60
#define I8042_CMD 0x64
#define I8042_IRQ 1
#define STS_OBF 0x01 /* output buffer full */
#define STS_SYS 0x04 /* system flag: POST passed */
#define STS_CMD 0x08 /* last write was a command */
#define STS_UNLOCKED 0x10 /* the keyboard is not inhibited (no keylock) */
#define CMD_KBD_INT 0x01  /* command byte: IRQ 1 on output */
#define CMD_KBD_OFF 0x10  /* keyboard clock disabled */
#define CMD_XLATE 0x40	  /* translate set 2 to set 1 */

#define KBD_ACK 0xfa

/* Set 2 -> set 1 for the codes this keyboard sends (the rest are the same
 * in both, or not translated: ACK, self-test, prefixes). */
static uint8_t xlate(uint8_t c)
{
	switch (c) {
	case 0x14: return 0x1d; /* Ctrl */
	case 0x11: return 0x38; /* Alt */
	case 0x71: return 0x53; /* Delete (after 0xE0) */
	case 0x83: return 0x41; /* the second identify byte */
	default: return c;
	}
}

/* Drive IRQ 1 from the output buffer. k->lock held. */
static void kbc_update_irq(struct i8042 *k)
{
	bool level = k->out_count && (k->cmd_byte & CMD_KBD_INT);

	if (level != k->irq_level) {
		k->irq_level = level;
		dev_irq_line(k->ctx, I8042_IRQ, level);
	}
}

static void kbc_queue(struct i8042 *k, uint8_t v)
{
	if (k->out_count < sizeof(k->out))
		k->out[k->out_count++] = v;
}

/* A byte from the keyboard, translated if the guest asked. */
static void kbd_send(struct i8042 *k, uint8_t v)
{
	if (!(k->cmd_byte & CMD_XLATE)) {
		kbc_queue(k, v);
	} else if (v == 0xf0) {
		k->xlate_break = true;
	} else {
		kbc_queue(k, (uint8_t)(xlate(v) | (k->xlate_break ? 0x80 : 0)));
		k->xlate_break = false;
	}
}

/* A byte the guest wrote for the keyboard. */
static void kbd_write(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->kbd_cmd;

	k->kbd_cmd = 0;
	if (cmd == 0xf0) { /* scan-code set: 0 asks which */
		kbd_send(k, KBD_ACK);
		if (!v)
			kbd_send(k, k->kbd_set);
		else if (v <= 3)
			k->kbd_set = v;
		return;
	}
	if (cmd) { /* the argument of LEDs (0xED) or typematic rate (0xF3) */
		kbd_send(k, KBD_ACK);
		return;
	}
	switch (v) {
	case 0xed: case 0xf0: case 0xf3:
		k->kbd_cmd = v;
		kbd_send(k, KBD_ACK);
		break;
	case 0xee: kbd_send(k, 0xee); break; /* echo */
	case 0xf2: /* identify: an MF2 keyboard */
		kbd_send(k, KBD_ACK);
		kbd_send(k, 0xab);
		kbd_send(k, 0x83);
		break;
	case 0xff: /* reset: defaults, self-test passed */
		k->kbd_set = 2;
		kbd_send(k, KBD_ACK);
		kbd_send(k, 0xaa);
		break;
	case 0xf6: k->kbd_set = 2; kbd_send(k, KBD_ACK); break; /* defaults */
	default: kbd_send(k, KBD_ACK); break; /* enable, disable, and the rest */
	}
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
			/* The next byte is a new interrupt: an edge. */
			if (k->irq_level) {
				k->irq_level = false;
				dev_irq_line(k->ctx, I8042_IRQ, 0);
			}
			kbc_update_irq(k);
		}
	} else { /* port 0x64 */
		v = STS_SYS | STS_UNLOCKED | (k->out_count ? STS_OBF : 0);
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
	case 0xad: k->cmd_byte |= CMD_KBD_OFF; break;	/* disable keyboard */
	case 0xae: k->cmd_byte &= (uint8_t)~CMD_KBD_OFF; break;
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
		case 0xd3: case 0xd4: break;	   /* to the (absent) mouse */
		default: kbd_write(k, v); break;
		}
		k->pending_cmd = 0;
	} else {
		kbc_command(k, v);
	}
	kbc_update_irq(k);
	pthread_mutex_unlock(&k->lock);
}

int i8042_ctrl_alt_del(struct i8042 *k)
{
	/* Set 2: press Ctrl, Alt, Delete; release them in turn. */
	static const uint8_t keys[] = { 0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14 };
	int ret = 0;

	pthread_mutex_lock(&k->lock);
	if (k->cmd_byte & CMD_KBD_OFF)
		ret = -EAGAIN; /* the guest has not (yet) turned its keyboard on */
	else if (k->out_count + sizeof(keys) > sizeof(k->out))
		ret = -EBUSY;  /* the guest has not read what it has */
	for (size_t i = 0; !ret && i < sizeof(keys); i++)
		kbd_send(k, keys[i]);
	kbc_update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return ret;
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
	snap_put_u8(b, k->kbd_cmd);
	snap_put_u8(b, k->kbd_set);
	snap_put_u8(b, k->xlate_break);
	pthread_mutex_unlock(&k->lock);
}

static int kbc_restore(void *obj, struct snap_cur *c, char *err, size_t len)
{
	struct i8042 *k = obj;
	uint8_t cmd = snap_get_u8(c), pending = snap_get_u8(c), n = snap_get_u8(c), out[sizeof(k->out)];
	uint8_t kbd_cmd, set, brk;

	snap_get_bytes(c, out, sizeof(out));
	kbd_cmd = snap_get_u8(c);
	set = snap_get_u8(c);
	brk = snap_get_u8(c);
	if (n > sizeof(k->out))
		return errorf(err, len, -EINVAL, "%u bytes queued (at most %zu)", n, sizeof(k->out));
	if (set < 1 || set > 3 || brk > 1 || (kbd_cmd && kbd_cmd != 0xed && kbd_cmd != 0xf0 && kbd_cmd != 0xf3))
		return errorf(err, len, -EINVAL, "keyboard state (set %u, command %#x, break prefix %u) no keyboard is in",
			      set, kbd_cmd, brk);
	pthread_mutex_lock(&k->lock);
	k->cmd_byte = cmd;
	k->pending_cmd = pending;
	k->out_count = n;
	memcpy(k->out, out, sizeof(out));
	k->kbd_cmd = kbd_cmd;
	k->kbd_set = set;
	k->xlate_break = brk;
	kbc_update_irq(k);
	pthread_mutex_unlock(&k->lock);
	return 0;
}

static const struct snap_ops kbc_snap = {
	.name = "i8042", .id = SNAP_ID("KBC "), .version = 2, .save = kbc_save, .restore = kbc_restore,
};

int i8042_init(struct i8042 *k, const struct devctx *ctx)
{
	int ret;

	memset(k, 0, sizeof(*k));
	pthread_mutex_init(&k->lock, NULL);
	k->ctx = ctx;
	k->cmd_byte = 0x30; /* keyboard and aux disabled, no interrupts */
	k->kbd_set = 2;
	if (dev_register_state(ctx, &kbc_snap, k, 0))
		return -ENOMEM;
	ret = bus_register(ctx->pio, I8042_DATA, 1, &data_ops, k, "i8042");
	if (!ret)
		ret = bus_register(ctx->pio, I8042_CMD, 1, &cmd_ops, k, "i8042");
	return ret;
}
