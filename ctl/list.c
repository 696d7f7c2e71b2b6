/* SPDX-License-Identifier: MIT */
/* Read-only views of VMs: list and show. */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "ctl/ctl.h"

static int list_opts(struct ctl *c, int argc, char **argv, json_t *req,
		     json_t *labels, bool *quiet)
{
	static const struct option opts[] = {
		{ "state", required_argument, NULL, 's' },
		{ "label", required_argument, NULL, 'l' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	int o;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "qo:", opts, NULL)) != -1) {
		const char *eq = o == 'l' ? strchr(optarg, '=') : NULL;

		if (o == 's') {
			if (proto_vm_state_from_name(optarg) < 0)
				return ctl_usage_error("list", "unknown state '%s'; states are "
						       "created, queued, starting, running, "
						       "stopping, stopped and crashed", optarg);
			proto_request_set_str(req, "state", optarg);
		} else if (o == 'q') {
			*quiet = true;
		} else if (o == 'o' && ctl_parse_output(optarg, c) == 0) {
			continue;
		} else if (eq && eq != optarg) {
			char key[256];

			snprintf(key, sizeof(key), "%.*s", (int)(eq - optarg), optarg);
			json_object_set_new(labels, key, json_string(eq + 1));
		} else {
			return ctl_usage_error("list", "bad option or value '%s'", argv[optind - 1]);
		}
	}
	if (optind != argc)
		return ctl_usage_error("list", "list takes no NAME; filter with --state or --label");
	return 0;
}

/* The "vms" member of a list result. */
static struct proto_span result_vms(struct proto_span res)
{
	struct proto_span k, v, none = { 0 };
	size_t pos = 0;

	while (proto_scan_next(res, &pos, &k, &v) == 1)
		if (proto_scan_key_is(k, "vms") && v.p[0] == '[')
			return v;
	return none;
}

int list_list(struct ctl *c, int argc, char **argv)
{
	json_t *req = ctl_request(c, PROTO_OP_VM_LIST);
	json_t *labels = json_object();
	struct proto_span res;
	bool quiet = false;
	int r = list_opts(c, argc, argv, req, labels, &quiet);

	if (!r && json_object_size(labels))
		proto_request_set_json(req, "labels", json_incref(labels));
	json_decref(labels);
	if (!r)
		r = ctl_connect(c);
	if (r) {
		json_decref(req);
		return r;
	}
	/* 10,000 VMs are megabytes: read them in place, not as a JSON tree */
	r = ctl_call_span(c, req, &res);
	if (r)
		return r;
	if (c->json && !quiet)
		output_json_span(res);
	else
		output_vm_list(result_vms(res), quiet, output_now());
	return CTL_EXIT_OK;
}

int list_show(struct ctl *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ 0 }
	};
	json_t *req, *res = NULL;
	int o, r;

	opterr = 0;
	while ((o = getopt_long(argc, argv, "o:", opts, NULL)) != -1)
		if (o != 'o' || ctl_parse_output(optarg, c) < 0)
			return ctl_usage_error("show", "bad option or value '%s'", argv[optind - 1]);
	if (optind + 1 != argc)
		return ctl_usage_error("show", "show wants exactly one NAME");
	r = ctl_connect(c);
	if (r)
		return r;
	req = ctl_request(c, PROTO_OP_VM_SHOW);
	proto_request_set_str(req, "name", argv[optind]);
	r = ctl_call(c, req, &res);
	if (r)
		return r;
	if (c->json)
		output_json(res);
	else
		output_vm_show(json_object_get(res, "vm"), json_object_get(res, "events"),
			       output_now());
	json_decref(res);
	return CTL_EXIT_OK;
}
