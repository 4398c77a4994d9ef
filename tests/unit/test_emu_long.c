/* cpu/emu in 64-bit long mode: snippets assembled at test time with `as`
 * (binutils) into fake guest RAM, run through emu_cpu_ops, checked against
 * registers, memory and exits. The flags tests run the same machine code on
 * the host CPU and compare (defined flags only). */
#include "unit.h"

#include "assemble.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "cpu/cpu.h"
#include "cpu/emu/emu.h"
#include "mem/gm.h"

#define RAM_SIZE (4u << 20)
#define GDT 0x500
#define TSS 0x800
#define PML4 0x1000
#define PDPT 0x2000
#define PD 0x3000
#define PT 0x4000
#define PD_MMIO 0x5000
#define IDT 0x6000
#define MBOX 0x7000 /* handlers write what they saw here */
#define CODE 0x10000
#define DATA 0x30000
#define STACK_TOP 0x80000
#define RSP0_TOP 0x90000
#define IST1_TOP 0xa0000
#define MMIO_BASE 0xd0000000ULL /* identity-mapped, not RAM */

struct emu_t {
	struct vm vm;
	struct vcpu vcpu;
	uint8_t *ram;
	struct x86_state st;
	struct vcpu_exit exit;
};

static void put64(struct emu_t *t, uint64_t gpa, uint64_t v)
{
	memcpy(t->ram + gpa, &v, 8);
}

static uint64_t get64(struct emu_t *t, uint64_t gpa)
{
	uint64_t v;

	memcpy(&v, t->ram + gpa, 8);
	return v;
}

static void emu_setup(struct emu_t *t)
{
	struct x86_seg code = { .sel = 0x08, .limit = 0xffffffff, .type = 0xb, .s = 1, .present = 1, .l = 1, .g = 1 };
	struct x86_seg data = { .sel = 0x10, .limit = 0xffffffff, .type = 3, .s = 1, .present = 1, .db = 1, .g = 1 };
	uint64_t tss_desc_lo;

	memset(t, 0, sizeof(*t));
	t->ram = aligned_alloc(4096, RAM_SIZE);
	assert_non_null(t->ram);
	memset(t->ram, 0, RAM_SIZE);
	assert_int_equal(gm_init_fake(&t->vm.mem, 0, t->ram, RAM_SIZE), 0);
	t->vm.cpu = &emu_cpu_ops;
	t->vcpu.vm = &t->vm;
	t->vcpu.id = 0;
	assert_int_equal(emu_cpu_ops.vm_init(&t->vm), 0);
	assert_int_equal(emu_cpu_ops.vcpu_init(&t->vcpu), 0);

	/* Page tables: identity map 0-2 MiB with 4 KiB pages, 2-4 MiB with one
	 * 2 MiB page, and 2 MiB at MMIO_BASE (not RAM). */
	put64(t, PML4, PDPT | 7);
	put64(t, PDPT, PD | 7);
	put64(t, PDPT + 3 * 8, PD_MMIO | 7);
	put64(t, PD, PT | 7);
	put64(t, PD + 8, 0x200000 | 0x87);
	for (int i = 0; i < 512; i++)
		put64(t, PT + (uint64_t)i * 8, (uint64_t)i * 0x1000 | 7);
	put64(t, PD_MMIO + ((MMIO_BASE >> 21) & 511) * 8, MMIO_BASE | 0x87);

	/* GDT: null, kernel code 0x08, kernel data 0x10, user data 0x18,
	 * user code 0x20, TSS 0x28 (16 bytes). STAR layout for sysret:
	 * user base 0x10 -> SS 0x18|3, CS 0x20|3. */
	put64(t, GDT + 0x08, 0x00209a0000000000ULL);
	put64(t, GDT + 0x10, 0x00cf92000000ffffULL);
	put64(t, GDT + 0x18, 0x00cff2000000ffffULL);
	put64(t, GDT + 0x20, 0x0020fa0000000000ULL);
	tss_desc_lo = 0x67 | ((uint64_t)(TSS & 0xffffff) << 16) | (0x89ULL << 40);
	put64(t, GDT + 0x28, tss_desc_lo);
	put64(t, GDT + 0x30, 0);
	put64(t, TSS + 4, RSP0_TOP);	/* rsp0 */
	put64(t, TSS + 0x24, IST1_TOP); /* ist1 */

	t->st.cs = code;
	t->st.ds = t->st.es = t->st.ss = t->st.fs = t->st.gs = data;
	t->st.tr = (struct x86_seg){ .sel = 0x28, .base = TSS, .limit = 0x67, .type = 0xb, .present = 1 };
	t->st.ldt = (struct x86_seg){ .unusable = 1 };
	t->st.gdt = (struct x86_dtable){ GDT, 0x37 };
	t->st.idt = (struct x86_dtable){ IDT, 0xfff };
	t->st.cr0 = X86_CR0_PE | X86_CR0_PG | X86_CR0_WP | X86_CR0_ET | X86_CR0_NE;
	t->st.cr3 = PML4;
	t->st.cr4 = X86_CR4_PAE;
	t->st.efer = X86_EFER_LME | X86_EFER_LMA | X86_EFER_NXE | X86_EFER_SCE;
	t->st.rflags = 2;
	t->st.rip = CODE;
	t->st.gpr[R_RSP] = STACK_TOP;
}

static void emu_teardown(struct emu_t *t)
{
	emu_cpu_ops.vcpu_destroy(&t->vcpu);
	emu_cpu_ops.vm_destroy(&t->vm);
	free(t->ram);
}

/* An interrupt gate for vec to handler (DPL 0 unless dpl given). */
static void set_gate(struct emu_t *t, int vec, uint64_t handler, int ist, int dpl)
{
	uint64_t lo = (handler & 0xffff) | (0x08ULL << 16) | ((uint64_t)ist << 32) |
		      ((uint64_t)(0x8e | (dpl << 5)) << 40) | ((handler >> 16) & 0xffff) << 48;

	put64(t, IDT + (uint64_t)vec * 16, lo);
	put64(t, IDT + (uint64_t)vec * 16 + 8, handler >> 32);
}

static void load_code(struct emu_t *t, const char *src)
{
	assemble(src, t->ram + CODE, DATA - CODE);
}

/* t->st may hold the state of the last run (run_to_hlt): its events part
 * would start this run halted. */
static void start(struct emu_t *t)
{
	t->st.parts &= ~X86_STATE_EVENTS;
	assert_int_equal(emu_cpu_ops.set_state(&t->vcpu, &t->st), 0);
}

static int run(struct emu_t *t)
{
	int r = emu_cpu_ops.vcpu_run(&t->vcpu, &t->exit);

	assert_int_equal(r, 0);
	return t->exit.reason;
}

/* Run until hlt; fails on any other exit. */
static void run_to_hlt(struct emu_t *t)
{
	int reason = run(t);

	if (reason != VCPU_EXIT_HLT)
		fail_msg("expected hlt exit, got %d", reason);
	assert_int_equal(emu_cpu_ops.get_state(&t->vcpu, &t->st), 0);
}

/* ---- tests ---- */

static void test_loop_sum(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  "xor eax, eax\n"
		  "mov ecx, 100\n"
		  "1: add rax, rcx\n"
		  "dec ecx\n"
		  "jnz 1b\n"
		  "mov [0x30000], rax\n"
		  "lea rbx, [rip + data]\n"
		  "mov rdx, [rbx]\n"
		  "movzx esi, byte ptr [rbx + 8]\n"
		  "movsx rdi, byte ptr [rbx + 8]\n"
		  "push 0x1234\n"
		  "pop r8\n"
		  "call fn\n"
		  "hlt\n"
		  "fn: mov r9, 0x1122334455667788\n"
		  "bswap r9\n"
		  "ret\n"
		  "data: .quad 0xdeadbeefcafef00d\n"
		  ".byte 0x80\n");
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(t.st.gpr[R_RAX], 5050);
	assert_int_equal(get64(&t, DATA), 5050);
	assert_int_equal(t.st.gpr[R_RDX], 0xdeadbeefcafef00dULL);
	assert_int_equal(t.st.gpr[R_RSI], 0x80);
	assert_int_equal(t.st.gpr[R_RDI], 0xffffffffffffff80ULL);
	assert_int_equal(t.st.gpr[R_R8], 0x1234);
	assert_int_equal(t.st.gpr[R_R9], 0x8877665544332211ULL);
	assert_int_equal(t.st.gpr[R_RSP], STACK_TOP);
	emu_teardown(&t);
}

static void test_io_exits(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  "mov dx, 0x3f8\n"
		  "mov al, 0x41\n"
		  "out dx, al\n"
		  "in al, dx\n"
		  "mov bl, al\n"
		  "in eax, 0x60\n"
		  "mov rcx, 0xffffffffffffffff\n"
		  "out 0x80, ax\n"
		  "hlt\n");
	start(&t);
	assert_int_equal(run(&t), VCPU_EXIT_IO);
	assert_int_equal(t.exit.io.port, 0x3f8);
	assert_int_equal(t.exit.io.size, 1);
	assert_true(t.exit.io.write);
	assert_int_equal(t.exit.io.count, 1);
	assert_int_equal(t.exit.io.data[0], 0x41);

	assert_int_equal(run(&t), VCPU_EXIT_IO);
	assert_int_equal(t.exit.io.port, 0x3f8);
	assert_false(t.exit.io.write);
	t.exit.io.data[0] = 0x5a;

	assert_int_equal(run(&t), VCPU_EXIT_IO);
	assert_int_equal(t.exit.io.port, 0x60);
	assert_int_equal(t.exit.io.size, 4);
	assert_false(t.exit.io.write);
	memcpy(t.exit.io.data, "\x01\x02\x03\x04", 4);

	assert_int_equal(run(&t), VCPU_EXIT_IO);
	assert_int_equal(t.exit.io.port, 0x80);
	assert_int_equal(t.exit.io.size, 2);
	assert_true(t.exit.io.write);
	assert_int_equal(t.exit.io.data[0] | (t.exit.io.data[1] << 8), 0x0201);

	run_to_hlt(&t);
	assert_int_equal(t.st.gpr[R_RBX] & 0xff, 0x5a);
	assert_int_equal(t.st.gpr[R_RAX], 0x04030201); /* in eax zero-extends */
	emu_teardown(&t);
}

static void test_mmio_exits(void **state)
{
	struct emu_t t;
	uint32_t v;

	emu_setup(&t);
	load_code(&t,
		  "mov rsi, 0xd0000000\n"
		  "mov rax, [rsi]\n"
		  "mov dword ptr [rsi + 0x10], 0xabcdef01\n"
		  "add dword ptr [rsi + 0x20], 5\n"
		  "hlt\n");
	start(&t);
	assert_int_equal(run(&t), VCPU_EXIT_MMIO);
	assert_int_equal(t.exit.mmio.gpa, MMIO_BASE);
	assert_int_equal(t.exit.mmio.len, 8);
	assert_false(t.exit.mmio.write);
	memcpy(t.exit.mmio.data, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);

	assert_int_equal(run(&t), VCPU_EXIT_MMIO);
	assert_int_equal(t.exit.mmio.gpa, MMIO_BASE + 0x10);
	assert_int_equal(t.exit.mmio.len, 4);
	assert_true(t.exit.mmio.write);
	memcpy(&v, t.exit.mmio.data, 4);
	assert_int_equal(v, 0xabcdef01);

	/* Read-modify-write: the read exits first, then the write. */
	assert_int_equal(run(&t), VCPU_EXIT_MMIO);
	assert_int_equal(t.exit.mmio.gpa, MMIO_BASE + 0x20);
	assert_false(t.exit.mmio.write);
	v = 37;
	memcpy(t.exit.mmio.data, &v, 4);
	assert_int_equal(run(&t), VCPU_EXIT_MMIO);
	assert_true(t.exit.mmio.write);
	memcpy(&v, t.exit.mmio.data, 4);
	assert_int_equal(v, 42);

	run_to_hlt(&t);
	assert_int_equal(t.st.gpr[R_RAX], 0x8877665544332211ULL);
	emu_teardown(&t);
}

/* Serve MMIO exits from dev, a plain memory device at MMIO_BASE, until
 * another exit; count the accesses that left the emulator. */
static int run_dev(struct emu_t *t, uint8_t *dev, size_t len, int *reads, int *writes)
{
	for (;;) {
		int reason = run(t);
		uint64_t off = t->exit.mmio.gpa - MMIO_BASE;

		if (reason != VCPU_EXIT_MMIO)
			return reason;
		assert_true(t->exit.mmio.gpa >= MMIO_BASE && off + t->exit.mmio.len <= len);
		if (t->exit.mmio.write) {
			memcpy(dev + off, t->exit.mmio.data, t->exit.mmio.len);
			(*writes)++;
		} else {
			memcpy(t->exit.mmio.data, dev + off, t->exit.mmio.len);
			(*reads)++;
		}
	}
}

/* The largest instructions complete on device memory: fxsave/fxrstor (52
 * eight-byte accesses each in 64-bit mode) and enter with nesting level 31
 * (30 frame pointers read); the replay log once held 4 reads and 8 writes
 * and ended the VM. What the emulator cannot do ends it with a code: code
 * in device memory, and an exception delivered through an IDT there (which
 * once exited for the same IDT read forever). */
static void test_mmio_many(void **state)
{
	static uint8_t dev[0x2000];
	struct emu_t t;
	int reads = 0, writes = 0;

	emu_setup(&t);
	load_code(&t,
		  "mov rsi, 0xd0000000\n"
		  "fxsave [rsi]\n"
		  "fxrstor [rsi]\n"
		  "mov rbp, 0xd0001000\n"
		  "enter 16, 31\n"
		  "hlt\n");
	for (int i = 1; i <= 30; i++) {
		uint64_t v = 0x1111ULL * (uint64_t)i;

		memcpy(dev + 0x1000 - 8 * i, &v, 8);
	}
	start(&t);
	assert_int_equal(run_dev(&t, dev, sizeof(dev), &reads, &writes), VCPU_EXIT_HLT);
	assert_int_equal(writes, 52);
	assert_int_equal(reads, 52 + 30);
	assert_int_equal(emu_cpu_ops.get_state(&t.vcpu, &t.st), 0);
	assert_int_equal(get64(&t, STACK_TOP - 8), MMIO_BASE + 0x1000); /* the old rbp */
	for (int i = 1; i <= 30; i++)
		assert_int_equal(get64(&t, STACK_TOP - 8 - 8 * (uint64_t)i), 0x1111ULL * (uint64_t)i);
	assert_int_equal(t.st.gpr[R_RBP], STACK_TOP - 8);
	assert_int_equal(t.st.gpr[R_RSP], STACK_TOP - 8 - 31 * 8 - 16);
	emu_teardown(&t);

	emu_setup(&t);
	load_code(&t, "mov rax, 0xd0000000\njmp rax\n");
	start(&t);
	assert_int_equal(run(&t), VCPU_EXIT_ERROR);
	assert_int_equal(t.exit.error.code, VCPU_ERR_FETCH);
	emu_teardown(&t);

	emu_setup(&t);
	load_code(&t, "ud2\n");
	t.st.idt.base = MMIO_BASE;
	start(&t);
	assert_int_equal(run(&t), VCPU_EXIT_ERROR);
	assert_int_equal(t.exit.error.code, VCPU_ERR_EVENT_MMIO);
	emu_teardown(&t);
}

/* Handler at CODE+0x800 stores vector-independent info: error code, CR2,
 * return RIP, CS, RSP at entry; then hlts. */
#define PF_HANDLER                                                            \
	".org 0x800\n"                                                        \
	"pop rax\n"                                                           \
	"mov [0x7000], rax\n"                                                 \
	"mov rax, cr2\n"                                                      \
	"mov [0x7008], rax\n"                                                 \
	"mov rax, [rsp]\n"                                                    \
	"mov [0x7010], rax\n"                                                 \
	"mov rax, [rsp + 8]\n"                                                \
	"mov [0x7018], rax\n"                                                 \
	"mov [0x7020], rsp\n"                                                 \
	"hlt\n"

static void test_page_fault(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  "mov rax, 0x40001234\n"
		  "mov rbx, [rax]\n"
		  "hlt\n" PF_HANDLER);
	set_gate(&t, 14, CODE + 0x800, 0, 0);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, MBOX), 0);	/* read, not present, supervisor */
	assert_int_equal(get64(&t, MBOX + 8), 0x40001234);
	assert_int_equal(get64(&t, MBOX + 0x10), CODE + 7); /* the faulting mov */
	assert_int_equal(get64(&t, MBOX + 0x18), 0x08);
	assert_int_equal(t.st.cr2, 0x40001234);
	assert_int_equal(get64(&t, MBOX + 0x20), STACK_TOP - 40);

	/* Write to a read-only page with CR0.WP: P|W. */
	emu_teardown(&t);
	emu_setup(&t);
	load_code(&t,
		  "mov rax, 0x31000\n"
		  "mov byte ptr [rax], 1\n"
		  "hlt\n" PF_HANDLER);
	put64(&t, PT + 0x31 * 8, 0x31000 | 5); /* present, user, read-only */
	set_gate(&t, 14, CODE + 0x800, 0, 0);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, MBOX), 3);
	assert_int_equal(get64(&t, MBOX + 8), 0x31000);
	assert_int_equal(t.ram[0x31000], 0);

	/* NX: executing a no-execute page gives P|I; the dirty bit gets set
	 * on writes, the accessed bit on reads. */
	emu_teardown(&t);
	emu_setup(&t);
	load_code(&t,
		  "mov byte ptr [0x33000], 1\n"
		  "mov al, [0x34000]\n"
		  "mov rax, 0x32000\n"
		  "jmp rax\n" PF_HANDLER);
	put64(&t, PT + 0x32 * 8, 0x32000 | 7 | (1ULL << 63));
	set_gate(&t, 14, CODE + 0x800, 0, 0);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, MBOX), 0x11);
	assert_int_equal(get64(&t, MBOX + 8), 0x32000);
	assert_int_equal(get64(&t, PT + 0x33 * 8) & 0x60, 0x60);
	assert_int_equal(get64(&t, PT + 0x34 * 8) & 0x60, 0x20);
	emu_teardown(&t);
}

/* A vector's handler stores its vector and hlts; for vectors without an
 * error code. */
static void test_de_ud(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  "xor ecx, ecx\n"
		  "mov eax, 10\n"
		  "div ecx\n"
		  "hlt\n"
		  ".org 0x100\n"
		  "mov qword ptr [0x7000], 0xde\n"
		  "mov rax, [rsp]\n"
		  "mov [0x7008], rax\n"
		  /* idiv INT64_MIN / -1 also raises #DE: skip it via a new handler */
		  "lea rax, [rip + h2]\n"
		  "mov [0x6000], ax\n"
		  "mov rax, 0x8000000000000000\n"
		  "cqo\n"
		  "mov rcx, -1\n"
		  "idiv rcx\n"
		  "hlt\n"
		  "h2: mov qword ptr [0x7010], 0xde2\n"
		  "ud2\n"
		  ".org 0x300\n"
		  "mov qword ptr [0x7018], 0x6\n"
		  "mov rax, [rsp]\n"
		  "mov [0x7020], rax\n"
		  /* an opcode we do not implement (AVX via VEX) is #UD too */
		  "lea rax, [rip + h3]\n"
		  "mov [0x6060], ax\n"
		  "vzeroupper\n"
		  "hlt\n"
		  "h3: mov qword ptr [0x7028], 0x66\n"
		  "hlt\n");
	set_gate(&t, 0, CODE + 0x100, 0, 0);
	set_gate(&t, 6, CODE + 0x300, 0, 0);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, MBOX), 0xde);
	assert_int_equal(get64(&t, MBOX + 8), CODE + 7); /* the div */
	assert_int_equal(get64(&t, MBOX + 0x10), 0xde2);
	assert_int_equal(get64(&t, MBOX + 0x18), 6);
	assert_int_equal(get64(&t, MBOX + 0x28), 0x66);
	emu_teardown(&t);
}

static void test_triple_fault(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t, "nop\nud2\n");
	t.st.idt.limit = 0; /* every delivery fails: #UD -> #GP -> #DF -> shutdown */
	start(&t);
	assert_int_equal(run(&t), VCPU_EXIT_SHUTDOWN);

	/* A #PF whose handler's stack is unmapped escalates to #DF, which runs
	 * on IST1 (mapped). */
	emu_teardown(&t);
	emu_setup(&t);
	load_code(&t,
		  "mov rsp, 0x40000000\n"
		  "mov rax, [0x40000000]\n"
		  "hlt\n"
		  ".org 0x400\n"
		  "mov [0x7000], rsp\n"
		  "mov rax, [rsp]\n"
		  "mov [0x7008], rax\n"
		  "hlt\n");
	set_gate(&t, 14, CODE + 0x800, 0, 0);
	set_gate(&t, 8, CODE + 0x400, 1, 0);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, MBOX), IST1_TOP - 48);
	assert_int_equal(get64(&t, MBOX + 8), 0); /* #DF error code */
	emu_teardown(&t);
}

static void test_lock_cmpxchg(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  "mov qword ptr [0x30000], 5\n"
		  "mov eax, 5\n"
		  "mov ecx, 9\n"
		  "lock cmpxchg [0x30000], rcx\n"
		  "setz bl\n"
		  "mov eax, 5\n"
		  "lock cmpxchg [0x30000], rcx\n"
		  "setz bh\n"
		  "mov rsi, rax\n"
		  "lock xadd [0x30000], rcx\n"
		  "mov r12, rcx\n"
		  "lock inc qword ptr [0x30000]\n"
		  "lock bts qword ptr [0x30000], 40\n"
		  "setc dl\n"
		  "xor eax, eax\n"
		  "xor edx, edx\n"
		  "mov ebx, 1\n"
		  "xor ecx, ecx\n"
		  "lock cmpxchg16b [0x30010]\n"
		  "setz dil\n"
		  "hlt\n");
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(t.st.gpr[R_RBX] & 0xff, 1);
	assert_int_equal((t.st.gpr[R_RBX] >> 8) & 0xff, 0);
	assert_int_equal(t.st.gpr[R_RSI], 9);
	assert_int_equal(t.st.gpr[R_R12], 9); /* xadd: old value */
	assert_int_equal(get64(&t, DATA), 19 | (1ULL << 40));
	assert_int_equal(t.st.gpr[R_RDI] & 0xff, 1);
	assert_int_equal(get64(&t, DATA + 0x10), 1);
	emu_teardown(&t);
}

struct smp_arg {
	struct vcpu *vcpu;
	int reason;
};

static void *smp_thread(void *p)
{
	struct smp_arg *a = p;
	struct vcpu_exit ex;

	emu_cpu_ops.vcpu_run(a->vcpu, &ex);
	a->reason = ex.reason;
	return NULL;
}

/* Two vCPUs increment one counter with lock add: no lost updates. */
static void test_lock_smp(void **state)
{
	struct emu_t t;
	struct vcpu v2 = { 0 };
	struct smp_arg a1, a2;
	pthread_t th1, th2;

	emu_setup(&t);
	load_code(&t,
		  "mov ecx, 200000\n"
		  "1: lock add qword ptr [0x30000], 1\n"
		  "dec ecx\n"
		  "jnz 1b\n"
		  "hlt\n");
	start(&t);
	v2.vm = &t.vm;
	v2.id = 1;
	assert_int_equal(emu_cpu_ops.vcpu_init(&v2), 0);
	assert_int_equal(emu_cpu_ops.set_state(&v2, &t.st), 0);
	a1 = (struct smp_arg){ &t.vcpu, -1 };
	a2 = (struct smp_arg){ &v2, -1 };
	pthread_create(&th1, NULL, smp_thread, &a1);
	pthread_create(&th2, NULL, smp_thread, &a2);
	pthread_join(th1, NULL);
	pthread_join(th2, NULL);
	assert_int_equal(a1.reason, VCPU_EXIT_HLT);
	assert_int_equal(a2.reason, VCPU_EXIT_HLT);
	assert_int_equal(get64(&t, DATA), 400000);
	emu_cpu_ops.vcpu_destroy(&v2);
	emu_teardown(&t);
}

static void test_rep_movs(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	for (int i = 0; i < 5000; i++)
		t.ram[0x30ff0 + i] = (uint8_t)(i * 7);
	load_code(&t,
		  "mov rsi, 0x30ff0\n"
		  "mov rdi, 0x38ff0\n"
		  "mov ecx, 5000\n"
		  "cld\n"
		  "rep movsb\n"
		  "mov r8, rsi\n"
		  "mov r9, rdi\n"
		  "mov r10, rcx\n"
		  /* backwards, overlapping, 8 bytes at a time */
		  "std\n"
		  "mov rsi, 0x3a000 - 8\n"
		  "mov rdi, 0x3a100 - 8\n"
		  "mov ecx, 4\n"
		  "rep movsq\n"
		  "cld\n"
		  /* repne scasb: find 0x2a */
		  "mov rdi, 0x3c000\n"
		  "mov byte ptr [rdi + 77], 0x2a\n"
		  "mov al, 0x2a\n"
		  "mov ecx, 1000\n"
		  "repne scasb\n"
		  "mov r11, rcx\n"
		  /* rep stosd */
		  "mov rdi, 0x3d000\n"
		  "mov eax, 0x01020304\n"
		  "mov ecx, 3\n"
		  "rep stosd\n"
		  "hlt\n");
	start(&t);
	run_to_hlt(&t);
	assert_memory_equal(t.ram + 0x38ff0, t.ram + 0x30ff0, 5000);
	assert_int_equal(t.st.gpr[R_R8], 0x30ff0 + 5000);
	assert_int_equal(t.st.gpr[R_R9], 0x38ff0 + 5000);
	assert_int_equal(t.st.gpr[R_R10], 0);
	assert_memory_equal(t.ram + 0x3a100 - 32, t.ram + 0x3a000 - 32, 32);
	assert_int_equal(t.st.gpr[R_R11], 1000 - 78);
	assert_int_equal(get64(&t, 0x3d000), 0x0102030401020304ULL);
	assert_int_equal(get64(&t, 0x3d008) & 0xffffffff, 0x01020304);
	assert_int_equal(get64(&t, 0x3d00c) & 0xffffffff, 0);
	emu_teardown(&t);
}

static void *kicker(void *p)
{
	usleep(20000);
	emu_cpu_ops.kick(p);
	return NULL;
}

static void test_kick_and_irq(void **state)
{
	struct emu_t t;
	pthread_t th;

	emu_setup(&t);
	load_code(&t,
		  "sti\n"
		  "1: inc rax\n"
		  "jmp 1b\n"
		  ".org 0x200\n"
		  "mov [0x7000], rax\n"
		  "mov rax, [rsp + 16]\n"
		  "mov [0x7008], rax\n"
		  "hlt\n");
	set_gate(&t, 0x40, CODE + 0x200, 0, 0);
	start(&t);
	pthread_create(&th, NULL, kicker, &t.vcpu);
	assert_int_equal(run(&t), VCPU_EXIT_INTR);
	pthread_join(th, NULL);
	assert_int_equal(emu_inject_interrupt(&t.vcpu, 0x40), 0);
	run_to_hlt(&t);
	assert_true(get64(&t, MBOX) > 0);
	assert_true(get64(&t, MBOX + 8) & 0x200); /* pushed RFLAGS had IF */
	assert_int_equal(t.st.rflags & X86_RFLAGS_IF, 0);
	assert_true(emu_insn_count(&t.vcpu) > 0);
	emu_teardown(&t);
}

struct injector {
	struct vcpu *vcpu;
	atomic_bool stop;
};

/* Another CPU's device: an interrupt every 2 us or so, at moments the
 * guest cannot predict. */
static void *inject_loop(void *p)
{
	struct injector *in = p;

	while (!atomic_load(&in->stop)) {
		struct timespec a, b;

		emu_inject_interrupt(in->vcpu, 0x40);
		clock_gettime(CLOCK_MONOTONIC, &a);
		do
			clock_gettime(CLOCK_MONOTONIC, &b);
		while ((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec) < 2000);
	}
	return NULL;
}

/* sti holds interrupts off for one more instruction (the interrupt shadow),
 * which is what makes "sti; hlt" safe: an interrupt taken between the two
 * would return to the hlt and sleep with its wakeup spent. Interrupts come
 * from another thread at random moments while the guest loops over
 * "cli; sti; nop"; none may interrupt it at the nop. */
static void test_sti_shadow(void **state)
{
	struct emu_t t;
	struct injector in;
	pthread_t th;

	emu_setup(&t);
	load_code(&t,
		  "mov rbx, 0xfee000b0\n" /* LAPIC EOI */
		  "1: cli\n"
		  "sti\n"
		  "shadow: nop\n"
		  "cmp qword ptr [0x7008], 2000\n"
		  "jb 1b\n"
		  "cli\n"
		  "hlt\n"
		  ".org 0x200\n"
		  "push rax\n"
		  "push rdx\n"
		  "mov rax, [rsp + 16]\n" /* where the interrupt came in */
		  "lea rdx, [rip + shadow]\n"
		  "cmp rax, rdx\n"
		  "jne 2f\n"
		  "inc qword ptr [0x7000]\n"
		  "2: inc qword ptr [0x7008]\n"
		  "mov dword ptr [rbx], 0\n"
		  "pop rdx\n"
		  "pop rax\n"
		  "iretq\n");
	set_gate(&t, 0x40, CODE + 0x200, 0, 0);
	put64(&t, PD_MMIO + ((0xfee00000ULL >> 21) & 511) * 8, 0xfee00000ULL | 0x83); /* the LAPIC */
	start(&t);
	in.vcpu = &t.vcpu;
	atomic_init(&in.stop, false);
	pthread_create(&th, NULL, inject_loop, &in);
	run_to_hlt(&t);
	atomic_store(&in.stop, true);
	pthread_join(th, NULL);
	assert_true(get64(&t, MBOX + 8) >= 2000);
	assert_int_equal(get64(&t, MBOX), 0); /* none inside the shadow */
	emu_teardown(&t);
}

/* Ring 3 via sysret, popf unable to raise IOPL or clear IF there, #PF from
 * user mode on a supervisor page (U bit in the error code, stack switched
 * to TSS.RSP0), int 0x80 from ring 3 through a DPL 3 gate, syscall back to
 * ring 0. */
static void test_user_mode(void **state)
{
	struct emu_t t;

	emu_setup(&t);
	load_code(&t,
		  /* STAR: sysret base 0x10, syscall CS 0x08 */
		  "mov ecx, 0xc0000081\n"
		  "mov edx, 0x00100008\n"
		  "xor eax, eax\n"
		  "wrmsr\n"
		  "lea rax, [rip + sys]\n"
		  "mov rdx, rax\n"
		  "shr rdx, 32\n"
		  "mov ecx, 0xc0000082\n"
		  "wrmsr\n"
		  "lea rcx, [rip + user]\n"
		  "mov r11, 0x202\n"
		  "mov rsp, 0x70000\n"
		  "sysretq\n"
		  "user: pushfq\n" /* popf at CPL 3 may change neither IOPL nor IF */
		  "or qword ptr [rsp], 0x3000\n"
		  "and qword ptr [rsp], -0x201\n"
		  "popfq\n"
		  "pushfq\n"
		  "pop qword ptr [0x7048]\n"
		  "int 0x80\n"
		  "mov [0x20000], rax\n" /* supervisor-only page: #PF */
		  "hlt\n"
		  "sys: hlt\n"
		  ".org 0x500\n" /* int 0x80: record CS/SS pushed and CPL, iret */
		  "mov rax, [rsp + 8]\n"
		  "mov [0x7030], rax\n"
		  "mov rax, [rsp + 32]\n"
		  "mov [0x7038], rax\n"
		  "mov [0x7040], rsp\n"
		  "iretq\n" PF_HANDLER);
	put64(&t, PT + 0x20 * 8, 0x20000 | 3); /* supervisor-only */
	set_gate(&t, 14, CODE + 0x800, 0, 0);
	set_gate(&t, 0x80, CODE + 0x500, 0, 3);
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(get64(&t, 0x7030), 0x23);
	assert_int_equal(get64(&t, 0x7038), 0x1b);
	assert_int_equal(get64(&t, 0x7040), RSP0_TOP - 40);
	assert_int_equal(get64(&t, 0x7048) & 0x3200, 0x200); /* IOPL still 0, IF still set */
	assert_int_equal(get64(&t, MBOX), 7); /* P|W|U */
	assert_int_equal(get64(&t, MBOX + 8), 0x20000);
	assert_int_equal(get64(&t, MBOX + 0x18), 0x23);
	assert_int_equal(t.st.cs.sel, 0x08);
	emu_teardown(&t);
}

/* ---- flags against the host CPU ---- */

struct flag_case {
	const char *insn;
	unsigned sz;	     /* operand size in bytes (for masks) */
	uint32_t undef;	     /* flags undefined for every input */
	int kind;	     /* 0 plain, 1 shift/rotate by cl, 2 shld/shrd by cl, 3 rcl/rcr */
};

#define AF 0x10u
#define OF 0x800u
#define SZAP (0x80u | 0x40u | 0x10u | 0x4u)

static const struct flag_case flag_cases[] = {
	{ "add al, bl", 1, 0, 0 },	{ "add ax, bx", 2, 0, 0 },	 { "add eax, ebx", 4, 0, 0 },
	{ "add rax, rbx", 8, 0, 0 },	{ "adc al, bl", 1, 0, 0 },	 { "adc rax, rbx", 8, 0, 0 },
	{ "adc eax, ebx", 4, 0, 0 },	{ "sub al, bl", 1, 0, 0 },	 { "sub ax, bx", 2, 0, 0 },
	{ "sub eax, ebx", 4, 0, 0 },	{ "sub rax, rbx", 8, 0, 0 },	 { "sbb al, bl", 1, 0, 0 },
	{ "sbb rax, rbx", 8, 0, 0 },	{ "sbb ax, bx", 2, 0, 0 },	 { "cmp eax, ebx", 4, 0, 0 },
	{ "and eax, ebx", 4, AF, 0 },	{ "or ax, bx", 2, AF, 0 },	 { "xor rax, rbx", 8, AF, 0 },
	{ "test al, bl", 1, AF, 0 },	{ "neg eax", 4, 0, 0 },		 { "neg al", 1, 0, 0 },
	{ "inc ax", 2, 0, 0 },		{ "dec rax", 8, 0, 0 },		 { "inc al", 1, 0, 0 },
	{ "imul rax, rbx", 8, SZAP, 0 }, { "imul eax, ebx", 4, SZAP, 0 }, { "imul bx", 2, SZAP, 0 },
	{ "mul rbx", 8, SZAP, 0 },	{ "mul bl", 1, SZAP, 0 },	 { "imul ebx", 4, SZAP, 0 },
	{ "shl al, cl", 1, 0, 1 },	{ "shl ax, cl", 2, 0, 1 },	 { "shl eax, cl", 4, 0, 1 },
	{ "shl rax, cl", 8, 0, 1 },	{ "shr al, cl", 1, 0, 1 },	 { "shr eax, cl", 4, 0, 1 },
	{ "shr rax, cl", 8, 0, 1 },	{ "sar al, cl", 1, 0, 1 },	 { "sar ax, cl", 2, 0, 1 },
	{ "sar rax, cl", 8, 0, 1 },	{ "rol al, cl", 1, 0, 1 },	 { "rol eax, cl", 4, 0, 1 },
	{ "ror ax, cl", 2, 0, 1 },	{ "ror rax, cl", 8, 0, 1 },	 { "rcl al, cl", 1, 0, 3 },
	{ "rcl eax, cl", 4, 0, 3 },	{ "rcr ax, cl", 2, 0, 3 },	 { "rcr rax, cl", 8, 0, 3 },
	{ "shld eax, ebx, cl", 4, 0, 2 }, { "shrd rax, rbx, cl", 8, 0, 2 }, { "shld ax, bx, cl", 2, 0, 2 },
	{ "shrd eax, ebx, cl", 4, 0, 2 }, { "bt rax, rbx", 8, SZAP | OF, 0 }, { "bts eax, ebx", 4, SZAP | OF, 0 },
	{ "bsf rax, rbx", 8, 0xfffu & ~0x40u, 0 }, { "bsr eax, ebx", 4, 0xfffu & ~0x40u, 0 },
	{ "cmpxchg ecx, ebx", 4, 0, 0 }, { "xadd rax, rbx", 8, 0, 0 },
};

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
	return unit_rnd(&rng_state);
}

static uint64_t interesting(void)
{
	static const uint64_t v[] = { 0, 1, 2, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff,
				      0x80000000, 0xffffffff, 0x7fffffffffffffffULL,
				      0x8000000000000000ULL, ~0ULL, 0x0f, 0x10 };
	uint64_t r = rnd();

	if (r & 1)
		return v[(r >> 1) % (sizeof(v) / sizeof(v[0]))];
	return rnd() >> (rnd() % 64);
}

/* io block: [0] rax [8] rbx [16] rcx [24] flags in, [32] rax out,
 * [40] flags out, [48] rbx out, [56] rcx out. */
static void test_flags_vs_host(void **state)
{
	struct emu_t t;
	char src[1024];
	uint8_t code[512];
	size_t n;
	void *exec;
	int mismatches = 0, ran = 0;

	emu_setup(&t);
	exec = host_exec_map(4096);
	for (size_t ci = 0; ci < sizeof(flag_cases) / sizeof(flag_cases[0]); ci++) {
		const struct flag_case *fc = &flag_cases[ci];

		snprintf(src, sizeof(src),
			 "push rbx\n"
			 "mov rax, [rdi]\n"
			 "mov rbx, [rdi + 8]\n"
			 "mov rcx, [rdi + 16]\n"
			 "push qword ptr [rdi + 24]\n"
			 "popfq\n"
			 "%s\n"
			 "pushfq\n"
			 "pop qword ptr [rdi + 40]\n"
			 "mov [rdi + 32], rax\n"
			 "mov [rdi + 48], rbx\n"
			 "mov [rdi + 56], rcx\n"
			 "pop rbx\n"
			 "ret\n",
			 fc->insn);
		n = assemble(src, code, sizeof(code));
		memcpy(exec, code, n);
		memcpy(t.ram + CODE, code, n);
		t.ram[CODE + 0x400] = 0xf4; /* hlt: the guest returns here */
		for (int iter = 0; iter < 300; iter++) {
			uint64_t in[4], host[8], guest[8];
			unsigned bits = fc->sz * 8, cnt;
			uint32_t mask = 0x8d5 & ~fc->undef;

			in[0] = interesting();
			in[1] = interesting();
			cnt = (unsigned)(rnd() % 70);
			in[2] = (rnd() & ~0xffULL) | cnt;
			in[3] = 0x202 | (rnd() & 0x8d5);
			if (fc->kind) {
				unsigned mc = cnt & (fc->sz == 8 ? 63 : 31);

				if (fc->kind == 2 && fc->sz == 2 && mc > 16)
					continue; /* result undefined */
				if (mc > 1 || (fc->kind == 3 && mc != 1))
					mask &= ~OF;
				if (fc->kind == 1 || fc->kind == 2)
					if (mc)
						mask &= ~AF;
				(void)bits;
			}
			memset(host, 0, sizeof(host));
			memcpy(host, in, sizeof(in));
			((void (*)(uint64_t *))exec)(host);

			memset(guest, 0, sizeof(guest));
			memcpy(guest, in, sizeof(in));
			memcpy(t.ram + DATA, guest, sizeof(guest));
			t.st.rip = CODE;
			t.st.gpr[R_RSP] = STACK_TOP - 8;
			put64(&t, STACK_TOP - 8, CODE + 0x400);
			t.st.gpr[R_RDI] = DATA;
			t.st.rflags = 2;
			start(&t);
			run_to_hlt(&t);
			memcpy(guest, t.ram + DATA, sizeof(guest));
			ran++;
			if (host[4] != guest[4] || host[6] != guest[6] || host[7] != guest[7] ||
			    ((host[5] ^ guest[5]) & mask)) {
				if (mismatches++ < 10)
					print_message("# %s: in rax=%#llx rbx=%#llx rcx=%#llx fl=%#llx: host rax=%#llx fl=%#llx, emu rax=%#llx fl=%#llx\n",
						      fc->insn, (unsigned long long)in[0], (unsigned long long)in[1],
						      (unsigned long long)in[2], (unsigned long long)in[3],
						      (unsigned long long)host[4], (unsigned long long)host[5],
						      (unsigned long long)guest[4], (unsigned long long)guest[5]);
			}
		}
	}
	munmap(exec, 4096);
	print_message("# %d flag comparisons against the host CPU, %d mismatches\n", ran, mismatches);
	assert_int_equal(mismatches, 0);
	emu_teardown(&t);
}

/* Not an assertion: prints the interpreter's speed on a simple loop. */
static void test_speed(void **state)
{
	struct emu_t t;
	struct timespec a, b;
	double s;
	uint64_t insns;

	emu_setup(&t);
	load_code(&t,
		  "mov ecx, 20000000\n"
		  "xor eax, eax\n"
		  "1: add rax, rcx\n"
		  "xor rax, 0x55\n"
		  "mov [0x30000], rax\n"
		  "dec ecx\n"
		  "jnz 1b\n"
		  "hlt\n");
	start(&t);
	clock_gettime(CLOCK_MONOTONIC, &a);
	run_to_hlt(&t);
	clock_gettime(CLOCK_MONOTONIC, &b);
	s = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	insns = emu_insn_count(&t.vcpu);
	print_message("# emu: %llu instructions in %.3f s: %.1f M instructions/s\n",
		      (unsigned long long)insns, s, (double)insns / s / 1e6);
	assert_true(insns >= 100000000ULL);
	emu_teardown(&t);
}

/* x86_state's parts beyond the registers (a snapshot's vCPU): random x87,
 * SSE, debug-register and MSR contents set, run a few instructions that
 * touch none of them, read back bit for bit (the TSC moved on, by less than
 * a second). A value the guest could not load itself is refused. */
static void test_state_parts_round_trip(void **state)
{
	static const uint8_t code[] = { 0x48, 0xff, 0xc0, 0x48, 0xff, 0xc0, 0xf4 }; /* inc rax x2; hlt */
	struct emu_t t;
	struct x86_state in, out;
	uint32_t mxcsr = 0x1f80 | 0x3f; /* all exceptions masked, their flags set */
	uint16_t fcw = 0x037f, fsw = 0x3800; /* TOP = 7 */

	emu_setup(&t);
	memcpy(t.ram + CODE, code, sizeof(code));
	srandom(42);
	in = t.st;
	in.parts = X86_STATE_FPU | X86_STATE_DEBUG | X86_STATE_MSR;
	emu_cpu_ops.get_state(&t.vcpu, &out);
	memcpy(in.lapic, out.lapic, sizeof(in.lapic)); /* the LAPIC as it is */
	in.parts |= X86_STATE_LAPIC;
	for (size_t i = 0; i < sizeof(in.fxsave); i++)
		in.fxsave[i] = (uint8_t)random();
	memset(in.fxsave + 8 + 8 + 8, 0, 8); /* set below */
	memcpy(in.fxsave + 0, &fcw, 2);
	memcpy(in.fxsave + 2, &fsw, 2);
	in.fxsave[5] = 0;
	in.fxsave[7] &= 0x07; /* FOP is 11 bits */
	memcpy(in.fxsave + 24, &mxcsr, 4);
	memset(in.fxsave + 28, 0, 4);
	for (int i = 0; i < 8; i++)
		memset(in.fxsave + 32 + 16 * i + 10, 0, 6); /* 80 bits in 16 */
	memset(in.fxsave + 416, 0, 96);
	for (int i = 0; i < 4; i++)
		in.dr[i] = 0x1000 * (uint64_t)(i + 1) + 0x123;
	in.dr6 = 0xffff0ff0;
	in.dr7 = 0x400;
	in.msr[X86_MSR_TSC] = 123456789;
	in.msr[X86_MSR_SYSENTER_CS] = 0x10;
	in.msr[X86_MSR_SYSENTER_ESP] = 0xffff888000001000ULL;
	in.msr[X86_MSR_SYSENTER_EIP] = 0xffffffff81000000ULL;
	in.msr[X86_MSR_MISC_ENABLE] = 1;
	in.msr[X86_MSR_PAT] = 0x0007010600070106ULL;
	in.msr[X86_MSR_STAR] = 0x0023001000000000ULL;
	in.msr[X86_MSR_LSTAR] = 0xffffffff81a00000ULL;
	in.msr[X86_MSR_CSTAR] = 0xffffffff81a00100ULL;
	in.msr[X86_MSR_SFMASK] = 0x47700;
	in.msr[X86_MSR_KERNEL_GS_BASE] = 0xffff88803fc00000ULL;
	in.msr[X86_MSR_TSC_AUX] = 1;
	in.msr[X86_MSR_KVM_WALL_CLOCK_NEW] = DATA;
	in.msr[X86_MSR_KVM_SYSTEM_TIME_NEW] = (DATA + 0x40) | 1; /* enabled, in RAM */
	assert_int_equal(emu_cpu_ops.set_state(&t.vcpu, &in), 0);
	t.st = in;
	run_to_hlt(&t);
	assert_int_equal(emu_cpu_ops.get_state(&t.vcpu, &out), 0);
	assert_int_equal(out.parts, X86_STATE_ALL);
	assert_int_equal(out.gpr[R_RAX], in.gpr[R_RAX] + 2);
	/* The image's MXCSR mask is the emulator's own. */
	memcpy(in.fxsave + 28, out.fxsave + 28, 4);
	assert_memory_equal(out.fxsave, in.fxsave, sizeof(in.fxsave));
	assert_memory_equal(out.dr, in.dr, sizeof(in.dr));
	assert_true(out.dr6 == in.dr6 && out.dr7 == in.dr7);
	assert_true(out.msr[X86_MSR_TSC] >= in.msr[X86_MSR_TSC] &&
		    out.msr[X86_MSR_TSC] - in.msr[X86_MSR_TSC] < 1000000000ULL);
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		if (i != X86_MSR_TSC && out.msr[i] != in.msr[i])
			fail_msg("MSR %#x: set %#llx, read %#llx", x86_state_msr_index[i],
				 (unsigned long long)in.msr[i], (unsigned long long)out.msr[i]);

	/* Refused as the guest's own FXRSTOR or WRMSR would be, with the
	 * registers left as they were. */
	out.gpr[R_RBX] = 0x5a5a;
	mxcsr = 0xffff0000;
	memcpy(out.fxsave + 24, &mxcsr, 4);
	assert_int_equal(emu_cpu_ops.set_state(&t.vcpu, &out), -EINVAL);
	assert_int_equal(emu_cpu_ops.get_state(&t.vcpu, &in), 0);
	assert_int_not_equal(in.gpr[R_RBX], 0x5a5a);
	mxcsr = 0x1f80;
	memcpy(out.fxsave + 24, &mxcsr, 4);
	out.msr[X86_MSR_LSTAR] = 0x8000000000000000ULL; /* not canonical */
	assert_int_equal(emu_cpu_ops.set_state(&t.vcpu, &out), -EINVAL);
	emu_teardown(&t);
}

/* MOV from DR (and CR) with mod != 3: the CPU ignores mod, takes r/m as a
 * register and reads no displacement. The emulator took it for a memory
 * operand (emu_fuzz: "index 19 out of bounds" in setr). */
static void test_mov_dr_ignores_mod(void **state)
{
	static const uint8_t code[] = {
		0x48, 0xc7, 0xc0, 0x34, 0x12, 0x00, 0x00, /* mov rax, 0x1234 */
		0x0f, 0x23, 0xc0,			  /* mov dr0, rax */
		0x0f, 0x21, 0x03,			  /* mov rbx, dr0 (mod 00) */
		0x0f, 0x20, 0x41,			  /* mov rcx, cr0 (mod 01: no disp8) */
		0xf4,					  /* hlt */
	};
	struct emu_t t;

	emu_setup(&t);
	memcpy(t.ram + CODE, code, sizeof(code));
	start(&t);
	run_to_hlt(&t);
	assert_int_equal(t.st.gpr[R_RBX], 0x1234);
	assert_int_equal(t.st.gpr[R_RCX], t.st.cr0);
	assert_int_equal(t.st.rip, CODE + sizeof(code));
	emu_teardown(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_loop_sum),
		cmocka_unit_test(test_io_exits),
		cmocka_unit_test(test_mmio_exits),
		cmocka_unit_test(test_mmio_many),
		cmocka_unit_test(test_page_fault),
		cmocka_unit_test(test_de_ud),
		cmocka_unit_test(test_triple_fault),
		cmocka_unit_test(test_lock_cmpxchg),
		cmocka_unit_test(test_lock_smp),
		cmocka_unit_test(test_rep_movs),
		cmocka_unit_test(test_kick_and_irq),
		cmocka_unit_test(test_sti_shadow),
		cmocka_unit_test(test_user_mode),
		cmocka_unit_test(test_flags_vs_host),
		cmocka_unit_test(test_state_parts_round_trip),
		cmocka_unit_test(test_mov_dr_ignores_mod),
		cmocka_unit_test(test_speed),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
