/* Loading a kernel and building the x86 boot state.
 *
 * Accepted kernels, detected from the file's contents:
 *   - bzImage (Linux boot protocol >= 2.12): entered at its 64-bit entry
 *     (load address + 0x200) with boot_params in RSI, as in the protocol's
 *     "64-bit boot" section;
 *   - ELF64 with a PVH note (XEN_ELFNOTE_PHYS32_ENTRY): entered in 32-bit
 *     protected mode, paging off, EBX = hvm_start_info (the PVH ABI);
 *   - other ELF64 images (Linux vmlinux, tarn micro-guests): entered at
 *     e_entry in 64-bit mode with boot_params in RSI.
 *
 * Guest-physical layout of the boot data (all below 1 MiB):
 *   0x0500 GDT   0x6000 PVH start info   0x7000 boot_params (zero page)
 *   0x9000 PML4  0xa000 PDPT  0xb000-0xefff PDs (identity map of 0-4 GiB, 2 MiB pages)
 *   0x20000 command line   0x9fc00-0xa0000 EBDA (reserved)   0xe0000-0xfffff ACPI tables
 */
#ifndef TARN_X86_BOOT_H
#define TARN_X86_BOOT_H

#include <stddef.h>
#include <stdint.h>

struct vm;

#define BOOT_GDT_ADDR 0x500
#define BOOT_START_INFO_ADDR 0x6000
#define BOOT_ZERO_PAGE_ADDR 0x7000
#define BOOT_STACK_TOP 0x8ff0
#define BOOT_PML4_ADDR 0x9000
#define BOOT_PDPT_ADDR 0xa000
#define BOOT_PD_ADDR 0xb000
#define BOOT_CMDLINE_ADDR 0x20000
#define BOOT_CMDLINE_MAX 0x10000
#define BOOT_EBDA_ADDR 0x9fc00
#define BOOT_BIOS_START 0xe0000
#define BOOT_HIMEM_START 0x100000
#define BOOT_KERNEL_ADDR 0x100000

#define E820_RAM 1
#define E820_RESERVED 2
#define E820_MAX 128

struct e820_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct e820_entry) == 20, "boot_params e820 entry (zero-page.rst)");

/* Build the e820 map of vm's RAM. Returns the number of entries. */
int x86_e820_build(const struct vm *vm, struct e820_entry *e, int max);

/* Load cfg.kernel (and cfg.initrd, cfg.cmdline) into guest memory, write
 * boot tables (page tables, GDT, boot_params or PVH start info, ACPI), and
 * fill vm->boot_state. On failure, -errno and a one-line reason in err. */
int x86_boot_setup(struct vm *vm, char *err, size_t err_len) __attribute__((warn_unused_result));

#endif
