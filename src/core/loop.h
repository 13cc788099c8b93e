/* core/loop.h: the event loop that owns the agent's state.
 *
 * One thread runs ca_loop_run(); every callback registered here runs on that
 * thread, so module state needs no locks. Other threads (nats.c's) hand work
 * to the loop with ca_loop_post(), the only function here that may be called
 * from any thread. Built on epoll, an eventfd for wake-ups and a small timer
 * list on the monotonic clock.
 *
 * Ownership: the loop owns its ca_loop_fd and ca_loop_timer handles; callers
 * free them with ca_loop_fd_del() / ca_loop_timer_free(), which are safe to
 * call from inside any callback (deletion is deferred to the end of the
 * current iteration). */
#ifndef CA_CORE_LOOP_H
#define CA_CORE_LOOP_H

#include <stdint.h>

#include "core/err.h"

struct ca_loop;
struct ca_loop_fd;
struct ca_loop_timer;

enum {
	CA_LOOP_READ = 1,
	CA_LOOP_WRITE = 2,
	CA_LOOP_ERROR = 4, /* reported only; hang-ups and errors come as this */
};

typedef void (*ca_loop_fd_cb)(void *arg, int fd, int events);
typedef void (*ca_loop_timer_cb)(void *arg);
typedef void (*ca_loop_post_cb)(void *arg);

enum ca_err ca_loop_new(struct ca_loop **out);
/* Frees the loop, pending posts (their callbacks are not run) and any
 * handles still registered. NULL is fine. */
void ca_loop_free(struct ca_loop *loop);

/* Run until ca_loop_stop(). Loop thread only. */
enum ca_err ca_loop_run(struct ca_loop *loop);
/* Ask ca_loop_run() to return after the current iteration. Any thread. */
void ca_loop_stop(struct ca_loop *loop);

/* Watch fd for events (CA_LOOP_READ|CA_LOOP_WRITE). The fd stays owned by
 * the caller. */
enum ca_err ca_loop_fd_add(struct ca_loop *loop, int fd, int events,
                           ca_loop_fd_cb cb, void *arg, struct ca_loop_fd **out);
enum ca_err ca_loop_fd_modify(struct ca_loop_fd *h, int events);
/* Stop watching and free the handle. NULL is fine. */
void ca_loop_fd_del(struct ca_loop_fd *h);

/* A timer starts stopped. */
enum ca_err ca_loop_timer_new(struct ca_loop *loop, ca_loop_timer_cb cb, void *arg,
                              struct ca_loop_timer **out);
/* Fire after delay_ms, then every repeat_ms (0: once). Restarts a running timer. */
void ca_loop_timer_start(struct ca_loop_timer *t, int64_t delay_ms, int64_t repeat_ms);
void ca_loop_timer_stop(struct ca_loop_timer *t);
int ca_loop_timer_active(const struct ca_loop_timer *t);
void ca_loop_timer_free(struct ca_loop_timer *t);

/* Run cb(arg) on the loop thread soon. Any thread. CA_ENOMEM if the entry
 * could not be allocated (the callback then never runs). */
enum ca_err ca_loop_post(struct ca_loop *loop, ca_loop_post_cb cb, void *arg);

/* Monotonic time (ms) at which the loop last started an iteration; the
 * health check compares it to now to tell a stuck loop. Any thread. */
int64_t ca_loop_last_turn_ms(const struct ca_loop *loop);

#endif
