/* The fixed integer workload for the emulator-speed benchmark (bench/cpu.py).
 *
 * Entered like guest_exit.S (PVH note, 32-bit protected mode, paging off,
 * flat segments) by both QEMU and tarn. It runs ITERS iterations of an
 * 18-instruction loop -- a xorshift32 step, a load, a multiply-add and a
 * store into a 4 KiB buffer at 3 MiB -- then writes the low 7 bits of its
 * result to the debug-exit port 0xf4, so both VMMs exit with the same
 * status (result << 1) | 1 only if they computed the same thing.
 *
 * Guest instructions executed: 6 before the loop, 18 * ITERS in it, 3 after
 * (GUEST_INSNS below; bench/cpu.py reads the count from the ELF's symbol
 * table, so the two cannot drift apart).
 */
#include "pvh_note.h"
#ifndef ITERS
#define ITERS 10000000
#endif
#define BODY 18

	.section .text.start, "ax"
	.code32
	.globl pvh_start
pvh_start:
	mov	$ITERS, %ecx
	xor	%eax, %eax
	mov	$0x12345678, %ebx
	mov	$0x300000, %edi
	xor	%esi, %esi
	mov	$0xf4, %dx
1:	mov	%ebx, %ebp		/* xorshift32 */
	shl	$13, %ebp
	xor	%ebp, %ebx
	mov	%ebx, %ebp
	shr	$17, %ebp
	xor	%ebp, %ebx
	mov	%ebx, %ebp
	shl	$5, %ebp
	xor	%ebp, %ebx
	mov	%esi, %ebp		/* buffer slot */
	and	$0xffc, %ebp
	add	(%edi,%ebp), %eax
	imul	$31, %eax, %eax
	add	%ebx, %eax
	mov	%eax, (%edi,%ebp)
	add	$4, %esi
	dec	%ecx
	jnz	1b
	and	$0x7f, %eax
	out	%eax, (%dx)
2:	hlt				/* not reached: the exit device stops the VM */
	jmp	2b

	/* Instruction count, for the harness (an absolute symbol). */
	.globl	GUEST_INSNS
	.set	GUEST_INSNS, 6 + BODY * ITERS + 3

	pvh_note pvh_start
