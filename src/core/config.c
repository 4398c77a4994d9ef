#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void config_init(struct config *c)
{
	memset(c, 0, sizeof(*c));
}

void config_free(struct config *c)
{
	for (int i = 0; i < c->nr; i++) {
		free(c->e[i].key);
		free(c->e[i].value);
	}
	free(c->e);
	memset(c, 0, sizeof(*c));
}

static bool key_valid(const char *key)
{
	bool seg_empty = true;

	if (!*key)
		return false;
	for (const char *p = key; *p; p++) {
		if (*p == '.') {
			if (seg_empty)
				return false;
			seg_empty = true;
		} else if (islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '_' ||
			   *p == '-') {
			seg_empty = false;
		} else {
			return false;
		}
	}
	return !seg_empty;
}

/* Index of key, or -(insertion point) - 1. */
static int config_find(const struct config *c, const char *key)
{
	int lo = 0, hi = c->nr - 1;

	while (lo <= hi) {
		int mid = lo + (hi - lo) / 2;
		int d = strcmp(key, c->e[mid].key);

		if (!d)
			return mid;
		if (d < 0)
			hi = mid - 1;
		else
			lo = mid + 1;
	}
	return -lo - 1;
}

int config_set(struct config *c, const char *key, const char *value)
{
	int i;
	char *v;

	if (!key_valid(key) || !value)
		return -EINVAL;
	v = strdup(value);
	if (!v)
		return -ENOMEM;
	i = config_find(c, key);
	if (i >= 0) {
		free(c->e[i].value);
		c->e[i].value = v;
		return 0;
	}
	i = -i - 1;
	if (c->nr == c->cap) {
		int cap = c->cap ? c->cap * 2 : 16;
		struct config_entry *n = realloc(c->e, (size_t)cap * sizeof(*n));

		if (!n)
			goto nomem;
		c->e = n;
		c->cap = cap;
	}
	memmove(&c->e[i + 1], &c->e[i], (size_t)(c->nr - i) * sizeof(c->e[0]));
	c->e[i].key = strdup(key);
	if (!c->e[i].key) {
		memmove(&c->e[i], &c->e[i + 1], (size_t)(c->nr - i) * sizeof(c->e[0]));
		goto nomem;
	}
	c->e[i].value = v;
	c->nr++;
	return 0;
nomem:
	free(v);
	return -ENOMEM;
}

const char *config_get(const struct config *c, const char *key)
{
	int i = config_find(c, key);

	return i >= 0 ? c->e[i].value : NULL;
}

static char *trim(char *s)
{
	char *end;

	while (isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		*--end = '\0';
	return s;
}

int config_load_file(struct config *c, const char *path, char *err, size_t err_len)
{
	char line[4096];
	int lineno = 0, ret = 0;
	FILE *f = fopen(path, "r");

	if (!f) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return -errno;
	}
	while (fgets(line, sizeof(line), f)) {
		char *eq, *key, *val, *s;

		lineno++;
		if (!strchr(line, '\n') && !feof(f)) {
			snprintf(err, err_len, "%s:%d: line too long", path, lineno);
			ret = -EINVAL;
			goto out;
		}
		s = trim(line);
		if (!*s || *s == '#')
			continue;
		eq = strchr(s, '=');
		if (!eq) {
			snprintf(err, err_len, "%s:%d: expected 'key = value'", path, lineno);
			ret = -EINVAL;
			goto out;
		}
		*eq = '\0';
		key = trim(s);
		val = trim(eq + 1);
		ret = config_set(c, key, val);
		if (ret) {
			snprintf(err, err_len, "%s:%d: invalid key '%s'", path, lineno, key);
			goto out;
		}
	}
out:
	fclose(f);
	return ret;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -EINVAL;
	*out = v;
	return 0;
}

int parse_size(const char *s, uint64_t default_unit, uint64_t *out)
{
	char *end;
	unsigned long long v;
	uint64_t unit = default_unit;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'B': unit = 1; break;
		case 'K': unit = 1ULL << 10; break;
		case 'M': unit = 1ULL << 20; break;
		case 'G': unit = 1ULL << 30; break;
		case 'T': unit = 1ULL << 40; break;
		default: return -EINVAL;
		}
		end++;
		/* Accept "M", "MB", "MiB". */
		if (unit != 1 && (!strcmp(end, "iB") || !strcmp(end, "ib") || !strcmp(end, "B") ||
				  !strcmp(end, "b")))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (v && unit > UINT64_MAX / v)
		return -EINVAL;
	*out = v * unit;
	return 0;
}
