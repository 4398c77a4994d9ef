/* tarnd's REST API (docs/tarnd.json): /v1/vms and its verbs, /v1/events,
 * /v1/host, /v1/tenants. One request at a time under the daemon's lock,
 * one database transaction each, every request recorded in the audit
 * table with who made it.
 *
 * Who: a request with "Authorization: Bearer TOKEN" acts as the token's
 * tenant, and sees and changes only that tenant's VMs and events (another
 * tenant's VM is 404, as if it did not exist); one without acts as admin,
 * since only who may open the socket gets here; over TCP (tarnd --listen)
 * a token is a must. The admin names a VM's tenant with ?tenant= (default:
 * "default"). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include <nettle/sha2.h>
#include <sys/random.h>

#include "api/http.h"
#include "core/log.h"
#include "core/ratelimit.h"
#include "core/vm.h"
#include "daemon/cgroup.h"
#include "daemon/db.h"
#include "daemon/routes.h"
#include "daemon/tarnd.h"
#include "virtio/net_backend.h"

#define TARND_BODY_MAX (64u << 10)
#define LOG_TAIL_DEFAULT (64u << 10)

struct tarnd *D;
static struct http_server *srv[2]; /* the Unix socket, TCP */

void qualified(const struct caller *c, const char *name, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", c->tenant, name);
}

bool name_ok(const char *n)
{
	size_t len = strlen(n);

	if (!len || len > 63 || !isalnum((unsigned char)n[0]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)n[i]) && n[i] != '-' && n[i] != '_' && n[i] != '.')
			return false;
	return true;
}

static const char *const vm_cols = "v.id, v.name, kernel, initrd, cmdline, cpus, mem_mib, backend, restart, desired, "
				   "observed, pid, exit_status, restarts, v.created_at, updated_at, t.name, cpu_limit, "
				   "cpu_weight, mem_limit_mib, disk_bw, disk_iops, net_bw, net_pps FROM vms v JOIN tenants t "
				   "ON t.id = v.tenant_id";

/* The I/O rate quotas: columns 20.. of vm_cols, fields of the API. */
static const char *const io_rates[4] = { "disk_bw", "disk_iops", "net_bw", "net_pps" };
/* One disk's and one NIC's own (TARND_DISKS_SQL, TARND_NICS_SQL). */
const char *const tarnd_disk_rates[2] = { "bw", "iops" };
const char *const tarnd_nic_rates[4] = { "rx_bw", "tx_bw", "rx_pps", "tx_pps" };

json_t *text_or_null(sqlite3_stmt *st, int col)
{
	const unsigned char *t = sqlite3_column_text(st, col);

	return t ? json_string((const char *)t) : json_null();
}

static json_t *vm_json(sqlite3_stmt *st)
{
	json_t *j = json_pack("{s:s,s:s,s:o,s:o,s:o,s:i,s:i,s:s,s:s,s:s,s:s,s:o,s:o,s:I,s:I,s:f,s:i,s:i}",
			      "name", sqlite3_column_text(st, 1), "tenant", sqlite3_column_text(st, 16), "kernel",
			      text_or_null(st, 2), "initrd", text_or_null(st, 3), "cmdline", text_or_null(st, 4), "cpus",
			      sqlite3_column_int(st, 5), "mem_mib", sqlite3_column_int(st, 6), "backend",
			      sqlite3_column_text(st, 7), "restart", sqlite3_column_text(st, 8), "desired",
			      sqlite3_column_text(st, 9), "state", sqlite3_column_text(st, 10), "pid",
			      sqlite3_column_type(st, 11) == SQLITE_NULL ? json_null()
									 : json_integer(sqlite3_column_int64(st, 11)),
			      "exit_status",
			      sqlite3_column_type(st, 12) == SQLITE_NULL ? json_null()
									 : json_integer(sqlite3_column_int64(st, 12)),
			      "created_at", (json_int_t)sqlite3_column_int64(st, 14), "updated_at",
			      (json_int_t)sqlite3_column_int64(st, 15), "cpu_limit", sqlite3_column_double(st, 17),
			      "cpu_weight", sqlite3_column_int(st, 18), "mem_limit_mib", sqlite3_column_int(st, 19));

	for (int i = 0; i < 4; i++)
		json_object_set_new(j, io_rates[i], json_string((const char *)sqlite3_column_text(st, 20 + i)));
	json_object_set_new(j, "disks", json_array());
	json_object_set_new(j, "nics", json_array());
	/* Each disk and NIC with the rates it gets. */
	sqlite3_stmt *d = db_query(D->db, TARND_DISKS_SQL, "i", sqlite3_column_int64(st, 0));
	while (d && sqlite3_step(d) == SQLITE_ROW) {
		json_t *e = json_pack("{s:s,s:b}", "path", sqlite3_column_text(d, 1), "ro", sqlite3_column_int(d, 2));

		for (int i = 0; i < 2; i++)
			json_object_set_new(e, tarnd_disk_rates[i], text_or_null(d, 3 + i));
		json_array_append_new(json_object_get(j, "disks"), e);
	}
	sqlite3_finalize(d);
	d = db_query(D->db, TARND_NICS_SQL, "i", sqlite3_column_int64(st, 0));
	while (d && sqlite3_step(d) == SQLITE_ROW) {
		json_t *e = sqlite3_column_type(d, 7) != SQLITE_NULL
				    ? json_pack("{s:s,s:o,s:o}", "network", sqlite3_column_text(d, 8), "mac", text_or_null(d, 2),
						"ips", text_or_null(d, 9))
				    : json_pack("{s:s,s:o}", "tap", sqlite3_column_text(d, 1), "mac", text_or_null(d, 2));

		for (int i = 0; i < 4 && sqlite3_column_type(d, 7) == SQLITE_NULL; i++)
			json_object_set_new(e, tarnd_nic_rates[i], text_or_null(d, 3 + i));
		json_array_append_new(json_object_get(j, "nics"), e);
	}
	sqlite3_finalize(d);

	/* What its group has used, while it runs. */
	if (sqlite3_column_type(st, 11) != SQLITE_NULL) {
		struct cg_usage u;
		char vm[256];

		snprintf(vm, sizeof(vm), "%s/%s", sqlite3_column_text(st, 16), sqlite3_column_text(st, 1));
		cg_usage(vm, &u);
		json_object_set_new(j, "usage", json_pack("{s:I,s:I,s:I}", "cpu_ns", (json_int_t)u.cpu_ns,
							  "cpu_throttled_ns", (json_int_t)u.throttled_ns, "mem_bytes",
							  (json_int_t)u.mem_bytes));
	}
	return j;
}

sqlite3_stmt *tenant_row(const struct caller *c, const char *cols, const char *name)
{
	char sql[1024];
	sqlite3_stmt *st;

	snprintf(sql, sizeof(sql), "SELECT %s WHERE v.tenant_id = ? AND v.name = ?", cols);
	st = db_query(D->db, sql, "is", c->tenant_id, name);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		return st;
	sqlite3_finalize(st);
	return NULL;
}

struct http_reply row_reply(const struct caller *c, unsigned status, const char *cols, const char *name,
			    json_t *(*to_json)(sqlite3_stmt *st), const char *what)
{
	sqlite3_stmt *st = tenant_row(c, cols, name);
	struct http_reply r = st ? (struct http_reply){ status, to_json(st), NULL }
				 : http_fault(404, "no %s named %s", what, name);

	sqlite3_finalize(st);
	return r;
}

sqlite3_stmt *vm_row(const struct caller *c, const char *name)
{
	return tenant_row(c, vm_cols, name);
}

struct http_reply vm_reply(const struct caller *c, unsigned status, const char *name)
{
	return row_reply(c, status, vm_cols, name, vm_json, "VM");
}

/* ---- the resource pool ---- */

struct pool {
	double vcpus, mem_mib;		 /* what VMs may be promised */
	int64_t vcpus_promised, mem_promised; /* to VMs that are to run (desired running or paused) */
};

/* The host's pool: its CPUs times the CPU overcommit ratio, its memory
 * less the reserve times the memory one; what is promised, but to VM
 * except (its id; 0: none). */
static void pool_get(struct pool *p, int64_t except)
{
	struct sysinfo si;
	double mem;
	sqlite3_stmt *st;

	sysinfo(&si);
	mem = (double)((uint64_t)si.totalram * si.mem_unit >> 20) - (double)D->mem_reserve_mib;
	p->vcpus = (double)sysconf(_SC_NPROCESSORS_ONLN) * D->cpu_overcommit;
	p->mem_mib = (mem > 0 ? mem : 0) * D->mem_overcommit;
	p->vcpus_promised = p->mem_promised = 0;
	st = db_query(D->db, "SELECT coalesce(sum(cpus), 0), coalesce(sum(mem_mib), 0) FROM vms WHERE desired != "
			     "'stopped' AND id != ?", "i", except);
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		p->vcpus_promised = sqlite3_column_int64(st, 0);
		p->mem_promised = sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
}

const char *admit(int64_t id, int64_t cpus, int64_t mem, char *why, size_t len)
{
	struct pool p;

	pool_get(&p, id);
	if ((double)(p.vcpus_promised + cpus) > p.vcpus + 1e-9) {
		snprintf(why, len, "does not fit: %lld vCPUs asked, %.0f of %.0f left (%.2g per host CPU; tarnd "
			 "--cpu-overcommit)", (long long)cpus, p.vcpus - (double)p.vcpus_promised, p.vcpus,
			 D->cpu_overcommit);
		return why;
	}
	if ((double)(p.mem_promised + mem) > p.mem_mib + 1e-9) {
		snprintf(why, len, "does not fit: %lld MiB asked, %.0f of %.0f MiB left (tarnd --mem-overcommit, "
			 "--mem-reserve)", (long long)mem, p.mem_mib - (double)p.mem_promised, p.mem_mib);
		return why;
	}
	return NULL;
}

/* The admin sees every tenant's VMs, a tenant its own. */
struct http_reply list_rows(const struct caller *c, const char *cols, json_t *(*to_json)(sqlite3_stmt *st),
			   const char *key)
{
	char sql[512];
	sqlite3_stmt *st;
	json_t *arr = json_array();

	snprintf(sql, sizeof(sql), "SELECT %s WHERE ? OR v.tenant_id = ? ORDER BY t.name, v.name", cols);
	st = db_query(D->db, sql, "ii", (int64_t)c->admin, c->tenant_id);
	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, to_json(st));
	sqlite3_finalize(st);
	return http_ok(json_pack("{s:o}", key, arr));
}

static const struct http_field create_fields[] = {
	{ "name", F_STR, true },     { "kernel", F_STR, true }, { "initrd", F_STR, false },
	{ "cmdline", F_STR, false }, { "cpus", F_INT, false },	{ "mem_mib", F_INT, false },
	{ "backend", F_STR, false }, { "restart", F_STR, false }, { "start", F_BOOL, false },
	{ "cpu_limit", F_NUM, false }, { "cpu_weight", F_INT, false }, { "mem_limit_mib", F_INT, false },
	{ "disk_bw", F_STR, false }, { "disk_iops", F_STR, false }, { "net_bw", F_STR, false },
	{ "net_pps", F_STR, false }, { "disks", F_ARR, false }, { "nics", F_ARR, false },
};

/* The quota fields of in (create or PATCH): checked into l and rates[]
 * (io_rates' order; those not in `in` left as they are). NULL or why not. */
static const char *quotas(json_t *in, struct cg_limits *l, const char *rates[4], char *why, size_t len)
{
	json_t *v;

	for (int i = 0; i < 4; i++) {
		struct tb_config tb;
		char w[200];

		if (!(v = json_object_get(in, io_rates[i])))
			continue;
		if (rl_parse(json_string_value(v), &tb, w, sizeof(w))) {
			snprintf(why, len, "%s %s", io_rates[i], w);
			return why;
		}
		rates[i] = json_string_value(v);
	}

	if ((v = json_object_get(in, "cpu_limit"))) {
		l->cpu = json_number_value(v);
		if (l->cpu < 0 || l->cpu > 255 || (l->cpu > 0 && l->cpu < 0.01)) {
			snprintf(why, len, "cpu_limit %g: cores, 0.01 to 255 (0: none)", l->cpu);
			return why;
		}
		l->cpu = (double)(int64_t)(l->cpu * 100 + 0.5) / 100; /* 0.01 of a core */
	}
	if ((v = json_object_get(in, "cpu_weight")) &&
	    (json_integer_value(v) < 1 || json_integer_value(v) > 10000)) {
		snprintf(why, len, "cpu_weight %lld: 1 to 10000 (100 the default)", (long long)json_integer_value(v));
		return why;
	}
	if (v)
		l->weight = (unsigned)json_integer_value(v);
	if ((v = json_object_get(in, "mem_limit_mib")) &&
	    (json_integer_value(v) < 0 || json_integer_value(v) > (1 << 22))) {
		snprintf(why, len, "mem_limit_mib %lld: 0 (none) to 4194304", (long long)json_integer_value(v));
		return why;
	}
	if (v)
		l->mem = (uint64_t)json_integer_value(v) << 20;
	return NULL;
}

static const struct http_field disk_fields[] = {
	{ "path", F_STR, false }, { "volume", F_STR, false }, { "ro", F_BOOL, false },
	{ "bw", F_STR, false },	  { "iops", F_STR, false },
};
static const struct http_field nic_fields[] = {
	{ "tap", F_STR, false },   { "network", F_STR, false }, { "mac", F_STR, false }, { "ips", F_ARR, false },
	{ "rx_bw", F_STR, false }, { "tx_bw", F_STR, false },	 { "rx_pps", F_STR, false }, { "tx_pps", F_STR, false },
};

/* A NIC on one of the caller's networks: its id into e ("network_id")
 * and its addresses joined ("ips_joined"). NULL, or why not. */
static const char *nic_network(const struct caller *c, json_t *e, size_t i, char *why, size_t len)
{
	const char *net = json_string_value(json_object_get(e, "network"));
	sqlite3_stmt *st = tenant_row(c, "v.id FROM networks v", net);
	char joined[512] = "";
	unsigned n4 = 0, n6 = 0;
	size_t k;
	json_t *a;

	if (!st) {
		snprintf(why, len, "nics[%zu]: no network named %s", i, net);
		return why;
	}
	json_object_set_new(e, "network_id", json_integer((json_int_t)sqlite3_column_int64(st, 0)));
	sqlite3_finalize(st);
	json_array_foreach(json_object_get(e, "ips"), k, a) {
		uint8_t buf[16];
		const char *ip = json_string_value(a);
		bool v4 = ip && inet_pton(AF_INET, ip, buf) == 1, v6 = ip && !v4 && inet_pton(AF_INET6, ip, buf) == 1;

		if ((!v4 && !v6) || (v4 ? ++n4 : ++n6) > 4 || strlen(joined) + strlen(ip) + 2 > sizeof(joined)) {
			snprintf(why, len, "nics[%zu] ips: IPv4 or IPv6 addresses, at most 4 of each", i);
			return why;
		}
		snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s", *joined ? "," : "", ip);
	}
	if (*joined)
		json_object_set_new(e, "ips_joined", json_string(joined));
	return NULL;
}

/* The rates among keys[0..n) that device e (what[i]) sets: each a rate
 * tarn takes (null too, where nullable: the VM's again). NULL or why not. */
static const char *check_rates(json_t *e, const char *what, size_t i, const char *const *keys, int n,
			       bool nullable, char *why, size_t len)
{
	for (int k = 0; k < n; k++) {
		json_t *v = json_object_get(e, keys[k]);
		struct tb_config tb;
		char w[200];

		if (!v || (nullable && json_is_null(v)))
			continue;
		if (!json_is_string(v)) {
			snprintf(why, len, "%s[%zu]: field '%s' must be a string%s", what, i, keys[k],
				 nullable ? " or null" : "");
			return why;
		}
		if (rl_parse(json_string_value(v), &tb, w, sizeof(w))) {
			snprintf(why, len, "%s[%zu] %s %s", what, i, keys[k], w);
			return why;
		}
	}
	return NULL;
}

const char *check_devices(const struct caller *c, json_t *in, char *why, size_t len)
{
	json_t *disks = json_object_get(in, "disks"), *nics = json_object_get(in, "nics"), *e;
	char w[200];
	size_t i;

	if (json_array_size(disks) > VM_MAX_DISKS || json_array_size(nics) > VM_MAX_NETS) {
		snprintf(why, len, "at most %d disks and %d NICs", VM_MAX_DISKS, VM_MAX_NETS);
		return why;
	}
	json_array_foreach(disks, i, e) {
		const char *path, *vol;
		char vpath[4200];
		int64_t vid;

		if (http_check_fields(e, disk_fields, sizeof(disk_fields) / sizeof(disk_fields[0]), false, w, sizeof(w))) {
			snprintf(why, len, "disks[%zu]: %s", i, w);
			return why;
		}
		if (check_rates(e, "disks", i, tarnd_disk_rates, 2, false, why, len))
			return why;
		path = json_string_value(json_object_get(e, "path"));
		vol = json_string_value(json_object_get(e, "volume"));
		if (!path == !vol) {
			snprintf(why, len, "disks[%zu]: a path or a volume, one of them", i);
			return why;
		}
		if (vol) {
			/* The caller's volume: its file becomes the path. */
			if (volume_for_disk(c, vol, json_is_true(json_object_get(e, "ro")), vpath, sizeof(vpath), &vid, w,
					    sizeof(w))) {
				snprintf(why, len, "disks[%zu]: %s", i, w);
				return why;
			}
			json_object_set_new(e, "path", json_string(vpath));
			json_object_set_new(e, "volume_id", json_integer((json_int_t)vid));
			continue;
		}
		if (path[0] != '/' || strchr(path, ',') || access(path, R_OK)) {
			snprintf(why, len, "disks[%zu] %s: %s", i, path,
				 path[0] != '/' ? "give an absolute path" : strchr(path, ',') ? "a comma in the path" : strerror(errno));
			return why;
		}
	}
	json_array_foreach(nics, i, e) {
		const char *tap, *mac;

		if (http_check_fields(e, nic_fields, sizeof(nic_fields) / sizeof(nic_fields[0]), false, w, sizeof(w))) {
			snprintf(why, len, "nics[%zu]: %s", i, w);
			return why;
		}
		if (check_rates(e, "nics", i, tarnd_nic_rates, 4, false, why, len))
			return why;
		tap = json_string_value(json_object_get(e, "tap"));
		mac = json_string_value(json_object_get(e, "mac"));
		if (!tap == !json_object_get(e, "network")) {
			snprintf(why, len, "nics[%zu]: a network or a tap, one of them", i);
			return why;
		}
		if (tap && !c->admin) {
			/* A host tap may carry anybody's traffic: the admin's to give. */
			snprintf(why, len, "nics[%zu]: a tap is the admin's to give; a tenant's NICs are on its networks", i);
			return why;
		}
		if (tap && json_object_get(e, "ips")) {
			snprintf(why, len, "nics[%zu]: ips is for a NIC on a network (the switch checks them)", i);
			return why;
		}
		if (tap && !net_tap_name_ok(tap)) {
			snprintf(why, len, "nics[%zu] tap %s: not a tap device name", i, tap);
			return why;
		}
		if (!tap && nic_network(c, e, i, why, len))
			return why;
		if (mac && !net_mac_ok(mac)) {
			snprintf(why, len, "nics[%zu] mac %s: six hex bytes, like 52:54:00:12:34:56", i, mac);
			return why;
		}
	}
	return NULL;
}

int insert_devices(int64_t id, json_t *in)
{
	json_t *e;
	size_t i;
	int ret = 0;

	json_array_foreach(json_object_get(in, "disks"), i, e)
		ret |= db_exec(D->db, "INSERT INTO disks (vm_id, idx, path, ro, volume_id, bw, iops) VALUES "
				      "(?, ?, ?, ?, NULLIF(?, 0), ?, ?)", "iisiiss", id, (int64_t)i,
			       json_string_value(json_object_get(e, "path")), (int64_t)json_is_true(json_object_get(e, "ro")),
			       (int64_t)json_integer_value(json_object_get(e, "volume_id")),
			       json_string_value(json_object_get(e, "bw")), json_string_value(json_object_get(e, "iops")));
	json_array_foreach(json_object_get(in, "nics"), i, e) {
		const char *mac = json_string_value(json_object_get(e, "mac"));
		uint8_t b[3] = { 0 };
		char own[20];

		if (!mac) {
			/* One of its own, kept: the guest sees the same on every start. */
			if (getrandom(b, sizeof(b), 0) != sizeof(b))
				return -1;
			snprintf(own, sizeof(own), "52:54:00:%02x:%02x:%02x", b[0], b[1], b[2]);
			mac = own;
		}
		ret |= db_exec(D->db, "INSERT INTO nics (vm_id, idx, tap, mac, rx_bw, tx_bw, rx_pps, tx_pps, network_id, ips) "
				      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULLIF(?, 0), ?)", "iissssssis", id, (int64_t)i,
			       json_object_get(e, "tap") ? json_string_value(json_object_get(e, "tap")) : "", mac,
			       json_string_value(json_object_get(e, "rx_bw")), json_string_value(json_object_get(e, "tx_bw")),
			       json_string_value(json_object_get(e, "rx_pps")), json_string_value(json_object_get(e, "tx_pps")),
			       (int64_t)json_integer_value(json_object_get(e, "network_id")),
			       json_string_value(json_object_get(e, "ips_joined")));
	}
	return ret;
}

static struct http_reply create_vm(const struct caller *c, json_t *in)
{
	char vm[256];
	const char *rates[4] = { "0", "0", "0", "0" };
	const char *name, *kernel, *initrd, *backend, *restart;
	struct cg_limits l = { .weight = 100 };
	json_int_t cpus, mem;
	sqlite3_stmt *st;
	char why[256];
	bool taken;

	HTTP_CHECK(in, create_fields, false);
	if (quotas(in, &l, rates, why, sizeof(why)) || check_devices(c, in, why, sizeof(why)))
		return http_fault(400, "%s", why);
	name = json_string_value(json_object_get(in, "name"));
	kernel = json_string_value(json_object_get(in, "kernel"));
	initrd = json_string_value(json_object_get(in, "initrd"));
	backend = json_string_value(json_object_get(in, "backend"));
	restart = json_string_value(json_object_get(in, "restart"));
	cpus = json_object_get(in, "cpus") ? json_integer_value(json_object_get(in, "cpus")) : 1;
	mem = json_object_get(in, "mem_mib") ? json_integer_value(json_object_get(in, "mem_mib")) : 512;
	if (!name_ok(name))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.', starting with a letter "
				  "or digit", name);
	if (kernel[0] != '/' || access(kernel, R_OK))
		return http_fault(400, "kernel %s: %s", kernel, kernel[0] != '/' ? "give an absolute path"
										  : strerror(errno));
	if (initrd && (initrd[0] != '/' || access(initrd, R_OK)))
		return http_fault(400, "initrd %s: %s", initrd, initrd[0] != '/' ? "give an absolute path"
										  : strerror(errno));
	if (cpus < 1 || cpus > 255)
		return http_fault(400, "cpus %lld: between 1 and 255", (long long)cpus);
	if (mem < 16 || mem > (1 << 22))
		return http_fault(400, "mem_mib %lld: between 16 and 4194304", (long long)mem);
	if (backend && strcmp(backend, "kvm") && strcmp(backend, "emu") && strcmp(backend, "auto"))
		return http_fault(400, "backend %s: expected kvm, emu or auto", backend);
	if (restart && strcmp(restart, "no") && strcmp(restart, "on-failure") && strcmp(restart, "always"))
		return http_fault(400, "restart %s: expected no, on-failure or always", restart);
	st = db_query(D->db, "SELECT 1 FROM vms WHERE tenant_id = ? AND name = ?", "is", c->tenant_id, name);
	taken = st && sqlite3_step(st) == SQLITE_ROW;
	sqlite3_finalize(st);
	if (taken)
		return http_fault(409, "a VM named %s exists already", name);
	if (json_is_true(json_object_get(in, "start")) && admit(0, cpus, mem, why, sizeof(why)))
		return http_fault(409, "%s: %s", name, why);
	if (db_exec(D->db,
		    "INSERT INTO vms (tenant_id, name, kernel, initrd, cmdline, cpus, mem_mib, backend, restart, desired, "
		    "observed, created_at, updated_at, cpu_limit, cpu_weight, mem_limit_mib, disk_bw, disk_iops, net_bw, "
		    "net_pps) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'stopped', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
		    "iss" "s" "s" "iisss" "ii" "dii" "ssss", c->tenant_id, name, kernel, initrd,
		    json_string_value(json_object_get(in, "cmdline")), (int64_t)cpus, (int64_t)mem, backend ? backend : "auto",
		    restart ? restart : "no", json_is_true(json_object_get(in, "start")) ? "running" : "stopped",
		    (int64_t)time(NULL), (int64_t)time(NULL), l.cpu, (int64_t)l.weight, (int64_t)(l.mem >> 20), rates[0],
		    rates[1], rates[2], rates[3]) ||
	    insert_devices(sqlite3_last_insert_rowid(D->db), in))
		return http_fault(500, "cannot record the VM: %s", sqlite3_errmsg(D->db));
	qualified(c, name, vm, sizeof(vm));
	tarnd_event(D, vm, "created", "%lld vCPU, %lld MiB, backend %s", (long long)cpus, (long long)mem,
		    backend ? backend : "auto");
	tarnd_reconcile(D);
	return vm_reply(c, 201, name);
}

/* Set what the VM should be; the loop does the rest. */
static struct http_reply want(const struct caller *c, const char *name, const char *desired)
{
	sqlite3_stmt *st = vm_row(c, name);
	char why[256];

	if (st && !strcmp(desired, "running") && !strcmp((const char *)sqlite3_column_text(st, 9), "stopped") &&
	    admit(sqlite3_column_int64(st, 0), sqlite3_column_int(st, 5), sqlite3_column_int(st, 6), why,
		  sizeof(why))) {
		sqlite3_finalize(st);
		return http_fault(409, "%s: %s", name, why);
	}
	sqlite3_finalize(st);
	db_exec(D->db, "UPDATE vms SET desired = ?, updated_at = ? WHERE tenant_id = ? AND name = ?", "siis", desired,
		(int64_t)time(NULL), c->tenant_id, name);
	tarnd_reconcile(D);
	return vm_reply(c, 200, name);
}

static const struct http_field stop_fields[] = { { "timeout", F_NUM, false } };

static struct http_reply vm_action(const struct caller *c, const char *name, const char *verb, json_t *in)
{
	sqlite3_stmt *st = vm_row(c, name);
	char state[32], err[256], vm[256];
	struct vmproc *p;
	int64_t id;

	if (!st)
		return http_fault(404, "no VM named %s", name);
	snprintf(state, sizeof(state), "%s", sqlite3_column_text(st, 10));
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	p = tarnd_proc(D, id);
	qualified(c, name, vm, sizeof(vm));
	if (in && !strcmp(verb, "stop"))
		HTTP_CHECK(in, stop_fields, false);
	else if (in && http_check_fields(in, NULL, 0, false, err, sizeof(err)))
		return http_fault(400, "%s", err); /* the other verbs take no fields */
	if (!strcmp(verb, "start"))
		return want(c, name, "running");
	if (!strcmp(verb, "stop") || !strcmp(verb, "kill")) {
		if (p && p->pid && !strcmp(verb, "kill")) {
			kill(p->pid, SIGKILL);
		} else if (p && p->pid && in && json_object_get(in, "timeout")) {
			double t = json_number_value(json_object_get(in, "timeout"));

			if (t < 0 || t > 3600)
				return http_fault(400, "timeout %g: between 0 and 3600 seconds", t);
			p->stop_ms = (int)(t * 1000);
		}
		return want(c, name, "stopped");
	}
	/* pause, resume: through the VM's own API, at once. */
	if (!p || !p->pid || (strcmp(state, "running") && strcmp(state, "paused")))
		return http_fault(400, "%s is %s: only a running VM pauses or resumes", name, state);
	if (tarnd_vm_api(D, vm, "PATCH", "/vm", !strcmp(verb, "pause") ? "{\"state\":\"Paused\"}"
									 : "{\"state\":\"Resumed\"}",
			 NULL, err, sizeof(err)))
		return http_fault(502, "%s: %s", name, err);
	db_exec(D->db, "UPDATE vms SET observed = ?, desired = ?, updated_at = ? WHERE id = ?", "ssii",
		!strcmp(verb, "pause") ? "paused" : "running", !strcmp(verb, "pause") ? "paused" : "running",
		(int64_t)time(NULL), id);
	tarnd_event(D, vm, !strcmp(verb, "pause") ? "paused" : "resumed", "through the API");
	return vm_reply(c, 200, name);
}

static const struct http_field patch_fields[] = {
	{ "cpu_limit", F_NUM, false }, { "cpu_weight", F_INT, false }, { "mem_limit_mib", F_INT, false },
	{ "disk_bw", F_STR, false },   { "disk_iops", F_STR, false },  { "net_bw", F_STR, false },
	{ "net_pps", F_STR, false },   { "disks", F_ARR, false },      { "nics", F_ARR, false },
};

/* A rate (checked) as Firecracker's TokenBucket. */
static json_t *bucket_json(const char *rate)
{
	struct tb_config tb;
	char why[200];

	rl_parse(rate, &tb, why, sizeof(why));
	return json_pack("{s:I,s:I,s:I}", "size", (json_int_t)tb.size, "refill_time", (json_int_t)tb.refill_ms,
			 "one_time_burst", (json_int_t)tb.one_time_burst);
}

/* {"bandwidth": bw, "ops": ops} of Firecracker's RateLimiter. */
static json_t *limiter_json(const unsigned char *bw, const unsigned char *ops)
{
	return json_pack("{s:o,s:o}", "bandwidth", bucket_json((const char *)bw), "ops",
			 bucket_json((const char *)ops));
}

/* Put the rates the rows give each disk and NIC into the running VM's
 * devices, through its API. 0, or -1 with the reason in err. */
static int apply_rates(const char *vm, int64_t id, char *err, size_t len)
{
	int ret = 0;

	for (int nic = 0; nic < 2 && !ret; nic++) {
		sqlite3_stmt *st = db_query(D->db, nic ? TARND_NICS_SQL : TARND_DISKS_SQL, "i", id);

		while (!ret && st && sqlite3_step(st) == SQLITE_ROW) {
			char path[64], devid[16], *body;
			json_t *b;

			if (nic && sqlite3_column_type(st, 7) != SQLITE_NULL) {
				/* On a network: its port's QoS on the switch. */
				ret = tarnd_switch_limits(D, id, sqlite3_column_int(st, 0), err, len);
				continue;
			}

			snprintf(devid, sizeof(devid), "cli%d", sqlite3_column_int(st, 0));
			snprintf(path, sizeof(path), "/%s/%s", nic ? "network-interfaces" : "drives", devid);
			/* NICs: rx_bw, tx_bw, rx_pps, tx_pps from column 3. */
			b = nic ? json_pack("{s:s,s:o,s:o}", "iface_id", devid, "rx_rate_limiter",
					    limiter_json(sqlite3_column_text(st, 3), sqlite3_column_text(st, 5)),
					    "tx_rate_limiter",
					    limiter_json(sqlite3_column_text(st, 4), sqlite3_column_text(st, 6)))
				: json_pack("{s:s,s:o}", "drive_id", devid, "rate_limiter",
					    limiter_json(sqlite3_column_text(st, 3), sqlite3_column_text(st, 4)));
			body = json_dumps(b, JSON_COMPACT);
			ret = body ? tarnd_vm_api(D, vm, "PATCH", path, body, NULL, err, len) : -1;
			free(body);
			json_decref(b);
		}
		sqlite3_finalize(st);
	}
	return ret;
}

/* Record the "disks" or "nics" of a PATCH: {"index": N, RATE: "..." or
 * null (the VM's again), ...} each, for a device VM id has. NULL or why
 * not. */
static const char *patch_devices(int64_t id, json_t *in, bool nic, char *why, size_t len)
{
	const char *what = nic ? "nics" : "disks", *const *keys = nic ? tarnd_nic_rates : tarnd_disk_rates;
	int n = nic ? 4 : 2;
	json_t *e, *v;
	size_t i;

	json_array_foreach(json_object_get(in, what), i, e) {
		json_t *index = json_object_get(e, "index");
		sqlite3_stmt *st;
		const char *k;
		bool have;

		if (!json_is_integer(index)) {
			snprintf(why, len, "%s[%zu]: an object with the device's \"index\" (0: the first)", what, i);
			return why;
		}
		json_object_foreach(e, k, v) {
			int j = 0;

			while (j < n && strcmp(k, keys[j]))
				j++;
			if (j == n && strcmp(k, "index")) {
				snprintf(why, len, "%s[%zu]: unknown field '%s'", what, i, k);
				return why;
			}
		}
		if (check_rates(e, what, i, keys, n, true, why, len))
			return why;
		snprintf(why, len, "SELECT 1 FROM %s WHERE vm_id = ? AND idx = ?", what);
		st = db_query(D->db, why, "ii", id, (int64_t)json_integer_value(index));
		have = st && sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (!have) {
			snprintf(why, len, "%s[%zu]: the VM has no %s %lld", what, i, nic ? "NIC" : "disk",
				 (long long)json_integer_value(index));
			return why;
		}
		for (int j = 0; j < n; j++) {
			char sql[96];

			if (!(v = json_object_get(e, keys[j])))
				continue;
			snprintf(sql, sizeof(sql), "UPDATE %s SET %s = ? WHERE vm_id = ? AND idx = ?", what, keys[j]);
			db_exec(D->db, sql, "sii", json_string_value(v), id, (int64_t)json_integer_value(index));
		}
	}
	return NULL;
}

/* New quotas: recorded, and applied at once to a running VM (or, where
 * the VM refuses them, none of them). */
static struct http_reply patch_vm(const struct caller *c, const char *name, json_t *in)
{
	sqlite3_stmt *st = vm_row(c, name);
	struct cg_limits l, was;
	char why[512], vm[256], rate_buf[4][64], *devices;
	const char *rates[4];
	struct http_reply fail;
	bool running, cg_asked;
	int64_t id;

	if (!st)
		return http_fault(404, "no VM named %s", name);
	l = (struct cg_limits){ sqlite3_column_double(st, 17), (unsigned)sqlite3_column_int(st, 18),
				(uint64_t)sqlite3_column_int(st, 19) << 20 };
	was = l;
	for (int i = 0; i < 4; i++) {
		snprintf(rate_buf[i], sizeof(rate_buf[i]), "%s", sqlite3_column_text(st, 20 + i));
		rates[i] = rate_buf[i];
	}
	running = sqlite3_column_type(st, 11) != SQLITE_NULL;
	id = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, patch_fields, true);
	if (quotas(in, &l, rates, why, sizeof(why)))
		return http_fault(400, "%s", why);
	/* The cgroup only when its limits are asked for. */
	cg_asked = json_object_get(in, "cpu_limit") || json_object_get(in, "cpu_weight") ||
		   json_object_get(in, "mem_limit_mib");
	qualified(c, name, vm, sizeof(vm));
	db_exec(D->db, "SAVEPOINT patch", "");
	db_exec(D->db, "UPDATE vms SET cpu_limit = ?, cpu_weight = ?, mem_limit_mib = ?, disk_bw = ?, disk_iops = ?, "
		       "net_bw = ?, net_pps = ?, updated_at = ? WHERE id = ?", "diissssii", l.cpu, (int64_t)l.weight,
		(int64_t)(l.mem >> 20), rates[0], rates[1], rates[2], rates[3], (int64_t)time(NULL), id);
	if (patch_devices(id, in, false, why, sizeof(why)) || patch_devices(id, in, true, why, sizeof(why)))
		fail = http_fault(400, "%s", why);
	else if (running && cg_asked && cg_set(vm, &l, why, sizeof(why)))
		fail = http_fault(500, "%s", why);
	else if (running && apply_rates(vm, id, why, sizeof(why))) {
		fail = http_fault(502, "%s: %s", name, why);
		if (cg_asked && cg_set(vm, &was, why, sizeof(why)))
			pr_warn("%s: its old CPU and memory limits back: %s", vm, why);
	} else {
		fail.status = 0;
	}
	db_exec(D->db, fail.status ? "ROLLBACK TO patch" : "RELEASE patch", "");
	if (fail.status) {
		db_exec(D->db, "RELEASE patch", "");
		return fail;
	}
	/* The event: the VM's quotas, and what changed of its devices'. */
	json_t *dev = json_object();
	for (int nic = 0; nic < 2; nic++)
		if (json_array_size(json_object_get(in, nic ? "nics" : "disks")))
			json_object_set(dev, nic ? "nics" : "disks", json_object_get(in, nic ? "nics" : "disks"));
	devices = json_object_size(dev) ? json_dumps(dev, JSON_COMPACT) : NULL;
	json_decref(dev);
	tarnd_event(D, vm, "quota", "cpu %.2f, weight %u, memory %lluM, disk %s %s IOPS, net %s %s pps%s%s%s", l.cpu,
		    l.weight, (unsigned long long)(l.mem >> 20), rates[0], rates[1], rates[2], rates[3],
		    devices ? ", devices " : "", devices ? devices : "", running ? " (applied now)" : "");
	free(devices);
	return vm_reply(c, 200, name);
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(path) && errno != ENOENT ? -1 : 0;
}

/* The VM's directory, with what its jail's root holds (the VM's own
 * files: links are removed, not followed). */
static int rm_rf_dir(const char *dir)
{
	return nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) && errno != ENOENT ? -errno : 0;
}

static struct http_reply delete_vm(const struct caller *c, const char *name)
{
	sqlite3_stmt *st = vm_row(c, name);
	struct vmproc *p;
	char dir[4096], vm[256];

	if (!st)
		return http_fault(404, "no VM named %s", name);
	int64_t id = sqlite3_column_int64(st, 0);
	sqlite3_stmt *q;

	p = tarnd_proc(D, id);
	sqlite3_finalize(st);
	if (p && p->pid)
		return http_fault(400, "%s runs: stop it first (or kill it)", name);
	/* Its NICs' ports on the switch go with it. */
	q = db_query(D->db, "SELECT idx FROM nics WHERE vm_id = ? AND network_id IS NOT NULL", "i", id);
	while (q && sqlite3_step(q) == SQLITE_ROW)
		tarnd_switch_port_del(D, id, sqlite3_column_int(q, 0));
	sqlite3_finalize(q);
	db_exec(D->db, "DELETE FROM vms WHERE tenant_id = ? AND name = ?", "is", c->tenant_id, name);
	qualified(c, name, vm, sizeof(vm));
	tarnd_vm_dir(D, vm, dir, sizeof(dir));
	if (rm_rf_dir(dir))
		pr_warn("%s: cannot remove %s: %s", vm, dir, strerror(errno));
	tarnd_event(D, vm, "deleted", "through the API");
	tarnd_reconcile(D);
	return http_no_content();
}

/* The last want bytes of the VM's console: its rotated older part
 * (console.log.1), then console.log. */
static struct http_reply vm_logs(const struct caller *c, const char *name, const char *query_tail)
{
	char vm[256];
	static const char *const parts[] = { "console.log.1", "console.log" };
	uint64_t want = query_tail ? strtoull(query_tail, NULL, 10) : LOG_TAIL_DEFAULT, total = 0;
	char dir[4096], path[4200], *buf;
	sqlite3_stmt *st = vm_row(c, name);
	size_t have = 0;
	json_t *text;

	if (!st)
		return http_fault(404, "no VM named %s", name);
	sqlite3_finalize(st);
	if (want > 2 * D->console_cap)
		want = 2 * D->console_cap;
	buf = malloc(want + 1);
	if (!buf)
		return http_fault(500, "out of memory");
	qualified(c, name, vm, sizeof(vm));
	tarnd_vm_dir(D, vm, dir, sizeof(dir));
	/* Newest first: the tail of console.log, then what fits of .1. */
	for (int i = 1; i >= 0 && have < want; i--) {
		struct stat sb;
		uint64_t take;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", dir, parts[i]);
		fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0 || fstat(fd, &sb)) {
			if (fd >= 0)
				close(fd);
			continue;
		}
		total += (uint64_t)sb.st_size;
		take = (uint64_t)sb.st_size < want - have ? (uint64_t)sb.st_size : want - have;
		memmove(buf + take, buf, have);
		if (pread(fd, buf, take, sb.st_size - (off_t)take) != (ssize_t)take)
			take = 0;
		have += take;
		close(fd);
	}
	/* JSON text is UTF-8; what the guest printed may not be. */
	text = json_stringn(buf, have);
	for (size_t i = 0; !text && i < have; i++)
		if ((unsigned char)buf[i] >= 0x80)
			buf[i] = '?';
	if (!text)
		text = json_stringn(buf, have);
	free(buf);
	return http_ok(json_pack("{s:o,s:I}", "log", text, "size", (json_int_t)total));
}

/* Events after id since, of one VM if vm is given; a tenant sees its own. */
/* Events after id since, the caller's (all, the admin's), of vm (NULL:
 * any), oldest first, at most limit, appended to arr; the last id. */
static int64_t events_since(const struct caller *c, int64_t since, const char *vm, int limit, json_t *arr)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT id, at, tenant, vm, kind, detail FROM events WHERE id > ? "
				    "AND (? OR tenant = ?) AND (? IS NULL OR vm = ?) ORDER BY id LIMIT ?", "iisssi",
				    since, (int64_t)c->admin, c->tenant, vm, vm, (int64_t)limit);

	while (st && sqlite3_step(st) == SQLITE_ROW) {
		since = sqlite3_column_int64(st, 0);
		json_array_append_new(arr, json_pack("{s:I,s:I,s:o,s:o,s:s,s:s}", "id", (json_int_t)since, "at",
						     (json_int_t)sqlite3_column_int64(st, 1), "tenant", text_or_null(st, 2),
						     "vm", text_or_null(st, 3), "kind", sqlite3_column_text(st, 4), "detail",
						     sqlite3_column_text(st, 5)));
	}
	sqlite3_finalize(st);
	return since;
}

/* ?follow=1: the events as they happen, one JSON object a line, pushed
 * (a blank line every EVENTS_KEEPALIVE_S while none comes, so that a
 * client that left is noticed). */
#define EVENTS_KEEPALIVE_S 10

struct event_stream {
	struct caller c;
	int64_t last;
	char vm[128];
	bool has_vm;
	char *pending; /* lines not yet sent */
	size_t len, off;
};

static ssize_t events_read(void *cls, char *buf, size_t max)
{
	struct event_stream *e = cls;
	size_t n;

	while (e->off >= e->len) {
		json_t *arr = json_array(), *ev;
		struct timespec until;
		size_t i;

		free(e->pending);
		e->pending = NULL;
		e->len = e->off = 0;
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += EVENTS_KEEPALIVE_S;
		pthread_mutex_lock(&D->lock);
		while ((e->last = events_since(&e->c, e->last, e->has_vm ? e->vm : NULL, 100, arr)),
		       !json_array_size(arr) && !D->stopping &&
			       pthread_cond_timedwait(&D->events, &D->lock, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&D->lock);
		if (D->stopping) {
			json_decref(arr);
			return -1;
		}
		if (!json_array_size(arr)) { /* keep-alive */
			json_decref(arr);
			buf[0] = '\n';
			return 1;
		}
		json_array_foreach(arr, i, ev) {
			char *line = json_dumps(ev, JSON_COMPACT);
			char *grown = line ? realloc(e->pending, e->len + strlen(line) + 2) : NULL;

			if (!grown) {
				free(line);
				break;
			}
			e->pending = grown;
			e->len += (size_t)sprintf(e->pending + e->len, "%s\n", line);
			free(line);
		}
		json_decref(arr);
	}
	n = e->len - e->off < max ? e->len - e->off : max;
	memcpy(buf, e->pending + e->off, n);
	e->off += n;
	return (ssize_t)n;
}

static void events_free(void *cls)
{
	struct event_stream *e = cls;

	free(e->pending);
	free(e);
}

static struct http_reply list_events(const struct caller *c, const char *since, const char *vm, bool follow)
{
	json_t *arr;

	if (follow) {
		struct event_stream *e = calloc(1, sizeof(*e));

		if (!e)
			return http_fault(500, "out of memory");
		e->c = *c;
		e->last = since ? strtoll(since, NULL, 10) : 0;
		e->has_vm = vm != NULL;
		snprintf(e->vm, sizeof(e->vm), "%s", vm ? vm : "");
		return (struct http_reply){ 200, .stream = { events_read, events_free, e, "application/x-ndjson" } };
	}
	arr = json_array();
	events_since(c, since ? strtoll(since, NULL, 10) : 0, vm, 1000, arr);
	return http_ok(json_pack("{s:o}", "events", arr));
}

static struct http_reply host_info(void)
{
	struct sysinfo si;
	sqlite3_stmt *st = db_query(D->db, "SELECT count(*), count(pid), coalesce(sum(CASE WHEN pid IS NOT NULL "
					   "THEN cpus END), 0), coalesce(sum(CASE WHEN pid IS NOT NULL THEN mem_mib END), 0) "
					   "FROM vms", "");
	json_t *j;

	sysinfo(&si);
	if (!st || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		return http_fault(500, "database: %s", sqlite3_errmsg(D->db));
	}
	j = json_pack("{s:i,s:I,s:i,s:i,s:i,s:I}", "cpus", (int)sysconf(_SC_NPROCESSORS_ONLN), "mem_mib",
		      (json_int_t)((uint64_t)si.totalram * si.mem_unit >> 20), "vms", sqlite3_column_int(st, 0),
		      "running", sqlite3_column_int(st, 1), "vcpus_running", sqlite3_column_int(st, 2),
		      "mem_mib_running", (json_int_t)sqlite3_column_int64(st, 3));
	sqlite3_finalize(st);
	struct pool p;
	struct statvfs fs;

	pool_get(&p, 0);
	json_object_set_new(j, "pool", json_pack("{s:f,s:I,s:f,s:I,s:f,s:f,s:I}", "vcpus", p.vcpus, "vcpus_promised",
						 (json_int_t)p.vcpus_promised, "mem_mib", p.mem_mib,
						 "mem_mib_promised", (json_int_t)p.mem_promised, "cpu_overcommit",
						 D->cpu_overcommit, "mem_overcommit", D->mem_overcommit,
						 "mem_reserve_mib", (json_int_t)D->mem_reserve_mib));
	if (!statvfs(D->state_dir, &fs))
		json_object_set_new(j, "storage", json_pack("{s:I,s:I}", "bytes", (json_int_t)(fs.f_blocks * fs.f_frsize),
							   "free_bytes", (json_int_t)(fs.f_bavail * fs.f_frsize)));
	return http_ok(j);
}

/* ?key=value from a URL's query, into buf; NULL when absent. */
static const char *query_get(const char *query, const char *key, char *buf, size_t len)
{
	size_t kl = strlen(key);

	for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			snprintf(buf, len, "%.*s", (int)strcspn(p + kl + 1, "&"), p + kl + 1);
			return buf;
		}
	}
	return NULL;
}

/* ---- Prometheus metrics ---- */

struct prom {
	char *buf;
	size_t len, cap;
};

static void prom_add(struct prom *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void prom_add(struct prom *p, const char *fmt, ...)
{
	va_list ap;
	int n;

	for (;;) {
		va_start(ap, fmt);
		n = vsnprintf(p->buf ? p->buf + p->len : NULL, p->buf ? p->cap - p->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if (p->buf && (size_t)n < p->cap - p->len) {
			p->len += (size_t)n;
			return;
		}
		char *b = realloc(p->buf, p->cap = (p->cap + (size_t)n + 1) * 2);

		if (!b)
			return;
		p->buf = b;
	}
}

/* A counter of the VM's tarn (GET /metrics there: totals). */
static int64_t tarn_metric(json_t *m, const char *group, const char *name)
{
	json_t *v = json_object_get(json_object_get(m, group), name);

	return json_is_integer(v) ? (int64_t)json_integer_value(v) : -1;
}

/* The series: from the VM's cgroup (CPU, throttling, memory) and from its
 * tarn (disk and network: the sums over its devices). */
static const struct {
	const char *name, *type, *help, *group, *counter;
} series[] = {
	{ "tarn_vm_disk_read_bytes_total", "counter", "Bytes the guest read from its disks.", "block", "read_bytes" },
	{ "tarn_vm_disk_written_bytes_total", "counter", "Bytes the guest wrote to its disks.", "block", "write_bytes" },
	{ "tarn_vm_disk_reads_total", "counter", "Read requests of the guest's disks.", "block", "read_count" },
	{ "tarn_vm_disk_writes_total", "counter", "Write requests of the guest's disks.", "block", "write_count" },
	{ "tarn_vm_net_rx_bytes_total", "counter", "Bytes the guest received.", "net", "rx_bytes_count" },
	{ "tarn_vm_net_tx_bytes_total", "counter", "Bytes the guest sent.", "net", "tx_bytes_count" },
	{ "tarn_vm_net_rx_packets_total", "counter", "Frames the guest received.", "net", "rx_packets_count" },
	{ "tarn_vm_net_tx_packets_total", "counter", "Frames the guest sent.", "net", "tx_packets_count" },
	{ "tarn_vm_net_rx_dropped_total", "counter", "Frames for the guest dropped.", "net", "rx_dropped" },
	{ "tarn_vm_net_tx_dropped_total", "counter", "Frames from the guest dropped.", "net", "tx_dropped" },
};

static struct http_reply metrics(const struct caller *c)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT t.name, v.name, v.pid IS NOT NULL, v.cpu_limit FROM vms v JOIN "
				    "tenants t ON t.id = v.tenant_id WHERE ? OR v.tenant_id = ? ORDER BY t.name, v.name",
				    "ii", (int64_t)c->admin, c->tenant_id);
	struct prom p = { 0 };
	json_t *all = json_array();
	size_t i;
	json_t *e;

	prom_add(&p, "# HELP tarn_vm_up Whether the VM's tarn process runs.\n# TYPE tarn_vm_up gauge\n");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		char vm[256], err[256];
		json_t *m = NULL;
		struct cg_usage u = { -1, -1, -1, -1 };
		bool up = sqlite3_column_int(st, 2);

		snprintf(vm, sizeof(vm), "%s/%s", sqlite3_column_text(st, 0), sqlite3_column_text(st, 1));
		prom_add(&p, "tarn_vm_up{tenant=\"%s\",vm=\"%s\"} %d\n", sqlite3_column_text(st, 0),
			 sqlite3_column_text(st, 1), up);
		if (up) {
			cg_usage(vm, &u);
			if (tarnd_vm_api(D, vm, "GET", "/metrics", NULL, &m, err, sizeof(err)))
				m = NULL;
		}
		json_array_append_new(all, json_pack("{s:s,s:s,s:I,s:I,s:I,s:f,s:o}", "tenant", sqlite3_column_text(st, 0),
						     "vm", sqlite3_column_text(st, 1), "cpu", (json_int_t)u.cpu_ns, "thr",
						     (json_int_t)u.throttled_ns, "mem", (json_int_t)u.mem_bytes, "limit",
						     sqlite3_column_double(st, 3), "m", m ? m : json_null()));
	}
	sqlite3_finalize(st);
	/* Each series whole, its HELP and TYPE once (the text format's rule). */
	prom_add(&p, "# HELP tarn_vm_cpu_seconds_total CPU time of the VM's process (its cgroup).\n"
		     "# TYPE tarn_vm_cpu_seconds_total counter\n");
	json_array_foreach(all, i, e)
		if (json_integer_value(json_object_get(e, "cpu")) >= 0)
			prom_add(&p, "tarn_vm_cpu_seconds_total{tenant=\"%s\",vm=\"%s\"} %.6f\n", json_string_value(json_object_get(e, "tenant")),
				 json_string_value(json_object_get(e, "vm")), (double)json_integer_value(json_object_get(e, "cpu")) / 1e9);
	prom_add(&p, "# HELP tarn_vm_cpu_throttled_seconds_total Time the VM's CPU quota held it back.\n"
		     "# TYPE tarn_vm_cpu_throttled_seconds_total counter\n");
	json_array_foreach(all, i, e)
		if (json_integer_value(json_object_get(e, "thr")) >= 0)
			prom_add(&p, "tarn_vm_cpu_throttled_seconds_total{tenant=\"%s\",vm=\"%s\"} %.6f\n",
				 json_string_value(json_object_get(e, "tenant")), json_string_value(json_object_get(e, "vm")),
				 (double)json_integer_value(json_object_get(e, "thr")) / 1e9);
	prom_add(&p, "# HELP tarn_vm_memory_bytes Memory the VM's process holds (its cgroup).\n"
		     "# TYPE tarn_vm_memory_bytes gauge\n");
	json_array_foreach(all, i, e)
		if (json_integer_value(json_object_get(e, "mem")) >= 0)
			prom_add(&p, "tarn_vm_memory_bytes{tenant=\"%s\",vm=\"%s\"} %lld\n", json_string_value(json_object_get(e, "tenant")),
				 json_string_value(json_object_get(e, "vm")), (long long)json_integer_value(json_object_get(e, "mem")));
	for (size_t k = 0; k < sizeof(series) / sizeof(series[0]); k++) {
		prom_add(&p, "# HELP %s %s\n# TYPE %s %s\n", series[k].name, series[k].help, series[k].name, series[k].type);
		json_array_foreach(all, i, e) {
			int64_t v = tarn_metric(json_object_get(e, "m"), series[k].group, series[k].counter);

			if (v >= 0)
				prom_add(&p, "%s{tenant=\"%s\",vm=\"%s\"} %lld\n", series[k].name,
					 json_string_value(json_object_get(e, "tenant")), json_string_value(json_object_get(e, "vm")),
					 (long long)v);
		}
	}
	json_decref(all);
	if (!p.buf)
		return http_fault(500, "out of memory");
	return (struct http_reply){ 200, NULL, NULL, p.buf, "text/plain; version=0.0.4" };
}

/* ---- tenants and tokens (the admin's) ---- */

static void sha256_hex(const char *text, char out[65])
{
	struct sha256_ctx ctx;
	uint8_t d[SHA256_DIGEST_SIZE];

	sha256_init(&ctx);
	sha256_update(&ctx, strlen(text), (const uint8_t *)text);
	sha256_digest(&ctx, sizeof(d), d);
	for (int i = 0; i < SHA256_DIGEST_SIZE; i++)
		snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static int64_t tenant_id(const char *name)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT id FROM tenants WHERE name = ?", "s", name);
	int64_t id = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;

	sqlite3_finalize(st);
	return id;
}

static const struct http_field tenant_fields[] = { { "name", F_STR, true } };

static struct http_reply create_tenant(json_t *in)
{
	const char *name;

	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, tenant_fields, false);
	name = json_string_value(json_object_get(in, "name"));
	if (!name_ok(name))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.', starting with a letter "
				  "or digit", name);
	if (tenant_id(name) >= 0)
		return http_fault(409, "a tenant named %s exists already", name);
	db_exec(D->db, "INSERT INTO tenants (name, created_at) VALUES (?, ?)", "si", name, (int64_t)time(NULL));
	tarnd_event(D, NULL, "tenant", "%s created", name);
	return (struct http_reply){ 201, json_pack("{s:s}", "name", name), NULL };
}

static struct http_reply list_tenants(void)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT t.name, t.created_at, (SELECT count(*) FROM vms WHERE tenant_id = t.id), "
				    "(SELECT count(*) FROM tokens WHERE tenant_id = t.id) FROM tenants t ORDER BY t.name", "");
	json_t *arr = json_array();

	while (st && sqlite3_step(st) == SQLITE_ROW)
		json_array_append_new(arr, json_pack("{s:s,s:I,s:i,s:i}", "name", sqlite3_column_text(st, 0),
						     "created_at", (json_int_t)sqlite3_column_int64(st, 1), "vms",
						     sqlite3_column_int(st, 2), "tokens", sqlite3_column_int(st, 3)));
	sqlite3_finalize(st);
	return http_ok(json_pack("{s:o}", "tenants", arr));
}

static struct http_reply delete_tenant(const char *name)
{
	int64_t id = tenant_id(name);
	sqlite3_stmt *st;
	int n;

	if (id < 0)
		return http_fault(404, "no tenant named %s", name);
	if (id == 1)
		return http_fault(400, "the default tenant stays");
	static const char *const owned[3] = { "vms", "volumes", "networks" };

	for (int t = 0; t < 3; t++) {
		char sql[96];

		snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s WHERE tenant_id = ?", owned[t]);
		st = db_query(D->db, sql, "i", id);
		n = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
		sqlite3_finalize(st);
		if (n)
			return http_fault(400, "tenant %s has %d of its %s: delete them first", name, n, owned[t]);
	}
	db_exec(D->db, "DELETE FROM tenants WHERE id = ?", "i", id); /* its tokens with it */
	tarnd_event(D, NULL, "tenant", "%s deleted", name);
	return http_no_content();
}

/* A new token for the tenant: shown once, kept only as its hash. */
static struct http_reply new_token(const char *name)
{
	int64_t id = tenant_id(name);
	uint8_t raw[32];
	char token[8 + 2 * sizeof(raw)], hash[65];

	if (id < 0)
		return http_fault(404, "no tenant named %s", name);
	if (getrandom(raw, sizeof(raw), 0) != (ssize_t)sizeof(raw))
		return http_fault(500, "getrandom: %s", strerror(errno));
	strcpy(token, "tarn_");
	for (size_t i = 0; i < sizeof(raw); i++)
		snprintf(token + 5 + 2 * i, 3, "%02x", raw[i]);
	sha256_hex(token, hash);
	db_exec(D->db, "INSERT INTO tokens (tenant_id, hash, created_at) VALUES (?, ?, ?)", "isi", id, hash,
		(int64_t)time(NULL));
	tarnd_event(D, NULL, "token", "a new token for tenant %s", name);
	return (struct http_reply){ 201, json_pack("{s:s,s:s}", "tenant", name, "token", token), NULL };
}

/* Who asks, and about whose VMs: 0, or an error reply in *fail. */
static int identify(const struct http_request *r, const char *query, struct caller *c, struct http_reply *fail)
{
	char want[64], hash[65];
	sqlite3_stmt *st;

	memset(c, 0, sizeof(*c));
	if (r->auth) {
		if (strncmp(r->auth, "Bearer ", 7)) {
			*fail = http_fault(401, "Authorization: expected Bearer TOKEN");
			return -1;
		}
		sha256_hex(r->auth + 7, hash);
		st = db_query(D->db, "SELECT t.id, t.name FROM tokens k JOIN tenants t ON t.id = k.tenant_id "
				     "WHERE k.hash = ?", "s", hash);
		if (!st || sqlite3_step(st) != SQLITE_ROW) {
			sqlite3_finalize(st);
			*fail = http_fault(401, "the token is not one of tarnd's");
			return -1;
		}
		c->tenant_id = sqlite3_column_int64(st, 0);
		snprintf(c->tenant, sizeof(c->tenant), "%s", sqlite3_column_text(st, 1));
		sqlite3_finalize(st);
		snprintf(c->who, sizeof(c->who), "tenant %s", c->tenant);
		return 0;
	}
	if (r->peer_uid == (uid_t)-1) {
		/* TCP: who opens a connection is nobody in particular. */
		*fail = http_fault(401, "a token is needed here (Authorization: Bearer TOKEN); the admin uses the "
					"Unix socket");
		return -1;
	}
	c->admin = true;
	snprintf(c->who, sizeof(c->who), "admin (uid %d)", (int)r->peer_uid);
	if (!query_get(query, "tenant", want, sizeof(want)))
		snprintf(want, sizeof(want), "default");
	c->tenant_id = tenant_id(want);
	snprintf(c->tenant, sizeof(c->tenant), "%s", want);
	if (c->tenant_id < 0) {
		*fail = http_fault(404, "no tenant named %s", want);
		return -1;
	}
	return 0;
}

#define METHODS(list) (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: " list), list }

static struct http_reply route(const struct http_request *r, struct caller *c)
{
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
	char path[256], name[128], verb[32], q1[64], q2[128], q3[8];
	const char *query = r->query;
	struct http_reply fail;
	int n;

	snprintf(path, sizeof(path), "%s", r->url);
	if (r->bad)
		return http_fault(400, "%s", r->bad);
	if ((get || del) && r->in)
		return http_fault(400, "%s takes no body", r->method);
	if (identify(r, query, c, &fail))
		return fail;
	if (!strncmp(path, "/v1/tenants", 11) || !strcmp(path, "/v1/host")) {
		if (!c->admin)
			return http_fault(403, "%s is the admin's", path);
		if (!strcmp(path, "/v1/host"))
			return get ? host_info() : METHODS("GET");
		if (!strcmp(path, "/v1/tenants"))
			return get ? list_tenants() : post ? create_tenant(r->in) : METHODS("GET, POST");
		n = sscanf(path, "/v1/tenants/%63[^/]/%31s", name, verb);
		if (n == 1)
			return del ? delete_tenant(name) : METHODS("DELETE");
		if (n == 2 && !strcmp(verb, "tokens"))
			return post ? new_token(name) : METHODS("POST");
		return http_fault(404, "no such resource: %s %s", r->method, path);
	}
	if (!strcmp(path, "/v1/vms")) {
		if (get)
			return list_rows(c, vm_cols, vm_json, "vms");
		if (!post)
			return METHODS("GET, POST");
		if (!r->in)
			return http_fault(400, "a JSON object is expected as the body");
		return create_vm(c, r->in);
	}
	if (!strcmp(path, "/v1/metrics"))
		return get ? metrics(c) : METHODS("GET");
	if (!strncmp(path, "/v1/volumes", 11) && (!path[11] || path[11] == '/'))
		return volumes_route(c, r, path);
	if (!strncmp(path, "/v1/networks", 12) && (!path[12] || path[12] == '/'))
		return networks_route(c, r, path);
	if (!strcmp(path, "/v1/events"))
		return get ? list_events(c, query_get(query, "since", q1, sizeof(q1)), query_get(query, "vm", q2, sizeof(q2)),
					 query_get(query, "follow", q3, sizeof(q3)) && strcmp(q3, "0"))
			   : METHODS("GET");
	n = sscanf(path, "/v1/vms/%127[^/]/%31s", name, verb);
	if (n >= 1 && !name_ok(name))
		return http_fault(404, "no VM named %s", name);
	if (n == 1) {
		if (get)
			return vm_reply(c, 200, name);
		if (del)
			return delete_vm(c, name);
		if (!strcmp(r->method, "PATCH"))
			return patch_vm(c, name, r->in);
		return METHODS("GET, PATCH, DELETE");
	}
	if (n == 2 && !strcmp(verb, "logs"))
		return get ? vm_logs(c, name, query_get(query, "tail", q1, sizeof(q1))) : METHODS("GET");
	if (n == 2 && !strcmp(verb, "console"))
		return console_route(c, name, r);
	if (n == 2 && (!strcmp(verb, "snapshots") || !strcmp(verb, "snapshot") || !strcmp(verb, "restore") ||
		       !strcmp(verb, "clone")))
		return snapshot_route(c, name, verb, r);
	if (n == 2 && (!strcmp(verb, "start") || !strcmp(verb, "stop") || !strcmp(verb, "kill") ||
		       !strcmp(verb, "pause") || !strcmp(verb, "resume")))
		return post ? vm_action(c, name, verb, r->in) : METHODS("POST");
	return http_fault(404, "no such resource: %s %s", r->method, path);
}

static struct http_reply on_request(void *opaque, const struct http_request *r)
{
	struct http_reply rep;
	struct caller c = { .who = "unknown" };

	pthread_mutex_lock(&D->lock);
	db_exec(D->db, "BEGIN IMMEDIATE", "");
	rep = route(r, &c);
	db_exec(D->db, "INSERT INTO audit (at, who, method, path, status) VALUES (?, ?, ?, ?, ?)", "isssi",
		(int64_t)time(NULL), c.who, r->method, r->url, (int64_t)rep.status);
	db_exec(D->db, "COMMIT", "");
	pthread_mutex_unlock(&D->lock);
	/* The audit in the log too; the path as the caller sent it, but for
	 * what could start a line of its own. */
	char path[256];
	snprintf(path, sizeof(path), "%s", r->url);
	for (char *p = path; *p; p++)
		if (!isprint((unsigned char)*p))
			*p = '?';
	pr_info("audit: %s: %s %s: %u", c.who, r->method, path, rep.status);
	return rep;
}

int tarnd_api_start(struct tarnd *d, int sock_fd, char *err, size_t len)
{
	D = d;
	return http_start(&srv[srv[0] != NULL], sock_fd, TARND_BODY_MAX, true, on_request, d, err, len);
}

void tarnd_api_stop(void)
{
	for (int i = 0; i < 2; i++) {
		http_stop(srv[i]);
		srv[i] = NULL;
	}
}
