/* The jail around a VM's tarn process (tarn run --jail), what
 * Firecracker's jailer does, built in. Whoever starts tarn (tarnd) gives
 * it new mount, PID, IPC, UTS and network namespaces (clone); tarn opens
 * everything it needs as it builds the VM, then, before the first guest
 * instruction, jail_enter:
 *
 *   - pivot_root into the jail directory (the mount namespace is its own,
 *     so the host's file system is gone from it), nothing mounted there;
 *   - rlimits: no core files, at most JAIL_NOFILE descriptors and
 *     JAIL_NPROC threads;
 *   - its own unprivileged uid and gid, no supplementary groups: every
 *     capability goes with root (CapEff, CapPrm 0), none in the bounding
 *     set of the thread that enters;
 *   - NoNewPrivs, and a seccomp filter (libseccomp) on every thread of
 *     the system calls tarn makes; vCPU threads add a narrower one
 *     (jail_vcpu_thread). Any other call traps: a line on stderr names
 *     it and the thread, and the process ends with status 8 (a VMM
 *     error), its VM alone.
 *
 * A test hook: with TARN_JAIL_TEST=CALL:DIR in its environment, the tarn
 * jailed in DIR has its first vCPU thread make the system call CALL (no
 * arguments) once the filters are in place; tests/integration/
 * tarnd_jail.sh shows with it that a forbidden call ends that VM alone.
 */
#ifndef TARN_JAIL_H
#define TARN_JAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define JAIL_NOFILE 2048
#define JAIL_NPROC 512

struct jail_config {
	const char *root; /* the directory that becomes / */
	uid_t uid;
	gid_t gid;
};

/* Parse "DIR,uid=N,gid=N" (tarn run --jail). 0, or -EINVAL with the
 * reason in err. */
int jail_parse(const char *spec, struct jail_config *j, char *err, size_t len);

/* Enter the jail (root, every file already open). 0, or -errno with the
 * reason in err: the caller must not run the guest then. */
int jail_enter(const struct jail_config *j, char *err, size_t len);

/* Whether jail_enter ran. */
bool jail_entered(void);

/* At the start of a vCPU thread: its own filter on top of the process's
 * (nothing without a jail). */
void jail_vcpu_thread(void);

#endif
