/* CPUID policy shared by both backends: the backend provides the leaves it
 * can support; this adjusts topology (APIC IDs, core counts) and hides what
 * we do not virtualize. */
#ifndef TARN_X86_CPUID_H
#define TARN_X86_CPUID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cpuid_entry {
	uint32_t function;
	uint32_t index;
	uint32_t flags; /* CPUID_FLAG_INDEXED: index is significant */
	uint32_t eax, ebx, ecx, edx;
};

#define CPUID_FLAG_INDEXED 1

/* A vCPU's CPUID table: what a guest saw, so that a snapshot restores
 * under a backend that shows it the same CPU. */
#define CPUID_MODEL_MAX 256
struct cpuid_model {
	int n;
	struct cpuid_entry e[CPUID_MODEL_MAX];
};

/* The emulator's CPU (its comment in cpuid.c), with a TSC of tsc_khz:
 * what --backend emu shows a guest, and what --cpu-template portable shows
 * it under KVM, so that a snapshot moves between the backends. */
#define CPUID_EMU_TSC_KHZ 1000000u
void cpuid_emu_model(struct cpuid_model *m, uint32_t tsc_khz);
/* The entry for (fn, index): index counts only for indexed leaves. NULL
 * when m has none (the CPU answers zeros). */
const struct cpuid_entry *cpuid_find(const struct cpuid_model *m, uint32_t fn, uint32_t index);
/* The TSC frequency m advertises (leaf 0x40000010), 0 for none. */
uint32_t cpuid_tsc_khz(const struct cpuid_model *m);
/* Whether m has a feature bit (instruction set, CPU feature) that have
 * lacks: 0 when m asks nothing have cannot give, else 1 with the first
 * missing bit named in what (may be NULL). */
int cpuid_missing(const struct cpuid_model *m, const struct cpuid_model *have, char *what, size_t len);

#define CPUID_KVM_BASE 0x40000100u /* KVM's leaves, beside tarn's own at 0x40000000 */
#define CPUID_KVM_CLOCKSOURCE2 (1u << 3)
#define CPUID_KVM_CLOCKSOURCE_STABLE (1u << 24)

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
#define CPUID_1_ECX_OSXSAVE (1u << 27)
#define CPUID_1_ECX_HYPERVISOR (1u << 31)
#define CPUID_7_ECX_OSPKE (1u << 4)
#define CPUID_1_EDX_HTT (1u << 28)

#endif
