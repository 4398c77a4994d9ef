/* Volumes: a tenant's disk images in tarnd's storage pool,
 * STATE/volumes/ID.FORMAT (named by row id: a name is the tenant's
 * business, the file system's is ours). raw (sparse) or qcow2; a clone
 * is a qcow2 overlay over its source, which from then on is the base of
 * others and is written by no VM; grown (never shrunk) while no VM has
 * it open; deleted when no VM has it as a disk and no clone rests on it.
 * Routes (docs/tarnd.json), under the caller's tenant as VMs are:
 *   GET, POST /v1/volumes                {name, size, format}
 *   GET, DELETE /v1/volumes/NAME
 *   POST /v1/volumes/NAME/clone          {name}
 *   POST /v1/volumes/NAME/resize         {size}
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "block/qcow2.h"
#include "core/config.h"
#include "daemon/db.h"
#include "daemon/routes.h"
#include "daemon/tarnd.h"

int tarnd_copy_file(const char *src, const char *dst, char *why, size_t len)
{
	int in = open(src, O_RDONLY | O_CLOEXEC), out = -1, ret = -1;
	char part[4200];
	struct stat sb;
	off_t pos = 0, end;

	/* Into DST.part, renamed over dst once whole: dst is as it was
	 * until then. */
	snprintf(part, sizeof(part), "%s.part", dst);
	if (in < 0 || fstat(in, &sb) || (out = open(part, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		goto out;
	if (!ioctl(out, FICLONE, in))
		goto synced; /* the same extents, shared */
	if (ftruncate(out, sb.st_size))
		goto out;
	/* The data, extent by extent; the holes stay holes. */
	while (pos < sb.st_size && (pos = lseek(in, pos, SEEK_DATA)) >= 0) {
		if ((end = lseek(in, pos, SEEK_HOLE)) < 0)
			goto out;
		while (pos < end) {
			loff_t ip = pos, op = pos;
			ssize_t n = copy_file_range(in, &ip, out, &op, (size_t)(end - pos), 0);

			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				errno = n ? errno : EIO; /* it shrank under us */
				goto out;
			}
			pos += n;
		}
	}
	if (pos < 0 && errno != ENXIO) /* ENXIO: no data past pos */
		goto out;
synced:
	ret = fsync(out) || rename(part, dst) ? -1 : 0;
out:
	if (ret) {
		snprintf(why, len, "cannot copy %s to %s: %s", src, dst, strerror(errno));
		if (out >= 0)
			unlink(part);
	}
	if (in >= 0)
		close(in);
	if (out >= 0)
		close(out);
	return ret;
}

static const char *const vol_cols = "v.id, v.name, t.name, format, size, (SELECT name FROM volumes b WHERE b.id = "
				    "v.backing_id), v.created_at FROM volumes v JOIN tenants t ON t.id = v.tenant_id";

static void vol_file(int64_t id, const char *format, char *buf, size_t len)
{
	snprintf(buf, len, "%s/volumes/%lld.%s", D->state_dir, (long long)id, format);
}

static json_t *vol_json(sqlite3_stmt *st)
{
	char path[4200];
	struct stat sb;
	json_t *j, *vms = json_array();
	sqlite3_stmt *q;
	int64_t id = sqlite3_column_int64(st, 0);

	vol_file(id, (const char *)sqlite3_column_text(st, 3), path, sizeof(path));
	j = json_pack("{s:s,s:s,s:s,s:I,s:o,s:I,s:s}", "name", sqlite3_column_text(st, 1), "tenant",
		      sqlite3_column_text(st, 2), "format", sqlite3_column_text(st, 3), "size",
		      (json_int_t)sqlite3_column_int64(st, 4), "clone_of", text_or_null(st, 5), "created_at",
		      (json_int_t)sqlite3_column_int64(st, 6), "path", path);
	if (!stat(path, &sb))
		json_object_set_new(j, "allocated", json_integer((json_int_t)sb.st_blocks * 512));
	q = db_query(D->db, "SELECT v.name FROM disks d JOIN vms v ON v.id = d.vm_id WHERE d.volume_id = ? ORDER BY 1",
		     "i", id);
	while (q && sqlite3_step(q) == SQLITE_ROW)
		json_array_append_new(vms, json_string((const char *)sqlite3_column_text(q, 0)));
	sqlite3_finalize(q);
	json_object_set_new(j, "vms", vms);
	q = db_query(D->db, "SELECT count(*) FROM volumes WHERE backing_id = ?", "i", id);
	if (q && sqlite3_step(q) == SQLITE_ROW)
		json_object_set_new(j, "clones", json_integer(sqlite3_column_int(q, 0)));
	sqlite3_finalize(q);
	return j;
}

/* The caller's volume's row, stepped, or NULL (finalize it). */
static sqlite3_stmt *vol_row(const struct caller *c, const char *name)
{
	return tenant_row(c, vol_cols, name);
}

static struct http_reply vol_reply(const struct caller *c, unsigned status, const char *name)
{
	return row_reply(c, status, vol_cols, name, vol_json, "volume");
}

/* "size": bytes, or a size with a unit ("10G"). 0 or why not. */
static const char *size_of(json_t *in, uint64_t *size, char *why, size_t len)
{
	json_t *v = json_object_get(in, "size");

	if (json_is_integer(v) && json_integer_value(v) > 0)
		*size = (uint64_t)json_integer_value(v);
	else if (!json_is_string(v) || parse_size(json_string_value(v), 1, size))
		goto bad;
	if (*size && *size % 512 == 0 && *size <= (1ULL << 50))
		return NULL;
bad:
	snprintf(why, len, "size: bytes, or a size like 10G; a multiple of 512 up to 1P");
	return why;
}

static const struct http_field create_fields[] = {
	{ "name", F_STR, true }, { "size", F_SIZE, true }, { "format", F_STR, false },
};

static bool taken(const struct caller *c, const char *name)
{
	sqlite3_stmt *st = vol_row(c, name);

	sqlite3_finalize(st);
	return st != NULL;
}

/* A new row for name (the file is made next); its id, or -1. */
static int64_t vol_insert(const struct caller *c, const char *name, const char *format, uint64_t size,
			  int64_t backing)
{
	if (db_exec(D->db, "INSERT INTO volumes (tenant_id, name, format, size, backing_id, created_at) VALUES "
			   "(?, ?, ?, ?, NULLIF(?, 0), ?)", "issiii", c->tenant_id, name, format,
		    (int64_t)size, backing, (int64_t)time(NULL)))
		return -1;
	return sqlite3_last_insert_rowid(D->db);
}

static struct http_reply create_volume(const struct caller *c, json_t *in)
{
	const char *name, *format;
	char why[512], path[4200];
	uint64_t size;
	int64_t id;
	int fd, ret = 0;

	HTTP_CHECK(in, create_fields, false);
	name = json_string_value(json_object_get(in, "name"));
	format = json_string_value(json_object_get(in, "format"));
	format = format ? format : "qcow2";
	if (!name_ok(name))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.', starting with a letter "
				  "or digit", name);
	if (strcmp(format, "raw") && strcmp(format, "qcow2"))
		return http_fault(400, "format %s: raw or qcow2", format);
	if (size_of(in, &size, why, sizeof(why)))
		return http_fault(400, "%s", why);
	if (taken(c, name))
		return http_fault(409, "a volume named %s exists already", name);
	if ((id = vol_insert(c, name, format, size, 0)) < 0)
		return http_fault(500, "cannot record the volume: %s", sqlite3_errmsg(D->db));
	vol_file(id, format, path, sizeof(path));
	if (!strcmp(format, "qcow2")) {
		ret = qcow2_create(path, size, NULL, why, sizeof(why));
	} else {
		/* raw: sparse, the blocks come as the guest writes */
		fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (fd < 0 || ftruncate(fd, (off_t)size)) {
			ret = -errno;
			snprintf(why, sizeof(why), "%s", strerror(errno));
			if (fd >= 0)
				unlink(path);
		}
		if (fd >= 0)
			close(fd);
	}
	if (ret)
		db_exec(D->db, "DELETE FROM volumes WHERE id = ?", "i", id);
	return ret ? http_fault(500, "cannot make the volume: %s", why) : vol_reply(c, 201, name);
}

static const struct http_field clone_fields[] = { { "name", F_STR, true } };

/* A qcow2 overlay over the source's file: the clone reads the source
 * until it writes its own clusters. */
static struct http_reply clone_volume(const struct caller *c, const char *src, json_t *in)
{
	sqlite3_stmt *st = vol_row(c, src), *w;
	char why[512], base[4200], path[4200];
	const char *name;
	int64_t sid, id;
	uint64_t size;
	bool written;

	if (!st)
		return http_fault(404, "no volume named %s", src);
	sid = sqlite3_column_int64(st, 0);
	size = (uint64_t)sqlite3_column_int64(st, 4);
	vol_file(sid, (const char *)sqlite3_column_text(st, 3), base, sizeof(base));
	sqlite3_finalize(st);
	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, clone_fields, false);
	name = json_string_value(json_object_get(in, "name"));
	if (!name_ok(name))
		return http_fault(400, "name %s: 1 to 63 letters, digits, '-', '_' or '.'", name);
	if (taken(c, name))
		return http_fault(409, "a volume named %s exists already", name);
	/* A base must hold still: not while a VM that runs may write it. */
	w = db_query(D->db, "SELECT v.name FROM disks d JOIN vms v ON v.id = d.vm_id WHERE d.volume_id = ? AND NOT d.ro "
			    "AND v.pid IS NOT NULL", "i", sid);
	written = w && sqlite3_step(w) == SQLITE_ROW;
	if (written)
		snprintf(why, sizeof(why), "%s: VM %s runs with it writable: stop it first", src, sqlite3_column_text(w, 0));
	sqlite3_finalize(w);
	if (written)
		return http_fault(409, "%s", why);
	if ((id = vol_insert(c, name, "qcow2", size, sid)) < 0)
		return http_fault(500, "cannot record the volume: %s", sqlite3_errmsg(D->db));
	vol_file(id, "qcow2", path, sizeof(path));
	if (qcow2_create(path, size, base, why, sizeof(why))) {
		db_exec(D->db, "DELETE FROM volumes WHERE id = ?", "i", id);
		return http_fault(500, "cannot make the clone: %s", why);
	}
	return vol_reply(c, 201, name);
}

static const struct http_field resize_fields[] = { { "size", F_SIZE, true } };

/* Grow the file while nobody has it open (tarn locks its disks). */
static struct http_reply resize_volume(const struct caller *c, const char *name, json_t *in)
{
	sqlite3_stmt *st = vol_row(c, name);
	char why[512], path[4200], format[8];
	uint64_t size, old;
	int64_t id;
	int fd, ret;

	if (!st)
		return http_fault(404, "no volume named %s", name);
	id = sqlite3_column_int64(st, 0);
	old = (uint64_t)sqlite3_column_int64(st, 4);
	snprintf(format, sizeof(format), "%s", sqlite3_column_text(st, 3));
	sqlite3_finalize(st);
	if (!in)
		return http_fault(400, "a JSON object is expected as the body");
	HTTP_CHECK(in, resize_fields, false);
	if (size_of(in, &size, why, sizeof(why)))
		return http_fault(400, "%s", why);
	if (size < old)
		return http_fault(400, "size %llu: volumes grow, they do not shrink (it has %llu)",
				  (unsigned long long)size, (unsigned long long)old);
	vol_file(id, format, path, sizeof(path));
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return http_fault(500, "%s: %s", path, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		close(fd);
		return http_fault(409, "%s is in use by a running VM: stop it first", name);
	}
	if (!strcmp(format, "qcow2"))
		ret = qcow2_grow(fd, size, why, sizeof(why));
	else if ((ret = ftruncate(fd, (off_t)size) ? -errno : 0))
		snprintf(why, sizeof(why), "%s", strerror(-ret));
	close(fd);
	if (ret)
		return http_fault(ret == -EFBIG ? 400 : 500, "%s: %s", name, why);
	db_exec(D->db, "UPDATE volumes SET size = ? WHERE id = ?", "ii", (int64_t)size, id);
	return vol_reply(c, 200, name);
}

static struct http_reply delete_volume(const struct caller *c, const char *name)
{
	sqlite3_stmt *st = vol_row(c, name), *q;
	char path[4200], why[256] = "";
	int64_t id;

	if (!st)
		return http_fault(404, "no volume named %s", name);
	id = sqlite3_column_int64(st, 0);
	vol_file(id, (const char *)sqlite3_column_text(st, 3), path, sizeof(path));
	sqlite3_finalize(st);
	q = db_query(D->db, "SELECT (SELECT group_concat(v.name, ', ') FROM disks d JOIN vms v ON v.id = d.vm_id WHERE "
			    "d.volume_id = ?1), (SELECT group_concat(name, ', ') FROM volumes WHERE backing_id = ?1)",
		     "i", id);
	if (q && sqlite3_step(q) == SQLITE_ROW) {
		if (sqlite3_column_type(q, 0) != SQLITE_NULL)
			snprintf(why, sizeof(why), "it is a disk of VM(s) %s: delete them first", sqlite3_column_text(q, 0));
		else if (sqlite3_column_type(q, 1) != SQLITE_NULL)
			snprintf(why, sizeof(why), "volume(s) %s are clones of it: delete them first",
				 sqlite3_column_text(q, 1));
	}
	sqlite3_finalize(q);
	if (why[0])
		return http_fault(409, "%s: %s", name, why);
	if (db_exec(D->db, "DELETE FROM volumes WHERE id = ?", "i", id))
		return http_fault(500, "cannot delete %s: %s", name, sqlite3_errmsg(D->db));
	unlink(path);
	return (struct http_reply){ 204, NULL, NULL };
}

#define METHODS(list) (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: " list), list }

struct http_reply volumes_route(const struct caller *c, const struct http_request *r, const char *path)
{
	bool get = !strcmp(r->method, "GET"), post = !strcmp(r->method, "POST"), del = !strcmp(r->method, "DELETE");
	char name[128], verb[32];
	int n;

	if (!strcmp(path, "/v1/volumes")) {
		if (get)
			return list_rows(c, vol_cols, vol_json, "volumes");
		if (!post)
			return METHODS("GET, POST");
		return r->in ? create_volume(c, r->in) : http_fault(400, "a JSON object is expected as the body");
	}
	n = sscanf(path, "/v1/volumes/%127[^/]/%31s", name, verb);
	if (n < 1 || !name_ok(name))
		return http_fault(404, "no volume named %s", n >= 1 ? name : "");
	if (n == 1)
		return get ? vol_reply(c, 200, name) : del ? delete_volume(c, name) : METHODS("GET, DELETE");
	if (!strcmp(verb, "clone"))
		return post ? clone_volume(c, name, r->in) : METHODS("POST");
	if (!strcmp(verb, "resize"))
		return post ? resize_volume(c, name, r->in) : METHODS("POST");
	return http_fault(404, "no such resource: %s %s", r->method, path);
}

const char *volume_for_disk(const struct caller *c, const char *name, bool ro, char *path, size_t plen,
			    int64_t *id, char *why, size_t len)
{
	sqlite3_stmt *st = vol_row(c, name), *q;
	int clones = 0;

	if (!st) {
		snprintf(why, len, "no volume named %s", name);
		return why;
	}
	*id = sqlite3_column_int64(st, 0);
	vol_file(*id, (const char *)sqlite3_column_text(st, 3), path, plen);
	sqlite3_finalize(st);
	q = db_query(D->db, "SELECT count(*) FROM volumes WHERE backing_id = ?", "i", *id);
	if (q && sqlite3_step(q) == SQLITE_ROW)
		clones = sqlite3_column_int(q, 0);
	sqlite3_finalize(q);
	if (clones && !ro) {
		snprintf(why, len, "volume %s: %d clone(s) rest on it: it can only be a read-only disk (ro)", name, clones);
		return why;
	}
	return NULL;
}
