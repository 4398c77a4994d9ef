#include "cpu/cpu.h"

#include <stdio.h>
#include <string.h>

const struct cpu_ops *cpu_select(const char *name, char *why, size_t why_len)
{
	char kvm_why[160] = "";

	if (!name || !strcmp(name, "auto")) {
		if (!kvm_cpu_ops.probe(kvm_why, sizeof(kvm_why)))
			return &kvm_cpu_ops;
		return &emu_cpu_ops;
	}
	if (!strcmp(name, "kvm")) {
		if (kvm_cpu_ops.probe(kvm_why, sizeof(kvm_why))) {
			snprintf(why, why_len, "--backend kvm: %s", kvm_why);
			return NULL;
		}
		return &kvm_cpu_ops;
	}
	if (!strcmp(name, "emu"))
		return &emu_cpu_ops;
	snprintf(why, why_len, "--backend %s: unknown backend (use kvm, emu or auto)", name);
	return NULL;
}
