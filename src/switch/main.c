/* tarn-switch: the virtual switch as a process of its own. VMs' ports are
 * vhost-user sockets (vport.h), uplinks are tap devices; the forwarding
 * core (switch.h) decides where each frame goes. One thread, one epoll
 * loop. */
#include <errno.h>
#include <getopt.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "switch/switch.h"
#include "switch/vport.h"
#include "virtio/net_backend.h"

#define NET_HDR_LEN 12
#define AGE_EVERY_MS 10000

static const char usage[] =
	"usage: tarn-switch --dir DIR [--port NAME,net=N[,mac=MAC][,ip=ADDR]...]...\n"
	"                   [--tap NAME,net=N]... [-v]\n"
	"\n"
	"The virtual switch: VMs' ports as vhost-user sockets, taps as uplinks,\n"
	"frames kept within their network (README \"The virtual switch\").\n"
	"\n"
	"  --dir DIR         where the ports' sockets go (DIR/NAME.sock)\n"
	"  --port SPEC       a VM's port on network N (a number): with mac=, port\n"
	"                    security (the VM sends from that MAC only, and with\n"
	"                    ip= from those addresses only, IPv4 or IPv6, up to 4)\n"
	"  --tap SPEC        a tap device (made if missing) as an uplink of net N\n"
	"  -v, --verbose     log more\n"
	"  -h, --help        this text\n"
	"\n"
	"On SIGTERM or SIGINT it prints each port's counters and exits 0.\n";

struct port {
	char name[64];
	int id;		   /* in the forwarding core */
	struct vport *vp;  /* a VM's port, or */
	struct net_backend tap; /* an uplink */
	int fds[VPORT_MAX_FDS];
	unsigned nfds, gen;
};

static struct sw *sw;
static struct port *ports[SW_MAX_PORTS];
static int nr_ports, epfd;

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ULL + (uint64_t)t.tv_nsec;
}

/* Keep the epoll set in step with a port's descriptors: all out, then the
 * current ones in (a descriptor number may have been closed and reused). */
static void watch(int i)
{
	struct port *p = ports[i];

	for (unsigned k = 0; k < p->nfds; k++)
		epoll_ctl(epfd, EPOLL_CTL_DEL, p->fds[k], NULL);
	if (p->vp) {
		p->nfds = vport_fds(p->vp, p->fds);
		p->gen = vport_gen(p->vp);
	} else {
		p->fds[0] = p->tap.ops->fd(&p->tap);
		p->nfds = 1;
	}
	for (unsigned k = 0; k < p->nfds; k++) {
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)i << 32 | (uint32_t)p->fds[k] };

		if (epoll_ctl(epfd, EPOLL_CTL_ADD, p->fds[k], &ev))
			pr_warn("switch: %s: cannot watch descriptor %d: %s", p->name, p->fds[k], strerror(errno));
	}
}

/* A frame in by port i: out by where the core says. */
static void switch_frame(int i, const uint8_t *frame, size_t len)
{
	int out[SW_MAX_PORTS];
	int n = sw_input(sw, ports[i]->id, frame, len, 0, now_ns(), out, SW_MAX_PORTS);

	for (int k = 0; k < n; k++) {
		struct port *o = NULL;
		int ok;

		for (int j = 0; j < nr_ports && !o; j++)
			if (ports[j] && ports[j]->id == out[k])
				o = ports[j];
		if (!o)
			continue;
		if (o->vp) {
			ok = !vport_rx(o->vp, frame, len);
		} else {
			static const uint8_t hdr[NET_HDR_LEN];
			struct iovec iov[2] = { { (void *)hdr, NET_HDR_LEN }, { (void *)frame, len } };

			ok = o->tap.ops->write(&o->tap, iov, 2) >= 0;
		}
		if (ok)
			sw_sent(sw, out[k], len);
		else
			sw_dropped(sw, out[k], SW_DROP_NO_ROOM);
	}
}

static void vm_frame(void *opaque, const uint8_t *frame, size_t len)
{
	switch_frame((int)(intptr_t)opaque, frame, len);
}

static void tap_ready(int i)
{
	static uint8_t buf[NET_HDR_LEN + 65536];
	struct iovec iov = { buf, sizeof(buf) };

	for (int budget = 64; budget--;) {
		ssize_t n = ports[i]->tap.ops->read(&ports[i]->tap, &iov, 1);

		if (n < 0)
			return;
		if (n > NET_HDR_LEN)
			switch_frame(i, buf + NET_HDR_LEN, (size_t)n - NET_HDR_LEN);
	}
}

/* "NAME,key=value,...": the name into p, the options into c. */
static void parse_spec(const char *opt, const char *spec, struct port *p, struct sw_port_config *c, bool vm)
{
	char *copy = strdup(spec), *save = NULL, *tok = strtok_r(copy, ",", &save);
	bool have_net = false;

	if (!tok || strlen(tok) >= sizeof(p->name) || strchr(tok, '/'))
		die("--%s %s: NAME,net=N,...", opt, spec);
	snprintf(p->name, sizeof(p->name), "%s", tok);
	while ((tok = strtok_r(NULL, ",", &save))) {
		char *end;

		if (!strncmp(tok, "net=", 4)) {
			unsigned long n = strtoul(tok + 4, &end, 0);

			if (*end || end == tok + 4 || n > UINT32_MAX)
				die("--%s %s: net=N, a number", opt, spec);
			c->net = (uint32_t)n;
			have_net = true;
		} else if (vm && !strncmp(tok, "mac=", 4)) {
			unsigned m[6];

			if (!net_mac_ok(tok + 4) || sscanf(tok + 4, "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6)
				die("--%s %s: mac=52:54:00:12:34:56", opt, spec);
			for (int k = 0; k < 6; k++)
				c->mac[k] = (uint8_t)m[k];
			c->secure = true;
		} else if (vm && !strncmp(tok, "ip=", 3)) {
			if (c->nr_ip4 < SW_MAX_ADDRS && inet_pton(AF_INET, tok + 3, &c->ip4[c->nr_ip4]) == 1)
				c->nr_ip4++;
			else if (c->nr_ip6 < SW_MAX_ADDRS && inet_pton(AF_INET6, tok + 3, c->ip6[c->nr_ip6]) == 1)
				c->nr_ip6++;
			else
				die("--%s %s: ip= an IPv4 or IPv6 address, at most %d of each", opt, spec, SW_MAX_ADDRS);
		} else {
			die("--%s %s: unknown option '%s'", opt, spec, tok);
		}
	}
	if (!have_net)
		die("--%s %s: which network? net=N", opt, spec);
	if ((c->nr_ip4 || c->nr_ip6) && !c->secure)
		die("--%s %s: ip= needs mac= (port security)", opt, spec);
	free(copy);
}

static void add_port(const char *opt, const char *spec, const char *dir)
{
	struct sw_port_config c = { 0 };
	struct port *p = calloc(1, sizeof(*p));
	bool vm = !strcmp(opt, "port");
	char err[256], path[4200];
	int i = nr_ports;

	if (!p || nr_ports == SW_MAX_PORTS)
		die("too many ports");
	parse_spec(opt, spec, p, &c, vm);
	for (int j = 0; j < nr_ports; j++)
		if (!strcmp(ports[j]->name, p->name))
			die("--%s %s: a port named %s exists already", opt, spec, p->name);
	if ((p->id = sw_port_add(sw, &c)) < 0)
		die("--%s %s: %s", opt, spec, strerror(-p->id));
	if (vm) {
		snprintf(path, sizeof(path), "%s/%s.sock", dir, p->name);
		if (!(p->vp = vport_create(path, vm_frame, (void *)(intptr_t)i, err, sizeof(err))))
			die("--%s %s: %s", opt, spec, err);
	} else {
		p->tap.ops = net_backends[0];
		if (p->tap.ops->open(&p->tap, p->name, err, sizeof(err)))
			die("--%s %s: %s", opt, spec, err);
	}
	ports[nr_ports++] = p;
	watch(i);
}

static void print_stats(void)
{
	for (int i = 0; i < nr_ports; i++) {
		const struct sw_port_stats *st = sw_port_stats(sw, ports[i]->id);
		char drops[512] = "";

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
		{ "dir", required_argument, NULL, 'd' },  { "port", required_argument, NULL, 'p' },
		{ "tap", required_argument, NULL, 't' },  { "verbose", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },	  { NULL, 0, NULL, 0 },
	};
	const char *dir = NULL;
	struct { char opt; const char *spec; } specs[SW_MAX_PORTS];
	int nspecs = 0, opt, sfd;
	uint64_t aged = now_ns();
	sigset_t set;

	log_prog = "tarn-switch";
	while ((opt = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
		switch (opt) {
		case 'd': dir = optarg; break;
		case 'p':
		case 't':
			if (nspecs == SW_MAX_PORTS)
				die("too many ports");
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
		add_port(specs[k].opt == 'p' ? "port" : "tap", specs[k].spec, dir);
	fprintf(stderr, "tarn-switch: ready, %d port(s)\n", nr_ports);
	for (;;) {
		struct epoll_event ev[64];
		int n = epoll_wait(epfd, ev, 64, AGE_EVERY_MS);

		if (n < 0 && errno != EINTR)
			die("epoll_wait: %s", strerror(errno));
		for (int k = 0; k < n; k++) {
			int i = (int)(ev[k].data.u64 >> 32), fd = (int)(uint32_t)ev[k].data.u64;

			if (ev[k].data.u64 == UINT64_MAX) {
				print_stats();
				return 0;
			}
			if (i >= nr_ports || !ports[i])
				continue;
			if (ports[i]->vp) {
				vport_ready(ports[i]->vp, fd);
				if (vport_gen(ports[i]->vp) != ports[i]->gen)
					watch(i);
			} else {
				tap_ready(i);
			}
		}
		if (now_ns() - aged > AGE_EVERY_MS * 1000000ULL) {
			aged = now_ns();
			sw_age(sw, aged);
		}
	}
}
