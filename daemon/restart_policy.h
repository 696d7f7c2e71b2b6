/* SPDX-License-Identifier: MIT */
/*
 * The restart policy's decision, apart from timers and storage so that it
 * can be tested alone (tests/unit/test-restart.c): given how a VM ended
 * and its failures in a row, whether and when to start it again.
 */
#ifndef MVM_RESTART_POLICY_H
#define MVM_RESTART_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "proto/proto.h"

#define RESTART_BACKOFF_MIN_S 1.0
#define RESTART_BACKOFF_MAX_S 60.0
#define RESTART_RESET_AFTER_S 60.0      /* a run this long forgets failures */

enum restart_action {
	RESTART_NONE,                   /* leave it as it ended */
	RESTART_AFTER,                  /* start it again after delay_s */
	RESTART_CRASH_LOOP,             /* too many failures: leave it crashed */
};

struct restart_end {
	enum proto_restart policy;
	int restart_max;                /* failures allowed in a row; 0: no limit */
	enum proto_vm_state state;      /* how it ended: stopped or crashed */
	bool requested;                 /* the user stopped or killed it */
	double ran_s;                   /* how long its last run lasted */
	int failures;                   /* failures in a row before this end */
};

struct restart_decision {
	enum restart_action action;
	int failures;                   /* the count to keep from now on */
	int loop_failures;              /* RESTART_CRASH_LOOP: failures in a row */
	double delay_s;                 /* RESTART_AFTER */
};

/* 1 s after the first failure, doubling up to 60 s. */
double restart_backoff_s(int failures);
void restart_decide(const struct restart_end *e, struct restart_decision *ret);

/* The health check's verdict on a worker whose ping went unanswered past
 * health_timeout, from what its loop thread (the one that answers pings)
 * did over one more interval: /proc/PID/stat's state and
 * /proc/PID/schedstat's CPU time and run-queue wait, sampled at both ends. */
struct health_sample {
	char state;                     /* R, S, D, T, t, Z, ... */
	uint64_t run_ns;                /* on a CPU */
	uint64_t wait_ns;               /* runnable, waiting for a CPU */
};

enum health_verdict {
	HEALTH_HUNG,                    /* stopped, blocked or spinning: kill it */
	HEALTH_STARVED,                 /* wanted a CPU and got too little: wait */
	HEALTH_STARTING,                /* not at its loop yet, still working: wait */
};

/* A loop thread with a ping in its socket that ran this long without
 * answering spins (an answer takes microseconds). */
#define HEALTH_SPIN_NS (50 * 1000000ull)

/* answered: the worker's loop has answered before (else it may still be
 * setting up, which takes CPU).  window_s: time between the samples. */
enum health_verdict health_judge(const struct health_sample *then,
                                 const struct health_sample *now, double window_s,
                                 bool answered);

#endif
