#include "arch/x86/cpuid.h"

#include <stdio.h>
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

/* The emulator's CPU model (cpuid_emu_model).
 *
 * Vendor "TarnTarnTarn" (deliberately not Intel or AMD: a guest must not
 * assume a real vendor's model-specific MSRs or errata), hypervisor leaf
 * 0x40000000 signature "TarnEmuTarn\0". Family 6, model 0xF, stepping 1.
 * Only what the interpreter implements is advertised:
 *   leaf 1 EDX: fpu pse tsc msr pae cx8 apic pge cmov pat clflush fxsr sse sse2
 *               (htt with >1 vCPU)
 *   leaf 1 ECX: cx16 tsc_deadline_timer hypervisor
 *   leaf 0x80000001 EDX: syscall nx pdpe1gb rdtscp lm; ECX: lahf_lm
 * Not advertised yet: mmx (x87.c and sse.c do x87, SSE and SSE2 but not
 * the MMX register forms), sse3 and later, x2apic, sep (sysenter), mtrr,
 * mce, de, vme.
 * The LAPIC (xAPIC, hw/lapic.c) has APIC ID = vCPU index, as in leaf 1
 * EBX[31:24] and the MADT.
 * TSC: 1 GHz, derived from CLOCK_MONOTONIC plus a per-vCPU offset; the
 * LAPIC timer's bus clock is 1 GHz too (LAPIC_BUS_HZ). Both are
 * advertised in leaf 0x15 (crystal 1 GHz, ratio 1/1), leaf 0x16 (base,
 * max and bus MHz) and the hypervisor leaf 0x40000010 (TSC kHz, bus kHz;
 * the VMware-defined layout that KVM and other hypervisors share).
 * KVM's paravirtual clock is offered at 0x40000100 (see KVM_CPUID_BASE).
 * Physical address bits 46, linear 48. */

#define CPUID_MAX_BASIC 0x16u
#define CPUID_MAX_HV 0x40000010u
#define CPUID_MAX_EXT 0x80000008u
#define CPUID_BUS_KHZ 1000000u /* the LAPIC timer's clock: 1 GHz, as KVM's */

static void add(struct cpuid_model *m, uint32_t fn, uint32_t a, uint32_t b, uint32_t c, uint32_t d)
{
	m->e[m->n++] = (struct cpuid_entry){ .function = fn, .eax = a, .ebx = b, .ecx = c, .edx = d };
}

static uint32_t str4(const char *s)
{
	uint32_t v;

	memcpy(&v, s, 4);
	return v;
}

void cpuid_emu_model(struct cpuid_model *m, uint32_t tsc_khz)
{
	static const char brand[48] = "Tarn emulated x86-64 CPU";

	m->n = 0;
	add(m, 0, CPUID_MAX_BASIC, str4("Tarn"), str4("Tarn"), str4("Tarn"));
	add(m, 1, (6u << 8) | (0xfu << 4) | 1u, 8u << 8, (1u << 13) | CPUID_1_ECX_TSC_DEADLINE | CPUID_1_ECX_HYPERVISOR,
	    (1u << 0) | (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 9) | (1u << 13) |
		    (1u << 15) | (1u << 16) | (1u << 19) | (1u << 24) | (1u << 25) | (1u << 26));
	/* TSC = crystal (the bus clock) * EBX / EAX */
	add(m, 0x15, CPUID_BUS_KHZ, tsc_khz, CPUID_BUS_KHZ * 1000u, 0);
	add(m, 0x16, tsc_khz / 1000, tsc_khz / 1000, CPUID_BUS_KHZ / 1000, 0);
	add(m, 0x40000000, CPUID_MAX_HV, str4("Tarn"), str4("EmuT"), str4("arn"));
	add(m, 0x40000010, tsc_khz, CPUID_BUS_KHZ, 0, 0);
	add(m, CPUID_KVM_BASE, CPUID_KVM_BASE + 1, str4("KVMK"), str4("VMKV"), str4("M\0\0\0"));
	add(m, CPUID_KVM_BASE + 1, CPUID_KVM_CLOCKSOURCE2 | CPUID_KVM_CLOCKSOURCE_STABLE, 0, 0, 0);
	add(m, 0x80000000, CPUID_MAX_EXT, 0, 0, 0);
	add(m, 0x80000001, 0, 0, 1u << 0, (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29));
	for (uint32_t i = 0; i < 3; i++) {
		uint32_t r[4];

		memcpy(r, brand + 16 * i, 16);
		add(m, 0x80000002 + i, r[0], r[1], r[2], r[3]);
	}
	add(m, 0x80000008, (48u << 8) | 46u, 0, 0, 0);
}

const struct cpuid_entry *cpuid_find(const struct cpuid_model *m, uint32_t fn, uint32_t index)
{
	for (int i = 0; i < m->n; i++)
		if (m->e[i].function == fn && (!(m->e[i].flags & CPUID_FLAG_INDEXED) || m->e[i].index == index))
			return &m->e[i];
	return NULL;
}

uint32_t cpuid_tsc_khz(const struct cpuid_model *m)
{
	const struct cpuid_entry *e = cpuid_find(m, 0x40000010, 0);

	return e ? e->eax : 0;
}

/* The registers that say which instructions and CPU features a guest may
 * use; a guest that saw a bit set may use the feature at any moment. Bits
 * a hypervisor provides whatever the CPU (the hypervisor bit, TSC deadline,
 * HTT, the APIC ID fields) are not features of the CPU here, nor are the
 * bits that mirror the guest's own CR4 (OSXSAVE, OSPKE), which KVM's
 * KVM_GET_CPUID2 reports as the guest set them. */
static const struct {
	uint32_t fn, index;
	int reg; /* 0 eax .. 3 edx */
	uint32_t ignore;
	const char *name;
} feature_regs[] = {
	{ 1, 0, 2, CPUID_1_ECX_HYPERVISOR | CPUID_1_ECX_TSC_DEADLINE | CPUID_1_ECX_OSXSAVE, "1 ECX" },
	{ 1, 0, 3, CPUID_1_EDX_HTT, "1 EDX" },
	{ 7, 0, 1, 0, "7 EBX" },
	{ 7, 0, 2, CPUID_7_ECX_OSPKE, "7 ECX" },
	{ 7, 0, 3, 0, "7 EDX" },
	{ 0xd, 1, 0, 0, "0xd.1 EAX" },
	{ 0x80000001, 0, 2, 0, "0x80000001 ECX" },
	{ 0x80000001, 0, 3, 0, "0x80000001 EDX" },
};

static uint32_t reg_of(const struct cpuid_entry *e, int r)
{
	return !e ? 0 : r == 0 ? e->eax : r == 1 ? e->ebx : r == 2 ? e->ecx : e->edx;
}

int cpuid_missing(const struct cpuid_model *m, const struct cpuid_model *have, char *what, size_t len)
{
	for (size_t i = 0; i < sizeof(feature_regs) / sizeof(feature_regs[0]); i++) {
		uint32_t want = reg_of(cpuid_find(m, feature_regs[i].fn, feature_regs[i].index), feature_regs[i].reg);
		uint32_t got = reg_of(cpuid_find(have, feature_regs[i].fn, feature_regs[i].index), feature_regs[i].reg);
		uint32_t miss = want & ~got & ~feature_regs[i].ignore;

		if (miss) {
			if (what)
				snprintf(what, len, "CPUID leaf %s bit %d", feature_regs[i].name, __builtin_ctz(miss));
			return 1;
		}
	}
	return 0;
}
