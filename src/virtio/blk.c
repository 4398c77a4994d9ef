/* virtio-blk (virtio spec 5.2): one request queue over a raw image file or
 * block device. Spec string: PATH[,ro][,direct][,serial=ID].
 *
 * Requests run in BLK_WORKERS threads of the disk's own, several at once
 * (as QEMU's aio=threads pool does): a kick only wakes a worker, so no vCPU
 * or kick thread waits on the disk, and big sequential transfers use more
 * than one host CPU. A worker takes a chain off the ring and gives it back
 * under vd->lock and does the I/O without it; completions go back in the
 * order they finish. A flush covers every write completed before it was
 * taken (a driver waits for the writes a flush must cover before it sends
 * the flush, as Linux's block layer does). A reset waits for
 * the requests in flight (blk_drain), so nothing is written into guest
 * memory or the rings after it.
 *
 * Rate limits (bw=RATE, iops=RATE: core/ratelimit.h) are kept by the
 * workers: while a bucket is empty none takes a chain off the ring, and
 * each request pays its data bytes and one operation once it is done.
 * They change at runtime (ops->set_limits), for the next request.
 *
 * Trust: every byte of a request (header, data lengths, sectors, discard
 * segments) is guest-controlled. A malformed *request* completes with
 * status IOERR or UNSUPP and the queue goes on; a malformed *ring* is
 * caught by vq_pop and breaks the queue (NEEDS_RESET). */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/ratelimit.h"
#include "core/devctx.h"
#include "virtio/devices.h"
#include "virtio/iov.h"
#include "virtio/virtio_pci.h"

/* Feature bits (5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO 5
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH 9
#define VIRTIO_BLK_F_DISCARD 13
#define VIRTIO_BLK_F_WRITE_ZEROES 14

/* Request types and status (5.2.6) */
#define VIRTIO_BLK_T_IN 0
#define VIRTIO_BLK_T_OUT 1
#define VIRTIO_BLK_T_FLUSH 4
#define VIRTIO_BLK_T_GET_ID 8
#define VIRTIO_BLK_T_DISCARD 11
#define VIRTIO_BLK_T_WRITE_ZEROES 13
#define VIRTIO_BLK_S_OK 0
#define VIRTIO_BLK_S_IOERR 1
#define VIRTIO_BLK_S_UNSUPP 2
#define VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP 1

#define SECTOR 512
#define ID_BYTES 20
#define QUEUE_MAX 256
#define SEG_MAX (QUEUE_MAX - 2)	  /* data segments; + header + status */
#define SIZE_MAX_SEG (64u << 10)  /* largest data segment */
#define DATA_MAX ((uint64_t)SEG_MAX * SIZE_MAX_SEG) /* cap on a request's data */
#define DISCARD_SEG_MAX 32
#define DISCARD_SECTORS_MAX (1u << 22) /* 2 GiB per segment */
#define BOUNCE_SIZE (256u << 10)
#define BLK_COPY_CHUNK VIRTIO_BLK_COPY_CHUNK

/* Device configuration (5.2.4), little-endian like the host (x86-64), up
 * to write_zeroes_may_unmap; the secure-erase fields are not offered. */
struct virtio_blk_config {
	uint64_t capacity; /* in 512-byte sectors */
	uint32_t size_max;
	uint32_t seg_max;
	uint16_t cylinders;
	uint8_t heads, sectors;
	uint32_t blk_size;
	uint8_t physical_block_exp, alignment_offset;
	uint16_t min_io_size;
	uint32_t opt_io_size;
	uint8_t writeback, unused0;
	uint16_t num_queues;
	uint32_t max_discard_sectors, max_discard_seg, discard_sector_alignment;
	uint32_t max_write_zeroes_sectors, max_write_zeroes_seg;
	uint8_t write_zeroes_may_unmap, unused1[3];
} __attribute__((packed)); /* every field is naturally aligned; packed drops the tail padding */
_Static_assert(sizeof(struct virtio_blk_config) == 60, "virtio_blk_config layout");

/* Request header (5.2.6): first readable bytes of every request. */
struct virtio_blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};
_Static_assert(sizeof(struct virtio_blk_req_hdr) == 16, "virtio_blk_req header layout");

/* One range of a DISCARD or WRITE_ZEROES request (5.2.6). */
struct virtio_blk_range {
	uint64_t sector;
	uint32_t num_sectors;
	uint32_t flags;
};
_Static_assert(sizeof(struct virtio_blk_range) == 16, "virtio_blk_discard_write_zeroes layout");

#define BLK_WORKERS 4

/* The counters, in Firecracker's names (blk_metrics). */
enum { BLK_READ_COUNT, BLK_READ_BYTES, BLK_WRITE_COUNT, BLK_WRITE_BYTES, BLK_FLUSH_COUNT, BLK_FAILS,
       BLK_STATS_NR };
static const char *const blk_stat_names[BLK_STATS_NR] = {
	"read_count", "read_bytes", "write_count", "write_bytes", "flush_count", "execute_fails",
};
#define BLK_LIMIT_USAGE "bw=RATE][,iops=RATE"

/* One worker thread and its request's scratch. */
struct blk_worker {
	struct virtio_blk *b;
	pthread_t thread;
	uint8_t *bounce; /* direct: BOUNCE_SIZE bytes, mem_align-aligned */
	uint64_t data_len; /* the request's data bytes moved (rate limit) */
	struct vq_chain chain;
	struct iovec data[VQ_MAX_SEGS];
};

struct virtio_blk {
	struct virtio_dev vd;
	struct virtio_dev_ops ops; /* the template with this disk's features */
	int fd;
	struct qcow2 *qcow2; /* the image is qcow2 (block/qcow2.h), else raw */
	bool ro, direct, can_punch;
	uint64_t capacity; /* sectors */
	unsigned mem_align, off_align; /* O_DIRECT alignment of buffers, offsets */
	struct virtio_blk_config cfg;
	char serial[ID_BYTES];
	/* The workers, under vd.lock: kicked while chains may wait on the
	 * ring; busy counts chains taken and not yet given back; while
	 * draining, workers take none. */
	pthread_cond_t work, idle;
	bool kicked, draining, stopping;
	unsigned busy, nr_workers;
	struct blk_worker *w[BLK_WORKERS];
	uint64_t stat[BLK_STATS_NR]; /* metrics: relaxed atomics, any worker adds */
	/* A migration copying the disk (virtio_blk_track): a bit per
	 * BLK_COPY_CHUNK bytes, set once a write there has completed. */
	uint64_t *copy_dirty;
	struct rate_limiter rl;
	struct rl_key limits[2]; /* bw=, iops= */
};

/* ---- host I/O ---- */

/* preadv/pwritev all of iov[0..n) (consumed) at byte offset off, through
 * short transfers and EINTR. 0 or -errno; end of file is -EIO (the image
 * shrank under us). */
static int io_vec(int fd, struct iovec *iov, unsigned n, off_t off, bool write)
{
	for (;;) {
		ssize_t r;

		while (n && !iov->iov_len) {
			iov++;
			n--;
		}
		if (!n)
			return 0;
		r = write ? pwritev(fd, iov, (int)n, off) : preadv(fd, iov, (int)n, off);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -EIO;
		off += r;
		iov_advance(&iov, &n, (size_t)r);
	}
}

/* O_DIRECT takes guest buffers as they are only when every piece is aligned
 * as the file system wants; otherwise the data goes through b->bounce. */
static bool dio_aligned(const struct virtio_blk *b, const struct iovec *iov, unsigned n)
{
	for (unsigned i = 0; i < n; i++)
		if ((uintptr_t)iov[i].iov_base % b->mem_align || iov[i].iov_len % b->off_align)
			return false;
	return true;
}

/* Move len bytes between the image at byte offset off and iov[0..n),
 * through bounce when O_DIRECT cannot take the guest's buffers. */
static int blk_io(const struct virtio_blk *b, uint8_t *bounce, struct iovec *iov, unsigned n, uint64_t len,
		  off_t off, bool write)
{
	if (b->qcow2)
		return write ? qcow2_pwritev(b->qcow2, iov, (int)n, (uint64_t)off)
			     : qcow2_preadv(b->qcow2, iov, (int)n, (uint64_t)off);
	if (!b->direct || dio_aligned(b, iov, n))
		return io_vec(b->fd, iov, n, off, write);
	for (uint64_t done = 0; done < len;) {
		size_t chunk = len - done < BOUNCE_SIZE ? (size_t)(len - done) : BOUNCE_SIZE;
		struct iovec bv = { bounce, chunk };
		int r;

		if (write)
			iov_copy(iov, n, done, bounce, chunk, false);
		r = io_vec(b->fd, &bv, 1, off + (off_t)done, write);
		if (r)
			return r;
		if (!write)
			iov_copy(iov, n, done, bounce, chunk, true);
		done += chunk;
	}
	return 0;
}

static int blk_fallocate(int fd, int mode, off_t off, off_t len)
{
	while (fallocate(fd, mode, off, len) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

static int blk_sync(int fd)
{
	while (fdatasync(fd) < 0) {
		if (errno != EINTR)
			return -errno;
	}
	return 0;
}

/* ---- requests ---- */

/* The sectors [sector, sector + n) lie on the disk (no overflow). */
static bool in_range(const struct virtio_blk *b, uint64_t sector, uint64_t n)
{
	return sector <= b->capacity && n <= b->capacity - sector;
}

/* Bytes [off, off + len) were written (the write has completed): a
 * migration copying the disk sends them again. */
static void blk_mark(struct virtio_blk *b, uint64_t off, uint64_t len)
{
	uint64_t *bits = __atomic_load_n(&b->copy_dirty, __ATOMIC_ACQUIRE);

	if (!bits || !len)
		return;
	for (uint64_t c = off / BLK_COPY_CHUNK; c <= (off + len - 1) / BLK_COPY_CHUNK; c++)
		__atomic_fetch_or(&bits[c / 64], 1ULL << (c % 64), __ATOMIC_RELEASE);
}

/* DISCARD or WRITE_ZEROES: the ranges are in the readable bytes after the
 * header. All are checked before any is carried out. */
static uint8_t blk_ranges(struct virtio_blk *b, const struct vq_chain *c, uint32_t type)
{
	struct virtio_blk_range r[DISCARD_SEG_MAX];
	uint64_t len = c->out_len - sizeof(struct virtio_blk_req_hdr);
	unsigned n = (unsigned)(len / sizeof(r[0]));

	if (c->in_len != 1 || !len || len % sizeof(r[0]) || len > sizeof(r))
		return VIRTIO_BLK_S_IOERR;
	iov_copy(c->iov, c->nr_out, sizeof(struct virtio_blk_req_hdr), r, (size_t)len, false);
	for (unsigned i = 0; i < n; i++) {
		uint32_t unknown = r[i].flags & ~(uint32_t)VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP;

		/* 5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP. */
		if (unknown || (type == VIRTIO_BLK_T_DISCARD && r[i].flags))
			return VIRTIO_BLK_S_UNSUPP;
		if (r[i].num_sectors > DISCARD_SECTORS_MAX || !in_range(b, r[i].sector, r[i].num_sectors))
			return VIRTIO_BLK_S_IOERR;
	}
	for (unsigned i = 0; i < n; i++) {
		off_t off = (off_t)(r[i].sector * SECTOR), l = (off_t)r[i].num_sectors * SECTOR;
		int ret = 0;

		if (!l)
			continue;
		if (b->qcow2) { /* zero clusters serve both */
			ret = qcow2_write_zeroes(b->qcow2, (uint64_t)off, (uint64_t)l);
			if (ret) {
				pr_warn_ratelimited("virtio-blk: qcow2 zeroes: %s", strerror(-ret));
				return VIRTIO_BLK_S_IOERR;
			}
			blk_mark(b, (uint64_t)off, (uint64_t)l);
			continue;
		}
		/* A punched hole reads back as zeroes, so it serves both a
		 * discard and a write-zeroes that may unmap; one that may not
		 * keeps its blocks allocated when the file system can. */
		if (type == VIRTIO_BLK_T_WRITE_ZEROES && !(r[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			ret = blk_fallocate(b->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, off, l);
		if (ret == -EOPNOTSUPP || type == VIRTIO_BLK_T_DISCARD ||
		    (r[i].flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP))
			ret = blk_fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, l);
		if (ret) {
			pr_warn_ratelimited("virtio-blk: fallocate: %s", strerror(-ret));
			return VIRTIO_BLK_S_IOERR;
		}
		blk_mark(b, (uint64_t)off, (uint64_t)l);
	}
	return VIRTIO_BLK_S_OK;
}

static void blk_count(struct virtio_blk *b, unsigned i, uint64_t n)
{
	__atomic_fetch_add(&b->stat[i], n, __ATOMIC_RELAXED);
}

/* Carry out w's request, whose status byte exists (c->in_len >= 1).
 * Returns the status; *data_written = bytes put into the writable buffers
 * before the status byte. */
static uint8_t blk_request(struct blk_worker *w, uint64_t features, uint32_t *data_written)
{
	struct virtio_blk *b = w->b;
	const struct vq_chain *c = &w->chain;
	const size_t hl = sizeof(struct virtio_blk_req_hdr);
	struct virtio_blk_req_hdr h;
	uint64_t in_data = c->in_len - 1;
	unsigned n;
	int ret;

	*data_written = 0;
	if (c->out_len < hl)
		return VIRTIO_BLK_S_IOERR;
	iov_copy(c->iov, c->nr_out, 0, &h, hl, false); /* read once */
	switch (h.type) {
	case VIRTIO_BLK_T_IN:
	case VIRTIO_BLK_T_OUT: {
		bool write = h.type == VIRTIO_BLK_T_OUT;
		/* Data: the readable bytes after the header (OUT) or the
		 * writable ones before the status (IN); nothing else. */
		uint64_t len = write ? c->out_len - hl : in_data;

		if ((write ? in_data : c->out_len - hl) || len % SECTOR || len > DATA_MAX ||
		    !in_range(b, h.sector, len / SECTOR))
			return VIRTIO_BLK_S_IOERR;
		if (write && b->ro)
			return VIRTIO_BLK_S_IOERR;
		if (write)
			n = iov_slice(c->iov, c->nr_out, hl, len, w->data);
		else
			n = iov_slice(c->iov + c->nr_out, c->nr_in, 0, len, w->data);
		ret = blk_io(b, w->bounce, w->data, n, len, (off_t)(h.sector * SECTOR), write);
		if (ret) {
			pr_warn_ratelimited("virtio-blk: %s at sector %llu: %s", write ? "write" : "read",
					    (unsigned long long)h.sector, strerror(-ret));
			return VIRTIO_BLK_S_IOERR;
		}
		if (write)
			blk_mark(b, h.sector * SECTOR, len);
		*data_written = write ? 0 : (uint32_t)len;
		w->data_len = len;
		blk_count(b, write ? BLK_WRITE_COUNT : BLK_READ_COUNT, 1);
		blk_count(b, write ? BLK_WRITE_BYTES : BLK_READ_BYTES, len);
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_FLUSH:
		if (c->out_len != hl || in_data)
			return VIRTIO_BLK_S_IOERR;
		/* The data reaches the file before the guest hears OK. */
		ret = b->ro ? 0 : b->qcow2 ? qcow2_flush(b->qcow2) : blk_sync(b->fd);
		if (ret) {
			pr_warn_ratelimited("virtio-blk: fdatasync: %s", strerror(-ret));
			return VIRTIO_BLK_S_IOERR;
		}
		blk_count(b, BLK_FLUSH_COUNT, 1);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID: {
		size_t l = in_data < ID_BYTES ? (size_t)in_data : ID_BYTES;

		if (c->out_len != hl)
			return VIRTIO_BLK_S_IOERR;
		iov_copy(c->iov + c->nr_out, c->nr_in, 0, b->serial, l, true);
		*data_written = (uint32_t)l;
		return VIRTIO_BLK_S_OK;
	}
	case VIRTIO_BLK_T_DISCARD:
		if (!(features & 1ULL << VIRTIO_BLK_F_DISCARD))
			return VIRTIO_BLK_S_UNSUPP;
		return blk_ranges(b, c, h.type);
	case VIRTIO_BLK_T_WRITE_ZEROES:
		if (!(features & 1ULL << VIRTIO_BLK_F_WRITE_ZEROES))
			return VIRTIO_BLK_S_UNSUPP;
		return blk_ranges(b, c, h.type);
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

/* w's chain: the request, then its status into the last writable byte.
 * Returns the used length. Without vd.lock: the features and the chain's
 * buffers stay put while the request is in flight (blk_drain). */
static uint32_t blk_handle(struct blk_worker *w, uint64_t features)
{
	struct vq_chain *c = &w->chain;
	uint32_t data = 0;
	uint8_t status;

	if (!c->in_len) {
		/* No status byte to answer through: give it back untouched. */
		pr_warn_ratelimited("virtio-blk: request without a writable status byte");
		return 0;
	}
	w->data_len = 0;
	status = blk_request(w, features, &data);
	rl_charge(&w->b->rl, w->data_len, 1);
	if (status == VIRTIO_BLK_S_IOERR)
		blk_count(w->b, BLK_FAILS, 1);
	if (status != VIRTIO_BLK_S_OK)
		data = 0;
	iov_copy(c->iov + c->nr_out, c->nr_in, c->in_len - 1, &status, 1, true);
	return data + 1;
}

/* ---- the workers ---- */

static void *blk_worker(void *arg)
{
	struct blk_worker *w = arg;
	struct virtio_blk *b = w->b;
	struct virtio_dev *vd = &b->vd;
	struct vq *vq = &vd->q[0].vq;

	pthread_mutex_lock(&vd->lock);
	while (!b->stopping) {
		int r;

		if (!b->kicked || b->draining) {
			pthread_cond_wait(&b->work, &vd->lock);
			continue;
		}
		uint64_t wait = rl_wait_ns(&b->rl);
		if (wait) {
			/* A bucket is empty: until it is not (or a drain). */
			struct timespec ts;
			uint64_t at = monotonic_ns() + wait;

			ts.tv_sec = (time_t)(at / NS_PER_SEC);
			ts.tv_nsec = (long)(at % NS_PER_SEC);
			pthread_cond_timedwait(&b->work, &vd->lock, &ts);
			continue;
		}
		r = virtio_pci_queue_ready(vd, 0) ? vq_pop(vq, &w->chain) : 0;
		if (r <= 0) {
			b->kicked = false; /* the ring is empty (or broken) */
			if (r < 0)
				virtio_pci_queue_broken(vd, 0, r);
			if (!b->busy)
				pthread_cond_broadcast(&b->idle);
			continue;
		}
		b->busy++;
		pthread_cond_signal(&b->work); /* more may wait: another worker looks */
		uint64_t features = vd->driver_features;
		pthread_mutex_unlock(&vd->lock);
		uint32_t len = blk_handle(w, features);
		pthread_mutex_lock(&vd->lock);
		r = vq_push_chain(vq, &w->chain, len);
		if (r < 0)
			virtio_pci_queue_broken(vd, 0, r);
		else if (vq_needs_notify(vq))
			virtio_pci_queue_interrupt(vd, 0);
		if (!--b->busy)
			pthread_cond_broadcast(&b->idle);
	}
	pthread_mutex_unlock(&vd->lock);
	return NULL;
}

static void blk_notify(struct virtio_dev *vd, unsigned q)
{
	struct virtio_blk *b = vd->opaque;

	b->kicked = true;
	pthread_cond_signal(&b->work);
}

static void blk_drain(struct virtio_dev *vd, bool all)
{
	struct virtio_blk *b = vd->opaque;

	if (!all)
		b->draining = true;
	while (b->busy || (all && b->kicked))
		pthread_cond_wait(&b->idle, &vd->lock);
	b->draining = false;
	if (!all)
		b->kicked = false;
}

static void blk_reset(struct virtio_dev *vd)
{
	blk_drain(vd, false);
}

static void blk_config_read(struct virtio_dev *vd, unsigned off, void *data, unsigned len)
{
	struct virtio_blk *b = vd->opaque;

	memcpy(data, (const uint8_t *)&b->cfg + off, len);
}

/* Stop and free the workers (vd.lock not held). */
static void blk_stop_workers(struct virtio_blk *b)
{
	if (b->nr_workers) {
		pthread_mutex_lock(&b->vd.lock);
		b->stopping = true;
		pthread_cond_broadcast(&b->work);
		pthread_mutex_unlock(&b->vd.lock);
	}
	for (unsigned i = 0; i < b->nr_workers; i++)
		pthread_join(b->w[i]->thread, NULL);
	for (unsigned i = 0; i < BLK_WORKERS; i++) {
		if (b->w[i])
			free(b->w[i]->bounce);
		free(b->w[i]);
	}
}

/* Make the workers (vd.lock initialised): 0 or -errno. */
static int blk_start_workers(struct virtio_blk *b)
{
	for (unsigned i = 0; i < BLK_WORKERS; i++) {
		struct blk_worker *w = b->w[i] = calloc(1, sizeof(*w));

		if (!w)
			return -ENOMEM;
		w->b = b;
		if (b->direct && !(w->bounce = aligned_alloc(b->mem_align < 4096 ? 4096 : b->mem_align, BOUNCE_SIZE)))
			return -ENOMEM;
		int ret = pthread_create(&w->thread, NULL, blk_worker, w);
		if (ret)
			return -ret;
		b->nr_workers++;
	}
	return 0;
}

static void blk_free(struct virtio_blk *b)
{
	blk_stop_workers(b);
	pthread_cond_destroy(&b->work);
	pthread_cond_destroy(&b->idle);
	rl_destroy(&b->rl);
	if (b->fd >= 0) {
		/* Whatever the guest wrote reaches the file before we go. */
		if (!b->ro && blk_sync(b->fd))
			pr_warn("virtio-blk: fdatasync at shutdown: %s", strerror(errno));
		qcow2_close(b->qcow2);
		close(b->fd);
	}
	free(b->copy_dirty);
	free(b);
}

static void blk_destroy(struct virtio_dev *vd)
{
	blk_free(vd->opaque);
}

static unsigned blk_metrics(struct virtio_dev *vd, struct virtio_metric *m)
{
	struct virtio_blk *b = vd->opaque;

	for (unsigned i = 0; i < BLK_STATS_NR; i++)
		m[i] = (struct virtio_metric){ blk_stat_names[i], __atomic_load_n(&b->stat[i], __ATOMIC_RELAXED) };
	pthread_mutex_lock(&b->rl.lock);
	m[BLK_STATS_NR] = (struct virtio_metric){ "rate_limiter_throttled_events", b->rl.throttled };
	pthread_mutex_unlock(&b->rl.lock);
	return BLK_STATS_NR + 1;
}

static int blk_set_limits(struct virtio_dev *vd, const char *spec, char *err, size_t len)
{
	struct virtio_blk *b = vd->opaque;

	return rl_options(spec, b->limits, 2, err, len);
}

/* ---- a migration's copy of the disk (virtio/devices.h) ---- */

static struct virtio_blk *blk_of(struct virtio_dev *vd)
{
	return vd && vd->ops->destroy == blk_destroy ? vd->opaque : NULL;
}

uint64_t virtio_blk_copy_size(struct virtio_dev *vd)
{
	struct virtio_blk *b = blk_of(vd);

	return b && !b->ro ? b->capacity * SECTOR : 0;
}

int virtio_blk_track(struct virtio_dev *vd)
{
	struct virtio_blk *b = blk_of(vd);
	uint64_t chunks, *bits;

	if (!b || b->ro)
		return -EINVAL;
	if (b->copy_dirty)
		return 0;
	chunks = (b->capacity * SECTOR + BLK_COPY_CHUNK - 1) / BLK_COPY_CHUNK;
	if (!(bits = malloc((chunks + 63) / 64 * sizeof(uint64_t))))
		return -ENOMEM;
	memset(bits, 0xff, (chunks + 63) / 64 * sizeof(uint64_t)); /* all of it, first */
	__atomic_store_n(&b->copy_dirty, bits, __ATOMIC_RELEASE);
	return 0;
}

void virtio_blk_take(struct virtio_dev *vd, uint64_t *bits)
{
	struct virtio_blk *b = blk_of(vd);
	uint64_t chunks = b ? (b->capacity * SECTOR + BLK_COPY_CHUNK - 1) / BLK_COPY_CHUNK : 0;

	for (uint64_t i = 0; b && b->copy_dirty && i < (chunks + 63) / 64; i++)
		bits[i] |= __atomic_exchange_n(&b->copy_dirty[i], 0, __ATOMIC_ACQ_REL);
	if (chunks % 64) /* the bits past the end, set by the first fill */
		bits[chunks / 64] &= (1ULL << (chunks % 64)) - 1;
}

/* The guest's view of [off, off + len) to or from buf (len a multiple of
 * 512), through qcow2 or a bounce buffer as the guest's requests go. */
static int copy_io(struct virtio_dev *vd, uint64_t off, void *buf, size_t len, bool write)
{
	struct virtio_blk *b = blk_of(vd);
	struct iovec iov = { buf, len };
	uint8_t *bounce = NULL;
	int ret;

	if (!b || (write && b->ro) || len % SECTOR || off % SECTOR || !in_range(b, off / SECTOR, len / SECTOR))
		return -EINVAL;
	if (b->direct && !(bounce = aligned_alloc(b->mem_align < 4096 ? 4096 : b->mem_align, BOUNCE_SIZE)))
		return -ENOMEM;
	ret = blk_io(b, bounce, &iov, 1, len, (off_t)off, write);
	free(bounce);
	return ret;
}

int virtio_blk_copy_read(struct virtio_dev *vd, uint64_t off, void *buf, size_t len)
{
	return copy_io(vd, off, buf, len, false);
}

int virtio_blk_copy_write(struct virtio_dev *vd, uint64_t off, const void *buf, size_t len)
{
	return copy_io(vd, off, (void *)buf, len, true);
}

/* The image's lock: exclusive for a writer, shared among readers.
 * 0, -EBUSY (another holds it), or -errno. */
static int blk_lock(struct virtio_blk *b)
{
	if (!flock(b->fd, (b->ro ? LOCK_SH : LOCK_EX) | LOCK_NB))
		return 0;
	return errno == EWOULDBLOCK ? -EBUSY : -errno;
}

/* A migration (virtio_dev_ops.handover): the source, paused, writes
 * back what the host holds and lets go of the image, for the destination
 * to take. */
static int blk_handover(struct virtio_dev *vd, bool give, char *err, size_t len)
{
	struct virtio_blk *b = vd->opaque;
	int ret = 0;

	if (give && !b->ro && (ret = b->qcow2 ? qcow2_flush(b->qcow2) : blk_sync(b->fd)))
		return errorf(err, len, ret, "writing the disk back: %s", strerror(-ret));
	if (give)
		return flock(b->fd, LOCK_UN) ? errorf(err, len, -errno, "unlocking: %s", strerror(errno)) : 0;
	if ((ret = blk_lock(b)))
		return errorf(err, len, ret, "%s", ret == -EBUSY ? "still locked by another process" : strerror(-ret));
	return 0;
}

static const struct virtio_dev_ops blk_ops_template = {
	.device_type = 2,
	.num_queues = 1,
	.queue_max = QUEUE_MAX,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = blk_config_read,
	.queue_notify = blk_notify,
	.drain = blk_drain,
	.reset = blk_reset,
	.destroy = blk_destroy,
	.handover = blk_handover,
	.metrics_group = "block",
	.metrics = blk_metrics,
	.set_limits = blk_set_limits,
};

/* ---- opening the image ---- */

static int blk_fail(char *err, size_t len, const char *spec, int ret, const char *fmt, ...)
	__attribute__((format(printf, 5, 6)));
static int blk_fail(char *err, size_t len, const char *spec, int ret, const char *fmt, ...)
{
	va_list ap;
	int n = snprintf(err, len, "--disk %s: ", spec);

	va_start(ap, fmt);
	if (n >= 0 && (size_t)n < len)
		vsnprintf(err + n, len - (size_t)n, fmt, ap);
	va_end(ap);
	return ret;
}

/* PATH[,ro][,direct][,serial=ID][,bw=RATE][,iops=RATE] into b; *path
 * points into buf. */
static int blk_parse(struct virtio_blk *b, const char *spec, char *buf, const char **path, char *err, size_t len)
{
	char *save, *opt;

	*path = strtok_r(buf, ",", &save);
	if (!*path || buf[0] == ',')
		return blk_fail(err, len, spec, -EINVAL, "no image path (PATH[,ro][,direct][,serial=ID])");
	while ((opt = strtok_r(NULL, ",", &save))) {
		char why[200];
		int r = rl_option(opt, b->limits, 2, why, sizeof(why));

		if (r < 0)
			return blk_fail(err, len, spec, r, "%s", why);
		if (r) {
			continue;
		} else if (!strcmp(opt, "ro")) {
			b->ro = true;
		} else if (!strcmp(opt, "direct")) {
			b->direct = true;
		} else if (!strncmp(opt, "serial=", 7)) {
			const char *s = opt + 7;

			if (!*s || strlen(s) > ID_BYTES || strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
							"0123456789-_.:") != strlen(s))
				return blk_fail(err, len, spec, -EINVAL,
						"serial=%s: 1 to %d characters of A-Z a-z 0-9 - _ . :", s, ID_BYTES);
			memcpy(b->serial, s, strlen(s));
		} else {
			return blk_fail(err, len, spec, -EINVAL,
					"unknown option '%s' (PATH[,ro][,direct][,serial=ID][,%s])", opt,
					BLK_LIMIT_USAGE);
		}
	}
	return 0;
}

/* Open, lock and measure the image; probe what the file system offers. */
static int blk_open(struct virtio_blk *b, const char *spec, const char *path, bool defer_lock, char *err, size_t len)
{
	int ret;
	int flags = (b->ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | (b->direct ? O_DIRECT : 0);
	struct stat st;
	uint64_t size;

	b->fd = open(path, flags);
	if (b->fd < 0 && errno == EINVAL && b->direct)
		return blk_fail(err, len, spec, -EINVAL, "the file system does not support direct I/O");
	if (b->fd < 0 && errno == EROFS)
		return blk_fail(err, len, spec, -EROFS, "cannot open for writing: %s (add ,ro)", strerror(errno));
	if (b->fd < 0)
		return blk_fail(err, len, spec, -errno, "cannot open: %s", strerror(errno));
	if (fstat(b->fd, &st))
		return blk_fail(err, len, spec, -errno, "%s", strerror(errno));
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		if (ioctl(b->fd, BLKGETSIZE64, &size))
			return blk_fail(err, len, spec, -errno, "cannot get the device's size: %s", strerror(errno));
	} else {
		return blk_fail(err, len, spec, -EINVAL, "not a regular file or block device");
	}
	/* Two tarn processes must not write one image: exclusive for a
	 * writer, shared among read-only users. A migration's destination
	 * takes the lock when the source has let go (blk_handover). */
	if (!defer_lock && (ret = blk_lock(b)))
		return blk_fail(err, len, spec, ret, "%s", ret == -EBUSY ? b->ro ? "in use by another process (locked)" :
			"in use by another process (locked); several read-only users can share it with ,ro" :
			strerror(-ret));
	if (qcow2_probe(b->fd)) {
		char why[512];

		if (b->direct)
			return blk_fail(err, len, spec, -EINVAL, "direct I/O is for raw images, not qcow2");
		ret = qcow2_open(&b->qcow2, b->fd, path, b->ro, why, sizeof(why));
		if (ret)
			return blk_fail(err, len, spec, ret, "%s", why);
		size = qcow2_size(b->qcow2);
	}
	if (!size)
		return blk_fail(err, len, spec, -EINVAL, "the image is empty");
	if (size % SECTOR)
		return blk_fail(err, len, spec, -EINVAL, "size %llu bytes is not a multiple of %d",
				(unsigned long long)size, SECTOR);
	b->capacity = size / SECTOR;
	if (!b->serial[0])
		snprintf(b->serial, sizeof(b->serial), "%llx-%llx", (unsigned long long)st.st_dev,
			 (unsigned long long)st.st_ino); /* NUL-less when exactly 20: allowed */
	/* Punching a hole past the end of a file is a no-op that tells
	 * whether the file system can punch at all. Block devices: not
	 * offered (a probe there would cost data). */
	b->can_punch = !b->ro && (b->qcow2 || (S_ISREG(st.st_mode) &&
		       !blk_fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)size, SECTOR)));
	if (b->direct) {
		struct statx sx;

		b->mem_align = 4096; /* when the kernel does not say */
		b->off_align = SECTOR;
		if (!statx(b->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &sx) && (sx.stx_mask & STATX_DIOALIGN) &&
		    sx.stx_dio_offset_align && sx.stx_dio_mem_align) {
			b->mem_align = sx.stx_dio_mem_align;
			b->off_align = sx.stx_dio_offset_align;
		}
		if (b->off_align > BOUNCE_SIZE || b->mem_align > BOUNCE_SIZE)
			return blk_fail(err, len, spec, -EINVAL, "direct I/O alignment %u is too large",
					b->off_align);
	}
	return 0;
}

static void blk_setup_features(struct virtio_blk *b)
{
	struct virtio_blk_config *c = &b->cfg;
	uint64_t f = 1ULL << VIRTIO_BLK_F_SIZE_MAX | 1ULL << VIRTIO_BLK_F_SEG_MAX | 1ULL << VIRTIO_BLK_F_BLK_SIZE |
		     1ULL << VIRTIO_BLK_F_FLUSH | 1ULL << VIRTIO_F_INDIRECT_DESC | 1ULL << VIRTIO_F_EVENT_IDX;

	c->capacity = b->capacity;
	c->size_max = SIZE_MAX_SEG;
	c->seg_max = SEG_MAX;
	/* With O_DIRECT the guest's block size is the file system's, so its
	 * requests need no read-modify-write. */
	c->blk_size = b->direct && b->off_align > SECTOR ? b->off_align : SECTOR;
	c->num_queues = 1;
	if (b->ro)
		f |= 1ULL << VIRTIO_BLK_F_RO;
	if (b->can_punch) {
		f |= 1ULL << VIRTIO_BLK_F_DISCARD | 1ULL << VIRTIO_BLK_F_WRITE_ZEROES;
		c->max_discard_sectors = c->max_write_zeroes_sectors = DISCARD_SECTORS_MAX;
		c->max_discard_seg = c->max_write_zeroes_seg = DISCARD_SEG_MAX;
		c->discard_sector_alignment = 4096 / SECTOR;
		c->write_zeroes_may_unmap = 1;
	}
	b->ops = blk_ops_template;
	b->ops.features = f;
}

int virtio_blk_create(const struct devctx *ctx, const char *spec, struct virtio_dev **out, char *err, size_t len)
{
	struct virtio_blk *b = calloc(1, sizeof(*b));
	char *buf;
	const char *path;
	int ret;

	spec = spec ? spec : "";
	buf = strdup(spec);

	if (!b || !buf) {
		free(buf);
		free(b);
		snprintf(err, len, "virtio-blk: out of memory");
		return -ENOMEM;
	}
	b->fd = -1;
	/* Timed waits (rate limits) on the monotonic clock. */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&b->work, &ca);
	pthread_condattr_destroy(&ca);
	rl_init(&b->rl);
	b->limits[0] = (struct rl_key){ "bw", &b->rl, RL_BYTES };
	b->limits[1] = (struct rl_key){ "iops", &b->rl, RL_OPS };
	pthread_cond_init(&b->idle, NULL);
	ret = blk_parse(b, spec, buf, &path, err, len);
	if (!ret)
		ret = blk_open(b, spec, path, ctx->defer_locks, err, len);
	if (!ret) {
		blk_setup_features(b);
		ret = virtio_pci_init(&b->vd, ctx->pci, ctx->mem, &b->ops, b);
		if (ret)
			blk_fail(err, len, spec, ret, "virtio-blk: %s", strerror(-ret));
	}
	if (!ret && (ret = blk_start_workers(b)))
		blk_fail(err, len, spec, ret, "cannot start the I/O threads: %s", strerror(-ret));
	free(buf);
	if (ret) {
		blk_free(b);
		return ret;
	}
	*out = &b->vd;
	return 0;
}
