/* The switch's forwarding core (switch/switch.h, switch/frame.h): frame
 * parsing of hostile input, networks kept apart, learning, ageing and
 * moves, the cap on learnt MACs, port security for ARP, IPv4, IPv6 and
 * neighbour discovery, and the learning table against a reference model
 * under random learning, ageing and port removal. */
#include "unit.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "switch/switch.h"

#define S 1000000000ULL

static const uint8_t BCAST[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const uint8_t MAC_A[6] = { 0x52, 0x54, 0, 0, 0, 0xa };
static const uint8_t MAC_B[6] = { 0x52, 0x54, 0, 0, 0, 0xb };
static const uint8_t MAC_C[6] = { 0x52, 0x54, 0, 0, 0, 0xc };
#define L2 0x88b5 /* local experimental: a frame with no L3 header to check */

struct frame {
	uint8_t b[2048];
	size_t n;
};

static void put(struct frame *f, const void *p, size_t n)
{
	memcpy(f->b + f->n, p, n);
	f->n += n;
}

static void put16(struct frame *f, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };

	put(f, b, 2);
}

static struct frame eth(const uint8_t *dst, const uint8_t *src, uint16_t type)
{
	struct frame f = { .n = 0 };

	put(&f, dst, 6);
	put(&f, src, 6);
	put16(&f, type);
	return f;
}

static struct frame arp(const uint8_t *src, const uint8_t *sha, const char *spa, const char *tpa)
{
	struct frame f = eth(BCAST, src, 0x0806);
	uint32_t a;

	put16(&f, 1), put16(&f, 0x0800);
	put(&f, (uint8_t[]){ 6, 4 }, 2);
	put16(&f, 1);
	put(&f, sha, 6);
	inet_pton(AF_INET, spa, &a), put(&f, &a, 4);
	put(&f, (uint8_t[6]){ 0 }, 6);
	inet_pton(AF_INET, tpa, &a), put(&f, &a, 4);
	return f;
}

static struct frame ipv4(const uint8_t *dst, const uint8_t *src, const char *from, uint8_t proto, uint16_t dport)
{
	struct frame f = eth(dst, src, 0x0800);
	uint8_t h[20] = { 0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto };
	uint32_t a;

	inet_pton(AF_INET, from, &a);
	memcpy(h + 12, &a, 4);
	inet_pton(AF_INET, "10.0.0.255", &a);
	memcpy(h + 16, &a, 4);
	put(&f, h, 20);
	put16(&f, 68), put16(&f, dport), put16(&f, 8), put16(&f, 0);
	return f;
}

/* IPv6 from `from` carrying ICMPv6 type (with body), behind a hop-by-hop
 * header when hbh. */
static struct frame ipv6(const uint8_t *src, const char *from, bool hbh, uint8_t type, const void *body, size_t blen)
{
	struct frame f = eth(BCAST, src, 0x86dd);
	uint8_t h[40] = { 0x60, 0, 0, 0, 0, 0, hbh ? 0 : 58, 255 };
	size_t plen = 4 + blen + (hbh ? 8 : 0);

	h[4] = (uint8_t)(plen >> 8), h[5] = (uint8_t)plen;
	inet_pton(AF_INET6, from, h + 8);
	inet_pton(AF_INET6, "ff02::1", h + 24);
	put(&f, h, 40);
	if (hbh)
		put(&f, (uint8_t[8]){ 58, 0, 1, 4 }, 8); /* next ICMPv6, PadN */
	put(&f, (uint8_t[4]){ type }, 4);
	put(&f, body, blen);
	return f;
}

/* An NS or NA body: reserved, the target, a link-layer option with lladdr. */
static size_t nd_body(uint8_t *b, const char *target, int opt, const uint8_t *lladdr)
{
	memset(b, 0, 28);
	inet_pton(AF_INET6, target, b + 4);
	if (!lladdr)
		return 20;
	b[20] = (uint8_t)opt, b[21] = 1;
	memcpy(b + 22, lladdr, 6);
	return 28;
}

static int parse(const struct frame *f)
{
	struct sw_frame x;

	return sw_parse(f->b, f->n, 1500, &x);
}

static void test_parse(void **state)
{
	struct frame f = eth(BCAST, MAC_A, 0x0800);
	struct sw_frame x;
	uint8_t body[32];

	assert_int_equal(sw_parse(f.b, 13, 1500, &x), -SW_DROP_SHORT);
	f = ipv4(BCAST, MAC_A, "10.0.0.1", 17, 67);
	assert_int_equal(parse(&f), 0);
	f.b[14] = 0x44; /* IHL 4 */
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER);
	f = ipv4(BCAST, MAC_A, "10.0.0.1", 17, 67);
	f.n -= 1; /* total length past the frame */
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER);
	/* Group source; the MTU; VLAN tags, two at most. */
	f = eth(BCAST, BCAST, 0x0800);
	assert_int_equal(parse(&f), -SW_DROP_SRC_MULTICAST);
	f = eth(BCAST, MAC_A, 0x88b5);
	f.n += 1500;
	assert_int_equal(parse(&f), 0);
	f.n++;
	assert_int_equal(parse(&f), -SW_DROP_TOO_LONG);
	assert_int_equal(sw_parse(f.b, f.n, 65535, &x), 0);
	f = eth(BCAST, MAC_A, 0x8100);
	put16(&f, 5), put16(&f, 0x88a8), put16(&f, 6), put16(&f, 0x0806);
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER); /* ARP, cut short, behind two tags */
	f = eth(BCAST, MAC_A, 0x8100);
	put16(&f, 5), put16(&f, 0x8100), put16(&f, 6), put16(&f, 0x8100), put16(&f, 7), put16(&f, 0x0800);
	assert_int_equal(parse(&f), -SW_DROP_TOO_MANY_TAGS);
	f = eth(BCAST, MAC_A, 0x8100);
	f.n = 15;
	assert_int_equal(parse(&f), -SW_DROP_SHORT);
	/* IPv6: a payload length past the frame; ND behind hop-by-hop found. */
	f = ipv6(MAC_A, "fe80::1", true, 136, body, nd_body(body, "fe80::1", 2, MAC_A));
	assert_int_equal(sw_parse(f.b, f.n, 1500, &x), 0);
	assert_int_equal(x.nd_type, 136);
	assert_non_null(x.nd_lladdr);
	assert_memory_equal(x.nd_lladdr, MAC_A, 6);
	f.n--;
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER);
	/* An option of length 0 would loop forever. */
	f = ipv6(MAC_A, "fe80::1", false, 135, body, nd_body(body, "fe80::1", 1, MAC_A));
	f.b[f.n - 7] = 0;
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER);
	/* Non-Ethernet ARP. */
	f = arp(MAC_A, MAC_A, "10.0.0.1", "10.0.0.2");
	f.b[15] = 6;
	assert_int_equal(parse(&f), -SW_DROP_BAD_HEADER);
}

/* The sorted outputs of one frame in by port, as a bit mask; -reason on a drop. */
static long outputs(struct sw *sw, int port, const struct frame *f, uint64_t now)
{
	int out[SW_MAX_PORTS];
	int n = sw_input(sw, port, f->b, f->n, 0, now, out, SW_MAX_PORTS);
	long mask = 0;

	if (n < 0)
		return n;
	for (int i = 0; i < n; i++)
		mask |= 1L << out[i];
	return mask;
}

static void test_forwarding(void **state)
{
	struct sw *sw = sw_create(0, 10 * S);
	struct sw_port_config net1 = { .net = 1 }, net2 = { .net = 2 };
	int p0 = sw_port_add(sw, &net1), p1 = sw_port_add(sw, &net1), p2 = sw_port_add(sw, &net1);
	int q0 = sw_port_add(sw, &net2), q1 = sw_port_add(sw, &net2);
	struct frame f;

	assert_int_equal(p0, 0), assert_int_equal(q1, 4);
	/* Broadcast and unknown unicast flood their network only. */
	f = eth(BCAST, MAC_A, L2);
	assert_int_equal(outputs(sw, p0, &f, 0), 1 << p1 | 1 << p2);
	f = eth(MAC_B, MAC_A, L2);
	assert_int_equal(outputs(sw, p0, &f, 0), 1 << p1 | 1 << p2);
	/* B answers from p1: learnt, unicast to it goes there alone. */
	f = eth(MAC_A, MAC_B, L2);
	assert_int_equal(outputs(sw, p1, &f, 1 * S), 1 << p0);
	f = eth(MAC_B, MAC_A, L2);
	assert_int_equal(outputs(sw, p0, &f, 2 * S), 1 << p1);
	/* The same MAC on the other network is another station. */
	f = eth(MAC_B, MAC_C, L2);
	assert_int_equal(outputs(sw, q0, &f, 2 * S), 1 << q1);
	assert_int_equal(sw_lookup(sw, 2, MAC_B, 2 * S), -1);
	assert_int_equal(sw_lookup(sw, 1, MAC_B, 2 * S), p1);
	/* To the port it came by: nowhere. */
	f = eth(MAC_A, MAC_C, L2);
	assert_int_equal(outputs(sw, p0, &f, 3 * S), 0);
	/* Aged out 10 s after last seen: flooded again. */
	f = eth(MAC_B, MAC_A, L2);
	assert_int_equal(outputs(sw, p0, &f, 11 * S - 1), 1 << p1);
	assert_int_equal(outputs(sw, p0, &f, 11 * S), 1 << p1 | 1 << p2);
	sw_age(sw, 12 * S);
	assert_int_equal(sw_lookup(sw, 1, MAC_A, 12 * S), p0); /* seen at 11 s */
	/* A MAC that moves is learnt where it is now. */
	f = eth(MAC_C, MAC_A, L2);
	assert_int_equal(outputs(sw, p2, &f, 13 * S), 1 << p0 | 1 << p1);
	assert_int_equal(sw_lookup(sw, 1, MAC_A, 13 * S), p2);
	/* Counters; a port that goes forgets what it learnt. */
	assert_int_equal(sw_port_stats(sw, p0)->rx_packets, 6);
	sw_port_del(sw, p2);
	assert_int_equal(sw_lookup(sw, 1, MAC_A, 13 * S), -1);
	assert_null(sw_port_stats(sw, p2));
	f = eth(BCAST, MAC_B, L2);
	assert_int_equal(outputs(sw, p1, &f, 14 * S), 1 << p0);
	assert_int_equal(sw_input(sw, p2, f.b, f.n, 0, 14 * S, NULL, 0), -SW_DROP_NO_PORT);
	assert_int_equal(sw_port_add(sw, &net1), p2); /* its number again */
	sw_destroy(sw);
}

static void test_mac_limit(void **state)
{
	struct sw *sw = sw_create(0, 0);
	struct sw_port_config c = { .net = 7, .max_macs = 2 };
	int p = sw_port_add(sw, &c), up = sw_port_add(sw, &(struct sw_port_config){ .net = 7 });
	struct sw_port_config vm = { .net = 7, .secure = true };
	struct frame f;
	int v;

	memcpy(vm.mac, MAC_C, 6);
	v = sw_port_add(sw, &vm);
	for (int i = 0; i < 3; i++) {
		uint8_t src[6] = { 2, 0, 0, 0, 0, (uint8_t)i };

		f = eth(BCAST, src, L2);
		assert_int_equal(outputs(sw, p, &f, 0), i < 2 ? 1 << up | 1 << v : -SW_DROP_MAC_LIMIT);
	}
	assert_int_equal(sw_port_stats(sw, p)->drops[SW_DROP_MAC_LIMIT], 1);
	/* Known ones still go; the VM's own MAC stays its own. */
	f = eth(BCAST, (uint8_t[]){ 2, 0, 0, 0, 0, 1 }, L2);
	assert_int_equal(outputs(sw, p, &f, 1), 1 << up | 1 << v);
	f = eth(BCAST, MAC_C, L2);
	assert_int_equal(outputs(sw, v, &f, 1), 1 << p | 1 << up);
	assert_int_equal(outputs(sw, up, &f, 2), -SW_DROP_SPOOF_MAC);
	assert_int_equal(sw_lookup(sw, 7, MAC_C, 2), v);
	/* Gone from the VM's port: it may turn up elsewhere (moved hosts). */
	sw_port_del(sw, v);
	assert_int_equal(outputs(sw, up, &f, 3), 1 << p);
	assert_int_equal(sw_lookup(sw, 7, MAC_C, 3), up);
	/* Port configs that make no sense. */
	c.nr_ip4 = SW_MAX_ADDRS + 1;
	assert_int_equal(sw_port_add(sw, &c), -EINVAL);
	sw_destroy(sw);
}

static void test_port_security(void **state)
{
	struct sw *sw = sw_create(0, 0);
	struct sw_port_config c = { .net = 1, .secure = true, .nr_ip4 = 1, .nr_ip6 = 1 };
	int up = sw_port_add(sw, &(struct sw_port_config){ .net = 1 }), vm, open;
	uint8_t body[32];
	struct frame f;

	memcpy(c.mac, MAC_A, 6);
	inet_pton(AF_INET, "10.0.0.5", &c.ip4[0]);
	inet_pton(AF_INET6, "2001:db8::5", c.ip6[0]);
	vm = sw_port_add(sw, &c);
	/* L2 only: the MAC, and the link-layer addresses inside ARP and ND. */
	c.nr_ip4 = c.nr_ip6 = 0;
	memcpy(c.mac, MAC_B, 6);
	open = sw_port_add(sw, &c);

	f = eth(BCAST, MAC_C, L2);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_MAC);
	f = arp(MAC_A, MAC_A, "10.0.0.5", "10.0.0.1");
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = arp(MAC_A, MAC_C, "10.0.0.5", "10.0.0.1");
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_MAC);
	f = arp(MAC_A, MAC_A, "10.0.0.6", "10.0.0.1");
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	f = arp(MAC_A, MAC_A, "0.0.0.0", "10.0.0.5"); /* a probe */
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv4(BCAST, MAC_A, "10.0.0.5", 6, 80);
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv4(BCAST, MAC_A, "10.0.0.9", 6, 80);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	f = ipv4(BCAST, MAC_A, "0.0.0.0", 17, 67); /* DHCP */
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv4(BCAST, MAC_A, "0.0.0.0", 17, 53);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	/* IPv6: its address, its EUI-64 link-local one, :: for DAD. */
	f = ipv6(MAC_A, "2001:db8::5", false, 128, body, 4);
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv6(MAC_A, "fe80::5054:ff:fe00:a", false, 128, body, 4);
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv6(MAC_A, "fe80::5054:ff:fe00:b", false, 128, body, 4);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	f = ipv6(MAC_A, "::", false, 135, body, nd_body(body, "2001:db8::5", 0, NULL));
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv6(MAC_A, "::", false, 128, body, 4);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	/* ND: advertising another's address, with another's link-layer
	 * address, routers' messages; behind a hop-by-hop header too. */
	f = ipv6(MAC_A, "2001:db8::5", false, 136, body, nd_body(body, "2001:db8::5", 2, MAC_A));
	assert_true(outputs(sw, vm, &f, 0) > 0);
	f = ipv6(MAC_A, "2001:db8::5", true, 136, body, nd_body(body, "2001:db8::7", 2, MAC_A));
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	f = ipv6(MAC_A, "2001:db8::5", true, 135, body, nd_body(body, "2001:db8::7", 1, MAC_C));
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_MAC);
	f = ipv6(MAC_A, "fe80::5054:ff:fe00:a", false, 134, body, 12);
	assert_int_equal(outputs(sw, vm, &f, 0), -SW_DROP_SPOOF_IP);
	/* Without addresses given only the link-layer ones count. */
	f = ipv6(MAC_B, "2001:db8::99", false, 136, body, nd_body(body, "2001:db8::7", 2, MAC_B));
	assert_true(outputs(sw, open, &f, 0) > 0);
	f = ipv6(MAC_B, "2001:db8::99", false, 136, body, nd_body(body, "2001:db8::7", 2, MAC_A));
	assert_int_equal(outputs(sw, open, &f, 0), -SW_DROP_SPOOF_MAC);
	f = ipv4(BCAST, MAC_B, "192.168.9.9", 6, 80);
	assert_true(outputs(sw, open, &f, 0) > 0);
	/* An uplink is not a VM: anything goes. */
	f = arp(MAC_C, BCAST, "1.2.3.4", "10.0.0.5");
	assert_true(outputs(sw, up, &f, 0) > 0);
	assert_int_equal(sw_port_stats(sw, vm)->drops[SW_DROP_SPOOF_IP], 7);
	assert_int_equal(sw_port_stats(sw, vm)->drops[SW_DROP_SPOOF_MAC], 3);
	sw_destroy(sw);
}

/* The table against a model: random stations on random ports learn, age
 * and go with their port, in a table small enough to fill and wrap. */
static void test_table_model(void **state)
{
	enum { PORTS = 6, MACS = 40, STEPS = 20000 };
	const uint64_t ageing = 50;
	uint64_t rnd = 0x1234567, now = 0;
	struct sw *sw = sw_create(32, ageing);
	int port_of[MACS], ports[PORTS];
	uint64_t seen[MACS];

	for (int p = 0; p < PORTS; p++)
		ports[p] = sw_port_add(sw, &(struct sw_port_config){ .net = 3, .max_macs = MACS });
	for (int m = 0; m < MACS; m++)
		port_of[m] = -1;
	for (int step = 0; step < STEPS; step++) {
		uint64_t r = unit_rnd(&rnd);
		int m = (int)(r % MACS), p = (int)((r >> 8) % PORTS), k = (int)((r >> 16) % 100);
		uint8_t mac[6] = { 2, 0, 0, 0, 0, (uint8_t)m };
		struct frame f = eth(BCAST, mac, L2);
		int out[PORTS];

		now += (r >> 24) % 3;
		if (k < 85) {
			/* A table of 32 holds at most 32: past that, unlearnt. */
			int live = 0;

			for (int i = 0; i < MACS; i++)
				live += port_of[i] >= 0 && now - seen[i] < ageing && i != m;
			assert_true(sw_input(sw, ports[p], f.b, f.n, 0, now, out, PORTS) >= 0);
			if (sw_lookup(sw, 3, mac, now) == ports[p])
				port_of[m] = ports[p], seen[m] = now;
			else
				assert_true(live >= 31); /* full, even after ageing */
		} else if (k < 95) {
			sw_age(sw, now);
		} else {
			sw_port_del(sw, ports[p]);
			for (int i = 0; i < MACS; i++)
				if (port_of[i] == ports[p])
					port_of[i] = -1;
			ports[p] = sw_port_add(sw, &(struct sw_port_config){ .net = 3, .max_macs = MACS });
		}
		for (int i = 0; i < MACS; i++) {
			uint8_t x[6] = { 2, 0, 0, 0, 0, (uint8_t)i };
			int want = port_of[i] >= 0 && now - seen[i] < ageing ? port_of[i] : -1;

			if (sw_lookup(sw, 3, x, now) != want)
				fail_msg("step %d: MAC %d: table says port %d, the model %d", step, i,
					 sw_lookup(sw, 3, x, now), want);
		}
	}
	sw_destroy(sw);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_forwarding),
		cmocka_unit_test(test_mac_limit),
		cmocka_unit_test(test_port_security),
		cmocka_unit_test(test_table_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
