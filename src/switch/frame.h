/* Ethernet frames as the switch sees them: every frame is hostile until
 * parsed. sw_parse reads the headers port security and forwarding need
 * (the two MACs, up to two VLAN tags, and for ARP, IPv4 and IPv6 the
 * sender's addresses, ICMPv6 neighbour discovery included) and says why a
 * frame is refused: too short, longer than the MTU allows, headers cut
 * short or with lengths that do not add up. Nothing is copied; the
 * pointers point into the frame. */
#ifndef TARN_SWITCH_FRAME_H
#define TARN_SWITCH_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SW_ETH_ALEN 6
#define SW_ETH_HLEN 14
#define SW_VLAN_HLEN 4
#define SW_MAX_VLAN_TAGS 2
#define SW_ETHERTYPE_IPV4 0x0800
#define SW_ETHERTYPE_ARP 0x0806
#define SW_ETHERTYPE_IPV6 0x86dd
#define SW_ETHERTYPE_VLAN 0x8100
#define SW_ETHERTYPE_QINQ 0x88a8

/* Why a frame is dropped (from 1: functions return them negated, 0 is
 * success). */
enum sw_drop {
	SW_DROP_SHORT = 1,    /* under an Ethernet header */
	SW_DROP_TOO_LONG,     /* past the MTU (and its tags) */
	SW_DROP_BAD_HEADER,   /* an ARP, IP or ICMPv6 header cut short or inconsistent */
	SW_DROP_SRC_MULTICAST, /* a group address as the source */
	SW_DROP_TOO_MANY_TAGS, /* more VLAN tags than SW_MAX_VLAN_TAGS */
	SW_DROP_SPOOF_MAC,    /* a source MAC (or ARP/ND link-layer address) not the port's */
	SW_DROP_SPOOF_IP,     /* a source IP (or ARP/ND address) not the port's */
	SW_DROP_MAC_LIMIT,    /* a new source beyond the port's cap of learned MACs */
	SW_DROP_QOS,	      /* over the port's rate */
	SW_DROP_NO_PORT,      /* the port went away */
	SW_DROP_NO_ROOM,      /* going out: the port had no room (a VM without receive buffers) */
	SW_DROP_BAD_OFFLOAD,  /* an offload header the VM did not negotiate or that does not fit its frame */
	SW_DROP_REASONS	      /* one past the last */
};

extern const char *const sw_drop_names[SW_DROP_REASONS];

enum sw_l3 { SW_L3_OTHER, SW_L3_ARP, SW_L3_IPV4, SW_L3_IPV6 };

struct sw_frame {
	const uint8_t *dst, *src; /* MACs */
	unsigned tags;		  /* VLAN tags before the EtherType */
	uint16_t ethertype;	  /* the one after the tags */
	size_t l3_off;		  /* where the payload starts */
	enum sw_l3 l3;
	/* ARP (Ethernet/IPv4 only; other hardware or protocol types are
	 * SW_L3_OTHER): the sender's and target's addresses. */
	uint16_t arp_op;
	const uint8_t *arp_sha;
	uint32_t arp_spa, arp_tpa; /* network byte order */
	/* IPv4 */
	uint32_t ip4_src, ip4_dst; /* network byte order */
	uint8_t ip4_proto;
	uint16_t udp_dport;	   /* UDP over IPv4 or IPv6 (0: not UDP) */
	/* IPv6; its ICMPv6 type (0: not ICMPv6, or not in this fragment),
	 * neighbour discovery (types 133-137) when nd_type */
	const uint8_t *ip6_src, *ip6_dst;
	uint8_t icmp6_type;
	uint8_t nd_type;	  /* 0: none */
	const uint8_t *nd_target; /* NS, NA */
	const uint8_t *nd_lladdr; /* source (RS, NS) or target (NA) link-layer option; NULL: none */
};

/* Parse frame buf[0..len) that may be mtu bytes of payload (plus the
 * Ethernet header and its tags) into f. 0, or -(enum sw_drop) why not. */
int sw_parse(const uint8_t *buf, size_t len, size_t mtu, struct sw_frame *f);

/* A big-endian 16-bit field of a frame. */
static inline uint16_t sw_be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static inline bool sw_mac_is_group(const uint8_t *mac)
{
	return mac[0] & 1;
}

#endif
