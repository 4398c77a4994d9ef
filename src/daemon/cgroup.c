#include "daemon/cgroup.h"

/* Paths here are joined from a mount point, a group and a VM name: one
 * longer than PATH_MAX is cut short, and then fails to open, as it should. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"

#define CFS_PERIOD_US 100000 /* the quota is per 100 ms */

enum { CG_CPU, CG_ACCT, CG_MEM, CG_NR };
static const char *const v1_names[CG_NR] = { "cpu", "cpuacct", "memory" };

static int version = -1;
/* What cg_probe reads (cg_probe_files: tests give fake ones). */
static const char *mountinfo = "/proc/self/mountinfo", *self_cgroup = "/proc/self/cgroup";
static char base[CG_NR][PATH_MAX]; /* where our groups go: tarnd's own group's directory (v2: all the same) */

/* The cgroup path of this process in the hierarchy with the controller
 * (v1: "4:memory:/a/b"), or v2's ("0::/a/b") for NULL. */
static bool own_path(const char *controller, char *out, size_t len)
{
	FILE *f = fopen(self_cgroup, "re");
	char line[1024];
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f)) {
		char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;

		if (!c2)
			continue;
		*c2 = 0;
		c2[1 + strcspn(c2 + 1, "\n")] = 0;
		if (!controller) {
			found = !strncmp(line, "0", 1) && c1 == line + 1 && c1[1] == 0;
		} else {
			/* v1 may list co-mounted controllers: "cpu,cpuacct" */
			for (char *o = strtok(c1 + 1, ","); o && !found; o = strtok(NULL, ","))
				found = !strcmp(o, controller);
		}
		if (found)
			snprintf(out, len, "%s", c2 + 1);
	}
	if (f)
		fclose(f);
	return found;
}

/* The mount point of the v1 hierarchy with controller, or of cgroup2. */
static bool mount_of(const char *controller, char *out, size_t len)
{
	FILE *f = fopen(mountinfo, "re");
	char line[2048];
	bool found = false;

	while (f && !found && fgets(line, sizeof(line), f)) {
		char mnt[PATH_MAX], fstype[64], opts[1024];
		char *dash = strstr(line, " - ");

		if (!dash || sscanf(line, "%*s %*s %*s %*s %4095s", mnt) != 1 ||
		    sscanf(dash + 3, "%63s %*s %1023s", fstype, opts) != 2)
			continue;
		if (!controller && !strcmp(fstype, "cgroup2")) {
			found = true;
		} else if (controller && !strcmp(fstype, "cgroup")) {
			for (char *o = strtok(opts, ","); o && !found; o = strtok(NULL, ","))
				found = !strcmp(o, controller);
		}
		if (found)
			snprintf(out, len, "%s", mnt);
	}
	if (f)
		fclose(f);
	return found;
}

static int write_file(const char *dir, const char *file, const char *fmt, ...)
{
	char path[PATH_MAX + 64], buf[64];
	va_list ap;
	int fd, n, ret = 0;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	snprintf(path, sizeof(path), "%s/%s", dir, file);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, buf, (size_t)n) != n)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	return ret;
}

static int64_t read_num(const char *dir, const char *file, const char *key)
{
	char path[PATH_MAX + 64], line[256];
	long long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", dir, file);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f)) {
		size_t kl = key ? strlen(key) : 0;

		if (!key) {
			if (sscanf(line, "%lld", &v) != 1)
				v = -1;
			break;
		}
		if (!strncmp(line, key, kl) && line[kl] == ' ') {
			v = strtoll(line + kl + 1, NULL, 10);
			break;
		}
	}
	if (f)
		fclose(f);
	return v;
}

static void group_dir(int c, const char *vm, char *out, size_t len)
{
	snprintf(out, len, "%s/tarn/%s", base[c], vm);
}

/* mkdir -p of vm's group under base[c]; v2 also enables the cpu and memory
 * controllers down to it. */
static int make_group(int c, const char *vm)
{
	char path[PATH_MAX + 300];
	size_t start = strlen(base[c]);

	group_dir(c, vm, path, sizeof(path));
	for (char *p = path + start + 1; ; p++) {
		bool end = !*p;

		if (*p != '/' && !end)
			continue;
		*p = 0;
		if (version == 2) {
			char parent[PATH_MAX + 300];

			snprintf(parent, sizeof(parent), "%.*s", (int)(strrchr(path, '/') - path), path);
			write_file(parent, "cgroup.subtree_control", "+cpu +memory");
		}
		if (mkdir(path, 0755) && errno != EEXIST)
			return -errno;
		if (end)
			break;
		*p = '/';
	}
	return 0;
}

void cg_probe_files(const char *mounts, const char *own)
{
	mountinfo = mounts;
	self_cgroup = own;
	version = -1;
}

int cg_probe(void)
{
	char mnt[PATH_MAX], own[PATH_MAX], ctl[PATH_MAX + 32], daemon[PATH_MAX + 16];

	if (version >= 0)
		return version;
	version = 0;
	snprintf(ctl, sizeof(ctl), "%s", "/sys/fs/cgroup/cgroup.controllers");
	if (mount_of(NULL, mnt, sizeof(mnt)) && own_path(NULL, own, sizeof(own))) {
		FILE *f;
		char list[256] = "";

		snprintf(ctl, sizeof(ctl), "%s%s/cgroup.controllers", mnt, own);
		f = fopen(ctl, "re");
		if (f && fgets(list, sizeof(list), f) && strstr(list, "cpu") && strstr(list, "memory")) {
			for (int c = 0; c < CG_NR; c++)
				snprintf(base[c], sizeof(base[c]), "%s%s", mnt, strcmp(own, "/") ? own : "");
			/* No process may sit in a group whose children have
			 * controllers: tarnd moves itself into a leaf of its own. */
			snprintf(daemon, sizeof(daemon), "%s/daemon", base[0]);
			if (strcmp(own, "/") && (!mkdir(daemon, 0755) || errno == EEXIST))
				write_file(daemon, "cgroup.procs", "%d", (int)getpid());
			version = 2;
		}
		if (f)
			fclose(f);
		if (version)
			return version;
	}
	for (int c = 0; c < CG_NR; c++) {
		if (!mount_of(v1_names[c], mnt, sizeof(mnt)) || !own_path(v1_names[c], own, sizeof(own)))
			return version = 0;
		snprintf(base[c], sizeof(base[c]), "%s%s", mnt, strcmp(own, "/") ? own : "");
	}
	return version = 1;
}

static int set_limits(const char *vm, const struct cg_limits *l, char *err, size_t len)
{
	char dir[PATH_MAX + 300];
	long long quota = l->cpu > 0 ? (long long)(l->cpu * CFS_PERIOD_US + 0.5) : -1;
	int ret;

	group_dir(CG_CPU, vm, dir, sizeof(dir));
	if (version == 2) {
		ret = quota > 0 ? write_file(dir, "cpu.max", "%lld %d", quota, CFS_PERIOD_US)
				: write_file(dir, "cpu.max", "max %d", CFS_PERIOD_US);
		if (!ret)
			ret = write_file(dir, "cpu.weight", "%u", l->weight);
		if (!ret)
			ret = l->mem ? write_file(dir, "memory.max", "%llu", (unsigned long long)l->mem)
				     : write_file(dir, "memory.max", "max");
	} else {
		ret = write_file(dir, "cpu.cfs_period_us", "%d", CFS_PERIOD_US);
		if (!ret)
			ret = write_file(dir, "cpu.cfs_quota_us", "%lld", quota);
		if (!ret) /* v1's shares: 1024 is the default, as weight 100 is */
			ret = write_file(dir, "cpu.shares", "%u", l->weight * 1024 / 100 < 2 ? 2 : l->weight * 1024 / 100);
		group_dir(CG_MEM, vm, dir, sizeof(dir));
		if (!ret)
			ret = l->mem ? write_file(dir, "memory.limit_in_bytes", "%llu", (unsigned long long)l->mem)
				     : write_file(dir, "memory.limit_in_bytes", "-1");
	}
	if (ret)
		snprintf(err, len, "cgroup %s: %s", dir, strerror(-ret));
	return ret;
}

int cg_attach(const char *vm, pid_t pid, const struct cg_limits *l, char *err, size_t len)
{
	char dir[PATH_MAX + 300];
	int ret = 0;

	if (cg_probe() == 0) {
		snprintf(err, len, "no usable cgroups on this host (cpu, cpuacct and memory; or cgroup2 with cpu "
			 "and memory)");
		return -ENOTSUP;
	}
	for (int c = 0; c < (version == 2 ? 1 : CG_NR) && !ret; c++) {
		ret = make_group(c, vm);
		group_dir(c, vm, dir, sizeof(dir));
		if (ret)
			snprintf(err, len, "cgroup %s: %s", dir, strerror(-ret));
	}
	if (!ret)
		ret = set_limits(vm, l, err, len);
	for (int c = 0; c < (version == 2 ? 1 : CG_NR) && !ret; c++) {
		group_dir(c, vm, dir, sizeof(dir));
		ret = write_file(dir, "cgroup.procs", "%d", (int)pid);
		if (ret)
			snprintf(err, len, "cgroup %s: moving pid %d: %s", dir, (int)pid, strerror(-ret));
	}
	return ret;
}

int cg_set(const char *vm, const struct cg_limits *l, char *err, size_t len)
{
	if (cg_probe() == 0) {
		snprintf(err, len, "no usable cgroups on this host");
		return -ENOTSUP;
	}
	return set_limits(vm, l, err, len);
}

void cg_usage(const char *vm, struct cg_usage *u)
{
	char dir[PATH_MAX + 300];
	int64_t v;

	*u = (struct cg_usage){ -1, -1, -1, -1 };
	if (cg_probe() == 0)
		return;
	group_dir(CG_CPU, vm, dir, sizeof(dir));
	if (version == 2) {
		u->cpu_ns = (v = read_num(dir, "cpu.stat", "usage_usec")) >= 0 ? v * 1000 : -1;
		u->throttled_ns = (v = read_num(dir, "cpu.stat", "throttled_usec")) >= 0 ? v * 1000 : -1;
		u->mem_bytes = read_num(dir, "memory.current", NULL);
		u->oom_kills = read_num(dir, "memory.events", "oom_kill");
		return;
	}
	u->throttled_ns = read_num(dir, "cpu.stat", "throttled_time");
	group_dir(CG_ACCT, vm, dir, sizeof(dir));
	u->cpu_ns = read_num(dir, "cpuacct.usage", NULL);
	group_dir(CG_MEM, vm, dir, sizeof(dir));
	u->mem_bytes = read_num(dir, "memory.usage_in_bytes", NULL);
	u->oom_kills = read_num(dir, "memory.oom_control", "oom_kill");
}

void cg_remove(const char *vm)
{
	char dir[PATH_MAX + 300];

	if (cg_probe() == 0)
		return;
	for (int c = 0; c < (version == 2 ? 1 : CG_NR); c++) {
		group_dir(c, vm, dir, sizeof(dir));
		if (rmdir(dir) && errno != ENOENT)
			pr_debug("cgroup %s: %s", dir, strerror(errno));
	}
}
