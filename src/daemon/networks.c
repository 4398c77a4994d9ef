/* Networks: a tenant's L2 networks on tarn's switch, and the switch itself.
 * tarnd runs one tarn-switch (src/switch/) for the host, its sockets in
 * STATE/switch/, driven through its API (api.sock). A network is a number
 * on that switch (its VNI), a tenant's; a VM's NIC on one is a port of the
 * switch (vm<ID>-<N>.sock), which tarn connects to as a vhost-user front
 * end, with port security: the NIC's MAC, and its addresses when given.
 * An uplink, the admin's to give, is an existing tap device (the host a
 * station on the network) or a VXLAN tunnel to another host's switch. Routes (docs/tarnd.json), under the caller's
 * tenant as VMs are:
 *   GET, POST /v1/networks               {name, vni, uplink}
 *   GET, DELETE /v1/networks/NAME
 * The switch outlives tarnd (a new one adopts it through its pid file); if
 * it dies tarnd starts it again with the uplinks, and every running VM's
 * NICs on networks come back with the VM's next start. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "api/http_client.h"
#include "core/log.h"
#include "daemon/db.h"
#include "daemon/routes.h"
#include "virtio/net_backend.h"

#define VNI_MAX 16777215

static void switch_path(const struct tarnd *d, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/switch%s%s", d->state_dir, file ? "/" : "", file ? file : "");
}

/* A request to the switch's API: 0 (with *status), or -1 with why. */
static int switch_api(struct tarnd *d, const char *method, const char *path, json_t *body, long *status, char *err,
		      size_t len)
{
	char sock[4200], *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
	json_t *reply = NULL;
	int ret;

	switch_path(d, "api.sock", sock, sizeof(sock));
	ret = http_request(sock, method, path, text, NULL, status, &reply, err, len);
	if (!ret && *status >= 300 && *status != 409 && *status != 404) {
		snprintf(err, len, "the switch: %s", json_string_value(json_object_get(reply, "fault_message")));
		ret = -1;
	}
	free(text);
	json_decref(reply);
	json_decref(body);
	return ret;
}

/* The switch's port of a network's uplink: "tap:NAME" is the tap's own
 * name, "vxlan:REMOTE" the tunnel vx<VNI>. */
static void uplink_path(const char *uplink, int64_t vni, char *buf, size_t len)
{
	if (!strncmp(uplink, "tap:", 4))
		snprintf(buf, len, "/v1/ports/%s", uplink + 4);
	else
		snprintf(buf, len, "/v1/ports/vx%lld", (long long)vni);
}

/* A network's uplink on the switch. */
static void put_uplink(struct tarnd *d, const char *uplink, int64_t vni)
{
	char path[128], err[256];
	long status;
	bool tap;

	if (!uplink)
		return;
	tap = !strncmp(uplink, "tap:", 4);
	uplink_path(uplink, vni, path, sizeof(path));
	if (switch_api(d, "PUT", path,
		       tap ? json_pack("{s:I,s:b}", "net", (json_int_t)vni, "tap", 1)
			   : json_pack("{s:I,s:s}", "net", (json_int_t)vni, "vxlan", uplink + 6),
		       &status, err, sizeof(err)))
		tarnd_event(d, NULL, "network", "uplink %s not on the switch: %s", uplink, err);
}

/* "tap:NAME" or "vxlan:IPV4[:PORT]". */
static bool uplink_ok(const char *u)
{
	char host[64];
	unsigned port = 4789;
	struct in_addr a;

	if (!strncmp(u, "tap:", 4))
		return net_tap_name_ok(u + 4);
	if (strncmp(u, "vxlan:", 6) || strlen(u + 6) >= sizeof(host))
		return false;
	snprintf(host, sizeof(host), "%s", u + 6);
	if (strchr(host, ':') && (sscanf(strchr(host, ':') + 1, "%u", &port) != 1 || !port || port > 65535))
		return false;
	if (strchr(host, ':'))
		*strchr(host, ':') = 0;
	return inet_pton(AF_INET, host, &a) == 1;
}

static bool switch_alive(struct tarnd *d)
{
	int status;

	if (!d->switch_pid)
		return false;
	if (d->switch_child)
		return waitpid(d->switch_pid, &status, WNOHANG) == 0;
	return !kill(d->switch_pid, 0);
}

static void switch_start(struct tarnd *d)
{
	char dir[4200], sock[4200], pidfile[4200], log[4200], err[256];
	FILE *f;
	long status;
	pid_t pid;

	switch_path(d, NULL, dir, sizeof(dir));
	switch_path(d, "api.sock", sock, sizeof(sock));
	switch_path(d, "switch.pid", pidfile, sizeof(pidfile));
	mkdir(dir, 0750);
	/* An earlier tarnd's, still serving? */
	if (!d->switch_pid && (f = fopen(pidfile, "r"))) {
		int p = 0;

		if (fscanf(f, "%d", &p) == 1 && p > 0 && !kill(p, 0) &&
		    !switch_api(d, "GET", "/v1/ports", NULL, &status, err, sizeof(err)) && status == 200) {
			d->switch_pid = p;
			d->switch_child = false;
			fclose(f);
			return;
		}
		fclose(f);
	}
	switch_path(d, "switch.log", log, sizeof(log));
	pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec: tarnd has threads. */
		int null = open("/dev/null", O_RDWR), out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

		setsid();
		if (null < 0 || out < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(out, 2) < 0)
			_exit(127);
		execl(d->switch_bin, "tarn-switch", "--dir", dir, "--api-sock", sock, (char *)NULL);
		_exit(127);
	}
	if (pid < 0) {
		tarnd_event(d, NULL, "network", "cannot start the switch: %s", strerror(errno));
		return;
	}
	d->switch_pid = pid;
	d->switch_child = true;
	if ((f = fopen(pidfile, "w"))) {
		fprintf(f, "%d\n", pid);
		fclose(f);
	}
	/* Ready once its API answers; then the uplinks go on. */
	for (int i = 0; i < 100 && (switch_api(d, "GET", "/v1/ports", NULL, &status, err, sizeof(err)) || status != 200); i++)
		usleep(20000);
	sqlite3_stmt *st = db_query(d->db, "SELECT uplink, vni FROM networks WHERE uplink IS NOT NULL", "");
	while (st && sqlite3_step(st) == SQLITE_ROW)
		put_uplink(d, (const char *)sqlite3_column_text(st, 0), sqlite3_column_int64(st, 1));
	sqlite3_finalize(st);
	tarnd_event(d, NULL, "network", "switch started (pid %d)", pid);
}

void tarnd_switch_check(struct tarnd *d)
{
	if (switch_alive(d))
		return;
	if (d->switch_pid)
		tarnd_event(d, NULL, "network", "the switch (pid %d) ended: started again; VMs on networks get their NICs "
						 "back at their next start", d->switch_pid);
	d->switch_pid = 0;
	switch_start(d);
}

bool tarnd_has_networks(struct tarnd *d)
{
	sqlite3_stmt *st = db_query(d->db, "SELECT 1 FROM networks LIMIT 1", "");
	bool any = st && sqlite3_step(st) == SQLITE_ROW;

	sqlite3_finalize(st);
	return any;
}


static void port_name(int64_t vm_id, int idx, char *buf, size_t len)
{
	snprintf(buf, len, "vm%lld-%d", (long long)vm_id, idx);
}

/* The NIC's rates (its own, else the VM's: TARND_NICS_SQL's) into body,
 * as the switch's port takes them; "0" for none. */
static void add_rates(struct tarnd *d, int64_t vm_id, int idx, json_t *body)
{
	sqlite3_stmt *st = db_query(d->db, TARND_NICS_SQL, "i", vm_id);

	while (st && sqlite3_step(st) == SQLITE_ROW)
		if (sqlite3_column_int(st, 0) == idx)
			for (int r = 0; r < 4; r++)
				json_object_set_new(body, tarnd_nic_rates[r],
						    json_string((const char *)sqlite3_column_text(st, 3 + r)));
	sqlite3_finalize(st);
}

int tarnd_switch_limits(struct tarnd *d, int64_t vm_id, int idx, char *err, size_t len)
{
	char name[64], path[96];
	json_t *body = json_object();
	long status;

	port_name(vm_id, idx, name, sizeof(name));
	snprintf(path, sizeof(path), "/v1/ports/%s", name);
	add_rates(d, vm_id, idx, body);
	if (switch_api(d, "PATCH", path, body, &status, err, len))
		return -1;
	if (status != 200) {
		snprintf(err, len, "the switch has no port %s (HTTP %ld)", name, status);
		return -1;
	}
	return 0;
}

int tarnd_switch_port(struct tarnd *d, int64_t vm_id, int idx, char *sock, size_t slen, char *err, size_t len)
{
	sqlite3_stmt *st = db_query(d->db, "SELECT w.vni, n.mac, n.ips FROM nics n JOIN networks w ON w.id = n.network_id "
					   "WHERE n.vm_id = ? AND n.idx = ?", "ii", vm_id, (int64_t)idx);
	char name[64], path[96], *save = NULL, ips[512] = "";
	json_t *body, *arr = json_array();
	long status;
	int ret;

	if (!st || sqlite3_step(st) != SQLITE_ROW) {
		sqlite3_finalize(st);
		json_decref(arr);
		snprintf(err, len, "NIC %d is on no network", idx);
		return -1;
	}
	if (sqlite3_column_type(st, 2) != SQLITE_NULL)
		snprintf(ips, sizeof(ips), "%s", sqlite3_column_text(st, 2));
	for (char *a = strtok_r(ips, ",", &save); a; a = strtok_r(NULL, ",", &save))
		json_array_append_new(arr, json_string(a));
	body = json_pack("{s:I,s:s,s:o}", "net", (json_int_t)sqlite3_column_int64(st, 0), "mac", sqlite3_column_text(st, 1),
			 "ips", arr);
	sqlite3_finalize(st);
	add_rates(d, vm_id, idx, body);
	tarnd_switch_check(d);
	port_name(vm_id, idx, name, sizeof(name));
	snprintf(path, sizeof(path), "/v1/ports/%s", name);
	/* Afresh: the row may have changed since the port was made. */
	ret = switch_api(d, "DELETE", path, NULL, &status, err, len) ||
	      switch_api(d, "PUT", path, body, &status, err, len) ? -1 : 0;
	if (!ret && status != 201) {
		snprintf(err, len, "the switch did not take port %s (HTTP %ld)", name, status);
		ret = -1;
	}
	snprintf(name + strlen(name), sizeof(name) - strlen(name), ".sock");
	switch_path(d, name, sock, slen);
	return ret;
}

void tarnd_switch_port_del(struct tarnd *d, int64_t vm_id, int idx)
{
	char name[64], path[96], err[256];
	long status;

	port_name(vm_id, idx, name, sizeof(name));
	snprintf(path, sizeof(path), "/v1/ports/%s", name);
	if (switch_alive(d))
		(void)switch_api(d, "DELETE", path, NULL, &status, err, sizeof(err));
}

/* ---- the API ---- */

static const char *const net_cols = "v.id, v.name, t.name, vni, uplink, v.created_at FROM networks v JOIN tenants t "
				    "ON t.id = v.tenant_id";

static json_t *net_json(sqlite3_stmt *st)
{
	json_t *vms = json_array();
	sqlite3_stmt *q = db_query(D->db, "SELECT DISTINCT m.name FROM nics n JOIN vms m ON m.id = n.vm_id WHERE "
					  "n.network_id = ? ORDER BY 1", "i", sqlite3_column_int64(st, 0));

	while (q && sqlite3_step(q) == SQLITE_ROW)
		json_array_append_new(vms, json_string((const char *)sqlite3_column_text(q, 0)));
	sqlite3_finalize(q);
	return json_pack("{s:s,s:s,s:I,s:o,s:I,s:o}", "name", sqlite3_column_text(st, 1), "tenant", sqlite3_column_text(st, 2),
			 "vni", (json_int_t)sqlite3_column_int64(st, 3), "uplink", text_or_null(st, 4), "created_at",
			 (json_int_t)sqlite3_column_int64(st, 5), "vms", vms);
}

static const struct http_field net_fields[] = {
	{ "name", F_STR, true }, { "vni", F_INT, false }, { "uplink", F_STR, false },
};

static struct http_reply create_network(const struct caller *c, json_t *in)
{
	const char *name = json_string_value(json_object_get(in, "name")), *uplink;
	json_t *v = json_object_get(in, "vni");
	sqlite3_stmt *st;
	int64_t vni;
	char q[64];

	HTTP_CHECK(in, net_fields, false);
	uplink = json_string_value(json_object_get(in, "uplink"));
	if (!name_ok(name))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.'", name);
	if (uplink && !uplink_ok(uplink))
		return http_fault(400, "uplink %s: tap:NAME (an existing tap device) or vxlan:IPV4[:PORT] (another "
				  "host's switch)", uplink);
	if (uplink && !c->admin)
		return http_fault(403, "an uplink is the admin's to give: it joins the host to the network");
	if (v && (json_integer_value(v) < 1 || json_integer_value(v) > VNI_MAX))
		return http_fault(400, "vni %lld: 1 to %d", (long long)json_integer_value(v), VNI_MAX);
	st = tenant_row(c, "v.id FROM networks v", name);
	sqlite3_finalize(st);
	if (st)
		return http_fault(409, "a network named %s exists already", name);
	if (v) {
		vni = json_integer_value(v);
		st = db_query(D->db, "SELECT 1 FROM networks WHERE vni = ?", "i", vni);
		bool taken = st && sqlite3_step(st) == SQLITE_ROW;
		sqlite3_finalize(st);
		if (taken)
			return http_fault(409, "vni %lld is another network's", (long long)vni);
	} else {
		st = db_query(D->db, "SELECT coalesce(max(vni), 0) + 1 FROM networks", "");
		vni = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 1;
		sqlite3_finalize(st);
		if (vni > VNI_MAX)
			return http_fault(409, "no VNI left above the highest: give one");
	}
	if (db_exec(D->db, "INSERT INTO networks (tenant_id, name, vni, uplink, created_at) VALUES (?, ?, ?, ?, ?)",
		    "isisi", c->tenant_id, name, vni, uplink, (int64_t)time(NULL)))
		return http_fault(500, "cannot record the network: %s", sqlite3_errmsg(D->db));
	tarnd_switch_check(D);
	put_uplink(D, uplink, vni);
	qualified(c, name, q, sizeof(q));
	tarnd_event(D, NULL, "network", "%s created, vni %lld%s%s", q, (long long)vni, uplink ? ", uplink " : "",
		    uplink ? uplink : "");
	return row_reply(c, 201, net_cols, name, net_json, "network");
}

static struct http_reply delete_network(const struct caller *c, const char *name)
{
	sqlite3_stmt *st = tenant_row(c, "v.id, v.uplink, v.vni FROM networks v", name), *q;
	char uplink[96] = "", path[128], err[256], qn[64];
	int64_t vni;
	int64_t id;
	long status;
	int used = 0;

	if (!st)
		return http_fault(404, "no network named %s", name);
	id = sqlite3_column_int64(st, 0);
	vni = sqlite3_column_int64(st, 2);
	if (sqlite3_column_type(st, 1) != SQLITE_NULL)
		snprintf(uplink, sizeof(uplink), "%s", sqlite3_column_text(st, 1));
	sqlite3_finalize(st);
	q = db_query(D->db, "SELECT count(*) FROM nics WHERE network_id = ?", "i", id);
	used = q && sqlite3_step(q) == SQLITE_ROW ? sqlite3_column_int(q, 0) : 0;
	sqlite3_finalize(q);
	if (used)
		return http_fault(409, "%s: %d NIC(s) of VMs are on it: delete them first", name, used);
	db_exec(D->db, "DELETE FROM networks WHERE id = ?", "i", id);
	if (*uplink && switch_alive(D)) {
		uplink_path(uplink, vni, path, sizeof(path));
		(void)switch_api(D, "DELETE", path, NULL, &status, err, sizeof(err));
	}
	qualified(c, name, qn, sizeof(qn));
	tarnd_event(D, NULL, "network", "%s deleted", qn);
	return http_no_content();
}

#define METHODS(list) (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: " list), list }

struct http_reply networks_route(const struct caller *c, const struct http_request *r, const char *path)
{
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
	char name[128];

	if (!strcmp(path, "/v1/networks")) {
		if (get)
			return list_rows(c, net_cols, net_json, "networks");
		if (!post)
			return METHODS("GET, POST");
		return r->in ? create_network(c, r->in) : http_fault(400, "a JSON object is expected as the body");
	}
	if (sscanf(path, "/v1/networks/%127[^/]", name) != 1 || strlen(path) != 13 + strlen(name) || !name_ok(name))
		return http_fault(404, "no such resource: %s %s", r->method, path);
	if (get)
		return row_reply(c, 200, net_cols, name, net_json, "network");
	return del ? delete_network(c, name) : METHODS("GET, DELETE");
}
