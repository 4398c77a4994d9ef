/* The PCI root complex (pci/pci.c) as a guest sees it through the VM's
 * buses: config space through CF8/CFC and ECAM, BAR sizing and relocation,
 * the command register's decode enables, capabilities, MSI-X masking and
 * delivery, INTx routing. The backend is a fake recording MSIs and GSIs. */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/boot.h"
#include "core/vm.h"
#include "fake_vm.h"
#include "pci/pci.h"

#define MAX_MSI 16

static struct {
	int n;
	uint64_t addr[MAX_MSI];
	uint32_t data[MAX_MSI];
	int gsi_level[24];
} rec;

static int fake_msi(const struct devctx *c, uint64_t addr, uint32_t data)
{
	if (rec.n < MAX_MSI) {
		rec.addr[rec.n] = addr;
		rec.data[rec.n] = data;
	}
	rec.n++;
	return 0;
}

static int fake_irq_line(const struct devctx *c, unsigned gsi, int level)
{
	if (gsi < 24)
		rec.gsi_level[gsi] = level;
	return 0;
}

static const struct devctx_ops fake_ops = { .irq_line = fake_irq_line, .signal_msi = fake_msi };

/* A test device: BAR0 a 4 KiB register file, BAR2 a 64-bit 16 KiB BAR,
 * BAR4 16 I/O ports, MSI-X with 4 vectors in BAR1, INTA#. */
struct tdev {
	uint8_t regs[4096];
	int last_bar;
};

static void tdev_read(void *opaque, int bar, uint64_t off, void *data, unsigned len)
{
	struct tdev *t = opaque;

	t->last_bar = bar;
	memcpy(data, t->regs + (off & 0xfff), len);
}

static void tdev_write(void *opaque, int bar, uint64_t off, const void *data, unsigned len)
{
	struct tdev *t = opaque;

	t->last_bar = bar;
	memcpy(t->regs + (off & 0xfff), data, len);
}

static const struct pci_device_ops tdev_ops = { tdev_read, tdev_write, NULL };

static const struct pci_device_info tdev_info = {
	.vendor = 0x1af4,
	.device = 0x10ff,
	.class_code = 0xff0000,
	.irq_pin = 1,
	.bars = {
		[0] = { PCI_BAR_MEM32, 4096, false },
		[2] = { PCI_BAR_MEM64, 16384, true },
		[4] = { PCI_BAR_IO, 16, false },
	},
	.msix_vectors = 4,
	.msix_bar = 1,
};

struct fixture {
	struct fake_vm vm;
	struct pci_root root;
	struct tdev t;
	struct pci_device *dev;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	memset(&rec, 0, sizeof(rec));
	fake_vm_init(&f->vm, &fake_ops);
	if (pci_root_init(&f->root, &f->vm.ctx) ||
	    pci_register_device(&f->root, &tdev_ops, &f->t, &tdev_info, &f->dev))
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	pci_root_destroy(&f->root);
	fake_vm_destroy(&f->vm);
	free(f);
	return 0;
}

/* ---- guest-style accessors ---- */

static uint32_t pio_in(struct fixture *f, uint16_t port, unsigned len)
{
	uint32_t v = 0;

	bus_access(&f->vm.pio, port, &v, len, false);
	return v;
}

static void pio_out(struct fixture *f, uint16_t port, unsigned len, uint32_t v)
{
	bus_access(&f->vm.pio, port, &v, len, true);
}

static uint32_t cf8_read(struct fixture *f, int slot, unsigned reg, unsigned len)
{
	pio_out(f, 0xcf8, 4, 0x80000000u | (uint32_t)slot << 11 | (reg & 0xfc));
	return pio_in(f, (uint16_t)(0xcfc + (reg & 3)), len);
}

static void cf8_write(struct fixture *f, int slot, unsigned reg, unsigned len, uint32_t v)
{
	pio_out(f, 0xcf8, 4, 0x80000000u | (uint32_t)slot << 11 | (reg & 0xfc));
	pio_out(f, (uint16_t)(0xcfc + (reg & 3)), len, v);
}

static uint64_t mmio_rd(struct fixture *f, uint64_t gpa, unsigned len)
{
	uint64_t v = 0;

	bus_access(&f->vm.mmio, gpa, &v, len, false);
	return v;
}

static void mmio_wr(struct fixture *f, uint64_t gpa, unsigned len, uint64_t v)
{
	bus_access(&f->vm.mmio, gpa, &v, len, true);
}

static uint64_t ecam(int slot, unsigned reg)
{
	return PCI_ECAM_BASE + ((uint64_t)slot << 15) + reg;
}

/* ---- tests ---- */

static void test_cf8_and_ecam_agree(void **state)
{
	struct fixture *f = *state;

	/* The host bridge at 00:00.0 and the device at 00:01.0. */
	assert_int_equal(cf8_read(f, 0, 0, 4), PCI_HOST_DEVICE << 16 | PCI_HOST_VENDOR);
	assert_int_equal(mmio_rd(f, ecam(0, 0), 4), PCI_HOST_DEVICE << 16 | PCI_HOST_VENDOR);
	assert_int_equal(cf8_read(f, 0, 0x0a, 2), 0x0600); /* host bridge class */
	assert_int_equal(f->dev->slot, 1);
	for (unsigned reg = 0; reg < 256; reg += 4)
		assert_int_equal(cf8_read(f, 1, reg, 4), mmio_rd(f, ecam(1, reg), 4));
	/* Byte and word lanes of the data port. */
	assert_int_equal(cf8_read(f, 1, 2, 2), 0x10ff);
	assert_int_equal(cf8_read(f, 1, 1, 1), 0x1a);
	assert_int_equal(mmio_rd(f, ecam(1, 3), 1), 0x10);
	/* Empty slots, other functions and other buses read all-ones. */
	assert_int_equal(cf8_read(f, 7, 0, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, ecam(1, 0) + (1 << 12), 4), 0xffffffff);
	pio_out(f, 0xcf8, 4, 0x80010000u);
	assert_int_equal(pio_in(f, 0xcfc, 4), 0xffffffff);
	/* Without the enable bit the data port does nothing. */
	pio_out(f, 0xcf8, 4, 0x00000800u);
	assert_int_equal(pio_in(f, 0xcfc, 4), 0xffffffff);
	pio_out(f, 0xcfc, 4, 0x12345678);
	/* CONFIG_ADDRESS reads back what was written (low bits cleared). */
	pio_out(f, 0xcf8, 4, 0x80000807u);
	assert_int_equal(pio_in(f, 0xcf8, 4), 0x80000804u);
	/* A write through ECAM is seen through CF8: the interrupt line. */
	mmio_wr(f, ecam(1, PCI_INTERRUPT_LINE), 1, 0x0b);
	assert_int_equal(cf8_read(f, 1, PCI_INTERRUPT_LINE, 1), 0x0b);
	/* Read-only fields ignore writes: vendor ID, class. */
	cf8_write(f, 1, 0, 4, 0);
	assert_int_equal(cf8_read(f, 1, 0, 2), 0x1af4);
	/* Extended config space (past 256) only through ECAM: reads 0 here. */
	assert_int_equal(mmio_rd(f, ecam(1, 0x100), 4), 0);
}

static void test_bar_sizing(void **state)
{
	struct fixture *f = *state;
	uint32_t orig = cf8_read(f, 1, PCI_BAR0, 4);

	/* Placed by tarn in the MMIO window, naturally aligned. */
	assert_int_equal(orig & 0xf, 0);
	assert_true(orig >= PCI_MMIO32_BASE && orig < PCI_MMIO32_BASE + PCI_MMIO32_SIZE);
	cf8_write(f, 1, PCI_BAR0, 4, 0xffffffff);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0, 4), 0xfffff000); /* 4 KiB, mem32 */
	cf8_write(f, 1, PCI_BAR0, 4, orig);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0, 4), orig);

	/* 64-bit prefetchable BAR2: type bits 0xc, both halves size. */
	uint32_t lo = cf8_read(f, 1, PCI_BAR0 + 8, 4);
	assert_int_equal(lo & 0xf, 0xc);
	cf8_write(f, 1, PCI_BAR0 + 8, 4, 0xffffffff);
	cf8_write(f, 1, PCI_BAR0 + 12, 4, 0xffffffff);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0 + 8, 4), 0xffffc00c);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0 + 12, 4), 0xffffffff);

	/* I/O BAR4: 16 ports, bit 0 set. */
	uint32_t io = cf8_read(f, 1, PCI_BAR0 + 16, 4);
	assert_int_equal(io & 3, 1);
	assert_true((io & ~3u) >= PCI_IO_BASE);
	cf8_write(f, 1, PCI_BAR0 + 16, 4, 0xffffffff);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0 + 16, 4), 0xfff1);

	/* The MSI-X BAR1 is 4 KiB; BARs 3 and 5 are unimplemented. */
	cf8_write(f, 1, PCI_BAR0 + 4, 4, 0xffffffff);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0 + 4, 4), 0xfffff000);
	cf8_write(f, 1, PCI_BAR0 + 20, 4, 0xffffffff);
	assert_int_equal(cf8_read(f, 1, PCI_BAR0 + 20, 4), 0);
}

static void test_bar_relocation(void **state)
{
	struct fixture *f = *state;
	uint32_t old = cf8_read(f, 1, PCI_BAR0, 4), new = (uint32_t)PCI_MMIO32_BASE + 0x8000000;

	mmio_wr(f, old + 0x10, 4, 0xcafe);
	assert_int_equal(f->t.last_bar, 0);
	assert_int_equal(mmio_rd(f, old + 0x10, 4), 0xcafe);
	cf8_write(f, 1, PCI_BAR0, 4, new);
	/* The old address no longer decodes; the new one does. */
	assert_int_equal(mmio_rd(f, old + 0x10, 4), 0xffffffff);
	assert_int_equal(mmio_rd(f, new + 0x10, 4), 0xcafe);
	/* The 64-bit BAR moves with both halves (here: high half 0). */
	uint32_t b2 = cf8_read(f, 1, PCI_BAR0 + 8, 4) & ~0xfu;
	assert_int_equal(mmio_rd(f, b2 + 0x10, 4), 0xcafe);
	assert_int_equal(f->t.last_bar, 2);
	cf8_write(f, 1, PCI_BAR0 + 12, 4, 1); /* to 4 GiB + b2: outside the window */
	assert_int_equal(mmio_rd(f, b2 + 0x10, 4), 0xffffffff);
	/* I/O BAR: through the port bus. */
	uint16_t io = (uint16_t)(cf8_read(f, 1, PCI_BAR0 + 16, 4) & ~3u);
	pio_out(f, io + 4, 2, 0xbeef);
	assert_int_equal(pio_in(f, io + 4, 2), 0xbeef);
	cf8_write(f, 1, PCI_BAR0 + 16, 4, 0xe000);
	assert_int_equal(pio_in(f, io + 4, 2), 0xffff);
	assert_int_equal(pio_in(f, 0xe004, 2), 0xbeef);
}

static void test_command_enables(void **state)
{
	struct fixture *f = *state;
	uint32_t bar = cf8_read(f, 1, PCI_BAR0, 4);
	uint16_t io = (uint16_t)(cf8_read(f, 1, PCI_BAR0 + 16, 4) & ~3u);

	f->t.regs[0] = 0x5a;
	/* As tarn's "firmware" leaves it: both decoders on. */
	assert_int_equal(cf8_read(f, 1, PCI_COMMAND, 2) & 3, 3);
	assert_int_equal(mmio_rd(f, bar, 1), 0x5a);
	cf8_write(f, 1, PCI_COMMAND, 2, PCI_COMMAND_IO);
	assert_int_equal(mmio_rd(f, bar, 1), 0xff);
	assert_int_equal(pio_in(f, io, 1), 0x5a);
	cf8_write(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(mmio_rd(f, bar, 1), 0x5a);
	assert_int_equal(pio_in(f, io, 1), 0xff);
	/* Byte write of the low half through ECAM. */
	mmio_wr(f, ecam(1, PCI_COMMAND), 1, 0);
	assert_int_equal(mmio_rd(f, bar, 1), 0xff);
	/* Reserved command bits stay 0. */
	cf8_write(f, 1, PCI_COMMAND, 2, 0xffff);
	assert_int_equal(cf8_read(f, 1, PCI_COMMAND, 2), 0x0547);
}

/* Walk the capability list; return the offset of id, or 0. */
static unsigned find_cap(struct fixture *f, int slot, uint8_t id)
{
	if (!(cf8_read(f, slot, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST))
		return 0;
	for (unsigned off = cf8_read(f, slot, PCI_CAPABILITY_LIST, 1), n = 0; off && n < 48; n++) {
		if (cf8_read(f, slot, off, 1) == id)
			return off;
		off = cf8_read(f, slot, off + 1, 1);
	}
	return 0;
}

static void test_capability_list(void **state)
{
	struct fixture *f = *state;
	const uint8_t body[14] = { 16, 1, 2, 3 };
	unsigned msix, vndr, vndr2;

	/* The host bridge has none. */
	assert_int_equal(cf8_read(f, 0, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST, 0);
	vndr = pci_add_capability(f->dev, PCI_CAP_ID_VNDR, body, sizeof(body));
	vndr2 = pci_add_capability(f->dev, PCI_CAP_ID_VNDR, body, 2);
	assert_true(vndr >= 0x40 && vndr % 4 == 0);
	assert_true(vndr2 > vndr && vndr2 % 4 == 0);
	msix = find_cap(f, 1, PCI_CAP_ID_MSIX);
	assert_true(msix >= 0x40);
	assert_int_equal(find_cap(f, 1, PCI_CAP_ID_VNDR), vndr);
	assert_int_equal(mmio_rd(f, ecam(1, vndr + 2), 4), 0x03020110); /* unaligned: ECAM */
	assert_int_equal(cf8_read(f, 1, vndr2 + 1, 1), 0); /* the list ends */
	/* MSI-X: table size 4 (N-1 = 3), table in BAR1 at 0, PBA in BAR1. */
	assert_int_equal(cf8_read(f, 1, msix + 2, 2), 3);
	assert_int_equal(cf8_read(f, 1, msix + 4, 4), 1);
	assert_int_equal(cf8_read(f, 1, msix + 8, 4) & 7, 1);
	/* The body is read-only. */
	mmio_wr(f, ecam(1, vndr + 2), 4, 0);
	assert_int_equal(mmio_rd(f, ecam(1, vndr + 2), 4), 0x03020110); /* unaligned: ECAM */
	/* Not enough room left: refused. */
	uint8_t big[200] = { 0 };
	assert_int_equal(pci_add_capability(f->dev, PCI_CAP_ID_VNDR, big, sizeof(big)), 0);
}

static void test_msix(void **state)
{
	struct fixture *f = *state;
	unsigned cap = find_cap(f, 1, PCI_CAP_ID_MSIX);
	uint64_t bar = cf8_read(f, 1, PCI_BAR0 + 4, 4) & ~0xfull;
	uint64_t pba = bar + (cf8_read(f, 1, cap + 8, 4) & ~7u);
	uint64_t e2 = bar + 2 * 16;

	/* Not enabled: the device is told to use INTx. */
	assert_int_equal(pci_msix_notify(f->dev, 2), -ENOTSUP);
	assert_int_equal(pci_msix_notify(f->dev, 4), -EINVAL);
	/* Entries come out of reset masked. */
	assert_int_equal(mmio_rd(f, e2 + 12, 4), 1);
	mmio_wr(f, e2 + 0, 4, 0xfee01000);
	mmio_wr(f, e2 + 4, 4, 0);
	mmio_wr(f, e2 + 8, 4, 0x41);
	assert_int_equal(mmio_rd(f, e2 + 0, 8), 0xfee01000);
	cf8_write(f, 1, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(cf8_read(f, 1, cap + 2, 2), PCI_MSIX_FLAGS_ENABLE | 3);

	/* Masked entry: pending in the PBA, nothing delivered. */
	assert_int_equal(pci_msix_notify(f->dev, 2), 0);
	assert_int_equal(rec.n, 0);
	assert_int_equal(mmio_rd(f, pba, 8), 1 << 2);
	/* Unmasking delivers the pending message and clears the bit. */
	mmio_wr(f, e2 + 12, 4, 0);
	assert_int_equal(rec.n, 1);
	assert_int_equal(rec.addr[0], 0xfee01000);
	assert_int_equal(rec.data[0], 0x41);
	assert_int_equal(mmio_rd(f, pba, 8), 0);
	/* Unmasked: straight through. */
	assert_int_equal(pci_msix_notify(f->dev, 2), 0);
	assert_int_equal(rec.n, 2);

	/* Function mask holds every vector; clearing it flushes. */
	cf8_write(f, 1, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
	assert_int_equal(pci_msix_notify(f->dev, 2), 0);
	assert_int_equal(rec.n, 2);
	assert_int_equal(mmio_rd(f, pba, 4), 1 << 2);
	mmio_wr(f, pba, 4, 0); /* the PBA is read-only */
	assert_int_equal(mmio_rd(f, pba, 4), 1 << 2);
	cf8_write(f, 1, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
	assert_int_equal(rec.n, 3);
	assert_int_equal(rec.data[2], 0x41);

	/* Vector 0 still masked: pending only. */
	assert_int_equal(pci_msix_notify(f->dev, 0), 0);
	assert_int_equal(rec.n, 3);
	assert_int_equal(mmio_rd(f, pba, 4), 1);
}

static void test_intx(void **state)
{
	struct fixture *f = *state;
	unsigned gsi = pci_intx_gsi(1, 1);

	assert_int_equal(gsi, PCI_INTX_GSI_BASE + 1); /* slot 1, INTA#: swizzled */
	assert_int_equal(cf8_read(f, 1, PCI_INTERRUPT_PIN, 1), 1);
	assert_int_equal(cf8_read(f, 1, PCI_INTERRUPT_LINE, 1), gsi); /* as firmware fills it */
	pci_set_irq(f->dev, true);
	assert_int_equal(rec.gsi_level[gsi], 1);
	assert_true(cf8_read(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	/* INTx disable drops the line; re-enabling raises it again. */
	cf8_write(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_INTX_DISABLE);
	assert_int_equal(rec.gsi_level[gsi], 0);
	assert_true(cf8_read(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
	cf8_write(f, 1, PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
	assert_int_equal(rec.gsi_level[gsi], 1);
	pci_set_irq(f->dev, false);
	assert_int_equal(rec.gsi_level[gsi], 0);
	assert_false(cf8_read(f, 1, PCI_STATUS, 2) & PCI_STATUS_INTERRUPT);
}

static void test_status_and_slots(void **state)
{
	struct fixture *f = *state;
	struct pci_device *d;
	struct tdev t2;

	/* Status: the capability bit is read-only; writing ones to the
	 * RW1C error bits (none set) leaves them 0. */
	cf8_write(f, 1, PCI_STATUS, 2, 0xffff);
	assert_int_equal(cf8_read(f, 1, PCI_STATUS, 2), PCI_STATUS_CAP_LIST);
	/* Slots fill up, then registration fails cleanly. */
	static const struct pci_device_info small = { .vendor = 1, .device = 2,
						      .bars = { [0] = { PCI_BAR_MEM32, 4096, false } } };
	int n = 0, ret;
	while ((ret = pci_register_device(&f->root, &tdev_ops, &t2, &small, &d)) == 0)
		n++;
	assert_int_equal(ret, -ENOSPC);
	assert_int_equal(n, PCI_MAX_SLOTS - 2);
	/* Bad BAR sizes are refused. */
	static const struct pci_device_info bad = { .bars = { [0] = { PCI_BAR_MEM32, 3000, false } } };
	pci_root_destroy(&f->root);
	fake_vm_destroy(&f->vm);
	assert_int_equal(pci_root_init(&f->root, &f->vm.ctx), 0);
	assert_int_equal(pci_register_device(&f->root, &tdev_ops, &t2, &bad, &d), -EINVAL);
}

/* Linux trusts MCFG only if the ECAM range is reserved: e820 says so, and
 * the map stays sorted and free of overlaps. */
static void test_e820_reserves_ecam(void **state)
{
	struct fixture *f = *state;
	struct e820_entry e[E820_MAX];
	struct vm vm = { .pci = &f->root }; /* the boot code's view */
	bool found = false;
	int n;

	assert_int_equal(gm_init(&vm.mem, 64ULL << 20), 0);
	n = x86_e820_build(&vm, e, E820_MAX);
	assert_true(n > 0);
	for (int i = 0; i < n; i++) {
		if (i)
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].addr == PCI_ECAM_BASE && e[i].size == PCI_ECAM_SIZE && e[i].type == E820_RESERVED)
			found = true;
		/* Nothing the guest may use as RAM overlaps the PCI windows. */
		if (e[i].type == E820_RAM)
			assert_true(e[i].addr + e[i].size <= PCI_MMIO32_BASE);
	}
	assert_true(found);
	gm_destroy(&vm.mem);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_cf8_and_ecam_agree, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_sizing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bar_relocation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_command_enables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_capability_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_and_slots, setup, teardown),
		cmocka_unit_test_setup_teardown(test_e820_reserves_ecam, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
