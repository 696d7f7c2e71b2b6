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
