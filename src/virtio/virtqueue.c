/* Split virtqueue, device side. See virtqueue.h. Every value read from the
 * rings is guest-controlled: read once into a local, then checked. */
#include "virtio/virtqueue.h"

#include <stddef.h>
#include <string.h>

static int vq_fail(struct vq *vq, int err)
{
	if (!vq->broken) {
		vq->broken = true;
		vq->err = err;
	}
	return err;
}

static uint16_t load16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static void store16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* Host view of a ring: [gpa, gpa+len) inside one region, aligned in both
 * address spaces (so the atomic accesses above are natural). */
static int map_ring(const struct guest_mem *gm, uint64_t gpa, uint64_t len, uint64_t align,
		    void **out)
{
	void *p;

	if (gpa & (align - 1))
		return VQ_ERR_ALIGN;
	p = gm_ptr(gm, gpa, len);
	if (!p)
		return VQ_ERR_RING_ADDR;
	if ((uintptr_t)p & (align - 1))
		return VQ_ERR_ALIGN;
	*out = p;
	return 0;
}

static uint16_t *avail_event(struct vq *vq)
{
	return (uint16_t *)&vq->used_ring[vq->size];
}

/* Tell the driver where we are (event index), as a write to its memory. */
static void set_avail_event(struct vq *vq)
{
	store16(avail_event(vq), vq->last_avail);
	gm_mark_dirty_hva(vq->gm, avail_event(vq), 2);
}

int vq_init(struct vq *vq, const struct guest_mem *gm, const struct vq_config *cfg)
{
	uint64_t n = cfg->size;
	void *desc = NULL, *avail = NULL, *used = NULL;
	int r;

	memset(vq, 0, sizeof(*vq));
	vq->gm = gm;
	if (!n || n > VQ_MAX_SIZE || (n & (n - 1)))
		return vq_fail(vq, VQ_ERR_SIZE);
	r = map_ring(gm, cfg->desc_gpa, 16 * n, 16, &desc);
	if (!r)
		r = map_ring(gm, cfg->avail_gpa, 6 + 2 * n, 2, &avail);
	if (!r)
		r = map_ring(gm, cfg->used_gpa, 6 + 8 * n, 4, &used);
	if (r)
		return vq_fail(vq, r);
	vq->desc = desc;
	vq->avail = avail;
	vq->used_hdr = used;
	vq->used_ring = (struct vq_used_elem *)((uint8_t *)used + 4);
	vq->size = (uint32_t)n;
	vq->max_bytes = cfg->max_bytes ? cfg->max_bytes : VQ_DEFAULT_MAX_BYTES;
	vq->indirect = cfg->features & (1ULL << VIRTIO_F_INDIRECT_DESC);
	vq->event_idx = cfg->features & (1ULL << VIRTIO_F_EVENT_IDX);
	vq->notify = true;
	store16(&vq->used_hdr[0], 0);
	return 0;
}

/* Append the buffer d describes to c. */
static int add_buf(struct vq *vq, struct vq_chain *c, const struct vq_desc *d)
{
	bool writable = d->flags & VIRTQ_DESC_F_WRITE;
	uint32_t i = c->nr_out + c->nr_in;
	void *hva = NULL;

	if (!writable && c->nr_in)
		return VQ_ERR_ORDER;
	if (i >= VQ_MAX_SEGS)
		return VQ_ERR_TOO_MANY;
	if (d->len) {
		hva = gm_ptr(vq->gm, d->addr, d->len);
		if (!hva)
			return VQ_ERR_BUF_ADDR;
	}
	if (d->len > vq->max_bytes - (c->out_len + c->in_len))
		return VQ_ERR_TOO_BIG;
	c->iov[i].iov_base = hva;
	c->iov[i].iov_len = d->len;
	c->gpa[i] = d->addr;
	if (writable) {
		c->nr_in++;
		c->in_len += d->len;
	} else {
		c->nr_out++;
		c->out_len += d->len;
	}
	return 0;
}

/* Follow a chain through table[0..n), starting with d (already copied out
 * of the table). At most n descriptors: more is a loop. */
static int walk(struct vq *vq, struct vq_chain *c, const struct vq_desc *table, uint32_t n,
		struct vq_desc d, bool in_indirect)
{
	for (uint32_t count = 1;; count++) {
		int r;

		if (d.flags & VIRTQ_DESC_F_INDIRECT)
			return in_indirect ? VQ_ERR_INDIRECT_NESTED : VQ_ERR_INDIRECT_NEXT;
		r = add_buf(vq, c, &d);
		if (r)
			return r;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return VQ_ERR_NEXT;
		if (count >= n)
			return VQ_ERR_LOOP;
		memcpy(&d, &table[d.next], sizeof(d));
	}
}

static int pop_chain(struct vq *vq, struct vq_chain *c, uint16_t head)
{
	struct vq_desc d, first;
	const struct vq_desc *table;
	uint32_t n;

	if (head >= vq->size)
		return VQ_ERR_HEAD;
	memcpy(&d, &vq->desc[head], sizeof(d));
	if (!(d.flags & VIRTQ_DESC_F_INDIRECT))
		return walk(vq, c, vq->desc, vq->size, d, false);
	if (!vq->indirect)
		return VQ_ERR_INDIRECT;
	if (d.flags & VIRTQ_DESC_F_NEXT)
		return VQ_ERR_INDIRECT_NEXT;
	if (!d.len || d.len % sizeof(struct vq_desc) || d.len / sizeof(struct vq_desc) > VQ_MAX_SEGS)
		return VQ_ERR_INDIRECT_LEN;
	table = gm_ptr(vq->gm, d.addr, d.len);
	if (!table)
		return VQ_ERR_INDIRECT_ADDR;
	n = d.len / sizeof(struct vq_desc);
	memcpy(&first, &table[0], sizeof(first));
	return walk(vq, c, table, n, first, true);
}

int vq_pop(struct vq *vq, struct vq_chain *c)
{
	uint16_t avail_idx, head;
	int r;

	if (vq->broken)
		return VQ_ERR_BROKEN;
	avail_idx = load16(&vq->avail[1]);
	if (avail_idx == vq->last_avail) {
		if (!vq->event_idx || !vq->notify)
			return 0;
		/* Ask for a kick past what we have seen, then look again so a
		 * buffer made available meanwhile is not missed. */
		set_avail_event(vq);
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		avail_idx = load16(&vq->avail[1]);
		if (avail_idx == vq->last_avail)
			return 0;
	}
	if ((uint16_t)(avail_idx - vq->last_avail) > vq->size)
		return vq_fail(vq, VQ_ERR_AVAIL_IDX);
	/* The acquire load of avail->idx orders the ring and descriptor reads. */
	head = load16(&vq->avail[2 + (vq->last_avail & (vq->size - 1))]);
	c->head = head;
	c->nr_out = c->nr_in = 0;
	c->out_len = c->in_len = 0;
	r = pop_chain(vq, c, head);
	if (r)
		return vq_fail(vq, r);
	vq->last_avail++;
	if (vq->event_idx && vq->notify)
		set_avail_event(vq);
	return 1;
}

int vq_push(struct vq *vq, uint16_t head, uint32_t written_len)
{
	struct vq_used_elem *e;

	if (vq->broken)
		return VQ_ERR_BROKEN;
	if (head >= vq->size)
		return VQ_ERR_PUSH_HEAD;
	e = &vq->used_ring[vq->used_idx & (vq->size - 1)];
	__atomic_store_n(&e->id, head, __ATOMIC_RELAXED);
	__atomic_store_n(&e->len, written_len, __ATOMIC_RELAXED);
	vq->used_idx++;
	store16(&vq->used_hdr[1], vq->used_idx); /* release: element before idx */
	gm_mark_dirty_hva(vq->gm, e, sizeof(*e));
	gm_mark_dirty_hva(vq->gm, vq->used_hdr, 4);
	return 0;
}

void vq_mark_written(struct vq *vq, const struct iovec *iov, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		gm_mark_dirty_hva(vq->gm, iov[i].iov_base, iov[i].iov_len);
}

int vq_push_chain(struct vq *vq, const struct vq_chain *c, uint32_t written_len)
{
	vq_mark_written(vq, c->iov + c->nr_out, c->nr_in);
	return vq_push(vq, c->head, written_len);
}

bool vq_needs_notify(struct vq *vq)
{
	uint16_t old = vq->signalled_used, now = vq->used_idx;
	bool valid = vq->signalled_valid;

	if (vq->broken)
		return false;
	/* Our used->idx store must be visible before we read the driver's
	 * suppression state, or both sides may skip the notification. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	vq->signalled_used = now;
	vq->signalled_valid = true;
	if (old == now) /* nothing used since the last check */
		return false;
	if (!vq->event_idx)
		return !(load16(&vq->avail[0]) & VIRTQ_AVAIL_F_NO_INTERRUPT);
	if (!valid)
		return true;
	/* Notify when used_event lies in [old, now): spec 2.7.10. */
	return (uint16_t)(now - load16(&vq->avail[2 + vq->size]) - 1) < (uint16_t)(now - old);
}

void vq_set_notify(struct vq *vq, bool enable)
{
	if (vq->broken)
		return;
	vq->notify = enable;
	if (vq->event_idx) {
		if (enable)
			set_avail_event(vq);
	} else {
		store16(&vq->used_hdr[0], enable ? 0 : VIRTQ_USED_F_NO_NOTIFY);
		gm_mark_dirty_hva(vq->gm, vq->used_hdr, 2);
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
}

const char *vq_strerror(int err)
{
	static const char *const msg[] = {
		[-VQ_ERR_BROKEN] = "queue is broken",
		[-VQ_ERR_SIZE] = "queue size not a power of two in 1..32768",
		[-VQ_ERR_ALIGN] = "ring address misaligned",
		[-VQ_ERR_RING_ADDR] = "ring outside guest RAM",
		[-VQ_ERR_AVAIL_IDX] = "avail index jumped ahead by more than the queue size",
		[-VQ_ERR_HEAD] = "head index out of range",
		[-VQ_ERR_NEXT] = "next index out of range",
		[-VQ_ERR_LOOP] = "descriptor chain loops",
		[-VQ_ERR_BUF_ADDR] = "buffer outside guest RAM",
		[-VQ_ERR_ORDER] = "readable descriptor after a writable one",
		[-VQ_ERR_TOO_BIG] = "chain longer than the byte cap",
		[-VQ_ERR_TOO_MANY] = "chain has too many buffers",
		[-VQ_ERR_INDIRECT] = "indirect descriptor not negotiated",
		[-VQ_ERR_INDIRECT_NESTED] = "indirect descriptor inside an indirect table",
		[-VQ_ERR_INDIRECT_NEXT] = "indirect descriptor chained or not at the head",
		[-VQ_ERR_INDIRECT_LEN] = "bad indirect table length",
		[-VQ_ERR_INDIRECT_ADDR] = "indirect table outside guest RAM",
		[-VQ_ERR_PUSH_HEAD] = "pushed head out of range",
	};

	if (err >= 0)
		return "ok";
	if ((size_t)-err >= sizeof(msg) / sizeof(msg[0]) || !msg[-err])
		return "unknown error";
	return msg[-err];
}

int vq_pop_serving(struct vq *vq, struct vq_chain *c)
{
	int r = vq_pop(vq, c);

	if (r == 0 && !vq->notify) {
		vq_set_notify(vq, true);
		r = vq_pop(vq, c); /* empty: it asks for a kick, then looks again */
		if (r > 0)
			vq_set_notify(vq, false);
	}
	return r;
}
