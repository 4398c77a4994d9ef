#include "arch/x86/kpayload.h"

#include <errno.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#define LZ4_LEGACY_MAGIC 0x184c2102u
#define LZ4_LEGACY_BLOCK (8u << 20) /* uncompressed bytes per block, at most */

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int unpack_lz4_legacy(const uint8_t *p, size_t len, size_t max_out, uint8_t **out,
			     size_t *out_len)
{
	size_t pos = 4, n = 0, cap = 0;
	uint8_t *buf = NULL;
	int ret = -EINVAL;

	while (len - pos >= 4) {
		uint32_t csize = le32(p + pos);
		int got;

		if (csize == LZ4_LEGACY_MAGIC) { /* a concatenated frame */
			pos += 4;
			continue;
		}
		if (len - pos == 4) { /* the kernel's uncompressed-size trailer */
			if (csize != n)
				goto fail;
			pos += 4;
			break;
		}
		pos += 4;
		if (csize == 0 || csize > len - pos || csize > (unsigned)LZ4_compressBound(LZ4_LEGACY_BLOCK))
			goto fail;
		if (cap - n < LZ4_LEGACY_BLOCK) {
			size_t ncap = n + LZ4_LEGACY_BLOCK;
			uint8_t *nb;

			if (ncap > max_out + LZ4_LEGACY_BLOCK) {
				ret = -E2BIG;
				goto fail;
			}
			nb = realloc(buf, ncap);
			if (!nb) {
				ret = -ENOMEM;
				goto fail;
			}
			buf = nb;
			cap = ncap;
		}
		got = LZ4_decompress_safe((const char *)p + pos, (char *)buf + n, (int)csize,
					  LZ4_LEGACY_BLOCK);
		if (got <= 0)
			goto fail;
		n += (size_t)got;
		pos += csize;
		if (n > max_out) {
			ret = -E2BIG;
			goto fail;
		}
	}
	if (pos != len || n == 0)
		goto fail;
	*out = buf;
	*out_len = n;
	return 0;
fail:
	free(buf);
	return ret;
}

int kpayload_unpack(const uint8_t *payload, size_t len, size_t max_out, uint8_t **out,
		    size_t *out_len)
{
	*out = NULL;
	*out_len = 0;
	if (len >= 4 && le32(payload) == LZ4_LEGACY_MAGIC)
		return unpack_lz4_legacy(payload, len, max_out, out, out_len);
	return -ENOTSUP;
}
