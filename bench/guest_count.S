/* The counting micro-guest for the snapshot benchmark (bench/snapshot.py).
 *
 * Entered like guest_exit.S (PVH note, 32-bit protected mode, paging off,
 * flat segments) by both QEMU (-M microvm -kernel) and tarn. It prints
 * "count N\r\n" on COM1 (0x3f8), N = 1, 2, 3, ..., one line every 10 ms of
 * guest time, forever: the harness checks that a restored guest goes on at
 * N+1. The 10 ms are counted on the 8254 PIT, a clock both machines have
 * (QEMU microvm with pit=on), so the pace does not depend on how fast each
 * CPU runs or on a TSC frequency: channel 0 in mode 2 with the full 65536
 * count, its count latched and read in a loop, the decrements summed.
 * Interrupts stay off (no IDT), so the PIT's IRQ 0 is never taken.
 *
 * Memory: its code page and a stack in the 4 KiB below 4 MiB.
 */
#include "pvh_note.h"

#define PIT_CH0		0x40
#define PIT_CTRL	0x43
#define PIT_HZ		1193182
#define LINE_TICKS	(PIT_HZ / 100)	/* 10 ms */

	.section .text.start, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	mov	$0x400000, %esp
	mov	$0x34, %al		/* channel 0, lobyte/hibyte, mode 2, binary */
	out	%al, $PIT_CTRL
	xor	%eax, %eax		/* count 0 = 65536 */
	out	%al, $PIT_CH0
	out	%al, $PIT_CH0
	call	pit_read
	mov	%eax, %esi		/* the count at the last read */
	xor	%ebx, %ebx		/* N */
1:	inc	%ebx
	call	print_line
	xor	%edi, %edi		/* PIT ticks since the line */
2:	call	pit_read
	mov	%esi, %ecx		/* the counter counts down, modulo 65536 */
	sub	%eax, %ecx
	and	$0xffff, %ecx
	add	%ecx, %edi
	mov	%eax, %esi
	cmp	$LINE_TICKS, %edi
	jb	2b
	jmp	1b

/* %eax = channel 0's count (0..65535); clobbers nothing else. */
pit_read:
	xor	%eax, %eax		/* counter latch, channel 0 */
	out	%al, $PIT_CTRL
	in	$PIT_CH0, %al
	mov	%al, %ah
	in	$PIT_CH0, %al
	xchg	%al, %ah
	movzwl	%ax, %eax
	ret

/* "count N\r\n" with N = %ebx; clobbers nothing. */
print_line:
	pusha
	mov	$prefix, %esi
1:	lodsb
	test	%al, %al
	jz	2f
	call	putc
	jmp	1b
2:	mov	%ebx, %eax
	mov	$10, %ecx
	xor	%edi, %edi		/* digits pushed */
3:	xor	%edx, %edx
	div	%ecx
	push	%edx
	inc	%edi
	test	%eax, %eax
	jnz	3b
4:	pop	%eax
	add	$'0', %al
	call	putc
	dec	%edi
	jnz	4b
	mov	$'\r', %al
	call	putc
	mov	$'\n', %al
	call	putc
	popa
	ret

	com1_putc

prefix:	.asciz	"count "

	pvh_note pvh_start
