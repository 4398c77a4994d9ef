#include "api/api.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <microhttpd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "api/http.h"
#include "core/log.h"
#include "core/ratelimit.h"
#include "core/version.h"
#include "core/vm.h"
#include "virtio/net_backend.h"
#include "core/vm_config.h"
#include "migrate/migrate.h"

#define API_BODY_MAX (64u << 10) /* larger request bodies get 413 */
#define API_ID "anonymous-instance" /* Firecracker's id when none is given */
/* The Firecracker API level whose requests tarn takes (GET /version). */
#define API_FIRECRACKER_LEVEL "1.0.0"
#define API_MEM_MIN_MIB 16
#define API_METRICS_PERIOD 60 /* seconds between flushes, as Firecracker */

struct api {
	struct http_server *srv;
	char *path;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	enum api_state state;
	struct vm *vm;	  /* while API_RUNNING */
	char why[512];	  /* InstanceStart's failure, from api_started */
	/* The machine as Firecracker describes it (FullVmConfiguration):
	 * machine-config, boot-source, drives, network-interfaces, entropy.
	 * The first cli_drives drives and cli_nets interfaces came from the
	 * command line; they are in its config tree already. */
	json_t *model;
	size_t cli_drives, cli_nets;
	/* PUT /snapshot/load: the start is a restore from these (owned). */
	char *load_state, *load_mem, *load_backend;
	bool load_resume, load_track_dirty;
	/* PUT /metrics: where the metrics go (metrics_flush), by
	 * FlushMetrics and every API_METRICS_PERIOD s from metrics_thread;
	 * metrics_last: the totals at the last flush. */
	int metrics_fd;
	json_t *metrics_last;
	pthread_t metrics_thread;
	bool metrics_thread_started, stopping;
	pthread_cond_t metrics_cond;
	uint64_t create_snapshot_us, load_snapshot_us; /* latencies_us */
	struct migration *mig; /* PUT /migrate: the last one (migrate.h) */
	int mig_waiters;       /* PUT /migrate with wait, waiting for its end */
};

static const char *state_name(enum api_state s, struct vm *vm)
{
	if (s == API_RUNNING && vm && vm_is_paused(vm))
		return "Paused";
	return s == API_RUNNING ? "Running" : "Not started";
}

static bool readable(const char *path)
{
	struct stat st;

	return !access(path, R_OK) && !stat(path, &st) && !S_ISDIR(st.st_mode);
}

/* Ids name devices in specs and URLs: letters, digits, '_' (as Firecracker). */
static bool id_ok(const char *id)
{
	size_t n = strlen(id);

	if (!n || n > 20) /* the virtio-blk serial carries it: 20 bytes */
		return false;
	for (size_t i = 0; i < n; i++)
		if (!(id[i] == '_' || (id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'z') ||
		      (id[i] >= 'A' && id[i] <= 'Z')))
			return false;
	return true;
}

/* ---- pre-boot configuration ---- */

static const struct http_field machine_fields[] = {
	{ "vcpu_count", F_INT, true },	     { "mem_size_mib", F_INT, true },
	{ "smt", F_BOOL, false },	     { "track_dirty_pages", F_BOOL, false },
	{ "cpu_template", F_STR, false },    { "huge_pages", F_STR, false },
};

static struct http_reply put_machine_config(struct api *a, json_t *in, bool patch)
{
	json_t *mc = json_object_get(a->model, "machine-config");
	json_t *v;

	HTTP_CHECK(in, machine_fields, patch);
	if ((v = json_object_get(in, "vcpu_count")) &&
	    (json_integer_value(v) < 1 || json_integer_value(v) > VM_MAX_CPUS))
		return http_fault(MHD_HTTP_BAD_REQUEST, "vcpu_count must be 1 to %d", VM_MAX_CPUS);
	if ((v = json_object_get(in, "mem_size_mib")) &&
	    (json_integer_value(v) < API_MEM_MIN_MIB || json_integer_value(v) > (1 << 24)))
		return http_fault(MHD_HTTP_BAD_REQUEST, "mem_size_mib must be %d to %d", API_MEM_MIN_MIB, 1 << 24);
	if (json_is_true(json_object_get(in, "smt")))
		return http_fault(MHD_HTTP_BAD_REQUEST, "smt: tarn presents one thread per core (smt must be false)");
	if ((v = json_object_get(in, "cpu_template")) && strcmp(json_string_value(v), "None"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "cpu_template %s: tarn has no CPU templates (None only)",
			     json_string_value(v));
	if ((v = json_object_get(in, "huge_pages")) && strcmp(json_string_value(v), "None"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "huge_pages %s: not supported (None only; guest RAM uses "
			     "transparent huge pages where the host allows)", json_string_value(v));
	if (!patch) {
		mc = json_pack("{s:i,s:i,s:b,s:b}", "vcpu_count", 1, "mem_size_mib", 512, "smt", 0,
			       "track_dirty_pages", 0);
		json_object_set_new(a->model, "machine-config", mc);
	}
	json_object_update(mc, in);
	return http_no_content();
}

static const struct http_field boot_fields[] = {
	{ "kernel_image_path", F_STR, true },
	{ "initrd_path", F_STR, false },
	{ "boot_args", F_STR, false },
};

static struct http_reply put_boot_source(struct api *a, json_t *in)
{
	const char *k, *i;

	HTTP_CHECK(in, boot_fields, false);
	k = json_string_value(json_object_get(in, "kernel_image_path"));
	i = json_string_value(json_object_get(in, "initrd_path"));
	if (!readable(k))
		return http_fault(MHD_HTTP_BAD_REQUEST, "kernel_image_path %s: cannot be read", k);
	if (i && !readable(i))
		return http_fault(MHD_HTTP_BAD_REQUEST, "initrd_path %s: cannot be read", i);
	json_object_set(a->model, "boot-source", in);
	return http_no_content();
}

/* The array entry whose key member is id, or -1. */
static ssize_t find_id(json_t *arr, const char *key, const char *id)
{
	size_t i;
	json_t *e;

	json_array_foreach(arr, i, e) {
		if (!strcmp(json_string_value(json_object_get(e, key)), id))
			return (ssize_t)i;
	}
	return -1;
}

/* The drive that is disk k (the k-th --disk, /dev/vd('a' + k)): those of
 * the command line first, then the API's root drive, then its others in
 * the order they came; NULL past the last. */
static json_t *drive_at(struct api *a, size_t k)
{
	json_t *drives = json_object_get(a->model, "drives"), *e;
	size_t i;

	if (k < a->cli_drives)
		return json_array_get(drives, k);
	k -= a->cli_drives;
	for (int pass = 0; pass < 2; pass++) {
		json_array_foreach(drives, i, e) {
			if (i >= a->cli_drives && json_is_true(json_object_get(e, "is_root_device")) == !pass && !k--)
				return e;
		}
	}
	return NULL;
}

/* Firecracker's RateLimiter object: a TokenBucket each for bandwidth
 * and ops (size, refill_time in ms, one_time_burst; a size or refill time
 * of 0 is no limit). */
static const struct http_field bucket_fields[] = {
	{ "size", F_INT, true }, { "refill_time", F_INT, true }, { "one_time_burst", F_INT, false },
};
static const struct http_field limiter_fields[] = { { "bandwidth", F_OBJ, false }, { "ops", F_OBJ, false } };

/* Append rl (a RateLimiter; NULL: none) to buf as the options
 * ",<prefix>bw=SIZE:REFILL:BURST,<prefix><ops>=..." (core/ratelimit.h);
 * "bw=0" where a bucket is off. NULL, or why rl is malformed (what names
 * it). */
static const char *limiter_spec(const json_t *rl, const char *what, const char *prefix, const char *ops, char *buf,
				size_t len, char *why, size_t wlen)
{
	static const char *const buckets[2] = { "bandwidth", "ops" };

	if (!rl)
		return NULL;
	if (http_check_fields(rl, limiter_fields, 2, false, why, wlen))
		return why;
	for (int k = 0; k < 2; k++) {
		const json_t *b = json_object_get(rl, buckets[k]);
		json_int_t n[3];
		char w[200];

		if (!b)
			continue;
		if (http_check_fields(b, bucket_fields, 3, false, w, sizeof(w))) {
			snprintf(why, wlen, "%s.%s: %s", what, buckets[k], w);
			return why;
		}
		for (int f = 0; f < 3; f++) {
			n[f] = json_integer_value(json_object_get(b, bucket_fields[f].name));
			if (n[f] < 0) {
				snprintf(why, wlen, "%s.%s.%s: below 0", what, buckets[k], bucket_fields[f].name);
				return why;
			}
		}
		size_t at = strlen(buf);
		if (n[0] && n[1])
			snprintf(buf + at, len - at, ",%s%s=%lld:%lld:%lld", prefix, k ? ops : "bw", (long long)n[0],
				 (long long)n[1], (long long)n[2]);
		else
			snprintf(buf + at, len - at, ",%s%s=0", prefix, k ? ops : "bw");
	}
	return NULL;
}

/* A drive's or an interface's limits as spec options into buf. */
static const char *device_limits(const json_t *e, bool drive, char *buf, size_t len, char *why, size_t wlen)
{
	const char *bad;

	buf[0] = 0;
	if (drive)
		return limiter_spec(json_object_get(e, "rate_limiter"), "rate_limiter", "", "iops", buf, len, why, wlen);
	bad = limiter_spec(json_object_get(e, "rx_rate_limiter"), "rx_rate_limiter", "rx_", "pps", buf, len, why, wlen);
	return bad ? bad : limiter_spec(json_object_get(e, "tx_rate_limiter"), "tx_rate_limiter", "tx_", "pps", buf, len, why, wlen);
}

/* Put in into the array named list under key id: new, or replacing the
 * entry with the same id unless that came from the command line. */
static struct http_reply put_device(struct api *a, const char *list, const char *key, const char *id, json_t *in,
			       size_t cli)
{
	json_t *arr = json_object_get(a->model, list);
	const char *body_id = json_string_value(json_object_get(in, key));
	ssize_t at;

	if (!id_ok(id))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s '%s': 1 to 20 letters, digits or '_'", key, id);
	if (strcmp(body_id, id))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s in the body (%s) differs from the path's (%s)", key, body_id, id);
	at = find_id(arr, key, id);
	if (at >= 0 && (size_t)at < cli)
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s %s comes from the command line and cannot be changed", key, id);
	if (at < 0 && json_array_size(arr) >= (!strcmp(list, "drives") ? VM_MAX_DISKS : VM_MAX_NETS))
		return http_fault(MHD_HTTP_BAD_REQUEST, "at most %d %s", !strcmp(list, "drives") ? VM_MAX_DISKS : VM_MAX_NETS,
			     list);
	if (at >= 0)
		json_array_set(arr, (size_t)at, in);
	else
		json_array_append(arr, in);
	return http_no_content();
}

static const struct http_field drive_fields[] = {
	{ "drive_id", F_STR, true },	  { "path_on_host", F_STR, true }, { "is_root_device", F_BOOL, true },
	{ "is_read_only", F_BOOL, false }, { "partuuid", F_STR, false },    { "cache_type", F_STR, false },
	{ "io_engine", F_STR, false },	  { "rate_limiter", F_OBJ, false }, { "socket", F_STR, false },
};

static struct http_reply put_drive(struct api *a, const char *id, json_t *in)
{
	char limits[256], why[256];
	const char *bad;
	json_t *v, *e;
	size_t i;

	HTTP_CHECK(in, drive_fields, false);
	if (json_object_get(in, "socket"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "socket: vhost-user block devices are not supported");
	if ((bad = device_limits(in, true, limits, sizeof(limits), why, sizeof(why))))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s", bad);
	if ((v = json_object_get(in, "cache_type")) && strcmp(json_string_value(v), "Unsafe") &&
	    strcmp(json_string_value(v), "Writeback"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "cache_type must be Unsafe or Writeback");
	if ((v = json_object_get(in, "io_engine")) && strcmp(json_string_value(v), "Sync") &&
	    strcmp(json_string_value(v), "Async"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "io_engine must be Sync or Async");
	v = json_object_get(in, "path_on_host");
	if (!readable(json_string_value(v)) || strchr(json_string_value(v), ','))
		return http_fault(MHD_HTTP_BAD_REQUEST, "path_on_host %s: cannot be read (or has a comma)",
			     json_string_value(v));
	if (json_is_true(json_object_get(in, "is_root_device"))) {
		json_array_foreach(json_object_get(a->model, "drives"), i, e) {
			if (json_is_true(json_object_get(e, "is_root_device")) &&
			    strcmp(json_string_value(json_object_get(e, "drive_id")), id))
				return http_fault(MHD_HTTP_BAD_REQUEST, "drive %s is the root device already",
					     json_string_value(json_object_get(e, "drive_id")));
		}
	}
	return put_device(a, "drives", "drive_id", id, in, a->cli_drives);
}

static const struct http_field net_fields[] = {
	{ "iface_id", F_STR, true },
	{ "host_dev_name", F_STR, true },
	{ "guest_mac", F_STR, false },
	{ "rx_rate_limiter", F_OBJ, false },
	{ "tx_rate_limiter", F_OBJ, false },
};

static struct http_reply put_net(struct api *a, const char *id, json_t *in)
{
	const char *tap, *mac, *bad;
	char limits[256], why[256];

	HTTP_CHECK(in, net_fields, false);
	if ((bad = device_limits(in, false, limits, sizeof(limits), why, sizeof(why))))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s", bad);
	tap = json_string_value(json_object_get(in, "host_dev_name"));
	mac = json_string_value(json_object_get(in, "guest_mac"));
	if (!net_tap_name_ok(tap))
		return http_fault(MHD_HTTP_BAD_REQUEST, "host_dev_name '%s': not a tap device name", tap);
	if (mac && !net_mac_ok(mac))
		return http_fault(MHD_HTTP_BAD_REQUEST, "guest_mac '%s': expected six hex bytes as 52:54:00:12:34:56", mac);
	return put_device(a, "network-interfaces", "iface_id", id, in, a->cli_nets);
}

static const struct http_field patch_drive_fields[] = {
	{ "drive_id", F_STR, true }, { "path_on_host", F_STR, false }, { "rate_limiter", F_OBJ, false },
};
static const struct http_field patch_net_fields[] = {
	{ "iface_id", F_STR, true }, { "rx_rate_limiter", F_OBJ, false }, { "tx_rate_limiter", F_OBJ, false },
};

/* PATCH /drives/{id}, /network-interfaces/{id}: new rate limits, before
 * the start (kept for it) or while the VM runs (the device's buckets are
 * replaced at once, full, as Firecracker's update does). */
static struct http_reply patch_device(struct api *a, bool drive, const char *id, json_t *in)
{
	const char *key = drive ? "drive_id" : "iface_id", *list = drive ? "drives" : "network-interfaces";
	json_t *arr = json_object_get(a->model, list), *e = NULL;
	char limits[256], why[256];
	const char *bad, *v;
	ssize_t at;
	int index = -1;

	if (drive)
		HTTP_CHECK(in, patch_drive_fields, false);
	else
		HTTP_CHECK(in, patch_net_fields, false);
	if (strcmp(json_string_value(json_object_get(in, key)), id))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s in the body differs from the path's (%s)", key, id);
	if ((v = json_string_value(json_object_get(in, "path_on_host"))))
		return http_fault(MHD_HTTP_BAD_REQUEST, "path_on_host: a drive's image cannot be changed");
	if ((bad = device_limits(in, drive, limits, sizeof(limits), why, sizeof(why))))
		return http_fault(MHD_HTTP_BAD_REQUEST, "%s", bad);
	if ((at = find_id(arr, key, id)) < 0)
		return http_fault(MHD_HTTP_NOT_FOUND, "no %s %s", drive ? "drive" : "network interface", id);
	if (a->state == API_RUNNING) {
		if (drive) {
			for (index = 0; (e = drive_at(a, (size_t)index)) && e != json_array_get(arr, (size_t)at); index++)
				;
		} else {
			index = (int)at;
		}
		if (limits[0] && vm_set_limits(a->vm, drive ? "block" : "net", index, limits + 1, why, sizeof(why)))
			return http_fault(MHD_HTTP_BAD_REQUEST, "%s", why);
	}
	e = json_array_get(arr, (size_t)at);
	json_object_foreach(in, v, arr) /* keep the new limits for GET /vm/config */
		json_object_set(e, v, arr);
	return http_no_content();
}

static const struct http_field entropy_fields[] = { { "rate_limiter", F_OBJ, false } };

static struct http_reply put_entropy(struct api *a, json_t *in)
{
	HTTP_CHECK(in, entropy_fields, false);
	if (json_object_get(in, "rate_limiter"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "rate_limiter: not supported yet");
	json_object_set(a->model, "entropy", in);
	return http_no_content();
}

static const struct http_field logger_fields[] = {
	{ "log_path", F_STR, false },	    { "level", F_STR, false },	 { "show_level", F_BOOL, false },
	{ "show_log_origin", F_BOOL, false }, { "module", F_STR, false },
};

/* tarn's log is its standard error: log_path takes its place. */
static struct http_reply put_logger(struct api *a, json_t *in)
{
	static const char *const levels[] = { "error", "warning", "info", "debug", "trace", "off" };
	const char *lv = json_string_value(json_object_get(in, "level"));
	const char *path = json_string_value(json_object_get(in, "log_path"));
	int level = LOG_INFO, fd;

	HTTP_CHECK(in, logger_fields, false);
	if (json_object_get(in, "module"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "module: tarn's log has no modules to filter by");
	if (lv) {
		for (level = 0; level < 6 && strcasecmp(levels[level], lv); level++)
			;
		if (level == 6)
			return http_fault(MHD_HTTP_BAD_REQUEST, "level %s: expected Error, Warning, Info, Debug, Trace "
				     "or Off", lv);
	}
	if (path) {
		fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
		if (fd < 0)
			return http_fault(MHD_HTTP_BAD_REQUEST, "log_path %s: %s", path, strerror(errno));
		if (dup2(fd, STDERR_FILENO) < 0) {
			close(fd);
			return http_fault(MHD_HTTP_INTERNAL_SERVER_ERROR, "log_path: %s", strerror(errno));
		}
		close(fd);
	}
	/* Off keeps errors: a VMM that stops says why. Trace is debug. */
	log_threshold = level == 5 ? LOG_ERR : level == 4 ? LOG_DEBUG : (enum log_level)level;
	return http_no_content();
}

/* ---- the running VM ---- */

static const struct http_field vm_fields[] = { { "state", F_STR, true } };

static struct http_reply patch_vm(struct api *a, json_t *in)
{
	const char *st;
	int ret;

	HTTP_CHECK(in, vm_fields, false);
	st = json_string_value(json_object_get(in, "state"));
	if (strcmp(st, "Paused") && strcmp(st, "Resumed"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "state must be Paused or Resumed");
	if (a->state != API_RUNNING)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not running (state %s)", state_name(a->state, NULL));
	ret = !strcmp(st, "Paused") ? vm_pause(a->vm) : vm_resume(a->vm);
	if (ret)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is stopping");
	return http_no_content();
}

/* Hand the start to the thread that builds the VM (api_wait_start) and
 * wait for its answer (api_started): true when the VM runs. */
static bool start_and_wait(struct api *a)
{
	a->state = API_STARTING;
	pthread_cond_broadcast(&a->cond);
	while (a->state == API_STARTING)
		pthread_cond_wait(&a->cond, &a->lock);
	return a->state == API_RUNNING;
}

/* ---- metrics ---- */

struct metrics_walk {
	struct api *a;
	json_t *cur; /* totals: group -> name -> value */
};

/* A device's group of its own: block_<drive_id>, net_<iface_id> where the
 * machine model names it, else the kind and its index. */
static void metrics_device_group(struct api *a, const char *group, int index, char *buf, size_t len)
{
	json_t *e = !strcmp(group, "block") ? drive_at(a, (size_t)index) :
		    !strcmp(group, "net") ? json_array_get(json_object_get(a->model, "network-interfaces"), (size_t)index) :
					    NULL;
	const char *id = json_string_value(json_object_get(e, !strcmp(group, "block") ? "drive_id" : "iface_id"));

	if (id)
		snprintf(buf, len, "%s_%s", group, id);
	else
		snprintf(buf, len, "%s%d", group, index);
}

static void metrics_put(json_t *cur, const char *group, const char *name, uint64_t value, bool add)
{
	json_t *g = json_object_get(cur, group);

	if (!g) {
		g = json_object();
		json_object_set_new(cur, group, g);
	}
	if (add)
		value += (uint64_t)json_integer_value(json_object_get(g, name));
	json_object_set_new(g, name, json_integer((json_int_t)value));
}

/* vm_metric_fn: the device's own group, and the sum of its kind. */
static void metrics_add(void *opaque, const char *group, int index, const char *name, uint64_t value)
{
	struct metrics_walk *w = opaque;
	char own[96];

	metrics_put(w->cur, group, name, value, index >= 0);
	if (index >= 0) {
		metrics_device_group(w->a, group, index, own, sizeof(own));
		metrics_put(w->cur, own, name, value, false);
	}
}

/* A migration's figures (GET /migrate, the metrics' "migration" group). */
static json_t *stats_json(const struct mig_stats *s)
{
	const struct mig_stats st = *s;
	json_t *o, *rounds;

	rounds = json_array();
	for (unsigned i = 0; i < st.rounds && i < MIG_ROUNDS_KEPT; i++)
		json_array_append_new(rounds, json_integer((json_int_t)st.pages_round[i]));
	o = json_pack("{s:s,s:s,s:i,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:i}", "state", mig_state_name(st.state),
		      "destination", st.to, "rounds", (int)st.rounds, "pages_per_round", rounds, "pages_sent",
		      (json_int_t)st.pages_total, "pages_filled", (json_int_t)st.pages_filled, "bytes_sent",
		      (json_int_t)st.bytes_wire, "pages_remaining", (json_int_t)st.remaining, "setup_ms",
		      (json_int_t)st.setup_ms, "total_ms", (json_int_t)st.total_ms, "downtime_ms",
		      (json_int_t)st.downtime_ms, "throttle_pct", st.throttle_pct);
	if (o && st.error[0])
		json_object_set_new(o, "error", json_string(st.error));
	if (o && st.source_paused)
		json_object_set_new(o, "source_paused", json_true());
	if (o && st.disk_bytes)
		json_object_set_new(o, "disk_bytes_sent", json_integer((json_int_t)st.disk_bytes));
	return o;
}

static json_t *migration_json(struct api *a)
{
	struct mig_stats st;

	if (!a->mig)
		return json_pack("{s:s}", "state", mig_state_name(MIG_NONE));
	mig_get_stats(a->mig, &st);
	return stats_json(&st);
}

/* Write one line of JSON: what the counters counted since the last flush
 * (Firecracker's way), the latencies as they are. a->lock held. */
static int metrics_flush(struct api *a)
{
	struct metrics_walk w = { a, json_object() };
	json_t *out, *g, *v;
	const char *group, *name;
	struct timespec now;
	char *text;
	int ret = 0;

	if (a->state == API_RUNNING)
		vm_metrics(a->vm, metrics_add, &w);
	metrics_put(w.cur, "latencies_us", "full_create_snapshot", a->create_snapshot_us, false);
	metrics_put(w.cur, "latencies_us", "load_snapshot", a->load_snapshot_us, false);
	if (a->mig)
		json_object_set_new(w.cur, "migration", migration_json(a));
	out = json_deep_copy(w.cur);
	json_object_foreach(out, group, g) {
		if (!strcmp(group, "latencies_us") || !strcmp(group, "migration"))
			continue;
		json_object_foreach(g, name, v) {
			json_t *last = json_object_get(json_object_get(a->metrics_last, group), name);

			json_integer_set(v, json_integer_value(v) - json_integer_value(last));
		}
	}
	clock_gettime(CLOCK_REALTIME, &now);
	json_object_set_new(out, "utc_timestamp_ms",
			    json_integer((json_int_t)now.tv_sec * 1000 + now.tv_nsec / 1000000));
	text = json_dumps(out, JSON_COMPACT | JSON_SORT_KEYS);
	json_decref(out);
	if (!text || dprintf(a->metrics_fd, "%s\n", text) < 0)
		ret = text ? -errno : -ENOMEM;
	free(text);
	json_decref(a->metrics_last);
	a->metrics_last = w.cur;
	return ret;
}

/* tarn's GET /metrics: the same groups as the lines of PUT /metrics, but
 * totals since the VM was built (tarnd reads them). */
static struct http_reply get_metrics(struct api *a)
{
	struct metrics_walk w = { a, json_object() };

	if (a->state == API_RUNNING)
		vm_metrics(a->vm, metrics_add, &w);
	if (a->mig)
		json_object_set_new(w.cur, "migration", migration_json(a));
	return http_ok(w.cur);
}

/* Flush every API_METRICS_PERIOD s until the API stops. */
static void *metrics_thread(void *arg)
{
	struct api *a = arg;
	struct timespec t;
	int ret;

	pthread_mutex_lock(&a->lock);
	clock_gettime(CLOCK_MONOTONIC, &t);
	while (!a->stopping) {
		t.tv_sec += API_METRICS_PERIOD;
		while (!a->stopping && pthread_cond_timedwait(&a->metrics_cond, &a->lock, &t) != ETIMEDOUT)
			;
		if (!a->stopping && (ret = metrics_flush(a)))
			pr_warn_ratelimited("metrics: cannot write: %s", strerror(-ret));
	}
	pthread_mutex_unlock(&a->lock);
	return NULL;
}

static const struct http_field metrics_fields[] = { { "metrics_path", F_STR, true } };

static struct http_reply put_metrics(struct api *a, json_t *in)
{
	const char *path;
	sigset_t all, old;
	int fd;

	HTTP_CHECK(in, metrics_fields, false);
	path = json_string_value(json_object_get(in, "metrics_path"));
	if (a->metrics_fd >= 0)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the metrics are configured already (%s goes nowhere)", path);
	/* A file, or a FIFO with a reader: never block the API on it. */
	fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0640);
	if (fd < 0)
		return http_fault(MHD_HTTP_BAD_REQUEST, "metrics_path %s: %s", path,
			     errno == ENXIO ? "a FIFO without a reader" : strerror(errno));
	a->metrics_fd = fd;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	a->metrics_thread_started = !pthread_create(&a->metrics_thread, NULL, metrics_thread, a);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!a->metrics_thread_started)
		pr_warn("metrics: no periodic flush (cannot start a thread); FlushMetrics still works");
	return http_no_content();
}

static const struct http_field action_fields[] = { { "action_type", F_STR, true } };

static struct http_reply put_actions(struct api *a, json_t *in)
{
	const char *t;

	HTTP_CHECK(in, action_fields, false);
	t = json_string_value(json_object_get(in, "action_type"));
	if (!strcmp(t, "FlushMetrics")) {
		if (a->metrics_fd < 0)
			return http_fault(MHD_HTTP_BAD_REQUEST, "no metrics file: PUT /metrics first");
		int ret = metrics_flush(a);

		if (ret)
			return http_fault(MHD_HTTP_BAD_REQUEST, "FlushMetrics: cannot write the metrics: %s", strerror(-ret));
		return http_no_content();
	}
	if (!strcmp(t, "PowerButton")) { /* tarn's */
		if (a->state != API_RUNNING)
			return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not running (state %s)", state_name(a->state, NULL));
		if (vm_power_button(a->vm))
			return http_fault(MHD_HTTP_BAD_REQUEST, "PowerButton: the VM is paused");
		return http_no_content();
	}
	if (!strcmp(t, "SendCtrlAltDel")) {
		int ret;

		if (a->state != API_RUNNING)
			return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not running (state %s)", state_name(a->state, NULL));
		ret = vm_ctrl_alt_del(a->vm);
		if (ret)
			return http_fault(MHD_HTTP_BAD_REQUEST, "SendCtrlAltDel: %s",
				     ret == -EAGAIN ? "the guest has no keyboard driver (yet)"
				     : vm_is_paused(a->vm) ? "the VM is paused" : "the guest has not read the last keys");
		return http_no_content();
	}
	if (strcmp(t, "InstanceStart"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "action_type %s: expected InstanceStart, SendCtrlAltDel, "
			     "FlushMetrics or PowerButton", t);
	if (a->state != API_NOT_STARTED)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM has started already");
	if (!json_object_get(a->model, "boot-source"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "no boot source: PUT /boot-source first");
	if (!start_and_wait(a))
		return http_fault(MHD_HTTP_BAD_REQUEST, "cannot start: %s", a->why);
	return http_no_content();
}

/* ---- snapshots ---- */

static const struct http_field snap_create_fields[] = {
	{ "snapshot_path", F_STR, true },
	{ "mem_file_path", F_STR, true },
	{ "snapshot_type", F_STR, false },
	{ "version", F_STR, false },
};

static struct http_reply put_snapshot_create(struct api *a, json_t *in)
{
	const char *type, *path, *mem;
	char why[512];
	uint64_t t0;

	HTTP_CHECK(in, snap_create_fields, false);
	type = json_string_value(json_object_get(in, "snapshot_type"));
	path = json_string_value(json_object_get(in, "snapshot_path"));
	mem = json_string_value(json_object_get(in, "mem_file_path"));
	if (type && strcmp(type, "Full") && strcmp(type, "Diff"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "snapshot_type %s: expected Full or Diff", type);
	if (json_object_get(in, "version"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "version: not supported (snapshots are in this tarn's format)");
	if (a->state != API_RUNNING)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not running (state %s)", state_name(a->state, NULL));
	if (!vm_is_paused(a->vm))
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not paused: PATCH /vm {\"state\": \"Paused\"} first");
	t0 = monotonic_ns();
	if (vm_snapshot_save(a->vm, path, mem, type && !strcmp(type, "Diff"), why, sizeof(why)))
		return http_fault(MHD_HTTP_BAD_REQUEST, "snapshot: %s", why);
	a->create_snapshot_us = (monotonic_ns() - t0) / 1000;
	return http_no_content();
}

static const struct http_field snap_load_fields[] = {
	{ "snapshot_path", F_STR, true },
	{ "mem_file_path", F_STR, false },
	{ "mem_backend", F_OBJ, false },
	{ "enable_diff_snapshots", F_BOOL, false },
	{ "resume_vm", F_BOOL, false },
	{ "backend", F_STR, false }, /* tarn's: the CPU backend to restore under */
};
static const struct http_field mem_backend_fields[] = {
	{ "backend_path", F_STR, true },
	{ "backend_type", F_STR, true },
};

static struct http_reply put_snapshot_load(struct api *a, json_t *in)
{
	json_t *mb = json_object_get(in, "mem_backend");
	const char *mem, *backend, *type;

	HTTP_CHECK(in, snap_load_fields, false);
	if (mb)
		HTTP_CHECK(mb, mem_backend_fields, false);
	if (!mb == !json_object_get(in, "mem_file_path"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "give the memory file as mem_backend or mem_file_path (one of them)");
	type = mb ? json_string_value(json_object_get(mb, "backend_type")) : "File";
	if (strcmp(type, "File"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "backend_type %s: only File is supported", type);
	backend = json_string_value(json_object_get(in, "backend"));
	if (backend && strcmp(backend, "kvm") && strcmp(backend, "emu") && strcmp(backend, "auto"))
		return http_fault(MHD_HTTP_BAD_REQUEST, "backend %s: expected kvm, emu or auto", backend);
	if (a->state != API_NOT_STARTED)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM has started already: a snapshot loads into a new tarn");
	mem = json_string_value(mb ? json_object_get(mb, "backend_path") : json_object_get(in, "mem_file_path"));
	free(a->load_state);
	free(a->load_mem);
	free(a->load_backend);
	a->load_state = strdup(json_string_value(json_object_get(in, "snapshot_path")));
	a->load_mem = strdup(mem);
	a->load_backend = backend ? strdup(backend) : NULL;
	a->load_resume = json_is_true(json_object_get(in, "resume_vm"));
	a->load_track_dirty = json_is_true(json_object_get(in, "enable_diff_snapshots"));
	uint64_t t0 = monotonic_ns();
	bool started = start_and_wait(a);

	a->load_snapshot_us = (monotonic_ns() - t0) / 1000;
	free(a->load_state);
	a->load_state = NULL;
	if (!started)
		return http_fault(MHD_HTTP_BAD_REQUEST, "cannot load the snapshot: %s", a->why);
	return http_no_content();
}

/* ---- migration (tarn's) ---- */

static const struct http_field migrate_fields[] = {
	{ "destination", F_STR, true },	  { "downtime_ms", F_INT, false }, { "max_time_s", F_INT, false },
	{ "compress", F_BOOL, false },	  { "auto_converge", F_BOOL, false }, { "wait", F_BOOL, false },
	{ "max_bandwidth_mib", F_INT, false }, { "copy_disks", F_BOOL, false },
};

static struct http_reply put_migrate(struct api *a, json_t *in)
{
	struct mig_params p = { .downtime_ns = MIG_DEFAULT_DOWNTIME_MS * 1000000ULL,
				.max_time_ns = MIG_DEFAULT_MAX_TIME_S * 1000000000ULL,
				.auto_converge = true };
	const char *to;
	json_t *v;
	char why[512];

	HTTP_CHECK(in, migrate_fields, false);
	to = json_string_value(json_object_get(in, "destination"));
	if (!*to || strlen(to) >= sizeof(p.to))
		return http_fault(MHD_HTTP_BAD_REQUEST, "destination: HOST:PORT or unix:PATH (under %zu bytes)",
				  sizeof(p.to));
	snprintf(p.to, sizeof(p.to), "%s", to);
	if ((v = json_object_get(in, "downtime_ms"))) {
		if (json_integer_value(v) < 1 || json_integer_value(v) > 60000)
			return http_fault(MHD_HTTP_BAD_REQUEST, "downtime_ms: 1 to 60000");
		p.downtime_ns = (uint64_t)json_integer_value(v) * 1000000ULL;
	}
	if ((v = json_object_get(in, "max_time_s"))) {
		if (json_integer_value(v) < 1 || json_integer_value(v) > 86400)
			return http_fault(MHD_HTTP_BAD_REQUEST, "max_time_s: 1 to 86400");
		p.max_time_ns = (uint64_t)json_integer_value(v) * 1000000000ULL;
	}
	if ((v = json_object_get(in, "max_bandwidth_mib"))) {
		if (json_integer_value(v) < 1 || json_integer_value(v) > 1000000)
			return http_fault(MHD_HTTP_BAD_REQUEST, "max_bandwidth_mib: 1 to 1000000 (MiB a second)");
		p.max_bandwidth = (uint64_t)json_integer_value(v) << 20;
	}
	p.compress = json_is_true(json_object_get(in, "compress"));
	p.copy_disks = json_is_true(json_object_get(in, "copy_disks"));
	if ((v = json_object_get(in, "auto_converge")))
		p.auto_converge = json_is_true(v);
	if (a->state != API_RUNNING)
		return http_fault(MHD_HTTP_BAD_REQUEST, "the VM is not running: there is nothing to migrate");
	if (a->mig_waiters)
		return http_fault(MHD_HTTP_CONFLICT, "a client still waits on the last migration");
	switch (mig_start(&a->mig, a->vm, &p, why, sizeof(why))) {
	case 0: break;
	case -EBUSY: return http_fault(MHD_HTTP_CONFLICT, "%s", why);
	default: return http_fault(MHD_HTTP_BAD_REQUEST, "%s", why);
	}
	if (!json_is_true(json_object_get(in, "wait")))
		return (struct http_reply){ MHD_HTTP_ACCEPTED, migration_json(a) };
	/* Wait for the end without the API's lock (GET /migrate and a
	 * cancel are served meanwhile); a->mig stays while anyone waits. */
	struct migration *m = a->mig;
	struct mig_stats st;

	a->mig_waiters++;
	pthread_mutex_unlock(&a->lock);
	mig_wait(m, &st);
	pthread_mutex_lock(&a->lock);
	a->mig_waiters--;
	return http_ok(stats_json(&st));
}

static struct http_reply put_migrate_cancel(struct api *a)
{
	switch (mig_cancel(a->mig)) {
	case 0: return http_no_content();
	case -EBUSY:
		return http_fault(MHD_HTTP_CONFLICT, "too late: the destination was told to run the VM");
	default: return http_fault(MHD_HTTP_BAD_REQUEST, "no migration is under way");
	}
}

/* ---- routing ---- */

/* Firecracker's requests tarn does not serve yet: 400, saying so. */
static const struct {
	const char *path, *method;
} unsupported[] = {
	{ "/balloon", "PUT" },	       { "/mmds", "PUT" },	    { "/vsock", "PUT" },
	{ "/cpu-config", "PUT" },
};

/* Handle one request under a->lock. in: the body as a JSON object, or
 * NULL with why the body is not one in bad (NULL: no body). The path and
 * the method are looked at before the body. */
static struct http_reply route(struct api *a, const char *method, const char *url, json_t *in, const char *bad)
{
	bool get = !strcmp(method, "GET"), put = !strcmp(method, "PUT"), patch = !strcmp(method, "PATCH");
	bool preboot = a->state == API_NOT_STARTED;
	const char *sub;

#define ALLOW(cond, methods)                                          \
	do {                                                          \
		if (!(cond))                                          \
			return (struct http_reply){ MHD_HTTP_METHOD_NOT_ALLOWED,   \
					       json_pack("{s:s}", "fault_message", \
							 "method not allowed here"), methods }; \
	} while (0)
#define NEED_BODY()                                                                         \
	do {                                                                                \
		if (!in)                                                                    \
			return http_fault(MHD_HTTP_BAD_REQUEST, "%s",                            \
				     bad ? bad : "a JSON object is expected as the body");  \
	} while (0)
#define PREBOOT()                                                                             \
	do {                                                                                  \
		if (!preboot)                                                                 \
			return http_fault(MHD_HTTP_BAD_REQUEST, "the VM has started: %s %s is for " \
				     "before it starts", method, url);                        \
	} while (0)

	if (!strcmp(url, "/")) {
		ALLOW(get, "GET");
		return http_ok(json_pack("{s:s,s:s,s:s,s:s}", "id", API_ID, "state", state_name(a->state, a->vm),
					 "vmm_version", TARN_VERSION, "app_name", "tarn"));
	}
	if (!strcmp(url, "/version")) {
		ALLOW(get, "GET");
		return http_ok(json_pack("{s:s,s:s}", "firecracker_version", API_FIRECRACKER_LEVEL,
					 "tarn_version", TARN_VERSION));
	}
	if (!strcmp(url, "/vm/config")) {
		ALLOW(get, "GET");
		return http_ok(json_deep_copy(a->model));
	}
	if (!strcmp(url, "/machine-config")) {
		ALLOW(get || put || patch, "GET, PUT, PATCH");
		if (get)
			return http_ok(json_deep_copy(json_object_get(a->model, "machine-config")));
		NEED_BODY();
		PREBOOT();
		return put_machine_config(a, in, patch);
	}
	if (!strcmp(url, "/vm")) {
		ALLOW(patch, "PATCH");
		NEED_BODY();
		return patch_vm(a, in);
	}
	if (!strcmp(url, "/actions")) {
		ALLOW(put, "PUT");
		NEED_BODY();
		return put_actions(a, in);
	}
	if (!strcmp(url, "/snapshot/create") || !strcmp(url, "/snapshot/load")) {
		ALLOW(put, "PUT");
		NEED_BODY();
		return !strcmp(url, "/snapshot/load") ? put_snapshot_load(a, in) : put_snapshot_create(a, in);
	}
	if (!strcmp(url, "/migrate")) {
		ALLOW(get || put, "GET, PUT");
		if (get)
			return http_ok(migration_json(a));
		NEED_BODY();
		return put_migrate(a, in);
	}
	if (!strcmp(url, "/migrate/cancel")) {
		ALLOW(put, "PUT");
		return put_migrate_cancel(a);
	}
	if (!strcmp(url, "/logger")) {
		ALLOW(put, "PUT");
		NEED_BODY();
		return put_logger(a, in);
	}
	if (!strcmp(url, "/metrics")) {
		ALLOW(put || get, "GET, PUT");
		if (get)
			return get_metrics(a);
		NEED_BODY();
		PREBOOT();
		return put_metrics(a, in);
	}
	if ((!strncmp(url, "/drives/", 8) || !strncmp(url, "/network-interfaces/", 20)) && patch) {
		NEED_BODY();
		return patch_device(a, url[1] == 'd', strchr(url + 1, '/') + 1, in);
	}
	if (!strcmp(url, "/boot-source") || !strncmp(url, "/drives/", 8) || !strncmp(url, "/network-interfaces/", 20) ||
	    !strcmp(url, "/entropy")) {
		ALLOW(put, url[1] == 'd' || url[1] == 'n' ? "PUT, PATCH" : "PUT");
		NEED_BODY();
		PREBOOT();
		if ((sub = url + 8, !strncmp(url, "/drives/", 8)))
			return put_drive(a, sub, in);
		if ((sub = url + 20, !strncmp(url, "/network-interfaces/", 20)))
			return put_net(a, sub, in);
		return !strcmp(url, "/entropy") ? put_entropy(a, in) : put_boot_source(a, in);
	}
	for (size_t i = 0; i < sizeof(unsupported) / sizeof(unsupported[0]); i++) {
		if (!strcmp(url, unsupported[i].path)) {
			ALLOW(!strcmp(method, unsupported[i].method), unsupported[i].method);
			return http_fault(MHD_HTTP_BAD_REQUEST, "%s %s: not supported yet", method, url);
		}
	}
	return http_fault(MHD_HTTP_NOT_FOUND, "no such resource: %s", url);
#undef ALLOW
#undef NEED_BODY
#undef PREBOOT
}

/* Each request under a->lock. */
static struct http_reply api_route(void *opaque, const struct http_request *r)
{
	struct api *a = opaque;
	struct http_reply rep;

	pthread_mutex_lock(&a->lock);
	rep = route(a, r->method, r->url, r->in, r->bad);
	pthread_mutex_unlock(&a->lock);
	return rep;
}

int api_start(struct api **out, const char *path, char *err, size_t err_len)
{
	struct api *a = calloc(1, sizeof(*a));
	char why[256];
	int ret = -ENOMEM, fd;

	if (!a || !(a->path = strdup(path)))
		goto fail;
	a->model = json_pack("{s:{s:i,s:i,s:b,s:b},s:[],s:[]}", "machine-config", "vcpu_count", 1, "mem_size_mib", 512,
			     "smt", 0, "track_dirty_pages", 0, "drives", "network-interfaces");
	if (!a->model)
		goto fail;
	pthread_mutex_init(&a->lock, NULL);
	pthread_cond_init(&a->cond, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&a->metrics_cond, &ca);
	pthread_condattr_destroy(&ca);
	a->metrics_fd = -1;
	fd = http_listen_unix(path, "--api-sock", err, err_len);
	if (fd < 0) {
		ret = fd;
		goto fail_sync;
	}
	/* A thread per connection: a PUT /migrate that waits for its end
	 * leaves the API to the others. */
	ret = http_start(&a->srv, fd, API_BODY_MAX, true, api_route, a, why, sizeof(why));
	if (ret) {
		snprintf(err, err_len, "--api-sock %s: %s", path, why);
		unlink(path);
		goto fail_sync;
	}
	*out = a;
	return 0;
fail_sync:
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->metrics_cond);
fail:
	if (ret == -ENOMEM)
		snprintf(err, err_len, "--api-sock: out of memory");
	if (a) {
		json_decref(a->model);
		free(a->path);
	}
	free(a);
	return ret;
}

void api_stop(struct api *a)
{
	if (!a)
		return;
	http_drain(a->srv, 2000); /* a migration's last answer, say */
	http_stop(a->srv);
	unlink(a->path);
	if (a->metrics_thread_started) {
		pthread_mutex_lock(&a->lock);
		a->stopping = true;
		pthread_cond_signal(&a->metrics_cond);
		pthread_mutex_unlock(&a->lock);
		pthread_join(a->metrics_thread, NULL);
	}
	if (a->metrics_fd >= 0)
		close(a->metrics_fd);
	json_decref(a->metrics_last);
	json_decref(a->model);
	free(a->load_state);
	free(a->load_mem);
	free(a->load_backend);
	mig_free(a->mig);
	pthread_mutex_destroy(&a->lock);
	pthread_cond_destroy(&a->cond);
	pthread_cond_destroy(&a->metrics_cond);
	free(a->path);
	free(a);
}

/* ---- the command line's machine, and the API's into a config tree ---- */

/* Device specs from the command line: "PATH,opt,key=val,...". */
static json_t *spec_path(const char *spec)
{
	return json_stringn(spec, strcspn(spec, ","));
}

static bool spec_flag(const char *spec, const char *opt)
{
	size_t ol = strlen(opt);

	for (const char *p = strchr(spec, ','); p; p = strchr(p + 1, ','))
		if (!strncmp(p + 1, opt, ol) && (p[1 + ol] == ',' || !p[1 + ol]))
			return true;
	return false;
}

static const char *spec_value(const char *spec, const char *key, size_t *n)
{
	size_t kl = strlen(key);

	for (const char *p = spec; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			*n = strcspn(p + kl + 1, ",");
			return p + kl + 1;
		}
	}
	return NULL;
}

/* The RateLimiter a command-line device spec sets with PREFIX"bw" and
 * PREFIX ops (limiter_spec's inverse): set into e under name, when the
 * spec limits either. */
static void spec_limiter(json_t *e, const char *name, const char *spec, const char *prefix, const char *ops)
{
	static const char *const buckets[2] = { "bandwidth", "ops" };
	json_t *rl = json_object();

	for (int k = 0; k < 2; k++) {
		char key[16], val[64], why[200];
		struct tb_config tb;
		const char *v;
		size_t n;

		snprintf(key, sizeof(key), "%s%s", prefix, k ? ops : "bw");
		if (!(v = spec_value(spec, key, &n)) || n >= sizeof(val))
			continue;
		memcpy(val, v, n);
		val[n] = 0;
		if (!rl_parse(val, &tb, why, sizeof(why)) && tb.size)
			json_object_set_new(rl, buckets[k], json_pack("{s:I,s:I,s:I}", "size", (json_int_t)tb.size,
								      "refill_time", (json_int_t)tb.refill_ms,
								      "one_time_burst", (json_int_t)tb.one_time_burst));
	}
	if (json_object_size(rl))
		json_object_set_new(e, name, rl);
	else
		json_decref(rl);
}

void api_set_cli_config(struct api *a, const struct config *c)
{
	const char *disks[VM_MAX_DISKS], *nets[VM_MAX_NETS], *v;
	json_t *mc = json_object_get(a->model, "machine-config");
	char err[128], id[16];
	uint64_t n;
	size_t len;
	int nd, nn;

	pthread_mutex_lock(&a->lock);
	if ((v = config_get(c, "vm.cpus")) && !parse_uint(v, 1, VM_MAX_CPUS, &n))
		json_object_set_new(mc, "vcpu_count", json_integer((json_int_t)n));
	if ((v = config_get(c, "vm.mem")) && !parse_size(v, 1ULL << 20, &n))
		json_object_set_new(mc, "mem_size_mib", json_integer((json_int_t)(n >> 20)));
	if ((v = config_get(c, "vm.track_dirty_pages")))
		json_object_set_new(mc, "track_dirty_pages", json_boolean(!strcmp(v, "on")));
	if ((v = config_get(c, "boot.kernel"))) {
		json_t *b = json_pack("{s:s}", "kernel_image_path", v);

		if ((v = config_get(c, "boot.initrd")))
			json_object_set_new(b, "initrd_path", json_string(v));
		if ((v = config_get(c, "boot.cmdline")))
			json_object_set_new(b, "boot_args", json_string(v));
		json_object_set_new(a->model, "boot-source", b);
	}
	nd = config_get_indexed(c, "dev.disk", VM_MAX_DISKS, disks, err, sizeof(err));
	for (int i = 0; i < nd; i++) {
		json_t *e;

		snprintf(id, sizeof(id), "cli%d", i);
		e = json_pack("{s:s,s:o,s:b,s:b}", "drive_id", id, "path_on_host", spec_path(disks[i]), "is_root_device", 0,
			      "is_read_only", spec_flag(disks[i], "ro"));
		spec_limiter(e, "rate_limiter", disks[i], "", "iops");
		json_array_append_new(json_object_get(a->model, "drives"), e);
		a->cli_drives++;
	}
	nn = config_get_indexed(c, "dev.net", VM_MAX_NETS, nets, err, sizeof(err));
	for (int i = 0; i < nn; i++) {
		json_t *e;

		snprintf(id, sizeof(id), "cli%d", i);
		e = json_pack("{s:s}", "iface_id", id);
		if ((v = spec_value(nets[i], "tap", &len)))
			json_object_set_new(e, "host_dev_name", json_stringn(v, len));
		if ((v = spec_value(nets[i], "mac", &len)))
			json_object_set_new(e, "guest_mac", json_stringn(v, len));
		spec_limiter(e, "rx_rate_limiter", nets[i], "rx_", "pps");
		spec_limiter(e, "tx_rate_limiter", nets[i], "tx_", "pps");
		json_array_append_new(json_object_get(a->model, "network-interfaces"), e);
		a->cli_nets++;
	}
	if ((v = config_get(c, "dev.rng")) && !strcmp(v, "on"))
		json_object_set_new(a->model, "entropy", json_object());
	pthread_mutex_unlock(&a->lock);
}

/* Write the API's machine into dst (a copy of the command line's tree):
 * machine-config, boot-source, the drives and interfaces the API added
 * (the root drive first, as /dev/vda, and root= on the command line, as
 * Firecracker does), entropy. 0 or -errno. */
static int model_to_config(struct api *a, struct config *dst)
{
	json_t *mc = json_object_get(a->model, "machine-config");
	json_t *boot = json_object_get(a->model, "boot-source");
	json_t *e, *v;
	char buf[4200], root[128] = "", limits[256], why[256];
	int ret = 0;
	size_t i;

	snprintf(buf, sizeof(buf), "%lld", (long long)json_integer_value(json_object_get(mc, "vcpu_count")));
	ret |= config_set(dst, "vm.cpus", buf);
	snprintf(buf, sizeof(buf), "%lldM", (long long)json_integer_value(json_object_get(mc, "mem_size_mib")));
	ret |= config_set(dst, "vm.mem", buf);
	if (json_is_true(json_object_get(mc, "track_dirty_pages")))
		ret |= config_set(dst, "vm.track_dirty_pages", "on");
	ret |= config_set(dst, "boot.kernel", json_string_value(json_object_get(boot, "kernel_image_path")));
	if ((v = json_object_get(boot, "initrd_path")))
		ret |= config_set(dst, "boot.initrd", json_string_value(v));
	/* Drives: the root one first among the API's, then the rest in order. */
	for (size_t k = a->cli_drives; (e = drive_at(a, k)); k++) {
		bool is_root = json_is_true(json_object_get(e, "is_root_device"));
		bool ro = json_is_true(json_object_get(e, "is_read_only"));

		device_limits(e, true, limits, sizeof(limits), why, sizeof(why)); /* checked at PUT */
		snprintf(buf, sizeof(buf), "%s,serial=%s%s%s", json_string_value(json_object_get(e, "path_on_host")),
			 json_string_value(json_object_get(e, "drive_id")), ro ? ",ro" : "", limits);
		ret |= config_add_indexed(dst, "dev.disk", VM_MAX_DISKS, buf);
		if (is_root && (v = json_object_get(e, "partuuid")))
			snprintf(root, sizeof(root), "root=PARTUUID=%s %s", json_string_value(v), ro ? "ro" : "rw");
		else if (is_root)
			snprintf(root, sizeof(root), "root=/dev/vd%c %s", (int)('a' + k), ro ? "ro" : "rw");
	}
	v = json_object_get(boot, "boot_args");
	snprintf(buf, sizeof(buf), "%s%s%s", v ? json_string_value(v) : "", v && *root ? " " : "", root);
	if (*buf)
		ret |= config_set(dst, "boot.cmdline", buf);
	json_array_foreach(json_object_get(a->model, "network-interfaces"), i, e) {
		if (i < a->cli_nets)
			continue;
		v = json_object_get(e, "guest_mac");
		device_limits(e, false, limits, sizeof(limits), why, sizeof(why));
		snprintf(buf, sizeof(buf), "tap=%s%s%s%s", json_string_value(json_object_get(e, "host_dev_name")),
			 v ? ",mac=" : "", v ? json_string_value(v) : "", limits);
		ret |= config_add_indexed(dst, "dev.net", VM_MAX_NETS, buf);
	}
	if (json_object_get(a->model, "entropy"))
		ret |= config_set(dst, "dev.rng", "on");
	return ret ? -ENOMEM : 0;
}

int api_wait_start(struct api *a, const struct config *cli, struct config *dst, bool (*quit)(void))
{
	int ret = 0;
	bool stop = false;

	pthread_mutex_lock(&a->lock);
	while (a->state != API_STARTING && !(stop = quit())) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 100 * 1000000L; /* ask quit() 10 times a second */
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&a->cond, &a->lock, &ts);
	}
	if (stop) {
		pthread_mutex_unlock(&a->lock);
		return -EINTR;
	}
	for (int i = 0; i < cli->nr && !ret; i++)
		ret = config_set(dst, cli->e[i].key, cli->e[i].value);
	if (!ret && a->load_state) {
		ret = config_set(dst, "restore.state", a->load_state) | config_set(dst, "restore.mem", a->load_mem) |
		      config_set(dst, "restore.paused", a->load_resume ? "off" : "on") |
		      config_set(dst, "vm.track_dirty_pages", a->load_track_dirty ? "on" : "off");
		if (a->load_backend)
			ret |= config_set(dst, "vm.backend", a->load_backend);
		ret = ret ? -ENOMEM : 0;
	} else if (!ret) {
		ret = model_to_config(a, dst);
	}
	pthread_mutex_unlock(&a->lock);
	return ret;
}

void api_started(struct api *a, struct vm *vm, const char *why)
{
	pthread_mutex_lock(&a->lock);
	a->vm = vm;
	a->state = vm ? API_RUNNING : API_NOT_STARTED;
	snprintf(a->why, sizeof(a->why), "%s", why ? why : "");
	pthread_cond_broadcast(&a->cond);
	pthread_mutex_unlock(&a->lock);
}

void api_vm_stopped(struct api *a)
{
	struct migration *m;

	pthread_mutex_lock(&a->lock);
	a->vm = NULL;
	a->state = API_STOPPED;
	m = a->mig;
	pthread_mutex_unlock(&a->lock);
	/* A migration under way ends (cancelled) before the VM goes; its
	 * figures stay for GET /migrate. */
	if (m)
		mig_join(m);
}
