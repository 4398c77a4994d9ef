/* Byte ranges of iovecs: see iov.h. */
#include "virtio/iov.h"

#include <string.h>

unsigned iov_slice(const struct iovec *iov, unsigned n, uint64_t off, uint64_t len, struct iovec *dst)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n && len; i++) {
		size_t l = iov[i].iov_len;

		if (off >= l) {
			off -= l;
			continue;
		}
		l -= off;
		if (l > len)
			l = len;
		dst[k].iov_base = (uint8_t *)iov[i].iov_base + off;
		dst[k++].iov_len = l;
		len -= l;
		off = 0;
	}
	return k;
}

size_t iov_copy(const struct iovec *iov, unsigned n, uint64_t off, void *buf, size_t len, bool to_iov)
{
	struct iovec piece;
	uint8_t *b = buf;
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		if (!iov_slice(&iov[i], 1, off, len - done, &piece)) {
			off -= iov[i].iov_len;
			continue;
		}
		if (to_iov)
			memcpy(piece.iov_base, b + done, piece.iov_len);
		else
			memcpy(b + done, piece.iov_base, piece.iov_len);
		done += piece.iov_len;
		off = 0;
	}
	return done;
}

void iov_advance(struct iovec **iov, unsigned *n, size_t done)
{
	while (*n && done >= (*iov)->iov_len) {
		done -= (*iov)->iov_len;
		(*iov)++;
		(*n)--;
	}
	if (*n && done) {
		(*iov)->iov_base = (uint8_t *)(*iov)->iov_base + done;
		(*iov)->iov_len -= done;
	}
}
