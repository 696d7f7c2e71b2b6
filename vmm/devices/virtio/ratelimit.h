/* SPDX-License-Identifier: MIT */
#ifndef MVM_RATELIMIT_H
#define MVM_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

/*
 * Token buckets for a device's bandwidth (bytes/s) and operations (ops/s),
 * each with an optional one-time burst spent before the bucket.  A bucket
 * holds at most RATELIMIT_BUCKET_MS worth of its rate and starts full.
 *
 * Admission is "may the next request start?": it may while neither bucket
 * is in debt.  Its size is charged afterwards and may drive a bucket into
 * debt, which the next request waits out; a request larger than the bucket
 * is therefore never stuck, and over any long run the achieved rate is the
 * limit.  Time is passed in (CLOCK_MONOTONIC ns) so tests are exact.
 */

/* Long enough to absorb a late timer on a busy host without losing rate,
 * short enough that the burst at start is small. */
#define RATELIMIT_BUCKET_MS 20
/* The largest rate or burst accepted: 1 TiB/s (or 2^40 ops/s); more is a
 * typo, not a limit. */
#define RATELIMIT_MAX (1ULL << 40)

struct ratelimit_config {
	uint64_t bps, bps_burst;     /* 0: no byte limit / no burst */
	uint64_t ops, ops_burst;     /* 0: no op limit / no burst */
};

struct ratelimit_bucket {
	uint64_t rate;               /* units per second; 0: unlimited */
	__int128 tokens;             /* nano-units; negative: debt */
	__int128 cap;
	uint64_t burst;              /* one-time burst left, whole units */
};

struct ratelimit {
	struct ratelimit_config config;
	struct ratelimit_bucket bytes, ops;
	uint64_t last_ns;            /* last refill */
	bool throttled;
	uint64_t throttled_since, throttled_ns;  /* time spent waiting */
};

/* 0, or -EINVAL with *ret_why naming the bad field ("bps", ...): a burst
 * without its rate, or a value above RATELIMIT_MAX. */
int ratelimit_config_check(const struct ratelimit_config *c, const char **ret_why);

/* Sets (or changes, keeping throttled_ns) the limits; buckets start full.
 * c must have passed ratelimit_config_check. */
void ratelimit_set(struct ratelimit *rl, const struct ratelimit_config *c, uint64_t now_ns);

static inline bool ratelimit_enabled(const struct ratelimit *rl)
{
	return rl->bytes.rate || rl->ops.rate;
}

/* 0 when the next request may start now, else the nanoseconds until it may
 * (at least 1).  Counts the time from the first refusal to the next
 * admission as throttled. */
uint64_t ratelimit_wait_ns(struct ratelimit *rl, uint64_t now_ns);

/* Charges an admitted request. */
void ratelimit_charge(struct ratelimit *rl, uint64_t bytes, uint64_t ops);

/* CLOCK_MONOTONIC in ns. */
uint64_t ratelimit_now_ns(void);

/* A non-blocking CLOCK_MONOTONIC timerfd, -errno on failure; arm with
 * ratelimit_timer_arm (ns from now), then read it once it fires. */
int ratelimit_timer_open(void);
int ratelimit_timer_arm(int fd, uint64_t ns);
void ratelimit_timer_clear(int fd);

#endif
