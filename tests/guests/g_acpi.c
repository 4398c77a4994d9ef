/* ACPI tables found and parsed by the guest the way an OS does: scan the
 * BIOS area for the RSDP, check checksums, walk the XSDT, count the MADT's
 * processors, follow FADT -> DSDT, then power off through PM1a_CNT with the
 * SLP_TYP that \_S5 declares. */
#include "lib/guest.h"

struct sdt {
	char sig[4];
	uint32_t len;
	uint8_t rev, sum;
	char oem[6], table[8];
	uint32_t oemrev, creator, crev;
} __attribute__((packed));

static uint8_t sum8(const void *p, uint32_t n)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (n--)
		s += *b++;
	return s;
}

static const struct sdt *find(const struct sdt *xsdt, const char *sig)
{
	uint32_t n = (xsdt->len - sizeof(*xsdt)) / 8;
	const uint64_t *e = (const uint64_t *)(xsdt + 1);

	for (uint32_t i = 0; i < n; i++) {
		const struct sdt *t = (const struct sdt *)(uintptr_t)e[i];

		if (!memcmp(t->sig, sig, 4))
			return t;
	}
	return 0;
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
	const uint8_t *rsdp = 0;
	const struct sdt *xsdt, *madt, *fadt, *dsdt;
	uint32_t lapics = 0, ioapics = 0;

	/* The VM has 2 vCPUs (for the MADT count); only the BSP reports. */
	if (cpu != 0)
		for (;;)
			__asm__ volatile("cli; hlt");

	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((void *)a, "RSD PTR ", 8)) {
			rsdp = (const uint8_t *)a;
			break;
		}
	GUEST_ASSERT(rsdp);
	GUEST_ASSERT_EQ(sum8(rsdp, 20), 0);
	GUEST_ASSERT_EQ(rsdp[15], 2); /* revision */
	GUEST_ASSERT_EQ(sum8(rsdp, 36), 0);
	xsdt = (const struct sdt *)(uintptr_t)*(const uint64_t *)(rsdp + 24);
	GUEST_ASSERT(!memcmp(xsdt->sig, "XSDT", 4));
	GUEST_ASSERT_EQ(sum8(xsdt, xsdt->len), 0);

	madt = find(xsdt, "APIC");
	GUEST_ASSERT(madt);
	GUEST_ASSERT_EQ(sum8(madt, madt->len), 0);
	for (const uint8_t *e = (const uint8_t *)madt + 44; e < (const uint8_t *)madt + madt->len; e += e[1]) {
		GUEST_ASSERT(e[1] >= 2);
		if (e[0] == 0 && (e[4] & 1))
			lapics++;
		if (e[0] == 1)
			ioapics++;
	}
	fadt = find(xsdt, "FACP");
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
