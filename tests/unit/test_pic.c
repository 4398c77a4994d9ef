/* The 8259A pair (hw/pic.c) through its ports on a PIO bus: the ICW1-4
 * initialization Linux and BIOSes do, masking, priority and EOI, the
 * cascade, OCW3 reads of IRR/ISR and polling, ELCR level inputs, auto-EOI
 * and the spurious IRQ 7. */
#include "unit.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bus/bus.h"
#include "hw/pic.h"

struct fixture {
	struct pic pic;
	struct bus pio;
	int intr;	 /* INTR level as last reported */
	int intr_calls;
};

static void fake_intr(void *opaque, int level)
{
	struct fixture *f = opaque;

	f->intr = level;
	f->intr_calls++;
}

static const struct pic_ops ops = { .intr = fake_intr };

static uint8_t inb(struct fixture *f, uint16_t port)
{
	uint8_t v = 0;

	assert_int_equal(bus_access(&f->pio, port, &v, 1, false), 0);
	return v;
}

static void outb(struct fixture *f, uint16_t port, uint8_t v)
{
	assert_int_equal(bus_access(&f->pio, port, &v, 1, true), 0);
}

/* What Linux's init_8259A() does: ICW1 edge + ICW4, bases 0x30/0x38,
 * cascade on IRQ 2 (ICW3), 8086 mode, then the masks. */
static void linux_init(struct fixture *f, uint8_t icw4)
{
	outb(f, 0x20, 0x11);
	outb(f, 0x21, 0x30);
	outb(f, 0x21, 0x04);
	outb(f, 0x21, icw4);
	outb(f, 0xa0, 0x11);
	outb(f, 0xa1, 0x38);
	outb(f, 0xa1, 0x02);
	outb(f, 0xa1, icw4);
	outb(f, 0x21, 0x00);
	outb(f, 0xa1, 0x00);
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	bus_init(&f->pio, "pio");
	assert_int_equal(pic_init(&f->pic, &f->pio, &ops, f), 0);
	linux_init(f, 0x01);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pic_destroy(&f->pic);
	bus_destroy(&f->pio);
	free(f);
	return 0;
}

static void test_init_and_ack(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(f->intr, 0);
	pic_set_irq(&f->pic, 3, 1);
	assert_int_equal(f->intr, 1);
	assert_true(pic_has_interrupt(&f->pic));
	/* OCW3 read IRR (the default after ICW1) and read ISR. */
	assert_int_equal(inb(f, 0x20), 1u << 3);
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 0);
	/* INTA: vector from ICW2, request moves to in-service. */
	assert_int_equal(pic_ack(&f->pic), 0x33);
	assert_int_equal(f->intr, 0);
	assert_int_equal(inb(f, 0x20), 1u << 3); /* still reading ISR */
	outb(f, 0x20, 0x0a);
	assert_int_equal(inb(f, 0x20), 0); /* IRR: the edge was consumed */
	outb(f, 0x20, 0x20); /* non-specific EOI */
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 0);
	/* A re-init with other bases takes effect. */
	pic_set_irq(&f->pic, 3, 0);
	outb(f, 0x20, 0x11);
	outb(f, 0x21, 0x08);
	outb(f, 0x21, 0x04);
	outb(f, 0x21, 0x01);
	pic_set_irq(&f->pic, 3, 1);
	assert_int_equal(pic_ack(&f->pic), 0x0b);
}

static void test_mask(void **state)
{
	struct fixture *f = *state;

	outb(f, 0x21, 0xfb); /* everything but the cascade */
	assert_int_equal(inb(f, 0x21), 0xfb);
	pic_set_irq(&f->pic, 4, 1);
	assert_int_equal(f->intr, 0);
	assert_int_equal(inb(f, 0x20), 1u << 4); /* requested, but masked */
	outb(f, 0x21, 0xeb); /* unmask IRQ 4: the latched request goes out */
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x34);
	/* Slave masks are separate. */
	outb(f, 0xa1, 0x01);
	assert_int_equal(inb(f, 0xa1), 0x01);
	pic_set_irq(&f->pic, 8, 1);
	assert_int_equal(inb(f, 0xa0), 0x01);
	outb(f, 0x20, 0x20);
	assert_int_equal(f->intr, 0);
}

static void test_priority(void **state)
{
	struct fixture *f = *state;

	pic_set_irq(&f->pic, 5, 1);
	pic_set_irq(&f->pic, 1, 1);
	assert_int_equal(pic_ack(&f->pic), 0x31); /* lower IRQ number first */
	/* IRQ 5 waits while IRQ 1 is in service... */
	assert_int_equal(f->intr, 0);
	/* ...but IRQ 0 nests. */
	pic_set_irq(&f->pic, 0, 1);
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x30);
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 0x03);
	outb(f, 0x20, 0x20); /* EOI retires IRQ 0, the highest in service */
	assert_int_equal(inb(f, 0x20), 0x02);
	assert_int_equal(f->intr, 0);
	outb(f, 0x20, 0x61); /* specific EOI for IRQ 1 */
	assert_int_equal(inb(f, 0x20), 0x00);
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x35);
}

/* An edge input requests once per rising edge: held high, or asserted
 * again while still high, it asks for nothing more. */
static void test_edge_once_per_edge(void **state)
{
	struct fixture *f = *state;

	pic_set_irq(&f->pic, 4, 1);
	assert_int_equal(pic_ack(&f->pic), 0x34);
	outb(f, 0x20, 0x20);
	pic_set_irq(&f->pic, 4, 1); /* still high: no new edge */
	assert_int_equal(f->intr, 0);
	assert_int_equal(inb(f, 0x20), 0);
	pic_set_irq(&f->pic, 4, 0);
	pic_set_irq(&f->pic, 4, 1);
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x34);
}

/* Rotate on non-specific EOI (OCW2 0xa0): the IRQ just served becomes the
 * lowest priority, so equal-priority devices take turns. */
static void test_rotate_on_eoi(void **state)
{
	struct fixture *f = *state;

	pic_set_irq(&f->pic, 1, 1);
	pic_set_irq(&f->pic, 5, 1);
	assert_int_equal(pic_ack(&f->pic), 0x31);
	outb(f, 0x20, 0xa0);
	pic_set_irq(&f->pic, 1, 0);
	pic_set_irq(&f->pic, 1, 1);
	/* IRQ 1 is now last in line: IRQ 5 goes first, then IRQ 1. */
	assert_int_equal(pic_ack(&f->pic), 0x35);
	outb(f, 0x20, 0x20);
	assert_int_equal(pic_ack(&f->pic), 0x31);
}

static void test_cascade(void **state)
{
	struct fixture *f = *state;

	pic_set_irq(&f->pic, 10, 1);
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x3a); /* slave base + 2 */
	outb(f, 0x20, 0x0b);
	outb(f, 0xa0, 0x0b);
	assert_int_equal(inb(f, 0x20), 1u << 2); /* the cascade input */
	assert_int_equal(inb(f, 0xa0), 1u << 2);
	/* Another slave IRQ waits for the slave's EOI. */
	pic_set_irq(&f->pic, 12, 1);
	assert_int_equal(f->intr, 0);
	outb(f, 0xa0, 0x20);
	outb(f, 0x20, 0x20);
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x3c);
	/* IRQ 2 itself is the cascade: not a device line. */
	pic_set_irq(&f->pic, 2, 1);
	outb(f, 0x20, 0x0a);
	assert_int_equal(inb(f, 0x20), 0);
}

static void test_poll(void **state)
{
	struct fixture *f = *state;

	outb(f, 0x20, 0x0c); /* OCW3 poll */
	assert_int_equal(inb(f, 0x20), 0x00); /* nothing pending */
	pic_set_irq(&f->pic, 6, 1);
	outb(f, 0x20, 0x0c);
	assert_int_equal(inb(f, 0x20), 0x86);
	/* The poll acted as INTA: IRQ 6 is in service. */
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 1u << 6);
}

static void test_elcr_level(void **state)
{
	struct fixture *f = *state;

	/* IRQ 0-2 (and 8, 13) are hard-wired edge. */
	outb(f, 0x4d0, 0xff);
	assert_int_equal(inb(f, 0x4d0), 0xf8);
	outb(f, 0x4d1, 0xff);
	assert_int_equal(inb(f, 0x4d1), 0xde);
	outb(f, 0x4d1, 0x02); /* IRQ 9 level, as Linux sets it for the ACPI SCI */
	outb(f, 0x4d0, 0x00);
	pic_set_irq(&f->pic, 9, 1);
	assert_int_equal(pic_ack(&f->pic), 0x39);
	outb(f, 0xa0, 0x20);
	outb(f, 0x20, 0x20);
	/* The line is still high: requested again without a new edge. */
	assert_int_equal(f->intr, 1);
	assert_int_equal(pic_ack(&f->pic), 0x39);
	pic_set_irq(&f->pic, 9, 0);
	outb(f, 0xa0, 0x20);
	outb(f, 0x20, 0x20);
	assert_int_equal(f->intr, 0);
}

static void test_spurious(void **state)
{
	struct fixture *f = *state;

	/* A level request that goes away before INTA: IRQ 7, no ISR bit. */
	outb(f, 0x4d0, 0x20);
	pic_set_irq(&f->pic, 5, 1);
	assert_int_equal(f->intr, 1);
	pic_set_irq(&f->pic, 5, 0);
	assert_int_equal(pic_ack(&f->pic), 0x37);
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 0);
}

static void test_auto_eoi(void **state)
{
	struct fixture *f = *state;

	linux_init(f, 0x03); /* ICW4: 8086 mode, auto-EOI */
	pic_set_irq(&f->pic, 4, 1);
	assert_int_equal(pic_ack(&f->pic), 0x34);
	outb(f, 0x20, 0x0b);
	assert_int_equal(inb(f, 0x20), 0); /* never in service */
	pic_set_irq(&f->pic, 4, 0);
	pic_set_irq(&f->pic, 4, 1);
	assert_int_equal(f->intr, 1);
}

static void test_icw1_resets_mask(void **state)
{
	struct fixture *f = *state;
	uint16_t w = 0;

	outb(f, 0x21, 0xff);
	outb(f, 0x20, 0x11); /* ICW1 clears IMR and waits for ICW2-4 */
	assert_int_equal(inb(f, 0x21), 0x00);
	outb(f, 0x21, 0x50);
	outb(f, 0x21, 0x04);
	outb(f, 0x21, 0x01);
	/* Now OCW1 again. */
	outb(f, 0x21, 0x7f);
	assert_int_equal(inb(f, 0x21), 0x7f);
	/* Wider accesses float. */
	assert_int_equal(bus_access(&f->pio, 0x20, &w, 2, false), 0);
	assert_int_equal(w, 0xffff);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_init_and_ack, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_priority, setup, teardown),
		cmocka_unit_test_setup_teardown(test_edge_once_per_edge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rotate_on_eoi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cascade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_poll, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elcr_level, setup, teardown),
		cmocka_unit_test_setup_teardown(test_spurious, setup, teardown),
		cmocka_unit_test_setup_teardown(test_auto_eoi, setup, teardown),
		cmocka_unit_test_setup_teardown(test_icw1_resets_mask, setup, teardown),
	};

	return cmocka_run_group_tests_name("pic", tests, NULL, NULL);
}
