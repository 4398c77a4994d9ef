/* libFuzzer harness for the switch's forwarding core (switch/switch.c,
 * switch/frame.c): a sequence of frames into a switch of six ports on two
 * networks (VM ports with port security, with and without addresses, and
 * uplinks), each frame parsed as hostile input, learnt, forwarded.
 *
 * Checked: nothing is read past a frame (ASan: each frame is copied into
 * a buffer of exactly its size); a frame never goes out by the port it came
 * in by, nor to a port on another network; a VM port with port security
 * never gets a frame forwarded whose source MAC is not its own; every
 * frame is either forwarded or counted as a drop on its port; the table
 * never says a MAC lives on a port of another network.
 *
 * A GSO record's frame also goes through the offloads (switch/offload.c):
 * sw_offload_check on its virtio-net header; when it is accepted,
 * sw_segment into a scratch buffer of exactly hdr_end + gso_size bytes
 * (one byte less: -1, nothing made), every segment at most that long and
 * o.segments of them carrying the whole payload, or sw_offload_csum on a
 * copy for a checksum without GSO, changing only the checksum field.
 * Again nothing may be read or written past a frame or the scratch (ASan).
 *
 * Input: records of [port byte (bit 7: a GSO frame)][length (little
 * endian, 2 bytes)][frame], until the input ends; a GSO record's frame of
 * 12 bytes or more starts with a struct virtio_net_hdr (little endian),
 * which the switch does not see (a port takes it off). The time moves on
 * by a second per record (the table ages after 16 s; a record that starts
 * with 0x5a sweeps it first). */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "switch/offload.h"
#include "switch/switch.h"

#define PORTS 6

struct segs {
	size_t hdr_end, max, payload;
	unsigned n;
};

static void on_segment(void *opaque, const uint8_t *frame, size_t len)
{
	struct segs *s = opaque;

	if (len <= s->hdr_end || len > s->max)
		abort();
	s->payload += len - s->hdr_end;
	s->n++;
}

/* The offloads on frame[0..len) (exactly allocated) with header h. */
static void offload(const struct virtio_net_hdr *h, const uint8_t *frame, size_t len)
{
	struct sw_offload o;

	if (sw_offload_check(frame, len, h, &o))
		return;
	if (h->gso_type != VIRTIO_NET_HDR_GSO_NONE) {
		struct segs s = { .hdr_end = o.hdr_end, .max = o.hdr_end + h->gso_size };
		uint8_t *buf = malloc(s.max);

		if (sw_segment(frame, len, h, &o, buf, s.max - 1, on_segment, &s) != -1 || s.n)
			abort();
		if (sw_segment(frame, len, h, &o, buf, s.max, on_segment, &s) != (int)o.segments ||
		    s.n != o.segments || s.payload != len - o.hdr_end)
			abort();
		free(buf);
	} else if (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) {
		size_t at = (size_t)h->csum_start + h->csum_offset;
		uint8_t *copy = malloc(len);

		memcpy(copy, frame, len);
		sw_offload_csum(copy, len, h);
		if (memcmp(copy, frame, at) || memcmp(copy + at + 2, frame + at + 2, len - at - 2))
			abort();
		free(copy);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sw *sw = sw_create(16, 16ULL * 1000000000);
	struct sw_port_config c[PORTS] = {
		{ .net = 1, .secure = true, .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .nr_ip4 = 1, .nr_ip6 = 1 },
		{ .net = 1, .secure = true, .mac = { 0x52, 0x54, 0, 0, 0, 2 } },
		{ .net = 1, .max_macs = 4 },
		{ .net = 2, .secure = true, .mac = { 0x52, 0x54, 0, 0, 0, 1 }, .nr_ip4 = 1 },
		{ .net = 2 },
		{ .net = 2, .mtu = 9000 },
	};
	int port[PORTS], out[PORTS];
	uint64_t now = 0, before[PORTS];

	inet_pton(AF_INET, "10.0.0.1", &c[0].ip4[0]);
	inet_pton(AF_INET6, "2001:db8::1", c[0].ip6[0]);
	c[3].ip4[0] = c[0].ip4[0];
	for (int i = 0; i < PORTS; i++)
		if ((port[i] = sw_port_add(sw, &c[i])) != i)
			abort();
	while (size >= 3) {
		int in = data[0] % PORTS, n;
		unsigned flags = data[0] & 0x80 ? SW_IN_GSO : 0;
		size_t len = (size_t)(data[1] | data[2] << 8), skip, flen;
		struct virtio_net_hdr h;
		const struct sw_port_stats *st = sw_port_stats(sw, in);
		uint64_t drops = 0;
		uint8_t *frame;

		data += 3, size -= 3;
		if (len > size)
			len = size;
		skip = flags && len >= sizeof(h) ? sizeof(h) : 0;
		memcpy(&h, data, skip);
		flen = len - skip;
		frame = malloc(flen ? flen : 1);
		memcpy(frame, data + skip, flen);
		for (int r = 0; r < SW_DROP_REASONS; r++)
			drops += st->drops[r];
		for (int i = 0; i < PORTS; i++)
			before[i] = sw_port_stats(sw, i)->drops[SW_DROP_SPOOF_MAC];
		n = sw_input(sw, in, frame, flen, flags, now, out, PORTS);
		if (n < 0) {
			uint64_t after = 0;

			for (int r = 0; r < SW_DROP_REASONS; r++)
				after += st->drops[r];
			if (after != drops + 1)
				abort();
		}
		for (int k = 0; k < n; k++) {
			if (out[k] == in || out[k] < 0 || out[k] >= PORTS || c[out[k]].net != c[in].net)
				abort();
		}
		if (n > 0 && c[in].secure && memcmp(frame + 6, c[in].mac, 6))
			abort();
		/* Where the source went in the table: its own network only. */
		if (flen >= 12) {
			int p = sw_lookup(sw, c[in].net, frame + 6, now);

			if (p >= 0 && c[p].net != c[in].net)
				abort();
		}
		if (skip)
			offload(&h, frame, flen);
		free(frame);
		data += len, size -= len;
		now += 1000000000;
		if (size && data[0] == 0x5a)
			sw_age(sw, now);
	}
	sw_destroy(sw);
	return 0;
}
