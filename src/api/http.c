#include "api/http.h"

#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/log.h"

struct http_server {
	struct MHD_Daemon *d;
	int fd;
	size_t body_max;
	http_route_fn *route;
	void *opaque;
	int busy; /* requests begun and not yet answered in full (atomic) */
};

/* One request's body as it arrives. */
struct req {
	char *body;
	size_t len;
	bool too_big;
};

struct http_reply http_fault(unsigned status, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return (struct http_reply){ status, json_pack("{s:s}", "fault_message", msg), NULL };
}

struct http_reply http_ok(json_t *body)
{
	return (struct http_reply){ MHD_HTTP_OK, body, NULL };
}

struct http_reply http_no_content(void)
{
	return (struct http_reply){ MHD_HTTP_NO_CONTENT, NULL, NULL };
}

/* ---- request bodies ---- */

static const char *const type_names[] = { "a string", "an integer", "a boolean", "an object", "an array",
					  "a number", "a size (bytes, or a string like \"10G\")" };

static bool type_ok(const json_t *v, enum http_ftype t)
{
	switch (t) {
	case F_STR: return json_is_string(v);
	case F_INT: return json_is_integer(v);
	case F_BOOL: return json_is_boolean(v);
	case F_OBJ: return json_is_object(v);
	case F_ARR: return json_is_array(v);
	case F_NUM: return json_is_number(v);
	case F_SIZE: return json_is_integer(v) || json_is_string(v);
	}
	return false;
}

const char *http_check_fields(const json_t *o, const struct http_field *f, size_t n, bool partial, char *why,
			      size_t len)
{
	const char *k;
	json_t *v;

	json_object_foreach((json_t *)o, k, v) {
		size_t i;

		for (i = 0; i < n && strcmp(f[i].name, k); i++)
			;
		if (i == n) {
			snprintf(why, len, "unknown field '%s'", k);
			return why;
		}
		if (!type_ok(v, f[i].type)) {
			snprintf(why, len, "field '%s' must be %s", k, type_names[f[i].type]);
			return why;
		}
	}
	for (size_t i = 0; i < n && !partial; i++) {
		if (f[i].required && !json_object_get(o, f[i].name)) {
			snprintf(why, len, "missing field '%s'", f[i].name);
			return why;
		}
	}
	return NULL;
}

/* ---- the server ---- */

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	struct http_stream *st = cls;
	ssize_t n = st->read(st->cls, buf, max);

	return n < 0 ? MHD_CONTENT_READER_END_OF_STREAM : n;
}

static void stream_free(void *cls)
{
	struct http_stream *st = cls;

	st->free(st->cls);
	free(st);
}

/* A stream's response (st copied), or NULL. */
static struct MHD_Response *stream_response(const struct http_stream *st)
{
	struct http_stream *mine = malloc(sizeof(*mine));
	struct MHD_Response *resp;

	if (!mine) {
		st->free(st->cls);
		return NULL;
	}
	*mine = *st;
	resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, mine, stream_free);
	if (!resp)
		stream_free(mine);
	else
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, st->type);
	return resp;
}

static enum MHD_Result answer(struct MHD_Connection *c, struct http_reply r)
{
	char *text = r.text ? r.text : r.body ? json_dumps(r.body, JSON_COMPACT) : NULL;
	struct MHD_Response *resp;
	enum MHD_Result ret;

	json_decref(r.body);
	if (r.stream.read) {
		if (!(resp = stream_response(&r.stream)))
			return MHD_NO;
		ret = MHD_queue_response(c, r.status, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	resp = MHD_create_response_from_buffer(text ? strlen(text) : 0, text ? text : (char *)"",
					       text ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!resp) {
		free(text);
		return MHD_NO;
	}
	if (text)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, r.text ? r.text_type : "application/json");
	if (r.allow)
		MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, r.allow);
	ret = MHD_queue_response(c, r.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

static int conn_fd(struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

	return ci ? ci->connect_fd : -1;
}

static uid_t peer_uid(struct MHD_Connection *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	if (getsockopt(conn_fd(c), SOL_SOCKET, SO_PEERCRED, &cred, &len))
		return (uid_t)-1;
	return cred.uid;
}

struct query {
	char buf[512];
	size_t len;
};

static enum MHD_Result add_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
	struct query *q = cls;
	int n = snprintf(q->buf + q->len, sizeof(q->buf) - q->len, "%s%s=%s", q->len ? "&" : "", key,
			 value ? value : "");

	if (n < 0 || (size_t)n >= sizeof(q->buf) - q->len)
		return MHD_NO; /* the rest does not fit: left out */
	q->len += (size_t)n;
	return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
				  const char *version, const char *data, size_t *data_size, void **con_cls)
{
	struct http_server *s = cls;
	struct req *q = *con_cls;
	struct http_reply r;
	json_t *in = NULL;
	json_error_t jerr;
	char bad[256] = "";

	if (!q) { /* the headers: the body comes in the next calls */
		q = calloc(1, sizeof(*q));
		if (!q)
			return MHD_NO;
		*con_cls = q;
		__atomic_fetch_add(&s->busy, 1, __ATOMIC_RELAXED);
		return MHD_YES;
	}
	if (*data_size) {
		if (q->len + *data_size > s->body_max) {
			q->too_big = true;
		} else {
			char *b = realloc(q->body, q->len + *data_size + 1);

			if (!b)
				return MHD_NO;
			memcpy(b + q->len, data, *data_size);
			q->body = b;
			q->len += *data_size;
			b[q->len] = 0;
		}
		*data_size = 0;
		return MHD_YES;
	}
	if (q->too_big)
		return answer(c, http_fault(MHD_HTTP_CONTENT_TOO_LARGE, "the body is larger than %zu bytes",
					    s->body_max));
	if (q->len) {
		in = json_loadb(q->body, q->len, JSON_REJECT_DUPLICATES, &jerr);
		if (!in) {
			snprintf(bad, sizeof(bad), "the body is not JSON: %s (at byte %d)", jerr.text, jerr.position);
		} else if (!json_is_object(in)) {
			json_decref(in);
			in = NULL;
			snprintf(bad, sizeof(bad), "the body must be a JSON object");
		}
	}
	struct query qs = { .len = 0 };

	qs.buf[0] = 0;
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, add_arg, &qs);
	r = s->route(s->opaque, &(struct http_request){
		.method = method,
		.url = url,
		.query = qs.buf,
		.in = in,
		.bad = *bad ? bad : NULL,
		.auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION),
		.peer_uid = peer_uid(c),
		.conn_fd = conn_fd(c),
	});
	if (r.status >= 400)
		pr_info("api: %s %s: %u %s", method, url, r.status,
			json_string_value(json_object_get(r.body, "fault_message")));
	json_decref(in);
	return answer(c, r);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
	struct http_server *s = cls;
	struct req *q = *con_cls;

	if (q) {
		free(q->body);
		free(q);
		*con_cls = NULL;
		__atomic_fetch_sub(&s->busy, 1, __ATOMIC_RELEASE);
	}
}

int http_listen_unix(const char *path, const char *what, char *err, size_t len)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct stat st;
	int fd;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, len, "%s %s: longer than %zu bytes", what, path, sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (!lstat(path, &st)) {
		if (!S_ISSOCK(st.st_mode) || !connect(fd, (struct sockaddr *)&sa, sizeof(sa)) || errno != ECONNREFUSED) {
			close(fd);
			snprintf(err, len, "%s %s: %s", what, path,
				 S_ISSOCK(st.st_mode) ? "another process listens there" : "exists and is not a socket");
			return -EEXIST;
		}
		close(fd);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0 || unlink(path))
			goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 64))
		goto fail;
	return fd;
fail:
	snprintf(err, len, "%s %s: %s", what, path, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -errno;
}

int http_listen_tcp(const char *hostport, const char *what, char *err, size_t len)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE },
			*res, *a;
	char host[256];
	const char *colon = strrchr(hostport, ':');
	int fd = -1, e = 0, r;

	/* HOST:PORT, [V6]:PORT */
	if (!colon || !colon[1] || (size_t)(colon - hostport) >= sizeof(host)) {
		snprintf(err, len, "%s %s: expected HOST:PORT (127.0.0.1:8080, [::1]:8080)", what, hostport);
		return -EINVAL;
	}
	snprintf(host, sizeof(host), "%.*s", (int)(colon - hostport), hostport);
	if (host[0] == '[' && host[strlen(host) - 1] == ']') {
		memmove(host, host + 1, strlen(host));
		host[strlen(host) - 1] = 0;
	}
	r = getaddrinfo(host, colon + 1, &hints, &res);
	if (r) {
		snprintf(err, len, "%s %s: %s", what, hostport, gai_strerror(r));
		return -EINVAL;
	}
	for (a = res; a && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
		if (fd < 0) {
			e = errno;
			continue;
		}
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &(int){ 1 }, sizeof(int));
		if (bind(fd, a->ai_addr, a->ai_addrlen) || listen(fd, 64)) {
			e = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, len, "%s %s: %s", what, hostport, strerror(e));
		return -e;
	}
	return fd;
}

int http_start(struct http_server **out, int fd, size_t body_max, bool threads, http_route_fn *route, void *opaque,
	       char *err, size_t len)
{
	struct http_server *s = calloc(1, sizeof(*s));
	sigset_t all, old;

	*out = NULL;
	if (!s) {
		close(fd);
		snprintf(err, len, "out of memory");
		return -ENOMEM;
	}
	*s = (struct http_server){ .fd = fd, .body_max = body_max, .route = route, .opaque = opaque };
	/* The server's thread takes no process signals: they are the main
	 * thread's (Ctrl-C, SIGTERM) and the vCPUs' (kicks). */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	s->d = MHD_start_daemon(threads ? MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO
				: MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO,
				0, NULL, NULL, on_request, s,
				MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_NOTIFY_COMPLETED, on_done, s,
				MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_END);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (!s->d) {
		snprintf(err, len, "the HTTP server did not start");
		close(fd);
		free(s);
		return -EIO;
	}
	*out = s;
	return 0;
}

void http_drain(struct http_server *s, unsigned ms)
{
	for (unsigned i = 0; s && i < ms && __atomic_load_n(&s->busy, __ATOMIC_ACQUIRE) > 0; i++)
		usleep(1000);
}

void http_stop(struct http_server *s)
{
	if (!s)
		return;
	MHD_stop_daemon(s->d);
	close(s->fd);
	free(s);
}
