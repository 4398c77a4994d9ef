/* qcow2 images (src/block/qcow2.c), checked against QEMU's own tool: every
 * image tarn writes must pass `qemu-img check` with nothing to say (no
 * leaked cluster, no refcount error) and hold, byte for byte, what a plain
 * file written the same way holds (`qemu-img compare`); images qemu-img
 * makes (with a backing file, compressed) read right and take writes. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"

#define SIZE (64ULL << 20)
#define CS 65536

struct fix {
	char dir[64];
	char path[128], ref[128];
	uint8_t *mirror; /* what the image must hold */
	char err[512];
};

static int have_qemu_img(void)
{
	return system("qemu-img --version >/dev/null 2>&1") == 0;
}

static int setup(void **state)
{
	struct fix *f = calloc(1, sizeof(*f));

	snprintf(f->dir, sizeof(f->dir), "/tmp/tarn-qcow2-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/img.qcow2", f->dir);
	snprintf(f->ref, sizeof(f->ref), "%s/ref.raw", f->dir);
	f->mirror = calloc(1, SIZE);
	assert_non_null(f->mirror);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->dir);
	assert_int_equal(system(cmd), 0);
	free(f->mirror);
	free(f);
	return 0;
}

static uint64_t rng = 88172645463325252ULL;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static struct qcow2 *open_img(struct fix *f, const char *path, bool ro, int *fd)
{
	struct qcow2 *q;

	*fd = open(path, ro ? O_RDONLY : O_RDWR);
	assert_true(*fd >= 0);
	if (qcow2_open(&q, *fd, path, ro, f->err, sizeof(f->err)))
		fail_msg("qcow2_open %s: %s", path, f->err);
	return q;
}

/* A new empty image at f->path, open for writing (skipped without
 * qemu-img, which checks every image the tests write). */
static struct qcow2 *new_image(struct fix *f, int *fd)
{
	if (!have_qemu_img())
		SKIP_BECAUSE("qemu-img missing (qemu-utils)");
	assert_int_equal(qcow2_create(f->path, SIZE, NULL, f->err, sizeof(f->err)), 0);
	return open_img(f, f->path, false, fd);
}

static void close_img(struct qcow2 *q, int fd)
{
	assert_int_equal(qcow2_flush(q), 0);
	qcow2_close(q);
	close(fd);
}

/* Write len bytes of a pattern at off, through two iovecs split at a
 * random point, into the image and the mirror. */
static void write_some(struct qcow2 *q, struct fix *f, uint64_t off, uint64_t len)
{
	uint8_t *buf = malloc(len);
	size_t cut = len > 1 ? rnd() % len : 0;
	struct iovec v[2] = { { buf, cut }, { buf + cut, len - cut } };

	for (uint64_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(rnd() | 1);
	assert_int_equal(qcow2_pwritev(q, v, 2, off), 0);
	memcpy(f->mirror + off, buf, len);
	free(buf);
}

static void check_all(struct qcow2 *q, struct fix *f)
{
	uint8_t *buf = malloc(SIZE);
	struct iovec v = { buf, SIZE };

	assert_int_equal(qcow2_preadv(q, &v, 1, 0), 0);
	if (memcmp(buf, f->mirror, SIZE)) {
		uint64_t i = 0;

		while (buf[i] == f->mirror[i])
			i++;
		fail_msg("byte %#llx reads %#x, %#x was written", (unsigned long long)i, buf[i], f->mirror[i]);
	}
	free(buf);
}

/* qemu-img check finds nothing; compare with the mirror as a raw file. */
static void qemu_agrees(struct fix *f, const char *img)
{
	char cmd[512];
	int fd = open(f->ref, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, f->mirror, SIZE), (ssize_t)SIZE);
	close(fd);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s >%s/check.out 2>&1", img, f->dir);
	if (system(cmd)) {
		snprintf(cmd, sizeof(cmd), "cat %s/check.out >&2", f->dir);
		(void)system(cmd);
		fail_msg("qemu-img check %s: not clean", img);
	}
	snprintf(cmd, sizeof(cmd), "qemu-img compare -q %s %s", img, f->ref);
	if (system(cmd))
		fail_msg("qemu-img compare: %s does not hold what was written", img);
}

static void test_create_write_read(void **state)
{
	struct fix *f = *state;
	struct qcow2 *q;
	int fd;

	q = new_image(f, &fd);
	assert_int_equal(qcow2_size(q), SIZE);
	check_all(q, f); /* all zeros */
	for (int i = 0; i < 300; i++) {
		uint64_t len = 1 + rnd() % (3 * CS), off = rnd() % (SIZE - len);

		if (i % 3 == 0) /* sector-aligned, as a guest writes */
			off &= ~511ULL, len = (len + 511) & ~511ULL;
		write_some(q, f, off, len);
	}
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, f->path);
	q = open_img(f, f->path, true, &fd);
	check_all(q, f); /* as reopened */
	close_img(q, fd);
}

/* Growing: what was written stays, the new end reads as zeros and takes
 * writes, qemu-img agrees; shrinking, or past what the L1 table's cluster
 * covers, is refused. */
static void test_grow(void **state)
{
	struct fix *f = *state;
	uint8_t end[4096], back[4096];
	struct iovec v = { back, sizeof(back) };
	struct qcow2 *q;
	char cmd[512];
	int fd;

	q = new_image(f, &fd);
	write_some(q, f, 0, 3 * CS);
	close_img(q, fd);
	fd = open(f->path, O_RDWR);
	assert_int_equal(qcow2_grow(fd, SIZE / 2, f->err, sizeof(f->err)), -EINVAL);
	assert_int_equal(qcow2_grow(fd, 5ULL << 40, f->err, sizeof(f->err)), -EFBIG);
	assert_int_equal(qcow2_grow(fd, 3ULL << 30, f->err, sizeof(f->err)), 0);
	close(fd);
	q = open_img(f, f->path, false, &fd);
	assert_int_equal(qcow2_size(q), 3ULL << 30);
	check_all(q, f); /* the old part, as written */
	assert_int_equal(qcow2_preadv(q, &v, 1, (3ULL << 30) - sizeof(back)), 0);
	memset(end, 0, sizeof(end));
	assert_memory_equal(back, end, sizeof(back));
	memset(end, 0x5a, sizeof(end));
	assert_int_equal(qcow2_pwritev(q, &(struct iovec){ end, sizeof(end) }, 1, (3ULL << 30) - sizeof(end)), 0);
	assert_int_equal(qcow2_preadv(q, &v, 1, (3ULL << 30) - sizeof(back)), 0);
	assert_memory_equal(back, end, sizeof(back));
	close_img(q, fd);
	snprintf(cmd, sizeof(cmd), "qemu-img check -q %s", f->path);
	assert_int_equal(system(cmd), 0);
}

static void test_zeroes(void **state)
{
	struct fix *f = *state;
	struct qcow2 *q;
	int fd;

	q = new_image(f, &fd);
	write_some(q, f, 0, 8 * CS);
	/* whole clusters, a part of one, and clusters never written */
	assert_int_equal(qcow2_write_zeroes(q, 2 * CS, 3 * CS + 1000), 0);
	memset(f->mirror + 2 * CS, 0, 3 * CS + 1000);
	assert_int_equal(qcow2_write_zeroes(q, 20 * CS, 4 * CS), 0);
	write_some(q, f, 3 * CS + 100, 200); /* into a zero cluster again */
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, f->path);
}

/* A raw base, an overlay on it made here and one made by qemu-img: reads
 * fall through to the base, writes stay in the overlay. */
static void test_backing(void **state)
{
	struct fix *f = *state;
	char base[160], qov[160], cmd[512];
	struct qcow2 *q;
	int fd, bfd;

	if (!have_qemu_img())
		SKIP_BECAUSE("qemu-img missing (qemu-utils)");
	snprintf(base, sizeof(base), "%s/base.raw", f->dir);
	for (uint64_t i = 0; i < SIZE; i += 4096)
		memset(f->mirror + i, (int)(i / 4096 % 251) + 1, 4096);
	bfd = open(base, O_WRONLY | O_CREAT, 0644);
	assert_int_equal(write(bfd, f->mirror, SIZE), (ssize_t)SIZE);
	close(bfd);
	assert_int_equal(qcow2_create(f->path, 0, "base.raw", f->err, sizeof(f->err)), 0);
	q = open_img(f, f->path, false, &fd);
	assert_int_equal(qcow2_size(q), SIZE);
	check_all(q, f);
	for (int i = 0; i < 100; i++) {
		uint64_t len = 1 + rnd() % (2 * CS), off = rnd() % (SIZE - len);

		write_some(q, f, off, len);
	}
	assert_int_equal(qcow2_write_zeroes(q, 40 * CS, 2 * CS), 0); /* zero over the base */
	memset(f->mirror + 40 * CS, 0, 2 * CS);
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, f->path);

	/* qemu-img's overlay on tarn's: a chain of two. */
	snprintf(qov, sizeof(qov), "%s/qemu.qcow2", f->dir);
	snprintf(cmd, sizeof(cmd), "qemu-img create -q -f qcow2 -b img.qcow2 -F qcow2 %s", qov);
	assert_int_equal(system(cmd), 0);
	q = open_img(f, qov, false, &fd);
	check_all(q, f);
	write_some(q, f, CS / 2, 3 * CS);
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, qov);
}

/* An image qemu-img compressed: read, then written over. */
static void test_compressed(void **state)
{
	struct fix *f = *state;
	char src[160], cmd[512];
	struct qcow2 *q;
	int fd;

	if (!have_qemu_img())
		SKIP_BECAUSE("qemu-img missing (qemu-utils)");
	snprintf(src, sizeof(src), "%s/src.raw", f->dir);
	for (uint64_t i = 0; i < SIZE / 2; i += 512)
		memset(f->mirror + i, (int)(i / 512 % 7), 512); /* compresses well */
	fd = open(src, O_WRONLY | O_CREAT, 0644);
	assert_int_equal(write(fd, f->mirror, SIZE), (ssize_t)SIZE);
	close(fd);
	snprintf(cmd, sizeof(cmd), "qemu-img convert -q -c -O qcow2 %s %s", src, f->path);
	assert_int_equal(system(cmd), 0);
	q = open_img(f, f->path, false, &fd);
	check_all(q, f);
	for (int i = 0; i < 60; i++) {
		uint64_t len = 1 + rnd() % CS, off = rnd() % (SIZE / 2 - len);

		write_some(q, f, off, len);
	}
	assert_int_equal(qcow2_write_zeroes(q, 8 * CS, CS), 0);
	memset(f->mirror + 8 * CS, 0, CS);
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, f->path);
}

struct writer {
	struct qcow2 *q;
	uint64_t off;
	uint8_t *data;
};

static void *writer(void *arg)
{
	struct writer *w = arg;

	/* 4 KiB pieces into clusters other writers fill too */
	for (uint64_t o = 0; o < 16 * CS; o += 16384) {
		struct iovec v = { w->data + o, 4096 };

		if (qcow2_pwritev(w->q, &v, 1, w->off + o))
			return (void *)1;
	}
	return NULL;
}

static void test_concurrent_writers(void **state)
{
	struct fix *f = *state;
	struct writer w[4];
	pthread_t t[4];
	struct qcow2 *q;
	int fd;

	q = new_image(f, &fd);
	for (uint64_t i = 0; i < 16 * CS + 4 * 4096; i++)
		f->mirror[i] = (uint8_t)(rnd() | 1);
	for (int i = 0; i < 4; i++) {
		w[i] = (struct writer){ q, 4096ULL * i, f->mirror + 4096ULL * i };
		assert_int_equal(pthread_create(&t[i], NULL, writer, &w[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		void *ret;

		pthread_join(t[i], &ret);
		assert_null(ret);
	}
	memset(f->mirror + 16 * CS, 0, 4 * 4096); /* past the last piece: never written */
	check_all(q, f);
	close_img(q, fd);
	qemu_agrees(f, f->path);
}

static void test_refused(void **state)
{
	struct fix *f = *state;
	struct qcow2 *q;
	uint8_t b[8];
	int fd;

	assert_int_equal(qcow2_create(f->path, SIZE, NULL, f->err, sizeof(f->err)), 0);
	assert_int_not_equal(qcow2_create(f->path, SIZE, NULL, f->err, sizeof(f->err)), 0); /* exists */
	assert_int_not_equal(qcow2_create(f->path, 1000, NULL, f->err, sizeof(f->err)), 0);
	fd = open(f->path, O_RDWR);
	/* The dirty bit (incompatible feature 0). */
	memcpy(b, "\0\0\0\0\0\0\0\1", 8);
	assert_int_equal(pwrite(fd, b, 8, 72), 8);
	assert_int_equal(qcow2_open(&q, fd, f->path, false, f->err, sizeof(f->err)), -EINVAL);
	assert_non_null(strstr(f->err, "qemu-img check -r"));
	/* Encryption. */
	memset(b, 0, 8);
	assert_int_equal(pwrite(fd, b, 8, 72), 8);
	b[3] = 1;
	assert_int_equal(pwrite(fd, b, 4, 32), 4);
	assert_int_equal(qcow2_open(&q, fd, f->path, false, f->err, sizeof(f->err)), -ENOTSUP);
	assert_non_null(strstr(f->err, "encrypted"));
	/* Not qcow2 at all. */
	assert_int_equal(pwrite(fd, "XXXX", 4, 0), 4);
	assert_false(qcow2_probe(fd));
	assert_int_equal(qcow2_open(&q, fd, f->path, false, f->err, sizeof(f->err)), -EINVAL);
	close(fd);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_write_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_grow, setup, teardown),
		cmocka_unit_test_setup_teardown(test_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_refused, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
