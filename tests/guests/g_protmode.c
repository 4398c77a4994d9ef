/* 32-bit protected mode, left long mode for: segment limits (#GP), an
 * expand-down stack segment (#SS), not-present and wrong-type segments
 * (#NP, #SS, #GP with the selector as error code), far call/ret and far jmp
 * through a based code segment and through call gates, #GP for a near jump
 * past the code segment's limit, a far return to
 * ring 3 and back through a call gate (parameter copied) and an interrupt
 * gate, both on the 32-bit TSS's ESP0/SS0 stack, then 32-bit paging (4 KiB
 * and 4 MiB PSE pages, #PF codes, WP, A/D) and PAE paging (2 MiB pages,
 * reserved NX without EFER.NXE, NX with it). The code runs from a copy at
 * 0x30000 with its tables beside it; every probe stores the vector and error
 * code it saw, and guest_main checks them once back in 64-bit mode. */
#include "lib/guest.h"

#define LOW 0x30000
#define D_GDT 0x1000
#define D_GDTR 0x1100
#define D_IDTR 0x1110
#define D_RSP 0x1118
#define D_GDTR_SAVE 0x1120
#define D_IDTR_SAVE 0x1130
#define D_CS_SAVE 0x1140
#define D_SS_SAVE 0x1142
#define D_TR_SAVE 0x1144
#define D_CR3 0x1148
#define D_VEC 0x1150
#define D_ERR 0x1154
#define D_CR2 0x1158
#define D_RESUME 0x115c
#define D_FCS 0x1160
#define D_FARPTR 0x1168
#define D_EFER 0x1170
#define D_CR4 0x1178
#define D_RES 0x1400 /* 64 slots of {vector, error} or values */
#define D_UC 0x1800
#define D_TSS 0x1900
#define D_IDT 0x2000
#define D_PD32 0x3000
#define D_PT32 0x4000
#define D_PDPT 0x5000
#define D_PDPAE 0x6000
#define D_PTPAE 0x7000
#define D_SCRATCH 0x8000
#define D_NXPAGE 0x9000
#define CODE_MAX 0x1000

extern const uint8_t pm_start[], pm_end[], pm_stubs[], pm_kback[], pm_cg[], pm_fc2[], pm_fj2[];

/* Probe i: run insn with the fault handler armed; store {vector, error}
 * (0xff: no fault) in result slot i. DS stays flat throughout. */
#define PROBE(i, insn)                                                         \
	"movl $0xff, 0x31150; movl $(0x30000 + 9f - pm_start), 0x3115c\n"      \
	insn "\n9:\n"                                                          \
	"mov 0x31150, %eax; mov %eax, 0x31400 + 8 * " #i "\n"                  \
	"mov 0x31154, %eax; mov %eax, 0x31404 + 8 * " #i "\n"
/* Store eax in slot i. */
#define SAVE(i) "mov %eax, 0x31400 + 8 * " #i "\n"
#define UC32(n)                                                                \
	"mov %cs, %eax; mov %eax, 0x31810\n"                                   \
	"mov %cr0, %eax; mov %eax, 0x31818\n"                                  \
	"mov %cr4, %eax; mov %eax, 0x31820\n"                                  \
	"movl $" #n ", 0x31808\n"                                              \
	"mov $0x31800, %eax; out %eax, $0xe8\n"

__asm__(".section .text.pmode, \"ax\"\n"
	".globl pm_start, pm_end, pm_stubs, pm_kback, pm_cg, pm_fc2, pm_fj2\n"
	".code64\n"
	"pm_start:\n"
	"	push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"	mov %rsp, 0x31118\n"
	"	sgdt 0x31120\n"
	"	sidt 0x31130\n"
	"	mov %cs, %ax; mov %ax, 0x31140\n"
	"	mov %ss, %ax; mov %ax, 0x31142\n"
	"	str %ax; mov %ax, 0x31144\n"
	"	mov %cr3, %rax; mov %rax, 0x31148\n"
	"	mov %cr4, %rax; mov %rax, 0x31178\n"
	"	mov $0xc0000080, %ecx; rdmsr; mov %eax, 0x31170\n"
	"	lgdt 0x31100\n"
	"	pushq $0x18\n"
	"	pushq $(0x30000 + pm_c32 - pm_start)\n"
	"	lretq\n"
	".code32\n"
	"pm_c32:\n"
	"	mov $0x10, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss\n"
	"	mov $0x3fff0, %esp\n"
	"	mov %cr0, %eax; and $0x7fffffff, %eax; mov %eax, %cr0\n"
	"	mov $0xc0000080, %ecx; rdmsr; and $0xfffffeff, %eax; wrmsr\n"
	"	lidt 0x31110\n"
	"	mov $0x40, %ax; ltr %ax\n"
	UC32(2)
	/* Limits: ES = 4 KiB at 0x38000. */
	"	mov $0x20, %ax; mov %ax, %es\n"
	PROBE(0, "mov %es:0xffc, %eax")
	PROBE(1, "mov %es:0xffd, %eax")
	PROBE(2, "movb $1, %es:0x1000")
	"	mov $0x10, %ax; mov %ax, %es\n"
	/* Expand-down stack: offsets 0xf000 and up are valid. */
	"	mov $0x28, %ax; mov %ax, %ss\n"
	"	push $0x77; pop %eax\n" SAVE(3)
	PROBE(4, "mov %ss:0xf000, %eax")
	PROBE(5, "mov %ss:0xeffc, %eax")
	"	mov $0x10, %ax; mov %ax, %ss\n"
	/* Segment loads that fault with the selector as error code. */
	PROBE(6, "mov $0x30, %ax; mov %ax, %es") /* not present: #NP */
	PROBE(7, "mov $0x30, %ax; mov %ax, %ss") /* not present stack: #SS */
	PROBE(8, "mov $0x40, %ax; mov %ax, %es") /* TSS: #GP */
	PROBE(9, "mov $0x18, %ax; mov %ax, %ss") /* code as stack: #GP */
	PROBE(10, "mov $0x5b, %ax; mov %ax, %ss") /* RPL/DPL 3 stack in ring 0 */
	PROBE(11, "mov $0x100, %ax; mov %ax, %es") /* beyond the GDT limit */
	"	mov $0x10, %ax; mov %ax, %es\n"
	/* Far call into the code segment based at 0x30000, far ret back. */
	"	mov %esp, %ebx\n"
	"	lcall $0x38, $(pm_fc - pm_start)\n"
	"	sub %esp, %ebx; mov %ebx, %eax\n" SAVE(13)
	"	mov %cs, %eax\n" SAVE(14)
	/* Far jmp through a memory pointer (m16:32). */
	"	movl $(pm_fj - pm_start), 0x31168; movw $0x38, 0x3116c\n"
	"	ljmp *0x31168\n"
	"pm_fj_back:\n"
	/* Through call gates at the same level: call (0x70) and jmp (0x78). */
	"	mov %esp, %ebx\n"
	"	lcall $0x70, $0\n"
	"	sub %esp, %ebx; mov %ebx, %eax\n" SAVE(17)
	"	ljmp $0x78, $0\n"
	"pm_gj_back:\n"
	/* A near jump past the limit of the segment at 0x30000 (64 KiB). */
	"	lcall $0x38, $(pm_lim - pm_start)\n"
	/* A far return to ring 3; #GP there on cli (IOPL 0); int 0x81 back. */
	"	movl $(0x30000 + pm_u3b - pm_start), 0x3115c\n"
	"	movl $0xff, 0x31150\n"
	"	pushl $0x5b; pushl $0x3e000; pushl $0x53; pushl $(0x30000 + pm_u3 - pm_start)\n"
	"	lret\n"
	"pm_u3:	cli\n"
	/* Ring 3 -> ring 0 through the DPL-3 call gate 0x68, one parameter
	 * copied to the TSS stack; lret $4 back. DS is null here: use SS. */
	"pm_u3b: pushl $0x1234abcd\n"
	"	lcall $0x6b, $0\n"
	"	mov %esp, %ss:0x31400 + 8 * 47\n"
	"	mov %cs, %eax; mov %eax, %ss:0x31400 + 8 * 48\n"
	"	int $0x81\n"
	"pm_cg:	mov $0x10, %ax; mov %ax, %ds\n"
	"	mov %cs, %eax\n" SAVE(26)
	"	mov %esp, %eax\n" SAVE(27)
	"	mov 8(%esp), %eax\n" SAVE(28)
	"	mov %ss, %eax\n" SAVE(29)
	"	mov 12(%esp), %eax\n" SAVE(38)
	"	lret $4\n"
	"pm_kback:\n"
	"	mov $0x10, %ax; mov %ax, %ds; mov %ax, %es\n"
	"	mov 0x31150, %eax\n" SAVE(20)
	"	mov 0x31154, %eax\n" SAVE(21)
	"	mov 0x31160, %eax\n" SAVE(22)
	"	mov 4(%esp), %eax\n" SAVE(23)
	"	mov 16(%esp), %eax\n" SAVE(24)
	"	mov %esp, %eax\n" SAVE(25)
	"	mov $0x3fff0, %esp\n"
	UC32(3)
	/* 32-bit paging: PD[0] -> 4 KiB pages of 0-4 MiB, PD[1] a 4 MiB page
	 * onto 0-4 MiB, PD[2] not present. */
	"	mov $0x33000, %eax; mov %eax, %cr3\n"
	"	mov %cr4, %eax; and $0xffffffdf, %eax; or $0x10, %eax; mov %eax, %cr4\n"
	"	mov %cr0, %eax; or $0x80010000, %eax; mov %eax, %cr0\n"
	UC32(4)
	PROBE(30, "mov 0x438000, %eax")
	"	mov 0x438000, %eax\n" SAVE(31)
	PROBE(32, "mov 0x800010, %eax")
	"	mov 0x31158, %eax\n" SAVE(33)
	"	movl $0x31, 0x438004\n"
	"	mov 0x33004, %eax\n" SAVE(34) /* PDE[1]: A and D */
	PROBE(35, "movl $2, 0x39000") /* read-only PTE, WP on */
	"	mov 0x31158, %eax\n" SAVE(36)
	"	mov %cr0, %eax; and $0xfffeffff, %eax; mov %eax, %cr0\n"
	PROBE(37, "movl $3, 0x39000") /* WP off: ring 0 writes */
	"	mov %cr0, %eax; and $0x7fffffff, %eax; mov %eax, %cr0\n"
	/* PAE paging: PDPT[0] -> PD, PD[0] -> 4 KiB pages of 0-2 MiB, PD[1] a
	 * 2 MiB page onto 0-2 MiB; PDPT[1] not present; the PTE of 0x39000
	 * has bit 63 (NX) set. */
	"	mov %cr4, %eax; or $0x20, %eax; mov %eax, %cr4\n"
	"	mov $0x35000, %eax; mov %eax, %cr3\n"
	"	mov $0xc0000080, %ecx; rdmsr; and $0xfffff7ff, %eax; wrmsr\n"
	"	mov %cr0, %eax; or $0x80000000, %eax; mov %eax, %cr0\n"
	UC32(5)
	"	mov 0x238000, %eax\n" SAVE(40)
	PROBE(41, "mov 0x40000000, %eax")
	"	mov 0x31158, %eax\n" SAVE(42)
	PROBE(43, "mov 0x39000, %eax") /* NX without NXE: reserved */
	"	mov $0xc0000080, %ecx; rdmsr; or $0x800, %eax; wrmsr\n"
	PROBE(44, "mov 0x39000, %eax")
	PROBE(45, "mov $0x39000, %eax; jmp *%eax")
	PROBE(46, "mov $0x38000, %eax; call *%eax") /* executable: ret */
	"	mov %cr0, %eax; and $0x7fffffff, %eax; mov %eax, %cr0\n"
	/* Back to long mode. */
	"	mov 0x31170, %eax; and $0xfffffbff, %eax; or $0x100, %eax\n" /* LMA is read-only */
	"	xor %edx, %edx; mov $0xc0000080, %ecx; wrmsr\n"
	"	mov 0x31178, %eax; mov %eax, %cr4\n"
	"	mov 0x31148, %eax; mov %eax, %cr3\n"
	"	mov %cr0, %eax; or $0x80000000, %eax; mov %eax, %cr0\n"
	"	ljmp $0x08, $(0x30000 + pm_l64 - pm_start)\n"
	/* Far call target in the segment based at 0x30000. */
	"pm_fc:	mov %cs, %eax; mov %eax, 0x31400 + 8 * 12\n"
	"	lret\n"
	"pm_fj:	mov %cs, %eax; mov %eax, 0x31400 + 8 * 15\n"
	"	ljmp $0x18, $(0x30000 + pm_fj_back - pm_start)\n"
	"pm_lim: movl $0xff, 0x31150; movl $(pm_lim_back - pm_start), 0x3115c\n"
	"	mov $0x10000, %eax; jmp *%eax\n"
	"pm_lim_back: mov 0x31150, %eax\n" SAVE(19)
	"	mov 0x31154, %eax\n" SAVE(39)
	"	lret\n"
	"pm_fc2: mov %cs, %eax\n" SAVE(16)
	"	lret\n"
	"pm_fj2: mov %cs, %eax\n" SAVE(18)
	"	ljmp $0x18, $(0x30000 + pm_gj_back - pm_start)\n"
	/* Exception stubs: vector (and a 0 where the CPU pushes no error code). */
	".balign 16\n"
	"pm_stubs:\n"
	".set pm_vec, 0\n"
	".rept 32\n"
	".balign 16\n"
	".if (pm_vec == 8) || (pm_vec >= 10 && pm_vec <= 14) || (pm_vec == 17)\n"
	".else\n"
	"	pushl $0\n"
	".endif\n"
	"	pushl $pm_vec\n"
	"	jmp pm_common\n"
	".set pm_vec, pm_vec + 1\n"
	".endr\n"
	/* Record, then return to the probe's resume address. */
	"pm_common:\n"
	"	push %ds\n"
	"	push %eax\n"
	"	mov $0x10, %ax; mov %ax, %ds\n"
	"	mov 8(%esp), %eax; mov %eax, 0x31150\n"
	"	mov 12(%esp), %eax; mov %eax, 0x31154\n"
	"	mov 20(%esp), %eax; mov %eax, 0x31160\n"
	"	mov %cr2, %eax; mov %eax, 0x31158\n"
	"	mov 0x3115c, %eax; mov %eax, 16(%esp)\n"
	"	pop %eax\n"
	"	pop %ds\n"
	"	add $8, %esp\n"
	"	iret\n"
	".code64\n"
	"pm_l64:\n"
	"	mov $0x10, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss\n"
	"	mov 0x31118, %rsp\n"
	"	lgdt 0x31120\n"
	"	lidt 0x31130\n"
	/* The boot TSS descriptor is busy from its ltr: clear that to reload it. */
	"	movzwl 0x31144, %eax; and $0xfff8, %eax; add 0x31122, %rax\n"
	"	andb $0xfd, 5(%rax)\n"
	"	ltr 0x31144\n"
	"	movzwl 0x31140, %eax; push %rax\n"
	"	lea 1f(%rip), %rax; push %rax\n"
	"	lretq\n"
	"1:	movzwl 0x31142, %eax; mov %eax, %ss; mov %eax, %ds; mov %eax, %es\n"
	"	pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"	ret\n"
	"pm_end:\n"
	".text\n");

static uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags)
{
	return (limit & 0xffffULL) | ((uint64_t)(base & 0xffffff) << 16) | ((uint64_t)access << 40) |
	       ((uint64_t)((limit >> 16) & 0xf) << 48) | ((uint64_t)(flags & 0xf) << 52) |
	       ((uint64_t)(base >> 24) << 56);
}

/* A 32-bit call gate (SDM vol. 3A fig. 5-8). */
static uint64_t call_gate(uint16_t sel, uint32_t off, int dpl, int params)
{
	return (off & 0xffffULL) | ((uint64_t)sel << 16) | ((uint64_t)params << 32) |
	       ((uint64_t)(0x8c | dpl << 5) << 40) | ((uint64_t)(off >> 16) << 48);
}

static volatile uint32_t *at32(uint64_t off) { return (volatile uint32_t *)(uintptr_t)(LOW + off); }
static volatile uint64_t *at64(uint64_t off) { return (volatile uint64_t *)(uintptr_t)(LOW + off); }

static uint64_t res(int i) { return *at64(D_RES + 8 * (uint64_t)i); }
static uint32_t res_vec(int i) { return (uint32_t)res(i); }
static uint32_t res_err(int i) { return (uint32_t)(res(i) >> 32); }

#define EXPECT_PROBE(i, vec, err)                                              \
	do {                                                                   \
		GUEST_ASSERT_EQ(((uint64_t)(i) << 32) | res_vec(i), ((uint64_t)(i) << 32) | (vec)); \
		if ((vec) != 0xff)                                             \
			GUEST_ASSERT_EQ(((uint64_t)(i) << 32) | res_err(i), ((uint64_t)(i) << 32) | (err)); \
	} while (0)

static void build_tables(void)
{
	uint64_t *gdt = (uint64_t *)(uintptr_t)(LOW + D_GDT);

	memset((void *)(uintptr_t)(LOW + 0x1000), 0, 0xf000);
	gdt[1] = 0x00209a0000000000ULL;				   /* 0x08 64-bit code */
	gdt[2] = seg_desc(0, 0xfffff, 0x92, 0xc);		   /* 0x10 flat data */
	gdt[3] = seg_desc(0, 0xfffff, 0x9a, 0xc);		   /* 0x18 flat code */
	gdt[4] = seg_desc(LOW + D_SCRATCH, 0xfff, 0x92, 0x4);	   /* 0x20 4 KiB data */
	gdt[5] = seg_desc(0, 0xefff, 0x96, 0x4);		   /* 0x28 expand-down */
	gdt[6] = seg_desc(0, 0xfffff, 0x12, 0xc);		   /* 0x30 not present */
	gdt[7] = seg_desc(LOW, 0xffff, 0x9a, 0x4);		   /* 0x38 code at LOW */
	gdt[8] = seg_desc(LOW + D_TSS, 0x67, 0x89, 0);		   /* 0x40 32-bit TSS */
	gdt[10] = seg_desc(0, 0xfffff, 0xfa, 0xc);		   /* 0x50 user code */
	gdt[11] = seg_desc(0, 0xfffff, 0xf2, 0xc);		   /* 0x58 user data */
	gdt[13] = call_gate(0x18, LOW + (uint32_t)(pm_cg - pm_start), 3, 1); /* 0x68 */
	gdt[14] = call_gate(0x38, (uint32_t)(pm_fc2 - pm_start), 0, 0);	     /* 0x70 */
	gdt[15] = call_gate(0x38, (uint32_t)(pm_fj2 - pm_start), 0, 0);	     /* 0x78 */
	*(volatile uint16_t *)(uintptr_t)(LOW + D_GDTR) = 16 * 8 - 1;
	*at64(D_GDTR + 2) = LOW + D_GDT;

	/* 32-bit IDT: interrupt gates to the stubs; 0x81 a DPL-3 gate back. */
	for (int v = 0; v < 32; v++) {
		uint32_t off = LOW + (uint32_t)(pm_stubs - pm_start) + 16 * (uint32_t)v;

		*at64(D_IDT + 8 * (uint64_t)v) = (off & 0xffff) | (0x18ULL << 16) | (0x8eULL << 40) |
						 ((uint64_t)(off >> 16) << 48);
	}
	{
		uint32_t off = LOW + (uint32_t)(pm_kback - pm_start);

		*at64(D_IDT + 8 * 0x81) = (off & 0xffff) | (0x18ULL << 16) | (0xeeULL << 40) |
					  ((uint64_t)(off >> 16) << 48);
	}
	*(volatile uint16_t *)(uintptr_t)(LOW + D_IDTR) = 0x82 * 8 - 1;
	*at64(D_IDTR + 2) = LOW + D_IDT;

	/* 32-bit TSS: ring-0 stack for the trip to ring 3. */
	*at32(D_TSS + 4) = 0x3d000;
	*at32(D_TSS + 8) = 0x10;
	*(volatile uint16_t *)(uintptr_t)(LOW + D_TSS + 0x66) = 104;

	/* 32-bit paging. */
	*at32(D_PD32) = (LOW + D_PT32) | 3;
	*at32(D_PD32 + 4) = 0x83;
	for (uint32_t i = 0; i < 1024; i++)
		*at32(D_PT32 + 4 * i) = (i << 12) | 3;
	*at32(D_PT32 + 4 * 0x39) = 0x39000 | 1; /* read-only */
	/* PAE paging. */
	*at64(D_PDPT) = (LOW + D_PDPAE) | 1;
	*at64(D_PDPAE) = (LOW + D_PTPAE) | 3;
	*at64(D_PDPAE + 8) = 0x83;
	for (uint64_t i = 0; i < 512; i++)
		*at64(D_PTPAE + 8 * i) = (i << 12) | 3;
	*at64(D_PTPAE + 8 * 0x39) = 0x39000 | 3 | (1ULL << 63);

	*at32(D_SCRATCH) = 0xc3c3c3c3; /* ret, for the executable probe */
	*at32(D_SCRATCH + 4) = 0;
	*at32(D_UC) = UCALL_SYNC;
	memcpy((void *)(uintptr_t)(LOW + D_UC + 40), "g_protmode.c", 13);
}

void guest_main(unsigned cpu, uint64_t arg)
{
	uint64_t size = (uint64_t)(pm_end - pm_start);
	uint16_t cs;

	GUEST_ASSERT(size <= CODE_MAX);
	memcpy((void *)(uintptr_t)LOW, pm_start, size);
	build_tables();
	for (int i = 0; i < 64; i++)
		*at64(D_RES + 8 * (uint64_t)i) = 0xdead;
	GUEST_SYNC(1, 0);
	((void (*)(void))(uintptr_t)LOW)();
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	GUEST_ASSERT_EQ(cs, 0x10);

	/* Segmentation. */
	EXPECT_PROBE(0, 0xff, 0);
	EXPECT_PROBE(1, 13, 0);
	EXPECT_PROBE(2, 13, 0);
	GUEST_ASSERT_EQ(res(3) & 0xffffffff, 0x77);
	EXPECT_PROBE(4, 0xff, 0);
	EXPECT_PROBE(5, 12, 0);
	EXPECT_PROBE(6, 11, 0x30);
	EXPECT_PROBE(7, 12, 0x30);
	EXPECT_PROBE(8, 13, 0x40);
	EXPECT_PROBE(9, 13, 0x18);
	EXPECT_PROBE(10, 13, 0x58);
	EXPECT_PROBE(11, 13, 0x100);
	GUEST_ASSERT_EQ(res(12) & 0xffff, 0x38); /* CS in the far-called code */
	GUEST_ASSERT_EQ(res(13) & 0xffffffff, 0); /* ESP balanced */
	GUEST_ASSERT_EQ(res(14) & 0xffff, 0x18);
	GUEST_ASSERT_EQ(res(15) & 0xffff, 0x38); /* far jmp through memory */
	GUEST_ASSERT_EQ(res(16) & 0xffff, 0x38); /* call gate, same level */
	GUEST_ASSERT_EQ(res(17) & 0xffffffff, 0);
	GUEST_ASSERT_EQ(res(18) & 0xffff, 0x38); /* jmp through a call gate */
	GUEST_ASSERT_EQ(res(19) & 0xffffffff, 13); /* near jmp past CS.limit */
	GUEST_ASSERT_EQ(res(39) & 0xffffffff, 0);
	/* Ring 3 and back. */
	GUEST_ASSERT_EQ(res(20) & 0xffffffff, 13);  /* cli in ring 3 */
	GUEST_ASSERT_EQ(res(21) & 0xffffffff, 0);
	GUEST_ASSERT_EQ(res(22) & 0xffff, 0x53);    /* from CPL 3 */
	GUEST_ASSERT_EQ(res(23) & 0xffff, 0x53);    /* int 0x81 frame: CS */
	GUEST_ASSERT_EQ(res(24) & 0xffff, 0x5b);    /* ... and SS */
	GUEST_ASSERT_EQ(res(25) & 0xffffffff, 0x3d000 - 20); /* on TSS.ESP0 */
	/* Call gate from ring 3: ring 0 on TSS.ESP0 with the parameter copied:
	 * EIP, CS, parameter, ESP, SS. */
	GUEST_ASSERT_EQ(res(26) & 0xffff, 0x18);
	GUEST_ASSERT_EQ(res(27) & 0xffffffff, 0x3d000 - 20);
	GUEST_ASSERT_EQ(res(28) & 0xffffffff, 0x1234abcd);
	GUEST_ASSERT_EQ(res(29) & 0xffff, 0x10);
	GUEST_ASSERT_EQ(res(38) & 0xffffffff, 0x3e000 - 4);
	GUEST_ASSERT_EQ(res(47) & 0xffffffff, 0x3e000); /* back in ring 3: lret $4 */
	GUEST_ASSERT_EQ(res(48) & 0xffff, 0x53);
	/* 32-bit paging. */
	EXPECT_PROBE(30, 0xff, 0);
	GUEST_ASSERT_EQ(res(31) & 0xffffffff, 0xc3c3c3c3); /* 4 MiB alias */
	EXPECT_PROBE(32, 14, 0);
	GUEST_ASSERT_EQ(res(33) & 0xffffffff, 0x800010);
	GUEST_ASSERT_EQ(res(34) & 0x60, 0x60);
	GUEST_ASSERT_EQ(*at32(D_SCRATCH + 4), 0x31);
	EXPECT_PROBE(35, 14, 3);
	GUEST_ASSERT_EQ(res(36) & 0xffffffff, 0x39000);
	EXPECT_PROBE(37, 0xff, 0);
	GUEST_ASSERT_EQ(*at32(0x9000), 3);
	/* PAE paging. */
	GUEST_ASSERT_EQ(res(40) & 0xffffffff, 0xc3c3c3c3); /* 2 MiB alias */
	EXPECT_PROBE(41, 14, 0);
	GUEST_ASSERT_EQ(res(42) & 0xffffffff, 0x40000000);
	EXPECT_PROBE(43, 14, 9);
	EXPECT_PROBE(44, 0xff, 0);
	EXPECT_PROBE(45, 14, 0x11);
	EXPECT_PROBE(46, 0xff, 0);
	GUEST_SYNC(6, 0);
}
