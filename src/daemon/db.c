#include "daemon/db.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/log.h"

/* Migration N takes the schema from version N to N + 1; PRAGMA user_version
 * holds the version. Never edit one that has shipped: add the next. */
static const char *const migrations[] = {
	/* 1: tenants and their tokens, VMs, what happened to them, and who
	 * asked for what. Tenant 1, "default", holds what the admin makes
	 * for no tenant in particular. */
	"CREATE TABLE tenants ("
	"  id INTEGER PRIMARY KEY,"
	"  name TEXT NOT NULL UNIQUE,"
	"  created_at INTEGER NOT NULL);"
	"INSERT INTO tenants (id, name, created_at) VALUES (1, 'default', strftime('%s', 'now'));"
	"CREATE TABLE tokens ("
	"  id INTEGER PRIMARY KEY,"
	"  tenant_id INTEGER NOT NULL REFERENCES tenants(id) ON DELETE CASCADE,"
	"  hash TEXT NOT NULL UNIQUE," /* SHA-256 of the token, hex: the token itself is not kept */
	"  created_at INTEGER NOT NULL);"
	"CREATE TABLE vms ("
	"  id INTEGER PRIMARY KEY,"
	"  tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
	"  name TEXT NOT NULL,"
	"  kernel TEXT NOT NULL,"
	"  initrd TEXT,"
	"  cmdline TEXT,"
	"  cpus INTEGER NOT NULL CHECK (cpus BETWEEN 1 AND 255),"
	"  mem_mib INTEGER NOT NULL CHECK (mem_mib >= 16),"
	"  backend TEXT NOT NULL,"
	"  restart TEXT NOT NULL CHECK (restart IN ('no', 'on-failure', 'always')),"
	"  desired TEXT NOT NULL CHECK (desired IN ('stopped', 'running', 'paused')),"
	"  observed TEXT NOT NULL,"
	"  pid INTEGER,"
	"  pid_start INTEGER,"
	"  exit_status INTEGER,"
	"  restarts INTEGER NOT NULL DEFAULT 0,"
	"  cpu_limit REAL NOT NULL DEFAULT 0 CHECK (cpu_limit >= 0)," /* cores, 0: none */
	"  cpu_weight INTEGER NOT NULL DEFAULT 100 CHECK (cpu_weight BETWEEN 1 AND 10000),"
	"  mem_limit_mib INTEGER NOT NULL DEFAULT 0 CHECK (mem_limit_mib >= 0)," /* 0: none */
	"  created_at INTEGER NOT NULL,"
	"  updated_at INTEGER NOT NULL,"
	"  UNIQUE (tenant_id, name));"
	"CREATE TABLE events ("
	"  id INTEGER PRIMARY KEY,"
	"  at INTEGER NOT NULL,"
	"  tenant TEXT," /* the VM's, NULL for the host's own */
	"  vm TEXT,"
	"  kind TEXT NOT NULL,"
	"  detail TEXT NOT NULL);"
	"CREATE TABLE audit ("
	"  id INTEGER PRIMARY KEY,"
	"  at INTEGER NOT NULL,"
	"  who TEXT NOT NULL,"
	"  method TEXT NOT NULL,"
	"  path TEXT NOT NULL,"
	"  status INTEGER NOT NULL);",
	/* 2: disks and NICs, and their rate limits (every disk of a VM gets
	 * disk_bw and disk_iops, every NIC net_bw and net_pps each way; the
	 * rates as tarn's --disk and --net take them, "0": none). */
	"CREATE TABLE disks ("
	"  vm_id INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  path TEXT NOT NULL,"
	"  ro INTEGER NOT NULL DEFAULT 0,"
	"  PRIMARY KEY (vm_id, idx));"
	"CREATE TABLE nics ("
	"  vm_id INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,"
	"  idx INTEGER NOT NULL,"
	"  tap TEXT NOT NULL,"
	"  mac TEXT,"
	"  PRIMARY KEY (vm_id, idx));"
	"ALTER TABLE vms ADD COLUMN disk_bw TEXT NOT NULL DEFAULT '0';"
	"ALTER TABLE vms ADD COLUMN disk_iops TEXT NOT NULL DEFAULT '0';"
	"ALTER TABLE vms ADD COLUMN net_bw TEXT NOT NULL DEFAULT '0';"
	"ALTER TABLE vms ADD COLUMN net_pps TEXT NOT NULL DEFAULT '0';",
	/* 3: volumes in the storage pool (STATE/volumes/ID.FORMAT); a
	 * clone is a qcow2 overlay over its backing volume. */
	"CREATE TABLE volumes ("
	"  id INTEGER PRIMARY KEY,"
	"  tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
	"  name TEXT NOT NULL,"
	"  format TEXT NOT NULL CHECK (format IN ('raw', 'qcow2')),"
	"  size INTEGER NOT NULL CHECK (size > 0),"
	"  backing_id INTEGER REFERENCES volumes(id),"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (tenant_id, name));"
	"ALTER TABLE disks ADD COLUMN volume_id INTEGER REFERENCES volumes(id);",
	/* 4: snapshots of VMs (files in the VM's jail directory); a VM
	 * restores from one at its next start (a restore, a clone). */
	"CREATE TABLE snapshots ("
	"  id INTEGER PRIMARY KEY,"
	"  vm_id INTEGER NOT NULL REFERENCES vms(id) ON DELETE CASCADE,"
	"  name TEXT NOT NULL,"
	"  state_path TEXT NOT NULL,"
	"  mem_path TEXT NOT NULL,"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (vm_id, name));"
	"ALTER TABLE vms ADD COLUMN restore_from INTEGER REFERENCES snapshots(id) ON DELETE SET NULL;",
	/* 5: rates of one disk or NIC, each direction of a NIC its own;
	 * NULL: the VM's (disk_bw, disk_iops, net_bw, net_pps). */
	"ALTER TABLE disks ADD COLUMN bw TEXT;"
	"ALTER TABLE disks ADD COLUMN iops TEXT;"
	"ALTER TABLE nics ADD COLUMN rx_bw TEXT;"
	"ALTER TABLE nics ADD COLUMN tx_bw TEXT;"
	"ALTER TABLE nics ADD COLUMN rx_pps TEXT;"
	"ALTER TABLE nics ADD COLUMN tx_pps TEXT;",
	/* 6: a tenant's networks on tarn's switch (VNI: the switch's
	 * network number, one per network across tenants); a NIC on one has
	 * network_id (and tap ''), and the addresses port security lets it
	 * send from (comma-separated, NULL: any). */
	"CREATE TABLE networks ("
	"  id INTEGER PRIMARY KEY,"
	"  tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
	"  name TEXT NOT NULL,"
	"  vni INTEGER NOT NULL UNIQUE CHECK (vni BETWEEN 1 AND 16777215),"
	"  uplink TEXT,"
	"  created_at INTEGER NOT NULL,"
	"  UNIQUE (tenant_id, name));"
	"ALTER TABLE nics ADD COLUMN network_id INTEGER REFERENCES networks(id);"
	"ALTER TABLE nics ADD COLUMN ips TEXT;",
};
#define DB_VERSION ((int)(sizeof(migrations) / sizeof(migrations[0])))

int db_version(sqlite3 *db)
{
	sqlite3_stmt *st = db_query(db, "PRAGMA user_version", "");
	int v = -1;

	if (st && sqlite3_step(st) == SQLITE_ROW)
		v = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return v;
}

int db_open(sqlite3 **out, const char *path, char *err, size_t len)
{
	sqlite3 *db = NULL;
	char sql[64];
	int v;

	*out = NULL;
	if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL) !=
	    SQLITE_OK) {
		snprintf(err, len, "%s: %s", path, db ? sqlite3_errmsg(db) : "out of memory");
		goto fail;
	}
	sqlite3_busy_timeout(db, 5000);
	if (sqlite3_exec(db, "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL",
			 NULL, NULL, NULL) != SQLITE_OK) {
		snprintf(err, len, "%s: %s", path, sqlite3_errmsg(db));
		goto fail;
	}
	v = db_version(db);
	if (v < 0 || v > DB_VERSION) {
		snprintf(err, len, "%s: schema version %d, this tarnd knows 0..%d%s", path, v, DB_VERSION,
			 v > DB_VERSION ? " (made by a newer tarnd)" : "");
		goto fail;
	}
	for (; v < DB_VERSION; v++) {
		snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", v + 1);
		if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, migrations[v], NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK ||
		    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
			snprintf(err, len, "%s: migration %d: %s", path, v + 1, sqlite3_errmsg(db));
			sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
			goto fail;
		}
		pr_info("%s: schema migrated to version %d", path, v + 1);
	}
	*out = db;
	return 0;
fail:
	sqlite3_close(db);
	return -1;
}

static int bind_args(sqlite3_stmt *st, const char *fmt, va_list ap)
{
	int rc = SQLITE_OK;

	for (int i = 0; fmt[i] && rc == SQLITE_OK; i++) {
		switch (fmt[i]) {
		case 's': rc = sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT); break;
		case 'i': rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t)); break;
		case 'd': rc = sqlite3_bind_double(st, i + 1, va_arg(ap, double)); break;
		default: rc = sqlite3_bind_null(st, i + 1); break;
		}
	}
	return rc;
}

static sqlite3_stmt *vquery(sqlite3 *db, const char *sql, const char *fmt, va_list ap)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK || bind_args(st, fmt, ap) != SQLITE_OK) {
		pr_err("database: %s (%s)", sqlite3_errmsg(db), sql);
		sqlite3_finalize(st);
		return NULL;
	}
	return st;
}

sqlite3_stmt *db_query(sqlite3 *db, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;

	va_start(ap, fmt);
	st = vquery(db, sql, fmt, ap);
	va_end(ap);
	return st;
}

int db_exec(sqlite3 *db, const char *sql, const char *fmt, ...)
{
	sqlite3_stmt *st;
	va_list ap;
	int rc;

	va_start(ap, fmt);
	st = vquery(db, sql, fmt, ap);
	va_end(ap);
	if (!st)
		return SQLITE_ERROR;
	rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		pr_err("database: %s (%s)", sqlite3_errmsg(db), sql);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? SQLITE_OK : rc;
}
