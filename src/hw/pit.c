/* 8254 PIT after the Intel 8254 data sheet ("Mode Definitions", "Read
 * Operations", "Read-Back Command"). Counters are derived from the time
 * since the count was loaded; nothing ticks. Port writes are
 * guest-controlled: any byte in any order must leave a sane state. */
#include "hw/pit.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "bus/bus.h"
#include "core/clock.h"
#include "core/log.h"


/* read_state/write_state/count_latched encoding (rw_mode values 1..3, plus
 * the second byte of a word). */
enum { RW_LSB = 1, RW_MSB = 2, RW_WORD0 = 3, RW_WORD1 = 4 };

static uint64_t pit_now(const struct pit *p)
{
	return p->ops && p->ops->now_ns ? p->ops->now_ns(p->opaque) : monotonic_ns();
}

/* Input clocks elapsed in ns (floor) and the first ns at which tick n has
 * happened (ceil): exact inverses, so an edge is never early. */
static uint64_t ns_to_ticks(uint64_t ns)
{
	return (uint64_t)((unsigned __int128)ns * PIT_FREQ_HZ / NS_PER_SEC);
}

static uint64_t ticks_to_ns(uint64_t ticks)
{
	unsigned __int128 t = (unsigned __int128)ticks * NS_PER_SEC + PIT_FREQ_HZ - 1;

	t /= PIT_FREQ_HZ;
	return t > UINT64_MAX / 2 ? UINT64_MAX / 2 : (uint64_t)t;
}

/* Clocks counted since the load. Times wrap modulo 2^64 on purpose: a
 * restored load_ns may lie "before" this host's clock zero. */
static uint64_t elapsed_ticks(const struct pit_channel *c, uint64_t now)
{
	return ns_to_ticks((c->paused ? c->paused_ns : now) - c->load_ns);
}

static bool periodic(const struct pit_channel *c)
{
	return c->mode == 2 || c->mode == 3;
}

/* Modes 1 and 5 count only after a gate rising edge. */
static bool counting(const struct pit_channel *c)
{
	return c->loaded && (c->triggered || (c->mode != 1 && c->mode != 5));
}

static uint32_t modulus(const struct pit_channel *c)
{
	return c->bcd ? 10000 : 65536;
}

/* The counting element (data sheet "Mode Definitions"). Mode 3 counts by
 * two, so it runs through its count twice per period. */
static uint32_t get_count(const struct pit_channel *c, uint64_t now)
{
	uint64_t d;

	if (!counting(c))
		return c->loaded ? c->count % modulus(c) : 0;
	d = elapsed_ticks(c, now);
	switch (c->mode) {
	case 2:
		return (uint32_t)((c->count - d % c->count) % modulus(c));
	case 3:
		return (uint32_t)((c->count - (2 * d) % c->count) % modulus(c));
	default: /* 0, 1, 4, 5: count down, wrapping after terminal count */
		return (uint32_t)((c->count + modulus(c) - d % modulus(c)) % modulus(c));
	}
}

/* OUT (data sheet figures for each mode). */
static bool get_out(const struct pit_channel *c, uint64_t now)
{
	uint64_t d;

	if (!c->loaded)
		return c->mode != 0; /* after the control word: mode 0 low, others high */
	if (periodic(c) && !c->gate)
		return true; /* gate low forces OUT high in modes 2 and 3 */
	if (!counting(c))
		return true; /* modes 1 and 5 before their trigger */
	d = elapsed_ticks(c, now);
	switch (c->mode) {
	case 0: return d >= c->count;		/* high at terminal count, stays */
	case 1: return d >= c->count;		/* low from trigger to terminal count */
	case 2: return c->count < 2 || d % c->count != c->count - 1; /* low for the clock at 1 */
	case 3: return d % c->count < (c->count + 1) / 2; /* high the first half */
	default: return d != c->count;		/* 4, 5: one-clock low strobe at 0 */
	}
}

static uint16_t to_bcd(uint32_t v)
{
	v %= 10000;
	return (uint16_t)((v / 1000) << 12 | (v / 100 % 10) << 8 | (v / 10 % 10) << 4 | v % 10);
}

/* A guest may write non-BCD digits: clamp each to 9 rather than trust it. */
static uint32_t from_bcd(uint16_t v)
{
	uint32_t r = 0;

	for (int shift = 12; shift >= 0; shift -= 4) {
		uint32_t digit = (v >> shift) & 0xf;

		r = r * 10 + (digit > 9 ? 9 : digit);
	}
	return r;
}

/* Channel 0: the time of the next OUT rising edge after now, given the
 * edges at clock E (one-shot) or k*count (periodic). */
static void arm_irq(struct pit_channel *c, uint64_t now)
{
	uint64_t d, edge, period;

	c->next_irq_ns = UINT64_MAX;
	if (!counting(c) || c->paused)
		return;
	d = elapsed_ticks(c, now);
	switch (c->mode) {
	case 0:
		edge = c->count; /* OUT rises at terminal count */
		break;
	case 4:
		edge = (uint64_t)c->count + 1; /* the strobe ends one clock after 0 */
		break;
	case 2:
	case 3:
		edge = (d / c->count + 1) * c->count;
		period = ticks_to_ns(c->count);
		c->next_irq_ns = c->load_ns + ticks_to_ns(edge);
		/* A guest asking for a tiny period gets 10 kHz, not a busy host. */
		if (period < PIT_MIN_PERIOD_NS && c->next_irq_ns - now < PIT_MIN_PERIOD_NS)
			c->next_irq_ns = now + PIT_MIN_PERIOD_NS;
		return;
	default:
		return; /* modes 1, 5: gate tied high on channel 0, never triggers */
	}
	if (d < edge)
		c->next_irq_ns = c->load_ns + ticks_to_ns(edge);
}

/* Start counting from now with c->count (data sheet: counting starts on
 * the clock after the count is written; a new count restarts modes 0, 2,
 * 3, 4 at once — the data sheet's "end of current period" nicety for modes
 * 2 and 3 is not modelled, Linux writes the count once). */
static void load_count(struct pit_channel *c, uint32_t raw, uint64_t now)
{
	uint32_t v = c->bcd ? from_bcd((uint16_t)raw) : raw & 0xffff;

	c->count = v ? v : modulus(c);
	c->loaded = true;
	c->load_ns = now;
	c->paused = !c->gate && c->mode != 1 && c->mode != 5;
	c->paused_ns = now;
	c->triggered = false;
	arm_irq(c, now);
}

static void latch_count(struct pit_channel *c, uint64_t now)
{
	uint32_t v;

	if (c->count_latched)
		return; /* a second latch before the read is ignored */
	v = get_count(c, now);
	c->latched_count = c->bcd ? to_bcd(v) : (uint16_t)v;
	c->count_latched = c->rw_mode;
}

static void latch_status(struct pit_channel *c, uint64_t now)
{
	if (c->status_latched)
		return;
	/* OUT, null count, RW, mode, BCD (data sheet "Status Byte"). */
	c->status = (uint8_t)(get_out(c, now) << 7 | (!c->loaded) << 6 | c->rw_mode << 4 |
			      c->mode << 1 | c->bcd);
	c->status_latched = true;
}

static void set_gate_locked(struct pit_channel *c, bool gate, uint64_t now)
{
	bool rising = gate && !c->gate;

	if (gate == c->gate)
		return;
	c->gate = gate;
	if (!c->loaded)
		return;
	switch (c->mode) {
	case 0:
	case 4:
		/* Gate low suspends counting; high resumes where it stopped. */
		if (!gate) {
			c->paused = true;
			c->paused_ns = now;
		} else if (c->paused) {
			c->load_ns += now - c->paused_ns;
			c->paused = false;
		}
		break;
	case 2:
	case 3:
		/* Gate low stops; the rising edge reloads and restarts. */
		if (!gate) {
			c->paused = true;
			c->paused_ns = now;
		} else {
			c->paused = false;
			c->load_ns = now;
		}
		break;
	default:
		/* Modes 1, 5: a rising edge (re)triggers. */
		if (rising) {
			c->triggered = true;
			c->load_ns = now;
		}
		break;
	}
	arm_irq(c, now);
}

static uint8_t read_counter(struct pit_channel *c, uint64_t now)
{
	uint32_t v;
	uint8_t r;

	if (c->status_latched) { /* read-back status comes before a latched count */
		c->status_latched = false;
		return c->status;
	}
	if (c->count_latched) {
		switch (c->count_latched) {
		case RW_MSB:
			r = c->latched_count >> 8;
			c->count_latched = 0;
			break;
		case RW_WORD0:
			r = c->latched_count & 0xff;
			c->count_latched = RW_MSB;
			break;
		default:
			r = c->latched_count & 0xff;
			c->count_latched = 0;
			break;
		}
		return r;
	}
	v = get_count(c, now);
	if (c->bcd)
		v = to_bcd(v);
	switch (c->read_state) {
	case RW_MSB:
		return (uint8_t)(v >> 8);
	case RW_WORD0:
		c->read_state = RW_WORD1;
		return (uint8_t)v;
	case RW_WORD1:
		c->read_state = RW_WORD0;
		return (uint8_t)(v >> 8);
	default:
		return (uint8_t)v;
	}
}

static void write_counter(struct pit_channel *c, uint8_t v, uint64_t now)
{
	switch (c->write_state) {
	case RW_MSB:
		load_count(c, (uint32_t)v << 8, now);
		break;
	case RW_WORD0:
		c->write_latch = v;
		c->write_state = RW_WORD1;
		break;
	case RW_WORD1:
		load_count(c, c->write_latch | (uint32_t)v << 8, now);
		c->write_state = RW_WORD0;
		break;
	case RW_LSB:
		load_count(c, v, now);
		break;
	default:
		break; /* no control word yet: the write goes nowhere */
	}
}

static void write_control(struct pit *p, uint8_t v, uint64_t now)
{
	unsigned sc = v >> 6, rw = (v >> 4) & 3;
	struct pit_channel *c;

	if (sc == 3) {
		/* Read-back: bits 1-3 select counters, bit 5 clear latches the
		 * count, bit 4 clear latches the status. */
		for (unsigned i = 0; i < 3; i++) {
			if (!(v & (2u << i)))
				continue;
			if (!(v & 0x20))
				latch_count(&p->ch[i], now);
			if (!(v & 0x10))
				latch_status(&p->ch[i], now);
		}
		return;
	}
	c = &p->ch[sc];
	if (rw == 0) {
		latch_count(c, now); /* counter latch command */
		return;
	}
	/* Mode set: control logic resets, OUT goes to its initial level and
	 * the counter waits for a count. Modes 6 and 7 are 2 and 3. */
	c->rw_mode = (uint8_t)rw;
	c->read_state = c->write_state = (uint8_t)rw;
	c->mode = (v >> 1) & 7;
	if (c->mode > 5)
		c->mode -= 4;
	c->bcd = v & 1;
	c->loaded = false;
	c->triggered = false;
	c->paused = false;
	c->count_latched = 0;
	c->status_latched = false;
	c->next_irq_ns = UINT64_MAX;
}

uint8_t pit_ioport_read(struct pit *p, uint16_t port, uint64_t now)
{
	uint8_t v = 0xff;

	pthread_mutex_lock(&p->lock);
	if (port >= PIT_BASE && port < PIT_BASE + 3) {
		v = read_counter(&p->ch[port - PIT_BASE], now);
	} else if (port == PIT_PORT_B) {
		/* Refresh toggles every 15.085 us on a PC; some old code waits on it. */
		v = (uint8_t)(p->ch[2].gate | p->speaker_en << 1 | ((now / 15085) & 1) << 4 |
			      get_out(&p->ch[2], now) << 5);
	} else if (port == PIT_BASE + 3) {
		v = 0xff; /* the control register is write-only */
	}
	pthread_mutex_unlock(&p->lock);
	return v;
}

void pit_ioport_write(struct pit *p, uint16_t port, uint8_t v, uint64_t now)
{
	uint64_t before;
	bool changed;

	pthread_mutex_lock(&p->lock);
	before = p->ch[0].next_irq_ns;
	if (port >= PIT_BASE && port < PIT_BASE + 3)
		write_counter(&p->ch[port - PIT_BASE], v, now);
	else if (port == PIT_BASE + 3)
		write_control(p, v, now);
	else if (port == PIT_PORT_B) {
		p->speaker_en = (v >> 1) & 1;
		set_gate_locked(&p->ch[2], v & 1, now);
	}
	changed = p->ch[0].next_irq_ns != before;
	pthread_mutex_unlock(&p->lock);
	if (changed && p->ops && p->ops->timer_changed)
		p->ops->timer_changed(p->opaque);
}

void pit_update(struct pit *p, uint64_t now)
{
	struct pit_channel *c = &p->ch[0];

	pthread_mutex_lock(&p->lock);
	if (c->next_irq_ns != UINT64_MAX && now >= c->next_irq_ns) {
		/* One pulse however many edges passed: missed ticks coalesce. */
		if (p->ops && p->ops->irq) {
			p->ops->irq(p->opaque, 1);
			p->ops->irq(p->opaque, 0);
		}
		if (periodic(c))
			arm_irq(c, now);
		else
			c->next_irq_ns = UINT64_MAX;
	}
	pthread_mutex_unlock(&p->lock);
}

uint64_t pit_next_deadline_ns(struct pit *p)
{
	uint64_t d;

	pthread_mutex_lock(&p->lock);
	d = p->ch[0].next_irq_ns;
	pthread_mutex_unlock(&p->lock);
	return d;
}

void pit_set_gate(struct pit *p, unsigned channel, bool gate, uint64_t now)
{
	if (channel > 2)
		return;
	pthread_mutex_lock(&p->lock);
	set_gate_locked(&p->ch[channel], gate, now);
	pthread_mutex_unlock(&p->lock);
}

bool pit_get_out(struct pit *p, unsigned channel, uint64_t now)
{
	bool out;

	if (channel > 2)
		return false;
	pthread_mutex_lock(&p->lock);
	out = get_out(&p->ch[channel], now);
	pthread_mutex_unlock(&p->lock);
	return out;
}

/* ---- bus glue: one ops table per range, each knowing its base ---- */

static void pit_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pit *p = opaque;

	if (len == 1) /* byte ports; wider reads float */
		*(uint8_t *)data = pit_ioport_read(p, (uint16_t)(PIT_BASE + off), pit_now(p));
}

static void pit_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pit *p = opaque;

	if (len == 1)
		pit_ioport_write(p, (uint16_t)(PIT_BASE + off), *(const uint8_t *)data, pit_now(p));
}

static void portb_bus_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct pit *p = opaque;

	if (len == 1)
		*(uint8_t *)data = pit_ioport_read(p, PIT_PORT_B, pit_now(p));
}

static void portb_bus_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct pit *p = opaque;

	if (len == 1)
		pit_ioport_write(p, PIT_PORT_B, *(const uint8_t *)data, pit_now(p));
}

static const struct bus_ops pit_bus_ops = { .read = pit_bus_read, .write = pit_bus_write };
static const struct bus_ops portb_bus_ops = { .read = portb_bus_read, .write = portb_bus_write };

int pit_init(struct pit *p, struct bus *pio, const struct pit_ops *ops, void *opaque)
{
	int ret;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->ops = ops;
	p->opaque = opaque;
	for (int i = 0; i < 3; i++) {
		p->ch[i].gate = i != 2; /* channels 0 and 1: gate tied high */
		p->ch[i].next_irq_ns = UINT64_MAX;
	}
	if (!pio)
		return 0;
	ret = bus_register(pio, PIT_BASE, 4, &pit_bus_ops, p, "pit");
	if (!ret)
		ret = bus_register(pio, PIT_PORT_B, 1, &portb_bus_ops, p, "port61");
	return ret;
}

void pit_destroy(struct pit *p)
{
	pthread_mutex_destroy(&p->lock);
}

void pit_save(struct pit *p, struct pit_state *st, uint64_t now)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < 3; i++) {
		const struct pit_channel *c = &p->ch[i];
		struct pit_channel_state *s = &st->ch[i];

		s->count = c->count;
		s->latched_count = c->latched_count;
		s->count_latched = c->count_latched;
		s->status = c->status;
		s->status_latched = c->status_latched;
		s->read_state = c->read_state;
		s->write_state = c->write_state;
		s->write_latch = c->write_latch;
		s->rw_mode = c->rw_mode;
		s->mode = c->mode;
		s->bcd = c->bcd;
		s->gate = c->gate;
		s->loaded = c->loaded;
		s->triggered = c->triggered;
		s->paused = c->paused;
		s->elapsed_ns = (c->paused ? c->paused_ns : now) - c->load_ns;
		if (c->next_irq_ns == UINT64_MAX)
			s->irq_in_ns = UINT64_MAX;
		else
			s->irq_in_ns = c->next_irq_ns > now ? c->next_irq_ns - now : 0;
	}
	st->speaker_en = p->speaker_en;
	pthread_mutex_unlock(&p->lock);
}

int pit_restore(struct pit *p, const struct pit_state *st, uint64_t now)
{
	if (st->speaker_en > 1)
		return -EINVAL;
	for (int i = 0; i < 3; i++) {
		const struct pit_channel_state *s = &st->ch[i];
		uint32_t max = s->bcd ? 10000 : 65536;

		if (s->mode > 5 || s->rw_mode > 3 || s->read_state > 4 || s->write_state > 4 ||
		    s->count_latched > 3)
			return -EINVAL;
		if ((s->status_latched | s->bcd | s->gate | s->loaded | s->triggered | s->paused) > 1)
			return -EINVAL;
		if (s->loaded && (s->count == 0 || s->count > max))
			return -EINVAL;
		if (i < 2 && !s->gate)
			return -EINVAL; /* gates 0 and 1 are wired high */
	}
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < 3; i++) {
		struct pit_channel *c = &p->ch[i];
		const struct pit_channel_state *s = &st->ch[i];

		c->count = s->count;
		c->latched_count = s->latched_count;
		c->count_latched = s->count_latched;
		c->status = s->status;
		c->status_latched = s->status_latched;
		c->read_state = s->read_state;
		c->write_state = s->write_state;
		c->write_latch = s->write_latch;
		c->rw_mode = s->rw_mode;
		c->mode = s->mode;
		c->bcd = s->bcd;
		c->gate = s->gate;
		c->loaded = s->loaded;
		c->triggered = s->triggered;
		c->paused = s->paused;
		c->paused_ns = now;
		c->load_ns = now - s->elapsed_ns; /* wraps on purpose, see elapsed_ticks() */
		if (s->irq_in_ns == UINT64_MAX || !c->loaded)
			c->next_irq_ns = UINT64_MAX;
		else if (s->irq_in_ns == PIT_IRQ_REARM)
			arm_irq(c, now);
		else
			c->next_irq_ns = s->irq_in_ns > UINT64_MAX - 1 - now ? UINT64_MAX - 1 : now + s->irq_in_ns;
	}
	p->speaker_en = st->speaker_en;
	pthread_mutex_unlock(&p->lock);
	return 0;
}
