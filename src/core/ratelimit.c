/* Token buckets (ratelimit.h). Tokens are doubles: a rate need not divide
 * into whole tokens per nanosecond, and 2^53 tokens is far beyond any
 * bucket. */
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/ratelimit.h"

#define RATE_REFILL_MS 100 /* a bare rate: a tenth of a second's worth */

void rl_init(struct rate_limiter *rl)
{
	memset(rl, 0, sizeof(*rl));
	pthread_mutex_init(&rl->lock, NULL);
}

void rl_destroy(struct rate_limiter *rl)
{
	pthread_mutex_destroy(&rl->lock);
}

void rl_set(struct rate_limiter *rl, int kind, const struct tb_config *c)
{
	struct tb *b = &rl->b[kind];

	pthread_mutex_lock(&rl->lock);
	b->c = *c;
	b->budget = (double)c->size;
	b->burst = (double)c->one_time_burst;
	b->last_ns = monotonic_ns();
	pthread_mutex_unlock(&rl->lock);
}

bool rl_active(struct rate_limiter *rl)
{
	bool on;

	pthread_mutex_lock(&rl->lock);
	on = rl->b[RL_BYTES].c.size || rl->b[RL_OPS].c.size;
	pthread_mutex_unlock(&rl->lock);
	return on;
}

/* Tokens per nanosecond. */
static double tb_rate(const struct tb *b)
{
	return (double)b->c.size / ((double)b->c.refill_ms * 1e6);
}

/* Bring b's budget up to now: it fills at its rate up to size. */
static void tb_refill(struct tb *b, uint64_t now)
{
	b->budget += (double)(now - b->last_ns) * tb_rate(b);
	if (b->budget > (double)b->c.size)
		b->budget = (double)b->c.size;
	b->last_ns = now;
}

uint64_t rl_wait_ns(struct rate_limiter *rl)
{
	uint64_t now = monotonic_ns(), wait = 0;

	pthread_mutex_lock(&rl->lock);
	for (int k = 0; k < RL_KINDS; k++) {
		struct tb *b = &rl->b[k];
		uint64_t w;

		if (!b->c.size || b->burst > 0)
			continue;
		tb_refill(b, now);
		if (b->budget > 0)
			continue;
		/* Until the debt is paid and a sliver more. */
		w = (uint64_t)ceil(-b->budget / tb_rate(b)) + 1000;
		if (w > wait)
			wait = w;
	}
	if (wait)
		rl->throttled++;
	pthread_mutex_unlock(&rl->lock);
	return wait;
}

void rl_charge(struct rate_limiter *rl, uint64_t bytes, uint64_t ops)
{
	uint64_t now = monotonic_ns();

	pthread_mutex_lock(&rl->lock);
	for (int k = 0; k < RL_KINDS; k++) {
		struct tb *b = &rl->b[k];
		double cost = (double)(k == RL_BYTES ? bytes : ops), from_burst;

		if (!b->c.size || !cost)
			continue;
		tb_refill(b, now);
		from_burst = cost < b->burst ? cost : b->burst;
		b->burst -= from_burst;
		b->budget -= cost - from_burst;
	}
	pthread_mutex_unlock(&rl->lock);
}

/* "123", "1.5", "10": a non-negative decimal; *end after it. */
static int parse_number(const char *s, double *v, const char **end)
{
	char *e;

	if (!isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*v = strtod(s, &e);
	if (errno || !isfinite(*v) || *v < 0)
		return -EINVAL;
	*end = e;
	return 0;
}

/* A rate: NUMBER[K|M|G[i]][B|bit][/s], per second, in bytes (or ops). */
static int parse_rate(const char *s, double *per_s)
{
	static const char units[] = "KMG";
	const char *p, *u;
	double v, mult = 1;

	if (parse_number(s, &v, &p))
		return -EINVAL;
	if (*p && (u = strchr(units, toupper((unsigned char)*p)))) {
		int power = (int)(u - units) + 1;

		p++;
		if (*p == 'i') {
			mult = pow(1024, power);
			p++;
		} else {
			mult = pow(1000, power);
		}
	}
	if (!strncmp(p, "bit", 3)) {
		mult /= 8;
		p += 3;
	} else if (*p == 'B') {
		p++;
	}
	if (!strcmp(p, "/s"))
		p += 2;
	if (*p)
		return -EINVAL;
	*per_s = v * mult;
	return 0;
}

int rl_parse(const char *s, struct tb_config *c, char *err, size_t len)
{
	uint64_t n[3] = { 0, 0, 0 };
	const char *p = s;
	int k = 0;

	memset(c, 0, sizeof(*c));
	if (strchr(s, ':')) {
		/* SIZE:REFILL_MS[:ONE_TIME_BURST] */
		for (;;) {
			char *e;

			if (!isdigit((unsigned char)*p))
				break;
			errno = 0;
			n[k++] = strtoull(p, &e, 10);
			if (errno)
				break;
			p = e;
			if (!*p || *p != ':' || k == 3)
				break;
			p++;
		}
		if (*p || k < 2 || (n[0] && !n[1])) {
			snprintf(err, len, "'%s': expected SIZE:REFILL_MS[:ONE_TIME_BURST] (refill time above 0 ms)",
				 s);
			return -EINVAL;
		}
		c->size = n[0];
		c->refill_ms = n[1];
		c->one_time_burst = n[2];
		return 0;
	}
	/* RATE[+BURST]: the burst an amount in the rate's units, once. */
	double rate, burst = 0;
	const char *plus = strchr(s, '+');
	char head[64];

	if (plus && (size_t)(plus - s) < sizeof(head)) {
		memcpy(head, s, (size_t)(plus - s));
		head[plus - s] = 0;
	}
	if ((plus && ((size_t)(plus - s) >= sizeof(head) || strstr(plus, "/s") ||
		      parse_rate(plus + 1, &burst) || burst > 1e15)) ||
	    parse_rate(plus ? head : s, &rate) || rate > 1e15) {
		snprintf(err, len,
			 "'%s': expected a rate such as 10MB/s, 50Mbit/s or 500, with +BURST if one "
			 "(10MB/s+50MB), or SIZE:REFILL_MS[:BURST]",
			 s);
		return -EINVAL;
	}
	c->one_time_burst = rate > 0 ? (uint64_t)llround(burst) : 0;
	if (rate > 0) {
		/* A tenth of a second's worth, or one token and the time it
		 * takes for rates under 10 a second. */
		c->size = (uint64_t)llround(rate * RATE_REFILL_MS / 1000);
		if (!c->size)
			c->size = 1;
		c->refill_ms = (uint64_t)llround((double)c->size * 1000 / rate);
		if (!c->refill_ms)
			c->refill_ms = 1;
	}
	return 0;
}

void rl_format(const struct tb_config *c, char *buf, size_t len)
{
	snprintf(buf, len, "%" PRIu64 ":%" PRIu64 ":%" PRIu64, c->size, c->refill_ms, c->one_time_burst);
}

/* opt's key among keys[], or NULL; *val after the '='. */
static const struct rl_key *rl_find(const char *opt, const struct rl_key *keys, unsigned n, const char **val)
{
	for (unsigned i = 0; i < n; i++) {
		size_t l = strlen(keys[i].name);

		if (!strncmp(opt, keys[i].name, l) && opt[l] == '=') {
			*val = opt + l + 1;
			return &keys[i];
		}
	}
	return NULL;
}

int rl_option(const char *opt, const struct rl_key *keys, unsigned n, char *err, size_t len)
{
	const struct rl_key *k;
	struct tb_config c;
	const char *val;
	char why[160];

	if (!(k = rl_find(opt, keys, n, &val)))
		return 0;
	if (rl_parse(val, &c, why, sizeof(why))) {
		snprintf(err, len, "%s: %s", k->name, why);
		return -EINVAL;
	}
	rl_set(k->rl, k->kind, &c);
	return 1;
}

int rl_options(const char *spec, const struct rl_key *keys, unsigned n, char *err, size_t len)
{
	char buf[512], *save, *opt;
	const struct rl_key *k;
	const char *val;
	struct tb_config c;
	char why[160];

	if (strlen(spec) >= sizeof(buf)) {
		snprintf(err, len, "limits: too long");
		return -EINVAL;
	}
	/* First check them all, then set them. */
	for (int pass = 0; pass < 2; pass++) {
		strcpy(buf, spec);
		for (opt = strtok_r(buf, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
			if (pass) {
				rl_option(opt, keys, n, err, len);
				continue;
			}
			if (!(k = rl_find(opt, keys, n, &val))) {
				int at = snprintf(err, len, "'%s': not a limit here (", opt);

				for (unsigned i = 0; i < n && at >= 0 && (size_t)at < len; i++)
					at += snprintf(err + at, len - (size_t)at, "%s%s=", i ? ", " : "", keys[i].name);
				if (at >= 0 && (size_t)at < len)
					snprintf(err + at, len - (size_t)at, ")");
				return -EINVAL;
			}
			if (rl_parse(val, &c, why, sizeof(why))) {
				snprintf(err, len, "%s: %s", k->name, why);
				return -EINVAL;
			}
		}
	}
	return 0;
}
