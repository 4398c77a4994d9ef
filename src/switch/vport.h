/* A VM's port on the switch: the back end of its virtio-net device over
 * vhost-user (virtio/vhost_user.h). The VMM (tarn, or QEMU with
 * -netdev vhost-user and guest memory in a memfd) connects to the port's
 * Unix socket and hands over guest memory and the two rings; the switch
 * then takes the guest's frames from its transmit ring and puts frames
 * into its receive buffers itself, with eventfds for the kicks and the
 * interrupts: no copy through the VMM, no exit for the VMM to handle.
 *
 * The rings are hostile input (virtio/virtqueue.c checks every index,
 * address and length against the memory the front end gave); so is every
 * message. A front end that breaks the protocol is disconnected; the port
 * then waits for the next. One connection at a time. Offered: the 1.x
 * interface, indirect descriptors, event index, mergeable receive
 * buffers, and checksum and TCP segmentation offloads both ways (the
 * owner checks each frame's header against what the guest negotiated,
 * vport_offloads, and does the work itself for ports without them:
 * switch/offload.h). */
#ifndef TARN_SWITCH_VPORT_H
#define TARN_SWITCH_VPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "virtio/net_hdr.h"

struct vport;

/* A frame the guest sent and its virtio-net header (as the guest wrote
 * it: unchecked), for the owner to switch. */
typedef void vport_frame_fn(void *opaque, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len);

/* A port listening on path (an existing file there is replaced). NULL,
 * with the reason in err. */
struct vport *vport_create(const char *path, vport_frame_fn *on_frame, void *opaque, char *err, size_t len);
void vport_destroy(struct vport *vp);

/* The descriptors the owner polls for readability, and what to call when
 * one is readable: up to VPORT_MAX_FDS of them; they may change in a
 * vport_ready call (a connection came or went, a ring started). */
#define VPORT_MAX_FDS 5
unsigned vport_fds(const struct vport *vp, int *fds);
/* Changes whenever vport_fds would give another set. */
unsigned vport_gen(const struct vport *vp);
void vport_ready(struct vport *vp, int fd);

/* The offloads the guest negotiated (NET_OFFLOAD_* of
 * virtio/net_backend.h): those it may send (tx: CSUM, HOST_TSO4/6) and
 * those it takes (rx: GUEST_CSUM, GUEST_TSO4/6). */
void vport_offloads(const struct vport *vp, unsigned *tx, unsigned *rx);

/* Put a frame into the guest's receive ring with header h (NULL: none,
 * a whole frame; only offloads vport_offloads says it takes): 0, or -1
 * when it has no buffer for it (not connected, ring not running, too few
 * posted, too small). The guest hears of it at vport_rx_flush: the owner
 * calls that once for a batch of frames, so that one interrupt covers
 * the batch. */
int vport_rx(struct vport *vp, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len);
void vport_rx_flush(struct vport *vp);

/* The guest's transmit rate: rl (the owner's; NULL none). Over it the
 * frames wait in the guest's ring, which backs up: nothing the guest
 * handed over is dropped. */
struct rate_limiter;
void vport_set_tx_limit(struct vport *vp, struct rate_limiter *rl);

/* Is a front end connected with its rings running? */
bool vport_running(const struct vport *vp);

#endif
