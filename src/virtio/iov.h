/* Byte ranges of a virtqueue chain's host iovecs (virtio/virtqueue.h):
 * copies in and out, sub-ranges, and stepping past a short transfer.
 * Zero-length iovecs (their base may be NULL) are skipped, never touched. */
#ifndef TARN_VIRTIO_IOV_H
#define TARN_VIRTIO_IOV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

/* Copy between buf and bytes [off, off + len) of iov[0..n), as far as the
 * iovecs reach; returns the bytes copied. */
size_t iov_copy(const struct iovec *iov, unsigned n, uint64_t off, void *buf, size_t len, bool to_iov);

/* dst = the pieces of iov[0..n) covering bytes [off, off + len), as far as
 * the iovecs reach; returns how many (at most n). */
unsigned iov_slice(const struct iovec *iov, unsigned n, uint64_t off, uint64_t len, struct iovec *dst);

/* After a transfer of done bytes from *iov (*n entries): step past what
 * went, trimming a partly done entry in place. */
void iov_advance(struct iovec **iov, unsigned *n, size_t done);

#endif
