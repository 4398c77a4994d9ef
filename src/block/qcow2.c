/* qcow2 images: see qcow2.h. Every number on disk is big-endian. */
#include "block/qcow2.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/log.h"
#include "virtio/iov.h"

#define HDR_V2_LEN 72
#define HDR_V3_LEN 104
#define EXT_END 0
#define EXT_BACKING_FORMAT 0xe2792acau
#define INCOMPAT_DIRTY (1ULL << 0)
#define INCOMPAT_CORRUPT (1ULL << 1)
#define OFFSET_MASK 0x00fffffffffffe00ULL
#define COPIED (1ULL << 63)
#define COMPRESSED (1ULL << 62)
#define ZERO_FLAG 1ULL
#define L2_CACHE 16
#define MAX_CHAIN 16 /* backing files deep */

struct l2_slot {
	uint64_t off; /* 0: empty */
	uint64_t *t;  /* the table as on disk (big-endian) */
	unsigned used;
};

struct qcow2 {
	int fd;
	bool ro;
	pthread_mutex_t lock;
	uint32_t version, cbits;
	uint64_t cs, size;
	uint64_t l2_entries; /* per table */
	uint64_t l1_off;
	uint32_t l1_size;
	uint64_t *l1; /* host order */
	uint64_t rt_off, rt_n;
	uint64_t *rt; /* host order */
	uint64_t end;  /* where the next cluster goes */
	struct l2_slot cache[L2_CACHE];
	unsigned tick;
	/* The backing file: raw (bfd) or qcow2 (bq); bsize bytes of it show. */
	int bfd;
	struct qcow2 *bq;
	uint64_t bsize;
};

enum kind { UNALLOC, ZERO, DATA, COMP };

/* ---- plain I/O ---- */

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pread(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0) { /* past the end of the file: zeros */
			memset(buf, 0, len);
			return 0;
		}
		buf = (uint8_t *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t r = pwrite(fd, buf, len, (off_t)off);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r ? -errno : -EIO;
		buf = (const uint8_t *)buf + r;
		len -= (size_t)r;
		off += (uint64_t)r;
	}
	return 0;
}

static int write_be64(int fd, uint64_t v, uint64_t off)
{
	v = htobe64(v);
	return pwrite_all(fd, &v, 8, off);
}

static void iov_zero(const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		memset(iov[i].iov_base, 0, iov[i].iov_len);
}

/* Each iovec in turn at off (write: from them, else into them). */
static int io_iov(int fd, const struct iovec *iov, int n, uint64_t off, bool write)
{
	for (int i = 0; i < n; i++) {
		int r = write ? pwrite_all(fd, iov[i].iov_base, iov[i].iov_len, off)
			      : pread_all(fd, iov[i].iov_base, iov[i].iov_len, off);

		if (r)
			return r;
		off += iov[i].iov_len;
	}
	return 0;
}

/* ---- L2 tables (lock held) ---- */

static uint64_t *l2_get(struct qcow2 *q, uint64_t off, int *err)
{
	struct l2_slot *victim = &q->cache[0];

	for (int i = 0; i < L2_CACHE; i++) {
		if (q->cache[i].off == off) {
			q->cache[i].used = ++q->tick;
			return q->cache[i].t;
		}
		if (q->cache[i].used < victim->used)
			victim = &q->cache[i];
	}
	if (!victim->t && !(victim->t = malloc(q->cs))) {
		*err = -ENOMEM;
		return NULL;
	}
	victim->off = 0;
	if ((*err = pread_all(q->fd, victim->t, q->cs, off)))
		return NULL;
	victim->off = off;
	victim->used = ++q->tick;
	return victim->t;
}

/* The L2 entry of guest cluster vc (0 where no L2 table). */
static int lookup(struct qcow2 *q, uint64_t vc, uint64_t *entry)
{
	uint64_t l1i = vc / q->l2_entries, l2off, *t;
	int err = 0;

	*entry = 0;
	if (l1i >= q->l1_size)
		return -EIO;
	l2off = q->l1[l1i] & OFFSET_MASK;
	if (!l2off)
		return 0;
	if (!(t = l2_get(q, l2off, &err)))
		return err;
	*entry = be64toh(t[vc % q->l2_entries]);
	return 0;
}

static enum kind kind_of(const struct qcow2 *q, uint64_t e)
{
	if (e & COMPRESSED)
		return COMP;
	if (q->version >= 3 && (e & ZERO_FLAG))
		return ZERO;
	return e & OFFSET_MASK ? DATA : UNALLOC;
}

/* ---- refcounts and allocation (lock held) ---- */

static int refcount_addr(struct qcow2 *q, uint64_t off, uint64_t *addr, bool create);

static int set_refcount(struct qcow2 *q, uint64_t off, uint16_t v)
{
	uint64_t a;
	int r = refcount_addr(q, off, &a, true);

	v = htobe16(v);
	return r ? r : pwrite_all(q->fd, &v, 2, a);
}

static int get_refcount(struct qcow2 *q, uint64_t off, uint16_t *v)
{
	uint64_t a;
	int r = refcount_addr(q, off, &a, false);

	*v = 0;
	if (r || !a)
		return r;
	r = pread_all(q->fd, v, 2, a);
	*v = be16toh(*v);
	return r;
}

static int zero_cluster(struct qcow2 *q, uint64_t off)
{
	void *z = calloc(1, q->cs);
	int r = z ? pwrite_all(q->fd, z, q->cs, off) : -ENOMEM;

	free(z);
	return r;
}

/* Where the refcount of host offset off lives (0: no block, without
 * create); with create a missing refcount block is made, at the end. */
static int refcount_addr(struct qcow2 *q, uint64_t off, uint64_t *addr, bool create)
{
	uint64_t ci = off >> q->cbits, per = q->cs / 2, ti = ci / per, rb;
	int r;

	*addr = 0;
	if (ti >= q->rt_n)
		return create ? -ENOSPC : 0;
	if (!q->rt[ti]) {
		if (!create)
			return 0;
		rb = q->end;
		q->end += q->cs;
		if ((r = zero_cluster(q, rb)) || (r = write_be64(q->fd, rb, q->rt_off + 8 * ti)))
			return r;
		q->rt[ti] = rb;
		if ((r = set_refcount(q, rb, 1)))
			return r;
	}
	*addr = q->rt[ti] + 2 * (ci % per);
	return 0;
}

/* A new cluster at the end of the file, its refcount 1. */
static int alloc_cluster(struct qcow2 *q, uint64_t *off)
{
	*off = q->end;
	q->end += q->cs;
	return set_refcount(q, *off, 1);
}

/* Drop one reference from each host cluster of [off, off + len). */
static int unref(struct qcow2 *q, uint64_t off, uint64_t len)
{
	for (uint64_t c = off & ~(q->cs - 1); c < off + len; c += q->cs) {
		uint16_t v;
		int r = get_refcount(q, c, &v);

		if (!r && v)
			r = set_refcount(q, c, (uint16_t)(v - 1));
		if (r)
			return r;
	}
	return 0;
}

/* Where a compressed cluster's data lies in the file: L2 entry bits
 * 0..x-1 the offset, then the number of 512-byte sectors it touches, less
 * one (x = 62 - (cluster bits - 8)). */
static void compressed_span(const struct qcow2 *q, uint64_t e, uint64_t *off, uint64_t *len)
{
	unsigned x = 62 - (q->cbits - 8);

	*off = e & ((1ULL << x) - 1);
	*len = (((e >> x) & ((1ULL << (q->cbits - 8)) - 1)) + 1) * 512 - (*off & 511);
}

/* A compressed cluster overwritten: its bytes' host clusters lose a
 * reference each (several compressed clusters may share one). */
static int unref_compressed(struct qcow2 *q, uint64_t e)
{
	uint64_t off, len;

	compressed_span(q, e, &off, &len);
	return unref(q, off, len);
}

/* Set guest cluster vc's L2 entry, making its L2 table if there is none. */
static int set_entry(struct qcow2 *q, uint64_t vc, uint64_t e)
{
	uint64_t l1i = vc / q->l2_entries, l2off = q->l1[l1i] & OFFSET_MASK, *t;
	int r = 0;

	if (!l2off) {
		if ((r = alloc_cluster(q, &l2off)) || (r = zero_cluster(q, l2off)) ||
		    (r = write_be64(q->fd, l2off | COPIED, q->l1_off + 8 * l1i)))
			return r;
		q->l1[l1i] = l2off | COPIED;
	}
	if (!(t = l2_get(q, l2off, &r)))
		return r;
	t[vc % q->l2_entries] = htobe64(e);
	return write_be64(q->fd, e, l2off + 8 * (vc % q->l2_entries));
}

/* ---- reading ---- */

static int read_backing(struct qcow2 *q, const struct iovec *iov, int n, uint64_t off, uint64_t len)
{
	struct iovec s[n];
	uint64_t have = off < q->bsize ? q->bsize - off : 0;
	int k, r = 0;

	if (have > len)
		have = len;
	if (have) {
		k = (int)iov_slice(iov, (unsigned)n, 0, have, s);
		r = q->bq ? qcow2_preadv(q->bq, s, k, off) : io_iov(q->bfd, s, k, off, false);
	}
	if (!r && have < len) {
		k = (int)iov_slice(iov, (unsigned)n, have, len - have, s);
		iov_zero(s, k);
	}
	return r;
}

/* A compressed cluster's data, inflated into buf (cs bytes). */
static int read_compressed(struct qcow2 *q, uint64_t e, uint8_t *buf)
{
	uint64_t off, csize;
	uint8_t *in;
	z_stream z = { 0 };
	int r;

	compressed_span(q, e, &off, &csize);
	if (!(in = malloc(csize)))
		return -ENOMEM;
	r = pread_all(q->fd, in, csize, off);
	if (!r && inflateInit2(&z, -12) != Z_OK)
		r = -ENOMEM;
	if (!r) {
		z.next_in = in;
		z.avail_in = (uInt)csize;
		z.next_out = buf;
		z.avail_out = (uInt)q->cs;
		int zr = inflate(&z, Z_FINISH);

		if ((zr != Z_STREAM_END && zr != Z_BUF_ERROR) || z.avail_out)
			r = -EIO;
		inflateEnd(&z);
	}
	free(in);
	return r;
}

/* Guest bytes [off, off + len) of cluster vc, whose entry is e, into iov. */
static int read_piece(struct qcow2 *q, uint64_t e, const struct iovec *iov, int n, uint64_t off, uint64_t len)
{
	uint8_t *buf;
	int r;

	switch (kind_of(q, e)) {
	case UNALLOC:
		return read_backing(q, iov, n, off, len);
	case ZERO:
		iov_zero(iov, n);
		return 0;
	case DATA:
		return io_iov(q->fd, iov, n, (e & OFFSET_MASK) + (off & (q->cs - 1)), false);
	case COMP:
		if (!(buf = malloc(q->cs)))
			return -ENOMEM;
		r = read_compressed(q, e, buf);
		if (!r)
			iov_copy(iov, (unsigned)n, 0, buf + (off & (q->cs - 1)), (size_t)len, true);
		free(buf);
		return r;
	}
	return -EIO;
}

int qcow2_preadv(struct qcow2 *q, const struct iovec *iov, int n, uint64_t off)
{
	uint64_t len = 0, done = 0;
	struct iovec s[n > 0 ? n : 1];

	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (off > q->size || len > q->size - off)
		return -EIO;
	while (done < len) {
		uint64_t pos = off + done, vc = pos >> q->cbits;
		uint64_t l = q->cs - (pos & (q->cs - 1)), e;
		int r, k;

		if (l > len - done)
			l = len - done;
		pthread_mutex_lock(&q->lock);
		r = lookup(q, vc, &e);
		pthread_mutex_unlock(&q->lock);
		k = (int)iov_slice(iov, (unsigned)n, done, l, s);
		if (!r)
			r = read_piece(q, e, s, k, pos, l);
		if (r)
			return r;
		done += l;
	}
	return 0;
}

/* ---- writing ---- */

/* Give guest cluster vc a cluster of its own with data (cs bytes) in it:
 * a new one, or the zero cluster's preallocated one (lock held). */
static int cow(struct qcow2 *q, uint64_t vc, uint64_t e, const uint8_t *data)
{
	enum kind k = kind_of(q, e);
	uint64_t host = k == ZERO && (e & OFFSET_MASK) && (e & COPIED) ? e & OFFSET_MASK : 0;
	int r = 0;

	if (!host)
		r = alloc_cluster(q, &host);
	if (!r)
		r = pwrite_all(q->fd, data, q->cs, host);
	if (!r)
		r = set_entry(q, vc, host | COPIED);
	if (!r && k == COMP)
		r = unref_compressed(q, e);
	return r;
}

int qcow2_pwritev(struct qcow2 *q, const struct iovec *iov, int n, uint64_t off)
{
	uint64_t len = 0, done = 0;
	struct iovec s[n > 0 ? n : 1];

	if (q->ro)
		return -EROFS;
	for (int i = 0; i < n; i++)
		len += iov[i].iov_len;
	if (off > q->size || len > q->size - off)
		return -EIO;
	while (done < len) {
		uint64_t pos = off + done, vc = pos >> q->cbits, in = pos & (q->cs - 1);
		uint64_t l = q->cs - in, e;
		uint8_t *buf;
		int r, k;

		if (l > len - done)
			l = len - done;
		k = (int)iov_slice(iov, (unsigned)n, done, l, s);
		pthread_mutex_lock(&q->lock);
		r = lookup(q, vc, &e);
		if (!r && kind_of(q, e) == DATA && (e & COPIED)) {
			pthread_mutex_unlock(&q->lock); /* its own cluster: in place */
			r = io_iov(q->fd, s, k, (e & OFFSET_MASK) + in, true);
		} else {
			/* Copy on write: the old contents around the new bytes. */
			struct iovec whole;

			buf = r ? NULL : malloc(q->cs);
			whole = (struct iovec){ buf, q->cs };
			if (!r && !buf)
				r = -ENOMEM;
			if (!r && l < q->cs)
				r = read_piece(q, e, &whole, 1, pos - in, q->cs);
			if (!r) {
				iov_copy(s, (unsigned)k, 0, buf + in, (size_t)l, false);
				r = cow(q, vc, e, buf);
			}
			pthread_mutex_unlock(&q->lock);
			free(buf);
		}
		if (r)
			return r;
		done += l;
	}
	return 0;
}

int qcow2_write_zeroes(struct qcow2 *q, uint64_t off, uint64_t len)
{
	static const uint8_t zeros[4096];

	if (q->ro)
		return -EROFS;
	if (off > q->size || len > q->size - off)
		return -EIO;
	while (len) {
		uint64_t in = off & (q->cs - 1), l = q->cs - in, e;
		int r = 0;

		if (l > len)
			l = len;
		if (l < q->cs || q->version < 3) {
			/* Part of a cluster (or no zero flag in v2): write zeros. */
			for (uint64_t d = 0; d < l && !r; d += sizeof(zeros)) {
				struct iovec v = { (void *)zeros, l - d < sizeof(zeros) ? l - d : sizeof(zeros) };

				r = qcow2_pwritev(q, &v, 1, off + d);
			}
		} else {
			pthread_mutex_lock(&q->lock);
			r = lookup(q, off >> q->cbits, &e);
			if (!r) {
				enum kind k = kind_of(q, e);
				uint64_t host = (k == DATA || k == ZERO) && (e & COPIED) ? e & OFFSET_MASK : 0;

				/* The host cluster stays allocated (a preallocated
				 * zero cluster); its space goes back to the file
				 * system. */
				if (host)
					(void)fallocate(q->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)host,
							(off_t)q->cs);
				uint64_t want = host ? host | COPIED | ZERO_FLAG : ZERO_FLAG;

				/* Unallocated without a backing file reads as zeros. */
				if (e != want && !(k == UNALLOC && q->bfd < 0))
					r = set_entry(q, off >> q->cbits, want);
				if (!r && k == COMP)
					r = unref_compressed(q, e);
			}
			pthread_mutex_unlock(&q->lock);
		}
		if (r)
			return r;
		off += l;
		len -= l;
	}
	return 0;
}

int qcow2_flush(struct qcow2 *q)
{
	while (fdatasync(q->fd) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

uint64_t qcow2_size(const struct qcow2 *q)
{
	return q->size;
}

/* ---- opening ---- */

bool qcow2_probe(int fd)
{
	uint32_t m;

	return pread(fd, &m, 4, 0) == 4 && be32toh(m) == QCOW2_MAGIC;
}

static void put_be16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put_be32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put_be64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static uint32_t be32_at(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return be32toh(v);
}

static uint64_t be64_at(const uint8_t *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return be64toh(v);
}

static int open_image(struct qcow2 **out, int fd, const char *path, bool ro, int depth, char *err, size_t len);

static int open_backing(struct qcow2 *q, const char *path, const char *name, const char *fmt, int depth, char *err,
			size_t len)
{
	char full[PATH_MAX], dir[PATH_MAX];
	struct stat st;
	int r;

	snprintf(dir, sizeof(dir), "%s", path);
	if (name[0] == '/')
		snprintf(full, sizeof(full), "%s", name);
	else if ((size_t)snprintf(full, sizeof(full), "%s/%s", dirname(dir), name) >= sizeof(full))
		return errorf(err, len, -ENAMETOOLONG, "backing file %s: name too long", name);
	if (depth >= MAX_CHAIN)
		return errorf(err, len, -ELOOP, "backing file %s: more than %d images deep", full, MAX_CHAIN);
	q->bfd = open(full, O_RDONLY | O_CLOEXEC);
	if (q->bfd < 0 || fstat(q->bfd, &st))
		return errorf(err, len, -errno, "backing file %s: %s", full, strerror(errno));
	/* Frozen while images stand on it: shared with other readers, never
	 * with a writer (tarn's disks take an exclusive lock to write). */
	if (flock(q->bfd, LOCK_SH | LOCK_NB))
		return errorf(err, len, errno == EWOULDBLOCK ? -EBUSY : -errno, "backing file %s: %s", full,
			      errno == EWOULDBLOCK ? "in use for writing by another process" : strerror(errno));
	if (fmt && strcmp(fmt, "raw") && strcmp(fmt, "qcow2"))
		return errorf(err, len, -ENOTSUP, "backing file %s: format %s (raw and qcow2 are read)", full, fmt);
	if ((fmt && !strcmp(fmt, "qcow2")) || (!fmt && qcow2_probe(q->bfd))) {
		char why[400];
		int saved = q->bfd;

		r = open_image(&q->bq, q->bfd, full, true, depth + 1, why, sizeof(why));
		if (r)
			return errorf(err, len, r, "backing file: %s", why);
		q->bfd = saved;
		q->bsize = q->bq->size;
	} else {
		q->bsize = (uint64_t)st.st_size;
	}
	return 0;
}

int qcow2_open(struct qcow2 **out, int fd, const char *path, bool ro, char *err, size_t len)
{
	return open_image(out, fd, path, ro, 0, err, len);
}

static int open_image(struct qcow2 **out, int fd, const char *path, bool ro, int depth, char *err, size_t len)
{
	uint8_t h[4096];
	struct qcow2 *q;
	struct stat st;
	uint64_t incompat = 0, autoclear = 0, hlen, bf_off, need;
	uint32_t bf_len, nb_snap, refcount_order = 4;
	char backing[1024] = "", fmt[32] = "";
	int r;

	*out = NULL;
	if (fstat(fd, &st) || pread_all(fd, h, sizeof(h), 0))
		return errorf(err, len, -errno, "%s: %s", path, strerror(errno));
	if (be32_at(h) != QCOW2_MAGIC)
		return errorf(err, len, -EINVAL, "%s: not a qcow2 image", path);
	q = calloc(1, sizeof(*q));
	if (!q)
		return errorf(err, len, -ENOMEM, "out of memory");
	pthread_mutex_init(&q->lock, NULL);
	q->fd = fd;
	q->ro = ro;
	q->bfd = -1;
	q->version = be32_at(h + 4);
	bf_off = be64_at(h + 8);
	bf_len = be32_at(h + 16);
	q->cbits = be32_at(h + 20);
	q->size = be64_at(h + 24);
	q->l1_size = be32_at(h + 36);
	q->l1_off = be64_at(h + 40);
	q->rt_off = be64_at(h + 48);
	q->rt_n = (uint64_t)be32_at(h + 56);
	nb_snap = be32_at(h + 60);
	hlen = HDR_V2_LEN;
	r = -EINVAL;
	if (q->version != 2 && q->version != 3) {
		errorf(err, len, -ENOTSUP, "%s: qcow2 version %u (2 and 3 are read)", path, q->version);
		r = -ENOTSUP;
		goto fail;
	}
	if (q->version == 3) {
		incompat = be64_at(h + 72);
		autoclear = be64_at(h + 88);
		refcount_order = be32_at(h + 96);
		hlen = be32_at(h + 100);
	}
	if (q->cbits < 9 || q->cbits > 21 || hlen < (q->version == 3 ? HDR_V3_LEN : HDR_V2_LEN) || hlen > 1024) {
		errorf(err, len, r, "%s: cluster bits %u or header length %llu out of range", path, q->cbits,
		       (unsigned long long)hlen);
		goto fail;
	}
	q->cs = 1ULL << q->cbits;
	q->l2_entries = q->cs / 8;
	if (be32_at(h + 32)) {
		errorf(err, len, r = -ENOTSUP, "%s: encrypted images are not supported", path);
		goto fail;
	}
	if (incompat & (INCOMPAT_DIRTY | INCOMPAT_CORRUPT)) {
		errorf(err, len, r, "%s: the image is %s: repair it with qemu-img check -r all", path,
		       incompat & INCOMPAT_CORRUPT ? "marked corrupt" : "dirty (not closed cleanly)");
		goto fail;
	}
	if (incompat) {
		errorf(err, len, r = -ENOTSUP, "%s: incompatible features %#llx (external data file, zstd, extended "
		       "L2) are not supported", path, (unsigned long long)incompat);
		goto fail;
	}
	if (refcount_order != 4) {
		errorf(err, len, r = -ENOTSUP, "%s: refcount order %u (order 4, 16-bit refcounts, is supported)", path,
		       refcount_order);
		goto fail;
	}
	if (nb_snap && !ro) {
		errorf(err, len, r = -EROFS, "%s: has internal snapshots: open it read-only (,ro)", path);
		goto fail;
	}
	need = (q->size + q->cs * q->l2_entries - 1) / (q->cs * q->l2_entries);
	if (!q->size || q->size > (1ULL << 56) || q->l1_size < need || q->l1_size > (32u << 20) / 8 ||
	    (q->l1_off | q->rt_off) & (q->cs - 1) || !q->rt_n || q->rt_n > (8u << 20) / q->cs ||
	    bf_len >= sizeof(backing) || (bf_len && bf_off + bf_len > q->cs)) {
		errorf(err, len, r, "%s: header out of range (size, L1 or refcount table, backing name)", path);
		goto fail;
	}
	/* Header extensions: the backing file's format. */
	for (uint64_t p = hlen; p + 8 <= sizeof(h);) {
		uint32_t type = be32_at(h + p), l = be32_at(h + p + 4);

		if (type == EXT_END || p + 8 + l > sizeof(h))
			break;
		if (type == EXT_BACKING_FORMAT && l < sizeof(fmt))
			memcpy(fmt, h + p + 8, l);
		p += 8 + ((l + 7) & ~7u);
	}
	q->rt_n = q->rt_n * q->cs / 8;
	q->l1 = calloc(q->l1_size, 8);
	q->rt = calloc(q->rt_n, 8);
	if (!q->l1 || !q->rt) {
		errorf(err, len, r = -ENOMEM, "out of memory");
		goto fail;
	}
	if ((r = pread_all(fd, q->l1, 8ULL * q->l1_size, q->l1_off)) ||
	    (r = pread_all(fd, q->rt, 8 * q->rt_n, q->rt_off))) {
		errorf(err, len, r, "%s: %s", path, strerror(-r));
		goto fail;
	}
	for (uint32_t i = 0; i < q->l1_size; i++)
		q->l1[i] = be64toh(q->l1[i]);
	for (uint64_t i = 0; i < q->rt_n; i++)
		q->rt[i] = be64toh(q->rt[i]);
	q->end = ((uint64_t)st.st_size + q->cs - 1) & ~(q->cs - 1);
	if (bf_len) {
		if ((r = pread_all(fd, backing, bf_len, bf_off)))
			goto fail;
		r = open_backing(q, path, backing, fmt[0] ? fmt : NULL, depth, err, len);
		if (r)
			goto fail;
	}
	/* Autoclear features (bitmaps...) are not kept up to date here: a
	 * writer clears them, as the format asks. */
	if (!ro && autoclear && (r = write_be64(fd, 0, 88))) {
		errorf(err, len, r, "%s: %s", path, strerror(-r));
		goto fail;
	}
	*out = q;
	return 0;
fail:
	qcow2_close(q);
	return r;
}

void qcow2_close(struct qcow2 *q)
{
	if (!q)
		return;
	if (q->bq) {
		qcow2_close(q->bq);
	}
	if (q->bfd >= 0)
		close(q->bfd);
	for (int i = 0; i < L2_CACHE; i++)
		free(q->cache[i].t);
	free(q->l1);
	free(q->rt);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

/* ---- creating ---- */

int qcow2_create(const char *path, uint64_t size, const char *backing, char *err, size_t len)
{
	const uint64_t cs = 1ULL << 16;
	uint64_t l1_size, l1_clusters, n_clusters;
	char full[PATH_MAX], dir[PATH_MAX];
	const char *fmt = NULL;
	size_t p = HDR_V3_LEN;
	uint8_t *img;
	int fd, r = 0;

	if (backing) {
		char why[400];
		struct stat st;
		struct qcow2 *bq;
		int bfd;

		/* A relative name is relative to the new image's directory. */
		snprintf(dir, sizeof(dir), "%s", path);
		if ((size_t)snprintf(full, sizeof(full), "%s/%s", backing[0] == '/' ? "" : dirname(dir), backing) >=
			    sizeof(full) ||
		    strlen(backing) > 1023)
			return errorf(err, len, -ENAMETOOLONG, "backing file %s: name too long", backing);
		bfd = open(full, O_RDONLY | O_CLOEXEC);
		if (bfd < 0 || fstat(bfd, &st)) {
			r = errorf(err, len, -errno, "backing file %s: %s", full, strerror(errno));
			if (bfd >= 0)
				close(bfd);
			return r;
		}
		fmt = qcow2_probe(bfd) ? "qcow2" : "raw";
		if (!strcmp(fmt, "qcow2")) {
			r = qcow2_open(&bq, bfd, full, true, why, sizeof(why));
			if (!r && !size)
				size = bq->size;
			if (!r)
				qcow2_close(bq);
			else
				errorf(err, len, r, "%s", why);
		} else if (!size) {
			size = (uint64_t)st.st_size;
		}
		close(bfd);
		if (r)
			return r;
	}
	if (!size || size % 512 || size > (1ULL << 50))
		return errorf(err, len, -EINVAL, "size %llu: a multiple of 512 bytes up to 1 PiB",
			      (unsigned long long)size);
	l1_size = (size + cs * (cs / 8) - 1) / (cs * (cs / 8));
	l1_clusters = (l1_size * 8 + cs - 1) / cs;
	n_clusters = 3 + l1_clusters; /* header, refcount table, refcount block, L1 */
	img = calloc(1, n_clusters * cs);
	if (!img)
		return errorf(err, len, -ENOMEM, "out of memory");
	put_be32(img, QCOW2_MAGIC);
	put_be32(img + 4, 3);
	put_be32(img + 20, 16);
	put_be64(img + 24, size);
	put_be32(img + 36, (uint32_t)l1_size);
	put_be64(img + 40, 3 * cs);
	put_be64(img + 48, cs);
	put_be32(img + 56, 1);
	put_be32(img + 96, 4);
	put_be32(img + 100, HDR_V3_LEN);
	if (backing) {
		uint32_t fl = (uint32_t)strlen(fmt);

		put_be32(img + p, EXT_BACKING_FORMAT);
		put_be32(img + p + 4, fl);
		memcpy(img + p + 8, fmt, fl);
		p += 8 + ((fl + 7) & ~7u);
		p += 8; /* the end extension: zeros */
		put_be64(img + 8, p);
		put_be32(img + 16, (uint32_t)strlen(backing));
		memcpy(img + p, backing, strlen(backing));
	}
	put_be64(img + cs, 2 * cs); /* refcount table[0]: the block in cluster 2 */
	for (uint64_t i = 0; i < n_clusters; i++)
		put_be16(img + 2 * cs + 2 * i, 1);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		r = errorf(err, len, -errno, "%s: %s", path, strerror(errno));
	} else {
		if ((r = pwrite_all(fd, img, n_clusters * cs, 0)) || (fsync(fd) && (r = -errno)))
			errorf(err, len, r, "%s: %s", path, strerror(-r));
		close(fd);
		if (r)
			unlink(path);
	}
	free(img);
	return r;
}

/* ---- resizing ---- */

int qcow2_grow(int fd, uint64_t size, char *err, size_t len)
{
	uint8_t h[HDR_V3_LEN];
	uint64_t cs, old, l1_cap, l1_new;
	uint32_t cbits, l1_size, be;

	if (pread(fd, h, sizeof(h), 0) != (ssize_t)sizeof(h) || be32_at(h) != QCOW2_MAGIC)
		return errorf(err, len, -EINVAL, "not a qcow2 image");
	cbits = be32_at(h + 20);
	if (cbits < 9 || cbits > 21)
		return errorf(err, len, -EINVAL, "cluster bits %u: corrupt", cbits);
	cs = 1ULL << cbits;
	old = be64_at(h + 24);
	l1_size = be32_at(h + 36);
	if (size < old || size % 512 || size > (1ULL << 50))
		return errorf(err, len, -EINVAL, "size %llu: a multiple of 512 bytes from %llu (its size) to 1 PiB",
			      (unsigned long long)size, (unsigned long long)old);
	/* The L1 table may grow into the rest of its last cluster, which
	 * holds nothing else (entries past l1_size are zero). */
	l1_new = (size + cs * (cs / 8) - 1) / (cs * (cs / 8));
	l1_cap = (l1_size * 8ULL + cs - 1) / cs * cs / 8;
	if (l1_new > l1_cap)
		return errorf(err, len, -EFBIG, "%llu bytes need an L1 table of %llu entries: it has room for %llu "
			      "(from %llu bytes)", (unsigned long long)size, (unsigned long long)l1_new,
			      (unsigned long long)l1_cap, (unsigned long long)(l1_cap * cs * (cs / 8)));
	be = htobe32((uint32_t)(l1_new > l1_size ? l1_new : l1_size));
	if (write_be64(fd, size, 24) || pwrite(fd, &be, 4, 36) != 4 || fsync(fd))
		return errorf(err, len, -errno, "%s", strerror(errno));
	return 0;
}
