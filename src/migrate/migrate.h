/* Live migration of a VM from one tarn to another (docs/migration.md):
 * pre-copy over one stream socket.
 *
 * The source (mig_start, from the API) connects, tells the destination
 * what the VM is (its configuration and CPU, as a snapshot's first
 * sections) and waits while the destination builds it; then sends guest
 * RAM in rounds: all of it first, then the pages written meanwhile, until
 * what is left would take less than the downtime budget to send. Then it
 * pauses the VM, sends the rest, lets go of the disks and sends every
 * component's state (a snapshot's state file). The destination applies it
 * and says so; only then does the source tell it to run (GO), and the
 * source's VM stops once the destination says it runs. Until GO, any
 * failure (the destination refuses or dies, the link breaks, a cancel, a
 * timeout) leaves the source's VM running as it was. A failure after GO
 * (the destination's last word lost) leaves it paused, never running in
 * two places.
 *
 * Pages filled with one byte (zeros, mostly) cost a few bytes on the wire;
 * others go raw or, asked for, LZ4-compressed. Every record carries a
 * CRC32C. A VM whose pages are written faster than they can be sent is
 * slowed down step by step (auto-converge, vm_throttle) until it
 * converges, or the migration gives up after its time limit. */
#ifndef TARN_MIGRATE_H
#define TARN_MIGRATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "snapshot/snapshot.h"

struct vm;
struct vm_config;

enum mig_state { MIG_NONE, MIG_ACTIVE, MIG_COMPLETED, MIG_FAILED, MIG_CANCELLED };

struct mig_params {
	char to[256];		/* "HOST:PORT", "[V6]:PORT" or "unix:PATH" */
	uint64_t downtime_ns;	/* the budget for the last round (default 50 ms) */
	uint64_t max_time_ns;	/* give up after this long (default 300 s) */
	bool compress;		/* LZ4 for pages that are not one byte repeated */
	bool auto_converge;	/* throttle the vCPUs when rounds do not shrink (default on) */
	uint64_t max_bandwidth; /* bytes a second while the VM runs; 0: as fast as the link goes */
	bool copy_disks;	/* send the writable disks' contents too (block migration) */
};

#define MIG_DEFAULT_DOWNTIME_MS 50
#define MIG_DEFAULT_MAX_TIME_S 300
#define MIG_ROUNDS_KEPT 32 /* pages per round, for the first this many rounds */

/* What a migration did, so far or in all (GET /migrate, the metrics). */
struct mig_stats {
	enum mig_state state;
	char error[512]; /* MIG_FAILED: why; the source VM's state after it */
	char to[256];
	unsigned rounds;
	uint64_t pages_round[MIG_ROUNDS_KEPT]; /* pages sent in each round */
	uint64_t pages_total;			/* pages sent, every round */
	uint64_t pages_filled;			/* of them, one byte repeated (zero pages) */
	uint64_t bytes_wire;			/* bytes on the wire, headers included */
	uint64_t remaining;			/* pages dirty at the last look */
	uint64_t disk_bytes;			/* copy_disks: disk bytes sent, every round */
	uint64_t setup_ms, total_ms, downtime_ms;
	int throttle_pct; /* the highest auto-converge reached */
	bool source_paused; /* MIG_FAILED after GO: the VM stays paused here */
};

struct migration;

/* Start migrating vm (running or paused) to p->to, in a thread of its
 * own. 0; -EBUSY while one is active; -errno with the reason in err.
 * *m is kept by the caller: mig_stats reads it, mig_cancel stops it,
 * mig_free (after the VM stopped, or to start another) joins and frees it. */
int mig_start(struct migration **m, struct vm *vm, const struct mig_params *p, char *err, size_t err_len)
	__attribute__((warn_unused_result));
void mig_get_stats(struct migration *m, struct mig_stats *out);
/* Wait until the migration has ended (completed, failed or cancelled; the
 * VM stopping ends it too), then its figures. */
void mig_wait(struct migration *m, struct mig_stats *out);
/* Cancel an active migration (before GO; a no-op after). 0, or -ENOENT
 * when none is active. */
int mig_cancel(struct migration *m);
/* Cancel if active and wait for the thread (the figures stay); mig_free
 * does that, then frees. NULL is fine. */
void mig_join(struct migration *m);
void mig_free(struct migration *m);
const char *mig_state_name(enum mig_state s);

/* ---- the destination ---- */

struct mig_incoming;

/* Wait on listen_fd for one source (its first bytes within timeout_ms
 * of connecting) and read what the VM is: vc filled (its strings point into
 * the incoming, which must outlive the VM) with vc->incoming set and
 * vc->restore pointing at its identity. The caller may then change the
 * backend, the disks and NICs (the paths on this host) and the console,
 * and builds the VM with vm_create. 0, or -errno with the reason in err
 * (and told the source). */
int mig_accept(struct mig_incoming **in, int listen_fd, struct vm_config *vc, char *err, size_t err_len)
	__attribute__((warn_unused_result));
/* The VM would not build: tell the source why (it then resumes). */
void mig_refuse(struct mig_incoming *in, const char *why);
/* Receive the memory and the state into vm (built from mig_accept's
 * config), take the disks and, at the source's GO, resume the VM (unless
 * it was paused there). 0: the VM is here now, to vm_run; else -errno with
 * the reason in err (the source's VM runs on; destroy this one). */
int mig_receive(struct mig_incoming *in, struct vm *vm, char *err, size_t err_len)
	__attribute__((warn_unused_result));
void mig_incoming_free(struct mig_incoming *in);

/* "HOST:PORT" or "unix:PATH" as a listening socket (fd or -errno). */
int mig_listen(const char *addr, char *err, size_t err_len);

#endif
