/* Network backends on a file descriptor: a tap device opened by name
 * (tap=NAME), or an inherited descriptor (fd=N), either a tap a parent
 * opened with IFF_VNET_HDR or a datagram socket. See net_backend.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "virtio/net_backend.h"

#define VNET_HDR_LEN 12 /* struct virtio_net_hdr_v1 (virtio 1.x: num_buffers always there) */

static unsigned tun_flags(unsigned offloads)
{
	return (offloads & NET_OFFLOAD_CSUM ? TUN_F_CSUM : 0) | (offloads & NET_OFFLOAD_TSO4 ? TUN_F_TSO4 : 0) |
	       (offloads & NET_OFFLOAD_TSO6 ? TUN_F_TSO6 : 0);
}

/* A tap with a vnet header: make the header 12 bytes, learn which offloads
 * the kernel can hand us, then ask for none until the guest wants them. */
static int tap_setup(struct net_backend *nb)
{
	int sz = VNET_HDR_LEN;

	if (ioctl(nb->fd, TUNSETVNETHDRSZ, &sz) < 0)
		return -errno;
	nb->offloads = 0;
	if (ioctl(nb->fd, TUNSETOFFLOAD, tun_flags(NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6)) == 0)
		nb->offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6;
	else if (ioctl(nb->fd, TUNSETOFFLOAD, TUN_F_CSUM) == 0)
		nb->offloads = NET_OFFLOAD_CSUM;
	return ioctl(nb->fd, TUNSETOFFLOAD, 0) < 0 ? -errno : 0;
}

static int tap_open(struct net_backend *nb, const char *name, char *err, size_t len)
{
	struct ifreq ifr;
	int ret;

	if (!*name || strlen(name) >= IFNAMSIZ || strchr(name, '/')) {
		snprintf(err, len, "tap=%s: not a valid interface name (1-%d characters)", name, IFNAMSIZ - 1);
		return -EINVAL;
	}
	nb->fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
	if (nb->fd < 0) {
		ret = -errno;
		snprintf(err, len, "tap=%s: cannot open /dev/net/tun: %s%s", name, strerror(-ret),
			 ret == -ENOENT ? " (load the tun module: modprobe tun)" : "");
		return ret;
	}
	memset(&ifr, 0, sizeof(ifr));
	memcpy(ifr.ifr_name, name, strlen(name));
	ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
	if (ioctl(nb->fd, TUNSETIFF, &ifr) < 0) {
		ret = -errno;
		if (ret == -EPERM)
			snprintf(err, len, "tap=%s: permission denied (needs CAP_NET_ADMIN, or a tap made for you: "
				 "ip tuntap add %s mode tap user $USER)", name, name);
		else if (ret == -EBUSY)
			snprintf(err, len, "tap=%s: busy (another process has it open)", name);
		else if (ret == -EINVAL)
			snprintf(err, len, "tap=%s: cannot attach (a tun device, or multi-queue?)", name);
		else
			snprintf(err, len, "tap=%s: %s", name, strerror(-ret));
		goto fail;
	}
	ret = tap_setup(nb);
	if (ret) {
		snprintf(err, len, "tap=%s: cannot set up the vnet header: %s", name, strerror(-ret));
		goto fail;
	}
	return 0;
fail:
	close(nb->fd);
	nb->fd = -1;
	return ret;
}

static int fd_open(struct net_backend *nb, const char *arg, char *err, size_t len)
{
	char *end;
	long fd = strtol(arg, &end, 10);
	int type = 0, fl;
	socklen_t tl = sizeof(type);

	if (!*arg || *end || fd < 0 || fd > 1 << 20 || fcntl((int)fd, F_GETFD) < 0) {
		snprintf(err, len, "fd=%s: not an open file descriptor", arg);
		return -EBADF;
	}
	nb->fd = (int)fd;
	if (getsockopt(nb->fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0) {
		if (type != SOCK_SEQPACKET && type != SOCK_DGRAM) {
			snprintf(err, len, "fd=%s: a socket must be SOCK_SEQPACKET or SOCK_DGRAM", arg);
			return -EINVAL;
		}
		nb->socket = true;
		nb->offloads = NET_OFFLOAD_CSUM | NET_OFFLOAD_TSO4 | NET_OFFLOAD_TSO6;
	} else if (tap_setup(nb)) {
		snprintf(err, len, "fd=%s: neither a datagram socket nor a tap with IFF_VNET_HDR", arg);
		nb->fd = -1;
		return -EINVAL;
	}
	fl = fcntl(nb->fd, F_GETFL);
	if (fl < 0 || fcntl(nb->fd, F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(nb->fd, F_SETFD, FD_CLOEXEC) < 0) {
		int ret = -errno;

		snprintf(err, len, "fd=%s: %s", arg, strerror(-ret));
		nb->fd = -1;
		return ret;
	}
	return 0;
}

static ssize_t fd_read(struct net_backend *nb, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	if (nb->socket) {
		/* A datagram longer than the buffers is cut short: say so. */
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };

		n = recvmsg(nb->fd, &m, MSG_DONTWAIT);
		if (n >= 0 && (m.msg_flags & MSG_TRUNC))
			return -EMSGSIZE;
	} else {
		n = readv(nb->fd, iov, iovcnt);
	}
	return n < 0 ? -errno : n;
}

static ssize_t fd_write(struct net_backend *nb, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	if (nb->socket) {
		/* A peer that went away is an error, not a SIGPIPE. */
		struct msghdr m = { .msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt };

		n = sendmsg(nb->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
	} else {
		n = writev(nb->fd, iov, iovcnt);
	}

	return n < 0 ? -errno : n;
}

static int fd_fd(struct net_backend *nb)
{
	return nb->fd;
}

static int fd_set_offload(struct net_backend *nb, unsigned offloads)
{
	if (nb->socket)
		return 0; /* the header travels with the frame; the peer copes */
	return ioctl(nb->fd, TUNSETOFFLOAD, tun_flags(offloads)) < 0 ? -errno : 0;
}

static void fd_close(struct net_backend *nb)
{
	if (nb->fd >= 0)
		close(nb->fd);
	nb->fd = -1;
}

static const struct net_backend_ops tap_ops = {
	.key = "tap",
	.open = tap_open,
	.read = fd_read,
	.write = fd_write,
	.fd = fd_fd,
	.set_offload = fd_set_offload,
	.close = fd_close,
};

static const struct net_backend_ops fd_ops = {
	.key = "fd",
	.open = fd_open,
	.read = fd_read,
	.write = fd_write,
	.fd = fd_fd,
	.set_offload = fd_set_offload,
	.close = fd_close,
};

bool net_tap_name_ok(const char *name)
{
	return *name && strlen(name) <= 15 && !strpbrk(name, ",=/ ");
}

const struct net_backend_ops *const net_backends[] = { &tap_ops, &fd_ops, NULL };
