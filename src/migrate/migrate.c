/* Live migration, pre-copy over a stream socket (migrate.h,
 * docs/migration.md). */
#include "migrate/migrate.h"

#include <errno.h>
#include <fcntl.h>
#include <lz4.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/jail.h"
#include "core/log.h"
#include "core/vm.h"
#include "virtio/devices.h"
#include "api/http.h"

#define PAGE 4096u
#define MIG_MAGIC "TARNMIGR"
#define MIG_VERSION 1
#define MIG_HELLO_SIZE 16
#define MIG_HDR_SIZE 24
#define RUN_PAGES 64			   /* pages per record at most */
#define MAX_STATE (64u << 20)		   /* a state file larger than this is refused */
#define MAX_TEXT 4096			   /* an error's text */
#define CONNECT_MS 10000		   /* connecting, and the destination's first bytes */
#define BUILD_MS 60000			   /* the destination building the VM */
#define IDLE_MS 30000			   /* silence that means the peer is gone */
#define LINK_MAX (RUN_PAGES * PAGE + 4096) /* a page record's payload at most */

/* Records (docs/migration.md). */
enum {
	REC_IDENTITY = 1, /* what the VM is: a state file with CONF and CPID */
	REC_PAGES = 2,	  /* off, arg pages, raw */
	REC_PAGES_LZ4 = 3, /* off, arg pages, one LZ4 block */
	REC_FILL = 4,	  /* off, arg pages, each filled with the payload's one byte */
	REC_ROUND = 5,	  /* arg: the round that ends */
	REC_STATE = 6,	  /* the state file: the VM is paused at the source */
	REC_GO = 7,	  /* run it (arg bit 0: resume; clear: it was paused) */
	REC_DISK = 8,	  /* arg: the disk; off: a byte on it; the data (copy_disks) */
	REC_DISK_ZERO = 9, /* arg: the disk; off; the payload: a u64 length of zeros */
	REC_READY = 16,	  /* destination: the VM is built, send memory */
	REC_APPLIED = 17, /* destination: the state is applied, the disks taken */
	REC_RUNNING = 18, /* destination: it runs (or stays paused, as asked) */
	REC_ERROR = 19,	  /* either side: text, then the connection closes */
};

/* ---- the link: records over a socket, every wait bounded ---- */

struct link {
	int fd;
	atomic_bool *cancel; /* NULL: none; set, every wait ends (-ECANCELED) */
	uint64_t bytes;	     /* sent */
	int idle_ms;	     /* a wait longer than this: the peer is gone (0: IDLE_MS) */
	uint8_t *buf;	     /* a received record's payload (LINK_MAX, or a state) */
	size_t buf_cap;
};

struct rec {
	uint32_t type, len, arg;
	uint64_t off;
	const uint8_t *data; /* into link.buf */
};

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4); /* x86: little-endian */
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v;

	memcpy(&v, p, 4);
	return v;
}

/* Wait until fd is ready for events, at most ms. */
static int link_wait(struct link *l, short events, int ms)
{
	uint64_t end = monotonic_ns() + (uint64_t)ms * 1000000;

	for (;;) {
		struct pollfd p = { .fd = l->fd, .events = events };
		int64_t left = (int64_t)(end - monotonic_ns()) / 1000000;
		int r;

		if (l->cancel && atomic_load(l->cancel))
			return -ECANCELED;
		if (left <= 0)
			return -ETIMEDOUT;
		r = poll(&p, 1, left > 200 ? 200 : (int)left); /* look at cancel five times a second */
		if (r > 0)
			return 0;
		if (r < 0 && errno != EINTR)
			return -errno;
	}
}

static int link_write(struct link *l, const void *p, size_t n)
{
	const uint8_t *b = p;

	while (n) {
		ssize_t w = send(l->fd, b, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		int ret;

		if (w > 0) {
			b += w;
			n -= (size_t)w;
			l->bytes += (uint64_t)w;
			continue;
		}
		if (w < 0 && errno != EAGAIN && errno != EINTR)
			return -errno;
		if ((ret = link_wait(l, POLLOUT, l->idle_ms ? l->idle_ms : IDLE_MS)))
			return ret;
	}
	return 0;
}

static int link_read(struct link *l, void *p, size_t n, int ms)
{
	uint8_t *b = p;

	while (n) {
		ssize_t r = recv(l->fd, b, n, MSG_DONTWAIT);
		int ret;

		if (r > 0) {
			b += r;
			n -= (size_t)r;
			continue;
		}
		if (r == 0)
			return -ECONNRESET; /* the peer closed the connection */
		if (errno != EAGAIN && errno != EINTR)
			return -errno;
		if ((ret = link_wait(l, POLLIN, ms)))
			return ret;
	}
	return 0;
}

static int send_rec(struct link *l, uint32_t type, uint64_t off, uint32_t arg, const void *data, uint32_t len)
{
	uint8_t h[MIG_HDR_SIZE];
	int ret;

	put32(h, type);
	put32(h + 4, len);
	memcpy(h + 8, &off, 8);
	put32(h + 16, arg);
	put32(h + 20, crc32c(crc32c(0, h, 20), data, len));
	ret = link_write(l, h, sizeof(h));
	return ret ? ret : link_write(l, data, len);
}

static int send_text(struct link *l, uint32_t type, const char *text)
{
	size_t n = strlen(text);

	return send_rec(l, type, 0, 0, text, (uint32_t)(n < MAX_TEXT ? n : MAX_TEXT));
}

/* The largest payload a record of this type may have. */
static uint32_t rec_max(uint32_t type)
{
	switch (type) {
	case REC_IDENTITY:
	case REC_STATE: return MAX_STATE;
	case REC_PAGES:
	case REC_PAGES_LZ4: return RUN_PAGES * PAGE + 1024;
	case REC_FILL: return 1;
	case REC_DISK: return VIRTIO_BLK_COPY_CHUNK;
	case REC_DISK_ZERO: return 8;
	case REC_ERROR: return MAX_TEXT;
	default: return 0;
	}
}

static const char *errtext(int ret)
{
	switch (ret) {
	case -ECONNRESET: return "the other side closed the connection";
	case -ETIMEDOUT: return "the other side went silent";
	case -ECANCELED: return "cancelled";
	default: return strerror(-ret);
	}
}

/* The next record, its checksum checked. A REC_ERROR becomes -EPROTO with
 * the peer's text in err. */
static int recv_rec(struct link *l, struct rec *r, int ms, char *err, size_t len)
{
	uint8_t h[MIG_HDR_SIZE];
	int ret = link_read(l, h, sizeof(h), ms);

	if (ret)
		return errorf(err, len, ret, "%s", errtext(ret));
	r->type = get32(h);
	r->len = get32(h + 4);
	memcpy(&r->off, h + 8, 8);
	r->arg = get32(h + 16);
	if (r->len > rec_max(r->type))
		return errorf(err, len, -EPROTO, "a record of type %u with %u bytes", r->type, r->len);
	if (r->len > l->buf_cap) {
		uint8_t *b = realloc(l->buf, r->len);

		if (!b)
			return errorf(err, len, -ENOMEM, "out of memory for a %u-byte record", r->len);
		l->buf = b;
		l->buf_cap = r->len;
	}
	if ((ret = link_read(l, l->buf, r->len, IDLE_MS)))
		return errorf(err, len, ret, "%s", errtext(ret));
	if (crc32c(crc32c(0, h, 20), l->buf, r->len) != get32(h + 20))
		return errorf(err, len, -EBADMSG, "a record of type %u failed its checksum", r->type);
	r->data = l->buf;
	if (r->type == REC_ERROR)
		return errorf(err, len, -EPROTO, "the other side: %.*s", (int)r->len, (const char *)r->data);
	return 0;
}

/* The next record, which must be of type want. */
static int expect(struct link *l, struct rec *r, uint32_t want, int ms, const char *what, char *err, size_t len)
{
	char why[600];
	int ret = recv_rec(l, r, ms, why, sizeof(why));

	if (ret)
		return errorf(err, len, ret, "waiting for %s: %s", what, why);
	if (r->type != want)
		return errorf(err, len, -EPROTO, "waiting for %s: got a record of type %u", what, r->type);
	return 0;
}

/* A state file (snap_state_write) in a memfd, read back into a buffer. */
static int state_blob(struct vm *vm, bool identity_only, uint8_t **out, uint32_t *n, char *err, size_t len)
{
	int fd = memfd_create("tarn-migrate-state", MFD_CLOEXEC), ret;
	off_t size;

	*out = NULL;
	if (fd < 0)
		return errorf(err, len, -errno, "memfd: %s", strerror(errno));
	ret = snap_state_write(vm, fd, identity_only, err, len);
	if (!ret && ((size = lseek(fd, 0, SEEK_END)) <= 0 || size > MAX_STATE))
		ret = errorf(err, len, -EFBIG, "the state is %lld bytes", (long long)size);
	if (!ret && !(*out = malloc((size_t)size)))
		ret = errorf(err, len, -ENOMEM, "out of memory");
	if (!ret && pread(fd, *out, (size_t)size, 0) != size)
		ret = errorf(err, len, -EIO, "reading the state back: %s", strerror(errno));
	close(fd);
	if (ret) {
		free(*out);
		*out = NULL;
	}
	*n = ret ? 0 : (uint32_t)size;
	return ret;
}

/* A state file received, opened as a snapshot's (no memory file). */
static int open_blob(struct snap_image *img, const struct rec *r, struct vm_config *vc, char *err, size_t len)
{
	int fd = memfd_create("tarn-migrate-state", MFD_CLOEXEC), ret;

	if (fd < 0)
		return errorf(err, len, -errno, "memfd: %s", strerror(errno));
	if (write(fd, r->data, r->len) != (ssize_t)r->len) {
		ret = errorf(err, len, -errno, "memfd: %s", strerror(errno));
		memset(img, 0, sizeof(*img));
		img->mem_fd = -1;
	} else {
		ret = snap_open_state(img, fd, vc, err, len);
	}
	close(fd);
	return ret;
}

/* ---- the source ---- */

struct migration {
	struct vm *vm;
	struct mig_params p;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t done; /* st.state left MIG_ACTIVE */
	struct mig_stats st; /* under lock */
	atomic_bool cancel;
	bool committed; /* GO sent: too late to cancel (lock) */
	bool joined;
	int fd;
	struct link l;
	uint8_t *run;  /* RUN_PAGES pages copied out of guest RAM */
	char *packed;  /* their LZ4 block */
	uint64_t tick; /* the last vm_throttle_tick */
	uint64_t pace_t0, pace_b0; /* max_bandwidth: the round's start, and the bytes sent then */
	/* copy_disks: each writable disk, and its chunks still to send */
	struct disk_copy {
		struct virtio_dev *vd;
		uint64_t size, *need;
	} disk[VM_MAX_DISKS];
	int nr_disks;
	uint8_t *chunk; /* one chunk read off a disk */
	uint64_t start;
};

const char *mig_state_name(enum mig_state s)
{
	static const char *const names[] = { "none", "active", "completed", "failed", "cancelled" };

	return s <= MIG_CANCELLED ? names[s] : "?";
}

static int mig_connect(const char *to, char *err, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	struct sockaddr_storage sa;
	socklen_t sl;
	char host[256];
	const char *colon;
	int fd, r, e;

	if (!strncmp(to, "unix:", 5)) {
		struct sockaddr_un *u = (struct sockaddr_un *)&sa;

		if (strlen(to + 5) >= sizeof(u->sun_path) || !to[5])
			return errorf(err, len, -EINVAL, "%s: the path is empty or too long", to);
		memset(u, 0, sizeof(*u));
		u->sun_family = AF_UNIX;
		strcpy(u->sun_path, to + 5);
		sl = sizeof(*u);
	} else {
		colon = strrchr(to, ':');
		if (!colon || !colon[1] || (size_t)(colon - to) >= sizeof(host))
			return errorf(err, len, -EINVAL, "%s: expected HOST:PORT or unix:PATH", to);
		snprintf(host, sizeof(host), "%.*s", (int)(colon - to), to);
		if (host[0] == '[' && host[strlen(host) - 1] == ']') {
			memmove(host, host + 1, strlen(host));
			host[strlen(host) - 1] = 0;
		}
		if ((r = getaddrinfo(host, colon + 1, &hints, &res)))
			return errorf(err, len, -EHOSTUNREACH, "%s: %s", to, gai_strerror(r));
		memcpy(&sa, res->ai_addr, res->ai_addrlen);
		sl = res->ai_addrlen;
		freeaddrinfo(res);
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return errorf(err, len, -errno, "socket: %s", strerror(errno));
	if (connect(fd, (struct sockaddr *)&sa, sl) && errno != EINPROGRESS) {
		e = errno;
		close(fd);
		return errorf(err, len, -e, "connecting to %s: %s", to, strerror(e));
	}
	struct pollfd p = { .fd = fd, .events = POLLOUT };

	e = 0;
	r = poll(&p, 1, CONNECT_MS);
	if (r <= 0)
		e = r ? errno : ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &(socklen_t){ sizeof(e) }))
		e = errno;
	if (e) {
		close(fd);
		return errorf(err, len, -e, "connecting to %s: %s", to, strerror(e));
	}
	return fd;
}

static void tick(struct migration *m)
{
	uint64_t now = monotonic_ns();

	if (now - m->tick >= VM_THROTTLE_SLICE_NS) {
		m->tick = now;
		vm_throttle_tick(m->vm);
	}
}

/* max_bandwidth, while the VM runs: wait until the bytes sent since the
 * round began are within the rate (the last round, paused, goes at full
 * speed). */
static int pace(struct migration *m)
{
	for (;;) {
		uint64_t now = monotonic_ns(), sent = m->l.bytes - m->pace_b0, due;

		if (!m->p.max_bandwidth || vm_is_paused(m->vm))
			return 0;
		due = m->pace_t0 + (uint64_t)((double)sent * 1e9 / (double)m->p.max_bandwidth);
		if (due <= now)
			return 0;
		if (atomic_load(&m->cancel))
			return -ECANCELED;
		tick(m);
		nanosleep(&(struct timespec){ 0, (long)(due - now < 5000000 ? due - now : 5000000) }, NULL);
	}
}

/* Pages [pg, pg + n) of the run buffer as one record. */
static int send_run(struct migration *m, uint64_t pg, uint32_t n, int fill)
{
	struct link *l = &m->l;
	int ret;

	if (!n)
		return 0;
	if ((ret = pace(m)))
		return ret;
	tick(m);
	if (fill >= 0) {
		uint8_t b = (uint8_t)fill;

		return send_rec(l, REC_FILL, pg * PAGE, n, &b, 1);
	}
	if (m->p.compress) {
		int c = LZ4_compress_default((const char *)m->run, m->packed, (int)(n * PAGE),
					     LZ4_compressBound(RUN_PAGES * PAGE));

		if (c > 0 && (uint32_t)c < n * PAGE * 7 / 8)
			return send_rec(l, REC_PAGES_LZ4, pg * PAGE, n, m->packed, (uint32_t)c);
	}
	return send_rec(l, REC_PAGES, pg * PAGE, n, m->run, n * PAGE);
}

/* Send the pages whose bits are set (copied first: the guest may write
 * them meanwhile, and a record's checksum must hold), runs of
 * consecutive pages as one record, pages of one byte repeated as a fill.
 * *sent: how many. */
static int send_pages(struct migration *m, const uint64_t *bits, uint64_t *sent)
{
	const uint8_t *ram = m->vm->mem.base;
	uint64_t pages = m->vm->mem.ram_size / PAGE, start = 0, filled = 0;
	uint32_t n = 0;
	int fill = -1, ret = 0;

	*sent = 0;
	for (uint64_t pg = 0; pg <= pages && !ret; pg++) {
		bool dirty = pg < pages && (bits[pg / 64] >> (pg % 64) & 1);
		int f = -1;

		if (dirty) {
			const uint8_t *p = ram + pg * PAGE;

			/* One byte repeated, seen on the page itself; the copy
			 * below is what is sent when it is not. */
			if (!memcmp(p, p + 1, PAGE - 1))
				f = p[0];
		}
		/* The run so far ends here: not dirty, of another kind, or full. */
		if (n && (!dirty || f != fill || pg != start + n || n == RUN_PAGES)) {
			ret = send_run(m, start, n, fill);
			n = 0;
		}
		if (!dirty || ret)
			continue;
		if (atomic_load(&m->cancel))
			return -ECANCELED;
		if (!n) {
			start = pg;
			fill = f;
		}
		if (f < 0)
			memcpy(m->run + (size_t)n * PAGE, ram + pg * PAGE, PAGE);
		else
			filled++;
		n++;
		(*sent)++;
	}
	pthread_mutex_lock(&m->lock);
	m->st.pages_total += *sent;
	m->st.pages_filled += filled;
	m->st.bytes_wire = m->l.bytes;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* The disk chunks noted since the last take join each disk's need. */
static uint64_t take_disks(struct migration *m)
{
	uint64_t n = 0;

	for (int i = 0; i < m->nr_disks; i++) {
		struct disk_copy *d = &m->disk[i];
		uint64_t chunks = (d->size + VIRTIO_BLK_COPY_CHUNK - 1) / VIRTIO_BLK_COPY_CHUNK;

		virtio_blk_take(d->vd, d->need);
		for (uint64_t w = 0; w < (chunks + 63) / 64; w++)
			n += (uint64_t)__builtin_popcountll(d->need[w]);
	}
	return n;
}

/* Send the disk chunks in need (read now: what a write since changed is
 * noted again), zeros as a length. *bytes: the disk bytes sent. */
static int send_disks(struct migration *m, uint64_t *bytes)
{
	int ret = 0;

	*bytes = 0;
	for (int i = 0; i < m->nr_disks && !ret; i++) {
		struct disk_copy *d = &m->disk[i];
		uint64_t chunks = (d->size + VIRTIO_BLK_COPY_CHUNK - 1) / VIRTIO_BLK_COPY_CHUNK;

		for (uint64_t c = 0; c < chunks && !ret; c++) {
			uint64_t off = c * VIRTIO_BLK_COPY_CHUNK;
			uint32_t n = (uint32_t)(d->size - off < VIRTIO_BLK_COPY_CHUNK ? d->size - off : VIRTIO_BLK_COPY_CHUNK);

			if (!(d->need[c / 64] >> (c % 64) & 1))
				continue;
			if (atomic_load(&m->cancel))
				return -ECANCELED;
			if ((ret = pace(m)))
				return ret;
			tick(m);
			if ((ret = virtio_blk_copy_read(d->vd, off, m->chunk, n)))
				return ret;
			if (!m->chunk[0] && !memcmp(m->chunk, m->chunk + 1, n - 1)) {
				uint64_t zeros = n;

				ret = send_rec(&m->l, REC_DISK_ZERO, off, (uint32_t)i, &zeros, 8);
			} else {
				ret = send_rec(&m->l, REC_DISK, off, (uint32_t)i, m->chunk, n);
			}
			d->need[c / 64] &= ~(1ULL << (c % 64));
			*bytes += n;
		}
	}
	pthread_mutex_lock(&m->lock);
	m->st.disk_bytes += *bytes;
	m->st.bytes_wire = m->l.bytes;
	pthread_mutex_unlock(&m->lock);
	return ret;
}

/* copy_disks: every writable disk noted whole, to go in the first round. */
static int start_disks(struct migration *m, char *err, size_t len)
{
	struct virtio_dev *vd;
	int ret;

	for (int i = 0; m->p.copy_disks && (vd = vm_disk(m->vm, i)); i++) {
		struct disk_copy *d = &m->disk[m->nr_disks];
		uint64_t size = virtio_blk_copy_size(vd);

		if (!size)
			continue; /* read-only: the destination opens its own */
		d->vd = vd;
		d->size = size;
		d->need = calloc((size / VIRTIO_BLK_COPY_CHUNK + 64) / 64, sizeof(uint64_t));
		if (!d->need || (ret = virtio_blk_track(vd)))
			return errorf(err, len, d->need ? ret : -ENOMEM, "disk %d: cannot track its writes", i);
		m->nr_disks++;
	}
	if (m->nr_disks && !(m->chunk = aligned_alloc(4096, VIRTIO_BLK_COPY_CHUNK)))
		return errorf(err, len, -ENOMEM, "out of memory");
	return 0;
}

static uint64_t count_bits(const uint64_t *bits, size_t words)
{
	uint64_t n = 0;

	for (size_t i = 0; i < words; i++)
		n += (uint64_t)__builtin_popcountll(bits[i]);
	return n;
}

/* The end of a migration that failed: why, and where that leaves the VM. */
static void set_failed(struct migration *m, enum mig_state s, const char *why, const char *after)
{
	pthread_mutex_lock(&m->lock);
	m->st.state = s;
	snprintf(m->st.error, sizeof(m->st.error), "%.300s; %s", why, after);
	pthread_mutex_unlock(&m->lock);
}

/* The pre-copy rounds: until what is dirty would go within the budget. */
static int precopy(struct migration *m, uint64_t *need, char *err, size_t len)
{
	struct vm *vm = m->vm;
	size_t words = gm_dirty_words(&vm->mem);
	uint64_t pages = vm->mem.ram_size / PAGE, rate = 0; /* bytes a second */
	int strikes = 0, throttle = 0, ret;

	for (uint64_t pg = 0; pg < pages; pg++)
		need[pg / 64] |= 1ULL << (pg % 64);
	for (unsigned round = 0;; round++) {
		uint64_t t0 = monotonic_ns(), sent, dirty, dt, disk_sent, disk_dirty;

		m->pace_t0 = t0;
		m->pace_b0 = m->l.bytes;
		if ((ret = send_pages(m, need, &sent)) || (ret = send_disks(m, &disk_sent)))
			return errorf(err, len, ret, "round %u: %s", round + 1, errtext(ret));
		if ((ret = send_rec(&m->l, REC_ROUND, 0, round, NULL, 0)))
			return errorf(err, len, ret, "round %u: %s", round + 1, errtext(ret));
		dt = monotonic_ns() - t0;
		/* The rate, in bytes of guest RAM and disk a second. */
		if (sent * PAGE + disk_sent >= (1u << 20) && dt)
			rate = (uint64_t)((double)(sent * PAGE + disk_sent) * 1e9 / (double)dt);
		memset(need, 0, words * sizeof(uint64_t));
		if ((ret = vm_dirty_take(vm, need)))
			return errorf(err, len, ret, "reading the dirty pages: %s", strerror(-ret));
		dirty = count_bits(need, words);
		disk_dirty = take_disks(m);
		pthread_mutex_lock(&m->lock);
		if (round < MIG_ROUNDS_KEPT)
			m->st.pages_round[round] = sent;
		m->st.rounds = round + 1;
		m->st.remaining = dirty;
		pthread_mutex_unlock(&m->lock);
		pr_info("migration: round %u sent %llu pages and %llu KiB of disk in %.1f ms; %llu pages and %llu "
			"disk chunks dirty since", round + 1, (unsigned long long)sent, (unsigned long long)(disk_sent >> 10),
			(double)dt / 1e6, (unsigned long long)dirty, (unsigned long long)disk_dirty);
		/* What is left goes while the VM is paused: within the budget? */
		uint64_t left = dirty * PAGE + disk_dirty * VIRTIO_BLK_COPY_CHUNK;

		if (!left || (rate && (double)left * 1e9 / (double)rate <= (double)m->p.downtime_ns))
			return 0;
		if (monotonic_ns() - m->start > m->p.max_time_ns)
			return errorf(err, len, -ETIMEDOUT,
				      "it did not converge in %llu s: %llu pages (%llu MiB) written again in a round of %llu "
				      "sent%s",
				      (unsigned long long)(m->p.max_time_ns / 1000000000ULL), (unsigned long long)dirty,
				      (unsigned long long)(dirty * PAGE >> 20), (unsigned long long)sent,
				      throttle ? "" : " (auto-converge off)");
		/* Auto-converge: the guest wrote more than half of what a round
		 * sent, twice: it sleeps a larger share of its time. */
		if (m->p.auto_converge && left * 2 > sent * PAGE + disk_sent && ++strikes >= 2) {
			strikes = 0;
			throttle = throttle ? throttle + 10 : 20;
			if (throttle > VM_THROTTLE_MAX)
				throttle = VM_THROTTLE_MAX;
			vm_throttle(vm, throttle);
			pthread_mutex_lock(&m->lock);
			m->st.throttle_pct = throttle;
			pthread_mutex_unlock(&m->lock);
			pr_info("migration: the guest's vCPUs throttled to %d%%", throttle);
		}
	}
}

/* Connect, say what the VM is, wait for the destination to build it. */
static int setup(struct migration *m, char *err, size_t len)
{
	uint8_t hello[MIG_HELLO_SIZE] = MIG_MAGIC, *id;
	uint32_t n;
	struct rec r;
	int ret;

	m->fd = mig_connect(m->p.to, err, len);
	if (m->fd < 0)
		return m->fd;
	m->l.fd = m->fd;
	put32(hello + 8, MIG_VERSION);
	put32(hello + 12, 0);
	if ((ret = state_blob(m->vm, true, &id, &n, err, len)))
		return ret;
	ret = link_write(&m->l, hello, sizeof(hello));
	if (!ret)
		ret = send_rec(&m->l, REC_IDENTITY, 0, 0, id, n);
	free(id);
	if (ret)
		return errorf(err, len, ret, "sending what the VM is: %s", errtext(ret));
	return expect(&m->l, &r, REC_READY, BUILD_MS, "the destination to build the VM", err, len);
}

/* The stop-and-copy: paused, the rest of memory, the disks let go, the
 * state; then the destination's word. */
static int handover(struct migration *m, uint64_t *need, bool *given, bool *resume, char *err, size_t len)
{
	struct vm *vm = m->vm;
	uint64_t sent;
	uint8_t *state;
	uint32_t n;
	struct rec r;
	int ret;

	vm_throttle(vm, 0);
	*resume = !vm_is_paused(vm);
	if ((ret = vm_pause(vm)))
		return errorf(err, len, ret, "pausing the VM: %s", strerror(-ret));
	/* need holds what the last round left; add what came since. */
	if ((ret = vm_dirty_take(vm, need)))
		return errorf(err, len, ret, "reading the dirty pages: %s", strerror(-ret));
	uint64_t disk_sent;

	take_disks(m); /* the disks are quiet: paused */
	if ((ret = send_pages(m, need, &sent)) || (ret = send_disks(m, &disk_sent)))
		return errorf(err, len, ret, "the last round: %s", errtext(ret));
	pthread_mutex_lock(&m->lock);
	if (m->st.rounds < MIG_ROUNDS_KEPT)
		m->st.pages_round[m->st.rounds] = sent;
	m->st.rounds++;
	m->st.remaining = 0;
	pthread_mutex_unlock(&m->lock);
	if ((ret = vm_handover(vm, true, err, len)))
		return ret;
	*given = true;
	if ((ret = state_blob(vm, false, &state, &n, err, len)))
		return ret;
	ret = send_rec(&m->l, REC_STATE, 0, 0, state, n);
	free(state);
	if (ret)
		return errorf(err, len, ret, "sending the state: %s", errtext(ret));
	return expect(&m->l, &r, REC_APPLIED, BUILD_MS, "the destination to apply the state", err, len);
}

/* After a failed write: the records the destination sent, up to its
 * error (half a second at most). -EPROTO with its text in why, else
 * another -errno. */
static int recv_until_error(struct migration *m, char *why, size_t len)
{
	struct link l = { .fd = m->fd, .buf = m->l.buf, .buf_cap = m->l.buf_cap };
	struct rec r;
	int ret;

	while (!(ret = recv_rec(&l, &r, 500, why, len)))
		;
	m->l.buf = l.buf; /* grown, perhaps */
	m->l.buf_cap = l.buf_cap;
	return ret;
}

static void *mig_thread(void *arg)
{
	struct migration *m = arg;
	struct vm *vm = m->vm;
	size_t words = gm_dirty_words(&vm->mem);
	uint64_t *need = calloc(words, sizeof(uint64_t)), t_down = 0;
	bool given = false, resume = true;
	char err[512], why[600];
	struct rec r;
	int ret;

	pthread_setname_np(pthread_self(), "migrate");
	if (!need || !m->run || !m->packed) {
		ret = errorf(err, sizeof(err), -ENOMEM, "out of memory");
		goto fail;
	}
	if ((ret = setup(m, err, sizeof(err))))
		goto fail;
	pthread_mutex_lock(&m->lock);
	m->st.setup_ms = (monotonic_ns() - m->start) / 1000000;
	pthread_mutex_unlock(&m->lock);
	if ((ret = vm_dirty_start(vm))) {
		errorf(err, sizeof(err), ret, "cannot track dirty pages: %s",
		       ret == -EOPNOTSUPP ? "a vhost-user NIC's back end writes guest memory unseen" : strerror(-ret));
		goto fail;
	}
	if ((ret = start_disks(m, err, sizeof(err))))
		goto fail;
	if ((ret = vm_dirty_take(vm, need))) { /* what was written before counts as sent in round 1 */
		errorf(err, sizeof(err), ret, "reading the dirty pages: %s", strerror(-ret));
		goto fail;
	}
	if ((ret = precopy(m, need, err, sizeof(err))))
		goto fail;
	t_down = monotonic_ns();
	if ((ret = handover(m, need, &given, &resume, err, sizeof(err))))
		goto fail;
	pthread_mutex_lock(&m->lock);
	if (atomic_load(&m->cancel)) {
		pthread_mutex_unlock(&m->lock);
		ret = errorf(err, sizeof(err), -ECANCELED, "cancelled");
		goto fail;
	}
	m->committed = true;
	pthread_mutex_unlock(&m->lock);
	/* From GO on the destination owns the VM. */
	m->l.cancel = NULL;
	if ((ret = send_rec(&m->l, REC_GO, 0, resume, NULL, 0)))
		snprintf(why, sizeof(why), "telling the destination to run the VM: %s", errtext(ret));
	else
		ret = expect(&m->l, &r, REC_RUNNING, IDLE_MS, "the destination to run the VM", why, sizeof(why));
	if (ret) {
		pr_err("migration to %s: %s; the VM stays paused here (it may run there)", m->p.to, why);
		pthread_mutex_lock(&m->lock);
		m->st.source_paused = true;
		pthread_mutex_unlock(&m->lock);
		set_failed(m, MIG_FAILED, why,
			   "the VM stays paused here: find out whether it runs at the destination before resuming it");
		goto out;
	}
	pthread_mutex_lock(&m->lock);
	m->st.downtime_ms = (monotonic_ns() - t_down) / 1000000;
	m->st.total_ms = (monotonic_ns() - m->start) / 1000000;
	m->st.bytes_wire = m->l.bytes;
	m->st.state = MIG_COMPLETED;
	pthread_mutex_unlock(&m->lock);
	pr_info("migration to %s: done in %llu ms, %u rounds, %llu MiB on the wire, the VM paused %llu ms", m->p.to,
		(unsigned long long)m->st.total_ms, m->st.rounds, (unsigned long long)(m->l.bytes >> 20),
		(unsigned long long)m->st.downtime_ms);
	vm->migrated = true;
	vm_request_stop(vm, VM_EXIT_POWEROFF);
	goto out;
fail:
	vm_throttle(vm, 0);
	/* A destination that gave up said why before it closed: that is the
	 * reason, not the broken pipe our next write met. */
	if (m->fd >= 0 && (ret == -EPIPE || ret == -ECONNRESET) &&
	    recv_until_error(m, why, sizeof(why)) == -EPROTO) {
		snprintf(err, sizeof(err), "%.*s", (int)sizeof(err) - 1, why);
		ret = -EPROTO;
	}
	/* Tell the destination why, unless it is gone: a second at most. */
	if (m->fd >= 0 && ret != -ECONNRESET && ret != -EPROTO && ret != -ETIMEDOUT)
		(void)send_text(&(struct link){ .fd = m->fd, .idle_ms = 1000 }, REC_ERROR, err);
	if (given && vm_handover(vm, false, why, sizeof(why)))
		pr_err("migration: taking the disks back: %s", why);
	if (t_down && resume && vm_resume(vm))
		pr_err("migration: cannot resume the VM");
	pr_warn("migration to %s failed: %s; the VM %s here", m->p.to, err, resume ? "runs on" : "stays paused");
	set_failed(m, atomic_load(&m->cancel) ? MIG_CANCELLED : MIG_FAILED, err,
		   resume ? "the VM runs on here" : "the VM stays paused here, as it was");
out:
	pthread_mutex_lock(&m->lock);
	if (!m->st.total_ms)
		m->st.total_ms = (monotonic_ns() - m->start) / 1000000;
	m->st.bytes_wire = m->l.bytes;
	pthread_cond_broadcast(&m->done);
	pthread_mutex_unlock(&m->lock);
	if (m->fd >= 0)
		close(m->fd);
	m->fd = -1;
	free(need);
	return NULL;
}

int mig_start(struct migration **out, struct vm *vm, const struct mig_params *p, char *err, size_t len)
{
	struct migration *m = *out;
	int ret;

	if (m) {
		bool active;

		pthread_mutex_lock(&m->lock);
		active = m->st.state == MIG_ACTIVE;
		pthread_mutex_unlock(&m->lock);
		if (active)
			return errorf(err, len, -EBUSY, "a migration to %s is under way", m->p.to);
		if (m->st.state == MIG_FAILED && m->st.source_paused)
			return errorf(err, len, -EBUSY, "the last migration's end is unknown (%s)", m->st.error);
		mig_free(m);
		*out = NULL;
	}
	if (vm->mem.fd >= 0)
		return errorf(err, len, -EOPNOTSUPP, "a VM with a vhost-user NIC is not migrated yet (its back end "
			      "writes guest memory tarn cannot follow)");
	/* The jail's filter has no socket(2) or connect(2): refused here
	 * rather than the process killed. */
	if (jail_entered())
		return errorf(err, len, -EPERM, "a jailed tarn does not migrate on its own (tarnd's migration is "
			      "not there yet)");
	if (!vm->cpu->platform_get)
		return errorf(err, len, -ENOSYS, "the %s backend cannot save its interrupt controllers", vm->cpu->name);
	m = calloc(1, sizeof(*m));
	if (!m)
		return errorf(err, len, -ENOMEM, "out of memory");
	m->vm = vm;
	m->p = *p;
	m->fd = -1;
	m->l.fd = -1;
	m->l.cancel = &m->cancel;
	m->run = malloc(RUN_PAGES * PAGE);
	m->packed = malloc((size_t)LZ4_compressBound(RUN_PAGES * PAGE));
	m->start = monotonic_ns();
	m->st.state = MIG_ACTIVE;
	snprintf(m->st.to, sizeof(m->st.to), "%s", p->to);
	pthread_mutex_init(&m->lock, NULL);
	pthread_cond_init(&m->done, NULL);
	ret = pthread_create(&m->thread, NULL, mig_thread, m);
	if (ret) {
		free(m->run);
		free(m->packed);
		free(m);
		return errorf(err, len, -ret, "cannot start the migration's thread: %s", strerror(ret));
	}
	*out = m;
	return 0;
}

void mig_get_stats(struct migration *m, struct mig_stats *out)
{
	pthread_mutex_lock(&m->lock);
	*out = m->st;
	if (m->st.state == MIG_ACTIVE) {
		out->total_ms = (monotonic_ns() - m->start) / 1000000;
		out->bytes_wire = m->l.bytes;
	}
	pthread_mutex_unlock(&m->lock);
}

void mig_wait(struct migration *m, struct mig_stats *out)
{
	pthread_mutex_lock(&m->lock);
	while (m->st.state == MIG_ACTIVE)
		pthread_cond_wait(&m->done, &m->lock);
	pthread_mutex_unlock(&m->lock);
	mig_get_stats(m, out);
}

int mig_cancel(struct migration *m)
{
	int ret = 0;

	if (!m)
		return -ENOENT;
	pthread_mutex_lock(&m->lock);
	if (m->st.state != MIG_ACTIVE)
		ret = -ENOENT;
	else if (m->committed)
		ret = -EBUSY;
	else
		atomic_store(&m->cancel, true);
	pthread_mutex_unlock(&m->lock);
	return ret;
}

void mig_join(struct migration *m)
{
	if (!m || m->joined)
		return;
	mig_cancel(m);
	pthread_join(m->thread, NULL);
	m->joined = true;
}

void mig_free(struct migration *m)
{
	if (!m)
		return;
	mig_join(m);
	for (int i = 0; i < m->nr_disks; i++)
		free(m->disk[i].need);
	free(m->chunk);
	free(m->l.buf);
	free(m->run);
	free(m->packed);
	pthread_mutex_destroy(&m->lock);
	pthread_cond_destroy(&m->done);
	free(m);
}

/* ---- the destination ---- */

struct mig_incoming {
	struct link l;
	struct snap_image id, state; /* what the VM is; at the end, its state */
	struct vm_config vc;	     /* id's configuration, for the check at the end */
	const struct snap_section *conf;
	bool disk_checked[VM_MAX_DISKS];
};

int mig_listen(const char *addr, char *err, size_t len)
{
	struct sockaddr_un u = { .sun_family = AF_UNIX };
	int fd;

	if (strncmp(addr, "unix:", 5))
		return http_listen_tcp(addr, "--incoming", err, len);
	if (!addr[5] || strlen(addr + 5) >= sizeof(u.sun_path))
		return errorf(err, len, -EINVAL, "--incoming %s: the path is empty or too long", addr);
	strcpy(u.sun_path, addr + 5);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&u, sizeof(u)) || listen(fd, 4)) {
		int e = errno;

		if (fd >= 0)
			close(fd);
		return errorf(err, len, -e, "--incoming %s: %s", addr, strerror(e));
	}
	return fd;
}

int mig_accept(struct mig_incoming **out, int listen_fd, struct vm_config *vc, char *err, size_t len)
{
	struct mig_incoming *in = calloc(1, sizeof(*in));
	uint8_t hello[MIG_HELLO_SIZE];
	char why[600];
	struct rec r;
	int ret;

	*out = NULL;
	if (!in)
		return errorf(err, len, -ENOMEM, "out of memory");
	in->id.mem_fd = in->state.mem_fd = -1;
	for (;;) { /* a connection that says nothing, or not our language, is dropped */
		in->l.fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (in->l.fd < 0) {
			if (errno == EINTR)
				continue;
			ret = errorf(err, len, -errno, "accept: %s", strerror(errno));
			free(in);
			return ret;
		}
		ret = link_read(&in->l, hello, sizeof(hello), CONNECT_MS);
		if (!ret && !memcmp(hello, MIG_MAGIC, 8))
			break;
		pr_warn("incoming: a connection that is not a tarn migration (%s): dropped",
			ret ? errtext(ret) : "no greeting");
		close(in->l.fd);
	}
	*out = in;
	if (get32(hello + 8) != MIG_VERSION) {
		ret = errorf(err, len, -EPROTONOSUPPORT, "the source speaks migration version %u; this tarn %u",
			     get32(hello + 8), MIG_VERSION);
		mig_refuse(in, err);
		return ret;
	}
	if ((ret = expect(&in->l, &r, REC_IDENTITY, IDLE_MS, "what the VM is", err, len)))
		return ret;
	if ((ret = open_blob(&in->id, &r, vc, why, sizeof(why)))) {
		errorf(err, len, ret, "what the VM is: %s", why);
		mig_refuse(in, err);
		return ret;
	}
	in->vc = *vc;
	in->conf = snap_find(&in->id.r, SNAP_ID("CONF"), 0);
	vc->incoming = true;
	return 0;
}

void mig_refuse(struct mig_incoming *in, const char *why)
{
	if (in && in->l.fd >= 0)
		(void)send_text(&in->l, REC_ERROR, why);
}

/* A page record into guest RAM, its place checked. */
static int put_pages(struct vm *vm, const struct rec *r, char *err, size_t len)
{
	uint64_t size = (uint64_t)r->arg * PAGE;
	uint8_t *dst = vm->mem.base + r->off;

	if (!r->arg || r->arg > RUN_PAGES || r->off % PAGE || r->off > vm->mem.ram_size ||
	    size > vm->mem.ram_size - r->off)
		return errorf(err, len, -EPROTO, "%u pages at byte %#llx: outside guest RAM (%llu MiB)", r->arg,
			      (unsigned long long)r->off, (unsigned long long)(vm->mem.ram_size >> 20));
	switch (r->type) {
	case REC_PAGES:
		if (r->len != size)
			return errorf(err, len, -EPROTO, "%u pages in %u bytes", r->arg, r->len);
		memcpy(dst, r->data, size);
		return 0;
	case REC_PAGES_LZ4:
		if (LZ4_decompress_safe((const char *)r->data, (char *)dst, (int)r->len, (int)size) != (int)size)
			return errorf(err, len, -EPROTO, "%u compressed pages at byte %#llx do not unpack", r->arg,
				      (unsigned long long)r->off);
		return 0;
	default: /* REC_FILL */
		if (r->len != 1)
			return errorf(err, len, -EPROTO, "a fill record with %u bytes", r->len);
		/* Zeros: give the pages back (they read as zeros), so that a
		 * mostly empty guest costs this host little. */
		if (!r->data[0] && !madvise(dst, size, MADV_DONTNEED))
			return 0;
		memset(dst, r->data[0], size);
		return 0;
	}
}

/* The path of a --disk spec, up to its options. */
static size_t spec_path_len(const char *spec)
{
	const char *comma = strchr(spec, ',');

	return comma ? (size_t)(comma - spec) : strlen(spec);
}

/* A disk record: onto the disk's copy here, which must not be the
 * source's own file (a shared path would take the copy's stale blocks over
 * the running guest's). */
static int put_disk(struct mig_incoming *in, struct vm *vm, const struct rec *r, char *err, size_t len)
{
	static const uint8_t zeros[VIRTIO_BLK_COPY_CHUNK];
	struct virtio_dev *vd = r->arg < VM_MAX_DISKS ? vm_disk(vm, (int)r->arg) : NULL;
	uint64_t n = r->len, size = vd ? virtio_blk_copy_size(vd) : 0;
	int ret;

	if (r->type == REC_DISK_ZERO)
		memcpy(&n, r->data, 8);
	if (!size)
		return errorf(err, len, -EPROTO, "disk %u: not a writable disk here", r->arg);
	if (!in->disk_checked[r->arg]) {
		const char *src = in->vc.disks[r->arg], *dst = vm->cfg.disks[r->arg];

		if (src && spec_path_len(src) == spec_path_len(dst) && !strncmp(src, dst, spec_path_len(src)))
			return errorf(err, len, -EINVAL, "disk %u: copying it onto the source's own file %.*s: give "
				      "--disk a copy's path here, or migrate without copy_disks (shared storage)",
				      r->arg, (int)spec_path_len(src), src);
		in->disk_checked[r->arg] = true;
	}
	if (!n || n > VIRTIO_BLK_COPY_CHUNK || r->off > size || n > size - r->off)
		return errorf(err, len, -EPROTO, "disk %u: %llu bytes at %llu: outside its %llu", r->arg,
			      (unsigned long long)n, (unsigned long long)r->off, (unsigned long long)size);
	ret = virtio_blk_copy_write(vd, r->off, r->type == REC_DISK ? r->data : zeros, n);
	return ret ? errorf(err, len, ret, "disk %u: writing at %llu: %s", r->arg, (unsigned long long)r->off,
			    strerror(-ret)) : 0;
}

int mig_receive(struct mig_incoming *in, struct vm *vm, char *err, size_t len)
{
	struct vm_config vc;
	const struct snap_section *conf;
	uint64_t t0, pages = 0;
	unsigned rounds = 0;
	char why[600];
	struct rec r;
	int ret;

	if ((ret = send_rec(&in->l, REC_READY, 0, 0, NULL, 0)))
		return errorf(err, len, ret, "the source: %s", errtext(ret));
	for (;;) {
		if ((ret = recv_rec(&in->l, &r, IDLE_MS, why, sizeof(why))))
			return errorf(err, len, ret, "receiving memory: %s", why);
		if (r.type == REC_STATE)
			break;
		if (r.type == REC_ROUND) {
			rounds++;
			continue;
		}
		if (r.type == REC_DISK || r.type == REC_DISK_ZERO) {
			if ((ret = put_disk(in, vm, &r, why, sizeof(why)))) {
				errorf(err, len, ret, "receiving the disks: %s", why);
				goto refuse;
			}
			continue;
		}
		if (r.type != REC_PAGES && r.type != REC_PAGES_LZ4 && r.type != REC_FILL) {
			ret = errorf(err, len, -EPROTO, "receiving memory: a record of type %u", r.type);
			goto refuse;
		}
		if ((ret = put_pages(vm, &r, why, sizeof(why)))) {
			errorf(err, len, ret, "receiving memory: %s", why);
			goto refuse;
		}
		pages += r.arg;
	}
	t0 = monotonic_ns();
	if ((ret = open_blob(&in->state, &r, &vc, why, sizeof(why)))) {
		errorf(err, len, ret, "the VM's state: %s", why);
		goto refuse;
	}
	conf = snap_find(&in->state.r, SNAP_ID("CONF"), 0);
	if (!conf || !in->conf || conf->len != in->conf->len || memcmp(conf->data, in->conf->data, conf->len)) {
		ret = errorf(err, len, -EPROTO, "the VM's state describes another VM than the one announced");
		goto refuse;
	}
	if ((ret = vm_restore_state(vm, &in->state, why, sizeof(why)))) {
		errorf(err, len, ret, "the VM's state: %s", why);
		goto refuse;
	}
	if ((ret = vm_handover(vm, false, why, sizeof(why)))) {
		errorf(err, len, ret, "taking the disks: %s", why);
		goto refuse;
	}
	if ((ret = send_rec(&in->l, REC_APPLIED, 0, 0, NULL, 0)) ||
	    (ret = expect(&in->l, &r, REC_GO, IDLE_MS, "the source's GO", why, sizeof(why))))
		return errorf(err, len, ret, "%s", ret == -EPIPE || ret == -ECONNRESET ? errtext(ret) : why);
	if ((r.arg & 1) && (ret = vm_resume(vm)))
		return errorf(err, len, ret, "cannot resume the VM");
	if (r.arg & 1)
		vm_announce(vm);
	(void)send_rec(&in->l, REC_RUNNING, 0, 0, NULL, 0);
	pr_info("incoming: %llu pages in %u rounds; the VM %s %.3f ms after its state arrived",
		(unsigned long long)pages, rounds + 1, r.arg & 1 ? "runs" : "is here, paused as it was,",
		(double)(monotonic_ns() - t0) / 1e6);
	return 0;
refuse:
	mig_refuse(in, err);
	return ret;
}

void mig_incoming_free(struct mig_incoming *in)
{
	if (!in)
		return;
	if (in->l.fd >= 0)
		close(in->l.fd);
	free(in->l.buf);
	snap_close(&in->id);
	snap_close(&in->state);
	free(in);
}
