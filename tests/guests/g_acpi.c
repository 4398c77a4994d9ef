/* ACPI tables found and parsed by the guest the way an OS does: scan the
 * BIOS area for the RSDP, check checksums, walk the XSDT, count the MADT's
 * processors, follow FADT -> DSDT, then power off through PM1a_CNT with the
 * SLP_TYP that \_S5 declares. */
#include "lib/acpi.h"

static uint8_t sum8(const void *p, uint32_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

/* Find "_S5_" in the DSDT and read SLP_TYPa: Name(_S5_, Package(){a, b, ...}) */
static int s5_slp_typ(const struct sdt *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt;

	for (uint32_t i = sizeof(*dsdt); i + 8 < dsdt->len; i++) {
		if (memcmp(p + i, "_S5_", 4))
			continue;
		const uint8_t *q = p + i + 4;
		if (*q++ != 0x12) /* PackageOp */
			return -1;
		q += (*q >> 6) + 1; /* PkgLength */
		q++;		    /* NumElements */
		if (*q == 0x0a)	    /* BytePrefix */
			return q[1];
		return *q == 0x00 ? 0 : *q == 0x01 ? 1 : -1;
	}
	return -1;
}

void guest_main(unsigned cpu, uint64_t arg)
{
	const uint8_t *rsdp;
	const struct sdt *xsdt, *madt, *fadt, *dsdt;
	uint32_t lapics = 0, ioapics = 0;

	/* The VM has 2 vCPUs (for the MADT count); only the BSP reports. */
	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");

	rsdp = acpi_find_rsdp();
	GUEST_ASSERT(rsdp);
	GUEST_ASSERT_EQ(sum8(rsdp, 20), 0);
	GUEST_ASSERT_EQ(rsdp[15], 2); /* revision */
	GUEST_ASSERT_EQ(sum8(rsdp, 36), 0);
	xsdt = acpi_xsdt(rsdp);
	GUEST_ASSERT(!memcmp(xsdt->sig, "XSDT", 4));
	GUEST_ASSERT_EQ(sum8(xsdt, xsdt->len), 0);

	madt = acpi_find_table(xsdt, "APIC");
	GUEST_ASSERT(madt);
	GUEST_ASSERT_EQ(sum8(madt, madt->len), 0);
	for (const uint8_t *e = (const uint8_t *)madt + 44; e < (const uint8_t *)madt + madt->len; e += e[1]) {
		GUEST_ASSERT(e[1] >= 2);
		if (e[0] == 0 && (e[4] & 1))
			lapics++;
		if (e[0] == 1)
			ioapics++;
	}
	fadt = acpi_find_table(xsdt, "FACP");
	GUEST_ASSERT(fadt);
	GUEST_ASSERT_EQ(sum8(fadt, fadt->len), 0);
	dsdt = (const struct sdt *)(uintptr_t)*(const uint64_t *)((const uint8_t *)fadt + 140);
	GUEST_ASSERT(!memcmp(dsdt->sig, "DSDT", 4));
	GUEST_ASSERT_EQ(sum8(dsdt, dsdt->len), 0);
	int typ = s5_slp_typ(dsdt);
	GUEST_ASSERT(typ >= 0);
	uint32_t pm1a_cnt = *(const uint32_t *)((const uint8_t *)fadt + 64);
	GUEST_SYNC4(lapics, ioapics, (uint64_t)typ, pm1a_cnt);
	/* Power off as an OS would: SLP_TYP | SLP_EN. */
	outw((uint16_t)pm1a_cnt, (uint16_t)(typ << 10 | 1 << 13));
	GUEST_ASSERT(0);
}
