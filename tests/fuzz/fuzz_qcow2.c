/* libFuzzer harness for the qcow2 reader (src/block/qcow2.c): the input is
 * the image file, the whole of it. It is opened for writing from a memfd;
 * when it opens, the first 64 KiB the guest sees are read, a few writes and
 * write-zeroes (places taken from the input's last bytes) go in and are read
 * back. What is looked for: reads and writes out of bounds (ASan), crashes,
 * hangs. A corrupt image may read back other bytes than were written (its
 * clusters can overlap its own metadata: tests/unit/test_qcow2.c checks
 * that on well-formed images). A header naming a backing
 * file cannot reach the host's files: the image's path is in a directory
 * that does not exist. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "block/qcow2.h"

#define CHECK(x)                                                              \
	do {                                                                  \
		if (!(x))                                                     \
			__builtin_trap();                                     \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[65536], pat[4096];
	char err[512];
	struct qcow2 *q;
	uint64_t vsize, span;
	int fd = memfd_create("fuzz-qcow2", MFD_CLOEXEC);

	CHECK(fd >= 0);
	CHECK(write(fd, data, size) == (ssize_t)size);
	if (qcow2_open(&q, fd, "/nonexistent-fuzz-dir/img.qcow2", false, err, sizeof(err))) {
		CHECK(err[0]); /* a refusal says why */
		close(fd);
		return 0;
	}
	vsize = qcow2_size(q);
	span = vsize < sizeof(buf) ? vsize : sizeof(buf);
	struct iovec v = { buf, span };
	(void)qcow2_preadv(q, &v, 1, 0); /* may fail: I/O errors of a bad image */
	for (int i = 0; i < 4 && size >= 8; i++) {
		uint64_t off = ((uint64_t)data[size - 1 - i] << 9) % span;
		uint64_t len = 1 + (data[size - 5 - (i & 3)] * 37u) % sizeof(pat);
		struct iovec w = { pat, len };

		if (off + len > vsize)
			continue;
		memset(pat, 0x5a + i, len);
		if (i == 3) {
			if (!qcow2_write_zeroes(q, off, len)) {
				struct iovec r = { buf, len };

				(void)qcow2_preadv(q, &r, 1, off);
			}
			continue;
		}
		if (!qcow2_pwritev(q, &w, 1, off)) {
			struct iovec r = { buf, len };

			(void)qcow2_preadv(q, &r, 1, off);
		}
	}
	qcow2_close(q);
	close(fd);
	return 0;
}
