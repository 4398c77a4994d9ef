/* Intel 8254 programmable interval timer (data sheet, order no. 231164) as
 * wired in a PC: 1.193182 MHz input clock, channel 0 -> IRQ 0, channel 1
 * (DRAM refresh) free, channel 2 -> speaker with its gate and output on
 * port 0x61 (bits 0 and 5). For cpu/emu; KVM has its own in-kernel PIT.
 *
 * Ports (registered on the PIO bus by pit_init, byte accesses only):
 *   0x40-0x42  counter 0-2: count write / count, latch or status read
 *   0x43       control word: mode set, counter latch, read-back
 *   0x61       system control port B: bit 0 gate 2, bit 1 speaker data
 *              enable, bit 4 refresh toggle (read-only), bit 5 OUT2 (RO)
 *
 * All six modes are modelled (0 and 4 one-shot, 2 and 3 periodic, 1 and 5
 * gate-triggered; channels 0 and 1 have their gate tied high as on a PC).
 * BCD counting is supported.
 *
 * Time: the counters are computed from CLOCK_MONOTONIC nanoseconds, never
 * ticked. Port accesses read the clock through ops->now_ns (tests replace
 * it); the owner calls pit_update(now) at pit_next_deadline_ns() to raise
 * IRQ 0. Each rising edge of OUT0 is one pulse on ops->irq (1 then 0), as
 * KVM's PIT does; missed periods are coalesced into one pulse, and a
 * periodic channel 0 never pulses more often than PIT_MIN_PERIOD_NS.
 *
 * Locking: one mutex. ops->irq is called with it held, so pulses arrive in
 * order (lock order PIT -> PIC/IOAPIC -> LAPIC). ops->timer_changed is
 * called without it. */
#ifndef TARN_PIT_H
#define TARN_PIT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct bus;

#define PIT_BASE 0x40
#define PIT_PORT_B 0x61
#define PIT_FREQ_HZ 1193182ULL
#define PIT_MIN_PERIOD_NS 100000ULL /* 10 kHz; KVM clamps at 200 us */

struct pit_ops {
	/* Channel 0 output pulse for IRQ 0: level 1 then 0. Optional. */
	void (*irq)(void *opaque, int level);
	/* CLOCK_MONOTONIC in ns for port accesses; NULL: the real clock. */
	uint64_t (*now_ns)(void *opaque);
	/* The guest reprogrammed channel 0: re-read pit_next_deadline_ns.
	 * Called from the vCPU thread that wrote the port. Optional. */
	void (*timer_changed)(void *opaque);
};

/* Private; exposed so the owner can embed struct pit. */
struct pit_channel {
	uint32_t count;		/* reload value in clocks: 1..65536 (BCD 1..10000) */
	uint16_t latched_count;
	uint8_t count_latched;	/* 0, or which byte(s) of latched_count remain: rw_mode encoding */
	uint8_t status;
	bool status_latched;
	uint8_t read_state, write_state; /* rw_mode encoding; 4 = second byte of a word */
	uint8_t write_latch;	/* first byte of a two-byte count */
	uint8_t rw_mode;	/* 1 LSB, 2 MSB, 3 LSB then MSB */
	uint8_t mode;		/* 0..5 */
	bool bcd;
	bool gate;
	bool loaded;		/* a count was written since the control word */
	bool triggered;		/* modes 1 and 5: a gate edge started counting */
	bool paused;		/* gate low froze the count (modes 0, 2, 3, 4) */
	uint64_t load_ns;	/* when counting started (shifted across pauses) */
	uint64_t paused_ns;
	uint64_t next_irq_ns;	/* channel 0: next OUT rising edge, UINT64_MAX none */
};

struct pit {
	pthread_mutex_t lock;
	const struct pit_ops *ops;
	void *opaque;
	struct pit_channel ch[3];
	bool speaker_en;	/* port 0x61 bit 1 */
};

/* Plain state for snapshots; times relative to the save moment. */
struct pit_channel_state {
	uint32_t count;
	uint16_t latched_count;
	uint8_t count_latched, status, status_latched, read_state, write_state, write_latch;
	uint8_t rw_mode, mode, bcd, gate, loaded, triggered, paused, pad[5];
	uint64_t elapsed_ns;	/* counting time so far */
	uint64_t irq_in_ns;	/* until the next IRQ edge; UINT64_MAX none; PIT_IRQ_REARM: work
				 * it out from the mode and count (a state from KVM) */
};
struct pit_state {
	struct pit_channel_state ch[3];
	uint8_t speaker_en;
	uint8_t pad[7];
};
#define PIT_IRQ_REARM (UINT64_MAX - 1)
_Static_assert(sizeof(struct pit_state) == 128, "pit_state is a snapshot format");

/* Reset (no channel programmed, gate 2 low) and claim 0x40-0x43 and 0x61 on
 * pio (NULL: no ports, for tests). ops may be NULL. 0 or -errno. */
int pit_init(struct pit *p, struct bus *pio, const struct pit_ops *ops, void *opaque)
	__attribute__((warn_unused_result));
void pit_destroy(struct pit *p);

/* Port access at an explicit time (what the bus handlers call with
 * ops->now_ns). port is absolute: 0x40..0x43 or 0x61. */
uint8_t pit_ioport_read(struct pit *p, uint16_t port, uint64_t now_ns);
void pit_ioport_write(struct pit *p, uint16_t port, uint8_t v, uint64_t now_ns);

/* Raise IRQ 0 for an OUT0 edge due by now, re-arm. O(1) per call. */
void pit_update(struct pit *p, uint64_t now_ns);
/* When pit_update next has work, or UINT64_MAX. */
uint64_t pit_next_deadline_ns(struct pit *p);

/* Channel 2's gate (port 0x61 bit 0) and output, for owners and tests. */
void pit_set_gate(struct pit *p, unsigned channel, bool gate, uint64_t now_ns);
bool pit_get_out(struct pit *p, unsigned channel, uint64_t now_ns);

/* Snapshots: restore validates or returns -EINVAL without touching p. */
void pit_save(struct pit *p, struct pit_state *st, uint64_t now_ns);
int pit_restore(struct pit *p, const struct pit_state *st, uint64_t now_ns)
	__attribute__((warn_unused_result));

#endif
