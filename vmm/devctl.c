/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/devctl.h"
#include "vmm/virtio_devs.h"

static const char *kind_name(enum proto_link_dev_kind k)
{
	return k == PROTO_LINK_DISK ? "disk" : "NIC";
}

/* The result's error text, or NULL when r is 0. */
static char *set_limits_error(const struct proto_link_msg *m, const struct ratelimit_config *c,
                              int r)
{
	const char *why = "";
	char *e = NULL;

	if (r == -ENODEV)
		r = asprintf(&e, "the VM has no %s %" PRId64 "; indices count from 0 in the "
		             "order the devices were given", kind_name(m->dev_kind), m->dev_index);
	else if (r == -EINVAL && c->bps_burst && !c->bps)
		r = asprintf(&e, "bps_burst without bps; set the rate the burst is on top of");
	else if (r == -EINVAL && c->ops_burst && !c->ops)
		r = asprintf(&e, "ops_burst without ops; set the rate the burst is on top of");
	else if (r == -EINVAL && ratelimit_config_check(c, &why) < 0)
		r = asprintf(&e, "%s is above %llu; use a smaller limit, or 0 for none", why,
		             RATELIMIT_MAX);
	else if (r < 0)
		r = asprintf(&e, "cannot set the limits: %s", strerror(-r));
	return r < 0 ? NULL : e;
}

static void set_limits(struct vm *vm, const struct proto_link_msg *m, struct proto_link_msg *reply)
{
	struct ratelimit_config c = {
		.bps = m->limits.bps, .bps_burst = m->limits.bps_burst,
		.ops = m->limits.ops, .ops_burst = m->limits.ops_burst,
	};
	int r = virtio_devs_set_limits(vm_virtio_devs(vm), m->dev_kind == PROTO_LINK_DISK ?
	                               VIRTIO_DEVS_DISK : VIRTIO_DEVS_NET, (unsigned)m->dev_index, &c);

	if (r < 0 && !(reply->error = set_limits_error(m, &c, r)))
		reply->error = strdup("cannot set the limits");
}

static void set_balloon(struct vm *vm, const struct proto_link_msg *m, struct proto_link_msg *reply)
{
	struct virtio_devs_stats *st = calloc(1, sizeof(*st));
	int r = virtio_devs_set_balloon(vm_virtio_devs(vm), m->target);

	if (r == -ENODEV)
		reply->error = strdup("the VM has no balloon device; start it with one");
	else if (r == -EINVAL && st) {
		virtio_devs_get_stats(vm_virtio_devs(vm), st);
		if (asprintf(&reply->error, "balloon target %" PRIu64 " bytes is larger than the "
		             "guest's %" PRIu64 " bytes of RAM; lower it", m->target,
		             st->balloon_max_pages << VIRTIO_BALLOON_PFN_SHIFT) < 0)
			reply->error = NULL;
	} else if (r < 0)
		reply->error = strdup("cannot set the balloon target");
	free(st);
}

static void fill_dev(struct proto_link_dev_stats *o, const struct virtio_devs_dev_stats *d)
{
	*o = (struct proto_link_dev_stats){
		.kind = d->kind == VIRTIO_DEVS_DISK ? PROTO_LINK_DISK : PROTO_LINK_NET,
		.index = d->index,
		.rd_bytes = d->rd_bytes, .wr_bytes = d->wr_bytes,
		.rd_ops = d->rd_ops, .wr_ops = d->wr_ops,
		.flushes = d->flushes, .errors = d->errors, .throttled_ns = d->throttled_ns,
		.limits = { d->limits.bps, d->limits.bps_burst, d->limits.ops, d->limits.ops_burst },
	};
}

static void fill_balloon(struct proto_link_balloon_stats *o, const struct virtio_devs_stats *s)
{
	const struct virtio_balloon_stats *b = &s->balloon;

	*o = (struct proto_link_balloon_stats){
		.target_pages = b->target_pages, .actual_pages = b->actual_pages,
		.max_pages = s->balloon_max_pages, .inflated = b->inflated, .deflated = b->deflated,
		.discarded_bytes = b->discarded_bytes, .reported_bytes = b->reported_bytes,
		.bad_pfns = b->bad_pfns, .updates = b->stats_updates,
	};
	for (int t = 0; t < PROTO_LINK_GUEST_STATS; t++) {
		if (!(b->guest_valid >> t & 1))
			continue;
		o->guest_valid |= 1u << t;
		o->guest[t] = b->guest[t];
	}
}

static void get_stats(struct vm *vm, struct proto_link_msg *reply)
{
	struct virtio_devs_stats *st = calloc(1, sizeof(*st));
	struct proto_link_stats *o = calloc(1, sizeof(*o));

	if (!st || !o) {
		free(st);
		free(o);
		reply->type = PROTO_LINK_RESULT;
		reply->error = strdup("out of memory in the worker");
		return;
	}
	virtio_devs_get_stats(vm_virtio_devs(vm), st);
	for (unsigned i = 0; i < st->n && i < PROTO_LINK_DEVS_MAX; i++)
		fill_dev(&o->dev[o->ndev++], &st->dev[i]);
	o->has_balloon = st->has_balloon;
	if (st->has_balloon)
		fill_balloon(&o->balloon, st);
	reply->stats = o;
	free(st);
}

int devctl_handle(struct vm *vm, const struct proto_link_msg *m, struct proto_link_msg *ret_reply)
{
	struct proto_link_msg reply = { .type = PROTO_LINK_RESULT, .seq = m->seq };

	switch (m->type) {
	case PROTO_LINK_SET_LIMITS: set_limits(vm, m, &reply); break;
	case PROTO_LINK_BALLOON: set_balloon(vm, m, &reply); break;
	case PROTO_LINK_STATS:
		reply.type = PROTO_LINK_STATS_REPLY;
		get_stats(vm, &reply);
		break;
	default:
		return 0;
	}
	*ret_reply = reply;
	return 1;
}
