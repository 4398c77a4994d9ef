/* randread: 4 KiB random reads from a block device, one at a time, with
 * O_DIRECT (no guest page cache: every read is a device request), and the
 * rate they ran at. Part of the default guest (bench/io.py uses it).
 *
 *   randread [-n READS] [-t SECONDS] [-b BYTES] DEVICE
 *
 * Stops after READS reads (default 1000) or SECONDS seconds, whichever is
 * given (both: the first reached). Offsets are multiples of the block size,
 * drawn from a fixed-seed generator, so every run and every VMM reads the
 * same sequence. Prints one line:
 *   randread: N reads of B bytes in T s: X IOPS
 * Exit status 0, or 1 with a message on a failed or short read.
 *
 * Built static by guest/build.sh: gcc -static -O2. */
#define _GNU_SOURCE /* O_DIRECT */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t next(uint64_t *s) /* xorshift64* */
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1DULL;
}

static void usage(void)
{
	fprintf(stderr, "usage: randread [-n READS] [-t SECONDS] [-b BYTES] DEVICE\n");
	exit(2);
}

int main(int argc, char **argv)
{
	unsigned long long reads = 0, done = 0, blocks;
	off_t size;
	unsigned long bs = 4096;
	double secs = 0, t0, t;
	uint64_t seed = 0x9e3779b97f4a7c15ULL;
	void *buf;
	int opt, fd;

	while ((opt = getopt(argc, argv, "n:t:b:")) != -1) {
		switch (opt) {
		case 'n': reads = strtoull(optarg, NULL, 0); break;
		case 't': secs = strtod(optarg, NULL); break;
		case 'b': bs = strtoul(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (optind != argc - 1 || !bs || bs % 512)
		usage();
	if (!reads && secs <= 0)
		reads = 1000;
	fd = open(argv[optind], O_RDONLY | O_DIRECT);
	size = fd < 0 ? -1 : lseek(fd, 0, SEEK_END); /* block devices too */
	if (size < 0) {
		fprintf(stderr, "randread: %s: %s\n", argv[optind], strerror(errno));
		return 1;
	}
	blocks = (unsigned long long)size / bs;
	if (!blocks || posix_memalign(&buf, 4096, bs)) {
		fprintf(stderr, "randread: %s: smaller than one block, or out of memory\n", argv[optind]);
		return 1;
	}
	t0 = t = now();
	while ((!reads || done < reads) && (secs <= 0 || t - t0 < secs)) {
		off_t off = (off_t)(next(&seed) % blocks * bs);
		ssize_t n = pread(fd, buf, bs, off);

		if (n != (ssize_t)bs) {
			fprintf(stderr, "randread: read at %lld: %s\n", (long long)off,
				n < 0 ? strerror(errno) : "short read");
			return 1;
		}
		done++;
		t = now();
	}
	printf("randread: %llu reads of %lu bytes in %.3f s: %.0f IOPS\n", done, bs, t - t0,
	       t > t0 ? (double)done / (t - t0) : 0.0);
	return 0;
}
