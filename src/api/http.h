/* HTTP/1.1 with JSON bodies on a Unix socket: the server part (libmicrohttpd
 * and jansson) that the per-VM API (api.c) and tarnd's API share, and the
 * checking of request bodies against a list of fields.
 *
 * A server calls its route function once per request, on the server's
 * thread, with the body already parsed: a JSON object, or NULL with the
 * reason the body is not one (NULL reason: no body). Bodies over the cap
 * get 413 without a call. Replies are JSON; errors carry
 * {"fault_message": "..."} (Firecracker's form). */
#ifndef TARN_API_HTTP_H
#define TARN_API_HTTP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

struct http_request {
	const char *method, *url; /* url without its query */
	const char *query;	  /* "k=v&k2=v2" (decoded values), "" for none */
	json_t *in;	  /* the body as an object, or NULL */
	const char *bad;  /* why the body is not an object; NULL: there was none */
	const char *auth; /* the Authorization header, or NULL */
	uid_t peer_uid;	  /* the client's uid (SO_PEERCRED), (uid_t)-1 unknown */
	int conn_fd;	  /* the connection's socket (a stream polls it to see the client leave) */
};

/* A body that streams (newline-delimited JSON, say), on a server started
 * with threads (a connection each): read blocks until it has bytes, puts
 * up to max into buf and says how many; -1 ends the body. free(cls) when
 * the connection is done with it. */
struct http_stream {
	ssize_t (*read)(void *cls, char *buf, size_t max);
	void (*free)(void *cls);
	void *cls;
	const char *type; /* its Content-Type */
};

/* A handler's answer: status and a JSON body (NULL: none), or instead a
 * plain-text one (text, malloc'ed, taken), or a stream. */
struct http_reply {
	unsigned status;
	json_t *body;
	const char *allow; /* 405: the methods the path takes */
	char *text;
	const char *text_type; /* its Content-Type */
	struct http_stream stream;
};

typedef struct http_reply http_route_fn(void *opaque, const struct http_request *r);

struct http_server;

/* Listen on a Unix socket at path. A socket file nobody listens on (its
 * process died) is taken over; a live one or another file is refused.
 * what names the option in errors ("--api-sock"). fd or -errno. */
int http_listen_unix(const char *path, const char *what, char *err, size_t len);

/* Listen on TCP at "HOST:PORT" ("[V6]:PORT"). fd or -errno, the reason
 * in err. A client there has no peer uid. */
int http_listen_tcp(const char *hostport, const char *what, char *err, size_t len);

/* Serve fd (owned from now on) with route, bodies up to body_max bytes,
 * on a thread of the server's that takes no process signals, or with
 * threads, one for each connection (so that a stream may wait). 0 or
 * -errno. */
int http_start(struct http_server **out, int fd, size_t body_max, bool threads, http_route_fn *route, void *opaque,
	       char *err, size_t len) __attribute__((warn_unused_result));
/* Wait, at most ms, until every request begun has been answered in full
 * (before http_stop, for a reply the process's end would cut off). */
void http_drain(struct http_server *s, unsigned ms);
/* Stop serving and close the socket (the file is the caller's). */
void http_stop(struct http_server *s);

struct http_reply http_fault(unsigned status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
struct http_reply http_ok(json_t *body);
struct http_reply http_no_content(void);

/* ---- request bodies ---- */

enum http_ftype { F_STR, F_INT, F_BOOL, F_OBJ, F_ARR, F_NUM, F_SIZE /* integer or string */ };

struct http_field {
	const char *name;
	enum http_ftype type;
	bool required;
};

/* Every member of o is a known field of the right type and the required
 * ones are there (with partial, none is required: PATCH). NULL or why not
 * (in why). */
const char *http_check_fields(const json_t *o, const struct http_field *f, size_t n, bool partial, char *why,
			      size_t len);

/* In a route handler: return 400 with the reason unless o fits fields. */
#define HTTP_CHECK(o, fields, partial)                                                              \
	do {                                                                                        \
		char why_[256];                                                                     \
		if (http_check_fields(o, fields, sizeof(fields) / sizeof(fields[0]), partial, why_, \
				      sizeof(why_)))                                                \
			return http_fault(400, "%s", why_);                                         \
	} while (0)

#endif
