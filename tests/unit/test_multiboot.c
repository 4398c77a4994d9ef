/* Multiboot (v1) kernels: the a.out-kludge form (load addresses in the
 * header) and the ELF32 form. Checked: where the image lands, the 32-bit
 * entry state the spec requires, and the information structure. */
#include "unit.h"

#include <elf.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86/boot.h"
#include "core/vm.h"

#define MiB (1ULL << 20)

struct fixture {
	struct vm vm;
	char dir[64];
	char kernel[96];
	char initrd[96];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	assert_int_equal(gm_init(&f->vm.mem, 64 * MiB), 0);
	bus_init(&f->vm.pio, "pio");
	bus_init(&f->vm.mmio, "mmio");
	f->vm.nr_vcpus = 1;
	strcpy(f->dir, "/tmp/tarn-mb-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->kernel, sizeof(f->kernel), "%s/kernel", f->dir);
	snprintf(f->initrd, sizeof(f->initrd), "%s/initrd", f->dir);
	f->vm.cfg.kernel = f->kernel;
	f->vm.cfg.cmdline = "mb-cmdline root=none";
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->kernel);
	unlink(f->initrd);
	rmdir(f->dir);
	gm_destroy(&f->vm.mem);
	bus_destroy(&f->vm.pio);
	bus_destroy(&f->vm.mmio);
	free(f);
	return 0;
}

static void write_file(const char *path, const void *data, size_t len)
{
	FILE *fp = fopen(path, "wb");

	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

static void put32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, 4);
}

static uint32_t get32(const struct vm *vm, uint64_t gpa)
{
	uint32_t v = 0;

	assert_int_equal(gm_read(&vm->mem, gpa, &v, 4), 0);
	return v;
}

/* The protocol's entry state: 32-bit flat protected mode, paging off,
 * EAX = magic, EBX = info. */
static void check_entry(const struct vm *vm, uint64_t entry)
{
	const struct x86_state *s = &vm->boot_state;

	assert_int_equal(s->rip, entry);
	assert_int_equal(s->gpr[R_RAX], 0x2badb002);
	assert_int_equal(s->gpr[R_RBX], 0x6000);
	assert_true(s->cr0 & X86_CR0_PE);
	assert_false(s->cr0 & X86_CR0_PG);
	assert_int_equal(s->cs.l, 0);
	assert_int_equal(s->cs.db, 1);
	assert_int_equal(s->cs.limit, 0xffffffff);
	assert_int_equal(s->ds.limit, 0xffffffff);
	assert_false(s->efer & X86_EFER_LME);
	assert_false(s->rflags & X86_RFLAGS_IF);
}

static void check_info(const struct vm *vm, bool with_module)
{
	uint32_t flags = get32(vm, 0x6000);
	char cmdline[64] = "";

	assert_true(flags & (1u << 0)); /* mem_lower/upper */
	assert_true(flags & (1u << 6)); /* mmap */
	assert_int_equal(get32(vm, 0x6000 + 4), 639);
	assert_int_equal(get32(vm, 0x6000 + 8), (64 * MiB - MiB) >> 10);
	assert_int_equal(gm_read(&vm->mem, get32(vm, 0x6000 + 16), cmdline, sizeof(cmdline) - 1), 0);
	assert_string_equal(cmdline, "mb-cmdline root=none");
	/* mmap: entries of size 20; the last RAM entry ends at 64 MiB. */
	uint32_t len = get32(vm, 0x6000 + 44), addr = get32(vm, 0x6000 + 48), end = 0;
	assert_true(len >= 3 * 24);
	for (uint32_t off = 0; off < len; off += 24) {
		uint64_t base, size;

		assert_int_equal(get32(vm, addr + off), 20);
		assert_int_equal(gm_read(&vm->mem, addr + off + 4, &base, 8), 0);
		assert_int_equal(gm_read(&vm->mem, addr + off + 12, &size, 8), 0);
		if (get32(vm, addr + off + 20) == 1 && base + size > end)
			end = (uint32_t)(base + size);
	}
	assert_int_equal(end, 64 * MiB);
	assert_int_equal(!!(flags & (1u << 3)), with_module);
	if (with_module) {
		uint32_t mods = get32(vm, 0x6000 + 24);
		uint32_t start = get32(vm, mods), stop = get32(vm, mods + 4);

		assert_int_equal(get32(vm, 0x6000 + 20), 1);
		assert_int_equal(stop - start, 5000);
		assert_int_equal(start & 0xfff, 0);
		assert_int_equal(get32(vm, start), 0x44434241); /* "ABCD" */
	}
}

/* a.out kludge: header at file offset 0x40 says the file from offset 0 goes
 * to 1 MiB, .bss to 1 MiB + 0x3000, entry at 1 MiB + 0x80. */
static void test_aout_kludge(void **state)
{
	struct fixture *f = *state;
	uint8_t img[0x200], initrd[5000];
	char err[256];

	memset(img, 0x90, sizeof(img));
	memset(initrd, 0, sizeof(initrd));
	memcpy(initrd, "ABCD", 4);
	put32(img + 0x40, 0x1badb002);
	put32(img + 0x44, 1u << 16);
	put32(img + 0x48, (uint32_t)-(0x1badb002u + (1u << 16)));
	put32(img + 0x4c, 0x100040);	 /* header_addr */
	put32(img + 0x50, 0x100000);	 /* load_addr */
	put32(img + 0x54, 0x100200);	 /* load_end_addr */
	put32(img + 0x58, 0x103000);	 /* bss_end_addr */
	put32(img + 0x5c, 0x100080);	 /* entry */
	write_file(f->kernel, img, sizeof(img));
	write_file(f->initrd, initrd, sizeof(initrd));
	f->vm.cfg.initrd = f->initrd;
	/* Dirty the .bss area first: the loader must zero it. */
	assert_int_equal(gm_write(&f->vm.mem, 0x102000, "junk", 4), 0);
	assert_int_equal(x86_boot_setup(&f->vm, err, sizeof(err)), 0);
	check_entry(&f->vm, 0x100080);
	check_info(&f->vm, true);
	assert_int_equal(get32(&f->vm, 0x100040), 0x1badb002);
	assert_int_equal(get32(&f->vm, 0x102000), 0);
}

/* ELF32 with a multiboot header and no address fields. */
static void test_elf32(void **state)
{
	struct fixture *f = *state;
	uint8_t img[0x1000];
	Elf32_Ehdr eh = { 0 };
	Elf32_Phdr ph = { 0 };
	char err[256];

	memset(img, 0, sizeof(img));
	memcpy(eh.e_ident, ELFMAG, SELFMAG);
	eh.e_ident[EI_CLASS] = ELFCLASS32;
	eh.e_ident[EI_DATA] = ELFDATA2LSB;
	eh.e_ident[EI_VERSION] = EV_CURRENT;
	eh.e_type = ET_EXEC;
	eh.e_machine = EM_386;
	eh.e_version = EV_CURRENT;
	eh.e_entry = 0x200010;
	eh.e_phoff = sizeof(eh);
	eh.e_ehsize = sizeof(eh);
	eh.e_phentsize = sizeof(ph);
	eh.e_phnum = 1;
	ph.p_type = PT_LOAD;
	ph.p_offset = 0x800;
	ph.p_vaddr = ph.p_paddr = 0x200000;
	ph.p_filesz = 0x100;
	ph.p_memsz = 0x2000;
	memcpy(img, &eh, sizeof(eh));
	memcpy(img + sizeof(eh), &ph, sizeof(ph));
	put32(img + 0x800, 0x1badb002);
	put32(img + 0x804, 0x3);
	put32(img + 0x808, (uint32_t)-(0x1badb002u + 3));
	put32(img + 0x810, 0xfeedface);
	write_file(f->kernel, img, sizeof(img));
	assert_int_equal(x86_boot_setup(&f->vm, err, sizeof(err)), 0);
	check_entry(&f->vm, 0x200010);
	check_info(&f->vm, false);
	assert_int_equal(get32(&f->vm, 0x200010), 0xfeedface);
}

/* A header whose checksum is wrong is no header: the file is then not a
 * kernel at all, and says so. */
static void test_bad_checksum(void **state)
{
	struct fixture *f = *state;
	uint8_t img[0x100];
	char err[256] = "";

	memset(img, 0, sizeof(img));
	put32(img, 0x1badb002);
	put32(img + 4, 1u << 16);
	put32(img + 8, 12345);
	write_file(f->kernel, img, sizeof(img));
	assert_int_not_equal(x86_boot_setup(&f->vm, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "not a kernel"));
}

/* Load addresses outside RAM or before the header are refused. */
static void test_bad_addresses(void **state)
{
	struct fixture *f = *state;
	uint8_t img[0x100];
	char err[256] = "";

	memset(img, 0, sizeof(img));
	put32(img, 0x1badb002);
	put32(img + 4, 1u << 16);
	put32(img + 8, (uint32_t)-(0x1badb002u + (1u << 16)));
	put32(img + 12, 0x100000);	/* header_addr */
	put32(img + 16, 0x100000);	/* load_addr */
	put32(img + 20, 0);		/* to the end of the file */
	put32(img + 24, 0x7f000000);	/* .bss far beyond 64 MiB of RAM */
	put32(img + 28, 0x100000);
	write_file(f->kernel, img, sizeof(img));
	assert_int_not_equal(x86_boot_setup(&f->vm, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "outside guest RAM"));
	put32(img + 12, 0x0fff00); /* header before load_addr */
	put32(img + 24, 0);
	write_file(f->kernel, img, sizeof(img));
	assert_int_not_equal(x86_boot_setup(&f->vm, err, sizeof(err)), 0);
	assert_non_null(strstr(err, "malformed multiboot header"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_aout_kludge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_elf32, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_checksum, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
	};

	return cmocka_run_group_tests_name("multiboot", tests, NULL, NULL);
}
