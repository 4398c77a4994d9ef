#include "cpu/cpu.h"

#include <cpuid.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum kvm_flavour kvm_flavour(void)
{
	unsigned a, b, c, d;

	if (!access("/sys/module/kvm_pvm", F_OK))
		return KVM_PVM;
	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 31)))
		return KVM_HARDWARE;
	__cpuid(0x40000000, a, b, c, d);
	if (b == 0x54474354 && c == 0x43544743 && d == 0x47435447) /* "TCGTCGTCGTCG" */
		return KVM_NESTED_TCG;
	return KVM_NESTED;
}

const char *kvm_flavour_name(enum kvm_flavour f)
{
	static const char *const names[] = { "hardware", "nested", "nested-tcg", "pvm" };

	return names[f];
}

const struct cpu_ops *cpu_select(const char *name, char *why, size_t why_len)
{
	char kvm_why[160] = "";

	if (!name || !strcmp(name, "auto")) {
		if (!kvm_cpu_ops.probe(kvm_why, sizeof(kvm_why)) && kvm_flavour() != KVM_PVM)
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
