/* The long-mode workloads of the CPU benchmark (bench/cpu.py): 64-bit code
 * with 4-level paging, one figure per build.
 *
 * Entered like guest_exit.S (PVH note, 32-bit protected mode, paging off)
 * by both QEMU and tarn. The 32-bit part builds the page tables and a GDT
 * (kernel and user segments, a 64-bit TSS), turns on PAE, PGE, EFER.LME/SCE
 * and paging, and far-jumps to 64-bit code. The ring-0 part loads an IDT,
 * the TSS and the SYSCALL MSRs, prepares the figure's data, then drops to
 * ring 3 with SYSRET, where the measured loop runs. Ring 3 ends with
 * `int $0x80`, whose ring-0 handler checks the result and writes it to the
 * debug-exit port 0xf4: GUEST_OK (0x40 | FIGURE) when every check passed,
 * a check number (1-0x1f) or 0x20 | vector (an unexpected exception)
 * otherwise. bench/cpu.py accepts only exit status (GUEST_OK << 1) | 1.
 *
 * FIGURE (one per ELF; bench/bench.mk builds each):
 *   1 chase    CHASE_LAPS laps of a pointer chase over NPAGES 4 KiB pages
 *              mapped at ALIAS: one pointer per page at a page-dependent
 *              offset, the pages in one random cycle (Sattolo's shuffle,
 *              a fixed xorshift64 seed), so every load depends on the last
 *              and the pages are more than a TLB holds. After whole laps
 *              the chase must be back at its start.
 *   2 syscall  SYSCALL_N SYSCALL/SYSRET round trips from ring 3; the
 *              handler swaps GS, switches stacks, counts and returns the
 *              count, which ring 3 sums (must be N(N+1)/2).
 *   3 fault    FAULT_ROUNDS rounds over NPAGES pages at ALIAS whose PTEs
 *              start not present: ring 3 writes page i, then reads page
 *              i-1. Each access faults (#PF from ring 3 through TSS.RSP0):
 *              the handler checks the error code (user, not present) and
 *              CR2, maps the faulting page, unmaps the page of the previous
 *              fault (clears its PTE, INVLPG) and IRETs. The read of page
 *              i-1 faults only because of that INVLPG (its translation was
 *              used an instant before), so a CPU that skipped it makes too
 *              few faults and fails the count; each page's counter (read
 *              through the identity map) is checked too. Two faults per
 *              page per round.
 * GUEST_OPS is the number of operations (loads, round trips, faults); with
 * -DSETUP the measured loop runs zero times: the twin that bench/cpu.py
 * subtracts, so start-up and set-up (page tables, the shuffle, the host's
 * first touch of 32 MiB of guest RAM) count against neither side.
 */
#include "pvh_note.h"

#define FIG_CHASE 1
#define FIG_SYSCALL 2
#define FIG_FAULT 3
#ifndef FIGURE
#error "build with -DFIGURE=1 (chase), 2 (syscall) or 3 (fault)"
#endif

#ifndef NPAGES
#define NPAGES 8192		/* 32 MiB of data pages: a multiple of 512 */
#endif
#ifndef CHASE_LAPS
#define CHASE_LAPS 512		/* 512 * 8192 = 4 Mi loads */
#endif
#ifndef SYSCALL_N
#define SYSCALL_N 4000000
#endif
#ifndef FAULT_ROUNDS
#define FAULT_ROUNDS 16		/* 2 * 16 * 8192 = 256 Ki faults */
#endif
#ifdef SETUP
#undef CHASE_LAPS
#undef SYSCALL_N
#undef FAULT_ROUNDS
#define CHASE_LAPS 0
#define SYSCALL_N 0
#define FAULT_ROUNDS 0
#endif
#define CHASE_UNROLL 8
#define CHASE_ITERS (CHASE_LAPS * NPAGES / CHASE_UNROLL)

/* Guest-physical layout (64 MiB of RAM; the code is at 2 MiB, tarn's and
 * QEMU's boot data below 1 MiB). 0-64 MiB is identity-mapped with 4 KiB
 * pages (global, user); the data pages are also mapped at ALIAS, through
 * PML4 slot 1, as user pages. */
#define PML4		0x400000
#define PDPT_LO		0x401000
#define PD_LO		0x402000
#define PT_LO		0x403000	/* 32 tables: 0-64 MiB */
#define LO_PAGES	16384
#define PDPT_AL		0x423000
#define PD_AL		0x424000
#define PT_AL		0x425000	/* NPAGES / 512 tables */
#define GDT		0x440000
#define IDT		0x441000
#define TSS		0x442000
#define PCPU		0x443000	/* kernel variables (gs base in the syscall path) */
#define SYS_END		0x444000
#define KSTACK_TOP	0x460000
#define USTACK_TOP	0x470000
#define PERM		0x480000	/* NPAGES dwords: the shuffle */
#define DATA		0x800000	/* NPAGES frames, 8 MiB up */
#define ALIAS		0x8000000000	/* PML4[1] */

#define PCPU_KSP	(PCPU + 0)
#define PCPU_USP	(PCPU + 8)
#define PCPU_COUNT	(PCPU + 16)
#define PF_PREV_PTE	(PCPU + 24)
#define PF_PREV_VA	(PCPU + 32)

#define SEL_KCODE	0x08
#define SEL_KDATA	0x10
#define SEL_UBASE	0x18	/* SYSRET: SS = +8, 64-bit CS = +16 */
#define SEL_TSS		0x30

#define PTE_PWU		7
#define PTE_G		0x100
#define MSR_EFER	0xc0000080
#define MSR_STAR	0xc0000081
#define MSR_LSTAR	0xc0000082
#define MSR_SFMASK	0xc0000084
#define MSR_GS_BASE	0xc0000101
#define MSR_KGS_BASE	0xc0000102

#define GUEST_OK_VAL	(0x40 | FIGURE)
/* Check numbers (the exit value when a check fails). */
#define BAD_CHASE_END	1
#define BAD_SYS_COUNT	2
#define BAD_SYS_SUM	3
#define BAD_PF_COUNT	4
#define BAD_PF_PAGE	5
#define BAD_PF_ERR	6
#define BAD_PF_ADDR	7

/* A page's pointer offset in the chase: varied, 8-byte aligned. */
.macro page_off reg32
	imul	$0x9e3779b1, \reg32, \reg32
	shr	$20, \reg32
	and	$0xff8, \reg32
.endm

	.section .text.start, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cld
	mov	$KSTACK_TOP, %esp
	/* Zero the page tables and system pages. */
	mov	$PML4, %edi
	mov	$(SYS_END - PML4) / 4, %ecx
	xor	%eax, %eax
	rep stosl
	/* The identity map of 0-64 MiB; ALIAS's page directory (its PTEs
	 * come later). */
	movl	$PDPT_LO | PTE_PWU, PML4
	movl	$PDPT_AL | PTE_PWU, PML4 + 8
	movl	$PD_LO | PTE_PWU, PDPT_LO
	movl	$PD_AL | PTE_PWU, PDPT_AL
	mov	$PD_LO, %edi
	mov	$PT_LO | PTE_PWU, %eax
	mov	$LO_PAGES / 512, %ecx
	call	fill_table
	mov	$PT_LO, %edi
	mov	$PTE_PWU | PTE_G, %eax
	mov	$LO_PAGES, %ecx
	call	fill_table
	mov	$PD_AL, %edi
	mov	$PT_AL | PTE_PWU, %eax
	mov	$NPAGES / 512, %ecx
	call	fill_table
	/* Our GDT, in a data page (LTR writes the TSS's busy bit). */
	mov	$gdt_template, %esi
	mov	$GDT, %edi
	mov	$(gdt_end - gdt_template) / 4, %ecx
	rep movsl
	lgdt	gdtr
	/* Long mode: PAE + PGE, CR3, EFER.LME + SCE, paging (and WP). */
	mov	%cr4, %eax
	or	$0xa0, %eax
	mov	%eax, %cr4
	mov	$PML4, %eax
	mov	%eax, %cr3
	mov	$MSR_EFER, %ecx
	rdmsr
	or	$0x101, %eax
	wrmsr
	mov	%cr0, %eax
	or	$0x80010001, %eax
	mov	%eax, %cr0
	ljmp	$SEL_KCODE, $start64

/* %ecx entries at %edi: %eax, then each one 4 KiB further on. */
fill_table:
1:	mov	%eax, (%edi)
	add	$8, %edi
	add	$0x1000, %eax
	loop	1b
	ret

	.code64
start64:
	mov	$SEL_KDATA, %eax
	mov	%ax, %ds
	mov	%ax, %es
	mov	%ax, %ss
	xor	%eax, %eax
	mov	%ax, %fs
	mov	%ax, %gs
	mov	$KSTACK_TOP, %esp
	/* IDT: vectors 0-31 to stubs that report the vector, #PF to the
	 * fault figure's handler, 0x80 (callable from ring 3) to the exit. */
	xor	%ebx, %ebx
1:	lea	exc_stubs(,%rbx,8), %rax
	mov	%rbx, %rsi
	shl	$4, %rsi
	add	$IDT, %rsi
	mov	$0x8e, %edx
	call	set_gate
	inc	%ebx
	cmp	$32, %ebx
	jb	1b
#if FIGURE == FIG_FAULT
	mov	$pf_entry, %eax
	mov	$IDT + 14 * 16, %esi
	call	set_gate
#endif
	mov	$exit_entry, %eax
	mov	$IDT + 0x80 * 16, %esi
	mov	$0xee, %edx
	call	set_gate
	lidt	idtr
	/* TSS: ring-0 stack for interrupts from ring 3; no I/O bitmap. */
	movq	$KSTACK_TOP, TSS + 4
	movw	$104, TSS + 0x66
	mov	$SEL_TSS, %eax
	ltr	%ax
	/* SYSCALL: kernel CS 0x08 (SS 0x10), SYSRET base 0x18; mask TF, IF,
	 * DF, IOPL, NT, AC. GS base 0 in ring 3, PCPU in ring 0. */
	mov	$MSR_STAR, %ecx
	xor	%eax, %eax
	mov	$(SEL_UBASE << 16) | SEL_KCODE, %edx
	wrmsr
	mov	$MSR_LSTAR, %ecx
	mov	$syscall_entry, %eax
	xor	%edx, %edx
	wrmsr
	mov	$MSR_SFMASK, %ecx
	mov	$0x47700, %eax
	wrmsr
	mov	$MSR_KGS_BASE, %ecx
	mov	$PCPU, %eax
	wrmsr
	mov	$MSR_GS_BASE, %ecx
	xor	%eax, %eax
	wrmsr
	movq	$KSTACK_TOP, PCPU_KSP

#if FIGURE == FIG_CHASE
	/* Sattolo's shuffle of 0..NPAGES-1 gives one cycle through all pages. */
	xor	%eax, %eax
1:	mov	%eax, PERM(,%rax,4)
	inc	%eax
	cmp	$NPAGES, %eax
	jb	1b
	movabs	$0x9e3779b97f4a7c15, %r8
	mov	$NPAGES - 1, %ecx
1:	mov	%r8, %rax		/* xorshift64 */
	shl	$13, %rax
	xor	%rax, %r8
	mov	%r8, %rax
	shr	$7, %rax
	xor	%rax, %r8
	mov	%r8, %rax
	shl	$17, %rax
	xor	%rax, %r8
	mov	%r8, %rax		/* j = (rand >> 32) * i >> 32, j < i */
	shr	$32, %rax
	imul	%rcx, %rax
	shr	$32, %rax
	mov	PERM(,%rcx,4), %edx
	mov	PERM(,%rax,4), %esi
	mov	%esi, PERM(,%rcx,4)
	mov	%edx, PERM(,%rax,4)
	dec	%ecx
	jnz	1b
	/* Page k holds, at page_off(k), the ALIAS address of page perm[k]'s
	 * pointer; written through the identity map. Every PTE is present. */
	movabs	$ALIAS, %r9
	xor	%ecx, %ecx
1:	mov	PERM(,%rcx,4), %eax	/* n = perm[k] */
	mov	%eax, %edx
	page_off %edx
	shl	$12, %rax
	add	%rdx, %rax
	add	%r9, %rax		/* ALIAS + n * 4096 + off(n) */
	mov	%ecx, %edx
	page_off %edx
	mov	%rcx, %rsi
	shl	$12, %rsi
	mov	%rax, DATA(%rsi,%rdx)
	lea	DATA + PTE_PWU(%rsi), %rax
	mov	%rax, PT_AL(,%rcx,8)
	inc	%ecx
	cmp	$NPAGES, %ecx
	jb	1b
	mov	$user_chase, %ecx
#elif FIGURE == FIG_SYSCALL
	movq	$0, PCPU_COUNT
	mov	$user_syscall, %ecx
#elif FIGURE == FIG_FAULT
	/* The ALIAS PTEs stay zero (not present). Touch every frame now, so
	 * the host's first-touch cost falls in the set-up. */
	xor	%ecx, %ecx
1:	mov	%rcx, %rsi
	shl	$12, %rsi
	movq	$0, DATA(%rsi)
	inc	%ecx
	cmp	$NPAGES, %ecx
	jb	1b
	movq	$0, PCPU_COUNT
	/* "The previous fault's page" starts as the last page (unmapped). */
	movq	$PT_AL + (NPAGES - 1) * 8, PF_PREV_PTE
	movabs	$ALIAS + (NPAGES - 1) * 4096, %rax
	mov	%rax, PF_PREV_VA
	mov	$user_fault, %ecx
#else
#error "unknown FIGURE"
#endif
	/* To ring 3 at %rcx, interrupts off. */
	mov	$USTACK_TOP, %esp
	mov	$2, %r11d
	sysretq

/* %rax handler, %rsi gate address, %dl type/attributes: a 64-bit gate to
 * kernel CS, IST 0. */
set_gate:
	mov	%rax, %r8
	and	$0xffff, %r8d
	or	$SEL_KCODE << 16, %r8d
	movzbl	%dl, %r9d
	shl	$40, %r9
	or	%r9, %r8
	mov	%rax, %r9
	shr	$16, %r9
	and	$0xffff, %r9d
	shl	$48, %r9
	or	%r9, %r8
	mov	%r8, (%rsi)
	shr	$32, %rax
	mov	%rax, 8(%rsi)
	ret

/* ---- ring 3: the measured loops ---- */

#if FIGURE == FIG_CHASE
user_chase:
	movabs	$ALIAS, %rax		/* page 0's pointer: page_off(0) = 0 */
	mov	$CHASE_ITERS, %ecx
	test	%ecx, %ecx
	jz	2f
1:
	.rept	CHASE_UNROLL
	mov	(%rax), %rax
	.endr
	dec	%ecx
	jnz	1b
2:	mov	%rax, %rdi
	int	$0x80
#elif FIGURE == FIG_SYSCALL
user_syscall:
	mov	$SYSCALL_N, %r12d
	xor	%r13d, %r13d
	test	%r12d, %r12d
	jz	2f
1:	syscall
	add	%rax, %r13
	dec	%r12d
	jnz	1b
2:	mov	%r13, %rdi
	int	$0x80
#elif FIGURE == FIG_FAULT
user_fault:
	mov	$FAULT_ROUNDS, %r12d
	test	%r12d, %r12d
	jz	3f
	movabs	$ALIAS + (NPAGES - 1) * 4096, %rdx
1:	movabs	$ALIAS, %rbx
	mov	$NPAGES, %r13d
2:	incq	(%rbx)			/* #PF: maps page i, unmaps page i-2 */
	mov	(%rdx), %rax		/* #PF: page i-1, unmapped by the last
					 * fault right after its write used it */
	mov	%rbx, %rdx
	add	$0x1000, %rbx
	dec	%r13d
	jnz	2b
	dec	%r12d
	jnz	1b
3:	int	$0x80

/* #PF from ring 3 (stack: error code, RIP, CS, RFLAGS, RSP, SS). */
pf_entry:
	push	%rax
	push	%rdx
	push	%rcx
	/* User, not present, read or write: tarn's emulator and QEMU's TCG
	 * report INC's read-modify-write as a read (a hardware CPU may
	 * report its write), the MOV after it is a read. */
	mov	24(%rsp), %rax
	or	$2, %eax
	cmp	$6, %rax
	jne	pf_bad_err
	mov	%cr2, %rcx
	movabs	$ALIAS, %rax
	mov	%rcx, %rdx
	sub	%rax, %rdx
	cmp	$NPAGES * 4096, %rdx
	jae	pf_bad_addr
	shr	$12, %rdx		/* page index */
	mov	%rdx, %rax
	shl	$12, %rax
	add	$DATA + PTE_PWU, %rax
	lea	PT_AL(,%rdx,8), %rdx
	mov	%rax, (%rdx)		/* map this page */
	mov	PF_PREV_PTE, %rax	/* unmap the previous fault's page */
	movq	$0, (%rax)
	mov	PF_PREV_VA, %rax
	invlpg	(%rax)
	mov	%rdx, PF_PREV_PTE
	mov	%rcx, PF_PREV_VA
	incq	PCPU_COUNT
	pop	%rcx
	pop	%rdx
	pop	%rax
	add	$8, %rsp
	iretq
pf_bad_err:
	mov	$BAD_PF_ERR, %eax
	jmp	guest_exit
pf_bad_addr:
	mov	$BAD_PF_ADDR, %eax
	jmp	guest_exit
#endif

/* ---- ring 0: system call, the end ---- */

/* The system call: a kernel entry as Linux makes it (GS to the per-CPU
 * area, its own stack), returning the call count. */
syscall_entry:
	swapgs
	mov	%rsp, %gs:PCPU_USP - PCPU
	mov	%gs:PCPU_KSP - PCPU, %rsp
	incq	%gs:PCPU_COUNT - PCPU
	mov	%gs:PCPU_COUNT - PCPU, %rax
	mov	%gs:PCPU_USP - PCPU, %rsp
	swapgs
	sysretq

/* int $0x80 from ring 3: check the figure's result (%rdi), exit. */
exit_entry:
#if FIGURE == FIG_CHASE
	/* Whole laps of one cycle end where they began. */
	movabs	$ALIAS, %rax
	cmp	%rax, %rdi
	mov	$BAD_CHASE_END, %eax
	jne	guest_exit
#elif FIGURE == FIG_SYSCALL
	cmpq	$SYSCALL_N, PCPU_COUNT
	mov	$BAD_SYS_COUNT, %eax
	jne	guest_exit
	movabs	$SYSCALL_N * (SYSCALL_N + 1) / 2, %rax
	cmp	%rax, %rdi
	mov	$BAD_SYS_SUM, %eax
	jne	guest_exit
#elif FIGURE == FIG_FAULT
	cmpq	$2 * FAULT_ROUNDS * NPAGES, PCPU_COUNT
	mov	$BAD_PF_COUNT, %eax
	jne	guest_exit
	xor	%ecx, %ecx
1:	mov	%rcx, %rsi
	shl	$12, %rsi
	cmpq	$FAULT_ROUNDS, DATA(%rsi)
	mov	$BAD_PF_PAGE, %eax
	jne	guest_exit
	inc	%ecx
	cmp	$NPAGES, %ecx
	jb	1b
#endif
	mov	$GUEST_OK_VAL, %eax
/* %eax: the exit value. */
guest_exit:
	mov	$0xf4, %dx
	out	%eax, (%dx)
1:	cli				/* not reached: the exit device stops the VM */
	hlt
	jmp	1b

/* Exceptions 0-31: exit with 0x20 | vector. 8 bytes each. */
	.balign	8
exc_stubs:
	.irp	v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.balign	8
	mov	$0x20 | \v, %al
	jmp	exc_common
	.endr
exc_common:
	movzbl	%al, %eax
	jmp	guest_exit

	.balign	8
gdt_template:
	.quad	0
	.quad	0x00af9b000000ffff	/* 0x08 kernel code, 64-bit */
	.quad	0x00cf93000000ffff	/* 0x10 kernel data */
	.quad	0x00cffb000000ffff	/* 0x18 user code, 32-bit (SYSRET's pair) */
	.quad	0x00cff3000000ffff	/* 0x20 user data */
	.quad	0x00affb000000ffff	/* 0x28 user code, 64-bit */
	/* 0x30: 64-bit TSS at TSS, limit 103, available (type 9). */
	.quad	0x0000890000000067 | ((TSS & 0xffffff) << 16) | ((TSS >> 24) << 56)
	.quad	0
gdt_end:
gdtr:
	.word	gdt_end - gdt_template - 1
	.quad	GDT
idtr:
	.word	256 * 16 - 1
	.quad	IDT

	/* For the harness (absolute symbols). */
	.globl	GUEST_OPS, GUEST_OK
#if FIGURE == FIG_CHASE
	.set	GUEST_OPS, CHASE_ITERS * CHASE_UNROLL
#elif FIGURE == FIG_SYSCALL
	.set	GUEST_OPS, SYSCALL_N
#else
	.set	GUEST_OPS, 2 * FAULT_ROUNDS * NPAGES
#endif
	.set	GUEST_OK, GUEST_OK_VAL

#if NPAGES % 512 || NPAGES > 512 * 16 || DATA + NPAGES * 4096 > 0x3000000
#error "NPAGES: a multiple of 512, at most 8192 (the data must end below 48 MiB)"
#endif
#if (CHASE_LAPS * NPAGES) % CHASE_UNROLL
#error "CHASE_LAPS * NPAGES must be a multiple of CHASE_UNROLL"
#endif

	pvh_note pvh_start
