/* Token-bucket rate limiters for the I/O devices, with Firecracker's
 * semantics so that the same numbers mean the same thing:
 *
 *   size            tokens the bucket holds (bytes, or operations)
 *   refill_time     ms in which an empty bucket fills up again; the rate
 *                   is size / refill_time
 *   one_time_burst  tokens spent before the bucket's, once, never refilled
 *
 * A bucket starts full. A limiter has two: bandwidth (bytes) and
 * operations (requests, or frames); size 0 leaves that one unlimited. A
 * request goes when neither bucket is empty, and then pays what it cost;
 * a request dearer than what is left (or than the whole bucket) leaves the
 * bucket in debt, and the next one waits until the debt is paid. That is
 * Firecracker's over-consumption rule: over any long stretch the rate is
 * size / refill_time, bursts are at most size + one_time_burst.
 *
 * Spec syntax (--disk and --net options): a rate, "10MB/s", "50Mbit/s",
 * "500" (per second; K M G are 1000s, Ki Mi Gi 1024s; "bit" is an eighth
 * of a byte), which means refill_time 100 ms and size a tenth of the rate;
 * or Firecracker's three numbers, "SIZE:REFILL_MS[:ONE_TIME_BURST]".
 * "0" takes the limit away. */
#ifndef TARN_RATELIMIT_H
#define TARN_RATELIMIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct tb_config {
	uint64_t size;		 /* 0: no limit */
	uint64_t refill_ms;	 /* > 0 when size is */
	uint64_t one_time_burst;
};

enum { RL_BYTES, RL_OPS, RL_KINDS };

struct rate_limiter {
	pthread_mutex_t lock;
	struct tb {
		struct tb_config c;
		double budget, burst; /* tokens; budget below 0 is debt */
		uint64_t last_ns;     /* budget as of then */
	} b[RL_KINDS];
	uint64_t throttled; /* times a request had to wait (metrics) */
};

void rl_init(struct rate_limiter *rl);
void rl_destroy(struct rate_limiter *rl);
/* Replace one bucket (full again, with its burst), as Firecracker's
 * update does. */
void rl_set(struct rate_limiter *rl, int kind, const struct tb_config *c);
/* Is any bucket limited? */
bool rl_active(struct rate_limiter *rl);
/* Nanoseconds until the next request may go; 0: now. Counts a throttle
 * when it says wait. */
uint64_t rl_wait_ns(struct rate_limiter *rl);
/* A request went: it costs bytes and ops tokens. */
void rl_charge(struct rate_limiter *rl, uint64_t bytes, uint64_t ops);

/* Parse a spec value (syntax above) into c. 0, or -EINVAL with the
 * reason in err. */
int rl_parse(const char *s, struct tb_config *c, char *err, size_t len);
/* A device's limit options: "bw" sets rl's RL_BYTES bucket, ... */
struct rl_key {
	const char *name;
	struct rate_limiter *rl;
	int kind;
};
/* If opt is NAME=VALUE for one of keys[0..n), set that bucket: 1. Not a
 * limit option: 0. A bad value: -EINVAL, the reason in err. */
int rl_option(const char *opt, const struct rl_key *keys, unsigned n, char *err, size_t len);
/* Every option of "NAME=VALUE[,NAME=VALUE...]" a limit of keys[]; all or
 * none set (a runtime change). 0 or -EINVAL, the reason in err. */
int rl_options(const char *spec, const struct rl_key *keys, unsigned n, char *err, size_t len);

/* The bucket as a spec value, "SIZE:REFILL_MS:ONE_TIME_BURST", into buf. */
void rl_format(const struct tb_config *c, char *buf, size_t len);

#endif
