/* tarn's virtual switch, its forwarding core: ports on networks, a
 * learning table with ageing, port security. No I/O here: the owner (the
 * loop that serves the ports: VMs' virtio-net queues, taps, VXLAN) hands
 * each frame to sw_input with the time, which says where it goes, and
 * carries it there. One thread at a time (the owner's lock, if any).
 *
 * Networks: a port belongs to one (a tenant's network; a VXLAN uplink
 * carries one VNI); frames never leave it, unicast, broadcast, multicast
 * or unknown unicast alike, and the learning table is per network (the
 * same MAC on two networks is two entries).
 *
 * Learning: a frame's source MAC is learnt on the port it came in by,
 * for ageing_ns after it was last seen (300 s by default, as the Linux
 * bridge's and Open vSwitch's); one seen on another port moves there (a VM
 * that moved to another host announced itself). A port learns at most
 * max_macs sources; a frame from one more is dropped. A unicast frame to a
 * MAC the table knows goes out by that port alone; anything else floods
 * the network (every port on it but the one it came in by).
 *
 * Port security (a VM's port, `secure`): the frame's source MAC must be
 * the port's own, and so must the sender link-layer address in ARP and
 * neighbour discovery. With IPv4 addresses given, IPv4 sources and ARP
 * senders must be one of them (0.0.0.0 only for DHCP and ARP probes); with
 * IPv6 addresses given, IPv6 sources must be one of them or the port's
 * EUI-64 link-local address (:: only for duplicate address detection and
 * MLD), neighbour advertisements may only name those, and router
 * advertisements and redirects are refused. */
#ifndef TARN_SWITCH_SWITCH_H
#define TARN_SWITCH_SWITCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "switch/frame.h"

#define SW_MAX_PORTS 1024
#define SW_MAX_ADDRS 4
#define SW_DEFAULT_MTU 1500
#define SW_DEFAULT_AGEING_NS (300ULL * 1000000000)
#define SW_DEFAULT_MAX_MACS 64

struct sw_port_config {
	uint32_t net;	     /* the network: frames stay within it */
	bool secure;	     /* port security (a VM's port) */
	uint8_t mac[SW_ETH_ALEN]; /* with secure: the port's MAC */
	unsigned nr_ip4, nr_ip6;
	uint32_t ip4[SW_MAX_ADDRS];	  /* network byte order */
	uint8_t ip6[SW_MAX_ADDRS][16];
	unsigned max_macs;   /* sources it may learn; 0: SW_DEFAULT_MAX_MACS */
	unsigned mtu;	     /* payload bytes; 0: SW_DEFAULT_MTU */
};

struct sw_port_stats {
	uint64_t rx_packets, rx_bytes; /* into the switch from the port */
	uint64_t tx_packets, tx_bytes; /* out of the switch to the port (sw_sent) */
	uint64_t drops[SW_DROP_REASONS];
	uint64_t unlearned; /* sources not learnt: the table was full */
};

struct sw;

/* A switch whose table holds table_size MACs (rounded up to a power of
 * two; 0: 4096) for ageing_ns (0: SW_DEFAULT_AGEING_NS). NULL: no memory. */
struct sw *sw_create(unsigned table_size, uint64_t ageing_ns);
void sw_destroy(struct sw *sw);

/* A new port: its number (0 ..), or -EINVAL (a bad config) or -ENOSPC. */
int sw_port_add(struct sw *sw, const struct sw_port_config *c);
/* The port goes, with what it learnt; its number may be reused. */
void sw_port_del(struct sw *sw, int port);
/* Its stats, NULL when there is no such port. */
const struct sw_port_stats *sw_port_stats(const struct sw *sw, int port);

/* Flags of sw_input. */
#define SW_IN_GSO 1u /* a segmentation-offload frame: up to 64 KiB, past the MTU */

/* A frame that came in by port at now_ns: the ports it goes out by, in
 * out[0 ..) (at most max_out; it goes to fewer when there are more), and
 * how many (0: nowhere), or -(enum sw_drop) why it is dropped (counted on
 * the port). The owner sends it, and says so with sw_sent. */
int sw_input(struct sw *sw, int port, const uint8_t *frame, size_t len, unsigned flags, uint64_t now_ns, int *out,
	     unsigned max_out);
/* The frame went out by port (or was dropped there, why >= 0). */
void sw_sent(struct sw *sw, int port, size_t len);
void sw_dropped(struct sw *sw, int port, enum sw_drop why);

/* Forget what was last seen ageing_ns or more before now_ns. */
void sw_age(struct sw *sw, uint64_t now_ns);
/* The port that MAC was learnt on in net, or -1. */
int sw_lookup(const struct sw *sw, uint32_t net, const uint8_t *mac, uint64_t now_ns);

#endif
