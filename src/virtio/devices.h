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
#include <stdint.h>

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
/* A migration that copies the disks (migrate/migrate.h), on a virtio-blk
 * device (others: 0, -EINVAL). virtio_blk_copy_size: the bytes to copy (0:
 * not a writable disk). virtio_blk_track: from now on, note the chunks of
 * VIRTIO_BLK_COPY_CHUNK bytes the guest writes, all of them noted to start
 * with. virtio_blk_take: OR the noted chunks into bits (a bit each) and
 * clear them. copy_read/copy_write: the guest's view of [off, off + len),
 * multiples of 512, through the image's format. Any thread. */
#define VIRTIO_BLK_COPY_CHUNK (64u << 10)
uint64_t virtio_blk_copy_size(struct virtio_dev *vd);
int virtio_blk_track(struct virtio_dev *vd);
void virtio_blk_take(struct virtio_dev *vd, uint64_t *bits);
int virtio_blk_copy_read(struct virtio_dev *vd, uint64_t off, void *buf, size_t len);
int virtio_blk_copy_write(struct virtio_dev *vd, uint64_t off, const void *buf, size_t len);
/* virtio-net (net.c): spec "tap=NAME|fd=N[,mac=52:54:00:XX:XX:XX][,offload=on|csum|off]",
 * backends in virtio/net_backend.h. */
virtio_create_fn virtio_net_create;
/* virtio-net whose rings a vhost-user back end serves (net_vhost.c): spec
 * "vhost-user=PATH[,mac=52:54:00:XX:XX:XX]"; guest memory must be shared
 * (gm_init_shared). */
virtio_create_fn virtio_net_vhost_create;

#endif
