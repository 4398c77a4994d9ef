/* arch/x86/kpayload: a bzImage's LZ4 payload unpacked on the host. Streams
 * are built here with liblz4 in the kernel's legacy frame format; the
 * corrupt ones must be refused with an error, never read or written out of
 * bounds (the file is untrusted input). */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <lz4.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/kpayload.h"

#define BLOCK (8u << 20)

struct stream {
	uint8_t *p;
	size_t len;
};

static void put32(struct stream *s, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		s->p[s->len++] = (uint8_t)(v >> (8 * i));
}

/* The kernel's format: magic, then per 8 MiB block its compressed size and
 * data; with trailer, the uncompressed size appended (size_append). */
static struct stream make(const uint8_t *data, size_t n, bool trailer)
{
	struct stream s;
	size_t blocks = n / BLOCK + 1;

	s.p = malloc(8 + blocks * (4 + (size_t)LZ4_compressBound(BLOCK)));
	assert_non_null(s.p);
	s.len = 0;
	put32(&s, 0x184c2102);
	for (size_t off = 0; off < n; off += BLOCK) {
		int chunk = (int)(n - off < BLOCK ? n - off : BLOCK);
		int c = LZ4_compress_default((const char *)data + off, (char *)s.p + s.len + 4, chunk,
					     LZ4_compressBound(BLOCK));

		assert_true(c > 0);
		put32(&s, (uint32_t)c);
		s.len += (size_t)c;
	}
	if (trailer)
		put32(&s, (uint32_t)n);
	return s;
}

static uint8_t *pattern(size_t n)
{
	uint8_t *d = malloc(n);
	uint32_t x = 12345;

	assert_non_null(d);
	for (size_t i = 0; i < n; i++) {
		x = x * 1103515245 + 12345;
		d[i] = (i % 4096 < 2048) ? (uint8_t)(x >> 24) : (uint8_t)i; /* half noise */
	}
	return d;
}

static void test_round_trip(void **state)
{
	/* Three blocks (the last one short), with and without the trailer. */
	size_t n = 2 * BLOCK + 12345;
	uint8_t *d = pattern(n);

	for (int t = 0; t < 2; t++) {
		struct stream s = make(d, n, t);
		uint8_t *out;
		size_t out_len;

		assert_int_equal(kpayload_unpack(s.p, s.len, 64u << 20, &out, &out_len), 0);
		assert_int_equal(out_len, n);
		assert_memory_equal(out, d, n);
		free(out);
		free(s.p);
	}
	free(d);
}

static void test_not_lz4(void **state)
{
	static const uint8_t gzip[] = { 0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0 };
	uint8_t *out = (uint8_t *)1;
	size_t out_len = 1;

	assert_int_equal(kpayload_unpack(gzip, sizeof(gzip), 1u << 20, &out, &out_len), -ENOTSUP);
	assert_null(out);
	assert_int_equal(kpayload_unpack(gzip, 2, 1u << 20, &out, &out_len), -ENOTSUP);
}

static void test_corrupt(void **state)
{
	size_t n = BLOCK + 4096;
	uint8_t *d = pattern(n);
	struct stream s = make(d, n, true);
	uint8_t *out;
	size_t out_len;
	uint8_t *bad = malloc(s.len);

	assert_non_null(bad);
	/* Every truncation point in the headers, and a sample inside the data;
	 * not the two cuts that leave a shorter valid stream (after the first
	 * block, or without the trailer). */
	size_t first_end = 8 + ((size_t)s.p[4] | (size_t)s.p[5] << 8 | (size_t)s.p[6] << 16 |
				(size_t)s.p[7] << 24);
	for (size_t cut = 4; cut < s.len; cut += (cut < 64 ? 1 : s.len / 97)) {
		if (cut == first_end || cut == s.len - 4)
			continue;
		int ret = kpayload_unpack(s.p, cut, 64u << 20, &out, &out_len);

		if (ret != -EINVAL)
			fail_msg("a stream cut at %zu of %zu bytes gave %d, not -EINVAL", cut, s.len, ret);
	}
	/* A block size running past the end. */
	memcpy(bad, s.p, s.len);
	bad[4] = 0xff, bad[5] = 0xff, bad[6] = 0xff, bad[7] = 0x7f;
	assert_int_equal(kpayload_unpack(bad, s.len, 64u << 20, &out, &out_len), -EINVAL);
	/* A wrong uncompressed-size trailer. */
	memcpy(bad, s.p, s.len);
	bad[s.len - 4] ^= 1;
	assert_int_equal(kpayload_unpack(bad, s.len, 64u << 20, &out, &out_len), -EINVAL);
	/* Garbage in the compressed data: refused or, if it still decodes,
	 * then to something of the wrong size (the trailer catches it). */
	srand(7);
	for (int i = 0; i < 200; i++) {
		memcpy(bad, s.p, s.len);
		for (int j = 0; j < 8; j++)
			bad[8 + (size_t)rand() % (s.len - 12)] = (uint8_t)rand();
		int ret = kpayload_unpack(bad, s.len, 64u << 20, &out, &out_len);

		if (ret == 0) {
			assert_int_equal(out_len, n);
			free(out);
		} else {
			assert_int_equal(ret, -EINVAL);
		}
	}
	free(bad);
	free(s.p);
	free(d);
}

static void test_too_big(void **state)
{
	size_t n = 3 * BLOCK;
	uint8_t *d = calloc(1, n); /* compresses to almost nothing */
	struct stream s;
	uint8_t *out;
	size_t out_len;

	assert_non_null(d);
	s = make(d, n, true);
	assert_int_equal(kpayload_unpack(s.p, s.len, BLOCK, &out, &out_len), -E2BIG);
	assert_int_equal(kpayload_unpack(s.p, s.len, n, &out, &out_len), 0);
	free(out);
	free(s.p);
	free(d);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_not_lz4),
		cmocka_unit_test(test_corrupt),
		cmocka_unit_test(test_too_big),
	};

	return cmocka_run_group_tests_name("kpayload", tests, NULL, NULL);
}
