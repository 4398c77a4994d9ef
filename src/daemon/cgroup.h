/* A VM's CPU and memory quotas, through the host's cgroups: v2 (one
 * hierarchy, cpu.max, cpu.weight, memory.max) or v1 (the cpu, cpuacct and
 * memory hierarchies mounted apart: cpu.cfs_quota_us, cpu.shares,
 * memory.limit_in_bytes), whichever the host has. Each VM gets a group
 * tarn/TENANT/NAME under tarnd's own. */
#ifndef TARN_DAEMON_CGROUP_H
#define TARN_DAEMON_CGROUP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct cg_limits {
	double cpu;	 /* cores (0.5: half of one), 0 for no limit */
	unsigned weight; /* relative share under contention, 1..10000, 100 the default */
	uint64_t mem;	 /* bytes, 0 for no limit */
};

/* Find the host's cgroups (once). 2 for v2, 1 for v1, 0 for none usable:
 * then the others do nothing and return -ENOTSUP. */
int cg_probe(void);
/* For tests: probe again, from these files instead of /proc/self/mountinfo
 * and /proc/self/cgroup (a fake tree: tests/unit/test_cgroup.c). */
void cg_probe_files(const char *mountinfo, const char *self_cgroup);

/* Create the VM's group, set its limits, and move pid into it. 0 or -errno
 * with the reason in err. */
int cg_attach(const char *vm, pid_t pid, const struct cg_limits *l, char *err, size_t len)
	__attribute__((warn_unused_result));

/* Change a running VM's limits. 0 or -errno with the reason in err. */
int cg_set(const char *vm, const struct cg_limits *l, char *err, size_t len) __attribute__((warn_unused_result));

/* What the group has used: CPU time and time throttled (ns), memory now
 * (bytes), times the memory limit killed a process. -1 where unknown. */
struct cg_usage {
	int64_t cpu_ns, throttled_ns, mem_bytes, oom_kills;
};
void cg_usage(const char *vm, struct cg_usage *u);

/* Remove the VM's group (empty: its process ended). */
void cg_remove(const char *vm);

#endif
