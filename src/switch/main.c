/* tarn-switch: the virtual switch as a process of its own. VMs' ports are
 * vhost-user sockets (vport.h), uplinks are tap devices; the forwarding
 * core (switch.h) decides where each frame goes. One thread, one epoll
 * loop. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "core/log.h"
#include "core/ratelimit.h"
#include "switch/offload.h"
#include "switch/switch.h"
#include "switch/vport.h"
#include "virtio/net_backend.h"

#define NET_HDR_LEN ((ssize_t)sizeof(struct virtio_net_hdr))
#define AGE_EVERY_MS 10000

static const char usage[] =
	"usage: tarn-switch --dir DIR [--api-sock PATH] [--port NAME,net=N[,mac=MAC][,ip=ADDR]...]...\n"
	"                   [--tap NAME,net=N]... [--vxlan NAME,net=N,remote=IP]... [-v]\n"
	"\n"
	"The virtual switch: VMs' ports as vhost-user sockets, taps as uplinks,\n"
	"frames kept within their network (README \"The virtual switch\").\n"
	"\n"
	"  --dir DIR         where the ports' sockets go (DIR/NAME.sock)\n"
	"  --port SPEC       a VM's port on network N (a number): with mac=, port\n"
	"                    security (the VM sends from that MAC only, and with\n"
	"                    ip= from those addresses only, IPv4 or IPv6, up to 4);\n"
	"                    QoS from the VM's side: rx_bw=, rx_pps= (to it: over\n"
	"                    the rate, dropped), tx_bw=, tx_pps= (from it: held\n"
	"                    back in its ring) = RATE (tarn run --help), any port rx_\n"
	"  --tap SPEC        a tap device (made if missing) as an uplink of net N\n"
	"  --vxlan NAME,net=N,remote=IP[:PORT]  a VXLAN tunnel (RFC 7348) to another\n"
	"                    host's switch (or Linux vxlan device) for net N, the VNI\n"
	"  --vxlan-port P    the UDP port tunnels use here (default 4789)\n"
	"  --api-sock PATH   ports added, listed and removed at run time: HTTP and\n"
	"                    JSON on a Unix socket (GET /v1/ports, PUT and DELETE\n"
	"                    /v1/ports/NAME {net, mac, ips, tap, vxlan, rx_bw, ...};\n"
	"                    PATCH /v1/ports/NAME {rx_bw, ...}: rates at once)\n"
	"  -v, --verbose     log more\n"
	"  -h, --help        this text\n"
	"\n"
	"On SIGTERM or SIGINT it prints each port's counters and exits 0.\n";

enum port_kind { PORT_VM, PORT_TAP, PORT_VXLAN };

struct port {
	char name[64];
	int id;			/* in the forwarding core */
	enum port_kind kind;
	struct vport *vp;	/* a VM's port (vhost-user), */
	struct net_backend tap; /* a tap uplink, */
	struct sockaddr_in remote; /* or a VXLAN tunnel to another host's switch (VNI: c.net) */
	struct sw_port_config c;
	/* QoS, as tarn's NICs name it, from the guest's side: rl[RX] what
	 * goes out of the switch by the port (policed: over it, dropped),
	 * rl[TX] what a VM sends (held back in its ring) */
	struct rate_limiter rl[2];
	int fds[VPORT_MAX_FDS];
	unsigned nfds, gen;
	bool rx_pending; /* frames put in its receive ring, the guest not told yet */
};

/* The ports, by their number in the core (sw_port_add reuses a removed
 * one's); the epoll loop and the API take the lock. */
static struct sw *sw;
static struct port *ports[SW_MAX_PORTS];
static int epfd;
static const char *dir;
/* VXLAN (RFC 7348): one UDP socket for every tunnel, made with the
 * first; what comes in is taken only from a tunnel's remote, for its VNI. */
static int vx_fd = -1;
/* VM ports with frames in their receive rings since the last flush: one
 * interrupt each for everything an epoll round brought (flush_rx). */
static int rx_pending[SW_MAX_PORTS], n_rx_pending;
static uint16_t vx_port = 4789;
#define VXLAN_HLEN 8
enum { RX, TX };
#define VX_EVENT (UINT64_MAX - 1)
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

static void unwatch(struct port *p)
{
	for (unsigned k = 0; k < p->nfds; k++)
		epoll_ctl(epfd, EPOLL_CTL_DEL, p->fds[k], NULL);
	p->nfds = 0;
}

/* Keep the epoll set in step with a port's descriptors: all out, then the
 * current ones in (a descriptor number may have been closed and reused). */
static void watch(struct port *p)
{
	unwatch(p);
	if (p->kind == PORT_VM) {
		p->nfds = vport_fds(p->vp, p->fds);
		p->gen = vport_gen(p->vp);
	} else if (p->kind == PORT_TAP) {
		p->fds[0] = p->tap.ops->fd(&p->tap);
		p->nfds = 1;
	} /* a tunnel: the shared socket */
	for (unsigned k = 0; k < p->nfds; k++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)p->id << 32 | (uint32_t)p->fds[k] };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fds[k], &ev))
			pr_warn("switch: %s: cannot watch descriptor %d: %s", p->name, p->fds[k], strerror(errno));
	}
}

/* The offloads (NET_OFFLOAD_*) a header asks of whoever finishes the frame. */
static unsigned offloads_of(const struct virtio_net_hdr *h)
{
	return (h->flags & VIRTIO_NET_HDR_F_NEEDS_CSUM ? NET_OFFLOAD_CSUM : 0) |
	       (h->gso_type == VIRTIO_NET_HDR_GSO_TCPV4 ? NET_OFFLOAD_TSO4 : 0) |
	       (h->gso_type == VIRTIO_NET_HDR_GSO_TCPV6 ? NET_OFFLOAD_TSO6 : 0);
}

/* Can port o take a frame with header h as it is? A VM that negotiated
 * what h asks; a tap (the host's kernel finishes the work); not a tunnel. */
static bool takes(const struct port *o, const struct virtio_net_hdr *h)
{
	unsigned tx, rx;

	if (o->kind == PORT_TAP)
		return true;
	if (o->kind != PORT_VM)
		return false;
	vport_offloads(o->vp, &tx, &rx);
	return !(offloads_of(h) & ~rx);
}

/* VM ports given frames since the last flush learn of them then: one
 * interrupt each for everything an epoll round brought. */
static void flush_rx(void)
{
	while (n_rx_pending) {
		struct port *o = ports[rx_pending[--n_rx_pending]];

		o->rx_pending = false;
		vport_rx_flush(o->vp);
	}
}

/* Frame out by port o, with header h (NULL: a whole frame), policed by
 * the port's rate towards it. */
static void deliver(struct port *o, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len)
{
	static const struct virtio_net_hdr none;
	int ok;

	if (rl_active(&o->rl[RX]) && rl_wait_ns(&o->rl[RX])) {
		sw_dropped(sw, o->id, SW_DROP_QOS);
		return;
	}
	if (o->kind == PORT_VM) {
		ok = !vport_rx(o->vp, h, frame, len);
		if (ok && !o->rx_pending) {
			o->rx_pending = true;
			rx_pending[n_rx_pending++] = o->id;
		}
	} else if (o->kind == PORT_TAP) {
		struct iovec iov[2] = { { (void *)(h ? h : &none), NET_HDR_LEN }, { (void *)frame, len } };

		ok = o->tap.ops->write(&o->tap, iov, 2) >= 0;
	} else {
		/* flags: a VNI follows (I); the VNI in bytes 4-6 */
		uint8_t vx[VXLAN_HLEN] = { 0x08, 0, 0, 0, (uint8_t)(o->c.net >> 16), (uint8_t)(o->c.net >> 8),
					   (uint8_t)o->c.net, 0 };
		struct iovec iov[2] = { { vx, VXLAN_HLEN }, { (void *)frame, len } };
		struct msghdr mh = { .msg_name = &o->remote, .msg_namelen = sizeof(o->remote), .msg_iov = iov,
				     .msg_iovlen = 2 };

		ok = sendmsg(vx_fd, &mh, MSG_DONTWAIT) >= 0;
	}
	if (ok) {
		sw_sent(sw, o->id, len);
		rl_charge(&o->rl[RX], len, 1);
	} else
		sw_dropped(sw, o->id, SW_DROP_NO_ROOM);
}

/* The ports a frame still has to go out by, once finished here. */
struct finish {
	const int *to;
	int n;
};

static void deliver_whole(void *opaque, const uint8_t *frame, size_t len)
{
	const struct finish *f = opaque;

	for (int k = 0; k < f->n; k++)
		deliver(ports[f->to[k]], NULL, frame, len);
}

/* A frame in by port id, with its offload header h (NULL: a whole frame)
 * and what sw_offload_check found in it: out by where the core says. A
 * port that can take it as it is gets it so; for the others the switch
 * finishes it first (switch/offload.h): the checksum filled in, or the
 * segments made. */
static void switch_frame(int id, const struct virtio_net_hdr *h, const struct sw_offload *o, const uint8_t *frame,
			 size_t len)
{
	static uint8_t scratch[SW_GSO_MAX_FRAME];
	int out[SW_MAX_PORTS], rest[SW_MAX_PORTS];
	struct finish f = { rest, 0 };
	bool gso = h && h->gso_type != VIRTIO_NET_HDR_GSO_NONE;
	int n = sw_input(sw, id, frame, len, gso ? SW_IN_GSO : 0, now_ns(), out, SW_MAX_PORTS);

	for (int k = 0; k < n; k++) {
		struct port *p = ports[out[k]];

		if (!p)
			continue;
		if (!h || takes(p, h))
			deliver(p, h, frame, len);
		else
			rest[f.n++] = out[k];
	}
	if (!f.n)
		return;
	if (gso) {
		sw_segment(frame, len, h, o, scratch, sizeof(scratch), deliver_whole, &f);
	} else {
		memcpy(scratch, frame, len);
		sw_offload_csum(scratch, len, h);
		deliver_whole(&f, scratch, len);
	}
}

/* A frame in by port p with header h (from a VM, or a tap's kernel): the
 * header checked against the offloads p may send (allowed) and against
 * the frame, then switched. */
static void frame_in(struct port *p, const struct virtio_net_hdr *h, unsigned allowed, const uint8_t *frame,
		     size_t len)
{
	struct virtio_net_hdr hh = *h;
	struct sw_offload o;

	/* DATA_VALID from a driver means nothing: not passed on to a
	 * receiver as a promise that the checksum was checked. */
	hh.flags &= VIRTIO_NET_HDR_F_NEEDS_CSUM;
	hh.num_buffers = 0;
	if (!offloads_of(&hh)) {
		switch_frame(p->id, NULL, NULL, frame, len);
		return;
	}
	if ((offloads_of(&hh) & ~allowed) || sw_offload_check(frame, len, &hh, &o)) {
		sw_dropped(sw, p->id, SW_DROP_BAD_OFFLOAD);
		return;
	}
	switch_frame(p->id, &hh, &o, frame, len);
}

/* What a VM sends counts against its rate, a segmentation-offload frame
 * as one frame (as Firecracker counts it). */
static void vm_frame(void *opaque, const struct virtio_net_hdr *h, const uint8_t *frame, size_t len)
{
	struct port *p = ports[(int)(intptr_t)opaque];
	unsigned tx, rx;

	rl_charge(&p->rl[TX], len, 1);
	vport_offloads(p->vp, &tx, &rx);
	frame_in(p, h, tx, frame, len);
}

/* A VM's port whose front end has just started its rings (a VM that
 * booted, restarted or moved here): a RARP from its MAC, as QEMU sends
 * after a migration, so that every switch on the network (here and at
 * the far ends of its tunnels) learns where it is now. */
static void announce(struct port *p)
{
	uint8_t f[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

	if (!p->c.secure)
		return; /* its MAC is the guest's to choose: unknown here */
	memcpy(f + 6, p->c.mac, 6);
	memcpy(f + 12, (uint8_t[]){ 0x80, 0x35, 0, 1, 8, 0, 6, 4, 0, 3 }, 10); /* RARP: Ethernet, IPv4, request reverse */
	memcpy(f + 22, p->c.mac, 6);
	memcpy(f + 32, p->c.mac, 6);
	switch_frame(p->id, NULL, NULL, f, sizeof(f));
}

static void tap_ready(struct port *p)
{
	static uint8_t buf[NET_HDR_LEN + SW_GSO_MAX_FRAME];
	struct iovec iov = { buf, sizeof(buf) };

	for (int budget = 64; budget--;) {
		ssize_t n = p->tap.ops->read(&p->tap, &iov, 1);

		if (n < 0)
			return;
		if (n > NET_HDR_LEN) {
			struct virtio_net_hdr h;

			memcpy(&h, buf, sizeof(h));
			frame_in(p, &h, p->tap.offloads, buf + NET_HDR_LEN, (size_t)n - NET_HDR_LEN);
		}
	}
}

/* Datagrams on the VXLAN socket: each from a tunnel's remote with its
 * VNI goes into the switch by that tunnel; anything else is dropped. */
static void vx_ready(void)
{
	static uint8_t buf[VXLAN_HLEN + 65536];

	for (int budget = 64; budget--;) {
		struct sockaddr_in from;
		socklen_t flen = sizeof(from);
		ssize_t n = recvfrom(vx_fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&from, &flen);
		uint32_t vni;
		struct port *p = NULL;

		if (n < 0)
			return;
		if (n < VXLAN_HLEN + SW_ETH_HLEN || !(buf[0] & 0x08) || flen != sizeof(from))
			continue;
		vni = (uint32_t)buf[4] << 16 | (uint32_t)buf[5] << 8 | buf[6];
		for (int i = 0; i < SW_MAX_PORTS && !p; i++)
			if (ports[i] && ports[i]->kind == PORT_VXLAN && ports[i]->c.net == vni &&
			    ports[i]->remote.sin_addr.s_addr == from.sin_addr.s_addr)
				p = ports[i];
		if (p)
			switch_frame(p->id, NULL, NULL, buf + VXLAN_HLEN, (size_t)n - VXLAN_HLEN);
		else
			pr_debug("switch: VXLAN from %s, VNI %u: no such tunnel", inet_ntoa(from.sin_addr), vni);
	}
}

/* The VXLAN socket, the first time a tunnel needs it. 0 or -errno. */
static int vx_open(char *err, size_t len)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(vx_port), .sin_addr.s_addr = htonl(INADDR_ANY) };

	if (vx_fd >= 0)
		return 0;
	vx_fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	/* A whole 1500-byte frame and the 50 bytes around it exceed an
	 * underlay's 1500, so datagrams go without DF, as Linux's vxlan device
	 * sends them by default: a router on the way with a smaller MTU
	 * fragments them instead of dropping them (and its ICMP may be
	 * filtered: no black hole). */
	if (vx_fd < 0 || setsockopt(vx_fd, IPPROTO_IP, IP_MTU_DISCOVER, &(int){ IP_PMTUDISC_DONT }, sizeof(int)) ||
	    bind(vx_fd, (struct sockaddr *)&a, sizeof(a)) ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, vx_fd, &(struct epoll_event){ .events = EPOLLIN, .data.u64 = VX_EVENT })) {
		int e = errno;

		if (vx_fd >= 0)
			close(vx_fd);
		vx_fd = -1;
		return errorf(err, len, -e, "VXLAN: UDP port %u: %s", vx_port, strerror(e));
	}
	return 0;
}

/* "IP[:PORT]" into a. 0 or -1. */
static int parse_remote(const char *s, struct sockaddr_in *a)
{
	char host[64];
	const char *colon = strchr(s, ':');
	unsigned long port = vx_port;
	char *end;

	if (strlen(s) >= sizeof(host))
		return -1;
	snprintf(host, sizeof(host), "%.*s", colon ? (int)(colon - s) : (int)strlen(s), s);
	if (colon && ((port = strtoul(colon + 1, &end, 10)) < 1 || port > 65535 || *end))
		return -1;
	*a = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	return inet_pton(AF_INET, host, &a->sin_addr) == 1 ? 0 : -1;
}

/* ---- ports ---- */

static struct port *find(const char *name)
{
	for (int i = 0; i < SW_MAX_PORTS; i++)
		if (ports[i] && !strcmp(ports[i]->name, name))
			return ports[i];
	return NULL;
}

static bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (!len || len > 48)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && !strchr("-_.", n[i]))
			return false;
	return n[0] != '.';
}

/* The checks of a MAC and an address, for the command line and the API:
 * NULL, or what is wrong. */
static const char *set_mac(struct sw_port_config *c, const char *mac)
{
	if (net_parse_mac(mac, c->mac) || (c->mac[0] & 1))
		return "mac: a unicast MAC like 52:54:00:12:34:56";
	c->secure = true;
	return NULL;
}

static const char *add_ip(struct sw_port_config *c, const char *ip)
{
	if (c->nr_ip4 < SW_MAX_ADDRS && inet_pton(AF_INET, ip, &c->ip4[c->nr_ip4]) == 1)
		c->nr_ip4++;
	else if (c->nr_ip6 < SW_MAX_ADDRS && inet_pton(AF_INET6, ip, c->ip6[c->nr_ip6]) == 1)
		c->nr_ip6++;
	else
		return "ip: an IPv4 or IPv6 address, at most 4 of each";
	return NULL;
}

/* A new port (lock held): a VM's (a vhost-user socket DIR/NAME.sock) or a
 * tap uplink. 0, or -errno with why. */
/* A port's QoS options ("rx_bw=RATE,..."; core/ratelimit.h) into p, all
 * or none. 0, or -EINVAL with why. */
static int set_limits(struct port *p, const char *spec, char *err, size_t len)
{
	const struct rl_key keys[4] = {
		{ "rx_bw", &p->rl[RX], RL_BYTES }, { "rx_pps", &p->rl[RX], RL_OPS },
		{ "tx_bw", &p->rl[TX], RL_BYTES }, { "tx_pps", &p->rl[TX], RL_OPS },
	};

	if (p->kind != PORT_VM && strstr(spec, "tx_"))
		return errorf(err, len, -EINVAL, "%s: tx_ limits (what a VM sends) are for a VM's port", p->name);
	return rl_options(spec, keys, 4, err, len);
}

static int port_create(const char *name, enum port_kind kind, const char *remote, const char *limits,
		       const struct sw_port_config *c, char *err, size_t len)
{
	bool tap = kind != PORT_VM;
	struct port *p;
	char path[4200];
	int id;

	if (!name_ok(name))
		return errorf(err, len, -EINVAL, "%s: a name of 1 to 48 letters, digits, '-', '_' or '.'", name);
	if (find(name))
		return errorf(err, len, -EEXIST, "a port named %s exists already", name);
	if ((c->nr_ip4 || c->nr_ip6) && !c->secure)
		return errorf(err, len, -EINVAL, "%s: addresses without a MAC: port security needs mac", name);
	if (tap && c->secure)
		return errorf(err, len, -EINVAL, "%s: an uplink has no port security (mac, ip)", name);
	if (kind == PORT_VXLAN && c->net > 0xffffff)
		return errorf(err, len, -EINVAL, "%s: a VXLAN network's number (its VNI) is 24 bits", name);
	if (kind == PORT_VXLAN && vx_open(err, len))
		return -EINVAL;
	if (!(p = calloc(1, sizeof(*p))))
		return errorf(err, len, -ENOMEM, "out of memory");
	snprintf(p->name, sizeof(p->name), "%s", name);
	p->c = *c;
	p->kind = kind;
	rl_init(&p->rl[RX]);
	rl_init(&p->rl[TX]);
	if (limits && *limits && set_limits(p, limits, err, len)) {
		free(p);
		return -EINVAL;
	}
	if ((id = sw_port_add(sw, c)) < 0) {
		free(p);
		return errorf(err, len, id, "%s: %s", name, id == -ENOSPC ? "no room for more ports" : strerror(-id));
	}
	p->id = id;
	p->kind = kind;
	if (kind == PORT_VXLAN) {
		if (!remote || parse_remote(remote, &p->remote)) {
			errorf(err, len, -EINVAL, "%s: vxlan: a remote IPv4 address [:port]", name);
			goto fail;
		}
		snprintf(path, sizeof(path), "VXLAN to %s", remote);
	} else if (kind == PORT_TAP) {
		p->tap.ops = net_backends[0];
		if (p->tap.ops->open(&p->tap, name, err, len))
			goto fail;
		/* The host's kernel may hand over what the switch can finish. */
		if (p->tap.ops->set_offload(&p->tap, p->tap.offloads))
			p->tap.offloads = 0;
		snprintf(path, sizeof(path), "a tap uplink");
	} else {
		snprintf(path, sizeof(path), "%s/%s.sock", dir, name);
		if (!(p->vp = vport_create(path, vm_frame, (void *)(intptr_t)id, err, len)))
			goto fail;
		vport_set_tx_limit(p->vp, &p->rl[TX]);
	}
	ports[id] = p;
	watch(p);
	pr_info("switch: port %s on network %u: %s", name, c->net, path);
	return 0;
fail:
	sw_port_del(sw, id);
	free(p);
	return -EINVAL;
}

static void port_remove(struct port *p)
{
	unwatch(p);
	if (p->kind == PORT_VM)
		vport_destroy(p->vp);
	else if (p->kind == PORT_TAP)
		p->tap.ops->close(&p->tap);
	sw_port_del(sw, p->id);
	ports[p->id] = NULL;
	pr_info("switch: port %s removed", p->name);
	rl_destroy(&p->rl[RX]);
	rl_destroy(&p->rl[TX]);
	free(p);
}

/* "NAME,net=N[,mac=M][,ip=A]...": a port from the command line. */
static void port_from_spec(const char *opt, const char *spec)
{
	char *copy = strdup(spec), *save = NULL, *tok = strtok_r(copy, ",", &save), err[256];
	struct sw_port_config c = { 0 };
	enum port_kind kind = !strcmp(opt, "tap") ? PORT_TAP : !strcmp(opt, "vxlan") ? PORT_VXLAN : PORT_VM;
	bool have_net = false, tap = kind != PORT_VM;
	const char *name = tok, *why = NULL, *remote = NULL;
	char limits[256] = "";

	if (!tok)
		die("--%s %s: NAME,net=N,...", opt, spec);
	while (!why && (tok = strtok_r(NULL, ",", &save))) {
		char *end;

		if (!strncmp(tok, "net=", 4)) {
			unsigned long n = strtoul(tok + 4, &end, 0);

			why = *end || end == tok + 4 || n > UINT32_MAX ? "net=N, a number" : NULL;
			c.net = (uint32_t)n;
			have_net = true;
		} else if (!tap && !strncmp(tok, "mac=", 4)) {
			why = set_mac(&c, tok + 4);
		} else if (!tap && !strncmp(tok, "ip=", 3)) {
			why = add_ip(&c, tok + 3);
		} else if (kind == PORT_VXLAN && !strncmp(tok, "remote=", 7)) {
			remote = tok + 7;
		} else if (!strncmp(tok, "rx_", 3) || !strncmp(tok, "tx_", 3)) {
			snprintf(limits + strlen(limits), sizeof(limits) - strlen(limits), "%s%s", *limits ? "," : "", tok);
		} else {
			why = "unknown option";
		}
	}
	if (why || !have_net)
		die("--%s %s: %s", opt, spec, why ? why : "which network? net=N");
	if (port_create(name, kind, remote, limits, &c, err, sizeof(err)))
		die("--%s %s: %s", opt, spec, err);
	free(copy);
}

/* ---- the API (--api-sock): GET, PUT, DELETE /v1/ports[/NAME] ---- */

static json_t *port_json(const struct port *p)
{
	const struct sw_port_stats *st = sw_port_stats(sw, p->id);
	json_t *drops = json_object(), *ips = json_array();
	char a[64];

	for (int r = 1; r < SW_DROP_REASONS; r++)
		if (st->drops[r])
			json_object_set_new(drops, sw_drop_names[r], json_integer((json_int_t)st->drops[r]));
	for (unsigned i = 0; i < p->c.nr_ip4; i++)
		json_array_append_new(ips, json_string(inet_ntop(AF_INET, &p->c.ip4[i], a, sizeof(a))));
	for (unsigned i = 0; i < p->c.nr_ip6; i++)
		json_array_append_new(ips, json_string(inet_ntop(AF_INET6, p->c.ip6[i], a, sizeof(a))));
	snprintf(a, sizeof(a), "%02x:%02x:%02x:%02x:%02x:%02x", p->c.mac[0], p->c.mac[1], p->c.mac[2], p->c.mac[3],
		 p->c.mac[4], p->c.mac[5]);
	static const char *const kinds[] = { "vm", "tap", "vxlan" };
	json_t *limits = json_object();

	for (int d = RX; d <= TX; d++)
		for (int k = 0; k < RL_KINDS; k++) {
			char key[16], val[96];

			pthread_mutex_lock(&((struct port *)p)->rl[d].lock);
			if (p->rl[d].b[k].c.size) {
				rl_format(&p->rl[d].b[k].c, val, sizeof(val));
				snprintf(key, sizeof(key), "%s_%s", d == RX ? "rx" : "tx", k == RL_BYTES ? "bw" : "pps");
				json_object_set_new(limits, key, json_string(val));
			}
			pthread_mutex_unlock(&((struct port *)p)->rl[d].lock);
		}

	return json_pack("{s:s,s:s,s:I,s:o,s:o,s:b,s:o,s:{s:I,s:I,s:I,s:I,s:o}}", "name", p->name, "kind",
			 kinds[p->kind], "net", (json_int_t)p->c.net, "mac", p->c.secure ? json_string(a) : json_null(),
			 "ips", ips, "connected", p->kind == PORT_VM ? vport_running(p->vp) : 1, "limits", limits, "stats", "rx_frames",
			 (json_int_t)st->rx_packets, "rx_bytes", (json_int_t)st->rx_bytes, "tx_frames",
			 (json_int_t)st->tx_packets, "tx_bytes", (json_int_t)st->tx_bytes, "drops", drops);
}

static const struct http_field port_fields[] = {
	{ "net", F_INT, true },	     { "tap", F_BOOL, false },	   { "vxlan", F_STR, false },
	{ "mac", F_STR, false },     { "ips", F_ARR, false },	   { "max_macs", F_INT, false },
	{ "rx_bw", F_STR, false },   { "rx_pps", F_STR, false },   { "tx_bw", F_STR, false },
	{ "tx_pps", F_STR, false },
};
static const struct http_field limit_fields[] = {
	{ "rx_bw", F_STR, false }, { "rx_pps", F_STR, false }, { "tx_bw", F_STR, false }, { "tx_pps", F_STR, false },
};

/* The rate fields of in as "rx_bw=RATE,...". */
static void limits_spec(json_t *in, char *buf, size_t len)
{
	buf[0] = 0;
	for (size_t i = 0; i < sizeof(limit_fields) / sizeof(limit_fields[0]); i++) {
		const char *v = json_string_value(json_object_get(in, limit_fields[i].name));

		if (v)
			snprintf(buf + strlen(buf), len - strlen(buf), "%s%s=%s", *buf ? "," : "", limit_fields[i].name, v);
	}
}

/* New rates for port p, all or none, at once. */
static struct http_reply patch_port(struct port *p, json_t *in)
{
	char spec[512], err[256];

	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, limit_fields, true);
	limits_spec(in, spec, sizeof(spec));
	if (*spec && set_limits(p, spec, err, sizeof(err)))
		return http_fault(400, "%s", err);
	return http_ok(port_json(p));
}

static struct http_reply put_port(const char *name, json_t *in)
{
	struct sw_port_config c = { 0 };
	json_t *v;
	size_t i;
	char err[256], spec[512];
	const char *why = NULL;
	int ret;

	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, port_fields, false);
	if (json_integer_value(json_object_get(in, "net")) < 0 || json_integer_value(json_object_get(in, "net")) > UINT32_MAX)
		return http_fault(400, "net: 0 to 4294967295");
	c.net = (uint32_t)json_integer_value(json_object_get(in, "net"));
	if ((v = json_object_get(in, "max_macs")) && (json_integer_value(v) < 1 || json_integer_value(v) > 4096))
		return http_fault(400, "max_macs: 1 to 4096");
	c.max_macs = (unsigned)json_integer_value(v);
	if ((v = json_object_get(in, "mac")))
		why = set_mac(&c, json_string_value(v));
	json_array_foreach(json_object_get(in, "ips"), i, v)
		if (!why)
			why = json_is_string(v) ? add_ip(&c, json_string_value(v)) : "ips: strings";
	if (why)
		return http_fault(400, "%s", why);
	limits_spec(in, spec, sizeof(spec));
	ret = port_create(name,
			  json_object_get(in, "vxlan") ? PORT_VXLAN : json_is_true(json_object_get(in, "tap")) ? PORT_TAP : PORT_VM,
			  json_string_value(json_object_get(in, "vxlan")), spec, &c, err, sizeof(err));
	if (ret)
		return http_fault(ret == -EEXIST ? 409 : 400, "%s", err);
	return (struct http_reply){ 201, port_json(find(name)) };
}

static struct http_reply route(void *opaque, const struct http_request *r)
{
	bool get = !strcmp(r->method, "GET");
	struct http_reply rep;
	char name[64];
	struct port *p;

	if (r->bad)
		return http_fault(400, "%s", r->bad);
	pthread_mutex_lock(&lock);
	if (!strcmp(r->url, "/v1/ports")) {
		json_t *arr = json_array();

		for (int i = 0; i < SW_MAX_PORTS; i++)
			if (ports[i])
				json_array_append_new(arr, port_json(ports[i]));
		rep = get ? http_ok(json_pack("{s:o}", "ports", arr)) : (json_decref(arr), http_fault(405, "methods: GET"));
	} else if (sscanf(r->url, "/v1/ports/%63[^/]", name) == 1 && strlen(r->url) == 10 + strlen(name)) {
		p = find(name);
		if (!strcmp(r->method, "PUT"))
			rep = put_port(name, r->in);
		else if (!p)
			rep = http_fault(404, "no port named %s", name);
		else if (get)
			rep = http_ok(port_json(p));
		else if (!strcmp(r->method, "DELETE"))
			port_remove(p), rep = http_no_content();
		else if (!strcmp(r->method, "PATCH"))
			rep = patch_port(p, r->in);
		else
			rep = http_fault(405, "methods: GET, PUT, PATCH, DELETE");
	} else {
		rep = http_fault(404, "no such resource: %s", r->url);
	}
	pthread_mutex_unlock(&lock);
	return rep;
}

static void print_stats(void)
{
	for (int i = 0; i < SW_MAX_PORTS; i++) {
		const struct sw_port_stats *st;
		char drops[512] = "";

		if (!ports[i])
			continue;
		st = sw_port_stats(sw, i);
		for (int r = 1; r < SW_DROP_REASONS; r++)
			if (st->drops[r])
				snprintf(drops + strlen(drops), sizeof(drops) - strlen(drops), " %s=%llu", sw_drop_names[r],
					 (unsigned long long)st->drops[r]);
		printf("port %s: rx %llu frames %llu bytes, tx %llu frames %llu bytes, drops:%s\n", ports[i]->name,
		       (unsigned long long)st->rx_packets, (unsigned long long)st->rx_bytes,
		       (unsigned long long)st->tx_packets, (unsigned long long)st->tx_bytes, drops[0] ? drops : " none");
	}
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },      { "port", required_argument, NULL, 'p' },
		{ "tap", required_argument, NULL, 't' },      { "api-sock", required_argument, NULL, 'a' },
		{ "vxlan", required_argument, NULL, 'x' },    { "vxlan-port", required_argument, NULL, 'P' },
		{ "verbose", no_argument, NULL, 'v' },	      { "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct { char opt; const char *spec; } specs[64];
	const char *api = NULL;
	struct http_server *srv = NULL;
	int nspecs = 0, opt, sfd, nports = 0;
	uint64_t aged = now_ns();
	char err[256];
	sigset_t set;

	log_prog = "tarn-switch";
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'a': api = optarg; break;
		case 'P': {
			char *end;
			unsigned long port = strtoul(optarg, &end, 10);

			if (*end || port < 1 || port > 65535)
				die("--vxlan-port %s: a UDP port", optarg);
			vx_port = (uint16_t)port;
			break;
		}
		case 'p':
		case 't':
		case 'x':
			if (nspecs == (int)(sizeof(specs) / sizeof(specs[0])))
				die("too many ports on the command line (the API adds more)");
			specs[nspecs].opt = (char)opt;
			specs[nspecs++].spec = optarg;
			break;
		case 'v': log_threshold = log_threshold < LOG_DEBUG ? log_threshold + 1 : LOG_DEBUG; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs("tarn-switch: see 'tarn-switch --help'\n", stderr); return 2;
		}
	}
	if (optind < argc)
		die("unexpected argument '%s': see 'tarn-switch --help'", argv[optind]);
	if (!dir)
		die("--dir DIR: where the ports' sockets go");
	if (!(sw = sw_create(0, 0)) || (epfd = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die("cannot start: %s", strerror(errno));
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigprocmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_CLOEXEC);
	epoll_ctl(epfd, EPOLL_CTL_ADD, sfd, &(struct epoll_event){ .events = EPOLLIN, .data.u64 = UINT64_MAX });
	for (int k = 0; k < nspecs; k++)
		port_from_spec(specs[k].opt == 'p' ? "port" : specs[k].opt == 'x' ? "vxlan" : "tap", specs[k].spec);
	if (api) {
		int fd = http_listen_unix(api, "--api-sock", err, sizeof(err));

		if (fd < 0 || http_start(&srv, fd, 64 * 1024, false, route, NULL, err, sizeof(err)))
			die("%s", err);
	}
	for (int i = 0; i < SW_MAX_PORTS; i++)
		nports += ports[i] != NULL;
	fprintf(stderr, "tarn-switch: ready, %d port(s)%s%s\n", nports, api ? ", API on " : "", api ? api : "");
	for (;;) {
		struct epoll_event ev[64];
		int n = epoll_wait(epfd, ev, 64, AGE_EVERY_MS);

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		pthread_mutex_lock(&lock);
		for (int k = 0; k < n; k++) {
			int i = (int)(ev[k].data.u64 >> 32), fd = (int)(uint32_t)ev[k].data.u64;
			struct port *p;

			if (ev[k].data.u64 == VX_EVENT) {
				vx_ready();
				continue;
			}
			if (ev[k].data.u64 == UINT64_MAX) {
				print_stats();
				pthread_mutex_unlock(&lock);
				if (srv)
					http_stop(srv);
				return 0;
			}
			/* A port the API removed after epoll_wait: its event
			 * names a descriptor the new one at i does not have. */
			if (i >= SW_MAX_PORTS || !(p = ports[i]))
				continue;
			if (p->kind == PORT_VM) {
				bool was = vport_running(p->vp);

				vport_ready(p->vp, fd);
				if (!was && vport_running(p->vp))
					announce(p);
				if (vport_gen(p->vp) != p->gen)
					watch(p);
			} else if (fd == p->fds[0]) {
				tap_ready(p);
			}
		}
		flush_rx();
		if (now_ns() - aged > AGE_EVERY_MS * 1000000ULL) {
			aged = now_ns();
			sw_age(sw, aged);
		}
		pthread_mutex_unlock(&lock);
	}
}
