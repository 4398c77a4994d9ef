/* Down through every x86 mode and back: 64-bit long mode -> compatibility
 * mode -> 32-bit protected mode (paging and EFER.LME off) -> 16-bit
 * protected mode -> real mode (segment arithmetic, int through the IVT,
 * 16- and 32-bit operations) -> 32-bit protected mode -> long mode. Each
 * mode reports a ucall SYNC itself (args[0] = sequence number, args[1] = CS,
 * then mode-specific values the host checks). The code runs from a copy at
 * 0x30000 (real mode needs it below 1 MiB), with its data beside it. */
#include "lib/guest.h"

#define LOW 0x30000
/* Data offsets from LOW; the code is copied to LOW + 0. */
#define D_GDT 0x800
#define D_GDTR 0x840
#define D_IVTR 0x850
#define D_RSP 0x858
#define D_GDTR_SAVE 0x860
#define D_IDTR_SAVE 0x870
#define D_CS_SAVE 0x880
#define D_SS_SAVE 0x882
#define D_CR3 0x888
#define D_RES 0x900 /* what real and 16-bit code saw */
#define D_UC 0xa00  /* the ucall block the 16/32-bit code fills */
#define D_IVT 0xc00
#define D_SCRATCH 0x1000
#define CODE_MAX 0x800

extern const uint8_t tramp_start[], tramp_end[], rm_int42[];

/* Selectors of the trampoline's GDT. */
#define S_CODE64 0x08
#define S_DATA 0x10
#define S_CODE32 0x18
#define S_CODE16 0x20
#define S_DATA16 0x28

/* ucall from 32-bit flat code: args[0] = n, args[1] = CS, args[2] = EFER
 * low, args[3] = CR0. Clobbers eax, ecx, edx. */
#define UC32(n)                                                                \
	"mov %cs, %eax; mov %eax, 0x30a10\n"                                   \
	"mov $0xc0000080, %ecx; rdmsr; mov %eax, 0x30a18\n"                    \
	"mov %cr0, %eax; mov %eax, 0x30a20\n"                                  \
	"movl $" #n ", 0x30a08\n"                                              \
	"mov $0x30a00, %eax; out %eax, $0xe8\n"

__asm__(".section .text.tramp, \"ax\"\n"
	".globl tramp_start, tramp_end, rm_int42\n"
	".code64\n"
	"tramp_start:\n"
	"	push %rbx; push %rbp; push %r12; push %r13; push %r14; push %r15\n"
	"	mov %rsp, 0x30858\n"
	"	sgdt 0x30860\n"
	"	sidt 0x30870\n"
	"	mov %cs, %ax; mov %ax, 0x30880\n"
	"	mov %ss, %ax; mov %ax, 0x30882\n"
	"	mov %cr3, %rax; mov %rax, 0x30888\n"
	"	lgdt 0x30840\n"
	/* 64-bit -> compatibility mode: a far return to 32-bit code. */
	"	pushq $0x18\n"
	"	pushq $(0x30000 + c32 - tramp_start)\n"
	"	lretq\n"
	".code32\n"
	"c32:\n"
	"	mov $0x10, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss\n"
	"	mov $0x3fff0, %esp\n" UC32(2)
	/* Leave long mode: paging off (LMA clears), then LME off. */
	"	mov %cr0, %eax; and $0x7fffffff, %eax; mov %eax, %cr0\n"
	"	mov $0xc0000080, %ecx; rdmsr; and $0xfffffeff, %eax; wrmsr\n" UC32(3)
	/* 32-bit protected mode -> 16-bit protected mode (base 0x30000). */
	"	ljmp $0x20, $(p16 - tramp_start)\n"
	".code16\n"
	"p16:\n"
	"	mov $0x28, %ax; mov %ax, %ds; mov %ax, %es; mov %ax, %ss\n"
	"	mov $0xfff0, %sp\n"
	"	pushw $0x1234; pop %bx; mov %bx, (0x900)\n"
	"	mov %sp, (0x902)\n"
	"	mov %cs, %ax; movzwl %ax, %eax; mov %eax, (0xa10)\n"
	"	movl $0, (0xa18); movl $0, (0xa20)\n"
	"	movl $4, (0xa08)\n"
	"	mov $0x30a00, %eax; out %eax, $0xe8\n"
	/* 16-bit protected mode -> real mode. */
	"	mov %cr0, %eax; and $0xfffffffe, %eax; mov %eax, %cr0\n"
	"	ljmp $0x3000, $(rm - tramp_start)\n"
	"rm:\n"
	"	mov $0x3000, %ax; mov %ax, %ds; mov %ax, %es; mov %ax, %ss\n"
	"	mov $0xfff0, %sp\n"
	"	lidtw (0x850)\n"
	/* Segment arithmetic: 0x3100:0x0010 is 0x3000:0x1010. */
	"	mov $0x3100, %ax; mov %ax, %es\n"
	"	movw $0xbeef, %es:(0x10)\n"
	"	mov (0x1010), %ax; mov %ax, (0x908)\n"
	/* A 16-bit offset wraps inside its segment: DS:0xffff+2 is DS:0x0001. */
	"	mov $0x3100, %ax; mov %ax, %es\n"
	"	movw $0x5aa5, %es:(0x0001)\n"
	"	mov $0xffff, %bx; mov %es:2(%bx), %ax; mov %ax, (0x90a)\n"
	/* int through the IVT: the handler sees FLAGS, CS, IP on the stack. */
	"	movw $0, (0x910)\n"
	"	stc\n"
	"	int $0x42\n"
	"	setc (0x914)\n"
	"	mov %sp, (0x916)\n"
	/* 16-bit arithmetic and a 32-bit operation with an override. */
	"	mov $0xffff, %ax; add $1, %ax; setc %bl; mov %ax, (0x918); mov %bl, (0x91a)\n"
	"	mov $0x12345678, %eax; shr $16, %eax; mov %eax, (0x920)\n"
	"	mov %cs, %ax; movzwl %ax, %eax; mov %eax, (0xa10)\n"
	"	movzwl (0x908), %eax; mov %eax, (0xa18)\n"
	"	movzwl (0x910), %eax; mov %eax, (0xa20)\n"
	"	movl $5, (0xa08)\n"
	"	mov $0x30a00, %eax; out %eax, $0xe8\n"
	/* Real mode -> 32-bit protected mode. */
	"	lgdtl (0x840)\n"
	"	mov %cr0, %eax; or $1, %eax; mov %eax, %cr0\n"
	"	ljmpl $0x18, $(0x30000 + p32b - tramp_start)\n"
	"rm_int42:\n"
	"	movw $0x42, (0x910)\n"
	"	mov %sp, (0x912)\n"
	"	iret\n"
	".code32\n"
	"p32b:\n"
	"	mov $0x10, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss\n"
	"	mov $0x3fff0, %esp\n" UC32(6)
	/* 32-bit protected mode -> long mode (compatibility) -> 64-bit. */
	"	mov 0x30888, %eax; mov %eax, %cr3\n"
	"	mov $0xc0000080, %ecx; rdmsr; or $0x100, %eax; wrmsr\n"
	"	mov %cr0, %eax; or $0x80000000, %eax; mov %eax, %cr0\n"
	"	ljmp $0x08, $(0x30000 + l64 - tramp_start)\n"
	".code64\n"
	"l64:\n"
	"	mov $0x10, %eax; mov %eax, %ds; mov %eax, %es; mov %eax, %ss\n"
	"	mov 0x30858, %rsp\n"
	"	mov %cs, %eax; mov %eax, 0x30a10\n"
	"	mov $0xc0000080, %ecx; rdmsr; mov %eax, 0x30a18\n"
	"	mov %cr0, %rax; mov %eax, 0x30a20\n"
	"	movl $7, 0x30a08\n"
	"	mov $0x30a00, %eax; out %eax, $0xe8\n"
	/* Back on the boot GDT, IDT and selectors, then return to C. */
	"	lgdt 0x30860\n"
	"	lidt 0x30870\n"
	"	movzwl 0x30880, %eax; push %rax\n"
	"	lea 1f(%rip), %rax; push %rax\n"
	"	lretq\n"
	"1:	movzwl 0x30882, %eax; mov %eax, %ss; mov %eax, %ds; mov %eax, %es\n"
	"	pop %r15; pop %r14; pop %r13; pop %r12; pop %rbp; pop %rbx\n"
	"	ret\n"
	"tramp_end:\n"
	".text\n");

static void put16(uint64_t a, uint16_t v) { *(volatile uint16_t *)(uintptr_t)a = v; }
static void put32(uint64_t a, uint32_t v) { *(volatile uint32_t *)(uintptr_t)a = v; }
static void put64(uint64_t a, uint64_t v) { *(volatile uint64_t *)(uintptr_t)a = v; }
static uint16_t get16(uint64_t a) { return *(volatile uint16_t *)(uintptr_t)a; }
static uint32_t get32(uint64_t a) { return *(volatile uint32_t *)(uintptr_t)a; }

void guest_main(unsigned cpu, uint64_t arg)
{
	static const uint64_t gdt[] = {
		0,
		0x00209a0000000000ULL, /* 0x08 64-bit code */
		0x00cf92000000ffffULL, /* 0x10 flat data */
		0x00cf9a000000ffffULL, /* 0x18 flat 32-bit code */
		0x00009a030000ffffULL, /* 0x20 16-bit code, base 0x30000 */
		0x000092030000ffffULL, /* 0x28 16-bit data, base 0x30000 */
	};
	uint64_t size = (uint64_t)(tramp_end - tramp_start);
	uint16_t cs;

	GUEST_ASSERT(size <= CODE_MAX);
	memset((void *)(uintptr_t)LOW, 0, 0x1100);
	memcpy((void *)(uintptr_t)LOW, tramp_start, size);
	memcpy((void *)(uintptr_t)(LOW + D_GDT), gdt, sizeof(gdt));
	put16(LOW + D_GDTR, sizeof(gdt) - 1);
	put64(LOW + D_GDTR + 2, LOW + D_GDT);
	put16(LOW + D_IVTR, 0x3ff);
	put32(LOW + D_IVTR + 2, LOW + D_IVT);
	put32(LOW + D_IVT + 0x42 * 4, (0x3000u << 16) | (uint32_t)(rm_int42 - tramp_start));
	put32(LOW + D_UC, UCALL_SYNC);
	memcpy((void *)(uintptr_t)(LOW + D_UC + 40), "g_modeswitch.c", 15);

	__asm__ volatile("mov %%cs, %0" : "=r"(cs));
	GUEST_SYNC4(1, cs, rdmsr(0xc0000080), read_cr0());
	((void (*)(void))(uintptr_t)LOW)();
	__asm__ volatile("mov %%cs, %0" : "=r"(cs));

	/* What the 16-bit code saw. */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x00), 0x1234); /* 16-bit push/pop */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x02), 0xfff0);
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x08), 0xbeef); /* seg:off aliasing */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x0a), 0x5aa5); /* offset wrap */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x10), 0x42);   /* IVT handler ran */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x12), 0xfff0 - 6); /* FLAGS, CS, IP */
	GUEST_ASSERT_EQ(*(volatile uint8_t *)(uintptr_t)(LOW + D_RES + 0x14), 1); /* CF kept */
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x16), 0xfff0);
	GUEST_ASSERT_EQ(get16(LOW + D_RES + 0x18), 0);
	GUEST_ASSERT_EQ(*(volatile uint8_t *)(uintptr_t)(LOW + D_RES + 0x1a), 1);
	GUEST_ASSERT_EQ(get32(LOW + D_RES + 0x20), 0x1234);
	GUEST_SYNC4(8, cs, rdmsr(0xc0000080), read_cr0());
}
