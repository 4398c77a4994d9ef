/* Kernel loading and the x86 boot state, on a VM built by hand (no
 * backend): ELF64 kernels entered in long mode, PVH kernels in 32-bit
 * protected mode, synthetic bzImages, and the errors a user gets for bad
 * input. Kernels are generated at test time into a temporary directory. */
#include "unit.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "arch/x86/cpu_state.h"
#include "bus/bus.h"
#include "core/vm.h"
#include "mem/gm.h"

#define MiB (1ULL << 20)
#define RAM (64 * MiB)

/* boot_params offsets (Documentation/arch/x86/zero-page.rst, boot.rst) */
#define BP_ACPI_RSDP 0x070
#define BP_E820_ENTRIES 0x1e8
#define BP_SETUP_SECTS 0x1f1
#define BP_BOOT_FLAG 0x1fe
#define BP_HEADER 0x202
#define BP_VERSION 0x206
#define BP_TYPE_OF_LOADER 0x210
#define BP_LOADFLAGS 0x211
#define BP_RAMDISK_IMAGE 0x218
#define BP_RAMDISK_SIZE 0x21c
#define BP_CMD_LINE_PTR 0x228
#define BP_INITRD_ADDR_MAX 0x22c
#define BP_KERNEL_ALIGNMENT 0x230
#define BP_RELOCATABLE 0x234
#define BP_XLOADFLAGS 0x236
#define BP_CMDLINE_SIZE 0x238
#define BP_PREF_ADDRESS 0x258
#define BP_INIT_SIZE 0x260
#define BP_E820_TABLE 0x2d0

/* PVH (xen/include/public/arch-x86/hvm/start_info.h) */
struct pvh_start_info {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};
struct pvh_mod {
	uint64_t paddr, size, cmdline_paddr, reserved;
};
struct pvh_memmap {
	uint64_t addr, size;
	uint32_t type, reserved;
};

struct fixture {
	char dir[64];
	struct vm vm;
	char err[256];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/tarn-test-boot-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	assert_int_equal(gm_init(&f->vm.mem, RAM), 0);
	bus_init(&f->vm.pio, "pio");
	bus_init(&f->vm.mmio, "mmio");
	pthread_mutex_init(&f->vm.lock, NULL);
	pthread_cond_init(&f->vm.cond, NULL);
	f->vm.nr_vcpus = 1;
	f->vm.cfg.nr_cpus = 1;
	f->vm.cfg.mem_size = RAM;
	*state = f;
	return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	nftw(f->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
	gm_destroy(&f->vm.mem);
	bus_destroy(&f->vm.pio);
	bus_destroy(&f->vm.mmio);
	pthread_mutex_destroy(&f->vm.lock);
	pthread_cond_destroy(&f->vm.cond);
	free((char *)f->vm.cfg.kernel);
	free((char *)f->vm.cfg.initrd);
	free(f);
	return 0;
}

static char *put_file(struct fixture *f, const char *name, const void *data, size_t len)
{
	char *path;
	int fd;

	assert_true(asprintf(&path, "%s/%s", f->dir, name) > 0);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	assert_true(fd >= 0);
	if (len)
		assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
	return path;
}

static void set_kernel(struct fixture *f, char *path)
{
	free((char *)f->vm.cfg.kernel);
	f->vm.cfg.kernel = path;
}

static void set_initrd(struct fixture *f, char *path)
{
	free((char *)f->vm.cfg.initrd);
	f->vm.cfg.initrd = path;
}

static const uint8_t *guest(struct fixture *f, uint64_t gpa, uint64_t len)
{
	const uint8_t *p = gm_ptr(&f->vm.mem, gpa, len);

	if (!p)
		fail_msg("guest range %#llx+%#llx is not RAM", (unsigned long long)gpa,
			 (unsigned long long)len);
	return p;
}

static uint16_t g16(struct fixture *f, uint64_t gpa) { uint16_t v; memcpy(&v, guest(f, gpa, 2), 2); return v; }
static uint32_t g32(struct fixture *f, uint64_t gpa) { uint32_t v; memcpy(&v, guest(f, gpa, 4), 4); return v; }
static uint64_t g64(struct fixture *f, uint64_t gpa) { uint64_t v; memcpy(&v, guest(f, gpa, 8), 8); return v; }

static void expect_err(struct fixture *f, int ret, const char *word)
{
	if (ret >= 0)
		fail_msg("x86_boot_setup succeeded (%d), expected an error about '%s'", ret, word);
	if (!strstr(f->err, word))
		fail_msg("error message '%s' does not mention '%s'", f->err, word);
}

static int boot(struct fixture *f)
{
	memset(f->err, 0, sizeof(f->err));
	return x86_boot_setup(&f->vm, f->err, sizeof(f->err));
}

static void boot_ok(struct fixture *f)
{
	int ret = boot(f);

	if (ret)
		fail_msg("x86_boot_setup: %d: %s", ret, f->err);
}

/* ---- kernel generators ---- */

#define ELF_LOAD_ADDR 0x200000ULL
#define ELF_SEG_OFF 0x1000
#define ELF_FILESZ 0x1000
#define ELF_MEMSZ 0x3000
#define ELF_ENTRY (ELF_LOAD_ADDR + 0x10)
#define PVH_ENTRY (ELF_LOAD_ADDR + 0x40)

struct elf_opts {
	bool pvh;
	uint64_t paddr;	 /* default ELF_LOAD_ADDR */
	uint64_t filesz; /* default ELF_FILESZ */
	size_t file_len; /* default ELF_SEG_OFF + ELF_FILESZ */
};

static uint8_t seg_byte(size_t i)
{
	return (uint8_t)(i * 13 + 7);
}

static char *make_elf(struct fixture *f, const char *name, const struct elf_opts *o)
{
	size_t len = o->file_len ? o->file_len : ELF_SEG_OFF + ELF_FILESZ;
	uint8_t *buf = calloc(1, len > ELF_SEG_OFF + ELF_FILESZ ? len : ELF_SEG_OFF + ELF_FILESZ);
	Elf64_Ehdr eh = { 0 };
	Elf64_Phdr ph[2] = { 0 };
	char *path;

	assert_non_null(buf);
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS64;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_X86_64;
	eh.e_version = EV_CURRENT;
	eh.e_entry = ELF_ENTRY;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(Elf64_Phdr);
	eh.e_phnum = o->pvh ? 2 : 1;

	ph[0].p_type = PT_LOAD;
	ph[0].p_flags = PF_R | PF_W | PF_X;
	ph[0].p_offset = ELF_SEG_OFF;
	ph[0].p_vaddr = ph[0].p_paddr = o->paddr ? o->paddr : ELF_LOAD_ADDR;
	ph[0].p_filesz = o->filesz ? o->filesz : ELF_FILESZ;
	ph[0].p_memsz = ELF_MEMSZ > ph[0].p_filesz ? ELF_MEMSZ : ph[0].p_filesz;
	ph[0].p_align = 0x1000;

	for (size_t i = 0; i < ELF_FILESZ; i++)
		buf[ELF_SEG_OFF + i] = seg_byte(i);
	if (o->pvh) {
		/* One PT_NOTE holding a decoy note, then XEN_ELFNOTE_PHYS32_ENTRY. */
		uint8_t *n = buf + 0x100;
		Elf64_Nhdr decoy = { .n_namesz = 4, .n_descsz = 4, .n_type = 1 };
		Elf64_Nhdr pvh = { .n_namesz = 4, .n_descsz = 4, .n_type = 18 };
		uint32_t entry = (uint32_t)PVH_ENTRY;

		memcpy(n, &decoy, sizeof(decoy));
		memcpy(n + 12, "GNU", 4);
		memcpy(n + 20, "\x01\x02\x03\x04", 4);
		memcpy(n + 20, &pvh, sizeof(pvh));
		memcpy(n + 32, "Xen", 4);
		memcpy(n + 36, &entry, 4);
		ph[1].p_type = PT_NOTE;
		ph[1].p_offset = 0x100;
		ph[1].p_filesz = ph[1].p_memsz = 40;
		ph[1].p_align = 4;
	}
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), ph, sizeof(ph[0]) * eh.e_phnum);
	path = put_file(f, name, buf, len);
	free(buf);
	return path;
}

#define BZ_SETUP_SECTS 4
#define BZ_SETUP_SIZE ((BZ_SETUP_SECTS + 1) * 512)
#define BZ_PAYLOAD 0x1000
#define BZ_PREF 0x1000000ULL
#define BZ_INIT_SIZE 0x100000U

struct bz_opts {
	uint16_t version;     /* default 0x020f */
	uint32_t syssize;     /* default BZ_PAYLOAD / 16 */
	uint32_t initrd_addr_max; /* default 0x7fffffff */
	uint32_t init_size;   /* default BZ_INIT_SIZE */
};

static uint8_t payload_byte(size_t i)
{
	return (uint8_t)(i * 31 + 3);
}

static void w16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void w32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void w64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static char *make_bzimage(struct fixture *f, const char *name, const struct bz_opts *o)
{
	size_t len = BZ_SETUP_SIZE + BZ_PAYLOAD;
	uint8_t *buf = malloc(len);
	char *path;

	assert_non_null(buf);
	/* Junk everywhere in the setup area the header does not define: none
	 * of it may leak into boot_params. */
	memset(buf, 0xee, BZ_SETUP_SIZE);
	memset(buf + BP_SETUP_SECTS, 0, 0x26c - BP_SETUP_SECTS);
	buf[BP_SETUP_SECTS] = BZ_SETUP_SECTS;
	w32(buf + 0x1f4, o->syssize ? o->syssize : BZ_PAYLOAD / 16);
	w16(buf + BP_BOOT_FLAG, 0xaa55);
	buf[0x200] = 0xeb;
	buf[0x201] = 0x6a; /* header ends at 0x202 + 0x6a = 0x26c */
	memcpy(buf + BP_HEADER, "HdrS", 4);
	w16(buf + BP_VERSION, o->version ? o->version : 0x020f);
	buf[BP_LOADFLAGS] = 0x01; /* LOADED_HIGH */
	w32(buf + BP_INITRD_ADDR_MAX, o->initrd_addr_max ? o->initrd_addr_max : 0x7fffffff);
	w32(buf + BP_KERNEL_ALIGNMENT, 0x200000);
	buf[BP_RELOCATABLE] = 1;
	w16(buf + BP_XLOADFLAGS, 0x0001); /* XLF_KERNEL_64 */
	w32(buf + BP_CMDLINE_SIZE, 2047);
	w64(buf + BP_PREF_ADDRESS, BZ_PREF);
	w32(buf + BP_INIT_SIZE, o->init_size ? o->init_size : BZ_INIT_SIZE);
	for (size_t i = 0; i < BZ_PAYLOAD; i++)
		buf[BZ_SETUP_SIZE + i] = payload_byte(i);
	path = put_file(f, name, buf, len);
	free(buf);
	return path;
}

static char *make_initrd(struct fixture *f, size_t len)
{
	uint8_t *buf = malloc(len);
	char *path;

	assert_non_null(buf);
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)(i ^ (i >> 8) ^ 0x5c);
	path = put_file(f, "initrd.img", buf, len);
	free(buf);
	return path;
}

static void check_initrd_bytes(struct fixture *f, uint64_t addr, size_t len)
{
	const uint8_t *p = guest(f, addr, len);

	for (size_t i = 0; i < len; i++)
		if (p[i] != (uint8_t)(i ^ (i >> 8) ^ 0x5c))
			fail_msg("initrd byte %zu differs in guest memory", i);
}

/* ---- shared checks ---- */

/* Walk the boot page tables (4-level, 2 MiB pages) for va. */
static uint64_t translate(struct fixture *f, uint64_t va)
{
	uint64_t cr3 = f->vm.boot_state.cr3, e;

	e = g64(f, (cr3 & ~0xfffULL) + ((va >> 39) & 511) * 8);
	assert_true(e & 1);
	e = g64(f, (e & 0x000ffffffffff000ULL) + ((va >> 30) & 511) * 8);
	assert_true(e & 1);
	e = g64(f, (e & 0x000ffffffffff000ULL) + ((va >> 21) & 511) * 8);
	assert_true(e & 1);
	assert_true(e & 0x80); /* PS: a 2 MiB page */
	assert_true(e & 2);    /* writable */
	return (e & 0x000fffffffe00000ULL) | (va & 0x1fffff);
}

/* The GDT descriptor a selector of the boot state names. */
static uint64_t gdt_desc(struct fixture *f, uint16_t sel)
{
	const struct x86_state *s = &f->vm.boot_state;

	assert_int_equal(sel & 7, 0);
	assert_true(sel + 7u <= s->gdt.limit);
	return g64(f, s->gdt.base + sel);
}

static void check_common_state(struct fixture *f)
{
	const struct x86_state *s = &f->vm.boot_state;
	uint64_t d;

	assert_true(s->cr0 & X86_CR0_PE);
	assert_int_equal(s->gpr[R_RSP], BOOT_STACK_TOP);
	assert_false(s->rflags & X86_RFLAGS_IF);
	assert_true(s->rflags & X86_RFLAGS_FIXED);
	assert_int_equal(s->gdt.base, BOOT_GDT_ADDR);
	/* The code selector's descriptor in guest memory matches the cached
	 * CS: the guest's first far jump or iret reloads it from there. */
	d = gdt_desc(f, s->cs.sel);
	assert_true(d & (1ULL << 47));			 /* present */
	assert_true(d & (1ULL << 43));			 /* code */
	assert_int_equal((d >> 53) & 1, s->cs.l);	 /* L */
	assert_int_equal((d >> 54) & 1, s->cs.db);	 /* D */
	d = gdt_desc(f, s->ds.sel);
	assert_true(d & (1ULL << 47));
	assert_false(d & (1ULL << 43));			 /* data */
	assert_true(d & (1ULL << 41));			 /* writable */
	assert_int_equal(s->ss.sel, s->ds.sel);
}

static void check_long_mode(struct fixture *f)
{
	const struct x86_state *s = &f->vm.boot_state;

	check_common_state(f);
	assert_int_equal(s->cs.l, 1);
	assert_int_equal(s->cs.db, 0);
	assert_true(s->cr0 & X86_CR0_PG);
	assert_true(s->cr4 & X86_CR4_PAE);
	assert_true(s->efer & X86_EFER_LME);
	assert_true(s->efer & X86_EFER_LMA);
	assert_int_equal(s->cr3, BOOT_PML4_ADDR);
	/* Identity map: the entry, boot_params, the stack, the top of RAM
	 * and the LAPIC are where they are physically. */
	assert_int_equal(translate(f, s->rip), s->rip);
	assert_int_equal(translate(f, BOOT_ZERO_PAGE_ADDR), BOOT_ZERO_PAGE_ADDR);
	assert_int_equal(translate(f, BOOT_STACK_TOP - 8), BOOT_STACK_TOP - 8);
	assert_int_equal(translate(f, RAM - 1), RAM - 1);
	assert_int_equal(translate(f, 0xfee00000ULL), 0xfee00000ULL);
}

struct e820 {
	uint64_t addr, size;
	uint32_t type;
};

/* The memory map of a 64 MiB guest, from boot_params or PVH: sorted,
 * non-overlapping, RAM exactly [0, EBDA) and [1 MiB, 64 MiB), the BIOS
 * area (where the ACPI tables are) reserved. */
static void check_memmap(const struct e820 *e, unsigned n)
{
	uint64_t ram = 0, ram_end = 0;
	bool acpi_reserved = false;

	assert_true(n >= 2 && n <= 128);
	for (unsigned i = 0; i < n; i++) {
		assert_true(e[i].size > 0);
		if (i)
			assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
		if (e[i].type == 1) {
			ram += e[i].size;
			if (e[i].addr + e[i].size > ram_end)
				ram_end = e[i].addr + e[i].size;
			/* No RAM over the VGA hole, option ROMs or BIOS. */
			assert_true(e[i].addr + e[i].size <= 0xa0000 || e[i].addr >= 0x100000);
		} else {
			assert_int_equal(e[i].type, 2);
			if (e[i].addr <= 0xe0000 && e[i].addr + e[i].size >= 0x100000)
				acpi_reserved = true;
		}
	}
	assert_int_equal(e[0].addr, 0);
	assert_int_equal(e[0].type, 1);
	assert_int_equal(ram_end, RAM);
	assert_int_equal(ram, BOOT_EBDA_ADDR + (RAM - 0x100000));
	assert_true(acpi_reserved);
}

static void check_rsdp(struct fixture *f, uint64_t gpa)
{
	assert_true(gpa >= 0xe0000 && gpa < 0x100000);
	assert_int_equal(gpa & 15, 0);
	assert_memory_equal(guest(f, gpa, 8), "RSD PTR ", 8);
}

static void check_zero_page(struct fixture *f, const char *cmdline)
{
	const uint8_t *bp = guest(f, BOOT_ZERO_PAGE_ADDR, 4096);
	struct e820 e[128];
	unsigned n = bp[BP_E820_ENTRIES];
	uint32_t cl = g32(f, BOOT_ZERO_PAGE_ADDR + BP_CMD_LINE_PTR);

	assert_int_equal(g16(f, BOOT_ZERO_PAGE_ADDR + BP_BOOT_FLAG), 0xaa55);
	assert_memory_equal(bp + BP_HEADER, "HdrS", 4);
	assert_true(g16(f, BOOT_ZERO_PAGE_ADDR + BP_VERSION) >= 0x020c);
	/* Linux ignores the initrd when type_of_loader is 0. */
	assert_int_not_equal(bp[BP_TYPE_OF_LOADER], 0);
	assert_int_not_equal(cl, 0);
	assert_string_equal((const char *)guest(f, cl, strlen(cmdline) + 1), cmdline);
	check_rsdp(f, g64(f, BOOT_ZERO_PAGE_ADDR + BP_ACPI_RSDP));
	for (unsigned i = 0; i < n && i < 128; i++) {
		const uint8_t *p = bp + BP_E820_TABLE + i * 20;

		memcpy(&e[i].addr, p, 8);
		memcpy(&e[i].size, p + 8, 8);
		memcpy(&e[i].type, p + 16, 4);
	}
	check_memmap(e, n);
	/* Command line, stack and boot tables lie in RAM the map declares. */
	assert_true(cl + strlen(cmdline) < BOOT_EBDA_ADDR);
}

/* ---- (a) ELF64 ---- */

static void test_elf64(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { 0 };
	const char *cmdline = "console=ttyS0 root=/dev/vda rw";
	uint8_t *seg;

	set_kernel(f, make_elf(f, "vmlinux", &o));
	f->vm.cfg.cmdline = cmdline;
	/* Garbage where .bss goes: the loader must zero it. */
	seg = gm_ptr(&f->vm.mem, ELF_LOAD_ADDR, ELF_MEMSZ);
	assert_non_null(seg);
	memset(seg, 0xcc, ELF_MEMSZ);
	boot_ok(f);

	assert_int_equal(f->vm.boot_state.rip, ELF_ENTRY);
	assert_int_equal(f->vm.boot_state.gpr[R_RSI], BOOT_ZERO_PAGE_ADDR);
	check_long_mode(f);
	check_zero_page(f, cmdline);
	for (size_t i = 0; i < ELF_FILESZ; i++)
		if (seg[i] != seg_byte(i))
			fail_msg("segment byte %#zx not loaded", i);
	for (size_t i = ELF_FILESZ; i < ELF_MEMSZ; i++)
		if (seg[i])
			fail_msg(".bss byte %#zx not zeroed", i);
	/* No initrd. */
	assert_int_equal(g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_IMAGE), 0);
	assert_int_equal(g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_SIZE), 0);
}

static void test_elf64_no_cmdline(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { 0 };

	set_kernel(f, make_elf(f, "vmlinux", &o));
	f->vm.cfg.cmdline = NULL;
	boot_ok(f);
	check_zero_page(f, "");
}

static void test_elf64_initrd(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { 0 };
	const size_t len = 0x12345;
	uint32_t img, size;

	set_kernel(f, make_elf(f, "vmlinux", &o));
	set_initrd(f, make_initrd(f, len));
	f->vm.cfg.cmdline = "quiet";
	boot_ok(f);
	check_zero_page(f, "quiet");
	img = g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_IMAGE);
	size = g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_SIZE);
	assert_int_equal(size, len);
	assert_int_equal(img & 0xfff, 0);
	assert_true(img >= ELF_LOAD_ADDR + ELF_MEMSZ);
	assert_true((uint64_t)img + size <= RAM);
	check_initrd_bytes(f, img, len);
}

/* ---- (b) PVH ---- */

static const struct pvh_start_info *check_pvh(struct fixture *f, const char *cmdline)
{
	const struct x86_state *s = &f->vm.boot_state;
	const struct pvh_start_info *si;
	struct e820 e[128];

	assert_int_equal(s->rip, PVH_ENTRY);
	assert_int_equal(s->gpr[R_RBX], BOOT_START_INFO_ADDR);
	check_common_state(f);
	assert_int_equal(s->cs.l, 0);
	assert_int_equal(s->cs.db, 1);
	assert_int_equal(s->cs.base, 0);
	assert_int_equal(s->cs.limit, 0xffffffff);
	assert_false(s->cr0 & X86_CR0_PG);
	assert_false(s->efer & X86_EFER_LMA);
	assert_int_equal(s->ds.base, 0);
	assert_int_equal(s->ds.limit, 0xffffffff);

	si = (const void *)guest(f, BOOT_START_INFO_ADDR, sizeof(*si));
	assert_int_equal(si->magic, 0x336ec578);
	assert_true(si->version >= 1);
	assert_string_equal((const char *)guest(f, si->cmdline_paddr, strlen(cmdline) + 1), cmdline);
	check_rsdp(f, si->rsdp_paddr);
	assert_true(si->memmap_entries <= 128);
	for (unsigned i = 0; i < si->memmap_entries; i++) {
		const struct pvh_memmap *m =
			(const void *)guest(f, si->memmap_paddr + i * sizeof(*m), sizeof(*m));

		e[i] = (struct e820){ m->addr, m->size, m->type };
	}
	check_memmap(e, si->memmap_entries);
	/* The tables do not overlap the start info itself. */
	assert_true(si->memmap_paddr >= BOOT_START_INFO_ADDR + sizeof(*si) ||
		    si->memmap_paddr + si->memmap_entries * 24 <= BOOT_START_INFO_ADDR);
	return si;
}

static void test_pvh(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { .pvh = true };
	const struct pvh_start_info *si;

	set_kernel(f, make_elf(f, "vmlinux-pvh", &o));
	f->vm.cfg.cmdline = "console=ttyS0 earlyprintk=serial";
	boot_ok(f);
	si = check_pvh(f, "console=ttyS0 earlyprintk=serial");
	assert_int_equal(si->nr_modules, 0);
	/* The segment is loaded as for any ELF. */
	assert_int_equal(guest(f, ELF_LOAD_ADDR + 5, 1)[0], seg_byte(5));
}

static void test_pvh_initrd(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { .pvh = true };
	const struct pvh_start_info *si;
	const struct pvh_mod *m;
	const size_t len = 3 * MiB + 17;

	set_kernel(f, make_elf(f, "vmlinux-pvh", &o));
	set_initrd(f, make_initrd(f, len));
	f->vm.cfg.cmdline = "root=/dev/ram0";
	boot_ok(f);
	si = check_pvh(f, "root=/dev/ram0");
	assert_int_equal(si->nr_modules, 1);
	m = (const void *)guest(f, si->modlist_paddr, sizeof(*m));
	assert_int_equal(m->size, len);
	assert_int_equal(m->paddr & 0xfff, 0);
	assert_true(m->paddr >= ELF_LOAD_ADDR + ELF_MEMSZ);
	assert_true(m->paddr + m->size <= RAM);
	check_initrd_bytes(f, m->paddr, len);
	/* The module list does not overlap the memory map or start info. */
	assert_true(si->modlist_paddr >= si->memmap_paddr + si->memmap_entries * 24 ||
		    si->modlist_paddr + sizeof(*m) <= si->memmap_paddr);
	assert_true(si->modlist_paddr >= BOOT_START_INFO_ADDR + sizeof(*si));
}

/* ---- (c) bzImage ---- */

static void test_bzimage(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { 0 };
	const char *cmdline = "console=ttyS0 init=/bin/sh";
	const size_t len = 1 * MiB + 3;
	const uint8_t *bp, *k;
	uint32_t img, size;

	set_kernel(f, make_bzimage(f, "bzImage", &o));
	set_initrd(f, make_initrd(f, len));
	f->vm.cfg.cmdline = cmdline;
	boot_ok(f);

	assert_int_equal(f->vm.boot_state.rip, 0x100000 + 0x200);
	assert_int_equal(f->vm.boot_state.gpr[R_RSI], BOOT_ZERO_PAGE_ADDR);
	check_long_mode(f);
	check_zero_page(f, cmdline);

	/* The protected-mode payload at 1 MiB. */
	k = guest(f, 0x100000, BZ_PAYLOAD);
	for (size_t i = 0; i < BZ_PAYLOAD; i++)
		if (k[i] != payload_byte(i))
			fail_msg("payload byte %#zx not at 1 MiB", i);

	/* The setup header was copied; the loader's fields were filled. */
	bp = guest(f, BOOT_ZERO_PAGE_ADDR, 4096);
	assert_int_equal(bp[BP_SETUP_SECTS], BZ_SETUP_SECTS);
	assert_int_equal(g16(f, BOOT_ZERO_PAGE_ADDR + BP_VERSION), 0x020f);
	assert_int_equal(g32(f, BOOT_ZERO_PAGE_ADDR + 0x1f4), BZ_PAYLOAD / 16);
	assert_int_equal(g64(f, BOOT_ZERO_PAGE_ADDR + BP_PREF_ADDRESS), BZ_PREF);
	assert_int_equal(g32(f, BOOT_ZERO_PAGE_ADDR + BP_INIT_SIZE), BZ_INIT_SIZE);
	assert_int_equal(g16(f, BOOT_ZERO_PAGE_ADDR + BP_XLOADFLAGS) & 1, 1);
	assert_true(bp[BP_LOADFLAGS] & 0x01); /* LOADED_HIGH kept */
	assert_true(bp[BP_LOADFLAGS] & 0x80); /* CAN_USE_HEAP */
	assert_int_equal(g32(f, BOOT_ZERO_PAGE_ADDR + BP_CMD_LINE_PTR), BOOT_CMDLINE_ADDR);
	/* Nothing of the file outside the header leaks into boot_params. */
	for (size_t i = 0; i < BP_SETUP_SECTS; i++) {
		if (i >= BP_ACPI_RSDP && i < BP_ACPI_RSDP + 8)
			continue;
		if (i == BP_E820_ENTRIES)
			continue;
		if (bp[i])
			fail_msg("boot_params byte %#zx is %#x, not 0", i, bp[i]);
	}
	for (size_t i = 0x26c; i < BP_E820_TABLE; i++)
		if (bp[i])
			fail_msg("boot_params byte %#zx is %#x, not 0", i, bp[i]);

	/* The initrd: page aligned, below the end of RAM, clear of the
	 * kernel's decompression area [pref_address, + init_size). */
	img = g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_IMAGE);
	size = g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_SIZE);
	assert_int_equal(size, len);
	assert_int_equal(img & 0xfff, 0);
	assert_true((uint64_t)img + size <= RAM);
	assert_true(img >= BZ_PREF + BZ_INIT_SIZE);
	/* As high as it goes: within a page of the end of RAM. */
	assert_true(RAM - ((uint64_t)img + size) < 0x1000);
	check_initrd_bytes(f, img, len);
}

static void test_bzimage_initrd_addr_max(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { .initrd_addr_max = 0x2ffffff }; /* 48 MiB - 1 */
	const size_t len = 0x10000;
	uint32_t img;

	set_kernel(f, make_bzimage(f, "bzImage", &o));
	set_initrd(f, make_initrd(f, len));
	boot_ok(f);
	img = g32(f, BOOT_ZERO_PAGE_ADDR + BP_RAMDISK_IMAGE);
	assert_true((uint64_t)img + len - 1 <= 0x2ffffff);
	assert_int_equal(img & 0xfff, 0);
	check_initrd_bytes(f, img, len);
}

static void test_bzimage_cmdline_limit(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { 0 };
	char *line = malloc(2049);

	assert_non_null(line);
	set_kernel(f, make_bzimage(f, "bzImage", &o));
	/* cmdline_size 2047: 2047 characters fit... */
	memset(line, 'a', 2047);
	line[2047] = '\0';
	f->vm.cfg.cmdline = line;
	boot_ok(f);
	assert_string_equal((const char *)guest(f, BOOT_CMDLINE_ADDR, 2048), line);
	/* ...2048 do not. */
	memset(line, 'b', 2048);
	line[2048] = '\0';
	expect_err(f, boot(f), "cmdline");
	assert_non_null(strstr(f->err, "2047"));
	f->vm.cfg.cmdline = NULL;
	free(line);
}

/* ---- the e820 map for larger guests ---- */

static void test_e820_layouts(void **state)
{
	static const uint64_t sizes[] = { 3ULL << 30, 4ULL << 30, (6ULL << 30) + (5 * MiB) };
	struct e820_entry e[E820_MAX];

	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		struct vm *vm = calloc(1, sizeof(*vm));
		uint64_t ram = 0, low = sizes[k] < GM_HOLE_START ? sizes[k] : GM_HOLE_START;
		bool high = false;
		int n;

		assert_non_null(vm);
		assert_int_equal(gm_init(&vm->mem, sizes[k]), 0);
		n = x86_e820_build(vm, e, E820_MAX);
		assert_true(n >= 4);
		for (int i = 0; i < n; i++) {
			if (i)
				assert_true(e[i - 1].addr + e[i - 1].size <= e[i].addr);
			if (e[i].type != E820_RAM)
				continue;
			ram += e[i].size;
			/* Nothing in the MMIO hole is RAM. */
			assert_true(e[i].addr + e[i].size <= GM_HOLE_START || e[i].addr >= GM_HOLE_END);
			if (e[i].addr == GM_HOLE_END) {
				high = true;
				assert_int_equal(e[i].size, sizes[k] - low);
			}
			if (e[i].addr == BOOT_HIMEM_START)
				assert_int_equal(e[i].addr + e[i].size, low);
		}
		assert_int_equal(ram, sizes[k] - (BOOT_HIMEM_START - BOOT_EBDA_ADDR));
		assert_int_equal(high, sizes[k] > GM_HOLE_START);
		/* Too small a table: no partial map. */
		assert_int_equal(x86_e820_build(vm, e, 3), 0);
		gm_destroy(&vm->mem);
		free(vm);
	}
}

/* ---- (d) errors ---- */

static void test_err_missing(void **state)
{
	struct fixture *f = *state;
	char *path;

	assert_true(asprintf(&path, "%s/no-such-kernel", f->dir) > 0);
	set_kernel(f, path);
	expect_err(f, boot(f), "No such file");
	assert_non_null(strstr(f->err, "no-such-kernel"));
}

static void test_err_empty(void **state)
{
	struct fixture *f = *state;

	set_kernel(f, put_file(f, "empty", "", 0));
	expect_err(f, boot(f), "empty");
}

static void test_err_not_a_kernel(void **state)
{
	struct fixture *f = *state;
	const char *text = "#!/bin/sh\necho this is not a kernel, but it is long enough to look at\n";

	set_kernel(f, put_file(f, "script.sh", text, strlen(text)));
	expect_err(f, boot(f), "not a kernel");
}

static void test_err_directory(void **state)
{
	struct fixture *f = *state;

	set_kernel(f, strdup(f->dir));
	expect_err(f, boot(f), "regular file");
}

static void test_err_bz_truncated(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { .syssize = BZ_PAYLOAD / 16 + 1 };

	set_kernel(f, make_bzimage(f, "bzImage", &o));
	expect_err(f, boot(f), "truncated");
}

static void test_err_bz_old_protocol(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { .version = 0x0200 };

	set_kernel(f, make_bzimage(f, "bzImage", &o));
	expect_err(f, boot(f), "boot protocol");
	assert_non_null(strstr(f->err, "2.00"));
}

static void test_err_bz_too_big_for_ram(void **state)
{
	struct fixture *f = *state;
	const struct bz_opts o = { .init_size = 0x7000000 }; /* 112 MiB */

	set_kernel(f, make_bzimage(f, "bzImage", &o));
	expect_err(f, boot(f), "--mem");
}

static void test_err_elf_truncated(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { .file_len = ELF_SEG_OFF + ELF_FILESZ / 2 };

	set_kernel(f, make_elf(f, "vmlinux", &o));
	expect_err(f, boot(f), "truncated");
}

static void test_err_elf_outside_ram(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts high = { .paddr = 0x10000000 };	 /* 256 MiB */
	const struct elf_opts edge = { .paddr = RAM - 0x1000 };	 /* runs past the end */
	const struct elf_opts low = { .paddr = 0x7000 };	 /* over boot_params */

	set_kernel(f, make_elf(f, "high", &high));
	expect_err(f, boot(f), "RAM");
	set_kernel(f, make_elf(f, "edge", &edge));
	expect_err(f, boot(f), "RAM");
	set_kernel(f, make_elf(f, "low", &low));
	expect_err(f, boot(f), "RAM");
}

static void test_err_elf32(void **state)
{
	struct fixture *f = *state;
	uint8_t buf[0x200] = { 0 };
	Elf32_Ehdr eh = { 0 };
	Elf32_Phdr ph = { 0 };

	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = 0x100000;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	ph.p_type = PT_LOAD;
	ph.p_offset = 0x100;
	ph.p_paddr = ph.p_vaddr = 0x100000;
	ph.p_filesz = ph.p_memsz = 0x100;
	memcpy(buf, &eh, sizeof(eh));
	memcpy(buf + sizeof(eh), &ph, sizeof(ph));
	set_kernel(f, put_file(f, "elf32", buf, sizeof(buf)));
	expect_err(f, boot(f), "ELF");
	/* Either "not an x86-64 ELF" or "a 32-bit ELF ... without a multiboot
	 * header": both say what is wrong with it. */
	if (!strstr(f->err, "32-bit") && !strstr(f->err, "x86-64"))
		fail_msg("error message '%s' does not say why a 32-bit ELF is refused", f->err);
}

static void test_err_initrd_too_large(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { 0 };
	char *path;

	set_kernel(f, make_elf(f, "vmlinux", &o));
	/* 63 MiB (sparse) cannot fit above a kernel at 2 MiB in 64 MiB. */
	path = put_file(f, "big-initrd", "x", 1);
	assert_int_equal(truncate(path, 63 * MiB), 0);
	set_initrd(f, path);
	expect_err(f, boot(f), "--mem");
	assert_non_null(strstr(f->err, "initrd"));
}

static void test_err_initrd_missing(void **state)
{
	struct fixture *f = *state;
	const struct elf_opts o = { 0 };
	char *path;

	set_kernel(f, make_elf(f, "vmlinux", &o));
	assert_true(asprintf(&path, "%s/no-initrd", f->dir) > 0);
	set_initrd(f, path);
	expect_err(f, boot(f), "initrd");
	assert_non_null(strstr(f->err, "No such file"));
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(test_elf64),
		T(test_elf64_no_cmdline),
		T(test_elf64_initrd),
		T(test_pvh),
		T(test_pvh_initrd),
		T(test_bzimage),
		T(test_bzimage_initrd_addr_max),
		T(test_bzimage_cmdline_limit),
		cmocka_unit_test(test_e820_layouts),
		T(test_err_missing),
		T(test_err_empty),
		T(test_err_not_a_kernel),
		T(test_err_directory),
		T(test_err_bz_truncated),
		T(test_err_bz_old_protocol),
		T(test_err_bz_too_big_for_ram),
		T(test_err_elf_truncated),
		T(test_err_elf_outside_ram),
		T(test_err_elf32),
		T(test_err_initrd_too_large),
		T(test_err_initrd_missing),
	};

	return cmocka_run_group_tests_name("boot", tests, NULL, NULL);
}
