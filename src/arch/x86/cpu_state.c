#include "arch/x86/cpu_state.h"

#include <string.h>

#define X86_MSR_INDEX(idx, name) idx,
const uint32_t x86_state_msr_index[X86_STATE_NR_MSRS] = { X86_STATE_MSRS(X86_MSR_INDEX) };

static struct x86_seg seg_real(uint16_t sel, uint8_t type)
{
	return (struct x86_seg){ .base = (uint64_t)sel << 4, .limit = 0xffff, .sel = sel,
				 .type = type, .s = 1, .present = 1 };
}

void x86_state_reset(struct x86_state *s)
{
	memset(s, 0, sizeof(*s));
	s->rip = 0xfff0;
	s->rflags = X86_RFLAGS_FIXED;
	s->cs = seg_real(0xf000, 0xb);
	s->cs.base = 0xffff0000;
	s->ds = s->es = s->fs = s->gs = s->ss = seg_real(0, 0x3);
	s->tr = (struct x86_seg){ .limit = 0xffff, .type = 0xb, .present = 1 };
	s->ldt = (struct x86_seg){ .limit = 0xffff, .type = 0x2, .present = 1 };
	s->gdt.limit = s->idt.limit = 0xffff;
	s->cr0 = X86_CR0_ET | X86_CR0_CD | X86_CR0_NW;
	s->gpr[R_RDX] = 0x600; /* family 6 signature, a placeholder until CPUID is set */
	s->apic_base = 0xfee00000 | (1 << 11) | (1 << 8); /* enabled, BSP */
}

/* Selectors of boot.c's GDT (the Linux boot protocol wants __BOOT_CS 0x10 and
 * __BOOT_DS 0x18; PVH and multiboot enter with a 32-bit CS). */
#define SEL_CODE32 0x08
#define SEL_CODE64 0x10
#define SEL_DATA 0x18
#define SEL_TSS 0x20

static void flat_common(struct x86_state *s, uint64_t gdt_base, uint16_t gdt_limit)
{
	struct x86_seg data = { .base = 0, .limit = 0xffffffff, .sel = SEL_DATA, .type = 0x3,
				.s = 1, .present = 1, .db = 1, .g = 1 };

	s->ds = s->es = s->fs = s->gs = s->ss = data;
	s->tr = (struct x86_seg){ .limit = 0x67, .sel = SEL_TSS, .type = 0xb, .present = 1 };
	s->ldt = (struct x86_seg){ .type = 0x2, .present = 1, .unusable = 1 };
	s->gdt.base = gdt_base;
	s->gdt.limit = gdt_limit;
	s->idt.base = 0;
	s->idt.limit = 0;
	s->rflags = X86_RFLAGS_FIXED;
}

void x86_state_long_mode(struct x86_state *s, uint64_t cr3, uint64_t gdt_base, uint16_t gdt_limit)
{
	uint64_t apic_base = s->apic_base;

	memset(s, 0, sizeof(*s));
	flat_common(s, gdt_base, gdt_limit);
	s->cs = (struct x86_seg){ .base = 0, .limit = 0xffffffff, .sel = SEL_CODE64, .type = 0xb,
				  .s = 1, .present = 1, .l = 1, .g = 1 };
	s->cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
	s->cr3 = cr3;
	s->cr4 = X86_CR4_PAE;
	s->efer = X86_EFER_LME | X86_EFER_LMA;
	s->apic_base = apic_base;
}

void x86_state_protected_flat(struct x86_state *s, uint64_t gdt_base, uint16_t gdt_limit)
{
	uint64_t apic_base = s->apic_base;

	memset(s, 0, sizeof(*s));
	flat_common(s, gdt_base, gdt_limit);
	s->cs = (struct x86_seg){ .base = 0, .limit = 0xffffffff, .sel = SEL_CODE32, .type = 0xb,
				  .s = 1, .present = 1, .db = 1, .g = 1 };
	s->cr0 = X86_CR0_PE | X86_CR0_ET;
	s->apic_base = apic_base;
}
