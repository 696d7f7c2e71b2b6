/* SPDX-License-Identifier: MIT */
/* A FIFO job thread with its results handed back to the loop (workq.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "daemon/workq.h"

TAILQ_HEAD(workq_list, workq_job);

struct workq {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t work;            /* todo grew, or stop */
	pthread_cond_t idle;            /* a job finished */
	struct workq_list todo, done;
	struct workq_job *cur;          /* running, in neither list */
	bool stop;
	uv_async_t async;               /* done grew */
};

static void *workq_main(void *arg)
{
	struct workq *q = arg;
	struct workq_job *j;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		while (TAILQ_EMPTY(&q->todo) && !q->stop)
			pthread_cond_wait(&q->work, &q->lock);
		j = TAILQ_FIRST(&q->todo);
		if (!j)
			break;          /* stop, and nothing left to run */
		TAILQ_REMOVE(&q->todo, j, link);
		q->cur = j;
		pthread_mutex_unlock(&q->lock);
		j->run(j);
		pthread_mutex_lock(&q->lock);
		q->cur = NULL;
		TAILQ_INSERT_TAIL(&q->done, j, link);
		pthread_cond_broadcast(&q->idle);
		uv_async_send(&q->async);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

/* On the loop: done() of every finished job, in order. */
static void workq_collect(struct workq *q)
{
	struct workq_list done = TAILQ_HEAD_INITIALIZER(done);
	struct workq_job *j;

	pthread_mutex_lock(&q->lock);
	TAILQ_CONCAT(&done, &q->done, link);
	pthread_mutex_unlock(&q->lock);
	while ((j = TAILQ_FIRST(&done))) {
		TAILQ_REMOVE(&done, j, link);
		j->done(j);
	}
}

static void async_cb(uv_async_t *h)
{
	workq_collect(h->data);
}

static void closed_cb(uv_handle_t *h)
{
	struct workq *q = h->data;

	pthread_mutex_destroy(&q->lock);
	pthread_cond_destroy(&q->work);
	pthread_cond_destroy(&q->idle);
	free(q);
}

int workq_start(uv_loop_t *loop, const char *name, struct workq **ret)
{
	struct workq *q = calloc(1, sizeof(*q));
	sigset_t all, old;
	int r;

	if (!q)
		return -ENOMEM;
	TAILQ_INIT(&q->todo);
	TAILQ_INIT(&q->done);
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->work, NULL);
	pthread_cond_init(&q->idle, NULL);
	r = uv_async_init(loop, &q->async, async_cb);
	if (r < 0) {
		free(q);
		return r;
	}
	q->async.data = q;
	uv_unref((uv_handle_t *)&q->async);     /* the loop's end is not ours */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	r = -pthread_create(&q->thread, NULL, workq_main, q);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (r < 0) {
		uv_close((uv_handle_t *)&q->async, closed_cb);
		return r;
	}
	pthread_setname_np(q->thread, name);    /* a name too long stays unset */
	*ret = q;
	return 0;
}

void workq_submit(struct workq *q, struct workq_job *j)
{
	pthread_mutex_lock(&q->lock);
	TAILQ_INSERT_TAIL(&q->todo, j, link);
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->lock);
}

static bool pending(struct workq *q, bool (*match)(const struct workq_job *, const void *),
                    const void *arg)
{
	struct workq_job *j;

	if (q->cur && match(q->cur, arg))
		return true;
	TAILQ_FOREACH(j, &q->todo, link)
		if (match(j, arg))
			return true;
	return false;
}

void workq_wait_none(struct workq *q, bool (*match)(const struct workq_job *, const void *),
                     const void *arg)
{
	pthread_mutex_lock(&q->lock);
	while (pending(q, match, arg))
		pthread_cond_wait(&q->idle, &q->lock);
	pthread_mutex_unlock(&q->lock);
}

void workq_stop(struct workq *q)
{
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->work);
	pthread_mutex_unlock(&q->lock);
	pthread_join(q->thread, NULL);
	workq_collect(q);
	uv_close((uv_handle_t *)&q->async, closed_cb);
}
