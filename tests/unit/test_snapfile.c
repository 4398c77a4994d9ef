/* The snapshot container (snapshot/snapfile.h): sections written are read
 * back field for field, and a corrupt file -- any byte flipped, any
 * truncation, a wrong version, lengths that run past the end, a section
 * twice -- is refused with a reason before any section is handed out. */
#include "unit.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "snapshot/snapfile.h"

/* A snapshot of three sections in a memfd; its bytes in *img. */
static int make_snapshot(uint8_t **img, size_t *len)
{
	struct snap_writer w;
	struct snap_buf b;
	int fd = memfd_create("snap", 0);

	assert_true(fd >= 0);
	assert_int_equal(snap_write_begin(&w, fd), 0);
	snap_buf_init(&b);
	snap_put_u64(&b, 0x1122334455667788ULL);
	snap_put_u32(&b, 0xdeadbeef);
	snap_put_u16(&b, 0x1234);
	snap_put_u8(&b, 0x56);
	snap_put_bytes(&b, "tarn", 4);
	assert_int_equal(snap_write_section(&w, SNAP_ID("VCPU"), 0, 1, &b), 0);
	assert_int_equal(snap_write_section(&w, SNAP_ID("VCPU"), 1, 1, &b), 0);
	snap_buf_free(&b);
	assert_int_equal(snap_write_section(&w, SNAP_ID("NONE"), 7, 3, &b), 0); /* empty */
	assert_int_equal(snap_write_end(&w), 0);
	*len = (size_t)lseek(fd, 0, SEEK_END);
	*img = malloc(*len);
	assert_int_equal(pread(fd, *img, *len, 0), (ssize_t)*len);
	return fd;
}

/* Read img[0..len) as a snapshot: the result, with the reason in err. */
static int read_image(const uint8_t *img, size_t len, char *err, size_t err_len)
{
	struct snap_reader r;
	int fd = memfd_create("bad", 0), ret;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, img, len), (ssize_t)len);
	err[0] = 0;
	ret = snap_read(&r, fd, err, err_len);
	if (!ret)
		snap_reader_free(&r);
	close(fd);
	return ret;
}

static void test_round_trip(void **state)
{
	struct snap_reader r;
	const struct snap_section *s;
	struct snap_cur c;
	char err[200], t[4];
	uint8_t *img;
	size_t len;
	int fd = make_snapshot(&img, &len);

	assert_int_equal(len % 8, 0);
	assert_int_equal(snap_read(&r, fd, err, sizeof(err)), 0);
	assert_int_equal(r.nr, 3);
	for (uint32_t i = 0; i < 2; i++) {
		s = snap_find(&r, SNAP_ID("VCPU"), i);
		assert_non_null(s);
		assert_int_equal(s->version, 1);
		snap_cur_init(&c, s->data, s->len);
		assert_true(snap_get_u64(&c) == 0x1122334455667788ULL);
		assert_int_equal(snap_get_u32(&c), 0xdeadbeef);
		assert_int_equal(snap_get_u16(&c), 0x1234);
		assert_int_equal(snap_get_u8(&c), 0x56);
		snap_get_bytes(&c, t, 4);
		assert_memory_equal(t, "tarn", 4);
		assert_true(snap_cur_done(&c));
		/* One more field than the section holds: zeros, and noticed. */
		assert_int_equal(snap_get_u32(&c), 0);
		assert_true(c.short_read);
		assert_false(snap_cur_done(&c));
	}
	s = snap_find(&r, SNAP_ID("NONE"), 7);
	assert_non_null(s);
	assert_int_equal(s->len, 0);
	assert_int_equal(s->version, 3);
	assert_null(snap_find(&r, SNAP_ID("VCPU"), 2));
	/* A field left unread is noticed too. */
	s = snap_find(&r, SNAP_ID("VCPU"), 0);
	snap_cur_init(&c, s->data, s->len);
	snap_get_u64(&c);
	assert_false(snap_cur_done(&c));
	snap_reader_free(&r);
	free(img);
	close(fd);
}

static void test_every_flip_refused(void **state)
{
	char err[200];
	uint8_t *img;
	size_t len;
	int fd = make_snapshot(&img, &len);

	close(fd);
	for (size_t i = 0; i < len; i++) {
		for (unsigned bit = 0; bit < 8; bit += 7) {
			img[i] ^= (uint8_t)(1u << bit);
			if (read_image(img, len, err, sizeof(err)) != -EINVAL || !err[0])
				fail_msg("byte %zu bit %u flipped: not refused (%s)", i, bit, err);
			img[i] ^= (uint8_t)(1u << bit);
		}
	}
	assert_int_equal(read_image(img, len, err, sizeof(err)), 0);
	free(img);
}

static void test_every_truncation_refused(void **state)
{
	char err[200];
	uint8_t *img;
	size_t len;
	int fd = make_snapshot(&img, &len);

	close(fd);
	for (size_t n = 0; n < len; n++)
		if (read_image(img, n, err, sizeof(err)) != -EINVAL || !err[0])
			fail_msg("cut to %zu of %zu bytes: not refused", n, len);
	assert_non_null(strstr(err, "truncated"));
	free(img);
}

/* Rewrite the header's CRC (or a section's) after a change, so that what
 * is checked is the meaning of the change. */
static void fix_header_crc(uint8_t *img)
{
	uint32_t crc = crc32c(0, img, 28);

	memcpy(img + 28, &crc, 4);
}

static void test_valid_checksums_invalid_contents(void **state)
{
	char err[200];
	uint8_t *img, *big;
	size_t len;
	uint64_t dlen;
	uint32_t crc, v = 2;
	int fd = make_snapshot(&img, &len);

	close(fd);
	memcpy(img + 8, &v, 4);
	fix_header_crc(img);
	assert_int_equal(read_image(img, len, err, sizeof(err)), -EINVAL);
	assert_string_equal(err, "format version 2; this tarn reads version 1");
	v = 1;
	memcpy(img + 8, &v, 4);

	/* The first section's length grown past the end, its CRC made right. */
	memcpy(&dlen, img + 32 + 16, 8);
	dlen += 4096;
	memcpy(img + 32 + 16, &dlen, 8);
	fix_header_crc(img);
	assert_int_equal(read_image(img, len, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "runs past the end"));
	dlen -= 4096;
	memcpy(img + 32 + 16, &dlen, 8);

	/* The second section renamed as the first: the same section twice. */
	{
		size_t second = 32 + 24 + 24 + 8; /* 19 bytes of data padded to 24, CRC word */

		assert_int_equal(dlen, 19);
		memcpy(img + second + 4, &(uint32_t){ 0 }, 4);
		crc = crc32c(0, img + second, 24 + dlen);
		memcpy(img + second + 24 + 24, &crc, 4);
		assert_int_equal(read_image(img, len, err, sizeof(err)), -EINVAL);
		assert_string_equal(err, "section VCPU 0 comes twice");
	}

	/* Bytes after the last section, the header's length to match. */
	big = calloc(1, len + 8);
	memcpy(big, img, len);
	memcpy(&dlen, big + 16, 8);
	dlen += 8;
	memcpy(big + 16, &dlen, 8);
	fix_header_crc(big);
	assert_int_equal(read_image(big, len + 8, err, sizeof(err)), -EINVAL);
	free(big);

	/* Not a snapshot at all. */
	assert_int_equal(read_image((const uint8_t *)"hello, world", 12, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "not a tarn snapshot"));
	free(img);
}

static void test_crc32c_known_value(void **state)
{
	/* RFC 3720, B.4: 32 bytes of zeros. And the classic check value. */
	uint8_t zeros[32] = { 0 };

	assert_int_equal(crc32c(0, zeros, sizeof(zeros)), 0x8a9136aa);
	assert_int_equal(crc32c(0, "123456789", 9), 0xe3069283);
	/* In pieces as in one. */
	assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xe3069283);
}

/* Bit by bit, the polynomial's definition: the reference the fast paths
 * (SSE4.2's crc32, 8 bytes at a time, and the table) are held to, at
 * every length and alignment around the 8-byte steps. */
static uint32_t crc32c_bitwise(uint32_t crc, const uint8_t *p, size_t len)
{
	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = crc & 1 ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
	}
	return ~crc;
}

static void test_crc32c_every_length(void **state)
{
	uint8_t buf[80];
	uint32_t x = 12345;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)((x = x * 1103515245 + 12345) >> 16);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; off + len <= sizeof(buf); len++)
			assert_int_equal(crc32c(7, buf + off, len), crc32c_bitwise(7, buf + off, len));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_every_flip_refused),
		cmocka_unit_test(test_every_truncation_refused),
		cmocka_unit_test(test_valid_checksums_invalid_contents),
		cmocka_unit_test(test_crc32c_known_value),
		cmocka_unit_test(test_crc32c_every_length),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
