/* cpu/emu: the software x86-64 backend behind struct cpu_ops. This file
 * holds the run loop, state conversion, kick and interrupt injection, the
 * CPUID model and the MSRs; decode/execute is exec.c, the MMU mmu.c,
 * exceptions and descriptor-table work exc.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu.h"
#include "cpu/emu/emu_priv.h"

void emu_update_mode(struct emu_cpu *c)
{
	const struct x86_seg *cs = &c->seg[SEG_CS];
	bool user;

	if (!(c->cr0 & X86_CR0_PE)) {
		c->mode = MODE_REAL;
		c->cpl = 0;
	} else if ((c->efer & X86_EFER_LMA) && cs->l) {
		c->mode = MODE_LONG64;
	} else if (c->efer & X86_EFER_LMA) {
		c->mode = cs->db ? MODE_COMPAT32 : MODE_COMPAT16;
	} else if (c->flags & F_VM) {
		c->mode = MODE_PROT16;
		c->cpl = 3;
	} else {
		c->mode = cs->db ? MODE_PROT32 : MODE_PROT16;
	}
	c->long64 = c->mode == MODE_LONG64;
	c->def_size = (c->long64 || cs->db) ? 4 : 2;
	if (c->flags & F_VM)
		c->def_size = 2;
	c->stack_size = c->long64 ? 8 : (c->seg[SEG_SS].db && !(c->flags & F_VM)) ? 4 : 2;
	user = c->cpl == 3;
	c->need_r = user ? TLB_RU : TLB_RS;
	c->need_w = user ? TLB_WU : TLB_WS;
	c->need_x = user ? TLB_XU : TLB_XS;
	c->fetch_tag = 0;
}

/* ---- CPUID model ----------------------------------------------------
 *
 * Vendor "TarnTarnTarn" (deliberately not Intel or AMD: a guest must not
 * assume a real vendor's model-specific MSRs or errata), hypervisor leaf
 * 0x40000000 signature "TarnEmuTarn\0". Family 6, model 0xF, stepping 1.
 * Only what the interpreter implements is advertised:
 *   leaf 1 EDX: pse tsc msr pae cx8 pge cmov pat clflush (htt with >1 vCPU)
 *   leaf 1 ECX: cx16 hypervisor
 *   leaf 0x80000001 EDX: syscall nx pdpe1gb rdtscp lm; ECX: lahf_lm
 * Not advertised yet: fpu mmx fxsr sse sse2 (x87/SSE are not implemented),
 * apic (no LAPIC yet), sep (sysenter), mtrr, mce, de, vme.
 * TSC: 1 GHz, derived from CLOCK_MONOTONIC plus a per-vCPU offset.
 * Physical address bits 46, linear 48. */
#define CPUID_MAX_BASIC 7u
#define CPUID_MAX_EXT 0x80000008u

static void str4(uint32_t *r, const char *s)
{
	memcpy(r, s, 4);
}

void emu_cpuid(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	static const char brand[48] = "Tarn emulated x86-64 CPU";
	uint32_t id = c->vcpu ? (uint32_t)c->vcpu->id : 0;
	uint32_t nr = c->vcpu ? (uint32_t)c->vcpu->vm->nr_vcpus : 1;

	out[0] = out[1] = out[2] = out[3] = 0;
	switch (leaf) {
	case 0:
		out[0] = CPUID_MAX_BASIC;
		str4(&out[1], "Tarn");
		str4(&out[3], "Tarn");
		str4(&out[2], "Tarn");
		break;
	case 1:
		out[0] = (6u << 8) | (0xfu << 4) | 1u;
		out[1] = ((id & 0xff) << 24) | ((nr > 255 ? 255 : nr) << 16) | (8u << 8);
		out[2] = (1u << 13) | (1u << 31);
		out[3] = (1u << 3) | (1u << 4) | (1u << 5) | (1u << 6) | (1u << 8) | (1u << 13) |
			 (1u << 15) | (1u << 16) | (1u << 19) | (nr > 1 ? 1u << 28 : 0);
		break;
	case 0x40000000:
		out[0] = 0x40000000;
		str4(&out[1], "Tarn");
		str4(&out[2], "EmuT");
		memcpy(&out[3], "arn", 4);
		break;
	case 0x80000000:
		out[0] = CPUID_MAX_EXT;
		break;
	case 0x80000001:
		out[2] = 1u << 0;
		out[3] = (1u << 11) | (1u << 20) | (1u << 26) | (1u << 27) | (1u << 29);
		break;
	case 0x80000002: case 0x80000003: case 0x80000004:
		memcpy(out, brand + 16 * (leaf - 0x80000002), 16);
		break;
	case 0x80000008:
		out[0] = (48u << 8) | 46u;
		break;
	default:
		break;
	}
	(void)sub;
}

/* ---- MSRs ---- */
#define MSR_TSC 0x10
#define MSR_PLATFORM_ID 0x17
#define MSR_APIC_BASE 0x1b
#define MSR_MTRRCAP 0xfe
#define MSR_SYSENTER_CS 0x174
#define MSR_SYSENTER_ESP 0x175
#define MSR_SYSENTER_EIP 0x176
#define MSR_MCG_CAP 0x179
#define MSR_MCG_STATUS 0x17a
#define MSR_MISC_ENABLE 0x1a0
#define MSR_PAT 0x277
#define MSR_MTRR_DEF_TYPE 0x2ff
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SFMASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KGS_BASE 0xc0000102
#define MSR_TSC_AUX 0xc0000103

static uint64_t host_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

uint64_t emu_rdtsc(struct emu_cpu *c)
{
	return host_ns() + (uint64_t)c->tsc_offset;
}

static bool canonical(uint64_t v)
{
	return (uint64_t)((int64_t)(v << 16) >> 16) == v;
}

int emu_rdmsr(struct emu_cpu *c, uint32_t msr, uint64_t *val)
{
	switch (msr) {
	case MSR_TSC: *val = emu_rdtsc(c); return 0;
	case MSR_PLATFORM_ID: *val = 0; return 0;
	case MSR_APIC_BASE: *val = c->apic_base; return 0;
	case MSR_MTRRCAP: *val = 0; return 0;
	case MSR_SYSENTER_CS: *val = c->sysenter_cs; return 0;
	case MSR_SYSENTER_ESP: *val = c->sysenter_esp; return 0;
	case MSR_SYSENTER_EIP: *val = c->sysenter_eip; return 0;
	case MSR_MCG_CAP: case MSR_MCG_STATUS: *val = 0; return 0;
	case MSR_MISC_ENABLE: *val = c->misc_enable; return 0;
	case MSR_PAT: *val = c->pat; return 0;
	case MSR_MTRR_DEF_TYPE: *val = 0; return 0;
	case MSR_EFER: *val = c->efer; return 0;
	case MSR_STAR: *val = c->star; return 0;
	case MSR_LSTAR: *val = c->lstar; return 0;
	case MSR_CSTAR: *val = c->cstar; return 0;
	case MSR_SFMASK: *val = c->sfmask; return 0;
	case MSR_FS_BASE: *val = c->seg[SEG_FS].base; return 0;
	case MSR_GS_BASE: *val = c->seg[SEG_GS].base; return 0;
	case MSR_KGS_BASE: *val = c->kgs_base; return 0;
	case MSR_TSC_AUX: *val = c->tsc_aux; return 0;
	default:
		return -ENOENT;
	}
}

int emu_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t val)
{
	switch (msr) {
	case MSR_TSC:
		c->tsc_offset = (int64_t)(val - host_ns());
		return 0;
	case MSR_APIC_BASE:
		if (val & ~0xfffffffff900ULL) /* reserved bits */
			return -EINVAL;
		c->apic_base = val;
		return 0;
	case MSR_SYSENTER_CS: c->sysenter_cs = val & 0xffff; return 0;
	case MSR_SYSENTER_ESP: if (!canonical(val)) return -EINVAL; c->sysenter_esp = val; return 0;
	case MSR_SYSENTER_EIP: if (!canonical(val)) return -EINVAL; c->sysenter_eip = val; return 0;
	case MSR_MCG_STATUS: return val ? -EINVAL : 0;
	case MSR_MISC_ENABLE: c->misc_enable = val; return 0;
	case MSR_PAT:
		for (int i = 0; i < 8; i++) {
			unsigned t = (val >> (8 * i)) & 0xff;
			if (t == 2 || t == 3 || t > 7)
				return -EINVAL;
		}
		c->pat = val;
		return 0;
	case MSR_MTRR_DEF_TYPE: return 0;
	case MSR_EFER: {
		uint64_t allowed = X86_EFER_SCE | X86_EFER_LME | X86_EFER_NXE;

		if (val & ~(allowed | X86_EFER_LMA))
			return -EINVAL;
		/* LME cannot change while paging is on. */
		if ((c->cr0 & X86_CR0_PG) && ((val ^ c->efer) & X86_EFER_LME))
			return -EINVAL;
		val = (val & allowed) | (c->efer & X86_EFER_LMA);
		if ((val ^ c->efer) & X86_EFER_NXE)
			emu_tlb_flush(c);
		c->efer = val;
		emu_update_mode(c);
		return 0;
	}
	case MSR_STAR: c->star = val; return 0;
	case MSR_LSTAR: if (!canonical(val)) return -EINVAL; c->lstar = val; return 0;
	case MSR_CSTAR: if (!canonical(val)) return -EINVAL; c->cstar = val; return 0;
	case MSR_SFMASK: c->sfmask = val & 0xffffffffULL; return 0;
	case MSR_FS_BASE: if (!canonical(val)) return -EINVAL; c->seg[SEG_FS].base = val; return 0;
	case MSR_GS_BASE: if (!canonical(val)) return -EINVAL; c->seg[SEG_GS].base = val; return 0;
	case MSR_KGS_BASE: if (!canonical(val)) return -EINVAL; c->kgs_base = val; return 0;
	case MSR_TSC_AUX: c->tsc_aux = val & 0xffffffffULL; return 0;
	default:
		return -ENOENT;
	}
}

/* ---- interrupts ---- */

int emu_inject_interrupt(struct vcpu *vcpu, uint8_t vector)
{
	struct emu_cpu *c = vcpu->priv;

	if (vector < 16)
		return -EINVAL;
	atomic_fetch_or(&c->irr[vector / 64], 1ULL << (vector % 64));
	atomic_fetch_or(&c->attn, ATTN_IRQ);
	return 0;
}

uint64_t emu_insn_count(const struct vcpu *vcpu)
{
	const struct emu_cpu *c = vcpu->priv;

	return c->insns;
}

/* Highest pending vector, claimed atomically. */
bool emu_take_irq(struct emu_cpu *c, int *vec)
{
	atomic_fetch_and(&c->attn, ~ATTN_IRQ);
	for (int i = 3; i >= 0; i--) {
		uint64_t v = atomic_load(&c->irr[i]);

		while (v) {
			int bit = 63 - __builtin_clzll(v);
			uint64_t old = atomic_fetch_and(&c->irr[i], ~(1ULL << bit));

			if (old & (1ULL << bit)) {
				*vec = i * 64 + bit;
				for (int j = 0; j < 4; j++)
					if (atomic_load(&c->irr[j]))
						atomic_fetch_or(&c->attn, ATTN_IRQ);
				return true;
			}
			v = atomic_load(&c->irr[i]);
		}
	}
	return false;
}

/* ---- cpu_ops ---- */

static int emu_probe(char *why, size_t why_len)
{
	(void)why;
	(void)why_len;
	return 0;
}

static int emu_vm_init(struct vm *vm)
{
	vm->cpu_priv = NULL;
	return 0;
}

static void emu_vm_destroy(struct vm *vm)
{
	(void)vm;
}

static void reset_state(struct emu_cpu *c)
{
	for (int i = 0; i < 6; i++) {
		c->seg[i] = (struct x86_seg){ .limit = 0xffff, .type = 3, .s = 1, .present = 1 };
	}
	c->seg[SEG_CS].sel = 0xf000;
	c->seg[SEG_CS].base = 0xffff0000ULL;
	c->seg[SEG_CS].type = 0xb;
	c->rip = 0xfff0;
	c->flags = 2;
	c->cr0 = X86_CR0_ET | X86_CR0_CD | X86_CR0_NW;
	c->gdt.limit = 0xffff;
	c->idt.limit = 0xffff;
	c->tr = (struct x86_seg){ .limit = 0xffff, .type = 0xb, .present = 1 };
	c->ldt = (struct x86_seg){ .limit = 0xffff, .type = 2, .present = 1 };
	c->dr[6] = 0xffff0ff0;
	c->dr[7] = 0x400;
}

static int emu_vcpu_init(struct vcpu *vcpu)
{
	struct emu_cpu *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	c->vcpu = vcpu;
	c->gm = &vcpu->vm->mem;
	c->delivering = -1;
	c->apic_base = 0xfee00000ULL | (1ULL << 11) | (vcpu->id == 0 ? (1ULL << 8) : 0);
	c->pat = 0x0007040600070406ULL;
	c->misc_enable = 1; /* fast strings */
	c->tsc_offset = -(int64_t)host_ns();
	reset_state(c);
	emu_update_mode(c);
	/* APs wait for INIT/SIPI, as on hardware (and under KVM), unless
	 * given a start state with set_state(). */
	c->wait_sipi = vcpu->id != 0;
	vcpu->priv = c;
	return 0;
}

static void emu_vcpu_destroy(struct vcpu *vcpu)
{
	free(vcpu->priv);
	vcpu->priv = NULL;
}

/* Hand out the next queued port/MMIO write as an exit. */
static bool next_write(struct emu_cpu *c, struct vcpu_exit *exit)
{
	struct wq_entry *w;

	if (c->wq_head >= c->wq_n) {
		c->wq_head = c->wq_n = 0;
		return false;
	}
	w = &c->wq[c->wq_head++];
	if (w->io) {
		exit->reason = VCPU_EXIT_IO;
		exit->io.port = (uint16_t)w->addr;
		exit->io.size = w->len;
		exit->io.write = true;
		exit->io.count = 1;
		exit->io.data = w->data;
	} else {
		exit->reason = VCPU_EXIT_MMIO;
		exit->mmio.gpa = w->addr;
		exit->mmio.len = w->len;
		exit->mmio.write = true;
		exit->mmio.data = w->data;
	}
	return true;
}

static int emu_vcpu_run(struct vcpu *vcpu, struct vcpu_exit *exit)
{
	struct emu_cpu *c = vcpu->priv;

	c->exit = exit;
	if (c->wait_sipi) {
		atomic_fetch_and(&c->attn, ~ATTN_KICK);
		exit->reason = VCPU_EXIT_HLT;
		return 0;
	}
	if (next_write(c, exit))
		return 0;
	switch (setjmp(c->jb)) {
	case JMP_NONE:
		break;
	case JMP_EXIT:
		/* The instruction restarts when we are called again. */
		c->flags = c->insn_flags;
		c->rip = c->insn_rip;
		c->rlog_idx = 0;
		c->wq_n = c->wq_head = 0;
		c->exit_ready = false;
		return 0;
	case JMP_FAULT:
		c->flags = c->insn_flags;
		c->rip = c->insn_rip;
		c->rlog_n = c->rlog_idx = 0;
		c->wq_n = c->wq_head = 0;
		c->exit_ready = false;
		if (emu_deliver_pending_exception(c)) {
			pr_warn_ratelimited("emu: vcpu %d: triple fault at rip 0x%llx",
					    vcpu->id, (unsigned long long)c->rip);
			exit->reason = VCPU_EXIT_SHUTDOWN;
			return 0;
		}
		break;
	}
	for (;;) {
		if (unlikely(atomic_load_explicit(&c->attn, memory_order_relaxed)) && !c->rlog_n) {
			unsigned a = atomic_load(&c->attn);
			int vec;

			if (a & ATTN_KICK) {
				atomic_fetch_and(&c->attn, ~ATTN_KICK);
				exit->reason = VCPU_EXIT_INTR;
				return 0;
			}
			if ((a & ATTN_IRQ) && (c->flags & F_IF) && !c->shadow && emu_take_irq(c, &vec)) {
				c->insn_rip = c->rip;
				c->insn_flags = c->flags;
				emu_deliver(c, vec, -1, false, true, c->rip);
			}
		}
		emu_exec_block(c);
		if (unlikely(c->exit_ready)) {
			c->exit_ready = false;
			next_write(c, exit); /* else the instruction filled *exit (hlt) */
			return 0;
		}
	}
}

static int emu_get_state(struct vcpu *vcpu, struct x86_state *st)
{
	struct emu_cpu *c = vcpu->priv;

	memset(st, 0, sizeof(*st));
	memcpy(st->gpr, c->r, sizeof(st->gpr));
	st->rip = c->rip;
	st->rflags = c->flags;
	st->es = c->seg[SEG_ES];
	st->cs = c->seg[SEG_CS];
	st->ss = c->seg[SEG_SS];
	st->ds = c->seg[SEG_DS];
	st->fs = c->seg[SEG_FS];
	st->gs = c->seg[SEG_GS];
	st->tr = c->tr;
	st->ldt = c->ldt;
	st->gdt = c->gdt;
	st->idt = c->idt;
	st->cr0 = c->cr0;
	st->cr2 = c->cr2;
	st->cr3 = c->cr3;
	st->cr4 = c->cr4;
	st->cr8 = c->cr8;
	st->efer = c->efer;
	st->apic_base = c->apic_base;
	return 0;
}

static int emu_set_state(struct vcpu *vcpu, const struct x86_state *st)
{
	struct emu_cpu *c = vcpu->priv;

	memcpy(c->r, st->gpr, sizeof(c->r));
	c->rip = st->rip;
	c->flags = (st->rflags & 0x3f7fd7ULL) | 2;
	c->seg[SEG_ES] = st->es;
	c->seg[SEG_CS] = st->cs;
	c->seg[SEG_SS] = st->ss;
	c->seg[SEG_DS] = st->ds;
	c->seg[SEG_FS] = st->fs;
	c->seg[SEG_GS] = st->gs;
	c->tr = st->tr;
	c->ldt = st->ldt;
	c->gdt = st->gdt;
	c->idt = st->idt;
	c->cr0 = st->cr0 | X86_CR0_ET;
	c->cr2 = st->cr2;
	c->cr3 = st->cr3;
	c->cr4 = st->cr4;
	c->cr8 = st->cr8 & 0xf;
	c->efer = st->efer & (X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE);
	c->apic_base = st->apic_base;
	/* CPL is SS.DPL outside real mode (the convention KVM uses too). */
	c->cpl = (c->cr0 & X86_CR0_PE) ? c->seg[SEG_SS].dpl : 0;
	c->rlog_n = c->rlog_idx = 0;
	c->wq_n = c->wq_head = 0;
	c->shadow = 0;
	c->delivering = -1;
	c->wait_sipi = false;
	emu_tlb_flush(c);
	emu_update_mode(c);
	return 0;
}

static void emu_kick(struct vcpu *vcpu)
{
	struct emu_cpu *c = vcpu->priv;

	atomic_fetch_or(&c->attn, ATTN_KICK);
}

static int emu_irq_line(struct vm *vm, unsigned gsi, int level)
{
	(void)vm;
	(void)gsi;
	(void)level;
	return -ENOSYS; /* no interrupt controller yet: see emu_inject_interrupt() */
}

static int emu_set_cpuid(struct vcpu *vcpu)
{
	(void)vcpu;
	return 0; /* the emulator's model is fixed: see emu_cpuid() */
}

const struct cpu_ops emu_cpu_ops = {
	.name = "emu",
	.probe = emu_probe,
	.vm_init = emu_vm_init,
	.vm_destroy = emu_vm_destroy,
	.vcpu_init = emu_vcpu_init,
	.vcpu_destroy = emu_vcpu_destroy,
	.vcpu_run = emu_vcpu_run,
	.get_state = emu_get_state,
	.set_state = emu_set_state,
	.kick = emu_kick,
	.irq_line = emu_irq_line,
	.set_cpuid = emu_set_cpuid,
};
