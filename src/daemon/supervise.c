/* The VM processes: started, watched, stopped and restarted as the rows of
 * the vms table ask. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/http_client.h"
#include "core/log.h"
#include "core/vm.h"
#include "daemon/cgroup.h"
#include "virtio/net_backend.h"
#include "daemon/db.h"
#include "daemon/tarnd.h"

#define RESTART_BACKOFF_MS 1000 /* a VM that keeps dying restarts at most this often */
#define QUOTA_WATCH_MS 2000 /* how often quota throttling is looked at */
#define TERM_WAIT_MS 5000	/* after SIGTERM, before SIGKILL */

int64_t tarnd_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_s(void)
{
	return (int64_t)time(NULL);
}

void tarnd_event(struct tarnd *d, const char *vm, const char *kind, const char *fmt, ...)
{
	const char *slash = vm ? strchr(vm, '/') : NULL;
	char detail[512], tenant[128] = "";
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(detail, sizeof(detail), fmt, ap);
	va_end(ap);
	pr_info("%s%s%s: %s", vm ? vm : "", vm ? " " : "", kind, detail);
	if (slash)
		snprintf(tenant, sizeof(tenant), "%.*s", (int)(slash - vm), vm);
	db_exec(d->db, "INSERT INTO events (at, tenant, vm, kind, detail) VALUES (?, ?, ?, ?, ?)",
		"issss", wall_s(), slash ? tenant : NULL, slash ? slash + 1 : NULL, kind, detail);
	pthread_cond_broadcast(&d->events); /* the streams look once the lock is free */
}

void tarnd_vm_dir(const struct tarnd *d, const char *vm, char *buf, size_t len)
{
	snprintf(buf, len, "%s/vms/%s", d->state_dir, vm);
}

void tarnd_wake(struct tarnd *d)
{
	uint64_t one = 1;

	if (write(d->wake_fd, &one, sizeof(one)) < 0)
		pr_debug("wake: %s", strerror(errno));
}

struct vmproc *tarnd_proc(struct tarnd *d, int64_t id)
{
	for (int i = 0; i < d->nr_procs; i++)
		if (d->procs[i].id == id)
			return &d->procs[i];
	return NULL;
}

static struct vmproc *proc_add(struct tarnd *d, int64_t id)
{
	struct vmproc *p = tarnd_proc(d, id);

	if (!p && d->nr_procs < TARND_MAX_VMS) {
		p = &d->procs[d->nr_procs++];
		*p = (struct vmproc){ .id = id };
	}
	return p;
}

static void proc_del(struct tarnd *d, struct vmproc *p)
{
	*p = d->procs[--d->nr_procs];
}

/* The process's start time (/proc/PID/stat field 22, clock ticks since
 * boot): with the pid, it names one process for good, whatever reuses the
 * pid later. -1 when there is no such process. */
static int64_t proc_start_time(pid_t pid)
{
	char path[64], buf[1024], *p;
	long long t = -1;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = 0;
	p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
	if (!p || buf[n - 1] == 0)
		return -1;
	/* After ")": state (field 3) ... starttime (field 22). */
	p += 2;
	for (int field = 3; field < 22 && p; field++) {
		if (field == 3 && *p == 'Z')
			return -1; /* a zombie has ended */
		p = strchr(p, ' ');
		if (p)
			p++;
	}
	if (!p || sscanf(p, "%lld", &t) != 1)
		return -1;
	return t;
}

/* The process serving the VM's API socket, 0 for none: a tarn started
 * just before tarnd died, whose row did not record it (the request's
 * transaction never committed). */
static pid_t sock_owner(const struct tarnd *d, const char *vm)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct ucred cred = { 0 };
	socklen_t len = sizeof(cred);
	char dir[4096];
	int fd;

	tarnd_vm_dir(d, vm, dir, sizeof(dir));
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/api.sock", dir) >= sizeof(sa.sun_path))
		return 0;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) ||
	    getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len))
		cred.pid = 0;
	close(fd);
	return cred.pid;
}

/* Watch pid as the VM's process from now on. */
static void adopt(struct tarnd *d, struct vmproc *p, const char *vm, pid_t pid, const char *how)
{
	p->pid = pid;
	p->child = false;
	db_exec(d->db, "UPDATE vms SET pid = ?, pid_start = ?, observed = 'running', updated_at = ? WHERE id = ?",
		"iiii", (int64_t)pid, proc_start_time(pid), wall_s(), p->id);
	tarnd_event(d, vm, "adopted", "tarn (pid %d) %s: watched again", pid, how);
}

/* Open path for appending, as fd target (it must not be 0..2 of ours). */
static int open_log(const char *dir, const char *name)
{
	char path[4200];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

/* What a VM's tarn is started with: argv and the strings it points to,
 * the taps tarnd opened for a jailed one (passed as fd=N). */
struct launch {
	char dir[4096], sock[4200], console[4200], cpus[16], mem[32], jail[4400];
	char dev[VM_MAX_DISKS + VM_MAX_NETS][4400];
	const char *argv[28 + 2 * (VM_MAX_DISKS + VM_MAX_NETS)];
	int taps[VM_MAX_NETS], nr_taps;
};

/* A tap opened here for a VM in its own network namespace: its fd, or
 * -1 with the reason in why. */
static int open_tap(const char *name, char *why, size_t len)
{
	struct net_backend nb = { .fd = -1 };

	return net_backends[0]->open(&nb, name, why, len) ? -1 : nb.fd;
}

/* Disks and NICs, each with its rates (API drive_id / iface_id cliN: the
 * N-th of its kind). A jailed VM gets its taps open: it has a network
 * namespace of its own. argv[n..]; the new n, or -1 with why. */
static int device_args(struct tarnd *d, int64_t id, struct launch *l, int n, char *why, size_t len)
{
	sqlite3_stmt *st = db_query(d->db, TARND_DISKS_SQL, "i", id);
	int nd = 0;

	while (st && sqlite3_step(st) == SQLITE_ROW && nd < VM_MAX_DISKS) {
		snprintf(l->dev[nd], sizeof(l->dev[nd]), "%s%s,bw=%s,iops=%s", sqlite3_column_text(st, 1),
			 sqlite3_column_int(st, 2) ? ",ro" : "", sqlite3_column_text(st, 3), sqlite3_column_text(st, 4));
		l->argv[n++] = "--disk";
		l->argv[n++] = l->dev[nd++];
	}
	sqlite3_finalize(st);
	st = db_query(d->db, TARND_NICS_SQL, "i", id);
	while (st && sqlite3_step(st) == SQLITE_ROW && l->nr_taps < VM_MAX_NETS) {
		const char *tap = (const char *)sqlite3_column_text(st, 1), *mac = (const char *)sqlite3_column_text(st, 2);
		char backend[32], sock[4300];

		if (sqlite3_column_type(st, 7) != SQLITE_NULL) {
			/* On a network: a port of tarn's switch, made afresh. */
			if (tarnd_switch_port(d, id, sqlite3_column_int(st, 0), sock, sizeof(sock), why, len)) {
				sqlite3_finalize(st);
				return -1;
			}
			snprintf(l->dev[nd], sizeof(l->dev[nd]), "vhost-user=%s,mac=%s", sock, mac);
			l->argv[n++] = "--net";
			l->argv[n++] = l->dev[nd++];
			continue;
		}
		if (d->jail) {
			int fd = open_tap(tap, why, len);

			if (fd < 0) {
				sqlite3_finalize(st);
				return -1;
			}
			l->taps[l->nr_taps] = fd;
			snprintf(backend, sizeof(backend), "fd=%d", fd);
		} else {
			snprintf(backend, sizeof(backend), "tap=%s", tap);
		}
		l->nr_taps++;
		snprintf(l->dev[nd], sizeof(l->dev[nd]), "%s%s%s,rx_bw=%s,tx_bw=%s,rx_pps=%s,tx_pps=%s", backend,
			 mac ? ",mac=" : "", mac ? mac : "", sqlite3_column_text(st, 3), sqlite3_column_text(st, 4),
			 sqlite3_column_text(st, 5), sqlite3_column_text(st, 6));
		l->argv[n++] = "--net";
		l->argv[n++] = l->dev[nd++];
	}
	sqlite3_finalize(st);
	return n;
}

/* A start from a snapshot: each writable disk back to the copy the
 * snapshot kept of it (a clone's made so at its first start). A snapshot
 * without copies (of a VM without writable disks) leaves them be. 0, or
 * -1 with why. */
static int restore_disks(struct tarnd *d, int64_t id, const char *state_path, char *why, size_t len)
{
	sqlite3_stmt *st = db_query(d->db, "SELECT idx, path FROM disks WHERE vm_id = ? AND NOT ro ORDER BY idx", "i", id);
	int ret = 0;

	while (!ret && st && sqlite3_step(st) == SQLITE_ROW) {
		char copy[4200];

		tarnd_snap_disk(state_path, sqlite3_column_int(st, 0), copy, sizeof(copy));
		if (!access(copy, F_OK))
			ret = tarnd_copy_file(copy, (const char *)sqlite3_column_text(st, 1), why, len);
	}
	sqlite3_finalize(st);
	return ret;
}

/* The command line of the VM's tarn into l (its directory made). 0, or
 * -1 with why. */
static int launch_args(struct tarnd *d, sqlite3_stmt *row, int64_t id, struct launch *l, char *why, size_t len)
{
	const char *initrd = (const char *)sqlite3_column_text(row, 3);
	const char *cmdline = (const char *)sqlite3_column_text(row, 4);
	int n = 0;

	tarnd_vm_dir(d, (const char *)sqlite3_column_text(row, 1), l->dir, sizeof(l->dir));
	snprintf(l->sock, sizeof(l->sock), "%s/api.sock", l->dir);
	snprintf(l->console, sizeof(l->console), "%s/console.sock", l->dir);
	snprintf(l->cpus, sizeof(l->cpus), "%d", sqlite3_column_int(row, 5));
	snprintf(l->mem, sizeof(l->mem), "%dM", sqlite3_column_int(row, 6));
	*strrchr(l->dir, '/') = 0; /* the tenant's directory, then the VM's */
	if (mkdir(l->dir, 0750) && errno != EEXIST)
		goto fail;
	l->dir[strlen(l->dir)] = '/';
	if (mkdir(l->dir, 0750) && errno != EEXIST)
		goto fail;
	l->argv[n++] = d->tarn;
	l->argv[n++] = "run";
	l->argv[n++] = "--api-sock";
	l->argv[n++] = l->sock;
	l->argv[n++] = "--console-sock";
	l->argv[n++] = l->console;
	l->argv[n++] = "--backend";
	l->argv[n++] = (const char *)sqlite3_column_text(row, 7);
	l->argv[n++] = "--cpus";
	l->argv[n++] = l->cpus;
	l->argv[n++] = "--mem";
	l->argv[n++] = l->mem;
	if (sqlite3_column_type(row, 17) != SQLITE_NULL) {
		/* A restore (or a clone's first start): from the snapshot,
		 * once; a later start boots. */
		l->argv[n++] = "--restore";
		l->argv[n++] = (const char *)sqlite3_column_text(row, 17);
		l->argv[n++] = "--restore-mem";
		l->argv[n++] = (const char *)sqlite3_column_text(row, 18);
	} else {
		l->argv[n++] = "--kernel";
		l->argv[n++] = (const char *)sqlite3_column_text(row, 2);
		if (initrd) {
			l->argv[n++] = "--initrd";
			l->argv[n++] = initrd;
		}
		if (cmdline) {
			l->argv[n++] = "--cmdline";
			l->argv[n++] = cmdline;
		}
	}
	if (d->jail) {
		/* STATE/vms/TENANT/NAME/root: the jail's /, the VM's uid's
		 * alone (its snapshots go there). */
		uid_t uid = d->jail_uid_base + (uid_t)id;
		char root[4200];

		snprintf(root, sizeof(root), "%s/root", l->dir);
		if ((mkdir(root, 0700) && errno != EEXIST) || chown(root, uid, uid) || chmod(root, 0700))
			goto fail;
		snprintf(root, sizeof(root), "%s/root/snapshots", l->dir);
		if ((mkdir(root, 0700) && errno != EEXIST) || chown(root, uid, uid))
			goto fail;
		snprintf(root, sizeof(root), "%s/root", l->dir);
		snprintf(l->jail, sizeof(l->jail), "%s,uid=%u,gid=%u", root, uid, uid);
		l->argv[n++] = "--jail";
		l->argv[n++] = l->jail;
	}
	n = device_args(d, id, l, n, why, len);
	if (n < 0)
		return -1;
	l->argv[n] = NULL;
	return 0;
fail:
	snprintf(why, len, "%s: %s", l->dir, strerror(errno));
	return -1;
}

/* Start VM's tarn: `tarn run --api-sock DIR/api.sock ...`, its console
 * appended to DIR/console.log, its own log to DIR/tarn.log, in a session
 * of its own (a terminal's Ctrl-C or tarnd's end does not reach it); a
 * jailed one in PID and network namespaces of its own (tarn makes its
 * mount, IPC and UTS ones). */
static int spawn(struct tarnd *d, sqlite3_stmt *row, struct vmproc *p)
{
	const char *name = (const char *)sqlite3_column_text(row, 1);
	static struct launch l; /* d->lock held: one at a time */
	char why[512];
	int out, err, null;
	pid_t pid;

	l.nr_taps = 0;
	if (launch_args(d, row, p->id, &l, why, sizeof(why)) ||
	    (sqlite3_column_type(row, 17) != SQLITE_NULL &&
	     restore_disks(d, p->id, (const char *)sqlite3_column_text(row, 17), why, sizeof(why)))) {
		for (int i = 0; i < l.nr_taps && d->jail; i++)
			close(l.taps[i]);
		tarnd_event(d, name, "failed", "cannot start tarn: %s", why);
		return -ECANCELED; /* said */
	}
	unlink(l.sock);
	unlink(l.console);
	out = open_log(l.dir, "console.log");
	err = open_log(l.dir, "tarn.log");
	null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out < 0 || err < 0 || null < 0) {
		int e = errno;

		close(out), close(err), close(null);
		return -e;
	}
	pid = d->jail ? (pid_t)syscall(SYS_clone, CLONE_NEWPID | CLONE_NEWNET | SIGCHLD, NULL, NULL, NULL, NULL)
		      : fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. */
		sigset_t none;

		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		setsid();
		if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
			_exit(127);
		for (int i = 0; i < l.nr_taps && d->jail; i++)
			fcntl(l.taps[i], F_SETFD, 0); /* passed as fd=N */
		execv(d->tarn, (char *const *)l.argv);
		_exit(127);
	}
	close(out), close(err), close(null);
	for (int i = 0; i < l.nr_taps && d->jail; i++)
		close(l.taps[i]);
	if (pid < 0)
		return -errno;
	/* Its quotas before it gets far: tarn has not yet built its VM. */
	if (cg_probe()) {
		struct cg_limits lim = {
			.cpu = sqlite3_column_double(row, 13),
			.weight = (unsigned)sqlite3_column_int(row, 14),
			.mem = (uint64_t)sqlite3_column_int64(row, 15) << 20,
		};

		if (cg_attach(name, pid, &lim, why, sizeof(why)))
			tarnd_event(d, name, "quota", "not applied: %s", why);
	} else if (sqlite3_column_double(row, 13) > 0 || sqlite3_column_int64(row, 15)) {
		tarnd_event(d, name, "quota", "not applied: this host has no usable cgroups");
	}
	*p = (struct vmproc){ .id = p->id, .pid = pid, .child = true, .started_at = tarnd_now_ms() };
	/* The start time read now: the child is ours and cannot be reaped
	 * before this (we are the only one who waits for it). */
	db_exec(d->db, "UPDATE vms SET pid = ?, pid_start = ?, observed = 'running', exit_status = NULL, "
		       "restore_from = NULL, updated_at = ? WHERE id = ?", "iiii", (int64_t)pid, proc_start_time(pid),
		wall_s(), p->id);
	tarnd_event(d, name, "started", "tarn pid %d%s%s", pid, d->jail ? " (jailed)" : "",
		    sqlite3_column_type(row, 17) != SQLITE_NULL ? ", restored from a snapshot" : "");
	return 0;
}

/* The last line tarn wrote to its log: why it ended, usually. */
static void last_log_line(struct tarnd *d, const char *name, char *buf, size_t len)
{
	char dir[4096], path[4200], tail[1024];
	ssize_t n;
	int fd;
	char *e, *s;

	tarnd_vm_dir(d, name, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/tarn.log", dir);
	*buf = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	n = pread(fd, tail, sizeof(tail) - 1, lseek(fd, 0, SEEK_END) > (off_t)sizeof(tail) - 1
						       ? lseek(fd, 0, SEEK_END) - (off_t)sizeof(tail) + 1 : 0);
	close(fd);
	if (n <= 0)
		return;
	tail[n] = 0;
	while (n && (tail[n - 1] == '\n' || tail[n - 1] == '\r'))
		tail[--n] = 0;
	e = tail + n;
	s = e;
	while (s > tail && s[-1] != '\n')
		s--;
	snprintf(buf, len, "%.400s", s);
}

/* The VM's process ended with status (waitpid's; -1 unknown: it was not
 * ours). Record it; decide from the row's desire and policy what next. */
static void ended(struct tarnd *d, sqlite3_stmt *row, struct vmproc *p, int status)
{
	const char *name = (const char *)sqlite3_column_text(row, 1);
	const char *restart = (const char *)sqlite3_column_text(row, 8);
	const char *desired = (const char *)sqlite3_column_text(row, 9);
	bool stopping = !strcmp(desired, "stopped");
	int code = status >= 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
	const char *observed = "stopped";
	char line[512];
	bool again = false;

	last_log_line(d, name, line, sizeof(line));
	if (p->replacing) {
		/* Ended for a restore: started again from the snapshot, now. */
		again = true;
		p->started_at = 0;
	} else if (stopping) {
		tarnd_event(d, name, "stopped", "as asked");
	} else if (code == 0) {
		tarnd_event(d, name, "stopped", "the guest powered off");
		again = !strcmp(restart, "always");
	} else if (code == 4) {
		tarnd_event(d, name, "rebooted", "the guest rebooted: started again");
		again = true;
	} else if (code == 2 || code == 127) {
		/* tarn refused the machine (a file it cannot read, a bad
		 * option): starting it again would only fail again. */
		observed = "failed";
		tarnd_event(d, name, "failed", "tarn could not start the VM: %s", *line ? line : "no reason given");
	} else {
		char how[96];

		struct cg_usage u;

		observed = "crashed";
		cg_usage(name, &u);
		if (u.oom_kills > 0 && (status < 0 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)))
			snprintf(how, sizeof(how), "was killed by the kernel: the VM went over its memory limit");
		else if (status < 0)
			snprintf(how, sizeof(how), "ended (how, only its parent knew: tarnd adopted it)");
		else if (WIFSIGNALED(status))
			snprintf(how, sizeof(how), "was killed by %s", strsignal(WTERMSIG(status)));
		else
			snprintf(how, sizeof(how), "exited with status %d", code);
		tarnd_event(d, name, "crashed", "tarn %s%s%s", how, *line ? ": " : "", line);
		again = strcmp(restart, "no") != 0;
	}
	db_exec(d->db, "UPDATE vms SET pid = NULL, pid_start = NULL, observed = ?, exit_status = ?, desired = ?, "
		       "updated_at = ? WHERE id = ?", "sisii", observed, (int64_t)code,
		again ? "running" : "stopped", wall_s(), p->id);
	p->pid = 0;
	p->child = false;
	p->replacing = false;
	p->stop_at = p->kill_at = 0;
	p->stop_ms = 0;
	cg_remove(name);
}

/* Keep the console log under d->console_cap: when it grows past, its
 * newer half becomes console.log.1 and console.log starts again (tarn
 * appends, O_APPEND, so it writes on at the new end). A line being written
 * just then may be cut. */
static void rotate_console(struct tarnd *d, const char *name)
{
	char dir[4096], path[4200], old[4200], *buf;
	uint64_t keep = d->console_cap / 2;
	struct stat sb;
	int fd, ofd;

	tarnd_vm_dir(d, name, dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/console.log", dir);
	if (stat(path, &sb) || (uint64_t)sb.st_size <= d->console_cap)
		return;
	snprintf(old, sizeof(old), "%s/console.log.1", dir);
	fd = open(path, O_RDWR | O_CLOEXEC);
	ofd = open(old, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	buf = malloc(keep);
	if (fd >= 0 && ofd >= 0 && buf && pread(fd, buf, keep, sb.st_size - (off_t)keep) == (ssize_t)keep &&
	    write(ofd, buf, keep) == (ssize_t)keep && ftruncate(fd, 0))
		pr_warn("%s: cannot cut the console log: %s", name, strerror(errno));
	free(buf);
	if (fd >= 0)
		close(fd);
	if (ofd >= 0)
		close(ofd);
}

/* Its tarn's rate limiters' waits so far (GET /metrics: every disk's
 * and NIC's, both ways), or 0. */
static uint64_t io_waits(struct tarnd *d, const char *name)
{
	static const char *const counters[][2] = {
		{ "block", "rate_limiter_throttled_events" },
		{ "net", "rx_rate_limiter_throttled" },
		{ "net", "tx_rate_limiter_throttled" },
	};
	json_t *m = NULL;
	uint64_t n = 0;
	char err[256];

	if (tarnd_vm_api(d, name, "GET", "/metrics", NULL, &m, err, sizeof(err)))
		return 0;
	for (size_t i = 0; i < sizeof(counters) / sizeof(counters[0]); i++)
		n += (uint64_t)json_integer_value(json_object_get(json_object_get(m, counters[i][0]), counters[i][1]));
	json_decref(m);
	return n;
}

/* Quota throttling as events, when it starts and when it stops: the CPU
 * time its cgroup was held back, and its disks' and NICs' rate limiters
 * making requests wait (asked of tarn only where the VM has rates). */
static void watch_quotas(struct tarnd *d, sqlite3_stmt *row, struct vmproc *p)
{
	const char *name = (const char *)sqlite3_column_text(row, 1);
	bool rates = sqlite3_column_int(row, 16);
	int64_t now = tarnd_now_ms(), cpu_ns;
	uint64_t io = 0;
	struct cg_usage u = { 0 };
	bool first = !p->quota_at;

	if (now < p->quota_at)
		return;
	p->quota_at = now + QUOTA_WATCH_MS;
	if (sqlite3_column_double(row, 13) > 0)
		cg_usage(name, &u);
	if (rates)
		io = io_waits(d, name);
	cpu_ns = u.throttled_ns - p->cpu_throttled_ns;
	if (!first && (cpu_ns > 0 || io > p->io_throttled) && !p->throttled) {
		char what[160] = "";

		if (cpu_ns > 0)
			snprintf(what, sizeof(what), "CPU: %.2f s of the last %.0f s held back by its limit of %.2f cores",
				 (double)cpu_ns / 1e9, QUOTA_WATCH_MS / 1000.0, sqlite3_column_double(row, 13));
		if (io > p->io_throttled)
			snprintf(what + strlen(what), sizeof(what) - strlen(what), "%sdisk or network: %llu waits for "
				 "its rate limits", *what ? "; " : "", (unsigned long long)(io - p->io_throttled));
		tarnd_event(d, name, "throttled", "%s", what);
		p->throttled = true;
	} else if (!first && cpu_ns <= 0 && io <= p->io_throttled && p->throttled) {
		tarnd_event(d, name, "throttled", "no longer held back by its quotas");
		p->throttled = false;
	}
	p->cpu_throttled_ns = u.throttled_ns;
	p->io_throttled = io;
}

/* Has p's process ended? 1 with *status (waitpid's, or -1 when not ours),
 * 0 while it runs. */
static int check_ended(struct vmproc *p, int64_t pid_start, int *status)
{
	if (p->child) {
		pid_t r = waitpid(p->pid, status, WNOHANG);

		return r == p->pid || (r < 0 && errno == ECHILD);
	}
	*status = -1;
	return proc_start_time(p->pid) != pid_start;
}

/* A stop: the power button first, SIGTERM when the guest has had its
 * time (tarn then stops the VM and exits 0), SIGKILL if even that hangs. */
static void stop_step(struct tarnd *d, const char *name, struct vmproc *p)
{
	int64_t now = tarnd_now_ms();
	char err[256];

	if (!p->stop_at) {
		p->stop_at = now + (p->stop_ms ? p->stop_ms : d->stop_timeout_ms);
		if (tarnd_vm_api(d, name, "PUT", "/actions", "{\"action_type\":\"PowerButton\"}", NULL, err, sizeof(err)))
			p->stop_at = now; /* no button to press: straight on */
	}
	if (now >= p->stop_at && !p->kill_at) {
		p->kill_at = now + TERM_WAIT_MS;
		kill(p->pid, SIGTERM);
	} else if (p->kill_at && now >= p->kill_at) {
		kill(p->pid, SIGKILL);
	}
}

/* Does VM v have a rate limit anywhere (a rate of its own or a disk's or
 * NIC's)? */
#define RATES_SQL                                                                                    \
	"(disk_bw <> '0' OR disk_iops <> '0' OR net_bw <> '0' OR net_pps <> '0' OR EXISTS (SELECT 1 " \
	"FROM disks WHERE vm_id = v.id AND (bw <> '0' OR iops <> '0')) OR EXISTS (SELECT 1 FROM nics " \
	"WHERE vm_id = v.id AND (rx_bw <> '0' OR tx_bw <> '0' OR rx_pps <> '0' OR tx_pps <> '0')))"

void tarnd_reconcile(struct tarnd *d)
{
	if (d->switch_pid)
		tarnd_switch_check(d); /* started again if it died */
	sqlite3_stmt *row = db_query(d->db, "SELECT v.id, t.name || '/' || v.name, kernel, initrd, cmdline, cpus, "
					    "mem_mib, backend, restart, desired, observed, pid, pid_start, cpu_limit, cpu_weight, "
					    "mem_limit_mib, " RATES_SQL ", s.state_path, s.mem_path "
					    "FROM vms v JOIN tenants t ON t.id = v.tenant_id LEFT JOIN snapshots s "
					    "ON s.id = v.restore_from", "");

	while (row && sqlite3_step(row) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(row, 0);
		const char *name = (const char *)sqlite3_column_text(row, 1);
		const char *desired = (const char *)sqlite3_column_text(row, 9);
		struct vmproc *p = proc_add(d, id);
		int status, ret;

		if (!p)
			continue;
		if (p->pid && check_ended(p, sqlite3_column_int64(row, 12), &status)) {
			ended(d, row, p, status);
			continue; /* the row changed: next pass */
		}
		if (p->pid)
			rotate_console(d, name);
		if (p->pid)
			watch_quotas(d, row, p);
		if (p->pid && !strcmp(desired, "stopped")) {
			stop_step(d, name, p);
		} else if (!p->pid && strcmp(desired, "stopped")) {
			pid_t owner;

			if (p->started_at && tarnd_now_ms() - p->started_at < RESTART_BACKOFF_MS)
				continue;
			if ((owner = sock_owner(d, name)) > 0) {
				adopt(d, p, name, owner, "serves its socket");
				continue;
			}
			ret = spawn(d, row, p);
			if (ret) {
				if (ret != -ECANCELED)
					tarnd_event(d, name, "failed", "cannot start tarn: %s", strerror(-ret));
				db_exec(d->db, "UPDATE vms SET desired = 'stopped', observed = 'failed' WHERE id = ?", "i",
					id);
			}
		}
	}
	sqlite3_finalize(row);
	/* Entries of rows deleted meanwhile. */
	for (int i = 0; i < d->nr_procs; i++) {
		sqlite3_stmt *st = db_query(d->db, "SELECT 1 FROM vms WHERE id = ?", "i", d->procs[i].id);

		if (st && sqlite3_step(st) != SQLITE_ROW && !d->procs[i].pid)
			proc_del(d, &d->procs[i--]);
		sqlite3_finalize(st);
	}
}

void tarnd_adopt(struct tarnd *d)
{
	sqlite3_stmt *row = db_query(d->db, "SELECT v.id, t.name || '/' || v.name, pid, pid_start FROM vms v "
					    "JOIN tenants t ON t.id = v.tenant_id", "");

	while (row && sqlite3_step(row) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(row, 0);
		const char *vm = (const char *)sqlite3_column_text(row, 1);
		pid_t pid = (pid_t)sqlite3_column_int64(row, 2), owner;
		struct vmproc *p = proc_add(d, id);

		if (!p)
			continue;
		if (sqlite3_column_type(row, 2) == SQLITE_NULL) {
			/* Started as tarnd died, not recorded: found by its socket.
			 * The loop then stops it if its row wants it stopped. */
			if ((owner = sock_owner(d, vm)) > 0)
				adopt(d, p, vm, owner, "serves its socket but was not recorded");
			continue;
		}
		p->pid = pid;
		p->child = false;
		/* The loop's first pass records the ones that ended. */
		if (proc_start_time(pid) == sqlite3_column_int64(row, 3))
			tarnd_event(d, vm, "adopted", "tarn (pid %d) still runs: watched again", pid);
	}
	sqlite3_finalize(row);
}

int tarnd_vm_api(struct tarnd *d, const char *vm, const char *method, const char *path, const char *body,
		 json_t **out, char *err, size_t len)
{
	char dir[4096], sock[4200];
	json_t *reply = NULL;
	long status = 0;
	int ret;

	tarnd_vm_dir(d, vm, dir, sizeof(dir));
	snprintf(sock, sizeof(sock), "%s/api.sock", dir);
	ret = http_request(sock, method, path, body, NULL, &status, &reply, err, len);
	if (!ret && status >= 300) {
		snprintf(err, len, "%s", json_string_value(json_object_get(reply, "fault_message"))
						 ? json_string_value(json_object_get(reply, "fault_message"))
						 : "refused");
		ret = -1;
	}
	if (out && !ret)
		*out = reply;
	else
		json_decref(reply);
	return ret;
}
