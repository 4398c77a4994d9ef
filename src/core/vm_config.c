#include "core/vm_config.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

int config_add_indexed(struct config *c, const char *prefix, int max, const char *val)
{
	char key[64];

	for (int i = 0; i < max; i++) {
		snprintf(key, sizeof(key), "%s.%d", prefix, i);
		if (!config_get(c, key))
			return config_set(c, key, val);
	}
	return -ENOSPC;
}

int config_get_indexed(const struct config *c, const char *prefix, int max, const char **out,
		       char *err, size_t err_len)
{
	size_t plen = strlen(prefix);
	int n = 0;

	for (int i = 0; i < max; i++)
		out[i] = NULL;
	for (int i = 0; i < c->nr; i++) {
		const char *k = c->e[i].key;
		uint64_t idx;

		if (strncmp(k, prefix, plen) || (k[plen] != '.' && k[plen]))
			continue;
		if (!k[plen] || parse_uint(k + plen + 1, 0, (uint64_t)max - 1, &idx))
			return errorf(err, err_len, -EINVAL, "%s: expected %s.0 .. %s.%d", k, prefix, prefix, max - 1);
		out[idx] = c->e[i].value;
	}
	for (int i = 0; i < max; i++) {
		if (out[i])
			out[n++] = out[i];
	}
	for (int i = n; i < max; i++)
		out[i] = NULL;
	return n;
}

/* on or off (absent: dflt) into *out; the option's name for the error. */
static int on_off(const char *v, bool dflt, bool *out, const char *what, char *err, size_t len)
{
	if (v && strcmp(v, "on") && strcmp(v, "off"))
		return errorf(err, len, -EINVAL, "%s %s: expected on or off", what, v);
	*out = v ? !strcmp(v, "on") : dflt;
	return 0;
}

int vm_config_track_dirty(const struct config *c, struct vm_config *vc, char *err, size_t err_len)
{
	return on_off(config_get(c, "vm.track_dirty_pages"), false, &vc->track_dirty, "vm.track_dirty_pages =", err,
		      err_len);
}

int vm_config_from(const struct config *c, struct vm_config *vc, char *err, size_t err_len)
{
	const char *mem = config_get(c, "vm.mem");
	const char *cpus = config_get(c, "vm.cpus");
	const char *unpack = config_get(c, "boot.unpack");
	bool rng;
	uint64_t v;
	int n;

	memset(vc, 0, sizeof(*vc));
	vc->kernel = config_get(c, "boot.kernel");
	vc->initrd = config_get(c, "boot.initrd");
	vc->cmdline = config_get(c, "boot.cmdline");
	vc->backend = config_get(c, "vm.backend");
	if (!vc->backend)
		vc->backend = "auto";
	if (!vc->kernel)
		return errorf(err, err_len, -EINVAL, "no kernel given: use --kernel PATH (tarn run --help)");
	if (parse_size(mem ? mem : VM_DEFAULT_MEM, 1ULL << 20, &v))
		return errorf(err, err_len, -EINVAL, "--mem %s: not a size (examples: 512M, 2G, 1024)", mem);
	vc->mem_size = v;
	if (cpus && parse_uint(cpus, 0, 1u << 20, &v))
		return errorf(err, err_len, -EINVAL, "--cpus %s: not a number", cpus);
	vc->nr_cpus = cpus ? (int)v : 1;
	if (unpack && strcmp(unpack, "host") && strcmp(unpack, "guest"))
		return errorf(err, err_len, -EINVAL, "--unpack %s: expected host or guest", unpack);
	vc->guest_unpack = unpack && !strcmp(unpack, "guest");
	if (on_off(config_get(c, "dev.rng"), false, &rng, "dev.rng =", err, err_len) ||
	    on_off(config_get(c, "vm.ioeventfd"), true, &vc->ioeventfd, "--ioeventfd", err, err_len) ||
	    vm_config_track_dirty(c, vc, err, err_len))
		return -EINVAL;
	vc->nr_rng = rng;
	if ((n = config_get_indexed(c, "dev.disk", VM_MAX_DISKS, vc->disks, err, err_len)) < 0)
		return n;
	vc->nr_disks = n;
	if ((n = config_get_indexed(c, "dev.net", VM_MAX_NETS, vc->nets, err, err_len)) < 0)
		return n;
	vc->nr_nets = n;
	vc->vconsole = config_get(c, "dev.console");
	vc->cpu_template = config_get(c, "vm.cpu_template");
	if (vc->cpu_template && strcmp(vc->cpu_template, "host") && strcmp(vc->cpu_template, "portable"))
		return errorf(err, err_len, -EINVAL, "--cpu-template %s: expected host or portable", vc->cpu_template);
	vc->console_in = STDIN_FILENO;
	vc->console_out = STDOUT_FILENO;
	return 0;
}
