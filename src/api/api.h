/* The per-VM API (tarn run --api-sock PATH): HTTP/1.1 on a Unix socket, in
 * Firecracker's dialect for what tarn supports (README "The API",
 * docs/api.json). libmicrohttpd parses HTTP and runs the handlers, a
 * thread per connection, one request at a time under the API's lock (a PUT
 * /migrate that waits lets go of it meanwhile); jansson reads and writes
 * JSON.
 *
 * Before the guest starts, PUT requests describe the machine (the same
 * model GET /vm/config returns); InstanceStart hands it to the thread that
 * boots (api_wait_start), which answers through api_started. Afterwards
 * the API pauses and resumes the VM. */
#ifndef TARN_API_H
#define TARN_API_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/config.h"

struct vm;
struct api;

enum api_state { API_NOT_STARTED, API_STARTING, API_RUNNING, API_STOPPED };

/* Start serving on a new socket at path (refused if something is there).
 * 0, or -errno with a reason in err. */
int api_start(struct api **out, const char *path, char *err, size_t err_len)
	__attribute__((warn_unused_result));
/* Stop serving, remove the socket and free everything. */
void api_stop(struct api *a);

/* The machine the command line described, for GET /vm/config: its config
 * tree before any API request (keys boot.*, vm.*, dev.*). */
void api_set_cli_config(struct api *a, const struct config *c);

/* Wait for InstanceStart, asking quit() every 100 ms whether to give up
 * (then -EINTR). On 0, dst holds the command line's keys with the API's
 * added. */
int api_wait_start(struct api *a, const struct config *cli, struct config *dst, bool (*quit)(void));
/* Tell InstanceStart how the boot went: vm on success, else NULL and why
 * (the API goes back to Not started). */
void api_started(struct api *a, struct vm *vm, const char *why);
/* The VM stopped: no request reaches it any more (call before freeing it). */
void api_vm_stopped(struct api *a);

#endif
