/* The 64-bit boot protocol: RSI holds boot_params with our command line and
 * an e820 map describing the RAM (below the hole and above 4 GiB). */
#include "lib/guest.h"

struct e820 {
	uint64_t addr, size;
	uint32_t type;
} __attribute__((packed));

void guest_main(unsigned cpu, uint64_t bp)
{
	const uint8_t *zp = (const uint8_t *)bp;
	const struct e820 *e = (const struct e820 *)(zp + 0x2d0);
	uint64_t ram = 0, above4g = 0;
	const char *cmdline;

	GUEST_ASSERT(bp);
	GUEST_ASSERT_EQ(*(const uint16_t *)(zp + 0x1fe), 0xaa55);
	cmdline = (const char *)(uintptr_t)*(const uint32_t *)(zp + 0x228);
	GUEST_ASSERT(!memcmp(cmdline, "tarn.test=boot_params", 22));
	for (int i = 0; i < zp[0x1e8]; i++) {
		if (e[i].type != 1)
			continue;
		ram += e[i].size;
		if (e[i].addr >= 0x100000000ULL)
			above4g += e[i].size;
	}
	/* RSDP address for the kernel (protocol 2.14). */
	GUEST_ASSERT_EQ(*(const uint64_t *)(zp + 0x70), 0xe0000);
	GUEST_SYNC(ram, above4g);
}
