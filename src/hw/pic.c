/* 8259A pair after the Intel 8259A data sheet (and the PC/AT wiring:
 * slave on master IRQ 2). The priority logic follows the data sheet's
 * "priority resolver": with rotation, priority_add names the IRQ that
 * currently has the highest priority. Port writes are guest-controlled. */
#include "hw/pic.h"

#include <errno.h>
#include <string.h>

#include "bus/bus.h"
#include "core/log.h"

#define CASCADE_IRQ 2

/* Priority (0 highest .. 7 lowest) of the best request in mask, 8 if none. */
static int get_priority(const struct pic_chip *c, uint8_t mask)
{
	int priority = 0;

	if (mask == 0)
		return 8;
	while (!(mask & (1u << ((priority + c->priority_add) & 7))))
		priority++;
	return priority;
}

/* The IRQ this chip would present on INTR, or -1: the best unmasked request
 * must beat everything in service (data sheet "Interrupt Sequence").
 * Special mask mode lets lower levels in while a masked one is in service;
 * special fully nested mode lets the cascade IRQ through again on the
 * master so higher-priority slave requests can nest. */
static int chip_get_irq(const struct pic_chip *c, bool master)
{
	int priority, cur;
	uint8_t in_service;

	priority = get_priority(c, c->irr & (uint8_t)~c->imr);
	if (priority == 8)
		return -1;
	in_service = c->isr;
	if (c->special_mask)
		in_service &= (uint8_t)~c->imr;
	if (master && c->sfnm)
		in_service &= (uint8_t)~(1u << CASCADE_IRQ);
	cur = get_priority(c, in_service);
	return priority < cur ? (priority + c->priority_add) & 7 : -1;
}

/* Drive one input of a chip. ELCR level inputs follow the line; edge
 * inputs latch a request on a rising edge only. */
static void chip_set_input(struct pic_chip *c, unsigned irq, int level)
{
	uint8_t mask = (uint8_t)(1u << irq);

	if (c->elcr & mask) {
		if (level) {
			c->irr |= mask;
			c->last_irr |= mask;
		} else {
			c->irr &= (uint8_t)~mask;
			c->last_irr &= (uint8_t)~mask;
		}
	} else if (level) {
		if (!(c->last_irr & mask))
			c->irr |= mask;
		c->last_irr |= mask;
	} else {
		c->last_irr &= (uint8_t)~mask;
	}
}

/* Recompute the cascade and the master's INTR (lock held). */
static void pic_update(struct pic *p)
{
	int level;

	chip_set_input(&p->chip[0], CASCADE_IRQ, chip_get_irq(&p->chip[1], false) >= 0);
	level = chip_get_irq(&p->chip[0], true) >= 0;
	if (level != p->intr_level) {
		p->intr_level = level;
		if (p->ops && p->ops->intr)
			p->ops->intr(p->opaque, level);
	}
}

/* ICW1 (data sheet "Initialization Command Words"): everything but ELCR
 * goes back to its initial state and ICW2.. are expected next. */
static void chip_reset(struct pic_chip *c)
{
	uint8_t elcr = c->elcr, elcr_mask = c->elcr_mask;

	memset(c, 0, sizeof(*c));
	c->elcr = elcr;
	c->elcr_mask = elcr_mask;
}

/* INTA for one chip: in service unless auto-EOI; an edge request is
 * consumed, a level one stays as long as the line does. */
static void chip_intack(struct pic_chip *c, int irq)
{
	if (c->auto_eoi) {
		if (c->rotate_on_auto_eoi)
			c->priority_add = (uint8_t)((irq + 1) & 7);
	} else {
		c->isr |= (uint8_t)(1u << irq);
	}
	if (!(c->elcr & (1u << irq)))
		c->irr &= (uint8_t)~(1u << irq);
}

void pic_set_irq(struct pic *p, unsigned irq, int level)
{
	if (irq >= 16 || irq == CASCADE_IRQ)
		return;
	pthread_mutex_lock(&p->lock);
	chip_set_input(&p->chip[irq >> 3], irq & 7, level);
	pic_update(p);
	pthread_mutex_unlock(&p->lock);
}

int pic_ack(struct pic *p)
{
	struct pic_chip *m = &p->chip[0], *s = &p->chip[1];
	int irq, irq2, vector;

	pthread_mutex_lock(&p->lock);
	irq = chip_get_irq(m, true);
	if (irq < 0) {
		/* Request gone before INTA: the master answers IRQ 7, no ISR. */
		vector = m->irq_base + 7;
	} else if (irq == CASCADE_IRQ) {
		irq2 = chip_get_irq(s, false);
		if (irq2 >= 0) {
			chip_intack(s, irq2);
		} else {
			irq2 = 7; /* spurious on the slave: IRQ 15, master's IRQ 2 still in service */
		}
		vector = s->irq_base + irq2;
		chip_intack(m, irq);
	} else {
		vector = m->irq_base + irq;
		chip_intack(m, irq);
	}
	pic_update(p);
	pthread_mutex_unlock(&p->lock);
	return vector;
}

bool pic_has_interrupt(struct pic *p)
{
	bool r;

	pthread_mutex_lock(&p->lock);
	r = p->intr_level;
	pthread_mutex_unlock(&p->lock);
	return r;
}

/* Poll command (OCW3 P=1): the next read returns 0x80 | IRQ and acts as
 * an INTA for that chip, or 0 with nothing pending. */
static uint8_t chip_poll(struct pic *p, int which)
{
	struct pic_chip *c = &p->chip[which];
	int irq = chip_get_irq(c, which == 0);

	c->poll = false;
	if (irq < 0)
		return 0;
	chip_intack(c, irq);
	if (which == 0 && irq == CASCADE_IRQ) {
		int irq2 = chip_get_irq(&p->chip[1], false);

		if (irq2 >= 0)
			chip_intack(&p->chip[1], irq2);
	}
	pic_update(p);
	return (uint8_t)(0x80 | irq);
}

static void chip_write_cmd(struct pic *p, int which, uint8_t v)
{
	struct pic_chip *c = &p->chip[which];

	if (v & 0x10) { /* ICW1 */
		chip_reset(c);
		c->init_state = 1;
		c->init4 = v & 1;
		c->single = v & 2;
		if (v & 0x08) /* LTIM: level mode for all inputs; PCs use ELCR */
			pr_warn_ratelimited("pic: ICW1 level-triggered mode ignored");
		pic_update(p);
		return;
	}
	if (v & 0x08) { /* OCW3 */
		if (v & 0x04)
			c->poll = true;
		if (v & 0x02)
			c->read_isr = v & 1;
		if (v & 0x40)
			c->special_mask = (v >> 5) & 1;
		pic_update(p);
		return;
	}
	/* OCW2: R SL EOI bits 7-5, level bits 2-0. */
	switch (v >> 5) {
	case 0: /* rotate in auto-EOI mode: clear */
		c->rotate_on_auto_eoi = false;
		break;
	case 4: /* rotate in auto-EOI mode: set */
		c->rotate_on_auto_eoi = true;
		break;
	case 1: /* non-specific EOI */
	case 5: { /* rotate on non-specific EOI */
		int priority = get_priority(c, c->isr);

		if (priority != 8) {
			int irq = (priority + c->priority_add) & 7;

			c->isr &= (uint8_t)~(1u << irq);
			if ((v >> 5) == 5)
				c->priority_add = (uint8_t)((irq + 1) & 7);
		}
		break;
	}
	case 3: /* specific EOI */
		c->isr &= (uint8_t)~(1u << (v & 7));
		break;
	case 6: /* set priority: IRQ v&7 becomes the lowest */
		c->priority_add = (uint8_t)((v + 1) & 7);
		break;
	case 7: /* rotate on specific EOI */
		c->isr &= (uint8_t)~(1u << (v & 7));
		c->priority_add = (uint8_t)((v + 1) & 7);
		break;
	default: /* 2: no operation */
		break;
	}
	pic_update(p);
}

static void chip_write_data(struct pic *p, int which, uint8_t v)
{
	struct pic_chip *c = &p->chip[which];

	switch (c->init_state) {
	case 0: /* OCW1 */
		c->imr = v;
		break;
	case 1: /* ICW2: vector base; the low 3 bits come from the IRQ */
		c->irq_base = v & 0xf8;
		c->init_state = c->single ? (c->init4 ? 3 : 0) : 2;
		break;
	case 2: /* ICW3: cascade wiring, fixed on a PC */
		c->init_state = c->init4 ? 3 : 0;
		break;
	default: /* ICW4: SFNM bit 4, AEOI bit 1; buffered mode and uPM ignored */
		c->sfnm = (v >> 4) & 1;
		c->auto_eoi = (v >> 1) & 1;
		c->init_state = 0;
		break;
	}
	pic_update(p);
}

uint8_t pic_ioport_read(struct pic *p, uint16_t port)
{
	uint8_t v = 0xff;
	int which;

	pthread_mutex_lock(&p->lock);
	switch (port) {
	case PIC_ELCR_BASE:
	case PIC_ELCR_BASE + 1:
		v = p->chip[port - PIC_ELCR_BASE].elcr;
		break;
	case PIC_MASTER_BASE: case PIC_MASTER_BASE + 1:
	case PIC_SLAVE_BASE: case PIC_SLAVE_BASE + 1:
		which = port >= PIC_SLAVE_BASE;
		if (p->chip[which].poll)
			v = chip_poll(p, which);
		else if (port & 1)
			v = p->chip[which].imr;
		else
			v = p->chip[which].read_isr ? p->chip[which].isr : p->chip[which].irr;
		break;
	}
	pthread_mutex_unlock(&p->lock);
	return v;
}

void pic_ioport_write(struct pic *p, uint16_t port, uint8_t v)
{
	pthread_mutex_lock(&p->lock);
	switch (port) {
	case PIC_ELCR_BASE:
	case PIC_ELCR_BASE + 1: {
		struct pic_chip *c = &p->chip[port - PIC_ELCR_BASE];

		c->elcr = v & c->elcr_mask;
		pic_update(p);
		break;
	}
	case PIC_MASTER_BASE: case PIC_SLAVE_BASE:
		chip_write_cmd(p, port == PIC_SLAVE_BASE, v);
		break;
	case PIC_MASTER_BASE + 1: case PIC_SLAVE_BASE + 1:
		chip_write_data(p, port == PIC_SLAVE_BASE + 1, v);
		break;
	}
	pthread_mutex_unlock(&p->lock);
}

/* The bus passes offsets within a range: one ops table per range. */
static void pic_port_access(struct pic *p, uint16_t port, void *data, unsigned len, bool write)
{
	if (len != 1)
		return; /* byte registers: wider accesses read all-ones, writes drop */
	if (write)
		pic_ioport_write(p, port, *(const uint8_t *)data);
	else
		*(uint8_t *)data = pic_ioport_read(p, port);
}

#define PIC_RANGE_OPS(name, base)                                                          \
	static void name##_read(void *o, uint64_t off, void *data, unsigned len)           \
	{                                                                                  \
		pic_port_access(o, (uint16_t)((base) + off), data, len, false);                 \
	}                                                                                  \
	static void name##_write(void *o, uint64_t off, const void *data, unsigned len)    \
	{                                                                                  \
		pic_port_access(o, (uint16_t)((base) + off), (void *)data, len, true);          \
	}                                                                                  \
	static const struct bus_ops name##_ops = { .read = name##_read, .write = name##_write }

PIC_RANGE_OPS(pic_master, PIC_MASTER_BASE);
PIC_RANGE_OPS(pic_slave, PIC_SLAVE_BASE);
PIC_RANGE_OPS(pic_elcr, PIC_ELCR_BASE);

int pic_init(struct pic *p, struct bus *pio, const struct pic_ops *ops, void *opaque)
{
	int ret;

	memset(p, 0, sizeof(*p));
	pthread_mutex_init(&p->lock, NULL);
	p->ops = ops;
	p->opaque = opaque;
	/* PIIX3/ICH: IRQ 0, 1, 2 and 8, 13 are hard-wired edge. */
	p->chip[0].elcr_mask = 0xf8;
	p->chip[1].elcr_mask = 0xde;
	if (!pio)
		return 0;
	ret = bus_register(pio, PIC_MASTER_BASE, 2, &pic_master_ops, p, "pic-master");
	if (!ret)
		ret = bus_register(pio, PIC_SLAVE_BASE, 2, &pic_slave_ops, p, "pic-slave");
	if (!ret)
		ret = bus_register(pio, PIC_ELCR_BASE, 2, &pic_elcr_ops, p, "pic-elcr");
	return ret;
}

void pic_destroy(struct pic *p)
{
	pthread_mutex_destroy(&p->lock);
}

void pic_save(struct pic *p, struct pic_state *st)
{
	memset(st, 0, sizeof(*st));
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < 2; i++) {
		const struct pic_chip *c = &p->chip[i];
		struct pic_chip_state *s = &st->chip[i];

		s->irr = c->irr;
		s->imr = c->imr;
		s->isr = c->isr;
		s->last_irr = c->last_irr;
		s->elcr = c->elcr;
		s->priority_add = c->priority_add;
		s->irq_base = c->irq_base;
		s->init_state = c->init_state;
		s->read_isr = c->read_isr;
		s->poll = c->poll;
		s->special_mask = c->special_mask;
		s->auto_eoi = c->auto_eoi;
		s->rotate_on_auto_eoi = c->rotate_on_auto_eoi;
		s->sfnm = c->sfnm;
		s->init4 = c->init4;
		s->single = c->single;
	}
	pthread_mutex_unlock(&p->lock);
}

int pic_restore(struct pic *p, const struct pic_state *st)
{
	static const uint8_t elcr_mask[2] = { 0xf8, 0xde };

	for (int i = 0; i < 2; i++) {
		const struct pic_chip_state *s = &st->chip[i];

		if ((s->elcr & ~elcr_mask[i]) || s->priority_add > 7 || (s->irq_base & 7) ||
		    s->init_state > 3)
			return -EINVAL;
		if ((s->read_isr | s->poll | s->special_mask | s->auto_eoi | s->rotate_on_auto_eoi |
		     s->sfnm | s->init4 | s->single) > 1)
			return -EINVAL;
	}
	pthread_mutex_lock(&p->lock);
	for (int i = 0; i < 2; i++) {
		struct pic_chip *c = &p->chip[i];
		const struct pic_chip_state *s = &st->chip[i];

		c->irr = s->irr;
		c->imr = s->imr;
		c->isr = s->isr;
		c->last_irr = s->last_irr;
		c->elcr = s->elcr;
		c->priority_add = s->priority_add;
		c->irq_base = s->irq_base;
		c->init_state = s->init_state;
		c->read_isr = s->read_isr;
		c->poll = s->poll;
		c->special_mask = s->special_mask;
		c->auto_eoi = s->auto_eoi;
		c->rotate_on_auto_eoi = s->rotate_on_auto_eoi;
		c->sfnm = s->sfnm;
		c->init4 = s->init4;
		c->single = s->single;
	}
	pic_update(p);
	pthread_mutex_unlock(&p->lock);
	return 0;
}
