/* CPUID policy shared by both backends: the backend provides the leaves it
 * can support; this adjusts topology (APIC IDs, core counts) and hides what
 * we do not virtualize. */
#ifndef TARN_X86_CPUID_H
#define TARN_X86_CPUID_H

#include <stdbool.h>
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

/* MSR policy, both backends: an MSR outside the CPU model gets #GP with a
 * rate-limited warning -- except the performance-monitoring counters and
 * their controls (Intel's architectural PMU, AMD's legacy and core ones):
 * tarn offers no PMU (CPUID leaf 0xA is zero), guests probe for one, and
 * the #GP they get is the expected answer, given without a warning. */
struct msr_range {
	uint32_t first, last;
};
extern const struct msr_range msr_pmu_ranges[];
extern const unsigned msr_pmu_nr_ranges;
bool msr_is_pmu(uint32_t index);

#define CPUID_1_ECX_TSC_DEADLINE (1u << 24)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_1_EDX_HTT (1u << 28)

#endif
