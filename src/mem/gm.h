/* Guest memory: the only way any code touches guest RAM.
 *
 * Guest-physical layout (x86):
 *   [0, min(ram, 3 GiB))           RAM
 *   [3 GiB, 4 GiB)                  hole for MMIO: IOAPIC, LAPIC, devices
 *   [4 GiB, 4 GiB + rest)           RAM above the hole, if ram > 3 GiB
 *
 * Every accessor checks the whole range [gpa, gpa+len) with overflow checks
 * and fails with -EFAULT rather than returning a wild pointer: addresses
 * coming from a guest are hostile input. */
#ifndef TARN_GM_H
#define TARN_GM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GM_MAX_REGIONS 4
#define GM_HOLE_START 0xC0000000ULL /* 3 GiB: start of the 32-bit MMIO hole */
#define GM_HOLE_END 0x100000000ULL  /* 4 GiB */
#define GM_MIN_RAM (16ULL << 20)

struct gm_region {
	uint64_t gpa;
	uint64_t size;
	uint8_t *hva;
};

struct guest_mem {
	struct gm_region regions[GM_MAX_REGIONS];
	int nr_regions;
	uint64_t ram_size;
	uint8_t *base; /* one reservation backing all regions */
	size_t base_len;
	/* Shared memory (gm_init_shared): the memfd behind base, whose offset
	 * o is base + o (a vhost-user back end maps it); -1: anonymous. */
	int fd;
	/* Dirty tracking (gm_dirty_start): a bit per 4 KiB page of base, set
	 * by every write that does not come from a KVM vCPU; dirty_gen
	 * counts the takes, so that a CPU that caches writable pages (the
	 * emulator's TLB) knows to forget them. */
	uint64_t *dirty;
	uint64_t dirty_gen;
};

#define GM_PAGE 4096ULL

/* Reserve and lay out ram_size bytes of guest RAM (anonymous, lazily
 * populated). Returns 0 or -errno (-ENOMEM when the host cannot give it). */
int gm_init(struct guest_mem *gm, uint64_t ram_size) __attribute__((warn_unused_result));
/* The same in a memfd mapped shared, so that another process may map it
 * too (gm->fd): a vhost-user back end. Populated as touched, as well. */
int gm_init_shared(struct guest_mem *gm, uint64_t ram_size) __attribute__((warn_unused_result));
void gm_destroy(struct guest_mem *gm);

/* Adopt caller-provided host buffers as regions (unit tests: fake memory). */
int gm_init_fake(struct guest_mem *gm, uint64_t gpa, void *buf, uint64_t size)
	__attribute__((warn_unused_result));
/* The same with n regions (another process's guest memory mapped here: a
 * vhost-user back end). -EINVAL: none, too many, empty or wrapping, or
 * overlapping guest-physical ranges. gm_destroy unmaps nothing. */
int gm_init_regions(struct guest_mem *gm, const struct gm_region *r, int n) __attribute__((warn_unused_result));

/* Host pointer for [gpa, gpa+len) if the range lies wholly inside one RAM
 * region, else NULL. len 0 is treated as 1. */
void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len);

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
	__attribute__((warn_unused_result));
int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
	__attribute__((warn_unused_result));

/* Dirty tracking, for diff snapshots and migration. Memory is laid out as the memory
 * file is: page i of the bitmap is bytes [i * GM_PAGE, +GM_PAGE) from
 * base. gm_dirty_start: 0, -ENOMEM, -EINVAL (no reservation: fake memory);
 * on a running VM too (the bitmap is published atomically), and tracking
 * then stays on until gm_destroy.
 * gm_mark_dirty: what a writer through a host pointer calls (gm_write
 * calls it itself); does nothing when not tracking or outside RAM (the
 * range must lie in one region, as gm_ptr's do). */
int gm_dirty_start(struct guest_mem *gm) __attribute__((warn_unused_result));
void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len);
/* The same for a host pointer gm_ptr gave (len bytes from it). */
void gm_mark_dirty_hva(const struct guest_mem *gm, const void *hva, uint64_t len);
/* The bitmap's words (64 pages each). */
size_t gm_dirty_words(const struct guest_mem *gm);
/* OR the dirty bits into out (gm_dirty_words long) and clear them; bumps
 * dirty_gen. gm_dirty_restore: OR bits back (a snapshot that failed). */
void gm_dirty_take(struct guest_mem *gm, uint64_t *out);
void gm_dirty_restore(struct guest_mem *gm, const uint64_t *bits);

/* End of RAM below the hole (the e820 entry ending there). */
uint64_t gm_low_end(const struct guest_mem *gm);

#endif
