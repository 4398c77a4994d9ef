/* User/kernel transitions in long mode, on the guest's own GDT and TSS:
 * into ring 3 with iretq and sysretq; back with a DPL-3 interrupt gate
 * (stack switched to TSS.RSP0), a 64-bit call gate, with syscall (RCX/R11, swapgs with
 * KERNEL_GS_BASE), and through exceptions: #GP from privileged instructions
 * and from a DPL-0 gate, #PF with the U bit on a supervisor page (taken on
 * an IST stack), IOPL deciding whether in/out and cli are allowed;
 * VERR/VERW/LAR/LSL from both rings. */
#include "lib/guest.h"

#define KCODE 0x08
#define KDATA 0x10
#define UDATA 0x23
#define UCODE 0x2b
#define TSS_SEL 0x30
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_SFMASK 0xc0000084
#define MSR_KGS_BASE 0xc0000102
#define MSR_EFER 0xc0000080
#define EFER_SCE 1ULL

struct tss64 {
	uint32_t rsvd0;
	uint64_t rsp[3];
	uint64_t rsvd1;
	uint64_t ist[7];
	uint64_t rsvd2;
	uint16_t rsvd3, iomap;
} __attribute__((packed));
_Static_assert(sizeof(struct tss64) == 104, "64-bit TSS (SDM vol. 3 fig. 8-11)");

static uint64_t gdt[10] __attribute__((aligned(16)));
static struct tss64 tss __attribute__((aligned(16)));
uint8_t user_stack[16384] __attribute__((aligned(16)));
static uint8_t rsp0_stack[8192] __attribute__((aligned(16)));
static uint8_t ist1_stack[8192] __attribute__((aligned(16)));
static uint8_t ist2_stack[8192] __attribute__((aligned(16)));
static uint64_t kgs_area[2] = { 0x6b65726e656c6773ULL, 0 };
uint64_t kernel_rsp;
uint64_t sc_rcx, sc_r11, sc_rsp, sc_gs, sc_cs;
uint64_t cg_rsp, cg_cs, cg_ss, cg_frame[4];
struct {
	uint32_t off;
	uint16_t sel;
} __attribute__((packed)) cg_ptr = { 0, 0x43 }; /* m16:32; a gate ignores the offset */
volatile uint64_t user_flag;
volatile uint8_t user_zf[4];

/* What the last handler saw. */
static volatile struct {
	uint64_t vec, err, rip, cs, ss, rsp, frame_top, cr2, count;
} seen;

void to_user_iret(uint64_t rip, uint64_t rflags);
void to_user_sysret(uint64_t rip, uint64_t rflags);
void kernel_resume(void);
void syscall_entry(void);
void callgate_entry(void), user_callgate(void), user_callgate_next(void);
void user_int80(void), user_syscall(void), user_syscall_next(void), user_hlt(void);
void user_read_sup(void), user_write_sup(void), user_out(void), user_cli(void);
void user_swapgs(void), user_int81(void), user_iopl(void), user_mov_cr3(void), user_verify(void);

__asm__(".text\n"
	/* to_user_*(rip, rflags): save the callee-saved registers, leave ring 0;
	 * a handler sends the CPU back to kernel_resume on kernel_rsp. */
	".globl to_user_iret\n"
	"to_user_iret:\n"
	"	push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"	mov %rsp, kernel_rsp(%rip)\n"
	"	pushq $0x23\n"
	"	lea user_stack+16384(%rip), %rax\n"
	"	push %rax\n"
	"	push %rsi\n"
	"	pushq $0x2b\n"
	"	push %rdi\n"
	"	iretq\n"
	".globl to_user_sysret\n"
	"to_user_sysret:\n"
	"	push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"	mov %rsp, kernel_rsp(%rip)\n"
	"	mov %rdi, %rcx\n"
	"	mov %rsi, %r11\n"
	"	lea user_stack+16384(%rip), %rsp\n"
	"	sysretq\n"
	".globl kernel_resume\n"
	"kernel_resume:\n"
	"	pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"	ret\n"
	/* syscall lands here in ring 0, still on the user stack. */
	".globl syscall_entry\n"
	"syscall_entry:\n"
	"	swapgs\n"
	"	mov %gs:0, %rax\n"
	"	mov %rax, sc_gs(%rip)\n"
	"	swapgs\n"
	"	mov %rcx, sc_rcx(%rip)\n"
	"	mov %r11, sc_r11(%rip)\n"
	"	mov %rsp, sc_rsp(%rip)\n"
	"	mov %cs, %eax\n"
	"	mov %rax, sc_cs(%rip)\n"
	"	mov kernel_rsp(%rip), %rsp\n"
	"	jmp kernel_resume\n"
	/* A 64-bit call gate lands here in ring 0, on TSS.RSP0. */
	".globl callgate_entry\n"
	"callgate_entry:\n"
	"	mov %rsp, cg_rsp(%rip)\n"
	"	mov %cs, %eax; mov %rax, cg_cs(%rip)\n"
	"	mov %ss, %eax; mov %rax, cg_ss(%rip)\n"
	"	mov 0(%rsp), %rax; mov %rax, cg_frame(%rip)\n"
	"	mov 8(%rsp), %rax; mov %rax, cg_frame+8(%rip)\n"
	"	mov 16(%rsp), %rax; mov %rax, cg_frame+16(%rip)\n"
	"	mov 24(%rsp), %rax; mov %rax, cg_frame+24(%rip)\n"
	"	mov kernel_rsp(%rip), %rsp\n"
	"	jmp kernel_resume\n"
	/* Ring-3 code. */
	".globl user_callgate, user_callgate_next\n"
	"user_callgate: lcall *cg_ptr(%rip)\n"
	"user_callgate_next: ud2\n"
	".globl user_int80\n"
	"user_int80: movq $1, user_flag(%rip); int $0x80; ud2\n"
	".globl user_syscall, user_syscall_next\n"
	"user_syscall: syscall\n"
	"user_syscall_next: ud2\n"
	".globl user_hlt\n"
	"user_hlt: hlt; ud2\n"
	".globl user_read_sup\n"
	"user_read_sup: mov 0x1000, %rax; ud2\n"
	".globl user_write_sup\n"
	"user_write_sup: movq $1, 0x1008; ud2\n"
	".globl user_out\n"
	"user_out: out %al, $0x80; ud2\n"
	".globl user_cli\n"
	"user_cli: cli; ud2\n"
	".globl user_swapgs\n"
	"user_swapgs: swapgs; ud2\n"
	".globl user_int81\n"
	"user_int81: int $0x81; ud2\n"
	".globl user_mov_cr3\n"
	"user_mov_cr3: mov %cr3, %rax; ud2\n"
	/* VERW/VERR/LAR from ring 3: the kernel's data segment is out of
	 * reach (DPL 0), the user's is not. */
	".globl user_verify\n"
	"user_verify: mov $0x10, %eax; verw %ax; setz user_zf(%rip)\n"
	"	mov $0x23, %eax; verw %ax; setz user_zf+1(%rip)\n"
	"	mov $0x2b, %eax; verr %ax; setz user_zf+2(%rip)\n"
	"	mov $0x30, %eax; lar %eax, %ecx; setz user_zf+3(%rip)\n"
	"	int $0x80; ud2\n"
	".globl user_iopl\n"
	"user_iopl: cli; sti; cli; call user_iopl_c; int $0x80; ud2\n");

/* Runs in ring 3 with IOPL 3: port I/O, so a ucall, is allowed. */
void user_iopl_c(void);
void user_iopl_c(void)
{
	uint16_t cs;

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	GUEST_SYNC(4, cs);
}

/* Record the event; if it came from ring 3, iret to kernel_resume instead. */
static void back_to_kernel(struct irq_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	seen.vec = f->vector;
	seen.err = f->error;
	seen.rip = f->rip;
	seen.cs = f->cs;
	seen.ss = f->ss;
	seen.rsp = f->rsp;
	seen.frame_top = (uint64_t)(uintptr_t)(&f->ss + 1);
	seen.cr2 = cr2;
	seen.count++;
	if ((f->cs & 3) == 3) {
		f->rip = (uint64_t)(uintptr_t)kernel_resume;
		f->cs = KCODE;
		f->ss = KDATA;
		f->rsp = kernel_rsp;
		f->rflags = 2;
	}
}

static uint64_t top(uint8_t *stack, unsigned long size)
{
	return (uint64_t)(uintptr_t)(stack + size);
}

static void setup_gdt_tss(void)
{
	uint64_t base = (uint64_t)(uintptr_t)&tss;
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) gdtr = { sizeof(gdt) - 1, (uint64_t)(uintptr_t)gdt };

	gdt[1] = 0x00209a0000000000ULL; /* 0x08 kernel code */
	gdt[2] = 0x00cf92000000ffffULL; /* 0x10 kernel data */
	gdt[3] = 0x00cffa000000ffffULL; /* 0x18 user 32-bit code (sysret base) */
	gdt[4] = 0x00cff2000000ffffULL; /* 0x20 user data */
	gdt[5] = 0x0020fa0000000000ULL; /* 0x28 user 64-bit code */
	gdt[6] = (sizeof(tss) - 1) | ((base & 0xffffff) << 16) | (0x89ULL << 40) |
		 ((base >> 24) & 0xff) << 56;
	gdt[7] = base >> 32;
	/* 0x40: a 64-bit call gate (16 bytes), DPL 3, to callgate_entry. */
	{
		uint64_t off = (uint64_t)(uintptr_t)callgate_entry;

		gdt[8] = (off & 0xffff) | ((uint64_t)KCODE << 16) | (0xecULL << 40) |
			 ((off >> 16) & 0xffff) << 48;
		gdt[9] = off >> 32;
	}
	tss.rsp[0] = top(rsp0_stack, sizeof(rsp0_stack));
	tss.ist[0] = top(ist1_stack, sizeof(ist1_stack));
	tss.ist[1] = top(ist2_stack, sizeof(ist2_stack));
	tss.iomap = sizeof(tss); /* no I/O bitmap: CPL > IOPL means #GP */
	__asm__ volatile("lgdt %0\n\t"
			 "pushq $0x08\n\t"
			 "lea 1f(%%rip), %%rax\n\t"
			 "push %%rax\n\t"
			 "lretq\n"
			 "1: mov $0x10, %%eax\n\t"
			 "mov %%eax, %%ss\n\t"
			 "mov %%eax, %%ds\n\t"
			 "mov %%eax, %%es\n\t"
			 "mov $0x30, %%eax\n\t"
			 "ltr %%ax"
			 :
			 : "m"(gdtr)
			 : "rax", "memory");
}

/* The runtime's IDT, patched: DPL 3 on vector 0x80 (and int3), IST1 for
 * #PF, IST2 for int3. */
static void patch_idt(void)
{
	struct {
		uint16_t limit;
		uint64_t base;
	} __attribute__((packed)) idtr;
	uint8_t *idt;

	__asm__ volatile("sidt %0" : "=m"(idtr));
	idt = (uint8_t *)(uintptr_t)idtr.base;
	idt[0x80 * 16 + 5] = 0xee;
	idt[3 * 16 + 5] = 0xee;
	idt[14 * 16 + 4] = 1;
	idt[3 * 16 + 4] = 2;
}

/* The boot page tables map everything supervisor-only with 2 MiB pages:
 * open the guest's 2-4 MiB to ring 3, keep 0-2 MiB supervisor. */
static void open_user_pages(void)
{
	uint64_t *pml4 = (uint64_t *)(uintptr_t)(read_cr3() & ~0xfffULL);
	uint64_t *pdpt = (uint64_t *)(uintptr_t)(pml4[0] & 0xffffffffff000ULL);
	uint64_t *pd = (uint64_t *)(uintptr_t)(pdpt[0] & 0xffffffffff000ULL);

	pml4[0] |= 4;
	pdpt[0] |= 4;
	pd[1] |= 4;
	pd[0] &= ~4ULL;
	write_cr3(read_cr3());
}

#define EXPECT_FROM_USER(fn, vec_, err_)                                         \
	do {                                                                   \
		uint64_t n_ = seen.count;                                      \
		to_user_iret((uint64_t)(uintptr_t)(fn), 2);                    \
		GUEST_ASSERT_EQ(seen.count, n_ + 1);                           \
		GUEST_ASSERT_EQ(seen.vec, vec_);                               \
		GUEST_ASSERT_EQ(seen.err, err_);                               \
		GUEST_ASSERT_EQ(seen.rip, (uint64_t)(uintptr_t)(fn));         \
		GUEST_ASSERT_EQ(seen.cs, UCODE);                               \
		GUEST_ASSERT_EQ(seen.ss, UDATA);                               \
	} while (0)

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t ustack_top = top(user_stack, sizeof(user_stack));
	uint16_t cs;

	setup_gdt_tss();
	idt_install();
	patch_idt();
	for (int v = 0; v < 32; v++)
		idt_set_handler(v, back_to_kernel);
	idt_set_handler(0x80, back_to_kernel);
	open_user_pages();

	/* iretq to ring 3, int 0x80 back: the CPU switched to TSS.RSP0. */
	user_flag = 0;
	to_user_iret((uint64_t)(uintptr_t)user_int80, 2);
	GUEST_ASSERT_EQ(user_flag, 1);
	GUEST_ASSERT_EQ(seen.vec, 0x80);
	GUEST_ASSERT_EQ(seen.cs, UCODE);
	GUEST_ASSERT_EQ(seen.ss, UDATA);
	GUEST_ASSERT_EQ(seen.rsp, ustack_top);
	GUEST_ASSERT_EQ(seen.frame_top, tss.rsp[0]);
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	GUEST_SYNC(1, cs);

	/* sysretq to ring 3, syscall back: RCX/R11 hold the return RIP and
	 * RFLAGS, the stack is not switched, swapgs reaches KERNEL_GS_BASE. */
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	wrmsr(MSR_STAR, (0x18ULL << 48) | ((uint64_t)KCODE << 32));
	wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
	wrmsr(MSR_SFMASK, 0x700);
	wrmsr(MSR_KGS_BASE, (uint64_t)(uintptr_t)kgs_area);
	to_user_sysret((uint64_t)(uintptr_t)user_syscall, 0x2);
	GUEST_ASSERT_EQ(sc_rcx, (uint64_t)(uintptr_t)user_syscall_next);
	GUEST_ASSERT_EQ(sc_r11, 0x2);
	GUEST_ASSERT_EQ(sc_rsp, ustack_top);
	GUEST_ASSERT_EQ(sc_gs, kgs_area[0]);
	GUEST_ASSERT_EQ(sc_cs, KCODE);
	GUEST_ASSERT_EQ(rdmsr(MSR_KGS_BASE), (uint64_t)(uintptr_t)kgs_area);
	GUEST_SYNC(2, 0);

	/* Exceptions from ring 3. */
	EXPECT_FROM_USER(user_hlt, 13, 0);
	EXPECT_FROM_USER(user_mov_cr3, 13, 0);
	EXPECT_FROM_USER(user_swapgs, 13, 0);
	EXPECT_FROM_USER(user_out, 13, 0); /* IOPL 0, no I/O bitmap */
	EXPECT_FROM_USER(user_cli, 13, 0);
	/* int n through a DPL-0 gate: #GP with the IDT bit in the error code. */
	EXPECT_FROM_USER(user_int81, 13, 0x81 * 8 + 2);
	/* A supervisor page: #PF with U set, taken on IST1. */
	EXPECT_FROM_USER(user_read_sup, 14, 4 | 1);
	GUEST_ASSERT_EQ(seen.cr2, 0x1000);
	GUEST_ASSERT_EQ(seen.frame_top, tss.ist[0]);
	EXPECT_FROM_USER(user_write_sup, 14, 4 | 2 | 1);
	GUEST_ASSERT_EQ(seen.cr2, 0x1008);
	GUEST_SYNC(3, 0);

	/* A far call through a DPL-3 64-bit call gate: ring 0 on TSS.RSP0 with
	 * RIP, CS, RSP, SS of the caller on it (no parameters in long mode). */
	to_user_iret((uint64_t)(uintptr_t)user_callgate, 2);
	GUEST_ASSERT_EQ(cg_cs, KCODE);
	GUEST_ASSERT_EQ(cg_ss & ~3ULL, 0); /* a null SS at CPL 0 */
	GUEST_ASSERT_EQ(cg_rsp, tss.rsp[0] - 32);
	GUEST_ASSERT_EQ(cg_frame[0], (uint64_t)(uintptr_t)user_callgate_next);
	GUEST_ASSERT_EQ(cg_frame[1], UCODE);
	GUEST_ASSERT_EQ(cg_frame[2], ustack_top);
	GUEST_ASSERT_EQ(cg_frame[3], UDATA);

	/* VERR/VERW/LAR/LSL in ring 0 and ring 3 (Linux runs verw on every
	 * return to user mode). */
	{
		uint8_t zf[6];
		uint32_t ar = 0, lim = 0, lim2 = 0x55;

		__asm__ volatile("verw %w6; setz %0\n\t"
				 "verw %w7; setz %1\n\t"
				 "verr %w7; setz %2\n\t"
				 "lar %8, %3; setz %4\n\t"
				 "lsl %6, %5\n\t"
				 : "=m"(zf[0]), "=m"(zf[1]), "=m"(zf[2]), "=r"(ar), "=m"(zf[3]), "=r"(lim)
				 : "r"((uint32_t)KDATA), "r"((uint32_t)KCODE), "r"((uint32_t)TSS_SEL)
				 : "cc");
		__asm__ volatile("lsl %2, %0; setz %1" : "+r"(lim2), "=m"(zf[5]) : "r"(0x40u) : "cc");
		GUEST_ASSERT_EQ(zf[0], 1);	       /* data: writable */
		GUEST_ASSERT_EQ(zf[1], 0);	       /* code: never */
		GUEST_ASSERT_EQ(zf[2], 1);	       /* execute/read code: readable */
		GUEST_ASSERT_EQ(zf[3], 1);
		GUEST_ASSERT_EQ(ar & 0xffff00, 0x8b00); /* busy TSS, present */
		GUEST_ASSERT_EQ(lim, 0xffffffff);
		GUEST_ASSERT_EQ(zf[5], 0);	       /* LSL takes no gates */
		GUEST_ASSERT_EQ(lim2, 0x55);	       /* ... and leaves the register */
		to_user_iret((uint64_t)(uintptr_t)user_verify, 2);
		GUEST_ASSERT_EQ(user_zf[0], 0);
		GUEST_ASSERT_EQ(user_zf[1], 1);
		GUEST_ASSERT_EQ(user_zf[2], 1);
		GUEST_ASSERT_EQ(user_zf[3], 0); /* the TSS is DPL 0 */
	}

	/* IOPL 3: cli/sti and port I/O are allowed in ring 3 (the ucall). */
	to_user_iret((uint64_t)(uintptr_t)user_iopl, 0x3002);
	GUEST_ASSERT_EQ(seen.vec, 0x80);
	GUEST_ASSERT_EQ(seen.cs, UCODE);

	/* int3 in ring 0 runs on IST2 even without a privilege change. */
	__asm__ volatile("int3" ::: "memory");
	GUEST_ASSERT_EQ(seen.vec, 3);
	GUEST_ASSERT_EQ(seen.cs, KCODE);
	GUEST_ASSERT_EQ(seen.frame_top, tss.ist[1]);
	GUEST_SYNC(5, 0);
}
