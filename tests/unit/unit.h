/* Common includes for cmocka unit tests. */
#ifndef TARN_UNIT_H
#define TARN_UNIT_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <cmocka.h>

/* Skip with a reason the runner shows (cmocka's TAP output drops it). */
#define SKIP_BECAUSE(...)                                                     \
	do {                                                                  \
		printf("# SKIP: ");                                           \
		printf(__VA_ARGS__);                                          \
		printf("\n");                                                 \
		fflush(stdout);                                               \
		skip();                                                       \
	} while (0)

#endif
