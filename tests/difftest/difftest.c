/* difftest: the emulator against the host CPU, and its instruction lengths
 * against capstone. TAP output, four tests:
 *
 *   1. random instruction sequences (gen.c) run on both sides (native.c,
 *      emu_run.c) must end the same way: completed, or the same exception
 *      (vector as the host's kernel reports it: REG_TRAPNO, whatever the
 *      signal) at the same instruction with the same error code and, for
 *      #PF, the same address (CR2 against si_addr); with the same GPRs,
 *      defined flags, XMM registers, MXCSR and data pages, and the
 *      read-only page untouched. A case the host child dies on is a
 *      mismatch too.
 *   2. capstone splits the generated code where the generator meant to.
 *   3. random byte strings capstone decodes as general-purpose instructions
 *      have the same length in the emulator (the host CPU decides where
 *      capstone and the emulator disagree).
 *   4. those of them the emulator did not complete (a fault, an exit) run
 *      again on both sides as cases of their own and are compared as in 1.
 *      Not compared, and counted: #UD where the emulator's CPUID does not
 *      claim the instruction's feature (its right answer), and segment
 *      loads of random selectors (the host's descriptor tables are Linux's).
 *
 *   difftest [-n CASES] [-s SEED] [-l LENGTHS] [-v] [-F] [-X]
 *
 * The seed is new each run unless given, and printed: case i of seed S is
 * generated from S alone when i = 0, so a reported mismatch is reproduced
 * with its own seed and -n 1. -v prints every case's code (disassembled);
 * -F generates popcnt/tzcnt/lzcnt even where the emulator's CPUID does not
 * claim them; -X what the emulator is known to get wrong (DT_F_GAPS): both
 * for work on those, failures expected otherwise.
 *
 * Where the host has choices of its own (which byte of a 512-byte fxsave
 * a #PF names, its MXCSR mask, the P bit Linux forces on #PF above user
 * space), the comparison leaves them out and says why where it does. Only
 * a host sandbox that cannot run a single case skips; one that fails later
 * fails the test, keeping the mismatches already found. */
#include <capstone/capstone.h>
#include <cpuid.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "difftest.h"

#define BATCH 1024
#define MAX_REPORTS 10
#define PROGRESS_S 10.0

static const char *const reg_name[16] = { "rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi",
					  "r8",	 "r9",	"r10", "r11", "r12", "r13", "r14", "r15" };

static csh cs;
static bool verbose, force_features;

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Memory the parent writes while the native child runs: kept out of the
 * child, or every first write to a page is a copy-on-write fault. */
static void *alloc_parent_only(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	madvise(p, size, MADV_DONTFORK);
	return p;
}

/* Case i of a run: from the run's seed itself when i = 0, so a case is
 * reproduced by its own seed and -n 1; nearby seeds give other cases. */
static uint64_t case_seed(uint64_t seed, uint64_t i)
{
	uint64_t s = seed + i * 0xd1342543de82ef95ULL;

	return i ? dt_rand(&s) : seed;
}

static const char *vec_name(int v)
{
	static const char *const n[] = { "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "#9",
					 "#TS", "#NP", "#SS", "#GP", "#PF", "#15", "#MF", "#AC", "#MC", "#XM",
					 "#VE", "#CP" };

	return v >= 0 && v < (int)(sizeof(n) / sizeof(n[0])) ? n[v] : "vector?";
}

static const char *end_name(const struct dt_result *r)
{
	if (r->ro_written)
		return "wrote read-only page";
	return r->end == DT_OK ? "completed" : r->end == DT_CRASH ? "crash" : vec_name(r->vec);
}

/* Flags undefined where the run stopped: at the end, or before the
 * faulting instruction (after it, for a trap). */
static uint32_t undef_at(const struct dt_case *c, const struct dt_result *r)
{
	if (r->end != DT_FAULT)
		return c->undef;
	for (unsigned i = 0; i < c->ninsn; i++)
		if (DT_CODE + c->ioff[i] == r->rip)
			return c->iundef[i];
	return c->undef;
}

/* Error code bits that are the CPU's. For a #PF above the user address
 * range, Linux sets P itself (arch/x86/mm/fault.c, set_signal_archinfo:
 * user space is not told whether a kernel page is present), so the host's
 * P bit there says nothing. */
#define DT_USER_TOP 0x7ffffffff000ULL /* TASK_SIZE_MAX, 4-level paging */

static uint32_t err_mask(const struct dt_result *nat)
{
	return nat->end == DT_FAULT && nat->vec == 14 && nat->addr >= DT_USER_TOP ? ~1u : ~0u;
}

static bool addr_same(const struct dt_case *c, const struct dt_result *a, const struct dt_result *b)
{
	uint64_t d = a->addr - b->addr; /* wraps: the area may too */

	if (c->cr2_wrap32) /* [r13d - 0x71] at 0xffffff50 ends at 0x14f */
		d = (uint32_t)d;
	if (c->cr2_wrap32 && c->cr2_span)
		return d < c->cr2_span || (uint32_t)-d < c->cr2_span;
	return c->cr2_span ? d < c->cr2_span || -d < c->cr2_span : !d;
}

static bool data_same(const struct dt_case *c, const struct dt_result *a, const struct dt_result *b)
{
	unsigned end = (unsigned)c->skip_off + c->skip_len;

	if (!c->skip_len)
		return !memcmp(a->data, b->data, DT_DATA_SIZE);
	return !memcmp(a->data, b->data, c->skip_off) &&
	       (end >= DT_DATA_SIZE || !memcmp(a->data + end, b->data + end, DT_DATA_SIZE - end));
}

/* Both ended the same way (the same exception at the same instruction with
 * the same error code and #PF address), with the same registers, defined
 * flags and data. */
static bool same(const struct dt_case *c, const struct dt_result *a, const struct dt_result *b)
{
	uint64_t mask = DT_FLAGS & ~(uint64_t)undef_at(c, a);

	if (a->end != b->end || a->end == DT_CRASH || a->ro_written || b->ro_written)
		return false;
	if (a->end == DT_FAULT &&
	    (a->vec != b->vec || a->rip != b->rip || ((a->err ^ b->err) & err_mask(a)) || !addr_same(c, a, b)))
		return false;
	return !memcmp(a->regs, b->regs, sizeof(a->regs)) && !((a->flags ^ b->flags) & mask) &&
	       !memcmp(a->xmm, b->xmm, sizeof(a->xmm)) && a->mxcsr == b->mxcsr && data_same(c, a, b);
}

static void print_code(const struct dt_case *c)
{
	cs_insn *insn;
	size_t n = cs_disasm(cs, c->code, c->code_len, DT_CODE, 0, &insn);
	size_t off = 0;

	for (size_t i = 0; i < n; i++) {
		char hex[64];
		int k = 0;

		for (unsigned j = 0; j < insn[i].size && k < 60; j++)
			k += snprintf(hex + k, sizeof(hex) - (size_t)k, "%02x ", insn[i].bytes[j]);
		printf("#   %" PRIx64 ": %-36s %s %s\n", insn[i].address, hex, insn[i].mnemonic, insn[i].op_str);
		off += insn[i].size;
	}
	if (n)
		cs_free(insn, n);
	if (off < c->code_len) {
		printf("#   (capstone stops at +%zu:", off);
		for (size_t j = off; j < c->code_len && j < off + 15; j++)
			printf(" %02x", c->code[j]);
		printf(")\n");
	}
}

static void report(const struct dt_case *c, const char *what, const struct dt_result *nat,
		   const struct dt_result *emu)
{
	uint64_t mask = DT_FLAGS & ~(uint64_t)undef_at(c, nat);
	bool fault = nat->end == DT_FAULT || emu->end == DT_FAULT;
	int shown = 0;

	printf("# MISMATCH: %s\n", what);
	print_code(c);
	printf("#   %-8s %-18s %-18s %-18s\n", "field", "input", "native", "emulator");
	printf("#   %-8s %-18s %-18s %-18s%s\n", "outcome", "", end_name(nat), end_name(emu),
	       strcmp(end_name(nat), end_name(emu)) ? "  <-" : "");
	if (nat->end != DT_OK || emu->end != DT_OK)
		printf("#   %-8s %-18s %-18" PRIx64 " %-18" PRIx64 "%s\n", "rip", "", nat->rip, emu->rip,
		       nat->rip != emu->rip ? "  <-" : "");
	if (fault)
		printf("#   %-8s %-18s %-18x %-18x%s\n", "errcode", "", nat->err, emu->err,
		       (nat->err ^ emu->err) & err_mask(nat) ? "  <-" : "");
	if ((nat->end == DT_FAULT && nat->vec == 14) || (emu->end == DT_FAULT && emu->vec == 14))
		printf("#   %-8s %-18s %-18" PRIx64 " %-18" PRIx64 "%s\n", "cr2", "", nat->addr, emu->addr,
		       !addr_same(c, nat, emu) ? "  <-" : "");
	for (int i = 0; i < 16; i++)
		printf("#   %-8s %-18" PRIx64 " %-18" PRIx64 " %-18" PRIx64 "%s\n", reg_name[i], c->regs[i],
		       nat->regs[i], emu->regs[i], nat->regs[i] != emu->regs[i] ? "  <-" : "");
	printf("#   %-8s %-18" PRIx64 " %-18" PRIx64 " %-18" PRIx64 "%s (compared: %#" PRIx64 ")\n", "rflags",
	       c->flags, nat->flags, emu->flags, (nat->flags ^ emu->flags) & mask ? "  <-" : "", mask);
	printf("#   %-8s %-18x %-18x %-18x%s\n", "mxcsr", c->mxcsr, nat->mxcsr, emu->mxcsr,
	       nat->mxcsr != emu->mxcsr ? "  <-" : "");
	for (int i = 0; i < 16; i++) {
		char name[8];

		if (!memcmp(c->xmm[i], nat->xmm[i], 16) && !memcmp(nat->xmm[i], emu->xmm[i], 16))
			continue; /* unchanged: not shown */
		snprintf(name, sizeof(name), "xmm%d", i);
		for (int h = 1; h >= 0; h--)
			printf("#   %-8s %-18" PRIx64 " %-18" PRIx64 " %-18" PRIx64 "%s\n", h ? name : "", c->xmm[i][h],
			       nat->xmm[i][h], emu->xmm[i][h], nat->xmm[i][h] != emu->xmm[i][h] ? "  <-" : "");
	}
	for (unsigned i = 0; i < DT_DATA_SIZE && shown < 16; i++) {
		if (nat->data[i] == emu->data[i] || i - c->skip_off < c->skip_len)
			continue;
		printf("#   %-8s %-18x %-18x %-18x  <- data byte at %#llx\n", "mem", c->data[i],
		       nat->data[i], emu->data[i], (unsigned long long)(DT_DATA + i));
		shown++;
	}
}

/* Does the generator's view of instruction boundaries match capstone's? */
static bool lengths_match(const struct dt_case *c)
{
	const uint8_t *p = c->code;
	size_t left = c->code_len;
	uint64_t addr = DT_CODE;
	cs_insn *insn = cs_malloc(cs);
	unsigned i = 0;
	bool ok = true;

	while (left && ok) {
		uint64_t at = addr;

		if (i < c->ninsn && DT_CODE + c->ioff[i] == at && ((c->opaque >> i) & 1) && i + 1 < c->ninsn) {
			/* Made to #UD: capstone may not know it; go on after it. */
			size_t len = c->ioff[i + 1] - c->ioff[i];

			p += len;
			left -= len;
			addr += len;
		} else if (!cs_disasm_iter(cs, &p, &left, &addr, insn)) {
			ok = false;
		} else if (i >= c->ninsn || DT_CODE + c->ioff[i] != at) {
			ok = false;
		}
		i++;
	}
	cs_free(insn, 1);
	return ok && i == c->ninsn;
}

/* popcnt/tzcnt/lzcnt: generated only when the emulator's CPUID claims
 * them (and the host has them: the host is the reference). */
static void pick_features(struct dt_emu *e)
{
	static const struct {
		uint32_t leaf;
		int reg, bit;
		const char *name;
	} f[3] = { { 1, 2, 23, "popcnt" }, { 7, 1, 3, "tzcnt (bmi1)" }, { 0x80000001, 2, 5, "lzcnt (abm)" } };

	for (int i = 0; i < 3; i++) {
		uint32_t g[4], h[4] = { 0 };
		bool emu, host;

		dt_emu_cpuid(e, f[i].leaf, 0, g);
		__cpuid_count(f[i].leaf, 0, h[0], h[1], h[2], h[3]);
		emu = (g[f[i].reg] >> f[i].bit) & 1;
		host = (h[f[i].reg] >> f[i].bit) & 1;
		if ((emu || force_features) && host)
			dt_features |= 1u << i;
		printf("# %s: %s\n", f[i].name,
		       (emu || force_features) && host ? "generated" : emu ? "advertised by the emulator, missing on the host: not generated"
						: "not advertised by the emulator's CPUID: not generated");
	}
}

/* What a set of comparisons covered, for the summary. */
struct tally {
	uint64_t cases, insns, bad;
	uint64_t faulted;  /* cases where either side took an exception */
	uint64_t vec[32];  /* ... by the host's vector */
	uint64_t split, edge, forced; /* cases with DT_TAG_* */
};

static void tally_add(struct tally *t, const struct dt_case *c, const struct dt_result *nat,
		      const struct dt_result *emu)
{
	t->cases++;
	t->insns += c->ninsn;
	if (nat->end == DT_FAULT || emu->end == DT_FAULT)
		t->faulted++;
	if (nat->end == DT_FAULT && nat->vec >= 0 && nat->vec < 32)
		t->vec[nat->vec]++;
	t->split += !!(c->tags & DT_TAG_SPLIT);
	t->edge += !!(c->tags & DT_TAG_EDGE);
	t->forced += !!(c->tags & DT_TAG_FAULT);
}

static void tally_print(const struct tally *t, const char *what)
{
	printf("# %s: %" PRIu64 " compared, %" PRIu64 " ending in an exception on either side; on the host:", what,
	       t->cases, t->faulted);
	for (int v = 0; v < 32; v++)
		if (t->vec[v])
			printf(" %s %" PRIu64, vec_name(v), t->vec[v]);
	printf("\n");
}

/* Run cases[0..n) on both sides: the host in its child while the emulator
 * runs here. nat[] and emu[] get the results of the first *ran. Returns 0,
 * or -1 when the native side failed (reason in *why). */
static int run_both(struct dt_emu *e, const struct dt_case *cases, size_t n, struct dt_result *nat,
		    struct dt_result *emu, size_t *ran, const char **why)
{
	struct dt_native *nt = dt_native_start(cases, n, why);

	*ran = 0;
	if (!nt)
		return -1;
	for (size_t i = 0; i < n; i++)
		dt_emu_run(e, &cases[i], &emu[i]);
	return dt_native_wait(nt, nat, ran, why);
}

/* Compare one case's results; report the first MAX_REPORTS mismatches. */
static void compare(struct tally *t, const struct dt_case *c, const struct dt_result *nat,
		    const struct dt_result *emu, const char *what)
{
	tally_add(t, c, nat, emu);
	if (!same(c, nat, emu) && t->bad++ < MAX_REPORTS)
		report(c, what, nat, emu);
}

static int run_cases(uint64_t n, uint64_t seed, int *tapno)
{
	struct dt_case *cases = malloc(sizeof(*cases) * BATCH);
	struct dt_result *nat = alloc_parent_only(sizeof(*nat) * BATCH);
	struct dt_result *emu = alloc_parent_only(sizeof(*emu) * BATCH);
	struct dt_emu *e = dt_emu_new();
	struct tally t = { 0 };
	uint64_t done = 0, badlen = 0;
	double t0 = now(), last = t0;
	const char *why = NULL;
	int ret = 1, broke = 0;

	if (!cases || !nat || !emu || !e) {
		printf("not ok %d - difftest: out of memory\n", ++*tapno);
		goto out;
	}
	pick_features(e);
	while (done < n && !broke) {
		size_t b = n - done < BATCH ? (size_t)(n - done) : BATCH, ran;

		for (size_t i = 0; i < b; i++)
			dt_gen(&cases[i], case_seed(seed, done + i));
		broke = run_both(e, cases, b, nat, emu, &ran, &why);
		for (size_t i = 0; i < ran; i++) {
			uint64_t s = case_seed(seed, done + i);
			char what[128];

			if (verbose) {
				printf("# case seed 0x%" PRIx64 "\n", s);
				print_code(&cases[i]);
			}
			if (!lengths_match(&cases[i]) && badlen++ < MAX_REPORTS) {
				printf("# ENCODING: capstone splits seed 0x%" PRIx64 " differently from the generator\n", s);
				print_code(&cases[i]);
			}
			snprintf(what, sizeof(what), "seed 0x%" PRIx64 " (reproduce: make difftest SEED=0x%" PRIx64 " N=1)",
				 s, s);
			compare(&t, &cases[i], &nat[i], &emu[i], what);
		}
		done += ran;
		if (now() - last >= PROGRESS_S && done < n) {
			double rate = (double)done / (now() - t0);

			printf("# progress: %" PRIu64 " of %" PRIu64 " cases, %" PRIu64 " mismatches, %.0f cases/s, "
			       "about %.0f s left\n", done, n, t.bad, rate, (double)(n - done) / rate);
			last = now();
		}
	}
	/* main() saw the sandbox start: a broken one now is a failure, and
	 * the mismatches found so far are reported all the same. */
	printf("# %" PRIu64 " cases (%" PRIu64 " instructions), %.1f s, %.0f cases/s\n", done, t.insns, now() - t0,
	       (double)done / (now() - t0));
	printf("# generated: %" PRIu64 " with an access straddling the two data pages, %" PRIu64
	       " running into the read-only or a not-present page, %" PRIu64 " made to fault\n",
	       t.split, t.edge, t.forced);
	tally_print(&t, "sequences");
	if (broke)
		printf("# the host sandbox failed after %" PRIu64 " of %" PRIu64 " cases: %s\n", done, n, why);
	printf("%s %d - %" PRIu64 " random instruction sequences (seed 0x%" PRIx64 "): emulator matches the host "
	       "CPU (%" PRIu64 " mismatches%s)\n",
	       t.bad || broke ? "not ok" : "ok", ++*tapno, done, seed, t.bad, broke ? "; the host sandbox failed" : "");
	printf("%s %d - generated encodings split into the same instructions by capstone (%" PRIu64
	       " disagreements)\n",
	       badlen ? "not ok" : "ok", ++*tapno, badlen);
	ret = t.bad || badlen || broke;
out:
	dt_emu_free(e);
	free(cases);
	if (nat)
		munmap(nat, sizeof(*nat) * BATCH);
	if (emu)
		munmap(emu, sizeof(*emu) * BATCH);
	return ret;
}

/* ---- instruction lengths against capstone ---- */

/* Is this capstone decoding one we can check: general-purpose, not a
 * branch, not privileged or I/O? */
static bool checkable(const cs_insn *in)
{
	const cs_detail *d = in->detail;

	for (int i = 0; i < d->groups_count; i++) {
		switch (d->groups[i]) {
		case X86_GRP_MODE64:
		case X86_GRP_CMOV:
			break;
		default:
			return false; /* branches, privileged, and every extension */
		}
	}
	switch (in->id) {
	case X86_INS_IN: case X86_INS_INSB: case X86_INS_INSW: case X86_INS_INSD:
	case X86_INS_OUT: case X86_INS_OUTSB: case X86_INS_OUTSW: case X86_INS_OUTSD:
	case X86_INS_HLT: case X86_INS_LOOP: case X86_INS_LOOPE: case X86_INS_LOOPNE:
	case X86_INS_JRCXZ: case X86_INS_JECXZ: case X86_INS_SYSCALL: case X86_INS_SYSRET:
	case X86_INS_RDTSC: case X86_INS_RDTSCP: case X86_INS_UD2: case X86_INS_UD0:
	case X86_INS_INT3: case X86_INS_INT: case X86_INS_INT1: case X86_INS_INTO:
	case X86_INS_WAIT: case X86_INS_XLATB:
		return false;
	default:
		return true;
	}
}

static void random_insn(uint64_t *s, uint8_t *b)
{
	static const uint8_t pfx[] = { 0x66, 0x67, 0xf2, 0xf3, 0xf0, 0x2e, 0x3e, 0x26, 0x36, 0x64, 0x65 };
	unsigned n = 0;
	uint64_t r = dt_rand(s);

	for (unsigned k = r % 4 == 0 ? 1 + (unsigned)(r >> 2) % 3 : 0; k; k--)
		b[n++] = pfx[dt_rand(s) % sizeof(pfx)];
	if (dt_rand(s) % 2)
		b[n++] = 0x40 | (dt_rand(s) & 15);
	if (dt_rand(s) % 4 == 0)
		b[n++] = 0x0f;
	while (n < 16) {
		uint64_t v = dt_rand(s);

		memcpy(b + n, &v, n + 8 <= 16 ? 8 : 16 - n);
		n += 8;
	}
}

/* The host CPU's length for b[0..n): single-step it natively (pushfq; or
 * qword [rsp], TF; popfq; insn) and see where the trap lands; -1 when it
 * faults instead, -2 when the sandbox failed (reason in *why). */
static int host_len(const uint8_t *b, size_t n, const char **why)
{
	static const uint8_t tf[] = { 0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9d };
	static struct dt_case c;
	static struct dt_result r;

	memset(&c, 0, sizeof(c));
	memcpy(c.code, tf, sizeof(tf));
	memcpy(c.code + sizeof(tf), b, n);
	memset(c.code + sizeof(tf) + n, 0xf4, 16);
	c.code_len = (unsigned)(sizeof(tf) + n + 16);
	for (int i = 0; i < 16; i++)
		c.regs[i] = DT_DATA + DT_PAGE / 2;
	c.regs[1] = 1; /* rcx: short string loops */
	if (dt_native_run(&c, &r, 1, why))
		return -2;
	if (r.end != DT_FAULT || r.vec != 1)
		return -1;
	return (int)(r.rip - DT_CODE - sizeof(tf));
}

/* RFLAGS bits capstone says the instruction leaves undefined. */
static uint32_t cs_undef(const cs_insn *in)
{
	static const struct {
		uint64_t cs;
		uint32_t fl;
	} m[] = { { X86_EFLAGS_UNDEFINED_OF, 0x800 }, { X86_EFLAGS_UNDEFINED_SF, 0x80 },
		  { X86_EFLAGS_UNDEFINED_ZF, 0x40 },  { X86_EFLAGS_UNDEFINED_PF, 0x4 },
		  { X86_EFLAGS_UNDEFINED_AF, 0x10 },  { X86_EFLAGS_UNDEFINED_CF, 0x1 } };
	uint32_t u = 0;

	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
		if (in->detail->x86.eflags & m[i].cs)
			u |= m[i].fl;
	return u;
}

/* Segment register loads and descriptor checks (lar, lsl, verr, verw) of
 * a random selector: its descriptor comes from Linux's GDT on the host (TLS
 * and per-CPU entries) and from ours in the emulator; and on an AMD host a
 * far pointer with REX.W is m16:32 (Intel's and the emulator's m16:64).
 * Not compared, counted. */
static bool loads_selector(const cs_insn *in)
{
	const cs_x86 *x = &in->detail->x86;

	switch (in->id) {
	case X86_INS_LSS: case X86_INS_LFS: case X86_INS_LGS:
	case X86_INS_LAR: case X86_INS_LSL: case X86_INS_VERR: case X86_INS_VERW:
		return true;
	case X86_INS_MOV: case X86_INS_POP:
		return x->op_count && x->operands[0].type == X86_OP_REG &&
		       (x->operands[0].reg == X86_REG_SS || x->operands[0].reg == X86_REG_DS ||
			x->operands[0].reg == X86_REG_ES || x->operands[0].reg == X86_REG_FS ||
			x->operands[0].reg == X86_REG_GS);
	default:
		return false;
	}
}

/* int n through a gate the host kernel keeps for itself (dt_int_quirks). */
static bool in_quirk_gate(const cs_insn *in)
{
	const cs_x86 *x = &in->detail->x86;

	return in->id == X86_INS_INT && x->op_count == 1 && x->operands[0].type == X86_OP_IMM &&
	       dt_int_quirk((unsigned)x->operands[0].imm & 0xff);
}

/* Instructions that raise #UD where CPUID does not claim their feature
 * (for XSAVE: OSXSAVE, CR4 as the OS set it). Where the emulator's CPUID
 * does not, #UD is its right answer, whatever the host (which may have
 * the feature) does. Not listed: lzcnt, tzcnt and the like, which run as
 * bsr/bsf without the feature. */
static bool feature_missing(struct dt_emu *e, const cs_insn *in)
{
	static const struct {
		unsigned id;
		uint32_t leaf, sub;
		int reg, bit;
	} need[] = {
		{ X86_INS_MOVBE, 1, 0, 2, 22 },	     { X86_INS_POPCNT, 1, 0, 2, 23 },
		{ X86_INS_RDRAND, 1, 0, 2, 30 },     { X86_INS_RDSEED, 7, 0, 1, 18 },
		{ X86_INS_ADCX, 7, 0, 1, 19 },	     { X86_INS_ADOX, 7, 0, 1, 19 },
		{ X86_INS_CLFLUSHOPT, 7, 0, 1, 23 }, { X86_INS_CLWB, 7, 0, 1, 24 },
		{ X86_INS_GETSEC, 1, 0, 2, 6 },	     { X86_INS_CRC32, 1, 0, 2, 20 },
		{ X86_INS_XSAVE, 1, 0, 2, 27 },	     { X86_INS_XSAVE64, 1, 0, 2, 27 },
		{ X86_INS_XRSTOR, 1, 0, 2, 27 },     { X86_INS_XRSTOR64, 1, 0, 2, 27 },
		{ X86_INS_XGETBV, 1, 0, 2, 27 },     { X86_INS_XSETBV, 1, 0, 2, 27 },
		{ X86_INS_XSAVEOPT, 0xd, 1, 0, 0 },  { X86_INS_XSAVEOPT64, 0xd, 1, 0, 0 },
		{ X86_INS_XSAVEC, 0xd, 1, 0, 1 },    { X86_INS_XSAVEC64, 0xd, 1, 0, 1 },
		{ X86_INS_XSAVES, 0xd, 1, 0, 3 },    { X86_INS_XSAVES64, 0xd, 1, 0, 3 },
		{ X86_INS_XRSTORS, 0xd, 1, 0, 3 },   { X86_INS_XRSTORS64, 0xd, 1, 0, 3 },
		{ X86_INS_RDFSBASE, 7, 0, 1, 0 },    { X86_INS_RDGSBASE, 7, 0, 1, 0 },
		{ X86_INS_WRFSBASE, 7, 0, 1, 0 },    { X86_INS_WRGSBASE, 7, 0, 1, 0 },
	};

	uint32_t g[4];
	unsigned k = 0;

	for (size_t i = 0; i < sizeof(need) / sizeof(need[0]); i++) {
		if (need[i].id != in->id)
			continue;
		dt_emu_cpuid(e, need[i].leaf, need[i].sub, g);
		return !((g[need[i].reg] >> need[i].bit) & 1);
	}
	/* VEX (c4, c5) and EVEX (62) in 64-bit mode, after legacy prefixes
	 * and REX bytes (a REX before VEX is #UD anyway): AVX and AVX-512. */
	while (k < in->size && (memchr("\x66\x67\xf0\xf2\xf3\x26\x2e\x36\x3e\x64\x65", in->bytes[k], 11) ||
				(in->bytes[k] & 0xf0) == 0x40))
		k++;
	if (k < in->size && (in->bytes[k] == 0xc4 || in->bytes[k] == 0xc5)) {
		dt_emu_cpuid(e, 1, 0, g);
		return !((g[2] >> 28) & 1);
	}
	if (k < in->size && in->bytes[k] == 0x62) {
		dt_emu_cpuid(e, 7, 0, g);
		return !((g[1] >> 16) & 1);
	}
	return false;
}

/* Index (0-15) of a 64- or 32-bit GPR in capstone's numbering; -1 if none. */
static int cs_gpr(x86_reg r)
{
	static const x86_reg r64[16] = { X86_REG_RAX, X86_REG_RCX, X86_REG_RDX, X86_REG_RBX,
					 X86_REG_RSP, X86_REG_RBP, X86_REG_RSI, X86_REG_RDI,
					 X86_REG_R8,  X86_REG_R9,  X86_REG_R10, X86_REG_R11,
					 X86_REG_R12, X86_REG_R13, X86_REG_R14, X86_REG_R15 };
	static const x86_reg r32[16] = { X86_REG_EAX,  X86_REG_ECX,  X86_REG_EDX,  X86_REG_EBX,
					 X86_REG_ESP,  X86_REG_EBP,  X86_REG_ESI,  X86_REG_EDI,
					 X86_REG_R8D,  X86_REG_R9D,  X86_REG_R10D, X86_REG_R11D,
					 X86_REG_R12D, X86_REG_R13D, X86_REG_R14D, X86_REG_R15D };

	for (int i = 0; i < 16; i++)
		if (r == r64[i] || r == r32[i])
			return i;
	return -1;
}

/* The linear address of the (first) memory operand of the case's first
 * instruction, in, with the case's registers; false if none. */
static bool cs_ea(const cs_insn *in, const struct dt_case *c, uint64_t *ea)
{
	const cs_x86 *x = &in->detail->x86;

	for (int i = 0; i < x->op_count; i++) {
		const x86_op_mem *m = &x->operands[i].mem;
		int b = cs_gpr(m->base), ix = cs_gpr(m->index);
		uint64_t a = (uint64_t)m->disp;

		if (x->operands[i].type != X86_OP_MEM)
			continue;
		if (m->base == X86_REG_RIP)
			a += DT_CODE + in->size;
		else if (b >= 0)
			a += c->regs[b];
		if (ix >= 0)
			a += c->regs[ix] * (uint64_t)m->scale;
		if (x->addr_size == 4)
			a = (uint32_t)a;
		a += m->segment == X86_REG_FS ? DT_FS_BASE : m->segment == X86_REG_GS ? DT_GS_BASE : 0;
		*ea = a;
		return true;
	}
	return false;
}

/* Where the host CPU has a choice of its own, for one instruction: fxsave
 * and fxrstor are 512-byte accesses the CPU makes in parts, in an order of
 * its choosing (AMD's reports a #PF at the last byte where the first is
 * not present as well): CR2 anywhere in the area matches. fxsave's image
 * holds the MXCSR mask, bit 17 (misaligned SSE mode) on AMD hosts, which
 * the emulator does not implement: those 4 bytes are not compared. */
static void host_choices(const cs_insn *in, struct dt_case *c)
{
	uint64_t ea;

	switch (in->id) {
	case X86_INS_FXSAVE: case X86_INS_FXSAVE64:
		if (cs_ea(in, c, &ea) && ea + 28 - DT_DATA <= DT_DATA_SIZE - 4) {
			c->skip_off = (uint16_t)(ea + 28 - DT_DATA);
			c->skip_len = 4;
		}
		/* fall through */
	case X86_INS_FXRSTOR: case X86_INS_FXRSTOR64:
		c->cr2_span = 512;
		c->cr2_wrap32 = in->detail->x86.addr_size == 4;
		break;
	default:
		break;
	}
}

/* Instructions the emulator did not complete in the length check: each runs
 * again, on both sides, as a case of its own, and must end the same way. */
struct faulting {
	struct dt_case *c;
	struct dt_result *nat, *emu;
	uint64_t lens[BATCH]; /* the length check's count when it was found */
	bool ud_ok[BATCH];    /* feature_missing(): #UD is right */
	size_t n;
	struct tally t;
	uint64_t ud_feature, selector, int_quirk; /* not compared with the host, and why */
};

static int faulting_flush(struct faulting *f, struct dt_emu *e, uint64_t seed, const char **why)
{
	size_t ran;
	int broke = run_both(e, f->c, f->n, f->nat, f->emu, &ran, why);

	for (size_t i = 0; i < ran; i++) {
		char what[160];

		if (f->ud_ok[i] && f->emu[i].end == DT_FAULT && f->emu[i].vec == 6 && f->emu[i].rip == DT_CODE) {
			f->ud_feature++;
			continue;
		}

		snprintf(what, sizeof(what),
			 "an instruction from the length check (reproduce: make difftest SEED=0x%" PRIx64
			 " N=0 LEN=%" PRIu64 ")", seed, f->lens[i]);
		compare(&f->t, &f->c[i], &f->nat[i], &f->emu[i], what);
	}
	f->n = 0;
	return broke;
}

static int run_lengths(uint64_t want, uint64_t seed, int *tapno)
{
	struct dt_emu *e = dt_emu_new();
	struct faulting f = { .c = malloc(sizeof(*f.c) * BATCH),
			      .nat = alloc_parent_only(sizeof(*f.nat) * BATCH),
			      .emu = alloc_parent_only(sizeof(*f.emu) * BATCH) };
	cs_insn *insn;
	uint64_t tried = 0, checked = 0, unknown = 0, bad = 0, errata = 0, s = seed ^ 0x6c656e67746873ULL;
	double t0 = now();
	const char *why = NULL;
	int broke = 0, ret = 1;

	if (!e || !f.c || !f.nat || !f.emu) {
		printf("not ok %d - lengths: out of memory\n", ++*tapno);
		goto out;
	}
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON); /* before cs_malloc: it sizes the detail */
	insn = cs_malloc(cs);
	while (checked < want && tried < want * 20 && !broke) {
		uint8_t b[16];
		const uint8_t *p = b;
		size_t left = 15;
		uint64_t addr = 0;
		int len, hl;

		random_insn(&s, b);
		tried++;
		if (!cs_disasm_iter(cs, &p, &left, &addr, insn) || !checkable(insn))
			continue;
		len = dt_emu_insn_len(e, b, insn->size, s);
		if (len == DT_LEN_UNKNOWN) {
			unknown++;
			if (verbose)
				printf("# did not complete in the emulator: %s %s\n", insn->mnemonic, insn->op_str);
			if (loads_selector(insn)) {
				f.selector++;
				continue;
			}
			if (in_quirk_gate(insn)) {
				f.int_quirk++;
				continue;
			}
			f.ud_ok[f.n] = feature_missing(e, insn);
			dt_gen_insn(&f.c[f.n], b, insn->size, s);
			f.c[f.n].undef = f.c[f.n].iundef[1] = cs_undef(insn);
			host_choices(insn, &f.c[f.n]);
			f.lens[f.n] = checked + 1;
			if (++f.n == BATCH)
				broke = faulting_flush(&f, e, seed, &why);
			continue;
		}
		checked++;
		if (len == (int)insn->size)
			continue;
		/* The host CPU decides. */
		hl = host_len(b, insn->size, &why);
		if (hl == -2) {
			broke = 1;
			continue;
		}
		if (hl >= 0 && hl == len) {
			if (errata++ >= MAX_REPORTS)
				continue;
			printf("# capstone erratum: %s %s: capstone %u bytes, host CPU and emulator %d:",
			       insn->mnemonic, insn->op_str, insn->size, len);
		} else if (bad++ < MAX_REPORTS) {
			printf("# LENGTH: %s %s: capstone %u bytes, emulator %s%d, host CPU %d:", insn->mnemonic,
			       insn->op_str, insn->size, len == DT_LEN_OTHER ? "not " : "",
			       len == DT_LEN_OTHER ? insn->size : len, hl);
		} else {
			continue;
		}
		for (unsigned i = 0; i < insn->size; i++)
			printf(" %02x", b[i]);
		printf("\n");
	}
	if (f.n && !broke)
		broke = faulting_flush(&f, e, seed, &why);
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_OFF);
	cs_free(insn, 1);
	printf("# lengths: %" PRIu64 " random byte strings, %" PRIu64 " general-purpose non-branch instructions "
	       "compared, %" PRIu64 " more did not complete in the emulator (fault/exit), %.1f s\n",
	       tried, checked, unknown, now() - t0);
	printf("# lengths: %" PRIu64 " where capstone differs from the host CPU and the emulator agrees with the "
	       "host\n", errata);
	tally_print(&f.t, "instructions the emulator did not complete, run again on both sides");
	printf("# ... not compared with the host: %" PRIu64 " raising #UD in the emulator, whose CPUID does not claim "
	       "their feature; %" PRIu64 " loading a segment register from a random selector; %" PRIu64
	       " int n through a gate of the host's own\n",
	       f.ud_feature, f.selector, f.int_quirk);
	if (broke)
		printf("# the host sandbox failed: %s\n", why);
	printf("%s %d - instruction lengths: emulator agrees with capstone on %" PRIu64 " random instructions (%" PRIu64
	       " disagreements; %" PRIu64 " capstone errata decided by the host CPU)\n",
	       bad || checked < want || broke ? "not ok" : "ok", ++*tapno, checked, bad, errata);
	printf("%s %d - the %" PRIu64 " instructions that did not complete in the emulator (seed 0x%" PRIx64
	       ") end the same way on the host CPU (%" PRIu64 " mismatches)\n",
	       f.t.bad || broke ? "not ok" : "ok", ++*tapno, f.t.cases, seed, f.t.bad);
	ret = bad || checked < want || broke || f.t.bad;
out:
	dt_emu_free(e);
	free(f.c);
	if (f.nat)
		munmap(f.nat, sizeof(*f.nat) * BATCH);
	if (f.emu)
		munmap(f.emu, sizeof(*f.emu) * BATCH);
	return ret;
}

/* Can the host sandbox run a case at all? The only reason to skip. */
/* ---- the host's own int n gates (dt_int_quirks) ---- */

static int probe_pipe;

static void probe_signal(int sig, siginfo_t *si, void *uc)
{
	const ucontext_t *u = uc;
	long long v[3] = { u->uc_mcontext.gregs[REG_TRAPNO], u->uc_mcontext.gregs[REG_ERR],
			   u->uc_mcontext.gregs[REG_RIP] };

	(void)sig, (void)si;
	if (write(probe_pipe, v, sizeof(v)) != sizeof(v))
		_exit(2);
	_exit(1);
}

/* Run "int n" for every n but 0x80, each in a child of its own (a gate of
 * the host's may return with registers changed): anything but #GP with
 * the gate's error code (n * 8 + 2) at the instruction marks n as the
 * host's own, but for the gates Linux opens to user code (int3, into). */
static void probe_int_quirks(void)
{
	for (unsigned n = 0; n < 256; n++) {
		/* int n; then exit(0) by a system call, should it return */
		const uint8_t stub[] = { 0xcd, (uint8_t)n, 0xb8, 60, 0, 0, 0, 0x31, 0xff, 0x0f, 0x05 };
		long long v[3] = { -1, 0, 0 };
		int fds[2], status = 0;
		uint8_t *page;
		pid_t pid;

		if (n == 0x80 || n == 3 || n == 4 || pipe(fds))
			continue;
		page = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (page == MAP_FAILED) {
			close(fds[0]), close(fds[1]);
			return;
		}
		memcpy(page, stub, sizeof(stub));
		fflush(stdout);
		if ((pid = fork()) == 0) {
			struct sigaction sa = { .sa_sigaction = probe_signal, .sa_flags = SA_SIGINFO };

			probe_pipe = fds[1];
			sigaction(SIGSEGV, &sa, NULL), sigaction(SIGTRAP, &sa, NULL), sigaction(SIGILL, &sa, NULL);
			((void (*)(void))page)();
			_exit(3);
		}
		close(fds[1]);
		if (pid > 0 && read(fds[0], v, sizeof(v)) != sizeof(v))
			v[0] = -1; /* no signal: the gate returned */
		if (pid > 0)
			waitpid(pid, &status, 0);
		close(fds[0]);
		munmap(page, 4096);
		if (pid > 0 && (v[0] != 13 || v[1] != (long long)n * 8 + 2 || v[2] != (long long)(uintptr_t)page)) {
			dt_int_quirks[n / 8] |= (uint8_t)(1u << n % 8);
			if (v[0] < 0)
				printf("# host quirk: int 0x%x at CPL 3 returns here (exit status %d), not #GP(0x%x)", n,
				       WIFEXITED(status) ? WEXITSTATUS(status) : -1, n * 8 + 2);
			else
				printf("# host quirk: int 0x%x at CPL 3 raises vector %lld, error code 0x%llx, %s here, "
				       "not #GP(0x%x) at it", n, v[0], v[1],
				       v[2] == (long long)(uintptr_t)page ? "at the instruction" : "past it", n * 8 + 2);
			printf(" (a gate of the host kernel's own): not generated, not compared\n");
		}
	}
}

static bool sandbox_starts(const char **why)
{
	static struct dt_case c;
	static struct dt_result r;

	dt_gen_insn(&c, NULL, 0, 1);
	if (dt_native_run(&c, &r, 1, why))
		return false;
	if (r.end != DT_OK) {
		*why = "an empty case does not complete in it";
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, lens = 100000, seed = 0;
	int opt, tapno = 0, rc = 0;
	const char *why = NULL;

	while ((opt = getopt(argc, argv, "n:s:l:vFX")) != -1) {
		switch (opt) {
		case 'n': n = strtoull(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'l': lens = strtoull(optarg, NULL, 0); break;
		case 'v': verbose = true; break;
		case 'F': force_features = true; break;
		case 'X': dt_features |= DT_F_GAPS; break;
		default:
			fprintf(stderr, "usage: %s [-n cases] [-s seed] [-l lengths] [-v] [-F] [-X]\n", argv[0]);
			return 2;
		}
	}
	if (!seed) {
		/* A new sample each run (make check covers more over time); the
		 * seed is printed, so any failure can be run again. */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		seed = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ((uint64_t)getpid() << 32);
		seed = dt_rand(&seed) | 1;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..%d\n", lens ? 4 : 2);
	printf("# seed 0x%" PRIx64 " (run it again: make difftest SEED=0x%" PRIx64 "%s%" PRIu64 "%s%" PRIu64 ")\n",
	       seed, seed, " N=", n, " LEN=", lens);
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
		printf("not ok 1 - capstone: cs_open failed\n");
		return 1;
	}
	printf("# single-step traps (RFLAGS.TF), alignment checks (#AC), unmasked SSE overflow/underflow: %s\n",
	       dt_features & DT_F_GAPS ? "generated (-X): the emulator is known to fail them"
				       : "not generated: known emulator gaps (-X generates them)");
	if (!sandbox_starts(&why)) {
		printf("# SKIP: the host sandbox cannot start: %s\n", why);
		for (int i = 1; i <= (lens ? 4 : 2); i++)
			printf("ok %d - difftest part %d # SKIP the host sandbox cannot start\n", i, i);
		cs_close(&cs);
		return 0;
	}
	probe_int_quirks();
	rc |= run_cases(n, seed, &tapno);
	if (lens)
		rc |= run_lengths(lens, seed, &tapno);
	cs_close(&cs);
	return rc;
}
