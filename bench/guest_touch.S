/* A micro-guest that writes to all of its memory, for tarnd's memory quota
 * test (tests/integration/tarnd.sh): one byte in every 4 KiB page from
 * 4 MiB up to TOP, so that the host must give it every page; then it says
 * "touched" on COM1 and writes on over the same pages forever (busy, as a
 * guest at work is). Entered as guest_count.S is (PVH note, 32-bit
 * protected mode, paging off): give it more than TOP of RAM. */
#include "pvh_note.h"

#define BOTTOM		0x400000	/* 4 MiB: above the code and stack */
#define TOP		0x10000000	/* 256 MiB */

	.section .text.start, "ax"
	.code32
	.globl pvh_start
pvh_start:
	cli
	mov	$0x400000, %esp
	xor	%ebx, %ebx		/* passes made */
1:	mov	$BOTTOM, %edi
2:	movb	%bl, (%edi)
	add	$4096, %edi
	cmp	$TOP, %edi
	jb	2b
	test	%ebx, %ebx
	jnz	4f
	mov	$msg, %esi		/* after the first pass */
3:	lodsb
	test	%al, %al
	jz	4f
	call	putc
	jmp	3b
4:	inc	%ebx
	jmp	1b

	com1_putc

msg:	.asciz	"touched\r\n"

	pvh_note pvh_start
