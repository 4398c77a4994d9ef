/* Architectural x86-64 vCPU state as the core sees it, independent of the
 * backend. Boot code builds one; snapshots save one; backends translate it
 * to and from their own form (struct kvm_regs/kvm_sregs, the emulator's
 * register file). */
#ifndef TARN_X86_CPU_STATE_H
#define TARN_X86_CPU_STATE_H

#include <stdbool.h>
#include <stdint.h>

enum x86_gpr {
	R_RAX, R_RCX, R_RDX, R_RBX, R_RSP, R_RBP, R_RSI, R_RDI,
	R_R8, R_R9, R_R10, R_R11, R_R12, R_R13, R_R14, R_R15,
};

/* A segment register with its hidden (descriptor cache) part. */
struct x86_seg {
	uint64_t base;
	uint32_t limit; /* byte granular, already expanded by G */
	uint16_t sel;
	uint8_t type;	/* 4-bit descriptor type */
	uint8_t s;	/* 1 = code/data, 0 = system */
	uint8_t dpl;
	uint8_t present;
	uint8_t avl;
	uint8_t l;	/* 64-bit code */
	uint8_t db;	/* default operand size / big */
	uint8_t g;
	uint8_t unusable;
};

struct x86_dtable {
	uint64_t base;
	uint16_t limit;
};

/* The MSRs an x86_state carries beside EFER and IA32_APIC_BASE, in the
 * order of x86_state.msr[]: what a 64-bit guest sets up and expects to find
 * again (system calls, PAT, TSC, kvmclock). */
#define X86_STATE_MSRS(X)                                                       \
	X(0x00000010, TSC) X(0x000006e0, TSC_DEADLINE)                            \
	X(0x00000174, SYSENTER_CS) X(0x00000175, SYSENTER_ESP)                    \
	X(0x00000176, SYSENTER_EIP) X(0x000001a0, MISC_ENABLE) X(0x00000277, PAT)  \
	X(0xc0000081, STAR) X(0xc0000082, LSTAR) X(0xc0000083, CSTAR)             \
	X(0xc0000084, SFMASK) X(0xc0000102, KERNEL_GS_BASE) X(0xc0000103, TSC_AUX) \
	X(0x4b564d00, KVM_WALL_CLOCK_NEW) X(0x4b564d01, KVM_SYSTEM_TIME_NEW)
#define X86_MSR_ENUM(idx, name) X86_MSR_##name,
enum { X86_STATE_MSRS(X86_MSR_ENUM) X86_STATE_NR_MSRS };
#undef X86_MSR_ENUM
extern const uint32_t x86_state_msr_index[X86_STATE_NR_MSRS];

/* Which parts beyond the registers an x86_state holds: get_state fills
 * them all; set_state loads only those named (boot code names none). */
#define X86_STATE_FPU (1u << 0)	 /* fxsave */
#define X86_STATE_DEBUG (1u << 1) /* dr[], dr6, dr7 */
#define X86_STATE_MSR (1u << 2)	 /* msr[] */
#define X86_STATE_LAPIC (1u << 3) /* lapic[] */
#define X86_STATE_EVENTS (1u << 4) /* ev */
#define X86_STATE_ALL (X86_STATE_FPU | X86_STATE_DEBUG | X86_STATE_MSR | X86_STATE_LAPIC | X86_STATE_EVENTS)

/* Where a vCPU stands between instructions: running, halted, or (an AP)
 * waiting for its start-up IPI; and the events it is in the middle of, as
 * KVM's MP state and vCPU events carry them. A vCPU the emulator stopped
 * has nothing injected (it delivers an event in one step). */
enum x86_mp_state { X86_MP_RUNNING, X86_MP_HALTED, X86_MP_WAIT_SIPI };
struct x86_events {
	uint8_t mp_state;	/* enum x86_mp_state */
	uint8_t shadow;		/* interrupts held off for one instruction (STI, MOV SS) */
	uint8_t nmi_pending;	/* an NMI waits to be taken */
	uint8_t nmi_masked;	/* inside an NMI handler (until IRET) */
	uint8_t exc_injected;	/* exception exc_vector is being delivered */
	uint8_t exc_vector, exc_has_err;
	uint8_t irq_injected;	/* external interrupt irq_vector is being delivered */
	uint8_t irq_vector;
	uint8_t irq_soft;	/* ... from INTn */
	uint32_t exc_err;
};

struct x86_state {
	uint64_t gpr[16];
	uint64_t rip;
	uint64_t rflags;
	struct x86_seg cs, ds, es, fs, gs, ss, tr, ldt;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8;
	uint64_t efer;
	uint64_t apic_base;

	uint32_t parts; /* X86_STATE_* */
	/* x87, MMX and SSE as a 64-bit FXSAVE stores them (SDM vol. 1 table
	 * 10-2): FCW, FSW, abridged FTW, FOP, FIP, FDP, MXCSR and its mask,
	 * ST0-ST7 (80 bits in 16), XMM0-XMM15; the rest zero. */
	uint8_t fxsave[512] __attribute__((aligned(16)));
	uint64_t dr[4], dr6, dr7;
	uint64_t msr[X86_STATE_NR_MSRS];
	/* The local APIC as KVM_GET_LAPIC's register page (xAPIC: ID in bits
	 * 24-31, the timer as initial and current counts). */
	uint8_t lapic[1024];
	struct x86_events ev;
};

#define X86_CR0_PE (1ULL << 0)
#define X86_CR0_MP (1ULL << 1)
#define X86_CR0_EM (1ULL << 2)
#define X86_CR0_TS (1ULL << 3)
#define X86_CR0_ET (1ULL << 4)
#define X86_CR0_NE (1ULL << 5)
#define X86_CR0_WP (1ULL << 16)
#define X86_CR0_AM (1ULL << 18)
#define X86_CR0_NW (1ULL << 29)
#define X86_CR0_CD (1ULL << 30)
#define X86_CR0_PG (1ULL << 31)

#define X86_CR4_PSE (1ULL << 4)
#define X86_CR4_PAE (1ULL << 5)
#define X86_CR4_PGE (1ULL << 7)
#define X86_CR4_OSFXSR (1ULL << 9)
#define X86_CR4_OSXMMEXCPT (1ULL << 10)

#define X86_EFER_SCE (1ULL << 0)
#define X86_EFER_LME (1ULL << 8)
#define X86_EFER_LMA (1ULL << 10)
#define X86_EFER_NXE (1ULL << 11)

#define X86_RFLAGS_FIXED (1ULL << 1)
#define X86_RFLAGS_IF (1ULL << 9)

/* State at reset (real mode, CS:IP = F000:FFF0), as the SDM's table
 * "IA-32 and Intel 64 processor states following power-up, reset or INIT". */
void x86_state_reset(struct x86_state *s);

/* Flat 64-bit long mode: CS = 64-bit code, data segments flat, paging on
 * with the given CR3, interrupts off. The GDT at gdt_base must hold the
 * matching descriptors (see boot.c). */
void x86_state_long_mode(struct x86_state *s, uint64_t cr3, uint64_t gdt_base, uint16_t gdt_limit);

/* Flat 32-bit protected mode, paging off (PVH and multiboot entry). */
void x86_state_protected_flat(struct x86_state *s, uint64_t gdt_base, uint16_t gdt_limit);

#endif
