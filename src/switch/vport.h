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
 * interface, indirect descriptors, event index; no offloads yet (every
 * frame is whole, at most the MTU). */
#ifndef TARN_SWITCH_VPORT_H
#define TARN_SWITCH_VPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vport;

/* A frame the guest sent (without its virtio-net header), for the owner
 * to switch. */
typedef void vport_frame_fn(void *opaque, const uint8_t *frame, size_t len);

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

/* Put a frame into the guest's receive ring: 0, or -1 when it has no
 * buffer for it (not connected, ring not running, none posted, too small). */
int vport_rx(struct vport *vp, const uint8_t *frame, size_t len);

/* The guest's transmit rate: rl (the owner's; NULL none). Over it the
 * frames wait in the guest's ring, which backs up: nothing the guest
 * handed over is dropped. */
struct rate_limiter;
void vport_set_tx_limit(struct vport *vp, struct rate_limiter *rl);

/* Is a front end connected with its rings running? */
bool vport_running(const struct vport *vp);

#endif
