#include "core/evloop.h"

#include <errno.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

int evloop_init(struct evloop *l)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };

	memset(l, 0, sizeof(*l));
	l->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (l->epfd < 0)
		return -errno;
	l->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wakefd < 0 || epoll_ctl(l->epfd, EPOLL_CTL_ADD, l->wakefd, &ev) < 0) {
		int err = -errno;

		if (l->wakefd >= 0)
			close(l->wakefd);
		close(l->epfd);
		return err;
	}
	return 0;
}

void evloop_destroy(struct evloop *l)
{
	close(l->wakefd);
	close(l->epfd);
}

int evloop_add(struct evloop *l, int fd, uint32_t events, evloop_cb cb, void *opaque)
{
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++) {
		struct evloop_handler *h = &l->h[i];
		struct epoll_event ev = { .events = events, .data.ptr = h };

		if (h->in_use)
			continue;
		if (epoll_ctl(l->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
			return -errno;
		*h = (struct evloop_handler){ fd, cb, opaque, true };
		return 0;
	}
	return -ENOSPC;
}

void evloop_del(struct evloop *l, int fd)
{
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++) {
		if (l->h[i].in_use && l->h[i].fd == fd) {
			epoll_ctl(l->epfd, EPOLL_CTL_DEL, fd, NULL);
			l->h[i].in_use = false;
		}
	}
}

int evloop_mod(struct evloop *l, int fd, uint32_t events)
{
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++) {
		struct evloop_handler *h = &l->h[i];
		struct epoll_event ev = { .events = events, .data.ptr = h };

		if (h->in_use && h->fd == fd)
			return epoll_ctl(l->epfd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -errno : 0;
	}
	return -ENOENT;
}

int evloop_run(struct evloop *l)
{
	struct epoll_event evs[16];

	while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
		int n = epoll_wait(l->epfd, evs, 16, -1);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (int i = 0; i < n; i++) {
			struct evloop_handler *h = evs[i].data.ptr;
			uint64_t v;

			if (!h) {
				if (read(l->wakefd, &v, sizeof(v)) < 0 && errno != EAGAIN)
					return -errno;
				continue;
			}
			if (h->in_use)
				h->cb(h->opaque, evs[i].events);
		}
	}
	return 0;
}

void evloop_stop(struct evloop *l)
{
	uint64_t one = 1;

	__atomic_store_n(&l->stop, true, __ATOMIC_RELEASE);
	if (write(l->wakefd, &one, sizeof(one)) < 0) {
		/* The counter can only overflow after 2^64 stops; nothing to do. */
	}
}
