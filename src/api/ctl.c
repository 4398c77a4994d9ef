/* tarn ctl: the per-VM API from the shell. libcurl speaks HTTP over the
 * Unix socket; jansson reads the replies.
 *
 * libcurl is loaded here, when tarn ctl runs (dlopen), not linked into
 * tarn: with it linked, every tarn started (a restore that must be running
 * in milliseconds) paid ~5 ms loading and starting up the TLS, Kerberos
 * and LDAP libraries libcurl depends on. */
#include "api/ctl.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <getopt.h>
#include <limits.h>
#include <stddef.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char ctl_usage[] =
	"usage: tarn ctl --sock PATH [--json] VERB [ARGS]\n"
	"\n"
	"Drive a VM through the API of `tarn run --api-sock PATH` (README \"The API\").\n"
	"\n"
	"verbs:\n"
	"  info                 state, id and version (GET /)\n"
	"  pause, resume        pause or resume the VM (PATCH /vm)\n"
	"  start                start a VM configured through the API (InstanceStart)\n"
	"  ctrl-alt-del         press Ctrl+Alt+Del on the guest's keyboard (SendCtrlAltDel):\n"
	"                       Linux reboots, and tarn ends with status 4\n"
	"  flush-metrics        write a line of metrics now (FlushMetrics; PUT /metrics first)\n"
	"  config               the machine, as JSON (GET /vm/config)\n"
	"  snapshot [--diff] STATE MEM  snapshot the paused VM into the files STATE\n"
	"                       and MEM (PUT /snapshot/create); --diff: only the pages\n"
	"                       written since the last snapshot (--track-dirty-pages)\n"
	"  load STATE MEM       build the VM of a new tarn from a snapshot and run it\n"
	"                       (PUT /snapshot/load)\n"
	"  get PATH             any request: GET PATH and print the reply\n"
	"  put PATH JSON        PUT JSON to PATH\n"
	"  patch PATH JSON      PATCH JSON to PATH\n"
	"\n"
	"  -s, --sock PATH      the API socket (or TARN_API_SOCK)\n"
	"  --json               print replies as JSON as they came\n"
	"  -h, --help           this text\n"
	"\n"
	"Exit status: 0 done, 1 tarn refused (its reason on stderr) or cannot be\n"
	"reached, 2 bad usage.\n";

struct body {
	char *p;
	size_t len;
};

static size_t collect(char *data, size_t size, size_t n, void *opaque)
{
	struct body *b = opaque;
	char *q = realloc(b->p, b->len + size * n + 1);

	if (!q)
		return 0;
	memcpy(q + b->len, data, size * n);
	b->p = q;
	b->len += size * n;
	q[b->len] = 0;
	return size * n;
}

/* The libcurl calls tarn ctl makes, from libcurl.so.4. */
static struct curl_api {
	CURLcode (*global_init)(long flags);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *c, CURLoption opt, ...);
	CURLcode (*easy_perform)(CURL *c);
	CURLcode (*easy_getinfo)(CURL *c, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *c);
	const char *(*easy_strerror)(CURLcode rc);
	struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
	void (*slist_free_all)(struct curl_slist *l);
} curl;

/* 0, or 1 with the reason printed. */
static int curl_load(void)
{
	static const struct {
		const char *name;
		size_t off;
	} syms[] = {
#define SYM(f) { "curl_" #f, offsetof(struct curl_api, f) }
		SYM(global_init), SYM(global_cleanup), SYM(easy_init), SYM(easy_setopt), SYM(easy_perform),
		SYM(easy_getinfo), SYM(easy_cleanup), SYM(easy_strerror), SYM(slist_append), SYM(slist_free_all),
#undef SYM
	};
	void *h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	for (size_t i = 0; h && i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *f = dlsym(h, syms[i].name);

		if (!f) {
			fprintf(stderr, "tarn ctl: libcurl.so.4 has no %s\n", syms[i].name);
			return 1;
		}
		memcpy((char *)&curl + syms[i].off, &f, sizeof(f));
	}
	if (!h)
		fprintf(stderr, "tarn ctl: cannot load libcurl: %s (apt-get install libcurl4)\n", dlerror());
	return !h;
}

/* One request; the reply's status in *status and body in *out (NULL when
 * empty). 0, or 1 with the reason printed. */
static int request(const char *sock, const char *method, const char *path, const char *json, long *status,
		   json_t **out)
{
	struct curl_slist *hdr = curl.slist_append(NULL, "Content-Type: application/json");
	struct body b = { 0 };
	char url[512], cerr[CURL_ERROR_SIZE] = "";
	CURL *c = curl.easy_init();
	CURLcode rc;
	json_error_t jerr;

	*out = NULL;
	if (!c || !hdr) {
		fprintf(stderr, "tarn ctl: out of memory\n");
		return 1;
	}
	snprintf(url, sizeof(url), "http://localhost%s%s", path[0] == '/' ? "" : "/", path);
	curl.easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	curl.easy_setopt(c, CURLOPT_URL, url);
	curl.easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl.easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl.easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	curl.easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (json)
		curl.easy_setopt(c, CURLOPT_POSTFIELDS, json);
	rc = curl.easy_perform(c);
	if (rc == CURLE_OK)
		curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	curl.easy_cleanup(c);
	curl.slist_free_all(hdr);
	if (rc == CURLE_COULDNT_CONNECT) {
		fprintf(stderr, "tarn ctl: cannot reach tarn at %s: %s\n", sock,
			access(sock, F_OK) ? "no such socket" : "nothing listens there (is tarn still running?)");
		free(b.p);
		return 1;
	}
	if (rc != CURLE_OK) {
		fprintf(stderr, "tarn ctl: cannot reach tarn at %s: %s\n", sock, *cerr ? cerr : curl.easy_strerror(rc));
		free(b.p);
		return 1;
	}
	if (b.len && !(*out = json_loadb(b.p, b.len, 0, &jerr))) {
		fprintf(stderr, "tarn ctl: %s %s: %ld with a reply that is not JSON\n", method, path, *status);
		free(b.p);
		return 1;
	}
	free(b.p);
	return 0;
}

static void print_json(const json_t *v)
{
	char *s = json_dumps(v, JSON_INDENT(2) | JSON_PRESERVE_ORDER);

	if (s)
		puts(s);
	free(s);
}

/* path as the server sees it: tarn may run in another directory. */
static void absolute(const char *path, char *out, size_t len)
{
	char cwd[PATH_MAX];

	if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)) ||
	    (size_t)snprintf(out, len, "%s/%s", cwd, path) >= len)
		snprintf(out, len, "%s", path);
}

int cmd_ctl(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "sock", required_argument, NULL, 's' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *sock = getenv("TARN_API_SOCK"), *verb, *method = NULL, *path = NULL, *body = NULL;
	char *owned_body = NULL; /* a body built here */
	bool as_json = false;
	json_t *reply;
	long status = 0;
	int opt, nargs;

	optind = 1;
	while ((opt = getopt_long(argc, argv, "+s:h", opts, NULL)) != -1) {
		switch (opt) {
		case 's': sock = optarg; break;
		case 'j': as_json = true; break;
		case 'h': fputs(ctl_usage, stdout); return 0;
		default: fputs("tarn ctl: see 'tarn ctl --help'\n", stderr); return 2;
		}
	}
	if (optind >= argc) {
		fputs(ctl_usage, stderr);
		return 2;
	}
	if (!sock) {
		fputs("tarn ctl: no socket: give --sock PATH (or TARN_API_SOCK)\n", stderr);
		return 2;
	}
	verb = argv[optind];
	nargs = argc - optind - 1;
	if (!strcmp(verb, "info") && !nargs) {
		method = "GET", path = "/";
	} else if (!strcmp(verb, "config") && !nargs) {
		method = "GET", path = "/vm/config";
	} else if ((!strcmp(verb, "pause") || !strcmp(verb, "resume")) && !nargs) {
		method = "PATCH", path = "/vm";
		body = !strcmp(verb, "pause") ? "{\"state\":\"Paused\"}" : "{\"state\":\"Resumed\"}";
	} else if (!strcmp(verb, "start") && !nargs) {
		method = "PUT", path = "/actions", body = "{\"action_type\":\"InstanceStart\"}";
	} else if (!strcmp(verb, "ctrl-alt-del") && !nargs) {
		method = "PUT", path = "/actions", body = "{\"action_type\":\"SendCtrlAltDel\"}";
	} else if (!strcmp(verb, "flush-metrics") && !nargs) {
		method = "PUT", path = "/actions", body = "{\"action_type\":\"FlushMetrics\"}";
	} else if ((!strcmp(verb, "snapshot") || !strcmp(verb, "load")) &&
		   (nargs == 2 || (nargs == 3 && !strcmp(verb, "snapshot") && !strcmp(argv[optind + 1], "--diff")))) {
		char state[PATH_MAX], mem[PATH_MAX];
		bool diff = nargs == 3;
		json_t *j;

		absolute(argv[optind + 1 + diff], state, sizeof(state));
		absolute(argv[optind + 2 + diff], mem, sizeof(mem));
		if (!strcmp(verb, "snapshot"))
			j = json_pack("{s:s,s:s,s:s}", "snapshot_path", state, "mem_file_path", mem, "snapshot_type",
				      diff ? "Diff" : "Full");
		else
			j = json_pack("{s:s,s:{s:s,s:s},s:b}", "snapshot_path", state, "mem_backend", "backend_type",
				      "File", "backend_path", mem, "resume_vm", 1);
		method = "PUT", path = !strcmp(verb, "snapshot") ? "/snapshot/create" : "/snapshot/load";
		body = owned_body = j ? json_dumps(j, JSON_COMPACT) : NULL;
		json_decref(j);
		if (!body) {
			fprintf(stderr, "tarn ctl: out of memory\n");
			return 1;
		}
	} else if (!strcmp(verb, "get") && nargs == 1) {
		method = "GET", path = argv[optind + 1];
	} else if ((!strcmp(verb, "put") || !strcmp(verb, "patch")) && nargs == 2) {
		method = !strcmp(verb, "put") ? "PUT" : "PATCH", path = argv[optind + 1], body = argv[optind + 2];
	} else {
		fprintf(stderr, "tarn ctl: '%s' with %d argument(s): see 'tarn ctl --help'\n", verb, nargs);
		return 2;
	}
	if (curl_load())
		return 1;
	curl.global_init(CURL_GLOBAL_NOTHING);
	if (request(sock, method, path, body, &status, &reply)) {
		curl.global_cleanup();
		free(owned_body);
		return 1;
	}
	free(owned_body);
	curl.global_cleanup();
	if (status >= 300) {
		const char *why = json_string_value(json_object_get(reply, "fault_message"));

		fprintf(stderr, "tarn ctl: %s: %s (HTTP %ld)\n", verb, why ? why : "refused", status);
		json_decref(reply);
		return 1;
	}
	if (reply && as_json)
		print_json(reply);
	else if (reply && !strcmp(verb, "info"))
		printf("state: %s\nid: %s\nversion: %s\n", json_string_value(json_object_get(reply, "state")),
		       json_string_value(json_object_get(reply, "id")),
		       json_string_value(json_object_get(reply, "vmm_version")));
	else if (reply)
		print_json(reply);
	json_decref(reply);
	return 0;
}
