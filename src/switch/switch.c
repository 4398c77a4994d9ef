/* The switch's forwarding core (switch.h). The learning table is open
 * addressing with linear probing, keyed by network and MAC; a removal
 * shifts the entries after it back, so a probe ends at the first empty
 * slot. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "switch/switch.h"

struct fdb_entry {
	bool used;
	uint8_t mac[SW_ETH_ALEN];
	uint32_t net;
	int port;
	uint64_t seen_ns;
};

struct sw_port {
	bool used;
	struct sw_port_config c;
	unsigned learnt;
	struct sw_port_stats st;
};

struct sw {
	uint64_t ageing_ns;
	unsigned mask; /* table size - 1 */
	struct fdb_entry *fdb;
	struct sw_port ports[SW_MAX_PORTS];
	int nr_ports; /* one past the highest in use */
};

struct sw *sw_create(unsigned table_size, uint64_t ageing_ns)
{
	struct sw *sw = calloc(1, sizeof(*sw));
	unsigned size = 16;

	if (!table_size)
		table_size = 4096;
	while (size < table_size && size < (1u << 24))
		size <<= 1;
	if (!sw || !(sw->fdb = calloc(size, sizeof(*sw->fdb)))) {
		free(sw);
		return NULL;
	}
	sw->mask = size - 1;
	sw->ageing_ns = ageing_ns ? ageing_ns : SW_DEFAULT_AGEING_NS;
	return sw;
}

void sw_destroy(struct sw *sw)
{
	if (sw)
		free(sw->fdb);
	free(sw);
}

/* ---- the learning table ---- */

static unsigned fdb_hash(const struct sw *sw, uint32_t net, const uint8_t *mac)
{
	uint64_t h = 0xcbf29ce484222325ULL; /* FNV-1a */

	for (int i = 0; i < SW_ETH_ALEN; i++)
		h = (h ^ mac[i]) * 0x100000001b3ULL;
	for (int i = 0; i < 4; i++)
		h = (h ^ ((net >> (8 * i)) & 0xff)) * 0x100000001b3ULL;
	return (unsigned)(h ^ h >> 32) & sw->mask;
}

/* The slot of (net, mac), or of the empty slot where it would go (-1:
 * neither, the table is full). */
static long fdb_slot(const struct sw *sw, uint32_t net, const uint8_t *mac)
{
	unsigned i = fdb_hash(sw, net, mac);

	for (unsigned n = 0; n <= sw->mask; n++, i = (i + 1) & sw->mask) {
		const struct fdb_entry *e = &sw->fdb[i];

		if (!e->used || (e->net == net && !memcmp(e->mac, mac, SW_ETH_ALEN)))
			return i;
	}
	return -1;
}

static void fdb_remove(struct sw *sw, unsigned i)
{
	unsigned j = i;

	sw->ports[sw->fdb[i].port].learnt--;
	sw->fdb[i].used = false;
	/* Shift back what probed past i and may now sit nearer home. */
	for (;;) {
		unsigned home;

		j = (j + 1) & sw->mask;
		if (!sw->fdb[j].used)
			return;
		home = fdb_hash(sw, sw->fdb[j].net, sw->fdb[j].mac);
		/* j's entry stays unless i lies cyclically in [home, j). */
		if (((j - home) & sw->mask) >= ((j - i) & sw->mask)) {
			sw->fdb[i] = sw->fdb[j];
			sw->fdb[j].used = false;
			i = j;
		}
	}
}

int sw_lookup(const struct sw *sw, uint32_t net, const uint8_t *mac, uint64_t now_ns)
{
	long i = fdb_slot(sw, net, mac);

	if (i < 0 || !sw->fdb[i].used || now_ns - sw->fdb[i].seen_ns >= sw->ageing_ns)
		return -1;
	return sw->fdb[i].port;
}

void sw_age(struct sw *sw, uint64_t now_ns)
{
	for (unsigned i = 0; i <= sw->mask; i++) {
		/* A removal may shift a later entry into i: look at i again. */
		while (sw->fdb[i].used && now_ns - sw->fdb[i].seen_ns >= sw->ageing_ns)
			fdb_remove(sw, i);
	}
}

/* Learn frame source mac on port p: 0, or -SW_DROP_MAC_LIMIT (or
 * -SW_DROP_SPOOF_MAC: a secure port's own MAC). */
static int learn(struct sw *sw, int p, const uint8_t *mac, uint64_t now_ns)
{
	struct sw_port *port = &sw->ports[p];
	long i = fdb_slot(sw, port->c.net, mac);
	struct fdb_entry *e;

	if (i < 0) {
		sw_age(sw, now_ns);
		if ((i = fdb_slot(sw, port->c.net, mac)) < 0) {
			port->st.unlearned++;
			return 0; /* forwarded all the same, flooded back */
		}
	}
	e = &sw->fdb[i];
	if (e->used && e->port == p) {
		e->seen_ns = now_ns;
		return 0;
	}
	/* A secure port's own MAC stays with it while it is there: nobody
	 * else (an uplink, say) takes its traffic by sending from it. */
	if (e->used && sw->ports[e->port].c.secure && !memcmp(sw->ports[e->port].c.mac, mac, SW_ETH_ALEN))
		return -SW_DROP_SPOOF_MAC;
	if (port->learnt >= port->c.max_macs)
		return -SW_DROP_MAC_LIMIT;
	if (e->used) /* it moved here */
		sw->ports[e->port].learnt--;
	*e = (struct fdb_entry){ .used = true, .net = port->c.net, .port = p, .seen_ns = now_ns };
	memcpy(e->mac, mac, SW_ETH_ALEN);
	port->learnt++;
	return 0;
}

/* ---- ports ---- */

int sw_port_add(struct sw *sw, const struct sw_port_config *c)
{
	int p = 0;

	if (c->nr_ip4 > SW_MAX_ADDRS || c->nr_ip6 > SW_MAX_ADDRS || (c->secure && sw_mac_is_group(c->mac)))
		return -EINVAL;
	while (p < SW_MAX_PORTS && sw->ports[p].used)
		p++;
	if (p == SW_MAX_PORTS)
		return -ENOSPC;
	sw->ports[p] = (struct sw_port){ .used = true, .c = *c };
	if (!sw->ports[p].c.max_macs)
		sw->ports[p].c.max_macs = SW_DEFAULT_MAX_MACS;
	if (!sw->ports[p].c.mtu)
		sw->ports[p].c.mtu = SW_DEFAULT_MTU;
	if (p >= sw->nr_ports)
		sw->nr_ports = p + 1;
	return p;
}

static bool port_ok(const struct sw *sw, int p)
{
	return p >= 0 && p < sw->nr_ports && sw->ports[p].used;
}

void sw_port_del(struct sw *sw, int p)
{
	if (!port_ok(sw, p))
		return;
	for (unsigned i = 0; i <= sw->mask; i++) {
		while (sw->fdb[i].used && sw->fdb[i].port == p)
			fdb_remove(sw, i);
	}
	sw->ports[p].used = false;
	while (sw->nr_ports && !sw->ports[sw->nr_ports - 1].used)
		sw->nr_ports--;
}

const struct sw_port_stats *sw_port_stats(const struct sw *sw, int p)
{
	return port_ok(sw, p) ? &sw->ports[p].st : NULL;
}

void sw_sent(struct sw *sw, int p, size_t len)
{
	if (port_ok(sw, p)) {
		sw->ports[p].st.tx_packets++;
		sw->ports[p].st.tx_bytes += len;
	}
}

void sw_dropped(struct sw *sw, int p, enum sw_drop why)
{
	if (port_ok(sw, p) && why < SW_DROP_REASONS)
		sw->ports[p].st.drops[why]++;
}

/* ---- port security ---- */

static bool ip4_mine(const struct sw_port_config *c, uint32_t a)
{
	for (unsigned i = 0; i < c->nr_ip4; i++)
		if (c->ip4[i] == a)
			return true;
	return false;
}

/* One of its IPv6 addresses, or its EUI-64 link-local one (fe80::/64
 * with the MAC, U/L bit flipped, ff:fe in the middle). */
static bool ip6_mine(const struct sw_port_config *c, const uint8_t *a)
{
	static const uint8_t ll[8] = { 0xfe, 0x80 };
	const uint8_t eui[8] = { c->mac[0] ^ 2, c->mac[1], c->mac[2], 0xff, 0xfe, c->mac[3], c->mac[4], c->mac[5] };

	for (unsigned i = 0; i < c->nr_ip6; i++)
		if (!memcmp(c->ip6[i], a, 16))
			return true;
	return !memcmp(a, ll, 8) && !memcmp(a + 8, eui, 8);
}

static bool ip6_unspecified(const uint8_t *a)
{
	static const uint8_t zero[16];

	return !memcmp(a, zero, 16);
}

/* 0, or -(enum sw_drop) when the frame is not the port's to send. */
static int check_source(const struct sw_port_config *c, const struct sw_frame *f)
{
	if (memcmp(f->src, c->mac, SW_ETH_ALEN))
		return -SW_DROP_SPOOF_MAC;
	switch (f->l3) {
	case SW_L3_ARP:
		if (memcmp(f->arp_sha, c->mac, SW_ETH_ALEN))
			return -SW_DROP_SPOOF_MAC;
		if (c->nr_ip4 && f->arp_spa && !ip4_mine(c, f->arp_spa))
			return -SW_DROP_SPOOF_IP;
		return 0;
	case SW_L3_IPV4:
		/* 0.0.0.0: a DHCP client without an address yet. */
		if (c->nr_ip4 && !ip4_mine(c, f->ip4_src) && !(!f->ip4_src && f->udp_dport == 67))
			return -SW_DROP_SPOOF_IP;
		return 0;
	case SW_L3_IPV6:
		if (f->nd_lladdr && memcmp(f->nd_lladdr, c->mac, SW_ETH_ALEN))
			return -SW_DROP_SPOOF_MAC;
		if (!c->nr_ip6)
			return 0;
		/* ::, for duplicate address detection (a solicitation) and
		 * the MLD reports that go with it. */
		if (ip6_unspecified(f->ip6_src) ? !(f->nd_type == 135 || f->icmp6_type == 131 || f->icmp6_type == 143)
						: !ip6_mine(c, f->ip6_src))
			return -SW_DROP_SPOOF_IP;
		if (f->nd_type == 134 || f->nd_type == 137 || (f->nd_type == 136 && !ip6_mine(c, f->nd_target)))
			return -SW_DROP_SPOOF_IP;
		return 0;
	default:
		return 0;
	}
}

/* ---- forwarding ---- */

static int drop(struct sw_port *port, int why)
{
	port->st.drops[-why]++;
	return why;
}

int sw_input(struct sw *sw, int p, const uint8_t *frame, size_t len, unsigned flags, uint64_t now_ns, int *out,
	     unsigned max_out)
{
	struct sw_port *port;
	struct sw_frame f;
	unsigned n = 0;
	int ret, to;

	if (!port_ok(sw, p))
		return -SW_DROP_NO_PORT;
	port = &sw->ports[p];
	port->st.rx_packets++;
	port->st.rx_bytes += len;
	if ((ret = sw_parse(frame, len, flags & SW_IN_GSO ? 65535 : port->c.mtu, &f)) ||
	    (port->c.secure && (ret = check_source(&port->c, &f))) || (ret = learn(sw, p, f.src, now_ns)))
		return drop(port, ret);
	if (!sw_mac_is_group(f.dst) && (to = sw_lookup(sw, port->c.net, f.dst, now_ns)) >= 0) {
		if (to == p || !max_out)
			return 0; /* it is where it is going */
		out[0] = to;
		return 1;
	}
	for (int q = 0; q < sw->nr_ports && n < max_out; q++)
		if (q != p && sw->ports[q].used && sw->ports[q].c.net == port->c.net)
			out[n++] = q;
	return (int)n;
}
