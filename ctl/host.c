/* SPDX-License-Identifier: MIT */
/* Host-wide commands: host (capacity and usage), metrics and version. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"

static int output_only(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	int o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1)
		if (o != 'o' || ctl_parse_output(optarg, c) < 0)
			return ctl_usage_error(argv[0], "bad option or value '%s'", argv[optind - 1]);
	if (optind != argc)
		return ctl_usage_error(argv[0], "%s takes no arguments", argv[0]);
	return 0;
}

/* host set KEY=VALUE: one limit, in force at once (docs/protocol.md). */
static int host_set(struct ctl *c, int argc, char **argv)
{
	const char *kv = NULL, *eq;
	json_t *req, *res = NULL;
	char key[128];
	int r;

	for (int i = 2; i < argc; i++) {
		if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) {
			if (ctl_parse_output(argv[++i], c) < 0)
				return ctl_usage_error("host", "-o wants json or table, not '%s'", argv[i]);
		} else if (!kv && argv[i][0] != '-') {
			kv = argv[i];
		} else {
			return ctl_usage_error("host", "unexpected argument '%s'", argv[i]);
		}
	}
	if (!kv || !(eq = strchr(kv, '=')) || eq == kv || (size_t)(eq - kv) >= sizeof(key))
		return ctl_usage_error("host", "host set wants one KEY=VALUE");
	snprintf(key, sizeof(key), "%.*s", (int)(eq - kv), kv);
	r = ctl_connect(c);
	if (r)
		return r;
	req = ctl_request(c, PROTO_OP_HOST_SET);
	proto_request_set_str(req, "key", key);
	proto_request_set_str(req, "value", eq + 1);
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	if (c->json)
		output_json(res);
	else
		output_host(json_object_get(res, "host"));
	json_decref(res);
	return CTL_EXIT_OK;
}

static json_int_t int_at(const json_t *obj, const char *a, const char *b)
{
	return json_integer_value(json_object_get(b ? json_object_get(obj, a) : obj, b ? b : a));
}

static json_int_t left(json_int_t limit, json_int_t used)
{
	return limit > used ? limit - used : 0;
}

/* pools: {NAME: {"max": N, "free": F}}, as admission counts them */
static json_t *fingerprint_pools(const json_t *usage_pools)
{
	json_t *out = json_object(), *p;
	const char *name;

	json_object_foreach((json_t *)usage_pools, name, p)
		if (json_is_true(json_object_get(p, "defined")))
			json_object_set_new(out, name, json_pack("{s:I, s:I}",
				"max", int_at(p, "max", NULL),
				"free", left(int_at(p, "max", NULL), int_at(p, "used", NULL))));
	return out;
}

/*
 * The capacity fingerprint for schedulers (docs/cluster.md): what this host
 * can take, derived from host.info's capacity object.  A stable interface:
 * keys of schema 1 keep their names and meaning; new ones may be added.
 */
static json_t *fingerprint(const json_t *host)
{
	const json_t *cap = json_object_get(host, "capacity");
	const json_t *lim = json_object_get(cap, "limits"), *use = json_object_get(cap, "usage");
	json_int_t vcpus = int_at(lim, "vcpus_limit", NULL), mem = int_at(lim, "memory_limit_mib", NULL);
	const char *over = json_string_value(json_object_get(cap, "over_limit_reason"));
	json_int_t queued = int_at(use, "queued", NULL);
	const char *health = "ok";
	char why[64];

	if (json_is_true(json_object_get(cap, "over_limit"))) {
		health = "over_limit";
	} else if (queued > 0) {
		health = "under_pressure";
		snprintf(why, sizeof(why), "%lld VM starts queued", (long long)queued);
		over = why;
	}
	return json_pack("{s:i, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:s, s:s?}",
		"schema", 1,
		"vcpus", vcpus,
		"vcpus_free", left(vcpus, int_at(use, "vcpus", NULL)),
		"mem_mib", mem,
		"mem_mib_free", left(mem, int_at(use, "mem_mib", NULL)),
		"vmm_overhead_mib", int_at(lim, "vmm_overhead_mib", NULL),
		"max_vms", int_at(lim, "max_vms", NULL),
		"vms", int_at(use, "vms", NULL),
		"host_cpus", int_at(lim, "host_cpus", NULL),
		"pools", fingerprint_pools(json_object_get(use, "pools")),
		"health", health,
		"health_reason", over);
}

int host_host(struct ctl *c, int argc, char **argv)
{
	json_t *res = NULL;
	int r;

	if (argc > 1 && !strcmp(argv[1], "set"))
		return host_set(c, argc, argv);
	r = output_only(c, argc, argv);
	if (!r)
		r = ctl_connect(c);
	if (!r)
		r = ctl_call(c, ctl_request(c, PROTO_OP_HOST_INFO), &res);
	if (r)
		return r;
	if (c->json && json_object_get(res, "host")) {
		json_object_set_new(res, "fingerprint", fingerprint(json_object_get(res, "host")));
		output_json(res);
	} else if (c->json)
		output_json(res);
	else if (json_object_get(res, "host"))
		output_host(json_object_get(res, "host"));
	else
		output_kv(res);
	json_decref(res);
	return CTL_EXIT_OK;
}

/* The client's version always prints; the daemon's when it answers. */
int host_version(struct ctl *c, int argc, char **argv)
{
	json_t *res = NULL;
	int r = output_only(c, argc, argv);

	if (r)
		return r;
	if (!c->json)
		printf("mvmctl   %s\n", MVM_VERSION);
	r = ctl_connect(c);
	if (!r)
		r = ctl_call(c, ctl_request(c, PROTO_OP_VERSION), &res);
	if (c->json) {
		json_t *out = json_pack("{s:s, s:O?}", "client", MVM_VERSION, "daemon", res);

		output_json(out);
		json_decref(out);
	} else if (!r) {
		printf("server   %s\nprotocol %lld\n",
		       json_string_value(json_object_get(res, "server")),
		       (long long)json_integer_value(json_object_get(res, "version")));
	}
	json_decref(res);
	return r;
}

/* The exposition text as mvmd renders it; -o json wraps it in {"text"}. */
int host_metrics(struct ctl *c, int argc, char **argv)
{
	json_t *res = NULL;
	int r = output_only(c, argc, argv);

	if (!r)
		r = ctl_connect(c);
	if (!r)
		r = ctl_call(c, ctl_request(c, PROTO_OP_METRICS), &res);
	if (r)
		return r;
	if (c->json)
		output_json(res);
	else
		fputs(json_string_value(json_object_get(res, "text")) ?: "", stdout);
	json_decref(res);
	return CTL_EXIT_OK;
}
