/* Guest memory. One anonymous reservation backs all RAM regions, so the
 * layout around the 32-bit MMIO hole costs no host memory. It starts on a
 * 2 MiB boundary and asks for transparent huge pages (as QEMU does): where
 * the host grants them, a guest page fault fills 2 MiB at once and KVM maps
 * guest memory with large pages, which matters most where faults are dear
 * (nested KVM: 2x on the sequential disk benchmarks). */
#include "mem/gm.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void gm_add(struct guest_mem *gm, uint64_t gpa, uint8_t *hva, uint64_t size)
{
	struct gm_region *r = &gm->regions[gm->nr_regions++];

	r->gpa = gpa;
	r->hva = hva;
	r->size = size;
}

#define GM_ALIGN (2ULL << 20) /* an x86 large page */

static int gm_layout(struct guest_mem *gm, uint64_t ram_size, bool shared)
{
	uint64_t low, high, head;
	void *p;

	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	/* Backends map regions as they are (KVM slots are whole pages). */
	if (ram_size < GM_MIN_RAM || (ram_size & 0xfff))
		return -EINVAL;
	/* Guest-physical addresses above 2^46 are beyond what we give any guest. */
	if (ram_size > (1ULL << 46))
		return -ENOMEM;
	low = ram_size < GM_HOLE_START ? ram_size : GM_HOLE_START;
	high = ram_size - low;
	/* MAP_NORESERVE: pages are populated as the guest touches them. The
	 * slack is trimmed off both ends once the start is aligned. */
	p = mmap(NULL, ram_size + GM_ALIGN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	head = (GM_ALIGN - (uintptr_t)p % GM_ALIGN) % GM_ALIGN;
	if (head)
		munmap(p, head);
	if (GM_ALIGN - head)
		munmap((uint8_t *)p + head + ram_size, GM_ALIGN - head);
	p = (uint8_t *)p + head;
	if (shared) {
		/* The memfd over the aligned reservation. */
		gm->fd = memfd_create("tarn-guest-ram", MFD_CLOEXEC);
		if (gm->fd < 0 || ftruncate(gm->fd, (off_t)ram_size) ||
		    mmap(p, ram_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED | MAP_NORESERVE, gm->fd, 0) != p) {
			int e = errno;

			if (gm->fd >= 0)
				close(gm->fd);
			munmap(p, ram_size);
			gm->fd = -1;
			return -e;
		}
	}
	madvise(p, ram_size, MADV_HUGEPAGE); /* a hint: EINVAL without THP */
	if (!shared)
		madvise(p, ram_size, MADV_MERGEABLE);
	gm->base = p;
	gm->base_len = ram_size;
	gm->ram_size = ram_size;
	gm_add(gm, 0, p, low);
	if (high)
		gm_add(gm, GM_HOLE_END, (uint8_t *)p + low, high);
	return 0;
}

int gm_init(struct guest_mem *gm, uint64_t ram_size)
{
	return gm_layout(gm, ram_size, false);
}

int gm_init_shared(struct guest_mem *gm, uint64_t ram_size)
{
	return gm_layout(gm, ram_size, true);
}

int gm_init_fake(struct guest_mem *gm, uint64_t gpa, void *buf, uint64_t size)
{
	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	if (!size || gpa + size < gpa)
		return -EINVAL;
	gm_add(gm, gpa, buf, size);
	gm->ram_size = size;
	return 0;
}

int gm_init_regions(struct guest_mem *gm, const struct gm_region *r, int n)
{
	memset(gm, 0, sizeof(*gm));
	gm->fd = -1;
	if (n < 1 || n > GM_MAX_REGIONS)
		return -EINVAL;
	for (int i = 0; i < n; i++) {
		if (!r[i].size || r[i].gpa + r[i].size < r[i].gpa)
			return -EINVAL;
		for (int j = 0; j < i; j++)
			if (r[i].gpa < r[j].gpa + r[j].size && r[j].gpa < r[i].gpa + r[i].size)
				return -EINVAL;
		gm_add(gm, r[i].gpa, r[i].hva, r[i].size);
		gm->ram_size += r[i].size;
	}
	return 0;
}

void gm_destroy(struct guest_mem *gm)
{
	if (gm->base && gm->fd >= 0) /* fd means something where there is memory */
		close(gm->fd);
	if (gm->base)
		munmap(gm->base, gm->base_len);
	free(gm->dirty);
	memset(gm, 0, sizeof(*gm));
}

void *gm_ptr(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	if (!len)
		len = 1;
	if (gpa + len < gpa) /* wraps around */
		return NULL;
	for (int i = 0; i < gm->nr_regions; i++) {
		const struct gm_region *r = &gm->regions[i];

		/* gpa - r->gpa is only meaningful once gpa >= r->gpa. */
		if (gpa >= r->gpa && gpa - r->gpa < r->size && len <= r->size - (gpa - r->gpa))
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

int gm_read(const struct guest_mem *gm, uint64_t gpa, void *dst, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(dst, p, len);
	return 0;
}

int gm_write(const struct guest_mem *gm, uint64_t gpa, const void *src, uint64_t len)
{
	void *p = gm_ptr(gm, gpa, len);

	if (!p)
		return -EFAULT;
	memcpy(p, src, len);
	gm_mark_dirty(gm, gpa, len);
	return 0;
}

/* ---- dirty tracking ---- */

size_t gm_dirty_words(const struct guest_mem *gm)
{
	return (size_t)((gm->base_len / GM_PAGE + 63) / 64);
}

int gm_dirty_start(struct guest_mem *gm)
{
	uint64_t *bits;

	if (!gm->base)
		return -EINVAL;
	if (gm->dirty)
		return 0;
	bits = calloc(gm_dirty_words(gm), sizeof(uint64_t));
	if (!bits)
		return -ENOMEM;
	/* Started on a running VM (a migration): writers see the bitmap from
	 * now on, and a CPU that caches writable pages forgets them at its
	 * next dirty_gen check. */
	__atomic_store_n(&gm->dirty, bits, __ATOMIC_RELEASE);
	__atomic_fetch_add(&gm->dirty_gen, 1, __ATOMIC_RELEASE);
	return 0;
}

void gm_mark_dirty_hva(const struct guest_mem *gm, const void *hva, uint64_t len)
{
	uint64_t first, last;

	if (!gm->dirty || !len)
		return;
	first = (uint64_t)((const uint8_t *)hva - gm->base);
	last = first + len - 1;
	for (uint64_t pg = first / GM_PAGE; pg <= last / GM_PAGE; pg++)
		__atomic_fetch_or(&gm->dirty[pg / 64], 1ULL << (pg % 64), __ATOMIC_RELAXED);
}

void gm_mark_dirty(const struct guest_mem *gm, uint64_t gpa, uint64_t len)
{
	const void *p = gm->dirty ? gm_ptr(gm, gpa, len) : NULL;

	if (p)
		gm_mark_dirty_hva(gm, p, len);
}

void gm_dirty_take(struct guest_mem *gm, uint64_t *out)
{
	for (size_t i = 0; gm->dirty && i < gm_dirty_words(gm); i++)
		out[i] |= __atomic_exchange_n(&gm->dirty[i], 0, __ATOMIC_ACQ_REL);
	__atomic_fetch_add(&gm->dirty_gen, 1, __ATOMIC_RELEASE);
}

void gm_dirty_restore(struct guest_mem *gm, const uint64_t *bits)
{
	for (size_t i = 0; gm->dirty && i < gm_dirty_words(gm); i++)
		__atomic_fetch_or(&gm->dirty[i], bits[i], __ATOMIC_RELAXED);
}

uint64_t gm_low_end(const struct guest_mem *gm)
{
	return gm->nr_regions ? gm->regions[0].gpa + gm->regions[0].size : 0;
}
