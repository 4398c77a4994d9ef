/* Split virtqueue (virtio 1.x, section 2.7), device side, as a pure library:
 * no device, no transport. The rings live in guest memory and are hostile
 * input: every index, address, length and flag is checked, descriptors are
 * copied once and then validated, and every walk is bounded. A malformed
 * queue makes the call fail with a distinct VQ_ERR_* code and marks the
 * queue broken (the device layer then sets NEEDS_RESET); after that every
 * vq_pop/vq_push fails with VQ_ERR_BROKEN until vq_init is called again.
 * Nothing here aborts, and nothing touches memory outside guest RAM.
 *
 * Use:
 *   vq_init(&vq, gm, &cfg)            once the driver has set the queue up
 *   while ((r = vq_pop(&vq, &c)) > 0) { ... vq_push(&vq, c.head, written); }
 *   if (r < 0) -> NEEDS_RESET;  if (vq_needs_notify(&vq)) -> interrupt
 *
 * A chain's buffers come back as host iovecs, readable (device reads,
 * "out") first, then writable ("in"): iov[0 .. nr_out) then
 * iov[nr_out .. nr_out + nr_in), ready for readv/writev. A buffer must lie
 * wholly inside one RAM region. Zero-length buffers are legal and kept
 * (iov_len 0, iov_base NULL, address not checked: nothing is accessed). */
#ifndef TARN_VIRTQUEUE_H
#define TARN_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "mem/gm.h"

#define VQ_MAX_SIZE 32768 /* largest queue size (spec maximum) */
#define VQ_MAX_SEGS 1024  /* most buffers in one chain (direct or indirect) */
#define VQ_DEFAULT_MAX_BYTES 0xffffffffULL /* used.len is 32 bits */

/* Descriptor flags. */
#define VIRTQ_DESC_F_NEXT 1
#define VIRTQ_DESC_F_WRITE 2
#define VIRTQ_DESC_F_INDIRECT 4
/* avail->flags, used->flags */
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY 1
/* Feature bits this code honours. */
#define VIRTIO_F_INDIRECT_DESC 28
#define VIRTIO_F_EVENT_IDX 29

enum vq_err {
	VQ_ERR_BROKEN = -1,	    /* queue was already broken by an earlier error */
	VQ_ERR_SIZE = -2,	    /* size 0, not a power of two, or > VQ_MAX_SIZE */
	VQ_ERR_ALIGN = -3,	    /* desc not 16-, avail not 2-, used not 4-byte aligned */
	VQ_ERR_RING_ADDR = -4,	    /* a ring is not wholly inside one RAM region */
	VQ_ERR_AVAIL_IDX = -5,	    /* avail->idx ran more than size ahead of us */
	VQ_ERR_HEAD = -6,	    /* head index from the avail ring >= size */
	VQ_ERR_NEXT = -7,	    /* next index >= size (or >= indirect table entries) */
	VQ_ERR_LOOP = -8,	    /* more descriptors than the queue / indirect table holds */
	VQ_ERR_BUF_ADDR = -9,	    /* buffer outside guest RAM, or gpa + len wraps */
	VQ_ERR_ORDER = -10,	    /* readable descriptor after a writable one */
	VQ_ERR_TOO_BIG = -11,	    /* chain's total length above cfg.max_bytes */
	VQ_ERR_TOO_MANY = -12,	    /* more than VQ_MAX_SEGS buffers */
	VQ_ERR_INDIRECT = -13,	    /* INDIRECT used without VIRTIO_F_INDIRECT_DESC */
	VQ_ERR_INDIRECT_NESTED = -14, /* INDIRECT inside an indirect table */
	VQ_ERR_INDIRECT_NEXT = -15, /* INDIRECT together with NEXT, or not at the head */
	VQ_ERR_INDIRECT_LEN = -16,  /* table length 0, not a multiple of 16, or too long */
	VQ_ERR_INDIRECT_ADDR = -17, /* table not wholly inside one RAM region */
	VQ_ERR_PUSH_HEAD = -18,	    /* device bug: vq_push head >= size (queue not broken) */
};

struct vq_config {
	uint32_t size;	    /* power of two, 1 .. VQ_MAX_SIZE */
	uint64_t desc_gpa;  /* 16-byte aligned, 16 * size bytes */
	uint64_t avail_gpa; /* 2-byte aligned, 6 + 2 * size bytes */
	uint64_t used_gpa;  /* 4-byte aligned, 6 + 8 * size bytes */
	uint64_t features;  /* negotiated: VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX */
	uint64_t max_bytes; /* cap on a chain's total length; 0: VQ_DEFAULT_MAX_BYTES */
};

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vq {
	const struct guest_mem *gm;
	struct vq_desc *desc; /* host views of the rings (checked at vq_init) */
	uint16_t *avail;      /* flags, idx, ring[size], used_event */
	uint16_t *used_hdr;   /* flags, idx */
	struct vq_used_elem *used_ring; /* ring[size], then avail_event (u16) */
	uint32_t size;
	uint64_t max_bytes;
	bool indirect, event_idx;
	bool notify;	/* driver kicks wanted (vq_set_notify) */
	bool broken;
	int err;		/* the error that broke it */
	uint16_t last_avail;	/* next avail entry to pop */
	uint16_t used_idx;	/* next used entry to write */
	uint16_t signalled_used; /* used_idx at the last vq_needs_notify */
	bool signalled_valid;
};

struct vq_chain {
	uint16_t head;		/* give back to vq_push */
	uint32_t nr_out, nr_in; /* readable, then writable buffers */
	uint64_t out_len, in_len; /* their total lengths */
	struct iovec iov[VQ_MAX_SEGS];
	uint64_t gpa[VQ_MAX_SEGS]; /* guest address of each iov (dirty tracking) */
};

/* Check cfg and map the rings. 0, or VQ_ERR_SIZE / ALIGN / RING_ADDR (then
 * vq is broken). The used ring's flags are cleared; indices start at 0. */
int vq_init(struct vq *vq, const struct guest_mem *gm, const struct vq_config *cfg);

/* Next available chain into *c: 1, 0 when the ring is empty, or a VQ_ERR_*
 * (the queue is then broken and *c is meaningless). */
int vq_pop(struct vq *vq, struct vq_chain *c);

/* Return chain head with written_len bytes written into its writable
 * buffers: writes the used element, then (release) used->idx. 0 or error. */
int vq_push(struct vq *vq, uint16_t head, uint32_t written_len);
/* vq_push of c, whose writable buffers count as written guest memory
 * (gm_mark_dirty: all of them, whatever written_len says, since a device
 * may write its status at their end). What devices call. */
int vq_push_chain(struct vq *vq, const struct vq_chain *c, uint32_t written_len);
/* The same marking for writable buffers a device keeps apart from their
 * chain (virtio-net's parked receive buffers), before vq_push. */
void vq_mark_written(struct vq *vq, const struct iovec *iov, uint32_t n);

/* After one or more vq_push: must the driver be interrupted? Honours
 * VIRTQ_AVAIL_F_NO_INTERRUPT, or used_event with VIRTIO_F_EVENT_IDX. */
bool vq_needs_notify(struct vq *vq);

/* Ask the driver to (not) kick us for new buffers: VIRTQ_USED_F_NO_NOTIFY,
 * or avail_event with VIRTIO_F_EVENT_IDX (vq_pop keeps it current). */
void vq_set_notify(struct vq *vq, bool enable);

/* vq_pop for a device serving a queue with kicks turned off
 * (vq_set_notify(vq, false) before the first): when the ring is empty,
 * kicks are wanted again and the ring is looked at once more, so no chain
 * waits for a kick that never comes (a chain found then turns them off
 * again). vq_pop's results. */
int vq_pop_serving(struct vq *vq, struct vq_chain *c);

const char *vq_strerror(int err);

#endif
