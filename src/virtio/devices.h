/* The virtio devices a VM can have. Each is created from its option string
 * (the value of a --disk, --net, ... option or dev.* config key), registers
 * itself on the PCI bus its creator gives (core/devctx.h), with that guest
 * memory, and is torn down with
 * virtio_device_destroy() (virtio/virtio_pci.h). A create function returns
 * 0, or -errno with a one-line reason in err for the user (a bad option, a
 * file that cannot be opened). */
#ifndef TARN_VIRTIO_DEVICES_H
#define TARN_VIRTIO_DEVICES_H

#include <stddef.h>

struct devctx;
struct virtio_dev;

typedef int virtio_create_fn(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err,
			     size_t err_len);

/* virtio-rng (rng.c): an entropy device filled from getrandom(2); spec unused. */
virtio_create_fn virtio_rng_create;
/* virtio-console (console.c), /dev/hvc0 in the guest: spec "pty" (a new
 * pseudo-terminal, path printed on stderr) or "file=PATH" (output appended). */
virtio_create_fn virtio_console_create;
/* virtio-blk (blk.c): spec "PATH[,ro][,direct][,serial=ID]", a raw image
 * file or block device (README "Devices"). */
virtio_create_fn virtio_blk_create;
/* virtio-net (net.c): spec "tap=NAME|fd=N[,mac=52:54:00:XX:XX:XX][,offload=on|csum|off]",
 * backends in virtio/net_backend.h. */
virtio_create_fn virtio_net_create;
/* virtio-net whose rings a vhost-user back end serves (net_vhost.c): spec
 * "vhost-user=PATH[,mac=52:54:00:XX:XX:XX]"; guest memory must be shared
 * (gm_init_shared). */
virtio_create_fn virtio_net_vhost_create;

#endif
