/* The host side of a virtio-net device: a table of backends, each moving
 * whole Ethernet frames, one per read or write, every frame preceded by a
 * 12-byte virtio_net_hdr_v1 (virtio spec 5.1.6) so checksum and
 * segmentation offloads cross the seam unchanged.
 *
 *   tap=NAME  a tap device (tap.c): /dev/net/tun, IFF_TAP | IFF_NO_PI |
 *             IFF_VNET_HDR, non-blocking
 *   fd=N      an inherited descriptor: a tap opened that way by a parent, or
 *             a SOCK_SEQPACKET / SOCK_DGRAM socket carrying one frame per
 *             message (what the tests use as a fake)
 *
 * A new backend (a switch port, ...) is one more ops table in
 * net_backends[]. */
#ifndef TARN_NET_BACKEND_H
#define TARN_NET_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Offloads a backend can deliver towards the guest (set_offload). Frames
 * from the guest may always carry them: the backend (the host kernel for a
 * tap) checks what it is given. */
#define NET_OFFLOAD_CSUM 1u /* partial checksums (VIRTIO_NET_HDR_F_NEEDS_CSUM) */
#define NET_OFFLOAD_TSO4 2u
#define NET_OFFLOAD_TSO6 4u

struct net_backend {
	const struct net_backend_ops *ops;
	int fd;
	unsigned offloads; /* NET_OFFLOAD_* the backend can deliver */
	bool socket;	   /* fd=: a datagram socket rather than a tap */
};

struct net_backend_ops {
	const char *key; /* the spec key naming it: "tap", "fd" */
	/* Open from the key's value. 0, or -errno with a one-line reason. */
	int (*open)(struct net_backend *nb, const char *arg, char *err, size_t len);
	/* One frame, header first: its length, -EAGAIN when none waits, or
	 * another -errno (the frame is lost). */
	ssize_t (*read)(struct net_backend *nb, const struct iovec *iov, int iovcnt);
	/* One frame, header first: bytes written or -errno. Never blocks. */
	ssize_t (*write)(struct net_backend *nb, const struct iovec *iov, int iovcnt);
	/* Readable (EPOLLIN) when a frame waits. */
	int (*fd)(struct net_backend *nb);
	/* Deliver only these offloads (a subset of nb->offloads). 0 or -errno. */
	int (*set_offload)(struct net_backend *nb, unsigned offloads);
	void (*close)(struct net_backend *nb);
};

extern const struct net_backend_ops *const net_backends[]; /* NULL-terminated */

/* What the API and tarnd check before a device is made: six hex bytes
 * "52:54:00:12:34:56"; a name a tap device can have (1 to 15 bytes, none
 * of ",=/ ", which options and paths use). */
bool net_mac_ok(const char *mac);
bool net_tap_name_ok(const char *name);
/* The six bytes of such a MAC: 0, or -1 when it is not one. */
int net_parse_mac(const char *s, uint8_t mac[6]);
/* Bytes [off, off + len) of a virtio-net device's configuration (its MAC,
 * link up, one queue pair). */
void virtio_net_config(const uint8_t mac[6], unsigned off, void *data, unsigned len);
#define VIRTIO_NET_CONFIG_SIZE 10

/* What a virtio-net device (net.c) moved and dropped; a guest cannot make
 * tarn drop a frame without one of these counting it. */
struct virtio_net_stats {
	uint64_t tx_frames, tx_bytes; /* guest -> backend, bytes without the header */
	uint64_t tx_dropped;	      /* bad size or header, or the backend refused it */
	uint64_t rx_frames, rx_bytes; /* backend -> guest */
	uint64_t rx_dropped;	      /* larger than the guest's buffers, bad header, read error */
	uint64_t rx_bad_buffers;      /* receive buffers too small for a header, given back empty */
};

struct virtio_dev;
/* Counters of a device made by virtio_net_create (takes vd->lock). */
void virtio_net_get_stats(struct virtio_dev *vd, struct virtio_net_stats *st);
/* After a migration, the guest running at its new place: send a RARP
 * request from the NIC's MAC through its backend now and 4 times more,
 * 50 to 350 ms apart (on the VM's event loop), so that bridges and
 * switches learn where the MAC went, as QEMU's self-announce does.
 * -EINVAL for another device. */
int virtio_net_announce(struct virtio_dev *vd);

#endif
