/* tarn ctl: the per-VM API from the shell (api/http_client.h). */
#include "api/ctl.h"

#include <getopt.h>
#include <limits.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/http_client.h"

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
	"  migrate [--copy-disks] ADDR  migrate the VM live to a tarn run --incoming ADDR\n"
	"                       (HOST:PORT or unix:PATH) and wait for the end: print\n"
	"                       its figures, exit 0 when the VM runs there (PUT\n"
	"                       /migrate; put /migrate JSON for its other options);\n"
	"                       --copy-disks: send the disks' contents too, onto\n"
	"                       the destination's own --disk files\n"
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
	char err[512];
	int opt, nargs, ret;

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
	} else if (!strcmp(verb, "migrate") &&
		   (nargs == 1 || (nargs == 2 && !strcmp(argv[optind + 1], "--copy-disks")))) {
		json_t *j = json_pack("{s:s,s:b,s:b}", "destination", argv[optind + nargs], "wait", 1, "copy_disks",
				      nargs == 2);

		method = "PUT", path = "/migrate";
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
	ret = http_request(sock, method, path, body, NULL, &status, &reply, err, sizeof(err));
	free(owned_body);
	if (ret) {
		fprintf(stderr, "tarn ctl: %s\n", err);
		return 1;
	}
	if (status >= 300) {
		const char *why = json_string_value(json_object_get(reply, "fault_message"));

		fprintf(stderr, "tarn ctl: %s: %s (HTTP %ld)\n", verb, why ? why : "refused", status);
		json_decref(reply);
		return 1;
	}
	if (reply && !strcmp(verb, "migrate") &&
	    strcmp(json_string_value(json_object_get(reply, "state")) ?: "", "completed")) {
		fprintf(stderr, "tarn ctl: migrate: %s: %s\n", json_string_value(json_object_get(reply, "state")),
			json_string_value(json_object_get(reply, "error")) ?: "?");
		if (as_json)
			print_json(reply);
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
