/* Snapshots of VMs through tarnd (docs/tarnd.json):
 *   GET  /v1/vms/NAME/snapshots
 *   POST /v1/vms/NAME/snapshot  {name}           of a running (or paused) VM
 *   POST /v1/vms/NAME/restore   {snapshot}       the VM goes back to it
 *   POST /v1/vms/NAME/clone     {name, snapshot} a new VM from it
 * A snapshot is tarn's (PUT /snapshot/create: the VM paused for it, then
 * resumed unless it was paused), its files in the VM's jail directory
 * (STATE/vms/TENANT/NAME/root/snapshots/, which the jailed tarn sees as
 * /snapshots/). A restore or a clone sets the VM's restore_from: its next
 * start is tarn run --restore from those files, once (a later start
 * boots). A restore of a running VM ends its tarn (SIGKILL: the state is
 * dropped for the snapshot's) and starts it again at once. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/vm.h"
#include "daemon/db.h"
#include "daemon/routes.h"

static const struct http_field snap_fields[] = { { "name", F_STR, true } };
static const struct http_field restore_fields[] = { { "snapshot", F_STR, true } };
static const struct http_field clone_fields[] = { { "name", F_STR, true }, { "snapshot", F_STR, true },
						 { "nics", F_ARR, false } };

static struct http_reply list_snapshots(int64_t id)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT name, created_at, state_path, mem_path FROM snapshots WHERE "
					   "vm_id = ? ORDER BY created_at, id", "i", id);
	json_t *arr = json_array();

	while (st && sqlite3_step(st) == SQLITE_ROW) {
		struct stat sb;
		json_t *j = json_pack("{s:s,s:I,s:s,s:s}", "name", sqlite3_column_text(st, 0), "created_at",
				      (json_int_t)sqlite3_column_int64(st, 1), "state_path", sqlite3_column_text(st, 2),
				      "mem_path", sqlite3_column_text(st, 3));

		if (!stat((const char *)sqlite3_column_text(st, 3), &sb))
			json_object_set_new(j, "mem_bytes", json_integer((json_int_t)sb.st_blocks * 512));
		json_array_append_new(arr, j);
	}
	sqlite3_finalize(st);
	return http_ok(json_pack("{s:o}", "snapshots", arr));
}

/* The VM's snapshot named snap: its id, or -1. */
static int64_t snapshot_id(int64_t vm_id, const char *snap)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT id FROM snapshots WHERE vm_id = ? AND name = ?", "is", vm_id, snap);
	int64_t id = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;

	sqlite3_finalize(st);
	return id;
}

void tarnd_snap_disk(const char *state_path, int idx, char *buf, size_t len)
{
	const char *dot = strrchr(state_path, '.');

	snprintf(buf, len, "%.*s.disk%d", (int)(dot ? dot - state_path : (int)strlen(state_path)), state_path, idx);
}

/* Copy VM id's writable disks beside the snapshot state_path (the VM
 * paused: what they hold goes with its memory). 0, or -1 with why. */
static int copy_disks(int64_t id, const char *state_path, char *why, size_t len)
{
	sqlite3_stmt *st = db_query(D->db, "SELECT idx, path FROM disks WHERE vm_id = ? AND NOT ro ORDER BY idx", "i", id);
	int ret = 0;

	while (!ret && st && sqlite3_step(st) == SQLITE_ROW) {
		char copy[4200];

		tarnd_snap_disk(state_path, sqlite3_column_int(st, 0), copy, sizeof(copy));
		ret = tarnd_copy_file((const char *)sqlite3_column_text(st, 1), copy, why, len);
	}
	sqlite3_finalize(st);
	return ret;
}

/* A snapshot's files, those of a failed one too. */
static void remove_snapshot_files(const char *state_path, const char *mem_path)
{
	char copy[4200];

	unlink(state_path);
	unlink(mem_path);
	for (int i = 0; i < VM_MAX_DISKS; i++) {
		tarnd_snap_disk(state_path, i, copy, sizeof(copy));
		unlink(copy);
	}
}

static struct http_reply take_snapshot(const struct caller *c, const char *name, int64_t id, const char *observed,
				       json_t *in)
{
	char vm[256], dir[4096], host[2][4300], body[9000], err[512];
	const char *seen[2];
	const char *snap = json_string_value(json_object_get(in, "name"));
	bool paused = !strcmp(observed, "paused");
	int ret, copied;

	if (!name_ok(snap))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.'", snap);
	if (strcmp(observed, "running") && !paused)
		return http_fault(400, "%s is %s: only a running or paused VM is snapshotted", name, observed);
	if (snapshot_id(id, snap) >= 0)
		return http_fault(409, "%s has a snapshot named %s already", name, snap);
	qualified(c, name, vm, sizeof(vm));
	tarnd_vm_dir(D, vm, dir, sizeof(dir));
	snprintf(host[0], sizeof(host[0]), "%s/root/snapshots", dir);
	mkdir(host[0], 0700); /* the jail made it when there is one */
	for (int k = 0; k < 2; k++) {
		snprintf(host[k], sizeof(host[k]), "%s/root/snapshots/%s.%s", dir, snap, k ? "mem" : "snap");
		/* As the (jailed) tarn sees it: its jail directory is its /. */
		seen[k] = D->jail ? strstr(host[k], "/root/snapshots/") + 5 : host[k];
	}
	snprintf(body, sizeof(body), "{\"snapshot_path\": \"%s\", \"mem_file_path\": \"%s\"}", seen[0], seen[1]);
	if (!paused && tarnd_vm_api(D, vm, "PATCH", "/vm", "{\"state\":\"Paused\"}", NULL, err, sizeof(err)))
		return http_fault(502, "%s: cannot pause: %s", name, err);
	ret = tarnd_vm_api(D, vm, "PUT", "/snapshot/create", body, NULL, err, sizeof(err));
	/* Its writable disks, while it is still paused. */
	copied = ret || copy_disks(id, host[0], err, sizeof(err)) ? -1 : 0;
	if (!paused && tarnd_vm_api(D, vm, "PATCH", "/vm", "{\"state\":\"Resumed\"}", NULL, err + strlen(err),
				    sizeof(err) - strlen(err)))
		tarnd_event(D, vm, "snapshot", "cannot resume after the snapshot: %s", err);
	if (copied) {
		remove_snapshot_files(host[0], host[1]);
		return http_fault(ret ? 502 : 500, "%s: snapshot: %s", name, err);
	}
	db_exec(D->db, "INSERT INTO snapshots (vm_id, name, state_path, mem_path, created_at) VALUES (?, ?, ?, ?, ?)",
		"isssi", id, snap, host[0], host[1], (int64_t)time(NULL));
	tarnd_event(D, vm, "snapshot", "%s taken", snap);
	return http_ok(json_pack("{s:s,s:s,s:s}", "name", snap, "state_path", host[0], "mem_path", host[1]));
}

static struct http_reply restore(const struct caller *c, const char *name, int64_t id, json_t *in)
{
	const char *snap = json_string_value(json_object_get(in, "snapshot"));
	int64_t sid = snapshot_id(id, snap);
	struct vmproc *p = tarnd_proc(D, id);
	char vm[256];

	if (sid < 0)
		return http_fault(404, "%s has no snapshot named %s", name, snap);
	db_exec(D->db, "UPDATE vms SET restore_from = ?, desired = 'running', updated_at = ? WHERE id = ?", "iii", sid,
		(int64_t)time(NULL), id);
	qualified(c, name, vm, sizeof(vm));
	tarnd_event(D, vm, "restore", "from %s%s", snap, p && p->pid ? ": its running tarn ends" : "");
	if (p && p->pid) {
		p->replacing = true;
		kill(p->pid, SIGKILL);
	}
	tarnd_reconcile(D);
	return vm_reply(c, 200, name);
}

/* A new VM like the source (its kernel, sizes, quotas, disks) that
 * starts from the source's snapshot. Its read-only disks are the
 * source's; each writable one is its own file in its directory, which its
 * first start fills from the snapshot's copy of that disk (a qcow2 overlay
 * then rests on the volume the source's rests on: its row names that
 * volume, which is not deleted under it). Its NICs are its own, from the
 * request: as many as the source has. */
static struct http_reply clone_vm(const struct caller *c, const char *name, int64_t id, json_t *in)
{
	const char *new = json_string_value(json_object_get(in, "name"));
	const char *snap = json_string_value(json_object_get(in, "snapshot"));
	int64_t sid = snapshot_id(id, snap), nid;
	json_t *nics = json_object_get(in, "nics");
	sqlite3_stmt *st;
	char why[256], vm[256], dir[4096];
	int have = 0;

	if (sid < 0)
		return http_fault(404, "%s has no snapshot named %s", name, snap);
	if (!name_ok(new))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.'", new);
	st = vm_row(c, new);
	sqlite3_finalize(st);
	if (st)
		return http_fault(409, "a VM named %s exists already", new);
	st = db_query(D->db, "SELECT count(*) FROM nics WHERE vm_id = ? AND network_id IS NULL", "i", id);
	if (st && sqlite3_step(st) == SQLITE_ROW)
		have = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	if ((int)json_array_size(nics) != have)
		return http_fault(400, "%s has %d NIC(s) on taps: the clone needs as many of its own (nics: a tap each), "
				  "%zu given", name, have, json_array_size(nics));
	if (check_devices(c, in, why, sizeof(why)))
		return http_fault(400, "%s", why);
	st = vm_row(c, name);
	if (!st)
		return http_fault(404, "no VM named %s", name);
	if (admit(0, sqlite3_column_int(st, 5), sqlite3_column_int(st, 6), why, sizeof(why))) {
		sqlite3_finalize(st);
		return http_fault(409, "%s: %s", new, why);
	}
	sqlite3_finalize(st);
	if (db_exec(D->db,
		    "INSERT INTO vms (tenant_id, name, kernel, initrd, cmdline, cpus, mem_mib, backend, restart, desired, "
		    "observed, created_at, updated_at, cpu_limit, cpu_weight, mem_limit_mib, disk_bw, disk_iops, net_bw, "
		    "net_pps, restore_from) SELECT tenant_id, ?, kernel, initrd, cmdline, cpus, mem_mib, backend, restart, "
		    "'running', 'stopped', ?, ?, cpu_limit, cpu_weight, mem_limit_mib, disk_bw, disk_iops, net_bw, net_pps, "
		    "? FROM vms WHERE id = ?", "siiii", new, (int64_t)time(NULL), (int64_t)time(NULL), sid, id))
		return http_fault(500, "cannot record the clone: %s", sqlite3_errmsg(D->db));
	nid = sqlite3_last_insert_rowid(D->db);
	qualified(c, new, vm, sizeof(vm));
	tarnd_vm_dir(D, vm, dir, sizeof(dir));
	if (db_exec(D->db, "INSERT INTO disks (vm_id, idx, path, ro, volume_id, bw, iops) SELECT ?1, idx, CASE WHEN ro "
			   "THEN path ELSE ?3 || '/disk' || idx END, ro, CASE WHEN ro THEN volume_id ELSE (SELECT "
			   "backing_id FROM volumes WHERE id = d.volume_id) END, bw, iops FROM disks d WHERE vm_id = ?2",
		    "iis", nid, id, dir) ||
	    insert_devices(nid, in) ||
	    /* NICs on networks: ports of its own there, with MACs of its own
	     * (after the taps the request gave). */
	    db_exec(D->db, "INSERT INTO nics (vm_id, idx, tap, mac, network_id, ips) SELECT ?1, ?3 + row_number() OVER "
			   "(ORDER BY idx) - 1, '', printf('52:54:00:%02x:%02x:%02x', abs(random()) % 256, abs(random()) % "
			   "256, abs(random()) % 256), network_id, ips FROM nics WHERE vm_id = ?2 AND network_id IS NOT NULL",
		    "iii", nid, id, (int64_t)json_array_size(nics)))
		return http_fault(500, "cannot record the clone's devices: %s", sqlite3_errmsg(D->db));
	tarnd_event(D, vm, "created", "a clone of %s from its snapshot %s", name, snap);
	tarnd_reconcile(D);
	return vm_reply(c, 201, new);
}

struct http_reply snapshot_route(const struct caller *c, const char *name, const char *verb, const struct http_request *r)
{
	sqlite3_stmt *st = vm_row(c, name);
	char observed[32];
	int64_t id;

	if (!st)
		return http_fault(404, "no VM named %s", name);
	id = sqlite3_column_int64(st, 0);
	snprintf(observed, sizeof(observed), "%s", sqlite3_column_text(st, 10));
	sqlite3_finalize(st);
	if (!strcmp(verb, "snapshots")) {
		if (strcmp(r->method, "GET"))
			return (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: GET"), "GET" };
		return list_snapshots(id);
	}
	if (strcmp(r->method, "POST"))
		return (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: POST"), "POST" };
	if (!r->in)
		return http_fault(400, "a JSON object is expected as the body");
	if (!strcmp(verb, "snapshot")) {
		HTTP_CHECK(r->in, snap_fields, false);
		return take_snapshot(c, name, id, observed, r->in);
	}
	if (!strcmp(verb, "restore")) {
		HTTP_CHECK(r->in, restore_fields, false);
		return restore(c, name, id, r->in);
	}
	HTTP_CHECK(r->in, clone_fields, false);
	return clone_vm(c, name, id, r->in);
}
