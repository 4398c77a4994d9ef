/* tarnd's state in SQLite (WAL, foreign keys on): the schema, built by
 * numbered migrations run at start-up, and the few helpers the daemon's
 * code shares. One connection, used under the daemon's lock. */
#ifndef TARN_DAEMON_DB_H
#define TARN_DAEMON_DB_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* Open (creating) path, switch to WAL, turn foreign keys on, and bring the
 * schema to the newest version. 0, or -1 with the reason in err (a file
 * that is not a database, one from a newer tarnd). */
int db_open(sqlite3 **out, const char *path, char *err, size_t len) __attribute__((warn_unused_result));

/* The schema version after db_open: how many migrations have run. */
int db_version(sqlite3 *db);

/* Run sql with its ?-parameters bound from fmt ('s' text, NULL for a NULL
 * pointer; 'i' int64; 'd' double; 'n' NULL, which takes no argument), for
 * statements that return no rows. SQLITE_OK or the error
 * code; the message goes to the log. */
int db_exec(sqlite3 *db, const char *sql, const char *fmt, ...);

/* Prepare sql with parameters bound as db_exec does; NULL on error
 * (logged). Step it, then sqlite3_finalize. */
sqlite3_stmt *db_query(sqlite3 *db, const char *sql, const char *fmt, ...);

#endif
