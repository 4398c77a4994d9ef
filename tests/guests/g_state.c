/* vCPU state beyond the registers, as a snapshot takes it: the guest loads
 * debug-register, MSR and LAPIC values the host can predict (lib/state.h) and
 * leaves x87 and SSE as FNINIT and reset leave them, then ends; the host
 * reads all that through get_state, puts other values everywhere (x87
 * stack, XMM, MXCSR included) with set_state and reads those back
 * (runner.c, check_state). The guest runs no FLD, LDMXCSR or MOVDQU of its
 * own: PVM hands x87 and SSE instructions in a guest's ring 0 to KVM's
 * instruction emulator, which has none of them ("emulator failed on the
 * instruction d9 e8", fld1; "0f ae 54 24 0c", ldmxcsr). */
#include "lib/guest.h"
#include "lib/state.h"

void guest_main(unsigned cpu, uint64_t arg)
{
	__asm__ volatile("fninit" ::: "memory");
	__asm__ volatile("mov %0, %%dr0" ::"r"(state_addr(1, 0)));
	__asm__ volatile("mov %0, %%dr1" ::"r"(state_addr(1, 1)));
	__asm__ volatile("mov %0, %%dr2" ::"r"(state_addr(1, 2)));
	__asm__ volatile("mov %0, %%dr3" ::"r"(state_addr(1, 3)));
	for (unsigned i = 0; i < STATE_NR_MSRS; i++)
		wrmsr(state_msrs[i].index, state_msr_value(1, i));
	mmio_write32(STATE_APIC_BASE + 0xf0, STATE_APIC_SVR);
	mmio_write32(STATE_APIC_BASE + 0x80, STATE_APIC_TPR);
	mmio_write32(STATE_APIC_BASE + 0x3e0, STATE_APIC_DCR);
	mmio_write32(STATE_APIC_BASE + 0x320, STATE_APIC_LVTT);
	mmio_write32(STATE_APIC_BASE + 0x380, STATE_APIC_TMICT);
}
