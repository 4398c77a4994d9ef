/* The host's monotonic clock in nanoseconds, which device timers, log rate
 * limits and the emulator's TSC all run on. */
#ifndef TARN_CLOCK_H
#define TARN_CLOCK_H

#include <stdint.h>
#include <time.h>

#define NS_PER_SEC 1000000000ULL

static inline uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

#endif
