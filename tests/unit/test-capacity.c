/* SPDX-License-Identifier: MIT */
/* Capacity admission and boot-storm control: every refusal and its
 * message, storms racing for the last slots against a reference model,
 * lowering limits then draining, FIFO order and the start-rate clock. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <string.h>

#include "daemon/capacity.h"
#include "tests/unit/check.h"

#define MSG_EQ(got, want) do { \
	if (strcmp((got), (want))) { \
		fprintf(stderr, "%s:%d: message\n  got:  %s\n  want: %s\n", \
		        __FILE__, __LINE__, (got), (want)); \
		check_failures++; \
	} \
} while (0)

static char err[512];

/* Deterministic xorshift so every run sees the same orders. */
static uint64_t rng_state;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

static void base_limits(struct cap_limits *l)
{
	cap_limits_init(l);
	l->host_mem_mib = 16384 + 512;     /* auto budget: 16384 */
	l->host_cpus = 4;
	l->vmm_overhead_mib = 0;
}

static struct cap_request req(uint32_t uid, uint64_t mem, uint64_t vcpus)
{
	struct cap_request r = { .uid = uid, .mem_mib = mem, .vcpus = vcpus };

	return r;
}

static struct cap_request breq(uint32_t uid, uint64_t mem, uint64_t vcpus)
{
	struct cap_request r = req(uid, mem, vcpus);

	r.balloon = true;
	return r;
}

static void set_ok(struct cap_limits *l, const char *k, const char *v)
{
	int r = cap_limits_set(l, k, v, err, sizeof(err));

	if (r) {
		fprintf(stderr, "set %s=%s: %s\n", k, v, err);
		check_failures++;
	}
}

static void test_parse(void)
{
	struct cap_limits l;

	base_limits(&l);
	set_ok(&l, "max_vms", "10");
	CHECK_EQ(l.max_vms, 10);
	set_ok(&l, "max_vms", "unlimited");
	CHECK_EQ(l.max_vms, 0);
	set_ok(&l, "memory_budget", "16G");
	CHECK_EQ(l.memory_budget_mib, 16384);
	set_ok(&l, "memory_budget", "auto");
	CHECK_EQ(l.memory_budget_mib, 0);
	CHECK_EQ(cap_limits_mem_mib(&l), 16384);
	set_ok(&l, "memory_reserved", "1048576K");
	CHECK_EQ(l.memory_reserved_mib, 1024);
	CHECK_EQ(cap_limits_mem_mib(&l), 15872);
	set_ok(&l, "vmm_overhead", "48MiB");
	CHECK_EQ(l.vmm_overhead_mib, 48);
	set_ok(&l, "memory_overcommit", "1.5");
	CHECK(l.memory_overcommit == 1.5);
	CHECK_EQ(cap_limits_mem_mib(&l), 23808);
	set_ok(&l, "vcpu_oversubscription", "2");
	CHECK_EQ(cap_limits_vcpus(&l), 8);
	set_ok(&l, "start_rate", "2.5");
	CHECK(l.start_rate == 2.5);
	set_ok(&l, "start_burst", "3");
	set_ok(&l, "max_concurrent_starts", "8");
	CHECK_EQ(l.max_concurrent_starts, 8);
	set_ok(&l, "owner.1000.max_vms", "2");
	set_ok(&l, "owner.1000.max_mem", "1G");
	set_ok(&l, "owner.default.max_vcpus", "16");
	CHECK_EQ(l.nowners, 1);
	CHECK_EQ(l.owners[0].max_vms, 2);
	CHECK_EQ(l.owners[0].max_mem_mib, 1024);
	CHECK_EQ(l.owner_default.max_vcpus, 16);
	set_ok(&l, "pool.licence", "5");
	CHECK_EQ(l.npools, 1);
	CHECK_EQ(l.pools[0].max, 5);

	CHECK_EQ(cap_limits_set(&l, "max_vm", "1", err, sizeof(err)), -ENOENT);
	CHECK(!strncmp(err, "unknown limit 'max_vm' (known: max_vms,", 39));
	CHECK_EQ(cap_limits_set(&l, "max_vms", "ten", err, sizeof(err)), -EINVAL);
	MSG_EQ(err, "max_vms: 'ten' is not valid: expected a whole number, "
	       "0 or 'unlimited' for no limit");
	CHECK_EQ(cap_limits_set(&l, "max_vms", "-1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "max_vms", "12x", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "memory_overcommit", "0", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "memory_overcommit", "nan", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "memory_overcommit", "1001", err, sizeof(err)), -EINVAL);
	/* vCPUs oversubscribe to 1e6: 8,000 1-vCPU VMs on 2 CPUs need 4000 */
	CHECK_EQ(cap_limits_set(&l, "vcpu_oversubscription", "1000001", err, sizeof(err)), -EINVAL);
	MSG_EQ(err, "vcpu_oversubscription: '1000001' is not valid: expected a number "
	       "greater than 0, at most 1000000");
	CHECK_EQ(cap_limits_set(&l, "memory_budget", "1500K", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "start_burst", "0", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "pool.Bad", "1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "owner.x.max_vms", "1", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_set(&l, "owner.1000.max_disks", "1", err, sizeof(err)), -EINVAL);
	MSG_EQ(err, "owner.1000.max_disks: unknown field 'max_disks' (max_vms, max_mem, max_vcpus)");
	CHECK_EQ(l.max_vms, 0);                 /* failures changed nothing */
	CHECK(l.memory_overcommit == 1.5);
	set_ok(&l, "vcpu_oversubscription", "4000");
	l.host_cpus = 2;
	CHECK_EQ(cap_limits_vcpus(&l), 8000);
	/* the VMs the limits admit: the least of max_vms, memory, vCPUs */
	l.memory_budget_mib = 1000;
	l.vmm_overhead_mib = 4;
	CHECK_EQ(cap_limits_vms(&l, 16, 1), 75);        /* 1500 MiB / 20 */
	l.memory_overcommit = 1000;
	CHECK_EQ(cap_limits_vms(&l, 16, 1), 8000);      /* vCPUs bind */
	l.max_vms = 10;
	CHECK_EQ(cap_limits_vms(&l, 16, 1), 10);
	l.max_vms = 0;
	l.memory_budget_mib = 0;
	l.memory_overcommit = 1.5;
	set_ok(&l, "vcpu_oversubscription", "2");

	CHECK_EQ(cap_limits_parse_line(&l, "  max_vms = 7 ", err, sizeof(err)), 0);
	CHECK_EQ(l.max_vms, 7);
	CHECK_EQ(cap_limits_parse_line(&l, "pool gpu max 2", err, sizeof(err)), 0);
	CHECK_EQ(l.npools, 2);
	CHECK_EQ(cap_limits_parse_line(&l, "pool gpu 2", err, sizeof(err)), -EINVAL);
	CHECK_EQ(cap_limits_parse_line(&l, "state_dir = /var/lib/mvm", err, sizeof(err)), 1);
	CHECK_EQ(cap_limits_parse_line(&l, "max_vms = lots", err, sizeof(err)), -EINVAL);
	set_ok(&l, "pool.licence", "none");
	CHECK_EQ(l.npools, 1);
	CHECK(!strcmp(l.pools[0].name, "gpu"));
}

static void test_host_defaults(void)
{
	struct cap_limits l;

	cap_limits_init(&l);
	CHECK_EQ(cap_host_defaults(&l), 0);
	CHECK(l.host_mem_mib > 0);
	CHECK(l.host_cpus >= 1);
	CHECK_EQ(cap_limits_mem_mib(&l), l.host_mem_mib - 512);
	CHECK_EQ(cap_limits_vcpus(&l), l.host_cpus * 4);
}

/* Admit n identical requests that must all fit. */
static void fill(struct cap *c, struct cap_resv *rv, int n, struct cap_request r)
{
	int i;

	for (i = 0; i < n; i++)
		CHECK_EQ(cap_admit(c, &r, &rv[i], err, sizeof(err)), 0);
}

static void release_all(struct cap *c, struct cap_resv *rv, int n)
{
	int i;

	for (i = 0; i < n; i++)
		cap_release(c, &rv[i]);
}

static void check_drained(const struct cap *c)
{
	struct cap_usage u;
	size_t i;

	cap_usage_get(c, &u);
	CHECK_EQ(u.vms, 0);
	CHECK_EQ(u.mem_mib, 0);
	CHECK_EQ(u.vcpus, 0);
	for (i = 0; i < u.npools; i++)
		CHECK_EQ(u.pools[i].used, 0);
	for (i = 0; i < c->owners_cap; i++)
		if (c->owners[i].live) {
			CHECK_EQ(c->owners[i].vms, 0);
			CHECK_EQ(c->owners[i].mem_mib, 0);
			CHECK_EQ(c->owners[i].vcpus, 0);
		}
}

static void test_refusals(void)
{
	struct cap_limits l;
	struct cap c;
	struct cap_resv rv[16] = { 0 }, one = { 0 };
	struct cap_request r;
	struct cap_usage before, after;

	base_limits(&l);
	l.max_vms = 10;
	set_ok(&l, "pool.licence", "5");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);

	fill(&c, rv, 10, req(1, 16, 1));
	r = req(1, 16, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "vms: asked 1, 0 left of 10 (max_vms)");
	CHECK(!one.held);
	release_all(&c, rv, 10);

	fill(&c, rv, 3, req(1, 5120, 1));
	r = req(1, 4096, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "memory: asked 4096 MiB, 1024 MiB left of 16384 MiB (overcommit 1.0)");
	release_all(&c, rv, 3);

	l.vmm_overhead_mib = 32;
	l.memory_overcommit = 1.25;
	CHECK_EQ(cap_set_limits(&c, &l, err, sizeof(err)), 0);
	fill(&c, rv, 1, breq(1, 19000, 1));
	r = breq(1, 1500, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "memory: asked 1500 MiB + 32 MiB VMM overhead, 1448 MiB left of "
	       "20480 MiB (overcommit 1.25)");
	r.mem_mib = 1416;                       /* exactly fills with overhead */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	cap_release(&c, &one);
	release_all(&c, rv, 1);

	/* Overcommit is only for VMs with a balloon: one without never fits
	 * above the physical budget, and a balloon VM's share counts 1/1.25
	 * against it. */
	r = req(1, 16384, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "memory: asked 16384 MiB + 32 MiB VMM overhead, more than the limit "
	       "of 16384 MiB (physical budget: the VM has no balloon, and "
	       "memory_overcommit 1.25 applies only to VMs with one, whose memory can "
	       "be reclaimed; create it with --balloon to share the overcommit); it can "
	       "never fit");
	r.balloon = true;
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	cap_release(&c, &one);
	fill(&c, rv, 1, breq(1, 10208, 1));     /* 10240 / 1.25 = 8192 physical */
	r = req(1, 8161, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "memory: asked 8161 MiB + 32 MiB VMM overhead, 8192 MiB left of "
	       "16384 MiB (physical budget: the VM has no balloon, and "
	       "memory_overcommit 1.25 applies only to VMs with one, whose memory can "
	       "be reclaimed; create it with --balloon to share the overcommit)");
	r.mem_mib = 8160;                       /* the rest, at full size */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	CHECK_EQ(c.mem_fixed_mib, 8192);
	/* the host is physically full: a balloon VM is refused too, in its
	 * own (overcommitted) units */
	r = breq(1, 1, 1);
	CHECK_EQ(cap_admit(&c, &r, &rv[1], err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "memory: asked 1 MiB + 32 MiB VMM overhead, 0 MiB left of "
	       "20480 MiB (overcommit 1.25)");
	CHECK(!rv[1].held);
	cap_release(&c, &one);
	release_all(&c, rv, 1);
	CHECK_EQ(c.mem_fixed_mib, 0);
	CHECK_EQ(c.mem_mib, 0);
	l.vmm_overhead_mib = 0;
	l.memory_overcommit = 1.0;

	l.vcpu_oversubscription = 2.0;
	CHECK_EQ(cap_set_limits(&c, &l, err, sizeof(err)), 0);
	fill(&c, rv, 3, req(1, 16, 2));
	r = req(1, 16, 4);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "vcpus: asked 4, 2 left of 8 (4 host CPUs x oversubscription 2.0)");
	release_all(&c, rv, 3);

	r = req(1, 16, 1);
	r.npools = 1;
	r.pools[0] = "licence";
	fill(&c, rv, 5, r);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "pool licence: asked 1, 0 left of 5");
	release_all(&c, rv, 5);
	r.pools[0] = "gpu";
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOENT);
	MSG_EQ(err, "pool gpu: not defined (add 'pool gpu max N' to the config or run "
	       "'mvmctl host set pool.gpu=N')");
	r.npools = 2;
	r.pools[0] = r.pools[1] = "licence";
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EINVAL);
	r = req(1, 16, 0);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EINVAL);

	set_ok(&l, "owner.1000.max_vms", "2");
	set_ok(&l, "owner.1000.max_mem", "2048");
	set_ok(&l, "owner.1000.max_vcpus", "3");
	set_ok(&l, "owner.default.max_vms", "1");
	CHECK_EQ(cap_set_limits(&c, &l, err, sizeof(err)), 0);
	fill(&c, rv, 2, req(1000, 512, 1));
	r = req(1000, 512, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "owner 1000 vms: asked 1, 0 left of 2 (owner quota)");
	release_all(&c, rv, 2);
	fill(&c, rv, 1, req(1000, 1536, 1));
	r = req(1000, 1024, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "owner 1000 memory: asked 1024 MiB, 512 MiB left of 2048 MiB (owner quota)");
	r = req(1000, 16, 3);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "owner 1000 vcpus: asked 3, 2 left of 3 (owner quota)");
	release_all(&c, rv, 1);
	fill(&c, rv, 1, req(2000, 16, 1));      /* the default quota: 1 VM */
	r = req(2000, 16, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "owner 2000 vms: asked 1, 0 left of 1 (owner quota)");
	release_all(&c, rv, 1);

	/* All or nothing: a refusal at the last check leaves every sum alone. */
	fill(&c, rv, 1, req(1000, 1536, 1));
	cap_usage_get(&c, &before);
	r = req(1000, 1024, 1);
	r.npools = 1;
	r.pools[0] = "licence";
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	cap_usage_get(&c, &after);
	CHECK(!memcmp(&before, &after, sizeof(before)));
	/* A held token cannot be admitted over, and releasing twice is a no-op. */
	CHECK_EQ(cap_admit(&c, &r, &rv[0], err, sizeof(err)), -EBUSY);
	cap_release(&c, &rv[0]);
	cap_release(&c, &rv[0]);
	check_drained(&c);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 0);
	cap_free(&c);
}

/* ---- storms: 500 requests for the last 10 slots of each kind ------------- */

enum kind { K_VMS, K_MEM, K_VCPUS, K_POOL, K_OWNER, K_NKINDS };

#define STORM 500
#define PREFILL 20

static void storm_setup(enum kind k, struct cap_limits *l)
{
	base_limits(l);
	l->host_cpus = 1000;                    /* roomy unless the kind says */
	l->host_mem_mib = 1 << 30;
	set_ok(l, "pool.licence", "100000");
	switch (k) {
	case K_VMS:   l->max_vms = PREFILL + 10; break;
	case K_MEM:   l->memory_budget_mib = PREFILL * 64 + 10 * 256; break;
	case K_VCPUS: l->host_cpus = 5; l->vcpu_oversubscription = 10.0; break; /* 50 */
	case K_POOL:  set_ok(l, "pool.licence", "30"); break;
	case K_OWNER: set_ok(l, "owner.4242.max_vms", "30"); break;
	case K_NKINDS: break;
	}
}

/* Every storm request takes one slot of the limited kind. */
static struct cap_request storm_req(enum kind k, uint64_t i)
{
	struct cap_request r = req((uint32_t)(i % 7), 64, 1);

	switch (k) {
	case K_MEM:   r.mem_mib = 256; break;
	case K_VCPUS: r.vcpus = 2; break;       /* prefill uses 20 x 1.5 of 50 */
	case K_OWNER: r.uid = 4242; break;
	default: break;
	}
	r.npools = 1;
	r.pools[0] = "licence";
	return r;
}

static void shuffle(int *v, int n)
{
	int i, j, t;

	for (i = n - 1; i > 0; i--) {
		j = (int)(rng() % (uint64_t)(i + 1));
		t = v[i], v[i] = v[j], v[j] = t;
	}
}

static void storm_round(enum kind k)
{
	static struct cap_resv rv[PREFILL + STORM];
	struct cap_limits l;
	struct cap_request r;
	struct cap c;
	int order[STORM], i, admitted = 0, refused = 0;

	storm_setup(k, &l);
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	memset(rv, 0, sizeof(rv));
	for (i = 0; i < PREFILL; i++) {
		r = storm_req(k, (uint64_t)i);
		r.mem_mib = 64;
		r.vcpus = k == K_VCPUS ? (uint64_t)(i % 2 ? 2 : 1) : 1;
		CHECK_EQ(cap_admit(&c, &r, &rv[i], err, sizeof(err)), 0);
	}
	for (i = 0; i < STORM; i++)
		order[i] = i;
	shuffle(order, STORM);
	for (i = 0; i < STORM; i++) {
		r = storm_req(k, (uint64_t)order[i]);
		if (cap_admit(&c, &r, &rv[PREFILL + order[i]], err, sizeof(err)) == 0)
			admitted++;
		else
			refused++;
	}
	CHECK_EQ(admitted, 10);
	CHECK_EQ(refused, STORM - 10);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 0);
	shuffle(order, STORM);
	for (i = 0; i < STORM; i++)
		cap_release(&c, &rv[PREFILL + order[i]]);
	release_all(&c, rv, PREFILL);
	check_drained(&c);
	cap_free(&c);
}

/*
 * Mixed requests with interleaved releases against a reference model:
 * every decision must equal the model's, and no sum may pass its limit.
 */
struct model {
	uint64_t vms, mem, vcpus, pool[2], owner_vms[4], owner_mem[4];
};

static bool model_fits(const struct model *m, const struct cap_limits *l,
                       const struct cap_request *r)
{
	size_t i;

	if (m->vms + 1 > l->max_vms || m->mem + r->mem_mib > cap_limits_mem_mib(l) ||
	    m->vcpus + r->vcpus > cap_limits_vcpus(l))
		return false;
	for (i = 0; i < r->npools; i++)
		if (m->pool[r->pools[i][0] == 'b'] + 1 > l->pools[r->pools[i][0] == 'b'].max)
			return false;
	return m->owner_vms[r->uid] + 1 <= l->owners[r->uid].max_vms &&
	       m->owner_mem[r->uid] + r->mem_mib <= l->owners[r->uid].max_mem_mib;
}

static void model_apply(struct model *m, const struct cap_request *r, int sign)
{
	size_t i;

	m->vms += (uint64_t)sign;
	m->mem += (uint64_t)sign * r->mem_mib;
	m->vcpus += (uint64_t)sign * r->vcpus;
	for (i = 0; i < r->npools; i++)
		m->pool[r->pools[i][0] == 'b'] += (uint64_t)sign;
	m->owner_vms[r->uid] += (uint64_t)sign;
	m->owner_mem[r->uid] += (uint64_t)sign * r->mem_mib;
}

static void mixed_round(void)
{
	static struct cap_resv rv[STORM];
	static struct cap_request rq[STORM];
	static const char *names[] = { "alpha", "beta" };
	struct model m = { 0 };
	struct cap_limits l;
	struct cap_usage u;
	struct cap c;
	int i, j, agree = 0;

	base_limits(&l);
	l.max_vms = 60;
	l.memory_budget_mib = 6000;
	l.vcpu_oversubscription = 20.0;         /* 80 */
	set_ok(&l, "pool.alpha", "25");
	set_ok(&l, "pool.beta", "15");
	for (i = 0; i < 4; i++) {
		char k[32], v[16];

		snprintf(k, sizeof(k), "owner.%d.max_vms", i);
		snprintf(v, sizeof(v), "%d", 10 + 5 * i);
		set_ok(&l, k, v);
		snprintf(k, sizeof(k), "owner.%d.max_mem", i);
		snprintf(v, sizeof(v), "%d", 1500 + 300 * i);
		set_ok(&l, k, v);
	}
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	memset(rv, 0, sizeof(rv));
	for (i = 0; i < STORM; i++) {
		rq[i] = req((uint32_t)(rng() % 4), 32 << (rng() % 4), 1 + rng() % 3);
		rq[i].npools = rng() % 3;
		rq[i].pools[0] = names[rng() % 2];
		rq[i].pools[1] = rq[i].pools[0] == names[0] ? names[1] : names[0];
		bool fits = model_fits(&m, &l, &rq[i]);
		int r = cap_admit(&c, &rq[i], &rv[i], err, sizeof(err));

		agree += (r == 0) == fits;
		if (r == 0)
			model_apply(&m, &rq[i], 1);
		/* Sometimes a running VM goes away. */
		if (rng() % 3 == 0) {
			j = (int)(rng() % (uint64_t)(i + 1));
			if (rv[j].held)
				model_apply(&m, &rq[j], -1);
			cap_release(&c, &rv[j]);
		}
		cap_usage_get(&c, &u);
		CHECK(u.vms <= 60 && u.mem_mib <= 6000 && u.vcpus <= 80);
		CHECK(u.vms == m.vms && u.mem_mib == m.mem && u.vcpus == m.vcpus);
	}
	CHECK_EQ(agree, STORM);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 0);
	for (i = 0; i < STORM; i++)
		cap_release(&c, &rv[i]);
	check_drained(&c);
	cap_free(&c);
}

/*
 * A request larger than a limit itself is -ENOSPC ("never"), told apart
 * from one that only finds the limit used up (-EAGAIN, "not now"), even
 * when a smaller limit is full at the same time.
 */
static void test_never_fits(void)
{
	struct cap_limits l;
	struct cap c;
	struct cap_resv rv[4] = { 0 }, one = { 0 };
	struct cap_request r;

	base_limits(&l);
	l.max_vms = 2;
	l.vmm_overhead_mib = 32;
	set_ok(&l, "pool.lic", "1");
	set_ok(&l, "pool.off", "0");
	set_ok(&l, "owner.1000.max_mem", "1024");
	set_ok(&l, "owner.1000.max_vcpus", "2");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);

	r = req(1, 16384, 1);                   /* 16384 + 32 > 16384 */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "memory: asked 16384 MiB + 32 MiB VMM overhead, more than the limit of "
	       "16384 MiB (overcommit 1.0); it can never fit");
	r = req(1, 16352, 1);                   /* exactly the limit */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	cap_release(&c, &one);
	r = req(1, 16, 17);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "vcpus: asked 17, more than the limit of 16 (4 host CPUs x "
	       "oversubscription 4.0); it can never fit");
	r = req(1, 16, 1);
	r.npools = 1;
	r.pools[0] = "off";
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "pool off: asked 1, more than the limit of 0; it can never fit");
	r = req(1000, 1000, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "owner 1000 memory: asked 1000 MiB + 32 MiB VMM overhead, more than the "
	       "limit of 1024 MiB (owner quota); it can never fit");
	r = req(1000, 16, 3);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	MSG_EQ(err, "owner 1000 vcpus: asked 3, more than the limit of 2 (owner quota); "
	       "it can never fit");

	/* max_vms full (not now) and a request too large (never): never wins. */
	fill(&c, rv, 2, req(1, 16, 1));
	r = req(1, 20000, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -ENOSPC);
	r = req(1, 16, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "vms: asked 1, 0 left of 2 (max_vms)");
	release_all(&c, rv, 2);
	/* A pool of one, held: not now; released: it fits. */
	r.npools = 1;
	r.pools[0] = "lic";
	fill(&c, rv, 1, r);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "pool lic: asked 1, 0 left of 1");
	release_all(&c, rv, 1);
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	cap_release(&c, &one);
	check_drained(&c);
	cap_free(&c);
}

static void test_storms(void)
{
	int round, k;

	rng_state = 0x9e3779b97f4a7c15ULL;
	for (round = 0; round < 20; round++) {
		for (k = 0; k < K_NKINDS; k++)
			storm_round((enum kind)k);
		mixed_round();
	}
}

/* ---- lowering limits at run time ------------------------------------------ */

static void test_lower_then_drain(void)
{
	struct cap_limits l;
	struct cap_resv rv[10] = { 0 }, one = { 0 };
	struct cap_request r = req(1, 100, 1);
	struct cap c;
	int i;

	base_limits(&l);
	l.max_vms = 10;
	set_ok(&l, "pool.licence", "10");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	r.npools = 1;
	r.pools[0] = "licence";
	fill(&c, rv, 10, r);

	set_ok(&l, "max_vms", "5");
	set_ok(&l, "memory_budget", "500");
	set_ok(&l, "pool.licence", "none");     /* dropped while 10 VMs hold it */
	CHECK_EQ(cap_set_limits(&c, &l, err, sizeof(err)), 0);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 3);
	MSG_EQ(err, "vms: 10 used of 5 (max_vms); memory: 1000 MiB used of 500 MiB; "
	       "pool licence: 10 used, pool no longer defined");
	r.npools = 0;
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	MSG_EQ(err, "vms: asked 1, 0 left of 5 (max_vms)");

	for (i = 0; i < 5; i++)
		cap_release(&c, &rv[i]);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 1);   /* the pool still */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), -EAGAIN);
	for (i = 5; i < 10; i++)
		cap_release(&c, &rv[i]);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 0);
	struct cap_usage u;
	cap_usage_get(&c, &u);
	CHECK_EQ(u.npools, 0);                  /* the dropped pool is gone */
	CHECK_EQ(cap_admit(&c, &r, &one, err, sizeof(err)), 0);
	cap_release(&c, &one);
	check_drained(&c);

	/* Re-adoption may exceed every limit and name an unknown pool. */
	r.npools = 1;
	r.pools[0] = "old";
	r.mem_mib = 4000;
	CHECK_EQ(cap_reserve_force(&c, &r, &one, err, sizeof(err)), 0);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 2);
	cap_release(&c, &one);
	check_drained(&c);
	cap_free(&c);
}

/* ---- boot storms --------------------------------------------------------- */

static void test_fifo(void)
{
	struct cap_limits l;
	struct cap_qnode n[5] = { { 0 } };
	struct cap c;
	int i;

	base_limits(&l);
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	CHECK(!cap_queue_peek(&c));
	for (i = 0; i < 5; i++)
		cap_queue_push(&c, &n[i], 100 + i);
	CHECK_EQ(cap_queue_len(&c), 5);
	cap_queue_remove(&c, &n[2]);
	cap_queue_remove(&c, &n[2]);            /* not queued any more: no-op */
	CHECK(!cap_queue_linked(&n[2]));
	CHECK_EQ(cap_queue_len(&c), 4);
	CHECK_EQ(cap_queue_peek(&c)->vm_id, 100);
	CHECK_EQ(cap_queue_pop(&c)->vm_id, 100);
	cap_queue_push(&c, &n[2], 102);
	CHECK_EQ(cap_queue_pop(&c)->vm_id, 101);
	CHECK_EQ(cap_queue_pop(&c)->vm_id, 103);
	CHECK_EQ(cap_queue_pop(&c)->vm_id, 104);
	CHECK_EQ(cap_queue_pop(&c)->vm_id, 102);
	CHECK(!cap_queue_pop(&c));
	CHECK_EQ(cap_queue_len(&c), 0);
	cap_free(&c);
}

#define MS (UINT64_C(1000000))

static void test_rate(void)
{
	struct cap_limits l;
	struct cap c;
	uint64_t t = 5000 * MS;
	int i;

	base_limits(&l);
	set_ok(&l, "start_rate", "10");
	set_ok(&l, "start_burst", "3");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	for (i = 0; i < 3; i++)
		CHECK_EQ(cap_start_try(&c, t), 0);
	CHECK_EQ(cap_start_try(&c, t), -EAGAIN);
	CHECK_EQ(cap_next_wakeup_ns(&c, t), t + 100 * MS);
	cap_start_explain(&c, -EAGAIN, t, err, sizeof(err));
	MSG_EQ(err, "starts: rate 10.0/s with burst 3 allows the next in 100 ms (start_rate)");
	CHECK_EQ(cap_start_try(&c, t + 100 * MS - 1), -EAGAIN);
	CHECK_EQ(cap_start_try(&c, t + 100 * MS), 0);
	CHECK_EQ(cap_start_try(&c, t + 150 * MS), -EAGAIN);
	CHECK_EQ(cap_start_try(&c, t + 200 * MS), 0);
	/* After a long idle the bucket holds the burst, not more. */
	t += 60000 * MS;
	CHECK_EQ(cap_next_wakeup_ns(&c, t), t);
	for (i = 0; i < 3; i++)
		CHECK_EQ(cap_start_try(&c, t), 0);
	CHECK_EQ(cap_start_try(&c, t), -EAGAIN);
	/* Steady state: exactly one start per interval. */
	for (i = 1; i <= 50; i++) {
		CHECK_EQ(cap_start_try(&c, t + (uint64_t)i * 100 * MS - 1), -EAGAIN);
		CHECK_EQ(cap_start_try(&c, t + (uint64_t)i * 100 * MS), 0);
	}
	for (i = 0; i < 3 + 2 + 3 + 50; i++)
		CHECK_EQ(cap_start_done(&c), 0);
	CHECK_EQ(cap_start_done(&c), -EALREADY);
	cap_free(&c);
}

/*
 * 1000 queued starts against max_concurrent_starts=8 and 50 starts/s
 * burst 8, on a fake clock: starts go in FIFO order, never more than 8 at
 * once, and the drain takes the time the rate implies.
 */
static void test_boot_storm(void)
{
	enum { N = 1000, MAXC = 8 };
	static struct cap_qnode node[N];
	static uint64_t done_at[N];
	struct cap_limits l;
	struct cap c;
	uint64_t now = 0;
	int64_t next_expected = 0;
	int started = 0, finished = 0, peak = 0, i, r;

	base_limits(&l);
	set_ok(&l, "max_concurrent_starts", "8");
	set_ok(&l, "start_rate", "50");
	set_ok(&l, "start_burst", "8");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	memset(node, 0, sizeof(node));
	for (i = 0; i < N; i++)
		cap_queue_push(&c, &node[i], i);
	while (finished < N) {
		for (i = 0; i < started; i++)
			if (done_at[i] && done_at[i] <= now) {
				CHECK_EQ(cap_start_done(&c), 0);
				done_at[i] = 0;
				finished++;
			}
		while (cap_queue_peek(&c) && (r = cap_start_try(&c, now)) == 0) {
			struct cap_qnode *n = cap_queue_pop(&c);

			CHECK_EQ(n->vm_id, next_expected);
			next_expected++;
			/* first guest output after 10..400 ms */
			done_at[started++] = now + (10 + rng() % 391) * MS;
		}
		if ((int)c.starting > peak)
			peak = (int)c.starting;
		CHECK(c.starting <= MAXC);
		now += MS;
	}
	CHECK_EQ(peak, MAXC);
	CHECK_EQ(started, N);
	CHECK_EQ(c.starting, 0);
	/* 8 at once, then 50/s: the last start cannot come before ~19.8 s. */
	CHECK(now >= (N - 8) * 20 * MS);
	printf("boot storm: %d starts drained in %.2f s (fake clock), peak %d concurrent\n",
	       N, (double)now / 1e9, peak);
	cap_start_explain(&c, -EBUSY, now, err, sizeof(err));
	cap_free(&c);
}

static void test_concurrency_limit(void)
{
	struct cap_limits l;
	struct cap c;

	base_limits(&l);
	set_ok(&l, "max_concurrent_starts", "2");
	CHECK_EQ(cap_init(&c, &l, err, sizeof(err)), 0);
	CHECK_EQ(cap_start_try(&c, 0), 0);
	CHECK_EQ(cap_start_try(&c, 0), 0);
	CHECK_EQ(cap_start_try(&c, 0), -EBUSY);
	cap_start_explain(&c, -EBUSY, 0, err, sizeof(err));
	MSG_EQ(err, "starts: 2 starting, 0 left of 2 (max_concurrent_starts)");
	/* Lowered under use: reported over limit, no new start until drained. */
	set_ok(&l, "max_concurrent_starts", "1");
	CHECK_EQ(cap_set_limits(&c, &l, err, sizeof(err)), 0);
	CHECK_EQ(cap_over_limit(&c, err, sizeof(err)), 1);
	CHECK_EQ(cap_start_done(&c), 0);
	CHECK_EQ(cap_start_try(&c, 0), -EBUSY);
	CHECK_EQ(cap_start_done(&c), 0);
	CHECK_EQ(cap_start_try(&c, 0), 0);
	cap_free(&c);
}

int main(void)
{
	test_parse();
	test_host_defaults();
	test_refusals();
	test_never_fits();
	test_storms();
	test_lower_then_drain();
	test_fifo();
	test_rate();
	test_boot_storm();
	test_concurrency_limit();
	return check_result("test-capacity");
}
