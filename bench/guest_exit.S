/* The exit-at-once micro-guest for the start-latency and memory benchmarks.
 *
 * One ELF64 image that both VMMs boot: a PVH note (XEN_ELFNOTE_PHYS32_ENTRY,
 * type 18, name "Xen") points at a 32-bit entry that both QEMU (-M microvm
 * -kernel, via its qboot firmware) and tarn (directly) enter in 32-bit
 * protected mode with paging off. Its very first instructions write 0 to the
 * isa-debug-exit port 0xf4, so the VMM exits with status (0 << 1) | 1 = 1.
 * It touches no guest RAM beyond its own code page (no stack, no data).
 *
 * The ELF's e_entry is the same address: these bytes (66 ba f4 00, 31 c0,
 * ef, fa, f4, eb fc) decode identically in 32- and 64-bit mode, so a loader
 * that ignores the note and enters in 64-bit mode runs the same exit.
 */
#include "pvh_note.h"

	.section .text.start, "ax"
	.code32
	.globl pvh_start
pvh_start:
	mov	$0xf4, %dx
	xor	%eax, %eax
	out	%eax, (%dx)
	/* Not reached when the debug-exit device exists; park the vCPU. */
1:	cli
	hlt
	jmp	1b

	pvh_note pvh_start
