/* Kernel loading and the x86 boot state. Every offset into boot_params
 * follows Documentation/arch/x86/boot.rst and zero-page.rst of Linux; the
 * PVH start info follows xen/include/public/arch-x86/hvm/start_info.h. All
 * kernel files are untrusted input: every length is checked against the file
 * before use, every destination against guest RAM. */
#include "arch/x86/boot.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/cpu_state.h"
#include "arch/x86/kpayload.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/acpi_pm.h"
#include "mem/gm.h"
#include "pci/pci.h"

/* boot_params offsets (zero-page.rst) */
#define BP_ACPI_RSDP_ADDR 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_HDR 0x1f1
#define BP_E820_TABLE 0x2d0
/* setup header fields, as offsets into the file and into boot_params */
#define HDR_SETUP_SECTS 0x1f1
#define HDR_SYSSIZE 0x1f4
#define HDR_VID_MODE 0x1fa
#define HDR_BOOT_FLAG 0x1fe
#define HDR_JUMP 0x200
#define HDR_MAGIC 0x202
#define HDR_VERSION 0x206
#define HDR_TYPE_OF_LOADER 0x210
#define HDR_LOADFLAGS 0x211
#define HDR_RAMDISK_IMAGE 0x218
#define HDR_RAMDISK_SIZE 0x21c
#define HDR_HEAP_END_PTR 0x224
#define HDR_CMD_LINE_PTR 0x228
#define HDR_INITRD_ADDR_MAX 0x22c
#define HDR_KERNEL_ALIGNMENT 0x230
#define HDR_RELOCATABLE 0x234
#define HDR_XLOADFLAGS 0x236
#define HDR_CMDLINE_SIZE 0x238
#define HDR_PAYLOAD_OFFSET 0x248
#define HDR_PAYLOAD_LENGTH 0x24c
#define HDR_PREF_ADDRESS 0x258
#define HDR_INIT_SIZE 0x260
#define HDR_END_MIN 0x264

#define LOADFLAG_CAN_USE_HEAP 0x80
#define XLF_KERNEL_64 0x1
#define BZIMAGE_64BIT_ENTRY 0x200

/* PVH (start_info.h) */
#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define HVM_START_MAGIC 0x336ec578
#define PVH_MEMMAP_ADDR (BOOT_START_INFO_ADDR + 0x100)
#define PVH_MODLIST_ADDR (BOOT_START_INFO_ADDR + 0xc00)

struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr;
	uint64_t cmdline_paddr;
	uint64_t rsdp_paddr;
	uint64_t memmap_paddr;
	uint32_t memmap_entries;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info, version 1");

struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");

struct hvm_memmap_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type;
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_memmap_entry) == 24, "hvm_memmap_table_entry");

/* Program headers of an ELF32 (i386, multiboot kernels) or ELF64 (x86-64)
 * file, widened to one form. */
struct elf_seg {
	uint32_t type;
	uint64_t offset, paddr, filesz, memsz;
};

struct elf_info {
	uint64_t entry;
	bool is64;
	int phnum;
	struct elf_seg *ph;
};

#define MAX_KERNEL_FILE (1ULL << 30)

struct loaded_file {
	uint8_t *data;
	size_t size;
};

struct boot_ctx {
	struct vm *vm;
	char *err;
	size_t err_len;
	uint64_t kernel_end; /* first byte above the kernel's footprint */
	uint64_t initrd_max; /* highest address + 1 the initrd may use */
	uint64_t initrd_addr, initrd_size;
};

static int fail(struct boot_ctx *b, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int fail(struct boot_ctx *b, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b->err, b->err_len, fmt, ap);
	va_end(ap);
	return err;
}

static int read_file(struct boot_ctx *b, const char *what, const char *path, struct loaded_file *f)
{
	struct stat st;
	int fd, ret = 0;
	size_t done = 0;

	f->data = NULL;
	f->size = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return fail(b, -errno, "%s '%s': %s", what, path, strerror(errno));
	if (fstat(fd, &st) < 0) {
		ret = fail(b, -errno, "%s '%s': %s", what, path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = fail(b, -EINVAL, "%s '%s': not a regular file", what, path);
		goto out;
	}
	if ((uint64_t)st.st_size > MAX_KERNEL_FILE) {
		ret = fail(b, -EFBIG, "%s '%s': larger than 1 GiB", what, path);
		goto out;
	}
	if (st.st_size == 0) {
		ret = fail(b, -EINVAL, "%s '%s': empty file", what, path);
		goto out;
	}
	f->data = malloc((size_t)st.st_size);
	if (!f->data) {
		ret = fail(b, -ENOMEM, "%s '%s': out of memory", what, path);
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, f->data + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			ret = fail(b, n < 0 ? -errno : -EIO, "%s '%s': read failed", what, path);
			goto out;
		}
		done += (size_t)n;
	}
	f->size = done;
out:
	close(fd);
	if (ret) {
		free(f->data);
		f->data = NULL;
	}
	return ret;
}

static uint16_t rd16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static void wr16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void wr32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void wr64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

int x86_e820_build(const struct vm *vm, struct e820_entry *e, int max)
{
	const struct guest_mem *gm = &vm->mem;
	int n = 0;

	if (max < 4 + gm->nr_regions) /* + the ECAM entry */
		return 0;
	e[n++] = (struct e820_entry){ 0, BOOT_EBDA_ADDR, E820_RAM };
	e[n++] = (struct e820_entry){ BOOT_EBDA_ADDR, 0xa0000 - BOOT_EBDA_ADDR, E820_RESERVED };
	e[n++] = (struct e820_entry){ BOOT_BIOS_START, BOOT_HIMEM_START - BOOT_BIOS_START, E820_RESERVED };
	e[n++] = (struct e820_entry){ BOOT_HIMEM_START, gm_low_end(gm) - BOOT_HIMEM_START, E820_RAM };
	/* Linux uses MCFG's ECAM only if it is reserved here or in ACPI. */
	if (vm->pci)
		e[n++] = (struct e820_entry){ PCI_ECAM_BASE, PCI_ECAM_SIZE, E820_RESERVED };
	for (int i = 1; i < gm->nr_regions; i++)
		e[n++] = (struct e820_entry){ gm->regions[i].gpa, gm->regions[i].size, E820_RAM };
	return n;
}

/* Identity map of [0, 4 GiB) with 2 MiB pages: enough for every entry
 * point (the kernel builds its own tables early). */
static int write_page_tables(struct vm *vm)
{
	uint64_t pml4 = BOOT_PDPT_ADDR | 3, pdpt[4], pd[512];
	int ret = gm_write(&vm->mem, BOOT_PML4_ADDR, &pml4, 8);

	for (int i = 0; i < 4 && !ret; i++) {
		pdpt[i] = (BOOT_PD_ADDR + (uint64_t)i * 0x1000) | 3;
		for (int j = 0; j < 512; j++)
			pd[j] = ((uint64_t)i << 30 | (uint64_t)j << 21) | 0x83; /* P, RW, PS */
		ret = gm_write(&vm->mem, BOOT_PD_ADDR + (uint64_t)i * 0x1000, pd, sizeof(pd));
	}
	if (!ret)
		ret = gm_write(&vm->mem, BOOT_PDPT_ADDR, pdpt, sizeof(pdpt));
	return ret;
}

/* GDT: null, 0x08 flat 32-bit code, 0x10 64-bit code, 0x18 flat data,
 * 0x20 a 64-bit TSS descriptor (two slots). */
static int write_gdt(struct vm *vm, uint16_t *limit)
{
	static const uint64_t gdt[] = {
		0,
		0x00cf9b000000ffffULL,
		0x00af9b000000ffffULL,
		0x00cf93000000ffffULL,
		0x00008b0000000067ULL,
		0,
	};

	*limit = sizeof(gdt) - 1;
	return gm_write(&vm->mem, BOOT_GDT_ADDR, gdt, sizeof(gdt));
}

static int write_cmdline(struct boot_ctx *b, uint64_t max_len)
{
	const char *cmdline = b->vm->cfg.cmdline ? b->vm->cfg.cmdline : "";
	size_t len = strlen(cmdline) + 1;

	if (max_len > BOOT_CMDLINE_MAX)
		max_len = BOOT_CMDLINE_MAX;
	if (len > max_len)
		return fail(b, -E2BIG, "--cmdline: %zu bytes, this kernel takes at most %llu",
			    len - 1, (unsigned long long)max_len - 1);
	if (gm_write(&b->vm->mem, BOOT_CMDLINE_ADDR, cmdline, len))
		return fail(b, -EFAULT, "command line does not fit in guest memory");
	return 0;
}

/* Place the initrd as high as allowed, page aligned, above the kernel. */
static int load_initrd(struct boot_ctx *b)
{
	struct loaded_file f;
	uint64_t top, addr;
	int ret;

	if (!b->vm->cfg.initrd)
		return 0;
	ret = read_file(b, "initrd", b->vm->cfg.initrd, &f);
	if (ret)
		return ret;
	top = gm_low_end(&b->vm->mem);
	if (b->initrd_max < top)
		top = b->initrd_max;
	addr = (top - f.size) & ~0xfffULL;
	if (f.size > top || addr < b->kernel_end) {
		ret = fail(b, -ENOMEM, "initrd '%s' (%zu MiB) does not fit in guest memory above the kernel: raise --mem",
			   b->vm->cfg.initrd, f.size >> 20);
		goto out;
	}
	if (gm_write(&b->vm->mem, addr, f.data, f.size)) {
		ret = fail(b, -EFAULT, "initrd does not fit in guest memory");
		goto out;
	}
	b->initrd_addr = addr;
	b->initrd_size = f.size;
out:
	free(f.data);
	return ret;
}

/* boot_params for both bzImage and ELF 64-bit entries. hdr/hdr_len: the
 * setup header copied from a bzImage, or NULL for an ELF kernel. */
static int write_zero_page(struct boot_ctx *b, const uint8_t *hdr, size_t hdr_len, uint64_t rsdp)
{
	uint8_t zp[4096];
	struct e820_entry e820[E820_MAX];
	int n;

	memset(zp, 0, sizeof(zp));
	if (hdr) {
		memcpy(zp + BP_HDR, hdr + BP_HDR, hdr_len - BP_HDR);
	} else {
		wr16(zp + HDR_BOOT_FLAG, 0xaa55);
		wr32(zp + HDR_MAGIC, 0x53726448); /* "HdrS" */
		wr16(zp + HDR_VERSION, 0x020f);
		wr32(zp + HDR_KERNEL_ALIGNMENT, 0x1000000);
	}
	zp[HDR_TYPE_OF_LOADER] = 0xff; /* undefined loader id */
	zp[HDR_LOADFLAGS] |= LOADFLAG_CAN_USE_HEAP;
	wr16(zp + HDR_HEAP_END_PTR, 0xfe00);
	wr16(zp + HDR_VID_MODE, 0xffff); /* "normal" */
	wr32(zp + HDR_CMD_LINE_PTR, BOOT_CMDLINE_ADDR);
	wr32(zp + HDR_RAMDISK_IMAGE, (uint32_t)b->initrd_addr);
	wr32(zp + HDR_RAMDISK_SIZE, (uint32_t)b->initrd_size);
	wr64(zp + BP_ACPI_RSDP_ADDR, rsdp);
	n = x86_e820_build(b->vm, e820, E820_MAX);
	zp[BP_E820_ENTRIES] = (uint8_t)n;
	memcpy(zp + BP_E820_TABLE, e820, (size_t)n * sizeof(e820[0]));
	if (gm_write(&b->vm->mem, BOOT_ZERO_PAGE_ADDR, zp, sizeof(zp)))
		return fail(b, -EFAULT, "boot_params do not fit in guest memory");
	return 0;
}

static int build_acpi(struct boot_ctx *b, uint64_t *rsdp)
{
	struct acpi_config cfg;
	int ret;

	acpi_config_default(&cfg, b->vm->nr_vcpus);
	cfg.pci = b->vm->pci != NULL;
	ret = acpi_build(&b->vm->mem, &cfg, rsdp);
	if (ret)
		return fail(b, ret, "cannot build ACPI tables: %s", strerror(-ret));
	return 0;
}

static int elf_parse(struct boot_ctx *b, const struct loaded_file *k, struct elf_info *ei);
static int elf_load(struct boot_ctx *b, const struct loaded_file *k, const struct elf_info *ei);

/* Unpack a bzImage's payload on the host and load the kernel ELF inside it
 * at its physical addresses; *entry: its 64-bit entry (phys_startup_64),
 * entered with boot_params as the decompressor would. -ENOTSUP when the
 * payload is not in a format we unpack (the guest's decompressor runs). */
static int load_unpacked(struct boot_ctx *b, const struct loaded_file *k, size_t setup_size,
			 uint64_t *entry)
{
	const char *path = b->vm->cfg.kernel;
	const uint8_t *d = k->data;
	uint64_t off = rd32(d + HDR_PAYLOAD_OFFSET), len = rd32(d + HDR_PAYLOAD_LENGTH);
	size_t avail = k->size - setup_size;
	struct loaded_file v = { 0 };
	struct elf_info ei = { 0 };
	bool inside = false;
	int ret;

	if (rd16(d + HDR_VERSION) < 0x0208 || !len)
		return -ENOTSUP; /* no payload fields before protocol 2.08 */
	if (off > avail || len > avail - off)
		return fail(b, -EINVAL, "kernel '%s': its payload runs past the end of the file", path);
	ret = kpayload_unpack(d + setup_size + off, len, gm_low_end(&b->vm->mem), &v.data, &v.size);
	if (ret == -ENOTSUP)
		return ret;
	if (ret == -E2BIG)
		return fail(b, -ENOMEM, "--mem: kernel '%s' unpacks to more than guest RAM", path);
	if (ret)
		return fail(b, ret, "kernel '%s': its compressed payload is corrupt (%s)", path,
			    strerror(-ret));
	if (v.size < SELFMAG || memcmp(v.data, ELFMAG, SELFMAG) || v.size < EI_NIDENT ||
	    v.data[EI_CLASS] != ELFCLASS64) {
		ret = fail(b, -EINVAL, "kernel '%s': its payload is not an x86-64 ELF kernel", path);
		goto out;
	}
	ret = elf_parse(b, &v, &ei);
	if (!ret)
		ret = elf_load(b, &v, &ei);
	if (ret)
		goto out;
	for (int i = 0; i < ei.phnum; i++)
		inside |= ei.ph[i].type == PT_LOAD && ei.entry >= ei.ph[i].paddr &&
			  ei.entry - ei.ph[i].paddr < ei.ph[i].filesz;
	if (!inside) {
		ret = fail(b, -EINVAL, "kernel '%s': its payload's entry point is outside the kernel", path);
		goto out;
	}
	*entry = ei.entry;
	pr_debug("boot: unpacked the %llu-byte payload to a %zu-byte kernel ELF on the host",
		 (unsigned long long)len, v.size);
out:
	free(ei.ph);
	free(v.data);
	return ret;
}

static int boot_bzimage(struct boot_ctx *b, const struct loaded_file *k, uint64_t rsdp)
{
	const uint8_t *d = k->data;
	unsigned setup_sects, version;
	size_t setup_size, hdr_end;
	uint64_t syssize, payload, init_size, pref, need, entry = 0;
	int ret;

	if (k->size < 0x270)
		return fail(b, -EINVAL, "kernel '%s': truncated bzImage header", b->vm->cfg.kernel);
	version = rd16(d + HDR_VERSION);
	if (version < 0x020c || !(rd16(d + HDR_XLOADFLAGS) & XLF_KERNEL_64))
		return fail(b, -EINVAL, "kernel '%s': boot protocol %u.%02u has no 64-bit entry point (need 2.12 or later)",
			    b->vm->cfg.kernel, version >> 8, version & 0xff);
	setup_sects = d[HDR_SETUP_SECTS] ? d[HDR_SETUP_SECTS] : 4;
	setup_size = (size_t)(setup_sects + 1) * 512;
	syssize = (uint64_t)rd32(d + HDR_SYSSIZE) * 16;
	/* The header ends where its leading short jump lands. */
	hdr_end = 0x202 + d[HDR_JUMP + 1];
	if (hdr_end < HDR_END_MIN || hdr_end > setup_size)
		return fail(b, -EINVAL, "kernel '%s': malformed setup header", b->vm->cfg.kernel);
	if (setup_size >= k->size || syssize > k->size - setup_size)
		return fail(b, -EINVAL, "kernel '%s': truncated (%zu bytes, header says %llu)",
			    b->vm->cfg.kernel, k->size, (unsigned long long)(setup_size + syssize));
	payload = k->size - setup_size;
	init_size = rd32(d + HDR_INIT_SIZE);
	pref = rd64(d + HDR_PREF_ADDRESS);
	/* A relocatable 64-bit kernel decompresses to at least its preferred
	 * address (LOAD_PHYSICAL_ADDR) and needs init_size bytes there. */
	if (pref < BOOT_KERNEL_ADDR || pref > GM_HOLE_START)
		pref = BOOT_KERNEL_ADDR;
	need = (pref > BOOT_KERNEL_ADDR + payload ? pref : BOOT_KERNEL_ADDR + payload) + init_size;
	if (need > gm_low_end(&b->vm->mem))
		return fail(b, -ENOMEM, "--mem: this kernel needs at least %llu MiB of RAM",
			    (unsigned long long)((need + (1 << 20) - 1) >> 20) + 16);
	if (!b->vm->cfg.guest_unpack) {
		ret = load_unpacked(b, k, setup_size, &entry);
		if (ret != -ENOTSUP)
			goto loaded;
	}
	if (gm_write(&b->vm->mem, BOOT_KERNEL_ADDR, d + setup_size, payload))
		return fail(b, -EFAULT, "kernel does not fit in guest memory");
	b->kernel_end = need;
	entry = BOOT_KERNEL_ADDR + BZIMAGE_64BIT_ENTRY;
	ret = 0;
loaded:
	b->initrd_max = (uint64_t)rd32(d + HDR_INITRD_ADDR_MAX) + 1;
	if (!ret)
		ret = write_cmdline(b, rd32(d + HDR_CMDLINE_SIZE) + 1ULL);
	if (!ret)
		ret = load_initrd(b);
	if (!ret)
		ret = write_zero_page(b, d, hdr_end, rsdp);
	if (ret)
		return ret;
	b->vm->boot_state.rip = entry;
	b->vm->boot_state.gpr[R_RSI] = BOOT_ZERO_PAGE_ADDR;
	return 0;
}

/* PVH: find XEN_ELFNOTE_PHYS32_ENTRY in the PT_NOTE segments. */
static bool elf_pvh_entry(const struct loaded_file *k, const struct elf_info *ei, uint64_t *entry)
{
	for (int i = 0; i < ei->phnum; i++) {
		const struct elf_seg *ph = &ei->ph[i];
		uint64_t off, end;

		if (ph->type != PT_NOTE)
			continue;
		off = ph->offset;
		if (off > k->size || ph->filesz > k->size - off)
			continue;
		end = off + ph->filesz;
		while (end - off >= sizeof(Elf64_Nhdr)) {
			Elf64_Nhdr nh;
			uint64_t name_off, desc_off, next;

			memcpy(&nh, k->data + off, sizeof(nh));
			name_off = off + sizeof(nh);
			desc_off = name_off + ((nh.n_namesz + 3ULL) & ~3ULL);
			next = desc_off + ((nh.n_descsz + 3ULL) & ~3ULL);
			if (next > end)
				break;
			if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
			    !memcmp(k->data + name_off, "Xen", 4) && nh.n_descsz >= 4) {
				*entry = nh.n_descsz >= 8 ? rd64(k->data + desc_off)
							  : rd32(k->data + desc_off);
				return true;
			}
			off = next;
		}
	}
	return false;
}

static int write_pvh_start_info(struct boot_ctx *b, uint64_t rsdp)
{
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.cmdline_paddr = BOOT_CMDLINE_ADDR,
		.rsdp_paddr = rsdp,
		.memmap_paddr = PVH_MEMMAP_ADDR,
	};
	struct e820_entry e820[E820_MAX];
	struct hvm_memmap_entry mm[E820_MAX];
	int n = x86_e820_build(b->vm, e820, E820_MAX), ret;

	for (int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_entry){ e820[i].addr, e820[i].size, e820[i].type, 0 };
	si.memmap_entries = (uint32_t)n;
	if (b->initrd_size) {
		struct hvm_modlist_entry mod = { b->initrd_addr, b->initrd_size, 0, 0 };

		si.nr_modules = 1;
		si.modlist_paddr = PVH_MODLIST_ADDR;
		if (gm_write(&b->vm->mem, PVH_MODLIST_ADDR, &mod, sizeof(mod)))
			return fail(b, -EFAULT, "PVH module list does not fit");
	}
	_Static_assert(PVH_MEMMAP_ADDR + E820_MAX * sizeof(struct hvm_memmap_entry) <= PVH_MODLIST_ADDR + 0x1000,
		       "PVH tables overlap");
	ret = gm_write(&b->vm->mem, PVH_MEMMAP_ADDR, mm, (size_t)n * sizeof(mm[0]));
	if (!ret)
		ret = gm_write(&b->vm->mem, BOOT_START_INFO_ADDR, &si, sizeof(si));
	if (ret)
		return fail(b, -EFAULT, "PVH start info does not fit");
	return 0;
}

static int elf_parse(struct boot_ctx *b, const struct loaded_file *k, struct elf_info *ei)
{
	const char *path = b->vm->cfg.kernel;
	const uint8_t *id = k->data;
	uint64_t phoff;
	unsigned phentsize;

	memset(ei, 0, sizeof(*ei));
	if (k->size < sizeof(Elf64_Ehdr))
		return fail(b, -EINVAL, "kernel '%s': truncated ELF header", path);
	if (id[EI_DATA] != ELFDATA2LSB)
		return fail(b, -EINVAL, "kernel '%s': not a little-endian ELF file", path);
	if (id[EI_CLASS] == ELFCLASS64) {
		Elf64_Ehdr eh;

		memcpy(&eh, k->data, sizeof(eh));
		if (eh.e_machine != EM_X86_64)
			return fail(b, -EINVAL, "kernel '%s': not an x86-64 ELF file", path);
		ei->is64 = true;
		ei->entry = eh.e_entry;
		ei->phnum = eh.e_phnum;
		phoff = eh.e_phoff;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf64_Phdr))
			return fail(b, -EINVAL, "kernel '%s': malformed program headers", path);
	} else if (id[EI_CLASS] == ELFCLASS32) {
		Elf32_Ehdr eh;

		memcpy(&eh, k->data, sizeof(eh));
		if (eh.e_machine != EM_386)
			return fail(b, -EINVAL, "kernel '%s': not an x86 ELF file", path);
		ei->entry = eh.e_entry;
		ei->phnum = eh.e_phnum;
		phoff = eh.e_phoff;
		phentsize = eh.e_phentsize;
		if (phentsize != sizeof(Elf32_Phdr))
			return fail(b, -EINVAL, "kernel '%s': malformed program headers", path);
	} else {
		return fail(b, -EINVAL, "kernel '%s': unknown ELF class", path);
	}
	if (ei->phnum == 0 || phoff > k->size || (uint64_t)ei->phnum * phentsize > k->size - phoff)
		return fail(b, -EINVAL, "kernel '%s': truncated or malformed program headers", path);
	ei->ph = calloc((size_t)ei->phnum, sizeof(*ei->ph));
	if (!ei->ph)
		return fail(b, -ENOMEM, "out of memory");
	for (int i = 0; i < ei->phnum; i++) {
		const uint8_t *p = k->data + phoff + (uint64_t)i * phentsize;

		if (ei->is64) {
			Elf64_Phdr ph;

			memcpy(&ph, p, sizeof(ph));
			ei->ph[i] = (struct elf_seg){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
		} else {
			Elf32_Phdr ph;

			memcpy(&ph, p, sizeof(ph));
			ei->ph[i] = (struct elf_seg){ ph.p_type, ph.p_offset, ph.p_paddr, ph.p_filesz, ph.p_memsz };
		}
	}
	return 0;
}

/* Copy a file range to guest RAM above 1 MiB and zero the rest of the
 * segment (.bss). */
static int load_segment(struct boot_ctx *b, const struct loaded_file *k, uint64_t offset,
			uint64_t filesz, uint64_t paddr, uint64_t memsz, const char *what)
{
	const char *path = b->vm->cfg.kernel;
	uint8_t *dst;

	if (offset > k->size || filesz > k->size - offset)
		return fail(b, -EINVAL, "kernel '%s': truncated (%s runs past the end of the file)", path, what);
	if (filesz > memsz)
		return fail(b, -EINVAL, "kernel '%s': malformed %s", path, what);
	dst = gm_ptr(&b->vm->mem, paddr, memsz);
	if (!dst || paddr < BOOT_HIMEM_START)
		return fail(b, -ENOMEM, "kernel '%s': %s at %#llx-%#llx is outside guest RAM above 1 MiB (raise --mem?)",
			    path, what, (unsigned long long)paddr, (unsigned long long)(paddr + memsz));
	memcpy(dst, k->data + offset, filesz);
	memset(dst + filesz, 0, memsz - filesz);
	if (paddr + memsz > b->kernel_end)
		b->kernel_end = (paddr + memsz + 0xfff) & ~0xfffULL;
	return 0;
}

static int elf_load(struct boot_ctx *b, const struct loaded_file *k, const struct elf_info *ei)
{
	int loaded = 0, ret;

	for (int i = 0; i < ei->phnum; i++) {
		const struct elf_seg *p = &ei->ph[i];
		char what[32];

		if (p->type != PT_LOAD || !p->memsz)
			continue;
		snprintf(what, sizeof(what), "segment %d", i);
		ret = load_segment(b, k, p->offset, p->filesz, p->paddr, p->memsz, what);
		if (ret)
			return ret;
		loaded++;
	}
	if (!loaded)
		return fail(b, -EINVAL, "kernel '%s': ELF file has nothing to load", b->vm->cfg.kernel);
	return 0;
}

/* ELF64 kernels: PVH when the note is there, else the 64-bit entry. */
static int boot_elf64(struct boot_ctx *b, const struct loaded_file *k, const struct elf_info *ei,
		      uint64_t rsdp, bool pvh, uint64_t pvh_entry)
{
	int ret = elf_load(b, k, ei);

	b->initrd_max = GM_HOLE_START;
	if (!ret)
		ret = write_cmdline(b, BOOT_CMDLINE_MAX);
	if (!ret)
		ret = load_initrd(b);
	if (!ret)
		ret = pvh ? write_pvh_start_info(b, rsdp) : write_zero_page(b, NULL, 0, rsdp);
	if (ret)
		return ret;
	b->vm->boot_state.rip = pvh ? pvh_entry : ei->entry;
	if (pvh)
		b->vm->boot_state.gpr[R_RBX] = BOOT_START_INFO_ADDR;
	else
		b->vm->boot_state.gpr[R_RSI] = BOOT_ZERO_PAGE_ADDR;
	return 0;
}

/* ---- Multiboot (version 1), as in the Multiboot Specification 0.6.96 ---- */

#define MB_HEADER_MAGIC 0x1badb002
#define MB_BOOT_MAGIC 0x2badb002
#define MB_SEARCH_LEN 8192
#define MB_FLAG_AOUT_KLUDGE (1u << 16)
#define MB_INFO_MEM (1u << 0)
#define MB_INFO_CMDLINE (1u << 2)
#define MB_INFO_MODS (1u << 3)
#define MB_INFO_MMAP (1u << 6)
#define MB_INFO_LOADER_NAME (1u << 9)
#define MB_MMAP_ADDR (BOOT_START_INFO_ADDR + 0x100)
#define MB_MODS_ADDR (BOOT_START_INFO_ADDR + 0xc00)
#define MB_STRINGS_ADDR (BOOT_START_INFO_ADDR + 0xd00)

struct mb_header {
	uint32_t magic, flags, checksum;
	uint32_t header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr;
};
_Static_assert(sizeof(struct mb_header) == 32, "multiboot header, spec 3.1.1 (address fields)");

struct mb_info {
	uint32_t flags, mem_lower, mem_upper, boot_device, cmdline, mods_count, mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length, mmap_addr, drives_length, drives_addr, config_table;
	uint32_t boot_loader_name, apm_table;
} __attribute__((packed));
_Static_assert(sizeof(struct mb_info) == 72, "multiboot information, spec 3.3 (up to apm_table)");

struct mb_mmap_entry {
	uint32_t size; /* of the rest of the entry: 20 */
	uint64_t addr, len;
	uint32_t type;
} __attribute__((packed));
_Static_assert(sizeof(struct mb_mmap_entry) == 24, "multiboot memory map entry, spec 3.3");

struct mb_module {
	uint32_t mod_start, mod_end, string, reserved;
};
_Static_assert(sizeof(struct mb_module) == 16, "multiboot module entry, spec 3.3");

/* Offset of a valid multiboot header in the first 8 KiB, or -1. */
static long mb_find(const struct loaded_file *k)
{
	size_t lim = k->size < MB_SEARCH_LEN ? k->size : MB_SEARCH_LEN;

	for (size_t off = 0; off + 12 <= lim; off += 4) {
		uint32_t magic = rd32(k->data + off), flags = rd32(k->data + off + 4);

		if (magic == MB_HEADER_MAGIC && magic + flags + rd32(k->data + off + 8) == 0)
			return (long)off;
	}
	return -1;
}

static int write_mb_info(struct boot_ctx *b)
{
	struct e820_entry e820[E820_MAX];
	struct mb_mmap_entry mm[E820_MAX];
	struct mb_info mi = {
		.flags = MB_INFO_MEM | MB_INFO_CMDLINE | MB_INFO_MMAP | MB_INFO_LOADER_NAME,
		.mem_lower = BOOT_EBDA_ADDR >> 10,
		.mem_upper = (uint32_t)((gm_low_end(&b->vm->mem) - BOOT_HIMEM_START) >> 10),
		.cmdline = BOOT_CMDLINE_ADDR,
		.boot_loader_name = MB_STRINGS_ADDR,
	};
	static const char names[] = "tarn\0initrd";
	int n = x86_e820_build(b->vm, e820, E820_MAX), ret;

	for (int i = 0; i < n; i++)
		mm[i] = (struct mb_mmap_entry){ 20, e820[i].addr, e820[i].size, e820[i].type };
	mi.mmap_addr = MB_MMAP_ADDR;
	mi.mmap_length = (uint32_t)(n * (int)sizeof(mm[0]));
	ret = gm_write(&b->vm->mem, MB_STRINGS_ADDR, names, sizeof(names));
	if (!ret && b->initrd_size) {
		struct mb_module mod = { (uint32_t)b->initrd_addr,
					 (uint32_t)(b->initrd_addr + b->initrd_size), MB_STRINGS_ADDR + 5, 0 };

		mi.flags |= MB_INFO_MODS;
		mi.mods_count = 1;
		mi.mods_addr = MB_MODS_ADDR;
		ret = gm_write(&b->vm->mem, MB_MODS_ADDR, &mod, sizeof(mod));
	}
	_Static_assert(MB_MMAP_ADDR + E820_MAX * sizeof(struct mb_mmap_entry) <= BOOT_ZERO_PAGE_ADDR,
		       "multiboot tables overlap the zero page");
	if (!ret)
		ret = gm_write(&b->vm->mem, MB_MMAP_ADDR, mm, (size_t)n * sizeof(mm[0]));
	if (!ret)
		ret = gm_write(&b->vm->mem, BOOT_START_INFO_ADDR, &mi, sizeof(mi));
	if (ret)
		return fail(b, -EFAULT, "multiboot information does not fit");
	return 0;
}

static int boot_multiboot(struct boot_ctx *b, const struct loaded_file *k, long hdr_off, bool is_elf)
{
	const char *path = b->vm->cfg.kernel;
	struct mb_header h = { 0 };
	uint64_t entry;
	int ret;

	memcpy(&h, k->data + hdr_off, k->size - (size_t)hdr_off < sizeof(h) ? 12 : sizeof(h));
	if (h.flags & MB_FLAG_AOUT_KLUDGE) {
		/* The header says where the image goes: the file from the
		 * offset matching load_addr up to load_end_addr, then .bss. */
		uint64_t file_off, filesz, memsz;

		if (k->size - (size_t)hdr_off < sizeof(h) || h.header_addr < h.load_addr ||
		    h.header_addr - h.load_addr > (uint64_t)hdr_off)
			return fail(b, -EINVAL, "kernel '%s': malformed multiboot header", path);
		file_off = (uint64_t)hdr_off - (h.header_addr - h.load_addr);
		filesz = h.load_end_addr ? (uint64_t)h.load_end_addr - h.load_addr : k->size - file_off;
		memsz = h.bss_end_addr > h.load_addr + filesz ? h.bss_end_addr - h.load_addr : filesz;
		if (h.load_end_addr && h.load_end_addr < h.load_addr)
			return fail(b, -EINVAL, "kernel '%s': malformed multiboot header", path);
		ret = load_segment(b, k, file_off, filesz, h.load_addr, memsz, "multiboot image");
		entry = h.entry_addr;
	} else if (is_elf) {
		struct elf_info ei;

		ret = elf_parse(b, k, &ei);
		if (!ret)
			ret = elf_load(b, k, &ei);
		entry = ei.entry;
		free(ei.ph);
	} else {
		return fail(b, -EINVAL, "kernel '%s': multiboot kernel without load addresses is not ELF", path);
	}
	b->initrd_max = GM_HOLE_START;
	if (!ret)
		ret = write_cmdline(b, BOOT_CMDLINE_MAX);
	if (!ret)
		ret = load_initrd(b);
	if (!ret)
		ret = write_mb_info(b);
	if (ret)
		return ret;
	b->vm->boot_state.rip = entry & 0xffffffff;
	b->vm->boot_state.gpr[R_RAX] = MB_BOOT_MAGIC;
	b->vm->boot_state.gpr[R_RBX] = BOOT_START_INFO_ADDR;
	return 0;
}

int x86_boot_setup(struct vm *vm, char *err, size_t err_len)
{
	struct boot_ctx b = { .vm = vm, .err = err, .err_len = err_len };
	struct loaded_file k;
	uint64_t rsdp = 0;
	uint64_t pvh_entry = 0;
	struct elf_info ei = { 0 };
	uint16_t gdt_limit;
	bool pvh = false, is_elf;
	long mb_off;
	int ret;

	ret = read_file(&b, "kernel", vm->cfg.kernel, &k);
	if (ret)
		return ret;
	if (write_page_tables(vm) || write_gdt(vm, &gdt_limit)) {
		ret = fail(&b, -EFAULT, "boot tables do not fit in guest memory");
		goto out;
	}
	ret = build_acpi(&b, &rsdp);
	if (ret)
		goto out;
	/* Which entry: an ELF64 with a PVH note boots PVH; a file with a
	 * multiboot header boots multiboot; other ELF64 files enter in 64-bit
	 * mode; bzImages enter at their 64-bit entry. 32-bit entries
	 * (PVH, multiboot) get flat protected mode; the loaders fill RIP and
	 * the registers of their protocol. */
	is_elf = k.size >= SELFMAG && !memcmp(k.data, ELFMAG, SELFMAG);
	if (is_elf && k.size >= EI_NIDENT && k.data[EI_CLASS] == ELFCLASS64) {
		ret = elf_parse(&b, &k, &ei);
		if (ret)
			goto out;
		pvh = elf_pvh_entry(&k, &ei, &pvh_entry);
	}
	mb_off = pvh ? -1 : mb_find(&k);
	if (pvh || mb_off >= 0)
		x86_state_protected_flat(&vm->boot_state, BOOT_GDT_ADDR, gdt_limit);
	else
		x86_state_long_mode(&vm->boot_state, BOOT_PML4_ADDR, BOOT_GDT_ADDR, gdt_limit);
	if (mb_off >= 0)
		ret = boot_multiboot(&b, &k, mb_off, is_elf);
	else if (ei.ph)
		ret = boot_elf64(&b, &k, &ei, rsdp, pvh, pvh_entry);
	else if (is_elf)
		ret = fail(&b, -EINVAL, "kernel '%s': a 32-bit ELF file without a multiboot header", vm->cfg.kernel);
	else if (k.size >= 0x206 && rd16(k.data + HDR_BOOT_FLAG) == 0xaa55 &&
		 rd32(k.data + HDR_MAGIC) == 0x53726448)
		ret = boot_bzimage(&b, &k, rsdp);
	else
		ret = fail(&b, -ENOEXEC, "kernel '%s': not a kernel (expected a bzImage, an x86-64 ELF or a multiboot image)",
			   vm->cfg.kernel);
	if (!ret)
		vm->boot_state.gpr[R_RSP] = BOOT_STACK_TOP;
out:
	free(ei.ph);
	free(k.data);
	return ret;
}
