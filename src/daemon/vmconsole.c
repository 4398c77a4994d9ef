/* A VM's serial console through tarnd (tarnctl vm console), over plain
 * HTTP so that a token reaches it as it reaches the rest:
 *   GET  /v1/vms/NAME/console   what the guest writes from now on, streamed
 *                               (application/octet-stream) until the VM ends
 *   POST /v1/vms/NAME/console   {"data": BASE64}: bytes for the guest to read
 * Each is a client of the VM's tarn's console socket (tarn run
 * --console-sock: STATE/vms/TENANT/NAME/console.sock). The console log
 * (vm logs) keeps everything either way. */
#include <errno.h>
#include <nettle/base64.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon/routes.h"

#define CONSOLE_INPUT_MAX 4096 /* bytes a POST may carry */

/* A connection to the VM's console socket, or -1 with why. */
static int console_connect(const struct caller *c, const char *name, char *why, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char vm[256], dir[4096];
	int fd;

	qualified(c, name, vm, sizeof(vm));
	tarnd_vm_dir(D, vm, dir, sizeof(dir));
	if ((size_t)snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/console.sock", dir) >= sizeof(sa.sun_path)) {
		snprintf(why, len, "the console socket's path is too long");
		return -1;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd >= 0 && !connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
		return fd;
	snprintf(why, len, "%s has no console to attach to: %s", name, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

/* A stream: the console socket, and the client's connection. */
struct console_stream {
	int fd, client;
};

/* The stream's reader: blocks until the guest writes, a second at a time
 * so that a stopping tarnd, or a client that left, is noticed. */
static ssize_t console_read(void *cls, char *buf, size_t max)
{
	struct console_stream *cs = cls;

	for (;;) {
		struct pollfd p[2] = { { .fd = cs->fd, .events = POLLIN }, { .fd = cs->client, .events = POLLRDHUP } };
		ssize_t n;

		if (D->stopping || poll(p, 2, 1000) < 0 || (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
			return -1;
		if (!p[0].revents)
			continue;
		n = read(cs->fd, buf, max);
		if (n > 0)
			return n;
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		return -1; /* the VM's tarn ended */
	}
}

static void console_free(void *cls)
{
	struct console_stream *cs = cls;

	close(cs->fd);
	free(cs);
}

static const struct http_field input_fields[] = { { "data", F_STR, true } };

static struct http_reply console_input(const struct caller *c, const char *name, json_t *in)
{
	const char *b64 = json_string_value(json_object_get(in, "data"));
	size_t blen = strlen(b64), n = BASE64_DECODE_LENGTH(blen);
	struct base64_decode_ctx ctx;
	uint8_t *bytes;
	char why[256];
	ssize_t w;
	int fd;

	if (n > CONSOLE_INPUT_MAX + 3)
		return http_fault(413, "data: at most %d bytes a request", CONSOLE_INPUT_MAX);
	bytes = malloc(n + 1);
	if (!bytes)
		return http_fault(500, "out of memory");
	base64_decode_init(&ctx);
	if (!base64_decode_update(&ctx, &n, bytes, blen, b64) || !base64_decode_final(&ctx)) {
		free(bytes);
		return http_fault(400, "data: not base64");
	}
	fd = console_connect(c, name, why, sizeof(why));
	if (fd < 0) {
		free(bytes);
		return http_fault(409, "%s", why);
	}
	w = n ? write(fd, bytes, n) : 0;
	close(fd);
	free(bytes);
	if (w != (ssize_t)n)
		return http_fault(502, "%s: the console took %zd of %zu bytes", name, w, n);
	return http_no_content();
}

struct http_reply console_route(const struct caller *c, const char *name, const struct http_request *r)
{
	sqlite3_stmt *st = vm_row(c, name);
	char why[256];
	int fd;

	if (!st)
		return http_fault(404, "no VM named %s", name);
	sqlite3_finalize(st);
	if (!strcmp(r->method, "POST")) {
		if (!r->in)
			return http_fault(400, "a JSON object is expected as the body");
		HTTP_CHECK(r->in, input_fields, false);
		return console_input(c, name, r->in);
	}
	if (strcmp(r->method, "GET"))
		return (struct http_reply){ 405, json_pack("{s:s}", "fault_message", "methods: GET, POST"), "GET, POST" };
	fd = console_connect(c, name, why, sizeof(why));
	if (fd < 0)
		return http_fault(409, "%s", why);
	struct console_stream *cs = malloc(sizeof(*cs));

	if (!cs) {
		close(fd);
		return http_fault(500, "out of memory");
	}
	*cs = (struct console_stream){ fd, r->conn_fd };
	return (struct http_reply){ 200, .stream = { console_read, console_free, cs, "application/octet-stream" } };
}
