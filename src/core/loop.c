#include "core/loop.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "core/timeutil.h"

struct ca_loop_fd {
	struct ca_loop *loop;
	int fd;
	int events;
	ca_loop_fd_cb cb;
	void *arg;
	bool dead;
	struct ca_loop_fd *next_dead;
};

struct ca_loop_timer {
	struct ca_loop *loop;
	ca_loop_timer_cb cb;
	void *arg;
	int64_t due_ms;
	int64_t repeat_ms;
	bool active;
	bool dead;
	struct ca_loop_timer *next;
};

struct post {
	ca_loop_post_cb cb;
	void *arg;
	struct post *next;
};

struct ca_loop {
	int epfd;
	int wakefd;
	atomic_bool stopping;
	_Atomic int64_t last_turn_ms;
	struct ca_loop_timer *timers;      /* all timers, unsorted; there are few */
	struct ca_loop_fd *dead_fds;       /* freed at the end of an iteration */
	bool timers_dirty;                 /* a timer was freed during this iteration */
	pthread_mutex_t post_lock;
	struct post *post_head, *post_tail;
};

enum ca_err ca_loop_new(struct ca_loop **out)
{
	struct ca_loop *loop = calloc(1, sizeof *loop);
	if (!loop)
		return CA_ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&loop->post_lock, NULL);
	atomic_store(&loop->last_turn_ms, ca_now_monotonic_ms());
	if (loop->epfd < 0 || loop->wakefd < 0)
		goto fail;
	struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0)
		goto fail;
	*out = loop;
	return CA_OK;
fail:
	ca_loop_free(loop);
	return CA_EIO;
}

static void reap(struct ca_loop *loop)
{
	while (loop->dead_fds) {
		struct ca_loop_fd *h = loop->dead_fds;
		loop->dead_fds = h->next_dead;
		free(h);
	}
	if (loop->timers_dirty) {
		struct ca_loop_timer **pp = &loop->timers;
		while (*pp) {
			if ((*pp)->dead) {
				struct ca_loop_timer *t = *pp;
				*pp = t->next;
				free(t);
			} else {
				pp = &(*pp)->next;
			}
		}
		loop->timers_dirty = false;
	}
}

void ca_loop_free(struct ca_loop *loop)
{
	if (!loop)
		return;
	reap(loop);
	while (loop->timers) {
		struct ca_loop_timer *t = loop->timers;
		loop->timers = t->next;
		free(t);
	}
	while (loop->post_head) {
		struct post *p = loop->post_head;
		loop->post_head = p->next;
		free(p);
	}
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	pthread_mutex_destroy(&loop->post_lock);
	free(loop);
}

static uint32_t to_epoll(int events)
{
	uint32_t e = 0;
	if (events & CA_LOOP_READ)
		e |= EPOLLIN;
	if (events & CA_LOOP_WRITE)
		e |= EPOLLOUT;
	return e;
}

enum ca_err ca_loop_fd_add(struct ca_loop *loop, int fd, int events,
                           ca_loop_fd_cb cb, void *arg, struct ca_loop_fd **out)
{
	struct ca_loop_fd *h = calloc(1, sizeof *h);
	if (!h)
		return CA_ENOMEM;
	h->loop = loop;
	h->fd = fd;
	h->events = events;
	h->cb = cb;
	h->arg = arg;
	struct epoll_event ev = { .events = to_epoll(events), .data.ptr = h };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
		free(h);
		return CA_EIO;
	}
	*out = h;
	return CA_OK;
}

enum ca_err ca_loop_fd_modify(struct ca_loop_fd *h, int events)
{
	struct epoll_event ev = { .events = to_epoll(events), .data.ptr = h };
	if (epoll_ctl(h->loop->epfd, EPOLL_CTL_MOD, h->fd, &ev) < 0)
		return CA_EIO;
	h->events = events;
	return CA_OK;
}

void ca_loop_fd_del(struct ca_loop_fd *h)
{
	if (!h || h->dead)
		return;
	/* The fd may already be closed by its owner (curl does this); epoll
	 * forgets closed fds by itself, so ignore the error. */
	epoll_ctl(h->loop->epfd, EPOLL_CTL_DEL, h->fd, NULL);
	h->dead = true;
	h->next_dead = h->loop->dead_fds;
	h->loop->dead_fds = h;
}

enum ca_err ca_loop_timer_new(struct ca_loop *loop, ca_loop_timer_cb cb, void *arg,
                              struct ca_loop_timer **out)
{
	struct ca_loop_timer *t = calloc(1, sizeof *t);
	if (!t)
		return CA_ENOMEM;
	t->loop = loop;
	t->cb = cb;
	t->arg = arg;
	t->next = loop->timers;
	loop->timers = t;
	*out = t;
	return CA_OK;
}

void ca_loop_timer_start(struct ca_loop_timer *t, int64_t delay_ms, int64_t repeat_ms)
{
	if (delay_ms < 0)
		delay_ms = 0;
	t->due_ms = ca_now_monotonic_ms() + delay_ms;
	t->repeat_ms = repeat_ms > 0 ? repeat_ms : 0;
	t->active = true;
}

void ca_loop_timer_stop(struct ca_loop_timer *t)
{
	if (t)
		t->active = false;
}

int ca_loop_timer_active(const struct ca_loop_timer *t)
{
	return t && t->active && !t->dead;
}

void ca_loop_timer_free(struct ca_loop_timer *t)
{
	if (!t)
		return;
	t->active = false;
	t->dead = true;
	t->loop->timers_dirty = true;
}

enum ca_err ca_loop_post(struct ca_loop *loop, ca_loop_post_cb cb, void *arg)
{
	struct post *p = malloc(sizeof *p);
	if (!p)
		return CA_ENOMEM;
	p->cb = cb;
	p->arg = arg;
	p->next = NULL;
	pthread_mutex_lock(&loop->post_lock);
	if (loop->post_tail)
		loop->post_tail->next = p;
	else
		loop->post_head = p;
	loop->post_tail = p;
	pthread_mutex_unlock(&loop->post_lock);
	uint64_t one = 1;
	ssize_t n = write(loop->wakefd, &one, sizeof one);
	(void)n; /* EAGAIN means the counter is already non-zero: loop is awake */
	return CA_OK;
}

void ca_loop_stop(struct ca_loop *loop)
{
	atomic_store(&loop->stopping, true);
	uint64_t one = 1;
	ssize_t n = write(loop->wakefd, &one, sizeof one);
	(void)n;
}

int64_t ca_loop_last_turn_ms(const struct ca_loop *loop)
{
	return atomic_load(&((struct ca_loop *)loop)->last_turn_ms);
}

static void run_posts(struct ca_loop *loop)
{
	uint64_t v;
	ssize_t n = read(loop->wakefd, &v, sizeof v);
	(void)n;
	pthread_mutex_lock(&loop->post_lock);
	struct post *p = loop->post_head;
	loop->post_head = loop->post_tail = NULL;
	pthread_mutex_unlock(&loop->post_lock);
	while (p) {
		struct post *next = p->next;
		p->cb(p->arg);
		free(p);
		p = next;
	}
}

static int next_timeout_ms(struct ca_loop *loop, int64_t now)
{
	int64_t best = -1;
	for (struct ca_loop_timer *t = loop->timers; t; t = t->next) {
		if (!t->active)
			continue;
		int64_t d = t->due_ms - now;
		if (d < 0)
			d = 0;
		if (best < 0 || d < best)
			best = d;
	}
	/* Wake at least once a second so last_turn_ms stays fresh. */
	if (best < 0 || best > 1000)
		best = 1000;
	return (int)best;
}

static void run_timers(struct ca_loop *loop)
{
	int64_t now = ca_now_monotonic_ms();
	/* The live list, walked safely: a timer a callback adds is prepended
	 * (so this pass does not reach it) and a timer it frees is only marked
	 * dead (reap() unlinks it after the pass). */
	for (struct ca_loop_timer *t = loop->timers; t; t = t->next) {
		if (!t->active || t->dead || t->due_ms > now)
			continue;
		if (t->repeat_ms)
			t->due_ms = now + t->repeat_ms;
		else
			t->active = false;
		t->cb(t->arg);
	}
}

enum ca_err ca_loop_run(struct ca_loop *loop)
{
	struct epoll_event evs[64];
	while (!atomic_load(&loop->stopping)) {
		int64_t now = ca_now_monotonic_ms();
		atomic_store(&loop->last_turn_ms, now);
		int n = epoll_wait(loop->epfd, evs, 64, next_timeout_ms(loop, now));
		if (n < 0 && errno != EINTR)
			return CA_EIO;
		for (int i = 0; i < n; i++) {
			struct ca_loop_fd *h = evs[i].data.ptr;
			if (!h) {
				run_posts(loop);
				continue;
			}
			if (h->dead)
				continue;
			int events = 0;
			if (evs[i].events & EPOLLIN)
				events |= CA_LOOP_READ;
			if (evs[i].events & EPOLLOUT)
				events |= CA_LOOP_WRITE;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				events |= CA_LOOP_ERROR;
			h->cb(h->arg, h->fd, events);
		}
		run_timers(loop);
		reap(loop);
	}
	atomic_store(&loop->stopping, false);
	return CA_OK;
}
