/* SPDX-License-Identifier: MIT */
/* Worker link messages (mvmd <-> mvm-vmm), same framing as the client
 * protocol with "msg" naming the message. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/proto.h"

static const char *const link_names[] = {
#define PROTO_LINK_NAME_(id, name) [PROTO_LINK_##id] = name,
	PROTO_LINK_MSGS(PROTO_LINK_NAME_)
#undef PROTO_LINK_NAME_
};

const char *proto_link_name(enum proto_link_type t)
{
	return (unsigned)t < PROTO_LINK_COUNT_ ? link_names[t] : "?";
}

static int link_type(const char *name)
{
	for (int i = 0; name && i < PROTO_LINK_COUNT_; i++)
		if (!strcmp(link_names[i], name))
			return i;
	return -EINVAL;
}

static int link_decode_data(json_t *root, struct proto_link_msg *m)
{
	json_t *d = json_object_get(root, "data");
	size_t n;
	int r;

	if (!json_is_string(d))
		return -EINVAL;
	n = json_string_length(d);
	if (n > PROTO_BASE64_ENC_LEN(PROTO_LINK_CONSOLE_MAX))
		return -EINVAL;
	m->data = malloc(PROTO_BASE64_DEC_MAX(n));
	if (!m->data)
		return -ENOMEM;
	r = proto_base64_decode(json_string_value(d), n, m->data, &m->data_len);
	if (r < 0) {
		free(m->data);
		m->data = NULL;
	}
	return r;
}

static int link_decode_exit(json_t *root, struct proto_link_msg *m)
{
	json_t *st = json_object_get(root, "status");
	json_t *rs = json_object_get(root, "reason");

	if (!json_is_integer(st) || json_integer_value(st) < 0 || json_integer_value(st) > 255)
		return -EINVAL;
	m->status = json_integer_value(st);
	if (rs && !json_is_string(rs) && !json_is_null(rs))
		return -EINVAL;
	if (json_is_string(rs))
		snprintf(m->reason, sizeof(m->reason), "%s", json_string_value(rs));
	return 0;
}

static int link_decode_hello(json_t *root, struct proto_link_msg *m)
{
	json_t *pid = json_object_get(root, "pid");
	json_t *st = json_object_get(root, "start_time");
	json_t *booted = json_object_get(root, "booted");
	json_t *paused = json_object_get(root, "paused");
	json_t *name = json_object_get(root, "name");

	if (!json_is_integer(pid) || json_integer_value(pid) <= 0 ||
	    json_integer_value(pid) > INT32_MAX || !json_is_integer(st) ||
	    json_integer_value(st) < 0 || !json_is_boolean(booted) ||
	    (name && !json_is_string(name)) || (paused && !json_is_boolean(paused)))
		return -EINVAL;
	if (name && json_string_length(name) >= sizeof(m->name))
		return -EINVAL;
	m->pid = json_integer_value(pid);
	m->start_time = (uint64_t)json_integer_value(st);
	m->booted = json_is_true(booted);
	m->paused = json_is_true(paused);   /* absent: an older worker, never paused */
	if (name)
		snprintf(m->name, sizeof(m->name), "%s", json_string_value(name));
	return 0;
}

static int link_decode_seq(json_t *root, struct proto_link_msg *m)
{
	json_t *seq = json_object_get(root, "seq");

	if (!json_is_integer(seq) || json_integer_value(seq) < 0)
		return -EINVAL;
	m->seq = json_integer_value(seq);
	return 0;
}

/* The worker's SIGSYS handler writes this line itself (vmm/sandbox.c);
 * the number is checked here, its name resolved by mvmd. */
static int link_decode_seccomp(json_t *root, struct proto_link_msg *m)
{
	json_t *nr = json_object_get(root, "nr");

	if (!json_is_integer(nr) || json_integer_value(nr) < 0 ||
	    json_integer_value(nr) > INT32_MAX)
		return -EINVAL;
	m->nr = json_integer_value(nr);
	return 0;
}

/* ---- set-limits, balloon, stats and their answers ---------------------- */

#define LINK_U64_MAX ((uint64_t)INT64_MAX)

static const char *const dev_kind_names[] = { [PROTO_LINK_DISK] = "disk", [PROTO_LINK_NET] = "net" };

/* Per-kind names of rd_bytes, wr_bytes, rd_ops, wr_ops, flushes, errors
 * (NULL: the kind has no such counter). */
static const char *const dev_counter_names[][6] = {
	[PROTO_LINK_DISK] = { "read_bytes", "write_bytes", "reads", "writes", "flushes", "errors" },
	[PROTO_LINK_NET] = { "rx_bytes", "tx_bytes", "rx_frames", "tx_frames", NULL, "dropped" },
};

static const char *const guest_stat_names[PROTO_LINK_GUEST_STATS] = {
	"swap_in", "swap_out", "major_faults", "minor_faults", "free_memory",
	"total_memory", "available_memory", "disk_caches", "hugetlb_allocations",
	"hugetlb_failures",
};

/* An optional non-negative integer: absent leaves *ret as it is. */
static int get_u64(json_t *o, const char *key, uint64_t *ret)
{
	json_t *v = json_object_get(o, key);

	if (!v)
		return 0;
	if (!json_is_integer(v) || json_integer_value(v) < 0)
		return -EINVAL;
	*ret = (uint64_t)json_integer_value(v);
	return 0;
}

static int get_kind(json_t *o, enum proto_link_dev_kind *ret)
{
	const char *k = json_string_value(json_object_get(o, "device"));

	for (int i = 0; k && i < 2; i++)
		if (!strcmp(k, dev_kind_names[i])) {
			*ret = i;
			return 0;
		}
	return -EINVAL;
}

static int decode_limits(json_t *o, struct proto_link_limits *l)
{
	if (o && !json_is_object(o))
		return -EINVAL;
	if (get_u64(o, "bps", &l->bps) < 0 || get_u64(o, "bps_burst", &l->bps_burst) < 0 ||
	    get_u64(o, "ops", &l->ops) < 0 || get_u64(o, "ops_burst", &l->ops_burst) < 0)
		return -EINVAL;
	return 0;
}

static int link_decode_set_limits(json_t *root, struct proto_link_msg *m)
{
	uint64_t index = UINT64_MAX;

	if (link_decode_seq(root, m) < 0 || get_kind(root, &m->dev_kind) < 0 ||
	    get_u64(root, "index", &index) < 0 || index >= PROTO_LINK_DEVS_MAX ||
	    decode_limits(root, &m->limits) < 0)
		return -EINVAL;
	m->dev_index = (int64_t)index;
	return 0;
}

static int link_decode_balloon(json_t *root, struct proto_link_msg *m)
{
	if (link_decode_seq(root, m) < 0 || !json_object_get(root, "target") ||
	    get_u64(root, "target", &m->target) < 0)
		return -EINVAL;
	return 0;
}

static int link_decode_result(json_t *root, struct proto_link_msg *m)
{
	json_t *e = json_object_get(root, "error");

	if (link_decode_seq(root, m) < 0 || (e && !json_is_string(e)))
		return -EINVAL;
	if (e && json_string_length(e) > PROTO_LINK_ERROR_MAX)
		return -EINVAL;
	if (e && !(m->error = strdup(json_string_value(e))))
		return -ENOMEM;
	return 0;
}

static int decode_dev_stats(json_t *o, struct proto_link_dev_stats *d)
{
	uint64_t *c[6] = { &d->rd_bytes, &d->wr_bytes, &d->rd_ops, &d->wr_ops, &d->flushes,
	                   &d->errors };
	uint64_t index = UINT64_MAX;

	if (!json_is_object(o) || get_kind(o, &d->kind) < 0 || get_u64(o, "index", &index) < 0 ||
	    index >= PROTO_LINK_DEVS_MAX || get_u64(o, "throttled_ns", &d->throttled_ns) < 0 ||
	    decode_limits(json_object_get(o, "limits"), &d->limits) < 0)
		return -EINVAL;
	d->index = (int64_t)index;
	for (int i = 0; i < 6; i++)
		if (dev_counter_names[d->kind][i] && get_u64(o, dev_counter_names[d->kind][i], c[i]) < 0)
			return -EINVAL;
	return 0;
}

static int decode_balloon_stats(json_t *o, struct proto_link_balloon_stats *b)
{
	json_t *g = json_object_get(o, "guest");

	if (!json_is_object(o) || (g && !json_is_object(g)) ||
	    get_u64(o, "target_pages", &b->target_pages) < 0 ||
	    get_u64(o, "actual_pages", &b->actual_pages) < 0 ||
	    get_u64(o, "max_pages", &b->max_pages) < 0 ||
	    get_u64(o, "inflated_pages", &b->inflated) < 0 ||
	    get_u64(o, "deflated_pages", &b->deflated) < 0 ||
	    get_u64(o, "discarded_bytes", &b->discarded_bytes) < 0 ||
	    get_u64(o, "reported_bytes", &b->reported_bytes) < 0 ||
	    get_u64(o, "bad_pfns", &b->bad_pfns) < 0 ||
	    get_u64(o, "updates", &b->updates) < 0)
		return -EINVAL;
	for (int t = 0; g && t < PROTO_LINK_GUEST_STATS; t++) {
		if (!json_object_get(g, guest_stat_names[t]))
			continue;
		if (get_u64(g, guest_stat_names[t], &b->guest[t]) < 0)
			return -EINVAL;
		b->guest_valid |= 1u << t;
	}
	return 0;
}

static int link_decode_stats_reply(json_t *root, struct proto_link_msg *m)
{
	json_t *devs = json_object_get(root, "devices"), *bal = json_object_get(root, "balloon");
	struct proto_link_stats *st;
	size_t i;
	int r = -EINVAL;

	if (link_decode_seq(root, m) < 0 || !json_is_array(devs) ||
	    json_array_size(devs) > PROTO_LINK_DEVS_MAX)
		return -EINVAL;
	st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	for (i = 0; i < json_array_size(devs); i++)
		if (decode_dev_stats(json_array_get(devs, i), &st->dev[i]) < 0)
			goto fail;
	st->ndev = (unsigned)i;
	if (bal && !json_is_null(bal)) {
		if (decode_balloon_stats(bal, &st->balloon) < 0)
			goto fail;
		st->has_balloon = true;
	}
	m->stats = st;
	return 0;
fail:
	free(st);
	return r;
}

int proto_link_decode(const char *line, size_t len, struct proto_link_msg *ret)
{
	struct proto_link_msg m = { 0 };
	json_t *root;
	int r;

	if (len > PROTO_MAX_LINE)
		return -EINVAL;
	root = json_loadb(line, len, 0, NULL);
	if (!json_is_object(root)) {
		r = -EINVAL;
		goto out;
	}
	r = link_type(json_string_value(json_object_get(root, "msg")));
	if (r < 0)
		goto out;
	m.type = r;
	r = 0;
	if (m.type == PROTO_LINK_CONSOLE || m.type == PROTO_LINK_CONSOLE_IN)
		r = link_decode_data(root, &m);
	else if (m.type == PROTO_LINK_EXIT)
		r = link_decode_exit(root, &m);
	else if (m.type == PROTO_LINK_HELLO)
		r = link_decode_hello(root, &m);
	else if (m.type == PROTO_LINK_PING || m.type == PROTO_LINK_PONG)
		r = link_decode_seq(root, &m);
	else if (m.type == PROTO_LINK_SECCOMP)
		r = link_decode_seccomp(root, &m);
	else if (m.type == PROTO_LINK_SET_LIMITS)
		r = link_decode_set_limits(root, &m);
	else if (m.type == PROTO_LINK_BALLOON)
		r = link_decode_balloon(root, &m);
	else if (m.type == PROTO_LINK_STATS || m.type == PROTO_LINK_PAUSE ||
	         m.type == PROTO_LINK_RESUME)
		r = link_decode_seq(root, &m);
	else if (m.type == PROTO_LINK_RESULT)
		r = link_decode_result(root, &m);
	else if (m.type == PROTO_LINK_STATS_REPLY)
		r = link_decode_stats_reply(root, &m);
	if (r == 0)
		*ret = m;
out:
	json_decref(root);
	return r;
}

void proto_link_clear(struct proto_link_msg *msg)
{
	free(msg->data);
	msg->data = NULL;
	msg->data_len = 0;
	free(msg->stats);
	msg->stats = NULL;
	free(msg->error);
	msg->error = NULL;
}

static int set_u64(json_t *o, const char *key, uint64_t v)
{
	return json_object_set_new(o, key, json_integer((json_int_t)(v > LINK_U64_MAX ? LINK_U64_MAX : v)));
}

static json_t *limits_to_json(const struct proto_link_limits *l, json_t *o)
{
	if (!o || set_u64(o, "bps", l->bps) < 0 || set_u64(o, "bps_burst", l->bps_burst) < 0 ||
	    set_u64(o, "ops", l->ops) < 0 || set_u64(o, "ops_burst", l->ops_burst) < 0) {
		json_decref(o);
		return NULL;
	}
	return o;
}

static json_t *dev_stats_to_json(const struct proto_link_dev_stats *d)
{
	const uint64_t c[6] = { d->rd_bytes, d->wr_bytes, d->rd_ops, d->wr_ops, d->flushes,
	                        d->errors };
	json_t *o = json_pack("{s:s,s:I,s:I}", "device", dev_kind_names[d->kind],
	                      "index", (json_int_t)d->index,
	                      "throttled_ns", (json_int_t)(d->throttled_ns > LINK_U64_MAX ?
	                                                   LINK_U64_MAX : d->throttled_ns));

	for (int i = 0; o && i < 6; i++)
		if (dev_counter_names[d->kind][i] && set_u64(o, dev_counter_names[d->kind][i], c[i]) < 0)
			goto fail;
	if (o && json_object_set_new(o, "limits", limits_to_json(&d->limits, json_object())) < 0)
		goto fail;
	return o;
fail:
	json_decref(o);
	return NULL;
}

static json_t *balloon_stats_to_json(const struct proto_link_balloon_stats *b)
{
	json_t *g = json_object();
	json_t *o = json_object();
	const struct { const char *k; uint64_t v; } f[] = {
		{ "target_pages", b->target_pages }, { "actual_pages", b->actual_pages },
		{ "max_pages", b->max_pages }, { "inflated_pages", b->inflated },
		{ "deflated_pages", b->deflated }, { "discarded_bytes", b->discarded_bytes },
		{ "reported_bytes", b->reported_bytes }, { "bad_pfns", b->bad_pfns },
		{ "updates", b->updates },
	};

	if (!o || !g)
		goto fail;
	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++)
		if (set_u64(o, f[i].k, f[i].v) < 0)
			goto fail;
	for (int t = 0; t < PROTO_LINK_GUEST_STATS; t++)
		if ((b->guest_valid >> t & 1) && set_u64(g, guest_stat_names[t], b->guest[t]) < 0)
			goto fail;
	if (json_object_set_new(o, "guest", g) < 0) {
		g = NULL;
		goto fail;
	}
	return o;
fail:
	json_decref(g);
	json_decref(o);
	return NULL;
}

static int stats_to_json(const struct proto_link_stats *st, json_t *o)
{
	json_t *devs = json_array();

	if (!devs || json_object_set_new(o, "devices", devs) < 0)
		return -ENOMEM;
	for (unsigned i = 0; st && i < st->ndev && i < PROTO_LINK_DEVS_MAX; i++)
		if (json_array_append_new(devs, dev_stats_to_json(&st->dev[i])) < 0)
			return -ENOMEM;
	if (st && st->has_balloon &&
	    json_object_set_new(o, "balloon", balloon_stats_to_json(&st->balloon)) < 0)
		return -ENOMEM;
	return 0;
}

/* The fields of the requests and answers above. */
static int control_to_json(const struct proto_link_msg *m, json_t *o)
{
	if (json_object_set_new(o, "seq", json_integer(m->seq)) < 0)
		return -ENOMEM;
	switch (m->type) {
	case PROTO_LINK_SET_LIMITS:
		if ((unsigned)m->dev_kind > PROTO_LINK_NET ||
		    json_object_set_new(o, "device", json_string(dev_kind_names[m->dev_kind])) < 0 ||
		    json_object_set_new(o, "index", json_integer(m->dev_index)) < 0 ||
		    !limits_to_json(&m->limits, o))
			return -ENOMEM;
		return 0;
	case PROTO_LINK_BALLOON:
		return set_u64(o, "target", m->target) < 0 ? -ENOMEM : 0;
	case PROTO_LINK_RESULT:
		if (m->error && json_object_set_new(o, "error", json_string(m->error)) < 0)
			return -ENOMEM;
		return 0;
	case PROTO_LINK_STATS_REPLY:
		return stats_to_json(m->stats, o);
	default:
		return 0;
	}
}

static json_t *link_to_json(const struct proto_link_msg *m)
{
	json_t *o = json_pack("{s:s}", "msg", proto_link_name(m->type));
	char *b64;

	if (!o)
		return NULL;
	if (m->type == PROTO_LINK_EXIT) {
		if (json_object_set_new(o, "status", json_integer(m->status)) < 0 ||
		    (m->reason[0] && json_object_set_new(o, "reason", json_string(m->reason)) < 0))
			goto fail;
	} else if (m->type == PROTO_LINK_HELLO) {
		if (json_object_set_new(o, "pid", json_integer(m->pid)) < 0 ||
		    json_object_set_new(o, "start_time", json_integer((json_int_t)m->start_time)) < 0 ||
		    json_object_set_new(o, "booted", json_boolean(m->booted)) < 0 ||
		    json_object_set_new(o, "paused", json_boolean(m->paused)) < 0 ||
		    json_object_set_new(o, "name", json_string(m->name)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_PING || m->type == PROTO_LINK_PONG) {
		if (json_object_set_new(o, "seq", json_integer(m->seq)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_SECCOMP) {
		if (json_object_set_new(o, "nr", json_integer(m->nr)) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_SET_LIMITS || m->type == PROTO_LINK_BALLOON ||
	           m->type == PROTO_LINK_STATS || m->type == PROTO_LINK_RESULT ||
	           m->type == PROTO_LINK_STATS_REPLY || m->type == PROTO_LINK_PAUSE ||
	           m->type == PROTO_LINK_RESUME) {
		if (control_to_json(m, o) < 0)
			goto fail;
	} else if (m->type == PROTO_LINK_CONSOLE || m->type == PROTO_LINK_CONSOLE_IN) {
		b64 = malloc(PROTO_BASE64_ENC_LEN(m->data_len) + 1);
		if (!b64)
			goto fail;
		proto_base64_encode(m->data, m->data_len, b64);
		if (json_object_set_new(o, "data", json_string(b64)) < 0) {
			free(b64);
			goto fail;
		}
		free(b64);
	}
	return o;
fail:
	json_decref(o);
	return NULL;
}

int proto_link_encode_console(const void *data, size_t len, char *buf, size_t size)
{
	static const char head[] = "{\"msg\":\"console\",\"data\":\"";
	static const char tail[] = "\"}\n";
	size_t n = sizeof(head) - 1 + PROTO_BASE64_ENC_LEN(len) + sizeof(tail) - 1;

	if (len > PROTO_LINK_CONSOLE_MAX)
		return -EMSGSIZE;
	if (n + 1 > size)               /* base64's NUL, overwritten by the tail */
		return -ENOBUFS;
	memcpy(buf, head, sizeof(head) - 1);
	proto_base64_encode(data, len, buf + sizeof(head) - 1);
	memcpy(buf + n - (sizeof(tail) - 1), tail, sizeof(tail) - 1);
	return (int)n;
}

int proto_link_encode(const struct proto_link_msg *msg, char **ret_buf, size_t *ret_len)
{
	json_t *o;
	int r;

	if ((msg->type == PROTO_LINK_CONSOLE || msg->type == PROTO_LINK_CONSOLE_IN) &&
	    msg->data_len > PROTO_LINK_CONSOLE_MAX)
		return -EMSGSIZE;
	o = link_to_json(msg);
	if (!o)
		return -ENOMEM;
	r = proto_encode(o, ret_buf, ret_len);
	json_decref(o);
	return r;
}
