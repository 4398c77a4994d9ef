/* The client side of api/http.h: one request to an HTTP server on a Unix
 * socket (tarn's per-VM API, tarnd's), JSON in and out. */
#ifndef TARN_API_HTTP_CLIENT_H
#define TARN_API_HTTP_CLIENT_H

#include <jansson.h>
#include <stddef.h>

/* method path on the server at sock (a Unix socket's path, or a TCP
 * server's "http://HOST:PORT"), with body (JSON text, or NULL) and,
 * unless token is NULL, "Authorization: Bearer token". 0 with the status
 * in *status and the reply in *out (NULL when empty; the caller's), or -1
 * with the reason in err (no server, a reply that is not JSON). */
int http_request(const char *sock, const char *method, const char *path, const char *body, const char *token,
		 long *status, json_t **out, char *err, size_t len) __attribute__((warn_unused_result));

/* GET path on sock as a stream: its bytes to fn as they come, until fn
 * returns nonzero or the server ends it. 0 with the status in *status, or
 * -1 with the reason in err (a refusal's fault_message among them). */
int http_stream(const char *sock, const char *path, const char *token,
		int (*fn)(const char *data, size_t len, void *opaque), void *opaque, long *status, char *err,
		size_t len) __attribute__((warn_unused_result));

/* GET path on sock as a stream of JSON objects, one a line (blank lines
 * are keep-alives): each to fn, until fn returns nonzero or the server
 * ends the stream. 0 with the status in *status, or -1 with the reason in
 * err. */
int http_stream_lines(const char *sock, const char *path, const char *token, int (*fn)(json_t *line, void *opaque),
		      void *opaque, long *status, char *err, size_t len) __attribute__((warn_unused_result));

#endif
