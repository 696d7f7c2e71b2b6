/* SPDX-License-Identifier: MIT */
/*
 * The restart policy's decision, apart from timers and storage so that it
 * can be tested alone (tests/unit/test-restart.c): given how a VM ended
 * and its failures in a row, whether and when to start it again.
 */
#ifndef MVM_RESTART_POLICY_H
#define MVM_RESTART_POLICY_H

#include <stdbool.h>

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

#endif
