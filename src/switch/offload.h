/* Checksum and segmentation offloads in the switch.
 *
 * A guest that negotiated them hands its NIC frames whose TCP or UDP
 * checksum is left for the device (VIRTIO_NET_HDR_F_NEEDS_CSUM: the
 * guest has put the pseudo-header's sum in the checksum field; the sum
 * from csum_start to the end, folded and complemented, goes at
 * csum_start + csum_offset), and TCP segments of up to 64 KiB to be cut
 * into gso_size-byte ones (VIRTIO_NET_HDR_GSO_TCPV4/6). Between two VMs
 * that both took them the switch passes such frames as they are; to a
 * port that cannot take them (a VM that did not negotiate them, a VXLAN
 * tunnel) it finishes the work here first: the checksum filled in, or the
 * segments made, each a whole frame with its own correct IP and TCP
 * headers and checksums, as a NIC's TSO would send them.
 *
 * The header and the frame come from a guest: every field is hostile.
 * sw_offload_check refuses anything these functions could not do exactly
 * and safely; the others are only called on what it accepted. */
#ifndef TARN_SWITCH_OFFLOAD_H
#define TARN_SWITCH_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>

#include "virtio/net_hdr.h"

/* The largest frame a segmentation-offload header may come with: 64 KiB
 * of IP packet (IPv4's total length, IPv6's payload length plus its
 * header) after an Ethernet header and two VLAN tags. */
#define SW_GSO_MAX_FRAME (14 + 2 * 4 + 40 + 65535)

/* What sw_offload_check found: where the headers are. */
struct sw_offload {
	size_t l3_off; /* the IP header (after the Ethernet header and its VLAN tags) */
	size_t l4_off; /* the TCP header (GSO only) */
	size_t hdr_end; /* the first payload byte (GSO only): l4_off + TCP header length */
	unsigned segments; /* frames this one makes: 1 without GSO */
};

/* Is h, with frame f[0..len), one the switch can honour? 0 and *o filled,
 * or -1. Accepted: flags 0 or NEEDS_CSUM (DATA_VALID is ignored; any other
 * bit refuses); with NEEDS_CSUM, csum_start at or past the Ethernet
 * header and csum_start + csum_offset + 2 <= len; gso_type NONE, or
 * TCPV4 / TCPV6 (no ECN bit) with NEEDS_CSUM set, gso_size from 1 to
 * 65535, and the frame really TCP over that IP version: an Ethernet
 * header, up to two VLAN tags (0x8100, 0x88a8), an IPv4 header (version
 * 4, IHL >= 5, not a fragment, protocol 6, total length = what the frame
 * holds past it) or an IPv6 one (version 6, next header 6: no extension
 * headers, payload length = what the frame holds past it), a TCP header
 * (data offset >= 5) inside the frame, csum_start at the TCP header and
 * csum_offset 16, and at least one payload byte past the TCP header;
 * len at most SW_GSO_MAX_FRAME (with or without GSO). A GSO frame whose
 * payload fits one segment is accepted (segments 1). hdr_len is a hint
 * from the guest and is not trusted (the headers' own lengths are used).
 * Without GSO only the checksum's bounds are checked: l3_off is where the
 * IP header would be past the tags (SW_ETH_HLEN when the frame ends
 * first, or has more than two tags), l4_off and hdr_end are 0.
 * The other functions take h and f as checked here: the caller's copies,
 * not memory the guest can still write. */
int sw_offload_check(const uint8_t *f, size_t len, const struct virtio_net_hdr *h, struct sw_offload *o);

/* Fill in the partial checksum of an accepted NEEDS_CSUM frame, in place.
 * A checksum that comes out 0 is stored as 0xffff (the same in one's
 * complement; UDP reads 0 as "none"). (For a GSO frame, sw_segment does
 * it per segment.) */
void sw_offload_csum(uint8_t *f, size_t len, const struct virtio_net_hdr *h);

/* Called with each segment made: a whole frame. */
typedef void sw_segment_fn(void *opaque, const uint8_t *frame, size_t len);

/* Cut an accepted GSO frame into o->segments frames of at most gso_size
 * payload bytes each, built one after another in buf (buf_len at least
 * o->hdr_end + gso_size bytes: the caller's scratch, SW_GSO_MAX_FRAME
 * always does), and hand each to fn. Each segment: the headers copied,
 * IPv4 total length and header checksum (and the ID, +1 a segment) or
 * IPv6 payload length set, TCP sequence number advanced by the payload
 * before it, FIN and PSH only on the last, CWR only on the first, and
 * the TCP checksum computed over the pseudo-header and the segment (the
 * guest's partial sum not used). Returns the number of segments made, or
 * -1 when buf_len is too small (nothing made). */
int sw_segment(const uint8_t *f, size_t len, const struct virtio_net_hdr *h, const struct sw_offload *o,
	       uint8_t *buf, size_t buf_len, sw_segment_fn *fn, void *opaque);

#endif
