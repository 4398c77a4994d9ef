/* virtio-rng driven by the minimal driver in lib/virtio.h, as a correct
 * driver would: a request taking an MSI-X interrupt, then many polled rounds
 * of one to three buffers (both rings wrap several times) with interrupts
 * suppressed, a readable buffer the device must leave alone, and an
 * indirect table; then, with MSI-X off, requests signalled through INTx, a
 * level-triggered line (see intx_round). Buffers sit between guard bytes
 * the device must not touch; used.len must be exactly the writable length. */
#include "lib/virtio.h"

#define QSIZE 8
#define ROUNDS 24
#define VEC_QUEUE 0x52
#define VEC_CONFIG 0x53
#define VEC_INTX 0x54
#define GUARD 0xa5

static uint8_t ring[VIRTQ_MEM_SIZE] __attribute__((aligned(4096)));
static uint8_t pool[1024] __attribute__((aligned(16)));
static struct virtq_desc itable[3] __attribute__((aligned(16)));
static volatile int queue_irqs, config_irqs;
static const struct virtio_dev *intx_dev;

static void on_queue_irq(struct irq_frame *f)
{
	queue_irqs++;
	lapic_eoi();
}

static void on_config_irq(struct irq_frame *f)
{
	config_irqs++;
	lapic_eoi();
}

/* INTx is a level: the first interrupt of a round the handler leaves it
 * high (ISR not read) and acknowledges, so it must come again; from the
 * second on the handler reads ISR, which lowers the line: the first read
 * finds the queue bit, any later one nothing. */
static volatile int intx_round_irqs;
static volatile uint8_t intx_isr[4];

static void on_intx(struct irq_frame *f)
{
	int n = intx_round_irqs++;

	if (n > 0 && n <= 4)
		intx_isr[n - 1] = mmio_read8(intx_dev->isr);
	lapic_eoi();
}

static int in_bufs(const struct vbuf *b, unsigned n, const uint8_t *p)
{
	for (unsigned i = 0; i < n; i++)
		if ((uint64_t)(uintptr_t)p >= b[i].addr && (uint64_t)(uintptr_t)p < b[i].addr + b[i].len)
			return b[i].writable ? 1 : 2;
	return 0;
}

/* Lay out buffers of these lengths in pool, 16 guard bytes apart (the
 * readable ones hold the guard pattern too). */
static unsigned layout(struct vbuf *b, const uint32_t *lens, const int *writable, unsigned n)
{
	uint32_t off = 16, want = 0;

	memset(pool, GUARD, sizeof(pool));
	for (unsigned i = 0; i < n; i++) {
		b[i] = (struct vbuf){ (uint64_t)(uintptr_t)pool + off, lens[i], writable[i] };
		off += lens[i] + 16;
		want += writable[i] ? lens[i] : 0;
	}
	GUEST_ASSERT(off <= sizeof(pool));
	return want;
}

/* After the device ran: guards and readable buffers untouched, random
 * bytes in the writable ones (16 or more bytes all equal to the guard has
 * probability 2^-128). */
static void check_pool(const struct vbuf *b, unsigned n, uint32_t want)
{
	uint32_t changed = 0;

	for (const uint8_t *p = pool; p < pool + sizeof(pool); p++) {
		if (in_bufs(b, n, p) == 1)
			changed += *p != GUARD;
		else
			GUEST_ASSERT_EQ(*p, GUARD);
	}
	if (want >= 16)
		GUEST_ASSERT(changed > 0);
}

static uint32_t round_trip(struct virtq *q, uint16_t head, const uint32_t *lens, const int *writable, unsigned n)
{
	struct vbuf b[3];
	uint32_t want = layout(b, lens, writable, n);

	GUEST_ASSERT_EQ(virtq_request(q, head, b, n), want);
	check_pool(b, n, want);
	return want;
}

/* MSI-X off, the device's INTx pin routed through the IOAPIC (level,
 * active high, as the DSDT's _PRT says): two requests, each completion
 * delivered again after an acknowledgement that left the line high. A
 * third interrupt may follow the ISR read -- KVM's resampling irqfd (PVM
 * here) can re-raise the line once more as it goes low -- but it must find
 * ISR clear, and then the line stays quiet. */
static void intx_round(struct virtio_dev *d, struct virtq *q)
{
	static const int wr[1] = { 1 };
	unsigned cap = pci_next_cap(d->slot, 0, 0x11), pin = pci_cfg_read8(d->slot, 0x3d);
	unsigned gsi = 16 + ((d->slot + pin - 1) & 3);

	GUEST_ASSERT(pin >= 1 && pin <= 4);
	pci_cfg_write32(d->slot, cap, pci_cfg_read32(d->slot, cap) & ~0x80000000u);
	intx_dev = d;
	idt_set_handler(VEC_INTX, on_intx);
	ioapic_write(0x10 + 2 * gsi + 1, guest_apic_id() << 24);
	ioapic_write(0x10 + 2 * gsi, VEC_INTX | 1u << 15); /* level, active high, unmasked */
	q->avail[0] = 0;
	for (int r = 1; r <= 2; r++) {
		uint32_t len = 32;
		int n;

		intx_round_irqs = 0;
		for (int i = 0; i < 4; i++)
			intx_isr[i] = 0xff;
		round_trip(q, 1, &len, wr, 1);
		for (int i = 0; i < 1000000 && intx_round_irqs < 2; i++)
			pause();
		for (int i = 0; i < 10000; i++) /* time for a late one */
			pause();
		n = intx_round_irqs;
		GUEST_ASSERT(n == 2 || n == 3);
		GUEST_ASSERT_EQ(intx_isr[0], 1); /* VIRTIO_ISR_QUEUE */
		if (n == 3)
			GUEST_ASSERT_EQ(intx_isr[1], 0);
		for (int i = 0; i < 100000; i++) /* and then quiet */
			pause();
		GUEST_ASSERT_EQ(intx_round_irqs, n);
	}
	ioapic_write(0x10 + 2 * gsi, 1u << 16); /* masked */
}

void guest_main(unsigned cpu, uint64_t arg)
{
	static const int wr[3] = { 1, 1, 1 };
	struct virtio_dev d;
	struct virtq q;
	uint64_t bytes = 0;
	unsigned requests = 0;

	idt_install();
	idt_set_handler(VEC_QUEUE, on_queue_irq);
	idt_set_handler(VEC_CONFIG, on_config_irq);
	lapic_enable();

	virtio_find(VIRTIO_ID_RNG, 0, &d);
	GUEST_ASSERT(virtio_init(&d, 1ULL << VIRTIO_F_INDIRECT_DESC) & 1ULL << VIRTIO_F_INDIRECT_DESC);
	virtio_msix_enable(&d, 0, VEC_CONFIG);
	virtio_msix_enable(&d, 1, VEC_QUEUE);
	mmio_write16(d.common + VCOMMON_MSIX, 0);
	GUEST_ASSERT_EQ(mmio_read16(d.common + VCOMMON_MSIX), 0);
	GUEST_ASSERT_EQ(mmio_read16(d.common + VCOMMON_NUMQ), 1);
	virtq_setup(&d, &q, 0, QSIZE, ring, 1);
	virtio_driver_ok(&d);
	sti();

	/* One request, completion signalled by MSI-X. */
	uint32_t one = 64;
	bytes += round_trip(&q, 0, &one, wr, 1);
	requests++;
	for (int i = 0; i < 1000000 && !queue_irqs; i++)
		pause();
	GUEST_ASSERT_EQ(queue_irqs, 1);

	/* Polled rounds with interrupts suppressed (VIRTQ_AVAIL_F_NO_INTERRUPT). */
	q.avail[0] = 1;
	for (unsigned r = 0; r < ROUNDS; r++) {
		uint32_t lens[3] = { 1 + (r * 37) % 200, 16 + r, 1 + r % 5 };

		bytes += round_trip(&q, (uint16_t)((r * 3) % QSIZE), lens, wr, 1 + r % 3);
		requests++;
	}
	GUEST_ASSERT_EQ(virtq_used_idx(&q), 1 + ROUNDS);

	/* A readable buffer first: the device skips it, used.len counts only the writable one. */
	static const uint32_t rw_lens[2] = { 32, 48 };
	static const int rw[2] = { 0, 1 };
	bytes += round_trip(&q, 5, rw_lens, rw, 2);
	requests++;

	/* An indirect table of three writable buffers (spec 2.7.5.3). */
	static const uint32_t ind_lens[3] = { 8, 100, 24 };
	struct vbuf b[3];
	struct virtq_used_elem e;
	uint32_t want = layout(b, ind_lens, wr, 3);

	for (unsigned i = 0; i < 3; i++)
		itable[i] = (struct virtq_desc){ b[i].addr, b[i].len,
						 (uint16_t)(VIRTQ_DESC_F_WRITE | (i < 2 ? VIRTQ_DESC_F_NEXT : 0)),
						 (uint16_t)(i + 1) };
	virtq_set_desc(&q, 2, (uint64_t)(uintptr_t)itable, sizeof(itable), VIRTQ_DESC_F_INDIRECT, 0);
	virtq_publish(&q, 2);
	virtq_kick(&q);
	GUEST_ASSERT(virtq_poll(&q, &e));
	GUEST_ASSERT_EQ(e.id, 2);
	GUEST_ASSERT_EQ(e.len, want);
	check_pool(b, 3, want);
	bytes += want;
	requests++;

	intx_round(&d, &q);
	requests += 2;
	bytes += 2 * 32;

	cli();
	GUEST_ASSERT_EQ(queue_irqs, 1);
	GUEST_ASSERT_EQ(config_irqs, 0);
	GUEST_ASSERT_EQ(virtio_status(&d),
			VIRTIO_ACKNOWLEDGE | VIRTIO_DRIVER | VIRTIO_FEATURES_OK | VIRTIO_DRIVER_OK);
	GUEST_SYNC4(requests, bytes, queue_irqs, d.slot);
}
