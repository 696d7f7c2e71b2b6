/* SPDX-License-Identifier: MIT */
/* The restart policy's decision (docs/protocol.md "Restart policies"). */
#include "daemon/restart_policy.h"

double restart_backoff_s(int failures)
{
	double delay = RESTART_BACKOFF_MIN_S;

	for (int i = 1; i < failures && delay < RESTART_BACKOFF_MAX_S; i++)
		delay *= 2;
	return delay < RESTART_BACKOFF_MAX_S ? delay : RESTART_BACKOFF_MAX_S;
}

void restart_decide(const struct restart_end *e, struct restart_decision *ret)
{
	int failures = e->failures;

	*ret = (struct restart_decision){ .action = RESTART_NONE };
	/* the user's own stop, or a run long enough, starts a new count */
	if (e->requested || e->ran_s >= RESTART_RESET_AFTER_S)
		failures = 0;
	ret->failures = failures;
	if (e->requested || e->policy == PROTO_RESTART_NO ||
	    (e->policy == PROTO_RESTART_ON_FAILURE && e->state != PROTO_VM_CRASHED))
		return;
	/* restart_max 0: no limit, the backoff alone paces the retries */
	if (e->restart_max > 0 && failures + 1 > e->restart_max) {
		ret->action = RESTART_CRASH_LOOP;
		ret->loop_failures = failures + 1;
		ret->failures = 0;      /* a manual start begins a new count */
		return;
	}
	ret->action = RESTART_AFTER;
	ret->failures = failures + 1;
	ret->delay_s = restart_backoff_s(failures + 1);
}

enum health_verdict health_judge(const struct health_sample *then,
                                 const struct health_sample *now, double window_s,
                                 bool answered)
{
	uint64_t ran = now->run_ns - then->run_ns, waited = now->wait_ns - then->wait_ns;

	/* SIGSTOP or a tracer: it cannot answer until someone lets it go */
	if (now->state == 'T' || now->state == 't' || now->state == 'Z' ||
	    now->run_ns < then->run_ns || now->wait_ns < then->wait_ns)
		return HEALTH_HUNG;
	if (ran >= HEALTH_SPIN_NS)
		return answered ? HEALTH_HUNG : HEALTH_STARTING;
	/* runnable for a quarter of the window and still too little CPU to
	 * answer: the host is short of CPU, which killing it would not fix */
	if ((double)waited >= window_s * 1e9 / 4)
		return HEALTH_STARVED;
	return HEALTH_HUNG;             /* asleep or in the kernel: blocked */
}
