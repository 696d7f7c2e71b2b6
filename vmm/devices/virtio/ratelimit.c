/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <time.h>
#include <unistd.h>
#include <sys/timerfd.h>

#include "vmm/devices/virtio/ratelimit.h"

#define NS_PER_SEC 1000000000ULL

int ratelimit_config_check(const struct ratelimit_config *c, const char **ret_why)
{
	const char *why = NULL;

	if (c->bps > RATELIMIT_MAX)
		why = "bps";
	else if (c->ops > RATELIMIT_MAX)
		why = "ops";
	else if (c->bps_burst > RATELIMIT_MAX || (c->bps_burst && !c->bps))
		why = "bps_burst";
	else if (c->ops_burst > RATELIMIT_MAX || (c->ops_burst && !c->ops))
		why = "ops_burst";
	if (!why)
		return 0;
	*ret_why = why;
	return -EINVAL;
}

static void bucket_set(struct ratelimit_bucket *b, uint64_t rate, uint64_t burst)
{
	b->rate = rate;
	/* nano-units: one unit is 1e9 of them, and a rate of R units/s adds
	 * exactly R per nanosecond */
	b->cap = (__int128)rate * NS_PER_SEC / 1000 * RATELIMIT_BUCKET_MS;
	b->tokens = b->cap;
	b->burst = burst;
}

void ratelimit_set(struct ratelimit *rl, const struct ratelimit_config *c, uint64_t now_ns)
{
	rl->config = *c;
	bucket_set(&rl->bytes, c->bps, c->bps_burst);
	bucket_set(&rl->ops, c->ops, c->ops_burst);
	rl->last_ns = now_ns;
	if (rl->throttled)
		rl->throttled_ns += now_ns - rl->throttled_since;
	rl->throttled = false;
}

static void bucket_refill(struct ratelimit_bucket *b, uint64_t elapsed_ns)
{
	if (!b->rate)
		return;
	/* at most 2^64 ns * 2^40: far inside 127 bits */
	b->tokens += (__int128)elapsed_ns * b->rate;
	if (b->tokens > b->cap)
		b->tokens = b->cap;
}

/* ns until b is out of debt; 0 if it is not in debt. */
static uint64_t bucket_wait(const struct ratelimit_bucket *b)
{
	__int128 ns;

	if (!b->rate || b->tokens >= 0)
		return 0;
	ns = (-b->tokens + b->rate - 1) / b->rate;
	return ns > (__int128)UINT64_MAX ? UINT64_MAX : (uint64_t)ns;
}

uint64_t ratelimit_wait_ns(struct ratelimit *rl, uint64_t now_ns)
{
	uint64_t elapsed = now_ns > rl->last_ns ? now_ns - rl->last_ns : 0;
	uint64_t wb, wo, w;

	rl->last_ns += elapsed;
	bucket_refill(&rl->bytes, elapsed);
	bucket_refill(&rl->ops, elapsed);
	wb = bucket_wait(&rl->bytes);
	wo = bucket_wait(&rl->ops);
	w = wb > wo ? wb : wo;
	if (w && !rl->throttled) {
		rl->throttled = true;
		rl->throttled_since = now_ns;
	} else if (!w && rl->throttled) {
		rl->throttled = false;
		rl->throttled_ns += now_ns - rl->throttled_since;
	}
	return w;
}

static void bucket_charge(struct ratelimit_bucket *b, uint64_t n)
{
	uint64_t from_burst;

	if (!b->rate)
		return;
	from_burst = n < b->burst ? n : b->burst;
	b->burst -= from_burst;
	n -= from_burst;
	b->tokens -= (__int128)n * NS_PER_SEC;
}

void ratelimit_charge(struct ratelimit *rl, uint64_t bytes, uint64_t ops)
{
	bucket_charge(&rl->bytes, bytes);
	bucket_charge(&rl->ops, ops);
}

uint64_t ratelimit_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

int ratelimit_timer_open(void)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);

	return fd < 0 ? -errno : fd;
}

int ratelimit_timer_arm(int fd, uint64_t ns)
{
	struct itimerspec its = {
		.it_value = { .tv_sec = (time_t)(ns / NS_PER_SEC), .tv_nsec = (long)(ns % NS_PER_SEC) },
	};

	if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
		its.it_value.tv_nsec = 1;  /* all zero would disarm it */
	return timerfd_settime(fd, 0, &its, NULL) < 0 ? -errno : 0;
}

void ratelimit_timer_clear(int fd)
{
	uint64_t v;

	/* EAGAIN: it had not fired (a resume ahead of time); nothing to clear */
	if (read(fd, &v, sizeof(v)) < 0) {
	}
}
