/* Host side of the micro-guest suite. Each test boots one guest ELF from
 * tests/guests/ under each backend, serves its ucalls, and asserts on what
 * the guest reported, on how the VM ended, and on host-visible effects
 * (console bytes, guest memory, device registers). Output is TAP.
 *
 *   runner [-b kvm|emu] [test-name...]
 *
 * Without a usable /dev/kvm the KVM rows are skipped, or fail when
 * TARN_REQUIRE_KVM=1. A test marked to fail on one kind of KVM (.xfail,
 * with the evidence that the defect lies there) reports TAP's
 * "not ok ... # TODO" on that KVM only.
 *
 * tarn's log lines (core/log.c writes them to stderr) are captured per test,
 * for checks on what a user would read, and echoed as TAP comments. Its
 * rate limiter runs on a clock of the runner's, which each test starts in a
 * new window and some tests move, so the limit is checked exactly.
 *
 * Timers are checked against the host's clock (check_took).
 *
 * Built with RUNNER_SAN_ONLY (runner-san, tarn under ASan + UBSan, see
 * guests.mk) it runs by default only the tests marked .sanitized: a
 * sanitizer report aborts it, which tests/run.sh counts as a failure.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/vm.h"
#include "hw/lapic.h"
#include "hw/pit.h"
#include "hw/uart8250.h"
#include "pci/pci.h"
#include "snapshot/vcpu_state.h"
#include "virtio/virtio_pci.h"
#include "virtio/virtqueue.h"
#include "lib/guest.h"
#include "lib/state.h"
#include "lib/virtio.h"

#define STATUS_ABORTED 1000 /* the guest failed an assertion */
#define STATUS_TIMEOUT 1001
#define TEST_TIMEOUT_S 30

struct ctx {
	struct vm *vm;
	const struct gtest *t;
	pthread_mutex_t lock;
	char failure[512]; /* first failure wins */
	int syncs;
	int dones;
	uint64_t sync_args[VM_MAX_CPUS][4];
	uint64_t sync_ns[VM_MAX_CPUS]; /* when each SYNC came (CLOCK_MONOTONIC) */
	time_t start;		       /* wall-clock time before the guest ran */
	int console_rd; /* read end of the guest's console */
	/* port-I/O test device state */
	uint32_t io_reg;
	char io_string[64];
	unsigned io_string_len, io_in_pos;
	uint8_t mmio_mem[8];
	/* PCI test device */
	struct pci_device *pci_dev;
	uint32_t pci_reg;
	int pci_msix_ret;
	/* tarn's log during the test (under lock) */
	char log[16384];
	size_t log_len;
	size_t log_seen; /* bytes of it the test has looked at */
	int warnings;	 /* virtio warnings counted so far */
	unsigned dropped; /* warnings the log's rate limiter dropped so far */
	char disk[64];	 /* a scratch disk image, removed after the test */
};

struct gtest {
	const char *name;
	int cpus;
	uint64_t mem;
	const char *cmdline;
	int expect_status;
	int expect_syncs;	     /* ucall SYNCs expected in all */
	const char *emu_needs;	     /* non-NULL: not yet runnable on emu, and why */
	int (*setup)(struct ctx *c); /* after vm_create, before vm_run */
	void (*on_sync)(struct ctx *c, const struct ucall *uc);
	void (*check)(struct ctx *c);
	int (*configure)(struct ctx *c, struct vm_config *cfg); /* before vm_create */
	bool sanitized; /* also run by runner-san */
	/* Known to fail on one kind of KVM through that KVM's defect, never
	 * tarn's: reported as TAP "not ok ... # TODO" (an expected failure,
	 * counted apart by tests/run.sh); a pass there is a failure, so the
	 * mark goes once the KVM is fixed. why holds the evidence. */
	struct xfail {
		bool on;
		enum kvm_flavour flavour;
		const char *sign; /* in the failure or tarn's log: it failed that way */
		const char *why;
	} xfail[2];
};

static void fail(struct ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct ctx *c, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&c->lock);
	if (!c->failure[0]) {
		va_start(ap, fmt);
		vsnprintf(c->failure, sizeof(c->failure), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&c->lock);
}

/* In test callbacks, c is the context. */
#define CHECK(cond)                                                        \
	do {                                                                  \
		if (!(cond))                                                  \
			fail(c, "%s:%d: host check failed: %s", __FILE__, __LINE__, #cond); \
	} while (0)
#define CHECK_EQ(a, b)                                                     \
	do {                                                                  \
		unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b); \
		if (a_ != b_)                                                 \
			fail(c, "%s:%d: host check failed: %s == %s (%#llx vs %#llx)", __FILE__, \
			     __LINE__, #a, #b, a_, b_);                       \
	} while (0)

/* ---- tarn's log (see run_one) ---- */

/* The rate limiter's clock (log_set_ratelimit_clock): it stands still
 * unless a test moves it, and each test starts a new window, so every
 * window holds exactly the warnings the test made in it. It starts far
 * from 0, where a limiter's state says its last window began, as
 * CLOCK_MONOTONIC does on any host that has been up a while. */
static _Atomic uint64_t log_clock_ns = 1000 * LOG_RATELIMIT_WINDOW_NS;

static uint64_t log_clock(void)
{
	return atomic_load(&log_clock_ns);
}

static void log_clock_advance(uint64_t ns)
{
	atomic_fetch_add(&log_clock_ns, ns);
}

/* The next complete line of tarn's log that mentions what and that the
 * test has not looked at, into line; false when there is none. Caller
 * holds c->lock. */
static bool next_log_line(struct ctx *c, const char *what, char *line, size_t len)
{
	for (;;) {
		const char *start = c->log + c->log_seen, *nl = memchr(start, '\n', c->log_len - c->log_seen);

		if (!nl)
			return false;
		snprintf(line, len, "%.*s", (int)(nl - start), start);
		c->log_seen += (size_t)(nl - start) + 1;
		if (strstr(line, what))
			return true;
	}
}

#define LOG_LINE 256
#define MAX_LINES 16

/* The lines of tarn's log that mention what and that the test has not
 * looked at: the first MAX_LINES into lines; returns how many there were. */
static int new_log_lines(struct ctx *c, const char *what, char (*lines)[LOG_LINE])
{
	char line[LOG_LINE];
	int n = 0;

	pthread_mutex_lock(&c->lock);
	while (next_log_line(c, what, line, sizeof(line))) {
		if (n < MAX_LINES)
			memcpy(lines[n], line, sizeof(line));
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

/* The line tarn prints, in the first call of a window, for the warnings
 * the rate limiter dropped in the last one (core/log.c). */
static void suppressed_line(char *buf, size_t len, unsigned n)
{
	snprintf(buf, len, "tarn: warning: %u similar messages suppressed", n);
}

/* ---- the ucall port: guest memory is read through the checked API ---- */

static void ucall_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	memset(data, 0xff, len);
}

static void ucall_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct ctx *c = opaque;
	struct ucall uc;
	uint32_t gpa = 0;

	if (len != 4) {
		fail(c, "ucall with a %u-byte write", len);
		return;
	}
	memcpy(&gpa, data, 4);
	if (gm_read(&c->vm->mem, gpa, &uc, sizeof(uc))) {
		fail(c, "ucall struct at %#x is outside guest RAM", gpa);
		vm_request_stop(c->vm, STATUS_ABORTED);
		return;
	}
	uc.file[sizeof(uc.file) - 1] = uc.msg[sizeof(uc.msg) - 1] = '\0';
	switch (uc.cmd) {
	case UCALL_SYNC:
		pthread_mutex_lock(&c->lock);
		if (c->syncs < VM_MAX_CPUS) {
			memcpy(c->sync_args[c->syncs], uc.args, sizeof(uc.args));
			c->sync_ns[c->syncs] = monotonic_ns();
		}
		c->syncs++;
		pthread_mutex_unlock(&c->lock);
		if (c->t->on_sync)
			c->t->on_sync(c, &uc);
		break;
	case UCALL_DONE:
		pthread_mutex_lock(&c->lock);
		c->dones++;
		pthread_mutex_unlock(&c->lock);
		if (c->dones == c->vm->nr_vcpus)
			vm_request_stop(c->vm, 0);
		break;
	case UCALL_ABORT:
		fail(c, "guest assertion failed at %s:%u: %s (%#llx, %#llx)", uc.file, uc.line,
		     uc.msg, (unsigned long long)uc.args[0], (unsigned long long)uc.args[1]);
		vm_request_stop(c->vm, STATUS_ABORTED);
		break;
	case UCALL_PRINT:
		printf("# guest: %s\n", uc.msg);
		break;
	default:
		fail(c, "unknown ucall %u", uc.cmd);
		vm_request_stop(c->vm, STATUS_ABORTED);
	}
}

static const struct bus_ops ucall_ops = { .read = ucall_read, .write = ucall_write };

/* ---- devices some tests register ---- */

static void io_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct ctx *c = opaque;
	uint32_t v;

	if (off < 4) {
		v = (c->io_reg ^ 0xa5a5a5a5u) >> (8 * off);
		memcpy(data, &v, len);
	} else {
		*(uint8_t *)data = (uint8_t)('a' + c->io_in_pos++);
	}
}

static void io_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct ctx *c = opaque;

	if (off < 4) {
		c->io_reg = 0;
		memcpy(&c->io_reg, data, len);
	} else if (c->io_string_len < sizeof(c->io_string) - 1) {
		c->io_string[c->io_string_len++] = *(const char *)data;
	}
}

static const struct bus_ops io_ops = { .read = io_read, .write = io_write };

static int setup_port_io(struct ctx *c)
{
	return bus_register(&c->vm->pio, 0x510, 5, &io_ops, c, "test-io");
}

static void check_port_io(struct ctx *c)
{
	CHECK(!strcmp(c->io_string, "tarn-io"));
	CHECK_EQ(c->io_in_pos, 4);
}

static void mmio_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct ctx *c = opaque;

	memcpy(data, c->mmio_mem + off, len);
}

static void mmio_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct ctx *c = opaque;

	memcpy(c->mmio_mem + off, data, len);
}

static const struct bus_ops mmio_ops = { .read = mmio_read, .write = mmio_write };

static int setup_mmio(struct ctx *c)
{
	return bus_register(&c->vm->mmio, 0xd0000000ULL, 8, &mmio_ops, c, "test-mmio");
}

static void sync_mmio(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], 0x1122cdef5566ab88ULL);
}

/* g_mmio_unmapped: tarn names each access in a warning, at most
 * LOG_RATELIMIT_BURST in a window of its rate limiter, whose clock the
 * steps move, and counts those it dropped at the start of the next window.
 * args = step, address, accesses since the last SYNC. */
static void sync_mmio_unmapped(struct ctx *c, const struct ucall *uc)
{
	char lines[MAX_LINES][LOG_LINE], want[LOG_LINE];
	uint64_t step = uc->args[0], addr = uc->args[1], accesses = uc->args[2];
	/* Step 1 may find the count another test's accesses left behind. */
	int n = new_log_lines(c, step == 1 ? "unmapped MMIO" : "", lines), i;

	CHECK_EQ(step, c->syncs);
	switch (step) {
	case 1: /* the burst's lines, in the order of the writes */
		CHECK(accesses > LOG_RATELIMIT_BURST);
		CHECK_EQ(n, LOG_RATELIMIT_BURST);
		for (i = 0; i < n && i < MAX_LINES; i++) {
			snprintf(want, sizeof(want),
				 "tarn: warning: vCPU 0: 4-byte write to unmapped MMIO at %#llx (dropped)",
				 (unsigned long long)(addr + 4 * (uint64_t)i));
			if (strcmp(lines[i], want))
				fail(c, "unmapped MMIO: tarn logged \"%s\", expected \"%s\"", lines[i], want);
		}
		c->dropped = (unsigned)(accesses - LOG_RATELIMIT_BURST);
		log_clock_advance(LOG_RATELIMIT_WINDOW_NS - 1);
		break;
	case 2: /* 1 ns before the window ends: still dropped */
		CHECK_EQ(n, 0);
		c->dropped += (unsigned)accesses;
		log_clock_advance(1);
		break;
	case 3: /* a new window: the count, then this access */
		CHECK_EQ(n, 2);
		suppressed_line(want, sizeof(want), c->dropped);
		if (n >= 1 && strcmp(lines[0], want))
			fail(c, "unmapped MMIO: tarn logged \"%s\", expected \"%s\"", lines[0], want);
		snprintf(want, sizeof(want),
			 "tarn: warning: vCPU 0: 2-byte read from unmapped MMIO at %#llx (reads all-ones)",
			 (unsigned long long)addr);
		if (n >= 2 && strcmp(lines[1], want))
			fail(c, "unmapped MMIO: tarn logged \"%s\", expected \"%s\"", lines[1], want);
		break;
	}
}

static char *read_console(struct ctx *c, char *buf, size_t len)
{
	ssize_t n = read(c->console_rd, buf, len - 1);

	buf[n > 0 ? n : 0] = '\0';
	return buf;
}

static void check_uart_out(struct ctx *c)
{
	char buf[256];

	read_console(c, buf, sizeof(buf));
	if (strcmp(buf, "hello from the micro-guest\n"))
		fail(c, "console read back \"%s\"", buf);
}

static int setup_uart_in(struct ctx *c)
{
	static const uint8_t in[] = { 1, 2, 3, 4, 200 };

	return uart8250_receive(c->vm->uart, in, sizeof(in)) == sizeof(in) ? 0 : -ENOSPC;
}

static void sync_uart_in(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], 210);
	CHECK_EQ(uc->args[1], 5);
}

/* ---- timers against the host's clock ----
 * A timer guest sets a timer going right after one SYNC and reports at the
 * next one what it asked to be timed. The host's time between the two SYNCs
 * must be at least that, as no timer fires early (so one that fires at once
 * fails), and not absurdly more: TIMED_LATE times it plus TIMED_SLACK_NS,
 * for slow and nested hosts. */
#define TIMED_MIN_NS 5000000ULL /* less, and a timer firing at once could pass */
#define TIMED_LATE 20
#define TIMED_SLACK_NS 1000000000ULL

/* ns for n cycles of a hz clock, rounded down: never more than asked. */
static uint64_t cycles_ns(uint64_t n, uint64_t hz)
{
	return (uint64_t)((unsigned __int128)n * 1000000000ULL / hz);
}

/* The host's time from the SYNC before this one to this one. */
static uint64_t since_last_sync(struct ctx *c)
{
	int i = c->syncs - 1;

	return i > 0 && i < VM_MAX_CPUS ? c->sync_ns[i] - c->sync_ns[i - 1] : 0;
}

/* The guest timed want_ns (at least, when early is false); the host saw took. */
static void check_took(struct ctx *c, const char *what, uint64_t want_ns, bool early)
{
	uint64_t took = since_last_sync(c);

	printf("# %s: %.3f ms of host time for %.3f ms\n", what, took / 1e6, want_ns / 1e6);
	if (want_ns < TIMED_MIN_NS)
		fail(c, "%s: timed only %.3f ms, too short to tell", what, want_ns / 1e6);
	else if (!early && took < want_ns)
		fail(c, "%s: fired after %.3f ms of host time, before its %.3f ms", what, took / 1e6,
		     want_ns / 1e6);
	else if (took > TIMED_LATE * want_ns + TIMED_SLACK_NS)
		fail(c, "%s: took %.3f ms of host time for %.3f ms", what, took / 1e6, want_ns / 1e6);
}

/* g_lapic_timer: even steps report (bus clocks, periods): a one-shot, then
 * periodic ticks. tarn's LAPIC and KVM's run from a 1 GHz APIC bus. */
static void sync_lapic_timer(struct ctx *c, const struct ucall *uc)
{
	uint64_t step = uc->args[0];

	CHECK_EQ(step, c->syncs);
	if (step == 2 || step == 4)
		check_took(c, step == 2 ? "LAPIC one-shot" : "LAPIC periodic",
			   cycles_ns(uc->args[1] * uc->args[2], LAPIC_BUS_HZ), false);
}

/* g_timers_nmi: steps 2 and 4 report (PIT count, ticks) through the IOAPIC,
 * then the PIC: all but one tick are timed, as one may have been latched
 * before the count was written. Step 6 reports the TSC-deadline timer's
 * cycles: the guest saw it not early on its TSC; here it is not absurdly
 * late, at the guest's TSC rate measured over steps 1 to 4 (args[3]). */
static void sync_timers_nmi(struct ctx *c, const struct ucall *uc)
{
	uint64_t step = uc->args[0], tsc_hz;

	CHECK_EQ(step, c->syncs);
	if (step == 2 || step == 4) {
		CHECK(uc->args[2] >= 2);
		check_took(c, step == 2 ? "PIT through the IOAPIC" : "PIT through the PIC",
			   cycles_ns(uc->args[1] * (uc->args[2] - 1), PIT_FREQ_HZ), false);
	} else if (step == 6) {
		tsc_hz = (uint64_t)((unsigned __int128)(c->sync_args[3][3] - c->sync_args[0][3]) * 1000000000ULL /
				    (c->sync_ns[3] - c->sync_ns[0]));
		CHECK(tsc_hz > 0);
		if (tsc_hz)
			check_took(c, "TSC deadline", cycles_ns(uc->args[1], tsc_hz), true);
	}
}

static void check_smp(struct ctx *c)
{
	uint64_t seen = 0;

	for (int i = 0; i < c->syncs && i < VM_MAX_CPUS; i++) {
		CHECK_EQ(c->sync_args[i][1], c->t->cpus);
		if (c->sync_args[i][0] < 64)
			seen |= 1ULL << c->sync_args[i][0];
	}
	CHECK_EQ(seen, (1ULL << c->t->cpus) - 1);
}

/* g_triple_fault reported where its ud2 is (and the host sees one there).
 * The crash left the vCPU's state readable, as the dump needs, with RIP
 * exactly at that ud2, and the dump names it; or, on KVM on AMD, where KVM
 * re-initialises a vCPU that triple-faulted, tarn says that the registers
 * are lost, and they read as after INIT. */
static void check_crash(struct ctx *c)
{
	uint64_t ud2_at = c->sync_args[0][0];
	uint8_t insn[2] = { 0 };
	struct x86_state s;
	char rip[64];
	bool lost, said, named;

	CHECK(gm_read(&c->vm->mem, ud2_at, insn, 2) == 0 && insn[0] == 0x0f && insn[1] == 0x0b);
	CHECK(c->vm->cpu->get_state(&c->vm->vcpus[0], &s) == 0);
	snprintf(rip, sizeof(rip), "\n  rip %016llx ", (unsigned long long)ud2_at);
	pthread_mutex_lock(&c->lock); /* not across CHECK: fail() takes it */
	lost = strstr(c->log, "triple fault: the guest crashed (its registers are lost: KVM on AMD") != NULL;
	said = lost || strstr(c->log, "triple fault: the guest crashed\n");
	named = strstr(c->log, rip) != NULL;
	pthread_mutex_unlock(&c->lock);
	CHECK(said);
	if (lost) {
		CHECK(c->vm->cpu == &kvm_cpu_ops);
		CHECK_EQ(s.rip, 0xfff0);
		CHECK_EQ(s.cs.sel, 0xf000);
	} else {
		CHECK_EQ(s.rip, ud2_at);
		CHECK(named);
	}
}

/* The MSR policy (arch/x86/cpuid.h): an MSR outside the model gets #GP
 * (the guest checked) and a warning naming it; a PMU counter gets #GP
 * quietly, as the default guest's perf probes one at every boot. */
static void check_exceptions(struct ctx *c)
{
	bool named, pmu;

	pthread_mutex_lock(&c->lock); /* not across CHECK: fail() takes it */
	named = strstr(c->log, "rdmsr 0x4b564dff") && strstr(c->log, "wrmsr 0x4b564dff");
	pmu = strstr(c->log, "c0010007") != NULL;
	pthread_mutex_unlock(&c->lock);
	CHECK(named);
	CHECK(!pmu);
}

static void sync_acpi(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], c->t->cpus); /* enabled LAPICs in the MADT */
	CHECK_EQ(uc->args[1], 1);	    /* one IOAPIC */
	CHECK_EQ(uc->args[2], 5);	    /* \_S5 SLP_TYP */
	CHECK_EQ(uc->args[3], 0x604);	    /* PM1a_CNT */
}

static void sync_boot_params(struct ctx *c, const struct ucall *uc)
{
	uint64_t mem = c->t->mem;

	/* All RAM but the EBDA, VGA/BIOS hole below 1 MiB. */
	CHECK_EQ(uc->args[0], mem - (0x100000 - 0x9fc00));
	CHECK_EQ(uc->args[1], mem > GM_HOLE_START ? mem - GM_HOLE_START : 0);
}

static void check_highmem(struct ctx *c)
{
	uint64_t v;

	CHECK(gm_read(&c->vm->mem, 0xbff00000ULL, &v, 8) == 0 && v == 0x10f0f0f0f0f0f0f0ULL);
	CHECK(gm_read(&c->vm->mem, 0x100000000ULL, &v, 8) == 0 && v == 0x4444444444444444ULL);
	CHECK(gm_read(&c->vm->mem, 0x13ff00000ULL, &v, 8) == 0 && v == 0x5555555555555555ULL);
	/* The hole is not RAM. */
	CHECK(gm_ptr(&c->vm->mem, 0xc0000000ULL, 1) == NULL);
}

static void sync_highmem(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], 0x5555555555555555ULL);
}

/* The guest's reading of the RTC (date as yyyymmdd, seconds of the day,
 * UTC) lies between the test's start and now: the second it was read. */
static void sync_rtc(struct ctx *c, const struct ucall *uc)
{
	uint64_t date = uc->args[0], secs = uc->args[1];
	struct tm tm = {
		.tm_year = (int)(date / 10000) - 1900, .tm_mon = (int)(date / 100 % 100) - 1,
		.tm_mday = (int)(date % 100), .tm_hour = (int)(secs / 3600),
		.tm_min = (int)(secs / 60 % 60), .tm_sec = (int)(secs % 60),
	};
	time_t guest = timegm(&tm), now = time(NULL);

	if (guest < c->start || guest > now)
		fail(c, "the RTC read %llu %02llu:%02llu:%02llu UTC, not between the test's start and now "
		     "(%lld..%lld, read %lld)", (unsigned long long)date, (unsigned long long)secs / 3600,
		     (unsigned long long)secs / 60 % 60, (unsigned long long)secs % 60, (long long)c->start,
		     (long long)now, (long long)guest);
}

static void check_guest_assert(struct ctx *c)
{
	/* The failure must name the guest's file and line; it is expected. */
	if (strstr(c->failure, "g_guest_assert.c:9: two + two == 5 (0x4, 0x5)"))
		c->failure[0] = '\0';
	else if (!c->failure[0])
		fail(c, "a failing GUEST_ASSERT was not reported");
}

/* g_modeswitch: every mode reports in order; args = n, CS, EFER, CR0 (real
 * mode: n, CS, what segment arithmetic read, what the IVT handler wrote). */
static void sync_modeswitch(struct ctx *c, const struct ucall *uc)
{
	static const uint16_t cs[9] = { 0, 0x10, 0x18, 0x18, 0x20, 0x3000, 0x18, 0x08, 0x10 };
	const uint64_t lm = 0x500, pe = 1, pg = 0x80000000ULL; /* EFER.LME|LMA, CR0 */
	uint64_t n = uc->args[0];

	CHECK_EQ(n, c->syncs);
	if (n < 1 || n > 8)
		return;
	CHECK_EQ(uc->args[1], cs[n]);
	switch (n) {
	case 1: case 2: case 7: case 8:
		CHECK_EQ(uc->args[2] & lm, lm);
		CHECK_EQ(uc->args[3] & (pe | pg), pe | pg);
		break;
	case 3: case 6:
		CHECK_EQ(uc->args[2] & lm, 0);
		CHECK_EQ(uc->args[3] & (pe | pg), pe);
		break;
	case 5:
		CHECK_EQ(uc->args[2], 0xbeef);
		CHECK_EQ(uc->args[3], 0x42);
		break;
	}
}

/* g_state: what the guest loaded, and x87/SSE as FNINIT and reset leave
 * them, read back through get_state (round 1); other values everywhere put
 * with set_state read back the same (round 2). Run after the VM stopped:
 * the vCPU runs no more. */
static int state_msr_slot(uint32_t index)
{
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		if (x86_state_msr_index[i] == index)
			return i;
	return -1;
}

static uint32_t apic_reg(const struct x86_state *st, uint32_t reg)
{
	uint32_t v;

	memcpy(&v, st->lapic + reg, 4);
	return v;
}

static void state_expect(unsigned round, struct x86_state *st)
{
	for (unsigned n = 0; n < 16; n++) {
		uint64_t x[2] = { state_pattern(round, n), state_pattern(round, n + 16) };

		memcpy(st->fxsave + 160 + 16 * n, x, 16);
	}
	for (unsigned i = 0; i < 4; i++)
		st->dr[i] = state_addr(round, i);
	for (unsigned i = 0; i < STATE_NR_MSRS; i++)
		st->msr[state_msr_slot(state_msrs[i].index)] = state_msr_value(round, i);
}

/* Set want on vm's vCPU 0, read it back into back and compare: x87/SSE
 * bit for bit, debug registers, MSRs (the TSC moves on), the LAPIC's
 * registers (its timer counts on). false when set or get failed. */
static bool state_put_back(struct ctx *c, struct vm *vm, const struct x86_state *want, struct x86_state *back)
{
	if (vm->cpu->set_state(&vm->vcpus[0], want) || vm->cpu->get_state(&vm->vcpus[0], back)) {
		fail(c, "%s: set_state or get_state failed", vm->cpu->name);
		return false;
	}
	memcpy(back->fxsave + 28, want->fxsave + 28, 4); /* the MXCSR mask is the backend's */
	if (memcmp(back->fxsave, want->fxsave, sizeof(want->fxsave)))
		fail(c, "%s: the FXSAVE image set is not the one read back", vm->cpu->name);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(back->dr[i], want->dr[i]);
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		if (i != X86_MSR_TSC && back->msr[i] != want->msr[i])
			fail(c, "%s: MSR %#x: set %#llx, read %#llx", vm->cpu->name, x86_state_msr_index[i],
			     (unsigned long long)want->msr[i], (unsigned long long)back->msr[i]);
	for (uint32_t r = LAPIC_TPR; r <= LAPIC_TIMER_DCR; r += 0x10) {
		uint32_t w = apic_reg(want, r), b = apic_reg(back, r);

		if (r == LAPIC_TIMER_CCR) { /* counts on: by less than 0.25 s here */
			if (b > w || w - b > 0x10000000)
				fail(c, "%s: LAPIC timer: current count set %#x, read %#x", vm->cpu->name, w, b);
		} else if ((r == LAPIC_TPR || r == LAPIC_SVR || r == LAPIC_LDR || r == LAPIC_DFR ||
			    (r >= LAPIC_LVT_TIMER && r <= LAPIC_TIMER_ICR) || r == LAPIC_TIMER_DCR) && w != b) {
			fail(c, "%s: LAPIC register %#x: set %#x, read %#x", vm->cpu->name, r, w, b);
		}
	}
	CHECK_EQ(back->rip, want->rip);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(back->gpr[i], want->gpr[i]);
	return true;
}

/* Round 3, where this host runs the other backend too: the state read in
 * round 2 goes through a snapshot's vCPU section into a VM of the other
 * backend, and reads back the same there. */
static void state_other_backend(struct ctx *c, const struct x86_state *st)
{
	const char *other = strcmp(c->vm->cpu->name, "kvm") ? "kvm" : "emu";
	struct vm_config cfg = c->vm->cfg;
	struct x86_state moved, back;
	struct snap_buf b;
	struct vm *vm;
	char why[512];

	if (!cpu_select(other, why, sizeof(why))) {
		printf("# state: not moved to the %s backend: it cannot run here\n", other);
		return;
	}
	cfg.backend = other;
	if (vm_create(&vm, &cfg, why, sizeof(why))) {
		fail(c, "a %s VM for the state: %s", other, why);
		return;
	}
	snap_buf_init(&b);
	snap_put_vcpu(&b, st);
	if (snap_get_vcpu(b.p, b.len, SNAP_VCPU_VERSION, &moved, why, sizeof(why)))
		fail(c, "the vCPU section: %s", why);
	else
		state_put_back(c, vm, &moved, &back);
	snap_buf_free(&b);
	vm_destroy(vm);
}

static void check_state(struct ctx *c)
{
	static const uint8_t one[10] = { 0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0x3f }; /* 1.0 */
	struct vcpu *v = &c->vm->vcpus[0];
	struct x86_state st, want, back;
	uint16_t fcw, fsw;
	uint32_t mxcsr;

	for (unsigned i = 0; i < STATE_NR_MSRS; i++)
		if (state_msr_slot(state_msrs[i].index) < 0)
			fail(c, "MSR %#x is not in x86_state", state_msrs[i].index);
	if (c->failure[0] || c->vm->cpu->get_state(v, &st)) {
		fail(c, "get_state failed");
		return;
	}
	CHECK_EQ(st.parts, X86_STATE_ALL);
	/* What a backend reports passes a restore's checks and survives the
	 * snapshot section unchanged. */
	{
		struct snap_buf b;
		char why[200] = "";

		snap_buf_init(&b);
		snap_put_vcpu(&b, &st);
		if (snap_get_vcpu(b.p, b.len, SNAP_VCPU_VERSION, &back, why, sizeof(why)) ||
		    memcmp(&back, &st, sizeof(st)))
			fail(c, "the vCPU's state does not survive a snapshot section: %s", why);
		snap_buf_free(&b);
	}
	memcpy(&fcw, st.fxsave, 2);
	memcpy(&fsw, st.fxsave + 2, 2);
	memcpy(&mxcsr, st.fxsave + 24, 4);
	CHECK_EQ(fcw, 0x37f); /* as FNINIT leaves them */
	CHECK_EQ(fsw, 0);
	CHECK_EQ(st.fxsave[4], 0);
	CHECK_EQ(mxcsr, STATE_MXCSR);
	for (unsigned n = 0; n < 16; n++)
		if (memcmp(st.fxsave + 160 + 16 * n, (uint8_t[16]){ 0 }, 16))
			fail(c, "XMM%u: not zero from reset", n);
	CHECK_EQ(apic_reg(&st, LAPIC_SVR), STATE_APIC_SVR);
	CHECK_EQ(apic_reg(&st, LAPIC_TPR), STATE_APIC_TPR);
	CHECK_EQ(apic_reg(&st, LAPIC_TIMER_DCR), STATE_APIC_DCR);
	CHECK_EQ(apic_reg(&st, LAPIC_LVT_TIMER), STATE_APIC_LVTT);
	CHECK_EQ(apic_reg(&st, LAPIC_TIMER_ICR), STATE_APIC_TMICT);
	if (!apic_reg(&st, LAPIC_TIMER_CCR) || apic_reg(&st, LAPIC_TIMER_CCR) == STATE_APIC_TMICT)
		fail(c, "LAPIC timer current count %#x: not counting down", apic_reg(&st, LAPIC_TIMER_CCR));
	want = st;
	state_expect(1, &want);
	for (unsigned i = 0; i < 4; i++)
		CHECK_EQ(st.dr[i], want.dr[i]);
	for (int i = 0; i < X86_STATE_NR_MSRS; i++)
		if (st.msr[i] != want.msr[i])
			fail(c, "MSR %#x: read %#llx, the guest wrote %#llx", x86_state_msr_index[i],
			     (unsigned long long)st.msr[i], (unsigned long long)want.msr[i]);

	/* Round 2: the host's values; two values pushed on the x87 stack
	 * (TOP 6, physical registers 6 and 7 in use: ST0 = 1.0, ST1 = 0.0),
	 * MXCSR's flags set. */
	want = st;
	state_expect(2, &want);
	fsw = 6 << 11;
	memcpy(want.fxsave + 2, &fsw, 2);
	want.fxsave[4] = 0xc0;
	memcpy(want.fxsave + 32, one, 10);
	memset(want.fxsave + 48, 0, 10);
	/* LAPIC: other values in every register a guest sets up; the timer
	 * periodic (still masked), 2^30 of 2^31 ticks left at full speed. */
	{
		static const uint32_t regs[][2] = {
			{ LAPIC_TPR, 0x30 },	       { LAPIC_SVR, 0x1fe },
			{ LAPIC_LDR, 0x01000000 },     { LAPIC_DFR, 0xffffffff },
			{ LAPIC_LVT_LINT0, 0x700 },    { LAPIC_LVT_LINT1, 0x400 },
			{ LAPIC_LVT_ERROR, 0x100fe },  { LAPIC_LVT_TIMER, 0x300d0 },
			{ LAPIC_TIMER_DCR, 0xb },      { LAPIC_TIMER_ICR, 0x80000000 },
			{ LAPIC_TIMER_CCR, 0x40000000 },
		};

		for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
			memcpy(want.lapic + regs[i][0], &regs[i][1], 4);
		want.cr8 = 3; /* CR8 is TPR[7:4] */
	}
	mxcsr = STATE_MXCSR | 0x3f;
	memcpy(want.fxsave + 24, &mxcsr, 4);
	if (state_put_back(c, c->vm, &want, &back))
		state_other_backend(c, &back);
}

/* Guests whose SYNCs number themselves 1, 2, 3... from whatever mode. */
static void sync_in_order(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], c->syncs);
}

/* The PCI test device (g_pci.c): BAR0 holds a register at 0 whose value
 * plus one reads back at 4, and a doorbell at 8 that raises MSI-X vector 0. */
static void pci_bar_read(void *opaque, int bar, uint64_t off, void *data, unsigned len)
{
	struct ctx *c = opaque;
	uint32_t v = off == 4 ? c->pci_reg + 1 : 0;

	memcpy(data, &v, len < 4 ? len : 4);
}

static void pci_bar_write(void *opaque, int bar, uint64_t off, const void *data, unsigned len)
{
	struct ctx *c = opaque;

	if (off == 0 && len == 4)
		memcpy(&c->pci_reg, data, 4);
	else if (off == 8)
		c->pci_msix_ret = pci_msix_notify(c->pci_dev, 0);
}

static const struct pci_device_ops pci_test_ops = { .bar_read = pci_bar_read, .bar_write = pci_bar_write };

static int setup_pci(struct ctx *c)
{
	static const struct pci_device_info info = {
		.vendor = 0x7a72, /* test-only IDs */
		.device = 0x0001,
		.class_code = 0xff0000,
		.bars = { [0] = { PCI_BAR_MEM32, 4096, false } },
		.msix_vectors = 2,
		.msix_bar = 1,
	};

	return pci_register_device(c->vm->pci, &pci_test_ops, c, &info, &c->pci_dev);
}

static void sync_pci(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], 1);    /* one MSI-X interrupt taken */
	CHECK_EQ(uc->args[1], 4096); /* BAR0's size as the guest measured it */
}

static void check_pci(struct ctx *c)
{
	CHECK_EQ(c->pci_reg, 0x1234);
	CHECK_EQ(c->pci_msix_ret, 0);
}

/* ---- virtio (lib/virtio.h is the guests' driver) ---- */

/* The virtio micro-guests run with ioeventfds on (vm_config.ioeventfd,
 * off by default): on KVM they check that path; the Linux tests run the
 * default one. */
static int config_rng(struct ctx *c, struct vm_config *cfg)
{
	cfg->nr_rng = 1;
	cfg->ioeventfd = true;
	return 0;
}

/* virtio-rng for the hostile driver, and a virtio-blk disk beside it: a
 * scratch image whose sector 0 holds HOSTILE_DISK_BYTE(0, i). */
static int config_rng_disk(struct ctx *c, struct vm_config *cfg)
{
	uint8_t s[512];
	int fd, ret = 0;

	snprintf(c->disk, sizeof(c->disk), "/tmp/tarn-runner-disk-XXXXXX");
	fd = mkstemp(c->disk);
	if (fd < 0) {
		c->disk[0] = '\0';
		return -errno;
	}
	for (unsigned i = 0; i < sizeof(s); i++)
		s[i] = HOSTILE_DISK_BYTE(0, i);
	if (pwrite(fd, s, sizeof(s), 0) != (ssize_t)sizeof(s) ||
	    ftruncate(fd, HOSTILE_DISK_SECTORS * 512))
		ret = -EIO;
	close(fd);
	cfg->nr_rng = 1;
	cfg->ioeventfd = true;
	cfg->disks[0] = c->disk;
	cfg->nr_disks = 1;
	return ret;
}

#define VIRTIO_ID_RNG 4

/* The PCI slot of the virtio device of type id; -1 if none. */
static int virtio_slot(struct ctx *c, unsigned id)
{
	for (int i = 0; i < PCI_MAX_SLOTS; i++) {
		struct pci_device *d = c->vm->pci->slots[i];
		uint16_t vendor, device;

		if (!d)
			continue;
		memcpy(&vendor, d->cfg + PCI_VENDOR_ID, 2);
		memcpy(&device, d->cfg + PCI_DEVICE_ID, 2);
		if (vendor == VIRTIO_PCI_VENDOR && device == VIRTIO_PCI_DEVICE_BASE + id)
			return i;
	}
	return -1;
}

static void sync_virtio(struct ctx *c, const struct ucall *uc)
{
	CHECK_EQ(uc->args[0], 29); /* requests completed */
	CHECK_EQ(uc->args[2], 1);  /* the one not polled: an MSI-X interrupt */
	CHECK_EQ(uc->args[3], virtio_slot(c, VIRTIO_ID_RNG)); /* where the guest found it */
}

/* On KVM the driver's kicks reach the device through KVM's ioeventfd and
 * its I/O thread, never as vCPU exits, and its MSI-X and INTx interrupts
 * leave through irqfds; on the emulator kicks are MMIO writes handled where
 * the vCPU made them, and interrupts go to the emulated APIC bus. */
static void check_kick_path(struct ctx *c, int slot)
{
	struct pci_device *d;
	struct virtio_dev *vd;

	CHECK(slot >= 0);
	if (slot < 0)
		return;
	d = c->vm->pci->slots[slot];
	vd = d->opaque;
	if (c->vm->cpu == &kvm_cpu_ops) {
		CHECK_EQ(vd->kicks_mmio, 0);
		CHECK(vd->kicks_eventfd > 0);
		CHECK_EQ(d->msix_sent_ioctl, 0);
		CHECK(d->msix_sent_irqfd > 0);
		CHECK(c->vm->intx_sent_irqfd > 0);
	} else {
		CHECK_EQ(vd->kicks_eventfd, 0);
		CHECK(vd->kicks_mmio > 0);
		CHECK_EQ(d->msix_sent_irqfd, 0);
		CHECK_EQ(c->vm->intx_sent_irqfd, 0);
		CHECK(d->msix_sent_ioctl > 0);
	}
}

static void check_virtio(struct ctx *c)
{
	char line[512];
	bool any;

	check_kick_path(c, virtio_slot(c, VIRTIO_ID_RNG));

	pthread_mutex_lock(&c->lock);
	any = next_log_line(c, "virtio", line, sizeof(line));
	pthread_mutex_unlock(&c->lock);
	if (any)
		fail(c, "correct requests made tarn log \"%s\"", line);
}

/* What tarn must report for each hostile case; 0: legal, nothing to report. */
static const int hostile_err[HOSTILE_NR_CASES] = {
	[HOSTILE_LOOP] = VQ_ERR_LOOP,
	[HOSTILE_NEXT] = VQ_ERR_NEXT,
	[HOSTILE_HEAD] = VQ_ERR_HEAD,
	[HOSTILE_AVAIL_IDX] = VQ_ERR_AVAIL_IDX,
	[HOSTILE_BEYOND_RAM] = VQ_ERR_BUF_ADDR,
	[HOSTILE_MMIO] = VQ_ERR_BUF_ADDR,
	[HOSTILE_WRAP] = VQ_ERR_BUF_ADDR,
	[HOSTILE_HUGE_LEN] = VQ_ERR_BUF_ADDR,
	[HOSTILE_NESTED] = VQ_ERR_INDIRECT_NESTED,
	[HOSTILE_INDIRECT_LEN] = VQ_ERR_INDIRECT_LEN,
	[HOSTILE_QUEUE_SIZE3] = VQ_ERR_SIZE,
};

#define VIRTIO_STATUS_LIVE (VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | \
			    VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK)

/* The warning tarn logs when the guest broke queue 0 of the rng. */
static void broken_line(struct ctx *c, char *buf, size_t len, int err)
{
	snprintf(buf, len, "tarn: warning: virtio-rng at 00:%02x.0: queue 0 broken (%s): device needs reset",
		 virtio_slot(c, VIRTIO_ID_RNG), vq_strerror(err));
}

/* The malformed cases, and the warnings of those past the log's burst. */
static unsigned hostile_malformed(void)
{
	unsigned n = 0;

	for (int i = 0; i < HOSTILE_NR_CASES; i++)
		n += hostile_err[i] != 0;
	return n;
}

/* After each case the guest checked NEEDS_RESET itself (args[1] is the
 * device status it saw); here: the malformed cases up to the rate
 * limiter's burst got one warning each naming what was wrong, those past
 * it none, legal ones none. Then (HOSTILE_NR_CASES) the host starts a new
 * window, and the next malformed queue (HOSTILE_AGAIN) is warned about
 * after the count of the warnings that were dropped. */
static void sync_virtio_hostile(struct ctx *c, const struct ucall *uc)
{
	uint64_t n = uc->args[0], status = uc->args[1];
	char lines[MAX_LINES][LOG_LINE], want[LOG_LINE], note[LOG_LINE];
	int nl = new_log_lines(c, n == HOSTILE_AGAIN ? "" : "virtio", lines), err, i = 0;

	CHECK_EQ(n, c->syncs - 1);
	if (n > HOSTILE_AGAIN)
		return;
	if (n == HOSTILE_NR_CASES) {
		CHECK_EQ(status, VIRTIO_STATUS_LIVE);
		CHECK_EQ(nl, 0);
		CHECK(hostile_malformed() > LOG_RATELIMIT_BURST); /* or nothing is past the burst */
		log_clock_advance(LOG_RATELIMIT_WINDOW_NS);
		return;
	}
	err = hostile_err[n == HOSTILE_AGAIN ? HOSTILE_LOOP : n];
	if (status != (err ? VIRTIO_STATUS_LIVE | VIRTIO_STATUS_NEEDS_RESET : VIRTIO_STATUS_LIVE))
		fail(c, "hostile case %llu: device status %#llx", (unsigned long long)n, (unsigned long long)status);
	if (n == HOSTILE_AGAIN) {
		suppressed_line(note, sizeof(note), c->dropped);
		if (nl != 2 || strcmp(lines[0], note))
			fail(c, "hostile case %llu: %d lines logged, the first \"%s\"; expected \"%s\", then the warning",
			     (unsigned long long)n, nl, nl ? lines[0] : "", note);
		i = 1;
		nl--;
	}
	if (err && c->warnings >= LOG_RATELIMIT_BURST && n != HOSTILE_AGAIN) {
		c->dropped++;
		if (nl)
			fail(c, "hostile case %llu: past the log's burst of %d, tarn logged \"%s\"",
			     (unsigned long long)n, LOG_RATELIMIT_BURST, lines[i]);
		return;
	}
	broken_line(c, want, sizeof(want), err);
	if (!err && nl)
		fail(c, "hostile case %llu (legal): tarn logged \"%s\"", (unsigned long long)n, lines[i]);
	else if (err && (nl != 1 || strcmp(lines[i], want)))
		fail(c, "hostile case %llu: %d warnings logged (\"%s\"), expected one: \"%s\"", (unsigned long long)n,
		     nl, nl > 0 ? lines[i] : "", want);
	c->warnings += nl;
}

/* The disk's writes after every case reached the image. */
static void check_virtio_hostile(struct ctx *c)
{
	uint8_t s[512];
	int fd = open(c->disk, O_RDONLY | O_CLOEXEC);

	CHECK_EQ(c->warnings, LOG_RATELIMIT_BURST + 1);
	CHECK(fd >= 0);
	for (unsigned n = 1; fd >= 0 && n <= HOSTILE_NR_CASES + 1; n++) {
		bool same = pread(fd, s, sizeof(s), n * 512) == (ssize_t)sizeof(s);

		for (unsigned i = 0; same && i < sizeof(s); i++)
			same = s[i] == HOSTILE_DISK_BYTE(n, i);
		if (!same)
			fail(c, "sector %u of the disk does not hold what the guest wrote after case %u", n, n - 1);
	}
	if (fd >= 0)
		close(fd);
}

#define MiB (1ULL << 20)
#define GiB (1ULL << 30)

/* PVM (module kvm_pvm) runs a guest natively only in 64-bit mode with a
 * 64-bit CS; everything else, and every software interrupt, goes through
 * KVM's instruction emulator (arch/x86/kvm/pvm/pvm.c in virt-pvm/linux:
 * handle_non_pvm_mode, handle_exit_exception -> kvm_emulate_instruction).
 * That emulator implements INT n and IRET for real mode only (upstream
 * arch/x86/kvm/emulate.c: emulate_int "Protected mode interrupts
 * unimplemented yet", em_iret real mode only), and handle_emulation_failure
 * (x86.c) stops the VM with an emulation-failure exit at CPL 0 but injects
 * #UD at CPL 3. Seen on such a host: kvm/exceptions stops at its int3 with
 * "emulator failed on the instruction cc ...", kvm/protmode at a 32-bit
 * iret ("... cf b8 10 00 ..."), and kvm/usermode's int $0x80 from ring 3
 * arrives as #UD (vector 6) instead of vector 0x80. The same guests pass on
 * the emulator and on KVM with SVM or VT-x. */
/* The nested bed (tests/nested/bed.sh) runs KVM on AMD SVM that QEMU 7.2's
 * software emulator provides, and L2 guest code runs on QEMU's TCG with
 * QEMU's bugs (the same guests pass on the emulator and on other KVMs):
 *  - a reserved-bit #PF has error code 8, not 9: P is lost on the RSVD path
 *    (target/i386/tcg/sysemu/excp_helper.c, mmu_translate, do_fault_rsvd,
 *    since QEMU commit 3563362ddfae in 7.2; L1's KVM does not intercept #PF
 *    with nested paging, svm.c init_vmcb);
 *  - INT n through a gate of too low a DPL in 64-bit mode gives #GP with
 *    error code vector * 16 + 2, not * 8 + 2 (seg_helper.c, do_interrupt64;
 *    fixed in QEMU 8.0 by b585edca34a8);
 *  - no segment-limit checks on data accesses (QEMU's translator adds the
 *    base only, by design, for speed): g_protmode's probes of ES and SS
 *    limits see no fault, and a later probe's handler then resumes into the
 *    wrong segment and loops on #GP until the test times out. */
#define TCG_SVM(sign, why) { true, KVM_NESTED_TCG, sign, why }

#define PVM_NO_PROT_INT(sign) { true, KVM_PVM, sign, \
	"PVM's instruction emulator has no protected-mode INT n/IRET (see runner.c)" }

static const struct gtest tests[] = {
	{ "port_io", 1, 64 * MiB, NULL, 0, 0, NULL, setup_port_io, NULL, check_port_io },
	{ "mmio", 1, 64 * MiB, NULL, 0, 1, NULL, setup_mmio, sync_mmio, NULL },
	{ "mmio_unmapped", 1, 64 * MiB, NULL, 0, 3, NULL, NULL, sync_mmio_unmapped, NULL },
	{ "uart_out", 1, 64 * MiB, NULL, 0, 0, NULL, NULL, NULL, check_uart_out },
	{ "uart_in", 1, 64 * MiB, NULL, 0, 1, NULL, setup_uart_in, sync_uart_in, NULL },
	{ "ioapic_irq", 1, 64 * MiB, NULL, 0, 1, NULL, NULL, NULL, NULL },
	{ "lapic_timer", 1, 64 * MiB, NULL, 0, 4, NULL, NULL, sync_lapic_timer, NULL },
	{ "smp", 4, 64 * MiB, NULL, 0, 4, NULL, NULL, NULL, check_smp },
	{ "triple_fault", 1, 64 * MiB, NULL, VM_EXIT_CRASH, 1, NULL, NULL, NULL, check_crash },
	{ "debug_exit", 1, 64 * MiB, NULL, (0x2a << 1) | 1, 0, NULL, NULL, NULL, NULL },
	{ "reset", 1, 64 * MiB, NULL, VM_EXIT_RESET, 0, NULL, NULL, NULL, NULL },
	{ "acpi", 2, 64 * MiB, NULL, VM_EXIT_POWEROFF, 1, NULL, NULL, sync_acpi, NULL },
	{ "boot_params", 1, 4 * GiB, "tarn.test=boot_params", 0, 1, NULL, NULL, sync_boot_params, NULL },
	{ "highmem", 1, 4 * GiB, NULL, 0, 1, NULL, NULL, sync_highmem, check_highmem },
	{ "cpuid", 2, 64 * MiB, NULL, 0, 2, NULL, NULL, NULL, NULL },
	{ "rtc", 1, 64 * MiB, NULL, 0, 1, NULL, NULL, sync_rtc, NULL },
	{ "guest_assert", 1, 64 * MiB, NULL, STATUS_ABORTED, 0, NULL, NULL, NULL, check_guest_assert },
	{ "exceptions", 1, 64 * MiB, NULL, 0, 1, NULL, NULL, NULL, check_exceptions,
	  .xfail = { PVM_NO_PROT_INT("emulator failed on the instruction cc ") } },
	{ "timers_nmi", 1, 64 * MiB, NULL, 0, 7, NULL, NULL, sync_timers_nmi, NULL },
	{ "sipi", 2, 64 * MiB, NULL, (0x21 << 1) | 1, 0, NULL, NULL, NULL, NULL },
	{ "pagefault", 1, 64 * MiB, NULL, 0, 5, NULL, NULL, NULL, NULL,
	  .xfail = { TCG_SVM("f_err == 1 | 8 (0x8, 0x9)",
			     "QEMU 7.2 TCG drops P from a reserved-bit #PF (see runner.c)") } },
	{ "usermode", 1, 64 * MiB, NULL, 0, 5, NULL, NULL, NULL, NULL,
	  .xfail = { PVM_NO_PROT_INT("seen.vec == 0x80 (0x6, 0x80)"),
		     TCG_SVM("seen.err == 0x81 * 8 + 2 (0x812, 0x40a)",
			     "QEMU 7.2 TCG: INT n #GP error code vector*16+2 in 64-bit mode (see runner.c)") } },
	{ "modeswitch", 1, 64 * MiB, NULL, 0, 8, NULL, NULL, sync_modeswitch, NULL },
	{ "state", 1, 64 * MiB, NULL, 0, 0, NULL, NULL, NULL, check_state },
	{ "protmode", 1, 64 * MiB, NULL, 0, 6, NULL, NULL, sync_in_order, NULL,
	  .xfail = { PVM_NO_PROT_INT("emulator failed on the instruction cf "),
		     TCG_SVM("timed out after 30 s (2 checkpoints",
			     "QEMU 7.2 TCG checks no segment limits (see runner.c)") } },
	{ "pci", 1, 64 * MiB, NULL, 0, 1, NULL, setup_pci, sync_pci, check_pci },
	{ "virtio", 1, 64 * MiB, NULL, 0, 1, NULL, NULL, sync_virtio, check_virtio,
	  .configure = config_rng, .sanitized = true },
	{ "virtio_hostile", 1, 64 * MiB, NULL, 0, HOSTILE_AGAIN + 1, NULL, NULL, sync_virtio_hostile,
	  check_virtio_hostile, .configure = config_rng_disk, .sanitized = true },
};

static char guest_dir[PATH_MAX];

static void *watchdog(void *arg)
{
	struct vm *vm = arg;
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += TEST_TIMEOUT_S;
	pthread_mutex_lock(&vm->lock);
	while (!vm->stopping) {
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT) {
			pthread_mutex_unlock(&vm->lock);
			vm_request_stop(vm, STATUS_TIMEOUT);
			return NULL;
		}
	}
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

/* ---- tarn's log, captured per test: stderr is pointed at a stream that
 * appends to c->log (sanitizers write to fd 2 directly, not through it) ---- */

static ssize_t log_capture_write(void *cookie, const char *buf, size_t len)
{
	struct ctx *c = cookie;
	size_t room;

	pthread_mutex_lock(&c->lock);
	room = sizeof(c->log) - 1 - c->log_len;
	memcpy(c->log + c->log_len, buf, len < room ? len : room);
	c->log_len += len < room ? len : room;
	c->log[c->log_len] = '\0';
	pthread_mutex_unlock(&c->lock);
	return (ssize_t)len;
}

static void echo_log(struct ctx *c)
{
	const char *p = c->log;

	while (*p) {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);

		printf("# %.*s\n", n, p);
		p += n + (nl != NULL);
	}
}

/* Returns 1 pass, 0 fail; message in c->failure. */
static int run_one(const struct gtest *t, const char *backend, struct ctx *c)
{
	char kernel[PATH_MAX + 64], err[512];
	struct vm_config cfg = { 0 };
	int pipefd[2], status;
	pthread_t wd;
	FILE *log_stream, *saved_stderr = stderr;

	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
	c->t = t;
	snprintf(kernel, sizeof(kernel), "%s/g_%s.elf", guest_dir, t->name);
	if (pipe2(pipefd, O_CLOEXEC | O_NONBLOCK)) {
		fail(c, "pipe: %s", strerror(errno));
		return 0;
	}
	log_stream = fopencookie(c, "w", (cookie_io_functions_t){ .write = log_capture_write });
	if (!log_stream) {
		fail(c, "fopencookie: %s", strerror(errno));
		close(pipefd[0]);
		close(pipefd[1]);
		return 0;
	}
	setvbuf(log_stream, NULL, _IOLBF, 0);
	log_clock_advance(LOG_RATELIMIT_WINDOW_NS); /* a new window */
	stderr = log_stream;
	c->console_rd = pipefd[0];
	cfg.kernel = kernel;
	cfg.cmdline = t->cmdline;
	cfg.mem_size = t->mem;
	cfg.nr_cpus = t->cpus;
	cfg.backend = backend;
	cfg.console_in = -1;
	cfg.console_out = pipefd[1];
	cfg.all_cpus_at_entry = true;
	if (t->configure && (status = t->configure(c, &cfg))) {
		fail(c, "test configuration: %s", strerror(-status));
		goto out;
	}
	if (vm_create(&c->vm, &cfg, err, sizeof(err))) {
		fail(c, "vm_create: %s", err);
		goto out;
	}
	if (bus_register(&c->vm->pio, UCALL_PORT, 4, &ucall_ops, c, "ucall") ||
	    (t->setup && t->setup(c))) {
		fail(c, "test set-up failed");
		goto out;
	}
	c->start = time(NULL);
	pthread_create(&wd, NULL, watchdog, c->vm);
	status = vm_run(c->vm);
	pthread_join(wd, NULL);
	if (status == STATUS_TIMEOUT) {
		struct x86_state st;

		if (c->vm->cpu->get_state(&c->vm->vcpus[0], &st) == 0)
			fail(c, "timed out after %d s (%d checkpoints; vCPU 0 at %04x:%llx, cr0 %llx)",
			     TEST_TIMEOUT_S, c->syncs, st.cs.sel, (unsigned long long)st.rip,
			     (unsigned long long)st.cr0);
		else
			fail(c, "timed out after %d s (%d checkpoints)", TEST_TIMEOUT_S, c->syncs);
	}
	if (t->check)
		t->check(c);
	if (status != t->expect_status)
		fail(c, "VM ended with status %d, expected %d", status, t->expect_status);
	if (c->syncs != t->expect_syncs)
		fail(c, "guest reported %d checkpoints, expected %d", c->syncs, t->expect_syncs);
out:
	vm_destroy(c->vm);
	if (c->disk[0])
		unlink(c->disk);
	stderr = saved_stderr;
	fclose(log_stream);
	echo_log(c);
	close(pipefd[0]);
	close(pipefd[1]);
	return !c->failure[0];
}

#define NR_TESTS (sizeof(tests) / sizeof(tests[0]))

/* Named on the command line, or by default all (runner-san: the .sanitized). */
static bool selected(const struct gtest *t, int argc, char **argv)
{
	if (optind >= argc) {
#ifdef RUNNER_SAN_ONLY
		return t->sanitized;
#else
		return true;
#endif
	}
	for (int a = optind; a < argc; a++)
		if (!strcmp(argv[a], t->name))
			return true;
	return false;
}

/* The test's expected failure on this host's kind of KVM, if any. */
static const struct xfail *xfail_here(const struct gtest *t)
{
	enum kvm_flavour f = kvm_flavour();

	for (size_t i = 0; i < sizeof(t->xfail) / sizeof(t->xfail[0]); i++)
		if (t->xfail[i].on && t->xfail[i].flavour == f)
			return &t->xfail[i];
	return NULL;
}

int main(int argc, char **argv)
{
	static const char *const backends[] = { "kvm", "emu" };
	const char *only_backend = NULL;
	char exe[PATH_MAX], why[200];
	ssize_t n;
	int num = 0, failed = 0, opt, planned = 0;
	/* Set where a KVM is expected (the nested bed, CI on KVM hosts): no
	 * KVM there is a failure, not a skip. */
	const char *req = getenv("TARN_REQUIRE_KVM");
	bool require_kvm = req && !strcmp(req, "1");

	while ((opt = getopt(argc, argv, "b:")) != -1) {
		if (opt == 'b')
			only_backend = optarg;
		else
			return 2;
	}
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	if (n < 0)
		return 2;
	exe[n] = '\0';
	snprintf(guest_dir, sizeof(guest_dir), "%s", dirname(exe));
	setvbuf(stdout, NULL, _IOLBF, 0);
	log_set_ratelimit_clock(log_clock);
	for (size_t i = 0; i < NR_TESTS; i++)
		planned += selected(&tests[i], argc, argv);
	/* Without a /dev/kvm at all the KVM half is not ours to run: `make
	 * check` runs it in the nested bed (tests/nested/kvm_suite.sh), which
	 * says SKIP and why where it cannot. Asked for (-b kvm) or required,
	 * it runs here and fails or skips as below. */
	if (!only_backend && !require_kvm && access("/dev/kvm", F_OK)) {
		only_backend = "emu";
		printf("# kvm half not run: no /dev/kvm here (make check runs it in the nested bed: "
		       "tests/nested/kvm_suite.sh)\n");
	}
	printf("1..%d\n", planned * (only_backend ? 1 : 2));
	for (size_t b = 0; b < 2; b++) {
		const char *be = backends[b];
		const struct cpu_ops *ops;

		if (only_backend && strcmp(only_backend, be))
			continue;
		ops = cpu_select(be, why, sizeof(why));
		for (size_t i = 0; i < NR_TESTS; i++) {
			const struct gtest *t = &tests[i];
			struct ctx c;

			if (!selected(t, argc, argv))
				continue;
			num++;
			if (!ops && require_kvm) {
				printf("not ok %d - %s/%s: %s (TARN_REQUIRE_KVM=1)\n", num, be, t->name, why);
				failed++;
				continue;
			}
			if (!ops) {
				printf("ok %d - %s/%s # SKIP %s\n", num, be, t->name, why);
				continue;
			}
			if (ops == &emu_cpu_ops && t->emu_needs) {
				printf("ok %d - %s/%s # SKIP needs %s\n", num, be, t->name, t->emu_needs);
				continue;
			}
			const struct xfail *xf = ops == &kvm_cpu_ops ? xfail_here(t) : NULL;

			if (xf) {
				if (run_one(t, be, &c)) {
					printf("not ok %d - %s/%s: passed on %s KVM, where it is marked to fail: "
					       "remove the mark\n", num, be, t->name, kvm_flavour_name(xf->flavour));
					failed++;
				} else if (!strstr(c.failure, xf->sign) && !strstr(c.log, xf->sign)) {
					printf("not ok %d - %s/%s: %s (expected to fail on %s KVM, but not this way: "
					       "no \"%s\")\n", num, be, t->name, c.failure,
					       kvm_flavour_name(xf->flavour), xf->sign);
					failed++;
				} else {
					printf("not ok %d - %s/%s: %s # TODO %s\n", num, be, t->name, c.failure,
					       xf->why);
				}
				continue;
			}
			if (run_one(t, be, &c)) {
				printf("ok %d - %s/%s\n", num, be, t->name);
			} else {
				printf("not ok %d - %s/%s: %s\n", num, be, t->name, c.failure);
				failed++;
			}
		}
	}
	return failed ? 1 : 0;
}
