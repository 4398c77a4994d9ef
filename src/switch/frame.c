/* Frame parsing (frame.h). Every length is checked against what is there
 * before a byte is read. */
#include <string.h>

#include "switch/frame.h"

const char *const sw_drop_names[SW_DROP_REASONS] = {
	[SW_DROP_SHORT] = "short",
	[SW_DROP_TOO_LONG] = "too_long",
	[SW_DROP_BAD_HEADER] = "bad_header",
	[SW_DROP_SRC_MULTICAST] = "src_multicast",
	[SW_DROP_TOO_MANY_TAGS] = "too_many_tags",
	[SW_DROP_SPOOF_MAC] = "spoofed_mac",
	[SW_DROP_SPOOF_IP] = "spoofed_ip",
	[SW_DROP_MAC_LIMIT] = "mac_limit",
	[SW_DROP_QOS] = "qos",
	[SW_DROP_NO_PORT] = "no_port",
	[SW_DROP_NO_ROOM] = "no_room",
	[SW_DROP_BAD_OFFLOAD] = "bad_offload",
};


static uint32_t ne32(const uint8_t *p) /* as it is in the frame */
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

static int parse_arp(const uint8_t *p, size_t n, struct sw_frame *f)
{
	/* Ethernet and IPv4, the only ARP a VM's network carries. */
	if (n < 28 || sw_be16(p) != 1 || sw_be16(p + 2) != SW_ETHERTYPE_IPV4 || p[4] != SW_ETH_ALEN || p[5] != 4)
		return -SW_DROP_BAD_HEADER;
	f->l3 = SW_L3_ARP;
	f->arp_op = sw_be16(p + 6);
	f->arp_sha = p + 8;
	f->arp_spa = ne32(p + 14);
	f->arp_tpa = ne32(p + 24);
	return 0;
}

static int parse_ipv4(const uint8_t *p, size_t n, struct sw_frame *f)
{
	size_t ihl, total;

	if (n < 20 || p[0] >> 4 != 4)
		return -SW_DROP_BAD_HEADER;
	ihl = (size_t)(p[0] & 15) * 4;
	total = sw_be16(p + 2);
	if (ihl < 20 || total < ihl || total > n)
		return -SW_DROP_BAD_HEADER;
	f->l3 = SW_L3_IPV4;
	f->ip4_proto = p[9];
	f->ip4_src = ne32(p + 12);
	f->ip4_dst = ne32(p + 16);
	/* UDP of a first fragment (DHCP's ports for port security). */
	if (f->ip4_proto == 17 && !(sw_be16(p + 6) & 0x1fff) && total - ihl >= 8)
		f->udp_dport = sw_be16(p + ihl + 2);
	return 0;
}

/* ICMPv6 neighbour discovery at p[0..n): its type, target and link-layer
 * address option (RFC 4861 4.1-4.4, 4.6.1). */
static int parse_nd(const uint8_t *p, size_t n, struct sw_frame *f)
{
	size_t opts;

	if (n < 4)
		return -SW_DROP_BAD_HEADER;
	f->icmp6_type = p[0];
	if (p[0] < 133 || p[0] > 137)
		return 0; /* other ICMPv6 */
	f->nd_type = p[0];
	switch (p[0]) {
	case 133: opts = 8; break;  /* router solicitation */
	case 134: opts = 16; break; /* router advertisement */
	case 137: opts = 40; break; /* redirect */
	default: opts = 24;	    /* neighbour solicitation, advertisement: the target */
		if (n < 24)
			return -SW_DROP_BAD_HEADER;
		f->nd_target = p + 8;
	}
	if (n < opts)
		return -SW_DROP_BAD_HEADER;
	while (opts < n) {
		size_t olen;

		if (n - opts < 2 || !(olen = (size_t)p[opts + 1] * 8) || olen > n - opts)
			return -SW_DROP_BAD_HEADER;
		/* 1: source link-layer address (RS, NS, RA), 2: target (NA). */
		if ((p[opts] == 1 || p[opts] == 2) && olen >= 8)
			f->nd_lladdr = p + opts + 2;
		opts += olen;
	}
	return 0;
}

static int parse_ipv6(const uint8_t *p, size_t n, struct sw_frame *f)
{
	size_t off = 40, end;
	uint8_t next;

	if (n < 40 || p[0] >> 4 != 6 || (size_t)sw_be16(p + 4) > n - 40)
		return -SW_DROP_BAD_HEADER;
	end = 40 + sw_be16(p + 4);
	f->l3 = SW_L3_IPV6;
	f->ip6_src = p + 8;
	f->ip6_dst = p + 24;
	next = p[6];
	/* Past the extension headers that may stand before ICMPv6 or UDP:
	 * neighbour discovery hidden behind one is still checked. */
	for (int i = 0; i < 8; i++) {
		switch (next) {
		case 0:	 /* hop-by-hop options */
		case 43: /* routing */
		case 60: /* destination options */
			if (end - off < 8 || (size_t)(p[off + 1] + 1) * 8 > end - off)
				return -SW_DROP_BAD_HEADER;
			next = p[off];
			off += (size_t)(p[off + 1] + 1) * 8;
			continue;
		case 44: /* fragment: only the first carries the upper header */
			if (end - off < 8)
				return -SW_DROP_BAD_HEADER;
			if (sw_be16(p + off + 2) & 0xfff8)
				return 0;
			next = p[off];
			off += 8;
			continue;
		case 58: /* ICMPv6 */
			return parse_nd(p + off, end - off, f);
		case 17: /* UDP */
			if (end - off >= 8)
				f->udp_dport = sw_be16(p + off + 2);
			return 0;
		default:
			return 0;
		}
	}
	return -SW_DROP_BAD_HEADER; /* a chain that long is nobody's traffic */
}

int sw_parse(const uint8_t *buf, size_t len, size_t mtu, struct sw_frame *f)
{
	size_t off = 12;
	uint16_t type;

	memset(f, 0, sizeof(*f));
	if (len < SW_ETH_HLEN)
		return -SW_DROP_SHORT;
	f->dst = buf;
	f->src = buf + SW_ETH_ALEN;
	if (sw_mac_is_group(f->src))
		return -SW_DROP_SRC_MULTICAST;
	type = sw_be16(buf + off);
	while (type == SW_ETHERTYPE_VLAN || type == SW_ETHERTYPE_QINQ) {
		if (++f->tags > SW_MAX_VLAN_TAGS)
			return -SW_DROP_TOO_MANY_TAGS;
		off += SW_VLAN_HLEN;
		if (len < off + 2)
			return -SW_DROP_SHORT;
		type = sw_be16(buf + off);
	}
	off += 2;
	if (len - off > mtu)
		return -SW_DROP_TOO_LONG;
	f->ethertype = type;
	f->l3_off = off;
	switch (type) {
	case SW_ETHERTYPE_ARP: return parse_arp(buf + off, len - off, f);
	case SW_ETHERTYPE_IPV4: return parse_ipv4(buf + off, len - off, f);
	case SW_ETHERTYPE_IPV6: return parse_ipv6(buf + off, len - off, f);
	}
	return 0;
}
