/* CPUID policy shared by both backends: the backend provides the leaves it
 * can support; this adjusts topology (APIC IDs, core counts) and hides what
 * we do not virtualize. */
#ifndef TARN_X86_CPUID_H
#define TARN_X86_CPUID_H

#include <stdint.h>

struct cpuid_entry {
	uint32_t function;
	uint32_t index;
	uint32_t flags; /* CPUID_FLAG_INDEXED: index is significant */
	uint32_t eax, ebx, ecx, edx;
};

#define CPUID_FLAG_INDEXED 1

/* Edit n entries in place for vCPU vcpu_id of nr_cpus (one socket, one
 * thread per core). Returns the new count (entries may be dropped). */
int cpuid_apply_policy(struct cpuid_entry *e, int n, unsigned vcpu_id, unsigned nr_cpus);

#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)

#endif
