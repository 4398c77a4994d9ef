/* The event loop: callbacks on readable fds, stopping from another thread,
 * removing handlers, and the handler table's limit. */
#include "unit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "core/evloop.h"

struct reader {
	struct evloop *loop;
	int fd;
	char got[64];
	size_t len;
	int calls;
	bool stop_after_read;
	bool del_self;
};

static void on_readable(void *opaque, uint32_t events)
{
	struct reader *r = opaque;
	ssize_t n;

	r->calls++;
	assert_true(events & EPOLLIN);
	n = read(r->fd, r->got + r->len, sizeof(r->got) - 1 - r->len);
	if (n > 0)
		r->len += (size_t)n;
	r->got[r->len] = '\0';
	if (r->del_self)
		evloop_del(r->loop, r->fd);
	if (r->stop_after_read)
		evloop_stop(r->loop);
}

static void test_pipe_callback(void **state)
{
	struct evloop loop;
	struct reader r = { .loop = &loop, .stop_after_read = true };
	int p[2];

	assert_int_equal(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
	r.fd = p[0];
	assert_int_equal(evloop_init(&loop), 0);
	assert_int_equal(evloop_add(&loop, p[0], EPOLLIN, on_readable, &r), 0);
	assert_int_equal(write(p[1], "hello", 5), 5);
	assert_int_equal(evloop_run(&loop), 0);
	assert_int_equal(r.calls, 1);
	assert_string_equal(r.got, "hello");
	evloop_destroy(&loop);
	close(p[0]);
	close(p[1]);
}

struct stopper {
	struct evloop *loop;
	int delay_ms;
};

static void *stop_thread(void *arg)
{
	struct stopper *s = arg;
	struct timespec ts = { 0, (long)s->delay_ms * 1000000L };

	nanosleep(&ts, NULL);
	evloop_stop(s->loop);
	return NULL;
}

/* Watchdog: a test that hangs must fail, not block the suite. */
static void *watchdog(void *arg)
{
	sleep(10);
	fprintf(stderr, "test_evloop: %s: timed out\n", (const char *)arg);
	_exit(1);
}

static void test_stop_from_thread(void **state)
{
	struct evloop loop;
	struct stopper s = { .loop = &loop, .delay_ms = 50 };
	pthread_t t, wd;
	struct timespec t0, t1;

	assert_int_equal(pthread_create(&wd, NULL, watchdog, "stop_from_thread"), 0);
	assert_int_equal(evloop_init(&loop), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(pthread_create(&t, NULL, stop_thread, &s), 0);
	/* Nothing else is registered: only the stop can end this. */
	assert_int_equal(evloop_run(&loop), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	pthread_join(t, NULL);
	/* It did block until the stop (not returned at once). */
	assert_true((t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000 >= 40);
	evloop_destroy(&loop);
	pthread_cancel(wd);
	pthread_join(wd, NULL);
}

static void test_del_stops_callbacks(void **state)
{
	struct evloop loop;
	struct reader a = { .loop = &loop, .del_self = true };
	struct reader b = { .loop = &loop, .stop_after_read = true };
	int pa[2], pb[2];
	pthread_t wd;

	assert_int_equal(pthread_create(&wd, NULL, watchdog, "del_stops_callbacks"), 0);
	assert_int_equal(pipe2(pa, O_CLOEXEC | O_NONBLOCK), 0);
	assert_int_equal(pipe2(pb, O_CLOEXEC | O_NONBLOCK), 0);
	a.fd = pa[0];
	b.fd = pb[0];
	assert_int_equal(evloop_init(&loop), 0);
	assert_int_equal(evloop_add(&loop, pa[0], EPOLLIN, on_readable, &a), 0);
	assert_int_equal(evloop_add(&loop, pb[0], EPOLLIN, on_readable, &b), 0);

	/* a reads once then deletes itself. */
	assert_int_equal(write(pa[1], "x", 1), 1);
	assert_int_equal(write(pb[1], "1", 1), 1);
	assert_int_equal(evloop_run(&loop), 0);
	assert_int_equal(a.calls, 1);
	assert_int_equal(b.calls, 1);

	/* More data on a's pipe (level-triggered: it would fire again at
	 * once) must not reach its callback any more. */
	assert_int_equal(write(pa[1], "yz", 2), 2);
	assert_int_equal(write(pb[1], "2", 1), 1);
	/* evloop has no restart call (vm_run runs it once): re-arm by hand. */
	loop.stop = false;
	assert_int_equal(evloop_run(&loop), 0);
	assert_int_equal(a.calls, 1);
	assert_string_equal(a.got, "x");
	assert_int_equal(b.calls, 2);
	assert_string_equal(b.got, "12");

	/* evloop_del from outside a callback too. */
	evloop_del(&loop, pb[0]);
	assert_int_equal(write(pb[1], "3", 1), 1);
	{
		struct stopper s = { .loop = &loop, .delay_ms = 50 };
		pthread_t t;

		loop.stop = false;
		assert_int_equal(pthread_create(&t, NULL, stop_thread, &s), 0);
		assert_int_equal(evloop_run(&loop), 0);
		pthread_join(t, NULL);
	}
	assert_int_equal(b.calls, 2);
	/* The freed slots are reusable. */
	assert_int_equal(evloop_add(&loop, pb[0], EPOLLIN, on_readable, &b), 0);
	evloop_destroy(&loop);
	for (int i = 0; i < 2; i++) {
		close(pa[i]);
		close(pb[i]);
	}
	pthread_cancel(wd);
	pthread_join(wd, NULL);
}

static void nop_cb(void *opaque, uint32_t events)
{
}

static void test_out_of_slots(void **state)
{
	struct evloop loop;
	int fds[EVLOOP_MAX_HANDLERS + 1][2];

	assert_int_equal(evloop_init(&loop), 0);
	for (int i = 0; i <= EVLOOP_MAX_HANDLERS; i++)
		assert_int_equal(pipe2(fds[i], O_CLOEXEC), 0);
	for (int i = 0; i < EVLOOP_MAX_HANDLERS; i++)
		assert_int_equal(evloop_add(&loop, fds[i][0], EPOLLIN, nop_cb, NULL), 0);
	assert_int_equal(evloop_add(&loop, fds[EVLOOP_MAX_HANDLERS][0], EPOLLIN, nop_cb, NULL),
			 -ENOSPC);
	/* Freeing one slot makes room again. */
	evloop_del(&loop, fds[3][0]);
	assert_int_equal(evloop_add(&loop, fds[EVLOOP_MAX_HANDLERS][0], EPOLLIN, nop_cb, NULL), 0);
	assert_int_equal(evloop_add(&loop, fds[3][0], EPOLLIN, nop_cb, NULL), -ENOSPC);
	/* An fd epoll refuses is an error, not a silently used slot. */
	evloop_del(&loop, fds[5][0]);
	assert_int_equal(evloop_add(&loop, -1, EPOLLIN, nop_cb, NULL), -EBADF);
	assert_int_equal(evloop_add(&loop, fds[5][0], EPOLLIN, nop_cb, NULL), 0);
	evloop_destroy(&loop);
	for (int i = 0; i <= EVLOOP_MAX_HANDLERS; i++) {
		close(fds[i][0]);
		close(fds[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pipe_callback),
		cmocka_unit_test(test_stop_from_thread),
		cmocka_unit_test(test_del_stops_callbacks),
		cmocka_unit_test(test_out_of_slots),
	};

	return cmocka_run_group_tests_name("evloop", tests, NULL, NULL);
}
