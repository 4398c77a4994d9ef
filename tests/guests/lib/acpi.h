/* Finding ACPI tables from a micro-guest, as an OS does: the RSDP in the
 * BIOS area (0xE0000-0xFFFFF), then the XSDT's entries. */
#ifndef TARN_GUEST_ACPI_H
#define TARN_GUEST_ACPI_H

#include "lib/guest.h"

struct sdt {
	char sig[4];
	uint32_t len;
	uint8_t rev, sum;
	char oem[6], table[8];
	uint32_t oemrev, creator, crev;
} __attribute__((packed));

/* The RSDP, or 0. */
static inline const uint8_t *acpi_find_rsdp(void)
{
	for (uint64_t a = 0xe0000; a < 0x100000; a += 16)
		if (!memcmp((void *)a, "RSD PTR ", 8))
			return (const uint8_t *)a;
	return 0;
}

static inline const struct sdt *acpi_xsdt(const uint8_t *rsdp)
{
	return (const struct sdt *)(uintptr_t)*(const uint64_t *)(rsdp + 24);
}

/* The XSDT entry with this signature, or 0. */
static inline const struct sdt *acpi_find_table(const struct sdt *xsdt, const char *sig)
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

#endif
