/* The native side: cases run on the host CPU in a forked child.
 *
 * The child maps the code, data and control pages at their fixed
 * addresses with the read-only page and the not-present guard pages
 * around the data area (difftest.h), sets the FS and GS bases, installs
 * fault handlers on an alternate stack, then enters seccomp strict mode
 * (only read, write, exit and sigreturn remain) before it runs any
 * generated code. Per case, dt_enter saves the harness's registers, loads
 * the case's GPRs and RFLAGS from the control page and jumps to DT_CODE;
 * the sequence ends with `jmp [DT_CTL_RET]` into dt_return, which stores
 * GPRs and RFLAGS back. A fault in the sequence is caught by the handler,
 * which records the exception as the CPU reported it to the kernel (trap
 * number, error code, and for #PF the address, from the signal's context)
 * and the registers, and resumes the harness through dt_resume. Results go
 * to a shared mapping; a child that dies anyway is replaced by a new one
 * for the remaining cases.
 *
 * Once FS points at the data area, glibc's thread pointer is gone: from
 * there on the child makes its system calls itself (raw_syscall), as
 * glibc's wrappers write errno through FS. */
#include <asm/prctl.h>
#include <errno.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <ucontext.h>
#include <unistd.h>

#include "difftest.h"

/* The stubs address the control page absolutely (disp32): keep these
 * literals in step with difftest.h. */
_Static_assert(DT_CTL == 0x10020000ULL, "asm below");
_Static_assert(DT_CTL_HOSTRSP == 0x10020008ULL && DT_CTL_ENTRY == 0x10020010ULL &&
		       DT_CTL_FLAGS == 0x10020018ULL && DT_CTL_REGS == 0x10020020ULL &&
		       DT_CTL_MXCSR == 0x100200a0ULL && DT_CTL_XMM == 0x10020100ULL,
	       "asm below");

void dt_enter(void);
void dt_return(void);
void dt_resume(void);

__asm__(".pushsection .text\n"
	".globl dt_enter, dt_return, dt_resume\n"
	".type dt_enter, @function\n"
	"dt_enter:\n"
	"	push %rbx\n push %rbp\n push %r12\n push %r13\n push %r14\n push %r15\n"
	"	mov %rsp, 0x10020008\n"
	/* x87 as fninit leaves it with its registers zeroed (as emu_set_sse
	 * does), MXCSR and the XMM registers as given */
	"	fninit\n"
	"	fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n fldz\n"
	"	fninit\n"
	"	ldmxcsr 0x100200a0\n"
	"	movdqu 0x10020100, %xmm0\n"
	"	movdqu 0x10020110, %xmm1\n"
	"	movdqu 0x10020120, %xmm2\n"
	"	movdqu 0x10020130, %xmm3\n"
	"	movdqu 0x10020140, %xmm4\n"
	"	movdqu 0x10020150, %xmm5\n"
	"	movdqu 0x10020160, %xmm6\n"
	"	movdqu 0x10020170, %xmm7\n"
	"	movdqu 0x10020180, %xmm8\n"
	"	movdqu 0x10020190, %xmm9\n"
	"	movdqu 0x100201a0, %xmm10\n"
	"	movdqu 0x100201b0, %xmm11\n"
	"	movdqu 0x100201c0, %xmm12\n"
	"	movdqu 0x100201d0, %xmm13\n"
	"	movdqu 0x100201e0, %xmm14\n"
	"	movdqu 0x100201f0, %xmm15\n"
	"	pushq 0x10020018\n"
	"	popfq\n"
	"	mov 0x10020020, %rax\n"
	"	mov 0x10020028, %rcx\n"
	"	mov 0x10020030, %rdx\n"
	"	mov 0x10020038, %rbx\n"
	"	mov 0x10020048, %rbp\n"
	"	mov 0x10020050, %rsi\n"
	"	mov 0x10020058, %rdi\n"
	"	mov 0x10020060, %r8\n"
	"	mov 0x10020068, %r9\n"
	"	mov 0x10020070, %r10\n"
	"	mov 0x10020078, %r11\n"
	"	mov 0x10020080, %r12\n"
	"	mov 0x10020088, %r13\n"
	"	mov 0x10020090, %r14\n"
	"	mov 0x10020098, %r15\n"
	"	mov 0x10020040, %rsp\n"
	"	jmp *0x10020010\n"
	"dt_return:\n"
	"	mov %rax, 0x10020020\n"
	"	mov %rcx, 0x10020028\n"
	"	mov %rdx, 0x10020030\n"
	"	mov %rbx, 0x10020038\n"
	"	mov %rsp, 0x10020040\n"
	"	mov %rbp, 0x10020048\n"
	"	mov %rsi, 0x10020050\n"
	"	mov %rdi, 0x10020058\n"
	"	mov %r8, 0x10020060\n"
	"	mov %r9, 0x10020068\n"
	"	mov %r10, 0x10020070\n"
	"	mov %r11, 0x10020078\n"
	"	mov %r12, 0x10020080\n"
	"	mov %r13, 0x10020088\n"
	"	mov %r14, 0x10020090\n"
	"	mov %r15, 0x10020098\n"
	"	stmxcsr 0x100200a0\n"
	"	movdqu %xmm0, 0x10020100\n"
	"	movdqu %xmm1, 0x10020110\n"
	"	movdqu %xmm2, 0x10020120\n"
	"	movdqu %xmm3, 0x10020130\n"
	"	movdqu %xmm4, 0x10020140\n"
	"	movdqu %xmm5, 0x10020150\n"
	"	movdqu %xmm6, 0x10020160\n"
	"	movdqu %xmm7, 0x10020170\n"
	"	movdqu %xmm8, 0x10020180\n"
	"	movdqu %xmm9, 0x10020190\n"
	"	movdqu %xmm10, 0x100201a0\n"
	"	movdqu %xmm11, 0x100201b0\n"
	"	movdqu %xmm12, 0x100201c0\n"
	"	movdqu %xmm13, 0x100201d0\n"
	"	movdqu %xmm14, 0x100201e0\n"
	"	movdqu %xmm15, 0x100201f0\n"
	"	mov 0x10020008, %rsp\n"
	"	pushfq\n"
	"	popq 0x10020018\n"
	"dt_resume:\n"
	"	pushq $0x202\n" /* DF, AC (a case may set it) and TF clear */
	"	popfq\n"
	"	pop %r15\n pop %r14\n pop %r13\n pop %r12\n pop %rbp\n pop %rbx\n"
	"	ret\n"
	".size dt_enter, . - dt_enter\n"
	".popsection\n");

struct shared {
	volatile size_t cur;  /* the case the child is on */
	volatile size_t done; /* the child finished all cases */
};

static struct dt_result *cur_res;
static void *shared_map; /* results and progress, shared with the child */
static size_t shared_bytes;

/* A system call with up to three arguments, the others zero (prctl
 * checks them); returns -errno on failure. */
static long raw_syscall(long nr, long a, long b, long c)
{
	register long r10 __asm__("r10") = 0, r8 __asm__("r8") = 0;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(nr), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8)
			 : "rcx", "r11", "memory");
	return ret;
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
	static const int map[16] = { REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
				     REG_RSI, REG_RDI, REG_R8,	REG_R9,	 REG_R10, REG_R11,
				     REG_R12, REG_R13, REG_R14, REG_R15 };
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t rip = (uint64_t)g[REG_RIP];

	/* A case may have set RFLAGS.AC, and this handler is not written for
	 * alignment checks. */
	__asm__ volatile("pushfq; andl $~0x40000, (%%rsp); popfq" ::: "memory", "cc");
	(void)sig;
	/* Faults of the case are in its code or, after a jump, in the pages
	 * around the data area; anywhere else it is the harness: give up. */
	if (rip - DT_CODE >= DT_PAGE && rip - DT_GUARD_LO >= DT_GUARD_HI + DT_PAGE - DT_GUARD_LO)
		raw_syscall(SYS_exit, 2, 0, 0);
	/* The kernel passes the CPU's vector and error code on, whatever the
	 * signal (SIGSEGV for #GP and #PF, SIGBUS for #SS and #AC, ...). */
	cur_res->end = DT_FAULT;
	cur_res->vec = (int)g[REG_TRAPNO];
	cur_res->err = DT_VEC_HAS_ERR(cur_res->vec) ? (uint32_t)g[REG_ERR] : 0;
	cur_res->addr = cur_res->vec == 14 ? (uint64_t)(uintptr_t)si->si_addr : 0;
	cur_res->rip = rip;
	cur_res->flags = (uint64_t)g[REG_EFL];
	for (int i = 0; i < 16; i++)
		cur_res->regs[i] = (uint64_t)g[map[i]];
	for (int i = 0; i < 16; i++)
		memcpy(cur_res->xmm[i], uc->uc_mcontext.fpregs->_xmm[i].element, 16);
	cur_res->mxcsr = uc->uc_mcontext.fpregs->mxcsr;
	g[REG_EFL] &= ~(greg_t)(0x100 | DT_AC); /* TF: a single-stepped case; AC */
	g[REG_RIP] = (greg_t)(uintptr_t)dt_resume;
	g[REG_RSP] = *(volatile greg_t *)DT_CTL_HOSTRSP;
}

static bool map_at(uint64_t addr, size_t len, int prot)
{
	return mmap((void *)(uintptr_t)addr, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) ==
	       (void *)(uintptr_t)addr;
}

static int child_setup(void)
{
	static uint8_t altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER };
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP };

	/* The guard pages are mapped PROT_NONE so nothing else can land
	 * there; to the CPU they are not present, as in the guest. The
	 * read-only page is filled, then write-protected: its PTE stays
	 * present, so a store takes #PF with P=1, as in the guest. */
	if (!map_at(DT_CODE, DT_PAGE, PROT_READ | PROT_WRITE | PROT_EXEC) ||
	    !map_at(DT_GUARD_LO, DT_PAGE, PROT_NONE) || !map_at(DT_RO, DT_PAGE, PROT_READ | PROT_WRITE) ||
	    !map_at(DT_DATA, DT_DATA_SIZE, PROT_READ | PROT_WRITE) || !map_at(DT_GUARD_HI, DT_PAGE, PROT_NONE) ||
	    !map_at(DT_CTL, DT_PAGE, PROT_READ | PROT_WRITE))
		return -1;
	dt_ro_fill((uint8_t *)(uintptr_t)DT_RO);
	if (mprotect((void *)(uintptr_t)DT_RO, DT_PAGE, PROT_READ))
		return -1;
	if (sigaltstack(&ss, NULL))
		return -1;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL))
			return -1;
	*(uint64_t *)DT_CTL_RET = (uint64_t)(uintptr_t)dt_return;
	*(uint64_t *)DT_CTL_ENTRY = DT_CODE;
	/* fs: and gs: operands are relative to the data area. GS is free on
	 * x86-64; FS is glibc's thread pointer, unused from here on. */
	if (raw_syscall(SYS_arch_prctl, ARCH_SET_GS, (long)DT_GS_BASE, 0) ||
	    raw_syscall(SYS_arch_prctl, ARCH_SET_FS, (long)DT_FS_BASE, 0) ||
	    raw_syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0) ||
	    raw_syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0))
		return -1;
	return 0;
}

static _Noreturn void child(const struct dt_case *cases, struct dt_result *res, size_t from, size_t n,
			    struct shared *sh)
{
	if (child_setup())
		raw_syscall(SYS_exit_group, 3, 0, 0);
	/* From here on: no libc call that makes a system call. */
	for (size_t i = from; i < n; i++) {
		const struct dt_case *c = &cases[i];
		struct dt_result *r = &res[i];

		sh->cur = i;
		memcpy((void *)DT_CODE, c->code, c->code_len);
		memcpy((void *)DT_DATA, c->data, DT_DATA_SIZE);
		memcpy((void *)DT_CTL_REGS, c->regs, sizeof(c->regs));
		memcpy((void *)DT_CTL_XMM, c->xmm, sizeof(c->xmm));
		*(uint32_t *)DT_CTL_MXCSR = c->mxcsr;
		*(uint64_t *)DT_CTL_FLAGS = (c->flags & DT_FLAGS) | 2;
		memset(r, 0, offsetof(struct dt_result, regs));
		r->end = DT_OK;
		cur_res = r;
		dt_enter();
		if (r->end == DT_OK) {
			memcpy(r->regs, (void *)DT_CTL_REGS, sizeof(r->regs));
			memcpy(r->xmm, (void *)DT_CTL_XMM, sizeof(r->xmm));
			r->mxcsr = *(uint32_t *)DT_CTL_MXCSR;
			r->flags = *(uint64_t *)DT_CTL_FLAGS;
		}
		memcpy(r->data, (void *)DT_DATA, DT_DATA_SIZE);
	}
	sh->done = 1;
	raw_syscall(SYS_exit, 0, 0, 0);
	__builtin_unreachable();
}

struct dt_native {
	const struct dt_case *cases;
	size_t n, bytes;
	void *map;
	struct shared *sh;
	struct dt_result *res; /* in map */
	pid_t pid;
};

static int spawn(struct dt_native *nt, size_t from)
{
	nt->sh->cur = from;
	nt->sh->done = 0;
	nt->pid = fork();
	if (nt->pid == 0)
		child(nt->cases, nt->res, from, nt->n, nt->sh);
	return nt->pid < 0 ? -1 : 0;
}

struct dt_native *dt_native_start(const struct dt_case *cases, size_t n, const char **why)
{
	struct dt_native *nt = calloc(1, sizeof(*nt));

	_Static_assert(sizeof(struct shared) % 16 == 0, "result alignment");
	if (!nt) {
		*why = "out of memory";
		return NULL;
	}
	nt->cases = cases;
	nt->n = n;
	nt->bytes = sizeof(struct shared) + n * sizeof(struct dt_result);
	/* Kept from batch to batch: a fresh mapping costs a page fault per
	 * page, every batch. */
	if (nt->bytes > shared_bytes) {
		if (shared_map)
			munmap(shared_map, shared_bytes);
		shared_map = mmap(NULL, nt->bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		shared_bytes = shared_map == MAP_FAILED ? 0 : nt->bytes;
		if (shared_map == MAP_FAILED) {
			shared_map = NULL;
			*why = "mmap of the shared result area failed";
			free(nt);
			return NULL;
		}
	}
	nt->map = shared_map;
	nt->sh = nt->map;
	nt->res = (struct dt_result *)((char *)nt->map + sizeof(struct shared));
	if (spawn(nt, 0)) {
		*why = "fork failed";
		free(nt);
		return NULL;
	}
	return nt;
}

int dt_native_wait(struct dt_native *nt, struct dt_result *res, size_t *ran, const char **why)
{
	size_t valid = 0; /* cases with results */
	int ret = 0;

	for (;;) {
		int st;

		while (waitpid(nt->pid, &st, 0) < 0 && errno == EINTR)
			;
		if (nt->sh->done) {
			valid = nt->n;
			break;
		}
		if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
			*why = "cannot map the sandbox pages or enter seccomp strict mode";
			ret = -1;
			break;
		}
		/* The case the child died on is a crash; go on after it. */
		memset(&nt->res[nt->sh->cur], 0, sizeof(*res));
		nt->res[nt->sh->cur].end = DT_CRASH;
		valid = nt->sh->cur + 1;
		if (valid >= nt->n)
			break;
		if (spawn(nt, valid)) {
			*why = "fork failed";
			ret = -1;
			break;
		}
	}
	memcpy(res, nt->res, valid * sizeof(*res));
	*ran = valid;
	free(nt);
	return ret;
}

int dt_native_run(const struct dt_case *cases, struct dt_result *res, size_t n, const char **why)
{
	struct dt_native *nt = dt_native_start(cases, n, why);
	size_t ran;

	return nt ? dt_native_wait(nt, res, &ran, why) : -1;
}
