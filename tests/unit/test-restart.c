/* SPDX-License-Identifier: MIT */
/* The restart policy's decision (daemon/restart_policy.c), alone: the
 * backoff, which ends restart, the failure count and the crash loop. */
#include "daemon/restart_policy.h"
#include "tests/unit/check.h"

static struct restart_decision decide(enum proto_restart policy, int max,
                                      enum proto_vm_state state, bool requested,
                                      double ran_s, int failures)
{
	struct restart_end e = { .policy = policy, .restart_max = max, .state = state,
	                         .requested = requested, .ran_s = ran_s,
	                         .failures = failures };
	struct restart_decision d;

	restart_decide(&e, &d);
	return d;
}

static void test_backoff(void)
{
	static const double want[] = { 1, 1, 2, 4, 8, 16, 32, 60, 60 };

	for (int i = 0; i < (int)(sizeof(want) / sizeof(want[0])); i++)
		CHECK(restart_backoff_s(i) == want[i]);
	CHECK(restart_backoff_s(1000) == RESTART_BACKOFF_MAX_S);
}

static void test_which_ends_restart(void)
{
	struct restart_decision d;

	d = decide(PROTO_RESTART_NO, 0, PROTO_VM_CRASHED, false, 1, 0);
	CHECK_EQ(d.action, RESTART_NONE);
	d = decide(PROTO_RESTART_ON_FAILURE, 0, PROTO_VM_STOPPED, false, 1, 0);
	CHECK_EQ(d.action, RESTART_NONE);
	d = decide(PROTO_RESTART_ON_FAILURE, 0, PROTO_VM_CRASHED, false, 1, 0);
	CHECK_EQ(d.action, RESTART_AFTER);
	CHECK_EQ(d.failures, 1);
	CHECK(d.delay_s == 1.0);
	d = decide(PROTO_RESTART_ALWAYS, 0, PROTO_VM_STOPPED, false, 1, 0);
	CHECK_EQ(d.action, RESTART_AFTER);
	/* the user's stop or kill is never undone, and forgets the count */
	d = decide(PROTO_RESTART_ALWAYS, 0, PROTO_VM_CRASHED, true, 1, 5);
	CHECK_EQ(d.action, RESTART_NONE);
	CHECK_EQ(d.failures, 0);
}

static void test_count(void)
{
	struct restart_decision d;

	d = decide(PROTO_RESTART_ALWAYS, 0, PROTO_VM_CRASHED, false, 1, 3);
	CHECK_EQ(d.failures, 4);
	CHECK(d.delay_s == 8.0);
	/* a run of a minute counts as healthy: the count starts again */
	d = decide(PROTO_RESTART_ALWAYS, 0, PROTO_VM_CRASHED, false, RESTART_RESET_AFTER_S, 3);
	CHECK_EQ(d.failures, 1);
	CHECK(d.delay_s == 1.0);
	d = decide(PROTO_RESTART_NO, 0, PROTO_VM_CRASHED, false, RESTART_RESET_AFTER_S, 3);
	CHECK_EQ(d.action, RESTART_NONE);
	CHECK_EQ(d.failures, 0);
	/* restart_max 0: no limit */
	d = decide(PROTO_RESTART_ALWAYS, 0, PROTO_VM_CRASHED, false, 1, 100000);
	CHECK_EQ(d.action, RESTART_AFTER);
}

static void test_crash_loop(void)
{
	struct restart_decision d;

	/* on-failure:2 allows two failed restarts in a row, not a third */
	d = decide(PROTO_RESTART_ON_FAILURE, 2, PROTO_VM_CRASHED, false, 1, 1);
	CHECK_EQ(d.action, RESTART_AFTER);
	CHECK_EQ(d.failures, 2);
	d = decide(PROTO_RESTART_ON_FAILURE, 2, PROTO_VM_CRASHED, false, 1, 2);
	CHECK_EQ(d.action, RESTART_CRASH_LOOP);
	CHECK_EQ(d.loop_failures, 3);
	CHECK_EQ(d.failures, 0);
}

static void test_names(void)
{
	CHECK_EQ(proto_restart_from_name("no"), PROTO_RESTART_NO);
	CHECK_EQ(proto_restart_from_name("on-failure"), PROTO_RESTART_ON_FAILURE);
	CHECK_EQ(proto_restart_from_name("always"), PROTO_RESTART_ALWAYS);
	CHECK(proto_restart_from_name("sometimes") < 0);
	CHECK(proto_restart_from_name(NULL) < 0);
	for (int p = 0; p < PROTO_RESTART_COUNT_; p++)
		CHECK_EQ(proto_restart_from_name(proto_restart_name(p)), p);
}

static enum health_verdict judge(char state, uint64_t ran_ms, uint64_t waited_ms,
                                  double window_s, bool answered)
{
	struct health_sample then = { 'S', 1000000000ull, 2000000000ull };
	struct health_sample now = { state, then.run_ns + ran_ms * 1000000ull,
	                             then.wait_ns + waited_ms * 1000000ull };

	return health_judge(&then, &now, window_s, answered);
}

static void test_health(void)
{
	/* stopped (SIGSTOP, a tracer): hung however long it waited */
	CHECK_EQ(judge('T', 0, 0, 5, true), HEALTH_HUNG);
	CHECK_EQ(judge('t', 0, 4000, 5, true), HEALTH_HUNG);
	/* asleep or in the kernel without wanting a CPU: blocked */
	CHECK_EQ(judge('S', 0, 0, 5, true), HEALTH_HUNG);
	CHECK_EQ(judge('D', 1, 100, 5, true), HEALTH_HUNG);
	/* a quarter of the window runnable, next to no CPU: starved */
	CHECK_EQ(judge('R', 2, 1250, 5, true), HEALTH_STARVED);
	CHECK_EQ(judge('S', 2, 4900, 5, true), HEALTH_STARVED);
	CHECK_EQ(judge('R', 2, 1200, 5, true), HEALTH_HUNG);
	/* ran 50 ms with a ping waiting: spins; before its first answer that
	 * is still setting up */
	CHECK_EQ(judge('R', 50, 4000, 5, true), HEALTH_HUNG);
	CHECK_EQ(judge('R', 49, 4000, 5, true), HEALTH_STARVED);
	CHECK_EQ(judge('R', 200, 0, 5, false), HEALTH_STARTING);
	CHECK_EQ(judge('S', 0, 0, 5, false), HEALTH_HUNG);
	/* counters that went back: another task behind the pid */
	struct health_sample a = { 'R', 10, 10 }, b = { 'R', 5, 20 };
	CHECK_EQ(health_judge(&a, &b, 5, true), HEALTH_HUNG);
}

int main(void)
{
	test_health();
	test_backoff();
	test_which_ends_restart();
	test_count();
	test_crash_loop();
	test_names();
	return check_result("restart");
}
