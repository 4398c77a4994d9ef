/* Local APIC, xAPIC mode. Intel SDM Vol. 3A chapter 11; "SDM x.y" below
 * refers to its sections. Everything the guest writes is guest-controlled:
 * register offsets, widths, vectors, destinations, timer counts. */
#include "hw/lapic.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"

enum { LVT_TIMER, LVT_THERMAL, LVT_PERF, LVT_LINT0, LVT_LINT1, LVT_ERROR, LVT_NR };

/* Writable bits of each LVT entry (SDM Figure 11-8). Delivery status and
 * remote IRR are read-only and always read 0 here: delivery is immediate. */
static const uint32_t lvt_mask[LVT_NR] = {
	[LVT_TIMER] = 0x000700ff,   /* vector, mask, timer mode (incl. TSC-deadline) */
	[LVT_THERMAL] = 0x000107ff, /* vector, delivery mode, mask */
	[LVT_PERF] = 0x000107ff,
	[LVT_LINT0] = 0x0001a7ff,   /* + polarity, trigger mode */
	[LVT_LINT1] = 0x0001a7ff,
	[LVT_ERROR] = 0x000100ff,
};

#define ICR_LO_MASK 0x000ccfffu /* vector, DM, dest mode, level, trigger, shorthand */
#define SVR_MASK 0x3ffu		/* vector, enable, focus check; no EOI suppression (LVR bit 24 = 0) */
#define DCR_MASK 0xbu
#define TIMER_MODE_MASK 0x60000u
#define APIC_BASE_RESERVED (0xffULL | (1ULL << 9) | APIC_BASE_X2APIC | ~((1ULL << 52) - 1))

static uint64_t bus_now(const struct apic_bus *b)
{
	return b->ops->now_ns ? b->ops->now_ns(b->opaque) : monotonic_ns();
}

static void kick(struct lapic *l)
{
	l->bus->ops->kick(l->bus->opaque, l->cpu);
}

/* ---- 256-bit registers ---- */

static inline bool vec_test(const uint32_t *v, unsigned n) { return v[n >> 5] & (1u << (n & 31)); }
static inline void vec_set(uint32_t *v, unsigned n) { v[n >> 5] |= 1u << (n & 31); }
static inline void vec_clear(uint32_t *v, unsigned n) { v[n >> 5] &= ~(1u << (n & 31)); }

static int vec_highest(const uint32_t *v)
{
	for (int i = 7; i >= 0; i--)
		if (v[i])
			return i * 32 + 31 - __builtin_clz(v[i]);
	return -1;
}

/* ---- state helpers (lock held) ---- */

static bool hw_enabled(const struct lapic *l)
{
	return atomic_load(&l->apic_base) & APIC_BASE_ENABLE;
}

static bool sw_enabled(const struct lapic *l)
{
	return l->svr & APIC_SVR_ENABLE;
}

/* SDM 11.8.3.1: PPR is the higher of TPR and the class of the highest ISR. */
static uint32_t ppr(const struct lapic *l)
{
	int isrv = vec_highest(l->isr);
	uint32_t isr_class = isrv < 0 ? 0 : (uint32_t)isrv & 0xf0;

	return (l->tpr & 0xf0) >= isr_class ? l->tpr & 0xff : isr_class;
}

static unsigned timer_mode(const struct lapic *l)
{
	return l->lvt[LVT_TIMER] & TIMER_MODE_MASK;
}

/* SDM Figure 11-10: bits 0,1,3 encode divide by 2^(n+1), 0b111 meaning 1. */
static uint64_t dcr_divide(uint32_t dcr)
{
	unsigned v = (dcr & 3) | ((dcr >> 1) & 4);

	return v == 7 ? 1 : 2ULL << v;
}

/* Nanoseconds for n ticks of the clock divided as dcr says, rounded up so
 * an expiry is never seen early. n <= 2^32 and divide <= 128: no overflow
 * in 128 bits. */
static uint64_t dcr_ticks_to_ns(uint32_t dcr, uint64_t n)
{
	unsigned __int128 t = (unsigned __int128)n * dcr_divide(dcr) * NS_PER_SEC;

	return (uint64_t)((t + LAPIC_BUS_HZ - 1) / LAPIC_BUS_HZ);
}

static uint64_t ticks_to_ns(const struct lapic *l, uint64_t n)
{
	return dcr_ticks_to_ns(l->timer_dcr, n);
}

static uint64_t timer_period_ns(const struct lapic *l)
{
	return ticks_to_ns(l, l->timer_icr);
}

static void timer_stop(struct lapic *l)
{
	l->timer_deadline_ns = UINT64_MAX;
}

/* (Re)load the count: one-shot and periodic modes (SDM 11.5.4). */
static void timer_start(struct lapic *l, uint64_t now)
{
	uint64_t period = timer_period_ns(l);

	l->timer_start_ns = now;
	if (l->timer_icr == 0 || timer_mode(l) == APIC_TIMER_TSC_DEADLINE) {
		timer_stop(l);
		return;
	}
	if (timer_mode(l) == APIC_TIMER_PERIODIC && period < LAPIC_MIN_PERIOD_NS)
		period = LAPIC_MIN_PERIOD_NS;
	l->timer_deadline_ns = now + period;
}

/* Current count (SDM 11.5.4): counts down from the initial count at the
 * divided bus rate; one-shot stops at 0, periodic reloads. */
static uint32_t timer_ccr(const struct lapic *l, uint64_t now)
{
	uint64_t period, elapsed, per_tick, remaining, count;

	if (l->timer_icr == 0 || timer_mode(l) == APIC_TIMER_TSC_DEADLINE)
		return 0;
	period = timer_period_ns(l);
	elapsed = now > l->timer_start_ns ? now - l->timer_start_ns : 0;
	if (timer_mode(l) == APIC_TIMER_PERIODIC)
		elapsed %= period;
	else if (elapsed >= period || l->timer_deadline_ns == UINT64_MAX)
		return 0;
	remaining = period - elapsed;
	per_tick = ticks_to_ns(l, 1);
	count = (remaining + per_tick - 1) / per_tick;
	return count > l->timer_icr ? l->timer_icr : (uint32_t)count;
}

/* Guest TSC at now, by the owner's mapping; signed because now may precede
 * the reference point. */
static __int128 tsc_at(const struct lapic *l, uint64_t now)
{
	__int128 dns = (__int128)now - (__int128)l->tsc_ref_ns;

	return (__int128)l->tsc_ref + dns * (__int128)l->tsc_hz / (__int128)NS_PER_SEC;
}

static void tsc_deadline_arm(struct lapic *l, uint64_t now)
{
	__int128 delta, ns;

	if (l->tsc_deadline == 0 || timer_mode(l) != APIC_TIMER_TSC_DEADLINE || !l->tsc_hz) {
		timer_stop(l);
		return;
	}
	delta = (__int128)l->tsc_deadline - tsc_at(l, now);
	if (delta <= 0) {
		l->timer_deadline_ns = now; /* already passed: fires at the next update */
		return;
	}
	ns = (delta * NS_PER_SEC + l->tsc_hz - 1) / l->tsc_hz;
	l->timer_deadline_ns = ns >= (__int128)(UINT64_MAX - now) ? UINT64_MAX - 1 : now + (uint64_t)ns;
}

/* An error the LAPIC detected (SDM 11.5.3): latch it and raise the error
 * LVT. An illegal error vector only latches another bit: no recursion. */
static bool lapic_error(struct lapic *l, uint32_t bit)
{
	uint32_t lvt = l->lvt[LVT_ERROR];

	l->esr_pending |= bit;
	if (lvt & APIC_LVT_MASKED)
		return false;
	if ((lvt & 0xff) < 16) {
		l->esr_pending |= APIC_ESR_RECV_ILLEGAL;
		return false;
	}
	vec_set(l->irr, lvt & 0xff);
	vec_clear(l->tmr, lvt & 0xff);
	return true;
}

/* Accept a fixed interrupt into IRR (SDM 11.8.4). Returns whether to kick. */
static bool accept_fixed(struct lapic *l, unsigned vector, bool level)
{
	if (!sw_enabled(l))
		return false; /* as KVM: a software-disabled APIC drops fixed interrupts */
	if (vector < 16)
		return lapic_error(l, APIC_ESR_RECV_ILLEGAL);
	vec_set(l->irr, vector);
	if (level)
		vec_set(l->tmr, vector);
	else
		vec_clear(l->tmr, vector);
	return true;
}

/* Power-on / INIT state (SDM 11.4.7.1, 11.4.7.3): all but the ID (and
 * IA32_APIC_BASE, handled by the caller). */
static void reset_regs(struct lapic *l)
{
	bool bsp = atomic_load(&l->apic_base) & APIC_BASE_BSP;

	l->tpr = 0;
	l->ldr = 0;
	l->dfr = 0xffffffff;
	l->svr = 0xff;
	l->esr = l->esr_pending = 0;
	l->icr_lo = l->icr_hi = 0;
	for (int i = 0; i < LVT_NR; i++)
		l->lvt[i] = APIC_LVT_MASKED;
	if (bsp) {
		/* Virtual wire as firmware leaves it (MP spec 3.6.2.2, and
		 * what the KVM backend sets): the PIC on LINT0, NMI on LINT1. */
		l->lvt[LVT_LINT0] = APIC_DM_EXTINT << 8;
		l->lvt[LVT_LINT1] = APIC_DM_NMI << 8;
	}
	memset(l->irr, 0, sizeof(l->irr));
	memset(l->isr, 0, sizeof(l->isr));
	memset(l->tmr, 0, sizeof(l->tmr));
	l->timer_icr = l->timer_dcr = 0;
	l->timer_start_ns = 0;
	timer_stop(l);
	l->tsc_deadline = 0;
	l->extint_pending = false;
	l->nmi_pending = false;
	l->sipi_vector = -1;
}

/* ---- the bus ---- */

int apic_bus_init(struct apic_bus *b, const struct apic_bus_ops *ops, void *opaque)
{
	memset(b, 0, sizeof(*b));
	if (!ops || !ops->kick)
		return -EINVAL;
	b->ops = ops;
	b->opaque = opaque;
	return 0;
}

/* Whether l is addressed by dest (SDM 11.6.2). */
static bool lapic_match(struct lapic *l, uint8_t dest, bool logical)
{
	bool hit = false;
	uint32_t lid;

	pthread_mutex_lock(&l->lock);
	if (!hw_enabled(l))
		goto out; /* a hardware-disabled APIC takes no messages (SDM 11.4.3) */
	if (dest == 0xff) {
		hit = true; /* broadcast, in both destination modes */
		goto out;
	}
	if (!logical) {
		hit = (l->id >> 24) == dest;
		goto out;
	}
	lid = l->ldr >> 24;
	switch (l->dfr >> 28) {
	case 0xf: /* flat: one bit per APIC in the 8-bit MDA */
		hit = (lid & dest) != 0;
		break;
	case 0x0: /* cluster: high nibble cluster, low nibble members */
		hit = (lid >> 4) == (dest >> 4u) && (lid & dest & 0xf) != 0;
		break;
	default:
		break; /* reserved model: nothing matches */
	}
out:
	pthread_mutex_unlock(&l->lock);
	return hit;
}

static uint8_t lapic_id_of(struct lapic *l)
{
	uint8_t id;

	pthread_mutex_lock(&l->lock);
	id = l->id >> 24;
	pthread_mutex_unlock(&l->lock);
	return id;
}

/* Deliver one message to one LAPIC (SDM 11.6.1 delivery modes). */
static void lapic_deliver(struct lapic *l, const struct apic_msg *m)
{
	bool k = false;

	pthread_mutex_lock(&l->lock);
	if (!hw_enabled(l))
		goto out;
	switch (m->dm) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		k = accept_fixed(l, m->vector, m->level);
		break;
	case APIC_DM_NMI:
		l->nmi_pending = k = true;
		break;
	case APIC_DM_INIT:
		if (m->level && !m->assert)
			break; /* INIT level de-assert: only synchronizes arbitration IDs */
		/* Reset now, not when the CPU gets round to it: Linux sends the
		 * SIPI right after the INIT, and it must find WAIT_FOR_SIPI. */
		reset_regs(l);
		l->init_state = LAPIC_WAIT_FOR_SIPI;
		l->init_pending = k = true;
		break;
	case APIC_DM_SIPI:
		/* SIPIs outside wait-for-SIPI are ignored (SDM 8.4.4.1). */
		if (l->init_state == LAPIC_WAIT_FOR_SIPI && l->sipi_vector < 0) {
			l->sipi_vector = m->vector;
			k = true;
		}
		break;
	case APIC_DM_EXTINT:
		l->extint_pending = k = true;
		break;
	default:
		pr_warn_ratelimited("lapic %d: delivery mode %u dropped", l->cpu, m->dm);
		break; /* SMI and reserved modes */
	}
out:
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

void apic_bus_deliver(struct apic_bus *b, const struct apic_msg *m)
{
	uint64_t targets[(LAPIC_MAX_CPUS + 63) / 64] = { 0 };
	int n = b->nr_cpus, lowest = -1;
	uint8_t lowest_id = 0;

	if ((m->dm == APIC_DM_FIXED || m->dm == APIC_DM_LOWEST) && m->vector < 16)
		return;
	for (int i = 0; i < n; i++) {
		bool hit;

		if (!b->cpus[i])
			continue;
		switch (m->shorthand & 3) {
		case 1: hit = i == m->src_cpu; break;
		case 2: hit = true; break;
		case 3: hit = i != m->src_cpu; break;
		default: hit = lapic_match(b->cpus[i], m->dest, m->logical); break;
		}
		if (!hit)
			continue;
		targets[i / 64] |= 1ULL << (i % 64);
		/* Lowest priority: arbitration is model-specific (SDM 11.6.2.4);
		 * the lowest APIC ID is deterministic and what the brief asks. */
		if (m->dm == APIC_DM_LOWEST) {
			uint8_t id = lapic_id_of(b->cpus[i]);

			if (lowest < 0 || id < lowest_id) {
				lowest = i;
				lowest_id = id;
			}
		}
	}
	if (m->dm == APIC_DM_LOWEST) {
		if (lowest >= 0)
			lapic_deliver(b->cpus[lowest], m);
		return;
	}
	for (int i = 0; i < n; i++)
		if (targets[i / 64] & (1ULL << (i % 64)))
			lapic_deliver(b->cpus[i], m);
}

/* ---- life cycle ---- */

int lapic_init(struct lapic *l, struct apic_bus *b, int cpu, uint8_t apic_id, bool bsp)
{
	if (!b->ops || cpu != b->nr_cpus || apic_id == 0xff)
		return -EINVAL;
	if (cpu >= LAPIC_MAX_CPUS)
		return -ENOSPC;
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
	l->bus = b;
	l->cpu = cpu;
	atomic_store(&l->apic_base, LAPIC_DEFAULT_BASE | APIC_BASE_ENABLE | (bsp ? APIC_BASE_BSP : 0));
	l->id = (uint32_t)apic_id << 24;
	reset_regs(l);
	l->init_state = bsp ? LAPIC_RUNNING : LAPIC_WAIT_FOR_SIPI;
	/* Until the owner says otherwise the guest TSC counts nanoseconds. */
	l->tsc_hz = NS_PER_SEC;
	b->cpus[cpu] = l;
	b->nr_cpus++;
	return 0;
}

void lapic_destroy(struct lapic *l)
{
	if (l->bus && l->cpu < l->bus->nr_cpus && l->bus->cpus[l->cpu] == l)
		l->bus->cpus[l->cpu] = NULL; /* the bus skips the empty slot */
	pthread_mutex_destroy(&l->lock);
}

/* ---- registers ---- */

static uint32_t reg_read(struct lapic *l, uint32_t reg)
{
	switch (reg) {
	case LAPIC_ID: return l->id;
	case LAPIC_LVR: return LAPIC_VERSION;
	case LAPIC_TPR: return l->tpr;
	case LAPIC_APR: return 0; /* as KVM: arbitration is not modelled */
	case LAPIC_PPR: return ppr(l);
	case LAPIC_EOI: return 0; /* write-only */
	case LAPIC_RRD: return 0;
	case LAPIC_LDR: return l->ldr;
	case LAPIC_DFR: return l->dfr;
	case LAPIC_SVR: return l->svr;
	case LAPIC_ESR: return l->esr;
	case LAPIC_ICR_LO: return l->icr_lo; /* delivery status 0: always idle */
	case LAPIC_ICR_HI: return l->icr_hi;
	case LAPIC_TIMER_ICR:
		return timer_mode(l) == APIC_TIMER_TSC_DEADLINE ? 0 : l->timer_icr;
	case LAPIC_TIMER_CCR: return timer_ccr(l, bus_now(l->bus));
	case LAPIC_TIMER_DCR: return l->timer_dcr;
	}
	if (reg >= LAPIC_ISR && reg < LAPIC_ISR + 0x80)
		return l->isr[(reg - LAPIC_ISR) >> 4];
	if (reg >= LAPIC_TMR && reg < LAPIC_TMR + 0x80)
		return l->tmr[(reg - LAPIC_TMR) >> 4];
	if (reg >= LAPIC_IRR && reg < LAPIC_IRR + 0x80)
		return l->irr[(reg - LAPIC_IRR) >> 4];
	if (reg >= LAPIC_LVT_TIMER && reg <= LAPIC_LVT_ERROR)
		return l->lvt[(reg - LAPIC_LVT_TIMER) >> 4];
	/* Reserved, and CMCI (LVR says 6 LVT entries). */
	lapic_error(l, APIC_ESR_ILLEGAL_REG);
	return 0;
}

void lapic_mmio_read(struct lapic *l, uint32_t off, void *data, unsigned len)
{
	uint32_t reg = off & ~0xfu, sub = off & 0xfu, v = 0;

	memset(data, 0, len);
	/* guest-controlled off/len: one register, at most 4 bytes */
	if (off >= LAPIC_MMIO_SIZE || len == 0 || len > 4 || sub + len > 4)
		return;
	pthread_mutex_lock(&l->lock);
	v = reg_read(l, reg);
	pthread_mutex_unlock(&l->lock);
	v >>= sub * 8;
	memcpy(data, &v, len); /* little-endian host, as the whole VMM assumes */
}

/* Writing the LVT timer (SDM 11.5.4.1): entering or leaving TSC-deadline
 * mode disarms the timer; one-shot <-> periodic keeps it running. */
static void write_lvt_timer(struct lapic *l, uint32_t v)
{
	uint32_t old_mode = timer_mode(l);

	l->lvt[LVT_TIMER] = v;
	if ((old_mode == APIC_TIMER_TSC_DEADLINE) != (timer_mode(l) == APIC_TIMER_TSC_DEADLINE)) {
		l->timer_icr = 0;
		l->tsc_deadline = 0;
		timer_stop(l);
	}
}

/* A new divider while counting: keep the current count and go on at the
 * new rate, as the hardware's counter would. */
static void write_dcr(struct lapic *l, uint32_t v, uint64_t now)
{
	uint32_t ccr;
	uint64_t left;
	bool running = l->timer_deadline_ns != UINT64_MAX && timer_mode(l) != APIC_TIMER_TSC_DEADLINE;

	if (!running) {
		l->timer_dcr = v;
		return;
	}
	ccr = timer_ccr(l, now);
	l->timer_dcr = v;
	/* Pretend the count was loaded earlier, so ccr ticks remain. */
	left = ticks_to_ns(l, l->timer_icr - ccr);
	l->timer_start_ns = now > left ? now - left : 0;
	left = ticks_to_ns(l, ccr);
	if (timer_mode(l) == APIC_TIMER_PERIODIC && left < LAPIC_MIN_PERIOD_NS)
		left = LAPIC_MIN_PERIOD_NS;
	l->timer_deadline_ns = now + left;
}

/* Build the IPI from ICR (SDM 11.6.1). Returns whether to send it. */
static bool icr_to_msg(struct lapic *l, struct apic_msg *m)
{
	uint32_t lo = l->icr_lo;

	memset(m, 0, sizeof(*m));
	m->vector = lo & 0xff;
	m->dm = (lo >> 8) & 7;
	m->logical = lo & (1u << 11);
	m->assert = lo & (1u << 14);
	m->level = lo & (1u << 15);
	m->shorthand = (lo >> 18) & 3;
	m->dest = l->icr_hi >> 24;
	m->src_cpu = l->cpu;
	switch (m->dm) {
	case APIC_DM_FIXED:
	case APIC_DM_LOWEST:
		if (m->vector < 16) {
			lapic_error(l, APIC_ESR_SEND_ILLEGAL);
			return false;
		}
		/* IPIs are edge-triggered; a level flag would make EOI
		 * broadcast to the IOAPIC for a vector it never sent. */
		m->level = false;
		return true;
	case APIC_DM_NMI:
	case APIC_DM_INIT:
	case APIC_DM_SIPI:
		if (m->shorthand == 1) /* self is invalid for these (Table 11-3 notes) */
			return false;
		return true;
	default:
		pr_warn_ratelimited("lapic %d: IPI delivery mode %u ignored", l->cpu, m->dm);
		return false; /* SMI, reserved, ExtINT */
	}
}

void lapic_mmio_write(struct lapic *l, uint32_t off, const void *data, unsigned len)
{
	uint32_t v, reg = off;
	bool send = false, k = false;
	int eoi_vector = -1;
	struct apic_msg m;

	/* guest-controlled: only aligned 32-bit stores reach a register (SDM 11.4.1) */
	if (off >= LAPIC_MMIO_SIZE || len != 4 || (off & 0xf))
		return;
	memcpy(&v, data, 4);
	pthread_mutex_lock(&l->lock);
	switch (reg) {
	case LAPIC_ID:
		l->id = v & 0xff000000;
		break;
	case LAPIC_TPR:
		l->tpr = v & 0xff;
		break;
	case LAPIC_EOI: {
		/* SDM 11.8.5: retire the highest in-service vector. */
		int isrv = vec_highest(l->isr);

		if (isrv >= 0) {
			vec_clear(l->isr, (unsigned)isrv);
			if (vec_test(l->tmr, (unsigned)isrv))
				eoi_vector = isrv;
		}
		break;
	}
	case LAPIC_LDR:
		l->ldr = v & 0xff000000;
		break;
	case LAPIC_DFR:
		l->dfr = v | 0x0fffffff;
		break;
	case LAPIC_SVR:
		l->svr = v & SVR_MASK;
		if (!sw_enabled(l)) /* SDM 11.4.7.2: software disable masks every LVT */
			for (int i = 0; i < LVT_NR; i++)
				l->lvt[i] |= APIC_LVT_MASKED;
		break;
	case LAPIC_ESR:
		/* SDM 11.5.3: a write makes the errors seen since the last
		 * write readable and starts collecting afresh. */
		l->esr = l->esr_pending;
		l->esr_pending = 0;
		break;
	case LAPIC_ICR_LO:
		l->icr_lo = v & ICR_LO_MASK;
		send = icr_to_msg(l, &m);
		break;
	case LAPIC_ICR_HI:
		l->icr_hi = v & 0xff000000;
		break;
	case LAPIC_LVT_TIMER: case LAPIC_LVT_THERMAL: case LAPIC_LVT_PERF:
	case LAPIC_LVT_LINT0: case LAPIC_LVT_LINT1: case LAPIC_LVT_ERROR: {
		int i = (int)(reg - LAPIC_LVT_TIMER) >> 4;

		v &= lvt_mask[i];
		if (!sw_enabled(l))
			v |= APIC_LVT_MASKED;
		if (i == LVT_TIMER)
			write_lvt_timer(l, v);
		else
			l->lvt[i] = v;
		/* Unmasking an ExtINT LINT0 while the PIC's INTR is high. */
		k = i == LVT_LINT0 && l->lint_level[0] && !(v & APIC_LVT_MASKED);
		break;
	}
	case LAPIC_TIMER_ICR:
		if (timer_mode(l) == APIC_TIMER_TSC_DEADLINE)
			break; /* ignored in TSC-deadline mode (SDM 11.5.4.1) */
		l->timer_icr = v;
		timer_start(l, bus_now(l->bus));
		break;
	case LAPIC_TIMER_DCR:
		write_dcr(l, v & DCR_MASK, bus_now(l->bus));
		break;
	case LAPIC_LVR: case LAPIC_APR: case LAPIC_PPR: case LAPIC_RRD:
	case LAPIC_TIMER_CCR:
		break; /* read-only: writes are ignored */
	default:
		if ((reg >= LAPIC_ISR && reg < LAPIC_ISR + 0x80) ||
		    (reg >= LAPIC_TMR && reg < LAPIC_TMR + 0x80) ||
		    (reg >= LAPIC_IRR && reg < LAPIC_IRR + 0x80))
			break; /* read-only */
		k = lapic_error(l, APIC_ESR_ILLEGAL_REG);
		break;
	}
	pthread_mutex_unlock(&l->lock);
	/* Calls out only after dropping the lock (lock order in lapic.h). */
	if (k)
		kick(l);
	if (eoi_vector >= 0 && l->bus->ops->eoi)
		l->bus->ops->eoi(l->bus->opaque, eoi_vector);
	if (send)
		apic_bus_deliver(l->bus, &m);
}

bool lapic_owns_gpa(struct lapic *l, uint64_t gpa)
{
	uint64_t base = atomic_load(&l->apic_base);

	return (base & APIC_BASE_ENABLE) && gpa - (base & APIC_BASE_ADDR_MASK) < LAPIC_MMIO_SIZE;
}

uint64_t lapic_get_apic_base(struct lapic *l)
{
	return atomic_load(&l->apic_base);
}

int lapic_set_apic_base(struct lapic *l, uint64_t value)
{
	uint64_t old;

	if (value & APIC_BASE_RESERVED)
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	old = atomic_load(&l->apic_base);
	atomic_store(&l->apic_base, value);
	/* SDM 11.4.3: disabling loses the state; it comes back as at power-on. */
	if ((old & APIC_BASE_ENABLE) && !(value & APIC_BASE_ENABLE))
		reset_regs(l);
	pthread_mutex_unlock(&l->lock);
	return 0;
}

/* ---- interrupt acceptance ---- */

/* A software-disabled APIC takes no new fixed interrupts (accept_fixed),
 * but what IRR already holds is still dispatched (SDM 11.4.7.2: pending
 * interrupts "are held and require masking or handling by the CPU"). */
static int get_interrupt_locked(const struct lapic *l)
{
	int v;

	if (!hw_enabled(l))
		return -1;
	v = vec_highest(l->irr);
	if (v < 0 || ((uint32_t)v & 0xf0) <= (ppr(l) & 0xf0))
		return -1;
	return v;
}

static void accept_locked(struct lapic *l, int vector)
{
	if (vector < 16 || vector > 255 || !vec_test(l->irr, (unsigned)vector))
		return;
	vec_clear(l->irr, (unsigned)vector);
	vec_set(l->isr, (unsigned)vector);
}

int lapic_get_interrupt(struct lapic *l)
{
	int v;

	pthread_mutex_lock(&l->lock);
	v = get_interrupt_locked(l);
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_accept_interrupt(struct lapic *l, int vector)
{
	pthread_mutex_lock(&l->lock);
	accept_locked(l, vector);
	pthread_mutex_unlock(&l->lock);
}

int lapic_ack_interrupt(struct lapic *l)
{
	int v;

	pthread_mutex_lock(&l->lock);
	v = get_interrupt_locked(l);
	if (v >= 0)
		accept_locked(l, v);
	pthread_mutex_unlock(&l->lock);
	return v;
}

void lapic_set_irr(struct lapic *l, uint8_t vector)
{
	bool k = false;

	if (vector < 16)
		return;
	pthread_mutex_lock(&l->lock);
	if (hw_enabled(l)) {
		vec_set(l->irr, vector);
		vec_clear(l->tmr, vector);
		k = true;
	}
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

bool lapic_has_nmi(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->nmi_pending;
	pthread_mutex_unlock(&l->lock);
	return r;
}

void lapic_set_nmi_pending(struct lapic *l, bool pending)
{
	pthread_mutex_lock(&l->lock);
	l->nmi_pending = pending;
	pthread_mutex_unlock(&l->lock);
	if (pending)
		kick(l);
}

int lapic_unaccept_interrupt(struct lapic *l, uint8_t vector)
{
	int ret = -ENOENT;

	pthread_mutex_lock(&l->lock);
	if (vector >= 16 && vec_test(l->isr, vector)) {
		vec_clear(l->isr, vector);
		vec_set(l->irr, vector);
		ret = 0;
	}
	pthread_mutex_unlock(&l->lock);
	if (!ret)
		kick(l);
	return ret;
}

bool lapic_take_nmi(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->nmi_pending;
	l->nmi_pending = false;
	pthread_mutex_unlock(&l->lock);
	return r;
}

static bool extint_locked(const struct lapic *l)
{
	uint32_t lvt0 = l->lvt[LVT_LINT0];

	if (l->extint_pending)
		return true;
	if (!l->lint_level[0])
		return false;
	/* A hardware-disabled APIC passes INTR straight to the core (SDM 11.4.3). */
	if (!hw_enabled(l))
		return true;
	return !(lvt0 & APIC_LVT_MASKED) && ((lvt0 >> 8) & 7) == APIC_DM_EXTINT;
}

bool lapic_has_extint(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = extint_locked(l);
	pthread_mutex_unlock(&l->lock);
	return r;
}

int lapic_ack_extint(struct lapic *l)
{
	bool pending;

	pthread_mutex_lock(&l->lock);
	pending = extint_locked(l);
	l->extint_pending = false;
	pthread_mutex_unlock(&l->lock);
	if (!pending || !l->bus->ops->extint_ack)
		return -1;
	/* The PIC answers the INTA cycle; it may call lapic_set_lint(). */
	return l->bus->ops->extint_ack(l->bus->opaque);
}

void lapic_set_lint(struct lapic *l, int pin, int level)
{
	bool k = false, rising;
	uint32_t lvt;

	if (pin < 0 || pin > 1)
		return;
	pthread_mutex_lock(&l->lock);
	rising = level && !l->lint_level[pin];
	l->lint_level[pin] = level != 0;
	lvt = l->lvt[LVT_LINT0 + pin];
	if (!hw_enabled(l)) {
		/* Disabled APIC: LINT0 is INTR, LINT1 is NMI (SDM 11.4.3). */
		if (pin == 1 && rising)
			l->nmi_pending = true;
		k = rising;
	} else if (!(lvt & APIC_LVT_MASKED)) {
		switch ((lvt >> 8) & 7) {
		case APIC_DM_EXTINT:
			k = rising; /* pending for as long as the line is high */
			break;
		case APIC_DM_NMI:
			if (rising)
				l->nmi_pending = k = true;
			break;
		case APIC_DM_FIXED:
			/* Treated as edge-triggered: a level LINT's remote IRR
			 * is not modelled (nothing in tarn drives LINT that way). */
			if (rising)
				k = accept_fixed(l, lvt & 0xff, false);
			break;
		default:
			break; /* SMI, INIT via LINT: not wired in a PC */
		}
	}
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

/* ---- INIT / SIPI ---- */

bool lapic_take_init(struct lapic *l)
{
	bool r;

	pthread_mutex_lock(&l->lock);
	r = l->init_pending;
	l->init_pending = false;
	pthread_mutex_unlock(&l->lock);
	return r;
}

int lapic_take_sipi(struct lapic *l)
{
	int v = -1;

	pthread_mutex_lock(&l->lock);
	if (l->init_state == LAPIC_WAIT_FOR_SIPI && l->sipi_vector >= 0) {
		v = l->sipi_vector;
		l->sipi_vector = -1;
		l->init_state = LAPIC_RUNNING;
	}
	pthread_mutex_unlock(&l->lock);
	return v;
}

enum lapic_init_state lapic_get_init_state(struct lapic *l)
{
	enum lapic_init_state s;

	pthread_mutex_lock(&l->lock);
	s = l->init_state;
	pthread_mutex_unlock(&l->lock);
	return s;
}

void lapic_set_init_state(struct lapic *l, enum lapic_init_state s)
{
	pthread_mutex_lock(&l->lock);
	l->init_state = s == LAPIC_WAIT_FOR_SIPI ? LAPIC_WAIT_FOR_SIPI : LAPIC_RUNNING;
	if (l->init_state == LAPIC_RUNNING)
		l->sipi_vector = -1;
	pthread_mutex_unlock(&l->lock);
}

/* ---- timer ---- */

void lapic_timer_update(struct lapic *l, uint64_t now)
{
	bool k = false;
	uint32_t lvt;

	pthread_mutex_lock(&l->lock);
	if (l->timer_deadline_ns == UINT64_MAX || now < l->timer_deadline_ns)
		goto out;
	lvt = l->lvt[LVT_TIMER];
	if (!(lvt & APIC_LVT_MASKED) && hw_enabled(l))
		k = accept_fixed(l, lvt & 0xff, false);
	switch (timer_mode(l)) {
	case APIC_TIMER_PERIODIC: {
		/* Coalesce missed periods: one interrupt, then the next period
		 * boundary after now. O(1) however late we are. */
		uint64_t p = timer_period_ns(l), late;

		if (p < LAPIC_MIN_PERIOD_NS)
			p = LAPIC_MIN_PERIOD_NS;
		late = now - l->timer_deadline_ns;
		if (l->timer_deadline_ns > UINT64_MAX - p * (late / p + 1))
			timer_stop(l);
		else
			l->timer_deadline_ns += p * (late / p + 1);
		break;
	}
	case APIC_TIMER_TSC_DEADLINE:
		l->tsc_deadline = 0; /* SDM 11.5.4.1: fired, disarmed, MSR reads 0 */
		timer_stop(l);
		break;
	default:
		timer_stop(l); /* one-shot; the current count reads 0 from now on */
		break;
	}
out:
	pthread_mutex_unlock(&l->lock);
	if (k)
		kick(l);
}

uint64_t lapic_next_deadline_ns(struct lapic *l)
{
	uint64_t d;

	pthread_mutex_lock(&l->lock);
	d = l->timer_deadline_ns;
	pthread_mutex_unlock(&l->lock);
	return d;
}

void lapic_set_tsc_clock(struct lapic *l, uint64_t tsc_hz, uint64_t ref_ns, uint64_t tsc_at_ref)
{
	pthread_mutex_lock(&l->lock);
	l->tsc_hz = tsc_hz;
	l->tsc_ref_ns = ref_ns;
	l->tsc_ref = tsc_at_ref;
	/* A TSC write moves an armed deadline in time. */
	if (timer_mode(l) == APIC_TIMER_TSC_DEADLINE && l->tsc_deadline)
		tsc_deadline_arm(l, ref_ns);
	pthread_mutex_unlock(&l->lock);
}

void lapic_set_tsc_deadline(struct lapic *l, uint64_t tsc, uint64_t now_ns)
{
	pthread_mutex_lock(&l->lock);
	/* SDM 11.5.4.1: writes outside TSC-deadline mode are ignored. */
	if (timer_mode(l) == APIC_TIMER_TSC_DEADLINE) {
		l->tsc_deadline = tsc;
		tsc_deadline_arm(l, now_ns);
	}
	pthread_mutex_unlock(&l->lock);
}

uint64_t lapic_get_tsc_deadline(struct lapic *l)
{
	uint64_t v;

	pthread_mutex_lock(&l->lock);
	v = timer_mode(l) == APIC_TIMER_TSC_DEADLINE ? l->tsc_deadline : 0;
	pthread_mutex_unlock(&l->lock);
	return v;
}

/* ---- snapshots ---- */

void lapic_save(struct lapic *l, struct lapic_state *st, uint64_t now)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&l->lock);
	st->apic_base = atomic_load(&l->apic_base);
	st->id = l->id;
	st->tpr = l->tpr;
	st->ldr = l->ldr;
	st->dfr = l->dfr;
	st->svr = l->svr;
	st->esr = l->esr;
	st->esr_pending = l->esr_pending;
	st->icr_lo = l->icr_lo;
	st->icr_hi = l->icr_hi;
	memcpy(st->lvt, l->lvt, sizeof(st->lvt));
	memcpy(st->irr, l->irr, sizeof(st->irr));
	memcpy(st->isr, l->isr, sizeof(st->isr));
	memcpy(st->tmr, l->tmr, sizeof(st->tmr));
	st->timer_icr = l->timer_icr;
	st->timer_dcr = l->timer_dcr;
	st->timer_elapsed_ns = now > l->timer_start_ns ? now - l->timer_start_ns : 0;
	/* Keep it below one period (< 10 minutes), so any host's clock can
	 * take it back: periodic counts repeat, a spent one-shot reads 0. */
	if (l->timer_icr && timer_mode(l) == APIC_TIMER_PERIODIC)
		st->timer_elapsed_ns %= timer_period_ns(l);
	else if (st->timer_elapsed_ns > timer_period_ns(l))
		st->timer_elapsed_ns = timer_period_ns(l);
	if (l->timer_deadline_ns == UINT64_MAX)
		st->timer_remaining_ns = UINT64_MAX;
	else
		st->timer_remaining_ns = l->timer_deadline_ns > now ? l->timer_deadline_ns - now : 0;
	st->tsc_deadline = l->tsc_deadline;
	st->lint_level[0] = l->lint_level[0];
	st->lint_level[1] = l->lint_level[1];
	st->extint_pending = l->extint_pending;
	st->nmi_pending = l->nmi_pending;
	st->init_pending = l->init_pending;
	st->init_state = (uint8_t)l->init_state;
	st->sipi_vector = (int16_t)l->sipi_vector;
	pthread_mutex_unlock(&l->lock);
}

/* ---- the register page (KVM's struct kvm_lapic_state, xAPIC) ---- */

static void page_put(uint8_t *page, uint32_t reg, uint32_t v)
{
	memcpy(page + reg, &v, 4);
}

static uint32_t page_word(const uint8_t *page, uint32_t reg)
{
	uint32_t v;

	memcpy(&v, page + reg, 4);
	return v;
}

void lapic_page_get(struct lapic *l, uint8_t page[LAPIC_PAGE_SIZE], uint64_t now)
{
	memset(page, 0, LAPIC_PAGE_SIZE);
	pthread_mutex_lock(&l->lock);
	page_put(page, LAPIC_ID, l->id);
	page_put(page, LAPIC_LVR, LAPIC_VERSION);
	page_put(page, LAPIC_TPR, l->tpr);
	page_put(page, LAPIC_PPR, ppr(l));
	page_put(page, LAPIC_LDR, l->ldr);
	page_put(page, LAPIC_DFR, l->dfr);
	page_put(page, LAPIC_SVR, l->svr);
	for (int i = 0; i < 8; i++) {
		page_put(page, LAPIC_ISR + 0x10 * (uint32_t)i, l->isr[i]);
		page_put(page, LAPIC_TMR + 0x10 * (uint32_t)i, l->tmr[i]);
		page_put(page, LAPIC_IRR + 0x10 * (uint32_t)i, l->irr[i]);
	}
	page_put(page, LAPIC_ESR, l->esr);
	page_put(page, LAPIC_LVT_CMCI, APIC_LVT_MASKED); /* not modelled: as at reset */
	page_put(page, LAPIC_ICR_LO, l->icr_lo);
	page_put(page, LAPIC_ICR_HI, l->icr_hi);
	for (int i = 0; i < LVT_NR; i++)
		page_put(page, LAPIC_LVT_TIMER + 0x10 * (uint32_t)i, l->lvt[i]);
	page_put(page, LAPIC_TIMER_ICR, l->timer_icr);
	page_put(page, LAPIC_TIMER_CCR, timer_ccr(l, now));
	page_put(page, LAPIC_TIMER_DCR, l->timer_dcr);
	pthread_mutex_unlock(&l->lock);
}

int lapic_page_set(struct lapic *l, const uint8_t page[LAPIC_PAGE_SIZE], uint64_t now)
{
	struct lapic_state st;
	uint64_t per_tick, ccr;

	lapic_save(l, &st, now); /* what the page does not hold stays */
	st.id = page_word(page, LAPIC_ID);
	st.tpr = page_word(page, LAPIC_TPR);
	st.ldr = page_word(page, LAPIC_LDR);
	st.dfr = page_word(page, LAPIC_DFR);
	st.svr = page_word(page, LAPIC_SVR);
	st.esr = page_word(page, LAPIC_ESR);
	st.esr_pending = 0;
	st.icr_lo = page_word(page, LAPIC_ICR_LO) & ~(1u << 12); /* delivery status: idle */
	st.icr_hi = page_word(page, LAPIC_ICR_HI);
	for (int i = 0; i < 8; i++) {
		st.isr[i] = page_word(page, LAPIC_ISR + 0x10 * (uint32_t)i);
		st.tmr[i] = page_word(page, LAPIC_TMR + 0x10 * (uint32_t)i);
		st.irr[i] = page_word(page, LAPIC_IRR + 0x10 * (uint32_t)i);
	}
	for (int i = 0; i < LVT_NR; i++)
		st.lvt[i] = page_word(page, LAPIC_LVT_TIMER + 0x10 * (uint32_t)i);
	st.timer_icr = page_word(page, LAPIC_TIMER_ICR);
	st.timer_dcr = page_word(page, LAPIC_TIMER_DCR);
	/* The timer from its current count: running while the count is not 0
	 * in one-shot or periodic mode (TSC-deadline mode is IA32_TSC_DEADLINE's). */
	ccr = page_word(page, LAPIC_TIMER_CCR);
	st.timer_remaining_ns = UINT64_MAX;
	st.timer_elapsed_ns = 0;
	per_tick = dcr_ticks_to_ns(st.timer_dcr, 1);
	if (ccr && ccr <= st.timer_icr && (st.lvt[LVT_TIMER] & TIMER_MODE_MASK) != APIC_TIMER_TSC_DEADLINE) {
		st.timer_remaining_ns = ccr * per_tick;
		st.timer_elapsed_ns = (st.timer_icr - ccr) * per_tick;
	}
	return lapic_restore(l, &st, now);
}

static bool state_valid(const struct lapic_state *st)
{
	if (st->apic_base & APIC_BASE_RESERVED)
		return false;
	if ((st->id | st->ldr | st->icr_hi) & 0x00ffffff)
		return false;
	if (st->tpr > 0xff || (st->svr & ~SVR_MASK) || (st->timer_dcr & ~DCR_MASK))
		return false;
	if ((st->dfr & 0x0fffffff) != 0x0fffffff || ((st->dfr >> 28) != 0xf && (st->dfr >> 28) != 0))
		return false;
	if (((st->esr | st->esr_pending) & ~0xefu) || (st->icr_lo & ~ICR_LO_MASK))
		return false;
	for (int i = 0; i < LVT_NR; i++)
		if (st->lvt[i] & ~lvt_mask[i])
			return false;
	/* Vectors 0-15 can never be pending or in service. */
	if ((st->irr[0] | st->isr[0] | st->tmr[0]) & 0xffff)
		return false;
	if (st->lint_level[0] > 1 || st->lint_level[1] > 1 || st->extint_pending > 1 ||
	    st->nmi_pending > 1 || st->init_pending > 1 || st->init_state > LAPIC_WAIT_FOR_SIPI)
		return false;
	if (st->sipi_vector < -1 || st->sipi_vector > 255)
		return false;
	return true;
}

int lapic_restore(struct lapic *l, const struct lapic_state *st, uint64_t now)
{
	if (!state_valid(st))
		return -EINVAL;
	pthread_mutex_lock(&l->lock);
	atomic_store(&l->apic_base, st->apic_base);
	l->id = st->id;
	l->tpr = st->tpr;
	l->ldr = st->ldr;
	l->dfr = st->dfr;
	l->svr = st->svr;
	l->esr = st->esr;
	l->esr_pending = st->esr_pending;
	l->icr_lo = st->icr_lo;
	l->icr_hi = st->icr_hi;
	memcpy(l->lvt, st->lvt, sizeof(l->lvt));
	memcpy(l->irr, st->irr, sizeof(l->irr));
	memcpy(l->isr, st->isr, sizeof(l->isr));
	memcpy(l->tmr, st->tmr, sizeof(l->tmr));
	l->timer_icr = st->timer_icr;
	l->timer_dcr = st->timer_dcr;
	l->timer_start_ns = now > st->timer_elapsed_ns ? now - st->timer_elapsed_ns : 0;
	if (st->timer_remaining_ns == UINT64_MAX)
		l->timer_deadline_ns = UINT64_MAX;
	else if (st->timer_remaining_ns >= UINT64_MAX - now)
		l->timer_deadline_ns = UINT64_MAX - 1;
	else
		l->timer_deadline_ns = now + st->timer_remaining_ns;
	l->tsc_deadline = st->tsc_deadline;
	l->lint_level[0] = st->lint_level[0];
	l->lint_level[1] = st->lint_level[1];
	l->extint_pending = st->extint_pending;
	l->nmi_pending = st->nmi_pending;
	l->init_pending = st->init_pending;
	l->init_state = (enum lapic_init_state)st->init_state;
	l->sipi_vector = st->sipi_vector;
	pthread_mutex_unlock(&l->lock);
	return 0;
}
