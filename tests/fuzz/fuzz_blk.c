/* libFuzzer harness for virtio-blk (virtio/blk.c): the input is a queue
 * config, negotiated features and guest memory, so the fuzzer controls the
 * rings, every request header, data buffer, discard range and status byte.
 * It kicks the real device (ops->queue_notify) on one of three disks: a
 * read-write image, a read-only one and one opened with O_DIRECT (bounce
 * path), each a small memfd. Checked: nothing outside guest RAM is touched
 * (ASan; RAM is an exact-size malloc), a malformed ring is reported through
 * virtio_pci_queue_broken, the images never change size, and the read-only
 * image never changes at all.
 *
 * The PCI transport is replaced by the stubs in virtio_stub.h: the harness
 * stands in for it and sets up the queue itself.
 *
 * The input is XORed onto a template holding a well-formed queue with one
 * request of each kind (read, write, flush, get-id, discard, write-zeroes,
 * an unknown type, a write through an indirect table): an empty input runs
 * them all, and every mutation is a small step away from valid requests.
 * Input (each byte XORed onto the template's):
 *        [0] bits 0-1 disk (0 rw, 1 ro, 2 direct), bit 2 INDIRECT_DESC,
 *            bit 3 EVENT_IDX, bit 4 DISCARD, bit 5 WRITE_ZEROES (template:
 *            all four negotiated), bit 6 kick twice
 *        [1] queue size 1 << (b & 7) (template: 32)
 *        [2..3] [4..5] [6..7] desc, avail, used offsets into guest RAM
 *        [8..] guest RAM (MEM_SIZE bytes at MEM_GPA) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/devctx.h"
#include "mem/gm.h"
#include "virtio/devices.h"
#include "virtio/virtio_pci.h"

#define MEM_SIZE 0x10000
#define MEM_GPA 0x40000
#define HDR 8
#define IMG_SIZE (64 << 10) /* 128 sectors: fuzzed sectors hit it often */
#define NDISK 3

#include "virtio_stub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- the disks ---- */
static struct guest_mem gm;
static struct devctx ctx = { .mem = &gm }; /* no VM: only guest memory (and a loop) */
static struct virtio_dev *disk[NDISK];
static int img_fd[NDISK];
static uint8_t ro_content[IMG_SIZE];

static void setup(void)
{
	static const char *const opts[NDISK] = { "", ",ro", ",direct" };
	char spec[64], err[256];

	log_threshold = LOG_ERR; /* the device's rate-limited warnings */
	for (int k = 0; k < NDISK; k++) {
		img_fd[k] = memfd_create("fuzz-blk", 0);
		CHECK(img_fd[k] >= 0 && ftruncate(img_fd[k], IMG_SIZE) == 0);
		if (k == 1) {
			for (int i = 0; i < IMG_SIZE; i++)
				ro_content[i] = (uint8_t)(i * 7 + (i >> 9));
			CHECK(pwrite(img_fd[k], ro_content, IMG_SIZE, 0) == IMG_SIZE);
		}
		snprintf(spec, sizeof(spec), "/proc/self/fd/%d%s", img_fd[k], opts[k]);
		if (virtio_blk_create(&ctx, spec, &disk[k], err, sizeof(err))) {
			fprintf(stderr, "fuzz_blk: %s\n", err);
			abort();
		}
	}
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

/* ---- the template ---- */
enum { T_IN = 0, T_OUT = 1, T_FLUSH = 4, T_GET_ID = 8, T_DISCARD = 11, T_WRITE_ZEROES = 13 };
#define T_DESC 0x0000	/* 32 descriptors */
#define T_AVAIL 0x0200
#define T_USED 0x0300
#define T_HDR 0x0400	/* one 16-byte header per request */
#define T_STATUS 0x0600
#define T_RANGES 0x0800
#define T_ITABLE 0x0a00
#define T_DATA 0x1000	/* 4 KiB per request */

/* Request r: header (type, sector) -> optional data -> status, from
 * descriptor *d of table; returns the head. */
static uint16_t put_req(uint64_t table, unsigned *d, unsigned r, uint32_t type, uint64_t sector, uint64_t data,
			uint32_t len, bool write)
{
	uint16_t head = (uint16_t)*d, i = head;

	put(T_HDR + 16 * r, &type, 4);
	put(T_HDR + 16 * r + 8, &sector, 8);
	put_desc(table, i, T_HDR + 16 * r, 16, VIRTQ_DESC_F_NEXT, (uint16_t)(i + 1));
	i++;
	if (len) {
		put_desc(table, i, data, len, (uint16_t)(VIRTQ_DESC_F_NEXT | (write ? VIRTQ_DESC_F_WRITE : 0)),
			 (uint16_t)(i + 1));
		i++;
	}
	put_desc(table, i, T_STATUS + r, 1, VIRTQ_DESC_F_WRITE, 0);
	*d = i + 1u;
	return head;
}

static void make_template(void)
{
	const uint64_t ranges[2][2] = { { 8, 8 | 0ULL << 32 }, { 16, 8 | 1ULL << 32 } }; /* sector; n | flags */
	uint16_t heads[16], n = 0, idx;
	unsigned d = 0, it = 0;

	tmpl[0] = 4 | 8 | 16 | 32;
	tmpl[1] = 5;
	tmpl[2] = T_DESC, tmpl[4] = T_AVAIL & 0xff, tmpl[5] = T_AVAIL >> 8;
	tmpl[6] = T_USED & 0xff, tmpl[7] = T_USED >> 8;
	put(T_RANGES, ranges, sizeof(ranges));
	heads[n++] = put_req(T_DESC, &d, 0, T_IN, 1, T_DATA, 1024, true);
	heads[n++] = put_req(T_DESC, &d, 1, T_OUT, 4, T_DATA + 0x1000, 2048, false);
	heads[n++] = put_req(T_DESC, &d, 2, T_FLUSH, 0, 0, 0, false);
	heads[n++] = put_req(T_DESC, &d, 3, T_GET_ID, 0, T_DATA + 0x2000, 20, true);
	heads[n++] = put_req(T_DESC, &d, 4, T_DISCARD, 0, T_RANGES, 16, false);
	heads[n++] = put_req(T_DESC, &d, 5, T_WRITE_ZEROES, 0, T_RANGES + 16, 16, false);
	heads[n++] = put_req(T_DESC, &d, 6, 99, 0, 0, 0, false);
	heads[n++] = put_req(T_DESC, &d, 7, T_IN, 126, T_DATA + 0x3000 + 1, 1024, true); /* unaligned */
	/* A write of an unaligned buffer through an indirect table. */
	(void)put_req(T_ITABLE, &it, 8, T_OUT, 40, T_DATA + 0x4000 + 3, 1536, false);
	put_desc(T_DESC, d, T_ITABLE, 16 * it, VIRTQ_DESC_F_INDIRECT, 0);
	heads[n++] = (uint16_t)d++;
	memset(tmpl + HDR + T_DATA + 0x1000, 0x5a, 2048);
	memset(tmpl + HDR + T_DATA + 0x4000 + 3, 0xa5, 1536);
	put(T_AVAIL + 4, heads, 2 * n);
	idx = n;
	put(T_AVAIL + 2, &idx, 2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static bool ready;
	struct virtio_dev *vd;
	struct vq_config cfg;
	struct stat st;
	uint8_t *mem, *in;
	int k;

	if (!ready) {
		setup();
		make_template();
		ready = true;
	}
	in = malloc(sizeof(tmpl));
	if (!in)
		return 0;
	memcpy(in, tmpl, sizeof(tmpl));
	for (size_t i = 0; i < size && i < sizeof(tmpl); i++)
		in[i] ^= data[i];
	data = in;
	k = (data[0] & 3) % NDISK;
	vd = disk[k];
	if (k != 1) /* the same start for every input: reproducible */
		CHECK(ftruncate(img_fd[k], 0) == 0 && ftruncate(img_fd[k], IMG_SIZE) == 0);
	mem = malloc(MEM_SIZE);
	if (!mem) {
		free(in);
		return 0;
	}
	memcpy(mem, data + HDR, MEM_SIZE);
	CHECK(gm_init_fake(&gm, MEM_GPA, mem, MEM_SIZE) == 0);

	/* What the driver would negotiate: a subset of the offer. */
	vd->driver_features = (1ULL << VIRTIO_F_VERSION_1 | (data[0] & 4 ? 1ULL << VIRTIO_F_INDIRECT_DESC : 0) |
			       (data[0] & 8 ? 1ULL << VIRTIO_F_EVENT_IDX : 0) | (data[0] & 16 ? 1ULL << 13 : 0) |
			       (data[0] & 32 ? 1ULL << 14 : 0)) &
			      (vd->ops->features | 1ULL << VIRTIO_F_VERSION_1);
	memset(&cfg, 0, sizeof(cfg));
	cfg.size = 1u << (data[1] & 7);
	cfg.features = vd->driver_features;
	cfg.desc_gpa = MEM_GPA + get16(data + 2);
	cfg.avail_gpa = MEM_GPA + get16(data + 4);
	cfg.used_gpa = MEM_GPA + get16(data + 6);
	broken_calls = 0;
	vd->status = VIRTIO_STATUS_DRIVER_OK; /* what the workers look for */
	vd->q[0].enabled = true;
	if (vq_init(&vd->q[0].vq, &gm, &cfg) == 0) {
		pthread_mutex_lock(&vd->lock); /* as the transport calls it */
		for (int kick = 0; kick < (data[0] & 64 ? 2 : 1) && !vd->q[0].vq.broken; kick++) {
			vd->ops->queue_notify(vd, 0);
			vd->ops->drain(vd, true); /* the workers served it */
		}
		pthread_mutex_unlock(&vd->lock);
		/* A broken ring is reported, once per kick that found it. */
		CHECK(vd->q[0].vq.broken == (broken_calls > 0));
	}
	if (!size) { /* the template itself: every request answered as it should */
		static const uint8_t want[9] = { 0, 0, 0, 0, 0, 0, 2 /* UNSUPP */, 0, 0 };
		uint16_t used;

		uint8_t img[IMG_SIZE];

		memcpy(&used, mem + T_USED + 2, 2);
		CHECK(used == 9 && !memcmp(mem + T_STATUS, want, sizeof(want)));
		CHECK(pread(img_fd[0], img, IMG_SIZE, 0) == IMG_SIZE);
		CHECK(img[4 * 512] == 0x5a && img[8 * 512 - 1] == 0x5a && img[8 * 512] == 0);
		CHECK(img[40 * 512] == 0xa5 && img[43 * 512 - 1] == 0xa5 && img[43 * 512] == 0);
	}
	CHECK(fstat(img_fd[k], &st) == 0 && st.st_size == IMG_SIZE);
	if (k == 1) {
		static uint8_t now[IMG_SIZE];

		CHECK(pread(img_fd[k], now, IMG_SIZE, 0) == IMG_SIZE);
		CHECK(memcmp(now, ro_content, IMG_SIZE) == 0);
	}
	gm_destroy(&gm);
	free(mem);
	free(in);
	return 0;
}
