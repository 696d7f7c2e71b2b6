/* SPDX-License-Identifier: MIT */
/* Host capacity admission and boot-storm control; see capacity.h. */
#include "daemon/capacity.h"
#include "util/util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Bounds that keep budget x ratio far from overflowing a double or u64. */
#define CAP_MAX_MIB   (UINT64_C(1) << 40)
#define CAP_MAX_RATIO 1000.0
/* vCPUs oversubscribe much further than memory overcommits: an idle
 * 1-vCPU VM costs a host almost no CPU (issue 13: 4,000 idle VMs on 2
 * cores used 4.5% of one), so memory or max_vms is what should bind;
 * 2^20 CPUs x 1e6 stays far inside a u64 */
#define CAP_MAX_OVERSUB 1000000.0
#define CAP_MAX_CPUS  (UINT64_C(1) << 20)
#define NS_PER_S      UINT64_C(1000000000)

static uint64_t left_of(uint64_t limit, uint64_t used)
{
	return limit > used ? limit - used : 0;
}

/* ---- limits --------------------------------------------------------------- */

void cap_limits_init(struct cap_limits *l)
{
	memset(l, 0, sizeof(*l));
	l->memory_reserved_mib = CAP_DEFAULT_MEMORY_RESERVED_MIB;
	l->vmm_overhead_mib = CAP_DEFAULT_VMM_OVERHEAD_MIB;
	l->memory_overcommit = CAP_DEFAULT_OVERCOMMIT;
	l->host_cpus = 1;
	l->vcpu_oversubscription = CAP_DEFAULT_OVERSUBSCRIPTION;
	l->start_burst = CAP_DEFAULT_START_BURST;
}

int cap_host_defaults(struct cap_limits *l)
{
	char line[256];
	unsigned long long kib = 0;
	long cpus;
	FILE *f;

	f = fopen("/proc/meminfo", "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
			break;
	fclose(f);
	if (!kib)
		return -ENODATA;
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	if (cpus < 1)
		return -ENODATA;
	l->host_mem_mib = kib / 1024;
	l->host_cpus = (uint64_t)cpus;
	return 0;
}

uint64_t cap_limits_phys_mib(const struct cap_limits *l)
{
	uint64_t budget = l->memory_budget_mib;

	if (!budget)
		budget = left_of(l->host_mem_mib, l->memory_reserved_mib);
	return budget;
}

uint64_t cap_limits_mem_mib(const struct cap_limits *l)
{
	return (uint64_t)floor((double)cap_limits_phys_mib(l) * l->memory_overcommit);
}

uint64_t cap_limits_vcpus(const struct cap_limits *l)
{
	return (uint64_t)floor((double)l->host_cpus * l->vcpu_oversubscription);
}

uint64_t cap_limits_vms(const struct cap_limits *l, uint64_t mem_mib, uint64_t vcpus)
{
	uint64_t n = l->max_vms ? l->max_vms : UINT64_MAX;
	uint64_t by_mem = cap_limits_mem_mib(l) / (mem_mib + l->vmm_overhead_mib ?
	                                            mem_mib + l->vmm_overhead_mib : 1);
	uint64_t by_cpu = cap_limits_vcpus(l) / (vcpus ? vcpus : 1);

	if (by_mem < n)
		n = by_mem;
	return by_cpu < n ? by_cpu : n;
}

static bool pool_name_valid(const char *s)
{
	size_t n = strlen(s);

	if (n < 1 || n > CAP_POOL_NAME_MAX)
		return false;
	return strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") == n;
}

static bool ratio_valid(double v, double max)
{
	return isfinite(v) && v > 0 && v <= max;
}

static int limits_check(const struct cap_limits *l, char *err, size_t errlen)
{
	size_t i, j;

	if (!ratio_valid(l->memory_overcommit, CAP_MAX_RATIO) ||
	    !ratio_valid(l->vcpu_oversubscription, CAP_MAX_OVERSUB)) {
		util_bprintf(err, errlen, "memory_overcommit must be in (0, %.0f] and "
		             "vcpu_oversubscription in (0, %.0f]", CAP_MAX_RATIO, CAP_MAX_OVERSUB);
		return -EINVAL;
	}
	if (!isfinite(l->start_rate) || l->start_rate < 0 || l->start_rate > 1e9) {
		util_bprintf(err, errlen, "start_rate must be in [0, 1e9]");
		return -EINVAL;
	}
	if (l->host_cpus < 1 || l->start_burst < 1) {
		util_bprintf(err, errlen, "host_cpus and start_burst must be at least 1");
		return -EINVAL;
	}
	if (l->host_cpus > CAP_MAX_CPUS || l->host_mem_mib > CAP_MAX_MIB ||
	          l->memory_budget_mib > CAP_MAX_MIB || l->memory_reserved_mib > CAP_MAX_MIB ||
	          l->vmm_overhead_mib > CAP_MAX_MIB) {
		util_bprintf(err, errlen, "host_cpus or a memory size is out of range");
		return -ERANGE;
	}
	if (l->npools > CAP_MAX_POOLS || l->nowners > CAP_MAX_OWNER_QUOTAS) {
		util_bprintf(err, errlen, "too many pools or owner quotas");
		return -EINVAL;
	}
	for (i = 0; i < l->npools; i++) {
		if (!pool_name_valid(l->pools[i].name)) {
			util_bprintf(err, errlen, "pool name '%s' is not [a-z0-9_-]{1,32}",
			                   l->pools[i].name);
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (!strcmp(l->pools[i].name, l->pools[j].name)) {
				util_bprintf(err, errlen, "pool %s defined twice", l->pools[i].name);
				return -EINVAL;
			}
	}
	return 0;
}

/* ---- parsing KEY=VALUE ------------------------------------------------------ */

enum key_kind {
	K_COUNT,        /* whole number; 0 or "unlimited" = unlimited */
	K_SIZE,         /* MiB, or with a suffix */
	K_BUDGET,       /* "auto" (0) or a size */
	K_RATIO,        /* (0, 1000] */
	K_OVERSUB,      /* (0, 1000000] */
	K_RATE,         /* [0, 1e9]; 0 or "unlimited" = unlimited */
	K_POSITIVE,     /* whole number >= 1 */
};

struct key_desc {
	const char *name;
	enum key_kind kind;
	size_t off;
};

#define KEY(n, k) { #n, k, offsetof(struct cap_limits, n) }
#define KEY_AS(s, n, k) { s, k, offsetof(struct cap_limits, n) }
static const struct key_desc keys[] = {
	KEY(max_vms, K_COUNT),
	KEY_AS("memory_budget", memory_budget_mib, K_BUDGET),
	KEY_AS("memory_reserved", memory_reserved_mib, K_SIZE),
	KEY_AS("vmm_overhead", vmm_overhead_mib, K_SIZE),
	KEY(memory_overcommit, K_RATIO),
	KEY(host_cpus, K_POSITIVE),
	KEY(vcpu_oversubscription, K_OVERSUB),
	KEY(max_concurrent_starts, K_COUNT),
	KEY(start_rate, K_RATE),
	KEY(start_burst, K_POSITIVE),
};

static int parse_count(const char *s, bool unlimited_ok, uint64_t *ret)
{
	const char *end;
	uint64_t v;

	if (unlimited_ok && !strcmp(s, "unlimited")) {
		*ret = 0;
		return 0;
	}
	if (util_parse_u64_prefix(s, &v, &end) < 0 || *end)
		return -EINVAL;
	*ret = v;
	return 0;
}

/* A size (util_parse_size: MiB when no unit is given) that is a whole
 * number of MiB: "512", "512M", "4G", "1.5G", "1048576K". */
static int parse_size_mib(const char *s, uint64_t *ret)
{
	uint64_t b;
	int r = util_parse_size(s, 1 << 20, &b);

	if (r < 0)
		return r;
	if (b % (1 << 20))
		return -EINVAL;
	if ((b >> 20) > CAP_MAX_MIB)
		return -ERANGE;
	*ret = b >> 20;
	return 0;
}

static int parse_double(const char *s, double *ret)
{
	char *end;
	double v;

	if (!*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end || !isfinite(v))
		return -EINVAL;
	*ret = v;
	return 0;
}

static const char *kind_expect(enum key_kind k)
{
	switch (k) {
	case K_COUNT:    return "a whole number, 0 or 'unlimited' for no limit";
	case K_SIZE:     return "a size: MiB, or with a K/M/G/T suffix (1.5G, 2048K)";
	case K_BUDGET:   return "'auto' or a size: MiB, or with a K/M/G/T suffix";
	case K_RATIO:    return "a number greater than 0, at most 1000";
	case K_OVERSUB:  return "a number greater than 0, at most 1000000";
	case K_RATE:     return "starts per second (0 or 'unlimited' for no limit)";
	case K_POSITIVE: return "a whole number from 1 to 1048576";
	}
	return "?";
}

static int parse_value(enum key_kind k, const char *s, void *field)
{
	uint64_t *u = field;
	double *d = field;
	int r;

	switch (k) {
	case K_COUNT:
		return parse_count(s, true, u);
	case K_POSITIVE:
		r = parse_count(s, false, u);
		return r < 0 ? r : (*u >= 1 && *u <= CAP_MAX_CPUS ? 0 : -EINVAL);
	case K_SIZE:
		return parse_size_mib(s, u);
	case K_BUDGET:
		if (!strcmp(s, "auto")) {
			*u = 0;
			return 0;
		}
		return parse_size_mib(s, u);
	case K_RATIO:
	case K_OVERSUB:
		r = parse_double(s, d);
		return r < 0 ? r : (ratio_valid(*d, k == K_RATIO ? CAP_MAX_RATIO : CAP_MAX_OVERSUB) ?
		                    0 : -EINVAL);
	case K_RATE:
		if (!strcmp(s, "unlimited")) {
			*d = 0;
			return 0;
		}
		r = parse_double(s, d);
		return r < 0 ? r : (*d >= 0 && *d <= 1e9 ? 0 : -EINVAL);
	}
	return -EINVAL;
}

static int set_pool(struct cap_limits *l, const char *name, const char *value,
                          char *err, size_t errlen)
{
	struct cap_pool_limit *p = NULL;
	uint64_t max = 0;
	bool remove = !strcmp(value, "none");
	size_t i;

	if (!pool_name_valid(name)) {
		util_bprintf(err, errlen, "pool name '%s' is not [a-z0-9_-]{1,32}", name);
		return -EINVAL;
	}
	if (!remove && parse_count(value, false, &max) < 0) {
		util_bprintf(err, errlen, "pool %s: '%s' is not a whole number (or 'none' to remove)",
		                   name, value);
		return -EINVAL;
	}
	for (i = 0; i < l->npools; i++)
		if (!strcmp(l->pools[i].name, name))
			p = &l->pools[i];
	if (remove) {
		if (p)
			*p = l->pools[--l->npools];
		return 0;
	}
	if (!p) {
		if (l->npools == CAP_MAX_POOLS) {
			util_bprintf(err, errlen, "pool %s: at most %d pools", name, CAP_MAX_POOLS);
			return -ENOSPC;
		}
		p = &l->pools[l->npools++];
		snprintf(p->name, sizeof(p->name), "%s", name);
	}
	p->max = max;
	return 0;
}

static struct cap_owner_quota *owner_quota_slot(struct cap_limits *l, uint32_t uid,
                                                      bool create)
{
	struct cap_owner_quota *q;
	size_t i;

	for (i = 0; i < l->nowners; i++)
		if (l->owners[i].uid == uid)
			return &l->owners[i];
	if (!create || l->nowners == CAP_MAX_OWNER_QUOTAS)
		return NULL;
	q = &l->owners[l->nowners++];
	memset(q, 0, sizeof(*q));
	q->uid = uid;
	return q;
}

/* owner.UID.field or owner.default.field */
static int set_owner(struct cap_limits *l, const char *rest, const char *value,
                           char *err, size_t errlen)
{
	struct cap_owner_quota *q, tmp;
	const char *dot = strchr(rest, '.'), *field, *end;
	uint64_t uid = 0, v;
	bool dflt = dot && (size_t)(dot - rest) == 7 && !strncmp(rest, "default", 7);
	int r;

	if (!dot || (!dflt && (util_parse_u64_prefix(rest, &uid, &end) < 0 || end != dot ||
	                            uid > UINT32_MAX))) {
		util_bprintf(err, errlen, "owner.%s: expected owner.UID.FIELD or owner.default.FIELD",
		                   rest);
		return -EINVAL;
	}
	field = dot + 1;
	if (strcmp(field, "max_mem") && strcmp(field, "max_vms") && strcmp(field, "max_vcpus")) {
		util_bprintf(err, errlen, "owner.%s: unknown field '%s' (max_vms, max_mem, max_vcpus)",
		                   rest, field);
		return -EINVAL;
	}
	if (!strcmp(value, "unlimited"))
		r = 0, v = 0;
	else if (!strcmp(field, "max_mem"))
		r = parse_size_mib(value, &v);
	else
		r = parse_count(value, true, &v);
	if (r < 0) {
		util_bprintf(err, errlen, "owner.%s: '%s' is not %s", rest, value,
		                   field[4] == 'm' ? "a size" : "a whole number");
		return -EINVAL;
	}
	q = dflt ? &l->owner_default : owner_quota_slot(l, (uint32_t)uid, true);
	if (!q) {
		util_bprintf(err, errlen, "owner.%s: at most %d owner quotas", rest,
		                   CAP_MAX_OWNER_QUOTAS);
		return -ENOSPC;
	}
	tmp = *q;
	if (!strcmp(field, "max_vms"))
		tmp.max_vms = v;
	else if (!strcmp(field, "max_mem"))
		tmp.max_mem_mib = v;
	else
		tmp.max_vcpus = v;
	*q = tmp;
	return 0;
}

int cap_limits_set(struct cap_limits *l, const char *key, const char *value,
                         char *err, size_t errlen)
{
	unsigned char field[sizeof(uint64_t) > sizeof(double) ? sizeof(uint64_t) : sizeof(double)];
	size_t i, width;

	if (!strncmp(key, "pool.", 5))
		return set_pool(l, key + 5, value, err, errlen);
	if (!strncmp(key, "owner.", 6))
		return set_owner(l, key + 6, value, err, errlen);
	for (i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		if (strcmp(keys[i].name, key))
			continue;
		if (parse_value(keys[i].kind, value, field) < 0) {
			util_bprintf(err, errlen, "%s: '%s' is not valid: expected %s", key, value,
			                   kind_expect(keys[i].kind));
			return -EINVAL;
		}
		width = keys[i].kind == K_RATIO || keys[i].kind == K_OVERSUB || keys[i].kind == K_RATE
		              ? sizeof(double) : sizeof(uint64_t);
		memcpy((char *)l + keys[i].off, field, width);
		return 0;
	}
	util_bprintf(err, errlen, "unknown limit '%s' (known: max_vms, memory_budget, "
	                   "memory_reserved, vmm_overhead, memory_overcommit, host_cpus, "
	                   "vcpu_oversubscription, max_concurrent_starts, start_rate, "
	                   "start_burst, pool.NAME, owner.UID.FIELD)", key);
	return -ENOENT;
}

int cap_limits_parse_line(struct cap_limits *l, const char *line,
                                char *err, size_t errlen)
{
	char buf[256], name[64], word[16], num[32], extra;
	char *eq, *key;
	int r;

	if (strlen(line) >= sizeof(buf)) {
		util_bprintf(err, errlen, "line too long");
		return -EINVAL;
	}
	snprintf(buf, sizeof(buf), "%s", line);
	key = util_trim(buf);
	if (!strncmp(key, "pool ", 5) || !strncmp(key, "pool\t", 5)) {
		if (sscanf(key + 5, " %63s %15s %31s %c", name, word, num, &extra) != 3 ||
		          strcmp(word, "max")) {
			util_bprintf(err, errlen, "expected 'pool NAME max N'");
			return -EINVAL;
		}
		return set_pool(l, name, num, err, errlen);
	}
	eq = strchr(key, '=');
	if (!eq)
		return 1;
	*eq = '\0';
	r = cap_limits_set(l, util_trim(key), util_trim(eq + 1), err, errlen);
	if (r == -ENOENT) {
		if (err && errlen)
			err[0] = '\0';
		return 1;
	}
	return r;
}

/* ---- pools and owners in use ---------------------------------------------- */

static int pool_slot_find(const struct cap *c, const char *name)
{
	int i;

	for (i = 0; i < CAP_MAX_POOLS; i++)
		if (c->pools[i].name[0] && !strcmp(c->pools[i].name, name))
			return i;
	return -1;
}

/* Lay the new pool limits over the slots in use; all or nothing. */
static int pools_merge(struct cap *c, const struct cap_limits *l, char *err, size_t errlen)
{
	struct cap_pool_use tmp[CAP_MAX_POOLS];
	size_t i, j, k;

	memcpy(tmp, c->pools, sizeof(tmp));
	for (i = 0; i < CAP_MAX_POOLS; i++) {
		if (!tmp[i].name[0])
			continue;
		tmp[i].defined = false;
		for (j = 0; j < l->npools; j++)
			if (!strcmp(tmp[i].name, l->pools[j].name)) {
				tmp[i].defined = true;
				tmp[i].max = l->pools[j].max;
			}
		if (!tmp[i].defined && !tmp[i].used)
			memset(&tmp[i], 0, sizeof(tmp[i]));
		else if (!tmp[i].defined)
			tmp[i].max = 0;
	}
	for (j = 0; j < l->npools; j++) {
		for (i = 0; i < CAP_MAX_POOLS; i++)
			if (tmp[i].name[0] && !strcmp(tmp[i].name, l->pools[j].name))
				break;
		if (i < CAP_MAX_POOLS)
			continue;
		for (k = 0; k < CAP_MAX_POOLS && tmp[k].name[0]; k++)
			;
		if (k == CAP_MAX_POOLS) {
			util_bprintf(err, errlen, "pool %s: no room while removed pools still "
			                   "hold VMs; retry after they drain", l->pools[j].name);
			return -ENOSPC;
		}
		snprintf(tmp[k].name, sizeof(tmp[k].name), "%s", l->pools[j].name);
		tmp[k].max = l->pools[j].max;
		tmp[k].defined = true;
	}
	memcpy(c->pools, tmp, sizeof(tmp));
	return 0;
}

static size_t owner_hash(uint32_t uid, size_t cap)
{
	return (size_t)((uid * UINT32_C(2654435761)) & (cap - 1));
}

static struct cap_owner_use *owner_find(const struct cap *c, uint32_t uid)
{
	size_t i;

	if (!c->owners_cap)
		return NULL;
	for (i = owner_hash(uid, c->owners_cap); c->owners[i].live;
	           i = (i + 1) & (c->owners_cap - 1))
		if (c->owners[i].uid == uid)
			return &c->owners[i];
	return NULL;
}

static int owners_grow(struct cap *c)
{
	size_t ncap = c->owners_cap ? c->owners_cap * 2 : 16, i, j;
	struct cap_owner_use *n = calloc(ncap, sizeof(*n));

	if (!n)
		return -ENOMEM;
	for (i = 0; i < c->owners_cap; i++) {
		if (!c->owners[i].live)
			continue;
		for (j = owner_hash(c->owners[i].uid, ncap); n[j].live; j = (j + 1) & (ncap - 1))
			;
		n[j] = c->owners[i];
	}
	free(c->owners);
	c->owners = n;
	c->owners_cap = ncap;
	return 0;
}

/* Entries are never removed: an owner that drained keeps a zeroed entry. */
static struct cap_owner_use *owner_get(struct cap *c, uint32_t uid)
{
	struct cap_owner_use *o = owner_find(c, uid);
	size_t i;

	if (o)
		return o;
	if ((c->owners_len + 1) * 2 > c->owners_cap && owners_grow(c) < 0)
		return NULL;
	for (i = owner_hash(uid, c->owners_cap); c->owners[i].live;
	           i = (i + 1) & (c->owners_cap - 1))
		;
	o = &c->owners[i];
	memset(o, 0, sizeof(*o));
	o->uid = uid;
	o->live = true;
	c->owners_len++;
	return o;
}

static const struct cap_owner_quota *owner_quota(const struct cap_limits *l, uint32_t uid)
{
	size_t i;

	for (i = 0; i < l->nowners; i++)
		if (l->owners[i].uid == uid)
			return &l->owners[i];
	return &l->owner_default;
}

/* ---- setup ---------------------------------------------------------------- */

int cap_init(struct cap *c, const struct cap_limits *l, char *err, size_t errlen)
{
	memset(c, 0, sizeof(*c));
	c->queue.prev = c->queue.next = &c->queue;
	return cap_set_limits(c, l, err, errlen);
}

void cap_free(struct cap *c)
{
	free(c->owners);
	c->owners = NULL;
	c->owners_cap = c->owners_len = 0;
}

const struct cap_limits *cap_limits(const struct cap *c)
{
	return &c->limits;
}

int cap_set_limits(struct cap *c, const struct cap_limits *l, char *err, size_t errlen)
{
	int r;

	r = limits_check(l, err, errlen);
	if (r < 0)
		return r;
	r = pools_merge(c, l, err, errlen);
	if (r < 0)
		return r;
	c->limits = *l;
	return 0;
}

/* ---- admission ------------------------------------------------------------ */

static int request_shape(const struct cap_request *r, char *err, size_t errlen)
{
	size_t i, j;

	if (r->vcpus < 1 || r->mem_mib < 1 || r->mem_mib > CAP_MAX_MIB ||
	          r->vcpus > UINT32_MAX) {
		util_bprintf(err, errlen, "request: vcpus and memory must be at least 1");
		return -EINVAL;
	}
	if (r->npools > CAP_REQ_MAX_POOLS) {
		util_bprintf(err, errlen, "request: at most %d pools per VM", CAP_REQ_MAX_POOLS);
		return -EINVAL;
	}
	for (i = 0; i < r->npools; i++) {
		if (!r->pools[i] || !pool_name_valid(r->pools[i])) {
			util_bprintf(err, errlen, "request: pool name '%s' is not [a-z0-9_-]{1,32}",
			                   r->pools[i] ? r->pools[i] : "");
			return -EINVAL;
		}
		for (j = 0; j < i; j++)
			if (!strcmp(r->pools[i], r->pools[j])) {
				util_bprintf(err, errlen, "pool %s: named twice", r->pools[i]);
				return -EINVAL;
			}
	}
	return 0;
}

/* Map the request's pools to slots; admission needs them defined. */
static int request_pools(const struct cap *c, const struct cap_request *r,
                               uint8_t *slots, bool need_defined, char *err, size_t errlen)
{
	size_t i;
	int s;

	for (i = 0; i < r->npools; i++) {
		s = pool_slot_find(c, r->pools[i]);
		if (s < 0 || (need_defined && !c->pools[s].defined)) {
			util_bprintf(err, errlen, "pool %s: not defined (add 'pool %s max N' to the "
			                   "config or run 'mvmctl host set pool.%s=N')",
			                   r->pools[i], r->pools[i], r->pools[i]);
			return -ENOENT;
		}
		slots[i] = (uint8_t)s;
	}
	return 0;
}

/*
 * A refusal is -ENOSPC when what was asked exceeds the limit itself (it can
 * never fit while the limits stay as they are) and -EAGAIN when it exceeds
 * only what is left now (it may fit once other VMs stop).  Schedulers act on
 * the difference: fail the job, or requeue it.
 */
static int mem_refuse(const char *who, uint64_t guest, uint64_t overhead, uint64_t used,
                            uint64_t limit, const char *why, char *err, size_t errlen)
{
	char ov[64] = "";

	if (overhead)
		snprintf(ov, sizeof(ov), " + %" PRIu64 " MiB VMM overhead", overhead);
	if (guest + overhead > limit) {
		util_bprintf(err, errlen, "%smemory: asked %" PRIu64 " MiB%s, more than the limit of %"
		                   PRIu64 " MiB (%s); it can never fit", who, guest, ov, limit, why);
		return -ENOSPC;
	}
	util_bprintf(err, errlen, "%smemory: asked %" PRIu64 " MiB%s, %" PRIu64 " MiB left of %"
	                   PRIu64 " MiB (%s)", who, guest, ov, left_of(limit, used), limit, why);
	return -EAGAIN;
}

static int count_refuse(const char *what, uint64_t asked, uint64_t used, uint64_t limit,
                              const char *why, char *err, size_t errlen)
{
	if (asked > limit) {
		util_bprintf(err, errlen, "%s: asked %" PRIu64 ", more than the limit of %" PRIu64
		                   "%s%s%s; it can never fit", what, asked, limit,
		                   *why ? " (" : "", why, *why ? ")" : "");
		return -ENOSPC;
	}
	util_bprintf(err, errlen, "%s: asked %" PRIu64 ", %" PRIu64 " left of %" PRIu64 "%s%s%s",
	                   what, asked, left_of(limit, used), limit, *why ? " (" : "", why, *why ? ")" : "");
	return -EAGAIN;
}

/* The usage a check compares with: the host's now, or none at all. */
struct cap_use {
	uint64_t vms, mem_mib, vcpus, mem_fixed_mib;
};

/*
 * Overcommit is for memory that can be taken back: with memory_overcommit
 * r > 1 a VM with a balloon is charged 1/r of its size against the
 * physical budget B, one without at its full size, so that
 * fixed + ballooned / r <= B.  Reported in the units of the VM asked
 * about: overcommitted MiB (of B x r) for a balloon VM, physical MiB (of
 * B) for one without.  With r <= 1 every VM counts at full size against
 * B x r.
 */
static int mem_check(const struct cap *c, const struct cap_request *r,
                     const struct cap_use *u, char *err, size_t errlen)
{
	const struct cap_limits *l = &c->limits;
	uint64_t charge = r->mem_mib + l->vmm_overhead_mib, phys = cap_limits_phys_mib(l);
	double oc = l->memory_overcommit, used;
	uint64_t limit, used_mib;
	char why[192], rb[16];

	util_fmt_ratio(rb, sizeof(rb), oc);
	if (oc <= 1.0 || r->balloon) {
		limit = cap_limits_mem_mib(l);
		used = (double)u->mem_mib;
		if (oc > 1.0)
			used += (double)u->mem_fixed_mib * (oc - 1.0);
		snprintf(why, sizeof(why), "overcommit %s", rb);
	} else {
		limit = phys;
		used = (double)u->mem_fixed_mib +
		       (double)(u->mem_mib - u->mem_fixed_mib) / oc;
		snprintf(why, sizeof(why), "physical budget: the VM has no balloon, and "
		         "memory_overcommit %s applies only to VMs with one, whose memory "
		         "can be reclaimed; create it with --balloon to share the overcommit", rb);
	}
	used_mib = (uint64_t)ceil(used);
	if (charge <= left_of(limit, used_mib))
		return 0;
	return mem_refuse("", r->mem_mib, l->vmm_overhead_mib, used_mib, limit, why,
	                  err, errlen);
}

static int host_check(const struct cap *c, const struct cap_request *r,
                            const struct cap_use *u, char *err, size_t errlen)
{
	const struct cap_limits *l = &c->limits;
	uint64_t vcpus = cap_limits_vcpus(l);
	char why[96], rb[16];
	int k;

	if (l->max_vms && 1 > left_of(l->max_vms, u->vms))
		return count_refuse("vms", 1, u->vms, l->max_vms, "max_vms", err, errlen);
	k = mem_check(c, r, u, err, errlen);
	if (k)
		return k;
	if (r->vcpus > left_of(vcpus, u->vcpus)) {
		snprintf(why, sizeof(why), "%" PRIu64 " host CPUs x oversubscription %s",
		               l->host_cpus, util_fmt_ratio(rb, sizeof(rb), l->vcpu_oversubscription));
		return count_refuse("vcpus", r->vcpus, u->vcpus, vcpus, why, err, errlen);
	}
	return 0;
}

static int pools_check(const struct cap *c, const struct cap_request *r,
                       const uint8_t *slots, bool empty, char *err, size_t errlen)
{
	char what[48];
	size_t i;

	for (i = 0; i < r->npools; i++) {
		const struct cap_pool_use *p = &c->pools[slots[i]];
		uint64_t used = empty ? 0 : p->used;

		if (1 > left_of(p->max, used)) {
			snprintf(what, sizeof(what), "pool %s", p->name);
			return count_refuse(what, 1, used, p->max, "", err, errlen);
		}
	}
	return 0;
}

static int owner_check(const struct cap *c, const struct cap_request *r, bool empty,
                             char *err, size_t errlen)
{
	const struct cap_owner_quota *q = owner_quota(&c->limits, r->uid);
	const struct cap_owner_use *o = empty ? NULL : owner_find(c, r->uid);
	struct cap_owner_use zero = { 0 };
	uint64_t charge = r->mem_mib + c->limits.vmm_overhead_mib;
	char who[48];

	if (!o)
		o = &zero;
	snprintf(who, sizeof(who), "owner %" PRIu32 " ", r->uid);
	if (q->max_vms && 1 > left_of(q->max_vms, o->vms)) {
		snprintf(who, sizeof(who), "owner %" PRIu32 " vms", r->uid);
		return count_refuse(who, 1, o->vms, q->max_vms, "owner quota", err, errlen);
	}
	if (q->max_mem_mib && charge > left_of(q->max_mem_mib, o->mem_mib))
		return mem_refuse(who, r->mem_mib, c->limits.vmm_overhead_mib, o->mem_mib,
		                        q->max_mem_mib, "owner quota", err, errlen);
	if (q->max_vcpus && r->vcpus > left_of(q->max_vcpus, o->vcpus)) {
		snprintf(who, sizeof(who), "owner %" PRIu32 " vcpus", r->uid);
		return count_refuse(who, r->vcpus, o->vcpus, q->max_vcpus, "owner quota",
		                          err, errlen);
	}
	return 0;
}

/* Every limit in the fixed order, against usage u (empty: against none). */
static int limits_admit(const struct cap *c, const struct cap_request *r, const uint8_t *slots,
                        bool empty, char *err, size_t errlen)
{
	struct cap_use u = { 0 };
	int k;

	if (!empty)
		u = (struct cap_use){ c->vms, c->mem_mib, c->vcpus, c->mem_fixed_mib };
	k = host_check(c, r, &u, err, errlen);
	if (k == 0)
		k = pools_check(c, r, slots, empty, err, errlen);
	if (k == 0)
		k = owner_check(c, r, empty, err, errlen);
	return k;
}

static void reserve(struct cap *c, struct cap_owner_use *o, const struct cap_request *r,
                          const uint8_t *slots, struct cap_resv *ret)
{
	size_t i;

	memset(ret, 0, sizeof(*ret));
	ret->held = true;
	ret->uid = r->uid;
	ret->mem_mib = r->mem_mib + c->limits.vmm_overhead_mib;
	ret->vcpus = r->vcpus;
	ret->balloon = r->balloon;
	ret->npools = (uint8_t)r->npools;
	memcpy(ret->pool_slot, slots, r->npools);
	c->vms++;
	c->mem_mib += ret->mem_mib;
	if (!ret->balloon)
		c->mem_fixed_mib += ret->mem_mib;
	c->vcpus += ret->vcpus;
	for (i = 0; i < r->npools; i++)
		c->pools[slots[i]].used++;
	o->vms++;
	o->mem_mib += ret->mem_mib;
	o->vcpus += ret->vcpus;
}

/* The last step of every reservation: the owner's record (made the first
 * time a uid is seen) and the running sums. */
static int reserve_for_owner(struct cap *c, const struct cap_request *r, const uint8_t *slots,
                             struct cap_resv *ret, char *err, size_t errlen)
{
	struct cap_owner_use *o = owner_get(c, r->uid);

	if (!o) {
		util_bprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	reserve(c, o, r, slots, ret);
	return 0;
}

int cap_admit(struct cap *c, const struct cap_request *r, struct cap_resv *ret,
                    char *err, size_t errlen)
{
	uint8_t slots[CAP_REQ_MAX_POOLS];
	int k;

	if (ret->held)
		return -EBUSY;
	k = request_shape(r, err, errlen);
	if (k == 0)
		k = request_pools(c, r, slots, true, err, errlen);
	/* "Never" first: a request too large for an empty host must not read
	 * as "not now" only because a smaller limit is full at the moment. */
	if (k == 0)
		k = limits_admit(c, r, slots, true, err, errlen);
	if (k == 0)
		k = limits_admit(c, r, slots, false, err, errlen);
	if (k < 0)
		return k;
	return reserve_for_owner(c, r, slots, ret, err, errlen);
}

int cap_reserve_force(struct cap *c, const struct cap_request *r,
                            struct cap_resv *ret, char *err, size_t errlen)
{
	uint8_t slots[CAP_REQ_MAX_POOLS];
	size_t i;
	int k;

	if (ret->held)
		return -EBUSY;
	k = request_shape(r, err, errlen);
	if (k < 0)
		return k;
	/* A re-adopted VM may name a pool the config no longer has: give it an
	       * undefined slot (max 0) so its use is still counted and reported. */
	for (i = 0; i < r->npools; i++) {
		if (pool_slot_find(c, r->pools[i]) >= 0)
			continue;
		for (k = 0; k < CAP_MAX_POOLS && c->pools[k].name[0]; k++)
			;
		if (k == CAP_MAX_POOLS) {
			util_bprintf(err, errlen, "pool %s: no free pool slot", r->pools[i]);
			return -ENOSPC;
		}
		snprintf(c->pools[k].name, sizeof(c->pools[k].name), "%s", r->pools[i]);
		c->pools[k].defined = false;
		c->pools[k].max = 0;
	}
	request_pools(c, r, slots, false, NULL, 0);
	return reserve_for_owner(c, r, slots, ret, err, errlen);
}

void cap_release(struct cap *c, struct cap_resv *resv)
{
	struct cap_owner_use *o;
	size_t i;

	if (!resv->held)
		return;
	c->vms--;
	c->mem_mib -= resv->mem_mib;
	if (!resv->balloon)
		c->mem_fixed_mib -= resv->mem_mib;
	c->vcpus -= resv->vcpus;
	for (i = 0; i < resv->npools; i++) {
		struct cap_pool_use *p = &c->pools[resv->pool_slot[i]];

		p->used--;
		/* A pool dropped from the limits disappears once it drains. */
		if (!p->used && !p->defined)
			memset(p, 0, sizeof(*p));
	}
	o = owner_find(c, resv->uid);
	if (o) {
		o->vms--;
		o->mem_mib -= resv->mem_mib;
		o->vcpus -= resv->vcpus;
	}
	memset(resv, 0, sizeof(*resv));
}

/* ---- reporting ------------------------------------------------------------ */

struct sbuf {
	char *buf;
	size_t len, pos;
	int count;
};

static void sb_add(struct sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Appends "; "-separated items; truncates silently when full. */
static void sb_add(struct sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (b->count++ && b->pos + 2 < b->len) {
		memcpy(b->buf + b->pos, "; ", 3);
		b->pos += 2;
	}
	if (b->pos >= b->len)
		return;
	va_start(ap, fmt);
	n = vsnprintf(b->buf + b->pos, b->len - b->pos, fmt, ap);
	va_end(ap);
	if (n > 0)
		b->pos += (size_t)n < b->len - b->pos ? (size_t)n : b->len - b->pos - 1;
}

static void over_owners(const struct cap *c, struct sbuf *b)
{
	const struct cap_owner_quota *q;
	const struct cap_owner_use *o;
	size_t i;

	for (i = 0; i < c->owners_cap; i++) {
		o = &c->owners[i];
		if (!o->live)
			continue;
		q = owner_quota(&c->limits, o->uid);
		if (q->max_vms && o->vms > q->max_vms)
			sb_add(b, "owner %" PRIu32 " vms: %" PRIu64 " used of %" PRIu64,
			             o->uid, o->vms, q->max_vms);
		if (q->max_mem_mib && o->mem_mib > q->max_mem_mib)
			sb_add(b, "owner %" PRIu32 " memory: %" PRIu64 " MiB used of %" PRIu64 " MiB",
			             o->uid, o->mem_mib, q->max_mem_mib);
		if (q->max_vcpus && o->vcpus > q->max_vcpus)
			sb_add(b, "owner %" PRIu32 " vcpus: %" PRIu64 " used of %" PRIu64,
			             o->uid, o->vcpus, q->max_vcpus);
	}
}

int cap_over_limit(const struct cap *c, char *buf, size_t len)
{
	const struct cap_limits *l = &c->limits;
	struct sbuf b = { buf, len, 0, 0 };
	uint64_t mem = cap_limits_mem_mib(l), vcpus = cap_limits_vcpus(l);
	size_t i;

	if (len)
		buf[0] = '\0';
	if (l->max_vms && c->vms > l->max_vms)
		sb_add(&b, "vms: %" PRIu64 " used of %" PRIu64 " (max_vms)", c->vms, l->max_vms);
	if (c->mem_mib > mem)
		sb_add(&b, "memory: %" PRIu64 " MiB used of %" PRIu64 " MiB", c->mem_mib, mem);
	if (c->vcpus > vcpus)
		sb_add(&b, "vcpus: %" PRIu64 " used of %" PRIu64, c->vcpus, vcpus);
	if (l->max_concurrent_starts && c->starting > l->max_concurrent_starts)
		sb_add(&b, "starts: %" PRIu64 " starting, max_concurrent_starts %" PRIu64,
		             c->starting, l->max_concurrent_starts);
	for (i = 0; i < CAP_MAX_POOLS; i++) {
		const struct cap_pool_use *p = &c->pools[i];

		if (!p->name[0])
			continue;
		if (!p->defined && p->used)
			sb_add(&b, "pool %s: %" PRIu64 " used, pool no longer defined",
			             p->name, p->used);
		else if (p->used > p->max)
			sb_add(&b, "pool %s: %" PRIu64 " used of %" PRIu64, p->name, p->used, p->max);
	}
	over_owners(c, &b);
	return b.count;
}

void cap_usage_get(const struct cap *c, struct cap_usage *ret)
{
	size_t i;

	memset(ret, 0, sizeof(*ret));
	ret->vms = c->vms;
	ret->vms_limit = c->limits.max_vms;
	ret->mem_mib = c->mem_mib;
	ret->mem_limit_mib = cap_limits_mem_mib(&c->limits);
	ret->vcpus = c->vcpus;
	ret->vcpus_limit = cap_limits_vcpus(&c->limits);
	ret->starting = c->starting;
	ret->starting_limit = c->limits.max_concurrent_starts;
	ret->queued = c->queued;
	for (i = 0; i < CAP_MAX_POOLS; i++)
		if (c->pools[i].name[0])
			ret->pools[ret->npools++] = c->pools[i];
}

void cap_owner_usage(const struct cap *c, uint32_t uid, struct cap_owner_use *ret)
{
	const struct cap_owner_use *o = owner_find(c, uid);

	memset(ret, 0, sizeof(*ret));
	ret->uid = uid;
	if (o)
		*ret = *o;
}

/* ---- boot storms ---------------------------------------------------------- */

/*
       * The start rate is a token bucket written as GCRA: tat is when the bucket
       * would be full again; a start may go when tat - (burst-1) x interval has
       * passed.  Integer nanoseconds keep it exact and deterministic.
       */
static uint64_t rate_interval_ns(const struct cap_limits *l)
{
	double ns = (double)NS_PER_S / l->start_rate;

	return ns < 1 ? 1 : (uint64_t)llround(ns);
}

static uint64_t rate_ready_ns(const struct cap *c)
{
	const struct cap_limits *l = &c->limits;
	uint64_t iv = rate_interval_ns(l), tol;

	tol = (l->start_burst - 1) > UINT64_MAX / iv ? UINT64_MAX : (l->start_burst - 1) * iv;
	return c->tat_ns > tol ? c->tat_ns - tol : 0;
}

int cap_start_try(struct cap *c, uint64_t now_ns)
{
	const struct cap_limits *l = &c->limits;

	if (l->max_concurrent_starts && c->starting >= l->max_concurrent_starts)
		return -EBUSY;
	if (l->start_rate > 0) {
		if (now_ns < rate_ready_ns(c))
			return -EAGAIN;
		c->tat_ns = (c->tat_ns > now_ns ? c->tat_ns : now_ns) + rate_interval_ns(l);
	}
	c->starting++;
	return 0;
}

int cap_start_done(struct cap *c)
{
	if (!c->starting)
		return -EALREADY;
	c->starting--;
	return 0;
}

uint64_t cap_next_wakeup_ns(const struct cap *c, uint64_t now_ns)
{
	uint64_t t;

	if (c->limits.start_rate <= 0)
		return now_ns;
	t = rate_ready_ns(c);
	return t > now_ns ? t : now_ns;
}

void cap_start_explain(const struct cap *c, int r, uint64_t now_ns, char *err, size_t errlen)
{
	const struct cap_limits *l = &c->limits;
	char rb[16];

	if (r == -EBUSY)
		util_bprintf(err, errlen, "starts: %" PRIu64 " starting, 0 left of %" PRIu64
		                   " (max_concurrent_starts)", c->starting, l->max_concurrent_starts);
	else if (r == -EAGAIN)
		util_bprintf(err, errlen, "starts: rate %s/s with burst %" PRIu64 " allows the next in %"
		                   PRIu64 " ms (start_rate)", util_fmt_ratio(rb, sizeof(rb), l->start_rate),
		                   l->start_burst, (cap_next_wakeup_ns(c, now_ns) - now_ns + 999999) / 1000000);
	else
		util_bprintf(err, errlen, "starts: no limit refused this start");
}

/* ---- the FIFO of queued starts ------------------------------------------- */

void cap_queue_push(struct cap *c, struct cap_qnode *n, int64_t vm_id)
{
	if (cap_queue_linked(n))
		cap_queue_remove(c, n);
	n->vm_id = vm_id;
	n->prev = c->queue.prev;
	n->next = &c->queue;
	c->queue.prev->next = n;
	c->queue.prev = n;
	c->queued++;
}

struct cap_qnode *cap_queue_peek(const struct cap *c)
{
	return c->queue.next == &c->queue ? NULL : c->queue.next;
}

void cap_queue_remove(struct cap *c, struct cap_qnode *n)
{
	if (!cap_queue_linked(n))
		return;
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = NULL;
	c->queued--;
}

struct cap_qnode *cap_queue_pop(struct cap *c)
{
	struct cap_qnode *n = cap_queue_peek(c);

	if (n)
		cap_queue_remove(c, n);
	return n;
}

bool cap_queue_linked(const struct cap_qnode *n)
{
	return n->next != NULL;
}

size_t cap_queue_len(const struct cap *c)
{
	return c->queued;
}
