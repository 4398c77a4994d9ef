/* What tarnd's API modules share (routes.c, volumes.c): who asks, and
 * the daemon they ask. */
#ifndef TARN_DAEMON_ROUTES_H
#define TARN_DAEMON_ROUTES_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "api/http.h"
#include "daemon/tarnd.h"

extern struct tarnd *D; /* the daemon the API serves (tarnd_api_start) */

struct caller {
	bool admin;
	int64_t tenant_id; /* whose VMs the request is about */
	char tenant[64];
	char who[96];	   /* for the audit */
};

/* Names of VMs and volumes: what a directory, a socket path and a shell
 * take as they are. */
bool name_ok(const char *n);
/* A text column as a JSON string, or null. */
json_t *text_or_null(sqlite3_stmt *st, int col);

/* The caller's tenant's row of "SELECT cols" (a table aliased v with
 * tenant_id and name), stepped, or NULL (finalize it). */
sqlite3_stmt *tenant_row(const struct caller *c, const char *cols, const char *name);
/* That row as to_json makes it, with status; 404 "no WHAT named NAME". */
struct http_reply row_reply(const struct caller *c, unsigned status, const char *cols, const char *name,
			    json_t *(*to_json)(sqlite3_stmt *st), const char *what);

/* {key: [the rows of "SELECT cols" (aliased v and t, as above) that the
 * caller may see (all: the admin), as to_json makes them]}. */
struct http_reply list_rows(const struct caller *c, const char *cols, json_t *(*to_json)(sqlite3_stmt *st),
			   const char *key);

/* "TENANT/NAME", what supervise.c names VMs by. */
void qualified(const struct caller *c, const char *name, char *buf, size_t len);
/* The caller's tenant's VM's row (columns: routes.c's vm_cols: 0 id, 1
 * name, 5 cpus, 6 mem_mib, 9 desired, 10 observed, 11 pid), stepped, or
 * NULL (finalize it); the VM as a reply. */
sqlite3_stmt *vm_row(const struct caller *c, const char *name);
struct http_reply vm_reply(const struct caller *c, unsigned status, const char *name);
/* Admission: may a VM of cpus and mem MiB (id: 0 for a new one) run
 * beside what is promised? NULL, or why not. */
const char *admit(int64_t id, int64_t cpus, int64_t mem, char *why, size_t len);

/* /v1/vms/NAME/snapshots, snapshot, restore, clone (snapshots.c). */
struct http_reply snapshot_route(const struct caller *c, const char *name, const char *verb, const struct http_request *r);

/* /v1/vms/NAME/console (vmconsole.c). */
struct http_reply console_route(const struct caller *c, const char *name, const struct http_request *r);

/* The disks and NICs of a new VM (its "disks" and "nics", either may be
 * absent): NULL or why not. A volume's file becomes the disk's path. */
const char *check_devices(const struct caller *c, json_t *in, char *why, size_t len);
/* Record the checked disks and NICs of VM id: 0, or not (logged). */
int insert_devices(int64_t id, json_t *in);

/* /v1/networks and below (networks.c). */
struct http_reply networks_route(const struct caller *c, const struct http_request *r, const char *path);

/* /v1/volumes and below (path: the URL from /v1/volumes on). */
struct http_reply volumes_route(const struct caller *c, const struct http_request *r, const char *path);
/* A VM's disk {"volume": NAME, "ro": B}: the caller's volume's file into
 * path and its id, or NULL with why not (no such volume, one that others
 * are clones of written to). */
const char *volume_for_disk(const struct caller *c, const char *name, bool ro, char *path, size_t plen,
			    int64_t *id, char *why, size_t len);

#endif
