/* The emulator side: one vCPU on fake guest RAM in 64-bit mode.
 *
 * Cases run at CPL 3 in the state Linux gives a 64-bit process: its GDT
 * selectors (user CS 0x33, SS 0x2b, null DS/ES), RFLAGS.IF set with IOPL 0,
 * CR0.AM (alignment checks when a case sets RFLAGS.AC), EFER.NXE, int3 and
 * into through DPL 3 gates, and no I/O bitmap, so privileged and I/O
 * instructions fault as they do on the host. Its pages mirror the native
 * child's (difftest.h): the same ones present, writable, executable.
 *
 * Guest physical layout (4 MiB):
 *   [0, 2 MiB)       scratch for the length check (every canonical linear
 *                    address maps here through the "alias" page tables)
 *   [2 MiB, 4 MiB)   GDT, IDT, TSS, IST stack (seen at KBASE + 2 MiB),
 *                    page tables, and the physical pages behind DT_CODE,
 *                    DT_RO, DT_DATA (two pages, not physically adjacent,
 *                    as an access straddling them must not care) and
 *                    DT_CTL.
 * Exceptions go through IST1 to a one-byte hlt per vector, so the guest
 * stack (in the data page) is not touched by the frame. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>

#include "bus/bus.h"
#include "core/log.h"
#include "core/vm.h"
#include "cpu/cpu.h"
#include "cpu/emu/emu.h"
#include "difftest.h"
#include "mem/gm.h"

#define RAM_SIZE (4u << 20)
#define P_GDT 0x200000
#define P_IDT 0x201000
#define P_TSS 0x202000
#define P_IST_TOP 0x204000
#define P_PML4 0x205000 /* difftest layout */
#define P_PDPT 0x206000
#define P_PD 0x207000
#define P_PT 0x208000
#define A_PML4 0x209000 /* alias layout: everything -> [0, 2 MiB) */
#define A_PDPT 0x20a000
#define A_PD 0x20b000
#define K_PDPT 0x20c000 /* the system area's linear mapping */
#define K_PD 0x20d000
#define P_CODE 0x210000
#define P_DATA 0x211000
#define P_CTL 0x212000
#define P_DATA2 0x213000 /* DT_DATA's second page */
#define P_RO 0x214000
#define CTL_END 0x7f0	   /* hlt: the end of a sequence (#GP at CPL 3) */
#define CTL_VEC 0x800	   /* hlt per vector: CTL_VEC + vec */
#define LEN_CODE 0x100ff0ULL /* the length check's instruction */
/* [2 MiB, 4 MiB) is seen at KBASE + 2 MiB, supervisor only, in the upper
 * half like a Linux kernel: the lower half holds nothing the host's user
 * space does not have too. */
#define KBASE 0xffffffff80000000ULL
#define K(pa) (KBASE + (pa))
/* Selectors, as in Linux's GDT (arch/x86/include/asm/segment.h). */
#define SEL_KCODE 0x10
#define SEL_KDATA 0x18
#define SEL_UCODE32 0x23
#define SEL_UDATA 0x2b
#define SEL_UCODE 0x33
#define SEL_TSS 0x40
#define PTE_P 1ULL
#define PTE_W 2ULL
#define PTE_U 4ULL
#define PTE_NX (1ULL << 63)

struct dt_emu {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *ram;
	struct x86_state st;
	uint8_t ro[DT_PAGE]; /* what the read-only page holds */
};

static void put64(struct dt_emu *e, uint64_t gpa, uint64_t v)
{
	memcpy(e->ram + gpa, &v, 8);
}

static uint64_t get64(struct dt_emu *e, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, e->ram + gpa, 8);
	return v;
}

static void on_alarm(int sig);

/* The state of a 64-bit Linux process: CPL 3, null DS/ES/FS/GS selectors
 * (FS and GS bases set as in the native child). */
static void user_state(struct dt_emu *e)
{
	static const struct x86_seg code = { .sel = SEL_UCODE, .limit = 0xffffffff, .type = 0xb, .s = 1, .dpl = 3,
					     .present = 1, .l = 1, .g = 1 };
	static const struct x86_seg data = { .sel = SEL_UDATA, .limit = 0xffffffff, .type = 3, .s = 1, .dpl = 3,
					     .present = 1, .db = 1, .g = 1 };
	static const struct x86_seg null = { .unusable = 1 };

	e->st.cs = code;
	e->st.ss = data;
	e->st.ds = e->st.es = e->st.fs = e->st.gs = null;
	e->st.fs.base = DT_FS_BASE;
	e->st.gs.base = DT_GS_BASE;
	e->st.cr2 = 0;
}

struct dt_emu *dt_emu_new(void)
{
	struct dt_emu *e = calloc(1, sizeof(*e));
	struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };

	if (!e)
		return NULL;
	/* Not inherited by the native child (no copy-on-write faults while
	 * the emulator runs beside it). */
	e->ram = mmap(NULL, RAM_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (e->ram == MAP_FAILED) {
		e->ram = NULL;
		goto fail;
	}
	madvise(e->ram, RAM_SIZE, MADV_DONTFORK);
	if (gm_init_fake(&e->vm.mem, 0, e->ram, RAM_SIZE))
		goto fail;
	e->vm.cpu = &emu_cpu_ops;
	e->vm.nr_vcpus = 1;
	e->vcpu.vm = &e->vm;
	if (emu_cpu_ops.vm_init(&e->vm) || emu_cpu_ops.vcpu_init(&e->vcpu))
		goto fail;

	/* Difftest layout, as the native child maps it: code RWX, data RW
	 * and not executable, the read-only page, the guard pages absent.
	 * The control page stays executable: the handlers run there. */
	put64(e, P_PML4, P_PDPT | 7);
	put64(e, P_PDPT, P_PD | 7);
	put64(e, P_PML4 + 511 * 8, K_PDPT | 3);
	put64(e, K_PDPT + ((K(0) >> 30) & 511) * 8, K_PD | 3);
	put64(e, K_PD + ((K(0x200000) >> 21) & 511) * 8, 0x200000 | 0x83);
	put64(e, P_PD + ((DT_CODE >> 21) & 511) * 8, P_PT | 7);
	put64(e, P_PT + ((DT_CODE >> 12) & 511) * 8, P_CODE | 7);
	put64(e, P_PT + ((DT_RO >> 12) & 511) * 8, P_RO | PTE_P | PTE_U | PTE_NX);
	put64(e, P_PT + ((DT_DATA >> 12) & 511) * 8, P_DATA | PTE_P | PTE_W | PTE_U | PTE_NX);
	put64(e, P_PT + (((DT_DATA + DT_PAGE) >> 12) & 511) * 8, P_DATA2 | PTE_P | PTE_W | PTE_U | PTE_NX);
	put64(e, P_PT + ((DT_CTL >> 12) & 511) * 8, P_CTL | 7);
	_Static_assert(((DT_CODE ^ DT_CTL) >> 21) == 0 && ((DT_GUARD_LO ^ DT_GUARD_HI) >> 21) == 0,
		       "one page table");
	dt_ro_fill(e->ro);
	memcpy(e->ram + P_RO, e->ro, DT_PAGE);
	/* Alias layout. */
	for (int i = 0; i < 512; i++) {
		put64(e, A_PML4 + (uint64_t)i * 8, A_PDPT | 7);
		put64(e, A_PDPT + (uint64_t)i * 8, A_PD | 7);
		put64(e, A_PD + (uint64_t)i * 8, 0x87);
	}

	put64(e, P_GDT + SEL_KCODE, 0x00209a0000000000ULL);
	put64(e, P_GDT + SEL_KDATA, 0x00cf92000000ffffULL);
	put64(e, P_GDT + (SEL_UCODE32 & ~3), 0x00cffa000000ffffULL);
	put64(e, P_GDT + (SEL_UDATA & ~3), 0x00cff2000000ffffULL);
	put64(e, P_GDT + (SEL_UCODE & ~3), 0x0020fa0000000000ULL);
	put64(e, P_GDT + SEL_TSS, 0x67 | ((K(P_TSS) & 0xffffff) << 16) | (0x89ULL << 40) |
					  ((K(P_TSS) >> 24) & 0xff) << 56);
	put64(e, P_GDT + SEL_TSS + 8, K(P_TSS) >> 32);
	put64(e, P_TSS + 0x24, K(P_IST_TOP)); /* ist1 */
	/* I/O map base beyond the limit: no port allowed at CPL 3, as for a
	 * Linux task without ioperm (IO_BITMAP_OFFSET_INVALID). */
	e->ram[P_TSS + 0x66] = 0x68;
	for (int v = 0; v < 32; v++) {
		uint64_t h = DT_CTL + CTL_VEC + (uint64_t)v;
		/* int3 and into may be used from user mode (Linux's system gates). */
		uint64_t type = v == 3 || v == 4 ? 0xee : 0x8e;
		uint64_t lo = (h & 0xffff) | ((uint64_t)SEL_KCODE << 16) | (1ULL << 32) | (type << 40) |
			      ((h >> 16) & 0xffff) << 48;

		put64(e, P_IDT + (uint64_t)v * 16, lo);
		put64(e, P_IDT + (uint64_t)v * 16 + 8, h >> 32);
		e->ram[P_CTL + CTL_VEC + v] = 0xf4;
	}
	e->ram[P_CTL + CTL_END] = 0xf4;
	put64(e, P_CTL + (DT_CTL_RET - DT_CTL), DT_CTL + CTL_END);

	user_state(e);
	e->st.tr = (struct x86_seg){ .sel = SEL_TSS, .base = K(P_TSS), .limit = 0x67, .type = 0xb, .present = 1 };
	e->st.ldt = (struct x86_seg){ .unusable = 1 };
	e->st.gdt = (struct x86_dtable){ K(P_GDT), SEL_TSS + 15 };
	e->st.idt = (struct x86_dtable){ K(P_IDT), 32 * 16 - 1 };
	e->st.cr0 = X86_CR0_PE | X86_CR0_MP | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE | X86_CR0_AM;
	/* As Linux sets them, where user code can tell: DE (mov dr4 #UD),
	 * SCE (sysret #GP rather than #UD). */
	e->st.cr4 = X86_CR4_PAE | X86_CR4_OSFXSR | X86_CR4_OSXMMEXCPT | 0x8 /* DE */;
	e->st.efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
	/* Faults and unimplemented instructions are expected here: the
	 * harness reports them itself. */
	log_threshold = LOG_ERR;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGALRM, &sa, NULL);
	return e;
fail:
	if (e->ram)
		munmap(e->ram, RAM_SIZE);
	free(e);
	return NULL;
}

void dt_emu_free(struct dt_emu *e)
{
	if (!e)
		return;
	emu_cpu_ops.vcpu_destroy(&e->vcpu);
	emu_cpu_ops.vm_destroy(&e->vm);
	bus_destroy(&e->vm.pio); /* what vm_destroy does for a whole VM */
	bus_destroy(&e->vm.mmio);
	munmap(e->ram, RAM_SIZE);
	free(e);
}

/* Watchdog: a run that has not exited after a second is kicked out (a
 * decoder bug can send the emulator into a loop of its own making). */
static struct vcpu *volatile wd_vcpu;
static volatile sig_atomic_t wd_fired;

static void on_alarm(int sig)
{
	struct vcpu *v = wd_vcpu;

	(void)sig;
	if (v) {
		wd_fired = 1;
		emu_cpu_ops.kick(v); /* an atomic or: fine in a handler */
	}
}

/* Run from st until the first exit; the exit reason (VCPU_EXIT_INTR: the
 * watchdog ended it). */
static int run(struct dt_emu *e)
{
	struct itimerval on = { .it_value = { .tv_sec = 1 } }, off = { { 0, 0 }, { 0, 0 } };
	struct vcpu_exit ex;
	int r;

	wd_fired = 0;
	wd_vcpu = &e->vcpu;
	setitimer(ITIMER_REAL, &on, NULL);
	r = emu_cpu_ops.set_state(&e->vcpu, &e->st) || emu_cpu_ops.vcpu_run(&e->vcpu, &ex);
	setitimer(ITIMER_REAL, &off, NULL);
	wd_vcpu = NULL;
	if (r)
		return -1;
	emu_cpu_ops.get_state(&e->vcpu, &e->st);
	e->st.parts = 0; /* registers only: SSE goes through emu_set_sse */
	if (wd_fired && ex.reason != VCPU_EXIT_INTR) {
		/* The kick came after the exit: take it now, or it would end
		 * the next run before its first instruction. */
		struct vcpu_exit dummy;

		emu_cpu_ops.set_state(&e->vcpu, &e->st);
		emu_cpu_ops.vcpu_run(&e->vcpu, &dummy);
	}
	return ex.reason;
}

void dt_emu_run(struct dt_emu *e, const struct dt_case *c, struct dt_result *r)
{
	uint64_t rip;
	int reason;

	memcpy(e->ram + P_CODE, c->code, c->code_len);
	memcpy(e->ram + P_DATA, c->data, DT_PAGE);
	memcpy(e->ram + P_DATA2, c->data + DT_PAGE, DT_PAGE);
	memcpy(e->st.gpr, c->regs, sizeof(e->st.gpr));
	/* As dt_enter's popfq leaves them at CPL 3: IF stays set. */
	e->st.rflags = (c->flags & DT_FLAGS) | X86_RFLAGS_IF | X86_RFLAGS_FIXED;
	e->st.rip = DT_CODE;
	e->st.cr3 = P_PML4;
	user_state(e);
	emu_set_sse(&e->vcpu, c->xmm, c->mxcsr);
	reason = run(e);
	rip = e->st.rip;
	memset(r, 0, sizeof(*r));
	memcpy(r->regs, e->st.gpr, sizeof(r->regs));
	r->flags = e->st.rflags;
	emu_get_sse(&e->vcpu, r->xmm, &r->mxcsr);
	memcpy(r->data, e->ram + P_DATA, DT_PAGE);
	memcpy(r->data + DT_PAGE, e->ram + P_DATA2, DT_PAGE);
	if (memcmp(e->ram + P_RO, e->ro, DT_PAGE)) {
		r->ro_written = true;
		memcpy(e->ram + P_RO, e->ro, DT_PAGE);
	}
	if (reason == VCPU_EXIT_HLT && rip > DT_CTL + CTL_VEC && rip <= DT_CTL + CTL_VEC + 32) {
		int vec = (int)(rip - DT_CTL - CTL_VEC - 1);
		/* Frame: error code (if any), rip, cs, rflags, rsp, ss. */
		uint64_t f = P_IST_TOP - 40;

		r->end = DT_FAULT;
		r->vec = vec;
		r->err = DT_VEC_HAS_ERR(vec) ? (uint32_t)get64(e, f - 8) : 0;
		r->addr = vec == 14 ? e->st.cr2 : 0;
		r->rip = get64(e, f);
		r->flags = get64(e, f + 16);
		r->regs[4] = get64(e, f + 24);
		if (vec == 13 && r->rip == DT_CTL + CTL_END) { /* the sequence's end */
			r->end = DT_OK;
			r->vec = 0;
			r->err = 0;
			r->rip = 0;
		}
		return;
	}
	r->end = DT_CRASH;
	r->rip = rip;
}

void dt_emu_cpuid(struct dt_emu *e, uint32_t leaf, uint32_t sub, uint32_t out[4])
{
	static struct dt_case c;
	static struct dt_result r;
	static const uint8_t code[] = { 0x0f, 0xa2, 0xff, 0x24, 0x25 }; /* cpuid; jmp [DT_CTL_RET] */
	uint32_t ret = (uint32_t)DT_CTL_RET;

	memset(&c, 0, sizeof(c));
	memcpy(c.code, code, sizeof(code));
	memcpy(c.code + sizeof(code), &ret, 4);
	c.code_len = sizeof(code) + 4;
	c.regs[0] = leaf;
	c.regs[1] = sub;
	c.regs[4] = DT_DATA + DT_PAGE / 2;
	dt_emu_run(e, &c, &r);
	for (int i = 0; i < 4; i++) /* eax, ebx, ecx, edx: regs 0, 3, 1, 2 */
		out[i] = (uint32_t)r.regs[(int[]){ 0, 3, 1, 2 }[i]];
}

static int insn_len_try(struct dt_emu *e, const uint8_t *code, size_t n, uint64_t seed)
{
	uint8_t *p = e->ram + (LEN_CODE & 0x1fffff);
	uint8_t saved[32];
	uint64_t before, ran, rip;
	int reason;

	/* The instruction, then hlt bytes: with the right length the emulator
	 * executes exactly two instructions, the second the first hlt, which
	 * faults at CPL 3 (no IDT: a shutdown with RIP at it). Too long, it
	 * stops at a later hlt; too short, it executes something else in
	 * between. */
	memcpy(p, code, n);
	memset(p + n, 0xf4, sizeof(saved) - n);
	memcpy(saved, p, sizeof(saved));
	/* Registers: canonical and well inside the 48-bit space, so every
	 * memory operand is mapped; small RAX/RDX/RCX for fewer #DE and short
	 * string loops. */
	for (int i = 0; i < 16; i++)
		e->st.gpr[i] = dt_rand(&seed) >> 24;
	e->st.gpr[0] &= 0xffff;
	e->st.gpr[1] &= 0xff;
	e->st.gpr[2] = 0;
	e->st.rflags = X86_RFLAGS_FIXED | X86_RFLAGS_IF | (dt_rand(&seed) & 0x8d5);
	e->st.rip = LEN_CODE;
	e->st.cr3 = A_PML4;
	user_state(e);
	e->st.idt.limit = 0; /* any fault ends in a shutdown exit */
	before = emu_insn_count(&e->vcpu);
	reason = run(e);
	ran = emu_insn_count(&e->vcpu) - before;
	rip = e->st.rip;
	e->st.idt.limit = 32 * 16 - 1;
	if (memcmp(saved, p, sizeof(saved)))
		return DT_LEN_UNKNOWN; /* it overwrote itself */
	if (ran > 2 && rip != LEN_CODE)
		return DT_LEN_OTHER;
	if (reason == VCPU_EXIT_HLT && ran == 2 && rip > LEN_CODE && rip <= LEN_CODE + 16)
		return (int)(rip - LEN_CODE - 1);
	if (reason == VCPU_EXIT_SHUTDOWN && ran == 2 && rip > LEN_CODE && rip <= LEN_CODE + 16)
		return (int)(rip - LEN_CODE); /* the instruction after it faulted */
	return DT_LEN_UNKNOWN;
}

int dt_emu_insn_len(struct dt_emu *e, const uint8_t *code, size_t n, uint64_t seed)
{
	int r = insn_len_try(e, code, n, seed);

	/* Shorter than n: the shortest prefix the emulator executes as a
	 * whole instruction is its length (decoding stops on the bytes read
	 * so far, so the rest cannot matter). */
	for (size_t k = 1; r == DT_LEN_OTHER && k < n; k++)
		if (insn_len_try(e, code, k, seed) == (int)k)
			return (int)k;
	return r;
}
