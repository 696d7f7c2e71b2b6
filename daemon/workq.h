/* SPDX-License-Identifier: MIT */
/*
 * One thread that runs jobs in the order they were submitted, for the
 * blocking calls mvmd's loop must not make itself (spawning a worker,
 * removing its cgroups).  Each job's run() is called on the thread, then
 * its done() on the loop.  FIFO on one thread is the point: a later job
 * never overtakes an earlier one.
 */
#ifndef MVM_WORKQ_H
#define MVM_WORKQ_H

#include <stdbool.h>
#include <sys/queue.h>
#include <uv.h>

struct workq_job {
	TAILQ_ENTRY(workq_job) link;
	void (*run)(struct workq_job *j);       /* on the thread */
	void (*done)(struct workq_job *j);      /* on the loop, after run() */
};

struct workq;

/* The thread starts with every signal blocked (they are the loop's), named
 * name (at most 15 bytes: its comm, which top -H and perf show). */
int workq_start(uv_loop_t *loop, const char *name, struct workq **ret);
void workq_submit(struct workq *q, struct workq_job *j);
/* Blocks until no job that match() accepts is queued or running. */
void workq_wait_none(struct workq *q, bool (*match)(const struct workq_job *j,
                                                    const void *arg), const void *arg);
/* Runs every job submitted and then its done(), joins the thread, and
 * frees q (once the loop has run its handle's close). */
void workq_stop(struct workq *q);

#endif
