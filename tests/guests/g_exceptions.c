/* Exceptions are delivered through the guest's IDT with the right vector,
 * error code and CR2: #DE, #UD, #BP, #GP(0) from a non-canonical access and
 * #PF on a not-present page; and what a real CPU gives for what tarn's
 * emulator does not implement: #GP(0) for an MSR no CPU model has (and for
 * a PMU counter: tarn offers no PMU on either backend), #UD for
 * a VEX-encoded (AVX) instruction while CR4.OSXSAVE is clear. */
#include "lib/guest.h"

static volatile uint64_t seen_vec = 0xff, seen_err, seen_cr2;
static volatile uint64_t resume_at;

static void on_fault(struct irq_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	seen_vec = f->vector;
	seen_err = f->error;
	seen_cr2 = cr2;
	f->rip = resume_at; /* skip the faulting instruction */
}

#define EXPECT_FAULT(insn, vec, ...)                                           \
	do {                                                                   \
		__asm__ volatile("lea 1f(%%rip), %%rax\n\t"                    \
				 "mov %%rax, %0\n\t" insn "\n1:"               \
				 : "=m"(resume_at)                             \
				 : __VA_ARGS__                                 \
				 : "rax", "rcx", "rdx", "memory");             \
		GUEST_ASSERT_EQ(seen_vec, vec);                                \
		seen_vec = 0xff;                                               \
	} while (0)

void guest_main(unsigned cpu, uint64_t arg)
{
	idt_install();
	for (int v = 0; v < 32; v++)
		idt_set_handler(v, on_fault);
	EXPECT_FAULT("xor %%edx, %%edx; xor %%eax, %%eax; xor %%ecx, %%ecx; div %%ecx", 0, "i"(0));
	EXPECT_FAULT("ud2", 6, "i"(0));
	EXPECT_FAULT("int3", 3, "i"(0));
	EXPECT_FAULT("movabs $0x8000000000000000, %%rcx; mov (%%rcx), %%rax", 13, "i"(0));
	GUEST_ASSERT_EQ(seen_err, 0);
	/* 512 GiB: its PML4 entry is not present. */
	EXPECT_FAULT("movabs $0x8000000000, %%rcx; movl $1, (%%rcx)", 14, "i"(0));
	GUEST_ASSERT_EQ(seen_cr2, 0x8000000000ULL);
	GUEST_ASSERT_EQ(seen_err, 0x2); /* not present, write, supervisor */
	EXPECT_FAULT("mov $0x4b564dff, %%ecx; rdmsr", 13, "i"(0));
	GUEST_ASSERT_EQ(seen_err, 0);
	EXPECT_FAULT("mov $0x4b564dff, %%ecx; xor %%eax, %%eax; xor %%edx, %%edx; wrmsr", 13, "i"(0));
	/* No PMU on either backend: AMD's legacy counter 3, which Linux's
	 * perf probes, is unknown too. */
	EXPECT_FAULT("mov $0xc0010007, %%ecx; mov $0xffff, %%eax; xor %%edx, %%edx; wrmsr", 13, "i"(0));
	EXPECT_FAULT("mov $0xc0010007, %%ecx; rdmsr", 13, "i"(0));
	EXPECT_FAULT(".byte 0xc5, 0xf8, 0x77", 6, "i"(0)); /* vzeroupper */
	GUEST_SYNC(1, 0);
}
