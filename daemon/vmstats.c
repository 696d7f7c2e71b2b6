/* SPDX-License-Identifier: MIT */
/*
 * A running VM's stats: its worker's virtio and balloon counters (a stats
 * request over the link) with its cgroup's memory and CPU, as one JSON
 * object.  vm.stats (dispatch.c) uses it; so may anything else that wants
 * counters (a metrics exporter): it answers nobody itself.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/cgroup.h"
#include "daemon/mvmd.h"
#include "util/util.h"

#define PAGE_BYTES 4096ULL

struct collect {
	struct vm *vm;                  /* a reference */
	vmstats_fn cb;
	void *arg;
};

static json_t *limits_json(const struct proto_link_limits *l, const char *ops)
{
	char ops_burst[16];

	snprintf(ops_burst, sizeof(ops_burst), "%s_burst", ops);
	return json_pack("{s:I, s:I, s:I, s:I}", "bps", (json_int_t)l->bps,
	                 "bps_burst", (json_int_t)l->bps_burst, ops, (json_int_t)l->ops,
	                 ops_burst, (json_int_t)l->ops_burst);
}

static json_t *dev_json(const struct proto_link_dev_stats *s)
{
	bool disk = s->kind == PROTO_LINK_DISK;

	if (disk)
		return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
		                 "index", (json_int_t)s->index,
		                 "read_bytes", (json_int_t)s->rd_bytes,
		                 "write_bytes", (json_int_t)s->wr_bytes,
		                 "read_ops", (json_int_t)s->rd_ops,
		                 "write_ops", (json_int_t)s->wr_ops,
		                 "flushes", (json_int_t)s->flushes,
		                 "errors", (json_int_t)s->errors,
		                 "throttled_ns", (json_int_t)s->throttled_ns,
		                 "limits", limits_json(&s->limits, "iops"));
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
	                 "index", (json_int_t)s->index,
	                 "rx_bytes", (json_int_t)s->rd_bytes,
	                 "tx_bytes", (json_int_t)s->wr_bytes,
	                 "rx_frames", (json_int_t)s->rd_ops,
	                 "tx_frames", (json_int_t)s->wr_ops,
	                 "dropped", (json_int_t)s->errors,
	                 "throttled_ns", (json_int_t)s->throttled_ns,
	                 "limits", limits_json(&s->limits, "pps"));
}

/* The guest's own numbers by virtio tag (spec 5.5.6.3), those it sent. */
static json_t *guest_json(const struct proto_link_balloon_stats *b)
{
	static const char *const names[PROTO_LINK_GUEST_STATS] = {
		"swap_in", "swap_out", "major_faults", "minor_faults", "free_bytes",
		"total_bytes", "available_bytes", "disk_cache_bytes", "hugetlb_allocs",
		"hugetlb_failures",
	};
	json_t *o = json_object();

	for (int t = 0; o && t < PROTO_LINK_GUEST_STATS; t++)
		if (b->guest_valid & (1u << t))
			json_object_set_new(o, names[t], json_integer((json_int_t)b->guest[t]));
	return o;
}

static json_t *balloon_json(const struct proto_link_balloon_stats *b)
{
	return json_pack("{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o}",
	                 "target_bytes", (json_int_t)(b->target_pages * PAGE_BYTES),
	                 "actual_bytes", (json_int_t)(b->actual_pages * PAGE_BYTES),
	                 "max_bytes", (json_int_t)(b->max_pages * PAGE_BYTES),
	                 "inflated_pages", (json_int_t)b->inflated,
	                 "deflated_pages", (json_int_t)b->deflated,
	                 "discarded_bytes", (json_int_t)b->discarded_bytes,
	                 "reported_bytes", (json_int_t)b->reported_bytes,
	                 "guest", guest_json(b));
}

/* The worker's part: its devices split by kind, and its balloon. */
static int worker_part(json_t *o, const struct proto_link_stats *s)
{
	json_t *disks = json_array(), *nics = json_array();
	int r = 0;

	if (!disks || !nics) {
		json_decref(disks);
		json_decref(nics);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < s->ndev; i++)
		r |= json_array_append_new(s->dev[i].kind == PROTO_LINK_DISK ? disks : nics,
		                           dev_json(&s->dev[i]));
	r |= json_object_set_new(o, "disks", disks);
	r |= json_object_set_new(o, "nics", nics);
	r |= json_object_set_new(o, "balloon", s->has_balloon ? balloon_json(&s->balloon)
	                                                       : json_null());
	return r ? -ENOMEM : 0;
}

/* utime + stime of process pid, all its threads, in ns; 0 if unreadable. */
static uint64_t proc_cpu_ns(long pid)
{
	uint64_t ns;

	return mvmd_proc_stat(pid, NULL, &ns) < 0 ? 0 : ns;
}

/* Where the cgroup does not count CPU time (v1 with cpuacct mounted on its
 * own): the worker's and its children's (a sandboxed worker runs the VM in
 * a child, in its PID namespace) from /proc. */
static bool worker_cpu_ns(const struct vm *vm, uint64_t *ret)
{
	char path[64], kids[1024], *p, *end;
	long pid = (long)vm->row.pid, kid;

	if (pid <= 0)
		return false;
	*ret = proc_cpu_ns(pid);
	snprintf(path, sizeof(path), "/proc/%ld/task/%ld/children", pid, pid);
	if (util_read_file(path, kids, sizeof(kids)) >= 0)
		for (p = kids; (kid = strtol(p, &end, 10)) > 0; p = end)
			*ret += proc_cpu_ns(kid);
	return *ret > 0;
}

/* The cgroup's part; null fields where a controller is not there. */
static int cgroup_part(json_t *o, const struct vm *vm)
{
	const struct cgroup_vm *cg = admit_vm_cgroup(vm);
	struct cgroup_vm_stats cs = { 0 };
	int r = 0;

	if (cg)
		cgroup_vm_read_stats(cg, &cs);
	if (!cs.has_cpu)
		cs.has_cpu = worker_cpu_ns(vm, &cs.cpu_ns);
	r |= json_object_set_new(o, "mem_bytes", cs.has_mem ?
	                         json_integer((json_int_t)cs.mem_bytes) : json_null());
	r |= json_object_set_new(o, "mem_limit_bytes", cs.has_mem && cs.mem_limit_bytes ?
	                         json_integer((json_int_t)cs.mem_limit_bytes) : json_null());
	r |= json_object_set_new(o, "cpu_ns", cs.has_cpu ?
	                         json_integer((json_int_t)cs.cpu_ns) : json_null());
	r |= json_object_set_new(o, "cpu_throttled_ns", cs.has_cpu ?
	                         json_integer((json_int_t)cs.throttled_ns) : json_null());
	return r ? -ENOMEM : 0;
}

static void reply_cb(void *arg, const struct proto_link_msg *reply)
{
	struct collect *c = arg;
	struct vm *vm = c->vm;
	json_t *o;
	int r;

	o = json_pack("{s:s, s:s, s:i, s:I, s:f}", "name", vm->row.name,
	              "state", proto_vm_state_name(vm->row.state), "vcpus", vm->row.vcpus,
	              "mem_guest_bytes", (json_int_t)(vm->row.mem_mib << 20),
	              "sampled_at", mvmd_mono());
	r = o ? cgroup_part(o, vm) : -ENOMEM;
	if (r == 0 && reply && reply->stats)
		r = worker_part(o, reply->stats);
	else if (r == 0)
		r = json_object_set_new(o, "worker_error", json_string(
		        reply ? "the worker sent no counters"
		              : "the worker ended before it answered")) ? -ENOMEM : 0;
	if (r < 0) {
		json_decref(o);
		o = NULL;
	}
	c->cb(c->arg, vm, o);
	vm_release(vm);
	free(c);
}

int vmstats_collect(struct vm *vm, vmstats_fn cb, void *arg)
{
	struct proto_link_msg m = { .type = PROTO_LINK_STATS };
	struct collect *c;
	int r;

	if (!vm->worker)
		return -ESRCH;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->vm = vm_ref(vm);
	c->cb = cb;
	c->arg = arg;
	r = supervisor_request(vm->worker, &m, reply_cb, c);
	if (r < 0) {
		vm_release(vm);
		free(c);
	}
	return r;
}
