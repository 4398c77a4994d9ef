/* Micro-guest entry, in 64-bit mode on tarn's boot page tables and GDT.
 * Every vCPU that starts here takes its own stack, indexed by its APIC ID,
 * then calls guest_main(cpu, rsi). */
	.section .text.start, "ax"
	.globl _start
	.code64
_start:
	cli
	mov	%rsi, %r12		/* boot_params (or 0) */
	mov	$1, %eax
	cpuid
	shr	$24, %ebx		/* initial APIC ID */
	mov	%ebx, %r13d
	cmp	$16, %ebx		/* GUEST_MAX_CPUS */
	jae	1f
	lea	guest_stacks(%rip), %rsp
	lea	1(%rbx), %rax
	shl	$14, %rax		/* GUEST_STACK_SIZE */
	add	%rax, %rsp
	mov	%r13d, %edi
	mov	%r12, %rsi
	call	guest_start
1:	hlt
	jmp	1b

	.bss
	.balign 4096
	.globl guest_stacks
guest_stacks:
	.skip 16384 * 16
