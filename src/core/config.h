/* One dotted-key configuration tree shared by the command line, config
 * files and (later) the API: "vm.mem", "vm.cpus", "boot.kernel", ...
 * Values are strings; typed getters parse and validate them. */
#ifndef TARN_CONFIG_H
#define TARN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct config_entry {
	char *key;
	char *value;
};

struct config {
	struct config_entry *e; /* sorted by key */
	int nr;
	int cap;
};

void config_init(struct config *c);
void config_free(struct config *c);

/* Keys are dot-separated segments of [a-z0-9_-]. 0, -EINVAL or -ENOMEM. */
int config_set(struct config *c, const char *key, const char *value)
	__attribute__((warn_unused_result));
const char *config_get(const struct config *c, const char *key);

/* Parse "key = value" lines ('#' comments, blank lines). On error, -EINVAL
 * with "file:line: reason" in err. */
int config_load_file(struct config *c, const char *path, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* Sizes: a number with an optional K/M/G/T suffix (binary units); a bare
 * number is multiplied by default_unit. -EINVAL on junk or overflow. */
int parse_size(const char *s, uint64_t default_unit, uint64_t *out)
	__attribute__((warn_unused_result));
/* Plain unsigned decimal within [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
	__attribute__((warn_unused_result));

#endif
