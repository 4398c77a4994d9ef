/* 256 interrupt entry stubs. Vectors with a CPU-pushed error code (8, 10-14,
 * 17, 21, 29, 30) skip the dummy push so every frame looks the same:
 * vector, error, then the CPU's rip, cs, rflags, rsp, ss. */
	.text
	.code64
	.altmacro

.macro isr n
	.balign 16
isr_\n:
	.if (\n == 8) || (\n >= 10 && \n <= 14) || (\n == 17) || (\n == 21) || (\n == 29) || (\n == 30)
	.else
	pushq	$0
	.endif
	pushq	$\n
	jmp	isr_common
.endm

.set i, 0
.rept 256
	isr %i
	.set i, i + 1
.endr

isr_common:
	push	%rax
	push	%rcx
	push	%rdx
	push	%rsi
	push	%rdi
	push	%r8
	push	%r9
	push	%r10
	push	%r11
	push	%rbx
	lea	80(%rsp), %rdi		/* struct irq_frame */
	mov	%rsp, %rbx
	and	$-16, %rsp
	call	isr_dispatch
	mov	%rbx, %rsp
	pop	%rbx
	pop	%r11
	pop	%r10
	pop	%r9
	pop	%r8
	pop	%rdi
	pop	%rsi
	pop	%rdx
	pop	%rcx
	pop	%rax
	add	$16, %rsp		/* vector and error code */
	iretq

.macro isr_addr n
	.quad isr_\n
.endm
	.section .rodata
	.balign 8
	.globl isr_table
isr_table:
.set i, 0
.rept 256
	isr_addr %i
	.set i, i + 1
.endr
