/* virtio-net's wire details shared by tarn's device (net.c), its
 * vhost-user front end (net_vhost.c) and the switch's back end: feature
 * bits (virtio spec 5.1.3) and the header before every frame (5.1.6). */
#ifndef TARN_NET_HDR_H
#define TARN_NET_HDR_H

#include <stdint.h>

#define VIRTIO_NET_F_CSUM 0	  /* the driver sends partial checksums */
#define VIRTIO_NET_F_GUEST_CSUM 1 /* the driver takes partial checksums */
#define VIRTIO_NET_F_MAC 5
#define VIRTIO_NET_F_GUEST_TSO4 7 /* the driver takes TCP/IPv4 segmentation offload frames */
#define VIRTIO_NET_F_GUEST_TSO6 8
#define VIRTIO_NET_F_HOST_TSO4 11 /* the driver sends them */
#define VIRTIO_NET_F_HOST_TSO6 12
#define VIRTIO_NET_F_MRG_RXBUF 15 /* a received frame may span several buffers */
#define VIRTIO_NET_F_STATUS 16

/* struct virtio_net_hdr, the 1.x layout with num_buffers. */
#define VIRTIO_NET_HDR_F_NEEDS_CSUM 1
#define VIRTIO_NET_HDR_F_DATA_VALID 2
#define VIRTIO_NET_HDR_GSO_NONE 0
#define VIRTIO_NET_HDR_GSO_TCPV4 1
#define VIRTIO_NET_HDR_GSO_TCPV6 4
#define VIRTIO_NET_HDR_GSO_ECN 0x80
struct virtio_net_hdr {
	uint8_t flags;
	uint8_t gso_type;
	uint16_t hdr_len;
	uint16_t gso_size;
	uint16_t csum_start;  /* NEEDS_CSUM: sum from here to the end, */
	uint16_t csum_offset; /* stored this far past csum_start */
	uint16_t num_buffers;
};
_Static_assert(sizeof(struct virtio_net_hdr) == 12, "virtio_net_hdr is 12 bytes");

#endif
