/* tcpsend: send MIB MiB of zeroes to HOST:PORT over TCP in writes of
 * BYTES (default 64 KiB, as iperf does), then close. Part of the default
 * guest (bench/io.py uses it): busybox nc writes 1 KiB at a time, which
 * turns a throughput figure into a count of small packets.
 *
 *   tcpsend [-b BYTES] HOST PORT MIB
 *
 * HOST is a dotted IPv4 address. Prints one line:
 *   tcpsend: N bytes in T s: X MiB/s
 * (the sender's view; bench/io.py times the receiver). Exit status 0, or 1
 * with a message.
 *
 * Built static by guest/build.sh: gcc -static -O2. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
	fprintf(stderr, "usage: tcpsend [-b BYTES] HOST PORT MIB\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	unsigned long bs = 64 << 10;
	unsigned long long total, sent = 0;
	double t0, t;
	char *buf;
	int opt, fd;

	while ((opt = getopt(argc, argv, "b:")) != -1) {
		if (opt != 'b')
			usage();
		bs = strtoul(optarg, NULL, 0);
	}
	if (optind != argc - 3 || !bs || inet_pton(AF_INET, argv[optind], &sa.sin_addr) != 1)
		usage();
	sa.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
	total = strtoull(argv[optind + 2], NULL, 0) << 20;
	buf = calloc(1, bs);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (!buf || fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		fprintf(stderr, "tcpsend: %s:%s: %s\n", argv[optind], argv[optind + 1], strerror(errno));
		return 1;
	}
	t0 = now();
	while (sent < total) {
		size_t n = total - sent < bs ? (size_t)(total - sent) : bs;
		ssize_t w = write(fd, buf, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0) {
			fprintf(stderr, "tcpsend: write: %s\n", w < 0 ? strerror(errno) : "wrote nothing");
			return 1;
		}
		sent += (unsigned long long)w;
	}
	if (close(fd)) {
		fprintf(stderr, "tcpsend: close: %s\n", strerror(errno));
		return 1;
	}
	t = now();
	printf("tcpsend: %llu bytes in %.3f s: %.2f MiB/s\n", sent, t - t0,
	       t > t0 ? (double)sent / (t - t0) / 1048576 : 0.0);
	return 0;
}
