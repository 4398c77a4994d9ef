/* Paging as the guest's own page tables drive it: #PF error codes (P, W,
 * RSVD, I/D with and without EFER.NXE) and CR2 for reads, writes, fetches
 * and page-crossing accesses; CR0.WP; accessed and dirty bits the CPU sets;
 * invlpg and CR4.PGE flushes after a PTE changes; 2 MiB and 1 GiB pages
 * aliasing the guest's own memory; global pages. (User-mode access to
 * supervisor pages is in g_usermode.) The test mappings live at 512 GiB, in
 * PML4 slot 1 of the boot page tables. */
#include "lib/guest.h"

#define TEST_VA 0x8000000000ULL
#define PTE_P 0x1ULL
#define PTE_W 0x2ULL
#define PTE_U 0x4ULL
#define PTE_A 0x20ULL
#define PTE_D 0x40ULL
#define PTE_PS 0x80ULL
#define PTE_G 0x100ULL
#define PTE_NX (1ULL << 63)
#define EFER_MSR 0xc0000080
#define EFER_NXE (1ULL << 11)
#define CR0_WP (1ULL << 16)
#define CR4_PGE (1ULL << 7)

#define PF_P 1
#define PF_W 2
#define PF_RSVD 8
#define PF_I 16

static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[512] __attribute__((aligned(4096)));
static uint64_t pt[512] __attribute__((aligned(4096)));
static uint8_t frames[8][4096] __attribute__((aligned(4096)));
static volatile uint64_t alias_probe = 0x1122334455667788ULL;

static volatile uint64_t f_vec = 0xff, f_err, f_cr2, f_rip;
static volatile uint64_t resume_at, resume_rsp;

static void on_fault(struct irq_frame *f)
{
	uint64_t cr2;

	__asm__ volatile("mov %%cr2, %0" : "=r"(cr2));
	GUEST_ASSERT(f_vec == 0xff); /* one fault per probe */
	f_vec = f->vector;
	f_err = f->error;
	f_cr2 = cr2;
	f_rip = f->rip;
	f->rip = resume_at;
	f->rsp = resume_rsp;
}

static inline void write_cr0(uint64_t v) { __asm__ volatile("mov %0, %%cr0" ::"r"(v) : "memory"); }
static inline void write_cr4(uint64_t v) { __asm__ volatile("mov %0, %%cr4" ::"r"(v) : "memory"); }
static inline void invlpg(uint64_t va) { __asm__ volatile("invlpg (%0)" ::"r"(va) : "memory"); }

/* Each probe returns the fault vector it took (0xff: none). */
static uint64_t probe_read(uint64_t va, uint64_t *val)
{
	uint64_t v = 0;

	f_vec = 0xff;
	__asm__ volatile("lea 1f(%%rip), %%rax\n\t"
			 "mov %%rax, %1\n\t"
			 "mov %%rsp, %2\n\t"
			 "mov (%3), %0\n"
			 "1:"
			 : "+r"(v), "=m"(resume_at), "=m"(resume_rsp)
			 : "r"(va)
			 : "rax", "memory");
	if (val)
		*val = v;
	return f_vec;
}

static uint64_t probe_write(uint64_t va, uint64_t v)
{
	f_vec = 0xff;
	__asm__ volatile("lea 1f(%%rip), %%rax\n\t"
			 "mov %%rax, %0\n\t"
			 "mov %%rsp, %1\n\t"
			 "mov %3, (%2)\n"
			 "1:"
			 : "=m"(resume_at), "=m"(resume_rsp)
			 : "r"(va), "r"(v)
			 : "rax", "memory");
	return f_vec;
}

/* Calls va, where a `ret` is expected. */
static uint64_t probe_exec(uint64_t va)
{
	f_vec = 0xff;
	__asm__ volatile("lea 1f(%%rip), %%rax\n\t"
			 "mov %%rax, %0\n\t"
			 "mov %%rsp, %1\n\t"
			 "call *%2\n"
			 "1:"
			 : "=m"(resume_at), "=m"(resume_rsp)
			 : "r"(va)
			 : "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11", "memory");
	return f_vec;
}

#define EXPECT_PF(probe, va, err)                                              \
	do {                                                                   \
		GUEST_ASSERT_EQ(probe, 14);                                    \
		GUEST_ASSERT_EQ(f_err, err);                                   \
		GUEST_ASSERT_EQ(f_cr2, va);                                    \
	} while (0)
#define EXPECT_OK(probe) GUEST_ASSERT_EQ(probe, 0xff)

static uint64_t page_va(int i)
{
	return TEST_VA + (uint64_t)i * 4096;
}

static void map(int i, int frame, uint64_t flags)
{
	pt[i] = (uint64_t)(uintptr_t)frames[frame] | flags;
	invlpg(page_va(i));
}

static void test_basic_errors(void)
{
	uint64_t v;

	/* Not present: read, write. */
	map(0, 0, 0);
	EXPECT_PF(probe_read(page_va(0) + 8, &v), page_va(0) + 8, 0);
	EXPECT_PF(probe_write(page_va(0) + 16, 1), page_va(0) + 16, PF_W);
	/* Read-only, supervisor: reads work, writes fault with P|W while
	 * CR0.WP is set and go through while it is clear. */
	write_cr0(read_cr0() | CR0_WP); /* the boot state has it clear */
	frames[1][0] = 0x5a;
	map(1, 1, PTE_P);
	EXPECT_OK(probe_read(page_va(1), &v));
	GUEST_ASSERT_EQ(v & 0xff, 0x5a);
	EXPECT_PF(probe_write(page_va(1) + 0x100, 7), page_va(1) + 0x100, PF_P | PF_W);
	GUEST_ASSERT_EQ(frames[1][0x100], 0);
	write_cr0(read_cr0() & ~CR0_WP);
	EXPECT_OK(probe_write(page_va(1) + 0x100, 7));
	GUEST_ASSERT_EQ(frames[1][0x100], 7);
	write_cr0(read_cr0() | CR0_WP);
	EXPECT_PF(probe_write(page_va(1) + 0x100, 8), page_va(1) + 0x100, PF_P | PF_W);
	/* A writable PTE under a read-only PDE is read-only. */
	map(2, 2, PTE_P | PTE_W);
	EXPECT_OK(probe_write(page_va(2), 3));
	pd[0] &= ~PTE_W;
	invlpg(page_va(2));
	EXPECT_PF(probe_write(page_va(2), 4), page_va(2), PF_P | PF_W);
	pd[0] |= PTE_W;
	invlpg(page_va(2));
	EXPECT_OK(probe_write(page_va(2), 4));
	/* An 8-byte read across into a not-present page faults on the second
	 * page, with CR2 at its first byte. */
	map(3, 3, PTE_P | PTE_W);
	map(4, 4, 0);
	EXPECT_PF(probe_read(page_va(4) - 4, &v), page_va(4), 0);
	GUEST_SYNC(1, 0);
}

static void test_nx_and_rsvd(void)
{
	uint32_t a, b, c, d;
	unsigned phys_bits;
	uint64_t v, efer = rdmsr(EFER_MSR);

	cpuid(0x80000008, 0, &a, &b, &c, &d);
	phys_bits = a & 0xff;
	frames[5][0] = 0xc3; /* ret */

	/* Without EFER.NXE: fetches report no I/D bit, and bit 63 is reserved. */
	wrmsr(EFER_MSR, efer & ~EFER_NXE);
	map(5, 5, PTE_P | PTE_W);
	EXPECT_OK(probe_exec(page_va(5)));
	map(6, 6, 0);
	EXPECT_PF(probe_exec(page_va(6)), page_va(6), 0);
	map(5, 5, PTE_P | PTE_W | PTE_NX);
	EXPECT_PF(probe_read(page_va(5), &v), page_va(5), PF_P | PF_RSVD);

	/* With it: NX pages read but do not execute, and fetch faults carry
	 * I/D, present or not. */
	wrmsr(EFER_MSR, efer | EFER_NXE);
	invlpg(page_va(5));
	EXPECT_OK(probe_read(page_va(5), &v));
	GUEST_ASSERT_EQ(v & 0xff, 0xc3);
	EXPECT_PF(probe_exec(page_va(5)), page_va(5), PF_P | PF_I);
	EXPECT_PF(probe_exec(page_va(6)), page_va(6), PF_I);
	/* NX in a higher level covers the whole range. */
	map(5, 5, PTE_P | PTE_W);
	EXPECT_OK(probe_exec(page_va(5)));
	pd[0] |= PTE_NX;
	invlpg(page_va(5));
	EXPECT_PF(probe_exec(page_va(5)), page_va(5), PF_P | PF_I);
	pd[0] &= ~PTE_NX;
	invlpg(page_va(5));

	/* A physical-address bit above MAXPHYADDR is reserved. */
	if (phys_bits < 52) {
		map(7, 7, PTE_P | PTE_W | (1ULL << phys_bits));
		EXPECT_PF(probe_read(page_va(7), &v), page_va(7), PF_P | PF_RSVD);
		EXPECT_PF(probe_write(page_va(7), 1), page_va(7), PF_P | PF_W | PF_RSVD);
		map(7, 7, PTE_P | PTE_W);
		EXPECT_OK(probe_read(page_va(7), &v));
	}
	GUEST_SYNC(2, phys_bits);
}

static void test_accessed_dirty(void)
{
	uint64_t v;

	map(8, 0, PTE_P | PTE_W);
	pd[0] &= ~PTE_A;
	invlpg(page_va(8));
	GUEST_ASSERT_EQ(pt[8] & (PTE_A | PTE_D), 0);
	EXPECT_OK(probe_read(page_va(8), &v));
	GUEST_ASSERT_EQ(pt[8] & (PTE_A | PTE_D), PTE_A);
	GUEST_ASSERT(pd[0] & PTE_A);
	GUEST_ASSERT(pdpt[0] & PTE_A);
	EXPECT_OK(probe_write(page_va(8), 1));
	GUEST_ASSERT_EQ(pt[8] & (PTE_A | PTE_D), PTE_A | PTE_D);
	/* The dirty bit is set again after software clears it and flushes. */
	pt[8] &= ~PTE_D;
	invlpg(page_va(8));
	EXPECT_OK(probe_read(page_va(8), &v));
	GUEST_ASSERT_EQ(pt[8] & PTE_D, 0);
	EXPECT_OK(probe_write(page_va(8), 2));
	GUEST_ASSERT(pt[8] & PTE_D);
	/* A faulting access sets neither. */
	map(9, 1, PTE_P);
	EXPECT_PF(probe_write(page_va(9), 1), page_va(9), PF_P | PF_W);
	GUEST_ASSERT_EQ(pt[9] & PTE_D, 0);
	GUEST_SYNC(3, 0);
}

static void test_tlb(void)
{
	uint64_t v;
	uint32_t a, b, c, d;

	/* Remap a page that is in the TLB: after invlpg the new frame shows. */
	*(volatile uint64_t *)frames[2] = 0x2222;
	*(volatile uint64_t *)frames[3] = 0x3333;
	map(10, 2, PTE_P | PTE_W);
	EXPECT_OK(probe_read(page_va(10), &v));
	GUEST_ASSERT_EQ(v, 0x2222);
	map(10, 3, PTE_P | PTE_W); /* map() ends with invlpg */
	EXPECT_OK(probe_read(page_va(10), &v));
	GUEST_ASSERT_EQ(v, 0x3333);
	/* Unmap: after invlpg the access faults. */
	pt[10] = 0;
	invlpg(page_va(10));
	EXPECT_PF(probe_read(page_va(10), &v), page_va(10), 0);
	/* A CR3 write flushes non-global entries. */
	pt[10] = (uint64_t)(uintptr_t)frames[2] | PTE_P | PTE_W;
	EXPECT_OK(probe_read(page_va(10), &v));
	pt[10] = (uint64_t)(uintptr_t)frames[3] | PTE_P | PTE_W;
	write_cr3(read_cr3());
	EXPECT_OK(probe_read(page_va(10), &v));
	GUEST_ASSERT_EQ(v, 0x3333);

	/* Global pages: invlpg and toggling CR4.PGE flush them too. */
	cpuid(1, 0, &a, &b, &c, &d);
	if (d & (1u << 13)) {
		uint64_t cr4 = read_cr4();

		write_cr4(cr4 | CR4_PGE);
		map(11, 2, PTE_P | PTE_W | PTE_G);
		EXPECT_OK(probe_read(page_va(11), &v));
		GUEST_ASSERT_EQ(v, 0x2222);
		map(11, 3, PTE_P | PTE_W | PTE_G);
		EXPECT_OK(probe_read(page_va(11), &v));
		GUEST_ASSERT_EQ(v, 0x3333);
		pt[11] = (uint64_t)(uintptr_t)frames[2] | PTE_P | PTE_W | PTE_G;
		write_cr4(cr4 & ~CR4_PGE);
		write_cr4(cr4 | CR4_PGE);
		EXPECT_OK(probe_read(page_va(11), &v));
		GUEST_ASSERT_EQ(v, 0x2222);
		write_cr4(cr4);
	}
	GUEST_SYNC(4, 0);
}

static void test_large_pages(void)
{
	uint64_t v, off = (uint64_t)(uintptr_t)&alias_probe;
	uint32_t a, b, c, d;

	/* 2 MiB page at TEST_VA + 2 MiB onto the guest's own 2-4 MiB. */
	pd[1] = 0x200000 | PTE_P | PTE_W | PTE_PS;
	invlpg(TEST_VA + off);
	EXPECT_OK(probe_read(TEST_VA + off, &v));
	GUEST_ASSERT_EQ(v, 0x1122334455667788ULL);
	EXPECT_OK(probe_write(TEST_VA + off, 0x99));
	GUEST_ASSERT_EQ(alias_probe, 0x99);
	GUEST_ASSERT(pd[1] & PTE_D);
	/* Read-only 2 MiB page: the fault names the address. */
	pd[1] &= ~PTE_W;
	invlpg(TEST_VA + off);
	EXPECT_PF(probe_write(TEST_VA + off, 1), TEST_VA + off, PF_P | PF_W);
	/* Bit 13 of a 2 MiB PDE is an address bit that must be zero (within
	 * MAXPHYADDR it is reserved). */
	pd[1] = 0x200000 | (1ULL << 13) | PTE_P | PTE_W | PTE_PS;
	invlpg(TEST_VA + off);
	EXPECT_PF(probe_read(TEST_VA + off, &v), TEST_VA + off, PF_P | PF_RSVD);
	pd[1] = 0;
	invlpg(TEST_VA + off);
	EXPECT_PF(probe_read(TEST_VA + off, &v), TEST_VA + off, 0);

	/* 1 GiB page at TEST_VA + 1 GiB onto physical 0. */
	cpuid(0x80000001, 0, &a, &b, &c, &d);
	if (d & (1u << 26)) {
		pdpt[1] = PTE_P | PTE_W | PTE_PS;
		invlpg((TEST_VA + 0x40000000) + off);
		alias_probe = 0xabcd;
		EXPECT_OK(probe_read(TEST_VA + 0x40000000 + off, &v));
		GUEST_ASSERT_EQ(v, 0xabcd);
		pdpt[1] = 0;
		invlpg(TEST_VA + 0x40000000 + off);
		EXPECT_PF(probe_read(TEST_VA + 0x40000000 + off, &v), TEST_VA + 0x40000000 + off, 0);
	}
	GUEST_SYNC(5, 0);
}

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t *pml4 = (uint64_t *)(uintptr_t)(read_cr3() & ~0xfffULL);

	idt_install();
	idt_set_handler(14, on_fault);
	pdpt[0] = (uint64_t)(uintptr_t)pd | PTE_P | PTE_W;
	pd[0] = (uint64_t)(uintptr_t)pt | PTE_P | PTE_W;
	pml4[1] = (uint64_t)(uintptr_t)pdpt | PTE_P | PTE_W;
	write_cr3(read_cr3());

	test_basic_errors();
	test_nx_and_rsvd();
	test_accessed_dirty();
	test_tlb();
	test_large_pages();
}
