/* SPDX-License-Identifier: MIT */
/*
 * The argument tables: every operation's fields, their types, whether they
 * are required, their limits and defaults, and the one checker that applies
 * them.  docs/protocol.md documents the same table for people.
 */
#include <errno.h>
#include <string.h>

#include "proto/proto.h"
#include "proto/proto-internal.h"

enum field_type {
	FT_STR,
	FT_INT,
	FT_BOOL,
	FT_LABELS,                      /* object of string -> string */
	FT_DISKS,                       /* array of {path, readonly} */
	FT_NICS,                        /* array of {tap, mac} */
	FT_POOLS,                       /* array of quota pool names */
	FT_DISK_LIMITS,                 /* vm.update: array of {index, limits} */
	FT_NIC_LIMITS,
};

typedef int (*field_check_fn)(const char *key, const char *value,
                              struct proto_error *err);

struct field {
	const char *key;
	enum field_type type;
	bool required;
	int64_t min, max;               /* FT_INT range; FT_STR byte length */
	field_check_fn check;           /* extra check for strings; may be NULL */
	const char *def_str;            /* defaults, used when absent: */
	int64_t def_int;
	int def_bool;                   /* -1: no default */
	bool has_def_int;
};

#define PATH_MAX_LEN   4095
#define CMDLINE_MAX    4095
#define DISKS_MAX      16
#define NICS_MAX       8
#define LABELS_MAX     64
#define LABEL_KEY_MAX  63
#define LABEL_VAL_MAX  255
#define IFNAME_MAX     15
#define POOLS_MAX      8               /* CAP_REQ_MAX_POOLS */
#define POOL_NAME_MAX  32
/* the worker's RATELIMIT_MAX: 1 TiB/s or 2^40 ops/s */
#define LIMIT_MAX      (1LL << 40)
#define MEM_MIB_MAX    524288

static int check_name(const char *key, const char *v, struct proto_error *err)
{
	if (proto_vm_name_valid(v))
		return 0;
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "invalid VM name '%.64s': use 1-63 of A-Z a-z 0-9 _ . -, starting with a letter or digit",
	                       v);
}

static int check_abs_path(const char *key, const char *v, struct proto_error *err)
{
	if (v[0] == '/')
		return 0;
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "field '%s' must be an absolute path (got '%.64s')", key, v);
}

static int check_restart(const char *key, const char *v, struct proto_error *err)
{
	if (proto_restart_from_name(v) >= 0)
		return 0;
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "field '%s' must be one of no, on-failure, always", key);
}

static int check_state(const char *key, const char *v, struct proto_error *err)
{
	if (proto_vm_state_from_name(v) >= 0)
		return 0;
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "unknown state '%.32s'; states: created, queued, starting, running, stopping, stopped, crashed",
	                       v);
}

static int check_signal(const char *key, const char *v, struct proto_error *err)
{
	if (proto_signal_from_name(v) > 0)
		return 0;
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "unknown signal '%.32s'; use a name such as SIGKILL or SIGTERM", v);
}

#define F_NAME        { "name", FT_STR, true, 1, 63, check_name, NULL, 0, -1, false }
#define F_STR(k, req, maxlen, chk, def) { k, FT_STR, req, 0, maxlen, chk, def, 0, -1, false }
#define F_INT(k, req, lo, hi) { k, FT_INT, req, lo, hi, NULL, NULL, 0, -1, false }
#define F_INTD(k, lo, hi, def) { k, FT_INT, false, lo, hi, NULL, NULL, def, -1, true }
#define F_BOOL(k, def) { k, FT_BOOL, false, 0, 0, NULL, NULL, 0, def, false }
#define F_TYPE(k, t) { k, t, false, 0, 0, NULL, NULL, 0, -1, false }
#define F_END { NULL, FT_STR, false, 0, 0, NULL, NULL, 0, -1, false }

static const struct field f_none[] = { F_END };
static const struct field f_hello[] = { F_INT("version", true, 0, 1 << 30), F_END };
static const struct field f_name[] = { F_NAME, F_END };
static const struct field f_start[] = { F_NAME, F_BOOL("wait", 0), F_END };
static const struct field f_create[] = {
	F_NAME,
	F_STR("kernel", true, PATH_MAX_LEN, check_abs_path, NULL),
	F_STR("initrd", false, PATH_MAX_LEN, check_abs_path, NULL),
	F_STR("cmdline", false, CMDLINE_MAX, NULL, "console=ttyS0 reboot=k panic=1"),
	F_INTD("vcpus", 1, 32, 1),
	F_INTD("mem_mib", 16, MEM_MIB_MAX, 128),
	F_TYPE("disks", FT_DISKS),
	F_TYPE("nics", FT_NICS),
	F_TYPE("labels", FT_LABELS),
	F_STR("restart", false, 16, check_restart, "no"),
	F_INTD("restart_max", 0, 1000000, 0),
	F_BOOL("autostart", 0),
	F_BOOL("start", 1),
	F_BOOL("wait", 0),
	F_TYPE("pools", FT_POOLS),
	F_BOOL("no_queue", 0),
	F_INT("balloon_mib", false, 0, MEM_MIB_MAX),
	F_BOOL("rng", 0),
	F_INT("vsock", false, PROTO_VSOCK_CID_MIN, PROTO_VSOCK_CID_MAX),
	F_END
};
static const struct field f_update[] = {
	F_NAME,
	{ "disks", FT_DISK_LIMITS, false, 0, 0, NULL, NULL, 0, -1, false },
	{ "nics", FT_NIC_LIMITS, false, 0, 0, NULL, NULL, 0, -1, false },
	F_INT("balloon_mib", false, 0, MEM_MIB_MAX),
	F_END
};
static const struct field f_stats[] = {
	{ "name", FT_STR, false, 1, 63, check_name, NULL, 0, -1, false }, F_END
};
static const struct field f_host_set[] = {
	F_STR("key", true, 64, NULL, NULL),
	F_STR("value", true, 64, NULL, NULL),
	F_END
};
static const struct field f_stop[] = { F_NAME, F_INTD("timeout_s", 0, 86400, 10), F_END };
static const struct field f_kill[] = {
	F_NAME, F_STR("signal", false, 16, check_signal, "SIGKILL"), F_END
};
static const struct field f_rm[] = { F_NAME, F_BOOL("force", 0), F_END };
static const struct field f_list[] = {
	F_STR("state", false, 16, check_state, NULL), F_TYPE("labels", FT_LABELS), F_END
};
static const struct field f_logs[] = {
	F_NAME, F_INT("tail", false, 0, 1000000), F_BOOL("follow", 0), F_END
};
static const struct field f_subscribe[] = {
	{ "vm", FT_STR, false, 1, 63, check_name, NULL, 0, -1, false },
	F_INT("since", false, 0, INT64_MAX), F_END
};

static const struct field *const op_fields[PROTO_OP_COUNT_] = {
	[PROTO_OP_HELLO] = f_hello,
	[PROTO_OP_VERSION] = f_none,
	[PROTO_OP_VM_CREATE] = f_create,
	[PROTO_OP_VM_START] = f_start,
	[PROTO_OP_VM_STOP] = f_stop,
	[PROTO_OP_VM_KILL] = f_kill,
	[PROTO_OP_VM_RM] = f_rm,
	[PROTO_OP_VM_LIST] = f_list,
	[PROTO_OP_VM_SHOW] = f_name,
	[PROTO_OP_VM_LOGS] = f_logs,
	[PROTO_OP_VM_CONSOLE] = f_name,
	[PROTO_OP_EVENTS_SUBSCRIBE] = f_subscribe,
	[PROTO_OP_HOST_INFO] = f_none,
	[PROTO_OP_METRICS] = f_none,
	[PROTO_OP_HOST_SET] = f_host_set,
	[PROTO_OP_VM_UPDATE] = f_update,
	[PROTO_OP_VM_STATS] = f_stats,
	[PROTO_OP_VM_PAUSE] = f_name,
	[PROTO_OP_VM_RESUME] = f_name,
};

static const char *type_name(enum field_type t)
{
	switch (t) {
	case FT_STR: return "a string";
	case FT_INT: return "an integer";
	case FT_BOOL: return "a boolean";
	case FT_LABELS: return "an object of strings";
	case FT_DISKS: return "an array of {path, readonly} objects";
	case FT_NICS: return "an array of {tap, mac} objects";
	case FT_POOLS: return "an array of pool names";
	case FT_DISK_LIMITS: return "an array of {index, bps, bps_burst, iops, iops_burst} objects";
	case FT_NIC_LIMITS: return "an array of {index, bps, bps_burst, pps, pps_burst} objects";
	}
	return "?";
}

static int bad_type(const char *key, enum field_type t, struct proto_error *err)
{
	return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
	                       "field '%s' must be %s", key, type_name(t));
}

/* A checked string: right type, no NUL inside, length within [lo, hi]. */
static int check_string(const char *key, json_t *v, int64_t lo, int64_t hi,
                        struct proto_error *err)
{
	size_t n;

	if (!json_is_string(v))
		return bad_type(key, FT_STR, err);
	n = json_string_length(v);
	if (strlen(json_string_value(v)) != n)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
		                       "field '%s' must not contain NUL characters", key);
	if ((int64_t)n < lo || (int64_t)n > hi)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
		                       "field '%s' must be %lld to %lld bytes long (got %zu)",
		                       key, (long long)lo, (long long)hi, n);
	return 0;
}

static int check_int(const struct field *f, json_t *v, struct proto_error *err)
{
	json_int_t x;

	if (!json_is_integer(v))
		return bad_type(f->key, FT_INT, err);
	x = json_integer_value(v);
	if (x < f->min || x > f->max)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, f->key,
		                       "field '%s' must be between %lld and %lld (got %lld)",
		                       f->key, (long long)f->min, (long long)f->max, (long long)x);
	return 0;
}

static int check_labels(const char *key, json_t *v, struct proto_error *err)
{
	const char *k;
	json_t *val;
	int r;

	if (!json_is_object(v))
		return bad_type(key, FT_LABELS, err);
	if (json_object_size(v) > LABELS_MAX)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
		                       "at most %d labels", LABELS_MAX);
	json_object_foreach(v, k, val) {
		size_t kl = strlen(k);

		if (kl == 0 || kl > LABEL_KEY_MAX || strchr(k, '='))
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "label keys must be 1-%d bytes without '='", LABEL_KEY_MAX);
		r = check_string(key, val, 0, LABEL_VAL_MAX, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Reject any key of obj not in allowed (NULL-terminated). */
static int check_keys(const char *field, json_t *obj, const char *const *allowed,
                      struct proto_error *err)
{
	const char *k;
	json_t *v;

	json_object_foreach(obj, k, v) {
		const char *const *a;

		for (a = allowed; *a && strcmp(*a, k); a++)
			;
		if (!*a)
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, field,
			                       "unknown field '%.40s' in '%s'", k, field);
	}
	return 0;
}

/*
 * The rate limit fields of a disk ("iops") or NIC ("pps") object: integers
 * from 1 to LIMIT_MAX; with allow_null (vm.update) null removes one.  A
 * burst needs its rate, as the worker requires.
 */
static int check_limit_fields(const char *key, json_t *o, const char *ops, bool allow_null,
                              struct proto_error *err)
{
	char ops_burst[16];
	const char *names[4] = { "bps", "bps_burst", ops, ops_burst };
	json_t *v;

	snprintf(ops_burst, sizeof(ops_burst), "%s_burst", ops);
	for (int i = 0; i < 4; i++) {
		v = json_object_get(o, names[i]);
		if (!v || (allow_null && json_is_null(v)))
			continue;
		if (!json_is_integer(v) || json_integer_value(v) < 1 ||
		    json_integer_value(v) > LIMIT_MAX)
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "%s field '%s' must be an integer from 1 to %lld "
			                       "(%s); %s", key, names[i], LIMIT_MAX,
			                       i % 2 ? "a burst" : i ? "per second" : "bytes per second",
			                       allow_null ? "null removes the limit"
			                                  : "leave it out for no limit");
	}
	for (int i = 0; i < 4; i += 2) {
		json_t *burst = json_object_get(o, names[i + 1]);
		json_t *rate = json_object_get(o, names[i]);

		if (json_is_integer(burst) && !json_is_integer(rate) && !allow_null)
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "%s field '%s' needs '%s': a burst is on top of a rate",
			                       key, names[i + 1], names[i]);
	}
	return 0;
}

static int check_disk(json_t *d, struct proto_error *err)
{
	static const char *const keys[] = { "path", "readonly", "bps", "bps_burst", "iops",
	                                    "iops_burst", NULL };
	json_t *ro;
	int r;

	if (!json_is_object(d))
		return bad_type("disks", FT_DISKS, err);
	r = check_keys("disks", d, keys, err);
	if (r < 0)
		return r;
	r = check_string("disks", json_object_get(d, "path"), 1, PATH_MAX_LEN, err);
	if (r < 0)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "disks",
		                       "each disk needs 'path', an absolute path");
	r = check_abs_path("disks", json_string_value(json_object_get(d, "path")), err);
	if (r < 0)
		return r;
	ro = json_object_get(d, "readonly");
	if (ro && !json_is_boolean(ro))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "disks",
		                       "disk field 'readonly' must be a boolean");
	if (!ro && json_object_set_new(d, "readonly", json_false()) < 0)
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "out of memory");
	return check_limit_fields("disks", d, "iops", false, err);
}

static bool ifname_valid(const char *s)
{
	for (; *s; s++)
		if (*s == '/' || *s == ':' || *s <= ' ' || *s == 0x7f)
			return false;
	return true;
}

static bool mac_valid(const char *s)
{
	static const char hex[] = "0123456789abcdefABCDEF";

	if (strlen(s) != 17)
		return false;
	for (int i = 0; i < 17; i++) {
		if (i % 3 == 2 ? s[i] != ':' : !strchr(hex, s[i]))
			return false;
	}
	return true;
}

static int check_nic(json_t *n, struct proto_error *err)
{
	static const char *const keys[] = { "tap", "mac", "bps", "bps_burst", "pps", "pps_burst",
	                                    NULL };
	json_t *tap, *mac;
	int r;

	if (!json_is_object(n))
		return bad_type("nics", FT_NICS, err);
	r = check_keys("nics", n, keys, err);
	if (r < 0)
		return r;
	tap = json_object_get(n, "tap");
	if (check_string("nics", tap, 1, IFNAME_MAX, err) < 0 || !ifname_valid(json_string_value(tap)))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "nics",
		                       "each nic needs 'tap', an interface name of 1-%d bytes", IFNAME_MAX);
	mac = json_object_get(n, "mac");
	if (mac && !json_is_null(mac) &&
	    (!json_is_string(mac) || !mac_valid(json_string_value(mac))))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "nics",
		                       "nic 'mac' must look like 52:54:00:12:34:56");
	return check_limit_fields("nics", n, "pps", false, err);
}

/* vm.update's disks or nics: [{index, limit fields}], each index once. */
static int check_limit_array(const char *key, json_t *v, enum field_type t,
                             struct proto_error *err)
{
	static const char *const disk_keys[] = { "index", "bps", "bps_burst", "iops",
	                                         "iops_burst", NULL };
	static const char *const nic_keys[] = { "index", "bps", "bps_burst", "pps",
	                                        "pps_burst", NULL };
	size_t max = t == FT_DISK_LIMITS ? DISKS_MAX : NICS_MAX;
	unsigned seen = 0;
	size_t i;
	json_t *e, *idx;
	int r;

	if (!json_is_array(v) || json_array_size(v) > max)
		return bad_type(key, t, err);
	json_array_foreach(v, i, e) {
		if (!json_is_object(e))
			return bad_type(key, t, err);
		r = check_keys(key, e, t == FT_DISK_LIMITS ? disk_keys : nic_keys, err);
		if (r < 0)
			return r;
		idx = json_object_get(e, "index");
		if (!json_is_integer(idx) || json_integer_value(idx) < 0 ||
		    json_integer_value(idx) >= (json_int_t)max)
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "each entry of '%s' needs 'index', 0 to %zu: the "
			                       "device's place in the VM's '%s'", key, max - 1, key);
		if (seen & (1u << json_integer_value(idx)))
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "'%s' index %lld named twice", key,
			                       (long long)json_integer_value(idx));
		seen |= 1u << json_integer_value(idx);
		r = check_limit_fields(key, e, t == FT_DISK_LIMITS ? "iops" : "pps", true, err);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Pool names as the capacity module spells them: [a-z0-9_-]{1,32}, at
 * most POOLS_MAX, no repeats (a VM counts once in each pool). */
static int check_pools(const char *key, json_t *v, struct proto_error *err)
{
	size_t i, j;
	json_t *e;

	if (!json_is_array(v))
		return bad_type(key, FT_POOLS, err);
	if (json_array_size(v) > POOLS_MAX)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
		                       "at most %d pools", POOLS_MAX);
	json_array_foreach(v, i, e) {
		const char *s = json_string_value(e);

		if (!s || strlen(s) < 1 || strlen(s) > POOL_NAME_MAX ||
		    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-") != strlen(s))
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
			                       "pool names are 1-%d of a-z 0-9 _ -", POOL_NAME_MAX);
		for (j = 0; j < i; j++)
			if (!strcmp(s, json_string_value(json_array_get(v, j))))
				return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
				                       "pool '%s' named twice", s);
	}
	return 0;
}

static int check_array(const char *key, json_t *v, enum field_type t,
                       struct proto_error *err)
{
	size_t max = t == FT_DISKS ? DISKS_MAX : NICS_MAX;
	size_t i;
	json_t *e;
	int r;

	if (!json_is_array(v))
		return bad_type(key, t, err);
	if (json_array_size(v) > max)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, key,
		                       "at most %zu entries in '%s'", max, key);
	json_array_foreach(v, i, e) {
		r = t == FT_DISKS ? check_disk(e, err) : check_nic(e, err);
		if (r < 0)
			return r;
	}
	return 0;
}

static int check_present(const struct field *f, json_t *v, struct proto_error *err)
{
	int r;

	switch (f->type) {
	case FT_STR:
		r = check_string(f->key, v, f->min, f->max, err);
		if (r == 0 && f->check)
			r = f->check(f->key, json_string_value(v), err);
		return r;
	case FT_INT:
		return check_int(f, v, err);
	case FT_BOOL:
		return json_is_boolean(v) ? 0 : bad_type(f->key, FT_BOOL, err);
	case FT_LABELS:
		return check_labels(f->key, v, err);
	case FT_DISKS:
	case FT_NICS:
		return check_array(f->key, v, f->type, err);
	case FT_POOLS:
		return check_pools(f->key, v, err);
	case FT_DISK_LIMITS:
	case FT_NIC_LIMITS:
		return check_limit_array(f->key, v, f->type, err);
	}
	return -EINVAL;
}

static json_t *field_default(const struct field *f)
{
	switch (f->type) {
	case FT_STR: return f->def_str ? json_string(f->def_str) : NULL;
	case FT_INT: return f->has_def_int ? json_integer(f->def_int) : NULL;
	case FT_BOOL: return f->def_bool >= 0 ? json_boolean(f->def_bool) : NULL;
	case FT_DISKS:
	case FT_NICS:
	case FT_POOLS: return json_array();
	case FT_LABELS: return NULL;   /* absent labels: no filter (list) / {} (create) */
	case FT_DISK_LIMITS:
	case FT_NIC_LIMITS: return NULL;
	}
	return NULL;
}

static int check_field(enum proto_op op, const struct field *f, json_t *args,
                       struct proto_error *err)
{
	json_t *v = json_object_get(args, f->key);

	if (v)
		return check_present(f, v, err);
	if (f->required)
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, f->key,
		                       "missing field '%s' for %s", f->key, proto_op_name(op));
	v = field_default(f);
	if (!v && f->type == FT_LABELS && op == PROTO_OP_VM_CREATE)
		v = json_object();
	if (v && json_object_set_new(args, f->key, v) < 0)
		return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "out of memory");
	return 0;
}

static int check_unknown(enum proto_op op, json_t *args, struct proto_error *err)
{
	const char *k;
	json_t *v;

	json_object_foreach(args, k, v) {
		const struct field *f;

		for (f = op_fields[op]; f->key && strcmp(f->key, k); f++)
			;
		if (!f->key)
			return proto_error_set(err, PROTO_ERR_BAD_REQUEST, k,
			                       "unknown field '%.40s' for %s; see docs/protocol.md",
			                       k, proto_op_name(op));
	}
	return 0;
}

int proto_args_check(enum proto_op op, json_t *root, json_t **ret_args,
                     struct proto_error *err)
{
	json_t *args = json_object_get(root, "args");
	int r;

	if (!args) {
		args = json_object();
		if (!args || json_object_set_new(root, "args", args) < 0)
			return proto_error_set(err, PROTO_ERR_INTERNAL, NULL, "out of memory");
	}
	if (!json_is_object(args))
		return proto_error_set(err, PROTO_ERR_BAD_REQUEST, "args",
		                       "field 'args' must be an object");
	r = check_unknown(op, args, err);
	if (r < 0)
		return r;
	for (const struct field *f = op_fields[op]; f->key; f++) {
		r = check_field(op, f, args, err);
		if (r < 0)
			return r;
	}
	*ret_args = args;
	return 0;
}
