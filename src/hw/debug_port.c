/* Port 0x80 swallows POST codes. Port 0xf4 is a debug-exit port compatible
 * with QEMU's isa-debug-exit: writing value v ends the VM with process exit
 * status (v << 1) | 1, so test kernels written for QEMU run unchanged. */
#include "hw/legacy.h"

#include <string.h>

#include "bus/bus.h"
#include "core/devctx.h"

static void nop_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	memset(data, 0xff, len);
}

static void nop_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
}

static void exit_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	uint32_t v = 0;

	memcpy(&v, data, len < 4 ? len : 4);
	/* Exit statuses are 8 bits wide, as with QEMU. */
	dev_request_stop(opaque, (int)(((v << 1) | 1) & 0xff));
}

static const struct bus_ops port80_ops = { .read = nop_read, .write = nop_write };
static const struct bus_ops exit_ops = { .read = nop_read, .write = exit_write };

int debug_ports_init(const struct devctx *ctx)
{
	int ret = bus_register(ctx->pio, 0x80, 1, &port80_ops, NULL, "port80");

	if (!ret)
		ret = bus_register(ctx->pio, DEBUG_EXIT_PORT, 4, &exit_ops, (void *)ctx, "debug-exit");
	return ret;
}
