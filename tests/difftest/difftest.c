/* difftest: the emulator against the host CPU, and its instruction lengths
 * against capstone. TAP output.
 *
 *   difftest [-n CASES] [-s SEED] [-l LENGTHS] [-v] [-F]
 *
 * -v prints every case's code (disassembled) as it runs; -F generates
 * popcnt/tzcnt/lzcnt even when the emulator's CPUID does not claim them
 * (for work on them; failures are expected otherwise).
 *
 * Case i of seed S is generated from S alone when i = 0, so a mismatch is
 * reproduced with its own seed and -n 1. */
#include <capstone/capstone.h>
#include <cpuid.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "difftest.h"

#define BATCH 1024
#define MAX_REPORTS 10

static const char *const fault_name[] = { "completed", "#DE", "#UD", "#GP/#PF", "other exception", "crash" };
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

static uint64_t case_seed(uint64_t seed, uint64_t i)
{
	uint64_t s = seed + i;

	return i ? dt_rand(&s) : seed;
}

/* Flags undefined where the run stopped: at the end, or before the
 * faulting instruction. */
static uint32_t undef_at(const struct dt_case *c, const struct dt_result *r)
{
	if (r->fault == DT_OK)
		return c->undef;
	for (unsigned i = 0; i < c->ninsn; i++)
		if (DT_CODE + c->ioff[i] == r->rip)
			return c->iundef[i];
	return c->undef;
}

static bool same(const struct dt_case *c, const struct dt_result *a, const struct dt_result *b)
{
	uint64_t mask = DT_FLAGS & ~(uint64_t)undef_at(c, a);

	if (a->fault != b->fault || a->fault == DT_CRASH)
		return false;
	if (a->fault != DT_OK && a->rip != b->rip)
		return false;
	return !memcmp(a->regs, b->regs, sizeof(a->regs)) && !((a->flags ^ b->flags) & mask) &&
	       !memcmp(a->data, b->data, DT_DATA_SIZE);
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

static void report(const struct dt_case *c, uint64_t seed, const struct dt_result *nat,
		   const struct dt_result *emu)
{
	uint64_t mask = DT_FLAGS & ~(uint64_t)undef_at(c, nat);
	int shown = 0;

	printf("# MISMATCH: seed 0x%" PRIx64 " (reproduce: make difftest SEED=0x%" PRIx64 " N=1)\n", seed, seed);
	print_code(c);
	printf("#   %-8s %-18s %-18s %-18s\n", "field", "input", "native", "emulator");
	printf("#   %-8s %-18s %-18s %-18s%s\n", "outcome", "", fault_name[nat->fault], fault_name[emu->fault],
	       nat->fault != emu->fault ? "  <-" : "");
	if (nat->fault != DT_OK || emu->fault != DT_OK)
		printf("#   %-8s %-18s %-18" PRIx64 " %-18" PRIx64 "%s\n", "rip", "", nat->rip, emu->rip,
		       nat->rip != emu->rip ? "  <-" : "");
	for (int i = 0; i < 16; i++)
		printf("#   %-8s %-18" PRIx64 " %-18" PRIx64 " %-18" PRIx64 "%s\n", reg_name[i], c->regs[i],
		       nat->regs[i], emu->regs[i], nat->regs[i] != emu->regs[i] ? "  <-" : "");
	printf("#   %-8s %-18" PRIx64 " %-18" PRIx64 " %-18" PRIx64 "%s (compared: %#" PRIx64 ")\n", "rflags",
	       c->flags, nat->flags, emu->flags, (nat->flags ^ emu->flags) & mask ? "  <-" : "", mask);
	for (unsigned i = 0; i < DT_DATA_SIZE && shown < 16; i++) {
		if (nat->data[i] == emu->data[i])
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

		if (!cs_disasm_iter(cs, &p, &left, &addr, insn))
			ok = false;
		else if (i >= c->ninsn || DT_CODE + c->ioff[i] != at)
			ok = false;
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

		dt_emu_cpuid(e, f[i].leaf, g);
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

static int run_cases(uint64_t n, uint64_t seed, int *tapno)
{
	struct dt_case *cases = malloc(sizeof(*cases) * BATCH);
	struct dt_result *nat = alloc_parent_only(sizeof(*nat) * BATCH);
	struct dt_result *emu = alloc_parent_only(sizeof(*emu) * BATCH);
	struct dt_emu *e = dt_emu_new();
	struct dt_native *nt;
	uint64_t done = 0, bad = 0, badlen = 0, faults = 0, insns = 0;
	double t0 = now();
	const char *why = NULL;
	int ret = 0;

	if (!cases || !nat || !emu || !e) {
		printf("not ok %d - differential test: out of memory\n", ++*tapno);
		printf("not ok %d - encoder check: out of memory\n", ++*tapno);
		return 1;
	}
	pick_features(e);
	while (done < n) {
		size_t b = n - done < BATCH ? (size_t)(n - done) : BATCH;

		for (size_t i = 0; i < b; i++)
			dt_gen(&cases[i], case_seed(seed, done + i));
		/* The host runs the batch in its child while we emulate it. */
		nt = dt_native_start(cases, b, &why);
		for (size_t i = 0; nt && i < b; i++)
			dt_emu_run(e, &cases[i], &emu[i]);
		if (!nt || dt_native_wait(nt, nat, &why)) {
			printf("ok %d - differential test # SKIP %s\n", ++*tapno, why);
			printf("ok %d - encoder check # SKIP %s\n", ++*tapno, why);
			goto out;
		}
		for (size_t i = 0; i < b; i++) {
			uint64_t s = case_seed(seed, done + i);

			if (verbose) {
				printf("# case seed 0x%" PRIx64 "\n", s);
				print_code(&cases[i]);
			}
			insns += cases[i].ninsn;
			if (nat[i].fault != DT_OK)
				faults++;
			if (!lengths_match(&cases[i]) && badlen++ < MAX_REPORTS) {
				printf("# ENCODING: capstone splits seed 0x%" PRIx64 " differently from the generator\n", s);
				print_code(&cases[i]);
			}
			if (!same(&cases[i], &nat[i], &emu[i]) && bad++ < MAX_REPORTS)
				report(&cases[i], s, &nat[i], &emu[i]);
		}
		done += b;
	}
	printf("# %" PRIu64 " cases (%" PRIu64 " instructions, %" PRIu64 " ending in a fault on the host), "
	       "%.1f s, %.0f cases/s\n",
	       done, insns, faults, now() - t0, (double)done / (now() - t0));
	printf("%s %d - %" PRIu64 " random instruction sequences: emulator matches the host CPU (%" PRIu64
	       " mismatches)\n",
	       bad ? "not ok" : "ok", ++*tapno, done, bad);
	printf("%s %d - generated encodings split into the same instructions by capstone (%" PRIu64
	       " disagreements)\n",
	       badlen ? "not ok" : "ok", ++*tapno, badlen);
	ret = bad || badlen;
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
 * faults instead. */
static int host_len(const uint8_t *b, size_t n)
{
	static const uint8_t tf[] = { 0x9c, 0x48, 0x81, 0x0c, 0x24, 0x00, 0x01, 0x00, 0x00, 0x9d };
	static struct dt_case c;
	static struct dt_result r;
	const char *why;

	memset(&c, 0, sizeof(c));
	memcpy(c.code, tf, sizeof(tf));
	memcpy(c.code + sizeof(tf), b, n);
	memset(c.code + sizeof(tf) + n, 0xf4, 16);
	c.code_len = (unsigned)(sizeof(tf) + n + 16);
	for (int i = 0; i < 16; i++)
		c.regs[i] = DT_DATA + DT_PAGE / 2;
	c.regs[1] = 1; /* rcx: short string loops */
	if (dt_native_run(&c, &r, 1, &why) || r.fault != DT_OTHER)
		return -1;
	return (int)(r.rip - DT_CODE - sizeof(tf));
}

static int run_lengths(uint64_t want, uint64_t seed, int *tapno)
{
	struct dt_emu *e = dt_emu_new();
	cs_insn *insn;
	uint64_t tried = 0, checked = 0, unknown = 0, bad = 0, errata = 0, s = seed ^ 0x6c656e67746873ULL;
	double t0 = now();

	if (!e) {
		printf("not ok %d - lengths: out of memory\n", ++*tapno);
		return 1;
	}
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_ON); /* before cs_malloc: it sizes the detail */
	insn = cs_malloc(cs);
	while (checked < want && tried < want * 20) {
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
			continue;
		}
		checked++;
		if (len == (int)insn->size)
			continue;
		/* The host CPU decides. */
		hl = host_len(b, insn->size);
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
	cs_option(cs, CS_OPT_DETAIL, CS_OPT_OFF);
	printf("# lengths: %" PRIu64 " random byte strings, %" PRIu64 " general-purpose non-branch instructions "
	       "compared, %" PRIu64 " more did not complete in the emulator (fault/exit), %.1f s\n",
	       tried, checked, unknown, now() - t0);
	printf("# lengths: %" PRIu64 " where capstone differs from the host CPU and the emulator agrees with the "
	       "host\n", errata);
	printf("%s %d - instruction lengths: emulator agrees with capstone on %" PRIu64 " random instructions (%" PRIu64
	       " disagreements; %" PRIu64 " capstone errata decided by the host CPU)\n",
	       bad || checked < want ? "not ok" : "ok", ++*tapno, checked, bad, errata);
	cs_free(insn, 1);
	dt_emu_free(e);
	return bad || checked < want;
}

int main(int argc, char **argv)
{
	uint64_t n = 100000, lens = 100000, seed = 0;
	int opt, tapno = 0, rc = 0;

	while ((opt = getopt(argc, argv, "n:s:l:vF")) != -1) {
		switch (opt) {
		case 'n': n = strtoull(optarg, NULL, 0); break;
		case 's': seed = strtoull(optarg, NULL, 0); break;
		case 'l': lens = strtoull(optarg, NULL, 0); break;
		case 'v': verbose = true; break;
		case 'F': force_features = true; break;
		default:
			fprintf(stderr, "usage: %s [-n cases] [-s seed] [-l lengths] [-v] [-F]\n", argv[0]);
			return 2;
		}
	}
	if (!seed)
		seed = 0x7461726e64696666ULL; /* fixed by default: make check is reproducible */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("1..%d\n", lens ? 3 : 2);
	printf("# seed 0x%" PRIx64 "\n", seed);
	if (cs_open(CS_ARCH_X86, CS_MODE_64, &cs) != CS_ERR_OK) {
		printf("not ok 1 - capstone: cs_open failed\n");
		return 1;
	}
	rc |= run_cases(n, seed, &tapno);
	if (lens)
		rc |= run_lengths(lens, seed, &tapno);
	cs_close(&cs);
	return rc;
}
