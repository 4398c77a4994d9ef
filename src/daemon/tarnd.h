/* tarnd: one host's VMs. Each VM is a `tarn run` process of its own,
 * driven over its per-VM API; tarnd never runs guest code. What the
 * daemon wants of each VM (desired) and what it last saw (observed) are
 * rows in SQLite (db.h); one loop (tarnd_reconcile) brings the processes
 * in line with the rows, after any API call and after any crash, tarnd's
 * own included. */
#ifndef TARN_DAEMON_TARND_H
#define TARN_DAEMON_TARND_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define TARND_DEFAULT_STATE "/var/lib/tarn"
#define TARND_DEFAULT_SOCKET "/run/tarn/tarnd.sock"
#define TARND_MAX_VMS 1024
#define TARND_JAIL_UID_BASE 200000 /* a jailed VM's uid: this + its row id */
#define TARND_JAIL_UID_BASE_S "200000"
#define TARND_MAX_VM_ID 1000000	   /* row ids stay below, so uids do not overlap */

/* A VM's process as tarnd knows it (not persisted beyond the row's pid). */
struct vmproc {
	int64_t id;
	pid_t pid;
	bool child;	     /* ours since we started it: waitpid gives its status */
	int64_t stop_at;     /* stopping: when the power button has had its time (ms) */
	int64_t kill_at;     /* stopping: when SIGTERM has had its time (ms) */
	int64_t started_at;  /* ms, for the restart back-off */
	int stop_ms;	     /* this stop's power-button wait, 0: the default */
	bool replacing;	     /* ended on purpose for a restore: start it again at once */
	/* Quota throttling, looked at every QUOTA_WATCH_MS: the counters
	 * then, and whether the last look found it held back. */
	int64_t quota_at, cpu_throttled_ns;
	uint64_t io_throttled;
	bool throttled;
};

struct tarnd {
	const char *state_dir, *tarn; /* the tarn binary VMs run under */
	sqlite3 *db;
	pthread_mutex_t lock; /* db, procs */
	pthread_cond_t events; /* (with lock) an event was recorded */
	bool stopping;	       /* tarnd is ending: streams end */
	struct vmproc procs[TARND_MAX_VMS];
	int nr_procs;
	int stop_timeout_ms;   /* default power-button wait of a stop */
	uint64_t console_cap;  /* bytes of console log kept per VM */
	int wake_fd;	       /* eventfd: reconcile now */
	bool jail;	       /* VMs in the jail (tarn run --jail, namespaces) */
	unsigned jail_uid_base;
	/* The pool VMs are admitted from: vCPUs per host CPU, memory per MiB
	 * of the host's (less the reserve). */
	double cpu_overcommit, mem_overcommit;
	uint64_t mem_reserve_mib;
	/* tarn's switch (networks.c): its program, and its process (0: none
	 * yet); ours (a child) or adopted from an earlier tarnd. */
	char switch_bin[4096];
	pid_t switch_pid;
	bool switch_child;
};

/* A VM's disks and NICs with the rates each gets (its own, else the
 * VM's), in order: one parameter, the VM's row id. A NIC on a network
 * has columns 7-9: its network's id and name, its addresses. */
#define TARND_DISKS_SQL                                                                            \
	"SELECT d.idx, d.path, d.ro, COALESCE(d.bw, v.disk_bw), COALESCE(d.iops, v.disk_iops) "    \
	"FROM disks d JOIN vms v ON v.id = d.vm_id WHERE d.vm_id = ? ORDER BY d.idx"
#define TARND_NICS_SQL                                                                             \
	"SELECT n.idx, n.tap, n.mac, COALESCE(n.rx_bw, v.net_bw), COALESCE(n.tx_bw, v.net_bw), "   \
	"COALESCE(n.rx_pps, v.net_pps), COALESCE(n.tx_pps, v.net_pps), n.network_id, w.name, n.ips " \
	"FROM nics n JOIN vms v ON v.id = n.vm_id LEFT JOIN networks w ON w.id = n.network_id "      \
	"WHERE n.vm_id = ? ORDER BY n.idx"
/* Their rate columns, in the order of those SQL columns 3.. (the API's
 * field names for one disk or NIC). */
extern const char *const tarnd_disk_rates[2], *const tarnd_nic_rates[4];

/* Copy file src to dst (a new file, 0600, renamed over dst once whole):
 * shared extents where the file system can (FICLONE), else the data with
 * its holes kept; synced. 0, or -1 with why (dst as it was). */
int tarnd_copy_file(const char *src, const char *dst, char *why, size_t len);

/* Where a snapshot (its state file state_path, "DIR/SNAP.snap") keeps
 * the copy of the VM's writable disk idx taken with it: "DIR/SNAP.diskIDX". */
void tarnd_snap_disk(const char *state_path, int idx, char *buf, size_t len);

/* tarn's switch (networks.c): started, or adopted from an earlier tarnd,
 * with every network's uplink on it (tarnd_switch_check: started again
 * if it died). d->lock held. */
void tarnd_switch_check(struct tarnd *d);
/* Does any tenant have a network? */
bool tarnd_has_networks(struct tarnd *d);
/* A VM's NIC's port: put on the switch (afresh: the row's network, MAC
 * and addresses) with its socket's path into sock; or taken off. 0, or
 * -1 with why. d->lock held. */
int tarnd_switch_port(struct tarnd *d, int64_t vm_id, int idx, char *sock, size_t slen, char *err, size_t len);
void tarnd_switch_port_del(struct tarnd *d, int64_t vm_id, int idx);
/* The NIC's rates (its own, else the VM's) onto its running port. 0, or -1
 * with why. */
int tarnd_switch_limits(struct tarnd *d, int64_t vm_id, int idx, char *err, size_t len);

/* Monotonic milliseconds. */
int64_t tarnd_now_ms(void);

/* A VM is named to these as "TENANT/NAME" (its directory under
 * STATE/vms/). */

/* Record an event (vm may be NULL: the host's) in the database and the log. */
void tarnd_event(struct tarnd *d, const char *vm, const char *kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The VM's directory (sockets, logs): STATE/vms/TENANT/NAME. */
void tarnd_vm_dir(const struct tarnd *d, const char *vm, char *buf, size_t len);

/* One pass of the loop: reap ended processes, start, stop and restart
 * what the rows ask. d->lock held. */
void tarnd_reconcile(struct tarnd *d);

/* Ask the loop to run now (any thread). */
void tarnd_wake(struct tarnd *d);

/* After tarnd starts: find the processes of VMs the rows say run, adopt
 * the live ones, and record the ones that ended meanwhile. */
void tarnd_adopt(struct tarnd *d);

/* The proc entry of VM id, NULL when none. d->lock held. */
struct vmproc *tarnd_proc(struct tarnd *d, int64_t id);

/* A request to the VM's own API (tarn's, Firecracker's dialect): 0 with
 * the reply in *out (unless out is NULL; the caller's), or -1 with the
 * reason in err. */
int tarnd_vm_api(struct tarnd *d, const char *vm, const char *method, const char *path, const char *body,
		 json_t **out, char *err, size_t len);

/* tarnd's API on sock_fd (api.c). */
int tarnd_api_start(struct tarnd *d, int sock_fd, char *err, size_t len);
void tarnd_api_stop(void);

#endif
