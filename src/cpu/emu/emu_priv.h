/* Internals of the x86-64 interpreter shared by its files.
 *
 * Control flow: vcpu_run() sets a jmp_buf once; anything deep inside an
 * instruction that cannot continue -- a guest exception, or a port/MMIO
 * read that needs the core -- longjmps back to it. Instructions commit
 * registers only after their last memory read, so abandoning one leaves
 * the architectural state as it was at the instruction start (string
 * instructions commit per element, which is what the hardware does).
 *
 * Port/MMIO reads use instruction restart: the read is recorded in a small
 * replay log and the exit returned; the next vcpu_run re-executes the
 * instruction and the log answers the read(s) in order. Writes are queued
 * and handed out as exits after the instruction (or string element)
 * retires. */
#ifndef TARN_CPU_EMU_PRIV_H
#define TARN_CPU_EMU_PRIV_H

#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "arch/x86/cpu_state.h"
#include "arch/x86/cpuid.h"
#include "cpu/cpu.h"
#include "mem/gm.h"

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* RFLAGS bits. */
#define F_CF 0x0001u
#define F_PF 0x0004u
#define F_AF 0x0010u
#define F_ZF 0x0040u
#define F_SF 0x0080u
#define F_TF 0x0100u
#define F_IF 0x0200u
#define F_DF 0x0400u
#define F_OF 0x0800u
#define F_IOPL 0x3000u
#define F_NT 0x4000u
#define F_RF 0x10000u
#define F_VM 0x20000u
#define F_AC 0x40000u
#define F_VIF 0x80000u
#define F_VIP 0x100000u
#define F_ID 0x200000u
#define F_ARITH (F_CF | F_PF | F_AF | F_ZF | F_SF | F_OF)

/* Exception vectors. */
enum {
	EXC_DE = 0, EXC_DB = 1, EXC_NMI = 2, EXC_BP = 3, EXC_OF = 4, EXC_BR = 5, EXC_UD = 6,
	EXC_NM = 7, EXC_DF = 8, EXC_TS = 10, EXC_NP = 11, EXC_SS = 12, EXC_GP = 13,
	EXC_PF = 14, EXC_MF = 16, EXC_AC = 17, EXC_MC = 18, EXC_XM = 19,
};

/* Segment registers in encoding order. */
enum { SEG_ES, SEG_CS, SEG_SS, SEG_DS, SEG_FS, SEG_GS, SEG_NONE = 7 };

/* #PF error code bits. */
#define PFEC_P 1u
#define PFEC_W 2u
#define PFEC_U 4u
#define PFEC_RSVD 8u
#define PFEC_I 16u

enum acc { ACC_R = 0, ACC_W = 1, ACC_X = 2 };

/* TLB permission bits, precomputed for both privilege levels. W bits are
 * set only once the PTE's dirty bit is set, so the first write walks. */
#define TLB_RS 0x01u
#define TLB_WS 0x02u
#define TLB_XS 0x04u
#define TLB_RU 0x08u
#define TLB_WU 0x10u
#define TLB_XU 0x20u

#define TLB_BITS 10
#define TLB_SIZE (1u << TLB_BITS)

struct tlb_entry {
	uint64_t tag; /* linear page number + 1 (0 = invalid) */
	uint8_t *hva; /* host address of the page, NULL when not RAM */
	uint64_t gpa;
	uint32_t perm;
};

/* Replay log of port/MMIO reads of the instruction being restarted, and
 * (below) its writes waiting to be handed out. Sized for the most one
 * instruction touches: fxsave/fxrstor in 64-bit mode (52 eight-byte
 * accesses), enter with nesting level 31 (30 frame pointers read, 32
 * pushes), a call gate copying 31 parameters; a page crossing done bytewise
 * adds at most 7. More (descriptor tables in device memory too) ends the VM
 * with VCPU_ERR_MMIO_LIMIT. */
#define RLOG_MAX 64
struct rlog_entry {
	uint64_t addr;
	uint8_t len;
	bool io;
	uint8_t data[8];
};

#define WQ_MAX 64
struct wq_entry {
	uint64_t addr;
	uint8_t len;
	bool io;
	uint8_t data[8];
};

enum jmp_reason { JMP_NONE, JMP_FAULT, JMP_EXIT };

/* Attention bits: anything that must interrupt the fast loop. */
#define ATTN_KICK 1u	  /* vcpu_run must return VCPU_EXIT_INTR */
#define ATTN_IRQ 2u	  /* the LAPIC has news: interrupt, NMI, INIT or SIPI */
#define ATTN_IRQ_WAIT 4u  /* an interrupt waits for RFLAGS.IF / the shadow to end */

/* x87/SSE state (sse.c, x87.c). st[] is indexed by physical register;
 * ST(i) is st[(top + i) & 7] with top in fsw bits 13:11. ftw is the
 * abridged tag of fxsave (bit i set: physical register i in use). */
struct emu_fpu {
	uint64_t xmm[16][2];
	uint32_t mxcsr, mxcsr_mask; /* mask: MXCSR bits ldmxcsr accepts */
	uint16_t fcw, fsw, fop;
	uint8_t ftw;
	uint64_t fip, fdp;
	long double st[8]; /* the host's x87 80-bit format */
};

/* An SSE (0F xx) or x87 (D8-DF) instruction as decoded by exec.c. */
struct emu_fpu_insn {
	uint8_t opc;	 /* byte after 0F, or D8-DF */
	uint8_t pfx;	 /* mandatory prefix: 0, 0x66, 0xf2 or 0xf3 */
	uint8_t modrm;	 /* raw ModRM byte */
	uint8_t reg, rm; /* ModRM fields, with REX.R/REX.B */
	uint8_t imm;	 /* imm8 when the opcode has one */
	bool mem, rexw;
	int seg;	 /* segment of the memory operand */
	uint64_t ea;	 /* its effective address */
	int opsize;	 /* operand size (x87 environment forms) */
};

enum emu_mode { MODE_REAL, MODE_PROT16, MODE_PROT32, MODE_COMPAT16, MODE_COMPAT32, MODE_LONG64 };

struct emu_cpu {
	uint64_t r[16];
	uint64_t rip;
	uint64_t flags;
	struct x86_seg seg[6];
	struct x86_seg tr, ldt;
	struct x86_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, efer; /* CR8 is the LAPIC's TPR: emu_get_cr8() */
	uint64_t dr[8];
	uint64_t star, lstar, cstar, sfmask, kgs_base, tsc_aux, pat;
	uint64_t sysenter_cs, sysenter_esp, sysenter_eip;
	int64_t tsc_offset;
	int64_t clock_offset; /* VM time (ns) = host monotonic + this; TSC writes leave it */
	uint64_t kvm_system_time, kvm_wall_clock; /* kvmclock MSRs (emu.c) */
	uint64_t misc_enable;

	/* Derived state, recomputed by emu_update_mode(). */
	int cpl;
	enum emu_mode mode;
	bool long64;	   /* 64-bit code segment in long mode */
	uint8_t def_size;  /* default operand/address size: 2 or 4 (8 in 64-bit: addr) */
	uint8_t stack_size; /* 2, 4 or 8 */
	uint32_t need_r, need_w, need_x; /* TLB bits for the current CPL */

	/* Per-instruction. */
	uint64_t insn_rip; /* RIP of the instruction being executed */
	int shadow;	   /* interrupt shadow: instructions left inhibited */
	/* Not next to insn_rip: copying rip and flags as one 16-byte vector
	 * (what gcc does with adjacent fields) stalls on store forwarding. */
	uint64_t insn_flags; /* RFLAGS to restore when it faults */

	/* Exceptions. */
	int exc_vec, exc_err; /* exc_err < 0: no error code */
	int delivering;	      /* vector being delivered, -1 when none */
	bool in_event;	      /* delivering an exception or external interrupt */
	bool exc_soft;
	struct vcpu_exit *exit;
	bool exit_ready;
	jmp_buf jb;

	struct rlog_entry rlog[RLOG_MAX];
	int rlog_n, rlog_idx;
	struct wq_entry wq[WQ_MAX];
	int wq_n, wq_head;

	/* Code fetch cache: the page RIP is in. */
	uint64_t fetch_tag; /* linear page + 1, 0 invalid */
	const uint8_t *fetch_hva;

	atomic_uint attn;
	bool halted;	/* after hlt, until an event wakes it */
	bool wait_sipi; /* an AP before its start-up IPI: does not execute */
	bool nmi_blocked; /* from NMI delivery to the next iret */
	/* Interrupts and halting (emu.c, platform.c). */
	struct lapic *lapic;	   /* this vCPU's local APIC (IA32_APIC_BASE lives there) */
	uint64_t timer_deadline;   /* the LAPIC timer's next expiry, ns; UINT64_MAX none */
	pthread_mutex_t wait_lock; /* with wait_cond: a halted vCPU sleeps */
	pthread_cond_t wait_cond;

	uint64_t insns;
	uint64_t insn_limit; /* emu_set_insn_limit() */

	struct emu_fpu fpu;
	struct cpuid_model cpuid; /* what CPUID answers (emu_set_cpuid) */

	struct vcpu *vcpu;
	struct guest_mem *gm;
	uint64_t dirty_gen; /* gm->dirty_gen when the TLB was last flushed for it */

	struct tlb_entry tlb[TLB_SIZE];
};

/* ---- emu.c ---- */
void emu_update_mode(struct emu_cpu *c);
/* Set attn bits and wake the vCPU if it sleeps halted. Any thread. */
void emu_wake(struct emu_cpu *c, unsigned attn);
/* The vCPU's own accesses to its LAPIC page; false when gpa is not in it. */
bool emu_lapic_read(struct emu_cpu *c, uint64_t gpa, int size, uint64_t *val);
bool emu_lapic_write(struct emu_cpu *c, uint64_t gpa, int size, uint64_t val);
/* CR8 = TPR[7:4] of this vCPU's LAPIC (SDM 10.8.6.1). */
void emu_set_cr8(struct emu_cpu *c, uint64_t v);
uint64_t emu_get_cr8(struct emu_cpu *c);
void emu_cpuid(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4]);
int emu_rdmsr(struct emu_cpu *c, uint32_t msr, uint64_t *val);
int emu_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t val);
uint64_t emu_rdtsc(struct emu_cpu *c);
/* Fill the guest's kvmclock structure (when enabled) from the current
 * clock_offset and TSC. 0 or -EINVAL (its address left RAM). */
int emu_kvmclock_write_time(struct emu_cpu *c);

/* ---- mmu.c ---- */
void emu_tlb_flush(struct emu_cpu *c);
void emu_tlb_flush_page(struct emu_cpu *c, uint64_t lin);
/* Slow paths behind the inline accessors below. sup: implicit supervisor
 * access (descriptor tables, TSS, exception frames). */
uint64_t emu_read_slow(struct emu_cpu *c, uint64_t lin, int size, bool sup);
void emu_write_slow(struct emu_cpu *c, uint64_t lin, int size, uint64_t val, bool sup);
uint64_t emu_read_rmw_slow(struct emu_cpu *c, uint64_t lin, int size);
/* Host pointer for a read-modify-write of [lin, lin+size) in one RAM page,
 * or NULL (MMIO or page-crossing: caller falls back to read then write).
 * Faults like a write would. */
void *emu_rmw_ptr(struct emu_cpu *c, uint64_t lin, int size);
const uint8_t *emu_fetch_page(struct emu_cpu *c, uint64_t lin);
uint64_t emu_io_in(struct emu_cpu *c, uint16_t port, int size);
void emu_io_out(struct emu_cpu *c, uint16_t port, int size, uint64_t val);
/* Linear address outside 64-bit mode: base + offset with limit checks.
 * emu_linear() answers flat 4 GiB segments inline: a check added here
 * must be added there too. */
uint64_t emu_linear_legacy(struct emu_cpu *c, int seg, uint64_t off, int size, enum acc acc);

/* ---- exc.c ---- */
_Noreturn void emu_fault(struct emu_cpu *c, int vec, int err);
_Noreturn void emu_exit_now(struct emu_cpu *c);
/* End the run with VCPU_EXIT_ERROR: code and a message for the user. */
_Noreturn void emu_exit_error(struct emu_cpu *c, enum vcpu_error code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Deliver an event through the IDT (IVT in real mode). soft: int n / int3 /
 * into (next_rip is pushed, DPL checked); ext: external interrupt. */
void emu_deliver(struct emu_cpu *c, int vec, int err, bool soft, bool ext, uint64_t ret_rip);
bool emu_deliver_pending_exception(struct emu_cpu *c); /* true: triple fault */
void emu_load_seg(struct emu_cpu *c, int sreg, uint16_t sel);
void emu_far_jump(struct emu_cpu *c, uint16_t sel, uint64_t off, bool call, int opsize,
		  uint64_t ret_rip);
void emu_far_ret(struct emu_cpu *c, int opsize, uint16_t imm);
void emu_iret(struct emu_cpu *c, int opsize);
void emu_syscall(struct emu_cpu *c, uint64_t next_rip);
void emu_sysret(struct emu_cpu *c, bool w64);
void emu_ltr(struct emu_cpu *c, uint16_t sel);
void emu_lldt(struct emu_cpu *c, uint16_t sel);
/* VERR/VERW: may the current CPL read (write) through sel? */
bool emu_verify_seg(struct emu_cpu *c, uint16_t sel, bool write);
/* LAR/LSL: the access rights (lar) or expanded limit (lsl) of sel's
 * descriptor; false (ZF=0) where the instruction would not report it. */
bool emu_lar_lsl(struct emu_cpu *c, uint16_t sel, bool lsl, uint64_t *out);

/* ---- sse.c ---- */
void emu_fpu_reset(struct emu_cpu *c);
/* Does 0F opc take an imm8 after ModRM (SSE forms)? */
bool emu_sse_has_imm(uint8_t opc);
/* The x87/SSE state as a 64-bit FXSAVE image with all sixteen XMM
 * registers (x86_state.fxsave), and back: -EINVAL, changing nothing, for an
 * MXCSR the CPU would refuse. */
void emu_fx_get(struct emu_cpu *c, uint8_t img[512]);
int emu_fx_set(struct emu_cpu *c, const uint8_t img[512]);
/* Execute an SSE/SSE2 instruction or 0F AE fxsave/fxrstor/ldmxcsr/stmxcsr;
 * raises #UD/#NM/#GP/#XM through emu_fault. */
void emu_sse_exec(struct emu_cpu *c, const struct emu_fpu_insn *in);

/* ---- x87.c ---- */
void emu_x87_exec(struct emu_cpu *c, const struct emu_fpu_insn *in);
/* fwait: #NM per CR0.TS/MP, #MF if an unmasked x87 exception is pending. */
void emu_x87_wait(struct emu_cpu *c);

/* ---- exec.c ---- */
/* Execute instructions until an exit is ready, attn is set, or a batch ends. */
void emu_exec_block(struct emu_cpu *c);

/* ---- inline fast paths ---- */

static inline struct tlb_entry *emu_tlb_slot(struct emu_cpu *c, uint64_t lin)
{
	return &c->tlb[(lin >> 12) & (TLB_SIZE - 1)];
}

_Noreturn void emu_fault(struct emu_cpu *c, int vec, int err);

/* Linear address of seg:off for an access of size bytes; raises #GP/#SS. */
static inline uint64_t emu_linear(struct emu_cpu *c, int seg, uint64_t off, int size, enum acc acc)
{
	if (likely(c->long64)) {
		uint64_t lin = off + (seg >= SEG_FS ? c->seg[seg].base : 0);
		uint64_t u = lin + (1ULL << 47); /* canonical: u < 2^48 */

		/* Every byte canonical: an access from 0x7ffffffffffc on
		 * takes #GP, not #PF. */
		if (unlikely((u | (u + (uint64_t)size - 1)) >> 48))
			emu_fault(c, seg == SEG_SS ? EXC_SS : EXC_GP, 0);
		return lin;
	}
	/* 4 GiB segments that are not expand-down (flat protected mode):
	 * the only check left is the end of the access. */
	const struct x86_seg *s = &c->seg[seg];
	if (likely(s->limit == 0xffffffffu && !s->unusable && (s->type & 0xc) != 4 &&
		   off + (uint64_t)size - 1 <= 0xffffffffULL))
		return (s->base + off) & 0xffffffffULL;
	return emu_linear_legacy(c, seg, off, size, acc);
}

/* The first byte of the page after lin's: where an access that crosses
 * into that page and faults there reports its #PF (CR2). */
static inline uint64_t emu_next_page(const struct emu_cpu *c, uint64_t lin)
{
	return ((lin | 0xfff) + 1) & (c->long64 ? ~0ULL : 0xffffffffULL);
}

static inline uint64_t emu_load(const uint8_t *p, int size)
{
	switch (size) {
	case 1: return *p;
	case 2: { uint16_t v; memcpy(&v, p, 2); return v; }
	case 4: { uint32_t v; memcpy(&v, p, 4); return v; }
	default: { uint64_t v; memcpy(&v, p, 8); return v; }
	}
}

static inline uint64_t emu_read_lin(struct emu_cpu *c, uint64_t lin, int size)
{
	struct tlb_entry *e = emu_tlb_slot(c, lin);

	if (likely(e->tag == (lin >> 12) + 1 && (e->perm & c->need_r) &&
		   (lin & 0xfff) + (unsigned)size <= 4096))
		return emu_load(e->hva + (lin & 0xfff), size);
	return emu_read_slow(c, lin, size, false);
}

/* The read of a read-modify-write (alu ops, shifts, bts, xchg, xadd,
 * cmpxchg: the CPU writes back even what it leaves unchanged): it faults
 * as the write would, #PF with W=1 on a not-present or read-only page,
 * before anything is read. */
static inline uint64_t emu_read_rmw_lin(struct emu_cpu *c, uint64_t lin, int size)
{
	struct tlb_entry *e = emu_tlb_slot(c, lin);

	if (likely(e->tag == (lin >> 12) + 1 && (e->perm & c->need_w) &&
		   (lin & 0xfff) + (unsigned)size <= 4096))
		return emu_load(e->hva + (lin & 0xfff), size);
	return emu_read_rmw_slow(c, lin, size);
}

static inline void emu_write_lin(struct emu_cpu *c, uint64_t lin, int size, uint64_t val)
{
	struct tlb_entry *e = emu_tlb_slot(c, lin);

	if (likely(e->tag == (lin >> 12) + 1 && (e->perm & c->need_w) &&
		   (lin & 0xfff) + (unsigned)size <= 4096)) {
		uint8_t *p = e->hva + (lin & 0xfff);
		switch (size) {
		case 1: *p = (uint8_t)val; return;
		case 2: { uint16_t v = (uint16_t)val; memcpy(p, &v, 2); return; }
		case 4: { uint32_t v = (uint32_t)val; memcpy(p, &v, 4); return; }
		default: memcpy(p, &val, 8); return;
		}
	}
	emu_write_slow(c, lin, size, val, false);
}

static inline uint64_t emu_read(struct emu_cpu *c, int seg, uint64_t off, int size)
{
	return emu_read_lin(c, emu_linear(c, seg, off, size, ACC_R), size);
}

static inline void emu_write(struct emu_cpu *c, int seg, uint64_t off, int size, uint64_t val)
{
	emu_write_lin(c, emu_linear(c, seg, off, size, ACC_W), size, val);
}

static inline uint64_t emu_size_mask(int size)
{
	return size == 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

#endif
