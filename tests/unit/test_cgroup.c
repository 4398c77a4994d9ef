/* tarnd's cgroups (src/daemon/cgroup.c) on fake trees, one of each
 * version: this host has only v1, so v2's files are checked here as v2
 * lays them out (the kernel's semantics behind them are not). The probe
 * reads a fake mountinfo and /proc/self/cgroup; the groups' files are
 * plain files made ahead, as the kernel would have them. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/cgroup.h"

static char root[256];

static void put(const char *rel, const char *text)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
		*p = 0;
		mkdir(path, 0755);
		*p = '/';
	}
	f = fopen(path, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void expect(const char *rel, const char *want)
{
	char path[512], got[256] = "";
	FILE *f;
	size_t n;

	snprintf(path, sizeof(path), "%s/%s", root, rel);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(got, 1, sizeof(got) - 1, f);
	got[n] = 0;
	fclose(f);
	if (strcmp(got, want))
		fail_msg("%s: '%s', expected '%s'", rel, got, want);
}

static void usage_is(int64_t cpu_ns, int64_t throttled_ns, int64_t mem, int64_t oom_kills)
{
	struct cg_usage u;

	cg_usage("t1/vm1", &u);
	assert_int_equal(u.cpu_ns, cpu_ns);
	assert_int_equal(u.throttled_ns, throttled_ns);
	assert_int_equal(u.mem_bytes, mem);
	assert_int_equal(u.oom_kills, oom_kills);
}

static int setup(void **state)
{
	snprintf(root, sizeof(root), "/tmp/tarn-cgroup-test-XXXXXX");
	assert_non_null(mkdtemp(root));
	return 0;
}

static int teardown(void **state)
{
	char cmd[300];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd);
}

static void test_v2(void **state)
{
	char mi[512];
	char err[256];

	/* tarnd sits in /svc of a cgroup2 mount at ROOT/cg. */
	snprintf(mi, sizeof(mi), "30 25 0:26 / %s/cg rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n", root);
	put("mountinfo", mi);
	put("self", "0::/svc\n");
	put("cg/svc/cgroup.controllers", "cpuset cpu io memory pids\n");
	put("cg/svc/cgroup.subtree_control", "");
	put("cg/svc/daemon/cgroup.procs", "");
	put("cg/svc/tarn/cgroup.subtree_control", "");
	put("cg/svc/tarn/t1/cgroup.subtree_control", "");
	for (int i = 0; i < 4; i++) {
		static const char *const files[] = { "cpu.max", "cpu.weight", "memory.max", "cgroup.procs" };
		char rel[128];

		snprintf(rel, sizeof(rel), "cg/svc/tarn/t1/vm1/%s", files[i]);
		put(rel, "");
	}
	snprintf(mi, sizeof(mi), "%s/mountinfo", root);
	char self[300];
	snprintf(self, sizeof(self), "%s/self", root);
	cg_probe_files(mi, self);
	assert_int_equal(cg_probe(), 2);
	/* tarnd moves itself into a leaf: no process may sit in a group
	 * whose children have controllers. */
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	expect("cg/svc/daemon/cgroup.procs", pid);
	assert_int_equal(cg_attach("t1/vm1", 4321, &(struct cg_limits){ 0.5, 200, 256ULL << 20 }, err, sizeof(err)), 0);
	expect("cg/svc/cgroup.subtree_control", "+cpu +memory");
	expect("cg/svc/tarn/cgroup.subtree_control", "+cpu +memory");
	expect("cg/svc/tarn/t1/cgroup.subtree_control", "+cpu +memory");
	expect("cg/svc/tarn/t1/vm1/cpu.max", "50000 100000");
	expect("cg/svc/tarn/t1/vm1/cpu.weight", "200");
	expect("cg/svc/tarn/t1/vm1/memory.max", "268435456");
	expect("cg/svc/tarn/t1/vm1/cgroup.procs", "4321");
	/* No limits: "max". */
	put("cg/svc/tarn/t1/vm1/cpu.max", "");
	put("cg/svc/tarn/t1/vm1/memory.max", "");
	assert_int_equal(cg_set("t1/vm1", &(struct cg_limits){ 0, 100, 0 }, err, sizeof(err)), 0);
	expect("cg/svc/tarn/t1/vm1/cpu.max", "max 100000");
	expect("cg/svc/tarn/t1/vm1/memory.max", "max");
	/* Usage, as v2 reports it. */
	put("cg/svc/tarn/t1/vm1/cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 9\n"
					  "nr_throttled 3\nthrottled_usec 250\n");
	put("cg/svc/tarn/t1/vm1/memory.current", "4096\n");
	put("cg/svc/tarn/t1/vm1/memory.events", "low 0\nhigh 0\nmax 5\noom 1\noom_kill 2\n");
	usage_is(1500000, 250000, 4096, 2);
}

static void test_v1(void **state)
{
	char mi[1024], self[300];
	char err[256];

	snprintf(mi, sizeof(mi),
		 "31 25 0:27 / %s/cpu rw - cgroup cgroup rw,cpu\n"
		 "32 25 0:28 / %s/acct rw - cgroup cgroup rw,cpuacct\n"
		 "33 25 0:29 / %s/mem rw - cgroup cgroup rw,memory\n",
		 root, root, root);
	put("mountinfo", mi);
	put("self", "5:memory:/svc\n4:cpuacct:/svc\n3:cpu:/svc\n0::/\n");
	static const char *const files[][2] = {
		{ "cpu", "cpu.cfs_period_us" }, { "cpu", "cpu.cfs_quota_us" }, { "cpu", "cpu.shares" },
		{ "cpu", "cgroup.procs" },	 { "acct", "cgroup.procs" },    { "mem", "memory.limit_in_bytes" },
		{ "mem", "cgroup.procs" },
	};
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		char rel[128];

		snprintf(rel, sizeof(rel), "%s/svc/tarn/t1/vm1/%s", files[i][0], files[i][1]);
		put(rel, "");
	}
	snprintf(mi, sizeof(mi), "%s/mountinfo", root);
	snprintf(self, sizeof(self), "%s/self", root);
	cg_probe_files(mi, self);
	assert_int_equal(cg_probe(), 1);
	assert_int_equal(cg_attach("t1/vm1", 99, &(struct cg_limits){ 0.25, 50, 1ULL << 30 }, err, sizeof(err)), 0);
	expect("cpu/svc/tarn/t1/vm1/cpu.cfs_period_us", "100000");
	expect("cpu/svc/tarn/t1/vm1/cpu.cfs_quota_us", "25000");
	expect("cpu/svc/tarn/t1/vm1/cpu.shares", "512");
	expect("mem/svc/tarn/t1/vm1/memory.limit_in_bytes", "1073741824");
	expect("cpu/svc/tarn/t1/vm1/cgroup.procs", "99");
	expect("acct/svc/tarn/t1/vm1/cgroup.procs", "99");
	expect("mem/svc/tarn/t1/vm1/cgroup.procs", "99");
	put("cpu/svc/tarn/t1/vm1/cpu.cfs_quota_us", "");
	assert_int_equal(cg_set("t1/vm1", &(struct cg_limits){ 0, 100, 0 }, err, sizeof(err)), 0);
	expect("cpu/svc/tarn/t1/vm1/cpu.cfs_quota_us", "-1");
	put("cpu/svc/tarn/t1/vm1/cpu.stat", "nr_periods 9\nnr_throttled 3\nthrottled_time 777\n");
	put("acct/svc/tarn/t1/vm1/cpuacct.usage", "123456\n");
	put("mem/svc/tarn/t1/vm1/memory.usage_in_bytes", "8192\n");
	put("mem/svc/tarn/t1/vm1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n");
	usage_is(123456, 777, 8192, 1);
}

static void test_none(void **state)
{
	char mi[300], self[300], err[256];

	put("mountinfo", "20 1 0:5 / /proc rw - proc proc rw\n");
	put("self", "0::/\n");
	snprintf(mi, sizeof(mi), "%s/mountinfo", root);
	snprintf(self, sizeof(self), "%s/self", root);
	cg_probe_files(mi, self);
	assert_int_equal(cg_probe(), 0);
	assert_int_equal(cg_attach("t1/vm1", 1, &(struct cg_limits){ 0.5, 100, 0 }, err, sizeof(err)), -ENOTSUP);
	assert_non_null(strstr(err, "no usable cgroups"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_v1, setup, teardown),
		cmocka_unit_test_setup_teardown(test_none, setup, teardown),
	};

	return cmocka_run_group_tests_name("cgroup", tests, NULL, NULL);
}
