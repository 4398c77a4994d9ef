/* cpu/emu: the software x86-64 backend behind struct cpu_ops. This file
 * holds the run loop, state conversion, kick and interrupt injection, the
 * CPUID model and the MSRs; decode/execute is exec.c, the MMU mmu.c,
 * exceptions and descriptor-table work exc.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/emu/emu.h"
#include "cpu/emu/emu_priv.h"
#include "cpu/emu/platform.h"
#include "arch/x86/cpuid.h"
#include "hw/lapic.h"

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

/* ---- CPUID ----------------------------------------------------------
 *
 * The model is a table (arch/x86/cpuid.c: cpuid_emu_model, or the one a
 * snapshot brought), one per vCPU with the topology fields its own. */
#define EMU_TSC_HZ 1000000000ULL
_Static_assert(EMU_TSC_HZ == CPUID_EMU_TSC_KHZ * 1000ULL, "the model advertises the emulator's TSC");

/* KVM's paravirtual clock (kvmclock), the interface Linux takes its TSC
 * frequency from instead of calibrating against the PIT: KVM's signature at
 * CPUID 0x40000100, beside tarn's own at 0x40000000 (where KVM sits when a
 * host also offers Hyper-V's interface), with only CLOCKSOURCE2 and the
 * stable-TSC bit -- no other KVM feature is claimed. */
#define MSR_KVM_WALL_CLOCK_NEW 0x4b564d00
#define MSR_KVM_SYSTEM_TIME_NEW 0x4b564d01
#define PVCLOCK_TSC_STABLE_BIT 1u

struct pvclock_vcpu_time_info {
	uint32_t version, pad0;
	uint64_t tsc_timestamp, system_time;
	uint32_t tsc_to_system_mul;
	int8_t tsc_shift;
	uint8_t flags, pad[2];
} __attribute__((packed));
_Static_assert(sizeof(struct pvclock_vcpu_time_info) == 32, "pvclock ABI");

struct pvclock_wall_clock {
	uint32_t version, sec, nsec;
} __attribute__((packed));
_Static_assert(sizeof(struct pvclock_wall_clock) == 12, "pvclock ABI");

void emu_cpuid(struct emu_cpu *c, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	const struct cpuid_entry *e = cpuid_find(&c->cpuid, leaf, sub);

	out[0] = e ? e->eax : 0;
	out[1] = e ? e->ebx : 0;
	out[2] = e ? e->ecx : 0;
	out[3] = e ? e->edx : 0;
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
#define MSR_TSC_DEADLINE 0x6e0
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

/* The guest's time (ns): it stands still while the VM is paused. */
static inline uint64_t emu_now(const struct emu_cpu *c)
{
	return guest_clock_ns(&c->vcpu->vm->clock);
}

uint64_t emu_rdtsc(struct emu_cpu *c)
{
	return emu_now(c) + (uint64_t)c->tsc_offset;
}

/* The LAPIC timer's deadline, cached for the run loop. Only this vCPU's
 * thread moves it earlier (its register writes and MSRs); another thread
 * can only stop it (INIT), which leaves a stale early value that costs one
 * needless lapic_timer_update. */
static void timer_refresh(struct emu_cpu *c)
{
	c->timer_deadline = lapic_next_deadline_ns(c->lapic);
}

/* Between instruction blocks: fire the LAPIC timer when it is due. */
static inline void timer_poll(struct emu_cpu *c)
{
	uint64_t now;

	if (likely(c->timer_deadline == UINT64_MAX))
		return;
	now = emu_now(c);
	if (now < c->timer_deadline)
		return;
	lapic_timer_update(c->lapic, now); /* kicks us: ATTN_IRQ */
	timer_refresh(c);
}

/* The guest's kvmclock MSRs point at structures in its RAM that we fill.
 * The TSC runs at exactly 1 GHz off the host's monotonic clock, so one
 * write when the guest enables the clock (and again after it writes the
 * TSC) stays right: scale 1:1 (mul 2^31, shift 1). VM time is nanoseconds
 * since the BSP was created. An address outside RAM gets #GP. */
int emu_kvmclock_write_time(struct emu_cpu *c)
{
	uint64_t now = emu_now(c), gpa = c->kvm_system_time & ~1ULL;
	struct pvclock_vcpu_time_info t = {
		.version = 2, /* even: not being updated */
		.tsc_timestamp = now + (uint64_t)c->tsc_offset,
		.system_time = now + (uint64_t)c->clock_offset,
		.tsc_to_system_mul = 1u << 31,
		.tsc_shift = 1,
		.flags = PVCLOCK_TSC_STABLE_BIT,
	};

	if (!(c->kvm_system_time & 1))
		return 0;
	return gm_write(c->gm, gpa, &t, sizeof(t)) ? -EINVAL : 0;
}

static int kvmclock_write_wall(struct emu_cpu *c)
{
	struct timespec rt;
	uint64_t boot_ns;
	struct pvclock_wall_clock w = { .version = 2 };

	clock_gettime(CLOCK_REALTIME, &rt);
	/* Wall-clock time at VM time 0. */
	boot_ns = (uint64_t)rt.tv_sec * 1000000000ULL + (uint64_t)rt.tv_nsec -
		  (emu_now(c) + (uint64_t)c->clock_offset);
	w.sec = (uint32_t)(boot_ns / 1000000000ULL);
	w.nsec = (uint32_t)(boot_ns % 1000000000ULL);
	return gm_write(c->gm, c->kvm_wall_clock, &w, sizeof(w)) ? -EINVAL : 0;
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
	case MSR_APIC_BASE: *val = lapic_get_apic_base(c->lapic); return 0;
	case MSR_TSC_DEADLINE: *val = lapic_get_tsc_deadline(c->lapic); return 0;
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
	case MSR_KVM_SYSTEM_TIME_NEW: *val = c->kvm_system_time; return 0;
	case MSR_KVM_WALL_CLOCK_NEW: *val = c->kvm_wall_clock; return 0;
	default:
		return -ENOENT;
	}
}

int emu_wrmsr(struct emu_cpu *c, uint32_t msr, uint64_t val)
{
	switch (msr) {
	case MSR_TSC: {
		uint64_t now = emu_now(c);

		c->tsc_offset = (int64_t)(val - now);
		lapic_set_tsc_clock(c->lapic, EMU_TSC_HZ, now, val);
		timer_refresh(c);
		return emu_kvmclock_write_time(c);
	}
	case MSR_KVM_SYSTEM_TIME_NEW:
		c->kvm_system_time = val;
		return emu_kvmclock_write_time(c);
	case MSR_KVM_WALL_CLOCK_NEW:
		c->kvm_wall_clock = val;
		return kvmclock_write_wall(c);
	case MSR_APIC_BASE:
		/* Address bits above MAXPHYADDR (46) are reserved; the LAPIC
		 * refuses the rest (x2APIC, reserved low bits). */
		if (val & ~((1ULL << 46) - 1))
			return -EINVAL;
		if (lapic_set_apic_base(c->lapic, val))
			return -EINVAL;
		timer_refresh(c);
		return 0;
	case MSR_TSC_DEADLINE:
		lapic_set_tsc_deadline(c->lapic, val, emu_now(c));
		timer_refresh(c);
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

/* ---- interrupts and halting ----
 *
 * The LAPIC (hw/lapic.c) holds IRR/ISR/TPR; this vCPU asks it for work at
 * instruction boundaries when it says there is some: its kick (any thread)
 * sets ATTN_IRQ and wakes a halted vCPU. NMI, INIT and SIPI are taken at
 * once; a maskable interrupt needs RFLAGS.IF = 1 and no interrupt shadow,
 * and while it waits for that, ATTN_IRQ_WAIT makes the fast loop stop after
 * each instruction so the run loop can look at IF again (cheaply: no LAPIC
 * lock until IF is set). */

void emu_wake(struct emu_cpu *c, unsigned bits)
{
	atomic_fetch_or(&c->attn, bits);
	/* Under wait_lock: halt_wait() tests attn under it before sleeping,
	 * so the signal cannot fall between its test and its wait. */
	pthread_mutex_lock(&c->wait_lock);
	pthread_cond_signal(&c->wait_cond);
	pthread_mutex_unlock(&c->wait_lock);
}

int emu_inject_interrupt(struct vcpu *vcpu, uint8_t vector)
{
	struct emu_cpu *c = vcpu->priv;

	if (vector < 16)
		return -EINVAL;
	lapic_set_irr(c->lapic, vector);
	return 0;
}

uint64_t emu_insn_count(const struct vcpu *vcpu)
{
	const struct emu_cpu *c = vcpu->priv;

	return c->insns;
}

void emu_get_sse(const struct vcpu *vcpu, uint64_t xmm[16][2], uint32_t *mxcsr)
{
	const struct emu_cpu *c = vcpu->priv;

	memcpy(xmm, c->fpu.xmm, sizeof(c->fpu.xmm));
	*mxcsr = c->fpu.mxcsr;
}

void emu_set_sse(struct vcpu *vcpu, const uint64_t xmm[16][2], uint32_t mxcsr)
{
	struct emu_cpu *c = vcpu->priv;

	memcpy(c->fpu.xmm, xmm, sizeof(c->fpu.xmm));
	c->fpu.mxcsr = mxcsr & c->fpu.mxcsr_mask;
	c->fpu.fcw = 0x37f;
	c->fpu.fsw = 0;
	c->fpu.ftw = 0;
	c->fpu.fop = 0;
	c->fpu.fip = c->fpu.fdp = 0;
	memset(c->fpu.st, 0, sizeof(c->fpu.st));
}

void emu_set_insn_limit(struct vcpu *vcpu, uint64_t count)
{
	struct emu_cpu *c = vcpu->priv;

	c->insn_limit = count;
}

bool emu_lapic_read(struct emu_cpu *c, uint64_t gpa, int size, uint64_t *val)
{
	uint64_t v = 0;

	if (!c->lapic || !lapic_owns_gpa(c->lapic, gpa))
		return false;
	lapic_mmio_read(c->lapic, (uint32_t)(gpa & (LAPIC_MMIO_SIZE - 1)), &v, (unsigned)size);
	*val = v;
	return true;
}

bool emu_lapic_write(struct emu_cpu *c, uint64_t gpa, int size, uint64_t val)
{
	if (!c->lapic || !lapic_owns_gpa(c->lapic, gpa))
		return false;
	lapic_mmio_write(c->lapic, (uint32_t)(gpa & (LAPIC_MMIO_SIZE - 1)), &val, (unsigned)size);
	timer_refresh(c);
	/* EOI, TPR and self-IPIs change what can be delivered: look again. */
	atomic_fetch_or(&c->attn, ATTN_IRQ);
	return true;
}

void emu_set_cr8(struct emu_cpu *c, uint64_t v)
{
	uint32_t tpr = (uint32_t)(v & 0xf) << 4;

	lapic_mmio_write(c->lapic, LAPIC_TPR, &tpr, 4);
	atomic_fetch_or(&c->attn, ATTN_IRQ); /* a lower TPR may let one through */
}

uint64_t emu_get_cr8(struct emu_cpu *c)
{
	uint32_t tpr = 0;

	lapic_mmio_read(c->lapic, LAPIC_TPR, &tpr, 4);
	return tpr >> 4;
}

/* Architectural reset, also what INIT does (SDM 9.1.1, Table 9-1). */
static void reset_state(struct emu_cpu *c)
{
	memset(c->r, 0, sizeof(c->r));
	for (int i = 0; i < 6; i++) {
		c->seg[i] = (struct x86_seg){ .limit = 0xffff, .type = 3, .s = 1, .present = 1 };
	}
	c->seg[SEG_CS].sel = 0xf000;
	c->seg[SEG_CS].base = 0xffff0000ULL;
	c->seg[SEG_CS].type = 0xb;
	c->rip = 0xfff0;
	c->flags = 2;
	c->cr0 = X86_CR0_ET | X86_CR0_CD | X86_CR0_NW;
	c->cr2 = c->cr3 = c->cr4 = c->efer = 0;
	c->gdt = (struct x86_dtable){ 0, 0xffff };
	c->idt = (struct x86_dtable){ 0, 0xffff };
	c->tr = (struct x86_seg){ .limit = 0xffff, .type = 0xb, .present = 1 };
	c->ldt = (struct x86_seg){ .limit = 0xffff, .type = 2, .present = 1 };
	c->dr[6] = 0xffff0ff0;
	c->dr[7] = 0x400;
	c->rlog_n = c->rlog_idx = 0;
	c->wq_n = c->wq_head = 0;
	c->shadow = 0;
	c->delivering = -1;
	c->in_event = false;
	c->halted = false;
	c->nmi_blocked = false;
	emu_tlb_flush(c);
	emu_update_mode(c);
}

/* INIT (SDM 8.4, 10.4.7.3): the core resets; an AP then waits for a SIPI,
 * the BSP restarts at the reset vector (what KVM does too). */
static void do_init(struct emu_cpu *c)
{
	bool bsp = lapic_get_apic_base(c->lapic) & APIC_BASE_BSP;

	reset_state(c);
	timer_refresh(c); /* the LAPIC's INIT stopped its timer */
	c->wait_sipi = !bsp;
	if (bsp)
		lapic_set_init_state(c->lapic, LAPIC_RUNNING);
}

/* Start-up IPI: real mode at vector << 12 (SDM 8.4.4.1). */
static void do_sipi(struct emu_cpu *c, int vector)
{
	c->seg[SEG_CS].sel = (uint16_t)(vector << 8);
	c->seg[SEG_CS].base = (uint64_t)vector << 12;
	c->rip = 0;
	c->wait_sipi = false;
	c->halted = false;
	emu_update_mode(c);
}

/* At an instruction boundary: take what the LAPIC has for this CPU. */
static void service_events(struct emu_cpu *c)
{
	struct lapic *l = c->lapic;
	int vec = -1;

	if (lapic_take_init(l))
		do_init(c);
	if (c->wait_sipi) {
		vec = lapic_take_sipi(l);
		if (vec >= 0)
			do_sipi(c, vec);
		return; /* takes nothing else before its SIPI */
	}
	/* An NMI blocks further NMIs until the next iret (exc.c). */
	if (!c->nmi_blocked && lapic_take_nmi(l)) {
		vec = EXC_NMI;
		c->nmi_blocked = true;
	} else if ((c->flags & F_IF) && !c->shadow) {
		if (lapic_has_extint(l))
			vec = lapic_ack_extint(l); /* the PIC's INTA cycle */
		if (vec < 0)
			vec = lapic_ack_interrupt(l);
	}
	if (vec >= 0) {
		c->halted = false;
		c->insn_rip = c->rip;
		c->insn_flags = c->flags;
		c->in_event = true;
		emu_deliver(c, vec, -1, false, true, c->rip);
		c->in_event = false;
	}
	/* More to come: an NMI right away, an interrupt once IF allows. A
	 * halted CPU with IF = 0 stays halted (only NMI, INIT, SIPI and new
	 * events kick it). */
	if (!c->nmi_blocked && lapic_has_nmi(l))
		atomic_fetch_or(&c->attn, ATTN_IRQ);
	else if (!c->halted && (lapic_has_extint(l) || lapic_get_interrupt(l) >= 0))
		atomic_fetch_or(&c->attn, ATTN_IRQ_WAIT);
}

static struct timespec ns_to_timespec(uint64_t ns)
{
	return (struct timespec){ .tv_sec = (time_t)(ns / 1000000000ULL),
				  .tv_nsec = (long)(ns % 1000000000ULL) };
}

/* Halted or waiting for a SIPI: sleep until something is for us (a LAPIC
 * event or a kick) or the LAPIC timer is due. */
static void halt_wait(struct emu_cpu *c)
{
	uint64_t deadline = c->timer_deadline;

	pthread_mutex_lock(&c->wait_lock);
	while (!(atomic_load(&c->attn) & (ATTN_KICK | ATTN_IRQ))) {
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&c->wait_cond, &c->wait_lock);
		} else {
			struct timespec ts = ns_to_timespec(guest_clock_host_ns(&c->vcpu->vm->clock, deadline));

			if (emu_now(c) >= deadline)
				break;
			pthread_cond_timedwait(&c->wait_cond, &c->wait_lock, &ts);
		}
	}
	pthread_mutex_unlock(&c->wait_lock);
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
	return emu_platform_init(vm);
}

static void emu_vm_destroy(struct vm *vm)
{
	emu_platform_destroy(vm);
}

static int emu_set_cpuid(struct vcpu *vcpu, const struct cpuid_model *m);

static int emu_vcpu_init(struct vcpu *vcpu)
{
	struct emu_cpu *c = calloc(1, sizeof(*c));
	pthread_condattr_t ca;
	uint64_t now;
	int ret;

	if (!c)
		return -ENOMEM;
	c->vcpu = vcpu;
	now = emu_now(c);
	c->gm = &vcpu->vm->mem;
	ret = emu_platform_add_cpu(vcpu->vm, c);
	if (ret) {
		free(c);
		return ret;
	}
	pthread_mutex_init(&c->wait_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC); /* halt_wait's deadlines */
	pthread_cond_init(&c->wait_cond, &ca);
	pthread_condattr_destroy(&ca);
	c->pat = 0x0007040600070406ULL;
	c->misc_enable = 1; /* fast strings */
	/* One TSC for the whole VM, started with the BSP (vCPUs are created
	 * in order): APs read the same counter, as on one socket. */
	if (vcpu->id && vcpu->vm->vcpus && vcpu->vm->vcpus[0].priv)
		c->clock_offset = ((struct emu_cpu *)vcpu->vm->vcpus[0].priv)->clock_offset;
	else
		c->clock_offset = -(int64_t)now;
	c->tsc_offset = c->clock_offset;
	lapic_set_tsc_clock(c->lapic, EMU_TSC_HZ, now, now + (uint64_t)c->tsc_offset);
	c->timer_deadline = UINT64_MAX;
	reset_state(c);
	emu_fpu_reset(c); /* power-up only: INIT keeps x87/SSE state */
	/* APs wait for INIT/SIPI, as on hardware (and under KVM), unless
	 * given a start state with set_state(). */
	c->wait_sipi = vcpu->id != 0;
	c->insn_limit = UINT64_MAX;
	vcpu->priv = c;
	return emu_set_cpuid(vcpu, NULL);
}

static void emu_vcpu_destroy(struct vcpu *vcpu)
{
	struct emu_cpu *c = vcpu->priv;

	if (!c)
		return;
	emu_platform_remove_cpu(vcpu->vm, c);
	pthread_cond_destroy(&c->wait_cond);
	pthread_mutex_destroy(&c->wait_lock);
	free(c);
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
	/* Dirty pages were taken (a snapshot): forget the writable pages. */
	if (c->dirty_gen != __atomic_load_n(&c->gm->dirty_gen, __ATOMIC_ACQUIRE)) {
		c->dirty_gen = c->gm->dirty_gen;
		emu_tlb_flush(c);
	}
	if (next_write(c, exit))
		return 0;
	/* Writes queued before a kick are all handed out now. */
	c->exit_ready = false;
	switch (setjmp(c->jb)) {
	case JMP_NONE:
		break;
	case JMP_EXIT:
		/* The instruction restarts when we are called again (a
		 * delivery only exits with an error). */
		c->in_event = false;
		c->delivering = -1;
		c->flags = c->insn_flags;
		c->rip = c->insn_rip;
		c->rlog_idx = 0;
		c->wq_n = c->wq_head = 0;
		c->exit_ready = false;
		return 0;
	case JMP_FAULT:
		c->in_event = false; /* a fault in a delivery: escalation below */
		c->flags = c->insn_flags;
		c->rip = c->insn_rip;
		c->rlog_n = c->rlog_idx = 0;
		c->wq_n = c->wq_head = 0;
		c->exit_ready = false;
		if (emu_deliver_pending_exception(c)) {
			pr_warn_ratelimited("emu: vcpu %d: triple fault at rip 0x%llx",
					    vcpu->id, (unsigned long long)c->rip);
			exit->reason = VCPU_EXIT_SHUTDOWN;
			exit->shutdown.state_lost = false;
			return 0;
		}
		break;
	}
	for (;;) {
		unsigned a;

		timer_poll(c);
		a = atomic_load_explicit(&c->attn, memory_order_relaxed);
		/* Events are taken between instructions, never in the middle
		 * of one being replayed (rlog). */
		if (unlikely(a) && !c->rlog_n) {
			if (a & ATTN_KICK) {
				atomic_fetch_and(&c->attn, ~ATTN_KICK);
				exit->reason = VCPU_EXIT_INTR;
				return 0;
			}
			if ((a & ATTN_IRQ) || ((a & ATTN_IRQ_WAIT) && (c->flags & F_IF) && !c->shadow)) {
				atomic_fetch_and(&c->attn, ~(ATTN_IRQ | ATTN_IRQ_WAIT));
				service_events(c);
			}
		}
		if (unlikely(c->halted || c->wait_sipi)) {
			halt_wait(c);
			continue;
		}
		emu_exec_block(c);
		if (unlikely(c->exit_ready)) {
			c->exit_ready = false;
			if (!next_write(c, exit) && exit->reason == VCPU_EXIT_HLT) {
				/* Report the hlt once; the next vcpu_run sleeps in
				 * halt_wait() until an event or a kick. The first
				 * look at the LAPIC takes an interrupt that was
				 * waiting for the sti before this hlt. */
				c->halted = true;
				atomic_fetch_or(&c->attn, ATTN_IRQ);
			}
			return 0;
		}
		if (unlikely(c->insns >= c->insn_limit)) {
			exit->reason = VCPU_EXIT_INTR;
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
	st->cr8 = emu_get_cr8(c);
	st->efer = c->efer;
	st->apic_base = lapic_get_apic_base(c->lapic);
	emu_fx_get(c, st->fxsave);
	memcpy(st->dr, c->dr, sizeof(st->dr));
	st->dr6 = c->dr[6];
	st->dr7 = c->dr[7];
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		if (emu_rdmsr(c, x86_state_msr_index[i], &st->msr[i]))
			return -EIO; /* the list names an MSR we do not have */
	lapic_page_get(c->lapic, st->lapic, emu_now(c));
	/* Between instructions nothing is half delivered (exc/irq stay 0). */
	st->ev = (struct x86_events){
		.mp_state = c->wait_sipi ? X86_MP_WAIT_SIPI : c->halted ? X86_MP_HALTED : X86_MP_RUNNING,
		.shadow = c->shadow > 0,
		.nmi_pending = lapic_has_nmi(c->lapic),
		.nmi_masked = c->nmi_blocked,
	};
	st->parts = X86_STATE_ALL;
	return 0;
}

/* A vCPU's run state and pending events. An exception KVM was delivering
 * cannot be taken over (-EOPNOTSUPP); an interrupt it was delivering goes
 * back to the LAPIC's IRR (-EOPNOTSUPP when it came from the PIC). */
static int set_state_events(struct emu_cpu *c, const struct x86_events *ev)
{
	if (ev->exc_injected || (ev->irq_injected && ev->irq_soft))
		return -EOPNOTSUPP;
	if (ev->irq_injected && lapic_unaccept_interrupt(c->lapic, ev->irq_vector))
		return -EOPNOTSUPP;
	c->wait_sipi = ev->mp_state == X86_MP_WAIT_SIPI;
	c->halted = ev->mp_state == X86_MP_HALTED;
	lapic_set_init_state(c->lapic, c->wait_sipi ? LAPIC_WAIT_FOR_SIPI : LAPIC_RUNNING);
	c->shadow = ev->shadow;
	c->nmi_blocked = ev->nmi_masked;
	lapic_set_nmi_pending(c->lapic, ev->nmi_pending);
	return 0;
}

/* The parts beyond the registers, checked as the guest's own writes would
 * be (an MXCSR FXRSTOR refuses, an MSR value WRMSR refuses: -EINVAL). */
static int set_state_parts(struct emu_cpu *c, const struct x86_state *st)
{
	if ((st->parts & X86_STATE_FPU) && emu_fx_set(c, st->fxsave))
		return -EINVAL;
	if (st->parts & X86_STATE_DEBUG) {
		memcpy(c->dr, st->dr, sizeof(st->dr));
		c->dr[6] = st->dr6;
		c->dr[7] = st->dr7;
	}
	if (st->parts & X86_STATE_LAPIC) { /* before IA32_TSC_DEADLINE: the timer's mode */
		if (lapic_page_set(c->lapic, st->lapic, emu_now(c)))
			return -EINVAL;
		timer_refresh(c);
	}
	for (int i = 0; (st->parts & X86_STATE_MSR) && i < X86_STATE_NR_MSRS; i++)
		if (emu_wrmsr(c, x86_state_msr_index[i], st->msr[i]))
			return -EINVAL;
	return 0;
}

static int emu_set_state(struct vcpu *vcpu, const struct x86_state *st)
{
	struct emu_cpu *c = vcpu->priv;

	/* IA32_APIC_BASE first, the one thing that can be refused. 0 keeps
	 * the current value (as the KVM backend does); the BSP flag is this
	 * vCPU's own whatever the state says (APs get the BSP's boot state). */
	if (st->apic_base) {
		uint64_t base = (st->apic_base & ~APIC_BASE_BSP) |
				(lapic_get_apic_base(c->lapic) & APIC_BASE_BSP);

		if ((base >> 46) || lapic_set_apic_base(c->lapic, base))
			return -EINVAL;
		timer_refresh(c);
	}
	if (set_state_parts(c, st))
		return -EINVAL;
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
	emu_set_cr8(c, st->cr8 & 0xf);
	c->efer = st->efer & (X86_EFER_SCE | X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE);
	/* CPL is SS.DPL outside real mode (the convention KVM uses too). */
	c->cpl = (c->cr0 & X86_CR0_PE) ? c->seg[SEG_SS].dpl : 0;
	c->rlog_n = c->rlog_idx = 0;
	c->wq_n = c->wq_head = 0;
	c->shadow = 0;
	c->delivering = -1;
	c->in_event = false;
	c->wait_sipi = false;
	c->halted = false;
	c->nmi_blocked = false;
	lapic_set_init_state(c->lapic, LAPIC_RUNNING);
	emu_tlb_flush(c);
	emu_update_mode(c);
	return st->parts & X86_STATE_EVENTS ? set_state_events(c, &st->ev) : 0;
}

static void emu_kick(struct vcpu *vcpu)
{
	struct emu_cpu *c = vcpu->priv;

	if (c)
		emu_wake(c, ATTN_KICK);
}

static int emu_irq_line(struct vm *vm, unsigned gsi, int level)
{
	return emu_platform_irq_line(vm, gsi, level);
}

/* The emulator's own model, or a snapshot's when it asks for nothing the
 * emulator lacks (-EOPNOTSUPP). */
static int emu_set_cpuid(struct vcpu *vcpu, const struct cpuid_model *m)
{
	struct emu_cpu *c = vcpu->priv;
	struct cpuid_model own;

	cpuid_emu_model(&own, CPUID_EMU_TSC_KHZ);
	if (m && cpuid_missing(m, &own, NULL, 0))
		return -EOPNOTSUPP;
	c->cpuid = m ? *m : own;
	c->cpuid.n = cpuid_apply_policy(c->cpuid.e, c->cpuid.n, (unsigned)vcpu->id, (unsigned)vcpu->vm->nr_vcpus);
	return 0;
}

static int emu_get_cpuid(struct vcpu *vcpu, struct cpuid_model *m)
{
	*m = ((struct emu_cpu *)vcpu->priv)->cpuid;
	return 0;
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
	.signal_msi = emu_platform_signal_msi,
	.set_cpuid = emu_set_cpuid,
	.get_cpuid = emu_get_cpuid,
	.vm_pause = emu_platform_pause,
	.platform_get = emu_platform_get,
	.platform_set = emu_platform_set,
};
