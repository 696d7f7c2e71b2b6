/* SPDX-License-Identifier: MIT */
/* The token buckets of vmm/devices/virtio/ratelimit.c on a simulated clock:
 * exact waits, debt for large requests, bursts, long-run rates, the
 * throttled-time counter, limit checks; and the timerfd helpers on the real
 * clock. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "vmm/devices/virtio/ratelimit.h"

#define MS 1000000ULL
#define SEC 1000000000ULL
/* What a full bucket holds at 1000/s: RATELIMIT_BUCKET_MS units. */
#define CAP1000 RATELIMIT_BUCKET_MS

static void test_check(void)
{
	struct ratelimit_config c = { 0 };
	const char *why = "";

	CHECK_EQ(ratelimit_config_check(&c, &why), 0);
	c.bps = RATELIMIT_MAX;
	c.ops = RATELIMIT_MAX;
	CHECK_EQ(ratelimit_config_check(&c, &why), 0);
	c.bps = RATELIMIT_MAX + 1;
	CHECK_EQ(ratelimit_config_check(&c, &why), -EINVAL);
	CHECK(!strcmp(why, "bps"));
	c = (struct ratelimit_config){ .ops = RATELIMIT_MAX + 1 };
	CHECK_EQ(ratelimit_config_check(&c, &why), -EINVAL);
	CHECK(!strcmp(why, "ops"));
	c = (struct ratelimit_config){ .bps_burst = 10 };
	CHECK_EQ(ratelimit_config_check(&c, &why), -EINVAL);
	CHECK(!strcmp(why, "bps_burst"));
	c = (struct ratelimit_config){ .ops = 1, .ops_burst = RATELIMIT_MAX + 1 };
	CHECK_EQ(ratelimit_config_check(&c, &why), -EINVAL);
	CHECK(!strcmp(why, "ops_burst"));
}

static void test_unlimited(void)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config c = { 0 };

	ratelimit_set(&rl, &c, 0);
	CHECK(!ratelimit_enabled(&rl));
	for (int i = 0; i < 1000; i++) {
		CHECK_EQ(ratelimit_wait_ns(&rl, 0), 0);
		ratelimit_charge(&rl, 1ULL << 30, 1);
	}
	CHECK_EQ(rl.throttled_ns, 0);
}

/* 1000 B/s: the bucket holds CAP1000 bytes; 100 more leave 100 in debt,
 * which is exactly 100 ms. */
static void test_exact_wait(void)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config c = { .bps = 1000 };
	uint64_t t0 = 5 * SEC;

	ratelimit_set(&rl, &c, t0);
	CHECK(ratelimit_enabled(&rl));
	CHECK_EQ(ratelimit_wait_ns(&rl, t0), 0);
	ratelimit_charge(&rl, CAP1000 + 100, 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0), 100 * MS);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0 + 50 * MS), 50 * MS);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0 + 100 * MS - 1), 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0 + 100 * MS), 0);
	CHECK_EQ(rl.throttled_ns, 100 * MS);
	/* a clock that goes backwards (it cannot, but) adds nothing */
	CHECK_EQ(ratelimit_wait_ns(&rl, t0), 0);
	/* idle for an hour: the bucket fills to CAP1000 bytes, not 3.6 MB */
	ratelimit_charge(&rl, 0, 0);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0 + 3600 * SEC), 0);
	ratelimit_charge(&rl, CAP1000 + 10, 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, t0 + 3600 * SEC), 10 * MS);
}

/* Runs requests of `bytes` as fast as the limiter admits them for `span`
 * simulated ns; returns the bytes done. */
static uint64_t simulate(struct ratelimit *rl, uint64_t bytes, uint64_t span, uint64_t *ret_ops)
{
	uint64_t now = 0, done = 0, ops = 0, w;

	while (now < span) {
		w = ratelimit_wait_ns(rl, now);
		if (w) {
			now += w;
			continue;
		}
		ratelimit_charge(rl, bytes, 1);
		done += bytes;
		ops++;
	}
	*ret_ops = ops;
	return done;
}

static void test_long_run(void)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config c = { .bps = 1 << 20 };
	uint64_t ops, done;

	/* 1 MiB/s with 64 KiB requests for 10 s: 10 MiB, give or take the
	 * bucket and the last request's debt */
	ratelimit_set(&rl, &c, 0);
	done = simulate(&rl, 65536, 10 * SEC, &ops);
	CHECK(done >= 10ULL << 20);
	CHECK(done <= (10ULL << 20) + 65536 + (1 << 20) / 1000 * RATELIMIT_BUCKET_MS + 65536);
	/* 1 MiB requests (bigger than the bucket) still flow, at the rate */
	ratelimit_set(&rl, &c, 0);
	done = simulate(&rl, 1 << 20, 10 * SEC, &ops);
	CHECK(done >= 10ULL << 20 && done <= 11ULL << 20);
	/* 10 ops/s holds a fraction of an op: the rate is exact, one op per 100 ms */
	c = (struct ratelimit_config){ .ops = 10 };
	ratelimit_set(&rl, &c, 0);
	simulate(&rl, 4096, 10 * SEC, &ops);
	CHECK(ops >= 100 && ops <= 101);
	/* both: the tighter one wins (100 ops/s of 64 KiB beats 1 MiB/s) */
	c = (struct ratelimit_config){ .bps = 1 << 20, .ops = 1000 };
	ratelimit_set(&rl, &c, 0);
	done = simulate(&rl, 65536, 10 * SEC, &ops);
	CHECK(done <= (10ULL << 20) + 3 * 65536);
	c = (struct ratelimit_config){ .bps = 1ULL << 30, .ops = 100 };
	ratelimit_set(&rl, &c, 0);
	simulate(&rl, 4096, 10 * SEC, &ops);
	CHECK(ops >= 1000 && ops <= 1002);
}

static void test_burst(void)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config c = { .bps = 1000, .bps_burst = 5000 };

	ratelimit_set(&rl, &c, 0);
	ratelimit_charge(&rl, 5000, 1);          /* all from the burst */
	CHECK_EQ(ratelimit_wait_ns(&rl, 0), 0);
	ratelimit_charge(&rl, CAP1000 + 100, 1); /* the bucket again */
	CHECK_EQ(ratelimit_wait_ns(&rl, 0), 100 * MS);
	/* the burst is one-time: it does not come back */
	CHECK_EQ(ratelimit_wait_ns(&rl, 10 * SEC), 0);
	ratelimit_charge(&rl, CAP1000 + 1000, 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, 10 * SEC), SEC);
	/* ops burst */
	c = (struct ratelimit_config){ .ops = 1, .ops_burst = 3 };
	ratelimit_set(&rl, &c, 0);
	for (int i = 0; i < 3; i++) {
		CHECK_EQ(ratelimit_wait_ns(&rl, 0), 0);
		ratelimit_charge(&rl, 0, 1);
	}
	CHECK_EQ(ratelimit_wait_ns(&rl, 0), 0);  /* the bucket's fraction of an op */
	ratelimit_charge(&rl, 0, 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, 0), (1000 - RATELIMIT_BUCKET_MS) * MS);
}

/* Changing the limits at run time: the new rate applies at once and the
 * throttled time so far is kept. */
static void test_change(void)
{
	struct ratelimit rl = { 0 };
	struct ratelimit_config slow = { .bps = 100 }, fast = { .bps = 1000000 }, off = { 0 };

	ratelimit_set(&rl, &slow, 0);
	ratelimit_charge(&rl, 100 * RATELIMIT_BUCKET_MS / 1000 + 100, 1);  /* a full bucket + 1 s */
	CHECK_EQ(ratelimit_wait_ns(&rl, 0), SEC);
	CHECK_EQ(ratelimit_wait_ns(&rl, SEC / 2), SEC / 2);
	ratelimit_set(&rl, &fast, SEC / 2);
	CHECK_EQ(rl.throttled_ns, SEC / 2);
	CHECK_EQ(ratelimit_wait_ns(&rl, SEC / 2), 0);
	ratelimit_set(&rl, &off, SEC);
	CHECK(!ratelimit_enabled(&rl));
	ratelimit_charge(&rl, 1ULL << 40, 1);
	CHECK_EQ(ratelimit_wait_ns(&rl, SEC), 0);
	/* the largest limits do not overflow */
	struct ratelimit_config max = { .bps = RATELIMIT_MAX, .ops = RATELIMIT_MAX,
	                                .bps_burst = RATELIMIT_MAX, .ops_burst = RATELIMIT_MAX };
	ratelimit_set(&rl, &max, 0);
	ratelimit_charge(&rl, UINT64_MAX, UINT64_MAX);
	CHECK(ratelimit_wait_ns(&rl, 0) > 0);
	CHECK_EQ(ratelimit_wait_ns(&rl, UINT64_MAX), 0);
}

static void test_timer(void)
{
	int fd = ratelimit_timer_open();
	struct pollfd p;
	uint64_t t0;

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	p = (struct pollfd){ .fd = fd, .events = POLLIN };
	CHECK_EQ(poll(&p, 1, 0), 0);             /* not armed: never fires */
	t0 = ratelimit_now_ns();
	CHECK_EQ(ratelimit_timer_arm(fd, 20 * MS), 0);
	CHECK_EQ(poll(&p, 1, 2000), 1);
	CHECK(ratelimit_now_ns() - t0 >= 20 * MS);
	ratelimit_timer_clear(fd);
	CHECK_EQ(poll(&p, 1, 0), 0);
	CHECK_EQ(ratelimit_timer_arm(fd, 0), 0);  /* 0 still fires, at once */
	CHECK_EQ(poll(&p, 1, 2000), 1);
	ratelimit_timer_clear(fd);
	ratelimit_timer_clear(fd);               /* nothing pending: harmless */
	close(fd);
}

int main(void)
{
	test_check();
	test_unlimited();
	test_exact_wait();
	test_long_run();
	test_burst();
	test_change();
	test_timer();
	return check_result("test-ratelimit");
}
