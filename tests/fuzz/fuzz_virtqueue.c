/* libFuzzer harness for the split virtqueue: the input is a queue config
 * followed by guest memory, so the fuzzer controls every ring, descriptor,
 * indirect table and index. Pops and pushes until the ring is empty or the
 * queue breaks, touching the first and last byte of every buffer it gets
 * (ASan catches anything outside guest RAM) and checking the promises of
 * virtqueue.h: bounded chains, caps kept, errors break the queue for good.
 *
 * Input: [0] size (bit 7 clear: 1 << (b & 15); set: raw 16-bit from [1..2])
 *        [3] bit 0 INDIRECT_DESC, bit 1 EVENT_IDX, bit 2 notify off,
 *            bit 3 small byte cap (1000)
 *        [4..5] [6..7] [8..9] desc, avail, used offsets into guest RAM
 *        [10..] guest RAM (MEM_SIZE bytes at gpa MEM_GPA, zero padded) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "mem/gm.h"
#include "virtio/virtqueue.h"

#define MEM_SIZE 0x10000
#define MEM_GPA 0x40000
#define HDR 10

#define CHECK(x)                                                              \
	do {                                                                  \
		if (!(x))                                                     \
			__builtin_trap();                                     \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static struct vq_chain chain;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct guest_mem gm;
	struct vq_config cfg;
	struct vq vq;
	uint8_t *mem;
	int r = 0;

	if (size < HDR)
		return 0;
	mem = malloc(MEM_SIZE); /* exactly: ASan sees a byte past guest RAM */
	if (!mem)
		return 0;
	memset(mem, 0, MEM_SIZE);
	memcpy(mem, data + HDR, size - HDR < MEM_SIZE ? size - HDR : MEM_SIZE);
	CHECK(gm_init_fake(&gm, MEM_GPA, mem, MEM_SIZE) == 0);

	memset(&cfg, 0, sizeof(cfg));
	cfg.size = data[0] & 0x80 ? get16(data + 1) : 1u << (data[0] & 15);
	cfg.features = (data[3] & 1 ? 1ULL << VIRTIO_F_INDIRECT_DESC : 0) |
		       (data[3] & 2 ? 1ULL << VIRTIO_F_EVENT_IDX : 0);
	cfg.max_bytes = data[3] & 8 ? 1000 : 0;
	cfg.desc_gpa = MEM_GPA + get16(data + 4);
	cfg.avail_gpa = MEM_GPA + get16(data + 6);
	cfg.used_gpa = MEM_GPA + get16(data + 8);
	if (vq_init(&vq, &gm, &cfg)) {
		CHECK(vq.broken && vq_pop(&vq, &chain) == VQ_ERR_BROKEN);
		goto out;
	}
	if (data[3] & 4)
		vq_set_notify(&vq, false);

	/* At most 65536 chains can be offered before avail->idx would have
	 * to jump; writes into guest RAM may keep re-offering, so bound it. */
	for (int n = 0; n < 70000; n++) {
		uint64_t total = 0;
		uint32_t nr;

		r = vq_pop(&vq, &chain);
		if (r <= 0)
			break;
		nr = chain.nr_out + chain.nr_in;
		CHECK(chain.head < cfg.size && nr <= VQ_MAX_SEGS);
		for (uint32_t i = 0; i < nr; i++) {
			volatile uint8_t *p = chain.iov[i].iov_base;
			size_t len = chain.iov[i].iov_len;

			total += len;
			if (!len)
				continue;
			CHECK((uint8_t *)p >= mem && (uint8_t *)p + len <= mem + MEM_SIZE);
			CHECK(p == gm_ptr(&gm, chain.gpa[i], len));
			if (i < chain.nr_out) {
				(void)p[0];
				(void)p[len - 1];
			} else { /* the device writes: may hit the rings too */
				p[0] = 0xa5;
				p[len - 1] = 0x5a;
			}
		}
		CHECK(total == chain.out_len + chain.in_len);
		CHECK(total <= (cfg.max_bytes ? cfg.max_bytes : VQ_DEFAULT_MAX_BYTES));
		CHECK(vq_push(&vq, chain.head, (uint32_t)chain.in_len) == 0);
		(void)vq_needs_notify(&vq);
	}
	if (r < 0) {
		CHECK(vq.broken && vq.err == r);
		CHECK(vq_pop(&vq, &chain) == VQ_ERR_BROKEN);
		CHECK(vq_push(&vq, 0, 0) == VQ_ERR_BROKEN);
	}
out:
	free(mem);
	return 0;
}
