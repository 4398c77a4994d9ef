/* PCI as firmware or an OS meets it: enumerate bus 0 through the CF8/CFC
 * ports and through ECAM (found via the MCFG table), find the host bridge
 * and the runner's test device, size and move its BAR0, talk to it through
 * the new address, and take an MSI-X interrupt on a vector of our choice. */
#include "lib/acpi.h"

#define TEST_VENDOR 0x7a72 /* the runner's test device (tests/guests/runner.c) */
#define TEST_DEVICE 0x0001
#define HOST_ID 0x0d578086u
#define NEW_BAR0 0xc1000000u /* inside the root's MMIO window (_CRS) */
#define VEC 0x51

static uint64_t ecam_base;
static volatile int hits;

static uint32_t cf8_read32(unsigned slot, unsigned reg)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	return inl(0xcfc);
}

static void cf8_write32(unsigned slot, unsigned reg, uint32_t v)
{
	outl(0xcf8, 0x80000000u | slot << 11 | (reg & 0xfc));
	outl(0xcfc, v);
}

static uint32_t ecam_read32(unsigned slot, unsigned reg)
{
	return mmio_read32(ecam_base + (slot << 15) + reg);
}

static void ecam_write16(unsigned slot, unsigned reg, uint16_t v)
{
	mmio_write16(ecam_base + (slot << 15) + reg, v);
}

static uint64_t find_mcfg_ecam(void)
{
	const uint8_t *rsdp = acpi_find_rsdp();
	const uint8_t *t;

	GUEST_ASSERT(rsdp);
	t = (const uint8_t *)acpi_find_table(acpi_xsdt(rsdp), "MCFG");
	GUEST_ASSERT(t);
	/* header, 8 reserved, then {base u64, segment u16, start bus, end bus, u32} */
	GUEST_ASSERT_EQ(*(const uint16_t *)(t + 44 + 8), 0); /* segment */
	GUEST_ASSERT_EQ(t[44 + 10], 0);			     /* start bus */
	return *(const uint64_t *)(t + 44);
}

static void on_msi(struct irq_frame *f)
{
	hits++;
	lapic_eoi();
}

void guest_main(unsigned cpu, uint64_t arg)
{
	unsigned test_slot = 0, present = 0;

	ecam_base = find_mcfg_ecam();
	GUEST_ASSERT(ecam_base);

	/* Both mechanisms see the same bus. */
	for (unsigned slot = 0; slot < 32; slot++) {
		uint32_t id = cf8_read32(slot, 0);

		GUEST_ASSERT_EQ(id, ecam_read32(slot, 0));
		if (id == 0xffffffff)
			continue;
		present++;
		GUEST_ASSERT_EQ(cf8_read32(slot, 8), ecam_read32(slot, 8));
		if (id == (TEST_DEVICE << 16 | TEST_VENDOR))
			test_slot = slot;
	}
	GUEST_ASSERT_EQ(cf8_read32(0, 0), HOST_ID);
	GUEST_ASSERT_EQ(cf8_read32(0, 8) >> 16, 0x0600); /* bridge, host */
	GUEST_ASSERT_EQ(present, 2);
	GUEST_ASSERT(test_slot);

	/* Size BAR0 with decoding off, then place it ourselves. */
	uint32_t old = cf8_read32(test_slot, 0x10);
	ecam_write16(test_slot, 0x04, 0);
	cf8_write32(test_slot, 0x10, 0xffffffff);
	uint32_t size = ~(cf8_read32(test_slot, 0x10) & ~0xfu) + 1;
	cf8_write32(test_slot, 0x10, NEW_BAR0);
	GUEST_ASSERT_EQ(cf8_read32(test_slot, 0x10), NEW_BAR0);
	ecam_write16(test_slot, 0x04, 0x0002); /* memory space on */
	GUEST_ASSERT_EQ(mmio_read32(old), 0xffffffff);
	mmio_write32(NEW_BAR0, 0x1234);
	GUEST_ASSERT_EQ(mmio_read32(NEW_BAR0 + 4), 0x1235);

	/* MSI-X: walk the capability list to it. */
	unsigned cap = cf8_read32(test_slot, 0x34) & 0xff;
	while (cap && (cf8_read32(test_slot, cap) & 0xff) != 0x11)
		cap = (cf8_read32(test_slot, cap) >> 8) & 0xff;
	GUEST_ASSERT(cap);
	uint32_t tbl = ecam_read32(test_slot, cap + 4);
	uint64_t bar = cf8_read32(test_slot, 0x10 + 4 * (tbl & 7)) & ~0xfull;
	uint64_t entry = bar + (tbl & ~7u); /* vector 0 */

	idt_install();
	idt_set_handler(VEC, on_msi);
	lapic_enable();
	mmio_write32(entry + 0, 0xfee00000u | guest_apic_id() << 12);
	mmio_write32(entry + 4, 0);
	mmio_write32(entry + 8, VEC); /* fixed, edge */
	mmio_write32(entry + 12, 0);  /* unmask */
	ecam_write16(test_slot, 0x04, 0x0006); /* memory + bus master */
	cf8_write32(test_slot, cap, cf8_read32(test_slot, cap) | 0x80000000u); /* MSI-X enable */
	sti();
	mmio_write32(NEW_BAR0 + 8, 0); /* doorbell: the device raises vector 0 */
	for (int i = 0; i < 1000000 && !hits; i++)
		pause();
	cli();
	GUEST_ASSERT_EQ(hits, 1);
	GUEST_SYNC(hits, size);
}
