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

int http_request(const char *sock, const char *method, const char *path, const char *json, const char *token,
		 long *status, json_t **out, char *err, size_t len)
{
	struct curl_slist *hdr;
	struct body b = { 0 };
	char url[512], auth[512], cerr[CURL_ERROR_SIZE] = "";
	CURL *c;
	CURLcode rc;
	json_error_t jerr;

	*out = NULL;
	if (curl_load(err, len))
		return -1;
	hdr = curl.slist_append(NULL, "Content-Type: application/json");
	if (token && hdr) {
		snprintf(auth, sizeof(auth), "Authorization: Bearer %s", token);
		hdr = curl.slist_append(hdr, auth);
	}
	c = curl.easy_init();
	if (!c || !hdr) {
		snprintf(err, len, "out of memory");
		if (c)
			curl.easy_cleanup(c);
		if (hdr)
			curl.slist_free_all(hdr);
		return -1;
	}
	if (!strncmp(sock, "http://", 7)) { /* a server on TCP */
		snprintf(url, sizeof(url), "%s%s%s", sock, path[0] == '/' ? "" : "/", path);
	} else {
		snprintf(url, sizeof(url), "http://localhost%s%s", path[0] == '/' ? "" : "/", path);
		curl.easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, sock);
	}
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
		snprintf(err, len, "cannot reach %s: %s", sock,
			 access(sock, F_OK) ? "no such socket" : "nothing listens there (has it stopped?)");
		free(b.p);
		return -1;
	}
	if (rc != CURLE_OK) {
		snprintf(err, len, "cannot reach %s: %s", sock, *cerr ? cerr : curl.easy_strerror(rc));
		free(b.p);
		return -1;
	}
	if (b.len && !(*out = json_loadb(b.p, b.len, 0, &jerr))) {
		snprintf(err, len, "%s %s: %ld with a reply that is not JSON", method, path, *status);
		free(b.p);
		return -1;
	}
	free(b.p);
	return 0;
}

