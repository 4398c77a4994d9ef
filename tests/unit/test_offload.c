/* The switch's offloads (switch/offload.h): TCP frames as a Linux guest
 * hands them to its NIC for segmentation (IPv4, with options, IPv6, with
 * VLAN tags, up to 64 KiB) come out as segments a receiver takes, checked
 * with a checksum written again here; partial checksums are filled in,
 * UDP's 0 included; hostile headers are refused, and a scratch buffer too
 * small gets nothing written. */
#include "unit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "switch/offload.h"

#define MSS 1448
#define ID0 0xfffd	 /* the IPv4 ID wraps within a frame */
#define SEQ0 0xfffff000u /* and so does the sequence number */
#define TCP_FIN 0x01
#define TCP_PSH 0x08
#define TCP_ACK 0x10
#define TCP_CWR 0x80

static uint16_t be16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)be16(p) << 16 | be16(p + 2);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* RFC 1071 again, byte by byte, to check the switch's against: sum plus
 * p[0..n) as big-endian words, folded, not complemented. */
static uint16_t sum16(uint64_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sum += i & 1 ? p[i] : (uint32_t)p[i] << 8;
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)sum;
}

static uint8_t pattern(size_t i)
{
	return (uint8_t)(i * 7 + i / 251);
}

struct shape {
	int ipv;	   /* 4 or 6 */
	int tags;	   /* VLAN tags */
	size_t ip_opts;	   /* IPv4 option bytes */
	size_t tcp_opts;   /* TCP option bytes */
	size_t payload;	   /* bytes past the TCP (or UDP) header */
	uint8_t proto;	   /* 6 (the default) or 17 */
	bool gso;	   /* a TSO frame, else one with a partial checksum only */
	uint8_t tcp_flags; /* default ACK PSH FIN CWR */
};

struct pkt {
	uint8_t *b; /* SW_GSO_MAX_FRAME + 64 bytes */
	size_t len, l3, l4, end;
	struct virtio_net_hdr h;
};

/* The pseudo-header's sum of the frame f built like p, for l4len bytes. */
static uint16_t pseudo(const uint8_t *f, const struct pkt *p, uint8_t proto, size_t l4len)
{
	const uint8_t *ip = f + p->l3;
	bool v4 = ip[0] >> 4 == 4;

	return sum16(proto + l4len, ip + (v4 ? 12 : 8), v4 ? 8 : 32);
}

/* Build the frame of shape s in p, with the header a Linux guest sends:
 * NEEDS_CSUM at the TCP (UDP) header, and in the checksum field the
 * pseudo-header's sum, with the length for a checksum-only frame, without
 * it for GSO (as tcp_v4_gso_segment's callers leave it). */
static void build(struct pkt *p, const struct shape *s)
{
	static const uint8_t macs[12] = { 0x52, 0x54, 0, 0, 0, 2, 0x52, 0x54, 0, 0, 0, 1 };
	static const uint8_t a4[8] = { 10, 0, 0, 1, 10, 0, 0, 2 };
	static const uint8_t a6[32] = { 0x20, 0x01, 0x0d, 0xb8, [15] = 1, 0x20, 0x01, 0x0d, 0xb8, [31] = 2 };
	uint8_t proto = s->proto ? s->proto : 6, *f = p->b, *ip, *l4;
	size_t off = 12, l4hdr = proto == 6 ? 20 + s->tcp_opts : 8, l4len = l4hdr + s->payload;

	memset(f, 0, SW_GSO_MAX_FRAME + 64);
	memcpy(f, macs, 12);
	for (int t = 0; t < s->tags; t++, off += 4) {
		put16(f + off, t == 0 && s->tags > 1 ? 0x88a8 : 0x8100);
		put16(f + off + 2, (uint16_t)(100 + t));
	}
	put16(f + off, s->ipv == 4 ? 0x0800 : 0x86dd);
	p->l3 = off + 2;
	ip = f + p->l3;
	if (s->ipv == 4) {
		size_t ihl = 20 + s->ip_opts;

		ip[0] = (uint8_t)(0x40 | ihl / 4);
		put16(ip + 2, (uint16_t)(ihl + l4len));
		put16(ip + 4, ID0);
		put16(ip + 6, 0x4000); /* DF */
		ip[8] = 64;
		ip[9] = proto;
		memcpy(ip + 12, a4, 8);
		memset(ip + 20, 1, s->ip_opts); /* NOP options */
		put16(ip + 10, (uint16_t)~sum16(0, ip, ihl));
		p->l4 = p->l3 + ihl;
	} else {
		ip[0] = 0x60;
		ip[2] = 0x12, ip[3] = 0x34; /* flow label */
		put16(ip + 4, (uint16_t)l4len);
		ip[6] = proto;
		ip[7] = 64;
		memcpy(ip + 8, a6, 32);
		p->l4 = p->l3 + 40;
	}
	l4 = f + p->l4;
	put16(l4, 40000);
	put16(l4 + 2, 5201);
	if (proto == 6) {
		l4[4] = SEQ0 >> 24, l4[5] = SEQ0 >> 16 & 0xff, l4[6] = SEQ0 >> 8 & 0xff, l4[7] = SEQ0 & 0xff;
		memcpy(l4 + 8, (uint8_t[]){ 1, 2, 3, 4 }, 4); /* ack */
		l4[12] = (uint8_t)(l4hdr / 4 << 4);
		l4[13] = s->tcp_flags ? s->tcp_flags : TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR;
		put16(l4 + 14, 0xfaf0);
		memset(l4 + 20, 1, s->tcp_opts);
	} else {
		put16(l4 + 4, (uint16_t)l4len);
	}
	p->end = p->l4 + l4hdr;
	for (size_t i = 0; i < s->payload; i++)
		f[p->end + i] = pattern(i);
	p->len = p->end + s->payload;
	put16(l4 + (proto == 6 ? 16 : 6), pseudo(f, p, proto, s->gso ? 0 : l4len));
	p->h = (struct virtio_net_hdr){
		.flags = VIRTIO_NET_HDR_F_NEEDS_CSUM,
		.gso_type = !s->gso ? VIRTIO_NET_HDR_GSO_NONE : s->ipv == 4 ? VIRTIO_NET_HDR_GSO_TCPV4
									 : VIRTIO_NET_HDR_GSO_TCPV6,
		.hdr_len = (uint16_t)p->end,
		.gso_size = s->gso ? MSS : 0,
		.csum_start = (uint16_t)p->l4,
		.csum_offset = proto == 6 ? 16 : 6,
	};
}

static struct pkt *pkt_new(const struct shape *s)
{
	struct pkt *p = calloc(1, sizeof(*p));

	assert_non_null(p);
	assert_non_null(p->b = malloc(SW_GSO_MAX_FRAME + 64));
	build(p, s);
	return p;
}

static void pkt_free(struct pkt *p)
{
	free(p->b);
	free(p);
}

/* A copy of f[0..len) in a buffer of exactly that size, for the code
 * under test: an ASan build (make SAN=1) catches a byte read past it. */
static uint8_t *exact(const uint8_t *f, size_t len)
{
	uint8_t *c = malloc(len ? len : 1);

	assert_non_null(c);
	memcpy(c, f, len);
	return c;
}

/* ---- segmentation ---- */

struct segs {
	const struct pkt *p;
	uint8_t *data; /* the payloads, one after another */
	size_t got, payload;
	unsigned n;
};

/* One segment, checked as a receiver would, field by field against the
 * frame it came from. */
static void check_segment(void *opaque, const uint8_t *g, size_t len)
{
	struct segs *c = opaque;
	const struct pkt *p = c->p;
	const uint8_t *f = p->b, *ip = g + p->l3, *tcp = g + p->l4, *oip = f + p->l3, *otcp = f + p->l4;
	size_t n = len - p->end, ihl = p->l4 - p->l3, thl = p->end - p->l4;
	bool first = !c->n, last = c->got + n == c->payload;
	uint8_t want = otcp[13];

	assert_true(len > p->end && n <= MSS && c->got + n <= c->payload);
	if (!last)
		assert_int_equal(n, MSS);
	assert_memory_equal(g, f, p->l3); /* MACs and tags */
	if (oip[0] >> 4 == 4) {
		assert_int_equal(be16(ip + 2), len - p->l3);
		assert_int_equal(be16(ip + 4), (ID0 + c->n) & 0xffff);
		assert_int_equal(sum16(0, ip, ihl), 0xffff);
		assert_memory_equal(ip, oip, 2);
		assert_memory_equal(ip + 6, oip + 6, 4);
		assert_memory_equal(ip + 12, oip + 12, ihl - 12); /* addresses, options */
	} else {
		assert_int_equal(be16(ip + 4), len - p->l4);
		assert_memory_equal(ip, oip, 4);
		assert_memory_equal(ip + 6, oip + 6, 34);
	}
	assert_int_equal(be32(tcp + 4), (uint32_t)(SEQ0 + c->got));
	if (!first)
		want &= (uint8_t)~TCP_CWR;
	if (!last)
		want &= (uint8_t)~(TCP_FIN | TCP_PSH);
	assert_int_equal(tcp[13], want);
	assert_memory_equal(tcp, otcp, 4);		 /* ports */
	assert_memory_equal(tcp + 8, otcp + 8, 5);	 /* ack, data offset */
	assert_memory_equal(tcp + 14, otcp + 14, 2);	 /* window */
	assert_memory_equal(tcp + 18, otcp + 18, thl - 18); /* urgent pointer, options */
	assert_int_equal(sum16(pseudo(g, p, 6, len - p->l4), tcp, len - p->l4), 0xffff);
	memcpy(c->data + c->got, g + p->end, n);
	c->got += n;
	c->n++;
}

static void segment_shape(struct shape s)
{
	struct pkt *p;
	struct sw_offload o;
	struct segs c = { .payload = s.payload };
	uint8_t *buf = malloc(SW_GSO_MAX_FRAME), *f;
	unsigned want = (unsigned)((s.payload + MSS - 1) / MSS);

	s.gso = true;
	p = pkt_new(&s);
	c.p = p;
	f = exact(p->b, p->len);
	assert_non_null(buf);
	assert_non_null(c.data = malloc(s.payload));
	assert_int_equal(sw_offload_check(f, p->len, &p->h, &o), 0);
	assert_int_equal(o.l3_off, p->l3);
	assert_int_equal(o.l4_off, p->l4);
	assert_int_equal(o.hdr_end, p->end);
	assert_int_equal(o.segments, want);
	assert_int_equal(sw_segment(f, p->len, &p->h, &o, buf, SW_GSO_MAX_FRAME, check_segment, &c), want);
	assert_int_equal(c.n, want);
	assert_int_equal(c.got, s.payload);
	for (size_t i = 0; i < s.payload; i++)
		if (c.data[i] != pattern(i))
			fail_msg("payload byte %zu: %#x, sent %#x", i, c.data[i], pattern(i));
	free(c.data);
	free(f);
	free(buf);
	pkt_free(p);
}

static void test_segment_ipv4(void **state)
{
	segment_shape((struct shape){ .ipv = 4, .payload = 10000 }); /* 7 segments, the last 1312 bytes */
	segment_shape((struct shape){ .ipv = 4, .tags = 1, .ip_opts = 8, .tcp_opts = 12, .payload = 10000 });
	segment_shape((struct shape){ .ipv = 4, .tags = 2, .ip_opts = 40, .tcp_opts = 40, .payload = 9999 });
	segment_shape((struct shape){ .ipv = 4, .payload = 65535 - 40 }); /* the largest: 46 segments */
}

static void test_segment_ipv6(void **state)
{
	segment_shape((struct shape){ .ipv = 6, .tcp_opts = 12, .payload = 10000 });
	segment_shape((struct shape){ .ipv = 6, .tags = 2, .payload = 10001 });
	segment_shape((struct shape){ .ipv = 6, .tags = 1, .payload = 2 * MSS }); /* the last one full */
	segment_shape((struct shape){ .ipv = 6, .payload = 65535 - 20 });
}

/* One segment's worth is still accepted, and keeps every flag. */
static void test_segment_one(void **state)
{
	segment_shape((struct shape){ .ipv = 4, .payload = 1000 });
	segment_shape((struct shape){ .ipv = 6, .payload = MSS, .tcp_flags = TCP_ACK | TCP_CWR | TCP_FIN });
	segment_shape((struct shape){ .ipv = 4, .payload = 1 });
}

static void count_segment(void *opaque, const uint8_t *g, size_t len)
{
	(*(unsigned *)opaque)++;
}

/* A scratch buffer a byte short of one segment: -1, nothing made; one
 * exactly that long does. */
static void test_segment_small_buffer(void **state)
{
	struct pkt *p = pkt_new(&(struct shape){ .ipv = 4, .tags = 1, .payload = 5000, .gso = true });
	struct sw_offload o;
	struct segs c = { .p = p, .payload = 5000 };
	unsigned calls = 0;
	size_t need;
	uint8_t *buf, *f = exact(p->b, p->len);

	assert_int_equal(sw_offload_check(f, p->len, &p->h, &o), 0);
	need = o.hdr_end + MSS;
	assert_non_null(buf = malloc(need));
	assert_non_null(c.data = malloc(5000));
	memset(buf, 0xa5, need);
	assert_int_equal(sw_segment(f, p->len, &p->h, &o, buf, need - 1, count_segment, &calls), -1);
	assert_int_equal(calls, 0);
	for (size_t i = 0; i < need; i++)
		assert_int_equal(buf[i], 0xa5);
	assert_int_equal(sw_segment(f, p->len, &p->h, &o, buf, need, check_segment, &c), 4);
	assert_int_equal(c.got, 5000);
	free(c.data);
	free(f);
	free(buf);
	pkt_free(p);
}

/* ---- checksums ---- */

/* A checksum-only frame of shape s: accepted, filled in, equal to the
 * checksum computed from scratch; it verifies. Returns what was stored. */
static uint16_t csum_shape(struct shape s, void (*tweak)(struct pkt *))
{
	struct pkt *p = pkt_new(&s);
	struct sw_offload o;
	size_t l4len = p->len - p->l4, at = p->l4 + p->h.csum_offset;
	uint8_t proto = s.proto ? s.proto : 6, *copy;
	uint16_t want, got;

	if (tweak)
		tweak(p);
	assert_non_null(copy = exact(p->b, p->len));
	assert_int_equal(sw_offload_check(copy, p->len, &p->h, &o), 0);
	assert_int_equal(o.l3_off, p->l3);
	assert_int_equal(o.l4_off, 0);
	assert_int_equal(o.hdr_end, 0);
	assert_int_equal(o.segments, 1);
	sw_offload_csum(copy, p->len, &p->h);
	got = be16(copy + at);
	/* From scratch: the field zeroed, the pseudo-header with the length. */
	put16(p->b + at, 0);
	want = (uint16_t)~sum16(pseudo(p->b, p, proto, l4len), p->b + p->l4, l4len);
	if (!want)
		want = 0xffff;
	assert_int_equal(got, want);
	put16(p->b + at, got);
	assert_memory_equal(copy, p->b, p->len); /* nothing else written */
	assert_int_equal(sum16(pseudo(copy, p, proto, l4len), copy + p->l4, l4len), 0xffff);
	free(copy);
	pkt_free(p);
	return got;
}

static void test_csum_tcp(void **state)
{
	csum_shape((struct shape){ .ipv = 4, .tags = 1, .payload = 1001 }, NULL);
	csum_shape((struct shape){ .ipv = 4, .ip_opts = 4, .tcp_opts = 12, .payload = 0 }, NULL);
	csum_shape((struct shape){ .ipv = 6, .tags = 2, .payload = 777 }, NULL);
}

/* Make the UDP checksum come out 0: the first payload word takes up what
 * the rest of the sum lacks of 0xffff. */
static void udp_zero(struct pkt *p)
{
	size_t l4len = p->len - p->l4;
	uint16_t s;

	put16(p->b + p->l4 + 6, 0);
	put16(p->b + p->end, 0);
	s = sum16(pseudo(p->b, p, 17, l4len), p->b + p->l4, l4len);
	put16(p->b + p->end, (uint16_t)(0xffff - s));
	assert_int_equal(sum16(pseudo(p->b, p, 17, l4len), p->b + p->l4, l4len), 0xffff);
	put16(p->b + p->l4 + 6, pseudo(p->b, p, 17, l4len)); /* the partial sum again */
}

static void test_csum_udp(void **state)
{
	csum_shape((struct shape){ .ipv = 4, .proto = 17, .payload = 333 }, NULL);
	csum_shape((struct shape){ .ipv = 6, .tags = 1, .proto = 17, .payload = 1200 }, NULL);
	assert_int_equal(csum_shape((struct shape){ .ipv = 4, .proto = 17, .payload = 101 }, udp_zero), 0xffff);
	assert_int_equal(csum_shape((struct shape){ .ipv = 6, .proto = 17, .payload = 64 }, udp_zero), 0xffff);
}

/* Any range the header may name: odd starts and lengths, carries (frames
 * of 0xff bytes), the field anywhere in it. */
static void test_csum_ranges(void **state)
{
	uint64_t rnd = 0x6f66666c6f6164;
	uint8_t f[3000], copy[3000], *g;

	for (int k = 0; k < 2000; k++) {
		size_t len = 16 + unit_rnd(&rnd) % (sizeof(f) - 15), start = 14 + unit_rnd(&rnd) % (len - 15);
		size_t off = unit_rnd(&rnd) % (len - start - 1);
		struct virtio_net_hdr h = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = (uint16_t)start,
					    .csum_offset = (uint16_t)off };
		struct sw_offload o;
		uint16_t want;

		for (size_t i = 0; i < len; i++)
			f[i] = k % 4 ? (uint8_t)unit_rnd(&rnd) : 0xff;
		memcpy(copy, f, len);
		want = (uint16_t)~sum16(0, f + start, len - start);
		put16(copy + start + off, want ? want : 0xffff);
		g = exact(f, len);
		assert_int_equal(sw_offload_check(g, len, &h, &o), 0);
		sw_offload_csum(g, len, &h);
		if (memcmp(copy, g, len))
			fail_msg("step %d: len %zu, csum_start %zu, csum_offset %zu: %#x, want %#x", k, len, start, off,
				 be16(g + start + off), be16(copy + start + off));
		free(g);
	}
}

/* ---- hostile headers ---- */

static bool accepted(const uint8_t *f, size_t len, struct virtio_net_hdr h)
{
	struct sw_offload o;
	uint8_t *c = exact(f, len);
	bool ok = !sw_offload_check(c, len, &h, &o);

	free(c);
	return ok;
}

/* One thing wrong with a GSO frame that was right. */
enum mutation {
	NO_CSUM, GSO_0, ECN, GSO_UDP, GSO_2, GSO_5, OTHER_IP, FLAG_4, FLAG_80, ETHERTYPE, VERSION, MORE_FRAGS, FRAG_OFF,
	IHL_4, EXT_HEADER, NOT_TCP, LEN_UP, LEN_DOWN, PADDED, DOFF_4, DOFF_15, START_UP, OFFSET_6, START_13,
	PAST_END,
};

static void mutate(struct pkt *p, enum mutation m)
{
	uint8_t *ip = p->b + p->l3, *tcp = p->b + p->l4;
	bool v4 = p->h.gso_type == VIRTIO_NET_HDR_GSO_TCPV4;

	switch (m) {
	case NO_CSUM: p->h.flags = 0; break;
	case GSO_0: p->h.gso_size = 0; break;
	case ECN: p->h.gso_type |= VIRTIO_NET_HDR_GSO_ECN; break;
	case GSO_UDP: p->h.gso_type = 3; break;
	case GSO_2: p->h.gso_type = 2; break;
	case GSO_5: p->h.gso_type = 5; break;
	case OTHER_IP: p->h.gso_type = v4 ? VIRTIO_NET_HDR_GSO_TCPV6 : VIRTIO_NET_HDR_GSO_TCPV4; break;
	case FLAG_4: p->h.flags |= 4; break;
	case FLAG_80: p->h.flags |= 0x80; break;
	case ETHERTYPE: put16(ip - 2, v4 ? 0x86dd : 0x0800); break;
	case VERSION: ip[0] ^= 0x20; break; /* 4 <-> 6 */
	case MORE_FRAGS: ip[6] |= 0x20; break;
	case FRAG_OFF: ip[7] = 1; break;
	case IHL_4: /* and what would then be a TCP header 4 bytes early */
		ip[0] = 0x44;
		p->h.csum_start -= 4;
		tcp[8] = 0x50;
		break;
	case EXT_HEADER: /* a hop-by-hop header (8 bytes of padding) before TCP */
		memmove(tcp + 8, tcp, p->len - p->l4);
		memcpy(tcp, (uint8_t[]){ 6, 0, 1, 4, 0, 0, 0, 0 }, 8);
		ip[6] = 0;
		put16(ip + 4, (uint16_t)(be16(ip + 4) + 8));
		p->len += 8;
		p->h.csum_start += 8;
		break;
	case NOT_TCP: ip[v4 ? 9 : 6] = 17; break;
	case LEN_UP: ip[v4 ? 3 : 5]++; break;
	case LEN_DOWN: ip[v4 ? 3 : 5]--; break;
	case PADDED: p->len++; break;
	case DOFF_4: tcp[12] = 0x40; break;
	case DOFF_15: tcp[12] = 0xf0; break; /* past the end of a short frame */
	case START_UP: p->h.csum_start++; break;
	case OFFSET_6: p->h.csum_offset = 6; break;
	case START_13: p->h.csum_start = 13; break;
	case PAST_END: p->h.csum_offset = (uint16_t)(p->len - p->h.csum_start - 1); break;
	}
}

/* The GSO frame of shape s, accepted as built, refused once mutated. */
static void refuse(struct shape s, enum mutation m, const char *what)
{
	struct pkt *p;

	s.gso = true;
	p = pkt_new(&s);
	assert_true(accepted(p->b, p->len, p->h));
	mutate(p, m);
	if (accepted(p->b, p->len, p->h))
		fail_msg("IPv%d frame, %s: accepted", s.ipv, what);
	pkt_free(p);
}

static void test_refused(void **state)
{
	static const struct {
		enum mutation m;
		const char *what;
		int only; /* for this IP version only */
	} cases[] = {
		{ NO_CSUM, "GSO without NEEDS_CSUM" },
		{ GSO_0, "gso_size 0" },
		{ ECN, "the ECN bit" },
		{ GSO_UDP, "GSO_UDP" },
		{ GSO_2, "gso_type 2" },
		{ GSO_5, "gso_type 5" },
		{ OTHER_IP, "the other IP version's gso_type" },
		{ FLAG_4, "flag 4" },
		{ FLAG_80, "flag 0x80" },
		{ ETHERTYPE, "the other IP version's EtherType" },
		{ VERSION, "the IP version nibble wrong" },
		{ MORE_FRAGS, "MF", 4 },
		{ FRAG_OFF, "a fragment offset", 4 },
		{ IHL_4, "IHL 4", 4 },
		{ EXT_HEADER, "an extension header", 6 },
		{ NOT_TCP, "UDP" },
		{ LEN_UP, "IP length one more than the frame" },
		{ LEN_DOWN, "IP length one less than the frame" },
		{ PADDED, "a byte of padding" },
		{ DOFF_4, "TCP data offset 4" },
		{ START_UP, "csum_start past the TCP header" },
		{ OFFSET_6, "csum_offset 6" },
		{ START_13, "csum_start 13" },
		{ PAST_END, "csum_start + csum_offset + 2 past the end" },
	};
	static const struct shape shapes[] = {
		{ .ipv = 4, .payload = 3000 },
		{ .ipv = 4, .tags = 2, .ip_opts = 4, .payload = 3000 },
		{ .ipv = 6, .tags = 1, .payload = 3000 },
	};

	for (size_t s = 0; s < sizeof(shapes) / sizeof(shapes[0]); s++)
		for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
			if (!cases[i].only || cases[i].only == shapes[s].ipv)
				refuse(shapes[s], cases[i].m, cases[i].what);
	refuse((struct shape){ .ipv = 4, .payload = 10 }, DOFF_15, "TCP header past the end");
	refuse((struct shape){ .ipv = 6, .payload = 10 }, DOFF_15, "TCP header past the end");
}

static void test_refused_frames(void **state)
{
	struct pkt *p = pkt_new(&(struct shape){ .ipv = 4, .payload = 0, .gso = true });
	struct virtio_net_hdr csum = { .flags = VIRTIO_NET_HDR_F_NEEDS_CSUM, .csum_start = 14 };
	struct sw_offload o;

	/* No payload to segment. */
	assert_false(accepted(p->b, p->len, p->h));
	/* Three VLAN tags: the switch takes two. */
	build(p, &(struct shape){ .ipv = 6, .tags = 3, .payload = 3000, .gso = true });
	assert_false(accepted(p->b, p->len, p->h));
	/* Every frame cut short within its headers: as it is, and with its IP
	 * length made to agree and csum_start 14, csum_offset 0, so that only
	 * the IP and TCP headers can refuse it (an IPv4 header longer than the
	 * packet, a TCP header cut short; an ASan build catches a byte read
	 * past the frame). */
	for (int k = 0; k < 2; k++) {
		struct virtio_net_hdr lo;

		build(p, k ? &(struct shape){ .ipv = 6, .tags = 1, .tcp_opts = 12, .payload = 100, .gso = true }
			   : &(struct shape){ .ipv = 4, .tags = 1, .ip_opts = 40, .tcp_opts = 12, .payload = 100,
					      .gso = true });
		lo = p->h;
		lo.csum_start = 14, lo.csum_offset = 0;
		assert_true(accepted(p->b, p->len, p->h));
		for (size_t n = 0; n < p->len; n++)
			if (accepted(p->b, n, p->h))
				fail_msg("IPv%d frame cut to %zu bytes of %zu: accepted", 4 + 2 * k, n, p->len);
		for (size_t n = p->l3; n <= p->end; n++) {
			uint8_t *len = p->b + p->l3 + (k ? 4 : 2);
			uint16_t was = be16(len);

			put16(len, (uint16_t)(k ? (n - p->l3 < 40 ? 0 : n - p->l3 - 40) : n - p->l3));
			if (accepted(p->b, n, p->h) || accepted(p->b, n, lo))
				fail_msg("IPv%d frame cut to %zu bytes, its length agreeing: accepted", 4 + 2 * k, n);
			put16(len, was);
		}
	}

	/* Longer than SW_GSO_MAX_FRAME, with a checksum or without. */
	memset(p->b, 0, SW_GSO_MAX_FRAME + 1);
	assert_true(accepted(p->b, SW_GSO_MAX_FRAME, csum));
	assert_false(accepted(p->b, SW_GSO_MAX_FRAME + 1, csum));
	assert_false(accepted(p->b, SW_GSO_MAX_FRAME + 1, (struct virtio_net_hdr){ 0 }));

	/* A checksum's bounds, and nothing more, without GSO; DATA_VALID
	 * ignored; where the IP header is past the tags. */
	build(p, &(struct shape){ .ipv = 4, .tags = 1, .payload = 100 });
	csum.csum_start = (uint16_t)(p->len - 2);
	assert_true(accepted(p->b, p->len, csum));
	csum.csum_offset = 1;
	assert_false(accepted(p->b, p->len, csum));
	csum.csum_start = csum.csum_offset = 0xffff;
	assert_false(accepted(p->b, p->len, csum));
	csum.csum_start = 13, csum.csum_offset = 0;
	assert_false(accepted(p->b, p->len, csum));
	csum.csum_start = 14, csum.csum_offset = 0;
	csum.flags |= VIRTIO_NET_HDR_F_DATA_VALID;
	assert_int_equal(sw_offload_check(p->b, p->len, &csum, &o), 0);
	assert_int_equal(o.l3_off, 18);
	assert_int_equal(o.l4_off + o.hdr_end, 0);
	assert_int_equal(o.segments, 1);
	build(p, &(struct shape){ .ipv = 4, .tags = 3, .payload = 100 });
	assert_int_equal(sw_offload_check(p->b, p->len, &csum, &o), 0);
	assert_int_equal(o.l3_off, 14);
	/* Past a tag only when it is all there, in a frame of any length. */
	build(p, &(struct shape){ .ipv = 4, .tags = 1, .payload = 100 });
	for (size_t n = 0; n < 40; n++) {
		uint8_t *f = exact(p->b, n);

		assert_int_equal(sw_offload_check(f, n, &(struct virtio_net_hdr){ 0 }, &o), 0);
		assert_int_equal(o.l3_off, n < 18 ? 14 : 18);
		free(f);
	}
	pkt_free(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_segment_ipv4),
		cmocka_unit_test(test_segment_ipv6),
		cmocka_unit_test(test_segment_one),
		cmocka_unit_test(test_segment_small_buffer),
		cmocka_unit_test(test_csum_tcp),
		cmocka_unit_test(test_csum_udp),
		cmocka_unit_test(test_csum_ranges),
		cmocka_unit_test(test_refused),
		cmocka_unit_test(test_refused_frames),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
