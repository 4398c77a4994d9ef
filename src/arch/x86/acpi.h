/* ACPI tables for x86 guests: RSDP, XSDT, FADT, FACS, MADT and DSDT, built
 * into guest memory. The default guest kernel has no MP-table parser, so
 * this is how it learns about its CPUs, its interrupt routing, its legacy
 * devices and how to power off.
 *
 * Layout in guest memory (all inside the BIOS area Linux scans for the
 * RSDP, which the e820 map must mark reserved):
 *   0xE0000  RSDP (16-byte aligned, as the scan requires)
 *   then, in order and aligned: XSDT, FADT, FACS (64-byte aligned), MADT,
 *   DSDT — all below 0x100000, or acpi_build() fails with -ENOSPC.
 *
 * Structures below follow ACPI 6.5; each names its section. All fields are
 * little-endian, which is also every host's order (asserted in acpi.c). */
#ifndef TARN_ACPI_H
#define TARN_ACPI_H

#include <stdbool.h>
#include <stdint.h>

struct guest_mem;

#define ACPI_AREA_START 0xE0000ULL
#define ACPI_AREA_END 0x100000ULL
#define ACPI_RSDP_GPA ACPI_AREA_START

#define ACPI_LAPIC_ADDR 0xFEE00000u
#define ACPI_IOAPIC_ADDR 0xFEC00000u

/* The FADT's RESET_REG: the i8042's "pulse reset line" command, which
 * hw/i8042.c turns into a VM reset. */
#define ACPI_RESET_PORT 0x64
#define ACPI_RESET_VALUE 0xFE

/* Legacy devices the DSDT describes (struct acpi_config.legacy_devs). */
#define ACPI_DEV_COM1 (1u << 0) /* 8250 at 0x3F8, IRQ 4 */
#define ACPI_DEV_KBD (1u << 1)	/* i8042 at 0x60 and 0x64, IRQ 1, and its keyboard */

struct acpi_config {
	unsigned nr_cpus;	  /* 1..255: LAPIC IDs and processor UIDs 0..n-1 */
	uint32_t lapic_addr;	  /* ACPI_LAPIC_ADDR */
	uint8_t ioapic_id;	  /* what the IOAPIC's ID register reads */
	uint32_t ioapic_addr;	  /* ACPI_IOAPIC_ADDR */
	uint32_t ioapic_gsi_base; /* 0: pins are GSIs 0..23, ISA IRQs identity-mapped */
	uint16_t pm1a_evt_port;	  /* 4 bytes: PM1_STS, PM1_EN */
	uint16_t pm1a_cnt_port;	  /* 2 bytes */
	uint16_t pm_tmr_port;	  /* 4 bytes */
	uint8_t sci_irq;	  /* ISA IRQ, level-triggered active-high */
	uint32_t legacy_devs;	  /* ACPI_DEV_* */
	bool pci;		  /* describe the PCI root (pci/pci.h) and its MCFG */
};

/* The platform tarn emulates: LAPIC/IOAPIC at their usual addresses, IOAPIC
 * ID 0, the hw/acpi_pm.h ports, SCI on IRQ 9, COM1. */
void acpi_config_default(struct acpi_config *cfg, unsigned nr_cpus);

/* Write the tables into guest memory (through gm_write only) and return the
 * RSDP's address, for boot_params.acpi_rsdp_addr. Returns 0, -EINVAL for a
 * bad config, -ENOSPC if the tables don't fit below 1 MiB, -ENOMEM, or
 * -EFAULT when guest memory does not cover the area. */
int acpi_build(struct guest_mem *gm, const struct acpi_config *cfg, uint64_t *rsdp_gpa)
	__attribute__((warn_unused_result));

/* ---- Guest-visible layouts ---- */

/* Root System Description Pointer, ACPI 6.5 §5.2.5.3. */
struct acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* over the first 20 bytes (the ACPI 1.0 part) */
	char oem_id[6];
	uint8_t revision; /* 2: ACPI 2.0+ layout with XSDT */
	uint32_t rsdt_addr; /* 0: we provide only the XSDT */
	uint32_t length;    /* 36 */
	uint64_t xsdt_addr;
	uint8_t ext_checksum; /* over all 36 bytes */
	uint8_t reserved[3];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_rsdp) == 36, "RSDP is 36 bytes (ACPI 6.5 §5.2.5.3)");

/* System Description Table Header, ACPI 6.5 §5.2.6. */
struct acpi_header {
	char signature[4];
	uint32_t length; /* whole table, header included */
	uint8_t revision;
	uint8_t checksum; /* whole table sums to 0 */
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_header) == 36, "table header is 36 bytes (ACPI 6.5 §5.2.6)");

/* Generic Address Structure, ACPI 6.5 §5.2.3.2. */
struct acpi_gas {
	uint8_t space_id; /* 1 = System I/O */
	uint8_t bit_width;
	uint8_t bit_offset;
	uint8_t access_size; /* 1 byte, 2 word, 3 dword, 4 qword */
	uint64_t address;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_gas) == 12, "GAS is 12 bytes (ACPI 6.5 §5.2.3.2)");

#define ACPI_GAS_SYSTEM_IO 1
#define ACPI_GAS_ACCESS_BYTE 1
#define ACPI_GAS_ACCESS_WORD 2
#define ACPI_GAS_ACCESS_DWORD 3

/* Fixed ACPI Description Table, revision 6, ACPI 6.5 §5.2.9. */
struct acpi_fadt {
	struct acpi_header h; /* "FACP" */
	uint32_t firmware_ctrl; /* FACS */
	uint32_t dsdt;
	uint8_t reserved0;
	uint8_t preferred_pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd; /* 0: no SMI, always in ACPI mode */
	uint8_t acpi_enable;
	uint8_t acpi_disable;
	uint8_t s4bios_req;
	uint8_t pstate_cnt;
	uint32_t pm1a_evt_blk;
	uint32_t pm1b_evt_blk;
	uint32_t pm1a_cnt_blk;
	uint32_t pm1b_cnt_blk;
	uint32_t pm2_cnt_blk;
	uint32_t pm_tmr_blk;
	uint32_t gpe0_blk;
	uint32_t gpe1_blk;
	uint8_t pm1_evt_len;
	uint8_t pm1_cnt_len;
	uint8_t pm2_cnt_len;
	uint8_t pm_tmr_len;
	uint8_t gpe0_blk_len;
	uint8_t gpe1_blk_len;
	uint8_t gpe1_base;
	uint8_t cst_cnt;
	uint16_t p_lvl2_lat;
	uint16_t p_lvl3_lat;
	uint16_t flush_size;
	uint16_t flush_stride;
	uint8_t duty_offset;
	uint8_t duty_width;
	uint8_t day_alrm;
	uint8_t mon_alrm;
	uint8_t century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl;
	uint64_t x_dsdt;
	struct acpi_gas x_pm1a_evt_blk;
	struct acpi_gas x_pm1b_evt_blk;
	struct acpi_gas x_pm1a_cnt_blk;
	struct acpi_gas x_pm1b_cnt_blk;
	struct acpi_gas x_pm2_cnt_blk;
	struct acpi_gas x_pm_tmr_blk;
	struct acpi_gas x_gpe0_blk;
	struct acpi_gas x_gpe1_blk;
	struct acpi_gas sleep_control_reg;
	struct acpi_gas sleep_status_reg;
	uint64_t hypervisor_vendor_id;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_fadt) == 276, "FADT rev 6 is 276 bytes (ACPI 6.5 §5.2.9)");

/* FADT Fixed Feature Flags, ACPI 6.5 §5.2.9. */
#define ACPI_FADT_WBINVD (1u << 0)
#define ACPI_FADT_PROC_C1 (1u << 2)
#define ACPI_FADT_PWR_BUTTON (1u << 4) /* set: no fixed-hardware power button */
#define ACPI_FADT_SLP_BUTTON (1u << 5) /* set: no fixed-hardware sleep button */
#define ACPI_FADT_TMR_VAL_EXT (1u << 8)
#define ACPI_FADT_RESET_REG_SUP (1u << 10)
#define ACPI_FADT_HW_REDUCED (1u << 20)

/* IA-PC Boot Architecture Flags, ACPI 6.5 §5.2.9.3. */
#define ACPI_BOOT_LEGACY_DEVICES (1u << 0)
#define ACPI_BOOT_8042 (1u << 1)
#define ACPI_BOOT_NO_VGA (1u << 2)

/* Firmware ACPI Control Structure, ACPI 6.5 §5.2.10. No
 * checksum; must be 64-byte aligned. */
struct acpi_facs {
	char signature[4]; /* "FACS" */
	uint32_t length;   /* 64 */
	uint32_t hardware_signature;
	uint32_t firmware_waking_vector;
	uint32_t global_lock;
	uint32_t flags;
	uint64_t x_firmware_waking_vector;
	uint8_t version; /* 2 */
	uint8_t reserved0[3];
	uint32_t ospm_flags;
	uint8_t reserved1[24];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_facs) == 64, "FACS is 64 bytes (ACPI 6.5 §5.2.10)");

/* Multiple APIC Description Table, ACPI 6.5 §5.2.12. */
struct acpi_madt {
	struct acpi_header h; /* "APIC" */
	uint32_t lapic_addr;
	uint32_t flags; /* ACPI_MADT_PCAT_COMPAT */
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt) == 44, "MADT header is 44 bytes (ACPI 6.5 §5.2.12)");

#define ACPI_MADT_PCAT_COMPAT (1u << 0) /* 8259s present: the OS masks them */

/* MADT Interrupt Controller Structure types, ACPI 6.5 §5.2.12. */
#define ACPI_MADT_LAPIC 0
#define ACPI_MADT_IOAPIC 1
#define ACPI_MADT_ISO 2

/* Processor Local APIC Structure, ACPI 6.5 §5.2.12.2. */
struct acpi_madt_lapic {
	uint8_t type;	/* 0 */
	uint8_t length; /* 8 */
	uint8_t processor_uid; /* matches the processor Device's _UID */
	uint8_t apic_id;
	uint32_t flags; /* ACPI_MADT_LAPIC_ENABLED */
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_lapic) == 8, "LAPIC entry is 8 bytes (ACPI 6.5 §5.2.12.2)");

#define ACPI_MADT_LAPIC_ENABLED (1u << 0)

/* I/O APIC Structure, ACPI 6.5 §5.2.12.3. */
struct acpi_madt_ioapic {
	uint8_t type;	/* 1 */
	uint8_t length; /* 12 */
	uint8_t ioapic_id;
	uint8_t reserved;
	uint32_t address;
	uint32_t gsi_base;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_ioapic) == 12, "IOAPIC entry is 12 bytes (ACPI 6.5 §5.2.12.3)");

/* Interrupt Source Override Structure, ACPI 6.5 §5.2.12.5. */
struct acpi_madt_iso {
	uint8_t type;	/* 2 */
	uint8_t length; /* 10 */
	uint8_t bus;	/* 0: ISA */
	uint8_t source; /* ISA IRQ */
	uint32_t gsi;
	uint16_t flags; /* MPS INTI flags, §5.2.12.5 */
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_madt_iso) == 10, "ISO entry is 10 bytes (ACPI 6.5 §5.2.12.5)");

/* MPS INTI flags, ACPI 6.5 §5.2.12.5. 0 = conforms to the bus (ISA: edge,
 * active-high). */
#define ACPI_MPS_ACTIVE_HIGH 0x1
#define ACPI_MPS_ACTIVE_LOW 0x3
#define ACPI_MPS_EDGE (0x1 << 2)
#define ACPI_MPS_LEVEL (0x3 << 2)

/* MCFG (PCI Firmware 3.2 §4.1.2): header, 8 reserved bytes, then one
 * allocation per ECAM region. */
struct acpi_mcfg_alloc {
	uint64_t base;
	uint16_t segment;
	uint8_t start_bus;
	uint8_t end_bus;
	uint32_t reserved;
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg_alloc) == 16, "MCFG allocation is 16 bytes");

struct acpi_mcfg {
	struct acpi_header h; /* "MCFG" */
	uint64_t reserved;
	struct acpi_mcfg_alloc alloc[1];
} __attribute__((packed));
_Static_assert(sizeof(struct acpi_mcfg) == 60, "MCFG with one allocation is 60 bytes");

#endif
