/* Checksum and segmentation offloads (offload.h). sw_offload_check reads
 * the guest's header and the frame's headers once, checking every length
 * against what is there; sw_offload_csum and sw_segment then work from
 * the offsets it found and re-read no length from the frame. */
#include <stdbool.h>
#include <string.h>

#include "switch/frame.h"
#include "switch/offload.h"

#define PROTO_TCP 6
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_CWR 0x80

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)sw_be16(p) << 16 | sw_be16(p + 2);
}

static void put_be16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

static void put_be32(uint8_t *p, uint32_t v)
{
	put_be16(p, (uint16_t)(v >> 16));
	put_be16(p + 2, (uint16_t)v);
}

/* RFC 1071: sum (a folded sum, or a small number to add) plus the
 * big-endian 16-bit words of p[0..n), folded to 16 bits, not complemented.
 * An odd last byte is padded with a zero, so only the last piece of a
 * chained sum may have an odd length; p itself may be at any address. */
static uint16_t csum(uint32_t sum, const uint8_t *p, size_t n)
{
	uint64_t s = sum; /* 64 KiB of 0xffff words cannot carry out of it */

	for (; n >= 2; p += 2, n -= 2)
		s += sw_be16(p);
	if (n)
		s += (uint32_t)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)s;
}

/* Where the IP header starts past the Ethernet header and its VLAN tags,
 * and its EtherType in *type; 0 when the frame ends first or has more
 * tags than the switch takes. */
static size_t l3_offset(const uint8_t *f, size_t len, uint16_t *type)
{
	size_t off = 12;

	if (len < SW_ETH_HLEN)
		return 0;
	*type = sw_be16(f + off);
	for (int tags = 0; *type == SW_ETHERTYPE_VLAN || *type == SW_ETHERTYPE_QINQ; tags++) {
		if (tags == SW_MAX_VLAN_TAGS || len < off + SW_VLAN_HLEN + 2)
			return 0;
		off += SW_VLAN_HLEN;
		*type = sw_be16(f + off);
	}
	return off + 2;
}

int sw_offload_check(const uint8_t *f, size_t len, const struct virtio_net_hdr *h, struct sw_offload *o)
{
	/* guest-controlled: read once, then checked */
	uint8_t flags = h->flags, type = h->gso_type;
	size_t start = h->csum_start, off = h->csum_offset, gso = h->gso_size;
	size_t l3, l4, n, thl;
	uint16_t ethertype = 0;
	const uint8_t *ip;

	memset(o, 0, sizeof(*o));
	o->segments = 1;
	if (flags & ~(VIRTIO_NET_HDR_F_NEEDS_CSUM | VIRTIO_NET_HDR_F_DATA_VALID) || len > SW_GSO_MAX_FRAME)
		return -1;
	if (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM && (start < SW_ETH_HLEN || start + off + 2 > len))
		return -1;
	l3 = l3_offset(f, len, &ethertype);
	o->l3_off = l3 ? l3 : SW_ETH_HLEN;
	if (type == VIRTIO_NET_HDR_GSO_NONE)
		return 0;

	/* Segmentation: only TCP whose every header is where it says, since
	 * each segment's headers are rewritten from these offsets. */
	if (!(flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) || !gso || !l3)
		return -1;
	ip = f + l3;
	n = len - l3;
	if (type == VIRTIO_NET_HDR_GSO_TCPV4) {
		size_t ihl;

		if (ethertype != SW_ETHERTYPE_IPV4 || n < 20 || ip[0] >> 4 != 4)
			return -1;
		/* Guests do not pad GSO frames: the total length is all there
		 * is, and a fragment (MF, or an offset) cannot be cut again. */
		ihl = (size_t)(ip[0] & 15) * 4;
		if (ihl < 20 || ihl > n || sw_be16(ip + 2) != n || sw_be16(ip + 6) & 0x3fff || ip[9] != PROTO_TCP)
			return -1;
		l4 = l3 + ihl;
	} else if (type == VIRTIO_NET_HDR_GSO_TCPV6) {
		/* next header TCP: extension headers are not walked */
		if (ethertype != SW_ETHERTYPE_IPV6 || n < 40 || ip[0] >> 4 != 6 || (size_t)sw_be16(ip + 4) + 40 != n ||
		    ip[6] != PROTO_TCP)
			return -1;
		l4 = l3 + 40;
	} else {
		return -1; /* UDP fragmentation, the ECN bit, or unknown */
	}
	if (len - l4 < 20 || (thl = (size_t)(f[l4 + 12] >> 4) * 4) < 20 || thl >= len - l4 || start != l4 || off != 16)
		return -1; /* the last test also refuses a GSO frame with no payload */
	o->l4_off = l4;
	o->hdr_end = l4 + thl;
	o->segments = (unsigned)((len - o->hdr_end + gso - 1) / gso);
	return 0;
}

void sw_offload_csum(uint8_t *f, size_t len, const struct virtio_net_hdr *h)
{
	size_t start = h->csum_start, at = start + h->csum_offset;
	uint16_t sum;

	if (at + 2 > len)
		return; /* not what sw_offload_check accepted: h changed since */
	/* The field holds the pseudo-header's sum (CHECKSUM_PARTIAL), so it
	 * is summed with the rest. A result of 0 goes out as 0xffff, the same
	 * number in one's complement: as Linux's skb_checksum_help does for
	 * any protocol, UDP's "no checksum" 0 is never sent by mistake. */
	sum = (uint16_t)~csum(0, f + start, len - start);
	put_be16(f + at, sum ? sum : 0xffff);
}

int sw_segment(const uint8_t *f, size_t len, const struct virtio_net_hdr *h, const struct sw_offload *o,
	       uint8_t *buf, size_t buf_len, sw_segment_fn *fn, void *opaque)
{
	size_t gso = h->gso_size, l3 = o->l3_off, l4 = o->l4_off, hl = o->hdr_end, thl = hl - l4, at, n;
	bool v4 = h->gso_type == VIRTIO_NET_HDR_GSO_TCPV4;
	uint8_t *ip = buf + l3, *tcp = buf + l4, tcp_flags = f[l4 + 13];
	uint32_t seq = be32(f + l4 + 4), pseudo;
	uint16_t id = sw_be16(f + l3 + 4);
	int i;

	if (!gso || buf_len < hl + gso)
		return -1;
	/* The pseudo-header's addresses and protocol, the same in every
	 * segment; each adds its own TCP length. */
	pseudo = (uint32_t)csum(PROTO_TCP, f + l3 + (v4 ? 12 : 8), v4 ? 8 : 32);
	memcpy(buf, f, hl);
	for (i = 0, at = hl; at < len; i++, at += n) {
		n = len - at < gso ? len - at : gso;
		memcpy(buf + hl, f + at, n);
		if (v4) {
			put_be16(ip + 2, (uint16_t)(hl - l3 + n));
			put_be16(ip + 4, (uint16_t)(id + i));
			put_be16(ip + 10, 0);
			put_be16(ip + 10, (uint16_t)~csum(0, ip, l4 - l3));
		} else {
			put_be16(ip + 4, (uint16_t)(thl + n));
		}
		put_be32(tcp + 4, seq + (uint32_t)(at - hl));
		/* What marks the start of the data (CWR) and its end (FIN,
		 * PSH) goes with the first segment and the last. */
		tcp[13] = tcp_flags;
		if (i)
			tcp[13] &= (uint8_t)~TCP_CWR;
		if (at + n < len)
			tcp[13] &= (uint8_t)~(TCP_FIN | TCP_PSH);
		put_be16(tcp + 16, 0);
		put_be16(tcp + 16, (uint16_t)~csum(pseudo + (uint32_t)(thl + n), tcp, thl + n));
		fn(opaque, buf, hl + n);
	}
	return i;
}
