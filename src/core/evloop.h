/* The event loop: one epoll instance owning host-side I/O (console input,
 * signals as a signalfd, timers as timerfds). Runs on one thread. */
#ifndef TARN_EVLOOP_H
#define TARN_EVLOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef void (*evloop_cb)(void *opaque, uint32_t events);

struct evloop_handler {
	int fd;
	evloop_cb cb;
	void *opaque;
	bool in_use;
};

#define EVLOOP_MAX_HANDLERS 64

struct evloop {
	int epfd;
	int wakefd; /* eventfd: evloop_stop() from any thread */
	bool stop;
	struct evloop_handler h[EVLOOP_MAX_HANDLERS];
};

int evloop_init(struct evloop *l) __attribute__((warn_unused_result));
void evloop_destroy(struct evloop *l);
/* events: EPOLLIN etc. 0, -ENOSPC, or -errno from epoll_ctl. */
int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
	__attribute__((warn_unused_result));
void evloop_del(struct evloop *l, int fd);
/* Change the events a registered fd is watched for (0: none for now). Safe
 * from any thread while the loop runs. 0, -ENOENT, or -errno. */
int evloop_mod(struct evloop *l, int fd, uint32_t events) __attribute__((warn_unused_result));
/* Dispatch events until evloop_stop(). Returns 0, or -errno on failure. */
int evloop_run(struct evloop *l);
void evloop_stop(struct evloop *l);

#endif
