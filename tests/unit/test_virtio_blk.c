/* virtio-blk (virtio/blk.c) on the modern PCI transport, driven the way a
 * guest driver does (config space through the PCI root, BAR 0 through the
 * MMIO bus, rings and buffers in fake guest memory), against a temporary
 * image file that the test reads and writes behind the device's back. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "virtio/devices.h"
#include "virtio_harness.h"

/* virtio-blk constants (spec 5.2) the test speaks. */
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
enum { S_OK = 0, S_IOERR = 1, S_UNSUPP = 2, S_NONE = 0xee /* status byte left alone */ };
enum { F_SIZE_MAX = 1, F_SEG_MAX = 2, F_RO = 5, F_BLK_SIZE = 6, F_FLUSH = 9, F_DISCARD = 13, F_WRITE_ZEROES = 14 };
#define BIT(n) (1ULL << (n))

#define RAM_SIZE 0x80000
#define IMG_SECTORS 2048 /* 1 MiB image */
#define MAXDEV 3
#define QSIZE 16
/* Guest memory: device i's rings at RING(i) (desc, avail +VH_AVAIL, used
 * +VH_USED); request headers at HDR, status bytes at STATUS, an indirect
 * table at ITABLE, data from DATA. */
#define RING(i) (0x1000 + 0x1000 * (uint64_t)(i))
#define HDR 0x8000
#define STATUS 0x9000
#define ITABLE 0xa000
#define DATA 0x10000

struct fixture {
	struct fake_vm vm;
	struct pci_root root;
	struct virtio_dev *dev[MAXDEV];
	int ndev;
	uint8_t *ram;
	char path[64];
	int fd; /* the image, for checking behind the device's back */
	char err[256];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->ram = aligned_alloc(4096, RAM_SIZE);
	if (!f->ram)
		return -1;
	memset(f->ram, 0, RAM_SIZE);
	if (vh_vm_init(&f->vm, &f->root, NULL, f->ram, RAM_SIZE))
		return -1;
	snprintf(f->path, sizeof(f->path), "/tmp/tarn-blk-XXXXXX");
	f->fd = mkstemp(f->path);
	if (f->fd < 0 || ftruncate(f->fd, IMG_SECTORS * 512))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < f->ndev; i++)
		virtio_device_destroy(f->dev[i]);
	vh_vm_destroy(&f->vm);
	close(f->fd);
	unlink(f->path);
	free(f->ram);
	free(f);
	return 0;
}

/* Create a device on the image with options opts ("" or ",ro", ...); it
 * gets index f->ndev (PCI slot index + 1). 0 or -errno (f->err). */
static int create(struct fixture *f, const char *opts)
{
	char spec[128];
	int ret;

	snprintf(spec, sizeof(spec), "%s%s", f->path, opts);
	ret = virtio_blk_create(&f->vm.ctx, spec, &f->dev[f->ndev], f->err, sizeof(f->err));
	if (!ret)
		f->ndev++;
	return ret;
}

/* ---- guest-side driver; device i sits in slot i + 1 ---- */

static uint32_t cfg_rd(struct fixture *f, int i, unsigned reg, unsigned len)
{
	return vh_cfg_rd(&f->vm, i + 1, reg, len);
}

static uint64_t rd(struct fixture *f, int i, uint64_t off, unsigned len) { return vh_rd(&f->vm, i + 1, off, len); }
static void wr(struct fixture *f, int i, uint64_t off, unsigned len, uint64_t v) { vh_wr(&f->vm, i + 1, off, len, v); }
static uint64_t offered(struct fixture *f, int i) { return vh_offered(&f->vm, i + 1); }
static uint8_t status(struct fixture *f, int i) { return vh_status(&f->vm, i + 1); }
static uint16_t used_idx(struct fixture *f, int i) { return vh_used_idx(&f->vm, RING(i)); }

/* Reset, accept every offered feature, set up queue 0, DRIVER_OK. */
static void queue_up(struct fixture *f, int i)
{
	uint64_t feat = offered(f, i);

	vh_cfg_wr(&f->vm, i + 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	wr(f, i, VIRTIO_COMMON_STATUS, 1, 0);
	memset(f->ram + RING(i), 0, 0x1000);
	vh_negotiate(&f->vm, i + 1, feat);
	assert_true(status(f, i) & VIRTIO_STATUS_FEATURES_OK);
	vh_queue(&f->vm, i + 1, 0, QSIZE, RING(i), VIRTIO_MSI_NO_VECTOR);
	vh_driver_ok(&f->vm, i + 1);
}

struct seg {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/* Kick disk i's queue and wait until the device's workers have served
 * what is on it. */
static void kick(struct fixture *f, int i)
{
	vh_notify(&f->vm, i + 1, 0);
	virtio_device_drain(f->dev[i]);
}

/* Offer segs as one chain from descriptor 0 and kick. Returns the used length (*used_len) and whether it was used. */
static bool run_chain(struct fixture *f, int i, const struct seg *s, int n, uint32_t *used_len)
{
	uint16_t before = used_idx(f, i);

	for (int k = 0; k < n; k++)
		vh_desc(&f->vm, RING(i), (unsigned)k, s[k].gpa, s[k].len,
			(uint16_t)((s[k].write ? VIRTQ_DESC_F_WRITE : 0) | (k + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
			(uint16_t)(k + 1));
	vh_avail(&f->vm, RING(i), QSIZE, 0);
	kick(f, i);
	if (used_idx(f, i) != (uint16_t)(before + 1))
		return false;
	*used_len = vh_used_len(&f->vm, RING(i), QSIZE, before);
	return true;
}

static void put_hdr(struct fixture *f, uint32_t type, uint64_t sector)
{
	uint32_t reserved = 0;

	memcpy(f->ram + HDR, &type, 4);
	memcpy(f->ram + HDR + 4, &reserved, 4);
	memcpy(f->ram + HDR + 8, &sector, 8);
}

/* header, data segments, status byte: returns the status. */
static uint8_t request(struct fixture *f, int i, uint32_t type, uint64_t sector, const struct seg *data, int nd,
		       uint32_t *used_len)
{
	struct seg s[8] = { { HDR, 16, false } };
	uint32_t dummy;

	put_hdr(f, type, sector);
	for (int k = 0; k < nd; k++)
		s[1 + k] = data[k];
	s[1 + nd] = (struct seg){ STATUS, 1, true };
	f->ram[STATUS] = S_NONE;
	assert_true(run_chain(f, i, s, nd + 2, used_len ? used_len : &dummy));
	return f->ram[STATUS];
}

/* One data buffer at gpa, len bytes. */
static uint8_t rw(struct fixture *f, int i, uint32_t type, uint64_t sector, uint64_t gpa, uint32_t len)
{
	struct seg d = { gpa, len, type == T_IN };

	return request(f, i, type, sector, &d, 1, NULL);
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
	for (size_t k = 0; k < n; k++)
		p[k] = (uint8_t)(k * 131 + seed * 17 + (k >> 9));
}

static void file_read(struct fixture *f, uint64_t off, void *buf, size_t len)
{
	assert_int_equal(pread(f->fd, buf, len, (off_t)off), (ssize_t)len);
}

static bool file_zero(struct fixture *f, uint64_t off, size_t len)
{
	static uint8_t buf[IMG_SECTORS * 512];

	file_read(f, off, buf, len);
	return vh_all_zero(buf, len);
}

/* ---- tests ---- */

static void test_identity_and_config(void **state)
{
	struct fixture *f = *state;
	uint64_t feat, cap;

	assert_int_equal(create(f, ""), 0);
	assert_int_equal(cfg_rd(f, 0, PCI_DEVICE_ID, 2), 0x1042); /* 0x1040 + 2: block */
	pci_config_write(&f->root, 1, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	feat = offered(f, 0);
	for (unsigned b = 0; b < 64; b++) /* what is offered, and nothing else */
		assert_int_equal(!!(feat & BIT(b)),
				 b == F_SIZE_MAX || b == F_SEG_MAX || b == F_BLK_SIZE || b == F_FLUSH ||
					 b == F_DISCARD || b == F_WRITE_ZEROES || b == VIRTIO_F_INDIRECT_DESC ||
					 b == VIRTIO_F_EVENT_IDX || b == VIRTIO_F_VERSION_1);
	cap = rd(f, 0, VIRTIO_PCI_DEVICE_OFF, 4) | rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 4, 4) << 32;
	assert_int_equal(cap, IMG_SECTORS);
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 8, 4), 64 << 10); /* size_max */
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 12, 4), 254);     /* seg_max */
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 20, 4), 512);     /* blk_size */
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 40, 4), 32);	     /* max_discard_seg */
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 56, 1), 1);	     /* write_zeroes_may_unmap */
	assert_int_equal(rd(f, 0, VIRTIO_PCI_DEVICE_OFF + 60, 4), 0);	     /* past the config: nothing */
}

static void test_write_read_round_trip(void **state)
{
	struct fixture *f = *state;
	uint8_t want[1536], got[1536];
	/* 3 sectors split unevenly over two buffers each way. */
	struct seg out[2] = { { DATA, 1000, false }, { DATA + 0x3000, 536, false } };
	struct seg in[2] = { { DATA + 0x8000, 700, true }, { DATA + 0x9000, 836, true } };
	uint32_t used;

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	fill(want, sizeof(want), 1);
	memcpy(f->ram + DATA, want, 1000);
	memcpy(f->ram + DATA + 0x3000, want + 1000, 536);
	assert_int_equal(request(f, 0, T_OUT, 5, out, 2, &used), S_OK);
	assert_int_equal(used, 1); /* just the status byte */
	file_read(f, 5 * 512, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	assert_true(file_zero(f, 0, 5 * 512));
	/* Read it back into other buffers. */
	assert_int_equal(request(f, 0, T_IN, 5, in, 2, &used), S_OK);
	assert_int_equal(used, 1536 + 1);
	assert_memory_equal(f->ram + DATA + 0x8000, want, 700);
	assert_memory_equal(f->ram + DATA + 0x9000, want + 700, 836);
	/* What the host file holds, the guest reads: the last sector. */
	fill(want, 512, 9);
	assert_int_equal(pwrite(f->fd, want, 512, (IMG_SECTORS - 1) * 512), 512);
	assert_int_equal(rw(f, 0, T_IN, IMG_SECTORS - 1, DATA, 512), S_OK);
	assert_memory_equal(f->ram + DATA, want, 512);
	/* A header split over two descriptors is fine too. */
	{
		struct seg s[4] = { { HDR, 5, false }, { HDR + 5, 11, false }, { DATA, 512, true }, { STATUS, 1, true } };

		put_hdr(f, T_IN, 5);
		assert_true(run_chain(f, 0, s, 4, &used));
		assert_int_equal(f->ram[STATUS], S_OK);
		assert_memory_equal(f->ram + DATA, got, 512);
	}
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_flush_and_get_id(void **state)
{
	struct fixture *f = *state;
	uint32_t used;
	struct seg id = { DATA, 20, true };
	char want[20] = "unit-serial";

	assert_int_equal(create(f, ",serial=unit-serial"), 0);
	queue_up(f, 0);
	assert_int_equal(request(f, 0, T_FLUSH, 0, NULL, 0, &used), S_OK);
	assert_int_equal(used, 1);
	memset(f->ram + DATA, 0xff, 64);
	assert_int_equal(request(f, 0, T_GET_ID, 0, &id, 1, &used), S_OK);
	assert_int_equal(used, 21);
	assert_memory_equal(f->ram + DATA, want, 20); /* zero padded */
	assert_int_equal(f->ram[DATA + 20], 0xff);     /* nothing past the buffer */
	/* A flush with a data buffer is malformed. */
	assert_int_equal(request(f, 0, T_FLUSH, 0, &id, 1, NULL), S_IOERR);
}

static void test_default_serial(void **state)
{
	struct fixture *f = *state;
	struct seg id = { DATA, 20, true };

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	assert_int_equal(request(f, 0, T_GET_ID, 0, &id, 1, NULL), S_OK);
	assert_true(f->ram[DATA] != 0); /* derived from the image's dev/inode */
}

/* DISCARD / WRITE_ZEROES ranges at DATA: sector, num_sectors, flags. */
static uint8_t ranges(struct fixture *f, uint32_t type, const uint64_t (*r)[3], int n)
{
	struct seg s = { DATA, 16 * (uint32_t)n, false };

	for (int k = 0; k < n; k++) {
		uint32_t ns = (uint32_t)r[k][1], fl = (uint32_t)r[k][2];

		memcpy(f->ram + DATA + 16 * k, &r[k][0], 8);
		memcpy(f->ram + DATA + 16 * k + 8, &ns, 4);
		memcpy(f->ram + DATA + 16 * k + 12, &fl, 4);
	}
	return request(f, 0, type, 0, &s, 1, NULL);
}

static void test_discard_and_write_zeroes(void **state)
{
	struct fixture *f = *state;
	static uint8_t buf[256 << 10];
	struct stat st0, st1;

	assert_int_equal(create(f, ""), 0);
	if (!(offered(f, 0) & BIT(F_DISCARD)))
		SKIP_BECAUSE("the file system of %s cannot punch holes", f->path);
	queue_up(f, 0);
	fill(buf, sizeof(buf), 3);
	assert_int_equal(pwrite(f->fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	assert_int_equal(fsync(f->fd), 0);
	assert_int_equal(fstat(f->fd, &st0), 0);
	/* Discard the first 128 KiB in two ranges: it reads back as zeroes
	 * and the file gives its blocks back. */
	{
		const uint64_t r[2][3] = { { 0, 128, 0 }, { 128, 128, 0 } };

		assert_int_equal(ranges(f, T_DISCARD, r, 2), S_OK);
	}
	assert_true(file_zero(f, 0, 128 << 10));
	assert_int_equal(fstat(f->fd, &st1), 0);
	assert_true(st1.st_blocks < st0.st_blocks);
	assert_int_equal(st1.st_size, IMG_SECTORS * 512);
	assert_int_equal(rw(f, 0, T_IN, 0, DATA + 0x1000, 4096), S_OK);
	assert_true(f->ram[DATA + 0x1000] == 0 && !memcmp(f->ram + DATA + 0x1000, f->ram + DATA + 0x1001, 4095));
	/* Write zeroes, with and without unmap. */
	{
		const uint64_t r[2][3] = { { 256, 8, 0 }, { 300, 16, 1 } };

		assert_int_equal(ranges(f, T_WRITE_ZEROES, r, 2), S_OK);
	}
	assert_true(file_zero(f, 256 * 512, 8 * 512));
	assert_true(file_zero(f, 300 * 512, 16 * 512));
	assert_false(file_zero(f, 264 * 512, 512)); /* in between: untouched */
	/* Errors: unmap on a discard or an unknown flag is UNSUPP; a range
	 * off the disk is IOERR and nothing happens. */
	{
		const uint64_t unmap[1][3] = { { 400, 8, 1 } }, unknown[1][3] = { { 400, 8, 2 } },
			       off[2][3] = { { 400, 8, 0 }, { IMG_SECTORS - 4, 8, 0 } },
			       wrap[1][3] = { { UINT64_MAX - 3, 8, 0 } };

		assert_int_equal(ranges(f, T_DISCARD, unmap, 1), S_UNSUPP);
		assert_int_equal(ranges(f, T_WRITE_ZEROES, unknown, 1), S_UNSUPP);
		assert_int_equal(ranges(f, T_DISCARD, off, 2), S_IOERR);
		assert_int_equal(ranges(f, T_WRITE_ZEROES, wrap, 1), S_IOERR);
		assert_false(file_zero(f, 400 * 512, 8 * 512)); /* checked before any was done */
	}
	/* 33 ranges: more than max_discard_seg. */
	{
		static uint64_t many[33][3];

		for (int k = 0; k < 33; k++)
			many[k][0] = 400, many[k][1] = 1;
		assert_int_equal(ranges(f, T_DISCARD, (const uint64_t(*)[3])many, 33), S_IOERR);
	}
}

static void test_out_of_range(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	fill(f->ram + DATA, 4096, 5);
	assert_int_equal(rw(f, 0, T_OUT, IMG_SECTORS, DATA, 512), S_IOERR);
	assert_int_equal(rw(f, 0, T_OUT, IMG_SECTORS - 1, DATA, 1024), S_IOERR);
	assert_int_equal(rw(f, 0, T_OUT, UINT64_MAX, DATA, 512), S_IOERR);
	assert_int_equal(rw(f, 0, T_OUT, UINT64_MAX / 512 + 1, DATA, 512), S_IOERR); /* sector * 512 wraps */
	assert_int_equal(rw(f, 0, T_IN, IMG_SECTORS, DATA, 512), S_IOERR);
	assert_int_equal(rw(f, 0, T_OUT, 0, DATA, 100), S_IOERR); /* not whole sectors */
	assert_true(file_zero(f, 0, IMG_SECTORS * 512));
	struct stat st;
	assert_int_equal(fstat(f->fd, &st), 0);
	assert_int_equal(st.st_size, IMG_SECTORS * 512); /* the image did not grow */
	/* The queue is fine: the last sector can be written. */
	assert_int_equal(rw(f, 0, T_OUT, IMG_SECTORS - 1, DATA, 512), S_OK);
	assert_false(file_zero(f, (IMG_SECTORS - 1) * 512, 512));
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
}

static void test_read_only(void **state)
{
	struct fixture *f = *state;
	uint8_t data[512];

	fill(data, sizeof(data), 7);
	assert_int_equal(pwrite(f->fd, data, 512, 512), 512);
	assert_int_equal(create(f, ",ro"), 0);
	pci_config_write(&f->root, 1, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_true(offered(f, 0) & BIT(F_RO));
	assert_false(offered(f, 0) & (BIT(F_DISCARD) | BIT(F_WRITE_ZEROES)));
	queue_up(f, 0);
	memset(f->ram + DATA, 0x55, 1024);
	assert_int_equal(rw(f, 0, T_OUT, 0, DATA, 1024), S_IOERR);
	assert_true(file_zero(f, 0, 512));
	assert_int_equal(rw(f, 0, T_IN, 1, DATA, 512), S_OK);
	assert_memory_equal(f->ram + DATA, data, 512);
	assert_int_equal(request(f, 0, T_FLUSH, 0, NULL, 0, NULL), S_OK);
	/* A second read-only user may share the image. */
	assert_int_equal(create(f, ",ro"), 0);
}

static void test_bad_requests_keep_queue(void **state)
{
	struct fixture *f = *state;
	uint32_t used;

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	fill(f->ram + DATA, 512, 8);
	/* Header of 8 bytes. */
	{
		struct seg s[3] = { { HDR, 8, false }, { DATA, 512, false }, { STATUS, 1, true } };

		put_hdr(f, T_OUT, 0);
		f->ram[STATUS] = S_NONE;
		assert_true(run_chain(f, 0, s, 3, &used));
		assert_int_equal(f->ram[STATUS], S_IOERR);
	}
	/* No writable byte at all: nowhere to put a status; given back with
	 * nothing written. */
	{
		struct seg s[2] = { { HDR, 16, false }, { DATA, 512, false } };

		put_hdr(f, T_OUT, 0);
		assert_true(run_chain(f, 0, s, 2, &used));
		assert_int_equal(used, 0);
	}
	/* Unknown type. */
	assert_int_equal(request(f, 0, 99, 0, NULL, 0, NULL), S_UNSUPP);
	/* A read with readable data after the header, a write with writable
	 * data before the status: both malformed. */
	{
		struct seg mixed[2] = { { DATA, 512, false }, { DATA + 512, 512, true } };

		assert_int_equal(request(f, 0, T_IN, 0, mixed, 2, NULL), S_IOERR);
		assert_int_equal(request(f, 0, T_OUT, 0, mixed, 2, NULL), S_IOERR);
	}
	/* Too much data: 260 x 64 KiB through an indirect table (all the same
	 * buffer) is over seg_max x size_max. */
	{
		uint16_t before = used_idx(f, 0);

		put_hdr(f, T_OUT, 0);
		vh_desc(&f->vm, ITABLE, 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
		for (uint16_t k = 1; k <= 260; k++)
			vh_desc(&f->vm, ITABLE, k, DATA, 64 << 10, VIRTQ_DESC_F_NEXT, (uint16_t)(k + 1));
		vh_desc(&f->vm, ITABLE, 261, STATUS, 1, VIRTQ_DESC_F_WRITE, 0);
		vh_desc(&f->vm, RING(0), 0, ITABLE, 16 * 262, VIRTQ_DESC_F_INDIRECT, 0);
		vh_avail(&f->vm, RING(0), QSIZE, 0);
		f->ram[STATUS] = S_NONE;
		kick(f, 0);
		assert_int_equal(used_idx(f, 0), (uint16_t)(before + 1));
		assert_int_equal(f->ram[STATUS], S_IOERR);
	}
	assert_true(file_zero(f, 0, IMG_SECTORS * 512)); /* none of it was written */
	/* The queue still works. */
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
	assert_int_equal(rw(f, 0, T_OUT, 3, DATA, 512), S_OK);
	assert_false(file_zero(f, 3 * 512, 512));
}

static void test_malformed_ring_needs_reset(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	/* A chain that loops: 0 -> 1 -> 0. */
	vh_desc(&f->vm, RING(0), 0, HDR, 16, VIRTQ_DESC_F_NEXT, 1);
	vh_desc(&f->vm, RING(0), 1, DATA, 512, VIRTQ_DESC_F_NEXT, 0);
	vh_avail(&f->vm, RING(0), QSIZE, 0);
	kick(f, 0);
	assert_true(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, 0), 0);
	/* After a reset the device works again. */
	queue_up(f, 0);
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
	fill(f->ram + DATA, 512, 2);
	assert_int_equal(rw(f, 0, T_OUT, 0, DATA, 512), S_OK);
	assert_false(file_zero(f, 0, 512));
}

/* Several requests made available at once, served by the device's
 * workers side by side: each answered exactly once, with its own status,
 * its data where it belongs (writes, then reads back into fresh buffers). */
static void test_many_in_flight(void **state)
{
	enum { N = 5, LEN = 4096 };
	struct fixture *f = *state;
	uint8_t want[LEN], got[LEN];

	assert_int_equal(create(f, ""), 0);
	queue_up(f, 0);
	for (int pass = 0; pass < 2; pass++) {
		uint32_t type = pass ? T_IN : T_OUT;
		uint16_t before = used_idx(f, 0);
		bool seen[N] = { false };

		for (uint16_t r = 0; r < N; r++) {
			uint64_t hdr = HDR + 16 * r, data = DATA + (uint64_t)(pass * N + r) * LEN, sector = 8 * (7 * r + 1);
			uint16_t d = (uint16_t)(3 * r);

			memcpy(f->ram + hdr, &type, 4);
			memset(f->ram + hdr + 4, 0, 4);
			memcpy(f->ram + hdr + 8, &sector, 8);
			if (pass)
				memset(f->ram + data, 0, LEN);
			else
				fill(f->ram + data, LEN, 20u + r);
			f->ram[STATUS + r] = S_NONE;
			vh_desc(&f->vm, RING(0), d, hdr, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(d + 1));
			vh_desc(&f->vm, RING(0), d + 1u, data, LEN,
				(uint16_t)(VIRTQ_DESC_F_NEXT | (pass ? VIRTQ_DESC_F_WRITE : 0)), (uint16_t)(d + 2));
			vh_desc(&f->vm, RING(0), d + 2u, STATUS + r, 1, VIRTQ_DESC_F_WRITE, 0);
			vh_avail(&f->vm, RING(0), QSIZE, d);
		}
		kick(f, 0);
		assert_int_equal(used_idx(f, 0), (uint16_t)(before + N));
		for (unsigned n = 0; n < N; n++) {
			uint32_t id = vh_used_id(&f->vm, RING(0), QSIZE, before + n);

			assert_true(id % 3 == 0 && id < 3 * N && !seen[id / 3]);
			seen[id / 3] = true;
			assert_int_equal(vh_used_len(&f->vm, RING(0), QSIZE, before + n), pass ? LEN + 1 : 1);
		}
		for (unsigned r = 0; r < N; r++) {
			assert_int_equal(f->ram[STATUS + r], S_OK);
			fill(want, LEN, 20u + r);
			if (pass)
				memcpy(got, f->ram + DATA + (uint64_t)(N + r) * LEN, LEN);
			else
				file_read(f, 8 * (7 * r + 1) * 512ull, got, LEN);
			assert_memory_equal(got, want, LEN);
		}
	}
}

static void test_direct(void **state)
{
	struct fixture *f = *state;
	uint8_t want[8192], got[8192];
	struct seg odd[2] = { { DATA + 3, 1000, false }, { DATA + 0x2000 + 1, 8192 - 1000, false } };
	struct seg odd_in[2] = { { DATA + 0x5000 + 7, 3000, true }, { DATA + 0x7000 + 5, 8192 - 3000, true } };

	if (create(f, ",direct")) {
		if (strstr(f->err, "direct I/O"))
			SKIP_BECAUSE("%s", f->err);
		fail_msg("%s", f->err);
	}
	queue_up(f, 0);
	/* Page-aligned buffers go straight to the file. */
	fill(want, sizeof(want), 4);
	memcpy(f->ram + DATA, want, 4096);
	assert_int_equal(rw(f, 0, T_OUT, 16, DATA, 4096), S_OK);
	file_read(f, 16 * 512, got, 4096);
	assert_memory_equal(got, want, 4096);
	memset(f->ram + DATA + 0x4000, 0, 4096);
	assert_int_equal(rw(f, 0, T_IN, 16, DATA + 0x4000, 4096), S_OK);
	assert_memory_equal(f->ram + DATA + 0x4000, want, 4096);
	/* Unaligned ones through the bounce buffer, at a 512-byte offset. */
	fill(want, sizeof(want), 6);
	memcpy(f->ram + DATA + 3, want, 1000);
	memcpy(f->ram + DATA + 0x2000 + 1, want + 1000, 8192 - 1000);
	assert_int_equal(request(f, 0, T_OUT, 33, odd, 2, NULL), S_OK);
	file_read(f, 33 * 512, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	assert_int_equal(request(f, 0, T_IN, 33, odd_in, 2, NULL), S_OK);
	assert_memory_equal(f->ram + DATA + 0x5000 + 7, want, 3000);
	assert_memory_equal(f->ram + DATA + 0x7000 + 5, want + 3000, 8192 - 3000);
}

static void expect_create_error(struct fixture *f, const char *spec, const char *msg)
{
	struct virtio_dev *vd = NULL;

	f->err[0] = 0;
	assert_true(virtio_blk_create(&f->vm.ctx, spec, &vd, f->err, sizeof(f->err)) < 0);
	assert_null(vd);
	if (!strstr(f->err, msg))
		fail_msg("'%s': got '%s', expected '%s'", spec, f->err, msg);
}

static void test_create_errors(void **state)
{
	struct fixture *f = *state;
	char spec[128];

	snprintf(spec, sizeof(spec), "%s,rw", f->path);
	expect_create_error(f, spec, "unknown option 'rw'");
	snprintf(spec, sizeof(spec), "%s,serial=123456789012345678901", f->path);
	expect_create_error(f, spec, "serial=");
	expect_create_error(f, "", "no image path");
	expect_create_error(f, ",ro", "no image path");
	expect_create_error(f, "/nonexistent/tarn.img", "cannot open: No such file or directory");
	expect_create_error(f, "/tmp,ro", "not a regular file or block device");
	expect_create_error(f, "/dev/null,ro", "not a regular file or block device");
	assert_int_equal(ftruncate(f->fd, 1000), 0);
	expect_create_error(f, f->path, "size 1000 bytes is not a multiple of 512");
	assert_int_equal(ftruncate(f->fd, 0), 0);
	expect_create_error(f, f->path, "empty");
	assert_int_equal(ftruncate(f->fd, 4096), 0);
	/* One writer at a time, and no reader beside a writer. */
	assert_int_equal(create(f, ""), 0);
	expect_create_error(f, f->path, "in use by another process");
	snprintf(spec, sizeof(spec), "%s,ro", f->path);
	expect_create_error(f, spec, "in use by another process");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_config, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_read_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_and_get_id, setup, teardown),
		cmocka_unit_test_setup_teardown(test_default_serial, setup, teardown),
		cmocka_unit_test_setup_teardown(test_discard_and_write_zeroes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests_keep_queue, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_ring_needs_reset, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_in_flight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_direct, setup, teardown),
		cmocka_unit_test_setup_teardown(test_create_errors, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
