/* Common includes for cmocka unit tests. */
#ifndef TARN_UNIT_H
#define TARN_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

/* Skip with a reason. cmocka's TAP line for a skip ("not ok N # SKIP name")
 * has no room for one, so it goes on the line before as "# SKIP: reason",
 * where tests/run.sh looks for it. */
#define SKIP_BECAUSE(...)                                                     \
	do {                                                                  \
		printf("# SKIP: ");                                           \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		fflush(stdout);                                               \
		skip();                                                       \
	} while (0)

/* xorshift64*: reproducible pseudo-random numbers for tests (and the
 * seed in a failure message replays them); *state must not be 0. */
static inline uint64_t unit_rnd(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545f4914f6cdd1dULL;
}

#endif
