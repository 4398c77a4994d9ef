/* Local APIC (xAPIC mode) for the emulator backend, and the APIC "bus" that
 * carries interrupt messages between LAPICs and from the IOAPIC.
 * Register semantics follow the Intel SDM Vol. 3A, chapter 11 ("Advanced
 * Programmable Interrupt Controller"); section numbers below refer to it.
 * KVM keeps its own in-kernel LAPIC; this one is for cpu/emu only.
 *
 * Who calls what:
 *  - the vCPU thread that owns a LAPIC: lapic_mmio_read/write (the emulator
 *    routes that vCPU's accesses to [APIC base, +4 KiB) here, see
 *    lapic_owns_gpa), the interrupt-acceptance calls (lapic_take_nmi,
 *    lapic_ack_extint, lapic_get_interrupt/accept_interrupt), INIT/SIPI
 *    polling, the timer calls and the IA32_APIC_BASE / TSC_DEADLINE helpers;
 *  - any thread: apic_bus_deliver (IOAPIC, other vCPUs' ICR writes),
 *    lapic_set_lint (the PIC's INTR output on LINT0).
 *
 * Suggested order for the CPU at an instruction boundary (SDM 6.9 / 11.8):
 *   if (lapic_take_nmi(l)) -> NMI;
 *   else if (IF && lapic_has_extint(l)) -> vector = lapic_ack_extint(l);
 *   else if (IF && (v = lapic_ack_interrupt(l)) >= 0) -> vector v.
 *
 * Locking: every LAPIC has its own mutex. A LAPIC never calls out (kick, EOI
 * broadcast, ExtINT acknowledge) with its own lock held, and never holds two
 * LAPIC locks at once, so callers may hold their own lock while delivering:
 * the global order is PIT -> PIC -> IOAPIC -> LAPIC. The owner's callbacks
 * (kick in particular) must not take any of these models' locks.
 *
 * Time: the timer runs from the APIC bus clock, LAPIC_BUS_HZ. Calls that
 * depend on time take now_ns (CLOCK_MONOTONIC); MMIO reads of the current
 * count use the bus's clock op, which tests replace. */
#ifndef TARN_LAPIC_H
#define TARN_LAPIC_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#define LAPIC_DEFAULT_BASE 0xfee00000ULL
#define LAPIC_MMIO_SIZE 0x1000
#define LAPIC_VERSION 0x00050014u /* version 0x14, max LVT entry 5 (SDM 11.4.8) */
#define LAPIC_MAX_CPUS 255	  /* xAPIC IDs 0..254; 0xff is broadcast */

/* The timer's input clock before the divider. 1 GHz, as KVM uses: guests
 * calibrate it (against the PIT or CPUID leaf 0x15/0x16), never assume it. */
#define LAPIC_BUS_HZ 1000000000ULL
/* Periodic timers never fire more often than this (a guest writing initial
 * count 1, divide by 1 would otherwise ask for 1 GHz). KVM clamps at 200 us;
 * 100 us still serves HZ=10000. */
#define LAPIC_MIN_PERIOD_NS 100000ULL

/* Register offsets in the 4 KiB page (SDM Table 11-1). */
enum {
	LAPIC_ID = 0x20, LAPIC_LVR = 0x30, LAPIC_TPR = 0x80, LAPIC_APR = 0x90,
	LAPIC_PPR = 0xa0, LAPIC_EOI = 0xb0, LAPIC_RRD = 0xc0, LAPIC_LDR = 0xd0,
	LAPIC_DFR = 0xe0, LAPIC_SVR = 0xf0, LAPIC_ISR = 0x100, LAPIC_TMR = 0x180,
	LAPIC_IRR = 0x200, LAPIC_ESR = 0x280, LAPIC_LVT_CMCI = 0x2f0,
	LAPIC_ICR_LO = 0x300, LAPIC_ICR_HI = 0x310, LAPIC_LVT_TIMER = 0x320,
	LAPIC_LVT_THERMAL = 0x330, LAPIC_LVT_PERF = 0x340, LAPIC_LVT_LINT0 = 0x350,
	LAPIC_LVT_LINT1 = 0x360, LAPIC_LVT_ERROR = 0x370, LAPIC_TIMER_ICR = 0x380,
	LAPIC_TIMER_CCR = 0x390, LAPIC_TIMER_DCR = 0x3e0,
};

/* Delivery modes (ICR, LVT, IOAPIC redirection entries: SDM 11.6.1). */
enum apic_dm {
	APIC_DM_FIXED = 0, APIC_DM_LOWEST = 1, APIC_DM_SMI = 2, APIC_DM_NMI = 4,
	APIC_DM_INIT = 5, APIC_DM_SIPI = 6, APIC_DM_EXTINT = 7,
};

/* Bits used by tests and the owner. */
#define APIC_SVR_ENABLE 0x100
#define APIC_LVT_MASKED 0x10000
#define APIC_LVT_LEVEL 0x8000
#define APIC_TIMER_ONESHOT 0x00000
#define APIC_TIMER_PERIODIC 0x20000
#define APIC_TIMER_TSC_DEADLINE 0x40000
#define APIC_ESR_SEND_ILLEGAL 0x20
#define APIC_ESR_RECV_ILLEGAL 0x40
#define APIC_ESR_ILLEGAL_REG 0x80

/* IA32_APIC_BASE (MSR 0x1b, SDM 11.4.4). */
#define MSR_IA32_APICBASE 0x1b
#define APIC_BASE_BSP (1ULL << 8)
#define APIC_BASE_X2APIC (1ULL << 10)
#define APIC_BASE_ENABLE (1ULL << 11)
#define APIC_BASE_ADDR_MASK 0x000ffffffffff000ULL

/* One interrupt message on the APIC bus. */
struct apic_msg {
	uint8_t vector;
	uint8_t dm;	     /* enum apic_dm */
	bool logical;	     /* destination mode: logical (LDR/DFR) or physical (ID) */
	bool level;	     /* trigger mode: level (sets TMR; EOI is broadcast) */
	bool assert;	     /* INIT with assert=0 is "INIT level de-assert": ignored */
	uint8_t shorthand;   /* 0 none, 1 self, 2 all incl. self, 3 all excl. self */
	uint8_t dest;	     /* ID (physical) or MDA (logical); 0xff broadcast */
	int src_cpu;	     /* sender for shorthands; -1 for the IOAPIC */
};

/* What the owner provides. kick is required; the others may be NULL. */
struct apic_bus_ops {
	/* An interrupt (or NMI, INIT, SIPI, ExtINT) became pending for cpu:
	 * wake it if halted, make it look at its LAPIC if running. Called with
	 * no LAPIC lock held, possibly with the IOAPIC's or PIC's lock held. */
	void (*kick)(void *opaque, int cpu);
	/* A level-triggered vector got its EOI (SDM 11.8.5): forward to
	 * ioapic_eoi(). Called from the EOIing vCPU with no LAPIC lock held. */
	void (*eoi)(void *opaque, int vector);
	/* Acknowledge an ExtINT at the PIC and return its vector (pic_ack()). */
	int (*extint_ack)(void *opaque);
	/* CLOCK_MONOTONIC in ns, for MMIO reads of the timer's current count. */
	uint64_t (*now_ns)(void *opaque);
};

struct lapic;

/* All LAPICs of a VM. Filled at set-up (lapic_init), read-only afterwards,
 * so delivery walks it without a lock. */
struct apic_bus {
	const struct apic_bus_ops *ops;
	void *opaque;
	struct lapic *cpus[LAPIC_MAX_CPUS]; /* by vCPU index, not APIC ID */
	int nr_cpus;
};

enum lapic_init_state { LAPIC_RUNNING, LAPIC_WAIT_FOR_SIPI };

/* Private to lapic.c; exposed so the owner can embed it. */
struct lapic {
	pthread_mutex_t lock;
	struct apic_bus *bus;
	int cpu;			/* vCPU index on the bus */
	_Atomic uint64_t apic_base;	/* IA32_APIC_BASE; read lock-free by lapic_owns_gpa */

	uint32_t id, tpr, ldr, dfr, svr, esr, esr_pending, icr_lo, icr_hi;
	uint32_t lvt[6];		/* timer, thermal, perf, LINT0, LINT1, error */
	uint32_t irr[8], isr[8], tmr[8]; /* 256-bit vectors, bit v = vector v */

	/* Timer (SDM 11.5.4). */
	uint32_t timer_icr, timer_dcr;
	uint64_t timer_start_ns;	/* when the current count was last loaded */
	uint64_t timer_deadline_ns;	/* next expiry, UINT64_MAX when idle */
	uint64_t tsc_deadline;		/* IA32_TSC_DEADLINE as the guest wrote it */
	uint64_t tsc_hz, tsc_ref, tsc_ref_ns; /* guest TSC = tsc_ref + (ns - tsc_ref_ns) * tsc_hz / 1e9 */

	/* Pins and pending events for the CPU. */
	bool lint_level[2];
	bool extint_pending;		/* ExtINT message from the IOAPIC */
	bool nmi_pending;
	bool init_pending;
	int sipi_vector;		/* -1 when none */
	enum lapic_init_state init_state;
};

/* Plain state for snapshots (docs/DESIGN "Snapshots from the start"). Times
 * are relative to the save moment so a restore on another host works. */
struct lapic_state {
	uint64_t apic_base;
	uint32_t id, tpr, ldr, dfr, svr, esr, esr_pending, icr_lo, icr_hi;
	uint32_t lvt[6];
	uint32_t irr[8], isr[8], tmr[8];
	uint32_t timer_icr, timer_dcr, pad0;
	uint64_t timer_elapsed_ns;	/* since the count was loaded */
	uint64_t timer_remaining_ns;	/* until the next expiry; UINT64_MAX idle */
	uint64_t tsc_deadline;
	uint8_t lint_level[2];
	uint8_t extint_pending, nmi_pending, init_pending, init_state;
	int16_t sipi_vector;
	uint16_t pad1[4];
};
_Static_assert(sizeof(struct lapic_state) == 216, "lapic_state is a snapshot format");

/* The bus: ops->kick is required. 0 or -EINVAL. */
int apic_bus_init(struct apic_bus *b, const struct apic_bus_ops *ops, void *opaque)
	__attribute__((warn_unused_result));

/* Deliver one message (IOAPIC redirection, IPI). Fixed/lowest-priority
 * messages with vectors below 16 are dropped (the sender reports its error).
 * Lowest priority goes to the lowest APIC ID of the destination set. */
void apic_bus_deliver(struct apic_bus *b, const struct apic_msg *m);

/* Reset l to the power-on state (SDM 11.4.7.1) and add it to the bus as
 * vCPU cpu (cpu == b->nr_cpus: vCPUs are added in order). The BSP starts
 * RUNNING with LINT0 = ExtINT and LINT1 = NMI, unmasked (the "virtual
 * wire" state a BIOS leaves, which tarn's direct kernel boot relies on);
 * APs start in WAIT_FOR_SIPI. 0, -EINVAL, -ENOSPC. */
int lapic_init(struct lapic *l, struct apic_bus *b, int cpu, uint8_t apic_id, bool bsp)
	__attribute__((warn_unused_result));
/* Leaves an empty slot on the bus (deliveries skip it). Only while nothing
 * delivers: at VM tear-down. */
void lapic_destroy(struct lapic *l);

/* xAPIC register page, for the owning vCPU. off is within the 4 KiB page.
 * Reads of 1..4 bytes inside one 32-bit register, 4-byte aligned writes;
 * other accesses read zeros / are dropped (SDM 11.4.1). */
void lapic_mmio_read(struct lapic *l, uint32_t off, void *data, unsigned len);
void lapic_mmio_write(struct lapic *l, uint32_t off, const void *data, unsigned len);
/* Whether gpa falls in this LAPIC's enabled register page. Lock-free. */
bool lapic_owns_gpa(struct lapic *l, uint64_t gpa);

/* IA32_APIC_BASE. set returns -EINVAL for values the CPU must refuse with
 * #GP: reserved bits, x2APIC enable (not advertised), address bits above
 * bit 51 (the CPU checks its own MAXPHYADDR first). Clearing the enable bit
 * disables the LAPIC (SDM 11.4.3); it comes back in its power-on state. */
uint64_t lapic_get_apic_base(struct lapic *l);
int lapic_set_apic_base(struct lapic *l, uint64_t value) __attribute__((warn_unused_result));

/* Interrupt acceptance (SDM 11.8.3-11.8.4). get returns the highest IRR
 * vector whose priority class beats the PPR, or -1; accept moves it from
 * IRR to ISR (ignored unless it is in IRR). ack does both under one lock. */
int lapic_get_interrupt(struct lapic *l);
void lapic_accept_interrupt(struct lapic *l, int vector);
int lapic_ack_interrupt(struct lapic *l);
/* Raise vector in IRR as an edge-triggered fixed interrupt that did not
 * come over the APIC bus (cpu/emu's emu_inject_interrupt, tests). Unlike a
 * bus message it is taken while the APIC is software-disabled; IRR contents
 * are dispatched in that state anyway (SDM 11.4.7.2). Ignored for vectors
 * below 16 and while hardware-disabled. */
void lapic_set_irr(struct lapic *l, uint8_t vector);
bool lapic_has_nmi(struct lapic *l);
bool lapic_take_nmi(struct lapic *l);
/* Snapshots: an NMI waiting (or not) to be taken. */
void lapic_set_nmi_pending(struct lapic *l, bool pending);
/* Snapshots from another backend: an interrupt that was accepted (in ISR)
 * but not yet delivered goes back to IRR, to be taken again. 0, or -ENOENT
 * when vector is not in service. */
int lapic_unaccept_interrupt(struct lapic *l, uint8_t vector) __attribute__((warn_unused_result));
/* ExtINT: LINT0 programmed as ExtINT (or the LAPIC hardware-disabled,
 * which passes INTR through) with the PIC's output high, or an ExtINT
 * message from the IOAPIC. ack calls ops->extint_ack (pic_ack) with no lock
 * held and returns the vector, or -1 when nothing is pending. */
bool lapic_has_extint(struct lapic *l);
int lapic_ack_extint(struct lapic *l);

/* A local interrupt pin changed (pin 0 = LINT0, 1 = LINT1), e.g. the PIC's
 * INTR output. Acts per the pin's LVT: ExtINT, NMI or fixed (SDM 11.5.1). */
void lapic_set_lint(struct lapic *l, int pin, int level);

/* INIT/SIPI for the CPU (SDM 8.4.4, 11.6.1). take_init returns true once per
 * received INIT: the CPU resets itself; the LAPIC has already reset its
 * registers (keeping its ID) and is now in WAIT_FOR_SIPI. take_sipi returns
 * the vector of a SIPI received in WAIT_FOR_SIPI (the CPU starts at
 * vector << 12) and moves to RUNNING, or -1. */
bool lapic_take_init(struct lapic *l);
int lapic_take_sipi(struct lapic *l);
enum lapic_init_state lapic_get_init_state(struct lapic *l);
void lapic_set_init_state(struct lapic *l, enum lapic_init_state s);

/* Timer. update fires an expired timer (sets IRR of the LVT vector unless
 * masked) and re-arms a periodic one; missed periods are coalesced into one
 * interrupt, so the work per call is O(1) however late it comes.
 * next_deadline is when update next has something to do, or UINT64_MAX. */
void lapic_timer_update(struct lapic *l, uint64_t now_ns);
uint64_t lapic_next_deadline_ns(struct lapic *l);

/* TSC-deadline mode (SDM 11.5.4.1). The owner says how the guest TSC maps
 * to CLOCK_MONOTONIC: tsc(ns) = tsc_at_ref + (ns - ref_ns) * tsc_hz / 1e9,
 * and calls it again whenever the guest writes IA32_TSC. set_tsc_deadline
 * is the guest's WRMSR IA32_TSC_DEADLINE (ignored outside TSC-deadline
 * mode; 0 disarms); get returns what RDMSR sees (0 once it fired). */
void lapic_set_tsc_clock(struct lapic *l, uint64_t tsc_hz, uint64_t ref_ns, uint64_t tsc_at_ref);
void lapic_set_tsc_deadline(struct lapic *l, uint64_t tsc, uint64_t now_ns);
uint64_t lapic_get_tsc_deadline(struct lapic *l);

/* Snapshots. restore validates everything (reserved bits, vectors below 16
 * in IRR/ISR, enum ranges) and returns -EINVAL without touching l. */
/* The LAPIC as the 1 KiB register page KVM_GET_LAPIC and KVM_SET_LAPIC use
 * (xAPIC; timer as its initial and current counts), the form x86_state
 * carries across backends. Set keeps what the page does not hold (LINT
 * levels, pending NMI/INIT/SIPI, IA32_TSC_DEADLINE) and refuses (-EINVAL)
 * what lapic_restore would. */
#define LAPIC_PAGE_SIZE 1024
void lapic_page_get(struct lapic *l, uint8_t page[LAPIC_PAGE_SIZE], uint64_t now_ns);
int lapic_page_set(struct lapic *l, const uint8_t page[LAPIC_PAGE_SIZE], uint64_t now_ns)
	__attribute__((warn_unused_result));

void lapic_save(struct lapic *l, struct lapic_state *st, uint64_t now_ns);
int lapic_restore(struct lapic *l, const struct lapic_state *st, uint64_t now_ns)
	__attribute__((warn_unused_result));

#endif
