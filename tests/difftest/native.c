/* The native side: cases run on the host CPU in a forked child.
 *
 * The child maps the code, data and control pages at their fixed
 * addresses, installs fault handlers on an alternate stack, then enters
 * seccomp strict mode (only read, write, exit and sigreturn remain) before
 * it runs any generated code. Per case, dt_enter saves the harness's
 * registers, loads the case's GPRs and RFLAGS from the control page and
 * jumps to DT_CODE; the sequence ends with `jmp [DT_CTL_RET]` into
 * dt_return, which stores GPRs and RFLAGS back. A fault in the sequence is
 * caught by the handler, which records the registers from the signal
 * context and resumes the harness through dt_resume. Results go to a
 * shared mapping; a child that dies anyway is replaced by a new one for
 * the remaining cases. */
#include <asm/prctl.h>
#include <errno.h>
#include <linux/seccomp.h>
#include <signal.h>
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
		       DT_CTL_FLAGS == 0x10020018ULL && DT_CTL_REGS == 0x10020020ULL,
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
	"	mov 0x10020008, %rsp\n"
	"	pushfq\n"
	"	popq 0x10020018\n"
	"dt_resume:\n"
	"	cld\n"
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

static int sig_class(int sig)
{
	switch (sig) {
	case SIGFPE: return DT_DE;
	case SIGILL: return DT_UD;
	case SIGSEGV: case SIGBUS: return DT_GP;
	default: return DT_OTHER;
	}
}

static void on_fault(int sig, siginfo_t *si, void *ucv)
{
	static const int map[16] = { REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP,
				     REG_RSI, REG_RDI, REG_R8,	REG_R9,	 REG_R10, REG_R11,
				     REG_R12, REG_R13, REG_R14, REG_R15 };
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	uint64_t rip = (uint64_t)g[REG_RIP];

	(void)si;
	if (rip - DT_CODE >= DT_PAGE) /* the harness itself: give up */
		syscall(SYS_exit, 2);
	cur_res->fault = sig_class(sig);
	cur_res->rip = rip;
	cur_res->flags = (uint64_t)g[REG_EFL];
	for (int i = 0; i < 16; i++)
		cur_res->regs[i] = (uint64_t)g[map[i]];
	g[REG_EFL] &= ~(greg_t)0x100; /* TF: a single-stepped case */
	g[REG_RIP] = (greg_t)(uintptr_t)dt_resume;
	g[REG_RSP] = *(volatile greg_t *)DT_CTL_HOSTRSP;
}

static int child_setup(void)
{
	static uint8_t altstack[65536];
	stack_t ss = { .ss_sp = altstack, .ss_size = sizeof(altstack) };
	struct sigaction sa = { .sa_sigaction = on_fault, .sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER };
	static const int sigs[] = { SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP };

	if (mmap((void *)DT_CODE, DT_PAGE, PROT_READ | PROT_WRITE | PROT_EXEC,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != (void *)DT_CODE ||
	    mmap((void *)DT_DATA, DT_DATA_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != (void *)DT_DATA ||
	    mmap((void *)DT_CTL, DT_PAGE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != (void *)DT_CTL)
		return -1;
	if (sigaltstack(&ss, NULL))
		return -1;
	sigemptyset(&sa.sa_mask);
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
		if (sigaction(sigs[i], &sa, NULL))
			return -1;
	*(uint64_t *)DT_CTL_RET = (uint64_t)(uintptr_t)dt_return;
	*(uint64_t *)DT_CTL_ENTRY = DT_CODE;
	/* gs: operands are relative to the data area (glibc leaves GS alone
	 * on x86-64). */
	if (syscall(SYS_arch_prctl, ARCH_SET_GS, DT_DATA))
		return -1;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return -1;
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0))
		return -1;
	return 0;
}

static _Noreturn void child(const struct dt_case *cases, struct dt_result *res, size_t from, size_t n,
			    struct shared *sh)
{
	if (child_setup())
		_exit(3);
	/* From here on: no libc call that makes a system call. */
	for (size_t i = from; i < n; i++) {
		const struct dt_case *c = &cases[i];
		struct dt_result *r = &res[i];

		sh->cur = i;
		memcpy((void *)DT_CODE, c->code, c->code_len);
		memcpy((void *)DT_DATA, c->data, DT_DATA_SIZE);
		memcpy((void *)DT_CTL_REGS, c->regs, sizeof(c->regs));
		*(uint64_t *)DT_CTL_FLAGS = (c->flags & DT_FLAGS) | 2;
		r->fault = DT_OK;
		cur_res = r;
		dt_enter();
		if (r->fault == DT_OK) {
			memcpy(r->regs, (void *)DT_CTL_REGS, sizeof(r->regs));
			r->flags = *(uint64_t *)DT_CTL_FLAGS;
		}
		memcpy(r->data, (void *)DT_DATA, DT_DATA_SIZE);
	}
	sh->done = 1;
	syscall(SYS_exit, 0);
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

int dt_native_wait(struct dt_native *nt, struct dt_result *res, const char **why)
{
	int ret = 0;

	for (;;) {
		int st;

		while (waitpid(nt->pid, &st, 0) < 0 && errno == EINTR)
			;
		if (nt->sh->done)
			break;
		if (WIFEXITED(st) && WEXITSTATUS(st) == 3) {
			*why = "cannot map the sandbox pages or enter seccomp strict mode";
			ret = -1;
			break;
		}
		/* The case the child died on is a crash; go on after it. */
		memset(&nt->res[nt->sh->cur], 0, sizeof(*res));
		nt->res[nt->sh->cur].fault = DT_CRASH;
		if (nt->sh->cur + 1 >= nt->n)
			break;
		if (spawn(nt, nt->sh->cur + 1)) {
			*why = "fork failed";
			ret = -1;
			break;
		}
	}
	if (!ret)
		memcpy(res, nt->res, nt->n * sizeof(*res));
	free(nt);
	return ret;
}

int dt_native_run(const struct dt_case *cases, struct dt_result *res, size_t n, const char **why)
{
	struct dt_native *nt = dt_native_start(cases, n, why);

	return nt ? dt_native_wait(nt, res, why) : -1;
}
