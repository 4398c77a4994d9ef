/* From the dotted-key configuration tree (core/config.h), which the command
 * line, config files and the API all fill, to a vm_config. */
#ifndef TARN_VM_CONFIG_H
#define TARN_VM_CONFIG_H

#include <stddef.h>

#include "core/config.h"
#include "core/vm.h"

#define VM_DEFAULT_MEM "512M"

/* Fill vc from c (its strings point into c). 0, or -EINVAL with a reason
 * that names the option or key in err. Console fds are left to the caller
 * (stdin and stdout by default). */
int vm_config_from(const struct config *c, struct vm_config *vc, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* vm.track_dirty_pages (on/off, default off) into vc->track_dirty (a
 * restore takes it from the configuration too, not from the snapshot). */
int vm_config_track_dirty(const struct config *c, struct vm_config *vc, char *err, size_t err_len)
	__attribute__((warn_unused_result));

/* Collect PREFIX.N values in index order into out[max]; returns how many,
 * or -EINVAL when a key under PREFIX is not PREFIX.0 .. PREFIX.(max-1) (a
 * typo would otherwise drop a device silently). */
int config_get_indexed(const struct config *c, const char *prefix, int max, const char **out,
		       char *err, size_t err_len);

/* Set the first free PREFIX.N to val: 0, -ENOSPC (all max taken), -ENOMEM. */
int config_add_indexed(struct config *c, const char *prefix, int max, const char *val)
	__attribute__((warn_unused_result));

#endif
