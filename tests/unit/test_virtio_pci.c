/* The virtio modern PCI transport (virtio/virtio_pci.c) with virtio-rng
 * (virtio/rng.c), driven the way a guest driver does: config space through
 * the PCI root, BAR 0 through the MMIO bus, rings in fake guest memory.
 * The backend is a fake recording MSIs and INTx levels (vh_rec). */
#include "unit.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "virtio/devices.h"
#include "virtio_harness.h"

#define RAM_SIZE 0x10000
#define NDEV 2

struct fixture {
	struct fake_vm vm;
	struct pci_root root;
	struct virtio_dev *dev[NDEV];
	_Alignas(16) uint8_t ram[RAM_SIZE]; /* the rings need aligned host views */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	char err[128];

	if (!f || vh_vm_init(&f->vm, &f->root, NULL, f->ram, RAM_SIZE))
		return -1;
	for (int i = 0; i < NDEV; i++)
		if (virtio_rng_create(&f->vm.ctx, NULL, &f->dev[i], err, sizeof(err)))
			return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	for (int i = 0; i < NDEV; i++)
		virtio_device_destroy(f->dev[i]);
	vh_vm_destroy(&f->vm);
	free(f);
	return 0;
}

/* ---- guest-style accessors; device i sits in slot i + 1 ---- */

static uint32_t cfg_rd(struct fixture *f, int i, unsigned reg, unsigned len)
{
	return vh_cfg_rd(&f->vm, i + 1, reg, len);
}

static void cfg_wr(struct fixture *f, int i, unsigned reg, unsigned len, uint32_t v)
{
	vh_cfg_wr(&f->vm, i + 1, reg, len, v);
}

static uint64_t bar(struct fixture *f, int i, int n) { return vh_bar(&f->vm, i + 1, n); }
static uint64_t rd(struct fixture *f, int i, uint64_t off, unsigned len) { return vh_rd(&f->vm, i + 1, off, len); }
static void wr(struct fixture *f, int i, uint64_t off, unsigned len, uint64_t v) { vh_wr(&f->vm, i + 1, off, len, v); }
static uint8_t status(struct fixture *f, int i) { return vh_status(&f->vm, i + 1); }

/* The vendor capability of cfg_type type: its config offset, or 0. */
static unsigned find_vcap(struct fixture *f, int i, unsigned type)
{
	for (unsigned p = cfg_rd(f, i, PCI_CAPABILITY_LIST, 1); p; p = cfg_rd(f, i, p + 1, 1))
		if (cfg_rd(f, i, p, 1) == PCI_CAP_ID_VNDR && cfg_rd(f, i, p + 3, 1) == type)
			return p;
	return 0;
}

static unsigned find_cap(struct fixture *f, int i, unsigned id)
{
	for (unsigned p = cfg_rd(f, i, PCI_CAPABILITY_LIST, 1); p; p = cfg_rd(f, i, p + 1, 1))
		if (cfg_rd(f, i, p, 1) == id)
			return p;
	return 0;
}

/* ACKNOWLEDGE, DRIVER, features (high word), FEATURES_OK. */
static void negotiate(struct fixture *f, int i, uint32_t hi) { vh_negotiate(&f->vm, i + 1, (uint64_t)hi << 32); }

#define QSIZE 8
/* Rings of device i at RAM 0x1000 + i * 0x4000 (desc, avail +VH_AVAIL,
 * used +VH_USED); buffers from +0x1000. */
static uint64_t ring_base(int i) { return 0x1000 + (uint64_t)i * 0x4000; }

static void queue_up(struct fixture *f, int i, uint16_t config_vector, uint16_t vector)
{
	negotiate(f, i, 1); /* VIRTIO_F_VERSION_1 */
	wr(f, i, VIRTIO_COMMON_MSIX, 2, config_vector);
	vh_queue(&f->vm, i + 1, 0, QSIZE, ring_base(i), vector);
	vh_driver_ok(&f->vm, i + 1);
}

/* Descriptor d of device i; kick puts head on the avail ring and notifies. */
static void put_desc(struct fixture *f, int i, uint16_t d, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next)
{
	vh_desc(&f->vm, ring_base(i), d, addr, len, flags, next);
}

static void kick(struct fixture *f, int i, uint16_t head)
{
	vh_avail(&f->vm, ring_base(i), QSIZE, head);
	vh_notify(&f->vm, i + 1, 0);
}

static uint16_t used_idx(struct fixture *f, int i) { return vh_used_idx(&f->vm, ring_base(i)); }
static uint32_t used_len(struct fixture *f, int i, unsigned n) { return vh_used_len(&f->vm, ring_base(i), QSIZE, n); }

/* Enable MSI-X on device i with every vector unmasked, data = vector. */
static void msix_on(struct fixture *f, int i)
{
	unsigned cap = find_cap(f, i, PCI_CAP_ID_MSIX);
	uint64_t t = bar(f, i, VIRTIO_PCI_MSIX_BAR);

	assert_true(cap);
	for (uint32_t v = 0; v < 2; v++) {
		uint32_t e[4] = { 0xfee00000, 0, v, 0 };

		for (int k = 0; k < 4; k++)
			bus_access(&f->vm.mmio, t + 16 * v + 4 * (uint64_t)k, &e[k], 4, true);
	}
	cfg_wr(f, i, cap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
}
/* ---- tests ---- */

static void test_identity_and_caps(void **state)
{
	struct fixture *f = *state;
	unsigned c, n;

	assert_int_equal(cfg_rd(f, 0, PCI_VENDOR_ID, 2), 0x1af4);
	assert_int_equal(cfg_rd(f, 0, PCI_DEVICE_ID, 2), 0x1044);
	assert_int_equal(cfg_rd(f, 0, PCI_CLASS_REVISION, 1), 1);
	assert_int_equal(cfg_rd(f, 0, PCI_SUBSYSTEM_VENDOR_ID, 2), 0x1af4);
	assert_true(cfg_rd(f, 0, PCI_SUBSYSTEM_ID, 2) >= 0x40);
	assert_int_equal(cfg_rd(f, 0, PCI_BAR0, 4) & 7, 4); /* 64-bit memory */
	assert_int_equal(bar(f, 0, 0) & 0xfff, 0);
	for (unsigned type = 1; type <= 3; type++) {
		c = find_vcap(f, 0, type);
		assert_true(c);
		assert_int_equal(cfg_rd(f, 0, c + 4, 1), 0); /* BAR 0 */
	}
	c = find_vcap(f, 0, 1);
	assert_int_equal(cfg_rd(f, 0, c + 8, 4), VIRTIO_PCI_COMMON_OFF);
	assert_int_equal(cfg_rd(f, 0, c + 12, 4), VIRTIO_COMMON_SIZE);
	c = find_vcap(f, 0, 2);
	assert_int_equal(cfg_rd(f, 0, c + 2, 1), 20);
	assert_int_equal(cfg_rd(f, 0, c + 16, 4), 4); /* notify_off_multiplier */
	assert_int_equal(find_vcap(f, 0, 4), 0);     /* rng has no device config */
	/* MSI-X: config vector + one queue. */
	c = find_cap(f, 0, PCI_CAP_ID_MSIX);
	assert_true(c);
	n = (cfg_rd(f, 0, c + 2, 2) & 0x7ff) + 1;
	assert_int_equal(n, 2);
	/* The common config: one queue, reset state. */
	cfg_wr(f, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_NUMQ, 2), 1);
	assert_int_equal(status(f, 0), 0);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_SIZE, 2), 256);
	wr(f, 0, VIRTIO_COMMON_Q_SIZE, 2, 512); /* above the maximum: ignored */
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_SIZE, 2), 256);
	wr(f, 0, VIRTIO_COMMON_Q_SELECT, 2, 1);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_SIZE, 2), 0); /* no queue 1 */
}

static void test_feature_negotiation(void **state)
{
	struct fixture *f = *state;

	cfg_wr(f, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	wr(f, 0, VIRTIO_COMMON_DFSELECT, 4, 1);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_DF, 4) & 1, 1); /* VERSION_1 offered */
	wr(f, 0, VIRTIO_COMMON_DFSELECT, 4, 0);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_DF, 4), 1u << VIRTIO_F_INDIRECT_DESC);
	/* A legacy driver (no VERSION_1): FEATURES_OK does not stick. */
	negotiate(f, 0, 0);
	assert_int_equal(status(f, 0), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	/* A feature not offered: refused too. */
	negotiate(f, 0, 1 | 2);
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_FEATURES_OK, 0);
	/* Writing 0 resets: the driver features are gone. */
	wr(f, 0, VIRTIO_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f, 0), 0);
	wr(f, 0, VIRTIO_COMMON_GFSELECT, 4, 1);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_GF, 4), 0);
	negotiate(f, 0, 1);
	assert_int_equal(status(f, 0), VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	/* Features are frozen after FEATURES_OK. */
	wr(f, 0, VIRTIO_COMMON_GF, 4, 3);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_GF, 4), 1);
}

static void test_rng_request_intx(void **state)
{
	struct fixture *f = *state;
	uint64_t buf = ring_base(0) + 0x1000;
	unsigned gsi = pci_intx_gsi(1, 1);

	cfg_wr(f, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	queue_up(f, 0, VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR);
	assert_int_equal(status(f, 0) & 0x4f, 0x0f);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_ENABLE, 2), 1);
	/* Two writable buffers in one chain: 40 + 24 bytes. */
	put_desc(f, 0, 0, buf, 40, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 0, 1, buf + 40, 24, VIRTQ_DESC_F_WRITE, 0);
	kick(f, 0, 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_len(f, 0, 0), 64);
	assert_false(vh_all_zero(f->ram + buf, 64));
	assert_true(vh_all_zero(f->ram + buf + 64, 64)); /* nothing past the buffers */
	/* MSI-X is off: INTA# and ISR bit 0; reading the ISR clears both. */
	assert_int_equal(vh_rec.gsi_level[gsi], 1);
	assert_int_equal(vh_rec.n, 0);
	assert_int_equal(rd(f, 0, VIRTIO_PCI_ISR_OFF, 1), VIRTIO_ISR_QUEUE);
	assert_int_equal(vh_rec.gsi_level[gsi], 0);
	assert_int_equal(rd(f, 0, VIRTIO_PCI_ISR_OFF, 1), 0);
}

static void test_rng_request_msix(void **state)
{
	struct fixture *f = *state;
	uint64_t buf = ring_base(0) + 0x1000;

	cfg_wr(f, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	msix_on(f, 0);
	wr(f, 0, VIRTIO_COMMON_MSIX, 2, 0);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_MSIX, 2), 0);
	wr(f, 0, VIRTIO_COMMON_MSIX, 2, 7); /* no such vector: reads back NO_VECTOR */
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_MSIX, 2), VIRTIO_MSI_NO_VECTOR);
	wr(f, 0, VIRTIO_COMMON_MSIX, 2, 0);
	queue_up(f, 0, 0, 1);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_MSIX, 2), 1);
	for (uint16_t k = 0; k < 3; k++) {
		put_desc(f, 0, k, buf + 256 * k, 256, VIRTQ_DESC_F_WRITE, 0);
		kick(f, 0, k);
		assert_int_equal(used_idx(f, 0), k + 1);
		assert_int_equal(used_len(f, 0, k), 256);
		assert_false(vh_all_zero(f->ram + buf + 256 * k, 256));
	}
	assert_int_equal(vh_rec.n, 3);
	assert_int_equal(vh_rec.data[0], 1); /* the queue's vector */
	assert_int_equal(vh_rec.gsi_level[pci_intx_gsi(1, 1)], 0);
	/* Different bytes each time. */
	assert_memory_not_equal(f->ram + buf, f->ram + buf + 256, 256);
}

/* Once enabled, a queue's registers are fixed (spec 4.1.4.3): rewriting
 * them, or writing queue_enable again, changes nothing under the device. */
static void test_queue_fixed_once_enabled(void **state)
{
	struct fixture *f = *state;
	uint64_t buf = ring_base(0) + 0x1000;

	cfg_wr(f, 0, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
	queue_up(f, 0, VIRTIO_MSI_NO_VECTOR, VIRTIO_MSI_NO_VECTOR);
	put_desc(f, 0, 0, buf, 16, VIRTQ_DESC_F_WRITE, 0);
	kick(f, 0, 0);
	assert_int_equal(used_idx(f, 0), 1);
	wr(f, 0, VIRTIO_COMMON_Q_SELECT, 2, 0);
	wr(f, 0, VIRTIO_COMMON_Q_SIZE, 2, 4);
	vh_wr64(&f->vm, 1, VIRTIO_COMMON_Q_DESC, ring_base(1));
	wr(f, 0, VIRTIO_COMMON_Q_ENABLE, 2, 1);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_SIZE, 2), QSIZE);
	assert_int_equal(rd(f, 0, VIRTIO_COMMON_Q_DESC, 4), ring_base(0));
	/* The queue goes on where it was: the next request is used entry 2. */
	put_desc(f, 0, 1, buf + 16, 16, VIRTQ_DESC_F_WRITE, 0);
	kick(f, 0, 1);
	assert_int_equal(used_idx(f, 0), 2);
	assert_int_equal(used_len(f, 0, 1), 16);
}

static void test_needs_reset_isolated(void **state)
{
	struct fixture *f = *state;
	uint64_t buf0 = ring_base(0) + 0x1000, buf1 = ring_base(1) + 0x1000;

	for (int i = 0; i < NDEV; i++) {
		cfg_wr(f, i, PCI_COMMAND, 2, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
		msix_on(f, i);
		queue_up(f, i, 0, 1);
	}
	/* Device 0: a chain that loops back on itself. */
	put_desc(f, 0, 0, buf0, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
	put_desc(f, 0, 1, buf0 + 16, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
	kick(f, 0, 0);
	assert_true(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET);
	assert_int_equal(used_idx(f, 0), 0);
	assert_int_equal(vh_rec.n, 1);
	assert_int_equal(vh_rec.data[0], 0); /* configuration-change vector */
	/* Further kicks do nothing. */
	kick(f, 0, 0);
	assert_int_equal(vh_rec.n, 1);
	/* Device 1 keeps working. */
	assert_int_equal(status(f, 1) & VIRTIO_STATUS_NEEDS_RESET, 0);
	put_desc(f, 1, 0, buf1, 32, VIRTQ_DESC_F_WRITE, 0);
	kick(f, 1, 0);
	assert_int_equal(used_idx(f, 1), 1);
	assert_int_equal(used_len(f, 1, 0), 32);
	assert_false(vh_all_zero(f->ram + buf1, 32));
	/* A reset brings device 0 back. */
	wr(f, 0, VIRTIO_COMMON_STATUS, 1, 0);
	assert_int_equal(status(f, 0), 0);
	memset(f->ram + ring_base(0), 0, 0x1000);
	queue_up(f, 0, 0, 1);
	assert_int_equal(status(f, 0) & VIRTIO_STATUS_NEEDS_RESET, 0);
	put_desc(f, 0, 0, buf0, 8, VIRTQ_DESC_F_WRITE, 0);
	kick(f, 0, 0);
	assert_int_equal(used_idx(f, 0), 1);
	assert_int_equal(used_len(f, 0, 0), 8);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_identity_and_caps, setup, teardown),
		cmocka_unit_test_setup_teardown(test_feature_negotiation, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rng_request_intx, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rng_request_msix, setup, teardown),
		cmocka_unit_test_setup_teardown(test_queue_fixed_once_enabled, setup, teardown),
		cmocka_unit_test_setup_teardown(test_needs_reset_isolated, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
