/* ACPI tables: built into fake guest memory, walked the way an OS walks them
 * (RSDP -> XSDT -> tables, FADT -> DSDT/FACS), checksummed, and handed to
 * iasl's disassembler, the reference parser. Also the AML builder's
 * encodings, byte for byte. */
#include "unit.h"

#include <errno.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/aml.h"
#include "pci/pci.h"
#include "hw/acpi_pm.h"
#include "mem/gm.h"

#define RAM_SIZE (1u << 20)

struct fixture {
	uint8_t *ram;
	struct guest_mem gm;
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	assert_non_null(f);
	f->ram = malloc(RAM_SIZE);
	assert_non_null(f->ram);
	/* Garbage, not zeros: the tables must not rely on zeroed memory. */
	memset(f->ram, 0xa5, RAM_SIZE);
	assert_int_equal(gm_init_fake(&f->gm, 0, f->ram, RAM_SIZE), 0);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	free(f->ram);
	free(f);
	return 0;
}

static uint8_t sum8(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;
	for (size_t i = 0; i < len; i++)
		s = (uint8_t)(s + b[i]);
	return s;
}

/* Fake RAM starts at gpa 0, so a gpa is an offset into f->ram. Every table
 * must lie wholly inside the ACPI area. */
static const uint8_t *table_at(struct fixture *f, uint64_t gpa, size_t min_len)
{
	assert_true(gpa >= ACPI_AREA_START);
	assert_true(gpa + min_len <= ACPI_AREA_END);
	return f->ram + gpa;
}

static const struct acpi_header *checked_table(struct fixture *f, uint64_t gpa, const char *sig)
{
	const struct acpi_header *h = (const void *)table_at(f, gpa, sizeof(*h));
	assert_memory_equal(h->signature, sig, 4);
	assert_true(h->length >= sizeof(*h));
	assert_true(gpa + h->length <= ACPI_AREA_END);
	assert_int_equal(sum8(h, h->length), 0);
	assert_memory_equal(h->oem_id, "TARN  ", 6);
	return h;
}

static uint64_t build(struct fixture *f, unsigned nr_cpus)
{
	struct acpi_config cfg;
	uint64_t rsdp = 0;
	acpi_config_default(&cfg, nr_cpus);
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), 0);
	assert_int_equal(rsdp, ACPI_RSDP_GPA);
	return rsdp;
}

struct tables {
	const struct acpi_rsdp *rsdp;
	const struct acpi_header *xsdt;
	const struct acpi_fadt *fadt;
	const struct acpi_header *madt;
	const struct acpi_header *dsdt;
	const struct acpi_facs *facs;
	const struct acpi_mcfg *mcfg;
};

/* Walk from the RSDP as an OS would, checking every checksum on the way. */
static void walk(struct fixture *f, uint64_t rsdp_gpa, struct tables *t)
{
	memset(t, 0, sizeof(*t));
	const struct acpi_rsdp *r = (const void *)table_at(f, rsdp_gpa, sizeof(*r));
	/* Linux finds it by scanning 16-byte boundaries of 0xE0000-0xFFFFF. */
	assert_int_equal(rsdp_gpa % 16, 0);
	assert_memory_equal(r->signature, "RSD PTR ", 8);
	assert_int_equal(sum8(r, 20), 0);
	assert_int_equal(r->revision, 2);
	assert_int_equal(r->length, sizeof(*r));
	assert_int_equal(sum8(r, r->length), 0);
	t->rsdp = r;

	t->xsdt = checked_table(f, r->xsdt_addr, "XSDT");
	size_t n = (t->xsdt->length - sizeof(struct acpi_header)) / 8;
	assert_int_equal((t->xsdt->length - sizeof(struct acpi_header)) % 8, 0);
	assert_int_equal(n, 3); /* FADT, MADT, MCFG */
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa;
		memcpy(&gpa, (const uint8_t *)t->xsdt + sizeof(struct acpi_header) + 8 * i, 8);
		const struct acpi_header *h = (const void *)table_at(f, gpa, sizeof(*h));
		if (!memcmp(h->signature, "FACP", 4)) {
			assert_null(t->fadt);
			t->fadt = (const void *)checked_table(f, gpa, "FACP");
		} else if (!memcmp(h->signature, "APIC", 4)) {
			assert_null(t->madt);
			t->madt = checked_table(f, gpa, "APIC");
		} else if (!memcmp(h->signature, "MCFG", 4)) {
			assert_null(t->mcfg);
			t->mcfg = (const void *)checked_table(f, gpa, "MCFG");
		} else {
			fail_msg("unexpected table %.4s in the XSDT", h->signature);
		}
	}
	assert_non_null(t->fadt);
	assert_non_null(t->madt);
	assert_int_equal(t->fadt->h.length, sizeof(struct acpi_fadt));
	/* MCFG: one ECAM region, segment 0, bus 0 only, where pci/pci.h has it. */
	assert_non_null(t->mcfg);
	assert_int_equal(t->mcfg->h.length, sizeof(struct acpi_mcfg));
	assert_int_equal(t->mcfg->alloc[0].base, PCI_ECAM_BASE);
	assert_int_equal(t->mcfg->alloc[0].segment, 0);
	assert_int_equal(t->mcfg->alloc[0].start_bus, 0);
	assert_int_equal(t->mcfg->alloc[0].end_bus, 0);

	assert_int_equal(t->fadt->x_dsdt, t->fadt->dsdt);
	t->dsdt = checked_table(f, t->fadt->x_dsdt, "DSDT");
	assert_int_equal(t->dsdt->revision, 2);

	/* FACS: 64-byte aligned, no checksum; only FIRMWARE_CTRL set. */
	assert_int_equal(t->fadt->x_firmware_ctrl, 0);
	assert_int_equal(t->fadt->firmware_ctrl % 64, 0);
	t->facs = (const void *)table_at(f, t->fadt->firmware_ctrl, sizeof(struct acpi_facs));
	assert_memory_equal(t->facs->signature, "FACS", 4);
	assert_int_equal(t->facs->length, 64);
}

static void test_walk_and_checksums(void **state)
{
	struct fixture *f = *state;
	struct tables t;
	walk(f, build(f, 1), &t);
}

static void test_fadt_fields(void **state)
{
	struct fixture *f = *state;
	struct tables t;
	walk(f, build(f, 2), &t);
	const struct acpi_fadt *fa = t.fadt;

	assert_int_equal(fa->h.revision, 6);
	assert_int_equal(fa->sci_int, 9);
	assert_int_equal(fa->smi_cmd, 0);
	assert_int_equal(fa->flags & ACPI_FADT_HW_REDUCED, 0);
	uint32_t want = ACPI_FADT_WBINVD | ACPI_FADT_PROC_C1 | ACPI_FADT_SLP_BUTTON | ACPI_FADT_RESET_REG_SUP;
	assert_int_equal(fa->flags & want, want);
	assert_int_equal(fa->flags & ACPI_FADT_PWR_BUTTON, 0); /* the fixed-hardware power button */
	assert_int_equal(fa->flags & ACPI_FADT_TMR_VAL_EXT, 0); /* 24-bit timer */
	assert_true(fa->iapc_boot_arch & ACPI_BOOT_8042); /* the i8042, in the DSDT too */
	assert_true(fa->iapc_boot_arch & ACPI_BOOT_NO_VGA);

	/* Legacy and X_ fields agree, and both point at hw/acpi_pm.c. */
	assert_int_equal(fa->pm1a_evt_blk, ACPI_PM1A_EVT_PORT);
	assert_int_equal(fa->pm1a_cnt_blk, ACPI_PM1A_CNT_PORT);
	assert_int_equal(fa->pm_tmr_blk, ACPI_PM_TMR_PORT);
	assert_int_equal(fa->pm1_evt_len, 4);
	assert_int_equal(fa->pm1_cnt_len, 2);
	assert_int_equal(fa->pm_tmr_len, 4);
	const struct acpi_gas *g[3] = { &fa->x_pm1a_evt_blk, &fa->x_pm1a_cnt_blk, &fa->x_pm_tmr_blk };
	const uint32_t port[3] = { fa->pm1a_evt_blk, fa->pm1a_cnt_blk, fa->pm_tmr_blk };
	const uint8_t len[3] = { fa->pm1_evt_len, fa->pm1_cnt_len, fa->pm_tmr_len };
	for (int i = 0; i < 3; i++) {
		assert_int_equal(g[i]->space_id, ACPI_GAS_SYSTEM_IO);
		assert_int_equal(g[i]->address, port[i]);
		assert_int_equal(g[i]->bit_width, 8 * len[i]);
	}
	assert_int_equal(fa->pm1b_evt_blk, 0);
	assert_int_equal(fa->pm1b_cnt_blk, 0);

	assert_int_equal(fa->reset_reg.space_id, ACPI_GAS_SYSTEM_IO);
	assert_int_equal(fa->reset_reg.address, 0x64);
	assert_int_equal(fa->reset_reg.bit_width, 8);
	assert_int_equal(fa->reset_value, 0xfe);
}

/* Count MADT entries by type, checking each one's length on the way. */
static void check_madt(const struct acpi_header *madt, unsigned nr_cpus)
{
	const uint8_t *p = (const uint8_t *)madt;
	const struct acpi_madt *m = (const void *)madt;
	assert_int_equal(m->lapic_addr, ACPI_LAPIC_ADDR);
	assert_true(m->flags & ACPI_MADT_PCAT_COMPAT);

	unsigned lapics = 0, ioapics = 0, isos = 0;
	bool seen_id[256] = { false };
	bool pit = false, sci = false;
	size_t off = sizeof(*m);
	while (off < madt->length) {
		assert_true(off + 2 <= madt->length);
		uint8_t type = p[off], elen = p[off + 1];
		assert_true(elen >= 2);
		assert_true(off + elen <= madt->length);
		switch (type) {
		case ACPI_MADT_LAPIC: {
			struct acpi_madt_lapic e;
			assert_int_equal(elen, sizeof(e));
			memcpy(&e, p + off, sizeof(e));
			assert_true(e.flags & ACPI_MADT_LAPIC_ENABLED);
			assert_true(e.apic_id < nr_cpus);
			assert_false(seen_id[e.apic_id]);
			seen_id[e.apic_id] = true;
			assert_int_equal(e.processor_uid, e.apic_id);
			lapics++;
			break;
		}
		case ACPI_MADT_IOAPIC: {
			struct acpi_madt_ioapic e;
			assert_int_equal(elen, sizeof(e));
			memcpy(&e, p + off, sizeof(e));
			assert_int_equal(e.address, ACPI_IOAPIC_ADDR);
			assert_int_equal(e.gsi_base, 0);
			ioapics++;
			break;
		}
		case ACPI_MADT_ISO: {
			struct acpi_madt_iso e;
			assert_int_equal(elen, sizeof(e));
			memcpy(&e, p + off, sizeof(e));
			assert_int_equal(e.bus, 0);
			if (e.source == 0) {
				assert_int_equal(e.gsi, 2);
				assert_int_equal(e.flags, 0);
				pit = true;
			} else if (e.source == 9) {
				assert_int_equal(e.gsi, 9);
				assert_int_equal(e.flags, ACPI_MPS_ACTIVE_HIGH | ACPI_MPS_LEVEL);
				sci = true;
			} else {
				fail_msg("unexpected override of IRQ %u", e.source);
			}
			isos++;
			break;
		}
		default:
			fail_msg("unexpected MADT entry type %u", type);
		}
		off += elen;
	}
	assert_int_equal(off, madt->length);
	assert_int_equal(lapics, nr_cpus);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 2);
	assert_true(pit && sci);
}

static void test_madt_cpu_counts(void **state)
{
	struct fixture *f = *state;
	static const unsigned counts[] = { 1, 2, 8, 255 };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		struct tables t;
		memset(f->ram, 0xa5, RAM_SIZE);
		walk(f, build(f, counts[i]), &t);
		check_madt(t.madt, counts[i]);
		/* One processor Device per vCPU: count "ACPI0007" strings. */
		unsigned devs = 0;
		const uint8_t *d = (const uint8_t *)t.dsdt;
		for (size_t o = 0; o + 9 <= t.dsdt->length; o++)
			devs += !memcmp(d + o, "ACPI0007", 9);
		assert_int_equal(devs, counts[i]);
	}
}

static void test_bad_config(void **state)
{
	struct fixture *f = *state;
	struct acpi_config cfg;
	uint64_t rsdp = 0x1234;

	acpi_config_default(&cfg, 0);
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	acpi_config_default(&cfg, 256);
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	acpi_config_default(&cfg, 1);
	cfg.sci_irq = 2;
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	acpi_config_default(&cfg, 1);
	cfg.legacy_devs = 1u << 31;
	assert_int_equal(acpi_build(&f->gm, &cfg, &rsdp), -EINVAL);
	assert_int_equal(rsdp, 0x1234); /* untouched on failure */
}

static void test_memory_too_small(void **state)
{
	(void)state;
	/* Guest RAM that stops short of the BIOS area: gm_write refuses. */
	size_t size = ACPI_AREA_START + 0x100;
	uint8_t *ram = malloc(size);
	struct guest_mem gm;
	struct acpi_config cfg;
	uint64_t rsdp = 0;
	assert_non_null(ram);
	assert_int_equal(gm_init_fake(&gm, 0, ram, size), 0);
	acpi_config_default(&cfg, 255);
	assert_int_equal(acpi_build(&gm, &cfg, &rsdp), -EFAULT);
	free(ram);
}

/* ---- AML builder ---- */

static unsigned pkglen_decode(const uint8_t *b, size_t *val)
{
	unsigned follow = b[0] >> 6;
	if (!follow) {
		*val = b[0] & 0x3f;
		return 1;
	}
	assert_int_equal(b[0] & 0x30, 0); /* reserved bits */
	size_t v = b[0] & 0x0f;
	for (unsigned i = 0; i < follow; i++)
		v |= (size_t)b[1 + i] << (4 + 8 * i);
	*val = v;
	return 1 + follow;
}

static void test_aml_pkglen(void **state)
{
	(void)state;
	static const struct {
		size_t content;
		unsigned bytes;
	} cases[] = {
		{ 0, 1 },	     { 62, 1 },		  /* 63 = 0x3f: largest 1-byte */
		{ 63, 2 },	     { 4093, 2 },	  /* 4095: largest 2-byte */
		{ 4094, 3 },	     { (1u << 20) - 4, 3 }, /* 2^20 - 1 */
		{ (1u << 20) - 3, 4 }, { (1u << 28) - 5, 4 }, /* 2^28 - 1 */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t out[4];
		size_t v;
		unsigned n = aml_pkglen_encode(cases[i].content, out);
		assert_int_equal(n, cases[i].bytes);
		assert_int_equal(pkglen_decode(out, &v), n);
		assert_int_equal(v, cases[i].content + n); /* counts itself */
	}
	uint8_t out[4];
	assert_int_equal(aml_pkglen_encode((1u << 28) - 4, out), 0);
}

/* Build Scope(\) { Name(XXXX, <v>) } and compare the Name's object bytes. */
static void check_int(uint64_t v, const uint8_t *want, size_t want_len)
{
	struct aml a;
	aml_init(&a);
	aml_name(&a, "XXXX");
	aml_int(&a, v);
	assert_int_equal(aml_finish(&a), 0);
	assert_int_equal(a.len, 5 + want_len);
	assert_int_equal(a.buf[0], 0x08);
	assert_memory_equal(a.buf + 1, "XXXX", 4);
	assert_memory_equal(a.buf + 5, want, want_len);
	aml_free(&a);
}

static void test_aml_integers(void **state)
{
	(void)state;
	check_int(0, (const uint8_t[]){ 0x00 }, 1);
	check_int(1, (const uint8_t[]){ 0x01 }, 1);
	check_int(2, (const uint8_t[]){ 0x0a, 0x02 }, 2);
	check_int(0xff, (const uint8_t[]){ 0x0a, 0xff }, 2);
	check_int(0x100, (const uint8_t[]){ 0x0b, 0x00, 0x01 }, 3);
	check_int(0x10000, (const uint8_t[]){ 0x0c, 0x00, 0x00, 0x01, 0x00 }, 5);
	check_int(0x100000000ULL, (const uint8_t[]){ 0x0e, 0, 0, 0, 0, 1, 0, 0, 0 }, 9);
	check_int(UINT64_MAX, (const uint8_t[]){ 0xff }, 1);
}

static void test_aml_names_and_objects(void **state)
{
	(void)state;
	struct aml a;

	/* Scope(\_SB) { Device(PCI0) { Name(_HID, EisaId("PNP0A03"))
	 *   Method(_STA) { Return(0x0F) } } }, plus a multi-segment scope */
	aml_init(&a);
	aml_scope_begin(&a, "\\_SB");
	aml_device_begin(&a, "PCI0");
	aml_name(&a, "_HID");
	aml_eisaid(&a, "PNP0A03");
	aml_method_begin(&a, "_STA", 0, 0);
	aml_return(&a);
	aml_int(&a, 0x0f);
	aml_end(&a);
	aml_end(&a);
	aml_end(&a);
	aml_scope_begin(&a, "\\_SB.PCI0.ISA");
	aml_name(&a, "S");
	aml_string(&a, "ab");
	aml_end(&a);
	aml_scope_begin(&a, "_SB.PCI0");
	aml_end(&a);
	aml_scope_begin(&a, "^PCI0");
	aml_end(&a);
	aml_scope_begin(&a, "\\");
	aml_end(&a);
	assert_int_equal(aml_finish(&a), 0);

	static const uint8_t want[] = {
		0x10, 0x21, '\\', '_', 'S', 'B', '_',		  /* Scope(\_SB) */
		0x5b, 0x82, 0x19, 'P', 'C', 'I', '0',		  /* Device(PCI0) */
		0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03, /* EisaId */
		0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f, /* Method */
		0x10, 0x19, '\\', 0x2f, 0x03, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'I', 'S',
		'A', '_', 0x08, 'S', '_', '_', '_', 0x0d, 'a', 'b', 0x00,
		0x10, 0x0a, 0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0',
		0x10, 0x06, '^', 'P', 'C', 'I', '0',
		0x10, 0x03, '\\', 0x00,
	};
	assert_int_equal(a.len, sizeof(want));
	assert_memory_equal(a.buf, want, sizeof(want));
	aml_free(&a);

	assert_int_equal(aml_eisaid_value("PNP0501"), 0x0105d041);
	assert_int_equal(aml_eisaid_value("pnp0501"), 0);
	assert_int_equal(aml_eisaid_value("PNP050"), 0);
	assert_int_equal(aml_eisaid_value("PNP050G"), 0);
}

static void test_aml_package_and_template(void **state)
{
	(void)state;
	struct aml a;

	aml_init(&a);
	aml_name(&a, "_S5");
	aml_package_begin(&a);
	aml_int(&a, 5);
	aml_int(&a, 5);
	aml_int(&a, 0);
	aml_int(&a, 0);
	aml_end(&a);
	aml_name(&a, "_CRS");
	aml_rt_begin(&a);
	aml_rt_io(&a, 1, 0x3f8, 0x3f8, 0, 8);
	aml_rt_irq_noflags(&a, 1u << 4);
	aml_rt_end(&a);
	assert_int_equal(aml_finish(&a), 0);

	static const uint8_t want[] = {
		0x08, '_', 'S', '5', '_', 0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00,
		0x08, '_', 'C', 'R', 'S', 0x11, 0x10, 0x0a, 0x0d, /* Buffer(13) */
		0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x00, 0x08, /* IO */
		0x22, 0x10, 0x00,				/* IRQNoFlags{4} */
		0x79, 0x00,					/* End Tag */
	};
	assert_int_equal(a.len, sizeof(want));
	assert_memory_equal(a.buf, want, sizeof(want));
	aml_free(&a);

	/* Nested packages count as one element of their parent. */
	aml_init(&a);
	aml_name(&a, "PKG");
	aml_package_begin(&a);
	aml_package_begin(&a);
	aml_int(&a, 1);
	aml_end(&a);
	aml_string(&a, "x");
	aml_end(&a);
	assert_int_equal(aml_finish(&a), 0);
	static const uint8_t nested[] = {
		0x08, 'P', 'K', 'G', '_', 0x12, 0x09, 0x02, 0x12, 0x03, 0x01, 0x01, 0x0d, 'x', 0x00,
	};
	assert_int_equal(a.len, sizeof(nested));
	assert_memory_equal(a.buf, nested, sizeof(nested));
	aml_free(&a);
}

/* A device body longer than 63 bytes needs a 2-byte PkgLength, longer than
 * 4095 a 3-byte one: built, then re-parsed. */
static void test_aml_long_blocks(void **state)
{
	(void)state;
	static const size_t names[] = { 5, 100, 1000 };
	for (size_t t = 0; t < 3; t++) {
		struct aml a;
		char n[16];
		aml_init(&a);
		aml_device_begin(&a, "DEV0");
		for (size_t i = 0; i < names[t]; i++) {
			snprintf(n, sizeof(n), "N%03X", (unsigned)(i & 0xfff));
			aml_name(&a, n);
			aml_int(&a, 0x12345678);
		}
		aml_end(&a);
		assert_int_equal(aml_finish(&a), 0);
		size_t v;
		unsigned pl = pkglen_decode(a.buf + 2, &v);
		assert_int_equal(v, a.len - 2);
		assert_int_equal(pl, t + 1);
		assert_memory_equal(a.buf + 2 + pl, "DEV0", 4);
		aml_free(&a);
	}
}

static int misuse(void (*fn)(struct aml *))
{
	struct aml a;
	aml_init(&a);
	fn(&a);
	int err = aml_finish(&a);
	aml_free(&a);
	return err;
}

static void bare_int(struct aml *a) { aml_int(a, 3); }
static void unclosed(struct aml *a) { aml_scope_begin(a, "\\_SB"); }
static void dangling_name(struct aml *a) { aml_name(a, "ABCD"); }
static void bad_name_digit(struct aml *a) { aml_device_begin(a, "1ABC"); }
static void bad_name_long(struct aml *a) { aml_device_begin(a, "ABCDE"); }
static void bad_name_lower(struct aml *a) { aml_device_begin(a, "com1"); }
static void bad_name_dots(struct aml *a) { aml_scope_begin(a, "A..B"); }
static void bad_name_empty(struct aml *a) { aml_scope_begin(a, ""); }
static void io_outside_rt(struct aml *a) { aml_rt_io(a, 1, 0, 0, 0, 1); }
static void extra_end(struct aml *a) { aml_end(a); }
static void addr_outside_rt(struct aml *a) { aml_rt_addr_space(a, 16, AML_ADDR_IO, 3, 0, 1); }
static void addr_in_rt(struct aml *a, unsigned bits, uint64_t min, uint64_t len)
{
	aml_name(a, "_CRS");
	aml_rt_begin(a);
	aml_rt_addr_space(a, bits, AML_ADDR_MEM, 1, min, len);
	aml_rt_end(a);
}
static void addr_bad_width(struct aml *a) { addr_in_rt(a, 24, 0, 1); }
static void addr_past_16_bits(struct aml *a) { addr_in_rt(a, 16, 0xc000, 0x4001); }
static void addr_empty(struct aml *a) { addr_in_rt(a, 32, 0xc0000000, 0); }
static void return_outside_method(struct aml *a)
{
	aml_scope_begin(a, "\\");
	aml_return(a);
}
static void name_in_package(struct aml *a)
{
	aml_name(a, "PKG");
	aml_package_begin(a);
	aml_name(a, "X");
}
static void too_many_elements(struct aml *a)
{
	aml_name(a, "PKG");
	aml_package_begin(a);
	for (int i = 0; i < 256; i++)
		aml_int(a, 0);
	aml_end(a);
}
static void too_deep(struct aml *a)
{
	for (int i = 0; i < AML_MAX_DEPTH + 1; i++)
		aml_scope_begin(a, "\\");
}

static void test_aml_misuse(void **state)
{
	(void)state;
	assert_int_equal(misuse(bare_int), -EINVAL);
	assert_int_equal(misuse(unclosed), -EINVAL);
	assert_int_equal(misuse(dangling_name), -EINVAL);
	assert_int_equal(misuse(bad_name_digit), -EINVAL);
	assert_int_equal(misuse(bad_name_long), -EINVAL);
	assert_int_equal(misuse(bad_name_lower), -EINVAL);
	assert_int_equal(misuse(bad_name_dots), -EINVAL);
	assert_int_equal(misuse(bad_name_empty), -EINVAL);
	assert_int_equal(misuse(io_outside_rt), -EINVAL);
	assert_int_equal(misuse(extra_end), -EINVAL);
	assert_int_equal(misuse(addr_outside_rt), -EINVAL);
	assert_int_equal(misuse(addr_bad_width), -EINVAL);
	assert_int_equal(misuse(addr_past_16_bits), -EINVAL);
	assert_int_equal(misuse(addr_empty), -EINVAL);
	assert_int_equal(misuse(return_outside_method), -EINVAL);
	assert_int_equal(misuse(name_in_package), -EINVAL);
	assert_int_equal(misuse(too_many_elements), -E2BIG);
	assert_int_equal(misuse(too_deep), -E2BIG);
}

/* ---- iasl: the reference disassembler ---- */

static bool have_iasl(char *why, size_t why_len)
{
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/bin:/bin";
	char *dup = strdup(path), *save = NULL;
	bool found = false;
	for (char *dir = strtok_r(dup, ":", &save); dir && !found;
	     dir = strtok_r(NULL, ":", &save)) {
		char p[4096];
		snprintf(p, sizeof(p), "%s/iasl", dir);
		found = access(p, X_OK) == 0;
	}
	free(dup);
	if (!found)
		snprintf(why, why_len, "iasl not found in PATH (Debian package acpica-tools)");
	return found;
}

static void write_file(const char *dir, const char *name, const void *p, size_t len)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(p, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static char *read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	if (!fp)
		return NULL;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
		fwrite(chunk, 1, n, mem);
	fclose(fp);
	fclose(mem);
	return buf;
}

/* A line that reports a problem. iasl's summaries say "0 Errors"; the
 * disassembler flags bad data-table fields with "Invalid" or "Incorrect"
 * (e.g. a wrong checksum). */
static const char *problem_line(const char *text)
{
	for (const char *line = text; line && *line;) {
		const char *end = strchr(line, '\n');
		size_t n = end ? (size_t)(end - line) : strlen(line);
		char l[1024];
		snprintf(l, sizeof(l), "%.*s", (int)(n < sizeof(l) - 1 ? n : sizeof(l) - 1), line);
		bool bad = (strstr(l, "Error") && !strstr(l, " 0 Errors")) || strstr(l, "Warning ") ||
			   strstr(l, "Invalid") || strstr(l, "Incorrect") || strstr(l, "Unknown");
		if (bad)
			return line;
		line = end ? end + 1 : NULL;
	}
	return NULL;
}

/* Run iasl with args in dir; returns its output (stdout+stderr). */
static char *run_iasl(const char *dir, const char *args, int *status)
{
	char cmd[8192];
	snprintf(cmd, sizeof(cmd), "cd '%s' && iasl %s 2>&1", dir, args);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	char *buf = NULL;
	size_t len = 0;
	FILE *mem = open_memstream(&buf, &len);
	char chunk[4096];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
		fwrite(chunk, 1, n, mem);
	fclose(mem);
	int st = pclose(p);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
	return buf;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

/* TARN_TEST_KEEP=1 keeps the tables and their disassembly for a look. */
static void remove_dir(const char *dir)
{
	if (getenv("TARN_TEST_KEEP")) {
		printf("# kept %s\n", dir);
		return;
	}
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void disassemble(const char *dir, const char *file)
{
	int status;
	char args[512];
	snprintf(args, sizeof(args), "-d %s", file);
	char *out = run_iasl(dir, args, &status);
	const char *bad = problem_line(out);
	if (status != 0 || bad)
		fail_msg("iasl -d %s: exit %d, %s\n%s", file, status, bad ? bad : "", out);
	free(out);

	/* The disassembly itself carries the disassembler's complaints. */
	char dsl[4096];
	snprintf(dsl, sizeof(dsl), "%s/%.*s.dsl", dir, (int)(strlen(file) - 4), file);
	char *text = read_file(dsl);
	assert_non_null(text);
	bad = problem_line(text);
	if (bad)
		fail_msg("%s: %.200s", dsl, bad);
	free(text);
}

/* Compile name.dsl back (-oa: no optimizations, else iasl shortens \_SB to
 * _SB at the root) and compare with what we built. iasl rewrites the
 * header's checksum and compiler ID, so a table with a header is compared
 * from the end of it; everything after must be byte-identical. */
static void recompile_and_compare(const char *dir, const char *name, const void *orig,
				  size_t len, size_t skip)
{
	int status;
	char args[512], path[4096];
	snprintf(args, sizeof(args), "-oa -p re_%s %s.dsl", name, name);
	char *out = run_iasl(dir, args, &status);
	if (status != 0 || problem_line(out))
		fail_msg("iasl %s: exit %d\n%s", args, status, out);
	free(out);

	snprintf(path, sizeof(path), "%s/re_%s.aml", dir, name);
	FILE *fp = fopen(path, "rb");
	assert_non_null(fp);
	uint8_t *re = malloc(len + 1);
	assert_non_null(re);
	size_t n = fread(re, 1, len + 1, fp);
	fclose(fp);
	assert_int_equal(n, len);
	assert_memory_equal(re + skip, (const uint8_t *)orig + skip, len - skip);
	free(re);
}

/* Dump every table, disassemble it, and compile the disassembly back. Not
 * the RSDP: iasl only reads tables whose signature is a 4-char NameSeg
 * ("RSD PTR " is not), so walk() checks it instead. */
static void dump_and_disassemble(struct fixture *f, unsigned nr_cpus, const char *dir)
{
	struct tables t;
	walk(f, build(f, nr_cpus), &t);
	const size_t hdr = sizeof(struct acpi_header);
	const struct {
		const char *name;
		const void *p;
		size_t len, skip;
	} tabs[] = {
		{ "xsdt", t.xsdt, t.xsdt->length, hdr },
		{ "facp", t.fadt, t.fadt->h.length, hdr },
		{ "facs", t.facs, t.facs->length, 0 },
		{ "apic", t.madt, t.madt->length, hdr },
		{ "dsdt", t.dsdt, t.dsdt->length, hdr },
		{ "mcfg", t.mcfg, t.mcfg->h.length, hdr },
	};
	for (size_t i = 0; i < sizeof(tabs) / sizeof(tabs[0]); i++) {
		char file[32];
		snprintf(file, sizeof(file), "%s.dat", tabs[i].name);
		write_file(dir, file, tabs[i].p, tabs[i].len);
		disassemble(dir, file);
		recompile_and_compare(dir, tabs[i].name, tabs[i].p, tabs[i].len, tabs[i].skip);
	}
}

static void test_iasl_disassembles_all_tables(void **state)
{
	struct fixture *f = *state;
	char why[128];
	if (!have_iasl(why, sizeof(why)))
		SKIP_BECAUSE("%s", why);

	static const unsigned counts[] = { 1, 8, 255 };
	for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
		char dir[] = "/tmp/tarn-acpi-XXXXXX";
		assert_non_null(mkdtemp(dir));
		memset(f->ram, 0xa5, RAM_SIZE);
		dump_and_disassemble(f, counts[i], dir);
		remove_dir(dir);
	}
}

/* iasl -d the DSDT, check the ASL says what we meant, then compile that ASL
 * back: the AML iasl produces must be byte-identical to ours, so every
 * encoding the builder chose is the canonical one. */
static void test_iasl_dsdt_round_trip(void **state)
{
	struct fixture *f = *state;
	char why[128];
	if (!have_iasl(why, sizeof(why)))
		SKIP_BECAUSE("%s", why);

	char dir[] = "/tmp/tarn-acpi-XXXXXX";
	assert_non_null(mkdtemp(dir));
	struct tables t;
	walk(f, build(f, 2), &t);
	write_file(dir, "dsdt.dat", t.dsdt, t.dsdt->length);
	disassemble(dir, "dsdt.dat");

	char path[4096];
	snprintf(path, sizeof(path), "%s/dsdt.dsl", dir);
	char *dsl = read_file(path);
	assert_non_null(dsl);
	static const char *want[] = {
		"Scope (\\_SB)",
		"Device (CP00)",
		"Device (CP01)",
		"\"ACPI0007\"",
		"Device (COM1)",
		"EisaId (\"PNP0501\")",
		"IO (Decode16,",
		"0x03F8,",
		"IRQNoFlags ()",
		"{4}",
		/* The i8042 and its keyboard: both ports, IRQ 1. */
		"Device (KBD)",
		"EisaId (\"PNP0303\")",
		"0x0060,",
		"0x0064,",
		"{1}",
		"Name (_S5, Package (0x04)",
		/* The PCI root bridge and what it decodes. */
		"Device (PCI0)",
		"EisaId (\"PNP0A08\")",
		"EisaId (\"PNP0A03\")",
		"WordBusNumber (ResourceProducer, MinFixed, MaxFixed, PosDecode,",
		"0x0CF8,",
		"WordIO (ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange,",
		"0xC000,",
		"DWordMemory (ResourceProducer, PosDecode, MinFixed, MaxFixed,",
		"0xC0000000,",
		"0xCFFFFFFF,",
		"Name (_PRT, Package (0x7C)",
		"0x001FFFFF,",
		"EisaId (\"PNP0C02\")",
		"Memory32Fixed (ReadWrite,",
		"0xF0000000,",
	};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		if (!strstr(dsl, want[i]))
			fail_msg("dsdt.dsl lacks \"%s\":\n%s", want[i], dsl);
	/* iasl names the object _S5 and comments it as the NameSeg _S5_. */
	assert_non_null(strstr(dsl, "PNP0501"));
	assert_non_null(strstr(dsl, "ACPI0007"));
	assert_non_null(strstr(dsl, "_S5_"));
	free(dsl);


	recompile_and_compare(dir, "dsdt", t.dsdt, t.dsdt->length, sizeof(struct acpi_header));
	remove_dir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_walk_and_checksums, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fadt_fields, setup, teardown),
		cmocka_unit_test_setup_teardown(test_madt_cpu_counts, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_config, setup, teardown),
		cmocka_unit_test(test_memory_too_small),
		cmocka_unit_test(test_aml_pkglen),
		cmocka_unit_test(test_aml_integers),
		cmocka_unit_test(test_aml_names_and_objects),
		cmocka_unit_test(test_aml_package_and_template),
		cmocka_unit_test(test_aml_long_blocks),
		cmocka_unit_test(test_aml_misuse),
		cmocka_unit_test_setup_teardown(test_iasl_disassembles_all_tables, setup, teardown),
		cmocka_unit_test_setup_teardown(test_iasl_dsdt_round_trip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
