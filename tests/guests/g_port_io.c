/* Port I/O exits reach a device the host test registered (at 0x510: a
 * register that reads back the last write XOR 0xa5a5a5a5; at 0x514 a byte
 * stream), in every width
 * and through rep outsb/insb. */
#include "lib/guest.h"

#define TEST_PORT 0x510

void guest_main(unsigned cpu, uint64_t arg)
{
	static uint8_t out[8] = "tarn-io", in[8];

	outb(TEST_PORT, 0x12);
	GUEST_ASSERT_EQ(inb(TEST_PORT), 0x12 ^ 0xa5);
	outw(TEST_PORT, 0x1234);
	GUEST_ASSERT_EQ(inw(TEST_PORT), 0x1234 ^ 0xa5a5);
	outl(TEST_PORT, 0xdeadbeef);
	GUEST_ASSERT_EQ(inl(TEST_PORT), 0xdeadbeef ^ 0xa5a5a5a5);
	/* String I/O: the host sees every byte, in order. */
	{
		const uint8_t *src = out;
		uint64_t n = 7;
		__asm__ volatile("rep outsb" : "+S"(src), "+c"(n) : "d"((uint16_t)(TEST_PORT + 4)) : "memory");
	}
	{
		uint8_t *dst = in;
		uint64_t n = 4;
		__asm__ volatile("rep insb" : "+D"(dst), "+c"(n) : "d"((uint16_t)(TEST_PORT + 4)) : "memory");
	}
	/* The host's string port returns 'a', 'b', 'c', 'd'. */
	GUEST_ASSERT(in[0] == 'a' && in[1] == 'b' && in[2] == 'c' && in[3] == 'd');
	/* An unclaimed port reads all-ones. */
	GUEST_ASSERT_EQ(inb(0x5ff), 0xff);
}
