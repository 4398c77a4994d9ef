/* HTTP requests with JSON bodies to a server on a Unix socket, through
 * libcurl.
 *
 * libcurl is loaded on the first request (dlopen), not linked into tarn:
 * with it linked, every tarn started (a restore that must be running in
 * milliseconds) paid ~5 ms loading and starting up the TLS, Kerberos and
 * LDAP libraries libcurl depends on. */
#include "api/http_client.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

/* Once: 0, or -1 with the reason in err. */
static int curl_load(char *err, size_t len)
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
	static int loaded;
	void *h;

	if (loaded)
		return 0;
	h = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);

	for (size_t i = 0; h && i < sizeof(syms) / sizeof(syms[0]); i++) {
		void *f = dlsym(h, syms[i].name);

		if (!f) {
			snprintf(err, len, "libcurl.so.4 has no %s", syms[i].name);
			return -1;
		}
		memcpy((char *)&curl + syms[i].off, &f, sizeof(f));
	}
	if (!h) {
		snprintf(err, len, "cannot load libcurl: %s (apt-get install libcurl4)", dlerror());
		return -1;
	}
	curl.global_init(CURL_GLOBAL_NOTHING);
	loaded = 1;
	return 0;
}

/* A request's handle: URL, headers (*hdr, the caller's to free), errors
 * into cerr. NULL (said in err) when out of memory. */
static CURL *prepare(const char *sock, const char *method, const char *path, const char *token,
		     struct curl_slist **hdr, char *cerr, char *err, size_t len)
{
	char url[512], auth[512];
	CURL *c;

	*hdr = curl.slist_append(NULL, "Content-Type: application/json");
	if (token && *hdr) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		*hdr = curl.slist_append(*hdr, auth);
	}
	c = curl.easy_init();
	if (!c || !*hdr) {
		snprintf(err, len, "out of memory");
		if (c)
			curl.easy_cleanup(c);
		if (*hdr)
			curl.slist_free_all(*hdr);
		return NULL;
	}
	if (!strncmp(sock, "http://", 7)) { /* a server on TCP */
		snprintf(url, sizeof(url), "%s%s%s", sock, path[0] == '/' ? "" : "/", path);
	} else {
		snprintf(url, sizeof(url), "http://localhost%s%s", path[0] == '/' ? "" : "/", path);
		curl.easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	}
	curl.easy_setopt(c, CURLOPT_URL, url);
	curl.easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	curl.easy_setopt(c, CURLOPT_HTTPHEADER, *hdr);
	curl.easy_setopt(c, CURLOPT_ERRORBUFFER, cerr);
	return c;
}

/* Run c; 0, or -1 with why it did not reach the server. */
static int perform(CURL *c, const char *sock, long *status, const char *cerr, char *err, size_t len)
{
	CURLcode rc = curl.easy_perform(c);

	if (rc == CURLE_OK || rc == CURLE_WRITE_ERROR) { /* a write error: the caller stopped it */
		curl.easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
		return 0;
	}
	if (rc == CURLE_COULDNT_CONNECT)
		snprintf(err, len, "cannot reach %s: %s", sock,
			 access(sock, F_OK) ? "no such socket" : "nothing listens there (has it stopped?)");
	else
		snprintf(err, len, "cannot reach %s: %s", sock, *cerr ? cerr : curl.easy_strerror(rc));
	return -1;
}

int http_request(const char *sock, const char *method, const char *path, const char *json, const char *token,
		 long *status, json_t **out, char *err, size_t len)
{
	struct curl_slist *hdr;
	struct body b = { 0 };
	char cerr[CURL_ERROR_SIZE] = "";
	json_error_t jerr;
	CURL *c;
	int ret;

	*out = NULL;
	if (curl_load(err, len) || !(c = prepare(sock, method, path, token, &hdr, cerr, err, len)))
		return -1;
	curl.easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
	curl.easy_setopt(c, CURLOPT_WRITEDATA, &b);
	curl.easy_setopt(c, CURLOPT_TIMEOUT, 60L);
	if (json)
		curl.easy_setopt(c, CURLOPT_POSTFIELDS, json);
	ret = perform(c, sock, status, cerr, err, len);
	curl.easy_cleanup(c);
	curl.slist_free_all(hdr);
	if (!ret && b.len && !(*out = json_loadb(b.p, b.len, 0, &jerr))) {
		snprintf(err, len, "%s %s: %ld with a reply that is not JSON", method, path, *status);
		ret = -1;
	}
	free(b.p);
	return ret;
}

/* A stream: its bytes to fn as they come, or, when the server refused,
 * collected (the refusal's JSON). */
struct stream {
	CURL *c;
	int (*fn)(const char *data, size_t len, void *opaque);
	void *opaque;
	struct body refusal;
};

static size_t stream_bytes(char *data, size_t size, size_t n, void *opaque)
{
	struct stream *st = opaque;
	long status = 0;

	curl.easy_getinfo(st->c, CURLINFO_RESPONSE_CODE, &status);
	if (status >= 300)
		return collect(data, size, n, &st->refusal);
	return st->fn(data, size * n, st->opaque) ? 0 : size * n;
}

int http_stream(const char *sock, const char *path, const char *token,
		int (*fn)(const char *data, size_t len, void *opaque), void *opaque, long *status, char *err,
		size_t len)
{
	struct curl_slist *hdr;
	struct stream st = { .fn = fn, .opaque = opaque };
	char cerr[CURL_ERROR_SIZE] = "";
	int ret;

	if (curl_load(err, len) || !(st.c = prepare(sock, "GET", path, token, &hdr, cerr, err, len)))
		return -1;
	curl.easy_setopt(st.c, CURLOPT_WRITEFUNCTION, stream_bytes);
	curl.easy_setopt(st.c, CURLOPT_WRITEDATA, &st);
	ret = perform(st.c, sock, status, cerr, err, len);
	curl.easy_cleanup(st.c);
	curl.slist_free_all(hdr);
	if (!ret && *status >= 300) {
		json_t *j = st.refusal.len ? json_loadb(st.refusal.p, st.refusal.len, 0, NULL) : NULL;
		const char *why = json_string_value(json_object_get(j, "fault_message"));

		snprintf(err, len, "%s (HTTP %ld)", why ? why : "refused", *status);
		json_decref(j);
		ret = -1;
	}
	free(st.refusal.p);
	return ret;
}

/* A stream's bytes so far, cut into lines as they complete. */
struct lines {
	struct body b;
	int (*fn)(json_t *line, void *opaque);
	void *opaque;
};

static int take_lines(const char *data, size_t n, void *opaque)
{
	struct lines *l = opaque;
	char *nl;

	if (collect((char *)data, 1, n, &l->b) != n)
		return -1;
	while ((nl = memchr(l->b.p, '\n', l->b.len))) {
		size_t one = (size_t)(nl - l->b.p) + 1;
		json_t *j = one > 1 ? json_loadb(l->b.p, one - 1, 0, NULL) : NULL;
		int stop = j ? l->fn(j, l->opaque) : 0;

		json_decref(j);
		memmove(l->b.p, nl + 1, l->b.len - one);
		l->b.len -= one;
		if (stop)
			return stop;
	}
	return 0;
}

int http_stream_lines(const char *sock, const char *path, const char *token, int (*fn)(json_t *line, void *opaque),
		      void *opaque, long *status, char *err, size_t len)
{
	struct lines l = { .fn = fn, .opaque = opaque };
	int ret = http_stream(sock, path, token, take_lines, &l, status, err, len);

	free(l.b.p);
	return ret;
}
