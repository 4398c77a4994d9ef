/* The PVH note of the bench micro-guests (assembly; bench/guest.ld puts the
 * .note.Xen section in a PT_NOTE segment of its own): XEN_ELFNOTE_PHYS32_ENTRY
 * (type 18, name "Xen") pointing at a 32-bit entry, which QEMU (-M microvm
 * -kernel, through its qboot firmware) and tarn both enter in 32-bit
 * protected mode with paging off. 64-bit ELF: the descriptor is 8 bytes (as
 * Linux's _ASM_PTR), which QEMU reads as a size_t and tarn as a u64. Notes
 * are 4-byte aligned; QEMU pads the name to the segment's p_align, so that
 * must stay 4. Use: `pvh_note pvh_start` once per guest. */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

.macro pvh_note entry
	.pushsection .note.Xen, "a", @note
	.balign 4
	.long	2f - 1f			/* namesz */
	.long	4f - 3f			/* descsz */
	.long	XEN_ELFNOTE_PHYS32_ENTRY
1:	.asciz	"Xen"
2:	.balign 4
3:	.quad	\entry
4:	.balign 4
	.popsection
.endm

/* COM1 for the guests that print: `com1_putc` defines putc, which sends
 * %al once the transmitter holds nothing (clobbers %eax, %edx). */
#define COM1		0x3f8
#define COM1_LSR	(COM1 + 5)
#define LSR_THRE	0x20

.macro com1_putc
putc:
	mov	%al, %ah
	mov	$COM1_LSR, %dx
1:	in	%dx, %al
	test	$LSR_THRE, %al
	jz	1b
	mov	%ah, %al
	mov	$COM1, %dx
	out	%al, %dx
	ret
.endm
