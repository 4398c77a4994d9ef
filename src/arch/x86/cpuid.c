#include "arch/x86/cpuid.h"

#include <string.h>

/* Bits needed to number nr_cpus cores: the x2APIC ID shift for the core
 * level in leaf 0xB. */
static unsigned order(unsigned n)
{
	unsigned s = 0;

	while ((1u << s) < n)
		s++;
	return s;
}

int cpuid_apply_policy(struct cpuid_entry *e, int n, unsigned vcpu_id, unsigned nr_cpus)
{
	int out = 0;

	for (int i = 0; i < n; i++) {
		struct cpuid_entry c = e[i];

		switch (c.function) {
		case 0x1:
			/* Logical processors per package: an 8-bit field. */
			c.ebx = (c.ebx & 0x0000ffff) | ((vcpu_id & 0xff) << 24) |
				((nr_cpus > 255 ? 255 : nr_cpus) << 16);
			c.ebx = (c.ebx & ~0xff00u) | (8u << 8); /* CLFLUSH line: 64 bytes */
			c.ecx |= CPUID_1_ECX_HYPERVISOR;
			if (nr_cpus > 1)
				c.edx |= CPUID_1_EDX_HTT;
			else
				c.edx &= ~CPUID_1_EDX_HTT;
			break;
		case 0x4:
			/* Cache leaves: cores per package in EAX[31:26], one
			 * thread sharing each cache below L3. Both counts are
			 * "minus one" fields (6 and 12 bits) and saturate. */
			c.eax = (c.eax & 0x3ff) | ((nr_cpus > 64 ? 63 : nr_cpus - 1) << 26);
			if (((c.eax >> 5) & 7) == 3)
				c.eax |= (nr_cpus > 4096 ? 4095 : nr_cpus - 1) << 14;
			break;
		case 0x6: /* thermal and power management: none */
		case 0xa: /* no PMU: guests must not probe perf counters */
			c.eax = c.ebx = c.ecx = c.edx = 0;
			break;
		case 0xb:
		case 0x1f:
			/* Topology: level 0 = SMT (1 thread), level 1 = core. */
			c.edx = vcpu_id;
			if (c.index == 0) {
				c.eax = 0;
				c.ebx = 1;
				c.ecx = 1u << 8;
			} else if (c.index == 1) {
				c.eax = order(nr_cpus);
				c.ebx = nr_cpus;
				c.ecx = 1 | 2u << 8;
			} else {
				c.eax = c.ebx = 0;
				c.ecx = c.index;
			}
			break;
		default:
			break;
		}
		e[out++] = c;
	}
	return out;
}

const struct msr_range msr_pmu_ranges[] = {
	{ 0x0c1, 0x0c8 },	    /* IA32_PMC0-7 */
	{ 0x186, 0x18d },	    /* IA32_PERFEVTSEL0-7 */
	{ 0x309, 0x30b },	    /* IA32_FIXED_CTR0-2 */
	{ 0x345, 0x345 },	    /* IA32_PERF_CAPABILITIES */
	{ 0x38d, 0x391 },	    /* fixed-counter control, global status/control */
	{ 0x4c1, 0x4c8 },	    /* IA32_A_PMC0-7 */
	{ 0xc0010000, 0xc0010007 }, /* AMD PERF_CTL0-3, PERF_CTR0-3 */
	{ 0xc0010200, 0xc001020b }, /* AMD core PERF_CTL/CTR 0-5 */
};
const unsigned msr_pmu_nr_ranges = sizeof(msr_pmu_ranges) / sizeof(msr_pmu_ranges[0]);

bool msr_is_pmu(uint32_t index)
{
	for (unsigned i = 0; i < msr_pmu_nr_ranges; i++)
		if (index >= msr_pmu_ranges[i].first && index <= msr_pmu_ranges[i].last)
			return true;
	return false;
}
