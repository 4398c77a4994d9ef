/* Logging with levels; debug lines carry file:line. Anything a guest can
 * trigger goes through log_ratelimited() so a guest cannot flood the host log. */
#ifndef TARN_LOG_H
#define TARN_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_ERR, LOG_WARN, LOG_INFO, LOG_DEBUG };

extern enum log_level log_threshold;
/* The program name messages start with ("tarn", "tarnd", "tarnctl"). */
extern const char *log_prog;

void log_msg(enum log_level lvl, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* Token bucket shared by all call sites of one rate-limit state. Returns true
 * when a line may be printed now: at most LOG_RATELIMIT_BURST per window of
 * LOG_RATELIMIT_WINDOW_NS. The first call in a later window first prints
 * "tarn: warning: N similar messages suppressed" for the N refused before. */
#define LOG_RATELIMIT_BURST 10
#define LOG_RATELIMIT_WINDOW_NS 1000000000ULL
struct ratelimit {
	uint64_t window_start_ns;
	unsigned printed;
	unsigned suppressed;
};
bool ratelimit_ok(struct ratelimit *rl);

/* For tests: the rate limiter's windows run on now_ns() instead of
 * CLOCK_MONOTONIC (NULL restores it), so a test decides when one ends and
 * checks the limit exactly, however slow the host. Call it before any
 * thread logs; now_ns is called from any thread. */
void log_set_ratelimit_clock(uint64_t (*now_ns)(void));

#define pr_err(...) log_msg(LOG_ERR, __FILE__, __LINE__, __VA_ARGS__)
#define pr_warn(...) log_msg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__)
#define pr_info(...) log_msg(LOG_INFO, __FILE__, __LINE__, __VA_ARGS__)
#define pr_debug(...)                                                         \
	do {                                                                  \
		if (log_threshold >= LOG_DEBUG)                               \
			log_msg(LOG_DEBUG, __FILE__, __LINE__, __VA_ARGS__);  \
	} while (0)

/* For guest-triggerable messages: at most a burst per second per call site. */
#define pr_warn_ratelimited(...)                                              \
	do {                                                                  \
		static struct ratelimit rl_;                                  \
		if (ratelimit_ok(&rl_))                                       \
			log_msg(LOG_WARN, __FILE__, __LINE__, __VA_ARGS__);   \
	} while (0)

/* Write a one-line reason into err[len] and return ret (a -errno): the
 * failure path of every "0, or -errno with a reason in err" function. */
int errorf(char *err, size_t len, int ret, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Start-up only: print "<log_prog>: <msg>" and exit with status 2. Never on guest input. */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
