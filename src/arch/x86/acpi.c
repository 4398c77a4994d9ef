/* ACPI tables for x86 guests (ACPI 6.5 chapter 5). The platform they
 * describe is a classic PC without a BIOS: not hardware-reduced, because the
 * guest powers off through the PM1a control register (hw/acpi_pm.c) and
 * finds its SCI, PM timer and reset register in the FADT; interrupts go
 * through one IOAPIC with ISA IRQs identity-mapped except the PIT's.
 *
 * Tables are staged in a host buffer and copied into guest memory with one
 * gm_write: nothing here holds a pointer into guest RAM. */
#include "arch/x86/acpi.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/aml.h"
#include "hw/acpi_pm.h"
#include "hw/ioapic.h"
#include "mem/gm.h"
#include "pci/pci.h"

/* The packed structs in acpi.h are filled in host byte order. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
	       "ACPI tables are little-endian; acpi.c assumes a little-endian host");

#define OEM_ID "TARN  "	      /* 6 bytes */
#define OEM_TABLE_ID "TARNVM  " /* 8 bytes */
#define OEM_REVISION 1
#define CREATOR_ID "TARN"
#define CREATOR_REVISION 1

/* Revisions of the layouts in acpi.h (ACPI 6.5). */
#define XSDT_REVISION 1
#define FADT_REVISION 6
#define FADT_MINOR_VERSION 5
#define FACS_VERSION 2
#define MADT_REVISION 6	 /* ACPI 6.5 Table 5.19 */
#define DSDT_REVISION 2	 /* >= 2: AML integers are 64 bits */
#define MCFG_REVISION 1

/* P_LVL2_LAT > 100 and P_LVL3_LAT > 1000 say "no C2/C3" (ACPI 6.5 §5.2.9):
 * a vCPU's only idle state is HLT, which PROC_C1 covers. */
#define NO_C2_LATENCY 101
#define NO_C3_LATENCY 1001

/* The ISA IRQ the PIT's output reaches on the IOAPIC: pin 2, as on real
 * chipsets where pin 0 carries the 8259's INTR. */
#define PIT_ISA_IRQ 0

/* Legacy devices the DSDT can describe; indexed by ACPI_DEV_* bit. */
struct legacy_dev {
	uint32_t flag;
	const char *name;
	const char *hid;
	unsigned uid;
	uint16_t io_base;
	uint8_t io_len;
	uint8_t irq;
	uint16_t io_base2; /* a second range of io_len ports, 0 for none */
};

static const struct legacy_dev legacy_devs[] = {
	{ ACPI_DEV_COM1, "COM1", "PNP0501", 1, 0x3f8, 8, 4, 0 },
	/* Linux's i8042 driver finds the controller through this (PNP),
	 * with no mouse (PNP0F13) beside it. */
	{ ACPI_DEV_KBD, "KBD_", "PNP0303", 0, 0x60, 1, 1, 0x64 },
};

void acpi_config_default(struct acpi_config *cfg, unsigned nr_cpus)
{
	*cfg = (struct acpi_config){
		.nr_cpus = nr_cpus,
		.lapic_addr = ACPI_LAPIC_ADDR,
		.ioapic_id = 0,
		.ioapic_addr = ACPI_IOAPIC_ADDR,
		.ioapic_gsi_base = 0,
		.pm1a_evt_port = ACPI_PM1A_EVT_PORT,
		.pm1a_cnt_port = ACPI_PM1A_CNT_PORT,
		.pm_tmr_port = ACPI_PM_TMR_PORT,
		.sci_irq = ACPI_SCI_IRQ,
		.legacy_devs = ACPI_DEV_COM1 | ACPI_DEV_KBD,
		.pci = true,
	};
}

static int check_config(const struct acpi_config *cfg)
{
	/* xAPIC IDs are 8 bits and 0xFF is the broadcast ID. */
	if (cfg->nr_cpus < 1 || cfg->nr_cpus > 255)
		return -EINVAL;
	/* The SCI must be an ISA IRQ we route identity to a free pin: not
	 * IRQ 0 (rerouted to pin 2) nor IRQ 2 (the 8259 cascade). */
	if (cfg->sci_irq == 0 || cfg->sci_irq == 2 || cfg->sci_irq > 15)
		return -EINVAL;
	if (!cfg->pm1a_evt_port || !cfg->pm1a_cnt_port || !cfg->pm_tmr_port)
		return -EINVAL;
	uint32_t known = 0;
	for (size_t i = 0; i < sizeof(legacy_devs) / sizeof(legacy_devs[0]); i++)
		known |= legacy_devs[i].flag;
	if (cfg->legacy_devs & ~known)
		return -EINVAL;
	return 0;
}

static uint8_t checksum_of(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;
	for (size_t i = 0; i < len; i++)
		sum = (uint8_t)(sum + b[i]);
	return (uint8_t)(0 - sum); /* the value that makes the bytes sum to 0 */
}

static void fill_header(struct acpi_header *h, const char *sig, uint32_t len, uint8_t rev)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = rev;
	memcpy(h->oem_id, OEM_ID, 6);
	memcpy(h->oem_table_id, OEM_TABLE_ID, 8);
	h->oem_revision = OEM_REVISION;
	memcpy(h->creator_id, CREATOR_ID, 4);
	h->creator_revision = CREATOR_REVISION;
	/* checksum is set last, over the finished table */
}

static void seal(void *table)
{
	struct acpi_header *h = table;
	h->checksum = 0;
	h->checksum = checksum_of(table, h->length);
}

static struct acpi_gas io_gas(uint16_t port, uint8_t bits, uint8_t access)
{
	return (struct acpi_gas){
		.space_id = ACPI_GAS_SYSTEM_IO,
		.bit_width = bits,
		.access_size = access,
		.address = port,
	};
}

/* The PCI root bridge (PCI Firmware 3.2 §4.1, ACPI 6.5 §6.1/§6.2/§6.4):
 * PCI Express root (PNP0A08, compatible with PNP0A03), segment 0, bus 0,
 * and the windows it forwards: the CF8-CFF config ports it consumes, the
 * I/O and MMIO windows BARs live in. _PRT routes each slot's INTA-D to the
 * swizzled GSIs of pci_intx_gsi() (Source 0: global interrupts). The ECAM
 * area is claimed by a motherboard-resources device (PNP0C02), where Linux
 * looks before trusting MCFG ("reserved in ACPI motherboard resources"). */
static void build_pci_aml(struct aml *a)
{
	aml_device_begin(a, "PCI0");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0A08");
	aml_name(a, "_CID");
	aml_eisaid(a, "PNP0A03");
	aml_name(a, "_SEG");
	aml_int(a, 0);
	aml_name(a, "_BBN");
	aml_int(a, 0);
	aml_name(a, "_UID");
	aml_int(a, 0);
	aml_name(a, "_CRS");
	aml_rt_begin(a);
	aml_rt_addr_space(a, 16, AML_ADDR_BUS, 0, 0, 1);
	aml_rt_io(a, 1, PCI_CONFIG_ADDR, PCI_CONFIG_ADDR, 1, 8);
	aml_rt_addr_space(a, 16, AML_ADDR_IO, 3, PCI_IO_BASE, PCI_IO_SIZE);
	aml_rt_addr_space(a, 32, AML_ADDR_MEM, 1, PCI_MMIO32_BASE, PCI_MMIO32_SIZE);
	aml_rt_end(a);
	/* Package { Address 0xSSSSFFFF (any function), Pin 0-3, Source, GSI } */
	aml_name(a, "_PRT");
	aml_package_begin(a);
	for (int slot = 1; slot < PCI_MAX_SLOTS; slot++) {
		for (unsigned pin = 0; pin < 4; pin++) {
			aml_package_begin(a);
			aml_int(a, (uint64_t)slot << 16 | 0xffff);
			aml_int(a, pin);
			aml_int(a, 0);
			aml_int(a, pci_intx_gsi(slot, pin + 1));
			aml_end(a);
		}
	}
	aml_end(a);
	aml_end(a); /* PCI0 */

	aml_device_begin(a, "MRES");
	aml_name(a, "_HID");
	aml_eisaid(a, "PNP0C02");
	aml_name(a, "_UID");
	aml_int(a, 0);
	aml_name(a, "_CRS");
	aml_rt_begin(a);
	aml_rt_mem32_fixed(a, 1, (uint32_t)PCI_ECAM_BASE, (uint32_t)PCI_ECAM_SIZE);
	aml_rt_end(a);
	aml_end(a);
}

/* The DSDT body (ACPI 6.5 §5.2.11.1): processor devices, legacy devices,
 * and the S5 sleep package that makes poweroff work. */
static int build_dsdt_aml(struct aml *a, const struct acpi_config *cfg)
{
	char name[16];

	/* \_S5: SLP_TYPa, SLP_TYPb, reserved, reserved (ACPI 6.5 §7.4.2).
	 * Linux writes SLP_TYPa into PM1a_CNT with SLP_EN to power off. */
	aml_name(a, "_S5");
	aml_package_begin(a);
	aml_int(a, ACPI_SLP_TYP_S5);
	aml_int(a, ACPI_SLP_TYP_S5);
	aml_int(a, 0);
	aml_int(a, 0);
	aml_end(a);

	aml_scope_begin(a, "\\_SB");

	/* Processor devices (ACPI 6.5 §8.4): _UID matches the MADT entry's
	 * ACPI Processor UID, which is how the OS pairs them. The Processor()
	 * opcode is deprecated since ACPI 6.0. */
	for (unsigned i = 0; i < cfg->nr_cpus; i++) {
		snprintf(name, sizeof(name), "CP%02X", i & 0xff); /* i < 255 */
		aml_device_begin(a, name);
		aml_name(a, "_HID");
		aml_string(a, "ACPI0007");
		aml_name(a, "_UID");
		aml_int(a, i);
		aml_end(a);
	}

	for (size_t i = 0; i < sizeof(legacy_devs) / sizeof(legacy_devs[0]); i++) {
		const struct legacy_dev *d = &legacy_devs[i];
		if (!(cfg->legacy_devs & d->flag))
			continue;
		aml_device_begin(a, d->name);
		aml_name(a, "_HID");
		aml_eisaid(a, d->hid);
		aml_name(a, "_UID");
		aml_int(a, d->uid);
		/* Present, enabled, shown in UI, functioning (ACPI 6.5 §6.3.7). */
		aml_name(a, "_STA");
		aml_int(a, 0x0f);
		aml_name(a, "_CRS");
		aml_rt_begin(a);
		aml_rt_io(a, 1, d->io_base, d->io_base, 0, d->io_len);
		if (d->io_base2)
			aml_rt_io(a, 1, d->io_base2, d->io_base2, 0, d->io_len);
		aml_rt_irq_noflags(a, (uint16_t)(1u << d->irq));
		aml_rt_end(a);
		aml_end(a);
	}

	if (cfg->pci)
		build_pci_aml(a);

	aml_end(a); /* \_SB */
	return aml_finish(a);
}

struct layout {
	uint64_t rsdp, xsdt, fadt, facs, madt, dsdt, mcfg, end;
	uint32_t xsdt_len, madt_len, dsdt_len;
};

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

/* Fixed order, so a given config always produces the same addresses. The
 * 16-byte alignment is for the RSDP scan; the FACS needs 64 (§5.2.10). */
static int plan(struct layout *l, const struct acpi_config *cfg, size_t aml_len)
{
	l->xsdt_len = sizeof(struct acpi_header) + (cfg->pci ? 3 : 2) * sizeof(uint64_t); /* FADT, MADT, MCFG */
	l->madt_len = sizeof(struct acpi_madt) + cfg->nr_cpus * sizeof(struct acpi_madt_lapic) +
		      sizeof(struct acpi_madt_ioapic) + 2 * sizeof(struct acpi_madt_iso);
	if (aml_len > ACPI_AREA_END - ACPI_AREA_START)
		return -ENOSPC;
	l->dsdt_len = (uint32_t)(sizeof(struct acpi_header) + aml_len);

	l->rsdp = ACPI_RSDP_GPA;
	l->xsdt = align_up(l->rsdp + sizeof(struct acpi_rsdp), 16);
	l->fadt = align_up(l->xsdt + l->xsdt_len, 16);
	l->facs = align_up(l->fadt + sizeof(struct acpi_fadt), 64);
	l->madt = align_up(l->facs + sizeof(struct acpi_facs), 16);
	l->dsdt = align_up(l->madt + l->madt_len, 16);
	l->mcfg = align_up(l->dsdt + l->dsdt_len, 16);
	l->end = cfg->pci ? l->mcfg + sizeof(struct acpi_mcfg) : l->dsdt + l->dsdt_len;
	return l->end <= ACPI_AREA_END ? 0 : -ENOSPC;
}

static void build_fadt(struct acpi_fadt *f, const struct acpi_config *cfg, const struct layout *l)
{
	fill_header(&f->h, "FACP", sizeof(*f), FADT_REVISION);
	f->minor_version = FADT_MINOR_VERSION;

	/* FACS below 4 GiB goes in FIRMWARE_CTRL, and then X_FIRMWARE_CTRL
	 * must be 0 (§5.2.9). The DSDT has no such rule: both fields, equal,
	 * so that OSes reading either agree. */
	f->firmware_ctrl = (uint32_t)l->facs;
	f->dsdt = (uint32_t)l->dsdt;
	f->x_dsdt = l->dsdt;

	f->sci_int = cfg->sci_irq;
	/* SMI_CMD 0: no SMI command port, the platform is always in ACPI
	 * mode; hw/acpi_pm.c keeps SCI_EN set to match. */
	f->smi_cmd = 0;

	/* Fixed hardware blocks, given twice: the legacy 32-bit fields and
	 * the X_ Generic Address fields. ACPICA warns when the two disagree
	 * in address or in width (legacy length * 8). */
	f->pm1a_evt_blk = cfg->pm1a_evt_port;
	f->pm1a_cnt_blk = cfg->pm1a_cnt_port;
	f->pm_tmr_blk = cfg->pm_tmr_port;
	f->pm1_evt_len = ACPI_PM1A_EVT_LEN;
	f->pm1_cnt_len = ACPI_PM1A_CNT_LEN;
	f->pm_tmr_len = ACPI_PM_TMR_LEN;
	/* PM1 registers are 16 bits each (the event block holds two);
	 * the timer is one 32-bit register. */
	f->x_pm1a_evt_blk = io_gas(cfg->pm1a_evt_port, 8 * ACPI_PM1A_EVT_LEN, ACPI_GAS_ACCESS_WORD);
	f->x_pm1a_cnt_blk = io_gas(cfg->pm1a_cnt_port, 8 * ACPI_PM1A_CNT_LEN, ACPI_GAS_ACCESS_WORD);
	f->x_pm_tmr_blk = io_gas(cfg->pm_tmr_port, 8 * ACPI_PM_TMR_LEN, ACPI_GAS_ACCESS_DWORD);
	/* No GPE blocks yet: nothing raises general-purpose events. */

	f->p_lvl2_lat = NO_C2_LATENCY;
	f->p_lvl3_lat = NO_C3_LATENCY;

	/* CENTURY 0: the RTC's century byte is not advertised. */
	f->century = 0;

	/* The DSDT lists ISA devices (COM1, the i8042 with its keyboard);
	 * there is no VGA. */
	f->iapc_boot_arch = ACPI_BOOT_LEGACY_DEVICES | ACPI_BOOT_NO_VGA |
			    (cfg->legacy_devs & ACPI_DEV_KBD ? ACPI_BOOT_8042 : 0);

	/* WBINVD works; C1 (HLT) on every vCPU; the power button is the fixed
	 * hardware one (PWR_BUTTON clear: PM1's PWRBTN_STS, which tarn's
	 * PowerButton action sets); no sleep button; the reset register below
	 * is valid. TMR_VAL_EXT stays clear: 24-bit timer. */
	f->flags = ACPI_FADT_WBINVD | ACPI_FADT_PROC_C1 | ACPI_FADT_SLP_BUTTON | ACPI_FADT_RESET_REG_SUP;

	/* Reset through the i8042: byte 0xFE to port 0x64 (RESET_REG, §5.2.9). */
	f->reset_reg = io_gas(ACPI_RESET_PORT, 8, ACPI_GAS_ACCESS_BYTE);
	f->reset_value = ACPI_RESET_VALUE;
}

static void build_facs(struct acpi_facs *s)
{
	memcpy(s->signature, "FACS", 4);
	s->length = sizeof(*s);
	s->version = FACS_VERSION;
	/* All else 0: no S4BIOS, no waking vector, global lock free. The
	 * FACS is here because a non-hardware-reduced FADT implies one: the
	 * OS keeps the global lock and the waking vector in it. */
}

static void build_madt(uint8_t *p, const struct acpi_config *cfg, const struct layout *l)
{
	struct acpi_madt *m = (struct acpi_madt *)p;
	size_t off = sizeof(*m);

	fill_header(&m->h, "APIC", l->madt_len, MADT_REVISION);
	m->lapic_addr = cfg->lapic_addr;
	/* PCAT_COMPAT: dual 8259s are present, so the OS masks them before
	 * switching to the IOAPIC. */
	m->flags = ACPI_MADT_PCAT_COMPAT;

	for (unsigned i = 0; i < cfg->nr_cpus; i++) {
		struct acpi_madt_lapic e = {
			.type = ACPI_MADT_LAPIC,
			.length = sizeof(e),
			.processor_uid = (uint8_t)i, /* = the processor Device's _UID */
			.apic_id = (uint8_t)i,
			.flags = ACPI_MADT_LAPIC_ENABLED,
		};
		memcpy(p + off, &e, sizeof(e));
		off += sizeof(e);
	}

	struct acpi_madt_ioapic io = {
		.type = ACPI_MADT_IOAPIC,
		.length = sizeof(io),
		.ioapic_id = cfg->ioapic_id,
		.address = cfg->ioapic_addr,
		.gsi_base = cfg->ioapic_gsi_base,
	};
	memcpy(p + off, &io, sizeof(io));
	off += sizeof(io);

	/* Without overrides ISA IRQ n is GSI n, edge, active-high. Two
	 * exceptions: the PIT's IRQ 0 is wired to pin 2, and the SCI is
	 * level-triggered (shared-capable) — active-high, as hw/acpi_pm.c
	 * drives it. */
	struct acpi_madt_iso iso[2] = {
		{
			.type = ACPI_MADT_ISO,
			.length = sizeof(iso[0]),
			.bus = 0,
			.source = PIT_ISA_IRQ,
			.gsi = cfg->ioapic_gsi_base + IOAPIC_PIT_PIN,
			.flags = 0, /* conforms to ISA: edge, active-high */
		},
		{
			.type = ACPI_MADT_ISO,
			.length = sizeof(iso[1]),
			.bus = 0,
			.source = cfg->sci_irq,
			.gsi = cfg->ioapic_gsi_base + cfg->sci_irq,
			.flags = ACPI_MPS_ACTIVE_HIGH | ACPI_MPS_LEVEL,
		},
	};
	memcpy(p + off, iso, sizeof(iso));
	off += sizeof(iso);
}

int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
{
	struct aml a;
	struct layout l;
	uint8_t *img = NULL;
	int err;

	aml_init(&a);
	err = check_config(cfg);
	if (err)
		goto out;
	err = build_dsdt_aml(&a, cfg);
	if (err)
		goto out;
	err = plan(&l, cfg, a.len);
	if (err)
		goto out;

	/* Stage [ACPI_AREA_START, l.end) in a zeroed buffer: padding
	 * between tables reads as zeros, never as stale guest bytes. */
	size_t img_len = l.end - ACPI_AREA_START;
	img = calloc(1, img_len);
	if (!img) {
		err = -ENOMEM;
		goto out;
	}
#define AT(gpa) (img + ((gpa)-ACPI_AREA_START))

	/* DSDT */
	struct acpi_header *dsdt = (struct acpi_header *)AT(l.dsdt);
	fill_header(dsdt, "DSDT", l.dsdt_len, DSDT_REVISION);
	memcpy(dsdt + 1, a.buf, a.len);
	seal(dsdt);

	build_facs((struct acpi_facs *)AT(l.facs));

	build_fadt((struct acpi_fadt *)AT(l.fadt), cfg, &l);
	seal(AT(l.fadt));

	build_madt(AT(l.madt), cfg, &l);
	seal(AT(l.madt));

	if (cfg->pci) {
		struct acpi_mcfg *mcfg = (struct acpi_mcfg *)AT(l.mcfg);

		fill_header(&mcfg->h, "MCFG", sizeof(*mcfg), MCFG_REVISION);
		mcfg->alloc[0] = (struct acpi_mcfg_alloc){ .base = PCI_ECAM_BASE, .segment = 0,
							   .start_bus = 0, .end_bus = 0 };
		seal(mcfg);
	}

	/* XSDT (§5.2.8): 64-bit pointers to every table but the DSDT and
	 * FACS, which the FADT points to. */
	struct acpi_header *xsdt = (struct acpi_header *)AT(l.xsdt);
	fill_header(xsdt, "XSDT", l.xsdt_len, XSDT_REVISION);
	uint64_t entries[3] = { l.fadt, l.madt, l.mcfg };
	memcpy(xsdt + 1, entries, l.xsdt_len - sizeof(*xsdt));
	seal(xsdt);

	/* RSDP (§5.2.5.3): revision 2 with only an XSDT. The first checksum
	 * covers the ACPI 1.0 fields, the extended one the whole structure. */
	struct acpi_rsdp *rsdp = (struct acpi_rsdp *)AT(l.rsdp);
	memcpy(rsdp->signature, "RSD PTR ", 8);
	memcpy(rsdp->oem_id, OEM_ID, 6);
	rsdp->revision = 2;
	rsdp->rsdt_addr = 0;
	rsdp->length = sizeof(*rsdp);
	rsdp->xsdt_addr = l.xsdt;
	rsdp->checksum = checksum_of(rsdp, 20);
	rsdp->ext_checksum = checksum_of(rsdp, sizeof(*rsdp));
#undef AT

	err = gm_write(gm, ACPI_AREA_START, img, img_len);
	if (err)
		goto out;
	*rsdp_gpa = l.rsdp;
out:
	free(img);
	aml_free(&a);
	return err;
}
