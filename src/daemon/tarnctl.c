/* tarnctl: tarnd's API from the shell. NOUN VERB [NAME] [--flags], tables
 * for people and --json for scripts; exit 0 done, 1 refused or tarnd not
 * reached (the reason on stderr, one line), 2 bad usage. */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <limits.h>
#include <nettle/base64.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "api/http_client.h"
#include "core/config.h"
#include "core/log.h"
#include "daemon/tarnd.h"

static const char usage[] =
	"usage: tarnctl [--socket PATH] [--json] NOUN VERB [NAME] [options]\n"
	"\n"
	"Drive tarnd (README \"Many VMs on one host\").\n"
	"\n"
	"  vm create NAME --kernel PATH [--initrd PATH] [--cmdline TEXT] [--cpus N]\n"
	"            [--mem SIZE] [--backend kvm|emu|auto] [--restart no|on-failure|always]\n"
	"            [--start] [--disk PATH[,ro][,bw=RATE][,iops=RATE]]...\n"
	"            [--volume NAME[,ro][,bw=RATE][,iops=RATE]]...\n"
	"            [--net NETWORK[,mac=MAC][,ip=ADDR]...]...   (NICs: eth0, eth1, ...\n"
	"            in order; ip=: the only addresses it may send from)\n"
	"            [--tap TAP[,mac=MAC][,rx_bw=|tx_bw=|rx_pps=|tx_pps=RATE]]...  (admin)\n"
	"            [QUOTAS]          (disks: vda, vdb, ... in order)\n"
	"  vm set NAME [QUOTAS] [--disk N,bw=RATE,...]... [--net N,tx_bw=RATE,...]...\n"
	"                              applied at once to a running VM; disk or NIC\n"
	"                              N (from 0) gets its own rates (vm: the VM's)\n"
	"  QUOTAS: --cpu-limit CORES   CPU time in cores (0.5: half of one; 0: none)\n"
	"          --cpu-weight N      share under contention (100 the default)\n"
	"          --mem-limit SIZE    guest RAM plus tarn's own (0: none)\n"
	"          --disk-bw RATE      each disk without its own: bytes/s (20MB/s;\n"
	"          --disk-iops RATE    0: none), and requests/s\n"
	"          --net-bw RATE       each NIC without its own, each way: bits or\n"
	"          --net-pps RATE      bytes/s (100Mbit/s), and frames/s\n"
	"          RATE: 20MB/s, 100Mbit/s, 500; +BURST once (20MB/s+100MB), or\n"
	"                SIZE:REFILL_MS[:BURST] (README \"Devices\")\n"
	"  vm list                     the VMs, one line each\n"
	"  vm show NAME                one VM in full\n"
	"  vm start NAME\n"
	"  vm stop NAME [--timeout S]  the power button, then ended after S seconds\n"
	"                              (default: tarnd's --stop-timeout)\n"
	"  vm kill NAME                ended at once (SIGKILL)\n"
	"  vm pause NAME, vm resume NAME\n"
	"  vm delete NAME              a VM that is not running\n"
	"  vm snapshot NAME SNAP       its state and memory, taken while it runs\n"
	"                              (paused for it) or is paused\n"
	"  vm snapshots NAME           those taken\n"
	"  vm restore NAME SNAP        back to it: a running VM starts again from it\n"
	"  vm clone NAME NEW --snapshot SNAP [--tap TAP[,mac=MAC]]...   a new VM\n"
	"                              that starts from it, with copies of its\n"
	"                              writable disks, NICs of its own on the same\n"
	"                              networks, and one --tap for each of NAME's taps\n"
	"  vm logs NAME [--tail BYTES] [-f]  its console output (-f: and what follows)\n"
	"  vm console NAME             its serial console, as a terminal (Ctrl-] leaves)\n"
	"  events [--vm NAME] [-f]     what happened, oldest first (-f: and what follows)\n"
	"  host                        the host's CPUs and memory, and what VMs use\n"
	"  net create NAME [--vni N] [--uplink tap:TAP|vxlan:IP]   a network on tarn's\n"
	"                              switch (an uplink, the admin's: the host through a\n"
	"                              tap, or another host's switch through VXLAN)\n"
	"  net list | show NAME | delete NAME\n"
	"  volume create NAME --size SIZE [--format qcow2|raw]   in tarnd's pool\n"
	"  volume list | show NAME | delete NAME\n"
	"  volume clone NAME NEW       NEW: a qcow2 overlay over NAME, which stays\n"
	"                              its read-only base from then on\n"
	"  volume resize NAME --size SIZE   grow one no running VM has\n"
	"  tenant create NAME | list | delete NAME   (the admin's)\n"
	"  tenant token NAME           a new API token for the tenant (shown once)\n"
	"\n"
	"  -s, --socket PATH   tarnd's socket (or TARN_SOCKET; default " TARND_DEFAULT_SOCKET "),\n"
	"                      or http://HOST:PORT for tarnd --listen (a token needed)\n"
	"  -t, --token TOKEN   act as the token's tenant (or TARN_TOKEN); without, as admin\n"
	"  --tenant NAME       the admin: whose VMs, volumes and networks (default:\n"
	"                      the tenant \"default\")\n"
	"  --json              print tarnd's replies as JSON\n"
	"  -h, --help          this text\n";

static const char *sock, *token, *tenant;
static bool as_json;

/* One request; the reply (NULL when empty) or NULL with *failed set and
 * the reason printed. */
static json_t *call(const char *method, const char *path, json_t *body, bool *failed)
{
	char *text = body ? json_dumps(body, JSON_COMPACT) : NULL, err[512], full[512];
	json_t *reply = NULL;
	long status = 0;
	int ret;

	/* The admin's --tenant: whose VMs, volumes, networks and events. */
	if (tenant && (!strncmp(path, "/v1/vms", 7) || !strncmp(path, "/v1/events", 10) ||
		       !strncmp(path, "/v1/volumes", 11) || !strncmp(path, "/v1/networks", 12)))
		snprintf(full, sizeof(full), "%s%stenant=%s", path, strchr(path, '?') ? "&" : "?", tenant);
	else
		snprintf(full, sizeof(full), "%s", path);
	ret = http_request(sock, method, full, text, token, &status, &reply, err, sizeof(err));
	free(text);
	*failed = true;
	if (ret) {
		fprintf(stderr, "tarnctl: %s\n", err);
		return NULL;
	}
	if (status >= 300) {
		const char *why = json_string_value(json_object_get(reply, "fault_message"));

		fprintf(stderr, "tarnctl: %s (HTTP %ld)\n", why ? why : "refused", status);
		json_decref(reply);
		return NULL;
	}
	*failed = false;
	return reply;
}

static void print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

static const char *str(const json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "-";
}

/* ", KEY RATE" for a disk's or NIC's rates that limit; then the line ends. */
static void print_rates(const json_t *dev, const char *const *keys, int n)
{
	for (int i = 0; i < n; i++)
		if (strcmp(str(dev, keys[i]), "0"))
			printf(", %s %s", keys[i], str(dev, keys[i]));
	putchar('\n');
}

/* Its disks and NICs, a line each. */
static void print_devices(const json_t *vm)
{
	json_t *e;
	size_t k;

	json_array_foreach(json_object_get(vm, "disks"), k, e) {
		printf("disk%-8zu %s%s", k, str(e, "path"), json_is_true(json_object_get(e, "ro")) ? " (read-only)" : "");
		print_rates(e, (const char *const[]){ "bw", "iops" }, 2);
	}
	json_array_foreach(json_object_get(vm, "nics"), k, e) {
		if (json_object_get(e, "network"))
			printf("nic%-9zu network %s, mac %s%s%s", k, str(e, "network"), str(e, "mac"),
			       json_is_string(json_object_get(e, "ips")) ? ", ips " : "", json_is_string(json_object_get(e, "ips")) ? str(e, "ips") : "");
		else
			printf("nic%-9zu tap %s, mac %s", k, str(e, "tap"), str(e, "mac"));
		print_rates(e, (const char *const[]){ "rx_bw", "tx_bw", "rx_pps", "tx_pps" }, 4);
	}
}

static void print_vm(const json_t *vm)
{
	const char *keys[] = { "name",	  "tenant",	"state",      "desired",      "cpus",	   "mem_mib",
			       "backend", "restart",	"pid",	      "exit_status",  "kernel",	   "initrd",
			       "cmdline", "cpu_limit",	"cpu_weight", "mem_limit_mib", "disk_bw",   "disk_iops",
			       "net_bw",  "net_pps" };

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		json_t *v = json_object_get(vm, keys[i]);

		if (!strcmp(keys[i], "mem_mib") || !strcmp(keys[i], "mem_limit_mib"))
			printf("%-12s %lldM\n", !strcmp(keys[i], "mem_mib") ? "mem" : "mem_limit", (long long)json_integer_value(v));
		else if (json_is_real(v))
			printf("%-12s %.2f\n", keys[i], json_real_value(v));
		else if (json_is_integer(v))
			printf("%-12s %lld\n", keys[i], (long long)json_integer_value(v));
		else
			printf("%-12s %s\n", keys[i], json_is_string(v) ? json_string_value(v) : "-");
	}
	print_devices(vm);
}

static void print_table(const json_t *reply, const char *arg)
{
	const json_t *vms = json_object_get(reply, "vms");
	size_t i;
	json_t *vm;

	printf("%-20s %-12s %-9s %4s %8s %-8s %-10s %8s\n", "NAME", "TENANT", "STATE", "CPUS", "MEM", "BACKEND",
	       "RESTART", "PID");
	json_array_foreach(vms, i, vm) {
		json_t *pid = json_object_get(vm, "pid");
		char p[24] = "-";

		if (json_is_integer(pid))
			snprintf(p, sizeof(p), "%lld", (long long)json_integer_value(pid));
		printf("%-20s %-12s %-9s %4lld %7lldM %-8s %-10s %8s\n", str(vm, "name"), str(vm, "tenant"), str(vm, "state"),
		       (long long)json_integer_value(json_object_get(vm, "cpus")),
		       (long long)json_integer_value(json_object_get(vm, "mem_mib")), str(vm, "backend"),
		       str(vm, "restart"), p);
	}
}

static void print_host(const json_t *r, const char *arg)
{
	printf("cpus: %lld\nmemory: %lldM\nvms: %lld (%lld running, %lld vCPUs and %lldM among them)\n",
	       (long long)json_integer_value(json_object_get(r, "cpus")),
	       (long long)json_integer_value(json_object_get(r, "mem_mib")),
	       (long long)json_integer_value(json_object_get(r, "vms")),
	       (long long)json_integer_value(json_object_get(r, "running")),
	       (long long)json_integer_value(json_object_get(r, "vcpus_running")),
	       (long long)json_integer_value(json_object_get(r, "mem_mib_running")));
	const json_t *p = json_object_get(r, "pool"), *st = json_object_get(r, "storage");
	if (p)
		printf("pool: %lld of %.0f vCPUs promised (%.2g per CPU), %lldM of %.0fM memory (%.2g per MiB, "
		       "%lldM reserved)\n",
		       (long long)json_integer_value(json_object_get(p, "vcpus_promised")),
		       json_number_value(json_object_get(p, "vcpus")), json_number_value(json_object_get(p, "cpu_overcommit")),
		       (long long)json_integer_value(json_object_get(p, "mem_mib_promised")),
		       json_number_value(json_object_get(p, "mem_mib")), json_number_value(json_object_get(p, "mem_overcommit")),
		       (long long)json_integer_value(json_object_get(p, "mem_reserve_mib")));
	if (st)
		printf("storage: %lldM free of %lldM\n", (long long)(json_integer_value(json_object_get(st, "free_bytes")) >> 20),
		       (long long)(json_integer_value(json_object_get(st, "bytes")) >> 20));
}

/* method path with body (taken, may be NULL); the reply printed as it came
 * (--json) or by print, with arg. 0, or 1 when refused (said). */
static int send_print(const char *method, const char *path, json_t *body,
		      void (*print)(const json_t *reply, const char *arg), const char *arg)
{
	bool failed;
	json_t *r = call(method, path, body, &failed);

	json_decref(body);
	if (failed)
		return 1;
	if (as_json && r)
		print_json(r);
	else
		print(r, arg);
	json_decref(r);
	return 0;
}

static int get_and_print(const char *path, void (*print)(const json_t *reply, const char *arg))
{
	return send_print("GET", path, NULL, print, NULL);
}

static void print_events(const json_t *evs, json_int_t *last)
{
	size_t i;
	json_t *e;

	json_array_foreach(evs, i, e) {
		time_t at = (time_t)json_integer_value(json_object_get(e, "at"));
		char when[32];

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&at));
		if (as_json)
			print_json(e);
		else
			printf("%s  %-12s %-9s %s\n", when, str(e, "vm"), str(e, "kind"), str(e, "detail"));
		*last = json_integer_value(json_object_get(e, "id"));
	}
	fflush(stdout);
}

static int print_event(json_t *e, void *last)
{
	json_t *arr = json_pack("[O]", e);

	print_events(arr, last);
	json_decref(arr);
	return 0;
}

/* The events; with follow, then those that happen, as tarnd pushes them. */
static int events(const char *vm, bool follow)
{
	json_int_t last = 0;
	char path[256], err[512];
	long status = 0;
	bool failed;

	snprintf(path, sizeof(path), "/v1/events?since=0%s%s", vm ? "&vm=" : "", vm ? vm : "");
	if (follow) {
		/* call()'s --tenant, by hand: this is no call() */
		snprintf(path + strlen(path), sizeof(path) - strlen(path), "&follow=1%s%s", tenant ? "&tenant=" : "",
			 tenant ? tenant : "");
		if (http_stream_lines(sock, path, token, print_event, &last, &status, err, sizeof(err))) {
			fprintf(stderr, "tarnctl: %s\n", err);
			return 1;
		}
		return 0;
	}
	json_t *r = call("GET", path, NULL, &failed);

	if (failed)
		return 1;
	print_events(json_object_get(r, "events"), &last);
	json_decref(r);
	return 0;
}

static int logs(const char *name, uint64_t tail, bool follow)
{
	char path[256];
	json_int_t size = -1;
	bool failed;

	for (;;) {
		json_int_t now;
		json_t *r;

		snprintf(path, sizeof(path), "/v1/vms/%s/logs?tail=%llu", name, (unsigned long long)tail);
		r = call("GET", path, NULL, &failed);
		if (failed)
			return 1;
		now = json_integer_value(json_object_get(r, "size"));
		if (size < 0 || now > size) {
			const char *log = json_string_value(json_object_get(r, "log"));
			size_t len = json_string_length(json_object_get(r, "log"));

			/* The first time the whole tail; then what is new. */
			if (size >= 0 && (uint64_t)(now - size) < len)
				log += len - (size_t)(now - size), len = (size_t)(now - size);
			fwrite(log, 1, len, stdout);
			fflush(stdout);
		}
		size = now;
		json_decref(r);
		if (!follow)
			return 0;
		usleep(250 * 1000);
		tail = 1 << 20;
	}
}

static void print_tenants(const json_t *reply, const char *arg)
{
	size_t i;
	json_t *t;

	printf("%-24s %5s %7s\n", "TENANT", "VMS", "TOKENS");
	json_array_foreach(json_object_get(reply, "tenants"), i, t)
		printf("%-24s %5lld %7lld\n", str(t, "name"), (long long)json_integer_value(json_object_get(t, "vms")),
		       (long long)json_integer_value(json_object_get(t, "tokens")));
}

static int tenant_cmd(const char *verb, const char *name, int nargs)
{
	char path[256];
	json_t *r, *body;
	bool failed;

	if (!strcmp(verb, "list") && nargs == 0)
		return get_and_print("/v1/tenants", print_tenants);
	if (nargs != 1 || (strcmp(verb, "create") && strcmp(verb, "delete") && strcmp(verb, "token"))) {
		fprintf(stderr, "tarnctl: tenant %s: see 'tarnctl --help'\n", verb);
		return 2;
	}
	if (!strcmp(verb, "create")) {
		body = json_pack("{s:s}", "name", name);
		r = call("POST", "/v1/tenants", body, &failed);
		json_decref(body);
	} else {
		snprintf(path, sizeof(path), !strcmp(verb, "delete") ? "/v1/tenants/%s" : "/v1/tenants/%s/tokens", name);
		r = call(!strcmp(verb, "delete") ? "DELETE" : "POST", path, NULL, &failed);
	}
	if (failed)
		return 1;
	if (as_json && r)
		print_json(r);
	else if (!strcmp(verb, "token"))
		puts(str(r, "token")); /* alone on its line: TARN_TOKEN=$(tarnctl tenant token T) */
	else
		printf("%s: %s\n", name, !strcmp(verb, "create") ? "created" : "deleted");
	json_decref(r);
	return 0;
}

static void print_volume(const json_t *v)
{
	printf("%-20s %-12s %-6s %10lldM %10lldM %-16s %s\n", str(v, "name"), str(v, "tenant"), str(v, "format"),
	       (long long)(json_integer_value(json_object_get(v, "size")) >> 20),
	       (long long)(json_integer_value(json_object_get(v, "allocated")) >> 20), str(v, "clone_of"),
	       json_array_size(json_object_get(v, "vms")) ? json_string_value(json_array_get(json_object_get(v, "vms"), 0))
							  : "-");
}

static void print_volumes(const json_t *r, const char *arg)
{
	const json_t *vols = json_object_get(r, "volumes");
	size_t i;
	json_t *v;

	printf("%-20s %-12s %-6s %11s %11s %-16s %s\n", "NAME", "TENANT", "FORMAT", "SIZE", "ALLOCATED", "CLONE OF",
	       "VM");
	json_array_foreach(vols, i, v)
		print_volume(v);
}

static void print_one_volume(const json_t *r, const char *arg)
{
	print_volume(r);
}

static void print_deleted(const json_t *r, const char *arg)
{
	printf("%s: deleted\n", arg);
}

static void print_network(const json_t *n)
{
	json_t *vms = json_object_get(n, "vms"), *v;
	size_t i;

	printf("%-20s %-12s %8lld  %-16s ", str(n, "name"), str(n, "tenant"),
	       (long long)json_integer_value(json_object_get(n, "vni")), str(n, "uplink"));
	json_array_foreach(vms, i, v)
		printf("%s%s", i ? "," : "", json_string_value(v));
	printf("%s\n", json_array_size(vms) ? "" : "-");
}

static void print_networks(const json_t *r, const char *arg)
{
	size_t i;
	json_t *n;

	printf("%-20s %-12s %8s  %-16s %s\n", "NAME", "TENANT", "VNI", "UPLINK", "VMS");
	json_array_foreach(json_object_get(r, "networks"), i, n)
		print_network(n);
}

static void print_one_network(const json_t *r, const char *arg)
{
	print_network(r);
}

/* net create NAME [--vni N] [--uplink tap:NAME] | list | show NAME | delete NAME */
static int net_cmd(int argc, char **argv)
{
	const char *verb = argc > 0 ? argv[0] : "", *name = argc > 1 ? argv[1] : NULL;
	char path[256];
	json_t *body;
	int i;

	if (!strcmp(verb, "list") && argc == 1)
		return get_and_print("/v1/networks", print_networks);
	if (!name) {
		fprintf(stderr, "tarnctl: net %s: see 'tarnctl --help'\n", verb);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/networks/%s", name);
	if (!strcmp(verb, "show") && argc == 2)
		return get_and_print(path, print_one_network);
	if (!strcmp(verb, "delete") && argc == 2)
		return send_print("DELETE", path, NULL, print_deleted, name);
	if (strcmp(verb, "create")) {
		fprintf(stderr, "tarnctl: net %s: see 'tarnctl --help'\n", verb);
		return 2;
	}
	body = json_pack("{s:s}", "name", name);
	for (i = 2; i + 1 < argc; i += 2) {
		uint64_t v;

		if (!strcmp(argv[i], "--vni") && !parse_uint(argv[i + 1], 1, 16777215, &v))
			json_object_set_new(body, "vni", json_integer((json_int_t)v));
		else if (!strcmp(argv[i], "--uplink"))
			json_object_set_new(body, "uplink", json_string(argv[i + 1]));
		else
			break;
	}
	if (i != argc) {
		fprintf(stderr, "tarnctl: net create NAME [--vni 1-16777215] [--uplink tap:NAME|vxlan:IP[:PORT]]\n");
		json_decref(body);
		return 2;
	}
	return send_print("POST", "/v1/networks", body, print_one_network, "");
}

/* volume VERB NAME [NEW] [--size SIZE] [--format F]. */
static int volume_cmd(int argc, char **argv)
{
	const char *verb = argc > 0 ? argv[0] : "", *name = argc > 1 ? argv[1] : NULL, *size = NULL, *format = NULL;
	char path[256];
	json_t *body = NULL;
	int i;

	if (!strcmp(verb, "list") && argc == 1)
		return get_and_print("/v1/volumes", print_volumes);
	for (i = 2; i < argc; i++) {
		if (!strcmp(argv[i], "--size") && i + 1 < argc)
			size = argv[++i];
		else if (!strcmp(argv[i], "--format") && i + 1 < argc)
			format = argv[++i];
		else if (!strcmp(verb, "clone") && i == 2)
			body = json_pack("{s:s}", "name", argv[i]);
		else
			break;
	}
	if (!name || i < argc || (!strcmp(verb, "clone") && !body) ||
	    ((!strcmp(verb, "create") || !strcmp(verb, "resize")) && !size)) {
		fprintf(stderr, "tarnctl: volume %s: see 'tarnctl --help'\n", verb);
		json_decref(body);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/volumes/%s", name);
	if (!strcmp(verb, "show"))
		return get_and_print(path, print_one_volume);
	if (!strcmp(verb, "delete"))
		return send_print("DELETE", path, NULL, print_deleted, name);
	if (!strcmp(verb, "clone")) {
		snprintf(path, sizeof(path), "/v1/volumes/%s/clone", name);
		return send_print("POST", path, body, print_one_volume, "");
	}
	if (!strcmp(verb, "create") || !strcmp(verb, "resize")) {
		body = json_pack("{s:s}", "size", size);
		if (format)
			json_object_set_new(body, "format", json_string(format));
		if (!strcmp(verb, "create")) {
			json_object_set_new(body, "name", json_string(name));
			return send_print("POST", "/v1/volumes", body, print_one_volume, "");
		}
		snprintf(path, sizeof(path), "/v1/volumes/%s/resize", name);
		return send_print("POST", path, body, print_one_volume, "");
	}
	fprintf(stderr, "tarnctl: volume %s: unknown verb: see 'tarnctl --help'\n", verb);
	return 2;
}

static void print_snapshots(const json_t *r, const char *arg)
{
	size_t i;
	json_t *e;

	printf("%-20s %-20s %10s  %s\n", "SNAPSHOT", "TAKEN", "MEMORY", "FILES");
	json_array_foreach(json_object_get(r, "snapshots"), i, e) {
		time_t at = (time_t)json_integer_value(json_object_get(e, "created_at"));
		char when[32];

		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", localtime(&at));
		printf("%-20s %-20s %9lldM  %s\n", str(e, "name"), when,
		       (long long)(json_integer_value(json_object_get(e, "mem_bytes")) >> 20), str(e, "state_path"));
	}
}

static void print_snapshot(const json_t *r, const char *arg)
{
	printf("%s: snapshot %s taken (%s)\n", arg, str(r, "name"), str(r, "state_path"));
}

static void print_state(const json_t *r, const char *arg)
{
	printf("%s: %s (wanted %s)\n", str(r, "name"), str(r, "state"), str(r, "desired"));
}

/* --disk, --volume, --net: "FIRST[,ro][,KEY=VALUE]..." appended to the
 * body's array `list` as an object: FIRST under `first` (a path made
 * absolute for "path"; an integer for "index", vm set's), ro as true, the
 * rest as strings (tarnd checks keys and values; in vm set, "vm" is null:
 * the VM's own rate again). 0, or 2 when it is not that (said). */
static int device_opt(json_t *body, const char *list, const char *first, const char *arg)
{
	char buf[PATH_MAX], *copy = strdup(arg), *save = NULL, *tok, *end;
	bool set = !strcmp(first, "index");
	json_t *e = json_object(), *v;
	int ret = 0;

	if (!json_object_get(body, list))
		json_object_set_new(body, list, json_array());
	for (tok = strtok_r(copy, ",", &save); tok && !ret; tok = strtok_r(NULL, ",", &save)) {
		char *eq = strchr(tok, '=');

		if (!json_object_size(e) && tok == copy) {
			long long idx = strtoll(tok, &end, 10);

			v = !set ? json_string(!strcmp(first, "path") ? (realpath(tok, buf) ? buf : tok) : tok)
			    : *end || end == tok || idx < 0 ? NULL : json_integer(idx);
			ret = v ? json_object_set_new(e, first, v), 0 : 2;
		} else if (!strcmp(tok, "ro") && !set) {
			json_object_set_new(e, "ro", json_true());
		} else if (eq && eq > tok && !set && !strncmp(tok, "ip=", 3)) {
			/* ip=A, again for each address */
			if (!json_object_get(e, "ips"))
				json_object_set_new(e, "ips", json_array());
			json_array_append_new(json_object_get(e, "ips"), json_string(eq + 1));
		} else if (eq && eq > tok) {
			*eq = 0;
			json_object_set_new(e, tok, set && !strcmp(eq + 1, "vm") ? json_null() : json_string(eq + 1));
		} else {
			ret = 2;
		}
	}
	if (ret || !json_object_get(e, first)) {
		fprintf(stderr, "tarnctl: '%s': %s\n", arg,
			set ? "N,KEY=RATE,... (N: the disk's or NIC's number, from 0)"
			    : "NAME,KEY=VALUE,... (README \"Many VMs on one host\")");
		json_decref(e);
		ret = 2;
	} else {
		json_array_append_new(json_object_get(body, list), e);
	}
	free(copy);
	return ret;
}

/* vm snapshots NAME | snapshot NAME SNAP | restore NAME SNAP | clone NAME NEW --snapshot SNAP */
static int snapshot_cmd(const char *verb, int argc, char **argv)
{
	char path[256];
	json_t *body;

	snprintf(path, sizeof(path), "/v1/vms/%s/%s", argv[0], verb);
	if (!strcmp(verb, "snapshots") && argc == 1)
		return get_and_print(path, print_snapshots);
	if (!strcmp(verb, "snapshot") && argc == 2)
		return send_print("POST", path, json_pack("{s:s}", "name", argv[1]), print_snapshot, argv[0]);
	if (!strcmp(verb, "restore") && argc == 2)
		return send_print("POST", path, json_pack("{s:s}", "snapshot", argv[1]), print_state, NULL);
	if (!strcmp(verb, "clone") && argc >= 4) {
		/* NEW --snapshot SNAP [--tap TAP[,mac=MAC]]... */
		body = json_pack("{s:s}", "name", argv[1]);
		for (int i = 2; i + 1 < argc && body; i += 2) {
			if (!strcmp(argv[i], "--snapshot"))
				json_object_set_new(body, "snapshot", json_string(argv[i + 1]));
			else if (strcmp(argv[i], "--tap") || device_opt(body, "nics", "tap", argv[i + 1]))
				json_decref(body), body = NULL;
		}
		if (body && argc % 2 == 0 && json_object_get(body, "snapshot"))
			return send_print("POST", path, body, print_state, NULL);
		json_decref(body);
	}
	fprintf(stderr, "tarnctl: vm %s: see 'tarnctl --help'\n", verb);
	return 2;
}

/* vm console NAME: the guest's serial console through tarnd, as a
 * terminal: what it writes streams in (a thread), what is typed goes to it
 * (a POST a read); Ctrl-] leaves. */
#define DETACH 0x1d /* Ctrl-] */

static int console_out(const char *data, size_t len, void *opaque)
{
	return write(STDOUT_FILENO, data, len) == (ssize_t)len ? 0 : -1;
}

struct console_args {
	char path[256], err[512];
	long status;
	int ret;
};

static void *console_stream(void *arg)
{
	struct console_args *ca = arg;

	ca->ret = http_stream(sock, ca->path, token, console_out, NULL, &ca->status, ca->err, sizeof(ca->err));
	return NULL;
}

static struct termios console_saved;
static bool console_raw;

static void console_restore(void)
{
	if (console_raw)
		tcsetattr(STDIN_FILENO, TCSANOW, &console_saved);
	console_raw = false;
}

static int vm_console(const char *name)
{
	struct console_args ca = { .ret = 0 };
	char b64[BASE64_ENCODE_RAW_LENGTH(4096) + 1], ipath[256];
	uint8_t in[4096];
	pthread_t t;
	bool failed;

	snprintf(ca.path, sizeof(ca.path), "/v1/vms/%s/console%s%s", name, tenant ? "?tenant=" : "", tenant ? tenant : "");
	snprintf(ipath, sizeof(ipath), "/v1/vms/%s/console", name);
	if (pthread_create(&t, NULL, console_stream, &ca)) {
		fprintf(stderr, "tarnctl: cannot start a thread\n");
		return 1;
	}
	if (isatty(STDIN_FILENO) && !tcgetattr(STDIN_FILENO, &console_saved)) {
		struct termios raw = console_saved;

		cfmakeraw(&raw);
		if (!tcsetattr(STDIN_FILENO, TCSANOW, &raw)) {
			console_raw = true;
			atexit(console_restore);
			fprintf(stderr, "tarnctl: attached to %s's console; Ctrl-] leaves\r\n", name);
		}
	}
	for (;;) {
		ssize_t n = read(STDIN_FILENO, in, sizeof(in));
		uint8_t *quit;
		json_t *r;

		if (n <= 0)
			break; /* input ended: the output goes on until the VM ends */
		quit = console_raw ? memchr(in, DETACH, (size_t)n) : NULL;
		if (quit)
			n = quit - in;
		if (n > 0) {
			base64_encode_raw(b64, (size_t)n, in);
			b64[BASE64_ENCODE_RAW_LENGTH(n)] = 0;
			r = call("POST", ipath, json_pack("{s:s}", "data", b64), &failed);
			json_decref(r);
			if (failed)
				break;
		}
		if (quit) {
			console_restore();
			fprintf(stderr, "\ntarnctl: left %s's console\n", name);
			return 0;
		}
	}
	pthread_join(t, NULL);
	console_restore();
	if (ca.ret) {
		fprintf(stderr, "tarnctl: %s\n", ca.err);
		return 1;
	}
	return 0;
}

/* Path as tarnd sees it: it runs elsewhere. */
static char *absolute(const char *p, char *buf)
{
	return realpath(p, buf) ? buf : (char *)p;
}

/* --cpu-limit, --cpu-weight, --mem-limit into body: 0, or 2 (bad value, said). */
static int quota_opt(int opt, const char *arg, json_t *body)
{
	uint64_t v;
	char *end;
	double cpu;

	switch (opt) {
	case 'L':
		cpu = strtod(arg, &end);
		if (*end || cpu < 0)
			break;
		json_object_set_new(body, "cpu_limit", json_real(cpu));
		return 0;
	case 'W':
		if (parse_uint(arg, 1, 10000, &v))
			break;
		json_object_set_new(body, "cpu_weight", json_integer((json_int_t)v));
		return 0;
	case 'M':
		if (parse_size(arg, 1ULL << 20, &v) || v % (1 << 20))
			break;
		json_object_set_new(body, "mem_limit_mib", json_integer((json_int_t)(v >> 20)));
		return 0;
	case 'B': case 'I': case 'N': case 'P': {
		/* tarnd checks the rate, and says why it is wrong. */
		static const char *const fields[] = { "disk_bw", "disk_iops", "net_bw", "net_pps" };

		json_object_set_new(body, fields[strchr("BINP", opt) - "BINP"], json_string(arg));
		return 0;
	}
	}
	fprintf(stderr, "tarnctl: --%s %s: %s\n", opt == 'L' ? "cpu-limit" : opt == 'W' ? "cpu-weight" : "mem-limit", arg,
		opt == 'L' ? "cores, like 0.5" : opt == 'W' ? "1 to 10000" : "a size in MiB (examples: 256M, 1G)");
	return 2;
}

#define QUOTA_OPTS                                                                              \
	{ "cpu-limit", required_argument, NULL, 'L' }, { "cpu-weight", required_argument, NULL, 'W' }, \
	{ "mem-limit", required_argument, NULL, 'M' }, { "disk-bw", required_argument, NULL, 'B' },     \
	{ "disk-iops", required_argument, NULL, 'I' }, { "net-bw", required_argument, NULL, 'N' },      \
	{ "net-pps", required_argument, NULL, 'P' }

static void print_quotas(const json_t *r, const char *arg)
{
	printf("%s: cpu %.2f, weight %lld, memory %lldM, disk %s %s IOPS, net %s %s pps\n", str(r, "name"),
	       json_number_value(json_object_get(r, "cpu_limit")),
	       (long long)json_integer_value(json_object_get(r, "cpu_weight")),
	       (long long)json_integer_value(json_object_get(r, "mem_limit_mib")), str(r, "disk_bw"),
	       str(r, "disk_iops"), str(r, "net_bw"), str(r, "net_pps"));
	print_devices(r);
}

static void print_created(const json_t *r, const char *arg)
{
	printf("%s: created (%s)\n", str(r, "name"), str(r, "state"));
}

/* vm set NAME --cpu-limit X ... [--disk N,bw=R]...: PATCH the quotas. */
static int vm_set(int argc, char **argv)
{
	static const struct option opts[] = { QUOTA_OPTS, { "disk", required_argument, NULL, 'd' },
					       { "net", required_argument, NULL, 'n' }, { NULL, 0, NULL, 0 } };
	json_t *body = json_object();
	char path[256];
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (opt == '?' ||
		    (opt == 'd' || opt == 'n' ? device_opt(body, opt == 'd' ? "disks" : "nics", "index", optarg)
					      : quota_opt(opt, optarg, body))) {
			json_decref(body);
			return 2;
		}
	}
	if (optind < argc || !json_object_size(body)) {
		fprintf(stderr, "tarnctl: vm set NAME QUOTAS: see 'tarnctl --help'\n");
		json_decref(body);
		return 2;
	}
	snprintf(path, sizeof(path), "/v1/vms/%s", argv[0]);
	return send_print("PATCH", path, body, print_quotas, NULL);
}

static int vm_create(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "kernel", required_argument, NULL, 'k' }, { "initrd", required_argument, NULL, 'i' },
		{ "cmdline", required_argument, NULL, 'c' }, { "cpus", required_argument, NULL, 'p' },
		{ "mem", required_argument, NULL, 'm' },    { "backend", required_argument, NULL, 'b' },
		{ "restart", required_argument, NULL, 'r' }, { "start", no_argument, NULL, 'S' },
		{ "disk", required_argument, NULL, 'd' },   { "net", required_argument, NULL, 'n' },
		{ "volume", required_argument, NULL, 'V' }, { "tap", required_argument, NULL, 'a' },
		QUOTA_OPTS, { NULL, 0, NULL, 0 },
	};
	char kbuf[PATH_MAX], ibuf[PATH_MAX];
	json_t *body = json_object();
	uint64_t v;
	int opt;

	json_object_set_new(body, "name", json_string(argv[0]));
	optind = 1;
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (opt) {
		case 'k': json_object_set_new(body, "kernel", json_string(absolute(optarg, kbuf))); break;
		case 'i': json_object_set_new(body, "initrd", json_string(absolute(optarg, ibuf))); break;
		case 'c': json_object_set_new(body, "cmdline", json_string(optarg)); break;
		case 'b': json_object_set_new(body, "backend", json_string(optarg)); break;
		case 'r': json_object_set_new(body, "restart", json_string(optarg)); break;
		case 'S': json_object_set_new(body, "start", json_true()); break;
		case 'd': /* PATH[,ro][,bw=R][,iops=R] */
		case 'V': /* NAME[,...] */
		case 'n': /* NETWORK[,mac=MAC][,ip=ADDR]... */
		case 'a': /* TAP[,mac=MAC][,rx_bw=R]... */
			if (device_opt(body, opt == 'n' || opt == 'a' ? "nics" : "disks",
				       opt == 'd' ? "path" : opt == 'V' ? "volume" : opt == 'n' ? "network" : "tap", optarg))
				goto fail;
			break;
		case 'p':
			if (parse_uint(optarg, 1, 255, &v))
				goto bad;
			json_object_set_new(body, "cpus", json_integer((json_int_t)v));
			break;
		case 'm':
			if (parse_size(optarg, 1ULL << 20, &v) || v % (1 << 20))
				goto bad;
			json_object_set_new(body, "mem_mib", json_integer((json_int_t)(v >> 20)));
			break;
		case 'L': case 'W': case 'M': case 'B': case 'I': case 'N': case 'P':
			if (quota_opt(opt, optarg, body))
				goto fail;
			break;
		default:
			goto fail;
		}
	}
	if (optind < argc || !json_object_get(body, "kernel")) {
		fprintf(stderr, "tarnctl: vm create NAME --kernel PATH [options]: see 'tarnctl --help'\n");
		goto fail;
	}
	return send_print("POST", "/v1/vms", body, print_created, NULL);
bad:
	fprintf(stderr, "tarnctl: --%s %s: %s\n", opt == 'p' ? "cpus" : "mem", optarg,
		opt == 'p' ? "a number from 1 to 255" : "a size in MiB (examples: 512M, 2G)");
fail:
	json_decref(body);
	return 2;
}

static int vm_verb(const char *verb, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "timeout", required_argument, NULL, 't' }, { "tail", required_argument, NULL, 'n' },
		{ "follow", no_argument, NULL, 'f' },	     { NULL, 0, NULL, 0 },
	};
	const char *name = argv[0];
	char path[256];
	json_t *body = NULL, *r;
	uint64_t tail = 64 << 10;
	bool follow = false, failed;
	int opt;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "f", opts, NULL)) != -1) {
		if (opt == 't' && !strcmp(verb, "stop")) {
			char *end;
			double t = strtod(optarg, &end);

			if (*end || t < 0) {
				fprintf(stderr, "tarnctl: --timeout %s: seconds\n", optarg);
				return 2;
			}
			body = json_pack("{s:f}", "timeout", t);
		} else if (opt == 'n' && !strcmp(verb, "logs") && !parse_uint(optarg, 0, 1ULL << 30, &tail)) {
		} else if (opt == 'f' && !strcmp(verb, "logs")) {
			follow = true;
		} else {
			fprintf(stderr, "tarnctl: vm %s: see 'tarnctl --help'\n", verb);
			json_decref(body);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "tarnctl: vm %s %s: unexpected '%s'\n", verb, name, argv[optind]);
		return 2;
	}
	if (!strcmp(verb, "logs"))
		return logs(name, tail, follow);
	if (!strcmp(verb, "show")) {
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
		r = call("GET", path, NULL, &failed);
	} else if (!strcmp(verb, "delete")) {
		snprintf(path, sizeof(path), "/v1/vms/%s", name);
		r = call("DELETE", path, NULL, &failed);
	} else {
		snprintf(path, sizeof(path), "/v1/vms/%s/%s", name, verb);
		r = call("POST", path, body, &failed);
	}
	json_decref(body);
	if (failed)
		return 1;
	if (as_json && r)
		print_json(r);
	else if (!strcmp(verb, "show"))
		print_vm(r);
	else if (!strcmp(verb, "delete"))
		printf("%s: deleted\n", name);
	else
		printf("%s: %s (wanted %s)\n", name, str(r, "state"), str(r, "desired"));
	json_decref(r);
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "socket", required_argument, NULL, 's' },
		{ "token", required_argument, NULL, 't' },
		{ "tenant", required_argument, NULL, 'T' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *noun, *verb;
	int opt;

	log_prog = "tarnctl";
	sock = getenv("TARN_SOCKET") ? getenv("TARN_SOCKET") : TARND_DEFAULT_SOCKET;
	token = getenv("TARN_TOKEN") && *getenv("TARN_TOKEN") ? getenv("TARN_TOKEN") : NULL;
	while ((opt = getopt_long(argc, argv, "+s:t:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 't': token = optarg; break;
		case 'T': tenant = optarg; break;
		case 'j': as_json = true; break;
		case 'h': fputs(usage, stdout); return 0;
		default: fputs("tarnctl: see 'tarnctl --help'\n", stderr); return 2;
		}
	}
	if (optind >= argc) {
		fputs(usage, stderr);
		return 2;
	}
	noun = argv[optind];
	verb = optind + 1 < argc ? argv[optind + 1] : "";
	if (!strcmp(noun, "host") && optind + 1 == argc)
		return get_and_print("/v1/host", print_host);
	if (!strcmp(noun, "volume"))
		return volume_cmd(argc - optind - 1, argv + optind + 1);
	if (!strcmp(noun, "net"))
		return net_cmd(argc - optind - 1, argv + optind + 1);
	if (!strcmp(noun, "tenant"))
		return tenant_cmd(verb, optind + 2 < argc ? argv[optind + 2] : NULL, argc - optind - 2);
	if (!strcmp(noun, "events")) {
		const char *vm = NULL;
		bool follow = false;

		for (int i = optind + 1; i < argc; i++) {
			if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--follow"))
				follow = true;
			else if (!strcmp(argv[i], "--vm") && i + 1 < argc)
				vm = argv[++i];
			else {
				fprintf(stderr, "tarnctl: events: unexpected '%s'\n", argv[i]);
				return 2;
			}
		}
		return events(vm, follow);
	}
	if (strcmp(noun, "vm")) {
		fprintf(stderr, "tarnctl: unknown noun '%s': see 'tarnctl --help'\n", noun);
		return 2;
	}
	if (!strcmp(verb, "list") && optind + 2 == argc)
		return get_and_print("/v1/vms", print_table);
	if (optind + 2 >= argc) {
		fprintf(stderr, "tarnctl: vm %s: which VM? see 'tarnctl --help'\n", verb);
		return 2;
	}
	if (!strcmp(verb, "create"))
		return vm_create(argc - optind - 2, argv + optind + 2);
	if (!strcmp(verb, "set"))
		return vm_set(argc - optind - 2, argv + optind + 2);
	if (!strcmp(verb, "console") && optind + 3 == argc)
		return vm_console(argv[optind + 2]);
	if (!strcmp(verb, "snapshots") || !strcmp(verb, "snapshot") || !strcmp(verb, "restore") || !strcmp(verb, "clone"))
		return snapshot_cmd(verb, argc - optind - 2, argv + optind + 2);
	if (!strcmp(verb, "show") || !strcmp(verb, "start") || !strcmp(verb, "stop") || !strcmp(verb, "kill") ||
	    !strcmp(verb, "pause") || !strcmp(verb, "resume") || !strcmp(verb, "delete") || !strcmp(verb, "logs"))
		return vm_verb(verb, argc - optind - 2, argv + optind + 2);
	fprintf(stderr, "tarnctl: vm %s: unknown verb: see 'tarnctl --help'\n", verb);
	return 2;
}
