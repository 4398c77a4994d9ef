/* The jail (jail.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <grp.h>

#include "core/config.h"
#include "core/jail.h"

/* What tarn calls once it runs a VM, every thread (glibc's names for
 * them where they differ: openat for open, newfstatat for stat). What it
 * calls only while it starts (execve, socket, bind, listen, mount, ...)
 * is not here. clone only makes threads (below); clone3, whose flags a
 * filter cannot see, says ENOSYS and glibc falls back to clone. */
static const char *const vmm_calls[] = {
	/* I/O on what is open */
	"read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
	"lseek", "close", "fsync", "fdatasync", "sync_file_range", "fallocate", "ftruncate", "flock", "fcntl",
	"dup", "dup2", "dup3", "ioctl", "sendfile", "copy_file_range",
	/* files the API names: snapshots, the logger, metrics */
	"openat", "newfstatat", "fstat", "statx", "unlink", "unlinkat", "rename", "renameat", "renameat2",
	"mkdir", "mkdirat", "access", "faccessat", "faccessat2", "readlink", "readlinkat", "getcwd", "fchmod",
	"fchmodat", "umask",
	/* memory */
	"mmap", "munmap", "mprotect", "madvise", "mremap", "brk", "mincore", "msync",
	/* threads, signals, time */
	"futex", "set_robust_list", "get_robust_list", "rseq", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn",
	"rt_sigtimedwait", "sigaltstack", "tgkill", "tkill", "getpid", "gettid", "exit", "exit_group",
	"sched_yield", "sched_getaffinity", "prctl", "seccomp", "prlimit64", "getrandom", "sysinfo", "uname", "getuid",
	"geteuid", "getgid", "getegid", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep",
	"gettimeofday", "time", "timerfd_create", "timerfd_settime", "timerfd_gettime",
	/* the event loop and the API's connections */
	"epoll_create1", "epoll_ctl", "epoll_wait", "epoll_pwait", "eventfd2", "signalfd4", "poll", "ppoll",
	"select", "pselect6", "pipe2", "accept", "accept4", "recvfrom", "recvmsg", "sendto", "sendmsg",
	"shutdown", "getsockopt", "setsockopt", "getsockname", "getpeername",
};

/* What a vCPU thread never calls, on top: it runs the guest and the
 * devices' register accesses, nothing that makes threads, files or
 * connections. */
static const char *const not_vcpu_calls[] = {
	"openat", "unlink", "unlinkat", "rename", "renameat", "renameat2", "mkdir", "mkdirat", "fchmod",
	"fchmodat", "ftruncate", "flock", "dup", "dup2", "dup3", "accept", "accept4", "shutdown", "clone",
	"clone3", "prlimit64", "sendfile", "copy_file_range", "pipe2", "epoll_create1", "signalfd4",
	"timerfd_create", "eventfd2",
};

#define NAMES_MAX 512
static char *call_names[NAMES_MAX]; /* for the SIGSYS line: resolved ahead */
static bool entered;
static char test_call[32]; /* TARN_JAIL_TEST's call for this jail, if any */

static int errorf(char *err, size_t len, int ret, const char *what)
{
	snprintf(err, len, "jail: %s: %s", what, strerror(-ret));
	return ret;
}

int jail_parse(const char *spec, struct jail_config *j, char *err, size_t len)
{
	static char root[4096];
	char *save, *opt, buf[4200];
	uint64_t v;
	bool uid = false, gid = false;

	if (strlen(spec) >= sizeof(buf))
		goto bad;
	strcpy(buf, spec);
	opt = strtok_r(buf, ",", &save);
	if (!opt || opt[0] != '/')
		goto bad;
	snprintf(root, sizeof(root), "%s", opt);
	j->root = root;
	while ((opt = strtok_r(NULL, ",", &save))) {
		if (!strncmp(opt, "uid=", 4) && !parse_uint(opt + 4, 1, 0xfffffffe, &v)) {
			j->uid = (uid_t)v;
			uid = true;
		} else if (!strncmp(opt, "gid=", 4) && !parse_uint(opt + 4, 1, 0xfffffffe, &v)) {
			j->gid = (gid_t)v;
			gid = true;
		} else {
			goto bad;
		}
	}
	if (uid && gid)
		return 0;
bad:
	snprintf(err, len, "--jail %s: expected DIR,uid=N,gid=N (an absolute directory; ids other than 0)", spec);
	return -EINVAL;
}

/* A call outside the filter: say which, and end the process (only
 * async-signal-safe calls, and those the filter allows). */
static void sigsys(int sig, siginfo_t *si, void *uc)
{
	char line[200], thread[17] = "?";
	int nr = si->si_syscall;
	const char *name = nr >= 0 && nr < NAMES_MAX && call_names[nr] ? call_names[nr] : "?";
	int n;

	prctl(PR_GET_NAME, thread);
	n = snprintf(line, sizeof(line),
		     "tarn: jail: forbidden system call %s (%d) in thread %s: the VM ends\n", name, nr, thread);
	if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
		_exit(8);
	_exit(8);
}

/* A filter of rules with action act on names[], default def; tsync: on
 * every thread at once. 0 or -errno. */
static int load_filter(uint32_t def, uint32_t act, const char *const *names, size_t n, bool tsync, bool vmm)
{
	scmp_filter_ctx ctx = seccomp_init(def);
	int ret = ctx ? 0 : -ENOMEM;

	for (size_t i = 0; i < n && !ret; i++) {
		int nr = seccomp_syscall_resolve_name(names[i]);

		if (nr == __NR_SCMP_ERROR)
			continue; /* not on this architecture */
		ret = seccomp_rule_add(ctx, act, nr, 0);
	}
	if (vmm && !ret) {
		/* Threads only; clone3 falls back to clone. */
		ret = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
				       SCMP_A0(SCMP_CMP_MASKED_EQ, CLONE_THREAD, CLONE_THREAD));
		if (!ret)
			ret = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), SCMP_SYS(clone3), 0);
	}
	if (!ret && tsync)
		ret = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1);
	if (!ret)
		ret = seccomp_load(ctx);
	seccomp_release(ctx);
	return ret;
}

/* The test hook (jail.h): TARN_JAIL_TEST=CALL:DIR names a call that the
 * first vCPU thread of the tarn jailed in DIR makes, to show what a
 * forbidden one does. Read before the jail (the environment stays). */
static void test_hook_read(const char *root)
{
	const char *t = getenv("TARN_JAIL_TEST"), *colon = t ? strchr(t, ':') : NULL;

	if (colon && !strcmp(colon + 1, root) && (size_t)(colon - t) < sizeof(test_call))
		memcpy(test_call, t, (size_t)(colon - t));
}

int jail_enter(const struct jail_config *j, char *err, size_t len)
{
	struct sigaction sa = { .sa_sigaction = sigsys, .sa_flags = SA_SIGINFO };
	int ret;

	test_hook_read(j->root);
	/* What glibc reads lazily, read now: the time zone (gmtime_r loads
	 * it on first use). */
	tzset();
	/* The VM's directory becomes /: the host's tree is unmounted from
	 * our (own) mount namespace. */
	if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL))
		return errorf(err, len, -errno, "cannot make the mounts private");
	if (mount(j->root, j->root, NULL, MS_BIND | MS_REC, NULL))
		return errorf(err, len, -errno, j->root);
	if (chdir(j->root) || syscall(SYS_pivot_root, ".", ".") || umount2(".", MNT_DETACH) || chdir("/"))
		return errorf(err, len, -errno, "pivot_root");
	/* rlimits */
	if (setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 }) ||
	    setrlimit(RLIMIT_NOFILE, &(struct rlimit){ JAIL_NOFILE, JAIL_NOFILE }) ||
	    setrlimit(RLIMIT_NPROC, &(struct rlimit){ JAIL_NPROC, JAIL_NPROC }))
		return errorf(err, len, -errno, "setrlimit");
	/* Root's capabilities go with root; this thread's bounding set too. */
	for (int cap = 0; cap <= CAP_LAST_CAP; cap++)
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) && errno != EINVAL)
			return errorf(err, len, -errno, "dropping the bounding set");
	if (setgroups(0, NULL) || setresgid(j->gid, j->gid, j->gid) || setresuid(j->uid, j->uid, j->uid))
		return errorf(err, len, -errno, "cannot take the jail's uid and gid");
	if (!getuid() || !geteuid())
		return errorf(err, len, -EPERM, "still root");
	/* NoNewPrivs, then the filter on every thread (TSYNC gives them
	 * NoNewPrivs too). */
	for (int nr = 0; nr < NAMES_MAX; nr++)
		call_names[nr] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
	if (sigaction(SIGSYS, &sa, NULL))
		return errorf(err, len, -errno, "SIGSYS");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		return errorf(err, len, -errno, "NoNewPrivs");
	ret = load_filter(SCMP_ACT_TRAP, SCMP_ACT_ALLOW, vmm_calls, sizeof(vmm_calls) / sizeof(vmm_calls[0]), true,
			  true);
	if (ret)
		return errorf(err, len, ret, "seccomp");
	entered = true;
	return 0;
}


bool jail_entered(void)
{
	return entered;
}

void jail_vcpu_thread(void)
{
	int ret;

	if (!entered)
		return;
	ret = load_filter(SCMP_ACT_ALLOW, SCMP_ACT_TRAP, not_vcpu_calls,
			  sizeof(not_vcpu_calls) / sizeof(not_vcpu_calls[0]), false, false);
	if (ret) {
		/* The process's filter still holds; say so and go on. */
		char line[96];
		int n = snprintf(line, sizeof(line), "tarn: jail: the vCPU's own filter: %s\n", strerror(-ret));

		if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0)
			return;
	}
	if (test_call[0]) {
		int nr = seccomp_syscall_resolve_name(test_call);

		test_call[0] = 0;
		if (nr >= 0)
			syscall(nr, 0, 0, 0, 0, 0, 0);
	}
}
