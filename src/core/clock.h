/* The host's monotonic clock in nanoseconds, and a VM's clock built on it,
 * which the emulator's TSC and the device timers run on. */
#ifndef TARN_CLOCK_H
#define TARN_CLOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#define NS_PER_SEC 1000000000ULL

static inline uint64_t monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* A VM's clock: the host's monotonic clock less the time the VM spent
 * paused. It stands still while the VM is paused, so that the guest's
 * timers and clocks carry on from where they were when it resumes. */
struct guest_clock {
	_Atomic uint64_t shift;	 /* ns spent paused */
	_Atomic uint64_t frozen; /* while paused the guest's time + 1; 0 running */
};

static inline uint64_t guest_clock_ns(const struct guest_clock *c)
{
	uint64_t f = atomic_load_explicit(&c->frozen, memory_order_acquire);

	return f ? f - 1 : monotonic_ns() - atomic_load_explicit(&c->shift, memory_order_relaxed);
}

static inline bool guest_clock_stopped(const struct guest_clock *c)
{
	return atomic_load_explicit(&c->frozen, memory_order_acquire) != 0;
}

/* The host's monotonic time at which the running clock reads t (host
 * timers for guest deadlines). */
static inline uint64_t guest_clock_host_ns(const struct guest_clock *c, uint64_t t)
{
	return t + atomic_load_explicit(&c->shift, memory_order_relaxed);
}

/* Stop the clock (pause) and start it again where it stood (resume).
 * Called by one thread at a time (vm_pause, vm_resume). */
static inline void guest_clock_stop(struct guest_clock *c)
{
	atomic_store_explicit(&c->frozen, guest_clock_ns(c) + 1, memory_order_release);
}

static inline void guest_clock_start(struct guest_clock *c)
{
	uint64_t f = atomic_load_explicit(&c->frozen, memory_order_relaxed);

	if (!f)
		return;
	atomic_store_explicit(&c->shift, monotonic_ns() - (f - 1), memory_order_relaxed);
	atomic_store_explicit(&c->frozen, 0, memory_order_release);
}

#endif
