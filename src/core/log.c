#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"

enum log_level log_threshold = LOG_WARN;

const char *log_prog = "tarn";

static const char *const level_names[] = {
	[LOG_ERR] = "error", [LOG_WARN] = "warning", [LOG_INFO] = "info", [LOG_DEBUG] = "debug",
};

void log_msg(enum log_level lvl, const char *file, int line, const char *fmt, ...)
{
	char buf[512];
	va_list ap;

	if (lvl > log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	/* One fprintf per line so lines from different threads do not interleave. */
	if (log_threshold >= LOG_DEBUG)
		fprintf(stderr, "%s: %s: %s (%s:%d)\n", log_prog, level_names[lvl], buf, file, line);
	else
		fprintf(stderr, "%s: %s: %s\n", log_prog, level_names[lvl], buf);
}

static uint64_t (*ratelimit_clock)(void) = monotonic_ns;

void log_set_ratelimit_clock(uint64_t (*now_ns)(void))
{
	ratelimit_clock = now_ns ? now_ns : monotonic_ns;
}

bool ratelimit_ok(struct ratelimit *rl)
{
	uint64_t now = ratelimit_clock();
	bool ok;

	/* Racy across threads by design: worst case a few extra lines. */
	if (now - rl->window_start_ns >= LOG_RATELIMIT_WINDOW_NS) {
		if (rl->suppressed && log_threshold >= LOG_WARN)
			fprintf(stderr, "%s: warning: %u similar messages suppressed\n", log_prog, rl->suppressed);
		rl->window_start_ns = now;
		rl->printed = 0;
		rl->suppressed = 0;
	}
	ok = rl->printed < LOG_RATELIMIT_BURST;
	if (ok)
		rl->printed++;
	else
		rl->suppressed++;
	return ok;
}

int errorf(char *err, size_t len, int ret, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
	return ret;
}

void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", log_prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}
